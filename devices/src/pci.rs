//! PCI configuration mechanism #1 (PCI Local Bus Specification 3.0 §3.2.2.3.2): CONFIG_ADDRESS at
//! 0xCF8 (32-bit accesses only) and CONFIG_DATA at 0xCFC-0xCFF (1, 2 or 4 bytes at any offset),
//! dispatching to a bus-0 table of functions: the built-in host bridge at 00:00.0 plus up to
//! [`PCI_SLOTS`] devices the hypervisor adds (passed-through VFs, virtual devices).
//!
//! Absent functions, other buses, and data accesses while the enable bit is clear read all ones and
//! drop writes (a master abort). Linux's `pci_check_type1` (write 0x80000000 to CONFIG_ADDRESS and
//! read it back) and `pci_sanity_check` (class 0600 at some function of bus 0) pass.

use super::pci_host::HostBridge;
use super::{size_mask, Nanos, PortIo};

pub const CONFIG_ADDRESS_PORT: u16 = 0xCF8;
pub const CONFIG_DATA_PORT: u16 = 0xCFC;
/// How many devices besides the host bridge bus 0 can hold.
pub const PCI_SLOTS: usize = 16;

/// One function's configuration space.
pub trait ConfigSpace {
    /// The dword at `offset` (a multiple of 4, below 4096).
    fn read(&self, offset: u16) -> u32;
    /// Writes the bytes of `value` selected by `mask` (0xFF per byte lane) into the dword at
    /// `offset`; bits the register does not implement as writable stay unchanged.
    fn write(&mut self, offset: u16, value: u32, mask: u32);
}

/// A device/function number on bus 0: device in bits 7:3, function in bits 2:0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevFn(pub u8);

impl DevFn {
    /// `None` unless device < 32 and function < 8.
    pub const fn new(device: u8, function: u8) -> Option<DevFn> {
        if device < 32 && function < 8 {
            Some(DevFn(device << 3 | function))
        } else {
            None
        }
    }

    pub const HOST_BRIDGE: DevFn = DevFn(0);

    pub const fn device(self) -> u8 {
        self.0 >> 3
    }

    pub const fn function(self) -> u8 {
        self.0 & 7
    }
}

/// CONFIG_ADDRESS (PCI 3.0 §3.2.2.3.2, Figure 3-2): enable 31, reserved 30:24 (read-only 0 here),
/// bus 23:16, device 15:11, function 10:8, register 7:2, bits 1:0 read-only 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigAddress(u32);

impl ConfigAddress {
    const ENABLE: u32 = 1 << 31;
    const IMPLEMENTED: u32 = Self::ENABLE | 0x00FF_FFFC;

    pub const fn new(raw: u32) -> Self {
        ConfigAddress(raw & Self::IMPLEMENTED)
    }

    pub const fn raw(self) -> u32 {
        self.0
    }

    pub const fn enabled(self) -> bool {
        self.0 & Self::ENABLE != 0
    }

    pub const fn bus(self) -> u8 {
        (self.0 >> 16) as u8
    }

    pub const fn devfn(self) -> DevFn {
        DevFn((self.0 >> 8) as u8)
    }

    /// The dword-aligned register offset.
    pub const fn register(self) -> u16 {
        (self.0 & 0xFC) as u16
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// 00:00.0 is the host bridge's.
    Reserved,
    Occupied,
    Full,
}

/// A device type for buses with no devices besides the host bridge.
pub enum NoPciDevice {}

impl ConfigSpace for NoPciDevice {
    fn read(&self, _offset: u16) -> u32 {
        match *self {}
    }

    fn write(&mut self, _offset: u16, _value: u32, _mask: u32) {
        match *self {}
    }
}

/// Bus 0: the host bridge and a fixed table of other functions of type `D` (for a hypervisor, an
/// enum of its device kinds).
pub struct PciBus<D> {
    host: HostBridge,
    slots: [Option<(DevFn, D)>; PCI_SLOTS],
}

impl<D: ConfigSpace> Default for PciBus<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: ConfigSpace> PciBus<D> {
    pub fn new() -> Self {
        PciBus {
            host: HostBridge::new(),
            slots: core::array::from_fn(|_| None),
        }
    }

    pub fn add(&mut self, devfn: DevFn, device: D) -> Result<(), PciError> {
        if devfn == DevFn::HOST_BRIDGE {
            return Err(PciError::Reserved);
        }
        if self.get(devfn).is_some() {
            return Err(PciError::Occupied);
        }
        let free = self.slots.iter_mut().find(|s| s.is_none());
        let slot = free.ok_or(PciError::Full)?;
        *slot = Some((devfn, device));
        Ok(())
    }

    pub fn remove(&mut self, devfn: DevFn) -> Option<D> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| matches!(s, Some((f, _)) if *f == devfn))?;
        slot.take().map(|(_, d)| d)
    }

    pub fn get(&self, devfn: DevFn) -> Option<&D> {
        self.slots
            .iter()
            .flatten()
            .find(|(f, _)| *f == devfn)
            .map(|(_, d)| d)
    }

    pub fn get_mut(&mut self, devfn: DevFn) -> Option<&mut D> {
        self.slots
            .iter_mut()
            .flatten()
            .find(|(f, _)| *f == devfn)
            .map(|(_, d)| d)
    }

    /// The dword at `offset` of `devfn`, all ones if nothing is there.
    pub fn read(&self, devfn: DevFn, offset: u16) -> u32 {
        if devfn == DevFn::HOST_BRIDGE {
            return self.host.read(offset);
        }
        self.get(devfn).map_or(u32::MAX, |d| d.read(offset))
    }

    pub fn write(&mut self, devfn: DevFn, offset: u16, value: u32, mask: u32) {
        if devfn == DevFn::HOST_BRIDGE {
            return self.host.write(offset, value, mask);
        }
        if let Some(d) = self.get_mut(devfn) {
            d.write(offset, value, mask);
        }
    }
}

/// The two mechanism-#1 registers in front of bus 0.
pub struct PciConfigPorts<D> {
    address: ConfigAddress,
    bus: PciBus<D>,
}

impl<D: ConfigSpace> Default for PciConfigPorts<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: ConfigSpace> PciConfigPorts<D> {
    pub fn new() -> Self {
        PciConfigPorts {
            address: ConfigAddress::new(0),
            bus: PciBus::new(),
        }
    }

    /// Clears CONFIG_ADDRESS (a restart of the guest).
    pub fn reset_address(&mut self) {
        self.address = ConfigAddress::new(0);
    }

    pub fn bus(&self) -> &PciBus<D> {
        &self.bus
    }

    pub fn bus_mut(&mut self) -> &mut PciBus<D> {
        &mut self.bus
    }

    /// Whether an access of `size` bytes at `port` is one this mechanism claims: a dword at
    /// CONFIG_ADDRESS or anything starting in CONFIG_DATA. Narrower accesses to 0xCF8-0xCFB are
    /// ordinary I/O (PCI 3.0 §3.2.2.3.2), e.g. the reset register at 0xCF9.
    pub fn claims(port: u16, size: u8) -> bool {
        (port == CONFIG_ADDRESS_PORT && size == 4)
            || (CONFIG_DATA_PORT..CONFIG_DATA_PORT + 4).contains(&port)
    }

    /// The function CONFIG_DATA currently reaches, if the enable bit is set and it is on bus 0.
    fn target(&self) -> Option<(DevFn, u16)> {
        let a = self.address;
        (a.enabled() && a.bus() == 0).then_some((a.devfn(), a.register()))
    }
}

impl<D: ConfigSpace> PortIo for PciConfigPorts<D> {
    fn read(&mut self, port: u16, size: u8, _now: Nanos) -> u32 {
        let Some(mask) = size_mask(size) else {
            return u32::MAX;
        };
        if port == CONFIG_ADDRESS_PORT {
            return if size == 4 { self.address.raw() } else { mask };
        }
        let lane = u32::from(port.wrapping_sub(CONFIG_DATA_PORT));
        if lane > 3 {
            return mask;
        }
        let Some((devfn, reg)) = self.target() else {
            return mask;
        };
        // Lanes past the dword (an access straddling 0xCFF) read as ones.
        let dword = u64::from(self.bus.read(devfn, reg)) | 0xFFFF_FFFF_0000_0000;
        (dword >> (8 * lane)) as u32 & mask
    }

    fn write(&mut self, port: u16, size: u8, value: u32, _now: Nanos) {
        let Some(mask) = size_mask(size) else {
            return;
        };
        if port == CONFIG_ADDRESS_PORT {
            if size == 4 {
                self.address = ConfigAddress::new(value);
            }
            return;
        }
        let lane = u32::from(port.wrapping_sub(CONFIG_DATA_PORT));
        if lane > 3 {
            return;
        }
        if let Some((devfn, reg)) = self.target() {
            self.bus
                .write(devfn, reg, value << (8 * lane), mask << (8 * lane));
        }
    }
}

#[cfg(test)]
#[path = "pci_tests.rs"]
mod tests;
