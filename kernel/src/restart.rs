//! What happens when a guest resets itself or crashes: the per-guest policy (`on-reset=`,
//! `on-crash=`, `max-restarts=`) and the one decision taken from it. A reset is the guest's own
//! request (the reset register at CF9h, the keyboard controller's pulse at 64h, the FADT's reset
//! register, which names CF9h); a crash is a triple fault (the shutdown intercept).

/// Restarts a guest may take when `max-restarts=` is not given: enough for a few reboots, few
/// enough that a crash loop ends within seconds of boot time each.
pub const DEFAULT_MAX_RESTARTS: u32 = 10;

/// Why a guest stops running its current boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// The guest asked for a reset.
    Reset,
    /// The guest triple-faulted.
    Crash,
}

impl StopKind {
    pub fn name(self) -> &'static str {
        match self {
            StopKind::Reset => "reset",
            StopKind::Crash => "crash",
        }
    }
}

/// What to do on one kind of stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// Boot the guest again in place.
    Restart,
    /// End the guest.
    End,
}

impl OnStop {
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "restart" => Some(OnStop::Restart),
            "end" => Some(OnStop::End),
            _ => None,
        }
    }
}

/// A guest's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub on_reset: OnStop,
    pub on_crash: OnStop,
    /// Restarts allowed over the guest's whole life; the stop after the last one ends it.
    pub max_restarts: u32,
}

impl Default for RestartPolicy {
    /// A reboot restarts (what a machine does); a crash ends, so that its report is kept.
    fn default() -> Self {
        RestartPolicy {
            on_reset: OnStop::Restart,
            on_crash: OnStop::End,
            max_restarts: DEFAULT_MAX_RESTARTS,
        }
    }
}

/// The decision for one stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart; this is restart number `n` (from 1).
    Restart { n: u32 },
    /// End: the policy says so for this kind.
    EndByPolicy,
    /// End: the guest already took `max` restarts.
    EndLimitReached { max: u32 },
}

impl RestartPolicy {
    /// What a stop of `kind` leads to after `done` restarts.
    pub fn decide(&self, kind: StopKind, done: u32) -> Decision {
        let on = match kind {
            StopKind::Reset => self.on_reset,
            StopKind::Crash => self.on_crash,
        };
        match on {
            OnStop::End => Decision::EndByPolicy,
            OnStop::Restart if done >= self.max_restarts => Decision::EndLimitReached {
                max: self.max_restarts,
            },
            OnStop::Restart => Decision::Restart { n: done + 1 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_restarts_resets_and_ends_crashes() {
        let p = RestartPolicy::default();
        assert_eq!(p.decide(StopKind::Reset, 0), Decision::Restart { n: 1 });
        assert_eq!(p.decide(StopKind::Crash, 0), Decision::EndByPolicy);
    }

    #[test]
    fn the_limit_ends_the_stop_after_the_last_restart() {
        let p = RestartPolicy {
            on_reset: OnStop::Restart,
            on_crash: OnStop::Restart,
            max_restarts: 3,
        };
        for done in 0..3 {
            assert_eq!(
                p.decide(StopKind::Crash, done),
                Decision::Restart { n: done + 1 }
            );
        }
        assert_eq!(
            p.decide(StopKind::Reset, 3),
            Decision::EndLimitReached { max: 3 }
        );
        let none = RestartPolicy {
            max_restarts: 0,
            ..p
        };
        assert_eq!(
            none.decide(StopKind::Reset, 0),
            Decision::EndLimitReached { max: 0 }
        );
    }

    #[test]
    fn on_stop_words() {
        assert_eq!(OnStop::parse("restart"), Some(OnStop::Restart));
        assert_eq!(OnStop::parse("end"), Some(OnStop::End));
        assert_eq!(OnStop::parse("reboot"), None);
        assert_eq!(StopKind::Crash.name(), "crash");
    }
}
