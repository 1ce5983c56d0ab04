//! The boot-time AVIC self-test: what a throw-away AVIC guest must observe, and the judge of
//! what the hypervisor saw (APM vol. 2 rev. 3.44 §15.29; PDF page = printed page + 62).
//!
//! The hypervisor runs one tiny real-mode guest, vCPU 0 of a two-entry physical APIC-ID table,
//! in four phases, each started at its own entry and ended by VMMCALL (or by the exit under
//! test). The four checks:
//!
//! | check | the guest does | APM says (printed page) |
//! |---|---|---|
//! | [`Check::SelfIpi`] | IF=0, self-IPI ([`SELF_VECTOR`]; x2AVIC: WRMSR SELF_IPI 83Fh, xAVIC: ICR low with the self shorthand), reads its IRR | IRR set in the backing page, no #VMEXIT (§15.29.6.1 step 1, p. 576; §15.29.10, p. 583) |
//! | [`Check::Delivery`] | STI, waits (bounded), the handler reads ISR and writes EOI | delivered through the IDT/IVT, in ISR while handled, EOI clears it, no #VMEXIT (§15.29.3.1 "EOI", p. 569; §15.29.8.3, p. 579) |
//! | [`Check::IncompleteIpi`] | fixed IPI ([`IPI_VECTOR`]) to APIC ID 1: Valid, IsRunning=0 | target's IRR set, #VMEXIT 401h, EXITINFO1 = ICR, EXITINFO2 = cause 1 \<\< 32 \| index (§15.29.6.1 steps 5–6, p. 577; §15.29.9.1, pp. 580–581) |
//! | [`Check::NoAccel`] | writes TMICT ([`TMICT_VALUE`]) | trap-style #VMEXIT 402h, EXITINFO1 = 380h \| 1 \<\< 32, RIP past the write, value in the page (Table 15-22, p. 567; §15.29.9.2, p. 582) |
//!
//! The IPI expectations come from the software model ([`crate::model::deliver_ipi`]) run on
//! the table the hypervisor installed; the trap/fault expectation from [`NoAccel::kind`].
//! Everything the guest reports is read from [`RESULTS_GPA`] (offsets in [`report`]).

use core::fmt;

use svm::exit::ExitCode;
use svm::Hpa;

use crate::backing::vector_position;
use crate::exit::{reg, AccessKind, Icr, NoAccel};
use crate::model::{deliver_ipi, IpiOutcome};
use crate::table::PhysicalIdEntry;
use crate::BackingPage;

/// Which AVIC front end the test guest uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// x2AVIC: the guest's APIC is the x2APIC MSRs 800h–8FFh (§15.29.10).
    X2avic,
    /// xAVIC: the guest's APIC is the MMIO page at the VMCB's APIC BAR (§15.29.3.1).
    Xavic,
}

impl Mode {
    /// The mode to test on a CPU with these CPUID 8000_000A EDX bits: x2AVIC where there is
    /// one (what `irq=avic` will use there), else xAVIC; `None` without AVIC.
    pub const fn for_cpu(avic: bool, x2avic: bool) -> Option<Self> {
        match (avic, x2avic) {
            (true, true) => Some(Self::X2avic),
            (true, false) => Some(Self::Xavic),
            _ => None,
        }
    }

    /// Whether the guest APIC is in x2APIC mode.
    pub const fn x2apic(self) -> bool {
        matches!(self, Self::X2avic)
    }

    /// The name printed in the self-test lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::X2avic => "x2AVIC",
            Self::Xavic => "xAVIC",
        }
    }
}

/// The self-IPI vector (check 1 and 2). Its ISR/IRR bits sit in the third 32-bit word.
pub const SELF_VECTOR: u8 = 0x51;
/// The vector of the IPI to the not-running vCPU (check 3).
pub const IPI_VECTOR: u8 = 0x62;
/// Physical APIC-ID table index (= guest APIC ID) of the test vCPU.
pub const SENDER: u16 = 0;
/// Index of the second vCPU: Valid, IsRunning=0.
pub const TARGET: u16 = 1;
/// The physical table's max index.
pub const MAX_INDEX: u16 = 1;
/// The value the guest writes to TMICT (check 4).
pub const TMICT_VALUE: u32 = 0x0012_3456;
/// How many times the guest polls for the self-IPI's handler before it gives up (check 2).
pub const WAIT_LOOPS: u32 = 0x0010_0000;
/// Guest-physical address of the guest's result words.
pub const RESULTS_GPA: u16 = 0x0800;

/// Byte offsets of the guest's 32-bit result words from [`RESULTS_GPA`].
pub mod report {
    /// Check 1: the IRR word holding [`super::SELF_VECTOR`], read by the guest before STI.
    pub const IRR_BEFORE_STI: u16 = 0x00;
    /// Check 2: how many times the handler ran.
    pub const HANDLED: u16 = 0x04;
    /// Check 2: the ISR word, read inside the handler before EOI.
    pub const ISR_IN_HANDLER: u16 = 0x08;
    /// Check 2: the IRR word, read inside the handler.
    pub const IRR_IN_HANDLER: u16 = 0x0C;
    /// Check 2: the ISR word after the handler returned.
    pub const ISR_AFTER_EOI: u16 = 0x10;
    /// Check 2: the IRR word after the handler returned.
    pub const IRR_AFTER_EOI: u16 = 0x14;
    /// Check 2: what was left of [`super::WAIT_LOOPS`] when the guest stopped waiting.
    pub const LOOPS_LEFT: u16 = 0x18;
    /// Bytes the results take.
    pub const SIZE: usize = 0x1C;
}

/// Byte offset in the APIC page of the 32-bit word holding `vector` in the 256-bit register
/// at `base` (ISR 100h, IRR 200h), and the vector's bit in it.
pub const fn word_of(base: u16, vector: u8) -> (u16, u32) {
    let (offset, bit) = vector_position(base, vector);
    (offset as u16, bit)
}

/// The x2APIC MSR of the APIC register at byte `offset` (800h + offset / 16, §15.29.10).
pub use apic::reg::msr_of as x2apic_msr;

/// The ICR equivalent of the self-IPI of check 1 (fixed, edge, self shorthand). SELF_IPI
/// (83Fh) "is handled the same way as ICR MSR acceleration" (§15.29.10, p. 583).
pub const fn self_ipi_icr() -> Icr {
    Icr((1 << 18) | SELF_VECTOR as u64)
}

/// The ICR of check 3: fixed, edge, physical destination [`TARGET`] (x2APIC: ICR bits 63:32;
/// xAPIC: ICRH bits 31:24, i.e. ICR bits 63:56).
pub const fn target_icr(mode: Mode) -> Icr {
    let shift = if mode.x2apic() { 32 } else { 56 };
    Icr(((TARGET as u64) << shift) | IPI_VECTOR as u64)
}

/// The physical APIC-ID table of the test: the test vCPU running on host core `host_apic_id`,
/// then a valid vCPU that is not running (§15.29.5.2, Table 15-23, p. 572).
pub const fn physical_table(own: Hpa, target: Hpa, host_apic_id: u32) -> [PhysicalIdEntry; 2] {
    [
        PhysicalIdEntry::new(own, host_apic_id).with_running(true),
        PhysicalIdEntry::new(target, host_apic_id),
    ]
}

/// A backing page as a guest OS leaves it once its APIC is up: ID and version
/// ([`BackingPage::new`]), DFR flat, SPIV software-enabled with spurious vector FFh, every LVT
/// masked.
pub fn backing_page(apic_id: u32, mode: Mode) -> BackingPage {
    let mut p = BackingPage::new(apic_id, mode.x2apic());
    if !mode.x2apic() {
        p.write(reg::DFR, 0xFFFF_FFFF);
    }
    p.write(reg::SPIV, 0x1FF);
    for lvt in crate::mode::LVTS {
        p.write(lvt, crate::mode::LVT_MASK);
    }
    p
}

/// One #VMEXIT as the hypervisor saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// EXITCODE.
    pub code: u64,
    /// EXITINFO1.
    pub info1: u64,
    /// EXITINFO2.
    pub info2: u64,
    /// Guest RIP after the exit.
    pub rip: u64,
}

/// The guest's result words (see [`report`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestReport {
    /// [`report::IRR_BEFORE_STI`].
    pub irr_before_sti: u32,
    /// [`report::HANDLED`].
    pub handled: u32,
    /// [`report::ISR_IN_HANDLER`].
    pub isr_in_handler: u32,
    /// [`report::IRR_IN_HANDLER`].
    pub irr_in_handler: u32,
    /// [`report::ISR_AFTER_EOI`].
    pub isr_after_eoi: u32,
    /// [`report::IRR_AFTER_EOI`].
    pub irr_after_eoi: u32,
    /// [`report::LOOPS_LEFT`].
    pub loops_left: u32,
}

impl GuestReport {
    /// Decode the result bytes (little-endian words at the [`report`] offsets).
    pub fn from_bytes(b: &[u8; report::SIZE]) -> Self {
        let w = |o: u16| {
            let o = o as usize;
            u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
        };
        Self {
            irr_before_sti: w(report::IRR_BEFORE_STI),
            handled: w(report::HANDLED),
            isr_in_handler: w(report::ISR_IN_HANDLER),
            irr_in_handler: w(report::IRR_IN_HANDLER),
            isr_after_eoi: w(report::ISR_AFTER_EOI),
            irr_after_eoi: w(report::IRR_AFTER_EOI),
            loops_left: w(report::LOOPS_LEFT),
        }
    }
}

/// The four checks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Self-IPI with IF=0 lands in IRR without an exit.
    SelfIpi,
    /// After STI it is delivered, in ISR while handled, cleared by EOI, without an exit.
    Delivery,
    /// IPI to a valid, not-running vCPU: its IRR, then #VMEXIT 401h "target not running".
    IncompleteIpi,
    /// TMICT write: trap-style #VMEXIT 402h.
    NoAccel,
}

/// Every check, in order.
pub const CHECKS: [Check; 4] = [
    Check::SelfIpi,
    Check::Delivery,
    Check::IncompleteIpi,
    Check::NoAccel,
];

impl Check {
    /// Short name, used in the lines and in a failure.
    pub const fn name(self) -> &'static str {
        match self {
            Self::SelfIpi => "self-IPI",
            Self::Delivery => "delivery",
            Self::IncompleteIpi => "IPI to a not-running vCPU",
            Self::NoAccel => "TMICT write",
        }
    }

    /// What passing means, for the per-check line.
    pub const fn claim(self) -> &'static str {
        match self {
            Self::SelfIpi => "with IF=0 the vector is in the backing page IRR, no #VMEXIT",
            Self::Delivery => {
                "after STI taken through the guest IVT, in ISR in the handler, EOI clears it, no #VMEXIT"
            }
            Self::IncompleteIpi => {
                "target IRR set, #VMEXIT 401h target not running, EXITINFO1 ICR, EXITINFO2 index"
            }
            Self::NoAccel => {
                "#VMEXIT 402h trap, EXITINFO1 380h|write, RIP past the write, value in the page"
            }
        }
    }
}

/// A value in a failure line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// An exit code, printed with its name.
    Exit(u64),
    /// A number, printed in hex.
    Hex(u64),
    /// A count, printed in decimal.
    Count(u64),
    /// A bit or condition.
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exit(code) => {
                write!(f, "#VMEXIT {code:#x} ({})", ExitCode::from_raw(code).name())
            }
            Self::Hex(v) => write!(f, "{v:#x}"),
            Self::Count(v) => write!(f, "{v}"),
            Self::Bool(b) => f.write_str(if b { "set" } else { "clear" }),
        }
    }
}

/// The first mismatch of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The check.
    pub check: Check,
    /// What was compared.
    pub what: &'static str,
    /// What was observed.
    pub got: Value,
    /// What the APM (through the model) requires.
    pub expected: Value,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: got {}, expected {}",
            self.check.name(),
            self.what,
            self.got,
            self.expected
        )
    }
}

/// One comparison of a check.
fn expect(check: Check, what: &'static str, got: Value, expected: Value) -> Result<(), Failure> {
    if got == expected {
        Ok(())
    } else {
        Err(Failure {
            check,
            what,
            got,
            expected,
        })
    }
}

/// Whether `vector`'s bit is set in a 256-bit register word read at its [`word_of`] offset.
const fn has(word: u32, base: u16, vector: u8) -> bool {
    word & (1 << word_of(base, vector).1) != 0
}

/// The exit code the model's outcome implies: none (the guest reaches its VMMCALL) or 401h.
fn exit_code_of(outcome: &IpiOutcome) -> u64 {
    match outcome.exit {
        None => ExitCode::Vmmcall.raw(),
        Some(_) => ExitCode::AvicIncompleteIpi.raw(),
    }
}

/// The exit a phase that must not exit ends with: the guest's VMMCALL at `vmmcall_rip`.
fn expect_vmmcall(check: Check, exit: &Exit, vmmcall_rip: u64) -> Result<(), Failure> {
    expect(
        check,
        "exit",
        Value::Exit(exit.code),
        Value::Exit(ExitCode::Vmmcall.raw()),
    )?;
    expect(check, "rip", Value::Hex(exit.rip), Value::Hex(vmmcall_rip))
}

/// Check 1. `table` is the physical table the hypervisor installed, `own` the test vCPU's
/// backing page after the exit, `vmmcall_rip` where the phase's VMMCALL is.
pub fn judge_self_ipi(
    mode: Mode,
    table: &[PhysicalIdEntry],
    exit: &Exit,
    vmmcall_rip: u64,
    own: &BackingPage,
    guest: &GuestReport,
) -> Result<(), Failure> {
    let c = Check::SelfIpi;
    let model = deliver_ipi(table, MAX_INDEX, mode.x2apic(), SENDER, self_ipi_icr());
    let Ok(outcome) = model else {
        return expect(c, "model", Value::Bool(false), Value::Bool(true));
    };
    expect(
        c,
        "exit",
        Value::Exit(exit.code),
        Value::Exit(exit_code_of(&outcome)),
    )?;
    expect_vmmcall(c, exit, vmmcall_rip)?;
    let want = outcome.irr_set.contains(SENDER as usize);
    expect(
        c,
        "backing page IRR bit",
        Value::Bool(own.irr(SELF_VECTOR)),
        Value::Bool(want),
    )?;
    expect(
        c,
        "IRR bit read by the guest",
        Value::Bool(has(guest.irr_before_sti, reg::IRR, SELF_VECTOR)),
        Value::Bool(want),
    )?;
    let (isr, bit) = word_of(reg::ISR, SELF_VECTOR);
    expect(
        c,
        "backing page ISR bit (IF=0)",
        Value::Bool(own.read(isr) & (1 << bit) != 0),
        Value::Bool(false),
    )
}

/// Check 2. `own` is the backing page after the phase's VMMCALL.
pub fn judge_delivery(
    exit: &Exit,
    vmmcall_rip: u64,
    own: &BackingPage,
    guest: &GuestReport,
) -> Result<(), Failure> {
    let c = Check::Delivery;
    expect_vmmcall(c, exit, vmmcall_rip)?;
    expect(
        c,
        "handler runs",
        Value::Count(u64::from(guest.handled)),
        Value::Count(1),
    )?;
    expect(
        c,
        "ISR bit read in the handler",
        Value::Bool(has(guest.isr_in_handler, reg::ISR, SELF_VECTOR)),
        Value::Bool(true),
    )?;
    expect(
        c,
        "IRR bit read in the handler",
        Value::Bool(has(guest.irr_in_handler, reg::IRR, SELF_VECTOR)),
        Value::Bool(false),
    )?;
    expect(
        c,
        "ISR bit read after EOI",
        Value::Bool(has(guest.isr_after_eoi, reg::ISR, SELF_VECTOR)),
        Value::Bool(false),
    )?;
    expect(
        c,
        "IRR bit read after EOI",
        Value::Bool(has(guest.irr_after_eoi, reg::IRR, SELF_VECTOR)),
        Value::Bool(false),
    )?;
    expect(
        c,
        "backing page ISR after EOI",
        Value::Hex(own.highest_isr().map_or(0, u64::from)),
        Value::Hex(0),
    )?;
    expect(
        c,
        "backing page IRR after EOI",
        Value::Bool(own.irr(SELF_VECTOR)),
        Value::Bool(false),
    )
}

/// Check 3. `own` and `target` are the two backing pages after the exit.
pub fn judge_incomplete_ipi(
    mode: Mode,
    table: &[PhysicalIdEntry],
    exit: &Exit,
    own: &BackingPage,
    target: &BackingPage,
) -> Result<(), Failure> {
    let c = Check::IncompleteIpi;
    let icr = target_icr(mode);
    let Ok(outcome) = deliver_ipi(table, MAX_INDEX, mode.x2apic(), SENDER, icr) else {
        return expect(c, "model", Value::Bool(false), Value::Bool(true));
    };
    expect(
        c,
        "exit",
        Value::Exit(exit.code),
        Value::Exit(exit_code_of(&outcome)),
    )?;
    if let Some((cause, index)) = outcome.exit {
        expect(
            c,
            "EXITINFO1 (ICR)",
            Value::Hex(exit.info1),
            Value::Hex(icr.0),
        )?;
        expect(
            c,
            "EXITINFO2 cause",
            Value::Hex(exit.info2 >> 32),
            Value::Hex(u64::from(cause.raw())),
        )?;
        expect(
            c,
            "EXITINFO2 index",
            Value::Hex(exit.info2 & 0xFFF),
            Value::Hex(u64::from(index)),
        )?;
    }
    for (i, page) in [(SENDER, own), (TARGET, target)] {
        let what = if i == TARGET {
            "target backing page IRR bit"
        } else {
            "own backing page IRR bit"
        };
        expect(
            c,
            what,
            Value::Bool(page.irr(IPI_VECTOR)),
            Value::Bool(outcome.irr_set.contains(i as usize)),
        )?;
    }
    Ok(())
}

/// Check 4. `write_rip` is the guest's TMICT write, `next_rip` the instruction after it.
pub fn judge_noaccel(
    exit: &Exit,
    write_rip: u64,
    next_rip: u64,
    own: &BackingPage,
) -> Result<(), Failure> {
    let c = Check::NoAccel;
    let want_info1 = (1 << 32) | u64::from(reg::TIMER_INITIAL);
    expect(
        c,
        "exit",
        Value::Exit(exit.code),
        Value::Exit(ExitCode::AvicNoAccel.raw()),
    )?;
    expect(
        c,
        "EXITINFO1",
        Value::Hex(exit.info1),
        Value::Hex(want_info1),
    )?;
    let trap = NoAccel::decode(want_info1, 0).kind() == AccessKind::Trap;
    let rip = if trap { next_rip } else { write_rip };
    expect(c, "rip", Value::Hex(exit.rip), Value::Hex(rip))?;
    let stored = if trap { TMICT_VALUE } else { 0 };
    expect(
        c,
        "backing page TMICT",
        Value::Hex(u64::from(own.read(reg::TIMER_INITIAL))),
        Value::Hex(u64::from(stored)),
    )
}

/// The summary line after the checks: `self-test (x2AVIC) passed: 4 of 4 checks` or
/// `self-test (x2AVIC) FAILED: <first failure> (n of 4 checks passed)`.
pub struct Summary<'a> {
    /// The mode tested.
    pub mode: Mode,
    /// One result per check, in order.
    pub results: &'a [Result<(), Failure>],
}

impl Summary<'_> {
    /// Whether every check passed (and there was one).
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(Result::is_ok)
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.results.len();
        let ok = self.results.iter().filter(|r| r.is_ok()).count();
        match self.results.iter().find_map(|r| r.err()) {
            None => write!(
                f,
                "self-test ({}) passed: {ok} of {total} checks",
                self.mode.name()
            ),
            Some(first) => write!(
                f,
                "self-test ({}) FAILED: {first} ({ok} of {total} checks passed)",
                self.mode.name()
            ),
        }
    }
}

#[cfg(test)]
#[path = "selftest_tests.rs"]
mod tests;
