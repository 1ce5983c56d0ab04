//! A tiny AML encoder (ACPI 6.5 §20.2, "AML Grammar Definition"): just what the guest's DSDT
//! needs: named objects holding integers, EISA ids, strings, buffers and packages of integers,
//! and `Scope`/`Device` blocks addressed by name paths. ASL spellings are in §19.6.
//!
//! Blocks (`Scope`, `Device`, `Buffer`, `Package`) are written contents-first and then get their
//! PkgLength inserted in front, so the caller never computes a length.

/// `NameOp`, DefName := NameOp NameString DataRefObject (§20.2.5.1).
pub const NAME_OP: u8 = 0x08;
/// `ScopeOp`, DefScope := ScopeOp PkgLength NameString TermList (§20.2.5.1).
pub const SCOPE_OP: u8 = 0x10;
/// `BufferOp`, DefBuffer := BufferOp PkgLength BufferSize ByteList (§20.2.5.4); BufferSize is a
/// TermArg that evaluates to an integer.
pub const BUFFER_OP: u8 = 0x11;
/// `PackageOp`, DefPackage := PackageOp PkgLength NumElements PackageElementList (§20.2.5.4).
pub const PACKAGE_OP: u8 = 0x12;
/// `ExtOpPrefix`, the first byte of the two-byte opcodes (§20.3).
pub const EXT_OP_PREFIX: u8 = 0x5B;
/// `DeviceOp` := ExtOpPrefix 0x82; DefDevice := DeviceOp PkgLength NameString TermList
/// (§20.2.5.2).
pub const DEVICE_OP: [u8; 2] = [EXT_OP_PREFIX, 0x82];
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
/// `StringPrefix`; String := StringPrefix AsciiCharList NullChar, the characters 0x01-0x7F.
pub const STRING_PREFIX: u8 = 0x0D;
/// `QWordPrefix` QWordData.
pub const QWORD_PREFIX: u8 = 0x0E;
/// `RootChar` '\\': a NameString that starts at the namespace root (§20.2.2).
pub const ROOT_CHAR: u8 = b'\\';
/// `ParentPrefixChar` '^': one scope up from the current one.
pub const PARENT_PREFIX_CHAR: u8 = b'^';
/// `DualNamePrefix` NameSeg NameSeg: a path of exactly two segments.
pub const DUAL_NAME_PREFIX: u8 = 0x2E;
/// `MultiNamePrefix` SegCount NameSeg(SegCount): a path of three to 255 segments.
pub const MULTI_NAME_PREFIX: u8 = 0x2F;
/// `NullName`: a path of no segments (alone it names the current scope, after RootChar the root).
pub const NULL_NAME: u8 = 0x00;

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

/// The NameSeg for an ASL name of one to four characters: ASL lets trailing underscores be
/// left out (`_SB` is `_SB_`, §19.2.2), AML always has four. `None` if it is no valid NameSeg.
pub fn name_seg_of(name: &[u8]) -> Option<[u8; 4]> {
    if name.is_empty() || name.len() > 4 {
        return None;
    }
    let mut seg = *b"____";
    seg[..name.len()].copy_from_slice(name);
    valid_name_seg(&seg).then_some(seg)
}

/// Compresses a 7-character EISA id such as `"PNP0A03"` as ASL's `EisaId()` macro does (§19.6):
/// three upper-case letters, five bits each (`c - 0x40`), packed big-endian into bytes 0-1 below a
/// clear bit 15, then four upper-case hex digits as bytes 2-3. The result is the integer whose
/// little-endian bytes are those four, which is how AML stores it (a DWordConst).
///
/// `"PNP0A03"`: P = 0x10, N = 0x0E, P = 0x10 gives 0b0_10000_01110_10000 = 0x41D0, stored 41 D0;
/// then 0A 03; as a little-endian DWord 0x030AD041.
pub const fn eisa_id(id: &[u8; 7]) -> Option<u32> {
    let mut vendor = 0u16;
    let mut i = 0;
    while i < 3 {
        if !id[i].is_ascii_uppercase() {
            return None;
        }
        vendor = (vendor << 5) | (id[i] - 0x40) as u16;
        i += 1;
    }
    let mut product = 0u16;
    while i < 7 {
        let digit = match id[i] {
            b'0'..=b'9' => id[i] - b'0',
            b'A'..=b'F' => id[i] - b'A' + 10,
            _ => return None,
        };
        product = (product << 4) | digit as u16;
        i += 1;
    }
    let v = vendor.to_be_bytes();
    let p = product.to_be_bytes();
    Some(u32::from_le_bytes([v[0], v[1], p[0], p[1]]))
}

/// A DataRefObject for [`Aml::name`] (§20.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data<'d> {
    /// An integer in its shortest encoding.
    Integer(u64),
    /// A compressed EISA id from [`eisa_id`], always a DWordConst as the ASL compiler writes it.
    EisaId(u32),
    /// An ASCII string without NUL.
    String(&'d str),
    /// `Buffer() { bytes }` (a ResourceTemplate is one).
    Buffer(&'d [u8]),
    /// `Package() { integers }`.
    Package(&'d [u64]),
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
        let end = self.len.checked_add(v.len());
        match end.and_then(|end| self.buf.get_mut(self.len..end)) {
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

    /// A NameString written as in ASL (§19.2.2, encoded per §20.2.2): an optional `\` (RootChar)
    /// or any number of `^` (ParentPrefixChar), then NameSegs of one to four characters separated
    /// by dots, each padded with `_`. `"\\_SB.PCI0"` becomes `5C 2E "_SB_" "PCI0"`; `"\\"` alone
    /// is RootChar NullName.
    pub fn name_string(&mut self, path: &str) {
        let path = path.as_bytes();
        let (prefix, segs) = match path.first() {
            Some(&ROOT_CHAR) => path.split_at(1),
            _ => path.split_at(
                path.iter()
                    .take_while(|&&c| c == PARENT_PREFIX_CHAR)
                    .count(),
            ),
        };
        self.bytes(prefix);
        if segs.is_empty() {
            self.bytes(&[NULL_NAME]);
            return;
        }
        let count = segs.split(|&c| c == b'.').count();
        match count {
            1 => {}
            2 => self.bytes(&[DUAL_NAME_PREFIX]),
            3..=255 => self.bytes(&[MULTI_NAME_PREFIX, count as u8]),
            _ => self.failed = true,
        }
        for name in segs.split(|&c| c == b'.') {
            match name_seg_of(name) {
                Some(seg) => self.bytes(&seg),
                None => self.failed = true,
            }
        }
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

    /// A String: ASCII characters 0x01-0x7F and the terminating NUL.
    pub fn string(&mut self, s: &str) {
        if !s.bytes().all(|c| (0x01..=0x7F).contains(&c)) {
            self.failed = true;
        }
        self.bytes(&[STRING_PREFIX]);
        self.bytes(s.as_bytes());
        self.bytes(&[0]);
    }

    /// `Buffer() { bytes }`: BufferOp, PkgLength, the size as an integer, the bytes.
    pub fn buffer(&mut self, bytes: &[u8]) {
        self.bytes(&[BUFFER_OP]);
        let start = self.len;
        self.integer(bytes.len() as u64);
        self.bytes(bytes);
        self.insert_pkg_length(start);
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

    /// A DataRefObject.
    pub fn data(&mut self, value: Data<'_>) {
        match value {
            Data::Integer(v) => self.integer(v),
            Data::EisaId(v) => {
                self.bytes(&[DWORD_PREFIX]);
                self.bytes(&v.to_le_bytes());
            }
            Data::String(s) => self.string(s),
            Data::Buffer(b) => self.buffer(b),
            Data::Package(p) => self.package_of_integers(p),
        }
    }

    /// `Name(path, value)`.
    pub fn name(&mut self, path: &str, value: Data<'_>) {
        self.bytes(&[NAME_OP]);
        self.name_string(path);
        self.data(value);
    }

    /// `Name(seg, Package() { ... })` of integers.
    pub fn name_package(&mut self, seg: &[u8; 4], values: &[u64]) {
        self.bytes(&[NAME_OP]);
        self.name_seg(seg);
        self.package_of_integers(values);
    }

    /// `Scope(path) { body }`: opens an existing scope (such as `\_SB`) to add objects to it.
    pub fn scope(&mut self, path: &str, body: impl FnOnce(&mut Self)) {
        self.bytes(&[SCOPE_OP]);
        self.named_block(path, body);
    }

    /// `Device(path) { body }`: declares a device object.
    pub fn device(&mut self, path: &str, body: impl FnOnce(&mut Self)) {
        self.bytes(&DEVICE_OP);
        self.named_block(path, body);
    }

    /// PkgLength NameString TermList, the shape shared by Scope and Device.
    fn named_block(&mut self, path: &str, body: impl FnOnce(&mut Self)) {
        let start = self.len;
        self.name_string(path);
        body(self);
        self.insert_pkg_length(start);
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

    fn encode(f: impl FnOnce(&mut Aml<'_>)) -> Option<Vec<u8>> {
        let mut buf = [0u8; 512];
        let mut aml = Aml::new(&mut buf);
        f(&mut aml);
        let len = aml.finish()?;
        Some(buf[..len].to_vec())
    }

    #[test]
    fn name_strings_worked_by_hand() {
        let path = |p: &str| encode(|a| a.name_string(p));
        // RootChar, then one padded NameSeg.
        assert_eq!(path("\\_SB").unwrap(), [0x5C, b'_', b'S', b'B', b'_']);
        assert_eq!(path("PCI0").unwrap(), *b"PCI0");
        // Two segments: DualNamePrefix 0x2E.
        assert_eq!(
            path("\\_SB.PCI0").unwrap(),
            [0x5C, 0x2E, b'_', b'S', b'B', b'_', b'P', b'C', b'I', b'0']
        );
        // Three: MultiNamePrefix 0x2F, SegCount 3.
        let mut three = vec![0x5C, 0x2F, 3];
        three.extend_from_slice(b"A___B___C___");
        assert_eq!(path("\\A.B.C").unwrap(), three);
        // Parent prefixes and NullName.
        assert_eq!(path("^^FOO").unwrap(), *b"^^FOO_");
        assert_eq!(path("\\").unwrap(), [0x5C, 0x00]);
        assert_eq!(path("").unwrap(), [0x00]);
        for bad in ["pci0", "ABCDE", "A..B", "1ABC", "\\^A", "A.", "\\_SB."] {
            assert_eq!(path(bad), None, "{bad:?}");
        }
        assert_eq!(name_seg_of(b"_S5"), Some(*b"_S5_"));
        assert_eq!(name_seg_of(b""), None);
    }

    #[test]
    fn eisa_id_compression_worked_by_hand() {
        // P = 0x50 - 0x40 = 0x10, N = 0x0E: 0x10 << 10 | 0x0E << 5 | 0x10 = 0x41D0, stored
        // big-endian 41 D0; then the product 0A 03. Read as a little-endian DWord: 0x030AD041.
        assert_eq!(eisa_id(b"PNP0A03"), Some(0x030A_D041));
        assert_eq!(eisa_id(b"PNP0A08"), Some(0x080A_D041));
        // A, B, C = 1, 2, 3: 1 << 10 | 2 << 5 | 3 = 0x0443 -> 04 43 00 00.
        assert_eq!(eisa_id(b"ABC0000"), Some(0x0000_4304));
        // Z = 26: 0x6800 | 0x340 | 0x1A = 0x6B5A -> 6B 5A FF FF.
        assert_eq!(eisa_id(b"ZZZFFFF"), Some(0xFFFF_5A6B));
        assert_eq!(eisa_id(b"pnp0a03"), None);
        assert_eq!(eisa_id(b"PNP0A0G"), None);
        assert_eq!(eisa_id(b"PNP0a03"), None);
        assert_eq!(eisa_id(b"P1P0A03"), None);
        // EisaId is always a DWordConst, even when the value would fit a shorter form.
        let hid = encode(|a| a.name("_HID", Data::EisaId(0x4304))).unwrap();
        assert_eq!(hid, [0x08, b'_', b'H', b'I', b'D', 0x0C, 0x04, 0x43, 0, 0]);
        let hid = encode(|a| a.name("_HID", Data::EisaId(eisa_id(b"PNP0A08").unwrap())));
        assert_eq!(
            hid.unwrap(),
            [0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, 0x0A, 0x08]
        );
    }

    #[test]
    fn names_of_integers_strings_and_buffers() {
        // Name(_UID, Zero), Name(_BBN, One), Name(X, 0x1234).
        let b = encode(|a| {
            a.name("_UID", Data::Integer(0));
            a.name("_BBN", Data::Integer(1));
            a.name("X", Data::Integer(0x1234));
        });
        #[rustfmt::skip]
        assert_eq!(b.unwrap(), [
            0x08, b'_', b'U', b'I', b'D', 0x00,
            0x08, b'_', b'B', b'B', b'N', 0x01,
            0x08, b'X', b'_', b'_', b'_', 0x0B, 0x34, 0x12,
        ]);
        // Name(_STR... as plain ASCII): StringPrefix, chars, NUL.
        let b = encode(|a| a.name("S", Data::String("abc"))).unwrap();
        assert_eq!(b, [0x08, b'S', b'_', b'_', b'_', 0x0D, b'a', b'b', b'c', 0]);
        assert_eq!(encode(|a| a.string("\u{e9}")), None, "not ASCII");
        assert_eq!(encode(|a| a.string("a\0b")), None, "NUL inside");
        // Buffer(){1, 2, 3}: BufferOp, PkgLength 6 (itself, 0A 03, three bytes), 0A 03, 01 02 03.
        let b = encode(|a| a.buffer(&[1, 2, 3])).unwrap();
        assert_eq!(b, [0x11, 0x06, 0x0A, 0x03, 1, 2, 3]);
        // An empty buffer has size ZeroOp.
        assert_eq!(encode(|a| a.buffer(&[])).unwrap(), [0x11, 0x02, 0x00]);
        // 100 bytes: size 0A 64, content 102, total 104 = 0x68 -> PkgLength 48 06.
        let b = encode(|a| a.buffer(&[0xEE; 100])).unwrap();
        assert_eq!(&b[..5], [0x11, 0x48, 0x06, 0x0A, 0x64]);
        assert_eq!(b.len(), 1 + 2 + 2 + 100);
        let b = encode(|a| a.name("P", Data::Package(&[2]))).unwrap();
        // Package(){2}: PkgLength 4 (itself, NumElements, 0A 02).
        assert_eq!(
            b,
            [0x08, b'P', b'_', b'_', b'_', 0x12, 0x04, 0x01, 0x0A, 0x02]
        );
    }

    #[test]
    fn scope_and_device_blocks() {
        // Scope(\_SB) {}: ScopeOp, PkgLength 6 (itself and the 5-byte name).
        let b = encode(|a| a.scope("\\_SB", |_| {})).unwrap();
        assert_eq!(b, [0x10, 0x06, 0x5C, b'_', b'S', b'B', b'_']);
        // Device(PCI0) { Name(_UID, Zero) }: 5B 82, PkgLength 1 + 4 + 6 = 11.
        let b = encode(|a| a.device("PCI0", |a| a.name("_UID", Data::Integer(0)))).unwrap();
        #[rustfmt::skip]
        assert_eq!(b, [
            0x5B, 0x82, 0x0B, b'P', b'C', b'I', b'0',
            0x08, b'_', b'U', b'I', b'D', 0x00,
        ]);
        // Nested, long enough for two-byte PkgLengths. Buffer of 60 bytes: content 0A 3C and the
        // bytes = 62, total 63 = 0x3F (one byte), so 64 bytes with BufferOp. The Name: 5 + 64 = 69.
        // Device content 4 + 69 = 73, total 75 = 0x4B -> 0x40 | 0xB, 0x4B >> 4 = 4B 04. Scope
        // content 5 + 2 (DeviceOp) + 2 + 73 = 82, total 84 = 0x54 -> 44 05.
        let b = encode(|a| {
            a.scope("\\_SB", |a| {
                a.device("PCI0", |a| a.name("_CRS", Data::Buffer(&[0x55; 60])))
            })
        })
        .unwrap();
        assert_eq!(b.len(), 1 + 2 + 82);
        assert_eq!(
            &b[..10],
            [0x10, 0x44, 0x05, 0x5C, b'_', b'S', b'B', b'_', 0x5B, 0x82]
        );
        assert_eq!(&b[10..12], [0x4B, 0x04]);
        assert_eq!(&b[12..16], *b"PCI0");
        assert_eq!(&b[16..21], [0x08, b'_', b'C', b'R', b'S']);
        assert_eq!(&b[21..25], [0x11, 0x3F, 0x0A, 0x3C]);
        // A bad name inside a block fails the whole encoding.
        assert_eq!(
            encode(|a| a.scope("\\_SB", |a| a.device("pci0", |_| {}))),
            None
        );
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
