//! The hypervisor's `irq=avic` interrupt mode (x2AVIC; VF interrupts posted by the IOMMU): what a vCPU's backing
//! page starts as, which exits mean what, when a guest may run in this mode at all, and the
//! per-vCPU counters the hypervisor prints. The hardware glue is `kernel/src/hv/irq/avic.rs`
//! and `kernel/src/hv/irq/avic_tables.rs`; everything here is plain logic, tested on the host.
//!
//! The mode (APM vol. 2 §15.29):
//! * x2AVIC: the MSR permission map lets every x2APIC MSR (800h–8FFh) through to AVIC, which
//!   accelerates TPR, EOI of edge-triggered vectors, SELF_IPI and fixed IPIs to running vCPUs,
//!   serves reads from the backing page, traps SPIV/ESR/LVT/TMICT/TDCR writes and level EOIs
//!   (402h, after the write) and faults what it cannot serve (402h before it, e.g. TMCCT reads).
//! * IPIs it cannot deliver (INIT, SIPI, NMI, lowest priority, level) exit 401h cause 0 and are
//!   emulated; cause 1 (a target not running) has already set the IRR and asks for a wake-up.
//! * The LAPIC timer is the hypervisor's: its registers trap (the guest's core updates the
//!   emulated timer and publishes its next deadline), and the service core, when a published
//!   deadline has passed, posts the timer vector into the backing page and rings the doorbell of
//!   the vCPU's core. No host timer, no INTR exit.

use crate::backing::BackingPage;
use crate::exit::{reg, AccessKind, IncompleteIpi, IpiFailure, NoAccel};
use crate::selftest::Mode;
use apic::x2apic::{lvt, svr};
use apic::DeliveryMode;

pub use apic::reg::msr_of;
pub use apic::x2apic::x2apic_ldr;

/// The x2APIC version register: version 14h, max LVT entry 5 (six LVTs), as the hypervisor's
/// emulated x2APIC reports it.
pub const X2APIC_VERSION: u32 = apic::x2apic::VERSION;
/// Spurious-interrupt vector register after reset: vector FFh, APIC software-disabled.
pub const SPIV_RESET: u32 = svr::RESET;
/// LVT mask bit (bit 16), set in every LVT after reset.
pub const LVT_MASK: u32 = lvt::MASK;
/// The LVT registers of the backing page.
pub const LVTS: [u16; 6] = [
    reg::LVT_TIMER,
    reg::LVT_THERMAL,
    reg::LVT_PMC,
    reg::LVT_LINT0,
    reg::LVT_LINT1,
    reg::LVT_ERROR,
];
/// The guest-physical APIC base the VMCB's APIC BAR field names (x2AVIC does not use it).
pub const APIC_BAR: u64 = 0xFEE0_0000;
/// First and last x2APIC MSR (APM vol. 2 §16.11.1).
pub const X2APIC_MSRS: core::ops::RangeInclusive<u32> = apic::x2apic::MSRS;

/// The backing page of a vCPU with x2APIC ID `apic_id` as an x2APIC has it after reset: ID
/// (all 32 bits), version, LDR, SPIV FFh (software-disabled), every LVT masked.
pub fn x2apic_backing_page(apic_id: u32) -> BackingPage {
    let mut p = BackingPage::new(apic_id, true);
    p.write(reg::VERSION, X2APIC_VERSION);
    p.write(reg::LDR, x2apic_ldr(apic_id));
    p.write(reg::SPIV, SPIV_RESET);
    for lvt in LVTS {
        p.write(lvt, LVT_MASK);
    }
    p
}

/// Whether the MSR permission map intercepts `msr` in `irq=avic` mode (read, write). x2AVIC
/// serves every x2APIC MSR itself — accelerated, or as a 402h exit the hypervisor handles, or
/// #GP for what x2APIC mode forbids — so none of 800h–8FFh is intercepted (APM §15.29.10: an
/// intercept would take precedence and turn each access into an ordinary MSR exit). Other MSRs
/// (IA32_APIC_BASE among them) keep the hypervisor's usual policy and are not decided here.
pub fn intercepts_x2apic_msr(msr: u32) -> Option<(bool, bool)> {
    X2APIC_MSRS.contains(&msr).then_some((false, false))
}

/// What the hypervisor does with an `AVIC_NOACCEL` (402h) exit in x2AVIC mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoAccelAction {
    /// Trap-style write of a timer register (LVTT, TMICT, TDCR): the value is in the backing
    /// page; hand it to the emulated timer, which re-arms. RIP is already past the WRMSR.
    TimerWrite {
        /// The x2APIC MSR written.
        msr: u32,
    },
    /// Trap-style write of another register the hypervisor keeps a view of (SPIV, ESR, the
    /// other LVTs): hand the page's value to that view. RIP is already past the WRMSR.
    MirrorWrite {
        /// The x2APIC MSR written.
        msr: u32,
    },
    /// Trap-style EOI of a level-triggered vector: clear it from the backing page's ISR and
    /// forward the EOI to the virtual IOAPIC.
    LevelEoi {
        /// The vector (EXITINFO2).
        vector: u8,
    },
    /// Fault-style read of the timer's current count: emulate the RDMSR (RIP += 2).
    ReadTimerCurrent,
    /// Anything else: the access is not something an x2APIC allows here; inject #GP(0).
    InjectGp,
    /// A trap-style write of a register x2APIC mode has no use for (ID, LDR, DFR, RRR, ICR):
    /// nothing to do, count it.
    Ignore,
}

/// Decide what a 402h exit asks for (x2AVIC; Table 15-22 with the x2APIC access rules, which
/// the processor applies first and answers with #GP itself).
pub fn noaccel_action(n: &NoAccel) -> NoAccelAction {
    match (n.kind(), n.offset) {
        (AccessKind::Trap, reg::EOI) => NoAccelAction::LevelEoi {
            vector: n.vector as u8,
        },
        (AccessKind::Trap, reg::LVT_TIMER | reg::TIMER_INITIAL | reg::TIMER_DIVIDE) => {
            NoAccelAction::TimerWrite {
                msr: msr_of(n.offset),
            }
        }
        (
            AccessKind::Trap,
            reg::SPIV
            | reg::ESR
            | reg::LVT_THERMAL
            | reg::LVT_PMC
            | reg::LVT_LINT0
            | reg::LVT_LINT1
            | reg::LVT_ERROR,
        ) => NoAccelAction::MirrorWrite {
            msr: msr_of(n.offset),
        },
        (AccessKind::Trap, _) => NoAccelAction::Ignore,
        (AccessKind::Fault, reg::TIMER_CURRENT) if !n.write => NoAccelAction::ReadTimerCurrent,
        (AccessKind::Fault, _) => NoAccelAction::InjectGp,
    }
}

/// What the hypervisor does with an `AVIC_INCOMPLETE_IPI` (401h) exit. The exit is trap-like:
/// the ICR write is complete and RIP is past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiAction {
    /// Cause 0: a type AVIC does not deliver (INIT, SIPI, NMI, SMI, lowest priority, level):
    /// emulate the whole IPI from the ICR, as the other interrupt modes do.
    Emulate,
    /// Cause 1: AVIC set the vector in every target's IRR, but at least one target was not
    /// running: make the not-running targets notice (wake them / ring their doorbell).
    WakeTargets,
    /// Causes 2–4 and unknown ones: an IPI the guest should not have sent (invalid target,
    /// invalid backing page, illegal vector). Log and count; the guest goes on.
    GuestError(IpiFailure),
}

/// Decide what a 401h exit asks for.
pub const fn incomplete_ipi_action(ipi: &IncompleteIpi) -> IpiAction {
    match ipi.cause {
        IpiFailure::InvalidIntType => IpiAction::Emulate,
        IpiFailure::TargetNotRunning => IpiAction::WakeTargets,
        other => IpiAction::GuestError(other),
    }
}

/// Whether a 401h exit was about a fixed IPI (the kind AVIC should deliver without an exit to
/// a running target), for the statistics.
pub const fn is_fixed_ipi(ipi: &IncompleteIpi) -> bool {
    matches!(ipi.icr.delivery_mode(), DeliveryMode::Fixed)
}

/// The doorbell MSR value for host core `host_apic_id` in this mode, which is x2AVIC only
/// ([`admit`]): IDs up to FFFh, `None` above ([`crate::backing::max_host_apic_id`]).
pub const fn doorbell(host_apic_id: u32) -> Option<u64> {
    crate::backing::doorbell_value(Mode::X2avic, host_apic_id)
}

/// A published timer deadline meaning "nothing to wait for" (stopped, masked, one-shot done).
pub const NO_DEADLINE: u64 = u64::MAX;

/// The word a vCPU's next timer deadline is published as for the service core (hypervisor
/// nanoseconds; [`NO_DEADLINE`] for none).
pub const fn deadline_word(deadline: Option<u64>) -> u64 {
    match deadline {
        Some(d) if d < NO_DEADLINE => d,
        _ => NO_DEADLINE,
    }
}

/// Whether the service core must settle a vCPU's timer at `now`, given its published word.
pub const fn timer_due(word: u64, now: u64) -> bool {
    word != NO_DEADLINE && now >= word
}

/// Why a guest with `irq=avic` does not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// CPUID 8000_000A EDX bit 13 is clear.
    NoAvic,
    /// The self-test passed in xAVIC mode only: this increment needs x2AVIC.
    XavicOnly,
    /// The self-test did not pass (or did not run).
    SelfTestFailed,
    /// `vf=` with `irq=avic`: the VF's interrupts need an IOMMU in guest virtual APIC (GA) mode
    /// to be posted, and there is none.
    VfWithoutGa,
    /// A core of the guest has a host APIC ID the x2AVIC doorbell cannot name (above FFFh).
    ApicIdTooLarge(u32),
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoAvic => f.write_str(
                "irq=avic needs SVM AVIC (CPUID 8000_000A EDX bit 13), which this CPU lacks",
            ),
            Self::XavicOnly => f.write_str(
                "irq=avic needs x2AVIC for now (CPUID 8000_000A EDX bit 18); this CPU has xAVIC only",
            ),
            Self::SelfTestFailed => f.write_str("irq=avic: the AVIC self-test did not pass"),
            Self::VfWithoutGa => f.write_str(
                "irq=avic with vf= needs an AMD-Vi IOMMU in guest virtual APIC mode (EFR GASup and GAMSup 001b) to post the VF's interrupts; this one has none",
            ),
            Self::ApicIdTooLarge(id) => write!(
                f,
                "irq=avic: host APIC id {id:#x} is above FFFh, the highest the x2AVIC doorbell and physical APIC ID table can name"
            ),
        }
    }
}

/// What the boot-time self-test found, as far as admitting a guest is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// The CPU has no AVIC (the self-test was skipped).
    Unsupported,
    /// Every check passed in this mode.
    Passed(Mode),
    /// A check failed, or the self-test did not run.
    NotPassed,
}

/// What the IOMMU offers a guest's VF, as far as `irq=avic` is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfPosting {
    /// The guest has no VF.
    NoVf,
    /// The guest has a VF and the IOMMU runs in guest virtual APIC (GA) mode: its MSIs are
    /// posted into the backing pages.
    Ga,
    /// The guest has a VF but there is no IOMMU in GA mode.
    NoGa,
}

/// Whether a guest may run with `irq=avic`: x2AVIC must have passed the self-test, a VF needs
/// the IOMMU's GA mode, and every host APIC ID of its cores must fit the doorbell (and the
/// IRTE's Destination).
pub fn admit(
    selftest: SelfTest,
    vf: VfPosting,
    core_apic_ids: impl IntoIterator<Item = u32>,
) -> Result<(), Refusal> {
    match selftest {
        SelfTest::Unsupported => return Err(Refusal::NoAvic),
        SelfTest::Passed(Mode::Xavic) => return Err(Refusal::XavicOnly),
        SelfTest::NotPassed => return Err(Refusal::SelfTestFailed),
        SelfTest::Passed(Mode::X2avic) => {}
    }
    if vf == VfPosting::NoGa {
        return Err(Refusal::VfWithoutGa);
    }
    if let Some(id) = core_apic_ids.into_iter().find(|&id| doorbell(id).is_none()) {
        return Err(Refusal::ApicIdTooLarge(id));
    }
    Ok(())
}

/// What one vCPU in `irq=avic` mode counted, printed with its exit table:
///
/// ```text
/// avic: exits eoi 0, timer 31, apic 7, tmcct 3, gp 0, fixed-ipi 0, start-ipi 2, other-ipi 0, ipi-errors 0; posted timer 250, device 12, doorbells 12, ga-log 0
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AvicCounts {
    /// 402h level-triggered EOIs.
    pub eoi: u64,
    /// 402h timer-register writes (LVTT, TMICT, TDCR).
    pub timer: u64,
    /// 402h other trapped writes (SPIV, ESR, LVTs) and ignored traps.
    pub apic: u64,
    /// 402h TMCCT reads.
    pub tmcct: u64,
    /// 402h accesses answered with #GP.
    pub gp: u64,
    /// 401h exits for fixed IPIs (a target not running).
    pub fixed_ipi: u64,
    /// 401h exits for INIT / start-up IPIs.
    pub start_ipi: u64,
    /// 401h exits for other emulated IPIs (NMI, lowest priority, level).
    pub other_ipi: u64,
    /// 401h exits for invalid IPIs (causes 2–4).
    pub ipi_errors: u64,
    /// Timer vectors posted into this vCPU's IRR (by the service core at the deadline, or by
    /// the guest's core when a trapped timer write settled an expiry).
    pub posted_timer: u64,
    /// Device interrupts (virtual IOAPIC) set in this vCPU's IRR.
    pub posted_device: u64,
    /// Doorbells rung for this vCPU's core.
    pub doorbells: u64,
    /// GA log entries naming this vCPU: a VF interrupt the IOMMU posted while it was not
    /// running (the IOMMU set the IRR itself; the entry only wakes the vCPU).
    pub ga_log: u64,
}

impl AvicCounts {
    /// Count a 402h exit by what it asked for.
    pub fn record_noaccel(&mut self, action: NoAccelAction) {
        match action {
            NoAccelAction::LevelEoi { .. } => self.eoi += 1,
            NoAccelAction::TimerWrite { .. } => self.timer += 1,
            NoAccelAction::MirrorWrite { .. } | NoAccelAction::Ignore => self.apic += 1,
            NoAccelAction::ReadTimerCurrent => self.tmcct += 1,
            NoAccelAction::InjectGp => self.gp += 1,
        }
    }

    /// Count a 401h exit by its cause and ICR.
    pub fn record_incomplete_ipi(&mut self, ipi: &IncompleteIpi) {
        match incomplete_ipi_action(ipi) {
            IpiAction::GuestError(_) => self.ipi_errors += 1,
            _ if is_fixed_ipi(ipi) => self.fixed_ipi += 1,
            _ if matches!(
                ipi.icr.delivery_mode(),
                DeliveryMode::Init | DeliveryMode::StartUp
            ) =>
            {
                self.start_ipi += 1
            }
            _ => self.other_ipi += 1,
        }
    }
}

impl core::fmt::Display for AvicCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "avic: exits eoi {}, timer {}, apic {}, tmcct {}, gp {}, fixed-ipi {}, start-ipi {}, other-ipi {}, ipi-errors {}; posted timer {}, device {}, doorbells {}, ga-log {}",
            self.eoi,
            self.timer,
            self.apic,
            self.tmcct,
            self.gp,
            self.fixed_ipi,
            self.start_ipi,
            self.other_ipi,
            self.ipi_errors,
            self.posted_timer,
            self.posted_device,
            self.doorbells,
            self.ga_log
        )
    }
}

#[cfg(test)]
#[path = "mode_tests.rs"]
mod tests;
