//! The IOMMU's MMIO register block (spec §3.4 "IOMMU MMIO Registers"; §3.3 in some early 3.0x
//! revisions). Register offsets, the base-address register encodings, and the Control, Status
//! and Extended Feature registers.
//!
//! All registers used here are 64 bits wide and are accessed as whole quadwords through
//! [`Mmio`]. The block is 16 KiB in QEMU and 512 KiB on hardware; the kernel maps at least the
//! first 16 KiB (the head/tail pointers and Status live at 2000h..2048h) uncached.

use bitflags::bitflags;

use crate::mem::{field, place, Hpa};

/// Access to one IOMMU's MMIO register block, as naturally aligned quadwords at byte offsets.
///
/// The kernel implements it with volatile 64-bit loads and stores to an uncached mapping.
pub trait Mmio {
    /// Read the 64-bit register at byte `offset`.
    fn read64(&self, offset: usize) -> u64;
    /// Write the 64-bit register at byte `offset`.
    fn write64(&mut self, offset: usize, value: u64);
}

impl<T: Mmio + ?Sized> Mmio for &mut T {
    fn read64(&self, offset: usize) -> u64 {
        (**self).read64(offset)
    }

    fn write64(&mut self, offset: usize, value: u64) {
        (**self).write64(offset, value);
    }
}

/// Device Table Base Address Register: DevTabBase 51:12, Size 8:0.
pub const DEVICE_TABLE_BASE: usize = 0x0000;
/// Command Buffer Base Address Register: ComBase 51:12, ComLen 59:56.
pub const COMMAND_BUFFER_BASE: usize = 0x0008;
/// Event Log Base Address Register: EventBase 51:12, EventLen 59:56.
pub const EVENT_LOG_BASE: usize = 0x0010;
/// IOMMU Control Register ([`Control`]).
pub const CONTROL: usize = 0x0018;
/// IOMMU Exclusion Base Register: ExEn 0, Allow 1, base 51:12. This driver keeps it 0.
pub const EXCLUSION_BASE: usize = 0x0020;
/// IOMMU Exclusion Range Limit Register.
pub const EXCLUSION_LIMIT: usize = 0x0028;
/// IOMMU Extended Feature Register ([`ExtendedFeatures`]), read-only.
pub const EXTENDED_FEATURES: usize = 0x0030;
/// Command Buffer Head Pointer Register: byte offset 18:4, advanced by the IOMMU.
pub const COMMAND_HEAD: usize = 0x2000;
/// Command Buffer Tail Pointer Register: byte offset 18:4, advanced by software.
pub const COMMAND_TAIL: usize = 0x2008;
/// Event Log Head Pointer Register: byte offset 18:4, advanced by software.
pub const EVENT_HEAD: usize = 0x2010;
/// Event Log Tail Pointer Register: byte offset 18:4, advanced by the IOMMU.
pub const EVENT_TAIL: usize = 0x2018;
/// IOMMU Status Register ([`Status`]).
pub const STATUS: usize = 0x2020;
/// Guest Virtual APIC Log Base Address Register (GALogLen 59:56, base 51:12; p. 233).
pub const GA_LOG_BASE: usize = 0x00E0;
/// Guest Virtual APIC Log Tail Address Register: where the IOMMU mirrors its tail (p. 233).
pub const GA_LOG_TAIL_ADDRESS: usize = 0x00E8;
/// Guest Virtual APIC Log Head Pointer Register (offset in bits 15:3; p. 258).
pub const GA_LOG_HEAD: usize = 0x2040;
/// Guest Virtual APIC Log Tail Pointer Register (offset in bits 15:3; p. 259).
pub const GA_LOG_TAIL: usize = 0x2048;
/// The offset bits (15:3) of the GA log head and tail pointers.
pub const GA_LOG_POINTER_MASK: u64 = 0xFFF8;

/// Bits 51:12: a 4 KiB-aligned physical address in a base register or table entry.
pub const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Bits 18:4 of a head/tail pointer register: a 16-byte-aligned offset into a ring of at most
/// 512 KiB.
pub const RING_POINTER_MASK: u64 = 0x0007_FFF0;

/// Bytes per device table entry.
pub const DTE_BYTES: u64 = 32;
/// Device table entries per 4 KiB page.
pub const DTES_PER_PAGE: u64 = 4096 / DTE_BYTES;
/// Device table pages for the full 64 Ki requester ids (2 MiB).
pub const MAX_DEVICE_TABLE_PAGES: u64 = 512;

/// Value of the Device Table Base Address Register: the table at `base` (4 KiB aligned,
/// physically contiguous), `pages` 4 KiB pages long (1..=512). Size 8:0 holds `pages - 1`,
/// and the table covers requester ids `0..pages * 128`.
pub const fn device_table_base(base: Hpa, pages: u64) -> u64 {
    (base.0 & ADDR_MASK) | ((pages - 1) & 0x1FF)
}

/// Decoded Device Table Base Address Register: (base, pages).
pub const fn decode_device_table_base(value: u64) -> (Hpa, u64) {
    (Hpa(value & ADDR_MASK), field(value, 0, 9) + 1)
}

/// Smallest and largest log2 of the entry count of the command buffer and the event log
/// (ComLen/EventLen: 1000b = 256 entries = 4 KiB .. 1111b = 32 Ki entries = 512 KiB; smaller
/// values are reserved).
pub const MIN_RING_LOG2: u8 = 8;
/// See [`MIN_RING_LOG2`].
pub const MAX_RING_LOG2: u8 = 15;

/// Whether a command buffer or event log of `2^log2_entries` 16-byte entries may live at `base`:
/// 4 KiB aligned, below the address limit, and a size the Len fields can encode.
pub const fn valid_ring(base: crate::mem::Hpa, log2_entries: u8) -> bool {
    base.is_aligned(4096)
        && base.0 < crate::mem::MAX_HPA
        && log2_entries >= MIN_RING_LOG2
        && log2_entries <= MAX_RING_LOG2
}

/// Value of the Command Buffer or Event Log Base Address Register: a ring of `2^log2_entries`
/// 16-byte entries at `base` (4 KiB aligned). The length field sits in bits 59:56.
pub const fn ring_base(base: Hpa, log2_entries: u8) -> u64 {
    (base.0 & ADDR_MASK) | place(log2_entries as u64, 56, 4)
}

/// Decoded ring base register: (base, log2 of the entry count).
pub const fn decode_ring_base(value: u64) -> (Hpa, u8) {
    (Hpa(value & ADDR_MASK), field(value, 56, 4) as u8)
}

bitflags! {
    /// IOMMU Control Register (MMIO 0018h). Single-bit fields are flags; InvTimeOut (7:5) and
    /// GAMEn (27:25) are multi-bit fields with accessors.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Control: u64 {
        /// IommuEn: translation and remapping enabled.
        const IOMMU_EN = 1 << 0;
        /// HtTunEn: HyperTransport tunnel translation.
        const HT_TUN_EN = 1 << 1;
        /// EventLogEn: the IOMMU writes events to the event log.
        const EVENT_LOG_EN = 1 << 2;
        /// EventIntEn: interrupt when an event is logged.
        const EVENT_INT_EN = 1 << 3;
        /// ComWaitIntEn: interrupt on COMPLETION_WAIT with I = 1.
        const COM_WAIT_INT_EN = 1 << 4;
        /// PassPW: posted-write pass bit for upstream requests.
        const PASS_PW = 1 << 8;
        /// ResPassPW: response pass posted write.
        const RES_PASS_PW = 1 << 9;
        /// Coherent: the IOMMU's own table and ring reads snoop the CPU caches.
        const COHERENT = 1 << 10;
        /// Isoc: isochronous table-walk requests.
        const ISOC = 1 << 11;
        /// CmdBufEn: the IOMMU fetches and executes commands.
        const CMD_BUF_EN = 1 << 12;
        /// PPRLogEn: peripheral page request log.
        const PPR_LOG_EN = 1 << 13;
        /// PprIntEn: PPR log interrupt.
        const PPR_INT_EN = 1 << 14;
        /// PPREn: peripheral page request processing.
        const PPR_EN = 1 << 15;
        /// GTEn: guest (two-level) translation.
        const GT_EN = 1 << 16;
        /// GAEn: guest virtual APIC. Also selects the 128-bit interrupt remapping table entry
        /// format (with 0 the 32-bit format is used).
        const GA_EN = 1 << 17;
        /// SmiFEn: SMI filter.
        const SMIF_EN = 1 << 22;
        /// SlfWBdis: self write-back disable.
        const SLF_WB_DIS = 1 << 23;
        /// SmiFLogEn: SMI filter log.
        const SMIF_LOG_EN = 1 << 24;
        /// GALogEn: guest virtual APIC log.
        const GA_LOG_EN = 1 << 28;
        /// GAIntEn: guest virtual APIC log interrupt.
        const GA_INT_EN = 1 << 29;
        /// XTEn: x2APIC mode: 32-bit destinations in 128-bit IRTEs (needs XTSup and GAEn).
        const XT_EN = 1 << 50;
        /// IntCapXTEn: the IOMMU's own interrupts use the x2APIC control registers.
        const INT_CAP_XT_EN = 1 << 51;
        const _ = !0;
    }
}

/// InvTimeOut (Control 7:5): how long the IOMMU waits for device-IOTLB invalidations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum InvTimeout {
    /// No timeout.
    None = 0,
    /// 1 ms.
    Ms1 = 1,
    /// 10 ms.
    Ms10 = 2,
    /// 100 ms.
    Ms100 = 3,
    /// 1 s.
    S1 = 4,
    /// 10 s.
    S10 = 5,
    /// 100 s.
    S100 = 6,
}

impl Control {
    /// Bits of InvTimeOut.
    pub const INV_TIMEOUT_MASK: u64 = 0x7 << 5;
    /// Bits of GAMEn (guest virtual-APIC mode; 001b = vAPIC posting).
    pub const GAM_EN_MASK: u64 = 0x7 << 25;

    /// This value with InvTimeOut set to `t`.
    pub const fn with_inv_timeout(self, t: InvTimeout) -> Self {
        Self::from_bits_retain((self.bits() & !Self::INV_TIMEOUT_MASK) | place(t as u64, 5, 3))
    }

    /// InvTimeOut, 7:5 (7 is reserved).
    pub const fn inv_timeout(self) -> u8 {
        field(self.bits(), 5, 3) as u8
    }

    /// GAMEn, 27:25.
    pub const fn gam_en(self) -> u8 {
        field(self.bits(), 25, 3) as u8
    }

    /// The same with GAMEn (27:25) set to `mode` (001b: guest virtual APIC mode).
    pub const fn with_gam_en(self, mode: u8) -> Self {
        Self::from_bits_retain((self.bits() & !Self::GAM_EN_MASK) | place(mode as u64, 25, 3))
    }

    /// The control bits firmware asks for in an IVHD flags byte (IVRS §5.2.2): HtTunEn,
    /// PassPW, ResPassPW, Isoc, and Coherent (which this driver sets in any case).
    pub const fn from_ivhd_flags(flags: crate::ivrs::IvhdFlags) -> Self {
        use crate::ivrs::IvhdFlags as F;
        let mut c = Self::COHERENT;
        if flags.contains(F::HT_TUN_EN) {
            c = c.union(Self::HT_TUN_EN);
        }
        if flags.contains(F::PASS_PW) {
            c = c.union(Self::PASS_PW);
        }
        if flags.contains(F::RES_PASS_PW) {
            c = c.union(Self::RES_PASS_PW);
        }
        if flags.contains(F::ISOC) {
            c = c.union(Self::ISOC);
        }
        c
    }
}

bitflags! {
    /// IOMMU Status Register (MMIO 2020h). Overflow and interrupt bits are write-1-to-clear
    /// ([`Status::RW1C`]); the Run bits are read-only.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Status: u64 {
        /// EventOverflow: the event log was full; logging stopped (EventLogRun = 0).
        const EVENT_OVERFLOW = 1 << 0;
        /// EventLogInt: an event was logged (with EventIntEn).
        const EVENT_LOG_INT = 1 << 1;
        /// ComWaitInt: a COMPLETION_WAIT with I = 1 completed.
        const COM_WAIT_INT = 1 << 2;
        /// EventLogRun: event logging is running.
        const EVENT_LOG_RUN = 1 << 3;
        /// CmdBufRun: command processing is running (0 after an illegal command).
        const CMD_BUF_RUN = 1 << 4;
        /// PprOverflow.
        const PPR_OVERFLOW = 1 << 5;
        /// PprInt.
        const PPR_INT = 1 << 6;
        /// PprLogRun.
        const PPR_LOG_RUN = 1 << 7;
        /// GALogRun.
        const GA_LOG_RUN = 1 << 8;
        /// GALOverflow.
        const GA_LOG_OVERFLOW = 1 << 9;
        /// GAInt.
        const GA_INT = 1 << 10;
        const _ = !0;
    }
}

impl Status {
    /// The write-1-to-clear bits this driver knows.
    pub const RW1C: Self = Self::EVENT_OVERFLOW
        .union(Self::EVENT_LOG_INT)
        .union(Self::COM_WAIT_INT)
        .union(Self::PPR_OVERFLOW)
        .union(Self::PPR_INT)
        .union(Self::GA_LOG_OVERFLOW)
        .union(Self::GA_INT);
}

bitflags! {
    /// IOMMU Extended Feature Register (MMIO 0030h; an image is in IVHD types 11h/40h).
    /// Single-bit features are flags; multi-bit fields have accessors.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ExtendedFeatures: u64 {
        /// PreFSup: PREFETCH_IOMMU_PAGES.
        const PREF_SUP = 1 << 0;
        /// PPRSup: peripheral page requests.
        const PPR_SUP = 1 << 1;
        /// XTSup: x2APIC (32-bit interrupt destinations, XTEn).
        const XT_SUP = 1 << 2;
        /// NXSup: no-execute and privilege level.
        const NX_SUP = 1 << 3;
        /// GTSup: guest translation.
        const GT_SUP = 1 << 4;
        /// IASup: INVALIDATE_IOMMU_ALL.
        const IA_SUP = 1 << 6;
        /// GASup: guest virtual APIC (GAEn, 128-bit IRTEs).
        const GA_SUP = 1 << 7;
        /// HESup: hardware error registers.
        const HE_SUP = 1 << 8;
        /// PCSup: performance counters.
        const PC_SUP = 1 << 9;
        /// USSup: user/supervisor page protection.
        const US_SUP = 1 << 37;
        /// GIoSup: guest I/O protection.
        const GIO_SUP = 1 << 48;
        /// HASup: host access.
        const HA_SUP = 1 << 49;
        /// EPHSup: enhanced PPR handling.
        const EPH_SUP = 1 << 50;
        /// HDSup: host dirty.
        const HD_SUP = 1 << 52;
        const _ = !0;
    }
}

impl ExtendedFeatures {
    /// HATS, 11:10: host address translation size: 00b = 4 levels, 01b = 5, 10b = 6.
    pub const fn hats(self) -> u8 {
        field(self.bits(), 10, 2) as u8
    }

    /// The deepest host page table the IOMMU walks, from HATS (`None` for the reserved 11b).
    pub const fn max_host_levels(self) -> Option<u8> {
        match self.hats() {
            3 => None,
            h => Some(4 + h),
        }
    }

    /// GATS, 13:12: guest address translation size.
    pub const fn gats(self) -> u8 {
        field(self.bits(), 12, 2) as u8
    }

    /// GLXSup, 15:14: guest CR3 table levels supported.
    pub const fn glx_sup(self) -> u8 {
        field(self.bits(), 14, 2) as u8
    }

    /// SmiFSup, 17:16.
    pub const fn smif_sup(self) -> u8 {
        field(self.bits(), 16, 2) as u8
    }

    /// SmiFRC, 20:18.
    pub const fn smif_rc(self) -> u8 {
        field(self.bits(), 18, 3) as u8
    }

    /// GAMSup, 23:21: guest virtual-APIC modes (001b: vAPIC interrupt posting).
    pub const fn gam_sup(self) -> u8 {
        field(self.bits(), 21, 3) as u8
    }

    /// PASMax, 36:32: the largest PASID width minus one.
    pub const fn pas_max(self) -> u8 {
        field(self.bits(), 32, 5) as u8
    }
}

/// A head/tail pointer register value for byte offset `offset` into a ring.
pub const fn ring_pointer(offset: u32) -> u64 {
    offset as u64 & RING_POINTER_MASK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivrs::IvhdFlags;

    #[test]
    fn device_table_base_register() {
        // Full table: 2 MiB = 512 pages, Size = 511 = 0x1FF.
        assert_eq!(device_table_base(Hpa(0x1_0020_0000), 512), 0x1_0020_01FF);
        assert_eq!(device_table_base(Hpa(0x4000), 1), 0x4000);
        assert_eq!(
            decode_device_table_base(0x1_0020_01FF),
            (Hpa(0x1_0020_0000), 512)
        );
    }

    #[test]
    fn ring_base_register() {
        // 256 entries: ComLen = 8 in bits 59:56 -> 0x0800_0000_0000_0000.
        assert_eq!(ring_base(Hpa(0x7_5000), 8), 0x0800_0000_0007_5000);
        // 512 entries (what Linux uses): 0x09 << 56.
        assert_eq!(ring_base(Hpa(0x20_0000), 9), 0x0900_0000_0020_0000);
        assert_eq!(decode_ring_base(0x0F00_0000_0001_2000), (Hpa(0x1_2000), 15));
        // Low bits of the base are dropped.
        assert_eq!(ring_base(Hpa(0x1234), 8) & 0xFFF, 0);
    }

    #[test]
    fn control_bits() {
        assert_eq!(Control::IOMMU_EN.bits(), 0x1);
        assert_eq!(Control::EVENT_LOG_EN.bits(), 0x4);
        assert_eq!(Control::CMD_BUF_EN.bits(), 0x1000);
        assert_eq!(Control::GA_EN.bits(), 0x2_0000);
        assert_eq!(Control::GA_LOG_EN.bits(), 0x1000_0000);
        assert_eq!(Control::GA_INT_EN.bits(), 0x2000_0000);
        assert_eq!(Control::XT_EN.bits(), 0x4_0000_0000_0000);
        let c = (Control::IOMMU_EN | Control::CMD_BUF_EN).with_inv_timeout(InvTimeout::S1);
        assert_eq!(c.bits(), 0x1081); // 4 << 5 = 0x80
        assert_eq!(c.inv_timeout(), 4);
        assert_eq!(c.with_inv_timeout(InvTimeout::None).bits(), 0x1001);
        assert_eq!(Control::from_bits_retain(1 << 25).gam_en(), 1);
        // GAEn + GAMEn 001b + GALogEn + GAIntEn: 0x2_0000 | 0x200_0000 | 0x3000_0000.
        let ga = (Control::GA_EN | Control::GA_LOG_EN | Control::GA_INT_EN).with_gam_en(1);
        assert_eq!(ga.bits(), 0x3202_0000);
        assert_eq!(ga.with_gam_en(0).bits(), 0x3002_0000);
    }

    #[test]
    fn control_from_ivhd() {
        let c =
            Control::from_ivhd_flags(IvhdFlags::PASS_PW | IvhdFlags::ISOC | IvhdFlags::IOTLB_SUP);
        assert_eq!(c, Control::COHERENT | Control::PASS_PW | Control::ISOC);
        assert_eq!(
            Control::from_ivhd_flags(IvhdFlags::empty()),
            Control::COHERENT
        );
    }

    #[test]
    fn status_bits() {
        let s = Status::from_bits_retain(0x18);
        assert!(s.contains(Status::EVENT_LOG_RUN | Status::CMD_BUF_RUN));
        assert!(!s.intersects(Status::RW1C));
        assert_eq!(Status::RW1C.bits(), 0x667);
    }

    #[test]
    fn extended_features() {
        // QEMU's amd-iommu with xtsup=on: PreF, PPR, XT, GT, IA, GA, HE, HATS = GATS = 10b.
        let efr = ExtendedFeatures::from_bits_retain(0x29D7);
        assert!(efr.contains(
            ExtendedFeatures::PREF_SUP
                | ExtendedFeatures::PPR_SUP
                | ExtendedFeatures::XT_SUP
                | ExtendedFeatures::GT_SUP
                | ExtendedFeatures::IA_SUP
                | ExtendedFeatures::GA_SUP
                | ExtendedFeatures::HE_SUP
        ));
        assert!(!efr.contains(ExtendedFeatures::NX_SUP));
        assert_eq!(efr.hats(), 2);
        assert_eq!(efr.max_host_levels(), Some(6));
        assert_eq!(efr.gats(), 2);
        assert_eq!(
            ExtendedFeatures::from_bits_retain(3 << 10).max_host_levels(),
            None
        );
        // GAMSup 23:21, PASMax 36:32, GLXSup 15:14.
        let f = ExtendedFeatures::from_bits_retain((1 << 21) | (0xF << 32) | (1 << 14));
        assert_eq!(f.gam_sup(), 1);
        assert_eq!(f.pas_max(), 15);
        assert_eq!(f.glx_sup(), 1);
    }

    #[test]
    fn ring_pointers() {
        assert_eq!(ring_pointer(0x10), 0x10);
        assert_eq!(ring_pointer(0xFFF0), 0xFFF0);
        assert_eq!(ring_pointer(0x8_0000), 0); // beyond 512 KiB
        assert_eq!(ring_pointer(0x1F), 0x10);
    }
}
