//! Helpers shared by the integration tests: a QEMU boot of didvisor with the debug-exit device
//! named on its command line, and parsers for what the hypervisor prints.
#![allow(dead_code)]

use std::collections::BTreeMap;
use tests::qemu::{Boot, Qemu, Run};

/// A didvisor boot whose command line ends the machine through QEMU's isa-debug-exit device.
pub fn didvisor(boot: Boot, smp: u32, cmdline: &str) -> Qemu {
    Qemu::new()
        .boot(boot)
        .smp(smp)
        .memory_mb(512)
        .cmdline(&format!("debug-exit=0xf4 {cmdline}"))
}

/// didvisor with the test guest as boot module `testguest`.
pub fn with_testguest(boot: Boot, smp: u32, cmdline: &str) -> Qemu {
    didvisor(boot, smp, cmdline).module(tests::testguest(), "testguest")
}

/// The exit table the hypervisor prints when a guest's vCPU ends:
/// `guest NAME: vcpu N exits:` then `  reason  count  cycles` rows and a `total` row.
pub fn exit_counts(run: &Run, guest: &str, vcpu: u32) -> BTreeMap<String, u64> {
    tests::report::exit_table(&run.serial, guest, vcpu).unwrap_or_else(|| {
        run.fail(&format!(
            "no exit table with a total for guest {guest} vcpu {vcpu}"
        ))
    })
}

/// What guest `name` printed on its debug console (`[name] ...` lines), in order.
pub fn console_lines<'a>(run: &'a Run, guest: &str) -> Vec<&'a str> {
    let prefix = format!("[{guest}] ");
    run.lines()
        .filter_map(|l| l.trim_end().strip_prefix(prefix.as_str()))
        .collect()
}

/// The interval `guest NAME: ended: ... (ran from A us to B us)`.
pub fn run_interval(run: &Run, guest: &str) -> (u64, u64) {
    let prefix = format!("guest {guest}: ended: ");
    let line = run
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| run.fail(&format!("guest {guest} did not end")));
    let nums: Vec<u64> = line
        .rsplit_once("(ran from ")
        .map(|(_, r)| {
            r.split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    match nums[..] {
        [a, b] => (a, b),
        _ => run.fail(&format!("no run interval in: {line}")),
    }
}

/// Two fresh 16 MiB namespace images for the NVMe SR-IOV machine of test `name`.
pub fn fresh_disks(name: &str) -> [std::path::PathBuf; 2] {
    tests::qemu::fresh_disks(name, 16)
}
