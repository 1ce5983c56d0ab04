//! Hardware glue of the hypervisor binary: boot flow on the bootstrap processor, per-core bring-up,
//! and the loop each core runs.

pub mod host;
pub mod irq;
pub mod passthrough;
pub mod virtio;
pub mod vm;
pub mod world;

use host::shutdown::{self, fatal};
use host::{acpi, cpu, idt, memory, pci_host, phys, serial, smp, timer, topology, x2apic};
use passthrough::{igb_pf, iommu_hw, nvme_pf, PfDriver};
use vm::{canary, console_input, guest, vf};
use world::{avic_selftest, speculation, svm_hw, vcpu};

use boot::{BootInfo, MemoryKind};
use core::sync::atomic::Ordering;
use didvisor::config::{self, Config, GuestConfig, MAX_VFS_PER_GUEST};
use didvisor::cpuset::MAX_CPUS;
use spin::Once;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

static BOOT_INFO: Once<BootInfo> = Once::new();
static CONFIG: Once<Config> = Once::new();
/// Logical CPU index -> x2APIC id; index 0 is the bootstrap processor (the service core).
static CPUS: Once<heapless_ids::ApicIds> = Once::new();
/// Per core: physical address of the page the host's VMSAVE state goes to.
static HOST_VMCB: [core::sync::atomic::AtomicU64; MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];

mod heapless_ids {
    use didvisor::cpuset::MAX_CPUS;
    pub struct ApicIds {
        pub ids: [u32; MAX_CPUS],
        pub len: usize,
    }
    impl ApicIds {
        pub fn as_slice(&self) -> &[u32] {
            &self.ids[..self.len]
        }
    }
}

/// Reads boot-loader memory through the identity map.
struct Identity;

impl boot::Memory for Identity {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if addr == 0 || end > memory::MAPPED_LIMIT {
            return None;
        }
        // SAFETY: the range is inside the identity map; boot information is not written while we
        // read it (nothing else runs yet).
        Some(unsafe { phys::slice(addr, len as u64) })
    }
}

#[no_mangle]
extern "C" fn boot_main(magic: u32, info: u32) -> ! {
    serial::init();
    serial::init_logging();
    let boot = match boot::parse(magic, u64::from(info), &Identity) {
        Ok(b) => BOOT_INFO.call_once(|| b),
        Err(e) => fatal(format_args!("boot: {e}")),
    };
    // Before the first line, so the whole log goes to the chosen port (a server's SOL is COM2).
    if let Some(port) = config::serial_port(boot.cmdline.as_str()) {
        serial::move_to(port);
    }
    log::info!("didvisor {VERSION} booting");
    if let Some(port) = config::debug_exit_port(boot.cmdline.as_str()) {
        shutdown::set_debug_exit_port(port);
    }
    print_boot_info(boot);
    let cfg = match config::parse(boot.cmdline.as_str()) {
        Ok(c) => CONFIG.call_once(|| c),
        Err(e) => fatal(format_args!("command line: {e}")),
    };
    serial::set_level(cfg.log_level);
    init_memory(boot);

    let tsc_per_ms = timer::calibrate();
    log::info!("timer: tsc {} MHz", tsc_per_ms / 1000);
    let invariant = match (
        timer::decide_invariant(cfg.tsc_invariant),
        cfg.tsc_invariant,
    ) {
        (true, _) => "invariant (CPUID 8000_0007 EDX bit 8)",
        (false, true) => "invariant (tsc=invariant on the command line)",
        (false, false) => "not announced invariant: guests are not told to trust it",
    };
    log::info!("timer: tsc {invariant}");

    let machine = acpi::discover(boot);
    let mut ids = heapless_ids::ApicIds {
        ids: [0; MAX_CPUS],
        len: 0,
    };

    // SVM first: it is the one thing without which nothing else matters.
    let features = match svm_hw::check() {
        Ok(f) => f,
        Err(e) => fatal(format_args!("{e}")),
    };
    log::info!("svm: {}", svm_hw::Summary(features));
    if !features.has_npt() {
        fatal(format_args!(
            "this CPU's SVM has no nested paging (CPUID 8000_000A EDX bit 0); didvisor needs NPT"
        ));
    }
    if !x2apic::supported() {
        fatal(format_args!("this CPU has no x2APIC (CPUID 1 ECX bit 21); didvisor drives local APICs in x2APIC mode"));
    }
    x2apic::mask_legacy_pic();
    idt::init();
    init_core(0);
    let bsp = x2apic::id();
    ids.ids[0] = bsp;
    ids.len = 1;
    for cpu in machine.cpus() {
        if cpu.apic_id != bsp && ids.len < MAX_CPUS {
            ids.ids[ids.len] = cpu.apic_id;
            ids.len += 1;
        }
    }
    let cpus = CPUS.call_once(|| ids);
    if let Err(e) = config::validate(cfg, cpus.len, |m| boot.module(m).is_some()) {
        fatal(format_args!("command line: {e}"));
    }
    // Before any other core starts: SMT siblings never serve different owners.
    if let Err(e) = topology::check(cfg, cpus.as_slice()) {
        fatal(format_args!("command line: {e}"));
    }
    speculation::features();
    if let Err(e) = smp::start_all(cpus.as_slice()) {
        fatal(format_args!("smp: {e}"));
    }
    for (i, id) in cpus.as_slice().iter().enumerate() {
        log::info!(
            "smp: cpu {i} apic {id} online{}",
            if i == 0 { " (service core)" } else { "" }
        );
    }
    let enabled = svm_hw::ENABLED_CORES.load(Ordering::SeqCst);
    log::info!("svm: enabled on {enabled} of {} cpus", cpus.len);
    if enabled as usize != cpus.len {
        fatal(format_args!("svm: not every cpu enabled SVM"));
    }
    // Before any guest: check on this machine what `irq=avic` will rely on.
    avic_selftest::run(
        features.features.bits(),
        HOST_VMCB[0].load(Ordering::SeqCst),
    );
    if let Some(ecam) = &machine.ecam {
        pci_host::list(ecam);
    }
    if let Some(desc) = machine.iommu {
        if let Err(e) = iommu_hw::init(desc) {
            log::error!(
                "iommu: bring-up failed ({e:?}): no DMA isolation, so no device passthrough"
            );
        } else if let Some(ecam) = &machine.ecam {
            iommu_hw::route_ga_interrupt(ecam, desc.device_id);
        }
    }
    log::info!("memory: {} MiB free for guests", memory::free_bytes() >> 20);

    if cfg.guest_count() == 0 {
        log::info!(
            "didvisor: no guests configured (add guest=NAME,cores=N,mem=SIZE,kernel=MODULE)"
        );
    }
    let (vfs, mut nics) = prepare_vfs(cfg, &machine, boot);
    // Build every guest first, then start them all: guests run side by side, not one after another.
    let mut built = [false; didvisor::config::MAX_GUESTS];
    for (index, g) in cfg.guests().enumerate() {
        if g.cores.len() > irq::MAX_VCPUS {
            fatal(format_args!(
                "guest {}: cores={}: at most {} vCPUs per guest",
                g.name,
                g.cores,
                irq::MAX_VCPUS
            ));
        }
        if !irq::admit(g, g.cores.iter().map(|c| cpus.ids[c])) {
            continue;
        }
        // Each VF the guest asked for, in `vf=` order, or why one of them cannot be had.
        let mut wanted = [None; MAX_VFS_PER_GUEST];
        let mut refused = false;
        for (slot, bdf) in g.vfs.iter().enumerate() {
            match &vfs[index * MAX_VFS_PER_GUEST + slot] {
                Ok(vf) => wanted[slot] = Some(*vf),
                Err(why) => {
                    log::error!(
                        "guest {}: vf={bdf}: {why}; the guest does not start",
                        g.name
                    );
                    refused = true;
                }
            }
        }
        if refused {
            continue;
        }
        let vm = guest::build(index, g, boot, |cpu| cpus.ids[cpu])
            .unwrap_or_else(|e| fatal(format_args!("guest {}: {e}", g.name)));
        let mut taken = vf::Taken::NONE;
        for (slot, (vfs, vf)) in wanted
            .iter()
            .enumerate()
            .filter_map(|(s, w)| Some((s, (*w)?)))
        {
            let Some(ecam) = &machine.ecam else { break };
            match vf::attach(vm, index, slot, &mut taken, ecam, &vfs, &vf) {
                Ok(host) => {
                    vm.vf[slot].call_once(|| host);
                }
                Err(why) => fatal(format_args!("guest {}: vf {}: {why}", g.name, vf.bdf)),
            }
        }
        if let Some(disk) = g.disk {
            if let Err(why) = virtio::attach_disk(index, vm, disk, boot) {
                fatal(format_args!(
                    "guest {}: disk={}: {why}",
                    g.name, disk.module
                ));
            }
        }
        built[index] = true;
    }
    let running = built.iter().filter(|&&b| b).count();
    for index in (0..cfg.guest_count()).filter(|&i| built[i]) {
        guest::place_canaries(guest::vm(index), cfg.guest_count());
    }
    for (index, g) in cfg.guests().enumerate().filter(|(i, _)| built[*i]) {
        for (vcpu, cpu) in g.cores.iter().enumerate() {
            assign(cpu, index, vcpu as u32);
        }
    }
    // The service core: drive the guests' device timers until every guest has ended, and once a
    // second look in on direct-mode vCPUs (see `Vm::watchdog`).
    let mut next_watch = timer::nanos() + WATCHDOG_PERIOD_NS;
    let mut console = console_input::ConsoleInput::new(cfg, &built);
    let (mut passes, mut longest, mut last) = (0u64, 0u64, timer::nanos());
    while guest::ended_count() < running {
        // How long one pass takes bounds how late a device timer fires for every guest.
        let start = timer::nanos();
        longest = longest.max(start - last);
        last = start;
        passes += 1;
        // The console's output queue goes out a little at a time, between the guests' work.
        serial::drain(SERVICE_DRAIN_BYTES);
        console.poll();
        iommu_hw::take_ga_interrupt(ring_ga_tag);
        for nic in nics.iter_mut().flatten() {
            nic.poll();
        }
        let now = timer::nanos();
        let watch = now >= next_watch;
        if watch {
            next_watch = now + WATCHDOG_PERIOD_NS;
            iommu_hw::poll_events();
            // In case an interrupt was lost (or could not be routed).
            iommu_hw::poll_ga_log(ring_ga_tag);
        }
        for index in (0..cfg.guest_count()).filter(|&i| built[i]) {
            let vm = guest::vm(index);
            if !vm.has_ended() {
                vm.platform.service_tick(now);
                virtio::service(index, now);
                if watch {
                    vm.watchdog();
                }
            } else {
                virtio::report(index);
            }
        }
        core::hint::spin_loop();
    }
    // Let the guest cores finish printing their statistics.
    while BUSY_CORES.load(Ordering::SeqCst) != 0 {
        serial::drain(SERVICE_DRAIN_BYTES);
        core::hint::spin_loop();
    }
    for index in (0..cfg.guest_count()).filter(|&i| built[i]) {
        virtio::report(index);
    }
    crate::println!(
        "service core: {passes} passes, longest {} us",
        longest / 1000
    );
    canary::check_all();
    let inits = idt::init_redirects();
    if inits > 0 {
        log::warn!("host: {inits} physical INITs arrived; redirected to #SX and dropped");
    }
    log::info!("didvisor: all guests ended");
    shutdown::success()
}

/// Per guest and VF slot (`guest * MAX_VFS_PER_GUEST + slot`): the VF it gets, or why it
/// cannot have the one it asked for.
type GuestVfs = [Result<(pci::sriov::EnabledVfs, pci::sriov::VfFunction), &'static str>; VF_SLOTS];
const VF_SLOTS: usize = didvisor::config::MAX_GUESTS * MAX_VFS_PER_GUEST;
/// The 82576 PFs the service loop drives.
const MAX_NIC_PFS: usize = 2;
type NicPfs = [Option<igb_pf::IgbPf>; MAX_NIC_PFS];

/// Every VF of every guest with its slot index (`GuestVfs`).
fn vf_slots(cfg: &Config) -> impl Iterator<Item = (usize, &GuestConfig, pci::Bdf)> {
    cfg.guests().enumerate().flat_map(|(i, g)| {
        g.vfs
            .iter()
            .enumerate()
            .map(move |(s, bdf)| (i * MAX_VFS_PER_GUEST + s, g, bdf))
    })
}

/// Brings up each SR-IOV PF once with as many VFs as the guests need; returns what each guest
/// gets and the NIC PFs whose bring-up and mailbox the service loop continues.
fn prepare_vfs(cfg: &Config, machine: &acpi::Machine, boot: &BootInfo) -> (GuestVfs, NicPfs) {
    let mut out: GuestVfs = [const { Err("no VF requested") }; VF_SLOTS];
    let mut nics: NicPfs = [const { None }; MAX_NIC_PFS];
    let Some(ecam) = machine.ecam else {
        for (i, ..) in vf_slots(cfg) {
            out[i] = Err("no PCIe ECAM (MCFG), so no device passthrough");
        }
        return (out, nics);
    };
    let mut ecam = ecam;
    let mut owners = [None; VF_SLOTS];
    for (i, g, bdf) in vf_slots(cfg) {
        if iommu_hw::IOMMU.get().is_none() {
            out[i] = Err(NO_IOMMU);
            continue;
        }
        // `mac=` names the address of the guest's one NIC VF.
        let nic_vfs = g
            .vfs
            .iter()
            .filter(|&b| {
                nvme_pf::owner_of(&ecam, b)
                    .is_some_and(|o| PfDriver::of(&ecam, o.0) == PfDriver::Igb)
            })
            .count();
        match nvme_pf::owner_of(&ecam, bdf) {
            Some(_) if g.mac.is_some() && nic_vfs == 0 => {
                out[i] = Err("mac= is for a NIC VF, and no VF of this guest is an 82576 NIC's");
            }
            Some(_) if g.mac.is_some() && nic_vfs > 1 => {
                out[i] = Err("mac= is for one NIC VF, and this guest has several");
            }
            Some(owner) => match behind_driven_iommu(machine, &[owner.0, bdf]) {
                Ok(()) => owners[i] = Some(owner),
                Err(why) => out[i] = Err(why),
            },
            None => out[i] = Err("not a virtual function of any SR-IOV device here"),
        }
    }
    if owners.iter().all(|o| o.is_none()) {
        return (out, nics);
    }
    let Some(mut window) = pci_host::free_mmio_window(&mut ecam, boot) else {
        for (i, o) in owners.iter().enumerate() {
            if o.is_some() {
                out[i] = Err("no free MMIO below 4 GiB for the VF BARs");
            }
        }
        return (out, nics);
    };
    // One bring-up per PF, with the highest VF number any guest wants.
    let wanted = owners.map(|o| o.map(|(pf, _, n)| (pf, n)));
    for (pf, num_vfs) in didvisor::vf_plan::bring_ups(&wanted) {
        let Some((_, sriov, _)) = owners.iter().flatten().find(|o| o.0 == pf).copied() else {
            continue;
        };
        let result = match PfDriver::of(&ecam, pf) {
            PfDriver::Nvme => nvme_pf::bring_up(&mut ecam, pf, sriov, num_vfs, window),
            PfDriver::Igb => {
                // VF n's address: the `mac=` of the guest that has it, if any.
                let mut macs = [None; pci::sriov::MAX_VFS];
                for (i, g, _) in vf_slots(cfg) {
                    if let Some((p, _, n)) = owners[i] {
                        if p == pf && usize::from(n) <= macs.len() {
                            macs[usize::from(n) - 1] = g.mac;
                        }
                    }
                }
                match nics.iter_mut().find(|n| n.is_none()) {
                    None => Err("more 82576 NIC PFs than the service loop drives"),
                    Some(slot) => {
                        igb_pf::enable(&mut ecam, pf, num_vfs, &macs, window).map(|(vfs, nic)| {
                            *slot = Some(nic);
                            vfs
                        })
                    }
                }
            }
        };
        // The next PF's VF BARs go above this one's.
        if let Ok(vfs) = &result {
            window.start = vfs.window_used_to;
        }
        for (j, owner) in owners.iter().enumerate() {
            let Some((p, _, n)) = owner else { continue };
            if *p != pf {
                continue;
            }
            out[j] = match &result {
                Ok(vfs) => vfs
                    .vf(*n)
                    .map(|vf| (*vfs, vf))
                    .ok_or("VF missing after enabling"),
                Err(why) => Err(*why),
            };
        }
    }
    (out, nics)
}

/// Why a VF is refused on a machine without a working AMD-Vi IOMMU.
const NO_IOMMU: &str = "no AMD-Vi IOMMU, so no DMA isolation: refusing to pass the device through";

/// Whether the IOMMU didvisor programs translates every one of `functions` (a VF and its PF):
/// a function behind another IOMMU, or none, would do DMA that nothing confines.
fn behind_driven_iommu(
    machine: &acpi::Machine,
    functions: &[pci::Bdf],
) -> Result<(), &'static str> {
    let Some(desc) = &machine.iommu else {
        return Err(NO_IOMMU);
    };
    for f in functions {
        // The ECAM didvisor uses is segment 0's (acpi.rs).
        if let Err(e) = desc.coverage.check(0, iommu::DeviceId(f.routing_id())) {
            return Err(e.reason());
        }
    }
    Ok(())
}

/// How often the service core checks on direct-mode vCPUs.
/// Console bytes the service core writes per pass of its loop (a few characters' time at 115200
/// baud, so device timers stay on time while the queue drains).
const SERVICE_DRAIN_BYTES: usize = 16;
const WATCHDOG_PERIOD_NS: u64 = 1_000_000_000;

/// Per core: the vCPU it should run, as (vm index + 1) << 32 | vcpu id; 0 = none.
static ASSIGNMENT: [core::sync::atomic::AtomicU64; MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];
/// Cores that were given a vCPU and have not finished with it.
static BUSY_CORES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

fn assign(cpu: usize, vm: usize, vcpu: u32) {
    BUSY_CORES.fetch_add(1, Ordering::SeqCst);
    ASSIGNMENT[cpu].store(((vm as u64 + 1) << 32) | u64::from(vcpu), Ordering::SeqCst);
}

fn print_boot_info(boot: &BootInfo) {
    let protocol = match boot.protocol {
        boot::BootProtocol::Multiboot1 => "multiboot1",
        boot::BootProtocol::Multiboot2 => "multiboot2",
    };
    log::info!("boot: {protocol}, loader \"{}\"", boot.loader_name);
    log::info!("boot: command line \"{}\"", boot.cmdline);
    for r in boot.memory() {
        log::info!(
            "boot: memory [{:#014x}-{:#014x}) {}",
            r.start,
            r.end,
            r.kind.name()
        );
    }
    for (i, m) in boot.modules().iter().enumerate() {
        log::info!(
            "boot: module {i} \"{}\" [{:#x}-{:#x}) {} KiB",
            m.name,
            m.start,
            m.end,
            m.len() >> 10
        );
    }
}

fn init_memory(boot: &BootInfo) {
    for r in boot
        .memory()
        .iter()
        .filter(|r| r.kind == MemoryKind::Usable)
    {
        memory::add_usable(r.start, r.end);
    }
    // The real-mode IVT and BIOS data area, the image, the modules and the boot information.
    memory::reserve(0, 0x1000);
    let (start, end) = memory::image_range();
    memory::reserve(start, end);
    for m in boot.modules() {
        memory::reserve(m.start, m.end);
    }
    memory::reserve(boot.info_range.0, boot.info_range.1);
}

/// Per-core bring-up shared by the BSP and the APs: descriptor tables, x2APIC, SVM.
fn init_core(cpu: usize) {
    cpu::init_this_core(cpu);
    idt::load();
    x2apic::enable();
    match svm_hw::enable_on_this_core() {
        Ok(host_vmcb) => HOST_VMCB[cpu].store(host_vmcb, Ordering::SeqCst),
        Err(e) => fatal(format_args!("cpu {cpu}: {e}")),
    }
}

/// A GA log entry's vCPU: ring it (see `iommu_hw::poll_ga_log`); false if it names none.
fn ring_ga_tag(tag: iommu::ga::GaTag) -> bool {
    guest::try_vm(usize::from(tag.guest))
        .is_some_and(|vm| vm.platform.irq.ga_log_entry(usize::from(tag.vcpu)))
}

/// Entered from the trampoline (`smp`) in long mode on the stack the BSP prepared.
#[no_mangle]
extern "C" fn ap_main() -> ! {
    let cpu = smp::starting_cpu();
    init_core(cpu);
    smp::report_started();
    core_loop(cpu)
}

/// What an application processor does once it is up: wait for a vCPU, run it to its end.
fn core_loop(cpu: usize) -> ! {
    loop {
        let work = ASSIGNMENT[cpu].swap(0, Ordering::SeqCst);
        if work == 0 {
            core::hint::spin_loop();
            continue;
        }
        let vm = guest::vm((work >> 32) as usize - 1);
        let host_state = HOST_VMCB[cpu].load(Ordering::SeqCst);
        let (id, vmcb) = (work as u32, vcpu::Vcpu::vmcb_page());
        loop {
            // Nothing trained before the guest steers it, nothing it trained steers what follows.
            speculation::barrier();
            let stopped = vcpu::Vcpu::new(vm, id, cpu, host_state, vmcb).run();
            speculation::barrier();
            // A restart: vCPU 0's core reloads the guest, the others wait; then all run again.
            if stopped == guest::Stopped::Ended || !vm.restart_rendezvous(id, vf::reset) {
                break;
            }
        }
        BUSY_CORES.fetch_sub(1, Ordering::SeqCst);
    }
}
