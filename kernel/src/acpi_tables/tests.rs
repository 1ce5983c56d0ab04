//! Host tests: the tables are read back with the `firmware` crate's parsers (an independent
//! cross-check of layout, lengths and checksums), and FADT/FACS/DSDT bytes are compared at the
//! literal offsets of ACPI 6.5.

use super::*;
use firmware::madt::{Cpu, IoApic};
use firmware::mcfg::EcamRegion;
use firmware::rsdp::RootPointer;
use firmware::{find_rsdp, Acpi, PhysMem, Rsdp, Sdt, Signature};

const BASE: u64 = 0xE_0000;
const REGION: usize = 0x1_0000;

/// Guest memory below 1 MiB, as Linux sees it.
struct LowMemory(Vec<u8>);

impl PhysMem for LowMemory {
    fn bytes(&self, phys: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(phys).ok()?;
        self.0.get(start..start.checked_add(len)?)
    }
}

fn build(platform: &GuestPlatform<'_>) -> (LowMemory, AcpiTables) {
    let mut low = vec![0u8; 0x10_0000];
    let region = &mut low[BASE as usize..BASE as usize + REGION];
    let tables = write_acpi_tables(region, BASE, platform).unwrap();
    (LowMemory(low), tables)
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
}

fn u16_at(m: &LowMemory, at: u64) -> u16 {
    u16::from_le_bytes(m.bytes(at, 2).unwrap().try_into().unwrap())
}

fn u32_at(m: &LowMemory, at: u64) -> u32 {
    u32::from_le_bytes(m.bytes(at, 4).unwrap().try_into().unwrap())
}

fn u64_at(m: &LowMemory, at: u64) -> u64 {
    u64::from_le_bytes(m.bytes(at, 8).unwrap().try_into().unwrap())
}

const APIC_IDS: [u32; 4] = [0, 2, 4, 6];

#[test]
fn rsdp_is_found_both_ways_with_both_checksums() {
    let (mem, t) = build(&GuestPlatform::standard(&APIC_IDS));
    assert_eq!(t.rsdp_gpa, 0xE_0000);
    // Linux's fallback: the scan of 0xE0000..0x100000.
    let (found_at, rsdp) = find_rsdp(&mem).unwrap();
    assert_eq!(found_at, t.rsdp_gpa);
    assert_eq!(rsdp.root(), RootPointer::Xsdt(t.xsdt_gpa));
    assert_eq!(Rsdp::at(&mem, t.rsdp_gpa).unwrap(), rsdp);
    let raw = mem.bytes(t.rsdp_gpa, 36).unwrap();
    assert_eq!(&raw[..8], b"RSD PTR ");
    assert_eq!(sum(&raw[..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(sum(raw), 0, "extended checksum");
    assert_eq!(raw[15], 2, "revision");
    assert_eq!(u32_at(&mem, t.rsdp_gpa + 16), 0, "no RSDT");
    assert_eq!(u32_at(&mem, t.rsdp_gpa + 20), 36, "length");
}

#[test]
fn xsdt_lists_fadt_and_madt_with_valid_checksums() {
    let (mem, t) = build(&GuestPlatform::standard(&APIC_IDS));
    let acpi = Acpi::new(&mem, &Rsdp::at(&mem, t.rsdp_gpa).unwrap()).unwrap();
    assert_eq!(
        acpi.table_addresses().collect::<Vec<_>>(),
        [t.fadt_gpa, t.madt_gpa]
    );
    assert_eq!({ acpi.root().header().length }, 36 + 2 * 8);
    for (sig, at) in [
        (Signature::FADT, t.fadt_gpa),
        (Signature::MADT, t.madt_gpa),
        (Signature(*b"DSDT"), t.dsdt_gpa),
        (Signature::XSDT, t.xsdt_gpa),
    ] {
        let sdt = Sdt::expect_at(&mem, at, sig).unwrap(); // checks length and checksum
        assert_eq!(sum(sdt.bytes()), 0);
        assert_eq!(sdt.header().oem_id, *b"DIDVSR");
        assert_eq!(at % 16, 0, "{sig} aligned");
    }
    assert_eq!(
        acpi.mcfg().unwrap_err(),
        firmware::Error::TableMissing(Signature::MCFG)
    );
}

#[test]
fn madt_has_every_vcpu_the_ioapic_and_the_overrides() {
    let (mem, t) = build(&GuestPlatform::standard(&APIC_IDS));
    let acpi = Acpi::new(&mem, &Rsdp::at(&mem, t.rsdp_gpa).unwrap()).unwrap();
    let madt = acpi.madt().unwrap();
    assert_eq!(madt.local_apic_address(), 0xFEE0_0000);
    assert!(!madt.pcat_compat());
    let cpus: Vec<Cpu> = (0..4)
        .map(|i| Cpu {
            uid: i,
            apic_id: 2 * i,
            enabled: true,
            online_capable: false,
        })
        .collect();
    assert_eq!(madt.cpus(), cpus);
    assert_eq!(
        madt.io_apics(),
        [IoApic {
            id: 0,
            address: 0xFEC0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(madt.isa_irq_to_gsi(0), 2);
    assert_eq!(madt.isa_irq_to_gsi(9), 9);
    assert_eq!(madt.isa_irq_to_gsi(4), 4);
    let o = madt.overrides();
    assert_eq!((o[0].source, o[0].gsi, o[0].flags), (0, 2, 0b01_01));
    assert_eq!((o[1].source, o[1].gsi, o[1].flags), (9, 9, 0b11_01));
    assert_eq!(o[1].trigger(), Trigger::Level);
    assert_eq!(o[1].polarity(), Polarity::ActiveHigh);
    assert_eq!(madt.dropped(), 0);
    // 44 fixed + 4 x2APIC (16) + IOAPIC (12) + 2 overrides (10); revision 5.
    let h = Sdt::at(&mem, t.madt_gpa).unwrap().header().to_owned();
    assert_eq!({ h.length }, 44 + 64 + 12 + 20);
    assert_eq!(h.revision, 5);
    // First entry: type 9, length 16, x2APIC id 0, flags enabled, UID 0.
    let e = mem.bytes(t.madt_gpa + 44, 16).unwrap();
    assert_eq!(e, [9, 16, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn fadt_fields_at_their_offsets() {
    let (mem, t) = build(&GuestPlatform::standard(&APIC_IDS));
    let f = t.fadt_gpa;
    let b = |o: u64| mem.bytes(f + o, 1).unwrap()[0];
    assert_eq!(mem.bytes(f, 4).unwrap(), b"FACP");
    assert_eq!(u32_at(&mem, f + 4), 276, "length");
    assert_eq!(b(8), 6, "major revision");
    assert_eq!(u32_at(&mem, f + 36), t.facs_gpa as u32, "FIRMWARE_CTRL");
    assert_eq!(u32_at(&mem, f + 40), t.dsdt_gpa as u32, "DSDT");
    assert_eq!(u16_at(&mem, f + 46), 9, "SCI_INT");
    assert_eq!(u32_at(&mem, f + 48), 0, "SMI_CMD: always in ACPI mode");
    assert_eq!(u32_at(&mem, f + 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(u32_at(&mem, f + 60), 0, "PM1b_EVT_BLK");
    assert_eq!(u32_at(&mem, f + 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(u32_at(&mem, f + 76), 0x608, "PM_TMR_BLK");
    assert_eq!(u32_at(&mem, f + 80), 0, "GPE0_BLK");
    assert_eq!((b(88), b(89), b(90), b(91), b(92)), (4, 2, 0, 4, 0));
    assert_eq!(u16_at(&mem, f + 96), 101, "no C2");
    assert_eq!(u16_at(&mem, f + 98), 1001, "no C3");
    // LEGACY_DEVICES | VGA_NOT_PRESENT; no 8042, RTC present.
    assert_eq!(u16_at(&mem, f + 109), 0b0101, "IAPC_BOOT_ARCH");
    // WBINVD(0) PROC_C1(2) PWR_BUTTON(4) SLP_BUTTON(5) FIX_RTC(6) RESET_REG_SUP(10)
    // HEADLESS(12) FORCE_APIC_PHYSICAL_DESTINATION_MODE(19); TMR_VAL_EXT(8), HW_REDUCED(20) clear.
    assert_eq!(u32_at(&mem, f + 112), 0x0008_1475, "Flags");
    // RESET_REG: system I/O, 8 bits, offset 0, byte access, port 0xCF9; RESET_VALUE 6.
    assert_eq!(mem.bytes(f + 116, 4).unwrap(), [1, 8, 0, 1]);
    assert_eq!(u64_at(&mem, f + 120), 0xCF9);
    assert_eq!(b(128), 6);
    assert_eq!(b(131), 5, "minor version");
    assert_eq!(u64_at(&mem, f + 132), t.facs_gpa, "X_FIRMWARE_CTRL");
    assert_eq!(u64_at(&mem, f + 140), t.dsdt_gpa, "X_DSDT");
    assert_eq!(
        mem.bytes(f + 148, 4).unwrap(),
        [1, 32, 0, 2],
        "X_PM1a_EVT_BLK"
    );
    assert_eq!(u64_at(&mem, f + 152), 0x600);
    assert_eq!(
        mem.bytes(f + 172, 4).unwrap(),
        [1, 16, 0, 2],
        "X_PM1a_CNT_BLK"
    );
    assert_eq!(u64_at(&mem, f + 176), 0x604);
    assert_eq!(
        mem.bytes(f + 208, 4).unwrap(),
        [1, 32, 0, 3],
        "X_PM_TMR_BLK"
    );
    assert_eq!(u64_at(&mem, f + 212), 0x608);
    assert!(mem.bytes(f + 220, 48).unwrap().iter().all(|&x| x == 0));
    assert_eq!(u64_at(&mem, f + 268), u64::from_le_bytes(*b"DIDVISOR"));
}

#[test]
fn facs_and_dsdt_contents() {
    let (mem, t) = build(&GuestPlatform::standard(&APIC_IDS));
    assert_eq!(t.facs_gpa % 64, 0);
    assert_eq!(mem.bytes(t.facs_gpa, 4).unwrap(), b"FACS");
    assert_eq!(u32_at(&mem, t.facs_gpa + 4), 64);
    assert_eq!(u32_at(&mem, t.facs_gpa + 16), 0, "global lock free");
    assert_eq!(mem.bytes(t.facs_gpa + 32, 1).unwrap(), [2], "version");

    let dsdt = Sdt::expect_at(&mem, t.dsdt_gpa, Signature(*b"DSDT")).unwrap();
    assert_eq!(dsdt.header().revision, 2);
    assert_eq!(
        dsdt.body(),
        [0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00]
    );
}

#[test]
fn mcfg_when_the_guest_has_ecam() {
    let ecam = EcamWindow {
        base: 0xB000_0000,
        segment: 0,
        start_bus: 0,
        end_bus: 0xFF,
    };
    let platform = GuestPlatform {
        ecam: Some(ecam),
        rtc: false,
        ..GuestPlatform::standard(&APIC_IDS)
    };
    let (mem, t) = build(&platform);
    let acpi = Acpi::new(&mem, &Rsdp::at(&mem, t.rsdp_gpa).unwrap()).unwrap();
    let mcfg_gpa = t.mcfg_gpa.unwrap();
    assert_eq!(
        acpi.table_addresses().collect::<Vec<_>>(),
        [t.fadt_gpa, t.madt_gpa, mcfg_gpa]
    );
    assert_eq!(
        acpi.mcfg().unwrap().regions(),
        [EcamRegion {
            base: 0xB000_0000,
            segment: 0,
            start_bus: 0,
            end_bus: 0xFF
        }]
    );
    assert_eq!({ Sdt::at(&mem, mcfg_gpa).unwrap().header().length }, 60);
    // No RTC: CMOS_RTC_NOT_PRESENT (bit 5) joins LEGACY_DEVICES and VGA_NOT_PRESENT.
    assert_eq!(u16_at(&mem, t.fadt_gpa + 109), 0b10_0101);
}

#[test]
fn many_vcpus_with_large_x2apic_ids() {
    let ids: Vec<u32> = (0..200).map(|i| i * 3 + 0x100).collect();
    let platform = GuestPlatform {
        ioapic: None,
        isa_overrides: &[],
        ..GuestPlatform::standard(&ids)
    };
    let (mem, t) = build(&platform);
    let acpi = Acpi::new(&mem, &Rsdp::at(&mem, t.rsdp_gpa).unwrap()).unwrap();
    let madt = acpi.madt().unwrap();
    assert_eq!(madt.cpus().len(), 200);
    assert_eq!(madt.cpus()[199].apic_id, 199 * 3 + 0x100);
    assert_eq!(madt.cpus()[199].uid, 199);
    assert!(madt.io_apics().is_empty());
    assert!(madt.overrides().is_empty());
}

#[test]
fn writes_only_its_own_bytes_and_clears_stale_ones() {
    let mut region = vec![0xCCu8; REGION];
    let t = write_acpi_tables(&mut region, BASE, &GuestPlatform::standard(&APIC_IDS)).unwrap();
    assert!(region[t.len..].iter().all(|&b| b == 0xCC));
    // Padding between the RSDP (36 bytes) and the FACS (at 0x40) is zero.
    assert!(region[36..0x40].iter().all(|&b| b == 0));
    assert_eq!(t.len as u64, t.xsdt_gpa - BASE + 36 + 16);
}

#[test]
fn configuration_errors() {
    let mut region = vec![0u8; REGION];
    let std = GuestPlatform::standard(&APIC_IDS);
    let mut check = |p: &GuestPlatform<'_>, base: u64| write_acpi_tables(&mut region, base, p);
    assert_eq!(
        check(&GuestPlatform::standard(&[]), BASE),
        Err(AcpiError::NoVcpus)
    );
    assert_eq!(
        check(&GuestPlatform::standard(&[0, 1, 0]), BASE),
        Err(AcpiError::BadApicId(0))
    );
    assert_eq!(
        check(&GuestPlatform::standard(&[u32::MAX]), BASE),
        Err(AcpiError::BadApicId(u32::MAX))
    );
    let sci16 = GuestPlatform { sci_irq: 16, ..std };
    assert_eq!(check(&sci16, BASE), Err(AcpiError::BadIsaIrq(16)));
    let twice = [STANDARD_ISA_OVERRIDES[0], STANDARD_ISA_OVERRIDES[0]];
    let dup = GuestPlatform {
        isa_overrides: &twice,
        ..std
    };
    assert_eq!(check(&dup, BASE), Err(AcpiError::BadIsaIrq(0)));
    let no_ioapic = GuestPlatform {
        ioapic: None,
        ..std
    };
    assert_eq!(
        check(&no_ioapic, BASE),
        Err(AcpiError::OverridesWithoutIoApic)
    );
    let bad_ecam = GuestPlatform {
        ecam: Some(EcamWindow {
            base: 0xB000_0000,
            segment: 0,
            start_bus: 2,
            end_bus: 1,
        }),
        ..std
    };
    assert_eq!(check(&bad_ecam, BASE), Err(AcpiError::BadEcam));
    assert_eq!(
        check(&std, BASE + 0x10),
        Err(AcpiError::BadBase(BASE + 0x10))
    );
    assert_eq!(
        check(&std, 0xFFFF_FF00),
        Err(AcpiError::BadBase(0xFFFF_FF00))
    );
    // RSDP 36 -> FACS at 0x40 (64) -> DSDT at 0x80 (36 + 14 = 50) -> FADT at 0xC0 (276)
    // -> MADT at 0x1E0 (140) -> XSDT at 0x270 (52): 0x2A4 bytes.
    let mut small = vec![0u8; 0x2A3];
    assert_eq!(
        write_acpi_tables(&mut small, BASE, &std),
        Err(AcpiError::NoRoom {
            needed: 0x2A4,
            available: 0x2A3
        })
    );
    let mut exact = vec![0u8; 0x2A4];
    let t = write_acpi_tables(&mut exact, BASE, &std).unwrap();
    assert_eq!(
        (t.facs_gpa, t.dsdt_gpa, t.fadt_gpa, t.madt_gpa, t.xsdt_gpa),
        (
            BASE + 0x40,
            BASE + 0x80,
            BASE + 0xC0,
            BASE + 0x1E0,
            BASE + 0x270
        )
    );
}
