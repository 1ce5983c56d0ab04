//! A guest's virtual platform as the hypervisor drives it: the legacy devices and the IOAPIC (one
//! set per guest, shared by its vCPUs), the per-vCPU interrupt state, and the routing of device
//! interrupts to vCPUs in each interrupt mode.
//!
//! The service core ticks every guest's timers (`service_tick`); a vCPU's core handles its own
//! guest's port and MMIO accesses. Interrupts reach a vCPU the way the guest's interrupt backend
//! (`irq`, one per `irq=` mode) does it:
//! - in `emulated` mode: set in its virtual local APIC, plus a kick IPI so its core exits and injects;
//! - in `direct` mode: as a physical fixed IPI with the guest's vector to its core, taken through the
//!   guest's IDT with no exit;
//! - in `avic` mode: set in its AVIC backing page's IRR, plus a doorbell to its core, taken with no
//!   exit (see `irq::avic_tables`).
//!
//! Lock order: legacy devices, then IOAPIC, then a local APIC. No lock is held across VMRUN.

use crate::hv::host::timer;
use crate::hv::irq::{GuestIrq, MsiPath, MAX_VCPUS};
use crate::hv::vm::guest_pci::{GuestPci, VIRTIO_DEVFN};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use devices::{IrqChange, LegacyPlatform, PortEffect};
use didvisor::config::IrqMode;
use didvisor::irqchip::route::{route_ioapic, IpiRoute};
use didvisor::irqchip::{Delivery, Ioapic, TriggerMode};
use didvisor::nmi::NmiLatch;
use spin::Mutex;

/// Console output bytes buffered between drains.
pub const CONSOLE_RING: usize = 4096;
/// Wall-clock time the virtual RTC starts at (the hypervisor has no trusted clock of its own yet):
/// 2026-01-01 00:00:00 UTC.
pub const RTC_EPOCH: u64 = 1_767_225_600;

/// ISA IRQ 0 (the PIT) arrives on GSI 2 (the MADT's interrupt source override); the others map 1:1.
fn isa_irq_to_gsi(irq: u8) -> u32 {
    if irq == 0 {
        2
    } else {
        u32::from(irq)
    }
}

/// What other cores need to know about one vCPU.
pub struct VcpuSlot {
    /// x2APIC id of the physical core running it (u32::MAX until it runs).
    pub core_apic_id: AtomicU32,
    /// Interrupts delivered to this vCPU, for the statistics.
    pub delivered: AtomicU64,
    /// The guest NMI latched for this vCPU (`world::apic::raise_nmi`, injected by its core).
    pub nmi: NmiLatch,
    /// Start-up of an application processor: [`WAIT_INIT`], [`WAIT_SIPI`], or
    /// `STARTED | vector` once a startup IPI arrived after an INIT.
    startup: AtomicU32,
}

const WAIT_INIT: u32 = 0;
const WAIT_SIPI: u32 = 1;
const STARTED: u32 = 0x100;

impl VcpuSlot {
    /// An INIT IPI: a vCPU not yet started now waits for its startup IPI. (Re-initialising a
    /// running vCPU is not supported; Linux only does it for CPU hot-unplug.)
    pub fn init(&self) {
        let _ =
            self.startup
                .compare_exchange(WAIT_INIT, WAIT_SIPI, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// A startup IPI: honoured once, after an INIT (the second SIPI Linux sends is ignored, as a
    /// processor that already started ignores it).
    pub fn startup(&self, vector: u8) {
        let _ = self.startup.compare_exchange(
            WAIT_SIPI,
            STARTED | u32::from(vector),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// A restart: not running, waiting for INIT as at first boot, no guest NMI latched.
    fn reset(&self) {
        self.core_apic_id.store(u32::MAX, Ordering::Release);
        self.startup.store(WAIT_INIT, Ordering::SeqCst);
        self.nmi.clear();
    }

    /// Waits (on the vCPU's own core) for INIT + SIPI; `None` if the guest is stopping first
    /// (`stop`: it ends or restarts).
    pub fn wait_for_startup(&self, stop: &core::sync::atomic::AtomicBool) -> Option<u8> {
        loop {
            let s = self.startup.load(Ordering::SeqCst);
            if s & STARTED != 0 {
                return Some(s as u8);
            }
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            core::hint::spin_loop();
        }
    }
}

/// What a guest asked of its machine through a port, with the words its log line gives.
pub enum GuestRequest {
    /// Power off (or a sleep state it cannot have): the guest ends.
    End(&'static str),
    /// Reset: the guest restarts or ends, as its policy says.
    Reset(&'static str),
}

pub struct VirtualPlatform {
    /// How interrupts reach the vCPUs (and the state that takes).
    pub irq: GuestIrq,
    pub legacy: Mutex<LegacyPlatform<CONSOLE_RING, GuestPci>>,
    pub ioapic: Mutex<Ioapic>,
    pub vcpus: [VcpuSlot; MAX_VCPUS],
    pub vcpu_count: usize,
    /// x2APIC ids of the physical cores the vCPUs run on (fixed by the configuration).
    vcpu_cores: [u32; MAX_VCPUS],
    /// Device interrupts routed.
    pub device_irqs: AtomicU64,
    /// Interrupts the guest aimed at vectors 0-15 (IPIs, IOAPIC entries, VF MSI-X), dropped.
    pub illegal_vectors: AtomicU64,
    /// vCPUs halted with interrupts disabled for good.
    parked: AtomicU32,
    /// Bumped whenever the guest's nested page tables lose a mapping; each vCPU flushes its TLB
    /// before its next VMRUN when it sees a new value.
    pub npt_generation: AtomicU64,
    /// When the legacy devices next need a tick (u64::MAX: none), so the service core's loop
    /// does not take their lock (and slow down the vCPU's port accesses) for nothing.
    next_tick: AtomicU64,
}

impl VirtualPlatform {
    pub fn new(mode: IrqMode, vcpu_cores: &[u32]) -> Self {
        let vcpu_count = vcpu_cores.len().min(MAX_VCPUS);
        let mut cores = [u32::MAX; MAX_VCPUS];
        cores[..vcpu_count].copy_from_slice(&vcpu_cores[..vcpu_count]);
        VirtualPlatform {
            irq: GuestIrq::new(mode, &vcpu_cores[..vcpu_count]),
            legacy: Mutex::new(LegacyPlatform::new(RTC_EPOCH, timer::nanos())),
            ioapic: Mutex::new(Ioapic::new()),
            vcpus: core::array::from_fn(|_| VcpuSlot {
                core_apic_id: AtomicU32::new(u32::MAX),
                delivered: AtomicU64::new(0),
                nmi: NmiLatch::new(),
                startup: AtomicU32::new(WAIT_INIT),
            }),
            vcpu_count,
            vcpu_cores: cores,
            device_irqs: AtomicU64::new(0),
            illegal_vectors: AtomicU64::new(0),
            parked: AtomicU32::new(0),
            npt_generation: AtomicU64::new(0),
            next_tick: AtomicU64::new(u64::MAX),
        }
    }

    /// A restart (no vCPU of the guest runs): the devices, the IOAPIC, the vCPUs' start-up and
    /// NMI state and the interrupt backend as at the guest's first boot. The counters
    /// (`device_irqs`, `illegal_vectors`, `delivered`) are kept: they cover the guest's life.
    /// Console output not yet taken is dropped (the caller drains it first).
    pub fn reset(&self) {
        let now = timer::nanos();
        {
            let mut legacy = self.legacy.lock();
            legacy.reset(RTC_EPOCH, now);
            // A virtual device forgets the last boot's rings before the RAM holding them is
            // cleared and reloaded (its backend would otherwise still serve them).
            if let Some(GuestPci::Virtual(d)) = legacy.pci_bus().get(VIRTIO_DEVFN) {
                d.restart();
            }
        }
        self.next_tick.store(u64::MAX, Ordering::Release);
        *self.ioapic.lock() = Ioapic::new();
        for slot in &self.vcpus[..self.vcpu_count] {
            slot.reset();
        }
        self.parked.store(0, Ordering::SeqCst);
        self.irq.reset();
    }

    /// The x2APIC id of the physical core that runs `vcpu`.
    pub fn vcpu_core_apic_id(&self, vcpu: usize) -> u32 {
        self.vcpu_cores.get(vcpu).copied().unwrap_or(u32::MAX)
    }

    /// Records that a vCPU parked (HLT with interrupts disabled); true when that makes every
    /// vCPU of the guest parked and none has an NMI latched that would wake it: the guest is
    /// halted forever.
    pub fn park(&self) -> bool {
        self.parked.fetch_add(1, Ordering::SeqCst) + 1 == self.vcpu_count as u32
            && !self.vcpus[..self.vcpu_count]
                .iter()
                .any(|v| v.nmi.is_pending())
    }

    /// A parked vCPU was woken (by an NMI).
    pub fn unpark(&self) {
        self.parked.fetch_sub(1, Ordering::SeqCst);
    }

    /// Feeds an interrupt-line change of a legacy device through the IOAPIC to the vCPUs.
    pub fn irq_change(&self, change: IrqChange) {
        let (gsi, edges) = match change {
            IrqChange::Level { isa_irq, level } => {
                let d = self.ioapic.lock().set_level(isa_irq_to_gsi(isa_irq), level);
                if let Some(d) = d {
                    self.deliver(d);
                }
                return;
            }
            IrqChange::Edges { isa_irq, count } => (isa_irq_to_gsi(isa_irq), count),
        };
        // An edge source that rose several times since the last look is one interrupt: the guest
        // could not have told them apart either (the IRR bit is single).
        if edges > 0 {
            let d = {
                let mut io = self.ioapic.lock();
                io.set_level(gsi, false);
                io.set_level(gsi, true)
            };
            if let Some(d) = d {
                self.deliver(d);
            }
            self.ioapic.lock().set_level(gsi, false);
        }
    }

    /// Routes one IOAPIC message to its destination vCPU(s).
    pub fn deliver(&self, d: Delivery) {
        self.device_irqs.fetch_add(1, Ordering::Relaxed);
        let trigger = if d.level_triggered {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        };
        match route_ioapic(&d, self.vcpu_count) {
            IpiRoute::Interrupt { targets, vector } => {
                for vcpu in targets.iter().take_while(|&v| v < self.vcpu_count) {
                    self.interrupt_vcpu(vcpu, vector, trigger);
                }
            }
            other => log::debug!(
                "ioapic pin {} (vector {:#x}): {other:?} is not supported; dropped",
                d.gsi,
                d.vector
            ),
        }
    }

    /// Raises `vector` in vCPU `vcpu` the way its interrupt mode does it.
    pub fn interrupt_vcpu(&self, vcpu: usize, vector: u8, trigger: TriggerMode) {
        // Vectors 0-15 are never delivered by an APIC (an illegal vector is an APIC error on the
        // sender and the receiver); as physical IPIs from the service core they would raise
        // errors there. Dropped and counted, in every mode.
        if vector < didvisor::irqchip::MIN_VECTOR {
            self.illegal_vectors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let slot = &self.vcpus[vcpu];
        slot.delivered.fetch_add(1, Ordering::Relaxed);
        let core = slot.core_apic_id.load(Ordering::Acquire);
        self.irq.interrupt_vcpu(vcpu, core, vector, trigger);
    }

    /// A virtual device's MSI `message`: to the vCPU its destination names, the way the
    /// interrupt mode does it. `None` if it names no vCPU or an illegal vector (dropped; the
    /// latter counted).
    pub fn device_msi(&self, message: iommu::MsiMessage) -> Option<MsiPath> {
        let vcpu = usize::from(message.dest_id());
        let vector = message.vector();
        if vcpu >= self.vcpu_count || !message.is_interrupt_address() {
            return None;
        }
        if vector < didvisor::irqchip::MIN_VECTOR {
            self.illegal_vectors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.device_irqs.fetch_add(1, Ordering::Relaxed);
        let slot = &self.vcpus[vcpu];
        slot.delivered.fetch_add(1, Ordering::Relaxed);
        let core = slot.core_apic_id.load(Ordering::Acquire);
        Some(self.irq.device_msi(vcpu, core, vector))
    }

    /// Acts on what a port access caused; returns what the guest asked of its machine.
    pub fn port_effect(&self, effect: PortEffect) -> Option<GuestRequest> {
        match effect {
            PortEffect::None | PortEffect::TimerReprogrammed => None,
            PortEffect::Irq(change) => {
                self.irq_change(change);
                None
            }
            PortEffect::PowerOff => Some(GuestRequest::End("power-off request (ACPI PM1a SLP_EN)")),
            PortEffect::Reset => Some(GuestRequest::Reset(
                "reset request (port 0xCF9 or the keyboard controller's 0x64)",
            )),
            PortEffect::Sleep(_) => Some(GuestRequest::End(
                "sleep request for a state other than S5 (not supported)",
            )),
        }
    }

    /// The service core's periodic work for this guest: the interrupt backend's (`irq=avic`:
    /// the vCPUs' LAPIC timers, posted with a doorbell), and device timers, when one is due.
    pub fn service_tick(&self, now: u64) {
        self.irq.service_tick(now);
        if now < self.next_tick.load(Ordering::Acquire) {
            return;
        }
        let change = {
            let mut legacy = self.legacy.lock();
            let change = legacy.tick(now);
            self.note_deadline(&legacy);
            change
        };
        if let Some(change) = change {
            self.irq_change(change);
        }
    }

    /// Records when the devices next need a tick; call with the devices locked after any access
    /// that may have reprogrammed a timer.
    pub fn note_deadline(&self, legacy: &LegacyPlatform<CONSOLE_RING, GuestPci>) {
        let deadline = legacy.next_timer_deadline().unwrap_or(u64::MAX);
        self.next_tick.store(deadline, Ordering::Release);
    }
}
