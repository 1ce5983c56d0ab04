//! The hypervisor command line: global options and one `guest=` description per guest.
//!
//! ```text
//! debug-exit=0xf4 loglevel=debug guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2-3,mem=1G,kernel=vmlinuz,initrd=initrd,cmdline="console=ttyS0 quiet"
//! ```
//! Words are separated by blanks; double quotes group a value that contains blanks or commas. Every
//! error names the word it is about: bad configuration stops the hypervisor before any guest starts.

use crate::cpuset::{CpuSet, MAX_CPUS};
use crate::restart::OnStop;
use core::fmt;
use guestfw::guest_layout::{self, RAM_GRANULE};

pub const MAX_GUESTS: usize = 16;
pub const MAX_NAME: usize = 16;
pub const MAX_GUEST_CMDLINE: usize = 1024;

type Name = boot_str::Str<MAX_NAME>;

/// Text copied out of the command line (no allocator here).
pub mod boot_str {
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct Str<const N: usize> {
        bytes: [u8; N],
        len: usize,
    }

    impl<const N: usize> Str<N> {
        pub const fn empty() -> Self {
            Str {
                bytes: [0; N],
                len: 0,
            }
        }

        pub fn new(s: &str) -> Option<Self> {
            if s.len() > N {
                return None;
            }
            let mut v = Self::empty();
            v.bytes[..s.len()].copy_from_slice(s.as_bytes());
            v.len = s.len();
            Some(v)
        }

        /// Copies `s` with backslash escapes removed (`\\x` becomes `x`), as GRUB adds them.
        pub fn unescaped(s: &str) -> Option<Self> {
            let mut v = Self::empty();
            let mut escaped = false;
            for c in s.chars() {
                if c == '\\' && !escaped {
                    escaped = true;
                    continue;
                }
                escaped = false;
                let mut buf = [0u8; 4];
                let bytes = c.encode_utf8(&mut buf).as_bytes();
                v.bytes
                    .get_mut(v.len..v.len + bytes.len())?
                    .copy_from_slice(bytes);
                v.len += bytes.len();
            }
            Some(v)
        }

        pub fn as_str(&self) -> &str {
            // Built from a &str, so valid UTF-8 up to len.
            core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
        }
    }

    impl<const N: usize> core::fmt::Debug for Str<N> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            core::fmt::Debug::fmt(self.as_str(), f)
        }
    }

    impl<const N: usize> core::fmt::Display for Str<N> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str(self.as_str())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// One guest as described by a `guest=` word.
#[derive(Debug, Clone, Copy)]
pub struct GuestConfig {
    pub name: Name,
    /// Physical CPUs (logical indices) given whole to this guest, one vCPU each, in order.
    pub cores: CpuSet,
    /// Guest RAM in bytes, a multiple of 2 MiB.
    pub mem: u64,
    /// Name of the boot module holding the guest's kernel.
    pub kernel: Name,
    pub initrd: Option<Name>,
    pub cmdline: boot_str::Str<MAX_GUEST_CMDLINE>,
    pub irq: IrqMode,
    /// The SR-IOV virtual functions (host bus/device/function) passed through to the guest
    /// (`vf=00:04.1+00:15.0`), at most `MAX_VFS_PER_GUEST`.
    pub vfs: VfList,
    /// The MAC address of the guest's NIC VF (`mac=`; with several VFs, the one that is an 82576
    /// NIC's, of which there must then be exactly one); `None`: a stable derived one
    /// (docs/igb.md). Only with `vf=`.
    pub mac: Option<igb::MacAddr>,
    /// What a reset or a crash of the guest leads to (`on-reset=`, `on-crash=`, `max-restarts=`).
    pub restart: crate::restart::RestartPolicy,
    /// A boot module served to the guest as a virtio-blk disk (`disk=MODULE[:ro]`).
    pub disk: Option<DiskConfig>,
}

/// The most VFs one guest takes: each gets its own guest PCI slot and IOMMU tables, and in
/// emulated mode they share the guest cores' 32 device vectors.
pub const MAX_VFS_PER_GUEST: usize = 4;
const _: () = assert!(
    MAX_VFS_PER_GUEST == 4,
    "the `vf=` error text names the limit"
);

/// A guest's VFs in the order `vf=` names them (`+`-separated), no function twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VfList {
    bdfs: [Option<pci::Bdf>; MAX_VFS_PER_GUEST],
}

/// Why a `vf=` list is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfListError {
    BadFunction,
    TooMany,
    Twice(pci::Bdf),
}

impl VfList {
    /// `00:04.1` or `00:04.1+0000:00:15.0`.
    pub fn parse(value: &str) -> Result<VfList, VfListError> {
        let mut list = VfList::default();
        for (i, part) in value.split('+').enumerate() {
            let bdf = pci::Bdf::parse(part).ok_or(VfListError::BadFunction)?;
            if list.contains(bdf) {
                return Err(VfListError::Twice(bdf));
            }
            *list.bdfs.get_mut(i).ok_or(VfListError::TooMany)? = Some(bdf);
        }
        Ok(list)
    }

    pub fn iter(&self) -> impl Iterator<Item = pci::Bdf> + '_ {
        self.bdfs.iter().map_while(|b| *b)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.bdfs[0].is_none()
    }

    pub fn contains(&self, bdf: pci::Bdf) -> bool {
        self.iter().any(|b| b == bdf)
    }
}

/// A virtio-blk disk backed by a boot module used as a RAM disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskConfig {
    pub module: Name,
    pub read_only: bool,
}

impl DiskConfig {
    /// `MODULE` or `MODULE:ro`.
    pub fn parse(value: &str) -> Option<DiskConfig> {
        let (name, read_only) = match value.strip_suffix(":ro") {
            Some(name) => (name, true),
            None => (value, false),
        };
        if name.is_empty() || name.contains(':') {
            return None;
        }
        Some(DiskConfig {
            module: Name::new(name)?,
            read_only,
        })
    }
}

/// How interrupts reach the guest (see docs/design.md "Interrupt modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqMode {
    /// The guest owns its core's physical x2APIC (timer, TPR, EOI); device interrupts arrive as
    /// physical IPIs with the guest's vector. No exits for interrupts. The default.
    Direct,
    /// SVM AVIC / x2AVIC with IOMMU guest-virtual-APIC posting.
    Avic,
    /// A virtual local APIC; every interrupt is injected at an exit (the baseline).
    Emulated,
}

impl IrqMode {
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "direct" => Some(IrqMode::Direct),
            "avic" => Some(IrqMode::Avic),
            "emulated" => Some(IrqMode::Emulated),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IrqMode::Direct => "direct",
            IrqMode::Avic => "avic",
            IrqMode::Emulated => "emulated",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// I/O port of QEMU's `isa-debug-exit` device: when set, the hypervisor ends the machine through
    /// it (status 0x10 clean, 0x11 error) instead of halting.
    pub debug_exit: Option<u16>,
    /// `tsc=invariant`: the operator vouches that this machine's TSC runs at a constant rate
    /// in every power state and in step on all cores, where CPUID 8000_0007h EDX[8] does not
    /// say so (QEMU TCG: its TSC is the host's, its CPUID cannot announce it). Guests are then
    /// told so too (`crate::cpuid`).
    pub tsc_invariant: bool,
    pub log_level: LogLevel,
    /// The guest whose serial port receives what is typed on the hypervisor's console (default:
    /// the first guest).
    pub console: Option<Name>,
    /// I/O port of the 16550 UART the hypervisor's console uses (`serial=`, default COM1).
    pub serial: u16,
    guests: [Option<GuestConfig>; MAX_GUESTS],
}

impl Config {
    pub fn guests(&self) -> impl Iterator<Item = &GuestConfig> {
        self.guests.iter().flatten()
    }

    pub fn guest_count(&self) -> usize {
        self.guests().count()
    }

    /// Index of the guest that gets console input.
    pub fn console_guest(&self) -> Option<usize> {
        match self.console {
            Some(name) => self.guests().position(|g| g.name == name),
            None => (self.guest_count() > 0).then_some(0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError<'a> {
    UnknownWord(&'a str),
    UnknownGuestKey {
        guest: &'a str,
        key: &'a str,
    },
    MissingGuestKey {
        guest: &'a str,
        key: &'static str,
    },
    DuplicateGuestKey {
        guest: &'a str,
        key: &'a str,
    },
    BadValue {
        key: &'a str,
        value: &'a str,
        why: &'static str,
    },
    UnterminatedQuote,
    TooManyGuests,
    DuplicateGuestName(&'a str),
    /// Two guests name the same VF: both would drive one device whose DMA reaches only one of
    /// them, so the other could write into its neighbour's memory.
    SharedVf {
        vf: pci::Bdf,
        first: Name,
        second: Name,
    },
    /// `mac=` without `vf=`: there is no NIC for the address.
    MacWithoutVf {
        guest: &'a str,
    },
    /// Two guests name the same MAC address: frames would reach only one of them.
    SharedMac {
        mac: igb::MacAddr,
        first: Name,
        second: Name,
    },
    /// Two guests name the same disk module and one of them may write it: the other would see
    /// its blocks change under it (read-only sharing is fine).
    SharedDisk {
        module: Name,
        first: Name,
        second: Name,
    },
    /// A writable disk on a module some guest boots from (its kernel or initrd).
    DiskIsBootImage {
        guest: Name,
        module: Name,
    },
    // Checks against the machine and the boot modules:
    NoSuchCpu {
        guest: &'a str,
        cpu: usize,
        cpus: usize,
    },
    ServiceCore {
        guest: &'a str,
    },
    SharedCore {
        guest: &'a str,
        other: &'a str,
    },
    NoSuchModule {
        guest: &'a str,
        module: &'a str,
    },
    NoConsoleGuest(&'a str),
}

impl fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigError::*;
        match self {
            UnknownWord(w) => write!(
                f,
                "unknown word `{w}` (expected guest=..., console=GUEST, serial=PORT, debug-exit=PORT, tsc=invariant or loglevel=LEVEL)"
            ),
            NoConsoleGuest(n) => write!(f, "console={n}: no guest has that name"),
            UnknownGuestKey { guest, key } => {
                write!(f, "guest {guest}: unknown key `{key}` (known: cores, mem, kernel, initrd, cmdline, irq, vf, mac, on-reset, on-crash, max-restarts, disk)")
            }
            MissingGuestKey { guest, key } => write!(f, "guest {guest}: `{key}=` is required"),
            DuplicateGuestKey { guest, key } => write!(f, "guest {guest}: `{key}=` given twice"),
            BadValue { key, value, why } => write!(f, "`{key}={value}`: {why}"),
            UnterminatedQuote => f.write_str("unterminated double quote"),
            TooManyGuests => write!(f, "more than {MAX_GUESTS} guests"),
            DuplicateGuestName(n) => write!(f, "two guests are named `{n}`"),
            SharedVf { vf, first, second } if first == second => write!(
                f,
                "guest {}: `vf=` names {vf} twice: a VF is one device",
                first.as_str()
            ),
            SharedVf { vf, first, second } => write!(
                f,
                "guests {} and {} both name `vf={vf}`: a VF belongs to one guest",
                first.as_str(),
                second.as_str()
            ),
            MacWithoutVf { guest } => write!(
                f,
                "guest {guest}: `mac=` names the address of a NIC VF, but there is no `vf=`"
            ),
            SharedMac { mac, first, second } => write!(
                f,
                "guests {} and {} both name `mac={mac}`: an address belongs to one VF",
                first.as_str(),
                second.as_str()
            ),
            SharedDisk {
                module,
                first,
                second,
            } => write!(
                f,
                "guests {} and {} both name `disk={}` and one may write it: a writable disk belongs to one guest (share it with `:ro` on both)",
                first.as_str(),
                second.as_str(),
                module.as_str()
            ),
            DiskIsBootImage { guest, module } => write!(
                f,
                "guest {}: `disk={}` is writable but a guest boots from that module (kernel or initrd); give the disk its own module or add `:ro`",
                guest.as_str(),
                module.as_str()
            ),
            NoSuchCpu { guest, cpu, cpus } => {
                write!(
                    f,
                    "guest {guest}: cores: cpu {cpu} does not exist (this machine has cpus 0-{})",
                    cpus - 1
                )
            }
            ServiceCore { guest } => write!(
                f,
                "guest {guest}: cores: cpu 0 is the service core and runs no guest"
            ),
            SharedCore { guest, other } => {
                write!(f, "guest {guest}: cores overlap with guest {other}'s")
            }
            NoSuchModule { guest, module } => {
                write!(f, "guest {guest}: no boot module named `{module}`")
            }
        }
    }
}

/// Splits on blanks, keeping double-quoted parts together (quotes removed from values by the caller).
/// GRUB hands quotes over backslash-escaped (`\"`); an escaped quote groups like a plain one.
fn words(line: &str) -> impl Iterator<Item = Result<&str, ConfigError<'_>>> {
    let mut rest = line;
    core::iter::from_fn(move || {
        rest = rest.trim_start();
        if rest.is_empty() {
            return None;
        }
        let mut in_quote = false;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => in_quote = !in_quote,
                c if c.is_whitespace() && !in_quote => {
                    let (w, r) = rest.split_at(i);
                    rest = r;
                    return Some(Ok(w));
                }
                _ => {}
            }
        }
        let w = rest;
        rest = "";
        Some(if in_quote {
            Err(ConfigError::UnterminatedQuote)
        } else {
            Ok(w)
        })
    })
}

/// Splits a guest description on commas outside double quotes.
fn fields(desc: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(desc);
    core::iter::from_fn(move || {
        let s = rest?;
        let mut in_quote = false;
        for (i, c) in s.char_indices() {
            match c {
                '"' => in_quote = !in_quote,
                ',' if !in_quote => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// Removes one pair of enclosing quotes, plain (`"..."`) or GRUB-escaped (`\"...\"`).
fn unquote(v: &str) -> &str {
    ["\\\"", "\""]
        .iter()
        .find_map(|q| v.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
        .unwrap_or(v)
}

pub fn parse_size(v: &str) -> Option<u64> {
    let (digits, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let n = parse_number(digits)?;
    n.checked_mul(1 << shift)
}

pub fn parse_number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// `1`, `1-3`, `1-3+6`.
pub fn parse_cpus(v: &str) -> Option<CpuSet> {
    let mut set = CpuSet::new();
    for part in v.split('+') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let c = part.parse::<usize>().ok()?;
                (c, c)
            }
        };
        if a > b || b >= MAX_CPUS {
            return None;
        }
        for c in a..=b {
            set.insert(c);
        }
    }
    Some(set)
}

/// The standard I/O port of COM1, the hypervisor's console unless `serial=` names another.
pub const COM1: u16 = 0x3f8;

/// A `serial=` value: `com1`-`com4` (their standard I/O ports: 3F8h, 2F8h, 3E8h, 2E8h) or the
/// I/O port of any 16550 UART (eight registers, so at most FFF8h).
pub fn parse_serial_port(v: &str) -> Option<u16> {
    match v {
        "com1" => Some(COM1),
        "com2" => Some(0x2f8),
        "com3" => Some(0x3e8),
        "com4" => Some(0x2e8),
        _ => parse_number(v)
            .filter(|&p| (1..=0xfff8).contains(&p))
            .map(|p| p as u16),
    }
}

/// The `serial=` port alone (the last valid one), found before the rest of the line is parsed,
/// so that the whole boot log, a configuration error included, goes to the chosen port.
pub fn serial_port(line: &str) -> Option<u16> {
    line.split_whitespace()
        .rev()
        .filter_map(|w| w.strip_prefix("serial="))
        .find_map(parse_serial_port)
}

/// The `debug-exit=` port alone, found even when the rest of the line is bad, so that a configuration
/// error can still end a test machine instead of leaving it halted until a timeout.
pub fn debug_exit_port(line: &str) -> Option<u16> {
    line.split_whitespace()
        .rev()
        .filter_map(|w| w.strip_prefix("debug-exit="))
        .filter_map(parse_number)
        .find_map(|p| u16::try_from(p).ok())
}

pub fn parse(line: &str) -> Result<Config, ConfigError<'_>> {
    let mut cfg = Config {
        debug_exit: None,
        tsc_invariant: false,
        log_level: LogLevel::Info,
        console: None,
        serial: COM1,
        guests: [None; MAX_GUESTS],
    };
    let mut count = 0;
    for (i, word) in words(line).enumerate() {
        let word = word?;
        // Multiboot1 loaders (QEMU, GRUB) put the image's path first; every option has a '='.
        if i == 0 && !word.contains('=') {
            continue;
        }
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        match key {
            "guest" => {
                if count == MAX_GUESTS {
                    return Err(ConfigError::TooManyGuests);
                }
                let g = parse_guest(value)?;
                if cfg.guests().any(|o| o.name == g.name) {
                    return Err(ConfigError::DuplicateGuestName(
                        value.split(',').next().unwrap_or(value),
                    ));
                }
                for vf in g.vfs.iter() {
                    if let Some(o) = cfg.guests().find(|o| o.vfs.contains(vf)) {
                        return Err(ConfigError::SharedVf {
                            vf,
                            first: o.name,
                            second: g.name,
                        });
                    }
                }
                if let (Some(mac), Some(o)) = (g.mac, cfg.guests().find(|o| o.mac == g.mac)) {
                    return Err(ConfigError::SharedMac {
                        mac,
                        first: o.name,
                        second: g.name,
                    });
                }
                if let Some((d, o)) = g.disk.and_then(|d| {
                    cfg.guests()
                        .find(|o| o.disk.is_some_and(|od| od.module == d.module))
                        .map(|o| (d, o))
                }) {
                    let other_ro = o.disk.is_some_and(|od| od.read_only);
                    if !(d.read_only && other_ro) {
                        return Err(ConfigError::SharedDisk {
                            module: d.module,
                            first: o.name,
                            second: g.name,
                        });
                    }
                }
                cfg.guests[count] = Some(g);
                count += 1;
            }
            "debug-exit" => {
                let port = parse_number(value).filter(|&p| p <= 0xffff);
                let port = port.ok_or(ConfigError::BadValue {
                    key,
                    value,
                    why: "expected an I/O port number",
                })?;
                cfg.debug_exit = Some(port as u16);
            }
            "serial" => {
                cfg.serial = parse_serial_port(value).ok_or(ConfigError::BadValue {
                    key,
                    value,
                    why: "expected com1, com2, com3, com4 or the I/O port of a 16550 UART (0x2f8)",
                })?;
            }
            "console" => {
                cfg.console = Some(Name::new(value).filter(|_| !value.is_empty()).ok_or(
                    ConfigError::BadValue {
                        key,
                        value,
                        why: "expected the name of a guest",
                    },
                )?)
            }
            "tsc" => {
                if value != "invariant" {
                    return Err(ConfigError::BadValue {
                        key,
                        value,
                        why: "expected invariant",
                    });
                }
                cfg.tsc_invariant = true;
            }
            "loglevel" => {
                cfg.log_level = match value {
                    "error" => LogLevel::Error,
                    "warn" => LogLevel::Warn,
                    "info" => LogLevel::Info,
                    "debug" => LogLevel::Debug,
                    "trace" => LogLevel::Trace,
                    _ => {
                        return Err(ConfigError::BadValue {
                            key,
                            value,
                            why: "expected error|warn|info|debug|trace",
                        })
                    }
                }
            }
            _ => return Err(ConfigError::UnknownWord(word)),
        }
    }
    for g in cfg.guests() {
        let Some(d) = g.disk.filter(|d| !d.read_only) else {
            continue;
        };
        if cfg
            .guests()
            .any(|o| o.kernel == d.module || o.initrd == Some(d.module))
        {
            return Err(ConfigError::DiskIsBootImage {
                guest: g.name,
                module: d.module,
            });
        }
    }
    Ok(cfg)
}

fn parse_guest(desc: &str) -> Result<GuestConfig, ConfigError<'_>> {
    let mut it = fields(desc);
    let name_str = it.next().unwrap_or("");
    let name_ok = !name_str.is_empty()
        && name_str
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name_str.contains('=');
    let name = Name::new(name_str)
        .filter(|_| name_ok)
        .ok_or(ConfigError::BadValue {
            key: "guest",
            value: name_str,
            why: "a guest description starts with its name: letters, digits, - and _, at most 16",
        })?;
    let guest = name_str;
    let mut g = GuestConfig {
        name,
        cores: CpuSet::new(),
        mem: 0,
        kernel: Name::empty(),
        initrd: None,
        cmdline: boot_str::Str::empty(),
        irq: IrqMode::Direct,
        vfs: VfList::default(),
        mac: None,
        disk: None,
        restart: crate::restart::RestartPolicy::default(),
    };
    let mut seen = [false; GUEST_KEYS.len()];
    for field in it {
        let (key, raw) = field.split_once('=').unwrap_or((field, ""));
        let value = unquote(raw);
        let slot = GUEST_KEYS
            .iter()
            .position(|k| *k == key)
            .ok_or(ConfigError::UnknownGuestKey { guest, key })?;
        if core::mem::replace(&mut seen[slot], true) {
            return Err(ConfigError::DuplicateGuestKey { guest, key });
        }
        let bad = |why| ConfigError::BadValue { key, value, why };
        match key {
            "cores" => {
                g.cores = parse_cpus(value)
                    .filter(|s| !s.is_empty())
                    .ok_or(bad("expected cpu numbers like 1, 1-3 or 1-2+5"))?
            }
            "mem" => {
                g.mem = parse_size(value)
                    .filter(|&m| {
                        m >= RAM_GRANULE && m % RAM_GRANULE == 0 && m <= guest_layout::MAX_RAM
                    })
                    .ok_or(bad(
                        "expected a size from 2M to 256G in 2M steps, like 64M, 1G or 5G",
                    ))?
            }
            "kernel" => g.kernel = module_name(key, value)?,
            "initrd" => g.initrd = Some(module_name(key, value)?),
            "cmdline" => {
                g.cmdline =
                    boot_str::Str::unescaped(value).ok_or(bad("guest command line too long"))?
            }
            "vf" => {
                g.vfs = VfList::parse(value).map_err(|e| match e {
                    VfListError::BadFunction => bad(
                        "expected PCI functions like 00:04.1 or 0000:00:04.1, several joined by +",
                    ),
                    // The number in the text is MAX_VFS_PER_GUEST (asserted next to it).
                    VfListError::TooMany => bad("at most 4 VFs per guest"),
                    VfListError::Twice(vf) => ConfigError::SharedVf {
                        vf,
                        first: name,
                        second: name,
                    },
                })?
            }
            "mac" => {
                g.mac = Some(
                    igb::MacAddr::parse(value)
                        .ok()
                        .filter(|m| m.is_unicast())
                        .ok_or(bad("expected a unicast MAC address like 52:54:00:12:34:56"))?,
                )
            }
            "disk" => {
                g.disk = Some(DiskConfig::parse(value).ok_or(bad(
                    "expected a boot module name of at most 16 characters, optionally with `:ro`",
                ))?)
            }
            "irq" => {
                g.irq = IrqMode::parse(value).ok_or(bad("expected direct, avic or emulated"))?
            }
            "on-reset" | "on-crash" => {
                let on = OnStop::parse(value).ok_or(bad("expected restart or end"))?;
                if key == "on-reset" {
                    g.restart.on_reset = on;
                } else {
                    g.restart.on_crash = on;
                }
            }
            _ => {
                g.restart.max_restarts = value
                    .parse()
                    .ok()
                    .filter(|&n| n <= MAX_RESTARTS_LIMIT)
                    .ok_or(bad("expected a number of restarts from 0 to 1000"))?
            }
        }
    }
    if g.mac.is_some() && g.vfs.is_empty() {
        return Err(ConfigError::MacWithoutVf { guest });
    }
    for (i, required) in GUEST_KEYS.iter().enumerate().take(3) {
        if !seen[i] {
            return Err(ConfigError::MissingGuestKey {
                guest,
                key: required,
            });
        }
    }
    Ok(g)
}

/// Keys of a guest description; the first three are required.
const GUEST_KEYS: [&str; 12] = [
    "cores",
    "mem",
    "kernel",
    "initrd",
    "cmdline",
    "irq",
    "vf",
    "on-reset",
    "on-crash",
    "max-restarts",
    "mac",
    "disk",
];

/// The highest `max-restarts=` (a guest restarting more is a loop, not a workload).
const MAX_RESTARTS_LIMIT: u32 = 1000;

fn module_name<'a>(key: &'a str, value: &'a str) -> Result<Name, ConfigError<'a>> {
    Name::new(value)
        .filter(|_| !value.is_empty())
        .ok_or(ConfigError::BadValue {
            key,
            value,
            why: "expected a boot module name of at most 16 characters",
        })
}

/// Checks the guests against the machine: cores exist, are not the service core, are not shared, and
/// the modules they name were loaded.
pub fn validate<'a>(
    cfg: &'a Config,
    cpus: usize,
    has_module: impl Fn(&str) -> bool,
) -> Result<(), ConfigError<'a>> {
    if let Some(name) = &cfg.console {
        if cfg.console_guest().is_none() {
            return Err(ConfigError::NoConsoleGuest(name.as_str()));
        }
    }
    for (i, g) in cfg.guests().enumerate() {
        let guest = g.name.as_str();
        if let Some(cpu) = g.cores.iter().find(|&c| c >= cpus) {
            return Err(ConfigError::NoSuchCpu { guest, cpu, cpus });
        }
        if g.cores.contains(0) {
            return Err(ConfigError::ServiceCore { guest });
        }
        if let Some(other) = cfg.guests().take(i).find(|o| o.cores.intersects(&g.cores)) {
            return Err(ConfigError::SharedCore {
                guest,
                other: other.name.as_str(),
            });
        }
        let disk = g.disk.as_ref().map(|d| &d.module);
        for module in core::iter::once(&g.kernel)
            .chain(g.initrd.iter())
            .chain(disk)
        {
            if !has_module(module.as_str()) {
                return Err(ConfigError::NoSuchModule {
                    guest,
                    module: module.as_str(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_globals_and_guests() {
        let line = r#"/boot/didvisor.elf debug-exit=0xf4 loglevel=debug guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2-3+5,mem=1G,kernel=vmlinuz,initrd=initrd,cmdline="console=ttyS0 quiet, x""#;
        let cfg = parse(line).unwrap();
        assert_eq!(cfg.debug_exit, Some(0xf4));
        assert_eq!(cfg.log_level, LogLevel::Debug);
        assert!(!cfg.tsc_invariant);
        let g: Vec<_> = cfg.guests().collect();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name.as_str(), "a");
        assert_eq!(g[0].cores.to_string(), "1");
        assert_eq!(g[0].mem, 16 << 20);
        assert_eq!(g[0].kernel.as_str(), "testguest");
        assert!(g[0].initrd.is_none());
        assert_eq!(g[1].cores.to_string(), "2-3+5");
        assert_eq!(g[1].mem, 1 << 30);
        assert_eq!(g[1].initrd.unwrap().as_str(), "initrd");
        assert_eq!(g[1].cmdline.as_str(), "console=ttyS0 quiet, x");
        assert_eq!(g[0].irq, IrqMode::Direct);
    }

    #[test]
    fn grub_escaped_quotes_group_like_plain_ones() {
        let cfg =
            parse(r#"guest=a,cores=1,mem=2M,kernel=k,cmdline=\"console=ttyS0 a\\b\""#).unwrap();
        assert_eq!(
            cfg.guests().next().unwrap().cmdline.as_str(),
            "console=ttyS0 a\\b"
        );
    }

    #[test]
    fn a_first_word_without_equals_is_the_image_path() {
        assert_eq!(
            parse("build/didvisor-mb1.elf loglevel=warn")
                .unwrap()
                .log_level,
            LogLevel::Warn
        );
        assert_eq!(
            parse("loglevel=warn stray").unwrap_err(),
            ConfigError::UnknownWord("stray")
        );
    }

    #[test]
    fn vf_is_a_pci_function() {
        let cfg = parse("guest=a,cores=1,mem=2M,kernel=k,vf=0000:00:04.1").unwrap();
        let vfs = cfg.guests().next().unwrap().vfs;
        assert_eq!(vfs.len(), 1);
        assert_eq!(vfs.iter().next().unwrap().to_string(), "00:04.1");
        for bad in ["nvme", "00:04.1+", "+00:04.1", "00:04.1+nic"] {
            let line = format!("guest=a,cores=1,mem=2M,kernel=k,vf={bad}");
            assert!(
                matches!(
                    parse(&line).unwrap_err(),
                    ConfigError::BadValue { key: "vf", .. }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_guest_takes_up_to_four_vfs_each_once() {
        let cfg = parse("guest=a,cores=1,mem=2M,kernel=k,vf=00:04.1+0000:00:15.0").unwrap();
        let vfs: std::vec::Vec<_> = cfg
            .guests()
            .next()
            .unwrap()
            .vfs
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(vfs, ["00:04.1", "00:15.0"]);
        let four = "guest=a,cores=1,mem=2M,kernel=k,vf=00:04.1+00:04.2+00:04.3+00:04.4";
        assert_eq!(parse(four).unwrap().guests().next().unwrap().vfs.len(), 4);
        let five = "guest=a,cores=1,mem=2M,kernel=k,vf=00:04.1+00:04.2+00:04.3+00:04.4+00:04.5";
        let e = parse(five).unwrap_err();
        assert!(
            matches!(e, ConfigError::BadValue { key: "vf", .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("at most 4 VFs per guest"), "{e}");
        let twice = parse("guest=a,cores=1,mem=2M,kernel=k,vf=00:04.1+0000:00:04.1").unwrap_err();
        assert!(matches!(twice, ConfigError::SharedVf { .. }), "{twice:?}");
        assert_eq!(
            twice.to_string(),
            "guest a: `vf=` names 00:04.1 twice: a VF is one device"
        );
        // The second VF of one guest is the first of another.
        let shared = parse(
            "guest=a,cores=1,mem=2M,kernel=k,vf=00:04.1+00:15.0 \
             guest=b,cores=2,mem=2M,kernel=k,vf=00:15.2+00:15.0",
        )
        .unwrap_err();
        assert_eq!(
            shared.to_string(),
            "guests a and b both name `vf=00:15.0`: a VF belongs to one guest"
        );
    }

    #[test]
    fn mac_belongs_to_a_vf_and_to_one_guest() {
        let cfg =
            parse("guest=a,cores=1,mem=2M,kernel=k,vf=00:15.0,mac=52:54:00:12:34:56").unwrap();
        let g = cfg.guests().next().unwrap();
        assert_eq!(g.mac.unwrap().to_string(), "52:54:00:12:34:56");
        for bad in [
            "52:54:00:12:34",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "nic",
        ] {
            let line = format!("guest=a,cores=1,mem=2M,kernel=k,vf=00:15.0,mac={bad}");
            assert!(
                matches!(
                    parse(&line).unwrap_err(),
                    ConfigError::BadValue { key: "mac", .. }
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse("guest=a,cores=1,mem=2M,kernel=k,mac=52:54:00:12:34:56").unwrap_err(),
            ConfigError::MacWithoutVf { guest: "a" }
        );
        let twice = "guest=a,cores=1,mem=2M,kernel=k,vf=00:15.0,mac=52:54:00:12:34:56 \
                     guest=b,cores=2,mem=2M,kernel=k,vf=00:15.2,mac=52:54:00:12:34:56";
        let e = parse(twice).unwrap_err();
        assert!(matches!(e, ConfigError::SharedMac { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "guests a and b both name `mac=52:54:00:12:34:56`: an address belongs to one VF"
        );
        // Two guests without `mac=` do not share an address (each gets a derived one).
        assert!(parse(
            "guest=a,cores=1,mem=2M,kernel=k,vf=00:15.0 guest=b,cores=2,mem=2M,kernel=k,vf=00:15.2"
        )
        .is_ok());
    }

    #[test]
    fn restart_policy() {
        use crate::restart::{OnStop, RestartPolicy};
        let g = |extra: &str| {
            let line = format!("guest=a,cores=1,mem=2M,kernel=k{extra}").leak();
            parse(line).map(|c| c.guests().next().unwrap().restart)
        };
        assert_eq!(g("").unwrap(), RestartPolicy::default());
        let p = g(",on-reset=end,on-crash=restart,max-restarts=3").unwrap();
        assert_eq!(
            p,
            RestartPolicy {
                on_reset: OnStop::End,
                on_crash: OnStop::Restart,
                max_restarts: 3
            }
        );
        for (bad, key) in [
            (",on-reset=reboot", "on-reset"),
            (",on-crash=", "on-crash"),
            (",max-restarts=-1", "max-restarts"),
            (",max-restarts=1001", "max-restarts"),
        ] {
            assert!(
                matches!(g(bad), Err(ConfigError::BadValue { key: k, .. }) if k == key),
                "{bad}"
            );
        }
    }

    #[test]
    fn irq_mode() {
        let cfg = parse("guest=a,cores=1,mem=2M,kernel=k,irq=emulated").unwrap();
        assert_eq!(cfg.guests().next().unwrap().irq, IrqMode::Emulated);
        assert!(matches!(
            parse("guest=a,cores=1,mem=2M,kernel=k,irq=posted").unwrap_err(),
            ConfigError::BadValue {
                key: "irq",
                value: "posted",
                ..
            }
        ));
    }

    #[test]
    fn serial_port_by_name_or_number() {
        assert_eq!(
            parse("guest=a,cores=1,mem=2M,kernel=k").unwrap().serial,
            COM1
        );
        let cfg = parse("serial=com2 guest=a,cores=1,mem=2M,kernel=k").unwrap();
        assert_eq!(cfg.serial, 0x2f8);
        assert_eq!(parse("serial=0x3e8").unwrap().serial, 0x3e8);
        for bad in [
            "serial=",
            "serial=com5",
            "serial=0",
            "serial=0xfffa",
            "serial=ttyS1",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("expected com1, com2, com3, com4"),
                "{bad}: {e}"
            );
        }
        // Found before parsing, even when another word is wrong.
        assert_eq!(
            serial_port("/boot/didvisor.elf serial=com2 nonsense"),
            Some(0x2f8)
        );
        assert_eq!(serial_port("serial=com4 serial=zz"), Some(0x2e8));
        assert_eq!(serial_port("loglevel=info"), None);
    }

    #[test]
    fn console_guest_defaults_to_the_first_and_must_exist() {
        let cfg = parse("guest=a,cores=1,mem=2M,kernel=k guest=b,cores=2,mem=2M,kernel=k").unwrap();
        assert_eq!(cfg.console_guest(), Some(0));
        let cfg =
            parse("console=b guest=a,cores=1,mem=2M,kernel=k guest=b,cores=2,mem=2M,kernel=k")
                .unwrap();
        assert_eq!(cfg.console_guest(), Some(1));
        let cfg = parse("console=z guest=a,cores=1,mem=2M,kernel=k").unwrap();
        assert_eq!(
            validate(&cfg, 4, |_| true),
            Err(ConfigError::NoConsoleGuest("z"))
        );
        assert_eq!(parse("").unwrap().console_guest(), None);
    }

    #[test]
    fn empty_line_is_no_guests() {
        let cfg = parse("  ").unwrap();
        assert_eq!(cfg.guest_count(), 0);
        assert_eq!(cfg.debug_exit, None);
    }

    #[test]
    fn errors_name_the_offending_word() {
        use ConfigError::*;
        assert_eq!(
            parse("loglevel=info frobnicate").unwrap_err(),
            UnknownWord("frobnicate")
        );
        assert_eq!(
            parse("guest=a,cores=1,mem=16M,kernel=k,colour=red").unwrap_err(),
            UnknownGuestKey {
                guest: "a",
                key: "colour"
            }
        );
        assert_eq!(
            parse("guest=a,cores=1,kernel=k").unwrap_err(),
            MissingGuestKey {
                guest: "a",
                key: "mem"
            }
        );
        assert_eq!(
            parse("guest=a,cores=1,cores=2,mem=2M,kernel=k").unwrap_err(),
            DuplicateGuestKey {
                guest: "a",
                key: "cores"
            }
        );
        for mem in ["3M", "0", "1M", "257G", "5G1", "18446744073709551615K"] {
            let line = format!("guest=a,cores=1,mem={mem},kernel=k");
            assert!(
                matches!(
                    parse(&line).unwrap_err(),
                    BadValue { key: "mem", value, .. } if value == mem
                ),
                "{mem}"
            );
        }
        for (mem, bytes) in [
            ("5G", 5u64 << 30),
            ("256G", 256 << 30),
            ("3074M", 3074 << 20),
        ] {
            let line = format!("guest=a,cores=1,mem={mem},kernel=k");
            assert_eq!(
                parse(&line).unwrap().guests().next().unwrap().mem,
                bytes,
                "{mem}"
            );
        }
        assert!(matches!(
            parse("guest=a,cores=3-1,mem=2M,kernel=k").unwrap_err(),
            BadValue { key: "cores", .. }
        ));
        assert!(matches!(
            parse("guest=a,cores=x,mem=2M,kernel=k").unwrap_err(),
            BadValue { key: "cores", .. }
        ));
        assert!(matches!(
            parse("guest=,cores=1").unwrap_err(),
            BadValue { key: "guest", .. }
        ));
        assert!(matches!(
            parse("debug-exit=0x10000").unwrap_err(),
            BadValue {
                key: "debug-exit",
                ..
            }
        ));
        assert!(matches!(
            parse("loglevel=loud").unwrap_err(),
            BadValue {
                key: "loglevel",
                ..
            }
        ));
        assert_eq!(
            parse("guest=a,cmdline=\"x y").unwrap_err(),
            UnterminatedQuote
        );
        assert_eq!(
            parse("guest=a,cores=1,mem=2M,kernel=k guest=a,cores=2,mem=2M,kernel=k").unwrap_err(),
            DuplicateGuestName("a")
        );
        let shared = parse(
            "guest=a,cores=1,mem=2M,kernel=k,vf=00:04.1 guest=b,cores=2,mem=2M,kernel=k,vf=0000:00:04.1",
        )
        .unwrap_err();
        assert!(matches!(shared, SharedVf { first, second, .. }
            if first.as_str() == "a" && second.as_str() == "b"));
        assert_eq!(
            shared.to_string(),
            "guests a and b both name `vf=00:04.1`: a VF belongs to one guest"
        );
        // Different VFs of one PF are fine.
        parse(
            "guest=a,cores=1,mem=2M,kernel=k,vf=00:04.1 guest=b,cores=2,mem=2M,kernel=k,vf=00:04.2",
        )
        .unwrap();
    }

    #[test]
    fn disks() {
        use ConfigError::*;
        let cfg = parse(
            "guest=a,cores=1,mem=2M,kernel=k,disk=d guest=b,cores=2,mem=2M,kernel=k,disk=e:ro",
        )
        .unwrap();
        let g: Vec<_> = cfg.guests().collect();
        assert_eq!(g[0].disk.unwrap().module.as_str(), "d");
        assert!(!g[0].disk.unwrap().read_only);
        assert_eq!(g[1].disk.unwrap().module.as_str(), "e");
        assert!(g[1].disk.unwrap().read_only);
        for bad in [
            "disk=",
            "disk=:ro",
            "disk=a:b",
            "disk=a:ro:ro",
            "disk=seventeen-chars-x",
        ] {
            let line = format!("guest=a,cores=1,mem=2M,kernel=k,{bad}");
            assert!(
                matches!(parse(&line).unwrap_err(), BadValue { key: "disk", .. }),
                "{bad}"
            );
        }
        // A writable disk belongs to one guest; read-only ones may be shared.
        let e = parse(
            "guest=a,cores=1,mem=2M,kernel=k,disk=d guest=b,cores=2,mem=2M,kernel=k,disk=d:ro",
        )
        .unwrap_err();
        assert!(
            matches!(e, SharedDisk { first, second, .. } if first.as_str() == "a" && second.as_str() == "b")
        );
        assert!(e.to_string().contains("both name `disk=d`"), "{e}");
        parse(
            "guest=a,cores=1,mem=2M,kernel=k,disk=d:ro guest=b,cores=2,mem=2M,kernel=k,disk=d:ro",
        )
        .unwrap();
        // Not writable over what a guest boots from.
        let e = parse(
            "guest=a,cores=1,mem=2M,kernel=k,initrd=i guest=b,cores=2,mem=2M,kernel=k2,disk=i",
        )
        .unwrap_err();
        assert!(
            matches!(e, DiskIsBootImage { guest, module } if guest.as_str() == "b" && module.as_str() == "i")
        );
        parse("guest=a,cores=1,mem=2M,kernel=k,disk=k:ro").unwrap();
        // The module must exist.
        let cfg = parse("guest=a,cores=1,mem=2M,kernel=k,disk=nodisk").unwrap();
        assert_eq!(
            validate(&cfg, 4, |m| m == "k"),
            Err(NoSuchModule {
                guest: "a",
                module: "nodisk"
            })
        );
        validate(&cfg, 4, |m| m == "k" || m == "nodisk").unwrap();
    }

    #[test]
    fn validation_against_the_machine() {
        let cfg =
            parse("guest=a,cores=1,mem=2M,kernel=k guest=b,cores=2-3,mem=2M,kernel=k,initrd=i")
                .unwrap();
        let modules = |m: &str| m == "k" || m == "i";
        assert_eq!(validate(&cfg, 4, modules), Ok(()));
        assert_eq!(
            validate(&cfg, 3, modules),
            Err(ConfigError::NoSuchCpu {
                guest: "b",
                cpu: 3,
                cpus: 3
            })
        );
        assert_eq!(
            validate(&cfg, 4, |m| m == "k"),
            Err(ConfigError::NoSuchModule {
                guest: "b",
                module: "i"
            })
        );
        let shared =
            parse("guest=a,cores=1-2,mem=2M,kernel=k guest=b,cores=2,mem=2M,kernel=k").unwrap();
        assert_eq!(
            validate(&shared, 4, modules),
            Err(ConfigError::SharedCore {
                guest: "b",
                other: "a"
            })
        );
        let service = parse("guest=a,cores=0-1,mem=2M,kernel=k").unwrap();
        assert_eq!(
            validate(&service, 4, modules),
            Err(ConfigError::ServiceCore { guest: "a" })
        );
    }

    #[test]
    fn error_messages_are_readable() {
        let e = ConfigError::NoSuchCpu {
            guest: "b",
            cpu: 5,
            cpus: 3,
        };
        assert_eq!(
            e.to_string(),
            "guest b: cores: cpu 5 does not exist (this machine has cpus 0-2)"
        );
    }

    #[test]
    fn debug_exit_port_survives_other_errors() {
        assert_eq!(debug_exit_port("bogus debug-exit=0xf4 guest=?"), Some(0xf4));
        assert_eq!(debug_exit_port("debug-exit=0x1ffff"), None);
        assert_eq!(debug_exit_port(""), None);
    }

    #[test]
    fn sizes_and_numbers() {
        assert_eq!(parse_size("4096K"), Some(4 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("99999999999999G"), None);
        assert_eq!(parse_number("0x3f8"), Some(0x3f8));
    }

    #[test]
    fn tsc_invariant_is_vouched_for_explicitly() {
        assert!(parse("tsc=invariant").unwrap().tsc_invariant);
        assert_eq!(
            parse("tsc=stable").unwrap_err(),
            ConfigError::BadValue {
                key: "tsc",
                value: "stable",
                why: "expected invariant"
            }
        );
    }
}
