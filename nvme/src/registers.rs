//! Controller registers of NVMe over PCIe (NVM Express Base Specification 2.0 §3.1.3 "Controller
//! Properties"; the NVMe over PCIe Transport Specification 1.0 for the doorbells), in BAR0 of
//! the function.
//!
//! 64-bit registers are accessed as two 32-bit halves, low first (allowed by the transport
//! specification and what Linux's `lo_hi_writeq` does).

use core::mem::offset_of;

/// The fixed part of the register map. Doorbells follow at [`DOORBELL_BASE`].
#[repr(C)]
pub struct ControllerRegisters {
    /// 0x00 CAP: Controller Capabilities, [`Cap`]
    pub cap: u64,
    /// 0x08 VS: Version (major 31:16, minor 15:8, tertiary 7:0)
    pub vs: u32,
    /// 0x0C INTMS: Interrupt Mask Set (INTx/MSI only)
    pub intms: u32,
    /// 0x10 INTMC: Interrupt Mask Clear
    pub intmc: u32,
    /// 0x14 CC: Controller Configuration, [`cc`]
    pub cc: u32,
    /// 0x18
    pub _reserved_18: u32,
    /// 0x1C CSTS: Controller Status, [`csts`]
    pub csts: u32,
    /// 0x20 NSSR: NVM Subsystem Reset
    pub nssr: u32,
    /// 0x24 AQA: Admin Queue Attributes (ASQS 11:0, ACQS 27:16, both 0's based)
    pub aqa: u32,
    /// 0x28 ASQ: Admin Submission Queue Base Address (4 KiB aligned with MPS 0)
    pub asq: u64,
    /// 0x30 ACQ: Admin Completion Queue Base Address
    pub acq: u64,
    /// 0x38 CMBLOC
    pub cmbloc: u32,
    /// 0x3C CMBSZ
    pub cmbsz: u32,
}

const _: () = assert!(size_of::<ControllerRegisters>() == 0x40);
const _: () = assert!(offset_of!(ControllerRegisters, vs) == 0x08);
const _: () = assert!(offset_of!(ControllerRegisters, cc) == 0x14);
const _: () = assert!(offset_of!(ControllerRegisters, csts) == 0x1C);
const _: () = assert!(offset_of!(ControllerRegisters, aqa) == 0x24);
const _: () = assert!(offset_of!(ControllerRegisters, asq) == 0x28);
const _: () = assert!(offset_of!(ControllerRegisters, acq) == 0x30);

pub const CAP: u32 = offset_of!(ControllerRegisters, cap) as u32;
pub const VS: u32 = offset_of!(ControllerRegisters, vs) as u32;
pub const INTMS: u32 = offset_of!(ControllerRegisters, intms) as u32;
pub const INTMC: u32 = offset_of!(ControllerRegisters, intmc) as u32;
pub const CC: u32 = offset_of!(ControllerRegisters, cc) as u32;
pub const CSTS: u32 = offset_of!(ControllerRegisters, csts) as u32;
pub const AQA: u32 = offset_of!(ControllerRegisters, aqa) as u32;
pub const ASQ: u32 = offset_of!(ControllerRegisters, asq) as u32;
pub const ACQ: u32 = offset_of!(ControllerRegisters, acq) as u32;
/// First doorbell (NVMe over PCIe Transport Specification).
pub const DOORBELL_BASE: u32 = 0x1000;

/// Submission queue `qid`'s tail doorbell: `0x1000 + 2·qid·(4 << DSTRD)`. `None` past 32 bits.
pub const fn sq_tail_doorbell(qid: u16, dstrd: u8) -> Option<u32> {
    doorbell(2 * qid as u64, dstrd)
}

/// Completion queue `qid`'s head doorbell: `0x1000 + (2·qid + 1)·(4 << DSTRD)`.
pub const fn cq_head_doorbell(qid: u16, dstrd: u8) -> Option<u32> {
    doorbell(2 * qid as u64 + 1, dstrd)
}

const fn doorbell(index: u64, dstrd: u8) -> Option<u32> {
    if dstrd > 15 {
        return None;
    }
    let at = DOORBELL_BASE as u64 + index * (4 << dstrd);
    if at > u32::MAX as u64 {
        None
    } else {
        Some(at as u32)
    }
}

/// CAP, Controller Capabilities (NVMe 2.0 §3.1.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// CSS bit 0: the NVM command set.
    pub const CSS_NVM: u8 = 1 << 0;
    /// CSS bit 6: one or more I/O command sets (select with CC.CSS = 110b).
    pub const CSS_IO_COMMAND_SETS: u8 = 1 << 6;
    /// CSS bit 7: admin command set only.
    pub const CSS_ADMIN_ONLY: u8 = 1 << 7;

    /// MQES 15:0, Maximum Queue Entries Supported, 0's based.
    pub const fn mqes(self) -> u16 {
        self.0 as u16
    }

    /// The largest queue the controller takes, in entries (MQES + 1).
    pub const fn max_queue_entries(self) -> u32 {
        self.mqes() as u32 + 1
    }

    /// CQR 16: queues must be physically contiguous.
    pub const fn cqr(self) -> bool {
        self.0 >> 16 & 1 != 0
    }

    /// TO 31:24, worst-case time for CSTS.RDY to follow CC.EN, in 500 ms units.
    pub const fn timeout(self) -> u8 {
        (self.0 >> 24) as u8
    }

    /// DSTRD 35:32, doorbell stride: `4 << DSTRD` bytes.
    pub const fn dstrd(self) -> u8 {
        (self.0 >> 32) as u8 & 0xF
    }

    /// NSSRS 36: NVM subsystem reset supported.
    pub const fn nssrs(self) -> bool {
        self.0 >> 36 & 1 != 0
    }

    /// CSS 44:37, command sets supported.
    pub const fn css(self) -> u8 {
        (self.0 >> 37) as u8
    }

    /// MPSMIN 51:48: the smallest memory page is `2^(12 + MPSMIN)` bytes.
    pub const fn mpsmin(self) -> u8 {
        (self.0 >> 48) as u8 & 0xF
    }

    /// MPSMAX 55:52.
    pub const fn mpsmax(self) -> u8 {
        (self.0 >> 52) as u8 & 0xF
    }
}

/// CC, Controller Configuration (NVMe 2.0 §3.1.3.5).
pub mod cc {
    /// EN 0: enable.
    pub const EN: u32 = 1 << 0;
    /// CSS 6:4: I/O command set selected.
    pub const CSS_SHIFT: u32 = 4;
    pub const CSS_NVM: u32 = 0b000;
    pub const CSS_ALL_IO_COMMAND_SETS: u32 = 0b110;
    pub const CSS_ADMIN_ONLY: u32 = 0b111;
    /// MPS 10:7: host memory page size is `2^(12 + MPS)`.
    pub const MPS_SHIFT: u32 = 7;
    /// AMS 13:11: arbitration (0 round robin).
    pub const AMS_SHIFT: u32 = 11;
    /// SHN 15:14: shutdown notification.
    pub const SHN_SHIFT: u32 = 14;
    /// IOSQES 19:16: I/O submission queue entry size, `2^n` bytes (6 for 64).
    pub const IOSQES_SHIFT: u32 = 16;
    /// IOCQES 23:20: I/O completion queue entry size, `2^n` bytes (4 for 16).
    pub const IOCQES_SHIFT: u32 = 20;

    /// The configuration the hypervisor enables a controller with: 4 KiB pages, round robin,
    /// 64-byte SQ and 16-byte CQ entries, the given command set selection and EN.
    pub const fn enable(css: u32) -> u32 {
        EN | (css & 7) << CSS_SHIFT
            | 0 << MPS_SHIFT
            | 0 << AMS_SHIFT
            | 6 << IOSQES_SHIFT
            | 4 << IOCQES_SHIFT
    }
}

/// CSTS, Controller Status (NVMe 2.0 §3.1.3.6).
pub mod csts {
    /// RDY 0: ready to process commands.
    pub const RDY: u32 = 1 << 0;
    /// CFS 1: controller fatal status.
    pub const CFS: u32 = 1 << 1;
    /// SHST 3:2: shutdown status.
    pub const SHST_SHIFT: u32 = 2;
    /// NSSRO 4: NVM subsystem reset occurred.
    pub const NSSRO: u32 = 1 << 4;
    /// PP 5: processing paused.
    pub const PP: u32 = 1 << 5;
}

/// AQA for admin queues of `sq_entries` and `cq_entries` (both ≥ 2, ≤ 4096; stored 0's based).
pub const fn aqa(sq_entries: u16, cq_entries: u16) -> u32 {
    (sq_entries.saturating_sub(1) as u32 & 0xFFF)
        | (cq_entries.saturating_sub(1) as u32 & 0xFFF) << 16
}
