//! Guest-physical memory as the device side sees it: bounds-checked copies in and out, and the
//! memory barriers the split-ring protocol needs.
//!
//! The kernel implements [`GuestMemory`] over a guest's RAM (the service core reads rings
//! while the guest's vCPUs write them, so its copies must be volatile and its barriers real);
//! the tests use [`SliceMemory`] over a `Vec`. Every address the driver hands the device is
//! untrusted: an access that is not wholly inside guest RAM is an error, never a fault.

use pagetable::addr::Gpa;

/// A guest-physical range that is not (wholly) guest RAM, or whose end overflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub gpa: Gpa,
    pub len: u64,
}

/// The orderings of the split-ring protocol (virtio 1.2 §2.7.13, §2.7.14; Linux's
/// `virtio_mb`/`virtio_rmb`/`virtio_wmb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// Reads after this see at least what the read before it (an index) promised.
    Acquire,
    /// Writes before this (a used element) are visible before writes after it (used `idx`).
    Release,
    /// A write before this (`avail_event`, used `idx`) is visible before a read after it (the
    /// re-check of available `idx`, `used_event`): a store-load order, which x86 keeps only
    /// with a fence.
    Full,
}

/// Guest-physical memory.
pub trait GuestMemory {
    /// Copies the guest bytes at `gpa` into `buf`; nothing is read unless all of them are RAM.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutOfRange>;
    /// Copies `data` to the guest at `gpa`; nothing is written unless all of it is RAM.
    fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), OutOfRange>;
    /// Whether `len` bytes at `gpa` are all guest RAM.
    fn contains(&self, gpa: Gpa, len: u64) -> bool;
    /// Orders this side's accesses to shared rings (see [`Barrier`]).
    fn barrier(&self, barrier: Barrier);

    fn read_u16(&self, gpa: Gpa) -> Result<u16, OutOfRange> {
        let mut b = [0; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn read_u32(&self, gpa: Gpa) -> Result<u32, OutOfRange> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn write_u16(&mut self, gpa: Gpa, value: u16) -> Result<(), OutOfRange> {
        self.write(gpa, &value.to_le_bytes())
    }

    fn write_u32(&mut self, gpa: Gpa, value: u32) -> Result<(), OutOfRange> {
        self.write(gpa, &value.to_le_bytes())
    }
}

impl<M: GuestMemory + ?Sized> GuestMemory for &mut M {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutOfRange> {
        (**self).read(gpa, buf)
    }
    fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), OutOfRange> {
        (**self).write(gpa, data)
    }
    fn contains(&self, gpa: Gpa, len: u64) -> bool {
        (**self).contains(gpa, len)
    }
    fn barrier(&self, barrier: Barrier) {
        (**self).barrier(barrier);
    }
}

/// Guest RAM as one byte slice starting at guest-physical `base`, with a count of the
/// barriers asked for (tests check that the protocol's fences are there).
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a mut [u8],
    full_barriers: core::cell::Cell<u64>,
}

impl<'a> SliceMemory<'a> {
    pub fn new(base: Gpa, bytes: &'a mut [u8]) -> Self {
        SliceMemory {
            base: base.as_u64(),
            bytes,
            full_barriers: core::cell::Cell::new(0),
        }
    }

    /// The bytes, for checks.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// How many [`Barrier::Full`] were asked for so far.
    pub fn full_barriers(&self) -> u64 {
        self.full_barriers.get()
    }

    /// The slice range of `len` bytes at `gpa`, if all inside.
    fn range(&self, gpa: Gpa, len: u64) -> Result<core::ops::Range<usize>, OutOfRange> {
        let err = OutOfRange { gpa, len };
        let start = gpa.as_u64().checked_sub(self.base).ok_or(err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() as u64 {
            return Err(err);
        }
        Ok(start as usize..end as usize)
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let r = self.range(gpa, buf.len() as u64)?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), OutOfRange> {
        let r = self.range(gpa, data.len() as u64)?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }

    fn contains(&self, gpa: Gpa, len: u64) -> bool {
        self.range(gpa, len).is_ok()
    }

    fn barrier(&self, barrier: Barrier) {
        if barrier == Barrier::Full {
            self.full_barriers.set(self.full_barriers.get() + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_memory_checks_bounds() {
        let mut v = vec![0u8; 0x100];
        let mut m = SliceMemory::new(Gpa(0x1000), &mut v);
        m.write_u32(Gpa(0x10fc), 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(Gpa(0x10fc)), Ok(0xdead_beef));
        assert_eq!(m.read_u16(Gpa(0x10fe)), Ok(0xdead));
        let err = OutOfRange {
            gpa: Gpa(0x10fe),
            len: 4,
        };
        assert_eq!(m.read_u32(Gpa(0x10fe)), Err(err));
        assert_eq!(m.write_u32(Gpa(0x10fe), 0), Err(err));
        assert!(m.read_u16(Gpa(0xfff)).is_err());
        assert!(!m.contains(Gpa(u64::MAX), 2));
        assert!(m.contains(Gpa(0x1000), 0x100));
        assert!(!m.contains(Gpa(0x1000), 0x101));
        m.barrier(Barrier::Release);
        m.barrier(Barrier::Full);
        assert_eq!(m.full_barriers(), 1);
    }
}
