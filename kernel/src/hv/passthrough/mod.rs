//! Passthrough and IOMMU glue: the AMD-Vi IOMMU (DMA and interrupt remapping, the GA log) and the
//! physical functions whose VFs guests get (NVMe, the 82576 NIC). Uses `host` only.

pub mod igb_pf;
pub mod iommu_hw;
pub mod nvme_pf;

use crate::hv::host::pci_host::Ecam;
use pci::Bdf;

/// Which of the hypervisor's PF drivers brings up an SR-IOV PF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfDriver {
    /// `nvme_pf`: NVMe with virtualization management (it refuses anything else).
    Nvme,
    /// `igb_pf`: the Intel 82576.
    Igb,
}

impl PfDriver {
    pub fn of(ecam: &Ecam, pf: Bdf) -> PfDriver {
        if igb_pf::is_igb(ecam, pf) {
            PfDriver::Igb
        } else {
            PfDriver::Nvme
        }
    }
}
