//! Boot paths and platform bring-up: Multiboot1 through QEMU `-kernel`, Multiboot2 through a GRUB ISO
//! on SeaBIOS and on OVMF; every core up with SVM; clear errors where the machine cannot host guests.

mod common;

use common::{didvisor, with_testguest};
use std::time::Duration;
use tests::qemu::{Boot, Expected};

#[test]
fn multiboot1_single_cpu() {
    let run = didvisor(Boot::Multiboot1, 1, "").run("multiboot1_single_cpu");
    run.assert_line("didvisor 0.1.0 booting");
    run.assert_line("boot: multiboot1, loader \"qemu\"");
    run.assert_line("boot: memory [0x000000100000-");
    run.assert_line("acpi: rsdp at 0x");
    run.assert_line("acpi: madt: 1 cpus, local apic at 0xfee00000");
    run.assert_line("acpi: mcfg: ecam 0xb0000000 segment 0 buses 0-255");
    run.assert_line("svm: revision 1, 16 asids, npt yes");
    run.assert_line("smp: cpu 0 apic 0 online (service core)");
    run.assert_line("svm: enabled on 1 of 1 cpus");
    run.assert_line("didvisor: no guests configured");
    run.assert_no_line("smp: cpu 1");
}

#[test]
fn multiboot1_four_cpus_all_with_svm() {
    let run = didvisor(Boot::Multiboot1, 4, "").run("multiboot1_four_cpus_all_with_svm");
    run.assert_line("acpi: madt: 4 cpus");
    for cpu in 1..4 {
        run.assert_line(&format!("smp: cpu {cpu} apic {cpu} online"));
    }
    run.assert_line("svm: enabled on 4 of 4 cpus");
    // The distribution's QEMU emulates no AVIC: the boot-time self-test says so and steps aside
    // (it runs, and is checked, under the patched QEMU of `cargo xtask qemu-avic smoke`).
    run.assert_line(
        "avic: not supported by this CPU (CPUID 8000_000A EDX bit 13 clear); self-test skipped",
    );
}

#[test]
fn multiboot1_passes_command_line_and_modules() {
    let run = with_testguest(Boot::Multiboot1, 2, "loglevel=info")
        .run("multiboot1_passes_command_line_and_modules");
    run.assert_line("boot: command line \"");
    run.assert_line("debug-exit=0xf4 loglevel=info\"");
    run.assert_line("boot: module 0 \"testguest\" [0x");
}

fn grub_boot(boot: Boot, name: &str) {
    let run = with_testguest(boot, 2, "guest=a,cores=1,mem=16M,kernel=testguest")
        .timeout(Duration::from_secs(120))
        .run(name);
    run.assert_line("boot: multiboot2, loader \"GRUB");
    run.assert_line("boot: module 0 \"testguest\"");
    // Multiboot2 hands over a copy of the RSDP: no BIOS-area search.
    run.assert_line("acpi: rsdp from the boot loader");
    run.assert_line("acpi: madt: 2 cpus");
    run.assert_line("svm: enabled on 2 of 2 cpus");
    run.assert_line("guest a: ended: power-off request");
    run.assert_line("didvisor: all guests ended");
}

#[test]
fn multiboot2_grub_bios() {
    grub_boot(Boot::GrubBios, "multiboot2_grub_bios");
}

#[test]
fn multiboot2_grub_uefi() {
    grub_boot(Boot::GrubUefi, "multiboot2_grub_uefi");
}

#[test]
fn cpu_without_svm_is_refused_clearly() {
    let run = with_testguest(
        Boot::Multiboot1,
        2,
        "guest=a,cores=1,mem=16M,kernel=testguest",
    )
    .cpu("qemu64,-svm")
    .expect_exit(Expected::Error)
    .run("cpu_without_svm_is_refused_clearly");
    run.assert_line(
        "error: this CPU does not support SVM (AMD-V): CPUID 8000_0001 ECX bit 2 is clear",
    );
    run.assert_line("didvisor: halting");
    run.assert_no_line("guest a:");
}

#[test]
fn svm_without_nested_paging_is_refused_clearly() {
    let run = didvisor(Boot::Multiboot1, 1, "")
        .cpu("qemu64,+svm,-npt")
        .expect_exit(Expected::Error)
        .run("svm_without_nested_paging_is_refused_clearly");
    run.assert_line("error: this CPU's SVM has no nested paging");
}

#[test]
fn iommu_is_found_in_ivrs() {
    let run = didvisor(Boot::Multiboot1, 1, "")
        .arg("-device")
        .arg("amd-iommu,intremap=on,xtsup=on,pt=off")
        .run("iommu_is_found_in_ivrs");
    run.assert_line("iommu 0: bdf 00:");
    run.assert_line("mmio 0xfed80000");
    run.assert_line("ioapic 0 -> 00:14.0");
    run.assert_line("iommu: enabled at 0xfed80000: all devices blocked");
    // The IOMMU itself is a PCI function (AMD, class 08.06).
    run.assert_line("class 08.06.00");
}

#[test]
fn pci_functions_and_sriov_are_listed() {
    let disk = tests::target_dir().join("test-work/pci_listing.img");
    std::fs::create_dir_all(disk.parent().expect("parent")).expect("work dir");
    std::fs::write(&disk, vec![0u8; 1 << 20]).expect("disk image");
    let run = didvisor(Boot::Multiboot1, 1, "")
        .nvme_sriov("abc", &[&disk])
        .run("pci_functions_and_sriov_are_listed");
    run.assert_line("pci: 00:00.0 [8086:29c0] class 06.00.00");
    run.assert_line("[1b36:0010] class 01.08.02");
    run.assert_line(": SR-IOV, up to 2 VFs (device 0010, first at +1, stride 1)");
}

#[test]
fn missing_iommu_is_reported() {
    let run = didvisor(Boot::Multiboot1, 1, "").run("missing_iommu_is_reported");
    run.assert_line("acpi: ivrs: ACPI table IVRS not present: no AMD-Vi IOMMU");
}

#[test]
fn bad_configuration_stops_before_any_guest() {
    let cases = [
        (
            "guest=a,cores=0,mem=16M,kernel=testguest",
            "command line: guest a: cores: cpu 0 is the service core",
        ),
        (
            "guest=a,cores=5,mem=16M,kernel=testguest",
            "command line: guest a: cores: cpu 5 does not exist (this machine has cpus 0-1)",
        ),
        (
            "guest=a,cores=1,mem=16M,kernel=nosuch",
            "command line: guest a: no boot module named `nosuch`",
        ),
        (
            "guest=a,cores=1,mem=16M",
            "command line: guest a: `kernel=` is required",
        ),
        (
            "guest=a,cores=1,mem=1G,kernel=testguest",
            "guest a: not enough free memory for the 1024 MiB below 4 GiB of its 1024 MiB of RAM",
        ),
        ("colour=blue", "command line: unknown word `colour=blue`"),
        (
            "console=zz guest=a,cores=1,mem=16M,kernel=testguest",
            "command line: console=zz: no guest has that name",
        ),
    ];
    for (i, (cmdline, message)) in cases.iter().enumerate() {
        let run = with_testguest(Boot::Multiboot1, 2, cmdline)
            .expect_exit(Expected::Error)
            .run(&format!("bad_configuration_{i}"));
        run.assert_line(&format!("error: {message}"));
        run.assert_no_line("starts on cpu");
    }
}

/// `irq=avic` on a CPU without AVIC (QEMU's TCG has none): that guest is refused with the reason,
/// the other guest runs to its end.
#[test]
fn avic_guest_is_refused_without_avic_and_others_run() {
    let run = with_testguest(
        Boot::Multiboot1,
        3,
        "guest=a,cores=1,mem=16M,kernel=testguest,irq=avic guest=b,cores=2,mem=16M,kernel=testguest",
    )
    .run("avic_guest_is_refused_without_avic");
    run.assert_line(
        "error: guest a: irq=avic needs SVM AVIC (CPUID 8000_000A EDX bit 13), which this CPU lacks",
    );
    run.assert_line("use irq=direct or irq=emulated; the guest does not start");
    run.assert_no_line("guest a: vcpu 0 starts");
    run.assert_line("guest b: vcpu 0 starts on cpu 2");
    run.assert_line("guest b: ended");
    run.assert_line("didvisor: all guests ended");
}
