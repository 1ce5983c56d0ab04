//! A type-0 configuration header as a register file with per-bit attributes (PCI Local Bus
//! Specification 3.0 §6.1-6.2: read-only, read/write, and write-1-to-clear status bits), and the
//! built-in host bridge at 00:00.0.
//!
//! The host bridge uses Red Hat's QEMU id 1b36:0008 ("QEMU PCIe host bridge", QEMU
//! docs/specs/pci-ids), class 06/00/00. Linux has no quirk for that id and accepts any class 0600
//! function as a host bridge (`pci_sanity_check` looks for exactly that class at 00:00.0).

use super::pci::ConfigSpace;

/// Conventional configuration space: 256 bytes = 64 dwords.
pub const CONFIG_DWORDS: usize = 64;

/// Type-0 header offsets (PCI 3.0 §6.1, Figure 6-1).
pub mod header {
    pub const VENDOR_DEVICE: u16 = 0x00;
    pub const COMMAND_STATUS: u16 = 0x04;
    pub const CLASS_REVISION: u16 = 0x08;
    /// Cache line size, latency timer, header type, BIST.
    pub const CACHE_LATENCY_HEADER_BIST: u16 = 0x0C;
    pub const SUBSYSTEM: u16 = 0x2C;
    /// Interrupt line, interrupt pin, Min_Gnt, Max_Lat.
    pub const INTERRUPT: u16 = 0x3C;
}

/// Command register bits a simple function implements (PCI 3.0 §6.2.2): I/O space, memory space,
/// bus master, parity error response, SERR# enable, interrupt disable.
const COMMAND_WRITABLE: u32 = 0x0547;
/// Status register error bits are RW1C (PCI 3.0 §6.2.3): master data parity error (8), signaled
/// target abort (11), received target abort (12), received master abort (13), signaled system error
/// (14), detected parity error (15).
const STATUS_WRITE_1_TO_CLEAR: u32 = 0xF900;

/// A configuration space whose bits are read-only unless marked writable or write-1-to-clear.
#[derive(Clone)]
pub struct ConfigRegisters {
    values: [u32; CONFIG_DWORDS],
    writable: [u32; CONFIG_DWORDS],
    write_1_to_clear: [u32; CONFIG_DWORDS],
}

impl Default for ConfigRegisters {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigRegisters {
    /// All zero and read-only.
    pub const fn new() -> Self {
        ConfigRegisters {
            values: [0; CONFIG_DWORDS],
            writable: [0; CONFIG_DWORDS],
            write_1_to_clear: [0; CONFIG_DWORDS],
        }
    }

    /// Sets the dword at `offset` and its attributes (used while building a device).
    pub fn define(&mut self, offset: u16, value: u32, writable: u32, write_1_to_clear: u32) {
        if let Some(i) = Self::index(offset) {
            self.values[i] = value;
            self.writable[i] = writable;
            self.write_1_to_clear[i] = write_1_to_clear;
        }
    }

    /// Sets status bits the way hardware would (guest writes cannot set RW1C bits).
    pub fn set_bits(&mut self, offset: u16, bits: u32) {
        if let Some(i) = Self::index(offset) {
            self.values[i] |= bits;
        }
    }

    fn index(offset: u16) -> Option<usize> {
        let i = usize::from(offset / 4);
        (i < CONFIG_DWORDS).then_some(i)
    }
}

impl ConfigSpace for ConfigRegisters {
    fn read(&self, offset: u16) -> u32 {
        Self::index(offset).map_or(0, |i| self.values[i])
    }

    fn write(&mut self, offset: u16, value: u32, mask: u32) {
        let Some(i) = Self::index(offset) else {
            return;
        };
        let rw = self.writable[i] & mask;
        let clear = self.write_1_to_clear[i] & mask & value;
        self.values[i] = ((self.values[i] & !rw) | (value & rw)) & !clear;
    }
}

pub const HOST_BRIDGE_VENDOR: u16 = 0x1b36;
pub const HOST_BRIDGE_DEVICE: u16 = 0x0008;
/// Subsystem ids as QEMU gives its devices (Red Hat/Qumranet 0x1af4, QEMU 0x1100).
const SUBSYSTEM_IDS: u32 = 0x1100_1af4;
/// Base class 06 (bridge), subclass 00 (host), programming interface 00.
const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

/// The host bridge at 00:00.0: no BARs, no capabilities, single function (header type 00).
#[derive(Clone)]
pub struct HostBridge {
    regs: ConfigRegisters,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBridge {
    pub fn new() -> Self {
        let mut regs = ConfigRegisters::new();
        let ids = u32::from(HOST_BRIDGE_DEVICE) << 16 | u32::from(HOST_BRIDGE_VENDOR);
        regs.define(header::VENDOR_DEVICE, ids, 0, 0);
        regs.define(
            header::COMMAND_STATUS,
            0,
            COMMAND_WRITABLE,
            STATUS_WRITE_1_TO_CLEAR << 16,
        );
        regs.define(header::CLASS_REVISION, CLASS_HOST_BRIDGE << 8, 0, 0);
        // Cache line size and latency timer are plain storage; header type 0 and BIST 0 are fixed.
        regs.define(header::CACHE_LATENCY_HEADER_BIST, 0, 0x0000_FFFF, 0);
        regs.define(header::SUBSYSTEM, SUBSYSTEM_IDS, 0, 0);
        // Interrupt line is storage for software; interrupt pin 0 = none.
        regs.define(header::INTERRUPT, 0, 0x0000_00FF, 0);
        HostBridge { regs }
    }
}

impl ConfigSpace for HostBridge {
    fn read(&self, offset: u16) -> u32 {
        self.regs.read(offset)
    }

    fn write(&mut self, offset: u16, value: u32, mask: u32) {
        self.regs.write(offset, value, mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_class() {
        let hb = HostBridge::new();
        assert_eq!(hb.read(0x00), 0x0008_1b36);
        assert_eq!(hb.read(0x08), 0x0600_0000);
        assert_eq!(hb.read(0x0C) >> 16, 0); // header type 0, BIST 0
        assert_eq!(hb.read(0x2C), 0x1100_1af4);
    }

    #[test]
    fn read_only_fields_ignore_writes() {
        let mut hb = HostBridge::new();
        for off in [0x00, 0x08, 0x10, 0x14, 0x30, 0x34, 0x40, 0xFC] {
            let before = hb.read(off);
            hb.write(off, 0xFFFF_FFFF, 0xFFFF_FFFF);
            assert_eq!(hb.read(off), before, "offset {off:#x}");
        }
        // BAR sizing on an unimplemented BAR reads back 0.
        assert_eq!(hb.read(0x10), 0);
    }

    #[test]
    fn command_status_attributes() {
        let mut hb = HostBridge::new();
        hb.write(0x04, 0xFFFF_FFFF, 0x0000_FFFF);
        assert_eq!(hb.read(0x04), 0x0547);
        // Status error bits are write-1-to-clear, never set by a write.
        hb.regs.set_bits(0x04, 0x2000 << 16);
        hb.write(0x04, 0x0000_0000, 0xFFFF_0000);
        assert_eq!(hb.read(0x04), 0x2000_0547);
        hb.write(0x04, 0x2000_0000, 0xFFFF_0000);
        assert_eq!(hb.read(0x04), 0x0000_0547);
    }

    #[test]
    fn byte_masks_limit_writes() {
        let mut hb = HostBridge::new();
        // Byte write of the interrupt line only.
        hb.write(0x3C, 0xFFFF_FF0B, 0x0000_00FF);
        assert_eq!(hb.read(0x3C), 0x0B);
        // Latency timer (byte 1 of 0x0C) alone.
        hb.write(0x0C, 0x0000_4000, 0x0000_FF00);
        assert_eq!(hb.read(0x0C), 0x4000);
        // Out-of-range offsets read 0 and ignore writes.
        hb.write(0x100, 1, !0);
        assert_eq!(hb.read(0x100), 0);
    }
}
