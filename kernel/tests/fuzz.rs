//! Fuzz targets of the kernel's loaders and of its command line (see `docs/fuzzing.md`):
//! guest images come from boot modules and the command line from the boot loader,
//! so none of them may crash the hypervisor or make it write outside a guest's RAM.
//!
//! - `fuzz_elf`: the ELF64 loader against a reference walk of the program headers;
//! - `fuzz_cmdline`, `fuzz_cmdline_round_trip`: the hypervisor command line.

use didvisor::config::{self, Config, IrqMode, LogLevel};
use didvisor::elf;
use didvisor::restart::{OnStop, RestartPolicy};
use guestfw::guest_layout::IMAGE_MIN;
use hostfuzz::proptest;
use hostfuzz::proptest::prelude::*;
use hostfuzz::{is_zero, with_guest, Bytes};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// ELF.

/// A minimal ELF64 executable with one PT_LOAD at `paddr`: 4 bytes of code, 12 of bss (the
/// unit tests' image).
fn tiny_elf(paddr: u64) -> Vec<u8> {
    let mut f = vec![0u8; 64 + 56 + 4];
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[24..32].copy_from_slice(&(paddr + 1).to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
    f[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
    f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&4u64.to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&16u64.to_le_bytes());
    f[120..124].copy_from_slice(&[0x90, 0x90, 0xf4, 0xcc]);
    f
}

fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}

/// A PT_LOAD segment as the reference walk sees it.
struct RefSegment<'a> {
    paddr: u64,
    memsz: u64,
    data: &'a [u8],
}

/// The loadable segments by an independent reading of the ELF-64 spec (tables 2 and 8),
/// `None` where the file is malformed: not ELF64 LE x86-64 ET_EXEC, program header entries
/// smaller than 56 bytes, a header or segment outside the file, filesz > memsz.
fn reference_segments(f: &[u8]) -> Option<(u64, Vec<RefSegment<'_>>)> {
    if f.get(..6)? != b"\x7fELF\x02\x01" || le(f, 18, 2)? != 62 || le(f, 16, 2)? != 2 {
        return None;
    }
    let entry = le(f, 24, 8)?;
    let phoff = le(f, 32, 8)?;
    let phentsize = le(f, 54, 2)?;
    let phnum = le(f, 56, 2)?;
    if phentsize < 56 {
        return None;
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = usize::try_from(phoff.checked_add(i * phentsize)?).ok()?;
        if le(f, ph, 4)? != 1 {
            continue;
        }
        let offset = usize::try_from(le(f, ph.checked_add(8)?, 8)?).ok()?;
        let paddr = le(f, ph.checked_add(24)?, 8)?;
        let filesz = usize::try_from(le(f, ph.checked_add(32)?, 8)?).ok()?;
        let memsz = le(f, ph.checked_add(40)?, 8)?;
        if filesz as u64 > memsz {
            return None;
        }
        let data = f.get(offset..offset.checked_add(filesz)?)?;
        segments.push(RefSegment { paddr, memsz, data });
    }
    Some((entry, segments))
}

/// Loads `image` into a zeroed guest of `guest_len` bytes and compares with the reference:
/// the same verdict, the same guest memory, nothing written when refused.
fn check_elf(image: &[u8], guest_len: usize, min_paddr: u64) -> bool {
    with_guest(guest_len, |guest| check_elf_in(image, guest, min_paddr))
}

fn check_elf_in(image: &[u8], guest: &mut [u8], min_paddr: u64) -> bool {
    let guest_len = guest.len();
    let result = elf::load(image, guest, min_paddr);
    let reference = reference_segments(image).and_then(|(entry, segments)| {
        let fits = segments.iter().all(|s| {
            s.paddr >= min_paddr
                && s.paddr
                    .checked_add(s.memsz)
                    .is_some_and(|end| end <= guest_len as u64)
        });
        let end = segments
            .iter()
            .map(|s| s.paddr.saturating_add(s.memsz))
            .max()
            .unwrap_or(0);
        (fits && end > 0).then_some((entry, end, segments))
    });
    match (result, reference) {
        (Ok(loaded), Some((entry, end, segments))) => {
            assert_eq!((loaded.entry, loaded.end), (entry, end));
            let mut want = vec![0u8; guest_len];
            for s in &segments {
                let at = s.paddr as usize;
                want[at..at + s.data.len()].copy_from_slice(s.data);
                want[at + s.data.len()..at + s.memsz as usize].fill(0);
            }
            assert!(
                *guest == want,
                "guest memory differs from the reference load"
            );
            true
        }
        (Err(e), None) => {
            let _ = e.to_string();
            assert!(is_zero(guest), "refused image {e:?} wrote guest memory");
            false
        }
        (Ok(l), None) => panic!("loaded {l:?} but the reference refuses the image"),
        (Err(e), Some(_)) => panic!("refused ({e:?}) but the reference loads the image"),
    }
}

#[test]
fn fuzz_elf() {
    let guest_len = prop_oneof![Just(0x1_0000usize), Just((MIB + 0x1_0000) as usize)];
    let min_paddr = prop_oneof![Just(0u64), Just(0x1000), Just(IMAGE_MIN)];
    hostfuzz::run(
        "elf",
        15_000,
        |b| Some((Bytes(b), (MIB + 0x1_0000) as usize, IMAGE_MIN)),
        move || {
            (
                hostfuzz::inputs("elf", vec![tiny_elf(0x1000), tiny_elf(IMAGE_MIN)], 512),
                guest_len,
                min_paddr,
            )
        },
        |(image, guest_len, min_paddr): (Bytes, usize, u64)| {
            check_elf(&image, guest_len, min_paddr)
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The hypervisor command line.

/// Real command lines (xtask's, the tests', GRUB-escaped ones).
fn cmdline_seeds() -> Vec<Vec<u8>> {
    [
        "guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2,mem=16M,kernel=testguest",
        "/boot/didvisor.elf debug-exit=0xf4 loglevel=debug guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2-3+5,mem=1G,kernel=vmlinuz,initrd=initrd,cmdline=\"console=ttyS0 quiet\"",
        "guest=big,cores=1,mem=5G,kernel=linux guest=top,cores=2,mem=256G,kernel=linux",
        "debug-exit=0xf4 guest=lin,cores=1,mem=256M,kernel=linux,initrd=initrd,irq=avic,vf=00:04.1,cmdline=\"console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 didvisor.test=nvme\"",
        r#"console=b guest=a,cores=1,mem=2M,kernel=k,cmdline=\"console=ttyS0 a\\b\" guest=b,cores=2,mem=2M,kernel=k,irq=emulated,vf=0000:00:04.1"#,
        "guest=a,cores=1,mem=2M,kernel=k,on-reset=end,on-crash=restart,max-restarts=3 guest=b,cores=2,mem=2M,kernel=k,max-restarts=1000,on-crash=end",
        "guest=lin,cores=1,mem=256M,kernel=linux,vf=00:04.1+0000:00:15.0,mac=52:54:00:12:34:56 guest=b,cores=2,mem=2M,kernel=k,vf=00:04.2+00:04.3+00:04.4+00:15.2",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// The properties of one command line; returns whether it parsed.
fn check_cmdline(line: &str) -> bool {
    let _ = config::debug_exit_port(line);
    let cfg = match config::parse(line) {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    if !line.contains('"') {
        assert_eq!(config::debug_exit_port(line), cfg.debug_exit);
    }
    assert!(cfg.guest_count() <= config::MAX_GUESTS);
    let names: Vec<_> = cfg.guests().map(|g| g.name.as_str()).collect();
    for (i, g) in cfg.guests().enumerate() {
        let name = g.name.as_str();
        assert!(!name.is_empty() && name.len() <= config::MAX_NAME);
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(!names[..i].contains(&name), "duplicate guest {name}");
        assert!(g.vfs.len() <= config::MAX_VFS_PER_GUEST);
        for (j, vf) in g.vfs.iter().enumerate() {
            assert!(
                !cfg.guests().take(i).any(|o| o.vfs.contains(vf)),
                "a VF on two guests"
            );
            assert!(!g.vfs.iter().take(j).any(|o| o == vf), "a VF twice");
        }
        assert!(g.mem >= 2 * MIB && g.mem.is_multiple_of(2 * MIB));
        assert!(g.mem <= guestfw::guest_layout::MAX_RAM);
        assert!(!g.cores.is_empty());
        assert!(!g.kernel.as_str().is_empty() && g.kernel.as_str().len() <= config::MAX_NAME);
        assert!(g.cmdline.as_str().len() <= config::MAX_GUEST_CMDLINE);
        assert!(g.restart.max_restarts <= 1000);
        let _ = (
            g.irq.name(),
            g.vfs.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            g.cores.to_string(),
        );
    }
    if let Some(i) = cfg.console_guest() {
        assert!(i < cfg.guest_count());
    }
    for cpus in [1, 2, 4, 256] {
        if let Err(e) = config::validate(&cfg, cpus, |m| m.len() % 2 == 1) {
            let _ = e.to_string();
        }
    }
    true
}

#[test]
fn fuzz_cmdline() {
    hostfuzz::run(
        "cmdline",
        30_000,
        |b| Some(Bytes(b)),
        || hostfuzz::inputs("cmdline", cmdline_seeds(), 512),
        |b: Bytes| check_cmdline(&String::from_utf8_lossy(&b)),
    );
}

/// One guest of a generated command line.
#[derive(Clone, Debug)]
struct Guest {
    name: String,
    cores: Vec<(usize, usize)>,
    mem_mib: u64,
    kernel: String,
    initrd: Option<String>,
    cmdline: Option<String>,
    irq: Option<IrqMode>,
    /// `vf=` (joined by `+`), at most `MAX_VFS_PER_GUEST`.
    vfs: Vec<(u8, u8, u8)>,
    /// `on-reset=`, `on-crash=` (true: restart) and `max-restarts=`.
    restart: (Option<bool>, Option<bool>, Option<u32>),
}

/// A generated command line: its parts, and how to write the guest command lines.
#[derive(Clone, Debug)]
struct Line {
    path: Option<String>,
    debug_exit: Option<u16>,
    log_level: Option<LogLevel>,
    console: Option<usize>,
    guests: Vec<Guest>,
    /// GRUB style: quotes as `\"`, backslashes doubled.
    grub: bool,
}

impl Line {
    fn render(&self) -> String {
        let mut words = Vec::new();
        if let Some(p) = &self.path {
            words.push(p.clone());
        }
        if let Some(p) = self.debug_exit {
            words.push(format!("debug-exit={p:#x}"));
        }
        if let Some(l) = self.log_level {
            words.push(format!("loglevel={}", format!("{l:?}").to_lowercase()));
        }
        if let Some(c) = self.console {
            words.push(format!("console={}", self.guests[c].name));
        }
        for g in &self.guests {
            let cores: Vec<_> = g
                .cores
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            let mut w = format!(
                "guest={},cores={},mem={}M,kernel={}",
                g.name,
                cores.join("+"),
                g.mem_mib,
                g.kernel
            );
            if let Some(i) = &g.initrd {
                w += &format!(",initrd={i}");
            }
            if let Some(irq) = g.irq {
                w += &format!(",irq={}", irq.name());
            }
            if !g.vfs.is_empty() {
                let vfs: Vec<_> = g
                    .vfs
                    .iter()
                    .map(|(b, d, f)| format!("{b:02x}:{d:02x}.{f}"))
                    .collect();
                w += &format!(",vf={}", vfs.join("+"));
            }
            let word = |restart: bool| if restart { "restart" } else { "end" };
            if let Some(r) = g.restart.0 {
                w += &format!(",on-reset={}", word(r));
            }
            if let Some(r) = g.restart.1 {
                w += &format!(",on-crash={}", word(r));
            }
            if let Some(n) = g.restart.2 {
                w += &format!(",max-restarts={n}");
            }
            if let Some(c) = &g.cmdline {
                if self.grub {
                    w += &format!(",cmdline=\\\"{}\\\"", c.replace('\\', "\\\\"));
                } else {
                    w += &format!(",cmdline=\"{c}\"");
                }
            }
            words.push(w);
        }
        words.join(" ")
    }
}

fn name() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9_-]{1,16}").expect("regex")
}

fn guest() -> impl Strategy<Value = Guest> {
    (
        name(),
        proptest::collection::vec((1..256usize, 0..8usize), 1..4),
        1..2048u64,
        name(),
        proptest::option::of(name()),
        // Anything but a double quote (backslashes are dropped from the plain form below).
        proptest::option::of(proptest::string::string_regex("[ -!#-~]{0,200}").expect("regex")),
        proptest::option::of(prop_oneof![
            Just(IrqMode::Direct),
            Just(IrqMode::Avic),
            Just(IrqMode::Emulated)
        ]),
        proptest::collection::vec(
            (any::<u8>(), 0..32u8, 0..8u8),
            0..=config::MAX_VFS_PER_GUEST,
        ),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(0..=1000u32),
        ),
    )
        .prop_map(
            |(name, cores, mem, kernel, initrd, cmdline, irq, vfs, restart)| Guest {
                name,
                cores: cores
                    .into_iter()
                    .map(|(a, n)| (a, (a + n).min(255)))
                    .collect(),
                mem_mib: mem * 2,
                kernel,
                initrd,
                cmdline,
                irq,
                vfs,
                restart,
            },
        )
}

fn line() -> impl Strategy<Value = Line> {
    (
        proptest::option::of(proptest::string::string_regex("/[a-z/.-]{0,30}").expect("regex")),
        proptest::option::of(any::<u16>()),
        proptest::option::of(prop_oneof![
            Just(LogLevel::Error),
            Just(LogLevel::Warn),
            Just(LogLevel::Info),
            Just(LogLevel::Debug),
            Just(LogLevel::Trace)
        ]),
        any::<prop::sample::Index>(),
        any::<bool>(),
        proptest::collection::vec(guest(), 0..=config::MAX_GUESTS),
        any::<bool>(),
    )
        .prop_map(
            |(path, debug_exit, log_level, console, with_console, mut guests, grub)| {
                let mut vfs = Vec::new();
                for (i, g) in guests.iter_mut().enumerate() {
                    // Names must differ: make them so.
                    g.name.truncate(13);
                    g.name += &format!("-{i}");
                    // So must VFs (a VF belongs to one guest, once): drop a repeated one.
                    g.vfs.retain(|vf| {
                        let new = !vfs.contains(vf);
                        vfs.push(*vf);
                        new
                    });
                    // Only the GRUB form escapes backslashes (the plain form has no escapes).
                    if !grub {
                        if let Some(c) = &mut g.cmdline {
                            c.retain(|ch| ch != '\\');
                        }
                    }
                }
                let console =
                    (with_console && !guests.is_empty()).then(|| console.index(guests.len()));
                Line {
                    path,
                    debug_exit,
                    log_level,
                    console,
                    guests,
                    grub,
                }
            },
        )
}

/// Generated command lines parse to what they say.
#[test]
fn fuzz_cmdline_round_trip() {
    hostfuzz::run(
        "cmdline-round-trip",
        5000,
        |_| None,
        line,
        |l: Line| {
            let text = l.render();
            let cfg: Config =
                config::parse(&text).unwrap_or_else(|e| panic!("`{text}` refused: {e}"));
            assert_eq!(cfg.debug_exit, l.debug_exit);
            assert_eq!(cfg.log_level, l.log_level.unwrap_or(LogLevel::Info));
            assert_eq!(
                cfg.console_guest(),
                l.console.or((!l.guests.is_empty()).then_some(0))
            );
            assert_eq!(cfg.guest_count(), l.guests.len());
            for (got, want) in cfg.guests().zip(&l.guests) {
                assert_eq!(got.name.as_str(), want.name);
                let cores: Vec<usize> = got.cores.iter().collect();
                let mut want_cores: Vec<usize> =
                    want.cores.iter().flat_map(|&(a, b)| a..=b).collect();
                want_cores.sort();
                want_cores.dedup();
                assert_eq!(cores, want_cores);
                assert_eq!(got.mem, want.mem_mib * MIB);
                assert_eq!(got.kernel.as_str(), want.kernel);
                assert_eq!(got.initrd.map(|i| i.as_str().to_string()), want.initrd);
                assert_eq!(got.cmdline.as_str(), want.cmdline.as_deref().unwrap_or(""));
                assert_eq!(got.irq, want.irq.unwrap_or(IrqMode::Direct));
                let vfs: Vec<_> = got
                    .vfs
                    .iter()
                    .map(|b| (b.bus(), b.device(), b.function()))
                    .collect();
                assert_eq!(vfs, want.vfs);
                let on = |r: Option<bool>, default: OnStop| match r {
                    Some(true) => OnStop::Restart,
                    Some(false) => OnStop::End,
                    None => default,
                };
                let p = RestartPolicy::default();
                assert_eq!(
                    got.restart,
                    RestartPolicy {
                        on_reset: on(want.restart.0, p.on_reset),
                        on_crash: on(want.restart.1, p.on_crash),
                        max_restarts: want.restart.2.unwrap_or(p.max_restarts),
                    }
                );
            }
            assert!(check_cmdline(&text));
            true
        },
    );
}

/// Writes the seeds built here into the corpus: `cargo test -p kernel --test fuzz --
/// --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing a builder"]
fn write_seed_corpus() {
    let write = hostfuzz::write_seed;
    write("elf", "tiny.bin", &tiny_elf(IMAGE_MIN));
    for (i, s) in cmdline_seeds().iter().enumerate() {
        write("cmdline", &format!("seed-{i}.bin"), s);
    }
}
