//! x86 instruction decoding for MMIO emulation in didvisor.
//!
//! QEMU's SVM emulation provides neither decode assists nor NRIP save, so on a nested page fault
//! for a guest-physical address that is not RAM (an emulated MMIO device, or an address owned by
//! nobody) the hypervisor must decode the faulting instruction itself: its exact length (to
//! advance RIP), whether it reads or writes memory, the access size, and the register or
//! immediate involved. Guests (Linux `readl`/`writel`/`readq`/… and friends) touch MMIO with the
//! plain MOV family, which is all this crate decodes:
//!
//! | opcode | form | APM vol. 3 ch. 3 |
//! |---|---|---|
//! | `88 /r`, `89 /r` | `MOV r/m, reg` (store) | MOV |
//! | `8A /r`, `8B /r` | `MOV reg, r/m` (load) | MOV |
//! | `C6 /0 ib`, `C7 /0 iw/id` | `MOV r/m, imm` (store; `REX.W C7` sign-extends imm32) | MOV |
//! | `A0`–`A3` | `MOV AL/rAX, moffs` and `MOV moffs, AL/rAX` | MOV |
//! | `0F B6 /r`, `0F B7 /r` | `MOVZX reg, r/m8` / `r/m16` | MOVZX |
//! | `0F BE /r`, `0F BF /r` | `MOVSX reg, r/m8` / `r/m16` | MOVSX |
//! | `63 /r` (64-bit mode) | `MOVSXD reg, r/m32` (sign-extends with `REX.W`) | MOVSXD |
//!
//! Spec: *AMD64 Architecture Programmer's Manual, Volume 3: General-Purpose and System
//! Instructions*, publication 24594, chapter 1 "Instruction Encoding" — §1.1 (instruction byte
//! order, the 15-byte limit), §1.2 (legacy prefixes: operand-size `66`, address-size `67`,
//! segment overrides, `LOCK`, `REP`; the REX prefix), §1.4 (ModRM and SIB, 16-bit and 32/64-bit
//! addressing), §1.5 (displacements), §1.6 (immediates), §1.7 (RIP-relative addressing) — and
//! the MOV, MOVZX, MOVSX and MOVSXD pages of chapter 3.
//!
//! Module layout (all private): `cursor` reads bytes under the 15-byte limit, `prefix` parses
//! legacy and REX prefixes, `modrm` decodes the memory operand, `mov` knows the opcodes.
//!
//! Policy decisions (documented on [`DecodeError`]):
//! * `LOCK` (`F0`) on any of these opcodes raises `#UD` on hardware, so it is rejected with
//!   [`DecodeError::LockPrefix`] (the caller should inject `#UD`).
//! * `REP`/`REPNE` (`F2`/`F3`) are rejected with [`DecodeError::RepPrefix`]. (`F3` is the HLE
//!   `XRELEASE` hint on `88`/`89`/`C6`/`C7`, and `F2`/`F3` otherwise reserved; no MMIO accessor
//!   emits them.)
//! * Segment overrides are recorded in [`MemOperand::segment`] but otherwise ignored: the
//!   faulting guest-physical address is already known from EXITINFO2.
//!
//! The bytes are guest-controlled: the decoder never panics, never reads past the slice, and
//! never reports a length above 15 or above the slice length. The crate is `no_std`, without
//! `alloc`, and has no `unsafe` code.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cursor;
mod modrm;
mod mov;
mod prefix;
#[cfg(test)]
mod tests;

/// The architectural maximum instruction length (APM vol. 3 §1.1); longer raises `#GP`.
pub const MAX_INSN_LEN: usize = 15;

/// The processor mode that determines default operand and address sizes (APM vol. 3 §1.2.2,
/// §1.2.3, tables "Operand-Size Overrides" and "Address-Size Overrides").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 64-bit mode (EFER.LMA=1, CS.L=1): 32-bit operands, 64-bit addresses, REX available.
    Long64,
    /// Compatibility mode with a 32-bit code segment (EFER.LMA=1, CS.L=0, CS.D=1).
    Compat32,
    /// Protected mode with a 32-bit code segment (CR0.PE=1, CS.D=1).
    Protected32,
    /// Any 16-bit code segment: real mode, virtual-8086 mode, or a protected/compatibility-mode
    /// segment with CS.D=0. The decoding rules are the same for all of them.
    Real16,
}

impl Mode {
    /// The mode as determined by the guest's control state: CR0.PE, EFER.LMA, RFLAGS.VM and the
    /// L and D attributes of the CS descriptor (APM vol. 2 §1.2, §4.8.1).
    pub fn from_cpu_state(
        cr0_pe: bool,
        efer_lma: bool,
        rflags_vm: bool,
        cs_l: bool,
        cs_d: bool,
    ) -> Mode {
        if !cr0_pe || (rflags_vm && !efer_lma) {
            Mode::Real16
        } else if efer_lma && cs_l {
            Mode::Long64
        } else if !cs_d {
            Mode::Real16
        } else if efer_lma {
            Mode::Compat32
        } else {
            Mode::Protected32
        }
    }

    /// Default operand size in bytes (before `66`/REX.W).
    fn default_operand_size(self) -> u8 {
        match self {
            Mode::Real16 => 2,
            _ => 4,
        }
    }

    /// Default address size in bytes (before `67`).
    fn default_address_size(self) -> u8 {
        match self {
            Mode::Long64 => 8,
            Mode::Compat32 | Mode::Protected32 => 4,
            Mode::Real16 => 2,
        }
    }
}

/// A general-purpose register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reg {
    /// 0..=15 in the architectural order: rAX, rCX, rDX, rBX, rSP, rBP, rSI, rDI, r8…r15.
    pub index: u8,
    /// The legacy high-byte register AH/CH/DH/BH (bits 15:8 of register `index` 0..=3); only for
    /// byte operands encoded without any REX prefix (APM vol. 3 §1.2.7 "REX Prefix", §1.8
    /// "Encoding Considerations Using REX").
    pub high_byte: bool,
}

impl Reg {
    const fn new(index: u8) -> Reg {
        Reg {
            index: index & 15,
            high_byte: false,
        }
    }

    /// The byte register named by a 4-bit register number (REX.R/REX.B already merged in).
    /// Without a REX prefix, numbers 4..=7 name AH, CH, DH, BH; with any REX prefix they name
    /// SPL, BPL, SIL, DIL (APM vol. 3 §1.2.7).
    const fn byte(number: u8, rex_present: bool) -> Reg {
        if !rex_present && number >= 4 && number < 8 {
            Reg {
                index: number - 4,
                high_byte: true,
            }
        } else {
            Reg::new(number)
        }
    }

    /// The `size`-byte value of this register when its 64-bit contents are `full`.
    pub fn read(self, full: u64, size: u8) -> u64 {
        if self.high_byte {
            (full >> 8) & 0xff
        } else {
            full & size_mask(size)
        }
    }
}

/// The non-memory operand of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    /// A general-purpose register (its low `size` bytes, or AH/CH/DH/BH).
    Reg(Reg),
    /// An immediate, already extended to the access size: the exact value to write
    /// (`REX.W C7 /0 id` gives the 64-bit sign extension of the imm32).
    Imm(u64),
}

/// How a loaded value is widened into its destination register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extend {
    /// Plain MOV: source and destination have the same size.
    None,
    /// MOVZX.
    Zero,
    /// MOVSX, MOVSXD.
    Sign,
}

/// What the instruction does with its memory operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemAccess {
    /// Reads `size` bytes from memory into register `dst`.
    Load {
        /// Destination register.
        dst: Reg,
        /// Memory access size in bytes: 1, 2, 4 or 8.
        size: u8,
        /// Widening from `size` to `dst_size`.
        extend: Extend,
        /// Size of the register write in bytes: 1, 2, 4 or 8 (see [`merge_register`]).
        dst_size: u8,
    },
    /// Writes `size` bytes of a register or immediate to memory.
    Store {
        /// The value's source.
        src: Operand,
        /// Memory access size in bytes: 1, 2, 4 or 8.
        size: u8,
    },
}

impl MemAccess {
    /// Memory access size in bytes: 1, 2, 4 or 8.
    pub fn size(&self) -> u8 {
        match *self {
            MemAccess::Load { size, .. } | MemAccess::Store { size, .. } => size,
        }
    }

    /// Whether the memory operand is written.
    pub fn is_write(&self) -> bool {
        matches!(self, MemAccess::Store { .. })
    }
}

/// A segment register named by a segment-override prefix (APM vol. 3 §1.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment {
    /// `26`
    Es,
    /// `2E`
    Cs,
    /// `36`
    Ss,
    /// `3E`
    Ds,
    /// `64`
    Fs,
    /// `65`
    Gs,
}

/// The base of an effective address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Base {
    /// A general-purpose register, 0..=15.
    Reg(u8),
    /// RIP-relative (64-bit mode, ModRM mod=00 r/m=101; APM vol. 3 §1.7): relative to the
    /// address of the next instruction.
    Rip,
}

/// The memory operand: `segment:[base + index*scale + disp]`, truncated to `addr_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemOperand {
    /// Base register, RIP, or none (absolute displacement, `moffs`).
    pub base: Option<Base>,
    /// Index register, 0..=15.
    pub index: Option<u8>,
    /// 1, 2, 4 or 8 (1 when there is no index).
    pub scale: u8,
    /// The sign-extended displacement, or the `moffs` offset (as raw bits).
    pub disp: i64,
    /// Effective address size in bytes: 2, 4 or 8.
    pub addr_size: u8,
    /// The segment-override prefix, if any (the last one wins). Recorded only; in 64-bit mode
    /// hardware ignores all but FS and GS.
    pub segment: Option<Segment>,
}

/// A decoded memory-access instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decoded {
    /// Instruction length in bytes (prefixes included), 1..=15: the amount to advance RIP.
    pub len: u8,
    /// The opcode: one byte, or `0x0Fxx` for two-byte opcodes.
    pub opcode: u16,
    /// The direction, size and register/immediate of the access.
    pub access: MemAccess,
    /// The memory operand.
    pub mem: MemOperand,
}

impl Decoded {
    /// The effective address (segment base not included) for general-purpose register values
    /// `gpr` (indexed as [`Reg::index`]) and the address `rip` of this instruction.
    pub fn effective_address(&self, gpr: &[u64; 16], rip: u64) -> u64 {
        let m = &self.mem;
        let mut ea = m.disp as u64;
        match m.base {
            Some(Base::Reg(r)) => ea = ea.wrapping_add(gpr[usize::from(r & 15)]),
            Some(Base::Rip) => ea = ea.wrapping_add(rip.wrapping_add(u64::from(self.len))),
            None => {}
        }
        if let Some(i) = m.index {
            ea = ea.wrapping_add(gpr[usize::from(i & 15)].wrapping_mul(u64::from(m.scale)));
        }
        ea & size_mask(m.addr_size)
    }

    /// For a store, the value to write to memory (low [`MemAccess::size`] bytes).
    pub fn store_value(&self, gpr: &[u64; 16]) -> Option<u64> {
        match self.access {
            MemAccess::Store {
                src: Operand::Reg(r),
                size,
            } => Some(r.read(gpr[usize::from(r.index & 15)], size)),
            MemAccess::Store {
                src: Operand::Imm(v),
                size,
            } => Some(v & size_mask(size)),
            MemAccess::Load { .. } => None,
        }
    }

    /// For a load of `raw` from memory, the destination register index and its new 64-bit value
    /// given the register values `gpr` before the instruction.
    pub fn load_result(&self, gpr: &[u64; 16], raw: u64) -> Option<(u8, u64)> {
        match self.access {
            MemAccess::Load {
                dst,
                size,
                extend,
                dst_size,
            } => {
                let index = dst.index & 15;
                let value = extend_value(raw, size, extend, dst_size);
                Some((
                    index,
                    merge_register(gpr[usize::from(index)], value, dst_size, dst.high_byte),
                ))
            }
            MemAccess::Store { .. } => None,
        }
    }
}

/// Why an instruction could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The slice ended before the instruction did: fetch more bytes (up to 15) and retry.
    Truncated,
    /// The instruction would exceed 15 bytes (hardware raises `#GP(0)`).
    TooLong,
    /// Not one of the supported MOV-family opcodes (one byte, or `0x0Fxx`), or an undefined
    /// ModRM.reg extension of `C6`/`C7`. In 32-bit and 16-bit modes `40`–`4F` are INC/DEC and
    /// reported here.
    Unsupported {
        /// The opcode byte(s).
        opcode: u16,
    },
    /// ModRM.mod=11: the operand is a register, so this instruction cannot have faulted on
    /// memory through its ModRM operand.
    NotMemoryOperand,
    /// A `LOCK` prefix on a MOV-family instruction: hardware raises `#UD`.
    LockPrefix,
    /// An `F2`/`F3` prefix on a MOV-family instruction: rejected by policy.
    RepPrefix,
}

/// Decodes the MOV-family memory access at the start of `bytes` (the bytes at guest RIP; up to
/// 15 are looked at, the rest ignored) in processor mode `mode`.
pub fn decode_mem_access(bytes: &[u8], mode: Mode) -> Result<Decoded, DecodeError> {
    let mut cur = cursor::Cursor::new(bytes);
    let (prefixes, opcode) = prefix::parse(&mut cur, mode)?;
    mov::decode(&mut cur, &prefixes, opcode, mode)
}

/// All-ones in the low `size` bytes (`size` 1, 2, 4 or 8; anything else gives all ones).
pub const fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Widens the low `size` bytes of `raw` to `dst_size` bytes as MOV (`Extend::None`), MOVZX or
/// MOVSX/MOVSXD do; the result has no bits above `dst_size` bytes.
pub fn extend_value(raw: u64, size: u8, extend: Extend, dst_size: u8) -> u64 {
    let value = raw & size_mask(size);
    let widened = match extend {
        Extend::None | Extend::Zero => value,
        Extend::Sign => {
            let sign_bit = (size_mask(size) >> 1).wrapping_add(1);
            if value & sign_bit != 0 {
                value | !size_mask(size)
            } else {
                value
            }
        }
    };
    widened & size_mask(dst_size)
}

/// The new 64-bit value of a general-purpose register whose old value is `old` after writing the
/// low `dst_size` bytes of `loaded` to it (the general-purpose register rules of APM vol. 1
/// chapter 3: in 64-bit mode 32-bit results are zero-extended, 8/16-bit results are not):
///
/// * 8-byte writes replace the register;
/// * 4-byte writes zero-extend to 64 bits (in legacy modes bits 63:32 are not visible, so this
///   is correct there too);
/// * 2-byte and 1-byte writes merge, leaving the other bits unchanged;
/// * with `high_byte` (AH/CH/DH/BH, `dst_size` 1) the byte goes to bits 15:8.
///
/// Any other `dst_size` leaves the register unchanged.
pub fn merge_register(old: u64, loaded: u64, dst_size: u8, high_byte: bool) -> u64 {
    match (dst_size, high_byte) {
        (1, true) => (old & !0xff00) | ((loaded & 0xff) << 8),
        (1, false) => (old & !0xff) | (loaded & 0xff),
        (2, _) => (old & !0xffff) | (loaded & 0xffff),
        (4, _) => loaded & 0xffff_ffff,
        (8, _) => loaded,
        _ => old,
    }
}
