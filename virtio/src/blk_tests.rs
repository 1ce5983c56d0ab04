use pagetable::addr::Gpa;

use super::*;
use crate::chain::walk;
use crate::driver::DriverQueue;
use crate::mem::SliceMemory;
use crate::ring::{DescFlags, Descriptor, QueueLayout};

const LAYOUT: QueueLayout = QueueLayout {
    size: 16,
    desc: Gpa(0),
    avail: Gpa(0x200),
    used: Gpa(0x400),
};
const N: u16 = DescFlags::NEXT.bits();
const W: u16 = DescFlags::WRITE.bits();
const HDR: u64 = 0x1000;
const DATA: u64 = 0x2000;
const STATUS: u64 = 0x3000;

const DISK: Disk = Disk {
    capacity: 8,
    read_only: false,
    seg_max: 4,
    id: *b"didvisor-disk-0\0\0\0\0\0",
};

struct Failing;

impl BlockStorage for Failing {
    fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), IoError> {
        Err(IoError)
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), IoError> {
        Err(IoError)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Err(IoError)
    }
}

fn header(type_: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&type_.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// Runs a request made of `descs` (chained in order) with the header at HDR, against a disk
/// whose sector i is filled with byte i; returns (used len, status byte, guest RAM, disk).
fn run(
    descs: &[(u64, u32, u16)],
    hdr: [u8; 16],
    disk: Disk,
    flush: bool,
) -> (Result<u32, BlkError>, u8, Vec<u8>, Vec<u8>) {
    let mut store: Vec<u8> = (0..disk.capacity as usize * 512)
        .map(|i| (i / 512) as u8)
        .collect();
    let mut ram = RamDisk::new(&mut store);
    let (used, status, guest) = run_on(descs, hdr, disk, flush, &mut ram);
    (used, status, guest, store)
}

fn run_on(
    descs: &[(u64, u32, u16)],
    hdr: [u8; 16],
    disk: Disk,
    flush: bool,
    storage: &mut impl BlockStorage,
) -> (Result<u32, BlkError>, u8, Vec<u8>) {
    let mut v = vec![0xEEu8; 0x10000];
    let mut mem = SliceMemory::new(Gpa(0), &mut v);
    mem.write(Gpa(HDR), &hdr).unwrap();
    for i in 0..1024u64 {
        mem.write(Gpa(DATA + i), &[(i % 251) as u8]).unwrap();
    }
    let q = DriverQueue::new(&mut mem, LAYOUT).unwrap();
    for (i, &(addr, len, flags)) in descs.iter().enumerate() {
        let next = if i + 1 < descs.len() { N } else { 0 };
        q.set_desc(
            &mut mem,
            i as u16,
            Descriptor {
                addr,
                len,
                flags: flags | next,
                next: i as u16 + 1,
            },
        )
        .unwrap();
    }
    let chain = walk(&mem, &LAYOUT, 0, &DISK.chain_limits(true)).unwrap();
    let used = serve(&chain, &mut mem, &disk, flush, storage);
    let status = mem.bytes()[STATUS as usize];
    (used, status, v)
}

#[test]
fn read_copies_sectors() {
    let (used, st, guest, _) = run(
        &[(HDR, 16, 0), (DATA, 1024, W), (STATUS, 1, W)],
        header(req_type::IN, 3),
        DISK,
        true,
    );
    assert_eq!(used, Ok(1025));
    assert_eq!(st, status::OK);
    assert!(guest[DATA as usize..][..512].iter().all(|b| *b == 3));
    assert!(guest[DATA as usize + 512..][..512].iter().all(|b| *b == 4));
}

#[test]
fn write_with_header_and_data_split_anyhow() {
    // Header in two pieces, the second piece followed by the first data bytes.
    let mut v = [0u8; 16];
    v.copy_from_slice(&header(req_type::OUT, 2));
    let descs = [(HDR, 8, 0), (HDR + 8, 8, 0), (DATA, 512, 0), (STATUS, 1, W)];
    let (used, st, guest, disk) = run(&descs, v, DISK, true);
    assert_eq!((used, st), (Ok(1), status::OK));
    assert_eq!(&disk[1024..1536], &guest[DATA as usize..][..512]);
    assert!(
        disk[1536..2048].iter().all(|b| *b == 3),
        "sector 3 untouched"
    );
}

#[test]
fn out_of_range() {
    let (used, st, guest, _) = run(
        &[(HDR, 16, 0), (DATA, 1024, W), (STATUS, 1, W)],
        header(req_type::IN, 7),
        DISK,
        true,
    );
    assert_eq!((used, st), (Ok(0), status::IOERR));
    let untouched = guest[DATA as usize..][..1024]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 251) as u8);
    assert!(untouched, "no data written");
    let (_, st, _, disk) = run(
        &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, W)],
        header(req_type::OUT, u64::MAX),
        DISK,
        true,
    );
    assert_eq!(st, status::IOERR);
    assert!(disk.iter().enumerate().all(|(i, b)| *b == (i / 512) as u8));
}

#[test]
fn partial_sectors() {
    let (_, st, _, _) = run(
        &[(HDR, 16, 0), (DATA, 100, W), (STATUS, 1, W)],
        header(req_type::IN, 0),
        DISK,
        true,
    );
    assert_eq!(st, status::IOERR);
}

#[test]
fn read_only_disk_refuses_writes() {
    let ro = Disk {
        read_only: true,
        ..DISK
    };
    assert_ne!(ro.features() & blk_feature::RO, 0);
    let (_, st, _, disk) = run(
        &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, W)],
        header(req_type::OUT, 0),
        ro,
        true,
    );
    assert_eq!(st, status::IOERR);
    assert!(disk[..512].iter().all(|b| *b == 0));
    let (_, st, _, _) = run(
        &[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)],
        header(req_type::IN, 0),
        ro,
        true,
    );
    assert_eq!(st, status::OK, "reads still work");
}

#[test]
fn flush_only_when_negotiated() {
    let mut store = vec![0u8; 4096];
    let mut ram = RamDisk::new(&mut store);
    let (used, st, _) = run_on(
        &[(HDR, 16, 0), (STATUS, 1, W)],
        header(req_type::FLUSH, 0),
        DISK,
        true,
        &mut ram,
    );
    assert_eq!((used, st, ram.flushes), (Ok(1), status::OK, 1));
    let (_, st, _) = run_on(
        &[(HDR, 16, 0), (STATUS, 1, W)],
        header(req_type::FLUSH, 0),
        DISK,
        false,
        &mut ram,
    );
    assert_eq!((st, ram.flushes), (status::UNSUPP, 1));
}

#[test]
fn get_id() {
    let (used, st, guest, _) = run(
        &[(HDR, 16, 0), (DATA, 32, W), (STATUS, 1, W)],
        header(req_type::GET_ID, 0),
        DISK,
        true,
    );
    assert_eq!((used, st), (Ok(33), status::OK));
    assert_eq!(&guest[DATA as usize..][..20], &DISK.id);
    assert!(
        guest[DATA as usize + 20..][..12].iter().all(|b| *b == 0),
        "NUL-padded"
    );
}

#[test]
fn unknown_type_is_unsupported() {
    let (used, st, _, _) = run(&[(HDR, 16, 0), (STATUS, 1, W)], header(11, 0), DISK, true);
    assert_eq!((used, st), (Ok(1), status::UNSUPP));
}

#[test]
fn no_status_byte() {
    let (used, _, _, _) = run(&[(HDR, 16, 0)], header(req_type::IN, 0), DISK, true);
    assert_eq!(used, Err(BlkError::NoStatus));
}

#[test]
fn short_header() {
    let (_, st, _, _) = run(
        &[(HDR, 12, 0), (STATUS, 1, W)],
        header(req_type::IN, 0),
        DISK,
        true,
    );
    assert_eq!(st, status::IOERR);
}

#[test]
fn surplus_buffers() {
    // A write with writable data besides the status; a read with readable data after the header.
    let (_, st, _, disk) = run(
        &[
            (HDR, 16, 0),
            (DATA, 512, 0),
            (DATA + 512, 512, W),
            (STATUS, 1, W),
        ],
        header(req_type::OUT, 0),
        DISK,
        true,
    );
    assert_eq!(st, status::IOERR);
    assert!(disk[..512].iter().all(|b| *b == 0));
    let (_, st, _, _) = run(
        &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, W)],
        header(req_type::IN, 0),
        DISK,
        true,
    );
    assert_eq!(st, status::IOERR);
}

#[test]
fn storage_failure() {
    let (used, st, _) = run_on(
        &[(HDR, 16, 0), (DATA, 512, W), (STATUS, 1, W)],
        header(req_type::IN, 0),
        DISK,
        true,
        &mut Failing,
    );
    assert_eq!((used, st), (Ok(0), status::IOERR));
}

#[test]
fn config_layout() {
    let (c, len) = DISK.config();
    assert_eq!(len, 0x3C);
    assert_eq!(&c[..8], &8u64.to_le_bytes());
    assert_eq!(&c[0x0C..0x10], &4u32.to_le_bytes());
    assert_eq!(&c[0x14..0x18], &512u32.to_le_bytes());
    assert_eq!(DISK.chain_limits(false).max_segments, 6);
}

#[test]
fn ram_disk_bounds() {
    let mut store = vec![0u8; 1000];
    let mut ram = RamDisk::new(&mut store);
    assert_eq!(ram.sectors(), 1);
    let mut buf = [0u8; 512];
    assert_eq!(ram.read(1, &mut buf), Err(IoError));
    assert_eq!(ram.read(u64::MAX, &mut buf), Err(IoError));
    assert_eq!(ram.read(0, &mut buf), Ok(()));
}

#[test]
fn fnv1a64_known_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
}
