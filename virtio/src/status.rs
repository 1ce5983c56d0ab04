//! Device status and feature negotiation (virtio 1.2 §2.1, §2.2, §3.1, ch. 6), independent of
//! the transport.
//!
//! The driver walks the status through ACKNOWLEDGE, DRIVER, (feature writes), FEATURES_OK,
//! (queue setup), DRIVER_OK (§3.1.1). The device refuses FEATURES_OK when the driver accepted
//! a feature the device did not offer or did not accept `VIRTIO_F_VERSION_1` (the bit then
//! reads back clear, which is how the driver learns it, §3.1.1 step 6). Writing 0 resets the
//! device. Each refused write is reported, never silently dropped.

use bitflags::bitflags;

bitflags! {
    /// The device status field (§2.1).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct DeviceStatus: u8 {
        const ACKNOWLEDGE = 1;
        const DRIVER = 2;
        const DRIVER_OK = 4;
        const FEATURES_OK = 8;
        /// Set by the device only: it hit an error it cannot recover from.
        const DEVICE_NEEDS_RESET = 0x40;
        /// The driver gave up on the device.
        const FAILED = 0x80;
    }
}

/// Feature bits independent of the device type (ch. 6).
pub mod feature {
    /// `VIRTIO_F_INDIRECT_DESC`: indirect descriptor tables (§2.7.5.3).
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// `VIRTIO_F_EVENT_IDX`: `used_event` / `avail_event` (§2.7.7, §2.7.10).
    pub const EVENT_IDX: u64 = 1 << 29;
    /// `VIRTIO_F_VERSION_1`: a virtio 1.x (non-legacy) device; required here.
    pub const VERSION_1: u64 = 1 << 32;
}

/// Why FEATURES_OK was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureError {
    /// The driver accepted bits the device did not offer.
    NotOffered { bits: u64 },
    /// The driver did not accept `VIRTIO_F_VERSION_1`.
    NoVersion1,
}

/// Why a status or feature write was refused (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusError {
    /// The driver may not clear bits except by writing 0 (§2.1.1).
    ClearsBits { bits: u8 },
    /// A bit set before the one it follows (§3.1.1 order).
    OutOfOrder { bit: u8 },
    /// A bit this device does not implement (SUSPEND, reserved), or DEVICE_NEEDS_RESET.
    UnknownBits { bits: u8 },
    /// Feature bits written outside DRIVER..FEATURES_OK.
    FeaturesLocked,
}

/// What a status write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    /// 0 was written: the device and its queues return to their reset state.
    Reset,
    /// These bits were set (possibly none: the same value written again).
    Set(DeviceStatus),
    /// FEATURES_OK (and DRIVER_OK with it) was not set; the other new bits were.
    FeaturesRefused(FeatureError),
    Refused(StatusError),
}

/// One device's status and features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiation {
    offered: u64,
    driver: u64,
    status: DeviceStatus,
}

impl Negotiation {
    /// A device offering `offered` (which should include `VIRTIO_F_VERSION_1`), just reset.
    pub const fn new(offered: u64) -> Self {
        Negotiation {
            offered,
            driver: 0,
            status: DeviceStatus::empty(),
        }
    }

    pub fn status(&self) -> DeviceStatus {
        self.status
    }

    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Feature bits as the driver wrote them (valid or not).
    pub fn driver_features(&self) -> u64 {
        self.driver
    }

    /// The negotiated features, once FEATURES_OK is set.
    pub fn negotiated(&self) -> Option<u64> {
        self.status
            .contains(DeviceStatus::FEATURES_OK)
            .then_some(self.driver)
    }

    /// Whether the device may process its queues: DRIVER_OK, and neither FAILED nor
    /// DEVICE_NEEDS_RESET (§2.1.2).
    pub fn live(&self) -> bool {
        self.status.contains(DeviceStatus::DRIVER_OK)
            && !self
                .status
                .intersects(DeviceStatus::FAILED | DeviceStatus::DEVICE_NEEDS_RESET)
    }

    /// 32 bits of the offered features: `select` 0 is bits 0-31, 1 is 32-63, others 0.
    pub fn device_features_word(&self, select: u32) -> u32 {
        word(self.offered, select)
    }

    /// 32 bits of the driver's features, selected the same way.
    pub fn driver_features_word(&self, select: u32) -> u32 {
        word(self.driver, select)
    }

    /// The driver writes 32 feature bits: allowed after DRIVER and before FEATURES_OK. Words
    /// past bit 63 hold nothing and must be 0.
    pub fn write_driver_features(&mut self, select: u32, value: u32) -> Result<(), StatusError> {
        let open = self.status.contains(DeviceStatus::DRIVER)
            && !self.status.contains(DeviceStatus::FEATURES_OK);
        if !open {
            return Err(StatusError::FeaturesLocked);
        }
        match select {
            0 => self.driver = (self.driver & !0xFFFF_FFFF) | u64::from(value),
            1 => self.driver = (self.driver & 0xFFFF_FFFF) | u64::from(value) << 32,
            _ if value == 0 => {}
            // A bit above 63 cannot have been offered: the same check as at FEATURES_OK,
            // reported now since there is nowhere to keep it.
            _ => return Err(StatusError::FeaturesLocked),
        }
        Ok(())
    }

    /// The driver writes the status field.
    pub fn write_status(&mut self, value: u8) -> StatusChange {
        if value == 0 {
            *self = Negotiation::new(self.offered);
            return StatusChange::Reset;
        }
        let new = DeviceStatus::from_bits_retain(value);
        let old = self.status;
        let unknown = value & !DeviceStatus::all().bits();
        if unknown != 0 {
            return StatusChange::Refused(StatusError::UnknownBits { bits: unknown });
        }
        // Drivers write back what they read, DEVICE_NEEDS_RESET included; they may not set it.
        let needs_reset = DeviceStatus::DEVICE_NEEDS_RESET;
        if new.contains(needs_reset) && !old.contains(needs_reset) {
            return StatusChange::Refused(StatusError::UnknownBits {
                bits: needs_reset.bits(),
            });
        }
        let cleared = old.difference(new).difference(needs_reset);
        if !cleared.is_empty() {
            return StatusChange::Refused(StatusError::ClearsBits {
                bits: cleared.bits(),
            });
        }
        let added = new.difference(old);
        let order = [
            (DeviceStatus::DRIVER, DeviceStatus::ACKNOWLEDGE),
            (DeviceStatus::FEATURES_OK, DeviceStatus::DRIVER),
            (DeviceStatus::DRIVER_OK, DeviceStatus::FEATURES_OK),
        ];
        for (bit, after) in order {
            if added.contains(bit) && !new.contains(after) {
                return StatusChange::Refused(StatusError::OutOfOrder { bit: bit.bits() });
            }
        }
        if added.contains(DeviceStatus::FEATURES_OK) {
            if let Err(e) = self.check_features() {
                let keep = added.difference(DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK);
                self.status |= keep;
                return StatusChange::FeaturesRefused(e);
            }
        }
        self.status |= added;
        StatusChange::Set(added)
    }

    fn check_features(&self) -> Result<(), FeatureError> {
        let extra = self.driver & !self.offered;
        if extra != 0 {
            return Err(FeatureError::NotOffered { bits: extra });
        }
        if self.driver & feature::VERSION_1 == 0 {
            return Err(FeatureError::NoVersion1);
        }
        Ok(())
    }

    /// The device broke (a malformed ring): sets DEVICE_NEEDS_RESET. Returns whether the
    /// driver must get a configuration-change notification (DRIVER_OK was set, §2.1.2).
    pub fn set_needs_reset(&mut self) -> bool {
        self.status |= DeviceStatus::DEVICE_NEEDS_RESET;
        self.status.contains(DeviceStatus::DRIVER_OK)
    }
}

fn word(bits: u64, select: u32) -> u32 {
    match select {
        0 => bits as u32,
        1 => (bits >> 32) as u32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: u64 = feature::VERSION_1 | feature::EVENT_IDX | 1 << 9;
    const A: u8 = DeviceStatus::ACKNOWLEDGE.bits();
    const D: u8 = DeviceStatus::DRIVER.bits();
    const F: u8 = DeviceStatus::FEATURES_OK.bits();
    const OK: u8 = DeviceStatus::DRIVER_OK.bits();

    fn to_driver() -> Negotiation {
        let mut n = Negotiation::new(OFFER);
        assert_eq!(
            n.write_status(A),
            StatusChange::Set(DeviceStatus::ACKNOWLEDGE)
        );
        assert_eq!(
            n.write_status(A | D),
            StatusChange::Set(DeviceStatus::DRIVER)
        );
        n
    }

    #[test]
    fn linux_like_sequence() {
        let mut n = to_driver();
        assert_eq!(n.device_features_word(0), 1 << 29 | 1 << 9);
        assert_eq!(n.device_features_word(1), 1);
        assert_eq!(n.device_features_word(2), 0);
        n.write_driver_features(0, 1 << 29).unwrap();
        n.write_driver_features(1, 1).unwrap();
        assert_eq!(n.driver_features_word(1), 1);
        assert_eq!(n.negotiated(), None);
        assert_eq!(
            n.write_status(A | D | F),
            StatusChange::Set(DeviceStatus::FEATURES_OK)
        );
        assert_eq!(
            n.negotiated(),
            Some(feature::VERSION_1 | feature::EVENT_IDX)
        );
        assert!(!n.live());
        assert_eq!(
            n.write_status(A | D | F | OK),
            StatusChange::Set(DeviceStatus::DRIVER_OK)
        );
        assert!(n.live());
        assert_eq!(
            n.write_status(A | D | F | OK),
            StatusChange::Set(DeviceStatus::empty())
        );
    }

    #[test]
    fn features_not_offered_are_refused() {
        let mut n = to_driver();
        n.write_driver_features(1, 1).unwrap();
        n.write_driver_features(0, 1 << 28).unwrap();
        assert_eq!(
            n.write_status(A | D | F),
            StatusChange::FeaturesRefused(FeatureError::NotOffered { bits: 1 << 28 })
        );
        assert!(
            !n.status().contains(DeviceStatus::FEATURES_OK),
            "reads back clear"
        );
        assert_eq!(n.negotiated(), None);
        // The driver may fix its choice and try again.
        n.write_driver_features(0, 0).unwrap();
        assert_eq!(
            n.write_status(A | D | F),
            StatusChange::Set(DeviceStatus::FEATURES_OK)
        );
    }

    #[test]
    fn version_1_is_required() {
        let mut n = to_driver();
        n.write_driver_features(0, 1 << 9).unwrap();
        assert_eq!(
            n.write_status(A | D | F),
            StatusChange::FeaturesRefused(FeatureError::NoVersion1)
        );
    }

    #[test]
    fn features_locked_outside_the_window() {
        let mut n = Negotiation::new(OFFER);
        assert_eq!(
            n.write_driver_features(0, 0),
            Err(StatusError::FeaturesLocked)
        );
        let mut n = to_driver();
        n.write_driver_features(1, 1).unwrap();
        assert_eq!(
            n.write_driver_features(2, 1),
            Err(StatusError::FeaturesLocked)
        );
        n.write_status(A | D | F);
        assert_eq!(
            n.write_driver_features(0, 1 << 9),
            Err(StatusError::FeaturesLocked)
        );
        assert_eq!(n.negotiated(), Some(feature::VERSION_1));
    }

    #[test]
    fn order_and_clearing() {
        let mut n = Negotiation::new(OFFER);
        assert_eq!(
            n.write_status(D),
            StatusChange::Refused(StatusError::OutOfOrder { bit: D })
        );
        let mut n = to_driver();
        assert_eq!(
            n.write_status(A | D | OK),
            StatusChange::Refused(StatusError::OutOfOrder { bit: OK })
        );
        assert_eq!(
            n.write_status(A),
            StatusChange::Refused(StatusError::ClearsBits { bits: D })
        );
        assert_eq!(
            n.write_status(A | D | 0x10),
            StatusChange::Refused(StatusError::UnknownBits { bits: 0x10 })
        );
        assert_eq!(
            n.write_status(A | D | 0x40),
            StatusChange::Refused(StatusError::UnknownBits { bits: 0x40 })
        );
        assert_eq!(n.status(), DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        // FAILED any time.
        assert_eq!(
            n.write_status(A | D | 0x80),
            StatusChange::Set(DeviceStatus::FAILED)
        );
        assert!(!n.live());
    }

    #[test]
    fn reset_clears_everything() {
        let mut n = to_driver();
        n.write_driver_features(1, 1).unwrap();
        n.write_status(A | D | F | OK);
        assert_eq!(n.write_status(0), StatusChange::Reset);
        assert_eq!(n, Negotiation::new(OFFER));
        assert_eq!(n.driver_features(), 0);
    }

    #[test]
    fn needs_reset_is_kept_through_driver_writes() {
        let mut n = to_driver();
        assert!(
            !n.set_needs_reset(),
            "no DRIVER_OK yet: no config interrupt"
        );
        n.write_driver_features(1, 1).unwrap();
        let s = n.status().bits();
        assert_eq!(
            n.write_status(s | F),
            StatusChange::Set(DeviceStatus::FEATURES_OK)
        );
        assert_eq!(
            n.write_status(s | F | OK),
            StatusChange::Set(DeviceStatus::DRIVER_OK)
        );
        assert!(!n.live());
        assert!(n.set_needs_reset());
        // A driver writing what it read without the bit does not clear it.
        assert_eq!(
            n.write_status(A | D | F | OK),
            StatusChange::Set(DeviceStatus::empty())
        );
        assert!(n.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
        assert_eq!(n.write_status(0), StatusChange::Reset);
        assert_eq!(n.status(), DeviceStatus::empty());
    }
}
