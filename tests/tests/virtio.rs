//! virtio-blk end to end (`tests::virtio_disk`): the unmodified Debian kernel's `virtio_pci` and
//! `virtio_blk` drive the hypervisor's virtio-blk device (a boot module as a RAM disk, served
//! from the service core); the guest reads the host's image, writes and reads back, the
//! hypervisor's checksum of the disk at the end holds the write, every completion interrupt is
//! counted. In `direct` mode none may go through an exit, in `emulated` mode all do. (`avic`
//! runs in `cargo xtask qemu-avic smoke`, on the patched QEMU.)

use tests::virtio_disk::{check_disk_run, disk_file, disk_image, disk_qemu, DiskCounts};
use tests::Run;

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
