//! The x2APIC interrupt command register: its layout and the decoded IPI (AMD APM vol. 2 §16.5
//! "Interprocessor Interrupts" and §16.11 "x2APIC": one 64-bit MSR with the destination in 63:32;
//! Intel SDM vol. 3A Figure 10-28). Used by the emulated APIC's ICR write, by the direct mode,
//! which traps guest ICR writes, checks and translates them, and re-issues them on the hardware,
//! and by AVIC's incomplete-IPI exit (whose ICR may also be in the xAPIC form, destination in
//! bits 63:56).

use super::delivery::{DeliveryMode, DestMode, TriggerMode};

/// The 64-bit x2APIC interrupt command register (APM §16.5 and §16.11; SDM Figure 10-28).
pub mod bits {
    pub const VECTOR: u64 = 0xff;
    pub const DEST_LOGICAL: u64 = 1 << 11;
    /// xAPIC's delivery status; x2APIC has none. Accepted and dropped so a value read back from
    /// an xAPIC-minded guest's ICR never faults.
    pub const DELIVERY_STATUS: u64 = 1 << 12;
    pub const LEVEL_ASSERT: u64 = 1 << 14;
    pub const TRIGGER_LEVEL: u64 = 1 << 15;
    pub const SHORTHAND_SHIFT: u32 = 18;
    pub const SHORTHAND: u64 = 0b11 << SHORTHAND_SHIFT;
    pub const DEST_SHIFT: u32 = 32;
    /// xAPIC: the destination is the high byte of ICR2 (bits 63:56 of the pair).
    pub const XAPIC_DEST_SHIFT: u32 = 56;
    /// Vector, delivery mode, destination mode, level, trigger, shorthand, destination; bits 13,
    /// 16-17 and 20-31 are reserved.
    pub const WRITABLE: u64 = 0xffff_ffff_000c_cfff;
}

/// The destination shorthand of an IPI (ICR bits 19:18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// No shorthand: the destination field selects the targets.
    Destination,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// A decoded ICR write, for the caller to route (it maps guest APIC ids to vCPUs and refuses
/// targets outside the guest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    pub vector: u8,
    pub delivery_mode: DeliveryMode,
    pub dest_mode: DestMode,
    pub shorthand: Shorthand,
    /// x2APIC destination (ICR 63:32): an APIC id, or a cluster/bitmap in logical mode.
    pub dest: u32,
    /// Level: assert (true) or de-assert; only an INIT de-assert uses false.
    pub level: bool,
    pub trigger: TriggerMode,
}

impl Ipi {
    /// The INIT level de-assert that Linux still sends after INIT; it resets nothing on any
    /// processor since the Pentium 4 and must be ignored by the router.
    pub fn is_init_deassert(&self) -> bool {
        self.delivery_mode == DeliveryMode::Init
            && !self.level
            && self.trigger == TriggerMode::Level
    }

    /// The ICR value that sends this IPI (for the direct mode, which re-issues guest IPIs on the
    /// physical APIC with the destination translated).
    pub fn to_icr(&self) -> u64 {
        let shorthand: u64 = match self.shorthand {
            Shorthand::Destination => 0,
            Shorthand::SelfOnly => 1,
            Shorthand::AllIncludingSelf => 2,
            Shorthand::AllExcludingSelf => 3,
        };
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        u64::from(self.vector)
            | self.delivery_mode.to_reg()
            | flag(self.dest_mode == DestMode::Logical, bits::DEST_LOGICAL)
            | flag(self.level, bits::LEVEL_ASSERT)
            | flag(self.trigger == TriggerMode::Level, bits::TRIGGER_LEVEL)
            | (shorthand << bits::SHORTHAND_SHIFT)
            | (u64::from(self.dest) << bits::DEST_SHIFT)
    }
}

/// A 64-bit ICR value (x2APIC: the ICR MSR; xAPIC: ICR2:ICR), with field accessors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Icr(pub u64);

impl Icr {
    /// Vector, bits 7:0.
    pub const fn vector(self) -> u8 {
        (self.0 & bits::VECTOR) as u8
    }

    /// Delivery mode, bits 10:8.
    pub const fn delivery_mode(self) -> DeliveryMode {
        DeliveryMode::from_reg(self.0)
    }

    /// Logical destination mode, bit 11.
    pub const fn logical(self) -> bool {
        self.0 & bits::DEST_LOGICAL != 0
    }

    /// Level assert (bit 14); only an INIT de-assert clears it.
    pub const fn level_assert(self) -> bool {
        self.0 & bits::LEVEL_ASSERT != 0
    }

    /// Level-triggered, bit 15.
    pub const fn level_triggered(self) -> bool {
        self.0 & bits::TRIGGER_LEVEL != 0
    }

    /// Destination shorthand, bits 19:18.
    pub const fn shorthand(self) -> Shorthand {
        match (self.0 & bits::SHORTHAND) >> bits::SHORTHAND_SHIFT {
            0 => Shorthand::Destination,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        }
    }

    /// Destination: x2APIC bits 63:32, xAPIC bits 63:56.
    pub const fn destination(self, x2apic: bool) -> u32 {
        if x2apic {
            (self.0 >> bits::DEST_SHIFT) as u32
        } else {
            (self.0 >> bits::XAPIC_DEST_SHIFT) as u32
        }
    }
}

/// Decodes an x2APIC ICR value. Total: reserved bits are ignored here; the emulated ICR write
/// checks them first.
pub const fn decode_icr(value: u64) -> Ipi {
    let icr = Icr(value);
    Ipi {
        vector: icr.vector(),
        delivery_mode: icr.delivery_mode(),
        dest_mode: if icr.logical() {
            DestMode::Logical
        } else {
            DestMode::Physical
        },
        shorthand: icr.shorthand(),
        dest: icr.destination(true),
        level: icr.level_assert(),
        trigger: if icr.level_triggered() {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icr_init_assert() {
        let ipi = decode_icr(0x0000_0003_0000_4500);
        assert_eq!(ipi.delivery_mode, DeliveryMode::Init);
        assert_eq!(ipi.vector, 0);
        assert!(ipi.level);
        assert_eq!(ipi.trigger, TriggerMode::Edge);
        assert_eq!(ipi.dest_mode, DestMode::Physical);
        assert_eq!(ipi.shorthand, Shorthand::Destination);
        assert_eq!(ipi.dest, 3);
        assert!(!ipi.is_init_deassert());
    }

    #[test]
    fn icr_init_deassert_is_recognised() {
        // Linux: APIC_INT_LEVELTRIG | APIC_DM_INIT.
        assert!(decode_icr(0x8500).is_init_deassert());
    }

    #[test]
    fn icr_startup_vector_8() {
        let ipi = decode_icr(0x4608);
        assert_eq!(ipi.delivery_mode, DeliveryMode::StartUp);
        assert_eq!(ipi.vector, 8);
        assert_eq!(ipi.dest, 0);
    }

    #[test]
    fn icr_fixed_to_apic_id_3() {
        let ipi = decode_icr((3u64 << 32) | 0xfd);
        assert_eq!(
            ipi,
            Ipi {
                vector: 0xfd,
                delivery_mode: DeliveryMode::Fixed,
                dest_mode: DestMode::Physical,
                shorthand: Shorthand::Destination,
                dest: 3,
                level: false,
                trigger: TriggerMode::Edge,
            }
        );
    }

    #[test]
    fn icr_shorthands_and_logical_mode() {
        assert_eq!(decode_icr(0x4_0000).shorthand, Shorthand::SelfOnly);
        assert_eq!(decode_icr(0x8_0000).shorthand, Shorthand::AllIncludingSelf);
        assert_eq!(decode_icr(0xc_0000).shorthand, Shorthand::AllExcludingSelf);
        assert_eq!(decode_icr(0x800).dest_mode, DestMode::Logical);
    }

    #[test]
    fn icr_xapic_destination_is_the_high_byte() {
        let icr = Icr((2u64 << 56) | 0x40ec);
        assert_eq!(icr.destination(false), 2);
        assert_eq!(icr.destination(true), 0x0200_0000);
        assert_eq!(icr.vector(), 0xec);
        assert!(icr.level_assert() && !icr.level_triggered() && !icr.logical());
    }

    #[test]
    fn icr_encode_round_trips_writable_bits() {
        for value in [
            0x4500u64,
            0x4608,
            0x0000_0003_0000_00fd,
            0xffff_ffff_000c_cfff,
            0x0002_0008_0000_0831,
        ] {
            assert_eq!(
                decode_icr(value).to_icr(),
                value & bits::WRITABLE,
                "{value:#x}"
            );
        }
    }
}
