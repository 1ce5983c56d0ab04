//! IVHD device entries (AMD IOMMU spec #48882 rev 3.x, §5.2.2.2): which
//! requester ids an IOMMU covers, with which DTE settings and aliases, and
//! which requester ids the IOAPICs and HPETs send their interrupts as.

use super::layout::{
    entry_type, AcpiHidEntry, AliasEntry, ExtendedEntry, ShortEntry, SpecialEntry,
};
use super::{DeviceId, DteSetting, ExtendedDteSetting, IvrsError};
use core::fmt;
use core::mem::{offset_of, size_of};
use firmware::bytes::{array, u16_at, u32_at, u8_at};

/// What a special device entry names (§5.2.2.2, type 72 "variety").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialVariety {
    /// 1: an IOAPIC; the handle is its MADT IOAPIC id.
    IoApic,
    /// 2: an HPET; the handle is its HPET number.
    Hpet,
    /// Any other value.
    Other(u8),
}

/// An IOAPIC or HPET and the requester id of its interrupt messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialDevice {
    /// IOAPIC or HPET.
    pub variety: SpecialVariety,
    /// IOAPIC id or HPET number.
    pub handle: u8,
    /// Requester id it sends as.
    pub source: DeviceId,
    /// DTE setting.
    pub dte: DteSetting,
}

/// A device named by ACPI `_HID`/`_UID` (type 240).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiHidDevice<'a> {
    /// Requester id the device uses.
    pub device_id: DeviceId,
    /// DTE setting.
    pub dte: DteSetting,
    /// `_HID`.
    pub hardware_id: [u8; 8],
    /// `_CID`.
    pub compatible_id: [u8; 8],
    /// 0: none, 1: integer, 2: string.
    pub uid_format: u8,
    /// The UID bytes.
    pub uid: &'a [u8],
}

/// One decoded device entry (§5.2.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceEntry<'a> {
    /// Type 1: every requester id on this IOMMU's segment.
    All {
        /// DTE setting.
        dte: DteSetting,
    },
    /// Type 2: one device.
    Select {
        /// The device.
        device_id: DeviceId,
        /// DTE setting.
        dte: DteSetting,
    },
    /// Type 3: first device of a range closed by type 4.
    RangeStart {
        /// First device.
        device_id: DeviceId,
        /// DTE setting for the range.
        dte: DteSetting,
    },
    /// Type 4: last device of the range just started.
    RangeEnd {
        /// Last device.
        device_id: DeviceId,
    },
    /// Type 66: one device whose requests carry another requester id.
    AliasSelect {
        /// The device.
        device_id: DeviceId,
        /// DTE setting.
        dte: DteSetting,
        /// The requester id the IOMMU sees.
        alias: DeviceId,
    },
    /// Type 67: start of an aliased range closed by type 4.
    AliasRangeStart {
        /// First device.
        device_id: DeviceId,
        /// DTE setting.
        dte: DteSetting,
        /// The requester id the IOMMU sees.
        alias: DeviceId,
    },
    /// Type 70: one device with an extended DTE setting.
    ExtendedSelect {
        /// The device.
        device_id: DeviceId,
        /// DTE setting.
        dte: DteSetting,
        /// Extended DTE setting.
        extended: ExtendedDteSetting,
    },
    /// Type 71: start of a range with an extended DTE setting, closed by
    /// type 4.
    ExtendedRangeStart {
        /// First device.
        device_id: DeviceId,
        /// DTE setting.
        dte: DteSetting,
        /// Extended DTE setting.
        extended: ExtendedDteSetting,
    },
    /// Type 72: IOAPIC or HPET.
    Special(SpecialDevice),
    /// Type 240: ACPI device.
    AcpiHid(AcpiHidDevice<'a>),
    /// A reserved or unknown type (including the padding types 0 and 64),
    /// skipped by its length.
    Unknown {
        /// Entry type.
        entry_type: u8,
        /// Entry length in bytes.
        length: usize,
        /// Where it starts in the table.
        offset: usize,
    },
}

/// Length of the device entry of type `entry_type` at the start of `entry`
/// (§5.2.2.2): type bits 7:6 encode 4, 8, 16 or 32 bytes, except types
/// 240-255, which are variable: 22 bytes plus the UID length at offset 21.
fn entry_length(entry_type: u8, entry: &[u8]) -> Option<usize> {
    if entry_type >= entry_type::ACPI_HID {
        let uid_length = u8_at(entry, offset_of!(AcpiHidEntry, uid_length))?;
        return Some(size_of::<AcpiHidEntry>() + usize::from(uid_length));
    }
    Some(4 << (entry_type >> 6))
}

/// Iterator over the device entries of one IVHD.
#[derive(Clone, Debug)]
pub struct DeviceEntries<'a> {
    entries: &'a [u8],
    position: usize,
    base_offset: usize,
}

impl<'a> DeviceEntries<'a> {
    /// The entries in `entries`, which start at `base_offset` in the table.
    pub(super) fn new(entries: &'a [u8], base_offset: usize) -> Self {
        Self {
            entries,
            position: 0,
            base_offset,
        }
    }

    /// The next entry and its offset in the table.
    fn next_checked(&mut self) -> Option<Result<(usize, DeviceEntry<'a>), IvrsError>> {
        let rest = self
            .entries
            .get(self.position..)
            .filter(|r| !r.is_empty())?;
        let offset = self.base_offset + self.position;
        let entry_type = u8_at(rest, 0)?;
        let bad = IvrsError::BadEntryLength { offset, entry_type };
        let decoded = entry_length(entry_type, rest)
            .and_then(|length| rest.get(..length))
            .ok_or(bad)
            .and_then(|entry| Ok((entry.len(), decode_entry(entry, offset).ok_or(bad)?)));
        match decoded {
            Ok((length, entry)) => {
                self.position += length;
                Some(Ok((offset, entry)))
            }
            Err(e) => {
                self.position = self.entries.len();
                Some(Err(e))
            }
        }
    }
}

impl<'a> Iterator for DeviceEntries<'a> {
    type Item = DeviceEntry<'a>;

    fn next(&mut self) -> Option<DeviceEntry<'a>> {
        // `Ivrs::parse` checked every entry, so there are no errors to drop.
        Some(self.next_checked()?.ok()?.1)
    }
}

/// Decodes one entry whose length is already known to be right for its type.
fn decode_entry(e: &[u8], offset: usize) -> Option<DeviceEntry<'_>> {
    let entry_type = u8_at(e, 0)?;
    let device_id = || u16_at(e, offset_of!(ShortEntry, device_id)).map(DeviceId);
    let dte = || u8_at(e, offset_of!(ShortEntry, dte_setting)).map(DteSetting);
    let alias = || u16_at(e, offset_of!(AliasEntry, source_id)).map(DeviceId);
    let extended =
        || u32_at(e, offset_of!(ExtendedEntry, extended_dte_setting)).map(ExtendedDteSetting);
    Some(match entry_type {
        entry_type::ALL => DeviceEntry::All { dte: dte()? },
        entry_type::SELECT => DeviceEntry::Select {
            device_id: device_id()?,
            dte: dte()?,
        },
        entry_type::RANGE_START => DeviceEntry::RangeStart {
            device_id: device_id()?,
            dte: dte()?,
        },
        entry_type::RANGE_END => DeviceEntry::RangeEnd {
            device_id: device_id()?,
        },
        entry_type::ALIAS_SELECT => DeviceEntry::AliasSelect {
            device_id: device_id()?,
            dte: dte()?,
            alias: alias()?,
        },
        entry_type::ALIAS_RANGE_START => DeviceEntry::AliasRangeStart {
            device_id: device_id()?,
            dte: dte()?,
            alias: alias()?,
        },
        entry_type::EXTENDED_SELECT => DeviceEntry::ExtendedSelect {
            device_id: device_id()?,
            dte: dte()?,
            extended: extended()?,
        },
        entry_type::EXTENDED_RANGE_START => DeviceEntry::ExtendedRangeStart {
            device_id: device_id()?,
            dte: dte()?,
            extended: extended()?,
        },
        entry_type::SPECIAL => DeviceEntry::Special(SpecialDevice {
            variety: match u8_at(e, offset_of!(SpecialEntry, variety))? {
                1 => SpecialVariety::IoApic,
                2 => SpecialVariety::Hpet,
                other => SpecialVariety::Other(other),
            },
            handle: u8_at(e, offset_of!(SpecialEntry, handle))?,
            source: DeviceId(u16_at(e, offset_of!(SpecialEntry, source_id))?),
            dte: DteSetting(u8_at(e, offset_of!(SpecialEntry, dte_setting))?),
        }),
        entry_type::ACPI_HID => DeviceEntry::AcpiHid(AcpiHidDevice {
            device_id: device_id()?,
            dte: dte()?,
            hardware_id: array(e, offset_of!(AcpiHidEntry, hardware_id))?,
            compatible_id: array(e, offset_of!(AcpiHidEntry, compatible_id))?,
            uid_format: u8_at(e, offset_of!(AcpiHidEntry, uid_format))?,
            uid: e.get(size_of::<AcpiHidEntry>()..)?,
        }),
        _ => DeviceEntry::Unknown {
            entry_type,
            length: e.len(),
            offset,
        },
    })
}

/// A set of consecutive requester ids with the same settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRange {
    /// First requester id.
    pub first: DeviceId,
    /// Last requester id (inclusive).
    pub last: DeviceId,
    /// DTE setting.
    pub dte: DteSetting,
    /// The requester id the IOMMU sees instead (alias entries).
    pub alias: Option<DeviceId>,
    /// Extended DTE setting (extended entries).
    pub extended: Option<ExtendedDteSetting>,
}

impl DeviceRange {
    /// `device` lies in `first..=last`.
    pub fn contains(&self, device: DeviceId) -> bool {
        (self.first..=self.last).contains(&device)
    }
}

/// What an IVHD covers: device entries with ranges paired up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device<'a> {
    /// From entries 1, 2, 3+4, 66, 67+4, 70, 71+4.
    Range(DeviceRange),
    /// IOAPIC or HPET (72).
    Special(SpecialDevice),
    /// ACPI device (240).
    AcpiHid(AcpiHidDevice<'a>),
    /// Reserved or unknown entry type, skipped.
    Unknown {
        /// Entry type.
        entry_type: u8,
        /// Entry length.
        length: usize,
        /// Where it starts in the table.
        offset: usize,
    },
}

impl fmt::Display for Device<'_> {
    /// One console line, e.g. `00:00.0-ff:1f.7 dte 0x00` or
    /// `ioapic 0 -> 00:14.0 dte 0xd7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Range(r) => {
                if r.first == r.last {
                    write!(f, "{}", r.first)?;
                } else {
                    write!(f, "{}-{}", r.first, r.last)?;
                }
                write!(f, " dte {:#04x}", r.dte.0)?;
                if let Some(alias) = r.alias {
                    write!(f, " alias {alias}")?;
                }
                if let Some(ext) = r.extended {
                    write!(f, " ext {:#010x}", ext.0)?;
                }
                Ok(())
            }
            Device::Special(s) => {
                match s.variety {
                    SpecialVariety::IoApic => write!(f, "ioapic {}", s.handle)?,
                    SpecialVariety::Hpet => write!(f, "hpet {}", s.handle)?,
                    SpecialVariety::Other(v) => {
                        write!(f, "special variety {v} handle {}", s.handle)?
                    }
                }
                write!(f, " -> {} dte {:#04x}", s.source, s.dte.0)
            }
            Device::AcpiHid(a) => {
                write!(f, "acpi ")?;
                for &b in a.hardware_id.iter().filter(|b| b.is_ascii_graphic()) {
                    write!(f, "{}", b as char)?;
                }
                write!(f, " uid ")?;
                for &b in a.uid {
                    if a.uid_format == 2 && b.is_ascii_graphic() {
                        write!(f, "{}", b as char)?;
                    } else {
                        write!(f, "{b:02x}")?;
                    }
                }
                write!(f, " -> {} dte {:#04x}", a.device_id, a.dte.0)
            }
            Device::Unknown {
                entry_type,
                length,
                offset,
            } => write!(
                f,
                "unknown entry type {entry_type} ({length} bytes) at {offset:#x}, skipped"
            ),
        }
    }
}

/// Iterator pairing range entries; see [`super::Ivhd::devices`].
#[derive(Clone, Debug)]
pub struct Devices<'a> {
    entries: DeviceEntries<'a>,
}

impl<'a> Devices<'a> {
    /// Pairs up the ranges of `entries`.
    pub(super) fn new(entries: DeviceEntries<'a>) -> Self {
        Self { entries }
    }

    /// The next device, or why the entries are malformed.
    pub(super) fn next_checked(&mut self) -> Option<Result<Device<'a>, IvrsError>> {
        let (offset, entry) = match self.entries.next_checked()? {
            Ok(e) => e,
            Err(e) => return Some(Err(e)),
        };
        let single = |first, dte, alias, extended| {
            Ok(Device::Range(DeviceRange {
                first,
                last: first,
                dte,
                alias,
                extended,
            }))
        };
        let item = match entry {
            DeviceEntry::All { dte } => Ok(Device::Range(DeviceRange {
                first: DeviceId(0),
                last: DeviceId::MAX,
                dte,
                alias: None,
                extended: None,
            })),
            DeviceEntry::Select { device_id, dte } => single(device_id, dte, None, None),
            DeviceEntry::AliasSelect {
                device_id,
                dte,
                alias,
            } => single(device_id, dte, Some(alias), None),
            DeviceEntry::ExtendedSelect {
                device_id,
                dte,
                extended,
            } => single(device_id, dte, None, Some(extended)),
            DeviceEntry::RangeStart { device_id, dte } => {
                self.range(offset, device_id, dte, None, None)
            }
            DeviceEntry::AliasRangeStart {
                device_id,
                dte,
                alias,
            } => self.range(offset, device_id, dte, Some(alias), None),
            DeviceEntry::ExtendedRangeStart {
                device_id,
                dte,
                extended,
            } => self.range(offset, device_id, dte, None, Some(extended)),
            DeviceEntry::RangeEnd { .. } => Err(IvrsError::BadRange { offset }),
            DeviceEntry::Special(s) => Ok(Device::Special(s)),
            DeviceEntry::AcpiHid(a) => Ok(Device::AcpiHid(a)),
            DeviceEntry::Unknown {
                entry_type,
                length,
                offset,
            } => Ok(Device::Unknown {
                entry_type,
                length,
                offset,
            }),
        };
        if item.is_err() {
            self.entries.position = self.entries.entries.len();
        }
        Some(item)
    }

    /// Closes a range started at `offset` with the entry that must follow.
    fn range(
        &mut self,
        offset: usize,
        first: DeviceId,
        dte: DteSetting,
        alias: Option<DeviceId>,
        extended: Option<ExtendedDteSetting>,
    ) -> Result<Device<'a>, IvrsError> {
        match self.entries.next_checked() {
            Some(Ok((_, DeviceEntry::RangeEnd { device_id: last }))) if last >= first => {
                Ok(Device::Range(DeviceRange {
                    first,
                    last,
                    dte,
                    alias,
                    extended,
                }))
            }
            Some(Err(e)) => Err(e),
            _ => Err(IvrsError::BadRange { offset }),
        }
    }
}

impl<'a> Iterator for Devices<'a> {
    type Item = Device<'a>;

    fn next(&mut self) -> Option<Device<'a>> {
        // `Ivrs::parse` checked the pairing, so there are no errors to drop.
        self.next_checked()?.ok()
    }
}
