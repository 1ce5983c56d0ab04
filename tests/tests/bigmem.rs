//! Guests larger than 3 GiB: RAM above the MMIO hole at 4 GiB, backed by 1 GiB / 2 MiB nested
//! pages. A 5 GiB Debian guest sees its RAM, a memory test over the part above 4 GiB passes, and
//! its VF's DMA works with page-cache pages that Linux takes from above 4 GiB first; a guest the
//! host cannot hold is refused with the free memory named. QEMU allocates guest memory lazily:
//! the guest touches little of its RAM (the hypervisor zeroes it all at build time).

mod common;

use std::fs;
use std::time::Duration;
use tests::qemu::{Expected, Qemu, Run};

const GIB: u64 = 1 << 30;

/// Nested pages of each size backing a guest, from the hypervisor's build line.
fn nested_pages(run: &Run, name: &str) -> [u64; 3] {
    let prefix = " backed by nested pages: ";
    let line = run
        .lines()
        .filter(|l| l.starts_with(&format!("guest {name}: ram zeroed in ")))
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| run.fail(&format!("no `{prefix}` line")));
    // "5 of 1G, 0 of 2M, 0 of 4K[ (why)]"
    let counts: Vec<u64> = line
        .split(", ")
        .take(3)
        .map(|part| part.split(" of ").next().and_then(|n| n.parse().ok()))
        .collect::<Option<_>>()
        .unwrap_or_else(|| run.fail(&format!("unreadable page counts: {line}")));
    [counts[0], counts[1], counts[2]]
}

fn guest_value<'a>(lines: &[&'a str], key: &str, run: &Run) -> &'a str {
    let prefix = format!("didvisor-guest: {key} ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| run.fail(&format!("the guest printed no `{key}` line")))
}

#[test]
fn linux_guest_with_5_gib_uses_its_ram_above_4_gib() {
    let disks = tests::qemu::fresh_disks("bigmem", 16);
    let guest = "guest=big,cores=1,mem=5G,kernel=linux,initrd=initrd,irq=direct,vf=00:04.1,\
                 cmdline=\"console=ttyS0 quiet didvisor.test=memtest,nvme-write \
                 didvisor.memtest=64 didvisor.pattern=bigmem\"";
    let q = Qemu::new()
        .smp(2)
        // The host's RAM above its own hole (QEMU q35: above 2 GiB of it) holds both parts.
        .memory_mb(8192)
        // SeaBIOS puts 64-bit BARs in the top quarter of the physical address space once RAM
        // reaches above 4 GiB: with 36 bits that is below the hypervisor's 64 GiB identity map.
        .cpu("max,phys-bits=36")
        .cmdline(&format!("debug-exit=0xf4 {guest}"))
        .module(tests::linux_kernel(), "linux")
        .module(tests::linux_initrd(), "initrd")
        .arg("-device")
        .arg("amd-iommu,intremap=on,xtsup=on,pt=off")
        .nvme_sriov("didvisor", &[&disks[0], &disks[1]])
        .timeout(Duration::from_secs(240));
    let run = q.run("bigmem");
    run.assert_line("guest big: ram below 4 GiB 3072 MiB, above 4 GiB 2048 MiB at host ");
    // -cpu max has Page1GB and both parts are 1 GiB-aligned: five 1 GiB pages.
    let [g1, m2, k4] = nested_pages(&run, "big");
    assert_eq!(
        g1 * GIB + m2 * (2 << 20) + k4 * 4096,
        5 * GIB,
        "pages cover the RAM"
    );
    assert_eq!(
        [g1, m2, k4],
        [5, 0, 0],
        "1 GiB pages where alignment allows"
    );

    let lines = common::console_lines(&run, "big");
    let memtotal: u64 = guest_value(&lines, "memtotal-kib", &run)
        .trim()
        .parse()
        .unwrap_or_else(|_| run.fail("unreadable memtotal"));
    // MemTotal is RAM minus what the kernel keeps for itself (its image, struct pages).
    let memtotal = memtotal * 1024;
    assert!(
        memtotal > 5 * GIB - 256 * (1 << 20) && memtotal <= 5 * GIB,
        "MemTotal {memtotal:#x} is not about 5 GiB"
    );
    // didvisor-guest: memtest pages N high H bad B max-pa 0xADDR
    let memtest: Vec<&str> = guest_value(&lines, "memtest", &run)
        .split_whitespace()
        .collect();
    let field = |key: &str| -> u64 {
        let at = memtest.iter().position(|w| *w == key);
        at.and_then(|i| memtest.get(i + 1))
            .and_then(|v| match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            })
            .unwrap_or_else(|| run.fail(&format!("memtest line lacks `{key}`: {memtest:?}")))
    };
    assert_eq!(field("pages"), 64 * 256, "{memtest:?}");
    assert!(
        field("high") >= field("pages") / 2,
        "most user pages come from above 4 GiB: {memtest:?}"
    );
    assert_eq!(
        field("bad"),
        0,
        "pattern read back from above 4 GiB: {memtest:?}"
    );
    let max_pa = field("max-pa");
    assert!(
        (4 * GIB..6 * GIB).contains(&max_pa),
        "highest page inside high RAM: {max_pa:#x}"
    );
    // The VF's DMA through the IOMMU domain that maps all of it.
    assert!(
        lines.contains(&"didvisor-guest: nvme write ok"),
        "{lines:#?}"
    );
    let data = fs::read(&disks[0]).expect("reading the disk image back");
    let mut want: Vec<u8> = (0..2048)
        .flat_map(|i| format!("bigmem-{i}\n").into_bytes())
        .collect();
    want.resize(65536, 0);
    if data[1 << 20..(1 << 20) + 65536] != want[..] {
        run.fail("the disk image lacks the block the guest wrote");
    }
    run.assert_line("guest big: ended: ");
}

#[test]
fn guest_larger_than_the_host_is_refused_with_the_free_memory_named() {
    let run = common::with_testguest(
        tests::qemu::Boot::Multiboot1,
        2,
        "guest=huge,cores=1,mem=6G,kernel=testguest",
    )
    .expect_exit(Expected::Error)
    .run("bigmem_refused");
    run.assert_line(
        "guest huge: not enough free memory for the 3072 MiB below 4 GiB of its 6144 MiB of RAM (",
    );
    run.assert_line(" MiB free, the largest free range ");
    run.assert_line("didvisor: halting");
}

#[test]
fn without_page1gb_guest_ram_gets_2_mib_nested_pages() {
    // The bare-metal test guest (it powers off at once); 1 GiB of RAM, 1 GiB-aligned on the host.
    let run = common::with_testguest(
        tests::qemu::Boot::Multiboot1,
        2,
        "guest=a,cores=1,mem=1G,kernel=testguest",
    )
    .cpu("max,-pdpe1gb")
    .memory_mb(3072)
    .run("bigmem_no_page1gb");
    run.assert_line("of 4K (no 1G: the CPU lacks Page1GB)");
    assert_eq!(nested_pages(&run, "a"), [0, 512, 0]);
    run.assert_line("guest a: ended: power-off request");
}
