//! Speculation controls at the guest/host boundary: which of them this CPU has, and the per-vCPU
//! bookkeeping that keeps the hypervisor's SPEC_CTRL value in effect outside the guest.
//!
//! The MSRs (AMD APM vol. 2, 3.2.9 "Speculation Control Registers"):
//! - SPEC_CTRL (48h), read-write: IBRS (bit 0), STIBP (1), SSBD (2), PSFD (7); present when CPUID
//!   Fn8000_0008 EBX reports any of IBRS (14), STIBP (15), SSBD (24), PSFD (28). The guest accesses
//!   it directly (`crate::msr::PASS_THROUGH`), so after a #VMEXIT the guest's value is still in
//!   the register unless the processor virtualizes it: with SPEC_CTRL virtualization (CPUID
//!   Fn8000_000A EDX\[20\], APM vol. 2, 15.37.1) VMRUN loads the guest's value from the VMCB
//!   (save area offset 2E0h) and #VMEXIT stores it back, leaving the host's in effect; without
//!   it the hypervisor reads the guest's value after each exit and writes its own back when they
//!   differ, then writes the guest's before the next VMRUN ([`SpecCtrlState`]).
//! - PRED_CMD (49h), write-only: IBPB (bit 0) keeps older indirect-branch predictions from
//!   steering later ones (CPUID Fn8000_0008 EBX\[12\]). The hypervisor issues one on a core
//!   before its first guest entry and when its guest ends.

/// CPUID Fn8000_0008 EBX bits (AMD APM vol. 3, E.4.7).
pub mod bit {
    pub const IBPB: u32 = 1 << 12;
    pub const IBRS: u32 = 1 << 14;
    pub const STIBP: u32 = 1 << 15;
    pub const SSBD: u32 = 1 << 24;
    pub const PSFD: u32 = 1 << 28;
    /// CPUID Fn8000_000A EDX\[20\]: SPEC_CTRL virtualization (guest value in the VMCB).
    pub const V_SPEC_CTRL: u32 = 1 << 20;
}

/// PRED_CMD bit 0: indirect branch prediction barrier.
pub const PRED_CMD_IBPB: u64 = 1;

/// What this CPU offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecFeatures {
    pub ibpb: bool,
    /// MSR 48h exists.
    pub spec_ctrl: bool,
    /// VMRUN/#VMEXIT switch SPEC_CTRL themselves.
    pub v_spec_ctrl: bool,
}

impl SpecFeatures {
    /// From CPUID Fn8000_0008 EBX and Fn8000_000A EDX (0 for a leaf that is not implemented).
    pub const fn from_cpuid(ebx_8000_0008: u32, edx_8000_000a: u32) -> Self {
        let spec_ctrl = ebx_8000_0008 & (bit::IBRS | bit::STIBP | bit::SSBD | bit::PSFD) != 0;
        SpecFeatures {
            ibpb: ebx_8000_0008 & bit::IBPB != 0,
            spec_ctrl,
            v_spec_ctrl: spec_ctrl && edx_8000_000a & bit::V_SPEC_CTRL != 0,
        }
    }

    /// Whether the hypervisor must switch SPEC_CTRL around VMRUN itself.
    pub const fn software_switch(&self) -> bool {
        self.spec_ctrl && !self.v_spec_ctrl
    }
}

impl core::fmt::Display for SpecFeatures {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.ibpb {
            "IBPB on each core before its first guest entry and at its guest's end"
        } else {
            "IBPB not supported (CPUID 8000_0008 EBX[12] clear): no barrier at guest entry and end"
        })?;
        f.write_str(match (self.spec_ctrl, self.v_spec_ctrl) {
            (false, _) => "; no SPEC_CTRL MSR",
            (true, true) => "; SPEC_CTRL switched by the processor (guest value in the VMCB)",
            (true, false) => {
                "; SPEC_CTRL: the guest's value read after each exit, the host's written back if they differ"
            }
        })
    }
}

/// One vCPU's SPEC_CTRL bookkeeping when the hypervisor switches the register itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecCtrlState {
    /// The hypervisor's value on this core (what it found before the first guest entry).
    host: u64,
    /// The guest's value as of its last exit (0 at reset, as on hardware).
    guest: u64,
}

impl SpecCtrlState {
    pub const fn new(host: u64) -> Self {
        SpecCtrlState { host, guest: 0 }
    }

    /// Before VMRUN (the host's value is in the register): the guest's value to write, if it
    /// differs.
    pub fn before_vmrun(&self) -> Option<u64> {
        (self.guest != self.host).then_some(self.guest)
    }

    /// After #VMEXIT, with `current` read from the register (the guest's value): remembers it and
    /// returns the host's value to write back, if they differ.
    pub fn after_exit(&mut self, current: u64) -> Option<u64> {
        self.guest = current;
        (current != self.host).then_some(self.host)
    }

    pub const fn guest(&self) -> u64 {
        self.guest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_from_cpuid() {
        assert_eq!(
            SpecFeatures::from_cpuid(0, 0),
            SpecFeatures {
                ibpb: false,
                spec_ctrl: false,
                v_spec_ctrl: false
            }
        );
        // A Zen 3: IBPB, IBRS, STIBP, SSBD (EBX 0x0100_d000 plus others), V_SPEC_CTRL.
        let zen3 = SpecFeatures::from_cpuid(0x0100_d000 | 1 << 9, 1 << 20);
        assert!(zen3.ibpb && zen3.spec_ctrl && zen3.v_spec_ctrl);
        assert!(!zen3.software_switch());
        // SSBD alone makes the MSR exist; without V_SPEC_CTRL the hypervisor switches it.
        let ssbd = SpecFeatures::from_cpuid(bit::SSBD, 0);
        assert!(!ssbd.ibpb && ssbd.spec_ctrl && ssbd.software_switch());
        // The virtualization bit means nothing without the MSR.
        assert!(!SpecFeatures::from_cpuid(bit::IBPB, bit::V_SPEC_CTRL).v_spec_ctrl);
    }

    #[test]
    fn the_log_line_says_ibpb_not_supported() {
        let none = SpecFeatures::from_cpuid(0, 0).to_string();
        assert!(none.starts_with("IBPB not supported"), "{none}");
        assert!(none.ends_with("no SPEC_CTRL MSR"), "{none}");
    }

    #[test]
    fn a_guest_that_never_writes_costs_no_wrmsr() {
        let mut s = SpecCtrlState::new(0);
        for _ in 0..3 {
            assert_eq!(s.before_vmrun(), None);
            assert_eq!(s.after_exit(0), None);
        }
    }

    #[test]
    fn the_guest_value_is_kept_apart_from_the_host_value() {
        let mut s = SpecCtrlState::new(0);
        // The guest set SSBD | STIBP while it ran: the host's 0 goes back after the exit...
        assert_eq!(s.after_exit(0b110), Some(0));
        assert_eq!(s.guest(), 0b110);
        // ...and the guest's value before the next entry.
        assert_eq!(s.before_vmrun(), Some(0b110));
        // It cleared it again: nothing to switch any more.
        assert_eq!(s.after_exit(0), None);
        assert_eq!(s.before_vmrun(), None);
    }

    #[test]
    fn a_host_value_other_than_zero_is_restored_too() {
        // Firmware left STIBP on: the guest starts from the reset value 0.
        let mut s = SpecCtrlState::new(0b10);
        assert_eq!(s.before_vmrun(), Some(0));
        assert_eq!(s.after_exit(0), Some(0b10));
        assert_eq!(s.after_exit(0b10), None);
        assert_eq!(s.before_vmrun(), None);
    }
}
