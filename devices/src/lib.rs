//! The legacy PC devices a stock Linux guest expects on our virtual platform, as plain state
//! machines driven by the guest's port I/O exits (on the vCPU's own core) and by the hypervisor's
//! timer and console (on any core). They do no I/O themselves and never panic on guest input.
//!
//! | ports             | device                                   | file          |
//! |-------------------|------------------------------------------|---------------|
//! | 0x20-0x21, 0xA0-0xA1 | 8259A pair, mask only, never delivers | `pic.rs`      |
//! | 0x40-0x43, 0x61   | 8254 PIT and port B                      | `pit.rs`      |
//! | 0x70-0x71         | MC146818 RTC / CMOS                      | `rtc.rs`      |
//! | 0x3F8-0x3FF       | 16550A UART (COM1, IRQ 4)                | `uart.rs`     |
//! | 0x600-0x605       | ACPI PM1a event and control blocks       | `pm1.rs`      |
//! | 0x608-0x60B       | ACPI PM timer                            | `pm_timer.rs` |
//! | 0xCF9             | reset control                            | `reset.rs`    |
//! | 0xCF8 (dword), 0xCFC-0xCFF | PCI configuration mechanism #1  | `pci.rs`      |
//!
//! Every other port reads as all ones and ignores writes, and is counted (`unknown.rs`).
//! [`LegacyPlatform`] (`platform.rs`) bundles them behind one dispatch. Virtual devices of other
//! kinds (virtio) belong in this crate too.
//!
//! Specifications, cited per file: Intel 8259A (order no. 231468) and 8254 (231164) datasheets,
//! Motorola MC146818A datasheet, National Semiconductor PC16550D datasheet, ACPI 6.5 §4.8.3 (PM1
//! blocks, PM timer), PCI Local Bus Specification 3.0 §3.2.2.3.2 (configuration mechanism #1) and
//! §6.1-6.2 (type-0 header).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod pci;
pub mod pci_host;
pub mod pic;
pub mod pit;
mod pit_channel;
pub mod platform;
pub mod pm1;
pub mod pm_timer;
pub mod reset;
pub mod rtc;
pub mod uart;
pub mod unknown;

pub use platform::{InputRejected, LegacyPlatform, PortEffect};

/// Time in nanoseconds from an arbitrary origin, monotonic; the hypervisor derives it from the TSC.
pub type Nanos = u64;

/// A device reached by port I/O. `size` is 1, 2 or 4 bytes; the value is in the low `size` bytes.
pub trait PortIo {
    fn read(&mut self, port: u16, size: u8, now: Nanos) -> u32;
    fn write(&mut self, port: u16, size: u8, value: u32, now: Nanos);
}

/// What a device asks of the interrupt controller after an access or a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqChange {
    /// The line now sits at `level`; reported only when it changes (level-like sources such as the
    /// UART, whose line follows its pending interrupts).
    Level { isa_irq: u8, level: bool },
    /// The line rose `count` times since the last report (edge sources such as PIT channel 0).
    Edges { isa_irq: u8, count: u32 },
}

/// The value mask of an access of `size` bytes, `None` for sizes port I/O does not have.
pub(crate) const fn size_mask(size: u8) -> Option<u32> {
    match size {
        1 => Some(0xFF),
        2 => Some(0xFFFF),
        4 => Some(0xFFFF_FFFF),
        _ => None,
    }
}

/// A wider access to a device with 8-bit registers is that many byte accesses to consecutive ports,
/// least significant first (as the ISA bus splits it). Invalid sizes read all ones.
pub(crate) fn read_bytes(port: u16, size: u8, mut read: impl FnMut(u16) -> u8) -> u32 {
    if size_mask(size).is_none() {
        return u32::MAX;
    }
    (0..size).fold(0, |v, i| {
        v | u32::from(read(port.wrapping_add(u16::from(i)))) << (8 * i)
    })
}

/// The write counterpart of [`read_bytes`]; writes of invalid sizes are dropped.
pub(crate) fn write_bytes(port: u16, size: u8, value: u32, mut write: impl FnMut(u16, u8)) {
    if size_mask(size).is_none() {
        return;
    }
    for i in 0..size {
        write(port.wrapping_add(u16::from(i)), (value >> (8 * i)) as u8);
    }
}
