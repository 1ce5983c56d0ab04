//! `cargo xtask deps`: add the Rust targets and components `rust-toolchain.toml` names
//! (`toolchain`), install the host packages the build and the tests need, and fetch the Linux
//! guest's kernel package (`linux::fetch_kernel`).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::{fail, Result};

/// Packages installed from the release's own suite (checked with dpkg-query).
pub const PACKAGES: &[&str] = &[
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "ovmf",
    "cpio",
    "busybox-static",
    // The evaluation's workload program, linked static against glibc (guest/bench/).
    "gcc",
    "libc6-dev",
    // iasl: an independent check that the guest's AML disassembles as intended (kernel tests).
    "acpica-tools",
];

/// The oldest QEMU major version the tests are written for.
pub const QEMU_MAJOR: u32 = 10;

const DEB822_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
const ONE_LINE_SOURCES: &str = "/etc/apt/sources.list";
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/didvisor-backports.sources";

/// The mirror and keyring of the existing Debian sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The `URIs:` value (one or more URIs).
    pub uris: String,
    /// The `Signed-By:` value (a keyring path, or an embedded key over several lines,
    /// continuation lines kept as they were).
    pub signed_by: Option<String>,
}

/// The deb822 stanza that adds the `bookworm-backports` suite.
pub fn render_backports_sources(m: &Mirror) -> String {
    let mut s = String::from(
        "# Added by `cargo xtask deps` (didvisor): QEMU 10 comes from bookworm-backports.\n",
    );
    s.push_str("Types: deb\n");
    s.push_str(&format!("URIs: {}\n", m.uris));
    s.push_str("Suites: bookworm-backports\n");
    s.push_str("Components: main\n");
    if let Some(k) = &m.signed_by {
        let sep = if k.starts_with('\n') { "" } else { " " };
        s.push_str(&format!("Signed-By:{sep}{k}\n"));
    }
    s
}

/// The mirror of the first stanza of a deb822 sources file (skipping stanzas whose suites
/// are all `-security`, which live on a different archive; and disabled ones).
pub fn parse_deb822(text: &str) -> Option<Mirror> {
    let mut fallback = None;
    for stanza in text.split("\n\n").map(str::trim).filter(|s| !s.is_empty()) {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = fields.last_mut() {
                    v.push('\n');
                    v.push_str(line);
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        if get("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            continue;
        }
        if !get("types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb")) {
            continue;
        }
        let Some(uris) = get("uris").filter(|u| !u.is_empty()) else {
            continue;
        };
        let m = Mirror {
            uris,
            signed_by: get("signed-by").filter(|s| !s.is_empty()),
        };
        let suites = get("suites").unwrap_or_default();
        if suites.split_whitespace().all(|s| s.ends_with("-security")) {
            fallback.get_or_insert(m);
            continue;
        }
        return Some(m);
    }
    fallback
}

/// The mirror of the first `deb` line of a one-line-style sources.list (skipping
/// `-security` suites), with its `[signed-by=...]` option.
pub fn parse_one_line(text: &str) -> Option<Mirror> {
    let mut fallback = None;
    for line in text.lines().map(str::trim) {
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            for o in opts.split_whitespace() {
                if let Some(v) = o
                    .strip_prefix("signed-by=")
                    .or_else(|| o.strip_prefix("Signed-By="))
                {
                    signed_by = Some(v.to_string());
                }
            }
            rest = after.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), suite) = (words.next(), words.next().unwrap_or("")) else {
            continue;
        };
        let m = Mirror {
            uris: uri.to_string(),
            signed_by,
        };
        if suite.ends_with("-security") {
            fallback.get_or_insert(m);
            continue;
        }
        return Some(m);
    }
    fallback
}

pub fn find_mirror() -> std::result::Result<Mirror, String> {
    if let Ok(text) = fs::read_to_string(DEB822_SOURCES) {
        if let Some(m) = parse_deb822(&text) {
            return Ok(m);
        }
    }
    if let Ok(text) = fs::read_to_string(ONE_LINE_SOURCES) {
        if let Some(m) = parse_one_line(&text) {
            return Ok(m);
        }
    }
    Err(format!(
        "cannot find the Debian mirror: neither {DEB822_SOURCES} (deb822, `URIs:`) nor \
         {ONE_LINE_SOURCES} (a `deb` line) names one; add bookworm-backports to the apt \
         sources by hand"
    ))
}

/// The major version from `qemu-system-x86_64 --version` ("QEMU emulator version 10.0.2 ...").
pub fn parse_qemu_major(version_output: &str) -> Option<u32> {
    let rest = version_output.split("version ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn qemu_major() -> Option<u32> {
    let out = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()?;
    parse_qemu_major(&String::from_utf8_lossy(&out.stdout))
}

pub fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `apt-get ARGS`, with a line every few seconds while it runs (a big download or an
/// install's unpacking can be quiet for minutes).
pub fn apt(args: &[&str]) -> Result {
    let what = format!("apt-get {}", args.first().copied().unwrap_or(""));
    crate::progress::run_with_heartbeat(&mut apt_command(args), &what, || None)
}

/// `apt-get ARGS` without questions.
pub fn apt_command(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// Installs what is missing, then fetches the guest kernel (see `linux::fetch_kernel`).
/// Idempotent: does nothing (and needs no network) when all is there.
pub fn deps() -> Result {
    // The bare-metal target first: without it nothing of didvisor builds.
    crate::toolchain::ensure()?;
    let qemu = qemu_major();
    let qemu_ok = qemu.is_some_and(|v| v >= QEMU_MAJOR);
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if qemu_ok && missing.is_empty() {
        println!(
            "xtask: deps: QEMU {} and all packages present",
            qemu.unwrap_or(0)
        );
    } else {
        install(qemu, missing)?;
    }
    // The Linux guest: the stock Debian 12 kernel package, cached outside the tree.
    crate::linux::fetch_kernel()?;
    println!("xtask: deps: done");
    Ok(())
}

/// Installs QEMU from backports and the missing packages (as root), or explains how.
fn install(qemu: Option<u32>, missing: Vec<&str>) -> Result {
    let qemu_ok = qemu.is_some_and(|v| v >= QEMU_MAJOR);
    if !is_root() {
        let mut msg = String::from("xtask: deps: missing host packages and not root:\n");
        if !qemu_ok {
            msg.push_str(&format!(
                "  qemu-system-x86 >= {QEMU_MAJOR} (have {}): add bookworm-backports to the apt \
                 sources, then run as root:\n    apt-get update && apt-get install -y -t \
                 bookworm-backports qemu-system-x86\n",
                qemu.map_or("none".into(), |v| v.to_string())
            ));
        }
        if !missing.is_empty() {
            msg.push_str(&format!(
                "  {}: run as root:\n    apt-get install -y --no-install-recommends {}\n",
                missing.join(" "),
                missing.join(" ")
            ));
        }
        msg.push_str("  (or run `cargo xtask deps` as root)");
        return fail(msg);
    }
    if !qemu_ok {
        println!(
            "xtask: installing qemu-system-x86 {QEMU_MAJOR} from bookworm-backports (found {})",
            qemu.map_or("no QEMU".into(), |v| format!("QEMU {v}"))
        );
        let mirror = find_mirror()?;
        let text = render_backports_sources(&mirror);
        if fs::read_to_string(BACKPORTS_SOURCES).ok().as_deref() != Some(text.as_str()) {
            println!(
                "xtask: writing {BACKPORTS_SOURCES} (mirror {})",
                mirror.uris
            );
            fs::write(BACKPORTS_SOURCES, text)
                .map_err(|e| format!("writing {BACKPORTS_SOURCES}: {e}"))?;
        }
        println!("xtask: apt-get update");
        apt(&["update"])?;
        println!("xtask: apt-get install -y -t bookworm-backports qemu-system-x86");
        apt(&[
            "install",
            "-y",
            "-t",
            "bookworm-backports",
            "qemu-system-x86",
        ])?;
        match qemu_major() {
            Some(v) if v >= QEMU_MAJOR => println!("xtask: QEMU {v} installed"),
            v => {
                return fail(format!(
                    "QEMU {QEMU_MAJOR} expected after installing from bookworm-backports, \
                     `qemu-system-x86_64 --version` gives major {v:?}"
                ))
            }
        }
    }
    if !missing.is_empty() {
        println!("xtask: installing {}", missing.join(" "));
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(&missing);
        apt(&args).or_else(|e| {
            // A stale package index is the usual cause on a fresh machine.
            println!(
                "xtask: install failed ({}); apt-get update and retry",
                e.msg
            );
            apt(&["update"])?;
            apt(&args)
        })?;
        let still: Vec<&str> = missing.iter().copied().filter(|p| !installed(p)).collect();
        if !still.is_empty() {
            return fail(format!("still not installed: {}", still.join(" ")));
        }
    }
    if !Path::new("/usr/bin/grub-mkrescue").exists() {
        return fail("grub-mkrescue missing although grub-common is installed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n\
        # http://snapshot.example/archive/debian/20250520T000000Z\n\
        URIs: http://mirror.example/debian\n\
        Suites: bookworm bookworm-updates\n\
        Components: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
        \n\
        Types: deb\n\
        URIs: http://mirror.example/debian-security\n\
        Suites: bookworm-security\n\
        Components: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

    #[test]
    fn renders_backports_stanza_from_deb822() {
        let m = parse_deb822(DEB822).unwrap();
        assert_eq!(
            render_backports_sources(&m),
            "# Added by `cargo xtask deps` (didvisor): QEMU 10 comes from bookworm-backports.\n\
             Types: deb\n\
             URIs: http://mirror.example/debian\n\
             Suites: bookworm-backports\n\
             Components: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
    }

    #[test]
    fn deb822_skips_security_first_and_keeps_multiline_keys() {
        let text = "Types: deb\nURIs: http://m.example/sec\nSuites: bookworm-security\n\n\
                    Types: deb deb-src\nURIs: http://m.example/debian\nSuites: bookworm\n\
                    Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n";
        let m = parse_deb822(text).unwrap();
        assert_eq!(m.uris, "http://m.example/debian");
        assert_eq!(
            m.signed_by.as_deref(),
            Some("\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc")
        );
        assert!(render_backports_sources(&m)
            .ends_with("Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"));
        // Only security: used as a fallback. Nothing usable: None.
        assert_eq!(
            parse_deb822("Types: deb\nURIs: http://m.example/sec\nSuites: bookworm-security\n")
                .unwrap()
                .uris,
            "http://m.example/sec"
        );
        assert_eq!(
            parse_deb822("Types: deb-src\nURIs: http://x.example/\n"),
            None
        );
        assert_eq!(parse_deb822(""), None);
    }

    #[test]
    fn one_line_sources() {
        let text = "# comment\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian-security bookworm-security main\n\
                    deb-src http://m.example/debian bookworm main\n\
                    deb [signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        assert_eq!(
            parse_one_line(text),
            Some(Mirror {
                uris: "http://m.example/debian".into(),
                signed_by: Some("/k.gpg".into())
            })
        );
        assert_eq!(
            parse_one_line("deb http://m.example/debian bookworm main"),
            Some(Mirror {
                uris: "http://m.example/debian".into(),
                signed_by: None
            })
        );
        assert_eq!(parse_one_line("# nothing\n"), None);
        let m = parse_one_line("deb http://m.example/debian bookworm main").unwrap();
        assert!(!render_backports_sources(&m).contains("Signed-By"));
    }

    #[test]
    fn qemu_version() {
        assert_eq!(
            parse_qemu_major(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2~bpo12+1)\nCopyright"
            ),
            Some(10)
        );
        assert_eq!(
            parse_qemu_major("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"),
            Some(7)
        );
        assert_eq!(parse_qemu_major(""), None);
    }
}
