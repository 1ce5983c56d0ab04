//! Nested page tables (APM vol. 2 §15.25): a mapper that builds and edits the 4-level
//! long-mode table that translates guest-physical to host-physical addresses.
//!
//! The mapper is generic over memory access ([`PhysAccess`]) and table-frame allocation
//! ([`FrameSource`]), so host tests run the real code against fake physical memory. It chooses
//! the largest page (1 GiB, 2 MiB, 4 KiB) that the alignment of both addresses and the remaining
//! length allow, up to a configurable maximum (1 GiB NPT pages need CPUID 8000_0001
//! EDX\[26\] Page1GB).
//!
//! The walk, table allocation, page-size choice, split of large pages and freeing of emptied
//! tables are the `pagetable` crate's [`RadixTable`] (shared with the AMD-Vi I/O page tables);
//! this module supplies the entry format, [`NptFormat`], and the NPT-specific rules (leaf flags,
//! `U` forced, 48-bit GPAs).
//!
//! Invariants kept by the mapper: every present non-leaf entry points to a table with at least
//! one present entry (emptied tables are freed on unmap), intermediate entries are
//! `P | RW | U` so the leaf alone decides permissions, and every leaf has `U` set (nested
//! accesses are user accesses, §15.25.5).
//!
//! After `unmap` or a permission change the caller must flush the guest's TLB entries
//! (`TLB_CONTROL` or a new ASID, §15.16) before the guest runs again.

pub use pagetable::radix::LeafCounts;
use pagetable::radix::{self, entry_span, Entry, EntryFormat, RadixTable};

use crate::addr::{Gpa, Hpa};
use crate::paging::{FrameSource, PageSize, PageTableEntry, PhysAccess, PteFlags};

/// Guest-physical addresses at or above this cannot be mapped by 4-level tables.
pub const MAX_GPA: u64 = 1 << 48;
/// Host-physical addresses at or above this do not fit an entry (bits 51:12).
pub const MAX_HPA: u64 = 1 << 52;

const _: () = assert!(RadixTable::<NptFormat, ()>::MAX_ADDR == MAX_GPA);

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
    table: RadixTable<NptFormat, M>,
}

/// The long-mode entry format (APM vol. 2 §5.4.1) as the `pagetable` engine writes and reads it
/// for nested paging (§15.25.5): table pointers are `P | RW | U` so the leaf alone decides
/// permissions; a leaf is a PTE, or a PDE / PDPTE with PS; the leaf's flags are its
/// attributes.
pub struct NptFormat;

impl EntryFormat for NptFormat {
    type Attr = PteFlags;
    const LEVELS: u8 = 4;
    const MAX_LEAF_LEVEL: u8 = PageSize::Size1G.level();
    const MAX_PA: u64 = MAX_HPA;

    fn table(next: Hpa, _next_level: u8) -> u64 {
        PageTableEntry::new(next.0, TABLE_FLAGS).0
    }

    /// PS is set for a large page (level 2 or 3) and cleared in a PTE (where bit 7 is PAT).
    fn leaf(page: Hpa, level: u8, flags: PteFlags) -> u64 {
        let flags = if level == 1 {
            flags.difference(PteFlags::HUGE)
        } else {
            flags.union(PteFlags::HUGE)
        };
        PageTableEntry::new(page.0, flags).0
    }

    /// A PS entry is a leaf at any level; a PS PML4E, which the mapper never writes, reads as a
    /// leaf that [`NptMapper::translate`] refuses (PS is reserved there). The page address of a
    /// large page drops the bits below its alignment (bit 12 is PAT there).
    fn decode(raw: u64, level: u8) -> Entry<PteFlags> {
        let e = PageTableEntry(raw);
        if !e.is_present() {
            Entry::Absent
        } else if level == 1 || e.is_huge() {
            Entry::Leaf {
                page: Hpa(e.addr() & !(entry_span(level) - 1)),
                attr: e.flags(),
            }
        } else {
            Entry::Table {
                table: Hpa(e.addr()),
                level: level - 1,
            }
        }
    }
}

impl From<radix::Error> for MapError {
    fn from(e: radix::Error) -> Self {
        match e {
            radix::Error::Unaligned => Self::Unaligned,
            radix::Error::OutOfRange => Self::OutOfRange,
            radix::Error::OutOfFrames => Self::OutOfFrames,
            // `NptFormat` reads every present entry as a table pointer to the next level or as a
            // leaf, so the engine never meets a foreign one; were it to, the range is occupied.
            radix::Error::AlreadyMapped(gpa) | radix::Error::Foreign(gpa) => {
                Self::AlreadyMapped(Gpa(gpa))
            }
        }
    }
}

impl<M: FrameSource + PhysAccess> NptMapper<M> {
    /// A mapper with an empty PML4 allocated from `mem`. Largest page size: 1 GiB.
    pub fn new(mem: M) -> Result<Self, MapError> {
        Ok(Self {
            table: RadixTable::new(mem)?,
        })
    }

    /// Host-physical address of the PML4: the value for the VMCB `n_cr3` field.
    pub fn root(&self) -> Hpa {
        self.table.root()
    }

    /// Limit the page sizes used by later `map` calls (e.g. to 2 MiB without Page1GB).
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

    /// Give the memory/allocator back.
    pub fn into_inner(self) -> M {
        self.table.into_inner()
    }

    /// Map `len` bytes at `gpa` to `hpa` with the leaf flags `flags` (masked to
    /// [`LEAF_FLAGS`]; `PRESENT` and `USER` are added). All of `gpa`, `hpa`, `len` must be
    /// 4 KiB multiples. Fails without changes if any part of the range is already mapped.
    /// Returns how many pages of each size back the range.
    pub fn map(
        &mut self,
        gpa: Gpa,
        hpa: Hpa,
        len: u64,
        flags: PteFlags,
    ) -> Result<LeafCounts, MapError> {
        let leaf = flags.intersection(LEAF_FLAGS) | PteFlags::PRESENT | PteFlags::USER;
        Ok(self.table.map(gpa.0, hpa, len, leaf)?)
    }

    /// Unmap `len` bytes at `gpa` (4 KiB multiples). Unmapped holes inside the range are fine.
    /// Large pages that straddle the range boundary are split, which may need frames; tables
    /// that become empty are freed.
    pub fn unmap(&mut self, gpa: Gpa, len: u64) -> Result<(), MapError> {
        Ok(self.table.unmap(gpa.0, len)?)
    }

    /// Translate `gpa` through the table, or `None` if it is not mapped.
    pub fn translate(&self, gpa: Gpa) -> Option<Translation> {
        let leaf = self.table.translate(gpa.0)?;
        Some(Translation {
            hpa: leaf.pa,
            size: PageSize::from_level(leaf.level)?,
            flags: leaf.attr,
        })
    }
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
        assert_eq!(m.map(Gpa(0), Hpa(0), 0, RW), Ok(LeafCounts::default()));
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

    /// A 5 GiB guest as the hypervisor maps it: low RAM 0..3 GiB, the MMIO hole, high RAM
    /// 4..6 GiB; each block backed by one host range.
    fn map_5g_guest(
        m: &mut NptMapper<FakeMem>,
        low_hpa: u64,
        high_hpa: u64,
    ) -> (LeafCounts, LeafCounts) {
        let low = m.map(Gpa(0), Hpa(low_hpa), 3 * GIB, RW).unwrap();
        let high = m.map(Gpa(4 * GIB), Hpa(high_hpa), 2 * GIB, RW).unwrap();
        (low, high)
    }

    fn assert_guest_map(m: &NptMapper<FakeMem>, low_hpa: u64, high_hpa: u64) {
        for gpa in [0, 0x1234, GIB + 5, 3 * GIB - 1] {
            assert_eq!(m.translate(Gpa(gpa)).unwrap().hpa, Hpa(low_hpa + gpa));
        }
        for gpa in [4 * GIB, 5 * GIB + 0x2_0008, 6 * GIB - 1] {
            assert_eq!(
                m.translate(Gpa(gpa)).unwrap().hpa,
                Hpa(high_hpa + gpa - 4 * GIB)
            );
        }
        // The MMIO hole (VF BARs, IOAPIC, LAPIC) and everything above RAM stay unmapped.
        for gpa in [3 * GIB, 0xFEC0_0000, 0xFEE0_0000, 4 * GIB - 1, 6 * GIB] {
            assert_eq!(m.translate(Gpa(gpa)), None, "{gpa:#x}");
        }
    }

    #[test]
    fn guest_ram_gets_1g_pages_where_both_addresses_are_aligned() {
        let mut m = mapper();
        let (low, high) = map_5g_guest(&mut m, 8 * GIB, 12 * GIB);
        assert_eq!(
            low,
            LeafCounts {
                size_1g: 3,
                ..Default::default()
            }
        );
        assert_eq!(high.size_1g, 2);
        assert_eq!(low.plus(high).bytes(), 5 * GIB);
        assert_eq!(size_at(&m, 4 * GIB), Some(PageSize::Size1G));
        assert_guest_map(&m, 8 * GIB, 12 * GIB);
        // No overlap: the same RAM, or a BAR inside it, is refused.
        assert_eq!(
            m.map(Gpa(5 * GIB), Hpa(0), 0x1000, RW),
            Err(MapError::AlreadyMapped(Gpa(5 * GIB)))
        );
        // A BAR page in the hole is fine, and 4 KiB.
        m.map(Gpa(0xC000_0000), Hpa(0xFE00_0000), 0x1000, RW)
            .unwrap();
        assert_eq!(size_at(&m, 0xC000_0000), Some(PageSize::Size4K));
    }

    #[test]
    fn guest_ram_falls_back_to_2m_and_4k_by_alignment() {
        let mut m = mapper();
        // Low block only 2 MiB-aligned, high block only 4 KiB-aligned.
        let (low, high) = map_5g_guest(&mut m, 8 * GIB + 2 * MIB, 12 * GIB + 0x1000);
        assert_eq!(
            low,
            LeafCounts {
                size_2m: 3 * 512,
                ..Default::default()
            }
        );
        assert_eq!(
            high,
            LeafCounts {
                size_4k: 2 * 512 * 512,
                ..Default::default()
            }
        );
        assert_guest_map(&m, 8 * GIB + 2 * MIB, 12 * GIB + 0x1000);
    }

    #[test]
    fn without_page1gb_guest_ram_gets_2m_pages() {
        let mut m = mapper();
        m.set_max_page_size(PageSize::Size2M);
        let (low, high) = map_5g_guest(&mut m, 8 * GIB, 12 * GIB);
        assert_eq!(
            low.plus(high),
            LeafCounts {
                size_2m: 5 * 512,
                ..Default::default()
            }
        );
        assert_eq!(size_at(&m, 4 * GIB), Some(PageSize::Size2M));
        assert_guest_map(&m, 8 * GIB, 12 * GIB);
    }

    #[test]
    fn unmap_of_hole_is_fine() {
        let mut m = mapper();
        m.unmap(Gpa(0x1000), 0x1000).unwrap();
        m.unmap(Gpa(0), 0).unwrap();
        assert_eq!(m.mem().live_frames(), 1);
    }
}
