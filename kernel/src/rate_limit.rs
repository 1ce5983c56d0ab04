//! A token bucket for messages a guest can cause: `burst` at once, then `per_sec` a second.
//! What is refused is counted, so the report can say how much was dropped.

/// One bucket; the caller passes the time (nanoseconds of any monotonic clock).
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    per_sec: u64,
    burst: u64,
    /// Tokens scaled by 10^9 (one token = one message), so refills need no division per call.
    scaled: u64,
    last_ns: u64,
    dropped: u64,
}

const SCALE: u64 = 1_000_000_000;

impl RateLimit {
    /// A full bucket.
    pub const fn new(per_sec: u64, burst: u64) -> Self {
        Self {
            per_sec,
            burst,
            scaled: burst.saturating_mul(SCALE),
            last_ns: 0,
            dropped: 0,
        }
    }

    /// Whether one more message may go out at `now_ns`; a refused one is counted.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let cap = self.burst.saturating_mul(SCALE);
        self.scaled = self
            .scaled
            .saturating_add(elapsed.saturating_mul(self.per_sec))
            .min(cap);
        if self.scaled >= SCALE {
            self.scaled -= SCALE;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Messages refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut r = RateLimit::new(10, 5);
        let t0 = 1_000_000_000;
        assert_eq!((0..8).filter(|_| r.allow(t0)).count(), 5);
        assert_eq!(r.dropped(), 3);
        // 0.25 s later: 2.5 tokens, so 2 messages.
        assert_eq!((0..5).filter(|_| r.allow(t0 + 250_000_000)).count(), 2);
        // A long pause refills only up to the burst.
        assert_eq!((0..20).filter(|_| r.allow(t0 + 100 * SCALE)).count(), 5);
        // Time going backwards (another core's clock read) refills nothing.
        assert!(!r.allow(t0));
    }

    #[test]
    fn a_flood_is_held_to_the_rate() {
        let mut r = RateLimit::new(200, 1000);
        // One message every 10 us for 10 s: 1,000,000 tried.
        let allowed = (0..1_000_000u64).filter(|i| r.allow(i * 10_000)).count() as u64;
        assert!((1000 + 1990..=1000 + 2000).contains(&allowed), "{allowed}");
        assert_eq!(r.dropped(), 1_000_000 - allowed);
    }
}
