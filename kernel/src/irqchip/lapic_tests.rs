//! Local APIC tests: priority, EOI, the timer, the MSR access rules and the ICR, with values worked
//! out from the APM/SDM register descriptions and from what Linux writes.

use super::lapic::*;
use super::x2apic::*;

const GHZ: u64 = 1_000_000_000;
const T0: Nanos = 0;

fn enabled(apic_id: u32) -> Lapic {
    let mut apic = Lapic::new(apic_id, GHZ);
    assert_eq!(apic.write_msr(MSR_SVR, 0x1ff, T0), Ok(WriteEffect::None));
    apic
}

fn read(apic: &Lapic, msr: u32) -> u64 {
    apic.read_msr(msr, T0).unwrap()
}

fn write(apic: &mut Lapic, msr: u32, value: u64) -> WriteEffect {
    apic.write_msr(msr, value, T0).unwrap()
}

/// Takes the next interrupt as the CPU would, returning its vector.
fn take(apic: &mut Lapic) -> Option<u8> {
    let vector = apic.highest_deliverable(true)?;
    assert!(apic.ack(vector));
    Some(vector)
}

fn eoi(apic: &mut Lapic) -> WriteEffect {
    write(apic, MSR_EOI, 0)
}

#[test]
fn reset_state() {
    let apic = Lapic::new(0x23, GHZ);
    assert_eq!(read(&apic, MSR_ID), 0x23);
    assert_eq!(read(&apic, MSR_VERSION), 0x0005_0014);
    assert_eq!(read(&apic, MSR_LDR), 0x0002_0008);
    assert_eq!(read(&apic, MSR_SVR), 0xff);
    assert!(!apic.software_enabled());
    for msr in MSR_LVT_TIMER..=MSR_LVT_ERROR {
        assert_eq!(read(&apic, msr), 0x1_0000, "{msr:#x}");
    }
    assert_eq!(read(&apic, MSR_PPR), 0);
    assert_eq!(read(&apic, MSR_TIMER_CURRENT), 0);
}

#[test]
fn higher_class_first_and_nesting() {
    let mut apic = enabled(0);
    assert!(apic.accept(0x31, TriggerMode::Edge));
    assert!(apic.accept(0x52, TriggerMode::Edge));
    assert_eq!(take(&mut apic), Some(0x52));
    assert_eq!(read(&apic, MSR_PPR), 0x50);
    // 31h (class 3) waits under the class-5 handler; 61h (class 6) nests into it.
    assert_eq!(apic.highest_deliverable(true), None);
    assert!(apic.accept(0x61, TriggerMode::Edge));
    assert_eq!(take(&mut apic), Some(0x61));
    assert_eq!(read(&apic, MSR_PPR), 0x60);
    // ISR 61h and 52h: word 3 bit 1 and word 2 bit 18.
    assert_eq!(read(&apic, MSR_ISR0 + 3), 0x2);
    assert_eq!(read(&apic, MSR_ISR0 + 2), 1 << 18);
    // EOIs retire the highest in-service vector first.
    assert_eq!(
        eoi(&mut apic),
        WriteEffect::Eoi {
            vector: 0x61,
            level: false
        }
    );
    assert_eq!(read(&apic, MSR_PPR), 0x50);
    assert_eq!(apic.highest_deliverable(true), None);
    assert_eq!(
        eoi(&mut apic),
        WriteEffect::Eoi {
            vector: 0x52,
            level: false
        }
    );
    assert_eq!(take(&mut apic), Some(0x31));
    assert_eq!(
        eoi(&mut apic),
        WriteEffect::Eoi {
            vector: 0x31,
            level: false
        }
    );
    assert_eq!(eoi(&mut apic), WriteEffect::None, "empty ISR");
}

#[test]
fn same_class_as_in_service_waits() {
    let mut apic = enabled(0);
    apic.accept(0x52, TriggerMode::Edge);
    take(&mut apic);
    apic.accept(0x5f, TriggerMode::Edge);
    assert_eq!(apic.highest_deliverable(true), None);
    eoi(&mut apic);
    assert_eq!(apic.highest_deliverable(true), Some(0x5f));
}

#[test]
fn tpr_masks_by_class() {
    let mut apic = enabled(0);
    write(&mut apic, MSR_TPR, 0x4a);
    assert_eq!(read(&apic, MSR_TPR), 0x4a);
    assert_eq!(read(&apic, MSR_PPR), 0x4a);
    apic.accept(0x45, TriggerMode::Edge);
    assert_eq!(
        apic.highest_deliverable(true),
        None,
        "class 4 is not above TPR class 4"
    );
    apic.accept(0x50, TriggerMode::Edge);
    assert_eq!(apic.highest_deliverable(true), Some(0x50));
    assert_eq!(apic.highest_deliverable(false), None, "RFLAGS.IF clear");
    take(&mut apic);
    // In-service 50h above TPR class 4: PPR is the ISR class with sub-class 0.
    assert_eq!(read(&apic, MSR_PPR), 0x50);
    eoi(&mut apic);
    write(&mut apic, MSR_TPR, 0x30);
    assert_eq!(apic.highest_deliverable(true), Some(0x45));
}

#[test]
fn level_interrupts_show_in_tmr_and_eoi() {
    let mut apic = enabled(0);
    apic.accept(0x41, TriggerMode::Level);
    // 41h = word 2, bit 1.
    assert_eq!(read(&apic, MSR_IRR0 + 2), 0x2);
    assert_eq!(read(&apic, MSR_TMR0 + 2), 0x2);
    assert!(!apic.ack(0x42), "not pending");
    take(&mut apic);
    assert_eq!(read(&apic, MSR_IRR0 + 2), 0);
    assert_eq!(
        eoi(&mut apic),
        WriteEffect::Eoi {
            vector: 0x41,
            level: true
        }
    );
}

#[test]
fn eoi_register_rules() {
    let mut apic = enabled(0);
    assert_eq!(
        apic.write_msr(MSR_EOI, 1, T0),
        Err(AccessFault::ReservedBits)
    );
    assert_eq!(apic.read_msr(MSR_EOI, T0), Err(AccessFault::WriteOnly));
    assert_eq!(apic.read_msr(MSR_SELF_IPI, T0), Err(AccessFault::WriteOnly));
}

#[test]
fn read_only_registers_fault_on_write() {
    let mut apic = enabled(5);
    for msr in [
        MSR_ID,
        MSR_VERSION,
        MSR_PPR,
        MSR_LDR,
        MSR_ISR0,
        0x81f,
        MSR_IRR0 + 7,
        MSR_TIMER_CURRENT,
    ] {
        assert_eq!(
            apic.write_msr(msr, 0, T0),
            Err(AccessFault::ReadOnly),
            "{msr:#x}"
        );
    }
    assert_eq!(read(&apic, MSR_ID), 5);
}

#[test]
fn holes_fault_both_ways() {
    let mut apic = enabled(0);
    for msr in [0x800, 0x80e, 0x82f, 0x831, 0x83a, 0x840, 0x8ff, 0x1b] {
        assert_eq!(
            apic.read_msr(msr, T0),
            Err(AccessFault::NoSuchRegister),
            "{msr:#x}"
        );
        assert_eq!(
            apic.write_msr(msr, 0, T0),
            Err(AccessFault::NoSuchRegister),
            "{msr:#x}"
        );
    }
}

#[test]
fn reserved_bits_fault() {
    let mut apic = enabled(0);
    assert_eq!(
        apic.write_msr(MSR_TPR, 0x1_0000_0000, T0),
        Err(AccessFault::ReservedBits)
    );
    assert_eq!(
        apic.write_msr(MSR_TPR, 0x100, T0),
        Err(AccessFault::ReservedBits)
    );
    assert_eq!(
        apic.write_msr(MSR_SVR, 0x11ff, T0),
        Err(AccessFault::ReservedBits),
        "no directed EOI"
    );
    assert_eq!(
        apic.write_msr(MSR_TIMER_DIVIDE, 0b0100, T0),
        Err(AccessFault::ReservedBits)
    );
    assert_eq!(
        apic.write_msr(MSR_SELF_IPI, 0x100, T0),
        Err(AccessFault::ReservedBits)
    );
    // TSC-deadline mode (01b at 18:17 is periodic, 10b TSC-deadline) is not offered.
    assert_eq!(
        apic.write_msr(MSR_LVT_TIMER, 0x4_00ec, T0),
        Err(AccessFault::ReservedBits)
    );
    // The timer LVT has no delivery mode; the error LVT neither.
    assert_eq!(
        apic.write_msr(MSR_LVT_TIMER, 0x4ec, T0),
        Err(AccessFault::ReservedBits)
    );
    assert_eq!(
        apic.write_msr(MSR_LVT_ERROR, 0x4fe, T0),
        Err(AccessFault::ReservedBits)
    );
    // ICR bits 13, 16-17, 20-31 are reserved.
    for bit in [13, 16, 17, 20, 31] {
        assert_eq!(
            apic.write_msr(MSR_ICR, 0xfd | (1 << bit), T0),
            Err(AccessFault::ReservedBits),
            "{bit}"
        );
    }
    // Nothing changed.
    assert_eq!(read(&apic, MSR_TPR), 0);
    assert_eq!(read(&apic, MSR_SVR), 0x1ff);
    assert_eq!(read(&apic, MSR_LVT_TIMER), 0x1_0000);
}

#[test]
fn read_only_lvt_bits_are_ignored() {
    let mut apic = enabled(0);
    write(&mut apic, MSR_LVT_LINT0, 0x1_5700);
    // Delivery status (12) and remote IRR (14) are not the guest's to set.
    assert_eq!(read(&apic, MSR_LVT_LINT0), 0x1_0700);
    write(&mut apic, MSR_LVT_TIMER, 0x1_10ec);
    assert_eq!(read(&apic, MSR_LVT_TIMER), 0x1_00ec);
}

#[test]
fn linux_setup_writes_are_accepted() {
    // setup_local_APIC / lapic timer setup / first IPI of a 6.1 guest on APIC id 0.
    let mut apic = Lapic::new(0, GHZ);
    let writes: [(u32, u64); 14] = [
        (MSR_TPR, 0),
        (MSR_SVR, 0x3ff),
        (MSR_LVT_LINT0, 0x1_0700),
        (MSR_LVT_LINT1, 0x400),
        (MSR_LVT_ERROR, 0xfe),
        (MSR_ESR, 0),
        (MSR_ESR, 0),
        (MSR_LVT_PERF, 0x400),
        (MSR_LVT_THERMAL, 0x1_00fa),
        (MSR_LVT_TIMER, 0x1_00ec),
        (MSR_TIMER_DIVIDE, 0x3),
        (MSR_TIMER_INITIAL, 0xffff_ffff),
        (MSR_LVT_TIMER, 0x2_00ec),
        (MSR_EOI, 0),
    ];
    for (msr, value) in writes {
        assert_eq!(
            apic.write_msr(msr, value, T0),
            Ok(WriteEffect::None),
            "{msr:#x} <- {value:#x}"
        );
        if msr != MSR_ESR && msr != MSR_EOI && msr != MSR_TIMER_INITIAL {
            assert_eq!(read(&apic, msr), value, "{msr:#x}");
        }
    }
    assert!(matches!(
        apic.write_msr(MSR_ICR, 0x1_0000_00fb, T0),
        Ok(WriteEffect::Ipi(_))
    ));
}

#[test]
fn software_disable_masks_lvts_and_refuses_interrupts() {
    let mut apic = enabled(0);
    write(&mut apic, MSR_LVT_TIMER, 0xec);
    write(&mut apic, MSR_SVR, 0xff);
    assert_eq!(read(&apic, MSR_LVT_TIMER), 0x1_00ec);
    // The mask cannot be cleared while disabled.
    write(&mut apic, MSR_LVT_ERROR, 0xfe);
    assert_eq!(read(&apic, MSR_LVT_ERROR), 0x1_00fe);
    assert!(!apic.accept(0x40, TriggerMode::Edge));
    assert_eq!(apic.highest_deliverable(true), None);
    // Re-enabling leaves the LVTs masked until the guest unmasks them.
    write(&mut apic, MSR_SVR, 0x1ff);
    assert_eq!(read(&apic, MSR_LVT_TIMER), 0x1_00ec);
}

#[test]
fn one_shot_timer() {
    // 1 GHz / 16 = 62.5 MHz: 16 ns a tick; 1000 ticks = 16 us.
    let mut apic = enabled(0);
    write(&mut apic, MSR_TIMER_DIVIDE, 0b0011);
    write(&mut apic, MSR_LVT_TIMER, 0xec);
    write(&mut apic, MSR_TIMER_INITIAL, 1000);
    assert_eq!(read(&apic, MSR_TIMER_INITIAL), 1000);
    assert_eq!(apic.next_timer_deadline(), Some(16_000));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 4_000), Ok(750));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 8_000), Ok(500));
    assert!(!apic.tick(15_999));
    assert_eq!(apic.highest_deliverable(true), None);
    assert!(apic.tick(16_000));
    assert_eq!(apic.highest_deliverable(true), Some(0xec));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 20_000), Ok(0));
    assert_eq!(apic.next_timer_deadline(), None);
    assert!(!apic.tick(40_000));
}

#[test]
fn periodic_timer_delivers_one_interrupt_for_a_long_gap() {
    // Divide by 1 at 1 GHz: 1 ns a tick, period 1000 ns.
    let mut apic = enabled(0);
    write(&mut apic, MSR_TIMER_DIVIDE, 0b1011);
    write(&mut apic, MSR_LVT_TIMER, 0x2_00ec);
    write(&mut apic, MSR_TIMER_INITIAL, 1000);
    assert!(apic.tick(1000));
    assert_eq!(take(&mut apic), Some(0xec));
    eoi(&mut apic);
    assert_eq!(apic.next_timer_deadline(), Some(2000));
    // Expiries at 2000, 3000 and 4000 pass unseen until 4500: one IRR bit, two missed.
    assert!(apic.tick(4500));
    assert_eq!(read(&apic, MSR_IRR0 + 7), 1 << (0xec - 0xe0));
    assert_eq!(apic.timer_missed_periods(), 2);
    assert_eq!(apic.next_timer_deadline(), Some(5000));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 4500), Ok(500));
}

#[test]
fn divide_values_scale_the_period() {
    for (config, divisor) in super::lapic_timer::DIVIDE_WORKED {
        let mut apic = enabled(0);
        write(&mut apic, MSR_LVT_TIMER, 0xec);
        write(&mut apic, MSR_TIMER_DIVIDE, config);
        write(&mut apic, MSR_TIMER_INITIAL, 100);
        assert_eq!(read(&apic, MSR_TIMER_DIVIDE), config);
        // 100 ticks of `divisor` ns each at 1 GHz.
        assert_eq!(
            apic.next_timer_deadline(),
            Some(100 * divisor),
            "{config:#06b}"
        );
    }
}

#[test]
fn timer_frequency_is_configurable() {
    // A 25 MHz timer clock / 2: 80 ns a tick; 1000 ticks = 80 us.
    let mut apic = Lapic::new(0, 25_000_000);
    write(&mut apic, MSR_SVR, 0x1ff);
    write(&mut apic, MSR_LVT_TIMER, 0xec);
    write(&mut apic, MSR_TIMER_INITIAL, 1000);
    assert_eq!(apic.next_timer_deadline(), Some(80_000));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 40_000), Ok(500));
}

#[test]
fn masked_timer_expires_silently() {
    let mut apic = enabled(0);
    write(&mut apic, MSR_TIMER_DIVIDE, 0b1011);
    write(&mut apic, MSR_LVT_TIMER, 0x1_00ec);
    write(&mut apic, MSR_TIMER_INITIAL, 1000);
    assert_eq!(apic.next_timer_deadline(), None, "no wake-up needed");
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 250), Ok(750));
    // Unmasking after the expiry does not deliver the expiry that happened while masked.
    assert_eq!(
        apic.write_msr(MSR_LVT_TIMER, 0xec, 2000),
        Ok(WriteEffect::None)
    );
    assert_eq!(apic.highest_deliverable(true), None);
    assert_eq!(apic.next_timer_deadline(), None);
}

#[test]
fn expiry_before_a_rewrite_is_delivered() {
    // The caller was late: the guest rewrites the count after the old deadline.
    let mut apic = enabled(0);
    write(&mut apic, MSR_TIMER_DIVIDE, 0b1011);
    write(&mut apic, MSR_LVT_TIMER, 0xec);
    write(&mut apic, MSR_TIMER_INITIAL, 1000);
    apic.write_msr(MSR_TIMER_INITIAL, 500, 1500).unwrap();
    assert_eq!(apic.highest_deliverable(true), Some(0xec));
    assert_eq!(apic.next_timer_deadline(), Some(2000));
    // Initial count 0 stops it.
    apic.write_msr(MSR_TIMER_INITIAL, 0, 1600).unwrap();
    assert_eq!(apic.next_timer_deadline(), None);
}

#[test]
fn icr_writes_become_ipis() {
    let mut apic = enabled(0);
    let init = write(&mut apic, MSR_ICR, 0x3_0000_4500);
    let WriteEffect::Ipi(ipi) = init else {
        panic!("{init:?}")
    };
    assert_eq!(
        (ipi.delivery_mode, ipi.dest, ipi.level),
        (DeliveryMode::Init, 3, true)
    );
    assert_eq!(read(&apic, MSR_ICR), 0x3_0000_4500);
    let sipi = write(&mut apic, MSR_ICR, 0x3_0000_4608);
    let WriteEffect::Ipi(ipi) = sipi else {
        panic!("{sipi:?}")
    };
    assert_eq!((ipi.delivery_mode, ipi.vector), (DeliveryMode::StartUp, 8));
    let fixed = write(&mut apic, MSR_ICR, 0x3_0000_00fd);
    assert_eq!(fixed, WriteEffect::Ipi(decode_icr(0x3_0000_00fd)));
    // xAPIC's delivery-status bit is accepted and dropped.
    write(&mut apic, MSR_ICR, 0x3_0000_10fd);
    assert_eq!(read(&apic, MSR_ICR), 0x3_0000_00fd);
    // Reserved and ExtINT modes send nothing.
    assert_eq!(write(&mut apic, MSR_ICR, 0x3_0000_0330), WriteEffect::None);
    assert_eq!(write(&mut apic, MSR_ICR, 0x3_0000_0700), WriteEffect::None);
}

#[test]
fn illegal_vectors_are_errors() {
    let mut apic = enabled(0);
    write(&mut apic, MSR_LVT_ERROR, 0xfe);
    // A fixed IPI with vector 5 is not sent: send-illegal-vector (bit 5).
    assert_eq!(write(&mut apic, MSR_ICR, 0x1_0000_0005), WriteEffect::None);
    // A self-IPI with vector 3 is refused on receipt: receive-illegal-vector (bit 6).
    write(&mut apic, MSR_SELF_IPI, 3);
    // Errors show only after the ESR write that latches them.
    assert_eq!(read(&apic, MSR_ESR), 0);
    write(&mut apic, MSR_ESR, 0);
    assert_eq!(read(&apic, MSR_ESR), 0x60);
    write(&mut apic, MSR_ESR, 0);
    assert_eq!(read(&apic, MSR_ESR), 0);
    assert_eq!(
        apic.write_msr(MSR_ESR, 0x60, T0),
        Err(AccessFault::ReservedBits)
    );
    // The error LVT raised FEh; the illegal vectors themselves never reached the IRR.
    assert_eq!(read(&apic, MSR_IRR0), 0);
    assert_eq!(take(&mut apic), Some(0xfe));
    assert_eq!(take(&mut apic), None);
}

#[test]
fn self_ipi_sets_irr() {
    let mut apic = enabled(0);
    assert_eq!(write(&mut apic, MSR_SELF_IPI, 0x40), WriteEffect::None);
    assert_eq!(read(&apic, MSR_IRR0 + 2), 1);
    assert_eq!(read(&apic, MSR_TMR0 + 2), 0);
    assert_eq!(take(&mut apic), Some(0x40));
}

#[test]
fn init_resets_all_but_the_id() {
    let mut apic = enabled(7);
    write(&mut apic, MSR_TPR, 0x20);
    apic.accept(0x40, TriggerMode::Edge);
    write(&mut apic, MSR_LVT_TIMER, 0xec);
    write(&mut apic, MSR_TIMER_INITIAL, 1000);
    apic.init_reset();
    assert_eq!(apic, Lapic::new(7, GHZ));
}

/// `irq=avic`: the timer's vector leaves the model's IRR for the backing page, once per expiry,
/// and a periodic timer re-arms.
#[test]
fn avic_takes_the_timer_vector_out_of_the_model() {
    let mut apic = enabled(0);
    assert_eq!(apic.take_requested(), None);
    // Periodic, vector ECh, divide by 1, 1000 ticks of the 1 GHz clock = 1 us.
    write(&mut apic, MSR_TIMER_DIVIDE, 0xb);
    write(&mut apic, MSR_LVT_TIMER, (1 << 17) | 0xec);
    write(&mut apic, MSR_TIMER_INITIAL, 1000);
    assert_eq!(apic.next_timer_deadline(), Some(1000));
    assert!(!apic.tick(999));
    assert_eq!(apic.take_requested(), None);
    assert!(apic.tick(1000));
    assert_eq!(apic.take_requested(), Some((0xec, false)));
    assert_eq!(apic.take_requested(), None, "taken once");
    assert_eq!(apic.next_timer_deadline(), Some(2000), "periodic re-arms");
    // Nothing went in service: ISR and EOI are the hardware's in this mode.
    assert_eq!(read(&apic, MSR_ISR0 + 7), 0);
    // A level-triggered request keeps its trigger mode.
    apic.accept(0x41, TriggerMode::Level);
    assert_eq!(apic.take_requested(), Some((0x41, true)));
}

/// Runs `settle_for_posting` and collects what it posted.
fn settle(apic: &mut Lapic, now: Nanos) -> (Vec<(u8, bool)>, Option<Nanos>) {
    let mut posted = Vec::new();
    let next = apic.settle_for_posting(now, |v, level| posted.push((v, level)));
    (posted, next)
}

/// `irq=avic`, the exitless timer: the service core settles one-shot expiries from the
/// published deadline; TMCCT follows the deadline; a masked or stopped timer publishes none.
#[test]
fn avic_one_shot_settles_from_the_deadline() {
    // Divide by 16 at 1 GHz: 16 ns a tick; 1000 ticks = 16 us.
    let mut apic = enabled(0);
    write(&mut apic, MSR_TIMER_DIVIDE, 0b0011);
    write(&mut apic, MSR_LVT_TIMER, 0xec);
    apic.write_msr(MSR_TIMER_INITIAL, 1000, 100).unwrap();
    // The guest core settles after the trapped TMICT write: nothing due, deadline published.
    assert_eq!(settle(&mut apic, 100), (vec![], Some(16_100)));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 8_100), Ok(500));
    // The service core is early: nothing; on time: one edge-triggered vector, no new deadline.
    assert_eq!(settle(&mut apic, 16_099), (vec![], Some(16_100)));
    assert_eq!(settle(&mut apic, 16_100), (vec![(0xec, false)], None));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 16_100), Ok(0));
    assert_eq!(settle(&mut apic, 99_999), (vec![], None), "posted once");
    // Masked: the count runs (TMCCT), nothing is posted, no deadline to watch.
    write(&mut apic, MSR_LVT_TIMER, 0x1_00ec);
    apic.write_msr(MSR_TIMER_INITIAL, 1000, 200_000).unwrap();
    assert_eq!(settle(&mut apic, 200_000), (vec![], None));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 204_000), Ok(750));
    assert_eq!(settle(&mut apic, 300_000), (vec![], None));
    // TMICT 0 stops it.
    write(&mut apic, MSR_LVT_TIMER, 0xec);
    apic.write_msr(MSR_TIMER_INITIAL, 0, 400_000).unwrap();
    assert_eq!(settle(&mut apic, 400_000), (vec![], None));
}

/// Periodic: each settle re-arms at the next period boundary (not at "now"), so a late service
/// core neither drifts the timer nor loses TMCCT consistency; a TDCR write rescales what is left.
#[test]
fn avic_periodic_rearms_on_period_boundaries() {
    // Divide by 2 at 1 GHz: 2 ns a tick, 500 ticks = 1000 ns.
    let mut apic = enabled(0);
    write(&mut apic, MSR_TIMER_DIVIDE, 0b0000);
    write(&mut apic, MSR_LVT_TIMER, 0x2_00ec);
    write(&mut apic, MSR_TIMER_INITIAL, 500);
    assert_eq!(settle(&mut apic, 0), (vec![], Some(1000)));
    // 30 ns late: posted, next deadline still on the grid.
    assert_eq!(settle(&mut apic, 1030), (vec![(0xec, false)], Some(2000)));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 1030), Ok(485));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 1500), Ok(250));
    // Three periods late: one vector (one IRR bit), two missed, the grid kept.
    assert_eq!(settle(&mut apic, 4100), (vec![(0xec, false)], Some(5000)));
    assert_eq!(apic.timer_missed_periods(), 2);
    // TDCR to divide by 4 at 4500 (250 ticks left of the period, now 4 ns each): 5500.
    apic.write_msr(MSR_TIMER_DIVIDE, 0b0001, 4500).unwrap();
    assert_eq!(settle(&mut apic, 4500), (vec![], Some(5500)));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, 5000), Ok(125));
    // Then full periods of 500 ticks at 4 ns.
    assert_eq!(settle(&mut apic, 5500), (vec![(0xec, false)], Some(7500)));
    // An error LVT interrupt the model raised travels with the timer's, level stays edge.
    write(&mut apic, MSR_LVT_ERROR, 0xfe);
    apic.accept(0x05, TriggerMode::Edge);
    assert_eq!(
        settle(&mut apic, 7500),
        (vec![(0xfe, false), (0xec, false)], Some(9500))
    );
}
