//! Passthrough and IOMMU glue: the AMD-Vi IOMMU (DMA and interrupt remapping, the GA log) and the
//! NVMe physical function whose VFs guests get. Uses `host` only.

pub mod iommu_hw;
pub mod nvme_pf;
