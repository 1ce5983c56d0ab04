//! A vCPU in `irq=avic` mode (x2AVIC): what it does before each VMRUN and with the two AVIC
//! exits. The decisions are `avic::mode`'s; this is the glue to the vCPU, its emulated timer and
//! the virtual IOAPIC.
//!
//! - Before VMRUN: the emulated LAPIC timer is settled (a trapped TMICT/TDCR/LVTT write may have
//!   changed it or found an expiry due); an expiry is posted as the guest's timer vector in the
//!   backing page IRR (AVIC delivers it at VMRUN, by priority, into vISR; the guest's EOI is
//!   accelerated), and the next deadline is published for the service core, which posts the
//!   expiries that fall while the guest runs and rings this core's doorbell. No host timer is
//!   armed here and INTR is not intercepted (see `Vcpu::init_vmcb`).
//! - 401h: INIT/SIPI/NMI and other types AVIC does not deliver are emulated like in the other
//!   modes; "target not running" rings the targets (AVIC already set their IRR bits); invalid
//!   IPIs are logged, counted and dropped.
//! - 402h: trapped writes of the timer registers and of SPIV/ESR/LVTs go to the hypervisor's view
//!   (`Lapic`), level EOIs to the virtual IOAPIC, TMCCT reads are emulated, the rest is #GP.

use super::super::avic_mode::AvicGuest;
use super::apic;
use super::{timer, Next, Vcpu, VECTOR_GP};
use crate::println;
use avic::mode::{self, IpiAction, NoAccelAction};
use avic::{IncompleteIpi, NoAccel};
use core::sync::atomic::Ordering;
use didvisor::irqchip::x2apic::MSR_ICR;
use svm::event::EventInj;

/// Invalid IPIs reported one by one per vCPU; the rest are only counted.
const IPI_ERROR_REPORT_LIMIT: u64 = 8;

impl Vcpu {
    fn avic_guest(&self) -> &'static AvicGuest {
        self.vm
            .platform
            .avic
            .as_ref()
            .expect("irq=avic guests are built with their AVIC pages")
    }

    /// Before each VMRUN: post what the emulated timer raised and publish its next deadline
    /// (this core evaluates the IRR at VMRUN, so no doorbell).
    pub(super) fn prepare_avic_entry(&mut self) {
        let now = timer::nanos();
        let vcpu = self.id as usize;
        let mut lapic = self.platform().vcpus[vcpu].lapic.lock();
        self.avic_guest().settle_timer(vcpu, &mut lapic, now);
    }

    /// Exit 401h (trap-like: the ICR write is done, RIP is past it).
    pub(super) fn avic_incomplete_ipi(&mut self, info1: u64, info2: u64) -> Next {
        let ipi = IncompleteIpi::decode(info1, info2);
        self.avic.record_incomplete_ipi(&ipi);
        match mode::incomplete_ipi_action(&ipi) {
            IpiAction::Emulate => {
                let outcome = apic::write(self.platform(), self.id as usize, MSR_ICR, ipi.icr.0);
                self.finish_apic(outcome, 0)
            }
            IpiAction::WakeTargets => {
                let avic = self.avic_guest();
                for vcpu in (0..self.platform().vcpu_count).filter(|&v| v != self.id as usize) {
                    avic.ring(vcpu);
                }
                Next::Resume
            }
            IpiAction::GuestError(cause) => {
                if self.avic.ipi_errors <= IPI_ERROR_REPORT_LIMIT {
                    println!(
                        "guest {}: vcpu {}: IPI that AVIC cannot deliver (icr {:#x}, cause {cause:?}, index {}): dropped",
                        self.vm.config.name, self.id, ipi.icr.0, ipi.index
                    );
                }
                Next::Resume
            }
        }
    }

    /// Exit 402h.
    pub(super) fn avic_noaccel(&mut self, info1: u64, info2: u64) -> Next {
        let n = NoAccel::decode(info1, info2);
        let action = mode::noaccel_action(&n);
        self.avic.record_noaccel(action);
        let vcpu = self.id as usize;
        let avic = self.avic_guest();
        let platform = self.platform();
        let now = timer::nanos();
        match action {
            NoAccelAction::TimerWrite { msr } | NoAccelAction::MirrorWrite { msr } => {
                let value = avic.read(vcpu, n.offset);
                let mut lapic = platform.vcpus[vcpu].lapic.lock();
                if let Err(e) = lapic.write_msr(msr, u64::from(value), now) {
                    log::debug!(
                        "guest {}: vcpu {}: trapped write {value:#x} to x2APIC MSR {msr:#x}: {e:?}",
                        self.vm.config.name,
                        self.id
                    );
                }
                // The page shows the register as the APIC has it (an LVT stays masked while the
                // APIC is software-disabled; ESR latches the errors).
                if let Ok(view) = lapic.read_msr(msr, now) {
                    avic.write(vcpu, n.offset, view as u32);
                }
                Next::Resume
            }
            NoAccelAction::LevelEoi { vector } => {
                avic.clear_isr(vcpu, vector);
                let again = platform.ioapic.lock().eoi(vector);
                for d in again.iter() {
                    platform.deliver(d);
                }
                Next::Resume
            }
            NoAccelAction::ReadTimerCurrent => {
                let msr = mode::msr_of(n.offset);
                let value = platform.vcpus[vcpu]
                    .lapic
                    .lock()
                    .read_msr(msr, now)
                    .unwrap_or(0);
                self.vmcb().rax = value & 0xffff_ffff;
                self.regs.rdx = value >> 32;
                // Fault-style: RIP is on the RDMSR (2 bytes).
                self.vmcb().rip += 2;
                Next::Resume
            }
            NoAccelAction::InjectGp => {
                log::debug!(
                    "guest {}: vcpu {}: unaccelerated x2APIC access {n:?}: #GP",
                    self.vm.config.name,
                    self.id
                );
                self.inject(EventInj::exception(VECTOR_GP, Some(0)))
            }
            NoAccelAction::Ignore => Next::Resume,
        }
    }

    /// The line printed under the exit table.
    pub(super) fn avic_counts(&self) -> avic::mode::AvicCounts {
        let vcpu = self.id as usize;
        let avic = self.avic_guest();
        let mut c = self.avic;
        c.posted_device = avic.posted_device[vcpu].load(Ordering::Relaxed);
        c.doorbells = avic.doorbells[vcpu].load(Ordering::Relaxed);
        c.posted_timer = avic.posted_timer[vcpu].load(Ordering::Relaxed);
        c.ga_log = avic.ga_log[vcpu].load(Ordering::Relaxed);
        c
    }

    pub(super) fn avic_set_running(&self, running: bool) {
        let vcpu = self.id as usize;
        match (&self.vm.platform.avic, self.vm.vf.get()) {
            // IsRun in the VF's posted IRTEs follows IsRunning (`vf_posting`).
            (Some(avic), Some(vf)) => vf.set_vcpu_running(avic, vcpu, running),
            (Some(avic), None) => avic.set_running(vcpu, running),
            _ => {}
        }
    }

    /// The VMCB's AVIC fields (x2AVIC).
    pub(super) fn avic_enable(&mut self) {
        let setup = self.avic_guest().setup(self.id as usize);
        if let Err(e) = avic::vmcb::enable(self.vmcb(), &setup) {
            panic!("AVIC set-up of vcpu {}: {e:?}", self.id);
        }
    }
}
