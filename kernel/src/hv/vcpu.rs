//! One virtual CPU on its dedicated core: VMCB set-up, the run loop, and exit handling.
//!
//! Every exit is counted by reason with the cycles spent handling it. Whatever a guest does, the
//! worst outcome is the end of that guest with a message; the hypervisor never panics on guest
//! input.

use super::guest::{GuestBoot, Vm};
use super::vmrun::{self, GuestRegs};
use super::{memory, timer};
use crate::println;
use didvisor::cpuid::{self, CpuidResult, VcpuView};
use didvisor::guest_layout;
use didvisor::msr::{InjectGp, MsrFile, MsrWrite, VmcbMsrs};
use didvisor::stats::ExitStats;
use svm::event::EventInj;
use svm::exit::{ExitCode, IoDirection, IoioExit, MsrAccess, NpfExit};
use svm::intercept::{InterceptMisc1, InterceptMisc2, NestedControl, TlbControl};
use svm::paging::GuestMemory;
use svm::segment::LongModeEntry;
use svm::{Gpa, Gva, Vmcb};

/// Debug console port (one byte per OUT), as in Bochs and QEMU.
pub const DEBUG_CONSOLE_PORT: u16 = 0xe9;
/// ACPI PM1a control register of the virtual platform; a write with SLP_EN powers the guest off.
pub const PM1A_CNT_PORT: u16 = 0x604;
const SLP_EN: u32 = 1 << 13;

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
    stats: Stats,
}

/// How the run loop continues after an exit.
enum Next {
    Resume,
    End,
}

impl Vcpu {
    pub fn new(vm: &'static Vm, id: u32, cpu: usize, host_state_pa: u64) -> Self {
        let vmcb_pa = memory::alloc_zeroed(4096, 4096);
        let mut v = Vcpu {
            vm,
            id,
            cpu,
            vmcb_pa,
            host_state_pa,
            regs: GuestRegs::default(),
            msrs: MsrFile::new(id == 0),
            stats: Stats::new(),
        };
        v.init_vmcb();
        v
    }

    fn vmcb(&mut self) -> &mut Vmcb {
        // SAFETY: the VMCB page belongs to this vCPU, which only its own core runs; the hardware
        // touches it only inside VMRUN, while no reference is held.
        unsafe { &mut *(self.vmcb_pa as *mut Vmcb) }
    }

    fn init_vmcb(&mut self) {
        let (vm, id) = (self.vm, self.id);
        let v = self.vmcb();
        v.set_misc1(
            InterceptMisc1::INTR
                | InterceptMisc1::NMI
                | InterceptMisc1::SMI
                | InterceptMisc1::INIT
                | InterceptMisc1::CPUID
                | InterceptMisc1::HLT
                | InterceptMisc1::INVD
                | InterceptMisc1::IOIO_PROT
                | InterceptMisc1::MSR_PROT
                | InterceptMisc1::SHUTDOWN,
        );
        v.set_misc2(InterceptMisc2::VMRUN | InterceptMisc2::VMMCALL);
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
            // The boot protocol of test guests: RDI = RAM size, RSI = vCPU id.
            GuestBoot::TestGuest { .. } => {
                self.regs.rdi = vm.ram_size;
                self.regs.rsi = u64::from(id);
            }
            // Linux's 64-bit boot protocol: RSI = boot_params, interrupts off (RFLAGS = 2).
            GuestBoot::Linux(entry) => self.regs.rsi = entry.rsi,
        }
    }

    /// Runs the guest until it ends, then prints this vCPU's exit statistics.
    pub fn run(&mut self) {
        println!(
            "guest {}: vcpu {} starts on cpu {}",
            self.vm.config.name, self.id, self.cpu
        );
        self.vm.mark_started();
        loop {
            // SAFETY: our VMCB is initialised, SVM is on for this core (init_core), and host
            // interrupts are off on guest cores.
            unsafe { vmrun::run(&mut self.regs, self.vmcb_pa, self.host_state_pa) };
            let start = timer::rdtsc();
            let exit = self.vmcb().exit();
            self.vmcb().set_tlb_control(TlbControl::DoNothing);
            let next = self.handle(exit);
            self.stats.record(exit.index(), timer::rdtsc() - start);
            if let Next::End = next {
                break;
            }
        }
        println!(
            "guest {}: vcpu {} exits:\n{}",
            self.vm.config.name,
            self.id,
            self.stats.table(&ExitCode::index_name)
        );
    }

    fn end(&self, reason: core::fmt::Arguments) -> Next {
        self.vm.end(reason);
        Next::End
    }

    fn handle(&mut self, exit: ExitCode) -> Next {
        if self.vm.has_ended() {
            return Next::End;
        }
        let (info1, info2, rip) = (
            self.vmcb().exit_info1,
            self.vmcb().exit_info2,
            self.vmcb().rip,
        );
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
            ExitCode::Exception(vector) => {
                // Only intercepted for diagnostics (loglevel=trace): report and deliver unchanged.
                let error = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30).then_some(info1 as u32);
                log::trace!("guest {}: vcpu {}: exception {vector} at rip {rip:#x}, error {error:?}", self.vm.config.name, self.id);
                self.inject(EventInj::exception(vector, error))
            }
            // Host interrupts and NMIs: nothing is routed to guest cores yet; just resume.
            ExitCode::Intr | ExitCode::Nmi => Next::Resume,
            ExitCode::Hlt => {
                let interrupts = if self.vmcb().rflags & (1 << 9) != 0 { "enabled" } else { "disabled" };
                // No virtual interrupt source exists yet, so nothing could ever wake it.
                self.end(format_args!(
                    "halted (HLT at rip {rip:#x}, interrupts {interrupts}) with no interrupt source to wake it"
                ))
            }
            ExitCode::Shutdown => self.end(format_args!("triple fault (shutdown) at rip {rip:#x}")),
            ExitCode::Vmrun | ExitCode::Vmmcall => self.inject(EventInj::exception(VECTOR_UD, None)),
            ExitCode::Invalid => {
                let why = svm::consistency::check_guest_state(self.vmcb(), 52);
                self.end(format_args!("VMRUN refused the guest state (VMEXIT_INVALID): {why:?}"))
            }
            other => self.end(format_args!(
                "unhandled exit {} ({:#x}) at rip {rip:#x}, exitinfo1 {info1:#x}, exitinfo2 {info2:#x}",
                other.name(),
                other.raw(),
            )),
        }
    }

    fn inject(&mut self, ev: EventInj) -> Next {
        self.vmcb().inject(ev);
        Next::Resume
    }

    fn cpuid(&mut self) -> Next {
        let leaf = self.vmcb().rax as u32;
        let subleaf = self.regs.rcx as u32;
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
        };
        let r = cpuid::guest_cpuid(leaf, host(leaf, subleaf), max_basic, max_ext, &view);
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
        match (io.direction, io.port) {
            (IoDirection::Out, DEBUG_CONSOLE_PORT) => self.vm.console_byte(self.vmcb().rax as u8),
            (IoDirection::Out, PM1A_CNT_PORT) if self.vmcb().rax as u32 & SLP_EN != 0 => {
                return self.end(format_args!("power-off request (ACPI PM1a SLP_EN)"));
            }
            (IoDirection::Out, _) => {}
            // Nothing decodes this port: the bus floats high, as on real hardware.
            (IoDirection::In, _) => {
                let rax = self.vmcb().rax;
                self.vmcb().rax = (rax & !mask) | mask;
            }
        }
        self.vmcb().rip = io.next_rip;
        Next::Resume
    }

    fn msr(&mut self, access: MsrAccess) -> Next {
        let msr = self.regs.rcx as u32;
        let vmcb = VmcbMsrs { efer: self.vmcb().efer, g_pat: self.vmcb().g_pat };
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
                log::debug!("guest {}: vcpu {}: {access:?} of MSR {msr:#x}: #GP", self.vm.config.name, self.id);
                self.inject(EventInj::exception(VECTOR_GP, Some(0)))
            }
        }
    }

    /// An access to guest-physical memory that is not mapped: not RAM, and (so far) no device. It
    /// is decoded and emulated as open bus — reads return all ones, writes are dropped — and
    /// reported, so a stray guest access never reaches anyone else's memory nor stops the machine.
    fn nested_page_fault(&mut self, npf: NpfExit) -> Next {
        let gpa = npf.gpa.as_u64();
        let rip = self.vmcb().rip;
        if gpa < self.vm.ram_size {
            return self.end(format_args!(
                "nested page fault inside ram at gpa {gpa:#x} (rip {rip:#x}): hypervisor bug"
            ));
        }
        let mut bytes = [0u8; insn::MAX_INSN_LEN];
        let fetched = self.fetch_instruction(rip, &mut bytes);
        let mode = insn::Mode::Long64;
        let decoded = match insn::decode_mem_access(&bytes[..fetched], mode) {
            Ok(d) => d,
            Err(e) => {
                return self.end(format_args!(
                    "access to unbacked gpa {gpa:#x} by an instruction that cannot be emulated at rip {rip:#x}: {e:?}"
                ))
            }
        };
        let size = decoded.access.size();
        self.vm
            .stray_accesses
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let gpr = self.gprs();
        if let Some((reg, value)) = decoded.load_result(&gpr, u64::MAX) {
            self.set_gpr(reg, value);
            println!(
                "guest {}: vcpu {}: read of {size} bytes at unbacked gpa {gpa:#x} (rip {rip:#x}): no device there, reads as all ones",
                self.vm.config.name, self.id
            );
        } else {
            println!(
                "guest {}: vcpu {}: write of {size} bytes at unbacked gpa {gpa:#x} (rip {rip:#x}): no device there, dropped",
                self.vm.config.name, self.id
            );
        }
        self.vmcb().rip = rip + u64::from(decoded.len);
        Next::Resume
    }

    /// Copies up to 15 instruction bytes at guest virtual `rip`; returns how many could be read.
    fn fetch_instruction(&mut self, rip: u64, out: &mut [u8; insn::MAX_INSN_LEN]) -> usize {
        let (cr3, cr0, cr4, efer) = {
            let v = self.vmcb();
            (v.cr3, v.cr0, v.cr4, v.efer)
        };
        let ram = self.vm.ram();
        let mem = RamView(ram);
        for (i, byte) in out.iter_mut().enumerate() {
            let gva = Gva(rip.wrapping_add(i as u64));
            match svm::walk::walk_guest(cr3, cr0, cr4, efer, gva, &mem) {
                Ok(Gpa(gpa)) if gpa < ram.len() as u64 => *byte = ram[gpa as usize],
                other => {
                    log::debug!("instruction fetch at {:#x}: {other:?} (cr3 {cr3:#x})", gva.as_u64());
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

/// Guest RAM for the guest page-table walker.
struct RamView<'a>(&'a [u8]);

impl GuestMemory for RamView<'_> {
    fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        let o = usize::try_from(gpa.as_u64()).ok()?;
        Some(u64::from_le_bytes(
            self.0.get(o..o.checked_add(8)?)?.try_into().ok()?,
        ))
    }
}
