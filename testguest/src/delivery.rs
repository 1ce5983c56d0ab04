//! The delivery-checking guest's bookkeeping (`deliver=...`, glue in the binary's `deliver.rs`):
//! a model of what one local APIC must do with the interrupts the guest causes, and the judge of
//! every arrival against it. Pure logic, host-tested; the glue only tells it what was sent, what
//! arrived, and when.
//!
//! The rules (AMD APM vol. 2 §16.6 "Local Interrupt Priority" and §16.7 "Interrupt
//! Acceptance"; Intel SDM vol. 3A §11.8.3 "Interrupt, Task, and Processor Priority"):
//! - a vector's priority class is its bits 7:4; the processor priority (PPR) is the task priority
//!   (TPR), unless the class of the highest in-service vector is above the TPR's class, in which
//!   case it is that class with sub-class 0;
//! - a fixed interrupt is taken only when its class is above the PPR's class, highest vector
//!   first; so an interrupt never arrives while TPR blocks its class, never nests inside a
//!   handler of its own or a higher class, and a higher class nests inside a lower one's handler
//!   as soon as that handler sets IF;
//! - EOI retires the highest in-service vector;
//! - the IRR holds one bit per vector: a second edge of a vector still pending in the IRR merges
//!   with the first (coalescing); an edge arriving while its vector is in service sets the IRR
//!   again and is taken after the EOI.
//!
//! Sources are of three kinds:
//! - **sent** ([`Ledger::send`]): the guest makes the vector pending itself, at once (self-IPIs
//!   through SELF_IPI or the ICR): the model knows its IRR bit exactly, so a second send while it
//!   is pending is a coalescing, and an arrival of a lower vector while it is deliverable is out
//!   of order;
//! - **armed** ([`Ledger::arm`]): the vector will arrive exactly once, later, at a time the guest
//!   does not know exactly (a one-shot LAPIC timer or PIT count, a level-triggered line that is
//!   asserted or still asserted at an EOI);
//! - **periodic** ([`Ledger::start_periodic`]): a timer with a known period. Its count is only
//!   bounded: no more arrivals than periods elapsed (plus one for the edges of the window), and
//!   no fewer than the periods elapsed minus those that may have merged in the IRR — for every
//!   gap between arrivals longer than one period, the periods it spans beyond the first, since
//!   the source raised them while the previous one was still pending, or the vCPU was not
//!   running (an exit, another thread of the host).
//!
//! An arrival that nobody sent, armed or runs periodically is a duplicate; what was sent or armed
//! and never arrived is lost once the glue gives up waiting ([`Ledger::settle`]).

use core::fmt;

/// The priority class of a vector (bits 7:4).
pub const fn class(vector: u8) -> u8 {
    vector >> 4
}

/// 256 bits, one per vector, as the APIC's IRR/ISR/TMR hold them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorSet([u64; 4]);

impl VectorSet {
    pub const fn new() -> Self {
        VectorSet([0; 4])
    }

    pub fn insert(&mut self, v: u8) {
        self.0[usize::from(v >> 6)] |= 1 << (v & 63);
    }

    pub fn remove(&mut self, v: u8) {
        self.0[usize::from(v >> 6)] &= !(1 << (v & 63));
    }

    pub fn contains(&self, v: u8) -> bool {
        self.0[usize::from(v >> 6)] & (1 << (v & 63)) != 0
    }

    pub fn highest(&self) -> Option<u8> {
        (0..4)
            .rev()
            .find(|&i| self.0[i] != 0)
            .map(|i| (i as u8) * 64 + (63 - self.0[i].leading_zeros() as u8))
    }

    pub fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// Bits 32i+31..32i, as the x2APIC register bank's MSR `i` (ISR at 810h + i, IRR at 820h + i)
    /// shows them.
    pub fn word(&self, i: usize) -> u32 {
        (self.0[i / 2] >> (32 * (i % 2))) as u32
    }

    /// The set whose x2APIC register words are `words` (MSR 0 first).
    pub fn from_words(words: [u32; 8]) -> Self {
        let mut s = VectorSet::new();
        for (i, w) in words.iter().enumerate() {
            s.0[i / 2] |= u64::from(*w) << (32 * (i % 2));
        }
        s
    }

    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&v| self.contains(v))
    }
}

/// The processor priority for `tpr` and the highest in-service vector (SDM §11.8.3.1).
pub fn ppr(tpr: u8, highest_in_service: Option<u8>) -> u8 {
    let isrv = highest_in_service.unwrap_or(0);
    if class(tpr) >= class(isrv) {
        tpr
    } else {
        isrv & 0xf0
    }
}

/// What one check (or a whole run) counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Interrupts the sources raised: sends, arms, periods elapsed.
    pub sent: u64,
    /// Arrivals, duplicates included.
    pub received: u64,
    /// Sends that merged with a pending instance of their vector, as the IRR merges them.
    pub coalesced: u64,
    /// Arrivals against the priority rules: while TPR blocked the class, nested inside a handler
    /// of the same or a higher class, before a higher deliverable vector, or a deliverable one
    /// that was not taken when it should have been (see [`Ledger::overdue`]).
    pub out_of_order: u64,
    pub duplicates: u64,
    pub lost: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.received += o.received;
        self.coalesced += o.coalesced;
        self.out_of_order += o.out_of_order;
        self.duplicates += o.duplicates;
        self.lost += o.lost;
    }

    /// The difference since `earlier` (counts only grow).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            sent: self.sent - earlier.sent,
            received: self.received - earlier.received,
            coalesced: self.coalesced - earlier.coalesced,
            out_of_order: self.out_of_order - earlier.out_of_order,
            duplicates: self.duplicates - earlier.duplicates,
            lost: self.lost - earlier.lost,
        }
    }

    /// Nothing out of order, duplicated or lost, and the books balance: every interrupt sent was
    /// received or coalesced.
    pub fn clean(&self) -> bool {
        self.out_of_order == 0
            && self.duplicates == 0
            && self.lost == 0
            && self.sent == self.received + self.coalesced
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, received {}, coalesced {}, out of order {}, duplicates {}, lost {}",
            self.sent, self.received, self.coalesced, self.out_of_order, self.duplicates, self.lost
        )
    }
}

/// Why an arrival was out of order, counted separately for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    /// Arrived while the TPR's class was at or above its class.
    pub tpr_blocked: u64,
    /// Arrived inside a handler of the same or a higher class (before that handler's EOI).
    pub preempted: u64,
    /// Arrived while a higher vector the guest had sent was pending and deliverable.
    pub inverted: u64,
    /// A sent vector that was deliverable (IF set, class above PPR) and had not arrived when the
    /// guest looked.
    pub overdue: u64,
}

impl Violations {
    pub fn total(&self) -> u64 {
        self.tpr_blocked + self.preempted + self.inverted + self.overdue
    }
}

/// A periodic source's window and arrivals, in the glue's time unit (TSC ticks).
///
/// The source expires on the grid `start + k * period`. Between two arrivals the IRR bit was
/// clear right after the first (it was taken), so the first expiry after it set the bit again and
/// every further expiry before the next arrival merged with it: the expiries in the interval
/// beyond the first are the merges the arrivals allow. Whether a merge was the guest's doing (it
/// blocked the class) or the platform's (the vCPU was not running) the guest cannot tell; an
/// expiry lost while the guest could take it looks the same, so periodic counts are bounds, not
/// exact books.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Periodic {
    pub vector: u8,
    pub period: u64,
    pub start: u64,
    /// When the source was stopped (`None`: still running).
    pub stop: Option<u64>,
    /// The grid index of the last arrival (expiries up to it are accounted for).
    last_expiry: u64,
    pub received: u64,
    /// Expiries that may have merged (see the type's comment).
    pub may_merge: u64,
}

impl Periodic {
    pub fn new(vector: u8, period: u64, start: u64) -> Self {
        Periodic {
            vector,
            period: period.max(1),
            start,
            stop: None,
            last_expiry: 0,
            received: 0,
            may_merge: 0,
        }
    }

    /// Expiries from the start up to `t` (not after the stop).
    fn expiries_until(&self, t: u64) -> u64 {
        let t = self.stop.map_or(t, |s| t.min(s));
        t.saturating_sub(self.start) / self.period
    }

    pub fn tick(&mut self, now: u64) {
        let k = self.expiries_until(now);
        let new = k.saturating_sub(self.last_expiry);
        self.may_merge += new.saturating_sub(1);
        self.last_expiry = self.last_expiry.max(k);
        self.received += 1;
    }

    /// The source's counts once it is stopped and its last arrival had time to come: expiries
    /// between start and stop are the interrupts it raised; one more or one fewer arrival is
    /// within the edges of the window (the guest reads its clock a little before or after the
    /// source starts and stops, and its measure of the period is not exact).
    pub fn counts(&self) -> Counts {
        let stop = self.stop.unwrap_or(self.start);
        let expiries = self.expiries_until(stop);
        let duplicates = self.received.saturating_sub(expiries + 1);
        let delivered = self.received - duplicates;
        let sent = expiries.max(delivered);
        let missing = sent - delivered;
        let lost = missing.saturating_sub(self.may_merge + 1);
        Counts {
            sent,
            received: self.received,
            coalesced: missing - lost,
            out_of_order: 0,
            duplicates,
            lost,
        }
    }
}

/// How many periodic sources can run at once.
pub const MAX_PERIODIC: usize = 4;

/// One arrival, as the ledger saw it (the last few are kept for a failure report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrival {
    pub vector: u8,
    /// Handlers already in service when it arrived (0: not nested).
    pub depth: u8,
    pub tpr: u8,
    /// Whether the ledger found it out of order or unexpected.
    pub bad: bool,
}

/// Arrivals kept for the report: the last ones, and the first bad ones.
pub const HISTORY: usize = 16;
pub const BAD_KEPT: usize = 4;

/// The model of one local APIC and the books of everything sent to it.
#[derive(Clone, Copy, Debug)]
pub struct Ledger {
    tpr: u8,
    /// Sent and not yet arrived: the IRR bits the guest set itself.
    pending: VectorSet,
    /// Arrivals each vector still expects from armed sources.
    armed: [u16; 256],
    periodic: [Option<Periodic>; MAX_PERIODIC],
    /// Handlers entered and not yet EOIed: the ISR.
    in_service: VectorSet,
    counts: Counts,
    violations: Violations,
    /// Read-backs of ISR, IRR, PPR or TMCCT that differed from the model.
    pub readback_mismatches: u64,
    received_by_vector: [u32; 256],
    nested_by_vector: [u32; 256],
    history: [Arrival; HISTORY],
    history_len: usize,
    first_bad: [Arrival; BAD_KEPT],
    bad_len: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    pub const fn new() -> Self {
        Ledger {
            tpr: 0,
            pending: VectorSet::new(),
            armed: [0; 256],
            periodic: [None; MAX_PERIODIC],
            in_service: VectorSet::new(),
            counts: Counts {
                sent: 0,
                received: 0,
                coalesced: 0,
                out_of_order: 0,
                duplicates: 0,
                lost: 0,
            },
            violations: Violations {
                tpr_blocked: 0,
                preempted: 0,
                inverted: 0,
                overdue: 0,
            },
            readback_mismatches: 0,
            received_by_vector: [0; 256],
            nested_by_vector: [0; 256],
            history: [Arrival {
                vector: 0,
                depth: 0,
                tpr: 0,
                bad: false,
            }; HISTORY],
            history_len: 0,
            first_bad: [Arrival {
                vector: 0,
                depth: 0,
                tpr: 0,
                bad: true,
            }; BAD_KEPT],
            bad_len: 0,
        }
    }

    /// The counts so far; periodic sources still registered are not in them yet.
    pub fn counts(&self) -> Counts {
        let mut c = self.counts;
        c.out_of_order = self.violations.total();
        c
    }

    pub fn violations(&self) -> Violations {
        self.violations
    }

    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr;
    }

    /// The PPR the APIC should show now.
    pub fn ppr(&self) -> u8 {
        ppr(self.tpr, self.in_service.highest())
    }

    pub fn in_service(&self) -> VectorSet {
        self.in_service
    }

    /// The IRR bits the guest set and that have not arrived.
    pub fn pending(&self) -> VectorSet {
        self.pending
    }

    pub fn received_of(&self, v: u8) -> u32 {
        self.received_by_vector[usize::from(v)]
    }

    /// Arrivals of `v` that came while another handler was in service.
    pub fn nested_of(&self, v: u8) -> u32 {
        self.nested_by_vector[usize::from(v)]
    }

    pub fn armed_of(&self, v: u8) -> u16 {
        self.armed[usize::from(v)]
    }

    /// The guest set `v` in its own IRR (a self-IPI that is delivered at once).
    pub fn send(&mut self, v: u8) {
        self.counts.sent += 1;
        if self.pending.contains(v) {
            self.counts.coalesced += 1;
        } else {
            self.pending.insert(v);
        }
    }

    /// A source will raise `v` once, later.
    pub fn arm(&mut self, v: u8) {
        self.counts.sent += 1;
        self.armed[usize::from(v)] += 1;
    }

    /// An armed source of `v` was stopped before it raised anything (a backstop timer the guest
    /// no longer needed): one arrival fewer is expected, and it counts as never sent. False if
    /// none was armed.
    pub fn disarm(&mut self, v: u8) -> bool {
        let i = usize::from(v);
        if self.armed[i] == 0 {
            return false;
        }
        self.armed[i] -= 1;
        self.counts.sent -= 1;
        true
    }

    /// An armed `v` is now known to be in the IRR (read back while it cannot be taken): from here
    /// on it is judged as sent, so it must come before any lower deliverable vector. False if no
    /// arrival of `v` was armed, or `v` is pending already.
    pub fn landed(&mut self, v: u8) -> bool {
        let i = usize::from(v);
        if self.armed[i] == 0 || self.pending.contains(v) {
            return false;
        }
        self.armed[i] -= 1;
        self.pending.insert(v);
        true
    }

    /// A periodic source on `v` starts at `now`; false if there is no free slot or `v` already
    /// runs one.
    pub fn start_periodic(&mut self, v: u8, period: u64, now: u64) -> bool {
        if self.periodic_slot(v).is_some() {
            return false;
        }
        match self.periodic.iter_mut().find(|p| p.is_none()) {
            Some(slot) => {
                *slot = Some(Periodic::new(v, period, now));
                true
            }
            None => false,
        }
    }

    /// The source on `v` stopped at `now`; its arrivals still count until
    /// [`Ledger::finish_periodic`].
    pub fn stop_periodic(&mut self, v: u8, now: u64) {
        if let Some(i) = self.periodic_slot(v) {
            if let Some(p) = &mut self.periodic[i] {
                p.stop = Some(now);
            }
        }
    }

    /// Closes the books of the periodic source on `v` (after the glue waited for a last arrival):
    /// its counts join the ledger's and are returned with the source's record.
    pub fn finish_periodic(&mut self, v: u8) -> Option<(Periodic, Counts)> {
        let i = self.periodic_slot(v)?;
        let p = self.periodic[i].take()?;
        let c = p.counts();
        self.counts.sent += c.sent;
        self.counts.coalesced += c.coalesced;
        self.counts.duplicates += c.duplicates;
        self.counts.lost += c.lost;
        // Its arrivals were counted as they came.
        Some((p, c))
    }

    fn periodic_slot(&self, v: u8) -> Option<usize> {
        self.periodic
            .iter()
            .position(|p| p.is_some_and(|p| p.vector == v))
    }

    /// The highest sent vector that is pending and deliverable now (class above the PPR's).
    pub fn deliverable(&self) -> Option<u8> {
        let ppr = self.ppr();
        self.pending.highest().filter(|&w| class(w) > class(ppr))
    }

    /// An interrupt handler was entered for `v` at time `now` (before it does anything else).
    pub fn arrive(&mut self, v: u8, now: u64) {
        self.counts.received += 1;
        let i = usize::from(v);
        self.received_by_vector[i] = self.received_by_vector[i].saturating_add(1);
        let depth = self.in_service.len();
        if depth > 0 {
            self.nested_by_vector[i] = self.nested_by_vector[i].saturating_add(1);
        }
        let mut bad = false;
        if class(v) <= class(self.tpr) {
            self.violations.tpr_blocked += 1;
            bad = true;
        } else if self
            .in_service
            .highest()
            .is_some_and(|h| class(v) <= class(h))
        {
            self.violations.preempted += 1;
            bad = true;
        } else if self.deliverable().is_some_and(|w| w > v) {
            self.violations.inverted += 1;
            bad = true;
        }
        if self.pending.contains(v) {
            self.pending.remove(v);
        } else if self.armed[i] > 0 {
            self.armed[i] -= 1;
        } else if let Some(s) = self.periodic_slot(v) {
            if let Some(p) = &mut self.periodic[s] {
                p.tick(now);
            }
        } else {
            self.counts.duplicates += 1;
            bad = true;
        }
        self.in_service.insert(v);
        let a = Arrival {
            vector: v,
            depth: depth as u8,
            tpr: self.tpr,
            bad,
        };
        self.history[self.history_len % HISTORY] = a;
        self.history_len += 1;
        if bad {
            if let Some(slot) = self.first_bad.get_mut(self.bad_len) {
                *slot = a;
                self.bad_len += 1;
            }
        }
    }

    /// An EOI: retires the highest in-service vector, which it returns.
    pub fn eoi(&mut self) -> Option<u8> {
        let v = self.in_service.highest()?;
        self.in_service.remove(v);
        Some(v)
    }

    /// The guest, with IF set, gave the processor time to take what it could: every sent vector
    /// still deliverable now is overdue (counted out of order, once per call). Returns how many.
    pub fn overdue(&mut self) -> u64 {
        let ppr = self.ppr();
        let n = self
            .pending
            .iter()
            .filter(|&w| class(w) > class(ppr))
            .count() as u64;
        self.violations.overdue += n;
        n
    }

    /// Sent or armed interrupts not yet arrived.
    pub fn outstanding(&self) -> u64 {
        u64::from(self.pending.len()) + self.armed.iter().map(|&n| u64::from(n)).sum::<u64>()
    }

    /// The vectors still outstanding (sent or armed, not arrived).
    pub fn outstanding_vectors(&self) -> VectorSet {
        let mut s = self.pending;
        for v in 0..=255u8 {
            if self.armed[usize::from(v)] > 0 {
                s.insert(v);
            }
        }
        s
    }

    /// The glue stopped waiting: whatever is still outstanding is lost. Returns how many.
    pub fn settle(&mut self) -> u64 {
        let n = self.outstanding();
        self.counts.lost += n;
        self.pending = VectorSet::new();
        self.armed = [0; 256];
        n
    }

    /// Compares a read-back with the model; counts a mismatch. Returns whether they agree.
    pub fn check_readback<T: PartialEq>(&mut self, read: T, model: T) -> bool {
        let same = read == model;
        if !same {
            self.readback_mismatches += 1;
        }
        same
    }

    /// The first arrivals found out of order or unexpected (up to [`BAD_KEPT`]).
    pub fn first_bad(&self) -> &[Arrival] {
        &self.first_bad[..self.bad_len]
    }

    /// The last arrivals, oldest first.
    pub fn history(&self) -> impl Iterator<Item = Arrival> + '_ {
        let n = self.history_len.min(HISTORY);
        let first = self.history_len - n;
        (first..self.history_len).map(|i| self.history[i % HISTORY])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_sets_match_the_x2apic_register_words() {
        let mut s = VectorSet::new();
        for v in [0x20, 0x3f, 0x40, 0x9f, 0xff] {
            s.insert(v);
        }
        assert_eq!(s.highest(), Some(0xff));
        assert_eq!(s.len(), 5);
        // ISR/IRR MSR i holds vectors 32i..32i+31.
        assert_eq!(s.word(1), 1 | 1 << 31);
        assert_eq!(s.word(2), 1);
        assert_eq!(s.word(4), 1 << 31);
        assert_eq!(s.word(7), 1 << 31);
        let words: [u32; 8] = core::array::from_fn(|i| s.word(i));
        assert_eq!(VectorSet::from_words(words), s);
        s.remove(0xff);
        assert_eq!(s.highest(), Some(0x9f));
        assert_eq!(s.iter().collect::<Vec<_>>(), [0x20, 0x3f, 0x40, 0x9f]);
        assert_eq!(VectorSet::new().highest(), None);
    }

    #[test]
    fn ppr_is_tpr_or_the_in_service_class() {
        assert_eq!(ppr(0, None), 0);
        assert_eq!(ppr(0x35, None), 0x35);
        assert_eq!(ppr(0x35, Some(0x41)), 0x40);
        // Same class: TPR wins, sub-class included.
        assert_eq!(ppr(0x45, Some(0x4f)), 0x45);
        assert_eq!(ppr(0x90, Some(0x41)), 0x90);
    }

    #[test]
    fn sends_arrive_exactly_once_and_coalesce_while_pending() {
        let mut l = Ledger::new();
        l.send(0x41);
        l.send(0x41); // still pending: merges in the IRR
        l.send(0x81);
        assert_eq!(l.deliverable(), Some(0x81));
        l.arrive(0x81, 0);
        l.eoi();
        l.arrive(0x41, 0);
        assert_eq!(l.eoi(), Some(0x41));
        let c = l.counts();
        assert_eq!((c.sent, c.received, c.coalesced), (3, 2, 1));
        assert!(c.clean(), "{c}");
        // Sent again while in service: pending again, taken after the EOI.
        l.send(0x51);
        l.arrive(0x51, 0);
        l.send(0x51);
        assert_eq!(l.deliverable(), None, "same class as the one in service");
        l.eoi();
        assert_eq!(l.deliverable(), Some(0x51));
        l.arrive(0x51, 0);
        l.eoi();
        assert!(l.counts().clean());
    }

    #[test]
    fn unexpected_and_missing_arrivals_are_duplicates_and_losses() {
        let mut l = Ledger::new();
        l.arrive(0x60, 0);
        l.eoi();
        l.send(0x61);
        l.arm(0x48);
        assert_eq!(l.outstanding(), 2);
        assert_eq!(l.settle(), 2);
        let c = l.counts();
        assert_eq!((c.duplicates, c.lost), (1, 2));
        assert!(!c.clean());
        // A late arrival after the books closed is a duplicate too.
        l.arrive(0x61, 0);
        assert_eq!(l.counts().duplicates, 2);
        assert!(l.history().all(|a| a.bad));
        let bad: Vec<u8> = l.first_bad().iter().map(|a| a.vector).collect();
        assert_eq!(bad, [0x60, 0x61]);
    }

    #[test]
    fn armed_sources_arrive_as_often_as_armed() {
        let mut l = Ledger::new();
        l.arm(0x48);
        l.arm(0x48);
        l.arrive(0x48, 0);
        l.eoi();
        assert_eq!(l.armed_of(0x48), 1);
        l.arrive(0x48, 0);
        l.eoi();
        l.arrive(0x48, 0);
        l.eoi();
        let c = l.counts();
        assert_eq!((c.sent, c.received, c.duplicates), (2, 3, 1));
    }

    #[test]
    fn a_disarmed_source_is_neither_sent_nor_lost() {
        let mut l = Ledger::new();
        l.arm(0x48);
        l.arm(0x48);
        assert!(l.disarm(0x48));
        l.arrive(0x48, 0);
        l.eoi();
        assert!(!l.disarm(0x48));
        assert_eq!(l.settle(), 0);
        let c = l.counts();
        assert_eq!((c.sent, c.received, c.lost, c.duplicates), (1, 1, 0, 0));
    }

    #[test]
    fn armed_vectors_seen_in_the_irr_are_judged_as_sent() {
        let mut l = Ledger::new();
        l.set_tpr(0x90);
        l.arm(0x34);
        l.arm(0x84);
        assert!(l.landed(0x34) && l.landed(0x84));
        assert!(!l.landed(0x84), "pending already");
        assert!(!l.landed(0x44), "never armed");
        l.set_tpr(0);
        // 0x34 before 0x84 is an inversion now.
        let mut broken = l;
        broken.arrive(0x34, 0);
        assert_eq!(broken.violations().inverted, 1);
        l.arrive(0x84, 0);
        l.eoi();
        l.arrive(0x34, 0);
        l.eoi();
        let c = l.counts();
        assert!(c.clean(), "{c}");
        assert_eq!((c.sent, c.received), (2, 2));
    }

    #[test]
    fn tpr_blocks_its_class_and_below() {
        let mut l = Ledger::new();
        l.set_tpr(0x50);
        l.send(0x51);
        l.send(0x61);
        // 0x61 is deliverable, 0x51 held.
        assert_eq!(l.deliverable(), Some(0x61));
        l.arrive(0x61, 0);
        l.eoi();
        assert_eq!(l.deliverable(), None);
        assert_eq!(l.overdue(), 0);
        // A 0x51 arriving now would break the TPR.
        let mut broken = l;
        broken.arrive(0x51, 0);
        assert_eq!(broken.violations().tpr_blocked, 1);
        l.set_tpr(0);
        assert_eq!(l.deliverable(), Some(0x51));
        assert_eq!(l.overdue(), 1, "not taken although TPR dropped");
        l.arrive(0x51, 0);
        l.eoi();
        let c = l.counts();
        assert_eq!(c.out_of_order, 1);
        assert_eq!(l.violations().overdue, 1);
    }

    #[test]
    fn higher_classes_nest_lower_and_equal_ones_wait() {
        let mut l = Ledger::new();
        l.send(0x41);
        l.arrive(0x41, 0);
        assert_eq!(l.ppr(), 0x40);
        l.send(0x4f);
        l.send(0x35);
        l.send(0xb1);
        assert_eq!(l.deliverable(), Some(0xb1));
        l.arrive(0xb1, 0);
        assert_eq!(l.nested_of(0xb1), 1);
        assert_eq!(l.ppr(), 0xb0);
        assert_eq!(l.eoi(), Some(0xb1));
        // Neither 0x4f (same class) nor 0x35 may come before 0x41's EOI.
        let mut broken = l;
        broken.arrive(0x4f, 0);
        assert_eq!(broken.violations().preempted, 1);
        assert_eq!(l.eoi(), Some(0x41));
        l.arrive(0x4f, 0);
        l.eoi();
        l.arrive(0x35, 0);
        l.eoi();
        assert!(l.counts().clean(), "{}", l.counts());
        assert_eq!(l.nested_of(0x4f), 0);
    }

    #[test]
    fn a_lower_vector_before_a_deliverable_higher_one_is_inverted() {
        let mut l = Ledger::new();
        l.send(0x31);
        l.send(0x91);
        l.arrive(0x31, 0);
        l.eoi();
        l.arrive(0x91, 0);
        l.eoi();
        assert_eq!(l.violations().inverted, 1);
        assert_eq!(l.counts().out_of_order, 1);
        // Within a class the higher vector goes first too.
        let mut l = Ledger::new();
        l.send(0x8a);
        l.send(0x85);
        l.arrive(0x85, 0);
        assert_eq!(l.violations().inverted, 1);
    }

    #[test]
    fn a_missed_eoi_blocks_its_class_and_below_only() {
        let mut l = Ledger::new();
        l.send(0x71);
        l.arrive(0x71, 0);
        // The handler returns without EOI.
        l.send(0x61);
        l.send(0x75);
        l.send(0x91);
        assert_eq!(l.deliverable(), Some(0x91));
        l.arrive(0x91, 0);
        assert_eq!(l.eoi(), Some(0x91));
        assert_eq!(l.deliverable(), None);
        assert_eq!(l.overdue(), 0);
        assert_eq!(l.eoi(), Some(0x71));
        l.arrive(0x75, 0);
        l.eoi();
        l.arrive(0x61, 0);
        l.eoi();
        assert!(l.counts().clean());
    }

    fn periodic(period: u64, stop: u64, arrivals: &[u64]) -> (Periodic, Counts) {
        let mut p = Periodic::new(0x49, period, 0);
        for &t in arrivals {
            if t > stop {
                p.stop = Some(stop);
            }
            p.tick(t);
        }
        p.stop = Some(stop);
        (p, p.counts())
    }

    #[test]
    fn periodic_counts_allow_merges_only_where_expiries_piled_up() {
        // Period 100, window 0..1000: 10 expiries, each taken soon after.
        let (_, c) = periodic(
            100,
            1000,
            &[103, 203, 303, 403, 503, 603, 703, 803, 903, 1003],
        );
        assert_eq!(
            (c.sent, c.received, c.coalesced, c.lost, c.duplicates),
            (10, 10, 0, 0, 0)
        );
        assert!(c.clean());
        // Expiries 300, 400, 500 and 600 before the third arrival: 3 may have merged.
        let (p, c) = periodic(100, 1000, &[100, 200, 600, 700, 800, 900, 1000]);
        assert_eq!(p.may_merge, 3);
        assert_eq!((c.sent, c.received, c.coalesced, c.lost), (10, 7, 3, 0));
        assert!(c.clean(), "{c}");
        // Late by more than a period, then on time: the gap is short but one expiry merged.
        let (p, c) = periodic(100, 600, &[100, 220, 301, 400, 500, 600]);
        assert_eq!(p.may_merge, 0);
        assert!(c.clean());
        let (p, c) = periodic(100, 600, &[100, 320, 400, 500, 600]);
        assert_eq!(
            p.may_merge, 1,
            "expiries 200 and 300 before the arrival at 320"
        );
        assert_eq!((c.sent, c.received, c.coalesced, c.lost), (6, 5, 1, 0));
        // A source that stopped delivering: the tail is no excuse (one is the window's edge).
        let (_, c) = periodic(100, 1000, &[100, 200]);
        assert_eq!((c.sent, c.received, c.lost), (10, 2, 7));
        assert!(!c.clean());
        // More arrivals than expiries (plus the edge): duplicates.
        let arrivals: Vec<u64> = (1..=20).map(|i| i * 50).collect();
        let (_, c) = periodic(100, 1000, &arrivals);
        assert_eq!((c.received, c.duplicates), (20, 9));
        assert!(!c.clean());
        // One more at the edge of the window, arriving after the stop, is fine.
        let arrivals: Vec<u64> = (1..=11).map(|i| i * 100).collect();
        let (_, c) = periodic(100, 1050, &arrivals);
        assert_eq!((c.sent, c.received, c.duplicates), (11, 11, 0));
        assert!(c.clean());
    }

    #[test]
    fn periodic_sources_in_the_ledger() {
        let mut l = Ledger::new();
        assert!(l.start_periodic(0x49, 100, 0));
        assert!(!l.start_periodic(0x49, 100, 0), "one source per vector");
        for t in (100..=500).step_by(100) {
            l.arrive(0x49, t);
            l.eoi();
        }
        l.stop_periodic(0x49, 500);
        let (p, c) = l.finish_periodic(0x49).unwrap();
        assert_eq!(p.received, 5);
        assert_eq!((c.sent, c.received), (5, 5));
        let total = l.counts();
        assert_eq!((total.sent, total.received), (5, 5));
        assert!(total.clean());
        // Gone: a further arrival is a duplicate.
        l.arrive(0x49, 600);
        assert_eq!(l.counts().duplicates, 1);
        assert!(l.finish_periodic(0x49).is_none());
    }

    #[test]
    fn counts_print_and_subtract() {
        let a = Counts {
            sent: 10,
            received: 8,
            coalesced: 2,
            ..Counts::default()
        };
        assert_eq!(
            a.to_string(),
            "sent 10, received 8, coalesced 2, out of order 0, duplicates 0, lost 0"
        );
        assert!(a.clean());
        let mut b = a;
        b.add(&a);
        assert_eq!(b.since(&a), a);
        let unbalanced = Counts {
            sent: 3,
            received: 2,
            ..Counts::default()
        };
        assert!(!unbalanced.clean());
    }

    #[test]
    fn history_keeps_the_last_arrivals() {
        let mut l = Ledger::new();
        for i in 0..40u8 {
            l.send(0x40 + i);
            l.arrive(0x40 + i, 0);
            l.eoi();
        }
        let h: Vec<u8> = l.history().map(|a| a.vector).collect();
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h[HISTORY - 1], 0x40 + 39);
        assert_eq!(h[0], 0x40 + 40 - HISTORY as u8);
    }
}
