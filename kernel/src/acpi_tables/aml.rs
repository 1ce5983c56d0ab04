//! A tiny AML encoder (ACPI 6.5 §20.2, "AML Grammar Definition"): just enough to write named
//! packages of integers, which is all the guest's DSDT needs.

/// `NameOp`, DefName := NameOp NameString DataRefObject (§20.2.5.1).
pub const NAME_OP: u8 = 0x08;
/// `PackageOp`, DefPackage := PackageOp PkgLength NumElements PackageElementList (§20.2.5.4).
pub const PACKAGE_OP: u8 = 0x12;
/// `ZeroOp`, the constant 0 (§20.2.3).
pub const ZERO_OP: u8 = 0x00;
/// `OneOp`, the constant 1.
pub const ONE_OP: u8 = 0x01;
/// `BytePrefix` ByteData.
pub const BYTE_PREFIX: u8 = 0x0A;
/// `WordPrefix` WordData.
pub const WORD_PREFIX: u8 = 0x0B;
/// `DWordPrefix` DWordData.
pub const DWORD_PREFIX: u8 = 0x0C;
/// `QWordPrefix` QWordData.
pub const QWORD_PREFIX: u8 = 0x0E;

/// Largest value a PkgLength can hold: 4 bits in the lead byte plus three more bytes (§20.2.4).
const PKG_LENGTH_MAX: usize = (1 << 28) - 1;

/// Encodes the PkgLength of a package whose contents (after the PkgLength) are `content` bytes
/// long. PkgLength counts itself, so the encoding with the fewest bytes that can hold
/// `content + its own size` is chosen. Returns the bytes and how many are used.
///
/// One byte holds lengths up to 63 in bits 5:0. Longer lengths put the count of following bytes
/// in bits 7:6 of the lead byte, the low 4 bits of the length in its bits 3:0, and the rest in
/// the following bytes, least significant first.
pub fn pkg_length(content: usize) -> Option<([u8; 4], usize)> {
    let (total, n) = if content < 63 {
        (content + 1, 1)
    } else {
        let n = (2..=4).find(|&n| content + n < 1 << (4 + 8 * (n - 1)))?;
        (content + n, n)
    };
    if total > PKG_LENGTH_MAX {
        return None;
    }
    let mut out = [0u8; 4];
    if n == 1 {
        out[0] = total as u8;
    } else {
        out[0] = ((n as u8 - 1) << 6) | (total & 0xF) as u8;
        for (i, b) in out.iter_mut().enumerate().take(n).skip(1) {
            *b = (total >> (4 + 8 * (i - 1))) as u8;
        }
    }
    Some((out, n))
}

/// Checks a NameSeg (§20.2.2): a lead character `A-Z` or `_`, then `A-Z`, `0-9` or `_`.
pub fn valid_name_seg(seg: &[u8; 4]) -> bool {
    let lead = seg[0].is_ascii_uppercase() || seg[0] == b'_';
    lead && seg[1..]
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// Appends AML to a fixed buffer. Any failure (buffer full, bad name, package too long) is
/// remembered and reported by [`Aml::finish`].
pub struct Aml<'a> {
    buf: &'a mut [u8],
    len: usize,
    failed: bool,
}

impl<'a> Aml<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            failed: false,
        }
    }

    pub fn bytes(&mut self, v: &[u8]) {
        match self.buf.get_mut(self.len..self.len + v.len()) {
            Some(dst) => {
                dst.copy_from_slice(v);
                self.len += v.len();
            }
            None => self.failed = true,
        }
    }

    /// A NameString made of one NameSeg, relative to the current scope.
    pub fn name_seg(&mut self, seg: &[u8; 4]) {
        if !valid_name_seg(seg) {
            self.failed = true;
        }
        self.bytes(seg);
    }

    /// An integer in the shortest encoding (ZeroOp, OneOp, then Byte/Word/DWord/QWord data).
    pub fn integer(&mut self, v: u64) {
        match v {
            0 => self.bytes(&[ZERO_OP]),
            1 => self.bytes(&[ONE_OP]),
            2..=0xFF => self.bytes(&[BYTE_PREFIX, v as u8]),
            0x100..=0xFFFF => {
                self.bytes(&[WORD_PREFIX]);
                self.bytes(&(v as u16).to_le_bytes());
            }
            0x1_0000..=0xFFFF_FFFF => {
                self.bytes(&[DWORD_PREFIX]);
                self.bytes(&(v as u32).to_le_bytes());
            }
            _ => {
                self.bytes(&[QWORD_PREFIX]);
                self.bytes(&v.to_le_bytes());
            }
        }
    }

    /// `Package() { v0, v1, ... }` of integers.
    pub fn package_of_integers(&mut self, values: &[u64]) {
        let Ok(count) = u8::try_from(values.len()) else {
            self.failed = true;
            return;
        };
        self.bytes(&[PACKAGE_OP]);
        let start = self.len;
        self.bytes(&[count]);
        for &v in values {
            self.integer(v);
        }
        self.insert_pkg_length(start);
    }

    /// `Name(seg, Package() { ... })` of integers.
    pub fn name_package(&mut self, seg: &[u8; 4], values: &[u64]) {
        self.bytes(&[NAME_OP]);
        self.name_seg(seg);
        self.package_of_integers(values);
    }

    /// Inserts the PkgLength for the contents written since `start`, moving them up.
    fn insert_pkg_length(&mut self, start: usize) {
        let Some((encoded, n)) = pkg_length(self.len - start) else {
            self.failed = true;
            return;
        };
        let end = self.len;
        if self.failed || end + n > self.buf.len() {
            self.failed = true;
            return;
        }
        self.buf.copy_within(start..end, start + n);
        self.buf[start..start + n].copy_from_slice(&encoded[..n]);
        self.len += n;
    }

    /// The number of bytes written, or `None` if anything failed.
    pub fn finish(self) -> Option<usize> {
        (!self.failed).then_some(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(content: usize) -> Vec<u8> {
        let (b, n) = pkg_length(content).unwrap();
        b[..n].to_vec()
    }

    #[test]
    fn pkg_length_encodings_worked_by_hand() {
        // One byte: total = content + 1, up to 63.
        assert_eq!(enc(0), [0x01]);
        assert_eq!(enc(7), [0x08]);
        assert_eq!(enc(62), [0x3F]);
        // 63 bytes of content need two: total 65 = 0x41 -> lead 0x40|0x1, then 0x41>>4 = 0x04.
        assert_eq!(enc(63), [0x41, 0x04]);
        // total 102 = 0x66 -> 0x46, 0x06.
        assert_eq!(enc(100), [0x46, 0x06]);
        // Largest two-byte total is 0xFFF: content 0xFFD.
        assert_eq!(enc(0xFFD), [0x4F, 0xFF]);
        // content 0xFFE: three bytes, total 0x1001 -> 0x81, 0x00, 0x01.
        assert_eq!(enc(0xFFE), [0x81, 0x00, 0x01]);
        // content 0xFFFFC: total 0xFFFFF, still three bytes; one more needs four.
        assert_eq!(enc(0xF_FFFC), [0x8F, 0xFF, 0xFF]);
        assert_eq!(enc(0xF_FFFD), [0xC1, 0x00, 0x00, 0x01]);
        assert_eq!(pkg_length(PKG_LENGTH_MAX - 3), None);
        assert_eq!(enc(PKG_LENGTH_MAX - 4), [0xCF, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn integers_use_the_shortest_form() {
        let mut buf = [0u8; 64];
        let mut aml = Aml::new(&mut buf);
        for v in [0, 1, 5, 0xFF, 0x100, 0x1_0000, 0x1_0000_0000] {
            aml.integer(v);
        }
        let len = aml.finish().unwrap();
        assert_eq!(
            &buf[..len],
            [
                0x00, 0x01, 0x0A, 0x05, 0x0A, 0xFF, 0x0B, 0x00, 0x01, 0x0C, 0x00, 0x00, 0x01, 0x00,
                0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
            ]
        );
    }

    #[test]
    fn s5_package_bytes() {
        // Name(_S5_, Package(){5, 5, 0, 0}): NameOp, "_S5_", PackageOp, PkgLength 8 (itself,
        // NumElements and 6 bytes of elements), NumElements 4, 0A 05, 0A 05, 00, 00.
        let mut buf = [0u8; 32];
        let mut aml = Aml::new(&mut buf);
        aml.name_package(b"_S5_", &[5, 5, 0, 0]);
        let len = aml.finish().unwrap();
        assert_eq!(
            &buf[..len],
            [0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00]
        );
    }

    #[test]
    fn long_package_gets_a_two_byte_pkg_length() {
        // 40 elements of BytePrefix data: 1 + 80 content bytes, total 83 = 0x53 -> 0x43, 0x05.
        let values = [0x42u64; 40];
        let mut buf = [0u8; 128];
        let mut aml = Aml::new(&mut buf);
        aml.package_of_integers(&values);
        let len = aml.finish().unwrap();
        assert_eq!(len, 1 + 2 + 1 + 80);
        assert_eq!(&buf[..5], [0x12, 0x43, 0x05, 40, 0x0A]);
        assert_eq!(&buf[len - 2..len], [0x0A, 0x42]);
    }

    #[test]
    fn failures_are_reported() {
        let mut buf = [0u8; 8];
        let mut aml = Aml::new(&mut buf);
        aml.name_package(b"_S5_", &[5, 5, 0, 0]);
        assert_eq!(aml.finish(), None, "buffer too small");
        let mut buf = [0u8; 32];
        let mut aml = Aml::new(&mut buf);
        aml.name_seg(b"1ABC");
        assert_eq!(aml.finish(), None, "digit cannot lead a NameSeg");
        assert!(valid_name_seg(b"_SB_"));
        assert!(valid_name_seg(b"COM1"));
        assert!(!valid_name_seg(b"com1"));
    }
}
