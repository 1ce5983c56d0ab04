//! What a didvisor guest boots with, built by the hypervisor in place of firmware and a boot
//! loader:
//!
//! - [`acpi_tables`]: the guest's ACPI tables and AML (ACPI 6.5 ch. 5: RSDP, XSDT, FADT, FACS,
//!   DSDT with `\_S5_` and the PCI host bridge, MADT with x2APIC entries; PCI Firmware
//!   Specification 3.3 §4.1.2 MCFG);
//! - [`linux`]: the Linux x86 64-bit boot protocol (Linux `Documentation/arch/x86/boot.rst` and
//!   `zero-page.rst`): bzImage header parsing, `boot_params` with the e820 map, placing kernel,
//!   command line and initrd in guest RAM;
//! - [`guest_layout`]: the long-mode boot state every guest starts in (identity page tables, GDT,
//!   control registers: what Linux's 64-bit boot protocol expects at `startup_64`).
//!
//! Everything writes into byte slices that become guest memory, so `cargo test -p guestfw` runs it
//! on the host (the tables are read back with the host-side parsers of the `firmware` crate, which
//! is the *host's* ACPI discovery, not this). Not to be confused with it: nothing here reads
//! firmware.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi_tables;
pub mod guest_layout;
pub mod linux;
