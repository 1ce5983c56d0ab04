//! The Intel 82576 (QEMU `-device igb`) physical-function driver's decisions, so guests can use
//! its SR-IOV virtual functions with the stock Linux `igbvf` driver. On a real server the host
//! OS's `igb` driver is the PF driver; in didvisor there is none, so the hypervisor's service
//! core is, with this crate's logic behind a [`Registers`] trait (the PF's BAR0).
//!
//! | file          | what                                                                     |
//! |---------------|--------------------------------------------------------------------------|
//! | `regs.rs`     | register offsets and bit fields, [`Registers`]                           |
//! | `config.rs`   | VF count, VF MAC addresses (given or derived), per-VF mailbox policy      |
//! | `bring_up.rs` | [`BringUp`]: reset, link, filters, VMDq pools, loopback, RX/TX, PFRSTD    |
//! | `pool.rs`     | one pool's receive address, VMOLR, enables, VLAN filters                 |
//! | `message.rs`  | mailbox message encoding and decoding (total: never panics)              |
//! | `decision.rs` | [`decision::decide`]: what the PF does with a request (pure)             |
//! | `mailbox.rs`  | [`Mailbox`]: the PF side of the protocol, bounded work per poll          |
//! | `sriov.rs`    | SR-IOV on, checked against the 82576's layout (offset 0x80, stride 2...)  |
//!
//! Sources: Intel 82576EB Gigabit Ethernet Controller Datasheet (chapter 7.8 virtualization,
//! chapter 8 registers); Linux `drivers/net/ethernet/intel/igb` (`igb_main.c`, `e1000_mbx.c`)
//! and `igbvf` (`mbx.c`, `vf.c`) for the protocol; QEMU `hw/net/igb_core.c` for what the
//! emulation checks. docs/igb.md has the facts this code relies on and the plan for the
//! service-core glue.
//!
//! Order for the service core: [`config::plan`]; SR-IOV on ([`sriov::enable`], which uses
//! [`pci::sriov::enable_vfs`] and checks the 82576's layout); poll [`BringUp`] until done; then poll [`Mailbox`] (on its
//! interrupt or a timer) for as long as the VFs live.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod bring_up;
pub mod config;
pub mod decision;
pub mod mailbox;
pub mod message;
pub mod pool;
pub mod regs;
pub mod sriov;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use bring_up::{BringUp, BringUpError, Progress};
pub use config::{plan, ConfigError, MacAddr, PfConfig, VfPolicy, VfRequest};
pub use mailbox::{Decision, Event, Limits, Mailbox, Refusal};
pub use message::{decode, DecodeError, Request};
pub use regs::Registers;
