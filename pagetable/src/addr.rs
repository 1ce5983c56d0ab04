//! Typed addresses, so that host-physical, guest-physical, guest-virtual and I/O-virtual
//! addresses cannot be mixed up in interfaces.

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

            /// The address plus `offset`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }

            /// Whether the address is a multiple of `align` (a power of two).
            #[inline]
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align.wrapping_sub(1)) == 0
            }

            /// The address rounded down to a multiple of `align` (a power of two).
            #[inline]
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align.wrapping_sub(1)))
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
    /// A host-physical address: what page-table entries (nested and I/O), the VMCB pointers and
    /// the IOMMU's tables and rings hold.
    Hpa
);
address_type!(
    /// A guest-physical address (what the guest's page tables produce, and NPT translates).
    Gpa
);
address_type!(
    /// A guest-virtual (linear) address.
    Gva
);
address_type!(
    /// An I/O virtual address: what a device puts on the bus. For a passed-through device it is
    /// the guest-physical address the guest's driver programmed.
    Iova
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_on_every_type() {
        assert!(Hpa(0x20_0000).is_aligned(0x20_0000));
        assert!(!Iova(0x2080).is_aligned(0x100));
        assert_eq!(Gva(0x1FFF).align_down(0x1000), Gva(0x1000));
        assert_eq!(Gpa(0x1000).checked_add(0x234), Some(Gpa(0x1234)));
        assert_eq!(Iova(u64::MAX).checked_add(1), None);
        assert_eq!(Hpa(0xABC).as_u64(), 0xABC);
        assert_eq!(format!("{:?}", Iova(0x1000)), "Iova(0x1000)");
        assert_eq!(format!("{:x}", Gva(0xBEEF)), "beef");
        assert_eq!(Hpa::default(), Hpa(0));
    }
}
