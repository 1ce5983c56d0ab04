//! The QEMU runner: command line assembly (pure, unit-tested), the timed run, and the
//! assertions on the serial log.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::image::{self, Module};

/// UEFI firmware code from Debian 12's `ovmf` package (4 MiB flash layout, no Secure Boot),
/// mapped read-only as pflash unit 0.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The matching variable store template; each run gets its own writable copy as pflash
/// unit 1.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How the hypervisor is booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// QEMU's built-in Multiboot1 loader: `-kernel build/didvisor-mb1.elf`, modules via
    /// `-initrd`.
    Multiboot1,
    /// A GRUB Multiboot2 ISO on SeaBIOS.
    GrubBios,
    /// A GRUB Multiboot2 ISO on OVMF (UEFI).
    GrubUefi,
}

/// The exit status a run must end with. The hypervisor writes a byte `v` to the
/// isa-debug-exit port 0xf4; QEMU then exits with `(v << 1) | 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// v = 0x10, all guests ended cleanly: QEMU exits with 33.
    Clean,
    /// v = 0x11, hypervisor panic or configuration error: QEMU exits with 35.
    Error,
    /// Any other QEMU exit status.
    Code(i32),
}

impl Expected {
    /// The QEMU process exit status this expectation stands for.
    pub fn code(self) -> i32 {
        match self {
            Expected::Clean => 33,
            Expected::Error => 35,
            Expected::Code(n) => n,
        }
    }
}

/// Explains a QEMU exit status in the terms of the isa-debug-exit protocol.
pub fn describe_exit(code: i32) -> String {
    match code {
        33 => "33: debug-exit 0x10, all guests ended cleanly".into(),
        35 => "35: debug-exit 0x11, hypervisor panic/error".into(),
        0 => "0: QEMU ended without debug-exit (shutdown, triple fault with -no-reboot, or quit)"
            .into(),
        1 => "1: QEMU failed (bad option or image?) or debug-exit 0x00".into(),
        c if (3..=511).contains(&c) && c % 2 == 1 => {
            format!("{c}: debug-exit {:#04x}", (c - 1) / 2)
        }
        c => format!("{c}: not a debug-exit status"),
    }
}

/// Where the serial port goes.
#[derive(Debug, Clone, Copy)]
pub enum SerialOut<'a> {
    /// `-display none -monitor none -serial file:<path>`: survives QEMU being killed.
    File(&'a Path),
    /// `-nographic`: serial and the QEMU monitor multiplexed on stdio (Ctrl-A X quits).
    Stdio,
}

/// The files a boot needs besides the configuration in [`Qemu`].
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// The ELF32 Multiboot1 image (`Boot::Multiboot1`).
    pub mb1_kernel: PathBuf,
    /// The GRUB ISO (`Boot::GrubBios`, `Boot::GrubUefi`).
    pub iso: PathBuf,
    /// OVMF code, read-only (`Boot::GrubUefi`).
    pub ovmf_code: PathBuf,
    /// A writable OVMF variable store (`Boot::GrubUefi`).
    pub ovmf_vars: PathBuf,
}

/// A QEMU boot of didvisor, built up and then [`run`](Qemu::run).
#[derive(Debug, Clone)]
pub struct Qemu {
    /// The QEMU binary (default `qemu-system-x86_64` from PATH).
    binary: PathBuf,
    smp: u32,
    memory_mb: u32,
    cpu: String,
    boot: Boot,
    cmdline: String,
    modules: Vec<Module>,
    args: Vec<String>,
    timeout: Duration,
    expect: Expected,
    /// Text typed on the serial console once the serial log shows a marker: `(marker, text)`.
    serial_input: Option<(String, String)>,
}

impl Default for Qemu {
    fn default() -> Self {
        Qemu::new()
    }
}

impl Qemu {
    /// Defaults: 4 CPUs, 1 GiB, `-cpu max`, Multiboot1, empty command line, no modules,
    /// 60 s timeout, expect a clean exit (33).
    pub fn new() -> Qemu {
        Qemu {
            binary: PathBuf::from("qemu-system-x86_64"),
            smp: 4,
            memory_mb: 1024,
            cpu: "max".into(),
            boot: Boot::Multiboot1,
            cmdline: String::new(),
            modules: Vec::new(),
            args: Vec::new(),
            timeout: Duration::from_secs(60),
            expect: Expected::Clean,
            serial_input: None,
        }
    }

    /// Types `text` on the serial console as soon as a serial line contains `marker` (typing
    /// earlier would race with the guest's driver, which clears its receive FIFO while it starts).
    pub fn type_after(mut self, marker: &str, text: &str) -> Self {
        self.serial_input = Some((marker.into(), text.into()));
        self
    }

    /// Runs another QEMU binary (the patched AVIC build of `tests/qemu-avic/`).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// The QEMU binary this run uses.
    pub fn binary_path(&self) -> &std::path::Path {
        &self.binary
    }

    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }

    pub fn memory_mb(mut self, n: u32) -> Self {
        self.memory_mb = n;
        self
    }

    pub fn cpu(mut self, model: &str) -> Self {
        self.cpu = model.into();
        self
    }

    pub fn boot(mut self, boot: Boot) -> Self {
        self.boot = boot;
        self
    }

    /// The hypervisor command line.
    pub fn cmdline(mut self, s: &str) -> Self {
        self.cmdline = s.into();
        self
    }

    /// Adds a boot module; `name` is the module's command line as the hypervisor sees it.
    pub fn module(mut self, path: impl Into<PathBuf>, name: &str) -> Self {
        self.modules.push(Module::new(path, name));
        self
    }

    /// Adds extra QEMU arguments (appended last).
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    /// QEMU's NVMe controller with SR-IOV (two VFs, the option set docs/platform.md describes)
    /// and one detached namespace per image in `disks` (namespace i + 1 backed by `disks[i]`),
    /// which the hypervisor attaches to the VFs.
    pub fn nvme_sriov(mut self, serial: &str, disks: &[&std::path::Path]) -> Self {
        for a in nvme_sriov_args(serial, disks) {
            self = self.arg(&a);
        }
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn expect_exit(mut self, e: Expected) -> Self {
        self.expect = e;
        self
    }

    /// The QEMU arguments (without the program name) for this configuration.
    pub fn qemu_args(&self, files: &BootFiles, serial: SerialOut<'_>) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-machine".into(),
            "q35".into(),
            "-cpu".into(),
            self.cpu.clone(),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            format!("{}M", self.memory_mb),
        ];
        match serial {
            SerialOut::File(log) => {
                a.extend([
                    "-display".into(),
                    "none".into(),
                    "-monitor".into(),
                    "none".into(),
                ]);
                match &self.serial_input {
                    None => a.extend(["-serial".into(), format!("file:{}", log.display())]),
                    Some(_) => a.extend([
                        "-chardev".into(),
                        format!(
                            "file,id=serial0,path={},input-path={}",
                            log.display(),
                            serial_fifo(log).display()
                        ),
                        "-serial".into(),
                        "chardev:serial0".into(),
                    ]),
                }
            }
            SerialOut::Stdio => a.push("-nographic".into()),
        }
        a.extend([
            "-no-reboot".into(),
            "-device".into(),
            "isa-debug-exit,iobase=0xf4,iosize=4".into(),
        ]);
        match self.boot {
            Boot::Multiboot1 => {
                a.extend(["-kernel".into(), files.mb1_kernel.display().to_string()]);
                a.extend(["-append".into(), self.cmdline.clone()]);
                if !self.modules.is_empty() {
                    a.extend(["-initrd".into(), initrd_arg(&self.modules)]);
                }
            }
            Boot::GrubBios => a.extend(["-cdrom".into(), files.iso.display().to_string()]),
            Boot::GrubUefi => a.extend([
                "-drive".into(),
                format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    files.ovmf_code.display()
                ),
                "-drive".into(),
                format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    files.ovmf_vars.display()
                ),
                "-cdrom".into(),
                files.iso.display().to_string(),
            ]),
        }
        a.extend(self.args.iter().cloned());
        a
    }

    /// Boots QEMU, waits for it to exit (killing it at the timeout) and checks the exit
    /// status. Panics, naming the serial log and printing its tail, when QEMU timed out or
    /// exited with a status other than the expected one.
    pub fn run(&self, test_name: &str) -> Run {
        let run = self.run_unchecked(test_name);
        if run.timed_out {
            run.fail(&format!(
                "QEMU timed out after {:?} and was killed (expected exit {})",
                self.timeout,
                describe_exit(self.expect.code())
            ));
        }
        if run.exit_code != Some(self.expect.code()) {
            let got = match run.exit_code {
                Some(c) => describe_exit(c),
                None => "killed by a signal".into(),
            };
            run.fail(&format!(
                "QEMU exit status {got}; expected {}",
                describe_exit(self.expect.code())
            ));
        }
        run
    }

    /// Like [`run`](Qemu::run) but returns the outcome without checking it (for tests of
    /// the harness itself). Still panics when QEMU cannot be started or the ISO cannot be
    /// built.
    pub fn run_unchecked(&self, test_name: &str) -> Run {
        assert!(
            !test_name.is_empty() && !test_name.contains(['/', '\\']),
            "test name `{test_name}` must be a plain file name"
        );
        crate::check_images();
        let logs = crate::target_dir().join("test-logs");
        let work = crate::target_dir().join("test-work").join(test_name);
        for d in [&logs, &work] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        }
        let log_path = logs.join(format!("{test_name}.log"));
        let _ = fs::remove_file(&log_path);
        let files = BootFiles {
            mb1_kernel: crate::kernel_mb1_elf(),
            iso: work.join("didvisor.iso"),
            ovmf_code: OVMF_CODE.into(),
            ovmf_vars: work.join("OVMF_VARS.fd"),
        };
        match self.boot {
            Boot::Multiboot1 => {}
            Boot::GrubBios | Boot::GrubUefi => {
                image::make_iso(
                    &crate::kernel_elf(),
                    &self.cmdline,
                    &self.modules,
                    &files.iso,
                    &work,
                )
                .unwrap_or_else(|e| panic!("test {test_name}: building the ISO: {e}"));
            }
        }
        if self.boot == Boot::GrubUefi {
            fs::copy(OVMF_VARS, &files.ovmf_vars).unwrap_or_else(|e| {
                panic!("copying {OVMF_VARS} (run `cargo xtask deps` for the ovmf package): {e}")
            });
        }
        let args = self.qemu_args(&files, SerialOut::File(&log_path));
        let command_line = format!("{} {}", self.binary.display(), shell_words(&args));
        let _ = fs::write(work.join("qemu-command.txt"), &command_line);
        eprintln!("[{test_name}] {command_line}");
        let stderr_path = work.join("qemu-stderr.txt");
        let stderr = fs::File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", stderr_path.display()));
        let stdout = stderr
            .try_clone()
            .unwrap_or_else(|e| panic!("cloning a file handle: {e}"));

        let typist = self.serial_input.clone().map(|(marker, text)| {
            let fifo = serial_fifo(&log_path);
            let _ = fs::remove_file(&fifo);
            let made = Command::new("mkfifo").arg(&fifo).status();
            assert!(
                made.is_ok_and(|s| s.success()),
                "mkfifo {} failed",
                fifo.display()
            );
            Typist::start(fifo, log_path.clone(), marker, text)
        });
        let start = Instant::now();
        let mut child = Command::new(&self.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} (run `cargo xtask deps`): {e}",
                    self.binary.display()
                )
            });
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() >= self.timeout => {
                    timed_out = true;
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for QEMU: {e}"),
            }
        };
        let elapsed = start.elapsed();
        if let Some(t) = typist {
            t.finish();
        }
        let serial = fs::read(&log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let qemu_stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
        eprintln!(
            "[{test_name}] QEMU {} after {:.1}s; serial log {}",
            match status.and_then(|s| s.code()) {
                Some(c) => format!("exited with {}", describe_exit(c)),
                None if timed_out => "timed out".into(),
                None => "was killed by a signal".into(),
            },
            elapsed.as_secs_f64(),
            log_path.display()
        );
        Run {
            test_name: test_name.into(),
            serial,
            exit_code: status.and_then(|s| s.code()),
            timed_out,
            log_path,
            qemu_stderr,
            command_line,
            elapsed,
        }
    }
}

/// QEMU's Multiboot1 `-initrd` value: `path name,path2 name2` (a comma inside a path is
/// doubled, QEMU's escape).
fn initrd_arg(modules: &[Module]) -> String {
    modules
        .iter()
        .map(|m| {
            let path = m.path.display().to_string().replace(',', ",,");
            format!("{path} {}", m.name.replace(',', ",,"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Quotes arguments for display as a shell command line.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=,.:/+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outcome of one QEMU run.
#[derive(Debug, Clone)]
pub struct Run {
    pub test_name: String,
    /// Everything the hypervisor wrote to COM1 (lossy UTF-8).
    pub serial: String,
    /// QEMU's exit status; `None` when it was killed.
    pub exit_code: Option<i32>,
    /// QEMU ran into the timeout and was killed.
    pub timed_out: bool,
    /// `target/test-logs/<test name>.log`, the serial log (kept after the run).
    pub log_path: PathBuf,
    /// What QEMU wrote to stdout/stderr.
    pub qemu_stderr: String,
    /// The QEMU command line, shell-quoted.
    pub command_line: String,
    pub elapsed: Duration,
}

impl Run {
    /// The serial output as lines, without carriage returns.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.serial.lines().map(|l| l.trim_end_matches('\r'))
    }

    /// The last `n` lines of the serial output.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Panics with `what`, the log path, QEMU's command line and stderr and the last 60
    /// serial lines.
    pub fn fail(&self, what: &str) -> ! {
        let mut m = format!(
            "test {}: {what}\n  serial log: {}\n  qemu: {}\n",
            self.test_name,
            self.log_path.display(),
            self.command_line
        );
        if !self.qemu_stderr.trim().is_empty() {
            let _ = writeln!(m, "  qemu stderr:\n{}", self.qemu_stderr.trim_end());
        }
        let _ = write!(
            m,
            "--- last 60 lines of the serial log ---\n{}\n--- end of serial log ---",
            self.tail(60)
        );
        panic!("{m}");
    }

    /// Asserts that some serial line contains `pattern`.
    pub fn assert_line(&self, pattern: &str) {
        if !self.lines().any(|l| l.contains(pattern)) {
            self.fail(&format!("no serial line contains `{pattern}`"));
        }
    }

    /// Asserts that no serial line contains `pattern`.
    pub fn assert_no_line(&self, pattern: &str) {
        if let Some(l) = self.lines().find(|l| l.contains(pattern)) {
            self.fail(&format!(
                "a serial line contains `{pattern}` but must not: `{l}`"
            ));
        }
    }

    /// The serial lines that start with `prefix`.
    pub fn lines_matching(&self, prefix: &str) -> Vec<&str> {
        self.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    /// How often `substring` occurs in the serial output (non-overlapping).
    pub fn count(&self, substring: &str) -> usize {
        self.serial.matches(substring).count()
    }
}

/// The FIFO QEMU reads serial input from, beside the serial log.
fn serial_fifo(log: &Path) -> PathBuf {
    log.with_extension("input.fifo")
}

/// Writes text into the serial input FIFO once the serial log shows a marker.
struct Typist {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Typist {
    fn start(fifo: PathBuf, log: PathBuf, marker: String, text: String) -> Typist {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::Ordering;
        /// O_NONBLOCK on Linux: opening a FIFO for writing fails (ENXIO) instead of blocking
        /// while QEMU has not opened it yet, so this thread can always be stopped.
        const O_NONBLOCK: i32 = 0o4000;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let thread = thread::spawn(move || {
            let mut writer = None;
            let mut typed = false;
            while !stop.load(Ordering::SeqCst) {
                if writer.is_none() {
                    writer = fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(O_NONBLOCK)
                        .open(&fifo)
                        .ok();
                }
                let seen = fs::read_to_string(&log).is_ok_and(|s| s.contains(&marker));
                if let (false, true, Some(w)) = (typed, seen, writer.as_mut()) {
                    let _ = std::io::Write::write_all(w, text.as_bytes());
                    typed = true;
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        Typist { done, thread }
    }

    fn finish(self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Two fresh (zero-filled, sparse) namespace images of `mib` MiB for the NVMe SR-IOV machine of
/// test `name`, in `target/test-work/<name>/`.
pub fn fresh_disks(name: &str, mib: u64) -> [PathBuf; 2] {
    let dir = crate::target_dir().join("test-work").join(name);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    [dir.join("ns1.img"), dir.join("ns2.img")].map(|p| {
        let f = fs::File::create(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        f.set_len(mib << 20)
            .unwrap_or_else(|e| panic!("sizing {}: {e}", p.display()));
        p
    })
}

/// QEMU arguments of the NVMe SR-IOV machine ([`Qemu::nvme_sriov`]): a PF with serial `serial`
/// (00:04.0, its VFs from 00:04.1) and one detached namespace per disk image. Two VFs, each
/// with up to 4 queues (admin and three I/O) and 3 MSI-X vectors of the flexible pools; the PF
/// keeps 3 queues and 2 vectors of its own.
pub fn nvme_sriov_args(serial: &str, disks: &[&std::path::Path]) -> Vec<String> {
    let mut args = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        args.push("-drive".into());
        args.push(format!("file={},if=none,id=d{i},format=raw", d.display()));
    }
    args.push("-device".into());
    args.push("nvme-subsys,id=subsys0".into());
    args.push("-device".into());
    args.push(format!(
        "nvme,serial={serial},subsys=subsys0,sriov_max_vfs=2,sriov_vq_flexible=8,\
         sriov_vi_flexible=6,max_ioqpairs=10,msix_qsize=8"
    ));
    for i in 0..disks.len() {
        args.push("-device".into());
        args.push(format!(
            "nvme-ns,drive=d{i},nsid={},shared=false,detached=true",
            i + 1
        ));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BootFiles {
        BootFiles {
            mb1_kernel: "/b/didvisor-mb1.elf".into(),
            iso: "/w/didvisor.iso".into(),
            ovmf_code: "/fw/CODE.fd".into(),
            ovmf_vars: "/w/VARS.fd".into(),
        }
    }

    fn joined(q: &Qemu, serial: SerialOut<'_>) -> String {
        q.qemu_args(&files(), serial).join(" ")
    }

    const COMMON: &str = "-machine q35 -cpu max -smp 4 -m 1024M";
    const FILE_SERIAL: &str = "-display none -monitor none -serial file:/l/t.log";
    const EXIT: &str = "-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4";

    #[test]
    fn exit_codes() {
        assert_eq!(Expected::Clean.code(), 33);
        assert_eq!(Expected::Error.code(), 35);
        assert_eq!(Expected::Code(7).code(), 7);
        assert!(describe_exit(33).contains("cleanly"));
        assert!(describe_exit(35).contains("panic"));
        assert!(describe_exit(0x25).contains("0x12"));
        assert!(describe_exit(2).contains("not a debug-exit"));
    }

    #[test]
    fn multiboot1_command_line() {
        let q = Qemu::new()
            .cmdline("guest=a,kernel=tg")
            .module("/b/testguest.elf", "tg")
            .module("/b/a,b.cpio", "rd")
            .arg("-d")
            .arg("int");
        assert_eq!(
            q.qemu_args(&files(), SerialOut::File(Path::new("/l/t.log"))),
            format!(
                "{COMMON} {FILE_SERIAL} {EXIT} -kernel /b/didvisor-mb1.elf -append \
                 guest=a,kernel=tg -initrd"
            )
            .split(' ')
            .map(String::from)
            .chain([
                "/b/testguest.elf tg,/b/a,,b.cpio rd".into(),
                "-d".into(),
                "int".into()
            ])
            .collect::<Vec<_>>()
        );
        // No modules: no -initrd; stdio serial uses -nographic.
        let q = Qemu::new().smp(2).memory_mb(256).cpu("qemu64,+svm");
        assert_eq!(
            joined(&q, SerialOut::Stdio),
            format!(
                "-machine q35 -cpu qemu64,+svm -smp 2 -m 256M -nographic {EXIT} \
                 -kernel /b/didvisor-mb1.elf -append "
            )
        );
    }

    #[test]
    fn grub_command_lines() {
        let serial = SerialOut::File(Path::new("/l/t.log"));
        let q = Qemu::new().boot(Boot::GrubBios).module("/b/tg.elf", "tg");
        assert_eq!(
            joined(&q, serial),
            format!("{COMMON} {FILE_SERIAL} {EXIT} -cdrom /w/didvisor.iso")
        );
        let q = q.boot(Boot::GrubUefi);
        assert_eq!(
            joined(&q, serial),
            format!(
                "{COMMON} {FILE_SERIAL} {EXIT} \
                 -drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd \
                 -drive if=pflash,format=raw,unit=1,file=/w/VARS.fd -cdrom /w/didvisor.iso"
            )
        );
    }

    fn run_with(serial: &str) -> Run {
        Run {
            test_name: "t".into(),
            serial: serial.into(),
            exit_code: Some(33),
            timed_out: false,
            log_path: "/l/t.log".into(),
            qemu_stderr: String::new(),
            command_line: "qemu".into(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn serial_assertions() {
        let r = run_with("boot ok\r\nguest a: up\r\nguest b: up\nguest a: ended\n");
        r.assert_line("b: up");
        r.assert_no_line("panic");
        assert_eq!(
            r.lines_matching("guest a:"),
            ["guest a: up", "guest a: ended"]
        );
        assert_eq!(r.count("up"), 2);
        assert_eq!(r.tail(2), "guest b: up\nguest a: ended");
    }

    #[test]
    fn failed_assertion_names_log_and_tail() {
        let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let r = run_with(&lines);
        let err = std::panic::catch_unwind(|| r.assert_line("missing")).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("/l/t.log"), "{msg}");
        assert!(msg.contains("`missing`"), "{msg}");
        assert!(
            msg.contains("line 40\n") && msg.contains("line 99"),
            "{msg}"
        );
        assert!(!msg.contains("line 39\n"), "{msg}");
        let err = std::panic::catch_unwind(|| r.assert_no_line("line 5")).unwrap_err();
        assert!(err.downcast_ref::<String>().unwrap().contains("`line 5`"));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell_words(&["-append".into(), "a b".into(), "it's".into()]),
            "-append 'a b' 'it'\\''s'"
        );
    }
}
