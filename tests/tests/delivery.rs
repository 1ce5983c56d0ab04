//! Interrupt delivery semantics per mode (issue 16): the delivery-checking guest (`testguest
//! deliver=all`, one vCPU) drives self-IPIs, its LAPIC timer, the PIT and a level-triggered
//! IOAPIC line while forcing exits, and counts what it sent and what arrived; `tests::delivery`
//! asserts the counts (no loss, no duplicate, nothing out of priority order, register read-backs
//! as the model says) and each check's findings. The `avic` mode runs the same checks in
//! `cargo xtask qemu-avic smoke` (patched QEMU).
//!
//! With an NVMe SR-IOV machine and an IOMMU, `deliver_*_mode_vf` run the `vf` check alone on
//! three vCPUs: the passed-through VF's MSI-X interrupts, several entries aimed at every vCPU,
//! parked ones included (`tests::delivery::check_delivery_vf`).
//!
//! `deliver_emulated_mode` failed before the fix of the emulated HLT: the interrupt that woke a
//! `sti; hlt; cli` waited for the next STI (`hlt woke: ... timer 0/10, pit 0/10`).

mod common;

use common::{fresh_disks, with_testguest};
use std::time::Duration;
use tests::qemu::Boot;

fn delivery(irq: &str, vcpus: u32) {
    let test = format!("deliver_{irq}_mode_{vcpus}_vcpu");
    let guest = tests::delivery::delivery_guest(irq, vcpus);
    let run = with_testguest(Boot::Multiboot1, vcpus + 1, &guest)
        .timeout(Duration::from_secs(300))
        .run(&test);
    match tests::delivery::check_delivery(&run.serial, irq, vcpus) {
        Ok(summary) => println!("{test}:\n{summary}"),
        Err(e) => run.fail(&format!("delivery in {irq} mode, {vcpus} vcpus: {e}")),
    }
}

#[test]
fn deliver_direct_mode() {
    delivery("direct", 1);
}

#[test]
fn deliver_emulated_mode() {
    delivery("emulated", 1);
}

/// IPIs between two vCPUs, TPR on the receiving side, both racing.
#[test]
fn deliver_direct_mode_2_vcpus() {
    delivery("direct", 2);
}

/// As in direct mode; interrupts QEMU TCG delivers a second time with IF clear are counted
/// apart (`tests::delivery::Quirks::redelivered_with_if_clear`).
#[test]
fn deliver_emulated_mode_2_vcpus() {
    delivery("emulated", 2);
}

/// Three vCPUs: the all-excluding-self shorthand reaches two, logical destinations share a
/// cluster, two APs race to the BSP, NMIs go round the vCPUs.
#[test]
fn deliver_direct_mode_3_vcpus() {
    delivery("direct", 3);
}

/// As in direct mode (QEMU's redeliveries with IF clear allowed, as with two).
#[test]
fn deliver_emulated_mode_3_vcpus() {
    delivery("emulated", 3);
}

/// The VF's MSI-X entries are spread over them, and each AP is parked once.
const VF_VCPUS: u32 = 3;

/// The `vf` check alone (with `vfmsix`), three vCPUs, the VF passed through from 00:04.1 behind
/// the IOMMU.
fn delivery_vf(irq: &str) {
    let test = format!("deliver_{irq}_mode_vf");
    let disks = fresh_disks(&test);
    let run = with_testguest(
        Boot::Multiboot1,
        VF_VCPUS + 1,
        &tests::delivery::delivery_guest_vf(irq, "00:04.1", VF_VCPUS),
    )
    .memory_mb(1024)
    .arg("-device")
    .arg("amd-iommu,intremap=on,xtsup=on,pt=off")
    .nvme_sriov("deliver", &[&disks[0], &disks[1]])
    .timeout(Duration::from_secs(240))
    .run(&test);
    match tests::delivery::check_delivery_vf(&run.serial, irq, VF_VCPUS) {
        Ok(summary) => println!("{test}:\n{summary}"),
        Err(e) => run.fail(&format!("vf delivery in {irq} mode: {e}")),
    }
}

/// The VF's interrupts go through the IOMMU's remapping straight to the guest's core.
#[test]
fn deliver_direct_mode_vf() {
    delivery_vf("direct");
}

/// The VF's interrupts reach the hypervisor, which injects them.
#[test]
fn deliver_emulated_mode_vf() {
    delivery_vf("emulated");
}
