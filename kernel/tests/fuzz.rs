//! Fuzz targets of the kernel's loaders and of its command line (see `docs/fuzzing.md`):
//! guest images and initrds come from boot modules and the command line from the boot loader,
//! so none of them may crash the hypervisor or make it write outside a guest's RAM.
//!
//! - `fuzz_elf`: the ELF64 loader against a reference walk of the program headers;
//! - `fuzz_bzimage`: the bzImage header parser and the Linux boot-protocol loader;
//! - `fuzz_cmdline`, `fuzz_cmdline_round_trip`: the hypervisor command line.

use didvisor::config::{self, Config, IrqMode, LogLevel};
use didvisor::elf;
use didvisor::guest_layout::IMAGE_MIN;
use didvisor::linux::{self, LinuxLayout, ENTRY_64_OFFSET};
use hostfuzz::proptest;
use hostfuzz::proptest::prelude::*;
use hostfuzz::Bytes;

const MIB: u64 = 1 << 20;

thread_local! {
    /// Guest memory, reused from case to case (allocating and first touching megabytes each
    /// case would take most of the time).
    static GUEST: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` bytes of zeroed guest memory.
fn with_guest<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    GUEST.with(|g| {
        let mut g = g.borrow_mut();
        if g.len() < len {
            g.resize(len, 0);
        }
        let guest = &mut g[..len];
        guest.fill(0);
        f(guest)
    })
}

/// All bytes zero (page by page with `memcmp`).
fn is_zero(b: &[u8]) -> bool {
    const PAGE: [u8; 4096] = [0; 4096];
    b.chunks(4096).all(|c| c == &PAGE[..c.len()])
}

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
// bzImage and the Linux boot protocol.

/// A small synthetic bzImage (the unit tests' TestImage with a 1 MiB preferred address and a
/// 64 KiB init_size, so it loads into a few MiB of RAM).
fn small_bzimage() -> Vec<u8> {
    let kernel_len = 0x1000;
    let kernel_at = 4 * 512;
    let mut v = vec![0u8; kernel_at + kernel_len];
    let mut put = |o: usize, b: &[u8]| v[o..o + b.len()].copy_from_slice(b);
    put(0x1F1, &[3]); // setup_sects
    put(0x1F4, &((kernel_len / 16) as u32).to_le_bytes());
    put(0x1FE, &[0x55, 0xAA]);
    put(0x200, &[0xEB, 0x6A]);
    put(0x202, b"HdrS");
    put(0x206, &0x020Fu16.to_le_bytes());
    put(0x211, &[0x01]); // LOADED_HIGH
    put(0x214, &0x10_0000u32.to_le_bytes());
    put(0x22C, &0x7FFF_FFFFu32.to_le_bytes());
    put(0x230, &0x1000u32.to_le_bytes()); // kernel_alignment
    put(0x234, &[1, 12]); // relocatable, min_alignment
    put(0x236, &0x7Fu16.to_le_bytes());
    put(0x238, &2047u32.to_le_bytes());
    put(0x258, &0x10_0000u64.to_le_bytes()); // pref_address
    put(0x260, &0x1_0000u32.to_le_bytes()); // init_size
    for (i, b) in v[kernel_at..].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    v
}

fn layout() -> impl Strategy<Value = LinuxLayout> {
    let standard = (
        proptest::option::of(prop_oneof![Just(0xE_0000u64), any::<u64>()]),
        proptest::option::of((any::<u64>(), any::<u64>())),
    );
    prop_oneof![
        // The hypervisor's own layout.
        8 => standard.prop_map(|(acpi_rsdp, reserved_window)| LinuxLayout {
            acpi_rsdp,
            reserved_window,
            ..LinuxLayout::new(0)
        }),
        // Anything: the loader must refuse a bad layout, not write through it.
        1 => (
            prop_oneof![0..0x10_0000u64, any::<u64>()],
            prop_oneof![0..0x10_0000u64, any::<u64>()],
            prop_oneof![0..0x10_0000u64, any::<u64>()],
        )
            .prop_map(|(boot_params, cmdline, acpi_tables)| LinuxLayout {
                boot_params,
                cmdline,
                acpi_tables,
                acpi_rsdp: None,
                reserved_window: None,
                ram_size: 0,
            }),
    ]
}

/// A Linux load: image, initrd length, command line, RAM size, layout.
type LinuxCase = (Bytes, Option<usize>, String, u64, LinuxLayout);

fn linux_case() -> impl Strategy<Value = LinuxCase> {
    let ram = prop_oneof![
        2 => Just(MIB),
        12 => Just(2 * MIB),
        12 => Just(4 * MIB),
        8 => (1..16u64).prop_map(|m| m * MIB + 0x1000),
        1 => Just(24 * MIB),
        // Room for the Debian seed's 64 MiB init_size at 16 MiB.
        1 => Just(96 * MIB),
    ];
    let cmdline = prop_oneof![
        4 => proptest::string::string_regex("[ -~]{0,80}").expect("regex"),
        1 => proptest::collection::vec(any::<char>(), 0..40).prop_map(|v| v.into_iter().collect()),
        1 => (2000..5000usize).prop_map(|n| "x".repeat(n)),
    ];
    (
        hostfuzz::inputs("bzimage", vec![small_bzimage()], 4096),
        proptest::option::of(prop_oneof![0..0x100usize, 0..0x2_0000usize]),
        cmdline,
        ram,
        layout(),
    )
}

/// The properties of one load; returns whether the kernel was accepted.
fn check_linux((image, initrd_len, cmdline, ram_size, layout): LinuxCase) -> bool {
    let layout = LinuxLayout { ram_size, ..layout };
    let bz = linux::parse_bzimage(&image);
    if let Ok(bz) = &bz {
        let sects = match image[0x1F1] {
            0 => 4,
            n => usize::from(n),
        };
        assert_eq!(bz.kernel_offset, (sects + 1) * 512);
        let k = bz.kernel.as_ptr() as usize - image.as_ptr() as usize;
        assert_eq!(k, bz.kernel_offset);
        assert!(!bz.kernel.is_empty() && k + bz.kernel.len() <= image.len());
        assert!(bz.header_len <= 0x7B && 0x1F1 + bz.header_len <= image.len());
        assert!(bz.init_size >= bz.kernel.len() as u64);
        assert!(!bz.relocatable || bz.kernel_alignment.is_power_of_two());
    }
    let initrd: Option<Vec<u8>> =
        initrd_len.map(|n| (0..n).map(|i| (i % 251) as u8 ^ 0x5A).collect());
    // One page past the guest's RAM: the loader must not write there.
    let guard = 0x1000;
    with_guest(ram_size as usize + guard, |ram| {
        let result = linux::load_linux(ram, &image, initrd.as_deref(), &cmdline, &layout);
        let entry = match result {
            Ok(e) => e,
            Err(e) => {
                let _ = e.to_string();
                assert!(is_zero(ram), "refused ({e:?}) but wrote guest RAM");
                return false;
            }
        };
        let bz = bz.as_ref().expect("loaded an image parse_bzimage refuses");
        check_linux_entry(
            ram,
            ram_size,
            bz,
            entry,
            initrd.as_deref(),
            &cmdline,
            &layout,
        );
        true
    })
}

/// The properties of an accepted load.
fn check_linux_entry(
    ram: &[u8],
    ram_size: u64,
    bz: &linux::BzImage<'_>,
    entry: linux::LinuxEntry,
    initrd: Option<&[u8]>,
    cmdline: &str,
    layout: &LinuxLayout,
) {
    assert!(is_zero(&ram[ram_size as usize..]), "wrote past RAM");
    let k = entry.kernel_gpa;
    let kernel_end = k.checked_add(bz.init_size).expect("kernel end overflows");
    assert!(k >= IMAGE_MIN && kernel_end <= ram_size, "kernel at {k:#x}");
    assert!(k == bz.pref_address || (bz.relocatable && k.is_multiple_of(bz.kernel_alignment)));
    assert_eq!(entry.rip, k + ENTRY_64_OFFSET);
    assert_eq!(entry.rsi, layout.boot_params);
    assert_eq!(&ram[k as usize..k as usize + bz.kernel.len()], bz.kernel);
    let given = initrd.filter(|i| !i.is_empty());
    match (entry.initrd, given) {
        (Some((at, len)), Some(bytes)) => {
            assert_eq!(len, bytes.len() as u64);
            let end = at + len;
            assert!(
                at.is_multiple_of(0x1000) && at >= IMAGE_MIN,
                "initrd at {at:#x}"
            );
            assert!(end <= ram_size && end <= 1 << 32 && end <= bz.initrd_addr_max + 1);
            assert!(end <= k || at >= kernel_end, "initrd overlaps the kernel");
            assert_eq!(&ram[at as usize..end as usize], bytes);
        }
        (None, None) => {}
        (got, _) => panic!(
            "initrd placed as {got:?} for {:?} bytes",
            given.map(|g| g.len())
        ),
    }
    let c = layout.cmdline as usize;
    assert_eq!(&ram[c..c + cmdline.len()], cmdline.as_bytes());
    assert_eq!(ram[c + cmdline.len()], 0);
    let bp = layout.boot_params as usize;
    let cmd_line_ptr = u32::from_le_bytes(ram[bp + 0x228..bp + 0x22C].try_into().unwrap());
    assert_eq!(u64::from(cmd_line_ptr), layout.cmdline);
    assert_eq!(
        usize::from(ram[bp + 0x1E8]),
        linux::e820_map(layout).entries().len()
    );
}

#[test]
fn fuzz_bzimage() {
    hostfuzz::run(
        "bzimage",
        5000,
        |b| {
            Some((
                Bytes(b),
                Some(0x1234),
                "console=ttyS0 quiet".to_string(),
                96 * MIB,
                LinuxLayout::new(0),
            ))
        },
        linux_case,
        check_linux,
    );
}

// ---------------------------------------------------------------------------------------------
// The hypervisor command line.

/// Real command lines (xtask's, the tests', GRUB-escaped ones).
fn cmdline_seeds() -> Vec<Vec<u8>> {
    [
        "guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2,mem=16M,kernel=testguest",
        "/boot/didvisor.elf debug-exit=0xf4 loglevel=debug guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2-3+5,mem=1G,kernel=vmlinuz,initrd=initrd,cmdline=\"console=ttyS0 quiet\"",
        "debug-exit=0xf4 guest=lin,cores=1,mem=256M,kernel=linux,initrd=initrd,irq=avic,vf=00:04.1,cmdline=\"console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 didvisor.test=nvme\"",
        r#"console=b guest=a,cores=1,mem=2M,kernel=k,cmdline=\"console=ttyS0 a\\b\" guest=b,cores=2,mem=2M,kernel=k,irq=emulated,vf=0000:00:04.1"#,
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
        assert!(g.mem >= 2 * MIB && g.mem.is_multiple_of(2 * MIB));
        assert!(!g.cores.is_empty());
        assert!(!g.kernel.as_str().is_empty() && g.kernel.as_str().len() <= config::MAX_NAME);
        assert!(g.cmdline.as_str().len() <= config::MAX_GUEST_CMDLINE);
        let _ = (
            g.irq.name(),
            g.vf.map(|b| b.to_string()),
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
    vf: Option<(u8, u8, u8)>,
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
            if let Some((b, d, f)) = g.vf {
                w += &format!(",vf={b:02x}:{d:02x}.{f}");
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
        proptest::option::of((any::<u8>(), 0..32u8, 0..8u8)),
    )
        .prop_map(
            |(name, cores, mem, kernel, initrd, cmdline, irq, vf)| Guest {
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
                vf,
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
                for (i, g) in guests.iter_mut().enumerate() {
                    // Names must differ: make them so.
                    g.name.truncate(13);
                    g.name += &format!("-{i}");
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
                assert_eq!(got.vf.map(|b| (b.bus(), b.device(), b.function())), want.vf);
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
    write("bzimage", "synthetic-small.bin", &small_bzimage());
    for (i, s) in cmdline_seeds().iter().enumerate() {
        write("cmdline", &format!("seed-{i}.bin"), s);
    }
}
