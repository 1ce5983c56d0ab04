//! The guest's model-specific registers: which ones the MSR permission map lets through to the
//! hardware, and what the hypervisor answers for the ones it intercepts. Anything not listed raises
//! #GP in the guest, as hardware does for an MSR that does not exist; Linux probes optional MSRs with
//! `rdmsr_safe`/`wrmsr_safe` and copes.

/// MSR numbers (AMD APM vol. 2, appendix A).
pub mod number {
    pub const TSC: u32 = 0x10;
    pub const APIC_BASE: u32 = 0x1b;
    pub const TSC_ADJUST: u32 = 0x3b;
    pub const SPEC_CTRL: u32 = 0x48;
    pub const PRED_CMD: u32 = 0x49;
    pub const PATCH_LEVEL: u32 = 0x8b;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const PAT: u32 = 0x277;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
    pub const HWCR: u32 = 0xc001_0015;
    pub const DE_CFG: u32 = 0xc001_1029;
}

use number::*;

/// MSRs whose state lives in the VMCB (VMRUN/VMLOAD/VMSAVE switch it) or that only affect the guest's
/// own dedicated core: guest accesses go straight to the hardware.
pub const PASS_THROUGH: [u32; 13] = [
    SYSENTER_CS,
    SYSENTER_ESP,
    SYSENTER_EIP,
    STAR,
    LSTAR,
    CSTAR,
    SFMASK,
    FS_BASE,
    GS_BASE,
    KERNEL_GS_BASE,
    TSC_AUX,
    SPEC_CTRL,
    PRED_CMD,
];

/// APIC_BASE bits (APM vol. 2, 16.3.1): BSP 8, x2APIC enable 10, APIC enable 11.
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_EN: u64 = 1 << 11;
pub const APIC_DEFAULT_ADDRESS: u64 = 0xfee0_0000;
const EFER_SVME: u64 = 1 << 12;
/// EFER bits a guest may set: SCE, LME, LMA, NXE, FFXSR (APM vol. 2, 3.1.7). SVME is hidden.
const EFER_ALLOWED: u64 = 1 | 1 << 8 | 1 << 10 | 1 << 11 | 1 << 14;
/// DE_CFG bit 1: LFENCE is dispatch-serialising (Linux checks and sets it).
const DE_CFG_LFENCE_SERIALIZE: u64 = 1 << 1;

/// Per-vCPU state of the intercepted MSRs that are not VMCB fields.
#[derive(Debug, Clone)]
pub struct MsrFile {
    bsp: bool,
    de_cfg: u64,
}

/// What the caller must do besides returning a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrWrite {
    /// Handled here; nothing else to do.
    Done,
    /// Store in the VMCB's EFER (SVME kept set for VMRUN).
    Efer(u64),
    /// Store in the VMCB's G_PAT.
    Pat(u64),
    /// Ignored on purpose (documented per MSR).
    Ignored,
}

/// The guest must get #GP(0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectGp;

/// The VMCB values some reads need.
#[derive(Debug, Clone, Copy)]
pub struct VmcbMsrs {
    pub efer: u64,
    pub g_pat: u64,
}

impl MsrFile {
    pub fn new(bsp: bool) -> Self {
        MsrFile {
            bsp,
            de_cfg: DE_CFG_LFENCE_SERIALIZE,
        }
    }

    pub fn read(&self, msr: u32, vmcb: VmcbMsrs) -> Result<u64, InjectGp> {
        Ok(match msr {
            // x2APIC already on, as firmware would leave it for an x2APIC-only platform.
            APIC_BASE => {
                APIC_DEFAULT_ADDRESS
                    | APIC_BASE_EN
                    | APIC_BASE_EXTD
                    | if self.bsp { APIC_BASE_BSP } else { 0 }
            }
            EFER => vmcb.efer & !EFER_SVME,
            PAT => vmcb.g_pat,
            // No microcode updates in a guest.
            PATCH_LEVEL => 0,
            // The TSC is never moved (TSC writes are refused): nothing to adjust.
            TSC_ADJUST => 0,
            // Hardware configuration: report the reset value with TscFreqSel (bit 24), as Linux expects on AMD.
            HWCR => 1 << 24,
            DE_CFG => self.de_cfg,
            _ => return Err(InjectGp),
        })
    }

    pub fn write(&mut self, msr: u32, value: u64) -> Result<MsrWrite, InjectGp> {
        Ok(match msr {
            APIC_BASE => {
                // The only supported state is x2APIC enabled at the default address; leaving x2APIC
                // mode (back to xAPIC or disabled) is not offered, as on x2APIC-only platforms.
                let wanted = APIC_DEFAULT_ADDRESS | APIC_BASE_EN | APIC_BASE_EXTD;
                if value & !APIC_BASE_BSP != wanted {
                    return Err(InjectGp);
                }
                MsrWrite::Done
            }
            EFER => {
                if value & !EFER_ALLOWED != 0 {
                    return Err(InjectGp);
                }
                MsrWrite::Efer(value | EFER_SVME)
            }
            PAT => {
                // Each of the 8 entries must be a valid memory type: 0, 1, 4, 5, 6 or 7.
                if (0..8).any(|i| matches!((value >> (i * 8)) & 0xff, 2 | 3 | 8..)) {
                    return Err(InjectGp);
                }
                MsrWrite::Pat(value)
            }
            DE_CFG => {
                self.de_cfg = value;
                MsrWrite::Done
            }
            // Firmware-level knobs: keep the hardware's configuration.
            HWCR | PATCH_LEVEL => MsrWrite::Ignored,
            // Writing the TSC would move time for the whole core's guest; not supported yet.
            // A TSC_ADJUST write other than the 0 it holds would move it the same way.
            TSC => return Err(InjectGp),
            TSC_ADJUST if value == 0 => MsrWrite::Done,
            TSC_ADJUST => return Err(InjectGp),
            _ => return Err(InjectGp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMCB: VmcbMsrs = VmcbMsrs {
        efer: 0x1d01,
        g_pat: 0x0007_0406_0007_0406,
    };

    #[test]
    fn tsc_adjust_stays_zero() {
        let mut f = MsrFile::new(false);
        assert_eq!(f.read(TSC_ADJUST, VMCB), Ok(0));
        assert_eq!(f.write(TSC_ADJUST, 0), Ok(MsrWrite::Done));
        assert_eq!(f.write(TSC_ADJUST, 5), Err(InjectGp));
        assert_eq!(f.write(TSC, 5), Err(InjectGp));
    }

    #[test]
    fn apic_base_reports_x2apic_on_and_bsp_only_for_vcpu0() {
        assert_eq!(MsrFile::new(true).read(APIC_BASE, VMCB), Ok(0xfee0_0d00));
        assert_eq!(MsrFile::new(false).read(APIC_BASE, VMCB), Ok(0xfee0_0c00));
        let mut f = MsrFile::new(true);
        assert_eq!(f.write(APIC_BASE, 0xfee0_0d00), Ok(MsrWrite::Done));
        // Leaving x2APIC mode or moving the APIC is refused.
        assert_eq!(f.write(APIC_BASE, 0xfee0_0900), Err(InjectGp));
        assert_eq!(f.write(APIC_BASE, 0xfed0_0d00), Err(InjectGp));
    }

    #[test]
    fn efer_hides_and_keeps_svme() {
        let f = MsrFile::new(true);
        assert_eq!(f.read(EFER, VMCB), Ok(0x0d01));
        let mut f = f;
        assert_eq!(f.write(EFER, 0x0d01), Ok(MsrWrite::Efer(0x1d01)));
        assert_eq!(f.write(EFER, 0x1d01), Err(InjectGp));
    }

    #[test]
    fn pat_validates_memory_types() {
        let mut f = MsrFile::new(true);
        assert_eq!(
            f.write(PAT, 0x0007_0406_0007_0406),
            Ok(MsrWrite::Pat(0x0007_0406_0007_0406))
        );
        assert_eq!(f.write(PAT, 0x0000_0000_0000_0002), Err(InjectGp));
        assert_eq!(f.write(PAT, 0x0800_0000_0000_0000), Err(InjectGp));
    }

    #[test]
    fn unknown_msrs_fault() {
        let mut f = MsrFile::new(true);
        assert_eq!(f.read(0xc001_0114, VMCB), Err(InjectGp));
        assert_eq!(f.write(0x1a0, 1), Err(InjectGp));
        assert_eq!(f.read(DE_CFG, VMCB), Ok(2));
        assert_eq!(f.write(DE_CFG, 0x2), Ok(MsrWrite::Done));
    }

    #[test]
    fn pass_through_list_has_no_intercepted_msr() {
        for msr in PASS_THROUGH {
            assert!(
                MsrFile::new(true).read(msr, VMCB).is_err(),
                "{msr:#x} is both passed through and emulated"
            );
        }
    }
}

/// Accesses that raised #GP, per MSR, so the end-of-guest report shows what the guest looked for.
#[derive(Debug, Clone, Default)]
pub struct UnknownMsrs {
    entries: [(u32, u32, u32); UNKNOWN_MSR_SLOTS],
    used: usize,
    /// Faulting accesses to MSRs beyond the table.
    pub untracked: u64,
}

pub const UNKNOWN_MSR_SLOTS: usize = 16;

impl UnknownMsrs {
    pub fn record(&mut self, msr: u32, write: bool) {
        let slot = match self.entries[..self.used].iter().position(|e| e.0 == msr) {
            Some(i) => i,
            None if self.used < UNKNOWN_MSR_SLOTS => {
                self.entries[self.used] = (msr, 0, 0);
                self.used += 1;
                self.used - 1
            }
            None => {
                self.untracked += 1;
                return;
            }
        };
        let e = &mut self.entries[slot];
        if write {
            e.2 = e.2.saturating_add(1);
        } else {
            e.1 = e.1.saturating_add(1);
        }
    }

    /// `(msr, reads, writes)` in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.entries[..self.used].iter().copied()
    }
}

#[cfg(test)]
mod unknown_tests {
    use super::*;

    #[test]
    fn counts_per_msr_and_overflow() {
        let mut u = UnknownMsrs::default();
        u.record(0xc001_0114, false);
        u.record(0xc001_0114, true);
        u.record(0x1a0, false);
        assert_eq!(
            u.iter().collect::<Vec<_>>(),
            [(0xc001_0114, 1, 1), (0x1a0, 1, 0)]
        );
        for m in 0..UNKNOWN_MSR_SLOTS as u32 {
            u.record(0x1000 + m, false);
        }
        assert_eq!(u.iter().count(), UNKNOWN_MSR_SLOTS);
        assert_eq!(u.untracked, 2);
    }
}
