//! Queue entries (NVMe Base 2.0, "Data Structures"): the 64-byte submission queue entry ("Common
//! Command Format"), the 16-byte completion queue entry and its status field with the generic,
//! command specific and media error status codes.

use core::fmt;
use core::mem::offset_of;

/// Submission queue entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmissionEntry {
    /// 0x00 CDW0: opcode 7:0, FUSE 9:8, PSDT 15:14, command identifier 31:16
    pub cdw0: u32,
    /// 0x04 NSID
    pub nsid: u32,
    /// 0x08 CDW2
    pub cdw2: u32,
    /// 0x0C CDW3
    pub cdw3: u32,
    /// 0x10 MPTR: metadata pointer
    pub mptr: u64,
    /// 0x18 DPTR: PRP entry 1
    pub prp1: u64,
    /// 0x20 DPTR: PRP entry 2
    pub prp2: u64,
    /// 0x28 CDW10
    pub cdw10: u32,
    /// 0x2C CDW11
    pub cdw11: u32,
    /// 0x30 CDW12
    pub cdw12: u32,
    /// 0x34 CDW13
    pub cdw13: u32,
    /// 0x38 CDW14
    pub cdw14: u32,
    /// 0x3C CDW15
    pub cdw15: u32,
}

pub const SUBMISSION_ENTRY_SIZE: usize = 64;
const _: () = assert!(size_of::<SubmissionEntry>() == SUBMISSION_ENTRY_SIZE);
const _: () = assert!(offset_of!(SubmissionEntry, nsid) == 0x04);
const _: () = assert!(offset_of!(SubmissionEntry, mptr) == 0x10);
const _: () = assert!(offset_of!(SubmissionEntry, prp1) == 0x18);
const _: () = assert!(offset_of!(SubmissionEntry, prp2) == 0x20);
const _: () = assert!(offset_of!(SubmissionEntry, cdw10) == 0x28);
const _: () = assert!(offset_of!(SubmissionEntry, cdw15) == 0x3C);

impl SubmissionEntry {
    /// An entry for `opcode` with PRPs (PSDT 0), not fused, command identifier 0.
    pub const fn new(opcode: u8) -> SubmissionEntry {
        SubmissionEntry {
            cdw0: opcode as u32,
            nsid: 0,
            cdw2: 0,
            cdw3: 0,
            mptr: 0,
            prp1: 0,
            prp2: 0,
            cdw10: 0,
            cdw11: 0,
            cdw12: 0,
            cdw13: 0,
            cdw14: 0,
            cdw15: 0,
        }
    }

    pub const fn opcode(&self) -> u8 {
        self.cdw0 as u8
    }

    pub const fn cid(&self) -> u16 {
        (self.cdw0 >> 16) as u16
    }

    pub fn set_cid(&mut self, cid: u16) {
        self.cdw0 = self.cdw0 & 0xFFFF | u32::from(cid) << 16;
    }

    /// The entry as the controller reads it (little endian).
    pub fn to_bytes(&self) -> [u8; SUBMISSION_ENTRY_SIZE] {
        let mut b = [0; SUBMISSION_ENTRY_SIZE];
        let dwords = [
            self.cdw0,
            self.nsid,
            self.cdw2,
            self.cdw3,
            self.mptr as u32,
            (self.mptr >> 32) as u32,
            self.prp1 as u32,
            (self.prp1 >> 32) as u32,
            self.prp2 as u32,
            (self.prp2 >> 32) as u32,
            self.cdw10,
            self.cdw11,
            self.cdw12,
            self.cdw13,
            self.cdw14,
            self.cdw15,
        ];
        for (chunk, d) in b.chunks_exact_mut(4).zip(dwords) {
            chunk.copy_from_slice(&d.to_le_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8; SUBMISSION_ENTRY_SIZE]) -> SubmissionEntry {
        let d = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let q = |i: usize| u64::from(d(i)) | u64::from(d(i + 1)) << 32;
        SubmissionEntry {
            cdw0: d(0),
            nsid: d(1),
            cdw2: d(2),
            cdw3: d(3),
            mptr: q(4),
            prp1: q(6),
            prp2: q(8),
            cdw10: d(10),
            cdw11: d(11),
            cdw12: d(12),
            cdw13: d(13),
            cdw14: d(14),
            cdw15: d(15),
        }
    }
}

/// Completion queue entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompletionEntry {
    /// 0x00 DW0: command specific
    pub dw0: u32,
    /// 0x04 DW1: command specific
    pub dw1: u32,
    /// 0x08 SQHD: submission queue head pointer
    pub sq_head: u16,
    /// 0x0A SQID
    pub sq_id: u16,
    /// 0x0C CID
    pub cid: u16,
    /// 0x0E phase tag in bit 0, [`Status`] in 15:1
    pub status_phase: u16,
}

pub const COMPLETION_ENTRY_SIZE: usize = 16;
const _: () = assert!(size_of::<CompletionEntry>() == COMPLETION_ENTRY_SIZE);
const _: () = assert!(offset_of!(CompletionEntry, sq_head) == 0x08);
const _: () = assert!(offset_of!(CompletionEntry, sq_id) == 0x0A);
const _: () = assert!(offset_of!(CompletionEntry, cid) == 0x0C);
const _: () = assert!(offset_of!(CompletionEntry, status_phase) == 0x0E);

impl CompletionEntry {
    pub fn from_bytes(b: &[u8; COMPLETION_ENTRY_SIZE]) -> CompletionEntry {
        let w = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        CompletionEntry {
            dw0: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            dw1: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            sq_head: w(8),
            sq_id: w(10),
            cid: w(12),
            status_phase: w(14),
        }
    }

    pub fn to_bytes(&self) -> [u8; COMPLETION_ENTRY_SIZE] {
        let mut b = [0; COMPLETION_ENTRY_SIZE];
        b[0..4].copy_from_slice(&self.dw0.to_le_bytes());
        b[4..8].copy_from_slice(&self.dw1.to_le_bytes());
        b[8..10].copy_from_slice(&self.sq_head.to_le_bytes());
        b[10..12].copy_from_slice(&self.sq_id.to_le_bytes());
        b[12..14].copy_from_slice(&self.cid.to_le_bytes());
        b[14..16].copy_from_slice(&self.status_phase.to_le_bytes());
        b
    }

    /// Phase tag: flips each time the controller wraps around the queue.
    pub const fn phase(&self) -> bool {
        self.status_phase & 1 != 0
    }

    pub const fn status(&self) -> Status {
        Status(self.status_phase >> 1)
    }
}

/// The 15-bit status field (NVMe Base 2.0, "Status Field"): SC 7:0, SCT 10:8, CRD 12:11, M 13,
/// DNR 14 (bit positions here are of the field, i.e. of the completion's bits 31:17 shifted down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16);

/// Status code types.
pub mod sct {
    pub const GENERIC: u8 = 0;
    pub const COMMAND_SPECIFIC: u8 = 1;
    pub const MEDIA_AND_DATA_INTEGRITY: u8 = 2;
    pub const PATH_RELATED: u8 = 3;
    pub const VENDOR_SPECIFIC: u8 = 7;
}

impl Status {
    pub const SUCCESS: Status = Status(0);

    /// A status from its type and code (for fakes and comparisons).
    pub const fn new(sct: u8, sc: u8) -> Status {
        Status((sct as u16 & 7) << 8 | sc as u16)
    }

    /// SC: status code.
    pub const fn sc(self) -> u8 {
        self.0 as u8
    }

    /// SCT: status code type.
    pub const fn sct(self) -> u8 {
        (self.0 >> 8) as u8 & 7
    }

    /// CRD: command retry delay selector.
    pub const fn crd(self) -> u8 {
        (self.0 >> 11) as u8 & 3
    }

    /// M: more status in the error log.
    pub const fn more(self) -> bool {
        self.0 >> 13 & 1 != 0
    }

    /// DNR: do not retry.
    pub const fn dnr(self) -> bool {
        self.0 >> 14 & 1 != 0
    }

    pub const fn is_success(self) -> bool {
        self.sct() == sct::GENERIC && self.sc() == 0
    }

    /// The specification's name of the status, if this code knows it.
    pub const fn description(self) -> Option<&'static str> {
        Some(match (self.sct(), self.sc()) {
            // Generic command status.
            (0, 0x00) => "successful completion",
            (0, 0x01) => "invalid command opcode",
            (0, 0x02) => "invalid field in command",
            (0, 0x03) => "command id conflict",
            (0, 0x04) => "data transfer error",
            (0, 0x05) => "commands aborted due to power loss notification",
            (0, 0x06) => "internal error",
            (0, 0x07) => "command abort requested",
            (0, 0x08) => "command aborted due to SQ deletion",
            (0, 0x09) => "command aborted due to failed fused command",
            (0, 0x0A) => "command aborted due to missing fused command",
            (0, 0x0B) => "invalid namespace or format",
            (0, 0x0C) => "command sequence error",
            (0, 0x0D) => "invalid SGL segment descriptor",
            (0, 0x0E) => "invalid number of SGL descriptors",
            (0, 0x0F) => "data SGL length invalid",
            (0, 0x10) => "metadata SGL length invalid",
            (0, 0x11) => "SGL descriptor type invalid",
            (0, 0x12) => "invalid use of controller memory buffer",
            (0, 0x13) => "PRP offset invalid",
            (0, 0x14) => "atomic write unit exceeded",
            (0, 0x15) => "operation denied",
            (0, 0x16) => "SGL offset invalid",
            (0, 0x18) => "host identifier inconsistent format",
            (0, 0x19) => "keep alive timer expired",
            (0, 0x1A) => "keep alive timeout invalid",
            (0, 0x1B) => "command aborted due to preempt and abort",
            (0, 0x1C) => "sanitize failed",
            (0, 0x1D) => "sanitize in progress",
            (0, 0x1E) => "SGL data block granularity invalid",
            (0, 0x1F) => "command not supported for queue in CMB",
            (0, 0x20) => "namespace is write protected",
            (0, 0x21) => "command interrupted",
            (0, 0x22) => "transient transport error",
            (0, 0x80) => "LBA out of range",
            (0, 0x81) => "capacity exceeded",
            (0, 0x82) => "namespace not ready",
            (0, 0x83) => "reservation conflict",
            (0, 0x84) => "format in progress",
            // Command specific status.
            (1, 0x00) => "completion queue invalid",
            (1, 0x01) => "invalid queue identifier",
            (1, 0x02) => "invalid queue size",
            (1, 0x03) => "abort command limit exceeded",
            (1, 0x05) => "asynchronous event request limit exceeded",
            (1, 0x06) => "invalid firmware slot",
            (1, 0x07) => "invalid firmware image",
            (1, 0x08) => "invalid interrupt vector",
            (1, 0x09) => "invalid log page",
            (1, 0x0A) => "invalid format",
            (1, 0x0B) => "firmware activation requires conventional reset",
            (1, 0x0C) => "invalid queue deletion",
            (1, 0x0D) => "feature identifier not saveable",
            (1, 0x0E) => "feature not changeable",
            (1, 0x0F) => "feature not namespace specific",
            (1, 0x10) => "firmware activation requires NVM subsystem reset",
            (1, 0x11) => "firmware activation requires controller level reset",
            (1, 0x12) => "firmware activation requires maximum time violation",
            (1, 0x13) => "firmware activation prohibited",
            (1, 0x14) => "overlapping range",
            (1, 0x15) => "namespace insufficient capacity",
            (1, 0x16) => "namespace identifier unavailable",
            (1, 0x18) => "namespace already attached",
            (1, 0x19) => "namespace is private",
            (1, 0x1A) => "namespace not attached",
            (1, 0x1B) => "thin provisioning not supported",
            (1, 0x1C) => "controller list invalid",
            (1, 0x1D) => "device self-test in progress",
            (1, 0x1E) => "boot partition write prohibited",
            (1, 0x1F) => "invalid controller identifier",
            (1, 0x20) => "invalid secondary controller state",
            (1, 0x21) => "invalid number of controller resources",
            (1, 0x22) => "invalid resource identifier",
            (1, 0x23) => "sanitize prohibited while persistent memory region is enabled",
            (1, 0x24) => "ANA group identifier invalid",
            (1, 0x25) => "ANA attach failed",
            // Media and data integrity errors.
            (2, 0x80) => "write fault",
            (2, 0x81) => "unrecovered read error",
            (2, 0x82) => "end-to-end guard check error",
            (2, 0x83) => "end-to-end application tag check error",
            (2, 0x84) => "end-to-end reference tag check error",
            (2, 0x85) => "compare failure",
            (2, 0x86) => "access denied",
            (2, 0x87) => "deallocated or unwritten logical block",
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    /// E.g. `invalid secondary controller state (sct 1, sc 0x20, dnr)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(d) => write!(f, "{d} ")?,
            None => {
                let kind = match self.sct() {
                    sct::GENERIC => "generic",
                    sct::COMMAND_SPECIFIC => "command specific",
                    sct::MEDIA_AND_DATA_INTEGRITY => "media error",
                    sct::PATH_RELATED => "path related",
                    sct::VENDOR_SPECIFIC => "vendor specific",
                    _ => "reserved type",
                };
                write!(f, "unknown {kind} status ")?
            }
        }
        write!(f, "(sct {}, sc {:#04x}", self.sct(), self.sc())?;
        if self.more() {
            f.write_str(", more")?;
        }
        if self.dnr() {
            f.write_str(", dnr")?;
        }
        f.write_str(")")
    }
}
