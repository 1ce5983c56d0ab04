//! The device side of virtio 1.x for didvisor's virtual devices: pure logic over a
//! guest-memory trait, so `cargo test` runs it against fake guest RAM.
//!
//! | file | what |
//! |---|---|
//! | `mem.rs` | [`mem::GuestMemory`]: bounds-checked guest-physical copies, ring barriers; a slice-backed fake |
//! | `ring.rs` | split-virtqueue structures and layout rules, `vring_need_event` |
//! | `chain.rs` | the descriptor-chain walker (direct and indirect), every malformation an error |
//! | `queue.rs` | one queue's device side: pop, push used, notification suppression both ways |
//! | `status.rs` | device status and feature negotiation |
//! | `transport.rs` | virtio-pci modern transport: BAR 0 registers (common cfg, ISR, notify, device cfg, MSI-X) |
//! | `pci_config.rs` | its PCI configuration space and capabilities, a `devices::pci::ConfigSpace` |
//! | `blk.rs` | virtio-blk: configuration, request parsing and serving over a storage trait, a RAM disk |
//! | `driver.rs` | a minimal driver side of a queue (tests, fuzz targets) |
//!
//! Nothing here panics on bytes the guest controls; see `docs/virtio.md` for the model and
//! the plan.
//!
//! Specification: Virtual I/O Device (VIRTIO) Version 1.2 (section numbers are the same in
//! 1.3): ch. 2 (§2.1 device status, §2.2 feature bits, §2.7 split virtqueues), §3.1 device
//! initialization, §4.1 virtio over PCI, §5.2 block device, ch. 6 reserved feature bits.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod blk;
pub mod chain;
pub mod driver;
pub mod mem;
pub mod pci_config;
pub mod queue;
pub mod ring;
pub mod status;
pub mod transport;
