//! Guest construction: RAM (one contiguous host range per guest, mapped at guest-physical 0 by the
//! nested page tables), the image from its boot module, the permission maps, and the bookkeeping the
//! service core uses to see guests end.

use super::{memory, timer};
use crate::println;
use boot::BootInfo;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use didvisor::config::{GuestConfig, MAX_GUESTS};
use didvisor::console::LineBuffer;
use didvisor::{elf, guest_layout};
use spin::{Mutex, Once};
use svm::npt::NptMapper;
use svm::paging::{FrameSource, PhysAccess, PteFlags};
use svm::permission_map::{IoPermissionMap, MsrPermissionMap, IOPM_SIZE, MSRPM_SIZE};
use svm::{Gpa, Hpa};

pub struct Vm {
    pub config: GuestConfig,
    /// Host-physical base of guest RAM (guest-physical 0).
    pub ram_hpa: u64,
    pub ram_size: u64,
    pub npt_root: u64,
    pub iopm_pa: u64,
    pub msrpm_pa: u64,
    pub entry: u64,
    pub console: Mutex<LineBuffer>,
    /// Accesses to guest-physical addresses that are neither RAM nor a device.
    pub stray_accesses: AtomicUsize,
    /// TSC when its first vCPU entered it (0 = not yet), for the run interval printed at its end.
    started_tsc: AtomicU64,
    ended: AtomicBool,
}

static VMS: [Once<Vm>; MAX_GUESTS] = [const { Once::new() }; MAX_GUESTS];
static ENDED: AtomicUsize = AtomicUsize::new(0);

pub fn vm(index: usize) -> &'static Vm {
    VMS[index].get().expect("vm index of a built guest")
}

pub fn ended_count() -> usize {
    ENDED.load(Ordering::SeqCst)
}

impl Vm {
    /// Guest RAM as bytes (guest-physical 0 at index 0).
    pub fn ram(&self) -> &'static mut [u8] {
        // SAFETY: the range was allocated for this guest alone at build time and stays allocated;
        // the hypervisor touches it only from the guest's own core or before the guest starts.
        unsafe { memory::phys_slice_mut(self.ram_hpa, self.ram_size) }
    }

    /// Called by each vCPU before its first VMRUN.
    pub fn mark_started(&self) {
        let _ = self.started_tsc.compare_exchange(
            0,
            timer::rdtsc(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Marks the guest ended (the first reason wins) and prints the line the tests look for, with
    /// the interval it ran in (microseconds since the hypervisor calibrated its clock).
    pub fn end(&self, reason: core::fmt::Arguments) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let end = timer::rdtsc();
        if let Some(rest) = self.console.lock().flush() {
            println!("[{}] {}", self.config.name, rest);
        }
        let start = self.started_tsc.load(Ordering::SeqCst);
        println!(
            "guest {}: ended: {} (ran from {} us to {} us)",
            self.config.name,
            reason,
            timer::micros_since_boot(start),
            timer::micros_since_boot(end)
        );
        ENDED.fetch_add(1, Ordering::SeqCst);
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// One byte the guest wrote to its debug console.
    pub fn console_byte(&self, b: u8) {
        let mut c = self.console.lock();
        if let Some(line) = c.push(b) {
            println!("[{}] {}", self.config.name, line);
        }
    }
}

/// Nested-page-table frames come from the hypervisor's allocator; tables are written through the
/// identity map.
struct NptMemory;

impl PhysAccess for NptMemory {
    fn read_u64(&self, pa: Hpa) -> u64 {
        // SAFETY: `pa` is an entry of a table frame this mapper allocated (identity-mapped, aligned).
        unsafe { core::ptr::read_volatile(pa.as_u64() as *const u64) }
    }

    fn write_u64(&mut self, pa: Hpa, value: u64) {
        // SAFETY: as in `read_u64`; the tables are not yet in use by any core while being built.
        unsafe { core::ptr::write_volatile(pa.as_u64() as *mut u64, value) }
    }
}

impl FrameSource for NptMemory {
    fn alloc_frame(&mut self) -> Option<Hpa> {
        memory::try_alloc_zeroed(4096, 4096, memory::MAPPED_LIMIT).map(Hpa)
    }
}

#[derive(Debug)]
pub enum BuildError {
    NoMemory { wanted: u64 },
    Image(elf::ElfError),
    Layout(guest_layout::LayoutError),
    Npt(svm::npt::MapError),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::NoMemory { wanted } => {
                write!(
                    f,
                    "not enough free memory for {} MiB of guest RAM ({} MiB free)",
                    wanted >> 20,
                    memory::free_bytes() >> 20
                )
            }
            BuildError::Image(e) => write!(f, "kernel image: {e}"),
            BuildError::Layout(e) => write!(f, "boot layout: {e:?}"),
            BuildError::Npt(e) => write!(f, "nested page tables: {e:?}"),
        }
    }
}

/// Builds guest `index` from its configuration and boot module; the guest does not run yet.
pub fn build(
    index: usize,
    config: &GuestConfig,
    boot: &BootInfo,
) -> Result<&'static Vm, BuildError> {
    let ram_size = config.mem;
    let ram_hpa = memory::try_alloc_zeroed(ram_size, 2 << 20, memory::MAPPED_LIMIT)
        .ok_or(BuildError::NoMemory { wanted: ram_size })?;
    // SAFETY: just allocated for this guest; nothing else refers to it.
    let ram = unsafe { memory::phys_slice_mut(ram_hpa, ram_size) };

    let module = boot
        .module(config.kernel.as_str())
        .expect("modules were validated with the configuration");
    // SAFETY: boot modules are reserved in the frame allocator and only read.
    let image = unsafe { memory::phys_slice(module.start, module.len()) };
    let cr3 = guest_layout::write_long_mode_tables(ram).map_err(BuildError::Layout)?;
    let loaded = elf::load(image, ram, guest_layout::IMAGE_MIN).map_err(BuildError::Image)?;
    debug_assert_eq!(cr3, guest_layout::PML4);

    let mut npt = NptMapper::new(NptMemory).map_err(BuildError::Npt)?;
    let flags = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::USER;
    npt.map(Gpa(0), Hpa(ram_hpa), ram_size, flags)
        .map_err(BuildError::Npt)?;

    let iopm_pa = memory::alloc_zeroed(IOPM_SIZE as u64, 4096);
    let msrpm_pa = memory::alloc_zeroed(MSRPM_SIZE as u64, 4096);
    // SAFETY: both maps were just allocated with exactly these sizes.
    let (iopm, msrpm) = unsafe {
        (
            &mut *(iopm_pa as *mut [u8; IOPM_SIZE]),
            &mut *(msrpm_pa as *mut [u8; MSRPM_SIZE]),
        )
    };
    // Every port and every MSR exits: the virtual platform decides what each one does.
    IoPermissionMap::new(iopm).intercept_all();
    MsrPermissionMap::new(msrpm).intercept_all();

    let vm = VMS[index].call_once(|| Vm {
        config: *config,
        ram_hpa,
        ram_size,
        npt_root: npt.root().as_u64(),
        iopm_pa,
        msrpm_pa,
        entry: loaded.entry,
        console: Mutex::new(LineBuffer::new()),
        stray_accesses: AtomicUsize::new(0),
        started_tsc: AtomicU64::new(0),
        ended: AtomicBool::new(false),
    });
    println!(
        "guest {}: {} MiB ram at host {:#x}, image \"{}\" entry {:#x}, cores {}",
        config.name,
        ram_size >> 20,
        ram_hpa,
        config.kernel,
        loaded.entry,
        config.cores
    );
    Ok(vm)
}
