use super::bar::{size_bar_registers, size_bars, write_bar_base, Bar, BarKind};
use super::capability::{
    capabilities, ext_id, extended_capabilities, find_capability, find_extended_capability, id,
    ExtendedCapability,
};
use super::fake::{machine, plain, FakeEcam, FakeFunction, NVME_PF, PF_BAR0, PF_SRIOV_CAP};
use super::header::{read_command, read_function, ClassCode, Command};
use super::msix::{write_msix_control, BarOffset, MsixInfo, MsixTableEntry};
use super::sriov::{
    enable_vfs, place_vf_bars, vf_routing_id, MmioWindow, Sriov, SriovControl, SriovError,
    VfBarPlacement,
};
use super::*;

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(bus, dev, func).unwrap()
}

#[test]
fn bdf_fields_display_and_parse() {
    let b = bdf(0, 3, 1);
    assert_eq!(b.routing_id(), 0x0019);
    assert_eq!((b.bus(), b.device(), b.function()), (0, 3, 1));
    assert_eq!(b.to_string(), "00:03.1");
    assert_eq!(bdf(0xa0, 0x1f, 7).to_string(), "a0:1f.7");
    assert_eq!(bdf(2, 0, 0).ecam_offset(), 0x20_0000);
    assert_eq!(bdf(0, 1, 2).ecam_offset(), 0xA000);
    assert_eq!(Bdf::from_routing_id(0x0119), bdf(1, 3, 1));
    assert_eq!(Bdf::new(0, 32, 0), None);
    assert_eq!(Bdf::new(0, 0, 8), None);
    assert_eq!(Bdf::parse("00:03.1"), Some(b));
    assert_eq!(Bdf::parse("0000:00:03.1"), Some(b));
    assert_eq!(Bdf::parse("0000:a0:1f.7"), Some(bdf(0xa0, 0x1f, 7)));
    for bad in [
        "",
        "00:03",
        "0001:00:03.1",
        "00:20.0",
        "00:03.8",
        "000:03.1x",
        "00:03.",
        "+0:03.1",
        ":00:03.1",
        "100:00.0",
    ] {
        assert_eq!(Bdf::parse(bad), None, "{bad}");
    }
}

#[test]
fn read_function_decodes_the_header() {
    let e = machine();
    let f = read_function(&e, NVME_PF).unwrap();
    assert_eq!((f.vendor_id, f.device_id, f.revision), (0x1b36, 0x0010, 2));
    assert_eq!(f.class, ClassCode::NVME);
    assert_eq!((f.header_type, f.multifunction), (0, false));
    let isa = read_function(&e, bdf(0, 0x1f, 0)).unwrap();
    assert_eq!((isa.header_type, isa.multifunction), (0, true));
    assert_eq!(read_function(&e, bdf(0, 5, 0)), None);
    assert_eq!(e.read16(NVME_PF, 2), 0x0010);
    assert_eq!(e.read8(NVME_PF, 0x0B), 0x01);
}

#[test]
fn enumeration_skips_absent_functions_and_follows_the_multifunction_bit() {
    let e = machine();
    let found: Vec<String> = enumerate(&e, 0..=255).map(|f| f.bdf.to_string()).collect();
    assert_eq!(
        found,
        ["00:00.0", "00:03.0", "00:04.0", "00:1f.0", "00:1f.2", "00:1f.3", "01:00.0"]
    );
    let bus0: Vec<Bdf> = enumerate(&e, 0..=0).map(|f| f.bdf).collect();
    assert_eq!(bus0.len(), 6);
    let bus1: Vec<Bdf> = enumerate(&e, 1..=1).map(|f| f.bdf).collect();
    assert_eq!(bus1, [bdf(1, 0, 0)]);
    assert_eq!(enumerate(&e, 2..=255).count(), 0);
}

#[test]
fn enumeration_ends_at_bus_255() {
    let mut e = FakeEcam::default();
    e.add(bdf(255, 31, 0), plain(0x1234, 0x5678, 0, 0x80));
    e.add(bdf(255, 31, 7), plain(0x1234, 0x5679, 0, 0));
    let found: Vec<Bdf> = enumerate(&e, 250..=255).map(|f| f.bdf).collect();
    assert_eq!(found, [bdf(255, 31, 0), bdf(255, 31, 7)]);
}

#[test]
fn sizing_the_nvme_pf_bar_restores_it_with_decode_off_meanwhile() {
    let mut e = machine();
    let command = Command::MEMORY_SPACE | Command::BUS_MASTER;
    header::write_command(&mut e, NVME_PF, command);
    let bars = size_bars(&mut e, NVME_PF);
    assert_eq!(
        bars[0],
        Some(Bar {
            index: 0,
            kind: BarKind::Memory64 {
                prefetchable: false
            },
            base: PF_BAR0,
            size: 16 * 1024,
        })
    );
    assert!(bars[1..].iter().all(Option::is_none));
    assert_eq!(e.sizing_while_decoding, 0);
    assert_eq!(e.read32(NVME_PF, 0x10), PF_BAR0 as u32 | 4);
    assert_eq!(e.read32(NVME_PF, 0x14), 0);
    assert_eq!(read_command(&e, NVME_PF), command);
    // The all-ones probe was really written to both halves.
    assert!(e.writes.contains(&(NVME_PF, 0x10, u32::MAX)));
    assert!(e.writes.contains(&(NVME_PF, 0x14, u32::MAX)));
}

#[test]
fn bar_kinds_32bit_prefetchable_io_and_unimplemented() {
    let mut f = FakeFunction::new();
    f.put16(0, 0x1234).writable16(4, 0x3);
    f.put32(0x10, 0xE000_0008).writable32(0x10, 0xFF00_0000); // 16 MiB prefetchable
    f.put32(0x14, 0xC001).writable32(0x14, 0xFFE0); // 32 ports, 16-bit decode
    f.put32(0x18, 0x0000_0006); // reserved memory type 11b
    f.put32(0x1C, 0x0000_000C).writable32(0x1C, 0xFFFF_F000); // BAR3/4: 64-bit, 4 KiB
    f.writable32(0x20, 0xFFFF_FFFF);
    f.put32(0x24, 0x4).writable32(0x24, 0xFFFF_0000); // 64-bit in the last register
    let mut e = FakeEcam::default();
    let d = bdf(0, 1, 0);
    e.add(d, f);
    header::write_command(&mut e, d, Command::IO_SPACE | Command::MEMORY_SPACE);
    let bars = size_bars(&mut e, d);
    assert_eq!(
        bars[0],
        Some(Bar {
            index: 0,
            kind: BarKind::Memory32 { prefetchable: true },
            base: 0xE000_0000,
            size: 16 << 20
        })
    );
    assert_eq!(
        bars[1],
        Some(Bar {
            index: 1,
            kind: BarKind::Io,
            base: 0xC000,
            size: 32
        })
    );
    assert_eq!(bars[2], None);
    assert_eq!(
        bars[3],
        Some(Bar {
            index: 3,
            kind: BarKind::Memory64 { prefetchable: true },
            base: 0,
            size: 4096
        })
    );
    assert_eq!((bars[4], bars[5]), (None, None));
    assert_eq!(e.sizing_while_decoding, 0);
    assert_eq!(e.read32(d, 0x10), 0xE000_0008);
    assert_eq!(e.read32(d, 0x14), 0xC001);
}

#[test]
fn a_function_that_reads_all_ones_gives_no_panic() {
    let mut e = FakeEcam::default();
    let bars = size_bar_registers(&mut e, bdf(0, 9, 0), 0x10, 6, false);
    // Absent: every read is all ones, so "I/O BARs" of 4 bytes; nothing must panic.
    assert!(bars.iter().flatten().all(|b| b.kind == BarKind::Io));
    assert_eq!(capabilities(&e, bdf(0, 9, 0)).count(), 0);
    assert_eq!(extended_capabilities(&e, bdf(0, 9, 0)).count(), 0);
}

#[test]
fn write_bar_base_checks_alignment_and_width() {
    let mut e = machine();
    let bar = size_bars(&mut e, NVME_PF)[0].unwrap();
    assert_eq!(
        write_bar_base(&mut e, NVME_PF, 0x10, &bar, 0x1_0000_2000),
        None
    );
    assert_eq!(
        write_bar_base(&mut e, NVME_PF, 0x10, &bar, 0x1_0000_4000),
        Some(())
    );
    assert_eq!(e.read32(NVME_PF, 0x10), 0x4004);
    assert_eq!(e.read32(NVME_PF, 0x14), 1);
    let bar32 = Bar {
        index: 0,
        kind: BarKind::Memory32 {
            prefetchable: false,
        },
        base: 0,
        size: 4096,
    };
    assert_eq!(
        write_bar_base(&mut e, NVME_PF, 0x10, &bar32, 0x1_0000_0000),
        None
    );
}

#[test]
fn capability_walks() {
    let e = machine();
    let std: Vec<(u8, u16)> = capabilities(&e, NVME_PF).collect();
    assert_eq!(std, [(id::MSIX, 0x40), (id::PCI_EXPRESS, 0x60)]);
    assert_eq!(find_capability(&e, NVME_PF, id::MSIX), Some(0x40));
    assert_eq!(find_capability(&e, NVME_PF, id::MSI), None);
    let ext: Vec<ExtendedCapability> = extended_capabilities(&e, NVME_PF).collect();
    assert_eq!(
        ext,
        [
            ExtendedCapability {
                id: ext_id::ARI,
                version: 1,
                offset: 0x100
            },
            ExtendedCapability {
                id: ext_id::SRIOV,
                version: 1,
                offset: PF_SRIOV_CAP as u16
            },
        ]
    );
    assert_eq!(
        find_extended_capability(&e, NVME_PF, ext_id::SRIOV),
        Some(PF_SRIOV_CAP as u16)
    );
    assert_eq!(find_extended_capability(&e, NVME_PF, ext_id::AER), None);
    // No capability list bit: no walk, even with a pointer.
    let host = bdf(0, 0, 0);
    assert_eq!(capabilities(&e, host).count(), 0);
}

#[test]
fn capability_loops_end() {
    let mut f = FakeFunction::new();
    f.put16(0, 0x1234).put16(6, 0x10).put8(0x34, 0x40);
    f.put8(0x40, 0x09).put8(0x41, 0x50);
    f.put8(0x50, 0x01).put8(0x51, 0x40); // back to 0x40
    f.put32(0x100, 0x200 << 20 | 0x1);
    f.put32(0x200, 0x100 << 20 | 0x2); // back to 0x100
    let mut e = FakeEcam::default();
    let d = bdf(0, 2, 0);
    e.add(d, f);
    assert_eq!(capabilities(&e, d).count(), 48);
    assert_eq!(find_capability(&e, d, id::MSIX), None);
    assert_eq!(extended_capabilities(&e, d).count(), 960);
    assert_eq!(find_extended_capability(&e, d, ext_id::SRIOV), None);
    // Pointers into the header or misaligned ones end the walk.
    let g = e.function_mut(d);
    g.put8(0x51, 0x3C);
    g.put32(0x200, 0x0FE << 20 | 0x2);
    assert_eq!(capabilities(&e, d).count(), 2);
    assert_eq!(extended_capabilities(&e, d).count(), 2);
}

#[test]
fn sriov_registers() {
    let e = machine();
    let s = Sriov::find(&e, NVME_PF).unwrap();
    assert_eq!(s.cap, PF_SRIOV_CAP as u16);
    let info = s.info(&e);
    assert_eq!((info.initial_vfs, info.total_vfs, info.num_vfs), (2, 2, 0));
    assert_eq!((info.first_vf_offset, info.vf_stride), (1, 1));
    assert_eq!(info.vf_device_id, 0x0010);
    assert_eq!(
        (info.supported_page_sizes, info.system_page_size),
        (0x553, 1)
    );
    assert_eq!(info.control, SriovControl::empty());
    assert_eq!(Sriov::find(&e, bdf(0, 4, 0)), None);
}

#[test]
fn vf_bar_sizing_is_per_vf_with_vf_mse_off() {
    let mut e = machine();
    let s = Sriov::find(&e, NVME_PF).unwrap();
    s.write_control(&mut e, SriovControl::VF_MEMORY_SPACE_ENABLE);
    let bars = s.size_vf_bars(&mut e);
    assert_eq!(
        bars[0],
        Some(Bar {
            index: 0,
            kind: BarKind::Memory64 {
                prefetchable: false
            },
            base: 0,
            size: 16 * 1024
        })
    );
    assert!(bars[1..].iter().all(Option::is_none));
    assert_eq!(e.sizing_while_decoding, 0);
    assert_eq!(s.control(&e), SriovControl::VF_MEMORY_SPACE_ENABLE);
}

#[test]
fn vf_routing_ids() {
    let pf = bdf(0, 3, 0);
    assert_eq!(vf_routing_id(pf, 1, 1, 1), Some(bdf(0, 3, 1)));
    assert_eq!(vf_routing_id(pf, 1, 1, 2), Some(bdf(0, 3, 2)));
    assert_eq!(vf_routing_id(pf, 1, 1, 0), None);
    // Offset 0x80 and stride 2 (a typical ARI device), crossing into the next bus.
    let pf = bdf(4, 0, 0);
    assert_eq!(vf_routing_id(pf, 0x80, 2, 1), Some(bdf(4, 16, 0)));
    assert_eq!(vf_routing_id(pf, 0x80, 2, 65), Some(bdf(5, 0, 0)));
    assert_eq!(vf_routing_id(bdf(255, 31, 7), 1, 1, 1), None);
}

fn vf_bar(index: u8, size: u64, is64: bool) -> Option<Bar> {
    let kind = if is64 {
        BarKind::Memory64 {
            prefetchable: false,
        }
    } else {
        BarKind::Memory32 {
            prefetchable: false,
        }
    };
    Some(Bar {
        index,
        kind,
        base: 0,
        size,
    })
}

#[test]
fn vf_bar_placement_largest_first_aligned() {
    let bars = [
        vf_bar(0, 16 * 1024, true),
        None,
        vf_bar(2, 1 << 20, false),
        vf_bar(3, 256, false),
        None,
        None,
    ];
    let window = MmioWindow {
        start: 0xC000_1000,
        end: 0xC100_0000,
    };
    let (p, next) = place_vf_bars(&bars, 4, window).unwrap();
    let p2 = p[2].unwrap();
    assert_eq!((p2.vf1_base, p2.total()), (0xC010_0000, 4 << 20));
    let p0 = p[0].unwrap();
    assert_eq!(p0.vf1_base, 0xC050_0000);
    assert_eq!(p0.vf_bar(3).unwrap().base, 0xC050_8000);
    assert_eq!(p0.vf_bar(5), None);
    assert_eq!(p0.vf_bar(0), None);
    // Small BARs still get page alignment.
    let p3 = p[3].unwrap();
    assert_eq!(p3.vf1_base, 0xC051_0000);
    assert_eq!(next, 0xC051_0400);
    assert_eq!((p[1], p[4], p[5]), (None, None, None));
}

#[test]
fn vf_bar_placement_errors() {
    let bars = [vf_bar(0, 16 * 1024, true), None, None, None, None, None];
    let small = MmioWindow {
        start: 0xC000_0000,
        end: 0xC000_4000,
    };
    assert_eq!(
        place_vf_bars(&bars, 2, small),
        Err(SriovError::WindowTooSmall {
            needed_end: 0xC000_8000,
            window_end: 0xC000_4000
        })
    );
    let high = MmioWindow {
        start: 0xF000_0000,
        end: 0x1_0000_1000,
    };
    assert_eq!(
        place_vf_bars(&bars, 2, high),
        Err(SriovError::WindowAbove4G)
    );
    let top = MmioWindow {
        start: 0xFFFF_8000,
        end: 0x1_0000_0000,
    };
    let (p, next) = place_vf_bars(&bars, 2, top).unwrap();
    assert_eq!(p[0].unwrap().vf1_base, 0xFFFF_8000);
    assert_eq!(next, 1 << 32);
}

#[test]
fn enabling_two_vfs_of_the_nvme_pf() {
    let mut e = machine();
    let s = Sriov::find(&e, NVME_PF).unwrap();
    let mut waits = Vec::new();
    let window = MmioWindow {
        start: 0xC000_0000,
        end: 0xC010_0000,
    };
    let vfs = enable_vfs(&mut e, s, 2, window, |ms| waits.push(ms)).unwrap();
    assert_eq!(waits, [100]);
    assert_eq!(e.sizing_while_decoding, 0);
    let info = s.info(&e);
    assert_eq!(info.num_vfs, 2);
    assert_eq!(
        info.control,
        SriovControl::VF_ENABLE | SriovControl::VF_MEMORY_SPACE_ENABLE
    );
    // VF BAR0 holds VF 1's base; 64-bit: high half 0.
    assert_eq!(e.read32(NVME_PF, PF_SRIOV_CAP as u16 + 0x24), 0xC000_0004);
    assert_eq!(e.read32(NVME_PF, PF_SRIOV_CAP as u16 + 0x28), 0);
    assert_eq!(vfs.window_used_to, 0xC000_8000);
    assert_eq!(
        vfs.placements[0],
        Some(VfBarPlacement {
            index: 0,
            kind: BarKind::Memory64 {
                prefetchable: false
            },
            vf1_base: 0xC000_0000,
            size: 0x4000,
            num_vfs: 2
        })
    );
    let all: Vec<_> = vfs.vfs().collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].bdf, bdf(0, 3, 1));
    assert_eq!(all[1].bdf, bdf(0, 3, 2));
    assert_eq!(all[1].number, 2);
    assert_eq!(all[1].bars[0].unwrap().base, 0xC000_4000);
    assert_eq!(all[1].bars[0].unwrap().size, 0x4000);
    assert_eq!(vfs.vf(3), None);
    for vf in &all {
        // The VFs answer with vendor 0xFFFF: enumeration cannot find them...
        assert_eq!(read_function(&e, vf.bdf), None);
        // ...and their own Memory Space bit is on (QEMU decodes only then).
        assert_eq!(read_command(&e, vf.bdf), Command::MEMORY_SPACE);
    }
}

#[test]
fn enabling_vfs_refuses_bad_counts_and_reenables_cleanly() {
    let mut e = machine();
    let s = Sriov::find(&e, NVME_PF).unwrap();
    let window = MmioWindow {
        start: 0xC000_0000,
        end: 0xC010_0000,
    };
    for n in [0, 3] {
        assert_eq!(
            enable_vfs(&mut e, s, n, window, |_| {}),
            Err(SriovError::BadVfCount {
                requested: n,
                total: 2
            })
        );
    }
    enable_vfs(&mut e, s, 1, window, |_| {}).unwrap();
    let mut waits = Vec::new();
    let again = enable_vfs(&mut e, s, 2, window, |ms| waits.push(ms)).unwrap();
    assert_eq!(waits, [1000, 100]);
    assert_eq!(again.num_vfs, 2);
    // A PF without 4 KiB pages.
    e.function_mut(NVME_PF).put32(PF_SRIOV_CAP + 0x1C, 0x2);
    assert_eq!(
        enable_vfs(&mut e, s, 1, window, |_| {}),
        Err(SriovError::PageSizeUnsupported { supported: 2 })
    );
}

#[test]
fn msix_capability_decode_and_control() {
    let mut e = machine();
    let cap = find_capability(&e, NVME_PF, id::MSIX).unwrap();
    let m = MsixInfo::read(&e, NVME_PF, cap);
    assert_eq!(m.table_size, 65);
    assert_eq!(
        m.table,
        BarOffset {
            bir: 0,
            offset: 0x2000
        }
    );
    assert_eq!(
        m.pba,
        BarOffset {
            bir: 0,
            offset: 0x3000
        }
    );
    assert!(!m.enabled && !m.function_mask);
    assert_eq!(m.table_bytes(), 65 * 16);
    write_msix_control(&mut e, NVME_PF, cap, true, true);
    assert_eq!(e.read32(NVME_PF, cap), 0xC040_6011);
    write_msix_control(&mut e, NVME_PF, cap, true, false);
    let m = MsixInfo::read(&e, NVME_PF, cap);
    assert!(m.enabled && !m.function_mask);
    let d = MsixInfo::decode(0x87FF, 0x0000_1005, 0x0000_2003);
    assert_eq!(d.table_size, 2048);
    assert_eq!(
        d.table,
        BarOffset {
            bir: 5,
            offset: 0x1000
        }
    );
    assert_eq!(
        d.pba,
        BarOffset {
            bir: 3,
            offset: 0x2000
        }
    );
    assert!(d.enabled && !d.function_mask);
    assert_eq!(d.table.encode(), 0x1005);
}

#[test]
fn msix_table_entry_fields() {
    let e = MsixTableEntry {
        address_low: 0xFEE0_1002,
        address_high: 0x1,
        data: 0x4041,
        vector_control: 0,
    };
    assert_eq!(e.address(), 0x1_FEE0_1000);
    assert!(!e.masked());
    assert!(MsixTableEntry::RESET.masked());
    assert_eq!(e.dwords(), [0xFEE0_1002, 1, 0x4041, 0]);
    assert_eq!(e.dword(2), 0x4041);
}

#[test]
fn fake_vfs_disappear_when_vf_enable_clears() {
    let mut e = machine();
    let s = Sriov::find(&e, NVME_PF).unwrap();
    let window = MmioWindow {
        start: 0xC000_0000,
        end: 0xC010_0000,
    };
    enable_vfs(&mut e, s, 2, window, |_| {}).unwrap();
    assert!(e.functions.contains_key(&bdf(0, 3, 2).routing_id()));
    s.write_control(&mut e, SriovControl::empty());
    assert!(!e.functions.contains_key(&bdf(0, 3, 2).routing_id()));
}

#[test]
fn msi_capability_programmed_and_enabled() {
    use super::msi::{program, MsiError};
    let b = bdf(0, 2, 0);
    // An MSI capability at 0x40 like QEMU's amd-iommu: 64-bit capable (control 0x0080), with a
    // stale Multiple Message Enable (0x0010) to be cleared.
    let mut f = FakeFunction::new();
    f.put8(0x40, 0x05).put16(0x42, 0x0090);
    f.writable32(0x40, 0x0071_0000)
        .writable32(0x44, 0xFFFF_FFFC)
        .writable32(0x48, 0xFFFF_FFFF)
        .writable32(0x4C, 0x0000_FFFF);
    let mut ecam = FakeEcam::default();
    ecam.add(b, f);
    // Service core x2APIC id 0, vector 0xF1: address FEE0_0000h, data 0x00F1.
    program(&mut ecam, b, 0x40, 0xFEE0_0000, 0xF1).unwrap();
    let f = ecam.function(b);
    assert_eq!(f.get32(0x44), 0xFEE0_0000);
    assert_eq!(f.get32(0x48), 0);
    assert_eq!(f.get16(0x4C), 0xF1);
    assert_eq!(f.get16(0x42), 0x0081, "enabled, one message");
    // Enable comes last: the first write to the header disables.
    let headers: Vec<u32> = ecam
        .writes
        .iter()
        .filter(|w| w.1 == 0x40)
        .map(|w| w.2)
        .collect();
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0] >> 16 & 1, 0);
    assert_eq!(headers[1] >> 16 & 1, 1);
    // A 32-bit-only capability: data at +8; a high address is refused.
    let mut g = FakeFunction::new();
    g.put8(0x50, 0x05)
        .writable32(0x50, 0x0071_0000)
        .writable32(0x54, 0xFFFF_FFFC)
        .writable32(0x58, 0xFFFF);
    let c = bdf(0, 3, 0);
    ecam.add(c, g);
    program(&mut ecam, c, 0x50, 0xFEE0_1000, 0x41).unwrap();
    assert_eq!(ecam.function(c).get32(0x54), 0xFEE0_1000);
    assert_eq!(ecam.function(c).get16(0x58), 0x41);
    assert_eq!(
        program(&mut ecam, c, 0x50, 1 << 32, 0x41),
        Err(MsiError::AddressTooHigh)
    );
}
