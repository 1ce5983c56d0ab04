//! The memory-access traits the table code is generic over.
//!
//! The kernel implements [`PhysAccess`] over its direct map (volatile accesses: the IOMMU reads
//! and, for the completion-wait semaphore and the event log, writes some of these words) and
//! [`FrameSource`] over its frame allocator; host tests implement both over fake memory
//! (`testmem::FakeMem`, with the `testmem` feature). One implementation serves every user: the
//! `svm` nested-page-table mapper and the `iommu` crate re-export these traits.

use crate::addr::Hpa;

/// Access to host-physical memory, for reading and writing tables, rings and entries.
///
/// Every access is a naturally aligned 64-bit word. Words a device writes (the IOMMU's
/// completion-wait store, event-log entries) are read again and again while polling, so the
/// kernel's implementation must use volatile accesses.
pub trait PhysAccess {
    /// Read the naturally aligned 64-bit word at `pa`.
    fn read_u64(&self, pa: Hpa) -> u64;
    /// Write the naturally aligned 64-bit word at `pa`.
    fn write_u64(&mut self, pa: Hpa, value: u64);
}

/// A source of 4 KiB host-physical frames for page tables.
pub trait FrameSource {
    /// A fresh 4 KiB-aligned frame (its contents need not be zero), or `None` when exhausted.
    fn alloc_frame(&mut self) -> Option<Hpa>;

    /// Take back a frame the mapper no longer uses (an emptied table). The default leaks it.
    fn free_frame(&mut self, frame: Hpa) {
        let _ = frame;
    }
}

impl<T: PhysAccess + ?Sized> PhysAccess for &mut T {
    fn read_u64(&self, pa: Hpa) -> u64 {
        (**self).read_u64(pa)
    }

    fn write_u64(&mut self, pa: Hpa, value: u64) {
        (**self).write_u64(pa, value);
    }
}

impl<T: FrameSource + ?Sized> FrameSource for &mut T {
    fn alloc_frame(&mut self) -> Option<Hpa> {
        (**self).alloc_frame()
    }

    fn free_frame(&mut self, frame: Hpa) {
        (**self).free_frame(frame);
    }
}
