//! The PF side of the VF mailboxes, polled by the service core after the bring-up: VF reset
//! events (VFLRE), requests (MBVFICR.VFREQ) and acknowledgements (MBVFICR.VFACK).
//!
//! Per request: take the mailbox (P2VMAILBOX.PFU, read back: the device grants it only while
//! the VF does not hold it), clear the VFREQ bit (write 1), read the 16 words, acknowledge
//! (P2VMAILBOX.ACK, which also drops the lock), decide ([`decide`]), program the device, and
//! answer (take the lock again, write the reply, P2VMAILBOX.STS). The decisions are
//! [`crate::decision`]'s.
//!
//! A guest flooding its mailbox cannot stall the caller: one poll handles at most
//! [`Limits::messages_per_poll`] requests, at most one per VF, starting after the VF served
//! last; each VF has a token bucket ([`Limits::per_second`], [`Limits::burst`]) and a request
//! beyond it stays pending in the device (the VF waits) until tokens come back.

pub use crate::decision::{decide, Decision, Refusal};

use crate::config::{MacAddr, PfConfig, STANDARD_FRAME};
use crate::message::{self, decode, Reply, Words, MAX_MC_HASHES};
use crate::pool;
use crate::regs::{self, mbvficr, P2v, Registers, MAILBOX_WORDS, MAX_POOLS};

/// Bounds on one poll and on each VF's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub messages_per_poll: u8,
    pub per_second: u32,
    pub burst: u32,
}

impl Limits {
    /// igbvf sends about ten messages when its interface comes up, a few per address change.
    pub const DEFAULT: Limits = Limits {
        messages_per_poll: 8,
        per_second: 100,
        burst: 32,
    };
}

/// What the PF keeps about one VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfState {
    pub mac: MacAddr,
    /// The reset handshake is done: replies carry CTS.
    pub cts: bool,
    pub mc_hashes: [u16; MAX_MC_HASHES],
    pub mc_count: u8,
    pub max_frame: u16,
    tokens: u32,
    refilled_us: u64,
    throttled: bool,
}

impl VfState {
    fn new(mac: MacAddr, burst: u32) -> VfState {
        VfState {
            mac,
            cts: false,
            mc_hashes: [0; MAX_MC_HASHES],
            mc_count: 0,
            max_frame: STANDARD_FRAME,
            tokens: burst,
            refilled_us: 0,
            throttled: false,
        }
    }
}

/// What the caller may log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// VFLRE: the VF was reset (FLR or its CTRL.RST); its state is back to the configuration.
    VfReset { vf: u8 },
    /// A request, what was decided, and whether a reply was written (never for
    /// [`Decision::Ignore`]; not when the VF took its mailbox back in between).
    Handled {
        vf: u8,
        word0: u32,
        decision: Decision,
        replied: bool,
    },
    /// The VF holds its mailbox; its request waits for a later poll.
    Busy { vf: u8 },
    /// The VF exceeded its rate; its requests wait (reported once per episode).
    Throttled { vf: u8 },
    /// Cause bits of VFs that do not exist (cleared).
    Stray { vflre: u32, vfreq: u32 },
}

/// The PF's mailbox service for one configuration.
#[derive(Clone, Debug)]
pub struct Mailbox {
    config: PfConfig,
    limits: Limits,
    vfs: [VfState; MAX_POOLS as usize],
    /// What the MTA holds: the union of the VFs' hashes.
    mta: [u32; regs::MTA_ENTRIES as usize],
    /// The VF after the one served last (round robin).
    next: u8,
}

impl Mailbox {
    /// The service after [`crate::BringUp`] is done (it clears the MTA this shadow starts from).
    pub fn new(config: PfConfig, limits: Limits) -> Mailbox {
        let vfs = core::array::from_fn(|i| VfState::new(config.vfs[i].mac, limits.burst));
        Mailbox {
            config,
            limits,
            vfs,
            mta: [0; regs::MTA_ENTRIES as usize],
            next: 0,
        }
    }

    pub fn vf(&self, vf: u8) -> Option<&VfState> {
        (vf < self.config.num_vfs).then(|| &self.vfs[usize::from(vf)])
    }

    /// One round: reset events, acknowledgements, then up to `messages_per_poll` requests.
    pub fn poll(&mut self, regs: &mut impl Registers, now_us: u64, mut on: impl FnMut(Event)) {
        let exists = (1u32 << self.config.num_vfs) - 1;
        let vflre = regs.read32(regs::VFLRE) & 0xFF;
        if vflre != 0 {
            regs.write32(regs::VFLRE, vflre);
        }
        for vf in 0..self.config.num_vfs {
            if vflre & 1 << vf != 0 {
                self.reset_vf(regs, vf);
                on(Event::VfReset { vf });
            }
        }
        let cause = regs.read32(regs::MBVFICR);
        let acks = cause & mbvficr::VFACK_MASK;
        if acks != 0 {
            regs.write32(regs::MBVFICR, acks);
        }
        let reqs = cause & mbvficr::VFREQ_MASK;
        if reqs & !exists != 0 {
            regs.write32(regs::MBVFICR, reqs & !exists);
        }
        if (vflre | reqs) & !exists != 0 {
            on(Event::Stray {
                vflre: vflre & !exists,
                vfreq: reqs & !exists,
            });
        }
        let n = self.config.num_vfs.max(1);
        let start = self.next;
        let mut handled = 0;
        for i in 0..n {
            let vf = (start + i) % n;
            if reqs & exists & 1 << vf == 0 {
                continue;
            }
            if handled == self.limits.messages_per_poll {
                break;
            }
            if !self.take_token(vf, now_us) {
                if !core::mem::replace(&mut self.vfs[usize::from(vf)].throttled, true) {
                    on(Event::Throttled { vf });
                }
                continue;
            }
            self.vfs[usize::from(vf)].throttled = false;
            handled += 1;
            self.next = (vf + 1) % n;
            match self.serve(regs, vf) {
                Some(e) => on(e),
                None => on(Event::Busy { vf }),
            }
        }
    }

    fn take_token(&mut self, vf: u8, now: u64) -> bool {
        let l = self.limits;
        let s = &mut self.vfs[usize::from(vf)];
        let period = (1_000_000 / u64::from(l.per_second.max(1))).max(1);
        let new = now.saturating_sub(s.refilled_us) / period;
        if new > 0 {
            s.tokens = (u64::from(s.tokens) + new).min(u64::from(l.burst)) as u32;
            s.refilled_us = now;
        }
        if s.tokens == 0 {
            return false;
        }
        s.tokens -= 1;
        true
    }

    /// One request of `vf`; `None` when the VF holds its mailbox.
    fn serve(&mut self, regs: &mut impl Registers, vf: u8) -> Option<Event> {
        if !lock(regs, vf) {
            return None;
        }
        regs.write32(regs::MBVFICR, mbvficr::vfreq(vf));
        let mut w: Words = [0; MAILBOX_WORDS];
        for (i, word) in w.iter_mut().enumerate() {
            *word = regs.read32(regs::vmbmem(vf, i as u8));
        }
        regs.write32(regs::p2vmailbox(vf), P2v::ACK.bits());
        let decided = decide(&self.config, &self.vfs, vf, decode(&w));
        let (decision, reply) = self.apply(regs, vf, w[0], decided);
        let replied = reply.is_some_and(|r| send(regs, vf, &r));
        Some(Event::Handled {
            vf,
            word0: w[0],
            decision,
            replied,
        })
    }

    /// Programs the device for `d`; gives the final decision (the device may refuse a VLAN)
    /// and the reply.
    fn apply(
        &mut self,
        regs: &mut impl Registers,
        vf: u8,
        word0: u32,
        d: Decision,
    ) -> (Decision, Option<Reply>) {
        match self.program(regs, vf, word0, d) {
            Ok(reply) => (d, reply),
            Err(pool::VlanError::TableFull { vid }) => {
                let cts = self.vfs[usize::from(vf)].cts;
                let refused = Decision::Refuse(Refusal::VlanTableFull { vid });
                (refused, Some(message::reply(word0, false, cts)))
            }
        }
    }

    fn program(
        &mut self,
        regs: &mut impl Registers,
        vf: u8,
        word0: u32,
        d: Decision,
    ) -> Result<Option<Reply>, pool::VlanError> {
        let cts = self.vfs[usize::from(vf)].cts;
        let ack = |cts| Ok(Some(message::reply(word0, true, cts)));
        match d {
            Decision::Reset => {
                // igbvf resets its function (VFLRE) before it sends RESET; an FLR that arrived
                // after this poll read VFLRE belongs to this reset and must not undo it later.
                let flr = regs.read32(regs::VFLRE) & 1 << vf;
                if flr != 0 {
                    regs.write32(regs::VFLRE, flr);
                }
                // Address entry, VMOLR and filters as configured, then receive/transmit on.
                self.reset_vf(regs, vf);
                pool::enable_pool(regs, vf, true);
                let s = &mut self.vfs[usize::from(vf)];
                s.cts = true;
                Ok(Some(message::reset_reply(s.mac)))
            }
            Decision::SetMac(mac) => {
                pool::set_rar(regs, pool::vf_rar_entry(vf), mac, vf);
                self.vfs[usize::from(vf)].mac = mac;
                ack(cts)
            }
            Decision::SetMulticast { hashes, count } => {
                let s = &mut self.vfs[usize::from(vf)];
                s.mc_hashes = hashes;
                s.mc_count = count;
                self.write_mta(regs);
                pool::set_multicast(regs, vf, count > 0);
                ack(cts)
            }
            Decision::SetVlan { vid, add } => {
                pool::set_vlan(regs, vf, vid, add)?;
                ack(cts)
            }
            Decision::SetMaxFrame(f) => {
                pool::set_max_frame(regs, vf, f);
                self.vfs[usize::from(vf)].max_frame = f;
                ack(cts)
            }
            Decision::Refuse(_) => Ok(Some(message::reply(word0, false, cts))),
            Decision::Ignore => Ok(None),
        }
    }

    /// A VF reset (VFLRE or its RESET message): back to the configured address, no multicast,
    /// no VLANs, standard frames, receive/transmit off, not clear to send.
    fn reset_vf(&mut self, regs: &mut impl Registers, vf: u8) {
        let mac = self.config.vfs[usize::from(vf)].mac;
        self.vfs[usize::from(vf)] = VfState {
            tokens: self.vfs[usize::from(vf)].tokens,
            refilled_us: self.vfs[usize::from(vf)].refilled_us,
            ..VfState::new(mac, 0)
        };
        pool::enable_pool(regs, vf, false);
        pool::reset_vmolr(regs, vf);
        pool::clear_vlans(regs, vf);
        pool::set_rar(regs, pool::vf_rar_entry(vf), mac, vf);
        self.write_mta(regs);
    }

    /// Writes the MTA words that differ from the union of the VFs' hashes (Linux `igb_mta_set`:
    /// word = hash bits 11:5, bit = hash bits 4:0).
    fn write_mta(&mut self, regs: &mut impl Registers) {
        let mut want = [0u32; regs::MTA_ENTRIES as usize];
        for s in &self.vfs[..usize::from(self.config.num_vfs)] {
            for h in &s.mc_hashes[..usize::from(s.mc_count)] {
                want[usize::from(h >> 5 & 0x7F)] |= 1 << (h & 0x1F);
            }
        }
        for (n, (have, want)) in self.mta.iter_mut().zip(want).enumerate() {
            if *have != want {
                regs.write32(regs::mta(n as u8), want);
                *have = want;
            }
        }
    }
}

/// Takes VF `vf`'s mailbox for the PF.
fn lock(regs: &mut impl Registers, vf: u8) -> bool {
    regs.write32(regs::p2vmailbox(vf), P2v::PFU.bits());
    regs.read32(regs::p2vmailbox(vf)) & P2v::PFU.bits() != 0
}

/// Writes `r` into VF `vf`'s mailbox and signals it; `false` when the VF holds the mailbox.
fn send(regs: &mut impl Registers, vf: u8, r: &Reply) -> bool {
    if !lock(regs, vf) {
        return false;
    }
    for (i, w) in r.words().iter().enumerate() {
        regs.write32(regs::vmbmem(vf, i as u8), *w);
    }
    regs.write32(regs::p2vmailbox(vf), P2v::STS.bits());
    true
}
