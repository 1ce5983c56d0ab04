//! AMD-Vi I/O page tables for host translation (spec §2.2.3 "I/O Page Tables for Host
//! Translations") and a mapper that builds them.
//!
//! # Entry format
//! Page directory entries (PDEs) and page table entries (PTEs) are 64 bits:
//!
//! | bits | field |
//! |---|---|
//! | 0 | PR: present |
//! | 5, 6 | A, D: accessed/dirty (only written with HAD in the DTE; unused here) |
//! | 11:9 | Next Level: level of the table the PDE points to, or 0 / 7 for a PTE |
//! | 51:12 | address of the next table or of the page |
//! | 58:52 | reserved |
//! | 59 | U: untranslated access only (PTE; ATS) |
//! | 60 | FC: force coherent (PTE) |
//! | 61, 62 | IR, IW: read/write permission |
//!
//! The DTE's Mode says how many levels the table has (Mode 4: root at level 4, IOVAs below
//! 2^48). The IOMMU ANDs IR/IW of the DTE and of every PDE and PTE on the walk, so this mapper
//! sets IR|IW in every PDE and lets the leaf decide.
//!
//! # Page sizes
//! Next Level says what an entry at level L is:
//! - 1..=6 (less than L): a PDE pointing to a table of that level. L − 1 is the normal case; a
//!   smaller value skips levels (the skipped IOVA bits must then be zero).
//! - 0: a PTE mapping a page of the natural size of level L: 4 KiB at level 1, **2 MiB at
//!   level 2, 1 GiB at level 3**. This is how AMD-Vi expresses the x86-style large pages; there
//!   is no PS bit.
//! - 7: a PTE whose page size is encoded in the address field: the first zero bit at or above
//!   bit 12 is bit n, and the page is 2^(n+1) bytes (bit 12 zero = 8 KiB). Such a page must be
//!   replicated in every entry it spans. It serves sizes that are not a level's natural size.
//!
//! The mapper uses only the first two forms (4-level tables, 4 KiB/2 MiB/1 GiB leaves with
//! Next Level 0), like Linux's v1 page tables do for these sizes. [`IoPageTable::translate`]
//! walks any of the forms, as the hardware would.
//!
//! # Shared code
//! The table walk, allocation, page-size choice, split of large pages on unmap, freeing of
//! emptied tables and [`IoPageTable::destroy`] are the `pagetable` crate's [`RadixTable`]
//! (shared with the nested page tables); this module supplies the entry format,
//! [`IoPteFormat`], and the hardware walk [`walk`]. Entries the mapper would not have written
//! (level skips, Next Level 7) are reported as [`MapError::Foreign`], never edited.
//!
//! After `unmap` or remapping a range, the caller must invalidate the domain's cached
//! translations (INVALIDATE_IOMMU_PAGES + COMPLETION_WAIT) before reusing the memory.

use bitflags::bitflags;
use pagetable::radix::{self, entry_span, Entry, EntryFormat, RadixTable};

use crate::mem::{field, place, FrameSource, Hpa, Iova, PhysAccess, MAX_HPA};
use crate::regs::ADDR_MASK;

pub use pagetable::radix::{table_index, PageSize, ENTRIES};

/// Levels of the tables this mapper builds: the DTE Mode to program.
pub const LEVELS: u8 = 4;
/// IOVAs at or above this cannot be mapped by 4-level tables.
pub const MAX_IOVA: u64 = 1 << 48;

const _: () = assert!(RadixTable::<IoPteFormat, ()>::MAX_ADDR == MAX_IOVA);

bitflags! {
    /// DMA access permissions of a mapping (the IR and IW bits).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct IoPerm: u8 {
        /// IR: device reads allowed.
        const READ = 1 << 0;
        /// IW: device writes allowed.
        const WRITE = 1 << 1;
    }
}

const PR: u64 = 1 << 0;
const NEXT_LEVEL_SHIFT: u32 = 9;
const U: u64 = 1 << 59;
const FC: u64 = 1 << 60;
const IR: u64 = 1 << 61;
const IW: u64 = 1 << 62;

/// One I/O page table entry (PDE or PTE), spec §2.2.3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct IoPte(pub u64);

const _: () = assert!(core::mem::size_of::<IoPte>() == 8);

impl IoPte {
    /// A non-present entry.
    pub const EMPTY: Self = Self(0);

    /// A PDE pointing to the table at `next` whose level is `next_level` (1..=6), with IR|IW.
    pub const fn table(next: Hpa, next_level: u8) -> Self {
        Self(PR | place(next_level as u64, NEXT_LEVEL_SHIFT, 3) | (next.0 & ADDR_MASK) | IR | IW)
    }

    /// A PTE (Next Level 0) for the page at `pa` with `perm`, FC set (the IOMMU marks the
    /// device's accesses coherent, so a No-Snoop request cannot bypass the CPU caches).
    pub const fn leaf(pa: Hpa, perm: IoPerm) -> Self {
        Self(PR | FC | (pa.0 & ADDR_MASK) | perm_bits(perm))
    }

    /// PR.
    pub const fn present(self) -> bool {
        self.0 & PR != 0
    }

    /// Next Level (11:9).
    pub const fn next_level(self) -> u8 {
        field(self.0, NEXT_LEVEL_SHIFT, 3) as u8
    }

    /// Address (51:12).
    pub const fn addr(self) -> Hpa {
        Hpa(self.0 & ADDR_MASK)
    }

    /// IR and IW.
    pub const fn perm(self) -> IoPerm {
        let mut p = IoPerm::empty();
        if self.0 & IR != 0 {
            p = p.union(IoPerm::READ);
        }
        if self.0 & IW != 0 {
            p = p.union(IoPerm::WRITE);
        }
        p
    }

    /// FC.
    pub const fn force_coherent(self) -> bool {
        self.0 & FC != 0
    }

    /// U.
    pub const fn untranslated_only(self) -> bool {
        self.0 & U != 0
    }
}

const fn perm_bits(perm: IoPerm) -> u64 {
    (if perm.contains(IoPerm::READ) { IR } else { 0 })
        | (if perm.contains(IoPerm::WRITE) { IW } else { 0 })
}

/// Why a mapping operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or the length is not a multiple of 4 KiB.
    Unaligned,
    /// The range does not fit in 48-bit IOVAs / 52-bit physical addresses, or wraps.
    OutOfRange,
    /// A mapping without read or write permission.
    NoAccess,
    /// The frame source is exhausted; the tables stay consistent, part of the range may be
    /// mapped (or unmapped).
    OutOfFrames,
    /// Part of the range is already mapped, starting at this IOVA. Nothing was changed.
    AlreadyMapped(Iova),
    /// An entry this mapper would not have written (level skip, Next Level 7) was found here.
    Foreign(Iova),
}

/// The result of [`IoPageTable::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoTranslation {
    /// The physical address the IOVA maps to, with the offset within the page.
    pub pa: Hpa,
    /// Bytes covered by the leaf that maps it.
    pub page_size: u64,
    /// Effective permission: the AND of every PDE's and the PTE's IR/IW.
    pub perm: IoPerm,
}

/// Builder and editor of one protection domain's 4-level I/O page table.
pub struct IoPageTable<M> {
    table: RadixTable<IoPteFormat, M>,
}

/// The AMD-Vi PDE/PTE format (§2.2.3) as the `pagetable` engine writes and reads it: PDEs with
/// Next Level = level − 1 and IR|IW, PTEs with Next Level 0 (4 KiB / 2 MiB / 1 GiB at levels
/// 1 / 2 / 3) and FC; a leaf's attributes are its IR/IW.
pub struct IoPteFormat;

impl EntryFormat for IoPteFormat {
    type Attr = IoPerm;
    const LEVELS: u8 = LEVELS;
    const MAX_LEAF_LEVEL: u8 = PageSize::Size1G.level();
    const MAX_PA: u64 = MAX_HPA;

    fn table(next: Hpa, next_level: u8) -> u64 {
        IoPte::table(next, next_level).0
    }

    fn leaf(page: Hpa, _level: u8, perm: IoPerm) -> u64 {
        IoPte::leaf(page, perm).0
    }

    /// Next Level 0 is a leaf, 1..=6 a table of that level (the engine treats a level skip as
    /// foreign but frees through it in `destroy`), 7 (size in the address) foreign.
    fn decode(raw: u64, _level: u8) -> Entry<IoPerm> {
        let e = IoPte(raw);
        if !e.present() {
            return Entry::Absent;
        }
        match e.next_level() {
            0 => Entry::Leaf {
                page: e.addr(),
                attr: e.perm(),
            },
            7 => Entry::Other,
            n => Entry::Table {
                table: e.addr(),
                level: n,
            },
        }
    }
}

impl From<radix::Error> for MapError {
    fn from(e: radix::Error) -> Self {
        match e {
            radix::Error::Unaligned => Self::Unaligned,
            radix::Error::OutOfRange => Self::OutOfRange,
            radix::Error::OutOfFrames => Self::OutOfFrames,
            radix::Error::AlreadyMapped(iova) => Self::AlreadyMapped(Iova(iova)),
            radix::Error::Foreign(iova) => Self::Foreign(Iova(iova)),
        }
    }
}

impl<M: PhysAccess + FrameSource> IoPageTable<M> {
    /// An empty level-4 table allocated from `mem`. Largest page size: 1 GiB.
    pub fn new(mem: M) -> Result<Self, MapError> {
        Ok(Self {
            table: RadixTable::new(mem)?,
        })
    }

    /// Physical address of the level-4 table: the DTE's Host Page Table Root Pointer.
    pub fn root(&self) -> Hpa {
        self.table.root()
    }

    /// The DTE Mode for this table (number of levels).
    pub const fn levels(&self) -> u8 {
        LEVELS
    }

    /// Limit the page sizes later `map` calls use.
    pub fn set_max_page_size(&mut self, max: PageSize) {
        self.table.set_max_leaf_level(max.level());
    }

    /// The memory/allocator the mapper works through.
    pub fn mem(&self) -> &M {
        self.table.mem()
    }

    /// Mutable access to the memory/allocator.
    pub fn mem_mut(&mut self) -> &mut M {
        self.table.mem_mut()
    }

    /// Map `len` bytes at `iova` to `pa` with `perm` (not empty). `iova`, `pa` and `len` must
    /// be 4 KiB multiples. The largest page the alignment of both addresses and the remaining
    /// length allow is used. Fails without changes if any part of the range is mapped.
    pub fn map(&mut self, iova: Iova, pa: Hpa, len: u64, perm: IoPerm) -> Result<(), MapError> {
        self.table.check_map(iova.0, pa, len)?;
        if perm.is_empty() {
            return Err(MapError::NoAccess);
        }
        self.table.map(iova.0, pa, len, perm)?;
        Ok(())
    }

    /// Unmap `len` bytes at `iova` (4 KiB multiples); holes are fine. Large pages straddling
    /// the range ends are split (which may need frames); emptied tables are freed.
    pub fn unmap(&mut self, iova: Iova, len: u64) -> Result<(), MapError> {
        Ok(self.table.unmap(iova.0, len)?)
    }

    /// Translate `iova` the way the IOMMU walks the table (level skipping and Next Level 7
    /// included), or `None` if it faults for lack of a present mapping.
    pub fn translate(&self, iova: Iova) -> Option<IoTranslation> {
        walk(self.table.mem(), self.table.root(), LEVELS, iova)
    }

    /// Free every table frame (the root included) and give the memory back. The DTEs that used
    /// the table must have been changed and invalidated first.
    pub fn destroy(self) -> M {
        self.table.destroy()
    }
}

/// Walk a host page table of `levels` levels at `root` for `iova`, following the hardware
/// rules of §2.2.3: permissions are ANDed along the walk, Next Level 0 ends the walk with a
/// page of the current level's size, Next Level 7 with a size encoded in the address, other
/// values name the level of the next table (skipped levels need zero IOVA bits).
pub fn walk<M: PhysAccess>(mem: &M, root: Hpa, levels: u8, iova: Iova) -> Option<IoTranslation> {
    if levels == 0 || levels > 6 {
        return None;
    }
    let top_bits = 12 + 9 * levels as u32;
    if top_bits < 64 && iova.0 >> top_bits != 0 {
        return None;
    }
    let mut table = root;
    let mut level = levels;
    let mut perm = IoPerm::READ | IoPerm::WRITE;
    loop {
        let e = IoPte(mem.read_u64(Hpa(table.0 + table_index(iova.0, level) as u64 * 8)));
        if !e.present() {
            return None;
        }
        perm &= e.perm();
        match e.next_level() {
            0 => {
                let size = entry_span(level);
                let pa = (e.addr().0 & !(size - 1)) | (iova.0 & (size - 1));
                return Some(IoTranslation {
                    pa: Hpa(pa),
                    page_size: size,
                    perm,
                });
            }
            7 => {
                // First zero bit of the address field at or above bit 12.
                let ones = (e.addr().0 >> 12).trailing_ones();
                let size_log2 = 12 + ones + 1;
                if size_log2 > 12 + 9 * level as u32 {
                    return None; // larger than what this level's entry covers
                }
                let size = 1u64 << size_log2;
                let pa = (e.addr().0 & !(size - 1)) | (iova.0 & (size - 1));
                return Some(IoTranslation {
                    pa: Hpa(pa),
                    page_size: size,
                    perm,
                });
            }
            next if next < level => {
                // Skipped levels: their index bits of the IOVA must be zero.
                for skipped in (next + 1)..level {
                    if table_index(iova.0, skipped) != 0 {
                        return None;
                    }
                }
                table = e.addr();
                level = next;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::FakeMem;

    const RW: IoPerm = IoPerm::READ.union(IoPerm::WRITE);
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn table() -> IoPageTable<FakeMem> {
        IoPageTable::new(FakeMem::new(0x7000_0000)).unwrap()
    }

    fn size_at(t: &IoPageTable<FakeMem>, iova: u64) -> Option<u64> {
        t.translate(Iova(iova)).map(|x| x.page_size)
    }

    #[test]
    fn entry_encodings_by_hand() {
        // PDE to a level-3 table at 0x1234_5000: PR | NextLevel 3 << 9 (0x600) | IR | IW.
        assert_eq!(IoPte::table(Hpa(0x1234_5000), 3).0, 0x6000_0000_1234_5601);
        // Leaf: PR | FC (60) | IR; Next Level 0.
        assert_eq!(
            IoPte::leaf(Hpa(0xA_BCDE_F000), IoPerm::READ).0,
            0x3000_000A_BCDE_F001
        );
        // Leaf with write only: PR | FC | IW.
        assert_eq!(
            IoPte::leaf(Hpa(0x2000), IoPerm::WRITE).0,
            0x5000_0000_0000_2001
        );
        let e = IoPte(0x7800_0000_0020_0E01);
        assert!(e.present() && e.force_coherent() && e.untranslated_only());
        assert_eq!(e.next_level(), 7);
        assert_eq!(e.addr(), Hpa(0x20_0000));
        assert_eq!(e.perm(), RW);
    }

    #[test]
    fn new_table_is_zeroed() {
        let t = table();
        assert_eq!(t.root(), Hpa(0x7000_0000));
        assert_eq!(t.mem().live_frames(), 1);
        assert_eq!(t.translate(Iova(0)), None);
        assert_eq!(t.levels(), 4);
    }

    #[test]
    fn single_page_and_unmapped_neighbours() {
        let mut t = table();
        t.map(Iova(0x5000), Hpa(0x12_3000), 0x1000, IoPerm::READ)
            .unwrap();
        let x = t.translate(Iova(0x5ABC)).unwrap();
        assert_eq!(x.pa, Hpa(0x12_3ABC));
        assert_eq!(x.page_size, 0x1000);
        assert_eq!(x.perm, IoPerm::READ);
        assert_eq!(t.translate(Iova(0x4FFF)), None);
        assert_eq!(t.translate(Iova(0x6000)), None);
        assert_eq!(t.mem().live_frames(), 4); // L4, L3, L2, L1
                                              // The PDEs are IR|IW with Next Level = level - 1.
        let l4e = IoPte(t.mem().peek(0x7000_0000).unwrap());
        assert_eq!(l4e.next_level(), 3);
        assert_eq!(l4e.perm(), RW);
    }

    #[test]
    fn every_mapped_page_translates_and_neighbours_fault() {
        let mut t = table();
        // A guest of 6 MiB + 12 KiB at IOVA 0 backed at 0x1_0000_0000 (2 MiB aligned).
        let len = 6 * MIB + 0x3000;
        t.map(Iova(0), Hpa(0x1_0000_0000), len, RW).unwrap();
        for page in (0..len).step_by(4096) {
            let x = t.translate(Iova(page + 0x18)).unwrap();
            assert_eq!(x.pa, Hpa(0x1_0000_0000 + page + 0x18), "iova {page:#x}");
            assert_eq!(x.perm, RW);
        }
        assert_eq!(t.translate(Iova(len)), None);
        assert_eq!(t.translate(Iova(1 << 47)), None);
        assert_eq!(size_at(&t, 0), Some(2 * MIB));
        assert_eq!(size_at(&t, 6 * MIB), Some(4096));
    }

    #[test]
    fn aligned_gigabyte_uses_one_1g_leaf_at_level_3() {
        let mut t = table();
        t.map(Iova(GIB), Hpa(4 * GIB), GIB, RW).unwrap();
        let x = t.translate(Iova(GIB + 0x1234_5678)).unwrap();
        assert_eq!(x.page_size, GIB);
        assert_eq!(x.pa, Hpa(4 * GIB + 0x1234_5678));
        assert_eq!(t.translate(Iova(GIB - 1)), None);
        assert_eq!(t.translate(Iova(2 * GIB)), None);
        assert_eq!(t.mem().live_frames(), 2); // L4 + L3
                                              // The level-3 entry is a PTE: Next Level 0, FC, IR|IW.
        let l4e = IoPte(t.mem().peek(0x7000_0000).unwrap());
        let l3e = IoPte(t.mem().peek(l4e.addr().0 + 8).unwrap());
        assert_eq!(l3e.0, 0x7000_0001_0000_0001);
    }

    #[test]
    fn page_size_choice_follows_alignment_and_limit() {
        let mut t = table();
        // [0x1F_F000, 0x60_1000): 4K, 2M, 2M, 4K.
        t.map(Iova(0x1F_F000), Hpa(0x1_001F_F000), 0x40_2000, RW)
            .unwrap();
        assert_eq!(size_at(&t, 0x1F_F000), Some(4096));
        assert_eq!(size_at(&t, 0x20_0000), Some(2 * MIB));
        assert_eq!(size_at(&t, 0x5F_FFFF), Some(2 * MIB));
        assert_eq!(size_at(&t, 0x60_0000), Some(4096));
        assert_eq!(size_at(&t, 0x1F_E000), None);
        assert_eq!(size_at(&t, 0x60_1000), None);
        // Physical address misaligned to 2 MiB: 4K pages only.
        let mut u = table();
        u.map(Iova(2 * MIB), Hpa(0x30_1000), 2 * MIB, RW).unwrap();
        assert_eq!(size_at(&u, 2 * MIB), Some(4096));
        assert_eq!(size_at(&u, 4 * MIB - 4096), Some(4096));
        // Limit to 2 MiB.
        let mut v = table();
        v.set_max_page_size(PageSize::Size2M);
        v.map(Iova(0), Hpa(GIB), GIB, RW).unwrap();
        assert_eq!(size_at(&v, 0), Some(2 * MIB));
        assert_eq!(v.translate(Iova(GIB - 1)).unwrap().pa, Hpa(2 * GIB - 1));
    }

    #[test]
    fn rejects_bad_requests() {
        let mut t = table();
        assert_eq!(
            t.map(Iova(0x800), Hpa(0), 0x1000, RW),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            t.map(Iova(0), Hpa(0x800), 0x1000, RW),
            Err(MapError::Unaligned)
        );
        assert_eq!(t.map(Iova(0), Hpa(0), 0x1800, RW), Err(MapError::Unaligned));
        assert_eq!(
            t.map(Iova(MAX_IOVA - 0x1000), Hpa(0), 0x2000, RW),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            t.map(Iova(0), Hpa(MAX_HPA - 0x1000), 0x2000, RW),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            t.map(Iova(0), Hpa(0), 0x1000, IoPerm::empty()),
            Err(MapError::NoAccess)
        );
        t.map(Iova(0x3000), Hpa(0x3000), 0x1000, RW).unwrap();
        let frames = t.mem().live_frames();
        assert_eq!(
            t.map(Iova(0), Hpa(0x10_0000), 0x10_000, RW),
            Err(MapError::AlreadyMapped(Iova(0x3000)))
        );
        // Nothing changed.
        assert_eq!(t.translate(Iova(0)), None);
        assert_eq!(t.mem().live_frames(), frames);
    }

    #[test]
    fn out_of_frames_is_an_error() {
        let mut mem = FakeMem::new(0x7000_0000);
        mem.limit = Some(2);
        let mut t = IoPageTable::new(mem).unwrap();
        assert_eq!(
            t.map(Iova(0), Hpa(0), 0x1000, RW),
            Err(MapError::OutOfFrames)
        );
    }

    #[test]
    fn unmap_splits_large_pages_and_frees_tables() {
        let mut t = table();
        t.map(Iova(0), Hpa(0x4000_0000), 4 * MIB, RW).unwrap();
        assert_eq!(t.mem().live_frames(), 3); // L4, L3, L2 with two 2M leaves
                                              // Punch a 4 KiB hole into the first 2 MiB page.
        t.unmap(Iova(0x10_0000), 0x1000).unwrap();
        assert_eq!(t.translate(Iova(0x10_0000)), None);
        assert_eq!(t.translate(Iova(0xF_F000)).unwrap().pa, Hpa(0x400F_F000));
        assert_eq!(t.translate(Iova(0x10_1000)).unwrap().page_size, 4096);
        assert_eq!(t.translate(Iova(0x20_0000)).unwrap().page_size, 2 * MIB);
        assert_eq!(t.mem().live_frames(), 4);
        // Unmap everything: every table but the root is freed.
        t.unmap(Iova(0), 4 * MIB).unwrap();
        assert_eq!(t.translate(Iova(0x20_0000)), None);
        assert_eq!(t.mem().live_frames(), 1);
        let mem = t.destroy();
        assert_eq!(mem.live_frames(), 0);
    }

    #[test]
    fn destroy_frees_all_tables() {
        let mut t = table();
        t.map(Iova(0), Hpa(0), 0x1000, RW).unwrap();
        t.map(Iova(GIB * 512), Hpa(0x1000), 0x1000, RW).unwrap();
        assert_eq!(t.mem().live_frames(), 7);
        assert_eq!(t.destroy().live_frames(), 0);
    }

    #[test]
    fn walker_follows_hardware_forms() {
        // Hand-built tables: L4 at 0x1000 with a level-skipping PDE straight to a level-2 table
        // at 0x2000 (IOVA bits 38:30 must then be 0); in it a Next-Level-7 PTE encoding a
        // 8 KiB page (address bit 12 = 0) and a 2 MiB PTE with Next Level 0.
        let mut mem = FakeMem::new(0);
        mem.back(0x1000, 0x3000);
        mem.poke(0x1000, IoPte::table(Hpa(0x2000), 2).0);
        // Level-2 entry 0: PDE to level-1 table at 0x3000 whose entry 2 is Next Level 7.
        mem.poke(0x2000, IoPte::table(Hpa(0x3000), 1).0);
        mem.poke(0x3000 + 2 * 8, 0x3000_0000_0050_0E01); // addr 0x50_0000, NL 7, FC|IR
        mem.poke(0x3000 + 3 * 8, 0x3000_0000_0050_0E01);
        // Level-2 entry 1: 2 MiB page at 0x8000_0000, write only.
        mem.poke(0x2008, IoPte::leaf(Hpa(0x8000_0000), IoPerm::WRITE).0);
        let x = walk(&mem, Hpa(0x1000), 4, Iova(0x3ABC)).unwrap();
        assert_eq!(x.page_size, 0x2000);
        assert_eq!(x.pa, Hpa(0x50_1ABC));
        assert_eq!(x.perm, IoPerm::READ);
        let y = walk(&mem, Hpa(0x1000), 4, Iova(0x20_0010)).unwrap();
        assert_eq!(
            (y.pa, y.page_size, y.perm),
            (Hpa(0x8000_0010), 2 * MIB, IoPerm::WRITE)
        );
        // Skipped level-3 index bits not zero: fault.
        assert_eq!(walk(&mem, Hpa(0x1000), 4, Iova(GIB)), None);
        // Beyond a 4-level table.
        assert_eq!(walk(&mem, Hpa(0x1000), 4, Iova(1 << 48)), None);
        assert_eq!(walk(&mem, Hpa(0x1000), 7, Iova(0)), None);
    }
}
