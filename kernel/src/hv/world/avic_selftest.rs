//! The boot-time AVIC self-test: on the bootstrap processor, after SVM is on and before any
//! guest starts, one throw-away real-mode guest with AVIC enabled runs the phases of
//! `avic_selftest_guest` and the observations are judged by `avic::selftest` (what is checked,
//! with the APM vol. 2 §15.29 references, is listed there). Prints one line per check and a
//! summary, and records the verdict that `irq=avic` start-up consults (`irq::selftest_verdict`). A failure never stops
//! the hypervisor.
//!
//! The test VM: 2 pages of RAM at GPA 0 (IVT, results, stack; code at 1000h), the APIC BAR
//! FEE0_0000h mapped to a dummy page (AVIC serves accesses there after the nested walk), its
//! own VMCB, backing pages, physical and logical APIC-ID tables and permission maps. Nothing
//! is freed afterwards (the frame allocator frees nothing; about 60 KiB, once).

use crate::hv::host::cpu;
use crate::hv::host::x2apic;
use crate::hv::host::{memory, phys};
use crate::hv::irq::selftest_verdict::{record, Verdict};
use crate::hv::vm::guest::NptMemory;
use crate::hv::world::avic_selftest_guest::{self as guest_code, Label, CODE_GPA, STACK_TOP};
use crate::hv::world::vmrun;
use avic::selftest::{self as st, Exit, GuestReport, Mode, Summary, CHECKS};
use avic::table::PhysicalIdEntry;
use avic::vmcb::AvicSetup;
use avic::BackingPage;
use svm::exit::ExitCode;
use svm::intercept::{IntCtl, InterceptMisc1, InterceptMisc2, NestedControl, TlbControl};
use svm::npt::NptMapper;
use svm::paging::PteFlags;
use svm::permission_map::{IoPermissionMap, MsrPermissionMap, IOPM_SIZE, MSRPM_SIZE};
use svm::{Gpa, Hpa, Vmcb, VmcbSegment};

/// Runs the self-test on this core if CPUID 8000_000A EDX (`svm_edx`) reports AVIC.
/// `host_state_pa` is this core's VMSAVE page for the world switch.
pub fn run(svm_edx: u32, host_state_pa: u64) {
    let avic = avic::features::avic_supported(svm_edx);
    let x2avic = avic::features::x2avic_supported(svm_edx);
    let Some(mode) = Mode::for_cpu(avic, x2avic) else {
        log::info!(
            "avic: not supported by this CPU (CPUID 8000_000A EDX bit 13 clear); self-test skipped"
        );
        record(Verdict::Unsupported);
        return;
    };
    let mut vm = match TestVm::build(mode, host_state_pa) {
        Ok(vm) => vm,
        Err(why) => {
            log::info!("avic: self-test ({}) FAILED: set-up: {why}", mode.name());
            record(Verdict::Failed(mode));
            return;
        }
    };
    let results = [
        vm.check_self_ipi(),
        vm.check_delivery(),
        vm.check_incomplete_ipi(),
        vm.check_noaccel(),
    ];
    for (i, (check, result)) in CHECKS.iter().zip(&results).enumerate() {
        match result {
            Ok(()) => log::info!(
                "avic: check {} of {} ok: {}: {}",
                i + 1,
                CHECKS.len(),
                check.name(),
                check.claim()
            ),
            Err(f) => log::info!("avic: check {} of {} FAILED: {f}", i + 1, CHECKS.len()),
        }
    }
    let summary = Summary {
        mode,
        results: &results,
    };
    log::info!("avic: {summary}");
    record(if summary.passed() {
        Verdict::Passed(mode)
    } else {
        Verdict::Failed(mode)
    });
}

/// Pages of the test VM, in one allocation (page index).
mod page {
    pub const VMCB: u64 = 0;
    pub const OWN_BACKING: u64 = 1;
    pub const TARGET_BACKING: u64 = 2;
    pub const PHYSICAL_TABLE: u64 = 3;
    pub const LOGICAL_TABLE: u64 = 4;
    /// Two pages of guest RAM, GPA 0–1FFFh.
    pub const RAM: u64 = 5;
    pub const RAM_PAGES: u64 = 2;
    /// What the NPT maps at the APIC BAR.
    pub const APIC_DUMMY: u64 = 7;
    /// 8 KiB.
    pub const MSRPM: u64 = 8;
    /// 12 KiB.
    pub const IOPM: u64 = 10;
    pub const COUNT: u64 = 13;
}

const APIC_BAR: u64 = 0xFEE0_0000;
/// Host interrupt and NMI exits absorbed per phase before it counts as stuck.
const MAX_HOST_EXITS: u32 = 1000;

struct TestVm {
    mode: Mode,
    base: u64,
    host_state_pa: u64,
    regs: vmrun::GuestRegs,
}

/// Host-physical address of page `index` of the test VM at `base`.
const fn pa(base: u64, index: u64) -> u64 {
    base + index * 4096
}

/// The blob `avic_selftest_guest` assembles.
fn guest_blob() -> &'static [u8] {
    extern "C" {
        static avic_selftest_guest_start: u8;
        static avic_selftest_guest_end: u8;
    }
    // SAFETY: both symbols are labels in the same read-only section of this image, start before
    // end, and the bytes between them are never written.
    unsafe {
        let start = core::ptr::addr_of!(avic_selftest_guest_start);
        let end = core::ptr::addr_of!(avic_selftest_guest_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// Guest RIP of `label` in `mode`'s code.
fn rip(mode: Mode, label: Label) -> u64 {
    let i = guest_code::table_index(mode.x2apic(), label) * 2;
    let blob = guest_blob();
    CODE_GPA + u64::from(u16::from_le_bytes([blob[i], blob[i + 1]]))
}

impl TestVm {
    fn build(mode: Mode, host_state_pa: u64) -> Result<Self, &'static str> {
        let base = memory::try_alloc_zeroed(page::COUNT * 4096, 4096, memory::MAPPED_LIMIT)
            .ok_or("no memory for the test VM")?;
        let mut vm = TestVm {
            mode,
            base,
            host_state_pa,
            regs: vmrun::GuestRegs::default(),
        };
        vm.load_guest()?;
        *vm.backing_mut(page::OWN_BACKING) = st::backing_page(u32::from(st::SENDER), mode);
        *vm.backing_mut(page::TARGET_BACKING) = st::backing_page(u32::from(st::TARGET), mode);
        let table = st::physical_table(
            Hpa(pa(base, page::OWN_BACKING)),
            Hpa(pa(base, page::TARGET_BACKING)),
            x2apic::id(),
        );
        vm.set_table(table);
        vm.permission_maps();
        let n_cr3 = nested_page_table(base)?;
        vm.init_vmcb(n_cr3)?;
        Ok(vm)
    }

    /// Copies the code to [`CODE_GPA`] and points the IVT entry of the self-IPI vector at the
    /// handler (offset, then segment 0).
    fn load_guest(&mut self) -> Result<(), &'static str> {
        let blob = guest_blob();
        let handler = rip(self.mode, Label::Handler);
        let ram = self.ram();
        let code = CODE_GPA as usize;
        ram.get_mut(code..code + blob.len())
            .ok_or("guest code larger than its page")?
            .copy_from_slice(blob);
        let ivt = usize::from(st::SELF_VECTOR) * 4;
        ram[ivt..ivt + 2].copy_from_slice(&(handler as u16).to_le_bytes());
        ram[ivt + 2..ivt + 4].copy_from_slice(&0u16.to_le_bytes());
        Ok(())
    }

    /// Every MSR and port exits, but for the x2APIC MSRs 800h–8FFh in x2AVIC mode, which AVIC
    /// serves (§15.29.10: the MSR intercepts take precedence).
    fn permission_maps(&mut self) {
        // SAFETY: both ranges are pages of this test VM's allocation (MSRPM_SIZE and IOPM_SIZE
        // bytes from their page indices, inside `page::COUNT` pages), not referenced elsewhere.
        let (msrpm, iopm) = unsafe {
            (
                phys::get_mut::<[u8; MSRPM_SIZE]>(pa(self.base, page::MSRPM)),
                phys::get_mut::<[u8; IOPM_SIZE]>(pa(self.base, page::IOPM)),
            )
        };
        IoPermissionMap::new(iopm).intercept_all();
        let mut msrs = MsrPermissionMap::new(msrpm);
        msrs.intercept_all();
        if self.mode.x2apic() {
            for msr in didvisor::irqchip::x2apic::MSRS {
                let _ = msrs.pass_through(msr);
            }
        }
    }

    fn init_vmcb(&mut self, n_cr3: u64) -> Result<(), &'static str> {
        let (mode, base) = (self.mode, self.base);
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
        // Any exception is a failure to report, not something for the guest to handle.
        for vector in 0..32 {
            v.intercept_exception(vector, true);
        }
        v.iopm_base_pa = pa(base, page::IOPM);
        v.msrpm_base_pa = pa(base, page::MSRPM);
        v.guest_asid = 1;
        v.set_tlb_control(TlbControl::FlushAll);
        v.set_nested_control(NestedControl::NP_ENABLE);
        v.n_cr3 = n_cr3;
        // Real mode (APM vol. 2, 14.1.5): base = selector × 16 but for FS, whose hidden base
        // is the APIC BAR in xAVIC mode.
        let seg = |base: u64, attrib: u16| VmcbSegment {
            selector: 0,
            attrib,
            limit: 0xffff,
            base,
        };
        v.cs = seg(0, 0x9b);
        for s in [&mut v.ds, &mut v.es, &mut v.ss, &mut v.gs] {
            *s = seg(0, 0x93);
        }
        v.fs = seg(if mode.x2apic() { 0 } else { APIC_BAR }, 0x93);
        v.gdtr = VmcbSegment {
            limit: 0,
            ..seg(0, 0)
        };
        v.idtr = VmcbSegment {
            limit: 0x3ff,
            ..seg(0, 0)
        };
        v.ldtr = seg(0, 0x82);
        v.tr = seg(0, 0x8b);
        v.cr0 = 0x10; // ET; caches on
        v.efer = svm::features::EFER_SVME;
        v.dr6 = 0xffff_0ff0;
        v.dr7 = 0x400;
        v.g_pat = 0x0007_0406_0007_0406;
        v.rflags = 2;
        v.rsp = STACK_TOP;
        v.set_int_ctl(IntCtl::V_INTR_MASKING);
        let setup = AvicSetup {
            backing_page: Hpa(pa(base, page::OWN_BACKING)),
            logical_table: Hpa(pa(base, page::LOGICAL_TABLE)),
            physical_table: Hpa(pa(base, page::PHYSICAL_TABLE)),
            max_index: st::MAX_INDEX,
            x2avic: mode.x2apic(),
            apic_bar: Gpa(APIC_BAR),
        };
        avic::vmcb::enable(v, &setup).map_err(|e| match e {
            avic::vmcb::SetupError::NestedPagingOff => "AVIC needs nested paging",
            avic::vmcb::SetupError::MaxIndexTooLarge => "max index too large",
            avic::vmcb::SetupError::Unaligned => "unaligned AVIC pointer",
        })
    }

    /// Runs the guest from `entry` with IF=0 until an exit that is not a host interrupt or NMI.
    fn run_phase(&mut self, entry: Label) -> Exit {
        let start = rip(self.mode, entry);
        let v = self.vmcb();
        v.rip = start;
        v.rflags = 2;
        v.rsp = STACK_TOP;
        v.event_inj = 0;
        for _ in 0..MAX_HOST_EXITS {
            // SAFETY: the VMCB is initialised and owned by this core, SVM is on here (init_core)
            // and host interrupts are off on the bootstrap processor.
            unsafe {
                vmrun::run(
                    &mut self.regs,
                    pa(self.base, page::VMCB),
                    self.host_state_pa,
                )
            };
            let v = self.vmcb();
            v.set_tlb_control(TlbControl::DoNothing);
            let exit = Exit {
                code: v.exit_code,
                info1: v.exit_info1,
                info2: v.exit_info2,
                rip: v.rip,
            };
            match ExitCode::from_raw(exit.code) {
                ExitCode::Intr => cpu::take_pending_interrupts(),
                ExitCode::Nmi => {}
                ExitCode::Invalid => {
                    let why = crate::hv::world::svm_hw::check_vmcb(self.vmcb());
                    log::info!("avic: VMRUN refused the test guest (VMEXIT_INVALID): {why:?}");
                    return exit;
                }
                _ => return exit,
            }
        }
        log::info!("avic: the test guest kept being interrupted; phase abandoned");
        Exit {
            code: ExitCode::Intr.raw(),
            info1: 0,
            info2: 0,
            rip: self.vmcb().rip,
        }
    }

    fn check_self_ipi(&mut self) -> Result<(), st::Failure> {
        let exit = self.run_phase(Label::SelfIpi);
        let (table, guest) = (self.table(), self.report());
        st::judge_self_ipi(
            self.mode,
            &table,
            &exit,
            rip(self.mode, Label::SelfIpiEnd),
            self.backing(page::OWN_BACKING),
            &guest,
        )
    }

    fn check_delivery(&mut self) -> Result<(), st::Failure> {
        let exit = self.run_phase(Label::Deliver);
        let guest = self.report();
        st::judge_delivery(
            &exit,
            rip(self.mode, Label::DeliverEnd),
            self.backing(page::OWN_BACKING),
            &guest,
        )
    }

    fn check_incomplete_ipi(&mut self) -> Result<(), st::Failure> {
        let exit = self.run_phase(Label::Ipi);
        let table = self.table();
        st::judge_incomplete_ipi(
            self.mode,
            &table,
            &exit,
            self.backing(page::OWN_BACKING),
            self.backing(page::TARGET_BACKING),
        )
    }

    fn check_noaccel(&mut self) -> Result<(), st::Failure> {
        let exit = self.run_phase(Label::Tmict);
        st::judge_noaccel(
            &exit,
            rip(self.mode, Label::TmictWrite),
            rip(self.mode, Label::TmictNext),
            self.backing(page::OWN_BACKING),
        )
    }

    /// The guest's result words.
    fn report(&mut self) -> GuestReport {
        let at = st::RESULTS_GPA as usize;
        let mut bytes = [0u8; st::report::SIZE];
        bytes.copy_from_slice(&self.ram()[at..at + st::report::SIZE]);
        GuestReport::from_bytes(&bytes)
    }

    /// The physical table's entries the test uses, as they are in memory now.
    fn table(&self) -> [PhysicalIdEntry; 2] {
        // SAFETY: the physical table page of this test VM starts with these two entries; the
        // hardware reads it only inside VMRUN.
        unsafe { phys::read(pa(self.base, page::PHYSICAL_TABLE)) }
    }

    fn set_table(&mut self, entries: [PhysicalIdEntry; 2]) {
        // SAFETY: as in `table`; `&mut self` makes this the only access.
        unsafe { phys::write(pa(self.base, page::PHYSICAL_TABLE), entries) }
    }

    fn vmcb(&mut self) -> &mut Vmcb {
        // SAFETY: page VMCB of this test VM, used by no one else; the hardware touches it only
        // inside VMRUN, while no reference is held.
        unsafe { phys::get_mut(pa(self.base, page::VMCB)) }
    }

    fn ram(&mut self) -> &mut [u8] {
        // SAFETY: the guest's RAM pages of this test VM; the guest runs only inside VMRUN, on
        // this core, while no reference is held.
        unsafe { phys::slice_mut(pa(self.base, page::RAM), page::RAM_PAGES * 4096) }
    }

    fn backing(&self, index: u64) -> &BackingPage {
        // SAFETY: a backing page of this test VM (4 KiB aligned, BackingPage is one page);
        // AVIC writes it only inside VMRUN, and no vCPU that could post to it runs elsewhere.
        unsafe { phys::get(pa(self.base, index)) }
    }

    fn backing_mut(&mut self, index: u64) -> &mut BackingPage {
        // SAFETY: as in `backing`; `&mut self` makes this the only reference.
        unsafe { phys::get_mut(pa(self.base, index)) }
    }
}

/// Maps the RAM pages at GPA 0 and the dummy APIC page at the APIC BAR; returns the root.
fn nested_page_table(base: u64) -> Result<u64, &'static str> {
    let mut npt = NptMapper::new(NptMemory::default()).map_err(|_| "no memory for the NPT")?;
    let rw = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::USER;
    npt.map(Gpa(0), Hpa(pa(base, page::RAM)), page::RAM_PAGES * 4096, rw)
        .map_err(|_| "cannot map the test RAM")?;
    npt.map(Gpa(APIC_BAR), Hpa(pa(base, page::APIC_DUMMY)), 4096, rw)
        .map_err(|_| "cannot map the APIC BAR")?;
    Ok(npt.root().as_u64())
}
