//! Self-tests of the QEMU harness that do not depend on what the hypervisor does: they
//! prove that a timeout and an unexpected exit status fail a test, and that the GRUB
//! ISO for a test is built. They need the images (`cargo xtask build`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use tests::{Boot, Expected, Qemu};

fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the run should have failed");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// `-S` keeps the CPUs stopped, so the run can only end by the timeout.
#[test]
fn harness_timeout_kills_qemu() {
    let q = Qemu::new().arg("-S").timeout(Duration::from_secs(2));
    let run = q.run_unchecked("harness_timeout_kills_qemu");
    assert!(run.timed_out);
    assert_eq!(run.exit_code, None);
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    assert!(run
        .log_path
        .ends_with("test-logs/harness_timeout_kills_qemu.log"));

    let msg = panic_message(|| {
        q.run("harness_timeout_fails_the_test");
    });
    assert!(msg.contains("timed out"), "{msg}");
    assert!(msg.contains("harness_timeout_fails_the_test.log"), "{msg}");
}

/// An unknown option makes QEMU exit with status 1 at once.
#[test]
fn harness_unexpected_exit_status_fails() {
    let q = Qemu::new().arg("-no-such-option");
    let msg = panic_message(|| {
        q.clone()
            .expect_exit(Expected::Clean)
            .run("harness_exit_status");
    });
    assert!(msg.contains("exit status 1"), "{msg}");
    assert!(msg.contains("expected 33"), "{msg}");
    assert!(msg.contains("harness_exit_status.log"), "{msg}");
    assert!(
        msg.contains("no-such-option"),
        "QEMU's stderr is shown: {msg}"
    );

    let run = q
        .expect_exit(Expected::Code(1))
        .run("harness_exit_status_expected");
    assert_eq!(run.exit_code, Some(1));
}

/// The GRUB boots build their ISO (and OVMF variable store) in target/test-work/<test>/.
#[test]
fn harness_builds_grub_iso() {
    for (boot, name) in [
        (Boot::GrubBios, "harness_grub_bios_iso"),
        (Boot::GrubUefi, "harness_grub_uefi_iso"),
    ] {
        let run = Qemu::new()
            .boot(boot)
            .cmdline("guest=a,cores=1,mem=16M,kernel=testguest")
            .module(tests::testguest(), "testguest")
            .arg("-S")
            .timeout(Duration::from_secs(1))
            .run_unchecked(name);
        assert!(run.timed_out);
        let work = tests::target_dir().join("test-work").join(name);
        assert!(work.join("didvisor.iso").is_file());
        let cfg = std::fs::read_to_string(work.join("iso-root/boot/grub/grub.cfg")).unwrap();
        assert!(
            cfg.contains("module2 /boot/testguest.elf testguest"),
            "{cfg}"
        );
        assert_eq!(work.join("OVMF_VARS.fd").is_file(), boot == Boot::GrubUefi);
        assert!(run.command_line.contains("-cdrom"));
    }
}
