//! The driver's side of a split queue, minimal: what the tests and fuzz targets use to put
//! chains in front of the device, and what a test guest could use. It trusts its caller.

use pagetable::addr::Gpa;

use crate::mem::{GuestMemory, OutOfRange};
use crate::ring::{
    avail_ring_bytes, need_event, used_ring_bytes, Descriptor, QueueLayout, UsedElem,
};

/// A driver's view of one queue.
#[derive(Clone, Debug)]
pub struct DriverQueue {
    pub layout: QueueLayout,
    /// Available `idx` the driver writes next.
    pub next_avail: u16,
    /// Used `idx` the driver has consumed up to.
    pub last_used: u16,
}

impl DriverQueue {
    /// A queue at `layout` with both rings zeroed (as a driver allocates them, §2.7.10.1).
    pub fn new(mem: &mut impl GuestMemory, layout: QueueLayout) -> Result<Self, OutOfRange> {
        zero(mem, layout.avail, avail_ring_bytes(layout.size))?;
        zero(mem, layout.used, used_ring_bytes(layout.size))?;
        Ok(DriverQueue {
            layout,
            next_avail: 0,
            last_used: 0,
        })
    }

    /// Writes descriptor `index` of the queue's table.
    pub fn set_desc(
        &self,
        mem: &mut impl GuestMemory,
        index: u16,
        d: Descriptor,
    ) -> Result<(), OutOfRange> {
        mem.write(self.layout.desc_addr(index), &d.to_bytes())
    }

    /// Makes the chain at `head` available: ring entry, then `idx` (§2.7.13).
    pub fn publish(&mut self, mem: &mut impl GuestMemory, head: u16) -> Result<(), OutOfRange> {
        mem.write_u16(self.layout.avail_ring_addr(self.next_avail), head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        mem.write_u16(self.layout.avail_idx_addr(), self.next_avail)
    }

    /// Whether the driver must kick after moving available `idx` from `old` to
    /// `self.next_avail` (§2.7.10.1).
    pub fn must_kick(
        &self,
        mem: &impl GuestMemory,
        old: u16,
        event_idx: bool,
    ) -> Result<bool, OutOfRange> {
        if event_idx {
            let event = mem.read_u16(self.layout.avail_event_addr())?;
            Ok(need_event(event, self.next_avail, old))
        } else {
            Ok(mem.read_u16(self.layout.used_flags_addr())? & 1 == 0)
        }
    }

    /// The next used element, if the device has written one.
    pub fn pop_used(&mut self, mem: &impl GuestMemory) -> Result<Option<UsedElem>, OutOfRange> {
        if mem.read_u16(self.layout.used_idx_addr())? == self.last_used {
            return Ok(None);
        }
        let at = self.layout.used_ring_addr(self.last_used);
        let id = mem.read_u32(at)?;
        let len = mem.read_u32(Gpa(at.as_u64() + 4))?;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some(UsedElem { id, len }))
    }
}

fn zero(mem: &mut impl GuestMemory, gpa: Gpa, len: u64) -> Result<(), OutOfRange> {
    const ZEROS: [u8; 64] = [0; 64];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(64);
        mem.write(Gpa(gpa.as_u64() + off), &ZEROS[..n as usize])?;
        off += n;
    }
    Ok(())
}
