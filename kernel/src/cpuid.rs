//! What a guest sees when it executes CPUID (every CPUID exits: the intercept is always set).
//!
//! The answer starts from the host's and is edited: the guest learns it runs on a hypervisor, sees its
//! own APIC id, and does not see features the hypervisor does not virtualise (SVM, VMX, MONITOR/MWAIT,
//! the TSC-deadline timer); it is told its TSC is invariant only when the machine's is. Leaves in the hypervisor range 0x4000_0000.. carry didvisor's signature.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// The facts about the calling vCPU the answer depends on.
#[derive(Debug, Clone, Copy)]
pub struct VcpuView {
    /// The guest's (x2)APIC id of this vCPU.
    pub apic_id: u32,
    pub vcpu_count: u32,
    /// Guest CR4, for the OSXSAVE bit.
    pub guest_cr4: u64,
    /// The TSC is invariant and runs in step on the guest's cores (the host's CPUID says so, or
    /// the operator's `tsc=invariant`), and the guest sees it unchanged: leaf 8000_0007h says so.
    pub tsc_invariant: bool,
}

/// Hypervisor signature in leaf 0x4000_0000 (EBX, ECX, EDX).
pub const SIGNATURE: &[u8; 12] = b"didvisor\0\0\0\0";
pub const HYPERVISOR_BASE: u32 = 0x4000_0000;
/// The last leaf of the range: 4000_0002h holds the exit counters (`crate::exit_counters`).
pub const HYPERVISOR_MAX: u32 = 0x4000_0002;
/// A second hypervisor range carrying KVM's signature with no KVM features. Linux scans
/// 0x4000_0000..0x4001_0000 in 0x100 steps for it (`kvm_cpuid_base`) and then trusts the hypervisor to
/// let it keep x2APIC mode without interrupt remapping (`kvm_para_available` as
/// `x86_init.hyper.x2apic_available`). We implement no KVM paravirtual feature: leaf 0x4000_0101 is 0.
pub const KVM_COMPAT_BASE: u32 = 0x4000_0100;
pub const KVM_SIGNATURE: &[u8; 12] = b"KVMKVMKVM\0\0\0";

pub mod bit {
    // Leaf 1 EDX (AMD APM vol. 3, appendix E.3.2): machine check, MTRRs and MCA are not virtualised.
    pub const MCE: u32 = 1 << 7;
    pub const MTRR: u32 = 1 << 12;
    pub const MCA: u32 = 1 << 14;
    // Leaf 1 ECX.
    pub const MONITOR: u32 = 1 << 3;
    pub const VMX: u32 = 1 << 5;
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const HYPERVISOR: u32 = 1 << 31;
    // Leaf 8000_0001 ECX.
    pub const SVM: u32 = 1 << 2;
    /// OS-visible workarounds (OSVW MSRs), not emulated.
    pub const OSVW: u32 = 1 << 9;
    pub const MONITORX: u32 = 1 << 13;
    /// Core performance-counter extensions: the PMU is not virtualised.
    pub const PERFCTR_CORE: u32 = 1 << 23;
    // CR4.
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    // Leaf 7.0 EBX: IA32_TSC_ADJUST (`crate::msr`).
    pub const TSC_ADJUST: u32 = 1 << 1;
    // Leaf 8000_0008 EBX: RDPRU.
    pub const RDPRU: u32 = 1 << 4;
    /// Leaf 8000_0007 EDX: TscInvariant (APM vol. 3, appendix E.4.6).
    pub const TSC_INVARIANT: u32 = 1 << 8;
}

/// The guest's answer for `leaf`/`subleaf`, given the host's answer `host` for the same leaf and the
/// host's highest basic and extended leaves.
pub fn guest_cpuid(
    leaf: u32,
    subleaf: u32,
    host: CpuidResult,
    host_max_basic: u32,
    host_max_ext: u32,
    vcpu: &VcpuView,
) -> CpuidResult {
    let mut r = host;
    match leaf {
        0 => {}
        1 => {
            r.ebx = (r.ebx & 0x0000_ffff)
                | ((vcpu.apic_id & 0xff) << 24)
                | ((vcpu.vcpu_count.min(255) & 0xff) << 16);
            r.ecx &= !(bit::MONITOR | bit::VMX | bit::TSC_DEADLINE | bit::OSXSAVE);
            r.ecx |= bit::HYPERVISOR;
            r.edx &= !(bit::MCE | bit::MTRR | bit::MCA);
            if vcpu.guest_cr4 & bit::CR4_OSXSAVE != 0 {
                r.ecx |= bit::OSXSAVE;
            }
        }
        // With an invariant TSC, TSC_ADJUST too (emulated: always 0, since the TSC is never
        // moved): Linux then trusts the TSC without its clocksource watchdog, whose `acpi_pm`
        // reads are exits, and which under QEMU takes a slow read for an unstable TSC.
        7 if subleaf == 0 && leaf <= host_max_basic => {
            r.ebx &= !bit::TSC_ADJUST;
            if vcpu.tsc_invariant {
                r.ebx |= bit::TSC_ADJUST;
            }
        }
        // MONITOR/MWAIT parameters: the feature is hidden.
        5 => r = CpuidResult::default(),
        // Extended topology: the x2APIC id of this vCPU.
        0xB | 0x1F => r.edx = vcpu.apic_id,
        HYPERVISOR_BASE => r = signature_leaf(SIGNATURE, HYPERVISOR_MAX),
        KVM_COMPAT_BASE => r = signature_leaf(KVM_SIGNATURE, KVM_COMPAT_BASE + 1),
        // No paravirtual features in either range, and nothing else in the hypervisor range.
        0x4000_0001..=0x4fff_ffff => r = CpuidResult::default(),
        0x8000_0001 => r.ecx &= !(bit::SVM | bit::MONITORX | bit::OSVW | bit::PERFCTR_CORE),
        // Memory encryption (SME/SEV) capabilities: not offered.
        0x8000_001f => r = CpuidResult::default(),
        // SVM revision and features: nested virtualisation is not offered.
        0x8000_000a => r = CpuidResult::default(),
        0x8000_001e => r.eax = vcpu.apic_id,
        // Invariant TSC: Linux then trusts the TSC as its clocksource (constant_tsc,
        // nonstop_tsc; without it, an AMD guest with two vCPUs or more takes the TSCs for
        // unsynchronised and reads acpi_pm, a port-I/O exit per clock read).
        0x8000_0007 if leaf <= host_max_ext => {
            r.edx &= !bit::TSC_INVARIANT;
            if vcpu.tsc_invariant {
                r.edx |= bit::TSC_INVARIANT;
            }
        }
        // RDPRU (EBX bit 4) is intercepted and raises #UD (`crate::intercepts`): not offered.
        0x8000_0008 => r.ebx &= !bit::RDPRU,
        // AMD returns zeros for leaves above the maximum (APM vol. 3, CPUID).
        l if l < HYPERVISOR_BASE && l > host_max_basic => r = CpuidResult::default(),
        l if l >= 0x8000_0000 && l > host_max_ext => r = CpuidResult::default(),
        _ => {}
    }
    r
}

fn signature_leaf(sig: &[u8; 12], max: u32) -> CpuidResult {
    let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
    CpuidResult {
        eax: max,
        ebx: word(0),
        ecx: word(4),
        edx: word(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VCPU: VcpuView = VcpuView {
        apic_id: 3,
        vcpu_count: 2,
        guest_cr4: 0,
        tsc_invariant: false,
    };

    fn host(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidResult {
        CpuidResult { eax, ebx, ecx, edx }
    }

    #[test]
    fn leaf1_sets_hypervisor_and_apic_id_and_hides_features() {
        let h = host(
            0x00a00f11,
            0x0a080800,
            0xfef8_320b | bit::VMX | bit::OSXSAVE,
            0x178bfbff,
        );
        let r = guest_cpuid(1, 0, h, 0x10, 0x8000_0021, &VCPU);
        assert_eq!(r.ebx, 0x0302_0800);
        assert_eq!(r.ecx & bit::HYPERVISOR, bit::HYPERVISOR);
        assert_eq!(
            r.ecx & (bit::MONITOR | bit::VMX | bit::TSC_DEADLINE | bit::OSXSAVE),
            0
        );
        assert_eq!(r.eax, h.eax);
        assert_eq!(r.edx, h.edx & !(bit::MCE | bit::MTRR | bit::MCA));
        let with_xsave = VcpuView {
            guest_cr4: bit::CR4_OSXSAVE,
            ..VCPU
        };
        assert_eq!(
            guest_cpuid(1, 0, h, 0x10, 0x8000_0021, &with_xsave).ecx & bit::OSXSAVE,
            bit::OSXSAVE
        );
    }

    #[test]
    fn hypervisor_leaf_has_the_signature() {
        let r = guest_cpuid(
            HYPERVISOR_BASE,
            0,
            host(7, 7, 7, 7),
            0x10,
            0x8000_0021,
            &VCPU,
        );
        assert_eq!(r.eax, HYPERVISOR_MAX);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, SIGNATURE);
        assert_eq!(
            guest_cpuid(0x4000_0001, 0, host(7, 7, 7, 7), 0x10, 0x8000_0021, &VCPU),
            CpuidResult::default()
        );
    }

    #[test]
    fn kvm_compatible_range_has_kvm_signature_and_no_features() {
        let r = guest_cpuid(
            KVM_COMPAT_BASE,
            0,
            host(7, 7, 7, 7),
            0x10,
            0x8000_0021,
            &VCPU,
        );
        assert_eq!((r.ebx, r.ecx, r.edx), (0x4b4d_564b, 0x564b_4d56, 0x4d));
        for leaf in [KVM_COMPAT_BASE + 1, 0x4000_0200, 0x4000_ff00] {
            assert_eq!(
                guest_cpuid(leaf, 0, host(7, 7, 7, 7), 0x10, 0x8000_0021, &VCPU),
                CpuidResult::default()
            );
        }
    }

    #[test]
    fn machine_check_and_mtrr_are_hidden() {
        let r = guest_cpuid(1, 0, host(0, 0, 0, 0x178b_fbff), 0x10, 0x8000_0021, &VCPU);
        assert_eq!(r.edx & (bit::MCE | bit::MTRR | bit::MCA), 0);
        assert_eq!(r.edx, 0x178b_fbff & !(1 << 7 | 1 << 12 | 1 << 14));
    }

    #[test]
    fn svm_is_hidden() {
        let r = guest_cpuid(
            0x8000_0001,
            0,
            host(0, 0, 0x0000_37ff, 0),
            0x10,
            0x8000_0021,
            &VCPU,
        );
        assert_eq!(r.ecx & bit::SVM, 0);
        assert_eq!(r.ecx, 0x37ff & !bit::SVM & !bit::MONITORX & !bit::OSVW);
        assert_eq!(
            guest_cpuid(
                0x8000_000a,
                0,
                host(1, 16, 0, 0x1bf),
                0x10,
                0x8000_0021,
                &VCPU
            ),
            CpuidResult::default()
        );
    }

    #[test]
    fn leaves_beyond_the_maximum_are_zero() {
        assert_eq!(
            guest_cpuid(0x11, 0, host(1, 2, 3, 4), 0x10, 0x8000_0021, &VCPU),
            CpuidResult::default()
        );
        assert_eq!(
            guest_cpuid(0x8000_0022, 0, host(1, 2, 3, 4), 0x10, 0x8000_0021, &VCPU),
            CpuidResult::default()
        );
        assert_eq!(
            guest_cpuid(0x10, 0, host(1, 2, 3, 4), 0x10, 0x8000_0021, &VCPU),
            host(1, 2, 3, 4)
        );
    }

    #[test]
    fn topology_leaves_carry_the_vcpu_apic_id() {
        assert_eq!(
            guest_cpuid(0xB, 0, host(1, 1, 0x100, 9), 0x10, 0x8000_0021, &VCPU).edx,
            3
        );
        assert_eq!(
            guest_cpuid(0x8000_001e, 0, host(9, 0, 0, 0), 0x10, 0x8000_0021, &VCPU).eax,
            3
        );
    }

    #[test]
    fn rdpru_is_hidden() {
        let h = host(0x3030, 0xffff_ffff, 0, 0);
        let r = guest_cpuid(0x8000_0008, 0, h, 0x10, 0x8000_0021, &VCPU);
        assert_eq!(r.ebx, !bit::RDPRU);
        assert_eq!(r.eax, 0x3030);
    }

    /// Leaf 8000_0007h EDX[8] says what the hypervisor decided, whatever the host says; the
    /// other bits of the leaf are the host's.
    #[test]
    fn invariant_tsc_only_when_the_machine_has_one() {
        let h = host(0, 0, 0, 0x0000_1b81);
        let told = VcpuView {
            tsc_invariant: true,
            ..VCPU
        };
        let r = guest_cpuid(0x8000_0007, 0, h, 0x10, 0x8000_0021, &told);
        assert_eq!(r.edx, 0x0000_1b81);
        let r = guest_cpuid(
            0x8000_0007,
            0,
            host(0, 0, 0, 0x80),
            0x10,
            0x8000_0021,
            &told,
        );
        assert_eq!(r.edx, 0x180);
        let r = guest_cpuid(0x8000_0007, 0, h, 0x10, 0x8000_0021, &VCPU);
        assert_eq!(r.edx, 0x0000_1a81);
        // Above the host's last extended leaf: zeros, as AMD answers.
        let r = guest_cpuid(0x8000_0007, 0, h, 0x10, 0x8000_0006, &told);
        assert_eq!(r, CpuidResult::default());
    }

    #[test]
    fn tsc_adjust_comes_with_the_invariant_tsc() {
        let h = host(0, 0x0000_029b, 0, 0);
        let told = VcpuView {
            tsc_invariant: true,
            ..VCPU
        };
        assert_eq!(guest_cpuid(7, 0, h, 0x10, 0x8000_0021, &told).ebx, 0x29b);
        assert_eq!(
            guest_cpuid(7, 0, host(0, 0x299, 0, 0), 0x10, 0x8000_0021, &told).ebx,
            0x29b
        );
        assert_eq!(guest_cpuid(7, 0, h, 0x10, 0x8000_0021, &VCPU).ebx, 0x299);
        // Other subleaves are the host's.
        assert_eq!(guest_cpuid(7, 1, h, 0x10, 0x8000_0021, &VCPU).ebx, 0x29b);
    }
}
