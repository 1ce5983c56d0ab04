//! `cargo xtask qemu-avic smoke`, the hypervisor's `irq=avic` part: the Debian guest (1 and 2
//! vCPUs) boots under the patched QEMU with `-cpu max,+avic,+x2avic` to its init and powers off,
//! with the same kernel/nproc/checksum lines as in the other modes, and the exit tables show
//! what AVIC takes over (no EOI exits, no exits for fixed IPIs between the vCPUs, no x2APIC MSR
//! intercepts, no INTR exits: the service core posts the LAPIC timer's vector with the doorbell)
//! and what still exits (the trapped timer-register writes, 402h). Then a guest with an NVMe
//! VF (`amd-iommu,...,ga=on`): the stock nvme driver writes a pattern, the VF's MSI-X entries are
//! posted by the IOMMU into the backing page (GA mode) and none of its interrupts exits. Then the
//! refusals: a CPU without AVIC and one with xAVIC only refuse the `irq=avic` guest and run the
//! other one, and so does an IOMMU without GA mode for an `irq=avic` guest with a VF.

use provision::linux;
use std::path::Path;
use std::time::Duration;
use tests::qemu::Qemu;
use tests::report;

/// Lines of `seq 1 100000` the guest's init hashes (guest/init.sh's default).
pub const SEQ: u32 = 100_000;

/// What one Linux guest run must show; `Ok` carries a one-line summary.
pub fn check_linux_run(
    serial: &str,
    guest: &str,
    vcpus: u32,
    kernel: &str,
    checksum: &str,
) -> Result<String, String> {
    let prefix = format!("[{guest}] didvisor-guest: ");
    let lines: Vec<&str> = serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect();
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .map(str::trim)
            .ok_or_else(|| format!("guest {guest} printed no `{key}` line"))
    };
    if value("kernel")? != kernel {
        return Err(format!("kernel {} is not {kernel}", value("kernel")?));
    }
    if value("nproc")? != vcpus.to_string() {
        return Err(format!("nproc {}, expected {vcpus}", value("nproc")?));
    }
    if value("checksum")? != checksum {
        return Err(format!("checksum {} is not {checksum}", value("checksum")?));
    }
    if !lines.contains(&"done") {
        return Err(format!(
            "guest {guest} did not reach `didvisor-guest: done`"
        ));
    }
    let ended = format!("guest {guest}: ended: power-off request (ACPI PM1a SLP_EN)");
    if !serial.contains(&ended) {
        return Err(format!("no `{ended}`"));
    }
    // /proc/interrupts rows, summed over the CPUs.
    let row = |label: &str| -> u64 {
        let full = format!("[{guest}] ");
        serial
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix(full.as_str()))
            .find(|l| l.trim_start().starts_with(label))
            .map_or(0, |l| {
                l.split_whitespace()
                    .skip(1)
                    .take(vcpus as usize)
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            })
    };
    let (loc, res, cal) = (row("LOC:"), row("RES:"), row("CAL:"));
    if loc == 0 {
        return Err("the guest took no local timer interrupts (LOC)".into());
    }
    if vcpus > 1 && res + cal == 0 {
        return Err("the guest took no rescheduling/function-call IPIs (RES, CAL)".into());
    }
    let (mut timer_writes, mut tmcct, mut posted) = (0, 0, 0);
    for vcpu in 0..vcpus {
        let table = report::exit_table(serial, guest, vcpu)
            .ok_or_else(|| format!("no exit table for vcpu {vcpu}"))?;
        let apic = report::apic_counts(serial, guest, vcpu)
            .ok_or_else(|| format!("no x2apic line for vcpu {vcpu}"))?;
        let avic = report::avic_counts(serial, guest, vcpu)
            .ok_or_else(|| format!("no avic line for vcpu {vcpu}"))?;
        if apic.eoi + apic.timer + apic.icr != 0 {
            return Err(format!(
                "vcpu {vcpu}: x2APIC MSR exits {apic:?}; AVIC takes them"
            ));
        }
        if avic.eoi != 0 {
            return Err(format!("vcpu {vcpu}: {} EOI exits", avic.eoi));
        }
        if avic.fixed_ipi != 0 {
            return Err(format!(
                "vcpu {vcpu}: {} exits for fixed IPIs",
                avic.fixed_ipi
            ));
        }
        if avic.ipi_errors != 0 {
            return Err(format!("vcpu {vcpu}: {} invalid IPIs", avic.ipi_errors));
        }
        if avic.posted_timer == 0 {
            return Err(format!("vcpu {vcpu}: no timer vector posted"));
        }
        if let Some(&n) = table.get("intr").filter(|&&n| n != 0) {
            return Err(format!(
                "vcpu {vcpu}: {n} INTR exits; the timer is posted by the service core"
            ));
        }
        if table.contains_key("hlt") || table.contains_key("vintr") {
            return Err(format!(
                "vcpu {vcpu}: HLT/VINTR exits in avic mode: {table:?}"
            ));
        }
        timer_writes += avic.timer;
        tmcct += avic.tmcct;
        posted += avic.posted_timer;
    }
    if vcpus > 1 && report::avic_counts(serial, guest, 0).map_or(0, |a| a.start_ipi) < 2 {
        return Err("vcpu 0 did not start vcpu 1 with INIT and SIPI (401h cause 0)".into());
    }
    Ok(format!(
        "LOC {loc}, RES {res}, CAL {cal}; EOI exits 0, fixed-IPI exits 0, INTR exits 0; posted timer {posted}, timer-write exits (402h) {timer_writes}, TMCCT exits {tmcct}"
    ))
}

/// What the `irq=avic` guest with a VF must show (besides the pattern on the disk image).
pub fn check_vf_run(serial: &str, guest: &str) -> Result<String, String> {
    let console = format!("[{guest}] didvisor-guest: ");
    let lines: Vec<&str> = serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|l| l.strip_prefix(console.as_str()))
        .collect();
    if !lines.contains(&"nvme write ok") {
        return Err(format!("guest {guest} did not report `nvme write ok`"));
    }
    let interrupts: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("nvme interrupts "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or("no `nvme interrupts N` line")?;
    if interrupts == 0 {
        return Err("the guest counted no nvme interrupts".into());
    }
    let via_exits = report::vf_interrupts_via_exits(serial, guest)
        .ok_or("no `device interrupts went through exits` line")?;
    if via_exits != 0 {
        return Err(format!(
            "{via_exits} VF interrupts arrived as host vectors (INTR exits)"
        ));
    }
    let posted = serial
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(&format!("guest {guest}: vf "))?;
            let (_, counts) = rest.split_once(": ")?;
            let (n, refused) = counts.split_once(" MSI-X entries posted (GA), ")?;
            Some((
                n.parse::<u64>().ok()?,
                refused.split(' ').next()?.parse::<u64>().ok()?,
            ))
        })
        .ok_or("no `MSI-X entries posted (GA)` line")?;
    if posted.0 == 0 || posted.1 != 0 {
        return Err(format!(
            "{} MSI-X entries posted, {} refused",
            posted.0, posted.1
        ));
    }
    let table = report::exit_table(serial, guest, 0).ok_or("no exit table for vcpu 0")?;
    let avic = report::avic_counts(serial, guest, 0).ok_or("no avic line for vcpu 0")?;
    if avic.eoi != 0 {
        return Err(format!("{} EOI exits", avic.eoi));
    }
    if table.contains_key("hlt") || table.contains_key("vintr") {
        return Err(format!("HLT/VINTR exits in avic mode: {table:?}"));
    }
    if !serial.contains(&format!("guest {guest}: ended: power-off request")) {
        return Err("the guest did not power off".into());
    }
    Ok(format!(
        "nvme write ok, nvme interrupts {interrupts}, of them through exits 0, MSI-X entries posted {}, INTR exits (timer) {}",
        posted.0,
        table.get("intr").copied().unwrap_or(0)
    ))
}

/// The attack guest's VF attacks (`tests::attack::check_vf_attacks`) in irq=avic with an NVMe
/// VF under `amd-iommu,ga=on`.
fn vf_attacks(bin: &Path) -> (Result<String, String>, std::path::PathBuf) {
    let [disk, spare] = fresh_disks("qemu-avic-smoke-vf-attacks");
    let run = with_nvme(
        Qemu::new()
            .binary(bin)
            .cpu("max,+avic,+x2avic")
            .smp(3)
            .memory_mb(1024)
            .cmdline(&format!(
                "debug-exit=0xf4 {}",
                tests::attack::vf_attack_guests("avic", "00:04.1")
            ))
            .module(tests::testguest(), "testguest")
            .timeout(Duration::from_secs(300)),
        true,
        &disk,
        &spare,
    )
    .run_unchecked("qemu-avic-smoke-vf-attacks");
    let result = match (run.timed_out, run.exit_code) {
        (false, Some(33)) => tests::attack::check_vf_attacks(&run.serial, "avic")
            .map(|_| "bar moves, straddling access and MSI-X vector 2 contained".to_string()),
        (true, _) => Err("QEMU timed out".into()),
        (_, code) => Err(format!("QEMU exit {code:?}")),
    };
    (result, run.log_path)
}

/// The VF run's machine: IOMMU (`ga` on or off) and QEMU's NVMe controller with SR-IOV
/// (as `tests/tests/passthrough.rs`), namespace 1 backed by a fresh 64 MiB image.
fn with_nvme(q: Qemu, ga: bool, disk: &Path, spare: &Path) -> Qemu {
    let ga = if ga { ",ga=on" } else { "" };
    q.arg("-device")
        .arg(&format!("amd-iommu,intremap=on,xtsup=on,pt=off{ga}"))
        .nvme_sriov("didvisor", &[disk, spare])
}

/// Two fresh 64 MiB images for `test`.
fn fresh_disks(test: &str) -> [std::path::PathBuf; 2] {
    tests::qemu::fresh_disks(test, 64)
}

/// Whether `disk` holds at 1 MiB the 64 KiB block guest/init.sh's `nvme-write` writes:
/// `PATTERN-0\nPATTERN-1\n...` cut at 64 KiB.
pub fn check_pattern(disk: &Path, pattern: &str) -> Result<(), String> {
    let mut want: Vec<u8> = (0..2048)
        .flat_map(|i| format!("{pattern}-{i}\n").into_bytes())
        .collect();
    want.resize(65536, 0);
    let data = std::fs::read(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    if data.get(1 << 20..(1 << 20) + 65536) != Some(want.as_slice()) {
        return Err(format!(
            "{} does not hold the `{pattern}` block at 1 MiB",
            disk.display()
        ));
    }
    Ok(())
}

/// The refusal cases: (name, -cpu, the line the `irq=avic` guest's refusal must contain).
const REFUSALS: [(&str, &str, &str); 2] = [
    (
        "noavic",
        "max",
        "guest a: irq=avic needs SVM AVIC (CPUID 8000_000A EDX bit 13), which this CPU lacks",
    ),
    (
        "xavic",
        "max,+avic",
        "guest a: irq=avic needs x2AVIC for now (CPUID 8000_000A EDX bit 18); this CPU has xAVIC only",
    ),
];

/// The refusal of an `irq=avic` guest with a VF when the IOMMU has no GA mode.
const VF_NO_GA: &str =
    "guest a: irq=avic with vf= needs an AMD-Vi IOMMU in guest virtual APIC mode";

/// The refusal must be there, guest a must not start, guest b must end normally.
pub fn check_refusal(serial: &str, message: &str) -> Result<(), String> {
    if !serial.lines().any(|l| l.contains(message)) {
        return Err(format!("no line `{message}`"));
    }
    if serial.contains("guest a: vcpu 0 starts") {
        return Err("the refused guest started".into());
    }
    if !serial.contains("guest b: ended") {
        return Err("the other guest did not run to its end".into());
    }
    Ok(())
}

/// Runs the Linux boots and the refusals with QEMU `bin`; returns (passed, failed).
pub fn smoke(bin: &Path, checksum: &str) -> (u32, u32) {
    let (mut passed, mut failed) = (0, 0);
    let mut verdict = |what: &str, r: Result<String, String>, log: &Path| match r {
        Ok(summary) => {
            passed += 1;
            println!("xtask: qemu-avic smoke: {what}: ok ({summary})");
        }
        Err(e) => {
            failed += 1;
            println!(
                "xtask: qemu-avic smoke: {what}: FAILED: {e} (log {})",
                log.display()
            );
        }
    };
    let (result, log) = vf_attacks(bin);
    verdict(
        "attack guest's VF attacks in irq=avic (amd-iommu ga=on)",
        result,
        &log,
    );
    let kernel = tests::linux_version();
    for (vcpus, cores) in [(1u32, "1"), (2, "1-2")] {
        let name = format!("qemu-avic-smoke-linux-avic-{vcpus}vcpu");
        let guest = format!(
            "guest=lin,cores={cores},mem=256M,kernel={},initrd={},irq=avic,cmdline=\"console=ttyS0 quiet\"",
            linux::KERNEL_MODULE_NAME,
            linux::INITRD_MODULE_NAME
        );
        let run = Qemu::new()
            .binary(bin)
            .cpu("max,+avic,+x2avic")
            .smp(vcpus + 1)
            .memory_mb(1024)
            .cmdline(&format!("debug-exit=0xf4 {guest}"))
            .module(tests::linux_kernel(), linux::KERNEL_MODULE_NAME)
            .module(tests::linux_initrd(), linux::INITRD_MODULE_NAME)
            .timeout(Duration::from_secs(300))
            .run_unchecked(&name);
        let result = match (run.timed_out, run.exit_code) {
            (false, Some(33)) => check_linux_run(&run.serial, "lin", vcpus, &kernel, checksum),
            (true, _) => Err("QEMU timed out".into()),
            (_, code) => Err(format!("QEMU exit {code:?}")),
        };
        if result.is_ok() {
            for vcpu in 0..vcpus {
                print_exit_table(&run.serial, vcpu);
            }
        }
        verdict(
            &format!("linux irq=avic, {vcpus} vCPU(s) (-cpu max,+avic,+x2avic)"),
            result,
            &run.log_path,
        );
    }
    {
        let name = "qemu-avic-smoke-linux-avic-vf";
        let [disk, spare] = fresh_disks(name);
        let guest = format!(
            "guest=lin,cores=1,mem=256M,kernel={},initrd={},irq=avic,vf=00:04.1,cmdline=\"console=ttyS0 quiet didvisor.test=nvme-write didvisor.pattern=posted\"",
            linux::KERNEL_MODULE_NAME,
            linux::INITRD_MODULE_NAME
        );
        let q = Qemu::new()
            .binary(bin)
            .cpu("max,+avic,+x2avic")
            .smp(2)
            .memory_mb(1024)
            .cmdline(&format!("debug-exit=0xf4 {guest}"))
            .module(tests::linux_kernel(), linux::KERNEL_MODULE_NAME)
            .module(tests::linux_initrd(), linux::INITRD_MODULE_NAME)
            .timeout(Duration::from_secs(300));
        let run = with_nvme(q, true, &disk, &spare).run_unchecked(name);
        let result = match (run.timed_out, run.exit_code) {
            (false, Some(33)) => check_vf_run(&run.serial, "lin").and_then(|summary| {
                check_pattern(&disk, "posted").map(|()| format!("{summary}, pattern on disk"))
            }),
            (true, _) => Err("QEMU timed out".into()),
            (_, code) => Err(format!("QEMU exit {code:?}")),
        };
        if result.is_ok() {
            print_exit_table(&run.serial, 0);
        }
        verdict(
            "linux irq=avic with an NVMe VF (amd-iommu ga=on)",
            result,
            &run.log_path,
        );
    }
    {
        // virtio-blk completions posted into the backing page with a doorbell: no exits.
        use tests::virtio_disk::{check_disk_run, disk_file, disk_image, disk_qemu};
        let name = "qemu-avic-smoke-linux-avic-virtio-blk";
        let image = disk_image();
        let disk = disk_file(name, &image);
        let run = disk_qemu("avic", &disk)
            .binary(bin)
            .cpu("max,+avic,+x2avic")
            .timeout(Duration::from_secs(300))
            .run_unchecked(name);
        let result = match (run.timed_out, run.exit_code) {
            (false, Some(33)) => check_disk_run(&run.serial, &image).and_then(|c| {
                if c.via_exits == 0 {
                    Ok(format!(
                        "{} requests, {} device interrupts, 0 through exits, {} kicks",
                        c.requests, c.interrupts, c.kicks
                    ))
                } else {
                    Err(format!(
                        "{} of {} device interrupts went through exits",
                        c.via_exits, c.interrupts
                    ))
                }
            }),
            (true, _) => Err("QEMU timed out".into()),
            (_, code) => Err(format!("QEMU exit {code:?}")),
        };
        verdict(
            "linux irq=avic with a virtio-blk disk (completions posted, no exits)",
            result,
            &run.log_path,
        );
    }
    {
        let name = "qemu-avic-smoke-refusal-vf-noga";
        let [disk, spare] = fresh_disks(name);
        let q = Qemu::new()
            .binary(bin)
            .cpu("max,+avic,+x2avic")
            .smp(3)
            .memory_mb(512)
            .cmdline("debug-exit=0xf4 guest=a,cores=1,mem=16M,kernel=testguest,irq=avic,vf=00:04.1 guest=b,cores=2,mem=16M,kernel=testguest")
            .module(tests::testguest(), "testguest")
            .timeout(Duration::from_secs(60));
        let run = with_nvme(q, false, &disk, &spare).run_unchecked(name);
        let result = match run.exit_code {
            Some(33) => check_refusal(&run.serial, VF_NO_GA).map(|()| VF_NO_GA.to_string()),
            code => Err(format!("QEMU exit {code:?}")),
        };
        verdict(
            "irq=avic with vf= refused (amd-iommu without ga=on)",
            result,
            &run.log_path,
        );
    }
    for (name, cpu, message) in REFUSALS {
        let run = Qemu::new()
            .binary(bin)
            .cpu(cpu)
            .smp(3)
            .memory_mb(512)
            .cmdline("debug-exit=0xf4 guest=a,cores=1,mem=16M,kernel=testguest,irq=avic guest=b,cores=2,mem=16M,kernel=testguest")
            .module(tests::testguest(), "testguest")
            .timeout(Duration::from_secs(60))
            .run_unchecked(&format!("qemu-avic-smoke-refusal-{name}"));
        let result = match run.exit_code {
            Some(33) => check_refusal(&run.serial, message).map(|()| message.to_string()),
            code => Err(format!("QEMU exit {code:?}")),
        };
        verdict(
            &format!("irq=avic refused (-cpu {cpu})"),
            result,
            &run.log_path,
        );
    }
    (passed, failed)
}

/// Prints the hypervisor's exit block for `lin`'s vCPU `vcpu`.
fn print_exit_table(serial: &str, vcpu: u32) {
    let header = format!("guest lin: vcpu {vcpu} exits:");
    let mut lines = serial
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| l.trim_end() != header);
    if let Some(h) = lines.next() {
        println!("  {h}");
        for l in lines.take_while(|l| l.starts_with(' ')) {
            println!("  {l}");
        }
    }
}

#[cfg(test)]
mod tests_ {
    use super::*;

    fn serial(vcpus: u32, eoi: u64, fixed: u64, res: u64) -> String {
        let mut s = String::new();
        s.push_str("[lin] didvisor-guest: kernel 6.1.0-56-amd64\n");
        s.push_str(&format!("[lin] didvisor-guest: nproc {vcpus}\n"));
        s.push_str("[lin] didvisor-guest: checksum abc\n");
        s.push_str("[lin] didvisor-guest: interrupts-begin\n");
        s.push_str("[lin]            CPU0       CPU1\n");
        s.push_str("[lin] LOC:        856        753   Local timer interrupts\n");
        s.push_str(&format!(
            "[lin] RES:        {res}        0   Rescheduling interrupts\n"
        ));
        s.push_str("[lin] CAL:          0          0   Function call interrupts\n");
        s.push_str("[lin] didvisor-guest: interrupts-end\n");
        s.push_str("[lin] didvisor-guest: done\n");
        s.push_str(
            "guest lin: ended: power-off request (ACPI PM1a SLP_EN) (ran from 1 us to 2 us)\n",
        );
        for v in (0..vcpus).rev() {
            s.push_str(&format!("guest lin: vcpu {v} exits:\n"));
            s.push_str("  exit reason  count  cycles/exit\n  avic_noaccel  12  1\n  total  12\n");
            s.push_str("  x2apic msr exits: eoi 0, timer 0, tpr 0, icr 0, self-ipi 0, other 0\n");
            s.push_str(
                "  interrupts: 1 sent to this vcpu by the hypervisor, 0 injected at exits\n",
            );
            s.push_str(&format!("  avic: exits eoi {eoi}, timer 8, apic 3, tmcct 2, gp 0, fixed-ipi {fixed}, start-ipi 2, other-ipi 0, ipi-errors 0; posted timer 9, device 1, doorbells 1\n"));
        }
        s
    }

    #[test]
    fn linux_run_checks() {
        let k = "6.1.0-56-amd64";
        let ok = check_linux_run(&serial(2, 0, 0, 5), "lin", 2, k, "abc").unwrap();
        assert!(
            ok.contains("RES 5")
                && ok.contains("INTR exits 0")
                && ok.contains("posted timer 18")
                && ok.contains("timer-write exits (402h) 16")
                && ok.contains("TMCCT exits 4"),
            "{ok}"
        );
        assert!(check_linux_run(&serial(1, 0, 0, 0), "lin", 1, k, "abc").is_ok());
        let e = |s: String, n| check_linux_run(&s, "lin", n, k, "abc").unwrap_err();
        assert!(e(serial(2, 1, 0, 5), 2).contains("EOI exits"));
        assert!(e(serial(2, 0, 3, 5), 2).contains("fixed IPIs"));
        assert!(e(serial(2, 0, 0, 0), 2).contains("IPIs (RES, CAL)"));
        assert!(e(serial(2, 0, 0, 5), 1).contains("nproc"));
        assert!(check_linux_run(&serial(1, 0, 0, 0), "lin", 1, k, "abd")
            .unwrap_err()
            .contains("checksum"));
        let no_done = serial(1, 0, 0, 0).replace("didvisor-guest: done", "x");
        assert!(e(no_done, 1).contains("did not reach"));
        // One vCPU with INTR exits (a host timer tick) fails the run.
        let intr = serial(2, 0, 0, 5).replacen("  avic_noaccel  12  1\n", "  intr  3  1\n", 1);
        assert!(e(intr, 2).contains("vcpu 1: 3 INTR exits"));
        // An INTR row of 0 is no INTR exit.
        let zero = serial(1, 0, 0, 0).replace("  avic_noaccel  12  1\n", "  intr  0  1\n");
        assert!(check_linux_run(&zero, "lin", 1, k, "abc").is_ok());
        let unposted = serial(2, 0, 0, 5).replacen("posted timer 9", "posted timer 0", 1);
        assert!(e(unposted, 2).contains("vcpu 1: no timer vector posted"));
    }

    fn vf_serial(interrupts: u64, via_exits: u64, posted: u64, refused: u64) -> String {
        let mut s = String::new();
        s.push_str("[lin] didvisor-guest: nvme write ok\n");
        s.push_str(&format!(
            "[lin] didvisor-guest: nvme interrupts {interrupts}\n"
        ));
        s.push_str(&format!(
            "guest lin: vf 00:04.1: {via_exits} device interrupts went through exits\n"
        ));
        s.push_str(&format!(
            "guest lin: vf 00:04.1: {posted} MSI-X entries posted (GA), {refused} refused\n"
        ));
        s.push_str(
            "guest lin: ended: power-off request (ACPI PM1a SLP_EN) (ran from 1 us to 2 us)\n",
        );
        s.push_str("guest lin: vcpu 0 exits:\n  exit reason  count  cycles/exit\n  intr  159  1\n  total  159\n");
        s.push_str("  avic: exits eoi 0, timer 12, apic 33, tmcct 27, gp 0, fixed-ipi 0, start-ipi 0, other-ipi 0, ipi-errors 0; posted timer 304, device 365, doorbells 178, ga-log 0\n");
        s
    }

    #[test]
    fn vf_run_checks() {
        let ok = check_vf_run(&vf_serial(18, 0, 2, 0), "lin").unwrap();
        assert!(
            ok.contains("nvme interrupts 18") && ok.contains("posted 2"),
            "{ok}"
        );
        let e = |s: String| check_vf_run(&s, "lin").unwrap_err();
        assert!(e(vf_serial(0, 0, 2, 0)).contains("no nvme interrupts"));
        assert!(e(vf_serial(18, 3, 2, 0)).contains("host vectors"));
        assert!(e(vf_serial(18, 0, 0, 0)).contains("0 MSI-X entries posted"));
        assert!(e(vf_serial(18, 0, 2, 1)).contains("1 refused"));
        assert!(
            e(vf_serial(18, 0, 2, 0).replace("nvme write ok", "nvme write mismatch"))
                .contains("nvme write ok")
        );
    }

    #[test]
    fn pattern_check() {
        let dir = std::env::temp_dir().join(format!("didvisor-pattern-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let disk = dir.join("d.img");
        let mut data = vec![0u8; 2 << 20];
        let block: Vec<u8> = (0..2048)
            .flat_map(|i| format!("p-{i}\n").into_bytes())
            .collect();
        data[1 << 20..(1 << 20) + block.len().min(65536)]
            .copy_from_slice(&block[..block.len().min(65536)]);
        std::fs::write(&disk, &data).unwrap();
        assert!(check_pattern(&disk, "p").is_ok());
        assert!(check_pattern(&disk, "q").is_err());
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        assert!(check_pattern(&disk, "p").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refusal_checks() {
        let m = REFUSALS[0].2;
        let good = format!("error: {m} (AVIC self-test: x); use irq=direct\nguest b: vcpu 0 starts on cpu 2\nguest b: ended: power-off\n");
        assert!(check_refusal(&good, m).is_ok());
        assert!(check_refusal("guest b: ended\n", m).is_err());
        assert!(check_refusal(&format!("{good}guest a: vcpu 0 starts on cpu 1\n"), m).is_err());
        assert!(check_refusal(&format!("error: {m}\n"), m).is_err());
    }
}
