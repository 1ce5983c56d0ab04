//! The type-0 configuration header (PCI Local Bus Specification 3.0 §6.1; PCIe 4.0
//! §7.5.1) and the identity of a function read from it.

use core::mem::offset_of;

use super::{Bdf, ConfigAccess};

/// Type-0 (endpoint) configuration header, the first 64 bytes of a function's configuration
/// space. Used for its layout: the register offsets below come from it.
#[repr(C)]
pub struct Type0Header {
    /// 0x00
    pub vendor_id: u16,
    /// 0x02
    pub device_id: u16,
    /// 0x04, [`Command`]
    pub command: u16,
    /// 0x06; bit 4 "Capabilities List" ([`STATUS_CAPABILITIES_LIST`])
    pub status: u16,
    /// 0x08
    pub revision_id: u8,
    /// 0x09, programming interface
    pub prog_if: u8,
    /// 0x0A
    pub subclass: u8,
    /// 0x0B
    pub base_class: u8,
    /// 0x0C
    pub cache_line_size: u8,
    /// 0x0D
    pub latency_timer: u8,
    /// 0x0E: layout in bits 6:0 (0 endpoint, 1 PCI-PCI bridge), multi-function in bit 7
    pub header_type: u8,
    /// 0x0F
    pub bist: u8,
    /// 0x10-0x27
    pub bar: [u32; 6],
    /// 0x28
    pub cardbus_cis: u32,
    /// 0x2C
    pub subsystem_vendor_id: u16,
    /// 0x2E
    pub subsystem_id: u16,
    /// 0x30
    pub expansion_rom: u32,
    /// 0x34, bits 1:0 reserved
    pub capabilities_pointer: u8,
    /// 0x35
    pub _reserved_35: [u8; 7],
    /// 0x3C
    pub interrupt_line: u8,
    /// 0x3D (0: no INTx pin)
    pub interrupt_pin: u8,
    /// 0x3E
    pub min_gnt: u8,
    /// 0x3F
    pub max_lat: u8,
}

const _: () = assert!(size_of::<Type0Header>() == 0x40);
const _: () = assert!(offset_of!(Type0Header, command) == 0x04);
const _: () = assert!(offset_of!(Type0Header, revision_id) == 0x08);
const _: () = assert!(offset_of!(Type0Header, header_type) == 0x0E);
const _: () = assert!(offset_of!(Type0Header, bar) == 0x10);
const _: () = assert!(offset_of!(Type0Header, subsystem_vendor_id) == 0x2C);
const _: () = assert!(offset_of!(Type0Header, capabilities_pointer) == 0x34);
const _: () = assert!(offset_of!(Type0Header, interrupt_line) == 0x3C);
// The guest-side host bridge names the same dwords; they must agree.
const _: () =
    assert!(devices::pci_host::header::COMMAND_STATUS as usize == offset_of!(Type0Header, command));
const _: () = assert!(
    devices::pci_host::header::INTERRUPT as usize == offset_of!(Type0Header, interrupt_line)
);

/// Vendor id (low half) and device id (high half).
pub const VENDOR_DEVICE: u16 = offset_of!(Type0Header, vendor_id) as u16;
/// Command (low half) and status (high half).
pub const COMMAND_STATUS: u16 = offset_of!(Type0Header, command) as u16;
/// Revision (byte 0) and class code (bytes 1-3: programming interface, subclass, base class).
pub const CLASS_REVISION: u16 = offset_of!(Type0Header, revision_id) as u16;
/// Cache line size, latency timer, header type, BIST.
pub const HEADER_TYPE_DWORD: u16 = offset_of!(Type0Header, cache_line_size) as u16;
/// BAR 0; BAR n is at `BAR0 + 4 * n`.
pub const BAR0: u16 = offset_of!(Type0Header, bar) as u16;
/// Subsystem vendor id (low half) and subsystem id (high half).
pub const SUBSYSTEM: u16 = offset_of!(Type0Header, subsystem_vendor_id) as u16;
pub const CAPABILITIES_POINTER: u16 = offset_of!(Type0Header, capabilities_pointer) as u16;
/// Interrupt line, interrupt pin, Min_Gnt, Max_Lat.
pub const INTERRUPT: u16 = offset_of!(Type0Header, interrupt_line) as u16;

/// Status register bit 4: the function has a capability list at [`CAPABILITIES_POINTER`].
pub const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;
/// Header type bit 7: the device implements functions 1-7 (PCI 3.0 §6.2.1).
pub const HEADER_MULTIFUNCTION: u8 = 0x80;

bitflags::bitflags! {
    /// Command register (PCI 3.0 §6.2.2; PCIe 4.0 §7.5.1.1.3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Command: u16 {
        /// Responds to I/O space accesses.
        const IO_SPACE = 1 << 0;
        /// Responds to memory space accesses (decodes its memory BARs).
        const MEMORY_SPACE = 1 << 1;
        /// May issue memory requests (DMA, MSI).
        const BUS_MASTER = 1 << 2;
        const PARITY_ERROR_RESPONSE = 1 << 6;
        const SERR_ENABLE = 1 << 8;
        /// INTx emulation disabled.
        const INTX_DISABLE = 1 << 10;
    }
}

/// Writes the command register. The status half of the dword is written as zero, which leaves
/// its write-1-to-clear bits alone.
pub fn write_command(cfg: &mut impl ConfigAccess, bdf: Bdf, command: Command) {
    cfg.write32(bdf, COMMAND_STATUS, u32::from(command.bits()));
}

pub fn read_command(cfg: &impl ConfigAccess, bdf: Bdf) -> Command {
    Command::from_bits_retain(cfg.read16(bdf, COMMAND_STATUS))
}

/// The 24-bit class code (PCI 3.0 Appendix D).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassCode {
    pub base: u8,
    pub sub: u8,
    pub prog_if: u8,
}

impl ClassCode {
    /// Mass storage / non-volatile memory / NVM Express.
    pub const NVME: ClassCode = ClassCode {
        base: 0x01,
        sub: 0x08,
        prog_if: 0x02,
    };

    /// From the dword at [`CLASS_REVISION`].
    pub const fn from_class_revision(dword: u32) -> ClassCode {
        ClassCode {
            base: (dword >> 24) as u8,
            sub: (dword >> 16) as u8,
            prog_if: (dword >> 8) as u8,
        }
    }
}

/// What enumeration learns about a present function from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    pub bdf: Bdf,
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision: u8,
    pub class: ClassCode,
    /// Header layout, bits 6:0 of the header type (0 endpoint, 1 bridge).
    pub header_type: u8,
    /// Bit 7 of the header type (meaningful at function 0).
    pub multifunction: bool,
}

/// Reads the identity of `bdf`, `None` if no function answers (vendor id 0xFFFF; SR-IOV VFs read
/// that too and are found through their PF instead).
pub fn read_function(cfg: &impl ConfigAccess, bdf: Bdf) -> Option<FunctionInfo> {
    let id = cfg.read32(bdf, VENDOR_DEVICE);
    let vendor_id = id as u16;
    if vendor_id == 0xFFFF {
        return None;
    }
    let class_rev = cfg.read32(bdf, CLASS_REVISION);
    let header_type = cfg.read8(bdf, offset_of!(Type0Header, header_type) as u16);
    Some(FunctionInfo {
        bdf,
        vendor_id,
        device_id: (id >> 16) as u16,
        revision: class_rev as u8,
        class: ClassCode::from_class_revision(class_rev),
        header_type: header_type & !HEADER_MULTIFUNCTION,
        multifunction: header_type & HEADER_MULTIFUNCTION != 0,
    })
}
