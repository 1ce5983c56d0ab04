//! A radix page-table engine, generic over the entry format ([`EntryFormat`]) and the memory
//! ([`PhysAccess`] + [`FrameSource`]).
//!
//! Both table formats didvisor builds are x86-style radix trees of 4 KiB tables with 512
//! 64-bit entries, where the table at level L (1 = the last) is indexed by address bits
//! `12 + 9(L−1) ..= 20 + 9(L−1)`:
//! - nested page tables (APM vol. 2 §15.25, long-mode format §5.4), in `svm::npt`;
//! - AMD-Vi I/O page tables for host translation (IOMMU spec #48882 §2.2.3), in
//!   `iommu::io_pgtable`.
//!
//! They differ only in how an entry says "absent", "next table" or "page" and where the
//! permissions sit; that is the [`EntryFormat`]. The walk, the table allocation (zeroed here,
//! since a [`FrameSource`] need not zero), the page-size choice, the overlap check, the split of
//! large pages on a partial unmap and the freeing of emptied tables are written once here.
//!
//! Invariants kept by the engine: every present table-pointer entry points to a table with at
//! least one present entry (emptied tables are freed on unmap), and a leaf sits only at a level
//! in `1..=`[`EntryFormat::MAX_LEAF_LEVEL`] unless the table was edited behind the engine's back.
//! Entries the engine would not have written ([`Entry::Other`], or a table pointer that skips
//! levels) are never edited through: operations that reach one fail with [`Error::Foreign`].

use core::marker::PhantomData;

use crate::addr::Hpa;
use crate::mem::{FrameSource, PhysAccess};

/// Number of entries in one table.
pub const ENTRIES: usize = 512;
/// The smallest page, and the size and alignment of every table.
pub const PAGE_SIZE: u64 = 4096;

/// Bytes covered by one entry of a table at `level` (1 = the last level).
pub const fn entry_span(level: u8) -> u64 {
    1 << (12 + 9 * (level as u32 - 1))
}

/// Index into the table at `level` (1 = the last level) for address `addr`: 9 bits starting at
/// bit 12 + 9 × (level − 1).
pub const fn table_index(addr: u64, level: u8) -> usize {
    ((addr >> (12 + 9 * (level as u32 - 1))) & 0x1FF) as usize
}

/// Page sizes of 4-level x86-style tables: a leaf at level 1, 2 or 3.
///
/// In the long-mode (NPT) format a 2 MiB / 1 GiB leaf is a PDE / PDPTE with PS set; in the
/// AMD-Vi format it is an entry with Next Level 0 at level 2 / 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, mapped by a leaf at level 1 (a PTE).
    Size4K,
    /// 2 MiB, mapped by a leaf at level 2 (a PDE).
    Size2M,
    /// 1 GiB, mapped by a leaf at level 3 (a PDPTE).
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => 1 << 12,
            Self::Size2M => 1 << 21,
            Self::Size1G => 1 << 30,
        }
    }

    /// Table level whose entry maps a page of this size (1 = PT, 2 = PD, 3 = PDPT).
    pub const fn level(self) -> u8 {
        match self {
            Self::Size4K => 1,
            Self::Size2M => 2,
            Self::Size1G => 3,
        }
    }

    /// The page size a leaf at `level` maps, if any.
    pub const fn from_level(level: u8) -> Option<Self> {
        match level {
            1 => Some(Self::Size4K),
            2 => Some(Self::Size2M),
            3 => Some(Self::Size1G),
            _ => None,
        }
    }
}

/// How many leaves of each size a [`RadixTable::map`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeafCounts {
    /// 4 KiB leaves (level 1).
    pub size_4k: u64,
    /// 2 MiB leaves (level 2).
    pub size_2m: u64,
    /// 1 GiB leaves (level 3).
    pub size_1g: u64,
}

impl LeafCounts {
    /// Both counts added.
    pub const fn plus(self, other: Self) -> Self {
        Self {
            size_4k: self.size_4k + other.size_4k,
            size_2m: self.size_2m + other.size_2m,
            size_1g: self.size_1g + other.size_1g,
        }
    }

    /// Bytes the leaves map.
    pub const fn bytes(&self) -> u64 {
        self.size_4k * PageSize::Size4K.bytes()
            + self.size_2m * PageSize::Size2M.bytes()
            + self.size_1g * PageSize::Size1G.bytes()
    }

    fn count(&mut self, level: u8) {
        match PageSize::from_level(level) {
            Some(PageSize::Size4K) => self.size_4k += 1,
            Some(PageSize::Size2M) => self.size_2m += 1,
            Some(PageSize::Size1G) => self.size_1g += 1,
            // `choose_level` picks levels 1..=3 only (MAX_LEAF_LEVEL of both formats is 3).
            None => {}
        }
    }
}

/// What an entry is, as an [`EntryFormat`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<A> {
    /// Not present. The all-zero word must decode to this.
    Absent,
    /// A pointer to the table at `table` whose level is `level`. The engine edits only through
    /// pointers to the next level down (`level` = current − 1); others are foreign.
    Table {
        /// Physical address of the next table.
        table: Hpa,
        /// Level of that table.
        level: u8,
    },
    /// A page mapping.
    Leaf {
        /// The page's physical address as the format defines it (e.g. the long-mode format
        /// drops the PAT bit below a large page's alignment).
        page: Hpa,
        /// The page's attributes (what [`EntryFormat::leaf`] takes back).
        attr: A,
    },
    /// Present, but neither a table pointer nor a leaf the engine understands.
    Other,
}

impl<A> Entry<A> {
    /// The table this entry points to if that table is one level below `level`: the only
    /// pointers the engine walks and edits through.
    pub fn next_table(&self, level: u8) -> Option<Hpa> {
        match *self {
            Entry::Table { table, level: l } if level > 1 && l == level - 1 => Some(table),
            _ => None,
        }
    }
}

/// One page-table entry format: how to write a table pointer and a leaf, how to read an entry
/// back, and the shape of the tree.
pub trait EntryFormat {
    /// Leaf attributes a caller chooses (permissions, cache attributes).
    type Attr: Copy;
    /// Level of the root table (2..=5): addresses below `2^(12 + 9 × LEVELS)` are mapped.
    const LEVELS: u8;
    /// Highest level that may hold a leaf (1..=`LEVELS`); leaves are chosen at levels
    /// `1..=MAX_LEAF_LEVEL`.
    const MAX_LEAF_LEVEL: u8;
    /// Physical addresses at or above this do not fit the address field.
    const MAX_PA: u64;

    /// The entry at `next_level + 1` pointing to the (zeroed) table `next` of `next_level`.
    fn table(next: Hpa, next_level: u8) -> u64;
    /// The leaf at `level` mapping the page at `page` (aligned to [`entry_span`]`(level)`)
    /// with `attr`.
    fn leaf(page: Hpa, level: u8, attr: Self::Attr) -> u64;
    /// What the word `raw` of a table at `level` is.
    fn decode(raw: u64, level: u8) -> Entry<Self::Attr>;
}

/// Why an engine operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An address or the length is not a multiple of 4 KiB.
    Unaligned,
    /// The range does not fit the input addresses of the table / [`EntryFormat::MAX_PA`], or
    /// wraps.
    OutOfRange,
    /// The frame source is exhausted. Part of the range may already be mapped (or, for unmap,
    /// unmapped); the tables stay consistent.
    OutOfFrames,
    /// Part of the range is already mapped, starting at this address. Nothing was changed.
    AlreadyMapped(u64),
    /// An entry the engine would not have written was met at this address.
    Foreign(u64),
}

/// The result of [`RadixTable::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf<A> {
    /// The physical address the input address maps to (including the offset within the page).
    pub pa: Hpa,
    /// Level of the leaf (its page is [`entry_span`]`(level)` bytes).
    pub level: u8,
    /// The leaf's attributes.
    pub attr: A,
}

/// One radix page table of format `F` in memory `M`: its root and the largest leaf level to use.
pub struct RadixTable<F, M> {
    mem: M,
    root: Hpa,
    max_leaf_level: u8,
    format: PhantomData<fn() -> F>,
}

impl<F: EntryFormat, M> RadixTable<F, M> {
    /// Input addresses at or above this cannot be mapped.
    pub const MAX_ADDR: u64 = 1 << (12 + 9 * F::LEVELS as u32);

    /// Physical address of the root table.
    pub fn root(&self) -> Hpa {
        self.root
    }

    /// Use leaves at levels up to `level` (clamped to `1..=`[`EntryFormat::MAX_LEAF_LEVEL`]) in
    /// later `map` calls.
    pub fn set_max_leaf_level(&mut self, level: u8) {
        self.max_leaf_level = level.clamp(1, F::MAX_LEAF_LEVEL);
    }

    /// The memory/allocator the table works through.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Mutable access to the memory/allocator.
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// Give the memory/allocator back (the tables stay where they are).
    pub fn into_inner(self) -> M {
        self.mem
    }

    /// Check the arguments of [`Self::map`]: `addr`, `pa` and `len` must be 4 KiB multiples,
    /// `[addr, addr + len)` within [`Self::MAX_ADDR`] and `[pa, pa + len)` within
    /// [`EntryFormat::MAX_PA`].
    pub fn check_map(&self, addr: u64, pa: Hpa, len: u64) -> Result<(), Error> {
        check_range(addr, len, Self::MAX_ADDR)?;
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(Error::Unaligned);
        }
        match pa.0.checked_add(len) {
            Some(end) if end <= F::MAX_PA => Ok(()),
            _ => Err(Error::OutOfRange),
        }
    }
}

impl<F: EntryFormat, M: PhysAccess> RadixTable<F, M> {
    /// Translate `addr` through the table, or `None` if no leaf maps it (or an entry on the way
    /// is foreign).
    pub fn translate(&self, addr: u64) -> Option<Leaf<F::Attr>> {
        if addr >= Self::MAX_ADDR {
            return None;
        }
        let mut table = self.root;
        let mut level = F::LEVELS;
        loop {
            let e = self.entry(table, table_index(addr, level), level);
            if let Entry::Leaf { page, attr } = e {
                let mask = entry_span(level) - 1;
                return Some(Leaf {
                    pa: Hpa((page.0 & !mask) | (addr & mask)),
                    level,
                    attr,
                });
            }
            table = e.next_table(level)?;
            level -= 1;
        }
    }

    fn entry(&self, table: Hpa, index: usize, level: u8) -> Entry<F::Attr> {
        F::decode(self.read(table, index), level)
    }

    fn read(&self, table: Hpa, index: usize) -> u64 {
        self.mem.read_u64(Hpa(table.0 + index as u64 * 8))
    }

    fn write(&mut self, table: Hpa, index: usize, raw: u64) {
        self.mem.write_u64(Hpa(table.0 + index as u64 * 8), raw);
    }

    /// The first mapped address in `[start, end)`, skipping absent subtrees whole.
    fn first_mapped(&self, start: u64, end: u64) -> Result<Option<u64>, Error> {
        let mut addr = start;
        while addr < end {
            let mut table = self.root;
            let mut level = F::LEVELS;
            loop {
                match self.entry(table, table_index(addr, level), level) {
                    Entry::Absent => {
                        let span = entry_span(level);
                        addr = (addr & !(span - 1)) + span;
                        break;
                    }
                    Entry::Leaf { .. } => return Ok(Some(addr)),
                    e => {
                        table = e.next_table(level).ok_or(Error::Foreign(addr))?;
                        level -= 1;
                    }
                }
            }
        }
        Ok(None)
    }
}

impl<F: EntryFormat, M: PhysAccess + FrameSource> RadixTable<F, M> {
    /// A table with an empty root allocated from `mem`; leaves up to
    /// [`EntryFormat::MAX_LEAF_LEVEL`].
    pub fn new(mut mem: M) -> Result<Self, Error> {
        const {
            assert!(F::LEVELS >= 2 && F::LEVELS <= 5);
            assert!(F::MAX_LEAF_LEVEL >= 1 && F::MAX_LEAF_LEVEL <= F::LEVELS);
        }
        let root = alloc_table(&mut mem)?;
        Ok(Self {
            mem,
            root,
            max_leaf_level: F::MAX_LEAF_LEVEL,
            format: PhantomData,
        })
    }

    /// Map `len` bytes at `addr` to `pa` with leaves carrying `attr`, each the largest the
    /// alignment of both addresses and the remaining length allow (up to the maximum leaf
    /// level). Fails without changes if the arguments are bad ([`Self::check_map`]) or any part
    /// of the range is already mapped. Returns how many leaves of each size it wrote.
    pub fn map(
        &mut self,
        addr: u64,
        pa: Hpa,
        len: u64,
        attr: F::Attr,
    ) -> Result<LeafCounts, Error> {
        self.check_map(addr, pa, len)?;
        if let Some(at) = self.first_mapped(addr, addr + len)? {
            return Err(Error::AlreadyMapped(at));
        }
        let mut counts = LeafCounts::default();
        let mut off = 0;
        while off < len {
            let (a, p) = (addr + off, pa.0 + off);
            let level = self.choose_level(a, p, len - off);
            self.map_one(a, p, level, attr)?;
            counts.count(level);
            off += entry_span(level);
        }
        Ok(counts)
    }

    /// Unmap `len` bytes at `addr` (4 KiB multiples); holes are fine. Large pages straddling the
    /// range ends are split into leaves one level down (which needs frames); tables that become
    /// empty are freed.
    pub fn unmap(&mut self, addr: u64, len: u64) -> Result<(), Error> {
        check_range(addr, len, Self::MAX_ADDR)?;
        if len == 0 {
            return Ok(());
        }
        let root = self.root;
        self.unmap_in(root, F::LEVELS, 0, addr, addr + len)?;
        Ok(())
    }

    /// Free every table frame (the root included) and give the memory back. Table pointers are
    /// followed whatever level they name.
    pub fn destroy(mut self) -> M {
        let root = self.root;
        self.free_tree(root, F::LEVELS);
        self.mem
    }

    fn free_tree(&mut self, table: Hpa, level: u8) {
        if level > 1 {
            for i in 0..ENTRIES {
                // Shadowing: the child table and its level.
                if let Entry::Table { table, level } = self.entry(table, i, level) {
                    self.free_tree(table, level);
                }
            }
        }
        self.mem.free_frame(table);
    }

    fn choose_level(&self, addr: u64, pa: u64, remaining: u64) -> u8 {
        for level in (2..=self.max_leaf_level).rev() {
            let b = entry_span(level);
            if addr.is_multiple_of(b) && pa.is_multiple_of(b) && remaining >= b {
                return level;
            }
        }
        1
    }

    fn map_one(&mut self, addr: u64, pa: u64, leaf_level: u8, attr: F::Attr) -> Result<(), Error> {
        let mut table = self.root;
        let mut level = F::LEVELS;
        while level > leaf_level {
            let idx = table_index(addr, level);
            match self.entry(table, idx, level) {
                Entry::Absent => {
                    let next = alloc_table(&mut self.mem)?;
                    self.write(table, idx, F::table(next, level - 1));
                    table = next;
                }
                Entry::Leaf { .. } => return Err(Error::AlreadyMapped(addr)),
                e => table = e.next_table(level).ok_or(Error::Foreign(addr))?,
            }
            level -= 1;
        }
        let idx = table_index(addr, level);
        if !matches!(self.entry(table, idx, level), Entry::Absent) {
            return Err(Error::AlreadyMapped(addr));
        }
        self.write(table, idx, F::leaf(Hpa(pa), level, attr));
        Ok(())
    }

    /// Unmap `[start, end)` within the table at `level` covering addresses from `base`. Returns
    /// whether the table is empty afterwards.
    fn unmap_in(
        &mut self,
        table: Hpa,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
    ) -> Result<bool, Error> {
        let span = entry_span(level);
        let first = ((start.max(base) - base) / span) as usize;
        let last = ((end.min(base + span * ENTRIES as u64) - 1 - base) / span) as usize;
        for idx in first..=last {
            let e_start = base + idx as u64 * span;
            let e_end = e_start + span;
            let child = match self.entry(table, idx, level) {
                Entry::Absent => continue,
                Entry::Leaf { .. } if start <= e_start && end >= e_end => {
                    self.write(table, idx, 0);
                    continue;
                }
                // A large page partly inside the range: split it into pages one level down.
                // (A level-1 leaf is always wholly inside: the range is 4 KiB aligned.)
                Entry::Leaf { page, attr } if level > 1 => {
                    let child = alloc_table(&mut self.mem)?;
                    let child_span = entry_span(level - 1);
                    for i in 0..ENTRIES {
                        let pa = Hpa(page.0 + i as u64 * child_span);
                        self.write(child, i, F::leaf(pa, level - 1, attr));
                    }
                    self.write(table, idx, F::table(child, level - 1));
                    child
                }
                e => e.next_table(level).ok_or(Error::Foreign(e_start))?,
            };
            if self.unmap_in(child, level - 1, e_start, start, end)? {
                self.write(table, idx, 0);
                self.mem.free_frame(child);
            }
        }
        Ok((0..ENTRIES).all(|i| matches!(self.entry(table, i, level), Entry::Absent)))
    }
}

fn check_range(addr: u64, len: u64, max: u64) -> Result<(), Error> {
    if !addr.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(Error::Unaligned);
    }
    match addr.checked_add(len) {
        Some(end) if end <= max => Ok(()),
        _ => Err(Error::OutOfRange),
    }
}

/// A frame from `mem`, zeroed (every format decodes the zero word as absent).
fn alloc_table<M: FrameSource + PhysAccess>(mem: &mut M) -> Result<Hpa, Error> {
    let frame = mem.alloc_frame().ok_or(Error::OutOfFrames)?;
    for i in 0..ENTRIES {
        mem.write_u64(Hpa(frame.0 + i as u64 * 8), 0);
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::FakeMem;

    /// A made-up format, unlike both real ones where it can be: P = bit 0; bits 2:1 the kind
    /// (0 table pointer with its level in 11:9, 1 leaf, else something foreign); address 51:12;
    /// the attribute byte in 63:56.
    struct Toy<const LEVELS: u8, const MAX_LEAF: u8>;

    const P: u64 = 1;
    const KIND_LEAF: u64 = 1 << 1;
    const KIND_OTHER: u64 = 2 << 1;
    const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

    impl<const LEVELS: u8, const MAX_LEAF: u8> EntryFormat for Toy<LEVELS, MAX_LEAF> {
        type Attr = u8;
        const LEVELS: u8 = LEVELS;
        const MAX_LEAF_LEVEL: u8 = MAX_LEAF;
        const MAX_PA: u64 = 1 << 52;

        fn table(next: Hpa, next_level: u8) -> u64 {
            P | (u64::from(next_level) << 9) | (next.0 & ADDR)
        }

        fn leaf(page: Hpa, level: u8, attr: u8) -> u64 {
            assert!(
                page.is_aligned(entry_span(level)),
                "misaligned leaf {page:?}"
            );
            P | KIND_LEAF | (page.0 & ADDR) | (u64::from(attr) << 56)
        }

        fn decode(raw: u64, _level: u8) -> Entry<u8> {
            if raw & P == 0 {
                return Entry::Absent;
            }
            match (raw >> 1) & 3 {
                0 => Entry::Table {
                    table: Hpa(raw & ADDR),
                    level: ((raw >> 9) & 7) as u8,
                },
                1 => Entry::Leaf {
                    page: Hpa(raw & ADDR),
                    attr: (raw >> 56) as u8,
                },
                _ => Entry::Other,
            }
        }
    }

    type Four = Toy<4, 3>;
    type Table4 = RadixTable<Four, FakeMem>;
    const BASE: u64 = 0x7000_0000;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn table() -> Table4 {
        RadixTable::new(FakeMem::new(BASE)).unwrap()
    }

    fn level_at<F: EntryFormat>(t: &RadixTable<F, FakeMem>, addr: u64) -> Option<u8> {
        t.translate(addr).map(|l| l.level)
    }

    #[test]
    fn helpers() {
        assert_eq!(entry_span(1), 0x1000);
        assert_eq!(entry_span(4), 1 << 39);
        let a = 0x0000_7FFF_FFFF_F000u64;
        assert_eq!(table_index(a, 4), 0xFF);
        assert_eq!(table_index(a, 1), 0x1FF);
        assert_eq!(table_index(0x4020_1000, 3), 1);
        assert_eq!(table_index(0x4020_1000, 2), 1);
        for size in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
            assert_eq!(PageSize::from_level(size.level()), Some(size));
            assert_eq!(entry_span(size.level()), size.bytes());
        }
        assert_eq!(PageSize::from_level(0), None);
        assert_eq!(PageSize::from_level(4), None);
        assert_eq!(Table4::MAX_ADDR, 1 << 48);
        assert_eq!(RadixTable::<Toy<3, 2>, FakeMem>::MAX_ADDR, 1 << 39);
    }

    #[test]
    fn new_zeroes_the_root() {
        let t = table();
        assert_eq!(t.root(), Hpa(BASE));
        assert_eq!(t.mem().live_frames(), 1);
        // FakeMem hands out garbage: the engine must have zeroed all of it.
        assert!((0..ENTRIES as u64).all(|i| t.mem().peek(BASE + 8 * i) == Some(0)));
        assert_eq!(t.translate(0), None);
        let mut mem = FakeMem::new(0);
        mem.limit = Some(0);
        assert_eq!(Table4::new(mem).err(), Some(Error::OutOfFrames));
    }

    #[test]
    fn one_page_builds_a_path_of_next_level_pointers() {
        let mut t = table();
        t.map(0x5000, Hpa(0x12_3000), 0x1000, 0xA5).unwrap();
        assert_eq!(
            t.translate(0x5ABC),
            Some(Leaf {
                pa: Hpa(0x12_3ABC),
                level: 1,
                attr: 0xA5
            })
        );
        assert_eq!(t.translate(0x4FFF), None);
        assert_eq!(t.translate(0x6000), None);
        assert_eq!(t.mem().live_frames(), 4);
        // Each pointer names the next level down; the tables come from the allocator in order.
        let mut table = BASE;
        for level in (2..=4u64).rev() {
            let raw = t.mem().peek(table).unwrap();
            assert_eq!(raw, P | ((level - 1) << 9) | (table + 0x1000));
            table += 0x1000;
        }
        assert_eq!(
            t.mem().peek(table + 5 * 8),
            Some(P | KIND_LEAF | 0x12_3000 | 0xA5 << 56)
        );
    }

    #[test]
    fn leaf_level_follows_alignment_length_and_limit() {
        let mut t = table();
        // [0x1F_F000, 0x60_1000): 4K, 2M, 2M, 4K.
        let (va, pa, len) = (0x1F_F000, 0x1_001F_F000, 0x40_2000);
        t.map(va, Hpa(pa), len, 1).unwrap();
        assert_eq!(level_at(&t, 0x1F_F000), Some(1));
        assert_eq!(level_at(&t, 0x20_0000), Some(2));
        assert_eq!(level_at(&t, 0x5F_FFFF), Some(2));
        assert_eq!(level_at(&t, 0x60_0000), Some(1));
        assert_eq!(level_at(&t, 0x1F_E000), None);
        assert_eq!(level_at(&t, 0x60_1000), None);
        for probe in [0x1F_F008, 0x20_0000, 0x3A_BCDE, 0x60_0FFF] {
            assert_eq!(t.translate(probe).unwrap().pa, Hpa(pa - va + probe));
        }
        assert_eq!(t.mem().live_frames(), 5);
        // An aligned gigabyte: one leaf at level 3, no lower tables.
        let mut g = table();
        g.map(GIB, Hpa(4 * GIB), GIB, 2).unwrap();
        assert_eq!(level_at(&g, GIB + 0x1234_5678), Some(3));
        assert_eq!(
            g.translate(GIB + 0x1234_5678).unwrap().pa,
            Hpa(4 * GIB + 0x1234_5678)
        );
        assert_eq!(g.mem().live_frames(), 2);
        // The physical side misaligned: 4 KiB leaves only.
        let mut m = table();
        m.map(2 * MIB, Hpa(0x30_1000), 2 * MIB, 3).unwrap();
        assert_eq!(level_at(&m, 2 * MIB), Some(1));
        assert_eq!(level_at(&m, 4 * MIB - 1), Some(1));
        // Limits, clamped to 1..=MAX_LEAF_LEVEL.
        let mut l = table();
        l.set_max_leaf_level(2);
        l.map(0, Hpa(GIB), GIB, 4).unwrap();
        assert_eq!(level_at(&l, 0), Some(2));
        assert_eq!(level_at(&l, GIB - 1), Some(2));
        l.set_max_leaf_level(0);
        l.map(GIB, Hpa(GIB), 2 * MIB, 4).unwrap();
        assert_eq!(level_at(&l, GIB), Some(1));
        l.set_max_leaf_level(9);
        l.map(2 * GIB, Hpa(2 * GIB), GIB, 4).unwrap();
        assert_eq!(level_at(&l, 2 * GIB), Some(3));
    }

    #[test]
    fn argument_errors() {
        let mut t = table();
        assert_eq!(t.map(0x800, Hpa(0), 0x1000, 0), Err(Error::Unaligned));
        assert_eq!(t.map(0, Hpa(0x800), 0x1000, 0), Err(Error::Unaligned));
        assert_eq!(t.map(0, Hpa(0), 0x1800, 0), Err(Error::Unaligned));
        assert_eq!(
            t.map((1 << 48) - 0x1000, Hpa(0), 0x2000, 0),
            Err(Error::OutOfRange)
        );
        assert_eq!(t.map(!0xFFF, Hpa(0), 0x1000, 0), Err(Error::OutOfRange));
        assert_eq!(
            t.map(0, Hpa((1 << 52) - 0x1000), 0x2000, 0),
            Err(Error::OutOfRange)
        );
        assert_eq!(t.map(0, Hpa(!0xFFF), 0x1000, 0), Err(Error::OutOfRange));
        assert_eq!(t.check_map(0, Hpa((1 << 52) - 0x1000), 0x1000), Ok(()));
        assert_eq!(t.unmap(0x800, 0x1000), Err(Error::Unaligned));
        assert_eq!(t.unmap(1 << 48, 0x1000), Err(Error::OutOfRange));
        assert_eq!(t.translate(1 << 48), None);
        assert_eq!(t.map(0, Hpa(0), 0, 0), Ok(LeafCounts::default()));
        assert_eq!(t.unmap(0, 0), Ok(()));
        assert_eq!(t.mem().live_frames(), 1);
    }

    #[test]
    fn overlapping_map_is_refused_without_changes() {
        let mut t = table();
        t.map(0x20_0000, Hpa(0x20_0000), 2 * MIB, 1).unwrap();
        t.map(GIB + 0x3000, Hpa(0x3000), 0x1000, 1).unwrap();
        let frames = t.mem().live_frames();
        t.mem_mut().record = true;
        // Starts in a hole, runs into the 2 MiB leaf: the conflict is reported where it starts.
        assert_eq!(
            t.map(0x10_0000, Hpa(0x80_0000), 2 * MIB, 1),
            Err(Error::AlreadyMapped(0x20_0000))
        );
        // Inside a large leaf, and on a 4 KiB leaf below existing tables.
        assert_eq!(
            t.map(0x3F_F000, Hpa(0), 0x1000, 1),
            Err(Error::AlreadyMapped(0x3F_F000))
        );
        assert_eq!(
            t.map(GIB, Hpa(0), 0x10_000, 1),
            Err(Error::AlreadyMapped(GIB + 0x3000))
        );
        assert!(t.mem().writes.is_empty(), "nothing written");
        assert_eq!(t.mem().live_frames(), frames);
        assert_eq!(t.translate(0x10_0000), None);
    }

    #[test]
    fn out_of_frames_leaves_consistent_tables() {
        let mut mem = FakeMem::new(BASE);
        mem.limit = Some(3);
        let mut t = Table4::new(mem).unwrap();
        // Needs L3, L2 and L1 tables; only two more frames are available.
        assert_eq!(t.map(0, Hpa(0), 0x1000, 0), Err(Error::OutOfFrames));
        assert_eq!(t.translate(0), None);
        // A 2 MiB leaf needs only L3 and L2, which are there now.
        t.map(2 * MIB, Hpa(2 * MIB), 2 * MIB, 0).unwrap();
        assert_eq!(level_at(&t, 2 * MIB), Some(2));
        // Splitting it needs a frame too.
        assert_eq!(t.unmap(2 * MIB, 0x1000), Err(Error::OutOfFrames));
        assert_eq!(level_at(&t, 2 * MIB), Some(2));
    }

    #[test]
    fn unmap_splits_large_leaves_keeping_attributes() {
        let mut t = table();
        t.map(0, Hpa(GIB), GIB, 0x5A).unwrap();
        // A 4 KiB hole: the 1 GiB leaf becomes 2 MiB leaves, one of which becomes 4 KiB leaves.
        t.unmap(0x30_0000, 0x1000).unwrap();
        assert_eq!(t.translate(0x30_0000), None);
        for (probe, level) in [(0, 2), (0x2F_F123, 1), (0x30_1000, 1), (0x40_0001, 2)] {
            let l = t.translate(probe).unwrap();
            assert_eq!((l.pa, l.level, l.attr), (Hpa(GIB + probe), level, 0x5A));
        }
        assert_eq!(t.mem().live_frames(), 4);
        // Unmapping the rest frees every table but the root.
        t.unmap(0, GIB).unwrap();
        assert_eq!(t.mem().live_frames(), 1);
        assert_eq!(t.mem().freed.len(), 3);
        assert!((0..ENTRIES as u64).all(|i| t.mem().peek(BASE + 8 * i) == Some(0)));
        // The range can be mapped again afterwards.
        t.map(0x20_0000, Hpa(0x20_0000), 2 * MIB, 1).unwrap();
        assert_eq!(level_at(&t, 0x20_0000), Some(2));
    }

    #[test]
    fn unmap_frees_emptied_tables_across_subtrees() {
        let mut t = table();
        t.map(0x1F_F000, Hpa(0x1F_F000), 0x40_2000, 1).unwrap();
        t.map(0x80_0000_0000, Hpa(0x10_0000), 0x1000, 1).unwrap();
        assert_eq!(t.mem().live_frames(), 8);
        // A hole, then a part that empties only one subtree.
        t.unmap(0x1000, 0x1000).unwrap();
        assert_eq!(t.mem().live_frames(), 8);
        t.unmap(0x80_0000_0000, 0x1000).unwrap();
        assert_eq!(t.mem().live_frames(), 5);
        assert_eq!(level_at(&t, 0x20_0000), Some(2));
        t.unmap(0, 1 << 47).unwrap();
        assert_eq!(t.mem().live_frames(), 1);
    }

    #[test]
    fn foreign_entries_are_not_edited_through() {
        let mut t = table();
        t.map(0, Hpa(0), 0x1000, 1).unwrap();
        let l3 = t.mem().peek(BASE).unwrap() & ADDR;
        // L3 entry 1 (1 GiB..2 GiB): something foreign. L3 entry 2: a pointer skipping to a
        // level-1 table.
        t.mem_mut().poke(l3 + 8, P | KIND_OTHER);
        let l1 = 0x100_0000;
        t.mem_mut().poke(l1, P | KIND_LEAF | 0x5000);
        t.mem_mut().poke(l3 + 16, Four::table(Hpa(l1), 1));
        for at in [GIB, 2 * GIB] {
            assert_eq!(t.map(at, Hpa(0), 0x1000, 1), Err(Error::Foreign(at)));
            assert_eq!(t.unmap(at, 0x1000), Err(Error::Foreign(at)));
            assert_eq!(t.translate(at), None);
        }
        // The overlap check reports a foreign entry where it meets it.
        assert_eq!(
            t.map(GIB - 0x1000, Hpa(0), 0x2000, 1),
            Err(Error::Foreign(GIB))
        );
        // Mapping next to foreign entries still works.
        t.map(3 * GIB, Hpa(0), 0x1000, 1).unwrap();
        assert_eq!(level_at(&t, 3 * GIB), Some(1));
    }

    #[test]
    fn destroy_frees_every_table() {
        let mut t = table();
        t.map(0, Hpa(0), 0x1000, 1).unwrap();
        t.map(GIB * 512, Hpa(0x1000), 0x1000, 1).unwrap();
        t.map(GIB, Hpa(GIB), GIB, 1).unwrap();
        assert_eq!(t.mem().live_frames(), 7);
        let mem = t.destroy();
        assert_eq!(mem.live_frames(), 0);
        assert_eq!(mem.freed.len(), 7);
        assert_eq!(mem.freed.last(), Some(&BASE), "the root goes last");
    }

    #[test]
    fn another_shape_three_levels_leaves_up_to_level_2() {
        let mut t = RadixTable::<Toy<3, 2>, FakeMem>::new(FakeMem::new(BASE)).unwrap();
        t.map(0, Hpa(GIB), GIB + 0x1000, 7).unwrap();
        assert_eq!(level_at(&t, 0), Some(2));
        assert_eq!(level_at(&t, GIB - 1), Some(2));
        assert_eq!(level_at(&t, GIB), Some(1));
        assert_eq!(t.translate(GIB + 0x10).unwrap().pa, Hpa(2 * GIB + 0x10));
        // Root, one level-2 table for the first GiB, one level-2 and one level-1 for the page.
        assert_eq!(t.mem().live_frames(), 4);
        assert_eq!(t.map(1 << 39, Hpa(0), 0x1000, 7), Err(Error::OutOfRange));
        t.unmap(0x1000, GIB).unwrap();
        assert_eq!(level_at(&t, 0), Some(1));
        assert_eq!(t.translate(0x1000), None);
        assert_eq!(t.mem().live_frames(), 3);
        assert_eq!(t.into_inner().live_frames(), 3);
    }
}
