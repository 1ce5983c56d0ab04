//! Which x2APIC MSRs the direct interrupt mode passes through to the guest, and why (docs/design.md,
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
///   the guest's (docs/design.md: every ISR bit is set by hardware). Passed both ways: writes to the
///   read-only ones and reads of EOI fault in hardware exactly as x2APIC requires.
/// - Initial/current count, divide: the guest owns its core's timer. Any vector it picks is safe
///   because the host takes no interrupts here.
/// - Timer and error LVT: reads pass; writes are trapped and filtered by [`filter_write`], so
///   only vector, mask and (timer) periodic/one-shot reach the physical register: the other bits
///   are reserved on AMD, but an implementation that honours a delivery mode there (QEMU does)
///   would let a guest send SMIs or NMIs to its own core, and an SMI stalls every core. Linux
///   writes LVTT a few times per boot (it reprograms the initial count per tick), so the trap is
///   cheap.
/// - SELF_IPI: can only target this core, fixed, with the guest's vector.
/// - ID, LDR, version reads: trapped and answered with the guest's own APIC id, the LDR derived
///   from it, and our [`super::x2apic::VERSION`] (the physical one may announce AMD's extended
///   space, which we do not expose). Their writes fault anyway; trapping keeps the fault ours.
/// - ICR: trapped both ways: the destination is a guest id to translate and check, and a read
///   must return what the guest wrote, not the translated value.
/// - SVR writes: trapped and filtered by [`filter_write`]; a guest clearing the enable bit would
///   software-disable the physical APIC that the hypervisor's virtual-device IPIs need, and a
///   reserved bit in a WRMSR the hypervisor executes would #GP the hypervisor. Reads pass.
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
        Some(Register::TimerInitial | Register::TimerCurrent | Register::TimerDivide) => BOTH,
        Some(Register::SelfIpi) => BOTH,
        Some(Register::Svr | Register::Lvt(_)) => READ_ONLY,
        Some(Register::Id | Register::Ldr | Register::Version | Register::Icr) => TRAP,
        None => TRAP,
    }
}

/// SVR bits a guest may write: vector (7:0), APIC software enable (8), focus-processor checking
/// (9). EOI-broadcast suppression (12) is not offered ([`super::x2apic::VERSION`] bit 24 is
/// clear); the rest is reserved (APM vol. 2 §16.4.7).
pub const SVR_WRITABLE: u64 = 0x3ff;
const SVR_ENABLE: u64 = 1 << 8;
/// LVT bits: vector (7:0), mask (16), timer mode (18:17; 00 one-shot, 01 periodic).
const LVT_VECTOR_MASK: u64 = 0xff | 1 << 16;
const LVT_TIMER_MODE: u64 = 0b11 << 17;
const LVT_TIMER_PERIODIC: u64 = 0b01 << 17;

/// A direct-mode write the hypervisor refuses: the guest gets #GP, as for a reserved bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRefused {
    /// A bit outside what the register offers the guest is set.
    ReservedBits(u64),
    /// TSC-deadline mode (hidden by CPUID) or the reserved timer mode.
    TimerMode(u64),
    /// Not a register whose writes the direct mode forwards.
    NotForwarded,
}

/// The value the hypervisor writes to the physical register for a guest's trapped direct-mode
/// write of `value` to `msr`: SVR with the enable bit forced on, the timer and error LVTs with
/// only vector, mask and timer mode. Anything else set is refused, never passed on.
pub fn filter_write(msr: u32, value: u64) -> Result<u64, WriteRefused> {
    let allowed = match Register::from_msr(msr) {
        Some(Register::Svr) => SVR_WRITABLE,
        Some(Register::Lvt(Lvt::Timer)) => LVT_VECTOR_MASK | LVT_TIMER_MODE,
        Some(Register::Lvt(Lvt::Error)) => LVT_VECTOR_MASK,
        _ => return Err(WriteRefused::NotForwarded),
    };
    if value & !allowed != 0 {
        return Err(WriteRefused::ReservedBits(value & !allowed));
    }
    let mode = value & LVT_TIMER_MODE;
    if mode != 0 && mode != LVT_TIMER_PERIODIC {
        return Err(WriteRefused::TimerMode(mode >> 17));
    }
    Ok(match Register::from_msr(msr) {
        Some(Register::Svr) => value | SVR_ENABLE,
        _ => value,
    })
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
            MSR_LVT_TIMER,
            MSR_LVT_ERROR,
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

    /// Only vector, mask and timer mode reach the physical LVTs; SVR keeps the APIC enabled; any
    /// other bit (a delivery mode of SMI, NMI or INIT, reserved bits) is refused.
    #[test]
    fn direct_mode_write_filter() {
        assert_eq!(filter_write(MSR_SVR, 0x1ff), Ok(0x1ff));
        assert_eq!(filter_write(MSR_SVR, 0x0ff), Ok(0x1ff));
        assert_eq!(filter_write(MSR_SVR, 0x2ef), Ok(0x3ef));
        assert_eq!(
            filter_write(MSR_SVR, 0xcff),
            Err(WriteRefused::ReservedBits(0xc00))
        );
        assert_eq!(
            filter_write(MSR_SVR, 1 << 12 | 0xff),
            Err(WriteRefused::ReservedBits(1 << 12))
        );
        assert_eq!(filter_write(MSR_LVT_TIMER, 0xef), Ok(0xef));
        assert_eq!(
            filter_write(MSR_LVT_TIMER, 1 << 17 | 0xef),
            Ok(1 << 17 | 0xef)
        );
        assert_eq!(filter_write(MSR_LVT_TIMER, 1 << 16), Ok(1 << 16));
        // SMI (010b), NMI (100b) and INIT (101b) delivery modes in bits 10:8.
        for mode in [0b010u64, 0b100, 0b101, 0b111] {
            assert_eq!(
                filter_write(MSR_LVT_TIMER, mode << 8 | 0xef),
                Err(WriteRefused::ReservedBits(mode << 8))
            );
            assert_eq!(
                filter_write(MSR_LVT_ERROR, mode << 8 | 0xfe),
                Err(WriteRefused::ReservedBits(mode << 8))
            );
        }
        assert_eq!(
            filter_write(MSR_LVT_TIMER, 2 << 17 | 0xef),
            Err(WriteRefused::TimerMode(2))
        );
        assert_eq!(
            filter_write(MSR_LVT_TIMER, 3 << 17 | 0xef),
            Err(WriteRefused::TimerMode(3))
        );
        assert_eq!(
            filter_write(MSR_LVT_ERROR, 1 << 17 | 0xfe),
            Err(WriteRefused::ReservedBits(1 << 17))
        );
        assert_eq!(filter_write(MSR_LVT_ERROR, 0x1_00fe), Ok(0x1_00fe));
        // Level/remote-IRR/delivery-status bits are not the guest's to write either.
        assert_eq!(
            filter_write(MSR_LVT_TIMER, 1 << 15 | 0xef),
            Err(WriteRefused::ReservedBits(1 << 15))
        );
        assert_eq!(filter_write(MSR_TPR, 0), Err(WriteRefused::NotForwarded));
    }
}
