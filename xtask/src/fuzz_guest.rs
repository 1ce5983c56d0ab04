//! `cargo xtask fuzz [--seconds N] [--actions N] [--prebuilt]`: a long campaign of the fuzzing
//! guest (`testguest fuzz=SEED`) beside a benign guest, one QEMU boot after another with fresh
//! seeds, in direct and emulated mode by turns, until the time is up. Each run is judged as the
//! test suite's fixed-seed runs are (`tests::attack::check_fuzz_run`); every seed that broke
//! something is printed with its log, and the command fails if there was one.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tests::{Boot, Qemu};

use crate::{fail, Result};

/// Seconds when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 300;
/// Actions per run when `--actions` is not given (the guest's own default for `fuzz=`).
const DEFAULT_ACTIONS: u32 = 100_000;

struct Options {
    seconds: u64,
    actions: u32,
    prebuilt: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        seconds: DEFAULT_SECONDS,
        actions: DEFAULT_ACTIONS,
        prebuilt: false,
    };
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| {
            args.get(i + 1)
                .ok_or_else(|| format!("{} needs a value", args[i]))
        };
        match args[i].as_str() {
            "--seconds" => {
                o.seconds = value(i)?
                    .parse()
                    .map_err(|_| format!("--seconds: not a number: {}", args[i + 1]))?;
                i += 1;
            }
            "--actions" => {
                o.actions = value(i)?
                    .parse()
                    .map_err(|_| format!("--actions: not a number: {}", args[i + 1]))?;
                i += 1;
            }
            "--prebuilt" => o.prebuilt = true,
            other => return fail(format!("fuzz: unexpected argument `{other}`")),
        }
        i += 1;
    }
    Ok(o)
}

/// A seed from the clock, mixed (splitmix64) so consecutive runs differ in every bit.
fn fresh_seed(n: u64) -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = t ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn fuzz(args: &[String]) -> Result {
    let o = parse(args)?;
    if o.prebuilt {
        crate::stage_prebuilt()?;
    } else {
        crate::build()?;
    }
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let (mut runs, mut actions, mut busy) = (0u64, 0u64, Duration::ZERO);
    let mut broken = Vec::new();
    while Instant::now() < deadline {
        let seed = fresh_seed(runs);
        let irq = if runs % 2 == 0 { "direct" } else { "emulated" };
        let name = format!("fuzz-{seed:016x}");
        let run = Qemu::new()
            .boot(Boot::Multiboot1)
            .smp(3)
            .memory_mb(512)
            .cmdline(&format!(
                "debug-exit=0xf4 {}",
                tests::attack::fuzz_guests(irq, seed, o.actions, None)
            ))
            .module(tests::testguest(), "testguest")
            .timeout(Duration::from_secs(300))
            .run_unchecked(&name);
        runs += 1;
        busy += run.elapsed;
        let verdict = match (run.timed_out, run.exit_code) {
            (true, _) => Err("QEMU timed out (a hang)".to_string()),
            (false, Some(33)) => tests::attack::check_fuzz_run(&run.serial, o.actions),
            (false, Some(c)) => Err(format!("QEMU exit {}", tests::describe_exit(c))),
            (false, None) => Err("QEMU was killed".to_string()),
        };
        match verdict {
            Ok(n) => {
                actions += u64::from(n);
                println!(
                    "xtask: fuzz: seed {seed:#018x} ({irq}): {n} actions in {:.1} s: ok",
                    run.elapsed.as_secs_f64()
                );
                let _ = std::fs::remove_file(&run.log_path);
            }
            Err(e) => {
                println!(
                    "xtask: fuzz: seed {seed:#018x} ({irq}): FAILED: {e} (log {})",
                    run.log_path.display()
                );
                broken.push((seed, irq));
            }
        }
    }
    let rate = actions as f64 / busy.as_secs_f64().max(0.001);
    println!(
        "xtask: fuzz: {runs} runs, {actions} actions, {rate:.0} actions/s of guest time, {} broken",
        broken.len()
    );
    if broken.is_empty() {
        return Ok(());
    }
    for (seed, irq) in &broken {
        println!(
            "xtask: fuzz: repeat with: cargo xtask run --testguest --cmdline '{}'",
            tests::attack::fuzz_guests(irq, *seed, o.actions, None)
        );
    }
    fail(format!(
        "fuzz: {} of {runs} runs broke something",
        broken.len()
    ))
}

#[cfg(test)]
mod tests_ {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&s(&["--seconds", "20", "--actions", "1000", "--prebuilt"])).unwrap();
        assert_eq!((o.seconds, o.actions, o.prebuilt), (20, 1000, true));
        let d = parse(&[]).unwrap();
        assert_eq!((d.seconds, d.actions), (DEFAULT_SECONDS, 100_000));
        assert!(parse(&s(&["--seconds"])).is_err());
        assert!(parse(&s(&["--seconds", "x"])).is_err());
        assert!(parse(&s(&["--what"])).is_err());
        assert_ne!(fresh_seed(0), fresh_seed(1));
    }
}
