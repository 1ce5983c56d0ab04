//! A writer for the "newc" cpio format (SVR4 portable ASCII, magic `070701`), the format the
//! Linux kernel unpacks an initramfs from.
//!
//! Every entry is a 110-byte ASCII header — the magic and 13 fields of 8 hex digits: ino, mode,
//! uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize (with
//! the NUL), check (0 in newc) — then the NUL-terminated name padded so that header and name
//! end on a multiple of 4, then the data padded to a multiple of 4. A symlink's data is its
//! target. The archive ends with an entry named `TRAILER!!!`.
//!
//! Names are stored relative (`bin/busybox`); entries belong to root:root and have mtime 0,
//! so the same inputs give byte-identical archives. Missing parent directories are added
//! (mode 0755) before an entry, as the kernel does not create them.

use std::collections::BTreeSet;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFCHR: u32 = 0o020_000;

/// An archive being written into memory.
#[derive(Debug, Default)]
pub struct Newc {
    out: Vec<u8>,
    next_ino: u32,
    /// Every name written so far (directories included).
    names: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl Newc {
    pub fn new() -> Newc {
        Newc::default()
    }

    /// A directory with permission bits `perm` (like 0o755).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), String> {
        let name = self.prepare(path)?;
        self.entry(&name, S_IFDIR | (perm & 0o7777), 2, (0, 0), b"")?;
        self.dirs.insert(name);
        Ok(())
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), String> {
        let name = self.prepare(path)?;
        self.entry(&name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link to `target` (stored as given, relative or absolute).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        if target.is_empty() {
            return Err(format!("cpio: symlink {path}: empty target"));
        }
        let name = self.prepare(path)?;
        self.entry(&name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node `major:minor`.
    pub fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), String> {
        let name = self.prepare(path)?;
        self.entry(&name, S_IFCHR | (perm & 0o7777), 1, (major, minor), b"")
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        // Ino 0, nlink 1, like GNU cpio's trailer.
        write_entry(&mut self.out, 0, TRAILER, 0, 1, (0, 0), b"");
        self.out
    }

    /// Checks the name, rejects duplicates and adds missing parent directories.
    fn prepare(&mut self, path: &str) -> Result<String, String> {
        let name = normalize(path)?;
        if self.names.contains(&name) {
            return Err(format!("cpio: {name} added twice"));
        }
        let mut parent = String::new();
        let comps: Vec<&str> = name.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            if self.dirs.contains(&parent) {
                continue;
            }
            if self.names.contains(&parent) {
                return Err(format!("cpio: {name}: parent {parent} is not a directory"));
            }
            let p = parent.clone();
            self.entry(&p, S_IFDIR | 0o755, 2, (0, 0), b"")?;
            self.dirs.insert(p);
        }
        Ok(name)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), String> {
        if u32::try_from(data.len()).is_err() {
            return Err(format!("cpio: {name}: larger than 4 GiB"));
        }
        self.next_ino += 1;
        write_entry(&mut self.out, self.next_ino, name, mode, nlink, rdev, data);
        self.names.insert(name.to_string());
        Ok(())
    }
}

/// `/bin//sh` -> `bin/sh`; rejects empty names, `.` and `..` components.
fn normalize(path: &str) -> Result<String, String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty() {
        return Err(format!("cpio: bad name `{path}`"));
    }
    if comps.iter().any(|c| *c == "." || *c == "..") {
        return Err(format!("cpio: bad name `{path}` (. or .. component)"));
    }
    let name = comps.join("/");
    if name == TRAILER {
        return Err(format!("cpio: reserved name `{path}`"));
    }
    Ok(name)
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn write_entry(
    out: &mut Vec<u8>,
    ino: u32,
    name: &str,
    mode: u32,
    nlink: u32,
    (rmajor, rminor): (u32, u32),
    data: &[u8],
) {
    // The archive so far is 4-aligned, so aligning the absolute length aligns the entry.
    debug_assert_eq!(out.len() % 4, 0);
    let namesize = name.len() as u32 + 1;
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rmajor,
        rminor,
        namesize,
        0, // check
    ];
    out.extend_from_slice(MAGIC.as_bytes());
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// One entry read back by [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub nlink: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Reads a newc archive (up to and without the trailer): for checks and tests.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        let at = pos;
        let header = bytes
            .get(pos..pos + 110)
            .ok_or(format!("cpio: truncated header at {at:#x}"))?;
        if &header[..6] != MAGIC.as_bytes() {
            return Err(format!("cpio: bad magic at {at:#x}"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let s = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .map_err(|_| format!("cpio: non-ASCII header at {at:#x}"))?;
            u32::from_str_radix(s, 16).map_err(|_| format!("cpio: bad field `{s}` at {at:#x}"))
        };
        let (ino, mode, nlink, size) = (field(0)?, field(1)?, field(4)?, field(6)? as usize);
        let rdev = (field(9)?, field(10)?);
        let namesize = field(11)? as usize;
        pos += 110;
        let name = bytes
            .get(pos..pos + namesize)
            .ok_or(format!("cpio: truncated name at {at:#x}"))?;
        let Some((&0, name)) = name.split_last() else {
            return Err(format!("cpio: name without NUL at {at:#x}"));
        };
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| format!("cpio: non-UTF-8 name at {at:#x}"))?;
        pos = (pos + namesize).next_multiple_of(4);
        let data = bytes
            .get(pos..pos + size)
            .ok_or(format!("cpio: {name}: truncated data"))?
            .to_vec();
        pos = (pos + size).next_multiple_of(4);
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            ino,
            mode,
            nlink,
            rdev,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    #[test]
    fn exact_bytes_of_one_file() {
        let mut a = Newc::new();
        a.file("x", 0o644, b"hello").unwrap();
        let out = a.finish();
        // ino 1, mode 0100644, uid, gid, nlink 1, mtime, size 5, dev 0:0, rdev 0:0, namesize 2.
        let mut want = b"070701".to_vec();
        for f in [1u32, 0o100644, 0, 0, 1, 0, 5, 0, 0, 0, 0, 2, 0] {
            want.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        want.extend_from_slice(b"x\0"); // 110 + 2 = 112: aligned already
        want.extend_from_slice(b"hello\0\0\0");
        want.extend_from_slice(b"070701");
        for f in [0u32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0] {
            want.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        want.extend_from_slice(b"TRAILER!!!\0"); // 110 + 11 = 121 -> 124
        want.extend_from_slice(&[0; 3]);
        assert_eq!(out, want);
        assert_eq!(
            &out[..110],
            b"070701000000010000\
              81a4000000000000000000000001000000000000000500000000000000000000000000000000\
              0000000200000000"
        );
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn padding_for_every_name_and_data_length() {
        let mut a = Newc::new();
        for n in 1..=8 {
            let name = "n".repeat(n);
            let data = vec![b'd'; n];
            a.file(&name, 0o600, &data).unwrap();
        }
        let out = a.finish();
        assert_eq!(out.len() % 4, 0);
        let entries = parse(&out).unwrap();
        assert_eq!(entries.len(), 8);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.name, "n".repeat(i + 1));
            assert_eq!(e.data, vec![b'd'; i + 1]);
            assert_eq!(e.ino, i as u32 + 1);
        }
    }

    #[test]
    fn parents_nodes_links_and_errors() {
        let mut a = Newc::new();
        a.file("/lib/modules/v/kernel/x.ko", 0o644, b"ko").unwrap();
        a.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        assert!(a.file("lib/modules", 0o644, b"").is_err(), "duplicate");
        assert!(
            a.file("dev/console/x", 0o644, b"").is_err(),
            "parent not a dir"
        );
        assert!(a.file("a/../b", 0o644, b"").is_err());
        assert!(a.file("", 0o644, b"").is_err());
        assert!(a.dir("dev", 0o755).is_err(), "implicit parent exists");
        a.dir("proc", 0o555).unwrap();
        let e = parse(&a.finish()).unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lib",
                "lib/modules",
                "lib/modules/v",
                "lib/modules/v/kernel",
                "lib/modules/v/kernel/x.ko",
                "dev",
                "dev/console",
                "bin",
                "bin/sh",
                "proc"
            ]
        );
        assert_eq!(e[0].mode, S_IFDIR | 0o755);
        assert_eq!(e[0].nlink, 2);
        assert_eq!(e[6].mode, S_IFCHR | 0o600);
        assert_eq!(e[6].rdev, (5, 1));
        assert_eq!(e[8].mode, S_IFLNK | 0o777);
        assert_eq!(e[8].data, b"busybox");
        assert_eq!(e[9].mode, S_IFDIR | 0o555);
    }

    /// GNU cpio (installed by `cargo xtask deps`) lists what we wrote, with the right types.
    #[test]
    fn system_cpio_reads_it() {
        let mut a = Newc::new();
        a.dir("proc", 0o755).unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        a.char_dev("dev/null", 0o666, 1, 3).unwrap();
        a.file("bin/busybox", 0o755, &[0x7f, b'E', b'L', b'F', 1, 2, 3])
            .unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.file("init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        let archive = a.finish();

        let run = |args: &[&str]| -> String {
            let mut child = Command::new("cpio")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("running cpio (install it: `cargo xtask deps`)");
            child.stdin.take().unwrap().write_all(&archive).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "cpio {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(
            run(&["-it", "--quiet"]),
            "proc\ndev\ndev/console\ndev/null\nbin\nbin/busybox\nbin/sh\ninit\n"
        );
        let long = run(&["-itv", "--quiet"]);
        let line = |name: &str| {
            long.lines()
                .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
                .unwrap_or_else(|| panic!("{name} not in\n{long}"))
                .to_string()
        };
        assert!(line("dev/console").starts_with("crw-------"), "{long}");
        assert!(line("dev/console").contains("5,"), "{long}");
        assert!(line("dev/null").starts_with("crw-rw-rw-"), "{long}");
        assert!(line("proc").starts_with("drwxr-xr-x"), "{long}");
        assert!(line("bin/busybox").starts_with("-rwxr-xr-x"), "{long}");
        assert!(line("bin/sh").starts_with("lrwxrwxrwx"), "{long}");
        assert!(line("bin/sh").ends_with("bin/sh -> busybox"), "{long}");
        assert!(line("init").contains(" 18 "), "size 18: {long}");
    }
}
