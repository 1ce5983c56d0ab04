//! Byte layouts of the IVRS structures (AMD IOMMU spec #48882 rev 3.x, §5.2):
//! one `repr(C, packed)` definition per structure, asserted at compile time.
//! The parsers read each field at its `offset_of!`.

use core::mem::{offset_of, size_of};
use firmware::SdtHeader;

/// The IVRS fixed part (§5.2.1).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct IvrsFixed {
    /// Standard ACPI header, signature `IVRS`; revision 1 allows IVHD types
    /// 10h/11h only, revision 2 also 40h.
    pub header: SdtHeader,
    /// IVinfo, see [`IvInfo`](super::IvInfo).
    pub iv_info: u32,
    /// Reserved, 8 bytes.
    pub reserved: u64,
}

/// Fields shared by all IVHD types, the first 20 bytes (§5.2.2).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct IvhdCommon {
    /// 10h, 11h or 40h.
    pub block_type: u8,
    /// See [`IvhdFlags`](super::IvhdFlags).
    pub flags: u8,
    /// Length of the block including its device entries.
    pub length: u16,
    /// Requester id of the IOMMU's own PCI function.
    pub device_id: u16,
    /// Offset of the IOMMU capability block in its PCI configuration space.
    pub capability_offset: u16,
    /// Physical address of the IOMMU's MMIO registers.
    pub base_address: u64,
    /// PCI segment group of the IOMMU and the devices it covers.
    pub pci_segment: u16,
    /// See [`IommuInfo`](super::IommuInfo).
    pub iommu_info: u16,
}

/// IVHD type 10h fixed part, 24 bytes (§5.2.2).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct Ivhd10Fixed {
    /// Common fields.
    pub common: IvhdCommon,
    /// See [`FeatureReporting`](super::FeatureReporting).
    pub feature_reporting: u32,
}

/// IVHD type 11h and 40h fixed part, 40 bytes (§5.2.2).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct Ivhd11Fixed {
    /// Common fields.
    pub common: IvhdCommon,
    /// See [`IommuAttributes`](super::IommuAttributes).
    pub iommu_attributes: u32,
    /// Image of the IOMMU's Extended Feature Register (MMIO 0x30).
    pub efr_image: u64,
    /// Image of Extended Feature Register 2 (MMIO 0x1A0); reserved (zero)
    /// before spec rev 3.05.
    pub efr2_image: u64,
}

/// IVMD block, 32 bytes (§5.2.3).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct IvmdFixed {
    /// 20h (all devices), 21h (one device), 22h (device range).
    pub block_type: u8,
    /// See [`IvmdFlags`](super::IvmdFlags).
    pub flags: u8,
    /// 32.
    pub length: u16,
    /// The device (21h) or first device (22h); reserved for 20h.
    pub device_id: u16,
    /// The last device for 22h; reserved otherwise.
    pub auxiliary_data: u16,
    /// Reserved, 8 bytes.
    pub reserved: u64,
    /// Start of the memory range.
    pub start_address: u64,
    /// Length of the memory range in bytes.
    pub memory_length: u64,
}

/// 4-byte device entry, types 0-63 (§5.2.2.2).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct ShortEntry {
    /// Entry type.
    pub entry_type: u8,
    /// Requester id (reserved for type 1, "all").
    pub device_id: u16,
    /// See [`DteSetting`](super::DteSetting) (reserved for type 4, end of range).
    pub dte_setting: u8,
}

/// 8-byte alias entry, types 66 (select) and 67 (start of range) (§5.2.2.2).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct AliasEntry {
    /// 66 or 67.
    pub entry_type: u8,
    /// Requester id of the device (or first device).
    pub device_id: u16,
    /// See [`DteSetting`](super::DteSetting).
    pub dte_setting: u8,
    /// Reserved.
    pub reserved0: u8,
    /// The requester id the IOMMU sees for these devices' requests.
    pub source_id: u16,
    /// Reserved.
    pub reserved1: u8,
}

/// 8-byte extended entry, types 70 (select) and 71 (start of range)
/// (§5.2.2.2).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct ExtendedEntry {
    /// 70 or 71.
    pub entry_type: u8,
    /// Requester id of the device (or first device).
    pub device_id: u16,
    /// See [`DteSetting`](super::DteSetting).
    pub dte_setting: u8,
    /// See [`ExtendedDteSetting`](super::ExtendedDteSetting).
    pub extended_dte_setting: u32,
}

/// 8-byte special device entry, type 72 (§5.2.2.2): the requester id an
/// IOAPIC or HPET uses for its interrupt messages.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct SpecialEntry {
    /// 72.
    pub entry_type: u8,
    /// Reserved.
    pub reserved: u16,
    /// See [`DteSetting`](super::DteSetting).
    pub dte_setting: u8,
    /// IOAPIC id (as in the MADT) or HPET number (as in the HPET table).
    pub handle: u8,
    /// The requester id of its messages.
    pub source_id: u16,
    /// 1: IOAPIC, 2: HPET.
    pub variety: u8,
}

/// Fixed part of the variable-length ACPI HID entry, type 240 (F0h)
/// (§5.2.2.2); `uid_length` bytes of UID follow.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct AcpiHidEntry {
    /// 240.
    pub entry_type: u8,
    /// Requester id the device uses.
    pub device_id: u16,
    /// See [`DteSetting`](super::DteSetting).
    pub dte_setting: u8,
    /// `_HID`, 8 ASCII bytes.
    pub hardware_id: [u8; 8],
    /// `_CID`, 8 bytes (zero if absent).
    pub compatible_id: [u8; 8],
    /// 0: no UID, 1: integer, 2: string.
    pub uid_format: u8,
    /// Length of the UID that follows.
    pub uid_length: u8,
}

const _: () = {
    assert!(size_of::<IvrsFixed>() == 48);
    assert!(offset_of!(IvrsFixed, iv_info) == 36);
    assert!(offset_of!(IvrsFixed, reserved) == 40);

    assert!(size_of::<IvhdCommon>() == 20);
    assert!(offset_of!(IvhdCommon, flags) == 1);
    assert!(offset_of!(IvhdCommon, length) == 2);
    assert!(offset_of!(IvhdCommon, device_id) == 4);
    assert!(offset_of!(IvhdCommon, capability_offset) == 6);
    assert!(offset_of!(IvhdCommon, base_address) == 8);
    assert!(offset_of!(IvhdCommon, pci_segment) == 16);
    assert!(offset_of!(IvhdCommon, iommu_info) == 18);
    assert!(size_of::<Ivhd10Fixed>() == 24);
    assert!(offset_of!(Ivhd10Fixed, feature_reporting) == 20);
    assert!(size_of::<Ivhd11Fixed>() == 40);
    assert!(offset_of!(Ivhd11Fixed, iommu_attributes) == 20);
    assert!(offset_of!(Ivhd11Fixed, efr_image) == 24);
    assert!(offset_of!(Ivhd11Fixed, efr2_image) == 32);

    assert!(size_of::<IvmdFixed>() == 32);
    assert!(offset_of!(IvmdFixed, device_id) == 4);
    assert!(offset_of!(IvmdFixed, auxiliary_data) == 6);
    assert!(offset_of!(IvmdFixed, start_address) == 16);
    assert!(offset_of!(IvmdFixed, memory_length) == 24);

    assert!(size_of::<ShortEntry>() == 4);
    assert!(offset_of!(ShortEntry, device_id) == 1);
    assert!(offset_of!(ShortEntry, dte_setting) == 3);
    assert!(size_of::<AliasEntry>() == 8);
    assert!(offset_of!(AliasEntry, source_id) == 5);
    assert!(size_of::<ExtendedEntry>() == 8);
    assert!(offset_of!(ExtendedEntry, extended_dte_setting) == 4);
    assert!(size_of::<SpecialEntry>() == 8);
    assert!(offset_of!(SpecialEntry, dte_setting) == 3);
    assert!(offset_of!(SpecialEntry, handle) == 4);
    assert!(offset_of!(SpecialEntry, source_id) == 5);
    assert!(offset_of!(SpecialEntry, variety) == 7);
    assert!(size_of::<AcpiHidEntry>() == 22);
    assert!(offset_of!(AcpiHidEntry, hardware_id) == 4);
    assert!(offset_of!(AcpiHidEntry, compatible_id) == 12);
    assert!(offset_of!(AcpiHidEntry, uid_format) == 20);
    assert!(offset_of!(AcpiHidEntry, uid_length) == 21);
};

/// Block type codes (§5.2.2, §5.2.3).
pub(super) mod block_type {
    pub const IVHD_10: u8 = 0x10;
    pub const IVHD_11: u8 = 0x11;
    pub const IVHD_40: u8 = 0x40;
    pub const IVMD_ALL: u8 = 0x20;
    pub const IVMD_SELECT: u8 = 0x21;
    pub const IVMD_RANGE: u8 = 0x22;
}

/// Device entry type codes (§5.2.2.2).
pub(super) mod entry_type {
    pub const ALL: u8 = 1;
    pub const SELECT: u8 = 2;
    pub const RANGE_START: u8 = 3;
    pub const RANGE_END: u8 = 4;
    pub const ALIAS_SELECT: u8 = 66;
    pub const ALIAS_RANGE_START: u8 = 67;
    pub const EXTENDED_SELECT: u8 = 70;
    pub const EXTENDED_RANGE_START: u8 = 71;
    pub const SPECIAL: u8 = 72;
    pub const ACPI_HID: u8 = 240;
}
