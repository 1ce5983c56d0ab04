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
    let over_ioapic = std.with_pci_root(PciRootConfig {
        mmio32: (0xFEC0_0000, 0x1000),
        mmio64: None,
    });
    assert_eq!(
        check(&over_ioapic, BASE),
        Err(AcpiError::BadPciWindow(0xFEC0_0000))
    );
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

/// A guest with passed-through functions: BARs in 0xC0000000-0xFEBFFFFF and 512 GiB above 512 GiB.
const PCI_ROOT: PciRootConfig = PciRootConfig {
    mmio32: (0xC000_0000, 0x3EC0_0000),
    mmio64: Some((0x80_0000_0000, 0x80_0000_0000)),
};

/// The DSDT (header and AML) of `platform`, read back through the `firmware` parser, which checks
/// its length and checksum.
fn dsdt_of(platform: &GuestPlatform<'_>) -> Vec<u8> {
    let (mem, t) = build(platform);
    let dsdt = Sdt::expect_at(&mem, t.dsdt_gpa, Signature(*b"DSDT")).unwrap();
    assert_eq!(sum(dsdt.bytes()), 0);
    assert_eq!(dsdt.header().revision, 2);
    dsdt.bytes().to_vec()
}

/// A strict reader of the AML subset the encoder writes, written from §20.2 separately from
/// it: every PkgLength must end exactly where its contents do, and anything unknown fails.
mod aml_reader {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Obj {
        Name(String, Value),
        Scope(String, Vec<Obj>),
        Device(String, Vec<Obj>),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Value {
        /// The integer and the opcode it was encoded with (0x00/0x01/0x0A/0x0B/0x0C/0x0E).
        Int(u64, u8),
        Str(String),
        Buf(Vec<u8>),
        Pkg(Vec<Value>),
    }

    pub struct Reader<'a> {
        b: &'a [u8],
        at: usize,
    }

    impl<'a> Reader<'a> {
        pub fn new(b: &'a [u8]) -> Self {
            Self { b, at: 0 }
        }

        fn byte(&mut self) -> u8 {
            let v = self.b[self.at];
            self.at += 1;
            v
        }

        fn le(&mut self, n: usize) -> u64 {
            let v = self.b[self.at..self.at + n]
                .iter()
                .rev()
                .fold(0u64, |v, &b| v << 8 | u64::from(b));
            self.at += n;
            v
        }

        /// PkgLength (§20.2.4): returns where the package ends.
        fn pkg_end(&mut self) -> usize {
            let start = self.at;
            let lead = self.byte();
            let follow = usize::from(lead >> 6);
            let len = if follow == 0 {
                usize::from(lead & 0x3F)
            } else {
                assert_eq!(lead & 0x30, 0, "bits 5:4 of a multi-byte PkgLength are 0");
                let mut len = usize::from(lead & 0x0F);
                for i in 0..follow {
                    len |= usize::from(self.byte()) << (4 + 8 * i);
                }
                len
            };
            let end = start + len;
            assert!(
                end <= self.b.len(),
                "package at {start} runs past its parent"
            );
            end
        }

        fn name_seg(&mut self) -> String {
            let seg = &self.b[self.at..self.at + 4];
            assert!(
                (seg[0].is_ascii_uppercase() || seg[0] == b'_')
                    && seg[1..]
                        .iter()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'),
                "bad NameSeg {seg:?}"
            );
            self.at += 4;
            String::from_utf8(seg.to_vec()).unwrap()
        }

        /// NameString (§20.2.2) as ASL spells it with full segments: `\_SB_.PCI0`.
        fn name_string(&mut self) -> String {
            let mut s = String::new();
            while matches!(self.b[self.at], b'\\' | b'^') {
                s.push(char::from(self.byte()));
            }
            let count = match self.b[self.at] {
                0x00 => {
                    self.at += 1;
                    0
                }
                0x2E => {
                    self.at += 1;
                    2
                }
                0x2F => {
                    self.at += 1;
                    usize::from(self.byte())
                }
                _ => 1,
            };
            let segs: Vec<String> = (0..count).map(|_| self.name_seg()).collect();
            s + &segs.join(".")
        }

        fn value(&mut self) -> Value {
            let op = self.byte();
            match op {
                0x00 => Value::Int(0, op),
                0x01 => Value::Int(1, op),
                0x0A => Value::Int(self.le(1), op),
                0x0B => Value::Int(self.le(2), op),
                0x0C => Value::Int(self.le(4), op),
                0x0E => Value::Int(self.le(8), op),
                0x0D => {
                    let nul = self.b[self.at..].iter().position(|&c| c == 0).unwrap();
                    let s = String::from_utf8(self.b[self.at..self.at + nul].to_vec()).unwrap();
                    self.at += nul + 1;
                    Value::Str(s)
                }
                0x11 => {
                    let end = self.pkg_end();
                    let Value::Int(size, _) = self.value() else {
                        panic!("BufferSize is not an integer")
                    };
                    let bytes = self.b[self.at..end].to_vec();
                    assert_eq!(
                        bytes.len() as u64,
                        size,
                        "BufferSize = bytes in the package"
                    );
                    self.at = end;
                    Value::Buf(bytes)
                }
                0x12 => {
                    let end = self.pkg_end();
                    let count = usize::from(self.byte());
                    let mut elements = Vec::new();
                    while self.at < end {
                        elements.push(self.value());
                    }
                    assert_eq!(self.at, end, "package elements end with the package");
                    assert_eq!(elements.len(), count, "NumElements");
                    Value::Pkg(elements)
                }
                _ => panic!("unexpected data opcode {op:#x} at {}", self.at - 1),
            }
        }

        /// A TermList that must end exactly at `end`.
        pub fn term_list(&mut self, end: usize) -> Vec<Obj> {
            let mut objs = Vec::new();
            while self.at < end {
                let op = self.byte();
                objs.push(match op {
                    0x08 => {
                        let name = self.name_string();
                        Obj::Name(name, self.value())
                    }
                    0x10 => {
                        let end = self.pkg_end();
                        let name = self.name_string();
                        Obj::Scope(name, self.term_list(end))
                    }
                    0x5B if self.b[self.at] == 0x82 => {
                        self.at += 1;
                        let end = self.pkg_end();
                        let name = self.name_string();
                        Obj::Device(name, self.term_list(end))
                    }
                    _ => panic!("unexpected opcode {op:#x} at {}", self.at - 1),
                });
            }
            assert_eq!(self.at, end, "term list overruns its package");
            objs
        }
    }

    /// One resource descriptor (§6.4): its tag byte and the bytes after its header.
    pub fn resources(template: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < template.len() {
            let tag = template[at];
            let (header, len) = if tag & 0x80 == 0 {
                (1, usize::from(tag & 7))
            } else {
                let len = u16::from_le_bytes([template[at + 1], template[at + 2]]);
                (3, usize::from(len))
            };
            out.push((tag, template[at + header..at + header + len].to_vec()));
            at += header + len;
        }
        assert_eq!(at, template.len(), "descriptors fill the template exactly");
        out
    }
}

#[test]
fn dsdt_with_pci_root_parses_back() {
    use aml_reader::{Obj, Reader, Value};
    let platform = GuestPlatform::standard(&APIC_IDS).with_pci_root(PCI_ROOT);
    let dsdt = dsdt_of(&platform);
    let body = &dsdt[36..];
    let objs = Reader::new(body).term_list(body.len());

    let int = |v, op| Value::Int(v, op);
    let [Obj::Name(s5, s5_value), Obj::Scope(sb, sb_objs)] = &objs[..] else {
        panic!("DSDT holds {objs:?}");
    };
    assert_eq!(s5, "_S5_");
    assert_eq!(
        *s5_value,
        Value::Pkg(vec![int(5, 0x0A), int(5, 0x0A), int(0, 0), int(0, 0)])
    );
    assert_eq!(sb, "\\_SB_");
    let [Obj::Device(pci0, names)] = &sb_objs[..] else {
        panic!("\\_SB holds {sb_objs:?}");
    };
    assert_eq!(pci0, "PCI0");
    let named = |n: &str| {
        names
            .iter()
            .find_map(|o| match o {
                Obj::Name(name, v) if name == n => Some(v.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {n}"))
    };
    assert_eq!(names.len(), 7);
    assert_eq!(named("_HID"), int(0x080A_D041, 0x0C), "EisaId(\"PNP0A08\")");
    assert_eq!(named("_CID"), int(0x030A_D041, 0x0C), "EisaId(\"PNP0A03\")");
    for n in ["_ADR", "_UID", "_SEG", "_BBN"] {
        assert_eq!(named(n), int(0, 0x00), "{n}");
    }
    let Value::Buf(crs) = named("_CRS") else {
        panic!("_CRS is no buffer");
    };
    assert_eq!(sum(&crs), 0, "the end tag's checksum covers the template");
    let descriptors = aml_reader::resources(&crs);
    let tags: Vec<u8> = descriptors.iter().map(|d| d.0).collect();
    assert_eq!(tags, [0x88, 0x47, 0x88, 0x88, 0x87, 0x8A, 0x79]);
    // Address descriptors: (type, general flags, type flags, min, max, length), fields `w` wide.
    let address = |body: &[u8], w: usize| {
        let field = |i: usize| {
            let b = &body[3 + i * w..3 + (i + 1) * w];
            b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x))
        };
        assert_eq!(body.len(), 3 + 5 * w);
        assert_eq!((field(0), field(3)), (0, 0), "granularity, translation");
        assert_eq!(field(2) - field(1) + 1, field(4), "length = max - min + 1");
        (body[0], body[1], body[2], field(1), field(2), field(4))
    };
    let d = &descriptors;
    assert_eq!(address(&d[0].1, 2), (2, 0x0C, 0, 0, 0, 1), "bus 0..=0");
    assert_eq!(
        d[1].1,
        [0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08],
        "IO 0xCF8"
    );
    assert_eq!(address(&d[2].1, 2), (1, 0x0C, 3, 0, 0xCF7, 0xCF8));
    assert_eq!(address(&d[3].1, 2), (1, 0x0C, 3, 0xD00, 0xFFFF, 0xF300));
    assert_eq!(
        address(&d[4].1, 4),
        (0, 0x0C, 0x01, 0xC000_0000, 0xFEBF_FFFF, 0x3EC0_0000)
    );
    assert_eq!(
        address(&d[5].1, 8),
        (0, 0x0C, 0x03, 1 << 39, (1 << 40) - 1, 1 << 39)
    );
    assert_eq!(d[6].1.len(), 1, "end tag with its checksum byte");

    // Without a 64-bit window there is no QWordMemory.
    let platform = GuestPlatform::standard(&APIC_IDS).with_pci_root(PciRootConfig {
        mmio64: None,
        ..PCI_ROOT
    });
    let dsdt = dsdt_of(&platform);
    assert_eq!(dsdt.len(), 36 + 14 + 200 - 46);
}

/// What iasl 20200925 compiles from the ASL in `pci_root`'s module documentation (with the
/// windows of [`PCI_ROOT`]), from `Device (PCI0)` on: an independent encoder. iasl writes 0 as
/// the end tag checksum, which means "none"; ours is a real one.
#[rustfmt::skip]
const IASL_PCI0: [u8; 192] = [
    0x5b, 0x82, 0x4e, 0x0b, 0x50, 0x43, 0x49, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0,
    0x0a, 0x08, 0x08, 0x5f, 0x43, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x0a, 0x03, 0x08, 0x5f, 0x41, 0x44,
    0x52, 0x00, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00, 0x08, 0x5f, 0x53, 0x45, 0x47, 0x00, 0x08, 0x5f,
    0x42, 0x42, 0x4e, 0x00, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x46, 0x08, 0x0a, 0x82, 0x88, 0x0d,
    0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x47, 0x01,
    0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08, 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x00,
    0xf7, 0x0c, 0x00, 0x00, 0xf8, 0x0c, 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x0d,
    0xff, 0xff, 0x00, 0x00, 0x00, 0xf3, 0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x3e,
    0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x79, 0x00,
];

#[test]
fn pci0_bytes_match_what_iasl_compiles() {
    let dsdt = dsdt_of(&GuestPlatform::standard(&APIC_IDS).with_pci_root(PCI_ROOT));
    // Header, _S5_ (14 bytes), then Scope: 10, PkgLength (2 bytes), 5C "_SB_", the device.
    let scope = &dsdt[36 + 14..];
    assert_eq!(scope[0], 0x10);
    // Scope content: 5 (name) + 192 (device) = 197; total 199 = 0xC7 -> 47 0C.
    assert_eq!(&scope[1..8], [0x47, 0x0C, 0x5C, b'_', b'S', b'B', b'_']);
    let device = &scope[8..];
    assert_eq!(device.len(), IASL_PCI0.len());
    assert_eq!(device[..191], IASL_PCI0[..191]);
    assert_eq!((device[190], IASL_PCI0[191]), (0x79, 0));
    assert_ne!(device[191], 0, "our end tag has a checksum");
}

/// Runs `iasl -d` on the DSDT if iasl (Debian package acpica-tools) is installed: the ACPICA
/// disassembler must read it back without errors as the expected device and resources.
#[test]
fn iasl_disassembles_the_dsdt() {
    use std::process::Command;
    if Command::new("iasl").arg("-v").output().is_err() {
        eprintln!("note: iasl not installed (apt-get install acpica-tools); check skipped");
        return;
    }
    let dsdt = dsdt_of(&GuestPlatform::standard(&APIC_IDS).with_pci_root(PCI_ROOT));
    let dir = std::env::temp_dir().join(format!("didvisor-dsdt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dsdt.aml"), &dsdt).unwrap();
    let out = Command::new("iasl")
        .current_dir(&dir)
        .args(["-d", "dsdt.aml"])
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let dsl = std::fs::read_to_string(dir.join("dsdt.dsl"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "iasl -d failed:\n{log}");
    assert!(!log.contains("Error"), "{log}");
    let dsl = dsl.unwrap();
    // Compare without comments and whitespace, so that iasl's annotations and layout do not
    // matter.
    let mut code = String::new();
    let mut rest = dsl.as_str();
    while let Some(open) = rest.find("/*") {
        code += &rest[..open];
        let close = rest[open..].find("*/").expect("unterminated comment");
        rest = &rest[open + close + 2..];
    }
    code += rest;
    let squeezed: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    for expected in [
        "DefinitionBlock (\"\", \"DSDT\", 2, \"DIDVSR\", \"DIDVISOR\", 0x00000001)",
        "Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })",
        "Scope (\\_SB) { Device (PCI0) {",
        "Name (_HID, EisaId (\"PNP0A08\"))",
        "Name (_CID, EisaId (\"PNP0A03\"))",
        "Name (_ADR, Zero)",
        "Name (_UID, Zero)",
        "Name (_SEG, Zero)",
        "Name (_BBN, Zero)",
        "Name (_CRS, ResourceTemplate () {",
        concat!(
            "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
            "0x0000, 0x0000, 0x0000, 0x0000, 0x0001,"
        ),
        "IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08, )",
        concat!(
            "WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,",
            "0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8,"
        ),
        concat!(
            "WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,",
            "0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300,"
        ),
        concat!(
            "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,",
            "0x00000000, 0xC0000000, 0xFEBFFFFF, 0x00000000, 0x3EC00000,"
        ),
        concat!(
            "QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,",
            "0x0000000000000000, 0x0000008000000000, 0x000000FFFFFFFFFF,",
            "0x0000000000000000, 0x0000008000000000,"
        ),
    ] {
        let expected: String = expected.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(squeezed.contains(&expected), "iasl -d output lacks {expected:?}:\n{dsl}");
    }
}
