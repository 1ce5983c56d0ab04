//! The interrupt backends: how a guest's interrupts reach its vCPUs, one variant per `irq=` mode,
//! each in its own file owning that mode's state.
//!
//! - [`direct`]: the guest owns its core's physical x2APIC; the backend keeps the trapped ICR's
//!   shadow and turns device interrupts into physical IPIs with the guest's vector.
//! - [`emulated`]: a virtual local APIC per vCPU (`didvisor::irqchip::Lapic`); every interrupt is
//!   injected at an exit, a host timer stands in for the virtual APIC timer.
//! - [`avic`]: x2AVIC backing pages and APIC-ID tables (`avic_tables`), the VF's IOMMU-posted
//!   entries (`vf_posting`), the virtual local APIC for what AVIC leaves to the hypervisor.
//!
//! [`GuestIrq`] is the guest's backend (shared by its vCPUs' cores and the service core),
//! [`VcpuIrq`] one vCPU's side of it (its private state and its guest's variant). The run loop,
//! the platform, the x2APIC exits and the passthrough call their methods, each one `match`; the
//! configuration's `IrqMode` is matched only in [`GuestIrq::new`] and [`admit`] (and named back
//! for the host-tested intercept table, `didvisor::intercepts`). A new mode is a new file and a
//! variant in both enums, which the compiler then asks for in every method.

pub mod avic;
pub mod avic_tables;
pub mod direct;
pub mod emulated;
pub mod selftest_verdict;
pub mod vf_posting;

use crate::hv::passthrough::iommu_hw::VfTable;
use core::sync::atomic::Ordering;
use didvisor::config::{GuestConfig, IrqMode};
use didvisor::irqchip::{AccessFault, TriggerMode, WriteEffect};
use iommu::ga::PostRefusal;
use iommu::MsiMessage;
use svm::exit::ExitCode;
use svm::intercept::{InterceptMisc1, InterceptMisc2, InterceptMisc3};
use svm::permission_map::MsrPermissionMap;
use svm::Vmcb;

/// Most vCPUs per guest (the backends' per-vCPU tables are this long).
pub const MAX_VCPUS: usize = 16;
/// The emulated local APIC's timer clock (the "bus clock"); the guest calibrates it like any other.
pub const VIRTUAL_APIC_TIMER_HZ: u64 = 1_000_000_000;

/// A guest's interrupt backend.
// Built once per guest inside its `Vm` (a static), never moved after: the size of the largest
// variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum GuestIrq {
    Direct(direct::DirectGuest),
    Emulated(emulated::EmulatedGuest),
    Avic(avic::AvicGuest),
}

/// One vCPU's side of its guest's interrupt backend.
pub enum VcpuIrq {
    Direct(direct::DirectVcpu),
    Emulated(emulated::EmulatedVcpu),
    Avic(avic::AvicVcpu),
}

/// What the run loop does after the backend handled an exit.
pub enum ExitAction {
    Resume,
    /// An emulated register read: the value goes to EDX:EAX, RIP past the RDMSR.
    ReadResult(u64),
    /// The guest wrote `value` to x2APIC register `msr` and RIP is already past the write (a
    /// trap-like exit): handle it as an intercepted write.
    ApicWrite {
        msr: u32,
        value: u64,
    },
    /// A level-triggered interrupt was retired: the IOAPIC may deliver again.
    IoapicEoi(u8),
    /// The guest gets #GP(0).
    InjectGp,
}

/// What a host vector a passed-through VF raised on a guest core (MSI-X entry `index`) is.
pub enum HostVector {
    /// The guest vector it stands for.
    Guest(u8),
    /// An entry the guest has not programmed (or disabled): nothing to deliver.
    Unassigned,
    /// This mode's VF interrupts never arrive as host vectors: counted, not delivered.
    Stray,
}

/// How a virtual device's interrupt reached the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiPath {
    /// Taken by the guest without an exit (a physical IPI or a posted IRR bit).
    Exitless,
    /// Injected at an exit of the vCPU (the baseline).
    AtExit,
}

/// What one MSI-X entry of a passed-through VF becomes.
pub enum MsixRoute {
    /// A remapped (not posted) entry: this host vector on the target vCPU's core.
    Remapped { vector: u8 },
    /// The backend wrote a posted entry (or a disabled one), or refused the message.
    Posted(Result<(), PostRefusal>),
    /// Emulated mode, and no device vector is left for this entry (the guest's VFs took them).
    NoHostVector,
}

/// Whether guest `g` may start on the cores with x2APIC ids `cores` in its mode; logs why not.
pub fn admit(g: &GuestConfig, cores: impl Iterator<Item = u32>) -> bool {
    match g.irq {
        IrqMode::Direct | IrqMode::Emulated => true,
        IrqMode::Avic => avic::admit(g, cores),
    }
}

impl GuestIrq {
    /// The backend of a guest in `mode` whose vCPU i runs on the core with x2APIC id `cores[i]`.
    pub fn new(mode: IrqMode, cores: &[u32]) -> Self {
        match mode {
            IrqMode::Direct => GuestIrq::Direct(direct::DirectGuest::new()),
            IrqMode::Emulated => GuestIrq::Emulated(emulated::EmulatedGuest::new()),
            IrqMode::Avic => GuestIrq::Avic(avic::AvicGuest::new(cores)),
        }
    }

    /// vCPU `vcpu`'s side, built on its own core (the emulated mode measures its APIC timer).
    pub fn vcpu(&'static self, vcpu: usize) -> VcpuIrq {
        match self {
            GuestIrq::Direct(_) => VcpuIrq::Direct(direct::DirectVcpu),
            GuestIrq::Emulated(g) => VcpuIrq::Emulated(emulated::EmulatedVcpu::new(g, vcpu)),
            GuestIrq::Avic(g) => VcpuIrq::Avic(avic::AvicVcpu::new(g, vcpu)),
        }
    }

    /// The intercept words a vCPU's VMCB starts with (`didvisor::intercepts::initial`).
    pub fn intercepts(&self) -> (InterceptMisc1, InterceptMisc2, InterceptMisc3) {
        let mode = match self {
            GuestIrq::Direct(_) => IrqMode::Direct,
            GuestIrq::Emulated(_) => IrqMode::Emulated,
            GuestIrq::Avic(_) => IrqMode::Avic,
        };
        didvisor::intercepts::initial(mode)
    }

    /// Opens the x2APIC MSRs this mode leaves to the guest or the processor in `map` (which
    /// starts with every MSR intercepted).
    pub fn msr_intercepts(&self, map: &mut MsrPermissionMap) {
        match self {
            GuestIrq::Direct(_) => direct::msr_intercepts(map),
            GuestIrq::Emulated(_) => {}
            GuestIrq::Avic(_) => avic::msr_intercepts(map),
        }
    }

    /// A guest read of x2APIC MSR `msr` on vCPU `vcpu` that exited (`now`: hypervisor ns).
    pub fn apic_read(&self, vcpu: usize, msr: u32, now: u64) -> Result<u64, AccessFault> {
        match self {
            GuestIrq::Direct(g) => g.apic_read(vcpu, msr),
            GuestIrq::Emulated(g) => g.lapics[vcpu].lock().read_msr(msr, now),
            GuestIrq::Avic(g) => g.lapics[vcpu].lock().read_msr(msr, now),
        }
    }

    /// A guest write of x2APIC MSR `msr` on vCPU `vcpu` that exited; the caller routes the IPI or
    /// forwards the EOI that comes back.
    pub fn apic_write(
        &self,
        vcpu: usize,
        msr: u32,
        value: u64,
        now: u64,
    ) -> Result<WriteEffect, AccessFault> {
        match self {
            GuestIrq::Direct(g) => g.apic_write(vcpu, msr, value),
            GuestIrq::Emulated(g) => g.lapics[vcpu].lock().write_msr(msr, value, now),
            GuestIrq::Avic(g) => g.lapics[vcpu].lock().write_msr(msr, value, now),
        }
    }

    /// Raises `vector` (legal, 16-255) in vCPU `vcpu`, which runs on the core with x2APIC id
    /// `core` (`u32::MAX`: not running yet).
    pub fn interrupt_vcpu(&self, vcpu: usize, core: u32, vector: u8, trigger: TriggerMode) {
        match self {
            GuestIrq::Direct(g) => g.interrupt_vcpu(core, vector),
            GuestIrq::Emulated(g) => g.interrupt_vcpu(vcpu, core, vector, trigger),
            GuestIrq::Avic(g) => g
                .tables
                .post_device(vcpu, vector, trigger == TriggerMode::Level),
        }
    }

    /// A virtual device's message interrupt (edge, legal `vector`) for vCPU `vcpu` on the core
    /// with x2APIC id `core`, sent from the service core: `direct` — a physical IPI with the
    /// guest's vector; `avic` — the vector in the backing page's IRR and a doorbell; `emulated` —
    /// set in the virtual APIC, injected at the exit the kick IPI forces.
    pub fn device_msi(&self, vcpu: usize, core: u32, vector: u8) -> MsiPath {
        match self {
            GuestIrq::Direct(g) => {
                g.interrupt_vcpu(core, vector);
                MsiPath::Exitless
            }
            GuestIrq::Emulated(g) => {
                g.interrupt_vcpu(vcpu, core, vector, TriggerMode::Edge);
                MsiPath::AtExit
            }
            GuestIrq::Avic(g) => {
                g.tables.post_device(vcpu, vector, false);
                MsiPath::Exitless
            }
        }
    }

    /// The service core's periodic work for this guest's interrupts.
    pub fn service_tick(&self, now: u64) {
        match self {
            GuestIrq::Direct(_) | GuestIrq::Emulated(_) => {}
            GuestIrq::Avic(g) => g.tables.expire_timers(&g.lapics, now),
        }
    }

    /// A restart: the mode's state back to that of a new guest (no vCPU of it runs).
    pub fn reset(&self) {
        match self {
            GuestIrq::Direct(g) => g.reset(),
            GuestIrq::Emulated(g) => g.reset(),
            GuestIrq::Avic(g) => g.reset(),
        }
    }

    /// Whether HLT exits (else the guest halts its core for real, and only an NMI makes a vCPU
    /// halted with interrupts off look at itself).
    pub fn hlt_exits(&self) -> bool {
        match self {
            GuestIrq::Emulated(_) => true,
            GuestIrq::Direct(_) | GuestIrq::Avic(_) => false,
        }
    }

    /// What MSI-X entry `index` of the guest's VF `vf` becomes for the guest's `message`;
    /// `enabled`: the entry is unmasked and names one of the guest's vCPUs; `slot`: the device
    /// vector the VF has for it (`VfHost::vector_slot`, used in emulated mode).
    pub fn remap_msix(
        &self,
        vf: &VfTable,
        slot: Option<u8>,
        index: u16,
        message: &MsiMessage,
        enabled: bool,
    ) -> MsixRoute {
        match self {
            GuestIrq::Direct(_) => MsixRoute::Remapped {
                vector: message.vector(),
            },
            GuestIrq::Emulated(g) => match slot {
                Some(slot) => MsixRoute::Remapped {
                    vector: g.remap_msix(slot, message, enabled),
                },
                None => MsixRoute::NoHostVector,
            },
            GuestIrq::Avic(g) => MsixRoute::Posted(g.post_msix(vf, index, message, enabled)),
        }
    }

    /// What host vector `VECTOR_DEVICE_BASE + index`, taken on a guest core, stands for (`index`:
    /// a device-vector slot of one of the guest's VFs).
    pub fn host_vector(&self, index: usize) -> HostVector {
        match self {
            // The guest's own vector on the guest's core: it never reaches the hypervisor.
            GuestIrq::Direct(_) => HostVector::Unassigned,
            GuestIrq::Emulated(g) => g.host_vector(index),
            GuestIrq::Avic(_) => HostVector::Stray,
        }
    }

    /// An IOMMU GA log entry named vCPU `vcpu` (a VF interrupt posted while it was not
    /// running): wake it. False if this guest has no such posting vCPU.
    pub fn ga_log_entry(&self, vcpu: usize) -> bool {
        match self {
            GuestIrq::Direct(_) | GuestIrq::Emulated(_) => false,
            GuestIrq::Avic(g) => g.tables.ga_log_entry(vcpu),
        }
    }

    /// MSI-X entries of the VF in `slot` posted and refused (posting modes only), for the
    /// guest's end report.
    pub fn posted_msix(&self, slot: u8) -> Option<(u64, u64)> {
        match self {
            GuestIrq::Direct(_) | GuestIrq::Emulated(_) => None,
            GuestIrq::Avic(g) => Some(g.posted_counts(slot)),
        }
    }
}

impl VcpuIrq {
    /// This mode's fields of the vCPU's VMCB (after nested paging is enabled in it).
    pub fn setup_vmcb(&self, vmcb: &mut Vmcb) {
        match self {
            VcpuIrq::Direct(_) | VcpuIrq::Emulated(_) => {}
            VcpuIrq::Avic(v) => v.setup_vmcb(vmcb),
        }
    }

    /// Before each VMRUN: whatever became pending for the guest.
    pub fn before_entry(&mut self, vmcb: &mut Vmcb) {
        match self {
            VcpuIrq::Direct(_) => {}
            VcpuIrq::Emulated(v) => v.before_entry(vmcb),
            VcpuIrq::Avic(v) => v.before_entry(),
        }
    }

    /// An exit only this mode causes; `None` if it is none of this mode's (the caller ends the
    /// guest). `guest` names the guest in reports.
    pub fn exit(
        &mut self,
        exit: ExitCode,
        info1: u64,
        info2: u64,
        vmcb: &mut Vmcb,
        guest: &str,
    ) -> Option<ExitAction> {
        match self {
            VcpuIrq::Direct(_) => None,
            VcpuIrq::Emulated(_) => emulated::exit(exit, vmcb),
            VcpuIrq::Avic(v) => v.exit(exit, info1, info2, guest),
        }
    }

    /// Whether device interrupts can wait in this core's physical APIC while the guest runs with
    /// IF clear (no INTR exit then), so every exit must take them into the virtual APIC.
    pub fn collects_at_every_exit(&self) -> bool {
        match self {
            VcpuIrq::Emulated(_) => true,
            VcpuIrq::Direct(_) | VcpuIrq::Avic(_) => false,
        }
    }

    /// At a HLT exit (with interrupts enabled): whether an interrupt is there to wake the vCPU.
    pub fn wake_pending(&self, now: u64) -> bool {
        match self {
            VcpuIrq::Emulated(v) => v.wake_pending(now),
            // HLT does not exit in these modes; should it, there is nothing to wait for here.
            VcpuIrq::Direct(_) | VcpuIrq::Avic(_) => true,
        }
    }

    /// The vCPU starts running (first VMRUN) or stops (parked, ended); `vfs`: the guest's VFs'
    /// tables by slot.
    pub fn set_running(&self, vfs: &[Option<VfTable>], running: bool) {
        match self {
            VcpuIrq::Direct(_) | VcpuIrq::Emulated(_) => {}
            VcpuIrq::Avic(v) => v.set_running(vfs, running),
        }
    }

    /// After the vCPU's last exit: leave this core's APIC as the hypervisor keeps it (in direct
    /// mode nothing of the guest's stays in it, for a restart on this core).
    pub fn leave_core(&self) {
        match self {
            VcpuIrq::Direct(_) => {
                crate::hv::host::x2apic::quiesce();
                let pending = crate::hv::host::x2apic::flush_guest_vectors();
                if pending > 0 {
                    log::debug!(
                        "direct mode: {pending} guest vectors left pending in this core's IRR"
                    );
                }
            }
            VcpuIrq::Emulated(_) => emulated::stop_host_timer(),
            VcpuIrq::Avic(_) => {}
        }
    }

    /// The end of the vCPU's interrupt report line: what was injected at exits, and this
    /// mode's counters.
    pub fn report(&self) -> VcpuReport<'_> {
        VcpuReport(self)
    }
}

/// How this guest's virtual-device interrupts reached its vCPUs, for the end-of-guest report.
pub struct DeviceReport<'a>(&'a GuestIrq);

impl GuestIrq {
    pub fn device_report(&self) -> DeviceReport<'_> {
        DeviceReport(self)
    }
}

impl core::fmt::Display for DeviceReport<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            GuestIrq::Direct(g) => write!(
                f,
                "{} sent to the vCPUs' cores as physical IPIs (no exits)",
                g.ipis.load(Ordering::Relaxed)
            ),
            GuestIrq::Emulated(_) => write!(f, "injected at exits (see the vCPU lines)"),
            GuestIrq::Avic(_) => write!(f, "set in the vCPUs' backing pages (no exits)"),
        }
    }
}

/// `N injected at exits`, and for `irq=avic` the counter line (with its line break).
pub struct VcpuReport<'a>(&'a VcpuIrq);

impl core::fmt::Display for VcpuReport<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            VcpuIrq::Direct(_) => write!(f, "0 injected at exits"),
            VcpuIrq::Emulated(v) => write!(f, "{} injected at exits", v.injected()),
            VcpuIrq::Avic(v) => write!(f, "0 injected at exits\n  {}", v.counts()),
        }
    }
}
