//! One virtual CPU on its dedicated core: VMCB set-up, the run loop, and exit handling.
//!
//! Every exit is counted by reason with the cycles spent handling it. Whatever a guest does, the
//! worst outcome is the end of that guest with a message; the hypervisor never panics on guest
//! input.

use crate::hv::host::timer;
use crate::hv::host::x2apic;
use crate::hv::host::{memory, phys};
use crate::hv::irq::{ExitAction, VcpuIrq};
use crate::hv::vm::guest::{GuestBoot, Stopped, Vm};
use crate::hv::vm::platform::{GuestRequest, VirtualPlatform};
use crate::hv::world::apic::{self, ApicOutcome};
use crate::hv::world::vmrun::{self, GuestRegs};
use crate::println;
use core::sync::atomic::Ordering;
use didvisor::cpuid::{self, CpuidResult, VcpuView};
use didvisor::msr::{InjectGp, MsrFile, MsrWrite, UnknownMsrs, VmcbMsrs};
use didvisor::restart::StopKind;
use didvisor::stats::{ApicMsrExits, ExitStats};
use guestfw::guest_layout;
use svm::event::EventInj;
use svm::exit::{ExitCode, IoDirection, IoioExit, MsrAccess, NpfExit};
use svm::intercept::{IntState, NestedControl, TlbControl};
use svm::paging::GuestMemory;
use svm::segment::LongModeEntry;
use svm::{Gpa, Gva, Vmcb};

mod exit_counters_vcpu;
mod nmi_vcpu;

/// Debug console port (one byte per OUT), as in Bochs and QEMU.
pub const DEBUG_CONSOLE_PORT: u16 = 0xe9;
/// The IOAPIC's MMIO page (the MADT tells the guest).
const IOAPIC_PAGE: core::ops::Range<u64> = 0xfec0_0000..0xfec0_1000;
/// Stray accesses reported one by one per guest; the rest are only counted.
const STRAY_REPORT_LIMIT: usize = 16;
const RFLAGS_IF: u64 = 1 << 9;

/// VMEXIT_INVALIDs for refused control-register writes a guest gets as #GP before it is ended
/// (each one is a full world switch; a guest doing this in a loop is not a useful guest).
const MAX_REFUSED_CR_WRITES: u64 = 1000;

const VECTOR_UD: u8 = 6;
const VECTOR_GP: u8 = 13;

pub type Stats = ExitStats<{ ExitCode::COUNT }>;

pub struct Vcpu {
    vm: &'static Vm,
    id: u32,
    cpu: usize,
    vmcb_pa: u64,
    host_state_pa: u64,
    regs: GuestRegs,
    msrs: MsrFile,
    unknown_msrs: UnknownMsrs,
    stats: Stats,
    apic_exits: ApicMsrExits,
    /// This vCPU's side of the guest's interrupt backend.
    irq: VcpuIrq,
    /// The guest's nested-page-table generation this vCPU's TLB last saw.
    npt_generation: u64,
    /// The guest's SPEC_CTRL kept apart from the host's (`crate::hv::world::speculation`).
    spec_ctrl: crate::hv::world::speculation::VcpuSpecCtrl,
    /// Guest NMI blocking, and a single step armed over an IRET (`nmi_vcpu`).
    nmi: didvisor::nmi::NmiGate,
    nmi_step: Option<nmi_vcpu::Step>,
    /// Times a guest NMI woke this vCPU from parked (`park`).
    parks_woken: u64,
}

/// How the run loop continues after an exit.
enum Next {
    Resume,
    End,
}

impl Vcpu {
    /// A page for a vCPU's VMCB (one per core and guest: a restart uses it again).
    pub fn vmcb_page() -> u64 {
        memory::alloc_zeroed(4096, 4096)
    }

    /// vCPU `id` of `vm` on this core, at its boot state, with its VMCB in `vmcb_pa` (a page from
    /// `vmcb_page` that no other vCPU uses; cleared here, so a restart starts from nothing).
    pub fn new(vm: &'static Vm, id: u32, cpu: usize, host_state_pa: u64, vmcb_pa: u64) -> Self {
        // SAFETY: the page is this vCPU's own VMCB (`vmcb_page`), not in use by VMRUN now.
        unsafe { phys::slice_mut(vmcb_pa, 4096) }.fill(0);
        let mut v = Vcpu {
            vm,
            id,
            cpu,
            vmcb_pa,
            host_state_pa,
            regs: GuestRegs::default(),
            msrs: MsrFile::new(id == 0),
            unknown_msrs: UnknownMsrs::default(),
            stats: Stats::new(),
            apic_exits: ApicMsrExits::default(),
            irq: vm.platform.irq.vcpu(id as usize),
            npt_generation: 0,
            spec_ctrl: crate::hv::world::speculation::VcpuSpecCtrl::on_this_core(),
            nmi: didvisor::nmi::NmiGate::default(),
            nmi_step: None,
            parks_woken: 0,
        };
        v.init_vmcb();
        v
    }

    fn vmcb(&mut self) -> &mut Vmcb {
        // SAFETY: the VMCB page belongs to this vCPU, which only its own core runs; the hardware
        // touches it only inside VMRUN, while no reference is held.
        unsafe { phys::get_mut(self.vmcb_pa) }
    }

    /// The backend and the VMCB at once (the backend's methods take the VMCB).
    fn irq_and_vmcb(&mut self) -> (&mut VcpuIrq, &mut Vmcb) {
        // SAFETY: as in `vmcb`.
        let vmcb = unsafe { phys::get_mut(self.vmcb_pa) };
        (&mut self.irq, vmcb)
    }

    /// The vCPU starts or stops running: its interrupt backend, with the guest's VFs' remapping
    /// tables.
    fn set_running(&self, running: bool) {
        let tables = self.vm.vf.each_ref().map(|vf| vf.get().map(|v| v.table()));
        self.irq.set_running(&tables, running);
    }

    fn platform(&self) -> &'static VirtualPlatform {
        &self.vm.platform
    }

    fn init_vmcb(&mut self) {
        let (vm, id) = (self.vm, self.id);
        let v = self.vmcb();
        // The whole intercept set, and why each bit is there: `didvisor::intercepts`.
        let (misc1, misc2, misc3) = vm.platform.irq.intercepts();
        v.set_misc1(misc1);
        v.set_misc2(misc2);
        v.set_misc3(misc3);
        if log::log_enabled!(log::Level::Trace) {
            // Diagnostics: see every exception but page faults and debug traps, then re-inject it.
            for vector in (0..32).filter(|v| ![1, 3, 14].contains(v)) {
                v.intercept_exception(vector, true);
            }
        }
        v.iopm_base_pa = vm.iopm_pa;
        v.msrpm_base_pa = vm.msrpm_pa;
        // One vCPU per core, so every guest can use ASID 1 (ASIDs tag TLB entries per core).
        v.guest_asid = 1;
        v.set_tlb_control(TlbControl::FlushAll);
        v.set_nested_control(NestedControl::NP_ENABLE);
        v.n_cr3 = vm.npt_root;
        let (irq, v) = self.irq_and_vmcb();
        irq.setup_vmcb(v);
        let gdt_limit = (guest_layout::GDT_ENTRIES.len() * 8 - 1) as u32;
        v.set_long_mode_state(&LongModeEntry {
            cr3: guest_layout::PML4,
            rip: vm.boot.entry(),
            rsp: 0,
            gdt_base: guest_layout::GDT,
            gdt_limit,
            cs: guest_layout::CODE64_SELECTOR,
            ds: guest_layout::DATA_SELECTOR,
        });
        match vm.boot {
            // The boot protocol of test guests: RDI = RAM size from 0 (below the MMIO hole),
            // RSI = vCPU id, RDX = command line.
            GuestBoot::TestGuest { cmdline, .. } => {
                self.regs.rdi = vm.ram_layout.low().len;
                self.regs.rsi = u64::from(id);
                self.regs.rdx = cmdline;
            }
            // Linux's 64-bit boot protocol: RSI = boot_params, interrupts off (RFLAGS = 2).
            GuestBoot::Linux(entry) => self.regs.rsi = entry.rsi,
        }
    }

    /// Runs the guest until it ends or restarts, then prints this vCPU's exit statistics (of this
    /// boot).
    pub fn run(&mut self) -> Stopped {
        println!(
            "guest {}: vcpu {} starts on cpu {}",
            self.vm.config.name, self.id, self.cpu
        );
        self.platform().vcpus[self.id as usize]
            .core_apic_id
            .store(x2apic::id(), Ordering::Release);
        if self.id != 0 {
            // Application processors wait, as real ones do, for INIT and a startup IPI.
            match self.platform().vcpus[self.id as usize].wait_for_startup(self.vm.stop_flag()) {
                Some(vector) => self.enter_real_mode_at(vector),
                None => {
                    println!(
                        "guest {}: vcpu {} was never started",
                        self.vm.config.name, self.id
                    );
                    return self.stopped();
                }
            }
        }
        self.vm.mark_started();
        self.set_running(true);
        loop {
            // First: an injected NMI takes EVENTINJ before an emulated interrupt would.
            self.prepare_nmi_entry();
            let (irq, v) = self.irq_and_vmcb();
            irq.before_entry(v);
            let generation = self.platform().npt_generation.load(Ordering::Acquire);
            if generation != self.npt_generation {
                self.npt_generation = generation;
                self.vmcb().set_tlb_control(TlbControl::FlushAll);
            }
            self.spec_ctrl.enter();
            // SAFETY: our VMCB is initialised, SVM is on for this core (init_core), and host
            // interrupts are off on guest cores.
            unsafe { vmrun::run(&mut self.regs, self.vmcb_pa, self.host_state_pa) };
            self.spec_ctrl.exit();
            let start = timer::rdtsc();
            let exit = self.vmcb().exit();
            self.vmcb().set_tlb_control(TlbControl::DoNothing);
            self.vmcb().event_inj = 0;
            // An event whose delivery the exit interrupted is delivered again on the next entry.
            if let Some(ev) = svm::event::reinjectable(self.vmcb().exit_int_info) {
                self.vmcb().inject(ev);
            }
            let rip = self.vmcb().rip;
            self.nmi.exit_at(rip);
            let next = self.handle(exit);
            self.stats.record(exit.index(), timer::rdtsc() - start);
            if let Next::End = next {
                break;
            }
        }
        self.set_running(false);
        let slot = &self.platform().vcpus[self.id as usize];
        // No more interrupts for this core: the guest no longer runs on it.
        slot.core_apic_id.store(u32::MAX, Ordering::Release);
        self.irq.leave_core();
        for (msr, reads, writes) in self.unknown_msrs.iter() {
            println!(
                "guest {}: vcpu {}: unknown MSR {msr:#x}: {reads} reads, {writes} writes (#GP)",
                self.vm.config.name, self.id
            );
        }
        // One print, so that another core's report cannot land inside this vCPU's block.
        println!(
            "guest {}: vcpu {} exits:\n{}\n  {}\n  interrupts: {} sent to this vcpu by the hypervisor, {}{}",
            self.vm.config.name,
            self.id,
            self.stats.table(&ExitCode::index_name),
            self.apic_exits,
            slot.delivered.load(Ordering::Relaxed),
            self.irq.report(),
            self.nmi_line()
        );
        self.stopped()
    }

    /// Why this vCPU's run is over: the guest ended, or it stops for a restart.
    fn stopped(&self) -> Stopped {
        if self.vm.has_ended() {
            Stopped::Ended
        } else {
            Stopped::Restart
        }
    }

    /// The state a startup IPI leaves an application processor in (AMD APM vol. 2, 14.1.5 and
    /// 16.5 "Startup IPI"): real mode, CS = vector << 8, IP = 0, caches as after INIT.
    fn enter_real_mode_at(&mut self, vector: u8) {
        let v = self.vmcb();
        let seg = |selector: u16, base: u64, attrib: u16| svm::VmcbSegment {
            selector,
            attrib,
            limit: 0xffff,
            base,
        };
        v.cs = seg(u16::from(vector) << 8, u64::from(vector) << 12, 0x9b);
        for s in [&mut v.ds, &mut v.es, &mut v.ss, &mut v.fs, &mut v.gs] {
            *s = seg(0, 0, 0x93);
        }
        v.gdtr = seg(0, 0, 0);
        v.idtr = seg(0, 0, 0);
        v.ldtr = seg(0, 0, 0x82);
        v.tr = seg(0, 0, 0x8b);
        v.cr0 = 0x6000_0010;
        v.cr3 = 0;
        v.cr4 = 0;
        v.efer = svm::features::EFER_SVME;
        v.rflags = 2;
        v.rip = 0;
        v.rsp = 0;
        v.rax = 0;
        v.cpl = 0;
        self.regs = GuestRegs::default();
    }

    /// Turns the VF host vectors this core took into the guest's vectors (emulated mode).
    fn collect_device_interrupts(&mut self) {
        let pending = crate::hv::host::idt::take_device_interrupts();
        if pending == 0 {
            return;
        }
        for host in self.vm.vfs() {
            host.take_host_vectors(self.platform(), self.id as usize, pending);
        }
    }

    /// Takes a host interrupt left pending by an INTR exit (the host runs with interrupts off):
    /// open the window one instruction wide so its handler can EOI it.
    fn drain_host_interrupt(&self) {
        crate::hv::host::cpu::take_pending_interrupts();
    }

    fn end(&self, reason: core::fmt::Arguments) -> Next {
        self.vm.end(reason);
        Next::End
    }

    fn handle(&mut self, exit: ExitCode) -> Next {
        if self.vm.must_stop() {
            return Next::End;
        }
        let (info1, info2, rip) = (
            self.vmcb().exit_info1,
            self.vmcb().exit_info2,
            self.vmcb().rip,
        );
        if self.irq.collects_at_every_exit() && exit != ExitCode::Intr {
            // A VF interrupt that came while the guest had IF clear caused no INTR exit (without
            // V_INTR_MASKING the guest's IF holds physical interrupts too): it waits in this core's
            // APIC. Take it into the virtual APIC at every exit, so that an IRR read shows it as
            // hardware would (the delivery-checking guest's `vf` check read it clear before).
            self.drain_host_interrupt();
            self.collect_device_interrupts();
        }
        match exit {
            ExitCode::Cpuid => self.cpuid(),
            ExitCode::Ioio => match IoioExit::decode(info1, info2) {
                Ok(io) => self.ioio(io),
                Err(e) => self.end(format_args!("undecodable I/O exit {e:?}")),
            },
            ExitCode::Msr => match MsrAccess::from_exit_info1(info1) {
                Ok(access) => self.msr(access),
                Err(e) => self.end(format_args!("undecodable MSR exit {e:?}")),
            },
            ExitCode::Npf => self.nested_page_fault(NpfExit::decode(info1, info2)),
            ExitCode::Iret => self.nmi_iret(rip),
            ExitCode::Exception(1) if self.nmi_step.is_some() => self.nmi_single_step(),
            ExitCode::Exception(vector) => {
                // Only intercepted for diagnostics (loglevel=trace): report and deliver unchanged.
                let error =
                    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30).then_some(info1 as u32);
                log::trace!(
                    "guest {}: vcpu {}: exception {vector} at rip {rip:#x}, error {error:?}",
                    self.vm.config.name,
                    self.id
                );
                self.inject(EventInj::exception(vector, error))
            }
            // A host interrupt (emulated mode: wake-up timer or kick): take it; the next entry
            // injects whatever became pending.
            ExitCode::Intr => {
                self.drain_host_interrupt();
                self.collect_device_interrupts();
                Next::Resume
            }
            // The hypervisor's NMIs: recall at guest end (handled above), where HLT does not
            // exit the service core's once-a-second look at whether the guest halted for good,
            // and the nudge that makes a vCPU inject a guest NMI (`apic::raise_nmi`: the next
            // entry).
            ExitCode::Nmi => {
                if !self.platform().irq.hlt_exits()
                    && !self.nmi_wakes()
                    && self.halted_with_interrupts_off(rip)
                {
                    self.park(rip)
                } else {
                    Next::Resume
                }
            }
            ExitCode::Hlt => self.halt(rip),
            // The exits only an interrupt mode causes (interrupt window, AVIC).
            ExitCode::Vintr | ExitCode::AvicIncompleteIpi | ExitCode::AvicNoAccel => {
                self.irq_exit(exit, info1, info2, rip)
            }
            ExitCode::Shutdown => {
                let why = format_args!("triple fault (shutdown) at rip {rip:#x}");
                self.vm.reset_or_end(StopKind::Crash, why);
                Next::End
            }
            // The exits of instructions a guest may not run natively, by the table's response.
            other if didvisor::intercepts::response(other).is_some() => {
                self.intercepted_instruction(other, rip)
            }
            // A pending SMI: taken by firmware in host context once the exit path sets GIF.
            ExitCode::Smi => Next::Resume,
            // A physical INIT (APM vol. 2, 15.21.8, Table 15-12): it exited still pending, and
            // when the exit path set GIF, VM_CR.R_INIT made it #SX, which the host dropped
            // (`svm_hw`, `idt`). The guest's own INITs are virtual; a physical one is no
            // request of the guest's, so the guest goes on (under QEMU, which has no R_INIT,
            // it would have reset the core instead).
            ExitCode::Init => {
                self.vm.report(format_args!(
                    "vcpu {}: a physical INIT reached its core: dropped (#SX), the guest resumes",
                    self.id
                ));
                Next::Resume
            }
            ExitCode::Invalid => {
                let why = crate::hv::world::svm_hw::check_vmcb(self.vmcb());
                if why.is_ok() && self.refused_cr_write(rip) {
                    return self.inject(EventInj::exception(VECTOR_GP, Some(0)));
                }
                let v = self.vmcb();
                let (cr0, cr3, cr4, efer) = (v.cr0, v.cr3, v.cr4, v.efer);
                self.end(format_args!(
                    "VMRUN refused the guest state (VMEXIT_INVALID): {why:?} (cr0 {cr0:#x}, cr3 {cr3:#x}, cr4 {cr4:#x}, efer {efer:#x})"
                ))
            }
            other => self.unhandled(other, info1, info2, rip),
        }
    }

    fn unhandled(&self, exit: ExitCode, info1: u64, info2: u64, rip: u64) -> Next {
        self.end(format_args!(
            "unhandled exit {} ({:#x}) at rip {rip:#x}, exitinfo1 {info1:#x}, exitinfo2 {info2:#x}",
            exit.name(),
            exit.raw(),
        ))
    }

    /// An exit the interrupt backend handles; what it asks for.
    fn irq_exit(&mut self, exit: ExitCode, info1: u64, info2: u64, rip: u64) -> Next {
        let vm = self.vm;
        let guest = vm.config.name.as_str();
        let (irq, v) = self.irq_and_vmcb();
        let Some(action) = irq.exit(exit, info1, info2, v, guest) else {
            return self.unhandled(exit, info1, info2, rip);
        };
        match action {
            ExitAction::Resume => Next::Resume,
            ExitAction::ReadResult(value) => {
                self.vmcb().rax = value & 0xffff_ffff;
                self.regs.rdx = value >> 32;
                // RDMSR is two bytes long.
                self.vmcb().rip += 2;
                Next::Resume
            }
            ExitAction::ApicWrite { msr, value } => {
                let outcome = apic::write(self.platform(), self.id as usize, msr, value);
                self.finish_apic(outcome, 0)
            }
            ExitAction::IoapicEoi(vector) => {
                apic::ioapic_eoi(self.platform(), vector);
                Next::Resume
            }
            ExitAction::InjectGp => self.inject(EventInj::exception(VECTOR_GP, Some(0))),
        }
    }

    fn inject(&mut self, ev: EventInj) -> Next {
        self.vmcb().inject(ev);
        Next::Resume
    }

    /// An instruction the intercept table answers (`didvisor::intercepts`): #UD, a no-op, or a
    /// checked XSETBV.
    fn intercepted_instruction(&mut self, exit: ExitCode, rip: u64) -> Next {
        use didvisor::intercepts::{self as table, Response, XsetbvFault};
        let opcode = match exit {
            ExitCode::Wbinvd => table::OPCODE_WBINVD,
            ExitCode::Invd => table::OPCODE_INVD,
            _ => table::OPCODE_XSETBV,
        };
        match table::response(exit) {
            Some(Response::Nop | Response::CheckedXsetbv) => {}
            _ => return self.inject(EventInj::exception(VECTOR_UD, None)),
        }
        let mut bytes = [0u8; insn::MAX_INSN_LEN];
        let n = self.fetch_instruction(rip, &mut bytes);
        let long = self.cpu_mode() == insn::Mode::Long64;
        let Some(len) = table::length_of(&bytes[..n], opcode, long) else {
            return self.inject(EventInj::exception(VECTOR_UD, None));
        };
        if exit == ExitCode::Xsetbv {
            let value = (self.regs.rdx << 32) | (self.vmcb().rax & 0xffff_ffff);
            let osxsave = self.vmcb().cr4 & didvisor::cpuid::bit::CR4_OSXSAVE != 0;
            let cpl = self.vmcb().cpl;
            let supported = self.guest_xcr0_supported();
            match table::check_xsetbv(self.regs.rcx as u32, value, cpl, osxsave, supported) {
                Ok(v) => write_xcr0(v),
                Err(XsetbvFault::NotEnabled) => {
                    return self.inject(EventInj::exception(VECTOR_UD, None))
                }
                Err(XsetbvFault::Gp) => {
                    return self.inject(EventInj::exception(VECTOR_GP, Some(0)))
                }
            }
        }
        self.vmcb().rip = rip + u64::from(len);
        Next::Resume
    }

    /// Whether a VMEXIT_INVALID whose VMCB passes every check was QEMU refusing a guest's write
    /// of a reserved control-register combination (`didvisor::intercepts::mov_to_cr`): the
    /// instruction at RIP is a MOV to CR0/CR3/CR4. A processor gives the guest #GP for it; so
    /// does the caller. At most a few in a row: an invalid state that is not this would
    /// otherwise loop.
    fn refused_cr_write(&mut self, rip: u64) -> bool {
        let mut bytes = [0u8; insn::MAX_INSN_LEN];
        let n = self.fetch_instruction(rip, &mut bytes);
        let long = self.cpu_mode() == insn::Mode::Long64;
        let cr = didvisor::intercepts::mov_to_cr(&bytes[..n], long);
        let last = self.stats.count(ExitCode::Invalid.index());
        matches!(cr, Some(0 | 3 | 4)) && last < MAX_REFUSED_CR_WRITES
    }

    /// CPUID 0Dh.0 EDX:EAX as the guest's CPUID policy shows it: the XCR0 bits it may set.
    fn guest_xcr0_supported(&mut self) -> u64 {
        let r = self.guest_cpuid(0xd, 0);
        (u64::from(r.edx) << 32) | u64::from(r.eax)
    }

    /// The guest's answer for CPUID `leaf`/`subleaf`: the host's, through the CPUID policy.
    fn guest_cpuid(&mut self, leaf: u32, subleaf: u32) -> CpuidResult {
        let host = |l: u32, s: u32| {
            let r = core::arch::x86_64::__cpuid_count(l, s);
            CpuidResult {
                eax: r.eax,
                ebx: r.ebx,
                ecx: r.ecx,
                edx: r.edx,
            }
        };
        let max_basic = host(0, 0).eax;
        let max_ext = host(0x8000_0000, 0).eax;
        let view = VcpuView {
            apic_id: self.id,
            vcpu_count: self.vm.config.cores.len() as u32,
            guest_cr4: self.vmcb().cr4,
            tsc_invariant: crate::hv::host::timer::invariant(),
        };
        cpuid::guest_cpuid(
            leaf,
            subleaf,
            host(leaf, subleaf),
            max_basic,
            max_ext,
            &view,
        )
    }

    fn cpuid(&mut self) -> Next {
        let leaf = self.vmcb().rax as u32;
        let subleaf = self.regs.rcx as u32;
        let r = match leaf {
            didvisor::exit_counters::LEAF => {
                didvisor::exit_counters::answer(subleaf, |c| self.exit_counter(c))
            }
            _ => self.guest_cpuid(leaf, subleaf),
        };
        self.vmcb().rax = u64::from(r.eax);
        self.regs.rbx = u64::from(r.ebx);
        self.regs.rcx = u64::from(r.ecx);
        self.regs.rdx = u64::from(r.edx);
        // CPUID is 0F A2; without NRIP save the length is ours to know.
        self.vmcb().rip += 2;
        Next::Resume
    }

    fn ioio(&mut self, io: IoioExit) -> Next {
        if io.string {
            return self.end(format_args!(
                "string I/O (INS/OUTS) on port {:#x} is not emulated",
                io.port
            ));
        }
        let mask = (1u64 << (u32::from(io.size) * 8)) - 1;
        let now = timer::nanos();
        let platform = self.platform();
        let effect = match (io.direction, io.port) {
            (IoDirection::Out, DEBUG_CONSOLE_PORT) => {
                self.vm.console_byte(self.vmcb().rax as u8);
                devices::PortEffect::None
            }
            (IoDirection::Out, port) => {
                let value = (self.vmcb().rax & mask) as u32;
                let mut legacy = platform.legacy.lock();
                let effect = legacy.port_write(port, io.size, value, now);
                platform.note_deadline(&legacy);
                effect
            }
            (IoDirection::In, port) => {
                let (value, effect) = platform.legacy.lock().port_read(port, io.size, now);
                let rax = self.vmcb().rax;
                self.vmcb().rax = (rax & !mask) | (u64::from(value) & mask);
                effect
            }
        };
        self.vm.drain_console();
        for host in self.vm.vfs() {
            crate::hv::vm::vf::apply_events(self.vm, host);
        }
        match platform.port_effect(effect) {
            Some(GuestRequest::End(why)) => return self.end(format_args!("{why}")),
            Some(GuestRequest::Reset(why)) => {
                self.vm.reset_or_end(StopKind::Reset, format_args!("{why}"));
                return Next::End;
            }
            None => {}
        }
        self.vmcb().rip = io.next_rip;
        Next::Resume
    }

    /// A vCPU in HLT with interrupts disabled (RIP already past the HLT): nothing but an NMI or
    /// INIT could wake it. A guest often parks its other processors like this while one of them
    /// shuts down; the guest is over only when every vCPU is parked. The vCPU is not running
    /// meanwhile (AVIC IsRunning and the IsRun of the IRTEs posting to it are 0, so a VF
    /// interrupt for it makes a GA log entry and waits in its IRR). A guest NMI sent to it
    /// later wakes it: the next entry injects the NMI, whose IRET returns past the HLT.
    fn park(&mut self, rip: u64) -> Next {
        self.set_running(false);
        self.vm.report(format_args!(
            "vcpu {} halted with interrupts disabled at rip {rip:#x}: parked",
            self.id
        ));
        if self.platform().park() {
            return self.end(format_args!(
                "halted forever (every vcpu in HLT with interrupts disabled; last at rip {rip:#x})"
            ));
        }
        loop {
            // The guest ended, or it is being restarted (the restart stops every vCPU).
            if self.vm.must_stop() {
                return Next::End;
            }
            if self.nmi_wakes() {
                self.platform().unpark();
                self.parks_woken += 1;
                self.set_running(true);
                return Next::Resume;
            }
            core::hint::spin_loop();
        }
    }

    /// Where HLT is not intercepted (direct, avic): after an NMI exit, the guest is halted for
    /// good if IF is clear and the code at RIP leads straight back into a HLT
    /// (`didvisor::halt_loop`). Not the byte before RIP: that may end any instruction.
    fn halted_with_interrupts_off(&mut self, rip: u64) -> bool {
        if self.vmcb().rflags & RFLAGS_IF != 0 {
            return false;
        }
        let mode = self.cpu_mode();
        didvisor::halt_loop::runs_into_hlt(mode, rip, |ip, out| self.fetch_instruction(ip, out))
    }

    /// HLT. Emulated mode only (the others do not intercept it): wait on this dedicated core
    /// until a virtual interrupt is deliverable or a guest NMI can be taken. With interrupts
    /// disabled only an NMI could wake the guest: without one latched, it parks.
    fn halt(&mut self, rip: u64) -> Next {
        // HLT is one byte long.
        self.vmcb().rip = rip + 1;
        // The HLT completed: an STI shadow it sat in (the `sti; hlt` idiom) ended with it. Left
        // set, it would keep the waking interrupt from being injected before the instruction
        // after the HLT, which in `sti; hlt; cli` closes the window until the next STI (found
        // by the delivery-checking guest: `deliver=masking`, HLT wake-ups).
        let v = self.vmcb();
        v.int_state &= !IntState::INTERRUPT_SHADOW.bits();
        if self.vmcb().rflags & RFLAGS_IF == 0 && !self.nmi_wakes() {
            return self.park(rip);
        }
        loop {
            // Passed-through devices interrupt this core with host vectors: take them.
            self.drain_host_interrupt();
            self.collect_device_interrupts();
            if self.irq.wake_pending(timer::nanos()) || self.nmi_wakes() {
                return Next::Resume;
            }
            if self.vm.must_stop() {
                return Next::End;
            }
            core::hint::spin_loop();
        }
    }

    fn msr(&mut self, access: MsrAccess) -> Next {
        let msr = self.regs.rcx as u32;
        if apic::is_x2apic_msr(msr) {
            return self.apic_msr(access, msr);
        }
        let vmcb = VmcbMsrs {
            efer: self.vmcb().efer,
            g_pat: self.vmcb().g_pat,
        };
        let result = match access {
            MsrAccess::Read => self.msrs.read(msr, vmcb).map(|value| {
                self.vmcb().rax = value & 0xffff_ffff;
                self.regs.rdx = value >> 32;
            }),
            MsrAccess::Write => {
                let value = (self.regs.rdx << 32) | (self.vmcb().rax & 0xffff_ffff);
                self.msrs.write(msr, value).map(|effect| match effect {
                    MsrWrite::Efer(v) => self.vmcb().efer = v,
                    MsrWrite::Pat(v) => self.vmcb().g_pat = v,
                    MsrWrite::Done | MsrWrite::Ignored => {}
                })
            }
        };
        match result {
            Ok(()) => {
                // RDMSR and WRMSR are two bytes long.
                self.vmcb().rip += 2;
                Next::Resume
            }
            Err(InjectGp) => {
                self.unknown_msrs.record(msr, access == MsrAccess::Write);
                log::debug!(
                    "guest {}: vcpu {}: {access:?} of MSR {msr:#x}: #GP",
                    self.vm.config.name,
                    self.id
                );
                self.inject(EventInj::exception(VECTOR_GP, Some(0)))
            }
        }
    }

    fn apic_msr(&mut self, access: MsrAccess, msr: u32) -> Next {
        let vcpu = self.id as usize;
        self.apic_exits.record(msr);
        let outcome = match access {
            MsrAccess::Read => match apic::read(self.platform(), vcpu, msr) {
                Ok(value) => {
                    self.vmcb().rax = value & 0xffff_ffff;
                    self.regs.rdx = value >> 32;
                    ApicOutcome::Done
                }
                Err(_) => ApicOutcome::Fault,
            },
            MsrAccess::Write => {
                let value = (self.regs.rdx << 32) | (self.vmcb().rax & 0xffff_ffff);
                apic::write(self.platform(), vcpu, msr, value)
            }
        };
        self.finish_apic(outcome, 2)
    }

    /// Acts on an x2APIC access's outcome; `len` is how far RIP moves on success (2 for an
    /// intercepted RDMSR/WRMSR, 0 after a trap-like AVIC exit).
    fn finish_apic(&mut self, outcome: ApicOutcome, len: u64) -> Next {
        match outcome {
            ApicOutcome::Done => {
                self.vmcb().rip += len;
                Next::Resume
            }
            ApicOutcome::Fault => {
                log::debug!(
                    "guest {}: vcpu {}: x2APIC access: #GP",
                    self.vm.config.name,
                    self.id
                );
                self.inject(EventInj::exception(VECTOR_GP, Some(0)))
            }
            ApicOutcome::StartVcpu { target, ipi } => {
                let slot = &self.platform().vcpus[target];
                match ipi.delivery_mode {
                    didvisor::irqchip::DeliveryMode::Init => slot.init(),
                    _ => slot.startup(ipi.vector),
                }
                self.vmcb().rip += len;
                Next::Resume
            }
        }
    }

    /// An access to guest-physical memory that is not mapped: not RAM, and (so far) no device. It
    /// is decoded and emulated as open bus — reads return all ones, writes are dropped — and
    /// reported, so a stray guest access never reaches anyone else's memory nor stops the machine.
    fn nested_page_fault(&mut self, npf: NpfExit) -> Next {
        let gpa = npf.gpa.as_u64();
        let rip = self.vmcb().rip;
        if self.vm.ram_layout.contains(gpa) {
            return self.end(format_args!(
                "nested page fault inside ram at gpa {gpa:#x} (rip {rip:#x}): hypervisor bug"
            ));
        }
        let mut bytes = [0u8; insn::MAX_INSN_LEN];
        let fetched = self.fetch_instruction(rip, &mut bytes);
        let mode = self.cpu_mode();
        let decoded = match insn::decode_mem_access(&bytes[..fetched], mode) {
            Ok(d) => d,
            Err(e) => {
                return self.end(format_args!(
                    "access to unbacked gpa {gpa:#x} by an instruction that cannot be emulated at rip {rip:#x}: {e:?}"
                ))
            }
        };
        let size = decoded.access.size();
        let gpr = self.gprs();
        for host in self.vm.vfs() {
            let write = decoded.store_value(&gpr);
            if let Some(value) = crate::hv::vm::vf::mmio(self.vm, host, gpa, size, write) {
                if write.is_none() {
                    if let Some((reg, v)) = decoded.load_result(&gpr, value) {
                        self.set_gpr(reg, v);
                    }
                }
                self.vmcb().rip = rip + u64::from(decoded.len);
                return Next::Resume;
            }
        }
        let write = decoded.store_value(&gpr);
        if let Some(value) = crate::hv::virtio::mmio(self.vm, gpa, size, write) {
            if write.is_none() {
                if let Some((reg, v)) = decoded.load_result(&gpr, value) {
                    self.set_gpr(reg, v);
                }
            }
            self.vmcb().rip = rip + u64::from(decoded.len);
            return Next::Resume;
        }
        if IOAPIC_PAGE.contains(&gpa) {
            let offset = gpa - IOAPIC_PAGE.start;
            let platform = self.platform();
            if let Some(value) = decoded.store_value(&gpr) {
                let deliveries =
                    platform
                        .ioapic
                        .lock()
                        .mmio_write(offset, u64::from(size), value as u32);
                for d in deliveries.iter() {
                    platform.deliver(d);
                }
            } else {
                let value = platform.ioapic.lock().mmio_read(offset, u64::from(size));
                if let Some((reg, v)) = decoded.load_result(&gpr, u64::from(value)) {
                    self.set_gpr(reg, v);
                }
            }
            self.vmcb().rip = rip + u64::from(decoded.len);
            return Next::Resume;
        }
        let strays = self.vm.stray_accesses.fetch_add(1, Ordering::Relaxed);
        let report = strays < STRAY_REPORT_LIMIT;
        if let Some((reg, value)) = decoded.load_result(&gpr, u64::MAX) {
            self.set_gpr(reg, value);
            if report {
                println!(
                "guest {}: vcpu {}: read of {size} bytes at unbacked gpa {gpa:#x} (rip {rip:#x}): no device there, reads as all ones",
                self.vm.config.name, self.id
            );
            }
        } else if report {
            println!(
                "guest {}: vcpu {}: write of {size} bytes at unbacked gpa {gpa:#x} (rip {rip:#x}): no device there, dropped",
                self.vm.config.name, self.id
            );
        }
        self.vmcb().rip = rip + u64::from(decoded.len);
        Next::Resume
    }

    /// The operating mode the guest's next instruction decodes in (from CR0.PE, EFER.LMA,
    /// RFLAGS.VM and the CS attributes L and D/B).
    fn cpu_mode(&mut self) -> insn::Mode {
        let v = self.vmcb();
        let attrib = v.cs.attrib;
        insn::Mode::from_cpu_state(
            v.cr0 & 1 != 0,
            v.efer & (1 << 10) != 0,
            v.rflags & (1 << 17) != 0,
            attrib & (1 << 9) != 0,
            attrib & (1 << 10) != 0,
        )
    }

    /// Copies up to 15 instruction bytes at CS:`rip`; returns how many could be read.
    fn fetch_instruction(&mut self, rip: u64, out: &mut [u8; insn::MAX_INSN_LEN]) -> usize {
        let (cr3, cr0, cr4, efer, cs_base) = {
            let v = self.vmcb();
            (v.cr3, v.cr0, v.cr4, v.efer, v.cs.base)
        };
        // Outside 64-bit mode the code segment's base counts (real-mode AP trampolines).
        let linear = if self.cpu_mode() == insn::Mode::Long64 {
            rip
        } else {
            cs_base.wrapping_add(rip)
        };
        let mem = RamView(self.vm);
        for (i, byte) in out.iter_mut().enumerate() {
            let gva = Gva(linear.wrapping_add(i as u64));
            let walked = svm::walk::walk_guest(cr3, cr0, cr4, efer, gva, &mem);
            match walked.map(|gpa| self.vm.ram_bytes(gpa.as_u64(), 1)) {
                Ok(Some(ram)) => *byte = ram[0],
                other => {
                    log::debug!(
                        "instruction fetch at {:#x}: {other:?} (cr3 {cr3:#x})",
                        gva.as_u64()
                    );
                    return i;
                }
            }
        }
        out.len()
    }

    /// General-purpose registers in encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15).
    fn gprs(&mut self) -> [u64; 16] {
        let r = self.regs;
        let (rax, rsp) = (self.vmcb().rax, self.vmcb().rsp);
        [
            rax, r.rcx, r.rdx, r.rbx, rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
            r.r13, r.r14, r.r15,
        ]
    }

    fn set_gpr(&mut self, index: u8, value: u64) {
        let r = &mut self.regs;
        match index {
            0 => self.vmcb().rax = value,
            1 => r.rcx = value,
            2 => r.rdx = value,
            3 => r.rbx = value,
            4 => self.vmcb().rsp = value,
            5 => r.rbp = value,
            6 => r.rsi = value,
            7 => r.rdi = value,
            8 => r.r8 = value,
            9 => r.r9 = value,
            10 => r.r10 = value,
            11 => r.r11 = value,
            12 => r.r12 = value,
            13 => r.r13 = value,
            14 => r.r14 = value,
            _ => r.r15 = value,
        }
    }
}

/// Loads XCR0 on this core for the guest. XSETBV needs CR4.OSXSAVE, which the hypervisor's own
/// CR4 does not have (it uses no extended state): set it around the write only.
fn write_xcr0(value: u64) {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    let cr4 = Cr4::read();
    // SAFETY: OSXSAVE only enables XGETBV/XSETBV and XSAVE; the hypervisor's code uses none of
    // them, and CR4 is restored right after.
    unsafe { Cr4::write(cr4 | Cr4Flags::OSXSAVE) };
    // SAFETY: XCR0 is this dedicated core's and the hypervisor uses no extended state; `value`
    // passed the architectural rules for the features CPUID shows the guest.
    unsafe { x86_64::registers::xcontrol::XCr0::write_raw(value) };
    // SAFETY: the CR4 value this core had.
    unsafe { Cr4::write(cr4) };
}

/// Guest RAM for the guest page-table walker.
struct RamView<'a>(&'a Vm);

impl GuestMemory for RamView<'_> {
    fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        let bytes = self.0.ram_bytes(gpa.as_u64(), 8)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}
