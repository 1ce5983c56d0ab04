//! Turning SVM on (AMD APM vol. 2, 15.4 "Enabling SVM") and the world switch.

use crate::hv::host::memory;
use core::sync::atomic::{AtomicU32, Ordering};
use svm::features::SvmCpuid;
use x86_64::registers::model_specific::Msr;

use svm::features::{EFER_SVME, MSR_EFER as EFER};

#[derive(Debug, Clone, Copy)]
pub enum SvmError {
    /// CPUID 8000_0001 ECX bit 2 is clear: not an AMD-V processor (or it is hidden).
    NotSupported,
    /// VM_CR.SVMDIS is set: firmware disabled SVM (often a BIOS setting).
    DisabledByFirmware { locked: bool },
}

impl core::fmt::Display for SvmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SvmError::NotSupported => f.write_str(
                "this CPU does not support SVM (AMD-V): CPUID 8000_0001 ECX bit 2 is clear; didvisor needs an AMD CPU with SVM",
            ),
            SvmError::DisabledByFirmware { locked: true } => {
                f.write_str("SVM is disabled and locked by firmware (VM_CR.SVMDIS, VM_CR.LOCK): enable SVM in the firmware setup")
            }
            SvmError::DisabledByFirmware { locked: false } => {
                f.write_str("SVM is disabled by firmware (VM_CR.SVMDIS): enable SVM in the firmware setup")
            }
        }
    }
}

fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// The SVM features of this CPU, or why it cannot run guests.
pub fn check() -> Result<SvmCpuid, SvmError> {
    let max_ext = cpuid(0x8000_0000).0;
    let ecx = if max_ext >= 0x8000_0001 {
        cpuid(0x8000_0001).2
    } else {
        0
    };
    if !svm::features::svm_supported(ecx) || max_ext < 0x8000_000A {
        return Err(SvmError::NotSupported);
    }
    // SAFETY: VM_CR exists on every CPU that reports SVM.
    let vm_cr = unsafe { Msr::new(svm::features::MSR_VM_CR).read() };
    if vm_cr & svm::features::VM_CR_SVMDIS != 0 {
        return Err(SvmError::DisabledByFirmware {
            locked: vm_cr & svm::features::VM_CR_LOCK != 0,
        });
    }
    let (eax, ebx, _, edx) = cpuid(0x8000_000A);
    Ok(SvmCpuid::from_regs(eax, ebx, edx))
}

/// Cores with SVM on, for the summary line.
pub static ENABLED_CORES: AtomicU32 = AtomicU32::new(0);

/// Sets EFER.SVME and gives the CPU its host save area. Returns the physical address of a page for
/// the host's VMSAVE state (FS/GS/TR/LDTR/syscall MSRs), restored after each #VMEXIT.
pub fn enable_on_this_core() -> Result<u64, SvmError> {
    check()?;
    let hsave = memory::alloc_zeroed(4096, 4096);
    let host_vmcb = memory::alloc_zeroed(4096, 4096);
    // SAFETY: SVM is supported and not disabled (checked above); the host save area is a fresh
    // page owned by this core for as long as the machine runs.
    unsafe {
        let mut efer = Msr::new(EFER);
        efer.write(efer.read() | EFER_SVME);
        Msr::new(svm::features::MSR_VM_HSAVE_PA).write(hsave);
    }
    // INIT redirection (APM vol. 2, 15.21.8, Table 15-12): a physical INIT that arrives while a
    // guest runs exits (the INIT intercept) and stays pending; without R_INIT it would be taken
    // as soon as the exit path sets GIF and reset this core under the hypervisor. With R_INIT
    // it becomes #SX in the host (15.28), which `idt` counts and drops. This core's own start
    // (INIT-SIPI-SIPI) is over by now.
    // SAFETY: VM_CR exists on every CPU with SVM; R_INIT is writable even when LOCK is set, and
    // the other bits are written back as read.
    unsafe {
        let mut vm_cr = Msr::new(svm::features::MSR_VM_CR);
        vm_cr.write(svm::features::vm_cr_with_init_redirect(vm_cr.read()));
    }
    ENABLED_CORES.fetch_add(1, Ordering::SeqCst);
    Ok(host_vmcb)
}

/// The one-line summary of what this CPU's SVM offers (and lacks, where it matters to didvisor).
pub struct Summary(pub SvmCpuid);

impl core::fmt::Display for Summary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let c = &self.0;
        let yn = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "revision {}, {} asids, npt {}, nrips {}, decode-assists {}, vmcb-clean {}, flush-by-asid {}, avic {}, x2avic {}",
            c.revision,
            c.asids,
            yn(c.has_npt()),
            yn(c.has_nrips()),
            yn(c.has_decode_assists()),
            yn(c.has_vmcb_clean()),
            yn(c.has_flush_by_asid()),
            yn(avic::features::avic_supported(c.features.bits())),
            yn(avic::features::x2avic_supported(c.features.bits())),
        )
    }
}

/// The consistency checks VMRUN makes (`svm::consistency`), with this processor's physical
/// address width and reserved CR4 bits: the precise reason for a VMEXIT_INVALID.
pub fn check_vmcb(v: &svm::Vmcb) -> Result<(), svm::consistency::InvalidState> {
    let phys_bits = cpuid(0x8000_0008).0 as u8;
    let (_, _, leaf1_ecx, _) = cpuid(1);
    let (_, leaf7_ebx, leaf7_ecx, _) = cpuid(7);
    let cr4_reserved = svm::consistency::cr4_reserved(leaf1_ecx, leaf7_ebx, leaf7_ecx);
    svm::consistency::check_guest_state_with(v, phys_bits, cr4_reserved)
}
