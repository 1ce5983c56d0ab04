//! The hypervisor's console: COM1 (16550 UART at 0x3F8), polled, behind one lock so lines from
//! different cores do not interleave. Also the `log` backend.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

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
            // SAFETY: programming the standard COM1 UART (115200 8N1, FIFO on); no memory is touched.
            unsafe { Port::<u8>::new(self.base + reg).write(value) };
        }
    }

    fn write_byte(&mut self, b: u8) {
        // SAFETY: polling the line status register and writing the transmit holding register of COM1.
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
        // SAFETY: reading COM1's line status and receive buffer registers.
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

pub static CONSOLE: Mutex<Serial> = Mutex::new(Serial::new(COM1));

pub fn init() {
    CONSOLE.lock().init();
}

/// Prints with interrupts off so an interrupt handler on this core cannot deadlock on the lock.
pub fn print(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// Input from the hypervisor's console, polled by the service core.
pub fn try_read() -> Option<u8> {
    x86_64::instructions::interrupts::without_interrupts(|| CONSOLE.lock().try_read_byte())
}

/// Last-resort output for panics: does not wait for a lock another core may hold forever.
pub fn print_unlocked(args: fmt::Arguments) {
    let mut s = Serial::new(COM1);
    let _ = s.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    () => { $crate::hv::serial::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::hv::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
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
