use super::*;
use crate::exit::Icr;

#[test]
fn backing_page_is_an_x2apic_after_reset() {
    let p = x2apic_backing_page(0x13);
    assert_eq!(p.read(reg::ID), 0x13);
    assert_eq!(p.read(reg::VERSION), 0x0005_0014);
    // Cluster 1, member bit 3.
    assert_eq!(p.read(reg::LDR), 0x0001_0008);
    assert_eq!(p.read(reg::SPIV), 0xFF);
    for lvt in LVTS {
        assert_eq!(p.read(lvt), 1 << 16, "LVT {lvt:#x} masked");
    }
    assert_eq!(p.highest_irr(), None);
    assert_eq!(p.highest_isr(), None);
    assert_eq!(p.read(reg::TPR), 0);
    assert_eq!(x2apic_ldr(0), 1);
    assert_eq!(x2apic_ldr(1), 2);
    assert_eq!(x2apic_ldr(0x21), 0x0002_0002);
}

#[test]
fn msr_numbers() {
    assert_eq!(msr_of(reg::EOI), 0x80B);
    assert_eq!(msr_of(reg::TIMER_INITIAL), 0x838);
    assert_eq!(msr_of(reg::TIMER_CURRENT), 0x839);
    assert_eq!(msr_of(reg::TIMER_DIVIDE), 0x83E);
    assert_eq!(msr_of(reg::LVT_TIMER), 0x832);
    assert_eq!(msr_of(reg::SPIV), 0x80F);
    assert_eq!(msr_of(reg::ICR_LOW), 0x830);
}

#[test]
fn no_x2apic_msr_is_intercepted() {
    for msr in 0x800..=0x8FF {
        assert_eq!(intercepts_x2apic_msr(msr), Some((false, false)));
    }
    // IA32_APIC_BASE and the rest are not this policy's.
    assert_eq!(intercepts_x2apic_msr(0x1B), None);
    assert_eq!(intercepts_x2apic_msr(0x7FF), None);
    assert_eq!(intercepts_x2apic_msr(0x900), None);
}

fn write(offset: u16) -> NoAccel {
    NoAccel::decode((1 << 32) | u64::from(offset), 0)
}

#[test]
fn noaccel_timer_writes_arm_the_timer() {
    for (offset, msr) in [(0x320, 0x832), (0x380, 0x838), (0x3E0, 0x83E)] {
        assert_eq!(
            noaccel_action(&write(offset)),
            NoAccelAction::TimerWrite { msr }
        );
    }
}

#[test]
fn noaccel_other_traps_update_the_view() {
    for (offset, msr) in [
        (0x0F0, 0x80F),
        (0x280, 0x828),
        (0x330, 0x833),
        (0x340, 0x834),
        (0x350, 0x835),
        (0x360, 0x836),
        (0x370, 0x837),
    ] {
        assert_eq!(
            noaccel_action(&write(offset)),
            NoAccelAction::MirrorWrite { msr }
        );
    }
    // Trap-style registers x2APIC mode has no use for.
    for offset in [0x020, 0x0C0, 0x0D0, 0x0E0, 0x300] {
        assert_eq!(noaccel_action(&write(offset)), NoAccelAction::Ignore);
    }
}

#[test]
fn noaccel_level_eoi_and_faults() {
    let eoi = NoAccel::decode((1 << 32) | 0x0B0, 0x31);
    assert_eq!(
        noaccel_action(&eoi),
        NoAccelAction::LevelEoi { vector: 0x31 }
    );
    // TMCCT read: fault, emulated.
    assert_eq!(
        noaccel_action(&NoAccel::decode(0x390, 0)),
        NoAccelAction::ReadTimerCurrent
    );
    // A TMCCT write, any other fault read, a write to version or CMCI: #GP.
    assert_eq!(noaccel_action(&write(0x390)), NoAccelAction::InjectGp);
    assert_eq!(
        noaccel_action(&NoAccel::decode(0x100, 0)),
        NoAccelAction::InjectGp
    );
    assert_eq!(noaccel_action(&write(0x030)), NoAccelAction::InjectGp);
    assert_eq!(noaccel_action(&write(0x2F0)), NoAccelAction::InjectGp);
}

fn ipi(icr: u64, cause: u64, index: u64) -> IncompleteIpi {
    IncompleteIpi::decode(icr, (cause << 32) | index)
}

#[test]
fn incomplete_ipi_actions() {
    // INIT (level assert) to APIC 1: emulate.
    let init = ipi((1 << 32) | (5 << 8) | (1 << 14) | (1 << 15), 0, 1);
    assert_eq!(incomplete_ipi_action(&init), IpiAction::Emulate);
    // Fixed IPI, vector FDh, to a not-running target 1: wake it.
    let fixed = ipi((1 << 32) | 0xFD, 1, 1);
    assert_eq!(incomplete_ipi_action(&fixed), IpiAction::WakeTargets);
    assert!(is_fixed_ipi(&fixed));
    assert!(!is_fixed_ipi(&init));
    for cause in [2, 3, 4, 7] {
        assert_eq!(
            incomplete_ipi_action(&ipi(0xFD, cause, 0)),
            IpiAction::GuestError(IpiFailure::from_raw(cause as u32))
        );
    }
}

#[test]
fn counts_by_kind_and_their_line() {
    let mut c = AvicCounts::default();
    c.record_incomplete_ipi(&ipi((1 << 32) | (5 << 8) | (1 << 14), 0, 1));
    c.record_incomplete_ipi(&ipi((1 << 32) | (6 << 8) | 0x9A, 0, 1));
    c.record_incomplete_ipi(&ipi((1 << 32) | 0xFD, 1, 1));
    c.record_incomplete_ipi(&ipi((1 << 32) | (4 << 8), 0, 1));
    c.record_incomplete_ipi(&ipi(0x05, 4, 0));
    c.record_noaccel(noaccel_action(&write(0x380)));
    c.record_noaccel(noaccel_action(&write(0x0F0)));
    c.record_noaccel(noaccel_action(&NoAccel::decode((1 << 32) | 0x0B0, 0x31)));
    c.record_noaccel(noaccel_action(&NoAccel::decode(0x390, 0)));
    c.record_noaccel(noaccel_action(&write(0x030)));
    assert_eq!(
        (c.start_ipi, c.fixed_ipi, c.other_ipi, c.ipi_errors),
        (2, 1, 1, 1)
    );
    assert_eq!((c.timer, c.apic, c.eoi, c.tmcct, c.gp), (1, 1, 1, 1, 1));
    c.posted_timer = 5;
    c.ga_log = 3;
    assert_eq!(
        c.to_string(),
        "avic: exits eoi 1, timer 1, apic 1, tmcct 1, gp 1, fixed-ipi 1, start-ipi 2, other-ipi 1, ipi-errors 1; posted timer 5, device 0, doorbells 0, ga-log 3"
    );
    assert_eq!(Icr(0xFD).vector(), 0xFD);
}

#[test]
fn admission() {
    let ok = [1u32, 2];
    use VfPosting::{Ga, NoGa, NoVf};
    assert_eq!(admit(SelfTest::Passed(Mode::X2avic), NoVf, ok), Ok(()));
    assert_eq!(admit(SelfTest::Passed(Mode::X2avic), Ga, ok), Ok(()));
    assert_eq!(admit(SelfTest::Unsupported, NoVf, ok), Err(Refusal::NoAvic));
    assert_eq!(
        admit(SelfTest::Passed(Mode::Xavic), NoVf, ok),
        Err(Refusal::XavicOnly)
    );
    assert_eq!(
        admit(SelfTest::NotPassed, NoVf, ok),
        Err(Refusal::SelfTestFailed)
    );
    assert_eq!(
        admit(SelfTest::Passed(Mode::X2avic), NoGa, ok),
        Err(Refusal::VfWithoutGa)
    );
    // The self-test verdict comes first: GA does not make up for a failed or xAVIC-only test.
    assert_eq!(
        admit(SelfTest::NotPassed, Ga, ok),
        Err(Refusal::SelfTestFailed)
    );
    assert_eq!(
        admit(SelfTest::Passed(Mode::Xavic), Ga, ok),
        Err(Refusal::XavicOnly)
    );
    // Two-socket EPYCs number cores above FFh: x2AVIC names them up to FFFh.
    assert_eq!(
        admit(SelfTest::Passed(Mode::X2avic), Ga, [1, 0x100, 0x1F1]),
        Ok(())
    );
    assert_eq!(
        admit(SelfTest::Passed(Mode::X2avic), Ga, [1, 0x100, 0x1000]),
        Err(Refusal::ApicIdTooLarge(0x1000))
    );
    assert!(Refusal::ApicIdTooLarge(0x1000)
        .to_string()
        .contains("0x1000 is above FFFh"));
    assert!(Refusal::XavicOnly.to_string().contains("needs x2AVIC"));
    assert!(Refusal::NoAvic.to_string().contains("EDX bit 13"));
    assert!(Refusal::VfWithoutGa.to_string().contains("vf="));
    assert!(Refusal::VfWithoutGa.to_string().contains("GAMSup"));
}

#[test]
fn doorbell_values() {
    assert_eq!(doorbell(0), Some(0));
    assert_eq!(doorbell(0xFF), Some(0xFF));
    assert_eq!(doorbell(0x100), Some(0x100));
    assert_eq!(doorbell(0xFFF), Some(0xFFF));
    assert_eq!(doorbell(0x1000), None);
}

#[test]
fn published_timer_deadlines() {
    assert_eq!(deadline_word(None), NO_DEADLINE);
    assert_eq!(deadline_word(Some(5)), 5);
    assert_eq!(deadline_word(Some(u64::MAX)), NO_DEADLINE);
    assert!(!timer_due(deadline_word(Some(100)), 99));
    assert!(timer_due(deadline_word(Some(100)), 100));
    assert!(timer_due(deadline_word(Some(100)), 1000));
    assert!(!timer_due(NO_DEADLINE, u64::MAX), "none is never due");
    assert!(timer_due(0, 0));
}
