//! Network VFs: didvisor is the PF driver of QEMU's 82576 (`igb`), a Debian guest drives its VF
//! with the stock `igbvf`, reaches QEMU's user network (ping of the gateway) and fetches a file
//! from a server this test runs on the host's loopback, with the VF's interrupts delivered
//! without exits.

mod common;

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tests::qemu::{Expected, Qemu, Run, IGB_PF};

/// The bytes the server hands out: not compressible, not the same on every offset.
fn payload() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An HTTP/1.0 server on the host's loopback answering every request with `data`; returns its
/// port and the count of requests it answered. QEMU's user network forwards the guest's
/// connections to the gateway 10.0.2.2 to the host's 127.0.0.1.
fn serve(data: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                data.len()
            );
            if s.write_all(head.as_bytes()).is_ok() && s.write_all(&data).is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, served)
}

/// A Debian guest on core `core` with the NIC VF `vf` (`mac`, if given) running the guest's
/// `net` step against the server at `port`.
fn net_guest(name: &str, core: u32, vf: &str, mac: Option<&str>, irq: &str, port: u16) -> String {
    let mac = mac.map(|m| format!(",mac={m}")).unwrap_or_default();
    format!(
        "guest={name},cores={core},mem=256M,kernel=linux,initrd=initrd,irq={irq},vf={vf}{mac},cmdline=\"console=ttyS0 quiet didvisor.test=net didvisor.port={port}\""
    )
}

fn boot(guests: &[String], smp: u32) -> Qemu {
    Qemu::new()
        .smp(smp)
        .memory_mb(1024)
        .cmdline(&format!("debug-exit=0xf4 {}", guests.join(" ")))
        .module(tests::linux_kernel(), "linux")
        .module(tests::linux_initrd(), "initrd")
        .arg("-device")
        .arg("amd-iommu,intremap=on,xtsup=on,pt=off")
        .igb_sriov("")
        .timeout(Duration::from_secs(240))
}

/// The guest's `didvisor-guest: net ...` line starting with `what`, without that prefix.
fn net_line<'a>(run: &'a Run, guest: &str, what: &str) -> &'a str {
    let prefix = format!("didvisor-guest: net {what}");
    common::console_lines(run, guest)
        .into_iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| run.fail(&format!("guest {guest}: no `net {what}` line")))
        .trim()
}

#[test]
fn guest_with_a_nic_vf_reaches_the_outside_with_no_exits_for_its_interrupts() {
    let data = payload();
    let want = format!("{:x}", Sha256::digest(&data));
    let (port, served) = serve(data.clone());
    let mac = "52:54:00:12:34:56";
    let guest = net_guest("lin", 1, "00:15.0", Some(mac), "direct", port);
    let run = boot(&[guest], 2).run("net_one_guest");
    run.assert_line(&format!(
        "igb: {IGB_PF}: vf 1 at 00:15.0 mac {mac} (pool 0)"
    ));
    run.assert_line(&format!("igb: {IGB_PF}: link up, pools and loopback set"));
    run.assert_line("guest lin: vf 00:15.0 as 00:01.0, dma domain 2");
    // The reset handshake the stock igbvf starts: answered with the configured address.
    run.assert_line(&format!("igb: {IGB_PF}: vf 1 message 0x1: Reset"));
    assert_eq!(
        net_line(&run, "lin", "eth0 mac "),
        format!("{mac} carrier 1")
    );
    net_line(&run, "lin", "ping ok");
    assert_eq!(
        net_line(&run, "lin", "wget sha256 "),
        format!("{want} bytes {}", data.len())
    );
    assert!(
        served.load(Ordering::SeqCst) >= 1,
        "the server saw no request"
    );
    let interrupts: u64 = net_line(&run, "lin", "interrupts ")
        .parse()
        .unwrap_or_else(|_| run.fail("the interrupt count is not a number"));
    assert!(
        interrupts > 0,
        "the VF's interrupts did not reach the guest"
    );
    // Direct mode: the VF's MSI-X goes to the guest's core with its vector, no exit.
    assert_eq!(
        tests::report::vf_interrupts_via_exits(&run.serial, "lin"),
        Some(0)
    );
    run.assert_line("guest lin: ended: power-off request");
}

/// Two guests, each with a VF of the one 82576: guest `a` (direct mode) and `b` (emulated
/// mode, the baseline) each reach the gateway and each other through the PF's loopback between
/// pools and copy a file over TCP; `a`'s attempt to take `b`'s address is refused by the PF (anti-spoofing), and `b`
/// keeps working; `b`'s VF interrupts arrive through exits, `a`'s without.
#[test]
fn two_guests_reach_each_other_through_the_pf_and_a_mac_change_is_refused() {
    let mac_a = "52:54:00:00:00:0a";
    let mac_b = "52:54:00:00:00:0b";
    let guest = |name: &str, core: u32, vf: &str, mac: &str, irq: &str, extra: &str| {
        format!(
            "guest={name},cores={core},mem=256M,kernel=linux,initrd=initrd,irq={irq},vf={vf},mac={mac},cmdline=\"console=ttyS0 quiet didvisor.test=net {extra}\""
        )
    };
    let guests = [
        guest(
            "a",
            1,
            "00:15.0",
            mac_a,
            "direct",
            &format!(
                "didvisor.ip=10.0.2.15/24 didvisor.peer=10.0.2.16 didvisor.spoof={mac_b} \
                 didvisor.tcp-send=10.0.2.16:5001"
            ),
        ),
        guest(
            "b",
            2,
            "00:15.2",
            mac_b,
            "emulated",
            "didvisor.ip=10.0.2.16/24 didvisor.peer=10.0.2.15 didvisor.tcp-listen=5001",
        ),
    ];
    let run = boot(&guests, 3).run("net_two_guests");
    run.assert_line(&format!(
        "igb: {IGB_PF}: vf 2 at 00:15.2 mac {mac_b} (pool 1)"
    ));
    run.assert_line("guest a: vf 00:15.0 as 00:01.0, dma domain 2");
    run.assert_line("guest b: vf 00:15.2 as 00:01.0, dma domain 3");
    for (name, mac) in [("a", mac_a), ("b", mac_b)] {
        assert_eq!(
            net_line(&run, name, "eth0 mac "),
            format!("{mac} carrier 1")
        );
        net_line(&run, name, "ping ok");
        net_line(&run, name, "peer ok");
    }
    // A TCP copy from a to b through the PF's loopback: what b received is what a sent.
    let sent: String = (1..=50000).map(|i| format!("{i}\n")).collect();
    let want = format!("{:x} bytes {}", Sha256::digest(sent.as_bytes()), sent.len());
    assert_eq!(net_line(&run, "a", "tcp sent sha256 "), want);
    assert_eq!(net_line(&run, "b", "tcp received sha256 "), want);
    // The PF refused the new address, and igbvf kept the configured one.
    run.assert_line(&format!(
        "igb: {IGB_PF}: vf 1 message 0x2: Refuse(MacChangeNotAllowed {{ asked: {mac_b} }})"
    ));
    net_line(&run, "a", "spoof refused");
    assert_eq!(net_line(&run, "a", "mac-after-spoof "), mac_a);
    let count = |name: &str| -> u64 {
        net_line(&run, name, "interrupts ")
            .parse()
            .unwrap_or_else(|_| run.fail("the interrupt count is not a number"))
    };
    let (a, b) = (count("a"), count("b"));
    assert!(a > 0 && b > 0, "VF interrupts: a {a}, b {b}");
    assert_eq!(
        tests::report::vf_interrupts_via_exits(&run.serial, "a"),
        Some(0)
    );
    let b_exits = tests::report::vf_interrupts_via_exits(&run.serial, "b").unwrap_or(0);
    assert!(
        b_exits >= b,
        "emulated mode: guest b counted {b} VF interrupts, {b_exits} went through exits"
    );
    run.assert_line("guest a: ended: power-off request");
    run.assert_line("guest b: ended: power-off request");
}

/// A NIC VF the machine does not have, and one without an IOMMU: that guest does not start, with
/// a line saying why, and the other guest runs (bare-metal test guests: a few seconds each).
#[test]
fn a_missing_nic_vf_or_no_iommu_stops_only_that_guest() {
    let guests = |vf: &str| {
        format!(
            "debug-exit=0xf4 guest=nic,cores=1,mem=16M,kernel=testguest,vf={vf},mac=52:54:00:00:00:01 \
             guest=plain,cores=2,mem=16M,kernel=testguest"
        )
    };
    for (test, vf, iommu, why) in [
        (
            "net_no_such_vf",
            "00:17.0",
            true,
            "not a virtual function of any SR-IOV device here",
        ),
        (
            "net_no_iommu",
            "00:15.0",
            false,
            "no AMD-Vi IOMMU, so no DMA isolation: refusing to pass the device through",
        ),
    ] {
        let mut q = Qemu::new()
            .smp(3)
            .memory_mb(512)
            .cmdline(&guests(vf))
            .module(tests::testguest(), "testguest")
            .igb_sriov("")
            .timeout(Duration::from_secs(60));
        if iommu {
            q = q
                .arg("-device")
                .arg("amd-iommu,intremap=on,xtsup=on,pt=off");
        }
        let run = q.expect_exit(Expected::Clean).run(test);
        run.assert_line(&format!(
            "error: guest nic: vf={vf}: {why}; the guest does not start"
        ));
        // No VF was wanted from the 82576, so its PF was left alone.
        run.assert_no_line("igb: ");
        run.assert_line("guest plain: ended");
        run.assert_line("didvisor: all guests ended");
    }
}

/// The 64 KiB the guest's `nvme-write` step wrote at byte offset 1 MiB of `disk`.
fn nvme_block_written(disk: &std::path::Path, pattern: &str) -> bool {
    let mut want: Vec<u8> = (0..2048)
        .flat_map(|i| format!("{pattern}-{i}\n").into_bytes())
        .collect();
    want.resize(65536, 0);
    let data = std::fs::read(disk).expect("reading the disk image back");
    data.get(1 << 20..(1 << 20) + 65536) == Some(want.as_slice())
}

/// `guest NAME: vf BDF: N device interrupts went through exits`: N for that VF.
fn vf_exits(run: &Run, guest: &str, vf: &str) -> u64 {
    let prefix = format!("guest {guest}: vf {vf}: ");
    run.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|l| l.strip_suffix(" device interrupts went through exits"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| run.fail(&format!("guest {guest}: no exit count for vf {vf}")))
}

/// Several VFs per guest: guests `a` (direct mode) and `b` (emulated) each get an NVMe VF and a
/// NIC VF of one machine (`vf=NVME+NIC`). Each guest's stock nvme and igbvf drivers bind; the
/// NVMe write lands in its namespace and the NIC reaches the gateway and the host. In direct
/// mode neither VF's interrupts exit; in emulated mode each VF's interrupts went through exits
/// on host vectors of their own (a collision would hand one device's interrupts to the other).
#[test]
fn a_guest_with_an_nvme_vf_and_a_nic_vf_drives_both() {
    let data = payload();
    let want = format!("{:x}", Sha256::digest(&data));
    let (port, served) = serve(data.clone());
    let disks = tests::qemu::fresh_disks("net_multivf", 64);
    let guest = |name: &str, core: u32, vfs: &str, mac: &str, irq: &str, extra: &str| {
        format!(
            "guest={name},cores={core},mem=256M,kernel=linux,initrd=initrd,irq={irq},vf={vfs},mac={mac},cmdline=\"console=ttyS0 quiet didvisor.test=nvme-write,net didvisor.pattern={name}-multi didvisor.port={port} {extra}\""
        )
    };
    let guests = [
        guest("a", 1, "00:03.1+00:15.0", "52:54:00:00:01:0a", "direct", ""),
        guest(
            "b",
            2,
            "00:03.2+00:15.2",
            "52:54:00:00:01:0b",
            "emulated",
            "didvisor.ip=10.0.2.16/24",
        ),
    ];
    // The NVMe PF lands at 00:03.0 (after the IOMMU), its VFs at 00:03.1 and 00:03.2.
    let run = boot(&guests, 3)
        .nvme_sriov("didvisor", &[&disks[0], &disks[1]])
        .run("net_multivf");
    // Each VF at its own guest slot, in its own DMA domain, with its own device vectors.
    run.assert_line("guest a: vf 00:03.1 as 00:01.0, dma domain 2 ");
    run.assert_line("guest a: vf 00:15.0 as 00:03.0, dma domain 18 ");
    run.assert_line("guest b: vf 00:03.2 as 00:01.0, dma domain 3 ");
    run.assert_line("guest b: vf 00:15.2 as 00:03.0, dma domain 19 ");
    run.assert_line("guest b: vf 00:03.2 as 00:01.0, dma domain 3 onto its 256 MiB of ram, 32 interrupt entries, device vectors 0..3");
    run.assert_line("guest b: vf 00:15.2 as 00:03.0, dma domain 19 onto its 256 MiB of ram, 32 interrupt entries, device vectors 3..6");
    for (name, nvme, nic, disk) in [
        ("a", "00:03.1", "00:15.0", &disks[0]),
        ("b", "00:03.2", "00:15.2", &disks[1]),
    ] {
        let lines = common::console_lines(&run, name);
        assert!(
            lines.contains(&"didvisor-guest: nvme write ok"),
            "guest {name}: {lines:#?}"
        );
        if !nvme_block_written(disk, &format!("{name}-multi")) {
            run.fail(&format!("{} lacks guest {name}'s block", disk.display()));
        }
        let nvme_irqs: u64 = lines
            .iter()
            .find_map(|l| l.strip_prefix("didvisor-guest: nvme interrupts "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| run.fail(&format!("guest {name}: no nvme interrupt count")));
        net_line(&run, name, "ping ok");
        assert_eq!(
            net_line(&run, name, "wget sha256 "),
            format!("{want} bytes {}", data.len())
        );
        let nic_irqs: u64 = net_line(&run, name, "interrupts ")
            .parse()
            .unwrap_or_else(|_| run.fail("the interrupt count is not a number"));
        assert!(
            nvme_irqs > 0 && nic_irqs > 0,
            "guest {name}: nvme {nvme_irqs}, nic {nic_irqs} interrupts"
        );
        let (nvme_exits, nic_exits) = (vf_exits(&run, name, nvme), vf_exits(&run, name, nic));
        if name == "a" {
            assert_eq!((nvme_exits, nic_exits), (0, 0), "direct mode: no exits");
        } else {
            assert!(
                nvme_exits >= nvme_irqs && nic_exits >= nic_irqs,
                "emulated mode: nvme {nvme_irqs} interrupts, {nvme_exits} through exits; \
                 nic {nic_irqs} interrupts, {nic_exits} through exits"
            );
        }
        run.assert_line(&format!("guest {name}: ended: power-off request"));
    }
    assert!(
        served.load(Ordering::SeqCst) >= 2,
        "the server saw fewer than two requests"
    );
}
