//! Guests: the `Vm` (memory, nested page table, configuration), its virtual platform (devices,
//! interrupt backend), its passthrough VF, the canary and console input. Uses `host`,
//! `passthrough` and `irq`.

pub mod canary;
pub mod console_input;
pub mod guest;
pub mod guest_pci;
pub mod platform;
pub mod vf;
pub mod vf_host;
