//! The 82576 registers the PF bring-up and the mailbox use, as offsets in the PF's BAR0. Each is
//! described under its name (CTRL, VMOLR, P2VMAILBOX...) in the register chapter of the Intel
//! 82576EB Gigabit Ethernet Controller Datasheet; the offsets and bits here are the ones Linux
//! `igb` (`e1000_regs.h`, `e1000_defines.h`, `e1000_82575.h`) and QEMU `hw/net/igb_regs.h`
//! agree on. What QEMU does with each register is in docs/igb.md.

/// A 32-bit register offset in BAR0.
pub type Reg = u32;

/// CTRL, Device Control: [`Ctrl`].
pub const CTRL: Reg = 0x0000;
/// STATUS, Device Status: [`Status`].
pub const STATUS: Reg = 0x0008;
/// EECD, EEPROM/Flash Control: [`Eecd`].
pub const EECD: Reg = 0x0010;
/// CTRL_EXT, Extended Device Control: [`CtrlExt`].
pub const CTRL_EXT: Reg = 0x0018;
/// MDIC, MDI Control: [`mdic`].
pub const MDIC: Reg = 0x0020;
/// RCTL, Receive Control: [`Rctl`].
pub const RCTL: Reg = 0x0100;
/// TCTL, Transmit Control: [`Tctl`].
pub const TCTL: Reg = 0x0400;
/// GPIE, General Purpose Interrupt Enable: [`Gpie`].
pub const GPIE: Reg = 0x1514;
/// DTXSWC, DMA TX Switch Control: [`Dtxswc`].
pub const DTXSWC: Reg = 0x3500;
/// RLPML, Receive Long Packet Maximum Length, bits 13:0; used while RCTL.LPE is set.
pub const RLPML: Reg = 0x5004;
/// MTA\[0..128\], Multicast Table Array: a 4096-bit hash filter.
pub const MTA: Reg = 0x5200;
pub const MTA_ENTRIES: u32 = 128;
/// RAL/RAH 0-15, 8 bytes per entry.
pub const RA_LOW_BANK: Reg = 0x5400;
/// RAL/RAH 16-23, the second bank.
pub const RA_HIGH_BANK: Reg = 0x54E0;
/// Receive address entries in both banks.
pub const RAR_ENTRIES: u8 = 24;
/// VFTA\[0..128\], VLAN Filter Table Array.
pub const VFTA: Reg = 0x5600;
/// MRQC, Multiple Receive Queues Command: [`mrqc`].
pub const MRQC: Reg = 0x5818;
/// VT_CTL, VMDq Control: [`VtCtl`].
pub const VT_CTL: Reg = 0x581C;
/// VMOLR(n), VM Offload: [`Vmolr`], one per pool.
pub const VMOLR_BASE: Reg = 0x5AD0;
/// VLVF(n), VLAN VM Filter: [`vlvf`], 32 entries.
pub const VLVF_BASE: Reg = 0x5D00;
pub const VLVF_ENTRIES: u32 = 32;

/// VMBMEM(n), the mailbox memory of VF n: 16 words.
pub const VMBMEM_BASE: Reg = 0x0800;
/// Words in one mailbox.
pub const MAILBOX_WORDS: usize = 16;
/// P2VMAILBOX(n), PF-to-VF mailbox control: [`P2v`].
pub const P2VMAILBOX_BASE: Reg = 0x0C00;
/// V2PMAILBOX(n) seen from the PF (the VF sees its own at VF offset 0xC40): [`V2p`].
pub const V2PMAILBOX_BASE: Reg = 0x0C40;
/// MBVFICR, Mailbox VF Interrupt Cause, write 1 to clear: [`mbvficr`].
pub const MBVFICR: Reg = 0x0C80;
/// MBVFIMR, Mailbox VF Interrupt Mask. QEMU ignores it.
pub const MBVFIMR: Reg = 0x0C84;
/// VFLRE, VF Reset Events: bit n for VF n, write 1 to clear.
pub const VFLRE: Reg = 0x0C88;
/// VFRE, VF Receive Enables: bit n for pool n; reset value 0xFF.
pub const VFRE: Reg = 0x0C8C;
/// VFTE, VF Transmit Enables: bit n for pool n; reset value 0xFF.
pub const VFTE: Reg = 0x0C90;

/// The most VFs (and VMDq pools besides the PF's) the 82576 has.
pub const MAX_POOLS: u8 = 8;
/// Queues per pool: pool n owns queues n and n + 8.
pub const QUEUES: u8 = 16;

const fn check(n: u8, max: u8) -> u32 {
    assert!(n < max, "index out of range");
    n as u32
}

/// VMOLR of pool `n` (< 8).
pub const fn vmolr(n: u8) -> Reg {
    VMOLR_BASE + 4 * check(n, MAX_POOLS)
}

/// VLVF entry `n` (< 32).
pub const fn vlvf_reg(n: u8) -> Reg {
    VLVF_BASE + 4 * check(n, VLVF_ENTRIES as u8)
}

/// MTA word `n` (< 128).
pub const fn mta(n: u8) -> Reg {
    MTA + 4 * check(n, MTA_ENTRIES as u8)
}

/// VFTA word `n` (< 128).
pub const fn vfta(n: u8) -> Reg {
    VFTA + 4 * check(n, 128)
}

/// P2VMAILBOX of VF `n` (< 8).
pub const fn p2vmailbox(n: u8) -> Reg {
    P2VMAILBOX_BASE + 4 * check(n, MAX_POOLS)
}

/// V2PMAILBOX of VF `n` (< 8), PF view.
pub const fn v2pmailbox(n: u8) -> Reg {
    V2PMAILBOX_BASE + 4 * check(n, MAX_POOLS)
}

/// Word `w` (< 16) of VF `n`'s mailbox memory.
pub const fn vmbmem(n: u8, w: u8) -> Reg {
    VMBMEM_BASE + 64 * check(n, MAX_POOLS) + 4 * check(w, MAILBOX_WORDS as u8)
}

/// RAL of receive address entry `n` (< 24): address bytes 0-3, byte 0 in bits 7:0.
pub const fn ral(n: u8) -> Reg {
    let n = check(n, RAR_ENTRIES);
    if n < 16 {
        RA_LOW_BANK + 8 * n
    } else {
        RA_HIGH_BANK + 8 * (n - 16)
    }
}

/// RAH of receive address entry `n` (< 24): [`rah`].
pub const fn rah_reg(n: u8) -> Reg {
    ral(n) + 4
}

/// RXDCTL of queue `q` (< 16), at its 82576 location (QEMU also decodes the 82575 alias at
/// 0x2828 for queues 0-3).
pub const fn rxdctl(q: u8) -> Reg {
    0xC028 + 0x40 * check(q, QUEUES)
}

/// TXDCTL of queue `q` (< 16).
pub const fn txdctl(q: u8) -> Reg {
    0xE028 + 0x40 * check(q, QUEUES)
}

/// RXDCTL/TXDCTL bit 25: the queue is enabled.
pub const QUEUE_ENABLE: u32 = 1 << 25;

bitflags::bitflags! {
    /// CTRL, the bits used here.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Ctrl: u32 {
        /// Set Link Up (QEMU does not model it; set as Linux does).
        const SLU = 1 << 6;
        /// Device reset; self-clearing.
        const RST = 1 << 26;
    }

    /// STATUS, the bits used here.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Status: u32 {
        const FD = 1 << 0;
        /// Link up.
        const LU = 1 << 1;
        /// PHY reset asserted; cleared by writing 0.
        const PHYRA = 1 << 10;
        /// SR-IOV is enabled (QEMU: NumVFs > 0).
        const IOV_MODE = 1 << 18;
    }

    /// EECD, the bits used here.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Eecd: u32 {
        /// Flash write disable.
        const FWE_DIS = 1 << 4;
        /// EEPROM present.
        const PRES = 1 << 8;
        /// Auto-read done (QEMU never sets it).
        const AUTO_RD = 1 << 9;
    }

    /// CTRL_EXT, the bits used here.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct CtrlExt: u32 {
        /// PF Reset Done: the VFs may use their mailboxes (clears RSTI, sets RSTD per VF).
        const PFRSTD = 1 << 14;
    }

    /// RCTL, the bits used here.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Rctl: u32 {
        /// Receiver enable.
        const EN = 1 << 1;
        /// Long packet enable: frames up to RLPML.
        const LPE = 1 << 5;
        /// Broadcast accept mode.
        const BAM = 1 << 15;
        /// VLAN filter enable.
        const VFE = 1 << 18;
        /// Strip the Ethernet CRC.
        const SECRC = 1 << 26;
    }

    /// TCTL, the bits used here; CT and COLD are [`tctl`] fields.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Tctl: u32 {
        /// Transmit enable; clear after reset.
        const EN = 1 << 1;
        /// Pad short packets.
        const PSP = 1 << 3;
        /// Re-transmit on late collision.
        const RTLC = 1 << 24;
    }

    /// GPIE, the bits Linux `igb` sets for MSI-X (`igb_configure_msix`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Gpie: u32 {
        /// Non-selective clear of ICR on read.
        const NSICR = 1 << 0;
        /// Extended-interrupt (MSI-X) mode. QEMU routes every EICR cause, the VFs' included,
        /// to MSI-X vectors only with it; without it a VF's queue and mailbox causes go to
        /// the PF's own MSI/INTx and the VF never gets an interrupt.
        const MSIX_MODE = 1 << 4;
        /// EIAM auto-masks a vector when it fires.
        const EIAME = 1 << 30;
        /// PBA support (MSI-X pending bits).
        const PBA = 1 << 31;
    }

    /// DTXSWC.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Dtxswc: u32 {
        /// Bits 7:0: MAC anti-spoofing per pool (QEMU does not check it).
        const MAC_SPOOF = 0xFF;
        /// Bit 31: VMDq loopback between pools.
        const LOOPBACK = 1 << 31;
    }

    /// VT_CTL, the flags; the default pool is [`vt_ctl::default_pool`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct VtCtl: u32 {
        /// Frames matching no pool are dropped instead of going to the default pool.
        const DIS_DEF_POOL = 1 << 29;
        const _ = !0;
    }

    /// VMOLR(n), the flags; RLPML is bits 13:0 ([`VMOLR_RLPML_MASK`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Vmolr: u32 {
        /// Long packet enable for the pool (up to RLPML).
        const LPE = 1 << 16;
        /// Accept untagged packets (only with RCTL.VFE).
        const AUPE = 1 << 24;
        /// Accept MTA/UTA hash hits.
        const ROMPE = 1 << 25;
        /// Accept broadcasts: without it ARP never reaches the pool.
        const BAM = 1 << 27;
        /// Strip the CRC (set in the reset value).
        const STRCRC = 1 << 31;
        const _ = !0;
    }

    /// P2VMAILBOX(n).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct P2v: u32 {
        /// Status/command: the PF wrote a message (sets V2P.PFSTS).
        const STS = 1 << 0;
        /// The PF received the VF's message (sets V2P.PFACK).
        const ACK = 1 << 1;
        /// The VF owns the buffer (read only here).
        const VFU = 1 << 2;
        /// The PF owns the buffer; taken only while VFU is clear.
        const PFU = 1 << 3;
        /// Reset VFU, for a VF stuck holding the lock.
        const RVFU = 1 << 4;
    }

    /// V2PMAILBOX(n). Reading it clears PFSTS, PFACK and RSTD.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct V2p: u32 {
        const REQ = 1 << 0;
        const ACK = 1 << 1;
        const VFU = 1 << 2;
        const PFU = 1 << 3;
        const PFSTS = 1 << 4;
        const PFACK = 1 << 5;
        /// PF reset in progress.
        const RSTI = 1 << 6;
        /// PF reset done.
        const RSTD = 1 << 7;
    }
}

/// TCTL fields: collision threshold 11:4, collision distance 21:12, with Linux's
/// values (15, 63).
pub mod tctl {
    pub const CT_DEFAULT: u32 = 15 << 4;
    pub const COLD_DEFAULT: u32 = 63 << 12;
}

/// MRQC: bits 2:0 select the queueing mode.
pub mod mrqc {
    /// VMDq without RSS, what Linux writes (QEMU tests only bit 0).
    pub const ENABLE_VMDQ: u32 = 0x3;
}

/// VT_CTL fields.
pub mod vt_ctl {
    /// Bits 9:7: the pool that gets frames matching no pool.
    pub const fn default_pool(pool: u8) -> u32 {
        ((pool & 7) as u32) << 7
    }
}

/// VMOLR bits 13:0: the pool's long-packet maximum length.
pub const VMOLR_RLPML_MASK: u32 = 0x3FFF;

/// MBVFICR fields.
pub mod mbvficr {
    /// VFREQ, bits 7:0: VF n sent a message.
    pub const fn vfreq(vf: u8) -> u32 {
        1 << (vf & 7)
    }
    /// VFACK, bits 23:16: VF n acknowledged the PF's message.
    pub const fn vfack(vf: u8) -> u32 {
        1 << (16 + (vf & 7))
    }
    pub const VFREQ_MASK: u32 = 0xFF;
    pub const VFACK_MASK: u32 = 0xFF << 16;
}

/// RAH fields: address bytes 4-5 in 15:0, POOLSEL 25:18, AV 31.
pub mod rah {
    /// Address valid.
    pub const AV: u32 = 1 << 31;
    pub const POOLSEL_SHIFT: u32 = 18;
    pub const POOLSEL_MASK: u32 = 0xFF << POOLSEL_SHIFT;
    /// POOLSEL bit of `pool`.
    pub const fn pool(pool: u8) -> u32 {
        1 << (POOLSEL_SHIFT + (pool & 7) as u32)
    }
}

/// VLVF fields: VLAN id 11:0, POOLSEL 19:12, VI_EN 31.
pub mod vlvf {
    pub const VID_MASK: u32 = 0xFFF;
    pub const POOLSEL_SHIFT: u32 = 12;
    pub const POOLSEL_MASK: u32 = 0xFF << POOLSEL_SHIFT;
    pub const VI_EN: u32 = 1 << 31;
    pub const fn pool(pool: u8) -> u32 {
        1 << (POOLSEL_SHIFT + (pool & 7) as u32)
    }
}

/// MDIC: data 15:0, PHY register 20:16, PHY address 25:21, op 27:26, ready 28, error 30.
pub mod mdic {
    pub const DATA_MASK: u32 = 0xFFFF;
    pub const OP_WRITE: u32 = 1 << 26;
    pub const OP_READ: u32 = 2 << 26;
    pub const READY: u32 = 1 << 28;
    pub const ERROR: u32 = 1 << 30;
    /// The internal PHY's MDIO address (QEMU answers only this one).
    pub const PHY_ADDRESS: u8 = 1;

    /// A write of `data` to PHY register `reg` of the PHY at `phy`.
    pub const fn write(phy: u8, reg: u8, data: u16) -> u32 {
        OP_WRITE | ((phy as u32 & 0x1F) << 21) | ((reg as u32 & 0x1F) << 16) | data as u32
    }
}

/// PHY registers (IEEE 802.3 clause 22).
pub mod phy {
    /// BMCR, basic mode control.
    pub const BMCR: u8 = 0;
    /// BMCR bit 12: auto-negotiation enable.
    pub const BMCR_AUTOEN: u16 = 1 << 12;
    /// BMCR bit 9: restart auto-negotiation.
    pub const BMCR_ANRESTART: u16 = 1 << 9;
}

/// Registers as the service core reaches them: the PF's BAR0, 32-bit accesses. Reads take
/// `&mut self` because some registers change when read (V2PMAILBOX's read-to-clear bits).
pub trait Registers {
    fn read32(&mut self, offset: Reg) -> u32;
    fn write32(&mut self, offset: Reg, value: u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_address_entries_span_both_banks() {
        assert_eq!(ral(0), 0x5400);
        assert_eq!(rah_reg(0), 0x5404);
        assert_eq!(ral(15), 0x5478);
        assert_eq!(ral(16), 0x54E0);
        assert_eq!(rah_reg(23), 0x551C);
    }

    #[test]
    fn per_vf_registers() {
        assert_eq!(vmolr(7), 0x5AEC);
        assert_eq!(p2vmailbox(3), 0xC0C);
        assert_eq!(v2pmailbox(1), 0xC44);
        assert_eq!(vmbmem(1, 2), 0x848);
        assert_eq!(vlvf_reg(31), 0x5D7C);
        assert_eq!(rxdctl(9), 0xC028 + 9 * 0x40);
        assert_eq!(txdctl(0), 0xE028);
        assert_eq!(mta(127), 0x53FC);
    }

    #[test]
    fn fields() {
        assert_eq!(vt_ctl::default_pool(7), 0x380);
        assert_eq!(rah::pool(0), 1 << 18);
        assert_eq!(rah::pool(7), 1 << 25);
        assert_eq!(mbvficr::vfack(2), 1 << 18);
        assert_eq!(vlvf::pool(3), 1 << 15);
        // PHY 1, BMCR, AUTOEN | ANRESTART.
        assert_eq!(
            mdic::write(1, phy::BMCR, phy::BMCR_AUTOEN | phy::BMCR_ANRESTART),
            0x0420_1200
        );
    }

    #[test]
    #[should_panic]
    fn a_ninth_pool_is_refused() {
        let _ = vmolr(8);
    }
}
