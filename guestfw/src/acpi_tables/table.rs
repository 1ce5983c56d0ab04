//! A little-endian writer over one table's bytes, the common SDT header, and the ACPI checksum.

use firmware::sdt::{SdtHeader, SDT_HEADER_LEN};

/// OEM id in every header we write (6 bytes, ACPI 6.5 §5.2.6).
pub const OEM_ID: [u8; 6] = *b"DIDVSR";
/// OEM table id in every header (8 bytes).
pub const OEM_TABLE_ID: [u8; 8] = *b"DIDVISOR";
/// OEM revision.
pub const OEM_REVISION: u32 = 1;
/// Creator id: the "tool" that built the tables.
pub const CREATOR_ID: [u8; 4] = *b"DIDV";
/// Creator revision.
pub const CREATOR_REVISION: u32 = 1;

/// Writes into one table's bytes. A write past the end is recorded instead of panicking and
/// turns into an error when the table is finished: offsets come from this module's own layout
/// code, so that would be a bug here, never a guest's doing.
pub struct Table<'a> {
    bytes: &'a mut [u8],
    overflow: bool,
}

impl<'a> Table<'a> {
    /// A zero-filled table over `bytes` (guest memory may hold anything before).
    pub fn new(bytes: &'a mut [u8]) -> Self {
        bytes.fill(0);
        Self {
            bytes,
            overflow: false,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn bytes(&mut self, offset: usize, v: &[u8]) {
        let end = offset.checked_add(v.len());
        match end.and_then(|end| self.bytes.get_mut(offset..end)) {
            Some(dst) => dst.copy_from_slice(v),
            None => self.overflow = true,
        }
    }

    pub fn u8(&mut self, offset: usize, v: u8) {
        self.bytes(offset, &[v]);
    }

    pub fn u16(&mut self, offset: usize, v: u16) {
        self.bytes(offset, &v.to_le_bytes());
    }

    pub fn u32(&mut self, offset: usize, v: u32) {
        self.bytes(offset, &v.to_le_bytes());
    }

    pub fn u64(&mut self, offset: usize, v: u64) {
        self.bytes(offset, &v.to_le_bytes());
    }

    /// Sets the byte at `at` so that `bytes[..len]` sums to zero (ACPI 6.5 §5.2.5.3, §5.2.6).
    pub fn checksum(&mut self, at: usize, len: usize) {
        let Some(covered) = self.bytes.get(..len) else {
            self.overflow = true;
            return;
        };
        let old = covered.get(at).copied().unwrap_or(0);
        let sum = covered.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        self.u8(at, old.wrapping_sub(sum));
    }

    /// Writes the system description table header (ACPI 6.5 §5.2.6, Table 5.4) with the
    /// table's whole length. The checksum comes last, from [`Table::finish_sdt`].
    pub fn sdt_header(&mut self, signature: [u8; 4], revision: u8) {
        use core::mem::offset_of;
        let len = u32::try_from(self.len()).unwrap_or(u32::MAX);
        self.bytes(offset_of!(SdtHeader, signature), &signature);
        self.u32(offset_of!(SdtHeader, length), len);
        self.u8(offset_of!(SdtHeader, revision), revision);
        self.bytes(offset_of!(SdtHeader, oem_id), &OEM_ID);
        self.bytes(offset_of!(SdtHeader, oem_table_id), &OEM_TABLE_ID);
        self.u32(offset_of!(SdtHeader, oem_revision), OEM_REVISION);
        self.bytes(offset_of!(SdtHeader, creator_id), &CREATOR_ID);
        self.u32(offset_of!(SdtHeader, creator_revision), CREATOR_REVISION);
        if self.len() < SDT_HEADER_LEN {
            self.overflow = true;
        }
    }

    /// Sets the SDT checksum over the whole table; `false` if any write missed the table.
    pub fn finish_sdt(mut self) -> bool {
        self.checksum(core::mem::offset_of!(SdtHeader, checksum), self.len());
        !self.overflow
    }

    /// `false` if any write missed the table.
    pub fn finish(self) -> bool {
        !self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_little_endian_and_catches_overflow() {
        let mut buf = [0xAAu8; 8];
        let mut t = Table::new(&mut buf);
        t.u32(0, 0x1122_3344);
        t.u16(4, 0x5566);
        assert!(t.finish());
        assert_eq!(buf, [0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0, 0]);

        let mut buf = [0u8; 8];
        let mut t = Table::new(&mut buf);
        t.u64(1, 0);
        assert!(!t.finish());
        let mut t = Table::new(&mut buf);
        t.bytes(usize::MAX, &[1]);
        assert!(!t.finish());
    }

    #[test]
    fn checksum_makes_the_sum_zero() {
        let mut buf = [0u8; 40];
        let mut t = Table::new(&mut buf);
        t.sdt_header(*b"TEST", 3);
        t.u32(36, 0xDEAD_BEEF);
        assert!(t.finish_sdt());
        assert_eq!(buf.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(&buf[..4], b"TEST");
        assert_eq!(buf[4], 40);
        assert_eq!(buf[8], 3);
        assert_ne!(buf[9], 0);

        let mut short = [0u8; 20];
        let mut t = Table::new(&mut short);
        t.sdt_header(*b"TEST", 1);
        assert!(!t.finish_sdt());
    }
}
