//! Ending the machine: through QEMU's isa-debug-exit device when the command line names its port,
//! else by halting every core of ours that reaches here.

use core::sync::atomic::{AtomicU32, Ordering};
use x86_64::instructions::port::Port;

/// Port of the isa-debug-exit device, or 0 for none.
static DEBUG_EXIT_PORT: AtomicU32 = AtomicU32::new(0);

/// Status written for a clean end (QEMU then exits with (0x10 << 1) | 1 = 33).
pub const CLEAN: u8 = 0x10;
/// Status written on an error (QEMU exits with 35).
pub const ERROR: u8 = 0x11;

pub fn set_debug_exit_port(port: u16) {
    DEBUG_EXIT_PORT.store(u32::from(port), Ordering::Relaxed);
}

fn end(status: u8) -> ! {
    crate::hv::host::serial::flush();
    let port = DEBUG_EXIT_PORT.load(Ordering::Relaxed);
    if port != 0 {
        // SAFETY: the operator named this port as QEMU's isa-debug-exit device on the command line.
        unsafe { Port::<u8>::new(port as u16).write(status) };
    }
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Reports a fatal condition and ends the machine.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    log::error!("{args}");
    log::info!("didvisor: halting");
    fail()
}

/// Everything ran and ended as asked.
pub fn success() -> ! {
    end(CLEAN)
}

/// A fatal error was reported on the console.
pub fn fail() -> ! {
    end(ERROR)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::hv::host::serial::print_unlocked(format_args!("\nPANIC: {info}\n"));
    fail()
}
