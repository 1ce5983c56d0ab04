//! Fuzz targets of the igb PF's mailbox (see `docs/fuzzing.md`): the 16 words of a VF's
//! mailbox are written by a guest's driver, and the PF trusts nothing in them.
//!
//! `fuzz_igb_message`: any 64 bytes (16 words, missing ones zero) decode to a request or an
//! error, never a panic; an accepted request encodes back to itself; the decision and the reply
//! for it are well formed for every VF state. `fuzz_igb_mailbox`: random sequences of messages
//! (igbvf's own and arbitrary ones), VF resets and mailbox locking, from up to 8 VFs with random
//! policies, through [`igb::Mailbox`] on a small model of the device; after each poll the
//! device and the PF's state agree (addresses, enables, MTA, replies) and the poll's register
//! accesses stay bounded.

use std::collections::HashMap;

use hostfuzz::proptest;
use hostfuzz::proptest::prelude::*;
use igb::config::{plan, MacAddr, VfPolicy, VfRequest};
use igb::mailbox::{decide, Decision, Event, Limits, Mailbox, VfState};
use igb::message::{self, decode, encode, id, FilterOp, Request, Words, ACK, CTS, NACK};
use igb::pool::vf_rar_entry;
use igb::regs::{self, mbvficr, mdic, rah, Ctrl, Eecd, P2v, Registers, Status, MAILBOX_WORDS};
use igb::{BringUp, Progress};

fn words_of(bytes: &[u8]) -> Words {
    let mut w = [0u32; MAILBOX_WORDS];
    for (i, c) in bytes.chunks(4).take(MAILBOX_WORDS).enumerate() {
        let mut b = [0u8; 4];
        b[..c.len()].copy_from_slice(c);
        w[i] = u32::from_le_bytes(b);
    }
    w
}

fn bytes_of(w: &Words) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// What igbvf sends, and a few things it does not.
fn seed_requests() -> Vec<Request> {
    let mac = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let mut hashes = [0u16; message::MAX_MC_HASHES];
    for (i, h) in hashes.iter_mut().enumerate() {
        *h = (i as u16 * 137) & 0xFFF;
    }
    vec![
        Request::Reset,
        Request::SetMac(mac),
        Request::MacFilter(FilterOp::Add(mac)),
        Request::MacFilter(FilterOp::Clear),
        Request::SetMulticast { hashes, count: 2 },
        Request::SetMulticast { hashes, count: 30 },
        Request::SetVlan {
            vid: 100,
            add: true,
        },
        Request::SetVlan {
            vid: 100,
            add: false,
        },
        Request::SetLpe { max_frame: 1522 },
        Request::SetLpe { max_frame: 9018 },
        Request::SetPromisc { info: 2 },
    ]
}

fn config(n: u8, policy: VfPolicy) -> igb::PfConfig {
    let req = VfRequest { mac: None, policy };
    plan(&vec![req; usize::from(n)], false, None, 1).unwrap()
}

fn policy(bits: u8, max_frame: u16) -> VfPolicy {
    VfPolicy {
        allow_mac_change: bits & 1 != 0,
        allow_vlan: bits & 2 != 0,
        allow_multicast: bits & 4 != 0,
        max_frame,
    }
}

/// Checks the decision and reply for `w` from VF 0 in state `cts`; returns whether the words
/// decoded.
fn check_message(w: &Words, cts: bool, p: VfPolicy) -> bool {
    let decoded = decode(w);
    if let Ok(r) = decoded {
        assert_eq!(decode(&encode(&r)), Ok(r), "round trip of {w:08x?}");
        assert_eq!(u32::from(r.id()), w[0] & message::ID_MASK);
    }
    let c = config(2, p);
    let vfs = &states()[usize::from(cts)];
    let d = decide(&c, vfs, 0, decoded);
    match d {
        Decision::Reset => assert_eq!(decoded, Ok(Request::Reset)),
        Decision::Ignore => assert!(w[0] & (ACK | NACK) != 0),
        Decision::SetMac(m) => {
            assert!(m.is_unicast() && (p.allow_mac_change || m == c.vf(0).unwrap().mac))
        }
        Decision::SetMaxFrame(f) => assert!((64..=p.max_frame).contains(&f)),
        Decision::SetVlan { .. } => assert!(p.allow_vlan && cts),
        Decision::SetMulticast { hashes, count } => {
            assert!(p.allow_multicast && usize::from(count) <= message::MAX_MC_HASHES);
            assert!(hashes.iter().all(|h| *h <= 0xFFF));
        }
        Decision::Refuse(_) => {}
    }
    if !cts && !matches!(d, Decision::Reset | Decision::Ignore) {
        assert!(matches!(d, Decision::Refuse(_)), "{d:?} before the reset");
    }
    let r = message::reply(w[0], !matches!(d, Decision::Refuse(_)), cts);
    let w0 = r.words()[0];
    assert!(
        (w0 & ACK != 0) != (w0 & NACK != 0),
        "exactly one of ACK, NACK: {w0:#x}"
    );
    assert_eq!(w0 & CTS != 0, cts);
    decoded.is_ok()
}

/// Runs the bring-up on the model.
fn bring_up(dev: &mut Device, c: igb::PfConfig, now: &mut u64) {
    let mut b = BringUp::new(c);
    for _ in 0..100 {
        match b.poll(dev, *now) {
            Progress::Pending => *now += 1_000,
            Progress::Done => return,
            Progress::Failed(e) => panic!("{e:?}"),
        }
    }
    panic!("bring-up did not finish on the model");
}

/// The VF states of a 2-VF configuration before (index 0) and after (1) their RESET; they do
/// not depend on the policy, so they are made once.
fn states() -> &'static [Vec<VfState>; 2] {
    static STATES: std::sync::OnceLock<[Vec<VfState>; 2]> = std::sync::OnceLock::new();
    STATES.get_or_init(|| {
        let c = config(2, VfPolicy::DEFAULT);
        [false, true].map(|cts| (0..8u8).map(|v| test_state(&c, v.min(1), cts)).collect())
    })
}

/// A VF state as the mailbox would hold it (via the public constructor path).
fn test_state(c: &igb::PfConfig, vf: u8, cts: bool) -> VfState {
    let mut mb = Mailbox::new(*c, Limits::DEFAULT);
    if cts && vf < c.num_vfs() {
        let mut dev = Device::default();
        bring_up(&mut dev, *c, &mut 0);
        dev.send(vf, &encode(&Request::Reset));
        mb.poll(&mut dev, 0, |_| {});
    }
    mb.vf(vf).copied().unwrap_or(*mb.vf(0).unwrap())
}

#[test]
fn fuzz_igb_message() {
    let extra: Vec<Vec<u8>> = seed_requests()
        .iter()
        .map(|r| bytes_of(&encode(r)))
        .collect();
    hostfuzz::run(
        "igb-message",
        20_000,
        |b| Some((hostfuzz::Bytes(b), 0u8)),
        move || (hostfuzz::inputs("igb-message", extra, 64), any::<u8>()),
        |(b, bits): (hostfuzz::Bytes, u8)| {
            let w = words_of(&b);
            let p = policy(bits, if bits & 8 != 0 { 1522 } else { 9216 });
            let a = check_message(&w, true, p);
            check_message(&w, false, p);
            a
        },
    );
}

// ---------------------------------------------------------------------------------------------
// A small model of the device's mailbox registers (QEMU `igb_set_pfmailbox`, W1C causes).

#[derive(Default)]
struct Device {
    r: HashMap<u32, u32>,
    accesses: u64,
}

impl Device {
    fn get(&self, r: u32) -> u32 {
        self.r.get(&r).copied().unwrap_or(0)
    }
    fn send(&mut self, vf: u8, w: &Words) {
        if self.get(regs::p2vmailbox(vf)) & P2v::PFU.bits() != 0 {
            return;
        }
        for (i, x) in w.iter().enumerate() {
            self.r.insert(regs::vmbmem(vf, i as u8), *x);
        }
        *self.r.entry(regs::MBVFICR).or_default() |= mbvficr::vfreq(vf);
    }
    fn vf_reset(&mut self, vf: u8) {
        for r in [regs::VFRE, regs::VFTE] {
            *self.r.entry(r).or_default() &= !(1 << vf);
        }
        *self.r.entry(regs::VFLRE).or_default() |= 1 << vf;
    }
}

impl Registers for Device {
    fn read32(&mut self, r: u32) -> u32 {
        self.accesses += 1;
        match r {
            // Enough for the bring-up: an NVM, and the link up at once.
            regs::EECD => Eecd::PRES.bits(),
            regs::STATUS => Status::LU.bits(),
            _ => self.get(r),
        }
    }
    fn write32(&mut self, r: u32, v: u32) {
        self.accesses += 1;
        match r {
            // The reset completes at once; MDIC is always ready.
            regs::CTRL => {
                self.r.insert(r, v & !Ctrl::RST.bits());
            }
            regs::MDIC => {
                self.r.insert(r, v | mdic::READY);
            }
            regs::MBVFICR | regs::VFLRE => *self.r.entry(r).or_default() &= !v,
            _ if (regs::P2VMAILBOX_BASE..regs::P2VMAILBOX_BASE + 32).contains(&r) => {
                let old = self.get(r);
                let mut new = old & P2v::VFU.bits();
                if v & P2v::PFU.bits() != 0 && old & P2v::VFU.bits() == 0 {
                    new |= P2v::PFU.bits();
                }
                self.r.insert(r, new);
            }
            _ => {
                self.r.insert(r, v);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Action {
    Send(u8, Words),
    VfReset(u8),
    Lock(u8, bool),
    Wait(u64),
}

fn action() -> impl Strategy<Value = Action> {
    let seeds: Vec<Words> = seed_requests().iter().map(encode).collect();
    let known = (0..seeds.len()).prop_map(move |i| seeds[i]);
    let raw = proptest::array::uniform16(any::<u32>());
    let small = (0u32..8, 0u32..40, any::<u32>(), any::<u32>()).prop_map(|(i, info, a, b)| {
        let mut w = [0u32; MAILBOX_WORDS];
        (w[0], w[1], w[2]) = (i | info << 16, a, b & 0xFFFF);
        w
    });
    let words = prop_oneof![4 => known, 2 => small, 1 => raw];
    prop_oneof![
        8 => (0u8..8, words).prop_map(|(v, w)| Action::Send(v, w)),
        1 => (0u8..8).prop_map(Action::VfReset),
        1 => (0u8..8, any::<bool>()).prop_map(|(v, l)| Action::Lock(v, l)),
        1 => (0u64..50_000).prop_map(Action::Wait),
    ]
}

/// Checks the device against the mailbox's state after a poll.
fn check_device(dev: &Device, mb: &Mailbox, c: &igb::PfConfig, events: &[Event]) {
    let mut macs = Vec::new();
    let mut want_mta = [0u32; regs::MTA_ENTRIES as usize];
    for vf in 0..c.num_vfs() {
        let s = mb.vf(vf).unwrap();
        let e = vf_rar_entry(vf);
        let rah_v = dev.get(regs::rah_reg(e));
        assert_eq!(
            rah_v & (rah::AV | rah::POOLSEL_MASK),
            rah::AV | rah::pool(vf)
        );
        let mac = MacAddr::from_words(dev.get(regs::ral(e)), rah_v);
        assert_eq!(mac, s.mac, "VF {vf}");
        assert!(mac.is_unicast());
        if !c.vf(vf).unwrap().policy.allow_mac_change {
            assert_eq!(mac, c.vf(vf).unwrap().mac, "VF {vf} changed its address");
        }
        assert!(!macs.contains(&mac), "{mac:?} twice");
        macs.push(mac);
        assert_eq!(dev.get(regs::VFRE) >> vf & 1 != 0, s.cts, "VFRE of VF {vf}");
        for h in &s.mc_hashes[..usize::from(s.mc_count)] {
            want_mta[usize::from(h >> 5)] |= 1 << (h & 31);
        }
    }
    for (n, want) in want_mta.iter().enumerate() {
        assert_eq!(dev.get(regs::mta(n as u8)), *want, "MTA[{n}]");
    }
    for e in events {
        let Event::Handled {
            vf,
            word0,
            decision,
            replied: true,
        } = *e
        else {
            continue;
        };
        let got = dev.get(regs::vmbmem(vf, 0));
        match decision {
            Decision::Reset => assert_eq!(got, 0x8000_0000 | u32::from(id::RESET)),
            Decision::Ignore => panic!("an ignored message got a reply"),
            Decision::Refuse(_) => assert_eq!(got & (ACK | NACK), NACK),
            _ => assert_eq!(got & (ACK | NACK), ACK),
        }
        if decision != Decision::Reset {
            assert_eq!(got & !(ACK | NACK | CTS), word0 & !(ACK | NACK | CTS));
        }
    }
}

#[test]
fn fuzz_igb_mailbox() {
    hostfuzz::run(
        "igb-mailbox",
        3_000,
        |_| None,
        || {
            (
                1u8..=8,
                any::<u8>(),
                proptest::collection::vec(action(), 1..60),
            )
        },
        |(n, bits, actions): (u8, u8, Vec<Action>)| {
            let c = config(n, policy(bits, 9216));
            let limits = Limits::DEFAULT;
            let mut mb = Mailbox::new(c, limits);
            let mut dev = Device::default();
            let mut now = 0;
            bring_up(&mut dev, c, &mut now);
            let mut handled_any = false;
            for a in actions {
                match a {
                    Action::Send(vf, w) => dev.send(vf, &w),
                    Action::VfReset(vf) => dev.vf_reset(vf),
                    Action::Lock(vf, held) => {
                        let r = regs::p2vmailbox(vf);
                        let v = dev.get(r) & !P2v::VFU.bits();
                        dev.r.insert(r, v | if held { P2v::VFU.bits() } else { 0 });
                    }
                    Action::Wait(us) => now += us,
                }
                let mut events = Vec::new();
                dev.accesses = 0;
                mb.poll(&mut dev, now, |e| events.push(e));
                let mut served: Vec<u8> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Handled { vf, .. } | Event::Busy { vf } => Some(*vf),
                        _ => None,
                    })
                    .collect();
                let handled = served.len();
                served.sort();
                served.dedup();
                assert_eq!(
                    served.len(),
                    handled,
                    "a VF served twice in one poll: {events:?}"
                );
                assert!(handled <= usize::from(limits.messages_per_poll));
                // Per message: 16 mailbox words, an MTA rewrite, a VLVF scan and the rest.
                assert!(
                    dev.accesses <= 8 + 500 * (handled as u64 + 1),
                    "{} accesses",
                    dev.accesses
                );
                handled_any |= handled > 0;
                check_device(&dev, &mb, &c, &events);
                now += 1_000;
            }
            handled_any
        },
    );
}

/// Writes the seeds into the corpus: `cargo test -p igb --test fuzz -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing a builder"]
fn write_seed_corpus() {
    let names = [
        "reset",
        "set-mac",
        "mac-filter-add",
        "mac-filter-clear",
        "multicast-2",
        "multicast-30",
        "vlan-add",
        "vlan-remove",
        "lpe-1522",
        "lpe-9018",
        "promisc",
    ];
    for (name, r) in names.iter().zip(seed_requests()) {
        hostfuzz::write_seed(
            "igb-message",
            &format!("{name}.bin"),
            &bytes_of(&encode(&r)),
        );
    }
}
