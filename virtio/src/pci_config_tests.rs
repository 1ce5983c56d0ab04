use devices::pci::ConfigSpace;

use super::*;
use crate::transport::tests::info;
use crate::transport::{Delivery, Event, Irq};

fn cap_walk(t: &VirtioPci) -> Vec<(u16, u8, u8)> {
    // (offset, capability id, cfg_type)
    let mut out = Vec::new();
    let mut at = (t.read(0x34) & 0xFC) as u16;
    while at != 0 && out.len() < 16 {
        let d = t.read(at);
        let ty = (t.read(at) >> 24) as u8;
        out.push((at, d as u8, ty));
        at = ((d >> 8) & 0xFC) as u16;
    }
    out
}

#[test]
fn identity_and_capabilities() {
    let t = VirtioPci::new(info());
    assert_eq!(
        t.read(0),
        0x1042_1AF4,
        "vendor 0x1AF4, device 0x1040 + 2 (block)"
    );
    assert_eq!(t.read(0x08), 0x0100_0001, "class 01/00, revision 1");
    assert_eq!(t.read(0x2C), 0x0040_1AF4);
    assert_eq!(t.read(0x04) >> 16, u32::from(STATUS_CAPABILITIES_LIST));
    assert_eq!(t.read(0x3C) >> 8 & 0xFF, 0, "no INTx pin");
    let caps = cap_walk(&t);
    let ids: Vec<_> = caps
        .iter()
        .map(|c| (c.1, if c.1 == 9 { c.2 } else { 0 }))
        .collect();
    assert_eq!(ids, [(0x11, 0), (9, 1), (9, 2), (9, 3), (9, 4), (9, 5)]);
    // Common: BAR 0 at offset 0, 0x40 bytes.
    assert_eq!(t.read(COMMON_CAP + 4) & 0xFF, 0);
    assert_eq!(t.read(COMMON_CAP + 8), COMMON_OFFSET);
    assert_eq!(t.read(COMMON_CAP + 12), 0x40);
    // Notify: cap_len 20 and the multiplier after it.
    assert_eq!(t.read(NOTIFY_CAP) >> 16 & 0xFF, 20);
    assert_eq!(t.read(NOTIFY_CAP + 16), NOTIFY_MULTIPLIER);
    assert_eq!(t.read(DEVICE_CAP + 12), 0x3C);
    // MSI-X: table size 9 (N-1 = 8), table and PBA in BAR 0.
    assert_eq!(t.read(MSIX_CAP) >> 16, 8);
    assert_eq!(t.read(MSIX_CAP + 4), MSIX_TABLE_OFFSET);
    assert_eq!(t.read(MSIX_CAP + 8), MSIX_PBA_OFFSET);
}

#[test]
fn bar_sizing_and_moves() {
    let mut t = VirtioPci::new(info());
    t.write(0x10, 0xFFFF_FFFF, 0xFFFF_FFFF);
    t.write(0x14, 0xFFFF_FFFF, 0xFFFF_FFFF);
    assert_eq!(t.read(0x10), !(BAR_SIZE as u32 - 1) | 0b100);
    assert_eq!(t.read(0x14), 0xFFFF_FFFF);
    assert_eq!(t.pop_event(), None, "no events while decoding is off");
    t.write(0x10, 0xFE00_0000, 0xFFFF_FFFF);
    t.write(0x14, 0, 0xFFFF_FFFF);
    t.write(0x04, 0x6, 0xFFFF);
    assert_eq!(
        t.pop_event(),
        Some(ConfigEvent::MemoryDecode { enabled: true })
    );
    assert_eq!(t.read(0x04) & 0xFFFF, 0x6);
    t.write(0x10, 0xFD00_0000, 0xFFFF_FFFF);
    assert_eq!(
        t.pop_event(),
        Some(ConfigEvent::BarMoved {
            from: 0xFE00_0000,
            to: 0xFD00_0000
        })
    );
    assert_eq!(t.pop_event(), None);
    assert_eq!(t.bar0(), 0xFD00_0000);
    // I/O space is not writable (no I/O BAR).
    t.write(0x04, 0x1, 0xFFFF);
    assert_eq!(t.read(0x04) & 0x1, 0);
}

#[test]
fn msix_control_and_pending_delivery() {
    let mut t = VirtioPci::new(info());
    t.write(
        MSIX_CAP,
        u32::from(CONTROL_ENABLE | CONTROL_FUNCTION_MASK) << 16,
        0xFFFF_0000,
    );
    assert_eq!(
        t.pop_event(),
        Some(ConfigEvent::MsixControl {
            enabled: true,
            function_mask: true
        })
    );
    // The configuration vector 0, unmasked entry, but the function is masked.
    t.bar_write(u64::from(COMMON_OFFSET) + 0x10, 2, 0).unwrap();
    t.bar_write(u64::from(MSIX_TABLE_OFFSET), 4, 0xFEE0_1000)
        .unwrap();
    t.bar_write(u64::from(MSIX_TABLE_OFFSET) + 8, 4, 0x22)
        .unwrap();
    t.bar_write(u64::from(MSIX_TABLE_OFFSET) + 12, 4, 0)
        .unwrap();
    assert_eq!(t.raise(Irq::Config), Delivery::Pending);
    assert_eq!(t.take_deliverable(), None);
    // Clearing only byte 3's function mask (a byte write).
    t.write(MSIX_CAP, u32::from(CONTROL_ENABLE) << 16, 0xFF00_0000);
    assert_eq!(
        t.pop_event(),
        Some(ConfigEvent::MsixControl {
            enabled: true,
            function_mask: false
        })
    );
    let msg = t.take_deliverable().unwrap();
    assert_eq!((msg.address, msg.data), (0xFEE0_1000, 0x22));
    assert_eq!(t.take_deliverable(), None);
}

#[test]
fn pci_cfg_window_reaches_the_bar() {
    let mut t = VirtioPci::new(info());
    // Read num_queues (common + 0x12, 2 bytes) through the window.
    t.write(PCI_CFG_CAP + 4, 0, 0xFF);
    t.write(PCI_CFG_CAP + 8, 0x12, 0xFFFF_FFFF);
    t.write(PCI_CFG_CAP + 12, 2, 0xFFFF_FFFF);
    assert_eq!(t.read(PCI_CFG_CAP + 16), 2);
    // Write device_status = ACKNOWLEDGE.
    t.write(PCI_CFG_CAP + 8, 0x14, 0xFFFF_FFFF);
    t.write(PCI_CFG_CAP + 12, 1, 0xFFFF_FFFF);
    t.write(PCI_CFG_CAP + 16, 1, 0xFF);
    assert_eq!(
        t.pop_event(),
        Some(ConfigEvent::Window(Ok(Event::StatusSet(
            crate::status::DeviceStatus::ACKNOWLEDGE
        ))))
    );
    assert_eq!(t.status().status().bits(), 1);
    // A misaligned window is refused.
    t.write(PCI_CFG_CAP + 8, 0x13, 0xFFFF_FFFF);
    t.write(PCI_CFG_CAP + 12, 2, 0xFFFF_FFFF);
    t.write(PCI_CFG_CAP + 16, 0, 0xFFFF);
    assert!(matches!(t.pop_event(), Some(ConfigEvent::Window(Err(_)))));
    // Other config reads do not touch the ISR through the window.
    t.write(PCI_CFG_CAP + 8, ISR_OFFSET, 0xFFFF_FFFF);
    t.write(PCI_CFG_CAP + 12, 1, 0xFFFF_FFFF);
    t.raise(Irq::Config);
    let _ = t.read(PCI_CFG_CAP + 12);
    assert_eq!(t.read(PCI_CFG_CAP + 16), 2);
}

#[test]
fn event_queue_overflow_is_reported() {
    let mut t = VirtioPci::new(info());
    for i in 0..6 {
        t.write(0x04, if i % 2 == 0 { 2 } else { 0 }, 0xFFFF);
    }
    let events: Vec<_> = core::iter::from_fn(|| t.pop_event()).collect();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3], ConfigEvent::Overflow);
}

#[test]
fn firmware_places_bar0() {
    let mut t = VirtioPci::new(info());
    t.place_bar0(0xfe00_1234);
    assert_eq!(t.bar0(), 0xfe00_0000, "rounded down to the BAR's size");
    assert_eq!(
        t.read(0x10),
        0xfe00_0004,
        "64-bit memory BAR at the placed address"
    );
    assert_eq!(t.read(0x14), 0);
    assert!(
        !t.memory_decode(),
        "decoding stays off until the guest enables it"
    );
    assert_eq!(t.pop_event(), None, "placing is not a guest move");
}
