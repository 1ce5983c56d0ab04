//! The guest's PCI host bridge as an ACPI device, `\_SB.PCI0` in the DSDT (ACPI 6.5 §6.1
//! device identification, §6.2 `_CRS`, §6.5.5 `_BBN`, §6.5.6 `_SEG`). With ACPI, x86 Linux
//! scans PCI only below such a device (drivers/acpi/pci_root.c binds to `PNP0A03` as `_HID` or
//! `_CID`), so a guest that is to see passed-through functions needs one. The configuration
//! space itself is the hypervisor's conf1 emulation at ports 0xCF8/0xCFC: the host bridge at
//! 00:00.0 and further functions on bus 0.
//!
//! ```text
//! Scope (\_SB) {
//!     Device (PCI0) {
//!         Name (_HID, EisaId ("PNP0A08"))   // PCI Express root bridge
//!         Name (_CID, EisaId ("PNP0A03"))   // ... compatible with a PCI root bridge
//!         Name (_ADR, Zero)
//!         Name (_UID, Zero)
//!         Name (_SEG, Zero)
//!         Name (_BBN, Zero)
//!         Name (_CRS, ResourceTemplate () {
//!             WordBusNumber (0x00-0x00)
//!             IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
//!             WordIO (0x0000-0x0CF7)
//!             WordIO (0x0D00-0xFFFF)
//!             DWordMemory (mmio32, NonCacheable, ReadWrite)
//!             QWordMemory (mmio64, Cacheable, ReadWrite)   // only if configured
//!         })
//!     }
//! }
//! ```
//!
//! Choices, and why:
//! - `PNP0A08` with `_CID` `PNP0A03`, as QEMU's q35 does: the functions below are PCI Express
//!   (SR-IOV virtual functions) and the host bridge's id is QEMU's "PCIe host bridge".
//! - No `_OSC`. For a `PNP0A08` bridge without it, Linux 6.1 logs "_OSC: platform retains control
//!   of PCIe features (AE_NOT_FOUND)" and so leaves native PCIe hotplug, PME, AER and ASPM alone.
//!   None of them exists here (no root ports, no hotplug; the functions interrupt with MSI-X,
//!   which `_OSC` does not gate: only the FADT's "MSI not supported" flag would, and it is
//!   clear). Without ECAM (no MCFG) Linux would not ask for PCIe control anyway ("OS requires
//!   [ExtendedConfig ...]"). An `_OSC` would need a Method body with buffer fields, for log
//!   lines only. (A `PNP0A03`-only bridge would skip them, but would misdescribe PCIe
//!   functions.)
//! - No `_PRT`: the functions have no INTx (virtual functions never do, and the host bridge has
//!   no interrupt pin); they use MSI-X only.
//! - `_ADR` beside `_HID` is what QEMU writes; ACPI says a device "should not" have both and
//!   iasl warns about it, but Linux ignores `_ADR` on a root bridge.
//! - `_BBN` 0 and `_SEG` 0: one segment, the root bus is bus 0; `_CRS` limits the bus range to
//!   bus 0 alone, since every function is on bus 0 (no bridges).
//! - `_CRS` as QEMU's: the bus number range, the config ports 0xCF8-0xCFF (a consumed range, not
//!   a window; x86 Linux recognises and drops exactly this entry), the rest of the 64 KiB I/O
//!   space as two windows, and the MMIO windows where the hypervisor places BARs: the 32-bit one
//!   non-cacheable and the 64-bit one cacheable, as QEMU marks its two PCI holes.

use super::aml::{eisa_id, Aml, Data};
use super::madt::LOCAL_APIC_ADDRESS;
use super::resource::{Caching, ResourceTemplate};
use super::{AcpiError, GuestPlatform};

/// The guest's PCI root bridge: its memory windows, each `(base, length in bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRootConfig {
    /// The window below 4 GiB where the hypervisor places BARs (32- or 64-bit ones). It must not
    /// be guest RAM (the e820 map lists RAM only below the RAM size) nor the IOAPIC, the local
    /// APIC / MSI range or an ECAM window.
    pub mmio32: (u64, u64),
    /// An optional window at or above 4 GiB for 64-bit BARs.
    pub mmio64: Option<(u64, u64)>,
}

/// `_HID`: PCI Express root bridge.
pub const PNP0A08: u32 = match eisa_id(b"PNP0A08") {
    Some(id) => id,
    None => panic!("bad EISA id"),
};
/// `_CID`: PCI root bridge.
pub const PNP0A03: u32 = match eisa_id(b"PNP0A03") {
    Some(id) => id,
    None => panic!("bad EISA id"),
};

/// PCI configuration mechanism #1: CONFIG_ADDRESS at 0xCF8, CONFIG_DATA at 0xCFC-0xCFF.
pub const CONFIG_PORTS: u16 = 0xCF8;
pub const CONFIG_PORTS_LEN: u8 = 8;

const FOUR_GIB: u64 = 1 << 32;
/// The local APIC page and the MSI address range (0xFEE00000-0xFEEFFFFF).
const MSI_RANGE: (u64, u64) = (LOCAL_APIC_ADDRESS as u64, 0x10_0000);
const IOAPIC_WINDOW_LEN: u64 = 0x1000;

/// `[base, base + len)` as a half-open range, if not empty and not wrapping.
fn range((base, len): (u64, u64)) -> Option<(u64, u64)> {
    if len == 0 {
        return None;
    }
    Some((base, base.checked_add(len)?))
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl PciRootConfig {
    /// Checks the windows against each other and against what else `platform` puts in the
    /// guest-physical address space.
    pub(super) fn check(&self, platform: &GuestPlatform<'_>) -> Result<(), AcpiError> {
        let bad = |(base, _): (u64, u64)| AcpiError::BadPciWindow(base);
        let mmio32 = range(self.mmio32)
            .filter(|r| r.1 <= FOUR_GIB)
            .ok_or(bad(self.mmio32))?;
        let mut taken = [None; 3];
        taken[0] = range(MSI_RANGE);
        taken[1] = platform
            .ioapic
            .and_then(|io| range((io.address.into(), IOAPIC_WINDOW_LEN)));
        taken[2] = platform.ecam.and_then(|e| {
            let buses = u64::from(e.end_bus.saturating_sub(e.start_bus)) + 1;
            range((e.base, buses << 20))
        });
        let ram = platform.ram;
        let clashes = |r: (u64, u64)| {
            taken.iter().flatten().any(|&t| overlaps(r, t)) || ram.overlaps(r.0, r.1)
        };
        if clashes(mmio32) {
            return Err(bad(self.mmio32));
        }
        if let Some(w) = self.mmio64 {
            let mmio64 = range(w).filter(|r| r.0 >= FOUR_GIB).ok_or(bad(w))?;
            if clashes(mmio64) {
                return Err(bad(w));
            }
        }
        Ok(())
    }

    /// The `_CRS` of the bridge.
    pub fn resources(&self) -> ResourceTemplate {
        let mut crs = ResourceTemplate::new();
        crs.word_bus_number(0, 0);
        crs.io_decode16(CONFIG_PORTS, CONFIG_PORTS, 1, CONFIG_PORTS_LEN);
        crs.word_io(0x0000, CONFIG_PORTS - 1);
        crs.word_io(0x0D00, 0xFFFF);
        let (base, len) = self.mmio32;
        // Out-of-range values (rejected by `check`) become an empty range, which fails.
        let min = u32::try_from(base).unwrap_or(1);
        let max = base
            .checked_add(len)
            .and_then(|end| u32::try_from(end.checked_sub(1)?).ok())
            .unwrap_or(0);
        crs.dword_memory(min, max, Caching::NonCacheable);
        if let Some((base, len)) = self.mmio64 {
            let max = base.checked_add(len).and_then(|end| end.checked_sub(1));
            crs.qword_memory(base, max.unwrap_or(0), Caching::Cacheable);
        }
        crs
    }
}

/// Writes `Scope(\_SB) { Device(PCI0) { ... } }`; `None` if the resources do not encode.
pub fn write_pci_root(aml: &mut Aml<'_>, config: &PciRootConfig) -> Option<()> {
    let mut crs = config.resources();
    let crs = crs.finish()?;
    aml.scope("\\_SB", |aml| {
        aml.device("PCI0", |aml| {
            aml.name("_HID", Data::EisaId(PNP0A08));
            aml.name("_CID", Data::EisaId(PNP0A03));
            aml.name("_ADR", Data::Integer(0));
            aml.name("_UID", Data::Integer(0));
            aml.name("_SEG", Data::Integer(0));
            aml.name("_BBN", Data::Integer(0));
            aml.name("_CRS", Data::Buffer(crs));
        });
    });
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eisa_ids_worked_by_hand() {
        // PNP: 0b0_10000_01110_10000 = 0x41D0, stored 41 D0, then 0A 08.
        assert_eq!(PNP0A08.to_le_bytes(), [0x41, 0xD0, 0x0A, 0x08]);
        assert_eq!(PNP0A03, 0x030A_D041);
    }

    #[test]
    fn windows_must_not_clash() {
        let std = GuestPlatform::standard(&[0]);
        let ok = PciRootConfig {
            mmio32: (0xC000_0000, 0x3EC0_0000),
            mmio64: Some((0x80_0000_0000, 0x80_0000_0000)),
        };
        assert_eq!(ok.check(&std), Ok(()));
        let check = |mmio32, mmio64| PciRootConfig { mmio32, mmio64 }.check(&std);
        let e = |base| Err(AcpiError::BadPciWindow(base));
        assert_eq!(check((0xC000_0000, 0), None), e(0xC000_0000), "empty");
        assert_eq!(
            check((0xC000_0000, 0x3EC0_1000), None),
            e(0xC000_0000),
            "IOAPIC"
        );
        assert_eq!(check((0xFEE0_0000, 0x1000), None), e(0xFEE0_0000), "MSI");
        assert_eq!(
            check((0xFF00_0000, 0x0100_0001), None),
            e(0xFF00_0000),
            "4G"
        );
        assert_eq!(check((0xFF00_0000, 0x0100_0000), None), Ok(()));
        let low64 = Some((0xD000_0000, 0x1000));
        assert_eq!(check((0xC000_0000, 0x1000), low64), e(0xD000_0000));
        let wraps = Some((u64::MAX - 0xFFF, 0x1001));
        assert_eq!(check((0xC000_0000, 0x1000), wraps), e(u64::MAX - 0xFFF));
        let with_ecam = GuestPlatform {
            ecam: Some(crate::acpi_tables::EcamWindow {
                base: 0xB000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 0xFF,
            }),
            ..std
        };
        let over_ecam = PciRootConfig {
            mmio32: (0xBFF0_0000, 0x20_0000),
            mmio64: None,
        };
        assert_eq!(over_ecam.check(&with_ecam), e(0xBFF0_0000));
        assert_eq!(ok.check(&with_ecam), Ok(()));
        // RAM: 3 GiB below the hole leave the 32-bit window free; RAM above 4 GiB moves the
        // 64-bit window up.
        let big = std.with_ram(5 << 30);
        assert_eq!(ok.check(&big), Ok(()));
        let in_high_ram = PciRootConfig {
            mmio32: (0xC000_0000, 0x1000),
            mmio64: Some((0x1_4000_0000, 0x1000)),
        };
        assert_eq!(in_high_ram.check(&big), e(0x1_4000_0000));
        assert_eq!(in_high_ram.check(&std), Ok(()));
        let below_hole = PciRootConfig {
            mmio32: (0xB000_0000, 0x1000),
            mmio64: None,
        };
        assert_eq!(below_hole.check(&big), e(0xB000_0000));
    }
}
