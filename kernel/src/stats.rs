//! Exit statistics: how often each exit reason occurred on a vCPU and the cycles the hypervisor spent
//! handling it. Reasons are dense indices chosen by the caller (`svm::exit`'s `index()`).

use core::fmt;

pub struct ExitStats<const N: usize> {
    count: [u64; N],
    cycles: [u64; N],
}

impl<const N: usize> Default for ExitStats<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ExitStats<N> {
    pub const fn new() -> Self {
        ExitStats {
            count: [0; N],
            cycles: [0; N],
        }
    }

    /// Records one exit of reason `index` that took `cycles` to handle. Out-of-range indices go to the
    /// last slot, which callers reserve for "other".
    pub fn record(&mut self, index: usize, cycles: u64) {
        let i = index.min(N - 1);
        self.count[i] += 1;
        self.cycles[i] += cycles;
    }

    pub fn count(&self, index: usize) -> u64 {
        self.count.get(index).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.count.iter().sum()
    }

    /// A table of the non-zero reasons, one per line, with a total line.
    pub fn table<'a>(&'a self, names: &'a dyn Fn(usize) -> &'static str) -> Table<'a, N> {
        Table { stats: self, names }
    }
}

pub struct Table<'a, const N: usize> {
    stats: &'a ExitStats<N>,
    names: &'a dyn Fn(usize) -> &'static str,
}

impl<const N: usize> fmt::Display for Table<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {:<22} {:>12} {:>16}",
            "exit reason", "count", "cycles/exit"
        )?;
        for i in 0..N {
            let n = self.stats.count[i];
            if n > 0 {
                writeln!(
                    f,
                    "  {:<22} {:>12} {:>16}",
                    (self.names)(i),
                    n,
                    self.stats.cycles[i] / n
                )?;
            }
        }
        write!(f, "  {:<22} {:>12}", "total", self.stats.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_table() {
        let mut s = ExitStats::<4>::new();
        s.record(1, 100);
        s.record(1, 300);
        s.record(2, 50);
        s.record(99, 7);
        assert_eq!(s.count(1), 2);
        assert_eq!(s.count(3), 1);
        assert_eq!(s.total(), 4);
        let names = |i: usize| ["zero", "cpuid", "ioio", "other"][i];
        let t = s.table(&names).to_string();
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(
            lines[1].starts_with("  cpuid")
                && lines[1].contains(" 2 ")
                && lines[1].ends_with(" 200")
        );
        assert!(lines[4].starts_with("  total") && lines[4].ends_with(" 4"));
        assert!(!t.contains("zero"));
    }
}

/// x2APIC MSR exits broken down by what the guest touched: the mechanism under study is whether
/// timer programming, EOIs and IPIs exit (AMD APM vol. 2, 16.11.1 for the register numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMsrKind {
    Eoi,
    /// LVT timer, initial count, current count, divide configuration.
    Timer,
    Tpr,
    Icr,
    SelfIpi,
    Other,
}

impl ApicMsrKind {
    pub const ALL: [ApicMsrKind; 6] = [
        ApicMsrKind::Eoi,
        ApicMsrKind::Timer,
        ApicMsrKind::Tpr,
        ApicMsrKind::Icr,
        ApicMsrKind::SelfIpi,
        ApicMsrKind::Other,
    ];

    pub fn of(msr: u32) -> Self {
        match msr {
            0x80b => ApicMsrKind::Eoi,
            0x832 | 0x838 | 0x839 | 0x83e => ApicMsrKind::Timer,
            0x808 => ApicMsrKind::Tpr,
            0x830 => ApicMsrKind::Icr,
            0x83f => ApicMsrKind::SelfIpi,
            _ => ApicMsrKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ApicMsrKind::Eoi => "eoi",
            ApicMsrKind::Timer => "timer",
            ApicMsrKind::Tpr => "tpr",
            ApicMsrKind::Icr => "icr",
            ApicMsrKind::SelfIpi => "self-ipi",
            ApicMsrKind::Other => "other",
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct ApicMsrExits([u64; 6]);

impl ApicMsrExits {
    pub fn record(&mut self, msr: u32) {
        self.0[ApicMsrKind::of(msr) as usize] += 1;
    }

    pub fn count(&self, kind: ApicMsrKind) -> u64 {
        self.0[kind as usize]
    }
}

/// `x2apic msr exits: eoi 0, timer 0, tpr 0, icr 2, self-ipi 0, other 47`
impl fmt::Display for ApicMsrExits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("x2apic msr exits:")?;
        for (i, kind) in ApicMsrKind::ALL.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} {}", kind.name(), self.0[i])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod apic_tests {
    use super::*;

    #[test]
    fn apic_msr_exits_by_kind() {
        let mut e = ApicMsrExits::default();
        for msr in [
            0x80b, 0x80b, 0x838, 0x832, 0x83e, 0x839, 0x830, 0x802, 0x80f, 0x83f, 0x808,
        ] {
            e.record(msr);
        }
        assert_eq!(e.count(ApicMsrKind::Eoi), 2);
        assert_eq!(e.count(ApicMsrKind::Timer), 4);
        assert_eq!(e.count(ApicMsrKind::Other), 2);
        assert_eq!(
            e.to_string(),
            "x2apic msr exits: eoi 2, timer 4, tpr 1, icr 1, self-ipi 1, other 2"
        );
    }
}
