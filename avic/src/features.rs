//! AVIC CPUID feature checks (CPUID 8000_000A, APM vol. 3 Appendix E.4.9). The SVM leaf as a
//! whole is decoded by [`svm::features`]; these are the AVIC-specific bits.

use svm::features::SvmFeatures;

/// CPUID 8000_000A EDX bit 13: AVIC.
pub const fn avic_supported(edx_8000_000a: u32) -> bool {
    SvmFeatures::from_bits_retain(edx_8000_000a).contains(SvmFeatures::AVIC)
}

/// CPUID 8000_000A EDX bit 18: x2AVIC (AVIC for guests in x2APIC mode).
pub const fn x2avic_supported(edx_8000_000a: u32) -> bool {
    SvmFeatures::from_bits_retain(edx_8000_000a).contains(SvmFeatures::X2AVIC)
}

/// CPUID 8000_000A ECX bit 6: x2AVIC extension to 4096 vCPUs (from Linux's
/// `X86_FEATURE_X2AVIC_EXT`, named by Linux; not in the APM revisions checked).
pub const fn x2avic_4k_vcpus(ecx_8000_000a: u32) -> bool {
    ecx_8000_000a & (1 << 6) != 0
}

/// AVIC is usable for a guest only together with nested paging (§15.29.1).
pub const fn avic_usable(edx_8000_000a: u32) -> bool {
    let f = SvmFeatures::from_bits_retain(edx_8000_000a);
    f.contains(SvmFeatures::AVIC) && f.contains(SvmFeatures::NP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avic_bits() {
        assert!(avic_supported(1 << 13));
        assert!(!avic_supported(!(1 << 13)));
        assert!(x2avic_supported(1 << 18));
        assert!(!x2avic_supported(1 << 13));
        assert!(x2avic_4k_vcpus(0x40));
        assert!(avic_usable((1 << 13) | 1));
        assert!(!avic_usable(1 << 13));
        // QEMU TCG: NP, VGIF, nested address check: no AVIC.
        assert!(!avic_supported((1 << 0) | (1 << 16) | (1 << 28)));
    }
}
