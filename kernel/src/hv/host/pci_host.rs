//! The host's PCI configuration space through ECAM (the window MCFG names), and the boot-time
//! listing of what is there.

use crate::println;
use pci::{self, Bdf, ConfigAccess};

/// One ECAM window (PCIe 4.0 §7.2.2), identity-mapped like all physical memory below 64 GiB.
#[derive(Clone, Copy, Debug)]
pub struct Ecam {
    pub base: u64,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl Ecam {
    fn address(&self, bdf: Bdf, offset: u16) -> Option<u64> {
        if bdf.bus() < self.start_bus
            || bdf.bus() > self.end_bus
            || offset >= pci::CONFIG_SPACE_SIZE
        {
            return None;
        }
        // The MCFG base is where bus 0 would be, whatever the window's first bus (PCI Firmware
        // Specification 3.x §4.1.2, the MCFG "Base Address"; firmware::mcfg computes it so too).
        Some(self.base + bdf.ecam_offset() + u64::from(offset & !3))
    }
}

impl ConfigAccess for Ecam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        match self.address(bdf, offset) {
            // SAFETY: an aligned dword inside the ECAM window MCFG describes; configuration reads
            // have no side effects on the functions we read.
            Some(a) => unsafe { super::phys::read::<u32>(a) },
            None => u32::MAX,
        }
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(a) = self.address(bdf, offset) {
            // SAFETY: an aligned dword inside the ECAM window; the callers write only registers
            // of functions the hypervisor owns (sizing, enabling, SR-IOV control).
            unsafe { super::phys::write(a, value) };
        }
    }
}

/// Prints every function on the window's buses, with SR-IOV capabilities.
pub fn list(ecam: &Ecam) {
    for f in pci::enumerate(ecam, ecam.start_bus..=ecam.end_bus) {
        println!(
            "pci: {} [{:04x}:{:04x}] class {:02x}.{:02x}.{:02x}",
            f.bdf, f.vendor_id, f.device_id, f.class.base, f.class.sub, f.class.prog_if
        );
        if let Some(sriov) = pci::sriov::Sriov::find(ecam, f.bdf) {
            let info = sriov.info(ecam);
            println!(
                "pci: {}: SR-IOV, up to {} VFs (device {:04x}, first at +{}, stride {})",
                f.bdf, info.total_vfs, info.vf_device_id, info.first_vf_offset, info.vf_stride
            );
        }
    }
}

/// The largest free range of the 32-bit MMIO hole (between 2 GiB and the IOAPIC at 0xFEC00000)
/// that no host BAR and no memory-map entry covers: where the hypervisor places VF BARs.
pub fn free_mmio_window(ecam: &mut Ecam, boot: &boot::BootInfo) -> Option<pci::sriov::MmioWindow> {
    const HOLE: (u64, u64) = (0x8000_0000, 0xfec0_0000);
    let mut occupied = [(0u64, 0u64); 256];
    let mut n = 0;
    let mut push = |range: (u64, u64)| {
        if n < occupied.len() {
            occupied[n] = range;
            n += 1;
        }
    };
    for r in boot.memory() {
        push((r.start, r.end));
    }
    // The window's buses (base is bus 0's address; an entry with start > end covers nothing).
    if ecam.start_bus <= ecam.end_bus {
        push((
            ecam.base + (u64::from(ecam.start_bus) << 20),
            ecam.base + ((u64::from(ecam.end_bus) + 1) << 20),
        ));
    }
    let functions: [Option<Bdf>; 64] = {
        let mut list = [None; 64];
        for (slot, f) in list
            .iter_mut()
            .zip(pci::enumerate(ecam, ecam.start_bus..=ecam.end_bus))
        {
            *slot = Some(f.bdf);
        }
        list
    };
    for bdf in functions.iter().flatten() {
        for bar in pci::bar::size_bars(ecam, *bdf).iter().flatten() {
            if bar.kind != pci::BarKind::Io && bar.base != 0 {
                push((bar.base, bar.base + bar.size));
            }
        }
    }
    let (start, end) = pci::window::largest_gap(&occupied[..n], HOLE)?;
    println!("pci: free MMIO window for VF BARs [{start:#x}-{end:#x})");
    Some(pci::sriov::MmioWindow { start, end })
}
