//! The exit counters a guest reads through CPUID leaf 4000_0002h, so that a program in the guest
//! can bracket exactly its own window with two reads (the workloads of `cargo xtask bench`,
//! guest/bench/). CPUID always exits and is allowed at CPL 3, so a user program needs no driver.
//!
//! `CPUID(EAX = 4000_0002h, ECX = i)` answers counter `i` of the calling vCPU as EBX:EAX (high
//! and low halves), ECX = `i`, EDX = the number of counters; an index past the last answers 0
//! (EDX still the count). A read does not count its own exit: the exit is recorded after it is
//! handled, so the `Cpuid` counter lets a reader subtract its reads from `Total`.

use crate::cpuid::CpuidResult;

/// The leaf (in the hypervisor range, up to `cpuid::HYPERVISOR_MAX`).
pub const LEAF: u32 = 0x4000_0002;
// Leaf 4000_0000h's EAX (the range's last leaf) must cover it, or a guest would not look.
const _: () = assert!(LEAF <= crate::cpuid::HYPERVISOR_MAX);

/// The counters, numbered by their position in [`Counter::ALL`] (the ECX of the read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Every exit of this vCPU.
    Total,
    /// CPUID exits (the reads of these counters among them).
    Cpuid,
    /// Physical-interrupt (INTR) exits.
    Intr,
    /// EOIs that exited: x2APIC EOI MSR writes, AVIC 402h EOI traps.
    Eoi,
    /// Timer-register accesses that exited: x2APIC timer MSRs, AVIC 402h timer writes.
    Timer,
    /// IPIs that exited: x2APIC ICR and self-IPI writes, AVIC 401h fixed IPIs.
    Ipi,
    /// Virtual interrupts injected at exits (emulated mode).
    Injected,
    /// HLT exits.
    Hlt,
    /// MSR exits of any kind.
    Msr,
    /// Nested page faults.
    Npf,
    /// Port I/O exits.
    Ioio,
}

impl Counter {
    pub const ALL: [Counter; 11] = [
        Counter::Total,
        Counter::Cpuid,
        Counter::Intr,
        Counter::Eoi,
        Counter::Timer,
        Counter::Ipi,
        Counter::Injected,
        Counter::Hlt,
        Counter::Msr,
        Counter::Npf,
        Counter::Ioio,
    ];

    pub fn from_index(i: u32) -> Option<Counter> {
        Counter::ALL.get(i as usize).copied()
    }
}

/// The answer to `CPUID(LEAF, subleaf)`, with `value` giving the calling vCPU's counts.
pub fn answer(subleaf: u32, value: impl Fn(Counter) -> u64) -> CpuidResult {
    let n = Counter::from_index(subleaf).map_or(0, value);
    CpuidResult {
        eax: n as u32,
        ebx: (n >> 32) as u32,
        ecx: subleaf,
        edx: Counter::ALL.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_split_into_two_halves() {
        let v = |c: Counter| match c {
            Counter::Total => 0x1_0000_0005,
            Counter::Ioio => 7,
            _ => 0,
        };
        let r = answer(0, v);
        assert_eq!((r.eax, r.ebx, r.ecx, r.edx), (5, 1, 0, 11));
        assert_eq!(answer(10, v).eax, 7);
        assert_eq!(answer(1, v).eax, 0);
    }

    #[test]
    fn unknown_index_answers_zero_and_the_count() {
        let r = answer(11, |_| 99);
        assert_eq!((r.eax, r.ebx, r.edx), (0, 0, 11));
        assert_eq!(answer(u32::MAX, |_| 99).eax, 0);
    }

    #[test]
    fn indices_are_positions() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(Counter::from_index(i as u32), Some(*c));
        }
    }
}
