//! PCI Express memory-mapped configuration space table, signature `MCFG`
//! (PCI Firmware Specification 3.3 §4.1.2; ACPI 6.5 Table 5.6 reserves the
//! signature): the ECAM windows, one per PCI segment group and bus range.

use crate::bytes::{u16_at, u64_at, u8_at};
use crate::sdt::{Sdt, SdtHeader, Signature};
use crate::Error;
use core::mem::{offset_of, size_of};

/// The MCFG's fixed part (PCI Firmware spec Table 4-2); allocation
/// structures follow it.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct McfgFixed {
    /// Standard header, signature `MCFG`.
    pub header: SdtHeader,
    /// Reserved, 8 bytes.
    pub reserved: u64,
}

/// One configuration space base address allocation (PCI Firmware spec
/// Table 4-3).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct McfgAllocation {
    /// Physical address of the ECAM window. It corresponds to bus 0 of the
    /// segment even when `start_bus` is larger.
    pub base_address: u64,
    /// PCI segment group number.
    pub segment: u16,
    /// First bus decoded by this window.
    pub start_bus: u8,
    /// Last bus decoded by this window.
    pub end_bus: u8,
    /// Reserved.
    pub reserved: u32,
}

const _: () = {
    assert!(size_of::<McfgFixed>() == 44);
    assert!(offset_of!(McfgFixed, reserved) == 36);
    assert!(size_of::<McfgAllocation>() == 16);
    assert!(offset_of!(McfgAllocation, base_address) == 0);
    assert!(offset_of!(McfgAllocation, segment) == 8);
    assert!(offset_of!(McfgAllocation, start_bus) == 10);
    assert!(offset_of!(McfgAllocation, end_bus) == 11);
    assert!(offset_of!(McfgAllocation, reserved) == 12);
};

/// Most ECAM windows kept in an [`Mcfg`].
pub const MAX_ECAM_REGIONS: usize = 16;

/// One ECAM window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EcamRegion {
    /// Physical address that bus 0, device 0, function 0 would have.
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First decoded bus.
    pub start_bus: u8,
    /// Last decoded bus.
    pub end_bus: u8,
}

impl EcamRegion {
    /// Physical address of the 4 KiB configuration space of
    /// `bus:device.function`, or `None` if this window does not decode it.
    /// ECAM address bits: bus 27:20, device 19:15, function 14:12 (PCI
    /// Express Base spec §7.2.2).
    pub fn function_base(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        if bus < self.start_bus || bus > self.end_bus || device > 31 || function > 7 {
            return None;
        }
        let offset = u64::from(bus) << 20 | u64::from(device) << 15 | u64::from(function) << 12;
        self.base.checked_add(offset)
    }
}

/// A decoded MCFG.
#[derive(Clone, Copy, Debug)]
pub struct Mcfg {
    regions: [EcamRegion; MAX_ECAM_REGIONS],
    count: usize,
    dropped: usize,
}

impl Mcfg {
    /// Decodes a validated table; the signature must be `MCFG`. Bytes after
    /// the last whole allocation structure are an error (a length that is no
    /// multiple of 16 after the fixed part is malformed).
    pub fn parse(sdt: &Sdt<'_>) -> Result<Self, Error> {
        let sig = sdt.signature();
        if sig != Signature::MCFG {
            return Err(Error::WrongSignature {
                expected: Signature::MCFG,
                found: sig,
            });
        }
        let entries = sdt
            .bytes()
            .get(size_of::<McfgFixed>()..)
            .ok_or(Error::Truncated { sig })?;
        let mut mcfg = Mcfg {
            regions: [EcamRegion::default(); MAX_ECAM_REGIONS],
            count: 0,
            dropped: 0,
        };
        let chunks = entries.chunks_exact(size_of::<McfgAllocation>());
        if !chunks.remainder().is_empty() {
            let offset = sdt.bytes().len() - chunks.remainder().len();
            return Err(Error::BadEntryLength { sig, offset });
        }
        for a in chunks {
            let truncated = Error::Truncated { sig };
            let region = EcamRegion {
                base: u64_at(a, offset_of!(McfgAllocation, base_address)).ok_or(truncated)?,
                segment: u16_at(a, offset_of!(McfgAllocation, segment)).ok_or(truncated)?,
                start_bus: u8_at(a, offset_of!(McfgAllocation, start_bus)).ok_or(truncated)?,
                end_bus: u8_at(a, offset_of!(McfgAllocation, end_bus)).ok_or(truncated)?,
            };
            match mcfg.regions.get_mut(mcfg.count) {
                Some(slot) => {
                    *slot = region;
                    mcfg.count += 1;
                }
                None => mcfg.dropped += 1,
            }
        }
        Ok(mcfg)
    }

    /// The ECAM windows in table order.
    pub fn regions(&self) -> &[EcamRegion] {
        self.regions.get(..self.count).unwrap_or(&[])
    }

    /// The window decoding `segment:bus`, if any.
    pub fn region_for(&self, segment: u16, bus: u8) -> Option<&EcamRegion> {
        self.regions()
            .iter()
            .find(|r| r.segment == segment && (r.start_bus..=r.end_bus).contains(&bus))
    }

    /// Allocations that did not fit [`MAX_ECAM_REGIONS`].
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{table, Blob};

    fn allocation(b: &mut Blob, base: u64, segment: u16, start: u8, end: u8) {
        b.u64(base).u16(segment).u8(start).u8(end).u32(0);
    }

    #[test]
    fn decodes_qemu_q35_mcfg() {
        let mut b = Blob::default();
        b.u64(0);
        allocation(&mut b, 0xB000_0000, 0, 0, 0xFF);
        let t = table(*b"MCFG", 1, &b.0);
        let mcfg = Mcfg::parse(&Sdt::from_bytes(&t).unwrap()).unwrap();
        assert_eq!(
            mcfg.regions(),
            [EcamRegion {
                base: 0xB000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 0xFF
            }]
        );
        assert_eq!(mcfg.dropped(), 0);
    }

    #[test]
    fn several_segments() {
        let mut b = Blob::default();
        b.u64(0);
        allocation(&mut b, 0xE000_0000, 0, 0, 0x3F);
        allocation(&mut b, 0x40_0000_0000, 1, 0x80, 0x8F);
        let t = table(*b"MCFG", 1, &b.0);
        let mcfg = Mcfg::parse(&Sdt::from_bytes(&t).unwrap()).unwrap();
        assert_eq!(mcfg.region_for(0, 0x3F).unwrap().base, 0xE000_0000);
        assert_eq!(mcfg.region_for(0, 0x40), None);
        assert_eq!(mcfg.region_for(1, 0x85).unwrap().segment, 1);
        assert_eq!(mcfg.region_for(1, 0x7F), None);
    }

    #[test]
    fn ecam_function_address() {
        let r = EcamRegion {
            base: 0xB000_0000,
            segment: 0,
            start_bus: 0,
            end_bus: 0xFF,
        };
        // 00:00.0 is the base itself.
        assert_eq!(r.function_base(0, 0, 0), Some(0xB000_0000));
        // 01:02.3 = 1<<20 | 2<<15 | 3<<12 = 0x10_0000 + 0x1_0000 + 0x3000.
        assert_eq!(r.function_base(1, 2, 3), Some(0xB011_3000));
        // ff:1f.7 = 0xFF<<20 | 0x1F<<15 | 7<<12 = 0xFFF_F000.
        assert_eq!(r.function_base(0xFF, 31, 7), Some(0xBFFF_F000));
        assert_eq!(r.function_base(0, 32, 0), None);
        assert_eq!(r.function_base(0, 0, 8), None);
        // The base is bus 0's even when the window starts later.
        let late = EcamRegion {
            base: 0xE000_0000,
            segment: 1,
            start_bus: 0x80,
            end_bus: 0x8F,
        };
        assert_eq!(late.function_base(0x7F, 0, 0), None);
        assert_eq!(late.function_base(0x80, 0, 0), Some(0xE800_0000));
    }

    #[test]
    fn ragged_or_short_tables_are_errors() {
        let mut b = Blob::default();
        b.u64(0);
        allocation(&mut b, 0xB000_0000, 0, 0, 0xFF);
        b.u32(0xDEAD);
        let t = table(*b"MCFG", 1, &b.0);
        assert_eq!(
            Mcfg::parse(&Sdt::from_bytes(&t).unwrap()).unwrap_err(),
            Error::BadEntryLength {
                sig: Signature::MCFG,
                offset: 60
            }
        );
        let t = table(*b"MCFG", 1, &[0; 4]);
        assert_eq!(
            Mcfg::parse(&Sdt::from_bytes(&t).unwrap()).unwrap_err(),
            Error::Truncated {
                sig: Signature::MCFG
            }
        );
    }

    #[test]
    fn too_many_regions_are_counted() {
        let mut b = Blob::default();
        b.u64(0);
        for seg in 0..(MAX_ECAM_REGIONS as u16 + 2) {
            allocation(&mut b, 0xE000_0000, seg, 0, 0xFF);
        }
        let t = table(*b"MCFG", 1, &b.0);
        let mcfg = Mcfg::parse(&Sdt::from_bytes(&t).unwrap()).unwrap();
        assert_eq!(mcfg.regions().len(), MAX_ECAM_REGIONS);
        assert_eq!(mcfg.dropped(), 2);
    }
}
