//! The APIC register page (AMD APM vol. 2 §16.3, Table 16-2 "APIC Registers"; Intel SDM vol. 3A
//! Table 10-1): each register's byte offset in the 4 KiB xAPIC MMIO page, which is also its
//! offset in an AVIC backing page (APM §15.29.3), and the x2APIC MSR that holds it (APM §16.11:
//! register at offset `o` is MSR `800h + o / 16`).

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
/// Destination format (xAPIC only; x2APIC dropped it).
pub const DFR: u16 = 0x0E0;
/// Spurious interrupt vector.
pub const SPIV: u16 = 0x0F0;
/// In-service register, 8 × 32 bits at 16-byte stride.
pub const ISR: u16 = 0x100;
/// Trigger mode register, 8 × 32 bits.
pub const TMR: u16 = 0x180;
/// Interrupt request register, 8 × 32 bits.
pub const IRR: u16 = 0x200;
/// Error status.
pub const ESR: u16 = 0x280;
/// LVT CMCI (Intel only).
pub const LVT_CMCI: u16 = 0x2F0;
/// Interrupt command, low half (the whole 64-bit ICR in x2APIC mode).
pub const ICR_LOW: u16 = 0x300;
/// Interrupt command, high half (xAPIC only).
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

/// The x2APIC MSR of the register at byte `offset` (bits 3:0 of `offset` are ignored).
pub const fn msr_of(offset: u16) -> u32 {
    super::x2apic::MSR_FIRST + ((offset as u32 & 0xFF0) >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_is_800h_plus_offset_over_16() {
        assert_eq!(msr_of(ID), 0x802);
        assert_eq!(msr_of(ICR_LOW), 0x830);
        assert_eq!(msr_of(TIMER_INITIAL), 0x838);
        assert_eq!(msr_of(SELF_IPI), 0x83F);
        assert_eq!(msr_of(0x38F), 0x838);
    }
}
