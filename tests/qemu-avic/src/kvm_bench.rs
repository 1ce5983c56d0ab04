//! The `kvm` and `kvm-avic` columns of `cargo xtask bench` (docs/evaluation.md): the bench
//! guest (the project's kernel, initramfs and didbench, 2 vCPUs, 256 MiB) as the L2 of a Debian
//! L1 running kvm_amd (`avic=0` or `1`) on the patched QEMU, the machinery of `cargo xtask
//! qemu-avic kvm`. The L2 marks each workload window on its console; the L1 snapshots KVM's
//! exit hists at each mark (tests/qemu-avic/kvm-l1-init.sh); this file runs one L1 and turns the
//! snapshot differences into the counters didvisor reports (the same names, so one report).

use std::collections::BTreeMap;
use std::path::Path;

use provision::Result;

use crate::kvm::{self, Run};

/// The L2 machine: microvm as in the validation, plus a PCIe host for an emulated NVMe
/// controller on a sparse disk in the L1's memory (the storage path differs from the VF).
const L2_MACHINE: &str = "-machine microvm,pit=off,pic=off,rtc=off,isa-serial=on,pcie=on \
    -bios /usr/share/qemu/qboot.rom -drive file=/tmp/disk.img,if=none,id=d0,format=raw \
    -device nvme,serial=bench,drive=d0";

/// Boots one L1 with `kvm_amd avic=avic` whose L2 runs `cmdline`; the L1's console goes to
/// `log`. `l2_secs` bounds the L2 inside the L1, `l1_secs` the whole L1 (killed at the
/// deadline). The exit code of the L1 QEMU, None when killed.
pub fn run(
    qemu: &Path,
    avic: &str,
    cmdline: &str,
    disk_mb: u64,
    (l2_secs, l1_secs): (u64, u64),
    log: &Path,
) -> Result<Option<i32>> {
    let spec = kvm::L2Spec {
        modes: avic,
        append: cmdline.to_string(),
        timeout_secs: l2_secs,
        extra: vec![
            ("/l2/machine", L2_MACHINE.to_string()),
            ("/l2/disk-mb", disk_mb.to_string()),
        ],
    };
    let initrd = log.with_extension("l1-initrd.gz");
    let (_, l1_kernel) = kvm::prepare_l1(&spec, &initrd)?;
    let code = kvm::run_logged(
        &mut kvm::l1_command(qemu, &l1_kernel, &initrd),
        log,
        l1_secs,
    );
    let _ = std::fs::remove_file(&initrd);
    code
}

/// The L1's console of a bench run with one avic mode: that mode's [`Run`].
pub fn parse(out: &str, avic: &str) -> Option<Run> {
    kvm::parse_l1(out).remove(avic)
}

fn number(v: &str) -> Option<u64> {
    let v = v.trim();
    v.strip_prefix("0x")
        .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
}

/// The fields of a hist key (`exit_reason: 124, write: 1`).
fn fields(key: &str) -> BTreeMap<&str, u64> {
    key.split(", ")
        .filter_map(|f| f.split_once(": "))
        .filter_map(|(k, v)| Some((k, number(v)?)))
        .collect()
}

/// KVM's exits in `workload`'s window (between the L1's snapshots at the L2's marks) as the
/// counters didvisor reports: `exits` (all but CPUID), `cpuid`, `intr` (0x60), `hlt` (0x78),
/// `msr` (0x7C), `npf` (0x400), `ioio` (0x7B); `eoi`, `timer` and `ipi`: x2APIC EOI, timer
/// (LVTT, TMICT, TSC_DEADLINE) and ICR writes, AVIC_NOACCEL at their offsets, and every
/// AVIC_INCOMPLETE_IPI exit (0x401) for `ipi`; `injected`: KVM's virtual interrupt injections.
/// None when the L1 printed no snapshots for that window.
pub fn window_counters(run: &Run, workload: &str) -> Option<BTreeMap<&'static str, u64>> {
    let w = kvm::phase_run(run, workload)?;
    let mut c: BTreeMap<&'static str, u64> = [
        "exits", "cpuid", "intr", "eoi", "timer", "ipi", "injected", "hlt", "msr", "npf", "ioio",
    ]
    .iter()
    .map(|k| (*k, 0))
    .collect();
    let mut add = |k: &'static str, n: u64| *c.entry(k).or_default() += n;
    let hist = |name: &str| w.hist.get(name).into_iter().flatten();
    for (key, &n) in hist("exit") {
        let Some(&code) = fields(key).get("exit_reason") else {
            continue;
        };
        add("exits", n);
        match code {
            0x60 => add("intr", n),
            0x72 => add("cpuid", n),
            0x78 => add("hlt", n),
            0x7b => add("ioio", n),
            0x7c => add("msr", n),
            0x400 => add("npf", n),
            0x401 => add("ipi", n),
            _ => {}
        }
    }
    for (key, &n) in hist("msr") {
        let f = fields(key);
        if f.get("write") != Some(&1) {
            continue;
        }
        match f.get("ecx") {
            Some(0x80b) => add("eoi", n),
            Some(0x830) => add("ipi", n),
            Some(0x832 | 0x838 | 0x6e0) => add("timer", n),
            _ => {}
        }
    }
    for (key, &n) in hist("avic_unacc") {
        match fields(key).get("offset") {
            Some(0xb0) => add("eoi", n),
            Some(0x300) => add("ipi", n),
            Some(0x320 | 0x380) => add("timer", n),
            _ => {}
        }
    }
    for (_, &n) in hist("inj") {
        add("injected", n);
    }
    let cpuid = c["cpuid"];
    if let Some(e) = c.get_mut("exits") {
        *e = e.saturating_sub(cpuid);
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An L1 console of one bench run: the timer window's snapshots, `k` = 0 before, 1 after.
    fn console(avic: u32, end: bool) -> String {
        let snap = |phase: &str, k: u64| {
            format!(
                "=== hist exit@timer-{phase} avic={avic}\r\n\
                 {{ exit_reason:        124 }} hitcount: {}\r\n\
                 {{ exit_reason:        120 }} hitcount: {}\r\n\
                 {{ exit_reason:        114 }} hitcount: {}\r\n\
                 {{ exit_reason:       1026 }} hitcount: {}\r\n\
                 === hist msr@timer-{phase} avic={avic}\r\n\
                 {{ ecx:       2059, write:          1 }} hitcount: {}\r\n\
                 {{ ecx:       1760, write:          1 }} hitcount: {}\r\n\
                 {{ ecx:       1760, write:          0 }} hitcount: 7\r\n\
                 === hist avic_unacc@timer-{phase} avic={avic}\r\n\
                 {{ offset:        176, rw: 1 }} hitcount: {}\r\n\
                 === hist inj@timer-{phase} avic={avic}\r\n\
                 {{ common_pid:        321 }} hitcount: {}\r\n\
                 === l2 resume avic={avic}\r\n",
                10 + k * 400,
                10 + k * 200,
                10 + k * 3,
                10 + k * 50,
                10 + k * 150,
                10 + k * 200,
                10 + k * 50,
                10 + k * 190
            )
        };
        let mut s = format!(
            "=== l2 begin avic={avic}\r\ndidvisor-guest: kernel 6.1\r\n\
             didvisor-bench-mark: timer begin\r\n{}",
            snap("begin", 0)
        );
        if end {
            s.push_str("didvisor-bench-mark: timer end\r\n");
            s.push_str(&snap("end", 1));
        }
        s + &format!("=== l2 end avic={avic} rc=0 secs=90\r\n=== done\r\n")
    }

    #[test]
    fn window_counters_from_snapshots() {
        let run = parse(&console(1, true), "1").unwrap();
        let c = window_counters(&run, "timer").unwrap();
        // 400 MSR + 200 HLT + 3 CPUID + 50 AVIC_NOACCEL, less the CPUID exits.
        assert_eq!(c["exits"], 650);
        assert_eq!((c["msr"], c["hlt"], c["cpuid"]), (400, 200, 3));
        assert_eq!(c["eoi"], 150 + 50);
        assert_eq!(c["timer"], 200);
        assert_eq!(c["injected"], 190);
        assert_eq!((c["ipi"], c["npf"], c["intr"]), (0, 0, 0));
        assert_eq!(window_counters(&run, "ipi"), None);
        // No end snapshot (the L2 hung in its window): no counters.
        let hung = parse(&console(0, false), "0").unwrap();
        assert_eq!(window_counters(&hung, "timer"), None);
        assert!(parse(&console(0, true), "1").is_none());
    }
}
