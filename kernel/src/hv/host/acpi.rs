//! Machine discovery from ACPI: CPUs and their APIC ids (MADT), PCIe ECAM windows (MCFG) and AMD-Vi
//! IOMMUs (IVRS). Parsing is the `firmware` and `iommu` crates'; this is where it meets memory.

use crate::hv::host::memory;
use crate::hv::host::shutdown::fatal;
use boot::{BootInfo, RsdpSource};
use firmware::{madt::Cpu, Acpi, Rsdp, Signature};

/// Firmware tables through the identity map.
struct FirmwareMemory;

impl firmware::PhysMem for FirmwareMemory {
    fn bytes(&self, phys: u64, len: usize) -> Option<&[u8]> {
        let end = phys.checked_add(len as u64)?;
        if phys == 0 || end > memory::MAPPED_LIMIT {
            return None;
        }
        // SAFETY: inside the identity map; firmware tables and the BIOS areas are never written
        // after boot, and the hypervisor only reads them.
        Some(unsafe { super::phys::slice(phys, len as u64) })
    }
}

/// What the hypervisor learned about the machine.
pub struct Machine {
    madt: firmware::Madt,
    /// The first ECAM window (segment 0), if MCFG has one.
    pub ecam: Option<crate::hv::host::pci_host::Ecam>,
    /// The first AMD-Vi IOMMU, if IVRS describes one.
    pub iommu: Option<IommuDescription>,
}

impl Machine {
    /// Enabled processors in MADT order.
    pub fn cpus(&self) -> impl Iterator<Item = &Cpu> {
        self.madt.cpus().iter().filter(|c| c.enabled)
    }
}

/// What IVRS said about the first IOMMU.
#[derive(Clone, Copy, Debug)]
pub struct IommuDescription {
    pub mmio_base: u64,
    pub control: iommu::Control,
    /// Its own PCI function (requester id), whose MSI capability carries its interrupts.
    pub device_id: u16,
    /// The devices it translates: only these may be passed through (docs/isolation.md).
    pub coverage: iommu::ivrs::Coverage,
}

pub fn discover(boot: &BootInfo) -> Machine {
    let mem = FirmwareMemory;
    let rsdp = match boot.rsdp {
        RsdpSource::Copy { bytes, len } => Rsdp::from_bytes(&bytes[..len]).map(|r| (None, r)),
        RsdpSource::SearchBiosAreas => firmware::find_rsdp(&mem).map(|(at, r)| (Some(at), r)),
    };
    let (at, rsdp) = rsdp.unwrap_or_else(|e| fatal(format_args!("acpi: no usable RSDP: {e}")));
    match at {
        Some(at) => log::info!("acpi: rsdp at {at:#x} (BIOS area)"),
        None => log::info!("acpi: rsdp from the boot loader"),
    }
    let acpi = Acpi::new(&mem, &rsdp).unwrap_or_else(|e| fatal(format_args!("acpi: {e}")));

    let madt = acpi
        .madt()
        .unwrap_or_else(|e| fatal(format_args!("acpi: MADT: {e} (cannot find the CPUs)")));
    let enabled = madt.cpus().iter().filter(|c| c.enabled).count();
    log::info!(
        "acpi: madt: {enabled} cpus, local apic at {:#x}",
        madt.local_apic_address()
    );
    // Only the enabled ones by name: firmware also lists every absent, hot-pluggable thread.
    for c in madt.cpus().iter().filter(|c| c.enabled) {
        log::info!("acpi: cpu uid {} apic {}", c.uid, c.apic_id);
    }
    let disabled = madt.cpus().len() - enabled;
    if disabled > 0 {
        log::info!("acpi: madt: {disabled} more cpus listed as disabled (absent or hot-pluggable)");
    }
    if madt.dropped() > 0 {
        log::warn!(
            "acpi: madt: {} entries beyond what didvisor keeps ({} cpus, {} ioapics, {} overrides); those cpus stay unused",
            madt.dropped(),
            firmware::madt::MAX_CPUS,
            firmware::madt::MAX_IOAPICS,
            firmware::madt::MAX_OVERRIDES
        );
    }
    for io in madt.io_apics() {
        log::info!(
            "acpi: ioapic id {} at {:#x}, gsi base {}",
            io.id,
            io.address,
            io.gsi_base
        );
    }

    let mut ecam = None;
    match acpi.mcfg() {
        Ok(mcfg) => {
            for r in mcfg.regions() {
                if r.segment == 0 && ecam.is_none() {
                    ecam = Some(crate::hv::host::pci_host::Ecam {
                        base: r.base,
                        start_bus: r.start_bus,
                        end_bus: r.end_bus,
                    });
                }
                log::info!(
                    "acpi: mcfg: ecam {:#x} segment {} buses {}-{}",
                    r.base,
                    r.segment,
                    r.start_bus,
                    r.end_bus
                );
            }
        }
        Err(e) => log::info!("acpi: mcfg: {e}: no PCIe ECAM; PCI devices cannot be passed through"),
    }

    let mut iommu = None;
    match acpi.find_table(Signature::IVRS) {
        Ok(table) => match iommu::Ivrs::from_sdt(&table) {
            Ok(ivrs) => {
                for (i, unit) in ivrs.iommus().enumerate() {
                    if i == 0 {
                        iommu = Some(IommuDescription {
                            mmio_base: unit.mmio_base,
                            device_id: unit.device_id.0,
                            control: iommu::Control::from_ivhd_flags(unit.flags),
                            coverage: iommu::ivrs::Coverage::of(&unit),
                        });
                    }
                    log::info!("iommu {i}: {}", unit.summary());
                    if i > 0 {
                        log::warn!(
                            "iommu {i}: not driven (didvisor programs iommu 0 only): devices it covers cannot be passed through"
                        );
                    }
                }
            }
            Err(e) => log::info!("acpi: ivrs: malformed ({e}); no DMA isolation"),
        },
        Err(e) => log::info!(
            "acpi: ivrs: {e}: no AMD-Vi IOMMU, so no DMA isolation and no device passthrough"
        ),
    }
    Machine { madt, ecam, iommu }
}
