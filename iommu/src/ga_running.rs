//! A vCPU starting or stopping, as the posted interrupts of its VF must see it.
//!
//! Two places say whether a vCPU runs: IsRunning in the AVIC physical APIC-ID table (what other
//! vCPUs' IPIs consult) and IsRun in each GuestMode IRTE that posts to it (what the IOMMU
//! consults: doorbell when set, GA log entry when clear; IOMMU spec §2.2.5.2). The order of the
//! two changes decides whether an interrupt can be stranded in the IRR of a vCPU nobody will
//! wake: when it starts, IsRunning is set first and the IRTEs follow; when it stops, the IRTEs
//! are cleared first and IsRunning follows. In between, a device interrupt either rings a core
//! that is about to run the vCPU (harmless) or writes a GA log entry the hypervisor answers.
//! [`switch_running`] is that order; the hypervisor supplies the writes ([`RunningWrites`]).

use crate::Irte128;

/// The hardware writes a running/not-running transition consists of.
pub trait RunningWrites {
    /// IsRunning of the vCPU in the AVIC physical APIC-ID table.
    fn set_is_running(&mut self, running: bool);
    /// One IRTE (index = MSI-X entry), followed by its invalidation.
    fn write_irte(&mut self, index: u16, irte: Irte128);
}

/// Updates, in the safe order, every entry of `entries` (per MSI-X entry: the vCPU it posts to
/// and its IRTE) that posts to `vcpu`: IsRun and the doorbell destination `host_apic_id`.
pub fn switch_running(
    entries: &mut [Option<(usize, Irte128)>],
    vcpu: usize,
    running: bool,
    host_apic_id: u32,
    writes: &mut impl RunningWrites,
) {
    if running {
        writes.set_is_running(true);
    }
    for (index, slot) in entries.iter_mut().enumerate() {
        if let Some((v, irte)) = slot {
            if *v == vcpu {
                *irte = irte.with_running(running, host_apic_id);
                writes.write_irte(index as u16, *irte);
            }
        }
    }
    if !running {
        writes.set_is_running(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ga::{post, GaTag, PostTarget};
    use crate::MsiMessage;

    #[derive(Debug, PartialEq)]
    enum Write {
        IsRunning(bool),
        Irte(u16, bool),
    }

    #[derive(Default)]
    struct Log(Vec<Write>);

    impl RunningWrites for Log {
        fn set_is_running(&mut self, running: bool) {
            self.0.push(Write::IsRunning(running));
        }
        fn write_irte(&mut self, index: u16, irte: Irte128) {
            self.0.push(Write::Irte(index, irte.is_running()));
        }
    }

    fn entry(vcpu: usize) -> Option<(usize, Irte128)> {
        let target = PostTarget {
            backing_page: crate::Hpa(0x10_0000 + 0x1000 * vcpu as u64),
            host_apic_id: vcpu as u32 + 1,
            running: false,
            tag: GaTag {
                guest: 0,
                vcpu: vcpu as u16,
            },
        };
        let msi = MsiMessage {
            address: 0xFEE0_0000,
            data: 0x40,
        };
        Some((vcpu, post(&msi, &target).expect("a fixed edge MSI posts")))
    }

    #[test]
    fn starting_sets_is_running_before_the_irtes() {
        let mut entries = [entry(0), None, entry(1), entry(0)];
        let mut log = Log::default();
        switch_running(&mut entries, 0, true, 7, &mut log);
        assert_eq!(
            log.0,
            [
                Write::IsRunning(true),
                Write::Irte(0, true),
                Write::Irte(3, true)
            ]
        );
        let (_, irte) = entries[3].unwrap();
        assert!(irte.is_running());
        // The other vCPU's entry is untouched.
        assert!(!entries[2].unwrap().1.is_running());
    }

    #[test]
    fn stopping_clears_the_irtes_before_is_running() {
        let mut entries = [entry(1), entry(0)];
        let mut log = Log::default();
        switch_running(&mut entries, 1, true, 9, &mut log);
        log.0.clear();
        switch_running(&mut entries, 1, false, 9, &mut log);
        assert_eq!(log.0, [Write::Irte(0, false), Write::IsRunning(false)]);
    }

    #[test]
    fn a_vcpu_without_entries_only_changes_is_running() {
        let mut entries = [entry(0), None];
        let mut log = Log::default();
        switch_running(&mut entries, 3, true, 1, &mut log);
        switch_running(&mut entries, 3, false, 1, &mut log);
        assert_eq!(log.0, [Write::IsRunning(true), Write::IsRunning(false)]);
    }
}
