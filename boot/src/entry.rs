//! The image's first instructions: Multiboot1 and Multiboot2 headers, the 32-bit entry that builds an
//! identity map and enters long mode, and the real-mode trampoline application processors start in.
//!
//! Both loaders enter `_start` in 32-bit protected mode with paging off (Multiboot1 spec 3.2,
//! Multiboot2 spec 3.3 for i386), EAX = magic, EBX = physical address of the information block. We
//! identity-map the first [`IDENTITY_MAP_GIB`] GiB with 2 MiB pages (no 1 GiB pages: `-cpu qemu64` and
//! older parts lack them), enable PAE + long mode + paging, and call the kernel's
//! `extern "C" fn boot_main(magic: u32, info: u32) -> !` on a boot stack.

use core::sync::atomic::AtomicU64;

/// How much physical address space the boot page tables identity-map.
pub const IDENTITY_MAP_GIB: u64 = 64;

/// The stack top the next application processor takes; written by the bootstrap processor before it
/// sends the startup IPI, read by the AP in `ap_long_mode`.
#[no_mangle]
pub static AP_STACK_TOP: AtomicU64 = AtomicU64::new(0);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static boot_pml4: u8;
}

/// The real-mode trampoline code; copy it to a page below 1 MiB and send that page in the SIPI.
pub fn ap_trampoline() -> &'static [u8] {
    // SAFETY: both symbols are labels in the same section of this image, start before end, and the
    // bytes between them are immutable code.
    unsafe {
        let start = core::ptr::addr_of!(ap_trampoline_start);
        let end = core::ptr::addr_of!(ap_trampoline_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// Physical address of the boot PML4 (identity map), for CR3 of every core and for the trampoline.
pub fn boot_page_table() -> u64 {
    core::ptr::addr_of!(boot_pml4) as u64
}

core::arch::global_asm!(
    r#"
.section .multiboot, "a"
/* Multiboot2 header (Multiboot2 spec 3.1): magic, architecture 0 (i386), length, checksum, tags. */
.balign 8
mb2_header_start:
    .long 0xE85250D6
    .long 0
    .long mb2_header_end - mb2_header_start
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header_start))
    /* Module alignment tag (type 6): page-align modules. */
    .short 6
    .short 0
    .long 8
    /* End tag. */
    .short 0
    .short 0
    .long 8
mb2_header_end:

/* Multiboot1 header (Multiboot spec 3.1): flags bit 0 page-align modules, bit 1 memory map. */
.balign 4
    .long 0x1BADB002
    .long 0x00000003
    .long 0x100000000 - (0x1BADB002 + 0x00000003)

.section .text.boot, "ax"
.code32
.global _start
_start:
    cli
    cld
    mov esp, offset boot_stack_top
    mov [boot_magic], eax
    mov [boot_info], ebx

    /* Long mode present? CPUID 8000_0001 EDX bit 29. */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb no_long_mode
    mov eax, 0x80000001
    cpuid
    bt edx, 29
    jnc no_long_mode

    /* PML4[0] -> PDPT; PDPT[i] -> PD[i]; each PD maps 1 GiB with 2 MiB pages (present, write, PS). */
    mov edi, offset boot_pml4
    mov eax, offset boot_pdpt
    or eax, 0x3
    mov [edi], eax
    mov dword ptr [edi + 4], 0

    mov edi, offset boot_pdpt
    mov eax, offset boot_pds
    or eax, 0x3
    mov ecx, {gib}
2:
    mov [edi], eax
    mov dword ptr [edi + 4], 0
    add eax, 4096
    add edi, 8
    loop 2b

    mov edi, offset boot_pds
    xor eax, eax          /* physical address bits 31:0 */
    xor edx, edx          /* physical address bits 63:32 */
    mov ecx, {gib} * 512
3:
    mov ebx, eax
    or ebx, 0x83
    mov [edi], ebx
    mov [edi + 4], edx
    add eax, 0x200000
    adc edx, 0
    add edi, 8
    loop 3b

    mov eax, cr4
    or eax, 0x20          /* PAE */
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xC0000080   /* EFER */
    rdmsr
    or eax, 0x100         /* LME */
    wrmsr
    mov eax, cr0
    or eax, 0x80000001    /* PG | PE */
    mov cr0, eax
    lgdt [boot_gdt_ptr]
    ljmp 0x08, offset long_mode_entry

no_long_mode:
    mov esi, offset no_long_mode_msg
4:
    mov al, [esi]
    test al, al
    jz 6f
    mov dx, 0x3FD
5:
    in al, dx
    test al, 0x20
    jz 5b
    mov al, [esi]
    mov dx, 0x3F8
    out dx, al
    inc esi
    jmp 4b
6:
    cli
    hlt
    jmp 6b

.code64
long_mode_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, [rip + boot_magic]
    mov esi, [rip + boot_info]
    xor ebp, ebp
    call boot_main
7:
    cli
    hlt
    jmp 7b

/* Application processors: copied to a page below 1 MiB, entered in real mode at offset 0 by the
   startup IPI. Goes straight to long mode (APM vol. 2, 14.8: paging and protection enabled together)
   on the boot page tables, then jumps to the kernel image. */
.code16
.global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    mov ax, cs
    mov ds, ax
    /* o32 lgdt [disp16]: 66 0F 01 /2, ModRM 0x16 (mod 00, rm 110 = disp16, DS-relative) */
    .byte 0x66, 0x0F, 0x01, 0x16
    .short ap_gdt_ptr - ap_trampoline_start
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax
    /* ljmp 0x08:ap_long_mode with a 32-bit offset */
    .byte 0x66, 0xEA
    .long ap_long_mode
    .short 0x08
.balign 8
ap_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
.global ap_trampoline_end
ap_trampoline_end:

.code64
ap_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, [rip + AP_STACK_TOP]
    xor ebp, ebp
    call ap_main
8:
    cli
    hlt
    jmp 8b

.section .rodata.boot, "a"
.balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF   /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF   /* 0x10: data, DPL 0 */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
no_long_mode_msg:
    .asciz "didvisor: error: this CPU has no long mode (64-bit); halting.\r\n"

.section .bss.boot, "aw", @nobits
.balign 4096
.global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pds:
    .skip 4096 * {gib}
boot_stack:
    .skip 65536
boot_stack_top:
boot_magic:
    .skip 4
boot_info:
    .skip 4
"#,
    gib = const IDENTITY_MAP_GIB,
);
