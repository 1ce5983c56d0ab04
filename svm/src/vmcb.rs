//! The Virtual Machine Control Block (APM vol. 2 §15.5, Appendix B).
//!
//! One 4 KiB, 4 KiB-aligned page: the *control area* (0x000–0x3FF, Appendix B Table B-1) tells the
//! processor what to intercept and how to run the guest and receives the exit information; the
//! *state save area* (0x400–, Appendix B Table B-2) holds the guest's registers. Every field is at
//! the byte offset the APM gives, written in its doc comment and asserted at compile time below.
//! Reserved ranges are named after their offset (`_reserved_XXX`) and must stay zero.
//!
//! Multi-bit fields are decoded by the types in [`crate::intercept`], [`crate::exit`] and
//! [`crate::event`]; the VMCB itself only stores raw integers, exactly as the hardware does.

use core::mem::{offset_of, size_of};

/// A segment register in the VMCB state save area (APM vol. 2 §15.5.1, Appendix B Table B-2).
///
/// `attrib` is the *packed* form of the descriptor attributes: bits 7:0 are descriptor byte 5
/// (type, S, DPL, P) and bits 11:8 are the high nibble of descriptor byte 6 (AVL, L, D/B, G);
/// see [`crate::segment`]. `limit` is the expanded byte-granular limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VmcbSegment {
    /// `+0x0` Selector.
    pub selector: u16,
    /// `+0x2` Packed attributes (12 bits used).
    pub attrib: u16,
    /// `+0x4` Segment limit in bytes (already scaled by G).
    pub limit: u32,
    /// `+0x8` Segment base.
    pub base: u64,
}

const _: () = assert!(size_of::<VmcbSegment>() == 16);
const _: () = assert!(offset_of!(VmcbSegment, selector) == 0x0);
const _: () = assert!(offset_of!(VmcbSegment, attrib) == 0x2);
const _: () = assert!(offset_of!(VmcbSegment, limit) == 0x4);
const _: () = assert!(offset_of!(VmcbSegment, base) == 0x8);

impl VmcbSegment {
    /// The null segment (all zero: not present, unusable).
    pub const NULL: Self = Self {
        selector: 0,
        attrib: 0,
        limit: 0,
        base: 0,
    };
}

/// The VMCB (APM vol. 2 Appendix B): control area and state save area in one page.
///
/// Construct it with [`Vmcb::new_zeroed`] (a `const fn`, usable for statics) and fill it field by
/// field. The processor reads and writes it by host-physical address (`VMRUN rax`), so it must
/// live in memory whose physical address the kernel knows; the type's alignment guarantees the
/// 4 KiB alignment `VMRUN` requires.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct Vmcb {
    // ---- Control area (App. B, Table B-1) ----
    /// `0x000` Intercept reads of CR0–CR15, bit n = CRn (§15.9). See [`crate::intercept`].
    pub intercept_cr_read: u16,
    /// `0x002` Intercept writes of CR0–CR15, bit n = CRn (§15.9).
    pub intercept_cr_write: u16,
    /// `0x004` Intercept reads of DR0–DR15, bit n = DRn (§15.12.2).
    pub intercept_dr_read: u16,
    /// `0x006` Intercept writes of DR0–DR15, bit n = DRn (§15.12.2).
    pub intercept_dr_write: u16,
    /// `0x008` Intercept exception vectors 0–31, bit n = vector n (§15.12).
    pub intercept_exceptions: u32,
    /// `0x00C` Instruction/event intercepts, word 3: [`crate::intercept::InterceptMisc1`].
    pub intercept_misc1: u32,
    /// `0x010` Instruction intercepts and CR write traps, word 4: [`crate::intercept::InterceptMisc2`].
    pub intercept_misc2: u32,
    /// `0x014` Instruction intercepts, word 5: [`crate::intercept::InterceptMisc3`].
    pub intercept_misc3: u32,
    /// `0x018` Reserved, should be zero.
    _reserved_018: [u8; 0x24],
    /// `0x03C` PAUSE filter threshold in cycles (§15.14.4).
    pub pause_filter_threshold: u16,
    /// `0x03E` PAUSE filter count (§15.14.4).
    pub pause_filter_count: u16,
    /// `0x040` Host-physical base of the I/O permission map, 4 KiB aligned, bits 11:0 ignored (§15.10.1).
    pub iopm_base_pa: u64,
    /// `0x048` Host-physical base of the MSR permission map, 4 KiB aligned, bits 11:0 ignored (§15.11).
    pub msrpm_base_pa: u64,
    /// `0x050` Added to the TSC while the guest runs (§15.30.5).
    pub tsc_offset: u64,
    /// `0x058` Guest ASID; 0 is the host's and makes `VMRUN` fail (§15.16).
    pub guest_asid: u32,
    /// `0x05C` TLB flush command for this `VMRUN`: [`crate::intercept::TlbControl`] (§15.16.1).
    pub tlb_control: u8,
    /// `0x05D` Reserved, should be zero.
    _reserved_05d: [u8; 3],
    /// `0x060` Virtual interrupt control, bits 31:0 of the quadword at 0x60: [`crate::intercept::IntCtl`] (§15.21, §15.29).
    pub int_ctl: u32,
    /// `0x064` Bits 63:32 of the quadword at 0x60: V_INTR_VECTOR in bits 7:0 (§15.21.1).
    pub int_vector: u32,
    /// `0x068` Bit 0 interrupt shadow, bit 1 guest interrupt mask: [`crate::intercept::IntState`] (§15.21.5).
    pub int_state: u64,
    /// `0x070` `#VMEXIT` code (App. C), decoded by [`crate::exit::ExitCode::from_raw`].
    pub exit_code: u64,
    /// `0x078` EXITINFO1, exit-specific (§15.6.2 and [`crate::exit`]).
    pub exit_info1: u64,
    /// `0x080` EXITINFO2, exit-specific (§15.6.2 and [`crate::exit`]).
    pub exit_info2: u64,
    /// `0x088` EXITINTINFO: the event being delivered when the exit happened (§15.7.2), see [`crate::event`].
    pub exit_int_info: u64,
    /// `0x090` Bit 0 NP_ENABLE and the SEV controls: [`crate::intercept::NestedControl`] (§15.25.3).
    pub np_control: u64,
    /// `0x098` AVIC: guest-physical APIC base address, bits 51:12 (§15.29.3).
    pub avic_apic_bar: u64,
    /// `0x0A0` Guest-physical address of the GHCB (SEV-ES, §15.35).
    pub ghcb_gpa: u64,
    /// `0x0A8` EVENTINJ: event to inject on `VMRUN` (§15.20), see [`crate::event::EventInj`].
    pub event_inj: u64,
    /// `0x0B0` Nested page table root (host-physical PML4) (§15.25.4).
    pub n_cr3: u64,
    /// `0x0B8` Bit 0 LBR virtualization, bit 1 virtual VMSAVE/VMLOAD: [`crate::intercept::VirtExt`].
    pub virt_ext: u64,
    /// `0x0C0` VMCB clean bits (§15.15): [`crate::intercept::VmcbClean`].
    pub vmcb_clean: u32,
    /// `0x0C4` Reserved, should be zero.
    _reserved_0c4: u32,
    /// `0x0C8` nRIP: RIP of the next instruction, written on some exits when NRIPS is supported (§15.7.1). QEMU TCG never writes it.
    pub next_rip: u64,
    /// `0x0D0` Decode assists: number of instruction bytes fetched (§15.33.4).
    pub insn_len: u8,
    /// `0x0D1` Decode assists: the guest instruction bytes (§15.33.4).
    pub insn_bytes: [u8; 15],
    /// `0x0E0` AVIC: host-physical vAPIC backing page, bits 51:12 (§15.29.3).
    pub avic_backing_page: u64,
    /// `0x0E8` Reserved, should be zero.
    _reserved_0e8: u64,
    /// `0x0F0` AVIC: host-physical logical APIC-ID table, bits 51:12 (§15.29.3).
    pub avic_logical_table: u64,
    /// `0x0F8` AVIC: host-physical physical APIC-ID table, bits 51:12, max index in bits 7:0 (x2AVIC 8:0) (§15.29.3).
    pub avic_physical_table: u64,
    /// `0x100` Reserved, should be zero.
    _reserved_100: u64,
    /// `0x108` SEV-ES: host-physical VM save area, bits 51:12 (§15.35).
    pub vmsa_pa: u64,
    /// `0x110` Reserved (later SEV/VMGEXIT/bus-lock fields not used by didvisor), should be zero.
    _reserved_110: [u8; 0x2D0],
    /// `0x3E0` Reserved for host software; the processor does not use it.
    pub software: [u8; 0x20],
    // ---- State save area (App. B, Table B-2; offsets relative to the VMCB start) ----
    /// `0x400` ES.
    pub es: VmcbSegment,
    /// `0x410` CS.
    pub cs: VmcbSegment,
    /// `0x420` SS.
    pub ss: VmcbSegment,
    /// `0x430` DS.
    pub ds: VmcbSegment,
    /// `0x440` FS (the base is the FS_BASE MSR).
    pub fs: VmcbSegment,
    /// `0x450` GS (the base is the GS_BASE MSR).
    pub gs: VmcbSegment,
    /// `0x460` GDTR (only limit and base are used).
    pub gdtr: VmcbSegment,
    /// `0x470` LDTR.
    pub ldtr: VmcbSegment,
    /// `0x480` IDTR (only limit and base are used).
    pub idtr: VmcbSegment,
    /// `0x490` TR.
    pub tr: VmcbSegment,
    /// `0x4A0` Reserved.
    _reserved_4a0: [u8; 0x2A],
    /// `0x4CA` SEV-SNP VMPL.
    pub vmpl: u8,
    /// `0x4CB` Current privilege level; must equal SS.DPL (§15.5.1).
    pub cpl: u8,
    /// `0x4CC` Reserved.
    _reserved_4cc: u32,
    /// `0x4D0` Guest EFER; SVME must be set or `VMRUN` fails (§15.5.1).
    pub efer: u64,
    /// `0x4D8` Reserved (and PMC virtualization state on newer parts).
    _reserved_4d8: [u8; 0x70],
    /// `0x548` Guest CR4.
    pub cr4: u64,
    /// `0x550` Guest CR3.
    pub cr3: u64,
    /// `0x558` Guest CR0.
    pub cr0: u64,
    /// `0x560` Guest DR7.
    pub dr7: u64,
    /// `0x568` Guest DR6.
    pub dr6: u64,
    /// `0x570` Guest RFLAGS.
    pub rflags: u64,
    /// `0x578` Guest RIP.
    pub rip: u64,
    /// `0x580` Reserved.
    _reserved_580: [u8; 0x58],
    /// `0x5D8` Guest RSP.
    pub rsp: u64,
    /// `0x5E0` Guest S_CET MSR (shadow stacks).
    pub s_cet: u64,
    /// `0x5E8` Guest shadow-stack pointer.
    pub ssp: u64,
    /// `0x5F0` Guest ISST_ADDR MSR.
    pub isst_addr: u64,
    /// `0x5F8` Guest RAX (the only general-purpose register besides RSP in the VMCB).
    pub rax: u64,
    /// `0x600` Guest STAR MSR (saved/loaded by VMSAVE/VMLOAD).
    pub star: u64,
    /// `0x608` Guest LSTAR MSR (VMSAVE/VMLOAD).
    pub lstar: u64,
    /// `0x610` Guest CSTAR MSR (VMSAVE/VMLOAD).
    pub cstar: u64,
    /// `0x618` Guest SFMASK MSR (VMSAVE/VMLOAD).
    pub sfmask: u64,
    /// `0x620` Guest KernelGsBase MSR (VMSAVE/VMLOAD).
    pub kernel_gs_base: u64,
    /// `0x628` Guest SYSENTER_CS MSR (VMSAVE/VMLOAD).
    pub sysenter_cs: u64,
    /// `0x630` Guest SYSENTER_ESP MSR (VMSAVE/VMLOAD).
    pub sysenter_esp: u64,
    /// `0x638` Guest SYSENTER_EIP MSR (VMSAVE/VMLOAD).
    pub sysenter_eip: u64,
    /// `0x640` Guest CR2.
    pub cr2: u64,
    /// `0x648` Reserved.
    _reserved_648: [u8; 0x20],
    /// `0x668` Guest PAT, used for nested paging (§15.25.8).
    pub g_pat: u64,
    /// `0x670` Guest DBGCTL MSR (LBR virtualization).
    pub dbgctl: u64,
    /// `0x678` Guest BR_FROM MSR (LBR virtualization).
    pub br_from: u64,
    /// `0x680` Guest BR_TO MSR (LBR virtualization).
    pub br_to: u64,
    /// `0x688` Guest LASTEXCPFROM MSR (LBR virtualization).
    pub last_excp_from: u64,
    /// `0x690` Guest LASTEXCPTO MSR (LBR virtualization).
    pub last_excp_to: u64,
    /// `0x698` Reserved.
    _reserved_698: [u8; 0x48],
    /// `0x6E0` Guest SPEC_CTRL MSR (when CPUID 8000_000A EDX\[20\] is set).
    pub spec_ctrl: u64,
    /// `0x6E8` Reserved up to the end of the 4 KiB page.
    _reserved_6e8: [u8; 0x918],
}

const _: () = assert!(size_of::<Vmcb>() == 4096);
const _: () = assert!(core::mem::align_of::<Vmcb>() == 4096);
const _: () = assert!(offset_of!(Vmcb, intercept_cr_read) == 0x000);
const _: () = assert!(offset_of!(Vmcb, intercept_cr_write) == 0x002);
const _: () = assert!(offset_of!(Vmcb, intercept_dr_read) == 0x004);
const _: () = assert!(offset_of!(Vmcb, intercept_dr_write) == 0x006);
const _: () = assert!(offset_of!(Vmcb, intercept_exceptions) == 0x008);
const _: () = assert!(offset_of!(Vmcb, intercept_misc1) == 0x00C);
const _: () = assert!(offset_of!(Vmcb, intercept_misc2) == 0x010);
const _: () = assert!(offset_of!(Vmcb, intercept_misc3) == 0x014);
const _: () = assert!(offset_of!(Vmcb, _reserved_018) == 0x018);
const _: () = assert!(offset_of!(Vmcb, pause_filter_threshold) == 0x03C);
const _: () = assert!(offset_of!(Vmcb, pause_filter_count) == 0x03E);
const _: () = assert!(offset_of!(Vmcb, iopm_base_pa) == 0x040);
const _: () = assert!(offset_of!(Vmcb, msrpm_base_pa) == 0x048);
const _: () = assert!(offset_of!(Vmcb, tsc_offset) == 0x050);
const _: () = assert!(offset_of!(Vmcb, guest_asid) == 0x058);
const _: () = assert!(offset_of!(Vmcb, tlb_control) == 0x05C);
const _: () = assert!(offset_of!(Vmcb, _reserved_05d) == 0x05D);
const _: () = assert!(offset_of!(Vmcb, int_ctl) == 0x060);
const _: () = assert!(offset_of!(Vmcb, int_vector) == 0x064);
const _: () = assert!(offset_of!(Vmcb, int_state) == 0x068);
const _: () = assert!(offset_of!(Vmcb, exit_code) == 0x070);
const _: () = assert!(offset_of!(Vmcb, exit_info1) == 0x078);
const _: () = assert!(offset_of!(Vmcb, exit_info2) == 0x080);
const _: () = assert!(offset_of!(Vmcb, exit_int_info) == 0x088);
const _: () = assert!(offset_of!(Vmcb, np_control) == 0x090);
const _: () = assert!(offset_of!(Vmcb, avic_apic_bar) == 0x098);
const _: () = assert!(offset_of!(Vmcb, ghcb_gpa) == 0x0A0);
const _: () = assert!(offset_of!(Vmcb, event_inj) == 0x0A8);
const _: () = assert!(offset_of!(Vmcb, n_cr3) == 0x0B0);
const _: () = assert!(offset_of!(Vmcb, virt_ext) == 0x0B8);
const _: () = assert!(offset_of!(Vmcb, vmcb_clean) == 0x0C0);
const _: () = assert!(offset_of!(Vmcb, _reserved_0c4) == 0x0C4);
const _: () = assert!(offset_of!(Vmcb, next_rip) == 0x0C8);
const _: () = assert!(offset_of!(Vmcb, insn_len) == 0x0D0);
const _: () = assert!(offset_of!(Vmcb, insn_bytes) == 0x0D1);
const _: () = assert!(offset_of!(Vmcb, avic_backing_page) == 0x0E0);
const _: () = assert!(offset_of!(Vmcb, _reserved_0e8) == 0x0E8);
const _: () = assert!(offset_of!(Vmcb, avic_logical_table) == 0x0F0);
const _: () = assert!(offset_of!(Vmcb, avic_physical_table) == 0x0F8);
const _: () = assert!(offset_of!(Vmcb, _reserved_100) == 0x100);
const _: () = assert!(offset_of!(Vmcb, vmsa_pa) == 0x108);
const _: () = assert!(offset_of!(Vmcb, _reserved_110) == 0x110);
const _: () = assert!(offset_of!(Vmcb, software) == 0x3E0);
const _: () = assert!(offset_of!(Vmcb, es) == 0x400);
const _: () = assert!(offset_of!(Vmcb, cs) == 0x410);
const _: () = assert!(offset_of!(Vmcb, ss) == 0x420);
const _: () = assert!(offset_of!(Vmcb, ds) == 0x430);
const _: () = assert!(offset_of!(Vmcb, fs) == 0x440);
const _: () = assert!(offset_of!(Vmcb, gs) == 0x450);
const _: () = assert!(offset_of!(Vmcb, gdtr) == 0x460);
const _: () = assert!(offset_of!(Vmcb, ldtr) == 0x470);
const _: () = assert!(offset_of!(Vmcb, idtr) == 0x480);
const _: () = assert!(offset_of!(Vmcb, tr) == 0x490);
const _: () = assert!(offset_of!(Vmcb, _reserved_4a0) == 0x4A0);
const _: () = assert!(offset_of!(Vmcb, vmpl) == 0x4CA);
const _: () = assert!(offset_of!(Vmcb, cpl) == 0x4CB);
const _: () = assert!(offset_of!(Vmcb, _reserved_4cc) == 0x4CC);
const _: () = assert!(offset_of!(Vmcb, efer) == 0x4D0);
const _: () = assert!(offset_of!(Vmcb, _reserved_4d8) == 0x4D8);
const _: () = assert!(offset_of!(Vmcb, cr4) == 0x548);
const _: () = assert!(offset_of!(Vmcb, cr3) == 0x550);
const _: () = assert!(offset_of!(Vmcb, cr0) == 0x558);
const _: () = assert!(offset_of!(Vmcb, dr7) == 0x560);
const _: () = assert!(offset_of!(Vmcb, dr6) == 0x568);
const _: () = assert!(offset_of!(Vmcb, rflags) == 0x570);
const _: () = assert!(offset_of!(Vmcb, rip) == 0x578);
const _: () = assert!(offset_of!(Vmcb, _reserved_580) == 0x580);
const _: () = assert!(offset_of!(Vmcb, rsp) == 0x5D8);
const _: () = assert!(offset_of!(Vmcb, s_cet) == 0x5E0);
const _: () = assert!(offset_of!(Vmcb, ssp) == 0x5E8);
const _: () = assert!(offset_of!(Vmcb, isst_addr) == 0x5F0);
const _: () = assert!(offset_of!(Vmcb, rax) == 0x5F8);
const _: () = assert!(offset_of!(Vmcb, star) == 0x600);
const _: () = assert!(offset_of!(Vmcb, lstar) == 0x608);
const _: () = assert!(offset_of!(Vmcb, cstar) == 0x610);
const _: () = assert!(offset_of!(Vmcb, sfmask) == 0x618);
const _: () = assert!(offset_of!(Vmcb, kernel_gs_base) == 0x620);
const _: () = assert!(offset_of!(Vmcb, sysenter_cs) == 0x628);
const _: () = assert!(offset_of!(Vmcb, sysenter_esp) == 0x630);
const _: () = assert!(offset_of!(Vmcb, sysenter_eip) == 0x638);
const _: () = assert!(offset_of!(Vmcb, cr2) == 0x640);
const _: () = assert!(offset_of!(Vmcb, _reserved_648) == 0x648);
const _: () = assert!(offset_of!(Vmcb, g_pat) == 0x668);
const _: () = assert!(offset_of!(Vmcb, dbgctl) == 0x670);
const _: () = assert!(offset_of!(Vmcb, br_from) == 0x678);
const _: () = assert!(offset_of!(Vmcb, br_to) == 0x680);
const _: () = assert!(offset_of!(Vmcb, last_excp_from) == 0x688);
const _: () = assert!(offset_of!(Vmcb, last_excp_to) == 0x690);
const _: () = assert!(offset_of!(Vmcb, _reserved_698) == 0x698);
const _: () = assert!(offset_of!(Vmcb, spec_ctrl) == 0x6E0);
const _: () = assert!(offset_of!(Vmcb, _reserved_6e8) == 0x6E8);

impl Vmcb {
    /// Offset of the state save area within the VMCB.
    pub const SAVE_AREA_OFFSET: usize = 0x400;

    /// A VMCB with every byte zero: nothing intercepted, ASID 0 (invalid until set), all guest
    /// state zero. Usable in `static` initialisers.
    pub const fn new_zeroed() -> Self {
        Self {
            intercept_cr_read: 0,
            intercept_cr_write: 0,
            intercept_dr_read: 0,
            intercept_dr_write: 0,
            intercept_exceptions: 0,
            intercept_misc1: 0,
            intercept_misc2: 0,
            intercept_misc3: 0,
            _reserved_018: [0; 0x24],
            pause_filter_threshold: 0,
            pause_filter_count: 0,
            iopm_base_pa: 0,
            msrpm_base_pa: 0,
            tsc_offset: 0,
            guest_asid: 0,
            tlb_control: 0,
            _reserved_05d: [0; 3],
            int_ctl: 0,
            int_vector: 0,
            int_state: 0,
            exit_code: 0,
            exit_info1: 0,
            exit_info2: 0,
            exit_int_info: 0,
            np_control: 0,
            avic_apic_bar: 0,
            ghcb_gpa: 0,
            event_inj: 0,
            n_cr3: 0,
            virt_ext: 0,
            vmcb_clean: 0,
            _reserved_0c4: 0,
            next_rip: 0,
            insn_len: 0,
            insn_bytes: [0; 15],
            avic_backing_page: 0,
            _reserved_0e8: 0,
            avic_logical_table: 0,
            avic_physical_table: 0,
            _reserved_100: 0,
            vmsa_pa: 0,
            _reserved_110: [0; 0x2D0],
            software: [0; 0x20],
            es: VmcbSegment::NULL,
            cs: VmcbSegment::NULL,
            ss: VmcbSegment::NULL,
            ds: VmcbSegment::NULL,
            fs: VmcbSegment::NULL,
            gs: VmcbSegment::NULL,
            gdtr: VmcbSegment::NULL,
            ldtr: VmcbSegment::NULL,
            idtr: VmcbSegment::NULL,
            tr: VmcbSegment::NULL,
            _reserved_4a0: [0; 0x2A],
            vmpl: 0,
            cpl: 0,
            _reserved_4cc: 0,
            efer: 0,
            _reserved_4d8: [0; 0x70],
            cr4: 0,
            cr3: 0,
            cr0: 0,
            dr7: 0,
            dr6: 0,
            rflags: 0,
            rip: 0,
            _reserved_580: [0; 0x58],
            rsp: 0,
            s_cet: 0,
            ssp: 0,
            isst_addr: 0,
            rax: 0,
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            cr2: 0,
            _reserved_648: [0; 0x20],
            g_pat: 0,
            dbgctl: 0,
            br_from: 0,
            br_to: 0,
            last_excp_from: 0,
            last_excp_to: 0,
            _reserved_698: [0; 0x48],
            spec_ctrl: 0,
            _reserved_6e8: [0; 0x918],
        }
    }

    /// Zero the whole VMCB in place (for reusing a VMCB frame without a 4 KiB stack temporary).
    pub fn clear(&mut self) {
        *self = Self::new_zeroed();
    }
}

impl Default for Vmcb {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_vmcb_is_zero_and_page_sized() {
        let v = Box::new(Vmcb::new_zeroed());
        assert_eq!(size_of::<Vmcb>(), 4096);
        assert_eq!((&*v as *const Vmcb as usize) % 4096, 0);
        assert_eq!(v.exit_code, 0);
        assert_eq!(v.tr, VmcbSegment::NULL);
        assert!(v._reserved_6e8.iter().all(|&b| b == 0));
    }

    #[test]
    fn clear_resets_fields() {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.rip = 0x1234;
        v.guest_asid = 1;
        v.clear();
        assert_eq!(v.rip, 0);
        assert_eq!(v.guest_asid, 0);
    }

    #[test]
    fn headline_offsets_from_the_brief() {
        // Spot-check the offsets the kernel will rely on, independent of the compile-time list.
        assert_eq!(offset_of!(Vmcb, iopm_base_pa), 0x40);
        assert_eq!(offset_of!(Vmcb, exit_code), 0x70);
        assert_eq!(offset_of!(Vmcb, n_cr3), 0xB0);
        assert_eq!(offset_of!(Vmcb, cpl), 0x4CB);
        assert_eq!(offset_of!(Vmcb, rax), 0x5F8);
        assert_eq!(offset_of!(Vmcb, g_pat), 0x668);
    }
}
