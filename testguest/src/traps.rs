//! Exception handlers that resume after a probed instruction: the attack and fuzzing guests run
//! instructions that may fault, and each fault is recorded (its vector) instead of ending the
//! guest. Every vector 0-31 has a stub; those with an error code pop it. The handler writes
//! `TRAP_RECOVER` into the interrupted RIP and returns.

use core::arch::{asm, global_asm};

/// The vector of the last exception a probe took ([`NONE`]: it completed), and where the handler
/// resumes: the label after the probed instruction.
#[no_mangle]
pub(crate) static mut TRAP_VECTOR: u64 = NONE;
#[no_mangle]
pub(crate) static mut TRAP_RECOVER: u64 = 0;
pub(crate) const NONE: u64 = 0xff;

global_asm!(
    r#"
.section .text
.global trap_0, trap_1, trap_2, trap_3, trap_4, trap_5, trap_6, trap_7, trap_8, trap_9, trap_10, trap_11, trap_12, trap_13, trap_14, trap_15, trap_16, trap_17, trap_18, trap_19, trap_20, trap_21, trap_22, trap_23, trap_24, trap_25, trap_26, trap_27, trap_28, trap_29, trap_30, trap_31
trap_0:
    mov qword ptr [rip + TRAP_VECTOR], 0
    jmp 1f
trap_1:
    mov qword ptr [rip + TRAP_VECTOR], 1
    jmp 1f
trap_2:
    mov qword ptr [rip + TRAP_VECTOR], 2
    jmp 1f
trap_3:
    mov qword ptr [rip + TRAP_VECTOR], 3
    jmp 1f
trap_4:
    mov qword ptr [rip + TRAP_VECTOR], 4
    jmp 1f
trap_5:
    mov qword ptr [rip + TRAP_VECTOR], 5
    jmp 1f
trap_6:
    mov qword ptr [rip + TRAP_VECTOR], 6
    jmp 1f
trap_7:
    mov qword ptr [rip + TRAP_VECTOR], 7
    jmp 1f
trap_8:
    mov qword ptr [rip + TRAP_VECTOR], 8
    add rsp, 8
    jmp 1f
trap_9:
    mov qword ptr [rip + TRAP_VECTOR], 9
    jmp 1f
trap_10:
    mov qword ptr [rip + TRAP_VECTOR], 10
    add rsp, 8
    jmp 1f
trap_11:
    mov qword ptr [rip + TRAP_VECTOR], 11
    add rsp, 8
    jmp 1f
trap_12:
    mov qword ptr [rip + TRAP_VECTOR], 12
    add rsp, 8
    jmp 1f
trap_13:
    mov qword ptr [rip + TRAP_VECTOR], 13
    add rsp, 8
    jmp 1f
trap_14:
    mov qword ptr [rip + TRAP_VECTOR], 14
    add rsp, 8
    jmp 1f
trap_15:
    mov qword ptr [rip + TRAP_VECTOR], 15
    jmp 1f
trap_16:
    mov qword ptr [rip + TRAP_VECTOR], 16
    jmp 1f
trap_17:
    mov qword ptr [rip + TRAP_VECTOR], 17
    add rsp, 8
    jmp 1f
trap_18:
    mov qword ptr [rip + TRAP_VECTOR], 18
    jmp 1f
trap_19:
    mov qword ptr [rip + TRAP_VECTOR], 19
    jmp 1f
trap_20:
    mov qword ptr [rip + TRAP_VECTOR], 20
    jmp 1f
trap_21:
    mov qword ptr [rip + TRAP_VECTOR], 21
    add rsp, 8
    jmp 1f
trap_22:
    mov qword ptr [rip + TRAP_VECTOR], 22
    jmp 1f
trap_23:
    mov qword ptr [rip + TRAP_VECTOR], 23
    jmp 1f
trap_24:
    mov qword ptr [rip + TRAP_VECTOR], 24
    jmp 1f
trap_25:
    mov qword ptr [rip + TRAP_VECTOR], 25
    jmp 1f
trap_26:
    mov qword ptr [rip + TRAP_VECTOR], 26
    jmp 1f
trap_27:
    mov qword ptr [rip + TRAP_VECTOR], 27
    jmp 1f
trap_28:
    mov qword ptr [rip + TRAP_VECTOR], 28
    jmp 1f
trap_29:
    mov qword ptr [rip + TRAP_VECTOR], 29
    add rsp, 8
    jmp 1f
trap_30:
    mov qword ptr [rip + TRAP_VECTOR], 30
    add rsp, 8
    jmp 1f
trap_31:
    mov qword ptr [rip + TRAP_VECTOR], 31
    jmp 1f
1:
    push rax
    mov rax, [rip + TRAP_RECOVER]
    mov [rsp + 8], rax
    pop rax
    iretq
"#
);

extern "C" {
    fn trap_0();
    fn trap_1();
    fn trap_2();
    fn trap_3();
    fn trap_4();
    fn trap_5();
    fn trap_6();
    fn trap_7();
    fn trap_8();
    fn trap_9();
    fn trap_10();
    fn trap_11();
    fn trap_12();
    fn trap_13();
    fn trap_14();
    fn trap_15();
    fn trap_16();
    fn trap_17();
    fn trap_18();
    fn trap_19();
    fn trap_20();
    fn trap_21();
    fn trap_22();
    fn trap_23();
    fn trap_24();
    fn trap_25();
    fn trap_26();
    fn trap_27();
    fn trap_28();
    fn trap_29();
    fn trap_30();
    fn trap_31();
}

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

/// Installs the 32 exception handlers (64-bit interrupt gates on the current code segment).
pub(crate) fn install() {
    let cs: u16;
    // SAFETY: reads the code segment selector.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    let idt = &raw mut IDT;
    let handlers: [unsafe extern "C" fn(); 32] = [
        trap_0, trap_1, trap_2, trap_3, trap_4, trap_5, trap_6, trap_7, trap_8, trap_9, trap_10,
        trap_11, trap_12, trap_13, trap_14, trap_15, trap_16, trap_17, trap_18, trap_19, trap_20,
        trap_21, trap_22, trap_23, trap_24, trap_25, trap_26, trap_27, trap_28, trap_29, trap_30,
        trap_31,
    ];
    for (vector, handler) in handlers.iter().enumerate() {
        write_gate(cs, vector as u8, *handler as *const () as u64);
    }
    let base = idt as u64;
    let desc: [u16; 5] = [
        4095,
        base as u16,
        (base >> 16) as u16,
        (base >> 32) as u16,
        (base >> 48) as u16,
    ];
    // SAFETY: loads a valid IDT with gates for every exception.
    unsafe { asm!("lidt [{}]", in(reg) desc.as_ptr(), options(nostack)) };
}

/// Writes a 64-bit interrupt gate (IF cleared on entry, DPL 0) for `vector` to `handler`.
fn write_gate(cs: u16, vector: u8, handler: u64) {
    let idt = &raw mut IDT;
    let h = handler;
    let low = (h & 0xffff) | u64::from(cs) << 16 | 0x8e00 << 32 | (h >> 16 & 0xffff) << 48;
    let i = usize::from(vector) * 2;
    // SAFETY: the IDT is this guest's and only written here; the caller has interrupts off
    // (before `install` loads it, or for an external-interrupt vector that nothing raises yet), so
    // no half-written gate is used.
    unsafe {
        (*idt).0[i] = low;
        (*idt).0[i + 1] = h >> 32;
    }
}

/// Points interrupt vector `vector` (32-255) at `handler`, an interrupt-gate entry point that
/// ends in IRETQ. Call after [`install`], with interrupts off.
pub(crate) fn set_irq_gate(vector: u8, handler: u64) {
    let cs: u16;
    // SAFETY: reads the code segment selector.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    if vector >= 32 {
        write_gate(cs, vector, handler);
    }
}

/// Points the NMI gate (vector 2) at `handler` (the delivery-checking guest's NMI check; nothing
/// sends this vCPU an NMI before it does).
pub(crate) fn set_nmi_gate(handler: u64) {
    let cs: u16;
    // SAFETY: reads the code segment selector.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    write_gate(cs, 2, handler);
}

/// What a probed instruction did: completed, or the vector of the exception it raised.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome(pub u64);

impl Outcome {
    pub(crate) fn vector(self) -> Option<u8> {
        (self.0 != NONE).then_some(self.0 as u8)
    }
}

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            NONE => f.write_str("completed"),
            // An NMI IPI the instruction sent to this vCPU arrives right after it.
            2 => f.write_str("completed, then an NMI"),
            6 => f.write_str("#UD"),
            13 => f.write_str("#GP"),
            14 => f.write_str("#PF"),
            v => write!(f, "exception {v}"),
        }
    }
}

/// Runs one instruction (the string) with the trap handlers armed to resume after it.
macro_rules! probe {
    ($insn:literal $(, $($operands:tt)*)?) => {{
        let vector: u64;
        // SAFETY: a deliberate attack or fuzzing instruction; the IDT's handlers resume at label
        // 2 with all registers but the ones named here intact, and the instruction touches no
        // Rust-visible memory.
        unsafe {
            core::arch::asm!(
                "mov qword ptr [rip + TRAP_VECTOR], 0xff",
                "lea {tmp}, [rip + 2f]",
                "mov [rip + TRAP_RECOVER], {tmp}",
                $insn,
                "2:",
                "mov {v}, [rip + TRAP_VECTOR]",
                tmp = out(reg) _,
                v = lateout(reg) vector,
                $($($operands)*)?
            )
        };
        $crate::traps::Outcome(vector)
    }};
}
pub(crate) use probe;
