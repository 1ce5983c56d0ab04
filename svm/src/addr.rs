//! Typed addresses, so that host-physical, guest-physical and guest-virtual addresses cannot be
//! mixed up in interfaces.
//!
//! The types are the `pagetable` crate's, shared with the `iommu` crate.

pub use pagetable::addr::{Gpa, Gva, Hpa};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert!(Hpa(0x20_0000).is_aligned(0x20_0000));
        assert!(!Hpa(0x20_1000).is_aligned(0x20_0000));
        assert_eq!(Gpa(0x20_1234).align_down(0x1000), Gpa(0x20_1000));
        assert_eq!(Gva(u64::MAX).checked_add(1), None);
        assert_eq!(format!("{:?}", Gpa(0x1000)), "Gpa(0x1000)");
    }
}
