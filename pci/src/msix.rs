//! MSI-X (PCIe 4.0 §7.7.2; PCI 3.0 §6.8.2): the capability structure in configuration space and
//! the table entries that live in a memory BAR.

use core::mem::offset_of;

use super::{Bdf, ConfigAccess};

/// MSI-X capability structure (PCIe 4.0 §7.7.2).
#[repr(C)]
pub struct MsixCapability {
    /// 0x00: capability id 0x11
    pub cap_id: u8,
    /// 0x01
    pub next: u8,
    /// 0x02: table size − 1 in 10:0, Function Mask 14, MSI-X Enable 15
    pub message_control: u16,
    /// 0x04: Table BIR 2:0, Table Offset 31:3 (8-byte aligned)
    pub table: u32,
    /// 0x08: PBA BIR 2:0, PBA Offset 31:3
    pub pba: u32,
}

const _: () = assert!(size_of::<MsixCapability>() == 12);
const _: () = assert!(offset_of!(MsixCapability, message_control) == 2);
const _: () = assert!(offset_of!(MsixCapability, table) == 4);
const _: () = assert!(offset_of!(MsixCapability, pba) == 8);

/// Register offsets within the capability.
pub mod reg {
    use super::MsixCapability;
    use core::mem::offset_of;

    /// Capability id, next pointer (low half) and Message Control (high half).
    pub const HEADER: u16 = offset_of!(MsixCapability, cap_id) as u16;
    pub const MESSAGE_CONTROL: u16 = offset_of!(MsixCapability, message_control) as u16;
    pub const TABLE: u16 = offset_of!(MsixCapability, table) as u16;
    pub const PBA: u16 = offset_of!(MsixCapability, pba) as u16;
}

/// Message Control: table size − 1.
pub const CONTROL_TABLE_SIZE_MASK: u16 = 0x07FF;
/// Message Control: all vectors masked regardless of their own mask bits.
pub const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Message Control: MSI-X in use (INTx and MSI off).
pub const CONTROL_ENABLE: u16 = 1 << 15;
/// BIR field of the table and PBA registers.
pub const BIR_MASK: u32 = 0x7;

/// Where a structure lives: BAR `bir`, `offset` bytes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarOffset {
    pub bir: u8,
    pub offset: u32,
}

impl BarOffset {
    pub const fn decode(register: u32) -> BarOffset {
        BarOffset {
            bir: (register & BIR_MASK) as u8,
            offset: register & !BIR_MASK,
        }
    }

    pub const fn encode(self) -> u32 {
        self.offset & !BIR_MASK | self.bir as u32 & BIR_MASK
    }
}

/// The decoded capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixInfo {
    /// Number of table entries (1-2048).
    pub table_size: u16,
    pub table: BarOffset,
    pub pba: BarOffset,
    pub enabled: bool,
    pub function_mask: bool,
}

impl MsixInfo {
    pub const fn decode(message_control: u16, table: u32, pba: u32) -> MsixInfo {
        MsixInfo {
            table_size: (message_control & CONTROL_TABLE_SIZE_MASK) + 1,
            table: BarOffset::decode(table),
            pba: BarOffset::decode(pba),
            enabled: message_control & CONTROL_ENABLE != 0,
            function_mask: message_control & CONTROL_FUNCTION_MASK != 0,
        }
    }

    /// Reads the capability at `cap` of `bdf`.
    pub fn read(cfg: &impl ConfigAccess, bdf: Bdf, cap: u16) -> MsixInfo {
        MsixInfo::decode(
            cfg.read16(bdf, cap + reg::MESSAGE_CONTROL),
            cfg.read32(bdf, cap + reg::TABLE),
            cfg.read32(bdf, cap + reg::PBA),
        )
    }

    /// Bytes of the table.
    pub const fn table_bytes(&self) -> u32 {
        self.table_size as u32 * MSIX_ENTRY_SIZE as u32
    }
}

/// Sets MSI-X Enable and Function Mask of the capability at `cap`, keeping the rest of the
/// dword (the capability id and next pointer are read-only).
pub fn write_msix_control(
    cfg: &mut impl ConfigAccess,
    bdf: Bdf,
    cap: u16,
    enable: bool,
    function_mask: bool,
) {
    let dword = cfg.read32(bdf, cap + reg::HEADER);
    let mut control = (dword >> 16) as u16 & !(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
    if enable {
        control |= CONTROL_ENABLE;
    }
    if function_mask {
        control |= CONTROL_FUNCTION_MASK;
    }
    cfg.write32(
        bdf,
        cap + reg::HEADER,
        dword & 0xFFFF | u32::from(control) << 16,
    );
}

/// One MSI-X table entry (PCIe 4.0 §7.7.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixTableEntry {
    /// 0x0: Message Address, bits 1:0 zero
    pub address_low: u32,
    /// 0x4: Message Upper Address
    pub address_high: u32,
    /// 0x8: Message Data
    pub data: u32,
    /// 0xC: bit 0 Mask; 31:16 Steering Tag in newer revisions (not used here)
    pub vector_control: u32,
}

pub const MSIX_ENTRY_SIZE: usize = 16;
const _: () = assert!(size_of::<MsixTableEntry>() == MSIX_ENTRY_SIZE);
const _: () = assert!(offset_of!(MsixTableEntry, address_high) == 0x4);
const _: () = assert!(offset_of!(MsixTableEntry, data) == 0x8);
const _: () = assert!(offset_of!(MsixTableEntry, vector_control) == 0xC);

/// Vector Control bit 0.
pub const VECTOR_CONTROL_MASK: u32 = 1;

impl MsixTableEntry {
    /// The state at reset: everything zero, masked (PCIe 4.0 §7.7.2).
    pub const RESET: MsixTableEntry = MsixTableEntry {
        address_low: 0,
        address_high: 0,
        data: 0,
        vector_control: VECTOR_CONTROL_MASK,
    };

    pub const fn address(&self) -> u64 {
        (self.address_high as u64) << 32 | (self.address_low & !3) as u64
    }

    pub const fn masked(&self) -> bool {
        self.vector_control & VECTOR_CONTROL_MASK != 0
    }

    /// The entry's four dwords in table order, for writing a physical table.
    pub const fn dwords(&self) -> [u32; 4] {
        [
            self.address_low,
            self.address_high,
            self.data,
            self.vector_control,
        ]
    }

    /// Dword `i` (0-3) of the entry.
    pub const fn dword(&self, i: usize) -> u32 {
        match i {
            0 => self.address_low,
            1 => self.address_high,
            2 => self.data,
            _ => self.vector_control,
        }
    }
}
