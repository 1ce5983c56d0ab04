//! The host side of a VF passed through to a guest: where the guest sees it, its interrupt
//! remapping table, and the host vectors it raises in emulated mode. What a guest does with it
//! (attach, BAR mapping, MSI-X) is `vf`.

use crate::hv::host::idt::DEVICE_VECTORS;
use crate::hv::host::pci_host::Ecam;
use crate::hv::irq::HostVector;
use crate::hv::passthrough::iommu_hw::VfTable;
use crate::hv::vm::platform::VirtualPlatform;
use devices::pci::DevFn;
use iommu::{DeviceId, InterruptTable};
use pci::msix::MsixInfo;
use pci::passthrough::PassthroughSetup;
use pci::Bdf;

/// Where the guest sees the VF: bus 0, device 1, function 0.
pub const GUEST_DEVFN: DevFn = DevFn(1 << 3);
/// The guest-physical window for passed-through BARs (the DSDT's PCI0 window starts here).
pub const GUEST_BAR_BASE: u64 = 0xc000_0000;
/// log2 of the interrupt remapping table size per VF (32 entries, one host vector each in
/// emulated mode).
pub const IRT_LOG2: u8 = 5;
const _: () = assert!(1 << IRT_LOG2 == DEVICE_VECTORS);

/// The host side of a passed-through VF.
pub struct VfHost {
    pub bdf: Bdf,
    pub ecam: Ecam,
    pub msix_cap: u16,
    pub msix: MsixInfo,
    pub irt: InterruptTable,
    /// Device interrupts that went through an exit (emulated mode); the exitless modes never see
    /// them.
    pub via_exits: core::sync::atomic::AtomicU64,
    /// The guest's index (its vCPUs' GATags name it).
    pub guest_index: u8,
    /// What the guest's view of the VF was built from (built again at a restart).
    pub setup: PassthroughSetup,
}

impl VfHost {
    pub fn table(&self) -> VfTable<'_> {
        VfTable {
            irt: &self.irt,
            device: self.device(),
            guest: self.guest_index,
        }
    }

    pub fn device(&self) -> DeviceId {
        DeviceId(self.bdf.routing_id())
    }

    /// The host vectors of MSI-X entries this core took (`pending`, one bit per entry): raises
    /// in `vcpu` the guest vectors they stand for (emulated mode), counts them as exits.
    pub fn take_host_vectors(&self, platform: &VirtualPlatform, vcpu: usize, pending: u32) {
        for index in (0..DEVICE_VECTORS).filter(|i| pending & (1 << i) != 0) {
            match platform.irq.host_vector(index) {
                HostVector::Guest(vector) => {
                    platform.interrupt_vcpu(vcpu, vector, didvisor::irqchip::TriggerMode::Edge);
                }
                HostVector::Stray => {}
                HostVector::Unassigned => continue,
            }
            self.via_exits
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
    }
}
