//! Intel 8254 programmable interval timer (8254 datasheet, order no. 231164) at ports 0x40-0x43, and
//! the PC/AT "port B" (0x61) that gates channel 2 and reads back its output.
//!
//! Counting is not emulated tick by tick: each channel remembers when its count was loaded and how
//! many clock pulses it has counted, and values are worked out from `now` on each access. Channel 0
//! drives ISA IRQ 0 as rising edges the hypervisor collects with [`Pit::irq0_edges_until`] and
//! schedules with [`Pit::next_irq0_deadline`].
//!
//! Deliberate simplifications, all invisible to Linux (which always writes a control word before a
//! count, and programs channel 0 in modes 2 and 4 and channel 2 in mode 0):
//! - BCD counting is not implemented: the BCD bit of a control word is ignored and the channel
//!   counts in binary; the read-back status reports BCD = 0 so a guest can tell.
//! - In modes 2 and 3 a count written without a new control word restarts the period at the next
//!   clock pulse instead of at the end of the current period.
//! - In mode 3 with an odd count the counter value read back is approximate (as in QEMU); OUT and
//!   the period are exact.
//! - Rewriting a control word never produces an OUT edge, so it cannot cause an IRQ 0.

use super::clock::{instant_of_tick, ticks_at, PIT_DIVISOR};
use super::pit_channel::{control, Access, Channel};
use super::{read_bytes, write_bytes, Nanos, PortIo};

pub const CHANNEL0_PORT: u16 = 0x40;
pub const CHANNEL2_PORT: u16 = 0x42;
pub const COMMAND_PORT: u16 = 0x43;
/// PC/AT system control port B (NMI status and control).
pub const PORT_B: u16 = 0x61;

/// Port B bits (IBM PC/AT technical reference; PIIX/ICH "NMI status and control register").
mod port_b {
    /// Channel 2 gate (read/write).
    pub const GATE2: u8 = 1 << 0;
    /// Bits 1 (speaker data enable; no sound is made) and 2-3 (parity/IOCHK check disables) are
    /// plain read/write storage here.
    pub const WRITABLE: u8 = 0x0F;
    /// Toggles on every DRAM refresh request (channel 1's classic 15.085 µs period).
    pub const REFRESH: u8 = 1 << 4;
    /// Channel 2 OUT (read-only).
    pub const OUT2: u8 = 1 << 5;
}

/// PIT clocks per refresh toggle: the BIOS classically programs channel 1 with 18 (15.085 µs).
const REFRESH_PERIOD_TICKS: u64 = 18;

/// The 8254 with its three channels (channel 1, the historic DRAM refresh timer, is modelled like
/// the others but nothing on our platform uses it) and port B.
pub struct Pit {
    channels: [Channel; 3],
    port_b: u8,
    /// IRQ 0 edges of channel 0 are counted up to this clock pulse ...
    irq0_counted_to: u64,
    /// ... and these have not yet been handed to the hypervisor.
    irq0_pending: u32,
    irq0_reprogrammed: bool,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    pub const fn new() -> Self {
        Pit {
            // Channels 0 and 1 have their gates tied high on the PC; channel 2's is port B bit 0.
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port_b: 0,
            irq0_counted_to: 0,
            irq0_pending: 0,
            irq0_reprogrammed: false,
        }
    }

    /// Channel 2's OUT, as port B bit 5 shows it.
    pub fn out2(&self, now: Nanos) -> bool {
        self.channels[2].out(Self::tick(now))
    }

    /// Rising edges of IRQ 0 (channel 0's OUT) from the last call up to `now`.
    pub fn irq0_edges_until(&mut self, now: Nanos) -> u32 {
        self.count_irq0_edges(Self::tick(now));
        core::mem::take(&mut self.irq0_pending)
    }

    /// When the next IRQ 0 edge not yet returned by [`Pit::irq0_edges_until`] happens (a time in
    /// the past if edges are waiting), or `None` if channel 0 will not produce one.
    pub fn next_irq0_deadline(&self) -> Option<Nanos> {
        if self.irq0_pending > 0 {
            return Some(instant_of_tick(self.irq0_counted_to, PIT_DIVISOR));
        }
        self.channels[0]
            .next_edge_after(self.irq0_counted_to)
            .map(|t| instant_of_tick(t, PIT_DIVISOR))
    }

    /// Whether a port write since the last call changed channel 0's programming (and so perhaps
    /// its next IRQ 0 deadline).
    pub fn take_irq0_reprogrammed(&mut self) -> bool {
        core::mem::take(&mut self.irq0_reprogrammed)
    }

    fn tick(now: Nanos) -> u64 {
        ticks_at(now, PIT_DIVISOR)
    }

    fn count_irq0_edges(&mut self, t: u64) {
        if t <= self.irq0_counted_to {
            return;
        }
        let ch = &self.channels[0];
        let new = ch.edges_after(ch.elapsed(t)) - ch.edges_after(ch.elapsed(self.irq0_counted_to));
        self.irq0_pending = self
            .irq0_pending
            .saturating_add(u32::try_from(new).unwrap_or(u32::MAX));
        self.irq0_counted_to = t;
    }

    /// Before channel 0 changes, account the edges of its old programming; the new one starts at `t`.
    fn before_channel0_change(&mut self, t: u64) {
        self.count_irq0_edges(t);
        self.irq0_counted_to = t;
        self.irq0_reprogrammed = true;
    }

    fn read_byte(&mut self, port: u16, now: Nanos) -> u8 {
        let t = Self::tick(now);
        match port {
            CHANNEL0_PORT..=CHANNEL2_PORT => {
                self.channels[usize::from(port - CHANNEL0_PORT)].read(t)
            }
            PORT_B => {
                let mut v = self.port_b & port_b::WRITABLE;
                if (t / REFRESH_PERIOD_TICKS) & 1 == 1 {
                    v |= port_b::REFRESH;
                }
                if self.channels[2].out(t) {
                    v |= port_b::OUT2;
                }
                v
            }
            // The control register cannot be read (the datasheet's "no operation").
            _ => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, value: u8, now: Nanos) {
        let t = Self::tick(now);
        match port {
            CHANNEL0_PORT..=CHANNEL2_PORT => {
                let i = usize::from(port - CHANNEL0_PORT);
                if i == 0 {
                    self.before_channel0_change(t);
                }
                self.channels[i].write(value, t);
            }
            COMMAND_PORT => self.write_command(value, t),
            PORT_B => {
                self.port_b = value & port_b::WRITABLE;
                self.channels[2].set_gate(value & port_b::GATE2 != 0, t);
            }
            _ => {}
        }
    }

    fn write_command(&mut self, value: u8, t: u64) {
        let select = value >> control::SELECT_SHIFT;
        if select == control::READ_BACK {
            for i in 0..3 {
                if value & (2 << i) == 0 {
                    continue;
                }
                // Read-back never changes programming, so IRQ 0 accounting is unaffected.
                if value & control::READ_BACK_NO_STATUS == 0 {
                    self.channels[i].latch_status(t);
                }
                if value & control::READ_BACK_NO_COUNT == 0 {
                    self.channels[i].latch_count(t);
                }
            }
            return;
        }
        let i = usize::from(select);
        let access_bits = (value >> control::ACCESS_SHIFT) & 3;
        let access = match access_bits {
            control::ACCESS_LATCH => return self.channels[i].latch_count(t),
            1 => Access::Low,
            2 => Access::High,
            _ => Access::LowThenHigh,
        };
        if i == 0 {
            self.before_channel0_change(t);
        }
        self.channels[i].write_control(access, value >> control::MODE_SHIFT, t);
    }
}

impl PortIo for Pit {
    fn read(&mut self, port: u16, size: u8, now: Nanos) -> u32 {
        read_bytes(port, size, |p| self.read_byte(p, now))
    }

    fn write(&mut self, port: u16, size: u8, value: u32, now: Nanos) {
        write_bytes(port, size, value, |p, b| self.write_byte(p, b, now));
    }
}

#[cfg(test)]
#[path = "pit_tests.rs"]
mod tests;
