//! SMT siblings: the logical CPUs (hardware threads) of one physical core share its branch
//! predictors, caches and execution units, so whatever runs on one thread can observe and steer
//! speculation on the other. didvisor gives a guest whole logical CPUs; this module finds which of
//! them are threads of one core and refuses a layout in which two threads of a core serve
//! different owners: two guests, or a guest and the service core (logical CPU 0, which runs the
//! device models for every guest). A thread left unused (no guest) runs only the hypervisor's idle
//! loop and is fine.
//!
//! The thread/core split of an x2APIC id comes from CPUID (AMD APM vol. 3, appendix E):
//! - Fn0000_000B subfunction 0 (E.3.8 "Extended Topology Enumeration", thread level):
//!   EAX\[4:0\] ThreadMaskWidth, the number of bits to shift the x2APIC id right to get the core's
//!   id; EBX\[15:0\] NumLogProc, threads per core; ECX\[15:8\] HierarchyLevel = 1 for this level;
//! - otherwise Fn8000_001E (E.4.16 "Processor Topology Information", present when
//!   Fn8000_0001 ECX\[22\] TopologyExtensions = 1): EBX\[15:8\] ThreadsPerComputeUnit, zero-based;
//!   threads with equal `ApicId >> log2(ThreadsPerComputeUnit + 1)` (rounded up to a power of two)
//!   share a compute unit.
//!
//! Without either leaf every logical CPU counts as its own core.

use crate::config::Config;
use core::fmt;

/// Fn8000_0001 ECX\[22\]: Fn8000_001E is implemented.
pub const TOPOLOGY_EXTENSIONS: u32 = 1 << 22;

/// The topology leaves as the bootstrap processor read them (`None`: leaf not implemented).
#[derive(Clone, Copy, Debug, Default)]
pub struct TopologyLeaves {
    /// Fn0000_000B subfunction 0: (EAX, EBX, ECX).
    pub leaf_0b: Option<(u32, u32, u32)>,
    /// Fn8000_001E EBX.
    pub leaf_8000_001e_ebx: Option<u32>,
}

/// Which leaf described the thread level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Leaf0B,
    Leaf8000001E,
    /// Neither leaf: one thread per core assumed.
    Assumed,
}

/// How an x2APIC id splits into core and thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmtLayout {
    /// Low bits of the x2APIC id that number the thread within its core.
    pub thread_bits: u8,
    /// Threads per core as CPUID reports it.
    pub threads_per_core: u32,
    pub source: Source,
}

impl SmtLayout {
    pub const SINGLE_THREAD: SmtLayout = SmtLayout {
        thread_bits: 0,
        threads_per_core: 1,
        source: Source::Assumed,
    };

    pub fn from_cpuid(leaves: TopologyLeaves) -> SmtLayout {
        if let Some((eax, ebx, ecx)) = leaves.leaf_0b {
            let level = (ecx >> 8) & 0xff;
            let threads = ebx & 0xffff;
            // An unimplemented level reads all zeros; level 1 is the thread level.
            if level == 1 && threads != 0 {
                return SmtLayout {
                    thread_bits: (eax & 0x1f) as u8,
                    threads_per_core: threads,
                    source: Source::Leaf0B,
                };
            }
        }
        if let Some(ebx) = leaves.leaf_8000_001e_ebx {
            let threads = ((ebx >> 8) & 0xff) + 1;
            return SmtLayout {
                thread_bits: threads.next_power_of_two().trailing_zeros() as u8,
                threads_per_core: threads,
                source: Source::Leaf8000001E,
            };
        }
        SmtLayout::SINGLE_THREAD
    }

    /// The physical core an x2APIC id belongs to (unique within the package layout CPUID gives).
    pub fn core_of(&self, apic_id: u32) -> u32 {
        apic_id
            .checked_shr(u32::from(self.thread_bits))
            .unwrap_or(0)
    }
}

impl fmt::Display for SmtLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match self.source {
            Source::Leaf0B => "CPUID 0Bh",
            Source::Leaf8000001E => "CPUID 8000_001Eh",
            Source::Assumed => "no topology leaf, assumed",
        };
        write!(
            f,
            "{} thread{} per core ({from}; x2APIC id >> {} = core)",
            self.threads_per_core,
            if self.threads_per_core == 1 { "" } else { "s" },
            self.thread_bits
        )
    }
}

/// Who a logical CPU works for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role<'a> {
    /// Logical CPU 0: device models, timers and the console for every guest.
    Service,
    Guest(&'a str),
}

impl fmt::Display for Role<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Service => f.write_str("the service core"),
            Role::Guest(name) => write!(f, "guest {name}"),
        }
    }
}

/// Two threads of one physical core that serve different owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmtConflict<'a> {
    pub core: u32,
    /// (logical CPU, x2APIC id, role), the lower CPU number first.
    pub first: (usize, u32, Role<'a>),
    pub second: (usize, u32, Role<'a>),
}

impl fmt::Display for SmtConflict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c1, a1, r1) = self.first;
        let (c2, a2, r2) = self.second;
        write!(
            f,
            "cpu {c1} ({r1}) and cpu {c2} ({r2}) are SMT siblings, threads of one physical core \
             (core {}, x2APIC ids {a1} and {a2}); siblings share branch predictors and caches, \
             so one could observe or steer the other: give both to one guest or leave one unused",
            self.core
        )
    }
}

/// The role of each logical CPU in `cfg` (CPU 0 is the service core; `None`: unused).
fn role<'a>(cfg: &'a Config, cpu: usize) -> Option<Role<'a>> {
    if cpu == 0 {
        return Some(Role::Service);
    }
    cfg.guests()
        .find(|g| g.cores.contains(cpu))
        .map(|g| Role::Guest(g.name.as_str()))
}

/// Refuses a layout in which two threads of one core serve different owners. `apic_ids[i]` is
/// logical CPU `i`'s x2APIC id (CPU 0 the service core).
pub fn check_siblings<'a>(
    cfg: &'a Config,
    apic_ids: &[u32],
    layout: SmtLayout,
) -> Result<(), SmtConflict<'a>> {
    for (i, &a) in apic_ids.iter().enumerate() {
        let Some(ri) = role(cfg, i) else { continue };
        for (j, &b) in apic_ids.iter().enumerate().skip(i + 1) {
            if layout.core_of(a) != layout.core_of(b) {
                continue;
            }
            match role(cfg, j) {
                Some(rj) if rj != ri => {
                    return Err(SmtConflict {
                        core: layout.core_of(a),
                        first: (i, a, ri),
                        second: (j, b, rj),
                    })
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    /// A 2-thread part as Zen reports it in leaf 0Bh: ThreadMaskWidth 1, 2 threads, level 1.
    const ZEN_0B: TopologyLeaves = TopologyLeaves {
        leaf_0b: Some((1, 2, 0x100)),
        leaf_8000_001e_ebx: Some(0x0100),
    };
    const SMT2: SmtLayout = SmtLayout {
        thread_bits: 1,
        threads_per_core: 2,
        source: Source::Leaf0B,
    };

    #[test]
    fn layout_from_leaf_0b() {
        assert_eq!(SmtLayout::from_cpuid(ZEN_0B), SMT2);
        // One thread per core: shift 0.
        let single = TopologyLeaves {
            leaf_0b: Some((0, 1, 0x100)),
            leaf_8000_001e_ebx: None,
        };
        assert_eq!(SmtLayout::from_cpuid(single).thread_bits, 0);
        assert_eq!(SmtLayout::from_cpuid(single).source, Source::Leaf0B);
    }

    #[test]
    fn layout_from_leaf_8000_001e_when_0b_says_nothing() {
        // Leaf 0Bh all zeros (unimplemented level), 8000_001E: ThreadsPerComputeUnit 1 (two).
        let leaves = TopologyLeaves {
            leaf_0b: Some((0, 0, 0)),
            leaf_8000_001e_ebx: Some(0x0105),
        };
        assert_eq!(
            SmtLayout::from_cpuid(leaves),
            SmtLayout {
                thread_bits: 1,
                threads_per_core: 2,
                source: Source::Leaf8000001E
            }
        );
        // Three threads round up to a 2-bit field; one thread needs no bits.
        let three = TopologyLeaves {
            leaf_0b: None,
            leaf_8000_001e_ebx: Some(0x0200),
        };
        assert_eq!(SmtLayout::from_cpuid(three).thread_bits, 2);
        let one = TopologyLeaves {
            leaf_0b: None,
            leaf_8000_001e_ebx: Some(0x0007),
        };
        assert_eq!(SmtLayout::from_cpuid(one).thread_bits, 0);
        assert_eq!(
            SmtLayout::from_cpuid(TopologyLeaves::default()),
            SmtLayout::SINGLE_THREAD
        );
    }

    #[test]
    fn core_of_drops_the_thread_bits() {
        assert_eq!(SMT2.core_of(6), 3);
        assert_eq!(SMT2.core_of(7), 3);
        assert_eq!(SmtLayout::SINGLE_THREAD.core_of(7), 7);
        // A nonsense width does not panic.
        let wide = SmtLayout {
            thread_bits: 31,
            ..SMT2
        };
        assert_eq!(wide.core_of(u32::MAX), 1);
    }

    fn cfg(line: &str) -> Config {
        config::parse(line).unwrap()
    }

    #[test]
    fn siblings_in_two_guests_are_refused() {
        // Logical CPUs 0..4 on x2APIC ids 0..4: cores {0,1} {2,3}.
        let c = cfg("guest=a,cores=2,mem=2M,kernel=k guest=b,cores=3,mem=2M,kernel=k");
        let e = check_siblings(&c, &[0, 1, 2, 3], SMT2).unwrap_err();
        assert_eq!(
            e,
            SmtConflict {
                core: 1,
                first: (2, 2, Role::Guest("a")),
                second: (3, 3, Role::Guest("b")),
            }
        );
        assert_eq!(
            e.to_string(),
            "cpu 2 (guest a) and cpu 3 (guest b) are SMT siblings, threads of one physical core \
             (core 1, x2APIC ids 2 and 3); siblings share branch predictors and caches, so one \
             could observe or steer the other: give both to one guest or leave one unused"
        );
    }

    #[test]
    fn a_guest_beside_the_service_core_is_refused() {
        let c = cfg("guest=a,cores=1,mem=2M,kernel=k");
        let e = check_siblings(&c, &[0, 1, 2, 3], SMT2).unwrap_err();
        assert_eq!(e.first, (0, 0, Role::Service));
        assert_eq!(e.second, (1, 1, Role::Guest("a")));
        assert!(e
            .to_string()
            .starts_with("cpu 0 (the service core) and cpu 1 (guest a) are SMT siblings"));
    }

    #[test]
    fn one_guest_on_both_threads_or_an_unused_sibling_is_fine() {
        let c = cfg("guest=a,cores=2-3,mem=2M,kernel=k");
        assert_eq!(check_siblings(&c, &[0, 1, 2, 3], SMT2), Ok(()));
        // CPU 1 (the service core's sibling) unused, guest b alone on core 2.
        let c = cfg("guest=a,cores=2-3,mem=2M,kernel=k guest=b,cores=4,mem=2M,kernel=k");
        assert_eq!(check_siblings(&c, &[0, 1, 2, 3, 4, 5], SMT2), Ok(()));
    }

    #[test]
    fn single_threaded_cores_never_conflict() {
        let c = cfg("guest=a,cores=1,mem=2M,kernel=k guest=b,cores=2,mem=2M,kernel=k");
        assert_eq!(
            check_siblings(&c, &[0, 1, 2, 3], SmtLayout::SINGLE_THREAD),
            Ok(())
        );
    }

    #[test]
    fn siblings_are_found_by_apic_id_not_by_cpu_number() {
        // MADT order need not follow the thread layout: CPU 1 is x2APIC 2, CPU 2 is x2APIC 1.
        let c = cfg("guest=a,cores=1,mem=2M,kernel=k guest=b,cores=3,mem=2M,kernel=k");
        let e = check_siblings(&c, &[0, 2, 1, 3], SMT2).unwrap_err();
        assert_eq!(e.first, (1, 2, Role::Guest("a")));
        assert_eq!(e.second, (3, 3, Role::Guest("b")));
        // CPU 2 (x2APIC 1, the service core's sibling) unused: only a/b conflict above.
        let c = cfg("guest=a,cores=1+3,mem=2M,kernel=k");
        assert_eq!(check_siblings(&c, &[0, 2, 1, 3], SMT2), Ok(()));
    }
}
