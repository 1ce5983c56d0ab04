//! Legacy and REX prefixes (APM vol. 3 §1.2).

use crate::cursor::Cursor;
use crate::{DecodeError, Mode, Segment};

/// The REX prefix byte `0100WRXB` (APM vol. 3 §1.2.7), or 0 when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rex(u8);

impl Rex {
    pub(crate) fn present(self) -> bool {
        self.0 & 0xf0 == 0x40
    }
    /// REX.W: 64-bit operand size.
    pub(crate) fn w(self) -> bool {
        self.present() && self.0 & 8 != 0
    }
    /// REX.R: extends ModRM.reg (as bit 3).
    pub(crate) fn r(self) -> u8 {
        u8::from(self.present() && self.0 & 4 != 0) << 3
    }
    /// REX.X: extends SIB.index (as bit 3).
    pub(crate) fn x(self) -> u8 {
        u8::from(self.present() && self.0 & 2 != 0) << 3
    }
    /// REX.B: extends ModRM.r/m or SIB.base (as bit 3).
    pub(crate) fn b(self) -> u8 {
        u8::from(self.present() && self.0 & 1 != 0) << 3
    }
}

/// The prefixes in front of an opcode.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Prefixes {
    /// `66` seen.
    pub(crate) operand_size: bool,
    /// `67` seen.
    pub(crate) address_size: bool,
    /// Last segment override seen.
    pub(crate) segment: Option<Segment>,
    /// `F0` seen.
    pub(crate) lock: bool,
    /// `F2` or `F3` seen.
    pub(crate) rep: bool,
    /// The REX prefix, only if it immediately precedes the opcode.
    pub(crate) rex: Rex,
}

impl Prefixes {
    /// Effective operand size in bytes for instructions whose default is 32 bits (16 in 16-bit
    /// code): REX.W wins over `66` (APM vol. 3 §1.2.2).
    pub(crate) fn operand_size(&self, mode: Mode) -> u8 {
        if self.rex.w() {
            8
        } else if self.operand_size {
            6 - mode.default_operand_size()
        } else {
            mode.default_operand_size()
        }
    }

    /// Effective address size in bytes (APM vol. 3 §1.2.3): `67` selects 32 bits in 64-bit
    /// mode, and toggles between 16 and 32 bits otherwise.
    pub(crate) fn address_size(&self, mode: Mode) -> u8 {
        match (mode.default_address_size(), self.address_size) {
            (size, false) => size,
            (8, true) => 4,
            (4, true) => 2,
            (_, true) => 4,
        }
    }
}

/// Consumes the prefixes and returns them with the first opcode byte.
///
/// Legacy prefixes may come in any order and may repeat; a repeated group keeps the last one.
/// In 64-bit mode `40`–`4F` are REX prefixes: a REX that is not immediately followed by the
/// opcode (another REX or a legacy prefix comes next) is ignored, as on hardware (APM vol. 3
/// §1.2.7). In other modes `40`–`4F` are INC/DEC opcodes. The 15-byte limit bounds the loop.
pub(crate) fn parse(cur: &mut Cursor<'_>, mode: Mode) -> Result<(Prefixes, u8), DecodeError> {
    let mut p = Prefixes::default();
    loop {
        let b = cur.byte()?;
        match b {
            0x66 => p.operand_size = true,
            0x67 => p.address_size = true,
            0x26 => p.segment = Some(Segment::Es),
            0x2e => p.segment = Some(Segment::Cs),
            0x36 => p.segment = Some(Segment::Ss),
            0x3e => p.segment = Some(Segment::Ds),
            0x64 => p.segment = Some(Segment::Fs),
            0x65 => p.segment = Some(Segment::Gs),
            0xf0 => p.lock = true,
            0xf2 | 0xf3 => p.rep = true,
            0x40..=0x4f if mode == Mode::Long64 => {
                p.rex = Rex(b);
                continue;
            }
            _ => return Ok((p, b)),
        }
        // A legacy prefix after a REX prefix makes that REX ignored.
        p.rex = Rex::default();
    }
}
