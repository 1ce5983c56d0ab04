//! `#VMEXIT` codes (APM vol. 2 Appendix C) and the decoding of EXITINFO1/EXITINFO2
//! (§15.6.2, §15.10.2, §15.11, §15.25.6).
//!
//! [`ExitCode`] is the decoded exit reason. For statistics, every exit reason has a dense
//! [`ExitCode::index`] below [`ExitCode::COUNT`] and a short [`ExitCode::name`], so a per-vCPU
//! counter table is a plain `[u64; ExitCode::COUNT]`.

use bitflags::bitflags;

use crate::addr::Gpa;
use crate::vmcb::Vmcb;

/// A decoded `#VMEXIT` code (APM vol. 2 Appendix C, Table C-1).
///
/// Ranged codes carry the register or vector number. Codes this crate does not know become
/// [`ExitCode::Unknown`] with the raw value, so decoding never fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// `0x00–0x0F` Read of CRn (n in the payload). EXITINFO1 bit 63 and bits 3:0 with decode
    /// assists: see [`mov_cr_gpr`]. QEMU TCG reports CR3/CR4/CR8 reads as CR0 (code 0).
    CrRead(u8),
    /// `0x10–0x1F` Write of CRn.
    CrWrite(u8),
    /// `0x20–0x2F` Read of DRn.
    DrRead(u8),
    /// `0x30–0x3F` Write of DRn.
    DrWrite(u8),
    /// `0x40–0x5F` Exception with the given vector. For #PF, EXITINFO1 is the error code and
    /// EXITINFO2 the faulting linear address; for other exceptions with an error code, EXITINFO1
    /// holds it.
    Exception(u8),
    /// `0x60` Physical maskable interrupt (INTR).
    Intr,
    /// `0x61` Physical NMI.
    Nmi,
    /// `0x62` SMI.
    Smi,
    /// `0x63` INIT.
    Init,
    /// `0x64` Virtual interrupt became deliverable (V_IRQ taken).
    Vintr,
    /// `0x65` Write of CR0 changing bits other than TS/MP.
    Cr0SelWrite,
    /// `0x66` SIDT.
    IdtrRead,
    /// `0x67` SGDT.
    GdtrRead,
    /// `0x68` SLDT.
    LdtrRead,
    /// `0x69` STR.
    TrRead,
    /// `0x6a` LIDT.
    IdtrWrite,
    /// `0x6b` LGDT.
    GdtrWrite,
    /// `0x6c` LLDT.
    LdtrWrite,
    /// `0x6d` LTR.
    TrWrite,
    /// `0x6e` RDTSC.
    Rdtsc,
    /// `0x6f` RDPMC.
    Rdpmc,
    /// `0x70` PUSHF.
    Pushf,
    /// `0x71` POPF.
    Popf,
    /// `0x72` CPUID.
    Cpuid,
    /// `0x73` RSM.
    Rsm,
    /// `0x74` IRET.
    Iret,
    /// `0x75` Software interrupt INTn.
    Swint,
    /// `0x76` INVD.
    Invd,
    /// `0x77` PAUSE.
    Pause,
    /// `0x78` HLT.
    Hlt,
    /// `0x79` INVLPG (EXITINFO1 = linear address with decode assists).
    Invlpg,
    /// `0x7a` INVLPGA.
    Invlpga,
    /// `0x7b` IN/OUT/INS/OUTS: decode with [`IoioExit::decode`].
    Ioio,
    /// `0x7c` RDMSR/WRMSR: EXITINFO1 decoded by [`MsrAccess::from_exit_info1`].
    Msr,
    /// `0x7d` Task switch.
    TaskSwitch,
    /// `0x7e` FERR_FREEZE.
    FerrFreeze,
    /// `0x7f` Shutdown (e.g. triple fault).
    Shutdown,
    /// `0x80` VMRUN.
    Vmrun,
    /// `0x81` VMMCALL (hypercall).
    Vmmcall,
    /// `0x82` VMLOAD.
    Vmload,
    /// `0x83` VMSAVE.
    Vmsave,
    /// `0x84` STGI.
    Stgi,
    /// `0x85` CLGI.
    Clgi,
    /// `0x86` SKINIT.
    Skinit,
    /// `0x87` RDTSCP.
    Rdtscp,
    /// `0x88` ICEBP (INT1).
    Icebp,
    /// `0x89` WBINVD / WBNOINVD.
    Wbinvd,
    /// `0x8a` MONITOR / MONITORX.
    Monitor,
    /// `0x8b` MWAIT / MWAITX (unconditional).
    Mwait,
    /// `0x8c` MWAIT / MWAITX with the monitor armed.
    MwaitCond,
    /// `0x8d` XSETBV.
    Xsetbv,
    /// `0x8e` RDPRU.
    Rdpru,
    /// `0x8f` After a write of EFER (EXITINFO1 = new value).
    EferWriteTrap,
    /// `0xa0` INVLPGB.
    Invlpgb,
    /// `0xa1` Illegally specified INVLPGB.
    InvlpgbIllegal,
    /// `0xa2` INVPCID.
    Invpcid,
    /// `0xa3` MCOMMIT.
    Mcommit,
    /// `0xa4` TLBSYNC.
    Tlbsync,
    /// `0xa5` Bus lock threshold reached.
    Buslock,
    /// `0xa6` HLT with no virtual interrupt pending.
    IdleHlt,
    /// `0x90–0x9F` Trap after a write of CRn (EXITINFO1 = new value).
    CrWriteTrap(u8),
    /// `0x400` Nested page fault: decode with [`NpfExit::decode`] (§15.25.6).
    Npf,
    /// `0x401` AVIC could not complete an IPI (§15.29.9; decoded by the `avic` crate).
    AvicIncompleteIpi,
    /// `0x402` AVIC: access to an APIC register that is not accelerated (§15.29.9).
    AvicNoAccel,
    /// `0x403` SEV-ES VMGEXIT.
    Vmgexit,
    /// `-1` `VMEXIT_INVALID`: `VMRUN` found illegal guest state (§15.5.1). QEMU reports it
    /// zero-extended from 32 bits, `0x0000_0000_FFFF_FFFF`; both decode to this variant.
    Invalid,
    /// `-2` `VMEXIT_BUSY` (SEV-SNP: the VMSA was in use).
    Busy,
    /// Any other value, kept raw.
    Unknown(u64),
}

impl ExitCode {
    /// `VMEXIT_INVALID` as the APM defines it (-1).
    pub const RAW_INVALID: u64 = u64::MAX;
    /// `VMEXIT_INVALID` as QEMU TCG reports it (-1 truncated to 32 bits, zero-extended).
    pub const RAW_INVALID_QEMU: u64 = 0x0000_0000_FFFF_FFFF;
    /// `VMEXIT_BUSY` (-2).
    pub const RAW_BUSY: u64 = u64::MAX - 1;
    /// Number of dense indices ([`ExitCode::index`] is always below this).
    pub const COUNT: usize = 0xAE;

    /// Decode the VMCB EXITCODE field.
    pub const fn from_raw(raw: u64) -> Self {
        match raw {
            0x00..=0x0F => Self::CrRead(raw as u8),
            0x10..=0x1F => Self::CrWrite((raw - 0x10) as u8),
            0x20..=0x2F => Self::DrRead((raw - 0x20) as u8),
            0x30..=0x3F => Self::DrWrite((raw - 0x30) as u8),
            0x40..=0x5F => Self::Exception((raw - 0x40) as u8),
            0x60 => Self::Intr,
            0x61 => Self::Nmi,
            0x62 => Self::Smi,
            0x63 => Self::Init,
            0x64 => Self::Vintr,
            0x65 => Self::Cr0SelWrite,
            0x66 => Self::IdtrRead,
            0x67 => Self::GdtrRead,
            0x68 => Self::LdtrRead,
            0x69 => Self::TrRead,
            0x6a => Self::IdtrWrite,
            0x6b => Self::GdtrWrite,
            0x6c => Self::LdtrWrite,
            0x6d => Self::TrWrite,
            0x6e => Self::Rdtsc,
            0x6f => Self::Rdpmc,
            0x70 => Self::Pushf,
            0x71 => Self::Popf,
            0x72 => Self::Cpuid,
            0x73 => Self::Rsm,
            0x74 => Self::Iret,
            0x75 => Self::Swint,
            0x76 => Self::Invd,
            0x77 => Self::Pause,
            0x78 => Self::Hlt,
            0x79 => Self::Invlpg,
            0x7a => Self::Invlpga,
            0x7b => Self::Ioio,
            0x7c => Self::Msr,
            0x7d => Self::TaskSwitch,
            0x7e => Self::FerrFreeze,
            0x7f => Self::Shutdown,
            0x80 => Self::Vmrun,
            0x81 => Self::Vmmcall,
            0x82 => Self::Vmload,
            0x83 => Self::Vmsave,
            0x84 => Self::Stgi,
            0x85 => Self::Clgi,
            0x86 => Self::Skinit,
            0x87 => Self::Rdtscp,
            0x88 => Self::Icebp,
            0x89 => Self::Wbinvd,
            0x8a => Self::Monitor,
            0x8b => Self::Mwait,
            0x8c => Self::MwaitCond,
            0x8d => Self::Xsetbv,
            0x8e => Self::Rdpru,
            0x8f => Self::EferWriteTrap,
            0xa0 => Self::Invlpgb,
            0xa1 => Self::InvlpgbIllegal,
            0xa2 => Self::Invpcid,
            0xa3 => Self::Mcommit,
            0xa4 => Self::Tlbsync,
            0xa5 => Self::Buslock,
            0xa6 => Self::IdleHlt,
            0x90..=0x9F => Self::CrWriteTrap((raw - 0x90) as u8),
            0x400 => Self::Npf,
            0x401 => Self::AvicIncompleteIpi,
            0x402 => Self::AvicNoAccel,
            0x403 => Self::Vmgexit,
            Self::RAW_INVALID | Self::RAW_INVALID_QEMU => Self::Invalid,
            Self::RAW_BUSY => Self::Busy,
            _ => Self::Unknown(raw),
        }
    }

    /// The architectural raw value (for `Invalid`, the APM's -1, not QEMU's form).
    /// Payloads out of range are masked into their range.
    pub const fn raw(self) -> u64 {
        match self {
            Self::CrRead(n) => (n & 0xF) as u64,
            Self::CrWrite(n) => 0x10 + (n & 0xF) as u64,
            Self::DrRead(n) => 0x20 + (n & 0xF) as u64,
            Self::DrWrite(n) => 0x30 + (n & 0xF) as u64,
            Self::Exception(v) => 0x40 + (v & 0x1F) as u64,
            Self::Intr => 0x60,
            Self::Nmi => 0x61,
            Self::Smi => 0x62,
            Self::Init => 0x63,
            Self::Vintr => 0x64,
            Self::Cr0SelWrite => 0x65,
            Self::IdtrRead => 0x66,
            Self::GdtrRead => 0x67,
            Self::LdtrRead => 0x68,
            Self::TrRead => 0x69,
            Self::IdtrWrite => 0x6a,
            Self::GdtrWrite => 0x6b,
            Self::LdtrWrite => 0x6c,
            Self::TrWrite => 0x6d,
            Self::Rdtsc => 0x6e,
            Self::Rdpmc => 0x6f,
            Self::Pushf => 0x70,
            Self::Popf => 0x71,
            Self::Cpuid => 0x72,
            Self::Rsm => 0x73,
            Self::Iret => 0x74,
            Self::Swint => 0x75,
            Self::Invd => 0x76,
            Self::Pause => 0x77,
            Self::Hlt => 0x78,
            Self::Invlpg => 0x79,
            Self::Invlpga => 0x7a,
            Self::Ioio => 0x7b,
            Self::Msr => 0x7c,
            Self::TaskSwitch => 0x7d,
            Self::FerrFreeze => 0x7e,
            Self::Shutdown => 0x7f,
            Self::Vmrun => 0x80,
            Self::Vmmcall => 0x81,
            Self::Vmload => 0x82,
            Self::Vmsave => 0x83,
            Self::Stgi => 0x84,
            Self::Clgi => 0x85,
            Self::Skinit => 0x86,
            Self::Rdtscp => 0x87,
            Self::Icebp => 0x88,
            Self::Wbinvd => 0x89,
            Self::Monitor => 0x8a,
            Self::Mwait => 0x8b,
            Self::MwaitCond => 0x8c,
            Self::Xsetbv => 0x8d,
            Self::Rdpru => 0x8e,
            Self::EferWriteTrap => 0x8f,
            Self::Invlpgb => 0xa0,
            Self::InvlpgbIllegal => 0xa1,
            Self::Invpcid => 0xa2,
            Self::Mcommit => 0xa3,
            Self::Tlbsync => 0xa4,
            Self::Buslock => 0xa5,
            Self::IdleHlt => 0xa6,
            Self::CrWriteTrap(n) => 0x90 + (n & 0xF) as u64,
            Self::Npf => 0x400,
            Self::AvicIncompleteIpi => 0x401,
            Self::AvicNoAccel => 0x402,
            Self::Vmgexit => 0x403,
            Self::Invalid => Self::RAW_INVALID,
            Self::Busy => Self::RAW_BUSY,
            Self::Unknown(raw) => raw,
        }
    }

    /// A dense index below [`ExitCode::COUNT`], for counter tables: the raw code for codes
    /// 0x00–0xA6 (that range is contiguous), then NPF, the AVIC exits, VMGEXIT, INVALID, BUSY,
    /// and one shared slot for all unknown codes.
    pub const fn index(self) -> usize {
        match self {
            Self::Npf => 0xA7,
            Self::AvicIncompleteIpi => 0xA8,
            Self::AvicNoAccel => 0xA9,
            Self::Vmgexit => 0xAA,
            Self::Invalid => 0xAB,
            Self::Busy => 0xAC,
            Self::Unknown(_) => 0xAD,
            other => other.raw() as usize,
        }
    }

    /// Short lower-case name for statistics tables (e.g. `"ioio"`, `"exc_pf"`, `"cr8_write"`).
    pub const fn name(self) -> &'static str {
        NAMES[self.index()]
    }

    /// The name belonging to a dense index, or `"?"` when out of range.
    pub const fn index_name(index: usize) -> &'static str {
        if index < Self::COUNT {
            NAMES[index]
        } else {
            "?"
        }
    }
}

/// Statistics name of every dense index (see [`ExitCode::index`]).
pub static NAMES: [&str; ExitCode::COUNT] = [
    "cr0_read",
    "cr1_read",
    "cr2_read",
    "cr3_read",
    "cr4_read",
    "cr5_read",
    "cr6_read",
    "cr7_read",
    "cr8_read",
    "cr9_read",
    "cr10_read",
    "cr11_read",
    "cr12_read",
    "cr13_read",
    "cr14_read",
    "cr15_read",
    "cr0_write",
    "cr1_write",
    "cr2_write",
    "cr3_write",
    "cr4_write",
    "cr5_write",
    "cr6_write",
    "cr7_write",
    "cr8_write",
    "cr9_write",
    "cr10_write",
    "cr11_write",
    "cr12_write",
    "cr13_write",
    "cr14_write",
    "cr15_write",
    "dr0_read",
    "dr1_read",
    "dr2_read",
    "dr3_read",
    "dr4_read",
    "dr5_read",
    "dr6_read",
    "dr7_read",
    "dr8_read",
    "dr9_read",
    "dr10_read",
    "dr11_read",
    "dr12_read",
    "dr13_read",
    "dr14_read",
    "dr15_read",
    "dr0_write",
    "dr1_write",
    "dr2_write",
    "dr3_write",
    "dr4_write",
    "dr5_write",
    "dr6_write",
    "dr7_write",
    "dr8_write",
    "dr9_write",
    "dr10_write",
    "dr11_write",
    "dr12_write",
    "dr13_write",
    "dr14_write",
    "dr15_write",
    "exc_de",
    "exc_db",
    "exc_nmi",
    "exc_bp",
    "exc_of",
    "exc_br",
    "exc_ud",
    "exc_nm",
    "exc_df",
    "exc_cso",
    "exc_ts",
    "exc_np",
    "exc_ss",
    "exc_gp",
    "exc_pf",
    "exc_res15",
    "exc_mf",
    "exc_ac",
    "exc_mc",
    "exc_xm",
    "exc_ve",
    "exc_cp",
    "exc_res22",
    "exc_res23",
    "exc_res24",
    "exc_res25",
    "exc_res26",
    "exc_res27",
    "exc_hv",
    "exc_vc",
    "exc_sx",
    "exc_res31",
    "intr",
    "nmi",
    "smi",
    "init",
    "vintr",
    "cr0_sel_write",
    "idtr_read",
    "gdtr_read",
    "ldtr_read",
    "tr_read",
    "idtr_write",
    "gdtr_write",
    "ldtr_write",
    "tr_write",
    "rdtsc",
    "rdpmc",
    "pushf",
    "popf",
    "cpuid",
    "rsm",
    "iret",
    "swint",
    "invd",
    "pause",
    "hlt",
    "invlpg",
    "invlpga",
    "ioio",
    "msr",
    "task_switch",
    "ferr_freeze",
    "shutdown",
    "vmrun",
    "vmmcall",
    "vmload",
    "vmsave",
    "stgi",
    "clgi",
    "skinit",
    "rdtscp",
    "icebp",
    "wbinvd",
    "monitor",
    "mwait",
    "mwait_cond",
    "xsetbv",
    "rdpru",
    "efer_write_trap",
    "cr0_write_trap",
    "cr1_write_trap",
    "cr2_write_trap",
    "cr3_write_trap",
    "cr4_write_trap",
    "cr5_write_trap",
    "cr6_write_trap",
    "cr7_write_trap",
    "cr8_write_trap",
    "cr9_write_trap",
    "cr10_write_trap",
    "cr11_write_trap",
    "cr12_write_trap",
    "cr13_write_trap",
    "cr14_write_trap",
    "cr15_write_trap",
    "invlpgb",
    "invlpgb_illegal",
    "invpcid",
    "mcommit",
    "tlbsync",
    "buslock",
    "idle_hlt",
    "npf",
    "avic_incomplete_ipi",
    "avic_noaccel",
    "vmgexit",
    "invalid",
    "busy",
    "unknown",
];

impl Vmcb {
    /// The decoded exit code of the last `#VMEXIT`.
    pub const fn exit(&self) -> ExitCode {
        ExitCode::from_raw(self.exit_code)
    }
}

/// Why an EXITINFO value could not be decoded (only possible with a buggy emulator or a
/// misread VMCB; the caller should log it and stop the guest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// IOIO EXITINFO1 with not exactly one of SZ8/SZ16/SZ32 set.
    IoOperandSize(u64),
    /// MSR EXITINFO1 other than 0 (RDMSR) or 1 (WRMSR).
    MsrAccess(u64),
}

/// Direction of an intercepted I/O instruction (IOIO EXITINFO1 bit 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDirection {
    /// OUT / OUTS (TYPE = 0).
    Out,
    /// IN / INS (TYPE = 1).
    In,
}

/// Address size of a string I/O instruction (IOIO EXITINFO1 bits 9:7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSize {
    /// 16-bit addressing (A16).
    A16,
    /// 32-bit addressing (A32).
    A32,
    /// 64-bit addressing (A64).
    A64,
}

/// A decoded IOIO intercept (exit code 0x7B, APM vol. 2 §15.10.2, Figure 15-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoioExit {
    /// Port number (EXITINFO1 bits 31:16).
    pub port: u16,
    /// IN or OUT (bit 0).
    pub direction: IoDirection,
    /// String instruction INS/OUTS (bit 2).
    pub string: bool,
    /// REP prefix (bit 3).
    pub rep: bool,
    /// Operand size in bytes: 1, 2 or 4 (bits 6:4, one-hot).
    pub size: u8,
    /// Address size (bits 9:7, one-hot), `None` if the field is not one-hot.
    pub address_size: Option<AddressSize>,
    /// Effective segment of a string instruction, 0 = ES … 5 = GS (bits 12:10; only meaningful
    /// with decode assists).
    pub segment: u8,
    /// RIP of the instruction after the I/O instruction (EXITINFO2). Valid also without NRIPS,
    /// which is how QEMU TCG reports it.
    pub next_rip: u64,
}

impl IoioExit {
    /// Decode EXITINFO1 and EXITINFO2 of an IOIO exit.
    pub const fn decode(exit_info1: u64, exit_info2: u64) -> Result<Self, DecodeError> {
        let size = match (exit_info1 >> 4) & 0x7 {
            0b001 => 1,
            0b010 => 2,
            0b100 => 4,
            _ => return Err(DecodeError::IoOperandSize(exit_info1)),
        };
        let address_size = match (exit_info1 >> 7) & 0x7 {
            0b001 => Some(AddressSize::A16),
            0b010 => Some(AddressSize::A32),
            0b100 => Some(AddressSize::A64),
            _ => None,
        };
        Ok(Self {
            port: ioio_port(exit_info1),
            direction: if exit_info1 & 1 != 0 {
                IoDirection::In
            } else {
                IoDirection::Out
            },
            string: exit_info1 & (1 << 2) != 0,
            rep: exit_info1 & (1 << 3) != 0,
            size,
            address_size,
            segment: ((exit_info1 >> 10) & 0x7) as u8,
            next_rip: exit_info2,
        })
    }
}

/// Port number of an IOIO EXITINFO1 (bits 31:16).
pub const fn ioio_port(exit_info1: u64) -> u16 {
    (exit_info1 >> 16) as u16
}

/// The access that caused an MSR intercept (exit code 0x7C, APM vol. 2 §15.11): EXITINFO1 is 0
/// for RDMSR and 1 for WRMSR. The MSR number is the guest's ECX; for WRMSR the value is EDX:EAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrAccess {
    /// RDMSR.
    Read,
    /// WRMSR.
    Write,
}

impl MsrAccess {
    /// Decode EXITINFO1 of an MSR exit.
    pub const fn from_exit_info1(exit_info1: u64) -> Result<Self, DecodeError> {
        match exit_info1 {
            0 => Ok(Self::Read),
            1 => Ok(Self::Write),
            other => Err(DecodeError::MsrAccess(other)),
        }
    }
}

bitflags! {
    /// Nested page fault error code, EXITINFO1 of exit 0x400 (APM vol. 2 §15.25.6). Bits 0–6
    /// have the #PF error code meanings, applied to the nested (host) translation.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NpfErrorCode: u64 {
        /// The nested page was present (a protection fault); clear: not present.
        const PRESENT = 1 << 0;
        /// The access was a write.
        const WRITE = 1 << 1;
        /// The access was a user access (nested accesses are always user accesses).
        const USER = 1 << 2;
        /// A reserved bit was set in a nested page-table entry.
        const RESERVED = 1 << 3;
        /// The access was an instruction fetch.
        const FETCH = 1 << 4;
        /// Shadow-stack access.
        const SHADOW_STACK = 1 << 6;
        /// RMP violation (SEV-SNP).
        const RMP = 1 << 31;
        /// The fault happened translating the guest's *final* physical address (the data or
        /// code access itself).
        const GUEST_FINAL = 1 << 32;
        /// The fault happened translating a *guest page-table* access during the guest walk.
        const GUEST_PAGE_TABLE = 1 << 33;
        /// Encrypted (C-bit) access (SEV-SNP).
        const ENCRYPTED = 1 << 34;
        /// Page-size mismatch between RMP and nested table (SEV-SNP).
        const SIZE_MISMATCH = 1 << 35;
        const _ = !0;
    }
}

/// A decoded nested page fault (exit code 0x400, APM vol. 2 §15.25.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpfExit {
    /// The error code (EXITINFO1).
    pub error: NpfErrorCode,
    /// The faulting guest-physical address (EXITINFO2).
    pub gpa: Gpa,
}

impl NpfExit {
    /// Decode EXITINFO1 and EXITINFO2 of a nested page fault.
    pub const fn decode(exit_info1: u64, exit_info2: u64) -> Self {
        Self {
            error: NpfErrorCode::from_bits_retain(exit_info1),
            gpa: Gpa(exit_info2),
        }
    }

    /// The access was to the final guest-physical address (not a guest page-table read).
    pub const fn is_final_access(&self) -> bool {
        self.error.contains(NpfErrorCode::GUEST_FINAL)
    }

    /// The access was a guest page-table read or A/D update during the guest's walk.
    pub const fn is_page_table_walk(&self) -> bool {
        self.error.contains(NpfErrorCode::GUEST_PAGE_TABLE)
    }

    /// The access was a write.
    pub const fn is_write(&self) -> bool {
        self.error.contains(NpfErrorCode::WRITE)
    }
}

/// With decode assists (§15.33.1), EXITINFO1 of a CR access exit has bit 63 set for
/// `MOV CRx` and the general-purpose register number in bits 3:0. Returns that register number,
/// or `None` for LMSW/CLTS or when decode assists did not fill the field.
pub const fn mov_cr_gpr(exit_info1: u64) -> Option<u8> {
    if exit_info1 & (1 << 63) != 0 {
        Some((exit_info1 & 0xF) as u8)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranged_codes_round_trip() {
        assert_eq!(ExitCode::from_raw(0x00), ExitCode::CrRead(0));
        assert_eq!(ExitCode::from_raw(0x18), ExitCode::CrWrite(8));
        assert_eq!(ExitCode::from_raw(0x27), ExitCode::DrRead(7));
        assert_eq!(ExitCode::from_raw(0x3F), ExitCode::DrWrite(15));
        assert_eq!(ExitCode::from_raw(0x4E), ExitCode::Exception(14));
        assert_eq!(ExitCode::from_raw(0x98), ExitCode::CrWriteTrap(8));
        for raw in 0..=0xA6u64 {
            let c = ExitCode::from_raw(raw);
            assert!(!matches!(c, ExitCode::Unknown(_)), "{raw:#x}");
            assert_eq!(c.raw(), raw);
            assert_eq!(c.index(), raw as usize);
        }
    }

    #[test]
    fn headline_codes() {
        assert_eq!(ExitCode::from_raw(0x60), ExitCode::Intr);
        assert_eq!(ExitCode::from_raw(0x61), ExitCode::Nmi);
        assert_eq!(ExitCode::from_raw(0x64), ExitCode::Vintr);
        assert_eq!(ExitCode::from_raw(0x72), ExitCode::Cpuid);
        assert_eq!(ExitCode::from_raw(0x78), ExitCode::Hlt);
        assert_eq!(ExitCode::from_raw(0x7B), ExitCode::Ioio);
        assert_eq!(ExitCode::from_raw(0x7C), ExitCode::Msr);
        assert_eq!(ExitCode::from_raw(0x7F), ExitCode::Shutdown);
        assert_eq!(ExitCode::from_raw(0x80), ExitCode::Vmrun);
        assert_eq!(ExitCode::from_raw(0x81), ExitCode::Vmmcall);
        assert_eq!(ExitCode::from_raw(0x8D), ExitCode::Xsetbv);
        assert_eq!(ExitCode::from_raw(0x8F), ExitCode::EferWriteTrap);
        assert_eq!(ExitCode::from_raw(0x400), ExitCode::Npf);
        assert_eq!(ExitCode::from_raw(0x401), ExitCode::AvicIncompleteIpi);
        assert_eq!(ExitCode::from_raw(0x402), ExitCode::AvicNoAccel);
        assert_eq!(ExitCode::from_raw(0x403), ExitCode::Vmgexit);
    }

    #[test]
    fn invalid_in_both_forms() {
        assert_eq!(ExitCode::from_raw(u64::MAX), ExitCode::Invalid);
        assert_eq!(ExitCode::from_raw(0xFFFF_FFFF), ExitCode::Invalid);
        assert_eq!(ExitCode::Invalid.raw(), u64::MAX);
        assert_eq!(ExitCode::from_raw(u64::MAX - 1), ExitCode::Busy);
        assert_eq!(ExitCode::Invalid.name(), "invalid");
    }

    #[test]
    fn unknown_codes_are_kept() {
        assert_eq!(ExitCode::from_raw(0x404), ExitCode::Unknown(0x404));
        assert_eq!(
            ExitCode::from_raw(0xFFFF_FFFE),
            ExitCode::Unknown(0xFFFF_FFFE)
        );
        assert_eq!(ExitCode::Unknown(0x404).raw(), 0x404);
        assert_eq!(ExitCode::Unknown(7).index(), ExitCode::COUNT - 1);
    }

    #[test]
    fn names_and_indices_are_dense_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for n in NAMES.iter() {
            assert!(seen.insert(*n), "duplicate name {n}");
        }
        assert_eq!(ExitCode::Ioio.name(), "ioio");
        assert_eq!(ExitCode::Exception(14).name(), "exc_pf");
        assert_eq!(ExitCode::CrWrite(8).name(), "cr8_write");
        assert_eq!(ExitCode::Npf.name(), "npf");
        assert_eq!(ExitCode::AvicNoAccel.name(), "avic_noaccel");
        assert_eq!(ExitCode::index_name(0x78), "hlt");
        assert_eq!(ExitCode::index_name(9999), "?");
        let mut counters = [0u64; ExitCode::COUNT];
        for raw in [0x7B, 0x7B, 0x400, u64::MAX, 0xFFFF_FFFF, 0x5555] {
            counters[ExitCode::from_raw(raw).index()] += 1;
        }
        assert_eq!(counters[ExitCode::Ioio.index()], 2);
        assert_eq!(counters[ExitCode::Invalid.index()], 2);
        assert_eq!(counters[ExitCode::COUNT - 1], 1);
    }

    #[test]
    fn ioio_decode_out_dx_al() {
        // OUT DX, AL to port 0x3F8 (16550 THR): port 0x3F8 << 16, SZ8, A64 (64-bit code).
        let info1 = (0x3F8 << 16) | (1 << 4) | (1 << 9);
        let io = IoioExit::decode(info1, 0xFFFF_FFFF_8100_0010).unwrap();
        assert_eq!(io.port, 0x3F8);
        assert_eq!(io.direction, IoDirection::Out);
        assert!(!io.string && !io.rep);
        assert_eq!(io.size, 1);
        assert_eq!(io.address_size, Some(AddressSize::A64));
        assert_eq!(io.next_rip, 0xFFFF_FFFF_8100_0010);
    }

    #[test]
    fn ioio_decode_rep_insw() {
        // REP INSW from port 0x1F0, 32-bit addressing, ES segment.
        let info1 = (0x1F0 << 16) | 1 | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8);
        let io = IoioExit::decode(info1, 0x1000).unwrap();
        assert_eq!(io.port, 0x1F0);
        assert_eq!(io.direction, IoDirection::In);
        assert!(io.string && io.rep);
        assert_eq!(io.size, 2);
        assert_eq!(io.address_size, Some(AddressSize::A32));
        assert_eq!(io.segment, 0);
        assert_eq!(ioio_port(info1), 0x1F0);
    }

    #[test]
    fn ioio_decode_dword_and_bad_size() {
        let io = IoioExit::decode((0xCFC << 16) | 1 | (1 << 6), 0).unwrap();
        assert_eq!(io.size, 4);
        assert_eq!(io.address_size, None);
        assert_eq!(
            IoioExit::decode(0xCFC << 16, 0),
            Err(DecodeError::IoOperandSize(0xCFC << 16))
        );
        assert!(IoioExit::decode((1 << 4) | (1 << 5), 0).is_err());
    }

    #[test]
    fn msr_access_decode() {
        assert_eq!(MsrAccess::from_exit_info1(0), Ok(MsrAccess::Read));
        assert_eq!(MsrAccess::from_exit_info1(1), Ok(MsrAccess::Write));
        assert_eq!(
            MsrAccess::from_exit_info1(2),
            Err(DecodeError::MsrAccess(2))
        );
    }

    #[test]
    fn npf_decode() {
        // Write to a not-present GPA during the final translation.
        let f = NpfExit::decode((1 << 32) | 0b110, 0xFEE0_0300);
        assert!(f.is_final_access());
        assert!(!f.is_page_table_walk());
        assert!(f.is_write());
        assert!(!f.error.contains(NpfErrorCode::PRESENT));
        assert!(f.error.contains(NpfErrorCode::USER));
        assert_eq!(f.gpa, Gpa(0xFEE0_0300));
        // Guest page-table read of an unmapped table.
        let g = NpfExit::decode((1 << 33) | 0b100, 0x7000);
        assert!(g.is_page_table_walk());
        assert!(!g.is_final_access());
        // Fetch from a present page (NX in the nested table).
        let h = NpfExit::decode((1 << 32) | 0b10101, 0x10_0000);
        assert!(h
            .error
            .contains(NpfErrorCode::FETCH | NpfErrorCode::PRESENT));
    }

    #[test]
    fn mov_cr_decode_assist() {
        assert_eq!(mov_cr_gpr((1 << 63) | 3), Some(3));
        assert_eq!(mov_cr_gpr(3), None);
    }

    #[test]
    fn vmcb_exit_accessor() {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.exit_code = 0xFFFF_FFFF;
        assert_eq!(v.exit(), ExitCode::Invalid);
        v.exit_code = 0x72;
        assert_eq!(v.exit(), ExitCode::Cpuid);
    }
}
