//! `end=virtio-bad`: a hostile driver of the virtio-blk device the hypervisor puts at 00:02.0
//! (`disk=` on the guest). Each scenario brings the device up (reset, ACKNOWLEDGE, DRIVER,
//! VERSION_1 only, FEATURES_OK, queue 0 of 8 entries in this image's .bss, DRIVER_OK), publishes
//! one chain and kicks, then polls (bounded) for the used ring or DEVICE_NEEDS_RESET. One line
//! per scenario, `testguest: virtio: NAME -> used status S` or `-> needs reset` or `-> no
//! answer`:
//! 1. `good read`: header IN sector 0, 512 bytes, status — must complete with status 0;
//! 2. `descriptor loop`: 0 → 1 → 0;
//! 3. `buffer outside ram`: the data buffer at 3 GiB;
//! 4. `absurd length`: a 4 GiB - 1 data buffer;
//! 5. `index jump`: available idx moved by 1000;
//! 6. `good read after reset`: the device works again after the driver's reset.
//!
//! MSI-X stays off: everything is polled. Interrupts and kicks are the only exits it causes
//! besides the configuration accesses.

use core::cell::UnsafeCell;
use core::fmt::Write;

use pci::header::{self, Command};
use pci::{Bdf, ConfigAccess};

use crate::guest::{power_off, Console};
use crate::nvme::{rdtsc, Conf1};

const DEVICE: Bdf = Bdf::from_routing_id(2 << 3);
/// virtio 1.x block device (vendor 0x1AF4, device 0x1040 + 2).
const ID: u32 = 0x1042_1af4;

/// virtio 1.2 §4.1.4.3: offsets in the common configuration (BAR 0 offset 0 on this device).
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const DEVICE_STATUS: u64 = 0x14;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;
/// The notify region (queue 0's notify offset is 0).
const NOTIFY: u64 = 0x3000;

const ACKNOWLEDGE: u8 = 1;
const DRIVER: u8 = 2;
const DRIVER_OK: u8 = 4;
const FEATURES_OK: u8 = 8;
const NEEDS_RESET: u8 = 0x40;

const QSIZE: u16 = 8;
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;

/// One page: descriptor table, available ring, used ring, request buffers.
#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; 4096]>);

// SAFETY: only vCPU 0 runs this code; the device side is the hypervisor, reached by volatile
// accesses only.
unsafe impl Sync for Page {}

static RING: Page = Page(UnsafeCell::new([0; 4096]));

const DESC: u64 = 0;
const AVAIL: u64 = 0x100;
const USED: u64 = 0x200;
const HEADER: u64 = 0x400;
const STATUS: u64 = 0x600;
const DATA: u64 = 0x800;

fn ring() -> u64 {
    RING.0.get() as u64
}

fn put<T: Copy>(addr: u64, v: T) {
    // SAFETY: `addr` is in RING (this image's RAM) or BAR 0 of the device (MMIO the hypervisor
    // emulates); aligned by construction.
    unsafe { (addr as *mut T).write_volatile(v) }
}

fn get<T: Copy>(addr: u64) -> T {
    // SAFETY: as in `put`.
    unsafe { (addr as *const T).read_volatile() }
}

/// A byte read of BAR 0 as one plain MOV: the hypervisor emulates the MOV family only, and the
/// compiler may fold a volatile load into a TEST.
fn bar_u8(addr: u64) -> u8 {
    let v: u8;
    // SAFETY: a read of the device's emulated register at `addr`; no memory is written.
    unsafe {
        core::arch::asm!("mov {v}, byte ptr [{a}]", a = in(reg) addr, v = out(reg_byte) v, options(nostack, readonly))
    };
    v
}

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = writeln!(Console, $($arg)*); }};
}

fn desc(i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let at = ring() + DESC + u64::from(i) * 16;
    put(at, addr);
    put(at + 8, len);
    put(at + 12, flags);
    put(at + 14, next);
}

/// Resets and brings the device up with queue 0 at RING; false if FEATURES_OK is refused.
fn bring_up(bar: u64) -> bool {
    put::<u8>(bar + DEVICE_STATUS, 0);
    // SAFETY: RING is this guest's own memory, not in use by the device after the reset.
    unsafe { (*RING.0.get()).fill(0) };
    put::<u8>(bar + DEVICE_STATUS, ACKNOWLEDGE);
    put::<u8>(bar + DEVICE_STATUS, ACKNOWLEDGE | DRIVER);
    put::<u32>(bar + DRIVER_FEATURE_SELECT, 0);
    put::<u32>(bar + DRIVER_FEATURE, 0);
    put::<u32>(bar + DRIVER_FEATURE_SELECT, 1);
    put::<u32>(bar + DRIVER_FEATURE, 1); // VIRTIO_F_VERSION_1 (bit 32)
    put::<u8>(bar + DEVICE_STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    if bar_u8(bar + DEVICE_STATUS) & FEATURES_OK == 0 {
        return false;
    }
    put::<u16>(bar + QUEUE_SELECT, 0);
    put::<u16>(bar + QUEUE_SIZE, QSIZE);
    put::<u64>(bar + QUEUE_DESC, ring() + DESC);
    put::<u64>(bar + QUEUE_DRIVER, ring() + AVAIL);
    put::<u64>(bar + QUEUE_DEVICE, ring() + USED);
    put::<u16>(bar + QUEUE_ENABLE, 1);
    put::<u8>(
        bar + DEVICE_STATUS,
        ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
    );
    true
}

/// A read of sector 0: header, 512 data bytes, status.
fn good_chain() {
    put::<u32>(ring() + HEADER, 0); // VIRTIO_BLK_T_IN
    put::<u64>(ring() + HEADER + 8, 0);
    put::<u8>(ring() + STATUS, 0xff);
    desc(0, ring() + HEADER, 16, DESC_NEXT, 1);
    desc(1, ring() + DATA, 512, DESC_NEXT | DESC_WRITE, 2);
    desc(2, ring() + STATUS, 1, DESC_WRITE, 0);
}

/// Publishes head 0 with available idx `idx`, kicks, and waits (about a second at most).
fn publish_and_wait(bar: u64, name: &str, idx: u16) {
    put::<u16>(ring() + AVAIL + 4, 0); // ring[0] = head 0
    put::<u16>(ring() + AVAIL + 2, idx);
    put::<u16>(bar + NOTIFY, 0);
    let start = rdtsc();
    let mut spins = 0u64;
    while rdtsc().wrapping_sub(start) < 4_000_000_000 && spins < 1 << 28 {
        spins += 1;
        if get::<u16>(ring() + USED + 2) != 0 {
            let status: u8 = get(ring() + STATUS);
            say!("testguest: virtio: {name} -> used status {status}");
            return;
        }
        if bar_u8(bar + DEVICE_STATUS) & NEEDS_RESET != 0 {
            say!("testguest: virtio: {name} -> needs reset");
            return;
        }
        core::hint::spin_loop();
    }
    say!("testguest: virtio: {name} -> no answer");
}

pub fn run(_ram: u64) -> ! {
    let mut cfg = Conf1;
    if cfg.read32(DEVICE, 0) != ID {
        say!("testguest: virtio: no virtio-blk at 00:02.0");
        power_off()
    }
    let bar =
        u64::from(cfg.read32(DEVICE, 0x10) & !0xf) | u64::from(cfg.read32(DEVICE, 0x14)) << 32;
    let command = header::read_command(&cfg, DEVICE) | Command::MEMORY_SPACE;
    header::write_command(&mut cfg, DEVICE, command);
    say!("testguest: virtio: virtio-blk at 00:02.0 bar0 {bar:#x}");
    type Setup = fn();
    let scenarios: [(&str, Setup, u16); 6] = [
        ("good read", good_chain, 1),
        (
            "descriptor loop",
            || {
                good_chain();
                // Both readable, so the walk meets no other rule before the loop.
                desc(1, ring() + DATA, 512, DESC_NEXT, 0);
            },
            1,
        ),
        (
            "buffer outside ram",
            || {
                good_chain();
                desc(1, 0xc000_0000, 512, DESC_NEXT | DESC_WRITE, 2);
            },
            1,
        ),
        (
            "absurd length",
            || {
                good_chain();
                desc(1, ring() + DATA, u32::MAX, DESC_NEXT | DESC_WRITE, 2);
            },
            1,
        ),
        ("index jump", good_chain, 1000),
        ("good read after reset", good_chain, 1),
    ];
    for (name, setup, idx) in scenarios {
        if !bring_up(bar) {
            say!("testguest: virtio: {name}: FEATURES_OK refused");
            power_off()
        }
        setup();
        publish_and_wait(bar, name, idx);
    }
    put::<u8>(bar + DEVICE_STATUS, 0);
    say!("testguest: virtio: done");
    power_off()
}
