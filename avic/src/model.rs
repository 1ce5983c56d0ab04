//! A software model of the IPI delivery AVIC performs on a guest ICR write (APM vol. 2
//! §15.29.4 "Interrupt Delivery", §15.29.9), so that the physical APIC-ID table the hypervisor
//! builds can be checked on the host: which backing pages get an IRR bit, which cores get a
//! doorbell, and which `AVIC_INCOMPLETE_IPI` cause the sender would exit with.
//!
//! Modelled: fixed, edge-triggered IPIs with physical destinations, the xAPIC/x2APIC broadcast
//! destination and the three shorthands. Broadcasts skip entries that are not Valid, without an
//! exit (so every guest APIC ID needs a Valid entry). Not modelled: logical destinations (the
//! logical table), lowest-priority arbitration, and the exact ordering of IRR updates.
//! One assumption beyond the APM text checked: vectors 0–15 are reported as "invalid vector".

use crate::exit::{Icr, IpiFailure, Shorthand};
use crate::table::{PhysicalIdEntry, PHYSICAL_TABLE_ENTRIES};
use crate::BackingPage;
use apic::DeliveryMode;

/// A set of physical APIC-ID table indices (0–511), without allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetSet {
    bits: [u64; PHYSICAL_TABLE_ENTRIES / 64],
}

impl TargetSet {
    /// Add `index` (ignored if ≥ 512).
    pub fn insert(&mut self, index: usize) {
        if index < PHYSICAL_TABLE_ENTRIES {
            self.bits[index / 64] |= 1 << (index % 64);
        }
    }

    /// Whether `index` is in the set.
    pub const fn contains(&self, index: usize) -> bool {
        index < PHYSICAL_TABLE_ENTRIES && self.bits[index / 64] & (1 << (index % 64)) != 0
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// The members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..PHYSICAL_TABLE_ENTRIES).filter(|&i| self.contains(i))
    }
}

/// What the hardware does with one ICR write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpiOutcome {
    /// Table indices whose backing page gets the vector's IRR bit.
    pub irr_set: TargetSet,
    /// Table indices whose host core gets a doorbell (IsRunning targets other than the sender).
    pub doorbells: TargetSet,
    /// The `AVIC_INCOMPLETE_IPI` exit of the sender, if any, with the index it reports.
    pub exit: Option<(IpiFailure, u16)>,
}

/// The ICR used a feature the model does not cover (logical destination mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmodeled;

/// Model an ICR write by the vCPU at physical table index `sender`.
///
/// `table` is the physical APIC-ID table (its first `max_index + 1` entries are used) and
/// `x2apic` selects the destination format.
pub fn deliver_ipi(
    table: &[PhysicalIdEntry],
    max_index: u16,
    x2apic: bool,
    sender: u16,
    icr: Icr,
) -> Result<IpiOutcome, Unmodeled> {
    let mut out = IpiOutcome::default();
    if icr.delivery_mode() != DeliveryMode::Fixed || icr.level_triggered() {
        out.exit = Some((IpiFailure::InvalidIntType, 0));
        return Ok(out);
    }
    if icr.vector() < 16 {
        out.exit = Some((IpiFailure::InvalidVector, 0));
        return Ok(out);
    }
    let last = (max_index as usize).min(table.len().saturating_sub(1));
    let broadcast_id = if x2apic { u32::MAX } else { 0xFF };
    let (all, exclude_self) = match icr.shorthand() {
        Shorthand::SelfOnly => {
            out.irr_set.insert(sender as usize);
            return Ok(out);
        }
        Shorthand::AllIncludingSelf => (true, false),
        Shorthand::AllExcludingSelf => (true, true),
        Shorthand::Destination if icr.logical() => return Err(Unmodeled),
        Shorthand::Destination => (icr.destination(x2apic) == broadcast_id, false),
    };

    if !all {
        let dest = icr.destination(x2apic) as usize;
        let entry = table.get(dest).copied().unwrap_or_default();
        if dest > last || !entry.is_valid() {
            out.exit = Some((IpiFailure::InvalidTarget, dest.min(0x1FF) as u16));
            return Ok(out);
        }
        deliver_one(&mut out, entry, dest, sender);
        return Ok(out);
    }
    for (i, entry) in table.iter().enumerate().take(last + 1) {
        if !entry.is_valid() || (exclude_self && i == sender as usize) {
            continue;
        }
        deliver_one(&mut out, *entry, i, sender);
    }
    Ok(out)
}

fn deliver_one(out: &mut IpiOutcome, entry: PhysicalIdEntry, index: usize, sender: u16) {
    if entry.backing_page().0 == 0 {
        out.exit
            .get_or_insert((IpiFailure::InvalidBackingPage, index as u16));
        return;
    }
    out.irr_set.insert(index);
    if index == sender as usize {
        return; // the sender is running by definition and re-evaluates its own IRR
    }
    if entry.is_running() {
        out.doorbells.insert(index);
    } else {
        out.exit
            .get_or_insert((IpiFailure::TargetNotRunning, index as u16));
    }
}

/// Apply an outcome's IRR updates to backing pages indexed like the physical table.
pub fn apply_irr(out: &IpiOutcome, vector: u8, pages: &mut [BackingPage]) {
    for i in out.irr_set.iter() {
        if let Some(p) = pages.get_mut(i) {
            p.set_irr(vector);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svm::Hpa;

    /// Four vCPUs: 0 and 1 running on host APIC IDs 10/11, 2 not running, 3 not valid.
    fn table() -> [PhysicalIdEntry; 4] {
        [
            PhysicalIdEntry::new(Hpa(0x1000), 10).with_running(true),
            PhysicalIdEntry::new(Hpa(0x2000), 11).with_running(true),
            PhysicalIdEntry::new(Hpa(0x3000), 12),
            PhysicalIdEntry(0),
        ]
    }

    fn fixed(dest: u64, vector: u64) -> Icr {
        Icr((dest << 56) | vector)
    }

    #[test]
    fn ipi_to_running_target_rings_doorbell() {
        let out = deliver_ipi(&table(), 3, false, 0, fixed(1, 0xEC)).unwrap();
        assert_eq!(out.irr_set.iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(out.doorbells.iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(out.exit, None);
        let mut pages: Vec<BackingPage> = (0..4).map(|_| BackingPage::new_zeroed()).collect();
        apply_irr(&out, 0xEC, &mut pages);
        assert!(pages[1].irr(0xEC) && !pages[0].irr(0xEC));
    }

    #[test]
    fn ipi_to_sleeping_target_exits_after_setting_irr() {
        let out = deliver_ipi(&table(), 3, false, 0, fixed(2, 0x40)).unwrap();
        assert!(out.irr_set.contains(2));
        assert!(out.doorbells.is_empty());
        assert_eq!(out.exit, Some((IpiFailure::TargetNotRunning, 2)));
    }

    #[test]
    fn invalid_targets() {
        let t = table();
        assert_eq!(
            deliver_ipi(&t, 3, false, 0, fixed(3, 0x40)).unwrap().exit,
            Some((IpiFailure::InvalidTarget, 3))
        );
        assert_eq!(
            deliver_ipi(&t, 2, false, 0, fixed(3, 0x40)).unwrap().exit,
            Some((IpiFailure::InvalidTarget, 3))
        );
        assert_eq!(
            deliver_ipi(&t, 3, false, 0, fixed(0x40, 0x40))
                .unwrap()
                .exit,
            Some((IpiFailure::InvalidTarget, 0x40))
        );
        let mut t2 = t;
        t2[1] = PhysicalIdEntry::new(Hpa(0), 11);
        assert_eq!(
            deliver_ipi(&t2, 3, false, 0, fixed(1, 0x40)).unwrap().exit,
            Some((IpiFailure::InvalidBackingPage, 1))
        );
    }

    #[test]
    fn broadcast_skips_invalid_entries() {
        // All-excluding-self from vCPU 0: 1 (running), 2 (not running), 3 skipped.
        let out = deliver_ipi(&table(), 3, false, 0, Icr((3 << 18) | 0x50)).unwrap();
        assert_eq!(out.irr_set.iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(out.doorbells.iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(out.exit, Some((IpiFailure::TargetNotRunning, 2)));
        // xAPIC destination 0xFF is a broadcast including self.
        let b = deliver_ipi(&table(), 3, false, 1, fixed(0xFF, 0x50)).unwrap();
        assert_eq!(b.irr_set.len(), 3);
        assert!(!b.doorbells.contains(1));
    }

    #[test]
    fn self_ipi_and_unsupported_types() {
        let s = deliver_ipi(&table(), 3, false, 2, Icr((1 << 18) | 0x60)).unwrap();
        assert_eq!(s.irr_set.iter().collect::<Vec<_>>(), vec![2]);
        assert_eq!(s.exit, None);
        let init = Icr((1 << 56) | (5 << 8));
        assert_eq!(
            deliver_ipi(&table(), 3, false, 0, init).unwrap().exit,
            Some((IpiFailure::InvalidIntType, 0))
        );
        let level = Icr((1 << 56) | (1 << 15) | 0x40);
        assert_eq!(
            deliver_ipi(&table(), 3, false, 0, level).unwrap().exit,
            Some((IpiFailure::InvalidIntType, 0))
        );
        assert_eq!(
            deliver_ipi(&table(), 3, false, 0, fixed(1, 0x0E))
                .unwrap()
                .exit,
            Some((IpiFailure::InvalidVector, 0))
        );
        assert_eq!(
            deliver_ipi(&table(), 3, false, 0, Icr((1 << 56) | (1 << 11) | 0x40)),
            Err(Unmodeled)
        );
    }

    #[test]
    fn x2apic_destinations() {
        let t = table();
        let out = deliver_ipi(&t, 3, true, 0, Icr((1 << 32) | 0x40)).unwrap();
        assert!(out.doorbells.contains(1));
        let all = deliver_ipi(&t, 3, true, 0, Icr((0xFFFF_FFFF << 32) | 0x40)).unwrap();
        assert_eq!(all.irr_set.len(), 3);
        let far = deliver_ipi(&t, 3, true, 0, Icr((0x1234 << 32) | 0x40)).unwrap();
        assert_eq!(far.exit, Some((IpiFailure::InvalidTarget, 0x1FF)));
    }
}
