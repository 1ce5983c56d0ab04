//! The AMD-Vi IOMMUs found in IVRS, brought up with every device blocked (no DMA, no interrupts),
//! then opened device by device: the hypervisor's own NVMe PF for its admin DMA, and each
//! passed-through VF onto exactly its guest's memory. The register and table logic is the `iommu`
//! crate's; here are the memory, the MMIO window and the lock.

use crate::hv::host::acpi::IommuDescription;
use crate::hv::host::{memory, phys};
use crate::println;
use iommu::driver::{Config, GaLogConfig, Iommu};
use iommu::ga::{GaLogEntry, GaTag};
use iommu::mem::{FrameSource, Hpa, PhysAccess};
use iommu::{DeviceId, InterruptTable, IrteFormat, Mmio};
use spin::{Mutex, Once};

/// The IOMMU's register block, identity-mapped (16 KiB; the event/command pointers are at 0x2000).
pub struct Registers(phys::Mmio);

const REGISTERS_LEN: u64 = 16 * 1024;

impl Mmio for Registers {
    fn read64(&self, offset: usize) -> u64 {
        self.0.read(offset as u64)
    }

    fn write64(&mut self, offset: usize, value: u64) {
        self.0.write(offset as u64, value)
    }
}

/// Tables, rings and page tables through the identity map; new frames from the hypervisor's
/// allocator. The traits are the `pagetable` crate's (`iommu::mem` and `svm::paging` re-export the
/// same ones), so this one implementation serves the IOMMU's structures and nested page tables
/// alike.
pub struct HostMemory;

impl PhysAccess for HostMemory {
    fn read_u64(&self, pa: Hpa) -> u64 {
        phys::Tables.read_u64(pa)
    }

    fn write_u64(&mut self, pa: Hpa, value: u64) {
        phys::Tables.write_u64(pa, value)
    }
}

impl FrameSource for HostMemory {
    fn alloc_frame(&mut self) -> Option<Hpa> {
        memory::try_alloc_zeroed(4096, 4096, memory::MAPPED_LIMIT).map(Hpa)
    }
}

pub static IOMMU: Once<Mutex<Iommu<Registers>>> = Once::new();

/// What the interrupt backends need of a VF: its remapping table and device, and the guest's index.
pub struct VfTable<'a> {
    pub irt: &'a InterruptTable,
    pub device: DeviceId,
    pub guest: u8,
    /// The VF's place among the guest's VFs.
    pub slot: u8,
}

/// Why an interrupt remapping entry did not take effect.
#[derive(Debug)]
pub enum IrteWriteError {
    /// The table refused the entry (index or format).
    Write(iommu::irte::IrteError),
    /// The entry is written, but the IOMMU may still use a cached copy of the old one.
    Invalidate(iommu::driver::DriverError),
}

impl core::fmt::Display for IrteWriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Write(e) => write!(f, "cannot write its remapping entry ({e:?})"),
            Self::Invalidate(e) => write!(f, "invalidating its interrupt table failed ({e:?})"),
        }
    }
}

/// Writes entry `index` of `device`'s interrupt table and makes the IOMMU drop what it cached of
/// it (INVALIDATE_INTERRUPT_TABLE + COMPLETION_WAIT). The caller reports an error.
pub fn write_irte(
    irt: &InterruptTable,
    device: DeviceId,
    index: u16,
    irte: iommu::Irte,
) -> Result<(), IrteWriteError> {
    irt.set(&mut HostMemory, index, irte)
        .map_err(IrteWriteError::Write)?;
    invalidate_irt(device)
}

/// Disables every entry of `device`'s interrupt table and makes the IOMMU drop what it cached of
/// them (a restart of the guest that owns the device).
pub fn clear_irt(irt: &InterruptTable, device: DeviceId) -> Result<(), IrteWriteError> {
    irt.clear(&mut HostMemory);
    invalidate_irt(device)
}

/// Makes the IOMMU drop what it cached of `device`'s interrupt table (nothing to do without one).
fn invalidate_irt(device: DeviceId) -> Result<(), IrteWriteError> {
    match IOMMU.get() {
        Some(unit) => unit
            .lock()
            .invalidate_interrupt_table(&mut HostMemory, device)
            .map_err(IrteWriteError::Invalidate),
        None => Ok(()),
    }
}

/// Brings up the IOMMU with all devices blocked. The caller reports failure.
pub fn init(desc: IommuDescription) -> Result<(), iommu::driver::DriverError> {
    let device_table_pages = 512; // every requester id: 64 Ki entries of 32 bytes
    let config = Config {
        device_table: Hpa(memory::alloc_zeroed(device_table_pages * 4096, 4096)),
        device_table_pages,
        command_buffer: Hpa(memory::alloc_zeroed(4096, 4096)),
        command_log2: 8,
        event_log: Hpa(memory::alloc_zeroed(4096, 4096)),
        event_log2: 8,
        semaphore: Hpa(memory::alloc_zeroed(4096, 4096)),
        irte_format: IrteFormat::Bits128,
        x2apic: true,
        control: desc.control,
        spins: 50_000_000,
        ga_log: Some(GaLogConfig {
            base: Hpa(memory::alloc_zeroed(4096, 4096)),
            shadow_tail: Hpa(memory::alloc_zeroed(4096, 4096)),
        }),
    };
    let unit = Iommu::init(
        // SAFETY: the MMIO block IVRS names for this IOMMU; only the iommu driver uses it.
        Registers(unsafe { phys::Mmio::new(desc.mmio_base, REGISTERS_LEN) }),
        &mut HostMemory,
        &config,
    )?;
    let ga = if unit.ga_enabled() {
        "guest virtual APIC mode (GAEn, GAMEn 001b, GA log of 512 entries)"
    } else {
        "no guest virtual APIC mode (EFR lacks GASup or GAMSup 001b)"
    };
    println!(
        "iommu: enabled at {:#x}: all devices blocked, 128-bit IRTEs with x2APIC destinations, {ga}",
        desc.mmio_base
    );
    IOMMU.call_once(|| Mutex::new(unit));
    Ok(())
}

/// Event lines printed per poll at most (a guest's device can fault at will: the rest counted).
const EVENTS_PER_POLL: usize = 8;

/// Prints what the IOMMUs logged since the last call (QEMU's emulation never writes the log).
/// The events are taken under the IOMMU's lock and printed after it is released; a device
/// faulting in a loop gets a few lines a second and a count.
pub fn poll_events() {
    let Some(unit) = IOMMU.get() else { return };
    let mut kept: [Option<iommu::event::Event>; EVENTS_PER_POLL] = [None; EVENTS_PER_POLL];
    let mut total = 0usize;
    {
        let mut unit = unit.lock();
        let _ = unit.poll_events(&mut HostMemory, &mut |event| {
            if let Some(slot) = kept.get_mut(total) {
                *slot = Some(event);
            }
            total += 1;
        });
    }
    for event in kept.iter().flatten() {
        crate::guest_println!("iommu: event: {event}");
    }
    if total > EVENTS_PER_POLL {
        crate::guest_println!("iommu: {} more events not shown", total - EVENTS_PER_POLL);
    }
}

/// Whether an IOMMU is up in guest virtual APIC mode (`irq=avic` guests may then have VFs).
pub fn ga_enabled() -> bool {
    IOMMU.get().is_some_and(|u| u.lock().ga_enabled())
}

/// GA log entries taken per call at most (the rest wait for the next call).
const GA_BATCH: usize = 32;

/// The service core, in its loop: each GA log entry names (by GATag) a vCPU the IOMMU posted a
/// VF interrupt to while its IRTE said not running. The IRR bit is already set; ring the vCPU
/// (it may have started running since), or it finds the bit at its next VMRUN. `ring` is the
/// caller's (the layer that knows the guests): false when the tag names no AVIC vCPU.
pub fn poll_ga_log(ring: fn(GaTag) -> bool) {
    let Some(unit) = IOMMU.get() else { return };
    let mut tags = [0u32; GA_BATCH];
    let mut n = 0;
    let (mut beyond, mut unknown) = (0u32, 0u32);
    let overflowed;
    {
        let Some(mut unit) = unit.try_lock() else {
            return;
        };
        if !unit.ga_enabled() {
            return;
        }
        let poll = unit.poll_ga_log(&mut HostMemory, &mut |entry| match entry {
            GaLogEntry::GuestNotRunning { tag, .. } if n < GA_BATCH => {
                tags[n] = tag;
                n += 1;
            }
            GaLogEntry::GuestNotRunning { .. } => beyond += 1,
            GaLogEntry::Other { .. } => unknown += 1,
        });
        overflowed = poll.overflowed;
    }
    // Printed after the lock is released (a guest's device decides how often these happen).
    if beyond + unknown > 0 || overflowed {
        crate::guest_println!(
            "iommu: GA log: {beyond} entries beyond this batch (vCPUs find them at VMRUN), {unknown} unknown{}",
            if overflowed { "; it overflowed, logging restarted" } else { "" }
        );
    }
    for &tag in &tags[..n] {
        let woken = GaTag::decode(tag).is_some_and(ring);
        if !woken {
            log::warn!("iommu: GA log: tag {tag:#x} names no avic vCPU");
        }
    }
}

/// Routes the IOMMU's own interrupt (its MSI capability; GAIntEn makes it fire when GAInt goes
/// 0 -> 1) to this core, the service core, with `VECTOR_GA_LOG`. The service core runs with
/// interrupts off: it looks for the vector in its IRR (`take_ga_interrupt`).
pub fn route_ga_interrupt(ecam: &crate::hv::host::pci_host::Ecam, device_id: u16) {
    if !ga_enabled() {
        return;
    }
    let bdf = pci::Bdf::from_routing_id(device_id);
    let Some(cap) = pci::capability::find_capability(ecam, bdf, pci::capability::id::MSI) else {
        println!("iommu: {bdf} has no MSI capability: the GA log is polled once a second only");
        return;
    };
    let apic = crate::hv::host::x2apic::id();
    let message = iommu::MsiMessage::fixed(apic as u8, crate::hv::host::idt::VECTOR_GA_LOG);
    let mut ecam = *ecam;
    match pci::msi::program(&mut ecam, bdf, cap, message.address, message.data as u16) {
        Ok(()) if apic <= 0xFF => println!(
            "iommu: GA log interrupt: MSI of {bdf} to cpu apic {apic}, vector {:#x}",
            crate::hv::host::idt::VECTOR_GA_LOG
        ),
        _ => println!("iommu: cannot route the GA log interrupt of {bdf}: polled once a second"),
    }
}

/// On the service core: the GA log interrupt is pending. Take it (a one-instruction interrupt
/// window whose handler EOIs it) so the next one can arrive, then drain the log.
pub fn take_ga_interrupt(ring: fn(GaTag) -> bool) {
    if crate::hv::host::x2apic::irr_pending(crate::hv::host::idt::VECTOR_GA_LOG) {
        crate::hv::host::cpu::take_pending_interrupts();
        poll_ga_log(ring);
    }
}
