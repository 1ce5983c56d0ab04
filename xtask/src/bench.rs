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

const CONFIGS: [Config; 3] = [
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
];

struct Sample {
    to_init: Duration,
    to_end: Duration,
    /// Total exits of vCPU 0 and its EOI + timer x2APIC MSR exits (didvisor runs only).
    exits: Option<(u64, u64)>,
}

pub fn bench(args: &[String]) -> Result {
    if !args.is_empty() {
        return fail(format!("bench takes no arguments (got {args:?})"));
    }
    deps::deps()?;
    build()?;
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

/// The VF I/O comparison: the same guest reads 16 MiB from its passed-through NVMe VF in `direct`
/// and in `emulated` mode; the table shows how many of the device's interrupts cost an exit.
fn vf_io(work: &Path) -> Result {
    println!();
    println!("Debian guest reading 16 MiB in 4 KiB blocks from its NVMe VF (AMD-Vi on), 1 vCPU");
    println!();
    println!("| mode | nvme interrupts (guest) | of them through exits | intr exits | EOI exits | all exits (vcpu 0) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for irq in ["direct", "emulated"] {
        let disk = work.join("vf-io.img");
        let f = fs::File::create(&disk).map_err(|e| format!("{}: {e}", disk.display()))?;
        f.set_len(64 << 20)
            .map_err(|e| format!("{}: {e}", disk.display()))?;
        let guest = format!(
            "debug-exit=0xf4 guest=lin,cores=1,mem=256M,kernel={},initrd={},irq={irq},vf=00:04.1,cmdline=\"{GUEST_CMDLINE} didvisor.test=nvme-read\"",
            linux::KERNEL_MODULE_NAME,
            linux::INITRD_MODULE_NAME
        );
        let q = Qemu::new()
            .smp(2)
            .memory_mb(1024)
            .boot(Boot::Multiboot1)
            .cmdline(&guest)
            .module(linux::vmlinuz(), linux::KERNEL_MODULE_NAME)
            .module(linux::initrd(), linux::INITRD_MODULE_NAME)
            .arg("-device")
            .arg("amd-iommu,intremap=on,xtsup=on,pt=off")
            .arg("-drive")
            .arg(&format!("file={},if=none,id=d0,format=raw", disk.display()))
            .arg("-device")
            .arg("nvme-subsys,id=subsys0")
            .arg("-device")
            .arg("nvme,serial=bench,subsys=subsys0,sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2,max_ioqpairs=6,msix_qsize=4")
            .arg("-device")
            .arg("nvme-ns,drive=d0,nsid=1,shared=false,detached=true");
        let log = work.join(format!("vf-io-{irq}.log"));
        let files = BootFiles {
            mb1_kernel: tests::kernel_mb1_elf(),
            iso: PathBuf::new(),
            ovmf_code: PathBuf::new(),
            ovmf_vars: PathBuf::new(),
        };
        let _ = fs::remove_file(&log);
        let status = Command::new("qemu-system-x86_64")
            .args(q.qemu_args(&files, SerialOut::File(&log)))
            .current_dir(tests::repo_root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run qemu-system-x86_64: {e}"))?;
        let serial = fs::read_to_string(&log).unwrap_or_default();
        let number_after = |prefix: &str| -> Option<u64> {
            serial
                .lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        };
        let guest_irqs = number_after("[lin] didvisor-guest: nvme interrupts ")
            .ok_or_else(|| format!("vf io ({irq}): the guest did not report its nvme interrupts (status {status}); log {}", log.display()))?;
        let via_exits = serial
            .lines()
            .find(|l| l.ends_with("device interrupts went through exits"))
            .and_then(|l| l.rsplit(": ").next())
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let (total, _) = parse_exits(&serial)?;
        let intr = number_after("intr").unwrap_or(0);
        println!(
            "| {irq} | {guest_irqs} | {via_exits} | {intr} | {} | {total} |",
            eoi_exits(&serial)
        );
    }
    Ok(())
}

/// vCPU 0's EOI MSR exits.
fn eoi_exits(serial: &str) -> u64 {
    serial
        .lines()
        .find_map(|l| l.trim().strip_prefix("x2apic msr exits: eoi "))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
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
            let q = Qemu::new()
                .smp(2)
                .memory_mb(1024)
                .boot(Boot::Multiboot1)
                .cmdline(&guest)
                .module(linux::vmlinuz(), linux::KERNEL_MODULE_NAME)
                .module(linux::initrd(), linux::INITRD_MODULE_NAME);
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
    let mut child = Command::new("qemu-system-x86_64")
        .args(&args)
        .current_dir(tests::repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run qemu-system-x86_64: {e}"))?;
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
    let exits = c.irq.map(|_| parse_exits(&serial)).transpose()?;
    Ok(Sample {
        to_init,
        to_end,
        exits,
    })
}

/// vCPU 0's `total` exits and its EOI + timer MSR exits, from the hypervisor's report.
fn parse_exits(serial: &str) -> Result<(u64, u64)> {
    let mut lines = serial
        .lines()
        .skip_while(|l| !l.starts_with("guest lin: vcpu 0 exits:"));
    let total = lines
        .find_map(|l| l.trim_start().strip_prefix("total"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "no exit total in the hypervisor's report".to_string())?;
    let apic = lines
        .find(|l| l.contains("x2apic msr exits:"))
        .ok_or_else(|| "no x2apic exit line".to_string())?;
    let field = |key: &str| -> u64 {
        apic.split(", ")
            .find_map(|p| {
                p.trim()
                    .trim_start_matches("x2apic msr exits: ")
                    .strip_prefix(key)
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((total, field("eoi ") + field("timer ")))
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
}
