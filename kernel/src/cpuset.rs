//! A set of logical CPU indices (positions in the MADT's list of enabled processors).

/// Most logical CPUs the hypervisor manages: every enabled thread of a two-socket EPYC (up to
/// 768), with room.
pub const MAX_CPUS: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuSet([u64; MAX_CPUS / 64]);

impl CpuSet {
    pub const fn new() -> Self {
        CpuSet([0; MAX_CPUS / 64])
    }

    /// Adds `cpu`; false when it is beyond [`MAX_CPUS`].
    pub fn insert(&mut self, cpu: usize) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        self.0[cpu / 64] |= 1 << (cpu % 64);
        true
    }

    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn intersects(&self, other: &CpuSet) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & b != 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_CPUS).filter(|&c| self.contains(c))
    }

    pub fn first(&self) -> Option<usize> {
        self.iter().next()
    }
}

impl core::fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// Prints as the command-line syntax: `1-3+5`.
impl core::fmt::Display for CpuSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        let mut cpu = 0;
        while cpu < MAX_CPUS {
            if !self.contains(cpu) {
                cpu += 1;
                continue;
            }
            let start = cpu;
            while cpu + 1 < MAX_CPUS && self.contains(cpu + 1) {
                cpu += 1;
            }
            if !first {
                f.write_str("+")?;
            }
            first = false;
            if start == cpu {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{cpu}")?;
            }
            cpu += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_ranges() {
        let mut s = CpuSet::new();
        for c in [1, 2, 3, 5, 200] {
            assert!(s.insert(c));
        }
        assert_eq!(s.to_string(), "1-3+5+200");
        assert_eq!(s.len(), 5);
        assert!(!s.insert(MAX_CPUS));
        assert_eq!(s.first(), Some(1));
    }

    #[test]
    fn intersection() {
        let mut a = CpuSet::new();
        let mut b = CpuSet::new();
        a.insert(70);
        b.insert(71);
        assert!(!a.intersects(&b));
        b.insert(70);
        assert!(a.intersects(&b));
    }
}
