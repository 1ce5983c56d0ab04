//! `irq=avic` (x2AVIC): the processor takes the guest's x2APIC accesses, delivers the IPIs it can
//! and the vectors posted in the vCPU's backing page, all without exits. The decisions are
//! `avic::mode`'s; the pages are `avic_tables`'; a VF's MSI-X entries are posted by the IOMMU
//! (`vf_posting`). This is the glue to the vCPU, its emulated timer and the virtual IOAPIC:
//!
//! - Before VMRUN: the emulated LAPIC timer is settled (a trapped TMICT/TDCR/LVTT write may have
//!   changed it or found an expiry due); an expiry is posted as the guest's timer vector in the
//!   backing page IRR (AVIC delivers it at VMRUN, by priority, into vISR; the guest's EOI is
//!   accelerated), and the next deadline is published for the service core, which posts the
//!   expiries that fall while the guest runs and rings this core's doorbell. No host timer is
//!   armed on the guest's core and INTR is not intercepted (`didvisor::intercepts`).
//! - 401h: INIT/SIPI/NMI and other types AVIC does not deliver are emulated like in the other
//!   modes (the ICR goes to the vCPU's `Lapic` and is routed like an emulated-mode IPI); "target
//!   not running" rings the targets (AVIC already set their IRR bits); invalid IPIs are logged,
//!   counted and dropped.
//! - 402h: trapped writes of the timer registers and of SPIV/ESR/LVTs go to the hypervisor's view
//!   (`Lapic`), level EOIs to the virtual IOAPIC, TMCCT reads are emulated, the rest is #GP.

use super::avic_tables::AvicTables;
use super::selftest_verdict::{self, Verdict};
use super::ExitAction;
use super::MAX_VCPUS;
use crate::hv::host::timer;
use crate::hv::irq::vf_posting::Posted;
use crate::hv::passthrough::iommu_hw;
use crate::hv::passthrough::iommu_hw::VfTable;
use crate::println;
use avic::mode::{self, AvicCounts, IpiAction, NoAccelAction};
use avic::{IncompleteIpi, NoAccel};
use core::sync::atomic::Ordering;
use didvisor::config::GuestConfig;
use didvisor::irqchip::x2apic::MSR_ICR;
use didvisor::irqchip::Lapic;
use iommu::ga::PostRefusal;
use iommu::MsiMessage;
use spin::Mutex;
use svm::exit::ExitCode;
use svm::intercept::IntCtl;
use svm::permission_map::{MsrPermissionMap, MsrRw};
use svm::Vmcb;

/// Invalid IPIs reported one by one per vCPU; the rest are only counted.
const IPI_ERROR_REPORT_LIMIT: u64 = 8;

pub struct AvicGuest {
    /// Backing pages, APIC-ID tables, doorbells and their counters.
    pub tables: AvicTables,
    /// The hypervisor's view of each vCPU's APIC: its timer, and the registers whose writes
    /// AVIC traps (SPIV, ESR, LVTs), and the IPIs it leaves to the hypervisor.
    pub lapics: [Mutex<Lapic>; MAX_VCPUS],
    /// The VF's MSI-X entries posted by the IOMMU.
    posted: Posted,
}

pub struct AvicVcpu {
    guest: &'static AvicGuest,
    vcpu: usize,
    /// This vCPU's AVIC exits (the postings are counted in `tables`).
    counts: AvicCounts,
}

/// Whether guest `g` may use AVIC on the cores with x2APIC ids `cores`; logs why not.
pub fn admit(g: &GuestConfig, cores: impl Iterator<Item = u32>) -> bool {
    let selftest = match selftest_verdict::verdict() {
        Verdict::Unsupported => mode::SelfTest::Unsupported,
        Verdict::Passed(m) => mode::SelfTest::Passed(m),
        _ => mode::SelfTest::NotPassed,
    };
    let vf = match (!g.vfs.is_empty(), iommu_hw::ga_enabled()) {
        (false, _) => mode::VfPosting::NoVf,
        (true, true) => mode::VfPosting::Ga,
        (true, false) => mode::VfPosting::NoGa,
    };
    match mode::admit(selftest, vf, cores) {
        Ok(()) => true,
        Err(why) => {
            log::error!(
                "guest {}: {why} (AVIC self-test: {}); use irq=direct or irq=emulated; the guest does not start",
                g.name,
                selftest_verdict::verdict()
            );
            false
        }
    }
}

/// x2AVIC serves the x2APIC MSRs (accelerated, a 402h exit, or #GP); an intercept would take
/// precedence (APM §15.29.10). IA32_APIC_BASE stays intercepted.
pub fn msr_intercepts(map: &mut MsrPermissionMap) {
    for msr in mode::X2APIC_MSRS {
        if let Some((read, write)) = mode::intercepts_x2apic_msr(msr) {
            // MSRs of the range that are no x2APIC register (reserved offsets, AMD's extended
            // APIC space) stay intercepted: the hypervisor answers #GP itself, as in the other
            // modes, instead of leaving them to what the processor does with offsets outside
            // AVIC's register table.
            let known = didvisor::irqchip::x2apic::Register::from_msr(msr).is_some();
            let _ = map.set(msr, MsrRw::Read, read || !known);
            let _ = map.set(msr, MsrRw::Write, write || !known);
        }
    }
}

impl AvicGuest {
    pub fn new(cores: &[u32]) -> Self {
        AvicGuest {
            tables: AvicTables::new(cores),
            lapics: super::emulated::lapics(),
            posted: Posted::new(),
        }
    }

    /// Back to the state of a new guest (a restart; no vCPU runs): backing pages as built,
    /// every vCPU not running, the hypervisor's APIC views as after INIT.
    pub fn reset(&self) {
        self.tables.reset();
        super::emulated::reset_lapics(&self.lapics);
        self.posted.reset();
    }

    /// MSI-X entry `index` of the guest's VF as a GuestMode IRTE posting `message` to the vCPU
    /// it names (`enabled`: unmasked and one of the guest's vCPUs; else a disabled entry).
    pub fn post_msix(
        &self,
        vf: &VfTable,
        index: u16,
        message: &MsiMessage,
        enabled: bool,
    ) -> Result<(), PostRefusal> {
        let target = enabled.then_some((*message, usize::from(message.dest_id())));
        self.posted.program(&self.tables, vf, index, target)
    }

    /// MSI-X entries of the VF in `slot` written as GuestMode IRTEs, and refused.
    pub fn posted_counts(&self, slot: u8) -> (u64, u64) {
        let slot = usize::from(slot);
        (
            self.posted.posted[slot].load(Ordering::Relaxed),
            self.posted.refused[slot].load(Ordering::Relaxed),
        )
    }
}

impl AvicVcpu {
    pub fn new(guest: &'static AvicGuest, vcpu: usize) -> Self {
        AvicVcpu {
            guest,
            vcpu,
            counts: AvicCounts::default(),
        }
    }

    /// The VMCB's AVIC fields (x2AVIC), and V_INTR_MASKING: a stray host interrupt stays
    /// pending instead of reaching the guest.
    pub fn setup_vmcb(&self, vmcb: &mut Vmcb) {
        vmcb.set_int_ctl(vmcb.int_ctl() | IntCtl::V_INTR_MASKING);
        let setup = self.guest.tables.setup(self.vcpu);
        if let Err(e) = avic::vmcb::enable(vmcb, &setup) {
            panic!("AVIC set-up of vcpu {}: {e:?}", self.vcpu);
        }
    }

    /// Before each VMRUN: post what the emulated timer raised and publish its next deadline
    /// (this core evaluates the IRR at VMRUN, so no doorbell).
    pub fn before_entry(&mut self) {
        let now = timer::nanos();
        let mut lapic = self.guest.lapics[self.vcpu].lock();
        self.guest.tables.settle_timer(self.vcpu, &mut lapic, now);
    }

    pub fn exit(
        &mut self,
        exit: ExitCode,
        info1: u64,
        info2: u64,
        guest: &str,
    ) -> Option<ExitAction> {
        match exit {
            ExitCode::AvicIncompleteIpi => Some(self.incomplete_ipi(info1, info2, guest)),
            ExitCode::AvicNoAccel => Some(self.noaccel(info1, info2, guest)),
            _ => None,
        }
    }

    /// Exit 401h (trap-like: the ICR write is done, RIP is past it).
    fn incomplete_ipi(&mut self, info1: u64, info2: u64, guest: &str) -> ExitAction {
        let ipi = IncompleteIpi::decode(info1, info2);
        self.counts.record_incomplete_ipi(&ipi);
        match mode::incomplete_ipi_action(&ipi) {
            IpiAction::Emulate => ExitAction::ApicWrite {
                msr: MSR_ICR,
                value: ipi.icr.0,
            },
            IpiAction::WakeTargets => {
                let tables = &self.guest.tables;
                for vcpu in (0..tables.vcpu_count()).filter(|&v| v != self.vcpu) {
                    tables.ring(vcpu);
                }
                ExitAction::Resume
            }
            IpiAction::GuestError(cause) => {
                if self.counts.ipi_errors <= IPI_ERROR_REPORT_LIMIT {
                    println!(
                        "guest {guest}: vcpu {}: IPI that AVIC cannot deliver (icr {:#x}, cause {cause:?}, index {}): dropped",
                        self.vcpu, ipi.icr.0, ipi.index
                    );
                }
                ExitAction::Resume
            }
        }
    }

    /// Exit 402h.
    fn noaccel(&mut self, info1: u64, info2: u64, guest: &str) -> ExitAction {
        let n = NoAccel::decode(info1, info2);
        let action = mode::noaccel_action(&n);
        self.counts.record_noaccel(action);
        let (vcpu, tables) = (self.vcpu, &self.guest.tables);
        let now = timer::nanos();
        match action {
            NoAccelAction::TimerWrite { msr } | NoAccelAction::MirrorWrite { msr } => {
                let value = tables.read(vcpu, n.offset);
                let mut lapic = self.guest.lapics[vcpu].lock();
                if let Err(e) = lapic.write_msr(msr, u64::from(value), now) {
                    log::debug!(
                        "guest {guest}: vcpu {vcpu}: trapped write {value:#x} to x2APIC MSR {msr:#x}: {e:?}"
                    );
                }
                // The page shows the register as the APIC has it (an LVT stays masked while the
                // APIC is software-disabled; ESR latches the errors).
                if let Ok(view) = lapic.read_msr(msr, now) {
                    tables.write(vcpu, n.offset, view as u32);
                }
                ExitAction::Resume
            }
            NoAccelAction::LevelEoi { vector } => {
                tables.clear_isr(vcpu, vector);
                ExitAction::IoapicEoi(vector)
            }
            NoAccelAction::ReadTimerCurrent => {
                let msr = mode::msr_of(n.offset);
                let value = self.guest.lapics[vcpu]
                    .lock()
                    .read_msr(msr, now)
                    .unwrap_or(0);
                // Fault-style: RIP is on the RDMSR.
                ExitAction::ReadResult(value)
            }
            NoAccelAction::InjectGp => {
                log::debug!("guest {guest}: vcpu {vcpu}: unaccelerated x2APIC access {n:?}: #GP");
                ExitAction::InjectGp
            }
            NoAccelAction::Ignore => ExitAction::Resume,
        }
    }

    /// This vCPU's counters for its report line.
    pub fn counts(&self) -> AvicCounts {
        let (vcpu, tables) = (self.vcpu, &self.guest.tables);
        let mut c = self.counts;
        c.posted_device = tables.posted_device[vcpu].load(Ordering::Relaxed);
        c.doorbells = tables.doorbells[vcpu].load(Ordering::Relaxed);
        c.posted_timer = tables.posted_timer[vcpu].load(Ordering::Relaxed);
        c.ga_log = tables.ga_log[vcpu].load(Ordering::Relaxed);
        c
    }

    /// IsRunning in the physical APIC-ID table, and with a VF IsRun in its posted IRTEs
    /// (`vf_posting`).
    pub fn set_running(&self, vfs: &[Option<VfTable>], running: bool) {
        self.guest
            .posted
            .set_running(&self.guest.tables, vfs, self.vcpu, running)
    }
}
