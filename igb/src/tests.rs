//! Bring-up and mailbox against the fake device.

use crate::bring_up::{BringUpError, LINK_TIMEOUT_US, RESET_TIMEOUT_US};
use crate::config::{plan, MacAddr, Owner, PfConfig, VfPolicy, VfRequest};
use crate::fake::{Fake, AUTONEG_US};
use crate::mailbox::{Decision, Event, Limits, Mailbox, Refusal};
use crate::message::{self, encode, id, Request, ACK, CTS, NACK};
use crate::pool::vf_rar_entry;
use crate::regs::{self, rah, Dtxswc, Gpie, Rctl, Tctl, V2p, Vmolr};
use crate::{BringUp, Progress};

fn config(n: usize, pf_traffic: bool) -> PfConfig {
    let req = VfRequest {
        mac: None,
        policy: VfPolicy::DEFAULT,
    };
    plan(&vec![req; n], pf_traffic, None, 99).unwrap()
}

/// Polls until done or failed, advancing the clock 1 ms per poll.
fn run(b: &mut BringUp, f: &mut Fake) -> (Progress, u32) {
    for polls in 1..100_000 {
        let now = f.now_us;
        let p = b.poll(f, now);
        if p != Progress::Pending {
            return (p, polls);
        }
        f.now_us += 1_000;
    }
    panic!("bring-up never finished");
}

fn up(n: usize, pf_traffic: bool) -> (Fake, PfConfig) {
    let c = config(n, pf_traffic);
    let mut f = Fake::new();
    let (p, _) = run(&mut BringUp::new(c), &mut f);
    assert_eq!(p, Progress::Done);
    (f, c)
}

#[test]
fn bring_up_programs_what_qemu_checks() {
    let (f, c) = up(2, false);
    assert_eq!(f.resets, 2, "the fake's own reset and the driver's");
    assert_eq!(f.get(regs::MRQC) & 1, 1);
    assert_ne!(
        f.get(regs::VT_CTL) & (1 << 29),
        0,
        "no PF pool: unmatched frames dropped"
    );
    for vf in 0..2u8 {
        let e = vf_rar_entry(vf);
        let mac = MacAddr::from_words(f.get(regs::ral(e)), f.get(regs::rah_reg(e)));
        assert_eq!(mac, c.vfs[usize::from(vf)].mac);
        assert_eq!(
            f.get(regs::rah_reg(e)) & (rah::AV | rah::POOLSEL_MASK),
            rah::AV | rah::pool(vf)
        );
        assert_ne!(f.get(regs::vmolr(vf)) & Vmolr::BAM.bits(), 0);
    }
    assert_eq!(vf_rar_entry(0), 23);
    assert_eq!(
        f.get(regs::VFRE),
        0,
        "VFs enabled only by their reset handshake"
    );
    assert_ne!(f.get(regs::DTXSWC) & Dtxswc::LOOPBACK.bits(), 0);
    assert_ne!(f.get(regs::GPIE) & Gpie::MSIX_MODE.bits(), 0);
    assert_ne!(f.get(regs::RCTL) & Rctl::EN.bits(), 0);
    assert_ne!(f.get(regs::TCTL) & Tctl::EN.bits(), 0);
    // PFRSTD came last and released the VFs.
    assert_eq!(f.writes.last().map(|w| w.0), Some(regs::CTRL_EXT));
    assert_eq!(V2p::from_bits_retain(f.get(regs::v2pmailbox(0))), V2p::RSTD);
}

#[test]
fn bring_up_with_pf_traffic_gives_the_pf_the_last_pool() {
    let (f, _) = up(7, true);
    assert_eq!(f.get(regs::VT_CTL), 7 << 7);
    assert_eq!(f.get(regs::VFRE), 1 << 7);
    assert_eq!(f.get(regs::rah_reg(0)) & rah::POOLSEL_MASK, rah::pool(7));
    assert_eq!(
        f.get(regs::ral(0)),
        crate::fake::PF_MAC_LOW,
        "PF address kept"
    );
}

#[test]
fn link_takes_autonegotiation_time_without_blocking() {
    let mut f = Fake::new();
    let (p, polls) = run(&mut BringUp::new(config(1, false)), &mut f);
    assert_eq!(p, Progress::Done);
    let autoneg_polls = (AUTONEG_US / 1_000) as u32;
    assert!(
        polls > autoneg_polls && polls < autoneg_polls + 20,
        "{polls} polls"
    );
}

#[test]
fn bring_up_failures_are_clear_errors() {
    type Case = (fn(&mut Fake), fn(BringUpError) -> bool);
    let cases: [Case; 4] = [
        (
            |f| f.stuck_reset = true,
            |e| matches!(e, BringUpError::ResetStuck { .. }),
        ),
        (
            |f| f.no_eeprom = true,
            |e| matches!(e, BringUpError::NoEeprom { .. }),
        ),
        (
            |f| f.mdic_dead = true,
            |e| matches!(e, BringUpError::MdicTimeout { .. }),
        ),
        (
            |f| f.no_link = true,
            |e| matches!(e, BringUpError::LinkTimeout { .. }),
        ),
    ];
    for (knob, expect) in cases {
        let mut f = Fake::new();
        knob(&mut f);
        let mut b = BringUp::new(config(1, false));
        let (p, _) = run(&mut b, &mut f);
        let Progress::Failed(e) = p else {
            panic!("{p:?}")
        };
        assert!(expect(e), "{e:?}");
        assert!(f.now_us <= LINK_TIMEOUT_US + AUTONEG_US);
        let now = f.now_us;
        assert_eq!(
            b.poll(&mut f, now),
            Progress::Failed(BringUpError::AlreadyFailed)
        );
    }
    // The reset timeout is short: a stuck reset fails within it.
    let mut f = Fake::new();
    f.stuck_reset = true;
    run(&mut BringUp::new(config(1, false)), &mut f);
    assert!(f.now_us <= RESET_TIMEOUT_US);
}

// ----- mailbox

struct Rig {
    f: Fake,
    mb: Mailbox,
    c: PfConfig,
    events: Vec<Event>,
    /// Clock advance per poll: 10 ms keeps a VF within its 100 messages per second.
    step_us: u64,
}

impl Rig {
    fn new(n: usize, policy: VfPolicy) -> Rig {
        let req = VfRequest { mac: None, policy };
        let c = plan(&vec![req; n], false, None, 5).unwrap();
        let mut f = Fake::new();
        assert_eq!(run(&mut BringUp::new(c), &mut f).0, Progress::Done);
        Rig {
            f,
            mb: Mailbox::new(c, Limits::DEFAULT),
            c,
            events: Vec::new(),
            step_us: 10_000,
        }
    }

    fn poll(&mut self) {
        let events = &mut self.events;
        let now = self.f.now_us;
        self.mb.poll(&mut self.f, now, |e| events.push(e));
        self.f.now_us += self.step_us;
    }

    /// Sends `r` from `vf`, polls, and returns the reply words (`len`) after checking the
    /// PFACK/PFSTS handshake.
    fn ask(&mut self, vf: u8, r: Request, len: u8) -> Vec<u32> {
        self.f.vf_send(vf, &encode(&r));
        self.poll();
        let st = self.f.vf_read_status(vf);
        assert!(st.contains(V2p::PFACK | V2p::PFSTS), "{st:?}");
        assert!(!st.contains(V2p::PFU), "lock released");
        assert_eq!(self.f.get(regs::MBVFICR), 0, "cause cleared");
        self.f.vf_read(vf, len)
    }

    fn reset(&mut self, vf: u8) -> MacAddr {
        let w = self.ask(vf, Request::Reset, 3);
        assert_eq!(w[0], 0x8000_0001);
        MacAddr::from_words(w[1], w[2])
    }

    fn last(&self) -> Decision {
        match self.events.last() {
            Some(Event::Handled { decision, .. }) => *decision,
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn reset_handshake_gives_the_mac_and_enables_the_vf() {
    let mut r = Rig::new(2, VfPolicy::DEFAULT);
    assert_eq!(r.reset(1), r.c.vfs[1].mac);
    assert_eq!(r.f.get(regs::VFRE), 0b10);
    assert_eq!(r.f.get(regs::VFTE), 0b10);
    assert!(r.mb.vf(1).unwrap().cts && !r.mb.vf(0).unwrap().cts);
    // igbvf then sends its own address: accepted, with CTS.
    let mac = r.c.vfs[1].mac;
    assert_eq!(
        r.ask(1, Request::SetMac(mac), 1),
        [ACK | CTS | u32::from(id::SET_MAC_ADDR)]
    );
}

#[test]
fn requests_before_reset_are_refused_without_cts() {
    let mut r = Rig::new(1, VfPolicy::DEFAULT);
    let w = r.ask(0, Request::SetLpe { max_frame: 1518 }, 1);
    assert_eq!(w, [NACK | u32::from(id::SET_LPE)]);
    assert_eq!(r.last(), Decision::Refuse(Refusal::NotClearToSend));
}

#[test]
fn mac_change_is_refused_by_default_and_checked_when_allowed() {
    let other = MacAddr([0x02, 0, 0, 0, 0, 9]);
    let mut r = Rig::new(2, VfPolicy::DEFAULT);
    r.reset(0);
    let w = r.ask(0, Request::SetMac(other), 1);
    assert_eq!(w[0], NACK | CTS | u32::from(id::SET_MAC_ADDR));
    assert_eq!(
        r.last(),
        Decision::Refuse(Refusal::MacChangeNotAllowed { asked: other })
    );
    let e = vf_rar_entry(0);
    assert_eq!(
        r.f.get(regs::ral(e)),
        r.c.vfs[0].mac.low(),
        "filter unchanged"
    );

    let allow = VfPolicy {
        allow_mac_change: true,
        ..VfPolicy::DEFAULT
    };
    let mut r = Rig::new(2, allow);
    r.reset(0);
    let vf1 = r.c.vfs[1].mac;
    r.ask(0, Request::SetMac(vf1), 1);
    assert_eq!(
        r.last(),
        Decision::Refuse(Refusal::MacInUse {
            asked: vf1,
            by: Owner::Vf(1)
        })
    );
    let bcast = MacAddr([0xFF; 6]);
    r.ask(0, Request::SetMac(bcast), 1);
    assert_eq!(
        r.last(),
        Decision::Refuse(Refusal::MacNotUnicast { asked: bcast })
    );
    assert_eq!(r.ask(0, Request::SetMac(other), 1)[0] & ACK, ACK);
    assert_eq!(r.f.get(regs::ral(e)), other.low());
    // A reset returns to the configured address.
    assert_eq!(r.reset(0), r.c.vfs[0].mac);
}

#[test]
fn multicast_hashes_go_into_the_mta_and_leave_with_a_reset() {
    let mut r = Rig::new(2, VfPolicy::DEFAULT);
    r.reset(0);
    let mut hashes = [0; message::MAX_MC_HASHES];
    hashes[..2].copy_from_slice(&[0x021, 0xFFF]);
    r.ask(0, Request::SetMulticast { hashes, count: 2 }, 1);
    assert_eq!(r.f.get(regs::mta(1)), 1 << 1);
    assert_eq!(r.f.get(regs::mta(127)), 1 << 31);
    assert_ne!(r.f.get(regs::vmolr(0)) & Vmolr::ROMPE.bits(), 0);
    r.f.vf_reset(0);
    r.poll();
    assert_eq!(r.events.last(), Some(&Event::VfReset { vf: 0 }));
    assert_eq!(r.f.get(regs::VFLRE), 0, "VFLRE cleared");
    assert_eq!(r.f.get(regs::mta(1)), 0);
    assert_eq!(r.f.get(regs::vmolr(0)) & Vmolr::ROMPE.bits(), 0);
    assert!(!r.mb.vf(0).unwrap().cts);
}

#[test]
fn vlans_are_refused_unless_allowed() {
    let mut r = Rig::new(1, VfPolicy::DEFAULT);
    r.reset(0);
    r.ask(0, Request::SetVlan { vid: 10, add: true }, 1);
    assert_eq!(
        r.last(),
        Decision::Refuse(Refusal::VlanNotAllowed { vid: 10 })
    );
    let allow = VfPolicy {
        allow_vlan: true,
        ..VfPolicy::DEFAULT
    };
    let mut r = Rig::new(2, allow);
    r.reset(0);
    r.reset(1);
    r.ask(0, Request::SetVlan { vid: 10, add: true }, 1);
    r.ask(1, Request::SetVlan { vid: 10, add: true }, 1);
    assert_eq!(r.f.get(regs::vlvf_reg(0)), 1 << 31 | 3 << 12 | 10);
    assert_eq!(r.f.get(regs::vfta(0)), 1 << 10);
    r.ask(
        0,
        Request::SetVlan {
            vid: 10,
            add: false,
        },
        1,
    );
    r.f.vf_reset(1);
    r.poll();
    assert_eq!((r.f.get(regs::vlvf_reg(0)), r.f.get(regs::vfta(0))), (0, 0));
    for vid in 0..32 {
        r.ask(0, Request::SetVlan { vid, add: true }, 1);
    }
    r.ask(
        0,
        Request::SetVlan {
            vid: 100,
            add: true,
        },
        1,
    );
    assert_eq!(
        r.last(),
        Decision::Refuse(Refusal::VlanTableFull { vid: 100 })
    );
}

#[test]
fn frame_size_is_bounded() {
    let mut r = Rig::new(1, VfPolicy::DEFAULT);
    r.reset(0);
    r.ask(0, Request::SetLpe { max_frame: 9018 }, 1);
    assert_eq!(r.f.get(regs::vmolr(0)) & 0x3FFF, 9018);
    assert_ne!(r.f.get(regs::vmolr(0)) & Vmolr::LPE.bits(), 0);
    r.ask(0, Request::SetLpe { max_frame: 70_000 }, 1);
    assert!(matches!(
        r.last(),
        Decision::Refuse(Refusal::FrameSize { asked: 70_000, .. })
    ));
    assert_eq!(r.f.get(regs::vmolr(0)) & 0x3FFF, 9018);
}

#[test]
fn everything_else_is_nacked() {
    let mut r = Rig::new(1, VfPolicy::DEFAULT);
    r.reset(0);
    for (req, refusal) in [
        (
            Request::SetPromisc { info: 2 },
            Refusal::PromiscuousNotAllowed,
        ),
        (
            Request::Unknown { id: 0x42 },
            Refusal::UnknownMessage { id: 0x42 },
        ),
        (
            Request::MacFilter(message::FilterOp::Clear),
            Refusal::MacFilterUnsupported,
        ),
    ] {
        let w = r.ask(0, req, 1);
        assert_eq!(w[0] & (ACK | NACK | CTS), NACK | CTS);
        assert_eq!(r.last(), Decision::Refuse(refusal));
    }
}

#[test]
fn a_vf_holding_its_mailbox_is_retried_later() {
    let mut r = Rig::new(1, VfPolicy::DEFAULT);
    r.f.vf_send(0, &encode(&Request::Reset));
    r.f.vf_lock(0, true);
    r.poll();
    assert_eq!(r.events.last(), Some(&Event::Busy { vf: 0 }));
    assert_ne!(r.f.get(regs::MBVFICR), 0, "request still pending");
    r.f.vf_lock(0, false);
    r.poll();
    assert_eq!(r.last(), Decision::Reset);
}

#[test]
fn a_flooding_vf_is_throttled_and_others_still_served() {
    let mut r = Rig::new(2, VfPolicy::DEFAULT);
    r.step_us = 1_000;
    let (mut served0, mut throttled) = (0, 0);
    for _ in 0..200 {
        // VF 0 sends a message every poll (1 ms).
        r.f.vf_send(0, &encode(&Request::Unknown { id: 0x99 }));
        r.events.clear();
        r.poll();
        for e in &r.events {
            match e {
                Event::Handled { vf: 0, .. } => served0 += 1,
                Event::Throttled { vf: 0 } => throttled += 1,
                e => panic!("{e:?}"),
            }
        }
    }
    // 200 ms: the burst of 32 plus one every 10 ms; each refill ends one throttled episode.
    assert!((32..=32 + 21).contains(&served0), "{served0}");
    assert!((1..=21).contains(&throttled), "{throttled}");
    r.f.vf_send(1, &encode(&Request::Reset));
    r.poll();
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, Event::Handled { vf: 1, .. })));
}

#[test]
fn stray_causes_are_cleared_and_reported() {
    let mut r = Rig::new(1, VfPolicy::DEFAULT);
    r.f.vf_send(5, &encode(&Request::Reset));
    r.f.vf_reset(6);
    r.poll();
    assert_eq!(
        r.events,
        [Event::Stray {
            vflre: 1 << 6,
            vfreq: 1 << 5
        }]
    );
    assert_eq!((r.f.get(regs::MBVFICR), r.f.get(regs::VFLRE)), (0, 0));
}

#[test]
fn a_function_reset_racing_the_reset_message_does_not_disable_the_vf() {
    let mut r = Rig::new(1, VfPolicy::DEFAULT);
    r.f.vf_send(0, &encode(&Request::Reset));
    r.f.flr_on_cause_read = Some(0);
    r.poll();
    assert_eq!(r.last(), Decision::Reset);
    assert_eq!(r.f.get(regs::VFLRE), 0, "the FLR was part of this reset");
    r.poll();
    assert!(r.mb.vf(0).unwrap().cts);
    assert_eq!(r.f.get(regs::VFRE), 1);
}

#[test]
fn one_poll_serves_every_vf_that_asked() {
    let mut r = Rig::new(4, VfPolicy::DEFAULT);
    r.reset(3);
    for vf in 0..4 {
        r.f.vf_send(vf, &encode(&Request::Reset));
    }
    r.events.clear();
    r.poll();
    let mut served: Vec<u8> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Handled { vf, .. } => Some(*vf),
            _ => None,
        })
        .collect();
    served.sort();
    assert_eq!(served, [0, 1, 2, 3]);
}
