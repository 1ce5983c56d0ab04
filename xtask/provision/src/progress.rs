//! Progress for the long first steps (package installs, the guest kernel download, the
//! patched-QEMU build): a line every few seconds instead of a silent wait.
//!
//! - [`run_with_heartbeat`] runs a command with its output passed through and, while it runs,
//!   prints `xtask: WHAT: 40 s so far[, STATUS]` every [`HEARTBEAT`] (STATUS from a callback,
//!   like the bytes a download has written);
//! - [`run_ninja`] runs ninja with its per-step lines (`[n/m] ...`) folded into a line per 5 %
//!   (or per [`HEARTBEAT`] when steps are slow) with the elapsed time; other output (warnings,
//!   errors, the failing command) passes through.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How often a long step says it is still running.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// `12 s`, `3 min 05 s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

/// `812 KB`, `23.4 MB`.
pub fn bytes(n: u64) -> String {
    if n < 1_000_000 {
        format!("{} KB", n / 1000)
    } else {
        format!("{:.1} MB", n as f64 / 1e6)
    }
}

/// The bytes of all files under `dir` (a download in progress).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn failure(shown: &str, status: std::process::ExitStatus) -> Error {
    Error {
        msg: format!("{shown} failed: {status}"),
        code: status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .filter(|&c| c != 0)
            .unwrap_or(1),
    }
}

/// Runs `c` (output passed through) and prints `xtask: WHAT: N s so far[, STATUS]` every
/// [`HEARTBEAT`] while it runs, then `xtask: WHAT: done in N s`.
pub fn run_with_heartbeat(
    c: &mut Command,
    what: &str,
    status: impl Fn() -> Option<String> + Send + 'static,
) -> Result {
    let shown = format!("{c:?}");
    let start = Instant::now();
    let mut child = c.spawn().map_err(|e| format!("cannot run {shown}: {e}"))?;
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let done = done.clone();
        let what = what.to_string();
        thread::spawn(move || {
            let mut next = HEARTBEAT;
            while !done.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(200));
                if start.elapsed() >= next && !done.load(Ordering::SeqCst) {
                    next += HEARTBEAT;
                    let extra = status().map(|s| format!(", {s}")).unwrap_or_default();
                    println!("xtask: {what}: {} so far{extra}", elapsed(start.elapsed()));
                }
            }
        })
    };
    let result = child.wait();
    done.store(true, Ordering::SeqCst);
    let _ = ticker.join();
    let st = result.map_err(|e| format!("waiting for {shown}: {e}"))?;
    if !st.success() {
        return Err(failure(&shown, st));
    }
    if start.elapsed() >= HEARTBEAT {
        println!("xtask: {what}: done in {}", elapsed(start.elapsed()));
    }
    Ok(())
}

/// `[812/2543] Compiling C object ...` → (812, 2543).
pub fn ninja_status(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix('[')?;
    let (counts, _) = rest.split_once(']')?;
    let (done, total) = counts.split_once('/')?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// Decides which ninja steps are worth a line: the first, every 5 % after it, the last, and
/// any step after [`HEARTBEAT`] without a line.
#[derive(Debug, Default)]
pub struct Throttle {
    /// The last 5 % bucket printed (None before the first line).
    bucket: Option<u64>,
    last: Duration,
}

impl Throttle {
    pub fn show(&mut self, done: u64, total: u64, at: Duration) -> bool {
        let bucket = (done * 20).checked_div(total).unwrap_or(0);
        let show = self.bucket.is_none_or(|b| bucket > b)
            || done == total
            || at.saturating_sub(self.last) >= HEARTBEAT;
        if show {
            self.bucket = Some(bucket);
            self.last = at;
        }
        show
    }
}

/// Runs `ninja` (a [`Command`] with its arguments) and prints its progress as
/// `xtask: WHAT: [n/m] p %, T` lines (see [`Throttle`]); lines that are not step lines are
/// passed through.
pub fn run_ninja(c: &mut Command, what: &str) -> Result {
    let shown = format!("{c:?}");
    let start = Instant::now();
    // Plain `[n/m] ` step lines, one per line (a pipe is not a smart terminal).
    let mut child = c
        .env("NINJA_STATUS", "[%f/%t] ")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| format!("{shown}: no stdout pipe"))?;
    let mut throttle = Throttle::default();
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        match ninja_status(&line) {
            Some((done, total)) => {
                let at = start.elapsed();
                if throttle.show(done, total, at) {
                    println!(
                        "xtask: {what}: [{done}/{total}] {} %, {}",
                        (done * 100).checked_div(total).unwrap_or(100),
                        elapsed(at)
                    );
                }
            }
            None => println!("{line}"),
        }
    }
    let st = child
        .wait()
        .map_err(|e| format!("waiting for {shown}: {e}"))?;
    if !st.success() {
        return Err(failure(&shown, st));
    }
    println!("xtask: {what}: done in {}", elapsed(start.elapsed()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(elapsed(Duration::from_secs(12)), "12 s");
        assert_eq!(elapsed(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(bytes(812_345), "812 KB");
        assert_eq!(bytes(23_456_789), "23.5 MB");
    }

    #[test]
    fn ninja_step_lines() {
        assert_eq!(
            ninja_status("[812/2543] Compiling C object libqemu.a.p/foo.c.o"),
            Some((812, 2543))
        );
        assert_eq!(ninja_status("[1/1] Linking target qemu"), Some((1, 1)));
        assert_eq!(ninja_status("ninja: Entering directory `build'"), None);
        assert_eq!(ninja_status("[x/2] y"), None);
        assert_eq!(ninja_status("../hw/foo.c:12: warning: [-Wfoo]"), None);
    }

    #[test]
    fn throttle_prints_every_five_percent_and_after_a_quiet_spell() {
        let mut t = Throttle::default();
        let s = |x| Duration::from_secs(x);
        let shown: Vec<u64> = (1..=200).filter(|&d| t.show(d, 200, s(0))).collect();
        // The first step, then each 5 % (every 10 steps, the last among them).
        assert_eq!(shown.len(), 21);
        assert_eq!(shown[..3], [1, 10, 20]);
        assert_eq!(*shown.last().unwrap(), 200);
        let mut t = Throttle::default();
        assert!(t.show(1, 1000, s(0)));
        assert!(!t.show(2, 1000, s(5)));
        assert!(t.show(3, 1000, s(11)));
        assert!(!t.show(4, 1000, s(12)));
        assert!(Throttle::default().show(0, 0, s(0)));
    }
}
