//! Capability lists: the standard list from the capabilities pointer at 0x34 (PCI 3.0 §6.7;
//! PCIe 4.0 §7.5.1.1.11), and the extended list from 0x100 (PCIe 4.0 §7.6.3, extended capability
//! header: id 15:0, version 19:16, next offset 31:20).
//!
//! Both walks are bounded: a pointer outside its region or misaligned ends the list, and the
//! number of steps is capped at the number of capabilities that could fit, so a device whose
//! list loops cannot hang the hypervisor.

use super::header::{CAPABILITIES_POINTER, COMMAND_STATUS, STATUS_CAPABILITIES_LIST};
use super::{Bdf, ConfigAccess, CONFIG_SPACE_SIZE};

/// Standard capability ids (PCI Code and ID Assignment Specification).
pub mod id {
    pub const POWER_MANAGEMENT: u8 = 0x01;
    pub const MSI: u8 = 0x05;
    pub const VENDOR_SPECIFIC: u8 = 0x09;
    pub const PCI_EXPRESS: u8 = 0x10;
    pub const MSIX: u8 = 0x11;
}

/// Extended capability ids.
pub mod ext_id {
    pub const AER: u16 = 0x0001;
    pub const ARI: u16 = 0x000E;
    pub const ATS: u16 = 0x000F;
    pub const SRIOV: u16 = 0x0010;
}

/// First byte after the type-0/1 header: standard capabilities live in 0x40..0x100.
const STANDARD_START: u16 = 0x40;
/// Start of extended configuration space.
pub const EXTENDED_START: u16 = 0x100;
const MAX_STANDARD_STEPS: usize = (0x100 - 0x40) / 4;
const MAX_EXTENDED_STEPS: usize = (CONFIG_SPACE_SIZE as usize - 0x100) / 4;

/// The standard capabilities of `bdf` as (id, offset), in list order.
pub fn capabilities<C: ConfigAccess>(cfg: &C, bdf: Bdf) -> Capabilities<'_, C> {
    let status = cfg.read16(bdf, COMMAND_STATUS + 2);
    let next = if status != 0xFFFF && status & STATUS_CAPABILITIES_LIST != 0 {
        u16::from(cfg.read8(bdf, CAPABILITIES_POINTER) & !3)
    } else {
        0
    };
    Capabilities {
        cfg,
        bdf,
        next,
        steps: 0,
    }
}

pub struct Capabilities<'a, C> {
    cfg: &'a C,
    bdf: Bdf,
    next: u16,
    steps: usize,
}

impl<C: ConfigAccess> Iterator for Capabilities<'_, C> {
    /// (capability id, offset)
    type Item = (u8, u16);

    fn next(&mut self) -> Option<(u8, u16)> {
        let at = self.next;
        if !(STANDARD_START..0x100).contains(&at) || self.steps >= MAX_STANDARD_STEPS {
            return None;
        }
        self.steps += 1;
        let header = self.cfg.read16(self.bdf, at);
        self.next = (header >> 8) & 0xFC;
        Some((header as u8, at))
    }
}

/// The offset of the first standard capability with `id`.
pub fn find_capability(cfg: &impl ConfigAccess, bdf: Bdf, id: u8) -> Option<u16> {
    capabilities(cfg, bdf)
        .find(|&(i, _)| i == id)
        .map(|(_, at)| at)
}

/// One extended capability: id, version and offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedCapability {
    pub id: u16,
    pub version: u8,
    pub offset: u16,
}

/// The extended capabilities of `bdf`, in list order. A header of 0 or all ones at 0x100 means
/// there are none (conventional functions, absent functions).
pub fn extended_capabilities<C: ConfigAccess>(cfg: &C, bdf: Bdf) -> ExtendedCapabilities<'_, C> {
    ExtendedCapabilities {
        cfg,
        bdf,
        next: EXTENDED_START,
        steps: 0,
    }
}

pub struct ExtendedCapabilities<'a, C> {
    cfg: &'a C,
    bdf: Bdf,
    next: u16,
    steps: usize,
}

impl<C: ConfigAccess> Iterator for ExtendedCapabilities<'_, C> {
    type Item = ExtendedCapability;

    fn next(&mut self) -> Option<ExtendedCapability> {
        let at = self.next;
        if !(EXTENDED_START..CONFIG_SPACE_SIZE).contains(&at)
            || at & 3 != 0
            || self.steps >= MAX_EXTENDED_STEPS
        {
            return None;
        }
        self.steps += 1;
        let header = self.cfg.read32(self.bdf, at);
        if header == 0 || header == u32::MAX {
            return None;
        }
        self.next = (header >> 20) as u16 & !3;
        Some(ExtendedCapability {
            id: header as u16,
            version: (header >> 16) as u8 & 0xF,
            offset: at,
        })
    }
}

/// The offset of the first extended capability with `id`.
pub fn find_extended_capability(cfg: &impl ConfigAccess, bdf: Bdf, id: u16) -> Option<u16> {
    extended_capabilities(cfg, bdf)
        .find(|c| c.id == id)
        .map(|c| c.offset)
}
