//! Fuzz targets of the virtio device side (see `docs/fuzzing.md`): everything in a virtqueue and
//! every register write comes from the guest.
//!
//! - `fuzz_virtio_chain`: guest RAM whose first bytes (descriptor table, available ring,
//!   indirect tables, buffers) are the input; the device pops chains until the ring is empty
//!   or it breaks. The walker agrees with a reference walk written apart (accepted or not, and
//!   the same buffers). An accepted chain has its head in the table, every buffer inside RAM, no
//!   readable buffer after a writable one, at most the segment and byte limits, and walks the
//!   same twice; a refusal's claim holds (the range really is outside RAM, the length really
//!   is no table, ...); a broken queue stays broken; never more chains than the queue size.
//! - `fuzz_virtio_blk`: the same RAM served by a virtio-blk device over a RAM disk: the guest
//!   bytes that change lie in the chain's writable buffers, the status is 0, 1 or 2, the used
//!   length is 0 or all writable bytes, and the disk changes only for an accepted write to a
//!   writable disk.
//! - `fuzz_virtio_pci`: sequences of BAR and configuration-space accesses: an enabled queue has
//!   a valid shape and came after FEATURES_OK, negotiated features were offered and include
//!   VERSION_1, status bits keep their order, the identity never changes.

use devices::pci::ConfigSpace;
use hostfuzz::proptest::prelude::*;
use hostfuzz::Bytes;
use pagetable::addr::Gpa;
use virtio::blk::{self, req_type, Disk, RamDisk};
use virtio::chain::{walk, Chain, ChainError, ChainLimits, Segment, MAX_SEGMENTS};
use virtio::driver::DriverQueue;
use virtio::mem::{GuestMemory, SliceMemory};
use virtio::queue::{DeviceQueue, QueueError, QueueFeatures};
use virtio::ring::{DescFlags, Descriptor, QueueLayout};
use virtio::status::DeviceStatus;
use virtio::transport::{DeviceInfo, DeviceType, VirtioPci, MAX_QUEUES};

const BASE: u64 = 0x10000;
const RAM: usize = 0x2000;
const SIZE: u16 = 16;
const LAYOUT: QueueLayout = QueueLayout {
    size: SIZE,
    desc: Gpa(BASE),
    avail: Gpa(BASE + 0x100),
    used: Gpa(BASE + 0x200),
};

// ---------------------------------------------------------------------------------------------
// A well-formed image: four requests, direct and indirect.

fn header(type_: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&type_.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

fn image() -> Vec<u8> {
    let mut v = vec![0u8; RAM];
    let mut mem = SliceMemory::new(Gpa(BASE), &mut v);
    let mut q = DriverQueue::new(&mut mem, LAYOUT).unwrap();
    let (n, w, i) = (
        DescFlags::NEXT.bits(),
        DescFlags::WRITE.bits(),
        DescFlags::INDIRECT.bits(),
    );
    let d = |addr: u64, len: u32, flags: u16, next: u16| Descriptor {
        addr: BASE + addr,
        len,
        flags,
        next,
    };
    let put = |mem: &mut SliceMemory, at: u64, b: &[u8]| mem.write(Gpa(BASE + at), b).unwrap();
    // Read sectors 1-2 (direct).
    put(&mut mem, 0x300, &header(req_type::IN, 1));
    q.set_desc(&mut mem, 0, d(0x300, 16, n, 1)).unwrap();
    q.set_desc(&mut mem, 1, d(0x400, 1024, w | n, 2)).unwrap();
    q.set_desc(&mut mem, 2, d(0x800, 1, w, 0)).unwrap();
    // Write sector 5 (indirect).
    put(&mut mem, 0x310, &header(req_type::OUT, 5));
    q.set_desc(&mut mem, 3, d(0x900, 48, i, 0)).unwrap();
    put(&mut mem, 0x900, &d(0x310, 16, n, 1).to_bytes());
    put(&mut mem, 0x910, &d(0xA00, 512, n, 2).to_bytes());
    put(&mut mem, 0x920, &d(0x801, 1, w, 0).to_bytes());
    put(&mut mem, 0xA00, &[0x5A; 512]);
    // Flush, GET_ID.
    put(&mut mem, 0x320, &header(req_type::FLUSH, 0));
    q.set_desc(&mut mem, 5, d(0x320, 16, n, 9)).unwrap();
    q.set_desc(&mut mem, 9, d(0x802, 1, w, 0)).unwrap();
    put(&mut mem, 0x330, &header(req_type::GET_ID, 0));
    q.set_desc(&mut mem, 6, d(0x330, 16, n, 7)).unwrap();
    q.set_desc(&mut mem, 7, d(0xC00, 20, w | n, 8)).unwrap();
    q.set_desc(&mut mem, 8, d(0x803, 1, w, 0)).unwrap();
    for head in [0, 3, 5, 6] {
        q.publish(&mut mem, head).unwrap();
    }
    // Only what the rings and buffers use (the corpus file stays small).
    v.truncate(0xC20);
    v
}

fn ram_from(input: &[u8]) -> Vec<u8> {
    let mut ram = vec![0u8; RAM];
    let n = input.len().min(RAM);
    ram[..n].copy_from_slice(&input[..n]);
    ram
}

// ---------------------------------------------------------------------------------------------
// fuzz_virtio_chain

/// The chain at `head` as §2.7.5 describes it, written apart from the walker: loops found by
/// revisiting an entry, the limits checked after the fact. `None` where the walker must refuse.
fn reference(mem: &SliceMemory, head: u16, limits: &ChainLimits) -> Option<Vec<Segment>> {
    let (n, w, ind) = (DescFlags::NEXT, DescFlags::WRITE, DescFlags::INDIRECT);
    if head >= SIZE {
        return None;
    }
    let mut table = (LAYOUT.desc.0, u32::from(SIZE), false);
    let mut seen = std::collections::HashSet::new();
    let mut i = u32::from(head);
    let mut segs: Vec<Segment> = Vec::new();
    loop {
        if !seen.insert(i) {
            return None;
        }
        let mut raw = [0u8; 16];
        mem.read(Gpa(table.0 + 16 * u64::from(i)), &mut raw).ok()?;
        let d = Descriptor::from_bytes(&raw);
        let flags = DescFlags::from_bits(d.flags)?;
        let end = d.addr.checked_add(u64::from(d.len))?;
        if end > BASE + RAM as u64 || d.addr < BASE {
            return None;
        }
        if flags.contains(ind) {
            let bad = table.2
                || !limits.indirect
                || flags.contains(n)
                || d.len == 0
                || !d.len.is_multiple_of(16);
            if bad {
                return None;
            }
            table = (d.addr, d.len / 16, true);
            seen.clear();
            i = 0;
            continue;
        }
        let writable = flags.contains(w);
        if !writable && segs.iter().any(|s| s.writable) {
            return None;
        }
        segs.push(Segment {
            addr: Gpa(d.addr),
            len: d.len,
            writable,
        });
        let total: u64 = segs.iter().map(|s| u64::from(s.len)).sum();
        if segs.len() > limits.max_segments.min(MAX_SEGMENTS) || total > limits.max_bytes {
            return None;
        }
        if !flags.contains(n) {
            return Some(segs);
        }
        if u32::from(d.next) >= table.1 {
            return None;
        }
        i = u32::from(d.next);
    }
}

fn check_chain(c: &Chain, mem: &SliceMemory, limits: &ChainLimits) {
    assert_eq!(
        reference(mem, c.head(), limits).as_deref(),
        Some(c.segments()),
        "the reference walk differs"
    );
    assert!(c.head() < SIZE);
    let segs = c.segments();
    assert!(!segs.is_empty() && segs.len() <= limits.max_segments.min(MAX_SEGMENTS));
    let first_writable = segs.iter().position(|s| s.writable).unwrap_or(segs.len());
    assert!(
        segs[first_writable..].iter().all(|s| s.writable),
        "readable after writable"
    );
    let mut sum = 0u64;
    for s in segs {
        assert!(mem.contains(s.addr, u64::from(s.len)), "{s:?} outside RAM");
        sum += u64::from(s.len);
    }
    assert_eq!(sum, c.readable_len() + c.writable_len());
    assert!(sum <= limits.max_bytes);
    let again = walk(mem, &LAYOUT, c.head(), limits).expect("a second walk");
    assert_eq!(again.segments(), segs);
}

fn check_error(e: QueueError, mem: &SliceMemory, limits: &ChainLimits) {
    match e {
        QueueError::AvailIndexJump { last, idx, size } => assert!(idx.wrapping_sub(last) > size),
        QueueError::Chain { head, error } => match error {
            _ if reference(mem, head, limits).is_some() => {
                panic!("refused ({error:?}) a chain the reference accepts")
            }
            ChainError::HeadOutOfRange { head: h, size } => assert!(h == head && h >= size),
            ChainError::OutsideRam { addr, len } => assert!(!mem.contains(addr, u64::from(len))),
            ChainError::AddressOverflow { addr, len } => {
                assert!(addr.checked_add(u64::from(len)).is_none())
            }
            ChainError::IndirectLength { len } => assert!(len == 0 || len % 16 != 0),
            ChainError::IndirectNotNegotiated => assert!(!limits.indirect),
            ChainError::TooManySegments { max } => {
                assert_eq!(max, limits.max_segments.min(MAX_SEGMENTS))
            }
            ChainError::TooLong { max } => assert_eq!(max, limits.max_bytes),
            ChainError::UnknownFlags { flags } => assert_ne!(flags & !7, 0),
            ChainError::Memory(_) => panic!("the descriptor table is inside RAM"),
            _ => {}
        },
        QueueError::Memory(_) | QueueError::Broken => panic!("unexpected {e:?}"),
    }
}

/// Pops every chain; calls `serve` on each accepted one. Returns whether any was accepted.
fn pop_all(
    mem: &mut SliceMemory,
    limits: ChainLimits,
    event_idx: bool,
    mut serve: impl FnMut(&Chain, &mut SliceMemory) -> u32,
) -> bool {
    let mut q = DeviceQueue::new(LAYOUT, QueueFeatures { event_idx }, limits);
    let mut accepted = false;
    let mut pops = 0;
    loop {
        match q.pop(mem) {
            Ok(None) => break,
            Ok(Some(c)) => {
                pops += 1;
                assert!(pops <= SIZE, "more chains than the queue holds");
                check_chain(&c, mem, &limits);
                let len = serve(&c, mem);
                q.push_used(mem, c.head(), len).unwrap();
                accepted = true;
            }
            Err(e) => {
                check_error(e, mem, &limits);
                assert!(q.is_broken());
                assert_eq!(q.pop(mem).unwrap_err(), QueueError::Broken);
                break;
            }
        }
    }
    // The driver's view of the used ring agrees with what was pushed.
    if !q.is_broken() {
        let _ = q.should_interrupt(mem).unwrap();
        let _ = q.enable_notifications(mem).unwrap();
    }
    accepted
}

#[test]
fn fuzz_virtio_chain() {
    hostfuzz::run(
        "virtio-chain",
        20_000,
        |b| Some((Bytes(b), true, 128u8, false)),
        || {
            (
                hostfuzz::inputs("virtio-chain", vec![image()], RAM),
                any::<bool>(),
                any::<u8>(),
                any::<bool>(),
            )
        },
        |(b, indirect, segs, event_idx): (Bytes, bool, u8, bool)| {
            let mut ram = ram_from(&b);
            let mut mem = SliceMemory::new(Gpa(BASE), &mut ram);
            let max_bytes = if segs & 1 == 0 {
                1 << 32
            } else {
                u64::from(segs) * 64
            };
            let limits = ChainLimits {
                max_segments: usize::from(segs).max(1),
                max_bytes,
                indirect,
            };
            pop_all(&mut mem, limits, event_idx, |_, _| 0)
        },
    );
}

// ---------------------------------------------------------------------------------------------
// fuzz_virtio_blk

const DISK: Disk = Disk {
    capacity: 8,
    read_only: false,
    seg_max: 8,
    id: *b"didvisor-fuzz-disk\0\0",
};

fn in_writable(c: &Chain, gpa: u64) -> bool {
    c.segments()
        .iter()
        .any(|s| s.writable && gpa >= s.addr.0 && gpa < s.addr.0 + u64::from(s.len))
}

fn last_writable_byte(c: &Chain) -> Option<u64> {
    c.segments()
        .iter()
        .rev()
        .find(|s| s.writable && s.len > 0)
        .map(|s| s.addr.0 + u64::from(s.len) - 1)
}

#[test]
fn fuzz_virtio_blk() {
    hostfuzz::run(
        "virtio-blk",
        20_000,
        |b| Some((Bytes(b), false, true)),
        || {
            (
                hostfuzz::inputs("virtio-blk", vec![image()], RAM),
                any::<bool>(),
                any::<bool>(),
            )
        },
        |(b, read_only, flush): (Bytes, bool, bool)| {
            let disk = Disk { read_only, ..DISK };
            let mut store: Vec<u8> = (0..4096).map(|i| (i / 512) as u8).collect();
            let mut ram = ram_from(&b);
            let mut mem = SliceMemory::new(Gpa(BASE), &mut ram);
            let mut served = false;
            pop_all(&mut mem, disk.chain_limits(true), true, |c, mem| {
                let before = mem.bytes().to_vec();
                let disk_before = store.clone();
                let mut storage = RamDisk::new(&mut store);
                let outcome = blk::serve(c, mem, &disk, flush, &mut storage);
                let mut header = [0u8; 4];
                let type_ = c
                    .read(mem, 0, &mut header)
                    .map(|()| u32::from_le_bytes(header))
                    .ok();
                for (i, (x, y)) in before.iter().zip(mem.bytes()).enumerate() {
                    if x != y {
                        assert!(
                            in_writable(c, BASE + i as u64),
                            "wrote outside the chain at {i:#x}"
                        );
                    }
                }
                let Ok(used) = outcome else {
                    assert_eq!(outcome, Err(blk::BlkError::NoStatus));
                    assert_eq!(c.writable_len(), 0);
                    assert_eq!(store, disk_before);
                    return 0;
                };
                served = true;
                let at = last_writable_byte(c).expect("a status byte");
                let status = mem.bytes()[(at - BASE) as usize];
                assert!(status <= blk::status::UNSUPP, "status {status}");
                assert!(used == 0 || u64::from(used) == c.writable_len());
                if store != disk_before {
                    assert!(
                        !read_only && status == blk::status::OK && type_ == Some(req_type::OUT)
                    );
                }
                used
            });
            served
        },
    );
}

// ---------------------------------------------------------------------------------------------
// fuzz_virtio_pci

fn device() -> VirtioPci {
    let (config, config_len) = DISK.config();
    let mut queue_max_sizes = [0; MAX_QUEUES];
    queue_max_sizes[0] = 128;
    queue_max_sizes[1] = 16;
    VirtioPci::new(DeviceInfo {
        device_type: DeviceType::Block,
        features: DISK.features(),
        queue_max_sizes,
        queues: 2,
        config,
        config_len,
    })
}

/// One access: kind (BAR read/write, config read/write), size, offset, value: 12 bytes.
fn op(kind: u8, size: u8, offset: u16, value: u64) -> Vec<u8> {
    let mut v = vec![kind, size.trailing_zeros() as u8];
    v.extend_from_slice(&offset.to_le_bytes());
    v.extend_from_slice(&value.to_le_bytes());
    v
}

/// Linux's bring-up of one queue, as accesses.
fn bring_up() -> Vec<u8> {
    let (bw, br) = (1, 0);
    [
        op(br, 2, 0x12, 0),
        op(bw, 1, 0x14, 1),
        op(bw, 1, 0x14, 3),
        op(bw, 4, 0x00, 1),
        op(br, 4, 0x04, 0),
        op(bw, 4, 0x08, 0),
        op(bw, 4, 0x0C, 1 << 29 | 1 << 28 | 1 << 9),
        op(bw, 4, 0x08, 1),
        op(bw, 4, 0x0C, 1),
        op(bw, 1, 0x14, 11),
        op(br, 1, 0x14, 0),
        op(bw, 2, 0x16, 0),
        op(bw, 2, 0x18, 64),
        op(bw, 2, 0x1A, 1),
        op(bw, 4, 0x20, 0x10_0000),
        op(bw, 4, 0x24, 0),
        op(bw, 8, 0x28, 0x10_1000),
        op(bw, 8, 0x30, 0x10_2000),
        op(bw, 2, 0x1C, 1),
        op(bw, 1, 0x14, 15),
        op(bw, 2, 0x3000, 0),
        op(3, 4, 0x40, 0xC000_0000),
        op(bw, 4, 0x4010, 0xFEE0_0000),
        op(bw, 4, 0x401C, 0),
        op(bw, 1, 0x14, 0),
    ]
    .concat()
}

fn check_device(t: &VirtioPci) {
    let s = t.status().status();
    let order = [
        (DeviceStatus::DRIVER_OK, DeviceStatus::FEATURES_OK),
        (DeviceStatus::FEATURES_OK, DeviceStatus::DRIVER),
        (DeviceStatus::DRIVER, DeviceStatus::ACKNOWLEDGE),
    ];
    for (bit, before) in order {
        assert!(!s.contains(bit) || s.contains(before), "status {s:?}");
    }
    if let Some(f) = t.negotiated() {
        assert_eq!(f & !t.status().offered(), 0);
        assert_ne!(f & virtio::status::feature::VERSION_1, 0);
    }
    for q in 0..2 {
        let r = t.queue(q).unwrap();
        if r.enabled {
            assert!(t.negotiated().is_some());
            r.layout().check_shape(r.max_size).unwrap();
        }
    }
    assert_eq!(t.read(0), 0x1042_1AF4);
}

#[test]
fn fuzz_virtio_pci() {
    hostfuzz::run_bytes("virtio-pci", 20_000, vec![bring_up()], 1200, |b| {
        let mut t = device();
        let mut enabled = false;
        for o in b.chunks_exact(12) {
            let size = [1u8, 2, 4, 8][usize::from(o[1] % 4)];
            let offset = u16::from_le_bytes([o[2], o[3]]);
            let value = u64::from_le_bytes(o[4..12].try_into().unwrap());
            match o[0] % 4 {
                0 => {
                    let _ = t.bar_read(u64::from(offset), size);
                }
                1 => {
                    if let Ok(virtio::transport::Event::QueueEnabled { .. }) =
                        t.bar_write(u64::from(offset), size, value)
                    {
                        enabled = true;
                    }
                }
                2 => {
                    let _ = t.read(offset % 0x1000);
                }
                _ => {
                    let mask = [0xFF, 0xFFFF, u32::MAX, u32::MAX][usize::from(o[1] % 4)]
                        << (8 * (offset % 4));
                    t.write((offset % 0x1000) & !3, value as u32, mask);
                    while t.pop_event().is_some() {}
                }
            }
            check_device(&t);
        }
        enabled
    });
}

/// The seed gets past every check: four requests served with status OK.
#[test]
fn seed_image_serves_four_requests() {
    let mut ram = ram_from(&image());
    let mut mem = SliceMemory::new(Gpa(BASE), &mut ram);
    let mut store: Vec<u8> = (0..4096).map(|i| (i / 512) as u8).collect();
    let mut used = Vec::new();
    let accepted = pop_all(&mut mem, DISK.chain_limits(true), true, |c, mem| {
        let len = blk::serve(c, mem, &DISK, true, &mut RamDisk::new(&mut store)).unwrap();
        used.push((c.head(), len));
        len
    });
    assert!(accepted);
    assert_eq!(used, [(0, 1025), (3, 1), (5, 1), (6, 21)]);
    assert_eq!(
        &mem.bytes()[0x800..0x804],
        &[0, 0, 0, 0],
        "four OK statuses"
    );
    assert!(
        mem.bytes()[0x400..0x600].iter().all(|b| *b == 1),
        "sector 1 read"
    );
    assert!(
        store[5 * 512..6 * 512].iter().all(|b| *b == 0x5A),
        "sector 5 written"
    );
    assert_eq!(&mem.bytes()[0xC00..0xC12], b"didvisor-fuzz-disk");
}

/// Rewrites the seed corpus: `cargo test -p virtio --test fuzz -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing a builder"]
fn write_seed_corpus() {
    hostfuzz::write_seed("virtio-chain", "four-requests.bin", &image());
    hostfuzz::write_seed("virtio-blk", "four-requests.bin", &image());
    hostfuzz::write_seed("virtio-pci", "linux-bring-up.bin", &bring_up());
}
