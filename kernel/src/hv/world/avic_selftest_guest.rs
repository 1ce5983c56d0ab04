//! The AVIC self-test's guest: a few real-mode (16-bit) phases, assembled into the image as
//! data and copied to guest-physical [`CODE_GPA`]. What each phase checks, and the result words
//! it writes at `avic::selftest::RESULTS_GPA`, are described in `avic::selftest`.
//!
//! The blob starts with a table of 16-bit offsets, [`LABELS`] per mode (x2AVIC first, then
//! xAVIC), in [`Label`] order; the code follows. The code uses no absolute code addresses
//! (the host fills the IVT entry of the self-IPI vector), so it runs wherever it is copied.
//! x2AVIC phases use the x2APIC MSRs; xAVIC phases use the APIC page through FS, whose base
//! the VMCB sets to the APIC BAR (FS is never loaded, so the hidden base stays). Every phase
//! ends in VMMCALL (or in the exit under test), and the only wait, for the self-IPI, is
//! bounded by `avic::selftest::WAIT_LOOPS`.

use avic::exit::reg;
use avic::selftest::{
    report, word_of, x2apic_msr, IPI_VECTOR, RESULTS_GPA, SELF_VECTOR, TARGET, TMICT_VALUE,
    WAIT_LOOPS,
};

/// Guest-physical address the blob is copied to (CS = 0, IP = CODE_GPA + offset).
pub const CODE_GPA: u64 = 0x1000;
/// Initial SP (SS = 0): the stack grows down through the top of page 0, above the results.
pub const STACK_TOP: u64 = 0x1000;

/// The entry points and marks of one mode's code, in the order of the offset table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// Check 1: CLI, self-IPI, read IRR.
    SelfIpi,
    /// Check 1's VMMCALL.
    SelfIpiEnd,
    /// Check 2: STI and the bounded wait for the handler.
    Deliver,
    /// Check 2's VMMCALL.
    DeliverEnd,
    /// The interrupt handler (IVT entry of the self-IPI vector).
    Handler,
    /// Check 3: the fixed IPI to the not-running vCPU.
    Ipi,
    /// Check 4: TMICT write (with its set-up).
    Tmict,
    /// Check 4: the writing instruction itself.
    TmictWrite,
    /// Check 4: the instruction after the write.
    TmictNext,
}

/// Offset-table entries per mode.
pub const LABELS: usize = 9;

/// Index of `label` of `mode` in the offset table.
pub const fn table_index(x2avic: bool, label: Label) -> usize {
    (if x2avic { 0 } else { LABELS }) + label as usize
}

core::arch::global_asm!(
    r#"
.pushsection .rodata.avic_selftest_guest, "a"
.code16
.global avic_selftest_guest_start
avic_selftest_guest_start:
    .short .Lavst_x2_self - avic_selftest_guest_start
    .short .Lavst_x2_self_end - avic_selftest_guest_start
    .short .Lavst_x2_deliver - avic_selftest_guest_start
    .short .Lavst_x2_deliver_end - avic_selftest_guest_start
    .short .Lavst_x2_handler - avic_selftest_guest_start
    .short .Lavst_x2_ipi - avic_selftest_guest_start
    .short .Lavst_x2_tmict - avic_selftest_guest_start
    .short .Lavst_x2_tmict_write - avic_selftest_guest_start
    .short .Lavst_x2_tmict_next - avic_selftest_guest_start
    .short .Lavst_x_self - avic_selftest_guest_start
    .short .Lavst_x_self_end - avic_selftest_guest_start
    .short .Lavst_x_deliver - avic_selftest_guest_start
    .short .Lavst_x_deliver_end - avic_selftest_guest_start
    .short .Lavst_x_handler - avic_selftest_guest_start
    .short .Lavst_x_ipi - avic_selftest_guest_start
    .short .Lavst_x_tmict - avic_selftest_guest_start
    .short .Lavst_x_tmict_write - avic_selftest_guest_start
    .short .Lavst_x_tmict_next - avic_selftest_guest_start

/* ---- x2AVIC: the x2APIC MSRs ---- */
.Lavst_x2_self:
    cli
    mov ecx, {msr_self_ipi}
    mov eax, {self_vector}
    xor edx, edx
    wrmsr
    mov ecx, {msr_irr}
    rdmsr
    mov dword ptr [{res_irr_before}], eax
.Lavst_x2_self_end:
    vmmcall

.Lavst_x2_deliver:
    mov dword ptr [{res_handled}], 0
    mov ecx, {wait}
    sti
.Lavst_x2_wait:
    cmp dword ptr [{res_handled}], 0
    jne .Lavst_x2_waited
    dec ecx
    jnz .Lavst_x2_wait
.Lavst_x2_waited:
    cli
    mov dword ptr [{res_loops}], ecx
    mov ecx, {msr_isr}
    rdmsr
    mov dword ptr [{res_isr_after}], eax
    mov ecx, {msr_irr}
    rdmsr
    mov dword ptr [{res_irr_after}], eax
.Lavst_x2_deliver_end:
    vmmcall

.Lavst_x2_handler:
    pushad
    mov ecx, {msr_isr}
    rdmsr
    mov dword ptr [{res_isr_in}], eax
    mov ecx, {msr_irr}
    rdmsr
    mov dword ptr [{res_irr_in}], eax
    inc dword ptr [{res_handled}]
    mov ecx, {msr_eoi}
    xor eax, eax
    xor edx, edx
    wrmsr
    popad
    iret

.Lavst_x2_ipi:
    cli
    mov ecx, {msr_icr}
    mov eax, {ipi_vector}
    mov edx, {target}
    wrmsr
    vmmcall

.Lavst_x2_tmict:
    mov ecx, {msr_tmict}
    mov eax, {tmict}
    xor edx, edx
.Lavst_x2_tmict_write:
    wrmsr
.Lavst_x2_tmict_next:
    vmmcall

/* ---- xAVIC: the APIC page at FS base (the APIC BAR) ---- */
.Lavst_x_self:
    cli
    mov dword ptr fs:[{off_icr}], {icr_self}
    mov eax, dword ptr fs:[{off_irr}]
    mov dword ptr [{res_irr_before}], eax
.Lavst_x_self_end:
    vmmcall

.Lavst_x_deliver:
    mov dword ptr [{res_handled}], 0
    mov ecx, {wait}
    sti
.Lavst_x_wait:
    cmp dword ptr [{res_handled}], 0
    jne .Lavst_x_waited
    dec ecx
    jnz .Lavst_x_wait
.Lavst_x_waited:
    cli
    mov dword ptr [{res_loops}], ecx
    mov eax, dword ptr fs:[{off_isr}]
    mov dword ptr [{res_isr_after}], eax
    mov eax, dword ptr fs:[{off_irr}]
    mov dword ptr [{res_irr_after}], eax
.Lavst_x_deliver_end:
    vmmcall

.Lavst_x_handler:
    pushad
    mov eax, dword ptr fs:[{off_isr}]
    mov dword ptr [{res_isr_in}], eax
    mov eax, dword ptr fs:[{off_irr}]
    mov dword ptr [{res_irr_in}], eax
    inc dword ptr [{res_handled}]
    mov dword ptr fs:[{off_eoi}], 0
    popad
    iret

.Lavst_x_ipi:
    cli
    mov dword ptr fs:[{off_icr_high}], {icr_high_target}
    mov dword ptr fs:[{off_icr}], {ipi_vector}
    vmmcall

.Lavst_x_tmict:
.Lavst_x_tmict_write:
    mov dword ptr fs:[{off_tmict}], {tmict}
.Lavst_x_tmict_next:
    vmmcall

.global avic_selftest_guest_end
avic_selftest_guest_end:
.code64
.popsection
"#,
    msr_self_ipi = const x2apic_msr(reg::SELF_IPI),
    msr_irr = const x2apic_msr(word_of(reg::IRR, SELF_VECTOR).0),
    msr_isr = const x2apic_msr(word_of(reg::ISR, SELF_VECTOR).0),
    msr_eoi = const x2apic_msr(reg::EOI),
    msr_icr = const x2apic_msr(reg::ICR_LOW),
    msr_tmict = const x2apic_msr(reg::TIMER_INITIAL),
    off_irr = const word_of(reg::IRR, SELF_VECTOR).0,
    off_isr = const word_of(reg::ISR, SELF_VECTOR).0,
    off_eoi = const reg::EOI,
    off_icr = const reg::ICR_LOW,
    off_icr_high = const reg::ICR_HIGH,
    off_tmict = const reg::TIMER_INITIAL,
    self_vector = const SELF_VECTOR,
    ipi_vector = const IPI_VECTOR,
    target = const TARGET,
    icr_self = const avic::selftest::self_ipi_icr().0,
    icr_high_target = const (TARGET as u32) << 24,
    tmict = const TMICT_VALUE,
    wait = const WAIT_LOOPS,
    res_irr_before = const RESULTS_GPA + report::IRR_BEFORE_STI,
    res_handled = const RESULTS_GPA + report::HANDLED,
    res_isr_in = const RESULTS_GPA + report::ISR_IN_HANDLER,
    res_irr_in = const RESULTS_GPA + report::IRR_IN_HANDLER,
    res_isr_after = const RESULTS_GPA + report::ISR_AFTER_EOI,
    res_irr_after = const RESULTS_GPA + report::IRR_AFTER_EOI,
    res_loops = const RESULTS_GPA + report::LOOPS_LEFT,
);
