//! virtio-blk end to end: the unmodified Debian kernel's `virtio_pci` and `virtio_blk` drive
//! the hypervisor's virtio-blk device (a boot module as a RAM disk, served from the service
//! core). The guest checks the disk's content against the host's image (sha256), writes a
//! pattern and reads it back; the hypervisor's checksum of the disk at the end must be the
//! host's image with that pattern in it; every completion interrupt is counted, and in
//! `direct` mode none may go through an exit.

mod common;

use common::console_lines;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use tests::qemu::{Qemu, Run};

/// The disk: 2 MiB (the guest writes at 1 MiB).
const DISK_BYTES: usize = 2 << 20;
/// The guest's pattern word (`didvisor.pattern=`).
const PATTERN: &str = "virtioblk";

/// A disk image no two sectors of which are alike.
fn disk_image() -> Vec<u8> {
    (0..DISK_BYTES)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8 ^ (i >> 9) as u8)
        .collect()
}

/// The image after the guest's write: 64 KiB at 1 MiB, lines `PATTERN-i` padded with zeros
/// (guest/init.sh `write_pattern`).
fn written_image(mut image: Vec<u8>) -> Vec<u8> {
    let mut block: Vec<u8> = (0..2048)
        .flat_map(|i| format!("{PATTERN}-{i}\n").into_bytes())
        .take(65536)
        .collect();
    block.resize(65536, 0);
    image[1 << 20..(1 << 20) + 65536].copy_from_slice(&block);
    image
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn disk_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = tests::target_dir().join("virtio-test");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.img"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Boots one Linux guest with the disk in `irq` mode and checks everything but the interrupt
/// paths; returns the run and (device interrupts, through exits).
fn disk_run(irq: &str) -> (Run, u64, u64) {
    let image = disk_image();
    let disk = disk_file(&format!("disk-{irq}"), &image);
    let guest = format!(
        "guest=lin,cores=1,mem=256M,kernel=linux,initrd=initrd,irq={irq},disk=disk,\
         cmdline=\"console=ttyS0 quiet didvisor.seq=10 didvisor.test=virtio-blk didvisor.pattern={PATTERN}\""
    );
    let run = Qemu::new()
        .smp(2)
        .memory_mb(1024)
        .cmdline(&format!("debug-exit=0xf4 {guest}"))
        .module(tests::linux_kernel(), "linux")
        .module(tests::linux_initrd(), "initrd")
        .module(&disk, "disk")
        .timeout(Duration::from_secs(180))
        .run(&format!("virtio_blk_{irq}"));
    let lines = console_lines(&run, "lin");
    let value = |key: &str| -> String {
        let prefix = format!("didvisor-guest: virtio-blk {key}");
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| run.fail(&format!("the guest printed no `virtio-blk {key}` line")))
            .trim()
            .to_string()
    };
    assert_eq!(
        value("vda sectors"),
        (DISK_BYTES / 512).to_string(),
        "the disk's size as the guest sees it"
    );
    assert_eq!(
        value("vda sha256"),
        format!("{:x}", Sha256::digest(&image)),
        "the guest read the host's image"
    );
    if !lines.contains(&"didvisor-guest: virtio-blk write ok") {
        run.fail("the guest did not read back what it wrote");
    }
    let guest_irqs: u64 = value("interrupts")
        .parse()
        .unwrap_or_else(|_| run.fail("virtio-blk interrupts is not a number"));
    assert!(guest_irqs > 0, "the guest counted no virtio interrupts");
    run.assert_line(&format!(
        "guest lin: virtio-blk 00:02.0: disk `disk`: {} sectors, fnv1a64 {:016x}",
        DISK_BYTES / 512,
        fnv1a64(&written_image(image))
    ));
    // Linux resets the device at power-off (status 0 then); it never broke.
    run.assert_no_line("guest lin: virtio-blk 00:02.0: needs reset");
    run.assert_line("guest lin: ended: power-off request (ACPI PM1a SLP_EN)");
    let line = run
        .lines()
        .find_map(|l| {
            l.strip_prefix("guest lin: virtio-blk 00:02.0: device interrupts: ")
                .map(str::to_string)
        })
        .unwrap_or_else(|| run.fail("no virtio-blk interrupt line"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (irqs, via_exits, requests) = (nums[0], nums[1], nums[2]);
    assert!(requests > 0, "the backend served no request: {line}");
    assert!(irqs > 0, "no device interrupts: {line}");
    // The guest counts what arrived: every message the device sent (its vectors are not shared).
    assert_eq!(
        guest_irqs, irqs,
        "interrupts the guest counted vs messages the device sent ({line})"
    );
    (run, irqs, via_exits)
}

#[test]
fn virtio_blk_direct_mode() {
    let (run, irqs, via_exits) = disk_run("direct");
    if via_exits != 0 {
        run.fail(&format!(
            "direct mode: {via_exits} of {irqs} device interrupts went through exits"
        ));
    }
}

#[test]
fn virtio_blk_emulated_mode() {
    let (run, irqs, via_exits) = disk_run("emulated");
    if via_exits != irqs {
        run.fail(&format!(
            "emulated mode: {via_exits} of {irqs} device interrupts went through exits, expected all"
        ));
    }
}
