//! A vCPU's answers to the exit-counter leaf (`didvisor::exit_counters`): its own counts, read on
//! its own core inside its CPUID exit.

use super::Vcpu;
use crate::hv::irq::VcpuIrq;
use avic::mode::AvicCounts;
use didvisor::exit_counters::Counter;
use didvisor::stats::ApicMsrKind;
use svm::exit::ExitCode;

impl Vcpu {
    pub(super) fn exit_counter(&self, c: Counter) -> u64 {
        let reason = |code: ExitCode| self.stats.count(code.index());
        let apic = |kind: ApicMsrKind| self.apic_exits.count(kind);
        // The AVIC exits (401h/402h) by kind, and the interrupts injected at exits.
        let (avic, injected) = match &self.irq {
            VcpuIrq::Direct(_) => (AvicCounts::default(), 0),
            VcpuIrq::Emulated(v) => (AvicCounts::default(), v.injected()),
            VcpuIrq::Avic(v) => (v.counts(), 0),
        };
        match c {
            Counter::Total => self.stats.total(),
            Counter::Cpuid => reason(ExitCode::Cpuid),
            Counter::Intr => reason(ExitCode::Intr),
            Counter::Eoi => apic(ApicMsrKind::Eoi) + avic.eoi,
            Counter::Timer => apic(ApicMsrKind::Timer) + avic.timer,
            Counter::Ipi => apic(ApicMsrKind::Icr) + apic(ApicMsrKind::SelfIpi) + avic.fixed_ipi,
            Counter::Injected => injected,
            Counter::Hlt => reason(ExitCode::Hlt),
            Counter::Msr => reason(ExitCode::Msr),
            Counter::Npf => reason(ExitCode::Npf),
            Counter::Ioio => reason(ExitCode::Ioio),
        }
    }
}
