//! Fake physical memory for host tests: sparse 4 KiB frames in a `HashMap`, plus a bump frame
//! allocator that hands out garbage-filled frames (so table code must zero what it allocates).

use std::collections::{HashMap, HashSet};

use crate::mem::{FrameSource, Hpa, PhysAccess};

/// Sparse fake memory with a frame allocator and an optional frame limit.
#[derive(Default)]
pub struct FakeMem {
    frames: HashMap<u64, Box<[u64; 512]>>,
    next: u64,
    pub allocated: HashSet<u64>,
    pub freed: Vec<u64>,
    pub limit: Option<usize>,
    /// Every write, in order (address, value), when `record` is set.
    pub writes: Vec<(u64, u64)>,
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

    /// Write a word anywhere already backed (no recording).
    pub fn poke(&mut self, addr: u64, value: u64) {
        let frame = self
            .frames
            .get_mut(&(addr & !0xFFF))
            .unwrap_or_else(|| panic!("poke of unbacked {addr:#x}"));
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
