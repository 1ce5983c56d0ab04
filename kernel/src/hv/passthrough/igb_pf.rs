//! The hypervisor as the PF driver of an Intel 82576 (QEMU `-device igb`), so guests drive its
//! VFs with Linux's stock `igbvf`: SR-IOV on with the VF BARs below 4 GiB (at boot, before the
//! service loop: it sleeps), then from the service loop the bring-up steps (reset, link, VMDq
//! pools, each VF's address in its pool, loopback between pools, receive and transmit units,
//! PFRSTD) and afterwards the PF side of the VF mailbox, polled with the crate's bounded round
//! robin. The decisions are the `igb` crate's; this file does the register accesses and logs.
//!
//! The PF has no traffic of its own (`pf_traffic = false`): it never DMAs, so under the IOMMU
//! it keeps the blocked device table entry every device starts with (docs/igb.md).

use crate::hv::host::pci_host::Ecam;
use crate::hv::host::{memory, phys, timer};
use crate::println;
use igb::bring_up::Progress;
use igb::{BringUp, Decision, Event, Limits, MacAddr, Mailbox, VfPolicy, VfRequest};
use pci::sriov::{EnabledVfs, MmioWindow};
use pci::{header, Bdf, Command, ConfigAccess};

/// The part of BAR0 the driver touches: every register up to the last queue's TXDCTL
/// (BAR0 is 128 KiB).
const REGISTER_BYTES: u64 = 0x1_0000;
const _: () = assert!(igb::regs::txdctl(igb::regs::QUEUES - 1) < REGISTER_BYTES as u32);
/// How often the service loop looks at the PF: `igbvf` waits about 1 s for an answer, and
/// each look is a few MMIO reads (cheap on hardware, an exit to the emulator under QEMU).
const POLL_PERIOD_US: u64 = 500;

/// BAR0 of the PF, identity-mapped.
struct PfRegisters(phys::Mmio);

impl igb::Registers for PfRegisters {
    fn read32(&mut self, offset: u32) -> u32 {
        self.0.read(u64::from(offset))
    }

    fn write32(&mut self, offset: u32, value: u32) {
        self.0.write(u64::from(offset), value)
    }
}

/// Whether `pf` is an 82576 PF (vendor 0x8086, device 0x10C9).
pub fn is_igb(ecam: &Ecam, pf: Bdf) -> bool {
    ecam.read32(pf, 0)
        == u32::from(igb::sriov::PF_DEVICE_ID) << 16 | u32::from(igb::sriov::VENDOR_INTEL)
}

/// Where the PF is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    BringingUp,
    /// Bring-up done: the mailbox is served.
    Serving,
    Failed,
}

/// One 82576 PF that the service loop drives.
pub struct IgbPf {
    bdf: Bdf,
    regs: PfRegisters,
    phase: Phase,
    bring_up: BringUp,
    /// Polled only once `bring_up` is done (its MTA shadow starts from the cleared table).
    mailbox: Mailbox,
    next_poll_us: u64,
}

/// Micro-seconds since boot.
fn now_us() -> u64 {
    timer::nanos() / 1000
}

/// Enables `num_vfs` VFs of the 82576 PF `pf` with their BARs in `window`; VF n (1-based) gets
/// `macs[n - 1]`, or an address derived from the PF's routing id. The device's bring-up runs
/// later, from [`IgbPf::poll`].
pub fn enable(
    ecam: &mut Ecam,
    pf: Bdf,
    num_vfs: u16,
    macs: &[Option<MacAddr>],
    window: MmioWindow,
) -> Result<(EnabledVfs, IgbPf), &'static str> {
    let mut requests = [VfRequest {
        mac: None,
        policy: VfPolicy::DEFAULT,
    }; igb::regs::MAX_POOLS as usize];
    let count = usize::from(num_vfs).min(requests.len());
    for (r, mac) in requests.iter_mut().zip(macs) {
        r.mac = *mac;
    }
    let config =
        igb::plan(&requests[..count], false, None, u64::from(pf.routing_id())).map_err(|e| {
            println!("igb: {pf}: {e:?}");
            "the NIC VFs' configuration is refused (the log line before says why)"
        })?;
    let bar0 = ecam.read32(pf, 0x10);
    // Memory BAR, 64-bit type: the high half is the next BAR register.
    let high = if bar0 & 0x7 == 0x4 {
        u64::from(ecam.read32(pf, 0x14)) << 32
    } else {
        0
    };
    let bar0 = u64::from(bar0 & !0xf) | high;
    if bar0 == 0 {
        return Err("the PF's BAR0 is not assigned");
    }
    if bar0.saturating_add(REGISTER_BYTES) > memory::MAPPED_LIMIT {
        return Err("the PF's BAR0 is above the hypervisor's 64 GiB identity map");
    }
    // Bus mastering gates the device's receive path, for the VFs' pools too.
    let command = header::read_command(ecam, pf);
    header::write_command(
        ecam,
        pf,
        command | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
    let vfs = igb::sriov::enable(ecam, pf, num_vfs, window, |ms| {
        timer::delay_us(u64::from(ms) * 1000)
    })
    .map_err(|e| {
        println!("igb: {pf}: enabling SR-IOV: {e:?}");
        "enabling the NIC's VFs failed"
    })?;
    for n in 0..config.num_vfs() {
        if let (Some(vf), Some(c)) = (vfs.vf(u16::from(n) + 1), config.vf(n)) {
            println!(
                "igb: {pf}: vf {} at {} mac {} (pool {n})",
                vf.number, vf.bdf, c.mac
            );
        }
    }
    // SAFETY: BAR0 of the PF, assigned by the firmware and enabled above; the hypervisor is
    // the PF's only driver.
    let regs = PfRegisters(unsafe { phys::Mmio::new(bar0, REGISTER_BYTES) });
    let pf_state = IgbPf {
        bdf: pf,
        regs,
        phase: Phase::BringingUp,
        bring_up: BringUp::new(config),
        mailbox: Mailbox::new(config, Limits::DEFAULT),
        next_poll_us: 0,
    };
    Ok((vfs, pf_state))
}

impl IgbPf {
    /// One bounded look at the PF from the service loop: a bring-up step, or one mailbox round.
    pub fn poll(&mut self) {
        let now = now_us();
        if now < self.next_poll_us {
            return;
        }
        self.next_poll_us = now + POLL_PERIOD_US;
        let pf = self.bdf;
        match self.phase {
            Phase::BringingUp => match self.bring_up.poll(&mut self.regs, now) {
                Progress::Pending => {}
                Progress::Done => {
                    println!("igb: {pf}: link up, pools and loopback set, VFs may reset");
                    self.phase = Phase::Serving;
                }
                Progress::Failed(e) => {
                    println!("igb: {pf}: bring-up failed: {e:?}; its VFs get no PF answers");
                    self.phase = Phase::Failed;
                }
            },
            Phase::Serving => self.mailbox.poll(&mut self.regs, now, |e| log_event(pf, e)),
            Phase::Failed => {}
        }
    }
}

fn log_event(pf: Bdf, e: Event) {
    match e {
        Event::VfReset { vf } => println!("igb: {pf}: vf {} reset", vf + 1),
        Event::Handled {
            vf,
            word0,
            decision,
            replied,
        } => {
            let reply = if replied { "" } else { " (no reply)" };
            match decision {
                // The hashes are noise in a log.
                Decision::SetMulticast { count, .. } => println!(
                    "igb: {pf}: vf {} message {word0:#x}: SetMulticast({count} hashes){reply}",
                    vf + 1
                ),
                d => println!("igb: {pf}: vf {} message {word0:#x}: {d:?}{reply}", vf + 1),
            }
        }
        // The VF holds its mailbox; the request waits for the next poll.
        Event::Busy { .. } => {}
        Event::Throttled { vf } => {
            println!(
                "igb: {pf}: vf {} exceeds its mailbox rate; requests wait",
                vf + 1
            )
        }
        Event::Stray { vflre, vfreq } => {
            println!("igb: {pf}: cause bits of absent VFs cleared (reset {vflre:#x}, request {vfreq:#x})")
        }
    }
}
