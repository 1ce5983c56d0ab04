//! The guest-state checks `VMRUN` performs before entering the guest (APM vol. 2 §15.5.1,
//! "Canonicalization and Consistency Checks"). If any fails, `VMRUN` exits at once with
//! `VMEXIT_INVALID` and no indication which one; running these on the VMCB first turns that into
//! a precise error message. The list is the APM's, restricted to what can be checked from the
//! VMCB plus the physical address width.

use crate::event::{EventInj, EventType};
use crate::intercept::InterceptMisc2;
use crate::vmcb::Vmcb;

const CR0_PE: u64 = 1 << 0;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_SVME: u64 = 1 << 12;
/// EFER bits that are reserved on every AMD64 processor (bits 7:1, 9, 63:32).
const EFER_RESERVED: u64 = 0xFFFF_FFFF_0000_02FE;
const CS_L: u16 = 1 << 9;
const CS_D: u16 = 1 << 10;

/// The first consistency check the VMCB fails (APM vol. 2 §15.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidState {
    /// EFER.SVME is zero.
    EferSvmeClear,
    /// CR0.CD is zero and CR0.NW is set.
    Cr0NwWithoutCd,
    /// CR0\[63:32\] are not zero.
    Cr0HighBits,
    /// CR3 has bits set at or above the physical address width (long mode).
    Cr3ReservedBits,
    /// CR4\[63:32\] are not zero.
    Cr4HighBits,
    /// A CR4 bit this processor reserves (see [`cr4_reserved`]) is set.
    Cr4ReservedBits,
    /// DR6\[63:32\] are not zero.
    Dr6HighBits,
    /// DR7\[63:32\] are not zero.
    Dr7HighBits,
    /// A reserved EFER bit is set.
    EferReservedBits,
    /// EFER.LME and CR0.PG set, CR4.PAE clear.
    LongModeWithoutPae,
    /// EFER.LME and CR0.PG set, CR0.PE clear.
    LongModeWithoutPe,
    /// EFER.LME, CR0.PG, CR4.PAE, CS.L and CS.D all set.
    CsLongAndDefault32,
    /// The VMRUN intercept bit is clear.
    VmrunNotIntercepted,
    /// The MSR or I/O permission map reaches beyond the physical address width.
    PermissionMapBeyondMaxPhys,
    /// EVENTINJ is valid but illegal (reserved type, or an exception with vector 2 or > 31).
    IllegalEventInjection,
    /// The ASID is zero.
    AsidZero,
}

/// The CR4 bits a processor reserves (APM vol. 2 §3.1.3, "CR4 Register"), from the CPUID
/// feature words that define them: leaf 1 ECX and leaf 7.0 EBX/ECX. Bit 15 and bits 31:26 are
/// reserved everywhere; a feature bit is reserved where CPUID does not report the feature.
/// The Intel-only bits (VMXE 13, SMXE 14, KL 19, PKS 24, UINTR 25) follow their CPUID bits too.
pub const fn cr4_reserved(leaf1_ecx: u32, leaf7_ebx: u32, leaf7_ecx: u32) -> u64 {
    // (CR4 bit, CPUID word: 0 = leaf 1 ECX, 1 = leaf 7 EBX, 2 = leaf 7 ECX, bit)
    const FEATURES: [(u32, u8, u32); 14] = [
        (11, 2, 2),  // UMIP
        (12, 2, 16), // LA57
        (13, 0, 5),  // VMXE
        (14, 0, 6),  // SMXE
        (16, 1, 0),  // FSGSBASE
        (17, 0, 17), // PCIDE
        (18, 0, 26), // OSXSAVE (XSAVE)
        (19, 2, 23), // KL
        (20, 1, 7),  // SMEP
        (21, 1, 20), // SMAP
        (22, 2, 3),  // PKE
        (23, 2, 7),  // CET (shadow stacks)
        (24, 2, 31), // PKS
        (25, 2, 5),  // UINTR (leaf 7 EDX on Intel; no AMD processor has it: ECX bit 5 is WAITPKG)
    ];
    let mut reserved = (1u64 << 15) | (0x3f << 26) | !0xffff_ffff;
    let mut i = 0;
    while i < FEATURES.len() {
        let (cr4_bit, word, cpuid_bit) = FEATURES[i];
        let w = match word {
            0 => leaf1_ecx,
            1 => leaf7_ebx,
            _ => leaf7_ecx,
        };
        // UINTR is never offered (no AMD CPUID bit), whatever ECX bit 5 says.
        if w & (1 << cpuid_bit) == 0 || cr4_bit == 25 {
            reserved |= 1 << cr4_bit;
        }
        i += 1;
    }
    reserved
}

/// Check the VMCB the way `VMRUN` does. `phys_addr_bits` is CPUID 8000_0008 EAX\[7:0\].
pub fn check_guest_state(v: &Vmcb, phys_addr_bits: u8) -> Result<(), InvalidState> {
    check_guest_state_with(v, phys_addr_bits, !0xffff_ffff)
}

/// [`check_guest_state`] with the processor's reserved CR4 bits (from [`cr4_reserved`]).
pub fn check_guest_state_with(
    v: &Vmcb,
    phys_addr_bits: u8,
    cr4_reserved_bits: u64,
) -> Result<(), InvalidState> {
    let max_phys = 1u64 << phys_addr_bits.clamp(32, 52);
    let long_mode = v.efer & EFER_LME != 0 && v.cr0 & CR0_PG != 0;
    if v.efer & EFER_SVME == 0 {
        return Err(InvalidState::EferSvmeClear);
    }
    if v.cr0 & CR0_CD == 0 && v.cr0 & CR0_NW != 0 {
        return Err(InvalidState::Cr0NwWithoutCd);
    }
    if v.cr0 >> 32 != 0 {
        return Err(InvalidState::Cr0HighBits);
    }
    if long_mode && v.cr3 >= max_phys {
        return Err(InvalidState::Cr3ReservedBits);
    }
    if v.cr4 >> 32 != 0 {
        return Err(InvalidState::Cr4HighBits);
    }
    if v.cr4 & cr4_reserved_bits != 0 {
        return Err(InvalidState::Cr4ReservedBits);
    }
    if v.dr6 >> 32 != 0 {
        return Err(InvalidState::Dr6HighBits);
    }
    if v.dr7 >> 32 != 0 {
        return Err(InvalidState::Dr7HighBits);
    }
    if v.efer & EFER_RESERVED != 0 {
        return Err(InvalidState::EferReservedBits);
    }
    if long_mode && v.cr4 & CR4_PAE == 0 {
        return Err(InvalidState::LongModeWithoutPae);
    }
    if long_mode && v.cr0 & CR0_PE == 0 {
        return Err(InvalidState::LongModeWithoutPe);
    }
    if long_mode && v.cs.attrib & CS_L != 0 && v.cs.attrib & CS_D != 0 {
        return Err(InvalidState::CsLongAndDefault32);
    }
    if !v.misc2().contains(InterceptMisc2::VMRUN) {
        return Err(InvalidState::VmrunNotIntercepted);
    }
    let msrpm_end = (v.msrpm_base_pa & !0xFFF).saturating_add(0x2000);
    let iopm_end = (v.iopm_base_pa & !0xFFF).saturating_add(0x3000);
    if msrpm_end > max_phys || iopm_end > max_phys {
        return Err(InvalidState::PermissionMapBeyondMaxPhys);
    }
    let ev = EventInj(v.event_inj);
    if ev.is_valid() {
        let legal = match ev.event_type() {
            None => false,
            Some(EventType::Exception) => ev.vector() != 2 && ev.vector() < 32,
            Some(_) => true,
        };
        if !legal {
            return Err(InvalidState::IllegalEventInjection);
        }
    }
    if v.guest_asid == 0 {
        return Err(InvalidState::AsidZero);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::LongModeEntry;

    fn good() -> Box<Vmcb> {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.set_long_mode_state(&LongModeEntry {
            cr3: 0x1000,
            rip: 0x10_0000,
            rsp: 0x8000,
            gdt_base: 0,
            gdt_limit: 0,
            cs: 0x10,
            ds: 0x18,
        });
        v.set_misc2(InterceptMisc2::VMRUN);
        v.guest_asid = 1;
        v.msrpm_base_pa = 0x10_0000;
        v.iopm_base_pa = 0x20_0000;
        v
    }

    #[test]
    fn long_mode_guest_passes() {
        assert_eq!(check_guest_state(&good(), 48), Ok(()));
    }

    #[test]
    fn each_check_fires() {
        type Case = (fn(&mut Vmcb), InvalidState);
        let cases: [Case; 10] = [
            (|v| v.efer &= !EFER_SVME, InvalidState::EferSvmeClear),
            (|v| v.cr0 |= CR0_NW, InvalidState::Cr0NwWithoutCd),
            (|v| v.cr3 = 1 << 50, InvalidState::Cr3ReservedBits),
            (|v| v.dr7 = 1 << 40, InvalidState::Dr7HighBits),
            (|v| v.efer |= 1 << 9, InvalidState::EferReservedBits),
            (|v| v.cr4 = 0, InvalidState::LongModeWithoutPae),
            (|v| v.cs.attrib |= CS_D, InvalidState::CsLongAndDefault32),
            (|v| v.intercept_misc2 = 0, InvalidState::VmrunNotIntercepted),
            (|v| v.guest_asid = 0, InvalidState::AsidZero),
            (
                |v| v.msrpm_base_pa = (1 << 48) - 0x1000,
                InvalidState::PermissionMapBeyondMaxPhys,
            ),
        ];
        for (mutate, expected) in cases {
            let mut v = good();
            mutate(&mut v);
            assert_eq!(check_guest_state(&v, 48), Err(expected));
        }
    }

    #[test]
    fn event_injection_legality() {
        let mut v = good();
        v.event_inj = 0x8000_0330; // QEMU's mis-typed external interrupt
        assert_eq!(
            check_guest_state(&v, 48),
            Err(InvalidState::IllegalEventInjection)
        );
        v.event_inj = 0x8000_0302; // exception type with the NMI vector
        assert!(check_guest_state(&v, 48).is_err());
        v.event_inj = 0x8000_0030;
        assert_eq!(check_guest_state(&v, 48), Ok(()));
        v.event_inj = 0x0000_0330; // not valid: ignored
        assert_eq!(check_guest_state(&v, 48), Ok(()));
    }

    #[test]
    fn cr4_reserved_bits_follow_cpuid() {
        // No features at all: every feature bit reserved, the classic bits 10:0 not.
        let none = cr4_reserved(0, 0, 0);
        assert_eq!(none & 0x7ff, 0);
        for bit in [
            11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 31, 32, 63,
        ] {
            assert_ne!(none & (1 << bit), 0, "bit {bit}");
        }
        // XSAVE, PCID, FSGSBASE, SMEP, SMAP, UMIP, PKE: those bits become usable.
        let some = cr4_reserved(1 << 26 | 1 << 17, 1 | 1 << 7 | 1 << 20, 1 << 2 | 1 << 3);
        for bit in [11, 16, 17, 18, 20, 21, 22] {
            assert_eq!(some & (1 << bit), 0, "bit {bit}");
        }
        assert_ne!(some & (1 << 13), 0, "VMXE stays reserved without VMX");
        assert_ne!(cr4_reserved(0, 0, 1 << 5) & (1 << 25), 0, "UINTR never");
        let mut v = good();
        v.cr4 |= 1 << 13;
        assert_eq!(
            check_guest_state_with(&v, 48, none),
            Err(InvalidState::Cr4ReservedBits)
        );
        assert_eq!(check_guest_state(&v, 48), Ok(()));
    }
}
