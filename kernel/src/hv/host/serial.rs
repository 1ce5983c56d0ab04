//! The hypervisor's console: a 16550 UART, COM1 (3F8h) unless the command line's `serial=` names
//! another (a server's IPMI serial-over-LAN is often COM2), polled. Lines are queued whole
//! (`didvisor::out_ring`), so lines from different cores do not interleave and no core waits on
//! the UART while holding a lock others need; whoever finds the UART free drains the queue, the
//! service core on every pass of its loop. Guest-caused lines (`print_guest`) are dropped when only
//! the hypervisor's reserve is left. Also the `log` backend.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use didvisor::out_ring::ByteRing;
use spin::Mutex;
use x86_64::instructions::port::Port;

/// The console UART's I/O port, for the panic path that cannot take [`CONSOLE`]'s lock.
static PORT: AtomicU16 = AtomicU16::new(didvisor::config::COM1);

pub struct Serial {
    base: u16,
}

impl Serial {
    const fn new(base: u16) -> Self {
        Serial { base }
    }

    fn init(&mut self) {
        let regs = [
            (1, 0x00),
            (3, 0x80),
            (0, 0x01),
            (1, 0x00),
            (3, 0x03),
            (2, 0xc1),
            (4, 0x03),
        ];
        for (reg, value) in regs {
            // SAFETY: programming the console UART (115200 8N1, FIFO on); no memory is touched.
            unsafe { Port::<u8>::new(self.base + reg).write(value) };
        }
    }

    /// LSR bit 5 (THRE): the transmitter holding register / FIFO is empty.
    fn transmitter_empty(&mut self) -> bool {
        // SAFETY: reading the console UART's line status register.
        unsafe { Port::<u8>::new(self.base + 5).read() & 0x20 != 0 }
    }

    /// Writes a byte without looking at the line status (the caller saw the FIFO empty).
    fn put(&mut self, b: u8) {
        // SAFETY: writing the console UART's transmit holding register.
        unsafe { Port::<u8>::new(self.base).write(b) };
    }

    fn write_byte(&mut self, b: u8) {
        // SAFETY: polling the line status register and writing the transmit holding register of
        // the console UART.
        unsafe {
            let mut lsr = Port::<u8>::new(self.base + 5);
            while lsr.read() & 0x20 == 0 {
                core::hint::spin_loop();
            }
            Port::<u8>::new(self.base).write(b);
        }
    }
}

impl Serial {
    /// A byte typed on the console, if one is waiting (LSR bit 0, data ready).
    fn try_read_byte(&mut self) -> Option<u8> {
        // SAFETY: reading the console UART's line status and receive buffer registers.
        unsafe {
            if Port::<u8>::new(self.base + 5).read() & 1 == 0 {
                return None;
            }
            Some(Port::<u8>::new(self.base).read())
        }
    }
}

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}

pub static CONSOLE: Mutex<Serial> = Mutex::new(Serial::new(didvisor::config::COM1));

/// Output waiting for the UART (`didvisor::out_ring`): 64 KiB, a few seconds at 115200 baud.
const QUEUE_BYTES: usize = 65536;
static QUEUE: Mutex<ByteRing<QUEUE_BYTES>> = Mutex::new(ByteRing::new());
/// Guest-caused lines dropped because the queue was full.
static DROPPED: AtomicUsize = AtomicUsize::new(0);

pub fn init() {
    CONSOLE.lock().init();
}

/// Moves the console to the UART at `port` (from `serial=`), before anything is printed.
pub fn move_to(port: u16) {
    let mut console = CONSOLE.lock();
    *console = Serial::new(port);
    console.init();
    PORT.store(port, Ordering::SeqCst);
}

/// Counts the bytes a message takes in the queue (each `\n` becomes `\r\n`).
struct Measure(usize);

impl Write for Measure {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len() + s.bytes().filter(|&b| b == b'\n').count();
        Ok(())
    }
}

/// Writes a message into the queue (room for all of it was checked first).
struct Enqueue<'a>(&'a mut ByteRing<QUEUE_BYTES>);

impl Write for Enqueue<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.push(b"\r");
            }
            self.0.push(&[b]);
        }
        Ok(())
    }
}

/// Puts the whole message into the queue, or nothing if it does not fit with `keep_free` bytes
/// left over (formatting is cheap and done twice: once to measure, once under the queue's lock,
/// so messages never interleave).
fn enqueue(args: fmt::Arguments, keep_free: usize) -> bool {
    let mut m = Measure(0);
    let _ = m.write_fmt(args);
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut q = QUEUE.lock();
        if !q.fits(m.0, keep_free) {
            return false;
        }
        let _ = Enqueue(&mut q).write_fmt(args);
        true
    })
}

/// Prints a message of the hypervisor's own: queued whole; if the queue is full, this core
/// drains the UART until there is room (only a flood of guest-caused output, itself
/// rate-limited, fills it). Interrupts are off while a lock is held, so a handler on this core
/// cannot deadlock on it.
pub fn print(args: fmt::Arguments) {
    while !enqueue(args, 0) {
        drain(usize::MAX);
        core::hint::spin_loop();
    }
    drain(DRAIN_BATCH);
}

/// Queue space guest-caused lines never take: on a real 115200-baud line guests can print
/// faster than the UART drains, and without a reserve they could keep the queue full so that a
/// hypervisor message (an exit table is about 600 bytes) never finds room.
const HYPERVISOR_RESERVE: usize = 8192;

/// Prints a line a guest caused: queued if there is room beyond [`HYPERVISOR_RESERVE`], else
/// dropped and counted. Never waits.
pub fn print_guest(args: fmt::Arguments) {
    if !enqueue(args, HYPERVISOR_RESERVE) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    drain(DRAIN_BATCH);
}

/// Bytes one opportunistic drain writes at most (a printing core's share of the work).
const DRAIN_BATCH: usize = 64;

/// The 16550's transmit FIFO: once THRE says it is empty, this many bytes go in without a wait.
const TX_FIFO: usize = 16;

/// Moves up to `max` queued bytes to the UART without waiting: only as many as its empty transmit
/// FIFO takes, and only if no other core is at it. Never holds the queue's lock across the UART.
pub fn drain(max: usize) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let Some(mut uart) = CONSOLE.try_lock() else {
            return;
        };
        let mut sent = 0;
        while sent < max && uart.transmitter_empty() {
            for _ in 0..TX_FIFO.min(max - sent) {
                let Some(b) = QUEUE.lock().pop() else { return };
                uart.put(b);
                sent += 1;
            }
        }
    });
}

/// Everything queued out, e.g. before the machine ends.
pub fn flush() {
    while !x86_64::instructions::interrupts::without_interrupts(|| QUEUE.lock().is_empty()) {
        drain(usize::MAX);
        core::hint::spin_loop();
    }
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        print(format_args!(
            "console: {dropped} guest-caused lines dropped (output queue full)\n"
        ));
        flush();
    }
}

/// Input from the hypervisor's console, polled by the service core.
pub fn try_read() -> Option<u8> {
    x86_64::instructions::interrupts::without_interrupts(|| CONSOLE.lock().try_read_byte())
}

/// Last-resort output for panics: does not wait for a lock another core may hold forever (what
/// the queue holds is written first if its lock is free).
pub fn print_unlocked(args: fmt::Arguments) {
    let mut s = Serial::new(PORT.load(Ordering::SeqCst));
    if let Some(mut q) = QUEUE.try_lock() {
        while let Some(b) = q.pop() {
            s.write_byte(b);
        }
    }
    let _ = s.write_fmt(args);
}

/// A line a guest caused (its console, its stray accesses, its device's faults): dropped, not
/// waited for, when the output queue is full. Callers rate-limit what a guest can repeat.
#[macro_export]
macro_rules! guest_println {
    ($($arg:tt)*) => { $crate::hv::host::serial::print_guest(format_args!("{}\n", format_args!($($arg)*))) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::hv::host::serial::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::hv::host::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

static MAX_LEVEL: AtomicUsize = AtomicUsize::new(log::LevelFilter::Info as usize);

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() as usize <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match record.level() {
            log::Level::Error => print(format_args!("error: {}\n", record.args())),
            log::Level::Warn => print(format_args!("warning: {}\n", record.args())),
            log::Level::Info => print(format_args!("{}\n", record.args())),
            log::Level::Debug => print(format_args!(
                "debug: {}: {}\n",
                record.target(),
                record.args()
            )),
            log::Level::Trace => print(format_args!(
                "trace: {}: {}\n",
                record.target(),
                record.args()
            )),
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init_logging() {
    // A second call fails harmlessly; there is only one.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
}

pub fn set_level(level: didvisor::config::LogLevel) {
    use didvisor::config::LogLevel::*;
    let filter = match level {
        Error => log::LevelFilter::Error,
        Warn => log::LevelFilter::Warn,
        Info => log::LevelFilter::Info,
        Debug => log::LevelFilter::Debug,
        Trace => log::LevelFilter::Trace,
    };
    MAX_LEVEL.store(filter as usize, Ordering::Relaxed);
}
