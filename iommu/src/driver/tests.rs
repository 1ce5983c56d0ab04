//! Driver tests against the software model of the command processor ([`crate::model`]).

use super::*;
use crate::command::{
    COMPLETION_WAIT, INVALIDATE_DEVTAB_ENTRY, INVALIDATE_INTERRUPT_TABLE, INVALIDATE_IOMMU_ALL,
    INVALIDATE_IOMMU_PAGES,
};
use crate::dte::InterruptRemap;
use crate::ga::GaLogEntry;
use crate::io_pgtable::{walk, IoPageTable, IoPerm};
use crate::irte::{DestMode, IntType, InterruptTable, Irte};
use crate::model::{FakeIommu, SharedMem};
use crate::msi::MsiMessage;
use crate::testmem::FakeMem;

const DT: u64 = 0x100_0000;
const CMD: u64 = 0x200_0000;
const EVT: u64 = 0x201_0000;
const SEM: u64 = 0x202_0000;
const GALOG: u64 = 0x203_0000;
/// An EFR like QEMU's `amd-iommu,xtsup=on`: PreF, PPR, XT, GT, IA, GA, HE, HATS = GATS = 10b.
const QEMU_EFR: u64 = 0x29D7;
const VF: DeviceId = DeviceId::new(0, 3, 1);

fn config(pages: u64) -> Config {
    Config {
        device_table: Hpa(DT),
        device_table_pages: pages,
        command_buffer: Hpa(CMD),
        command_log2: 8,
        event_log: Hpa(EVT),
        event_log2: 8,
        semaphore: Hpa(SEM),
        irte_format: IrteFormat::Bits128,
        x2apic: true,
        control: Control::from_ivhd_flags(crate::ivrs::IvhdFlags::empty()),
        spins: 1000,
        ga_log: None,
    }
}

fn memory() -> SharedMem {
    let mut m = FakeMem::new(0x4000_0000);
    m.back(DT, 512 * 4096);
    m.back(CMD, 0x1000);
    m.back(EVT, 0x1000);
    m.back(SEM, 0x1000);
    m.back(GALOG, 0x2000);
    // Garbage where the device table goes: init must overwrite all of it.
    for i in 0..(2 * 4096 / 8) {
        m.poke(DT + 8 * i, 0xFFFF_FFFF_FFFF_FFFF);
    }
    SharedMem(std::rc::Rc::new(std::cell::RefCell::new(m)))
}

fn setup_with(efr: u64, cfg: &Config) -> (Iommu<FakeIommu>, SharedMem) {
    let mut mem = memory();
    let model = FakeIommu::new(mem.clone(), efr);
    let iommu = Iommu::init(model, &mut mem, cfg).unwrap();
    (iommu, mem)
}

fn setup() -> (Iommu<FakeIommu>, SharedMem) {
    setup_with(QEMU_EFR, &config(2))
}

fn opcodes(iommu: &Iommu<FakeIommu>) -> Vec<u8> {
    iommu.regs().executed.iter().map(|c| c.opcode()).collect()
}

#[test]
fn bring_up_sequence() {
    let (iommu, mem) = setup();
    let model = iommu.regs();
    // Disabled first, then configured, then enabled.
    assert_eq!(model.writes[0], (regs::CONTROL, 0));
    let controls = model.writes_to(regs::CONTROL);
    let config_bits = Control::COHERENT | Control::GA_EN | Control::XT_EN;
    let config_value = config_bits.with_inv_timeout(InvTimeout::S1).bits();
    assert_eq!(config_value, 0x0004_0000_0002_0480);
    assert_eq!(
        controls,
        vec![0, config_value, config_value | 0x1005] // + CmdBufEn, EventLogEn, IommuEn
    );
    // Base registers: 2-page device table (Size = 1), 256-entry rings (len 8 at 59:56).
    assert_eq!(model.writes_to(regs::DEVICE_TABLE_BASE), vec![DT | 1]);
    assert_eq!(
        model.writes_to(regs::COMMAND_BUFFER_BASE),
        vec![0x0800_0000_0200_0000]
    );
    assert_eq!(
        model.writes_to(regs::EVENT_LOG_BASE),
        vec![0x0800_0000_0201_0000]
    );
    assert_eq!(model.writes_to(regs::EXCLUSION_BASE), vec![0]);
    // Everything is programmed before translation is switched on.
    let enable_at = model
        .writes
        .iter()
        .position(|&(o, v)| o == regs::CONTROL && v & 1 != 0)
        .unwrap();
    for reg in [
        regs::DEVICE_TABLE_BASE,
        regs::COMMAND_BUFFER_BASE,
        regs::EVENT_LOG_BASE,
    ] {
        assert!(model.writes.iter().position(|&(o, _)| o == reg).unwrap() < enable_at);
    }
    // Stale Status bits are cleared before the event log base is written.
    let first = |reg| model.writes.iter().position(|&(o, _)| o == reg).unwrap();
    assert!(first(regs::STATUS) < first(regs::EVENT_LOG_BASE));
    assert!(first(regs::CONTROL) < first(regs::STATUS));
    // Every entry of the table is blocked.
    for id in 0..256u16 {
        let d = iommu.dte(&mem, DeviceId(id)).unwrap();
        assert_eq!(d, Dte::blocked(), "device {id}");
    }
    // INVALIDATE_IOMMU_ALL, then the completion wait stored sequence 1.
    assert_eq!(opcodes(&iommu), vec![INVALIDATE_IOMMU_ALL, COMPLETION_WAIT]);
    assert_eq!(mem.read_u64(Hpa(SEM)), 1);
    assert!(iommu
        .status()
        .contains(Status::CMD_BUF_RUN | Status::EVENT_LOG_RUN));
    assert_eq!(iommu.irte_format(), IrteFormat::Bits128);
    assert_eq!(iommu.device_table_entries(), 256);
}

#[test]
fn full_device_table() {
    let (iommu, mem) = setup_with(QEMU_EFR, &config(device_table_pages_for(DeviceId::MAX)));
    assert_eq!(
        iommu.regs().writes_to(regs::DEVICE_TABLE_BASE),
        vec![DT | 0x1FF]
    );
    assert_eq!(iommu.device_table_entries(), 65536);
    assert_eq!(iommu.dte(&mem, DeviceId::MAX).unwrap(), Dte::blocked());
    assert_eq!(device_table_pages_for(DeviceId(127)), 1);
    assert_eq!(device_table_pages_for(DeviceId(128)), 2);
}

#[test]
fn legacy_irtes_without_x2apic() {
    let mut cfg = config(1);
    cfg.irte_format = IrteFormat::Bits32;
    cfg.x2apic = false;
    cfg.control = Control::PASS_PW | Control::IOMMU_EN; // enable bits are the driver's
    let (iommu, _) = setup_with(0x40, &cfg); // IASup only
    let c = iommu.control();
    assert!(!c.intersects(Control::GA_EN | Control::XT_EN));
    assert!(c.contains(Control::PASS_PW | Control::COHERENT | Control::IOMMU_EN));
    assert_eq!(iommu.regs().writes_to(regs::CONTROL)[1] & 1, 0);
}

#[test]
fn refuses_missing_features_and_bad_config() {
    let mut mem = memory();
    let init = |efr: u64, cfg: &Config, mem: &mut SharedMem| {
        Iommu::init(FakeIommu::new(mem.clone(), efr), mem, cfg).err()
    };
    assert_eq!(
        init(QEMU_EFR & !0x80, &config(1), &mut mem),
        Some(DriverError::Unsupported("GASup"))
    );
    assert_eq!(
        init(QEMU_EFR & !0x4, &config(1), &mut mem),
        Some(DriverError::Unsupported("XTSup"))
    );
    let mut legacy_x2 = config(1);
    legacy_x2.irte_format = IrteFormat::Bits32;
    assert_eq!(
        init(QEMU_EFR, &legacy_x2, &mut mem),
        Some(DriverError::BadConfig("x2APIC needs 128-bit IRTEs"))
    );
    assert_eq!(
        init(QEMU_EFR, &config(0), &mut mem),
        Some(DriverError::BadConfig("device table pages"))
    );
    assert_eq!(
        init(QEMU_EFR, &config(513), &mut mem),
        Some(DriverError::BadConfig("device table pages"))
    );
    let mut ring = config(1);
    ring.command_log2 = 7;
    assert_eq!(
        init(QEMU_EFR, &ring, &mut mem),
        Some(DriverError::BadConfig("command buffer"))
    );
    let mut sem = config(1);
    sem.semaphore = Hpa(SEM + 4);
    assert_eq!(
        init(QEMU_EFR, &sem, &mut mem),
        Some(DriverError::BadConfig("semaphore"))
    );
}

#[test]
fn without_ia_sup_every_device_and_domain_is_invalidated() {
    let mut cfg = config(1);
    cfg.irte_format = IrteFormat::Bits32;
    cfg.x2apic = false;
    let (iommu, _) = setup_with(0, &cfg);
    let executed = &iommu.regs().executed;
    let count = |op| executed.iter().filter(|c| c.opcode() == op).count();
    assert_eq!(count(INVALIDATE_DEVTAB_ENTRY), 128);
    assert_eq!(count(INVALIDATE_INTERRUPT_TABLE), 128);
    assert_eq!(count(INVALIDATE_IOMMU_PAGES), 65536);
    assert_eq!(executed.last().unwrap().opcode(), COMPLETION_WAIT);
    let domains: Vec<u16> = executed
        .iter()
        .filter(|c| c.opcode() == INVALIDATE_IOMMU_PAGES)
        .map(|c| c.domain().0)
        .take(3)
        .collect();
    assert_eq!(domains, vec![0, 1, 2]);
}

#[test]
fn set_dte_writes_entry_then_invalidates_and_waits() {
    let (mut iommu, mut mem) = setup();
    let dte = Dte::translated(DomainId(2), Hpa(0x50_0000), 4, None).unwrap();
    mem.0.borrow_mut().record = true;
    iommu.set_dte(&mut mem, VF, &dte).unwrap();
    let at = DT + 0x19 * 32;
    let writes: Vec<(u64, u64)> = mem
        .0
        .borrow()
        .writes
        .iter()
        .copied()
        .filter(|&(a, _)| (at..at + 32).contains(&a))
        .collect();
    // From blocked: no intermediate step; quadwords 3, 2, 1, then 0.
    assert_eq!(
        writes,
        vec![(at + 24, 0), (at + 16, 1), (at + 8, 2), (at, dte.0[0])]
    );
    assert_eq!(iommu.dte(&mem, VF).unwrap(), dte);
    let executed = &iommu.regs().executed;
    let tail: Vec<Command> = executed[executed.len() - 3..].to_vec();
    assert_eq!(tail[0], Command::invalidate_devtab_entry(VF));
    assert_eq!(tail[1], Command::invalidate_interrupt_table(VF));
    assert_eq!(tail[2].opcode(), COMPLETION_WAIT);
    assert_eq!(tail[2].store_address(), Hpa(SEM));
    assert_eq!(mem.read_u64(Hpa(SEM)), 2);

    // Moving the device to another page table: quadword 0 is blocked first.
    mem.0.borrow_mut().writes.clear();
    let other = Dte::translated(DomainId(3), Hpa(0x60_0000), 4, None).unwrap();
    iommu.set_dte(&mut mem, VF, &other).unwrap();
    let first = mem.0.borrow().writes[0];
    assert_eq!(first, (at, Dte::blocked().0[0]));
    assert_eq!(iommu.dte(&mem, VF).unwrap(), other);
}

#[test]
fn set_dte_out_of_range() {
    let (mut iommu, mut mem) = setup();
    assert_eq!(
        iommu.set_dte(&mut mem, DeviceId(256), &Dte::blocked()),
        Err(DriverError::DeviceOutOfRange(DeviceId(256)))
    );
    assert_eq!(
        iommu.dte(&mem, DeviceId(0xFFFF)),
        Err(DriverError::DeviceOutOfRange(DeviceId(0xFFFF)))
    );
}

#[test]
fn hung_command_processor_times_out() {
    let (mut iommu, mut mem) = setup();
    iommu.regs_mut().stalled = true;
    let r = iommu.invalidate_interrupt_table(&mut mem, VF);
    match r {
        Err(DriverError::Command(CommandError::Timeout(status))) => {
            assert!(status.contains(Status::CMD_BUF_RUN));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn illegal_command_stops_processing_and_wait_reports_it() {
    let (mut iommu, mut mem) = setup();
    iommu
        .submit(&mut mem, &Command([0xF000_0000_0000_0000, 0]))
        .unwrap();
    let r = iommu.sync(&mut mem);
    match r {
        Err(DriverError::Command(CommandError::Timeout(status))) => {
            assert!(!status.contains(Status::CMD_BUF_RUN));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ring_wraps_many_times() {
    let (mut iommu, mut mem) = setup();
    for i in 0..700u16 {
        iommu
            .invalidate_domain_pages(&mut mem, DomainId(i))
            .unwrap();
    }
    let model = iommu.regs();
    // 2 at init + 2 per call, through a 256-entry ring.
    assert_eq!(model.executed.len(), 2 + 1400);
    assert_eq!(
        model.read64(regs::COMMAND_HEAD),
        model.read64(regs::COMMAND_TAIL)
    );
    assert_eq!(model.read64(regs::COMMAND_TAIL), (1402 % 256) * 16);
    assert_eq!(mem.read_u64(Hpa(SEM)), 701);
    let last_inv = model.executed[model.executed.len() - 2];
    assert_eq!(
        last_inv,
        Command::invalidate_iommu_pages(DomainId(699), PageRange::All, true)
    );
}

#[test]
fn range_invalidation() {
    let (mut iommu, mut mem) = setup();
    iommu
        .invalidate_domain_range(&mut mem, DomainId(5), Iova(0x4020_0000), 0x20_0000)
        .unwrap();
    let executed = &iommu.regs().executed;
    let inv = executed[executed.len() - 2];
    assert_eq!(inv.0, [0x3000_0005_0000_0000, 0x402F_F003]);
}

#[test]
fn events_are_decoded_and_overflow_restarts_logging() {
    let (mut iommu, mut mem) = setup();
    let fault = [0x2020_0002_0000_0019, 0x1234_5000];
    iommu.regs_mut().inject_event(fault);
    let mut lines = Vec::new();
    let r = iommu.poll_events(&mut mem, &mut |e| lines.push(e.to_string()));
    assert_eq!(
        r,
        EventPoll {
            events: 1,
            overflowed: false
        }
    );
    assert_eq!(
        lines,
        vec!["io page fault: device 00:03.1 domain 2 address 0x12345000 write, not present"]
    );
    assert!(!iommu.status().contains(Status::EVENT_LOG_INT));
    // Fill the log (255 usable slots) and one more: overflow, logging stops.
    for _ in 0..256 {
        iommu.regs_mut().inject_event(fault);
    }
    assert!(iommu.status().contains(Status::EVENT_OVERFLOW));
    assert!(!iommu.status().contains(Status::EVENT_LOG_RUN));
    let before = iommu.regs().writes_to(regs::CONTROL).len();
    let r = iommu.poll_events(&mut mem, &mut |_| {});
    assert_eq!(
        r,
        EventPoll {
            events: 255,
            overflowed: true
        }
    );
    let controls = iommu.regs().writes_to(regs::CONTROL);
    assert_eq!(controls.len(), before + 2);
    assert_eq!(controls[before] & Control::EVENT_LOG_EN.bits(), 0);
    assert_eq!(controls[before + 1], iommu.control().bits());
    assert!(iommu.status().contains(Status::EVENT_LOG_RUN));
    assert!(!iommu.status().contains(Status::EVENT_OVERFLOW));
    // Logging works again.
    iommu.regs_mut().inject_event([0x5000_0000_0000_0000, CMD]);
    let mut got = Vec::new();
    iommu.poll_events(&mut mem, &mut |e| got.push(e));
    assert_eq!(got, vec![Event::IllegalCommand { address: CMD }]);
}

#[test]
fn passthrough_setup_as_the_kernel_would_do_it() {
    // The guest's memory: 4 MiB at guest-physical 0, backed at 0x8000_0000.
    let (mut iommu, mut mem) = setup();
    let mut table = IoPageTable::new(mem.clone()).unwrap();
    table
        .map(
            Iova(0),
            Hpa(0x8000_0000),
            4 << 20,
            IoPerm::READ | IoPerm::WRITE,
        )
        .unwrap();
    // Its interrupt remapping table: 512 entries of 16 bytes.
    mem.0.borrow_mut().back(0x300_0000, 512 * 16);
    let irt = InterruptTable::new(Hpa(0x300_0000), 9, iommu.irte_format()).unwrap();
    irt.clear(&mut mem);
    // The guest programs MSI-X entry 0 with vector 0x41 for its APIC id 0; the hypervisor
    // runs that vCPU on the core with APIC id 2 (direct mode), and uses IRTE 0.
    let guest_msi = MsiMessage::fixed(0, 0x41);
    let irte = Irte::remapped(
        iommu.irte_format(),
        guest_msi.vector(),
        2,
        DestMode::Physical,
        IntType::Fixed,
    )
    .unwrap();
    irt.set(&mut mem, 0, irte).unwrap();
    let dte = Dte::translated(
        DomainId(1),
        table.root(),
        table.levels(),
        Some(InterruptRemap {
            table: Hpa(0x300_0000),
            log2_entries: 9,
        }),
    )
    .unwrap();
    iommu.set_dte(&mut mem, VF, &dte).unwrap();
    let device_msi = MsiMessage::remappable(0).unwrap();
    assert_eq!((device_msi.address, device_msi.data), (0xFEE0_0000, 0));

    // What the IOMMU would do, from memory alone: read the DTE, walk its table, look up
    // the IRTE the device's MSI selects.
    let seen = iommu.dte(&mem, VF).unwrap();
    let t = walk(&mem, seen.page_table_root(), seen.mode(), Iova(0x12_3456)).unwrap();
    assert_eq!(t.pa, Hpa(0x8012_3456));
    assert_eq!(
        walk(&mem, seen.page_table_root(), seen.mode(), Iova(4 << 20)),
        None
    );
    let index = device_msi.irte_index().unwrap();
    assert!(index < 1 << seen.int_table_log2());
    let table_at = InterruptTable::new(
        seen.int_table_root(),
        seen.int_table_log2(),
        iommu.irte_format(),
    )
    .unwrap();
    match table_at.get(&mem, index).unwrap() {
        Irte::Bits128(e) => {
            assert!(e.remap_enabled() && !e.guest_mode());
            assert_eq!((e.vector(), e.destination()), (0x41, 2));
        }
        other => panic!("{other:?}"),
    }
    // Every other device stays blocked.
    assert!(iommu
        .dte(&mem, DeviceId::new(0, 3, 0))
        .unwrap()
        .blocks_dma());
}

/// QEMU's EFR with `ga=on` (patch 0006): GAMSup = 001b at 23:21 as well.
const QEMU_GA_EFR: u64 = QEMU_EFR | 0x20_0000;

fn ga_config() -> Config {
    Config {
        ga_log: Some(GaLogConfig {
            base: Hpa(GALOG),
            shadow_tail: Hpa(GALOG + 0x1000),
        }),
        ..config(2)
    }
}

#[test]
fn ga_mode_when_offered_and_asked_for() {
    let (iommu, _) = setup_with(QEMU_GA_EFR, &ga_config());
    assert!(iommu.ga_enabled());
    let c = iommu.control();
    assert!(c.contains(Control::GA_EN | Control::GA_LOG_EN | Control::GA_INT_EN | Control::XT_EN));
    assert_eq!(c.gam_en(), 1);
    // GA log: base | GALogLen 1000b << 56; tail address; pointers zero.
    assert_eq!(
        iommu.regs().read64(regs::GA_LOG_BASE),
        0x0800_0000_0000_0000 | GALOG
    );
    assert_eq!(
        iommu.regs().read64(regs::GA_LOG_TAIL_ADDRESS),
        GALOG + 0x1000
    );
    // The log is programmed before anything is enabled: the first Control write with an
    // enable bit comes after the GA log base write.
    let writes = &iommu.regs().writes;
    let base_at = writes
        .iter()
        .position(|(o, _)| *o == regs::GA_LOG_BASE)
        .unwrap();
    let first_en = writes
        .iter()
        .position(|(o, v)| *o == regs::CONTROL && v & Control::IOMMU_EN.bits() != 0)
        .unwrap();
    assert!(base_at < first_en);
    // Configuration first (GAEn, GAMEn), enables (GALogEn, GAIntEn) with the second write.
    let controls = iommu.regs().writes_to(regs::CONTROL);
    let config_write = Control::from_bits_retain(controls[controls.len() - 2]);
    assert_eq!(config_write.gam_en(), 1);
    assert!(!config_write.intersects(Control::GA_LOG_EN | Control::GA_INT_EN));

    // Without GAMSup (plain QEMU) or without a log: 128-bit IRTEs, no vAPIC mode.
    for (efr, cfg) in [(QEMU_EFR, ga_config()), (QEMU_GA_EFR, config(2))] {
        let (iommu, _) = setup_with(efr, &cfg);
        assert!(!iommu.ga_enabled());
        let c = iommu.control();
        assert!(c.contains(Control::GA_EN));
        assert_eq!(c.gam_en(), 0);
        assert!(!c.intersects(Control::GA_LOG_EN | Control::GA_INT_EN));
    }
}

#[test]
fn ga_log_entries_are_decoded_and_overflow_restarts_logging() {
    let (mut iommu, mut mem) = setup_with(QEMU_GA_EFR, &ga_config());
    // The IOMMU logs GA_GUEST_NR for 00:03.1, GATag 0x8001_0000, and raises GAInt.
    mem.write_u64(Hpa(GALOG), 0x1000_0019_8001_0000);
    iommu.regs_mut().write64(regs::GA_LOG_TAIL, 8);
    iommu.regs_mut().raise(Status::GA_INT);
    let mut got = Vec::new();
    let r = iommu.poll_ga_log(&mut mem, &mut |e| got.push(e));
    assert_eq!(
        r,
        GaPoll {
            entries: 1,
            overflowed: false
        }
    );
    assert_eq!(
        got,
        vec![GaLogEntry::GuestNotRunning {
            tag: 0x8001_0000,
            device: VF
        }]
    );
    assert!(!iommu.status().contains(Status::GA_INT));
    assert_eq!(iommu.regs().read64(regs::GA_LOG_HEAD), 8);
    // Overflow: GALogEn off, the bit cleared, GALogEn on again.
    iommu.regs_mut().raise(Status::GA_LOG_OVERFLOW);
    let before = iommu.regs().writes_to(regs::CONTROL).len();
    let r = iommu.poll_ga_log(&mut mem, &mut |_| {});
    assert!(r.overflowed);
    let controls = iommu.regs().writes_to(regs::CONTROL);
    assert_eq!(controls.len(), before + 2);
    assert_eq!(controls[before] & Control::GA_LOG_EN.bits(), 0);
    assert_eq!(controls[before + 1], iommu.control().bits());
    assert!(!iommu.status().contains(Status::GA_LOG_OVERFLOW));
    // Without GA mode there is nothing to poll.
    let (mut plain, mut mem) = setup();
    assert_eq!(plain.poll_ga_log(&mut mem, &mut |_| {}), GaPoll::default());
}
