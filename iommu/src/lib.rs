//! AMD-Vi, the AMD I/O Virtualization Technology (IOMMU).
//!
//! # Hardware model
//! Each IOMMU is a PCI function with an MMIO register block. It translates
//! DMA and remaps interrupts of the PCI devices (requester ids) it covers,
//! using a device table indexed by requester id. Firmware describes the
//! IOMMUs in the ACPI table IVRS: where each IOMMU's registers are, which
//! requester ids it covers (and with which aliases), which requester ids the
//! IOAPICs and HPETs send interrupts as, and memory the devices need mapped.
//!
//! For now this crate only decodes IVRS ([`ivrs`]); device table entries, I/O
//! page tables, interrupt remapping tables and the command buffer come next.
//!
//! # Documents
//! - AMD I/O Virtualization Technology (IOMMU) Specification, #48882,
//!   revision 3.x: §5.2 "IVRS" (ACPI table). Section numbers in doc comments
//!   refer to that chapter.
//! - Cross-checked against QEMU `hw/i386/acpi-build.c` (`build_amd_iommu`),
//!   which builds the IVRS of `-device amd-iommu`.
//!
//! # Use from the kernel
//! ```ignore
//! let table = acpi.find_table(firmware::Signature::IVRS)?; // checksum checked
//! let ivrs = iommu::ivrs::Ivrs::from_sdt(&table)?;        // every length checked
//! for (i, unit) in ivrs.iommus().enumerate() {
//!     writeln!(console, "iommu {i}: {}", unit.summary())?;
//! }
//! ```
#![cfg_attr(not(test), no_std)]

pub mod ivrs;

pub use ivrs::{Ivrs, IvrsError};
