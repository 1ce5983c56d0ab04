//! Guest construction: RAM (guest-physical 0 up to 3 GiB, the rest from 4 GiB, as
//! `guest_layout::RamLayout` says; each part one host range aligned for 1 GiB nested pages where
//! the host has such a range, 2 MiB otherwise), the image from its boot module, the permission
//! maps, and the bookkeeping the service core uses to see guests end.
//!
//! A guest that resets itself or crashes is restarted in place when its policy allows
//! (`didvisor::restart`): every vCPU leaves the guest (as at its end: an NMI brings back a core
//! that sits in the guest), vCPU 0's core waits for the others, clears the RAM, loads the image
//! from the boot module again (modules are reserved host memory that no guest maps, so they are
//! as the boot loader left them), resets the virtual platform and the interrupt backend, and all
//! vCPUs start again on their own cores: vCPU 0 at the entry, the others waiting for INIT-SIPI.

use crate::hv::host::timer;
use crate::hv::host::{memory, phys};
use crate::hv::vm::platform::VirtualPlatform;
use crate::println;
use boot::BootInfo;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use didvisor::config::{GuestConfig, MAX_GUESTS, MAX_VFS_PER_GUEST};
use didvisor::console::LineBuffer;
use didvisor::elf;
use didvisor::rate_limit::RateLimit;
use didvisor::restart::{Decision, StopKind};
use guestfw::guest_layout::{RamLayout, RamRegion};
use guestfw::{acpi_tables, guest_layout, linux};
use spin::{Mutex, Once};
use svm::npt::{LeafCounts, NptMapper};
use svm::paging::{FrameSource, PageSize, PhysAccess, PteFlags};
use svm::permission_map::{IoPermissionMap, MsrPermissionMap, IOPM_SIZE, MSRPM_SIZE};
use svm::{Gpa, Hpa};

/// The two kinds of guest image the hypervisor loads.
#[derive(Debug, Clone, Copy)]
pub enum GuestBoot {
    /// A bare-metal ELF test guest: entered at `entry` with RDI = RAM size, RSI = vCPU id and
    /// RDX = the guest-physical address of its command line.
    TestGuest { entry: u64, cmdline: u64 },
    /// An unmodified Linux bzImage through the 64-bit boot protocol (RSI = boot_params).
    Linux(linux::LinuxEntry),
}

impl GuestBoot {
    pub fn entry(&self) -> u64 {
        match self {
            GuestBoot::TestGuest { entry, .. } => *entry,
            GuestBoot::Linux(e) => e.rip,
        }
    }
}

pub struct Vm {
    pub config: GuestConfig,
    /// Host-physical base of the guest's low RAM (guest-physical 0 up to 3 GiB).
    pub ram_hpa: u64,
    /// Host-physical base of its RAM above 4 GiB, if it has more than 3 GiB.
    pub ram_high_hpa: Option<u64>,
    /// All its RAM in bytes.
    pub ram_size: u64,
    /// Where that RAM sits in guest-physical space.
    pub ram_layout: RamLayout,
    pub npt_root: u64,
    pub iopm_pa: u64,
    pub msrpm_pa: u64,
    /// How the guest was loaded and where its vCPUs start.
    pub boot: GuestBoot,
    /// Its devices, interrupt controllers and per-vCPU interrupt state.
    pub platform: VirtualPlatform,
    /// Its nested page tables (changed after start for passed-through BARs).
    pub npt: Mutex<NptMapper<NptMemory>>,
    /// The VFs passed through to it, in `vf=` order (`vfs()`).
    pub vf: [Once<crate::hv::vm::vf_host::VfHost>; MAX_VFS_PER_GUEST],
    pub console: Mutex<LineBuffer>,
    /// Its console lines: bursts of `CONSOLE_BURST`, then `CONSOLE_RATE` a second.
    pub console_rate: Mutex<RateLimit>,
    /// The hypervisor's reports of what this guest did (refused MSI-X entries and the like).
    diag_rate: Mutex<RateLimit>,
    /// Accesses to guest-physical addresses that are neither RAM nor a device.
    pub stray_accesses: AtomicUsize,
    /// TSC when its first vCPU entered it (0 = not yet), for the run interval printed at its end.
    started_tsc: AtomicU64,
    ended: AtomicBool,
    /// The vCPUs must leave the guest: it ends, or it restarts.
    stop: AtomicBool,
    /// Restarts taken so far.
    restarts: AtomicU32,
    /// vCPUs other than 0 that left the guest for the restart under way.
    left_for_restart: AtomicU32,
    /// Bumped by vCPU 0's core when a restart is done; the other vCPUs wait for it.
    boots: AtomicU32,
    /// Where its image came from (loaded again at a restart).
    boot_info: &'static BootInfo,
    /// A test guest's command line as written into its RAM (with placed canaries).
    cmdline: Mutex<CmdlineBuf>,
}

/// Resets a guest's VF for a restart (`vf::reset`); the error says why it cannot.
pub type VfReset = fn(&Vm, &crate::hv::vm::vf_host::VfHost) -> Result<(), &'static str>;

/// How a vCPU's run of the guest finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Ended,
    Restart,
}

/// A guest's console lines a second, and at once (a Linux boot prints a few hundred lines).
const CONSOLE_RATE: u64 = 200;
const CONSOLE_BURST: u64 = 2000;
/// Reports of what a guest did that it can repeat at will (per guest, a second and at once).
const DIAG_RATE: u64 = 10;
const DIAG_BURST: u64 = 50;

static VMS: [Once<Vm>; MAX_GUESTS] = [const { Once::new() }; MAX_GUESTS];
static ENDED: AtomicUsize = AtomicUsize::new(0);

pub fn try_vm(index: usize) -> Option<&'static Vm> {
    VMS.get(index)?.get()
}

pub fn vm(index: usize) -> &'static Vm {
    VMS[index].get().expect("vm index of a built guest")
}

pub fn ended_count() -> usize {
    ENDED.load(Ordering::SeqCst)
}

impl Vm {
    /// Guest RAM below the MMIO hole as bytes (guest-physical 0 at index 0); RAM above 4 GiB is
    /// reached through [`Vm::ram_bytes`].
    pub fn ram(&self) -> &'static mut [u8] {
        // SAFETY: the range was allocated for this guest alone at build time and stays allocated;
        // the hypervisor touches it only from the guest's own core or before the guest starts.
        unsafe { phys::slice_mut(self.ram_hpa, self.ram_layout.low().len) }
    }

    /// Each RAM region with the host-physical address backing it.
    pub fn ram_blocks(&self) -> impl Iterator<Item = (RamRegion, u64)> + '_ {
        let [low, high] = self.ram_layout.regions();
        let low = low.map(|r| (r, self.ram_hpa));
        low.into_iter()
            .chain(high.zip(self.ram_high_hpa))
            .filter(|(r, _)| r.len > 0)
    }

    /// `len` bytes of guest RAM at `gpa`, if they lie inside one RAM region.
    pub fn ram_bytes(&self, gpa: u64, len: u64) -> Option<&'static [u8]> {
        let end = gpa.checked_add(len)?;
        let (region, hpa) = self
            .ram_blocks()
            .find(|(r, _)| gpa >= r.gpa && end <= r.end())?;
        // SAFETY: inside this guest's RAM (see `ram`); read only, the guest may change it meanwhile
        // (callers read bytes, whatever they are).
        Some(unsafe { phys::slice(hpa + (gpa - region.gpa), len) })
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

    /// The guest asked for a reset (`StopKind::Reset`) or triple-faulted (`Crash`): restart it in
    /// place or end it, as its policy and restart count say. The first request wins; the vCPUs
    /// are called back and the restart itself happens in `restart_rendezvous`.
    pub fn reset_or_end(&self, kind: StopKind, why: core::fmt::Arguments) {
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let policy = self.config.restart;
        match policy.decide(kind, self.restarts.load(Ordering::SeqCst)) {
            Decision::Restart { n } => {
                if self.stop.swap(true, Ordering::SeqCst) {
                    return;
                }
                self.restarts.store(n, Ordering::SeqCst);
                if let Some(rest) = self.console.lock().flush() {
                    println!("[{}] {}", self.config.name, rest);
                }
                println!(
                    "guest {}: restart {n} of at most {} ({}: {why})",
                    self.config.name,
                    policy.max_restarts,
                    kind.name()
                );
                self.recall_vcpus();
            }
            Decision::EndByPolicy => self.end(format_args!("{why} (on-{}=end)", kind.name())),
            Decision::EndLimitReached { max } => self.end(format_args!(
                "{why}; restart limit reached ({max} restarts, max-restarts={max})"
            )),
        }
    }

    /// Called by each vCPU's core after its run stopped for a restart; returns whether it runs
    /// the guest again (false: the guest ended meanwhile). vCPU 0's core does the restart once
    /// every other vCPU has left; the others wait for it. Bounded: each wait ends when the
    /// restart is done or the guest ends. `vf_reset` resets the guest's VF (`vf::reset`, which
    /// this file cannot name: it names `Vm`).
    pub fn restart_rendezvous(&self, vcpu: u32, vf_reset: VfReset) -> bool {
        let boots = self.boots.load(Ordering::SeqCst);
        if vcpu != 0 {
            self.left_for_restart.fetch_add(1, Ordering::SeqCst);
            while self.boots.load(Ordering::SeqCst) == boots && !self.has_ended() {
                core::hint::spin_loop();
            }
            return !self.has_ended();
        }
        let others = self.platform.vcpu_count as u32 - 1;
        while self.left_for_restart.load(Ordering::SeqCst) < others && !self.has_ended() {
            core::hint::spin_loop();
        }
        if self.has_ended() {
            return false;
        }
        self.left_for_restart.store(0, Ordering::SeqCst);
        if let Err(e) = self.reload(vf_reset) {
            self.end(format_args!("restart failed: {e}"));
            return false;
        }
        println!(
            "guest {}: restarted: boot {} starts",
            self.config.name,
            boots + 2
        );
        self.stop.store(false, Ordering::SeqCst);
        self.boots.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// The restart proper (no vCPU runs): devices and interrupt state as at the first boot, RAM
    /// cleared (nothing of the last boot reaches the next), the image loaded again.
    fn reload(&self, vf_reset: VfReset) -> Result<(), BuildError> {
        self.drain_console();
        if let Some(rest) = self.console.lock().flush() {
            println!("[{}] {}", self.config.name, rest);
        }
        // First the VFs: their reset ends any DMA they still do into the RAM cleared below.
        for vf in self.vfs() {
            vf_reset(self, vf).map_err(BuildError::Vf)?;
        }
        self.platform.reset();
        for (region, hpa) in self.ram_blocks() {
            crate::hv::vm::canary::check_within(hpa, region.len);
            // SAFETY: this guest's RAM (see `ram`); no vCPU runs and no reference to it lives.
            unsafe { phys::slice_mut(hpa, region.len) }.fill(0);
        }
        let line = self.cmdline.lock();
        load_image(&self.config, self.boot_info, self.ram(), line.as_str())?;
        for (region, hpa) in self.ram_blocks() {
            crate::hv::vm::canary::refill_within(hpa, region.len);
        }
        Ok(())
    }

    /// Whether the vCPUs must leave the guest (it ends or restarts).
    pub fn must_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// Marks the guest ended (the first reason wins) and prints the line the tests look for, with
    /// the interval it ran in (microseconds since the hypervisor calibrated its clock).
    pub fn end(&self, reason: core::fmt::Arguments) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        let end = timer::rdtsc();
        if let Some(rest) = self.console.lock().flush() {
            println!("[{}] {}", self.config.name, rest);
        }
        let start = self.started_tsc.load(Ordering::SeqCst);
        if self.vfs().next().is_some() {
            // Its VFs' BAR mappings changed the nested page tables at run time: what they took.
            if let Some(npt) = self.npt.try_lock() {
                let f = npt.mem().frames.counts();
                println!(
                    "guest {}: nested page tables: {} table frames taken, {} in use, {} free",
                    self.config.name, f.taken, f.in_use, f.free
                );
            }
        }
        for vf in self.vfs() {
            println!(
                "guest {}: vf {}: {} device interrupts went through exits",
                self.config.name,
                vf.bdf,
                vf.via_exits.load(Ordering::Relaxed)
            );
            if let Some((posted, refused)) = self.platform.irq.posted_msix(vf.slot) {
                println!(
                    "guest {}: vf {}: {posted} MSI-X entries posted (GA), {refused} refused",
                    self.config.name, vf.bdf
                );
            }
        }
        let reports = self.diag_rate.lock().dropped();
        if reports > 0 {
            println!(
                "guest {}: {reports} reports of its actions not shown (rate limit: {DIAG_RATE}/s after {DIAG_BURST})",
                self.config.name
            );
        }
        let dropped = self.console_rate.lock().dropped();
        if dropped > 0 {
            println!(
                "guest {}: {dropped} console lines dropped (rate limit: {CONSOLE_RATE} lines/s after a burst of {CONSOLE_BURST})",
                self.config.name
            );
        }
        println!(
            "guest {}: device interrupts: {} from the virtual IOAPIC, {}",
            self.config.name,
            self.platform.device_irqs.load(Ordering::Relaxed),
            self.platform.irq.device_report()
        );
        let illegal = self.platform.illegal_vectors.load(Ordering::Relaxed);
        if illegal > 0 {
            println!(
                "guest {}: {illegal} interrupts aimed at vectors below 16 were dropped",
                self.config.name
            );
        }
        {
            let legacy = self.platform.legacy.lock();
            for port in legacy.unknown_ports().iter() {
                println!("guest {}: {port}", self.config.name);
            }
        }
        println!(
            "guest {}: ended: {} (ran from {} us to {} us)",
            self.config.name,
            reason,
            timer::micros_since_boot(start),
            timer::micros_since_boot(end)
        );
        ENDED.fetch_add(1, Ordering::SeqCst);
        self.recall_vcpus();
    }

    /// Makes every core running one of this guest's vCPUs leave the guest: an NMI forces an exit
    /// (a direct-mode guest may sit in HLT, which does not exit), and the exit sees the guest ended.
    fn recall_vcpus(&self) {
        let me = crate::hv::host::x2apic::id();
        for slot in &self.platform.vcpus[..self.platform.vcpu_count] {
            let core = slot.core_apic_id.load(Ordering::Acquire);
            if core != u32::MAX && core != me {
                crate::hv::host::x2apic::send_nmi(core);
            }
        }
    }

    /// Where HLT does not exit (direct and avic modes), a guest halted for good never exits by
    /// itself: an NMI (one exit per vCPU per period) lets each vCPU check.
    pub fn watchdog(&self) {
        if !self.platform.irq.hlt_exits() {
            self.recall_vcpus();
        }
    }

    /// The VFs attached to it, in `vf=` order.
    pub fn vfs(&self) -> impl Iterator<Item = &crate::hv::vm::vf_host::VfHost> {
        self.vf.iter().map_while(Once::get)
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Prints what the guest wrote to its serial port since the last call, line by line.
    pub fn drain_console(&self) {
        let mut buf = [0u8; 256];
        loop {
            let n = self.platform.legacy.lock().take_console_output(&mut buf);
            if n == 0 {
                return;
            }
            for &b in &buf[..n] {
                self.console_byte(b);
            }
        }
    }

    /// A report of something this guest did that it could repeat in a loop: printed while the
    /// guest's report budget lasts (`DIAG_RATE`), counted otherwise.
    pub fn report(&self, args: core::fmt::Arguments) {
        if self.diag_rate.lock().allow(timer::nanos()) {
            crate::guest_println!("guest {}: {args}", self.config.name);
        }
    }

    /// One byte the guest wrote to its debug console.
    pub fn console_byte(&self, b: u8) {
        let mut c = self.console.lock();
        if let Some(line) = c.push(b) {
            // A guest decides how much it prints: held to CONSOLE_RATE lines a second.
            if self.console_rate.lock().allow(timer::nanos()) {
                crate::guest_println!("[{}] {}", self.config.name, line);
            }
        }
    }
}

/// Nested-page-table frames come from the hypervisor's allocator; tables are written through the
/// identity map. The traits are the `pagetable` crate's (`svm::paging` and `iommu::mem` re-export
/// the same ones), so this one implementation serves NPT and I/O page tables alike.
/// Each table has its own frame book-keeping: after the guest is built its tables may grow only
/// by `table_frames::RUNTIME_FRAMES`, and emptied tables give their frames back.
#[derive(Default)]
pub struct NptMemory {
    pub frames: didvisor::table_frames::TableFrames,
}

impl PhysAccess for NptMemory {
    fn read_u64(&self, pa: Hpa) -> u64 {
        phys::Tables.read_u64(pa)
    }

    fn write_u64(&mut self, pa: Hpa, value: u64) {
        phys::Tables.write_u64(pa, value)
    }
}

impl FrameSource for NptMemory {
    fn alloc_frame(&mut self) -> Option<Hpa> {
        self.frames
            .alloc(|| memory::try_alloc_zeroed(4096, 4096, memory::MAPPED_LIMIT))
            .ok()
            .map(Hpa)
    }

    fn free_frame(&mut self, frame: Hpa) {
        self.frames.free(frame.as_u64());
    }
}

#[derive(Debug)]
pub enum BuildError {
    /// No host range of `wanted` bytes for the RAM `part` ("below 4 GiB" or "above 4 GiB") of a
    /// guest with `total` bytes.
    NoMemory {
        wanted: u64,
        part: &'static str,
        total: u64,
    },
    Image(elf::ElfError),
    Linux(linux::LinuxError),
    Acpi(acpi_tables::AcpiError),
    Layout(guest_layout::LayoutError),
    Npt(svm::npt::MapError),
    /// Its VF could not be reset for a restart.
    Vf(&'static str),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::NoMemory {
                wanted,
                part,
                total,
            } => {
                write!(
                    f,
                    "not enough free memory for the {} MiB {part} of its {} MiB of RAM ({} MiB \
                     free, the largest free range {} MiB; each RAM part needs one range)",
                    wanted >> 20,
                    total >> 20,
                    memory::free_bytes() >> 20,
                    memory::largest_free(2 << 20) >> 20
                )
            }
            BuildError::Image(e) => write!(f, "kernel image: {e}"),
            BuildError::Linux(e) => write!(f, "linux kernel: {e}"),
            BuildError::Acpi(e) => write!(f, "acpi tables: {e:?}"),
            BuildError::Layout(e) => write!(f, "boot layout: {e:?}"),
            BuildError::Npt(e) => write!(f, "nested page tables: {e:?}"),
            BuildError::Vf(why) => write!(f, "vf reset: {why}"),
        }
    }
}

/// Builds guest `index` from its configuration and boot module; the guest does not run yet.
/// `core_apic_id` maps a logical CPU index to its x2APIC id.
pub fn build(
    index: usize,
    config: &GuestConfig,
    boot: &'static BootInfo,
    core_apic_id: impl Fn(usize) -> u32,
) -> Result<&'static Vm, BuildError> {
    let ram_size = config.mem;
    let ram_layout = RamLayout::new(ram_size);
    let zero_start = timer::nanos();
    let ram_hpa = alloc_ram(ram_layout.low(), "below 4 GiB", ram_size)?;
    let ram_high_hpa = match ram_layout.high() {
        Some(high) => Some(alloc_ram(high, "above 4 GiB", ram_size)?),
        None => None,
    };
    let zero_ms = (timer::nanos() - zero_start) / 1_000_000;
    // SAFETY: just allocated for this guest; nothing else refers to it.
    let ram = unsafe { phys::slice_mut(ram_hpa, ram_layout.low().len) };

    let guest_boot = load_image(config, boot, ram, config.cmdline.as_str())?;
    let mut cmdline = CmdlineBuf {
        bytes: [0; linux::CMDLINE_MAX],
        len: 0,
    };
    let _ = write!(cmdline, "{}", config.cmdline);

    let mut npt = NptMapper::new(NptMemory::default()).map_err(BuildError::Npt)?;
    if !memory::page_1gb() {
        npt.set_max_page_size(PageSize::Size2M);
    }
    let flags = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::USER;
    let high = ram_layout.high().zip(ram_high_hpa);
    let mut pages = LeafCounts::default();
    for (region, hpa) in [(ram_layout.low(), ram_hpa)].into_iter().chain(high) {
        let counts = npt
            .map(Gpa(region.gpa), Hpa(hpa), region.len, flags)
            .map_err(BuildError::Npt)?;
        pages = pages.plus(counts);
    }
    // From here on (BAR mappings at run time) its tables grow by a fixed budget only.
    npt.mem_mut()
        .frames
        .limit_growth(didvisor::table_frames::RUNTIME_FRAMES as u32);

    let npt_root = npt.root().as_u64();
    let mut cores = [u32::MAX; crate::hv::irq::MAX_VCPUS];
    for (slot, cpu) in cores.iter_mut().zip(config.cores.iter()) {
        *slot = core_apic_id(cpu);
    }
    let iopm_pa = memory::alloc_zeroed(IOPM_SIZE as u64, 4096);
    let msrpm_pa = memory::alloc_zeroed(MSRPM_SIZE as u64, 4096);
    // SAFETY: both maps were just allocated with exactly these sizes.
    let (iopm, msrpm) = unsafe {
        (
            phys::get_mut::<[u8; IOPM_SIZE]>(iopm_pa),
            phys::get_mut::<[u8; MSRPM_SIZE]>(msrpm_pa),
        )
    };
    // Every port and every MSR exits — the virtual platform decides what each one does — except
    // the MSRs whose state the VMCB switches or that only concern the guest's own core.
    IoPermissionMap::new(iopm).intercept_all();
    let mut msr_map = MsrPermissionMap::new(msrpm);
    msr_map.intercept_all();
    for msr in didvisor::msr::PASS_THROUGH {
        msr_map
            .pass_through(msr)
            .expect("pass-through MSRs lie in the MSR permission map's ranges");
    }

    let vm = VMS[index].call_once(|| Vm {
        config: *config,
        ram_hpa,
        ram_high_hpa,
        ram_size,
        ram_layout,
        npt_root,
        iopm_pa,
        msrpm_pa,
        boot: guest_boot,
        platform: VirtualPlatform::new(config.irq, &cores[..config.cores.len()]),
        npt: Mutex::new(npt),
        vf: [const { Once::new() }; MAX_VFS_PER_GUEST],
        console: Mutex::new(LineBuffer::new()),
        console_rate: Mutex::new(RateLimit::new(CONSOLE_RATE, CONSOLE_BURST)),
        diag_rate: Mutex::new(RateLimit::new(DIAG_RATE, DIAG_BURST)),
        stray_accesses: AtomicUsize::new(0),
        started_tsc: AtomicU64::new(0),
        ended: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        restarts: AtomicU32::new(0),
        left_for_restart: AtomicU32::new(0),
        boots: AtomicU32::new(0),
        boot_info: boot,
        cmdline: Mutex::new(cmdline),
    });
    // The x2APIC MSRs the interrupt backend leaves to the guest or the processor (no vCPU runs
    // yet).
    vm.platform.irq.msr_intercepts(&mut msr_map);
    let kind = match guest_boot {
        GuestBoot::TestGuest { .. } => "test guest",
        GuestBoot::Linux(_) => "linux",
    };
    println!(
        "guest {}: {} MiB ram at host {:#x}, {kind} image \"{}\" entry {:#x}, cores {}, irq {}",
        config.name,
        ram_size >> 20,
        ram_hpa,
        config.kernel,
        guest_boot.entry(),
        config.cores,
        config.irq.name()
    );
    if let Some(high) = ram_high_hpa {
        println!(
            "guest {}: ram below 4 GiB {} MiB, above 4 GiB {} MiB at host {high:#x}",
            config.name,
            ram_layout.low().len >> 20,
            (ram_size - ram_layout.low().len) >> 20
        );
    }
    println!(
        "guest {}: ram zeroed in {zero_ms} ms, backed by nested pages: {} of 1G, {} of 2M, {} of 4K{}",
        config.name,
        pages.size_1g,
        pages.size_2m,
        pages.size_4k,
        if memory::page_1gb() {
            ""
        } else {
            " (no 1G: the CPU lacks Page1GB)"
        }
    );
    Ok(vm)
}

// The VF's BARs go in the MMIO hole, never over RAM.
const _: () = assert!(crate::hv::vm::vf_host::GUEST_BAR_BASE >= guest_layout::LOW_RAM_MAX);

/// Host memory for one RAM region of a guest with `total` bytes: aligned to 1 GiB where such a
/// range is free (then the nested page tables can use 1 GiB pages), else to 2 MiB.
fn alloc_ram(region: RamRegion, part: &'static str, total: u64) -> Result<u64, BuildError> {
    let giant = PageSize::Size1G.bytes();
    let aligns: &[u64] = if region.len >= giant {
        &[giant, PageSize::Size2M.bytes()]
    } else {
        &[PageSize::Size2M.bytes()]
    };
    aligns
        .iter()
        .find_map(|&align| memory::try_alloc_zeroed(region.len, align, memory::MAPPED_LIMIT))
        .ok_or(BuildError::NoMemory {
            wanted: region.len,
            part,
            total,
        })
}

/// Loads the guest's image from its boot module into `ram` (zeroed): an ELF test guest with
/// `cmdline` (`test_cmdline`), or a Linux bzImage with its initrd, command line and ACPI tables.
fn load_image(
    config: &GuestConfig,
    boot: &BootInfo,
    ram: &mut [u8],
    test_cmdline: &str,
) -> Result<GuestBoot, BuildError> {
    let image = module_bytes(boot, config.kernel.as_str());
    guest_layout::write_long_mode_tables(ram).map_err(BuildError::Layout)?;
    if !image.starts_with(b"\x7fELF") {
        return Ok(GuestBoot::Linux(load_linux(config, boot, ram)?));
    }
    let loaded = elf::load(image, ram, guest_layout::IMAGE_MIN).map_err(BuildError::Image)?;
    // The command line goes where Linux's would, NUL-terminated (the slot is one page).
    let text = test_cmdline.as_bytes();
    let at = linux::CMDLINE_GPA as usize;
    let len = text.len().min(linux::CMDLINE_MAX);
    ram[at..at + len].copy_from_slice(&text[..len]);
    ram[at + len] = 0;
    Ok(GuestBoot::TestGuest {
        entry: loaded.entry,
        cmdline: linux::CMDLINE_GPA,
    })
}

/// Guest `name` among the first `guests`: its name (static) and the host-physical address of its RAM.
fn guest_ram(name: &str, guests: usize) -> Option<(&'static str, u64)> {
    (0..guests)
        .filter_map(try_vm)
        .find(|vm| vm.config.name.as_str() == name)
        .map(|vm| (vm.config.name.as_str(), vm.ram_hpa))
}

/// Test guests only: replaces `canary=hypervisor` and `canary=guest:NAME` in the guest's command
/// line (already in its RAM) with the addresses of freshly placed canaries (see `canary.rs`).
pub fn place_canaries(vm: &Vm, guests: usize) {
    if !matches!(vm.boot, GuestBoot::TestGuest { .. })
        || !vm.config.cmdline.as_str().contains("canary=")
    {
        return;
    }
    let mut line = CmdlineBuf {
        bytes: [0; linux::CMDLINE_MAX],
        len: 0,
    };
    for (i, word) in vm.config.cmdline.as_str().split_whitespace().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        let placed = word
            .strip_prefix("canary=")
            .and_then(|v| crate::hv::vm::canary::place(v, |name| guest_ram(name, guests)));
        let _ = match placed {
            Some(hpa) => write!(line, "{sep}canary={hpa:#x}"),
            None => write!(line, "{sep}{word}"),
        };
    }
    println!(
        "guest {}: command line \"{}\"",
        vm.config.name,
        line.as_str()
    );
    let ram = vm.ram();
    let at = linux::CMDLINE_GPA as usize;
    let text = line.as_str().as_bytes();
    ram[at..at + text.len()].copy_from_slice(text);
    ram[at + text.len()] = 0;
    *vm.cmdline.lock() = line;
}

/// The bytes of boot module `name` (validated to exist with the configuration).
fn module_bytes(boot: &BootInfo, name: &str) -> &'static [u8] {
    let m = boot
        .module(name)
        .expect("modules were validated with the configuration");
    // SAFETY: boot modules are reserved in the frame allocator, identity-mapped and only read.
    unsafe { phys::slice(m.start, m.len()) }
}

/// Loads a bzImage with its initrd and command line, and the guest's ACPI tables (which describe
/// exactly its vCPUs: x2APIC ids 0..n).
fn load_linux(
    config: &GuestConfig,
    boot: &BootInfo,
    ram: &mut [u8],
) -> Result<linux::LinuxEntry, BuildError> {
    let image = module_bytes(boot, config.kernel.as_str());
    let initrd = config.initrd.map(|n| module_bytes(boot, n.as_str()));
    let mut apic_ids = [0u32; didvisor::cpuset::MAX_CPUS];
    let vcpus = config.cores.len();
    for (i, id) in apic_ids.iter_mut().enumerate().take(vcpus) {
        *id = i as u32;
    }
    let mut platform =
        acpi_tables::GuestPlatform::standard(&apic_ids[..vcpus]).with_ram(config.mem);
    if !config.vfs.is_empty() || config.disk.is_some() {
        // A PCI root for the passed-through function and the virtio device, with the window
        // their BARs go in.
        let base = crate::hv::vm::vf_host::GUEST_BAR_BASE;
        platform = platform.with_pci_root(acpi_tables::PciRootConfig {
            mmio32: (base, 0xfec0_0000 - base),
            mmio64: None,
        });
    }
    let base = linux::ACPI_TABLES_GPA;
    let window = &mut ram[base as usize..(base + linux::ACPI_TABLES_SIZE) as usize];
    let tables =
        acpi_tables::write_acpi_tables(window, base, &platform).map_err(BuildError::Acpi)?;
    let mut layout = linux::LinuxLayout::new(config.mem);
    layout.acpi_rsdp = Some(tables.rsdp_gpa);
    let mut cmdline = CmdlineBuf {
        bytes: [0; linux::CMDLINE_MAX],
        len: 0,
    };
    let _ = write!(cmdline, "{}", config.cmdline);
    // Linux measures the TSC against the PIT or the PM timer with a tight limit on how long one
    // read may take; where every port read is an exit that takes longer than the limit (under
    // emulation), it gives up, marks the TSC unstable and keeps time through the PM timer, one exit
    // per clock read. The hypervisor has measured the TSC already: it tells the guest.
    if !config
        .cmdline
        .as_str()
        .split_whitespace()
        .any(|w| w.starts_with("tsc_early_khz="))
    {
        let khz = timer::tsc_per_ms();
        let _ = write!(cmdline, " tsc_early_khz={khz}");
        println!("guest {}: kernel command line gets tsc_early_khz={khz} (the TSC rate didvisor measured)", config.name);
    }
    if cmdline.overflowed() {
        return Err(BuildError::Linux(linux::LinuxError::CmdlineTooLong {
            len: cmdline.len,
            max: linux::CMDLINE_MAX,
        }));
    }
    linux::load_linux(ram, image, initrd, cmdline.as_str(), &layout).map_err(BuildError::Linux)
}

/// The guest kernel's command line as it is handed over (configuration plus what we add).
struct CmdlineBuf {
    bytes: [u8; linux::CMDLINE_MAX],
    len: usize,
}

impl CmdlineBuf {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len.min(self.bytes.len())]).unwrap_or("")
    }

    fn overflowed(&self) -> bool {
        self.len > self.bytes.len()
    }
}

impl core::fmt::Write for CmdlineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let start = self.len;
        self.len += s.len();
        match self.bytes.get_mut(start..self.len) {
            Some(dst) => {
                dst.copy_from_slice(s.as_bytes());
                Ok(())
            }
            None => Err(core::fmt::Error),
        }
    }
}
