//! The PC's 14.31818 MHz reference oscillator. The 8254 PIT counts at a twelfth of it (1.193182 MHz,
//! the 8254 datasheet's "PC" clock) and the ACPI PM timer at a quarter (3.579545 MHz, ACPI 6.5
//! §4.8.3.3). Deriving both from one crystal keeps them in the exact ratio real boards have, which is
//! what Linux checks when it cross-calibrates the TSC against the PIT and the PM timer.

use super::Nanos;

/// The reference oscillator, in Hz.
pub const CRYSTAL_HZ: u64 = 14_318_180;
/// The PIT's input clock is the crystal divided by 12 (1_193_181.67 Hz; Linux rounds it to
/// `PIT_TICK_RATE` = 1_193_182).
pub const PIT_DIVISOR: u64 = 12;
/// The PM timer's clock is the crystal divided by 4 (3_579_545 Hz).
pub const PM_TIMER_DIVISOR: u64 = 4;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Whole periods of the clock `CRYSTAL_HZ / divisor` elapsed between time 0 and `now`.
pub const fn ticks_at(now: Nanos, divisor: u64) -> u64 {
    (now as u128 * CRYSTAL_HZ as u128 / (divisor as u128 * NANOS_PER_SEC)) as u64
}

/// The first instant at which `ticks_at(.., divisor)` reaches `tick` (saturating at `Nanos::MAX`).
pub const fn instant_of_tick(tick: u64, divisor: u64) -> Nanos {
    let scaled = tick as u128 * divisor as u128 * NANOS_PER_SEC;
    let ns = scaled.div_ceil(CRYSTAL_HZ as u128);
    if ns > Nanos::MAX as u128 {
        Nanos::MAX
    } else {
        ns as Nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_of_each_clock() {
        assert_eq!(ticks_at(1_000_000_000, PM_TIMER_DIVISOR), 3_579_545);
        // 14318180 / 12 = 1193181.67: the 1_193_182nd tick comes just after one second.
        assert_eq!(ticks_at(1_000_000_000, PIT_DIVISOR), 1_193_181);
        assert_eq!(ticks_at(1_000_001_000, PIT_DIVISOR), 1_193_182);
    }

    #[test]
    fn instant_of_tick_is_the_first_nanosecond_of_that_tick() {
        // Tick 11932 of the PIT starts at 11932 * 12e9 / 14318180 = 10000153.6 ns.
        assert_eq!(instant_of_tick(11_932, PIT_DIVISOR), 10_000_154);
        assert_eq!(ticks_at(10_000_154, PIT_DIVISOR), 11_932);
        assert_eq!(ticks_at(10_000_153, PIT_DIVISOR), 11_931);
    }

    #[test]
    fn no_overflow_after_centuries() {
        let t = ticks_at(Nanos::MAX, PIT_DIVISOR);
        assert!(t > 0);
        assert_eq!(instant_of_tick(u64::MAX, PM_TIMER_DIVISOR), Nanos::MAX);
    }
}
