//! What a guest may execute natively, and what exits: the whole intercept set of a guest's VMCB
//! in one table, with the reason for each entry and the response the vCPU loop gives.
//!
//! The rule: an instruction runs natively only when everything it can reach is the guest's own
//! (its registers, its RAM through the nested page tables, its core's caches and TLB for its own
//! ASID). Anything that names host-physical memory, another ASID, another core, the global
//! interrupt flag or the processor's own mode exits (APM vol. 2 §15.13–§15.14, Appendix C).
//! Instructions of features the CPUID policy hides (`crate::cpuid`) raise #UD as they would on
//! a processor without the feature; the two cache-wide ones become no-ops; XSETBV is checked
//! against what CPUID shows the guest.

use crate::config::IrqMode;
use svm::exit::ExitCode;
use svm::intercept::{InterceptMisc1, InterceptMisc2, InterceptMisc3};

/// One intercept bit of the VMCB's words 3–5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bit {
    Misc1(InterceptMisc1),
    Misc2(InterceptMisc2),
    Misc3(InterceptMisc3),
}

/// What the vCPU loop does when the guest executes an intercepted instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// Raise #UD, as a processor without the feature does.
    Ud,
    /// Complete it without effect (RIP past the instruction).
    Nop,
    /// XSETBV: load XCR0 if the value passes [`check_xsetbv`], else #GP(0).
    CheckedXsetbv,
    /// Handled by its own code path (CPUID, port I/O, MSRs, HLT, shutdown).
    Own,
}

/// One row of the table: the intercept, the exit it produces, the response and why.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub bit: Bit,
    pub exit: ExitCode,
    pub response: Response,
    pub why: &'static str,
}

const fn rule(bit: Bit, exit: ExitCode, response: Response, why: &'static str) -> Rule {
    Rule {
        bit,
        exit,
        response,
        why,
    }
}

use Bit::{Misc1 as M1, Misc2 as M2, Misc3 as M3};
use Response::{CheckedXsetbv, Nop, Own, Ud};

/// Instructions intercepted in every interrupt mode.
pub const INSTRUCTIONS: &[Rule] = &[
    rule(
        M2(InterceptMisc2::VMRUN),
        ExitCode::Vmrun,
        Ud,
        "required by VMRUN itself; SVM is hidden from the guest (no nested virtualisation)",
    ),
    rule(
        M2(InterceptMisc2::VMMCALL),
        ExitCode::Vmmcall,
        Ud,
        "no hypercalls are offered",
    ),
    rule(
        M2(InterceptMisc2::VMLOAD),
        ExitCode::Vmload,
        Ud,
        "RAX names a host-physical page (no virtualised VMLOAD): it would load segment and \
         syscall state from any host page",
    ),
    rule(
        M2(InterceptMisc2::VMSAVE),
        ExitCode::Vmsave,
        Ud,
        "RAX names a host-physical page: it would write the guest's FS/GS/syscall MSRs into \
         any host page (offsets 448h-660h)",
    ),
    rule(
        M2(InterceptMisc2::STGI),
        ExitCode::Stgi,
        Ud,
        "the real global interrupt flag",
    ),
    rule(
        M2(InterceptMisc2::CLGI),
        ExitCode::Clgi,
        Ud,
        "clears the real GIF: the hypervisor's NMIs (recall, watchdog) would stay pending and \
         the core would never come back",
    ),
    rule(
        M2(InterceptMisc2::SKINIT),
        ExitCode::Skinit,
        Ud,
        "reinitialises the processor into a secure loader and signals INIT to the others",
    ),
    rule(
        M1(InterceptMisc1::INVLPGA),
        ExitCode::Invlpga,
        Ud,
        "invalidates TLB entries of any ASID the guest names, the host's ASID 0 included",
    ),
    rule(
        M3(InterceptMisc3::INVLPGB),
        ExitCode::Invlpgb,
        Ud,
        "broadcast TLB invalidation reaches every core",
    ),
    rule(
        M3(InterceptMisc3::INVLPGB_ILLEGAL),
        ExitCode::InvlpgbIllegal,
        Ud,
        "broadcast TLB invalidation reaches every core",
    ),
    rule(
        M3(InterceptMisc3::TLBSYNC),
        ExitCode::Tlbsync,
        Ud,
        "waits on other cores' invalidations",
    ),
    rule(
        M2(InterceptMisc2::RDPRU),
        ExitCode::Rdpru,
        Ud,
        "reads processor registers (APERF/MPERF) the hypervisor does not virtualise",
    ),
    rule(
        M2(InterceptMisc2::MONITOR),
        ExitCode::Monitor,
        Ud,
        "MONITOR/MWAIT are hidden by CPUID",
    ),
    rule(
        M2(InterceptMisc2::MWAIT),
        ExitCode::Mwait,
        Ud,
        "MONITOR/MWAIT are hidden by CPUID; MWAIT hints can enter deep C-states on a core the \
         hypervisor must be able to recall",
    ),
    rule(
        M2(InterceptMisc2::MWAIT_COND),
        ExitCode::MwaitCond,
        Ud,
        "as MWAIT",
    ),
    rule(
        M2(InterceptMisc2::WBINVD),
        ExitCode::Wbinvd,
        Nop,
        "writes back every cache line of the core's caches, shared caches included: a \
         cross-core slowdown at will; guest memory and DMA are coherent, so nothing needs it",
    ),
    rule(
        M1(InterceptMisc1::INVD),
        ExitCode::Invd,
        Nop,
        "would drop dirty lines of the hypervisor and other guests in shared caches",
    ),
    rule(
        M2(InterceptMisc2::XSETBV),
        ExitCode::Xsetbv,
        CheckedXsetbv,
        "XCR0 is the real register: only the features CPUID leaf 0Dh shows the guest",
    ),
    rule(
        M1(InterceptMisc1::CPUID),
        ExitCode::Cpuid,
        Own,
        "answered by the CPUID policy",
    ),
    rule(
        M1(InterceptMisc1::IOIO_PROT),
        ExitCode::Ioio,
        Own,
        "every port is the virtual platform's (I/O permission map: all intercepted)",
    ),
    rule(
        M1(InterceptMisc1::MSR_PROT),
        ExitCode::Msr,
        Own,
        "every MSR but the guest's own context (MSR permission map, `crate::msr`)",
    ),
    rule(
        M1(InterceptMisc1::SHUTDOWN),
        ExitCode::Shutdown,
        Own,
        "a triple fault ends the guest, never the core",
    ),
];

/// Events intercepted in every interrupt mode.
pub const EVENTS: &[Rule] = &[
    rule(
        M1(InterceptMisc1::NMI),
        ExitCode::Nmi,
        Own,
        "the hypervisor's recall and watchdog; guests are never given physical NMIs",
    ),
    rule(
        M1(InterceptMisc1::SMI),
        ExitCode::Smi,
        Own,
        "the SMI stays pending and is taken by firmware in host context once GIF is set",
    ),
    rule(
        M1(InterceptMisc1::INIT),
        ExitCode::Init,
        Own,
        "a physical INIT would reset the core under the hypervisor: it exits, VM_CR.R_INIT turns it into #SX in the host, which drops it, and the guest resumes (APM vol. 2, 15.21.8)",
    ),
];

/// Intercepts a vCPU sets and clears at run time, in every mode (not in [`initial`]).
pub const AT_RUN_TIME: &[Rule] = &[rule(
    M1(InterceptMisc1::IRET),
    ExitCode::Iret,
    Own,
    "while a guest NMI's handler runs: NMIs open again only once its IRET has completed; with \
     another NMI latched by then, #DB is intercepted for one single step over the IRET \
     (`crate::nmi`)",
)];

/// The intercept words a guest's VMCB starts with in `mode` (VINTR is set and cleared at run
/// time by the emulated mode's interrupt window).
pub fn initial(mode: IrqMode) -> (InterceptMisc1, InterceptMisc2, InterceptMisc3) {
    let mut words = (
        InterceptMisc1::empty(),
        InterceptMisc2::empty(),
        InterceptMisc3::empty(),
    );
    for r in INSTRUCTIONS.iter().chain(EVENTS) {
        match r.bit {
            Bit::Misc1(b) => words.0 |= b,
            Bit::Misc2(b) => words.1 |= b,
            Bit::Misc3(b) => words.2 |= b,
        }
    }
    match mode {
        // Host interrupts (wake-up timer, kicks) exit so the hypervisor can inject; HLT exits
        // so it can wait for the next virtual interrupt.
        IrqMode::Emulated => words.0 |= InterceptMisc1::INTR | InterceptMisc1::HLT,
        // Direct: physical interrupts go through the guest's IDT and HLT halts the real core.
        // AVIC: nothing sends this core a maskable interrupt (doorbells post them), and
        // V_INTR_MASKING keeps a stray one pending; HLT ends on a doorbell.
        IrqMode::Direct | IrqMode::Avic => {}
    }
    words
}

/// The response to an intercepted instruction's exit, if the table has one.
pub fn response(exit: ExitCode) -> Option<Response> {
    INSTRUCTIONS
        .iter()
        .find(|r| r.exit == exit)
        .map(|r| r.response)
}

/// XCR0 bits: x87 (0), SSE (1), AVX (2), the AVX-512 triple (7:5).
const XCR0_X87: u64 = 1 << 0;
const XCR0_SSE: u64 = 1 << 1;
const XCR0_AVX: u64 = 1 << 2;
const XCR0_AVX512: u64 = 0b111 << 5;

/// Why an XSETBV is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsetbvFault {
    /// CR4.OSXSAVE is clear: #UD.
    NotEnabled,
    /// CPL > 0, ECX names an XCR other than XCR0, or the value breaks the rules: #GP(0).
    Gp,
}

/// Checks `XSETBV` of `value` into XCR `ecx` at `cpl` with CR4.OSXSAVE = `osxsave`, against
/// `supported` (CPUID 0Dh.0 EDX:EAX as the guest sees it). The rules are the SDM's / APM vol. 4
/// XSETBV: x87 always set, AVX needs SSE, AVX-512 all three or none and only with AVX.
pub fn check_xsetbv(
    ecx: u32,
    value: u64,
    cpl: u8,
    osxsave: bool,
    supported: u64,
) -> Result<u64, XsetbvFault> {
    if !osxsave {
        return Err(XsetbvFault::NotEnabled);
    }
    let broken = cpl != 0
        || ecx != 0
        || value & !supported != 0
        || value & XCR0_X87 == 0
        || (value & XCR0_AVX != 0 && value & XCR0_SSE == 0)
        || (value & XCR0_AVX512 != 0
            && (value & XCR0_AVX512 != XCR0_AVX512 || value & XCR0_AVX == 0));
    if broken {
        Err(XsetbvFault::Gp)
    } else {
        Ok(value)
    }
}

/// The length of an instruction at `bytes` that must be `opcode` after optional legacy and REX
/// prefixes (`long` mode allows REX), or `None` if the bytes are something else (the guest
/// changed its code under the exit: it gets #UD).
pub fn length_of(bytes: &[u8], opcode: &[u8], long: bool) -> Option<u8> {
    let mut i = legacy_prefixes(bytes);
    if long && bytes.get(i).is_some_and(|b| b & 0xf0 == 0x40) {
        i += 1;
    }
    let end = i + opcode.len();
    (end <= insn::MAX_INSN_LEN && bytes.get(i..end) == Some(opcode)).then_some(end as u8)
}

/// How many legacy prefix bytes (segment, operand/address size, LOCK, REP) `bytes` starts with.
fn legacy_prefixes(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|b| {
            matches!(
                b,
                0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3
            )
        })
        .count()
}

/// The control register a `MOV CRn, reg` (0F 22 /r, REX.R selecting CR8-CR15) at `bytes` writes,
/// if that is what the bytes are. QEMU's SVM emulation answers a guest's write of a reserved CR0
/// or CR4 combination with `VMEXIT_INVALID` (the VMCB keeps the old, valid state) where a
/// processor raises #GP in the guest; the vCPU loop recognises the instruction and gives the #GP.
pub fn mov_to_cr(bytes: &[u8], long: bool) -> Option<u8> {
    let mut i = legacy_prefixes(bytes);
    let mut rex_r = 0;
    if long && bytes.get(i).is_some_and(|b| b & 0xf0 == 0x40) {
        rex_r = (bytes[i] >> 2) & 1;
        i += 1;
    }
    match bytes.get(i..i + 3)? {
        [0x0f, 0x22, modrm] => Some((modrm >> 3 & 7) | rex_r << 3),
        _ => None,
    }
}

/// WBINVD (0F 09; WBNOINVD is F3 0F 09), INVD (0F 08), XSETBV (0F 01 D1).
pub const OPCODE_WBINVD: &[u8] = &[0x0f, 0x09];
pub const OPCODE_INVD: &[u8] = &[0x0f, 0x08];
pub const OPCODE_XSETBV: &[u8] = &[0x0f, 0x01, 0xd1];

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [IrqMode; 3] = [IrqMode::Direct, IrqMode::Emulated, IrqMode::Avic];

    /// The instructions an outside review found running natively, and the rest of the set that
    /// reaches beyond the guest: intercepted in every mode.
    #[test]
    fn dangerous_instructions_exit_in_every_mode() {
        for mode in MODES {
            let (m1, m2, m3) = initial(mode);
            for b in [
                InterceptMisc2::VMRUN,
                InterceptMisc2::VMMCALL,
                InterceptMisc2::VMLOAD,
                InterceptMisc2::VMSAVE,
                InterceptMisc2::STGI,
                InterceptMisc2::CLGI,
                InterceptMisc2::SKINIT,
                InterceptMisc2::RDPRU,
                InterceptMisc2::MONITOR,
                InterceptMisc2::MWAIT,
                InterceptMisc2::MWAIT_COND,
                InterceptMisc2::WBINVD,
                InterceptMisc2::XSETBV,
            ] {
                assert!(m2.contains(b), "{mode:?}: {b:?}");
            }
            for b in [
                InterceptMisc1::INVLPGA,
                InterceptMisc1::INVD,
                InterceptMisc1::NMI,
                InterceptMisc1::SMI,
                InterceptMisc1::INIT,
                InterceptMisc1::CPUID,
                InterceptMisc1::IOIO_PROT,
                InterceptMisc1::MSR_PROT,
                InterceptMisc1::SHUTDOWN,
            ] {
                assert!(m1.contains(b), "{mode:?}: {b:?}");
            }
            assert!(m3.contains(
                InterceptMisc3::INVLPGB | InterceptMisc3::INVLPGB_ILLEGAL | InterceptMisc3::TLBSYNC
            ));
            // INTR and HLT only where the hypervisor injects (emulated).
            let emulated = mode == IrqMode::Emulated;
            assert_eq!(m1.contains(InterceptMisc1::INTR), emulated, "{mode:?}");
            assert_eq!(m1.contains(InterceptMisc1::HLT), emulated, "{mode:?}");
        }
    }

    /// Every row's bit produces the exit it names (APM Appendix C: the exit code of an
    /// intercept-word bit), so the response table and the intercept words cannot drift apart.
    #[test]
    fn rows_name_the_exit_of_their_bit() {
        for r in INSTRUCTIONS.iter().chain(EVENTS).chain(AT_RUN_TIME) {
            let code = match r.bit {
                Bit::Misc1(b) => 0x60 + u64::from(b.bits().trailing_zeros()),
                Bit::Misc2(b) => 0x80 + u64::from(b.bits().trailing_zeros()),
                Bit::Misc3(b) => 0xa0 + u64::from(b.bits().trailing_zeros()),
            };
            assert_eq!(ExitCode::from_raw(code), r.exit, "{}", r.why);
            assert!(!r.why.is_empty());
        }
        assert_eq!(response(ExitCode::Vmsave), Some(Response::Ud));
        assert_eq!(response(ExitCode::Wbinvd), Some(Response::Nop));
        assert_eq!(response(ExitCode::Xsetbv), Some(Response::CheckedXsetbv));
        assert_eq!(response(ExitCode::Pause), None);
    }

    #[test]
    fn xsetbv_rules() {
        let sup = 0b1110_0111; // x87, SSE, AVX, AVX-512
        assert_eq!(check_xsetbv(0, 0b111, 0, true, sup), Ok(0b111));
        assert_eq!(check_xsetbv(0, 0b1110_0111, 0, true, sup), Ok(0b1110_0111));
        assert_eq!(
            check_xsetbv(0, 0b11, 0, false, sup),
            Err(XsetbvFault::NotEnabled)
        );
        for (ecx, value, cpl) in [
            (1, 0b11, 0),          // XCR1
            (0, 0b11, 3),          // user mode
            (0, 0b10, 0),          // x87 clear
            (0, 0b101, 0),         // AVX without SSE
            (0, 0b0110_0111, 0),   // part of AVX-512
            (0, 0b1110_0011, 0),   // AVX-512 without AVX
            (0, 0b1_0000_0011, 0), // a feature CPUID does not show
        ] {
            assert_eq!(
                check_xsetbv(ecx, value, cpl, true, sup),
                Err(XsetbvFault::Gp),
                "ecx {ecx} value {value:#x} cpl {cpl}"
            );
        }
    }

    #[test]
    fn mov_to_control_registers() {
        // mov cr4, rax (0F 22 E0); mov cr0, rcx (0F 22 C1); mov cr8, rax (44 0F 22 C0).
        assert_eq!(mov_to_cr(&[0x0f, 0x22, 0xe0], true), Some(4));
        assert_eq!(mov_to_cr(&[0x0f, 0x22, 0xc1], true), Some(0));
        assert_eq!(mov_to_cr(&[0x44, 0x0f, 0x22, 0xc0], true), Some(8));
        assert_eq!(
            mov_to_cr(&[0x41, 0x0f, 0x22, 0xe0], true),
            Some(4),
            "REX.B: r8"
        );
        // mov rax, cr4 (a read), other instructions, truncated bytes.
        assert_eq!(mov_to_cr(&[0x0f, 0x20, 0xe0], true), None);
        assert_eq!(mov_to_cr(&[0x0f, 0x09], true), None);
        assert_eq!(mov_to_cr(&[0x0f, 0x22], true), None);
    }

    #[test]
    fn instruction_lengths() {
        assert_eq!(length_of(&[0x0f, 0x09, 0x90], OPCODE_WBINVD, true), Some(2));
        assert_eq!(length_of(&[0xf3, 0x0f, 0x09], OPCODE_WBINVD, true), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xd1], OPCODE_XSETBV, true), Some(3));
        assert_eq!(
            length_of(&[0x48, 0x0f, 0x01, 0xd1], OPCODE_XSETBV, true),
            Some(4)
        );
        // REX outside long mode is INC/DEC, not a prefix.
        assert_eq!(
            length_of(&[0x48, 0x0f, 0x01, 0xd1], OPCODE_XSETBV, false),
            None
        );
        assert_eq!(length_of(&[0x0f, 0x08], OPCODE_WBINVD, true), None);
        assert_eq!(length_of(&[0x0f], OPCODE_WBINVD, true), None);
        assert_eq!(length_of(&[0x66; 15], OPCODE_WBINVD, true), None);
    }
}
