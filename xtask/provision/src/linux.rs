//! The stock Debian 12 Linux guest: the unmodified kernel package (fetched by `deps`), the
//! busybox initramfs (written by `build`) and the command lines `linux-run` and `linux-qemu`
//! boot it with.
//!
//! Paths (under `build/`, or `$DIDVISOR_BUILD_DIR`):
//! - `build/linux/vmlinuz`: the bzImage from the package's `boot/vmlinuz-<ver>`, unmodified.
//! - `build/linux/modules/`: `kernel/drivers/nvme/host/{nvme,nvme-core}.ko`,
//!   `kernel/drivers/net/ethernet/intel/igbvf/igbvf.ko` (the NIC VF's driver),
//!   `kernel/drivers/virtio/virtio_pci.ko`, `kernel/drivers/block/virtio_blk.ko` and their dependency
//!   chain (uncompressed, as the package ships them), laid out like `/lib/modules/<ver>/`, with
//!   a `modules.dep` in depmod's format (the package has none: depmod runs at install time).
//! - `build/linux/VERSION`: the kernel release, like `6.1.0-56-amd64`.
//! - `build/linux/initrd.cpio.gz`: the initramfs (see [`build_initrd`]).
//!
//! The package is downloaded once into the cache ([`cache_dir`]: `$DIDVISOR_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/didvisor`, else `~/.cache/didvisor`) and unpacked there as
//! `linux/<ver>/`; it survives `cargo clean` and is shared by all checkouts on the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cpio::Newc;
use crate::{fail, Result};

/// The Debian meta package whose dependency names the current kernel ABI.
pub const KERNEL_META: &str = "linux-image-amd64";

/// The modules the guest needs later (paths under `/lib/modules/<ver>/`); their dependencies
/// (from each module's `.modinfo` `depends=`) are added.
pub const NEEDED_MODULES: &[&str] = &[
    "kernel/drivers/nvme/host/nvme.ko",
    "kernel/drivers/nvme/host/nvme-core.ko",
    "kernel/drivers/net/ethernet/intel/igbvf/igbvf.ko",
    // The Debian kernel builds virtio, virtio_ring, virtio_pci and virtio_blk as modules.
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
];

/// The guest kernel's command line, the same under the hypervisor and directly in QEMU.
/// `panic=-1`: reboot at once on a panic (QEMU's `-no-reboot` turns that into an exit).
pub const GUEST_CMDLINE: &str = "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1";

/// The hypervisor's `guest=` word for the Linux guest: `{irq}` becomes the interrupt mode and
/// `{cmdline}` the guest command line (see kernel/src/config.rs for the syntax).
pub const LINUX_GUEST: &str =
    "guest=lin,cores=1,mem=256M,kernel=linux,initrd=initrd,irq={irq},cmdline=\"{cmdline}\"";

/// Boot module names used in [`LINUX_GUEST`].
pub const KERNEL_MODULE_NAME: &str = "linux";
pub const INITRD_MODULE_NAME: &str = "initrd";

/// The line guest/init.sh prints last, before `poweroff -f`.
pub const DONE_LINE: &str = "didvisor-guest: done";

/// The static busybox from the `busybox-static` package.
pub const BUSYBOX: &str = "/bin/busybox";

/// The applets linked to `/bin/busybox` in the initramfs (what guest/init.sh uses, and a few
/// more for a shell on the console).
pub const APPLETS: &[&str] = &[
    "sh",
    "mount",
    "umount",
    "echo",
    "cat",
    "nproc",
    "uname",
    "poweroff",
    "sha256sum",
    "md5sum",
    "dd",
    "head",
    "seq",
    "sleep",
    "mkdir",
    "grep",
    "insmod",
    "modprobe",
    "lsmod",
    "ls",
    "dmesg",
    "cut",
    "tr",
    "wc",
    "sync",
    "basename",
    "taskset",
    "ip",
    "ping",
    "wget",
    "timeout",
    "nc",
    "kill",
];

/// The guest command line with `extra` (like `didvisor.test=nvme`) appended.
pub fn guest_cmdline(extra: &str) -> String {
    format!("{GUEST_CMDLINE} {}", extra.trim())
        .trim_end()
        .to_string()
}

/// [`LINUX_GUEST`] filled in.
pub fn guest_spec(irq: &str, extra: &str) -> String {
    LINUX_GUEST
        .replace("{irq}", irq)
        .replace("{cmdline}", &guest_cmdline(extra))
}

pub fn linux_dir() -> PathBuf {
    ::tests::build_dir().join("linux")
}

pub fn vmlinuz() -> PathBuf {
    linux_dir().join("vmlinuz")
}

pub fn initrd() -> PathBuf {
    linux_dir().join("initrd.cpio.gz")
}

pub fn modules_dir() -> PathBuf {
    linux_dir().join("modules")
}

pub fn version_file() -> PathBuf {
    linux_dir().join("VERSION")
}

pub fn init_script() -> PathBuf {
    ::tests::repo_root().join("guest").join("init.sh")
}

/// The evaluation's workload program (`cargo xtask bench`), C, built static with the host's gcc
/// and glibc (`gcc` and `libc6-dev`, which any machine that links Rust programs has).
pub fn bench_source() -> PathBuf {
    ::tests::repo_root()
        .join("guest")
        .join("bench")
        .join("didbench.c")
}

pub fn bench_binary() -> PathBuf {
    linux_dir().join("didbench")
}

/// Where the initramfs has the workload program.
pub const BENCH_IN_GUEST: &str = "bin/didbench";

/// The memory test over the guest's RAM above 4 GiB (init step `memtest`), built like the
/// workload program.
pub fn memtest_source() -> PathBuf {
    ::tests::repo_root()
        .join("guest")
        .join("memtest")
        .join("didmemtest.c")
}

/// Where the initramfs has the memory test.
pub const MEMTEST_IN_GUEST: &str = "bin/didmemtest";

/// Where downloaded packages are kept between runs (outside the work tree).
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("DIDVISOR_CACHE_DIR") {
        return ::tests::repo_root().join(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return d.join("didvisor");
    }
    match var("HOME") {
        Some(h) => h.join(".cache").join("didvisor"),
        None => ::tests::target_dir().join("guest-cache"),
    }
}

/// The kernel release from `apt-cache depends linux-image-amd64` ("  Depends:
/// linux-image-6.1.0-56-amd64" gives "6.1.0-56-amd64").
pub fn parse_kernel_abi(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        let l = l.trim().trim_start_matches('|');
        let pkg = l.strip_prefix("Depends:")?.trim();
        let ver = pkg.strip_prefix("linux-image-")?;
        let ok = ver.ends_with("-amd64")
            && ver.starts_with(|c: char| c.is_ascii_digit())
            && ver
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
        ok.then(|| ver.to_string())
    })
}

fn apt_cache_abi() -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["depends", KERNEL_META])
        .output()
        .ok()?;
    parse_kernel_abi(&String::from_utf8_lossy(&out.stdout))
}

fn apt_update() -> Result {
    println!("xtask: apt-get update");
    crate::deps::apt(&["update"]).map_err(|e| {
        format!(
            "{}\n(apt cannot reach the Debian archive: the guest kernel package cannot be \
             fetched)",
            e.msg
        )
        .into()
    })
}

/// The kernel release apt offers now, running `apt-get update` first when the package lists
/// know no kernel (a fresh machine).
fn resolve_abi() -> Result<String> {
    if let Some(v) = apt_cache_abi() {
        return Ok(v);
    }
    if !crate::deps::is_root() {
        return fail(format!(
            "`apt-cache depends {KERNEL_META}` names no kernel package: the apt package lists \
             are empty or stale; run `apt-get update` as root (or `cargo xtask deps` as root)"
        ));
    }
    apt_update()?;
    apt_cache_abi().ok_or_else(|| {
        format!(
            "`apt-cache depends {KERNEL_META}` names no linux-image-<ver>-amd64 package even \
             after apt-get update; check the apt sources"
        )
        .into()
    })
}

fn mkdirs(d: &Path) -> Result {
    fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()).into())
}

fn read(p: &Path) -> Result<Vec<u8>> {
    fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()).into())
}

/// Writes `data` unless the file already holds exactly that (keeps mtimes of unchanged
/// outputs). Returns whether it wrote.
fn write_if_changed(p: &Path, data: &[u8]) -> Result<bool> {
    if fs::read(p).is_ok_and(|old| old == data) {
        return Ok(false);
    }
    if let Some(d) = p.parent() {
        mkdirs(d)?;
    }
    let tmp = p.with_extension("xtask-tmp");
    fs::write(&tmp, data).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    fs::rename(&tmp, p)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), p.display()))?;
    Ok(true)
}

/// Downloads `linux-image-<abi>` with apt and unpacks it into `dest` (atomically: a partial
/// unpack never looks complete).
fn download_and_unpack(abi: &str, dest: &Path) -> Result {
    let pkg = format!("linux-image-{abi}");
    let dl = cache_dir().join("download");
    let _ = fs::remove_dir_all(&dl);
    mkdirs(&dl)?;
    println!(
        "xtask: fetching Debian kernel {pkg} (apt-get download into {})",
        dl.display()
    );
    // As root, apt drops to the `_apt` user for downloads, which cannot write into a root-owned
    // cache: download as the caller instead (no warning).
    let mut c = Command::new("apt-get");
    c.args(["-q", "-o", "APT::Sandbox::User=root", "download", &pkg])
        .current_dir(&dl)
        .env("DEBIAN_FRONTEND", "noninteractive");
    let watched = dl.clone();
    let what = format!("downloading {pkg}");
    crate::progress::run_with_heartbeat(&mut c, &what, move || {
        Some(format!(
            "{} written",
            crate::progress::bytes(crate::progress::dir_bytes(&watched))
        ))
    })
    .map_err(|e| {
        format!(
            "{}\ncannot download {pkg}: apt cannot reach the Debian archive, or its package \
             lists are stale (run `apt-get update` as root and retry)",
            e.msg
        )
    })?;
    let deb = fs::read_dir(&dl)
        .map_err(|e| format!("reading {}: {e}", dl.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {pkg} left no .deb in {}", dl.display()))?;
    let tmp = dest.with_extension("unpacking");
    let _ = fs::remove_dir_all(&tmp);
    println!(
        "xtask: unpacking {} into {}",
        deb.file_name().unwrap_or_default().to_string_lossy(),
        dest.display()
    );
    crate::progress::run_with_heartbeat(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp),
        "unpacking the kernel package",
        || None,
    )?;
    let _ = fs::remove_dir_all(dest);
    fs::rename(&tmp, dest)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), dest.display()))?;
    // The unpacked tree is the cache; the .deb (70 MB) is not needed any more.
    let _ = fs::remove_dir_all(&dl);
    Ok(())
}

/// `deps`: makes sure the current Debian 12 kernel package is in the cache and stages
/// `build/linux/{vmlinuz,modules/,VERSION}`. Returns the kernel release.
pub fn fetch_kernel() -> Result<String> {
    let abi = resolve_abi()?;
    let root = cache_dir().join("linux").join(&abi);
    let vmlinuz_src = root.join("boot").join(format!("vmlinuz-{abi}"));
    if vmlinuz_src.is_file() {
        println!(
            "xtask: Debian kernel linux-image-{abi}: cached in {}",
            root.display()
        );
    } else {
        mkdirs(root.parent().unwrap_or(&root))?;
        let result = download_and_unpack(&abi, &root);
        if let Err(e) = result {
            // A stale index names a package the archive no longer has: update once, retry.
            if !crate::deps::is_root() {
                return Err(e);
            }
            println!("xtask: {}", e.msg);
            apt_update()?;
            let abi2 = resolve_abi()?;
            if abi2 != abi {
                return fetch_kernel();
            }
            download_and_unpack(&abi, &root)?;
        }
        if !vmlinuz_src.is_file() {
            return fail(format!(
                "linux-image-{abi} has no {}",
                vmlinuz_src.display()
            ));
        }
    }
    stage_kernel(&root, &abi)?;
    Ok(abi)
}

/// Copies the kernel and the needed modules from an unpacked package into build/linux/.
fn stage_kernel(root: &Path, abi: &str) -> Result {
    let vmlinuz_src = root.join("boot").join(format!("vmlinuz-{abi}"));
    let image = read(&vmlinuz_src)?;
    // The bzImage boot-protocol signature "HdrS" at 0x202.
    if image.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return fail(format!("{}: not a bzImage", vmlinuz_src.display()));
    }
    let old = fs::read_to_string(version_file()).unwrap_or_default();
    if old.trim() != abi {
        let _ = fs::remove_dir_all(modules_dir());
    }
    write_if_changed(&vmlinuz(), &image)?;
    let modroot = root.join("lib").join("modules").join(abi);
    let mods = resolve_modules(&modroot, NEEDED_MODULES, abi)?;
    for m in &mods {
        write_if_changed(&modules_dir().join(&m.rel), &read(&modroot.join(&m.rel))?)?;
    }
    write_if_changed(
        &modules_dir().join("modules.dep"),
        render_modules_dep(&mods).as_bytes(),
    )?;
    write_if_changed(&version_file(), format!("{abi}\n").as_bytes())?;
    println!(
        "xtask: {} ({abi}), {}/ ({}), {}",
        vmlinuz().display(),
        modules_dir().display(),
        mods.iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        version_file().display()
    );
    Ok(())
}

// ---- Kernel modules -------------------------------------------------------------------

fn le16(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?).into())
}

fn le32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?).into())
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn elf64(b: &[u8]) -> std::result::Result<(), String> {
    if b.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) || le16(b, 0x12) != Some(62) {
        return Err("not a little-endian x86-64 ELF64 file".into());
    }
    Ok(())
}

/// The contents of the ELF64 section named `want`, if any.
fn elf_section<'a>(b: &'a [u8], want: &str) -> std::result::Result<Option<&'a [u8]>, String> {
    elf64(b)?;
    let bad = || "truncated ELF section table".to_string();
    let shoff = le64(b, 0x28).ok_or_else(bad)? as usize;
    let shentsize = le16(b, 0x3a).ok_or_else(bad)? as usize;
    let shnum = le16(b, 0x3c).ok_or_else(bad)? as usize;
    let shstrndx = le16(b, 0x3e).ok_or_else(bad)? as usize;
    let sh = |i: usize| -> Option<(u64, &[u8])> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = le32(b, h)?;
        let off = le64(b, h + 0x18)? as usize;
        let size = le64(b, h + 0x20)? as usize;
        Some((name, b.get(off..off.checked_add(size)?)?))
    };
    let (_, strtab) = sh(shstrndx).ok_or_else(bad)?;
    for i in 0..shnum {
        let (name, data) = sh(i).ok_or_else(bad)?;
        let name = strtab.get(name as usize..).unwrap_or_default();
        let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
        if name == want.as_bytes() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Whether an ELF64 executable asks for a program interpreter (is dynamically linked).
pub fn elf_has_interp(b: &[u8]) -> std::result::Result<bool, String> {
    elf64(b)?;
    let bad = || "truncated ELF program headers".to_string();
    let phoff = le64(b, 0x20).ok_or_else(bad)? as usize;
    let phentsize = le16(b, 0x36).ok_or_else(bad)? as usize;
    let phnum = le16(b, 0x38).ok_or_else(bad)? as usize;
    for i in 0..phnum {
        const PT_INTERP: u64 = 3;
        if le32(b, phoff + i * phentsize).ok_or_else(bad)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The `key=value` strings of a kernel module's `.modinfo` section.
pub fn modinfo(ko: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let data = elf_section(ko, ".modinfo")?.ok_or("no .modinfo section")?;
    Ok(data
        .split(|&c| c == 0)
        .filter_map(|s| {
            let s = std::str::from_utf8(s).ok()?;
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// Module names treat `-` and `_` alike.
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// One module of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelModule {
    /// The module name (`nvme_core`).
    pub name: String,
    /// The path under `/lib/modules/<ver>/` (`kernel/drivers/nvme/host/nvme-core.ko`).
    pub rel: String,
    /// Direct dependencies (module names).
    pub depends: Vec<String>,
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) -> Result {
    let rd = fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for e in rd {
        let e = e.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let p = e.path();
        let ft = e.file_type().map_err(|e| format!("{}: {e}", p.display()))?;
        if ft.is_dir() {
            walk(&p, base, out)?;
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// `wanted` (paths under `modroot`) and everything they depend on, in load order (every
/// module after its dependencies). Checks each module's vermagic against `abi`.
pub fn resolve_modules(modroot: &Path, wanted: &[&str], abi: &str) -> Result<Vec<KernelModule>> {
    let mut files = Vec::new();
    walk(&modroot.join("kernel"), modroot, &mut files)?;
    // Module name -> path; compressed modules are recorded so we can say why they don't do.
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        let base = f.rsplit('/').next().unwrap_or(&f);
        if let Some(stem) = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .find_map(|x| base.strip_suffix(x))
        {
            by_name.insert(module_key(stem), f);
        }
    }
    let mut infos: BTreeMap<String, KernelModule> = BTreeMap::new();
    let mut todo: Vec<String> = Vec::new();
    for w in wanted {
        let base = w.rsplit('/').next().unwrap_or(w);
        todo.push(module_key(base.strip_suffix(".ko").unwrap_or(base)));
    }
    let roots = todo.clone();
    while let Some(name) = todo.pop() {
        if infos.contains_key(&name) {
            continue;
        }
        let rel = by_name
            .get(&name)
            .ok_or_else(|| format!("kernel module {name} not found under {}", modroot.display()))?;
        if !rel.ends_with(".ko") {
            return fail(format!(
                "{}/{rel}: compressed module; only uncompressed .ko files are supported",
                modroot.display()
            ));
        }
        let path = modroot.join(rel);
        let info = modinfo(&read(&path)?).map_err(|e| format!("{}: {e}", path.display()))?;
        let get = |k: &str| {
            info.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let vermagic = get("vermagic").unwrap_or("");
        if vermagic.split_whitespace().next() != Some(abi) {
            return fail(format!(
                "{}: vermagic `{vermagic}` is not for {abi}",
                path.display()
            ));
        }
        let depends: Vec<String> = get("depends")
            .unwrap_or("")
            .split(',')
            .filter(|d| !d.is_empty())
            .map(module_key)
            .collect();
        todo.extend(depends.iter().cloned());
        infos.insert(
            name.clone(),
            KernelModule {
                name,
                rel: rel.clone(),
                depends,
            },
        );
    }
    // Post-order DFS from the roots: dependencies first.
    fn visit(
        n: &str,
        infos: &BTreeMap<String, KernelModule>,
        done: &mut BTreeSet<String>,
        active: &mut BTreeSet<String>,
        out: &mut Vec<KernelModule>,
    ) -> Result {
        if done.contains(n) {
            return Ok(());
        }
        if !active.insert(n.to_string()) {
            return fail(format!("kernel module dependency cycle through {n}"));
        }
        let m = &infos[n];
        for d in &m.depends {
            visit(d, infos, done, active, out)?;
        }
        active.remove(n);
        done.insert(n.to_string());
        out.push(m.clone());
        Ok(())
    }
    let (mut done, mut active, mut out) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for r in &roots {
        visit(r, &infos, &mut done, &mut active, &mut out)?;
    }
    Ok(out)
}

/// `modules.dep` in depmod's format: `path: dep dep ...`, all dependencies (transitive) in
/// the order modprobe unloads them (loads them last to first).
pub fn render_modules_dep(mods: &[KernelModule]) -> String {
    let by_name: BTreeMap<&str, &KernelModule> =
        mods.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut s = String::new();
    for m in mods {
        // Load order of m's dependencies (post-order), then reversed.
        fn collect<'a>(
            n: &str,
            by_name: &BTreeMap<&str, &'a KernelModule>,
            seen: &mut BTreeSet<String>,
            out: &mut Vec<&'a str>,
        ) {
            let Some(m) = by_name.get(n) else { return };
            for d in &m.depends {
                if seen.insert(d.clone()) {
                    collect(d, by_name, seen, out);
                    if let Some(dm) = by_name.get(d.as_str()) {
                        out.push(&dm.rel);
                    }
                }
            }
        }
        let mut deps = Vec::new();
        collect(&m.name, &by_name, &mut BTreeSet::new(), &mut deps);
        deps.reverse();
        s.push_str(&format!("{}:", m.rel));
        for d in deps {
            s.push(' ');
            s.push_str(d);
        }
        s.push('\n');
    }
    s
}

// ---- The initramfs --------------------------------------------------------------------

/// The applets the host's busybox provides (`busybox --list`).
fn busybox_applets() -> Result<BTreeSet<String>> {
    let out = Command::new(BUSYBOX).arg("--list").output().map_err(|e| {
        format!("running {BUSYBOX} --list (install busybox-static: `cargo xtask deps`): {e}")
    })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// The initramfs contents as a newc archive (uncompressed): `/bin/busybox` and its applet
/// links, the `programs` (path, executable), `/dev/console` (5:1) and `/dev/null` (1:3),
/// `/proc`, `/sys`, `/dev`, `/tmp`, `/init` and the modules under `/lib/modules/<abi>/`.
pub fn initramfs(
    busybox: &[u8],
    applets: &[&str],
    programs: &[(&str, &[u8])],
    init: &[u8],
    abi: &str,
    modules: &[(String, Vec<u8>)],
) -> Result<Vec<u8>> {
    let mut a = Newc::new();
    a.dir("dev", 0o755)?;
    a.char_dev("dev/console", 0o600, 5, 1)?;
    a.char_dev("dev/null", 0o666, 1, 3)?;
    a.dir("proc", 0o555)?;
    a.dir("sys", 0o555)?;
    a.dir("tmp", 0o1777)?;
    a.dir("bin", 0o755)?;
    a.file("bin/busybox", 0o755, busybox)?;
    for app in applets {
        a.symlink(&format!("bin/{app}"), "busybox")?;
    }
    for (path, data) in programs {
        a.file(path, 0o755, data)?;
    }
    for (rel, data) in modules {
        a.file(&format!("lib/modules/{abi}/{rel}"), 0o644, data)?;
    }
    a.file("init", 0o755, init)?;
    Ok(a.finish())
}

/// Compiles guest/bench/didbench.c into build/linux/didbench (static: the initramfs has no
/// dynamic loader) and returns the executable.
fn build_bench() -> Result<Vec<u8>> {
    build_static(&bench_source(), &bench_binary())
}

/// Compiles `source` (C) into the static executable `out` and returns it.
fn build_static(source: &Path, out: &Path) -> Result<Vec<u8>> {
    mkdirs(&linux_dir())?;
    let tmp = out.with_extension("xtask-tmp");
    let status = Command::new("gcc")
        .args([
            "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o",
        ])
        .arg(&tmp)
        .arg(source)
        .status()
        .map_err(|e| format!("running gcc (install gcc and libc6-dev: `cargo xtask deps`): {e}"))?;
    if !status.success() {
        return fail(format!(
            "gcc -static {} failed ({status}); static glibc is in libc6-dev",
            source.display()
        ));
    }
    let exe = read(&tmp)?;
    let _ = fs::remove_file(&tmp);
    if elf_has_interp(&exe).map_err(|e| format!("{}: {e}", out.display()))? {
        return fail(format!(
            "{}: linked dynamically despite -static",
            out.display()
        ));
    }
    write_if_changed(out, &exe)?;
    Ok(exe)
}

pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    // GzEncoder writes mtime 0: the same archive gives the same bytes.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data)
        .and_then(|_| enc.finish())
        .map_err(|e| format!("gzip: {e}").into())
}

/// `build`: writes build/linux/initrd.cpio.gz from build/linux/{VERSION,modules/}, the host's
/// static busybox and guest/init.sh.
pub fn build_initrd() -> Result {
    let abi = fs::read_to_string(version_file())
        .map_err(|e| {
            format!(
                "reading {}: {e} (the guest kernel is fetched by `cargo xtask deps`)",
                version_file().display()
            )
        })?
        .trim()
        .to_string();
    let busybox = read(Path::new(BUSYBOX))
        .map_err(|e| format!("{} (install busybox-static: `cargo xtask deps`)", e.msg))?;
    if elf_has_interp(&busybox).map_err(|e| format!("{BUSYBOX}: {e}"))? {
        return fail(format!(
            "{BUSYBOX} is dynamically linked: install busybox-static (not busybox)"
        ));
    }
    let have = busybox_applets()?;
    let missing: Vec<&str> = APPLETS
        .iter()
        .copied()
        .filter(|a| !have.contains(*a))
        .collect();
    if !missing.is_empty() {
        return fail(format!("{BUSYBOX} lacks the applets {}", missing.join(" ")));
    }
    let init = read(&init_script())?;
    if !init.starts_with(b"#!/bin/sh") {
        return fail(format!(
            "{}: must start with #!/bin/sh",
            init_script().display()
        ));
    }
    let mut files = Vec::new();
    walk(&modules_dir(), &modules_dir(), &mut files)?;
    files.sort();
    let mut modules = Vec::new();
    for rel in files {
        let data = read(&modules_dir().join(&rel))?;
        modules.push((rel, data));
    }
    if !modules.iter().any(|(r, _)| r == "modules.dep") {
        return fail(format!(
            "{}: no modules.dep (run `cargo xtask deps`)",
            modules_dir().display()
        ));
    }
    let bench = build_bench()?;
    let memtest = build_static(&memtest_source(), &linux_dir().join("didmemtest"))?;
    let programs = [
        (BENCH_IN_GUEST, bench.as_slice()),
        (MEMTEST_IN_GUEST, memtest.as_slice()),
    ];
    let cpio = initramfs(&busybox, APPLETS, &programs, &init, &abi, &modules)?;
    // Read it back: the entries the kernel must find.
    let entries = crate::cpio::parse(&cpio)?;
    for need in [
        "init",
        "dev/console",
        "bin/busybox",
        "bin/sh",
        BENCH_IN_GUEST,
        MEMTEST_IN_GUEST,
    ] {
        if !entries.iter().any(|e| e.name == need) {
            return fail(format!("initramfs: {need} missing"));
        }
    }
    let gz = gzip(&cpio)?;
    let wrote = write_if_changed(&initrd(), &gz)?;
    println!(
        "xtask: {}: {} ({} entries, {} KiB, {} KiB uncompressed; busybox, init from {}, {} \
         module files for {abi})",
        initrd().display(),
        if wrote { "written" } else { "unchanged" },
        entries.len(),
        gz.len() / 1024,
        cpio.len() / 1024,
        init_script().display(),
        modules.len(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_abi_from_apt_cache() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(parse_kernel_abi(out).as_deref(), Some("6.1.0-56-amd64"));
        let out = "linux-image-amd64\n |Depends: <linux-image-x>\n  Depends: linux-image-6.12.38+deb12-amd64\n";
        assert_eq!(
            parse_kernel_abi(out).as_deref(),
            Some("6.12.38+deb12-amd64")
        );
        assert_eq!(parse_kernel_abi(""), None);
        assert_eq!(
            parse_kernel_abi("N: Unable to locate package linux-image-amd64\n"),
            None
        );
    }

    #[test]
    fn guest_spec_is_one_hypervisor_word() {
        let s = guest_spec("direct", "didvisor.test=nvme");
        assert_eq!(
            s,
            "guest=lin,cores=1,mem=256M,kernel=linux,initrd=initrd,irq=direct,\
             cmdline=\"console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 \
             didvisor.test=nvme\""
        );
        assert!(guest_spec("emulated", "").ends_with("panic=-1\""));
        assert!(LINUX_GUEST.contains(&format!("kernel={KERNEL_MODULE_NAME},")));
        assert!(LINUX_GUEST.contains(&format!("initrd={INITRD_MODULE_NAME},")));
    }

    fn module(name: &str, deps: &[&str]) -> KernelModule {
        KernelModule {
            name: name.into(),
            rel: format!("kernel/{name}.ko"),
            depends: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn modules_dep_lists_transitive_deps_last_loaded_first() {
        // Load order as resolve_modules gives it: dependencies first.
        let mods = [
            module("crc64", &[]),
            module("crc64_rocksoft", &["crc64"]),
            module("crct10dif_common", &[]),
            module("crc_t10dif", &["crct10dif_common"]),
            module("t10_pi", &["crc_t10dif", "crc64_rocksoft"]),
            module("nvme_core", &["t10_pi"]),
            module("nvme", &["nvme_core"]),
        ];
        let dep = render_modules_dep(&mods);
        let line = dep
            .lines()
            .find(|l| l.starts_with("kernel/nvme.ko:"))
            .unwrap();
        let deps: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert_eq!(deps.len(), 6);
        // Loading from the end to the start must load each module after its dependencies.
        let mut loaded: Vec<&str> = Vec::new();
        for d in deps.iter().rev() {
            let m = mods.iter().find(|m| m.rel == *d).unwrap();
            for dd in &m.depends {
                assert!(
                    loaded.contains(&format!("kernel/{dd}.ko").as_str()),
                    "{line}"
                );
            }
            loaded.push(d);
        }
        assert!(dep.contains("kernel/crc64.ko:\n"));
        assert!(dep.contains("kernel/nvme_core.ko: kernel/t10_pi.ko "));
    }

    /// A minimal ELF64 relocatable with a `.modinfo` section.
    fn fake_ko(modinfo: &str) -> Vec<u8> {
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let mut b = vec![0u8; 64];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x12] = 62;
        let mi_off = b.len();
        b.extend_from_slice(modinfo.as_bytes());
        let str_off = b.len();
        b.extend_from_slice(shstr);
        while !b.len().is_multiple_of(8) {
            b.push(0);
        }
        let shoff = b.len();
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        b[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        let sh = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        b.extend(sh(0, 0, 0));
        b.extend(sh(1, mi_off, modinfo.len()));
        b.extend(sh(10, str_off, shstr.len()));
        b
    }

    #[test]
    fn modinfo_and_resolution_on_a_fake_tree() {
        let root = ::tests::target_dir().join("xtask-test-modules");
        let _ = fs::remove_dir_all(&root);
        let abi = "6.1.0-1-amd64";
        let put = |rel: &str, name: &str, deps: &str, magic: &str| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mi = format!("license=GPL\0depends={deps}\0name={name}\0vermagic={magic} SMP\0");
            fs::write(p, fake_ko(&mi)).unwrap();
        };
        put("kernel/drivers/nvme/host/nvme.ko", "nvme", "nvme-core", abi);
        put(
            "kernel/drivers/nvme/host/nvme-core.ko",
            "nvme_core",
            "t10-pi",
            abi,
        );
        put("kernel/block/t10-pi.ko", "t10_pi", "crc64", abi);
        put("kernel/lib/crc64.ko", "crc64", "", abi);
        put("kernel/lib/other.ko", "other", "", abi);
        put(
            "kernel/drivers/net/ethernet/intel/igbvf/igbvf.ko",
            "igbvf",
            "",
            abi,
        );
        let info = modinfo(&fs::read(root.join("kernel/block/t10-pi.ko")).unwrap()).unwrap();
        assert!(info.contains(&("depends".into(), "crc64".into())));
        let wanted = [
            "kernel/drivers/nvme/host/nvme.ko",
            "kernel/drivers/nvme/host/nvme-core.ko",
            "kernel/drivers/net/ethernet/intel/igbvf/igbvf.ko",
        ];
        let mods = resolve_modules(&root, &wanted, abi).unwrap();
        let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["crc64", "t10_pi", "nvme_core", "nvme", "igbvf"]);
        assert_eq!(mods[2].rel, "kernel/drivers/nvme/host/nvme-core.ko");
        let dep = render_modules_dep(&mods);
        assert!(dep.contains("kernel/drivers/net/ethernet/intel/igbvf/igbvf.ko:\n"));
        assert_eq!(
            dep.lines()
                .find(|l| l.starts_with("kernel/drivers/nvme/host/nvme.ko:"))
                .unwrap(),
            "kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko \
             kernel/block/t10-pi.ko kernel/lib/crc64.ko"
        );
        put("kernel/lib/crc64.ko", "crc64", "", "6.1.0-2-amd64");
        let e = resolve_modules(&root, &wanted, abi).unwrap_err();
        assert!(e.msg.contains("vermagic"), "{}", e.msg);
        fs::remove_file(root.join("kernel/lib/crc64.ko")).unwrap();
        fs::write(root.join("kernel/lib/crc64.ko.xz"), b"").unwrap();
        let e = resolve_modules(&root, &wanted, abi).unwrap_err();
        assert!(e.msg.contains("compressed"), "{}", e.msg);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn initramfs_layout() {
        let mods = vec![
            ("kernel/x.ko".to_string(), b"ko".to_vec()),
            ("modules.dep".to_string(), b"kernel/x.ko:\n".to_vec()),
        ];
        let programs: [(&str, &[u8]); 1] = [("bin/prog", b"ELF")];
        let cpio = initramfs(b"BB", &["sh", "ls"], &programs, b"#!/bin/sh\n", "v1", &mods).unwrap();
        let entries = crate::cpio::parse(&cpio).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "dev/null",
                "proc",
                "sys",
                "tmp",
                "bin",
                "bin/busybox",
                "bin/sh",
                "bin/ls",
                "bin/prog",
                "lib",
                "lib/modules",
                "lib/modules/v1",
                "lib/modules/v1/kernel",
                "lib/modules/v1/kernel/x.ko",
                "lib/modules/v1/modules.dep",
                "init"
            ]
        );
        let init = entries.last().unwrap();
        assert_eq!(init.mode, crate::cpio::S_IFREG | 0o755);
        let gz = gzip(&cpio).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(gzip(&cpio).unwrap(), gz, "reproducible");
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, cpio);
    }

    #[test]
    fn applets_cover_the_init_script() {
        let init = fs::read_to_string(init_script()).unwrap();
        for needed in [
            "mount",
            "echo",
            "cat",
            "nproc",
            "uname",
            "poweroff",
            "sha256sum",
            "seq",
            "grep",
            "ip",
            "ping",
            "wget",
        ] {
            assert!(APPLETS.contains(&needed), "{needed}");
            assert!(init.contains(needed), "init.sh does not use {needed}?");
        }
        assert!(init.contains(DONE_LINE));
        assert!(init.starts_with("#!/bin/sh\n"));
    }
}
