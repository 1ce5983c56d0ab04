//! x86 MSI address/data (Intel SDM vol. 3A, "Message Signalled Interrupts" in the APIC
//! chapter; AMD processors use the same format), and what a device's MSI/MSI-X entry must hold
//! when the AMD IOMMU remaps its interrupts (spec §2.2.5 "Interrupt Remapping Tables").
//!
//! # Format
//! - Address: bits 31:20 = FEEh, 19:12 destination APIC id (8 bits), 11:5 extended destination
//!   id (a hypervisor convention for ids up to 32767; not architectural), 3 RH (redirection
//!   hint), 2 DM (0 physical, 1 logical). The upper 32 bits are 0.
//! - Data: 7:0 vector, 10:8 delivery mode (000 fixed, 001 lowest priority, 010 SMI, 100 NMI,
//!   101 INIT, 111 ExtINT), 14 level (assert), 15 trigger mode (0 edge, 1 level).
//!
//! # With AMD-Vi interrupt remapping
//! The IOMMU intercepts the device's write to FEEx_xxxxh and looks at the data only: data\[10:8\]
//! is the message type. Fixed (000b) and arbitrated (001b) messages go through the DTE's IntCtl
//! and, when it says remap, are replaced by interrupt remapping table entry number
//! **data\[10:0\]**; vector, destination, destination mode and delivery mode all come from that
//! entry. The address's destination and DM, and the data's vector, are ignored. (Other message
//! types use the DTE's pass bits; this driver aborts them.)
//!
//! Because data\[10:8\] must stay 000b/001b for the message to be remapped, only entries 0..=511
//! are reachable (bit 8 set reads as "arbitrated", which is still remapped). Entries 512..2047
//! need the IOMMU's 2K-entry mode (EFR2 NumIntRemapSup, address DM = 1), which neither this
//! driver nor QEMU uses; Linux uses 512-entry tables for the same reason.
//!
//! So with remapping on, the kernel writes into the device's MSI-X entry
//! [`MsiMessage::remappable`]`(index)`: address FEE0_0000h (upper 0), data = index; vector
//! control is the guest's mask bit. The guest's own address/data (trapped) are decoded with
//! [`MsiMessage`] accessors and turned into the IRTE.

/// Bits 31:20 of every interrupt address.
pub const MSI_ADDRESS_BASE: u32 = 0xFEE0_0000;
/// The largest interrupt remapping table index an MSI can select (data\[10:8\] ≤ 001b).
pub const MAX_REMAP_INDEX: u16 = 511;

/// Delivery mode, MSI data 10:8 (the IOMMU calls it MT, message type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 000b.
    Fixed,
    /// 001b: lowest priority ("arbitrated" in the IOMMU spec).
    LowestPriority,
    /// 010b.
    Smi,
    /// 100b.
    Nmi,
    /// 101b.
    Init,
    /// 111b.
    ExtInt,
    /// 011b, 110b.
    Reserved(u8),
}

impl DeliveryMode {
    /// The 3-bit encoding.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Fixed => 0,
            Self::LowestPriority => 1,
            Self::Smi => 2,
            Self::Nmi => 4,
            Self::Init => 5,
            Self::ExtInt => 7,
            Self::Reserved(b) => b & 7,
        }
    }

    /// Decode a 3-bit value.
    pub const fn from_bits(b: u8) -> Self {
        match b & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            7 => Self::ExtInt,
            r => Self::Reserved(r),
        }
    }
}

/// One MSI message: the address and data a device writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address (64 bits; the upper half is 0 for interrupts).
    pub address: u64,
    /// Message data (the low 16 bits are defined).
    pub data: u32,
}

impl MsiMessage {
    /// An edge-triggered message without remapping.
    pub const fn compose(
        dest: u8,
        vector: u8,
        mode: DeliveryMode,
        logical: bool,
        redirection_hint: bool,
    ) -> Self {
        let address = MSI_ADDRESS_BASE as u64
            | (dest as u64) << 12
            | (redirection_hint as u64) << 3
            | (logical as u64) << 2;
        Self {
            address,
            data: vector as u32 | (mode.bits() as u32) << 8,
        }
    }

    /// A fixed, physical-destination, edge-triggered message.
    pub const fn fixed(dest: u8, vector: u8) -> Self {
        Self::compose(dest, vector, DeliveryMode::Fixed, false, false)
    }

    /// What a device must send when its interrupts are remapped through table entry `index`
    /// (≤ [`MAX_REMAP_INDEX`]): address FEE0_0000h, data = index.
    pub const fn remappable(index: u16) -> Option<Self> {
        if index > MAX_REMAP_INDEX {
            return None;
        }
        Some(Self {
            address: MSI_ADDRESS_BASE as u64,
            data: index as u32,
        })
    }

    /// Whether the address is in the interrupt range FEE0_0000h..=FEEF_FFFFh.
    pub const fn is_interrupt_address(&self) -> bool {
        self.address >> 20 == 0xFEE
    }

    /// Destination APIC id, address 19:12.
    pub const fn dest_id(&self) -> u8 {
        (self.address >> 12) as u8
    }

    /// Extended destination id, address 11:5 (destination bits 14:8 by hypervisor convention).
    pub const fn ext_dest_id(&self) -> u8 {
        ((self.address >> 5) & 0x7F) as u8
    }

    /// The destination with the extended id folded in (15 bits).
    pub const fn dest_id_extended(&self) -> u32 {
        self.dest_id() as u32 | (self.ext_dest_id() as u32) << 8
    }

    /// DM, address bit 2: logical destination.
    pub const fn dest_logical(&self) -> bool {
        self.address & (1 << 2) != 0
    }

    /// RH, address bit 3.
    pub const fn redirection_hint(&self) -> bool {
        self.address & (1 << 3) != 0
    }

    /// Vector, data 7:0.
    pub const fn vector(&self) -> u8 {
        self.data as u8
    }

    /// Delivery mode, data 10:8.
    pub const fn delivery_mode(&self) -> DeliveryMode {
        DeliveryMode::from_bits((self.data >> 8) as u8)
    }

    /// Level (assert), data bit 14.
    pub const fn level_assert(&self) -> bool {
        self.data & (1 << 14) != 0
    }

    /// Trigger mode, data bit 15: level-triggered.
    pub const fn level_triggered(&self) -> bool {
        self.data & (1 << 15) != 0
    }

    /// The remapping table entry the IOMMU uses for this message when the DTE's IntCtl says
    /// remap: data\[10:0\], for fixed and arbitrated message types only.
    pub const fn irte_index(&self) -> Option<u16> {
        match self.delivery_mode() {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => Some((self.data & 0x7FF) as u16),
            _ => None,
        }
    }

    /// Low 32 bits of the address (MSI-X entry dword 0).
    pub const fn address_lo(&self) -> u32 {
        self.address as u32
    }

    /// High 32 bits of the address (MSI-X entry dword 1).
    pub const fn address_hi(&self) -> u32 {
        (self.address >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_and_decode() {
        // Dest 3, vector 0x41, fixed, physical: address 0xFEE0_3000, data 0x41.
        let m = MsiMessage::fixed(3, 0x41);
        assert_eq!(m.address, 0xFEE0_3000);
        assert_eq!(m.data, 0x41);
        // Logical, RH, lowest priority, dest 0xFF: 0xFEEF_F00C, data 0x1EC.
        let l = MsiMessage::compose(0xFF, 0xEC, DeliveryMode::LowestPriority, true, true);
        assert_eq!(l.address, 0xFEEF_F00C);
        assert_eq!(l.data, 0x1EC);
        assert!(l.dest_logical() && l.redirection_hint());
        assert_eq!(l.dest_id(), 0xFF);
        assert_eq!(l.vector(), 0xEC);
        assert_eq!(l.delivery_mode(), DeliveryMode::LowestPriority);
        let nmi = MsiMessage::compose(0, 2, DeliveryMode::Nmi, false, false);
        assert_eq!(nmi.data, 0x402);
        assert_eq!(nmi.irte_index(), None);
    }

    #[test]
    fn decode_guest_message() {
        // A Linux guest's level-less edge MSI: 0xFEE0_1000 / 0x4025 (level assert set).
        let m = MsiMessage {
            address: 0xFEE0_1000,
            data: 0x4025,
        };
        assert!(m.is_interrupt_address());
        assert_eq!(m.dest_id(), 1);
        assert_eq!(m.vector(), 0x25);
        assert!(m.level_assert() && !m.level_triggered());
        assert_eq!(m.delivery_mode(), DeliveryMode::Fixed);
        // Extended destination id 0x12 in address 11:5 -> destination 0x1201.
        let e = MsiMessage {
            address: 0xFEE0_1000 | (0x12 << 5),
            data: 0x8030,
        };
        assert_eq!(e.ext_dest_id(), 0x12);
        assert_eq!(e.dest_id_extended(), 0x1201);
        assert!(e.level_triggered());
        assert!(!MsiMessage {
            address: 0x1_FEE0_0000,
            data: 0
        }
        .is_interrupt_address());
    }

    #[test]
    fn remappable_messages() {
        let r = MsiMessage::remappable(0x1A5).unwrap();
        assert_eq!(
            (r.address_lo(), r.address_hi(), r.data),
            (0xFEE0_0000, 0, 0x1A5)
        );
        // Index 0x1A5 has data[10:8] = 001b (arbitrated): still remapped, through entry 0x1A5.
        assert_eq!(r.irte_index(), Some(0x1A5));
        assert_eq!(MsiMessage::remappable(511).unwrap().irte_index(), Some(511));
        assert_eq!(MsiMessage::remappable(512), None);
        // An index of 0x205 would read as SMI (010b): not remapped.
        let smi = MsiMessage {
            address: 0xFEE0_0000,
            data: 0x205,
        };
        assert_eq!(smi.irte_index(), None);
        assert_eq!(DeliveryMode::from_bits(6), DeliveryMode::Reserved(6));
        assert_eq!(DeliveryMode::ExtInt.bits(), 7);
    }
}
