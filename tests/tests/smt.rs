//! SMT siblings: QEMU 10 with `-cpu max -smp 4,threads=2` reports two threads per core in CPUID
//! leaf 0Bh (x2APIC ids 0-1 and 2-3 are the two cores). didvisor refuses, before any guest
//! starts, a layout that puts the threads of one core into different guests or a guest beside the
//! service core; one guest on both threads of a core runs.

mod common;

use common::with_testguest;
use tests::qemu::{Boot, Expected, Qemu};

/// Four logical CPUs as two cores of two threads (`-smp` given again: QEMU merges the options).
fn two_threads_per_core(cmdline: &str) -> Qemu {
    with_testguest(Boot::Multiboot1, 4, cmdline)
        .arg("-smp")
        .arg("4,threads=2")
}

#[test]
fn siblings_in_different_guests_or_beside_the_service_core_are_refused() {
    let cases = [
        (
            "guest=a,cores=1,mem=16M,kernel=testguest",
            "error: command line: cpu 0 (the service core) and cpu 1 (guest a) are SMT siblings, \
             threads of one physical core (core 0, x2APIC ids 0 and 1)",
        ),
        (
            "guest=a,cores=2,mem=16M,kernel=testguest guest=b,cores=3,mem=16M,kernel=testguest",
            "error: command line: cpu 2 (guest a) and cpu 3 (guest b) are SMT siblings, \
             threads of one physical core (core 1, x2APIC ids 2 and 3)",
        ),
    ];
    for (i, (cmdline, message)) in cases.iter().enumerate() {
        let run = two_threads_per_core(cmdline)
            .expect_exit(Expected::Error)
            .run(&format!("smt_refused_{i}"));
        run.assert_line("cpu topology: 2 threads per core (CPUID 0Bh; x2APIC id >> 1 = core)");
        run.assert_line(message);
        // Refused before the other cores start, so no guest ran.
        run.assert_no_line("smp: cpu 1 apic 1 online");
        run.assert_no_line("starts on cpu");
    }
}

#[test]
fn one_guest_on_both_threads_of_a_core_runs() {
    let run = two_threads_per_core("guest=a,cores=2-3,mem=16M,kernel=testguest")
        .run("smt_one_guest_per_core");
    run.assert_line("cpu topology: 2 threads per core (CPUID 0Bh; x2APIC id >> 1 = core)");
    run.assert_line("guest a: vcpu 1 starts on cpu 3");
    run.assert_line("guest a: ended: power-off request");
}

#[test]
fn one_thread_per_core_by_default() {
    // What every other QEMU test runs with: `-smp N` alone gives one thread per core.
    let run = with_testguest(
        Boot::Multiboot1,
        3,
        "guest=a,cores=1,mem=16M,kernel=testguest guest=b,cores=2,mem=16M,kernel=testguest",
    )
    .run("smt_single_thread");
    run.assert_line("cpu topology: 1 thread per core (CPUID 0Bh; x2APIC id >> 0 = core)");
    run.assert_line("guest b: ended: power-off request");
}
