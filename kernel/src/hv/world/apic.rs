//! The guest's x2APIC MSRs that exit, and the routing of the IPIs guests send. Which MSRs exit
//! and what serves them is the guest's interrupt backend's (`irq`):
//!
//! - emulated: every x2APIC MSR exits and is served by the vCPU's virtual local APIC.
//! - direct: only what `didvisor::irqchip::direct` traps exits here: ID/LDR/version reads, ICR
//!   writes (routed to the guest's own vCPUs), SVR and timer/error LVT writes (filtered) and
//!   writes to LVTs wired to the host platform (ignored).
//! - avic: no x2APIC MSR exits at all (AVIC takes them); the ICR of an IPI AVIC does not deliver
//!   (401h cause 0: INIT, SIPI, NMI, lowest priority) comes here as a write to the vCPU's `Lapic`
//!   model and is routed like an emulated-mode IPI (see `irq::avic`).

use crate::hv::host::timer;
use crate::hv::vm::platform::VirtualPlatform;
use didvisor::irqchip::route::{self, IpiRoute};
use didvisor::irqchip::x2apic as regs;
use didvisor::irqchip::{AccessFault, Ipi, TriggerMode, WriteEffect};

/// The x2APIC MSR range (APM vol. 2, 16.11.1).
pub fn is_x2apic_msr(msr: u32) -> bool {
    (regs::MSR_FIRST..=regs::MSR_LAST).contains(&msr)
}

/// What an x2APIC MSR access asks of the vCPU loop.
pub enum ApicOutcome {
    Done,
    /// The guest must get #GP(0).
    Fault,
    /// An INIT or STARTUP IPI to another vCPU (SMP bring-up).
    StartVcpu {
        target: usize,
        ipi: Ipi,
    },
}

pub fn read(platform: &VirtualPlatform, vcpu: usize, msr: u32) -> Result<u64, AccessFault> {
    platform.irq.apic_read(vcpu, msr, timer::nanos())
}

pub fn write(platform: &VirtualPlatform, vcpu: usize, msr: u32, value: u64) -> ApicOutcome {
    match platform.irq.apic_write(vcpu, msr, value, timer::nanos()) {
        Err(_) => ApicOutcome::Fault,
        Ok(WriteEffect::None) => ApicOutcome::Done,
        Ok(WriteEffect::Ipi(ipi)) => route_ipi(platform, vcpu, ipi),
        Ok(WriteEffect::Eoi { vector, level }) => {
            if level {
                ioapic_eoi(platform, vector);
            }
            ApicOutcome::Done
        }
    }
}

/// A level-triggered interrupt was retired: the IOAPIC delivers again what is still asserted.
pub fn ioapic_eoi(platform: &VirtualPlatform, vector: u8) {
    let again = platform.ioapic.lock().eoi(vector);
    for d in again.iter() {
        platform.deliver(d);
    }
}

/// Sends an IPI a guest vCPU asked for to its targets inside the same guest
/// (`didvisor::irqchip::route`: destinations outside the guest match nothing).
fn route_ipi(platform: &VirtualPlatform, sender: usize, ipi: Ipi) -> ApicOutcome {
    match route::route_ipi(&ipi, sender, platform.vcpu_count) {
        IpiRoute::Interrupt { targets, vector } => {
            for v in targets.iter() {
                platform.interrupt_vcpu(v, vector, TriggerMode::Edge);
            }
            ApicOutcome::Done
        }
        IpiRoute::Start { target } => ApicOutcome::StartVcpu { target, ipi },
        IpiRoute::Nothing => ApicOutcome::Done,
        IpiRoute::Unsupported(mode) => {
            log::debug!("guest IPI with delivery mode {mode:?} is not supported; dropped");
            ApicOutcome::Done
        }
    }
}
