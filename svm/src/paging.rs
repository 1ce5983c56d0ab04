//! Long-mode 4-level page-table entries (APM vol. 2 §5.3.3–§5.4, Figures 5-18 to 5-25) and the
//! memory-access traits the table code is generic over.
//!
//! Nested page tables use the same format as the host's long-mode tables (APM vol. 2 §15.25.5),
//! so one entry type serves both the [`crate::npt`] mapper and the [`crate::walk`] guest walk.
//! Under nested paging every guest access is treated as a *user* access, so nested entries must
//! have U/S = 1 at every level or the access faults (§15.25.5).
//!
//! [`PhysAccess`], [`FrameSource`], [`PageSize`], [`table_index`] and [`ENTRIES`] are the
//! `pagetable` crate's, re-exported: the same traits serve the `iommu` crate's I/O page tables,
//! so one kernel memory type implements them once for both.

use bitflags::bitflags;

use crate::addr::Gpa;
pub use pagetable::mem::{FrameSource, PhysAccess};
pub use pagetable::radix::{table_index, PageSize, ENTRIES};

bitflags! {
    /// Flag bits of a long-mode page-table entry (APM vol. 2 §5.4.1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PteFlags: u64 {
        /// P: the entry is present.
        const PRESENT = 1 << 0;
        /// R/W: writes allowed.
        const WRITABLE = 1 << 1;
        /// U/S: user accesses allowed (required for NPT entries).
        const USER = 1 << 2;
        /// PWT: page-level write-through.
        const PWT = 1 << 3;
        /// PCD: page-level cache disable.
        const PCD = 1 << 4;
        /// A: accessed.
        const ACCESSED = 1 << 5;
        /// D: dirty (leaf entries only).
        const DIRTY = 1 << 6;
        /// PS: this PDPTE/PDE maps a 1 GiB/2 MiB page (PAT bit in a 4 KiB PTE).
        const HUGE = 1 << 7;
        /// G: global (leaf entries only).
        const GLOBAL = 1 << 8;
        /// NX: no execute (needs EFER.NXE in a guest walk; always honoured for NPT).
        const NO_EXECUTE = 1 << 63;
        const _ = !0;
    }
}

/// Bits 51:12 of an entry: the physical address of the next table or of a 4 KiB page.
pub const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// One long-mode page-table entry (APM vol. 2 §5.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PageTableEntry(pub u64);

const _: () = assert!(core::mem::size_of::<PageTableEntry>() == 8);

impl PageTableEntry {
    /// A non-present entry.
    pub const EMPTY: Self = Self(0);

    /// An entry pointing to `addr` (bits outside 51:12 are dropped) with `flags`.
    pub const fn new(addr: u64, flags: PteFlags) -> Self {
        Self((addr & ADDR_MASK) | flags.bits())
    }

    /// The flag bits (everything but the address field).
    pub const fn flags(self) -> PteFlags {
        PteFlags::from_bits_retain(self.0 & !ADDR_MASK)
    }

    /// The address field, bits 51:12.
    pub const fn addr(self) -> u64 {
        self.0 & ADDR_MASK
    }

    /// P bit.
    pub const fn is_present(self) -> bool {
        self.0 & PteFlags::PRESENT.bits() != 0
    }

    /// PS bit (meaningful at levels 2 and 3 only).
    pub const fn is_huge(self) -> bool {
        self.0 & PteFlags::HUGE.bits() != 0
    }
}

/// Read access to guest-physical memory, for walking the guest's own page tables.
pub trait GuestMemory {
    /// Read the naturally aligned 64-bit word at `gpa`, or `None` if that GPA is not backed by
    /// RAM the hypervisor is willing to read (MMIO, beyond the guest's memory).
    fn read_u64(&self, gpa: Gpa) -> Option<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_fields() {
        let e = PageTableEntry::new(
            0x0000_1234_5678_9000,
            PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE,
        );
        assert_eq!(e.0, 0x8000_1234_5678_9003);
        assert_eq!(e.addr(), 0x0000_1234_5678_9000);
        assert!(e.is_present());
        assert!(!e.is_huge());
        assert_eq!(
            e.flags(),
            PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE
        );
        // Bits above 51 of the address are dropped.
        assert_eq!(
            PageTableEntry::new(u64::MAX, PteFlags::empty()).0,
            ADDR_MASK
        );
    }

    #[test]
    fn indices() {
        let a = 0x0000_7FFF_FFFF_F000u64;
        assert_eq!(table_index(a, 4), 0xFF);
        assert_eq!(table_index(a, 1), 0x1FF);
        assert_eq!(table_index(0x4020_1000, 3), 1);
        assert_eq!(table_index(0x4020_1000, 2), 1);
        assert_eq!(table_index(0x4020_1000, 1), 1);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(PageSize::Size2M.bytes(), 0x20_0000);
        assert_eq!(PageSize::from_level(3), Some(PageSize::Size1G));
        assert_eq!(PageSize::from_level(4), None);
        assert_eq!(PageSize::Size4K.level(), 1);
    }
}
