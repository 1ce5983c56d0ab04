//! Fake physical memory for host tests: sparse 4 KiB frames in a `HashMap`, plus a bump frame
//! allocator that hands out garbage-filled frames (so table code must zero what it allocates).
//!
//! Compiled for this crate's tests and, with the `testmem` feature, for dependents' tests
//! (`[dev-dependencies] pagetable = { path = "../pagetable", features = ["testmem"] }`).

use std::boxed::Box;
use std::collections::{HashMap, HashSet};
use std::vec::Vec;

use crate::addr::Hpa;
use crate::mem::{FrameSource, PhysAccess};

/// Sparse fake memory with a frame allocator and an optional frame limit.
#[derive(Default)]
pub struct FakeMem {
    frames: HashMap<u64, Box<[u64; 512]>>,
    next: u64,
    /// Frames handed out by [`FrameSource::alloc_frame`] and not freed.
    pub allocated: HashSet<u64>,
    /// Frames given back, in order.
    pub freed: Vec<u64>,
    /// When set, `alloc_frame` fails once this many frames are live.
    pub limit: Option<usize>,
    /// Every write through [`PhysAccess`], in order (address, value), when `record` is set.
    pub writes: Vec<(u64, u64)>,
    /// Record writes in `writes`.
    pub record: bool,
}

impl FakeMem {
    /// Table frames are handed out from `base` upwards.
    pub fn new(base: u64) -> Self {
        Self {
            next: base,
            ..Default::default()
        }
    }

    /// Back `len` bytes at `base` with zeroed frames (rings, device tables, semaphores).
    pub fn back(&mut self, base: u64, len: u64) {
        let mut f = base & !0xFFF;
        while f < base + len {
            self.frames.entry(f).or_insert_with(|| Box::new([0; 512]));
            f += 0x1000;
        }
    }

    /// Frames currently allocated and not freed.
    pub fn live_frames(&self) -> usize {
        self.allocated.len()
    }

    /// The word at `addr`, if backed.
    pub fn peek(&self, addr: u64) -> Option<u64> {
        self.frames
            .get(&(addr & !0xFFF))
            .map(|f| f[((addr & 0xFFF) / 8) as usize])
    }

    /// Write a word anywhere, backing its frame with zeros first if needed (for building guest
    /// page tables or hand-made tables). Not recorded.
    pub fn poke(&mut self, addr: u64, value: u64) {
        let frame = self
            .frames
            .entry(addr & !0xFFF)
            .or_insert_with(|| Box::new([0; 512]));
        frame[((addr & 0xFFF) / 8) as usize] = value;
    }
}

impl PhysAccess for FakeMem {
    fn read_u64(&self, pa: Hpa) -> u64 {
        assert_eq!(pa.0 % 8, 0, "unaligned read {pa:?}");
        self.peek(pa.0)
            .unwrap_or_else(|| panic!("read of unbacked frame {pa:?}"))
    }

    fn write_u64(&mut self, pa: Hpa, value: u64) {
        assert_eq!(pa.0 % 8, 0, "unaligned write {pa:?}");
        assert!(
            self.frames.contains_key(&(pa.0 & !0xFFF)),
            "write to unbacked frame {pa:?}"
        );
        if self.record {
            self.writes.push((pa.0, value));
        }
        self.poke(pa.0, value);
    }
}

impl FrameSource for FakeMem {
    fn alloc_frame(&mut self) -> Option<Hpa> {
        if let Some(limit) = self.limit {
            if self.allocated.len() >= limit {
                return None;
            }
        }
        let f = self.next;
        self.next += 0x1000;
        // Fill with garbage so the mapper must zero it.
        self.frames
            .insert(f, Box::new([0xDEAD_BEEF_DEAD_BEEF; 512]));
        self.allocated.insert(f);
        Some(Hpa(f))
    }

    fn free_frame(&mut self, frame: Hpa) {
        assert!(self.allocated.remove(&frame.0), "double free {frame:?}");
        self.freed.push(frame.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_garbage_filled_in_order_up_to_the_limit() {
        let mut m = FakeMem::new(0x10_0000);
        m.limit = Some(2);
        assert_eq!(m.alloc_frame(), Some(Hpa(0x10_0000)));
        assert_eq!(m.alloc_frame(), Some(Hpa(0x10_1000)));
        assert_eq!(m.alloc_frame(), None);
        assert_eq!(m.read_u64(Hpa(0x10_1FF8)), 0xDEAD_BEEF_DEAD_BEEF);
        m.free_frame(Hpa(0x10_0000));
        assert_eq!((m.live_frames(), m.freed.as_slice()), (1, &[0x10_0000][..]));
    }

    #[test]
    fn writes_are_recorded_pokes_are_not() {
        let mut m = FakeMem::new(0);
        m.back(0x2000, 0x1001); // two frames
        assert_eq!(m.peek(0x3FF8), Some(0));
        assert_eq!(m.peek(0x4000), None);
        m.record = true;
        m.write_u64(Hpa(0x2008), 7);
        m.poke(0x9000, 9); // backs the frame
        assert_eq!(m.writes, vec![(0x2008, 7)]);
        assert_eq!((m.read_u64(Hpa(0x2008)), m.read_u64(Hpa(0x9000))), (7, 9));
    }

    #[test]
    #[should_panic(expected = "write to unbacked frame")]
    fn write_to_unbacked_memory_panics() {
        FakeMem::new(0).write_u64(Hpa(0x1000), 1);
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_panics() {
        let mut m = FakeMem::new(0);
        let f = m.alloc_frame().unwrap();
        m.free_frame(f);
        m.free_frame(f);
    }

    #[test]
    fn mutable_references_implement_the_traits() {
        fn alloc_and_write<M: PhysAccess + FrameSource>(mut m: M) -> Hpa {
            let f = m.alloc_frame().unwrap();
            m.write_u64(f, 5);
            f
        }
        let mut m = FakeMem::new(0x5000);
        let f = alloc_and_write(&mut m);
        assert_eq!(m.read_u64(f), 5);
        FrameSource::free_frame(&mut &mut m, f);
        assert_eq!(m.live_frames(), 0);
    }
}
