//! Counts of guest accesses to ports no device claims, per port in a small fixed table, so the
//! hypervisor can report them ("unknown port 0x80: 120 writes"). Ports beyond the table's capacity
//! are only counted in total.

use core::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnknownPort {
    pub port: u16,
    pub reads: u64,
    pub writes: u64,
}

impl fmt::Display for UnknownPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown port {:#x}:", self.port)?;
        let reads = (self.reads > 0).then_some((self.reads, "read"));
        let writes = (self.writes > 0).then_some((self.writes, "write"));
        let mut sep = " ";
        for (n, what) in [reads, writes].into_iter().flatten() {
            let plural = if n == 1 { "" } else { "s" };
            write!(f, "{sep}{n} {what}{plural}")?;
            sep = ", ";
        }
        Ok(())
    }
}

pub struct UnknownPorts<const N: usize> {
    entries: [UnknownPort; N],
    used: usize,
    /// Accesses to ports that found no free entry.
    untracked: u64,
}

impl<const N: usize> Default for UnknownPorts<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> UnknownPorts<N> {
    pub const fn new() -> Self {
        UnknownPorts {
            entries: [UnknownPort {
                port: 0,
                reads: 0,
                writes: 0,
            }; N],
            used: 0,
            untracked: 0,
        }
    }

    pub fn record(&mut self, port: u16, write: bool) {
        let Some(e) = self.entry(port) else {
            self.untracked += 1;
            return;
        };
        if write {
            e.writes += 1;
        } else {
            e.reads += 1;
        }
    }

    /// The ports seen, in order of first access.
    pub fn iter(&self) -> impl Iterator<Item = &UnknownPort> {
        self.entries[..self.used].iter()
    }

    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    fn entry(&mut self, port: u16) -> Option<&mut UnknownPort> {
        let i = match self.entries[..self.used]
            .iter()
            .position(|e| e.port == port)
        {
            Some(i) => i,
            None if self.used < N => {
                self.entries[self.used].port = port;
                self.used += 1;
                self.used - 1
            }
            None => return None,
        };
        Some(&mut self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_port_and_formats() {
        let mut u = UnknownPorts::<4>::new();
        for _ in 0..120 {
            u.record(0x80, true);
        }
        u.record(0x64, false);
        u.record(0x64, true);
        let lines: Vec<_> = u.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "unknown port 0x80: 120 writes",
                "unknown port 0x64: 1 read, 1 write"
            ]
        );
    }

    #[test]
    fn overflow_is_counted_in_total() {
        let mut u = UnknownPorts::<2>::new();
        for p in [1, 2, 3, 3, 1] {
            u.record(p, false);
        }
        assert_eq!(u.iter().count(), 2);
        assert_eq!(u.iter().next().map(|e| e.reads), Some(2));
        assert_eq!(u.untracked(), 2);
    }
}
