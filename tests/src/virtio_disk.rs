//! The virtio-blk check, shared by `tests/tests/virtio.rs` (direct and emulated modes) and
//! `cargo xtask qemu-avic smoke` (avic mode): one Linux guest with a boot module as its
//! virtio-blk disk runs guest/init.sh's `virtio-blk` step. The guest's sha256 of the disk must
//! be the host image's, its write must read back, the hypervisor's checksum of the disk at the
//! end must be the host image with the guest's pattern in it, and the interrupts the guest
//! counted must be the messages the device sent.

use crate::qemu::Qemu;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The disk: 2 MiB (the guest writes at 1 MiB).
pub const DISK_BYTES: usize = 2 << 20;
/// The guest's pattern word (`didvisor.pattern=`).
pub const PATTERN: &str = "virtioblk";

/// A disk image no two sectors of which are alike.
pub fn disk_image() -> Vec<u8> {
    (0..DISK_BYTES)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8 ^ (i >> 9) as u8)
        .collect()
}

/// The image after the guest's write: 64 KiB at 1 MiB, lines `PATTERN-i` padded with zeros
/// (guest/init.sh `write_pattern`).
pub fn written_image(mut image: Vec<u8>) -> Vec<u8> {
    let mut block: Vec<u8> = (0..2048)
        .flat_map(|i| format!("{PATTERN}-{i}\n").into_bytes())
        .take(65536)
        .collect();
    block.resize(65536, 0);
    image[1 << 20..(1 << 20) + 65536].copy_from_slice(&block);
    image
}

/// FNV-1a, 64 bits (what the hypervisor prints of a RAM disk).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `bytes` as `target/virtio-test/NAME.img`.
pub fn disk_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = crate::target_dir().join("virtio-test");
    std::fs::create_dir_all(&dir).expect("target/virtio-test");
    let path = dir.join(format!("{name}.img"));
    std::fs::write(&path, bytes).expect("disk image");
    path
}

/// QEMU with one Linux guest `lin` in `irq` mode whose disk is the file `disk`.
pub fn disk_qemu(irq: &str, disk: &Path) -> Qemu {
    let guest = format!(
        "guest=lin,cores=1,mem=256M,kernel=linux,initrd=initrd,irq={irq},disk=disk,\
         cmdline=\"console=ttyS0 quiet didvisor.seq=10 didvisor.test=virtio-blk didvisor.pattern={PATTERN}\""
    );
    Qemu::new()
        .smp(2)
        .memory_mb(1024)
        .cmdline(&format!("debug-exit=0xf4 {guest}"))
        .module(crate::linux_kernel(), "linux")
        .module(crate::linux_initrd(), "initrd")
        .module(disk, "disk")
        .timeout(Duration::from_secs(180))
}

/// What the hypervisor counted for the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskCounts {
    pub interrupts: u64,
    pub via_exits: u64,
    pub requests: u64,
    pub kicks: u64,
}

/// Checks a run of [`disk_qemu`] whose disk held `image`.
pub fn check_disk_run(serial: &str, image: &[u8]) -> Result<DiskCounts, String> {
    let lines: Vec<&str> = serial.lines().map(|l| l.trim_end_matches('\r')).collect();
    let guest = |key: &str| -> Result<String, String> {
        let prefix = format!("[lin] didvisor-guest: virtio-blk {key}");
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.trim().to_string())
            .ok_or(format!("the guest printed no `virtio-blk {key}` line"))
    };
    let sectors = guest("vda sectors")?;
    if sectors != (DISK_BYTES / 512).to_string() {
        return Err(format!("the guest sees {sectors} sectors"));
    }
    let want = format!("{:x}", Sha256::digest(image));
    let got = guest("vda sha256")?;
    if got != want {
        return Err(format!(
            "the guest read a disk with sha256 {got}, the host's is {want}"
        ));
    }
    if guest("write ok").is_err() {
        return Err("the guest did not read back what it wrote".into());
    }
    let guest_irqs: u64 = guest("interrupts")?
        .parse()
        .map_err(|_| "virtio-blk interrupts is not a number")?;
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    let disk = format!(
        "guest lin: virtio-blk 00:02.0: disk `disk`: {} sectors, fnv1a64 {:016x}",
        DISK_BYTES / 512,
        fnv1a64(&written_image(image.to_vec()))
    );
    if !has(&disk) {
        return Err(format!(
            "no `{disk}` line: the disk does not hold what the guest wrote"
        ));
    }
    // Linux resets the device at power-off (status 0 then); it must never have broken.
    if has("guest lin: virtio-blk 00:02.0: needs reset") {
        return Err("the device broke".into());
    }
    if !has("guest lin: ended: power-off request (ACPI PM1a SLP_EN)") {
        return Err("the guest did not power off".into());
    }
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("guest lin: virtio-blk 00:02.0: device interrupts: "))
        .ok_or("no virtio-blk interrupt line")?;
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [interrupts, via_exits, requests, kicks, ..] = nums[..] else {
        return Err(format!("cannot read `{line}`"));
    };
    if requests == 0 || interrupts == 0 {
        return Err(format!("no requests or no interrupts: {line}"));
    }
    // The guest counts what arrived: every message the device sent (its vectors are its own).
    if guest_irqs != interrupts {
        return Err(format!(
            "the guest counted {guest_irqs} virtio interrupts, the device sent {interrupts} ({line})"
        ));
    }
    Ok(DiskCounts {
        interrupts,
        via_exits,
        requests,
        kicks,
    })
}
