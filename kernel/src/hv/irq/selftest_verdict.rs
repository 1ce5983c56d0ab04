//! The AVIC self-test's verdict (the test itself is `world::avic_selftest`, a tiny guest): kept
//! here, where `irq=avic` start-up reads it.

use avic::selftest::Mode;
use core::sync::atomic::{AtomicU8, Ordering};

/// What the self-test found, for `irq=avic` start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It has not run (yet).
    NotRun,
    /// The CPU reports no AVIC.
    Unsupported,
    /// Every check passed in this mode.
    Passed(Mode),
    /// At least one check failed in this mode.
    Failed(Mode),
}

impl Verdict {
    const fn encode(self) -> u8 {
        match self {
            Self::NotRun => 0,
            Self::Unsupported => 1,
            Self::Passed(Mode::X2avic) => 2,
            Self::Passed(Mode::Xavic) => 3,
            Self::Failed(Mode::X2avic) => 4,
            Self::Failed(Mode::Xavic) => 5,
        }
    }

    const fn decode(v: u8) -> Self {
        match v {
            1 => Self::Unsupported,
            2 => Self::Passed(Mode::X2avic),
            3 => Self::Passed(Mode::Xavic),
            4 => Self::Failed(Mode::X2avic),
            5 => Self::Failed(Mode::Xavic),
            _ => Self::NotRun,
        }
    }
}

impl core::fmt::Display for Verdict {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotRun => f.write_str("not run"),
            Self::Unsupported => f.write_str("skipped, no AVIC"),
            Self::Passed(m) => write!(f, "{} passed", m.name()),
            Self::Failed(m) => write!(f, "{} FAILED", m.name()),
        }
    }
}

static VERDICT: AtomicU8 = AtomicU8::new(Verdict::NotRun.encode());

/// The self-test's verdict.
pub fn verdict() -> Verdict {
    Verdict::decode(VERDICT.load(Ordering::SeqCst))
}

pub fn record(v: Verdict) {
    VERDICT.store(v.encode(), Ordering::SeqCst);
}
