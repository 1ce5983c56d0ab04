/*
 * avictest entry: Multiboot1 header, 32-bit protected mode -> long mode with
 * an identity map of the first 4 GiB in 2 MiB pages (RAM, and the MMIO of
 * the IOMMU and PCI devices below 4 GiB), then avictest_main().
 *
 * The page-table entries have the U bit set so that the same tables serve as
 * the nested page table of the test guest (NPT walks are user accesses).
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .section .bss
    .align 4096
    .globl pml4
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4 * 4096
stack:  .skip 16384
stack_top:

    .section .data
    .align 16
    .globl gdt
gdt:
    .quad 0
    .quad 0x00af9b000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf93000000ffff        /* 0x10: data */
    .quad 0x00cf9b000000ffff        /* 0x18: 32-bit code */
gdt_end:
    .globl gdtr
gdtr:
    .word gdt_end - gdt - 1
    .quad gdt

    .section .text
    .code32
    .globl _start
_start:
    cli
    cld
    /* zero .bss (page tables, stacks, VMCBs) */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    mov $(pdpt + 0x7), %eax
    mov %eax, pml4
    mov $(pd + 0x7), %eax
    mov %eax, pdpt
    add $4096, %eax
    mov %eax, pdpt + 8
    add $4096, %eax
    mov %eax, pdpt + 16
    add $4096, %eax
    mov %eax, pdpt + 24
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x87, %eax                  /* P, RW, U, PS */
    mov %eax, pd(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 1b

    lgdt gdtr
    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx           /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax            /* PG, PE */
    mov %eax, %cr0
    ljmp $0x08, $long_mode

    .code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $stack_top, %rsp
    call avictest_main
2:  hlt
    jmp 2b

/*
 * Second CPU start-up.  tramp_start..tramp_end is copied by the BSP to a
 * page below 1 MiB whose number is the SIPI vector; the AP starts there in
 * real mode with CS = that page << 8, IP = 0.  It loads the GDT, enters
 * 32-bit protected mode (ap32, in place), then long mode on the BSP's page
 * tables, and calls ap_main() on the stack at ap_stack_top.
 */
    .code16
    .globl tramp_start, tramp_end
tramp_start:
    cli
    mov %cs, %ax
    mov %ax, %ds
    lgdtl tramp_gdtr - tramp_start
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x18, $ap32
    .align 4
tramp_gdtr:
    .word gdt_end - gdt - 1
    .long gdt
tramp_end:

    .code32
ap32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx           /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax            /* PG, PE */
    mov %eax, %cr0
    ljmp $0x08, $ap_long

    .code64
ap_long:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov ap_stack_top(%rip), %rsp
    call ap_main
3:  hlt
    jmp 3b

/*
 * uint64_t svm_run(uint64_t vmcb_pa): VMRUN until the next #VMEXIT.
 * The guest clobbers every register VMRUN does not switch, so the
 * callee-saved ones are kept on the host stack (RSP is restored by #VMEXIT).
 */
    .globl svm_run
svm_run:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rdi, %rax
    vmrun %rax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

/*
 * Guest code pieces whose RIPs the host checks: each ends with VMMCALL.
 * (The labels *_insn mark the instruction that is expected to exit, *_next
 * the one after it.)
 */
    .globl g_tmict, g_tmict_insn, g_tmict_next
g_tmict:
    mov $0x838, %ecx
    mov $0x12345, %eax
    xor %edx, %edx
g_tmict_insn:
    wrmsr
g_tmict_next:
    vmmcall

    .globl g_tmcct, g_tmcct_insn
g_tmcct:
    mov $0x839, %ecx
g_tmcct_insn:
    rdmsr
    vmmcall

    .globl g_selfipi, g_selfipi_insn
g_selfipi:
    mov $0x83f, %ecx
    mov $0x41, %eax
    xor %edx, %edx
g_selfipi_insn:
    wrmsr
    vmmcall

    .globl g_nmi_icr, g_nmi_icr_next
g_nmi_icr:
    mov $0x830, %ecx
    mov $0x400, %eax                /* NMI, physical destination 0 */
    xor %edx, %edx
    wrmsr
g_nmi_icr_next:
    vmmcall

/* g_icr: WRMSR to the x2APIC ICR of the value the host left in g_icr_value
 * (general registers other than RAX are not in the VMCB). */
    .globl g_icr, g_icr_next, g_icr_value
g_icr:
    mov g_icr_value(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    mov $0x830, %ecx
    wrmsr
g_icr_next:
    vmmcall

    .section .data
    .align 8
g_icr_value: .quad 0

/* g_msr_rd / g_msr_wr: RDMSR into / WRMSR of g_msr_value, MSR g_msr_num */
    .section .text
    .globl g_msr_rd, g_msr_rd_insn, g_msr_wr, g_msr_wr_insn, g_msr_wr_next
g_msr_rd:
    mov g_msr_num(%rip), %ecx
g_msr_rd_insn:
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, g_msr_value(%rip)
    vmmcall

g_msr_wr:
    mov g_msr_num(%rip), %ecx
    mov g_msr_value(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
g_msr_wr_insn:
    wrmsr
g_msr_wr_next:
    vmmcall

    .section .data
    .align 8
    .globl g_msr_num, g_msr_value
g_msr_num:      .quad 0
g_msr_value:    .quad 0

/*
 * The L1's own IDT (host_idt in avictest.c).  rdmsr_safe / wrmsr_safe arm
 * host_gp_fixup with their recovery address; host_gp (#GP) resumes there,
 * dropping the error code.  A #GP with nothing armed ends the run (fail).
 * host_msi counts an interrupt (the IOMMU's MSI, vector 90h) and EOIs the
 * x2APIC; host_iret takes the spurious vector.
 */
    .section .text
    .globl host_gp, host_msi, host_iret, rdmsr_safe, wrmsr_safe
host_gp:
    push %rax
    mov host_gp_fixup(%rip), %rax
    test %rax, %rax
    jz host_gp_unexpected
    mov %rax, 16(%rsp)              /* RIP, above RAX and the error code */
    movq $0, host_gp_fixup(%rip)
    pop %rax
    add $8, %rsp
    iretq
host_gp_unexpected:
    lea host_gp_msg(%rip), %rsi
    mov $0xe9, %dx
host_gp_puts:
    lodsb
    test %al, %al
    jz host_gp_exit
    out %al, %dx
    jmp host_gp_puts
host_gp_exit:
    mov $0xf4, %dx
    mov $0x11, %eax
    out %eax, %dx
host_gp_hlt:
    hlt
    jmp host_gp_hlt

host_msi:
    push %rax
    push %rcx
    push %rdx
    lock incl host_msi_count(%rip)
    mov $0x80b, %ecx                /* x2APIC EOI */
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    pop %rdx
    pop %rcx
    pop %rax
    iretq

host_iret:
    iretq

/* int rdmsr_safe(uint32_t msr, uint64_t *val): 0, or 1 after a #GP */
rdmsr_safe:
    lea rdmsr_safe_gp(%rip), %rax
    mov %rax, host_gp_fixup(%rip)
    mov %edi, %ecx
    rdmsr
    movq $0, host_gp_fixup(%rip)
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, (%rsi)
    xor %eax, %eax
    ret
rdmsr_safe_gp:
    mov $1, %eax
    ret

/* int wrmsr_safe(uint32_t msr, uint64_t val): 0, or 1 after a #GP */
wrmsr_safe:
    lea wrmsr_safe_gp(%rip), %rax
    mov %rax, host_gp_fixup(%rip)
    mov %edi, %ecx
    mov %rsi, %rax
    mov %rsi, %rdx
    shr $32, %rdx
    wrmsr
    movq $0, host_gp_fixup(%rip)
    xor %eax, %eax
    ret
wrmsr_safe_gp:
    mov $1, %eax
    ret

    .section .data
    .align 8
    .globl host_msi_count
host_gp_fixup:  .quad 0
host_msi_count: .long 0
host_gp_msg:    .asciz "FAIL unexpected #GP in the L1\n"

/*
 * xAVIC pieces: 32-bit MMIO accesses to the APIC BAR page at FEE00000h.
 * gx_write stores gx_value at gx_addr; gx_read / gx_readb load a dword / a
 * byte from gx_addr into gx_result; gx_icr writes gx_icr_hi to ICR high
 * (310h), then gx_icr_lo to ICR low (300h), which sends.
 */
    .section .text
    .globl gx_write, gx_write_insn, gx_write_next
gx_write:
    mov gx_addr(%rip), %rdx
    mov gx_value(%rip), %eax
gx_write_insn:
    movl %eax, (%rdx)
gx_write_next:
    vmmcall

    .globl gx_read, gx_read_insn
gx_read:
    mov gx_addr(%rip), %rdx
gx_read_insn:
    movl (%rdx), %eax
    mov %rax, gx_result(%rip)
    vmmcall

    .globl gx_readb, gx_readb_insn
gx_readb:
    mov gx_addr(%rip), %rdx
gx_readb_insn:
    movzbl (%rdx), %eax
    mov %rax, gx_result(%rip)
    vmmcall

    .globl gx_icr, gx_icr_insn, gx_icr_next
gx_icr:
    mov $0xfee00000, %edx
    mov gx_icr_hi(%rip), %eax
    movl %eax, 0x310(%rdx)
    mov gx_icr_lo(%rip), %eax
gx_icr_insn:
    movl %eax, 0x300(%rdx)
gx_icr_next:
    vmmcall

    .section .data
    .align 8
    .globl gx_addr, gx_value, gx_result, gx_icr_hi, gx_icr_lo
gx_addr:    .quad 0xfee00000
gx_value:   .quad 0
gx_result:  .quad 0
gx_icr_hi:  .quad 0
gx_icr_lo:  .quad 0

    .section .note.GNU-stack, "", @progbits
