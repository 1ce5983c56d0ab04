//! The `acpi` crate (5.2, the newest release that builds on stable without `alloc`) driven over
//! fake memory, beside this crate's parsers: why the hypervisor does not use it (issue #11).
//!
//! Its well-formed path agrees with ours (the first test), so the handler below is a fair one.
//! Each other test is a malformed table that this crate rejects with an [`Error`] and that `acpi`
//! loops on forever, reads past the table, or panics on (an overflowing subtraction; the
//! hypervisor's release build has no overflow checks, so there the subtraction wraps and the
//! slice that follows spans the address space). The handler must also hand out a mapping for any
//! address a firmware pointer names: `AcpiHandler::map_physical_region` cannot fail, so a
//! pointer outside RAM can only become a panic. A test failing here means `acpi` changed: look
//! again at using it.

use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;
use firmware::{Acpi, Error, PhysMem, Rsdp, Signature};
use hostfuzz::fix_checksum;

/// Fake physical memory: `bytes` at physical address `base`, leaked so mappings may outlive the
/// test's borrows (`PhysicalMapping` has no lifetime).
#[derive(Clone, Copy)]
struct Fake {
    base: usize,
    bytes: &'static [u8],
}

impl Fake {
    fn new(base: usize, bytes: Vec<u8>) -> Self {
        Self {
            base,
            bytes: Vec::leak(bytes),
        }
    }

    /// Offset of `phys..phys + len` in `bytes`, if it lies inside.
    fn offset(&self, phys: usize, len: usize) -> Option<usize> {
        let start = phys.checked_sub(self.base)?;
        (start.checked_add(len)? <= self.bytes.len()).then_some(start)
    }
}

impl PhysMem for Fake {
    fn bytes(&self, phys: u64, len: usize) -> Option<&[u8]> {
        let start = self.offset(usize::try_from(phys).ok()?, len)?;
        self.bytes.get(start..start + len)
    }
}

impl AcpiHandler for Fake {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        // The trait has no way to refuse: a range outside memory can only panic.
        let start = self
            .offset(phys, size)
            .unwrap_or_else(|| panic!("acpi mapped {phys:#x}+{size:#x}, outside memory"));
        let ptr = NonNull::from(&self.bytes[start]).cast::<T>();
        // SAFETY: `ptr..ptr + size` lies inside the leaked, never written `bytes`; the acpi
        // structures are `repr(C, packed)`, so any address is aligned for them.
        unsafe { PhysicalMapping::new(phys, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

const BASE: usize = 0x10_0000;

/// A whole table: 36-byte header (ACPI 6.5 §5.2.6) and `body`, length and checksum filled in.
fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = sig.to_vec();
    t.extend_from_slice(&(36 + body.len() as u32).to_le_bytes());
    t.extend_from_slice(&[1, 0]);
    t.extend_from_slice(b"DIDVSRTESTTBL ");
    t.extend_from_slice(&[1, 0, 0, 0, b'R', b'U', b'S', b'T', 1, 0, 0, 0]);
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

/// A MADT (ACPI 6.5 §5.2.12) with local APIC address FEE0_0000h and these entries.
fn madt(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = 0xFEE0_0000u32.to_le_bytes().to_vec();
    body.extend_from_slice(&1u32.to_le_bytes());
    for e in entries {
        body.extend_from_slice(e);
    }
    table(b"APIC", &body)
}

/// Memory at [`BASE`]: a revision-2 RSDP (ACPI 6.5 §5.2.5.3), at 64 an XSDT listing `tables`,
/// then the tables, each on a 64-byte boundary, and `tail` right after the last table.
fn memory(tables: &[Vec<u8>], tail: &[u8]) -> (Fake, usize) {
    const XSDT: usize = 64;
    let mut at = (XSDT + 36 + 8 * tables.len()).next_multiple_of(64);
    let mut entries = Vec::new();
    for t in tables {
        entries.extend_from_slice(&((BASE + at) as u64).to_le_bytes());
        at = (at + t.len()).next_multiple_of(64);
    }
    let mut rsdp = b"RSD PTR \0DIDVSR\x02\0\0\0\0".to_vec();
    rsdp.extend_from_slice(&36u32.to_le_bytes());
    rsdp.extend_from_slice(&((BASE + XSDT) as u64).to_le_bytes());
    rsdp.extend_from_slice(&[0; 4]);
    fix_checksum(&mut rsdp[..20], 8);
    fix_checksum(&mut rsdp, 32);
    let mut mem = rsdp;
    mem.resize(XSDT, 0);
    mem.extend_from_slice(&table(b"XSDT", &entries));
    for t in tables {
        mem.resize(mem.len().next_multiple_of(64), 0);
        mem.extend_from_slice(t);
    }
    let tables_end = BASE + mem.len();
    mem.extend_from_slice(tail);
    (Fake::new(BASE, mem), tables_end)
}

fn ours(mem: &Fake) -> Result<Acpi<'_, Fake>, Error> {
    Acpi::new(mem, &Rsdp::at(mem, BASE as u64)?)
}

fn theirs(mem: Fake) -> AcpiTables<Fake> {
    // SAFETY: `BASE` holds an RSDP in `mem`.
    unsafe { AcpiTables::from_rsdp(mem, BASE) }.expect("acpi rejected the RSDP")
}

/// CPUs as (uid, APIC id, enabled) from `acpi`'s MADT iterator.
fn their_cpus(madt: &PhysicalMapping<Fake, Madt>, limit: usize) -> Vec<(u32, u32, bool)> {
    madt.get()
        .entries()
        .take(limit)
        .filter_map(|e| match e {
            MadtEntry::LocalApic(a) => {
                Some((a.processor_id.into(), a.apic_id.into(), a.flags & 1 != 0))
            }
            MadtEntry::LocalX2Apic(x) => Some((x.processor_uid, x.x2apic_id, x.flags & 1 != 0)),
            _ => None,
        })
        .collect()
}

const LAPIC_0: &[u8] = &[0, 8, 0, 0, 1, 0, 0, 0];
const LAPIC_1: &[u8] = &[0, 8, 1, 1, 1, 0, 0, 0];
const IOAPIC: &[u8] = &[1, 12, 0, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0];
const X2APIC_300: &[u8] = &[9, 16, 0, 0, 0, 3, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0];

#[test]
fn well_formed_tables_decode_alike() {
    let mut mcfg = vec![0u8; 8];
    mcfg.extend_from_slice(&0xB000_0000u64.to_le_bytes());
    mcfg.extend_from_slice(&[0, 0, 0, 0xFF, 0, 0, 0, 0]);
    let tables = [
        madt(&[LAPIC_0, LAPIC_1, IOAPIC, X2APIC_300]),
        table(b"MCFG", &mcfg),
    ];
    let (mem, _) = memory(&tables, &[]);

    let acpi = ours(&mem).unwrap();
    let our_madt = acpi.madt().unwrap();
    let our_cpus: Vec<_> = our_madt
        .cpus()
        .iter()
        .map(|c| (c.uid, c.apic_id, c.enabled))
        .collect();
    assert_eq!(our_cpus, [(0, 0, true), (1, 1, true), (2, 0x300, true)]);
    let our_mcfg = acpi.mcfg().unwrap();
    let r = &our_mcfg.regions()[0];

    let tables = theirs(mem);
    let their_madt = tables.find_table::<Madt>().unwrap();
    assert_eq!(their_cpus(&their_madt, 100), our_cpus);
    assert_eq!({ their_madt.get().local_apic_address }, 0xFEE0_0000);
    let their_mcfg = tables.find_table::<Mcfg>().unwrap();
    let e = &their_mcfg.entries()[0];
    assert_eq!(
        (
            { e.base_address },
            { e.pci_segment_group },
            e.bus_number_start,
            e.bus_number_end
        ),
        (r.base, r.segment, r.start_bus, r.end_bus)
    );
}

/// A MADT entry of length 0: `acpi` 5.2 never moves past it (with a reserved type it spins
/// inside `next`; with type 0, as here, it yields the same CPU forever). Still so in 7.0.0-pre1.
#[test]
fn zero_length_madt_entry_never_ends() {
    let (mem, _) = memory(&[madt(&[&[0, 0, 7, 7, 1, 0, 0, 0]])], &[]);
    assert!(matches!(
        ours(&mem).unwrap().madt(),
        Err(Error::BadEntryLength { offset: 44, .. })
    ));
    let madt = theirs(mem).find_table::<Madt>().unwrap();
    assert_eq!(their_cpus(&madt, 1000), vec![(7, 7, true); 1000]);
}

/// An x2APIC entry (16 bytes, ACPI 6.5 §5.2.12.12) whose length says 8, last in the table:
/// `acpi` reads its flags and UID from the 8 bytes after the table, outside the range it mapped.
#[test]
fn short_madt_entry_is_read_past_the_table() {
    let (mem, end) = memory(&[madt(&[&[9, 8, 0, 0, 0, 3, 0, 0]])], &[0xA5; 8]);
    assert!(matches!(
        ours(&mem).unwrap().madt(),
        Err(Error::BadEntryLength { offset: 44, .. })
    ));
    let madt = theirs(mem).find_table::<Madt>().unwrap();
    assert_eq!(madt.physical_start() + madt.region_length(), end);
    assert_eq!(their_cpus(&madt, 100), [(0xA5A5_A5A5, 0x300, true)]);
}

/// The RSDP's extended checksum (ACPI 6.5 §5.2.5.3) over a length of 52: `acpi` maps 36 bytes
/// and sums 52, so bytes it never mapped decide whether the RSDP is valid (a length of 4 GiB
/// would read 4 GiB). Ours reads `length` bytes through `PhysMem` (at most 4 KiB).
#[test]
fn rsdp_checksum_reads_past_its_mapping() {
    let (mem, _) = memory(&[madt(&[LAPIC_0])], &[]);
    let mut bytes = mem.bytes.to_vec();
    bytes[20..24].copy_from_slice(&52u32.to_le_bytes());
    fix_checksum(&mut bytes[..20], 8);
    let sum_36 = bytes[..36].iter().fold(0u8, |s, b| s.wrapping_add(*b));
    assert_ne!(sum_36, 0, "the 36 bytes acpi maps do not sum to zero");
    bytes[36] = 0u8.wrapping_sub(sum_36);
    let mem = Fake::new(BASE, bytes);
    // SAFETY: `BASE` holds an RSDP in `mem`.
    let tables = unsafe { AcpiTables::from_rsdp(mem, BASE) }.unwrap();
    assert!(tables.find_table::<Madt>().is_ok());
    let ours = Rsdp::at(&mem, BASE as u64).unwrap();
    assert_eq!(
        { ours.length },
        52,
        "both sum 52 bytes, only acpi beyond what it mapped"
    );
}

/// An XSDT whose length field is 0: its checksum over 0 bytes passes in `acpi`, and the entry
/// count is `length - 36`.
#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "attempt to subtract with overflow")
)]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the subtraction wraps: undefined behaviour"
)]
fn xsdt_shorter_than_its_header_underflows() {
    let (mem, _) = memory(&[madt(&[LAPIC_0])], &[]);
    let mut bytes = mem.bytes.to_vec();
    let xsdt = 64;
    assert_eq!(&bytes[xsdt..xsdt + 4], b"XSDT");
    bytes[xsdt + 4..xsdt + 8].fill(0);
    let mem = Fake::new(BASE, bytes);
    assert!(matches!(
        ours(&mem),
        Err(Error::BadLength {
            sig: Signature::XSDT,
            len: 0
        })
    ));
    let _ = theirs(mem).find_table::<Madt>();
}

/// A MADT entry whose length runs 255 bytes past the table's end.
#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "attempt to subtract with overflow")
)]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the subtraction wraps: undefined behaviour"
)]
fn madt_entry_past_the_table_end_underflows() {
    let (mem, _) = memory(&[madt(&[&[0, 255, 0, 0, 1, 0, 0, 0]])], &[0; 256]);
    assert!(matches!(
        ours(&mem).unwrap().madt(),
        Err(Error::BadEntryLength { offset: 44, .. })
    ));
    let madt = theirs(mem).find_table::<Madt>().unwrap();
    let _ = their_cpus(&madt, 100);
}
