//! `cargo xtask bench`: the same Debian kernel and initramfs booted directly by QEMU and as a
//! didvisor guest in each interrupt mode, in one run, timed to the first line of the guest's init
//! and to its power-off, with the hypervisor's exit counts; printed as a table. Timing under QEMU
//! TCG says how much the hypervisor adds on this machine, not what hardware would do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{build, deps, fail, linux, Result};
use tests::{Boot, BootFiles, Qemu, SerialOut};

/// The init script's first line: the guest reached userspace.
const INIT_LINE: &str = "didvisor-guest: kernel";
const ROUNDS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(300);
/// The guest's kernel command line in every configuration (no boot log: it would be timed too).
const GUEST_CMDLINE: &str = "console=ttyS0 quiet";

/// One measured configuration.
struct Config {
    name: &'static str,
    /// `None`: plain QEMU; `Some(mode)`: a didvisor guest with `irq=mode`.
    irq: Option<&'static str>,
}

/// The CPU model of the `avic` row: the patched QEMU of `tests/qemu-avic/` (no other QEMU or
/// reachable machine emulates AVIC).
const AVIC_CPU: &str = "max,+avic,+x2avic";

const CONFIGS: [Config; 4] = [
    Config {
        name: "qemu (no hypervisor)",
        irq: None,
    },
    Config {
        name: "didvisor direct",
        irq: Some("direct"),
    },
    Config {
        name: "didvisor emulated",
        irq: Some("emulated"),
    },
    Config {
        name: "didvisor avic ¹",
        irq: Some("avic"),
    },
];

struct Sample {
    to_init: Duration,
    to_end: Duration,
    /// Total exits of vCPU 0 and its exits for EOIs and the timer (didvisor runs only): x2APIC
    /// EOI and timer MSR exits, INTR exits in `avic` (none expected) plus its 402h exits for
    /// EOIs and timer-register writes.
    exits: Option<(u64, u64)>,
}

pub fn bench(args: &[String]) -> Result {
    if !args.is_empty() {
        return fail(format!("bench takes no arguments (got {args:?})"));
    }
    deps::deps()?;
    build()?;
    // The `avic` row needs the patched QEMU (built once, about 8 minutes; cached).
    crate::qemu_avic::qemu_avic(&[])?;
    let work = tests::target_dir().join("bench");
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let mut results: Vec<Vec<Sample>> = CONFIGS.iter().map(|_| Vec::new()).collect();
    // Interleave the configurations so a slow phase of the machine hits all of them alike.
    for round in 0..ROUNDS {
        for (i, c) in CONFIGS.iter().enumerate() {
            eprintln!("xtask: bench round {}/{ROUNDS}: {}", round + 1, c.name);
            let log = work.join(format!("{}-{round}.log", c.irq.unwrap_or("qemu")));
            results[i].push(measure(c, &log)?);
        }
    }
    print_table(&results);
    vf_io(&work)?;
    Ok(())
}

/// The VF I/O comparison: the same guest reads 16 MiB from its passed-through NVMe VF in `direct`,
/// `emulated` and `avic` mode (the last on the patched QEMU with `amd-iommu,...,ga=on`: the
/// IOMMU posts the VF's MSI-X into the vAPIC backing page); the table shows how many of the
/// device's interrupts cost an exit.
fn vf_io(work: &Path) -> Result {
    println!();
    println!("Debian guest reading 16 MiB in 4 KiB blocks from its NVMe VF (AMD-Vi on), 1 vCPU");
    println!();
    println!("| mode | nvme interrupts (guest) | of them through exits | intr exits | EOI exits | all exits (vcpu 0) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for irq in ["direct", "emulated", "avic"] {
        let disk = work.join("vf-io.img");
        let f = fs::File::create(&disk).map_err(|e| format!("{}: {e}", disk.display()))?;
        f.set_len(64 << 20)
            .map_err(|e| format!("{}: {e}", disk.display()))?;
        let guest = format!(
            "debug-exit=0xf4 guest=lin,cores=1,mem=256M,kernel={},initrd={},irq={irq},vf=00:04.1,cmdline=\"{GUEST_CMDLINE} didvisor.test=nvme-read\"",
            linux::KERNEL_MODULE_NAME,
            linux::INITRD_MODULE_NAME
        );
        // avic: the patched QEMU, whose AMD-Vi posts into the vAPIC backing page with ga=on.
        let (iommu, mut q) = match irq {
            "avic" => (
                "amd-iommu,intremap=on,xtsup=on,pt=off,ga=on",
                Qemu::new().binary(crate::qemu_avic::binary()).cpu(AVIC_CPU),
            ),
            _ => ("amd-iommu,intremap=on,xtsup=on,pt=off", Qemu::new()),
        };
        q = q
            .smp(2)
            .memory_mb(1024)
            .boot(Boot::Multiboot1)
            .cmdline(&guest)
            .module(linux::vmlinuz(), linux::KERNEL_MODULE_NAME)
            .module(linux::initrd(), linux::INITRD_MODULE_NAME)
            .arg("-device")
            .arg(iommu)
            .nvme_sriov("bench", &[&disk]);
        let run = q
            .timeout(TIMEOUT)
            .run_unchecked(&format!("bench-vf-io-{irq}"));
        let serial = &run.serial;
        let report = |what: &str| format!("vf io ({irq}): {what}; log {}", run.log_path.display());
        let guest_irqs: u64 = serial
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("[lin] didvisor-guest: nvme interrupts ")
            })
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| report("the guest did not report its nvme interrupts"))?;
        let via_exits = tests::report::vf_interrupts_via_exits(serial, "lin")
            .ok_or_else(|| report("no vf line"))?;
        let table =
            tests::report::exit_table(serial, "lin", 0).ok_or_else(|| report("no exit table"))?;
        let apic =
            tests::report::apic_counts(serial, "lin", 0).ok_or_else(|| report("no x2apic line"))?;
        let mut eoi = apic.eoi;
        if irq == "avic" {
            eoi += tests::report::avic_counts(serial, "lin", 0)
                .ok_or_else(|| report("no avic line"))?
                .eoi;
        }
        let exits = |reason: &str| table.get(reason).copied().unwrap_or(0);
        println!(
            "| {irq} | {guest_irqs} | {via_exits} | {} | {eoi} | {} |",
            exits("intr"),
            exits("total")
        );
    }
    Ok(())
}

fn qemu_for(c: &Config) -> (Qemu, PathBuf) {
    match c.irq {
        None => {
            let q = Qemu::new()
                .smp(1)
                .memory_mb(256)
                .boot(Boot::Multiboot1)
                .cmdline(GUEST_CMDLINE)
                .arg("-initrd")
                .arg(&linux::initrd().display().to_string());
            (q, linux::vmlinuz())
        }
        Some(irq) => {
            let guest = format!(
                "debug-exit=0xf4 guest=lin,cores=1,mem=256M,kernel={},initrd={},irq={irq},cmdline=\"{GUEST_CMDLINE}\"",
                linux::KERNEL_MODULE_NAME,
                linux::INITRD_MODULE_NAME
            );
            let mut q = Qemu::new()
                .smp(2)
                .memory_mb(1024)
                .boot(Boot::Multiboot1)
                .cmdline(&guest)
                .module(linux::vmlinuz(), linux::KERNEL_MODULE_NAME)
                .module(linux::initrd(), linux::INITRD_MODULE_NAME);
            if irq == "avic" {
                q = q.binary(crate::qemu_avic::binary()).cpu(AVIC_CPU);
            }
            (q, tests::kernel_mb1_elf())
        }
    }
}

fn measure(c: &Config, log: &Path) -> Result<Sample> {
    let (q, kernel) = qemu_for(c);
    let files = BootFiles {
        mb1_kernel: kernel,
        iso: PathBuf::new(),
        ovmf_code: PathBuf::new(),
        ovmf_vars: PathBuf::new(),
    };
    let _ = fs::remove_file(log);
    let args = q.qemu_args(&files, SerialOut::File(log));
    let start = Instant::now();
    let mut child = Command::new(q.binary_path())
        .args(&args)
        .current_dir(tests::repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", q.binary_path().display()))?;
    let mut to_init = None;
    let status = loop {
        if to_init.is_none() && fs::read_to_string(log).is_ok_and(|s| s.contains(INIT_LINE)) {
            to_init = Some(start.elapsed());
        }
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for QEMU: {e}"))?
        {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            return fail(format!(
                "{}: no end after {TIMEOUT:?}; log {}",
                c.name,
                log.display()
            ));
        }
        thread::sleep(Duration::from_millis(10));
    };
    let to_end = start.elapsed();
    let serial = fs::read_to_string(log).unwrap_or_default();
    let to_init = to_init
        .or_else(|| serial.contains(INIT_LINE).then_some(to_end))
        .ok_or_else(|| {
            format!(
                "{}: the guest never reached init (status {status}); log {}",
                c.name,
                log.display()
            )
        })?;
    let exits = c.irq.map(|irq| parse_exits(&serial, irq)).transpose()?;
    Ok(Sample {
        to_init,
        to_end,
        exits,
    })
}

/// vCPU 0's `total` exits and its exits for EOIs and the timer (see [`Sample::exits`]), from
/// the hypervisor's report.
fn parse_exits(serial: &str, irq: &str) -> Result<(u64, u64)> {
    let table = tests::report::exit_table(serial, "lin", 0)
        .ok_or_else(|| "no exit table in the hypervisor's report".to_string())?;
    let total = table
        .get("total")
        .copied()
        .ok_or_else(|| "no exit total in the hypervisor's report".to_string())?;
    let apic = tests::report::apic_counts(serial, "lin", 0)
        .ok_or_else(|| "no x2apic exit line".to_string())?;
    let mut eoi_timer = apic.eoi + apic.timer;
    if irq == "avic" {
        let avic = tests::report::avic_counts(serial, "lin", 0)
            .ok_or_else(|| "no avic line in the hypervisor's report".to_string())?;
        eoi_timer += avic.eoi + avic.timer + table.get("intr").copied().unwrap_or(0);
    }
    Ok((total, eoi_timer))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn print_table(results: &[Vec<Sample>]) {
    let base = median(results[0].iter().map(|s| s.to_init).collect());
    println!();
    println!("Debian kernel + busybox initramfs, 1 vCPU, 256 MiB; median of {ROUNDS} runs (QEMU TCG on this host)");
    println!();
    println!("| configuration | to init (s) | ratio to qemu | to power-off (s) | exits (vcpu 0) | EOI + timer exits |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (c, samples) in CONFIGS.iter().zip(results) {
        let init = median(samples.iter().map(|s| s.to_init).collect());
        let end = median(samples.iter().map(|s| s.to_end).collect());
        let (exits, apic) = match samples[samples.len() / 2].exits {
            Some((t, a)) => (t.to_string(), a.to_string()),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {exits} | {apic} |",
            c.name,
            init.as_secs_f64(),
            init.as_secs_f64() / base.as_secs_f64(),
            end.as_secs_f64()
        );
    }
    println!();
    println!(
        "¹ on the patched QEMU of tests/qemu-avic with -cpu {AVIC_CPU} (the other rows: the \
         distribution's QEMU, -cpu max); its EOI + timer column counts 402h exits for EOIs and \
         timer-register writes and INTR exits (delivery itself is posted, without exits)"
    );
}
