//! The local APIC in x2APIC mode, through its MSRs (AMD APM vol. 2, 16.11 "x2APIC").
//!
//! Our own MSR accesses rather than the `x2apic` crate's (0.5.1, tried for issue #11; the
//! compile errors are in docs/design.md): its `LocalApic::enable` writes 0 to LINT0/LINT1
//! (unmasked, vector 0), unmasks a periodic timer and sets x2APIC mode without EN first; without
//! `enable` it cannot set the timer or spurious vector, and it has no IRR read; its `LocalApic` is
//! neither `Send` nor `Sync` (one per core, built with a CPUID); and it brings bitflags 1 and
//! raw-cpuid 10 beside our bitflags 2 and raw-cpuid 11.

use x86_64::registers::model_specific::Msr;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
// The register map is defined once, in the `apic` crate.
use didvisor::irqchip::x2apic::{
    MSR_EOI as X2APIC_EOI, MSR_ICR as X2APIC_ICR, MSR_ID as X2APIC_ID, MSR_IRR0 as X2APIC_IRR0,
    MSR_ISR0 as X2APIC_ISR0, MSR_LVT_TIMER as X2APIC_LVT_TIMER, MSR_SVR as X2APIC_SVR,
    MSR_TIMER_CURRENT as X2APIC_TIMER_CURRENT, MSR_TIMER_DIVIDE as X2APIC_TIMER_DIVIDE,
    MSR_TIMER_INITIAL as X2APIC_TIMER_INITIAL, MSR_TPR as X2APIC_TPR,
};
/// LVT mask bit (APM vol. 2, 16.4.1).
const LVT_MASKED: u64 = 1 << 16;
/// TDCR value for "divide by 1" (APM vol. 2, 16.4.1, Figure 16-11).
const TDCR_DIVIDE_BY_1: u64 = 0b1011;

/// ICR delivery modes and flags (APM vol. 2, 16.5).
const ICR_INIT: u64 = 0b101 << 8;
const ICR_STARTUP: u64 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u64 = 1 << 14;

/// Whether this CPU has an x2APIC (CPUID 1 ECX bit 21).
pub fn supported() -> bool {
    raw_cpuid::CpuId::new()
        .get_feature_info()
        .is_some_and(|f| f.has_x2apic())
}

/// Switches this core's local APIC to x2APIC mode and software-enables it (spurious vector 0xff).
pub fn enable() {
    let mut base = Msr::new(IA32_APIC_BASE);
    // SAFETY: setting EN and then EXTD is the architected xAPIC -> x2APIC transition; the caller
    // checked `supported()`.
    unsafe {
        let v = base.read();
        base.write(v | APIC_BASE_ENABLE);
        base.write(v | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        Msr::new(X2APIC_SVR).write(0x1ff);
    }
}

/// Masks every input of both legacy 8259 PICs. Firmware leaves at least the PIT's IRQ 0 unmasked
/// and the boot core's LINT0 in ExtINT mode; the hypervisor uses only the local APICs (guests get
/// a virtual PIC), so a tick arriving there would otherwise reach vector 8 of the host IDT.
pub fn mask_legacy_pic() {
    // SAFETY: writing OCW1 (the interrupt mask) of the master (0x21) and slave (0xa1) 8259 only
    // masks interrupts; nothing in the hypervisor depends on them.
    unsafe {
        x86_64::instructions::port::Port::<u8>::new(0x21).write(0xff);
        x86_64::instructions::port::Port::<u8>::new(0xa1).write(0xff);
    }
}

/// This core's x2APIC id.
pub fn id() -> u32 {
    // SAFETY: reading the x2APIC ID register; only called after `enable`.
    unsafe { Msr::new(X2APIC_ID).read() as u32 }
}

/// The x2APIC id if this core is in x2APIC mode, for messages that may come before `enable`.
pub fn id_or_unknown() -> i64 {
    // SAFETY: reading IA32_APIC_BASE is always allowed on x86-64.
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() };
    if base & APIC_BASE_X2APIC != 0 {
        i64::from(id())
    } else {
        -1
    }
}

fn write_icr(value: u64) {
    // SAFETY: a write to the x2APIC ICR sends the IPI it describes; callers choose targets that are
    // ours (cores being started).
    unsafe { Msr::new(X2APIC_ICR).write(value) };
}

pub fn send_init(apic_id: u32) {
    write_icr((u64::from(apic_id) << 32) | ICR_INIT | ICR_LEVEL_ASSERT);
}

pub fn send_startup(apic_id: u32, page: u8) {
    write_icr((u64::from(apic_id) << 32) | ICR_STARTUP | ICR_LEVEL_ASSERT | u64::from(page));
}

/// Sends a fixed IPI with `vector` to the core with x2APIC id `apic_id`.
pub fn send_fixed(apic_id: u32, vector: u8) {
    write_icr((u64::from(apic_id) << 32) | u64::from(vector));
}

/// Sends an NMI to the core with x2APIC id `apic_id` (how the hypervisor regains a guest core:
/// NMIs are intercepted while a guest runs).
pub fn send_nmi(apic_id: u32) {
    write_icr((u64::from(apic_id) << 32) | (0b100 << 8));
}

/// Whether `vector` is pending in this core's IRR (x2APIC IRR MSRs 820h–827h, 32 vectors each),
/// for a core that runs with interrupts off and looks before opening a window.
pub fn irr_pending(vector: u8) -> bool {
    let msr = 0x820 + u32::from(vector / 32);
    // SAFETY: the IRR MSRs are read-only x2APIC registers; reading has no side effects.
    let word = unsafe { Msr::new(msr).read() };
    word & (1 << (vector % 32)) != 0
}

/// Whether any bit is set in the eight 32-bit words of a vector set (ISR or IRR) at `first`.
fn any_vector(first: u32) -> bool {
    // SAFETY: the ISR and IRR MSRs are read-only x2APIC registers; reading has no side effects.
    (0..8).any(|i| unsafe { Msr::new(first + i).read() } != 0)
}

/// After a direct-mode guest's run, before the next boot of the same guest on this core: the
/// interrupts its handlers left in service are retired (an EOI each, at most 256) and TPR is 0,
/// as after INIT. Vectors still pending in the IRR stay: only delivery clears an IRR bit, and the
/// host IDT has no gates for the guest's vectors; the new boot takes them once it enables
/// interrupts (a guest copes with an interrupt it did not expect, as after any spurious one).
/// Returns how many were left pending, for the report.
pub fn flush_guest_vectors() -> u32 {
    // SAFETY: this core's own task priority; no guest runs on it now.
    unsafe { Msr::new(X2APIC_TPR).write(0) };
    for _ in 0..256 {
        if !any_vector(X2APIC_ISR0) {
            break;
        }
        eoi();
    }
    // SAFETY: the IRR MSRs are read-only x2APIC registers; reading has no side effects.
    (0..8)
        .map(|i| unsafe { Msr::new(X2APIC_IRR0 + i).read() }.count_ones())
        .sum()
}

/// Signals the end of the interrupt being handled on this core.
pub fn eoi() {
    // SAFETY: writing 0 to the x2APIC EOI register ends the in-service interrupt of this core.
    unsafe { Msr::new(X2APIC_EOI).write(0) };
}

/// Measures this core's APIC timer against the TSC: timer ticks (divide by 1) per millisecond.
pub fn calibrate_timer(tsc_per_ms: u64) -> u64 {
    // SAFETY: programming this core's own APIC timer, masked, so it raises no interrupt.
    unsafe {
        Msr::new(X2APIC_LVT_TIMER).write(LVT_MASKED);
        Msr::new(X2APIC_TIMER_DIVIDE).write(TDCR_DIVIDE_BY_1);
        Msr::new(X2APIC_TIMER_INITIAL).write(u64::from(u32::MAX));
    }
    let start = crate::hv::host::timer::rdtsc();
    while crate::hv::host::timer::rdtsc() - start < tsc_per_ms {
        core::hint::spin_loop();
    }
    // SAFETY: reading and stopping this core's own APIC timer.
    unsafe {
        let left = Msr::new(X2APIC_TIMER_CURRENT).read();
        Msr::new(X2APIC_TIMER_INITIAL).write(0);
        u64::from(u32::MAX) - left
    }
}

/// Arms this core's APIC timer to raise `vector` once after `ticks` timer ticks (divide by 1); 0 stops it.
pub fn arm_timer(vector: u8, ticks: u32) {
    // SAFETY: programming this core's own APIC timer; the vector has a handler in the host IDT.
    unsafe {
        Msr::new(X2APIC_TIMER_DIVIDE).write(TDCR_DIVIDE_BY_1);
        Msr::new(X2APIC_LVT_TIMER).write(u64::from(vector));
        Msr::new(X2APIC_TIMER_INITIAL).write(u64::from(ticks));
    }
}

/// Puts this core's APIC back the way the hypervisor keeps it after a direct-mode guest had it:
/// timer stopped and masked, software-enabled with the spurious vector 0xff.
pub fn quiesce() {
    // SAFETY: only this core's own APIC is touched, and no guest runs on it any more.
    unsafe {
        Msr::new(X2APIC_TIMER_INITIAL).write(0);
        Msr::new(X2APIC_LVT_TIMER).write(LVT_MASKED);
        Msr::new(X2APIC_SVR).write(0x1ff);
    }
}
