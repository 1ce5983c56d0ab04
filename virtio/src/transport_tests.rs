use super::*;
use crate::status::feature;

const A: u64 = DeviceStatus::ACKNOWLEDGE.bits() as u64;
const D: u64 = DeviceStatus::DRIVER.bits() as u64;
const F: u64 = DeviceStatus::FEATURES_OK.bits() as u64;
const OK: u64 = DeviceStatus::DRIVER_OK.bits() as u64;

pub(crate) fn info() -> DeviceInfo {
    let mut config = [0u8; DEVICE_CONFIG_MAX];
    config[..8].copy_from_slice(&0x1234u64.to_le_bytes());
    let mut queue_max_sizes = [0; MAX_QUEUES];
    queue_max_sizes[0] = 256;
    queue_max_sizes[1] = 64;
    DeviceInfo {
        device_type: DeviceType::Block,
        features: feature::VERSION_1 | feature::EVENT_IDX,
        queue_max_sizes,
        queues: 2,
        config,
        config_len: 0x3C,
    }
}

fn w(t: &mut VirtioPci, field: u64, size: u8, value: u64) -> Result<Event, RegError> {
    t.bar_write(u64::from(COMMON_OFFSET) + field, size, value)
}

fn r(t: &VirtioPci, field: u64, size: u8) -> u64 {
    t.bar_read(u64::from(COMMON_OFFSET) + field, size).unwrap()
}

/// ACKNOWLEDGE, DRIVER, VERSION_1 + EVENT_IDX, FEATURES_OK, as Linux's virtio_pci does.
fn negotiate(t: &mut VirtioPci) {
    w(t, field::STATUS, 1, A).unwrap();
    w(t, field::STATUS, 1, A | D).unwrap();
    w(t, field::GFSELECT, 4, 0).unwrap();
    w(t, field::GF, 4, 1 << 29).unwrap();
    w(t, field::GFSELECT, 4, 1).unwrap();
    w(t, field::GF, 4, 1).unwrap();
    assert_eq!(
        w(t, field::STATUS, 1, A | D | F),
        Ok(Event::StatusSet(DeviceStatus::FEATURES_OK))
    );
}

fn setup_queue(t: &mut VirtioPci, q: u16, size: u16) -> Result<Event, RegError> {
    w(t, field::Q_SELECT, 2, q.into()).unwrap();
    w(t, field::Q_SIZE, 2, size.into()).unwrap();
    w(t, field::Q_MSIX, 2, u64::from(q) + 1).unwrap();
    // Two 32-bit halves, as Linux's vp_iowrite64_twopart.
    w(t, field::Q_DESC, 4, 0x10_0000).unwrap();
    w(t, field::Q_DESC + 4, 4, 0x1).unwrap();
    w(t, field::Q_DRIVER, 8, 0x1_0010_1000).unwrap();
    w(t, field::Q_DEVICE, 8, 0x1_0010_2000).unwrap();
    w(t, field::Q_ENABLE, 2, 1)
}

#[test]
fn linux_like_bring_up() {
    let mut t = VirtioPci::new(info());
    assert_eq!(r(&t, field::NUMQ, 2), 2);
    assert_eq!(r(&t, field::MSIX, 2), u64::from(NO_VECTOR));
    w(&mut t, field::DFSELECT, 4, 1).unwrap();
    assert_eq!(r(&t, field::DF, 4), 1, "VERSION_1 is bit 32");
    w(&mut t, field::DFSELECT, 4, 0).unwrap();
    assert_eq!(r(&t, field::DF, 4), 1 << 29);
    negotiate(&mut t);
    assert_eq!(
        t.negotiated(),
        Some(feature::VERSION_1 | feature::EVENT_IDX)
    );
    w(&mut t, field::MSIX, 2, 0).unwrap();
    assert_eq!(r(&t, field::MSIX, 2), 0);
    assert_eq!(r(&t, field::Q_SIZE, 2), 256, "max size at reset");
    let layout = QueueLayout {
        size: 128,
        desc: Gpa(0x1_0010_0000),
        avail: Gpa(0x1_0010_1000),
        used: Gpa(0x1_0010_2000),
    };
    assert_eq!(
        setup_queue(&mut t, 0, 128),
        Ok(Event::QueueEnabled { queue: 0, layout })
    );
    assert_eq!(r(&t, field::Q_DESC + 4, 4), 1);
    assert_eq!(r(&t, field::Q_DESC, 8), 0x1_0010_0000);
    assert_eq!(r(&t, field::Q_ENABLE, 2), 1);
    assert_eq!(r(&t, field::Q_NOFF, 2), 0);
    assert_eq!(
        w(&mut t, field::STATUS, 1, A | D | F | OK),
        Ok(Event::StatusSet(DeviceStatus::DRIVER_OK))
    );
    assert!(t.status().live());
    // A kick for queue 0 at its notify address.
    assert_eq!(
        t.bar_write(u64::from(NOTIFY_OFFSET), 2, 0),
        Ok(Event::Notify { queue: 0 })
    );
    assert_eq!(
        t.bar_write(u64::from(NOTIFY_OFFSET + NOTIFY_MULTIPLIER), 2, 1),
        Err(RegError::Notify { queue: 1, value: 1 }),
        "queue 1 is not enabled"
    );
    assert_eq!(
        t.bar_write(u64::from(NOTIFY_OFFSET), 2, 5),
        Err(RegError::Notify { queue: 0, value: 5 })
    );
}

#[test]
fn queue_rules() {
    let mut t = VirtioPci::new(info());
    assert_eq!(
        setup_queue(&mut t, 0, 128),
        Err(RegError::QueueBeforeFeaturesOk { queue: 0 })
    );
    negotiate(&mut t);
    assert_eq!(
        setup_queue(&mut t, 1, 128),
        Err(RegError::QueueLayout {
            queue: 1,
            error: LayoutError::Size { size: 128, max: 64 }
        })
    );
    assert_eq!(
        setup_queue(&mut t, 1, 48),
        Err(RegError::QueueLayout {
            queue: 1,
            error: LayoutError::Size { size: 48, max: 64 }
        })
    );
    assert!(setup_queue(&mut t, 1, 64).is_ok());
    // Enabled: its configuration is frozen; disabling is not the driver's to do.
    assert_eq!(
        w(&mut t, field::Q_SIZE, 2, 32),
        Err(RegError::QueueEnabled { queue: 1 })
    );
    assert_eq!(
        w(&mut t, field::Q_DESC, 8, 0),
        Err(RegError::QueueEnabled { queue: 1 })
    );
    assert_eq!(
        w(&mut t, field::Q_ENABLE, 2, 0),
        Err(RegError::QueueEnabled { queue: 1 })
    );
    w(&mut t, field::Q_SELECT, 2, 0).unwrap();
    assert_eq!(
        w(&mut t, field::Q_ENABLE, 2, 0),
        Err(RegError::QueueEnableValue { queue: 0, value: 0 })
    );
    // A queue that does not exist reads size 0 and takes no configuration.
    w(&mut t, field::Q_SELECT, 2, 5).unwrap();
    assert_eq!(r(&t, field::Q_SIZE, 2), 0);
    assert_eq!(r(&t, field::Q_MSIX, 2), u64::from(NO_VECTOR));
    assert_eq!(
        w(&mut t, field::Q_SIZE, 2, 8),
        Err(RegError::NoQueue { queue: 5 })
    );
    // Misaligned descriptor table.
    let mut t = VirtioPci::new(info());
    negotiate(&mut t);
    w(&mut t, field::Q_SELECT, 2, 0).unwrap();
    w(&mut t, field::Q_DESC, 8, 0x1008).unwrap();
    assert!(matches!(
        w(&mut t, field::Q_ENABLE, 2, 1),
        Err(RegError::QueueLayout {
            queue: 0,
            error: LayoutError::Misaligned { .. }
        })
    ));
}

#[test]
fn reset_clears_the_device_but_not_msix() {
    let mut t = VirtioPci::new(info());
    negotiate(&mut t);
    setup_queue(&mut t, 0, 128).unwrap();
    t.bar_write(u64::from(MSIX_TABLE_OFFSET) + 8, 4, 0x41)
        .unwrap();
    assert_eq!(w(&mut t, field::STATUS, 1, 0), Ok(Event::Reset));
    assert_eq!(r(&t, field::STATUS, 1), 0);
    assert_eq!(r(&t, field::Q_ENABLE, 2), 0);
    assert_eq!(r(&t, field::Q_SIZE, 2), 256);
    assert_eq!(r(&t, field::Q_MSIX, 2), u64::from(NO_VECTOR));
    assert_eq!(t.negotiated(), None);
    assert_eq!(t.bar_read(u64::from(MSIX_TABLE_OFFSET) + 8, 4), Ok(0x41));
}

#[test]
fn refused_writes_are_reported() {
    let mut t = VirtioPci::new(info());
    for (f, size) in [
        (field::DF, 4),
        (field::NUMQ, 2),
        (field::GENERATION, 1),
        (field::Q_NOFF, 2),
        (field::Q_RESET, 2),
    ] {
        assert_eq!(w(&mut t, f, size, 1), Err(RegError::ReadOnly { offset: f }));
    }
    assert_eq!(
        w(&mut t, field::STATUS, 2, 1),
        Err(RegError::BadAccess {
            offset: field::STATUS,
            size: 2
        })
    );
    assert_eq!(
        w(&mut t, field::Q_DESC + 2, 4, 1),
        Err(RegError::BadAccess {
            offset: field::Q_DESC + 2,
            size: 4
        })
    );
    assert_eq!(
        w(&mut t, field::GF, 4, 1),
        Err(RegError::Status(StatusError::FeaturesLocked))
    );
    assert_eq!(
        w(&mut t, field::STATUS, 1, D),
        Err(RegError::Status(StatusError::OutOfOrder { bit: D as u8 }))
    );
    assert_eq!(
        t.bar_write(u64::from(ISR_OFFSET), 1, 0),
        Err(RegError::ReadOnly {
            offset: u64::from(ISR_OFFSET)
        })
    );
    assert_eq!(
        t.bar_read(0x7000, 4),
        Err(RegError::BadAccess {
            offset: 0x7000,
            size: 4
        })
    );
    assert_eq!(
        t.bar_read(u64::MAX, 1),
        Err(RegError::BadAccess {
            offset: u64::MAX,
            size: 1
        })
    );
    // An out-of-range vector reads back as NO_VECTOR (the spec's way of refusing it).
    w(&mut t, field::MSIX, 2, MSIX_VECTORS as u64).unwrap();
    assert_eq!(r(&t, field::MSIX, 2), u64::from(NO_VECTOR));
}

#[test]
fn features_refused_through_the_registers() {
    let mut t = VirtioPci::new(info());
    w(&mut t, field::STATUS, 1, A | D).unwrap();
    w(&mut t, field::GF, 4, 1 << 28).unwrap();
    assert_eq!(
        w(&mut t, field::STATUS, 1, A | D | F),
        Ok(Event::FeaturesRefused(FeatureError::NotOffered {
            bits: 1 << 28
        }))
    );
    assert_eq!(r(&t, field::STATUS, 1), A | D);
}

#[test]
fn device_config_reads_and_writes() {
    let mut t = VirtioPci::new(info());
    let base = u64::from(DEVICE_OFFSET);
    assert_eq!(t.bar_read(base, 8), Ok(0x1234));
    assert_eq!(t.bar_read(base, 4), Ok(0x1234));
    assert_eq!(t.bar_read(base + 1, 1), Ok(0x12));
    assert_eq!(t.bar_read(base + 0x3B, 1), Ok(0));
    assert_eq!(
        t.bar_read(base + 0x3B, 2),
        Err(RegError::BadAccess {
            offset: base + 0x3B,
            size: 2
        })
    );
    assert_eq!(
        t.bar_read(base, 3),
        Err(RegError::BadAccess {
            offset: base,
            size: 3
        })
    );
    assert_eq!(
        t.bar_write(base + 0x20, 1, 1),
        Ok(Event::DeviceConfigWrite {
            offset: 0x20,
            size: 1,
            value: 1
        })
    );
}

#[test]
fn interrupts_by_vector_mask_and_isr() {
    let mut t = VirtioPci::new(info());
    negotiate(&mut t);
    setup_queue(&mut t, 0, 128).unwrap(); // vector 1
    let entry = u64::from(MSIX_TABLE_OFFSET) + 16;
    t.bar_write(entry, 4, 0xFEE0_0000).unwrap();
    t.bar_write(entry + 8, 4, 0x31).unwrap();
    // MSI-X off: only the ISR bit, read-to-clear.
    assert_eq!(t.raise(Irq::Queue(0)), Delivery::NotSent);
    assert_eq!(t.bar_read(u64::from(ISR_OFFSET), 1), Ok(1));
    assert_eq!(t.bar_read(u64::from(ISR_OFFSET), 1), Ok(0));
    t.msix.enabled = true;
    // Entry 1 is still masked (reset state): pending.
    assert_eq!(t.raise(Irq::Queue(0)), Delivery::Pending);
    assert_eq!(t.bar_read(u64::from(MSIX_PBA_OFFSET), 8), Ok(0b10));
    let msg = MsiMessage {
        address: 0xFEE0_0000,
        data: 0x31,
    };
    assert_eq!(
        t.bar_write(entry + 12, 4, 0),
        Ok(Event::MsixEntry {
            vector: 1,
            deliver: Some(msg)
        }),
        "unmasking sends the pending message"
    );
    assert_eq!(t.bar_read(u64::from(MSIX_PBA_OFFSET), 8), Ok(0));
    assert_eq!(t.raise(Irq::Queue(0)), Delivery::Msi(msg));
    assert_eq!(
        t.bar_read(u64::from(ISR_OFFSET), 1),
        Ok(0),
        "no ISR bit with MSI-X"
    );
    // No vector for configuration changes; the ISR bit is set anyway (§4.1.4.5.1).
    assert_eq!(t.raise(Irq::Config), Delivery::NotSent);
    assert_eq!(t.bar_read(u64::from(ISR_OFFSET), 1), Ok(2));
    // A queue that does not exist has no vector.
    assert_eq!(t.raise(Irq::Queue(7)), Delivery::NotSent);
}

#[test]
fn needs_reset_interrupts_only_after_driver_ok() {
    let mut t = VirtioPci::new(info());
    negotiate(&mut t);
    assert_eq!(t.set_needs_reset(), None);
    w(&mut t, field::STATUS, 1, 0).unwrap();
    negotiate(&mut t);
    w(&mut t, field::STATUS, 1, A | D | F | OK).unwrap();
    assert_eq!(t.set_needs_reset(), Some(Delivery::NotSent));
    assert_eq!(r(&t, field::STATUS, 1) & 0x40, 0x40);
    assert!(!t.status().live());
}

#[test]
#[should_panic(expected = "virtio queue 1: maximum size 100")]
fn declared_queue_sizes_are_checked() {
    let mut i = info();
    i.queue_max_sizes[1] = 100;
    let _ = VirtioPci::new(i);
}
