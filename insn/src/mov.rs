//! The MOV-family opcodes (APM vol. 3 chapter 3: MOV, MOVZX, MOVSX, MOVSXD; opcode map in
//! appendix A).

use crate::cursor::Cursor;
use crate::modrm;
use crate::prefix::Prefixes;
use crate::{DecodeError, Decoded, Extend, MemAccess, MemOperand, Mode, Operand, Reg};

/// Whether `opcode` (one byte, or `0x0Fxx`) is decoded here in `mode`.
fn supported(opcode: u16, mode: Mode) -> bool {
    match opcode {
        0x88..=0x8b | 0xa0..=0xa3 | 0xc6 | 0xc7 | 0x0fb6 | 0x0fb7 | 0x0fbe | 0x0fbf => true,
        // MOVSXD exists only in 64-bit mode; elsewhere 63 is ARPL.
        0x63 => mode == Mode::Long64,
        _ => false,
    }
}

/// Decodes the rest of the instruction after its prefixes; `first` is the first opcode byte.
pub(crate) fn decode(
    cur: &mut Cursor<'_>,
    p: &Prefixes,
    first: u8,
    mode: Mode,
) -> Result<Decoded, DecodeError> {
    let opcode = if first == 0x0f {
        0x0f00 | u16::from(cur.byte()?)
    } else {
        u16::from(first)
    };
    if !supported(opcode, mode) {
        return Err(DecodeError::Unsupported { opcode });
    }
    if p.lock {
        return Err(DecodeError::LockPrefix);
    }
    if p.rep {
        return Err(DecodeError::RepPrefix);
    }
    let osz = p.operand_size(mode);
    let (access, mem) = match opcode {
        // MOV r/m8, r8 | MOV r/m, r | MOV r8, r/m8 | MOV r, r/m
        0x88..=0x8b => {
            let modrm = cur.byte()?;
            let mem = modrm::memory(cur, modrm, p, mode)?;
            let number = modrm::reg_field(modrm, p);
            let (reg, size) = if opcode & 1 == 0 {
                (Reg::byte(number, p.rex.present()), 1)
            } else {
                (Reg::new(number), osz)
            };
            let access = if opcode <= 0x89 {
                MemAccess::Store {
                    src: Operand::Reg(reg),
                    size,
                }
            } else {
                MemAccess::Load {
                    dst: reg,
                    size,
                    extend: Extend::None,
                    dst_size: size,
                }
            };
            (access, mem)
        }
        // MOV r/m8, imm8 | MOV r/m, imm16/imm32 (REX.W: imm32 sign-extended to 64)
        0xc6 | 0xc7 => {
            let modrm = cur.byte()?;
            // Only /0 is MOV (C6 F8 / C7 F8 are XABORT / XBEGIN, the rest undefined); REX.R
            // does not extend an opcode-extension field.
            if (modrm >> 3) & 7 != 0 {
                return Err(DecodeError::Unsupported { opcode });
            }
            let mem = modrm::memory(cur, modrm, p, mode)?;
            let size = if opcode == 0xc6 { 1 } else { osz };
            // The immediate follows the displacement (APM vol. 3 §1.6).
            let imm = match size {
                8 => cur.le_signed(4)? as u64,
                n => cur.le(n)?,
            };
            (
                MemAccess::Store {
                    src: Operand::Imm(imm),
                    size,
                },
                mem,
            )
        }
        // MOV AL, moffs8 | MOV rAX, moffs | MOV moffs8, AL | MOV moffs, rAX: no ModRM; the offset
        // has the address size (8 bytes in 64-bit mode, 4 with 67 there).
        0xa0..=0xa3 => {
            let addr_size = p.address_size(mode);
            let offset = cur.le(addr_size)?;
            let mem = MemOperand {
                base: None,
                index: None,
                scale: 1,
                disp: offset as i64,
                addr_size,
                segment: p.segment,
            };
            let size = if opcode & 1 == 0 { 1 } else { osz };
            let rax = Reg::new(0);
            let access = if opcode <= 0xa1 {
                MemAccess::Load {
                    dst: rax,
                    size,
                    extend: Extend::None,
                    dst_size: size,
                }
            } else {
                MemAccess::Store {
                    src: Operand::Reg(rax),
                    size,
                }
            };
            (access, mem)
        }
        // MOVSXD r64, r/m32 with REX.W; without it a plain 32-bit (or, with 66, 16-bit) move.
        0x63 => {
            let modrm = cur.byte()?;
            let mem = modrm::memory(cur, modrm, p, mode)?;
            let dst = Reg::new(modrm::reg_field(modrm, p));
            let access = if p.rex.w() {
                MemAccess::Load {
                    dst,
                    size: 4,
                    extend: Extend::Sign,
                    dst_size: 8,
                }
            } else {
                MemAccess::Load {
                    dst,
                    size: osz,
                    extend: Extend::None,
                    dst_size: osz,
                }
            };
            (access, mem)
        }
        // MOVZX r, r/m8 | MOVZX r, r/m16 | MOVSX r, r/m8 | MOVSX r, r/m16
        _ => {
            let modrm = cur.byte()?;
            let mem = modrm::memory(cur, modrm, p, mode)?;
            let dst = Reg::new(modrm::reg_field(modrm, p));
            let size = if opcode & 1 == 0 { 1 } else { 2 };
            let extend = if opcode <= 0x0fb7 {
                Extend::Zero
            } else {
                Extend::Sign
            };
            (
                MemAccess::Load {
                    dst,
                    size,
                    extend,
                    dst_size: osz,
                },
                mem,
            )
        }
    };
    // The cursor never passes 15 bytes, so this fits.
    let len = cur.pos() as u8;
    Ok(Decoded {
        len,
        opcode,
        access,
        mem,
    })
}
