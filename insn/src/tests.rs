//! Worked encodings, written out by hand from APM vol. 3 chapter 1 (ModRM/SIB tables) and the
//! MOV/MOVZX/MOVSX/MOVSXD pages, plus truncation and random-input tests.

use crate::*;

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RBX: u8 = 3;
const RSP: u8 = 4;
const RBP: u8 = 5;
const RSI: u8 = 6;
const RDI: u8 = 7;
const R8: u8 = 8;
const R12: u8 = 12;
const R13: u8 = 13;

fn reg(index: u8) -> Reg {
    Reg {
        index,
        high_byte: false,
    }
}

fn high(index: u8) -> Reg {
    Reg {
        index,
        high_byte: true,
    }
}

fn load(dst: Reg, size: u8) -> MemAccess {
    MemAccess::Load {
        dst,
        size,
        extend: Extend::None,
        dst_size: size,
    }
}

fn load_ext(dst: u8, size: u8, extend: Extend, dst_size: u8) -> MemAccess {
    MemAccess::Load {
        dst: reg(dst),
        size,
        extend,
        dst_size,
    }
}

fn store(src: Reg, size: u8) -> MemAccess {
    MemAccess::Store {
        src: Operand::Reg(src),
        size,
    }
}

fn store_imm(imm: u64, size: u8) -> MemAccess {
    MemAccess::Store {
        src: Operand::Imm(imm),
        size,
    }
}

/// `[base + disp]` with the given address size.
fn based(base: u8, disp: i64, addr_size: u8) -> MemOperand {
    MemOperand {
        base: Some(Base::Reg(base)),
        index: None,
        scale: 1,
        disp,
        addr_size,
        segment: None,
    }
}

/// `[disp]` (no base, no index).
fn absolute(disp: i64, addr_size: u8) -> MemOperand {
    MemOperand {
        base: None,
        index: None,
        scale: 1,
        disp,
        addr_size,
        segment: None,
    }
}

fn rip(disp: i64) -> MemOperand {
    MemOperand {
        base: Some(Base::Rip),
        index: None,
        scale: 1,
        disp,
        addr_size: 8,
        segment: None,
    }
}

#[track_caller]
fn check(mode: Mode, bytes: &[u8], len: u8, access: MemAccess, mem: MemOperand) {
    let d = decode_mem_access(bytes, mode).unwrap_or_else(|e| panic!("{bytes:02x?}: {e:?}"));
    assert_eq!((d.len, d.access, d.mem), (len, access, mem), "{bytes:02x?}");
    // Trailing bytes never change the result.
    let mut longer = [0x90u8; 32];
    longer[..bytes.len()].copy_from_slice(bytes);
    assert_eq!(
        decode_mem_access(&longer, mode),
        Ok(d),
        "{bytes:02x?} + trailing"
    );
}

#[track_caller]
fn check64(bytes: &[u8], len: u8, access: MemAccess, mem: MemOperand) {
    check(Mode::Long64, bytes, len, access, mem);
}

#[track_caller]
fn err(mode: Mode, bytes: &[u8], e: DecodeError) {
    assert_eq!(decode_mem_access(bytes, mode), Err(e), "{bytes:02x?}");
}

// ---- 64-bit mode: MOV 8B/89/8A/88 ---------------------------------------------------------

#[test]
fn mov_eax_from_rax() {
    // 8B /r, ModRM 00 000 000: mov eax, [rax]
    check64(&[0x8b, 0x00], 2, load(reg(RAX), 4), based(RAX, 0, 8));
}

#[test]
fn mov_rax_from_absolute_disp32_via_sib() {
    // REX.W 8B, ModRM 00 000 100 (SIB), SIB 00 100 101 (no index, no base: disp32).
    // The disp32 is sign-extended in 64-bit mode: the address is 0xffff_ffff_c000_0000.
    let bytes = [0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0xc0];
    check64(&bytes, 8, load(reg(RAX), 8), absolute(-0x4000_0000, 8));
    let d = decode_mem_access(&bytes, Mode::Long64).unwrap();
    assert_eq!(d.effective_address(&[0; 16], 0x1000), 0xffff_ffff_c000_0000);
    // The same SIB form in 32-bit code (without the REX, which would be DEC there).
    let d = decode_mem_access(&bytes[1..], Mode::Protected32).unwrap();
    assert_eq!((d.len, d.access), (7, load(reg(RAX), 4)));
    assert_eq!(d.effective_address(&[0; 16], 0x1000), 0xc000_0000);
}

#[test]
fn mov_to_rsp_needs_sib() {
    // 89 /r, ModRM 00 001 100, SIB 00 100 100 (no index, base rsp): mov [rsp], ecx
    check64(&[0x89, 0x0c, 0x24], 3, store(reg(RCX), 4), based(RSP, 0, 8));
}

#[test]
fn mov_imm32_rip_relative() {
    // C7 /0 id, ModRM 00 000 101: mov dword [rip+0x10], 0x12345678
    let bytes = [0xc7, 0x05, 0x10, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12];
    check64(&bytes, 10, store_imm(0x1234_5678, 4), rip(0x10));
    let d = decode_mem_access(&bytes, Mode::Long64).unwrap();
    // Relative to the next instruction: 0x1000 + 10 + 0x10.
    assert_eq!(d.effective_address(&[0; 16], 0x1000), 0x101a);
}

#[test]
fn mov_word_store_with_66() {
    // 66 89 /r, ModRM 00 010 000: mov [rax], dx
    check64(&[0x66, 0x89, 0x10], 3, store(reg(RDX), 2), based(RAX, 0, 8));
}

#[test]
fn byte_store_ah_vs_spl() {
    // 88 /r, ModRM 00 100 101: reg=100 is AH without REX, SPL with any REX.
    let ah = [0x88, 0x25, 0xf0, 0xff, 0xff, 0xff];
    check64(&ah, 6, store(high(RAX), 1), rip(-0x10));
    let spl = [0x40, 0x88, 0x25, 0xf0, 0xff, 0xff, 0xff];
    check64(&spl, 7, store(reg(RSP), 1), rip(-0x10));
}

#[test]
fn byte_store_bh_dil_r8b() {
    // 88 /r, ModRM 00 111 000: mov [rax], bh | with REX: dil | REX.R: r8b (ModRM 00 000 000)
    check64(&[0x88, 0x38], 2, store(high(RBX), 1), based(RAX, 0, 8));
    check64(&[0x40, 0x88, 0x38], 3, store(reg(RDI), 1), based(RAX, 0, 8));
    check64(&[0x44, 0x88, 0x00], 3, store(reg(R8), 1), based(RAX, 0, 8));
}

#[test]
fn mov_r8d_disp8() {
    // REX.R 8B, ModRM 01 000 000, disp8 08: mov r8d, [rax+8]
    check64(
        &[0x44, 0x8b, 0x40, 0x08],
        4,
        load(reg(R8), 4),
        based(RAX, 8, 8),
    );
}

#[test]
fn linux_mmio_accessors() {
    // readb: mov al, [rdi]
    check64(&[0x8a, 0x07], 2, load(reg(RAX), 1), based(RDI, 0, 8));
    // readw: mov ax, [rdi]
    check64(&[0x66, 0x8b, 0x07], 3, load(reg(RAX), 2), based(RDI, 0, 8));
    // writel: mov [rdi], esi
    check64(&[0x89, 0x37], 2, store(reg(RSI), 4), based(RDI, 0, 8));
    // readq / writeq
    check64(&[0x48, 0x8b, 0x07], 3, load(reg(RAX), 8), based(RDI, 0, 8));
    check64(&[0x48, 0x89, 0x37], 3, store(reg(RSI), 8), based(RDI, 0, 8));
}

#[test]
fn disp32_with_sib() {
    // 8B, ModRM 10 000 100, SIB 00 100 100, disp32 0x100: mov eax, [rsp+0x100]
    check64(
        &[0x8b, 0x84, 0x24, 0x00, 0x01, 0x00, 0x00],
        7,
        load(reg(RAX), 4),
        based(RSP, 0x100, 8),
    );
}

#[test]
fn disp32_is_sign_extended() {
    // 8B, ModRM 10 000 000, disp32 0x80000000: mov eax, [rax-0x80000000]
    check64(
        &[0x8b, 0x80, 0x00, 0x00, 0x00, 0x80],
        6,
        load(reg(RAX), 4),
        based(RAX, -0x8000_0000, 8),
    );
}

#[test]
fn sib_scaled_index_disp8() {
    // REX.WR 89, ModRM 01 000 100, SIB 10 001 011, disp8 -8: mov [rbx+rcx*4-8], r8
    let d = decode_mem_access(&[0x4c, 0x89, 0x44, 0x8b, 0xf8], Mode::Long64).unwrap();
    assert_eq!(d.len, 5);
    assert_eq!(d.access, store(reg(R8), 8));
    assert_eq!(
        d.mem,
        MemOperand {
            base: Some(Base::Reg(RBX)),
            index: Some(RCX),
            scale: 4,
            disp: -8,
            addr_size: 8,
            segment: None
        }
    );
    let mut gpr = [0; 16];
    gpr[usize::from(RBX)] = 0x1000;
    gpr[usize::from(RCX)] = 3;
    assert_eq!(d.effective_address(&gpr, 0), 0x1000 + 12 - 8);
}

#[test]
fn sib_rex_x_index_r12_no_base() {
    // REX.X 8B, ModRM 00 000 100, SIB 10 100 101 + REX.X: index r12*4, no base, disp32 0x1000
    let d = decode_mem_access(
        &[0x42, 0x8b, 0x04, 0xa5, 0x00, 0x10, 0x00, 0x00],
        Mode::Long64,
    )
    .unwrap();
    assert_eq!(d.len, 8);
    assert_eq!(
        d.mem,
        MemOperand {
            base: None,
            index: Some(R12),
            scale: 4,
            disp: 0x1000,
            addr_size: 8,
            segment: None
        }
    );
}

#[test]
fn sib_index_100_means_none_whatever_the_scale() {
    // SIB 00 100 000 and 01 100 000: [rax]
    check64(&[0x8b, 0x04, 0x20], 3, load(reg(RAX), 4), based(RAX, 0, 8));
    check64(&[0x8b, 0x04, 0x60], 3, load(reg(RAX), 4), based(RAX, 0, 8));
}

#[test]
fn r12_and_r13_special_cases() {
    // REX.B, ModRM 00 000 100 still takes a SIB: SIB 00 100 100 + REX.B = [r12]
    check64(
        &[0x41, 0x8b, 0x04, 0x24],
        4,
        load(reg(RAX), 4),
        based(R12, 0, 8),
    );
    // REX.B, ModRM 01 000 101, disp8 0: [r13+0]
    check64(
        &[0x41, 0x8b, 0x45, 0x00],
        4,
        load(reg(RAX), 4),
        based(R13, 0, 8),
    );
    // REX.B, ModRM 00 000 101 is still RIP-relative, not r13.
    check64(
        &[0x41, 0x8b, 0x05, 0x04, 0x00, 0x00, 0x00],
        7,
        load(reg(RAX), 4),
        rip(4),
    );
    // REX.B, SIB base 101 with mod=00 is still "no base + disp32", not r13.
    check64(
        &[0x41, 0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00],
        8,
        load(reg(RAX), 4),
        absolute(0x1000, 8),
    );
}

#[test]
fn address_size_override_in_long_mode() {
    // 67 8B, ModRM 00 000 000: mov eax, [eax]
    check64(&[0x67, 0x8b, 0x00], 3, load(reg(RAX), 4), based(RAX, 0, 4));
    let d = decode_mem_access(&[0x67, 0x8b, 0x40, 0x10], Mode::Long64).unwrap();
    let mut gpr = [0; 16];
    gpr[0] = 0x1_ffff_fff8;
    assert_eq!(d.effective_address(&gpr, 0), 0x8, "32-bit address wraps");
}

// ---- 64-bit mode: C6/C7 immediates ---------------------------------------------------------

#[test]
fn mov_imm8_to_r12() {
    // REX.B C6 /0 ib, ModRM 00 000 100, SIB 00 100 100: mov byte [r12], 0xff
    check64(
        &[0x41, 0xc6, 0x04, 0x24, 0xff],
        5,
        store_imm(0xff, 1),
        based(R12, 0, 8),
    );
}

#[test]
fn mov_imm_sizes() {
    // C7 /0 id: mov dword [rax], 0xffffffff
    check64(
        &[0xc7, 0x00, 0xff, 0xff, 0xff, 0xff],
        6,
        store_imm(0xffff_ffff, 4),
        based(RAX, 0, 8),
    );
    // REX.W C7 /0 id: mov qword [rax], -1 (imm32 sign-extended)
    check64(
        &[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff],
        7,
        store_imm(u64::MAX, 8),
        based(RAX, 0, 8),
    );
    check64(
        &[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0x7f],
        7,
        store_imm(0x7fff_ffff, 8),
        based(RAX, 0, 8),
    );
    // 66 C7 /0 iw: mov word [rax], 0x1234
    check64(
        &[0x66, 0xc7, 0x00, 0x34, 0x12],
        5,
        store_imm(0x1234, 2),
        based(RAX, 0, 8),
    );
    // REX.W wins over 66: still an imm32.
    check64(
        &[0x66, 0x48, 0xc7, 0x00, 0x00, 0x00, 0x00, 0x80],
        8,
        store_imm(0xffff_ffff_8000_0000, 8),
        based(RAX, 0, 8),
    );
    // C7 /0, ModRM 01 000 000, disp8 8, imm32 1: the immediate follows the displacement.
    check64(
        &[0xc7, 0x40, 0x08, 0x01, 0x00, 0x00, 0x00],
        7,
        store_imm(1, 4),
        based(RAX, 8, 8),
    );
}

#[test]
fn c6_c7_other_extensions_rejected() {
    // C6 /1 is undefined; C6 F8 is XABORT, C7 F8 XBEGIN.
    err(
        Mode::Long64,
        &[0xc6, 0x08, 0x12],
        DecodeError::Unsupported { opcode: 0xc6 },
    );
    err(
        Mode::Long64,
        &[0xc6, 0xf8, 0x12],
        DecodeError::Unsupported { opcode: 0xc6 },
    );
    err(
        Mode::Long64,
        &[0xc7, 0xf8, 0, 0, 0, 0],
        DecodeError::Unsupported { opcode: 0xc7 },
    );
    // C6 /0 with mod=11 is a register destination.
    err(
        Mode::Long64,
        &[0xc6, 0xc0, 0x12],
        DecodeError::NotMemoryOperand,
    );
    // REX.R does not turn /0 into /8.
    check64(
        &[0x44, 0xc6, 0x00, 0x12],
        4,
        store_imm(0x12, 1),
        based(RAX, 0, 8),
    );
}

// ---- 64-bit mode: moffs, MOVZX/MOVSX/MOVSXD --------------------------------------------------

#[test]
fn moffs_long_mode() {
    // A1 + 8-byte offset: mov eax, [0xfee000b0]
    let a1 = [0xa1, 0xb0, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00];
    check64(&a1, 9, load(reg(RAX), 4), absolute(0xfee0_00b0, 8));
    // REX.W A3: mov [0xffff_8000_0000_0000], rax
    let a3 = [0x48, 0xa3, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0xff, 0xff];
    check64(
        &a3,
        10,
        store(reg(RAX), 8),
        absolute(0xffff_8000_0000_0000_u64 as i64, 8),
    );
    let d = decode_mem_access(&a3, Mode::Long64).unwrap();
    assert_eq!(d.effective_address(&[0; 16], 0), 0xffff_8000_0000_0000);
    // A0 / A2: AL
    check64(
        &[0xa0, 1, 2, 3, 4, 5, 6, 7, 8],
        9,
        load(reg(RAX), 1),
        absolute(0x0807_0605_0403_0201, 8),
    );
    check64(
        &[0xa2, 1, 0, 0, 0, 0, 0, 0, 0],
        9,
        store(reg(RAX), 1),
        absolute(1, 8),
    );
    // 67 A1: 4-byte offset.
    check64(
        &[0x67, 0xa1, 0x78, 0x56, 0x34, 0x12],
        6,
        load(reg(RAX), 4),
        absolute(0x1234_5678, 4),
    );
    // 66 A3: mov [moffs64], ax
    check64(
        &[0x66, 0xa3, 0, 0, 0, 0, 0, 0, 0, 0],
        10,
        store(reg(RAX), 2),
        absolute(0, 8),
    );
}

#[test]
fn movzx_movsx() {
    // 0F B6 /r, ModRM 00 001 000: movzx ecx, byte [rax]
    check64(
        &[0x0f, 0xb6, 0x08],
        3,
        load_ext(RCX, 1, Extend::Zero, 4),
        based(RAX, 0, 8),
    );
    // 0F B7: movzx eax, word [rdi]
    check64(
        &[0x0f, 0xb7, 0x07],
        3,
        load_ext(RAX, 2, Extend::Zero, 4),
        based(RDI, 0, 8),
    );
    // REX.W 0F BE: movsx rax, byte [rdi] (REX precedes the 0F escape)
    check64(
        &[0x48, 0x0f, 0xbe, 0x07],
        4,
        load_ext(RAX, 1, Extend::Sign, 8),
        based(RDI, 0, 8),
    );
    // 0F BF, ModRM 01 000 111, disp8 0x10: movsx eax, word [rdi+0x10]
    check64(
        &[0x0f, 0xbf, 0x47, 0x10],
        4,
        load_ext(RAX, 2, Extend::Sign, 4),
        based(RDI, 0x10, 8),
    );
    // 66 0F B6: movzx ax, byte [rdi]
    check64(
        &[0x66, 0x0f, 0xb6, 0x07],
        4,
        load_ext(RAX, 1, Extend::Zero, 2),
        based(RDI, 0, 8),
    );
    // REX.R 0F B6 ModRM 00 111 000 → r15d; the destination of a MOVZX is never a high byte.
    check64(
        &[0x44, 0x0f, 0xb6, 0x38],
        4,
        load_ext(15, 1, Extend::Zero, 4),
        based(RAX, 0, 8),
    );
    check64(
        &[0x0f, 0xb6, 0x20],
        3,
        load_ext(RSP, 1, Extend::Zero, 4),
        based(RAX, 0, 8),
    );
}

#[test]
fn movsxd() {
    // REX.W 63 /r, ModRM 00 000 011: movsxd rax, dword [rbx]
    check64(
        &[0x48, 0x63, 0x03],
        3,
        load_ext(RAX, 4, Extend::Sign, 8),
        based(RBX, 0, 8),
    );
    // Without REX.W: a plain 32-bit move.
    check64(
        &[0x63, 0x03],
        2,
        load_ext(RAX, 4, Extend::None, 4),
        based(RBX, 0, 8),
    );
    // In 32-bit code 63 is ARPL.
    err(
        Mode::Protected32,
        &[0x63, 0x03],
        DecodeError::Unsupported { opcode: 0x63 },
    );
}

// ---- prefixes ------------------------------------------------------------------------------

#[test]
fn segment_overrides_recorded() {
    // 65 REX.W 8B, ModRM 00 000 100, SIB 00 100 101, disp32 0x28: mov rax, gs:[0x28]
    let d =
        decode_mem_access(&[0x65, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0], Mode::Long64).unwrap();
    assert_eq!(
        (d.len, d.mem.segment, d.mem.disp),
        (9, Some(Segment::Gs), 0x28)
    );
    // The last override wins.
    let d = decode_mem_access(&[0x2e, 0x3e, 0x26, 0x36, 0x64, 0x8b, 0x00], Mode::Long64).unwrap();
    assert_eq!((d.len, d.mem.segment), (7, Some(Segment::Fs)));
    for (prefix, seg) in [
        (0x26, Segment::Es),
        (0x2e, Segment::Cs),
        (0x36, Segment::Ss),
        (0x3e, Segment::Ds),
        (0x64, Segment::Fs),
        (0x65, Segment::Gs),
    ] {
        let d = decode_mem_access(&[prefix, 0xa1, 0, 0, 0, 0], Mode::Protected32).unwrap();
        assert_eq!((d.len, d.mem.segment), (6, Some(seg)));
    }
}

#[test]
fn lock_and_rep_rejected() {
    err(Mode::Long64, &[0xf0, 0x89, 0x00], DecodeError::LockPrefix);
    err(Mode::Long64, &[0xf3, 0x89, 0x00], DecodeError::RepPrefix);
    err(
        Mode::Long64,
        &[0xf2, 0x0f, 0xb6, 0x00],
        DecodeError::RepPrefix,
    );
    err(
        Mode::Protected32,
        &[0x66, 0xf3, 0xa1, 0, 0, 0, 0],
        DecodeError::RepPrefix,
    );
    // Other opcodes report themselves: rep movsb is not ours.
    err(
        Mode::Long64,
        &[0xf3, 0xa4],
        DecodeError::Unsupported { opcode: 0xa4 },
    );
}

#[test]
fn rex_must_immediately_precede_the_opcode() {
    // REX.W then 66: the REX is ignored, so this is mov [rax], ax.
    check64(
        &[0x48, 0x66, 0x89, 0x00],
        4,
        store(reg(RAX), 2),
        based(RAX, 0, 8),
    );
    // Two REX prefixes: only the last one counts (REX.B here, not REX.W).
    check64(
        &[0x48, 0x41, 0x89, 0x00],
        4,
        store(reg(RAX), 4),
        based(8, 0, 8),
    );
    // REX.W wins over a preceding 66.
    check64(
        &[0x66, 0x48, 0x89, 0x00],
        4,
        store(reg(RAX), 8),
        based(RAX, 0, 8),
    );
}

#[test]
fn register_operands_are_not_memory() {
    err(Mode::Long64, &[0x89, 0xc0], DecodeError::NotMemoryOperand);
    err(Mode::Long64, &[0x8b, 0xc0], DecodeError::NotMemoryOperand);
    err(
        Mode::Long64,
        &[0x0f, 0xb6, 0xc0],
        DecodeError::NotMemoryOperand,
    );
    err(Mode::Real16, &[0x8a, 0xe0], DecodeError::NotMemoryOperand);
}

#[test]
fn unsupported_opcodes() {
    err(
        Mode::Long64,
        &[0x0f, 0x0b],
        DecodeError::Unsupported { opcode: 0x0f0b },
    );
    err(
        Mode::Long64,
        &[0x01, 0x00],
        DecodeError::Unsupported { opcode: 0x01 },
    );
    err(
        Mode::Long64,
        &[0xc4, 0xe2, 0x79, 0x18, 0x00],
        DecodeError::Unsupported { opcode: 0xc4 },
    );
    // 48 is DEC eax outside 64-bit mode.
    err(
        Mode::Protected32,
        &[0x48, 0x8b, 0x00],
        DecodeError::Unsupported { opcode: 0x48 },
    );
    err(
        Mode::Compat32,
        &[0x41, 0x8b, 0x00],
        DecodeError::Unsupported { opcode: 0x41 },
    );
}

#[test]
fn fifteen_byte_limit() {
    // 13 × 66 + 8B 00 = 15 bytes: fine.
    let mut bytes = [0x66u8; 16];
    bytes[13] = 0x8b;
    bytes[14] = 0x00;
    check64(&bytes[..15], 15, load(reg(RAX), 2), based(RAX, 0, 8));
    // 14 × 66 + 8B 00 = 16 bytes: too long, whether or not all bytes are present.
    let mut bytes = [0x66u8; 16];
    bytes[14] = 0x8b;
    bytes[15] = 0x00;
    err(Mode::Long64, &bytes, DecodeError::TooLong);
    err(Mode::Long64, &bytes[..15], DecodeError::TooLong);
    // An immediate that would end at byte 16.
    let mut bytes = [0x66u8; 20];
    bytes[9..15].copy_from_slice(&[0xc7, 0x80, 0, 0, 0, 0]);
    err(Mode::Long64, &bytes, DecodeError::TooLong);
    // Prefixes alone, forever.
    err(Mode::Long64, &[0x3e; 40], DecodeError::TooLong);
}

// ---- 32-bit and 16-bit modes ---------------------------------------------------------------

#[test]
fn protected32_absolute_disp32() {
    // 8B, ModRM 00 000 101: no RIP-relative outside 64-bit mode: mov eax, [0xfee00020]
    for mode in [Mode::Protected32, Mode::Compat32] {
        check(
            mode,
            &[0x8b, 0x05, 0x20, 0x00, 0xe0, 0xfe],
            6,
            load(reg(RAX), 4),
            absolute(0xfee0_0020_u32 as i32 as i64, 4),
        );
        let d = decode_mem_access(&[0x8b, 0x05, 0x20, 0x00, 0xe0, 0xfe], mode).unwrap();
        assert_eq!(d.effective_address(&[0; 16], 0x1234), 0xfee0_0020);
    }
}

#[test]
fn protected32_moffs_and_operand_size() {
    // A1 + 4-byte offset: mov eax, [0xfee00000]
    check(
        Mode::Protected32,
        &[0xa1, 0x00, 0x00, 0xe0, 0xfe],
        5,
        load(reg(RAX), 4),
        absolute(0xfee0_0000, 4),
    );
    // 66 A3: mov [0xfee00000], ax
    check(
        Mode::Protected32,
        &[0x66, 0xa3, 0x00, 0x00, 0xe0, 0xfe],
        6,
        store(reg(RAX), 2),
        absolute(0xfee0_0000, 4),
    );
    // 67 A1: 2-byte offset.
    check(
        Mode::Protected32,
        &[0x67, 0xa1, 0x34, 0x12],
        4,
        load(reg(RAX), 4),
        absolute(0x1234, 2),
    );
    // 66 C7 /0 iw, 8B with SIB.
    check(
        Mode::Protected32,
        &[0x66, 0xc7, 0x03, 0xcd, 0xab],
        5,
        store_imm(0xabcd, 2),
        based(RBX, 0, 4),
    );
    check(
        Mode::Protected32,
        &[0x89, 0x0c, 0x24],
        3,
        store(reg(RCX), 4),
        based(RSP, 0, 4),
    );
}

#[test]
fn addressing16_with_67_in_32bit_mode() {
    // 67 8B, ModRM 00 000 111: mov eax, [bx]
    check(
        Mode::Protected32,
        &[0x67, 0x8b, 0x07],
        3,
        load(reg(RAX), 4),
        based(RBX, 0, 2),
    );
    // 67 8B, ModRM 01 000 110, disp8 2: mov eax, [bp+2]
    check(
        Mode::Protected32,
        &[0x67, 0x8b, 0x46, 0x02],
        4,
        load(reg(RAX), 4),
        based(RBP, 2, 2),
    );
    // 67 8B, ModRM 00 000 110, disp16: mov eax, [0x1234]
    check(
        Mode::Protected32,
        &[0x67, 0x8b, 0x06, 0x34, 0x12],
        5,
        load(reg(RAX), 4),
        absolute(0x1234, 2),
    );
    // 67 8B, ModRM 10 000 010, disp16 -2: mov eax, [bp+si-2]
    let d = decode_mem_access(&[0x67, 0x8b, 0x82, 0xfe, 0xff], Mode::Protected32).unwrap();
    assert_eq!(d.len, 5);
    assert_eq!(
        d.mem,
        MemOperand {
            base: Some(Base::Reg(RBP)),
            index: Some(RSI),
            scale: 1,
            disp: -2,
            addr_size: 2,
            segment: None
        }
    );
    let mut gpr = [0; 16];
    gpr[usize::from(RBP)] = 0xffff_0001; // only the low 16 bits count, and the sum wraps
    assert_eq!(d.effective_address(&gpr, 0), 0xffff);
}

#[test]
fn real16_forms() {
    // 8B, ModRM 00 000 000: mov ax, [bx+si]
    let d = decode_mem_access(&[0x8b, 0x00], Mode::Real16).unwrap();
    assert_eq!((d.len, d.access), (2, load(reg(RAX), 2)));
    assert_eq!(
        d.mem,
        MemOperand {
            base: Some(Base::Reg(RBX)),
            index: Some(RSI),
            scale: 1,
            disp: 0,
            addr_size: 2,
            segment: None
        }
    );
    // 66 8B, ModRM 10 000 111, disp16 0x1000: mov eax, [bx+0x1000]
    check(
        Mode::Real16,
        &[0x66, 0x8b, 0x87, 0x00, 0x10],
        5,
        load(reg(RAX), 4),
        based(RBX, 0x1000, 2),
    );
    // 67 8B, ModRM 00 000 100, SIB 00 100 100: mov ax, [esp]
    check(
        Mode::Real16,
        &[0x67, 0x8b, 0x04, 0x24],
        4,
        load(reg(RAX), 2),
        based(RSP, 0, 4),
    );
    // A1 + 2-byte offset; 67 A1 + 4-byte offset.
    check(
        Mode::Real16,
        &[0xa1, 0x34, 0x12],
        3,
        load(reg(RAX), 2),
        absolute(0x1234, 2),
    );
    check(
        Mode::Real16,
        &[0x67, 0xa1, 0x78, 0x56, 0x34, 0x12],
        6,
        load(reg(RAX), 2),
        absolute(0x1234_5678, 4),
    );
    // C7 /0 iw: mov word [di], 0xbeef (ModRM 00 000 101)
    check(
        Mode::Real16,
        &[0xc7, 0x05, 0xef, 0xbe],
        4,
        store_imm(0xbeef, 2),
        based(RDI, 0, 2),
    );
    // 0F B6 with 16-bit destination: movzx ax, byte [si]
    check(
        Mode::Real16,
        &[0x0f, 0xb6, 0x04],
        3,
        load_ext(RAX, 1, Extend::Zero, 2),
        based(RSI, 0, 2),
    );
    // 88 /r, ModRM 00 100 111: mov [bx], ah
    check(
        Mode::Real16,
        &[0x88, 0x27],
        2,
        store(high(RAX), 1),
        based(RBX, 0, 2),
    );
}

#[test]
fn mode_from_cpu_state() {
    assert_eq!(
        Mode::from_cpu_state(false, false, false, false, false),
        Mode::Real16
    );
    assert_eq!(
        Mode::from_cpu_state(false, false, false, false, true),
        Mode::Real16
    );
    assert_eq!(
        Mode::from_cpu_state(true, false, true, false, true),
        Mode::Real16,
        "virtual-8086"
    );
    assert_eq!(
        Mode::from_cpu_state(true, false, false, false, true),
        Mode::Protected32
    );
    assert_eq!(
        Mode::from_cpu_state(true, false, false, false, false),
        Mode::Real16
    );
    assert_eq!(
        Mode::from_cpu_state(true, true, false, true, false),
        Mode::Long64
    );
    assert_eq!(
        Mode::from_cpu_state(true, true, false, false, true),
        Mode::Compat32
    );
    assert_eq!(
        Mode::from_cpu_state(true, true, false, false, false),
        Mode::Real16
    );
}

// ---- truncation ----------------------------------------------------------------------------

#[test]
fn truncated_at_every_length() {
    let cases: [(Mode, &[u8]); 10] = [
        (
            Mode::Long64,
            &[0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0xc0],
        ),
        (
            Mode::Long64,
            &[0xc7, 0x05, 0x10, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12],
        ),
        (
            Mode::Long64,
            &[0x48, 0xa3, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0xff, 0xff],
        ),
        (Mode::Long64, &[0x41, 0xc6, 0x04, 0x24, 0xff]),
        (
            Mode::Long64,
            &[0x65, 0x66, 0x0f, 0xb7, 0x84, 0x24, 0x00, 0x01, 0x00, 0x00],
        ),
        (Mode::Long64, &[0x4c, 0x89, 0x44, 0x8b, 0xf8]),
        (
            Mode::Long64,
            &[
                0x48, 0xc7, 0x80, 0x00, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
            ],
        ),
        (
            Mode::Protected32,
            &[0x67, 0x66, 0xc7, 0x86, 0x00, 0x10, 0x34, 0x12],
        ),
        (Mode::Real16, &[0x67, 0xa1, 0x78, 0x56, 0x34, 0x12]),
        (Mode::Real16, &[0x66, 0x8b, 0x87, 0x00, 0x10]),
    ];
    for (mode, bytes) in cases {
        let full = decode_mem_access(bytes, mode).unwrap();
        assert_eq!(usize::from(full.len), bytes.len(), "{bytes:02x?}");
        for n in 0..bytes.len() {
            err(mode, &bytes[..n], DecodeError::Truncated);
        }
    }
}

#[test]
fn empty_input() {
    for mode in [
        Mode::Long64,
        Mode::Compat32,
        Mode::Protected32,
        Mode::Real16,
    ] {
        err(mode, &[], DecodeError::Truncated);
    }
}

// ---- register write-back -------------------------------------------------------------------

#[test]
fn merge_register_rules() {
    let old = 0x1111_2222_3333_4444;
    // 32-bit writes zero-extend.
    assert_eq!(merge_register(u64::MAX, 0x1234_5678, 4, false), 0x1234_5678);
    assert_eq!(
        merge_register(old, 0xdead_beef_8765_4321, 4, false),
        0x8765_4321
    );
    // 16-bit and 8-bit writes merge.
    assert_eq!(merge_register(old, 0xabcd, 2, false), 0x1111_2222_3333_abcd);
    assert_eq!(
        merge_register(old, 0xffff_1234, 2, false),
        0x1111_2222_3333_1234
    );
    assert_eq!(merge_register(old, 0xab, 1, false), 0x1111_2222_3333_44ab);
    // AH/CH/DH/BH write bits 15:8.
    assert_eq!(merge_register(old, 0xab, 1, true), 0x1111_2222_3333_ab44);
    assert_eq!(merge_register(old, 0x1ab, 1, true), 0x1111_2222_3333_ab44);
    // 64-bit writes replace.
    assert_eq!(merge_register(old, 0x5555, 8, false), 0x5555);
    // Nonsense sizes leave the register alone.
    assert_eq!(merge_register(old, 0x5555, 3, false), old);
    assert_eq!(merge_register(old, 0x5555, 0, true), old);
}

#[test]
fn extend_value_rules() {
    assert_eq!(extend_value(0x80, 1, Extend::Zero, 4), 0x80);
    assert_eq!(extend_value(0x80, 1, Extend::Sign, 4), 0xffff_ff80);
    assert_eq!(
        extend_value(0x80, 1, Extend::Sign, 8),
        0xffff_ffff_ffff_ff80
    );
    assert_eq!(extend_value(0xff, 1, Extend::Sign, 2), 0xffff);
    assert_eq!(extend_value(0x7fff, 2, Extend::Sign, 8), 0x7fff);
    assert_eq!(
        extend_value(0x8000_0000, 4, Extend::Sign, 8),
        0xffff_ffff_8000_0000
    );
    // Bits above the access size are ignored.
    assert_eq!(extend_value(0xffff_ff01, 1, Extend::Sign, 4), 1);
    assert_eq!(extend_value(0x1_2345_6789, 4, Extend::None, 4), 0x2345_6789);
}

#[test]
fn load_and_store_values_end_to_end() {
    let mut gpr = [0u64; 16];
    gpr[usize::from(RAX)] = 0xdead_beef_0000_1234;
    // movsx eax, byte [rdi] loading 0xff: eax = -1, upper half cleared.
    let d = decode_mem_access(&[0x0f, 0xbe, 0x07], Mode::Long64).unwrap();
    assert_eq!(
        d.load_result(&gpr, 0xff),
        Some((RAX, 0x0000_0000_ffff_ffff))
    );
    assert_eq!(d.store_value(&gpr), None);
    // movsx ax, byte [rdi]: upper 48 bits preserved.
    let d = decode_mem_access(&[0x66, 0x0f, 0xbe, 0x07], Mode::Long64).unwrap();
    assert_eq!(
        d.load_result(&gpr, 0xff),
        Some((RAX, 0xdead_beef_0000_ffff))
    );
    // movsxd rax, [rbx]
    let d = decode_mem_access(&[0x48, 0x63, 0x03], Mode::Long64).unwrap();
    assert_eq!(
        d.load_result(&gpr, 0x8000_0000),
        Some((RAX, 0xffff_ffff_8000_0000))
    );
    // mov ah, [rax] (8A, ModRM 00 100 000)
    let d = decode_mem_access(&[0x8a, 0x20], Mode::Long64).unwrap();
    assert_eq!(
        d.load_result(&gpr, 0x56),
        Some((RAX, 0xdead_beef_0000_5634))
    );
    // mov [rip+x], ah stores bits 15:8.
    let d = decode_mem_access(&[0x88, 0x25, 0, 0, 0, 0], Mode::Long64).unwrap();
    assert_eq!(d.store_value(&gpr), Some(0x12));
    assert_eq!(d.load_result(&gpr, 0), None);
    // mov [rdi], esi stores the low 32 bits.
    gpr[usize::from(RSI)] = 0x1234_5678_9abc_def0;
    let d = decode_mem_access(&[0x89, 0x37], Mode::Long64).unwrap();
    assert_eq!(d.store_value(&gpr), Some(0x9abc_def0));
    assert!(d.access.is_write());
    assert_eq!(d.access.size(), 4);
    // Immediates come back as-is.
    let d = decode_mem_access(&[0x48, 0xc7, 0x00, 0xfe, 0xff, 0xff, 0xff], Mode::Long64).unwrap();
    assert_eq!(d.store_value(&gpr), Some(0xffff_ffff_ffff_fffe));
}

// ---- random input --------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Bytes that steer the decoder into its interesting paths.
const INTERESTING: [u8; 24] = [
    0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x3e, 0x65, 0x40, 0x41, 0x48, 0x4f, 0x88, 0x89, 0x8a, 0x8b,
    0xc6, 0xc7, 0xa1, 0xa2, 0x0f, 0xb6, 0xbf, 0x63,
];

#[test]
fn random_bytes_never_panic_and_lengths_are_sane() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for _ in 0..200_000 {
        let mut buf = [0u8; 20];
        let n = (rng.next() % 21) as usize;
        for b in buf.iter_mut().take(n) {
            let r = rng.next();
            *b = if r & 1 == 0 {
                INTERESTING[((r >> 8) % INTERESTING.len() as u64) as usize]
            } else {
                (r >> 16) as u8
            };
        }
        let bytes = &buf[..n];
        let mode = [
            Mode::Long64,
            Mode::Compat32,
            Mode::Protected32,
            Mode::Real16,
        ][(rng.next() % 4) as usize];
        match decode_mem_access(bytes, mode) {
            Ok(d) => {
                ok += 1;
                let len = usize::from(d.len);
                assert!(
                    (1..=MAX_INSN_LEN).contains(&len) && len <= bytes.len(),
                    "{bytes:02x?}"
                );
                assert!(matches!(d.access.size(), 1 | 2 | 4 | 8));
                assert!(
                    matches!(d.mem.scale, 1 | 2 | 4 | 8) && matches!(d.mem.addr_size, 2 | 4 | 8)
                );
                match d.access {
                    MemAccess::Load { dst, dst_size, .. } => {
                        assert!(dst.index < 16 && matches!(dst_size, 1 | 2 | 4 | 8));
                    }
                    MemAccess::Store {
                        src: Operand::Reg(r),
                        ..
                    } => assert!(r.index < 16),
                    MemAccess::Store { .. } => {}
                }
                // The decoded bytes alone decode the same; any shorter prefix is truncated.
                assert_eq!(decode_mem_access(&bytes[..len], mode), Ok(d));
                assert_eq!(
                    decode_mem_access(&bytes[..len - 1], mode),
                    Err(DecodeError::Truncated)
                );
                let _ = d.effective_address(&[u64::MAX; 16], u64::MAX);
            }
            Err(DecodeError::Truncated) => assert!(n < MAX_INSN_LEN, "{bytes:02x?}"),
            Err(_) => {}
        }
    }
    assert!(
        ok > 1000,
        "the generator should reach successful decodes ({ok})"
    );
}
