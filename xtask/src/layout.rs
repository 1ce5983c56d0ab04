//! Guest layout files (`layouts/*.toml`): the partitioning of one machine, written once, booted
//! under QEMU (`cargo xtask run --layout FILE`) or put on a GRUB image for a server (`cargo xtask
//! iso --layout FILE`).
//!
//! ```toml
//! [hypervisor]            # optional
//! loglevel = "info"       # error | warn | info | debug | trace
//! console = "lin"         # the guest that has the keyboard first (default: the first guest)
//! serial = "com2"         # the hypervisor's console UART: com1 (default) - com4 or an I/O port
//!
//! [machine]               # optional
//! cpus = 3                # logical CPUs (QEMU: -smp); default: the highest guest core + 1
//! memory = "1G"           # RAM (QEMU: -m); default: the guests' memory + 512M
//!
//! [[guest]]               # one table per guest, in command-line order
//! name = "lin"
//! cores = "1"             # CPU list: 1, 2-3, 1-2+5 (CPU 0 is the service core)
//! memory = "256M"         # in 2M steps
//! kernel = "$BUILD/linux/vmlinuz"          # a Linux bzImage or an ELF test guest
//! initrd = "$BUILD/linux/initrd.cpio.gz"   # optional
//! cmdline = "console=ttyS0 quiet"          # optional, the guest kernel's command line
//! irq = "direct"          # optional: direct | emulated | avic
//! vfs = ["00:04.1"]       # optional: SR-IOV VFs passed through (up to 4 per guest)
//! on-reset = "restart"    # optional: restart | end, when the guest reboots (default restart)
//! on-crash = "end"        # optional: restart | end, when it triple-faults (default end)
//! max-restarts = 10       # optional: restarts over its life (default 10)
//! mac = "52:54:00:12:34:56" # optional: the address of the guest's NIC VF (docs/igb.md)
//! disk = "disk.img"       # optional: a file served as the guest's virtio-blk disk (a boot module)
//! disk-read-only = true   # optional, default false
//! ```
//!
//! Paths are host paths, relative to the layout file's directory; `$BUILD/` at the start stands
//! for the build directory (`build/`, or `$DIDVISOR_BUILD_DIR`). Unknown keys are errors.
//!
//! The layout is checked by turning it into the hypervisor's command line and running the
//! hypervisor's own parser and validation (`didvisor::config`, the `kernel` crate's host-built
//! library) on it, so a mistake is reported with the hypervisor's words before anything boots;
//! a few checks the bare-metal binary makes later (vCPUs per guest, a Linux guest's RAM limit,
//! the kernel image's header) are repeated here with its messages.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use didvisor::config::{self, ConfigError};
use serde::Deserialize;

use crate::Result;

/// The bare-metal binary's per-guest vCPU limit (`MAX_VCPUS` in kernel/src/hv/irq/mod.rs,
/// which the host-built library cannot reach).
pub const MAX_VCPUS: usize = 16;

/// The prefix standing for the build directory in layout paths.
pub const BUILD_PREFIX: &str = "$BUILD/";

/// A layout file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(default)]
    pub hypervisor: Hypervisor,
    #[serde(default)]
    pub machine: Machine,
    #[serde(rename = "guest", default)]
    pub guests: Vec<Guest>,
}

/// Global hypervisor options (its `loglevel=`, `console=` and `serial=` words).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypervisor {
    pub loglevel: Option<String>,
    pub console: Option<String>,
    pub serial: Option<String>,
}

/// The machine the layout is for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub cpus: Option<usize>,
    pub memory: Option<String>,
}

/// One `[[guest]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    pub name: String,
    pub cores: String,
    pub memory: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: String,
    pub irq: Option<String>,
    #[serde(default)]
    pub vfs: Vec<String>,
    #[serde(rename = "on-reset")]
    pub on_reset: Option<String>,
    #[serde(rename = "on-crash")]
    pub on_crash: Option<String>,
    #[serde(rename = "max-restarts")]
    pub max_restarts: Option<u32>,
    pub mac: Option<String>,
    /// A file the guest gets as its virtio-blk disk (`disk=`).
    pub disk: Option<PathBuf>,
    #[serde(default, rename = "disk-read-only")]
    pub disk_read_only: bool,
}

/// A boot module: the host file and the name the hypervisor knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootModule {
    pub path: PathBuf,
    pub name: String,
}

/// What to add to the command line besides the layout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target {
    /// QEMU's isa-debug-exit port (`debug-exit=`): only for QEMU runs.
    pub debug_exit: Option<u16>,
}

/// The hypervisor's name for a guest key, and back: the layout says `memory` and `vfs` where
/// the command line says `mem=` and `vf=`.
fn layout_key(hypervisor_key: &str) -> &str {
    match hypervisor_key {
        "mem" => "memory",
        "vf" => "vfs",
        "guest" => "name",
        k => k,
    }
}

impl Layout {
    /// Parses a layout; relative paths are taken from `base` (the file's directory) and
    /// `$BUILD/` from `build`. Checks only the TOML (shape, types, unknown keys).
    pub fn parse(text: &str, base: &Path, build: &Path) -> std::result::Result<Layout, String> {
        let mut layout: Layout = toml::from_str(text).map_err(|e| e.to_string())?;
        for g in &mut layout.guests {
            g.kernel = resolve(&g.kernel, base, build);
            g.initrd = g.initrd.as_deref().map(|p| resolve(p, base, build));
            g.disk = g.disk.as_deref().map(|p| resolve(p, base, build));
        }
        Ok(layout)
    }

    /// Reads, parses and checks `path` without looking at the files it names (before a
    /// build made them).
    pub fn check_text(path: &Path) -> Result {
        let text = fs::read_to_string(path)
            .map_err(|e| format!("layout {}: cannot read it: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Layout::parse(&text, base, &::tests::build_dir())
            .and_then(|l| l.check(Target::default()))
            .map_err(|e| format!("layout {}: {e}", path.display()))?;
        Ok(())
    }

    /// Reads and parses `path`, then checks the layout (see [`Layout::check`]) with the files.
    pub fn load(path: &Path) -> Result<Layout> {
        let text = fs::read_to_string(path)
            .map_err(|e| format!("layout {}: cannot read it: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let layout = Layout::parse(&text, base, &::tests::build_dir())
            .map_err(|e| format!("layout {}: {e}", path.display()))?;
        layout
            .check(Target::default())
            .and_then(|_| layout.check_files())
            .map_err(|e| format!("layout {}: {e}", path.display()))?;
        Ok(layout)
    }

    /// The logical CPUs of the machine: `[machine] cpus`, or the highest guest core + 1.
    pub fn cpus(&self) -> usize {
        self.machine.cpus.unwrap_or_else(|| {
            self.guests
                .iter()
                .filter_map(|g| config::parse_cpus(&g.cores))
                .filter_map(|s| s.iter().last())
                .max()
                .map_or(1, |c| c + 1)
        })
    }

    /// The machine's RAM in MiB: `[machine] memory`, or the guests' memory + 512 MiB.
    pub fn memory_mib(&self) -> std::result::Result<u64, String> {
        match &self.machine.memory {
            Some(m) => config::parse_size(m)
                .filter(|&b| b >= 1 << 20)
                .map(|b| b >> 20)
                .ok_or_else(|| {
                    format!("[machine] memory = \"{m}\": expected a size like 1G or 2048M")
                }),
            None => Ok(self.guest_memory() / (1 << 20) + 512),
        }
    }

    /// The guests' memory together, in bytes (a bad size counts 0; [`Layout::check`] says so).
    fn guest_memory(&self) -> u64 {
        self.guests
            .iter()
            .filter_map(|g| config::parse_size(&g.memory))
            .sum()
    }

    /// The boot modules: each distinct kernel/initrd/disk file once, in order, named after its file
    /// (a name the hypervisor accepts: at most 16 of `A-Za-z0-9._-`, made unique).
    pub fn modules(&self) -> Vec<BootModule> {
        let mut out: Vec<BootModule> = Vec::new();
        let files = self.guests.iter().flat_map(|g| {
            std::iter::once(&g.kernel)
                .chain(g.initrd.as_ref())
                .chain(g.disk.as_ref())
        });
        for path in files {
            if out.iter().any(|m| &m.path == path) {
                continue;
            }
            let base = module_base(path);
            let mut name = base.clone();
            let mut n = 2;
            while out.iter().any(|m| m.name == name) {
                let suffix = format!("-{n}");
                let stem = &base[..base.len().min(config::MAX_NAME - suffix.len())];
                name = format!("{}{suffix}", stem.trim_end_matches(['-', '.', '_']));
                n += 1;
            }
            out.push(BootModule {
                path: path.clone(),
                name,
            });
        }
        out
    }

    fn module_name(&self, modules: &[BootModule], path: &Path) -> String {
        modules
            .iter()
            .find(|m| m.path == path)
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }

    /// The hypervisor command line for this layout.
    pub fn cmdline(&self, target: Target) -> String {
        let modules = self.modules();
        let mut words = Vec::new();
        if let Some(port) = target.debug_exit {
            words.push(format!("debug-exit={port:#x}"));
        }
        if let Some(l) = &self.hypervisor.loglevel {
            words.push(format!("loglevel={l}"));
        }
        if let Some(c) = &self.hypervisor.console {
            words.push(format!("console={c}"));
        }
        if let Some(s) = &self.hypervisor.serial {
            words.push(format!("serial={s}"));
        }
        for g in &self.guests {
            words.push(self.guest_word(g, &modules));
        }
        words.join(" ")
    }

    fn guest_word(&self, g: &Guest, modules: &[BootModule]) -> String {
        let mut w = format!(
            "guest={},cores={},mem={},kernel={}",
            g.name,
            g.cores,
            g.memory,
            self.module_name(modules, &g.kernel)
        );
        if let Some(i) = &g.initrd {
            w.push_str(&format!(",initrd={}", self.module_name(modules, i)));
        }
        if !g.cmdline.trim().is_empty() {
            w.push_str(&format!(",cmdline=\"{}\"", g.cmdline.trim()));
        }
        if let Some(irq) = &g.irq {
            w.push_str(&format!(",irq={irq}"));
        }
        if !g.vfs.is_empty() {
            w.push_str(&format!(",vf={}", g.vfs.join("+")));
        }
        for (key, v) in [("on-reset", &g.on_reset), ("on-crash", &g.on_crash)] {
            if let Some(v) = v {
                w.push_str(&format!(",{key}={v}"));
            }
        }
        if let Some(n) = g.max_restarts {
            w.push_str(&format!(",max-restarts={n}"));
        }
        if let Some(mac) = &g.mac {
            w.push_str(&format!(",mac={mac}"));
        }
        if let Some(d) = &g.disk {
            let ro = if g.disk_read_only { ":ro" } else { "" };
            w.push_str(&format!(",disk={}{ro}", self.module_name(modules, d)));
        }
        w
    }

    /// Checks the layout without touching files: values that cannot be written on the
    /// hypervisor's command line, then the hypervisor's parser and validation against
    /// `[machine] cpus` and the modules, then the checks of the bare-metal binary the library
    /// does not make (vCPUs per guest), then VFs given twice and the machine's memory.
    pub fn check(&self, target: Target) -> std::result::Result<(), String> {
        if self.guests.is_empty() {
            return Err("no [[guest]] tables: a layout needs at least one guest".into());
        }
        for (key, value) in [
            ("loglevel", &self.hypervisor.loglevel),
            ("console", &self.hypervisor.console),
            ("serial", &self.hypervisor.serial),
        ] {
            if let Some(v) = value {
                one_word(v).map_err(|why| format!("[hypervisor] {key} = \"{v}\": {why}"))?;
            }
        }
        let modules = self.modules();
        for g in &self.guests {
            let name = &g.name;
            for (key, v) in [("name", name), ("cores", &g.cores), ("memory", &g.memory)]
                .into_iter()
                .chain(g.irq.as_ref().map(|v| ("irq", v)))
                .chain(g.on_reset.as_ref().map(|v| ("on-reset", v)))
                .chain(g.on_crash.as_ref().map(|v| ("on-crash", v)))
                .chain(g.mac.as_ref().map(|v| ("mac", v)))
                .chain(g.vfs.iter().map(|v| ("vfs", v)))
            {
                one_word(v).map_err(|why| format!("guest {name}: {key} = \"{v}\": {why}"))?;
            }
            if let Some(c) = g
                .cmdline
                .chars()
                .find(|&c| c == '"' || c == '\\' || c.is_control())
            {
                return Err(format!(
                    "guest {name}: cmdline: {c:?} cannot be passed (the hypervisor's command \
                     line has no escape for double quotes, backslashes or control characters)"
                ));
            }
            // One guest at a time first, so the message can name the guest and the key.
            let word = self.guest_word(g, &modules);
            if let Err(e) = config::parse(&word) {
                return Err(guest_error(name, &e));
            }
        }
        let line = self.cmdline(target);
        let cfg = config::parse(&line).map_err(|e| e.to_string())?;
        let cpus = self.cpus();
        config::validate(&cfg, cpus, |m| modules.iter().any(|x| x.name == m)).map_err(
            |e| match e {
                ConfigError::NoSuchCpu { .. } if self.machine.cpus.is_some() => {
                    format!("{e} ([machine] cpus = {cpus})")
                }
                ConfigError::NoConsoleGuest(_) => format!("[hypervisor] {e}"),
                e => e.to_string(),
            },
        )?;
        for g in cfg.guests() {
            if g.cores.len() > MAX_VCPUS {
                // The bare-metal binary's words (kernel/src/hv/mod.rs).
                return Err(format!(
                    "guest {}: cores={}: at most {MAX_VCPUS} vCPUs per guest",
                    g.name, g.cores
                ));
            }
        }
        // The hypervisor's parser refuses one VF on two guests' `vf=` (and twice in one); this
        // names the layout's key.
        let mut owners: BTreeMap<String, &str> = BTreeMap::new();
        for g in &self.guests {
            for vf in &g.vfs {
                let bdf = pci::Bdf::parse(vf)
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| vf.clone());
                if let Some(other) = owners.insert(bdf.clone(), &g.name) {
                    return Err(format!(
                        "guest {}: vfs: {bdf} is given to guest {other} too",
                        g.name
                    ));
                }
            }
        }
        let mem = self.memory_mib()?;
        let need = self.guest_memory() >> 20;
        if need >= mem {
            return Err(format!(
                "the guests' memory ({need} MiB) does not fit in [machine] memory ({mem} MiB; \
                 the hypervisor needs some for itself)"
            ));
        }
        Ok(())
    }

    /// Checks the files: they exist, and each kernel is an ELF (test guest) or a bzImage the
    /// hypervisor can load, within its RAM limit for Linux guests.
    pub fn check_files(&self) -> std::result::Result<(), String> {
        for g in &self.guests {
            for (key, path) in [
                ("kernel", Some(&g.kernel)),
                ("initrd", g.initrd.as_ref()),
                ("disk", g.disk.as_ref()),
            ] {
                let Some(path) = path else { continue };
                if !path.is_file() {
                    let hint = if path.starts_with(::tests::build_dir()) {
                        " (made by `cargo xtask build`)"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "guest {}: {key}: {}: no such file{hint}",
                        g.name,
                        path.display()
                    ));
                }
            }
            let image = fs::read(&g.kernel)
                .map_err(|e| format!("guest {}: kernel: {}: {e}", g.name, g.kernel.display()))?;
            if image.starts_with(b"\x7fELF") {
                continue;
            }
            guestfw::linux::parse_bzimage(&image).map_err(|e| {
                format!(
                    "guest {}: kernel: {}: neither an ELF image nor a bzImage the hypervisor \
                     loads: {e}",
                    g.name,
                    g.kernel.display()
                )
            })?;
            let ram = config::parse_size(&g.memory).unwrap_or(0);
            if ram > guestfw::linux::MAX_RAM {
                let e = guestfw::linux::LinuxError::RamTooLarge {
                    ram_size: ram,
                    max: guestfw::linux::MAX_RAM,
                };
                return Err(format!("guest {}: memory = \"{}\": {e}", g.name, g.memory));
            }
        }
        Ok(())
    }
}

/// Names the guest and the layout key of a hypervisor error about one guest word.
fn guest_error(name: &str, e: &ConfigError<'_>) -> String {
    match e {
        ConfigError::BadValue { key, .. } => format!("guest {name}: {}: {e}", layout_key(key)),
        // These name the guest themselves.
        e => e.to_string(),
    }
}

/// A value that goes into one comma-separated field of a command-line word.
fn one_word(v: &str) -> std::result::Result<(), &'static str> {
    if v.is_empty() {
        return Err("must not be empty");
    }
    if v.chars()
        .any(|c| c.is_whitespace() || c.is_control() || ",\"=\\".contains(c))
    {
        return Err("must be one word without blanks, commas, quotes, `=` or backslashes");
    }
    Ok(())
}

/// `$BUILD/x` → `build/x`; a relative path → `base/path`.
fn resolve(p: &Path, base: &Path, build: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix(BUILD_PREFIX) {
        return build.join(rest);
    }
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A module name from a file name: the characters the hypervisor's module names can carry, at
/// most 16 of them.
fn module_base(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = file
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(config::MAX_NAME)
        .collect();
    if name.is_empty() {
        name = "module".into();
    }
    name
}

/// The shipped example layouts.
pub fn examples_dir() -> PathBuf {
    ::tests::repo_root().join("layouts")
}

/// What `cargo xtask run` boots without `--layout`.
pub fn default_layout() -> PathBuf {
    examples_dir().join("qemu-demo.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Layout {
        Layout::parse(text, Path::new("/l"), Path::new("/b")).unwrap()
    }

    fn example(name: &str) -> Layout {
        let path = examples_dir().join(name);
        let text = fs::read_to_string(&path).unwrap();
        Layout::parse(&text, &examples_dir(), Path::new("/b")).unwrap()
    }

    const TWO: &str = r#"
        [hypervisor]
        loglevel = "debug"
        console = "b"
        serial = "com2"

        [machine]
        cpus = 4
        memory = "1G"

        [[guest]]
        name = "a"
        cores = "1"
        memory = "256M"
        kernel = "$BUILD/linux/vmlinuz"
        initrd = "rd/initrd.gz"
        cmdline = "console=ttyS0 quiet"
        irq = "emulated"
        vfs = ["0000:00:04.1"]

        [[guest]]
        name = "b"
        cores = "2-3"
        memory = "16M"
        kernel = "/abs/testguest.elf"
        on-reset = "end"
        on-crash = "restart"
        max-restarts = 3
    "#;

    #[test]
    fn a_disk_is_a_boot_module() {
        let l = parse(&TWO.replace(
            "irq = \"emulated\"",
            "irq = \"emulated\"\ndisk = \"d/a.img\"\ndisk-read-only = true",
        ));
        assert_eq!(l.guests[0].disk.as_deref(), Some(Path::new("/l/d/a.img")));
        assert!(l.modules().iter().any(|m| m.name == "a.img"));
        let line = l.cmdline(Target::default());
        assert!(line.contains(",disk=a.img:ro"), "{line}");
        l.check(Target::default()).unwrap();
        let cfg = config::parse(&line).unwrap();
        let d = cfg.guests().next().unwrap().disk.unwrap();
        assert_eq!((d.module.as_str(), d.read_only), ("a.img", true));
    }

    #[test]
    fn a_layout_becomes_the_hypervisor_command_line() {
        let l = parse(TWO);
        assert_eq!(l.guests[0].kernel, Path::new("/b/linux/vmlinuz"));
        assert_eq!(
            l.guests[0].initrd.as_deref(),
            Some(Path::new("/l/rd/initrd.gz"))
        );
        assert_eq!(
            l.modules(),
            [
                BootModule {
                    path: "/b/linux/vmlinuz".into(),
                    name: "vmlinuz".into()
                },
                BootModule {
                    path: "/l/rd/initrd.gz".into(),
                    name: "initrd.gz".into()
                },
                BootModule {
                    path: "/abs/testguest.elf".into(),
                    name: "testguest.elf".into()
                },
            ]
        );
        assert_eq!(
            l.cmdline(Target {
                debug_exit: Some(0xf4)
            }),
            "debug-exit=0xf4 loglevel=debug console=b serial=com2 \
             guest=a,cores=1,mem=256M,kernel=vmlinuz,initrd=initrd.gz,\
             cmdline=\"console=ttyS0 quiet\",irq=emulated,vf=0000:00:04.1 \
             guest=b,cores=2-3,mem=16M,kernel=testguest.elf,on-reset=end,on-crash=restart,\
             max-restarts=3"
        );
        l.check(Target::default()).unwrap();
        // The hypervisor's parser reads it back as written.
        let line = l.cmdline(Target::default());
        let cfg = config::parse(&line).unwrap();
        let a = cfg.guests().next().unwrap();
        assert_eq!(a.cmdline.as_str(), "console=ttyS0 quiet");
        assert_eq!(a.vfs.iter().next().unwrap().to_string(), "00:04.1");
        assert_eq!(cfg.console_guest(), Some(1));
        assert_eq!((l.cpus(), l.memory_mib().unwrap()), (4, 1024));
    }

    #[test]
    fn a_nic_vf_address_goes_to_the_command_line_and_is_checked() {
        let with_mac = TWO.replace(
            "vfs = [\"0000:00:04.1\"]",
            "vfs = [\"00:15.0\"]\n        mac = \"52:54:00:12:34:56\"",
        );
        let l = parse(&with_mac);
        assert!(l
            .cmdline(Target::default())
            .contains(",vf=00:15.0,mac=52:54:00:12:34:56 "));
        l.check(Target::default()).unwrap();
        let cfg = config::parse(&l.cmdline(Target::default())).unwrap();
        let a = cfg.guests().next().unwrap();
        assert_eq!(a.mac.unwrap().to_string(), "52:54:00:12:34:56");
        let bad = parse(&with_mac.replace("52:54:00:12:34:56", "01:00:5e:00:00:01"));
        let e = bad.check(Target::default()).unwrap_err();
        assert!(e.contains("mac=01:00:5e:00:00:01"), "{e}");
    }

    #[test]
    fn machine_defaults_from_the_guests() {
        let l = parse(
            &TWO.replace("cpus = 4\n", "")
                .replace("memory = \"1G\"\n", ""),
        );
        assert_eq!(l.cpus(), 4);
        assert_eq!(l.memory_mib().unwrap(), 256 + 16 + 512);
    }

    #[test]
    fn module_names_are_unique_and_short() {
        let l = parse(
            r#"
            [[guest]]
            name = "a"
            cores = "1"
            memory = "2M"
            kernel = "/x/vmlinuz-6.1.0-57-amd64-with-a-long-name"
            [[guest]]
            name = "b"
            cores = "2"
            memory = "2M"
            kernel = "/y/vmlinuz-6.1.0-57-amd64-with-a-long-name"
            [[guest]]
            name = "c"
            cores = "3"
            memory = "2M"
            kernel = "/x/vmlinuz-6.1.0-57-amd64-with-a-long-name"
            initrd = "/z/a b?"
            "#,
        );
        let names: Vec<String> = l.modules().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["vmlinuz-6.1.0-57", "vmlinuz-6.1.0-2", "ab"]);
        l.check(Target::default()).unwrap();
    }

    #[test]
    fn the_examples_parse_and_pass_the_hypervisors_checks() {
        let demo = example("qemu-demo.toml");
        demo.check(Target {
            debug_exit: Some(0xf4),
        })
        .unwrap();
        assert_eq!(demo.guests.len(), 2);
        assert!(demo.guests.iter().all(|g| g.vfs.len() == 1));
        assert_eq!(demo.guests[0].kernel, Path::new("/b/linux/vmlinuz"));
        let line = demo.cmdline(Target::default());
        assert!(
            line.contains("vf=00:04.1") && line.contains("vf=00:04.2"),
            "{line}"
        );
        let epyc = example("epyc-2s.toml");
        epyc.check(Target::default()).unwrap();
        assert_eq!(epyc.cpus(), 128);
        assert!(epyc.guests.iter().all(|g| g.vfs.len() == 1));
    }

    fn check_err(text: &str) -> String {
        parse(text).check(Target::default()).unwrap_err()
    }

    const ONE: &str = r#"
        [[guest]]
        name = "lin"
        cores = "1"
        memory = "256M"
        kernel = "/k"
    "#;

    #[test]
    fn unknown_keys_and_wrong_types_are_toml_errors() {
        let e = Layout::parse(
            &ONE.replace("memory", "colour = \"red\"\nmemory"),
            Path::new("/"),
            Path::new("/b"),
        )
        .unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = Layout::parse(
            &format!("[machine]\nsmp = 2\n{ONE}"),
            Path::new("/"),
            Path::new("/b"),
        )
        .unwrap_err();
        assert!(e.contains("unknown field `smp`"), "{e}");
        let e = Layout::parse(
            &format!("[qemu]\nx = 1\n{ONE}"),
            Path::new("/"),
            Path::new("/b"),
        )
        .unwrap_err();
        assert!(e.contains("unknown field `qemu`"), "{e}");
        let e =
            Layout::parse(&ONE.replace("\"1\"", "1"), Path::new("/"), Path::new("/b")).unwrap_err();
        assert!(e.contains("invalid type: integer"), "{e}");
        let e = Layout::parse(
            &ONE.replace("memory = \"256M\"", ""),
            Path::new("/"),
            Path::new("/b"),
        )
        .unwrap_err();
        assert!(e.contains("missing field `memory`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_guest_and_key_in_the_hypervisors_words() {
        assert_eq!(
            check_err(&ONE.replace("256M", "3M")),
            "guest lin: memory: `mem=3M`: expected a size from 2M to 256G in 2M steps, like 64M, 1G or 5G"
        );
        assert_eq!(
            check_err(&ONE.replace("\"1\"", "\"3-1\"")),
            "guest lin: cores: `cores=3-1`: expected cpu numbers like 1, 1-3 or 1-2+5"
        );
        assert_eq!(
            check_err(&ONE.replace("memory", "irq = \"posted\"\nmemory")),
            "guest lin: irq: `irq=posted`: expected direct, avic or emulated"
        );
        assert_eq!(
            check_err(&ONE.replace("memory", "on-crash = \"reboot\"\nmemory")),
            "guest lin: on-crash: `on-crash=reboot`: expected restart or end"
        );
        assert_eq!(
            check_err(&ONE.replace("memory", "vfs = [\"nvme\"]\nmemory")),
            "guest lin: vfs: `vf=nvme`: expected PCI functions like 00:04.1 or 0000:00:04.1, several joined by +"
        );
        assert!(check_err(&ONE.replace("\"lin\"", "\"l.n\""))
            .starts_with("guest l.n: name: `guest=l.n`: a guest description starts"));
        assert_eq!(
            check_err(&ONE.replace("\"1\"", "\"1,2\"")),
            "guest lin: cores = \"1,2\": must be one word without blanks, commas, quotes, `=` \
             or backslashes"
        );
        assert!(
            check_err(&ONE.replace("memory", "cmdline = 'a \"b\"'\nmemory"))
                .starts_with("guest lin: cmdline: '\"' cannot be passed"),
        );
        let long = "x".repeat(1100);
        assert_eq!(
            check_err(&ONE.replace("memory", &format!("cmdline = \"{long}\"\nmemory"))),
            format!("guest lin: cmdline: `cmdline={long}`: guest command line too long")
        );
    }

    #[test]
    fn several_vfs_go_into_one_vf_list_up_to_the_hypervisor_limit() {
        let two = parse(&ONE.replace("memory", "vfs = [\"00:04.1\", \"00:15.0\"]\nmemory"));
        two.check(Target::default()).unwrap();
        let line = two.cmdline(Target::default());
        assert!(line.contains(",vf=00:04.1+00:15.0"), "{line}");
        let cfg = config::parse(&line).unwrap();
        assert_eq!(cfg.guests().next().unwrap().vfs.len(), 2);
        let five = r#"vfs = ["00:04.1", "00:04.2", "00:04.3", "00:04.4", "00:04.5"]"#;
        let e = check_err(&ONE.replace("memory", &format!("{five}\nmemory")));
        assert!(e.starts_with("guest lin: vfs: "), "{e}");
        assert!(e.ends_with("at most 4 VFs per guest"), "{e}");
        let twice =
            check_err(&ONE.replace("memory", "vfs = [\"00:04.1\", \"0000:00:04.1\"]\nmemory"));
        assert_eq!(
            twice,
            "guest lin: `vf=` names 00:04.1 twice: a VF is one device"
        );
    }

    #[test]
    fn machine_level_errors() {
        let two = format!("{ONE}{}", ONE.replace("\"lin\"", "\"two\""));
        assert_eq!(check_err(&two), "guest two: cores overlap with guest lin's");
        assert_eq!(
            check_err(&ONE.replace("\"1\"", "\"0-1\"")),
            "guest lin: cores: cpu 0 is the service core and runs no guest"
        );
        assert_eq!(
            check_err(&format!("[machine]\ncpus = 2\n{}", ONE.replace("\"1\"", "\"1-2\""))),
            "guest lin: cores: cpu 2 does not exist (this machine has cpus 0-1) ([machine] cpus = 2)"
        );
        assert_eq!(
            check_err(&format!("[hypervisor]\nconsole = \"x\"\n{ONE}")),
            "[hypervisor] console=x: no guest has that name"
        );
        assert_eq!(
            check_err(&format!("[hypervisor]\nloglevel = \"loud\"\n{ONE}")),
            "`loglevel=loud`: expected error|warn|info|debug|trace"
        );
        assert_eq!(
            check_err(&ONE.replace("\"1\"", "\"1-17\"")),
            "guest lin: cores=1-17: at most 16 vCPUs per guest"
        );
        assert_eq!(
            check_err(&format!("{ONE}{ONE}").replacen("\"lin\"", "\"b\"", 1)),
            "guest lin: cores overlap with guest b's"
        );
        let shared_vf = format!(
            "{}{}",
            ONE.replace("memory", "vfs = [\"00:04.1\"]\nmemory"),
            ONE.replace("\"lin\"", "\"b\"")
                .replace("\"1\"", "\"2\"")
                .replace("memory", "vfs = [\"0000:00:04.1\"]\nmemory")
        );
        assert_eq!(
            check_err(&shared_vf),
            "guests lin and b both name `vf=00:04.1`: a VF belongs to one guest"
        );
        assert_eq!(
            check_err(&format!("[machine]\nmemory = \"256M\"\n{ONE}")),
            "the guests' memory (256 MiB) does not fit in [machine] memory (256 MiB; the \
             hypervisor needs some for itself)"
        );
        assert_eq!(
            check_err("[machine]\ncpus = 2\n"),
            "no [[guest]] tables: a layout needs at least one guest"
        );
    }

    #[test]
    fn files_are_checked() {
        let dir = ::tests::target_dir().join("xtask-test-layout");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let l = Layout::parse(ONE, &dir, Path::new("/b")).unwrap();
        assert_eq!(
            l.check_files().unwrap_err(),
            "guest lin: kernel: /k: no such file"
        );
        let l = Layout::parse(&ONE.replace("/k", "k"), &dir, Path::new("/b")).unwrap();
        fs::write(dir.join("k"), b"MZ not a kernel").unwrap();
        let e = l.check_files().unwrap_err();
        assert!(
            e.contains("neither an ELF image nor a bzImage the hypervisor loads"),
            "{e}"
        );
        fs::write(dir.join("k"), b"\x7fELF...").unwrap();
        l.check_files().unwrap();
        let _ = fs::remove_dir_all(&dir);
    }
}
