//! Resource data (ACPI 6.5 §6.4): the byte list of a `ResourceTemplate()`, which ASL turns into a
//! Buffer and which `_CRS` returns. Only the descriptors a PCI host bridge needs are here.
//!
//! Small items (§6.4.2) start with one byte: item name in bits 6:3, length in bits 2:0. Large
//! items (§6.4.3) start with 1 in bit 7 and the item name in bits 6:0, then a 16-bit length of
//! what follows. All fields are little-endian.
//!
//! The address space descriptors written here all describe a window the bridge *produces* for
//! the devices below it (general flags bit 0 clear), decoded positively (bit 1 clear), with a
//! fixed minimum and maximum (bits 2 and 3 set): the window is where it is and cannot be moved.
//! Granularity and translation offset are 0: the bridge passes addresses through unchanged.

/// I/O Port Descriptor (§6.4.2.5): small item 0x08, 7 bytes follow.
pub const IO_PORT_TAG: u8 = 0x08 << 3 | 7;
/// End Tag (§6.4.2.9): small item 0x0F, 1 byte (the checksum) follows.
pub const END_TAG: u8 = 0x0F << 3 | 1;
/// DWord Address Space Descriptor (§6.4.3.5.2): large item 0x07.
pub const DWORD_ADDRESS_TAG: u8 = 0x80 | 0x07;
/// Word Address Space Descriptor (§6.4.3.5.3): large item 0x08.
pub const WORD_ADDRESS_TAG: u8 = 0x80 | 0x08;
/// QWord Address Space Descriptor (§6.4.3.5.1): large item 0x0A.
pub const QWORD_ADDRESS_TAG: u8 = 0x80 | 0x0A;

/// I/O port descriptor information byte, bit 0: the device decodes all 16 address bits
/// (`Decode16`), not only 10.
pub const IO_DECODE_16: u8 = 1;

/// Address space descriptor general flags (byte 4 of §6.4.3.5.1-3): `_MIF` (bit 2) and `_MAF`
/// (bit 3) set; `_DEC` (bit 1) clear for positive decode; bit 0 clear for a resource the bridge
/// produces (`ResourceProducer`).
pub const FIXED_WINDOW: u8 = 1 << 3 | 1 << 2;

/// Address space resource types (byte 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AddressSpace {
    Memory = 0,
    Io = 1,
    BusNumber = 2,
}

/// I/O type-specific flags (§6.4.3.5.5): `_RNG` = 3 in bits 1:0, the window holds
/// both ISA and non-ISA ranges (`EntireRange`); static type, no translation.
pub const IO_ENTIRE_RANGE: u8 = 3;

/// Memory cacheability, `_MEM` in type-specific flags bits 2:1 (§6.4.3.5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Caching {
    NonCacheable = 0,
    Cacheable = 1,
    WriteCombining = 2,
    Prefetchable = 3,
}

/// Memory type-specific flags: `_RW` (bit 0) set for read-write, `_MEM` in bits 2:1; `_MTP`
/// (bits 4:3) 0 for AddressRangeMemory and `_TTP` (bit 5) 0 for TypeStatic.
pub const fn memory_flags(caching: Caching) -> u8 {
    (caching as u8) << 1 | 1
}

/// Room for a host bridge's template: bus numbers (16), the config ports (8), two I/O windows
/// (2 × 16), a 32-bit (26) and a 64-bit (46) memory window and the end tag (2) take 130 bytes.
pub const RESOURCE_TEMPLATE_MAX: usize = 192;

/// Builds a resource template in a fixed buffer. A descriptor that does not fit or whose range is
/// empty or does not fit its fields makes [`ResourceTemplate::finish`] fail.
pub struct ResourceTemplate {
    buf: [u8; RESOURCE_TEMPLATE_MAX],
    len: usize,
    failed: bool,
}

impl Default for ResourceTemplate {
    fn default() -> Self {
        Self::new()
    }
}

impl ResourceTemplate {
    pub const fn new() -> Self {
        Self {
            buf: [0; RESOURCE_TEMPLATE_MAX],
            len: 0,
            failed: false,
        }
    }

    fn bytes(&mut self, v: &[u8]) {
        let end = self.len.checked_add(v.len());
        match end.and_then(|end| self.buf.get_mut(self.len..end)) {
            Some(dst) => {
                dst.copy_from_slice(v);
                self.len += v.len();
            }
            None => self.failed = true,
        }
    }

    /// `IO(Decode16, min, max, alignment, length)`: a fixed-size block of `length` ports whose
    /// base lies in `min..=max` on an `alignment` boundary. Layout: tag, information byte, min
    /// (2), max (2), alignment (1), length (1).
    pub fn io_decode16(&mut self, min: u16, max: u16, alignment: u8, length: u8) {
        self.bytes(&[IO_PORT_TAG, IO_DECODE_16]);
        self.bytes(&min.to_le_bytes());
        self.bytes(&max.to_le_bytes());
        self.bytes(&[alignment, length]);
    }

    /// `WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, first, last, 0, n)`.
    pub fn word_bus_number(&mut self, first: u16, last: u16) {
        self.address::<2>(AddressSpace::BusNumber, 0, first.into(), last.into());
    }

    /// `WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, n)`.
    pub fn word_io(&mut self, min: u16, max: u16) {
        self.address::<2>(AddressSpace::Io, IO_ENTIRE_RANGE, min.into(), max.into());
    }

    /// `DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, caching, ReadWrite, 0, min,
    /// max, 0, n)`.
    pub fn dword_memory(&mut self, min: u32, max: u32, caching: Caching) {
        self.address::<4>(
            AddressSpace::Memory,
            memory_flags(caching),
            min.into(),
            max.into(),
        );
    }

    /// `QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, caching, ReadWrite, 0, min,
    /// max, 0, n)`.
    pub fn qword_memory(&mut self, min: u64, max: u64, caching: Caching) {
        self.address::<8>(AddressSpace::Memory, memory_flags(caching), min, max);
    }

    /// An address space descriptor whose five numeric fields are `W` bytes wide (Word 2, DWord
    /// 4, QWord 8): tag, length (2), resource type, general flags, type-specific flags,
    /// granularity, minimum, maximum, translation offset, length of the range. The range
    /// `min..=max` must not be empty and its length must fit the field.
    fn address<const W: usize>(&mut self, kind: AddressSpace, type_flags: u8, min: u64, max: u64) {
        let tag = match W {
            2 => WORD_ADDRESS_TAG,
            4 => DWORD_ADDRESS_TAG,
            _ => QWORD_ADDRESS_TAG,
        };
        let field_max = u64::MAX >> (64 - 8 * W);
        let len = max.checked_sub(min).and_then(|d| d.checked_add(1));
        let Some(len) = len.filter(|&l| l <= field_max) else {
            self.failed = true;
            return;
        };
        // What follows the 3-byte header: 3 flag/type bytes and 5 fields.
        let follows = (3 + 5 * W) as u16;
        self.bytes(&[tag]);
        self.bytes(&follows.to_le_bytes());
        self.bytes(&[kind as u8, FIXED_WINDOW, type_flags]);
        for field in [0, min, max, 0, len] {
            self.bytes(&field.to_le_bytes()[..W]);
        }
    }

    /// Appends the End Tag and returns the template. Its second byte is a checksum that makes
    /// the whole template sum to zero (§6.4.2.9; a zero there would also be accepted as "no
    /// checksum", which is what ASL compilers write).
    pub fn finish(&mut self) -> Option<&[u8]> {
        self.bytes(&[END_TAG]);
        let sum = self.buf[..self.len]
            .iter()
            .fold(0u8, |s, b| s.wrapping_add(*b));
        self.bytes(&[sum.wrapping_neg()]);
        if self.failed {
            return None;
        }
        self.buf.get(..self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    #[test]
    fn descriptor_tags_worked_by_hand() {
        assert_eq!(IO_PORT_TAG, 0x47);
        assert_eq!(END_TAG, 0x79);
        assert_eq!(WORD_ADDRESS_TAG, 0x88);
        assert_eq!(DWORD_ADDRESS_TAG, 0x87);
        assert_eq!(QWORD_ADDRESS_TAG, 0x8A);
        assert_eq!(FIXED_WINDOW, 0x0C);
        assert_eq!(memory_flags(Caching::NonCacheable), 0x01);
        assert_eq!(memory_flags(Caching::Cacheable), 0x03);
        assert_eq!(memory_flags(Caching::Prefetchable), 0x07);
    }

    #[test]
    fn word_bus_number_0_to_0() {
        let mut t = ResourceTemplate::new();
        t.word_bus_number(0, 0);
        let b = t.finish().unwrap();
        // 88, length 13, type 2 (bus), flags 0C, type flags 0, granularity 0, min 0, max 0,
        // translation 0, length 1; end tag 79 and the checksum:
        // 88 + 0D + 02 + 0C + 01 + 79 = 0x11D, and 0x100 - 0x1D = 0xE3.
        #[rustfmt::skip]
        let expected = [
            0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
            0x79, 0xE3,
        ];
        assert_eq!(b, expected);
        assert_eq!(sum(b), 0);
    }

    #[test]
    fn config_ports_and_io_windows() {
        let mut t = ResourceTemplate::new();
        t.io_decode16(0xCF8, 0xCF8, 1, 8);
        t.word_io(0x0000, 0x0CF7);
        t.word_io(0x0D00, 0xFFFF);
        let b = t.finish().unwrap();
        #[rustfmt::skip]
        let expected: [u8; 8 + 16 + 16] = [
            // IO(Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
            0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08,
            // WordIO 0x0000-0x0CF7: type 1, flags 0C, EntireRange 3; length 0x0CF8.
            0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00,
            0x00, 0x00, 0xF7, 0x0C, 0x00, 0x00, 0xF8, 0x0C,
            // WordIO 0x0D00-0xFFFF: length 0x10000 - 0x0D00 = 0xF300.
            0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00,
            0x00, 0x0D, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0xF3,
        ];
        assert_eq!(&b[..40], expected);
        assert_eq!(b.len(), 42);
        assert_eq!(b[40], 0x79);
        assert_eq!(sum(b), 0);
    }

    #[test]
    fn dword_and_qword_memory() {
        let mut t = ResourceTemplate::new();
        t.dword_memory(0xC000_0000, 0xFEBF_FFFF, Caching::NonCacheable);
        t.qword_memory(0x80_0000_0000, 0xFF_FFFF_FFFF, Caching::Cacheable);
        let b = t.finish().unwrap();
        #[rustfmt::skip]
        let expected: [u8; 26 + 46] = [
            // 87, length 23, type 0 (memory), flags 0C, RW non-cacheable 01.
            0x87, 0x17, 0x00, 0x00, 0x0C, 0x01,
            0x00, 0x00, 0x00, 0x00, // granularity
            0x00, 0x00, 0x00, 0xC0, // min
            0xFF, 0xFF, 0xBF, 0xFE, // max
            0x00, 0x00, 0x00, 0x00, // translation
            0x00, 0x00, 0xC0, 0x3E, // length 0xFEC00000 - 0xC0000000 = 0x3EC00000
            // 8A, length 43, type 0, flags 0C, RW cacheable 03.
            0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x03,
            0, 0, 0, 0, 0, 0, 0, 0,
            0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00,
            0, 0, 0, 0, 0, 0, 0, 0,
            0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
        ];
        assert_eq!(&b[..72], expected);
        assert_eq!(b.len(), 74);
        assert_eq!(sum(b), 0);
    }

    #[test]
    fn bad_ranges_and_overflow_fail() {
        let mut t = ResourceTemplate::new();
        t.word_io(0x10, 0x0F);
        assert!(t.finish().is_none(), "empty range");
        let mut t = ResourceTemplate::new();
        t.word_io(0, 0xFFFF);
        assert!(t.finish().is_none(), "length 0x10000 does not fit a word");
        let mut t = ResourceTemplate::new();
        t.dword_memory(0, u32::MAX, Caching::Cacheable);
        assert!(t.finish().is_none(), "length 4 GiB does not fit a dword");
        let mut t = ResourceTemplate::new();
        t.qword_memory(0, u64::MAX, Caching::Cacheable);
        assert!(t.finish().is_none(), "length 2^64");
        let mut t = ResourceTemplate::new();
        for _ in 0..RESOURCE_TEMPLATE_MAX / 46 + 1 {
            t.qword_memory(0, 0xFFF, Caching::Cacheable);
        }
        assert!(t.finish().is_none(), "full");
        // An empty template is just the end tag: 79 and 0x100 - 0x79 = 0x87.
        assert_eq!(ResourceTemplate::new().finish().unwrap(), [0x79, 0x87]);
    }
}
