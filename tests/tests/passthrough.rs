//! SR-IOV VF passthrough under AMD-Vi: the guest's stock nvme driver does real I/O on its VF, the
//! data lands in the host's disk image, and the VF's interrupts reach the guest without exits.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tests::qemu::{Expected, Qemu, Run};

/// QEMU's NVMe controller with SR-IOV (two VFs) and two detached namespaces, backed by `disks`.
fn nvme_args(q: Qemu, disks: &[PathBuf; 2]) -> Qemu {
    q.nvme_sriov("didvisor", &[&disks[0], &disks[1]])
}

/// Two fresh 64 MiB namespace images for `test`.
fn disks(test: &str) -> [PathBuf; 2] {
    tests::qemu::fresh_disks(test, 64)
}

fn boot(test: &str, smp: u32, guests: &[String], iommu: bool) -> (Qemu, [PathBuf; 2]) {
    let d = disks(test);
    let mut q = Qemu::new()
        .smp(smp)
        .memory_mb(1024)
        .cmdline(&format!("debug-exit=0xf4 {}", guests.join(" ")))
        .module(tests::linux_kernel(), "linux")
        .module(tests::linux_initrd(), "initrd")
        .timeout(Duration::from_secs(240));
    if iommu {
        q = q
            .arg("-device")
            .arg("amd-iommu,intremap=on,xtsup=on,pt=off");
    }
    (nvme_args(q, &d), d)
}

fn vf_guest(name: &str, cores: &str, vf: &str, pattern: &str) -> String {
    vf_guest_in(name, cores, vf, pattern, "direct")
}

fn vf_guest_in(name: &str, cores: &str, vf: &str, pattern: &str, irq: &str) -> String {
    format!(
        "guest={name},cores={cores},mem=256M,kernel=linux,initrd=initrd,irq={irq},vf={vf},cmdline=\"console=ttyS0 quiet didvisor.test=nvme-write didvisor.pattern={pattern}\""
    )
}

fn interrupts_via_exits(run: &Run, name: &str) -> u64 {
    tests::report::vf_interrupts_via_exits(&run.serial, name)
        .unwrap_or_else(|| run.fail(&format!("guest {name}: no vf interrupt count")))
}

/// The 64 KiB the guest wrote at byte offset 1 MiB: `PATTERN-0\nPATTERN-1\n...` cut at 64 KiB.
fn expected_block(pattern: &str) -> Vec<u8> {
    let mut v: Vec<u8> = (0..2048)
        .flat_map(|i| format!("{pattern}-{i}\n").into_bytes())
        .collect();
    v.resize(65536, 0);
    v
}

fn assert_written(run: &Run, disk: &Path, pattern: &str) {
    let data = fs::read(disk).expect("reading the disk image back");
    let block = &data[1 << 20..(1 << 20) + 65536];
    if block != expected_block(pattern).as_slice() {
        run.fail(&format!(
            "{} does not hold the `{pattern}` block at 1 MiB",
            disk.display()
        ));
    }
}

/// What the guest's nvme step reported: write check and interrupt count.
fn nvme_report(run: &Run, name: &str) -> u64 {
    let lines = common::console_lines(run, name);
    assert!(
        lines.contains(&"didvisor-guest: nvme write ok"),
        "guest {name}: {lines:#?}"
    );
    lines
        .iter()
        .find_map(|l| l.strip_prefix("didvisor-guest: nvme interrupts "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| run.fail(&format!("guest {name}: no nvme interrupt count")))
}

#[test]
fn linux_guest_does_io_on_its_vf_with_interrupts_and_no_exits_for_them() {
    let (q, disks) = boot(
        "vf_one_guest",
        2,
        &[vf_guest("lin", "1", "00:04.1", "alpha")],
        true,
    );
    let run = q.run("vf_one_guest");
    // The PF the hypervisor drives reaches only its own three DMA pages (isolation), and VF
    // bring-up still works through that domain.
    run.assert_line("nvme: 00:04.0: dma domain 1: 3 pages (admin queues ");
    run.assert_line("nvme: 00:04.0: vf 1 at 00:04.1 online");
    run.assert_line("guest lin: vf 00:04.1 as 00:01.0, dma domain 2");
    let interrupts = nvme_report(&run, "lin");
    assert!(
        interrupts > 0,
        "the VF's interrupts did not reach the guest"
    );
    assert_written(&run, &disks[0], "alpha");
    // Direct mode: the VF's MSI-X goes to the guest's core with its vector; nothing exits for it
    // (no INTR exits at all, no EOI exits).
    let exits = common::exit_counts(&run, "lin", 0);
    assert!(
        !exits.contains_key("intr") && !exits.contains_key("vintr"),
        "{exits:?}"
    );
    // No EOI exits; timer-register exits only for the few filtered LVT writes of a boot.
    let apic = tests::report::apic_counts(&run.serial, "lin", 0)
        .unwrap_or_else(|| run.fail("no x2apic line for lin vcpu 0"));
    assert!(
        apic.eoi == 0 && apic.timer <= tests::report::MAX_DIRECT_TIMER_LVT_EXITS,
        "{apic:?}"
    );
    assert_eq!(interrupts_via_exits(&run, "lin"), 0);
    run.assert_line("guest lin: ended: power-off request");
}

#[test]
fn emulated_mode_takes_an_exit_for_every_vf_interrupt() {
    let guest = vf_guest_in("lin", "1", "00:04.1", "echo", "emulated");
    let (q, disks) = boot("vf_emulated", 2, &[guest], true);
    let run = q.run("vf_emulated");
    let interrupts = nvme_report(&run, "lin");
    assert_written(&run, &disks[0], "echo");
    // Each VF interrupt the guest counted arrived as a host vector, exited, and was injected.
    let via_exits = interrupts_via_exits(&run, "lin");
    assert!(
        interrupts > 0 && via_exits >= interrupts,
        "guest counted {interrupts}, exits delivered {via_exits}"
    );
    let exits = common::exit_counts(&run, "lin", 0);
    assert!(
        exits.get("intr").copied().unwrap_or(0) >= via_exits,
        "{exits:?}"
    );
}

#[test]
fn two_guests_each_with_a_vf_on_separate_namespaces() {
    let guests = [
        vf_guest("a", "1", "00:04.1", "alpha"),
        vf_guest("b", "2", "00:04.2", "bravo"),
    ];
    let (q, disks) = boot("vf_two_guests", 3, &guests, true);
    let run = q.run("vf_two_guests");
    run.assert_line("nvme: 00:04.0: vf 2 at 00:04.2 online");
    nvme_report(&run, "a");
    nvme_report(&run, "b");
    assert_written(&run, &disks[0], "alpha");
    assert_written(&run, &disks[1], "bravo");
    run.assert_line("guest a: vf 00:04.1 as 00:01.0, dma domain 2");
    run.assert_line("guest b: vf 00:04.2 as 00:01.0, dma domain 3");
}

#[test]
fn without_an_iommu_no_vf_is_passed_through_and_other_guests_run() {
    let plain =
        "guest=plain,cores=2,mem=256M,kernel=linux,initrd=initrd,cmdline=\"console=ttyS0 quiet\""
            .to_string();
    let (q, _) = boot(
        "vf_no_iommu",
        3,
        &[vf_guest("lin", "1", "00:04.1", "alpha"), plain],
        false,
    );
    let run = q.expect_exit(Expected::Clean).run("vf_no_iommu");
    run.assert_line("error: guest lin: vf=00:04.1: no AMD-Vi IOMMU, so no DMA isolation: refusing to pass the device through; the guest does not start");
    run.assert_no_line("[lin]");
    run.assert_line("guest plain: ended: power-off request");
    run.assert_line("didvisor: all guests ended");
}

/// A purpose-built guest aims its VF's DMA at hypervisor memory and at another guest's memory:
/// nothing of theirs reaches the disk, nothing of the disk reaches them (the hypervisor checks its
/// canary pages after the run), while DMA inside the guest's own RAM works.
#[test]
fn vf_dma_outside_the_guest_is_blocked() {
    let guests = [
        "guest=a,cores=1,mem=16M,kernel=testguest,vf=00:04.1,cmdline=\"end=nvme-dma canary=hypervisor canary=guest:b\"".to_string(),
        "guest=b,cores=2,mem=16M,kernel=testguest".to_string(),
    ];
    let (q, _) = boot("vf_dma_isolation", 3, &guests, true);
    let run = q
        .module(tests::testguest(), "testguest")
        .run("vf_dma_isolation");
    let console = common::console_lines(&run, "a");
    assert!(
        console.contains(&"testguest: nvme: write+read inside ram ok"),
        "{console:#?}"
    );
    let foreign_writes: Vec<_> = console
        .iter()
        .filter(|l| l.contains(" after write from 0x"))
        .collect();
    assert_eq!(foreign_writes.len(), 2, "{console:#?}");
    for l in &foreign_writes {
        assert!(
            l.ends_with("zeros (no foreign data)")
                || l.ends_with("unchanged (the write did not land)"),
            "foreign memory reached the disk: {l}"
        );
    }
    assert_eq!(
        console
            .iter()
            .filter(|l| l.starts_with("testguest: nvme: read into 0x"))
            .count(),
        2
    );
    assert!(console.contains(&"testguest: nvme: done"), "{console:#?}");
    run.assert_line("canary: hypervisor page at 0x");
    run.assert_line("canary: guest b at 0x");
    assert_eq!(run.count(": intact"), 2, "both canaries intact");
    run.assert_no_line("CHANGED");
    run.assert_line("guest b: ended: power-off request");
}
