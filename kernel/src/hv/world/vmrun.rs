//! The world switch (AMD APM vol. 2, 15.5 "VMRUN Instruction", 15.6 "#VMEXIT", 15.5.2 "VMSAVE and
//! VMLOAD"). VMRUN switches RAX, RSP, RIP and the VMCB state; the other general-purpose registers are
//! ours to swap, and VMLOAD/VMSAVE move the hidden state (FS, GS, TR, LDTR, KernelGsBase, the syscall
//! MSRs) that VMRUN leaves alone. The host's copy of that state goes to a per-core page, so an NMI
//! after #VMEXIT finds the host's TSS and interrupt stacks. All of it runs with GIF clear.

/// Guest registers that the VMCB does not hold (RAX and RSP are in the save area).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}
const _: () = assert!(core::mem::offset_of!(GuestRegs, rbx) == 0x00);
const _: () = assert!(core::mem::offset_of!(GuestRegs, rdi) == 0x20);
const _: () = assert!(core::mem::offset_of!(GuestRegs, rbp) == 0x28);
const _: () = assert!(core::mem::offset_of!(GuestRegs, r8) == 0x30);
const _: () = assert!(core::mem::offset_of!(GuestRegs, r15) == 0x68);

extern "C" {
    fn svm_vmrun(regs: *mut GuestRegs, guest_vmcb_pa: u64, host_state_pa: u64);
}

/// Runs the guest until the next #VMEXIT.
///
/// # Safety
/// `guest_vmcb_pa` must be the physical address of a fully initialised VMCB owned by this core and
/// `host_state_pa` this core's host-state page; SVM must be enabled on this core and interrupts
/// disabled.
pub unsafe fn run(regs: &mut GuestRegs, guest_vmcb_pa: u64, host_state_pa: u64) {
    // SAFETY: guaranteed by the caller; `regs` is a valid exclusive reference.
    unsafe { svm_vmrun(regs, guest_vmcb_pa, host_state_pa) }
}

/// Clears GIF ahead of [`run`] (which clears it again and sets it after the #VMEXIT): from here
/// on NMIs sent to this core are held and make the guest exit right after VMRUN.
pub fn clear_gif() {
    // SAFETY: CLGI only holds interrupts and NMIs until the STGI at the end of `run`; this core
    // runs with interrupts off and enters the guest next.
    unsafe { core::arch::asm!("clgi", options(nomem, nostack)) };
}

core::arch::global_asm!(
    r#"
.section .text
.global svm_vmrun
svm_vmrun:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdx            /* host state page */
    push rdi            /* GuestRegs pointer */
    clgi
    mov rax, rdx
    vmsave rax
    mov rax, rsi
    vmload rax
    mov rbx, [rdi + 0x00]
    mov rcx, [rdi + 0x08]
    mov rdx, [rdi + 0x10]
    mov rsi, [rdi + 0x18]
    mov rbp, [rdi + 0x28]
    mov r8,  [rdi + 0x30]
    mov r9,  [rdi + 0x38]
    mov r10, [rdi + 0x40]
    mov r11, [rdi + 0x48]
    mov r12, [rdi + 0x50]
    mov r13, [rdi + 0x58]
    mov r14, [rdi + 0x60]
    mov r15, [rdi + 0x68]
    mov rdi, [rdi + 0x20]
    vmrun rax
    /* #VMEXIT: RAX = guest VMCB again, RSP restored; the rest holds guest values. */
    vmsave rax
    xchg rdi, [rsp]     /* RDI = GuestRegs pointer, guest RDI on the stack */
    mov [rdi + 0x00], rbx
    mov [rdi + 0x08], rcx
    mov [rdi + 0x10], rdx
    mov [rdi + 0x18], rsi
    mov [rdi + 0x28], rbp
    mov [rdi + 0x30], r8
    mov [rdi + 0x38], r9
    mov [rdi + 0x40], r10
    mov [rdi + 0x48], r11
    mov [rdi + 0x50], r12
    mov [rdi + 0x58], r13
    mov [rdi + 0x60], r14
    mov [rdi + 0x68], r15
    pop rax
    mov [rdi + 0x20], rax
    pop rax             /* host state page */
    vmload rax
    stgi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#
);
