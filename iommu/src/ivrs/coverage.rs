//! Which requester ids an IOMMU translates, kept after the IVRS is gone.
//!
//! An IVHD's device entries name the devices whose DMA and interrupts that IOMMU handles
//! (AMD IOMMU spec §5.2.2.2). A device no IVHD of the programmed IOMMU lists is behind another
//! IOMMU, or none: programming this one's device table does nothing for it, so passing it
//! through would leave its DMA unisolated. [`Coverage`] copies the ranges at discovery so the
//! passthrough decision can be made later without the table.

use super::{Device, DeviceId, Ivhd};

/// Most ranges kept; an IVHD with more is treated as covering only the ones kept, so a device
/// past them is refused rather than trusted.
pub const MAX_COVERAGE_RANGES: usize = 64;

/// The requester-id ranges one IOMMU (one IVHD) covers, on one PCI segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// The PCI segment group of every range.
    pub segment: u16,
    ranges: [(u16, u16); MAX_COVERAGE_RANGES],
    len: usize,
    /// The IVHD had more ranges than [`MAX_COVERAGE_RANGES`].
    pub truncated: bool,
}

/// Why a device may not be passed through behind the programmed IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCovered {
    /// The device is on another PCI segment group than the IOMMU.
    OtherSegment,
    /// The IOMMU's IVHD does not list the device.
    NotListed(DeviceId),
}

impl NotCovered {
    /// One line for the console.
    pub fn reason(&self) -> &'static str {
        match self {
            NotCovered::OtherSegment => {
                "on another PCI segment than the IOMMU didvisor drives: its DMA could not be isolated"
            }
            NotCovered::NotListed(_) => {
                "not behind the IOMMU didvisor drives (its IVHD does not list the device): its DMA could not be isolated"
            }
        }
    }
}

impl Coverage {
    /// The ranges `ivhd` lists (select, range, alias and extended entries; special devices
    /// and ACPI devices are not PCI functions and are not kept).
    pub fn of(ivhd: &Ivhd<'_>) -> Coverage {
        let mut c = Coverage {
            segment: ivhd.pci_segment,
            ranges: [(0, 0); MAX_COVERAGE_RANGES],
            len: 0,
            truncated: false,
        };
        for d in ivhd.devices() {
            if let Device::Range(r) = d {
                if c.len == MAX_COVERAGE_RANGES {
                    c.truncated = true;
                    break;
                }
                c.ranges[c.len] = (r.first.0, r.last.0);
                c.len += 1;
            }
        }
        c
    }

    /// Whether `device` on PCI segment `segment` is translated by this IOMMU.
    pub fn check(&self, segment: u16, device: DeviceId) -> Result<(), NotCovered> {
        if segment != self.segment {
            return Err(NotCovered::OtherSegment);
        }
        let listed = self.ranges[..self.len]
            .iter()
            .any(|&(first, last)| (first..=last).contains(&device.0));
        if listed {
            Ok(())
        } else {
            Err(NotCovered::NotListed(device))
        }
    }
}
