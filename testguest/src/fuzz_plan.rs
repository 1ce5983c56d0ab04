//! The fuzzing guest's actions (`fuzz=SEED`): a deterministic stream of random things a guest can
//! do to its hypervisor, drawn from a seed so a run that broke something can be repeated. Pure
//! logic (host-tested); `fuzz.rs` in the binary carries each action out.
//!
//! Left out on purpose, because they end or wedge the fuzzing guest itself rather than test the
//! hypervisor: stores into its own RAM, HLT with interrupts off, string I/O (not emulated: it
//! ends the guest), the power-off / sleep / reset ports (ACPI PM1a block 600h-60Fh, CF9h, the
//! keyboard controller's 64h), the debug console E9h and the UART 3F8h-3FFh (they would print
//! the noise), and writes of EFER, PAT and DEBUGCTL (the guest's own paging, caching and
//! single-stepping).

/// xorshift64* (Vigna): small, fast, and the same sequence on the host and in the guest.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero.
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// SVM and other intercepted or hidden instructions the fuzzer runs with random registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Vmrun,
    Vmmcall,
    Vmload,
    Vmsave,
    Clgi,
    Stgi,
    Skinit,
    Invlpga,
    Wbinvd,
    Invd,
    Xsetbv,
    Rdpru,
    Monitor,
    Mwait,
    Rdtscp,
    Rdpmc,
}

pub const SPECIALS: [Special; 16] = [
    Special::Vmrun,
    Special::Vmmcall,
    Special::Vmload,
    Special::Vmsave,
    Special::Clgi,
    Special::Stgi,
    Special::Skinit,
    Special::Invlpga,
    Special::Wbinvd,
    Special::Invd,
    Special::Xsetbv,
    Special::Rdpru,
    Special::Monitor,
    Special::Mwait,
    Special::Rdtscp,
    Special::Rdpmc,
];

/// Byte sequences that are invalid (or privileged-invalid) in 64-bit mode: #UD each.
pub const INVALID_OPCODES: usize = 6;

/// One fuzzing action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    MsrRead(u32),
    MsrWrite(u32, u64),
    PortIn {
        port: u16,
        size: u8,
    },
    PortOut {
        port: u16,
        size: u8,
        value: u32,
    },
    Cpuid {
        leaf: u32,
        subleaf: u32,
    },
    Special {
        which: Special,
        rax: u64,
        rcx: u64,
        rdx: u64,
    },
    Invalid(usize),
    Load {
        gpa: u64,
        size: u8,
    },
    Store {
        gpa: u64,
        size: u8,
        value: u64,
    },
    /// A configuration-space access of the VF at 00:01.0 (offset in 0..256, dword aligned).
    VfConfigRead(u8),
    VfConfigWrite(u8, u32),
}

/// What kind an action is, for the counts the guest prints.
pub const KINDS: [&str; 11] = [
    "msr-read",
    "msr-write",
    "port-in",
    "port-out",
    "cpuid",
    "special",
    "invalid",
    "load",
    "store",
    "vf-config-read",
    "vf-config-write",
];

impl Action {
    pub fn kind(&self) -> usize {
        match self {
            Action::MsrRead(_) => 0,
            Action::MsrWrite(..) => 1,
            Action::PortIn { .. } => 2,
            Action::PortOut { .. } => 3,
            Action::Cpuid { .. } => 4,
            Action::Special { .. } => 5,
            Action::Invalid(_) => 6,
            Action::Load { .. } => 7,
            Action::Store { .. } => 8,
            Action::VfConfigRead(_) => 9,
            Action::VfConfigWrite(..) => 10,
        }
    }
}

/// MSRs whose writes would break the fuzzing guest itself.
const SELF_MSRS: [u32; 3] = [0xc000_0080, 0x277, 0x1d9];

/// A random MSR: anywhere, or (more often) in the ranges where MSRs live.
fn msr(rng: &mut Rng) -> u32 {
    let base = match rng.below(6) {
        0 => return rng.next_u64() as u32,
        1 => 0,
        2 => 0x800,
        3 => 0xc000_0000,
        4 => 0xc001_0000,
        _ => 0x4000_0000,
    };
    base + rng.below(0x1000) as u32
}

fn size(rng: &mut Rng) -> u8 {
    1 << rng.below(4)
}

/// Ports the fuzzer leaves alone (see the module doc).
pub fn port_excluded(port: u16, size: u8) -> bool {
    let last = port.saturating_add(u16::from(size) - 1);
    let hits = |lo: u16, hi: u16| port <= hi && last >= lo;
    // A dword at CF8h is CONFIG_ADDRESS; anything else covering CF9h reaches the reset register.
    let reset = hits(0xcf9, 0xcf9) && !(port == 0xcf8 && size == 4);
    hits(0x600, 0x60f) || hits(0x64, 0x64) || reset || hits(0xe9, 0xe9) || hits(0x3f8, 0x3ff)
}

/// The next action of the stream; `ram` is the guest's RAM size (stores stay above it).
pub fn next_action(rng: &mut Rng, ram: u64) -> Action {
    loop {
        let a = match rng.below(11) {
            0 => Action::MsrRead(msr(rng)),
            1 => {
                let m = msr(rng);
                if SELF_MSRS.contains(&m) {
                    continue;
                }
                Action::MsrWrite(m, rng.next_u64())
            }
            2 | 3 => {
                let size = 1 << rng.below(3);
                let port = match rng.below(3) {
                    0 => rng.next_u64() as u16,
                    // The legacy devices and PCI configuration ports, where emulation lives.
                    1 => rng.below(0x100) as u16,
                    _ => 0xcf8 + rng.below(8) as u16,
                };
                if port_excluded(port, size) {
                    continue;
                }
                if rng.below(2) == 0 {
                    Action::PortIn { port, size }
                } else {
                    Action::PortOut {
                        port,
                        size,
                        value: rng.next_u64() as u32,
                    }
                }
            }
            4 => Action::Cpuid {
                leaf: match rng.below(3) {
                    0 => rng.next_u64() as u32,
                    1 => rng.below(0x20) as u32,
                    _ => 0x8000_0000 + rng.below(0x30) as u32,
                },
                subleaf: rng.below(8) as u32,
            },
            5 => Action::Special {
                which: SPECIALS[rng.below(SPECIALS.len() as u64) as usize],
                rax: rng.next_u64(),
                rcx: rng.next_u64(),
                rdx: rng.next_u64(),
            },
            6 => Action::Invalid(rng.below(INVALID_OPCODES as u64) as usize),
            7 | 8 => {
                let size = size(rng);
                let gpa = match rng.below(4) {
                    // Anywhere in the guest's identity map (4 GiB), RAM included for loads.
                    0 | 1 => rng.below(1 << 32),
                    // The device pages: IOAPIC, local APIC, and the VF's BAR window.
                    2 => {
                        [0xfec0_0000u64, 0xfee0_0000, 0xc000_0000][rng.below(3) as usize]
                            + rng.below(0x4000)
                    }
                    // Past the identity map, non-canonical included (#PF / #GP).
                    _ => rng.next_u64(),
                } & !(u64::from(size) - 1);
                if rng.below(2) == 0 {
                    Action::Load { gpa, size }
                } else if gpa < ram {
                    continue;
                } else {
                    Action::Store {
                        gpa,
                        size,
                        value: rng.next_u64(),
                    }
                }
            }
            _ => {
                let offset = (rng.below(64) * 4) as u8;
                if rng.below(2) == 0 {
                    Action::VfConfigRead(offset)
                } else {
                    Action::VfConfigWrite(offset, rng.next_u64() as u32)
                }
            }
        };
        return a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_the_seeds() {
        let a: Vec<Action> = {
            let mut r = Rng::new(7);
            (0..100).map(|_| next_action(&mut r, 16 << 20)).collect()
        };
        let mut r = Rng::new(7);
        let b: Vec<Action> = (0..100).map(|_| next_action(&mut r, 16 << 20)).collect();
        assert_eq!(a, b);
        let mut r = Rng::new(8);
        let c: Vec<Action> = (0..100).map(|_| next_action(&mut r, 16 << 20)).collect();
        assert_ne!(a, c);
    }

    /// 100,000 actions: every kind occurs, nothing excluded is ever produced.
    #[test]
    fn every_kind_and_nothing_excluded() {
        let ram = 16 << 20;
        let mut r = Rng::new(0x5eed);
        let mut kinds = [0u32; KINDS.len()];
        let mut specials = [false; SPECIALS.len()];
        for _ in 0..100_000 {
            let a = next_action(&mut r, ram);
            kinds[a.kind()] += 1;
            match a {
                Action::MsrWrite(m, _) => assert!(!SELF_MSRS.contains(&m)),
                Action::PortIn { port, size } | Action::PortOut { port, size, .. } => {
                    assert!(!port_excluded(port, size), "{port:#x}");
                    assert!(matches!(size, 1 | 2 | 4));
                }
                Action::Store { gpa, size, .. } => {
                    assert!(gpa >= ram, "store into own RAM at {gpa:#x}");
                    assert_eq!(gpa % u64::from(size), 0);
                }
                Action::Special { which, .. } => {
                    specials[SPECIALS.iter().position(|s| *s == which).unwrap()] = true
                }
                Action::Invalid(i) => assert!(i < INVALID_OPCODES),
                Action::VfConfigRead(o) | Action::VfConfigWrite(o, _) => assert_eq!(o % 4, 0),
                _ => {}
            }
        }
        assert!(kinds.iter().all(|&k| k > 5_000), "{kinds:?}");
        assert!(specials.iter().all(|&s| s));
    }

    #[test]
    fn excluded_ports() {
        assert!(port_excluded(0x604, 2));
        assert!(port_excluded(0x602, 4), "a dword at 602h covers 604h");
        assert!(port_excluded(0xcf9, 1));
        assert!(port_excluded(0x64, 1));
        assert!(port_excluded(0x62, 4), "a dword at 62h reaches 64h");
        assert!(
            !port_excluded(0xcf8, 4),
            "a dword at CF8h is CONFIG_ADDRESS"
        );
        assert!(port_excluded(0xcf8, 2), "a word at CF8h reaches CF9h");
        assert!(port_excluded(0x3fc, 1));
        assert!(!port_excluded(0xcfc, 4));
        assert!(!port_excluded(0x5ff, 1));
        assert!(!port_excluded(0xffff, 4));
    }
}
