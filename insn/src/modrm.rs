//! The ModRM memory operand: SIB, displacement, 16-bit and 32/64-bit forms (APM vol. 3 §1.4,
//! §1.5, §1.7).

use crate::cursor::Cursor;
use crate::prefix::Prefixes;
use crate::{Base, DecodeError, MemOperand, Mode};

/// rBX, rBP, rSI, rDI as register numbers, for the 16-bit forms.
const BX: u8 = 3;
const BP: u8 = 5;
const SI: u8 = 6;
const DI: u8 = 7;

/// The register named by ModRM.reg, REX.R included (4 bits).
pub(crate) fn reg_field(modrm: u8, p: &Prefixes) -> u8 {
    ((modrm >> 3) & 7) | p.rex.r()
}

/// Decodes the memory operand named by `modrm` (already consumed), reading any SIB byte and
/// displacement. ModRM.mod=11 names a register: [`DecodeError::NotMemoryOperand`].
pub(crate) fn memory(
    cur: &mut Cursor<'_>,
    modrm: u8,
    p: &Prefixes,
    mode: Mode,
) -> Result<MemOperand, DecodeError> {
    let md = modrm >> 6;
    let rm = modrm & 7;
    if md == 3 {
        return Err(DecodeError::NotMemoryOperand);
    }
    let addr_size = p.address_size(mode);
    let mut mem = MemOperand {
        base: None,
        index: None,
        scale: 1,
        disp: 0,
        addr_size,
        segment: p.segment,
    };
    if addr_size == 2 {
        memory16(cur, md, rm, &mut mem)?;
    } else {
        memory32(cur, md, rm, p, mode, &mut mem)?;
    }
    Ok(mem)
}

/// 16-bit addressing (APM vol. 3 §1.4.3, "ModRM.r/m Field Encoding, 16-Bit Addressing"): no SIB;
/// r/m picks one of eight base/index pairs; mod=00 r/m=110 is a bare disp16; disp8 or disp16.
fn memory16(cur: &mut Cursor<'_>, md: u8, rm: u8, mem: &mut MemOperand) -> Result<(), DecodeError> {
    let (base, index) = match rm {
        0 => (Some(BX), Some(SI)),
        1 => (Some(BX), Some(DI)),
        2 => (Some(BP), Some(SI)),
        3 => (Some(BP), Some(DI)),
        4 => (Some(SI), None),
        5 => (Some(DI), None),
        6 if md == 0 => (None, None),
        6 => (Some(BP), None),
        _ => (Some(BX), None),
    };
    mem.base = base.map(Base::Reg);
    mem.index = index;
    mem.disp = match (md, base) {
        (0, None) | (2, _) => cur.le_signed(2)?,
        (1, _) => cur.le_signed(1)?,
        _ => 0,
    };
    Ok(())
}

/// 32-bit and 64-bit addressing (APM vol. 3 §1.4.1, §1.4.2, §1.4.4, §1.7):
/// * r/m=100 takes a SIB byte; SIB.index=100 (without REX.X) means no index; SIB.base=101 with
///   mod=00 means no base and a disp32 (whatever REX.B says);
/// * mod=00 r/m=101 (whatever REX.B says) is disp32 — RIP-relative in 64-bit mode, absolute
///   otherwise;
/// * mod=01 adds a sign-extended disp8, mod=10 a sign-extended disp32.
fn memory32(
    cur: &mut Cursor<'_>,
    md: u8,
    rm: u8,
    p: &Prefixes,
    mode: Mode,
    mem: &mut MemOperand,
) -> Result<(), DecodeError> {
    let mut disp_size = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = cur.byte()?;
        let index = ((sib >> 3) & 7) | p.rex.x();
        if index != 4 {
            mem.index = Some(index);
            mem.scale = 1 << (sib >> 6);
        }
        if sib & 7 == 5 && md == 0 {
            disp_size = 4;
        } else {
            mem.base = Some(Base::Reg((sib & 7) | p.rex.b()));
        }
    } else if rm == 5 && md == 0 {
        disp_size = 4;
        if mode == Mode::Long64 {
            mem.base = Some(Base::Rip);
        }
    } else {
        mem.base = Some(Base::Reg(rm | p.rex.b()));
    }
    mem.disp = match disp_size {
        0 => 0,
        n => cur.le_signed(n)?,
    };
    Ok(())
}
