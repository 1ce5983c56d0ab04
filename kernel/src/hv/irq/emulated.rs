//! `irq=emulated`: a virtual local APIC per vCPU (`didvisor::irqchip::Lapic`), the baseline every
//! other mode is measured against. Every x2APIC MSR access exits and is served by it; an
//! interrupt for a vCPU is set in its APIC, plus a kick IPI so its core exits; before each VMRUN
//! the highest deliverable vector is injected, or an interrupt window requested. The host APIC
//! timer of the vCPU's core stands in for the virtual APIC timer (the wake-up timer), and HLT
//! exits and waits on the dedicated core. A VF's MSI-X entries are remapped to host vectors on
//! the vCPU's core, which stand for the guest's vectors.

use super::{ExitAction, HostVector};
use super::{MAX_VCPUS, VIRTUAL_APIC_TIMER_HZ};
use crate::hv::host::idt;
use crate::hv::host::timer;
use crate::hv::host::x2apic;
use core::sync::atomic::{AtomicU8, Ordering};
use didvisor::inject::{self, Decision, GuestInterruptState};
use didvisor::irqchip::{Lapic, TriggerMode, MIN_VECTOR};
use iommu::MsiMessage;
use spin::Mutex;
use svm::event::EventInj;
use svm::exit::ExitCode;
use svm::intercept::{IntCtl, IntState, InterceptMisc1};
use svm::Vmcb;

const RFLAGS_IF: u64 = 1 << 9;

pub struct EmulatedGuest {
    /// The virtual local APIC of each vCPU (x2APIC id = vCPU index).
    pub lapics: [Mutex<Lapic>; MAX_VCPUS],
    /// Per device-vector slot (each of the guest's VFs has its range, `VfHost::vectors`): the
    /// guest vector of the MSI-X entry the host vector stands in for (0 = none).
    vf_vectors: [AtomicU8; idt::DEVICE_VECTORS],
}

pub struct EmulatedVcpu {
    guest: &'static EmulatedGuest,
    vcpu: usize,
    /// Virtual interrupts injected at exits.
    injected: u64,
    /// Host APIC-timer ticks per millisecond on this core (the wake-up timer).
    timer_per_ms: u64,
}

/// Virtual local APICs for vCPUs 0..MAX_VCPUS, x2APIC id = index (shared with `avic`).
pub fn lapics() -> [Mutex<Lapic>; MAX_VCPUS] {
    core::array::from_fn(|i| Mutex::new(Lapic::new(i as u32, VIRTUAL_APIC_TIMER_HZ)))
}

/// Puts every virtual local APIC back to its state after INIT (shared with `avic`).
pub fn reset_lapics(lapics: &[Mutex<Lapic>; MAX_VCPUS]) {
    for (i, lapic) in lapics.iter().enumerate() {
        *lapic.lock() = Lapic::new(i as u32, VIRTUAL_APIC_TIMER_HZ);
    }
}

impl EmulatedGuest {
    pub fn new() -> Self {
        EmulatedGuest {
            lapics: lapics(),
            vf_vectors: [const { AtomicU8::new(0) }; idt::DEVICE_VECTORS],
        }
    }

    /// Back to the state of a new guest (a restart): every virtual APIC as after INIT, no VF
    /// vector assigned (the guest programs its MSI-X entries again).
    pub fn reset(&self) {
        reset_lapics(&self.lapics);
        for v in &self.vf_vectors {
            v.store(0, Ordering::Release);
        }
    }

    /// Sets `vector` in the vCPU's APIC and kicks its core (unless that is this core, which
    /// looks at the APIC before its next VMRUN anyway).
    pub fn interrupt_vcpu(&self, vcpu: usize, core: u32, vector: u8, trigger: TriggerMode) {
        self.lapics[vcpu].lock().accept(vector, trigger);
        if core != u32::MAX && core != x2apic::id() {
            x2apic::send_fixed(core, idt::VECTOR_KICK);
        }
    }

    /// The MSI-X entry of device-vector `slot` (below `DEVICE_VECTORS`, `VfHost::vector_slot`)
    /// gets the host vector of that slot on the vCPU's core, standing for the guest's vector (the
    /// exit it causes injects the guest's vector: `host_vector`).
    pub fn remap_msix(&self, slot: u8, message: &MsiMessage, enabled: bool) -> u8 {
        if enabled && message.vector() >= MIN_VECTOR {
            self.vf_vectors[usize::from(slot)].store(message.vector(), Ordering::Release);
        }
        idt::VECTOR_DEVICE_BASE + slot
    }

    pub fn host_vector(&self, index: usize) -> HostVector {
        match self.vf_vectors[index].load(Ordering::Acquire) {
            0 => HostVector::Unassigned,
            vector => HostVector::Guest(vector),
        }
    }
}

impl EmulatedVcpu {
    /// On the vCPU's own core: measures the host APIC timer for the wake-up timer.
    pub fn new(guest: &'static EmulatedGuest, vcpu: usize) -> Self {
        EmulatedVcpu {
            guest,
            vcpu,
            injected: 0,
            timer_per_ms: x2apic::calibrate_timer(timer::tsc_per_ms()).max(1),
        }
    }

    pub fn injected(&self) -> u64 {
        self.injected
    }

    /// Before each VMRUN: inject the highest deliverable virtual interrupt or ask for an exit
    /// when the guest can take it, and arm the host timer for the virtual APIC timer.
    pub fn before_entry(&mut self, vmcb: &mut Vmcb) {
        let now = timer::nanos();
        let mut lapic = self.guest.lapics[self.vcpu].lock();
        lapic.tick(now);
        let state = GuestInterruptState {
            rflags_if: vmcb.rflags & RFLAGS_IF != 0,
            interrupt_shadow: vmcb.int_state().contains(IntState::INTERRUPT_SHADOW),
            event_pending: vmcb.event_inj & (1 << 31) != 0,
        };
        match inject::decide(lapic.highest_deliverable(true), state) {
            Decision::InjectNow(vector) => {
                lapic.ack(vector);
                self.injected += 1;
                vmcb.inject(EventInj::external_interrupt(vector));
            }
            Decision::RequestWindow => request_interrupt_window(vmcb, true),
            Decision::Nothing => {}
        }
        let deadline = lapic.next_timer_deadline();
        drop(lapic);
        self.arm_host_timer(deadline, now);
    }

    /// Arms this core's host timer to fire at `deadline` (hypervisor nanoseconds; `None` stops
    /// it): the stand-in for the guest's LAPIC timer.
    fn arm_host_timer(&self, deadline: Option<u64>, now: u64) {
        let ticks = deadline.map_or(0, |d| {
            let ns = d.saturating_sub(now).max(1000);
            (u128::from(ns) * u128::from(self.timer_per_ms) / 1_000_000)
                .clamp(1, u128::from(u32::MAX)) as u32
        });
        x2apic::arm_timer(idt::VECTOR_HOST_TIMER, ticks);
    }

    /// At a HLT exit: whether a virtual interrupt is deliverable.
    pub fn wake_pending(&self, now: u64) -> bool {
        let mut lapic = self.guest.lapics[self.vcpu].lock();
        lapic.tick(now);
        lapic.highest_deliverable(true).is_some()
    }
}

/// The exits only this mode causes: VINTR, the interrupt window it asked for, is open (the next
/// entry injects).
pub fn exit(exit: ExitCode, vmcb: &mut Vmcb) -> Option<ExitAction> {
    match exit {
        ExitCode::Vintr => {
            request_interrupt_window(vmcb, false);
            Some(ExitAction::Resume)
        }
        _ => None,
    }
}

/// Sets or clears a virtual interrupt request (V_IRQ, ignoring V_TPR) with the VINTR intercept,
/// so the guest exits as soon as it could take an interrupt (APM vol. 2, 15.21.4).
fn request_interrupt_window(vmcb: &mut Vmcb, on: bool) {
    let mut ctl = vmcb.int_ctl();
    let mut misc1 = vmcb.misc1();
    ctl.set(IntCtl::V_IRQ | IntCtl::V_IGN_TPR, on);
    misc1.set(InterceptMisc1::VINTR, on);
    vmcb.set_int_ctl(ctl.with_v_intr_prio(0xf));
    vmcb.set_misc1(misc1);
}

/// After the vCPU's last exit: the wake-up timer stops.
pub fn stop_host_timer() {
    x2apic::arm_timer(idt::VECTOR_HOST_TIMER, 0);
}
