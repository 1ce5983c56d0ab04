//! Interrupt remapping table entries (spec §2.2.5 "Interrupt Remapping Tables" and its
//! subsections: the 32-bit entry format, the 128-bit format used when Control.GAEn = 1, and
//! the 128-bit guest virtual APIC (GuestMode = 1) variant).
//!
//! A DTE with IntCtl = 10b points to a table of 2^IntTabLen entries; an MSI selects entry
//! data\[10:0\] (see [`crate::msi`] for which indices are reachable). The entry size is global
//! per IOMMU: 4 bytes while GAEn = 0, 16 bytes while GAEn = 1. x2APIC destinations above 255
//! need the 128-bit format and Control.XTEn.
//!
//! 32-bit entry: RemapEn 0, SupIOPF 1, IntType 4:2, RqEoi 5, DM 6, (GuestMode 7, must be 0),
//! Destination 15:8, Vector 23:16, 31:24 reserved.
//!
//! 128-bit entry, GuestMode = 0 (remapped): low quadword RemapEn 0, SupIOPF 1, IntType 4:2,
//! RqEoi 5, DM 6, GuestMode 7, Destination\[23:0\] 31:8; high quadword Vector 7:0,
//! Destination\[31:24\] 63:56.
//!
//! 128-bit entry, GuestMode = 1 (posted to a vAPIC backing page): low quadword RemapEn 0,
//! SupIOPF 1, GALogIntr 2, IsRun 6, GuestMode 7, Destination\[23:0\] 31:8 (the host APIC id of
//! the core running the vCPU, for the doorbell), GATag 63:32; high quadword Vector 7:0 (the
//! guest vector), vAPIC backing page 51:12, Destination\[31:24\] 63:56. Destination, IsRun and
//! GATag may change without invalidation; vector, backing page and mode changes need
//! INVALIDATE_INTERRUPT_TABLE + COMPLETION_WAIT. QEMU rejects GuestMode = 1.
//!
//! After changing an entry the caller issues INVALIDATE_INTERRUPT_TABLE for the device and a
//! COMPLETION_WAIT ([`crate::driver::Iommu::invalidate_interrupt_table`]).

use crate::dte::{InterruptRemap, MAX_INT_TABLE_LOG2};
use crate::mem::{field, place, Hpa, PhysAccess, MAX_HPA};
use crate::regs::ADDR_MASK;

/// IntType of a remapped interrupt (the IOMMU spec's names; only these two are valid in an
/// IRTE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntType {
    /// 000b: fixed.
    Fixed,
    /// 001b: arbitrated (lowest priority).
    Arbitrated,
}

/// Destination mode (DM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestMode {
    /// 0: physical APIC id.
    Physical,
    /// 1: logical destination.
    Logical,
}

const REMAP_EN: u64 = 1 << 0;
const SUP_IOPF: u64 = 1 << 1;
const RQ_EOI: u64 = 1 << 5;
const DM: u64 = 1 << 6;
const GUEST_MODE: u64 = 1 << 7;
const GA_LOG_INTR: u64 = 1 << 2;
const IS_RUN: u64 = 1 << 6;

const fn int_type_bits(t: IntType) -> u64 {
    match t {
        IntType::Fixed => 0,
        IntType::Arbitrated => 1 << 2,
    }
}

const fn dm_bit(m: DestMode) -> u64 {
    match m {
        DestMode::Physical => 0,
        DestMode::Logical => DM,
    }
}

/// A 32-bit interrupt remapping table entry (GAEn = 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Irte32(pub u32);

const _: () = assert!(core::mem::size_of::<Irte32>() == 4);

impl Irte32 {
    /// RemapEn = 0: the interrupt is target-aborted (and logged as an IO_PAGE_FAULT).
    pub const DISABLED: Self = Self(0);

    /// Remap to `vector` at the 8-bit `dest`.
    pub const fn remapped(vector: u8, dest: u8, mode: DestMode, int_type: IntType) -> Self {
        let v = REMAP_EN
            | int_type_bits(int_type)
            | dm_bit(mode)
            | place(dest as u64, 8, 8)
            | place(vector as u64, 16, 8);
        Self(v as u32)
    }

    /// RemapEn.
    pub const fn remap_enabled(self) -> bool {
        self.0 as u64 & REMAP_EN != 0
    }

    /// IntType (4:2), raw.
    pub const fn int_type(self) -> u8 {
        field(self.0 as u64, 2, 3) as u8
    }

    /// DM.
    pub const fn dest_mode(self) -> DestMode {
        if self.0 as u64 & DM != 0 {
            DestMode::Logical
        } else {
            DestMode::Physical
        }
    }

    /// Destination (15:8).
    pub const fn destination(self) -> u8 {
        field(self.0 as u64, 8, 8) as u8
    }

    /// Vector (23:16).
    pub const fn vector(self) -> u8 {
        field(self.0 as u64, 16, 8) as u8
    }

    /// SupIOPF: faults of this entry are not logged.
    pub const fn suppress_faults(self) -> bool {
        self.0 as u64 & SUP_IOPF != 0
    }
}

/// A 128-bit interrupt remapping table entry (GAEn = 1): low quadword first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C, align(16))]
pub struct Irte128 {
    /// Bits 63:0.
    pub lo: u64,
    /// Bits 127:64.
    pub hi: u64,
}

const _: () = assert!(core::mem::size_of::<Irte128>() == 16);
const _: () = assert!(core::mem::offset_of!(Irte128, hi) == 8);

impl Irte128 {
    /// RemapEn = 0: the interrupt is target-aborted.
    pub const DISABLED: Self = Self { lo: 0, hi: 0 };

    /// Remap (GuestMode = 0) to `vector` at the 32-bit `dest` (above 255 needs XTEn).
    pub const fn remapped(vector: u8, dest: u32, mode: DestMode, int_type: IntType) -> Self {
        Self {
            lo: REMAP_EN | int_type_bits(int_type) | dm_bit(mode) | place(dest as u64, 8, 24),
            hi: vector as u64 | place((dest >> 24) as u64, 56, 8),
        }
    }

    /// Post (GuestMode = 1) guest `vector` into the vAPIC backing page at `backing_page` (4 KiB
    /// aligned, below 2^52). `host_dest` is the physical APIC id of the core the vCPU runs on
    /// (the doorbell target while `is_running`); `ga_tag` identifies the vCPU in GA log entries
    /// written when the vCPU is not running and `ga_log_intr` is set.
    pub const fn guest(
        vector: u8,
        backing_page: Hpa,
        host_dest: u32,
        is_running: bool,
        ga_tag: u32,
        ga_log_intr: bool,
    ) -> Option<Self> {
        if !backing_page.is_aligned(4096) || backing_page.0 >= MAX_HPA {
            return None;
        }
        let mut lo = REMAP_EN | GUEST_MODE | place(host_dest as u64, 8, 24) | (ga_tag as u64) << 32;
        if is_running {
            lo |= IS_RUN;
        }
        if ga_log_intr {
            lo |= GA_LOG_INTR;
        }
        Some(Self {
            lo,
            hi: vector as u64
                | (backing_page.0 & ADDR_MASK)
                | place((host_dest >> 24) as u64, 56, 8),
        })
    }

    /// A guest-mode entry with new IsRun and destination (the updates that need no
    /// invalidation).
    pub const fn with_running(self, is_running: bool, host_dest: u32) -> Self {
        let mut lo =
            (self.lo & !(IS_RUN | place(0xFF_FFFF, 8, 24))) | place(host_dest as u64, 8, 24);
        if is_running {
            lo |= IS_RUN;
        }
        Self {
            lo,
            hi: (self.hi & !place(0xFF, 56, 8)) | place((host_dest >> 24) as u64, 56, 8),
        }
    }

    /// RemapEn.
    pub const fn remap_enabled(self) -> bool {
        self.lo & REMAP_EN != 0
    }

    /// SupIOPF.
    pub const fn suppress_faults(self) -> bool {
        self.lo & SUP_IOPF != 0
    }

    /// GuestMode.
    pub const fn guest_mode(self) -> bool {
        self.lo & GUEST_MODE != 0
    }

    /// IntType (4:2) of a remapped entry, raw (the same bits hold GALogIntr in guest mode).
    pub const fn int_type(self) -> u8 {
        field(self.lo, 2, 3) as u8
    }

    /// RqEoi (remapped entries).
    pub const fn request_eoi(self) -> bool {
        self.lo & RQ_EOI != 0
    }

    /// DM (remapped entries; bit 6 is IsRun in guest mode).
    pub const fn dest_mode(self) -> DestMode {
        if self.lo & DM != 0 {
            DestMode::Logical
        } else {
            DestMode::Physical
        }
    }

    /// The 32-bit destination: low 24 bits from 31:8, high 8 from 127:120.
    pub const fn destination(self) -> u32 {
        field(self.lo, 8, 24) as u32 | (field(self.hi, 56, 8) as u32) << 24
    }

    /// Vector (71:64).
    pub const fn vector(self) -> u8 {
        self.hi as u8
    }

    /// GATag (63:32, guest mode).
    pub const fn ga_tag(self) -> u32 {
        (self.lo >> 32) as u32
    }

    /// IsRun (guest mode).
    pub const fn is_running(self) -> bool {
        self.lo & IS_RUN != 0
    }

    /// GALogIntr (guest mode).
    pub const fn ga_log_intr(self) -> bool {
        self.lo & GA_LOG_INTR != 0
    }

    /// vAPIC backing page (115:76, guest mode).
    pub const fn backing_page(self) -> Hpa {
        Hpa(self.hi & ADDR_MASK)
    }
}

/// The IRTE format an IOMMU uses: 32-bit unless Control.GAEn is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteFormat {
    /// 4-byte entries.
    Bits32,
    /// 16-byte entries.
    Bits128,
}

impl IrteFormat {
    /// Bytes per entry.
    pub const fn entry_bytes(self) -> u64 {
        match self {
            Self::Bits32 => 4,
            Self::Bits128 => 16,
        }
    }
}

/// An entry of either format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irte {
    /// A 32-bit entry.
    Bits32(Irte32),
    /// A 128-bit entry.
    Bits128(Irte128),
}

impl Irte {
    /// A remapped entry in `format`; `None` when the destination does not fit (above 255 in
    /// the 32-bit format).
    pub const fn remapped(
        format: IrteFormat,
        vector: u8,
        dest: u32,
        mode: DestMode,
        int_type: IntType,
    ) -> Option<Self> {
        match format {
            IrteFormat::Bits32 if dest > 0xFF => None,
            IrteFormat::Bits32 => Some(Self::Bits32(Irte32::remapped(
                vector, dest as u8, mode, int_type,
            ))),
            IrteFormat::Bits128 => Some(Self::Bits128(Irte128::remapped(
                vector, dest, mode, int_type,
            ))),
        }
    }

    /// The disabled entry of `format`.
    pub const fn disabled(format: IrteFormat) -> Self {
        match format {
            IrteFormat::Bits32 => Self::Bits32(Irte32::DISABLED),
            IrteFormat::Bits128 => Self::Bits128(Irte128::DISABLED),
        }
    }

    /// The format of this entry.
    pub const fn format(self) -> IrteFormat {
        match self {
            Self::Bits32(_) => IrteFormat::Bits32,
            Self::Bits128(_) => IrteFormat::Bits128,
        }
    }

    /// RemapEn.
    pub const fn remap_enabled(self) -> bool {
        match self {
            Self::Bits32(e) => e.remap_enabled(),
            Self::Bits128(e) => e.remap_enabled(),
        }
    }
}

/// Why an interrupt table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteError {
    /// The table base is not 128-byte aligned or not below 2^52.
    BadBase(Hpa),
    /// IntTabLen above 11.
    BadLength(u8),
    /// The index is outside the table.
    IndexOutOfRange(u16),
    /// An entry of the other format.
    WrongFormat,
}

/// One device's interrupt remapping table in caller-provided memory (128-byte aligned,
/// physically contiguous, [`InterruptTable::bytes`] long).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptTable {
    base: Hpa,
    log2_entries: u8,
    format: IrteFormat,
}

impl InterruptTable {
    /// A table of `2^log2_entries` entries of `format` at `base`. Nothing is written; call
    /// [`InterruptTable::clear`] before pointing a DTE at it.
    pub const fn new(base: Hpa, log2_entries: u8, format: IrteFormat) -> Result<Self, IrteError> {
        if !base.is_aligned(128) || base.0 >= MAX_HPA {
            return Err(IrteError::BadBase(base));
        }
        if log2_entries > MAX_INT_TABLE_LOG2 {
            return Err(IrteError::BadLength(log2_entries));
        }
        Ok(Self {
            base,
            log2_entries,
            format,
        })
    }

    /// Number of entries.
    pub const fn entries(&self) -> u16 {
        1 << self.log2_entries
    }

    /// Size in bytes (at least 8: a 32-bit table of one entry still occupies a quadword).
    pub const fn bytes(&self) -> u64 {
        let b = self.entries() as u64 * self.format.entry_bytes();
        if b < 8 {
            8
        } else {
            b
        }
    }

    /// The entry format.
    pub const fn format(&self) -> IrteFormat {
        self.format
    }

    /// The DTE interrupt fields for this table.
    pub const fn remap(&self) -> InterruptRemap {
        InterruptRemap {
            table: self.base,
            log2_entries: self.log2_entries,
        }
    }

    /// Write every entry disabled.
    pub fn clear<M: PhysAccess>(&self, mem: &mut M) {
        let mut off = 0;
        while off < self.bytes() {
            mem.write_u64(Hpa(self.base.0 + off), 0);
            off += 8;
        }
    }

    /// Write entry `index`. A 128-bit entry being enabled is written high quadword first, one
    /// being disabled low quadword (RemapEn) first, so the IOMMU never reads an enabled entry
    /// with a stale vector or backing page it did not have before. A 32-bit entry is written by
    /// read-modify-write of its quadword (the neighbouring entry is rewritten unchanged).
    pub fn set<M: PhysAccess>(
        &self,
        mem: &mut M,
        index: u16,
        entry: Irte,
    ) -> Result<(), IrteError> {
        let at = self.slot(index)?;
        match (self.format, entry) {
            (IrteFormat::Bits32, Irte::Bits32(e)) => {
                let q = Hpa(at & !7);
                let shift = (at & 4) * 8;
                let old = mem.read_u64(q);
                let new = (old & !(0xFFFF_FFFF << shift)) | (e.0 as u64) << shift;
                mem.write_u64(q, new);
            }
            (IrteFormat::Bits128, Irte::Bits128(e)) => {
                if e.remap_enabled() {
                    mem.write_u64(Hpa(at + 8), e.hi);
                    mem.write_u64(Hpa(at), e.lo);
                } else {
                    mem.write_u64(Hpa(at), e.lo);
                    mem.write_u64(Hpa(at + 8), e.hi);
                }
            }
            _ => return Err(IrteError::WrongFormat),
        }
        Ok(())
    }

    /// Read entry `index`.
    pub fn get<M: PhysAccess>(&self, mem: &M, index: u16) -> Result<Irte, IrteError> {
        let at = self.slot(index)?;
        Ok(match self.format {
            IrteFormat::Bits32 => {
                let q = mem.read_u64(Hpa(at & !7));
                Irte::Bits32(Irte32((q >> ((at & 4) * 8)) as u32))
            }
            IrteFormat::Bits128 => Irte::Bits128(Irte128 {
                lo: mem.read_u64(Hpa(at)),
                hi: mem.read_u64(Hpa(at + 8)),
            }),
        })
    }

    fn slot(&self, index: u16) -> Result<u64, IrteError> {
        if index >= self.entries() {
            return Err(IrteError::IndexOutOfRange(index));
        }
        Ok(self.base.0 + index as u64 * self.format.entry_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::FakeMem;

    #[test]
    fn irte32_by_hand() {
        // Vector 0x41 (23:16), dest 3 (15:8), fixed, physical, RemapEn: 0x0041_0301.
        assert_eq!(
            Irte32::remapped(0x41, 3, DestMode::Physical, IntType::Fixed).0,
            0x0041_0301
        );
        // Arbitrated (IntType 001b at 4:2 = 0x4), logical (DM bit 6 = 0x40): 0x00EC_FF45.
        let e = Irte32::remapped(0xEC, 0xFF, DestMode::Logical, IntType::Arbitrated);
        assert_eq!(e.0, 0x00EC_FF45);
        assert_eq!(e.vector(), 0xEC);
        assert_eq!(e.destination(), 0xFF);
        assert_eq!(e.int_type(), 1);
        assert_eq!(e.dest_mode(), DestMode::Logical);
        assert!(e.remap_enabled() && !e.suppress_faults());
        assert!(!Irte32::DISABLED.remap_enabled());
    }

    #[test]
    fn irte128_remapped_by_hand() {
        // x2APIC destination 0x1234_5678: low 24 bits 0x34_5678 at 31:8, high byte 0x12 at
        // 127:120 (hi bits 63:56); vector 0x30 at 71:64.
        let e = Irte128::remapped(0x30, 0x1234_5678, DestMode::Physical, IntType::Fixed);
        assert_eq!(e.lo, 0x3456_7801);
        assert_eq!(e.hi, 0x1200_0000_0000_0030);
        assert_eq!(e.destination(), 0x1234_5678);
        assert_eq!(e.vector(), 0x30);
        assert!(!e.guest_mode());
        assert_eq!(e.dest_mode(), DestMode::Physical);
        assert!(!e.request_eoi());
        let l = Irte128::remapped(0xFE, 0xFF, DestMode::Logical, IntType::Arbitrated);
        assert_eq!(l.lo, 0xFF45);
        assert_eq!(l.hi, 0xFE);
        assert_eq!(l.int_type(), 1);
    }

    #[test]
    fn irte128_guest_mode_by_hand() {
        let e = Irte128::guest(
            0x61,
            Hpa(0x1_2345_6000),
            0x0300_0007,
            true,
            0xCAFE_0001,
            true,
        )
        .unwrap();
        // lo: GATag 0xCAFE_0001 << 32, dest low 0x00_0007 << 8, GuestMode 0x80, IsRun 0x40,
        // GALogIntr 0x4, RemapEn 1.
        assert_eq!(e.lo, 0xCAFE_0001_0000_07C5);
        // hi: dest high 0x03 << 56, backing page, vector.
        assert_eq!(e.hi, 0x0300_0001_2345_6061);
        assert!(e.guest_mode() && e.is_running() && e.ga_log_intr());
        assert_eq!(e.ga_tag(), 0xCAFE_0001);
        assert_eq!(e.backing_page(), Hpa(0x1_2345_6000));
        assert_eq!(e.destination(), 0x0300_0007);
        let moved = e.with_running(false, 0x11);
        assert_eq!(moved.lo, 0xCAFE_0001_0000_1185);
        assert_eq!(moved.hi, 0x0000_0001_2345_6061);
        assert_eq!(Irte128::guest(1, Hpa(0x800), 0, false, 0, false), None);
    }

    #[test]
    fn irte_for_format() {
        assert_eq!(
            Irte::remapped(
                IrteFormat::Bits32,
                0x20,
                0x100,
                DestMode::Physical,
                IntType::Fixed
            ),
            None
        );
        let e = Irte::remapped(
            IrteFormat::Bits32,
            0x20,
            1,
            DestMode::Physical,
            IntType::Fixed,
        )
        .unwrap();
        assert_eq!(e, Irte::Bits32(Irte32(0x0020_0101)));
        assert_eq!(e.format(), IrteFormat::Bits32);
        assert!(!Irte::disabled(IrteFormat::Bits128).remap_enabled());
    }

    #[test]
    fn table_writes_entries_in_place() {
        let mut mem = FakeMem::new(0);
        mem.back(0x10_0000, 0x3000);
        let t = InterruptTable::new(Hpa(0x10_0080), 9, IrteFormat::Bits128).unwrap();
        assert_eq!(t.bytes(), 512 * 16);
        assert_eq!(t.entries(), 512);
        assert_eq!(
            t.remap(),
            InterruptRemap {
                table: Hpa(0x10_0080),
                log2_entries: 9
            }
        );
        t.clear(&mut mem);
        let e = Irte128::remapped(0x30, 5, DestMode::Physical, IntType::Fixed);
        mem.record = true;
        t.set(&mut mem, 3, Irte::Bits128(e)).unwrap();
        // Entry 3 at base + 48; enabling writes the high quadword first.
        assert_eq!(
            mem.writes,
            vec![(0x10_0080 + 56, e.hi), (0x10_0080 + 48, e.lo)]
        );
        assert_eq!(t.get(&mem, 3).unwrap(), Irte::Bits128(e));
        mem.writes.clear();
        t.set(&mut mem, 3, Irte::disabled(IrteFormat::Bits128))
            .unwrap();
        assert_eq!(mem.writes, vec![(0x10_0080 + 48, 0), (0x10_0080 + 56, 0)]);
        assert_eq!(
            t.set(&mut mem, 512, Irte::Bits128(e)),
            Err(IrteError::IndexOutOfRange(512))
        );
        assert_eq!(
            t.set(&mut mem, 1, Irte::Bits32(Irte32::DISABLED)),
            Err(IrteError::WrongFormat)
        );
    }

    #[test]
    fn table_32bit_entries_share_quadwords() {
        let mut mem = FakeMem::new(0);
        mem.back(0x20_0000, 0x1000);
        let t = InterruptTable::new(Hpa(0x20_0000), 2, IrteFormat::Bits32).unwrap();
        t.clear(&mut mem);
        let a = Irte32::remapped(0x41, 1, DestMode::Physical, IntType::Fixed);
        let b = Irte32::remapped(0x42, 2, DestMode::Physical, IntType::Fixed);
        t.set(&mut mem, 0, Irte::Bits32(a)).unwrap();
        t.set(&mut mem, 1, Irte::Bits32(b)).unwrap();
        assert_eq!(mem.peek(0x20_0000), Some(0x0042_0201_0041_0101));
        t.set(&mut mem, 0, Irte::Bits32(Irte32::DISABLED)).unwrap();
        assert_eq!(mem.peek(0x20_0000), Some(0x0042_0201_0000_0000));
        assert_eq!(t.get(&mem, 1).unwrap(), Irte::Bits32(b));
        assert_eq!(t.bytes(), 16);
        assert_eq!(
            InterruptTable::new(Hpa(0x20_0000), 0, IrteFormat::Bits32)
                .unwrap()
                .bytes(),
            8
        );
        assert_eq!(
            InterruptTable::new(Hpa(0x20_0040), 2, IrteFormat::Bits32),
            Err(IrteError::BadBase(Hpa(0x20_0040)))
        );
        assert_eq!(
            InterruptTable::new(Hpa(0x20_0000), 12, IrteFormat::Bits32),
            Err(IrteError::BadLength(12))
        );
    }
}
