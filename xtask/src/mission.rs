//! `cargo xtask run`: didvisor doing what it is for, under QEMU. It boots a layout
//! (`layouts/qemu-demo.toml` unless `--layout FILE`): by default the stock Debian kernel as two
//! guests on dedicated cores, each with an NVMe VF, interrupts delivered directly.
//!
//! - **Without a terminal on stdin** (CI, scripts, `</dev/null`), or with `--check`: each guest
//!   runs its self-check (guest/init.sh: `didvisor.test=` steps such as `nvme-write`, its
//!   `/proc/interrupts`) and powers off; the hypervisor prints every vCPU's exit table; then the
//!   checks below are printed and the command exits 0 only if all passed (1 with the failed
//!   checks named, or when the run did not end within `--timeout`).
//! - **With a terminal**: the same, then each guest that runs the project's initramfs opens a
//!   shell (`didvisor.test=shell`); the keyboard starts with the `console` guest and moves with
//!   `Ctrl-] n` / `Ctrl-] 1`..`9` (the hypervisor's console switch); Ctrl-A X quits QEMU.
//!
//! The checks per guest: it started; for the project's initramfs, its kernel reached init,
//! printed `/proc/interrupts`, and each `nvme-write` step read its pattern back (and the pattern
//! is on the namespace's disk image, read on the host); the VF's interrupts reached the guest
//! and none went through exits (direct and avic); every vCPU printed its exit table (direct:
//! no EOI exits and only the few timer-LVT writes); it ended by powering off; and the hypervisor
//! ended cleanly.

use std::fs;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ::tests::report;
use ::tests::{Boot, BootFiles, Qemu, SerialOut};

use crate::layout::{Layout, Target};
use crate::{fail, linux, Error, Result};

/// The isa-debug-exit port QEMU runs always have.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// How long a run without a terminal may take by default (the demo takes well under a
/// minute on a 2-core host).
const DEFAULT_TIMEOUT_S: u64 = 300;

/// More CPUs than this are not worth emulating here (TCG runs every vCPU on the host's cores).
const MAX_QEMU_CPUS: usize = 32;

/// The NVMe controller `run` gives QEMU for layouts with VFs (`Qemu::nvme_sriov`: two VFs,
/// namespace n backed by disk n) sits at 00:04.0 behind the AMD-Vi IOMMU at 00:03.0.
const QEMU_VFS: [&str; 2] = ["00:04.1", "00:04.2"];

/// Size of each namespace's disk image.
const DISK_BYTES: u64 = 64 << 20;

const USAGE: &str = "\
usage: cargo xtask run [--layout FILE] [--mode direct|emulated|avic] [--check]
                       [--timeout SECS] [--prebuilt] [-- QEMU ARGS...]
       cargo xtask run --testguest [--cmdline S] [--smp N] [--prebuilt] [-- QEMU ARGS...]";

/// The options of `run` (the mission; `--testguest` and `--cmdline` go to the test guests).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opts {
    pub layout: Option<PathBuf>,
    pub mode: Option<String>,
    pub check: bool,
    pub timeout: Option<u64>,
    pub prebuilt: bool,
    pub extra: Vec<String>,
}

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts::default();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if a == "--" {
                o.extra = args[i + 1..].to_vec();
                break;
            } else if a == "--check" {
                o.check = true;
            } else if a == "--prebuilt" {
                o.prebuilt = true;
            } else if let Some(v) = crate::flag_value(args, &mut i, "--layout")? {
                o.layout = Some(PathBuf::from(v));
            } else if let Some(v) = crate::flag_value(args, &mut i, "--mode")? {
                if !["direct", "avic", "emulated"].contains(&v.as_str()) {
                    return fail(format!("--mode {v}: expected direct, avic or emulated"));
                }
                o.mode = Some(v);
            } else if let Some(v) = crate::flag_value(args, &mut i, "--timeout")? {
                o.timeout = Some(v.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                    format!("--timeout {v}: expected a number of seconds above 0")
                })?);
            } else {
                return fail(format!("run: unexpected argument `{a}`\n\n{USAGE}"));
            }
            i += 1;
        }
        Ok(o)
    }
}

/// What one guest is expected to show, from the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub vcpus: usize,
    pub irq: String,
    /// The VF and the disk image behind it (QEMU: namespace n of the NVMe controller).
    pub vf: Option<(String, Option<PathBuf>)>,
    /// The guest runs the project's initramfs (guest/init.sh prints its self-check).
    pub self_check: bool,
    /// The `didvisor.test=` steps of its command line.
    pub steps: Vec<String>,
    /// `didvisor.pattern=` (init.sh's default: `didvisor`).
    pub pattern: String,
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub guest: String,
    pub what: String,
    pub ok: bool,
}

fn check(guest: &str, ok: bool, what: impl Into<String>) -> Check {
    Check {
        guest: guest.into(),
        what: what.into(),
        ok,
    }
}

/// The `didvisor.test=` steps and the `didvisor.pattern=` of a guest command line, as
/// guest/init.sh reads them.
pub fn steps_and_pattern(cmdline: &str) -> (Vec<String>, String) {
    let mut steps = Vec::new();
    let mut pattern = "didvisor".to_string();
    for w in cmdline.split_whitespace() {
        if let Some(s) = w.strip_prefix("didvisor.test=") {
            steps.extend(s.split(',').filter(|s| !s.is_empty()).map(String::from));
        } else if let Some(p) = w.strip_prefix("didvisor.pattern=") {
            pattern = p.to_string();
        }
    }
    (steps, pattern)
}

/// The index of a QEMU VF (00:04.1 → 0), if it is one.
pub fn qemu_vf_index(bdf: &str) -> Option<usize> {
    let canonical = pci::Bdf::parse(bdf)?.to_string();
    QEMU_VFS.iter().position(|v| *v == canonical)
}

/// What guest `name` printed on its console (`[name] ...`), in order.
fn console<'a>(serial: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("[{name}] ");
    serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

fn lines(serial: &str) -> impl Iterator<Item = &str> {
    serial.lines().map(|l| l.trim_end_matches('\r'))
}

/// The sum over the CPU columns of the `/proc/interrupts` rows `select` (label, row) picks.
fn interrupt_sum(rows: &[&str], cpus: usize, select: impl Fn(&str, &str) -> bool) -> u64 {
    rows.iter()
        .filter_map(|r| {
            let mut words = r.split_whitespace();
            let label = words.next()?;
            select(label, r).then(|| {
                words
                    .take(cpus)
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .sum()
}

/// Judges one guest's part of the serial output.
pub fn evaluate(serial: &str, plan: &Plan) -> Vec<Check> {
    let name = plan.name.as_str();
    let mut out = Vec::new();
    let started = format!("guest {name}: vcpu 0 starts on cpu ");
    match lines(serial).find(|l| l.starts_with(&started)) {
        Some(l) => out.push(check(
            name,
            true,
            format!(
                "started on cpu {} ({} vCPU{}, irq={})",
                &l[started.len()..],
                plan.vcpus,
                if plan.vcpus == 1 { "" } else { "s" },
                plan.irq
            ),
        )),
        None => {
            let why = lines(serial)
                .find(|l| l.contains(&format!("guest {name}: ")) && l.contains("does not start"))
                .unwrap_or("no `vcpu 0 starts` line");
            out.push(check(name, false, format!("did not start: {why}")));
            return out;
        }
    }
    if plan.self_check {
        let con = console(serial, name);
        let value = |key: &str| {
            let p = format!("didvisor-guest: {key} ");
            con.iter().find_map(|l| l.strip_prefix(p.as_str()))
        };
        match value("kernel") {
            Some(k) => out.push(check(name, true, format!("kernel {k} ran its init"))),
            None => out.push(check(name, false, "no `didvisor-guest: kernel` line")),
        }
        let begin = con
            .iter()
            .position(|l| *l == "didvisor-guest: interrupts-begin");
        let end = con
            .iter()
            .position(|l| *l == "didvisor-guest: interrupts-end");
        match (begin, end) {
            (Some(b), Some(e)) if b < e => {
                let rows = &con[b + 1..e];
                let cpus = rows.first().map_or(0, |h| h.split_whitespace().count());
                let loc = interrupt_sum(rows, cpus, |label, _| label == "LOC:");
                out.push(check(
                    name,
                    cpus == plan.vcpus,
                    format!("/proc/interrupts: {cpus} CPU column(s), {loc} local timer interrupts"),
                ));
            }
            _ => out.push(check(
                name,
                false,
                "no /proc/interrupts between the markers",
            )),
        }
        for step in &plan.steps {
            match step.as_str() {
                "nvme-write" => out.extend(nvme_write(&con, plan)),
                "nvme-read" => {
                    let n = value("nvme interrupts").and_then(|n| n.trim().parse::<u64>().ok());
                    out.push(check(
                        name,
                        n.is_some_and(|n| n > 0),
                        format!(
                            "nvme-read: 16 MiB read, {} nvme interrupts in the guest",
                            n.map_or("no count of".into(), |n| n.to_string())
                        ),
                    ));
                }
                "nvme" => {
                    let sum = value("nvme nvme0n1 sha256-first-mib");
                    out.push(check(
                        name,
                        sum.is_some(),
                        format!(
                            "nvme: first MiB of nvme0n1 {}",
                            sum.map_or("not read".into(), |s| format!("read, sha256 {s}"))
                        ),
                    ));
                }
                _ => {}
            }
        }
        let done = con.contains(&linux::DONE_LINE);
        out.push(check(
            name,
            done,
            format!("init printed `{}`", linux::DONE_LINE),
        ));
    }
    if let Some((bdf, _)) = &plan.vf {
        match report::vf_interrupts_via_exits(serial, name) {
            Some(n) if plan.irq == "emulated" => out.push(check(
                name,
                true,
                format!("vf {bdf}: {n} interrupts went through exits (emulated mode)"),
            )),
            Some(n) => out.push(check(
                name,
                n == 0,
                format!("vf {bdf}: {n} interrupts went through exits (expected 0)"),
            )),
            None => out.push(check(
                name,
                false,
                format!("vf {bdf}: no `device interrupts went through exits` line"),
            )),
        }
    }
    for vcpu in 0..plan.vcpus as u32 {
        let Some(table) = report::exit_table(serial, name, vcpu) else {
            out.push(check(name, false, format!("vcpu {vcpu}: no exit table")));
            continue;
        };
        let total = table.get("total").copied().unwrap_or(0);
        let apic = report::apic_counts(serial, name, vcpu);
        let avic = report::avic_counts(serial, name, vcpu);
        let (ok, detail) = match (plan.irq.as_str(), apic, avic) {
            // AVIC accelerates EOIs; timer-register writes trap (402h), the timer is posted.
            ("avic", _, Some(a)) => (
                a.eoi == 0,
                format!(
                    ", EOI exits {}, timer-register exits {}, timer vectors posted {}",
                    a.eoi, a.timer, a.posted_timer
                ),
            ),
            // Direct: no EOI exits; the timer is the guest's, only its few LVT writes exit
            // (filtered for isolation; a Linux boot makes about 8, never one per tick).
            ("direct", Some(a), _) => (
                a.eoi == 0 && a.timer <= report::MAX_DIRECT_TIMER_LVT_EXITS,
                format!(", EOI exits {}, timer exits {}", a.eoi, a.timer),
            ),
            (_, Some(a), _) => (
                true,
                format!(", EOI exits {}, timer exits {}", a.eoi, a.timer),
            ),
            _ => (true, String::new()),
        };
        out.push(check(
            name,
            ok,
            format!("vcpu {vcpu}: exit table, {total} exits{detail}"),
        ));
    }
    let ended = format!("guest {name}: ended: ");
    match lines(serial).find_map(|l| l.strip_prefix(ended.as_str())) {
        Some(reason) => {
            let reason = reason.split(" (ran from").next().unwrap_or(reason);
            out.push(check(
                name,
                reason.starts_with("power-off request"),
                format!("ended: {reason}"),
            ));
        }
        None => out.push(check(name, false, "did not end")),
    }
    out
}

/// The `nvme-write` step: the guest compared what it read back, counted interrupts, and the
/// pattern is on the disk image.
fn nvme_write(con: &[&str], plan: &Plan) -> Vec<Check> {
    let name = plan.name.as_str();
    let mut out = Vec::new();
    let Some((bdf, disk)) = &plan.vf else {
        out.push(check(name, false, "nvme-write: the guest has no VF"));
        return out;
    };
    let ok = con.contains(&"didvisor-guest: nvme write ok");
    let said = con
        .iter()
        .find(|l| l.starts_with("didvisor-guest: nvme "))
        .map_or("no nvme line", |l| l.trim_start_matches("didvisor-guest: "));
    out.push(check(
        name,
        ok,
        if ok {
            format!(
                "nvme-write: 64 KiB `{}` pattern written through VF {bdf} and read back equal",
                plan.pattern
            )
        } else {
            format!("nvme-write through VF {bdf}: {said}")
        },
    ));
    let n = con
        .iter()
        .find_map(|l| l.strip_prefix("didvisor-guest: nvme interrupts "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    out.push(check(
        name,
        n.is_some_and(|n| n > 0),
        format!(
            "nvme-write: {} nvme interrupts in the guest",
            n.map_or("no count of".into(), |n| n.to_string())
        ),
    ));
    if let Some(disk) = disk {
        match qemu_avic::linux::check_pattern(disk, &plan.pattern) {
            Ok(()) => out.push(check(
                name,
                true,
                format!(
                    "nvme-write: the pattern is at 1 MiB of {} (host)",
                    disk.display()
                ),
            )),
            Err(e) => out.push(check(name, false, format!("nvme-write: {e}"))),
        }
    }
    out
}

/// The machine QEMU emulates for a layout, and what each guest should show.
struct Machine {
    qemu: Qemu,
    plans: Vec<Plan>,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Adjusts the layout for this run (the `--mode`, a shell at the end on a terminal), checks
/// it again and builds the QEMU machine for it.
fn machine(layout: &mut Layout, o: &Opts, interactive: bool) -> Result<Machine> {
    let cpus = layout.cpus();
    if cpus > MAX_QEMU_CPUS {
        return fail(format!(
            "the layout's machine has {cpus} CPUs: more than {MAX_QEMU_CPUS} are not worth \
             emulating here (QEMU runs every vCPU on this host's cores); boot it on its machine \
             with `cargo xtask iso --layout FILE`"
        ));
    }
    let initramfs = linux::initrd();
    let work = ::tests::target_dir().join("xtask-run");
    fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let mut plans = Vec::new();
    let mut disks_used = false;
    for g in &mut layout.guests {
        if let Some(m) = &o.mode {
            g.irq = Some(m.clone());
        }
        let self_check = g
            .initrd
            .as_deref()
            .is_some_and(|i| same_file(i, &initramfs));
        if interactive && self_check {
            g.cmdline = format!("{} didvisor.test=shell", g.cmdline.trim());
        }
        let vf = match g.vfs.first() {
            None => None,
            Some(v) => {
                let Some(index) = qemu_vf_index(v) else {
                    return fail(format!(
                        "guest {}: vfs: {v} is not a VF of the QEMU machine `run` emulates \
                         (its NVMe controller's VFs are {})",
                        g.name,
                        QEMU_VFS.join(" and ")
                    ));
                };
                disks_used = true;
                Some((
                    QEMU_VFS[index].to_string(),
                    Some(work.join(format!("ns{}.img", index + 1))),
                ))
            }
        };
        let (steps, pattern) = steps_and_pattern(&g.cmdline);
        plans.push(Plan {
            name: g.name.clone(),
            vcpus: didvisor::config::parse_cpus(&g.cores).map_or(0, |s| s.len()),
            irq: g.irq.clone().unwrap_or_else(|| "direct".into()),
            vf,
            self_check,
            steps,
            pattern,
        });
    }
    let target = Target {
        debug_exit: Some(DEBUG_EXIT_PORT),
    };
    layout.check(target)?;
    let avic = o.mode.as_deref() == Some("avic")
        || layout
            .guests
            .iter()
            .any(|g| g.irq.as_deref() == Some("avic"));
    let mut q = Qemu::new()
        .smp(cpus as u32)
        .memory_mb(layout.memory_mib()? as u32)
        .cpu(if avic { "max,+avic,+x2avic" } else { "max" })
        .boot(Boot::Multiboot1)
        .cmdline(&layout.cmdline(target));
    if avic {
        // The distribution's QEMU has no AVIC: the patched build (minutes, once).
        qemu_avic::qemu_avic(&[])?;
        q = q.binary(qemu_avic::binary());
    }
    for m in layout.modules() {
        let path = fs::canonicalize(&m.path).unwrap_or(m.path.clone());
        if path.to_string_lossy().contains(char::is_whitespace) {
            return fail(format!(
                "{}: QEMU's Multiboot loader cannot take a module path with blanks",
                path.display()
            ));
        }
        q = q.module(path, &m.name);
    }
    if disks_used {
        let disks: Vec<PathBuf> = (1..=QEMU_VFS.len())
            .map(|n| work.join(format!("ns{n}.img")))
            .collect();
        for d in &disks {
            let f = fs::File::create(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
            f.set_len(DISK_BYTES)
                .map_err(|e| format!("sizing {}: {e}", d.display()))?;
        }
        let ga = if avic { ",ga=on" } else { "" };
        q = q
            .arg("-device")
            .arg(&format!("amd-iommu,intremap=on,xtsup=on,pt=off{ga}"))
            .nvme_sriov(
                "didvisor",
                &disks.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
            );
    }
    for a in &o.extra {
        q = q.arg(a);
    }
    Ok(Machine { qemu: q, plans })
}

/// How the QEMU run ended.
struct Outcome {
    /// QEMU's exit status; None when it was killed at the timeout.
    code: Option<i32>,
    serial: String,
    elapsed: Duration,
}

/// Runs QEMU with the serial console on stdio (and on stdin when `interactive`), passing its
/// output through and keeping it; kills it after `timeout`.
fn console_run(q: &Qemu, interactive: bool, timeout: Option<Duration>) -> Result<Outcome> {
    let files = BootFiles {
        mb1_kernel: ::tests::kernel_mb1_elf(),
        iso: PathBuf::new(),
        ovmf_code: PathBuf::new(),
        ovmf_vars: PathBuf::new(),
    };
    let args = q.qemu_args(&files, SerialOut::Stdio);
    crate::banner(&format!(
        "{} {}",
        q.binary_path().display(),
        ::tests::qemu::shell_words(&args)
    ));
    let start = Instant::now();
    let mut child = Command::new(q.binary_path())
        .args(&args)
        .current_dir(::tests::repo_root())
        .stdin(if interactive {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", q.binary_path().display()))?;
    let mut out = child
        .stdout
        .take()
        .ok_or("no QEMU stdout pipe".to_string())?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    let mut serial = Vec::new();
    let stdout = std::io::stdout();
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => {
                let mut so = stdout.lock();
                let _ = so.write_all(&chunk);
                let _ = so.flush();
                serial.extend_from_slice(&chunk);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !killed && timeout.is_some_and(|t| start.elapsed() > t) {
            let _ = child.kill();
            killed = true;
        }
    }
    let _ = reader.join();
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", q.binary_path().display()))?;
    Ok(Outcome {
        code: if killed { None } else { status.code() },
        serial: String::from_utf8_lossy(&serial).into_owned(),
        elapsed: start.elapsed(),
    })
}

/// `cargo xtask run` without `--testguest`.
pub fn run(o: &Opts) -> Result {
    let path = o
        .layout
        .clone()
        .unwrap_or_else(crate::layout::default_layout);
    // The layout's own mistakes before anything is built.
    Layout::check_text(&path)?;
    crate::build_or_stage(o.prebuilt)?;
    let mut layout = Layout::load(&path)?;
    let interactive = !o.check && std::io::stdin().is_terminal();
    let m = machine(&mut layout, o, interactive)
        .map_err(|e| format!("layout {}: {}", path.display(), e.msg))?;
    println!(
        "xtask: run: layout {} ({} guest{}: {}); {}",
        path.display(),
        m.plans.len(),
        if m.plans.len() == 1 { "" } else { "s" },
        m.plans
            .iter()
            .map(|p| format!(
                "{} on {} vCPU(s), irq={}{}",
                p.name,
                p.vcpus,
                p.irq,
                p.vf.as_ref()
                    .map_or(String::new(), |v| format!(", vf {}", v.0))
            ))
            .collect::<Vec<_>>()
            .join("; "),
        if interactive {
            "a terminal: the guests open a shell after their self-check; Ctrl-] n switches \
             the keyboard to the next guest, Ctrl-] 1-9 to guest N; Ctrl-A X quits QEMU"
        } else {
            "no terminal: self-check, power-off, exit tables, verdict"
        }
    );
    let timeout =
        (!interactive).then(|| Duration::from_secs(o.timeout.unwrap_or(DEFAULT_TIMEOUT_S)));
    let outcome = console_run(&m.qemu, interactive, timeout)?;
    let log = ::tests::target_dir().join("xtask-run").join("serial.log");
    let _ = fs::write(&log, &outcome.serial);
    verdict(&m.plans, &outcome, interactive, &log)
}

/// Prints the checks and turns them and QEMU's exit into the command's result.
fn verdict(plans: &[Plan], outcome: &Outcome, interactive: bool, log: &Path) -> Result {
    let mut checks: Vec<Check> = plans
        .iter()
        .flat_map(|p| evaluate(&outcome.serial, p))
        .collect();
    let hv = match outcome.code {
        Some(33) => check(
            "didvisor",
            true,
            "all guests ended, the hypervisor ended cleanly (debug-exit 0x10)",
        ),
        Some(c) => check(
            "didvisor",
            false,
            format!("QEMU exit status {}", ::tests::describe_exit(c)),
        ),
        None => check(
            "didvisor",
            false,
            format!(
                "no result after {:.0} s: QEMU was killed (--timeout)",
                outcome.elapsed.as_secs_f64()
            ),
        ),
    };
    checks.push(hv);
    crate::banner(&format!(
        "run: checks after {:.1} s (serial log {})",
        outcome.elapsed.as_secs_f64(),
        log.display()
    ));
    let width = checks.iter().map(|c| c.guest.len()).max().unwrap_or(0);
    for c in &checks {
        println!(
            "  {:<6} {:<width$}  {}",
            if c.ok { "ok" } else { "FAILED" },
            c.guest,
            c.what
        );
    }
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    if failed.is_empty() {
        println!("xtask: run: all {} checks passed", checks.len());
        return Ok(());
    }
    if interactive && outcome.code == Some(0) {
        println!("xtask: run: QEMU was quit (Ctrl-A X) before the guests ended");
        return Ok(());
    }
    // The hypervisor's verdict (a timeout, a panic) explains the rest: name it first.
    let first = failed
        .iter()
        .find(|c| c.guest == "didvisor")
        .or(failed.first())
        .map(|c| format!("{}: {}", c.guest, c.what))
        .unwrap_or_default();
    Err(Error::from(format!(
        "run: {first}; {} of {} checks failed (listed above); serial log {}",
        failed.len(),
        checks.len(),
        log.display()
    )))
}

/// What `cargo xtask run` without a terminal must have printed for the demo layout: every
/// check passed, and the lines that show the mission (each guest's VF I/O, no exits for VF
/// interrupts, exit tables, power-off). Returns the summary line.
pub fn check_demo_output(out: &str) -> std::result::Result<String, String> {
    let out: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    let summary = out
        .iter()
        .rev()
        .find(|l| l.starts_with("xtask: run: all ") && l.ends_with(" checks passed"))
        .ok_or("no `xtask: run: all N checks passed` line")?;
    for guest in ["one", "two"] {
        for what in [
            "started on cpu",
            "kernel ",
            "nvme-write: 64 KiB",
            "nvme-write: the pattern is at 1 MiB of",
            "interrupts went through exits (expected 0)",
            "vcpu 0: exit table",
            "ended: power-off request",
        ] {
            let found = out.iter().any(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some("ok") && w.next() == Some(guest) && l.contains(what)
            });
            if !found {
                return Err(format!("no `ok {guest} ...{what}...` check line"));
            }
        }
        if !out
            .iter()
            .any(|l| l.starts_with(&format!("guest {guest}: vcpu 0 exits:")))
        {
            return Err(format!("guest {guest}'s exit table was not printed"));
        }
    }
    Ok(summary.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = Opts::parse(&s(&[
            "--layout",
            "l.toml",
            "--mode=emulated",
            "--check",
            "--timeout",
            "90",
            "--prebuilt",
            "--",
            "-s",
        ]))
        .unwrap();
        assert_eq!(
            o,
            Opts {
                layout: Some("l.toml".into()),
                mode: Some("emulated".into()),
                check: true,
                timeout: Some(90),
                prebuilt: true,
                extra: s(&["-s"]),
            }
        );
        assert_eq!(Opts::parse(&[]).unwrap(), Opts::default());
        assert!(Opts::parse(&s(&["--mode", "posted"])).is_err());
        assert!(Opts::parse(&s(&["--timeout", "0"])).is_err());
        assert!(Opts::parse(&s(&["--layout"])).is_err());
        assert!(Opts::parse(&s(&["--smp", "2"])).is_err());
    }

    #[test]
    fn steps_patterns_and_vfs() {
        assert_eq!(
            steps_and_pattern(
                "quiet didvisor.test=nvme-write,ipi didvisor.test=shell didvisor.pattern=one"
            ),
            (s(&["nvme-write", "ipi", "shell"]), "one".to_string())
        );
        assert_eq!(steps_and_pattern("quiet"), (vec![], "didvisor".to_string()));
        assert_eq!(qemu_vf_index("00:04.1"), Some(0));
        assert_eq!(qemu_vf_index("0000:00:04.2"), Some(1));
        assert_eq!(qemu_vf_index("00:04.3"), None);
        assert_eq!(qemu_vf_index("41:00.1"), None);
    }

    fn plan() -> Plan {
        Plan {
            name: "one".into(),
            vcpus: 1,
            irq: "direct".into(),
            vf: Some(("00:04.1".into(), None)),
            self_check: true,
            steps: s(&["nvme-write"]),
            pattern: "one".into(),
        }
    }

    const SERIAL: &str = "\
guest one: vcpu 0 starts on cpu 1\r
[one] didvisor-guest: kernel 6.1.0-57-amd64\r
[one] didvisor-guest: interrupts-begin\r
[one]            CPU0       \r
[one]   0:         56   IO-APIC   2-edge      timer\r
[one]  24:          3   PCI-MSIX-0000:00:01.0   0-edge      nvme0q0\r
[one] LOC:       1226   Local timer interrupts\r
[one] didvisor-guest: interrupts-end\r
[one] didvisor-guest: nvme write ok\r
[one] didvisor-guest: nvme interrupts 18\r
[one] didvisor-guest: done\r
guest one: vcpu 0 exits:\r
  exit reason                   count      cycles/exit\r
  cpuid                             4            93158\r
  total                          4346\r
  x2apic msr exits: eoi 0, timer 0, tpr 0, icr 0, self-ipi 0, other 35\r
  interrupts: 404 sent to this vcpu by the hypervisor, 0 injected at exits\r
guest one: vf 00:04.1: 0 device interrupts went through exits\r
guest one: ended: power-off request (ACPI PM1a SLP_EN) (ran from 5 us to 9 us)\r
";

    #[test]
    fn a_good_run_passes_every_check() {
        let checks = evaluate(SERIAL, &plan());
        assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
        let what: Vec<&str> = checks.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "started on cpu 1 (1 vCPU, irq=direct)",
                "kernel 6.1.0-57-amd64 ran its init",
                "/proc/interrupts: 1 CPU column(s), 1226 local timer interrupts",
                "nvme-write: 64 KiB `one` pattern written through VF 00:04.1 and read back equal",
                "nvme-write: 18 nvme interrupts in the guest",
                "init printed `didvisor-guest: done`",
                "vf 00:04.1: 0 interrupts went through exits (expected 0)",
                "vcpu 0: exit table, 4346 exits, EOI exits 0, timer exits 0",
                "ended: power-off request (ACPI PM1a SLP_EN)",
            ]
        );
    }

    fn failed(serial: &str, plan: &Plan) -> Vec<String> {
        evaluate(serial, plan)
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| c.what)
            .collect()
    }

    #[test]
    fn failures_are_named() {
        let p = plan();
        assert_eq!(
            failed(&SERIAL.replace("nvme write ok", "nvme write mismatch"), &p),
            ["nvme-write through VF 00:04.1: nvme write mismatch"]
        );
        assert_eq!(
            failed(
                &SERIAL.replace("0 device interrupts", "7 device interrupts"),
                &p
            ),
            ["vf 00:04.1: 7 interrupts went through exits (expected 0)"]
        );
        assert_eq!(
            failed(&SERIAL.replace("eoi 0, timer 0", "eoi 3, timer 0"), &p),
            ["vcpu 0: exit table, 4346 exits, EOI exits 3, timer exits 0"]
        );
        assert_eq!(
            failed(
                &SERIAL.replace("power-off request (ACPI PM1a SLP_EN)", "triple fault"),
                &p
            ),
            ["ended: triple fault"]
        );
        let cut = &SERIAL[..SERIAL.find("[one] didvisor-guest: done").unwrap()];
        assert_eq!(
            failed(cut, &p),
            [
                "init printed `didvisor-guest: done`",
                "vf 00:04.1: no `device interrupts went through exits` line",
                "vcpu 0: no exit table",
                "did not end"
            ]
        );
        let refused = "error: guest one: vf=00:04.1: no AMD-Vi IOMMU, so no DMA isolation: refusing to pass the device through; the guest does not start\n";
        assert_eq!(
            failed(refused, &p),
            [format!("did not start: {}", refused.trim_end())]
        );
        // Emulated mode: exits for VF interrupts are expected; EOI exits too.
        let emulated = Plan {
            irq: "emulated".into(),
            ..plan()
        };
        assert!(failed(
            &SERIAL
                .replace("0 device interrupts", "19 device interrupts")
                .replace("eoi 0", "eoi 500"),
            &emulated
        )
        .is_empty());
    }

    #[test]
    fn the_demo_output_check() {
        let mut out = String::new();
        for g in ["one", "two"] {
            out.push_str(&format!("guest {g}: vcpu 0 exits:\r\n"));
            for what in [
                "started on cpu 1 (1 vCPU, irq=direct)",
                "kernel 6.1.0-57-amd64 ran its init",
                "nvme-write: 64 KiB `one` pattern written through VF 00:04.1 and read back equal",
                "nvme-write: the pattern is at 1 MiB of /t/ns1.img (host)",
                "vf 00:04.1: 0 interrupts went through exits (expected 0)",
                "vcpu 0: exit table, 4346 exits, EOI exits 0, timer exits 0",
                "ended: power-off request (ACPI PM1a SLP_EN)",
            ] {
                out.push_str(&format!("  ok     {g}       {what}\n"));
            }
        }
        out.push_str("xtask: run: all 19 checks passed\n");
        assert_eq!(
            check_demo_output(&out).unwrap(),
            "xtask: run: all 19 checks passed"
        );
        assert!(check_demo_output(&out.replace("all 19 checks passed", "")).is_err());
        let e = check_demo_output(&out.replacen("ok     two", "FAILED two", 1)).unwrap_err();
        assert!(e.contains("two"), "{e}");
        assert!(check_demo_output(&out.replace("guest two: vcpu 0 exits:", "")).is_err());
    }

    #[test]
    fn the_host_side_pattern_check_reads_the_disk() {
        let dir = ::tests::target_dir().join("xtask-test-mission");
        fs::create_dir_all(&dir).unwrap();
        let disk = dir.join("ns1.img");
        let mut data = vec![0u8; 2 << 20];
        let block: Vec<u8> = (0..2048)
            .flat_map(|i| format!("one-{i}\n").into_bytes())
            .take(65536)
            .collect();
        data[1 << 20..(1 << 20) + block.len()].copy_from_slice(&block);
        fs::write(&disk, &data).unwrap();
        let p = Plan {
            vf: Some(("00:04.1".into(), Some(disk.clone()))),
            ..plan()
        };
        assert!(failed(SERIAL, &p).is_empty());
        let other = Plan {
            pattern: "two".into(),
            ..p
        };
        let f = failed(SERIAL, &other);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("does not hold the `two` block"), "{f:?}");
        let _ = fs::remove_dir_all(&dir);
    }
}
