//! Device table entries (spec §2.2.2 "Device Table", §2.2.2.1 "Device Table Entry Format"; the
//! interrupt fields are described with §2.2.5 "Interrupt Remapping Tables").
//!
//! The device table is indexed by the 16-bit requester id (DeviceID); each entry is 256 bits,
//! stored as four little-endian quadwords. This driver uses the host-translation and interrupt
//! fields only; every guest-translation field (PPR, GPRP, GIoV, GV, GLX, GCR3 root pointer),
//! IOTLB (I), Cache, SD, EX and the attribute-override bits of quadword 3 stay zero.
//!
//! | bits | field | here |
//! |---|---|---|
//! | 0 | V: entry valid (V = 0: DMA passes untranslated, interrupts pass unmapped) | always 1 |
//! | 1 | TV: translation information valid | always 1 |
//! | 8:7 | HAD: host access/dirty update | 0 |
//! | 11:9 | Mode: 0 = no translation (IR/IW alone decide), 1..6 = page-table levels, 7 reserved | |
//! | 51:12 | Host Page Table Root Pointer | |
//! | 52..60 | PPR, GPRP, GIoV, GV, GLX, GCR3\[14:12\] | 0 |
//! | 61, 62 | IR, IW: read/write permission, ANDed with every table level | |
//! | 79:64 | DomainID: tags the IOMMU's translation caches | |
//! | 96..106 | I, SE, SA, IoCtl (port I/O: 00b = abort), Cache, SD, EX, SysMgt (00b = abort) | 0 |
//! | 128 | IV: interrupt fields valid (IV = 0: interrupts pass unmapped) | always 1 |
//! | 132:129 | IntTabLen: the table has 2^IntTabLen entries (0..=11) | |
//! | 133 | IG: do not log unmapped-interrupt faults | 0 |
//! | 179:134 | Interrupt Table Root Pointer\[51:6\] (128-byte aligned) | |
//! | 184, 185, 186 | InitPass, EIntPass, NMIPass (0 = target abort) | 0 |
//! | 189:188 | IntCtl for fixed/arbitrated interrupts: 00b abort, 01b pass unmapped, 10b remap | |
//! | 190, 191 | Lint0Pass, Lint1Pass | 0 |
//!
//! An all-zero entry (V = 0) lets the device's DMA through untranslated, so isolation needs
//! every entry written: unused requester ids get [`Dte::blocked`].

use core::fmt;

use crate::mem::{field, place, Hpa, MAX_HPA};
use crate::regs::ADDR_MASK;

/// A protection domain id, the DTE's DomainID: IOTLB and page-directory cache entries are
/// tagged with it, and INVALIDATE_IOMMU_PAGES selects by it. Every set of page tables needs its
/// own id; devices sharing tables share the id.
///
/// Use ids 1..=255 on QEMU: until mid-2025 (QEMU 10.0 included, unless a stable release took
/// the fix) `amd_iommu.c` treated DTE bit 72 (DomainID bit 8) as reserved and rejected the whole
/// entry as illegal. Linux reserves id 0; this crate does not care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u16);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the IOMMU does with fixed and arbitrated interrupts of the device (IntCtl, 189:188).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IntCtl {
    /// 00b: target abort.
    Abort = 0,
    /// 01b: forward unmapped.
    ForwardUnmapped = 1,
    /// 10b: remap through the interrupt remapping table.
    Remap = 2,
    /// 11b: reserved.
    Reserved = 3,
}

/// An interrupt remapping table for a DTE: `2^log2_entries` entries at `table` (128-byte
/// aligned, physically contiguous; 4 bytes per entry in the 32-bit format, 16 in the 128-bit
/// format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptRemap {
    /// Physical address of entry 0.
    pub table: Hpa,
    /// IntTabLen: log2 of the entry count, 0..=11.
    pub log2_entries: u8,
}

/// Why a DTE could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DteError {
    /// The page-table root is not 4 KiB aligned or not below 2^52.
    BadPageTableRoot(Hpa),
    /// Mode must be 1..=6 levels for a translating entry.
    BadLevels(u8),
    /// The interrupt table is not 128-byte aligned or not below 2^52.
    BadInterruptTable(Hpa),
    /// IntTabLen above 11 (2048 entries) is reserved.
    BadInterruptTableLength(u8),
}

/// A 256-bit device table entry, quadword 0 first (spec §2.2.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C, align(32))]
pub struct Dte(pub [u64; 4]);

const _: () = assert!(core::mem::size_of::<Dte>() == 32);

/// Quadword 0.
const V: u64 = 1 << 0;
const TV: u64 = 1 << 1;
const MODE_SHIFT: u32 = 9;
const IR: u64 = 1 << 61;
const IW: u64 = 1 << 62;
/// Quadword 2.
const IV: u64 = 1 << 0;
const INT_TAB_LEN_SHIFT: u32 = 1;
const IG: u64 = 1 << 5;
const INT_ROOT_MASK: u64 = 0x000F_FFFF_FFFF_FFC0;
const INIT_PASS: u64 = 1 << 56;
const EINT_PASS: u64 = 1 << 57;
const NMI_PASS: u64 = 1 << 58;
const INT_CTL_SHIFT: u32 = 60;
const LINT0_PASS: u64 = 1 << 62;
const LINT1_PASS: u64 = 1 << 63;

/// Largest IntTabLen the spec defines (1011b: 2048 entries).
pub const MAX_INT_TABLE_LOG2: u8 = 11;

impl Dte {
    /// All DMA and all interrupts of the device are target-aborted (and logged as events):
    /// V = 1, TV = 1, Mode = 0 (no translation) with IR = IW = 0, so every access is denied;
    /// IV = 1 with IntCtl = 00b and every pass bit 0, so fixed/arbitrated interrupts and INIT,
    /// ExtInt, NMI, LINT0/1 are aborted; IoCtl = SysMgt = 00b abort port I/O and system
    /// management requests. The interrupt table fields (length 0, root 0) are never consulted.
    pub const fn blocked() -> Self {
        Self([V | TV, 0, IV, 0])
    }

    /// DMA translated through the 4 KiB-aligned page table at `root` with `levels` levels
    /// (Mode, 1..=6; this crate's [`crate::io_pgtable`] builds 4), tagged with `domain`; the
    /// DTE's IR/IW are set, so the page tables alone decide permissions. Fixed and arbitrated
    /// interrupts are remapped through `interrupts`, or aborted when it is `None`.
    pub const fn translated(
        domain: DomainId,
        root: Hpa,
        levels: u8,
        interrupts: Option<InterruptRemap>,
    ) -> Result<Self, DteError> {
        if !root.is_aligned(4096) || root.0 >= MAX_HPA {
            return Err(DteError::BadPageTableRoot(root));
        }
        if levels == 0 || levels > 6 {
            return Err(DteError::BadLevels(levels));
        }
        let q0 = V | TV | place(levels as u64, MODE_SHIFT, 3) | (root.0 & ADDR_MASK) | IR | IW;
        Self([q0, domain.0 as u64, 0, 0]).with_interrupts(interrupts)
    }

    /// DMA passes untranslated with read and write allowed (V = 1, TV = 1, Mode = 0,
    /// IR = IW = 1): for devices the hypervisor itself drives (e.g. an SR-IOV PF doing admin
    /// DMA into hypervisor memory). Interrupts as in [`Dte::translated`].
    pub const fn passthrough(
        domain: DomainId,
        interrupts: Option<InterruptRemap>,
    ) -> Result<Self, DteError> {
        Self([V | TV | IR | IW, domain.0 as u64, 0, 0]).with_interrupts(interrupts)
    }

    /// This entry with its interrupt fields replaced: IV = 1, and IntCtl = 10b (remap) with the
    /// table, or IntCtl = 00b (abort) for `None`. All pass bits stay 0.
    pub const fn with_interrupts(
        self,
        interrupts: Option<InterruptRemap>,
    ) -> Result<Self, DteError> {
        let q2 = match interrupts {
            None => IV,
            Some(InterruptRemap {
                table,
                log2_entries,
            }) => {
                if !table.is_aligned(128) || table.0 >= MAX_HPA {
                    return Err(DteError::BadInterruptTable(table));
                }
                if log2_entries > MAX_INT_TABLE_LOG2 {
                    return Err(DteError::BadInterruptTableLength(log2_entries));
                }
                IV | place(log2_entries as u64, INT_TAB_LEN_SHIFT, 4)
                    | (table.0 & INT_ROOT_MASK)
                    | place(IntCtl::Remap as u64, INT_CTL_SHIFT, 2)
            }
        };
        Ok(Self([self.0[0], self.0[1], q2, self.0[3]]))
    }

    /// V.
    pub const fn valid(&self) -> bool {
        self.0[0] & V != 0
    }

    /// TV.
    pub const fn translation_valid(&self) -> bool {
        self.0[0] & TV != 0
    }

    /// Mode (11:9): 0 = untranslated, 1..=6 = levels.
    pub const fn mode(&self) -> u8 {
        field(self.0[0], MODE_SHIFT, 3) as u8
    }

    /// Host Page Table Root Pointer (51:12).
    pub const fn page_table_root(&self) -> Hpa {
        Hpa(self.0[0] & ADDR_MASK)
    }

    /// IR: DMA reads allowed at the DTE level.
    pub const fn read_allowed(&self) -> bool {
        self.0[0] & IR != 0
    }

    /// IW: DMA writes allowed at the DTE level.
    pub const fn write_allowed(&self) -> bool {
        self.0[0] & IW != 0
    }

    /// DomainID (79:64).
    pub const fn domain(&self) -> DomainId {
        DomainId(self.0[1] as u16)
    }

    /// IoCtl (100:99).
    pub const fn io_ctl(&self) -> u8 {
        field(self.0[1], 35, 2) as u8
    }

    /// SysMgt (105:104).
    pub const fn sys_mgt(&self) -> u8 {
        field(self.0[1], 40, 2) as u8
    }

    /// IV: the interrupt fields are valid.
    pub const fn interrupt_map_valid(&self) -> bool {
        self.0[2] & IV != 0
    }

    /// IntTabLen (132:129).
    pub const fn int_table_log2(&self) -> u8 {
        field(self.0[2], INT_TAB_LEN_SHIFT, 4) as u8
    }

    /// IG (133).
    pub const fn ignore_unmapped(&self) -> bool {
        self.0[2] & IG != 0
    }

    /// Interrupt Table Root Pointer (179:134, address bits 51:6).
    pub const fn int_table_root(&self) -> Hpa {
        Hpa(self.0[2] & INT_ROOT_MASK)
    }

    /// IntCtl (189:188).
    pub const fn int_ctl(&self) -> IntCtl {
        match field(self.0[2], INT_CTL_SHIFT, 2) {
            0 => IntCtl::Abort,
            1 => IntCtl::ForwardUnmapped,
            2 => IntCtl::Remap,
            _ => IntCtl::Reserved,
        }
    }

    /// InitPass, EIntPass, NMIPass, Lint0Pass, Lint1Pass, in that order.
    pub const fn pass_bits(&self) -> [bool; 5] {
        let q = self.0[2];
        [
            q & INIT_PASS != 0,
            q & EINT_PASS != 0,
            q & NMI_PASS != 0,
            q & LINT0_PASS != 0,
            q & LINT1_PASS != 0,
        ]
    }

    /// Whether every DMA of the device is denied: valid, and neither untranslated-with-permission
    /// nor translated.
    pub const fn blocks_dma(&self) -> bool {
        self.valid()
            && self.translation_valid()
            && self.mode() == 0
            && !self.read_allowed()
            && !self.write_allowed()
    }

    /// Whether every interrupt of the device is aborted.
    pub const fn blocks_interrupts(&self) -> bool {
        let p = self.pass_bits();
        self.valid()
            && self.interrupt_map_valid()
            && matches!(self.int_ctl(), IntCtl::Abort)
            && !p[0]
            && !p[1]
            && !p[2]
            && !p[3]
            && !p[4]
    }
}

impl fmt::Debug for Dte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Dte({:#018x} {:#018x} {:#018x} {:#018x})",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_entry() {
        let d = Dte::blocked();
        // V (bit 0) + TV (bit 1); IV is bit 128 = bit 0 of quadword 2.
        assert_eq!(d.0, [0x3, 0, 0x1, 0]);
        assert!(d.blocks_dma());
        assert!(d.blocks_interrupts());
        assert_eq!(d.int_ctl(), IntCtl::Abort);
        assert_eq!(d.mode(), 0);
        assert_eq!(d.io_ctl(), 0);
        assert_eq!(d.sys_mgt(), 0);
    }

    #[test]
    fn translated_entry_bits_by_hand() {
        let d = Dte::translated(
            DomainId(2),
            Hpa(0x1234_5000),
            4,
            Some(InterruptRemap {
                table: Hpa(0xABC_D080),
                log2_entries: 9,
            }),
        )
        .unwrap();
        // q0: IW (62) 0x4000.., IR (61) 0x2000.., root 0x1234_5000, Mode 4 << 9 = 0x800, V|TV = 3.
        assert_eq!(d.0[0], 0x6000_0000_1234_5803);
        // q1: DomainID in 15:0 (DTE bits 79:64).
        assert_eq!(d.0[1], 0x2);
        // q2: IntCtl 10b at 61:60 = 0x2000.., root 0xABC_D080 in 51:6, IntTabLen 9 << 1 = 0x12,
        // IV = 1.
        assert_eq!(d.0[2], 0x2000_0000_0ABC_D093);
        assert_eq!(d.0[3], 0);
        assert_eq!(d.mode(), 4);
        assert_eq!(d.page_table_root(), Hpa(0x1234_5000));
        assert_eq!(d.domain(), DomainId(2));
        assert_eq!(d.int_table_root(), Hpa(0xABC_D080));
        assert_eq!(d.int_table_log2(), 9);
        assert_eq!(d.int_ctl(), IntCtl::Remap);
        assert!(d.read_allowed() && d.write_allowed());
        assert!(!d.blocks_dma() && !d.blocks_interrupts());
        assert_eq!(d.pass_bits(), [false; 5]);
        assert!(!d.ignore_unmapped());
    }

    #[test]
    fn translated_without_interrupt_table_aborts_interrupts() {
        let d = Dte::translated(DomainId(0xFFFF), Hpa(0xF_FFFF_FFFF_F000), 6, None).unwrap();
        assert_eq!(d.0[0], 0x600F_FFFF_FFFF_FC03); // Mode 6 << 9 = 0xC00
        assert_eq!(d.0[1], 0xFFFF);
        assert_eq!(d.0[2], 0x1);
        assert!(d.blocks_interrupts());
    }

    #[test]
    fn passthrough_entry() {
        let d = Dte::passthrough(
            DomainId(1),
            Some(InterruptRemap {
                table: Hpa(0x10_0000),
                log2_entries: 0,
            }),
        )
        .unwrap();
        assert_eq!(d.0[0], 0x6000_0000_0000_0003);
        assert_eq!(d.0[2], 0x2000_0000_0010_0001);
        assert!(!d.blocks_dma());
    }

    #[test]
    fn rejects_bad_fields() {
        assert_eq!(
            Dte::translated(DomainId(1), Hpa(0x1234), 4, None),
            Err(DteError::BadPageTableRoot(Hpa(0x1234)))
        );
        assert_eq!(
            Dte::translated(DomainId(1), Hpa(1 << 52), 4, None),
            Err(DteError::BadPageTableRoot(Hpa(1 << 52)))
        );
        assert_eq!(
            Dte::translated(DomainId(1), Hpa(0x1000), 7, None),
            Err(DteError::BadLevels(7))
        );
        assert_eq!(
            Dte::translated(DomainId(1), Hpa(0x1000), 0, None),
            Err(DteError::BadLevels(0))
        );
        let bad_table = InterruptRemap {
            table: Hpa(0x1040),
            log2_entries: 1,
        };
        assert_eq!(
            Dte::blocked().with_interrupts(Some(bad_table)),
            Err(DteError::BadInterruptTable(Hpa(0x1040)))
        );
        let too_long = InterruptRemap {
            table: Hpa(0x1000),
            log2_entries: 12,
        };
        assert_eq!(
            Dte::blocked().with_interrupts(Some(too_long)),
            Err(DteError::BadInterruptTableLength(12))
        );
    }

    #[test]
    fn decode_pass_bits_and_fields() {
        // InitPass 184 = q2 bit 56, NMIPass 186 = q2 bit 58, Lint1Pass 191 = q2 bit 63,
        // IntCtl 01b, IG (133 = q2 bit 5); IoCtl 01b at q1 36:35, SysMgt 11b at q1 41:40.
        let d = Dte([
            0x1,
            (1 << 35) | (3 << 40),
            (1 << 56) | (1 << 58) | (1 << 63) | (1 << 60) | (1 << 5) | 1,
            0,
        ]);
        assert_eq!(d.pass_bits(), [true, false, true, false, true]);
        assert_eq!(d.int_ctl(), IntCtl::ForwardUnmapped);
        assert!(d.ignore_unmapped());
        assert_eq!(d.io_ctl(), 1);
        assert_eq!(d.sys_mgt(), 3);
        assert!(!d.translation_valid());
        assert!(!d.blocks_interrupts());
        assert_eq!(
            format!("{:?}", Dte::blocked()),
            "Dte(0x0000000000000003 0x0000000000000000 0x0000000000000001 0x0000000000000000)"
        );
    }
}
