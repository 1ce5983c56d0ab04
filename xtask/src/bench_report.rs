//! The evaluation's data: the `didvisor-bench:` lines of guest/bench/didbench.c parsed, the
//! metrics computed from them per round, medians with their spread per configuration, the
//! invariants `--quick` asserts, and the Markdown table and JSON document of the report.
//! Pure: `bench` runs the guests, this module only reads what they printed.

use std::collections::BTreeMap;

/// The prefix of a workload's result line (under didvisor after the `[lin] ` guest prefix).
pub const LINE_PREFIX: &str = "didvisor-bench: ";

/// One workload's line: `key=value` words after [`LINE_PREFIX`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkloadRun {
    pub workload: String,
    pub fields: BTreeMap<String, String>,
}

impl WorkloadRun {
    /// One line's words (its workload and fields).
    fn parse_line(line: &str) -> Result<WorkloadRun, String> {
        let rest = line
            .split_once(LINE_PREFIX)
            .ok_or_else(|| format!("not a bench line: {line:?}"))?
            .1;
        let mut fields = BTreeMap::new();
        for word in rest.split_whitespace() {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| format!("bench line word {word:?} is not key=value: {line:?}"))?;
            if fields.insert(k.to_string(), v.to_string()).is_some() {
                return Err(format!("{k}= given twice: {line:?}"));
            }
        }
        let workload = fields
            .remove("workload")
            .ok_or_else(|| format!("bench line without workload=: {line:?}"))?;
        Ok(WorkloadRun { workload, fields })
    }

    /// The records in a serial log: a line with `ops=` starts one, the following lines of the
    /// same workload add to it.
    pub fn all_in(serial: &str) -> Result<Vec<WorkloadRun>, String> {
        let mut out: Vec<WorkloadRun> = Vec::new();
        for line in serial.lines().filter(|l| l.contains(LINE_PREFIX)) {
            let run = WorkloadRun::parse_line(line)?;
            match out.last_mut() {
                Some(last) if last.workload == run.workload && !run.fields.contains_key("ops") => {
                    for (k, v) in run.fields {
                        if last.fields.insert(k.clone(), v).is_some() {
                            return Err(format!("{}: {k}= given twice", run.workload));
                        }
                    }
                }
                _ => out.push(run),
            }
        }
        for run in &out {
            for need in ["ops", "ns", "irqs"] {
                run.number(need).ok_or_else(|| {
                    format!("workload {} reported no number for {need}=", run.workload)
                })?;
            }
            let hv = run.fields.get("hv").map(String::as_str);
            if !matches!(hv, Some("didvisor" | "kvm" | "none")) {
                return Err(format!(
                    "workload {} reported hv={hv:?} (didvisor, kvm or none)",
                    run.workload
                ));
            }
        }
        Ok(out)
    }

    /// A numeric field; `hv` counts as 1 for `didvisor`, 0 for `none` (none for `kvm`).
    pub fn number(&self, key: &str) -> Option<f64> {
        let v = self.fields.get(key)?;
        match (key, v.as_str()) {
            ("hv", "didvisor") => Some(1.0),
            ("hv", "none") => Some(0.0),
            _ => v.parse().ok(),
        }
    }

    /// Exits in the window (without the counter reads); `None` outside didvisor and KVM (under
    /// KVM they come from the L1's snapshots, added by `bench`).
    pub fn exits(&self) -> Option<f64> {
        self.number("exits")
    }

    fn seconds(&self) -> f64 {
        self.number("ns").unwrap_or(0.0) / 1e9
    }

    fn ops(&self) -> f64 {
        self.number("ops").unwrap_or(1.0).max(1.0)
    }
}

/// What a metric is, for the table's ratio column and the plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Exit counts: what transfers from TCG to hardware; `bare` has none.
    Exits,
    /// Times and rates: relative to `bare` on the same machine; absolute values mean little
    /// under TCG.
    Timed,
}

/// The rows of the table: one per workload and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    IdleExitsPerSecond,
    TimerExitsPerWake,
    TimerExitsPerInterrupt,
    TimerP50,
    TimerP99,
    IpiExitsPerRoundTrip,
    IpiRoundTripP50,
    IpiRoundTripP99,
    CpuRunTime,
    CpuExitsPerSecond,
    NvmeRandP50,
    NvmeRandP99,
    NvmeRandExitsPerRead,
    NvmeSeqThroughput,
    NvmeSeqExitsPerMib,
    BootToInit,
}

impl Metric {
    pub const ALL: [Metric; 16] = [
        Metric::IdleExitsPerSecond,
        Metric::TimerExitsPerWake,
        Metric::TimerExitsPerInterrupt,
        Metric::TimerP50,
        Metric::TimerP99,
        Metric::IpiExitsPerRoundTrip,
        Metric::IpiRoundTripP50,
        Metric::IpiRoundTripP99,
        Metric::CpuRunTime,
        Metric::CpuExitsPerSecond,
        Metric::NvmeRandP50,
        Metric::NvmeRandP99,
        Metric::NvmeRandExitsPerRead,
        Metric::NvmeSeqThroughput,
        Metric::NvmeSeqExitsPerMib,
        Metric::BootToInit,
    ];

    /// (workload, metric name, unit, kind).
    pub fn describe(self) -> (&'static str, &'static str, &'static str, Kind) {
        use Kind::{Exits, Timed};
        match self {
            Metric::IdleExitsPerSecond => ("idle", "exits per second", "1/s", Exits),
            Metric::TimerExitsPerWake => ("timer", "exits per wake-up", "", Exits),
            Metric::TimerExitsPerInterrupt => ("timer", "exits per interrupt", "", Exits),
            Metric::TimerP50 => ("timer", "wake-up latency p50", "µs", Timed),
            Metric::TimerP99 => ("timer", "wake-up latency p99", "µs", Timed),
            Metric::IpiExitsPerRoundTrip => ("ipi", "exits per round trip", "", Exits),
            Metric::IpiRoundTripP50 => ("ipi", "round trip p50", "µs", Timed),
            Metric::IpiRoundTripP99 => ("ipi", "round trip p99", "µs", Timed),
            Metric::CpuRunTime => ("cpu", "run time", "s", Timed),
            Metric::CpuExitsPerSecond => ("cpu", "exits per second", "1/s", Exits),
            Metric::NvmeRandP50 => ("nvme-rand", "4 KiB read latency p50", "µs", Timed),
            Metric::NvmeRandP99 => ("nvme-rand", "4 KiB read latency p99", "µs", Timed),
            Metric::NvmeRandExitsPerRead => ("nvme-rand", "exits per read", "", Exits),
            Metric::NvmeSeqThroughput => ("nvme-seq", "throughput", "MiB/s", Timed),
            Metric::NvmeSeqExitsPerMib => ("nvme-seq", "exits per MiB", "", Exits),
            Metric::BootToInit => ("boot", "time to init", "s", Timed),
        }
    }

    /// The metric's value in one round: the workload's line, and the boot time.
    pub fn value(self, round: &Round) -> Option<f64> {
        let (workload, ..) = self.describe();
        if self == Metric::BootToInit {
            return Some(round.to_init_s);
        }
        let run = round.runs.iter().find(|r| r.workload == workload)?;
        let us = |key: &str| run.number(key).map(|ns| ns / 1e3);
        match self {
            Metric::IdleExitsPerSecond | Metric::CpuExitsPerSecond => {
                Some(run.exits()? / run.seconds().max(1e-9))
            }
            Metric::TimerExitsPerWake
            | Metric::IpiExitsPerRoundTrip
            | Metric::NvmeRandExitsPerRead
            | Metric::NvmeSeqExitsPerMib => Some(run.exits()? / run.ops()),
            Metric::TimerExitsPerInterrupt => Some(run.exits()? / run.number("irqs")?.max(1.0)),
            Metric::TimerP50 | Metric::IpiRoundTripP50 | Metric::NvmeRandP50 => us("p50_ns"),
            Metric::TimerP99 | Metric::IpiRoundTripP99 | Metric::NvmeRandP99 => us("p99_ns"),
            Metric::NvmeSeqThroughput => Some(run.ops() / run.seconds().max(1e-9)),
            Metric::CpuRunTime => Some(run.seconds()),
            Metric::BootToInit => None,
        }
    }
}

/// One boot of one configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Round {
    pub to_init_s: f64,
    pub runs: Vec<WorkloadRun>,
}

/// The median and the spread of one metric over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cell {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// median / bare's median (times only).
    pub ratio: Option<f64>,
}

pub fn cell(values: &[f64]) -> Option<Cell> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Cell {
        median,
        min: v[0],
        max: v[n - 1],
        ratio: None,
    })
}

/// A table row: one metric over the configurations (in the order of the report's columns).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub workload: &'static str,
    pub metric: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub cells: Vec<Option<Cell>>,
}

/// The rows for `configs` (name, rounds); the first configuration is the reference of the
/// ratios if it is `bare` (a `--config` selection without it has no ratios).
pub fn rows(configs: &[(&str, Vec<Round>)]) -> Vec<Row> {
    Metric::ALL
        .iter()
        .map(|&m| {
            let (workload, metric, unit, kind) = m.describe();
            let mut cells: Vec<Option<Cell>> = configs
                .iter()
                .map(|(_, rounds)| {
                    let values: Vec<f64> = rounds.iter().filter_map(|r| m.value(r)).collect();
                    cell(&values)
                })
                .collect();
            let base = match configs.first() {
                Some(("bare", _)) => cells.first().copied().flatten().map(|c| c.median),
                _ => None,
            };
            if kind == Kind::Timed {
                for c in cells.iter_mut().flatten() {
                    c.ratio = base.filter(|b| *b > 0.0).map(|b| c.median / b);
                }
            }
            Row {
                workload,
                metric,
                unit,
                kind,
                cells,
            }
        })
        .collect()
}

/// A number with 3 significant digits (integers as they are from 100 on).
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a == 0.0 {
        "0".to_string()
    } else {
        format!("{x:.3}")
    }
}

pub fn markdown(names: &[&str], rows: &[Row], rounds: usize) -> String {
    let mut s = String::new();
    s.push_str("| workload | metric |");
    for n in names {
        s.push_str(&format!(" {n} |"));
    }
    s.push_str("\n|---|---|");
    for _ in names {
        s.push_str("---:|");
    }
    s.push('\n');
    for r in rows {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.unit)
        };
        s.push_str(&format!("| {} | {}{unit} |", r.workload, r.metric));
        for c in &r.cells {
            let text = match c {
                None => "-".to_string(),
                Some(c) => {
                    let mut t = num(c.median);
                    if let Some(q) = c.ratio {
                        t.push_str(&format!(" (×{q:.2})"));
                    }
                    if rounds > 1 {
                        t.push_str(&format!(" [{}–{}]", num(c.min), num(c.max)));
                    }
                    t
                }
            };
            s.push_str(&format!(" {text} |"));
        }
        s.push('\n');
    }
    s
}

/// Per-operation exits of a workload by source (the plot's stacks): median over the rounds.
pub fn exits_by_source(rounds: &[Round], workload: &str) -> Vec<(&'static str, f64)> {
    let per_op = |r: &WorkloadRun, key: &str| Some(r.number(key)? / r.ops());
    let runs: Vec<&WorkloadRun> = rounds
        .iter()
        .filter_map(|r| r.runs.iter().find(|w| w.workload == workload))
        .filter(|w| w.exits().is_some())
        .collect();
    let median = |key: &str| {
        let v: Vec<f64> = runs.iter().filter_map(|r| per_op(r, key)).collect();
        cell(&v).map_or(0.0, |c| c.median)
    };
    // `injected` counts interrupts, not exits; the rest are exit reasons or subsets of `msr`
    // (eoi, timer, ipi: x2APIC MSRs; under AVIC the 401h/402h exits). `other` closes the sum.
    let parts = ["intr", "hlt", "npf", "ioio", "eoi", "timer", "ipi"];
    let mut out: Vec<(&'static str, f64)> = parts.iter().map(|&k| (k, median(k))).collect();
    let named: f64 = out.iter().map(|(_, v)| v).sum();
    out.push(("other", (median("exits") - named).max(0.0)));
    out
}

/// Interrupts an emulated-mode window may take that were injected before it opened: one per
/// vCPU of the bench guest (seen in CI: 721 injected for 722 taken in the IPI window).
const EDGE_INJECTIONS: f64 = 2.0;

/// The interrupt-path invariants of one configuration's round (`irq` = None for bare), which
/// must have a record of each of `workloads`: what `--quick` asserts. Each broken one is a
/// sentence.
pub fn invariants(irq: Option<&str>, workloads: &[&str], round: &Round) -> Vec<String> {
    let mut broken = Vec::new();
    let Some(irq) = irq else { return broken };
    for w in workloads {
        if !round.runs.iter().any(|r| r.workload == *w) {
            broken.push(format!("{irq}: no {w} line from the guest"));
        }
    }
    for r in &round.runs {
        let n = |k: &str| r.number(k).unwrap_or(f64::NAN);
        let w = &r.workload;
        if n("hv") != 1.0 {
            broken.push(format!(
                "{irq} {w}: the guest saw no didvisor exit counters"
            ));
            continue;
        }
        let irqs = n("irqs");
        match irq {
            // Interrupt delivery, EOIs and the timer stay in the guest: the exits the window
            // has (port I/O for the clock, ICR writes for IPIs) are not per interrupt.
            "direct" => {
                for k in ["intr", "eoi", "timer", "injected"] {
                    if n(k) != 0.0 {
                        broken.push(format!("{irq} {w}: {k} = {} (must be 0)", n(k)));
                    }
                }
            }
            "avic" => {
                if n("eoi") != 0.0 {
                    broken.push(format!("{irq} {w}: eoi = {} (must be 0)", n("eoi")));
                }
            }
            // Every interrupt the guest took was injected at an exit.
            "emulated" => {
                // A missing count is NaN, which compares false: broken too.
                // An interrupt injected just before the window opened may be taken inside it:
                // at most one per vCPU (the guest has 2; EDGE_INJECTIONS).
                let each_injected =
                    n("injected") + EDGE_INJECTIONS >= irqs && (w != "timer" || irqs > 0.0);
                if !each_injected {
                    broken.push(format!(
                        "{irq} {w}: {} interrupts injected at exits for {irqs} taken \
                         (each must exit at least once)",
                        n("injected")
                    ));
                }
            }
            other => broken.push(format!("unknown interrupt mode {other}")),
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMER: &str = "[lin] didvisor-bench: workload=timer ops=200 ns=400000000 p50_ns=150000 \
        p99_ns=900000\n[lin] didvisor-bench: workload=timer irqs=210 loc=205 res=5 hv=didvisor\n\
        [lin] didvisor-bench: workload=timer exits=420 cpuid=11 intr=0 eoi=200 timer=200\n\
        [lin] didvisor-bench: workload=timer ipi=0 injected=210 hlt=10 msr=400 npf=0 ioio=0";
    const BARE: &str = "didvisor-bench: workload=timer ops=200 ns=300000000 p50_ns=100000 \
        p99_ns=600000\ndidvisor-bench: workload=timer irqs=205 loc=200 res=5 hv=none";

    fn round(logs: &[&str], to_init: f64) -> Round {
        Round {
            to_init_s: to_init,
            runs: logs
                .iter()
                .flat_map(|l| WorkloadRun::all_in(l).unwrap())
                .collect(),
        }
    }

    #[test]
    fn parses_records_and_rejects_broken_ones() {
        let runs = WorkloadRun::all_in(&format!("noise\n{TIMER}\n{BARE}\n")).unwrap();
        assert_eq!(runs.len(), 2);
        let r = &runs[0];
        assert_eq!(r.workload, "timer");
        assert_eq!(r.exits(), Some(420.0));
        assert_eq!(r.number("ioio"), Some(0.0));
        assert_eq!(r.number("hv"), Some(1.0));
        assert_eq!(runs[1].exits(), None);
        let bad = |log: &str| WorkloadRun::all_in(log).unwrap_err();
        assert!(bad("didvisor-bench: ops=1 ns=1 irqs=0 hv=none").contains("workload="));
        assert!(bad("didvisor-bench: workload=x ops=1 ns=1 hv=none").contains("irqs="));
        assert!(bad("didvisor-bench: workload=x ops ns=1").contains("key=value"));
        let twice = "didvisor-bench: workload=x ops=1\ndidvisor-bench: workload=x irqs=1 irqs=2";
        assert!(bad(twice).contains("twice"));
        let again = "didvisor-bench: workload=x ops=1 ns=1\ndidvisor-bench: workload=x ns=2";
        assert!(bad(again).contains("twice"));
        // A line broken by the console loses its words: the record then lacks a field.
        let cut = "didvisor-bench: workload=x ops=1 ns=1\n[lin] irqs=3 hv=none";
        assert!(bad(cut).contains("irqs="));
        let kvm = WorkloadRun::all_in("didvisor-bench: workload=x ops=1 ns=1 irqs=2 hv=kvm");
        assert_eq!(kvm.unwrap()[0].exits(), None);
        assert!(bad("didvisor-bench: workload=x ops=1 ns=1 irqs=2 hv=xen").contains("hv="));
        let skipped = "didvisor-bench: workload=ipi skipped (needs 2 cpus)";
        assert!(bad(skipped).contains("key=value"));
    }

    #[test]
    fn metrics_medians_and_ratios() {
        let bare = vec![round(&[BARE], 5.0), round(&[BARE], 7.0)];
        let emu = vec![round(&[TIMER], 6.0)];
        let rows = rows(&[("bare", bare), ("emulated", emu)]);
        let row = |name: &str| rows.iter().find(|r| r.metric == name).unwrap();
        let per_wake = row("exits per wake-up");
        assert_eq!(per_wake.cells[0], None);
        assert_eq!(per_wake.cells[1].unwrap().median, 2.1);
        assert_eq!(per_wake.cells[1].unwrap().ratio, None);
        assert_eq!(row("exits per interrupt").cells[1].unwrap().median, 2.0);
        let p50 = row("wake-up latency p50");
        assert_eq!(p50.cells[0].unwrap().median, 100.0);
        assert_eq!(p50.cells[1].unwrap().ratio, Some(1.5));
        let boot = row("time to init").cells[0].unwrap();
        assert_eq!((boot.median, boot.min, boot.max), (6.0, 5.0, 7.0));
        assert!(row("run time").cells.iter().all(Option::is_none));
        let md = markdown(&["bare", "emulated"], &rows, 2);
        assert!(
            md.contains(
                "| timer | wake-up latency p50 (µs) | 100 (×1.00) [100–100] | 150 (×1.50) [150–150] |"
            ),
            "{md}"
        );
    }

    #[test]
    fn exits_by_source_close_to_the_total() {
        let parts = exits_by_source(&[round(&[TIMER], 1.0)], "timer");
        let total: f64 = parts.iter().map(|(_, v)| v).sum();
        assert!((total - 2.1).abs() < 1e-9, "{parts:?}");
        assert!(parts.contains(&("eoi", 1.0)));
    }

    const ALL4: &[&str] = &["idle", "timer", "ipi", "cpu"];

    #[test]
    fn invariants_per_mode() {
        let emu = round(&[TIMER], 1.0);
        let missing = invariants(Some("emulated"), ALL4, &emu);
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing.iter().all(|m| m.contains("no ")));
        let direct = invariants(Some("direct"), ALL4, &emu);
        assert!(direct.iter().any(|m| m.contains("eoi = 200")), "{direct:?}");
        assert!(direct.iter().any(|m| m.contains("injected = 210")));
        assert!(invariants(Some("avic"), ALL4, &emu)
            .iter()
            .any(|m| m.contains("eoi")));
        let few = TIMER.replace("injected=210", "injected=100");
        let few = invariants(Some("emulated"), ALL4, &round(&[&few], 1.0));
        assert!(few.iter().any(|m| m.contains("at least once")), "{few:?}");
        assert!(invariants(None, ALL4, &round(&[BARE], 1.0)).is_empty());
        let none = invariants(Some("direct"), ALL4, &round(&[BARE], 1.0));
        assert!(none.iter().any(|m| m.contains("no didvisor exit counters")));
    }

    #[test]
    fn numbers_keep_three_digits() {
        assert_eq!(num(1234.6), "1235");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.2345), "1.23");
        assert_eq!(num(0.01234), "0.012");
        assert_eq!(num(0.0), "0");
    }
}
