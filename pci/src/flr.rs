//! Function Level Reset through the PCI Express capability (PCIe 4.0 §6.6.2, §7.5.3.3 Device
//! Capabilities, §7.5.3.4 Device Control): a function that reports Function Level Reset
//! Capability (Device Capabilities bit 28) resets when software writes Initiate Function Level
//! Reset (Device Control bit 15). The reset stops the function's outstanding requests (its DMA)
//! and puts its configuration registers back to their defaults, memory decode and MSI-X
//! included; software waits 100 ms (§6.6.2) before it touches the function again.
//!
//! Split in two so the caller does the waiting with its own clock: [`initiate`], then after
//! [`WAIT_MS`] the caller restores what it had set.

use super::capability::{find_capability, id};
use super::{Bdf, ConfigAccess};

/// Device Capabilities at capability + 4, Device Control at + 8 (§7.5.3.3, §7.5.3.4).
pub const DEVICE_CAPABILITIES: u16 = 0x04;
pub const DEVICE_CONTROL: u16 = 0x08;
/// Device Capabilities: Function Level Reset Capability.
pub const FLR_CAPABLE: u32 = 1 << 28;
/// Device Control: Initiate Function Level Reset (always reads 0).
pub const INITIATE_FLR: u16 = 1 << 15;
/// How long software waits after the FLR before the next configuration access (§6.6.2).
pub const WAIT_MS: u64 = 100;

/// Why a function cannot be reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlrError {
    /// No PCI Express capability.
    NotPcie,
    /// The capability does not offer FLR.
    NotCapable,
}

impl FlrError {
    pub fn reason(self) -> &'static str {
        match self {
            FlrError::NotPcie => "no PCI Express capability, so no function-level reset",
            FlrError::NotCapable => "its PCI Express capability offers no function-level reset",
        }
    }
}

/// Starts a Function Level Reset of `bdf`; the caller then waits [`WAIT_MS`]. The other Device
/// Control bits are written back as they were.
pub fn initiate(cfg: &mut impl ConfigAccess, bdf: Bdf) -> Result<(), FlrError> {
    let cap = find_capability(cfg, bdf, id::PCI_EXPRESS).ok_or(FlrError::NotPcie)?;
    if cfg.read32(bdf, cap + DEVICE_CAPABILITIES) & FLR_CAPABLE == 0 {
        return Err(FlrError::NotCapable);
    }
    // Device Control is the low half of the dword; the high half (Device Status) has
    // write-1-to-clear bits: write 0 there.
    let control = cfg.read16(bdf, cap + DEVICE_CONTROL) & !INITIATE_FLR;
    cfg.write32(bdf, cap + DEVICE_CONTROL, u32::from(control | INITIATE_FLR));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeEcam, FakeFunction};
    use super::*;

    const BDF: Bdf = Bdf::from_routing_id(0x0021);
    const CAP: usize = 0x80;

    fn function(devcap: u32) -> FakeEcam {
        let mut f = FakeFunction::new();
        f.put16(0x06, 1 << 4) // Status: capabilities list
            .put8(0x34, CAP as u8)
            .put8(CAP, id::PCI_EXPRESS)
            .put32(CAP + 4, devcap)
            .put16(CAP + 8, 0x2810)
            .put16(CAP + 10, 0x0004)
            .writable32(CAP + 8, 0x0000_ffff);
        let mut e = FakeEcam::default();
        e.add(BDF, f);
        e
    }

    #[test]
    fn initiates_with_the_other_control_bits_kept() {
        let mut e = function(FLR_CAPABLE);
        initiate(&mut e, BDF).unwrap();
        let &(bdf, at, value) = e.writes.last().unwrap();
        assert_eq!((bdf, at), (BDF, (CAP + 8) as u16));
        assert_eq!(
            value,
            0x2810 | u32::from(INITIATE_FLR),
            "Device Status written 0"
        );
    }

    #[test]
    fn refuses_without_the_capability() {
        let mut e = function(0);
        assert_eq!(initiate(&mut e, BDF), Err(FlrError::NotCapable));
        assert!(e.writes.is_empty());
        let mut bare = FakeEcam::default();
        bare.add(BDF, FakeFunction::new());
        assert_eq!(initiate(&mut bare, BDF), Err(FlrError::NotPcie));
    }
}
