//! `cargo xtask <command>`: build, boot and test didvisor. See `cargo xtask help`.

mod bench;
mod bench_plot;
mod bench_report;
mod fuzz_guest;
mod layers;
mod layout;
mod mission;

use std::env;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use provision::{deps, fail, linux, read, run_cmd, toolchain, Error, Result};
use tests::image::{self, Module};
use tests::{Boot, BootFiles, Qemu, SerialOut};

/// The hypervisor command line `cargo xtask run --testguest` (and a bare `cargo xtask iso`)
/// boots with.
const DEFAULT_CMDLINE: &str =
    "guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2,mem=16M,kernel=testguest";

/// QEMU runs always add QEMU's isa-debug-exit device at port 0xf4; the hypervisor
/// uses it only when told so on its command line. Prepended unless a `debug-exit=` is given.
const DEBUG_EXIT_WORD: &str = "debug-exit=0xf4";

/// The bare-metal target the hypervisor and the test guests are built for.
const TARGET: &str = "x86_64-unknown-none";

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  deps                 add the Rust targets/components rust-toolchain.toml names (rustup),
                       install missing host packages (QEMU >= 10 from bookworm-backports,
                       GRUB BIOS+EFI, xorriso, mtools, OVMF, cpio, busybox-static,
                       acpica-tools, gcc, libc6-dev), then fetch the Debian 12 guest kernel
                       (linux-image-<ver>, the release `apt-cache depends linux-image-amd64`
                       names) into the cache and stage
                       build/linux/vmlinuz, build/linux/modules/ (nvme, nvme-core, igbvf and their
                       dependencies, with modules.dep) and build/linux/VERSION
  build [--prebuilt]   deps, then build didvisor and testguest for x86_64-unknown-none and
                       write build/didvisor.elf (Multiboot2, ELF64), build/didvisor-mb1.elf
                       (Multiboot1, ELF32) and build/testguest.elf; checks the Multiboot
                       headers; then the guest initramfs build/linux/initrd.cpio.gz (busybox,
                       guest/init.sh as /init, guest/bench/didbench.c built static, the
                       modules). --prebuilt: skip deps and cargo,
                       stage the existing artefacts (and rebuild the initramfs).
  iso [--layout FILE | --cmdline S [--module PATH[=NAME]]...] [--out ISO] [--kernel ELF]
                       build, then a GRUB Multiboot2 ISO (BIOS and UEFI) booting
                       build/didvisor.elf (or ELF); NAME defaults to the file stem.
                       --layout: the layout's guests, files and command line (checked by
                       the hypervisor's parser first). Without any: the default test
                       guests and build/testguest.elf. --out defaults to build/didvisor.iso.
  run [--layout FILE] [--mode direct|emulated|avic] [--check] [--timeout SECS]
      [--prebuilt] [-- QEMU ARGS...]
                       build, then boot a guest layout (default layouts/qemu-demo.toml: the
                       Debian guest twice, each on its own core with an NVMe VF, irq=direct)
                       in QEMU with the serial console on stdio. Without a terminal on stdin
                       (or with --check) the guests run their self-check and power off, the
                       exit tables and the checks are printed, and the command exits 0 only
                       if all checks passed (--timeout, default 300 s). With a terminal the
                       guests then open a shell: Ctrl-] n / Ctrl-] 1-9 switch the keyboard
                       between guests, Ctrl-A X quits. --mode sets every guest's irq= (avic:
                       the patched QEMU of `qemu-avic`, -cpu max,+avic,+x2avic, ga=on).
  run --testguest [--cmdline S] [--smp N] [--prebuilt] [-- QEMU ARGS...]
                       the bare-metal test guests (default command line, or S; --cmdline
                       implies --testguest) with build/testguest.elf as module `testguest`;
                       exit 0 when the hypervisor reports all guests ended cleanly
                       (debug-exit 0x10), non-zero otherwise. -smp 4 by default.
  qemu-avic [smoke | delivery | kvm [MODE...]]
                       build QEMU 10.0.2 with tests/qemu-avic/*.patch (SVM AVIC/x2AVIC emulation)
                       into ~/.cache/didvisor/qemu (rebuilt only when the series changes); smoke:
                       run its bare-metal avictest, the hypervisor's CPUID check, and the
                       attack, fuzzing and delivery-checking guests in irq=avic on it;
                       delivery: the delivery-checking guest alone; kvm:
                       a Debian L1 on it runs a 2-vCPU L2 under KVM with kvm_amd avic=0
                       and avic=1 (modes 0 1; 1x: avic=1 with an xAPIC L2, not by default)
                       and prints the L2's exits (IPI and EOI exits must drop)
  bench [--quick] [--rounds N] [--config NAME,...]
                       the evaluation (docs/evaluation.md): the Debian guest with 2 vCPUs
                       booted bare in QEMU and under didvisor (emulated, direct, avic on the
                       patched QEMU; an NVMe VF passed through) runs the workloads of
                       guest/bench/ (idle, timer, ipi, cpu, nvme-rand, nvme-seq); prints a
                       table of medians over N rounds (default 3) with the spread and ratios
                       to bare, writes target/bench/report.{md,json}, exits.svg and
                       latency.svg. --quick: one round of small sizes into
                       target/bench/quick/, asserting only the interrupt-path invariants (no
                       EOI/timer exits in direct, no EOI exits in avic, an exit per interrupt
                       in emulated). --config: only these of bare, emulated, direct,
                       avic (ratios only with bare)
  linux-run [--mode direct|avic|emulated] [--smp N] [--append S] [--prebuilt]
            [--qemu PATH] [--cpu MODEL] [-- QEMU ARGS...]
                       build, then boot the hypervisor with the Debian kernel as guest `lin`
                       (modules build/linux/vmlinuz `linux`, build/linux/initrd.cpio.gz
                       `initrd`; irq=MODE, default direct; S is added to the guest's kernel
                       command line, e.g. didvisor.test=nvme). -smp 2 by default; the
                       guest gets every CPU but the service core (--smp 3: 2 vCPUs). Exit 0
                       when the guest printed `didvisor-guest: done` and the hypervisor
                       ended cleanly (debug-exit 0x10). --qemu runs another QEMU binary
                       and --cpu another -cpu model (default max); for --mode avic:
                       --qemu $(cargo xtask qemu-avic | tail -1) --cpu max,+avic,+x2avic
  linux-qemu [--smp N] [--append S] [--prebuilt] [-- QEMU ARGS...]
                       the same kernel and initramfs directly in QEMU (-kernel, -initrd,
                       -smp 1 -m 256M by default, like the guest), no hypervisor: the
                       boot-time baseline. Exit 0 when the guest printed
                       `didvisor-guest: done` and powered off. --prebuilt: skip deps.
  fuzz [--seconds N] [--actions N] [--prebuilt]
                       build, then boot the fuzzing guest (testguest fuzz=SEED, N random
                       actions, default 100000) beside a benign guest with fresh seeds,
                       direct and emulated mode by turns, for N seconds (default 300);
                       prints each seed's verdict, actions/s, and how to repeat a seed
                       that broke something (exit 1 then)
  test                 deps, build, fmt + clippy, host unit tests, the QEMU integration tests,
                       `cargo xtask run` without a terminal, the qemu-avic smoke checks,
                       `bench --quick`, then `qemu-avic kvm`
  fuzz-host [--seconds N] [TARGET...]
                       a long campaign of the host-side fuzz targets (docs/fuzzing.md): each
                       target (multiboot1, madt, ivrs, insn, elf, bzimage, cmdline, ...; all
                       by default) runs its corpus, then fresh random rounds for N seconds
                       (default 60), printing each round's PROPTEST_RNG_SEED; the bounded
                       run is part of the host unit tests
  clippy               clippy for the host workspace and for the bare-metal crates, then
                       `layers`
  layers               checks that kernel/src/hv's folders use only lower layers and that its
                       modules import each other without cycles (docs/design.md)

Layout files: layouts/*.toml (keys in xtask/src/layout.rs): [hypervisor] loglevel, console;
[machine] cpus, memory; [[guest]] name, cores, memory, kernel, initrd, cmdline, irq, vfs.

Linux guest files (for tests): build/linux/vmlinuz (unmodified bzImage),
build/linux/initrd.cpio.gz, build/linux/modules/ (laid out like /lib/modules/<ver>/),
build/linux/VERSION (like 6.1.0-56-amd64). The guest's /init is guest/init.sh; it prints
`didvisor-guest: kernel|nproc|checksum|interrupts-begin|interrupts-end|done` lines.
The kernel package is cached in $DIDVISOR_CACHE_DIR, else $XDG_CACHE_HOME/didvisor, else
~/.cache/didvisor.

environment: DIDVISOR_BUILD_DIR overrides build/, CARGO_TARGET_DIR the target directory.";

fn repo_root() -> PathBuf {
    tests::repo_root()
}

fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(repo_root());
    c
}

fn banner(s: &str) {
    println!("\n==> xtask: {s}");
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => no_args(&args[1..]).and_then(|_| deps::deps()),
        Some("build") => build_cmd(&args[1..]),
        Some("iso") => iso_cmd(&args[1..]),
        Some("run") => run_entry(&args[1..]),
        Some("linux-run") => linux_run(&args[1..]),
        Some("linux-qemu") => linux_qemu(&args[1..]),
        Some("test") => no_args(&args[1..]).and_then(|_| test()),
        Some("clippy") => no_args(&args[1..]).and_then(|_| clippy()),
        Some("layers") => no_args(&args[1..]).and_then(|_| layers::check(&repo_root())),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz_guest::fuzz(&args[1..]),
        Some("fuzz-host") => fuzz_host(&args[1..]),
        Some("qemu-avic") => qemu_avic::qemu_avic(&args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => fail(format!("unknown command `{other}`\n\n{USAGE}")),
        None => fail(USAGE),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {}", e.msg);
            ExitCode::from(e.code)
        }
    }
}

fn no_args(rest: &[String]) -> Result {
    match rest.first() {
        None => Ok(()),
        Some(a) => fail(format!("unexpected argument `{a}`\n\n{USAGE}")),
    }
}

fn build_cmd(rest: &[String]) -> Result {
    match rest {
        [] => build(),
        [p] if p == "--prebuilt" => stage_prebuilt(),
        [a, ..] => fail(format!("unexpected argument `{a}`\n\n{USAGE}")),
    }
}

/// `--prebuilt`: stage the existing images; rebuild the initramfs when the guest kernel has
/// been fetched before.
fn stage_prebuilt() -> Result {
    stage_images()?;
    if linux::version_file().is_file() {
        linux::build_initrd()?;
    } else {
        println!(
            "xtask: no {} (the Linux guest is fetched by `cargo xtask deps`): initramfs skipped",
            linux::version_file().display()
        );
    }
    Ok(())
}

/// deps, cargo build for the bare-metal target, then stage and check the images.
fn build() -> Result {
    deps::deps()?;
    banner(&format!(
        "cargo build --release --target {TARGET} -p kernel -p testguest"
    ));
    run_cmd(cargo().args([
        "build",
        "--release",
        "--target",
        TARGET,
        "-p",
        "kernel",
        "-p",
        "testguest",
    ]))?;
    stage_images()?;
    linux::build_initrd()?;
    print_artefacts();
    Ok(())
}

fn print_artefacts() {
    let version = fs::read_to_string(linux::version_file()).unwrap_or_default();
    println!("xtask: build: artefacts");
    for (p, what) in [
        (
            tests::kernel_elf(),
            "hypervisor, Multiboot2 ELF64 (GRUB)".to_string(),
        ),
        (
            tests::kernel_mb1_elf(),
            "hypervisor, Multiboot1 ELF32 (QEMU -kernel)".into(),
        ),
        (tests::testguest(), "bare-metal test guest".into()),
        (
            linux::vmlinuz(),
            format!("Debian kernel {}", version.trim()),
        ),
        (linux::initrd(), "initramfs (busybox, guest/init.sh)".into()),
        (
            linux::modules_dir().join(""),
            "nvme, igbvf and virtio modules, modules.dep".into(),
        ),
        (linux::version_file(), "guest kernel release".into()),
    ] {
        println!("  {:<40} {what}", p.display());
    }
}

fn copy(from: &Path, to: &Path) -> Result {
    fs::copy(from, to)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    Ok(())
}

/// Copies the bare-metal artefacts into build/, converts the hypervisor to ELF32 for QEMU's
/// Multiboot1 loader and checks both Multiboot headers.
fn stage_images() -> Result {
    let release = tests::target_dir().join(TARGET).join("release");
    let out = tests::build_dir();
    fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    for (name, dest) in [
        ("didvisor", tests::kernel_elf()),
        ("testguest", tests::testguest()),
    ] {
        let src = release.join(name);
        let bytes = read(&src)?;
        image::check_elf(&bytes, true).map_err(|e| format!("{}: {e}", src.display()))?;
        copy(&src, &dest)?;
    }
    let elf = tests::kernel_elf();
    let mb1 = tests::kernel_mb1_elf();
    run_cmd(
        Command::new("objcopy")
            .args(["-O", "elf32-i386"])
            .arg(&elf)
            .arg(&mb1),
    )?;
    let mb1_bytes = read(&mb1)?;
    image::check_elf(&mb1_bytes, false).map_err(|e| format!("{}: {e}", mb1.display()))?;
    let h1 = image::check_multiboot1(&mb1_bytes)
        .map_err(|e| format!("{}: {e} (QEMU -kernel cannot boot it)", mb1.display()))?;
    let h2 = image::check_multiboot2(&read(&elf)?)
        .map_err(|e| format!("{}: {e} (GRUB multiboot2 cannot boot it)", elf.display()))?;
    println!(
        "xtask: {}: Multiboot1 header at {:#x}, flags {:#x}",
        mb1.display(),
        h1.offset,
        h1.flags
    );
    println!(
        "xtask: {}: Multiboot2 header at {:#x}, {} bytes, {} tags",
        elf.display(),
        h2.offset,
        h2.header_length,
        h2.tags
    );
    println!("xtask: {}: staged", tests::testguest().display());
    Ok(())
}

/// Takes the value of `--flag VALUE` / `--flag=VALUE` at `args[*i]`.
fn flag_value(args: &[String], i: &mut usize, flag: &str) -> Result<Option<String>> {
    let a = &args[*i];
    if a == flag {
        *i += 1;
        return match args.get(*i) {
            Some(v) => Ok(Some(v.clone())),
            None => fail(format!("{flag} needs a value")),
        };
    }
    Ok(a.strip_prefix(flag)
        .and_then(|r| r.strip_prefix('='))
        .map(String::from))
}

fn iso_cmd(args: &[String]) -> Result {
    let mut cmdline = None;
    let mut modules = Vec::new();
    let mut out = None;
    let mut kernel = None;
    let mut layout = None;
    let mut i = 0;
    while i < args.len() {
        if let Some(v) = flag_value(args, &mut i, "--layout")? {
            layout = Some(PathBuf::from(v));
        } else if let Some(v) = flag_value(args, &mut i, "--cmdline")? {
            cmdline = Some(v);
        } else if let Some(v) = flag_value(args, &mut i, "--module")? {
            modules.push(Module::parse(&v)?);
        } else if let Some(v) = flag_value(args, &mut i, "--out")? {
            out = Some(PathBuf::from(v));
        } else if let Some(v) = flag_value(args, &mut i, "--kernel")? {
            kernel = Some(PathBuf::from(v));
        } else {
            return fail(format!("unexpected argument `{}`\n\n{USAGE}", args[i]));
        }
        i += 1;
    }
    if layout.is_some() && (cmdline.is_some() || !modules.is_empty()) {
        return fail(
            "iso: --layout gives the command line and the modules; drop --cmdline/--module",
        );
    }
    if let Some(path) = &layout {
        // The layout's own mistakes before anything is built.
        layout::Layout::check_text(path)?;
    }
    let kernel = match kernel {
        Some(k) => k,
        None => {
            build()?;
            tests::kernel_elf()
        }
    };
    if let Some(path) = &layout {
        let l = layout::Layout::load(path)?;
        cmdline = Some(l.cmdline(layout::Target::default()));
        modules = l
            .modules()
            .into_iter()
            .map(|m| Module::new(m.path, m.name))
            .collect();
        println!("xtask: iso: layout {}", path.display());
        for m in &modules {
            println!("  module {:<16} {}", m.name, m.path.display());
        }
        println!("  command line: {}", cmdline.as_deref().unwrap_or_default());
    }
    if cmdline.is_none() && modules.is_empty() {
        modules.push(Module::new(tests::testguest(), "testguest"));
    }
    let cmdline = cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_string());
    let h = image::check_multiboot2(&read(&kernel)?)
        .map_err(|e| format!("{}: {e}", kernel.display()))?;
    let out = out.unwrap_or_else(|| tests::build_dir().join("didvisor.iso"));
    let work = tests::target_dir().join("xtask-iso");
    banner(&format!("grub-mkrescue -o {}", out.display()));
    image::make_iso(&kernel, &cmdline, &modules, &out, &work)?;
    println!(
        "xtask: {}: Multiboot2 header at {:#x}; wrote {} (grub.cfg: {})",
        kernel.display(),
        h.offset,
        out.display(),
        work.join("iso-root/boot/grub/grub.cfg").display()
    );
    Ok(())
}

/// The command line `run` boots with: `debug-exit=0xf4` in front unless one is given.
fn run_cmdline(cmdline: &str) -> String {
    if cmdline
        .split_whitespace()
        .any(|w| w.starts_with("debug-exit="))
    {
        cmdline.to_string()
    } else {
        format!("{DEBUG_EXIT_WORD} {cmdline}")
            .trim_end()
            .to_string()
    }
}

/// The options of `run`, `linux-run` and `linux-qemu`.
#[derive(Debug, Default, PartialEq, Eq)]
struct RunOpts {
    cmdline: Option<String>,
    mode: Option<String>,
    smp: Option<u32>,
    append: Option<String>,
    /// `--qemu PATH` and `--cpu MODEL` (linux-run).
    qemu: Option<String>,
    cpu: Option<String>,
    prebuilt: bool,
    /// Arguments after `--`, passed to QEMU.
    extra: Vec<String>,
}

/// Parses the options in `allowed` (`--cmdline`, `--mode`, `--smp`, `--append`,
/// `--prebuilt`) and QEMU arguments after `--`.
fn parse_run_opts(args: &[String], allowed: &[&str]) -> Result<RunOpts> {
    let mut o = RunOpts::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            o.extra = args[i + 1..].to_vec();
            break;
        }
        if a == "--prebuilt" && allowed.contains(&"--prebuilt") {
            o.prebuilt = true;
            i += 1;
            continue;
        }
        let mut matched = false;
        for flag in [
            "--cmdline",
            "--mode",
            "--smp",
            "--append",
            "--qemu",
            "--cpu",
        ] {
            if !allowed.contains(&flag) {
                continue;
            }
            let Some(v) = flag_value(args, &mut i, flag)? else {
                continue;
            };
            matched = true;
            match flag {
                "--cmdline" => o.cmdline = Some(v),
                "--mode" => {
                    if !["direct", "avic", "emulated"].contains(&v.as_str()) {
                        return fail(format!("--mode {v}: expected direct, avic or emulated"));
                    }
                    o.mode = Some(v)
                }
                "--smp" => {
                    o.smp = Some(
                        v.parse()
                            .ok()
                            .filter(|&n| (1..=255).contains(&n))
                            .ok_or_else(|| {
                                format!("--smp {v}: expected a CPU count from 1 to 255")
                            })?,
                    )
                }
                "--qemu" => o.qemu = Some(v),
                "--cpu" => o.cpu = Some(v),
                _ => o.append = Some(v),
            }
            break;
        }
        if !matched {
            return fail(format!("unexpected argument `{a}`\n\n{USAGE}"));
        }
        i += 1;
    }
    Ok(o)
}

/// How a QEMU run with the serial console on stdio ended.
struct Console {
    status: ExitStatus,
    elapsed: Duration,
    /// When the watched line was first seen.
    seen_after: Option<Duration>,
}

/// Runs QEMU with `q`'s arguments (booting `kernel`) and the serial console on stdio, passing
/// its output through while watching for a line containing `watch`.
fn qemu_console(q: &Qemu, kernel: &Path, watch: Option<&str>) -> Result<Console> {
    let files = BootFiles {
        mb1_kernel: kernel.to_path_buf(),
        iso: PathBuf::new(),
        ovmf_code: PathBuf::new(),
        ovmf_vars: PathBuf::new(),
    };
    let qargs = q.qemu_args(&files, SerialOut::Stdio);
    banner(&format!(
        "{} {} (Ctrl-A X quits)",
        q.binary_path().display(),
        tests::qemu::shell_words(&qargs)
    ));
    let start = Instant::now();
    let mut child = Command::new(q.binary_path())
        .args(&qargs)
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", q.binary_path().display()))?;
    let mut out = child
        .stdout
        .take()
        .ok_or("no QEMU stdout pipe".to_string())?;
    let mut seen_after = None;
    let mut line: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let stdout = std::io::stdout();
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return fail(format!("reading QEMU's output: {e}")),
        };
        let mut so = stdout.lock();
        let _ = so.write_all(&buf[..n]);
        let _ = so.flush();
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < 4096 {
                    line.push(b);
                }
                continue;
            }
            if let Some(w) = watch {
                if seen_after.is_none() && String::from_utf8_lossy(&line).contains(w) {
                    seen_after = Some(start.elapsed());
                }
            }
            line.clear();
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for qemu-system-x86_64: {e}"))?;
    Ok(Console {
        status,
        elapsed: start.elapsed(),
        seen_after,
    })
}

/// The hypervisor's verdict from QEMU's exit status (isa-debug-exit: 33 clean, 35 error).
fn hypervisor_verdict(what: &str, status: ExitStatus) -> Result {
    match status.code() {
        Some(33) => Ok(()),
        Some(35) => Err(Error {
            msg: format!(
                "{what}: the hypervisor reported a panic or error (debug-exit 0x11, QEMU exit 35)"
            ),
            code: 35,
        }),
        Some(c) => Err(Error {
            msg: format!("{what}: QEMU exit status {}", tests::describe_exit(c)),
            code: u8::try_from(c).ok().filter(|&c| c != 0).unwrap_or(1),
        }),
        None => fail(format!("{what}: QEMU was killed: {status}")),
    }
}

/// Builds (or with `--prebuilt` stages) the images the hypervisor runs need.
fn build_or_stage(prebuilt: bool) -> Result {
    if prebuilt {
        stage_prebuilt()
    } else {
        build()
    }
}

/// `run`: the mission (a layout), or with `--testguest`/`--cmdline` the bare-metal test guests.
fn run_entry(args: &[String]) -> Result {
    let before_qemu_args = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let own = &args[..before_qemu_args];
    let testguest = own
        .iter()
        .any(|a| a == "--testguest" || a == "--cmdline" || a.starts_with("--cmdline="));
    if testguest {
        let rest: Vec<String> = args
            .iter()
            .enumerate()
            .filter(|(i, a)| *i >= before_qemu_args || *a != "--testguest")
            .map(|(_, a)| a.clone())
            .collect();
        return run_testguests(&rest);
    }
    mission::run(&mission::Opts::parse(args)?)
}

fn run_testguests(args: &[String]) -> Result {
    let o = parse_run_opts(args, &["--cmdline", "--smp", "--prebuilt"])?;
    build_or_stage(o.prebuilt)?;
    let cmdline = run_cmdline(o.cmdline.as_deref().unwrap_or(DEFAULT_CMDLINE));
    // Absolute paths: QEMU puts the -kernel path in front of the command line, and the
    // hypervisor recognizes it by its leading `/`.
    let mut q = Qemu::new()
        .smp(o.smp.unwrap_or(4))
        .memory_mb(1024)
        .cpu("max")
        .boot(Boot::Multiboot1)
        .cmdline(&cmdline)
        .module(tests::testguest(), "testguest");
    for a in &o.extra {
        q = q.arg(a);
    }
    let c = qemu_console(&q, &tests::kernel_mb1_elf(), None)?;
    hypervisor_verdict("run", c.status)?;
    println!("xtask: run: all guests ended cleanly (debug-exit 0x10)");
    Ok(())
}

fn report_linux_boot(what: &str, c: &Console) {
    match c.seen_after {
        Some(t) => println!(
            "xtask: {what}: `{}` after {:.1} s; QEMU exited ({}) after {:.1} s",
            linux::DONE_LINE,
            t.as_secs_f64(),
            c.status,
            c.elapsed.as_secs_f64()
        ),
        None => println!(
            "xtask: {what}: QEMU exited ({}) after {:.1} s without `{}`",
            c.status,
            c.elapsed.as_secs_f64(),
            linux::DONE_LINE
        ),
    }
}

/// `linux-run`: the Debian kernel as a guest of the hypervisor.
fn linux_run(args: &[String]) -> Result {
    let o = parse_run_opts(
        args,
        &[
            "--mode",
            "--smp",
            "--append",
            "--prebuilt",
            "--qemu",
            "--cpu",
        ],
    )?;
    build_or_stage(o.prebuilt)?;
    let smp = o.smp.unwrap_or(2);
    // One vCPU per QEMU CPU but the service core's.
    let cores = if smp > 2 {
        format!("cores=1-{},", smp - 1)
    } else {
        "cores=1,".to_string()
    };
    let spec = linux::guest_spec(
        o.mode.as_deref().unwrap_or("direct"),
        o.append.as_deref().unwrap_or(""),
    )
    .replacen("cores=1,", &cores, 1);
    let mut q = Qemu::new()
        .binary(o.qemu.as_deref().unwrap_or("qemu-system-x86_64"))
        .smp(smp)
        .memory_mb(1024)
        .cpu(o.cpu.as_deref().unwrap_or("max"))
        .boot(Boot::Multiboot1)
        .cmdline(&run_cmdline(&spec))
        .module(linux::vmlinuz(), linux::KERNEL_MODULE_NAME)
        .module(linux::initrd(), linux::INITRD_MODULE_NAME);
    for a in &o.extra {
        q = q.arg(a);
    }
    let c = qemu_console(&q, &tests::kernel_mb1_elf(), Some(linux::DONE_LINE))?;
    report_linux_boot("linux-run", &c);
    hypervisor_verdict("linux-run", c.status)?;
    if c.seen_after.is_none() {
        return fail(format!(
            "linux-run: the hypervisor ended cleanly but the guest never printed `{}`",
            linux::DONE_LINE
        ));
    }
    Ok(())
}

/// `linux-qemu`: the same kernel and initramfs directly in QEMU, the boot-time baseline.
fn linux_qemu(args: &[String]) -> Result {
    let o = parse_run_opts(args, &["--smp", "--append", "--prebuilt"])?;
    if !o.prebuilt {
        deps::deps()?;
    }
    linux::build_initrd()?;
    // The guest's shape under the hypervisor: one core, 256 MiB. QEMU's Multiboot1 path
    // gives `-kernel` and `-append`; the initramfs is the one -initrd file.
    let mut q = Qemu::new()
        .smp(o.smp.unwrap_or(1))
        .memory_mb(256)
        .cpu("max")
        .boot(Boot::Multiboot1)
        .cmdline(&linux::guest_cmdline(o.append.as_deref().unwrap_or("")))
        .arg("-initrd")
        .arg(&linux::initrd().display().to_string());
    for a in &o.extra {
        q = q.arg(a);
    }
    let c = qemu_console(&q, &linux::vmlinuz(), Some(linux::DONE_LINE))?;
    report_linux_boot("linux-qemu", &c);
    match (c.status.code(), c.seen_after) {
        (Some(0), Some(_)) => Ok(()),
        (Some(0), None) => fail(format!(
            "linux-qemu: QEMU ended (guest poweroff, or a panic with -no-reboot) without `{}`",
            linux::DONE_LINE
        )),
        _ => fail(format!("linux-qemu: QEMU exit status {}", c.status)),
    }
}

fn test() -> Result {
    banner("test [1/9]: set-up (Rust target and components, host packages, guest kernel)");
    if env::var_os("CI").is_some() {
        // CI proves the path a fresh machine takes: the target missing, the set-up adding it.
        toolchain::check_setup_path(TARGET)?;
    } else {
        println!("xtask: set-up check (remove and reinstall {TARGET}) runs under CI=true only");
    }
    deps::deps()?;
    banner("test [2/9]: boot images");
    build()?;
    banner("test [3/9]: formatting and lints (cargo fmt --check, cargo xtask clippy)");
    run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;
    clippy()?;
    banner("test [4/9]: host unit tests (cargo test --workspace --exclude tests)");
    run_cmd(cargo().args(["test", "--workspace", "--exclude", "tests"]))?;
    banner("test [5/9]: QEMU integration tests (cargo test -p tests -- --test-threads=1)");
    // All test binaries run even when one fails, so a CI log shows every failure at once.
    run_cmd(cargo().args([
        "test",
        "-p",
        "tests",
        "--no-fail-fast",
        "--",
        "--test-threads=1",
    ]))?;
    banner("test [6/9]: the main command without a terminal, and a server layout's GRUB image");
    run_without_terminal()?;
    iso_cmd(&[
        "--layout".into(),
        layout::examples_dir()
            .join("epyc-2s.toml")
            .display()
            .to_string(),
        "--kernel".into(),
        tests::kernel_elf().display().to_string(),
        "--out".into(),
        tests::target_dir()
            .join("xtask-iso")
            .join("epyc-2s.iso")
            .display()
            .to_string(),
    ])?;
    // The patched QEMU is built once per patch series (about 8 minutes on 2 cores) and cached.
    banner("test [7/9]: QEMU AVIC emulation (cargo xtask qemu-avic smoke)");
    qemu_avic::qemu_avic(&["smoke".to_string()])?;
    // About 3 minutes: one round of the evaluation's workloads in bare, emulated, direct and avic
    // (after step 7, which built the patched QEMU the avic column needs); invariants only.
    banner("test [8/9]: the evaluation's interrupt-path invariants (cargo xtask bench --quick)");
    bench::bench(&["--quick".to_string()])?;
    // About 75 s: Linux KVM (kvm_amd avic=0, then avic=1) in an L1 on the patched QEMU.
    banner("test [9/9]: Linux KVM's AVIC on the patched QEMU (cargo xtask qemu-avic kvm)");
    qemu_avic::qemu_avic(&["kvm".to_string()])?;
    banner("test: all passed");
    Ok(())
}

/// `cargo xtask run` as CI and scripts use it: stdin not a terminal. It must exit 0 and print
/// the demo's checks (`mission::check_demo_output`). Its output is passed through.
fn run_without_terminal() -> Result {
    let mut c = cargo();
    c.args(["xtask", "run", "--prebuilt"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let shown = "cargo xtask run --prebuilt </dev/null";
    let mut child = c.spawn().map_err(|e| format!("cannot run {shown}: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout pipe".to_string())?;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut so = std::io::stdout().lock();
                let _ = so.write_all(&buf[..n]);
                let _ = so.flush();
                text.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return fail(format!("reading the output of {shown}: {e}")),
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {shown}: {e}"))?;
    if !status.success() {
        return fail(format!("{shown} failed: {status}"));
    }
    let summary = mission::check_demo_output(&String::from_utf8_lossy(&text))
        .map_err(|e| format!("{shown} exited 0 but its output is not the demo's: {e}"))?;
    println!("xtask: test: {shown}: exit 0, {summary}");
    Ok(())
}

/// The crates with host fuzz targets (`tests/fuzz.rs` each).
const FUZZ_CRATES: &[&str] = &[
    "boot", "firmware", "iommu", "insn", "guestfw", "igb", "kernel", "virtio",
];

/// `cargo xtask fuzz-host [--seconds N] [TARGET...]`: the fuzz tests with HOSTFUZZ_SECONDS=N.
fn fuzz_host(args: &[String]) -> Result {
    let (seconds, filters) = parse_fuzz_host_args(args)?;
    let mut c = cargo();
    c.args(["test"]);
    for krate in FUZZ_CRATES {
        c.args(["-p", krate]);
    }
    c.args(["--test", "fuzz", "--", "--nocapture"]);
    c.args(filters);
    c.env("HOSTFUZZ_SECONDS", seconds.to_string());
    banner(&format!("fuzz-host: {seconds} s per target"));
    run_cmd(&mut c)
}

/// `--seconds N` (default 60) and the test-name filters (`madt` becomes `fuzz_madt`).
fn parse_fuzz_host_args(args: &[String]) -> Result<(u64, Vec<String>)> {
    let mut seconds = 60;
    let mut filters = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if let Some(v) = flag_value(args, &mut i, "--seconds")? {
            seconds = v
                .parse()
                .map_err(|_| format!("--seconds {v}: expected a number of seconds"))?;
        } else if args[i].starts_with('-') {
            return fail(format!("unexpected argument `{}`\n\n{USAGE}", args[i]));
        } else {
            filters.push(format!("fuzz_{}", args[i].replace('-', "_")));
        }
        i += 1;
    }
    Ok((seconds, filters))
}

fn clippy() -> Result {
    banner("clippy: host workspace");
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    banner(&format!("clippy: kernel and testguest for {TARGET}"));
    run_cmd(cargo().args([
        "clippy",
        "--release",
        "--target",
        TARGET,
        "-p",
        "kernel",
        "-p",
        "testguest",
        "--",
        "-D",
        "warnings",
    ]))?;
    layers::check(&repo_root())
}

#[cfg(test)]
mod tests_ {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flag_values() {
        let a = s(&["--cmdline", "x y", "--module=a.elf=b", "--out"]);
        let mut i = 0;
        assert_eq!(
            flag_value(&a, &mut i, "--cmdline").unwrap(),
            Some("x y".into())
        );
        assert_eq!(i, 1);
        i = 2;
        assert_eq!(flag_value(&a, &mut i, "--cmdline").unwrap(), None);
        assert_eq!(
            flag_value(&a, &mut i, "--module").unwrap(),
            Some("a.elf=b".into())
        );
        i = 3;
        assert!(flag_value(&a, &mut i, "--out").is_err());
    }

    #[test]
    fn fuzz_host_args() {
        assert_eq!(parse_fuzz_host_args(&[]).unwrap(), (60, vec![]));
        assert_eq!(
            parse_fuzz_host_args(&s(&["--seconds", "600", "madt", "multiboot2-well-formed"]))
                .unwrap(),
            (600, s(&["fuzz_madt", "fuzz_multiboot2_well_formed"]))
        );
        assert_eq!(parse_fuzz_host_args(&s(&["--seconds=5"])).unwrap().0, 5);
        assert!(parse_fuzz_host_args(&s(&["--seconds", "x"])).is_err());
        assert!(parse_fuzz_host_args(&s(&["--cases", "5"])).is_err());
    }

    #[test]
    fn default_cmdline_names_the_test_guest() {
        assert_eq!(DEFAULT_CMDLINE.matches("kernel=testguest").count(), 2);
    }

    #[test]
    fn run_options() {
        let all = ["--cmdline", "--mode", "--smp", "--append", "--prebuilt"];
        let o = parse_run_opts(
            &s(&[
                "--mode=emulated",
                "--smp",
                "3",
                "--append",
                "didvisor.test=nvme",
                "--prebuilt",
                "--",
                "-s",
                "--smp",
            ]),
            &all,
        )
        .unwrap();
        assert_eq!(
            o,
            RunOpts {
                cmdline: None,
                mode: Some("emulated".into()),
                smp: Some(3),
                append: Some("didvisor.test=nvme".into()),
                qemu: None,
                cpu: None,
                prebuilt: true,
                extra: s(&["-s", "--smp"]),
            }
        );
        let o = parse_run_opts(
            &s(&["--qemu", "/q/qemu", "--cpu", "max,+avic,+x2avic"]),
            &["--qemu", "--cpu"],
        )
        .unwrap();
        assert_eq!(
            (o.qemu.as_deref(), o.cpu.as_deref()),
            (Some("/q/qemu"), Some("max,+avic,+x2avic"))
        );
        assert!(parse_run_opts(&s(&["--qemu", "/q"]), &["--smp"]).is_err());
        assert_eq!(parse_run_opts(&[], &all).unwrap(), RunOpts::default());
        assert!(parse_run_opts(&s(&["--mode", "posted"]), &all).is_err());
        assert!(parse_run_opts(&s(&["--smp", "0"]), &all).is_err());
        assert!(parse_run_opts(&s(&["--smp"]), &all).is_err());
        // Options a command does not take are refused.
        assert!(parse_run_opts(&s(&["--mode", "direct"]), &["--smp"]).is_err());
        assert!(parse_run_opts(&s(&["--prebuilt"]), &["--smp"]).is_err());
        assert_eq!(
            parse_run_opts(&s(&["--cmdline", "guest=x"]), &["--cmdline"])
                .unwrap()
                .cmdline
                .as_deref(),
            Some("guest=x")
        );
    }

    #[test]
    fn run_cmdline_enables_debug_exit_once() {
        assert_eq!(
            run_cmdline(DEFAULT_CMDLINE),
            format!("debug-exit=0xf4 {DEFAULT_CMDLINE}")
        );
        assert_eq!(run_cmdline(""), "debug-exit=0xf4");
        assert_eq!(run_cmdline("debug-exit=0x501 x"), "debug-exit=0x501 x");
    }
}
