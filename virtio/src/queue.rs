//! The device's side of one split virtqueue: taking available chains, returning used ones, and
//! both directions of notification suppression (virtio 1.2 §2.7.6-§2.7.10, §2.7.13-§2.7.14).
//!
//! Designed for a backend that polls: while it polls it calls
//! [`DeviceQueue::disable_notifications`] so a busy driver does not kick (no exit); when it
//! has found nothing for a while it calls [`DeviceQueue::enable_notifications`], which
//! re-checks the available index after publishing "kick me" (the classic race: a chain made
//! available between the last empty poll and the publication would otherwise sleep until the
//! next kick). When it returns `true` the backend must keep polling.
//!
//! After adding used elements the backend asks [`DeviceQueue::should_interrupt`] whether the
//! driver wants a used-buffer notification: `used_event` with `VIRTIO_F_EVENT_IDX`, else the
//! `VIRTQ_AVAIL_F_NO_INTERRUPT` flag (§2.7.7.2).

use crate::chain::{walk, Chain, ChainError, ChainLimits};
use crate::mem::{Barrier, GuestMemory, OutOfRange};
use crate::ring::{need_event, AvailFlags, QueueLayout, UsedFlags};

/// Why the queue cannot go on; the device should set DEVICE_NEEDS_RESET (§2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// Available `idx` moved by more than the queue size since the device last looked: the
    /// driver is broken or hostile (§2.7.6.1: `idx` never goes back, and the ring cannot
    /// hold more than `size` entries).
    AvailIndexJump { last: u16, idx: u16, size: u16 },
    /// The chain at `head` is malformed.
    Chain { head: u16, error: ChainError },
    /// A ring access left guest RAM (the layout was not checked, or RAM changed).
    Memory(OutOfRange),
    /// The queue broke earlier; it stays broken until reset.
    Broken,
}

impl From<OutOfRange> for QueueError {
    fn from(e: OutOfRange) -> Self {
        QueueError::Memory(e)
    }
}

/// The negotiated features that change how a queue works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFeatures {
    /// `VIRTIO_F_EVENT_IDX`: `used_event` / `avail_event` instead of the flags.
    pub event_idx: bool,
}

/// The device side of one enabled queue.
#[derive(Clone, Debug)]
pub struct DeviceQueue {
    layout: QueueLayout,
    features: QueueFeatures,
    limits: ChainLimits,
    /// Available index of the next chain to take.
    last_avail: u16,
    /// Used index of the next element to write.
    next_used: u16,
    /// Used index when [`DeviceQueue::should_interrupt`] was last asked.
    signalled_used: u16,
    broken: bool,
}

impl DeviceQueue {
    /// A queue just enabled by the driver; `layout` must have passed [`QueueLayout::check`].
    pub fn new(layout: QueueLayout, features: QueueFeatures, limits: ChainLimits) -> Self {
        DeviceQueue {
            layout,
            features,
            limits,
            last_avail: 0,
            next_used: 0,
            signalled_used: 0,
            broken: false,
        }
    }

    pub fn layout(&self) -> &QueueLayout {
        &self.layout
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn fail<T>(&mut self, e: QueueError) -> Result<T, QueueError> {
        self.broken = true;
        Err(e)
    }

    /// Chains the driver has made available and the device has not taken yet.
    pub fn pending(&mut self, mem: &impl GuestMemory) -> Result<u16, QueueError> {
        if self.broken {
            return Err(QueueError::Broken);
        }
        let idx = match mem.read_u16(self.layout.avail_idx_addr()) {
            Ok(i) => i,
            Err(e) => return self.fail(e.into()),
        };
        let n = idx.wrapping_sub(self.last_avail);
        if n > self.layout.size {
            return self.fail(QueueError::AvailIndexJump {
                last: self.last_avail,
                idx,
                size: self.layout.size,
            });
        }
        Ok(n)
    }

    /// Takes the next available chain, if any. Any error breaks the queue (the caller marks
    /// the device DEVICE_NEEDS_RESET); a chain that was taken but refused is not returned to
    /// the used ring, since the device cannot tell where its status would go.
    pub fn pop(&mut self, mem: &impl GuestMemory) -> Result<Option<Chain>, QueueError> {
        if self.pending(mem)? == 0 {
            return Ok(None);
        }
        // The ring entry is read after the index that announced it.
        mem.barrier(Barrier::Acquire);
        let head = match mem.read_u16(self.layout.avail_ring_addr(self.last_avail)) {
            Ok(h) => h,
            Err(e) => return self.fail(e.into()),
        };
        self.last_avail = self.last_avail.wrapping_add(1);
        match walk(mem, &self.layout, head, &self.limits) {
            Ok(chain) => Ok(Some(chain)),
            Err(error) => self.fail(QueueError::Chain { head, error }),
        }
    }

    /// Returns the chain at `head` with `len` bytes written into its writable buffers: the
    /// element first, then (ordered after it) the used `idx` (§2.7.8.1).
    pub fn push_used(
        &mut self,
        mem: &mut impl GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if self.broken {
            return Err(QueueError::Broken);
        }
        let at = self.layout.used_ring_addr(self.next_used);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        if let Err(e) = mem.write(at, &elem) {
            return self.fail(e.into());
        }
        self.next_used = self.next_used.wrapping_add(1);
        mem.barrier(Barrier::Release);
        if let Err(e) = mem.write_u16(self.layout.used_idx_addr(), self.next_used) {
            return self.fail(e.into());
        }
        Ok(())
    }

    /// Whether the used elements added since the last call need a used-buffer notification
    /// (an interrupt) according to the driver's `used_event` or NO_INTERRUPT flag.
    pub fn should_interrupt(&mut self, mem: &impl GuestMemory) -> Result<bool, QueueError> {
        if self.broken {
            return Err(QueueError::Broken);
        }
        let old = self.signalled_used;
        let new = self.next_used;
        self.signalled_used = new;
        if old == new {
            return Ok(false);
        }
        // The used idx write must be visible before the driver's suppression word is read:
        // otherwise the driver may decide to wait just as the device decides not to interrupt.
        mem.barrier(Barrier::Full);
        if self.features.event_idx {
            let event = match mem.read_u16(self.layout.used_event_addr()) {
                Ok(e) => e,
                Err(e) => return self.fail(e.into()),
            };
            Ok(need_event(event, new, old))
        } else {
            let flags = match mem.read_u16(self.layout.avail_flags_addr()) {
                Ok(f) => f,
                Err(e) => return self.fail(e.into()),
            };
            Ok(!AvailFlags::from_bits_retain(flags).contains(AvailFlags::NO_INTERRUPT))
        }
    }

    /// Asks the driver not to kick (the backend is polling). With EVENT_IDX nothing needs
    /// writing: `avail_event` stays where it was, behind the driver, so the driver's
    /// `vring_need_event` check fails until its index wraps past it (one spurious kick per
    /// 2^16 chains at most). Without it, VIRTQ_USED_F_NO_NOTIFY is set.
    pub fn disable_notifications(&mut self, mem: &mut impl GuestMemory) -> Result<(), QueueError> {
        if self.broken {
            return Err(QueueError::Broken);
        }
        if !self.features.event_idx {
            self.set_used_flags(mem, UsedFlags::NO_NOTIFY)?;
        }
        Ok(())
    }

    /// Asks the driver to kick for the next chain (the backend goes idle), then re-checks:
    /// `Ok(true)` means chains arrived meanwhile (maybe without a kick) and the backend must
    /// keep polling; `Ok(false)` means it may sleep until the next kick.
    pub fn enable_notifications(&mut self, mem: &mut impl GuestMemory) -> Result<bool, QueueError> {
        if self.broken {
            return Err(QueueError::Broken);
        }
        if self.features.event_idx {
            // "Kick when you write the entry at index last_avail" (§2.7.10).
            if let Err(e) = mem.write_u16(self.layout.avail_event_addr(), self.last_avail) {
                return self.fail(e.into());
            }
        } else {
            self.set_used_flags(mem, UsedFlags::empty())?;
        }
        // Store (the request for kicks) then load (available idx): needs a full fence.
        mem.barrier(Barrier::Full);
        Ok(self.pending(mem)? != 0)
    }

    fn set_used_flags(
        &mut self,
        mem: &mut impl GuestMemory,
        flags: UsedFlags,
    ) -> Result<(), QueueError> {
        match mem.write_u16(self.layout.used_flags_addr(), flags.bits()) {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e.into()),
        }
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
