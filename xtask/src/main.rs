//! `cargo xtask <command>`: build, boot and test didvisor. See `cargo xtask help`.

mod deps;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use tests::image::{self, Module};
use tests::{Boot, BootFiles, Qemu, SerialOut};

/// The hypervisor command line `cargo xtask run` (and a bare `cargo xtask iso`) boots with.
const DEFAULT_CMDLINE: &str =
    "guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2,mem=16M,kernel=testguest";

/// `cargo xtask run` always adds QEMU's isa-debug-exit device at port 0xf4; the hypervisor
/// uses it only when told so on its command line. Prepended unless a `debug-exit=` is given.
const DEBUG_EXIT_WORD: &str = "debug-exit=0xf4";

/// The bare-metal target the hypervisor and the test guests are built for.
const TARGET: &str = "x86_64-unknown-none";

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  deps                 install missing host packages (QEMU >= 10 from bookworm-backports,
                       GRUB BIOS+EFI, xorriso, mtools, OVMF, cpio, busybox-static)
  build [--prebuilt]   deps, then build didvisor and testguest for x86_64-unknown-none and
                       write build/didvisor.elf (Multiboot2, ELF64), build/didvisor-mb1.elf
                       (Multiboot1, ELF32) and build/testguest.elf; checks the Multiboot
                       headers. --prebuilt: skip cargo, stage the existing artefacts.
  iso [--cmdline S] [--module PATH[=NAME]]... [--out ISO] [--kernel ELF]
                       build, then a GRUB Multiboot2 ISO (BIOS and UEFI) booting
                       build/didvisor.elf (or ELF); NAME defaults to the file stem.
                       Without --cmdline and --module: the default guests and
                       build/testguest.elf. --out defaults to build/didvisor.iso.
  run [--cmdline S] [--prebuilt] [-- QEMU ARGS...]
                       build, then boot build/didvisor-mb1.elf in QEMU (serial on stdio)
                       with the default guests (or S) and build/testguest.elf as module
                       `testguest`; exit 0 when the hypervisor reports all guests ended
                       cleanly (debug-exit 0x10), non-zero otherwise
  test                 deps, build, host unit tests, then the QEMU integration tests
  clippy               clippy for the host workspace and for the bare-metal crates

environment: DIDVISOR_BUILD_DIR overrides build/, CARGO_TARGET_DIR the target directory.";

/// A failure: the message, and the exit status xtask ends with.
#[derive(Debug)]
pub struct Error {
    pub msg: String,
    pub code: u8,
}

impl From<String> for Error {
    fn from(msg: String) -> Error {
        Error { msg, code: 1 }
    }
}

pub type Result<T = ()> = std::result::Result<T, Error>;

pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::from(msg.into()))
}

/// Runs a command with inherited stdio; a failure carries the command's exit status.
pub fn run_cmd(c: &mut Command) -> Result {
    let shown = format!("{c:?}");
    let status = c.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    Err(Error {
        msg: format!("{shown} failed: {status}"),
        code: status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .filter(|&c| c != 0)
            .unwrap_or(1),
    })
}

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
        Some("run") => run_cmd_qemu(&args[1..]),
        Some("test") => no_args(&args[1..]).and_then(|_| test()),
        Some("clippy") => no_args(&args[1..]).and_then(|_| clippy()),
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
        [p] if p == "--prebuilt" => stage_images(),
        [a, ..] => fail(format!("unexpected argument `{a}`\n\n{USAGE}")),
    }
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
    stage_images()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    Ok(fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?)
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
    let mut i = 0;
    while i < args.len() {
        if let Some(v) = flag_value(args, &mut i, "--cmdline")? {
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
    let kernel = match kernel {
        Some(k) => k,
        None => {
            build()?;
            tests::kernel_elf()
        }
    };
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

fn run_cmd_qemu(args: &[String]) -> Result {
    let mut cmdline = DEFAULT_CMDLINE.to_string();
    let mut extra: &[String] = &[];
    let mut prebuilt = false;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--" {
            extra = &args[i + 1..];
            break;
        }
        if args[i] == "--prebuilt" {
            prebuilt = true;
            i += 1;
            continue;
        }
        match flag_value(args, &mut i, "--cmdline")? {
            Some(v) => cmdline = v,
            None => return fail(format!("unexpected argument `{}`\n\n{USAGE}", args[i])),
        }
        i += 1;
    }
    if prebuilt {
        stage_images()?;
    } else {
        build()?;
    }
    let cmdline = run_cmdline(&cmdline);
    // Absolute paths: QEMU puts the -kernel path in front of the command line, and the
    // hypervisor recognizes it by its leading `/`.
    let mut q = Qemu::new()
        .smp(4)
        .memory_mb(1024)
        .cpu("max")
        .boot(Boot::Multiboot1)
        .cmdline(&cmdline)
        .module(tests::testguest(), "testguest");
    for a in extra {
        q = q.arg(a);
    }
    let files = BootFiles {
        mb1_kernel: tests::kernel_mb1_elf(),
        iso: PathBuf::new(),
        ovmf_code: PathBuf::new(),
        ovmf_vars: PathBuf::new(),
    };
    let qargs = q.qemu_args(&files, SerialOut::Stdio);
    banner(&format!(
        "qemu-system-x86_64 {} (Ctrl-A X quits)",
        qargs
            .iter()
            .map(|a| if a.contains(' ') || a.is_empty() {
                format!("\"{a}\"")
            } else {
                a.clone()
            })
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let status = Command::new("qemu-system-x86_64")
        .args(&qargs)
        .current_dir(repo_root())
        .status()
        .map_err(|e| format!("cannot run qemu-system-x86_64: {e}"))?;
    match status.code() {
        Some(33) => {
            println!("xtask: run: all guests ended cleanly (debug-exit 0x10)");
            Ok(())
        }
        Some(35) => Err(Error {
            msg: "run: the hypervisor reported a panic or error (debug-exit 0x11, QEMU exit 35)"
                .into(),
            code: 35,
        }),
        Some(c) => Err(Error {
            msg: format!("run: QEMU exit status {}", tests::describe_exit(c)),
            code: u8::try_from(c).ok().filter(|&c| c != 0).unwrap_or(1),
        }),
        None => fail(format!("run: QEMU was killed: {status}")),
    }
}

fn test() -> Result {
    banner("test [1/4]: host packages");
    deps::deps()?;
    banner("test [2/4]: boot images");
    build()?;
    banner("test [3/4]: host unit tests (cargo test --workspace --exclude tests)");
    run_cmd(cargo().args(["test", "--workspace", "--exclude", "tests"]))?;
    banner("test [4/4]: QEMU integration tests (cargo test -p tests -- --test-threads=1)");
    run_cmd(cargo().args(["test", "-p", "tests", "--", "--test-threads=1"]))?;
    banner("test: all passed");
    Ok(())
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
    ]))
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
    fn default_cmdline_names_the_test_guest() {
        assert_eq!(DEFAULT_CMDLINE.matches("kernel=testguest").count(), 2);
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
