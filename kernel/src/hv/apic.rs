//! The guest's x2APIC MSRs in every interrupt mode, and the routing of the IPIs guests send.
//!
//! - emulated: every x2APIC MSR exits and is served by the vCPU's virtual local APIC.
//! - direct: only what `didvisor::irqchip::direct` traps exits here: ID/LDR/version reads, ICR
//!   writes (translated to physical IPIs between the guest's own cores), SVR and timer/error LVT
//!   writes (filtered: only the bits the register offers, SVR kept enabled) and writes to LVTs
//!   wired to the host platform (ignored).
//! - avic: no x2APIC MSR exits at all (AVIC takes them); the ICR of an IPI AVIC does not deliver
//!   (401h cause 0: INIT, SIPI, NMI, lowest priority) comes here as a write to the vCPU's `Lapic`
//!   model and is routed like an emulated-mode IPI (see `avic_vcpu`).
//!
//! NMI IPIs, in every mode, latch a guest NMI on each target (`raise_nmi`); the target's core
//! injects it (`nmi_vcpu`).

use super::platform::VirtualPlatform;
use super::timer;
use didvisor::config::IrqMode;
use didvisor::irqchip::x2apic::{self as regs, VERSION};
use didvisor::irqchip::{
    AccessFault, DeliveryMode, DestMode, Ipi, Shorthand, TriggerMode, WriteEffect,
};
use x86_64::registers::model_specific::Msr;

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
    match platform.mode {
        IrqMode::Direct => Ok(match msr {
            regs::MSR_ID => vcpu as u64,
            regs::MSR_LDR => u64::from(didvisor::irqchip::x2apic_ldr(vcpu as u32)),
            regs::MSR_VERSION => u64::from(VERSION),
            regs::MSR_ICR => platform.vcpus[vcpu]
                .icr
                .load(core::sync::atomic::Ordering::Relaxed),
            _ => return Err(AccessFault::NoSuchRegister),
        }),
        IrqMode::Emulated | IrqMode::Avic => platform.vcpus[vcpu]
            .lapic
            .lock()
            .read_msr(msr, timer::nanos()),
    }
}

pub fn write(platform: &VirtualPlatform, vcpu: usize, msr: u32, value: u64) -> ApicOutcome {
    match platform.mode {
        IrqMode::Direct => match msr {
            regs::MSR_ICR => {
                platform.vcpus[vcpu]
                    .icr
                    .store(value, core::sync::atomic::Ordering::Relaxed);
                route_ipi(platform, vcpu, didvisor::irqchip::decode_icr(value))
            }
            // SVR, timer and error LVT: only the bits `filter_write` lets through reach the
            // physical register (the APIC stays enabled; no delivery mode, no reserved bit).
            regs::MSR_SVR | regs::MSR_LVT_TIMER | regs::MSR_LVT_ERROR => {
                match didvisor::irqchip::direct::filter_write(msr, value) {
                    Ok(v) => {
                        // SAFETY: this core is dedicated to this vCPU; these registers only
                        // affect its own APIC, and `v` holds only bits the register defines.
                        unsafe { Msr::new(msr).write(v) };
                        ApicOutcome::Done
                    }
                    Err(why) => {
                        log::debug!("direct-mode x2APIC write {msr:#x} <- {value:#x}: {why:?}");
                        ApicOutcome::Fault
                    }
                }
            }
            // LINT0/LINT1, thermal and perf LVTs reach beyond this guest (see irqchip::direct).
            regs::MSR_LVT_LINT0
            | regs::MSR_LVT_LINT1
            | regs::MSR_LVT_THERMAL
            | regs::MSR_LVT_PERF => ApicOutcome::Done,
            _ => ApicOutcome::Fault,
        },
        IrqMode::Emulated | IrqMode::Avic => {
            let effect = platform.vcpus[vcpu]
                .lapic
                .lock()
                .write_msr(msr, value, timer::nanos());
            match effect {
                Err(_) => ApicOutcome::Fault,
                Ok(WriteEffect::None) => ApicOutcome::Done,
                Ok(WriteEffect::Ipi(ipi)) => route_ipi(platform, vcpu, ipi),
                Ok(WriteEffect::Eoi { vector, level }) => {
                    if level {
                        let again = platform.ioapic.lock().eoi(vector);
                        for d in again.iter() {
                            platform.deliver(d);
                        }
                    }
                    ApicOutcome::Done
                }
            }
        }
    }
}

/// Sends an IPI a guest vCPU asked for to its targets inside the same guest; destinations outside
/// the guest match nothing, so a guest cannot reach another guest's cores.
fn route_ipi(platform: &VirtualPlatform, sender: usize, ipi: Ipi) -> ApicOutcome {
    if ipi.is_init_deassert() {
        return ApicOutcome::Done;
    }
    let targets = (0..platform.vcpu_count).filter(|&v| match ipi.shorthand {
        Shorthand::SelfOnly => v == sender,
        Shorthand::AllIncludingSelf => true,
        Shorthand::AllExcludingSelf => v != sender,
        Shorthand::Destination => match ipi.dest_mode {
            DestMode::Physical => ipi.dest == v as u32 || ipi.dest == u32::MAX,
            DestMode::Logical => regs::x2apic_dest_matches(v as u32, ipi.dest, DestMode::Logical),
        },
    });
    match ipi.delivery_mode {
        DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
            for v in targets {
                platform.interrupt_vcpu(v, ipi.vector, TriggerMode::Edge);
                if ipi.delivery_mode == DeliveryMode::LowestPriority {
                    break;
                }
            }
            ApicOutcome::Done
        }
        DeliveryMode::Init | DeliveryMode::StartUp => {
            let mut first = None;
            for v in targets.filter(|&v| v != sender) {
                first.get_or_insert(v);
            }
            match first {
                Some(target) => ApicOutcome::StartVcpu { target, ipi },
                None => ApicOutcome::Done,
            }
        }
        DeliveryMode::Nmi => {
            for v in targets {
                raise_nmi(platform, v);
            }
            ApicOutcome::Done
        }
        other => {
            log::debug!("guest IPI with delivery mode {other:?} is not supported; dropped");
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
        if core != u32::MAX && core != super::x2apic::id() {
            super::x2apic::send_nmi(core);
        }
    }
}
