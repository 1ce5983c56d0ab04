//! `irq=direct`: the guest owns its core's physical x2APIC (timer, TPR, EOI), so interrupts need
//! no exits. Only what `didvisor::irqchip::direct` traps exits: ID/LDR/version reads, ICR writes
//! (routed as IPIs between the guest's own vCPUs), SVR and timer/error LVT writes (filtered: only
//! the bits the register offers, SVR kept enabled) and writes to LVTs wired to the host platform
//! (ignored). Device interrupts arrive as physical fixed IPIs with the guest's vector, taken
//! through the guest's IDT; a VF's MSI-X entries are remapped to the guest's core and vector.

use super::MAX_VCPUS;
use core::sync::atomic::{AtomicU64, Ordering};
use didvisor::irqchip::x2apic::{self as regs, VERSION};
use didvisor::irqchip::{AccessFault, WriteEffect};
use svm::permission_map::{MsrPermissionMap, MsrRw};
use x86_64::registers::model_specific::Msr;

pub struct DirectGuest {
    /// Per vCPU: the guest's last ICR write (reads of the trapped ICR must return it).
    icr: [AtomicU64; MAX_VCPUS],
    /// Device interrupts sent as physical IPIs.
    pub ipis: AtomicU64,
}

/// A direct-mode vCPU has no state of its own: its interrupt state is its core's APIC.
pub struct DirectVcpu;

impl DirectGuest {
    pub fn new() -> Self {
        DirectGuest {
            icr: [const { AtomicU64::new(0) }; MAX_VCPUS],
            ipis: AtomicU64::new(0),
        }
    }

    pub fn apic_read(&self, vcpu: usize, msr: u32) -> Result<u64, AccessFault> {
        Ok(match msr {
            regs::MSR_ID => vcpu as u64,
            regs::MSR_LDR => u64::from(didvisor::irqchip::x2apic_ldr(vcpu as u32)),
            regs::MSR_VERSION => u64::from(VERSION),
            regs::MSR_ICR => self.icr[vcpu].load(Ordering::Relaxed),
            _ => return Err(AccessFault::NoSuchRegister),
        })
    }

    pub fn apic_write(
        &self,
        vcpu: usize,
        msr: u32,
        value: u64,
    ) -> Result<WriteEffect, AccessFault> {
        match msr {
            regs::MSR_ICR => {
                self.icr[vcpu].store(value, Ordering::Relaxed);
                Ok(WriteEffect::Ipi(didvisor::irqchip::decode_icr(value)))
            }
            // SVR, timer and error LVT: only the bits `filter_write` lets through reach the
            // physical register (the APIC stays enabled; no delivery mode, no reserved bit).
            regs::MSR_SVR | regs::MSR_LVT_TIMER | regs::MSR_LVT_ERROR => {
                match didvisor::irqchip::direct::filter_write(msr, value) {
                    Ok(v) => {
                        // SAFETY: this core is dedicated to this vCPU; these registers only
                        // affect its own APIC, and `v` holds only bits the register defines.
                        unsafe { Msr::new(msr).write(v) };
                        Ok(WriteEffect::None)
                    }
                    Err(why) => {
                        log::debug!("direct-mode x2APIC write {msr:#x} <- {value:#x}: {why:?}");
                        Err(AccessFault::ReservedBits)
                    }
                }
            }
            // LINT0/LINT1, thermal and perf LVTs reach beyond this guest (see irqchip::direct).
            regs::MSR_LVT_LINT0
            | regs::MSR_LVT_LINT1
            | regs::MSR_LVT_THERMAL
            | regs::MSR_LVT_PERF => Ok(WriteEffect::None),
            _ => Err(AccessFault::NoSuchRegister),
        }
    }

    /// Back to the state of a new guest (a restart): no ICR written yet. The interrupt state
    /// proper is each core's APIC, emptied when its vCPU left it (`VcpuIrq::leave_core`).
    pub fn reset(&self) {
        for icr in &self.icr {
            icr.store(0, Ordering::Relaxed);
        }
    }

    /// A physical fixed IPI with the guest's vector to the vCPU's core (if it runs yet).
    pub fn interrupt_vcpu(&self, core: u32, vector: u8) {
        if core != u32::MAX {
            self.ipis.fetch_add(1, Ordering::Relaxed);
            crate::hv::host::x2apic::send_fixed(core, vector);
        }
    }
}

/// The guest owns its core's x2APIC but for what `irqchip::direct` keeps trapped.
pub fn msr_intercepts(map: &mut MsrPermissionMap) {
    for msr in regs::MSR_FIRST..=regs::MSR_LAST {
        let access = didvisor::irqchip::direct::direct_mode_access(msr);
        let _ = map.set(msr, MsrRw::Read, !access.read);
        let _ = map.set(msr, MsrRw::Write, !access.write);
    }
}
