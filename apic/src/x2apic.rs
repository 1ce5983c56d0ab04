//! The x2APIC register map and register layouts, the x2APIC logical-destination derivation and
//! destination matching. The register offsets are in [`super::reg`], the ICR in [`super::icr`].
//!
//! Sources: AMD APM vol. 2 §16.11 "x2APIC" (MSR map 800h-8FFh, 64-bit ICR, LDR derivation),
//! §16.5 "Interprocessor Interrupts" (ICR fields); Intel SDM vol. 3A §10.12 (Table 10-6, the
//! per-register access rules, and §10.12.1.3 "Reserved Bit Checking": a WRMSR that sets a reserved
//! bit raises #GP).

use super::delivery::DestMode;
use super::reg::{self, msr_of};

/// The x2APIC MSR window (APM §16.11): register at xAPIC offset `o` is MSR `0x800 + o / 16`.
pub const MSR_FIRST: u32 = 0x800;
pub const MSR_LAST: u32 = 0x8ff;

pub const MSR_ID: u32 = msr_of(reg::ID);
pub const MSR_VERSION: u32 = msr_of(reg::VERSION);
pub const MSR_TPR: u32 = msr_of(reg::TPR);
pub const MSR_PPR: u32 = msr_of(reg::PPR);
pub const MSR_EOI: u32 = msr_of(reg::EOI);
pub const MSR_LDR: u32 = msr_of(reg::LDR);
pub const MSR_SVR: u32 = msr_of(reg::SPIV);
/// ISR, TMR and IRR are eight 32-bit MSRs each; MSR `base + i` holds vectors `32 i .. 32 i + 31`.
pub const MSR_ISR0: u32 = msr_of(reg::ISR);
pub const MSR_TMR0: u32 = msr_of(reg::TMR);
pub const MSR_IRR0: u32 = msr_of(reg::IRR);
/// The eight MSRs of the ISR, TMR or IRR.
pub const VECTOR_WORDS: u32 = 8;
pub const MSR_ESR: u32 = msr_of(reg::ESR);
/// Intel's corrected-machine-check LVT. Not a register of ours: see [`Register::from_msr`].
pub const MSR_LVT_CMCI: u32 = msr_of(reg::LVT_CMCI);
pub const MSR_ICR: u32 = msr_of(reg::ICR_LOW);
pub const MSR_LVT_TIMER: u32 = msr_of(reg::LVT_TIMER);
pub const MSR_LVT_THERMAL: u32 = msr_of(reg::LVT_THERMAL);
pub const MSR_LVT_PERF: u32 = msr_of(reg::LVT_PMC);
pub const MSR_LVT_LINT0: u32 = msr_of(reg::LVT_LINT0);
pub const MSR_LVT_LINT1: u32 = msr_of(reg::LVT_LINT1);
pub const MSR_LVT_ERROR: u32 = msr_of(reg::LVT_ERROR);
pub const MSR_TIMER_INITIAL: u32 = msr_of(reg::TIMER_INITIAL);
pub const MSR_TIMER_CURRENT: u32 = msr_of(reg::TIMER_CURRENT);
pub const MSR_TIMER_DIVIDE: u32 = msr_of(reg::TIMER_DIVIDE);
pub const MSR_SELF_IPI: u32 = msr_of(reg::SELF_IPI);

/// The x2APIC MSR window as a range (`MSR_FIRST..=MSR_LAST`).
pub const MSRS: core::ops::RangeInclusive<u32> = MSR_FIRST..=MSR_LAST;

/// The local vector table entries, in MSR order; the index is the position in [`LVT_COUNT`]-sized
/// arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lvt {
    Timer = 0,
    Thermal = 1,
    Perf = 2,
    Lint0 = 3,
    Lint1 = 4,
    Error = 5,
}

pub const LVT_COUNT: usize = 6;

/// One x2APIC register, decoded from its MSR number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    Id,
    Version,
    Tpr,
    Ppr,
    Eoi,
    Ldr,
    Svr,
    /// Word 0-7 of the ISR.
    Isr(usize),
    Tmr(usize),
    Irr(usize),
    Esr,
    Icr,
    Lvt(Lvt),
    TimerInitial,
    TimerCurrent,
    TimerDivide,
    SelfIpi,
}

impl Register {
    /// The register behind `msr`, or `None` for every MSR an x2APIC guest must get #GP for: numbers
    /// outside 800h-8FFh, the holes of the map (including 80Eh, the DFR, and 831h, the xAPIC ICR
    /// high half, which x2APIC dropped), 82Fh (CMCI: Intel-only, and our version register's max LVT
    /// of 5 says it is absent; Linux touches it only when max LVT >= 6), and 840h-8FFh (AMD's
    /// extended APIC space, absent because version bit 31 is clear).
    pub const fn from_msr(msr: u32) -> Option<Register> {
        Some(match msr {
            MSR_ID => Register::Id,
            MSR_VERSION => Register::Version,
            MSR_TPR => Register::Tpr,
            MSR_PPR => Register::Ppr,
            MSR_EOI => Register::Eoi,
            MSR_LDR => Register::Ldr,
            MSR_SVR => Register::Svr,
            _ if msr >= MSR_ISR0 && msr < MSR_ISR0 + VECTOR_WORDS => {
                Register::Isr((msr - MSR_ISR0) as usize)
            }
            _ if msr >= MSR_TMR0 && msr < MSR_TMR0 + VECTOR_WORDS => {
                Register::Tmr((msr - MSR_TMR0) as usize)
            }
            _ if msr >= MSR_IRR0 && msr < MSR_IRR0 + VECTOR_WORDS => {
                Register::Irr((msr - MSR_IRR0) as usize)
            }
            MSR_ESR => Register::Esr,
            MSR_ICR => Register::Icr,
            MSR_LVT_TIMER => Register::Lvt(Lvt::Timer),
            MSR_LVT_THERMAL => Register::Lvt(Lvt::Thermal),
            MSR_LVT_PERF => Register::Lvt(Lvt::Perf),
            MSR_LVT_LINT0 => Register::Lvt(Lvt::Lint0),
            MSR_LVT_LINT1 => Register::Lvt(Lvt::Lint1),
            MSR_LVT_ERROR => Register::Lvt(Lvt::Error),
            MSR_TIMER_INITIAL => Register::TimerInitial,
            MSR_TIMER_CURRENT => Register::TimerCurrent,
            MSR_TIMER_DIVIDE => Register::TimerDivide,
            MSR_SELF_IPI => Register::SelfIpi,
            _ => return None,
        })
    }
}

/// The version register we present (APM §16.3, "APIC Version Register"; Intel SDM §10.4.8):
/// - bits 7:0 = 14h: an integrated APIC (1xh) of the xAPIC generation; Linux's `APIC_XAPIC()` is
///   `version >= 0x14`, and 14h is what KVM and QEMU present, so the guest takes its common path;
/// - bits 23:16 = 5: the highest LVT index, i.e. six LVTs (timer, thermal, perf, LINT0, LINT1,
///   error). No CMCI: it is Intel-only and would make it 6;
/// - bit 24 = 0: no directed-EOI (EOI-broadcast suppression), so SVR bit 12 stays reserved and
///   every level-triggered EOI reaches the IOAPIC;
/// - bit 31 = 0: no AMD extended APIC register space (we emulate none of it).
pub const VERSION: u32 = 0x0005_0014;

/// Spurious-interrupt vector register (APM §16.4 "Spurious Interrupts"; SDM §10.9).
pub mod svr {
    pub const VECTOR: u32 = 0xff;
    /// APIC software enable.
    pub const ENABLE: u32 = 1 << 8;
    /// Focus-processor checking disable (AMD's "FCC"; Linux sets it).
    pub const FOCUS_DISABLE: u32 = 1 << 9;
    pub const WRITABLE: u32 = VECTOR | ENABLE | FOCUS_DISABLE;
    /// Value after reset and INIT: vector FFh, software-disabled.
    pub const RESET: u32 = 0xff;
}

/// LVT entry fields (APM §16.4 "Local Vector Table"; SDM Figure 10-8).
pub mod lvt {
    pub const VECTOR: u32 = 0xff;
    pub const DELIVERY_MODE: u32 = 0b111 << 8;
    /// Read-only; always 0 here because delivery is instantaneous.
    pub const DELIVERY_STATUS: u32 = 1 << 12;
    pub const POLARITY_LOW: u32 = 1 << 13;
    /// Read-only (LINT0/1 only).
    pub const REMOTE_IRR: u32 = 1 << 14;
    pub const TRIGGER_LEVEL: u32 = 1 << 15;
    pub const MASK: u32 = 1 << 16;
    /// Timer mode bit 17: 0 one-shot, 1 periodic. Bit 18 (TSC-deadline) is reserved for us: we do
    /// not advertise TSC-deadline in CPUID, so a guest setting it gets #GP like on such hardware.
    pub const TIMER_PERIODIC: u32 = 1 << 17;
    /// Value after reset: masked, everything else 0.
    pub const RESET: u32 = MASK;
}

/// Bits a guest may write in each LVT entry, indexed by [`Lvt`].
pub const LVT_WRITABLE: [u32; LVT_COUNT] = [
    lvt::VECTOR | lvt::MASK | lvt::TIMER_PERIODIC,
    lvt::VECTOR | lvt::DELIVERY_MODE | lvt::MASK,
    lvt::VECTOR | lvt::DELIVERY_MODE | lvt::MASK,
    lvt::VECTOR | lvt::DELIVERY_MODE | lvt::POLARITY_LOW | lvt::TRIGGER_LEVEL | lvt::MASK,
    lvt::VECTOR | lvt::DELIVERY_MODE | lvt::POLARITY_LOW | lvt::TRIGGER_LEVEL | lvt::MASK,
    lvt::VECTOR | lvt::MASK,
];

/// Read-only bits a guest may write back unchanged (they are ignored, not reserved).
pub const LVT_READ_ONLY: [u32; LVT_COUNT] = [
    lvt::DELIVERY_STATUS,
    lvt::DELIVERY_STATUS,
    lvt::DELIVERY_STATUS,
    lvt::DELIVERY_STATUS | lvt::REMOTE_IRR,
    lvt::DELIVERY_STATUS | lvt::REMOTE_IRR,
    lvt::DELIVERY_STATUS,
];

/// Error status register bits (SDM §10.5.3, Figure 10-14 x2APIC form).
pub mod esr {
    pub const SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
    pub const RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
}

/// Timer divide configuration: the divisor code is bits 3, 1, 0 (APM §16.4 "APIC Timer").
pub const TIMER_DIVIDE_WRITABLE: u32 = 0b1011;

/// The physical and logical broadcast destination in x2APIC mode.
pub const BROADCAST: u32 = 0xffff_ffff;

/// The x2APIC logical destination register, fixed by the APIC id (APM §16.11; SDM §10.12.10.2):
/// cluster id = `id[19:4]` in bits 31:16, and one bit `1 << id[3:0]` in bits 15:0.
pub const fn x2apic_ldr(apic_id: u32) -> u32 {
    (((apic_id >> 4) & 0xffff) << 16) | (1 << (apic_id & 0xf))
}

/// Whether a message with x2APIC destination `dest` in `mode` reaches the APIC with `apic_id`
/// (destination field only; shorthands are the router's). FFFF_FFFFh is the broadcast in both
/// modes; a logical destination names one cluster and a bitmap of up to 16 members in it.
pub const fn x2apic_dest_matches(apic_id: u32, dest: u32, mode: DestMode) -> bool {
    if dest == BROADCAST {
        return true;
    }
    match mode {
        DestMode::Physical => dest == apic_id,
        DestMode::Logical => {
            let ldr = x2apic_ldr(apic_id);
            (dest >> 16) == (ldr >> 16) && (dest & ldr & 0xffff) != 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_map_has_the_x2apic_holes() {
        assert_eq!(Register::from_msr(0x802), Some(Register::Id));
        assert_eq!(Register::from_msr(0x817), Some(Register::Isr(7)));
        assert_eq!(Register::from_msr(0x818), Some(Register::Tmr(0)));
        assert_eq!(Register::from_msr(0x827), Some(Register::Irr(7)));
        assert_eq!(Register::from_msr(0x836), Some(Register::Lvt(Lvt::Lint1)));
        for hole in [
            0x800, 0x801, 0x804, 0x809, 0x80c, 0x80e, 0x82f, 0x831, 0x83a, 0x83d, 0x840, 0x8ff,
            0x7ff, 0x900,
        ] {
            assert_eq!(Register::from_msr(hole), None, "{hole:#x}");
        }
    }

    #[test]
    fn msr_numbers_are_the_x2apic_map() {
        assert_eq!(
            [MSR_ID, MSR_SVR, MSR_ISR0, MSR_TMR0, MSR_IRR0, MSR_ESR, MSR_ICR],
            [0x802, 0x80f, 0x810, 0x818, 0x820, 0x828, 0x830]
        );
        assert_eq!(
            [MSR_LVT_PERF, MSR_TIMER_DIVIDE, MSR_SELF_IPI],
            [0x834, 0x83e, 0x83f]
        );
    }

    #[test]
    fn ldr_of_0x23_is_cluster_2_bit_3() {
        assert_eq!(x2apic_ldr(0x23), 0x0002_0008);
        assert_eq!(x2apic_ldr(0), 0x0000_0001);
        assert_eq!(x2apic_ldr(0xf), 0x0000_8000);
        // Only id[19:4] fits the cluster field.
        assert_eq!(x2apic_ldr(0x0010_0001), 0x0000_0002);
    }

    #[test]
    fn destination_matching() {
        assert!(x2apic_dest_matches(3, 3, DestMode::Physical));
        assert!(!x2apic_dest_matches(3, 4, DestMode::Physical));
        assert!(x2apic_dest_matches(3, BROADCAST, DestMode::Physical));
        // id 0x23: cluster 2, bit 3.
        assert!(x2apic_dest_matches(0x23, 0x0002_0008, DestMode::Logical));
        assert!(x2apic_dest_matches(0x23, 0x0002_ffff, DestMode::Logical));
        assert!(!x2apic_dest_matches(0x23, 0x0001_0008, DestMode::Logical));
        assert!(!x2apic_dest_matches(0x23, 0x0002_0004, DestMode::Logical));
        assert!(x2apic_dest_matches(0x23, BROADCAST, DestMode::Logical));
    }
}
