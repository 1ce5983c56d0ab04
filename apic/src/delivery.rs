//! Fields that every APIC-bus interrupt message carries, shared by the IOAPIC redirection entry,
//! the local APIC's LVT entries and its interrupt command register (AMD APM vol. 2 §16.4 "Local
//! Interrupts", §16.5 "Interprocessor Interrupts"; Intel 82093AA datasheet §3.2.4).

/// The 3-bit delivery-mode field (bits 10:8 of an ICR, LVT or redirection entry).
///
/// The encoding is the same everywhere, but not every value is legal everywhere: `StartUp` exists
/// only in the ICR, `ExtInt` only in LVT LINT0/1 and redirection entries, and `Reserved` (011b,
/// the 82489DX "remote read") nowhere. Decoding is total so guest-written values never fail to
/// decode; whoever acts on a message refuses the modes that are illegal for its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Reserved,
    Nmi,
    Init,
    StartUp,
    ExtInt,
}

impl DeliveryMode {
    /// Decodes the field from bits 10:8 of `reg`.
    pub const fn from_reg(reg: u64) -> Self {
        match (reg >> 8) & 0b111 {
            0b000 => DeliveryMode::Fixed,
            0b001 => DeliveryMode::LowestPriority,
            0b010 => DeliveryMode::Smi,
            0b011 => DeliveryMode::Reserved,
            0b100 => DeliveryMode::Nmi,
            0b101 => DeliveryMode::Init,
            0b110 => DeliveryMode::StartUp,
            _ => DeliveryMode::ExtInt,
        }
    }

    /// The field's value placed at bits 10:8.
    pub const fn to_reg(self) -> u64 {
        let bits: u64 = match self {
            DeliveryMode::Fixed => 0b000,
            DeliveryMode::LowestPriority => 0b001,
            DeliveryMode::Smi => 0b010,
            DeliveryMode::Reserved => 0b011,
            DeliveryMode::Nmi => 0b100,
            DeliveryMode::Init => 0b101,
            DeliveryMode::StartUp => 0b110,
            DeliveryMode::ExtInt => 0b111,
        };
        bits << 8
    }

    /// Fixed and lowest-priority interrupts are the ones that go through IRR/ISR and carry a
    /// vector that must be 16 or above.
    pub const fn uses_vector(self) -> bool {
        matches!(self, DeliveryMode::Fixed | DeliveryMode::LowestPriority)
    }
}

/// Edge or level trigger (bit 15 of an ICR, LINT LVT or redirection entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerMode {
    Edge,
    Level,
}

/// Physical or logical destination (bit 11 of an ICR or redirection entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestMode {
    Physical,
    Logical,
}

/// The lowest vector a fixed interrupt may use: 0-15 are exceptions, and an APIC that sends or
/// receives one of them records an illegal-vector error in its ESR instead (Intel SDM vol. 3A
/// §10.5.3 "Error Handling"; AMD APM vol. 2 §16.4, "APIC Error Interrupts").
pub const FIRST_LEGAL_VECTOR: u8 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_round_trips_every_encoding() {
        for bits in 0..8u64 {
            let mode = DeliveryMode::from_reg(bits << 8);
            assert_eq!(mode.to_reg(), bits << 8);
        }
    }

    #[test]
    fn delivery_mode_reads_only_bits_10_to_8() {
        // 0x4500: INIT (101b) with level-assert and vector 0; 0x4608: STARTUP, vector 8.
        assert_eq!(DeliveryMode::from_reg(0x4500), DeliveryMode::Init);
        assert_eq!(DeliveryMode::from_reg(0x4608), DeliveryMode::StartUp);
        assert_eq!(DeliveryMode::from_reg(0x0700), DeliveryMode::ExtInt);
        assert_eq!(DeliveryMode::from_reg(0x0400), DeliveryMode::Nmi);
        assert_eq!(DeliveryMode::from_reg(0xffff_f8ff), DeliveryMode::Fixed);
    }
}
