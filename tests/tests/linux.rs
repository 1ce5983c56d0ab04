//! The unmodified Debian kernel as a guest: boots to its init script on dedicated cores, with one
//! and two vCPUs, in the `direct` and `emulated` interrupt modes, and two guests side by side. The
//! interrupt assertions compare what the guest counted (`/proc/interrupts`) with what the
//! hypervisor counted (its exit statistics).

mod common;

use common::{console_lines, exit_counts, run_interval};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tests::qemu::{Qemu, Run};
use tests::report::ApicCounts;

/// Busy phase long enough for the guest to take thousands of local timer interrupts.
const LONG_SEQ: u32 = 2_000_000;

fn linux_guest(name: &str, cores: &str, irq: &str, seq: Option<u32>) -> String {
    let extra = seq
        .map(|n| format!(" didvisor.seq={n}"))
        .unwrap_or_default();
    format!(
        "guest={name},cores={cores},mem=256M,kernel=linux,initrd=initrd,irq={irq},cmdline=\"console=ttyS0 quiet{extra}\""
    )
}

fn boot(smp: u32, guests: &[String]) -> Qemu {
    Qemu::new()
        .smp(smp)
        .memory_mb(1024)
        .cmdline(&format!("debug-exit=0xf4 {}", guests.join(" ")))
        .module(tests::linux_kernel(), "linux")
        .module(tests::linux_initrd(), "initrd")
        .timeout(Duration::from_secs(240))
}

/// What the guest's init script reported, checked against values computed here.
struct GuestReport {
    nproc: u32,
    /// Local timer interrupts summed over the guest's CPUs.
    local_timer: u64,
}

fn check_guest(run: &Run, name: &str, seq: u32) -> GuestReport {
    let lines = console_lines(run, name);
    let value = |key: &str| {
        let prefix = format!("didvisor-guest: {key} ");
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| run.fail(&format!("guest {name} printed no `{key}` line")))
            .trim()
            .to_string()
    };
    assert_eq!(
        value("kernel"),
        tests::linux_version(),
        "guest {name} runs the packaged kernel"
    );
    let data: String = (1..=seq).map(|i| format!("{i}\n")).collect();
    let expected = format!("{:x}", Sha256::digest(data.as_bytes()));
    assert_eq!(
        value("checksum"),
        expected,
        "guest {name}: sha256 of `seq 1 {seq}`"
    );
    let nproc = value("nproc")
        .parse()
        .unwrap_or_else(|_| run.fail("nproc is not a number"));

    let begin = lines
        .iter()
        .position(|l| *l == "didvisor-guest: interrupts-begin");
    let end = lines
        .iter()
        .position(|l| *l == "didvisor-guest: interrupts-end");
    let (Some(begin), Some(end)) = (begin, end) else {
        run.fail(&format!("guest {name}: no /proc/interrupts"))
    };
    let interrupts = &lines[begin + 1..end];
    let header_cpus = interrupts
        .first()
        .map_or(0, |h| h.split_whitespace().count());
    assert_eq!(
        header_cpus as u32, nproc,
        "guest {name}: /proc/interrupts has one column per CPU"
    );
    let row = |label: &str| -> u64 {
        let row = interrupts
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| {
                run.fail(&format!(
                    "guest {name}: no `{label}` row in /proc/interrupts"
                ))
            });
        row.split_whitespace()
            .skip(1)
            .take(header_cpus)
            .map(|n| n.parse::<u64>().unwrap_or(0))
            .sum()
    };
    // The PIT's IRQ 0 arrived through the virtual IOAPIC (Linux needs it to calibrate).
    assert!(row("0:") > 0, "guest {name}: no timer interrupts on IRQ 0");
    let local_timer = row("LOC:");
    assert!(
        lines.contains(&"didvisor-guest: done"),
        "guest {name} did not finish its init script"
    );
    run.assert_line(&format!(
        "guest {name}: ended: power-off request (ACPI PM1a SLP_EN)"
    ));
    GuestReport { nproc, local_timer }
}

fn apic_counts(run: &Run, name: &str, vcpu: u32) -> ApicCounts {
    tests::report::apic_counts(&run.serial, name, vcpu)
        .unwrap_or_else(|| run.fail(&format!("no x2apic/interrupt lines for {name} vcpu {vcpu}")))
}

#[test]
fn linux_one_vcpu_direct_takes_timer_interrupts_without_exits() {
    let run =
        boot(2, &[linux_guest("lin", "1", "direct", Some(LONG_SEQ))]).run("linux_one_vcpu_direct");
    let report = check_guest(&run, "lin", LONG_SEQ);
    assert_eq!(report.nproc, 1);
    assert!(
        report.local_timer >= 2000,
        "only {} local timer interrupts",
        report.local_timer
    );
    let exits = exit_counts(&run, "lin", 0);
    for reason in ["intr", "vintr", "hlt"] {
        assert!(
            !exits.contains_key(reason),
            "direct mode exited for `{reason}`: {exits:?}"
        );
    }
    let apic = apic_counts(&run, "lin", 0);
    assert_eq!(apic.eoi, 0, "EOIs must not exit in direct mode");
    assert!(
        apic.timer <= tests::report::MAX_DIRECT_TIMER_LVT_EXITS,
        "timer programming must not exit per tick in direct mode: {} timer exits",
        apic.timer
    );
    assert_eq!(apic.injected, 0, "nothing is injected in direct mode");
    // The virtual UART's and PIT's interrupts: each IOAPIC message became one physical IPI.
    let device = tests::report::device_interrupts(&run.serial, "lin")
        .unwrap_or_else(|| run.fail("no device-interrupt line for lin"));
    assert!(
        device.ioapic > 0 && device.physical_ipis == Some(device.ioapic),
        "direct mode: {device:?}"
    );
}

#[test]
fn linux_one_vcpu_emulated_exits_for_each_interrupt() {
    let run = boot(2, &[linux_guest("lin", "1", "emulated", Some(LONG_SEQ))])
        .run("linux_one_vcpu_emulated");
    let report = check_guest(&run, "lin", LONG_SEQ);
    assert_eq!(report.nproc, 1);
    assert!(
        report.local_timer >= 2000,
        "only {} local timer interrupts",
        report.local_timer
    );
    let apic = apic_counts(&run, "lin", 0);
    // Every interrupt the guest took was injected at an exit and acknowledged by an EOI exit.
    assert!(
        apic.injected >= report.local_timer,
        "{} injected < {} local timer interrupts",
        apic.injected,
        report.local_timer
    );
    assert!(
        apic.eoi >= report.local_timer,
        "{} EOI exits < {} local timer interrupts",
        apic.eoi,
        report.local_timer
    );
    assert!(
        apic.timer > 0,
        "the virtual APIC timer was programmed through exits"
    );
    let exits = exit_counts(&run, "lin", 0);
    assert!(
        exits.get("intr").copied().unwrap_or(0) > 0,
        "host wake-ups exit in emulated mode: {exits:?}"
    );
}

fn two_vcpus(irq: &str) {
    let name = format!("linux_two_vcpus_{irq}");
    let run = boot(3, &[linux_guest("lin", "1-2", irq, None)]).run(&name);
    let report = check_guest(&run, "lin", 100_000);
    assert_eq!(report.nproc, 2);
    run.assert_line("guest lin: vcpu 0 starts on cpu 1");
    run.assert_line("guest lin: vcpu 1 starts on cpu 2");
    for vcpu in 0..2 {
        let apic = apic_counts(&run, "lin", vcpu);
        if irq == "direct" {
            assert!(
                apic.eoi == 0 && apic.timer <= tests::report::MAX_DIRECT_TIMER_LVT_EXITS,
                "vcpu {vcpu}: EOI/timer exits in direct mode: {apic:?}"
            );
        } else {
            assert!(
                apic.eoi > 0 && apic.timer > 0,
                "vcpu {vcpu}: emulated APIC not used"
            );
        }
    }
    // The boot processor started the other one with INIT and SIPI through its ICR.
    assert!(apic_counts(&run, "lin", 0).icr >= 2);
}

#[test]
fn linux_two_vcpus_direct() {
    two_vcpus("direct");
}

#[test]
fn linux_two_vcpus_emulated() {
    two_vcpus("emulated");
}

#[test]
fn two_linux_guests_side_by_side() {
    let run = boot(
        4,
        &[
            linux_guest("one", "1", "direct", None),
            linux_guest("two", "2-3", "emulated", None),
        ],
    )
    .run("two_linux_guests_side_by_side");
    assert_eq!(check_guest(&run, "one", 100_000).nproc, 1);
    assert_eq!(check_guest(&run, "two", 100_000).nproc, 2);
    let (a0, a1) = run_interval(&run, "one");
    let (b0, b1) = run_interval(&run, "two");
    assert!(
        a0 < b1 && b0 < a1,
        "guests ran one after another: {a0}..{a1} and {b0}..{b1} us"
    );
    run.assert_line("didvisor: all guests ended");
}

/// What is typed on the hypervisor's console reaches the console guest's serial port (and its
/// interrupt), and the guest's answer comes back out.
#[test]
fn console_input_reaches_the_guest() {
    let guest =
        linux_guest("lin", "1", "direct", None).replace("quiet", "quiet didvisor.test=input");
    let run = boot(2, &[guest])
        .type_after(
            "didvisor-guest: interrupts-end",
            "typed-on-the-console 42\n",
        )
        .run("console_input");
    check_guest(&run, "lin", 100_000);
    run.assert_line("[lin] didvisor-guest: input typed-on-the-console 42");
}

/// `Ctrl-] 2` on the hypervisor's console moves the keyboard to the second guest (the first one
/// gets nothing), `Ctrl-] 1` moves it back; the hypervisor says so on its console.
#[test]
fn console_switch_moves_the_keyboard_between_guests() {
    let guest = |name: &str, core: &str| {
        linux_guest(name, core, "direct", None).replace("quiet", "quiet didvisor.test=input")
    };
    let run = boot(3, &[guest("a", "1"), guest("b", "2")])
        .type_after(
            "[b] didvisor-guest: interrupts-end",
            "\x1d2typed-for-b\n\x1d1",
        )
        .run("console_switch");
    run.assert_line("console: keyboard to guest a (Ctrl-] n: next guest");
    run.assert_line("console: keyboard to guest b (2 of 2)");
    run.assert_line("[b] didvisor-guest: input typed-for-b");
    assert!(
        console_lines(&run, "a").contains(&"didvisor-guest: input"),
        "guest a got input: {:?}",
        console_lines(&run, "a")
    );
    run.assert_line("console: keyboard to guest a (1 of 2)");
    check_guest(&run, "a", 100_000);
    check_guest(&run, "b", 100_000);
}
