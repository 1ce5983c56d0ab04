//! CPUID feature checks and the SVM-related MSRs (APM vol. 2 §15.4, §15.30; APM vol. 3
//! Appendix E, CPUID Fn8000_0001 and Fn8000_000A). All checks are pure functions of register
//! values, so the kernel executes CPUID/RDMSR and the logic is tested on the host.

use bitflags::bitflags;

/// CPUID leaf with the extended feature flags (ECX bit 2 = SVM).
pub const CPUID_EXT_FEATURES: u32 = 0x8000_0001;
/// CPUID leaf with SVM revision, ASID count and SVM feature flags.
pub const CPUID_SVM_FEATURES: u32 = 0x8000_000A;
/// CPUID leaf with address sizes (EAX\[7:0\] = physical address bits).
pub const CPUID_ADDRESS_SIZES: u32 = 0x8000_0008;

/// EFER MSR.
pub const MSR_EFER: u32 = 0xC000_0080;
/// EFER.SVME: SVM enable (bit 12).
pub const EFER_SVME: u64 = 1 << 12;
/// VM_CR MSR (§15.30.1).
pub const MSR_VM_CR: u32 = 0xC001_0114;
/// VM_CR.R_INIT (bit 1): an INIT that is not intercepted becomes #SX (vector 30, error code 1)
/// instead of reinitializing the processor (§15.21.8 "INIT Support", §15.28 "Security
/// Exception"). Writable whatever LOCK says (LOCK guards only LOCK and SVMDIS).
pub const VM_CR_R_INIT: u64 = 1 << 1;
/// #SX (vector 30) error code for a redirected INIT, the only one defined (§15.28).
pub const SX_INIT_REDIRECTED: u64 = 1;
/// VM_CR.LOCK (bit 3): SVMDIS is locked.
pub const VM_CR_LOCK: u64 = 1 << 3;
/// VM_CR.SVMDIS (bit 4): EFER.SVME cannot be set.
pub const VM_CR_SVMDIS: u64 = 1 << 4;
/// VM_HSAVE_PA MSR (§15.30.4): host-physical address of the host save area.
pub const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;

/// CPUID 8000_0001 ECX bit 2: SVM supported.
pub const fn svm_supported(ecx_8000_0001: u32) -> bool {
    ecx_8000_0001 & (1 << 2) != 0
}

/// CPUID 8000_0001 EDX bit 26: 1 GiB pages (also for nested paging).
pub const fn page_1gb_supported(edx_8000_0001: u32) -> bool {
    edx_8000_0001 & (1 << 26) != 0
}

/// Whether firmware disabled SVM (VM_CR.SVMDIS set; with LOCK it cannot be undone).
pub const fn svm_disabled_by_firmware(vm_cr: u64) -> bool {
    vm_cr & VM_CR_SVMDIS != 0
}

/// The VM_CR value that redirects INIT to #SX: R_INIT set, every other bit as read (writes to
/// LOCK and SVMDIS are ignored once LOCK is set, so they are written back unchanged).
pub const fn vm_cr_with_init_redirect(vm_cr: u64) -> u64 {
    vm_cr | VM_CR_R_INIT
}

/// CPUID 8000_0008 EAX\[7:0\]: number of physical address bits.
pub const fn phys_addr_bits(eax_8000_0008: u32) -> u8 {
    (eax_8000_0008 & 0xFF) as u8
}

bitflags! {
    /// SVM feature flags, CPUID 8000_000A EDX (APM vol. 3 Appendix E.4.9).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SvmFeatures: u32 {
        /// Nested paging.
        const NP = 1 << 0;
        /// LBR virtualization.
        const LBR_VIRT = 1 << 1;
        /// SVM lock.
        const SVML = 1 << 2;
        /// Next-RIP save on #VMEXIT (VMCB `next_rip`).
        const NRIPS = 1 << 3;
        /// MSR-based TSC rate control.
        const TSC_RATE = 1 << 4;
        /// VMCB clean bits.
        const VMCB_CLEAN = 1 << 5;
        /// Flush by ASID (TLB_CONTROL 3 and 7).
        const FLUSH_BY_ASID = 1 << 6;
        /// Decode assists (instruction bytes, CR/DR/INVLPG info).
        const DECODE_ASSISTS = 1 << 7;
        /// PAUSE intercept filter.
        const PAUSE_FILTER = 1 << 10;
        /// PAUSE filter threshold.
        const PAUSE_FILTER_THRESHOLD = 1 << 12;
        /// AVIC (checked by the `avic` crate).
        const AVIC = 1 << 13;
        /// Virtualized VMSAVE/VMLOAD.
        const V_VMSAVE_VMLOAD = 1 << 15;
        /// Virtual GIF.
        const VGIF = 1 << 16;
        /// Guest-mode execute trap.
        const GMET = 1 << 17;
        /// x2AVIC (checked by the `avic` crate).
        const X2AVIC = 1 << 18;
        /// Supervisor shadow-stack restrictions.
        const SSS_CHECK = 1 << 19;
        /// SPEC_CTRL virtualization.
        const SPEC_CTRL = 1 << 20;
        /// Read-only guest page tables.
        const ROGPT = 1 << 21;
        /// Host MCE override.
        const HOST_MCE_OVERRIDE = 1 << 23;
        /// INVLPGB/TLBSYNC hypervisor enable.
        const TLBI_CTL = 1 << 24;
        /// Virtual NMI.
        const VNMI = 1 << 25;
        /// IBS virtualization.
        const IBS_VIRT = 1 << 26;
        /// Extended LVT AVIC access changes.
        const EXT_LVT_AVIC_ACCESS_CHG = 1 << 27;
        /// VMCB address check on nested VMRUN.
        const NESTED_VIRT_VMCB_ADDR_CHK = 1 << 28;
        /// Bus-lock threshold.
        const BUS_LOCK_THRESHOLD = 1 << 29;
        /// Idle HLT intercept.
        const IDLE_HLT = 1 << 30;
        const _ = !0;
    }
}

/// What CPUID 8000_000A reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvmCpuid {
    /// SVM revision, EAX\[7:0\].
    pub revision: u8,
    /// Number of ASIDs, EBX (ASIDs 1 .. `asids` − 1 are usable by guests).
    pub asids: u32,
    /// Feature flags, EDX.
    pub features: SvmFeatures,
}

impl SvmCpuid {
    /// Decode the registers of CPUID 8000_000A.
    pub const fn from_regs(eax: u32, ebx: u32, edx: u32) -> Self {
        Self {
            revision: (eax & 0xFF) as u8,
            asids: ebx,
            features: SvmFeatures::from_bits_retain(edx),
        }
    }

    /// Nested paging (EDX bit 0).
    pub const fn has_npt(&self) -> bool {
        self.features.contains(SvmFeatures::NP)
    }

    /// Next-RIP save (EDX bit 3).
    pub const fn has_nrips(&self) -> bool {
        self.features.contains(SvmFeatures::NRIPS)
    }

    /// Decode assists (EDX bit 7).
    pub const fn has_decode_assists(&self) -> bool {
        self.features.contains(SvmFeatures::DECODE_ASSISTS)
    }

    /// Flush by ASID (EDX bit 6).
    pub const fn has_flush_by_asid(&self) -> bool {
        self.features.contains(SvmFeatures::FLUSH_BY_ASID)
    }

    /// VMCB clean bits (EDX bit 5).
    pub const fn has_vmcb_clean(&self) -> bool {
        self.features.contains(SvmFeatures::VMCB_CLEAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_redirect_sets_r_init_and_keeps_the_rest() {
        assert_eq!(vm_cr_with_init_redirect(0), 0b10);
        // Firmware's LOCK (and DPD) stay as they were.
        assert_eq!(vm_cr_with_init_redirect(0b1001), 0b1011);
        assert_eq!(vm_cr_with_init_redirect(0b1011), 0b1011);
    }

    #[test]
    fn svm_bit() {
        assert!(svm_supported(0x0000_0004));
        assert!(!svm_supported(0xFFFF_FFFB));
        assert!(page_1gb_supported(1 << 26));
        assert!(svm_disabled_by_firmware(0x18));
        assert!(!svm_disabled_by_firmware(0x08));
        assert_eq!(phys_addr_bits(0x0000_3030), 0x30);
    }

    #[test]
    fn qemu_tcg_leaf() {
        // QEMU TCG: NPT, VGIF, nested VMCB address check; 16 ASIDs; no NRIPS, no AVIC.
        let edx = (1 << 0) | (1 << 16) | (1 << 28);
        let c = SvmCpuid::from_regs(1, 16, edx);
        assert_eq!(c.revision, 1);
        assert_eq!(c.asids, 16);
        assert!(c.has_npt());
        assert!(!c.has_nrips());
        assert!(!c.has_decode_assists());
        assert!(!c.has_flush_by_asid());
        assert!(!c.has_vmcb_clean());
        assert!(c.features.contains(SvmFeatures::VGIF));
        assert!(!c.features.contains(SvmFeatures::AVIC));
    }

    #[test]
    fn zen_leaf() {
        // A Zen 3-like EDX with NRIPS and AVIC.
        let c = SvmCpuid::from_regs(1, 0x8000, 0x0001_BCFF | (1 << 13));
        assert!(c.has_nrips() && c.has_decode_assists() && c.has_vmcb_clean());
        assert!(c.features.contains(SvmFeatures::AVIC));
        assert_eq!(c.asids, 0x8000);
    }
}
