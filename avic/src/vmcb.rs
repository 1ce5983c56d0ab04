//! The VMCB fields that control AVIC (APM vol. 2 §15.29.3.1, Appendix B Table B-1):
//!
//! | offset | field | encoding |
//! |---|---|---|
//! | 0x060 | `int_ctl` | bit 31 AVIC enable, bit 30 x2AVIC enable |
//! | 0x098 | `avic_apic_bar` | guest-physical APIC base, bits 51:12 |
//! | 0x0E0 | `avic_backing_page` | host-physical backing page, bits 51:12 |
//! | 0x0F0 | `avic_logical_table` | host-physical logical table, bits 51:12 |
//! | 0x0F8 | `avic_physical_table` | host-physical physical table, bits 51:12; max index 7:0 (x2AVIC 8:0) |
//!
//! With AVIC enabled V_IRQ, V_INTR_PRIO, V_INTR_VECTOR and V_IGN_TPR are ignored, and AVIC
//! requires nested paging.

use svm::intercept::{IntCtl, NestedControl, VmcbClean};
use svm::{Gpa, Hpa, Vmcb};

use crate::table::{AVIC_MAX_PHYSICAL_INDEX, X2AVIC_MAX_PHYSICAL_INDEX};

const PAGE_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// Max-index mask of the physical table pointer: bits 7:0 (xAVIC) or 8:0 (x2AVIC).
pub const fn max_index_mask(x2avic: bool) -> u64 {
    if x2avic {
        0x1FF
    } else {
        0xFF
    }
}

/// Encode a 4 KiB-aligned page pointer (backing page, logical table, APIC BAR): bits 51:12.
pub const fn page_field(addr: u64) -> u64 {
    addr & PAGE_MASK
}

/// Encode the physical APIC-ID table pointer with its highest valid index.
pub const fn physical_table_field(table: Hpa, max_index: u16, x2avic: bool) -> u64 {
    page_field(table.0) | (max_index as u64 & max_index_mask(x2avic))
}

/// The table address of a physical table pointer.
pub const fn physical_table_addr(field: u64) -> Hpa {
    Hpa(field & PAGE_MASK)
}

/// The highest valid index of a physical table pointer.
pub const fn physical_table_max_index(field: u64, x2avic: bool) -> u16 {
    (field & max_index_mask(x2avic)) as u16
}

/// Everything a vCPU's VMCB needs for AVIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvicSetup {
    /// This vCPU's backing page.
    pub backing_page: Hpa,
    /// The guest's logical APIC-ID table (xAVIC; ignored by x2AVIC but must still be valid).
    pub logical_table: Hpa,
    /// The guest's physical APIC-ID table.
    pub physical_table: Hpa,
    /// Highest guest APIC ID in the physical table.
    pub max_index: u16,
    /// x2AVIC mode (guest APIC in x2APIC mode).
    pub x2avic: bool,
    /// Guest-physical APIC base (normally 0xFEE0_0000), for xAVIC MMIO accesses.
    pub apic_bar: Gpa,
}

/// Why AVIC could not be enabled in a VMCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// NP_ENABLE is clear: AVIC requires nested paging.
    NestedPagingOff,
    /// `max_index` above 0xFE (xAVIC) or 0x1FF (x2AVIC).
    MaxIndexTooLarge,
    /// A pointer is not 4 KiB aligned.
    Unaligned,
}

/// Write the AVIC fields into `vmcb` and set AVIC enable (and x2AVIC enable). Clears the
/// virtual-interrupt fields AVIC ignores, and the AVIC clean bit.
pub fn enable(vmcb: &mut Vmcb, s: &AvicSetup) -> Result<(), SetupError> {
    if !vmcb.nested_control().contains(NestedControl::NP_ENABLE) {
        return Err(SetupError::NestedPagingOff);
    }
    let max = if s.x2avic {
        X2AVIC_MAX_PHYSICAL_INDEX
    } else {
        AVIC_MAX_PHYSICAL_INDEX
    };
    if s.max_index > max {
        return Err(SetupError::MaxIndexTooLarge);
    }
    if !(s.backing_page.is_aligned(4096)
        && s.logical_table.is_aligned(4096)
        && s.physical_table.is_aligned(4096)
        && s.apic_bar.is_aligned(4096))
    {
        return Err(SetupError::Unaligned);
    }
    vmcb.avic_backing_page = page_field(s.backing_page.0);
    vmcb.avic_logical_table = page_field(s.logical_table.0);
    vmcb.avic_physical_table = physical_table_field(s.physical_table, s.max_index, s.x2avic);
    vmcb.avic_apic_bar = page_field(s.apic_bar.0);
    let mut ctl = vmcb.int_ctl().with_v_intr_prio(0);
    ctl.remove(IntCtl::V_IRQ | IntCtl::V_IGN_TPR);
    ctl.insert(IntCtl::AVIC_ENABLE);
    ctl.set(IntCtl::X2AVIC_ENABLE, s.x2avic);
    vmcb.set_int_ctl(ctl);
    vmcb.int_vector = 0;
    vmcb.set_clean(vmcb.clean().difference(VmcbClean::AVIC | VmcbClean::TPR));
    Ok(())
}

/// Turn AVIC off in `vmcb` (the pointers are left in place).
pub fn disable(vmcb: &mut Vmcb) {
    let mut ctl = vmcb.int_ctl();
    ctl.remove(IntCtl::AVIC_ENABLE | IntCtl::X2AVIC_ENABLE);
    vmcb.set_int_ctl(ctl);
    vmcb.set_clean(vmcb.clean().difference(VmcbClean::AVIC | VmcbClean::TPR));
}

/// Whether AVIC is enabled in `vmcb`, and whether in x2AVIC mode.
pub const fn mode(vmcb: &Vmcb) -> Option<bool> {
    let ctl = vmcb.int_ctl();
    if ctl.contains(IntCtl::AVIC_ENABLE) {
        Some(ctl.contains(IntCtl::X2AVIC_ENABLE))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(x2avic: bool, max_index: u16) -> AvicSetup {
        AvicSetup {
            backing_page: Hpa(0x10_1000),
            logical_table: Hpa(0x10_2000),
            physical_table: Hpa(0x10_3000),
            max_index,
            x2avic,
            apic_bar: Gpa(0xFEE0_0000),
        }
    }

    #[test]
    fn pointer_encodings() {
        assert_eq!(physical_table_field(Hpa(0x10_3000), 3, false), 0x10_3003);
        assert_eq!(
            physical_table_field(Hpa(0x10_3000), 0x1FF, false),
            0x10_30FF
        );
        assert_eq!(physical_table_field(Hpa(0x10_3000), 0x1FF, true), 0x10_31FF);
        assert_eq!(physical_table_max_index(0x10_31FF, true), 0x1FF);
        assert_eq!(physical_table_max_index(0x10_31FF, false), 0xFF);
        assert_eq!(physical_table_addr(0x10_31FF), Hpa(0x10_3000));
        assert_eq!(page_field(0xFFF0_0000_FEE0_0ABC), 0x0000_0000_FEE0_0000);
    }

    #[test]
    fn enable_writes_fields() {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.set_nested_control(NestedControl::NP_ENABLE);
        v.set_int_ctl(IntCtl::V_IRQ | IntCtl::V_INTR_MASKING | IntCtl::V_IGN_TPR);
        v.set_clean(VmcbClean::all());
        enable(&mut v, &setup(false, 3)).unwrap();
        assert_eq!(v.avic_backing_page, 0x10_1000);
        assert_eq!(v.avic_logical_table, 0x10_2000);
        assert_eq!(v.avic_physical_table, 0x10_3003);
        assert_eq!(v.avic_apic_bar, 0xFEE0_0000);
        assert_eq!(v.int_ctl, (1 << 31) | (1 << 24));
        assert!(!v.clean().contains(VmcbClean::AVIC));
        assert_eq!(mode(&v), Some(false));
        disable(&mut v);
        assert_eq!(mode(&v), None);
    }

    #[test]
    fn enable_x2avic() {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.set_nested_control(NestedControl::NP_ENABLE);
        enable(&mut v, &setup(true, 0x1FF)).unwrap();
        assert_eq!(v.int_ctl, 0xC000_0000);
        assert_eq!(v.avic_physical_table, 0x10_31FF);
        assert_eq!(mode(&v), Some(true));
    }

    #[test]
    fn enable_errors() {
        let mut v = Box::new(Vmcb::new_zeroed());
        assert_eq!(
            enable(&mut v, &setup(false, 1)),
            Err(SetupError::NestedPagingOff)
        );
        v.set_nested_control(NestedControl::NP_ENABLE);
        assert_eq!(
            enable(&mut v, &setup(false, 0xFF)),
            Err(SetupError::MaxIndexTooLarge)
        );
        assert_eq!(
            enable(&mut v, &setup(true, 0x200)),
            Err(SetupError::MaxIndexTooLarge)
        );
        let mut s = setup(false, 1);
        s.backing_page = Hpa(0x10_1800);
        assert_eq!(enable(&mut v, &s), Err(SetupError::Unaligned));
        assert_eq!(v.int_ctl, 0);
    }
}
