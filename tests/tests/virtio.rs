//! virtio-blk end to end (`tests::virtio_disk`): the unmodified Debian kernel's `virtio_pci` and
//! `virtio_blk` drive the hypervisor's virtio-blk device (a boot module as a RAM disk, served
//! from the service core); the guest reads the host's image, writes and reads back, the
//! hypervisor's checksum of the disk at the end holds the write, every completion interrupt is
//! counted. In `direct` mode none may go through an exit, in `emulated` mode all do. (`avic`
//! runs in `cargo xtask qemu-avic smoke`, on the patched QEMU.)

use tests::virtio_disk::{check_disk_run, disk_file, disk_image, disk_qemu, DiskCounts};
use tests::Run;

mod common;

fn disk_run(irq: &str) -> (Run, DiskCounts) {
    let image = disk_image();
    let disk = disk_file(&format!("disk-{irq}"), &image);
    let run = disk_qemu(irq, &disk).run(&format!("virtio_blk_{irq}"));
    match check_disk_run(&run.serial, &image) {
        Ok(c) => (run, c),
        Err(e) => run.fail(&e),
    }
}

#[test]
fn virtio_blk_direct_mode() {
    let (run, c) = disk_run("direct");
    if c.via_exits != 0 {
        run.fail(&format!(
            "direct mode: {} of {} device interrupts went through exits",
            c.via_exits, c.interrupts
        ));
    }
}

#[test]
fn virtio_blk_emulated_mode() {
    let (run, c) = disk_run("emulated");
    if c.via_exits != c.interrupts {
        run.fail(&format!(
            "emulated mode: {} of {} device interrupts went through exits, expected all",
            c.via_exits, c.interrupts
        ));
    }
}

/// A hostile driver (`testguest end=virtio-bad`) beside a benign test guest: each malformed
/// ring (a descriptor loop, a buffer outside RAM, an absurd length, an index jump) leaves only
/// its device DEVICE_NEEDS_RESET; after the driver's reset the device serves again, the other
/// guest runs to its end, the hypervisor ends cleanly.
#[test]
fn virtio_blk_malformed_rings_break_only_their_device() {
    let disk = disk_file("malformed", &disk_image());
    let run = common::with_testguest(
        tests::Boot::Multiboot1,
        3,
        "guest=bad,cores=1,mem=16M,kernel=testguest,disk=disk,cmdline=\"end=virtio-bad\" \
         guest=good,cores=2,mem=16M,kernel=testguest",
    )
    .module(&disk, "disk")
    .run("virtio_blk_malformed_rings");
    let lines = common::console_lines(&run, "bad");
    let outcome = |name: &str| -> String {
        let prefix = format!("testguest: virtio: {name} -> ");
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| run.fail(&format!("no outcome for `{name}`")))
            .to_string()
    };
    assert_eq!(outcome("good read"), "used status 0");
    for bad in [
        "descriptor loop",
        "buffer outside ram",
        "absurd length",
        "index jump",
    ] {
        assert_eq!(outcome(bad), "needs reset", "{bad}");
    }
    assert_eq!(outcome("good read after reset"), "used status 0");
    assert!(lines.contains(&"testguest: virtio: done"));
    // The hypervisor names each malformation.
    for error in [
        "queue 0: Chain { head: 0, error: Loop",
        "queue 0: Chain { head: 0, error: OutsideRam { addr: Gpa(0xc0000000)",
        "queue 0: AvailIndexJump { last: 0, idx: 1000, size: 8 }",
    ] {
        run.assert_line(&format!("guest bad: virtio-blk: {error}"));
    }
    run.assert_line("guest bad: virtio-blk: a malformed ring or chain: the device needs a reset");
    run.assert_line("guest good: ended: power-off request (ACPI PM1a SLP_EN)");
    run.assert_line("guest bad: ended: power-off request (ACPI PM1a SLP_EN)");
    run.assert_line(
        "guest bad: virtio-blk 00:02.0: device interrupts: 0, of them through exits: 0; 2 requests",
    );
}

/// A Linux guest with a disk writes to it, reboots, and finds its write there on the second boot:
/// the restart resets the device (the new driver starts from a fresh device), the disk keeps
/// its blocks.
#[test]
fn virtio_blk_survives_a_guest_reboot() {
    use sha2::{Digest, Sha256};
    use tests::virtio_disk::{fnv1a64, written_image, DISK_BYTES, PATTERN};
    let image = disk_image();
    let disk = disk_file("reboot", &image);
    let guest = format!(
        "guest=lin,cores=1,mem=256M,kernel=linux,initrd=initrd,max-restarts=1,disk=disk,\
         cmdline=\"console=ttyS0 quiet didvisor.seq=10 didvisor.test=virtio-blk,reboot didvisor.pattern={PATTERN}\""
    );
    let run = common::didvisor(tests::Boot::Multiboot1, 2, &guest)
        .memory_mb(1024)
        .module(tests::linux_kernel(), "linux")
        .module(tests::linux_initrd(), "initrd")
        .module(&disk, "disk")
        .timeout(std::time::Duration::from_secs(240))
        .run("virtio_blk_reboot");
    let lines = common::console_lines(&run, "lin");
    let shas: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("didvisor-guest: virtio-blk vda sha256 "))
        .collect();
    let written = written_image(image.clone());
    let want = [
        format!("{:x}", Sha256::digest(&image)),
        format!("{:x}", Sha256::digest(&written)),
    ];
    if shas != want {
        run.fail(&format!(
            "disk as the guest read it on each boot: {shas:?}, expected {want:?}"
        ));
    }
    let ok = lines
        .iter()
        .filter(|l| **l == "didvisor-guest: virtio-blk write ok")
        .count();
    assert_eq!(ok, 2, "a write read back on each boot");
    run.assert_line("guest lin: restarted: boot 2 starts");
    run.assert_no_line("guest lin: virtio-blk 00:02.0: needs reset");
    run.assert_line(&format!(
        "guest lin: virtio-blk 00:02.0: disk `disk`: {} sectors, fnv1a64 {:016x}",
        DISK_BYTES / 512,
        fnv1a64(&written)
    ));
}
