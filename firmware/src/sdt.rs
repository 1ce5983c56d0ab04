//! The system description table header shared by every ACPI table but the
//! RSDP and FACS (ACPI 6.5 §5.2.6), and a validated view of one table.

use crate::bytes::{array, sums_to_zero, u32_at, u8_at};
use crate::{Error, PhysMem};
use core::fmt;
use core::mem::{offset_of, size_of};

/// A four-character table signature such as `APIC` (ACPI 6.5 §5.2.6, Table 5.5
/// and Table 5.6 list the reserved ones).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    /// Root System Description Table (§5.2.7).
    pub const RSDT: Self = Self(*b"RSDT");
    /// Extended System Description Table (§5.2.8).
    pub const XSDT: Self = Self(*b"XSDT");
    /// Multiple APIC Description Table (§5.2.12).
    pub const MADT: Self = Self(*b"APIC");
    /// PCI Express memory-mapped configuration space (PCI Firmware spec §4.1.2).
    pub const MCFG: Self = Self(*b"MCFG");
    /// AMD I/O Virtualization Reporting Structure (AMD IOMMU spec §5.2).
    pub const IVRS: Self = Self(*b"IVRS");
    /// Fixed ACPI Description Table (§5.2.9).
    pub const FADT: Self = Self(*b"FACP");
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(\"{self}\")")
    }
}

/// System description table header, 36 bytes (ACPI 6.5 §5.2.6, Table 5.4).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdtHeader {
    /// Table signature, e.g. `APIC`.
    pub signature: [u8; 4],
    /// Length of the whole table in bytes, header included.
    pub length: u32,
    /// Revision of the table's structure.
    pub revision: u8,
    /// Makes the whole table sum to zero.
    pub checksum: u8,
    /// OEM identification.
    pub oem_id: [u8; 6],
    /// OEM table identification.
    pub oem_table_id: [u8; 8],
    /// OEM revision of this table.
    pub oem_revision: u32,
    /// Vendor id of the tool that built the table.
    pub creator_id: u32,
    /// Revision of that tool.
    pub creator_revision: u32,
}

/// Size of [`SdtHeader`]: where a table's body starts.
pub const SDT_HEADER_LEN: usize = size_of::<SdtHeader>();

const _: () = {
    assert!(SDT_HEADER_LEN == 36);
    assert!(offset_of!(SdtHeader, signature) == 0);
    assert!(offset_of!(SdtHeader, length) == 4);
    assert!(offset_of!(SdtHeader, revision) == 8);
    assert!(offset_of!(SdtHeader, checksum) == 9);
    assert!(offset_of!(SdtHeader, oem_id) == 10);
    assert!(offset_of!(SdtHeader, oem_table_id) == 16);
    assert!(offset_of!(SdtHeader, oem_revision) == 24);
    assert!(offset_of!(SdtHeader, creator_id) == 28);
    assert!(offset_of!(SdtHeader, creator_revision) == 32);
};

/// Longest table accepted. Real tables are at most a few hundred KiB (a big
/// DSDT); a larger length field is garbage and would make us touch far memory.
pub const MAX_TABLE_LEN: u32 = 16 << 20;

impl SdtHeader {
    /// Decodes the header at the start of `bytes` (no checksum check).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            signature: array(bytes, offset_of!(Self, signature))?,
            length: u32_at(bytes, offset_of!(Self, length))?,
            revision: u8_at(bytes, offset_of!(Self, revision))?,
            checksum: u8_at(bytes, offset_of!(Self, checksum))?,
            oem_id: array(bytes, offset_of!(Self, oem_id))?,
            oem_table_id: array(bytes, offset_of!(Self, oem_table_id))?,
            oem_revision: u32_at(bytes, offset_of!(Self, oem_revision))?,
            creator_id: u32_at(bytes, offset_of!(Self, creator_id))?,
            creator_revision: u32_at(bytes, offset_of!(Self, creator_revision))?,
        })
    }

    /// The table signature.
    pub fn sig(&self) -> Signature {
        Signature(self.signature)
    }
}

/// A whole table whose length and checksum have been validated.
#[derive(Clone, Copy, Debug)]
pub struct Sdt<'a> {
    header: SdtHeader,
    bytes: &'a [u8],
}

impl<'a> Sdt<'a> {
    /// Validates a table held in `bytes` (which may extend past the table):
    /// length field within `36..=bytes.len()` and checksum over that length.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let header = SdtHeader::parse(bytes).ok_or(Error::Truncated {
            sig: Signature(array(bytes, 0).unwrap_or([0; 4])),
        })?;
        let sig = header.sig();
        let len = header.length;
        if (len as usize) < SDT_HEADER_LEN || len > MAX_TABLE_LEN {
            return Err(Error::BadLength { sig, len });
        }
        let bytes = bytes.get(..len as usize).ok_or(Error::Truncated { sig })?;
        if !sums_to_zero(bytes) {
            return Err(Error::BadChecksum { sig });
        }
        Ok(Self { header, bytes })
    }

    /// Reads and validates the table at physical address `phys`.
    pub fn at<M: PhysMem + ?Sized>(mem: &'a M, phys: u64) -> Result<Self, Error> {
        let header = Self::header_at(mem, phys)?;
        let len = header.length;
        if (len as usize) < SDT_HEADER_LEN || len > MAX_TABLE_LEN {
            return Err(Error::BadLength {
                sig: header.sig(),
                len,
            });
        }
        let bytes = read(mem, phys, len as usize)?;
        Self::from_bytes(bytes)
    }

    /// Like [`Sdt::at`], and also checks that the signature is `expected`.
    pub fn expect_at<M: PhysMem + ?Sized>(
        mem: &'a M,
        phys: u64,
        expected: Signature,
    ) -> Result<Self, Error> {
        let found = Self::header_at(mem, phys)?.sig();
        if found != expected {
            return Err(Error::WrongSignature { expected, found });
        }
        Self::at(mem, phys)
    }

    /// Only the 36-byte header at `phys`, unvalidated: enough to look at the
    /// signature before checksumming a table nobody asked for.
    pub fn header_at<M: PhysMem + ?Sized>(mem: &M, phys: u64) -> Result<SdtHeader, Error> {
        let bytes = read(mem, phys, SDT_HEADER_LEN)?;
        // `read` returned exactly SDT_HEADER_LEN bytes, so parsing cannot fail;
        // map the impossible case to an error anyway rather than unwrap.
        SdtHeader::parse(bytes).ok_or(Error::Unreadable {
            phys,
            len: SDT_HEADER_LEN,
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &SdtHeader {
        &self.header
    }

    /// The table signature.
    pub fn signature(&self) -> Signature {
        self.header.sig()
    }

    /// The whole table, header included, exactly `length` bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The bytes after the 36-byte header.
    pub fn body(&self) -> &'a [u8] {
        // `from_bytes` guarantees at least SDT_HEADER_LEN bytes.
        self.bytes.get(SDT_HEADER_LEN..).unwrap_or(&[])
    }
}

/// `mem.bytes` with the refusal turned into an [`Error`].
pub(crate) fn read<M: PhysMem + ?Sized>(mem: &M, phys: u64, len: usize) -> Result<&[u8], Error> {
    match mem.bytes(phys, len) {
        Some(b) if b.len() == len => Ok(b),
        _ => Err(Error::Unreadable { phys, len }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{table, FakeMem};

    #[test]
    fn header_fields_decode() {
        let t = table(*b"TEST", 3, &[1, 2, 3, 4]);
        let h = SdtHeader::parse(&t).unwrap();
        assert_eq!(h.sig(), Signature(*b"TEST"));
        assert_eq!({ h.length }, 40);
        assert_eq!(h.revision, 3);
        assert_eq!(h.oem_id, *b"DIDVSR");
        assert_eq!(h.oem_table_id, *b"TESTTBL ");
        assert_eq!({ h.oem_revision }, 0x0102_0304);
        assert_eq!({ h.creator_id }, u32::from_le_bytes(*b"RUST"));
        assert_eq!({ h.creator_revision }, 7);
    }

    #[test]
    fn valid_table_from_bytes() {
        let mut t = table(*b"TEST", 1, &[9; 10]);
        t.extend_from_slice(&[0xAA; 5]); // trailing bytes beyond `length`
        let sdt = Sdt::from_bytes(&t).unwrap();
        assert_eq!(sdt.signature(), Signature(*b"TEST"));
        assert_eq!(sdt.bytes().len(), 46);
        assert_eq!(sdt.body(), &[9; 10]);
    }

    #[test]
    fn bad_checksum_is_reported() {
        let mut t = table(*b"TEST", 1, &[9; 10]);
        t[40] ^= 1;
        assert_eq!(
            Sdt::from_bytes(&t).unwrap_err(),
            Error::BadChecksum {
                sig: Signature(*b"TEST")
            }
        );
    }

    #[test]
    fn bad_lengths_are_reported() {
        let sig = Signature(*b"TEST");
        let t = table(*b"TEST", 1, &[0; 8]);
        assert_eq!(
            Sdt::from_bytes(&t[..40]).unwrap_err(),
            Error::Truncated { sig }
        );
        assert_eq!(
            Sdt::from_bytes(&t[..20]).unwrap_err(),
            Error::Truncated { sig }
        );

        let mut short = t.clone();
        short[4..8].copy_from_slice(&35u32.to_le_bytes());
        assert_eq!(
            Sdt::from_bytes(&short).unwrap_err(),
            Error::BadLength { sig, len: 35 }
        );

        let mut huge = t.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mem = FakeMem::new(0x1000, &huge);
        assert_eq!(
            Sdt::at(&mem, 0x1000).unwrap_err(),
            Error::BadLength { sig, len: u32::MAX }
        );
    }

    #[test]
    fn table_in_memory() {
        let t = table(*b"TEST", 1, &[5; 3]);
        let mem = FakeMem::new(0x7000, &t);
        let sdt = Sdt::expect_at(&mem, 0x7000, Signature(*b"TEST")).unwrap();
        assert_eq!(sdt.body(), &[5; 3]);
        assert_eq!(
            Sdt::expect_at(&mem, 0x7000, Signature::MADT).unwrap_err(),
            Error::WrongSignature {
                expected: Signature::MADT,
                found: Signature(*b"TEST")
            }
        );
        assert_eq!(
            Sdt::at(&mem, 0x7004).unwrap_err(),
            Error::Unreadable {
                phys: 0x7004,
                len: 36
            }
        );
    }

    #[test]
    fn signature_display_escapes_garbage() {
        assert_eq!(format!("{}", Signature(*b"APIC")), "APIC");
        assert_eq!(
            format!("{}", Signature([b'A', 0, 0xff, b' '])),
            "A\\x00\\xff "
        );
    }
}
