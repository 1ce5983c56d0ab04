//! Bounded reading of instruction bytes.

use crate::{DecodeError, MAX_INSN_LEN};

/// Reads instruction bytes front to back, refusing to go past the slice ([`DecodeError::Truncated`])
/// or past the 15-byte architectural limit ([`DecodeError::TooLong`], APM vol. 3 §1.1). The
/// limit is checked first: an instruction that needs a 16th byte is too long whatever the
/// slice length.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Bytes consumed so far (never above 15).
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSN_LEN {
            return Err(DecodeError::TooLong);
        }
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// A little-endian unsigned value of `n` bytes (`n` is clamped to 8).
    pub(crate) fn le(&mut self, n: u8) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..n.min(8) {
            value |= u64::from(self.byte()?) << (8 * u32::from(i));
        }
        Ok(value)
    }

    /// A little-endian `n`-byte value (1, 2, 4 or 8), sign-extended to 64 bits.
    pub(crate) fn le_signed(&mut self, n: u8) -> Result<i64, DecodeError> {
        let raw = self.le(n)?;
        Ok(match n {
            1 => i64::from(raw as u8 as i8),
            2 => i64::from(raw as u16 as i16),
            4 => i64::from(raw as u32 as i32),
            _ => raw as i64,
        })
    }
}
