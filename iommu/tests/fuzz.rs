//! Fuzz targets of the IVRS parser (see `docs/fuzzing.md`): the table is firmware's word on
//! which devices each IOMMU covers, read as untrusted bytes.
//!
//! `fuzz_ivrs`: mutated QEMU-like tables (checksum fixed half the time) and arbitrary bytes;
//! no panic, no hang, and an accepted table iterates without surprises (blocks inside the
//! table in order, ranges first <= last, one IVHD per IOMMU). `fuzz_ivrs_well_formed`: tables
//! from strategies parse, and their device entries come back paired up as they were built.

use hostfuzz::proptest;
use hostfuzz::proptest::prelude::*;
use hostfuzz::{fix_checksum, fix_sdt, Bytes};
use iommu::ivrs::{Block, Device, DeviceEntry, DeviceId, DteSetting, IvhdType};
use iommu::Ivrs;

// ---------------------------------------------------------------------------------------------
// Building tables (AMD IOMMU spec §5.2).

/// The whole table: ACPI header, IVinfo, 8 reserved bytes, then the blocks.
fn ivrs_table(iv_info: u32, blocks: &[u8]) -> Vec<u8> {
    let mut t = b"IVRS".to_vec();
    t.extend_from_slice(&(48 + blocks.len() as u32).to_le_bytes());
    t.extend_from_slice(&[1, 0]);
    t.extend_from_slice(b"BOCHS BXPC    ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&iv_info.to_le_bytes());
    t.extend_from_slice(&[0; 8]);
    t.extend_from_slice(blocks);
    fix_checksum(&mut t, 9);
    t
}

/// One device entry (§5.2.2.2).
#[derive(Clone, Debug)]
enum Entry {
    All(u8),
    Select(u16, u8),
    /// start, end, dte; written as a type-3 entry and a type-4 entry
    Range(u16, u16, u8),
    AliasSelect(u16, u8, u16),
    /// written with a type-4 end entry
    AliasRange(u16, u16, u8, u16),
    ExtendedSelect(u16, u8, u32),
    /// written with a type-4 end entry
    ExtendedRange(u16, u16, u8, u32),
    /// dte, handle, source, variety
    Special(u8, u8, u16, u8),
    /// device, dte, hid, uid format, uid
    AcpiHid(u16, u8, [u8; 8], u8, Vec<u8>),
    /// A reserved type (not 1-4, 66, 67, 70-72, 240+), sized by its type bits.
    Unknown(u8),
}

fn short(t: u8, id: u16, dte: u8) -> Vec<u8> {
    let id = id.to_le_bytes();
    vec![t, id[0], id[1], dte]
}

fn eight(t: u8, id: u16, dte: u8, rest: [u8; 4]) -> Vec<u8> {
    let mut v = short(t, id, dte);
    v.extend_from_slice(&rest);
    v
}

fn alias_rest(source: u16) -> [u8; 4] {
    let s = source.to_le_bytes();
    [0, s[0], s[1], 0]
}

impl Entry {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Entry::All(dte) => short(1, 0, *dte),
            Entry::Select(id, dte) => short(2, *id, *dte),
            Entry::Range(a, b, dte) => [short(3, *a, *dte), short(4, *b, 0)].concat(),
            Entry::AliasSelect(id, dte, src) => eight(66, *id, *dte, alias_rest(*src)),
            Entry::AliasRange(a, b, dte, src) => {
                [eight(67, *a, *dte, alias_rest(*src)), short(4, *b, 0)].concat()
            }
            Entry::ExtendedSelect(id, dte, ext) => eight(70, *id, *dte, ext.to_le_bytes()),
            Entry::ExtendedRange(a, b, dte, ext) => {
                [eight(71, *a, *dte, ext.to_le_bytes()), short(4, *b, 0)].concat()
            }
            Entry::Special(dte, handle, source, variety) => {
                let s = source.to_le_bytes();
                vec![72, 0, 0, *dte, *handle, s[0], s[1], *variety]
            }
            Entry::AcpiHid(id, dte, hid, format, uid) => {
                let mut v = short(240, *id, *dte);
                v.extend_from_slice(hid);
                v.extend_from_slice(&[0; 8]);
                v.extend_from_slice(&[*format, uid.len() as u8]);
                v.extend_from_slice(uid);
                v
            }
            Entry::Unknown(t) => {
                let mut v = vec![0u8; 4 << (t >> 6)];
                v[0] = *t;
                v
            }
        }
    }

    /// The device (range) it must come back as: (first, last, dte), `None` for special,
    /// ACPI and unknown entries.
    fn range(&self) -> Option<(u16, u16, u8)> {
        match *self {
            Entry::All(dte) => Some((0, 0xFFFF, dte)),
            Entry::Select(id, dte)
            | Entry::AliasSelect(id, dte, _)
            | Entry::ExtendedSelect(id, dte, _) => Some((id, id, dte)),
            Entry::Range(a, b, dte)
            | Entry::AliasRange(a, b, dte, _)
            | Entry::ExtendedRange(a, b, dte, _) => Some((a, b, dte)),
            _ => None,
        }
    }
}

/// One block: IVHD of type 10h/11h/40h with entries, or an IVMD of type 20h-22h.
#[derive(Clone, Debug)]
enum BlockSpec {
    Ivhd {
        block_type: u8,
        flags: u8,
        device_id: u16,
        segment: u16,
        mmio: u64,
        entries: Vec<Entry>,
    },
    Ivmd {
        block_type: u8,
        flags: u8,
        device_id: u16,
        aux: u16,
        start: u64,
        length: u64,
    },
}

impl BlockSpec {
    fn bytes(&self) -> Vec<u8> {
        match self {
            BlockSpec::Ivhd {
                block_type,
                flags,
                device_id,
                segment,
                mmio,
                entries,
            } => {
                let body: Vec<u8> = entries.iter().flat_map(|e| e.bytes()).collect();
                let fixed = if *block_type == 0x10 { 24 } else { 40 };
                let mut v = vec![*block_type, *flags];
                v.extend_from_slice(&((fixed + body.len()) as u16).to_le_bytes());
                v.extend_from_slice(&device_id.to_le_bytes());
                v.extend_from_slice(&0x40u16.to_le_bytes());
                v.extend_from_slice(&mmio.to_le_bytes());
                v.extend_from_slice(&segment.to_le_bytes());
                v.extend_from_slice(&0u16.to_le_bytes());
                if *block_type == 0x10 {
                    v.extend_from_slice(&0x44u32.to_le_bytes());
                } else {
                    v.extend_from_slice(&0u32.to_le_bytes());
                    v.extend_from_slice(&0x2C4u64.to_le_bytes());
                    v.extend_from_slice(&0u64.to_le_bytes());
                }
                v.extend_from_slice(&body);
                v
            }
            BlockSpec::Ivmd {
                block_type,
                flags,
                device_id,
                aux,
                start,
                length,
            } => {
                let mut v = vec![*block_type, *flags];
                v.extend_from_slice(&32u16.to_le_bytes());
                v.extend_from_slice(&device_id.to_le_bytes());
                v.extend_from_slice(&aux.to_le_bytes());
                v.extend_from_slice(&[0; 8]);
                v.extend_from_slice(&start.to_le_bytes());
                v.extend_from_slice(&length.to_le_bytes());
                v
            }
        }
    }
}

fn build(iv_info: u32, blocks: &[BlockSpec]) -> Vec<u8> {
    let body: Vec<u8> = blocks.iter().flat_map(|b| b.bytes()).collect();
    ivrs_table(iv_info, &body)
}

/// Like QEMU's for a small q35 machine (the unit tests' table): a 10h and an 11h IVHD for the
/// same IOMMU with the same entries.
fn qemu_like() -> Vec<BlockSpec> {
    let entries = vec![
        Entry::Select(0x0000, 0),
        Entry::Select(0x0008, 0),
        Entry::Select(0x0010, 0),
        Entry::Range(0x0100, 0x01FF, 0),
        Entry::Select(0x00F8, 0),
        Entry::Special(0, 0, 0x00A0, 1),
    ];
    let ivhd = |block_type, flags| BlockSpec::Ivhd {
        block_type,
        flags,
        device_id: 0x0010,
        segment: 0,
        mmio: 0xFED8_0000,
        entries: entries.clone(),
    };
    vec![ivhd(0x10, 0xD1), ivhd(0x11, 0x11)]
}

/// Every entry kind, a type-40h IVHD and IVMDs.
fn every_kind() -> Vec<BlockSpec> {
    vec![
        BlockSpec::Ivhd {
            block_type: 0x40,
            flags: 0x30,
            device_id: 0x0002,
            segment: 0,
            mmio: 0xFEB8_0000,
            entries: vec![
                Entry::All(0xD7),
                Entry::AliasSelect(0x0300, 0, 0x0208),
                Entry::AliasRange(0x0400, 0x04FF, 0, 0x0210),
                Entry::ExtendedSelect(0x0500, 0, 0x1),
                Entry::ExtendedRange(0x0600, 0x0607, 0, 0x2),
                Entry::Special(0xD7, 0, 0x00A0, 2),
                Entry::AcpiHid(0x00A0, 0, *b"AMDI0020", 2, b"ID00".to_vec()),
                Entry::Unknown(0),
                Entry::Unknown(64),
            ],
        },
        BlockSpec::Ivmd {
            block_type: 0x21,
            flags: 0x7,
            device_id: 0x0300,
            aux: 0,
            start: 0xA_0000,
            length: 0x2_0000,
        },
        BlockSpec::Ivmd {
            block_type: 0x22,
            flags: 0x8,
            device_id: 0x0100,
            aux: 0x01FF,
            start: 0xDEAD_0000,
            length: 0x1000,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// Parses `table`; for an accepted table walks everything the kernel and its console use.
fn check(table: &[u8]) -> bool {
    let ivrs = match Ivrs::parse(table) {
        Ok(i) => i,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    let len = u32::from_le_bytes([table[4], table[5], table[6], table[7]]) as usize;
    let _ = format!("{} {:?}", ivrs.iv_info(), ivrs.header());
    let mut last_offset = 0;
    for block in ivrs.blocks() {
        let offset = match block {
            Block::Ivhd(h) => h.offset,
            Block::Unknown { offset, length, .. } => {
                assert!(usize::from(length) >= 4 && offset + usize::from(length) <= len);
                offset
            }
            Block::Ivmd(m) => {
                let _ = m.to_string();
                continue;
            }
        };
        assert!(
            offset >= 48 && offset < len && offset > last_offset,
            "block at {offset}"
        );
        last_offset = offset;
    }
    for ivhd in ivrs.ivhds() {
        let _ = (ivhd.summary().to_string(), ivhd.efr());
        let mut entries = 0;
        for e in ivhd.entries() {
            entries += 1;
            if let DeviceEntry::Unknown { offset, length, .. } = e {
                assert!(offset > ivhd.offset && offset + length <= len);
            }
        }
        let mut devices = 0;
        for d in ivhd.devices() {
            devices += 1;
            match d {
                Device::Range(r) => {
                    assert!(r.first <= r.last, "{r:?}");
                    assert!(r.contains(r.first) && r.contains(r.last));
                }
                Device::AcpiHid(a) => assert!(a.uid.len() <= 255),
                _ => {}
            }
        }
        // Ranges take two entries: never more devices than entries.
        assert!(devices <= entries);
        for id in [0, 0x10, 0xFF, 0x100, 0xFFFF] {
            let _ = ivhd.covers(DeviceId(id));
        }
    }
    let iommus: Vec<_> = ivrs.iommus().collect();
    assert!(iommus.len() <= ivrs.ivhds().count());
    for (i, a) in iommus.iter().enumerate() {
        for b in &iommus[..i] {
            assert!(!a.same_iommu(b), "two IVHDs kept for one IOMMU");
        }
        // The kept one is of the highest type among those describing that IOMMU.
        assert!(ivrs
            .ivhds()
            .filter(|o| o.same_iommu(a))
            .all(|o| o.block_type <= a.block_type));
    }
    // Every IOMMU with an IVHD is there (up to the cap).
    let all: Vec<_> = ivrs.ivhds().collect();
    let distinct = all
        .iter()
        .enumerate()
        .filter(|(i, h)| !all[..*i].iter().any(|o| o.same_iommu(h)))
        .count();
    assert_eq!(iommus.len(), distinct.min(iommu::ivrs::MAX_IOMMUS));
    ivrs.ivmds().for_each(|m| {
        let _ = m.to_string();
    });
    true
}

#[test]
fn fuzz_ivrs() {
    hostfuzz::run(
        "ivrs",
        30_000,
        |b| Some((Bytes(b), false)),
        || {
            (
                hostfuzz::inputs(
                    "ivrs",
                    vec![build(0x2801, &qemu_like()), build(0x2801, &every_kind())],
                    1024,
                ),
                any::<bool>(),
            )
        },
        |(mut b, fix): (Bytes, bool)| {
            if fix {
                fix_sdt(&mut b.0);
            }
            check(&b)
        },
    );
}

fn entry() -> impl Strategy<Value = Entry> {
    let id = || prop_oneof![any::<u16>(), Just(0u16), Just(0xFFFF)];
    let range = || (id(), id()).prop_map(|(a, b)| (a.min(b), a.max(b)));
    prop_oneof![
        any::<u8>().prop_map(Entry::All),
        (id(), any::<u8>()).prop_map(|(i, d)| Entry::Select(i, d)),
        (range(), any::<u8>()).prop_map(|((a, b), d)| Entry::Range(a, b, d)),
        (id(), any::<u8>(), id()).prop_map(|(i, d, s)| Entry::AliasSelect(i, d, s)),
        (range(), any::<u8>(), id()).prop_map(|((a, b), d, s)| Entry::AliasRange(a, b, d, s)),
        (id(), any::<u8>(), any::<u32>()).prop_map(|(i, d, x)| Entry::ExtendedSelect(i, d, x)),
        (range(), any::<u8>(), any::<u32>())
            .prop_map(|((a, b), d, x)| Entry::ExtendedRange(a, b, d, x)),
        (any::<u8>(), any::<u8>(), id(), any::<u8>())
            .prop_map(|(d, h, s, v)| Entry::Special(d, h, s, v)),
        (
            id(),
            any::<u8>(),
            any::<[u8; 8]>(),
            0..3u8,
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(i, d, h, f, u)| Entry::AcpiHid(i, d, h, f, u)),
        any::<u8>()
            .prop_filter("a reserved type", |t| {
                !matches!(t, 1..=4 | 66 | 67 | 70..=72 | 240..)
            })
            .prop_map(Entry::Unknown),
    ]
}

fn block() -> impl Strategy<Value = BlockSpec> {
    prop_oneof![
        4 => (
            prop_oneof![Just(0x10u8), Just(0x11), Just(0x40)],
            any::<u8>(),
            0..4u16,
            0..2u16,
            any::<u64>(),
            proptest::collection::vec(entry(), 0..24),
        )
            .prop_map(|(block_type, flags, device_id, segment, mmio, entries)| BlockSpec::Ivhd {
                block_type,
                flags,
                device_id,
                segment,
                mmio,
                entries
            }),
        1 => (
            prop_oneof![Just(0x20u8), Just(0x21), Just(0x22)],
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(block_type, flags, device_id, aux, start, length)| BlockSpec::Ivmd {
                block_type,
                flags,
                device_id,
                aux,
                start,
                length
            }),
    ]
}

/// Well-formed tables parse, and each IVHD's devices are its entries with ranges paired.
#[test]
fn fuzz_ivrs_well_formed() {
    hostfuzz::run(
        "ivrs-well-formed",
        5000,
        |_| None,
        || (any::<u32>(), proptest::collection::vec(block(), 0..6)),
        |(iv_info, blocks): (u32, Vec<BlockSpec>)| {
            let t = build(iv_info, &blocks);
            let ivrs = Ivrs::parse(&t).unwrap_or_else(|e| panic!("refused: {e}"));
            assert_eq!(ivrs.iv_info().0, iv_info);
            let specs: Vec<_> = blocks
                .iter()
                .filter_map(|b| match b {
                    BlockSpec::Ivhd {
                        block_type,
                        device_id,
                        segment,
                        mmio,
                        entries,
                        ..
                    } => Some((*block_type, *device_id, *segment, *mmio, entries)),
                    _ => None,
                })
                .collect();
            let ivhds: Vec<_> = ivrs.ivhds().collect();
            assert_eq!(ivhds.len(), specs.len());
            for (h, (block_type, device_id, segment, mmio, entries)) in ivhds.iter().zip(specs) {
                let want_type = match block_type {
                    0x10 => IvhdType::Type10,
                    0x11 => IvhdType::Type11,
                    _ => IvhdType::Type40,
                };
                assert_eq!(h.block_type, want_type);
                assert_eq!(
                    (h.device_id.0, h.pci_segment, h.mmio_base),
                    (device_id, segment, mmio)
                );
                let ranges: Vec<_> = h
                    .devices()
                    .filter_map(|d| match d {
                        Device::Range(r) => Some((r.first.0, r.last.0, r.dte.0)),
                        _ => None,
                    })
                    .collect();
                let want: Vec<_> = entries.iter().filter_map(Entry::range).collect();
                assert_eq!(ranges, want);
                assert_eq!(h.devices().count(), entries.len());
                for &(first, last, dte) in &want {
                    // The first range that holds a device gives its setting.
                    let first_hit = |id: u16| {
                        want.iter()
                            .find(|r| (r.0..=r.1).contains(&id))
                            .map(|r| DteSetting(r.2))
                    };
                    assert_eq!(h.covers(DeviceId(first)), first_hit(first));
                    assert_eq!(h.covers(DeviceId(last)), first_hit(last));
                    let _ = dte;
                }
            }
            assert_eq!(ivrs.ivmds().count(), blocks.len() - ivhds.len());
            assert!(check(&t));
            true
        },
    );
}

/// Writes the seeds built here into the corpus: `cargo test -p iommu --test fuzz --
/// --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing a builder"]
fn write_seed_corpus() {
    hostfuzz::write_seed("ivrs", "qemu-like.bin", &build(0x2801, &qemu_like()));
    hostfuzz::write_seed("ivrs", "every-kind.bin", &build(0x2801, &every_kind()));
}
