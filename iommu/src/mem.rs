//! Addresses and the memory-access traits the table code is generic over.
//!
//! The crate never touches hardware: the kernel implements [`PhysAccess`] over its direct map
//! (with volatile accesses for words the IOMMU writes, such as the completion-wait semaphore
//! and the event log), [`FrameSource`] over its frame allocator, and [`crate::regs::Mmio`] over
//! the IOMMU's register block. The traits have the same shape as the `svm` crate's
//! `PhysAccess`/`FrameSource`, so one kernel type can implement both sets.

use core::fmt;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address.
            #[inline]
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// Whether the address is a multiple of `align` (a power of two).
            #[inline]
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & align.wrapping_sub(1) == 0
            }

            /// The address plus `offset`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A host-physical address: what the IOMMU's tables, rings and page-table leaves hold.
    Hpa
);
address_type!(
    /// An I/O virtual address: what a device puts on the bus. For a passed-through device it is
    /// the guest-physical address the guest's driver programmed.
    Iova
);

/// Host-physical addresses must fit in bits 51:0 (every AMD-Vi address field ends at bit 51).
pub const MAX_HPA: u64 = 1 << 52;

/// Access to host-physical memory, for reading and writing tables, rings and entries.
///
/// Every access is a naturally aligned 64-bit word. Words the IOMMU writes (the completion-wait
/// store, event-log entries) are read again and again while polling, so the kernel's
/// implementation must use volatile accesses.
pub trait PhysAccess {
    /// Read the naturally aligned 64-bit word at `pa`.
    fn read_u64(&self, pa: Hpa) -> u64;
    /// Write the naturally aligned 64-bit word at `pa`.
    fn write_u64(&mut self, pa: Hpa, value: u64);
}

/// A source of 4 KiB host-physical frames for I/O page tables.
pub trait FrameSource {
    /// A fresh 4 KiB-aligned frame (its contents need not be zero), or `None` when exhausted.
    fn alloc_frame(&mut self) -> Option<Hpa>;

    /// Take back a frame the mapper no longer uses. The default leaks it.
    fn free_frame(&mut self, frame: Hpa) {
        let _ = frame;
    }
}

impl<T: PhysAccess + ?Sized> PhysAccess for &mut T {
    fn read_u64(&self, pa: Hpa) -> u64 {
        (**self).read_u64(pa)
    }

    fn write_u64(&mut self, pa: Hpa, value: u64) {
        (**self).write_u64(pa, value);
    }
}

impl<T: FrameSource + ?Sized> FrameSource for &mut T {
    fn alloc_frame(&mut self) -> Option<Hpa> {
        (**self).alloc_frame()
    }

    fn free_frame(&mut self, frame: Hpa) {
        (**self).free_frame(frame);
    }
}

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
