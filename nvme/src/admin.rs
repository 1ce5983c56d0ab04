//! Encoders of the admin commands the hypervisor sends to an NVMe PF (NVMe Base 2.0 ch. 5):
//! Identify, Namespace Attachment and Virtualization Management (§5.22); and Create I/O
//! Completion/Submission Queue (§5.4, §5.5), which the test guest sends to its VF for a polled
//! [`super::QueuePair`]. Data buffers are one 4 KiB page, addressed by PRP entry 1 alone.

use super::entry::SubmissionEntry;
use super::identify::{ControllerList, CONTROLLER_LIST_MAX};

/// Admin command opcodes (NVMe Base 2.0, "Opcodes for Admin Commands").
pub mod opcode {
    pub const DELETE_IO_SQ: u8 = 0x00;
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_IO_CQ: u8 = 0x04;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0A;
    pub const NAMESPACE_MANAGEMENT: u8 = 0x0D;
    pub const NAMESPACE_ATTACHMENT: u8 = 0x15;
    pub const VIRTUALIZATION_MANAGEMENT: u8 = 0x1C;
}

/// Identify's Controller or Namespace Structure (CNS, CDW10 7:0; NVMe Base 2.0, Identify command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cns {
    /// Identify Namespace data structure for NSID.
    Namespace = 0x00,
    /// Identify Controller data structure.
    Controller = 0x01,
    /// Active namespace ID list (NSIDs above NSID).
    ActiveNamespaces = 0x02,
    /// Allocated namespace ID list.
    AllocatedNamespaces = 0x10,
    /// Controller list of controllers attached to NSID (from CNTID up).
    NamespaceControllers = 0x12,
    /// Controller list of all controllers in the NVM subsystem (from CNTID up).
    SubsystemControllers = 0x13,
    /// Primary Controller Capabilities of the controller CNTID.
    PrimaryControllerCapabilities = 0x14,
    /// Secondary controller list of this primary controller (from CNTID up).
    SecondaryControllers = 0x15,
}

/// Namespace Attachment's Select field (CDW10 3:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AttachSelect {
    Attach = 0x0,
    Detach = 0x1,
}

/// Virtualization Management's Action (CDW10 3:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum VmAction {
    /// Set the primary controller's flexible allocation (takes effect after reset).
    PrimaryFlexibleAllocation = 0x1,
    SecondaryOffline = 0x7,
    /// Assign NR flexible resources of type RT to secondary controller CNTLID (it must be
    /// offline).
    SecondaryAssign = 0x8,
    SecondaryOnline = 0x9,
}

/// Virtualization Management's Resource Type (CDW10 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ResourceType {
    /// Virtual queue resources (a submission/completion queue pair each; one is the admin pair).
    VirtualQueue = 0,
    /// Virtual interrupt resources (an MSI-X vector each).
    VirtualInterrupt = 1,
}

/// Identify: CNS in CDW10 7:0, CNTID in CDW10 31:16; the 4 KiB result goes to `buffer`.
pub fn identify(cns: Cns, nsid: u32, cntid: u16, buffer: u64) -> SubmissionEntry {
    SubmissionEntry {
        nsid,
        prp1: buffer,
        cdw10: u32::from(cntid) << 16 | cns as u32,
        ..SubmissionEntry::new(opcode::IDENTIFY)
    }
}

/// Create I/O Completion Queue `qid` of `entries` 16-byte entries, physically contiguous at
/// `base`, polled: CDW10 QSIZE 31:16 (0's based) | QID 15:0; CDW11 IV 31:16 = 0, IEN 1 = 0, PC 0.
pub fn create_io_cq(qid: u16, entries: u16, base: u64) -> SubmissionEntry {
    SubmissionEntry {
        prp1: base,
        cdw10: u32::from(entries.saturating_sub(1)) << 16 | u32::from(qid),
        cdw11: 1,
        ..SubmissionEntry::new(opcode::CREATE_IO_CQ)
    }
}

/// Create I/O Submission Queue `qid` of `entries` 64-byte entries at `base`, completing to queue
/// `cqid`: CDW10 QSIZE 31:16 | QID 15:0; CDW11 CQID 31:16, QPRIO 2:1 = 0 (urgent, unused with
/// round robin), PC 0.
pub fn create_io_sq(qid: u16, entries: u16, base: u64, cqid: u16) -> SubmissionEntry {
    SubmissionEntry {
        prp1: base,
        cdw10: u32::from(entries.saturating_sub(1)) << 16 | u32::from(qid),
        cdw11: u32::from(cqid) << 16 | 1,
        ..SubmissionEntry::new(opcode::CREATE_IO_SQ)
    }
}

/// Namespace Attachment of `nsid` to (or from) the controllers listed in the
/// [`ControllerList`] at `buffer`. SEL in CDW10 3:0.
pub fn namespace_attachment(sel: AttachSelect, nsid: u32, buffer: u64) -> SubmissionEntry {
    SubmissionEntry {
        nsid,
        prp1: buffer,
        cdw10: sel as u32,
        ..SubmissionEntry::new(opcode::NAMESPACE_ATTACHMENT)
    }
}

/// Virtualization Management: ACT in CDW10 3:0, RT in CDW10 10:8, CNTLID in CDW10 31:16, NR in
/// CDW11 15:0. No data buffer; completion DW0 holds the number of resources allocated.
pub fn virtualization_management(
    action: VmAction,
    resource: ResourceType,
    cntlid: u16,
    count: u16,
) -> SubmissionEntry {
    SubmissionEntry {
        cdw10: u32::from(cntlid) << 16 | (resource as u32) << 8 | action as u32,
        cdw11: u32::from(count),
        ..SubmissionEntry::new(opcode::VIRTUALIZATION_MANAGEMENT)
    }
}

/// An admin command as data: what a command sequence (e.g. [`super::bring_up`]) is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    Identify {
        cns: Cns,
        nsid: u32,
        cntid: u16,
    },
    /// Namespace Attachment of `nsid` to one controller.
    AttachNamespace {
        nsid: u32,
        controller: u16,
    },
    DetachNamespace {
        nsid: u32,
        controller: u16,
    },
    VirtualizationManagement {
        action: VmAction,
        resource: ResourceType,
        cntlid: u16,
        count: u16,
    },
}

/// Which way a command's data buffer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirection {
    None,
    /// The host fills the buffer first ([`AdminCommand::fill_buffer`]).
    ToController,
    /// The controller writes the buffer.
    FromController,
}

impl AdminCommand {
    pub fn direction(&self) -> DataDirection {
        match self {
            AdminCommand::Identify { .. } => DataDirection::FromController,
            AdminCommand::AttachNamespace { .. } | AdminCommand::DetachNamespace { .. } => {
                DataDirection::ToController
            }
            AdminCommand::VirtualizationManagement { .. } => DataDirection::None,
        }
    }

    /// The submission entry, with `buffer` (a 4 KiB page) as PRP 1 if the command moves data.
    pub fn encode(&self, buffer: u64) -> SubmissionEntry {
        match *self {
            AdminCommand::Identify { cns, nsid, cntid } => identify(cns, nsid, cntid, buffer),
            AdminCommand::AttachNamespace { nsid, .. } => {
                namespace_attachment(AttachSelect::Attach, nsid, buffer)
            }
            AdminCommand::DetachNamespace { nsid, .. } => {
                namespace_attachment(AttachSelect::Detach, nsid, buffer)
            }
            AdminCommand::VirtualizationManagement {
                action,
                resource,
                cntlid,
                count,
            } => virtualization_management(action, resource, cntlid, count),
        }
    }

    /// Writes the data a [`DataDirection::ToController`] command sends into `page`.
    pub fn fill_buffer(&self, page: &mut [u8; 4096]) {
        match *self {
            AdminCommand::AttachNamespace { controller, .. }
            | AdminCommand::DetachNamespace { controller, .. } => {
                // One id always fits.
                let _ = ControllerList::encode(&[controller], page);
            }
            AdminCommand::Identify { .. } | AdminCommand::VirtualizationManagement { .. } => {}
        }
    }
}

const _: () = assert!(CONTROLLER_LIST_MAX >= 1);
