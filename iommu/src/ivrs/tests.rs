//! IVRS tables built byte by byte, QEMU-like and broken ones.

use super::*;

/// Little-endian byte pusher.
#[derive(Default)]
struct Blob(Vec<u8>);

impl Blob {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// The byte that makes `bytes` sum to zero when stored at `at`.
fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    bytes[at] = 0u8.wrapping_sub(sum);
}

/// A whole IVRS table: ACPI header (36 bytes), IVinfo, 8 reserved bytes,
/// then `blocks`; length and checksum filled in.
fn ivrs_table(iv_info: u32, blocks: &[u8]) -> Vec<u8> {
    let mut b = Blob::default();
    b.raw(b"IVRS")
        .u32((48 + blocks.len()) as u32)
        .u8(1) // revision
        .u8(0) // checksum
        .raw(b"BOCHS ")
        .raw(b"BXPC    ")
        .u32(1)
        .raw(b"BXPC")
        .u32(1)
        .u32(iv_info)
        .u64(0)
        .raw(blocks);
    let mut t = b.0;
    fix_checksum(&mut t, 9);
    t
}

const IOMMU_BDF: u16 = 0x0010; // 00:02.0
const IOMMU_MMIO: u64 = 0xFED8_0000;

/// IVHD type 10h: 24-byte fixed part, then `entries`.
fn ivhd10(flags: u8, device_id: u16, info: u16, features: u32, entries: &[u8]) -> Vec<u8> {
    let mut b = Blob::default();
    b.u8(0x10)
        .u8(flags)
        .u16((24 + entries.len()) as u16)
        .u16(device_id)
        .u16(0x40) // capability offset
        .u64(IOMMU_MMIO)
        .u16(0) // segment
        .u16(info)
        .u32(features)
        .raw(entries);
    b.0
}

/// IVHD type 11h or 40h: 40-byte fixed part, then `entries`.
fn ivhd11(block_type: u8, device_id: u16, attributes: u32, efr: u64, entries: &[u8]) -> Vec<u8> {
    let mut b = Blob::default();
    b.u8(block_type)
        .u8(0x11) // HtTunEn | IotlbSup
        .u16((40 + entries.len()) as u16)
        .u16(device_id)
        .u16(0x40)
        .u64(IOMMU_MMIO)
        .u16(0)
        .u16(0)
        .u32(attributes)
        .u64(efr)
        .u64(0)
        .raw(entries);
    b.0
}

/// 4-byte entry.
fn short(entry_type: u8, device_id: u16, dte: u8) -> [u8; 4] {
    let id = device_id.to_le_bytes();
    [entry_type, id[0], id[1], dte]
}

/// 8-byte alias entry (66 or 67).
fn alias(entry_type: u8, device_id: u16, dte: u8, source: u16) -> Vec<u8> {
    let mut b = Blob::default();
    b.u8(entry_type)
        .u16(device_id)
        .u8(dte)
        .u8(0)
        .u16(source)
        .u8(0);
    b.0
}

/// 8-byte extended entry (70 or 71).
fn extended(entry_type: u8, device_id: u16, dte: u8, ext: u32) -> Vec<u8> {
    let mut b = Blob::default();
    b.u8(entry_type).u16(device_id).u8(dte).u32(ext);
    b.0
}

/// 8-byte special entry (72).
fn special(dte: u8, handle: u8, source: u16, variety: u8) -> Vec<u8> {
    let mut b = Blob::default();
    b.u8(72).u16(0).u8(dte).u8(handle).u16(source).u8(variety);
    b.0
}

/// Variable-length ACPI HID entry (240).
fn acpi_hid(device_id: u16, dte: u8, hid: &[u8; 8], uid_format: u8, uid: &[u8]) -> Vec<u8> {
    let mut b = Blob::default();
    b.u8(240)
        .u16(device_id)
        .u8(dte)
        .raw(hid)
        .raw(&[0; 8])
        .u8(uid_format)
        .u8(uid.len() as u8)
        .raw(uid);
    b.0
}

/// The device entries QEMU's `build_amd_iommu` would emit for a small q35
/// machine: a select entry per root-bus function, a start/end range for the
/// buses behind a root port, and the IOAPIC special entry (IOAPIC 0 sends as
/// 00:14.0, QEMU's IOAPIC_SB_DEVID).
fn qemu_entries() -> Vec<u8> {
    let mut b = Blob::default();
    b.raw(&short(2, 0x0000, 0)) // 00:00.0 host bridge
        .raw(&short(2, 0x0008, 0)) // 00:01.0 VGA
        .raw(&short(2, 0x0010, 0)) // 00:02.0 the IOMMU itself
        .raw(&short(3, 0x0100, 0)) // 01:00.0 ...
        .raw(&short(4, 0x01FF, 0)) // ... 01:1f.7, behind a root port
        .raw(&short(2, 0x00F8, 0)) // 00:1f.0 LPC
        .raw(&special(0, 0, 0x00A0, 1));
    b.0
}

const QEMU_EFR: u64 = 0x0000_0000_0000_02C4; // GTSup | GASup | PCSup | XTSup (our pick)

/// QEMU-like IVRS: IVinfo EFRSup | PASize 40, a type-10h and a type-11h IVHD
/// for the same IOMMU, both with the same entries.
fn qemu_ivrs() -> Vec<u8> {
    let entries = qemu_entries();
    let mut blocks = ivhd10(0xD1, IOMMU_BDF, 0, 0x44, &entries);
    blocks.extend(ivhd11(0x11, IOMMU_BDF, 0, QEMU_EFR, &entries));
    ivrs_table(1 | 40 << 8, &blocks)
}

fn range(first: u16, last: u16) -> Device<'static> {
    Device::Range(DeviceRange {
        first: DeviceId(first),
        last: DeviceId(last),
        dte: DteSetting(0),
        alias: None,
        extended: None,
    })
}

#[test]
fn qemu_like_table_parses() {
    let t = qemu_ivrs();
    let ivrs = Ivrs::parse(&t).unwrap();
    assert_eq!(ivrs.iv_info(), IvInfo(0x2801));
    assert!(ivrs.iv_info().efr_sup());
    assert_eq!(ivrs.iv_info().pa_size(), 40);
    assert_eq!(ivrs.header().oem_id, *b"BOCHS ");

    let ivhds: Vec<_> = ivrs.ivhds().collect();
    assert_eq!(ivhds.len(), 2);
    let (legacy, efr) = (&ivhds[0], &ivhds[1]);
    assert_eq!(legacy.block_type, IvhdType::Type10);
    assert_eq!(legacy.offset, 48);
    assert_eq!(
        legacy.flags,
        IvhdFlags::HT_TUN_EN | IvhdFlags::IOTLB_SUP | IvhdFlags::PREF_SUP | IvhdFlags::PPR_SUP
    );
    assert_eq!(legacy.device_id, DeviceId::new(0, 2, 0));
    assert_eq!(legacy.capability_offset, 0x40);
    assert_eq!(legacy.mmio_base, 0xFED8_0000);
    assert_eq!(legacy.pci_segment, 0);
    assert_eq!(
        legacy.features,
        IvhdFeatures::Reporting(FeatureReporting(0x44))
    );
    assert_eq!(legacy.efr(), None);

    assert_eq!(efr.block_type, IvhdType::Type11);
    assert_eq!(efr.offset, 48 + 24 + 32); // six 4-byte entries and one 8-byte entry
    assert_eq!(efr.flags, IvhdFlags::HT_TUN_EN | IvhdFlags::IOTLB_SUP);
    assert_eq!(efr.efr(), Some(QEMU_EFR));
    assert!(efr.same_iommu(legacy));

    let entries: Vec<_> = efr.entries().collect();
    assert_eq!(entries.len(), 7);
    assert_eq!(
        entries[0],
        DeviceEntry::Select {
            device_id: DeviceId(0),
            dte: DteSetting(0)
        }
    );
    assert_eq!(
        entries[3],
        DeviceEntry::RangeStart {
            device_id: DeviceId(0x100),
            dte: DteSetting(0)
        }
    );
    assert_eq!(
        entries[4],
        DeviceEntry::RangeEnd {
            device_id: DeviceId(0x1FF)
        }
    );
    let ioapic = SpecialDevice {
        variety: SpecialVariety::IoApic,
        handle: 0,
        source: DeviceId::new(0, 0x14, 0),
        dte: DteSetting(0),
    };
    assert_eq!(entries[6], DeviceEntry::Special(ioapic));

    let devices: Vec<_> = efr.devices().collect();
    assert_eq!(
        devices,
        [
            range(0x0000, 0x0000),
            range(0x0008, 0x0008),
            range(0x0010, 0x0010),
            range(0x0100, 0x01FF),
            range(0x00F8, 0x00F8),
            Device::Special(ioapic),
        ]
    );
    assert_eq!(legacy.devices().collect::<Vec<_>>(), devices);
    assert_eq!(efr.covers(DeviceId::new(1, 3, 1)), Some(DteSetting(0)));
    assert_eq!(efr.covers(DeviceId::new(0, 3, 0)), None);
    assert_eq!(ivrs.ivmds().count(), 0);
}

#[test]
fn iommus_prefers_the_highest_type() {
    let t = qemu_ivrs();
    let ivrs = Ivrs::parse(&t).unwrap();
    let units: Vec<_> = ivrs.iommus().collect();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].block_type, IvhdType::Type11);

    // 40h, 10h and 11h for IOMMU A (00:00.2), 10h twice for IOMMU B (40:00.2).
    let all = [1, 0, 0, 0];
    let mut blocks = ivhd11(0x40, 0x0002, 0, 0, &all);
    blocks.extend(ivhd10(0, 0x4002, 0, 0, &all));
    blocks.extend(ivhd10(0, 0x0002, 0, 0, &all));
    blocks.extend(ivhd11(0x11, 0x0002, 0, 0, &all));
    blocks.extend(ivhd10(0, 0x4002, 0, 0x1, &all));
    let t = ivrs_table(0, &blocks);
    let ivrs = Ivrs::parse(&t).unwrap();
    let units: Vec<_> = ivrs
        .iommus()
        .map(|u| (u.device_id, u.block_type, u.offset))
        .collect();
    assert_eq!(
        units,
        [
            (DeviceId(0x0002), IvhdType::Type40, 48),
            (DeviceId(0x4002), IvhdType::Type10, 48 + 44)
        ]
    );
}

#[test]
fn iommus_of_a_huge_table_are_capped_and_found_in_linear_time() {
    // The 16 MiB an ACPI table may have, filled with 24-byte IVHDs (65536 distinct IOMMUs, then
    // again): comparing each with every other (the first iommus()) would take hours.
    let count = ((16 << 20) - 48 - 40) / 24;
    let mut blocks = Vec::with_capacity(count * 24);
    for i in 0..count {
        blocks.extend(ivhd10(0, i as u16, 0, 0, &[]));
    }
    // A 40h block for IOMMU 3 at the end still wins over its 10h block.
    blocks.extend(ivhd11(0x40, 3, 0, 0, &[]));
    let t = ivrs_table(0, &blocks);
    let ivrs = Ivrs::parse(&t).unwrap();
    let start = std::time::Instant::now();
    let units: Vec<_> = ivrs
        .iommus()
        .map(|u| (u.device_id.0, u.block_type))
        .collect();
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(units.len(), MAX_IOMMUS);
    assert_eq!(units[0], (0, IvhdType::Type10));
    assert!(!units.contains(&(3, IvhdType::Type10)));
    assert_eq!(units[MAX_IOMMUS - 1], (3, IvhdType::Type40));
    assert_eq!(
        units[MAX_IOMMUS - 2],
        (MAX_IOMMUS as u16 - 1, IvhdType::Type10)
    );
}

#[test]
fn summary_for_the_console() {
    let t = qemu_ivrs();
    let ivrs = Ivrs::parse(&t).unwrap();
    let lines: Vec<String> = ivrs
        .iommus()
        .enumerate()
        .map(|(i, unit)| format!("iommu {i}: {}", unit.summary()))
        .collect();
    assert_eq!(
        lines[0],
        "iommu 0: bdf 00:02.0 mmio 0xfed80000 seg 0 type 11h cap 0x40 flags 0x11 msi 0 unit 0 \
         efr 0x00000000000002c4 efr2 0x0\n  \
         00:00.0 dte 0x00\n  \
         00:01.0 dte 0x00\n  \
         00:02.0 dte 0x00\n  \
         01:00.0-01:1f.7 dte 0x00\n  \
         00:1f.0 dte 0x00\n  \
         ioapic 0 -> 00:14.0 dte 0x00"
    );
    let legacy = ivrs.ivhds().next().unwrap();
    assert_eq!(
        format!("{legacy}"),
        "bdf 00:02.0 mmio 0xfed80000 seg 0 type 10h cap 0x40 flags 0xd1 msi 0 unit 0 features 0x00000044"
    );
    assert_eq!(
        format!("{}", ivrs.iv_info()),
        "ivinfo 0x00002801: efr_sup 1 dma_remap 0 va 0 pa 40 gva code 0"
    );
}

#[test]
fn every_entry_type_decodes() {
    let mut e = Blob::default();
    e.raw(&short(1, 0, 0xD7)) // all
        .raw(&alias(66, 0x0300, 0x01, 0x0208)) // 03:00.0 as 02:01.0
        .raw(&alias(67, 0x0400, 0x02, 0x0210)) // 04:00.0-04:1f.7 as 02:02.0
        .raw(&short(4, 0x04FF, 0))
        .raw(&extended(70, 0x0500, 0x04, 0x8000_0000)) // 05:00.0, ATS disabled
        .raw(&extended(71, 0x0600, 0x00, 0))
        .raw(&short(4, 0x0601, 0))
        .raw(&special(0xD7, 2, 0x00A5, 2)) // HPET 2 as 00:14.5
        .raw(&special(0, 9, 0x0001, 7)) // unknown variety
        .raw(&acpi_hid(0x00A5, 0x40, b"AMDI0020", 2, b"ID00"));
    let t = ivrs_table(0, &ivhd11(0x40, IOMMU_BDF, 0, 0, &e.0));
    let ivrs = Ivrs::parse(&t).unwrap();
    let ivhd = ivrs.ivhds().next().unwrap();
    let entries: Vec<_> = ivhd.entries().collect();
    let id = DeviceId;
    let dte = DteSetting;
    assert_eq!(
        entries[..9],
        [
            DeviceEntry::All { dte: dte(0xD7) },
            DeviceEntry::AliasSelect {
                device_id: id(0x300),
                dte: dte(1),
                alias: id(0x208)
            },
            DeviceEntry::AliasRangeStart {
                device_id: id(0x400),
                dte: dte(2),
                alias: id(0x210)
            },
            DeviceEntry::RangeEnd {
                device_id: id(0x4FF)
            },
            DeviceEntry::ExtendedSelect {
                device_id: id(0x500),
                dte: dte(4),
                extended: ExtendedDteSetting(0x8000_0000)
            },
            DeviceEntry::ExtendedRangeStart {
                device_id: id(0x600),
                dte: dte(0),
                extended: ExtendedDteSetting(0)
            },
            DeviceEntry::RangeEnd {
                device_id: id(0x601)
            },
            DeviceEntry::Special(SpecialDevice {
                variety: SpecialVariety::Hpet,
                handle: 2,
                source: id(0xA5),
                dte: dte(0xD7)
            }),
            DeviceEntry::Special(SpecialDevice {
                variety: SpecialVariety::Other(7),
                handle: 9,
                source: id(1),
                dte: dte(0)
            }),
        ]
    );
    let DeviceEntry::AcpiHid(hid) = entries[9] else {
        panic!("not an ACPI HID entry: {:?}", entries[9])
    };
    assert_eq!(hid.device_id, id(0xA5));
    assert_eq!(hid.dte, dte(0x40));
    assert_eq!(hid.hardware_id, *b"AMDI0020");
    assert_eq!(hid.compatible_id, [0; 8]);
    assert_eq!(hid.uid_format, 2);
    assert_eq!(hid.uid, b"ID00");
    assert_eq!(entries.len(), 10);

    let lines: Vec<_> = ivhd.devices().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        [
            "00:00.0-ff:1f.7 dte 0xd7",
            "03:00.0 dte 0x01 alias 02:01.0",
            "04:00.0-04:1f.7 dte 0x02 alias 02:02.0",
            "05:00.0 dte 0x04 ext 0x80000000",
            "06:00.0-06:00.1 dte 0x00 ext 0x00000000",
            "hpet 2 -> 00:14.5 dte 0xd7",
            "special variety 7 handle 9 -> 00:00.1 dte 0x00",
            "acpi AMDI0020 uid ID00 -> 00:14.5 dte 0x40",
        ]
    );
    // The "all" entry comes first, so it answers for every device.
    assert_eq!(ivhd.covers(id(0x0300)), Some(dte(0xD7)));
}

#[test]
fn unknown_entry_types_are_skipped_by_their_length() {
    let mut e = Blob::default();
    e.raw(&[0, 0, 0, 0]) // type 0: 4-byte padding
        .raw(&[64, 0, 0, 0, 0, 0, 0, 0]) // type 64: 8-byte padding
        .raw(&[5, 0xAA, 0xAA, 0xAA]) // reserved 4-byte type
        .raw(&[0x80; 16]) // type 128: 16 bytes by bits 7:6
        .raw(&[0xC1; 32]) // type 193: 32 bytes
        .raw(&acpi_hid(0, 0, b"XXXX0000", 1, &[1, 2, 3])); // type 240 ...
    let mut other_variable = acpi_hid(0, 0, b"YYYY0000", 0, &[9]);
    other_variable[0] = 0xF5; // ... and 245: variable like 240
    e.raw(&other_variable).raw(&short(2, 0x0042, 0));
    let t = ivrs_table(0, &ivhd10(0, IOMMU_BDF, 0, 0, &e.0));
    let ivrs = Ivrs::parse(&t).unwrap();
    let ivhd = ivrs.ivhds().next().unwrap();
    let first = 48 + 24;
    let unknown: Vec<_> = ivhd
        .entries()
        .filter_map(|e| match e {
            DeviceEntry::Unknown {
                entry_type,
                length,
                offset,
            } => Some((entry_type, length, offset - first)),
            _ => None,
        })
        .collect();
    assert_eq!(
        unknown,
        [
            (0, 4, 0),
            (64, 8, 4),
            (5, 4, 12),
            (128, 16, 16),
            (193, 32, 32),
            (245, 23, 89)
        ]
    );
    let last = ivhd.devices().last().unwrap();
    assert_eq!(last, range(0x42, 0x42));
    assert_eq!(
        ivhd.devices().next().unwrap().to_string(),
        format!("unknown entry type 0 (4 bytes) at {first:#x}, skipped")
    );
}

/// IVMD blocks of the three types (§5.2.3).
fn ivmd(block_type: u8, flags: u8, device: u16, aux: u16, start: u64, length: u64) -> Vec<u8> {
    let mut b = Blob::default();
    b.u8(block_type)
        .u8(flags)
        .u16(32)
        .u16(device)
        .u16(aux)
        .u64(0)
        .u64(start)
        .u64(length);
    b.0
}

#[test]
fn ivmd_headers_decode() {
    let mut blocks = ivhd10(0, IOMMU_BDF, 0, 0, &short(1, 0, 0));
    blocks.extend(ivmd(0x20, 0x07, 0xFFFF, 0xFFFF, 0xA_0000, 0x2_0000));
    blocks.extend(ivmd(0x21, 0x08, 0x0010, 0, 0xFEE0_0000, 0x10_0000));
    blocks.extend(ivmd(0x22, 0x03, 0x0100, 0x01FF, 0x8000_0000, 0x1000));
    let t = ivrs_table(0, &blocks);
    let ivrs = Ivrs::parse(&t).unwrap();
    let ivmds: Vec<_> = ivrs.ivmds().collect();
    assert_eq!(
        ivmds,
        [
            Ivmd {
                devices: IvmdDevices::All,
                flags: IvmdFlags::UNITY | IvmdFlags::READ | IvmdFlags::WRITE,
                start: 0xA_0000,
                length: 0x2_0000,
            },
            Ivmd {
                devices: IvmdDevices::Select(DeviceId(0x10)),
                flags: IvmdFlags::EXCLUSION_RANGE,
                start: 0xFEE0_0000,
                length: 0x10_0000,
            },
            Ivmd {
                devices: IvmdDevices::Range(DeviceId(0x100), DeviceId(0x1FF)),
                flags: IvmdFlags::UNITY | IvmdFlags::READ,
                start: 0x8000_0000,
                length: 0x1000,
            },
        ]
    );
    assert_eq!(
        ivmds[2].to_string(),
        "ivmd 01:00.0-01:1f.7 0x80000000+0x1000 flags 0x03"
    );
    assert_eq!(ivrs.ivhds().count(), 1);
}

#[test]
fn unknown_block_types_are_skipped() {
    let mut blocks = Blob::default();
    blocks.u8(0x50).u8(0).u16(6).u16(0xBEEF); // 6-byte unknown block
    blocks.raw(&ivhd10(0, IOMMU_BDF, 0, 0, &short(1, 0, 0)));
    let t = ivrs_table(0, &blocks.0);
    let ivrs = Ivrs::parse(&t).unwrap();
    let kinds: Vec<_> = ivrs
        .blocks()
        .map(|b| match b {
            Block::Ivhd(h) => (h.block_type.code(), h.offset),
            Block::Ivmd(_) => (0x20, 0),
            Block::Unknown {
                block_type,
                offset,
                length,
            } => {
                assert_eq!(length, 6);
                (block_type, offset)
            }
        })
        .collect();
    assert_eq!(kinds, [(0x50, 48), (0x10, 54)]);
}

#[test]
fn bad_checksum_is_rejected() {
    let mut t = qemu_ivrs();
    t[60] ^= 0x01;
    assert_eq!(
        Ivrs::parse(&t).unwrap_err(),
        IvrsError::Table(firmware::Error::BadChecksum {
            sig: Signature::IVRS
        })
    );
}

#[test]
fn truncated_tables_are_rejected() {
    let t = qemu_ivrs();
    // Bytes cut short of the length field.
    assert_eq!(
        Ivrs::parse(&t[..t.len() - 1]).unwrap_err(),
        IvrsError::Table(firmware::Error::Truncated {
            sig: Signature::IVRS
        })
    );
    // A consistent table (length and checksum) too short for IVinfo.
    let mut short_table = t[..44].to_vec();
    short_table[4..8].copy_from_slice(&44u32.to_le_bytes());
    fix_checksum(&mut short_table, 9);
    assert_eq!(Ivrs::parse(&short_table).unwrap_err(), IvrsError::Truncated);
    // Some other table.
    let mut apic = t.clone();
    apic[..4].copy_from_slice(b"APIC");
    fix_checksum(&mut apic, 9);
    assert_eq!(
        Ivrs::parse(&apic).unwrap_err(),
        IvrsError::NotIvrs(Signature::MADT)
    );
}

/// Replaces the IVHD length (at table offset 50) and re-checksums.
fn with_first_block_length(mut t: Vec<u8>, length: u16) -> Vec<u8> {
    t[50..52].copy_from_slice(&length.to_le_bytes());
    fix_checksum(&mut t, 9);
    t
}

#[test]
fn garbage_block_lengths_are_rejected() {
    let t = qemu_ivrs();
    for (length, why) in [
        (0u16, "zero would loop forever"),
        (3, "shorter than type/flags/length"),
        (20, "shorter than the 24-byte type-10h fixed part"),
        (0xFFFF, "runs past the table"),
    ] {
        assert_eq!(
            Ivrs::parse(&with_first_block_length(t.clone(), length)).unwrap_err(),
            IvrsError::BadBlockLength {
                offset: 48,
                block_type: 0x10,
                length
            },
            "{why}"
        );
    }
    // A type-11h block must hold its 40-byte fixed part.
    let t = ivrs_table(0, &ivhd11(0x11, IOMMU_BDF, 0, 0, &[])[..]);
    assert_eq!(
        Ivrs::parse(&with_first_block_length(t, 36)).unwrap_err(),
        IvrsError::BadBlockLength {
            offset: 48,
            block_type: 0x11,
            length: 36
        }
    );
    // An IVMD must be 32 bytes.
    let mut m = ivmd(0x21, 0, 0, 0, 0, 0);
    m[2] = 16;
    assert!(matches!(
        Ivrs::parse(&ivrs_table(0, &m)).unwrap_err(),
        IvrsError::BadBlockLength {
            offset: 48,
            block_type: 0x21,
            length: 16
        }
    ));
    // Two stray bytes after the last block.
    let mut blocks = ivhd10(0, IOMMU_BDF, 0, 0, &[]);
    blocks.extend([0x10, 0]);
    assert_eq!(
        Ivrs::parse(&ivrs_table(0, &blocks)).unwrap_err(),
        IvrsError::BadBlockLength {
            offset: 72,
            block_type: 0x10,
            length: 0
        }
    );
}

#[test]
fn entries_running_past_their_ivhd_are_rejected() {
    let first = 48 + 24;
    for (entries, entry_type) in [
        (vec![2, 0, 0], 2u8),                       // 4-byte entry, 3 bytes left
        (special(0, 0, 0xA0, 1)[..6].to_vec(), 72), // 8-byte entry, 6 bytes left
        (vec![0x80; 12], 0x80),                     // 16-byte entry, 12 left
        (acpi_hid(0, 0, b"AMDI0020", 2, b"ID")[..20].to_vec(), 240), // cut before UID length
        (
            {
                let mut e = acpi_hid(0, 0, b"AMDI0020", 2, b"ID");
                e[21] = 200; // UID length beyond the block
                e
            },
            240,
        ),
    ] {
        let t = ivrs_table(0, &ivhd10(0, IOMMU_BDF, 0, 0, &entries));
        assert_eq!(
            Ivrs::parse(&t).unwrap_err(),
            IvrsError::BadEntryLength {
                offset: first,
                entry_type
            }
        );
    }
}

#[test]
fn unpaired_ranges_are_rejected() {
    let first = 48 + 24;
    let cases: [(&[[u8; 4]], usize); 4] = [
        (&[short(3, 0x100, 0), short(2, 0x200, 0)], first), // start, then no end
        (&[short(2, 0x200, 0), short(4, 0x1FF, 0)], first + 4), // end without start
        (&[short(1, 0, 0), short(3, 0x100, 0)], first + 4), // start at the very end
        (&[short(3, 0x1FF, 0), short(4, 0x100, 0)], first), // ends before it starts
    ];
    for (entries, offset) in cases {
        let t = ivrs_table(0, &ivhd10(0, IOMMU_BDF, 0, 0, &entries.concat()));
        assert_eq!(
            Ivrs::parse(&t).unwrap_err(),
            IvrsError::BadRange { offset },
            "{entries:x?}"
        );
    }
    // Alias and extended ranges need their end entry too.
    let t = ivrs_table(0, &ivhd10(0, IOMMU_BDF, 0, 0, &alias(67, 0x100, 0, 0x8)));
    assert_eq!(
        Ivrs::parse(&t).unwrap_err(),
        IvrsError::BadRange { offset: first }
    );
    let t = ivrs_table(0, &ivhd10(0, IOMMU_BDF, 0, 0, &extended(71, 0x100, 0, 0)));
    assert_eq!(
        Ivrs::parse(&t).unwrap_err(),
        IvrsError::BadRange { offset: first }
    );
}

#[test]
fn errors_print() {
    assert_eq!(
        IvrsError::BadBlockLength {
            offset: 48,
            block_type: 0x10,
            length: 0
        }
        .to_string(),
        "IVRS: block type 0x10 at 0x30 has bad length 0"
    );
    assert_eq!(
        IvrsError::Table(firmware::Error::BadChecksum {
            sig: Signature::IVRS
        })
        .to_string(),
        "IVRS: ACPI table IVRS: bad checksum"
    );
}

#[test]
fn from_sdt_accepts_a_validated_table() {
    let t = qemu_ivrs();
    let sdt = Sdt::from_bytes(&t).unwrap();
    assert_eq!(Ivrs::from_sdt(&sdt).unwrap().iommus().count(), 1);
}

#[test]
fn coverage_keeps_the_listed_devices_and_refuses_others() {
    let t = qemu_ivrs();
    let ivrs = Ivrs::parse(&t).unwrap();
    let unit = ivrs.iommus().next().unwrap();
    let c = Coverage::of(&unit);
    assert!(!c.truncated);
    assert_eq!(c.segment, 0);
    // Selects (00:01.0), the range 01:00.0-01:1f.7 and its ends.
    for id in [0x0008, 0x0100, 0x0150, 0x01FF] {
        assert_eq!(c.check(0, DeviceId(id)), Ok(()), "{id:#x}");
    }
    // Not listed: between selects, past the range; special devices are not PCI functions.
    for id in [0x0018, 0x0200, 0x00A0] {
        assert_eq!(
            c.check(0, DeviceId(id)),
            Err(NotCovered::NotListed(DeviceId(id)))
        );
    }
    assert_eq!(c.check(1, DeviceId(0x0100)), Err(NotCovered::OtherSegment));
}

#[test]
fn coverage_past_its_capacity_refuses_what_it_dropped() {
    let mut entries = Vec::new();
    for i in 0..(MAX_COVERAGE_RANGES as u16 + 2) {
        entries.extend(short(2, i * 8, 0));
    }
    let blocks = ivhd11(0x11, IOMMU_BDF, 0, QEMU_EFR, &entries);
    let t = ivrs_table(1 | 40 << 8, &blocks);
    let ivrs = Ivrs::parse(&t).unwrap();
    let c = Coverage::of(&ivrs.iommus().next().unwrap());
    assert!(c.truncated);
    let last_kept = (MAX_COVERAGE_RANGES as u16 - 1) * 8;
    assert_eq!(c.check(0, DeviceId(last_kept)), Ok(()));
    assert!(c.check(0, DeviceId(last_kept + 8)).is_err());
}
