//! The Rust side of the set-up: the targets and components `rust-toolchain.toml` names.
//!
//! rustup installs a toolchain file's `targets` and `components` only when it installs the
//! toolchain itself; a machine whose `stable` already exists (the usual case) lacks the
//! bare-metal target, and the first bare-metal build fails with E0463 "can't find crate for
//! `core`". So the set-up reads the file and adds what the active toolchain lacks.

use std::fs;
use std::process::Command;

use crate::{fail, run_cmd, Result};

/// What `rust-toolchain.toml` asks for beyond the channel.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub targets: Vec<String>,
    pub components: Vec<String>,
}

/// Reads `[toolchain] targets` and `components` from the text of a `rust-toolchain.toml`.
pub fn parse_toolchain_file(text: &str) -> std::result::Result<Wanted, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("rust-toolchain.toml: {e}"))?;
    let section = table
        .get("toolchain")
        .and_then(|t| t.as_table())
        .ok_or("rust-toolchain.toml: no [toolchain] section")?;
    let list = |key: &str| -> std::result::Result<Vec<String>, String> {
        match section.get(key) {
            None => Ok(Vec::new()),
            Some(v) => v
                .as_array()
                .ok_or(format!("rust-toolchain.toml: `{key}` is not a list"))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or(format!("rust-toolchain.toml: `{key}` holds a non-string"))
                })
                .collect(),
        }
    };
    Ok(Wanted {
        targets: list("targets")?,
        components: list("components")?,
    })
}

/// The names in `wanted` that `installed` (rustup's `--installed` listing, one per line;
/// components carry a `-<host triple>` suffix) does not have.
pub fn missing<'a>(wanted: &'a [String], installed: &str, host: &str) -> Vec<&'a str> {
    wanted
        .iter()
        .map(String::as_str)
        .filter(|w| {
            let with_host = format!("{w}-{host}");
            !installed
                .lines()
                .map(str::trim)
                .any(|i| i == *w || i == with_host)
        })
        .collect()
}

/// The host triple of the active toolchain (`rustc -vV`, line `host: ...`).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .current_dir(crate::repo_root())
        .output()
        .map_err(|e| format!("cannot run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| "rustc -vV names no host triple".to_string().into())
}

fn rustup(args: &[&str]) -> Command {
    let mut c = Command::new("rustup");
    c.args(args).current_dir(crate::repo_root());
    c
}

fn rustup_list(what: &str) -> Result<String> {
    let out = rustup(&[what, "list", "--installed"])
        .output()
        .map_err(|e| {
            format!(
                "cannot run rustup ({e}): install rustup, or add the targets and components \
                 of rust-toolchain.toml to your toolchain by hand"
            )
        })?;
    if !out.status.success() {
        return fail(format!(
            "`rustup {what} list --installed` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The targets and components of `rust-toolchain.toml` the active toolchain lacks.
pub fn lacking() -> Result<Wanted> {
    let path = crate::repo_root().join("rust-toolchain.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let wanted = parse_toolchain_file(&text)?;
    let targets = rustup_list("target")?;
    let components = rustup_list("component")?;
    let host = host_triple()?;
    Ok(Wanted {
        targets: missing(&wanted.targets, &targets, &host)
            .into_iter()
            .map(String::from)
            .collect(),
        components: missing(&wanted.components, &components, &host)
            .into_iter()
            .map(String::from)
            .collect(),
    })
}

/// Adds whatever `rust-toolchain.toml` names that the active toolchain lacks, saying so.
pub fn ensure() -> Result {
    let lack = lacking()?;
    if lack.targets.is_empty() && lack.components.is_empty() {
        println!("xtask: deps: Rust targets and components of rust-toolchain.toml present");
        return Ok(());
    }
    for t in &lack.targets {
        println!("xtask: installing the Rust target {t} (rustup target add {t})");
        run_cmd(&mut rustup(&["target", "add", t]))?;
    }
    for c in &lack.components {
        println!("xtask: installing the Rust component {c} (rustup component add {c})");
        run_cmd(&mut rustup(&["component", "add", c]))?;
    }
    let still = lacking()?;
    if !still.targets.is_empty() || !still.components.is_empty() {
        return fail(format!(
            "still missing after rustup: targets {:?}, components {:?}",
            still.targets, still.components
        ));
    }
    Ok(())
}

/// The set-up path itself, as the test suite checks it: take the bare-metal target away, let
/// [`ensure`] put it back, and require that it did.
pub fn check_setup_path(target: &str) -> Result {
    if lacking()?.targets.iter().any(|t| t == target) {
        println!("xtask: set-up check: {target} is not installed (as on a fresh machine)");
    } else {
        println!("xtask: set-up check: rustup target remove {target} (ensure must add it back)");
        run_cmd(&mut rustup(&["target", "remove", target]))?;
    }
    if !lacking()?.targets.iter().any(|t| t == target) {
        return fail(format!(
            "{target} still listed after `rustup target remove`"
        ));
    }
    ensure()?;
    println!("xtask: set-up check: {target} reinstalled by the set-up");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_repository_toolchain_file() {
        let text = include_str!("../../../rust-toolchain.toml");
        let w = parse_toolchain_file(text).unwrap();
        assert_eq!(w.targets, ["x86_64-unknown-none"]);
        assert_eq!(w.components, ["rustfmt", "clippy"]);
    }

    #[test]
    fn toolchain_file_errors() {
        assert!(parse_toolchain_file("[other]\n").is_err());
        assert!(parse_toolchain_file("[toolchain]\ntargets = \"x\"\n").is_err());
        assert!(parse_toolchain_file("[toolchain]\ntargets = [1]\n").is_err());
        assert_eq!(
            parse_toolchain_file("[toolchain]\nchannel = \"stable\"\n").unwrap(),
            Wanted::default()
        );
    }

    #[test]
    fn finds_what_is_missing() {
        let host = "x86_64-unknown-linux-gnu";
        let wanted = vec!["x86_64-unknown-none".to_string()];
        assert_eq!(
            missing(&wanted, "x86_64-unknown-linux-gnu\n", host),
            ["x86_64-unknown-none"]
        );
        let both = "x86_64-unknown-linux-gnu\nx86_64-unknown-none\n";
        assert!(missing(&wanted, both, host).is_empty());
        let comps = vec!["rustfmt".to_string(), "clippy".to_string()];
        let installed = "cargo-x86_64-unknown-linux-gnu\nrustfmt-x86_64-unknown-linux-gnu\n";
        assert_eq!(missing(&comps, installed, host), ["clippy"]);
        // A component whose name only begins like a wanted one does not count.
        let preview = "rustfmt-preview-x86_64-unknown-linux-gnu\n";
        assert_eq!(missing(&comps, preview, host), ["rustfmt", "clippy"]);
    }
}
