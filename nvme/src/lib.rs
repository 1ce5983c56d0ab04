//! What the hypervisor itself needs of an NVMe physical function to make its SR-IOV virtual
//! functions usable by guests: the controller register map, queue entries, an admin queue, the
//! admin commands of the Virtualization Enhancements and Namespace Attachment, and the ordered
//! bring-up sequence as data. The guests drive their VFs with their own stock `nvme` drivers; the
//! hypervisor never does I/O.
//!
//! | file          | what                                                                   |
//! |---------------|------------------------------------------------------------------------|
//! | `registers.rs`| CAP, VS, CC, CSTS, AQA, ASQ, ACQ, doorbells                            |
//! | `entry.rs`    | 64-byte submission entry, 16-byte completion entry, status decoding    |
//! | `admin.rs`    | Identify, Create I/O CQ/SQ, Namespace Attachment, Virtualization Mgmt. |
//! | `identify.rs` | controller list, secondary controller list, primary capabilities       |
//! | `queue.rs`    | [`QueuePair`]: submit, completion polling; [`AdminQueue`]: + enable    |
//! | `bring_up.rs` | [`bring_up_vfs`]: the admin commands per VF, in order                  |
//! | `pf_dma.rs`   | [`pf_dma::PfBuffers`]: the PF's IOMMU domain, only the driver's buffers |
//!
//! Specification: NVM Express Base Specification 2.0 (controller properties, the common command
//! format and completion entry, the Identify, Namespace Attachment and Virtualization Management
//! commands, Virtualization Enhancements) and the NVMe over PCIe Transport Specification 1.0
//! (register offsets, doorbells). QEMU `hw/nvme/ctrl.c` is the device these were checked against.
//!
//! Order of operations for the kernel (docs/platform.md, verified with a Linux L1):
//! 1. PF: [`AdminQueue::enable`]; Identify Controller (check OACS for Virtualization Management),
//!    Identify Primary Controller Capabilities ([`check_resources`]).
//! 2. SR-IOV: [`pci::sriov::enable_vfs`] (NumVFs, VF BARs below 4 GiB, VF Enable).
//! 3. Identify Secondary Controller List, then [`bring_up_vfs`] and execute each step.
//! 4. Hand each VF to its guest ([`pci::passthrough`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod bring_up;
pub mod entry;
pub mod identify;
pub mod pf_dma;
pub mod queue;
pub mod registers;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use admin::{AdminCommand, Cns, DataDirection, ResourceType, VmAction};
pub use bring_up::{
    bring_up_vfs, check_resources, CommandPlan, PlanError, VfAssignment, VfResources,
};
pub use entry::{CompletionEntry, Status, SubmissionEntry};
pub use queue::{AdminQueue, ControllerRegs, DmaMemory, NvmeError, QueueMemory, QueuePair};
