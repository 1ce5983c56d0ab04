//! The MSI capability (PCI Local Bus 3.0 §6.8.1; PCIe 4.0 §7.7.1), for functions the hypervisor
//! itself takes interrupts from (the IOMMU's GA log interrupt): dword 0 id/next/Message Control
//! (bit 0 MSI Enable, 6:4 Multiple Message Enable, bit 7 64-bit address capable), dword 1
//! Message Address, then Message Upper Address (64-bit capable only) and Message Data.

use super::{Bdf, ConfigAccess};

/// Message Control bit 0.
pub const CONTROL_ENABLE: u16 = 1 << 0;
/// Message Control 6:4: Multiple Message Enable (000b: one message).
pub const CONTROL_MME: u16 = 0x7 << 4;
/// Message Control bit 7.
pub const CONTROL_64BIT: u16 = 1 << 7;

/// Why a message cannot be programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// The address needs 64 bits and the function has 32-bit addresses only.
    AddressTooHigh,
}

/// Programs one message (`address`, `data`) into the MSI capability at `cap` and enables it:
/// MSI Enable is cleared while address and data change, Multiple Message Enable is 000b.
pub fn program(
    cfg: &mut impl ConfigAccess,
    bdf: Bdf,
    cap: u16,
    address: u64,
    data: u16,
) -> Result<(), MsiError> {
    let dword = cfg.read32(bdf, cap);
    let control = (dword >> 16) as u16;
    let wide = control & CONTROL_64BIT != 0;
    if !wide && address >> 32 != 0 {
        return Err(MsiError::AddressTooHigh);
    }
    let off = control & !(CONTROL_ENABLE | CONTROL_MME);
    let with = |c: u16| dword & 0xFFFF | u32::from(c) << 16;
    cfg.write32(bdf, cap, with(off));
    cfg.write32(bdf, cap + 4, address as u32 & !3);
    let data_at = if wide {
        cfg.write32(bdf, cap + 8, (address >> 32) as u32);
        cap + 0xC
    } else {
        cap + 8
    };
    let old = cfg.read32(bdf, data_at);
    cfg.write32(bdf, data_at, old & 0xFFFF_0000 | u32::from(data));
    cfg.write32(bdf, cap, with(off | CONTROL_ENABLE));
    Ok(())
}
