//! IVRS, the I/O Virtualization Reporting Structure: the ACPI table (signature
//! `IVRS`) in which firmware describes the AMD IOMMUs (AMD IOMMU spec #48882
//! rev 3.x, §5.2).
//!
//! Layout: a 48-byte header (§5.2.1: SDT header, IVinfo, 8 reserved bytes),
//! then blocks, each starting with type (1 byte), flags (1) and length (2):
//! - IVHD, I/O virtualization hardware definition (§5.2.2), one per IOMMU and
//!   block type: 10h (24-byte fixed part with feature reporting), 11h and 40h
//!   (40-byte fixed part with an EFR image); device entries follow (§5.2.2.2).
//!   Firmware usually lists every IOMMU once per type it supports; software
//!   uses the highest type it understands ([`Ivrs::iommus`]).
//! - IVMD, I/O virtualization memory definition (§5.2.3), types 20h-22h:
//!   memory that devices need mapped (unity) or excluded.
//!
//! Parsing is done up front by [`Ivrs::parse`]: every block length, every
//! device entry length and the pairing of range entries are checked there, so
//! a table that parses can then be iterated without errors. Structures are
//! `repr(C, packed)` definitions with compile-time layout asserts, read field
//! by field at their `offset_of!` (see the `firmware` crate docs).

mod coverage;
mod entries;
mod fields;
mod layout;
#[cfg(test)]
mod tests;

pub use coverage::{Coverage, NotCovered, MAX_COVERAGE_RANGES};
pub use entries::{
    AcpiHidDevice, Device, DeviceEntries, DeviceEntry, DeviceRange, Devices, SpecialDevice,
    SpecialVariety,
};
pub use fields::{
    DeviceId, DteSetting, ExtendedDteSetting, FeatureReporting, IommuAttributes, IommuInfo, IvInfo,
    IvhdFlags, IvmdFlags,
};
pub use layout::{
    AcpiHidEntry, AliasEntry, ExtendedEntry, Ivhd10Fixed, Ivhd11Fixed, IvhdCommon, IvmdFixed,
    IvrsFixed, ShortEntry, SpecialEntry,
};

use core::fmt;
use core::mem::{offset_of, size_of};
use firmware::bytes::{u16_at, u32_at, u64_at, u8_at};
use firmware::{Sdt, SdtHeader, Signature};
use layout::block_type;

/// Most IOMMUs [`Ivrs::iommus`] reports (a large server has a few per socket).
pub const MAX_IOMMUS: usize = 64;

/// Why an IVRS table was rejected. Offsets count from the start of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvrsError {
    /// The ACPI table itself is bad (length, checksum).
    Table(firmware::Error),
    /// The table's signature is not `IVRS`.
    NotIvrs(Signature),
    /// The table ends inside its 48-byte fixed part.
    Truncated,
    /// A block's length is shorter than its type's fixed part (or 4 for
    /// unknown types) or runs past the table.
    BadBlockLength {
        /// Where the block starts.
        offset: usize,
        /// Its type.
        block_type: u8,
        /// Its length field (0 if cut off).
        length: u16,
    },
    /// A device entry runs past the end of its IVHD.
    BadEntryLength {
        /// Where the entry starts.
        offset: usize,
        /// Its type.
        entry_type: u8,
    },
    /// A start-of-range entry not followed by an end-of-range entry, an
    /// end-of-range without a start, or a range that ends before it starts.
    BadRange {
        /// Where the offending entry starts.
        offset: usize,
    },
}

impl From<firmware::Error> for IvrsError {
    fn from(e: firmware::Error) -> Self {
        Self::Table(e)
    }
}

impl fmt::Display for IvrsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table(e) => write!(f, "IVRS: {e}"),
            Self::NotIvrs(sig) => write!(f, "IVRS expected, found {sig}"),
            Self::Truncated => write!(f, "IVRS: table shorter than its header"),
            Self::BadBlockLength {
                offset,
                block_type,
                length,
            } => write!(
                f,
                "IVRS: block type {block_type:#04x} at {offset:#x} has bad length {length}"
            ),
            Self::BadEntryLength { offset, entry_type } => {
                write!(
                    f,
                    "IVRS: device entry type {entry_type} at {offset:#x} runs past its IVHD"
                )
            }
            Self::BadRange { offset } => {
                write!(f, "IVRS: unpaired device range entry at {offset:#x}")
            }
        }
    }
}

/// A parsed IVRS table.
#[derive(Clone, Copy, Debug)]
pub struct Ivrs<'a> {
    table: &'a [u8],
    header: SdtHeader,
    iv_info: IvInfo,
}

impl<'a> Ivrs<'a> {
    /// Validates and parses an IVRS table held in `table` (which may extend
    /// past the table's length): ACPI length and checksum, then every block,
    /// device entry and range pairing.
    pub fn parse(table: &'a [u8]) -> Result<Self, IvrsError> {
        Self::from_sdt(&Sdt::from_bytes(table)?)
    }

    /// Parses an already validated ACPI table, e.g. from
    /// `firmware::Acpi::find_table(Signature::IVRS)`.
    pub fn from_sdt(sdt: &Sdt<'a>) -> Result<Self, IvrsError> {
        if sdt.signature() != Signature::IVRS {
            return Err(IvrsError::NotIvrs(sdt.signature()));
        }
        let table = sdt.bytes();
        if table.len() < size_of::<IvrsFixed>() {
            return Err(IvrsError::Truncated);
        }
        let iv_info = u32_at(table, offset_of!(IvrsFixed, iv_info)).ok_or(IvrsError::Truncated)?;
        let ivrs = Self {
            table,
            header: *sdt.header(),
            iv_info: IvInfo(iv_info),
        };
        ivrs.check()?;
        Ok(ivrs)
    }

    /// Walks everything once, so that the infallible iterators below never
    /// meet malformed bytes.
    fn check(&self) -> Result<(), IvrsError> {
        let mut blocks = self.blocks();
        while let Some(block) = blocks.next_checked() {
            if let Block::Ivhd(ivhd) = block? {
                let mut devices = ivhd.devices();
                while let Some(device) = devices.next_checked() {
                    device?;
                }
            }
        }
        Ok(())
    }

    /// The ACPI header.
    pub fn header(&self) -> &SdtHeader {
        &self.header
    }

    /// System-wide IOMMU properties.
    pub fn iv_info(&self) -> IvInfo {
        self.iv_info
    }

    /// All blocks in table order.
    pub fn blocks(&self) -> Blocks<'a> {
        Blocks {
            table: self.table,
            offset: size_of::<IvrsFixed>(),
        }
    }

    /// All IVHD blocks, of every type.
    pub fn ivhds(&self) -> impl Iterator<Item = Ivhd<'a>> + Clone + 'a {
        self.blocks().filter_map(|b| match b {
            Block::Ivhd(ivhd) => Some(ivhd),
            _ => None,
        })
    }

    /// All IVMD blocks.
    pub fn ivmds(&self) -> impl Iterator<Item = Ivmd> + 'a {
        self.blocks().filter_map(|b| match b {
            Block::Ivmd(ivmd) => Some(ivmd),
            _ => None,
        })
    }

    /// One IVHD per IOMMU: where several blocks describe the same IOMMU (same
    /// PCI segment and requester id, e.g. QEMU's 10h and 11h), the one of the
    /// highest type (40h > 11h > 10h), the first of equals; in table order.
    /// At most [`MAX_IOMMUS`] IOMMUs, the first ones in the table: two passes
    /// over the blocks whatever their number (comparing every IVHD with every
    /// other took hours on a table of the 16 MiB an ACPI table may have).
    pub fn iommus(&self) -> impl Iterator<Item = Ivhd<'a>> + 'a {
        // Per IOMMU: (segment, requester id, type and index of the chosen IVHD).
        let mut chosen = [None::<(u16, DeviceId, IvhdType, usize)>; MAX_IOMMUS];
        for (index, ivhd) in self.ivhds().enumerate() {
            let slot = chosen.iter_mut().find(|c| {
                c.is_none_or(|(segment, id, ..)| {
                    segment == ivhd.pci_segment && id == ivhd.device_id
                })
            });
            match slot {
                Some(Some((_, _, block_type, chosen_index))) if ivhd.block_type > *block_type => {
                    (*block_type, *chosen_index) = (ivhd.block_type, index);
                }
                Some(empty @ None) => {
                    *empty = Some((ivhd.pci_segment, ivhd.device_id, ivhd.block_type, index));
                }
                _ => {}
            }
        }
        self.ivhds()
            .enumerate()
            .filter(move |(index, _)| chosen.iter().flatten().any(|c| c.3 == *index))
            .map(|(_, ivhd)| ivhd)
    }
}

/// One IVRS block.
#[derive(Clone, Copy, Debug)]
pub enum Block<'a> {
    /// IVHD, type 10h, 11h or 40h.
    Ivhd(Ivhd<'a>),
    /// IVMD, type 20h, 21h or 22h.
    Ivmd(Ivmd),
    /// Any other type, skipped by its length.
    Unknown {
        /// Block type.
        block_type: u8,
        /// Where it starts in the table.
        offset: usize,
        /// Its length.
        length: u16,
    },
}

/// Iterator over the blocks of a parsed table.
#[derive(Clone, Debug)]
pub struct Blocks<'a> {
    table: &'a [u8],
    offset: usize,
}

impl<'a> Blocks<'a> {
    fn next_checked(&mut self) -> Option<Result<Block<'a>, IvrsError>> {
        if self.offset >= self.table.len() {
            return None;
        }
        let result = self.decode();
        match result {
            Ok((_, length)) => self.offset += length,
            Err(_) => self.offset = self.table.len(),
        }
        Some(result.map(|(block, _)| block))
    }

    fn decode(&self) -> Result<(Block<'a>, usize), IvrsError> {
        let offset = self.offset;
        let rest = self.table.get(offset..).unwrap_or(&[]);
        let block_type = u8_at(rest, 0).unwrap_or(0);
        let length = u16_at(rest, offset_of!(IvhdCommon, length)).unwrap_or(0);
        let bad = IvrsError::BadBlockLength {
            offset,
            block_type,
            length,
        };
        let minimum = match block_type {
            block_type::IVHD_10 => size_of::<Ivhd10Fixed>(),
            block_type::IVHD_11 | block_type::IVHD_40 => size_of::<Ivhd11Fixed>(),
            block_type::IVMD_ALL | block_type::IVMD_SELECT | block_type::IVMD_RANGE => {
                size_of::<IvmdFixed>()
            }
            // type, flags, length: anything shorter could not be skipped.
            _ => 4,
        };
        if usize::from(length) < minimum {
            return Err(bad);
        }
        let bytes = rest.get(..usize::from(length)).ok_or(bad)?;
        let block = match block_type {
            block_type::IVHD_10 | block_type::IVHD_11 | block_type::IVHD_40 => {
                Block::Ivhd(Ivhd::decode(bytes, offset, minimum).ok_or(bad)?)
            }
            block_type::IVMD_ALL | block_type::IVMD_SELECT | block_type::IVMD_RANGE => {
                Block::Ivmd(Ivmd::decode(bytes).ok_or(bad)?)
            }
            _ => Block::Unknown {
                block_type,
                offset,
                length,
            },
        };
        Ok((block, bytes.len()))
    }
}

impl<'a> Iterator for Blocks<'a> {
    type Item = Block<'a>;

    fn next(&mut self) -> Option<Block<'a>> {
        // `Ivrs::parse` checked every block, so there are no errors to drop.
        self.next_checked()?.ok()
    }
}

/// The type of an IVHD block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IvhdType {
    /// 10h: legacy format, feature reporting field.
    Type10,
    /// 11h: EFR image, device entries by requester id.
    Type11,
    /// 40h: like 11h, and may carry ACPI HID device entries.
    Type40,
}

impl IvhdType {
    /// The type byte.
    pub const fn code(self) -> u8 {
        match self {
            Self::Type10 => block_type::IVHD_10,
            Self::Type11 => block_type::IVHD_11,
            Self::Type40 => block_type::IVHD_40,
        }
    }
}

/// The type-specific part of an IVHD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvhdFeatures {
    /// Type 10h.
    Reporting(FeatureReporting),
    /// Types 11h and 40h.
    Efr {
        /// IOMMU attributes.
        attributes: IommuAttributes,
        /// Extended Feature Register image.
        efr: u64,
        /// Extended Feature Register 2 image.
        efr2: u64,
    },
}

/// One IVHD block: an IOMMU and the devices it covers (§5.2.2).
#[derive(Clone, Copy, Debug)]
pub struct Ivhd<'a> {
    /// 10h, 11h or 40h.
    pub block_type: IvhdType,
    /// Flags byte.
    pub flags: IvhdFlags,
    /// The IOMMU's own requester id.
    pub device_id: DeviceId,
    /// Offset of its capability block in PCI configuration space.
    pub capability_offset: u16,
    /// Physical address of its MMIO registers.
    pub mmio_base: u64,
    /// PCI segment group.
    pub pci_segment: u16,
    /// MSI number and unit id.
    pub info: IommuInfo,
    /// Feature reporting (10h) or EFR image (11h/40h).
    pub features: IvhdFeatures,
    /// Where the block starts in the table.
    pub offset: usize,
    entries: &'a [u8],
    entries_offset: usize,
}

impl<'a> Ivhd<'a> {
    /// Decodes a block whose length (`bytes.len()`) is at least its type's
    /// fixed part, `fixed_len`.
    fn decode(bytes: &'a [u8], offset: usize, fixed_len: usize) -> Option<Self> {
        let block_type = match u8_at(bytes, offset_of!(IvhdCommon, block_type))? {
            block_type::IVHD_10 => IvhdType::Type10,
            block_type::IVHD_11 => IvhdType::Type11,
            _ => IvhdType::Type40,
        };
        let features = if block_type == IvhdType::Type10 {
            IvhdFeatures::Reporting(FeatureReporting(u32_at(
                bytes,
                offset_of!(Ivhd10Fixed, feature_reporting),
            )?))
        } else {
            IvhdFeatures::Efr {
                attributes: IommuAttributes(u32_at(
                    bytes,
                    offset_of!(Ivhd11Fixed, iommu_attributes),
                )?),
                efr: u64_at(bytes, offset_of!(Ivhd11Fixed, efr_image))?,
                efr2: u64_at(bytes, offset_of!(Ivhd11Fixed, efr2_image))?,
            }
        };
        Some(Self {
            block_type,
            flags: IvhdFlags::from_bits_retain(u8_at(bytes, offset_of!(IvhdCommon, flags))?),
            device_id: DeviceId(u16_at(bytes, offset_of!(IvhdCommon, device_id))?),
            capability_offset: u16_at(bytes, offset_of!(IvhdCommon, capability_offset))?,
            mmio_base: u64_at(bytes, offset_of!(IvhdCommon, base_address))?,
            pci_segment: u16_at(bytes, offset_of!(IvhdCommon, pci_segment))?,
            info: IommuInfo(u16_at(bytes, offset_of!(IvhdCommon, iommu_info))?),
            features,
            offset,
            entries: bytes.get(fixed_len..)?,
            entries_offset: offset + fixed_len,
        })
    }

    /// The EFR image (11h/40h only).
    pub fn efr(&self) -> Option<u64> {
        match self.features {
            IvhdFeatures::Efr { efr, .. } => Some(efr),
            IvhdFeatures::Reporting(_) => None,
        }
    }

    /// Both blocks describe the same IOMMU.
    pub fn same_iommu(&self, other: &Ivhd<'_>) -> bool {
        self.pci_segment == other.pci_segment && self.device_id == other.device_id
    }

    /// The raw device entries, one by one.
    pub fn entries(&self) -> DeviceEntries<'a> {
        DeviceEntries::new(self.entries, self.entries_offset)
    }

    /// The device entries with ranges paired up: what this IOMMU covers.
    pub fn devices(&self) -> Devices<'a> {
        Devices::new(self.entries())
    }

    /// The DTE setting firmware asks for `device`, if this IOMMU covers it
    /// through a range/select/all entry.
    pub fn covers(&self, device: DeviceId) -> Option<DteSetting> {
        self.devices().find_map(|d| match d {
            Device::Range(r) if r.contains(device) => Some(r.dte),
            _ => None,
        })
    }

    /// A multi-line summary for the console: this block's line, then one
    /// indented line per device range or special device.
    pub fn summary(&self) -> IvhdSummary<'_, 'a> {
        IvhdSummary(self)
    }
}

impl fmt::Display for Ivhd<'_> {
    /// One line: `bdf 00:00.2 mmio 0xfed80000 seg 0 type 11h cap 0x40 ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bdf {} mmio {:#x} seg {} type {:02x}h cap {:#x} flags {:#04x} msi {} unit {}",
            self.device_id,
            self.mmio_base,
            self.pci_segment,
            self.block_type.code(),
            self.capability_offset,
            self.flags.bits(),
            self.info.msi_number(),
            self.info.unit_id()
        )?;
        match self.features {
            IvhdFeatures::Reporting(r) => write!(f, " features {:#010x}", r.0),
            IvhdFeatures::Efr { efr, efr2, .. } => write!(f, " efr {efr:#018x} efr2 {efr2:#x}"),
        }
    }
}

/// See [`Ivhd::summary`].
pub struct IvhdSummary<'s, 'a>(&'s Ivhd<'a>);

impl fmt::Display for IvhdSummary<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        for device in self.0.devices() {
            write!(f, "\n  {device}")?;
        }
        Ok(())
    }
}

/// Which devices an IVMD applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvmdDevices {
    /// 20h: all devices.
    All,
    /// 21h: one device.
    Select(DeviceId),
    /// 22h: `first..=last`.
    Range(DeviceId, DeviceId),
}

/// One IVMD block, header decoded (§5.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ivmd {
    /// Which devices.
    pub devices: IvmdDevices,
    /// Unity / read / write / exclusion.
    pub flags: IvmdFlags,
    /// Start of the memory range.
    pub start: u64,
    /// Length of the memory range.
    pub length: u64,
}

impl Ivmd {
    fn decode(b: &[u8]) -> Option<Self> {
        let device_id = DeviceId(u16_at(b, offset_of!(IvmdFixed, device_id))?);
        let devices = match u8_at(b, offset_of!(IvmdFixed, block_type))? {
            block_type::IVMD_ALL => IvmdDevices::All,
            block_type::IVMD_SELECT => IvmdDevices::Select(device_id),
            _ => IvmdDevices::Range(
                device_id,
                DeviceId(u16_at(b, offset_of!(IvmdFixed, auxiliary_data))?),
            ),
        };
        Some(Self {
            devices,
            flags: IvmdFlags::from_bits_retain(u8_at(b, offset_of!(IvmdFixed, flags))?),
            start: u64_at(b, offset_of!(IvmdFixed, start_address))?,
            length: u64_at(b, offset_of!(IvmdFixed, memory_length))?,
        })
    }
}

impl fmt::Display for Ivmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.devices {
            IvmdDevices::All => write!(f, "ivmd all")?,
            IvmdDevices::Select(d) => write!(f, "ivmd {d}")?,
            IvmdDevices::Range(a, b) => write!(f, "ivmd {a}-{b}")?,
        }
        write!(
            f,
            " {:#x}+{:#x} flags {:#04x}",
            self.start,
            self.length,
            self.flags.bits()
        )
    }
}
