//! Fuzz targets of the MOV-family decoder (see `docs/fuzzing.md`): the bytes at guest RIP are
//! guest-controlled.
//!
//! - `fuzz_decoder`: arbitrary and mutated instruction bytes in every mode. No panic, and a
//!   decoded instruction has a length of 1..=15 inside the bytes, decodes the same from exactly
//!   its own bytes and with other bytes after it, and has sizes, registers and scale in range;
//!   a truncated input is shorter than 15 bytes.
//! - `fuzz_decoder_encoded`: instructions encoded from their parts by an encoder written from
//!   APM vol. 3 chapter 1 decode back to those parts with the encoded length.

use hostfuzz::proptest;
use hostfuzz::proptest::prelude::*;
use hostfuzz::Bytes;
use insn::{
    decode_mem_access, Base, DecodeError, Decoded, Extend, MemAccess, Mode, Operand, Reg, Segment,
    MAX_INSN_LEN,
};

const MODES: [Mode; 4] = [
    Mode::Long64,
    Mode::Compat32,
    Mode::Protected32,
    Mode::Real16,
];

/// The MOV forms Linux's MMIO accessors and firmware use (the seeds).
fn seeds() -> Vec<Vec<u8>> {
    [
        &[0x8b, 0x00][..],                                    // mov eax, [rax]       readl
        &[0x89, 0x02],                                        // mov [rdx], eax       writel
        &[0x48, 0x8b, 0x05, 0x78, 0x56, 0x34, 0x12],          // mov rax, [rip+disp32] readq
        &[0x66, 0x89, 0x10],                                  // mov [rax], dx        writew
        &[0x88, 0x50, 0x10],                                  // mov [rax+0x10], dl   writeb
        &[0x0f, 0xb6, 0x07],                                  // movzx eax, byte [rdi]
        &[0x0f, 0xb7, 0x47, 0x04],                            // movzx eax, word [rdi+4]
        &[0x48, 0x63, 0x04, 0x8d, 0x00, 0x10, 0x00, 0x00],    // movsxd rax, [rcx*4+0x1000]
        &[0xc7, 0x80, 0x00, 0x01, 0x00, 0x00, 0x01, 0, 0, 0], // mov dword [rax+0x100], 1
        &[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff],          // mov qword [rax], -1
        &[0x41, 0xc6, 0x04, 0x24, 0x7f],                      // mov byte [r12], 0x7f
        &[0x48, 0xa1, 0, 0, 0xe0, 0xfe, 0, 0, 0, 0],          // mov rax, [moffs64]
        &[0x67, 0x8b, 0x46, 0x02],                            // mov eax, [esi+2]
        &[0x65, 0x4c, 0x89, 0x44, 0x24, 0x08],                // mov gs:[rsp+8], r8
        &[0x8b, 0x87, 0x34, 0x12],                            // 16-bit: mov ax, [bx+0x1234]
        &[0x26, 0x66, 0x89, 0x1e, 0x00, 0x80],                // 16-bit: mov es:[0x8000], ebx
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

/// Checks one decode; returns whether it decoded.
fn check(bytes: &[u8], mode: Mode) -> bool {
    let d = match decode_mem_access(bytes, mode) {
        Ok(d) => d,
        Err(DecodeError::Truncated) => {
            assert!(bytes.len() < MAX_INSN_LEN, "Truncated with 15 bytes there");
            return false;
        }
        Err(DecodeError::TooLong) => {
            assert!(
                bytes.len() >= MAX_INSN_LEN,
                "TooLong from {} bytes",
                bytes.len()
            );
            return false;
        }
        Err(_) => return false,
    };
    let len = usize::from(d.len);
    assert!(
        (1..=MAX_INSN_LEN).contains(&len) && len <= bytes.len(),
        "length {len}"
    );
    // The instruction is exactly its own bytes.
    assert_eq!(decode_mem_access(&bytes[..len], mode), Ok(d));
    let mut longer = bytes[..len].to_vec();
    longer.extend_from_slice(&[0xf0, 0x0f, 0xff, 0x66]);
    assert_eq!(decode_mem_access(&longer, mode), Ok(d));
    // Removing the last byte leaves an incomplete instruction.
    assert_eq!(
        decode_mem_access(&bytes[..len - 1], mode),
        Err(DecodeError::Truncated)
    );
    invariants(&d, mode);
    true
}

fn invariants(d: &Decoded, mode: Mode) {
    let sizes = [1, 2, 4, 8];
    let reg_ok = |r: Reg| r.index < 16 && (!r.high_byte || r.index < 4);
    match d.access {
        MemAccess::Load {
            dst,
            size,
            extend,
            dst_size,
        } => {
            assert!(sizes.contains(&size) && sizes.contains(&dst_size) && reg_ok(dst));
            assert!(dst_size >= size || extend == Extend::None);
            assert!(!dst.high_byte || dst_size == 1);
        }
        MemAccess::Store { src, size } => {
            assert!(sizes.contains(&size));
            if let Operand::Reg(r) = src {
                assert!(reg_ok(r) && (!r.high_byte || size == 1));
            }
        }
    }
    let m = &d.mem;
    assert!(sizes.contains(&m.scale) && (m.index.is_some() || m.scale == 1));
    match mode {
        Mode::Long64 => assert!(m.addr_size == 8 || m.addr_size == 4),
        _ => assert!(m.addr_size == 2 || m.addr_size == 4),
    }
    assert!(m.index.is_none_or(|i| i < 16));
    match m.base {
        Some(Base::Reg(r)) => assert!(r < 16),
        Some(Base::Rip) => assert_eq!(mode, Mode::Long64),
        None => {}
    }
    let gpr: [u64; 16] =
        core::array::from_fn(|i| 0x0123_4567_89ab_cdefu64.rotate_left(i as u32 * 7));
    let ea = d.effective_address(&gpr, 0xffff_ffff_ffff_fff0);
    assert_eq!(ea & !insn::size_mask(m.addr_size), 0);
    let size = d.access.size();
    if let Some(v) = d.store_value(&gpr) {
        assert_eq!(v & !insn::size_mask(size), 0);
        assert!(d.access.is_write());
    }
    for raw in [0, u64::MAX, 0x80, 0x8000_0000] {
        if let Some((index, _)) = d.load_result(&gpr, raw) {
            assert!(index < 16 && !d.access.is_write());
        }
    }
}

/// Bytes and the mode to decode them in (`None`: every mode, as for the corpus files).
#[test]
fn fuzz_decoder() {
    hostfuzz::run(
        "insn",
        50_000,
        |b| Some((Bytes(b), None)),
        || {
            (
                hostfuzz::inputs("insn", Vec::new(), 20),
                proptest::option::weighted(0.9, 0..MODES.len()),
            )
        },
        |(b, mode): (Bytes, Option<usize>)| match mode {
            Some(m) => check(&b, MODES[m]),
            None => MODES.iter().fold(false, |any, &m| check(&b, m) | any),
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The encoder: an instruction from its parts (APM vol. 3 §1.1-§1.7).

/// The MOV-family forms.
const OPCODES: [u16; 15] = [
    0x88, 0x89, 0x8a, 0x8b, 0xc6, 0xc7, 0xa0, 0xa1, 0xa2, 0xa3, 0x0fb6, 0x0fb7, 0x0fbe, 0x0fbf,
    0x63,
];

/// An instruction's parts.
#[derive(Clone, Debug)]
struct Parts {
    mode: Mode,
    /// Legacy prefixes in order, from 66, 67, 26, 2E, 36, 3E, 64, 65.
    prefixes: Vec<u8>,
    /// REX (64-bit mode only), right before the opcode.
    rex: Option<u8>,
    opcode: u16,
    /// mod (0..=2), reg, r/m.
    modrm: (u8, u8, u8),
    sib: u8,
    disp: u64,
    imm: u64,
}

/// What the parts must decode to.
struct Expected {
    bytes: Vec<u8>,
    access: MemAccess,
    base: Option<Base>,
    index: Option<u8>,
    scale: u8,
    disp: i64,
    addr_size: u8,
    segment: Option<Segment>,
}

fn sign_extend(v: u64, bytes: u8) -> i64 {
    let shift = 64 - 8 * u32::from(bytes);
    ((v << shift) as i64) >> shift
}

impl Parts {
    fn encode(&self) -> Expected {
        let has = |p: u8| self.prefixes.contains(&p);
        let rex = self.rex.unwrap_or(0);
        let (w, r, x, b) = (rex & 8 != 0, (rex >> 2) & 1, (rex >> 1) & 1, rex & 1);
        let default_osz = if self.mode == Mode::Real16 { 2 } else { 4 };
        let osz = if w {
            8
        } else if has(0x66) {
            6 - default_osz
        } else {
            default_osz
        };
        let addr_size = match (self.mode, has(0x67)) {
            (Mode::Long64, false) => 8,
            (Mode::Long64, true) => 4,
            (Mode::Real16, false) => 2,
            (Mode::Real16, true) => 4,
            (_, false) => 4,
            (_, true) => 2,
        };
        let segment = self.prefixes.iter().rev().find_map(|p| match p {
            0x26 => Some(Segment::Es),
            0x2e => Some(Segment::Cs),
            0x36 => Some(Segment::Ss),
            0x3e => Some(Segment::Ds),
            0x64 => Some(Segment::Fs),
            0x65 => Some(Segment::Gs),
            _ => None,
        });

        let mut bytes = self.prefixes.clone();
        if let Some(rex) = self.rex {
            bytes.push(rex);
        }
        if self.opcode > 0xff {
            bytes.push(0x0f);
        }
        bytes.push(self.opcode as u8);

        let (md, reg, rm) = self.modrm;
        let reg = if matches!(self.opcode, 0xc6 | 0xc7) {
            0
        } else {
            reg
        };
        let (base, mut index, mut scale, disp_size);
        if (0xa0..=0xa3).contains(&self.opcode) {
            // moffs: no ModRM, an address-sized offset.
            base = None;
            index = None;
            scale = 1;
            disp_size = addr_size;
        } else {
            bytes.push(md << 6 | reg << 3 | rm);
            if addr_size == 2 {
                // §1.4.3, Table 1-13: the eight base/index pairs.
                const BX: u8 = 3;
                const BP: u8 = 5;
                const SI: u8 = 6;
                const DI: u8 = 7;
                let pairs = [
                    (Some(BX), Some(SI)),
                    (Some(BX), Some(DI)),
                    (Some(BP), Some(SI)),
                    (Some(BP), Some(DI)),
                    (Some(SI), None),
                    (Some(DI), None),
                    (Some(BP), None),
                    (Some(BX), None),
                ];
                let (bs, ix) = if md == 0 && rm == 6 {
                    (None, None)
                } else {
                    pairs[usize::from(rm)]
                };
                base = bs.map(Base::Reg);
                index = ix;
                scale = 1;
                disp_size = match (md, bs) {
                    (0, None) | (2, _) => 2,
                    (1, _) => 1,
                    _ => 0,
                };
            } else {
                // §1.4.1, §1.4.2, §1.7: SIB, disp32 forms, RIP-relative.
                index = None;
                scale = 1;
                let mut dsize = [0, 1, 4][usize::from(md)];
                if rm == 4 {
                    bytes.push(self.sib);
                    let i = (self.sib >> 3) & 7 | x << 3;
                    if i != 4 {
                        index = Some(i);
                        scale = 1 << (self.sib >> 6);
                    }
                    if self.sib & 7 == 5 && md == 0 {
                        base = None;
                        dsize = 4;
                    } else {
                        base = Some(Base::Reg(self.sib & 7 | b << 3));
                    }
                } else if rm == 5 && md == 0 {
                    base = (self.mode == Mode::Long64).then_some(Base::Rip);
                    dsize = 4;
                } else {
                    base = Some(Base::Reg(rm | b << 3));
                }
                disp_size = dsize;
            }
        }
        let disp_raw = match disp_size {
            0 => 0,
            n => self.disp & insn::size_mask(n),
        };
        bytes.extend_from_slice(&disp_raw.to_le_bytes()[..usize::from(disp_size)]);
        let disp = if (0xa0..=0xa3).contains(&self.opcode) {
            disp_raw as i64
        } else if disp_size == 0 {
            0
        } else {
            sign_extend(disp_raw, disp_size)
        };

        let rex_present = self.rex.is_some();
        let byte_reg = |n: u8| {
            if !rex_present && (4..8).contains(&n) {
                Reg {
                    index: n - 4,
                    high_byte: true,
                }
            } else {
                Reg {
                    index: n,
                    high_byte: false,
                }
            }
        };
        let full = |n: u8| Reg {
            index: n,
            high_byte: false,
        };
        let regno = reg | r << 3;
        let load = |dst, size, extend, dst_size| MemAccess::Load {
            dst,
            size,
            extend,
            dst_size,
        };
        let access = match self.opcode {
            0x88 => MemAccess::Store {
                src: Operand::Reg(byte_reg(regno)),
                size: 1,
            },
            0x89 => MemAccess::Store {
                src: Operand::Reg(full(regno)),
                size: osz,
            },
            0x8a => load(byte_reg(regno), 1, Extend::None, 1),
            0x8b => load(full(regno), osz, Extend::None, osz),
            0xc6 | 0xc7 => {
                let size = if self.opcode == 0xc6 { 1 } else { osz };
                let imm_size = size.min(4);
                let raw = self.imm & insn::size_mask(imm_size);
                bytes.extend_from_slice(&raw.to_le_bytes()[..usize::from(imm_size)]);
                let imm = if size == 8 {
                    sign_extend(raw, 4) as u64
                } else {
                    raw
                };
                MemAccess::Store {
                    src: Operand::Imm(imm),
                    size,
                }
            }
            0xa0 => load(full(0), 1, Extend::None, 1),
            0xa1 => load(full(0), osz, Extend::None, osz),
            0xa2 => MemAccess::Store {
                src: Operand::Reg(full(0)),
                size: 1,
            },
            0xa3 => MemAccess::Store {
                src: Operand::Reg(full(0)),
                size: osz,
            },
            0x0fb6 => load(full(regno), 1, Extend::Zero, osz),
            0x0fb7 => load(full(regno), 2, Extend::Zero, osz),
            0x0fbe => load(full(regno), 1, Extend::Sign, osz),
            0x0fbf => load(full(regno), 2, Extend::Sign, osz),
            _ if w => load(full(regno), 4, Extend::Sign, 8), // 63: MOVSXD
            _ => load(full(regno), osz, Extend::None, osz),
        };
        Expected {
            bytes,
            access,
            base,
            index,
            scale,
            disp,
            addr_size,
            segment,
        }
    }
}

fn parts() -> impl Strategy<Value = Parts> {
    let prefix = prop_oneof![
        Just(0x66u8),
        Just(0x67),
        Just(0x26),
        Just(0x2e),
        Just(0x36),
        Just(0x3e),
        Just(0x64),
        Just(0x65)
    ];
    (
        0..MODES.len(),
        proptest::collection::vec(prefix, 0..5),
        any::<Option<u8>>(),
        0..OPCODES.len(),
        (0..3u8, 0..8u8, 0..8u8),
        any::<u8>(),
        hostfuzz::boundary_value(),
        hostfuzz::boundary_value(),
    )
        .prop_map(|(mode, prefixes, rex, op, modrm, sib, disp, imm)| {
            let mode = MODES[mode];
            let long = mode == Mode::Long64;
            Parts {
                mode,
                prefixes,
                rex: rex.filter(|_| long).map(|r| 0x40 | (r & 15)),
                // MOVSXD exists in 64-bit mode only (63 is ARPL elsewhere).
                opcode: match OPCODES[op] {
                    0x63 if !long => 0x8b,
                    o => o,
                },
                modrm,
                sib,
                disp,
                imm,
            }
        })
}

/// Encoded instructions decode to their parts, or are too long.
#[test]
fn fuzz_decoder_encoded() {
    hostfuzz::run(
        "insn-encoded",
        50_000,
        |_| None,
        parts,
        |p: Parts| {
            let e = p.encode();
            let got = decode_mem_access(&e.bytes, p.mode);
            if e.bytes.len() > MAX_INSN_LEN {
                assert_eq!(got, Err(DecodeError::TooLong), "{:02x?}", e.bytes);
                return false;
            }
            let d = got.unwrap_or_else(|err| panic!("{:02x?} refused: {err:?}", e.bytes));
            assert_eq!(usize::from(d.len), e.bytes.len(), "{:02x?}", e.bytes);
            assert_eq!(d.opcode, p.opcode);
            assert_eq!(d.access, e.access, "{:02x?}", e.bytes);
            let m = d.mem;
            assert_eq!(
                (m.base, m.index, m.scale, m.disp, m.addr_size, m.segment),
                (e.base, e.index, e.scale, e.disp, e.addr_size, e.segment),
                "{:02x?}",
                e.bytes
            );
            assert!(check(&e.bytes, p.mode));
            true
        },
    );
}

/// Writes the seeds into the corpus: `cargo test -p insn --test fuzz -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing the seeds"]
fn write_seed_corpus() {
    for (i, s) in seeds().iter().enumerate() {
        hostfuzz::write_seed("insn", &format!("seed-{i:02}.bin"), s);
    }
}
