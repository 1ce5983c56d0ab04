//! Fuzz targets of the boot-information parsers (see `docs/fuzzing.md`): Multiboot1 and
//! Multiboot2 information blocks are written by the boot loader, and the hypervisor trusts
//! nothing in them.
//!
//! A byte input is fake physical memory whose first byte is at [`MB1_BASE`] / [`MB2_BASE`],
//! with the information block at its start (seeds: `fuzz/corpus/multiboot1/`,
//! `fuzz/corpus/multiboot2/`). Properties: no panic, no hang, a bounded number of memory reads,
//! and an accepted block gives a `BootInfo` within its limits whose every accessor works.

use boot::{BootInfo, Memory, MemoryKind, RsdpSource, MAX_MEMORY_REGIONS, MAX_MODULES};
use hostfuzz::proptest;
use hostfuzz::proptest::prelude::*;
use std::cell::Cell;

const MB1_BASE: u64 = 0x9000;
const MB2_BASE: u64 = 0x1_0000;
const MB1_MAGIC: u32 = boot::multiboot1::BOOTLOADER_MAGIC;
const MB2_MAGIC: u32 = boot::multiboot2::BOOTLOADER_MAGIC;

/// Fake physical memory that counts the reads.
struct Mem {
    base: u64,
    data: Vec<u8>,
    reads: Cell<u64>,
}

impl Mem {
    fn new(base: u64, data: Vec<u8>) -> Self {
        Mem {
            base,
            data,
            reads: Cell::new(0),
        }
    }
    fn end(&self) -> u64 {
        self.base + self.data.len() as u64
    }
}

impl Memory for Mem {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.reads.set(self.reads.get() + 1);
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        self.data.get(off..off.checked_add(len)?)
    }
}

/// Parses `data` (memory at `base`, info at `base`) as the loader with `magic` would hand it
/// over and checks the properties.
fn check(magic: u32, base: u64, data: Vec<u8>) -> Option<BootInfo> {
    let mem = Mem::new(base, data);
    let parsed = boot::parse(magic, base, &mem);
    // Strings are read byte by byte; anything beyond this is a runaway loop.
    let budget = 8 * mem.data.len() as u64 + 64 * 1024;
    assert!(
        mem.reads.get() <= budget,
        "{} memory reads for {} bytes",
        mem.reads.get(),
        mem.data.len()
    );
    let info = match parsed {
        Ok(info) => info,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    invariants(&info, &mem);
    Some(info)
}

fn invariants(info: &BootInfo, mem: &Mem) {
    let (start, end) = info.info_range;
    assert_eq!(start, mem.base);
    assert!(
        start < end && end <= mem.end(),
        "info range {start:#x}..{end:#x}"
    );
    assert!(info.memory().len() <= MAX_MEMORY_REGIONS);
    for r in info.memory() {
        assert!(
            r.start < r.end || (r.start == u64::MAX && r.end == u64::MAX),
            "{r:?}"
        );
        let _ = r.kind.name();
    }
    assert!(info.modules().len() <= MAX_MODULES);
    for m in info.modules() {
        assert!(m.start <= m.end, "module {m:?}");
        let _ = (m.len(), m.is_empty());
        assert!(!m.name.as_str().contains(char::is_whitespace), "{m:?}");
        assert!(info.module(m.name.as_str()).is_some());
        assert!(m.name.as_str().len() <= 64 && m.args.as_str().len() <= 256);
    }
    assert!(info.cmdline.as_str().len() <= 2048 && info.cmdline.as_str().is_ascii());
    assert!(info.loader_name.as_str().len() <= 64);
    if let RsdpSource::Copy { len, .. } = info.rsdp {
        assert!(len <= 36);
    }
    let _ = info.usable_bytes();
    let _ = format!("{:?}", info.rsdp);
}

// ---------------------------------------------------------------------------------------------
// Builders of well-formed blocks (also the seeds of the corpus).

/// Lays out structures one after another in fake memory from `base`.
struct Layout {
    base: u64,
    bytes: Vec<u8>,
}

impl Layout {
    fn new(base: u64, reserve: usize) -> Self {
        Layout {
            base,
            bytes: vec![0; reserve],
        }
    }
    /// Appends `b` at an 8-byte boundary and returns its address.
    fn add(&mut self, b: &[u8]) -> u64 {
        while !self.bytes.len().is_multiple_of(8) {
            self.bytes.push(0);
        }
        let at = self.base + self.bytes.len() as u64;
        self.bytes.extend_from_slice(b);
        at
    }
    fn put_u32(&mut self, at: u64, v: u32) {
        let o = (at - self.base) as usize;
        self.bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
}

fn c_str(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A well-formed Multiboot1 block.
#[derive(Clone, Debug)]
struct Mb1 {
    cmdline: Option<String>,
    loader: Option<String>,
    /// (start, end, string)
    modules: Option<Vec<(u32, u32, String)>>,
    /// (size field >= 20, base, length, type)
    mmap: Option<Vec<(u32, u64, u64, u32)>>,
}

impl Mb1 {
    fn build(&self) -> Vec<u8> {
        // flags, mem_lower/upper, boot_device, cmdline, mods_count/addr, syms (16 bytes),
        // mmap_length/addr, drives, config_table, boot_loader_name: 68 bytes.
        let mut l = Layout::new(MB1_BASE, 68);
        let mut flags = 0b11; // mem_* and boot_device: not read
        if let Some(c) = &self.cmdline {
            flags |= 1 << 2;
            let a = l.add(&c_str(c));
            l.put_u32(MB1_BASE + 16, a as u32);
        }
        if let Some(n) = &self.loader {
            flags |= 1 << 9;
            let a = l.add(&c_str(n));
            l.put_u32(MB1_BASE + 64, a as u32);
        }
        if let Some(mods) = &self.modules {
            flags |= 1 << 3;
            let strings: Vec<u64> = mods.iter().map(|(_, _, s)| l.add(&c_str(s))).collect();
            let mut list = Vec::new();
            for ((start, end, _), s) in mods.iter().zip(&strings) {
                for v in [*start, *end, *s as u32, 0] {
                    list.extend_from_slice(&v.to_le_bytes());
                }
            }
            let a = l.add(&list);
            l.put_u32(MB1_BASE + 20, mods.len() as u32);
            l.put_u32(MB1_BASE + 24, a as u32);
        }
        if let Some(map) = &self.mmap {
            flags |= 1 << 6;
            let mut m = Vec::new();
            for &(size, base, len, ty) in map {
                let mut e = vec![0u8; size as usize + 4];
                e[0..4].copy_from_slice(&size.to_le_bytes());
                e[4..12].copy_from_slice(&base.to_le_bytes());
                e[12..20].copy_from_slice(&len.to_le_bytes());
                e[20..24].copy_from_slice(&ty.to_le_bytes());
                m.extend_from_slice(&e);
            }
            let a = l.add(&m);
            l.put_u32(MB1_BASE + 44, m.len() as u32);
            l.put_u32(MB1_BASE + 48, a as u32);
        }
        l.put_u32(MB1_BASE, flags);
        l.bytes
    }

    /// Like QEMU's Multiboot1 loader hands it over (the unit tests' block).
    fn qemu_like() -> Self {
        Mb1 {
            cmdline: Some("guest=a,cores=1,mem=16M,kernel=testguest".into()),
            loader: Some("qemu".into()),
            modules: Some(vec![
                (0x30_0000, 0x30_8000, "testguest arg1".into()),
                (0x30_8000, 0x30_9000, "/b/other".into()),
            ]),
            mmap: Some(vec![
                (20, 0, 0x9fc00, 1),
                (20, 0xf0000, 0x10000, 2),
                (24, 0x100000, 0x7ee0000, 1),
            ]),
        }
    }
}

/// Multiboot2 tags (spec 3.6).
#[derive(Clone, Debug)]
enum Tag {
    Cmdline(String),
    Loader(String),
    Module(u32, u32, String),
    /// entry_size (>= 20), entries (base, length, type)
    Mmap(u32, Vec<(u64, u64, u32)>),
    /// tag 14 (v1, 20 bytes) or 15 (v2, 36 bytes)
    Acpi(bool),
    Other(u32, Vec<u8>),
}

fn mb2_build(tags: &[Tag]) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    let mut tag = |ty: u32, body: &[u8]| {
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
        b.extend_from_slice(body);
        while !b.len().is_multiple_of(8) {
            b.push(0);
        }
    };
    for t in tags {
        match t {
            Tag::Cmdline(s) => tag(1, &c_str(s)),
            Tag::Loader(s) => tag(2, &c_str(s)),
            Tag::Module(start, end, s) => {
                let mut v = start.to_le_bytes().to_vec();
                v.extend_from_slice(&end.to_le_bytes());
                v.extend_from_slice(&c_str(s));
                tag(3, &v);
            }
            Tag::Mmap(entry_size, entries) => {
                let mut v = entry_size.to_le_bytes().to_vec();
                v.extend_from_slice(&0u32.to_le_bytes());
                for &(base, len, ty) in entries {
                    let mut e = vec![0u8; *entry_size as usize];
                    e[0..8].copy_from_slice(&base.to_le_bytes());
                    e[8..16].copy_from_slice(&len.to_le_bytes());
                    e[16..20].copy_from_slice(&ty.to_le_bytes());
                    v.extend_from_slice(&e);
                }
                tag(6, &v);
            }
            Tag::Acpi(v2) => {
                let mut r = b"RSD PTR ".to_vec();
                r.resize(if *v2 { 36 } else { 20 }, 0);
                r[15] = if *v2 { 2 } else { 0 };
                tag(if *v2 { 15 } else { 14 }, &r);
            }
            Tag::Other(ty, body) => tag(*ty, body),
        }
    }
    tag(0, &[]);
    let total = b.len() as u32;
    b[..4].copy_from_slice(&total.to_le_bytes());
    b
}

fn grub_like() -> Vec<Tag> {
    vec![
        Tag::Cmdline("guest=a,cores=1,mem=16M,kernel=testguest".into()),
        Tag::Loader("GRUB 2.06".into()),
        Tag::Module(0x40_0000, 0x40_2000, "testguest".into()),
        Tag::Mmap(
            24,
            vec![
                (0, 0x9fc00, 1),
                (0x100000, 0x3ff00000, 1),
                (0xfeffc000, 0x4000, 2),
            ],
        ),
        Tag::Acpi(true),
        Tag::Acpi(false),
        Tag::Other(99, vec![1, 2, 3]),
    ]
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// Text a boot loader passes: printable ASCII with blanks, sometimes other bytes (lossy).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::string::string_regex(&format!("[ -~]{{0,{max}}}")).expect("regex"),
        1 => proptest::collection::vec(1..=255u8, 0..max)
            .prop_map(|v| v.into_iter().map(char::from).collect()),
    ]
}

fn map_type() -> impl Strategy<Value = u32> {
    prop_oneof![1..=5u32, any::<u32>()]
}

fn address() -> impl Strategy<Value = u64> {
    prop_oneof![0..0x1_0000_0000u64, hostfuzz::boundary_value()]
}

fn mb1() -> impl Strategy<Value = Mb1> {
    (
        proptest::option::of(text(300)),
        proptest::option::of(text(80)),
        proptest::option::of(proptest::collection::vec(
            (any::<u32>(), any::<u32>(), text(100)),
            0..=MAX_MODULES,
        )),
        proptest::option::of(proptest::collection::vec(
            (
                prop_oneof![Just(20u32), 20..64u32],
                address(),
                address(),
                map_type(),
            ),
            0..=MAX_MEMORY_REGIONS,
        )),
    )
        .prop_map(|(cmdline, loader, modules, mmap)| Mb1 {
            cmdline,
            loader,
            modules,
            mmap,
        })
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        text(300).prop_map(Tag::Cmdline),
        text(80).prop_map(Tag::Loader),
        (any::<u32>(), any::<u32>(), text(100)).prop_map(|(a, b, s)| Tag::Module(a, b, s)),
        (
            prop_oneof![Just(24u32), 20..48u32],
            proptest::collection::vec((address(), address(), map_type()), 0..40)
        )
            .prop_map(|(size, e)| Tag::Mmap(size, e)),
        any::<bool>().prop_map(Tag::Acpi),
        (
            prop_oneof![16..100u32, 16..=u32::MAX],
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(t, b)| Tag::Other(t, b)),
    ]
}

/// The strings a well-formed block hands over, as the parser must see them: up to the first
/// NUL, non-ASCII bytes as '?', cut at `max`.
fn expected_str(s: &str, max: usize) -> String {
    s.bytes()
        .take_while(|&b| b != 0)
        .map(|b| if b.is_ascii() { char::from(b) } else { '?' })
        .take(max)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Targets.

#[test]
fn fuzz_multiboot1() {
    let seed = Mb1::qemu_like().build();
    hostfuzz::run_bytes("multiboot1", 30_000, vec![seed], 4096, |b| {
        check(MB1_MAGIC, MB1_BASE, b.to_vec()).is_some()
    });
}

#[test]
fn fuzz_multiboot2() {
    let seed = mb2_build(&grub_like());
    hostfuzz::run_bytes("multiboot2", 30_000, vec![seed], 4096, |b| {
        check(MB2_MAGIC, MB2_BASE, b.to_vec()).is_some()
    });
}

/// Well-formed Multiboot1 blocks parse, and every field comes back.
#[test]
fn fuzz_multiboot1_well_formed() {
    hostfuzz::run(
        "multiboot1-well-formed",
        5000,
        |_| None,
        mb1,
        |m: Mb1| {
            let info = check(MB1_MAGIC, MB1_BASE, m.build()).expect("well-formed block refused");
            assert_eq!(
                info.cmdline.as_str(),
                expected_str(m.cmdline.as_deref().unwrap_or(""), 2048)
            );
            let modules = m.modules.unwrap_or_default();
            assert_eq!(info.modules().len(), modules.len());
            for (got, (start, end, _)) in info.modules().iter().zip(&modules) {
                assert_eq!(got.start, u64::from(*start));
                assert_eq!(got.end, u64::from(*end).max(u64::from(*start)));
            }
            let map: Vec<_> = m
                .mmap
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.2 != 0)
                .map(|(_, base, len, ty)| (base, base.saturating_add(len), kind(ty)))
                .collect();
            let got: Vec<_> = info
                .memory()
                .iter()
                .map(|r| (r.start, r.end, r.kind))
                .collect();
            assert_eq!(got, map);
            true
        },
    );
}

/// Well-formed Multiboot2 blocks parse (or are refused only for too many entries), and the
/// last command line, the modules and the memory map come back.
#[test]
fn fuzz_multiboot2_well_formed() {
    hostfuzz::run(
        "multiboot2-well-formed",
        5000,
        |_| None,
        || proptest::collection::vec(tag(), 0..12),
        |tags: Vec<Tag>| {
            let modules: Vec<_> = tags
                .iter()
                .filter_map(|t| match t {
                    Tag::Module(a, b, _) => Some((u64::from(*a), u64::from(*b))),
                    _ => None,
                })
                .collect();
            let map: Vec<_> = tags
                .iter()
                .filter_map(|t| match t {
                    Tag::Mmap(_, e) => Some(e),
                    _ => None,
                })
                .flatten()
                .filter(|e| e.1 != 0)
                .map(|&(base, len, ty)| (base, base.saturating_add(len), kind(ty)))
                .collect();
            let mem = Mem::new(MB2_BASE, mb2_build(&tags));
            let parsed = boot::parse(MB2_MAGIC, MB2_BASE, &mem);
            if modules.len() > MAX_MODULES || map.len() > MAX_MEMORY_REGIONS {
                assert!(matches!(parsed, Err(boot::BootError::TooMany(_))));
                return false;
            }
            let info = parsed.expect("well-formed block refused");
            invariants(&info, &mem);
            let cmdline = tags.iter().rev().find_map(|t| match t {
                Tag::Cmdline(s) => Some(s.as_str()),
                _ => None,
            });
            assert_eq!(
                info.cmdline.as_str(),
                expected_str(cmdline.unwrap_or(""), 2048)
            );
            let got: Vec<_> = info.modules().iter().map(|m| (m.start, m.end)).collect();
            let want: Vec<_> = modules.iter().map(|&(a, b)| (a, b.max(a))).collect();
            assert_eq!(got, want);
            let got: Vec<_> = info
                .memory()
                .iter()
                .map(|r| (r.start, r.end, r.kind))
                .collect();
            assert_eq!(got, map);
            true
        },
    );
}

fn kind(ty: u32) -> MemoryKind {
    MemoryKind::from_multiboot(ty)
}

/// Writes the seeds built here into the corpus: `cargo test -p boot --test fuzz -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing a builder"]
fn write_seed_corpus() {
    let write = hostfuzz::write_seed;
    write("multiboot1", "qemu-like.bin", &Mb1::qemu_like().build());
    write("multiboot2", "grub-like.bin", &mb2_build(&grub_like()));
}
