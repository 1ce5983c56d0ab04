//! Addresses and the memory-access traits the table code is generic over.
//!
//! The crate never touches hardware: the kernel implements [`PhysAccess`] over its direct map
//! (with volatile accesses for words the IOMMU writes, such as the completion-wait semaphore
//! and the event log), [`FrameSource`] over its frame allocator, and [`crate::regs::Mmio`] over
//! the IOMMU's register block. The addresses and the two memory traits are the `pagetable`
//! crate's, re-exported: the `svm` crate uses the same ones, so one kernel type implementing
//! them serves both.

pub use pagetable::addr::{Hpa, Iova};
pub use pagetable::mem::{FrameSource, PhysAccess};

/// Host-physical addresses must fit in bits 51:0 (every AMD-Vi address field ends at bit 51).
pub const MAX_HPA: u64 = 1 << 52;

/// Bits `low..low + width` of `value` (`width` < 64).
#[inline]
pub(crate) const fn field(value: u64, low: u32, width: u32) -> u64 {
    (value >> low) & ((1 << width) - 1)
}

/// `value` (masked to `width` bits) placed at bit `low`.
#[inline]
pub(crate) const fn place(value: u64, low: u32, width: u32) -> u64 {
    (value & ((1 << width) - 1)) << low
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_helpers() {
        assert_eq!(field(0xABCD_0000, 16, 8), 0xCD);
        assert_eq!(place(0x1FF, 4, 4), 0xF0);
        assert!(Hpa(0x2000).is_aligned(0x1000));
        assert!(!Iova(0x2080).is_aligned(0x100));
        assert_eq!(format!("{:?}", Hpa(0x1000)), "Hpa(0x1000)");
        assert_eq!(Iova(u64::MAX).checked_add(1), None);
    }
}
