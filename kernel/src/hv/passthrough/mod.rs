//! Passthrough and IOMMU glue: the AMD-Vi IOMMU, posted VF interrupts, and the NVMe physical
//! function. Uses `host` only.

pub mod iommu_hw;
pub mod nvme_pf;
pub mod vf_posting;
