//! The first guests: the bare-metal test guest on dedicated cores under SVM with nested paging. The
//! assertions use the hypervisor's own exit statistics, compared with what the guest provably did.

mod common;

use common::{console_lines, exit_counts, run_interval, with_testguest};
use tests::qemu::Boot;

/// Checks everything one test-guest run shows: its own reports, the hypervisor's reports of its
/// stray accesses, and exit counts that match exactly what the guest executed.
fn check_testguest(run: &tests::qemu::Run, name: &str, ram_mib: u64) {
    let console = console_lines(run, name);
    let expect = [
        format!("testguest: hello from vcpu 0, {ram_mib} MiB of ram"),
        "testguest: cpuid: vendor AuthenticAMD hypervisor-bit set signature \"didvisor\" max-leaf 0x40000002 svm hidden".into(),
        "testguest: ram check ok".into(),
        format!("testguest: read past end of ram at {:#x} -> 0xffffffff", (ram_mib << 20) + 0x1000),
        "testguest: wrote 0x12345678 at 0xc0000000, read back 0xffffffff".into(),
        "testguest: done, requesting power-off".into(),
    ];
    assert_eq!(
        console.len(),
        expect.len(),
        "guest {name} console: {console:#?}"
    );
    for (got, want) in console.iter().zip(expect.iter()) {
        assert!(
            got.starts_with(want.as_str()),
            "guest {name}: expected `{want}`, got `{got}`"
        );
    }
    run.assert_line(&format!(
        "guest {name}: vcpu 0: read of 4 bytes at unbacked gpa {:#x}",
        (ram_mib << 20) + 0x1000
    ));
    run.assert_line(&format!(
        "guest {name}: vcpu 0: write of 4 bytes at unbacked gpa 0xc0000000"
    ));
    run.assert_line(&format!(
        "guest {name}: ended: power-off request (ACPI PM1a SLP_EN)"
    ));

    let counts = exit_counts(run, name, 0);
    // The guest executes CPUID exactly four times and touches unbacked memory exactly three times.
    assert_eq!(counts.get("cpuid"), Some(&4), "{counts:?}");
    assert_eq!(counts.get("npf"), Some(&3), "{counts:?}");
    // One I/O exit per console byte (each line plus its newline) and one for the power-off write.
    let console_bytes: u64 = console.iter().map(|l| l.len() as u64 + 1).sum();
    assert_eq!(counts.get("ioio"), Some(&(console_bytes + 1)), "{counts:?}");
    assert_eq!(
        counts.get("total"),
        Some(&(4 + 3 + console_bytes + 1)),
        "{counts:?}"
    );
    assert_eq!(
        counts.len(),
        4,
        "no other exit reasons expected: {counts:?}"
    );
}

#[test]
fn one_guest_on_a_dedicated_core() {
    let run = with_testguest(
        Boot::Multiboot1,
        2,
        "guest=a,cores=1,mem=16M,kernel=testguest",
    )
    .run("one_guest_on_a_dedicated_core");
    run.assert_line("guest a: 16 MiB ram at host 0x");
    run.assert_line("guest a: vcpu 0 starts on cpu 1");
    check_testguest(&run, "a", 16);
    run.assert_line("didvisor: all guests ended");
}

#[test]
fn two_guests_side_by_side() {
    let run = with_testguest(
        Boot::Multiboot1,
        3,
        "guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2,mem=32M,kernel=testguest",
    )
    .run("two_guests_side_by_side");
    run.assert_line("guest a: vcpu 0 starts on cpu 1");
    run.assert_line("guest b: vcpu 0 starts on cpu 2");
    check_testguest(&run, "a", 16);
    check_testguest(&run, "b", 32);
    // They ran at the same time: their run intervals overlap.
    let (a0, a1) = run_interval(&run, "a");
    let (b0, b1) = run_interval(&run, "b");
    assert!(
        a0 < b1 && b0 < a1,
        "guests ran one after another: a {a0}..{a1} us, b {b0}..{b1} us"
    );
    // Each guest has its own RAM: the two host ranges differ.
    let hosts: Vec<&str> = run
        .lines()
        .filter(|l| l.contains(" MiB ram at host "))
        .collect();
    assert_eq!(hosts.len(), 2);
    assert_ne!(
        hosts[0].split(" at host ").nth(1),
        hosts[1].split(" at host ").nth(1)
    );
}

#[test]
fn guest_on_the_last_of_four_cores() {
    let run = with_testguest(
        Boot::Multiboot1,
        4,
        "guest=z,cores=3,mem=64M,kernel=testguest",
    )
    .run("guest_on_the_last_of_four_cores");
    run.assert_line("guest z: vcpu 0 starts on cpu 3");
    check_testguest(&run, "z", 64);
}

/// Every way a guest can end ends only that guest, with a clear line and its statistics; the
/// guest beside it runs to its own end.
#[test]
fn guests_end_by_triple_fault_reset_and_power_off_independently() {
    let run = with_testguest(
        Boot::Multiboot1,
        4,
        "guest=a,cores=1,mem=16M,kernel=testguest,cmdline=\"end=triple-fault\" \
         guest=b,cores=2,mem=16M,kernel=testguest,cmdline=\"end=reset\",on-reset=end \
         guest=c,cores=3,mem=16M,kernel=testguest,irq=emulated",
    )
    .run("guests_end_independently");
    run.assert_line("guest a: ended: triple fault (shutdown) at rip 0x");
    run.assert_line("guest b: ended: reset request (port 0xCF9");
    check_testguest(&run, "c", 16);
    for name in ["a", "b"] {
        let counts = exit_counts(&run, name, 0);
        assert!(counts["total"] > 0, "guest {name} has statistics");
    }
    assert_eq!(exit_counts(&run, "a", 0).get("shutdown"), Some(&1));
    run.assert_line("didvisor: all guests ended");
}

/// HLT with interrupts disabled can never end: the emulated mode sees the HLT exit, the direct mode
/// (which leaves HLT to the hardware) finds it with its once-a-second NMI.
#[test]
fn guests_halted_forever_are_ended_in_both_modes() {
    let run = with_testguest(
        Boot::Multiboot1,
        3,
        "guest=d,cores=1,mem=16M,kernel=testguest,irq=direct,cmdline=\"end=halt\" \
         guest=e,cores=2,mem=16M,kernel=testguest,irq=emulated,cmdline=\"end=halt\"",
    )
    .run("guests_halted_forever");
    for name in ["d", "e"] {
        run.assert_line(&format!(
            "[{name}] testguest: halting with interrupts disabled"
        ));
        run.assert_line(&format!("guest {name}: ended: halted forever"));
    }
    assert_eq!(exit_counts(&run, "e", 0).get("hlt"), Some(&1));
    assert!(exit_counts(&run, "d", 0).get("nmi").copied().unwrap_or(0) >= 1);
    assert!(
        !exit_counts(&run, "d", 0).contains_key("hlt"),
        "direct mode does not intercept HLT"
    );
}
