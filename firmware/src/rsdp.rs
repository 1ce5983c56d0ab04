//! Root System Description Pointer: finding it and validating it
//! (ACPI 6.5 §5.2.5).

use crate::bytes::{array, sums_to_zero, u32_at, u64_at, u8_at};
use crate::sdt::read;
use crate::{Error, PhysMem};
use core::mem::{offset_of, size_of};

/// The RSDP structure (ACPI 6.5 §5.2.5.3, Table 5.3). Revision 0 (ACPI 1.0)
/// RSDPs end after `rsdt_address` (20 bytes); the fields after it are then
/// zero here.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// `"RSD PTR "`.
    pub signature: [u8; 8],
    /// Makes the first 20 bytes sum to zero.
    pub checksum: u8,
    /// OEM identification.
    pub oem_id: [u8; 6],
    /// 0 for ACPI 1.0 (no XSDT), 2 for ACPI 2.0 and later.
    pub revision: u8,
    /// Physical address of the RSDT.
    pub rsdt_address: u32,
    /// Length of this structure, revision >= 2 only.
    pub length: u32,
    /// Physical address of the XSDT, revision >= 2 only.
    pub xsdt_address: u64,
    /// Makes all `length` bytes sum to zero, revision >= 2 only.
    pub extended_checksum: u8,
    /// Reserved.
    pub reserved: [u8; 3],
}

/// Bytes covered by the first checksum (the ACPI 1.0 structure).
pub const RSDP_V1_LEN: usize = offset_of!(Rsdp, length);
/// Size of the revision-2 structure.
pub const RSDP_V2_LEN: usize = size_of::<Rsdp>();
/// Longest RSDP `length` accepted; the structure has been 36 bytes since
/// ACPI 2.0, a much larger value is garbage.
const RSDP_MAX_LEN: u32 = 4096;

const _: () = {
    assert!(RSDP_V1_LEN == 20);
    assert!(RSDP_V2_LEN == 36);
    assert!(offset_of!(Rsdp, checksum) == 8);
    assert!(offset_of!(Rsdp, oem_id) == 9);
    assert!(offset_of!(Rsdp, revision) == 15);
    assert!(offset_of!(Rsdp, rsdt_address) == 16);
    assert!(offset_of!(Rsdp, length) == 20);
    assert!(offset_of!(Rsdp, xsdt_address) == 24);
    assert!(offset_of!(Rsdp, extended_checksum) == 32);
    assert!(offset_of!(Rsdp, reserved) == 33);
};

/// `"RSD PTR "`, note the trailing blank.
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";

/// Where the BIOS data area keeps the EBDA's real-mode segment (§5.2.5.1).
const EBDA_SEGMENT_PTR: u64 = 0x40E;
/// Only the first KiB of the EBDA is searched (§5.2.5.1).
const EBDA_SEARCH_LEN: u64 = 1024;
/// The BIOS read-only area searched second (§5.2.5.1).
const BIOS_AREA: core::ops::Range<u64> = 0xE_0000..0x10_0000;
/// The RSDP sits on a 16-byte boundary (§5.2.5.1).
const RSDP_ALIGN: usize = 16;

/// Which root table the RSDP points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootPointer {
    /// XSDT with 64-bit entries (§5.2.8).
    Xsdt(u64),
    /// RSDT with 32-bit entries (§5.2.7).
    Rsdt(u32),
}

impl Rsdp {
    /// Validates an RSDP held in `bytes`, e.g. the copy a Multiboot2 loader
    /// passes in its "ACPI old/new RSDP" tags. Checks the signature, the
    /// 20-byte checksum and, for revision >= 2, the length and the extended
    /// checksum.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let v1 = bytes.get(..RSDP_V1_LEN).ok_or(Error::RsdpChecksum)?;
        if array::<8>(v1, 0) != Some(RSDP_SIGNATURE) {
            return Err(Error::RsdpSignature);
        }
        if !sums_to_zero(v1) {
            return Err(Error::RsdpChecksum);
        }
        let v1_fields = |b: &[u8]| -> Option<Rsdp> {
            Some(Rsdp {
                signature: RSDP_SIGNATURE,
                checksum: u8_at(b, offset_of!(Rsdp, checksum))?,
                oem_id: array(b, offset_of!(Rsdp, oem_id))?,
                revision: u8_at(b, offset_of!(Rsdp, revision))?,
                rsdt_address: u32_at(b, offset_of!(Rsdp, rsdt_address))?,
                length: 0,
                xsdt_address: 0,
                extended_checksum: 0,
                reserved: [0; 3],
            })
        };
        let mut rsdp = v1_fields(v1).ok_or(Error::RsdpChecksum)?;
        if rsdp.revision < 2 {
            return Ok(rsdp);
        }
        let length = u32_at(bytes, offset_of!(Rsdp, length)).ok_or(Error::RsdpChecksum)?;
        if (length as usize) < RSDP_V2_LEN || length > RSDP_MAX_LEN {
            return Err(Error::RsdpChecksum);
        }
        let whole = bytes.get(..length as usize).ok_or(Error::RsdpChecksum)?;
        if !sums_to_zero(whole) {
            return Err(Error::RsdpChecksum);
        }
        rsdp.length = length;
        rsdp.xsdt_address =
            u64_at(whole, offset_of!(Rsdp, xsdt_address)).ok_or(Error::RsdpChecksum)?;
        rsdp.extended_checksum =
            u8_at(whole, offset_of!(Rsdp, extended_checksum)).ok_or(Error::RsdpChecksum)?;
        rsdp.reserved = array(whole, offset_of!(Rsdp, reserved)).ok_or(Error::RsdpChecksum)?;
        Ok(rsdp)
    }

    /// Validates the RSDP at physical address `phys`, e.g. an address a boot
    /// loader or the Linux boot protocol (`acpi_rsdp_addr`) handed over.
    pub fn at<M: PhysMem + ?Sized>(mem: &M, phys: u64) -> Result<Self, Error> {
        let v1 = read(mem, phys, RSDP_V1_LEN)?;
        let revision = u8_at(v1, offset_of!(Rsdp, revision)).unwrap_or(0);
        if revision < 2 || array::<8>(v1, 0) != Some(RSDP_SIGNATURE) {
            return Self::from_bytes(v1);
        }
        let v2 = read(mem, phys, RSDP_V2_LEN)?;
        let length = u32_at(v2, offset_of!(Rsdp, length)).unwrap_or(0);
        if (length as usize) <= RSDP_V2_LEN || length > RSDP_MAX_LEN {
            return Self::from_bytes(v2);
        }
        Self::from_bytes(read(mem, phys, length as usize)?)
    }

    /// The root table to walk: the XSDT when the RSDP has one (revision >= 2
    /// and a non-zero address), else the RSDT (§5.2.5.3: "An ACPI-compatible
    /// OS must use the XSDT if present").
    pub fn root(&self) -> RootPointer {
        let xsdt = self.xsdt_address;
        if self.revision >= 2 && xsdt != 0 {
            RootPointer::Xsdt(xsdt)
        } else {
            RootPointer::Rsdt(self.rsdt_address)
        }
    }
}

/// Searches the legacy BIOS areas for a valid RSDP (§5.2.5.1): the first KiB
/// of the EBDA (segment read from 0x40E), then 0xE0000..0x100000, on 16-byte
/// boundaries. Returns its physical address and contents.
///
/// A candidate with the right signature but a bad checksum is skipped (a stale
/// copy), and the search goes on.
pub fn find_rsdp<M: PhysMem + ?Sized>(mem: &M) -> Result<(u64, Rsdp), Error> {
    let ebda = read(mem, EBDA_SEGMENT_PTR, 2)
        .ok()
        .and_then(|b| crate::bytes::u16_at(b, 0))
        .map(|segment| u64::from(segment) << 4)
        .filter(|&base| base != 0);
    let ebda_area = ebda.map(|base| base..base + EBDA_SEARCH_LEN);
    ebda_area
        .into_iter()
        .chain(core::iter::once(BIOS_AREA))
        .flat_map(|area| area.step_by(RSDP_ALIGN))
        .find_map(|phys| {
            let sig = mem.bytes(phys, RSDP_SIGNATURE.len())?;
            if sig != RSDP_SIGNATURE {
                return None;
            }
            Rsdp::at(mem, phys).ok().map(|rsdp| (phys, rsdp))
        })
        .ok_or(Error::NoRsdp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fix_checksum, Blob, FakeMem};

    fn rsdp_v1(rsdt: u32) -> Vec<u8> {
        let mut b = Blob::default();
        b.raw(&RSDP_SIGNATURE).u8(0).raw(b"DIDVSR").u8(0).u32(rsdt);
        let mut v = b.0;
        fix_checksum(&mut v, 8);
        v
    }

    fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut b = Blob::default();
        b.raw(&RSDP_SIGNATURE).u8(0).raw(b"DIDVSR").u8(2).u32(rsdt);
        b.u32(36).u64(xsdt).u8(0).raw(&[0; 3]);
        let mut v = b.0;
        fix_checksum(&mut v[..20], 8);
        fix_checksum(&mut v, 32);
        v
    }

    #[test]
    fn v1_from_bytes() {
        let r = Rsdp::from_bytes(&rsdp_v1(0x1234_5678)).unwrap();
        assert_eq!(r.revision, 0);
        assert_eq!(r.oem_id, *b"DIDVSR");
        assert_eq!(r.root(), RootPointer::Rsdt(0x1234_5678));
    }

    #[test]
    fn v2_prefers_xsdt() {
        let r = Rsdp::from_bytes(&rsdp_v2(0x1000, 0x1_2345_6000)).unwrap();
        assert_eq!({ r.length }, 36);
        assert_eq!(r.root(), RootPointer::Xsdt(0x1_2345_6000));
        let no_xsdt = Rsdp::from_bytes(&rsdp_v2(0x1000, 0)).unwrap();
        assert_eq!(no_xsdt.root(), RootPointer::Rsdt(0x1000));
    }

    #[test]
    fn rejects_bad_signature_and_checksums() {
        let mut v1 = rsdp_v1(0x1000);
        v1[0] = b'X';
        assert_eq!(Rsdp::from_bytes(&v1), Err(Error::RsdpSignature));

        let mut v1 = rsdp_v1(0x1000);
        v1[16] ^= 0x10;
        assert_eq!(Rsdp::from_bytes(&v1), Err(Error::RsdpChecksum));

        // First checksum fine, extended checksum broken.
        let mut v2 = rsdp_v2(0x1000, 0x2000);
        v2[24] ^= 1;
        fix_checksum(&mut v2[..20], 8);
        assert_eq!(Rsdp::from_bytes(&v2), Err(Error::RsdpChecksum));
    }

    #[test]
    fn rejects_truncated_and_bad_length() {
        let v2 = rsdp_v2(0x1000, 0x2000);
        assert_eq!(Rsdp::from_bytes(&v2[..19]), Err(Error::RsdpChecksum));
        assert_eq!(Rsdp::from_bytes(&v2[..30]), Err(Error::RsdpChecksum));
        let mut bad = v2.clone();
        bad[20..24].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        fix_checksum(&mut bad, 32);
        assert_eq!(Rsdp::from_bytes(&bad), Err(Error::RsdpChecksum));
    }

    /// Low memory with the BDA, an EBDA at 0x9FC00 and the BIOS area.
    fn low_memory() -> FakeMem {
        FakeMem::new(0, &vec![0u8; 0x10_0000])
    }

    #[test]
    fn finds_rsdp_in_bios_area() {
        let mut mem = low_memory();
        mem.write(0xF_5A30, &rsdp_v2(0x7FE_0000, 0x7FE_1000));
        let (phys, r) = find_rsdp(&mem).unwrap();
        assert_eq!(phys, 0xF_5A30);
        assert_eq!(r.root(), RootPointer::Xsdt(0x7FE_1000));
    }

    #[test]
    fn finds_rsdp_in_ebda_first() {
        let mut mem = low_memory();
        mem.write(0x40E, &0x9FC0u16.to_le_bytes());
        mem.write(0x9_FC00 + 0x40, &rsdp_v1(0xAAAA));
        mem.write(0xF_0000, &rsdp_v1(0xBBBB));
        let (phys, r) = find_rsdp(&mem).unwrap();
        assert_eq!(phys, 0x9_FC40);
        assert_eq!(r.root(), RootPointer::Rsdt(0xAAAA));
    }

    #[test]
    fn skips_misaligned_and_corrupt_candidates() {
        let mut mem = low_memory();
        mem.write(0xE_0008, &rsdp_v1(0x1111)); // not on a 16-byte boundary
        let mut corrupt = rsdp_v1(0x2222);
        corrupt[9] ^= 0xFF;
        mem.write(0xE_0010, &corrupt);
        assert_eq!(find_rsdp(&mem).unwrap_err(), Error::NoRsdp);
        mem.write(0xF_FFE0, &rsdp_v1(0x3333));
        assert_eq!(find_rsdp(&mem).unwrap().0, 0xF_FFE0);
    }

    #[test]
    fn nothing_readable_means_no_rsdp() {
        assert_eq!(find_rsdp(&FakeMem::empty()).unwrap_err(), Error::NoRsdp);
    }

    #[test]
    fn rsdp_at_address() {
        let mem = FakeMem::new(0x5000, &rsdp_v2(0x10, 0x20));
        assert_eq!(
            Rsdp::at(&mem, 0x5000).unwrap().root(),
            RootPointer::Xsdt(0x20)
        );
        assert_eq!(
            Rsdp::at(&mem, 0x6000).unwrap_err(),
            Error::Unreadable {
                phys: 0x6000,
                len: 20
            }
        );
        // A v2 RSDP whose extended part lies outside readable memory.
        let mem = FakeMem::new(0x5000, &rsdp_v2(0x10, 0x20)[..20]);
        assert_eq!(
            Rsdp::at(&mem, 0x5000).unwrap_err(),
            Error::Unreadable {
                phys: 0x5000,
                len: 36
            }
        );
    }
}
