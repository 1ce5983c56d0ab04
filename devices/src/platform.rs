//! All legacy devices of one guest behind a single port dispatch. The hypervisor calls
//! [`LegacyPlatform::port_read`] / [`LegacyPlatform::port_write`] on each I/O exit and acts on the
//! returned [`PortEffect`]; it calls [`LegacyPlatform::tick`] when [`LegacyPlatform::next_timer_deadline`]
//! passes, and moves console bytes with [`LegacyPlatform::push_console_input`] and
//! [`LegacyPlatform::take_console_output`].

use super::pci::{ConfigSpace, NoPciDevice, PciBus, PciConfigPorts};
use super::pic::Pic;
use super::pit::Pit;
use super::pm1::{Pm1, SleepRequest};
use super::pm_timer::PmTimer;
use super::reset::ResetControl;
use super::rtc::Rtc;
use super::uart::{Uart, COM1_BASE, COM1_ISA_IRQ};
use super::unknown::UnknownPorts;
use super::{size_mask, IrqChange, Nanos, PortIo};

/// How many distinct unknown ports are counted individually.
pub const UNKNOWN_PORT_SLOTS: usize = 32;
/// PIT channel 0 drives ISA IRQ 0.
pub const PIT_ISA_IRQ: u8 = 0;

/// What the hypervisor must do after an access. At most one thing follows from one access; when
/// several are pending the most drastic is returned and the rest follow with later accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortEffect {
    None,
    /// SLP_EN with the S5 sleep type: stop the guest.
    PowerOff,
    /// SLP_EN with another sleep type, which we do not implement.
    Sleep(u8),
    /// The reset register asked for a reset.
    Reset,
    /// An interrupt line changed.
    Irq(IrqChange),
    /// PIT channel 0 was reprogrammed: [`LegacyPlatform::next_timer_deadline`] may have moved.
    TimerReprogrammed,
}

/// The UART could not take a console byte now (its receiver is full); offer it again later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputRejected;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Pic,
    Pit,
    Rtc,
    Uart,
    Pm1,
    PmTimer,
    Reset,
    Pci,
    Unknown,
}

/// Which device a single port belongs to (for byte accesses; dword CONFIG_ADDRESS is decided
/// before this).
const fn route(port: u16) -> Target {
    match port {
        0x20 | 0x21 | 0xA0 | 0xA1 => Target::Pic,
        0x40..=0x43 | 0x61 => Target::Pit,
        0x70 | 0x71 => Target::Rtc,
        0x3F8..=0x3FF => Target::Uart,
        0x600..=0x605 => Target::Pm1,
        0x608..=0x60B => Target::PmTimer,
        0x64 | 0xCF9 => Target::Reset,
        0xCFC..=0xCFF => Target::Pci,
        _ => Target::Unknown,
    }
}

/// One guest's legacy devices. `UART_OUT` is the capacity of the console output ring; `D` is the
/// type of the extra PCI functions on bus 0.
pub struct LegacyPlatform<const UART_OUT: usize, D = NoPciDevice> {
    pic: Pic,
    pit: Pit,
    rtc: Rtc,
    uart: Uart<UART_OUT>,
    pm1: Pm1,
    pm_timer: PmTimer,
    reset: ResetControl,
    pci: PciConfigPorts<D>,
    unknown: UnknownPorts<UNKNOWN_PORT_SLOTS>,
    /// The UART line level last reported.
    uart_level: bool,
}

impl<const UART_OUT: usize, D: ConfigSpace> LegacyPlatform<UART_OUT, D> {
    /// A platform whose RTC reads `unix_secs` (UTC) at time `now`.
    pub fn new(unix_secs: u64, now: Nanos) -> Self {
        LegacyPlatform {
            pic: Pic::new(),
            pit: Pit::new(),
            rtc: Rtc::new(unix_secs, now),
            uart: Uart::new(COM1_BASE),
            pm1: Pm1::new(),
            pm_timer: PmTimer,
            reset: ResetControl::new(),
            pci: PciConfigPorts::new(),
            unknown: UnknownPorts::new(),
            uart_level: false,
        }
    }

    /// A restart of the guest: every device as `new` builds it (the RTC reading `unix_secs` at
    /// `now`), the PCI functions kept (their owner resets them) with the address latch cleared.
    /// Console output not yet taken is dropped: take it first. Unknown-port counts are kept
    /// (they are reported once, at the guest's end).
    pub fn reset(&mut self, unix_secs: u64, now: Nanos) {
        self.pic = Pic::new();
        self.pit = Pit::new();
        self.rtc = Rtc::new(unix_secs, now);
        self.uart = Uart::new(COM1_BASE);
        self.pm1 = Pm1::new();
        self.reset = ResetControl::new();
        self.pci.reset_address();
        self.uart_level = false;
    }

    pub fn port_read(&mut self, port: u16, size: u8, now: Nanos) -> (u32, PortEffect) {
        let value = self.access(port, size, None, now);
        (value, self.effect())
    }

    pub fn port_write(&mut self, port: u16, size: u8, value: u32, now: Nanos) -> PortEffect {
        self.access(port, size, Some(value), now);
        self.effect()
    }

    /// IRQ 0 edges of the PIT up to `now`, if any.
    pub fn tick(&mut self, now: Nanos) -> Option<IrqChange> {
        let count = self.pit.irq0_edges_until(now);
        (count > 0).then_some(IrqChange::Edges {
            isa_irq: PIT_ISA_IRQ,
            count,
        })
    }

    /// When [`LegacyPlatform::tick`] will next have an edge to report.
    pub fn next_timer_deadline(&self) -> Option<Nanos> {
        self.pit.next_irq0_deadline()
    }

    /// Offers one byte typed on the guest's console.
    pub fn push_console_input(&mut self, byte: u8) -> Result<PortEffect, InputRejected> {
        if !self.uart.push_input(byte) {
            return Err(InputRejected);
        }
        Ok(self.effect())
    }

    /// Whether the console UART is ready for input (see [`Uart::receiver_listening`]).
    pub fn console_listening(&self) -> bool {
        self.uart.receiver_listening()
    }

    /// Moves bytes the guest wrote to its console into `buf`; returns how many.
    pub fn take_console_output(&mut self, buf: &mut [u8]) -> usize {
        self.uart.take_output(buf)
    }

    /// Console bytes lost because the output ring was full.
    pub fn console_output_dropped(&self) -> u64 {
        self.uart.dropped_output()
    }

    pub fn unknown_ports(&self) -> &UnknownPorts<UNKNOWN_PORT_SLOTS> {
        &self.unknown
    }

    pub fn pci_bus(&self) -> &PciBus<D> {
        self.pci.bus()
    }

    /// Where passed-through and virtual PCI functions are added.
    pub fn pci_bus_mut(&mut self) -> &mut PciBus<D> {
        self.pci.bus_mut()
    }

    pub fn pic(&self) -> &Pic {
        &self.pic
    }

    pub fn rtc(&self) -> &Rtc {
        &self.rtc
    }

    /// For raising PM1 events (e.g. a power-button press for an orderly shutdown).
    pub fn pm1_mut(&mut self) -> &mut Pm1 {
        &mut self.pm1
    }

    fn access(&mut self, port: u16, size: u8, write: Option<u32>, now: Nanos) -> u32 {
        if PciConfigPorts::<D>::claims(port, size) {
            return self.device_access(Target::Pci, port, size, write, now);
        }
        let Some(mask) = size_mask(size) else {
            self.unknown.record(port, write.is_some());
            return u32::MAX;
        };
        let first = route(port);
        if (1..size).all(|i| route(port.wrapping_add(u16::from(i))) == first) {
            return self.device_access(first, port, size, write, now);
        }
        // The access spans devices: split it into bytes.
        let mut value = 0;
        for i in 0..size {
            let p = port.wrapping_add(u16::from(i));
            let byte = write.map(|w| (w >> (8 * i)) & 0xFF);
            value |= (self.device_access(route(p), p, 1, byte, now) & 0xFF) << (8 * i);
        }
        value & mask
    }

    fn device_access(
        &mut self,
        target: Target,
        port: u16,
        size: u8,
        write: Option<u32>,
        now: Nanos,
    ) -> u32 {
        let device: &mut dyn PortIo = match target {
            Target::Pic => &mut self.pic,
            Target::Pit => &mut self.pit,
            Target::Rtc => &mut self.rtc,
            Target::Uart => &mut self.uart,
            Target::Pm1 => &mut self.pm1,
            Target::PmTimer => &mut self.pm_timer,
            Target::Reset => &mut self.reset,
            Target::Pci => &mut self.pci,
            Target::Unknown => {
                self.unknown.record(port, write.is_some());
                return size_mask(size).unwrap_or(u32::MAX);
            }
        };
        match write {
            Some(value) => {
                device.write(port, size, value, now);
                0
            }
            None => device.read(port, size, now),
        }
    }

    /// The most drastic pending request; the others stay pending.
    fn effect(&mut self) -> PortEffect {
        if self.reset.take_reset_request() {
            return PortEffect::Reset;
        }
        match self.pm1.take_sleep_request() {
            Some(SleepRequest::PowerOff) => return PortEffect::PowerOff,
            Some(SleepRequest::Other(typ)) => return PortEffect::Sleep(typ),
            None => {}
        }
        let level = self.uart.irq_level();
        if level != self.uart_level {
            self.uart_level = level;
            return PortEffect::Irq(IrqChange::Level {
                isa_irq: COM1_ISA_IRQ,
                level,
            });
        }
        if self.pit.take_irq0_reprogrammed() {
            return PortEffect::TimerReprogrammed;
        }
        PortEffect::None
    }
}

#[cfg(test)]
#[path = "platform_tests.rs"]
mod tests;
