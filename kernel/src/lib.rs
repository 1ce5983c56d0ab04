//! didvisor's policy and encoding logic that needs no hardware: configuration parsing, the CPUID policy,
//! the intercept table (`intercepts`), exit statistics, the ELF loader, the physical frame allocator,
//! a guest's page-table frame budget (`table_frames`) and BAR mappings (`bar_mapping`), the guest boot
//! layout, the guest debug console, the SMT-sibling rule (`smt`) and the speculation-control
//! bookkeeping (`speculation`). The bare-metal binary (`main.rs`) is thin glue around these;
//! `cargo test -p kernel` runs them on the host.
#![cfg_attr(not(test), no_std)]

pub mod acpi_tables;
pub mod bar_mapping;
pub mod config;
pub mod console;
pub mod console_switch;
pub mod cpuid;
pub mod cpuset;
pub mod devices;
pub mod elf;
pub mod frames;
pub mod guest_layout;
pub mod inject;
pub mod intercepts;
pub mod irqchip;
pub mod linux;
pub mod msr;
pub mod nmi;
pub mod nvme;
pub mod out_ring;
pub mod pci;
pub mod rate_limit;
pub mod smt;
pub mod speculation;
pub mod stats;
pub mod table_frames;
