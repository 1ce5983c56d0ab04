//! didvisor's policy and encoding logic that needs no hardware: configuration parsing
//! (`config`), the CPUID and MSR policies (`cpuid`, `msr`), the intercept table (`intercepts`),
//! the guest's interrupt controllers (`irqchip`: IOAPIC, emulated x2APIC and its timer, the direct
//! mode's MSR policy) and event injection (`inject`), exit statistics (`stats`), the ELF loader
//! (`elf`), the physical frame allocator (`frames`), a guest's page-table frame budget
//! (`table_frames`) and BAR mappings (`bar_mapping`), the guest debug console (`console`),
//! the keyboard switch between guests (`console_switch`), the hypervisor's console output queue
//! (`out_ring`), the rate limit for guest-caused messages (`rate_limit`), the restart policy (`restart`), CPU sets (`cpuset`),
//! the SMT-sibling rule (`smt`), the speculation-control bookkeeping (`speculation`), guest NMIs
//! (`nmi`), the exit counters a guest reads (`exit_counters`) and which SR-IOV PFs to bring up
//! (`vf_plan`). The bare-metal binary (`main.rs`, `hv/`) is thin glue around these; `cargo test -p kernel` runs them on the host.
//!
//! Other concerns are crates of their own, used under their own names: the legacy devices
//! (`devices`), PCIe and passthrough (`pci`), NVMe (`nvme`), the guest's ACPI tables, Linux boot
//! protocol and boot layout (`guestfw`: `acpi_tables`, `linux`, `guest_layout`); the APIC
//! register map, ICR and delivery modes are the `apic` crate's (re-exported in `irqchip`). See docs/design.md, "Crate map".
#![cfg_attr(not(test), no_std)]

pub mod bar_mapping;
pub mod config;
pub mod console;
pub mod console_switch;
pub mod cpuid;
pub mod cpuset;
pub mod elf;
pub mod exit_counters;
pub mod frames;
pub mod inject;
pub mod intercepts;
pub mod irqchip;
pub mod msr;
pub mod nmi;
pub mod out_ring;
pub mod rate_limit;
pub mod restart;
pub mod smt;
pub mod speculation;
pub mod stats;
pub mod table_frames;
pub mod vf_plan;

// The concerns that moved to their own crates, under their old paths (`pci`,
// `crate::devices`, ...) for the code that still names them so.
pub use devices;
pub use guestfw::{acpi_tables, guest_layout, linux};
pub use nvme;
pub use pci;
