//! The host side of a VF passed through to a guest: where the guest sees it, its interrupt
//! remapping table, and the host vectors it raises in emulated mode. What a guest does with it
//! (attach, BAR mapping, MSI-X) is `vf`.

use crate::hv::host::idt::DEVICE_VECTORS;
use crate::hv::host::pci_host::Ecam;
use crate::hv::irq::HostVector;
use crate::hv::passthrough::iommu_hw::VfTable;
use crate::hv::vm::platform::VirtualPlatform;
use core::ops::Range;
use devices::pci::DevFn;
use didvisor::config::MAX_VFS_PER_GUEST;
use iommu::{DeviceId, InterruptTable};
use pci::msix::MsixInfo;
use pci::passthrough::PassthroughSetup;
use pci::Bdf;

/// Where the guest sees its VFs, in `vf=` order: bus 0, devices 1, 3, 4 and 5, function 0
/// (device 2 is the virtio disk, `guest_pci::VIRTIO_DEVFN`).
pub const GUEST_DEVFNS: [DevFn; MAX_VFS_PER_GUEST] =
    [DevFn(1 << 3), DevFn(3 << 3), DevFn(4 << 3), DevFn(5 << 3)];
/// The guest-physical window for passed-through BARs (the DSDT's PCI0 window starts here); the
/// VFs' BARs are placed one after another from here, below the virtio BAR.
pub const GUEST_BAR_BASE: u64 = 0xc000_0000;
/// Where the VFs' BARs must end: the virtio BAR sits here (asserted in `hv::virtio`).
pub const GUEST_BAR_END: u64 = 0xfe00_0000;
/// log2 of the interrupt remapping table size per VF (32 entries, one host vector each in
/// emulated mode).
pub const IRT_LOG2: u8 = 5;
const _: () = assert!(1 << IRT_LOG2 == DEVICE_VECTORS);

/// The device vectors a VF with `table_size` MSI-X entries gets after `taken` went to the
/// guest's earlier VFs: as many as are left, up to one per entry.
pub fn share_vectors(taken: u8, table_size: u16) -> Range<u8> {
    let end = (u16::from(taken) + table_size).min(DEVICE_VECTORS as u16);
    taken..(end as u8).max(taken)
}

/// The host side of a passed-through VF.
pub struct VfHost {
    pub bdf: Bdf,
    /// Its place among the guest's VFs (`vf=` order): it names its guest slot, its posted
    /// entries (`vf_posting`) and its IOMMU domain.
    pub slot: u8,
    /// Where the guest sees it (`GUEST_DEVFNS[slot]`).
    pub devfn: DevFn,
    /// Its share of the guest cores' device vectors (emulated mode): MSI-X entry `i` is host
    /// vector `VECTOR_DEVICE_BASE + vectors.start + i` while that is below `vectors.end`.
    pub vectors: Range<u8>,
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
            slot: self.slot,
        }
    }

    /// The device-vector slot standing for MSI-X entry `index` (emulated mode), `None` when this
    /// VF's share of the guest's device vectors has none left for it.
    pub fn vector_slot(&self, index: u16) -> Option<u8> {
        let slot = u16::from(self.vectors.start) + index;
        (slot < u16::from(self.vectors.end)).then_some(slot as u8)
    }

    pub fn device(&self) -> DeviceId {
        DeviceId(self.bdf.routing_id())
    }

    /// The host vectors this core took (`pending`, one bit per device vector) that are this VF's:
    /// raises in `vcpu` the guest vectors they stand for (emulated mode), counts them as exits.
    pub fn take_host_vectors(&self, platform: &VirtualPlatform, vcpu: usize, pending: u32) {
        let mine = usize::from(self.vectors.start)..usize::from(self.vectors.end);
        for slot in mine.filter(|i| pending & (1 << i) != 0) {
            match platform.irq.host_vector(slot) {
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
