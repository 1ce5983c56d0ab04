//! The page-table frames of one guest's nested page table: what its tables may take from the
//! hypervisor's allocator, and the frames emptied tables give back.
//!
//! A guest changes its nested page table at run time (it moves its VF's BARs), so what those
//! tables take must be bounded and returned: otherwise a loop of BAR moves drains the memory
//! every other guest and the hypervisor allocate from. After the guest is built, its tables may
//! grow by at most a fixed budget; frames of tables that become empty go to a free list and are
//! used again before the budget is touched.

/// Frames kept for reuse (and the run-time budget): enough for the tables of a VF's BARs
/// anywhere in the guest-physical space (at most three new tables per 2 MiB region touched).
pub const RUNTIME_FRAMES: usize = 64;

/// Why a frame could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The guest's run-time budget is spent.
    BudgetSpent,
    /// The hypervisor's allocator is empty.
    NoMemory,
}

/// Counters for the guest's report and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames taken from the hypervisor's allocator, ever.
    pub taken: u32,
    /// Frames in use as tables now.
    pub in_use: u32,
    /// Frames waiting on the free list.
    pub free: u32,
}

/// The frame book-keeping of one table (the frames themselves are the caller's to allocate).
#[derive(Debug)]
pub struct TableFrames {
    free: [u64; RUNTIME_FRAMES],
    free_len: usize,
    /// How many frames may be taken from the allocator in total (`u32::MAX` while building).
    limit: u32,
    counts: FrameCounts,
}

impl Default for TableFrames {
    fn default() -> Self {
        Self::new()
    }
}

impl TableFrames {
    /// No limit until [`TableFrames::limit_growth`] (the guest's initial tables).
    pub const fn new() -> Self {
        Self {
            free: [0; RUNTIME_FRAMES],
            free_len: 0,
            limit: u32::MAX,
            counts: FrameCounts {
                taken: 0,
                in_use: 0,
                free: 0,
            },
        }
    }

    /// From now on at most `extra` more frames come from the allocator.
    pub fn limit_growth(&mut self, extra: u32) {
        self.limit = self.counts.taken.saturating_add(extra);
    }

    /// A frame for a new table: one from the free list, else one from `take` (the allocator)
    /// while the budget lasts.
    pub fn alloc(&mut self, take: impl FnOnce() -> Option<u64>) -> Result<u64, FrameError> {
        let frame = if self.free_len > 0 {
            self.free_len -= 1;
            self.counts.free -= 1;
            self.free[self.free_len]
        } else if self.counts.taken >= self.limit {
            return Err(FrameError::BudgetSpent);
        } else {
            let f = take().ok_or(FrameError::NoMemory)?;
            self.counts.taken += 1;
            f
        };
        self.counts.in_use += 1;
        Ok(frame)
    }

    /// Takes back the frame of a table that became empty. Returns false if the free list is
    /// full (the frame stays out of use: the list holds the whole run-time budget, so this
    /// only happens when more initial tables empty than it has room for).
    pub fn free(&mut self, frame: u64) -> bool {
        self.counts.in_use = self.counts.in_use.saturating_sub(1);
        if self.free_len == RUNTIME_FRAMES {
            return false;
        }
        self.free[self.free_len] = frame;
        self.free_len += 1;
        self.counts.free += 1;
        true
    }

    pub fn counts(&self) -> FrameCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_before_taking_and_a_budget() {
        let mut next = 0x10_0000u64;
        let mut take = || {
            next += 0x1000;
            Some(next)
        };
        let mut t = TableFrames::new();
        let a = t.alloc(&mut take).unwrap();
        let _b = t.alloc(&mut take).unwrap();
        t.limit_growth(1);
        let c = t.alloc(&mut take).unwrap();
        assert_eq!(t.alloc(&mut take), Err(FrameError::BudgetSpent));
        assert!(t.free(c));
        assert!(t.free(a));
        // Freed frames come back, last in first out, without taking new ones.
        assert_eq!(t.alloc(&mut take), Ok(a));
        assert_eq!(t.alloc(&mut take), Ok(c));
        assert_eq!(
            t.counts(),
            FrameCounts {
                taken: 3,
                in_use: 3,
                free: 0
            }
        );
        assert_eq!(t.alloc(&mut take), Err(FrameError::BudgetSpent));
        assert_eq!(TableFrames::new().alloc(|| None), Err(FrameError::NoMemory));
    }

    #[test]
    fn a_full_free_list_refuses() {
        let mut t = TableFrames::new();
        for i in 0..RUNTIME_FRAMES as u64 {
            assert!(t.free(i << 12));
        }
        assert!(!t.free(0xdead_0000));
        assert_eq!(t.counts().free, RUNTIME_FRAMES as u32);
    }
}
