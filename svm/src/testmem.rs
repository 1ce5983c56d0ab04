//! Fake physical memory for host tests: sparse 4 KiB frames in a `HashMap`.

use std::collections::{HashMap, HashSet};

use crate::addr::{Gpa, Hpa};
use crate::paging::{FrameSource, GuestMemory, PhysAccess};

/// Sparse fake memory plus a bump frame allocator with an optional limit.
#[derive(Default)]
pub struct FakeMem {
    frames: HashMap<u64, Box<[u64; 512]>>,
    next: u64,
    pub allocated: HashSet<u64>,
    pub freed: Vec<u64>,
    pub limit: Option<usize>,
}

impl FakeMem {
    /// Table frames are handed out from `base` upwards.
    pub fn new(base: u64) -> Self {
        Self {
            next: base,
            ..Default::default()
        }
    }

    /// Frames currently allocated and not freed.
    pub fn live_frames(&self) -> usize {
        self.allocated.len()
    }

    /// Write a word anywhere (creating the frame), for building guest page tables.
    pub fn poke(&mut self, addr: u64, value: u64) {
        let frame = self
            .frames
            .entry(addr & !0xFFF)
            .or_insert_with(|| Box::new([0; 512]));
        frame[((addr & 0xFFF) / 8) as usize] = value;
    }

    fn peek(&self, addr: u64) -> Option<u64> {
        self.frames
            .get(&(addr & !0xFFF))
            .map(|f| f[((addr & 0xFFF) / 8) as usize])
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
            "write to unallocated frame {pa:?}"
        );
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

impl GuestMemory for FakeMem {
    fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        self.peek(gpa.0)
    }
}
