//! What the delivery-checking guest (`testguest deliver=all`) must show in each interrupt mode,
//! judged from the serial log: shared by the integration tests (`tests/tests/delivery.rs`:
//! direct, emulated) and the patched-QEMU smoke run (`irq=avic`, `cargo xtask qemu-avic smoke`).
//!
//! The guest counts, per check, what its sources sent and what arrived; these checks read the
//! counts back and assert them here, independently of the guest's own `ok`: nothing out of order
//! (TPR, nesting, priority order, an overdue deliverable vector), no duplicate, no loss, no
//! read-back of ISR/IRR/PPR/TMCCT/remote IRR that differs from the model, and the books balance
//! (sent = received + coalesced). Each check's own findings (nesting, level re-raises, STI shadow,
//! HLT wake-ups, one-shots never early) are asserted too.
//!
//! Where a mode differs from bare metal on this platform, [`Quirks`] says so and the check
//! expects exactly that difference (so that losing the difference, or gaining another, fails).

use std::collections::BTreeMap;
use std::fmt;

/// The checks of `deliver=all`, in the guest's running order (`smp` only with 2+ vCPUs, `vf`
/// only with a VF).
pub const CHECKS: [&str; 10] = [
    "ipi", "priority", "timer", "pit", "level", "masking", "race", "smp", "nmi", "vf",
];

/// Race iterations the tests ask for (`deliver-rounds=`).
pub const RACE_ROUNDS: u32 = 10_000;

/// The command line of the delivery-checking guest `a` in `irq` mode with `vcpus` vCPUs (on CPUs
/// 1 to `vcpus`; QEMU needs `-smp vcpus + 1`).
pub fn delivery_guest(irq: &str, vcpus: u32) -> String {
    let cores = if vcpus > 1 {
        format!("1-{vcpus}")
    } else {
        "1".into()
    };
    format!(
        "guest=a,cores={cores},mem=16M,kernel=testguest,irq={irq},cmdline=\"deliver=all deliver-rounds={RACE_ROUNDS}\""
    )
}

/// The command line of the delivery-checking guest `a` running the `vf` check alone (it runs
/// `vfmsix` too) on `vcpus` vCPUs (on CPUs 1 to `vcpus`) in `irq` mode, with the VF at host
/// address `vf` (e.g. `00:04.1`).
pub fn delivery_guest_vf(irq: &str, vf: &str, vcpus: u32) -> String {
    let cores = if vcpus > 1 {
        format!("1-{vcpus}")
    } else {
        "1".into()
    };
    format!(
        "guest=a,cores={cores},mem=16M,kernel=testguest,irq={irq},vf={vf},cmdline=\"deliver=vf\""
    )
}

/// The command line of a delivery-checking guest `name` in `irq` mode on host CPUs `cores`
/// (2 or more) that runs the `smp` check alone: IPIs between its vCPUs, wherever they are.
pub fn smp_guest(name: &str, irq: &str, cores: &str) -> String {
    format!("guest={name},cores={cores},mem=16M,kernel=testguest,irq={irq},cmdline=\"deliver=smp\"")
}

/// Checks guest `name` of [`smp_guest`] with `vcpus` vCPUs: every AP up, each vCPU's IPIs exact,
/// the totals, a clean power-off.
pub fn check_smp_guest(serial: &str, name: &str, irq: &str, vcpus: u32) -> Result<Summary, String> {
    let lines = console(serial, name);
    let mut summary = Summary::default();
    check_smp(&lines, vcpus, &mut summary)?;
    check_end(serial, name, &lines, quirks(irq, vcpus), summary)
}

/// How a mode differs from bare metal here, by design or by platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quirks {
    /// A level-triggered IOAPIC interrupt arrives with its TMR bit clear (the hypervisor sends
    /// it to the guest's physical APIC as a fixed IPI, which is edge-triggered), so the guest's
    /// local EOI does not reach the virtual IOAPIC: the guest must EOI the IOAPIC itself through
    /// its EOI register, as Linux does when it finds TMR clear (`ioapic_ack_level`). The guest
    /// does that, and then re-raise and EOI behave as on hardware.
    pub level_tmr_clear: bool,
    /// Interrupts may arrive a second time, with IF clear, on QEMU TCG (emulated mode, 2+ vCPUs):
    /// QEMU's VMRUN delivers an EVENTINJ external interrupt directly but leaves the vCPU's
    /// pending-exception index at its vector; when another thread's kick then makes the vCPU
    /// leave its execution loop before anything overwrites that index, QEMU delivers the vector
    /// again as an exception, which IF does not hold. The guest counts such arrivals apart
    /// (`arrived with IF clear`) and keeps them out of its books; everything else must still be
    /// exact. Only emulated mode injects through EVENTINJ, and with one vCPU nothing kicks it
    /// often enough to show it.
    pub redelivered_with_if_clear: bool,
}

/// The quirks of mode `irq` with `vcpus` vCPUs.
pub fn quirks(irq: &str, vcpus: u32) -> Quirks {
    Quirks {
        level_tmr_clear: irq == "direct",
        redelivered_with_if_clear: irq == "emulated" && vcpus > 1,
    }
}

/// The counts of one check line (or of the final line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub received: u64,
    pub coalesced: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub readback_mismatches: u64,
}

impl Counts {
    /// Adds `other`'s counts to these (totals over several runs).
    pub fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.received += other.received;
        self.coalesced += other.coalesced;
        self.out_of_order += other.out_of_order;
        self.duplicates += other.duplicates;
        self.lost += other.lost;
        self.readback_mismatches += other.readback_mismatches;
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, received {}, coalesced {}, out of order {}, duplicates {}, lost {}",
            self.sent, self.received, self.coalesced, self.out_of_order, self.duplicates, self.lost
        )
    }
}

/// Parses `sent N, received N, ...` (the keys it knows; others are ignored).
fn parse_counts(text: &str) -> Result<Counts, String> {
    let mut c = Counts::default();
    let mut seen = 0;
    for part in text.split(", ") {
        let Some((key, value)) = part.rsplit_once(' ') else {
            continue;
        };
        let Ok(n) = value.parse::<u64>() else {
            continue;
        };
        let slot = match key {
            "sent" => &mut c.sent,
            "received" => &mut c.received,
            "coalesced" => &mut c.coalesced,
            "out of order" => &mut c.out_of_order,
            "duplicates" => &mut c.duplicates,
            "lost" => &mut c.lost,
            "read-back mismatches" => &mut c.readback_mismatches,
            _ => continue,
        };
        *slot = n;
        seen += 1;
    }
    if seen < 6 {
        return Err(format!("not a line of counts: `{text}`"));
    }
    Ok(c)
}

/// What the guest reported.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Per check: its verdict word and counts.
    pub checks: BTreeMap<&'static str, Counts>,
    /// The final line's totals.
    pub total: Counts,
    /// Interrupts that came while the interrupted code had IF clear (see
    /// [`Quirks::redelivered_with_if_clear`]).
    pub masked_arrivals: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in CHECKS {
            if let Some(c) = self.checks.get(name) {
                writeln!(f, "  {name:9} {c}")?;
            }
        }
        write!(
            f,
            "  total     {}\n  arrived with IF clear: {}",
            self.total, self.masked_arrivals
        )
    }
}

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// What guest `name` printed on its debug console (`[name] ...` lines), in order.
fn console<'a>(serial: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("[{name}] ");
    serial
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix(prefix.as_str()))
        .collect()
}

/// The lines `testguest: deliver: CHECK: ...` that are not the check's counts line.
fn details<'a>(lines: &[&'a str], check: &str) -> Vec<&'a str> {
    let prefix = format!("testguest: deliver: {check}: ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter(|l| !l.starts_with("ok: ") && !l.starts_with("FAILED: "))
        .collect()
}

fn has_detail(lines: &[&str], check: &str, want: &str) -> Result<(), String> {
    let d = details(lines, check);
    expect(d.iter().any(|l| l.contains(want)), || {
        format!("{check}: no `{want}` in {d:?}")
    })
}

/// The periodic lines of `check` (`... periodic P us: expiries E, received R, may merge M,
/// lost L, duplicates D`): each source delivered something, lost and duplicated nothing.
fn check_periodic(lines: &[&str], check: &str, sources: usize) -> Result<(), String> {
    let periodic: Vec<&str> = details(lines, check)
        .into_iter()
        .filter(|l| l.contains("periodic "))
        .collect();
    expect(periodic.len() == sources, || {
        format!(
            "{check}: {} periodic sources reported, not {sources}: {periodic:?}",
            periodic.len()
        )
    })?;
    for l in periodic {
        let nums: BTreeMap<&str, u64> = l
            .split(", ")
            .filter_map(|p| p.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.rsplit(": ").next()?, v.parse().ok()?)))
            .collect();
        let get = |k: &str| nums.get(k).copied();
        expect(get("received").is_some_and(|n| n > 0), || {
            format!("{check}: a periodic source delivered nothing: {l}")
        })?;
        expect(
            get("lost") == Some(0) && get("duplicates") == Some(0),
            || format!("{check}: {l}"),
        )?;
    }
    Ok(())
}

/// Checks a run of [`delivery_guest`] in `irq` mode with `vcpus` vCPUs: every check's counts
/// clean, its own findings as on bare metal (or as [`quirks`] says), the totals, a clean end.
pub fn check_delivery(serial: &str, irq: &str, vcpus: u32) -> Result<Summary, String> {
    let lines = console(serial, "a");
    let q = quirks(irq, vcpus);
    let mut summary = Summary::default();
    for check in CHECKS {
        if check == "smp" {
            if vcpus < 2 {
                expect(
                    lines.contains(&"testguest: deliver: smp: skipped: 1 vcpu"),
                    || "smp: not skipped with one vcpu".into(),
                )?;
            }
            continue; // with 2+ vCPUs: `check_smp` below
        }
        if check == "vf" {
            expect(
                lines.contains(&"testguest: deliver: vf: skipped: no vf at 00:01.0"),
                || "vf: not skipped without a vf".into(),
            )?;
            continue;
        }
        summary.checks.insert(check, check_counts(&lines, check)?);
    }
    // Exact sources coalesce only where the guest itself sent a vector twice while pending.
    let ipi = summary.checks["ipi"];
    expect(ipi.coalesced == 140, || {
        format!(
            "ipi: {} coalesced, the guest sent 140 duplicates while pending",
            ipi.coalesced
        )
    })?;
    for check in ["priority", "level", "masking"] {
        let c = summary.checks[check];
        expect(c.coalesced == 0, || {
            format!("{check}: exact sources coalesced: {c}")
        })?;
    }
    has_detail(&lines, "priority", "nested 10 of 10")?;
    has_detail(&lines, "timer", "one-shot early 0 of 20")?;
    check_periodic(&lines, "timer", 2)?;
    has_detail(&lines, "pit", "one-shot early 0 of 12")?;
    check_periodic(&lines, "pit", 1)?;
    has_detail(&lines, "level", "re-raised 9, held while masked 4 of 4")?;
    // 17 level interrupts: 1 + 2 + 4 + 6 re-raise rounds and 4 unmasks.
    let tmr = if q.level_tmr_clear {
        "tmr set 0 clear 17"
    } else {
        "tmr set 17 clear 0"
    };
    has_detail(&lines, "level", tmr)?;
    has_detail(
        &lines,
        "masking",
        "if=0 held 10/10, sti shadow 20/20 (inside 0, late 0), hlt woke: pending 10/10, timer 10/10, pit 10/10",
    )?;
    has_detail(&lines, "race", &format!("{RACE_ROUNDS} iterations"))?;
    check_periodic(&lines, "race: timer", 1)?;
    check_periodic(&lines, "race: pit", 1)?;
    if vcpus > 1 {
        check_smp(&lines, vcpus, &mut summary)?;
    }
    check_nmi(serial, &lines, &summary, vcpus)?;
    check_end(serial, "a", &lines, q, summary)
}

/// The `smp` check of a guest with `vcpus` vCPUs (2 or more): every AP started in time, each
/// one's IPIs exact, nothing merged.
fn check_smp(lines: &[&str], vcpus: u32, summary: &mut Summary) -> Result<(), String> {
    summary.checks.insert("smp", check_counts(lines, "smp")?);
    let aps = vcpus - 1;
    has_detail(
        lines,
        "smp",
        &format!("{aps} of {aps} aps started, late 0, {vcpus} vcpus"),
    )?;
    for cpu in 1..vcpus {
        let prefix = format!("vcpu {cpu}: sent ");
        let line = details(lines, "smp")
            .into_iter()
            .find(|l| l.starts_with(&prefix))
            .ok_or_else(|| format!("smp: no counts of vcpu {cpu}"))?;
        let c = parse_counts(&line[format!("vcpu {cpu}: ").len()..])?;
        expect(
            c.out_of_order == 0
                && c.duplicates == 0
                && c.lost == 0
                && c.readback_mismatches == 0
                && c.coalesced == 0
                && c.sent == c.received
                && c.received > 0,
            || format!("smp: vcpu {cpu}: {line}"),
        )?;
    }
    // IPIs between vCPUs are sent only after the previous one of the vector arrived, and the
    // race's self-IPIs only when not pending: nothing merges.
    let smp = summary.checks["smp"];
    expect(smp.coalesced == 0, || format!("smp: coalesced: {smp}"))?;
    Ok(())
}

/// The `nmi` check: 20 self-NMIs each at the next instruction (10 with IF=0, 10 under TPR FFh);
/// 10 rounds of an NMI whose handler sends 3 more (held, exactly one right after the IRET: 2
/// merged per round); with APs, per AP and destination kind (physical, logical, all-excluding-self) 10
/// rounds of an NMI to it, one back to the BSP and one on to the next vCPU, each exactly once.
/// The hypervisor's NMI lines must have injected exactly what the guest received.
fn check_nmi(serial: &str, lines: &[&str], summary: &Summary, vcpus: u32) -> Result<(), String> {
    let c = summary.checks["nmi"];
    let aps = u64::from(vcpus - 1);
    // Each AP: 3 kinds x 10 rounds x (its NMI, one back, one on); all-excluding-self reaches
    // every AP, so each round of it 10 x (vcpus - 2) more arrivals.
    let remote = aps * (90 + 10 * aps.saturating_sub(1));
    let received = 20 + 20 + remote;
    expect(
        (c.sent, c.received, c.coalesced) == (received + 20, received, 20),
        || {
            format!(
                "nmi: not {} sent, {received} received, 20 coalesced: {c}",
                received + 20
            )
        },
    )?;
    has_detail(lines, "nmi", "at once with if=0 10/10, tpr ff 10/10")?;
    has_detail(lines, "nmi", "latched 1 after iret 10/10 (at once 10/10)")?;
    has_detail(
        lines,
        "nmi",
        &format!("remote {0}/{0}, {vcpus} vcpus", aps * 90),
    )?;
    let injected: u64 = serial
        .lines()
        .filter_map(|l| l.trim().strip_prefix("guest nmis: "))
        .filter_map(|l| {
            l.rsplit_once(", ")?
                .1
                .strip_suffix(" injected")?
                .parse::<u64>()
                .ok()
        })
        .sum();
    expect(injected == c.received, || {
        format!(
            "nmi: the hypervisor injected {injected} nmis, the guest received {}",
            c.received
        )
    })
}

/// The counts line of `check`: clean, balanced, something sent and received, verdict ok.
fn check_counts(lines: &[&str], check: &'static str) -> Result<Counts, String> {
    let prefix = format!("testguest: deliver: {check}: ");
    let line = lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .find(|l| l.starts_with("ok: ") || l.starts_with("FAILED: "))
        .ok_or_else(|| format!("no line of counts for check {check}"))?;
    let (verdict, rest) = line.split_once(": ").unwrap_or((line, ""));
    let c = parse_counts(rest).map_err(|e| format!("{check}: {e}"))?;
    expect(
        c.out_of_order == 0 && c.duplicates == 0 && c.lost == 0,
        || format!("{check}: {c}"),
    )?;
    expect(c.readback_mismatches == 0, || {
        let first = details(lines, check)
            .into_iter()
            .find(|l| l.starts_with("first read-back mismatch"))
            .unwrap_or("");
        format!(
            "{check}: {} read-back mismatches ({first})",
            c.readback_mismatches
        )
    })?;
    expect(c.sent > 0 && c.received > 0, || {
        format!("{check}: nothing sent or received: {c}")
    })?;
    expect(c.sent == c.received + c.coalesced, || {
        format!("{check}: the books do not balance: {c}")
    })?;
    expect(verdict == "ok", || {
        format!("{check}: the guest says {verdict}")
    })?;
    Ok(c)
}

/// Checks a run of [`delivery_guest_vf`]: the message the bring-up left pending in the PBA came
/// once at the unmask; the VF's completions each posted one interrupt (90 with
/// one command in flight, by turns on the class-3, class-6 and class-A vector), 5 bursts of 4
/// Reads with IF clear came as one interrupt each (exactly 15 merges), 10 were held by TPR, 10
/// nested in a class-6 handler and 10 of class 3 waited for its EOI; nothing lost, duplicated or
/// out of order; every command completed. Then `vfmsix` ([`check_vf_entries`]) with `vcpus`.
pub fn check_delivery_vf(serial: &str, irq: &str, vcpus: u32) -> Result<Summary, String> {
    let lines = console(serial, "a");
    let mut summary = Summary::default();
    let c = check_counts(&lines, "vf")?;
    // Sent: the bring-up's held message + 90 exact + 5 bursts of 4 + 10 under TPR + 20 nesting
    // self-IPIs and their 20 Reads.
    expect((c.sent, c.received, c.coalesced) == (161, 146, 15), || {
        format!("vf: not the expected 161 sent, 146 received, 15 coalesced: {c}")
    })?;
    has_detail(
        &lines,
        "vf",
        "bring-up message pending 1, delivered at unmask 1",
    )?;
    summary.checks.insert("vf", c);
    has_detail(&lines, "vf", "one completion per interrupt 90 of 90")?;
    has_detail(&lines, "vf", "bursts of 4 in one interrupt 5 of 5")?;
    has_detail(&lines, "vf", "held by tpr 10 of 10")?;
    has_detail(
        &lines,
        "vf",
        "class a nested 10 of 10, class 3 waited 10 of 10",
    )?;
    has_detail(
        &lines,
        "vf",
        "commands 140, completions 140, errors 0, interrupts 125, empty 0",
    )?;
    check_vf_entries(serial, &lines, irq, vcpus, &mut summary)?;
    check_end(serial, "a", &lines, quirks(irq, vcpus), summary)
}

/// The `vfmsix` line: MSI-X entries 1 and 2 (class 5 and B) aimed at two vCPUs at once, 4 rounds
/// per vCPU; each entry held by its mask and by the function mask, once per vCPU; each AP parked
/// (HLT with IF clear) while its interrupt completes, then woken by an NMI: every interrupt
/// exactly once, in the books of the vCPU it was aimed at (the counts include two doorbell IPIs
/// per AP, the commands to park and to close its books). The hypervisor must have parked and
/// woken each AP, and in `avic` the IOMMU must have written one GA log entry per parked AP.
fn check_vf_entries(
    serial: &str,
    lines: &[&str],
    irq: &str,
    vcpus: u32,
    summary: &mut Summary,
) -> Result<(), String> {
    let c = check_counts(lines, "vfmsix")?;
    let aps = u64::from(vcpus - 1);
    let rounds = 4 * u64::from(vcpus);
    let expected = 2 * rounds + 2 * u64::from(vcpus) + aps;
    // Plus each AP's doorbell IPIs of the park command and of the final settle command.
    let sent = expected + 2 * aps;
    expect((c.sent, c.received, c.coalesced) == (sent, sent, 0), || {
        format!("vfmsix: not the expected {sent} sent and received, 0 coalesced: {c}")
    })?;
    summary.checks.insert("vfmsix", c);
    has_detail(
        lines,
        "vfmsix",
        &format!("two entries to two vcpus at once {rounds} of {rounds}, {vcpus} vcpus"),
    )?;
    has_detail(
        lines,
        "vfmsix",
        &format!(
            "held by entry and function mask, then once {0} of {0}",
            2 * vcpus
        ),
    )?;
    has_detail(
        lines,
        "vfmsix",
        &format!(
            "parked aps: held with IF clear {aps} of {aps}, woken by an nmi and then once {aps} of {aps}"
        ),
    )?;
    has_detail(
        lines,
        "vfmsix",
        &format!("commands {expected}, completions {expected}, errors 0, late 0"),
    )?;
    let woken = serial
        .lines()
        .filter(|l| l.trim() == "parked (HLT with interrupts disabled) and woken by a guest nmi: 1")
        .count() as u64;
    expect(woken == aps, || {
        format!("vfmsix: the hypervisor parked and woke {woken} vcpus, not the {aps} aps")
    })?;
    if irq == "avic" {
        let ga_log: u64 = serial
            .lines()
            .filter_map(|l| l.rsplit_once(", ga-log "))
            .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
            .sum();
        expect(ga_log == aps, || {
            format!("vfmsix: {ga_log} GA log entries, not one per parked ap ({aps})")
        })?;
    }
    Ok(())
}

/// The end of a run: arrivals with IF clear (only where [`Quirks`] allows them), totals clean,
/// balanced and the sum of the checks, the guest's verdict, a clean power-off.
fn check_end(
    serial: &str,
    guest: &str,
    lines: &[&str],
    q: Quirks,
    mut summary: Summary,
) -> Result<Summary, String> {
    let masked: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("testguest: delivery: arrived with IF clear: "))
        .and_then(|n| n.parse().ok())
        .ok_or("no count of arrivals with IF clear")?;
    summary.masked_arrivals = masked;
    expect(masked == 0 || q.redelivered_with_if_clear, || {
        format!("{masked} interrupts arrived while the interrupted code had IF clear")
    })?;
    let total = lines
        .iter()
        .find_map(|l| l.strip_prefix("testguest: delivery: sent "))
        .ok_or("no final line of counts")?;
    summary.total = parse_counts(&format!("sent {total}"))?;
    let t = summary.total;
    expect(
        t.out_of_order == 0 && t.duplicates == 0 && t.lost == 0,
        || format!("totals: {t}"),
    )?;
    expect(t.sent == t.received + t.coalesced, || {
        format!("totals do not balance: {t}")
    })?;
    let sum = summary.checks.values().fold(Counts::default(), |mut a, c| {
        a.add(c);
        a
    });
    expect(
        (sum.sent, sum.received, sum.coalesced) == (t.sent, t.received, t.coalesced),
        || format!("totals {t} are not the sum of the checks ({sum})"),
    )?;
    // The guest's verdict: ok, or (only where the quirk is expected and it happened) failed for
    // that reason alone.
    let verdict_ok = lines.contains(&"testguest: delivery: ok")
        || (q.redelivered_with_if_clear
            && masked > 0
            && lines.contains(&"testguest: delivery: FAILED: if-clear"));
    expect(verdict_ok, || "no `testguest: delivery: ok`".into())?;
    expect(
        lines.contains(&"testguest: done, requesting power-off"),
        || "the guest did not reach its normal end".into(),
    )?;
    expect(
        serial.contains(&format!(
            "guest {guest}: ended: power-off request (ACPI PM1a SLP_EN)"
        )),
        || format!("guest {guest} did not power off"),
    )?;
    expect(serial.contains("didvisor: all guests ended"), || {
        "the hypervisor did not end cleanly".into()
    })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_parse() {
        let c = parse_counts(
            "sent 462, received 322, coalesced 140, out of order 0, duplicates 0, lost 0, read-back mismatches 2",
        )
        .unwrap();
        assert_eq!(
            (c.sent, c.received, c.coalesced, c.readback_mismatches),
            (462, 322, 140, 2)
        );
        assert!(parse_counts("re-raised 9, held while masked 4 of 4").is_err());
    }

    #[test]
    fn a_failing_log_is_refused_with_the_reason() {
        let log = "[a] testguest: deliver: ipi: ok: sent 3, received 2, coalesced 0, out of order 0, duplicates 0, lost 1, read-back mismatches 0\n";
        let e = check_delivery(log, "direct", 1).unwrap_err();
        assert!(e.contains("ipi") && e.contains("lost 1"), "{e}");
        let e = check_delivery("", "emulated", 1).unwrap_err();
        assert!(e.contains("no line of counts for check ipi"), "{e}");
    }
}
