//! Mapping a passed-through VF's BAR into a guest's nested page table, and moving it: the pure
//! part of `hv::passthrough`, generic over the table's memory so host tests drive it.
//!
//! A BAR is mapped 4 KiB page by page, minus the page(s) of the MSI-X table, which stay
//! unmapped so the hypervisor sees every access to them. Only a BAR wholly outside the guest's
//! RAM is mapped: a BAR the guest places over its RAM (or at 0, unassigned) stays unmapped and
//! reads as open bus. A move unmaps the old range before mapping the new one; tables emptied by
//! the unmap give their frames back (`crate::table_frames`).

use core::ops::Range;
use guestfw::guest_layout::RamLayout;
use svm::npt::{MapError, NptMapper};
use svm::paging::{FrameSource, PhysAccess, PteFlags};
use svm::{Gpa, Hpa};

/// One BAR as the guest placed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarPlacement {
    /// Guest-physical base (0: unassigned).
    pub gpa: u64,
    /// Host-physical base of the VF's BAR.
    pub hpa: u64,
    pub size: u64,
    /// Offsets inside the BAR that stay trapped (the MSI-X table's pages), empty if none.
    pub trapped: Range<u64>,
}

impl BarPlacement {
    /// The guest-physical range to map, if the BAR is mapped at all: outside RAM and below the
    /// nested page table's reach (`svm::npt::MAX_GPA`; a guest may program a 64-bit BAR
    /// anywhere, and one it placed out of reach is simply unreachable, as on hardware whose
    /// address bus is narrower).
    pub fn mapped_range(&self, ram: RamLayout) -> Option<Range<u64>> {
        let size = self.size.checked_next_multiple_of(4096)?;
        let end = self.gpa.checked_add(size)?;
        let placed = self.gpa != 0 && !ram.overlaps(self.gpa, end) && self.gpa.is_multiple_of(4096);
        (placed && end <= svm::npt::MAX_GPA).then_some(self.gpa..end)
    }
}

/// Maps `bar` (page by page, the trapped pages left out). On error the pages mapped so far
/// are unmapped again.
pub fn map_bar<M: FrameSource + PhysAccess>(
    npt: &mut NptMapper<M>,
    bar: &BarPlacement,
    ram: RamLayout,
) -> Result<(), MapError> {
    let Some(range) = bar.mapped_range(ram) else {
        return Ok(());
    };
    let flags = PteFlags::WRITABLE | PteFlags::PCD | PteFlags::PWT;
    let mut offset = 0;
    while range.start + offset < range.end {
        let trapped = bar.trapped.contains(&offset);
        if !trapped {
            let gpa = Gpa(range.start + offset);
            if let Err(e) = npt.map(gpa, Hpa(bar.hpa + offset), 4096, flags).map(|_| ()) {
                let _ = npt.unmap(Gpa(range.start), offset);
                return Err(e);
            }
        }
        offset += 4096;
    }
    Ok(())
}

/// Unmaps what [`map_bar`] mapped for `bar`.
pub fn unmap_bar<M: FrameSource + PhysAccess>(
    npt: &mut NptMapper<M>,
    bar: &BarPlacement,
    ram: RamLayout,
) -> Result<(), MapError> {
    match bar.mapped_range(ram) {
        Some(r) => npt.unmap(Gpa(r.start), r.end - r.start),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table_frames::{TableFrames, RUNTIME_FRAMES};
    use pagetable::testmem::FakeMem;

    /// Fake memory whose table frames go through a guest's `TableFrames`.
    struct Pooled {
        mem: FakeMem,
        frames: TableFrames,
    }

    impl PhysAccess for Pooled {
        fn read_u64(&self, pa: pagetable::Hpa) -> u64 {
            self.mem.read_u64(pa)
        }
        fn write_u64(&mut self, pa: pagetable::Hpa, value: u64) {
            self.mem.write_u64(pa, value)
        }
    }

    impl FrameSource for Pooled {
        fn alloc_frame(&mut self) -> Option<pagetable::Hpa> {
            let mem = &mut self.mem;
            self.frames
                .alloc(|| mem.alloc_frame().map(|h| h.0))
                .ok()
                .map(pagetable::Hpa)
        }
        fn free_frame(&mut self, frame: pagetable::Hpa) {
            self.frames.free(frame.0);
        }
    }

    const RAM: u64 = 64 << 20;
    const LAYOUT: RamLayout = RamLayout::new(RAM);

    fn guest() -> NptMapper<Pooled> {
        let mut npt = NptMapper::new(Pooled {
            mem: FakeMem::new(0x1000_0000),
            frames: TableFrames::new(),
        })
        .unwrap();
        let rw = PteFlags::WRITABLE;
        npt.map(Gpa(0), Hpa(0x4000_0000), RAM, rw).unwrap();
        npt.mem_mut().frames.limit_growth(RUNTIME_FRAMES as u32);
        npt
    }

    fn bar(gpa: u64) -> BarPlacement {
        BarPlacement {
            gpa,
            hpa: 0xfe00_0000,
            size: 0x4000,
            trapped: 0x2000..0x3000,
        }
    }

    #[test]
    fn a_move_unmaps_the_old_place_and_keeps_the_msix_page_trapped() {
        let mut npt = guest();
        let a = bar(0xc000_0000);
        map_bar(&mut npt, &a, LAYOUT).unwrap();
        assert_eq!(
            npt.translate(Gpa(0xc000_1000)).unwrap().hpa,
            Hpa(0xfe00_1000)
        );
        assert!(
            npt.translate(Gpa(0xc000_2000)).is_none(),
            "MSI-X page mapped"
        );
        let b = bar(0xd020_0000);
        unmap_bar(&mut npt, &a, LAYOUT).unwrap();
        map_bar(&mut npt, &b, LAYOUT).unwrap();
        assert!(
            npt.translate(Gpa(0xc000_0000)).is_none(),
            "old place still mapped"
        );
        assert_eq!(
            npt.translate(Gpa(0xd020_3000)).unwrap().hpa,
            Hpa(0xfe00_3000)
        );
    }

    /// The hole an outside review found: moves leaked the old mapping and the tables of every
    /// new 2 MiB region. 100,000 moves across the whole 32-bit MMIO hole take no frame beyond
    /// the first few, and the RAM mapping is untouched.
    #[test]
    fn a_hundred_thousand_moves_take_no_frames() {
        let mut npt = guest();
        let mut at = bar(0xc000_0000);
        map_bar(&mut npt, &at, LAYOUT).unwrap();
        let after_first = npt.mem().frames.counts().taken;
        let mut x = 0x1234_5678u64;
        for _ in 0..100_000 {
            // A different 2 MiB region of [3 GiB, 4 GiB) each time (xorshift).
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let to = bar(0xc000_0000 + (x % 512) * (2 << 20) + (x >> 40 & 0x1f) * 0x4000);
            unmap_bar(&mut npt, &at, LAYOUT).unwrap();
            map_bar(&mut npt, &to, LAYOUT).unwrap();
            at = to;
        }
        let c = npt.mem().frames.counts();
        assert!(c.taken <= after_first + 2, "{c:?} after {after_first}");
        assert_eq!(
            npt.translate(Gpa(RAM - 4096)).unwrap().hpa,
            Hpa(0x4000_0000 + RAM - 4096)
        );
    }

    #[test]
    fn bars_over_ram_or_unassigned_or_wrapping_are_not_mapped() {
        assert_eq!(bar(0).mapped_range(LAYOUT), None);
        assert_eq!(bar(RAM - 0x1000).mapped_range(LAYOUT), None);
        assert_eq!(bar(!0xfff).mapped_range(LAYOUT), None);
        assert_eq!(bar(0xc000_0800).mapped_range(LAYOUT), None);
        assert_eq!(bar(RAM).mapped_range(LAYOUT), Some(RAM..RAM + 0x4000));
        // Found by the fuzzing guest: a 64-bit BAR programmed far beyond the NPT's reach.
        assert_eq!(bar(0xce66_2ded_025d_4000).mapped_range(LAYOUT), None);
        let top = svm::npt::MAX_GPA;
        assert_eq!(
            bar(top - 0x4000).mapped_range(LAYOUT),
            Some(top - 0x4000..top)
        );
        assert_eq!(bar(top - 0x2000).mapped_range(LAYOUT), None);
    }

    #[test]
    fn with_ram_above_4_gib_bars_go_in_the_hole_or_above_ram() {
        const GIB: u64 = 1 << 30;
        let big = RamLayout::new(5 * GIB);
        assert_eq!(bar(3 * GIB - 0x1000).mapped_range(big), None);
        assert_eq!(
            bar(3 * GIB).mapped_range(big),
            Some(3 * GIB..3 * GIB + 0x4000)
        );
        assert_eq!(
            bar(4 * GIB - 0x2000).mapped_range(big),
            None,
            "runs into high RAM"
        );
        assert_eq!(bar(5 * GIB).mapped_range(big), None);
        assert_eq!(
            bar(6 * GIB).mapped_range(big),
            Some(6 * GIB..6 * GIB + 0x4000)
        );
    }

    #[test]
    fn a_spent_budget_is_an_error_and_leaves_nothing_half_mapped() {
        let mut npt = guest();
        npt.mem_mut().frames.limit_growth(0);
        assert_eq!(
            map_bar(&mut npt, &bar(0x80_0000_0000), LAYOUT),
            Err(MapError::OutOfFrames)
        );
        assert!(npt.translate(Gpa(0x80_0000_0000)).is_none());
    }
}
