//! Boot images: the mechanical Multiboot header checks, the GRUB configuration for a
//! Multiboot2 ISO and the `grub-mkrescue` invocation.
//!
//! Shared by `cargo xtask build` / `cargo xtask iso` and the QEMU harness, so an ISO
//! built by hand and one built by a test are made the same way.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Multiboot1 header magic.
pub const MB1_MAGIC: u32 = 0x1BAD_B002;
/// The Multiboot1 header must lie 4-aligned in the first 8192 bytes of the image.
pub const MB1_SEARCH: usize = 8192;
/// Multiboot2 header magic.
pub const MB2_MAGIC: u32 = 0xE852_50D6;
/// The Multiboot2 header must lie 8-aligned in the first 32768 bytes of the image.
pub const MB2_SEARCH: usize = 32768;

fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(bytes: &[u8], off: usize) -> Option<u16> {
    let b = bytes.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// A Multiboot1 header found in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mb1Header {
    /// File offset of the magic.
    pub offset: usize,
    pub flags: u32,
}

/// A Multiboot2 header found in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mb2Header {
    /// File offset of the magic.
    pub offset: usize,
    pub header_length: u32,
    /// Number of tags, the end tag included.
    pub tags: usize,
}

/// Finds and checks the Multiboot1 header: magic 0x1BADB002, 4-aligned, within the first
/// 8192 bytes, `magic + flags + checksum == 0 (mod 2^32)`.
pub fn check_multiboot1(bytes: &[u8]) -> Result<Mb1Header, String> {
    let limit = bytes.len().min(MB1_SEARCH);
    let mut bad = Vec::new();
    for off in (0..limit).step_by(4) {
        if u32_at(bytes, off) != Some(MB1_MAGIC) {
            continue;
        }
        let (Some(flags), Some(checksum)) = (u32_at(bytes, off + 4), u32_at(bytes, off + 8)) else {
            bad.push(format!("magic at {off:#x} but the header is truncated"));
            continue;
        };
        let sum = MB1_MAGIC.wrapping_add(flags).wrapping_add(checksum);
        if sum != 0 {
            bad.push(format!(
                "magic at {off:#x}: flags {flags:#x} checksum {checksum:#x} sum to {sum:#x}, not 0"
            ));
            continue;
        }
        return Ok(Mb1Header { offset: off, flags });
    }
    Err(if bad.is_empty() {
        format!(
            "no Multiboot1 header (magic {MB1_MAGIC:#x}, 4-aligned) in the first {MB1_SEARCH} bytes"
        )
    } else {
        format!("no valid Multiboot1 header: {}", bad.join("; "))
    })
}

/// Finds and checks the Multiboot2 header: magic 0xE85250D6, 8-aligned, within the first
/// 32768 bytes, architecture 0 (i386 protected mode), `magic + arch + header_length +
/// checksum == 0 (mod 2^32)`, and a tag list of 8-aligned tags that ends with the end tag
/// (type 0, size 8) exactly at `header_length`.
pub fn check_multiboot2(bytes: &[u8]) -> Result<Mb2Header, String> {
    let limit = bytes.len().min(MB2_SEARCH);
    let mut bad = Vec::new();
    for off in (0..limit).step_by(8) {
        if u32_at(bytes, off) != Some(MB2_MAGIC) {
            continue;
        }
        match check_mb2_at(bytes, off) {
            Ok(h) => return Ok(h),
            Err(e) => bad.push(format!("magic at {off:#x}: {e}")),
        }
    }
    Err(if bad.is_empty() {
        format!(
            "no Multiboot2 header (magic {MB2_MAGIC:#x}, 8-aligned) in the first {MB2_SEARCH} bytes"
        )
    } else {
        format!("no valid Multiboot2 header: {}", bad.join("; "))
    })
}

fn check_mb2_at(bytes: &[u8], off: usize) -> Result<Mb2Header, String> {
    let (Some(arch), Some(len), Some(checksum)) = (
        u32_at(bytes, off + 4),
        u32_at(bytes, off + 8),
        u32_at(bytes, off + 12),
    ) else {
        return Err("header truncated".into());
    };
    if arch != 0 {
        return Err(format!("architecture {arch}, expected 0 (i386)"));
    }
    let sum = MB2_MAGIC
        .wrapping_add(arch)
        .wrapping_add(len)
        .wrapping_add(checksum);
    if sum != 0 {
        return Err(format!(
            "header_length {len:#x} checksum {checksum:#x}: sum {sum:#x}, not 0"
        ));
    }
    let len = len as usize;
    if len < 24 || !len.is_multiple_of(8) || off + len > bytes.len() {
        return Err(format!(
            "header_length {len:#x} is not a multiple of 8 that is >= 24 and fits the file"
        ));
    }
    let end = off + len;
    let mut tag = off + 16;
    let mut tags = 0;
    loop {
        let (Some(ty), Some(size)) = (u16_at(bytes, tag), u32_at(bytes, tag + 4)) else {
            return Err(format!("tag at {tag:#x} truncated"));
        };
        tags += 1;
        let size = size as usize;
        if size < 8 || tag + size > end {
            return Err(format!(
                "tag type {ty} at {tag:#x} has size {size}, running past the header end {end:#x}"
            ));
        }
        if ty == 0 {
            if size != 8 {
                return Err(format!("end tag at {tag:#x} has size {size}, expected 8"));
            }
            if tag + 8 != end {
                return Err(format!(
                    "end tag at {tag:#x} ends before header_length ({end:#x})"
                ));
            }
            return Ok(Mb2Header {
                offset: off,
                header_length: len as u32,
                tags,
            });
        }
        tag += size.next_multiple_of(8);
        if tag >= end {
            return Err("no end tag (type 0, size 8) before header_length".into());
        }
    }
}

/// Checks the ELF identification: `class64` selects ELFCLASS64/EM_X86_64, otherwise
/// ELFCLASS32/EM_386 (what `objcopy -O elf32-i386` produces).
pub fn check_elf(bytes: &[u8], class64: bool) -> Result<(), String> {
    if bytes.get(0..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    let (class, machine) = (bytes.get(4).copied(), u16_at(bytes, 18));
    let (want_class, want_machine, what) = if class64 {
        (2, 62, "ELF64 x86_64")
    } else {
        (1, 3, "ELF32 i386")
    };
    if class != Some(want_class) || machine != Some(want_machine) || bytes.get(5) != Some(&1) {
        return Err(format!(
            "expected {what} (little endian), found class {class:?} machine {machine:?}"
        ));
    }
    Ok(())
}

/// A boot module: a file and the name (the module's command line) the hypervisor sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: PathBuf,
    pub name: String,
}

impl Module {
    pub fn new(path: impl Into<PathBuf>, name: impl Into<String>) -> Module {
        Module {
            path: path.into(),
            name: name.into(),
        }
    }

    /// Parses `path[=name]`; the name defaults to the file stem (`build/testguest.elf` →
    /// `testguest`).
    pub fn parse(spec: &str) -> Result<Module, String> {
        let (path, name) = match spec.rsplit_once('=') {
            Some((p, n)) if !n.contains('/') => (p, Some(n)),
            _ => (spec, None),
        };
        if path.is_empty() {
            return Err(format!("module `{spec}`: empty path"));
        }
        let name = match name {
            Some(n) if n.is_empty() || n.contains(char::is_whitespace) => {
                return Err(format!("module `{spec}`: name must be one non-empty word"))
            }
            Some(n) => n.to_string(),
            None => Path::new(path)
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| format!("module `{spec}`: no file stem to use as the name"))?
                .to_string(),
        };
        Ok(Module::new(path, name))
    }
}

/// Escapes one word for GRUB's script lexer (backslash before every special character).
fn grub_escape(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        if "\\\"'$;|&<>{}()#`*?[]~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Renders grub.cfg for a Multiboot2 boot of `/boot/didvisor.elf`. `modules` are
/// (file name under /boot, module name) pairs. The command line is split at whitespace
/// and each word is escaped, so GRUB hands the words on unchanged. (GRUB itself
/// backslash-escapes `"`, `'` and `\` in the command line it passes; a word containing
/// a quoted space cannot survive GRUB unchanged.)
pub fn grub_cfg(cmdline: &str, modules: &[(String, String)]) -> String {
    let mut kernel_line = String::from("    multiboot2 /boot/didvisor.elf");
    for word in cmdline.split_whitespace() {
        kernel_line.push(' ');
        kernel_line.push_str(&grub_escape(word));
    }
    let mut s = String::new();
    // Without a video driver GRUB on UEFI prints "error: no suitable video mode found."
    // before booting a Multiboot2 kernel (harmless, but it reads like a failure in the log).
    s.push_str("insmod all_video\n");
    s.push_str("set timeout=0\n");
    s.push_str(&format!("serial {} --speed=115200\n", grub_serial(cmdline)));
    s.push_str("terminal_output serial\n");
    s.push_str("menuentry \"didvisor\" {\n");
    s.push_str(&kernel_line);
    s.push('\n');
    for (file, name) in modules {
        s.push_str(&format!(
            "    module2 /boot/{} {}\n",
            grub_escape(file),
            grub_escape(name)
        ));
    }
    s.push_str("    boot\n}\n");
    s
}

/// GRUB's `serial` port option for the UART the hypervisor's last `serial=` word names (COM1
/// when there is none), so GRUB's menu and the hypervisor's console share one port. The names
/// and numbers are the hypervisor's (`comN`, or an I/O port in hex or decimal, 1-FFF8h); a value
/// it would refuse leaves COM1 here, and the hypervisor's own parser says what is wrong.
fn grub_serial(cmdline: &str) -> String {
    const COM1: u16 = 0x3f8;
    let port = cmdline
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("serial="))
        .and_then(|v| match v {
            "com1" => Some(COM1),
            "com2" => Some(0x2f8),
            "com3" => Some(0x3e8),
            "com4" => Some(0x2e8),
            _ => match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                Some(hex) => u16::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            }
            .filter(|p| (1..=0xfff8).contains(p)),
        });
    match port {
        None | Some(COM1) => "--unit=0".to_string(),
        Some(p) => format!("--port={p:#x}"),
    }
}

/// Chooses the file name under /boot for each module: the source's file name; the same
/// source twice shares one file; different sources with the same file name get a
/// `<index>-` prefix. Returns (file under /boot, module name, source path).
pub fn iso_layout(modules: &[Module]) -> Vec<(String, String, PathBuf)> {
    let mut used: BTreeMap<String, PathBuf> = BTreeMap::new();
    used.insert("didvisor.elf".into(), PathBuf::new());
    let mut out = Vec::new();
    for (i, m) in modules.iter().enumerate() {
        let base = m
            .path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("module{i}"));
        let file = match used.get(&base) {
            None => base,
            Some(p) if *p == m.path => base,
            Some(_) => format!("{i}-{base}"),
        };
        used.insert(file.clone(), m.path.clone());
        out.push((file, m.name.clone(), m.path.clone()));
    }
    out
}

/// Builds a GRUB Multiboot2 ISO (BIOS and UEFI bootable when grub-pc-bin and
/// grub-efi-amd64-bin are installed) at `out`, staging its files under `work`/iso-root.
pub fn make_iso(
    kernel: &Path,
    cmdline: &str,
    modules: &[Module],
    out: &Path,
    work: &Path,
) -> Result<(), String> {
    if cmdline.contains(['\n', '\r']) {
        return Err("the command line must be a single line".into());
    }
    let root = work.join("iso-root");
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|e| format!("removing {}: {e}", root.display()))?;
    }
    let boot = root.join("boot");
    fs::create_dir_all(boot.join("grub"))
        .map_err(|e| format!("creating {}: {e}", boot.display()))?;
    let copy = |from: &Path, to: &Path| {
        fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
    };
    copy(kernel, &boot.join("didvisor.elf"))?;
    let layout = iso_layout(modules);
    for (file, _, src) in &layout {
        copy(src, &boot.join(file))?;
    }
    let names: Vec<(String, String)> = layout.into_iter().map(|(f, n, _)| (f, n)).collect();
    let cfg = grub_cfg(cmdline, &names);
    fs::write(boot.join("grub/grub.cfg"), cfg).map_err(|e| format!("writing grub.cfg: {e}"))?;
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let _ = fs::remove_file(out);
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(out)
        .arg(&root)
        .output()
        .map_err(|e| format!("running grub-mkrescue (run `cargo xtask deps`): {e}"))?;
    if !output.status.success() || !out.exists() {
        return Err(format!(
            "grub-mkrescue failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb1(flags: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0..4].copy_from_slice(&MB1_MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&flags.to_le_bytes());
        let ck = 0u32.wrapping_sub(MB1_MAGIC).wrapping_sub(flags);
        h[8..12].copy_from_slice(&ck.to_le_bytes());
        h
    }

    fn mb2(tags: &[(u16, u32)]) -> Vec<u8> {
        let mut t = Vec::new();
        for &(ty, size) in tags {
            let mut tag = vec![0u8; (size as usize).next_multiple_of(8)];
            tag[0..2].copy_from_slice(&ty.to_le_bytes());
            tag[4..8].copy_from_slice(&size.to_le_bytes());
            t.extend(tag);
        }
        let len = 16 + t.len() as u32;
        let ck = 0u32.wrapping_sub(MB2_MAGIC).wrapping_sub(len);
        let mut h = Vec::new();
        h.extend(MB2_MAGIC.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        h.extend(len.to_le_bytes());
        h.extend(ck.to_le_bytes());
        h.extend(t);
        h
    }

    fn image_with(header: &[u8], at: usize, size: usize) -> Vec<u8> {
        let mut v = vec![0u8; size];
        v[at..at + header.len()].copy_from_slice(header);
        v
    }

    #[test]
    fn mb1_found_when_aligned_and_early() {
        let img = image_with(&mb1(3), 0x1000, 0x3000);
        assert_eq!(
            check_multiboot1(&img),
            Ok(Mb1Header {
                offset: 0x1000,
                flags: 3
            })
        );
        let img = image_with(&mb1(3), 8192 - 12, 8192);
        assert!(check_multiboot1(&img).is_ok());
    }

    #[test]
    fn mb1_rejects_misaligned_late_bad_checksum_and_empty() {
        assert!(check_multiboot1(&image_with(&mb1(3), 0x102, 0x2000)).is_err());
        assert!(check_multiboot1(&image_with(&mb1(3), 8192, 0x4000)).is_err());
        let mut h = mb1(3);
        h[8] ^= 1;
        let e = check_multiboot1(&image_with(&h, 0x40, 0x100)).unwrap_err();
        assert!(e.contains("0x40"), "{e}");
        assert!(check_multiboot1(&[]).is_err());
        // Truncated header at the end of the file.
        assert!(check_multiboot1(&MB1_MAGIC.to_le_bytes()).is_err());
    }

    #[test]
    fn mb2_found_with_tags() {
        // An information-request-like tag of size 12 (padded to 16), then the end tag.
        let h = mb2(&[(1, 12), (0, 8)]);
        let img = image_with(&h, 0x2000, 0x4000);
        assert_eq!(
            check_multiboot2(&img),
            Ok(Mb2Header {
                offset: 0x2000,
                header_length: 40,
                tags: 2
            })
        );
    }

    #[test]
    fn mb2_rejects_bad_headers() {
        let good = mb2(&[(0, 8)]);
        assert!(check_multiboot2(&image_with(&good, 0x8, 0x100)).is_ok());
        // Only 4-aligned.
        assert!(check_multiboot2(&image_with(&good, 0x4, 0x100)).is_err());
        // Too late.
        assert!(check_multiboot2(&image_with(&good, 32768, 40000)).is_err());
        // Bad checksum.
        let mut h = good.clone();
        h[12] ^= 1;
        assert!(check_multiboot2(&image_with(&h, 0, 0x100)).is_err());
        // Architecture 4 (MIPS) with a checksum fixed up.
        let mut h = good.clone();
        h[4] = 4;
        let ck = u32::from_le_bytes(h[12..16].try_into().unwrap()).wrapping_sub(4);
        h[12..16].copy_from_slice(&ck.to_le_bytes());
        let e = check_multiboot2(&image_with(&h, 0, 0x100)).unwrap_err();
        assert!(e.contains("architecture"), "{e}");
        // No end tag: a single non-end tag filling the header.
        let e = check_multiboot2(&image_with(&mb2(&[(1, 8)]), 0, 0x100)).unwrap_err();
        assert!(e.contains("end tag"), "{e}");
        // A tag running past header_length.
        let mut h = mb2(&[(1, 8), (0, 8)]);
        h[20..24].copy_from_slice(&64u32.to_le_bytes());
        assert!(check_multiboot2(&image_with(&h, 0, 0x100)).is_err());
        assert!(check_multiboot2(&[]).is_err());
    }

    #[test]
    fn elf_identification() {
        let mut e64 = vec![0u8; 64];
        e64[0..4].copy_from_slice(b"\x7fELF");
        e64[4] = 2;
        e64[5] = 1;
        e64[18] = 62;
        assert!(check_elf(&e64, true).is_ok());
        assert!(check_elf(&e64, false).is_err());
        let mut e32 = e64.clone();
        e32[4] = 1;
        e32[18] = 3;
        assert!(check_elf(&e32, false).is_ok());
        assert!(check_elf(&e32, true).is_err());
        assert!(check_elf(b"MZ", true).is_err());
    }

    #[test]
    fn module_specs() {
        assert_eq!(
            Module::parse("build/testguest.elf"),
            Ok(Module::new("build/testguest.elf", "testguest"))
        );
        assert_eq!(
            Module::parse("build/testguest.elf=g0"),
            Ok(Module::new("build/testguest.elf", "g0"))
        );
        // An `=` inside a directory name is part of the path.
        assert_eq!(
            Module::parse("a=b/initrd.cpio"),
            Ok(Module::new("a=b/initrd.cpio", "initrd"))
        );
        assert!(Module::parse("x.elf=").is_err());
        assert!(Module::parse("=name").is_err());
    }

    #[test]
    fn grub_cfg_rendering() {
        let cfg = grub_cfg(
            "guest=a,cores=1,mem=16M,kernel=testguest  guest=b,cmdline=\"x\"",
            &[
                ("testguest.elf".into(), "testguest".into()),
                ("initrd.cpio".into(), "rd".into()),
            ],
        );
        assert_eq!(
            cfg,
            "insmod all_video\n\
             set timeout=0\n\
             serial --unit=0 --speed=115200\n\
             terminal_output serial\n\
             menuentry \"didvisor\" {\n    \
             multiboot2 /boot/didvisor.elf guest=a,cores=1,mem=16M,kernel=testguest guest=b,cmdline=\\\"x\\\"\n    \
             module2 /boot/testguest.elf testguest\n    \
             module2 /boot/initrd.cpio rd\n    \
             boot\n}\n"
        );
        assert!(grub_cfg("", &[]).contains("    multiboot2 /boot/didvisor.elf\n"));
    }

    #[test]
    fn grub_uses_the_hypervisors_serial_port() {
        let line = |cmdline| grub_cfg(cmdline, &[]).lines().nth(2).unwrap().to_string();
        let port = |p: &str| format!("serial --port={p} --speed=115200");
        let com1 = "serial --unit=0 --speed=115200";
        assert_eq!(line("guest=a"), com1);
        assert_eq!(line("serial=com2 guest=a"), port("0x2f8"));
        assert_eq!(line("serial=com4"), port("0x2e8"));
        assert_eq!(line("serial=0x3E8"), port("0x3e8"));
        assert_eq!(line("serial=760"), port("0x2f8"));
        // The last word wins, as in the hypervisor.
        assert_eq!(line("serial=com2 serial=com1"), com1);
        // Refused by the hypervisor; GRUB keeps COM1.
        assert_eq!(line("serial=com9"), com1);
        assert_eq!(line("serial=0xfff9"), com1);
    }

    #[test]
    fn iso_layout_dedups_file_names() {
        let mods = [
            Module::new("build/testguest.elf", "a"),
            Module::new("build/testguest.elf", "b"),
            Module::new("other/testguest.elf", "c"),
            Module::new("x/didvisor.elf", "d"),
        ];
        let l = iso_layout(&mods);
        let files: Vec<&str> = l.iter().map(|(f, _, _)| f.as_str()).collect();
        assert_eq!(
            files,
            [
                "testguest.elf",
                "testguest.elf",
                "2-testguest.elf",
                "3-didvisor.elf"
            ]
        );
        assert_eq!(l[1].1, "b");
    }
}
