//! Physical and logical APIC-ID table entries (APM vol. 2 §15.29.3.2, §15.29.3.3).
//!
//! The *physical APIC-ID table* is one 4 KiB page of 64-bit entries indexed by the guest
//! physical APIC ID (xAVIC: up to index 255; x2AVIC: up to 511). The *logical APIC-ID table*
//! (xAVIC only) is one 4 KiB page of 32-bit entries indexed by the guest logical APIC ID.

use svm::Hpa;

/// Bits 51:12: a 4 KiB-aligned host-physical address.
const PAGE_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// Number of entries of the physical APIC-ID table page.
pub const PHYSICAL_TABLE_ENTRIES: usize = 512;
/// Highest usable xAVIC physical index (0xFF is the xAPIC broadcast ID).
pub const AVIC_MAX_PHYSICAL_INDEX: u16 = 0xFE;
/// Highest usable x2AVIC physical index.
pub const X2AVIC_MAX_PHYSICAL_INDEX: u16 = 0x1FF;

/// A physical APIC-ID table entry (APM vol. 2 §15.29.3.3, Figure 15-24):
///
/// ```text
///  63   62      52 51            12 11        0
/// +-----+-+-------+----------------+-----------+
/// |Valid|R|  rsvd | backing page   | host APIC |
/// +-----+-+-------+----------------+-----------+
///        IsRunning (62)
/// ```
///
/// Every guest APIC ID needs a Valid entry: broadcast IPIs skip invalid entries without an exit,
/// and a directed IPI to an invalid entry exits with "invalid target".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PhysicalIdEntry(pub u64);

impl PhysicalIdEntry {
    /// Host physical APIC ID, bits 11:0 (the doorbell target while IsRunning).
    pub const HOST_APIC_ID_MASK: u64 = 0xFFF;
    /// IsRunning, bit 62: the vCPU is in guest mode on the host CPU `host_apic_id`.
    pub const IS_RUNNING: u64 = 1 << 62;
    /// Valid, bit 63.
    pub const VALID: u64 = 1 << 63;

    /// A valid entry for a vCPU whose backing page is at `backing_page`, not running.
    pub const fn new(backing_page: Hpa, host_apic_id: u32) -> Self {
        Self(
            (backing_page.0 & PAGE_MASK)
                | (host_apic_id as u64 & Self::HOST_APIC_ID_MASK)
                | Self::VALID,
        )
    }

    /// Host physical APIC ID, bits 11:0.
    pub const fn host_apic_id(self) -> u32 {
        (self.0 & Self::HOST_APIC_ID_MASK) as u32
    }

    /// Backing page address, bits 51:12.
    pub const fn backing_page(self) -> Hpa {
        Hpa(self.0 & PAGE_MASK)
    }

    /// IsRunning, bit 62.
    pub const fn is_running(self) -> bool {
        self.0 & Self::IS_RUNNING != 0
    }

    /// Valid, bit 63.
    pub const fn is_valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    /// This entry with IsRunning set or cleared (on VMRUN / after #VMEXIT or when descheduled).
    /// On CPUs with erratum 1235 (Zen 1/2) keep IsRunning clear.
    pub const fn with_running(self, running: bool) -> Self {
        if running {
            Self(self.0 | Self::IS_RUNNING)
        } else {
            Self(self.0 & !Self::IS_RUNNING)
        }
    }

    /// This entry with the host APIC ID replaced (when the vCPU moves to another core).
    pub const fn with_host_apic_id(self, host_apic_id: u32) -> Self {
        Self((self.0 & !Self::HOST_APIC_ID_MASK) | (host_apic_id as u64 & Self::HOST_APIC_ID_MASK))
    }
}

/// A logical APIC-ID table entry (APM vol. 2 §15.29.3.2, Figure 15-23): guest physical APIC ID
/// in bits 7:0, Valid in bit 31.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct LogicalIdEntry(pub u32);

impl LogicalIdEntry {
    /// Valid, bit 31.
    pub const VALID: u32 = 1 << 31;

    /// A valid entry pointing to guest physical APIC ID `guest_physical_id`.
    pub const fn new(guest_physical_id: u8) -> Self {
        Self(guest_physical_id as u32 | Self::VALID)
    }

    /// Guest physical APIC ID, bits 7:0 (index into the physical table).
    pub const fn guest_physical_id(self) -> u8 {
        self.0 as u8
    }

    /// Valid, bit 31.
    pub const fn is_valid(self) -> bool {
        self.0 & Self::VALID != 0
    }
}

/// Index of the logical APIC-ID table entry for an xAPIC logical ID (LDR bits 31:24) that has
/// exactly one bit of its member field set (§15.29.3.2):
///
/// * flat model (DFR = 0xFFFF_FFFF): 8-bit mask, index = bit number (0–7);
/// * cluster model (DFR = 0x0FFF_FFFF): cluster in bits 7:4 (0–14), member bit in 3:0,
///   index = cluster × 4 + bit number.
///
/// `None` if no or several member bits are set, or for the broadcast cluster 15.
pub const fn logical_table_index(flat: bool, logical_id: u8) -> Option<usize> {
    if flat {
        if logical_id.count_ones() == 1 {
            Some(logical_id.trailing_zeros() as usize)
        } else {
            None
        }
    } else {
        let cluster = logical_id >> 4;
        let member = logical_id & 0xF;
        if cluster == 0xF || member.count_ones() != 1 {
            None
        } else {
            Some(cluster as usize * 4 + member.trailing_zeros() as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_entry_encode() {
        let e = PhysicalIdEntry::new(Hpa(0x1_2345_6000), 5);
        assert_eq!(e.0, 0x8000_0001_2345_6005);
        assert!(e.is_valid());
        assert!(!e.is_running());
        assert_eq!(e.host_apic_id(), 5);
        assert_eq!(e.backing_page(), Hpa(0x1_2345_6000));
        let r = e.with_running(true);
        assert_eq!(r.0, 0xC000_0001_2345_6005);
        assert_eq!(r.with_running(false), e);
    }

    #[test]
    fn physical_entry_field_limits() {
        // Unaligned backing page and an over-wide APIC ID are masked, never spill.
        let e = PhysicalIdEntry::new(Hpa(0xFFFF_FFFF_FFFF_FFFF), 0x1_2345);
        assert_eq!(e.backing_page(), Hpa(0x000F_FFFF_FFFF_F000));
        assert_eq!(e.host_apic_id(), 0x345);
        assert!(!e.is_running());
        assert_eq!(e.with_host_apic_id(0xABC).host_apic_id(), 0xABC);
        assert_eq!(e.with_host_apic_id(0xABC).backing_page(), e.backing_page());
    }

    #[test]
    fn physical_entry_decode_hardware_value() {
        let e = PhysicalIdEntry(0xC000_0000_7654_3002);
        assert!(e.is_valid() && e.is_running());
        assert_eq!(e.host_apic_id(), 2);
        assert_eq!(e.backing_page(), Hpa(0x7654_3000));
        assert!(!PhysicalIdEntry(0x4000_0000_0000_0000).is_valid());
    }

    #[test]
    fn logical_entry() {
        let e = LogicalIdEntry::new(3);
        assert_eq!(e.0, 0x8000_0003);
        assert_eq!(e.guest_physical_id(), 3);
        assert!(e.is_valid());
        assert!(!LogicalIdEntry(0x03).is_valid());
    }

    #[test]
    fn logical_indices() {
        assert_eq!(logical_table_index(true, 0x01), Some(0));
        assert_eq!(logical_table_index(true, 0x80), Some(7));
        assert_eq!(logical_table_index(true, 0x03), None);
        assert_eq!(logical_table_index(true, 0), None);
        assert_eq!(logical_table_index(false, 0x12), Some(5)); // cluster 1, bit 1
        assert_eq!(logical_table_index(false, 0xE8), Some(59)); // cluster 14, bit 3
        assert_eq!(logical_table_index(false, 0xF1), None);
        assert_eq!(logical_table_index(false, 0x13), None);
    }
}
