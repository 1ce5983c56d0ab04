//! A guest that resets itself or crashes restarts in place as its policy says
//! (`on-reset=`, `on-crash=`, `max-restarts=`), with cleared RAM, and ends when the limit is
//! reached; the guest beside it never notices.

mod common;

use common::{console_lines, exit_counts, with_testguest};
use std::time::Duration;
use tests::qemu::{Boot, Run};

/// Guest `name` booted `boots` times: each boot said hello and found its RAM fresh (no marker of
/// the boot before), and the hypervisor announced each restart in order.
fn check_boots(run: &Run, name: &str, kind: &str, boots: u32, max: u32) {
    let console = console_lines(run, name);
    let hellos = console
        .iter()
        .filter(|l| l.starts_with("testguest: hello from vcpu 0"))
        .count();
    let fresh = console
        .iter()
        .filter(|l| l.starts_with("testguest: ram is fresh"))
        .count();
    if hellos != boots as usize || fresh != boots as usize {
        run.fail(&format!(
            "guest {name}: {hellos} boots said hello and {fresh} found fresh RAM, expected {boots}: {console:#?}"
        ));
    }
    if let Some(l) = console.iter().find(|l| l.contains("FAILED")) {
        run.fail(&format!("guest {name}: {l}"));
    }
    // The restart lines, in order, each followed by the next boot.
    let mut lines = run.lines();
    for n in 1..boots {
        let restart = format!("guest {name}: restart {n} of at most {max} ({kind}: ");
        let restarted = format!("guest {name}: restarted: boot {} starts", n + 1);
        for want in [restart, restarted] {
            if !lines.any(|l| l.contains(&want)) {
                run.fail(&format!("no `{want}` in order"));
            }
        }
    }
    let extra = format!("guest {name}: restart {boots} of");
    run.assert_no_line(&extra);
}

/// A test guest with two vCPUs (the second never started, so it waits at each restart) resets
/// three times and ends on the fourth reset; beside it, on its own core, the delivery-checking
/// guest runs its whole check (exact interrupt counts, race rounds) and must find nothing amiss.
#[test]
fn a_guest_restarts_three_times_then_ends_beside_a_busy_neighbour() {
    let neighbour = tests::delivery::delivery_guest("direct", 1);
    let run = with_testguest(
        Boot::Multiboot1,
        4,
        &format!(
            "{neighbour} \
             guest=b,cores=2-3,mem=16M,kernel=testguest,cmdline=\"end=reset\",max-restarts=3"
        ),
    )
    .timeout(Duration::from_secs(300))
    .run("restart_three_times_beside_a_neighbour");
    check_boots(&run, "b", "reset", 4, 3);
    run.assert_line(
        "guest b: ended: reset request (port 0xCF9 or the keyboard controller's 0x64); \
         restart limit reached (3 restarts, max-restarts=3)",
    );
    // Each boot's exit table (vCPU 0 ran, vCPU 1 waited for a startup IPI that never came).
    let tables = run
        .lines()
        .filter(|l| l.starts_with("guest b: vcpu 0 exits:"))
        .count();
    assert_eq!(tables, 4, "one exit table per boot of guest b");
    assert!(exit_counts(&run, "b", 0)["total"] > 0);
    // The neighbour: every delivery count exact, and it was still running when b ended.
    if let Err(e) = tests::delivery::check_delivery(&run.serial, "direct", 1) {
        run.fail(&format!("the neighbour noticed: {e}"));
    }
    let line_of = |want: &str| {
        run.lines()
            .position(|l| l.contains(want))
            .unwrap_or_else(|| run.fail(&format!("no `{want}`")))
    };
    assert!(
        line_of("guest b: ended:") < line_of("guest a: ended:"),
        "the neighbour ran through guest b's restarts"
    );
    run.assert_line("didvisor: all guests ended");
}

/// A triple fault is a crash: it restarts the guest under `on-crash=restart` (here until the
/// limit of one restart, in emulated mode) and ends it under the default `on-crash=end`; a reset
/// under `on-reset=end` ends its guest at once.
#[test]
fn a_triple_fault_restarts_under_on_crash_restart_and_ends_under_end() {
    let run = with_testguest(
        Boot::Multiboot1,
        4,
        "guest=c,cores=1,mem=16M,kernel=testguest,irq=emulated,cmdline=\"end=triple-fault\",\
         on-crash=restart,max-restarts=1 \
         guest=d,cores=2,mem=16M,kernel=testguest,cmdline=\"end=triple-fault\" \
         guest=e,cores=3,mem=16M,kernel=testguest,cmdline=\"end=reset\",on-reset=end",
    )
    .timeout(Duration::from_secs(120))
    .run("triple_fault_policy");
    check_boots(&run, "c", "crash", 2, 1);
    run.assert_line("guest c: ended: triple fault (shutdown) at rip 0x");
    run.assert_line("restart limit reached (1 restarts, max-restarts=1)");
    check_boots(&run, "d", "crash", 1, 10);
    run.assert_line("guest d: ended: triple fault (shutdown) at rip 0x");
    run.assert_line("(on-crash=end)");
    check_boots(&run, "e", "reset", 1, 10);
    run.assert_line("guest e: ended: reset request (port 0xCF9 or the keyboard controller's 0x64) (on-reset=end)");
    run.assert_line("didvisor: all guests ended");
}

/// The Debian guest reboots (`reboot -f` in its init: the kernel writes the FADT's reset
/// register, port CF9h) and boots again from the same kernel and initrd; its second reboot
/// reaches the limit of one restart and ends it. Two vCPUs: the second is stopped by the kernel
/// before the reset, started again by the new boot.
#[test]
fn linux_reboots_and_boots_again() {
    let guest = "guest=lin,cores=1-2,mem=256M,kernel=linux,initrd=initrd,max-restarts=1,\
                 cmdline=\"console=ttyS0 quiet didvisor.test=reboot\"";
    let run = common::didvisor(tests::qemu::Boot::Multiboot1, 3, guest)
        .memory_mb(1024)
        .module(tests::linux_kernel(), "linux")
        .module(tests::linux_initrd(), "initrd")
        .timeout(Duration::from_secs(240))
        .run("linux_reboots");
    let console = console_lines(&run, "lin");
    let count = |want: &str| console.iter().filter(|l| l.starts_with(want)).count();
    for want in [
        "didvisor-guest: nproc 2",
        "didvisor-guest: interrupts-end",
        "didvisor-guest: reboot",
    ] {
        if count(want) != 2 {
            run.fail(&format!(
                "`{want}` {} times, expected once per boot",
                count(want)
            ));
        }
    }
    run.assert_no_line("didvisor-guest: reboot failed");
    run.assert_line("guest lin: restart 1 of at most 1 (reset: reset request (port 0xCF9");
    run.assert_line("guest lin: restarted: boot 2 starts");
    run.assert_line("guest lin: ended: reset request (port 0xCF9 or the keyboard controller's 0x64); restart limit reached (1 restarts, max-restarts=1)");
    run.assert_line("didvisor: all guests ended");
}

/// A guest with an NVMe VF behind the IOMMU runs the VF delivery check (MSI-X interrupts
/// through interrupt remapping, exactly once each), resets, and runs it again after the restart:
/// the VF was reset (FLR), its remapping entries cleared, its configuration space given back as
/// at first boot, and it works as before.
#[test]
fn a_guest_with_a_vf_restarts_and_its_vf_works_again() {
    let disks = common::fresh_disks("restart_with_vf");
    let run = with_testguest(
        Boot::Multiboot1,
        2,
        "guest=a,cores=1,mem=16M,kernel=testguest,irq=direct,vf=00:04.1,max-restarts=1,\
         cmdline=\"deliver=vf end=reset\"",
    )
    .memory_mb(1024)
    .arg("-device")
    .arg("amd-iommu,intremap=on,xtsup=on,pt=off")
    .nvme_sriov("deliver", &[&disks[0], &disks[1]])
    .timeout(Duration::from_secs(240))
    .run("restart_with_vf");
    check_boots(&run, "a", "reset", 2, 1);
    run.assert_line("guest a: vf 00:04.1: function-level reset, interrupt entries cleared");
    let ok = console_lines(&run, "a")
        .iter()
        .filter(|l| l.starts_with("testguest: delivery: ok"))
        .count();
    if ok != 2 {
        run.fail(&format!(
            "{ok} VF delivery checks passed, expected one per boot"
        ));
    }
    run.assert_line("guest a: ended: reset request");
}
