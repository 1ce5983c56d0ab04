//! A guest's RAM as a virtio device sees it (`virtio::mem::GuestMemory`): guest-physical
//! `[0, size)` at host-physical `hpa`. The service core reads rings while the guest's vCPUs
//! write them, so every copy is volatile (through `host::phys`), and the ring protocol's
//! barriers are real: on x86 `Acquire` and `Release` only keep the compiler from reordering
//! (TSO orders load-load and store-store), `Full` is `mfence` (store-load).

use crate::hv::host::phys;
use core::sync::atomic::{compiler_fence, fence, Ordering};
use svm::Gpa;
use virtio::mem::{Barrier, GuestMemory, OutOfRange};

/// One guest's RAM.
#[derive(Clone, Copy)]
pub struct GuestRam {
    pub hpa: u64,
    pub size: u64,
}

impl GuestRam {
    /// The host-physical address of `len` bytes at `gpa`, if they are all guest RAM.
    fn host(&self, gpa: Gpa, len: u64) -> Result<u64, OutOfRange> {
        let bad = OutOfRange { gpa, len };
        let end = gpa.as_u64().checked_add(len).ok_or(bad)?;
        if end > self.size {
            return Err(bad);
        }
        Ok(self.hpa + gpa.as_u64())
    }
}

impl GuestMemory for GuestRam {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let mut at = self.host(gpa, buf.len() as u64)?;
        let mut rest = buf;
        while !rest.is_empty() {
            let n = if at.is_multiple_of(8) && rest.len() >= 8 {
                // SAFETY: guest RAM, allocated for this guest for good (see `Vm::ram`);
                // reading it has no side effect.
                let v = unsafe { phys::read::<u64>(at) };
                rest[..8].copy_from_slice(&v.to_le_bytes());
                8
            } else {
                // SAFETY: as above.
                rest[0] = unsafe { phys::read::<u8>(at) };
                1
            };
            rest = &mut rest[n..];
            at += n as u64;
        }
        Ok(())
    }

    fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), OutOfRange> {
        let mut at = self.host(gpa, data.len() as u64)?;
        let mut rest = data;
        while !rest.is_empty() {
            let n = if at.is_multiple_of(8) && rest.len() >= 8 {
                let mut w = [0u8; 8];
                w.copy_from_slice(&rest[..8]);
                // SAFETY: guest RAM, the guest's own; the hypervisor holds no reference into
                // it (a device writes what the guest asked for, where it asked).
                unsafe { phys::write::<u64>(at, u64::from_le_bytes(w)) };
                8
            } else {
                // SAFETY: as above.
                unsafe { phys::write::<u8>(at, rest[0]) };
                1
            };
            rest = &rest[n..];
            at += n as u64;
        }
        Ok(())
    }

    fn contains(&self, gpa: Gpa, len: u64) -> bool {
        self.host(gpa, len).is_ok()
    }

    fn barrier(&self, barrier: Barrier) {
        match barrier {
            Barrier::Acquire => compiler_fence(Ordering::Acquire),
            Barrier::Release => compiler_fence(Ordering::Release),
            Barrier::Full => fence(Ordering::SeqCst),
        }
    }
}
