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
//!
//! NMI IPIs, in every mode, latch a guest NMI on each target (`raise_nmi`); the target's core
//! injects it (`nmi_vcpu`).

use crate::hv::host::timer;
use crate::hv::vm::platform::VirtualPlatform;
use didvisor::irqchip::route::{self, IpiRoute};
use didvisor::irqchip::x2apic as regs;
use didvisor::irqchip::{AccessFault, Ipi, TriggerMode, WriteEffect};

/// The x2APIC MSR range (APM vol. 2, 16.11.1).
pub fn is_x2apic_msr(msr: u32) -> bool {
    regs::MSRS.contains(&msr)
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
        IpiRoute::Nmi { targets } => {
            for v in targets.iter() {
                raise_nmi(platform, v);
            }
            ApicOutcome::Done
        }
        IpiRoute::Nothing => ApicOutcome::Done,
        IpiRoute::Unsupported(mode) => {
            log::debug!("guest IPI with delivery mode {mode:?} is not supported; dropped");
            ApicOutcome::Done
        }
    }
}

/// A guest NMI for `vcpu`: latched (`didvisor::nmi`), and when that latched a new one, the
/// vCPU's core is made to exit with a physical NMI (the hypervisor's own recall, which every
/// mode intercepts) so that it injects it at its next entry. An NMI that merges with a latched
/// one sends nothing: a guest's NMI storm costs each target one exit per NMI it takes.
fn raise_nmi(platform: &VirtualPlatform, vcpu: usize) {
    let slot = &platform.vcpus[vcpu];
    if slot.nmi.raise() {
        let core = slot
            .core_apic_id
            .load(core::sync::atomic::Ordering::Acquire);
        if core != u32::MAX && core != crate::hv::host::x2apic::id() {
            crate::hv::host::x2apic::send_nmi(core);
        }
    }
}
