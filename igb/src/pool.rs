//! Programming one VMDq pool: its receive address entry, its offload register, its receive and
//! transmit enables, and the VLAN filters it is in. Shared by the bring-up and the mailbox.

use crate::config::{MacAddr, STANDARD_FRAME};
use crate::regs::{self, rah, vlvf, Registers, Vmolr, RAR_ENTRIES, VMOLR_RLPML_MASK};

/// The receive address entry of VF `vf`'s address: the last entries, counting down, as Linux
/// `igb` places them (entry 0 is the PF's own address).
pub const fn vf_rar_entry(vf: u8) -> u8 {
    RAR_ENTRIES - 1 - (vf & 7)
}

/// Writes receive address entry `entry` with `mac`, valid, delivering to `pool` only.
pub fn set_rar(regs: &mut impl Registers, entry: u8, mac: MacAddr, pool: u8) {
    // RAH first without AV so no half-written address ever matches.
    regs.write32(regs::rah_reg(entry), 0);
    regs.write32(regs::ral(entry), mac.low());
    regs.write32(regs::rah_reg(entry), mac.high() | rah::AV | rah::pool(pool));
}

/// Clears receive address entry `entry`.
pub fn clear_rar(regs: &mut impl Registers, entry: u8) {
    regs.write32(regs::rah_reg(entry), 0);
    regs.write32(regs::ral(entry), 0);
}

/// VMOLR of a freshly reset pool: broadcasts accepted (ARP needs them), untagged frames
/// accepted, CRC stripped, standard frames, no multicast hashes yet.
pub const fn vmolr_reset_value() -> u32 {
    Vmolr::BAM.bits() | Vmolr::AUPE.bits() | Vmolr::STRCRC.bits() | STANDARD_FRAME as u32
}

pub fn reset_vmolr(regs: &mut impl Registers, pool: u8) {
    regs.write32(regs::vmolr(pool), vmolr_reset_value());
}

/// Sets the pool's long-packet limit: VMOLR.RLPML = `max_frame`, LPE set.
pub fn set_max_frame(regs: &mut impl Registers, pool: u8, max_frame: u16) {
    let v = regs.read32(regs::vmolr(pool)) & !VMOLR_RLPML_MASK;
    let v = v | Vmolr::LPE.bits() | (u32::from(max_frame) & VMOLR_RLPML_MASK);
    regs.write32(regs::vmolr(pool), v);
}

/// Sets or clears VMOLR.ROMPE (MTA hash hits reach the pool).
pub fn set_multicast(regs: &mut impl Registers, pool: u8, on: bool) {
    let mut v = Vmolr::from_bits_retain(regs.read32(regs::vmolr(pool)));
    v.set(Vmolr::ROMPE, on);
    regs.write32(regs::vmolr(pool), v.bits());
}

/// Sets or clears pool bit `pool` in VFRE and VFTE.
pub fn enable_pool(regs: &mut impl Registers, pool: u8, on: bool) {
    for r in [regs::VFRE, regs::VFTE] {
        let v = regs.read32(r);
        let bit = 1 << (pool & 7);
        regs.write32(r, if on { v | bit } else { v & !bit });
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanError {
    /// All 32 VLVF entries hold other VLANs.
    TableFull { vid: u16 },
}

/// Adds `pool` to (or removes it from) VLAN `vid`'s filter entry, taking a free entry for a new
/// VLAN and freeing one no pool uses any more (VFTA follows). At most 33 reads.
pub fn set_vlan(regs: &mut impl Registers, pool: u8, vid: u16, add: bool) -> Result<(), VlanError> {
    let asked = vid;
    let vid = u32::from(vid) & vlvf::VID_MASK;
    let mut free = None;
    let mut found = None;
    for n in 0..regs::VLVF_ENTRIES as u8 {
        let v = regs.read32(regs::vlvf_reg(n));
        if v & vlvf::VI_EN == 0 {
            free = free.or(Some(n));
        } else if v & vlvf::VID_MASK == vid {
            found = Some((n, v));
            break;
        }
    }
    let vfta = regs::vfta((vid >> 5) as u8);
    let bit = 1 << (vid & 31);
    match (found, add) {
        (Some((n, v)), true) => regs.write32(regs::vlvf_reg(n), v | vlvf::pool(pool)),
        (None, true) => {
            let n = free.ok_or(VlanError::TableFull { vid: asked })?;
            regs.write32(regs::vlvf_reg(n), vlvf::VI_EN | vid | vlvf::pool(pool));
            let t = regs.read32(vfta);
            regs.write32(vfta, t | bit);
        }
        (Some((n, v)), false) => leave_vlan(regs, pool, n, v),
        (None, false) => {}
    }
    Ok(())
}

/// Takes `pool` out of VLVF entry `n` (value `v`), freeing the entry and its VFTA bit when no
/// pool is left in it.
fn leave_vlan(regs: &mut impl Registers, pool: u8, n: u8, v: u32) {
    let v = v & !vlvf::pool(pool);
    if v & vlvf::POOLSEL_MASK != 0 {
        regs.write32(regs::vlvf_reg(n), v);
        return;
    }
    regs.write32(regs::vlvf_reg(n), 0);
    let vid = v & vlvf::VID_MASK;
    let vfta = regs::vfta((vid >> 5) as u8);
    let t = regs.read32(vfta);
    regs.write32(vfta, t & !(1 << (vid & 31)));
}

/// Removes `pool` from every VLAN filter (a VF reset). 32 reads and at most 64 writes.
pub fn clear_vlans(regs: &mut impl Registers, pool: u8) {
    for n in 0..regs::VLVF_ENTRIES as u8 {
        let v = regs.read32(regs::vlvf_reg(n));
        if v & vlvf::VI_EN != 0 && v & vlvf::pool(pool) != 0 {
            leave_vlan(regs, pool, n, v);
        }
    }
}
