//! The host's interrupt descriptor tables, one per core copied from one template (AMD APM vol. 2,
//! 8.2 and 4.8.4 for the gate format). Host code runs with interrupts disabled, so only exceptions and NMIs arrive here: an exception in the
//! hypervisor is a bug and stops the machine with the faulting state printed; an NMI is counted.

use core::sync::atomic::{AtomicU64, Ordering};

/// Register state pushed by the stubs below, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// One 16-byte long-mode interrupt gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}
const _: () = assert!(core::mem::size_of::<Gate>() == 16);

impl Gate {
    const EMPTY: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: crate::hv::host::cpu::KERNEL_CODE,
            ist,
            // Present, DPL 0, 64-bit interrupt gate (type 0xE).
            type_attr: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(4096))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate::EMPTY; 256]);

pub static NMI_COUNT: AtomicU64 = AtomicU64::new(0);

/// Host interrupt vectors. Guest cores run with interrupts off; these are taken only in the short
/// windows where an emulated-mode core opens them to drain a pending host interrupt after an exit.
/// Direct-mode cores never use them: every vector on such a core belongs to the guest.
pub const VECTOR_HOST_TIMER: u8 = 0xf0;
pub const VECTOR_KICK: u8 = 0xf1;
/// The IOMMU's GA log interrupt, on the service core (which looks at its IRR, see `iommu_hw`).
pub const VECTOR_GA_LOG: u8 = 0xf2;
pub const VECTOR_SPURIOUS: u8 = 0xff;
/// Host vectors for passed-through devices' interrupts in emulated mode: remapping entry `i` of
/// the VF on a core raises `VECTOR_DEVICE_BASE + i` there (the core runs one vCPU, so the vector
/// identifies the MSI-X entry).
pub const VECTOR_DEVICE_BASE: u8 = 0x40;
pub const DEVICE_VECTORS: usize = 32;

/// Per core (by x2APIC id, below 256): device vectors taken since the vCPU last looked.
static DEVICE_PENDING: [core::sync::atomic::AtomicU32; 256] =
    [const { core::sync::atomic::AtomicU32::new(0) }; 256];

/// The device vectors (as MSI-X entry numbers) this core took since the last call.
pub fn take_device_interrupts() -> u32 {
    let id = crate::hv::host::x2apic::id() as usize;
    DEVICE_PENDING
        .get(id)
        .map_or(0, |p| p.swap(0, Ordering::AcqRel))
}

/// #SX, the security exception (APM vol. 2, 15.28).
const VECTOR_SX: u64 = 30;
/// Physical INITs taken as #SX and dropped, all cores.
static INIT_REDIRECTS: AtomicU64 = AtomicU64::new(0);

/// How many physical INITs the cores dropped (as #SX) so far.
pub fn init_redirects() -> u64 {
    INIT_REDIRECTS.load(Ordering::Relaxed)
}

extern "C" {
    static exception_stubs: [u64; 32];
    static host_interrupt_stubs: [u64; 4];
    static device_stubs: [u64; 32];
}

/// Fills the shared IDT once (bootstrap processor, before other cores start).
pub fn init() {
    // SAFETY: `exception_stubs` is a table of 32 stub addresses emitted by the assembly below.
    let stubs = unsafe { &exception_stubs };
    for (vector, &handler) in stubs.iter().enumerate() {
        let ist = match vector {
            2 => crate::hv::host::cpu::IST_NMI,
            8 => crate::hv::host::cpu::IST_DOUBLE_FAULT,
            18 => crate::hv::host::cpu::IST_MACHINE_CHECK,
            _ => 0,
        };
        // SAFETY: only the bootstrap processor writes the IDT, before any core loads it.
        unsafe { (*core::ptr::addr_of_mut!(IDT)).0[vector] = Gate::interrupt(handler, ist) };
    }
    // SAFETY: as above, for the three host-interrupt stubs.
    let host = unsafe { &host_interrupt_stubs };
    // SAFETY: a table of 32 stub addresses emitted by the assembly below.
    let devices = unsafe { &device_stubs };
    for (i, &handler) in devices.iter().enumerate() {
        // SAFETY: only the bootstrap processor writes the IDT, before any core loads it.
        unsafe {
            (*core::ptr::addr_of_mut!(IDT)).0[usize::from(VECTOR_DEVICE_BASE) + i] =
                Gate::interrupt(handler, 0)
        };
    }
    for (vector, &handler) in [
        VECTOR_HOST_TIMER,
        VECTOR_KICK,
        VECTOR_GA_LOG,
        VECTOR_SPURIOUS,
    ]
    .iter()
    .zip(host)
    {
        // SAFETY: only the bootstrap processor writes the IDT, before any core loads it.
        unsafe {
            (*core::ptr::addr_of_mut!(IDT)).0[usize::from(*vector)] = Gate::interrupt(handler, 0)
        };
    }
}

/// Gives this core its own copy of the IDT (built once by `init`) and loads it, so a core's
/// handlers can later differ (e.g. NMI handling per core role) without touching the others.
pub fn load() {
    let size = core::mem::size_of::<Idt>() as u64;
    let copy = crate::hv::host::memory::alloc_zeroed(size, 4096);
    // SAFETY: `copy` is a fresh page of exactly one IDT's size owned by this core; the template
    // is complete (init ran on the bootstrap processor before any core loads an IDT) and is
    // never written again.
    unsafe { super::phys::get_mut::<Idt>(copy).0 = (*core::ptr::addr_of!(IDT)).0 };
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (size - 1) as u16,
        base: x86_64::VirtAddr::new(copy),
    };
    // SAFETY: the copy is a complete IDT in memory that stays allocated to this core forever.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

#[no_mangle]
extern "C" fn exception_handler(frame: &ExceptionFrame) {
    if frame.vector >= 32 {
        let device = frame.vector.wrapping_sub(u64::from(VECTOR_DEVICE_BASE));
        if device < DEVICE_VECTORS as u64 {
            if let Some(p) = DEVICE_PENDING.get(crate::hv::host::x2apic::id() as usize) {
                p.fetch_or(1 << device, Ordering::AcqRel);
            }
        }
        // A host interrupt: its work is done by whoever opened the window; just end it. Spurious
        // interrupts take no EOI (APM vol. 2, 16.4.7).
        if frame.vector != u64::from(VECTOR_SPURIOUS) {
            crate::hv::host::x2apic::eoi();
        }
        return;
    }
    if frame.vector == 2 {
        NMI_COUNT.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // A physical INIT that VM_CR.R_INIT turned into #SX (APM vol. 2, 15.28; set in `svm_hw`):
    // nothing legitimate sends INIT to a running core, so it is dropped (no longer pending) and
    // counted; a guest core's vCPU reports the INIT exit that preceded it.
    if frame.vector == VECTOR_SX && frame.error_code == svm::features::SX_INIT_REDIRECTED {
        INIT_REDIRECTS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::hv::host::serial::print_unlocked(format_args!(
        "\nPANIC: exception {} (error {:#x}) on cpu apic {} at rip {:#x}, rsp {:#x}, cr2 {:#x}\n{:#x?}\n",
        frame.vector,
        frame.error_code,
        crate::hv::host::x2apic::id_or_unknown(),
        frame.rip,
        frame.rsp,
        cr2,
        frame
    ));
    crate::hv::host::shutdown::fail();
}

// Vectors that push an error code (APM vol. 2, 8.2): 8, 10-14, 17, 21, 29, 30.
core::arch::global_asm!(
    r#"
.macro STUB vector, has_error
.balign 16
exception_stub_\vector:
.if \has_error == 0
    push 0
.endif
    push \vector
    jmp exception_common
.endm

.section .text
STUB 0, 0
STUB 1, 0
STUB 2, 0
STUB 3, 0
STUB 4, 0
STUB 5, 0
STUB 6, 0
STUB 7, 0
STUB 8, 1
STUB 9, 0
STUB 10, 1
STUB 11, 1
STUB 12, 1
STUB 13, 1
STUB 14, 1
STUB 15, 0
STUB 16, 0
STUB 17, 1
STUB 18, 0
STUB 19, 0
STUB 20, 0
STUB 21, 1
STUB 22, 0
STUB 23, 0
STUB 24, 0
STUB 25, 0
STUB 26, 0
STUB 27, 0
STUB 28, 0
STUB 29, 1
STUB 30, 1
STUB 31, 0

exception_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    mov rbp, rsp
    and rsp, -16
    call exception_handler
    mov rsp, rbp
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

.irp v, 64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95
STUB \v, 0
.endr
STUB 240, 0
STUB 241, 0
STUB 242, 0
STUB 255, 0

.section .rodata
.balign 8
.global device_stubs
device_stubs:
.irp v, 64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95
    .quad exception_stub_\v
.endr
.global host_interrupt_stubs
host_interrupt_stubs:
    .quad exception_stub_240
    .quad exception_stub_241
    .quad exception_stub_242
    .quad exception_stub_255
.global exception_stubs
exception_stubs:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\v
.endr
"#
);
