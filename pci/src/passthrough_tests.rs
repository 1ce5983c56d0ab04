//! The passed-through VF as Linux's PCI core and `nvme` driver probe it, through the guest's
//! configuration mechanism #1 ports.

use super::bar::{Bar, BarKind, TYPE0_BARS};
use super::fake::{machine, FakeEcam, NVME_PF};
use super::msix::{BarOffset, MsixInfo, MsixTableEntry};
use super::passthrough::{
    PassthroughError, PassthroughEvent, PassthroughSetup, VfIdentity, VfPassthrough,
    MSIX_CAP_OFFSET,
};
use super::sriov::{enable_vfs, EnabledVfs, MmioWindow, Sriov};
use devices::pci::{ConfigSpace, DevFn, PciConfigPorts, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT};
use devices::PortIo;

const GUEST_BAR0: u64 = 0xE000_0000;

fn enabled() -> (FakeEcam, EnabledVfs) {
    let mut e = machine();
    let s = Sriov::find(&e, NVME_PF).unwrap();
    let window = MmioWindow {
        start: 0xC000_0000,
        end: 0xC010_0000,
    };
    let vfs = enable_vfs(&mut e, s, 2, window, |_| {}).unwrap();
    (e, vfs)
}

fn setup() -> PassthroughSetup {
    let (e, vfs) = enabled();
    let vf = vfs.vf(2).unwrap();
    let mut guest = [None; TYPE0_BARS];
    guest[0] = Some(GUEST_BAR0);
    PassthroughSetup::read(&e, &vfs, &vf, guest).unwrap()
}

fn vf() -> VfPassthrough {
    VfPassthrough::new(&setup()).unwrap()
}

fn drain(d: &mut VfPassthrough) -> Vec<PassthroughEvent> {
    std::iter::from_fn(|| d.pop_event()).collect()
}

#[test]
fn setup_from_the_host() {
    let s = setup();
    assert_eq!(
        s.identity,
        VfIdentity {
            vendor_id: 0x1b36,
            device_id: 0x0010,
            class_revision: 0x0108_0202,
            subsystem: 0x1100_1af4,
        }
    );
    assert_eq!(
        s.bars[0],
        Some(Bar {
            index: 0,
            kind: BarKind::Memory64 {
                prefetchable: false
            },
            base: 0xC000_4000,
            size: 0x4000
        })
    );
    assert_eq!(s.msix.table_size, 1);
    assert_eq!(
        s.msix.table,
        BarOffset {
            bir: 0,
            offset: 0x2000
        }
    );
}

#[test]
fn identity_falls_back_to_the_pf_where_the_vf_reads_zero() {
    let (mut e, vfs) = enabled();
    let vf = vfs.vf(1).unwrap();
    e.function_mut(vf.bdf)
        .put32(0x08, 0)
        .put32(0x2C, 0xFFFF_FFFF);
    let id = VfIdentity::read(&e, NVME_PF, vf.bdf, 0x0010);
    assert_eq!(id.class_revision, 0x0108_0202);
    assert_eq!(id.subsystem, 0x1100_1af4);
    assert_eq!(id.vendor_id, 0x1b36);
}

type Ports = PciConfigPorts<VfPassthrough>;
const SLOT: u8 = 3;

fn ports() -> Ports {
    let mut p = Ports::new();
    p.bus_mut().add(DevFn::new(SLOT, 0).unwrap(), vf()).unwrap();
    p
}

fn select(p: &mut Ports, reg: u16) {
    let addr = 0x8000_0000 | u32::from(SLOT) << 11 | u32::from(reg & 0xFC);
    p.write(CONFIG_ADDRESS_PORT, 4, addr, 0);
}

fn read(p: &mut Ports, reg: u16, size: u8) -> u32 {
    select(p, reg);
    p.read(CONFIG_DATA_PORT + (reg & 3), size, 0)
}

fn write(p: &mut Ports, reg: u16, size: u8, value: u32) {
    select(p, reg);
    p.write(CONFIG_DATA_PORT + (reg & 3), size, value, 0);
}

fn dev(p: &mut Ports) -> &mut VfPassthrough {
    p.bus_mut().get_mut(DevFn::new(SLOT, 0).unwrap()).unwrap()
}

#[test]
fn linux_probe_sequence() {
    let mut p = ports();
    // pci_scan_device: vendor/device, class, header type.
    assert_eq!(read(&mut p, 0x00, 4), 0x0010_1b36);
    assert_eq!(read(&mut p, 0x08, 4), 0x0108_0202);
    assert_eq!(read(&mut p, 0x0E, 1), 0x00);
    assert_eq!(read(&mut p, 0x2C, 4), 0x1100_1af4);
    assert_eq!(read(&mut p, 0x3D, 1), 0, "no INTx pin");
    // pci_read_bases with decoding off: the 64-bit BAR0 sized half by half.
    let cmd = read(&mut p, 0x04, 2);
    assert_eq!(cmd, 0);
    assert_eq!(read(&mut p, 0x10, 4), GUEST_BAR0 as u32 | 0x4);
    write(&mut p, 0x10, 4, 0xFFFF_FFFF);
    assert_eq!(read(&mut p, 0x10, 4), 0xFFFF_C004);
    write(&mut p, 0x10, 4, GUEST_BAR0 as u32 | 0x4);
    assert_eq!(read(&mut p, 0x14, 4), 0);
    write(&mut p, 0x14, 4, 0xFFFF_FFFF);
    assert_eq!(read(&mut p, 0x14, 4), 0xFFFF_FFFF);
    write(&mut p, 0x14, 4, 0);
    for bar in [0x18, 0x1C, 0x20, 0x24] {
        write(&mut p, bar, 4, 0xFFFF_FFFF);
        assert_eq!(
            read(&mut p, bar, 4),
            0,
            "BAR at {bar:#x} is not implemented"
        );
    }
    // The expansion ROM is absent too.
    write(&mut p, 0x30, 4, 0xFFFF_F800);
    assert_eq!(read(&mut p, 0x30, 4), 0);
    assert_eq!(
        drain(dev(&mut p)),
        [],
        "nothing moves while decoding is off"
    );
    assert_eq!(dev(&mut p).bar(0).unwrap().gpa, GUEST_BAR0);
    // pci_enable_device_mem + pci_set_master.
    write(&mut p, 0x04, 2, 0x0002);
    write(&mut p, 0x04, 2, 0x0006);
    assert_eq!(
        drain(dev(&mut p)),
        [
            PassthroughEvent::MemoryDecode { enabled: true },
            PassthroughEvent::BusMaster { enabled: true },
        ]
    );
    assert_eq!(read(&mut p, 0x04, 4), 0x0010_0006);
    // I/O space can't be turned on: there are no I/O BARs.
    write(&mut p, 0x04, 2, 0x0007);
    assert_eq!(read(&mut p, 0x04, 2), 0x0006);
    // Capability walk: status bit 4, pointer 0x34, MSI-X at 0x40 and nothing else.
    assert_ne!(read(&mut p, 0x06, 2) & 0x10, 0);
    assert_eq!(read(&mut p, 0x34, 1), u32::from(MSIX_CAP_OFFSET));
    assert_eq!(read(&mut p, 0x40, 1), 0x11);
    assert_eq!(read(&mut p, 0x41, 1), 0x00);
    assert_eq!(read(&mut p, 0x42, 2), 0x0000, "one vector");
    assert_eq!(read(&mut p, 0x44, 4), 0x2000);
    assert_eq!(read(&mut p, 0x48, 4), 0x3000);
    // Conf1 reaches 256 bytes only; through ECAM 0x100 would read 0: no extended capabilities.
    assert_eq!(dev(&mut p).read(0x100), 0);
    // msix_capability_init: enable with all masked, program entry 0, unmask the function.
    write(&mut p, 0x42, 2, 0xC000);
    let table = 0x2000;
    let d = dev(&mut p);
    assert!(d.msix_write(table, 4, 0xFEE0_0000));
    assert!(d.msix_write(table + 4, 4, 0));
    assert!(d.msix_write(table + 8, 4, 0x0000_0041));
    assert!(d.msix_write(table + 12, 4, 0));
    write(&mut p, 0x42, 2, 0x8000);
    let entry = MsixTableEntry {
        address_low: 0xFEE0_0000,
        address_high: 0,
        data: 0x41,
        vector_control: 0,
    };
    assert_eq!(
        drain(dev(&mut p)),
        [
            PassthroughEvent::MsixControl {
                enabled: true,
                function_mask: true
            },
            PassthroughEvent::MsixEntryChanged { index: 0, entry },
            PassthroughEvent::MsixControl {
                enabled: true,
                function_mask: false
            },
        ]
    );
    let d = dev(&mut p);
    assert!(d.msix_enabled() && !d.msix_function_masked());
    assert!(d.msix_vector_active(0));
    assert_eq!(d.msix_entry(0), Some(entry));
    assert_eq!(d.msix_entry(1), None);
}

#[test]
fn bar_moves_are_reported_only_while_decoding() {
    let mut p = ports();
    write(&mut p, 0x10, 4, 0xE010_0000);
    assert_eq!(drain(dev(&mut p)), []);
    assert_eq!(dev(&mut p).bar(0).unwrap().gpa, 0xE010_0000);
    write(&mut p, 0x04, 2, 0x0002);
    write(&mut p, 0x14, 4, 0x1);
    // Unaligned low bits are dropped: 16 KiB alignment.
    write(&mut p, 0x10, 4, 0x0000_7FFF);
    let d = dev(&mut p);
    assert_eq!(
        drain(d),
        [
            PassthroughEvent::MemoryDecode { enabled: true },
            PassthroughEvent::BarMoved {
                index: 0,
                from: 0xE010_0000,
                to: 0x1_E010_0000
            },
            PassthroughEvent::BarMoved {
                index: 0,
                from: 0x1_E010_0000,
                to: 0x1_0000_4000
            },
        ]
    );
    let bar = d.bar(0).unwrap();
    assert_eq!(
        (bar.gpa, bar.hpa, bar.size),
        (0x1_0000_4000, 0xC000_4000, 0x4000)
    );
    assert_eq!(read(&mut p, 0x10, 4), 0x4004);
    assert_eq!(read(&mut p, 0x14, 4), 1);
    // Rewriting the same address reports nothing; a byte write to the BAR merges.
    write(&mut p, 0x14, 4, 0x1);
    write(&mut p, 0x13, 1, 0xE0);
    assert_eq!(
        drain(dev(&mut p)),
        [PassthroughEvent::BarMoved {
            index: 0,
            from: 0x1_0000_4000,
            to: 0x1_E000_4000
        }]
    );
    write(&mut p, 0x04, 2, 0);
    assert_eq!(
        drain(dev(&mut p)),
        [PassthroughEvent::MemoryDecode { enabled: false }]
    );
}

#[test]
fn scratch_registers_and_read_only_ones() {
    let mut p = ports();
    write(&mut p, 0x3C, 1, 0x0B);
    assert_eq!(read(&mut p, 0x3C, 4), 0x0000_000B);
    write(&mut p, 0x0C, 1, 0x10);
    assert_eq!(read(&mut p, 0x0C, 4), 0x0000_0010);
    for (reg, v) in [
        (0x00, 0x1234_5678),
        (0x08, 0),
        (0x2C, 0),
        (0x34, 0x80),
        (0x44, 0x5),
    ] {
        let before = read(&mut p, reg, 4);
        write(&mut p, reg, 4, v);
        assert_eq!(read(&mut p, reg, 4), before, "{reg:#x} is read-only");
    }
    // Writes to the status half don't touch the command register.
    write(&mut p, 0x06, 2, 0xFFFF);
    assert_eq!(read(&mut p, 0x04, 4), 0x0010_0000);
    assert_eq!(drain(dev(&mut p)), []);
    let d = dev(&mut p);
    for reg in (0x4C..0x1000).step_by(4) {
        d.write(reg, 0xFFFF_FFFF, 0xFFFF_FFFF);
        assert_eq!(d.read(reg), 0, "{reg:#x}");
    }
    assert_eq!(drain(d), []);
}

fn msix_vf(table_size: u16) -> VfPassthrough {
    let mut s = setup();
    s.msix = MsixInfo::decode(table_size - 1, 0x2000, 0x3000);
    VfPassthrough::new(&s).unwrap()
}

#[test]
fn msix_table_tracks_entries_and_reports_unmask() {
    let mut d = msix_vf(4);
    let entry1 = 0x2010;
    // Reset state: all masked.
    assert_eq!(d.msix_read(entry1 + 12, 4), Some(1));
    assert!(!d.msix_vector_active(1));
    // While masked, address/data writes are silent.
    assert!(d.msix_write(entry1, 8, 0x0000_0001_FEE0_1003));
    assert!(d.msix_write(entry1 + 8, 4, 0x22));
    assert_eq!(drain(&mut d), []);
    assert_eq!(d.msix_read(entry1, 8), Some(0x0000_0001_FEE0_1000));
    // Unmask (reserved vector-control bits are dropped).
    assert!(d.msix_write(entry1 + 12, 4, 0xFFFF_0000));
    let e = MsixTableEntry {
        address_low: 0xFEE0_1000,
        address_high: 1,
        data: 0x22,
        vector_control: 0,
    };
    assert_eq!(
        drain(&mut d),
        [PassthroughEvent::MsixEntryChanged { index: 1, entry: e }]
    );
    assert_eq!(d.msix_read(entry1 + 12, 4), Some(0));
    // A change while unmasked is reported; an identical write is not.
    assert!(d.msix_write(entry1 + 8, 4, 0x23));
    assert!(d.msix_write(entry1 + 8, 4, 0x23));
    let e2 = MsixTableEntry { data: 0x23, ..e };
    assert_eq!(
        drain(&mut d),
        [PassthroughEvent::MsixEntryChanged {
            index: 1,
            entry: e2
        }]
    );
    // Masking again is reported.
    assert!(d.msix_write(entry1 + 12, 1, 1));
    assert_eq!(
        drain(&mut d),
        [PassthroughEvent::MsixEntryChanged {
            index: 1,
            entry: MsixTableEntry {
                vector_control: 1,
                ..e2
            }
        }]
    );
    // Not enabled: no vector is active even if unmasked.
    assert!(d.msix_write(entry1 + 12, 4, 0));
    assert!(!d.msix_vector_active(1));
    d.write(0x40, 0x8000 << 16, 0xFFFF_0000);
    assert!(d.msix_vector_active(1));
    assert!(!d.msix_vector_active(0));
}

#[test]
fn msix_accesses_outside_the_table_are_not_claimed() {
    let mut d = msix_vf(4);
    let (bir, range) = d.msix_table_range();
    assert_eq!((bir, range), (0, 0x2000..0x2040));
    assert_eq!(d.msix_read(0x1FFC, 4), None);
    assert_eq!(d.msix_read(0x2040, 4), None);
    assert_eq!(d.msix_read(0x203C, 8), None, "straddles the end");
    assert_eq!(d.msix_read(0x2000, 3), None);
    assert_eq!(d.msix_read(0x3000, 8), None, "the PBA is the device's");
    assert!(!d.msix_write(0x2040, 4, 0));
    assert!(!d.msix_write(u64::MAX, 8, 0));
    assert_eq!(d.msix_read(0x2038, 8), Some(0x0000_0001_0000_0000));
    // An 8-byte write across two entries: the mask of entry 0 and the address of entry 1.
    assert!(d.msix_write(0x200C, 8, 0xFEE0_0000_0000_0000));
    let events = drain(&mut d);
    assert_eq!(events.len(), 1);
    assert!(matches!(
        events[0],
        PassthroughEvent::MsixEntryChanged { index: 0, entry } if !entry.masked()
    ));
    assert_eq!(d.msix_entry(1).unwrap().address_low, 0xFEE0_0000);
}

#[test]
fn msix_table_at_the_start_of_the_bar_and_wild_offsets() {
    let mut s = setup();
    s.msix = MsixInfo::decode(1, 0x0000, 0x1000);
    let mut d = VfPassthrough::new(&s).unwrap();
    assert_eq!(d.msix_table_range(), (0, 0..0x20));
    assert_eq!(d.msix_read(u64::MAX, 8), None);
    assert_eq!(d.msix_read(u64::MAX - 3, 4), None);
    assert!(!d.msix_write(u64::MAX - 7, 8, 0));
    assert_eq!(d.msix_read(0x1C, 4), Some(1));
    assert_eq!(
        d.msix_read(0x1E, 2),
        Some(0),
        "upper half of vector control"
    );
    assert!(
        d.msix_write(0x1D, 1, 0xFF),
        "reserved byte of vector control"
    );
    assert_eq!(d.msix_read(0x1C, 4), Some(1));
    assert_eq!(drain(&mut d), []);
}

#[test]
fn event_overflow_asks_for_a_resync() {
    let mut d = msix_vf(4);
    for i in 0..20u32 {
        d.write(0x04, (i & 1) << 1, 0xFFFF);
    }
    let events = drain(&mut d);
    assert_eq!(events.len(), 17);
    assert_eq!(events[0], PassthroughEvent::MemoryDecode { enabled: true });
    assert_eq!(events[16], PassthroughEvent::Resync);
    assert_eq!(d.pop_event(), None);
}

#[test]
fn setup_errors() {
    let base = setup();
    let mut s = base;
    s.bars[1] = Some(Bar {
        index: 1,
        kind: BarKind::Io,
        base: 0xC000,
        size: 32,
    });
    assert_eq!(
        VfPassthrough::new(&s).err(),
        Some(PassthroughError::IoBar { index: 1 })
    );
    let mut s = base;
    s.guest_bases[0] = Some(0xE000_1000);
    assert_eq!(
        VfPassthrough::new(&s).err(),
        Some(PassthroughError::MisalignedGpa { index: 0 })
    );
    let mut s = base;
    s.msix = MsixInfo::decode(1023, 0x2000, 0x3000);
    assert_eq!(
        VfPassthrough::new(&s).err(),
        Some(PassthroughError::TooManyVectors { table_size: 1024 })
    );
    let mut s = base;
    s.msix = MsixInfo::decode(0, 0x4000, 0x3000);
    assert_eq!(
        VfPassthrough::new(&s).err(),
        Some(PassthroughError::MsixTableOutsideBar)
    );
    let mut s = base;
    s.msix = MsixInfo::decode(0, 0x2002, 0x3000);
    assert_eq!(
        VfPassthrough::new(&s).err(),
        Some(PassthroughError::MsixTableOutsideBar)
    );
    let mut s = base;
    if let Some(b) = s.bars[0].as_mut() {
        b.size = 0x3000;
    }
    assert_eq!(
        VfPassthrough::new(&s).err(),
        Some(PassthroughError::BadBarSize { index: 0 })
    );
}

/// The hole an outside review found: only an access's first byte was checked against the BAR,
/// so an 8-byte access at `size - 4` reached into the next BAR (possibly another guest's VF).
#[test]
fn bar_accesses_must_lie_wholly_inside_a_bar() {
    let mut d = vf();
    let bar = d.bar(0).unwrap();
    assert_eq!(bar.gpa, GUEST_BAR0);
    // Memory decoding off: nothing is the VF's.
    assert_eq!(d.bar_access(GUEST_BAR0, 4), None);
    d.write(0x04, 2, 0xFFFF);
    let end = GUEST_BAR0 + bar.size;
    assert_eq!(d.bar_access(GUEST_BAR0, 4), Some((0, 0)));
    assert_eq!(d.bar_access(end - 8, 8), Some((0, bar.size - 8)));
    assert_eq!(d.bar_access(end - 4, 8), None, "straddles the end");
    assert_eq!(d.bar_access(end - 1, 2), None, "straddles the end");
    assert_eq!(d.bar_access(end, 1), None);
    assert_eq!(d.bar_access(GUEST_BAR0 - 1, 2), None, "straddles the start");
    assert_eq!(d.bar_access(GUEST_BAR0, 3), None, "odd size");
    assert_eq!(d.bar_access(GUEST_BAR0, 16), None, "odd size");
    assert_eq!(d.bar_access(u64::MAX - 3, 8), None, "wraps");
}
