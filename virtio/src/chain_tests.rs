use super::*;
use crate::driver::DriverQueue;
use crate::mem::SliceMemory;

const RAM: usize = 0x10000;
const LAYOUT: QueueLayout = QueueLayout {
    size: 8,
    desc: Gpa(0),
    avail: Gpa(0x100),
    used: Gpa(0x200),
};
const R: u16 = 0;
const N: u16 = DescFlags::NEXT.bits();
const W: u16 = DescFlags::WRITE.bits();
const I: u16 = DescFlags::INDIRECT.bits();

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> Descriptor {
    Descriptor {
        addr,
        len,
        flags,
        next,
    }
}

/// Walks a chain whose descriptor table is `table` (head 0), with indirect tables written at
/// their addresses from `extra`.
fn walk_table(
    table: &[Descriptor],
    extra: &[(u64, &[Descriptor])],
    limits: ChainLimits,
) -> Result<Chain, ChainError> {
    let mut v = vec![0u8; RAM];
    let mut mem = SliceMemory::new(Gpa(0), &mut v);
    let q = DriverQueue::new(&mut mem, LAYOUT).unwrap();
    for (i, d) in table.iter().enumerate() {
        q.set_desc(&mut mem, i as u16, *d).unwrap();
    }
    for (at, ds) in extra {
        for (i, d) in ds.iter().enumerate() {
            mem.write(Gpa(at + 16 * i as u64), &d.to_bytes()).unwrap();
        }
    }
    walk(&mem, &LAYOUT, 0, &limits)
}

fn walk1(table: &[Descriptor]) -> Result<Chain, ChainError> {
    walk_table(table, &[], ChainLimits::DEFAULT)
}

#[test]
fn readable_then_writable_chain() {
    let c = walk1(&[
        desc(0x1000, 16, N, 1),
        desc(0x2000, 512, W | N, 2),
        desc(0x3000, 1, W, 0),
    ])
    .unwrap();
    assert_eq!(c.head(), 0);
    assert_eq!(c.readable_len(), 16);
    assert_eq!(c.writable_len(), 513);
    assert_eq!(
        c.segments(),
        &[
            Segment {
                addr: Gpa(0x1000),
                len: 16,
                writable: false
            },
            Segment {
                addr: Gpa(0x2000),
                len: 512,
                writable: true
            },
            Segment {
                addr: Gpa(0x3000),
                len: 1,
                writable: true
            },
        ]
    );
}

#[test]
fn head_out_of_range() {
    let mut v = vec![0u8; RAM];
    let mem = SliceMemory::new(Gpa(0), &mut v);
    let r = walk(&mem, &LAYOUT, 8, &ChainLimits::DEFAULT);
    assert_eq!(
        r.unwrap_err(),
        ChainError::HeadOutOfRange { head: 8, size: 8 }
    );
}

#[test]
fn next_out_of_range() {
    let r = walk1(&[desc(0x1000, 4, N, 8)]);
    assert_eq!(
        r.unwrap_err(),
        ChainError::NextOutOfRange {
            next: 8,
            entries: 8
        }
    );
}

#[test]
fn loop_is_longer_than_the_queue() {
    let r = walk1(&[desc(0x1000, 4, N, 1), desc(0x1000, 4, N, 0)]);
    assert_eq!(r.unwrap_err(), ChainError::Loop { entries: 8 });
    // A self-loop inside an indirect table of 3 entries.
    let ind = [
        desc(0x1000, 4, N, 1),
        desc(0x1000, 4, N, 1),
        desc(0x1000, 4, 0, 0),
    ];
    let r = walk_table(
        &[desc(0x4000, 48, I, 0)],
        &[(0x4000, &ind)],
        ChainLimits::DEFAULT,
    );
    assert_eq!(r.unwrap_err(), ChainError::Loop { entries: 3 });
}

#[test]
fn too_many_segments() {
    let limits = ChainLimits {
        max_segments: 2,
        ..ChainLimits::DEFAULT
    };
    let table = [
        desc(0x1000, 4, N, 1),
        desc(0x1000, 4, N, 2),
        desc(0x1000, 4, 0, 0),
    ];
    let r = walk_table(&table, &[], limits);
    assert_eq!(r.unwrap_err(), ChainError::TooManySegments { max: 2 });
    assert!(
        walk_table(&table[..2], &[], limits).is_err(),
        "2 still ends with NEXT"
    );
    let ok = [desc(0x1000, 4, N, 1), desc(0x1000, 4, 0, 0)];
    assert_eq!(walk_table(&ok, &[], limits).unwrap().segments().len(), 2);
}

#[test]
fn unknown_flags() {
    let r = walk1(&[desc(0x1000, 4, 0x10, 0)]);
    assert_eq!(r.unwrap_err(), ChainError::UnknownFlags { flags: 0x10 });
}

#[test]
fn indirect_table_is_walked() {
    let ind = [
        desc(0x1000, 16, N, 2),
        desc(0x9999_0000, 1, 0, 0),
        desc(0x2000, 1, W, 0),
    ];
    // A direct readable buffer, then the indirect table (allowed, §2.7.5.3.2); WRITE on the
    // indirect descriptor itself is ignored.
    let table = [desc(0x3000, 8, N, 1), desc(0x4000, 48, I | W, 0)];
    let c = walk_table(&table, &[(0x4000, &ind)], ChainLimits::DEFAULT).unwrap();
    assert_eq!(c.readable_len(), 24);
    assert_eq!(c.writable_len(), 1);
    assert_eq!(c.segments().len(), 3);
}

#[test]
fn indirect_not_negotiated() {
    let limits = ChainLimits {
        indirect: false,
        ..ChainLimits::DEFAULT
    };
    let r = walk_table(
        &[desc(0x4000, 16, I, 0)],
        &[(0x4000, &[desc(0x1000, 4, 0, 0)])],
        limits,
    );
    assert_eq!(r.unwrap_err(), ChainError::IndirectNotNegotiated);
}

#[test]
fn nested_indirect() {
    let ind = [desc(0x5000, 16, I, 0)];
    let r = walk_table(
        &[desc(0x4000, 16, I, 0)],
        &[(0x4000, &ind)],
        ChainLimits::DEFAULT,
    );
    assert_eq!(r.unwrap_err(), ChainError::NestedIndirect);
}

#[test]
fn indirect_with_next() {
    let r = walk_table(
        &[desc(0x4000, 16, I | N, 1)],
        &[(0x4000, &[desc(0x1000, 4, 0, 0)])],
        ChainLimits::DEFAULT,
    );
    assert_eq!(r.unwrap_err(), ChainError::IndirectWithNext);
}

#[test]
fn indirect_length() {
    for len in [0, 8, 17] {
        let r = walk1(&[desc(0x4000, len, I, 0)]);
        assert_eq!(r.unwrap_err(), ChainError::IndirectLength { len });
    }
}

#[test]
fn next_inside_indirect_is_checked_against_the_table() {
    let ind = [desc(0x1000, 4, N, 2), desc(0x1000, 4, 0, 0)];
    let r = walk_table(
        &[desc(0x4000, 32, I, 0)],
        &[(0x4000, &ind)],
        ChainLimits::DEFAULT,
    );
    assert_eq!(
        r.unwrap_err(),
        ChainError::NextOutOfRange {
            next: 2,
            entries: 2
        }
    );
}

#[test]
fn address_overflow() {
    let r = walk1(&[desc(u64::MAX - 1, 4, 0, 0)]);
    assert_eq!(
        r.unwrap_err(),
        ChainError::AddressOverflow {
            addr: u64::MAX - 1,
            len: 4
        }
    );
}

#[test]
fn outside_ram() {
    let r = walk1(&[desc(RAM as u64 - 4, 8, 0, 0)]);
    assert_eq!(
        r.unwrap_err(),
        ChainError::OutsideRam {
            addr: Gpa(RAM as u64 - 4),
            len: 8
        }
    );
    // An indirect table outside RAM too.
    let r = walk1(&[desc(RAM as u64, 16, I, 0)]);
    assert_eq!(
        r.unwrap_err(),
        ChainError::OutsideRam {
            addr: Gpa(RAM as u64),
            len: 16
        }
    );
}

#[test]
fn too_long() {
    let limits = ChainLimits {
        max_bytes: 1000,
        ..ChainLimits::DEFAULT
    };
    let r = walk_table(
        &[desc(0x1000, 600, N, 1), desc(0x2000, 600, W, 0)],
        &[],
        limits,
    );
    assert_eq!(r.unwrap_err(), ChainError::TooLong { max: 1000 });
}

#[test]
fn writable_before_readable() {
    let r = walk1(&[desc(0x1000, 4, W | N, 1), desc(0x2000, 4, R, 0)]);
    assert_eq!(r.unwrap_err(), ChainError::WritableBeforeReadable);
    // Also when the writable buffer is empty.
    let r = walk1(&[desc(0x1000, 0, W | N, 1), desc(0x2000, 4, R, 0)]);
    assert_eq!(r.unwrap_err(), ChainError::WritableBeforeReadable);
}

#[test]
fn descriptor_table_unreadable() {
    let mut v = vec![0u8; 0x78];
    let mem = SliceMemory::new(Gpa(0), &mut v);
    let r = walk(&mem, &LAYOUT, 7, &ChainLimits::DEFAULT);
    assert_eq!(
        r.unwrap_err(),
        ChainError::Memory(OutOfRange {
            gpa: Gpa(0x70),
            len: 16
        })
    );
}

#[test]
fn reads_and_writes_span_segments() {
    let mut v = vec![0u8; RAM];
    let mut mem = SliceMemory::new(Gpa(0), &mut v);
    mem.write(Gpa(0x1000), b"abc").unwrap();
    mem.write(Gpa(0x2000), b"defg").unwrap();
    let q = DriverQueue::new(&mut mem, LAYOUT).unwrap();
    for (i, d) in [
        desc(0x1000, 3, N, 1),
        desc(0x2000, 4, N, 2),
        desc(0x3000, 2, W | N, 3),
        desc(0x3800, 0, W | N, 4),
        desc(0x4000, 3, W, 0),
    ]
    .iter()
    .enumerate()
    {
        q.set_desc(&mut mem, i as u16, *d).unwrap();
    }
    let c = walk(&mem, &LAYOUT, 0, &ChainLimits::DEFAULT).unwrap();
    let mut buf = [0u8; 5];
    c.read(&mem, 1, &mut buf).unwrap();
    assert_eq!(&buf, b"bcdef");
    assert_eq!(
        c.read(&mem, 3, &mut buf),
        Err(AccessError::PastEnd {
            offset: 3,
            len: 5,
            available: 7
        })
    );
    c.write(&mut mem, 1, b"XYZ").unwrap();
    assert_eq!(&mem.bytes()[0x3000..0x3002], b"\0X");
    assert_eq!(&mem.bytes()[0x4000..0x4003], b"YZ\0");
    assert!(c.write(&mut mem, 4, b"ab").is_err());
    assert_eq!(
        c.write(&mut mem, u64::MAX, b"a").unwrap_err(),
        AccessError::PastEnd {
            offset: u64::MAX,
            len: 1,
            available: 5
        }
    );
}
