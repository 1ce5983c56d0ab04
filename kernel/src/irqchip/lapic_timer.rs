//! The local APIC timer of the emulated mode (APM vol. 2 §16.4, "APIC Timer"; SDM §10.5.4): a
//! 32-bit counter that counts down at the timer clock divided by the divide configuration,
//! one-shot or periodic. It is computed from the time the caller passes in, never ticked: the
//! counter's value and the next expiry follow from when it was armed.

/// A point in hypervisor time, in nanoseconds since an arbitrary origin (a plain `u64`, like the
/// `Nanos` the virtual devices use, so the two interoperate without conversions).
pub type Nanos = u64;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The divisor selected by a divide configuration value: bits 3,1,0 form a code where 111b means 1
/// and any other code `c` means `2 << c` (0000b = 2, 0011b = 16, 1000b = 32, 1011b = 1).
pub const fn timer_divisor(divide_config: u32) -> u64 {
    let code = ((divide_config >> 1) & 0b100) | (divide_config & 0b11);
    if code == 0b111 {
        1
    } else {
        2 << code
    }
}

/// When the counter was last (re)loaded and with what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Arm {
    start: Nanos,
    /// Count at `start`; never 0 (a zero count is a stopped timer).
    count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// The timer input clock (before the divider) in Hz.
    hz: u64,
    initial: u32,
    divide_config: u32,
    arm: Option<Arm>,
    /// Periodic expiries that passed without their own interrupt (IRR holds one bit per vector).
    missed: u64,
}

impl Timer {
    /// A stopped timer clocked at `hz` (0 is treated as 1 Hz rather than dividing by zero).
    pub const fn new(hz: u64) -> Self {
        Timer {
            hz: if hz == 0 { 1 } else { hz },
            initial: 0,
            divide_config: 0,
            arm: None,
            missed: 0,
        }
    }

    pub fn clock_hz(&self) -> u64 {
        self.hz
    }

    pub fn initial_count(&self) -> u32 {
        self.initial
    }

    pub fn divide_config(&self) -> u32 {
        self.divide_config
    }

    pub fn missed_periods(&self) -> u64 {
        self.missed
    }

    /// Nanoseconds that `ticks` counter decrements take, rounded up so that an expiry is never
    /// reported before the counter really reached 0; at least 1 so periods always advance time.
    fn ticks_to_ns(&self, ticks: u32) -> u64 {
        let scaled =
            u128::from(ticks) * u128::from(timer_divisor(self.divide_config)) * NANOS_PER_SEC;
        let ns = scaled.div_ceil(u128::from(self.hz));
        u64::try_from(ns).unwrap_or(u64::MAX).max(1)
    }

    /// Whole counter decrements in `ns` nanoseconds.
    fn ns_to_ticks(&self, ns: u64) -> u64 {
        let denominator = u128::from(timer_divisor(self.divide_config)) * NANOS_PER_SEC;
        u64::try_from(u128::from(ns) * u128::from(self.hz) / denominator).unwrap_or(u64::MAX)
    }

    /// Writing the initial count (re)starts the countdown from it; 0 stops the timer.
    pub fn set_initial(&mut self, count: u32, now: Nanos) {
        self.initial = count;
        self.arm = (count != 0).then_some(Arm { start: now, count });
    }

    /// A new divisor applies from `now` on to what is left of the count. `periodic` is the LVT
    /// mode. The caller has expired the timer up to `now` first.
    pub fn set_divide(&mut self, divide_config: u32, now: Nanos, periodic: bool) {
        let remaining = self.current_count(now, periodic);
        self.divide_config = divide_config;
        if self.arm.is_some() {
            self.arm = (remaining != 0).then_some(Arm {
                start: now,
                count: remaining,
            });
        }
    }

    /// When the counter next reaches 0, if it is running.
    pub fn deadline(&self) -> Option<Nanos> {
        let arm = self.arm?;
        Some(arm.start.saturating_add(self.ticks_to_ns(arm.count)))
    }

    /// The current-count register at `now`.
    pub fn current_count(&self, now: Nanos, periodic: bool) -> u32 {
        let Some(arm) = self.arm else { return 0 };
        let elapsed = now.saturating_sub(arm.start);
        let first = self.ticks_to_ns(arm.count);
        if elapsed < first {
            // elapsed < count * divisor / hz, so fewer than `count` ticks have passed.
            return count_minus(arm.count, self.ns_to_ticks(elapsed));
        }
        if !periodic {
            return 0;
        }
        let since_reload = (elapsed - first) % self.ticks_to_ns(self.initial);
        count_minus(self.initial, self.ns_to_ticks(since_reload))
    }

    /// Settles every expiry up to `now`; returns whether at least one happened. A periodic timer
    /// is reloaded at the last period boundary not after `now` (missed periods are counted, not
    /// delivered); a one-shot timer stops with its count at 0.
    pub fn expire(&mut self, now: Nanos, periodic: bool) -> bool {
        let Some(deadline) = self.deadline() else {
            return false;
        };
        if now < deadline {
            return false;
        }
        if periodic && self.initial != 0 {
            let period = self.ticks_to_ns(self.initial);
            let extra = (now - deadline) / period;
            let start = deadline.saturating_add(extra.saturating_mul(period));
            self.arm = Some(Arm {
                start,
                count: self.initial,
            });
            self.missed = self.missed.saturating_add(extra);
        } else {
            self.arm = None;
        }
        true
    }
}

fn count_minus(count: u32, ticks: u64) -> u32 {
    u32::try_from(u64::from(count).saturating_sub(ticks)).unwrap_or(0)
}

/// Every divide-configuration value with the divisor it means (APM vol. 2, 16.4.1, Figure
/// 16-11: bits 3, 1 and 0 encode it; 1011b is divide by 1), worked out by hand for the tests.
#[cfg(test)]
pub(crate) const DIVIDE_WORKED: [(u64, u64); 8] = [
    (0b0000, 2),
    (0b0001, 4),
    (0b0010, 8),
    (0b0011, 16),
    (0b1000, 32),
    (0b1001, 64),
    (0b1010, 128),
    (0b1011, 1),
];

#[cfg(test)]
mod tests {
    use super::*;

    const GHZ: u64 = 1_000_000_000;

    #[test]
    fn divide_configuration_encoding() {
        for (config, divisor) in DIVIDE_WORKED {
            let config = config as u32;
            assert_eq!(timer_divisor(config), divisor, "{config:#06b}");
        }
    }

    #[test]
    fn one_shot_counts_down_and_stops_at_zero() {
        // 1 GHz / 16: one tick every 16 ns; 1000 ticks take 16 us.
        let mut timer = Timer::new(GHZ);
        timer.set_divide(0b0011, 0, false);
        timer.set_initial(1000, 100);
        assert_eq!(timer.deadline(), Some(100 + 16_000));
        assert_eq!(timer.current_count(100, false), 1000);
        assert_eq!(timer.current_count(100 + 160, false), 990);
        assert_eq!(timer.current_count(100 + 15_999, false), 1);
        assert!(!timer.expire(100 + 15_999, false));
        assert!(timer.expire(100 + 16_000, false));
        assert_eq!(timer.current_count(200_000, false), 0);
        assert_eq!(timer.deadline(), None);
        assert!(!timer.expire(1_000_000, false));
    }

    #[test]
    fn periodic_reloads_and_counts_missed_periods() {
        // 100 MHz / 2 = 50 MHz: 20 ns a tick, 500 ticks = 10 us.
        let mut timer = Timer::new(100_000_000);
        timer.set_initial(500, 0);
        assert_eq!(timer.deadline(), Some(10_000));
        assert!(timer.expire(10_000, true));
        assert_eq!(timer.deadline(), Some(20_000));
        // 25 us late: expiries at 20, 30, 40 us; the one delivered covers 30 and 40 too.
        assert!(timer.expire(45_000, true));
        assert_eq!(timer.missed_periods(), 2);
        assert_eq!(timer.deadline(), Some(50_000));
        // 5 us into the period that began at 40 us: 250 ticks gone.
        assert_eq!(timer.current_count(45_000, true), 250);
    }

    #[test]
    fn periodic_current_count_wraps_without_expire() {
        let mut timer = Timer::new(100_000_000);
        timer.set_initial(500, 0);
        // 3 periods and 2 us in: 100 ticks into the fourth period.
        assert_eq!(timer.current_count(32_000, true), 400);
        // The same moment read as one-shot: expired.
        assert_eq!(timer.current_count(32_000, false), 0);
    }

    #[test]
    fn divide_change_applies_to_the_rest_of_the_count() {
        // 1 GHz / 2: 2 ns a tick. After 200 ns, 900 of 1000 ticks remain; at / 1 they take 900 ns.
        let mut timer = Timer::new(GHZ);
        timer.set_initial(1000, 0);
        timer.set_divide(0b1011, 200, false);
        assert_eq!(timer.current_count(200, false), 900);
        assert_eq!(timer.deadline(), Some(1100));
    }

    #[test]
    fn zero_initial_count_stops() {
        let mut timer = Timer::new(GHZ);
        timer.set_initial(10, 0);
        timer.set_initial(0, 5);
        assert_eq!(timer.deadline(), None);
        assert_eq!(timer.current_count(6, true), 0);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        // Slowest clock, largest count and divisor: the deadline saturates instead of wrapping.
        let mut timer = Timer::new(0);
        timer.set_divide(0b1010, 0, true);
        timer.set_initial(u32::MAX, u64::MAX - 1);
        assert_eq!(timer.deadline(), Some(u64::MAX));
        assert_eq!(timer.current_count(0, true), u32::MAX);
        assert!(timer.expire(u64::MAX, true));
    }
}
