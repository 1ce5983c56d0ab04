//! PF bring-up as a step machine the service core polls: each [`BringUp::poll`] does one
//! bounded step (a few hundred register accesses at most) and returns; waits are deadlines
//! against the caller's clock, never sleeping loops. Order (docs/igb.md has the facts):
//!
//! 1. CTRL.RST; wait until it reads clear (at least [`RESET_SETTLE_US`]). EECD.AUTO_RD is not
//!    waited for: QEMU never sets it. EECD.PRES must be set.
//! 2. Link: PHY BMCR through MDIC with auto-negotiation enabled and restarted; wait for
//!    MDIC.READY, then for STATUS.LU (QEMU: about 500 ms of virtual time).
//! 3. Filters cleared: receive addresses 1-23, MTA, VLVF, VFTA.
//! 4. Switching: VMDq (MRQC), MSI-X mode (GPIE: the VFs' interrupts need it), default pool (VT_CTL), each VF's pool (VMOLR with BAM, its
//!    address in its receive address entry), the PF pool's enables, loopback and MAC
//!    anti-spoofing (DTXSWC), the PF's receiver and transmitter (RCTL, TCTL, RLPML).
//! 5. CTRL_EXT.PFRSTD, last: it lets the VFs start their reset handshake, which the mailbox
//!    ([`crate::mailbox`]) answers from then on. VF receive/transmit enables are set when a VF
//!    completes that handshake, as Linux `igb` does.
//!
//! Enabling SR-IOV in configuration space (NumVFs, VF BARs, VF Enable) is [`crate::sriov`]'s,
//! before or after this; bus mastering of the PF must be on (it gates receive).

use crate::config::{PfConfig, MAX_FRAME};
use crate::pool;
use crate::regs::{
    self, mdic, mrqc, phy, tctl, vt_ctl, Ctrl, CtrlExt, Dtxswc, Eecd, Gpie, Rctl, Registers,
    Status, Tctl, VtCtl,
};

/// Least time after CTRL.RST before the device is read again: Linux `igb` sleeps after the
/// reset write before touching the device; QEMU needs no delay.
pub const RESET_SETTLE_US: u64 = 1_000;
/// CTRL.RST must read clear within this (QEMU clears it at once).
pub const RESET_TIMEOUT_US: u64 = 10_000;
/// One MDIC transaction.
pub const MDIC_TIMEOUT_US: u64 = 10_000;
/// Auto-negotiation: QEMU takes 500 ms; a real PHY a few seconds.
pub const LINK_TIMEOUT_US: u64 = 5_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BringUpError {
    /// CTRL.RST still set after [`RESET_TIMEOUT_US`].
    ResetStuck { ctrl: u32 },
    /// EECD.PRES clear: no NVM, so no MAC address or PHY defaults.
    NoEeprom { eecd: u32 },
    /// MDIC.READY not set after [`MDIC_TIMEOUT_US`].
    MdicTimeout { mdic: u32 },
    /// The PHY refused the BMCR write (wrong PHY address, or no PHY).
    MdicError { mdic: u32 },
    /// STATUS.LU not set after [`LINK_TIMEOUT_US`] (cable, or `-netdev` link down).
    LinkTimeout { status: u32 },
    /// [`BringUp::poll`] after a failure.
    AlreadyFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Reset,
    WaitReset { since: u64 },
    Link,
    WaitMdic { since: u64 },
    WaitLink { since: u64 },
    ClearFilters,
    Switch,
    ResetDone,
    Done,
    Failed,
}

/// The outcome of one poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Poll again later.
    Pending,
    Done,
    Failed(BringUpError),
}

/// The bring-up of one PF for one [`PfConfig`].
#[derive(Clone, Debug)]
pub struct BringUp {
    config: PfConfig,
    step: Step,
}

impl BringUp {
    pub fn new(config: PfConfig) -> BringUp {
        BringUp {
            config,
            step: Step::Reset,
        }
    }

    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// One step; `now_us` is a monotonic clock in microseconds.
    pub fn poll(&mut self, regs: &mut impl Registers, now_us: u64) -> Progress {
        match self.step(regs, now_us) {
            Ok(()) if self.step == Step::Done => Progress::Done,
            Ok(()) => Progress::Pending,
            Err(e) => {
                self.step = Step::Failed;
                Progress::Failed(e)
            }
        }
    }

    fn step(&mut self, regs: &mut impl Registers, now: u64) -> Result<(), BringUpError> {
        let elapsed = |since: u64| now.saturating_sub(since);
        match self.step {
            Step::Reset => {
                let ctrl = regs.read32(regs::CTRL);
                regs.write32(regs::CTRL, ctrl | Ctrl::RST.bits());
                self.step = Step::WaitReset { since: now };
            }
            Step::WaitReset { since } => {
                if elapsed(since) < RESET_SETTLE_US {
                    return Ok(());
                }
                let ctrl = regs.read32(regs::CTRL);
                if ctrl & Ctrl::RST.bits() != 0 {
                    if elapsed(since) >= RESET_TIMEOUT_US {
                        return Err(BringUpError::ResetStuck { ctrl });
                    }
                    return Ok(());
                }
                let eecd = regs.read32(regs::EECD);
                if eecd & Eecd::PRES.bits() == 0 {
                    return Err(BringUpError::NoEeprom { eecd });
                }
                self.step = Step::Link;
            }
            Step::Link => {
                // PHYRA is cleared by writing 0; the other STATUS bits are read only.
                regs.write32(regs::STATUS, 0);
                let ctrl = regs.read32(regs::CTRL);
                regs.write32(regs::CTRL, ctrl | Ctrl::SLU.bits());
                let bmcr = phy::BMCR_AUTOEN | phy::BMCR_ANRESTART;
                regs.write32(regs::MDIC, mdic::write(mdic::PHY_ADDRESS, phy::BMCR, bmcr));
                self.step = Step::WaitMdic { since: now };
            }
            Step::WaitMdic { since } => {
                let m = regs.read32(regs::MDIC);
                if m & mdic::READY == 0 {
                    if elapsed(since) >= MDIC_TIMEOUT_US {
                        return Err(BringUpError::MdicTimeout { mdic: m });
                    }
                    return Ok(());
                }
                if m & mdic::ERROR != 0 {
                    return Err(BringUpError::MdicError { mdic: m });
                }
                self.step = Step::WaitLink { since: now };
            }
            Step::WaitLink { since } => {
                let status = regs.read32(regs::STATUS);
                if status & Status::LU.bits() == 0 {
                    if elapsed(since) >= LINK_TIMEOUT_US {
                        return Err(BringUpError::LinkTimeout { status });
                    }
                    return Ok(());
                }
                self.step = Step::ClearFilters;
            }
            Step::ClearFilters => {
                clear_filters(regs);
                self.step = Step::Switch;
            }
            Step::Switch => {
                switch(regs, &self.config);
                self.step = Step::ResetDone;
            }
            Step::ResetDone => {
                let ext = regs.read32(regs::CTRL_EXT);
                regs.write32(regs::CTRL_EXT, ext | CtrlExt::PFRSTD.bits());
                self.step = Step::Done;
            }
            Step::Done => {}
            Step::Failed => return Err(BringUpError::AlreadyFailed),
        }
        Ok(())
    }
}

/// Receive addresses 1-23 (entry 0 is the PF's, from the NVM), MTA, VLVF, VFTA: 334 writes.
fn clear_filters(regs: &mut impl Registers) {
    for entry in 1..regs::RAR_ENTRIES {
        pool::clear_rar(regs, entry);
    }
    for n in 0..regs::MTA_ENTRIES as u8 {
        regs.write32(regs::mta(n), 0);
        regs.write32(regs::vfta(n), 0);
    }
    for n in 0..regs::VLVF_ENTRIES as u8 {
        regs.write32(regs::vlvf_reg(n), 0);
    }
}

/// Step 4 of the module documentation.
fn switch(regs: &mut impl Registers, c: &PfConfig) {
    regs.write32(regs::MRQC, mrqc::ENABLE_VMDQ);
    // The VFs' interrupts are MSI-X vectors of the VFs, raised through the PF's EICR.
    let gpie = Gpie::MSIX_MODE | Gpie::EIAME | Gpie::PBA | Gpie::NSICR;
    regs.write32(regs::GPIE, gpie.bits());
    let vt = match c.pf_pool() {
        Some(p) => vt_ctl::default_pool(p),
        None => VtCtl::DIS_DEF_POOL.bits(),
    };
    regs.write32(regs::VT_CTL, vt);
    for vf in 0..c.num_vfs {
        pool::set_rar(regs, pool::vf_rar_entry(vf), c.vfs[usize::from(vf)].mac, vf);
        pool::reset_vmolr(regs, vf);
    }
    // Only the PF's pool receives and transmits until a VF completes its reset handshake.
    let pf_bit = c.pf_pool().map_or(0, |p| 1 << p);
    regs.write32(regs::VFRE, pf_bit);
    regs.write32(regs::VFTE, pf_bit);
    if let Some(p) = c.pf_pool() {
        let rah = regs.read32(regs::rah_reg(0)) & !regs::rah::POOLSEL_MASK;
        regs.write32(regs::rah_reg(0), rah | regs::rah::pool(p));
        pool::reset_vmolr(regs, p);
    }
    let spoof = (1u32 << c.num_vfs) - 1;
    regs.write32(
        regs::DTXSWC,
        Dtxswc::LOOPBACK.bits() | (spoof & Dtxswc::MAC_SPOOF.bits()),
    );
    regs.write32(regs::RLPML, u32::from(MAX_FRAME));
    let rctl = Rctl::EN | Rctl::BAM | Rctl::LPE | Rctl::SECRC;
    regs.write32(regs::RCTL, rctl.bits());
    let t = Tctl::EN | Tctl::PSP | Tctl::RTLC;
    regs.write32(regs::TCTL, t.bits() | tctl::CT_DEFAULT | tctl::COLD_DEFAULT);
}
