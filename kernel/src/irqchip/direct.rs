//! Which x2APIC MSRs the direct interrupt mode passes through to the guest, and why (design.md,
//! "Interrupt modes": the guest owns its core's physical x2APIC for timer, TPR, EOI and self-IPI;
//! APIC-id and LDR reads and ICR writes stay trapped and are translated). Register map: AMD APM
//! vol. 2 §16.11.

use super::x2apic::{Lvt, Register};

/// Which directions of an x2APIC MSR the direct mode lets the guest reach on its core's physical
/// APIC without an exit (`true` = passed through, `false` = intercepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectAccess {
    pub read: bool,
    pub write: bool,
}

/// The direct-mode MSR policy. The guest core is dedicated and the hypervisor takes no interrupts
/// on it (it runs exits with interrupts disabled and is reached only by NMI), so whatever stays
/// inside this core's APIC is the guest's; whatever reaches beyond it, or shows host identities, is
/// trapped:
///
/// - TPR, PPR, EOI, ISR/TMR/IRR, ESR: the hardware's priority, in-service and error state *is*
///   the guest's (design.md: every ISR bit is set by hardware). Passed both ways: writes to the
///   read-only ones and reads of EOI fault in hardware exactly as x2APIC requires.
/// - Timer LVT, initial/current count, divide: the guest owns its core's timer. Any vector it picks
///   is safe because the host takes no interrupts here; TSC-deadline needs MSR 6E0h, which stays
///   trapped, so bit 18 gains the guest nothing.
/// - Error LVT: vector and mask only, delivered to this core.
/// - SELF_IPI: can only target this core, fixed, with the guest's vector.
/// - ID, LDR, version reads: trapped and answered with the guest's own APIC id, the LDR derived
///   from it, and our [`super::x2apic::VERSION`] (the physical one may announce AMD's extended
///   space, which we do not expose). Their writes fault anyway; trapping keeps the fault ours.
/// - ICR: trapped both ways: the destination is a guest id to translate and check, and a read
///   must return what the guest wrote, not the translated value.
/// - SVR writes: trapped; a guest clearing the enable bit would software-disable the physical APIC
///   that the hypervisor's virtual-device IPIs need. Reads pass.
/// - Thermal and perf LVT writes: trapped; their delivery mode can be SMI, and an SMI storm stalls
///   every core, not just this one. Reads pass.
/// - LINT0/LINT1 writes: trapped; they are wired to the host platform (ExtINT from the 8259, NMI
///   from the chipset), and unmasking them would hand host interrupts to the guest. Reads pass.
/// - Everything else in 800h-8FFh, including AMD's extended space: trapped (reserved for the
///   guest, possibly live on the hardware).
pub const fn direct_mode_access(msr: u32) -> DirectAccess {
    const BOTH: DirectAccess = DirectAccess {
        read: true,
        write: true,
    };
    const READ_ONLY: DirectAccess = DirectAccess {
        read: true,
        write: false,
    };
    const TRAP: DirectAccess = DirectAccess {
        read: false,
        write: false,
    };
    match Register::from_msr(msr) {
        Some(Register::Tpr | Register::Ppr | Register::Eoi | Register::Esr) => BOTH,
        Some(Register::Isr(_) | Register::Tmr(_) | Register::Irr(_)) => BOTH,
        Some(Register::Lvt(Lvt::Timer | Lvt::Error)) => BOTH,
        Some(Register::TimerInitial | Register::TimerCurrent | Register::TimerDivide) => BOTH,
        Some(Register::SelfIpi) => BOTH,
        Some(Register::Svr | Register::Lvt(Lvt::Thermal | Lvt::Perf | Lvt::Lint0 | Lvt::Lint1)) => {
            READ_ONLY
        }
        Some(Register::Id | Register::Ldr | Register::Version | Register::Icr) => TRAP,
        None => TRAP,
    }
}

/// Whether the direct mode passes `msr` through in both directions (see [`direct_mode_access`]).
pub const fn is_passthrough_msr(msr: u32) -> bool {
    let access = direct_mode_access(msr);
    access.read && access.write
}

#[cfg(test)]
mod tests {
    use super::super::x2apic::*;
    use super::*;

    #[test]
    fn direct_mode_policy() {
        for msr in [
            MSR_TPR,
            MSR_EOI,
            MSR_TIMER_INITIAL,
            MSR_TIMER_CURRENT,
            MSR_TIMER_DIVIDE,
            MSR_LVT_TIMER,
            MSR_SELF_IPI,
            0x810,
            0x827,
        ] {
            assert!(is_passthrough_msr(msr), "{msr:#x}");
        }
        for msr in [
            MSR_ID,
            MSR_LDR,
            MSR_ICR,
            MSR_VERSION,
            0x80e,
            0x831,
            0x840,
            0x850,
        ] {
            assert_eq!(
                direct_mode_access(msr),
                DirectAccess {
                    read: false,
                    write: false
                },
                "{msr:#x}"
            );
        }
        for msr in [
            MSR_SVR,
            MSR_LVT_LINT0,
            MSR_LVT_LINT1,
            MSR_LVT_PERF,
            MSR_LVT_THERMAL,
        ] {
            assert_eq!(
                direct_mode_access(msr),
                DirectAccess {
                    read: true,
                    write: false
                },
                "{msr:#x}"
            );
        }
    }
}
