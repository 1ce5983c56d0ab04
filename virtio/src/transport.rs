//! The virtio-pci modern transport (virtio 1.2 §4.1): the registers of the device's memory BAR
//! as a state machine. The hypervisor traps the guest's accesses to the BAR and calls
//! [`VirtioPci::bar_read`] / [`VirtioPci::bar_write`] with the offset and size; a write returns
//! the [`Event`] the device backend must act on (a kick, a queue enabled, a reset...). The
//! configuration space and its capabilities are in `pci_config.rs`.
//!
//! BAR 0 (64-bit memory, [`BAR_SIZE`]) holds every structure at a fixed offset:
//!
//! | offset | structure | capability |
//! |---|---|---|
//! | 0x0000 | [`CommonCfg`] | `VIRTIO_PCI_CAP_COMMON_CFG` (§4.1.4.3) |
//! | 0x1000 | ISR status byte | `VIRTIO_PCI_CAP_ISR_CFG` (§4.1.4.5) |
//! | 0x2000 | device-specific configuration | `VIRTIO_PCI_CAP_DEVICE_CFG` (§4.1.4.6) |
//! | 0x3000 | queue notify addresses, [`NOTIFY_MULTIPLIER`] bytes apart | `VIRTIO_PCI_CAP_NOTIFY_CFG` (§4.1.4.4) |
//! | 0x4000 | MSI-X table | MSI-X (PCIe 4.0 §7.7.2) |
//! | 0x5000 | MSI-X pending bits | |
//!
//! Queue `q`'s `queue_notify_off` is `q`. Each queue and the configuration change have an
//! MSI-X vector (or [`NO_VECTOR`]); [`VirtioPci::raise`] turns an interrupt into the message
//! to deliver, a pending bit, or nothing.

use core::cell::Cell;
use core::mem::{offset_of, size_of};

use pagetable::addr::Gpa;
use pci::msix::{MsixTableEntry, MSIX_ENTRY_SIZE, VECTOR_CONTROL_MASK};

use crate::ring::{LayoutError, QueueLayout};
use crate::status::{DeviceStatus, FeatureError, Negotiation, StatusChange, StatusError};

/// Queues a device may have here.
pub const MAX_QUEUES: usize = 8;
/// MSI-X vectors: one per queue and one for configuration changes.
pub const MSIX_VECTORS: usize = MAX_QUEUES + 1;
/// "No vector" in `config_msix_vector` / `queue_msix_vector` (§4.1.5.1.2).
pub const NO_VECTOR: u16 = 0xFFFF;
/// Bytes of device-specific configuration a device may have here.
pub const DEVICE_CONFIG_MAX: usize = 0x100;

pub const BAR_SIZE: u64 = 0x8000;
pub const COMMON_OFFSET: u32 = 0x0000;
pub const ISR_OFFSET: u32 = 0x1000;
pub const ISR_LEN: u32 = 1;
pub const DEVICE_OFFSET: u32 = 0x2000;
pub const NOTIFY_OFFSET: u32 = 0x3000;
/// Bytes between two queues' notify addresses (an even power of 2, §4.1.4.4.1).
pub const NOTIFY_MULTIPLIER: u32 = 4;
pub const NOTIFY_LEN: u32 = MAX_QUEUES as u32 * NOTIFY_MULTIPLIER;
pub const MSIX_TABLE_OFFSET: u32 = 0x4000;
pub const MSIX_PBA_OFFSET: u32 = 0x5000;

/// The common configuration structure (§4.1.4.3, `struct virtio_pci_common_cfg` with the
/// 1.2 fields after `queue_device`).
#[repr(C)]
pub struct CommonCfg {
    /// 0x00: selects the word `device_feature` shows
    pub device_feature_select: u32,
    /// 0x04: offered features, 32 bits (read-only)
    pub device_feature: u32,
    /// 0x08: selects the word `driver_feature` takes
    pub driver_feature_select: u32,
    /// 0x0C: accepted features, 32 bits
    pub driver_feature: u32,
    /// 0x10: MSI-X vector for configuration changes
    pub config_msix_vector: u16,
    /// 0x12: number of queues (read-only)
    pub num_queues: u16,
    /// 0x14: device status (§2.1); 0 resets
    pub device_status: u8,
    /// 0x15: configuration atomicity counter (read-only)
    pub config_generation: u8,
    /// 0x16: the queue the following fields refer to
    pub queue_select: u16,
    /// 0x18: queue size; the maximum at reset, 0 for no queue
    pub queue_size: u16,
    /// 0x1A: MSI-X vector of the queue
    pub queue_msix_vector: u16,
    /// 0x1C: 1 to enable; never written 0 by the driver
    pub queue_enable: u16,
    /// 0x1E: notify address index (read-only)
    pub queue_notify_off: u16,
    /// 0x20: descriptor area
    pub queue_desc: u64,
    /// 0x28: driver area (available ring)
    pub queue_driver: u64,
    /// 0x30: device area (used ring)
    pub queue_device: u64,
    /// 0x38: only with VIRTIO_F_NOTIF_CONFIG_DATA (not offered: reads 0)
    pub queue_notif_config_data: u16,
    /// 0x3A: only with VIRTIO_F_RING_RESET (not offered: reads 0)
    pub queue_reset: u16,
    /// 0x3C: only with VIRTIO_F_ADMIN_VQ (not offered: reads 0)
    pub admin_queue_index: u16,
    /// 0x3E
    pub admin_queue_num: u16,
}

pub const COMMON_LEN: u32 = size_of::<CommonCfg>() as u32;
const _: () = assert!(COMMON_LEN == 0x40);
const _: () = assert!(offset_of!(CommonCfg, config_msix_vector) == 0x10);
const _: () = assert!(offset_of!(CommonCfg, device_status) == 0x14);
const _: () = assert!(offset_of!(CommonCfg, queue_select) == 0x16);
const _: () = assert!(offset_of!(CommonCfg, queue_notify_off) == 0x1E);
const _: () = assert!(offset_of!(CommonCfg, queue_desc) == 0x20);
const _: () = assert!(offset_of!(CommonCfg, queue_device) == 0x30);
const _: () = assert!(offset_of!(CommonCfg, queue_reset) == 0x3A);
const _: () = assert!(NOTIFY_OFFSET + NOTIFY_LEN <= MSIX_TABLE_OFFSET);
const _: () = assert!(
    (MSIX_TABLE_OFFSET as usize) + MSIX_VECTORS * MSIX_ENTRY_SIZE <= MSIX_PBA_OFFSET as usize
);

/// Field offsets in the common configuration, for matching accesses.
mod field {
    use super::CommonCfg;
    use core::mem::offset_of;
    pub const DFSELECT: u64 = offset_of!(CommonCfg, device_feature_select) as u64;
    pub const DF: u64 = offset_of!(CommonCfg, device_feature) as u64;
    pub const GFSELECT: u64 = offset_of!(CommonCfg, driver_feature_select) as u64;
    pub const GF: u64 = offset_of!(CommonCfg, driver_feature) as u64;
    pub const MSIX: u64 = offset_of!(CommonCfg, config_msix_vector) as u64;
    pub const NUMQ: u64 = offset_of!(CommonCfg, num_queues) as u64;
    pub const STATUS: u64 = offset_of!(CommonCfg, device_status) as u64;
    pub const GENERATION: u64 = offset_of!(CommonCfg, config_generation) as u64;
    pub const Q_SELECT: u64 = offset_of!(CommonCfg, queue_select) as u64;
    pub const Q_SIZE: u64 = offset_of!(CommonCfg, queue_size) as u64;
    pub const Q_MSIX: u64 = offset_of!(CommonCfg, queue_msix_vector) as u64;
    pub const Q_ENABLE: u64 = offset_of!(CommonCfg, queue_enable) as u64;
    pub const Q_NOFF: u64 = offset_of!(CommonCfg, queue_notify_off) as u64;
    pub const Q_DESC: u64 = offset_of!(CommonCfg, queue_desc) as u64;
    pub const Q_DRIVER: u64 = offset_of!(CommonCfg, queue_driver) as u64;
    pub const Q_DEVICE: u64 = offset_of!(CommonCfg, queue_device) as u64;
    pub const Q_NDATA: u64 = offset_of!(CommonCfg, queue_notif_config_data) as u64;
    pub const Q_RESET: u64 = offset_of!(CommonCfg, queue_reset) as u64;
    pub const ADMIN_INDEX: u64 = offset_of!(CommonCfg, admin_queue_index) as u64;
    pub const ADMIN_NUM: u64 = offset_of!(CommonCfg, admin_queue_num) as u64;
}

/// Virtio device types (§5) this transport is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    Net = 1,
    Block = 2,
    Console = 3,
}

/// What a device tells the transport about itself.
#[derive(Clone, Copy, Debug)]
pub struct DeviceInfo {
    pub device_type: DeviceType,
    /// Offered features (with `VIRTIO_F_VERSION_1`).
    pub features: u64,
    /// Maximum size of each queue; the device has `queues` queues.
    pub queue_max_sizes: [u16; MAX_QUEUES],
    pub queues: u16,
    /// The device-specific configuration, `config_len` bytes of it.
    pub config: [u8; DEVICE_CONFIG_MAX],
    pub config_len: usize,
}

/// One queue's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRegs {
    pub max_size: u16,
    pub size: u16,
    pub msix_vector: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

impl QueueRegs {
    const fn reset(max_size: u16) -> Self {
        QueueRegs {
            max_size,
            size: max_size,
            msix_vector: NO_VECTOR,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }

    pub fn layout(&self) -> QueueLayout {
        QueueLayout {
            size: self.size,
            desc: Gpa(self.desc),
            avail: Gpa(self.driver),
            used: Gpa(self.device),
        }
    }
}

/// What the backend must act on after a register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing beyond the register's new value.
    None,
    /// 0 written to `device_status`: drop every queue's state and in-flight request.
    Reset,
    /// Status bits set; with FEATURES_OK the features are [`VirtioPci::negotiated`], with
    /// DRIVER_OK the device may start.
    StatusSet(DeviceStatus),
    /// FEATURES_OK refused (it reads back clear).
    FeaturesRefused(FeatureError),
    /// The driver enabled a queue (its shape checked; the backend checks it against RAM).
    QueueEnabled { queue: u16, layout: QueueLayout },
    /// An available-buffer notification (a kick).
    Notify { queue: u16 },
    /// The driver wrote device-specific configuration (little-endian `value` of `size` bytes).
    DeviceConfigWrite { offset: u32, size: u8, value: u32 },
    /// An MSI-X table entry changed; `deliver` if it was unmasked with its pending bit set
    /// (the pending bit is cleared: the backend sends the message now).
    MsixEntry {
        vector: u16,
        deliver: Option<MsiMessage>,
    },
}

/// Why a register access was refused (a write changed nothing; a read returns nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegError {
    /// No register at this offset, or not with this access size.
    BadAccess {
        offset: u64,
        size: u8,
    },
    /// A read-only register (or one of a feature not offered).
    ReadOnly {
        offset: u64,
    },
    Status(StatusError),
    /// A per-queue register while `queue_select` names no queue.
    NoQueue {
        queue: u16,
    },
    /// A queue's configuration written while it is enabled.
    QueueEnabled {
        queue: u16,
    },
    /// `queue_enable` written 0 or a value other than 1 (§4.1.4.3.2).
    QueueEnableValue {
        queue: u16,
        value: u64,
    },
    /// A queue enabled before FEATURES_OK.
    QueueBeforeFeaturesOk {
        queue: u16,
    },
    QueueLayout {
        queue: u16,
        error: LayoutError,
    },
    /// A kick for a queue that does not exist or is not enabled, or with a wrong value.
    Notify {
        queue: u16,
        value: u64,
    },
}

/// An MSI message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// An interrupt the device raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irq {
    Queue(u16),
    Config,
}

/// What became of a raised interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Send this message to the guest.
    Msi(MsiMessage),
    /// The vector is masked: its pending bit is set, the message goes when it is unmasked.
    Pending,
    /// The event has no vector (the driver did not want it), or MSI-X is off: only the ISR
    /// status bit is set (there is no INTx pin).
    NotSent,
}

/// The MSI-X capability's state and table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Msix {
    pub(crate) enabled: bool,
    pub(crate) function_mask: bool,
    pub(crate) table: [MsixTableEntry; MSIX_VECTORS],
    pub(crate) pending: u32,
}

/// A virtio device's transport state.
#[derive(Clone, Debug)]
pub struct VirtioPci {
    pub(crate) info: DeviceInfo,
    neg: Negotiation,
    device_feature_select: u32,
    driver_feature_select: u32,
    config_vector: u16,
    queue_select: u16,
    queues: [QueueRegs; MAX_QUEUES],
    /// ISR status; reading it clears it (a read through the configuration window too).
    isr: Cell<u8>,
    pub(crate) msix: Msix,
    pub(crate) pci: crate::pci_config::PciState,
}

impl VirtioPci {
    /// A device at reset. Panics if a declared queue's maximum size is not a valid split-queue
    /// size (a hypervisor bug: drivers would fail on it).
    pub fn new(info: DeviceInfo) -> Self {
        let mut info = info;
        for (q, max) in info
            .queue_max_sizes
            .iter()
            .enumerate()
            .take(usize::from(info.queues))
        {
            assert!(
                crate::ring::valid_queue_size(*max),
                "virtio queue {q}: maximum size {max}"
            );
        }
        info.queues = info.queues.min(MAX_QUEUES as u16);
        info.config_len = info.config_len.min(DEVICE_CONFIG_MAX);
        let queues = core::array::from_fn(|i| {
            let max = if i < usize::from(info.queues) {
                info.queue_max_sizes[i]
            } else {
                0
            };
            QueueRegs::reset(max)
        });
        VirtioPci {
            info,
            neg: Negotiation::new(info.features),
            device_feature_select: 0,
            driver_feature_select: 0,
            config_vector: NO_VECTOR,
            queue_select: 0,
            queues,
            isr: Cell::new(0),
            msix: Msix {
                enabled: false,
                function_mask: false,
                table: [MsixTableEntry::RESET; MSIX_VECTORS],
                pending: 0,
            },
            pci: crate::pci_config::PciState::default(),
        }
    }

    pub fn status(&self) -> &Negotiation {
        &self.neg
    }

    /// The negotiated features, once FEATURES_OK is set.
    pub fn negotiated(&self) -> Option<u64> {
        self.neg.negotiated()
    }

    pub fn queue(&self, queue: u16) -> Option<&QueueRegs> {
        self.queues[..usize::from(self.info.queues)].get(usize::from(queue))
    }

    /// The backend found the device broken: DEVICE_NEEDS_RESET, and the configuration-change
    /// interrupt to raise when the driver must be told.
    pub fn set_needs_reset(&mut self) -> Option<Delivery> {
        self.neg.set_needs_reset().then(|| self.raise(Irq::Config))
    }

    /// The device state after 0 is written to `device_status` (§2.4; MSI-X is PCI state and
    /// stays).
    fn reset(&mut self) {
        let fresh = VirtioPci::new(self.info);
        let (msix, pci) = (self.msix, self.pci);
        *self = fresh;
        self.msix = msix;
        self.pci = pci;
    }

    fn selected(&self) -> Result<&QueueRegs, RegError> {
        self.queue(self.queue_select).ok_or(RegError::NoQueue {
            queue: self.queue_select,
        })
    }

    /// The selected queue, if it may still be configured.
    fn selected_mut(&mut self) -> Result<&mut QueueRegs, RegError> {
        let queue = self.queue_select;
        let n = usize::from(self.info.queues);
        let q = self.queues[..n]
            .get_mut(usize::from(queue))
            .ok_or(RegError::NoQueue { queue })?;
        if q.enabled {
            return Err(RegError::QueueEnabled { queue });
        }
        Ok(q)
    }

    /// A guest read of `size` bytes at `offset` in BAR 0.
    pub fn bar_read(&self, offset: u64, size: u8) -> Result<u64, RegError> {
        let bad = RegError::BadAccess { offset, size };
        let (region, off) = region(offset).ok_or(bad)?;
        match region {
            Region::Common => self.common_read(off, size).ok_or(bad),
            Region::Isr if size == 1 => Ok(u64::from(self.isr.replace(0))),
            Region::Device => self.device_config_read(off, size).ok_or(bad),
            Region::Notify if size == 2 => Ok(0),
            Region::MsixTable if size == 4 => {
                let (vector, dword) = ((off / 16) as usize, (off % 16 / 4) as usize);
                Ok(u64::from(self.msix.table[vector].dword(dword)))
            }
            Region::MsixPba if size == 4 || size == 8 => Ok(u64::from(self.msix.pending)),
            _ => Err(bad),
        }
    }

    fn common_read(&self, off: u64, size: u8) -> Option<u64> {
        use field::*;
        let q = self.selected().ok();
        let v = match (off, size) {
            (DFSELECT, 4) => self.device_feature_select.into(),
            (DF, 4) => self
                .neg
                .device_features_word(self.device_feature_select)
                .into(),
            (GFSELECT, 4) => self.driver_feature_select.into(),
            (GF, 4) => self
                .neg
                .driver_features_word(self.driver_feature_select)
                .into(),
            (MSIX, 2) => self.config_vector.into(),
            (NUMQ, 2) => self.info.queues.into(),
            (STATUS, 1) => self.neg.status().bits().into(),
            // Static device configuration: the generation never changes.
            (GENERATION, 1) => 0,
            (Q_SELECT, 2) => self.queue_select.into(),
            (Q_SIZE, 2) => q.map_or(0, |q| q.size).into(),
            (Q_MSIX, 2) => q.map_or(NO_VECTOR, |q| q.msix_vector).into(),
            (Q_ENABLE, 2) => q.is_some_and(|q| q.enabled).into(),
            (Q_NOFF, 2) => q.map_or(0, |_| self.queue_select).into(),
            (Q_NDATA | Q_RESET | ADMIN_INDEX | ADMIN_NUM, 2) => 0,
            _ => {
                let (base, half) = split64(off, size)?;
                let q = q.copied().unwrap_or(QueueRegs::reset(0));
                let full = match base {
                    Q_DESC => q.desc,
                    Q_DRIVER => q.driver,
                    _ => q.device,
                };
                half.get(full)
            }
        };
        Some(v)
    }

    fn device_config_read(&self, off: u64, size: u8) -> Option<u64> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::from(size))?;
        if !matches!(size, 1 | 2 | 4 | 8) || end > self.info.config_len {
            return None;
        }
        let mut b = [0u8; 8];
        b[..usize::from(size)].copy_from_slice(&self.info.config[start..end]);
        Some(u64::from_le_bytes(b))
    }

    /// A guest write of `size` bytes of `value` at `offset` in BAR 0.
    pub fn bar_write(&mut self, offset: u64, size: u8, value: u64) -> Result<Event, RegError> {
        let bad = RegError::BadAccess { offset, size };
        let (region, off) = region(offset).ok_or(bad)?;
        match region {
            Region::Common => self.common_write(offset, off, size, value),
            Region::Isr | Region::MsixPba => Err(RegError::ReadOnly { offset }),
            Region::Device if self.device_config_read(off, size).is_some() && size <= 4 => {
                Ok(Event::DeviceConfigWrite {
                    offset: off as u32,
                    size,
                    value: value as u32,
                })
            }
            Region::Notify if size == 2 && off.is_multiple_of(u64::from(NOTIFY_MULTIPLIER)) => {
                let queue = (off / u64::from(NOTIFY_MULTIPLIER)) as u16;
                // Without VIRTIO_F_NOTIFICATION_DATA the driver writes the queue's index.
                let ok = self.queue(queue).is_some_and(|q| q.enabled) && value == u64::from(queue);
                if !ok {
                    return Err(RegError::Notify { queue, value });
                }
                Ok(Event::Notify { queue })
            }
            Region::MsixTable if size == 4 => Ok(self.msix_write(off, value as u32)),
            _ => Err(bad),
        }
    }

    fn common_write(
        &mut self,
        offset: u64,
        off: u64,
        size: u8,
        value: u64,
    ) -> Result<Event, RegError> {
        use field::*;
        let read_only = Err(RegError::ReadOnly { offset });
        match (off, size) {
            (DFSELECT, 4) => self.device_feature_select = value as u32,
            (GFSELECT, 4) => self.driver_feature_select = value as u32,
            (GF, 4) => self
                .neg
                .write_driver_features(self.driver_feature_select, value as u32)
                .map_err(RegError::Status)?,
            (MSIX, 2) => self.config_vector = vector(value as u16),
            (STATUS, 1) => return self.status_write(value as u8),
            (Q_SELECT, 2) => self.queue_select = value as u16,
            (Q_SIZE, 2) => self.selected_mut()?.size = value as u16,
            (Q_MSIX, 2) => self.selected_mut()?.msix_vector = vector(value as u16),
            (Q_ENABLE, 2) => return self.queue_enable(value),
            (DF, 4) | (NUMQ, 2) | (GENERATION, 1) | (Q_NOFF, 2) => return read_only,
            (Q_NDATA | Q_RESET | ADMIN_INDEX | ADMIN_NUM, 2) => return read_only,
            _ => {
                let (base, half) =
                    split64(off, size).ok_or(RegError::BadAccess { offset, size })?;
                let q = self.selected_mut()?;
                let slot = match base {
                    Q_DESC => &mut q.desc,
                    Q_DRIVER => &mut q.driver,
                    _ => &mut q.device,
                };
                *slot = half.set(*slot, value);
            }
        }
        Ok(Event::None)
    }

    fn status_write(&mut self, value: u8) -> Result<Event, RegError> {
        match self.neg.write_status(value) {
            StatusChange::Reset => {
                self.reset();
                Ok(Event::Reset)
            }
            StatusChange::Set(bits) => Ok(Event::StatusSet(bits)),
            StatusChange::FeaturesRefused(e) => Ok(Event::FeaturesRefused(e)),
            StatusChange::Refused(e) => Err(RegError::Status(e)),
        }
    }

    fn queue_enable(&mut self, value: u64) -> Result<Event, RegError> {
        let queue = self.queue_select;
        let features_ok = self.neg.negotiated().is_some();
        let q = self.selected_mut()?;
        if value != 1 {
            return Err(RegError::QueueEnableValue { queue, value });
        }
        if !features_ok {
            return Err(RegError::QueueBeforeFeaturesOk { queue });
        }
        let layout = q.layout();
        layout
            .check_shape(q.max_size)
            .map_err(|error| RegError::QueueLayout { queue, error })?;
        q.enabled = true;
        Ok(Event::QueueEnabled { queue, layout })
    }

    fn msix_write(&mut self, off: u64, value: u32) -> Event {
        let (vector, dword) = ((off / 16) as usize, off % 16 / 4);
        let e = &mut self.msix.table[vector];
        match dword {
            0 => e.address_low = value,
            1 => e.address_high = value,
            2 => e.data = value,
            _ => e.vector_control = value & VECTOR_CONTROL_MASK,
        }
        let deliver = self.take_pending(vector);
        Event::MsixEntry {
            vector: vector as u16,
            deliver,
        }
    }

    /// The message of `vector` if it is pending and may now be sent (pending bit cleared).
    pub(crate) fn take_pending(&mut self, vector: usize) -> Option<MsiMessage> {
        let bit = 1u32 << vector;
        if self.msix.pending & bit == 0 || self.masked(vector) {
            return None;
        }
        self.msix.pending &= !bit;
        let e = &self.msix.table[vector];
        Some(MsiMessage {
            address: e.address(),
            data: e.data,
        })
    }

    fn masked(&self, vector: usize) -> bool {
        self.msix.function_mask || self.msix.table[vector].masked()
    }

    /// Raises `irq`: sets the ISR bit where the spec asks (§4.1.4.5.1) and returns what to
    /// deliver.
    pub fn raise(&mut self, irq: Irq) -> Delivery {
        let vector = match irq {
            Irq::Config => {
                self.isr.set(self.isr.get() | 2);
                self.config_vector
            }
            Irq::Queue(q) => {
                if !self.msix.enabled {
                    self.isr.set(self.isr.get() | 1);
                }
                self.queue(q).map_or(NO_VECTOR, |q| q.msix_vector)
            }
        };
        if !self.msix.enabled || vector == NO_VECTOR {
            return Delivery::NotSent;
        }
        let v = usize::from(vector);
        if self.masked(v) {
            self.msix.pending |= 1 << v;
            return Delivery::Pending;
        }
        let e = &self.msix.table[v];
        Delivery::Msi(MsiMessage {
            address: e.address(),
            data: e.data,
        })
    }
}

/// A vector the driver wrote: kept if it names a table entry, else NO_VECTOR (which is how
/// the driver learns the mapping failed, §4.1.5.1.2.1).
fn vector(v: u16) -> u16 {
    if usize::from(v) < MSIX_VECTORS {
        v
    } else {
        NO_VECTOR
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    Common,
    Isr,
    Device,
    Notify,
    MsixTable,
    MsixPba,
}

/// The structure at `offset` of BAR 0 and the offset inside it.
fn region(offset: u64) -> Option<(Region, u64)> {
    let table_len = (MSIX_VECTORS * MSIX_ENTRY_SIZE) as u32;
    let regions = [
        (Region::Common, COMMON_OFFSET, COMMON_LEN),
        (Region::Isr, ISR_OFFSET, ISR_LEN),
        (Region::Device, DEVICE_OFFSET, DEVICE_CONFIG_MAX as u32),
        (Region::Notify, NOTIFY_OFFSET, NOTIFY_LEN),
        (Region::MsixTable, MSIX_TABLE_OFFSET, table_len),
        (Region::MsixPba, MSIX_PBA_OFFSET, 8),
    ];
    regions.iter().find_map(|&(r, start, len)| {
        let off = offset.checked_sub(u64::from(start))?;
        (off < u64::from(len)).then_some((r, off))
    })
}

/// Which part of a 64-bit field an access covers (drivers may write the halves, §4.1.3.1).
#[derive(Clone, Copy)]
enum Half {
    Full,
    Low,
    High,
}

impl Half {
    fn get(self, v: u64) -> u64 {
        match self {
            Half::Full => v,
            Half::Low => v & 0xFFFF_FFFF,
            Half::High => v >> 32,
        }
    }

    fn set(self, old: u64, v: u64) -> u64 {
        match self {
            Half::Full => v,
            Half::Low => (old & !0xFFFF_FFFF) | (v & 0xFFFF_FFFF),
            Half::High => (old & 0xFFFF_FFFF) | (v << 32),
        }
    }
}

/// The 64-bit queue address field an access hits, and which part of it.
fn split64(off: u64, size: u8) -> Option<(u64, Half)> {
    [field::Q_DESC, field::Q_DRIVER, field::Q_DEVICE]
        .into_iter()
        .find_map(|base| match (off.checked_sub(base)?, size) {
            (0, 8) => Some((base, Half::Full)),
            (0, 4) => Some((base, Half::Low)),
            (4, 4) => Some((base, Half::High)),
            _ => None,
        })
}

#[cfg(test)]
#[path = "transport_tests.rs"]
pub(crate) mod tests;
