//! Parsers for what the hypervisor prints about a guest when it ends, shared by the integration
//! tests and `cargo xtask bench`, so the report format is read in one place:
//!
//! ```text
//! guest NAME: vcpu N exits:
//!   exit reason                   count      cycles/exit
//!   cpuid                             4            93158
//!   total                           371
//!   x2apic msr exits: eoi 0, timer 0, tpr 0, icr 0, self-ipi 0, other 35
//!   interrupts: 404 sent to this vcpu by the hypervisor, 0 injected at exits
//! guest NAME: vf 00:04.1: 26 device interrupts went through exits
//! guest NAME: device interrupts: 7 from the virtual IOAPIC, 7 sent to the vCPUs' cores as physical IPIs (no exits)
//! ```
//!
//! In `irq=avic` mode one more indented line follows `interrupts:` (see `avic::mode::AvicCounts`):
//! `avic: exits eoi 0, timer 31, apic 7, tmcct 3, gp 0, fixed-ipi 0, start-ipi 2, other-ipi 0,
//! ipi-errors 0; posted timer 250, device 12, doorbells 12`.

use std::collections::BTreeMap;

/// The "timer" x2APIC exits a Linux vCPU in direct mode may have: direct mode traps the timer
/// LVT's writes to filter them (isolation: no delivery mode, no reserved bit reaches the physical
/// LVT); Linux writes it a few times per boot (8 measured), never per tick (it reprograms the
/// initial count, which stays the guest's and never exits).
pub const MAX_DIRECT_TIMER_LVT_EXITS: u64 = 32;

/// The x2APIC exit breakdown and injections of one vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApicCounts {
    pub eoi: u64,
    pub timer: u64,
    pub icr: u64,
    /// Interrupts injected at exits (emulated mode).
    pub injected: u64,
}

/// The indented lines after `guest NAME: vcpu N exits:` (the hypervisor prints the block in one
/// piece), if that header is there.
fn after_header<'a>(
    serial: &'a str,
    guest: &str,
    vcpu: u32,
) -> Option<impl Iterator<Item = &'a str>> {
    let header = format!("guest {guest}: vcpu {vcpu} exits:");
    let mut lines = serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(move |l| l.trim_end() != header);
    lines.next()?;
    Some(lines.take_while(|l| l.starts_with(' ')))
}

/// The exit table of `guest`'s vCPU `vcpu` by reason, with its `total`; `None` without a table or
/// without a total row.
pub fn exit_table(serial: &str, guest: &str, vcpu: u32) -> Option<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for line in after_header(serial, guest, vcpu)?.skip(1) {
        let mut words = line.split_whitespace();
        let (Some(name), Some(count)) = (words.next(), words.next()) else {
            break;
        };
        let Ok(count) = count.parse::<u64>() else {
            break;
        };
        counts.insert(name.to_string(), count);
        if name == "total" {
            break;
        }
    }
    counts.contains_key("total").then_some(counts)
}

/// The number after `key` in `text` (`"eoi 12, timer 3"`, `"timer "` -> 3).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The `x2apic msr exits:` and `interrupts:` lines of `guest`'s vCPU `vcpu`.
pub fn apic_counts(serial: &str, guest: &str, vcpu: u32) -> Option<ApicCounts> {
    let mut after = after_header(serial, guest, vcpu)?;
    let apic = after.find(|l| l.trim_start().starts_with("x2apic msr exits:"))?;
    let ints = after.find(|l| l.trim_start().starts_with("interrupts:"))?;
    Some(ApicCounts {
        eoi: number_after(apic, "eoi ")?,
        timer: number_after(apic, "timer ")?,
        icr: number_after(apic, "icr ")?,
        injected: ints
            .split(", ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())?
            .parse()
            .ok()?,
    })
}

/// The AVIC exits and postings of one vCPU in `irq=avic` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvicCounts {
    /// 402h exits for level-triggered EOIs.
    pub eoi: u64,
    /// 402h exits for timer-register writes.
    pub timer: u64,
    /// 402h exits for TMCCT reads (emulated).
    pub tmcct: u64,
    /// 401h exits for fixed IPIs (a target not running).
    pub fixed_ipi: u64,
    /// 401h exits for INIT/SIPI.
    pub start_ipi: u64,
    /// 401h exits for invalid IPIs.
    pub ipi_errors: u64,
    /// Timer vectors posted into the backing page (by the service core, or before a VMRUN).
    pub posted_timer: u64,
    /// Device interrupts posted into the backing page.
    pub posted_device: u64,
}

/// The `avic:` line of `guest`'s vCPU `vcpu`.
pub fn avic_counts(serial: &str, guest: &str, vcpu: u32) -> Option<AvicCounts> {
    let mut after = after_header(serial, guest, vcpu)?;
    let line = after.find(|l| l.trim_start().starts_with("avic: exits"))?;
    let (exits, posted) = line.split_once("; posted")?;
    Some(AvicCounts {
        eoi: number_after(exits, "eoi ")?,
        timer: number_after(exits, "timer ")?,
        tmcct: number_after(exits, "tmcct ")?,
        fixed_ipi: number_after(exits, "fixed-ipi ")?,
        start_ipi: number_after(exits, "start-ipi ")?,
        ipi_errors: number_after(exits, "ipi-errors ")?,
        posted_timer: number_after(posted, "timer ")?,
        posted_device: number_after(posted, "device ")?,
    })
}

/// `guest NAME: vf BDF: N device interrupts went through exits`.
pub fn vf_interrupts_via_exits(serial: &str, guest: &str) -> Option<u64> {
    let prefix = format!("guest {guest}: vf ");
    serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with(&prefix) && l.ends_with("device interrupts went through exits"))?
        .rsplit(": ")
        .next()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `guest NAME: device interrupts: N from the virtual IOAPIC, ...`: the IOAPIC messages, and in
/// direct mode the physical IPIs they became (`M sent to the vCPUs' cores as physical IPIs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInterrupts {
    pub ioapic: u64,
    pub physical_ipis: Option<u64>,
}

pub fn device_interrupts(serial: &str, guest: &str) -> Option<DeviceInterrupts> {
    let prefix = format!("guest {guest}: device interrupts: ");
    let line = serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find_map(|l| l.strip_prefix(prefix.as_str()))?;
    let (ioapic, rest) = line.split_once(" from the virtual IOAPIC, ")?;
    Some(DeviceInterrupts {
        ioapic: ioapic.parse().ok()?,
        physical_ipis: rest
            .strip_suffix(" sent to the vCPUs' cores as physical IPIs (no exits)")
            .and_then(|n| n.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = concat!(
        "guest lin: vcpu 1 exits:\n",
        "  exit reason  count  cycles/exit\n",
        "  cpuid  9  10\n",
        "  total  9\n",
        "guest lin: vcpu 0 exits:\r\n",
        "  exit reason                   count      cycles/exit\n",
        "  intr   930   45178\n",
        "  msr  1269  30999\n",
        "  total  2199\n",
        "  x2apic msr exits: eoi 1129, timer 44, tpr 2, icr 7, self-ipi 0, other 80\n",
        "  interrupts: 345 sent to this vcpu by the hypervisor, 1129 injected at exits\n",
        "guest lin: vf 00:04.1: 26 device interrupts went through exits\n",
        "guest lin: device interrupts: 40 from the virtual IOAPIC, injected at exits (see the vCPU lines)\n",
        "guest dir: device interrupts: 7 from the virtual IOAPIC, 7 sent to the vCPUs' cores as physical IPIs (no exits)\n",
        "guest av: vcpu 0 exits:\n",
        "  exit reason  count  cycles/exit\n",
        "  intr  855  57959\n",
        "  avic_noaccel  873  40490\n",
        "  total  1728\n",
        "  x2apic msr exits: eoi 0, timer 0, tpr 0, icr 0, self-ipi 0, other 0\n",
        "  interrupts: 198 sent to this vcpu by the hypervisor, 0 injected at exits\n",
        "  avic: exits eoi 0, timer 807, apic 39, tmcct 27, gp 0, fixed-ipi 2, start-ipi 4, other-ipi 0, ipi-errors 1; posted timer 902, device 198, doorbells 198\n",
    );

    #[test]
    fn device_interrupt_line() {
        assert_eq!(
            device_interrupts(REPORT, "lin"),
            Some(DeviceInterrupts {
                ioapic: 40,
                physical_ipis: None
            })
        );
        assert_eq!(
            device_interrupts(REPORT, "dir"),
            Some(DeviceInterrupts {
                ioapic: 7,
                physical_ipis: Some(7)
            })
        );
        assert_eq!(device_interrupts(REPORT, "av"), None);
    }

    #[test]
    fn avic_line() {
        assert_eq!(
            avic_counts(REPORT, "av", 0),
            Some(AvicCounts {
                eoi: 0,
                timer: 807,
                tmcct: 27,
                fixed_ipi: 2,
                start_ipi: 4,
                ipi_errors: 1,
                posted_timer: 902,
                posted_device: 198,
            })
        );
        assert_eq!(avic_counts(REPORT, "lin", 0), None);
        assert_eq!(exit_table(REPORT, "av", 0).unwrap().get("intr"), Some(&855));
    }

    #[test]
    fn exit_table_of_the_right_vcpu() {
        let t = exit_table(REPORT, "lin", 0).unwrap();
        assert_eq!(t.get("intr"), Some(&930));
        assert_eq!(t.get("total"), Some(&2199));
        assert!(!t.contains_key("cpuid"));
        assert_eq!(exit_table(REPORT, "lin", 1).unwrap().get("cpuid"), Some(&9));
        assert_eq!(exit_table(REPORT, "other", 0), None);
        assert_eq!(
            exit_table("guest a: vcpu 0 exits:\n  x  1  1\n", "a", 0),
            None
        );
    }

    #[test]
    fn apic_line_and_injections() {
        assert_eq!(
            apic_counts(REPORT, "lin", 0),
            Some(ApicCounts {
                eoi: 1129,
                timer: 44,
                icr: 7,
                injected: 1129
            })
        );
        assert_eq!(apic_counts(REPORT, "lin", 1), None);
    }

    #[test]
    fn vf_interrupts() {
        assert_eq!(vf_interrupts_via_exits(REPORT, "lin"), Some(26));
        assert_eq!(vf_interrupts_via_exits(REPORT, "lim"), None);
    }
}
