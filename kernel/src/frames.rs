//! Physical memory allocation: a list of free ranges built from the boot memory map minus what is in
//! use (the hypervisor image, boot modules, low memory), handing out aligned contiguous ranges.
//! Guests get large contiguous ranges once at start; nothing is freed yet.

pub const MAX_RANGES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
}

pub struct FrameAllocator {
    free: [Range; MAX_RANGES],
    len: usize,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAllocator {
    pub const fn new() -> Self {
        FrameAllocator {
            free: [Range { start: 0, end: 0 }; MAX_RANGES],
            len: 0,
        }
    }

    /// Adds usable memory (rounded inwards to 4 KiB). Overlapping input is the caller's bug.
    pub fn add(&mut self, start: u64, end: u64) {
        let start = (start + 0xfff) & !0xfff;
        let end = end & !0xfff;
        if start < end && self.len < MAX_RANGES {
            self.free[self.len] = Range { start, end };
            self.len += 1;
        }
    }

    /// Takes `[start, end)` out of the free ranges (it may cover parts of several or none).
    pub fn reserve(&mut self, start: u64, end: u64) {
        let start = start & !0xfff;
        let end = (end + 0xfff) & !0xfff;
        let mut i = 0;
        while i < self.len {
            let r = self.free[i];
            if r.end <= start || r.start >= end {
                i += 1;
                continue;
            }
            let before = Range {
                start: r.start,
                end: start,
            };
            let after = Range {
                start: end,
                end: r.end,
            };
            self.remove(i);
            for part in [before, after] {
                if part.start < part.end {
                    self.insert(part);
                }
            }
            // Re-examine from the start: parts were appended.
            i = 0;
        }
    }

    /// A range of `size` bytes aligned to `align` (a power of two ≥ 4096) that ends at or below `limit`.
    pub fn alloc_below(&mut self, size: u64, align: u64, limit: u64) -> Option<u64> {
        debug_assert!(align.is_power_of_two() && align >= 0x1000);
        let size = (size + 0xfff) & !0xfff;
        // Lowest fitting address first: simple and deterministic (test logs show the same addresses).
        let start = self
            .ranges()
            .iter()
            .filter_map(|r| {
                let start = r.start.checked_add(align - 1)? & !(align - 1);
                let end = start.checked_add(size)?;
                (end <= r.end && end <= limit).then_some(start)
            })
            .min()?;
        self.reserve(start, start + size);
        Some(start)
    }

    /// Like [`FrameAllocator::alloc_below`], but the range starts at or above `min`.
    pub fn alloc_above(&mut self, size: u64, align: u64, min: u64) -> Option<u64> {
        let size = (size + 0xfff) & !0xfff;
        let start = self
            .ranges()
            .iter()
            .filter_map(|r| {
                let from = r.start.max(min);
                let start = from.checked_add(align - 1)? & !(align - 1);
                let end = start.checked_add(size)?;
                (end <= r.end).then_some(start)
            })
            .min()?;
        self.reserve(start, start + size);
        Some(start)
    }

    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        self.alloc_below(size, align, u64::MAX)
    }

    pub fn free_bytes(&self) -> u64 {
        self.ranges().iter().map(|r| r.end - r.start).sum()
    }

    /// The largest block [`FrameAllocator::alloc_below`] could hand out with `align` below
    /// `limit` (for errors that say what would have fitted).
    pub fn largest_free(&self, align: u64, limit: u64) -> u64 {
        self.ranges()
            .iter()
            .filter_map(|r| {
                let start = r.start.checked_add(align - 1)? & !(align - 1);
                r.end.min(limit).checked_sub(start)
            })
            .max()
            .unwrap_or(0)
    }

    pub fn ranges(&self) -> &[Range] {
        &self.free[..self.len]
    }

    fn remove(&mut self, i: usize) {
        self.free.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    fn insert(&mut self, r: Range) {
        if self.len < MAX_RANGES {
            self.free[self.len] = r;
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_map() -> FrameAllocator {
        let mut a = FrameAllocator::new();
        a.add(0, 0x9fc00);
        a.add(0x100000, 0x4000_0000);
        a
    }

    #[test]
    fn rounds_inwards() {
        let mut a = FrameAllocator::new();
        a.add(0x1001, 0x3fff);
        assert_eq!(
            a.ranges(),
            &[Range {
                start: 0x2000,
                end: 0x3000
            }]
        );
    }

    #[test]
    fn reserve_splits_and_removes() {
        let mut a = qemu_map();
        a.reserve(0, 0x1000);
        a.reserve(0x200000, 0x280123);
        let mut r: Vec<_> = a.ranges().to_vec();
        r.sort_by_key(|r| r.start);
        assert_eq!(
            r,
            [
                Range {
                    start: 0x1000,
                    end: 0x9f000
                },
                Range {
                    start: 0x100000,
                    end: 0x200000
                },
                Range {
                    start: 0x281000,
                    end: 0x4000_0000
                }
            ]
        );
        assert_eq!(
            a.free_bytes(),
            0x9e000 + 0x100000 + (0x4000_0000 - 0x281000)
        );
    }

    #[test]
    fn aligned_blocks_for_large_pages() {
        const GIB: u64 = 1 << 30;
        let mut a = FrameAllocator::new();
        // A host whose RAM continues above its own MMIO hole.
        a.add(0x10_0000, 0x8000_0000);
        a.add(4 * GIB, 10 * GIB);
        assert_eq!(a.largest_free(GIB, u64::MAX), 6 * GIB);
        assert_eq!(a.largest_free(GIB, 8 * GIB), 4 * GIB);
        assert_eq!(
            a.largest_free(2 << 20, 0x4000_0000),
            0x4000_0000 - (2 << 20)
        );
        let low = a.alloc(3 * GIB, GIB).unwrap();
        let high = a.alloc(2 * GIB, GIB).unwrap();
        assert_eq!((low, high), (4 * GIB, 7 * GIB));
        assert_eq!(a.alloc(2 * GIB, GIB), None);
        assert_eq!(a.largest_free(GIB, u64::MAX), GIB);
        assert_eq!(a.free_bytes(), 0x8000_0000 - 0x10_0000 + GIB);
    }

    #[test]
    fn allocation_above_a_minimum() {
        let mut a = qemu_map();
        let p = a.alloc_above(0x1000, 0x1000, 0x1000_0000).unwrap();
        assert_eq!(p, 0x1000_0000);
        assert_eq!(a.alloc_above(0x1000, 0x1000, 0x4000_0000), None);
        assert!(a
            .ranges()
            .iter()
            .all(|r| r.end <= p || r.start >= p + 0x1000));
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_bounded() {
        let mut a = qemu_map();
        let low = a.alloc_below(0x1000, 0x1000, 0x100000).unwrap();
        assert!(low < 0x100000);
        let g1 = a.alloc(16 << 20, 2 << 20).unwrap();
        let g2 = a.alloc(16 << 20, 2 << 20).unwrap();
        assert_eq!(g1 % (2 << 20), 0);
        assert!(g1 + (16 << 20) <= g2 || g2 + (16 << 20) <= g1);
        for r in a.ranges() {
            assert!(r.end <= g1 || r.start >= g1 + (16 << 20));
        }
        assert_eq!(a.alloc(2 << 30, 0x1000), None);
        assert_eq!(a.alloc_below(0x1000, 0x1000, 0x1000), None);
    }
}
