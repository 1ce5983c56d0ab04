//! Server shapes under QEMU TCG (issue #12): a two-socket topology whose x2APIC ids go above 255,
//! with 35 of 512 possible CPUs present and guests spread over both sockets in `irq=direct` and
//! `irq=emulated`; the same on QEMU's EPYC-Genoa model, and EPYC-Milan, so the CPUID-driven
//! paths (CPU name, topology, SVM features, speculation controls) see server values.
//!
//! QEMU numbers x2APIC ids by topology: with `sockets=2,cores=128,threads=2` an id is
//! `socket << 8 | core << 1 | thread`, so socket 1 starts at 256. Only the boot CPU is there at
//! reset (`-smp 1,maxcpus=512`); the others are plugged at chosen places with `-device`, the way
//! a server's firmware lists every possible thread in the MADT (512 entries here) and enables
//! those that exist. Cost: about 20 s per two-socket run on a 2-core host (35 vCPU threads).

mod common;

use common::{console_lines, with_testguest};
use std::time::Duration;
use tests::qemu::{Boot, Expected, Qemu, Run};

/// `-smp` for the two-socket machine (merged with the harness's `-smp 1`).
const TWO_SOCKETS: &str = "1,maxcpus=512,sockets=2,cores=128,threads=2";

/// A CPU plugged into the two-socket machine.
#[derive(Clone, Copy)]
struct Place {
    socket: u32,
    core: u32,
    thread: u32,
}

impl Place {
    /// QEMU's x2APIC id for this place in [`TWO_SOCKETS`] (7 core bits, 1 thread bit).
    fn apic_id(self) -> u32 {
        (self.socket << 8) | (self.core << 1) | self.thread
    }
}

/// The plugged CPUs in x2APIC id order, which is the MADT's order and so the hypervisor's
/// logical CPU order after the boot CPU (logical CPU i + 1 is `plugged()[i]`): both threads of
/// core 5 in socket 0 (ids 10, 11), both threads of cores 0, 8, ..., 120 in socket 1 (ids 256 to
/// 497, with gaps, as on real EPYCs whose CCDs are not fully populated).
fn plugged() -> Vec<Place> {
    let socket0 = (0..2).map(|thread| Place {
        socket: 0,
        core: 5,
        thread,
    });
    let socket1 = (0..16).flat_map(|c| {
        (0..2).map(move |thread| Place {
            socket: 1,
            core: c * 8,
            thread,
        })
    });
    socket0.chain(socket1).collect()
}

/// QEMU's `-cpu` value for `model` with `lacks` (features TCG cannot emulate) removed, and
/// x2APIC added: KVM adds it to every model, TCG does not, and every EPYC has one.
fn cpu_option(model: &str, lacks: &[&str]) -> String {
    let mut s = format!("{model},+x2apic");
    for f in lacks {
        s.push_str(",-");
        s.push_str(f);
    }
    s
}

/// What QEMU 10's TCG does not emulate of EPYC-Milan (its "TCG doesn't support requested
/// feature" warnings): PCID/INVPCID, XSAVEC/XSAVES, the AMD speculation controls (IBPB, IBRS,
/// STIBP, SSBD), topology extensions (CPUID 8000_001Eh), NRIP save and a few more.
const TCG_LACKS_MILAN: &[&str] = &[
    "pcid",
    "invpcid",
    "xsavec",
    "xsaves",
    "misalignsse",
    "osvw",
    "perfctr-core",
    "topoext",
    "fxsr-opt",
    "amd-ssbd",
    "amd-stibp",
    "clzero",
    "ibpb",
    "ibrs",
    "nrip-save",
];

/// What EPYC-Genoa adds to [`TCG_LACKS_MILAN`]: AVX-512 and its neighbours, the newer
/// speculation bits (CPUID 8000_0021h), and virtual NMI.
const TCG_LACKS_GENOA_MORE: &[&str] = &[
    "avx512f",
    "avx512dq",
    "avx512ifma",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512vbmi",
    "avx512vbmi2",
    "avx512vnni",
    "avx512bitalg",
    "avx512-vpopcntdq",
    "avx512-bf16",
    "gfni",
    "vpclmulqdq",
    "amd-psfd",
    "stibp-always-on",
    "vnmi",
    "auto-ibrs",
    "lfence-always-serializing",
    "no-nested-data-bp",
    "null-sel-clr-base",
];

/// The two-socket machine with CPU model `model` (QEMU's type name without `-x86_64-cpu`) and
/// `cpu` as its `-cpu` value.
fn two_socket_machine(model: &str, cpu: &str, cmdline: &str) -> Qemu {
    let mut q = with_testguest(Boot::Multiboot1, 1, cmdline)
        .memory_mb(1024)
        .cpu(cpu)
        .arg("-smp")
        .arg(TWO_SOCKETS)
        .timeout(Duration::from_secs(120));
    for p in plugged() {
        q = q.arg("-device").arg(&format!(
            "{model}-x86_64-cpu,socket-id={},core-id={},thread-id={}",
            p.socket, p.core, p.thread
        ));
    }
    q
}

/// Single-vCPU test guests: one on the first thread of every socket-1 core but the first and
/// the last (logical CPUs 5, 7, ..., 31), direct and emulated in turn; the second threads stay
/// idle.
fn single_guests() -> Vec<(String, usize, &'static str)> {
    (5..=31)
        .step_by(2)
        .enumerate()
        .map(|(i, cpu)| {
            let irq = if i % 2 == 0 { "direct" } else { "emulated" };
            (format!("g{cpu}"), cpu, irq)
        })
        .collect()
}

/// Guest `a` (direct) on logical CPUs 2-4: x2APIC ids 11 (socket 0), 256 and 257 (socket 1),
/// its vCPUs sending IPIs to each other across the sockets; guest `b` (emulated) on the last
/// core's two threads, ids 496 and 497; the single-vCPU guests on the cores between. 16 guests.
fn spread_cmdline() -> String {
    let mut line = tests::delivery::smp_guest("a", "direct", "2-4");
    line.push(' ');
    line.push_str(&tests::delivery::smp_guest("b", "emulated", "33-34"));
    for (name, cpu, irq) in single_guests() {
        line.push_str(&format!(
            " guest={name},cores={cpu},mem=16M,kernel=testguest,irq={irq}"
        ));
    }
    line
}

/// Everything a run of [`spread_cmdline`] on the two-socket machine must show.
fn check_spread(run: &Run) {
    let places = plugged();
    let cpus = places.len() + 1;
    run.assert_line(&format!("acpi: madt: {cpus} cpus"));
    run.assert_line(&format!(
        "acpi: madt: {} more cpus listed as disabled",
        512 - cpus
    ));
    run.assert_no_line("entries beyond what didvisor keeps");
    run.assert_line("cpu topology: 2 threads per core (CPUID 0Bh; x2APIC id >> 1 = core)");
    run.assert_line("smp: cpu 0 apic 0 online (service core)");
    for (i, p) in places.iter().enumerate() {
        run.assert_line(&format!("smp: cpu {} apic {} online", i + 1, p.apic_id()));
    }
    run.assert_line(&format!("svm: enabled on {cpus} of {cpus} cpus"));

    for (name, irq, vcpus) in [("a", "direct", 3), ("b", "emulated", 2)] {
        if let Err(e) = tests::delivery::check_smp_guest(&run.serial, name, irq, vcpus) {
            run.fail(&format!("guest {name} ({irq}, {vcpus} vcpus): {e}"));
        }
    }
    for (vcpu, cpu) in [(0, 2), (1, 3), (2, 4)] {
        run.assert_line(&format!("guest a: vcpu {vcpu} starts on cpu {cpu}"));
    }
    run.assert_line("guest b: vcpu 1 starts on cpu 34");
    for (name, cpu, irq) in single_guests() {
        let built = format!("guest {name}: 16 MiB ram at host ");
        let shape = format!("cores {cpu}, irq {irq}");
        if !run
            .lines()
            .any(|l| l.starts_with(&built) && l.ends_with(&shape))
        {
            run.fail(&format!("no `{built}... {shape}` line"));
        }
        run.assert_line(&format!("guest {name}: vcpu 0 starts on cpu {cpu}"));
        let console = console_lines(run, &name);
        if console.last() != Some(&"testguest: done, requesting power-off") {
            run.fail(&format!("guest {name} did not reach its end: {console:#?}"));
        }
        run.assert_line(&format!(
            "guest {name}: ended: power-off request (ACPI PM1a SLP_EN)"
        ));
    }
    run.assert_line("didvisor: all guests ended");
}

/// QEMU must have been able to give every feature asked for (the lists above are complete).
fn assert_no_tcg_warnings(run: &Run) {
    if run
        .qemu_stderr
        .contains("TCG doesn't support requested feature")
    {
        run.fail("QEMU warned about a feature TCG lacks: add it to the model's list");
    }
}

#[test]
fn two_sockets_with_apic_ids_above_255() {
    let run = two_socket_machine("max", "max", &spread_cmdline())
        .run("two_sockets_with_apic_ids_above_255");
    check_spread(&run);
    println!(
        "two_sockets_with_apic_ids_above_255: {:.1} s",
        run.elapsed.as_secs_f64()
    );
}

#[test]
fn smt_siblings_above_apic_id_255_are_kept_together() {
    let run = two_socket_machine(
        "max",
        "max",
        "guest=a,cores=3,mem=16M,kernel=testguest guest=b,cores=4,mem=16M,kernel=testguest",
    )
    .expect_exit(Expected::Error)
    .run("smt_siblings_above_apic_id_255_are_kept_together");
    run.assert_line(
        "error: command line: cpu 3 (guest a) and cpu 4 (guest b) are SMT siblings, \
         threads of one physical core (core 128, x2APIC ids 256 and 257)",
    );
    run.assert_no_line("starts on cpu");
}

#[test]
fn epyc_genoa_two_sockets() {
    let lacks: Vec<&str> = TCG_LACKS_MILAN
        .iter()
        .chain(TCG_LACKS_GENOA_MORE)
        .copied()
        .collect();
    let run = two_socket_machine(
        "EPYC-Genoa",
        &cpu_option("EPYC-Genoa", &lacks),
        &spread_cmdline(),
    )
    .run("epyc_genoa_two_sockets");
    assert_no_tcg_warnings(&run);
    run.assert_line("cpu: AMD EPYC-Genoa Processor (family 19h model 11h stepping 0)");
    check_spread(&run);
}

#[test]
fn epyc_milan() {
    let cmdline = format!(
        "{} {}",
        tests::delivery::smp_guest("a", "direct", "2-3"),
        tests::delivery::smp_guest("b", "emulated", "4-5")
    );
    let run = with_testguest(Boot::Multiboot1, 6, &cmdline)
        .cpu(&cpu_option("EPYC-Milan", TCG_LACKS_MILAN))
        .arg("-smp")
        .arg("6,threads=2")
        .timeout(Duration::from_secs(120))
        .run("epyc_milan");
    assert_no_tcg_warnings(&run);
    run.assert_line("cpu: AMD EPYC-Milan Processor (family 19h model 1h stepping 1)");
    run.assert_line("cpu topology: 2 threads per core (CPUID 0Bh; x2APIC id >> 1 = core)");
    // What TCG cannot give a server's paths: no IBPB (so no barrier at guest entry), no NRIP.
    run.assert_line("speculation: IBPB not supported");
    run.assert_line("nrips no");
    for (name, irq) in [("a", "direct"), ("b", "emulated")] {
        if let Err(e) = tests::delivery::check_smp_guest(&run.serial, name, irq, 2) {
            run.fail(&format!("guest {name} ({irq}): {e}"));
        }
    }
}

/// `serial=com2`: the whole log, guest lines and exit tables included, goes to COM2 (where a
/// server's IPMI serial-over-LAN usually is), nothing to COM1; a bad value is refused on COM1.
#[test]
fn console_on_com2() {
    let work = tests::target_dir().join("test-work/console_on_com2");
    std::fs::create_dir_all(&work).expect("work dir");
    let com2 = work.join("com2.log");
    let _ = std::fs::remove_file(&com2);
    let run = with_testguest(
        Boot::Multiboot1,
        2,
        "serial=com2 guest=a,cores=1,mem=16M,kernel=testguest",
    )
    .arg("-serial")
    .arg(&format!("file:{}", com2.display()))
    .run("console_on_com2");
    if !run.serial.is_empty() {
        run.fail("COM1 got output although serial=com2");
    }
    let log = std::fs::read_to_string(&com2).expect("COM2 log");
    for line in [
        "didvisor 0.1.0 booting",
        "boot: command line \"",
        "[a] testguest: done, requesting power-off",
        "guest a: vcpu 0 exits:",
        "didvisor: all guests ended",
    ] {
        assert!(log.contains(line), "COM2 has no `{line}`:\n{log}");
    }

    let bad = with_testguest(
        Boot::Multiboot1,
        2,
        "serial=com5 guest=a,cores=1,mem=16M,kernel=testguest",
    )
    .expect_exit(Expected::Error)
    .run("console_on_com5_is_refused");
    bad.assert_line(
        "error: command line: `serial=com5`: expected com1, com2, com3, com4 or the I/O port",
    );
}
