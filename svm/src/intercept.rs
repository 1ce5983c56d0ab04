//! Intercept vectors and the other bit-field formats of the VMCB control area
//! (APM vol. 2 §15.7–§15.16, §15.21, §15.25, Appendix B Table B-1).

use bitflags::bitflags;

use crate::vmcb::Vmcb;

bitflags! {
    /// Intercept word 3, VMCB offset 0x00C (APM vol. 2 Appendix B Table B-1, §15.13–§15.14).
    ///
    /// Each set bit makes the named instruction or event cause a `#VMEXIT` with the exit code
    /// given in brackets (Appendix C).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct InterceptMisc1: u32 {
        /// Physical maskable interrupt (INTR, 0x60).
        const INTR = 1 << 0;
        /// Physical NMI (0x61).
        const NMI = 1 << 1;
        /// SMI (0x62).
        const SMI = 1 << 2;
        /// INIT (0x63).
        const INIT = 1 << 3;
        /// Virtual interrupt taken (VINTR, 0x64).
        const VINTR = 1 << 4;
        /// Writes of CR0 that change bits other than TS or MP (0x65).
        const CR0_SEL_WRITE = 1 << 5;
        /// SIDT (0x66).
        const IDTR_READ = 1 << 6;
        /// SGDT (0x67).
        const GDTR_READ = 1 << 7;
        /// SLDT (0x68).
        const LDTR_READ = 1 << 8;
        /// STR (0x69).
        const TR_READ = 1 << 9;
        /// LIDT (0x6A).
        const IDTR_WRITE = 1 << 10;
        /// LGDT (0x6B).
        const GDTR_WRITE = 1 << 11;
        /// LLDT (0x6C).
        const LDTR_WRITE = 1 << 12;
        /// LTR (0x6D).
        const TR_WRITE = 1 << 13;
        /// RDTSC (0x6E).
        const RDTSC = 1 << 14;
        /// RDPMC (0x6F).
        const RDPMC = 1 << 15;
        /// PUSHF (0x70).
        const PUSHF = 1 << 16;
        /// POPF (0x71).
        const POPF = 1 << 17;
        /// CPUID (0x72).
        const CPUID = 1 << 18;
        /// RSM (0x73).
        const RSM = 1 << 19;
        /// IRET (0x74).
        const IRET = 1 << 20;
        /// Software interrupt INTn (0x75).
        const INTN = 1 << 21;
        /// INVD (0x76).
        const INVD = 1 << 22;
        /// PAUSE (0x77), subject to the pause filter.
        const PAUSE = 1 << 23;
        /// HLT (0x78).
        const HLT = 1 << 24;
        /// INVLPG (0x79).
        const INVLPG = 1 << 25;
        /// INVLPGA (0x7A).
        const INVLPGA = 1 << 26;
        /// IN/OUT/INS/OUTS, filtered by the I/O permission map (IOIO, 0x7B).
        const IOIO_PROT = 1 << 27;
        /// RDMSR/WRMSR, filtered by the MSR permission map (0x7C).
        const MSR_PROT = 1 << 28;
        /// Task switch (0x7D).
        const TASK_SWITCH = 1 << 29;
        /// FERR_FREEZE: processor frozen on an x87 error (0x7E).
        const FERR_FREEZE = 1 << 30;
        /// Shutdown, e.g. triple fault (0x7F).
        const SHUTDOWN = 1 << 31;
    }
}

bitflags! {
    /// Intercept word 4, VMCB offset 0x010 (APM vol. 2 Appendix B Table B-1).
    ///
    /// Bits 16–31 are the CR0–CR15 *write traps* (§15.9.1, exit codes 0x90–0x9F), which exit
    /// after the write completed; see [`InterceptMisc2::cr_write_trap`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct InterceptMisc2: u32 {
        /// VMRUN (0x80). `VMRUN` fails with `VMEXIT_INVALID` unless this is set (§15.5.1).
        const VMRUN = 1 << 0;
        /// VMMCALL (0x81).
        const VMMCALL = 1 << 1;
        /// VMLOAD (0x82).
        const VMLOAD = 1 << 2;
        /// VMSAVE (0x83).
        const VMSAVE = 1 << 3;
        /// STGI (0x84).
        const STGI = 1 << 4;
        /// CLGI (0x85).
        const CLGI = 1 << 5;
        /// SKINIT (0x86).
        const SKINIT = 1 << 6;
        /// RDTSCP (0x87).
        const RDTSCP = 1 << 7;
        /// ICEBP / INT1 (0x88).
        const ICEBP = 1 << 8;
        /// WBINVD and WBNOINVD (0x89).
        const WBINVD = 1 << 9;
        /// MONITOR and MONITORX (0x8A).
        const MONITOR = 1 << 10;
        /// MWAIT and MWAITX, unconditionally (0x8B).
        const MWAIT = 1 << 11;
        /// MWAIT and MWAITX, only if the monitor hardware is armed (0x8C).
        const MWAIT_COND = 1 << 12;
        /// XSETBV (0x8D).
        const XSETBV = 1 << 13;
        /// RDPRU (0x8E).
        const RDPRU = 1 << 14;
        /// Trap after a write of EFER (0x8F).
        const EFER_WRITE_TRAP = 1 << 15;
        /// Trap after a write of CR0 (0x90).
        const CR0_WRITE_TRAP = 1 << 16;
        /// Trap after a write of CR3 (0x93).
        const CR3_WRITE_TRAP = 1 << 19;
        /// Trap after a write of CR4 (0x94).
        const CR4_WRITE_TRAP = 1 << 20;
        /// Trap after a write of CR8 (0x98).
        const CR8_WRITE_TRAP = 1 << 24;
        // Bits for the other CRs are reachable through `cr_write_trap`.
        const _ = !0;
    }
}

impl InterceptMisc2 {
    /// The write-trap bit for control register `cr` (0–15); out-of-range values give no bits.
    pub const fn cr_write_trap(cr: u8) -> Self {
        if cr < 16 {
            Self::from_bits_retain(1 << (16 + cr as u32))
        } else {
            Self::empty()
        }
    }
}

bitflags! {
    /// Intercept word 5, VMCB offset 0x014 (APM vol. 2 Appendix B Table B-1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct InterceptMisc3: u32 {
        /// INVLPGB (0xA0).
        const INVLPGB = 1 << 0;
        /// Illegally specified INVLPGB (0xA1).
        const INVLPGB_ILLEGAL = 1 << 1;
        /// INVPCID (0xA2).
        const INVPCID = 1 << 2;
        /// MCOMMIT (0xA3).
        const MCOMMIT = 1 << 3;
        /// TLBSYNC (0xA4).
        const TLBSYNC = 1 << 4;
        /// Bus lock, when the bus-lock threshold is exceeded (0xA5).
        const BUSLOCK = 1 << 5;
        /// HLT when no virtual interrupt is pending (0xA6).
        const IDLE_HLT = 1 << 6;
    }
}

/// Bit for control/debug register `n` (0–15) in a 16-bit CR or DR intercept vector; 0 when out of
/// range (APM vol. 2 §15.9, §15.12.2).
pub const fn reg_bit(n: u8) -> u16 {
    if n < 16 {
        1 << n
    } else {
        0
    }
}

/// Bit for exception vector `v` (0–31) in the exception intercept vector; 0 when out of range
/// (APM vol. 2 §15.12).
pub const fn exception_bit(vector: u8) -> u32 {
    if vector < 32 {
        1 << vector
    } else {
        0
    }
}

bitflags! {
    /// Virtual interrupt control, VMCB offset 0x060 bits 31:0 (APM vol. 2 §15.21.1, §15.29,
    /// Appendix B Table B-1). V_TPR (bits 7:0) and V_INTR_PRIO (bits 19:16) are multi-bit: use
    /// [`IntCtl::v_tpr`] / [`IntCtl::v_intr_prio`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct IntCtl: u32 {
        /// A virtual interrupt is pending (V_IRQ); cleared by the processor when taken.
        const V_IRQ = 1 << 8;
        /// Virtual GIF value (when VGIF is enabled).
        const V_GIF = 1 << 9;
        /// Virtual NMI pending (vNMI).
        const V_NMI = 1 << 11;
        /// Virtual NMI masked (vNMI).
        const V_NMI_MASK = 1 << 12;
        /// Ignore V_TPR when deciding whether the virtual interrupt can be taken.
        const V_IGN_TPR = 1 << 20;
        /// Virtualize interrupt masking: RFLAGS.IF and TPR of the guest only gate virtual
        /// interrupts; physical interrupts are gated by the host's RFLAGS.IF.
        const V_INTR_MASKING = 1 << 24;
        /// Enable virtual GIF.
        const V_GIF_ENABLE = 1 << 25;
        /// Enable virtual NMI.
        const V_NMI_ENABLE = 1 << 26;
        /// x2AVIC mode (with [`IntCtl::AVIC_ENABLE`]) (§15.29.10).
        const X2AVIC_ENABLE = 1 << 30;
        /// AVIC enable (§15.29). V_IRQ, V_INTR_PRIO, V_INTR_VECTOR and V_IGN_TPR are then ignored.
        const AVIC_ENABLE = 1 << 31;
        const _ = !0;
    }
}

impl IntCtl {
    /// V_TPR, bits 7:0 (the guest's TPR, 4 bits used).
    pub const fn v_tpr(self) -> u8 {
        (self.bits() & 0xFF) as u8
    }

    /// This value with V_TPR (bits 7:0) replaced.
    pub const fn with_v_tpr(self, tpr: u8) -> Self {
        Self::from_bits_retain((self.bits() & !0xFF) | tpr as u32)
    }

    /// V_INTR_PRIO, bits 19:16: priority of the pending virtual interrupt.
    pub const fn v_intr_prio(self) -> u8 {
        ((self.bits() >> 16) & 0xF) as u8
    }

    /// This value with V_INTR_PRIO (bits 19:16) replaced (only the low 4 bits of `prio` count).
    pub const fn with_v_intr_prio(self, prio: u8) -> Self {
        Self::from_bits_retain((self.bits() & !(0xF << 16)) | ((prio as u32 & 0xF) << 16))
    }
}

bitflags! {
    /// Interrupt state, VMCB offset 0x068 (APM vol. 2 §15.21.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct IntState: u64 {
        /// The guest is in an interrupt shadow (after STI or MOV SS).
        const INTERRUPT_SHADOW = 1 << 0;
        /// Value of the guest's RFLAGS.IF as seen by the processor (written on `#VMEXIT`).
        const GUEST_INTERRUPT_MASK = 1 << 1;
        const _ = !0;
    }
}

bitflags! {
    /// Nested-paging and SEV control, VMCB offset 0x090 (APM vol. 2 §15.25.3, §15.34, Table B-1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NestedControl: u64 {
        /// Enable nested paging (NP_ENABLE).
        const NP_ENABLE = 1 << 0;
        /// Enable SEV.
        const SEV_ENABLE = 1 << 1;
        /// Enable SEV-ES (encrypted state).
        const SEV_ES_ENABLE = 1 << 2;
        /// Guest-mode execute trap (GMET).
        const GMET = 1 << 3;
        /// Supervisor shadow-stack check enable.
        const SSS_CHECK = 1 << 4;
        /// Virtual transparent encryption.
        const VTE = 1 << 5;
        /// Read-only guest page tables.
        const RO_GPT = 1 << 6;
        /// Allow INVLPGB/TLBSYNC in the guest.
        const INVLPGB_TLBSYNC = 1 << 7;
        const _ = !0;
    }
}

bitflags! {
    /// Virtualization extensions, VMCB offset 0x0B8 (APM vol. 2 §15.23, §15.33.1, Table B-1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VirtExt: u64 {
        /// LBR virtualization enable.
        const LBR_VIRT = 1 << 0;
        /// Virtualized VMSAVE/VMLOAD enable.
        const VIRT_VMSAVE_VMLOAD = 1 << 1;
        const _ = !0;
    }
}

bitflags! {
    /// VMCB clean bits, offset 0x0C0 (APM vol. 2 §15.15.3, Table 15-8). A set bit promises that
    /// the corresponding fields did not change since the last `VMRUN` of this VMCB on this CPU.
    /// Clear all of them (0) whenever in doubt; QEMU TCG ignores them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VmcbClean: u32 {
        /// Intercept vectors, TSC offset, pause filter.
        const I = 1 << 0;
        /// IOPM and MSRPM base addresses.
        const IOPM = 1 << 1;
        /// ASID.
        const ASID = 1 << 2;
        /// V_TPR, V_IRQ, V_INTR_PRIO, V_IGN_TPR, V_INTR_MASKING, V_INTR_VECTOR.
        const TPR = 1 << 3;
        /// NP_ENABLE, N_CR3, G_PAT.
        const NP = 1 << 4;
        /// CR0, CR3, CR4, EFER.
        const CRX = 1 << 5;
        /// DR6, DR7.
        const DRX = 1 << 6;
        /// GDTR, IDTR.
        const DT = 1 << 7;
        /// CS, DS, SS, ES, CPL.
        const SEG = 1 << 8;
        /// CR2.
        const CR2 = 1 << 9;
        /// DBGCTL, BR_FROM/TO, LASTEXCP_FROM/TO.
        const LBR = 1 << 10;
        /// AVIC backing page, logical and physical table pointers, APIC BAR.
        const AVIC = 1 << 11;
        /// S_CET, SSP, ISST_ADDR.
        const CET = 1 << 12;
        const _ = !0;
    }
}

/// TLB_CONTROL values, VMCB offset 0x05C (APM vol. 2 §15.16.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TlbControl {
    /// Do nothing.
    DoNothing = 0,
    /// Flush the entire TLB (all ASIDs, global entries too).
    FlushAll = 1,
    /// Flush this guest's ASID.
    FlushAsid = 3,
    /// Flush this guest's non-global entries.
    FlushAsidNonGlobal = 7,
}

impl Vmcb {
    /// Intercept word 3 as flags.
    pub const fn misc1(&self) -> InterceptMisc1 {
        InterceptMisc1::from_bits_retain(self.intercept_misc1)
    }

    /// Replace intercept word 3.
    pub fn set_misc1(&mut self, v: InterceptMisc1) {
        self.intercept_misc1 = v.bits();
    }

    /// Intercept word 4 as flags.
    pub const fn misc2(&self) -> InterceptMisc2 {
        InterceptMisc2::from_bits_retain(self.intercept_misc2)
    }

    /// Replace intercept word 4.
    pub fn set_misc2(&mut self, v: InterceptMisc2) {
        self.intercept_misc2 = v.bits();
    }

    /// Intercept word 5 as flags.
    pub const fn misc3(&self) -> InterceptMisc3 {
        InterceptMisc3::from_bits_retain(self.intercept_misc3)
    }

    /// Replace intercept word 5.
    pub fn set_misc3(&mut self, v: InterceptMisc3) {
        self.intercept_misc3 = v.bits();
    }

    /// Intercept (or stop intercepting) reads of control register `cr`.
    pub fn intercept_cr_read(&mut self, cr: u8, on: bool) {
        set_bit16(&mut self.intercept_cr_read, reg_bit(cr), on);
    }

    /// Intercept (or stop intercepting) writes of control register `cr`.
    pub fn intercept_cr_write(&mut self, cr: u8, on: bool) {
        set_bit16(&mut self.intercept_cr_write, reg_bit(cr), on);
    }

    /// Intercept (or stop intercepting) reads of debug register `dr`.
    pub fn intercept_dr_read(&mut self, dr: u8, on: bool) {
        set_bit16(&mut self.intercept_dr_read, reg_bit(dr), on);
    }

    /// Intercept (or stop intercepting) writes of debug register `dr`.
    pub fn intercept_dr_write(&mut self, dr: u8, on: bool) {
        set_bit16(&mut self.intercept_dr_write, reg_bit(dr), on);
    }

    /// Intercept (or stop intercepting) exception `vector` (0–31).
    pub fn intercept_exception(&mut self, vector: u8, on: bool) {
        let bit = exception_bit(vector);
        if on {
            self.intercept_exceptions |= bit;
        } else {
            self.intercept_exceptions &= !bit;
        }
    }

    /// Whether exception `vector` is intercepted.
    pub const fn exception_intercepted(&self, vector: u8) -> bool {
        let bit = exception_bit(vector);
        bit != 0 && self.intercept_exceptions & bit != 0
    }

    /// Virtual interrupt control as flags.
    pub const fn int_ctl(&self) -> IntCtl {
        IntCtl::from_bits_retain(self.int_ctl)
    }

    /// Replace the virtual interrupt control word.
    pub fn set_int_ctl(&mut self, v: IntCtl) {
        self.int_ctl = v.bits();
    }

    /// Interrupt state (shadow, guest IF) as flags.
    pub const fn int_state(&self) -> IntState {
        IntState::from_bits_retain(self.int_state)
    }

    /// Nested paging / SEV control as flags.
    pub const fn nested_control(&self) -> NestedControl {
        NestedControl::from_bits_retain(self.np_control)
    }

    /// Replace the nested paging / SEV control.
    pub fn set_nested_control(&mut self, v: NestedControl) {
        self.np_control = v.bits();
    }

    /// Set the TLB_CONTROL command for the next `VMRUN`.
    pub fn set_tlb_control(&mut self, v: TlbControl) {
        self.tlb_control = v as u8;
    }

    /// Clean bits as flags.
    pub const fn clean(&self) -> VmcbClean {
        VmcbClean::from_bits_retain(self.vmcb_clean)
    }

    /// Replace the clean bits.
    pub fn set_clean(&mut self, v: VmcbClean) {
        self.vmcb_clean = v.bits();
    }
}

fn set_bit16(word: &mut u16, bit: u16, on: bool) {
    if on {
        *word |= bit;
    } else {
        *word &= !bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misc1_bit_positions() {
        assert_eq!(InterceptMisc1::CPUID.bits(), 1 << 18);
        assert_eq!(InterceptMisc1::IOIO_PROT.bits(), 1 << 27);
        assert_eq!(InterceptMisc1::MSR_PROT.bits(), 1 << 28);
        assert_eq!(InterceptMisc1::SHUTDOWN.bits(), 1 << 31);
        assert_eq!(InterceptMisc1::HLT.bits(), 1 << 24);
    }

    #[test]
    fn misc2_bit_positions_and_cr_traps() {
        assert_eq!(InterceptMisc2::VMRUN.bits(), 1);
        assert_eq!(InterceptMisc2::XSETBV.bits(), 1 << 13);
        assert_eq!(InterceptMisc2::EFER_WRITE_TRAP.bits(), 1 << 15);
        assert_eq!(
            InterceptMisc2::cr_write_trap(0),
            InterceptMisc2::CR0_WRITE_TRAP
        );
        assert_eq!(
            InterceptMisc2::cr_write_trap(8),
            InterceptMisc2::CR8_WRITE_TRAP
        );
        assert_eq!(InterceptMisc2::cr_write_trap(15).bits(), 1 << 31);
        assert!(InterceptMisc2::cr_write_trap(16).is_empty());
    }

    #[test]
    fn reg_and_exception_bits() {
        assert_eq!(reg_bit(3), 0x8);
        assert_eq!(reg_bit(16), 0);
        assert_eq!(exception_bit(14), 1 << 14);
        assert_eq!(exception_bit(32), 0);
    }

    #[test]
    fn vmcb_intercept_helpers() {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.intercept_cr_write(8, true);
        v.intercept_cr_read(3, true);
        v.intercept_cr_read(3, false);
        assert_eq!(v.intercept_cr_write, 0x100);
        assert_eq!(v.intercept_cr_read, 0);
        v.intercept_exception(18, true); // #MC
        assert!(v.exception_intercepted(18));
        assert!(!v.exception_intercepted(14));
        assert!(!v.exception_intercepted(200));
        v.set_misc2(InterceptMisc2::VMRUN | InterceptMisc2::VMMCALL);
        assert_eq!(v.intercept_misc2, 0b11);
        v.set_misc1(InterceptMisc1::NMI | InterceptMisc1::CPUID);
        assert_eq!(v.misc1(), InterceptMisc1::NMI | InterceptMisc1::CPUID);
    }

    #[test]
    fn int_ctl_fields() {
        let c = IntCtl::V_INTR_MASKING
            .with_v_tpr(0x0F)
            .with_v_intr_prio(0x1C);
        assert_eq!(c.bits(), (1 << 24) | 0x0F | (0xC << 16));
        assert_eq!(c.v_tpr(), 0x0F);
        assert_eq!(c.v_intr_prio(), 0xC);
        assert_eq!(IntCtl::AVIC_ENABLE.bits(), 0x8000_0000);
        assert_eq!(IntCtl::X2AVIC_ENABLE.bits(), 0x4000_0000);
    }

    #[test]
    fn tlb_control_values() {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.set_tlb_control(TlbControl::FlushAsid);
        assert_eq!(v.tlb_control, 3);
        v.set_tlb_control(TlbControl::FlushAsidNonGlobal);
        assert_eq!(v.tlb_control, 7);
    }
}
