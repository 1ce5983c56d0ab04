//! Guest NMIs: the latch another vCPU sets, and the blocking a vCPU's own core tracks until the
//! guest's NMI handler has returned.
//!
//! A processor latches one NMI while it cannot take it (an NMI sent meanwhile merges with the
//! latched one) and blocks further NMIs from the delivery of one until the next IRET completes
//! (AMD APM vol. 2, 8.2.3 "Non-Maskable-Interrupt Exception"). The hypervisor injects a guest
//! NMI through EVENTINJ (type NMI, APM vol. 2, 15.20); without vNMI (CPUID 8000_000Ah EDX bit
//! 25, which QEMU TCG does not offer) the blocking is the hypervisor's to track: it intercepts
//! IRET while the handler runs (APM vol. 2, 15.9). The IRET exit comes *before* the IRET runs,
//! so NMIs open only at a later exit at another RIP; when an NMI is latched by then, the vCPU
//! single-steps the IRET to get that exit at once (as KVM does without vNMI).
//!
//! The latch is shared (any vCPU of the guest raises it); the blocking state belongs to the
//! vCPU's core alone.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One vCPU's latched NMI and what reached it.
pub struct NmiLatch {
    pending: AtomicBool,
    raised: AtomicU64,
    merged: AtomicU64,
}

impl Default for NmiLatch {
    fn default() -> Self {
        Self::new()
    }
}

impl NmiLatch {
    pub const fn new() -> Self {
        NmiLatch {
            pending: AtomicBool::new(false),
            raised: AtomicU64::new(0),
            merged: AtomicU64::new(0),
        }
    }

    /// An NMI for this vCPU. True when it latched a new one (the vCPU's core must be made to
    /// exit to inject it); false when one was latched already and it merged with it. So however
    /// many NMIs a guest sends, its target exits at most once per NMI it takes.
    pub fn raise(&self) -> bool {
        self.raised.fetch_add(1, Ordering::Relaxed);
        let was = self.pending.swap(true, Ordering::AcqRel);
        if was {
            self.merged.fetch_add(1, Ordering::Relaxed);
        }
        !was
    }

    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    fn take(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Drops a latched NMI (the guest restarts; its counts are kept). True if one was latched.
    pub fn clear(&self) -> bool {
        self.take()
    }

    /// NMIs raised for this vCPU and of those merged with a latched one.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.raised.load(Ordering::Relaxed),
            self.merged.load(Ordering::Relaxed),
        )
    }
}

/// Whether the guest can take an NMI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blocking {
    Open,
    /// An NMI was injected; its handler has not reached its IRET.
    InHandler,
    /// The handler's IRET at this RIP exited and has not completed yet.
    IretAt(u64),
}

/// What the vCPU sets up before VMRUN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Inject an NMI (EVENTINJ type NMI).
    pub inject: bool,
    /// Intercept IRET (the handler is running).
    pub intercept_iret: bool,
    /// Single-step the next instruction (RFLAGS.TF, #DB intercepted): the IRET whose
    /// completion opens NMIs for the latched one.
    pub single_step: bool,
    /// EVENTINJ is taken by another event: exit right after it is delivered (a physical NMI to
    /// this core, held while GIF is clear) and inject then.
    pub exit_after_event: bool,
}

/// One vCPU's NMI blocking, kept by its own core.
#[derive(Debug)]
pub struct NmiGate {
    blocking: Blocking,
    injected: u64,
}

impl Default for NmiGate {
    fn default() -> Self {
        NmiGate {
            blocking: Blocking::Open,
            injected: 0,
        }
    }
}

impl NmiGate {
    /// At every exit, with the guest's RIP: an IRET that exited at another RIP has completed.
    pub fn exit_at(&mut self, rip: u64) {
        if let Blocking::IretAt(at) = self.blocking {
            if at != rip {
                self.blocking = Blocking::Open;
            }
        }
    }

    /// The IRET intercept fired at `rip` (before the IRET runs).
    pub fn iret(&mut self, rip: u64) {
        if self.blocking == Blocking::InHandler {
            self.blocking = Blocking::IretAt(rip);
        }
    }

    /// Before VMRUN: what to do about `latch`; `event_busy` when EVENTINJ already holds an event
    /// (one being re-injected, or an emulated-mode interrupt).
    pub fn entry(&mut self, latch: &NmiLatch, event_busy: bool) -> Entry {
        let pending = latch.is_pending();
        match self.blocking {
            Blocking::Open if pending && !event_busy && latch.take() => {
                self.blocking = Blocking::InHandler;
                self.injected += 1;
                Entry {
                    inject: true,
                    intercept_iret: true,
                    ..Entry::default()
                }
            }
            Blocking::Open => Entry {
                exit_after_event: pending,
                ..Entry::default()
            },
            Blocking::InHandler => Entry {
                intercept_iret: true,
                ..Entry::default()
            },
            Blocking::IretAt(_) => Entry {
                single_step: pending,
                ..Entry::default()
            },
        }
    }

    /// Whether the guest cannot take an NMI now.
    pub fn blocked(&self) -> bool {
        self.blocking != Blocking::Open
    }

    /// NMIs injected into this vCPU.
    pub fn injected(&self) -> u64 {
        self.injected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IRET_RIP: u64 = 0x1000;

    #[test]
    fn an_nmi_is_injected_once_and_blocks_until_its_iret_completes() {
        let (latch, mut gate) = (NmiLatch::new(), NmiGate::default());
        assert_eq!(gate.entry(&latch, false), Entry::default());
        assert!(latch.raise());
        let e = gate.entry(&latch, false);
        assert!(e.inject && e.intercept_iret && !e.single_step);
        assert!(!latch.is_pending() && gate.blocked());
        // In the handler: a new NMI is latched, not injected.
        gate.exit_at(0x2000);
        assert!(latch.raise());
        let e = gate.entry(&latch, false);
        assert!(!e.inject && e.intercept_iret);
        // The IRET exits; at that RIP it has not run yet: single-step it.
        gate.iret(IRET_RIP);
        gate.exit_at(IRET_RIP);
        let e = gate.entry(&latch, false);
        assert!(!e.inject && !e.intercept_iret && e.single_step);
        // The step's exit is past the IRET: the latched NMI goes in.
        gate.exit_at(0x3000);
        let e = gate.entry(&latch, false);
        assert!(e.inject && e.intercept_iret);
        assert_eq!(gate.injected(), 2);
        assert_eq!(latch.counts(), (2, 0));
    }

    #[test]
    fn a_restart_drops_the_latched_nmi_and_keeps_the_counts() {
        let latch = NmiLatch::new();
        assert!(!latch.clear());
        latch.raise();
        assert!(latch.clear());
        assert!(!latch.is_pending());
        assert_eq!(latch.counts(), (1, 0));
        assert!(latch.raise(), "the next NMI latches anew");
    }

    #[test]
    fn nmis_sent_while_one_is_latched_merge_into_it() {
        let (latch, mut gate) = (NmiLatch::new(), NmiGate::default());
        assert!(latch.raise());
        assert!(gate.entry(&latch, false).inject);
        assert!(latch.raise());
        assert!(!latch.raise());
        assert!(!latch.raise());
        assert_eq!(latch.counts(), (4, 2));
        gate.iret(IRET_RIP);
        gate.exit_at(IRET_RIP + 2);
        assert!(gate.entry(&latch, false).inject);
        gate.iret(IRET_RIP);
        gate.exit_at(IRET_RIP + 2);
        assert_eq!(gate.entry(&latch, false), Entry::default());
        assert_eq!(gate.injected(), 2);
    }

    #[test]
    fn without_a_latched_nmi_an_iret_needs_no_single_step() {
        let (latch, mut gate) = (NmiLatch::new(), NmiGate::default());
        latch.raise();
        gate.entry(&latch, false);
        gate.iret(IRET_RIP);
        gate.exit_at(IRET_RIP);
        assert_eq!(gate.entry(&latch, false), Entry::default());
        assert!(gate.blocked());
        // An NMI exit before the IRET ran, with an NMI latched meanwhile: step it.
        latch.raise();
        gate.exit_at(IRET_RIP);
        assert!(gate.entry(&latch, false).single_step);
    }

    #[test]
    fn a_busy_event_slot_defers_the_nmi_to_an_exit_right_after_that_event() {
        let (latch, mut gate) = (NmiLatch::new(), NmiGate::default());
        latch.raise();
        let e = gate.entry(&latch, true);
        assert!(e.exit_after_event && !e.inject && latch.is_pending());
        assert!(!gate.blocked());
        assert!(gate.entry(&latch, false).inject);
    }

    #[test]
    fn an_iret_outside_an_nmi_handler_changes_nothing() {
        let mut gate = NmiGate::default();
        gate.iret(IRET_RIP);
        assert!(!gate.blocked());
    }
}
