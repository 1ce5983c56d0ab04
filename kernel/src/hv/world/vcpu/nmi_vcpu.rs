//! Guest NMIs on this vCPU (`didvisor::nmi`, APM vol. 2, 15.20): the latched NMI injected at
//! entry, IRET intercepted while its handler runs, the IRET single-stepped when another NMI is
//! latched by then, and a self-NMI to exit right after an event that holds EVENTINJ.

use super::{vmrun, x2apic, Next, Vcpu};
use svm::event::EventInj;
use svm::intercept::InterceptMisc1;

const RFLAGS_TF: u64 = 1 << 8;
const VECTOR_DB: u8 = 1;
const EVENT_VALID: u64 = 1 << 31;

/// A single step the hypervisor armed over an IRET: what it changed in the guest's state.
#[derive(Clone, Copy)]
pub(super) struct Step {
    dr6: u64,
    guest_tf: bool,
}

impl Vcpu {
    /// The last thing before VMRUN. GIF is cleared first: a physical NMI another core sends
    /// after the latch was read is then held and makes the guest exit at once, instead of
    /// being taken by the host and leaving the latched NMI to wait for an unrelated exit.
    pub(super) fn prepare_nmi_entry(&mut self) {
        vmrun::clear_gif();
        let busy = self.vmcb().event_inj & EVENT_VALID != 0;
        let e = self
            .nmi
            .entry(&self.vm.platform.vcpus[self.id as usize].nmi, busy);
        let v = self.vmcb();
        if e.inject {
            v.inject(EventInj::nmi());
        }
        let mut misc1 = v.misc1();
        misc1.set(InterceptMisc1::IRET, e.intercept_iret);
        v.set_misc1(misc1);
        if e.single_step && self.nmi_step.is_none() {
            let v = self.vmcb();
            let step = Step {
                dr6: v.dr6,
                guest_tf: v.rflags & RFLAGS_TF != 0,
            };
            v.rflags |= RFLAGS_TF;
            v.intercept_exception(VECTOR_DB, true);
            self.nmi_step = Some(step);
        }
        if e.exit_after_event {
            x2apic::send_nmi(x2apic::id());
        }
    }

    /// The IRET intercept (before the IRET runs; it runs at the next entry, unintercepted).
    pub(super) fn nmi_iret(&mut self, rip: u64) -> Next {
        self.nmi.iret(rip);
        Next::Resume
    }

    /// A #DB exit: the end of the single step over an IRET (the IRET restored the interrupted
    /// code's RFLAGS), or, without one armed, a #DB for the guest.
    pub(super) fn nmi_single_step(&mut self) -> Next {
        let Some(step) = self.nmi_step.take() else {
            return self.inject(EventInj::exception(VECTOR_DB, None));
        };
        let v = self.vmcb();
        v.dr6 = step.dr6;
        if !step.guest_tf {
            v.rflags &= !RFLAGS_TF;
        }
        v.intercept_exception(VECTOR_DB, false);
        Next::Resume
    }

    /// Whether a latched NMI can wake this vCPU (HLT, a halted-looking guest at an NMI exit).
    pub(super) fn nmi_wakes(&self) -> bool {
        !self.nmi.blocked() && self.vm.platform.vcpus[self.id as usize].nmi.is_pending()
    }

    /// The report line of this vCPU's guest NMIs (with its line break), if it had any.
    pub(super) fn nmi_line(&self) -> NmiLine {
        let (raised, merged) = self.vm.platform.vcpus[self.id as usize].nmi.counts();
        NmiLine {
            raised,
            merged,
            injected: self.nmi.injected(),
            woke_parked: self.parks_woken,
        }
    }
}

pub(super) struct NmiLine {
    raised: u64,
    merged: u64,
    injected: u64,
    /// Times one woke this vCPU from parked (HLT with interrupts disabled).
    woke_parked: u64,
}

impl core::fmt::Display for NmiLine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.raised == 0 {
            return Ok(());
        }
        write!(
            f,
            "\n  guest nmis: {} sent to this vcpu, {} merged while one was latched, {} injected",
            self.raised, self.merged, self.injected
        )?;
        if self.woke_parked > 0 {
            write!(
                f,
                "\n  parked (HLT with interrupts disabled) and woken by a guest nmi: {}",
                self.woke_parked
            )?;
        }
        Ok(())
    }
}
