//! The PCI configuration space of a virtio device (virtio 1.2 §4.1.2, §4.1.4; PCI 3.0 §6.1)
//! as a `devices::pci::ConfigSpace`, so the hypervisor can put it on a guest's bus 0.
//!
//! - 0x00 vendor 0x1AF4, device 0x1040 + virtio device type (non-transitional, §4.1.2.1);
//!   revision 1; subsystem vendor 0x1AF4, subsystem id 0x40 (≥ 0x40: no legacy driver binds);
//! - 0x04 command: Memory Space, Bus Master, INTx Disable writable; status: capability list;
//! - 0x10 BAR 0: 64-bit memory, [`BAR_SIZE`] bytes, everything of `transport.rs` in it;
//! - 0x34 → 0x40 MSI-X ([`MSIX_VECTORS`] vectors, table and PBA in BAR 0), then the vendor
//!   capabilities in the order the driver should prefer them: common, notify, ISR, device,
//!   and the PCI configuration access window (`VIRTIO_PCI_CAP_PCI_CFG`, §4.1.4.9);
//! - no INTx pin (interrupt pin 0): drivers use MSI-X.
//!
//! Writes that the hypervisor must act on queue up as [`ConfigEvent`]s, drained with
//! [`VirtioPci::pop_event`] after each access.

use core::mem::{offset_of, size_of};

use devices::pci::ConfigSpace;
use pci::capability::id;
use pci::header::{Command, STATUS_CAPABILITIES_LIST};
use pci::msix::{CONTROL_ENABLE, CONTROL_FUNCTION_MASK};

use crate::transport::{
    DeviceType, Event, RegError, VirtioPci, BAR_SIZE, COMMON_LEN, COMMON_OFFSET, DEVICE_OFFSET,
    ISR_LEN, ISR_OFFSET, MSIX_PBA_OFFSET, MSIX_TABLE_OFFSET, MSIX_VECTORS, NOTIFY_LEN,
    NOTIFY_MULTIPLIER, NOTIFY_OFFSET,
};

pub const VIRTIO_VENDOR_ID: u16 = 0x1AF4;
/// Non-transitional device ids are 0x1040 + the virtio device type (§4.1.2).
pub const DEVICE_ID_BASE: u16 = 0x1040;
pub const SUBSYSTEM_ID: u16 = 0x0040;
pub const REVISION: u8 = 1;

/// A virtio structure capability (§4.1.4, `struct virtio_pci_cap`).
#[repr(C)]
pub struct VirtioPciCap {
    /// 0x0: 0x09, vendor-specific
    pub cap_vndr: u8,
    /// 0x1
    pub cap_next: u8,
    /// 0x2: bytes of this capability with its extra fields
    pub cap_len: u8,
    /// 0x3: [`cfg_type`]
    pub cfg_type: u8,
    /// 0x4: BAR index
    pub bar: u8,
    /// 0x5
    pub id: u8,
    /// 0x6
    pub padding: [u8; 2],
    /// 0x8: offset of the structure in the BAR
    pub offset: u32,
    /// 0xC: its length
    pub length: u32,
}
const CAP_LEN: u8 = size_of::<VirtioPciCap>() as u8;
const _: () = assert!(CAP_LEN == 16);
const _: () = assert!(offset_of!(VirtioPciCap, offset) == 8);
const _: () = assert!(offset_of!(VirtioPciCap, length) == 12);

/// `virtio_pci_cap.cfg_type` values (§4.1.4).
pub mod cfg_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
    pub const PCI_CFG: u8 = 5;
}

/// Where the capabilities sit.
pub const MSIX_CAP: u16 = 0x40;
pub const COMMON_CAP: u16 = 0x4C;
/// The notify capability has `notify_off_multiplier` after the common part.
pub const NOTIFY_CAP: u16 = COMMON_CAP + CAP_LEN as u16;
pub const ISR_CAP: u16 = NOTIFY_CAP + CAP_LEN as u16 + 4;
pub const DEVICE_CAP: u16 = ISR_CAP + CAP_LEN as u16;
/// The PCI configuration access capability has `pci_cfg_data[4]` after the common part.
pub const PCI_CFG_CAP: u16 = DEVICE_CAP + CAP_LEN as u16;
const CAPS_END: u16 = PCI_CFG_CAP + CAP_LEN as u16 + 4;
const _: () = assert!(PCI_CFG_CAP.is_multiple_of(4) && CAPS_END <= 0x100);

/// Command bits the guest may change.
const COMMAND_WRITABLE: Command = Command::MEMORY_SPACE
    .union(Command::BUS_MASTER)
    .union(Command::INTX_DISABLE);

/// What the hypervisor must act on after a configuration write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigEvent {
    /// Memory Space changed: map (or unmap) BAR 0's trap at its address.
    MemoryDecode { enabled: bool },
    /// BAR 0 moved while memory decoding is on.
    BarMoved { from: u64, to: u64 },
    /// MSI-X Enable or Function Mask changed (pending vectors may now be sent:
    /// [`VirtioPci::take_deliverable`]).
    MsixControl { enabled: bool, function_mask: bool },
    /// A BAR write through the PCI configuration access window, and its outcome.
    Window(Result<Event, RegError>),
    /// Events were dropped (the queue was not drained): re-read the state.
    Overflow,
}

const EVENTS: usize = 4;

/// The configuration-space state besides the transport's.
#[derive(Clone, Copy, Debug, Default)]
pub struct PciState {
    command: u16,
    bar0: u64,
    interrupt_line: u8,
    /// The access window: `cap.bar`, `cap.offset`, `cap.length`, `pci_cfg_data`.
    window_bar: u8,
    window_offset: u32,
    window_length: u32,
    window_data: u32,
    events: [Option<ConfigEvent>; EVENTS],
}

impl PciState {
    fn push(&mut self, e: ConfigEvent) {
        match self.events.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(e),
            None => self.events[EVENTS - 1] = Some(ConfigEvent::Overflow),
        }
    }
}

impl VirtioPci {
    /// The next event of past configuration writes.
    pub fn pop_event(&mut self) -> Option<ConfigEvent> {
        let first = self.pci.events[0].take();
        self.pci.events.rotate_left(1);
        first
    }

    /// Places BAR 0 at `gpa` (rounded down to its size) as firmware would before the guest
    /// boots; the guest may move it.
    pub fn place_bar0(&mut self, gpa: u64) {
        self.pci.bar0 = gpa & !(BAR_SIZE - 1);
    }

    /// BAR 0's guest-physical address.
    pub fn bar0(&self) -> u64 {
        self.pci.bar0
    }

    pub fn memory_decode(&self) -> bool {
        self.pci.command & Command::MEMORY_SPACE.bits() != 0
    }

    /// One pending MSI-X message that may now be sent (after an unmask), if any.
    pub fn take_deliverable(&mut self) -> Option<crate::transport::MsiMessage> {
        (0..MSIX_VECTORS).find_map(|v| self.take_pending(v))
    }

    /// The configuration space as bytes (rebuilt per read: reads are rare).
    fn image(&self) -> [u8; 256] {
        let mut c = [0u8; 256];
        let put = |c: &mut [u8; 256], at: u16, bytes: &[u8]| {
            c[usize::from(at)..usize::from(at) + bytes.len()].copy_from_slice(bytes);
        };
        let ty = self.info.device_type;
        put(&mut c, 0x00, &VIRTIO_VENDOR_ID.to_le_bytes());
        put(&mut c, 0x02, &(DEVICE_ID_BASE + ty as u16).to_le_bytes());
        put(&mut c, 0x04, &self.pci.command.to_le_bytes());
        put(&mut c, 0x06, &STATUS_CAPABILITIES_LIST.to_le_bytes());
        let (class, subclass) = class_code(ty);
        put(&mut c, 0x08, &[REVISION, 0, subclass, class]);
        // 64-bit memory BAR (PCI 3.0 §6.2.5.1: type 10b in bits 2:1).
        let bar = self.pci.bar0 & !(BAR_SIZE - 1);
        put(&mut c, 0x10, &((bar as u32) | 0b100).to_le_bytes());
        put(&mut c, 0x14, &((bar >> 32) as u32).to_le_bytes());
        put(&mut c, 0x2C, &VIRTIO_VENDOR_ID.to_le_bytes());
        put(&mut c, 0x2E, &SUBSYSTEM_ID.to_le_bytes());
        put(&mut c, 0x34, &[MSIX_CAP as u8]);
        put(&mut c, 0x3C, &[self.pci.interrupt_line, 0]);
        // MSI-X (PCIe 4.0 §7.7.2): table size N-1, table and PBA in BAR 0.
        let mut control = (MSIX_VECTORS - 1) as u16;
        if self.msix.enabled {
            control |= CONTROL_ENABLE;
        }
        if self.msix.function_mask {
            control |= CONTROL_FUNCTION_MASK;
        }
        put(&mut c, MSIX_CAP, &[id::MSIX, COMMON_CAP as u8]);
        put(&mut c, MSIX_CAP + 2, &control.to_le_bytes());
        put(&mut c, MSIX_CAP + 4, &MSIX_TABLE_OFFSET.to_le_bytes());
        put(&mut c, MSIX_CAP + 8, &MSIX_PBA_OFFSET.to_le_bytes());
        let device_len = self.info.config_len as u32;
        let caps = [
            (
                COMMON_CAP,
                NOTIFY_CAP,
                CAP_LEN,
                cfg_type::COMMON,
                COMMON_OFFSET,
                COMMON_LEN,
            ),
            (
                NOTIFY_CAP,
                ISR_CAP,
                CAP_LEN + 4,
                cfg_type::NOTIFY,
                NOTIFY_OFFSET,
                NOTIFY_LEN,
            ),
            (
                ISR_CAP,
                DEVICE_CAP,
                CAP_LEN,
                cfg_type::ISR,
                ISR_OFFSET,
                ISR_LEN,
            ),
            (
                DEVICE_CAP,
                PCI_CFG_CAP,
                CAP_LEN,
                cfg_type::DEVICE,
                DEVICE_OFFSET,
                device_len,
            ),
            (PCI_CFG_CAP, 0, CAP_LEN + 4, cfg_type::PCI_CFG, 0, 0),
        ];
        for (at, next, len, ty, offset, length) in caps {
            put(
                &mut c,
                at,
                &[id::VENDOR_SPECIFIC, next as u8, len, ty, 0, 0, 0, 0],
            );
            put(&mut c, at + 8, &offset.to_le_bytes());
            put(&mut c, at + 12, &length.to_le_bytes());
        }
        put(
            &mut c,
            NOTIFY_CAP + CAP_LEN as u16,
            &NOTIFY_MULTIPLIER.to_le_bytes(),
        );
        put(&mut c, PCI_CFG_CAP + 4, &[self.pci.window_bar]);
        put(
            &mut c,
            PCI_CFG_CAP + 8,
            &self.pci.window_offset.to_le_bytes(),
        );
        put(
            &mut c,
            PCI_CFG_CAP + 12,
            &self.pci.window_length.to_le_bytes(),
        );
        put(
            &mut c,
            PCI_CFG_CAP + 16,
            &self.pci.window_data.to_le_bytes(),
        );
        c
    }

    /// The window's access if it is one the driver may make: BAR 0, length 1, 2 or 4,
    /// offset a multiple of the length (§4.1.4.9.2).
    fn window(&self) -> Option<(u64, u8)> {
        let (bar, off, len) = (
            self.pci.window_bar,
            self.pci.window_offset,
            self.pci.window_length,
        );
        (bar == 0 && matches!(len, 1 | 2 | 4) && off.is_multiple_of(len))
            .then_some((u64::from(off), len as u8))
    }

    fn window_read(&self) -> u32 {
        self.window()
            .and_then(|(off, len)| self.bar_read(off, len).ok())
            .map_or(self.pci.window_data, |v| v as u32)
    }
}

/// PCI class and subclass of each device type (PCI Code and ID Assignment 1.11: mass
/// storage/SCSI as QEMU uses for virtio-blk, network/Ethernet, communication/other).
fn class_code(ty: DeviceType) -> (u8, u8) {
    match ty {
        DeviceType::Block => (0x01, 0x00),
        DeviceType::Net => (0x02, 0x00),
        DeviceType::Console => (0x07, 0x80),
    }
}

impl ConfigSpace for VirtioPci {
    fn read(&self, offset: u16) -> u32 {
        if offset >= 0x100 {
            return 0;
        }
        if offset & !3 == PCI_CFG_CAP + 16 {
            // Only a read of `pci_cfg_data` reads the BAR (a read of the ISR clears it).
            return self.window_read();
        }
        let c = self.image();
        let o = usize::from(offset & !3);
        u32::from_le_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]])
    }

    fn write(&mut self, offset: u16, value: u32, mask: u32) {
        let merge = |old: u32| (old & !mask) | (value & mask);
        match offset & !3 {
            0x04 => {
                let old = self.pci.command;
                let new = merge(u32::from(old)) as u16 & COMMAND_WRITABLE.bits();
                self.pci.command = new | (old & !COMMAND_WRITABLE.bits());
                let decode = Command::MEMORY_SPACE.bits();
                if (old ^ self.pci.command) & decode != 0 {
                    self.pci.push(ConfigEvent::MemoryDecode {
                        enabled: self.memory_decode(),
                    });
                }
            }
            0x10 | 0x14 => {
                let from = self.pci.bar0;
                let to = if offset & !3 == 0x10 {
                    let low = merge(from as u32) as u64 & !(BAR_SIZE - 1) & 0xFFFF_FFFF;
                    (from & !0xFFFF_FFFF) | low
                } else {
                    (from & 0xFFFF_FFFF) | u64::from(merge((from >> 32) as u32)) << 32
                };
                self.pci.bar0 = to;
                if to != from && self.memory_decode() {
                    self.pci.push(ConfigEvent::BarMoved { from, to });
                }
            }
            0x3C => self.pci.interrupt_line = merge(u32::from(self.pci.interrupt_line)) as u8,
            MSIX_CAP => {
                let control = (merge(self.read(MSIX_CAP)) >> 16) as u16;
                let (enabled, function_mask) = (
                    control & CONTROL_ENABLE != 0,
                    control & CONTROL_FUNCTION_MASK != 0,
                );
                if (enabled, function_mask) != (self.msix.enabled, self.msix.function_mask) {
                    self.msix.enabled = enabled;
                    self.msix.function_mask = function_mask;
                    self.pci.push(ConfigEvent::MsixControl {
                        enabled,
                        function_mask,
                    });
                }
            }
            o if o == PCI_CFG_CAP + 4 => {
                self.pci.window_bar = merge(u32::from(self.pci.window_bar)) as u8
            }
            o if o == PCI_CFG_CAP + 8 => self.pci.window_offset = merge(self.pci.window_offset),
            o if o == PCI_CFG_CAP + 12 => self.pci.window_length = merge(self.pci.window_length),
            o if o == PCI_CFG_CAP + 16 => {
                self.pci.window_data = merge(self.pci.window_data);
                let outcome = match self.window() {
                    Some((off, len)) => self.bar_write(off, len, u64::from(self.pci.window_data)),
                    None => Err(RegError::BadAccess {
                        offset: u64::from(self.pci.window_offset),
                        size: self.pci.window_length as u8,
                    }),
                };
                self.pci.push(ConfigEvent::Window(outcome));
            }
            // Everything else is read-only (identity, capabilities) or absent.
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "pci_config_tests.rs"]
mod tests;
