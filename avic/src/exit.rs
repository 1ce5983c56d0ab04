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

/// ICR delivery modes (ICR bits 10:8).
pub mod delivery_mode {
    /// Fixed.
    pub const FIXED: u8 = 0;
    /// Lowest priority.
    pub const LOWEST_PRIORITY: u8 = 1;
    /// SMI.
    pub const SMI: u8 = 2;
    /// NMI.
    pub const NMI: u8 = 4;
    /// INIT.
    pub const INIT: u8 = 5;
    /// Start-up.
    pub const STARTUP: u8 = 6;
}

/// ICR destination shorthand (bits 19:18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// Use the destination field.
    None,
    /// Self.
    ToSelf,
    /// All including self.
    AllIncludingSelf,
    /// All excluding self.
    AllExcludingSelf,
}

/// A 64-bit ICR value (xAPIC: ICR2:ICR; x2APIC: the ICR MSR), with field accessors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Icr(pub u64);

impl Icr {
    /// Vector, bits 7:0.
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }

    /// Delivery mode, bits 10:8 (see [`delivery_mode`]).
    pub const fn delivery_mode(self) -> u8 {
        ((self.0 >> 8) & 0x7) as u8
    }

    /// Logical destination mode, bit 11.
    pub const fn logical(self) -> bool {
        self.0 & (1 << 11) != 0
    }

    /// Level-triggered, bit 15.
    pub const fn level_triggered(self) -> bool {
        self.0 & (1 << 15) != 0
    }

    /// Destination shorthand, bits 19:18.
    pub const fn shorthand(self) -> Shorthand {
        match (self.0 >> 18) & 0x3 {
            0 => Shorthand::None,
            1 => Shorthand::ToSelf,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        }
    }

    /// Destination: xAPIC bits 63:56, x2APIC bits 63:32.
    pub const fn destination(self, x2apic: bool) -> u32 {
        if x2apic {
            (self.0 >> 32) as u32
        } else {
            (self.0 >> 56) as u32
        }
    }
}

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

/// xAPIC register offsets in the backing page (APIC register page layout).
pub mod reg {
    /// APIC ID.
    pub const ID: u16 = 0x020;
    /// Version.
    pub const VERSION: u16 = 0x030;
    /// Task priority.
    pub const TPR: u16 = 0x080;
    /// Arbitration priority.
    pub const APR: u16 = 0x090;
    /// Processor priority.
    pub const PPR: u16 = 0x0A0;
    /// End of interrupt.
    pub const EOI: u16 = 0x0B0;
    /// Remote read.
    pub const RRR: u16 = 0x0C0;
    /// Logical destination.
    pub const LDR: u16 = 0x0D0;
    /// Destination format.
    pub const DFR: u16 = 0x0E0;
    /// Spurious interrupt vector.
    pub const SPIV: u16 = 0x0F0;
    /// In-service register, 8 × 32 bits at 16-byte stride.
    pub const ISR: u16 = 0x100;
    /// Trigger mode register.
    pub const TMR: u16 = 0x180;
    /// Interrupt request register.
    pub const IRR: u16 = 0x200;
    /// Error status.
    pub const ESR: u16 = 0x280;
    /// LVT CMCI.
    pub const LVT_CMCI: u16 = 0x2F0;
    /// Interrupt command, low half.
    pub const ICR_LOW: u16 = 0x300;
    /// Interrupt command, high half.
    pub const ICR_HIGH: u16 = 0x310;
    /// LVT timer.
    pub const LVT_TIMER: u16 = 0x320;
    /// LVT thermal.
    pub const LVT_THERMAL: u16 = 0x330;
    /// LVT performance counter.
    pub const LVT_PMC: u16 = 0x340;
    /// LVT LINT0.
    pub const LVT_LINT0: u16 = 0x350;
    /// LVT LINT1.
    pub const LVT_LINT1: u16 = 0x360;
    /// LVT error.
    pub const LVT_ERROR: u16 = 0x370;
    /// Timer initial count.
    pub const TIMER_INITIAL: u16 = 0x380;
    /// Timer current count.
    pub const TIMER_CURRENT: u16 = 0x390;
    /// Timer divide configuration.
    pub const TIMER_DIVIDE: u16 = 0x3E0;
    /// Self IPI (x2APIC only).
    pub const SELF_IPI: u16 = 0x3F0;
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

    #[test]
    fn incomplete_ipi_target_not_running() {
        // Fixed IPI, vector 0xEC, physical destination 2 (xAPIC), cause 1, index 2.
        let icr = (2u64 << 56) | 0x0000_40EC;
        let ipi = IncompleteIpi::decode(icr, (1 << 32) | 2);
        assert_eq!(ipi.cause, IpiFailure::TargetNotRunning);
        assert_eq!(ipi.index, 2);
        assert_eq!(ipi.icr.vector(), 0xEC);
        assert_eq!(ipi.icr.delivery_mode(), delivery_mode::FIXED);
        assert_eq!(ipi.icr.destination(false), 2);
        assert_eq!(ipi.icr.shorthand(), Shorthand::None);
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
        assert_eq!(d.icr.delivery_mode(), delivery_mode::INIT);
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
