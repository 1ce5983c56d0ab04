//! Fuzz targets of the ACPI parsers (see `docs/fuzzing.md`): firmware tables are read as
//! untrusted bytes.
//!
//! Byte inputs are mutated seeds from `fuzz/corpus/<target>/` (tables built like the unit tests
//! build them, and the MADT and MCFG of a cloud VM) and arbitrary bytes; half of them get their
//! checksum fixed after mutation, so the fuzzer gets past the checksum into the entries.
//! Properties: no panic, no hang, and an accepted table's view stays inside its bytes with
//! bounded counts. Well-formed tables from strategies must decode to what was put in.

use firmware::madt::{Cpu, InterruptOverride, IoApic, MadtEntries, MadtEntry};
use firmware::madt::{MAX_CPUS, MAX_IOAPICS, MAX_OVERRIDES};
use firmware::mcfg::{EcamRegion, MAX_ECAM_REGIONS};
use firmware::rsdp::RootPointer;
use firmware::{Acpi, Madt, Mcfg, PhysMem, Rsdp, Sdt, Signature};
use hostfuzz::proptest;
use hostfuzz::proptest::prelude::*;
use hostfuzz::{fix_checksum, fix_sdt, Bytes};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Fixes both RSDP checksums: the first 20 bytes, then the whole length (revision >= 2).
fn fix_rsdp(v: &mut [u8]) {
    if v.len() < 20 {
        return;
    }
    fix_checksum(&mut v[..20], 8);
    if v.len() >= 36 {
        let len = u32::from_le_bytes([v[20], v[21], v[22], v[23]]) as usize;
        let len = len.clamp(33, v.len());
        fix_checksum(&mut v[..len], 32);
    }
}

/// A whole table: 36-byte header (ACPI 6.5 §5.2.6) and `body`, length and checksum filled in.
fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = sig.to_vec();
    t.extend_from_slice(&(36 + body.len() as u32).to_le_bytes());
    t.extend_from_slice(&[revision, 0]);
    t.extend_from_slice(b"DIDVSRTESTTBL ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"RUST");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

/// Byte inputs of `target` as (bytes, fix the checksum afterwards).
fn table_inputs(target: &'static str, extra: Vec<Vec<u8>>) -> impl Strategy<Value = (Bytes, bool)> {
    (hostfuzz::inputs(target, extra, 1024), any::<bool>())
}

/// Fake physical memory: regions at their base addresses.
struct FakeMem(Vec<(u64, Vec<u8>)>);

impl PhysMem for FakeMem {
    fn bytes(&self, phys: u64, len: usize) -> Option<&[u8]> {
        self.0.iter().find_map(|(base, data)| {
            let start = usize::try_from(phys.checked_sub(*base)?).ok()?;
            data.get(start..start.checked_add(len)?)
        })
    }
}

/// The table of `bytes` when it validates: length inside the bytes, the body after the header.
fn sdt(bytes: &[u8]) -> Option<Sdt<'_>> {
    let sdt = Sdt::from_bytes(bytes).ok()?;
    let len = sdt.header().length as usize;
    assert_eq!(sdt.bytes().len(), len);
    assert!(len >= 36 && len <= bytes.len());
    assert_eq!(sdt.body().len(), len - 36);
    assert_eq!(sdt.signature().0, bytes[..4]);
    let _ = format!("{} {:?}", sdt.signature(), sdt.header());
    Some(sdt)
}

// ---------------------------------------------------------------------------------------------
// RSDP.

fn rsdp_v1() -> Vec<u8> {
    let mut v = b"RSD PTR \0DIDVSR\0".to_vec();
    v.extend_from_slice(&0x7FE_0000u32.to_le_bytes());
    fix_checksum(&mut v, 8);
    v
}

fn rsdp_v2(xsdt: u64) -> Vec<u8> {
    let mut v = b"RSD PTR \0DIDVSR\x02".to_vec();
    v.extend_from_slice(&0x7FE_0000u32.to_le_bytes());
    v.extend_from_slice(&36u32.to_le_bytes());
    v.extend_from_slice(&xsdt.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    fix_rsdp(&mut v);
    v
}

fn check_rsdp(bytes: &[u8]) -> bool {
    let Ok(r) = Rsdp::from_bytes(bytes) else {
        return false;
    };
    assert_eq!(r.signature, *b"RSD PTR ");
    let length = r.length;
    if r.revision < 2 {
        assert_eq!(length, 0);
        assert!(matches!(r.root(), RootPointer::Rsdt(_)));
    } else {
        assert!((36..=4096).contains(&length) && length as usize <= bytes.len());
    }
    // The same bytes in memory: `at` agrees.
    let mem = FakeMem(vec![(0x1000, bytes.to_vec())]);
    assert_eq!(Rsdp::at(&mem, 0x1000), Ok(r));
    true
}

#[test]
fn fuzz_rsdp() {
    hostfuzz::run(
        "rsdp",
        30_000,
        |b| Some((Bytes(b), false)),
        || table_inputs("rsdp", vec![rsdp_v1(), rsdp_v2(0x7FE_1000)]),
        |(mut b, fix): (Bytes, bool)| {
            if fix {
                fix_rsdp(&mut b.0);
            }
            check_rsdp(&b)
        },
    );
}

// ---------------------------------------------------------------------------------------------
// MADT.

/// One MADT entry to build (ACPI 6.5 §5.2.12).
#[derive(Clone, Debug)]
enum Entry {
    LocalApic {
        uid: u8,
        id: u8,
        flags: u32,
    },
    X2Apic {
        uid: u32,
        id: u32,
        flags: u32,
    },
    IoApic {
        id: u8,
        address: u32,
        gsi_base: u32,
    },
    Override {
        bus: u8,
        source: u8,
        gsi: u32,
        flags: u16,
    },
    AddressOverride(u64),
    /// Another type, with a body: skipped by length.
    Other {
        kind: u8,
        body: Vec<u8>,
    },
}

impl Entry {
    fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Entry::LocalApic { uid, id, flags } => {
                v.extend_from_slice(&[0, 8, *uid, *id]);
                v.extend_from_slice(&flags.to_le_bytes());
            }
            Entry::X2Apic { uid, id, flags } => {
                v.extend_from_slice(&[9, 16, 0, 0]);
                v.extend_from_slice(&id.to_le_bytes());
                v.extend_from_slice(&flags.to_le_bytes());
                v.extend_from_slice(&uid.to_le_bytes());
            }
            Entry::IoApic {
                id,
                address,
                gsi_base,
            } => {
                v.extend_from_slice(&[1, 12, *id, 0]);
                v.extend_from_slice(&address.to_le_bytes());
                v.extend_from_slice(&gsi_base.to_le_bytes());
            }
            Entry::Override {
                bus,
                source,
                gsi,
                flags,
            } => {
                v.extend_from_slice(&[2, 10, *bus, *source]);
                v.extend_from_slice(&gsi.to_le_bytes());
                v.extend_from_slice(&flags.to_le_bytes());
            }
            Entry::AddressOverride(a) => {
                v.extend_from_slice(&[5, 12, 0, 0]);
                v.extend_from_slice(&a.to_le_bytes());
            }
            Entry::Other { kind, body } => {
                v.extend_from_slice(&[*kind, 2 + body.len() as u8]);
                v.extend_from_slice(body);
            }
        }
        v
    }

    /// What [`MadtEntries`] must decode it to.
    fn decoded(&self) -> MadtEntry {
        let cpu = |uid, apic_id, flags: u32| Cpu {
            uid,
            apic_id,
            enabled: flags & 1 != 0,
            online_capable: flags & 1 == 0 && flags & 2 != 0,
        };
        match self {
            Entry::LocalApic { uid, id, flags } => {
                MadtEntry::Cpu(cpu(u32::from(*uid), u32::from(*id), *flags))
            }
            Entry::X2Apic { uid, id, flags } => MadtEntry::Cpu(cpu(*uid, *id, *flags)),
            Entry::IoApic {
                id,
                address,
                gsi_base,
            } => MadtEntry::IoApic(IoApic {
                id: *id,
                address: *address,
                gsi_base: *gsi_base,
            }),
            Entry::Override {
                bus,
                source,
                gsi,
                flags,
            } => MadtEntry::InterruptOverride(InterruptOverride {
                bus: *bus,
                source: *source,
                gsi: *gsi,
                flags: *flags,
            }),
            Entry::AddressOverride(a) => MadtEntry::LocalApicAddress(*a),
            Entry::Other { kind, body } => MadtEntry::Other {
                kind: *kind,
                length: 2 + body.len() as u8,
            },
        }
    }
}

fn madt_table(lapic: u32, flags: u32, entries: &[Entry]) -> Vec<u8> {
    let mut body = lapic.to_le_bytes().to_vec();
    body.extend_from_slice(&flags.to_le_bytes());
    for e in entries {
        body.extend_from_slice(&e.bytes());
    }
    table(b"APIC", 5, &body)
}

/// Like QEMU's (the unit tests' table).
fn qemu_like_madt() -> Vec<u8> {
    madt_table(
        0xFEE0_0000,
        1,
        &[
            Entry::LocalApic {
                uid: 0,
                id: 0,
                flags: 1,
            },
            Entry::LocalApic {
                uid: 1,
                id: 1,
                flags: 1,
            },
            Entry::IoApic {
                id: 0,
                address: 0xFEC0_0000,
                gsi_base: 0,
            },
            Entry::Override {
                bus: 0,
                source: 0,
                gsi: 2,
                flags: 0,
            },
            Entry::Override {
                bus: 0,
                source: 9,
                gsi: 9,
                flags: 0xD,
            },
            Entry::Other {
                kind: 4,
                body: vec![0xFF, 0, 0, 1],
            },
        ],
    )
}

/// x2APIC entries and an address override.
fn x2apic_madt() -> Vec<u8> {
    madt_table(
        0xFEE0_0000,
        0,
        &[
            Entry::X2Apic {
                uid: 0x1_0000,
                id: 0x300,
                flags: 1,
            },
            Entry::X2Apic {
                uid: 1,
                id: 0x301,
                flags: 2,
            },
            Entry::AddressOverride(0x1_FEE0_0000),
        ],
    )
}

/// Checks a parsed MADT against the entries iterator; returns whether it was accepted.
fn check_madt(bytes: &[u8]) -> bool {
    let Some(sdt) = sdt(bytes) else {
        return false;
    };
    let entries: Vec<_> = MadtEntries::new(&sdt).collect();
    let madt = match Madt::parse(&sdt) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            // The table was refused: the entries iterator must have met the same error, or the
            // signature/fixed part was wrong.
            assert!(
                entries.iter().any(|e| e.is_err())
                    || sdt.signature() != Signature::MADT
                    || sdt.bytes().len() < 44,
                "refused with {e:?} but every entry decodes"
            );
            return false;
        }
    };
    assert!(entries.iter().all(|e| e.is_ok()));
    let count = |f: fn(&MadtEntry) -> bool| entries.iter().flatten().filter(|e| f(e)).count();
    let cpus = count(|e| matches!(e, MadtEntry::Cpu(_)));
    let io = count(|e| matches!(e, MadtEntry::IoApic(_)));
    let ovr = count(|e| matches!(e, MadtEntry::InterruptOverride(_)));
    assert_eq!(madt.cpus().len(), cpus.min(MAX_CPUS));
    assert_eq!(madt.io_apics().len(), io.min(MAX_IOAPICS));
    assert_eq!(madt.overrides().len(), ovr.min(MAX_OVERRIDES));
    assert_eq!(
        madt.dropped(),
        cpus.saturating_sub(MAX_CPUS)
            + io.saturating_sub(MAX_IOAPICS)
            + ovr.saturating_sub(MAX_OVERRIDES)
    );
    for irq in 0..=255 {
        let _ = madt.isa_irq_to_gsi(irq);
    }
    for o in madt.overrides() {
        let _ = (o.polarity(), o.trigger());
    }
    let _ = (madt.local_apic_address(), madt.flags(), madt.pcat_compat());
    true
}

#[test]
fn fuzz_madt() {
    hostfuzz::run(
        "madt",
        30_000,
        |b| Some((Bytes(b), false)),
        || table_inputs("madt", vec![qemu_like_madt(), x2apic_madt()]),
        |(mut b, fix): (Bytes, bool)| {
            if fix {
                fix_sdt(&mut b.0);
            }
            check_madt(&b)
        },
    );
}

fn madt_entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>(), any::<u32>())
            .prop_map(|(uid, id, flags)| Entry::LocalApic { uid, id, flags }),
        4 => (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(uid, id, flags)| Entry::X2Apic { uid, id, flags }),
        2 => (any::<u8>(), any::<u32>(), any::<u32>()).prop_map(|(id, address, gsi_base)| {
            Entry::IoApic {
                id,
                address,
                gsi_base,
            }
        }),
        2 => (any::<u8>(), any::<u8>(), any::<u32>(), any::<u16>()).prop_map(
            |(bus, source, gsi, flags)| Entry::Override {
                bus,
                source,
                gsi,
                flags
            }
        ),
        1 => any::<u64>().prop_map(Entry::AddressOverride),
        1 => (
            any::<u8>().prop_filter("a decoded type", |k| ![0, 1, 2, 5, 9].contains(k)),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(kind, body)| Entry::Other { kind, body }),
    ]
}

/// Well-formed MADTs decode entry by entry to what was built, and the summary keeps the first
/// entries of each kind up to its capacity.
#[test]
fn fuzz_madt_well_formed() {
    hostfuzz::run(
        "madt-well-formed",
        5000,
        |_| None,
        || {
            (
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(madt_entry(), 0..300),
            )
        },
        |(lapic, flags, entries): (u32, u32, Vec<Entry>)| {
            let t = madt_table(lapic, flags, &entries);
            let sdt = Sdt::from_bytes(&t).expect("built table");
            let decoded: Vec<_> = MadtEntries::new(&sdt).collect();
            let want: Vec<_> = entries.iter().map(|e| Ok(e.decoded())).collect();
            assert_eq!(decoded, want);
            let madt = Madt::parse(&sdt).expect("well-formed MADT refused");
            let cpus: Vec<_> = want
                .iter()
                .filter_map(|e| match e {
                    Ok(MadtEntry::Cpu(c)) => Some(*c),
                    _ => None,
                })
                .take(MAX_CPUS)
                .collect();
            assert_eq!(madt.cpus(), cpus.as_slice());
            let lapic_addr = entries
                .iter()
                .rev()
                .find_map(|e| match e {
                    Entry::AddressOverride(a) => Some(*a),
                    _ => None,
                })
                .unwrap_or(u64::from(lapic));
            assert_eq!(madt.local_apic_address(), lapic_addr);
            assert_eq!(madt.flags(), flags);
            assert!(check_madt(&t));
            true
        },
    );
}

// ---------------------------------------------------------------------------------------------
// MCFG.

fn mcfg_table(regions: &[EcamRegion], reserved: u32) -> Vec<u8> {
    let mut body = vec![0u8; 8];
    for r in regions {
        body.extend_from_slice(&r.base.to_le_bytes());
        body.extend_from_slice(&r.segment.to_le_bytes());
        body.extend_from_slice(&[r.start_bus, r.end_bus]);
        body.extend_from_slice(&reserved.to_le_bytes());
    }
    table(b"MCFG", 1, &body)
}

fn check_mcfg(bytes: &[u8]) -> bool {
    let Some(sdt) = sdt(bytes) else {
        return false;
    };
    let mcfg = match Mcfg::parse(&sdt) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    let n = (sdt.bytes().len() - 44) / 16;
    assert_eq!(sdt.bytes().len(), 44 + 16 * n);
    assert_eq!(mcfg.regions().len(), n.min(MAX_ECAM_REGIONS));
    assert_eq!(mcfg.dropped(), n.saturating_sub(MAX_ECAM_REGIONS));
    for r in mcfg.regions() {
        for bus in [0, r.start_bus, r.end_bus, 255] {
            if let Some(found) = mcfg.region_for(r.segment, bus) {
                assert!((found.start_bus..=found.end_bus).contains(&bus));
            }
            for (dev, func) in [(0, 0), (31, 7), (32, 0), (0, 8)] {
                if let Some(a) = r.function_base(bus, dev, func) {
                    assert!(a >= r.base && dev < 32 && func < 8);
                }
            }
        }
    }
    true
}

#[test]
fn fuzz_mcfg() {
    let q35 = EcamRegion {
        base: 0xB000_0000,
        segment: 0,
        start_bus: 0,
        end_bus: 0xFF,
    };
    let other = EcamRegion {
        base: 0x40_0000_0000,
        segment: 1,
        start_bus: 0x80,
        end_bus: 0x8F,
    };
    hostfuzz::run(
        "mcfg",
        30_000,
        |b| Some((Bytes(b), false)),
        move || {
            table_inputs(
                "mcfg",
                vec![mcfg_table(&[q35], 0), mcfg_table(&[q35, other], 0)],
            )
        },
        |(mut b, fix): (Bytes, bool)| {
            if fix {
                fix_sdt(&mut b.0);
            }
            check_mcfg(&b)
        },
    );
}

/// Well-formed MCFGs give back their allocations, in order, up to the capacity.
#[test]
fn fuzz_mcfg_well_formed() {
    let region = (any::<u64>(), any::<u16>(), any::<u8>(), any::<u8>()).prop_map(
        |(base, segment, start_bus, end_bus)| EcamRegion {
            base,
            segment,
            start_bus,
            end_bus,
        },
    );
    hostfuzz::run(
        "mcfg-well-formed",
        5000,
        |_| None,
        move || (proptest::collection::vec(region, 0..24), any::<u32>()),
        |(regions, reserved): (Vec<EcamRegion>, u32)| {
            let t = mcfg_table(&regions, reserved);
            let mcfg = Mcfg::parse(&Sdt::from_bytes(&t).expect("built table")).expect("refused");
            let n = regions.len().min(MAX_ECAM_REGIONS);
            assert_eq!(mcfg.regions(), &regions[..n]);
            assert!(check_mcfg(&t));
            true
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The whole walk: RSDP -> XSDT/RSDT -> tables by signature.

/// Where the memory of a walk input starts.
const WALK_BASE: u64 = 0x10_0000;

/// A memory image at [`WALK_BASE`]: RSDP, XSDT, RSDT, MADT, MCFG, an IVRS-like table, each on
/// a 64-byte boundary.
fn walk_memory() -> Vec<u8> {
    let mut mem = vec![0u8; 64];
    let place = |t: &[u8], mem: &mut Vec<u8>| {
        while !mem.len().is_multiple_of(64) {
            mem.push(0);
        }
        let at = WALK_BASE + mem.len() as u64;
        mem.extend_from_slice(t);
        at
    };
    let madt = place(&qemu_like_madt(), &mut mem);
    let mcfg_region = EcamRegion {
        base: 0xB000_0000,
        segment: 0,
        start_bus: 0,
        end_bus: 0xFF,
    };
    let mcfg = place(&mcfg_table(&[mcfg_region], 0), &mut mem);
    let ivrs = place(&table(b"IVRS", 2, &[0; 12]), &mut mem);
    let mut xsdt_body = Vec::new();
    for a in [madt, mcfg, ivrs] {
        xsdt_body.extend_from_slice(&a.to_le_bytes());
    }
    let xsdt = place(&table(b"XSDT", 1, &xsdt_body), &mut mem);
    let mut rsdt_body = Vec::new();
    for a in [madt, mcfg] {
        rsdt_body.extend_from_slice(&(a as u32).to_le_bytes());
    }
    let rsdt = place(&table(b"RSDT", 1, &rsdt_body), &mut mem);
    let mut rsdp = rsdp_v2(xsdt);
    rsdp[16..20].copy_from_slice(&(rsdt as u32).to_le_bytes());
    fix_rsdp(&mut rsdp);
    mem[..36].copy_from_slice(&rsdp);
    mem
}

fn check_walk(bytes: &[u8]) -> bool {
    let mem = FakeMem(vec![(WALK_BASE, bytes.to_vec())]);
    let Ok(rsdp) = Rsdp::at(&mem, WALK_BASE) else {
        return false;
    };
    let acpi = match Acpi::new(&mem, &rsdp) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    assert!(acpi.table_addresses().count() <= acpi.root().body().len() / 4);
    for sig in [
        Signature::MADT,
        Signature::MCFG,
        Signature::IVRS,
        Signature::FADT,
    ] {
        if let Ok(t) = acpi.find_table(sig) {
            assert_eq!(t.signature(), sig);
            assert!(sdt(t.bytes()).is_some());
        }
    }
    if let Ok(m) = acpi.madt() {
        assert!(m.cpus().len() <= MAX_CPUS);
    }
    if let Ok(m) = acpi.mcfg() {
        assert!(m.regions().len() <= MAX_ECAM_REGIONS);
    }
    true
}

#[test]
fn fuzz_acpi_walk() {
    hostfuzz::run(
        "acpi-walk",
        15_000,
        |b| Some((Bytes(b), false)),
        || table_inputs("acpi-walk", vec![walk_memory()]),
        |(mut b, fix): (Bytes, bool)| {
            if fix {
                fix_rsdp(&mut b.0);
            }
            check_walk(&b)
        },
    );
}

/// Writes the seeds built here into the corpus: `cargo test -p firmware --test fuzz --
/// --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing a builder"]
fn write_seed_corpus() {
    let write = hostfuzz::write_seed;
    write("rsdp", "v1.bin", &rsdp_v1());
    write("rsdp", "v2.bin", &rsdp_v2(0x7FE_1000));
    write("madt", "qemu-like.bin", &qemu_like_madt());
    write("madt", "x2apic.bin", &x2apic_madt());
    let q35 = EcamRegion {
        base: 0xB000_0000,
        segment: 0,
        start_bus: 0,
        end_bus: 0xFF,
    };
    write("mcfg", "q35.bin", &mcfg_table(&[q35], 0));
    write("acpi-walk", "xsdt-madt-mcfg-ivrs.bin", &walk_memory());
}
