//! A fake 82576 for the host tests: the register behaviour QEMU's `igb` has that the PF driver
//! depends on (docs/igb.md), not an emulator. Reset clears itself and restores reset values;
//! the link comes up a while after an auto-negotiation restart through MDIC; PFRSTD clears RSTI
//! and sets RSTD; V2PMAILBOX has read-to-clear bits; MBVFICR and VFLRE are write-1-to-clear;
//! P2VMAILBOX.PFU is granted only while the VF does not hold the mailbox. The VF side is driven
//! by methods that do what `igbvf` does.

use std::collections::HashMap;

use crate::regs::{self, mdic, phy, Ctrl, CtrlExt, Eecd, P2v, Registers, Status, V2p};

/// QEMU's auto-negotiation time.
pub const AUTONEG_US: u64 = 500_000;
pub const PF_MAC_LOW: u32 = 0x5600_5452;
pub const PF_MAC_HIGH: u32 = 0x3412;

pub struct Fake {
    pub regs: HashMap<u32, u32>,
    /// The test's clock, for the link timer.
    pub now_us: u64,
    link_at: Option<u64>,
    /// Knobs: a reset that never completes, no link, no EEPROM, MDIC never ready.
    pub stuck_reset: bool,
    pub no_link: bool,
    pub no_eeprom: bool,
    pub mdic_dead: bool,
    /// Every write, in order.
    pub writes: Vec<(u32, u32)>,
    pub resets: u32,
    /// A VF whose function reset lands just as MBVFICR is read (the FLR race).
    pub flr_on_cause_read: Option<u8>,
}

impl Fake {
    pub fn new() -> Fake {
        let mut f = Fake {
            regs: HashMap::new(),
            now_us: 0,
            link_at: None,
            stuck_reset: false,
            no_link: false,
            no_eeprom: false,
            mdic_dead: false,
            writes: Vec::new(),
            resets: 0,
            flr_on_cause_read: None,
        };
        f.reset();
        f
    }

    pub fn get(&self, r: u32) -> u32 {
        self.regs.get(&r).copied().unwrap_or(0)
    }

    fn set(&mut self, r: u32, v: u32) {
        self.regs.insert(r, v);
    }

    /// What QEMU's `igb_reset` leaves.
    fn reset(&mut self) {
        self.regs.clear();
        self.resets += 1;
        let pres = if self.no_eeprom { 0 } else { Eecd::PRES.bits() };
        self.set(regs::EECD, Eecd::FWE_DIS.bits() | pres);
        self.set(regs::STATUS, Status::PHYRA.bits() | 1 << 31);
        self.set(regs::VFRE, 0xFF);
        self.set(regs::VFTE, 0xFF);
        for n in 0..8 {
            self.set(regs::vmolr(n), 0x2600 | 1 << 31);
            self.set(regs::v2pmailbox(n), V2p::RSTI.bits());
        }
        self.set(regs::ral(0), PF_MAC_LOW);
        self.set(regs::rah_reg(0), PF_MAC_HIGH | regs::rah::AV);
        self.link_at = None;
    }

    fn link_up(&self) -> bool {
        self.link_at.is_some_and(|t| self.now_us >= t)
    }

    // ----- the VF side (what igbvf does)

    /// The VF writes a message and raises REQ. Panics if the VF could not take its mailbox.
    pub fn vf_send(&mut self, vf: u8, words: &[u32]) {
        assert_eq!(
            self.get(regs::p2vmailbox(vf)) & P2v::PFU.bits(),
            0,
            "PF holds mailbox"
        );
        for (i, w) in words.iter().enumerate() {
            self.set(regs::vmbmem(vf, i as u8), *w);
        }
        let c = self.get(regs::MBVFICR);
        self.set(regs::MBVFICR, c | regs::mbvficr::vfreq(vf));
    }

    /// The VF reads V2PMAILBOX (clearing PFSTS, PFACK, RSTD).
    pub fn vf_read_status(&mut self, vf: u8) -> V2p {
        let r = regs::v2pmailbox(vf);
        let v = self.get(r);
        let r2c = V2p::PFSTS | V2p::PFACK | V2p::RSTD;
        self.set(r, v & !r2c.bits());
        V2p::from_bits_retain(v)
    }

    /// The VF reads `n` words of its mailbox, as after PFSTS.
    pub fn vf_read(&self, vf: u8, n: u8) -> Vec<u32> {
        (0..n).map(|i| self.get(regs::vmbmem(vf, i))).collect()
    }

    /// The VF takes its mailbox (VFU), as igbvf does while it writes.
    pub fn vf_lock(&mut self, vf: u8, held: bool) {
        let r = regs::p2vmailbox(vf);
        let v = self.get(r) & !P2v::VFU.bits();
        self.set(r, v | if held { P2v::VFU.bits() } else { 0 });
    }

    /// A VF reset (FLR or the VF's CTRL.RST): QEMU's `igb_core_vf_reset`.
    pub fn vf_reset(&mut self, vf: u8) {
        for q in [vf, vf + 8] {
            let r = self.get(regs::rxdctl(q)) & !regs::QUEUE_ENABLE;
            self.set(regs::rxdctl(q), r);
            let t = self.get(regs::txdctl(q)) & !regs::QUEUE_ENABLE;
            self.set(regs::txdctl(q), t);
        }
        for r in [regs::VFRE, regs::VFTE] {
            let v = self.get(r) & !(1 << vf);
            self.set(r, v);
        }
        let l = self.get(regs::VFLRE);
        self.set(regs::VFLRE, l | 1 << vf);
    }
}

impl Registers for Fake {
    fn read32(&mut self, r: u32) -> u32 {
        match r {
            regs::STATUS => {
                let lu = if self.link_up() { Status::LU.bits() } else { 0 };
                self.get(r) | lu
            }
            regs::MDIC if self.mdic_dead => self.get(r) & !mdic::READY,
            regs::MBVFICR => {
                let v = self.get(r);
                if let Some(vf) = self.flr_on_cause_read.take() {
                    self.vf_reset(vf);
                }
                v
            }
            _ => self.get(r),
        }
    }

    fn write32(&mut self, r: u32, v: u32) {
        self.writes.push((r, v));
        match r {
            regs::CTRL if v & Ctrl::RST.bits() != 0 => {
                if self.stuck_reset {
                    self.set(r, v);
                } else {
                    self.reset();
                }
            }
            regs::STATUS => {
                if v & Status::PHYRA.bits() == 0 {
                    let s = self.get(r) & !Status::PHYRA.bits();
                    self.set(r, s);
                }
            }
            regs::MDIC => {
                let phy_addr = (v >> 21) & 0x1F;
                let reg = (v >> 16) & 0x1F;
                let mut out = v | mdic::READY;
                if phy_addr != u32::from(mdic::PHY_ADDRESS) {
                    out |= mdic::ERROR;
                } else if v & mdic::OP_WRITE != 0 && reg == u32::from(phy::BMCR) {
                    let data = v as u16;
                    let an = phy::BMCR_AUTOEN | phy::BMCR_ANRESTART;
                    if data & an == an && !self.no_link {
                        self.link_at = Some(self.now_us + AUTONEG_US);
                    }
                }
                self.set(r, out);
            }
            regs::CTRL_EXT => {
                self.set(r, v);
                if v & CtrlExt::PFRSTD.bits() != 0 {
                    for n in 0..8 {
                        let m = self.get(regs::v2pmailbox(n));
                        self.set(
                            regs::v2pmailbox(n),
                            (m & !V2p::RSTI.bits()) | V2p::RSTD.bits(),
                        );
                    }
                }
            }
            regs::MBVFICR | regs::VFLRE => {
                let old = self.get(r);
                self.set(r, old & !v);
            }
            _ if (regs::P2VMAILBOX_BASE..regs::P2VMAILBOX_BASE + 32).contains(&r) => {
                let vf = ((r - regs::P2VMAILBOX_BASE) / 4) as u8;
                self.p2v_write(vf, P2v::from_bits_retain(v));
            }
            _ => self.set(r, v),
        }
    }
}

impl Fake {
    /// QEMU's `igb_set_pfmailbox`.
    fn p2v_write(&mut self, vf: u8, v: P2v) {
        let (p, q) = (regs::p2vmailbox(vf), regs::v2pmailbox(vf));
        let mut v2p = V2p::from_bits_retain(self.get(q));
        let mut p2v = P2v::from_bits_retain(self.get(p));
        if v.contains(P2v::STS) {
            v2p |= V2p::PFSTS;
        }
        if v.contains(P2v::ACK) {
            v2p |= V2p::PFACK;
        }
        if v.contains(P2v::PFU) {
            if !p2v.contains(P2v::VFU) {
                p2v |= P2v::PFU;
                v2p |= V2p::PFU;
            }
        } else {
            p2v.remove(P2v::PFU);
            v2p.remove(V2p::PFU);
        }
        self.set(p, p2v.bits());
        self.set(q, v2p.bits());
    }
}
