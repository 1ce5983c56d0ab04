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

/// Check the VMCB the way `VMRUN` does. `phys_addr_bits` is CPUID 8000_0008 EAX\[7:0\].
pub fn check_guest_state(v: &Vmcb, phys_addr_bits: u8) -> Result<(), InvalidState> {
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
}
