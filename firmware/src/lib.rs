//! ACPI discovery for the hypervisor: find the RSDP, walk the RSDT/XSDT, and
//! decode the MADT (CPUs, IOAPICs, interrupt overrides) and the MCFG (PCIe ECAM
//! windows).
//!
//! # Model
//! Firmware leaves its tables in physical memory. The kernel identity-maps
//! physical memory, so every table is a byte range at a physical address. This
//! crate never dereferences an address itself: it asks a [`PhysMem`] for a byte
//! slice, so host unit tests run the real parsers against fake memory (a `Vec`
//! placed at a fake base address), and the kernel supplies the one `unsafe`
//! identity-mapped implementation.
//!
//! Everything here is bounds-checked: the bytes come from firmware, and a bad
//! checksum, a short table or a garbage length becomes an [`Error`], never a
//! panic. Results are fixed-capacity arrays (no heap).
//!
//! # Why not the `acpi` crate
//! Tried for issue #11; `tests/acpi_crate.rs` drives `acpi` 5.2 (the newest release that builds
//! on stable without `alloc`; 6.1 has `#![feature(allocator_api)]` unconditionally, 7.0 is a
//! pre-release) over fake memory beside these parsers. On well-formed tables the two agree. On
//! malformed ones `acpi` trusts the lengths it reads: a zero-length MADT entry never ends, a short
//! entry is read past the table, an entry or XSDT length below its fixed part underflows (a panic
//! in tests, a wrapped slice length in the release build), and the RSDP checksum reads past the
//! 36 bytes it mapped. Its `AcpiHandler::map_physical_region` cannot fail, so a firmware pointer
//! outside RAM can only panic. Here each of those is an [`Error`], so the hypervisor keeps these
//! parsers; 7.0.0-pre1 still loops on a zero-length entry and checks no checksum in `find_table`.
//!
//! # Layout definitions
//! Each firmware structure is one `#[repr(C, packed)]` struct whose doc comment
//! names its spec section; size and field offsets are asserted at compile
//! time, and parsing reads each field at its `offset_of!` with the
//! little-endian helpers in [`bytes`]. That keeps one definition per structure
//! and no `unsafe` casts.
//!
//! # Documents
//! - ACPI Specification 6.5 (August 2022): §5.2.5 RSDP, §5.2.6 system
//!   description table header, §5.2.7 RSDT, §5.2.8 XSDT, §5.2.12 MADT.
//! - PCI Firmware Specification 3.3, §4.1.2 MCFG (ACPI 6.5 Table 5.6 reserves
//!   the signature and points there).
//!
//! # Use from the kernel
//! ```ignore
//! struct Identity;
//! impl firmware::PhysMem for Identity {
//!     fn bytes(&self, phys: u64, len: usize) -> Option<&[u8]> {
//!         // SAFETY: all physical memory is identity-mapped, nothing writes
//!         // to firmware tables after boot, and `phys` has been checked
//!         // against the memory map by the caller of this accessor.
//!         Some(unsafe { core::slice::from_raw_parts(phys as *const u8, len) })
//!     }
//! }
//! let rsdp = match boot_info.rsdp_bytes() {
//!     Some(copy) => firmware::Rsdp::from_bytes(copy)?,
//!     None => firmware::find_rsdp(&Identity)?.1,
//! };
//! let acpi = firmware::Acpi::new(&Identity, &rsdp)?;
//! let madt = acpi.madt()?;
//! let mcfg = acpi.mcfg()?;
//! let ivrs = acpi.find_table(firmware::Signature::IVRS)?; // for the iommu crate
//! ```
#![cfg_attr(not(test), no_std)]

pub mod bytes;
mod error;
pub mod madt;
pub mod mcfg;
mod mem;
pub mod root;
pub mod rsdp;
pub mod sdt;

#[cfg(test)]
mod testutil;

pub use error::Error;
pub use madt::Madt;
pub use mcfg::Mcfg;
pub use mem::PhysMem;
pub use root::Acpi;
pub use rsdp::{find_rsdp, Rsdp};
pub use sdt::{Sdt, SdtHeader, Signature};
