use super::*;

const OWN: Hpa = Hpa(0x10_1000);
const OTHER: Hpa = Hpa(0x10_2000);
const VMMCALL_RIP: u64 = 0x1040;

fn table() -> [PhysicalIdEntry; 2] {
    physical_table(OWN, OTHER, 3)
}

fn exit(code: u64, info1: u64, info2: u64, rip: u64) -> Exit {
    Exit {
        code,
        info1,
        info2,
        rip,
    }
}

fn vmmcall() -> Exit {
    exit(0x81, 0, 0, VMMCALL_RIP)
}

fn page() -> Box<BackingPage> {
    Box::new(backing_page(0, Mode::X2avic))
}

/// SELF_VECTOR 51h is bit 17 of the third word (offset +20h).
const BIT: u32 = 1 << 17;

#[test]
fn modes_and_layout() {
    assert_eq!(Mode::for_cpu(true, true), Some(Mode::X2avic));
    assert_eq!(Mode::for_cpu(true, false), Some(Mode::Xavic));
    assert_eq!(Mode::for_cpu(false, true), None);
    assert_eq!(Mode::X2avic.name(), "x2AVIC");
    assert_eq!(word_of(reg::IRR, SELF_VECTOR), (0x220, 17));
    assert_eq!(word_of(reg::ISR, SELF_VECTOR), (0x120, 17));
    assert_eq!(x2apic_msr(0x220), 0x822);
    assert_eq!(x2apic_msr(reg::TIMER_INITIAL), 0x838);
    assert_eq!(x2apic_msr(reg::SELF_IPI), 0x83F);
    assert_eq!(self_ipi_icr().0, 0x4_0051);
    assert_eq!(target_icr(Mode::X2avic).0, 0x1_0000_0062);
    assert_eq!(target_icr(Mode::Xavic).0, 0x0100_0000_0000_0062);
    let t = table();
    assert_eq!(t[0].0, 0xC000_0000_0010_1003);
    assert_eq!(t[1].0, 0x8000_0000_0010_2003);
}

#[test]
fn backing_page_defaults() {
    let x = backing_page(1, Mode::Xavic);
    assert_eq!(x.read(reg::ID), 0x0100_0000);
    assert_eq!(x.read(reg::DFR), 0xFFFF_FFFF);
    assert_eq!(x.read(reg::SPIV), 0x1FF);
    assert_eq!(x.read(reg::LVT_TIMER), 0x1_0000);
    assert_eq!(x.read(reg::LVT_ERROR), 0x1_0000);
    let x2 = backing_page(1, Mode::X2avic);
    assert_eq!(x2.read(reg::ID), 1);
    assert_eq!(x2.read(reg::DFR), 0);
    assert_eq!(x2.highest_irr(), None);
}

#[test]
fn report_decoding() {
    let mut b = [0u8; report::SIZE];
    b[0..4].copy_from_slice(&BIT.to_le_bytes());
    b[4] = 1;
    b[0x18..0x1C].copy_from_slice(&0xFFF0u32.to_le_bytes());
    let r = GuestReport::from_bytes(&b);
    assert_eq!(r.irr_before_sti, BIT);
    assert_eq!(r.handled, 1);
    assert_eq!(r.loops_left, 0xFFF0);
    assert_eq!(r.isr_after_eoi, 0);
}

#[test]
fn self_ipi_good_and_bad() {
    let mut own = page();
    own.set_irr(SELF_VECTOR);
    let guest = GuestReport {
        irr_before_sti: BIT,
        ..Default::default()
    };
    for mode in [Mode::X2avic, Mode::Xavic] {
        assert_eq!(
            judge_self_ipi(mode, &table(), &vmmcall(), VMMCALL_RIP, &own, &guest),
            Ok(())
        );
    }
    // An exit on the self-IPI (e.g. AVIC off: the MSR intercept).
    let e = judge_self_ipi(
        Mode::X2avic,
        &table(),
        &exit(0x7C, 1, 0, 0x1010),
        VMMCALL_RIP,
        &own,
        &guest,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "self-IPI: exit: got #VMEXIT 0x7c (msr), expected #VMEXIT 0x81 (vmmcall)"
    );
    // The VMMCALL, but not the phase's.
    let e = judge_self_ipi(
        Mode::X2avic,
        &table(),
        &exit(0x81, 0, 0, 0x1100),
        VMMCALL_RIP,
        &own,
        &guest,
    )
    .unwrap_err();
    assert_eq!(e.what, "rip");
    // Nothing in the page.
    let e = judge_self_ipi(
        Mode::Xavic,
        &table(),
        &vmmcall(),
        VMMCALL_RIP,
        &page(),
        &guest,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "self-IPI: backing page IRR bit: got clear, expected set"
    );
    // The guest read something else than the page holds.
    let e = judge_self_ipi(
        Mode::Xavic,
        &table(),
        &vmmcall(),
        VMMCALL_RIP,
        &own,
        &GuestReport::default(),
    )
    .unwrap_err();
    assert_eq!(e.what, "IRR bit read by the guest");
    // Delivered although IF=0.
    let mut early = page();
    early.set_irr(SELF_VECTOR);
    early.write(0x120, BIT);
    let e = judge_self_ipi(
        Mode::X2avic,
        &table(),
        &vmmcall(),
        VMMCALL_RIP,
        &early,
        &guest,
    )
    .unwrap_err();
    assert_eq!(e.what, "backing page ISR bit (IF=0)");
}

fn delivered() -> GuestReport {
    GuestReport {
        irr_before_sti: BIT,
        handled: 1,
        isr_in_handler: BIT,
        loops_left: WAIT_LOOPS - 3,
        ..Default::default()
    }
}

#[test]
fn delivery_good_and_bad() {
    let own = page();
    assert_eq!(
        judge_delivery(&vmmcall(), VMMCALL_RIP, &own, &delivered()),
        Ok(())
    );
    // Never delivered: the guest gave up waiting.
    let never = GuestReport {
        handled: 0,
        loops_left: 0,
        ..delivered()
    };
    let e = judge_delivery(&vmmcall(), VMMCALL_RIP, &own, &never).unwrap_err();
    assert_eq!(e.to_string(), "delivery: handler runs: got 0, expected 1");
    // Delivered twice.
    let twice = GuestReport {
        handled: 2,
        ..delivered()
    };
    assert_eq!(
        judge_delivery(&vmmcall(), VMMCALL_RIP, &own, &twice)
            .unwrap_err()
            .got,
        Value::Count(2)
    );
    // Not in ISR inside the handler (e.g. injected by EVENTINJ rather than AVIC).
    let no_isr = GuestReport {
        isr_in_handler: 0,
        ..delivered()
    };
    assert_eq!(
        judge_delivery(&vmmcall(), VMMCALL_RIP, &own, &no_isr)
            .unwrap_err()
            .what,
        "ISR bit read in the handler"
    );
    // EOI not accelerated: ISR still set, seen by the guest and in the page.
    let stuck = GuestReport {
        isr_after_eoi: BIT,
        ..delivered()
    };
    assert_eq!(
        judge_delivery(&vmmcall(), VMMCALL_RIP, &own, &stuck)
            .unwrap_err()
            .what,
        "ISR bit read after EOI"
    );
    let mut page_isr = page();
    page_isr.write(0x120, BIT);
    let e = judge_delivery(&vmmcall(), VMMCALL_RIP, &page_isr, &delivered()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "delivery: backing page ISR after EOI: got 0x51, expected 0x0"
    );
    // An exit during the wait (an EOI trap, say).
    let e = judge_delivery(
        &exit(0x402, (1 << 32) | 0xB0, 0x51, 0x1080),
        VMMCALL_RIP,
        &own,
        &delivered(),
    )
    .unwrap_err();
    assert_eq!(e.got, Value::Exit(0x402));
}

fn incomplete(mode: Mode) -> Exit {
    exit(0x401, target_icr(mode).0, (1 << 32) | 1, 0x1090)
}

#[test]
fn incomplete_ipi_good_and_bad() {
    let own = page();
    let mut target = Box::new(backing_page(1, Mode::X2avic));
    target.set_irr(IPI_VECTOR);
    for mode in [Mode::X2avic, Mode::Xavic] {
        assert_eq!(
            judge_incomplete_ipi(mode, &table(), &incomplete(mode), &own, &target),
            Ok(())
        );
    }
    // The xAPIC ICR where x2APIC's was expected.
    let e = judge_incomplete_ipi(
        Mode::X2avic,
        &table(),
        &incomplete(Mode::Xavic),
        &own,
        &target,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "IPI to a not-running vCPU: EXITINFO1 (ICR): got 0x100000000000062, expected 0x100000062"
    );
    // Cause 2 (invalid target) instead of 1.
    let bad_cause = exit(0x401, target_icr(Mode::X2avic).0, (2 << 32) | 1, 0);
    let e = judge_incomplete_ipi(Mode::X2avic, &table(), &bad_cause, &own, &target).unwrap_err();
    assert_eq!(e.what, "EXITINFO2 cause");
    assert_eq!((e.got, e.expected), (Value::Hex(2), Value::Hex(1)));
    let bad_index = exit(0x401, target_icr(Mode::X2avic).0, 1 << 32, 0);
    let e = judge_incomplete_ipi(Mode::X2avic, &table(), &bad_index, &own, &target).unwrap_err();
    assert_eq!(e.what, "EXITINFO2 index");
    // No exit at all (the IPI treated as if the target ran).
    let e = judge_incomplete_ipi(Mode::X2avic, &table(), &vmmcall(), &own, &target).unwrap_err();
    assert_eq!(e.expected, Value::Exit(0x401));
    // The exit, but the IRR bit not set (the APM sets it before exiting, step 5).
    let e = judge_incomplete_ipi(
        Mode::X2avic,
        &table(),
        &incomplete(Mode::X2avic),
        &own,
        &page(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "IPI to a not-running vCPU: target backing page IRR bit: got clear, expected set"
    );
    // The vector landed in the sender's page.
    let mut own_hit = page();
    own_hit.set_irr(IPI_VECTOR);
    let e = judge_incomplete_ipi(
        Mode::X2avic,
        &table(),
        &incomplete(Mode::X2avic),
        &own_hit,
        &target,
    )
    .unwrap_err();
    assert_eq!(e.what, "own backing page IRR bit");
}

#[test]
fn incomplete_ipi_follows_the_table() {
    // With the target running the model expects no exit and a doorbell: the judge follows.
    let t = [
        PhysicalIdEntry::new(OWN, 3).with_running(true),
        PhysicalIdEntry::new(OTHER, 4).with_running(true),
    ];
    let mut target = Box::new(backing_page(1, Mode::X2avic));
    target.set_irr(IPI_VECTOR);
    let e = judge_incomplete_ipi(
        Mode::X2avic,
        &t,
        &incomplete(Mode::X2avic),
        &page(),
        &target,
    )
    .unwrap_err();
    assert_eq!(e.expected, Value::Exit(0x81));
}

#[test]
fn noaccel_good_and_bad() {
    let (write_rip, next_rip) = (0x10A0, 0x10A2);
    let mut own = page();
    own.write(reg::TIMER_INITIAL, TMICT_VALUE);
    let good = exit(0x402, (1 << 32) | 0x380, 0, next_rip);
    assert_eq!(judge_noaccel(&good, write_rip, next_rip, &own), Ok(()));
    // Fault-style: RIP still on the write.
    let e = judge_noaccel(
        &Exit {
            rip: write_rip,
            ..good
        },
        write_rip,
        next_rip,
        &own,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "TMICT write: rip: got 0x10a0, expected 0x10a2"
    );
    // Reported as a read.
    let e = judge_noaccel(
        &Exit {
            info1: 0x380,
            ..good
        },
        write_rip,
        next_rip,
        &own,
    )
    .unwrap_err();
    assert_eq!(e.what, "EXITINFO1");
    // The value did not reach the page.
    let e = judge_noaccel(&good, write_rip, next_rip, &page()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "TMICT write: backing page TMICT: got 0x0, expected 0x123456"
    );
    // Intercepted as an MSR access (no AVIC).
    let e = judge_noaccel(&exit(0x7C, 1, 0, write_rip), write_rip, next_rip, &own).unwrap_err();
    assert_eq!(e.got, Value::Exit(0x7C));
}

#[test]
fn summary_lines() {
    let ok = [Ok(()), Ok(()), Ok(()), Ok(())];
    let s = Summary {
        mode: Mode::X2avic,
        results: &ok,
    };
    assert!(s.passed());
    assert_eq!(s.to_string(), "self-test (x2AVIC) passed: 4 of 4 checks");
    let fail = Failure {
        check: Check::Delivery,
        what: "handler runs",
        got: Value::Count(0),
        expected: Value::Count(1),
    };
    let mixed = [Ok(()), Err(fail), Ok(()), Ok(())];
    let s = Summary {
        mode: Mode::Xavic,
        results: &mixed,
    };
    assert!(!s.passed());
    assert_eq!(
        s.to_string(),
        "self-test (xAVIC) FAILED: delivery: handler runs: got 0, expected 1 (3 of 4 checks passed)"
    );
    assert!(!Summary {
        mode: Mode::Xavic,
        results: &[]
    }
    .passed());
    assert_eq!(CHECKS.len(), 4);
    assert_eq!(
        Value::Exit(0xFFFF_FFFF).to_string(),
        "#VMEXIT 0xffffffff (invalid)"
    );
}
