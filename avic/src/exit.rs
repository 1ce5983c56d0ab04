//! Decoding of the two AVIC exits (APM vol. 2 §15.29.9; exit codes 0x401 and 0x402 of
//! Appendix C).
//!
//! * `AVIC_INCOMPLETE_IPI` (0x401): the guest wrote ICR and AVIC could not deliver the IPI
//!   completely. EXITINFO1 = the ICR (low 32 bits in 31:0, high in 63:32); EXITINFO2\[63:32\] =
//!   the failure cause; EXITINFO2\[8:0\] = the physical table index involved (for
//!   "target not running" and "invalid backing page").
//! * `AVIC_NOACCEL` (0x402): an APIC register access AVIC does not accelerate. EXITINFO1\[11:4\]
//!   = register offset / 16 (so bits 11:0 are the byte offset), EXITINFO1 bit 32 = write;
//!   EXITINFO2\[31:0\] = the vector (for EOI of a level-triggered vector). Trap-style exits
//!   happen after the write reached the backing page (RIP already advanced); fault-style exits
//!   happen before the access (the instruction must be emulated).

/// Why AVIC could not complete an IPI (EXITINFO2\[63:32\] of exit 0x401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiFailure {
    /// 0: the ICR message type is not one AVIC delivers (only Fixed, edge-triggered; INIT,
    /// SIPI, NMI, SMI, ExtINT and lowest priority exit here). Emulate the whole IPI.
    InvalidIntType,
    /// 1: at least one target's IsRunning is clear. AVIC already set the IRR bits; the
    /// hypervisor must wake (or post to) the non-running targets.
    TargetNotRunning,
    /// 2: the physical destination is beyond the table's max index or its entry is not valid.
    InvalidTarget,
    /// 3: the target's backing page pointer is invalid.
    InvalidBackingPage,
    /// 4: the vector is invalid.
    InvalidVector,
    /// Any other cause value, kept raw.
    Unknown(u32),
}

impl IpiFailure {
    /// Decode the cause value.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::InvalidIntType,
            1 => Self::TargetNotRunning,
            2 => Self::InvalidTarget,
            3 => Self::InvalidBackingPage,
            4 => Self::InvalidVector,
            other => Self::Unknown(other),
        }
    }

    /// The raw cause value.
    pub const fn raw(self) -> u32 {
        match self {
            Self::InvalidIntType => 0,
            Self::TargetNotRunning => 1,
            Self::InvalidTarget => 2,
            Self::InvalidBackingPage => 3,
            Self::InvalidVector => 4,
            Self::Unknown(raw) => raw,
        }
    }
}

// The ICR and the APIC register offsets (which are the backing page's) are the `apic` crate's,
// shared with the hypervisor's emulated x2APIC.
pub use apic::icr::{Icr, Shorthand};
pub use apic::reg;

/// A decoded `AVIC_INCOMPLETE_IPI` exit (0x401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncompleteIpi {
    /// The ICR the guest wrote (EXITINFO1).
    pub icr: Icr,
    /// The failure cause (EXITINFO2\[63:32\]).
    pub cause: IpiFailure,
    /// Physical APIC-ID table index involved (EXITINFO2\[8:0\]).
    pub index: u16,
}

impl IncompleteIpi {
    /// Decode EXITINFO1 and EXITINFO2.
    pub const fn decode(exit_info1: u64, exit_info2: u64) -> Self {
        Self {
            icr: Icr(exit_info1),
            cause: IpiFailure::from_raw((exit_info2 >> 32) as u32),
            index: (exit_info2 & 0x1FF) as u16,
        }
    }
}

/// Whether an unaccelerated access exited before (fault) or after (trap) it took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// The write reached the backing page; act on the new value, RIP is already past it.
    Trap,
    /// The access did not happen; emulate the instruction.
    Fault,
}

/// A decoded `AVIC_NOACCEL` exit (0x402).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoAccel {
    /// Byte offset of the register in the APIC page (EXITINFO1\[11:4\] × 16).
    pub offset: u16,
    /// The access was a write (EXITINFO1 bit 32).
    pub write: bool,
    /// EXITINFO2\[31:0\]: the vector, for EOI of a level-triggered interrupt.
    pub vector: u32,
}

impl NoAccel {
    /// Decode EXITINFO1 and EXITINFO2.
    pub const fn decode(exit_info1: u64, exit_info2: u64) -> Self {
        Self {
            offset: (exit_info1 & 0xFF0) as u16,
            write: exit_info1 & (1 << 32) != 0,
            vector: exit_info2 as u32,
        }
    }

    /// Trap or fault (§15.29.9): writes of ID, EOI (a level-triggered vector), RRR, LDR, DFR,
    /// SPIV, ESR, ICR (non-accelerated cases), LVT timer/thermal/PMC/LINT0/LINT1/error, timer
    /// initial count and divide configuration trap (the same list as Linux's
    /// `is_avic_unaccelerated_access_trap`); every other unaccelerated access (reads such as
    /// the timer current count, writes of read-only or unknown registers, LVT CMCI) faults.
    pub const fn kind(&self) -> AccessKind {
        if !self.write {
            return AccessKind::Fault;
        }
        match self.offset {
            reg::ID
            | reg::EOI
            | reg::RRR
            | reg::LDR
            | reg::DFR
            | reg::SPIV
            | reg::ESR
            | reg::ICR_LOW
            | reg::LVT_TIMER
            | reg::LVT_THERMAL
            | reg::LVT_PMC
            | reg::LVT_LINT0
            | reg::LVT_LINT1
            | reg::LVT_ERROR
            | reg::TIMER_INITIAL
            | reg::TIMER_DIVIDE => AccessKind::Trap,
            _ => AccessKind::Fault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apic::DeliveryMode;

    #[test]
    fn incomplete_ipi_target_not_running() {
        // Fixed IPI, vector 0xEC, physical destination 2 (xAPIC), cause 1, index 2.
        let icr = (2u64 << 56) | 0x0000_40EC;
        let ipi = IncompleteIpi::decode(icr, (1 << 32) | 2);
        assert_eq!(ipi.cause, IpiFailure::TargetNotRunning);
        assert_eq!(ipi.index, 2);
        assert_eq!(ipi.icr.vector(), 0xEC);
        assert_eq!(ipi.icr.delivery_mode(), DeliveryMode::Fixed);
        assert_eq!(ipi.icr.destination(false), 2);
        assert_eq!(ipi.icr.shorthand(), Shorthand::Destination);
        assert!(!ipi.icr.logical());
    }

    #[test]
    fn incomplete_ipi_causes() {
        for (raw, cause) in [
            (0, IpiFailure::InvalidIntType),
            (1, IpiFailure::TargetNotRunning),
            (2, IpiFailure::InvalidTarget),
            (3, IpiFailure::InvalidBackingPage),
            (4, IpiFailure::InvalidVector),
            (9, IpiFailure::Unknown(9)),
        ] {
            let d = IncompleteIpi::decode(0, (raw as u64) << 32);
            assert_eq!(d.cause, cause);
            assert_eq!(cause.raw(), raw);
        }
    }

    #[test]
    fn incomplete_ipi_init_x2apic() {
        // x2APIC INIT to APIC ID 0x105, level assert: delivery mode 5, bit 14.
        let icr = (0x105u64 << 32) | (5 << 8) | (1 << 14);
        let d = IncompleteIpi::decode(icr, 0x1_05);
        assert_eq!(d.cause, IpiFailure::InvalidIntType);
        assert_eq!(d.icr.delivery_mode(), DeliveryMode::Init);
        assert_eq!(d.icr.destination(true), 0x105);
        assert_eq!(d.index, 0x105);
        let all = Icr(3 << 18);
        assert_eq!(all.shorthand(), Shorthand::AllExcludingSelf);
        assert!(Icr(1 << 15).level_triggered());
        assert!(Icr(1 << 11).logical());
    }

    #[test]
    fn noaccel_timer_write_traps() {
        // Write to TMICT (0x380): EXITINFO1 = 0x38 << 4 | write bit 32.
        let d = NoAccel::decode((1 << 32) | 0x380, 0);
        assert_eq!(d.offset, 0x380);
        assert!(d.write);
        assert_eq!(d.kind(), AccessKind::Trap);
        assert_eq!(
            NoAccel::decode((1 << 32) | 0x3E0, 0).kind(),
            AccessKind::Trap
        );
        assert_eq!(
            NoAccel::decode((1 << 32) | 0x300, 0).kind(),
            AccessKind::Trap
        );
        assert_eq!(
            NoAccel::decode((1 << 32) | 0x0D0, 0).kind(),
            AccessKind::Trap
        );
    }

    #[test]
    fn noaccel_reads_and_unknown_writes_fault() {
        // Read of the timer current count.
        let d = NoAccel::decode(0x390, 0);
        assert!(!d.write);
        assert_eq!(d.kind(), AccessKind::Fault);
        // Write to the (read-only) version register.
        assert_eq!(
            NoAccel::decode((1 << 32) | 0x030, 0).kind(),
            AccessKind::Fault
        );
        // LVT CMCI is not in the trap list.
        assert_eq!(
            NoAccel::decode((1 << 32) | 0x2F0, 0).kind(),
            AccessKind::Fault
        );
        // Low bits 3:0 are not part of the offset.
        assert_eq!(NoAccel::decode(0x38F, 0).offset, 0x380);
        // EOI of level-triggered vector 0x21.
        let eoi = NoAccel::decode((1 << 32) | 0x0B0, 0x21);
        assert_eq!((eoi.kind(), eoi.vector), (AccessKind::Trap, 0x21));
    }
}
