//! ACPI power-management timer (ACPI 6.5 §4.8.3.3): a free-running 24-bit counter at 3.579545 MHz,
//! read-only, in the 4-byte PM_TMR_BLK. The FADT must describe it with TMR_VAL_EXT = 0 (24 bits);
//! bits 31:24 read as zero.

use super::clock::{ticks_at, PM_TIMER_DIVISOR};
use super::{read_bytes, Nanos, PortIo};

/// PM_TMR_BLK: the FADT's X_PM_TMR_BLK / PM_TMR_BLK must name this port, with PM_TMR_LEN = 4.
pub const PM_TMR_PORT: u16 = 0x608;
pub const PM_TMR_LEN: u16 = 4;
/// The counter is TMR_VAL (24 bits without TMR_VAL_EXT).
const COUNTER_MASK: u32 = (1 << 24) - 1;

#[derive(Default)]
pub struct PmTimer;

impl PmTimer {
    /// The counter value at `now` (it was 0 at time 0).
    pub fn value(now: Nanos) -> u32 {
        ticks_at(now, PM_TIMER_DIVISOR) as u32 & COUNTER_MASK
    }
}

impl PortIo for PmTimer {
    fn read(&mut self, port: u16, size: u8, now: Nanos) -> u32 {
        let counter = Self::value(now).to_le_bytes();
        read_bytes(port, size, |p| {
            let i = p.wrapping_sub(PM_TMR_PORT);
            counter.get(usize::from(i)).copied().unwrap_or(0xFF)
        })
    }

    /// Writes are ignored: the timer is read-only.
    fn write(&mut self, _port: u16, _size: u8, _value: u32, _now: Nanos) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Nanos = 1_000_000_000;

    #[test]
    fn advances_3579545_per_second() {
        let mut t = PmTimer;
        let a = t.read(PM_TMR_PORT, 4, 2 * SECOND);
        let b = t.read(PM_TMR_PORT, 4, 3 * SECOND);
        assert_eq!(a, 2 * 3_579_545);
        assert_eq!(b - a, 3_579_545);
    }

    #[test]
    fn wraps_at_2_pow_24() {
        // 2^24 ticks take 2^24 * 4e9 / 14318180 = 4686968874.5 ns.
        assert_eq!(PmTimer::value(4_686_968_874), 0xFF_FFFF);
        assert_eq!(PmTimer::value(4_686_968_875), 0);
        // 24 bits only: the top byte of a 32-bit read is zero.
        let mut t = PmTimer;
        assert_eq!(t.read(PM_TMR_PORT, 4, 4_686_968_874) >> 24, 0);
    }

    #[test]
    fn narrow_reads_and_writes() {
        let mut t = PmTimer;
        let now = 1_234_567_890;
        let full = t.read(PM_TMR_PORT, 4, now);
        assert_eq!(t.read(PM_TMR_PORT, 2, now), full & 0xFFFF);
        assert_eq!(t.read(PM_TMR_PORT + 2, 1, now), (full >> 16) & 0xFF);
        t.write(PM_TMR_PORT, 4, 0, now);
        assert_eq!(t.read(PM_TMR_PORT, 4, now), full);
    }
}
