//! The host's PCI Express hierarchy as the hypervisor sees it: configuration space through ECAM,
//! enumeration, BARs, capabilities, SR-IOV, MSI-X, and the virtual configuration space a guest sees
//! for a passed-through virtual function.
//!
//! Hardware access goes through [`ConfigAccess`] (the kernel implements it over the ECAM window
//! from MCFG; the tests over a fake ECAM built byte by byte), so everything here is plain logic.
//! Nothing panics on values read from a device or written by a guest.
//!
//! | file             | what                                                               |
//! |------------------|--------------------------------------------------------------------|
//! | `header.rs`      | type-0 header layout, command register, function identity          |
//! | `enumerate.rs`   | bus scan (absent functions, multi-function devices)                |
//! | `bar.rs`         | BAR decoding and sizing (all-ones method, decode disabled meanwhile)|
//! | `capability.rs`  | standard (0x34) and extended (0x100) capability lists               |
//! | `sriov.rs`       | SR-IOV extended capability, VF routing ids, VF BAR placement        |
//! | `msi.rs`         | MSI capability: one message, for the hypervisor's own interrupts    |
//! | `msix.rs`        | MSI-X capability and table entries                                  |
//! | `passthrough.rs` | a VF's virtual configuration space and MSI-X table for a guest      |
//! | `window.rs`      | free room in the 32-bit MMIO hole for BARs the hypervisor places    |
//!
//! Specifications: PCI Local Bus Specification 3.0 (ch. 6, configuration space); PCI Express
//! Base Specification 4.0 (§7.2.2 ECAM, §7.5 type-0 header and capability lists, §7.7.2 MSI-X,
//! §9.3.3 SR-IOV extended capability); Single Root I/O Virtualization and Sharing Specification
//! 1.1 ch. 3.
//!
//! QEMU quirks this code is shaped by (see `docs/platform.md`): VFs read vendor/device 0xFFFF; VF
//! BARs are decoded only below 4 GiB; a VF decodes its BAR only when its own command register has
//! Memory Space set.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;

pub mod bar;
pub mod capability;
pub mod enumerate;
pub mod flr;
pub mod header;
pub mod msi;
pub mod msix;
pub mod passthrough;
pub mod sriov;
pub mod window;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod passthrough_tests;
#[cfg(test)]
mod tests;

pub use bar::{Bar, BarKind};
pub use enumerate::{enumerate, Enumerator};
pub use header::{ClassCode, Command, FunctionInfo};

/// Bytes of configuration space per function under ECAM (PCIe 4.0 §7.2.2).
pub const CONFIG_SPACE_SIZE: u16 = 4096;

/// Configuration-space access to the host's functions, a dword at a time.
///
/// Under ECAM (PCIe 4.0 §7.2.2) the dword of `bdf` at `offset` lives at
/// `ecam_base + bdf.ecam_offset() + offset`. Implementations ignore bits 1:0 of `offset` and
/// offsets at or past [`CONFIG_SPACE_SIZE`] (reads of those return all ones), and return all
/// ones for functions that are absent.
pub trait ConfigAccess {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32);

    /// The 16-bit register at `offset` (2-byte aligned).
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        (self.read32(bdf, offset & !3) >> (8 * (offset & 2))) as u16
    }

    /// The byte at `offset`.
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        (self.read32(bdf, offset & !3) >> (8 * (offset & 3))) as u8
    }
}

/// A bus/device/function number, stored as its 16-bit routing id (PCIe 4.0 §2.2.4.2): bus in
/// bits 15:8, device in 7:3, function in 2:0. With ARI the device/function split is only
/// notational; the routing id is what counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf(u16);

impl Bdf {
    /// `None` unless `device < 32` and `function < 8`.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device < 32 && function < 8 {
            Some(Bdf((bus as u16) << 8
                | (device as u16) << 3
                | function as u16))
        } else {
            None
        }
    }

    pub const fn from_routing_id(rid: u16) -> Bdf {
        Bdf(rid)
    }

    pub const fn routing_id(self) -> u16 {
        self.0
    }

    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    pub const fn device(self) -> u8 {
        (self.0 >> 3) as u8 & 0x1F
    }

    pub const fn function(self) -> u8 {
        self.0 as u8 & 7
    }

    /// The offset of this function's 4 KiB in an ECAM window that starts at bus 0
    /// (PCIe 4.0 §7.2.2: bus 27:20, device 19:15, function 14:12).
    pub const fn ecam_offset(self) -> u64 {
        (self.0 as u64) << 12
    }

    /// Parses `BB:DD.F` or `SSSS:BB:DD.F` in hex (segment 0 only), as Linux prints them.
    pub fn parse(s: &str) -> Option<Bdf> {
        let s = match s.split_once(':') {
            Some((seg, rest)) if rest.contains(':') => {
                if seg.is_empty() || u16::from_str_radix(seg, 16).ok()? != 0 {
                    return None;
                }
                rest
            }
            _ => s,
        };
        let (bus, rest) = s.split_once(':')?;
        let (dev, func) = rest.split_once('.')?;
        let hex = |t: &str, max_len: usize| {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                None
            } else {
                u8::from_str_radix(t, 16).ok()
            }
        };
        Bdf::new(hex(bus, 2)?, hex(dev, 2)?, hex(func, 1)?)
    }
}

impl fmt::Display for Bdf {
    /// `00:03.1`, as Linux's `lspci` prints a function on segment 0.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}
