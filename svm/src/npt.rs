//! Nested page tables (APM vol. 2 §15.25): a mapper that builds and edits the 4-level
//! long-mode table that translates guest-physical to host-physical addresses.
//!
//! The mapper is generic over memory access ([`PhysAccess`]) and table-frame allocation
//! ([`FrameSource`]), so host tests run the real code against fake physical memory. It chooses
//! the largest page (1 GiB, 2 MiB, 4 KiB) that the alignment of both addresses and the remaining
//! length allow, up to a configurable maximum (1 GiB NPT pages need CPUID 8000_0001
//! EDX\[26\] Page1GB).
//!
//! Invariants kept by the mapper: every present non-leaf entry points to a table with at least
//! one present entry (emptied tables are freed on unmap), intermediate entries are
//! `P | RW | U` so the leaf alone decides permissions, and every leaf has `U` set (nested
//! accesses are user accesses, §15.25.5).
//!
//! After `unmap` or a permission change the caller must flush the guest's TLB entries
//! (`TLB_CONTROL` or a new ASID, §15.16) before the guest runs again.

use crate::addr::{Gpa, Hpa};
use crate::paging::{
    table_index, FrameSource, PageSize, PageTableEntry, PhysAccess, PteFlags, ENTRIES,
};

/// Guest-physical addresses at or above this cannot be mapped by 4-level tables.
pub const MAX_GPA: u64 = 1 << 48;
/// Host-physical addresses at or above this do not fit an entry (bits 51:12).
pub const MAX_HPA: u64 = 1 << 52;

/// Leaf flags a caller may choose; `PRESENT`, `USER` and `HUGE` are set by the mapper.
pub const LEAF_FLAGS: PteFlags = PteFlags::WRITABLE
    .union(PteFlags::PWT)
    .union(PteFlags::PCD)
    .union(PteFlags::ACCESSED)
    .union(PteFlags::DIRTY)
    .union(PteFlags::NO_EXECUTE);

const TABLE_FLAGS: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::USER);

/// Why a mapping operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or the length is not a multiple of 4 KiB.
    Unaligned,
    /// The range does not fit in 48-bit GPAs / 52-bit HPAs, or wraps.
    OutOfRange,
    /// The frame source is exhausted. Part of the range may already be mapped (or, for unmap,
    /// unmapped); the tables stay consistent.
    OutOfFrames,
    /// Part of the range is already mapped, starting at this GPA. Nothing was changed.
    AlreadyMapped(Gpa),
}

/// The result of [`NptMapper::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The host-physical address the GPA maps to (including the offset within the page).
    pub hpa: Hpa,
    /// The size of the page that maps it.
    pub size: PageSize,
    /// The leaf entry's flags.
    pub flags: PteFlags,
}

/// Builder and editor of one guest's nested page table.
pub struct NptMapper<M> {
    mem: M,
    root: Hpa,
    max_page: PageSize,
}

/// Bytes covered by one entry of a table at `level` (1 = PT … 4 = PML4).
const fn entry_span(level: u8) -> u64 {
    1 << (12 + 9 * (level as u32 - 1))
}

impl<M: FrameSource + PhysAccess> NptMapper<M> {
    /// A mapper with an empty PML4 allocated from `mem`. Largest page size: 1 GiB.
    pub fn new(mut mem: M) -> Result<Self, MapError> {
        let root = alloc_table(&mut mem)?;
        Ok(Self {
            mem,
            root,
            max_page: PageSize::Size1G,
        })
    }

    /// Host-physical address of the PML4: the value for the VMCB `n_cr3` field.
    pub fn root(&self) -> Hpa {
        self.root
    }

    /// Limit the page sizes used by later `map` calls (e.g. to 2 MiB without Page1GB).
    pub fn set_max_page_size(&mut self, max: PageSize) {
        self.max_page = max;
    }

    /// The memory/allocator the mapper works through.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Mutable access to the memory/allocator.
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// Give the memory/allocator back.
    pub fn into_inner(self) -> M {
        self.mem
    }

    /// Map `len` bytes at `gpa` to `hpa` with the leaf flags `flags` (masked to
    /// [`LEAF_FLAGS`]; `PRESENT` and `USER` are added). All of `gpa`, `hpa`, `len` must be
    /// 4 KiB multiples. Fails without changes if any part of the range is already mapped.
    pub fn map(&mut self, gpa: Gpa, hpa: Hpa, len: u64, flags: PteFlags) -> Result<(), MapError> {
        check_range(gpa, len)?;
        if !hpa.is_aligned(4096) {
            return Err(MapError::Unaligned);
        }
        match hpa.0.checked_add(len) {
            Some(end) if end <= MAX_HPA => {}
            _ => return Err(MapError::OutOfRange),
        }
        if let Some(conflict) = self.first_mapped(gpa.0, gpa.0 + len) {
            return Err(MapError::AlreadyMapped(Gpa(conflict)));
        }
        let leaf = flags.intersection(LEAF_FLAGS) | PteFlags::PRESENT | PteFlags::USER;
        let mut off = 0;
        while off < len {
            let (g, h) = (gpa.0 + off, hpa.0 + off);
            let size = self.choose_size(g, h, len - off);
            self.map_one(g, h, size, leaf)?;
            off += size.bytes();
        }
        Ok(())
    }

    /// Unmap `len` bytes at `gpa` (4 KiB multiples). Unmapped holes inside the range are fine.
    /// Large pages that straddle the range boundary are split, which may need frames; tables
    /// that become empty are freed.
    pub fn unmap(&mut self, gpa: Gpa, len: u64) -> Result<(), MapError> {
        check_range(gpa, len)?;
        if len == 0 {
            return Ok(());
        }
        let root = self.root;
        self.unmap_in(root, 4, 0, gpa.0, gpa.0 + len)?;
        Ok(())
    }

    /// Translate `gpa` through the table, or `None` if it is not mapped.
    pub fn translate(&self, gpa: Gpa) -> Option<Translation> {
        if gpa.0 >= MAX_GPA {
            return None;
        }
        let mut table = self.root;
        let mut level = 4;
        loop {
            let e = self.entry(table, table_index(gpa.0, level));
            if !e.is_present() {
                return None;
            }
            if level == 1 || (level <= 3 && e.is_huge()) {
                let size = PageSize::from_level(level)?;
                let base = e.addr() & !(size.bytes() - 1);
                return Some(Translation {
                    hpa: Hpa(base | (gpa.0 & (size.bytes() - 1))),
                    size,
                    flags: e.flags(),
                });
            }
            if level == 4 && e.is_huge() {
                return None; // PS is reserved in a PML4E.
            }
            table = Hpa(e.addr());
            level -= 1;
        }
    }

    fn choose_size(&self, gpa: u64, hpa: u64, remaining: u64) -> PageSize {
        for size in [PageSize::Size1G, PageSize::Size2M] {
            let b = size.bytes();
            if size <= self.max_page
                && gpa.is_multiple_of(b)
                && hpa.is_multiple_of(b)
                && remaining >= b
            {
                return size;
            }
        }
        PageSize::Size4K
    }

    fn entry(&self, table: Hpa, index: usize) -> PageTableEntry {
        PageTableEntry(self.mem.read_u64(Hpa(table.0 + index as u64 * 8)))
    }

    fn set_entry(&mut self, table: Hpa, index: usize, e: PageTableEntry) {
        self.mem.write_u64(Hpa(table.0 + index as u64 * 8), e.0);
    }

    /// The first GPA in `[start, end)` that is mapped, skipping unmapped subtrees whole.
    fn first_mapped(&self, start: u64, end: u64) -> Option<u64> {
        let mut addr = start;
        while addr < end {
            let mut table = self.root;
            let mut level = 4;
            loop {
                let e = self.entry(table, table_index(addr, level));
                if !e.is_present() {
                    let span = entry_span(level);
                    addr = (addr & !(span - 1)) + span;
                    break;
                }
                if level == 1 || e.is_huge() {
                    return Some(addr);
                }
                table = Hpa(e.addr());
                level -= 1;
            }
        }
        None
    }

    fn map_one(
        &mut self,
        gpa: u64,
        hpa: u64,
        size: PageSize,
        leaf: PteFlags,
    ) -> Result<(), MapError> {
        let mut table = self.root;
        let mut level = 4;
        while level > size.level() {
            let idx = table_index(gpa, level);
            let e = self.entry(table, idx);
            if !e.is_present() {
                let next = alloc_table(&mut self.mem)?;
                self.set_entry(table, idx, PageTableEntry::new(next.0, TABLE_FLAGS));
                table = next;
            } else if e.is_huge() {
                return Err(MapError::AlreadyMapped(Gpa(gpa)));
            } else {
                table = Hpa(e.addr());
            }
            level -= 1;
        }
        let idx = table_index(gpa, level);
        if self.entry(table, idx).is_present() {
            return Err(MapError::AlreadyMapped(Gpa(gpa)));
        }
        let flags = if size == PageSize::Size4K {
            leaf
        } else {
            leaf | PteFlags::HUGE
        };
        self.set_entry(table, idx, PageTableEntry::new(hpa, flags));
        Ok(())
    }

    /// Unmap `[start, end)` within the table at `level` covering GPAs from `base`. Returns
    /// whether the table is empty afterwards.
    fn unmap_in(
        &mut self,
        table: Hpa,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
    ) -> Result<bool, MapError> {
        let span = entry_span(level);
        let first = ((start.max(base) - base) / span) as usize;
        let last = ((end.min(base + span * ENTRIES as u64) - 1 - base) / span) as usize;
        for idx in first..=last {
            let e = self.entry(table, idx);
            if !e.is_present() {
                continue;
            }
            let e_start = base + idx as u64 * span;
            let e_end = e_start + span;
            let whole = start <= e_start && end >= e_end;
            let is_leaf = level == 1 || e.is_huge();
            if is_leaf && whole {
                self.set_entry(table, idx, PageTableEntry::EMPTY);
                continue;
            }
            let child = if is_leaf {
                // A large page partly inside the range: split it into the next size down.
                let child = alloc_table(&mut self.mem)?;
                let child_span = entry_span(level - 1);
                let mut flags = e.flags();
                if level - 1 == 1 {
                    flags.remove(PteFlags::HUGE);
                }
                let page_base = e.addr() & !(span - 1);
                for i in 0..ENTRIES {
                    let pa = page_base + i as u64 * child_span;
                    self.set_entry(child, i, PageTableEntry::new(pa, flags));
                }
                self.set_entry(table, idx, PageTableEntry::new(child.0, TABLE_FLAGS));
                child
            } else {
                Hpa(e.addr())
            };
            if self.unmap_in(child, level - 1, e_start, start, end)? {
                self.set_entry(table, idx, PageTableEntry::EMPTY);
                self.mem.free_frame(child);
            }
        }
        Ok((0..ENTRIES).all(|i| !self.entry(table, i).is_present()))
    }
}

fn check_range(gpa: Gpa, len: u64) -> Result<(), MapError> {
    if !gpa.is_aligned(4096) || !len.is_multiple_of(4096) {
        return Err(MapError::Unaligned);
    }
    match gpa.0.checked_add(len) {
        Some(end) if end <= MAX_GPA => Ok(()),
        _ => Err(MapError::OutOfRange),
    }
}

fn alloc_table<M: FrameSource + PhysAccess>(mem: &mut M) -> Result<Hpa, MapError> {
    let frame = mem.alloc_frame().ok_or(MapError::OutOfFrames)?;
    for i in 0..ENTRIES {
        mem.write_u64(Hpa(frame.0 + i as u64 * 8), 0);
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::FakeMem;

    const RW: PteFlags = PteFlags::WRITABLE;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn mapper() -> NptMapper<FakeMem> {
        NptMapper::new(FakeMem::new(0x7000_0000)).unwrap()
    }

    fn size_at(m: &NptMapper<FakeMem>, gpa: u64) -> Option<PageSize> {
        m.translate(Gpa(gpa)).map(|t| t.size)
    }

    #[test]
    fn new_allocates_zeroed_root() {
        let m = mapper();
        assert_eq!(m.root(), Hpa(0x7000_0000));
        assert_eq!(m.mem().live_frames(), 1);
        assert_eq!(m.translate(Gpa(0)), None);
    }

    #[test]
    fn single_4k_page_and_unmapped_neighbours() {
        let mut m = mapper();
        m.map(Gpa(0x5000), Hpa(0x12_3000), 0x1000, RW).unwrap();
        let t = m.translate(Gpa(0x5ABC)).unwrap();
        assert_eq!(t.hpa, Hpa(0x12_3ABC));
        assert_eq!(t.size, PageSize::Size4K);
        assert!(t
            .flags
            .contains(PteFlags::PRESENT | PteFlags::USER | PteFlags::WRITABLE));
        assert!(!t.flags.contains(PteFlags::HUGE));
        assert_eq!(m.translate(Gpa(0x4FFF)), None);
        assert_eq!(m.translate(Gpa(0x6000)), None);
        // PML4 + PDPT + PD + PT.
        assert_eq!(m.mem().live_frames(), 4);
    }

    #[test]
    fn aligned_gigabyte_uses_one_1g_page() {
        let mut m = mapper();
        m.map(Gpa(GIB), Hpa(4 * GIB), GIB, RW).unwrap();
        let t = m.translate(Gpa(GIB + 0x1234_5678)).unwrap();
        assert_eq!(t.size, PageSize::Size1G);
        assert_eq!(t.hpa, Hpa(4 * GIB + 0x1234_5678));
        assert!(t.flags.contains(PteFlags::HUGE));
        assert_eq!(m.translate(Gpa(GIB - 1)), None);
        assert_eq!(m.translate(Gpa(2 * GIB)), None);
        assert_eq!(m.mem().live_frames(), 2); // PML4 + PDPT
    }

    #[test]
    fn max_page_size_limits_choice() {
        let mut m = mapper();
        m.set_max_page_size(PageSize::Size2M);
        m.map(Gpa(0), Hpa(GIB), GIB, RW).unwrap();
        assert_eq!(size_at(&m, 0), Some(PageSize::Size2M));
        assert_eq!(size_at(&m, GIB - 1), Some(PageSize::Size2M));
        assert_eq!(m.translate(Gpa(GIB - 1)).unwrap().hpa, Hpa(2 * GIB - 1));
    }

    #[test]
    fn range_straddling_2m_boundaries_mixes_sizes() {
        let mut m = mapper();
        // [0x1F_F000, 0x60_1000): 4K, 2M, 2M, 4K.
        let (gpa, hpa, len) = (0x1F_F000, 0x1_001F_F000, 0x40_2000);
        m.map(Gpa(gpa), Hpa(hpa), len, RW).unwrap();
        assert_eq!(size_at(&m, 0x1F_F000), Some(PageSize::Size4K));
        assert_eq!(size_at(&m, 0x20_0000), Some(PageSize::Size2M));
        assert_eq!(size_at(&m, 0x5F_FFFF), Some(PageSize::Size2M));
        assert_eq!(size_at(&m, 0x60_0000), Some(PageSize::Size4K));
        assert_eq!(size_at(&m, 0x1F_E000), None);
        assert_eq!(size_at(&m, 0x60_1000), None);
        for probe in [0x1F_F008, 0x20_0000, 0x3A_BCDE, 0x60_0FFF] {
            assert_eq!(m.translate(Gpa(probe)).unwrap().hpa, Hpa(hpa - gpa + probe));
        }
        // PML4, PDPT, PD, and one PT each for the two 4K ends.
        assert_eq!(m.mem().live_frames(), 5);
    }

    #[test]
    fn misaligned_host_address_falls_back_to_4k() {
        let mut m = mapper();
        m.map(Gpa(2 * MIB), Hpa(0x30_1000), 2 * MIB, RW).unwrap();
        assert_eq!(size_at(&m, 2 * MIB), Some(PageSize::Size4K));
        assert_eq!(size_at(&m, 4 * MIB - 1), Some(PageSize::Size4K));
        assert_eq!(m.translate(Gpa(3 * MIB)).unwrap().hpa, Hpa(0x40_1000));
    }

    #[test]
    fn flags_are_masked_and_user_forced() {
        let mut m = mapper();
        m.map(
            Gpa(0),
            Hpa(0x10_0000),
            0x1000,
            PteFlags::NO_EXECUTE | PteFlags::GLOBAL | PteFlags::PCD,
        )
        .unwrap();
        let f = m.translate(Gpa(0)).unwrap().flags;
        assert_eq!(
            f,
            PteFlags::PRESENT | PteFlags::USER | PteFlags::NO_EXECUTE | PteFlags::PCD
        );
    }

    #[test]
    fn overlapping_map_is_refused_without_changes() {
        let mut m = mapper();
        m.map(Gpa(0x20_0000), Hpa(0x20_0000), 2 * MIB, RW).unwrap();
        let frames = m.mem().live_frames();
        assert_eq!(
            m.map(Gpa(0x10_0000), Hpa(0x80_0000), 2 * MIB, RW),
            Err(MapError::AlreadyMapped(Gpa(0x20_0000)))
        );
        assert_eq!(m.mem().live_frames(), frames);
        assert_eq!(m.translate(Gpa(0x10_0000)), None);
        assert_eq!(
            m.map(Gpa(0x3F_F000), Hpa(0), 0x1000, RW),
            Err(MapError::AlreadyMapped(Gpa(0x3F_F000)))
        );
    }

    #[test]
    fn argument_errors() {
        let mut m = mapper();
        assert_eq!(
            m.map(Gpa(0x800), Hpa(0), 0x1000, RW),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            m.map(Gpa(0), Hpa(0x800), 0x1000, RW),
            Err(MapError::Unaligned)
        );
        assert_eq!(m.map(Gpa(0), Hpa(0), 0x800, RW), Err(MapError::Unaligned));
        assert_eq!(
            m.map(Gpa(MAX_GPA - 0x1000), Hpa(0), 0x2000, RW),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            m.map(Gpa(0), Hpa(MAX_HPA), 0x1000, RW),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            m.map(Gpa(!0xFFF), Hpa(0), 0x1000, RW),
            Err(MapError::OutOfRange)
        );
        assert_eq!(m.translate(Gpa(MAX_GPA)), None);
        assert_eq!(m.map(Gpa(0), Hpa(0), 0, RW), Ok(()));
    }

    #[test]
    fn out_of_frames() {
        let mut mem = FakeMem::new(0x7000_0000);
        mem.limit = Some(2);
        let mut m = NptMapper::new(mem).unwrap();
        assert_eq!(
            m.map(Gpa(0), Hpa(0), 0x1000, RW),
            Err(MapError::OutOfFrames)
        );
        let mut mem = FakeMem::new(0);
        mem.limit = Some(0);
        assert!(NptMapper::new(mem).is_err());
    }

    #[test]
    fn unmap_splits_large_page() {
        let mut m = mapper();
        m.map(Gpa(0x20_0000), Hpa(0x1_0020_0000), 2 * MIB, RW)
            .unwrap();
        m.unmap(Gpa(0x30_0000), 0x1000).unwrap();
        assert_eq!(m.translate(Gpa(0x30_0000)), None);
        let t = m.translate(Gpa(0x30_1000)).unwrap();
        assert_eq!(t.size, PageSize::Size4K);
        assert_eq!(t.hpa, Hpa(0x1_0030_1000));
        assert!(!t.flags.contains(PteFlags::HUGE));
        assert_eq!(m.translate(Gpa(0x2F_F123)).unwrap().hpa, Hpa(0x1_002F_F123));
        assert!(m
            .translate(Gpa(0x20_0000))
            .unwrap()
            .flags
            .contains(PteFlags::WRITABLE));
    }

    #[test]
    fn unmap_splits_1g_into_2m() {
        let mut m = mapper();
        m.map(Gpa(0), Hpa(GIB), GIB, RW).unwrap();
        m.unmap(Gpa(0x20_0000), 2 * MIB).unwrap();
        assert_eq!(m.translate(Gpa(0x20_0000)), None);
        assert_eq!(size_at(&m, 0), Some(PageSize::Size2M));
        assert_eq!(size_at(&m, 0x40_0000), Some(PageSize::Size2M));
        assert_eq!(
            m.translate(Gpa(0x40_0001)).unwrap().hpa,
            Hpa(GIB + 0x40_0001)
        );
    }

    #[test]
    fn unmap_everything_frees_tables() {
        let mut m = mapper();
        m.map(Gpa(0x1F_F000), Hpa(0x1F_F000), 0x40_2000, RW)
            .unwrap();
        m.map(Gpa(0x80_0000_0000), Hpa(0x10_0000), 0x1000, RW)
            .unwrap();
        m.unmap(Gpa(0), 0x100_0000_0000).unwrap();
        assert_eq!(m.mem().live_frames(), 1, "only the PML4 remains");
        assert_eq!(m.translate(Gpa(0x20_0000)), None);
        // The range can be mapped again afterwards.
        m.map(Gpa(0x20_0000), Hpa(0x20_0000), 2 * MIB, RW).unwrap();
        assert_eq!(size_at(&m, 0x20_0000), Some(PageSize::Size2M));
    }

    #[test]
    fn unmap_of_hole_is_fine() {
        let mut m = mapper();
        m.unmap(Gpa(0x1000), 0x1000).unwrap();
        m.unmap(Gpa(0), 0).unwrap();
        assert_eq!(m.mem().live_frames(), 1);
    }
}
