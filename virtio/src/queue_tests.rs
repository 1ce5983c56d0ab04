use pagetable::addr::Gpa;

use super::*;
use crate::driver::DriverQueue;
use crate::mem::SliceMemory;
use crate::ring::{DescFlags, Descriptor};

const LAYOUT: QueueLayout = QueueLayout {
    size: 4,
    desc: Gpa(0),
    avail: Gpa(0x100),
    used: Gpa(0x200),
};

fn setup(v: &mut [u8], event_idx: bool) -> (SliceMemory<'_>, DriverQueue, DeviceQueue) {
    let mut mem = SliceMemory::new(Gpa(0), v);
    let drv = DriverQueue::new(&mut mem, LAYOUT).unwrap();
    for i in 0..4 {
        let d = Descriptor {
            addr: 0x1000 + 0x100 * i as u64,
            len: 0x10,
            flags: DescFlags::WRITE.bits(),
            next: 0,
        };
        drv.set_desc(&mut mem, i, d).unwrap();
    }
    let dev = DeviceQueue::new(LAYOUT, QueueFeatures { event_idx }, ChainLimits::DEFAULT);
    (mem, drv, dev)
}

#[test]
fn pop_and_push_round_trip() {
    let mut v = vec![0u8; 0x2000];
    let (mut mem, mut drv, mut dev) = setup(&mut v, false);
    assert!(dev.pop(&mem).unwrap().is_none());
    drv.publish(&mut mem, 2).unwrap();
    drv.publish(&mut mem, 0).unwrap();
    assert_eq!(dev.pending(&mem), Ok(2));
    let c = dev.pop(&mem).unwrap().unwrap();
    assert_eq!(c.head(), 2);
    assert_eq!(c.segments()[0].addr, Gpa(0x1200));
    assert_eq!(dev.pop(&mem).unwrap().unwrap().head(), 0);
    assert!(dev.pop(&mem).unwrap().is_none());
    dev.push_used(&mut mem, 2, 7).unwrap();
    let used = drv.pop_used(&mem).unwrap().unwrap();
    assert_eq!((used.id, used.len), (2, 7));
    assert_eq!(drv.pop_used(&mem).unwrap(), None);
}

#[test]
fn ring_indices_wrap() {
    let mut v = vec![0u8; 0x2000];
    let (mut mem, mut drv, mut dev) = setup(&mut v, true);
    for round in 0..70_000u32 {
        let head = (round % 4) as u16;
        drv.publish(&mut mem, head).unwrap();
        let c = dev.pop(&mem).unwrap().unwrap();
        assert_eq!(c.head(), head);
        dev.push_used(&mut mem, head, round).unwrap();
        assert_eq!(drv.pop_used(&mem).unwrap().unwrap().len, round);
    }
}

#[test]
fn avail_index_jump_breaks_the_queue() {
    let mut v = vec![0u8; 0x2000];
    let (mut mem, _drv, mut dev) = setup(&mut v, false);
    mem.write_u16(LAYOUT.avail_idx_addr(), 5).unwrap();
    assert_eq!(
        dev.pop(&mem).unwrap_err(),
        QueueError::AvailIndexJump {
            last: 0,
            idx: 5,
            size: 4
        }
    );
    assert!(dev.is_broken());
    assert_eq!(dev.pop(&mem).unwrap_err(), QueueError::Broken);
    assert_eq!(
        dev.push_used(&mut mem, 0, 0).unwrap_err(),
        QueueError::Broken
    );
    // Exactly `size` outstanding is fine.
    let (mut mem, _drv, mut dev) = setup(&mut v, false);
    mem.write_u16(LAYOUT.avail_idx_addr(), 4).unwrap();
    assert_eq!(dev.pending(&mem), Ok(4));
}

#[test]
fn malformed_chain_breaks_the_queue() {
    let mut v = vec![0u8; 0x2000];
    let (mut mem, mut drv, mut dev) = setup(&mut v, false);
    drv.publish(&mut mem, 9).unwrap();
    assert_eq!(
        dev.pop(&mem).unwrap_err(),
        QueueError::Chain {
            head: 9,
            error: ChainError::HeadOutOfRange { head: 9, size: 4 }
        }
    );
    assert!(dev.is_broken());
}

#[test]
fn no_interrupt_flag_without_event_idx() {
    let mut v = vec![0u8; 0x2000];
    let (mut mem, _drv, mut dev) = setup(&mut v, false);
    assert_eq!(dev.should_interrupt(&mem), Ok(false), "nothing used yet");
    dev.push_used(&mut mem, 0, 0).unwrap();
    assert_eq!(dev.should_interrupt(&mem), Ok(true));
    assert_eq!(dev.should_interrupt(&mem), Ok(false), "nothing new since");
    mem.write_u16(LAYOUT.avail_flags_addr(), AvailFlags::NO_INTERRUPT.bits())
        .unwrap();
    dev.push_used(&mut mem, 1, 0).unwrap();
    assert_eq!(dev.should_interrupt(&mem), Ok(false));
    // used_event means nothing here.
    mem.write_u16(LAYOUT.avail_flags_addr(), 0).unwrap();
    mem.write_u16(LAYOUT.used_event_addr(), 100).unwrap();
    dev.push_used(&mut mem, 2, 0).unwrap();
    assert_eq!(dev.should_interrupt(&mem), Ok(true));
}

#[test]
fn used_event_with_event_idx() {
    let mut v = vec![0u8; 0x2000];
    let (mut mem, _drv, mut dev) = setup(&mut v, true);
    // The flag is ignored with EVENT_IDX (§2.7.7.2).
    mem.write_u16(LAYOUT.avail_flags_addr(), 1).unwrap();
    mem.write_u16(LAYOUT.used_event_addr(), 2).unwrap();
    dev.push_used(&mut mem, 0, 0).unwrap(); // entry 0
    assert_eq!(dev.should_interrupt(&mem), Ok(false));
    dev.push_used(&mut mem, 1, 0).unwrap(); // entry 1
    dev.push_used(&mut mem, 2, 0).unwrap(); // entry 2 = used_event
    dev.push_used(&mut mem, 3, 0).unwrap();
    assert_eq!(
        dev.should_interrupt(&mem),
        Ok(true),
        "the batch wrote entry 2"
    );
    dev.push_used(&mut mem, 0, 0).unwrap();
    assert_eq!(dev.should_interrupt(&mem), Ok(false));
    assert_eq!(
        mem.full_barriers(),
        3,
        "one full barrier per decision with news"
    );
}

#[test]
fn polling_suppresses_kicks_without_event_idx() {
    let mut v = vec![0u8; 0x2000];
    let (mut mem, mut drv, mut dev) = setup(&mut v, false);
    dev.disable_notifications(&mut mem).unwrap();
    let old = drv.next_avail;
    drv.publish(&mut mem, 0).unwrap();
    assert!(!drv.must_kick(&mem, old, false).unwrap());
    dev.pop(&mem).unwrap().unwrap();
    assert_eq!(dev.enable_notifications(&mut mem), Ok(false));
    let old = drv.next_avail;
    drv.publish(&mut mem, 1).unwrap();
    assert!(drv.must_kick(&mem, old, false).unwrap());
}

#[test]
fn polling_suppresses_kicks_with_event_idx() {
    let mut v = vec![0u8; 0x2000];
    let (mut mem, mut drv, mut dev) = setup(&mut v, true);
    assert_eq!(dev.enable_notifications(&mut mem), Ok(false));
    let old = drv.next_avail;
    drv.publish(&mut mem, 0).unwrap();
    assert!(
        drv.must_kick(&mem, old, true).unwrap(),
        "avail_event 0 asks for the first"
    );
    dev.disable_notifications(&mut mem).unwrap();
    dev.pop(&mem).unwrap().unwrap();
    // Polling: avail_event stays at 0, behind the driver.
    for head in [1, 2, 3] {
        let old = drv.next_avail;
        drv.publish(&mut mem, head).unwrap();
        assert!(!drv.must_kick(&mem, old, true).unwrap());
        dev.pop(&mem).unwrap().unwrap();
    }
    assert_eq!(dev.enable_notifications(&mut mem), Ok(false));
    assert_eq!(mem.read_u16(LAYOUT.avail_event_addr()), Ok(4));
    let old = drv.next_avail;
    drv.publish(&mut mem, 0).unwrap();
    assert!(drv.must_kick(&mem, old, true).unwrap());
}

#[test]
fn enable_rechecks_for_chains_that_raced_in() {
    for event_idx in [false, true] {
        let mut v = vec![0u8; 0x2000];
        let (mut mem, mut drv, mut dev) = setup(&mut v, event_idx);
        dev.disable_notifications(&mut mem).unwrap();
        // The driver publishes while the device is still polling (no kick wanted)...
        let old = drv.next_avail;
        drv.publish(&mut mem, 3).unwrap();
        assert!(event_idx || !drv.must_kick(&mem, old, false).unwrap());
        // ...and the device, about to sleep, must notice it.
        let before = mem.full_barriers();
        assert_eq!(dev.enable_notifications(&mut mem), Ok(true));
        assert_eq!(mem.full_barriers(), before + 1);
        assert_eq!(dev.pop(&mem).unwrap().unwrap().head(), 3);
    }
}
