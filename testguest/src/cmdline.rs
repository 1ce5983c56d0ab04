//! The test guest's command line: whitespace-separated words, of which it reads
//!
//! - `end=poweroff|triple-fault|reset|halt|nvme-dma|virtio-bad`: how the run ends (the first `end=` word
//!   counts; none means `poweroff`, the full check sequence);
//! - `canary=0xADDR` (up to [`MAX_CANARIES`], hex, `0x` optional): guest-physical addresses outside
//!   the guest's RAM that `end=nvme-dma` points NVMe data transfers at (and `attack=` at VMSAVE);
//! - `attack=NAME[,NAME...]` (any number of words): attacks on the hypervisor ([`Attack`]) run
//!   before the normal checks, each reporting what the processor did;
//! - `fuzz=SEED` (hex) and `fuzz-actions=N` (decimal, default [`DEFAULT_FUZZ_ACTIONS`]): the
//!   fuzzing guest's random actions (`crate::fuzz_plan`), run before the normal checks;
//! - `deliver=CHECK[,CHECK...]` (`all` for every [`DeliverCheck`]) and `deliver-rounds=N`
//!   (decimal, default [`DEFAULT_DELIVER_ROUNDS`]): the delivery-checking guest
//!   (`crate::delivery`), run before the normal checks.
//!
//! Other words are ignored.

use core::fmt;

/// How many `canary=` words the guest takes.
pub const MAX_CANARIES: usize = 4;

/// How the guest ends, from `end=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The checks (CPUID, RAM, accesses outside RAM), then ACPI power-off.
    PowerOff,
    TripleFault,
    Reset,
    Halt,
    /// Drive the passed-through NVMe VF at 00:01.0, DMA inside and outside RAM, then power-off.
    NvmeDma,
    /// Drive the virtio-blk device at 00:02.0 with malformed rings, then power-off.
    VirtioBad,
}

/// One attack of the attack guest (`attack=` words), in the order the guest runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// VMSAVE / VMLOAD with RAX = the first canary (a host-physical page).
    Vmsave,
    Vmload,
    /// CLGI, STGI, SKINIT, INVLPGA of ASID 0.
    Clgi,
    Stgi,
    Skinit,
    Invlpga,
    /// RDPRU, MONITOR, MWAIT (hidden features).
    Rdpru,
    Monitor,
    Mwait,
    /// WBINVD, WBNOINVD, INVD (cross-core cache effects).
    Wbinvd,
    Wbnoinvd,
    Invd,
    /// XSETBV with a feature bit CPUID does not show.
    Xsetbv,
    /// x2APIC SVR with reserved bits 11:10; timer LVT with SMI delivery; error LVT with NMI.
    Svr,
    LvtSmi,
    LvtErrorNmi,
    /// A fixed IPI with vector 3 to itself; NMI, INIT and fixed broadcasts through the ICR.
    IpiLowVector,
    IcrBroadcasts,
    /// The IOAPIC's PIT entry with vector 4, the PIT running.
    IoapicLowVector,
    /// Writes of VM_HSAVE_PA, VM_CR, EFER without SVME, SYSCFG, HWCR, IA32_APIC_BASE, TSC.
    SvmMsrs,
    /// Reads and writes of x2APIC MSRs that are no register (804h, AMD's extended 840h, 850h).
    X2apicReserved,
    /// Port writes to the 8259s, PIT, CMOS, 92h and reads of CF8/CFC.
    Ports,
    /// The VF's BAR 0 moved 100,000 times, then its old place read.
    BarMoves,
    /// An 8-byte read that starts 4 bytes before the end of the VF's BAR 0.
    MmioStraddle,
    /// An MSI-X entry of the VF programmed with vector 2 and unmasked.
    MsixLowVector,
    /// DR0-DR3 on hypervisor addresses with DR7 enabling them, then exits.
    DebugRegisters,
    /// Reads and writes of the local APIC, IOAPIC, IOMMU and ECAM pages and of the top of the
    /// 32-bit space.
    DevicePages,
    /// 5,000 console lines as fast as the debug port takes them.
    ConsoleFlood,
    /// CR4 with reserved bit 15: #GP (QEMU answers it with VMEXIT_INVALID, which the hypervisor
    /// turns into the #GP a processor gives).
    Cr4Reserved,
}

impl Attack {
    /// Every attack that needs no VF, in running order (`attack=cpu`).
    pub const CPU: [Attack; 24] = [
        Attack::Vmsave,
        Attack::Vmload,
        Attack::Clgi,
        Attack::Stgi,
        Attack::Skinit,
        Attack::Invlpga,
        Attack::Rdpru,
        Attack::Monitor,
        Attack::Mwait,
        Attack::Wbinvd,
        Attack::Wbnoinvd,
        Attack::Invd,
        Attack::Xsetbv,
        Attack::Svr,
        Attack::LvtSmi,
        Attack::LvtErrorNmi,
        Attack::IpiLowVector,
        Attack::IcrBroadcasts,
        Attack::IoapicLowVector,
        Attack::SvmMsrs,
        Attack::X2apicReserved,
        Attack::DebugRegisters,
        Attack::DevicePages,
        Attack::Cr4Reserved,
    ];
    /// The attacks on the VF at 00:01.0 (`attack=vf`).
    pub const VF: [Attack; 3] = [
        Attack::BarMoves,
        Attack::MmioStraddle,
        Attack::MsixLowVector,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::Vmsave => "vmsave",
            Attack::Vmload => "vmload",
            Attack::Clgi => "clgi",
            Attack::Stgi => "stgi",
            Attack::Skinit => "skinit",
            Attack::Invlpga => "invlpga",
            Attack::Rdpru => "rdpru",
            Attack::Monitor => "monitor",
            Attack::Mwait => "mwait",
            Attack::Wbinvd => "wbinvd",
            Attack::Wbnoinvd => "wbnoinvd",
            Attack::Invd => "invd",
            Attack::Xsetbv => "xsetbv",
            Attack::Svr => "svr",
            Attack::LvtSmi => "lvt-smi",
            Attack::LvtErrorNmi => "lvt-error-nmi",
            Attack::IpiLowVector => "ipi-low-vector",
            Attack::IcrBroadcasts => "icr-broadcasts",
            Attack::IoapicLowVector => "ioapic-low-vector",
            Attack::SvmMsrs => "svm-msrs",
            Attack::X2apicReserved => "x2apic-reserved",
            Attack::Ports => "ports",
            Attack::BarMoves => "bar-moves",
            Attack::MmioStraddle => "mmio-straddle",
            Attack::MsixLowVector => "msix-low-vector",
            Attack::DebugRegisters => "debug-registers",
            Attack::DevicePages => "device-pages",
            Attack::ConsoleFlood => "console-flood",
            Attack::Cr4Reserved => "cr4-reserved",
        }
    }

    fn all() -> impl Iterator<Item = Attack> {
        Self::CPU
            .into_iter()
            .chain([Attack::Ports])
            .chain(Self::VF)
            .chain([Attack::ConsoleFlood])
    }

    fn from_name(name: &str) -> Option<Attack> {
        Self::all().find(|a| a.name() == name)
    }
}

/// How many attacks one command line can name.
pub const MAX_ATTACKS: usize = 32;

/// The `attack=` list, in command line order (`cpu` and `vf` stand for their groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attacks {
    list: [Option<Attack>; MAX_ATTACKS],
    len: usize,
}

impl Default for Attacks {
    fn default() -> Self {
        Self {
            list: [None; MAX_ATTACKS],
            len: 0,
        }
    }
}

impl Attacks {
    pub fn iter(&self) -> impl Iterator<Item = Attack> + '_ {
        self.list[..self.len].iter().flatten().copied()
    }

    fn push(&mut self, a: Attack) -> bool {
        match self.list.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(a);
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

/// The `canary=` addresses, in command line order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Canaries {
    addrs: [u64; MAX_CANARIES],
    len: usize,
}

impl Canaries {
    pub fn as_slice(&self) -> &[u64] {
        &self.addrs[..self.len]
    }

    fn push(&mut self, addr: u64) -> bool {
        match self.addrs.get_mut(self.len) {
            Some(slot) => {
                *slot = addr;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub ending: Ending,
    pub canaries: Canaries,
    pub attacks: Attacks,
    pub fuzz: Option<Fuzz>,
    pub deliver: Option<Deliver>,
}

/// One check of the delivery-checking guest (`deliver=` names), in running order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliverCheck {
    /// Self-IPIs (SELF_IPI, ICR self, ICR to its own APIC ID) in several classes: exactly once,
    /// merged while pending, highest first, IRR read back.
    Ipi,
    /// TPR blocking per class, PPR/ISR read back, nesting of a higher class, a missed EOI.
    Priority,
    /// The LAPIC timer: one-shot at several counts and divisors, periodic at two rates.
    Timer,
    /// The PIT through the IOAPIC (edge): one-shot counts and a periodic rate.
    Pit,
    /// The UART's THR-empty interrupt through an IOAPIC entry programmed level-triggered:
    /// re-raised at each EOI while asserted, not after; held while masked.
    Level,
    /// IF=0 windows with exits, an IF=0 spin past the watchdog NMI, the STI shadow, HLT
    /// wake-ups.
    Masking,
    /// Every source at once while the guest forces exits and changes TPR, `deliver-rounds`
    /// iterations.
    Race,
    /// With two or more vCPUs: fixed IPIs between them (physical, logical, all-excluding-self),
    /// TPR on the receiving side, and both sides racing; skipped on one vCPU.
    Smp,
    /// NMI IPIs: to itself with IF=0 and under TPR FFh (at once), held inside the handler and
    /// one after its IRET, and between the vCPUs `smp` started (physical, logical,
    /// all-excluding-self), each exactly once.
    Nmi,
    /// The NVMe VF's MSI-X interrupts (its completions): one per completion, merged only while
    /// pending, held by TPR, nested by class; skipped without a VF at 00:01.0.
    Vf,
}

impl DeliverCheck {
    pub const ALL: [DeliverCheck; 10] = [
        DeliverCheck::Ipi,
        DeliverCheck::Priority,
        DeliverCheck::Timer,
        DeliverCheck::Pit,
        DeliverCheck::Level,
        DeliverCheck::Masking,
        DeliverCheck::Race,
        DeliverCheck::Smp,
        DeliverCheck::Nmi,
        DeliverCheck::Vf,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DeliverCheck::Ipi => "ipi",
            DeliverCheck::Priority => "priority",
            DeliverCheck::Timer => "timer",
            DeliverCheck::Pit => "pit",
            DeliverCheck::Level => "level",
            DeliverCheck::Masking => "masking",
            DeliverCheck::Race => "race",
            DeliverCheck::Smp => "smp",
            DeliverCheck::Nmi => "nmi",
            DeliverCheck::Vf => "vf",
        }
    }

    fn from_name(name: &str) -> Option<DeliverCheck> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// Race iterations of a `deliver=` run unless `deliver-rounds=` says otherwise.
pub const DEFAULT_DELIVER_ROUNDS: u32 = 5_000;

/// A delivery-checking run: which checks, and how many race iterations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deliver {
    checks: u16,
    pub rounds: u32,
}

impl Deliver {
    pub fn contains(&self, c: DeliverCheck) -> bool {
        self.checks & c.bit() != 0
    }

    /// The chosen checks in running order (not command-line order).
    pub fn iter(&self) -> impl Iterator<Item = DeliverCheck> + '_ {
        DeliverCheck::ALL.into_iter().filter(|c| self.contains(*c))
    }
}

/// How many random actions a `fuzz=` run takes unless `fuzz-actions=` says otherwise.
pub const DEFAULT_FUZZ_ACTIONS: u32 = 100_000;

/// A fuzzing run: the seed of its action stream and how many actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fuzz {
    pub seed: u64,
    pub actions: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// The value of `end=` is none of the known endings.
    UnknownEnding(&'a str),
    /// The value of a `canary=` word is not a hex address.
    BadCanary(&'a str),
    /// More than [`MAX_CANARIES`] `canary=` words.
    TooManyCanaries,
    /// An `attack=` name none of [`Attack`]'s.
    UnknownAttack(&'a str),
    /// More than [`MAX_ATTACKS`] attacks.
    TooManyAttacks,
    /// `fuzz=` is not a hex seed, or `fuzz-actions=` not a decimal count.
    BadFuzz(&'a str),
    /// A `deliver=` name none of [`DeliverCheck`]'s, or `deliver-rounds=` not a decimal count.
    BadDeliver(&'a str),
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::UnknownEnding(v) => write!(f, "unknown ending \"{v}\""),
            CmdlineError::BadCanary(v) => write!(f, "bad canary address \"{v}\""),
            CmdlineError::TooManyCanaries => {
                write!(f, "more than {MAX_CANARIES} canary addresses")
            }
            CmdlineError::UnknownAttack(v) => write!(f, "unknown attack \"{v}\""),
            CmdlineError::TooManyAttacks => write!(f, "more than {MAX_ATTACKS} attacks"),
            CmdlineError::BadFuzz(v) => write!(f, "bad fuzzing word \"{v}\""),
            CmdlineError::BadDeliver(v) => write!(f, "bad delivery word \"{v}\""),
        }
    }
}

/// Parses the whole command line.
pub fn parse(cmdline: &str) -> Result<Command, CmdlineError<'_>> {
    let ending = match cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("end="))
    {
        None | Some("poweroff") => Ending::PowerOff,
        Some("triple-fault") => Ending::TripleFault,
        Some("reset") => Ending::Reset,
        Some("halt") => Ending::Halt,
        Some("nvme-dma") => Ending::NvmeDma,
        Some("virtio-bad") => Ending::VirtioBad,
        Some(other) => return Err(CmdlineError::UnknownEnding(other)),
    };
    let mut canaries = Canaries::default();
    for value in cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("canary="))
    {
        let addr = parse_hex(value).ok_or(CmdlineError::BadCanary(value))?;
        if !canaries.push(addr) {
            return Err(CmdlineError::TooManyCanaries);
        }
    }
    let mut attacks = Attacks::default();
    for name in cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("attack="))
        .flat_map(|v| v.split(','))
    {
        let one;
        let group: &[Attack] = match name {
            "cpu" => &Attack::CPU,
            "vf" => &Attack::VF,
            _ => {
                one = [Attack::from_name(name).ok_or(CmdlineError::UnknownAttack(name))?];
                &one
            }
        };
        for &a in group {
            if !attacks.push(a) {
                return Err(CmdlineError::TooManyAttacks);
            }
        }
    }
    let word = |key: &str| cmdline.split_whitespace().find_map(|w| w.strip_prefix(key));
    let fuzz = match word("fuzz=") {
        None => None,
        Some(seed) => {
            let seed = parse_hex(seed).ok_or(CmdlineError::BadFuzz(seed))?;
            let actions = match word("fuzz-actions=") {
                None => DEFAULT_FUZZ_ACTIONS,
                Some(n) => n.parse().map_err(|_| CmdlineError::BadFuzz(n))?,
            };
            Some(Fuzz { seed, actions })
        }
    };
    let deliver = parse_deliver(cmdline)?;
    Ok(Command {
        ending,
        canaries,
        attacks,
        fuzz,
        deliver,
    })
}

/// `deliver=` words (any number, their checks add up) and `deliver-rounds=`.
fn parse_deliver(cmdline: &str) -> Result<Option<Deliver>, CmdlineError<'_>> {
    let mut checks = 0u16;
    let mut any = false;
    for name in cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("deliver="))
        .flat_map(|v| v.split(','))
    {
        any = true;
        checks |= match name {
            "all" => DeliverCheck::ALL.iter().fold(0, |b, c| b | c.bit()),
            _ => DeliverCheck::from_name(name)
                .ok_or(CmdlineError::BadDeliver(name))?
                .bit(),
        };
    }
    if !any {
        return Ok(None);
    }
    let rounds = match cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("deliver-rounds="))
    {
        None => DEFAULT_DELIVER_ROUNDS,
        Some(n) => n.parse().map_err(|_| CmdlineError::BadDeliver(n))?,
    };
    Ok(Some(Deliver { checks, rounds }))
}

/// A hex number of 1 to 16 digits, with an optional `0x`/`0X` prefix and nothing else (no sign,
/// no separators).
pub fn parse_hex(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(cmdline: &str) -> Ending {
        parse(cmdline).unwrap().ending
    }

    #[test]
    fn endings() {
        assert_eq!(ending(""), Ending::PowerOff);
        assert_eq!(ending("foo bar"), Ending::PowerOff);
        assert_eq!(ending("end=poweroff"), Ending::PowerOff);
        assert_eq!(ending("end=triple-fault"), Ending::TripleFault);
        assert_eq!(ending("x end=reset y"), Ending::Reset);
        assert_eq!(ending("end=halt"), Ending::Halt);
        assert_eq!(ending("  end=nvme-dma\t"), Ending::NvmeDma);
        assert_eq!(ending("end=virtio-bad"), Ending::VirtioBad);
        // The first end= counts.
        assert_eq!(ending("end=halt end=reset"), Ending::Halt);
        assert_eq!(parse("end=nvme"), Err(CmdlineError::UnknownEnding("nvme")));
        assert_eq!(parse("end="), Err(CmdlineError::UnknownEnding("")));
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("0x0"), Some(0));
        assert_eq!(parse_hex("0X1f"), Some(0x1f));
        assert_eq!(parse_hex("fee00000"), Some(0xfee0_0000));
        assert_eq!(parse_hex("0x1_0000"), None);
        assert_eq!(parse_hex("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_hex("0x10000000000000000"), None);
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex(""), None);
        assert_eq!(parse_hex("+1"), None);
        assert_eq!(parse_hex("0x+1"), None);
        assert_eq!(parse_hex("0xg"), None);
        assert_eq!(parse_hex("-0x1"), None);
    }

    #[test]
    fn canaries() {
        let c = parse("end=nvme-dma canary=0x7fe00000 canary=0x1_0000_0000").unwrap_err();
        assert_eq!(c, CmdlineError::BadCanary("0x1_0000_0000"));
        let c = parse("canary=0x7fe00000 end=nvme-dma canary=0x2001000").unwrap();
        assert_eq!(c.ending, Ending::NvmeDma);
        assert_eq!(c.canaries.as_slice(), &[0x7fe0_0000, 0x200_1000]);
        let four = "end=nvme-dma canary=1 canary=2 canary=3 canary=4";
        assert_eq!(parse(four).unwrap().canaries.as_slice(), &[1, 2, 3, 4]);
        assert_eq!(
            parse(&format!("{four} canary=5")),
            Err(CmdlineError::TooManyCanaries)
        );
        assert_eq!(parse("end=nvme-dma").unwrap().canaries.as_slice(), &[]);
        assert_eq!(parse("canary="), Err(CmdlineError::BadCanary("")));
        // Words that only contain "canary" are not canary words.
        assert_eq!(parse("xcanary=zz").unwrap().canaries.as_slice(), &[]);
    }

    #[test]
    fn error_text() {
        assert_eq!(
            CmdlineError::UnknownEnding("x").to_string(),
            "unknown ending \"x\""
        );
        assert_eq!(
            CmdlineError::BadCanary("0xq").to_string(),
            "bad canary address \"0xq\""
        );
        assert_eq!(
            CmdlineError::TooManyCanaries.to_string(),
            "more than 4 canary addresses"
        );
    }

    #[test]
    fn attacks() {
        let c = parse("attack=vmsave,clgi attack=cr4-reserved").unwrap();
        let names: Vec<&str> = c.attacks.iter().map(Attack::name).collect();
        assert_eq!(names, ["vmsave", "clgi", "cr4-reserved"]);
        let cpu = parse("attack=cpu").unwrap();
        assert_eq!(cpu.attacks.iter().count(), Attack::CPU.len());
        let vf = parse("attack=vf,ports").unwrap();
        assert_eq!(vf.attacks.iter().last(), Some(Attack::Ports));
        assert_eq!(vf.attacks.iter().count(), 4);
        assert_eq!(
            parse("attack=vmsave,nope"),
            Err(CmdlineError::UnknownAttack("nope"))
        );
        assert_eq!(parse("attack="), Err(CmdlineError::UnknownAttack("")));
        assert_eq!(
            parse("attack=cpu attack=cpu"),
            Err(CmdlineError::TooManyAttacks)
        );
        // Every name parses back to its attack.
        for a in Attack::all() {
            assert_eq!(Attack::from_name(a.name()), Some(a));
        }
        assert_eq!(parse("").unwrap().attacks.iter().count(), 0);
    }

    #[test]
    fn fuzz_words() {
        assert_eq!(parse("").unwrap().fuzz, None);
        assert_eq!(
            parse("fuzz=0x1234").unwrap().fuzz,
            Some(Fuzz {
                seed: 0x1234,
                actions: DEFAULT_FUZZ_ACTIONS
            })
        );
        assert_eq!(
            parse("fuzz-actions=500 fuzz=ff").unwrap().fuzz,
            Some(Fuzz {
                seed: 0xff,
                actions: 500
            })
        );
        assert_eq!(parse("fuzz=xyz"), Err(CmdlineError::BadFuzz("xyz")));
        assert_eq!(
            parse("fuzz=1 fuzz-actions=-3"),
            Err(CmdlineError::BadFuzz("-3"))
        );
    }

    fn checks(cmdline: &str) -> Vec<&'static str> {
        parse(cmdline)
            .unwrap()
            .deliver
            .unwrap()
            .iter()
            .map(DeliverCheck::name)
            .collect()
    }

    #[test]
    fn deliver_words() {
        assert_eq!(parse("").unwrap().deliver, None);
        assert_eq!(parse("deliverx=ipi").unwrap().deliver, None);
        assert_eq!(
            checks("deliver=all"),
            ["ipi", "priority", "timer", "pit", "level", "masking", "race", "smp", "nmi", "vf"]
        );
        // Running order, whatever the order on the command line; words add up.
        assert_eq!(
            checks("deliver=race,ipi deliver=level"),
            ["ipi", "level", "race"]
        );
        let d = parse("deliver=timer").unwrap().deliver.unwrap();
        assert_eq!(d.rounds, DEFAULT_DELIVER_ROUNDS);
        assert!(d.contains(DeliverCheck::Timer) && !d.contains(DeliverCheck::Pit));
        let d = parse("deliver-rounds=20000 deliver=race")
            .unwrap()
            .deliver
            .unwrap();
        assert_eq!(d.rounds, 20_000);
        assert_eq!(
            parse("deliver=ipi,smi"),
            Err(CmdlineError::BadDeliver("smi"))
        );
        assert_eq!(parse("deliver="), Err(CmdlineError::BadDeliver("")));
        assert_eq!(
            parse("deliver=race deliver-rounds=many"),
            Err(CmdlineError::BadDeliver("many"))
        );
        // Every name parses back to its check.
        for c in DeliverCheck::ALL {
            assert_eq!(DeliverCheck::from_name(c.name()), Some(c));
        }
        assert_eq!(
            CmdlineError::BadDeliver("x").to_string(),
            "bad delivery word \"x\""
        );
    }
}
