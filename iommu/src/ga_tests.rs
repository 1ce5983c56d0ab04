use super::*;
use crate::model::PlainRegs as Regs;
use crate::testmem::FakeMem;

#[test]
fn vapic_support_needs_gasup_and_gamsup_001() {
    // GASup bit 7 (0x80), GAMSup 001b at 23:21 (0x20_0000).
    let efr = |v| ExtendedFeatures::from_bits_retain(v);
    assert!(vapic_supported(efr(0x20_0080)));
    assert!(vapic_supported(efr(0x20_0084))); // with XTSup
    assert!(!vapic_supported(efr(0x80))); // GAMSup 000b: 128-bit IRTEs only
    assert!(!vapic_supported(efr(0x20_0000))); // no GASup
    assert!(!vapic_supported(efr(0x40_0080))); // GAMSup 010b (reserved)
}

#[test]
fn ga_tag_by_hand() {
    let t = GaTag { guest: 2, vcpu: 1 };
    assert_eq!(t.encode(), 0x8002_0001);
    assert_eq!(GaTag::decode(0x8002_0001), Some(t));
    assert_eq!(
        GaTag { guest: 0, vcpu: 0 }.encode(),
        0x8000_0000,
        "vCPU 0 of guest 0 is not tag 0"
    );
    assert_eq!(GaTag::decode(0), None);
    assert_eq!(GaTag::decode(0x0002_0001), None);
    assert_eq!(GaTag::decode(0x8102_0001), None);
    assert_eq!(
        GaTag::decode(0x80FF_FFFF),
        Some(GaTag {
            guest: 0xFF,
            vcpu: 0xFFFF
        })
    );
}

fn target(running: bool) -> PostTarget {
    PostTarget {
        backing_page: Hpa(0x7654_3000),
        host_apic_id: 2,
        running,
        tag: GaTag { guest: 1, vcpu: 0 },
    }
}

#[test]
fn post_fixed_edge_msi_by_hand() {
    // Linux's MSI for vector 0x22 to APIC id 0: address FEE0_0000h, data 0x0022 (fixed, edge).
    let msg = MsiMessage {
        address: 0xFEE0_0000,
        data: 0x22,
    };
    let e = post(&msg, &target(true)).unwrap();
    // lo: GATag 0x8001_0000 in 63:32, Destination 2 << 8 = 0x200, GuestMode 0x80, IsRun 0x40,
    // GALogIntr 0x4, RemapEn 0x1.
    assert_eq!(e.lo, 0x8001_0000_0000_02C5);
    // hi: backing page 0x7654_3000 in 51:12, vector 0x22 in 7:0.
    assert_eq!(e.hi, 0x0000_0000_7654_3022);
    let idle = post(&msg, &target(false)).unwrap();
    assert_eq!(idle.lo, 0x8001_0000_0000_0285);
    assert_eq!(idle.hi, e.hi);
}

#[test]
fn post_refuses_what_cannot_be_posted() {
    let t = target(true);
    let m = |address, data| MsiMessage { address, data };
    assert_eq!(
        post(&m(0xFEE0_0000, 0x122), &t),
        Err(PostRefusal::NotFixed(DeliveryMode::LowestPriority))
    );
    assert_eq!(
        post(&m(0xFEE0_0000, 0x422), &t),
        Err(PostRefusal::NotFixed(DeliveryMode::Nmi))
    );
    assert_eq!(
        post(&m(0xFEE0_0000, 0x722), &t),
        Err(PostRefusal::NotFixed(DeliveryMode::ExtInt))
    );
    // Trigger mode bit 15 (level), assert bit 14.
    assert_eq!(
        post(&m(0xFEE0_0000, 0xC022), &t),
        Err(PostRefusal::LevelTriggered)
    );
    // DM bit 2 of the address.
    assert_eq!(
        post(&m(0xFEE0_0004, 0x22), &t),
        Err(PostRefusal::LogicalDestination)
    );
    assert_eq!(
        post(&m(0xFEE0_0000, 0x0F), &t),
        Err(PostRefusal::ReservedVector(0x0F))
    );
    assert_eq!(
        post(&m(0xFED0_0000, 0x22), &t),
        Err(PostRefusal::NotInterruptAddress)
    );
    let mut bad = t;
    bad.backing_page = Hpa(0x7654_3800);
    assert_eq!(
        post(&m(0xFEE0_0000, 0x22), &bad),
        Err(PostRefusal::BadBackingPage)
    );
}

#[test]
fn ga_log_entry_by_hand() {
    // GA_GUEST_NR (OpCode 0001b in 63:60) from 00:03.1 (DeviceID 0x0019 in 47:32), GATag
    // 0x8001_0000.
    assert_eq!(
        GaLogEntry::decode(0x1000_0019_8001_0000),
        GaLogEntry::GuestNotRunning {
            tag: 0x8001_0000,
            device: DeviceId::new(0, 3, 1)
        }
    );
    assert_eq!(
        GaLogEntry::decode(0x2000_0019_8001_0000),
        GaLogEntry::Other {
            raw: 0x2000_0019_8001_0000
        }
    );
}

#[test]
fn ga_log_base_register() {
    let log = GaLog::new(Hpa(0x12_3000), GA_LOG_LEN_512, Hpa(0x12_5008)).unwrap();
    // GALogLen 1000b at 59:56, base 51:12.
    assert_eq!(log.base_register(), 0x0800_0000_0012_3000);
    assert_eq!(log.entries(), 512);
    assert_eq!(log.bytes(), 4096);
    assert_eq!(
        GaLog::new(Hpa(0x12_3000), 0b0111, Hpa(0x12_5008)),
        Err(GaLogError::BadConfig)
    );
    assert_eq!(
        GaLog::new(Hpa(0x12_3800), GA_LOG_LEN_512, Hpa(0x12_5008)),
        Err(GaLogError::BadConfig)
    );
}

#[test]
fn ga_log_ring_drains_and_wraps() {
    let mut mem = FakeMem::new(0);
    mem.back(0x10_0000, 0x2000);
    let mut regs = Regs::default();
    let mut log = GaLog::new(Hpa(0x10_0000), GA_LOG_LEN_512, Hpa(0x10_1000)).unwrap();
    log.program(&mut regs, &mut mem);
    assert_eq!(regs.read64(regs::GA_LOG_BASE), 0x0800_0000_0010_0000);
    assert_eq!(regs.read64(regs::GA_LOG_TAIL_ADDRESS), 0x10_1000);
    let mut seen = vec![];
    assert_eq!(log.poll(&mut regs, &mut mem, &mut |e| seen.push(e)), 0);
    // The IOMMU writes two entries and moves its tail to 16.
    mem.write_u64(Hpa(0x10_0000), 0x1000_0019_8001_0000);
    mem.write_u64(Hpa(0x10_0008), 0x1000_0019_8001_0001);
    regs.write64(regs::GA_LOG_TAIL, 16);
    assert_eq!(log.poll(&mut regs, &mut mem, &mut |e| seen.push(e)), 2);
    assert_eq!(regs.read64(regs::GA_LOG_HEAD), 16);
    assert_eq!(mem.read_u64(Hpa(0x10_0000)), 0);
    assert_eq!(
        seen[1],
        GaLogEntry::GuestNotRunning {
            tag: 0x8001_0001,
            device: DeviceId(0x19)
        }
    );
    // Wrap: head at the last slot (4088), tail back at 8.
    log.head = 4088;
    mem.write_u64(Hpa(0x10_0000 + 4088), 0x1000_0000_8000_0000);
    mem.write_u64(Hpa(0x10_0000), 0x1000_0000_8000_0001);
    regs.write64(regs::GA_LOG_TAIL, 8);
    assert_eq!(log.poll(&mut regs, &mut mem, &mut |e| seen.push(e)), 2);
    assert_eq!(regs.read64(regs::GA_LOG_HEAD), 8);
}
