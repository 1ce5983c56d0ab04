/*
 * avictest: a minimal bare-metal L1 "hypervisor" that checks the SVM AVIC /
 * x2AVIC emulation of the QEMU patch series in tests/qemu-avic/ (AMD64 APM
 * vol. 2, 15.29).  It enables SVM, builds one VMCB with nested paging (an
 * identity map shared with the host) and, where the CPU advertises them,
 * AVIC + x2AVIC with a backing page and a physical APIC ID table, and runs
 * small 64-bit guest pieces that use the x2APIC MSRs.
 *
 * Output goes to the debug console (port 0xE9), one line per check:
 * "ok <name>" or "FAIL <name> ...".  The last line is "avictest: N passed,
 * M failed", and the run ends through isa-debug-exit at 0xF4 (0x10: all
 * passed, 0x11: some failed).  `cargo xtask qemu-avic smoke` builds and runs
 * it; see ../README.md.
 */
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#define PAGE __attribute__((aligned(4096)))

/* ---- I/O and CPU helpers ---------------------------------------------- */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;

    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;

    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return lo | ((uint64_t)hi << 32);
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v),
                     "d"((uint32_t)(v >> 32)) : "memory");
}

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b,
                         uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
                     : "a"(leaf), "c"(0));
}

#define READ_CR(n) ({ uint64_t v_; \
    __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v_)); v_; })

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;

    while (n--) {
        *p++ = (uint8_t)c;
    }
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;

    while (n--) {
        *p++ = *q++;
    }
    return d;
}

static void puts_(const char *s)
{
    while (*s) {
        outb(0xe9, (uint8_t)*s++);
    }
}

static void puthex(uint64_t v)
{
    char buf[19];
    int i;

    buf[0] = '0';
    buf[1] = 'x';
    for (i = 0; i < 16; i++) {
        buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
    }
    buf[18] = 0;
    /* skip leading zeros, keep at least one digit */
    for (i = 2; i < 17 && buf[i] == '0'; i++) {
    }
    puts_("0x");
    puts_(buf + i);
}

static void putdec(unsigned v)
{
    char buf[12];
    int i = 11;

    buf[i] = 0;
    do {
        buf[--i] = '0' + v % 10;
        v /= 10;
    } while (v);
    puts_(buf + i);
}

static unsigned passed, failed;

static void check(const char *name, bool ok)
{
    puts_(ok ? "ok " : "FAIL ");
    puts_(name);
    puts_("\n");
    if (ok) {
        passed++;
    } else {
        failed++;
    }
}

/* check_eq: print both values on failure */
static void check_eq(const char *name, uint64_t got, uint64_t want)
{
    if (got == want) {
        check(name, true);
        return;
    }
    puts_("FAIL ");
    puts_(name);
    puts_(": got ");
    puthex(got);
    puts_(", expected ");
    puthex(want);
    puts_("\n");
    failed++;
}

/* ---- SVM structures ---------------------------------------------------- */

extern uint8_t pml4[];
extern uint8_t gdt[];
extern struct { uint16_t limit; uint64_t base; } __attribute__((packed)) gdtr;
uint64_t svm_run(uint64_t vmcb_pa);

static uint8_t hsave[4096] PAGE;
static uint8_t vmcb[4096] PAGE;
static uint8_t msrpm[8192] PAGE;
static uint8_t iopm[12288] PAGE;
static uint8_t backing[4][4096] PAGE;
static uint64_t phys_table[512] PAGE;
static uint32_t logical_table[1024] PAGE;
static uint64_t guest_idt[512] PAGE;
static uint8_t guest_stack[16384] PAGE;

#define MSR_EFER        0xc0000080
#define MSR_VM_HSAVE_PA 0xc0010117
#define EFER_SVME       (1 << 12)

/* VMCB control area (APM vol. 2, Appendix B, Table B-1) */
#define VMCB_INTERCEPT_EXC      0x008
#define VMCB_INTERCEPT_MISC1    0x00c
#define VMCB_INTERCEPT_MISC2    0x010
#define VMCB_IOPM_BASE          0x040
#define VMCB_MSRPM_BASE         0x048
#define VMCB_ASID               0x058
#define VMCB_INT_CTL            0x060
#define VMCB_EXITCODE           0x070
#define VMCB_EXITINFO1          0x078
#define VMCB_EXITINFO2          0x080
#define VMCB_NP_ENABLE          0x090
#define VMCB_AVIC_APIC_BAR      0x098
#define VMCB_N_CR3              0x0b0
#define VMCB_AVIC_BACKING       0x0e0
#define VMCB_AVIC_LOGICAL       0x0f0
#define VMCB_AVIC_PHYSICAL      0x0f8
/* state save area (Table B-2), at 400h */
#define VMCB_ES                 0x400
#define VMCB_CS                 0x410
#define VMCB_SS                 0x420
#define VMCB_DS                 0x430
#define VMCB_FS                 0x440
#define VMCB_GS                 0x450
#define VMCB_GDTR               0x460
#define VMCB_IDTR               0x480
#define VMCB_TR                 0x490
#define VMCB_CPL                0x4cb
#define VMCB_EFER               0x4d0
#define VMCB_CR4                0x548
#define VMCB_CR3                0x550
#define VMCB_CR0                0x558
#define VMCB_DR7                0x560
#define VMCB_DR6                0x568
#define VMCB_RFLAGS             0x570
#define VMCB_RIP                0x578
#define VMCB_RSP                0x5d8
#define VMCB_RAX                0x5f8
#define VMCB_G_PAT              0x668

#define INT_CTL_AVIC            (1U << 31)
#define INT_CTL_X2AVIC          (1U << 30)

#define EXIT_EXCP_BASE          0x040
#define EXIT_MSR                0x07c
#define EXIT_HLT                0x078
#define EXIT_VMMCALL            0x081
#define EXIT_AVIC_INCOMPLETE_IPI 0x401
#define EXIT_AVIC_NOACCEL       0x402

/* physical APIC ID table entry (15.29.3) */
#define PHYS_VALID              (1ULL << 63)
#define PHYS_RUNNING            (1ULL << 62)

/*
 * The VMCB the accessors below work on: the BSP's own (vmcb) or, while the
 * BSP prepares a run for the second CPU, that CPU's (vmcb_ap).  Only the
 * BSP writes VMCBs; the AP just runs them.
 */
static uint8_t *vm = vmcb;

static void w64(uint32_t off, uint64_t v)
{
    *(volatile uint64_t *)(vm + off) = v;
}

static void w32(uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(vm + off) = v;
}

static uint64_t r64(uint32_t off)
{
    return *(volatile uint64_t *)(vm + off);
}

static void seg(uint32_t off, uint16_t sel, uint16_t attrib, uint32_t limit)
{
    *(volatile uint16_t *)(vm + off) = sel;
    *(volatile uint16_t *)(vm + off + 2) = attrib;
    *(volatile uint32_t *)(vm + off + 4) = limit;
    *(volatile uint64_t *)(vm + off + 8) = 0;
}

static uint32_t page_ld(int page, uint32_t off)
{
    return *(volatile uint32_t *)(backing[page] + off);
}

static void page_st(int page, uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(backing[page] + off) = v;
}

static void page_set_vec(int page, uint32_t base, int vec)
{
    uint32_t off = base + (vec >> 5) * 16;

    page_st(page, off, page_ld(page, off) | (1U << (vec & 31)));
}

static bool page_test_vec(int page, uint32_t base, int vec)
{
    return page_ld(page, base + (vec >> 5) * 16) & (1U << (vec & 31));
}

/* All eight 32-bit words of the 256-bit register at @base are zero. */
static bool page_reg_clear(int page, uint32_t base)
{
    int i;

    for (i = 0; i < 8; i++) {
        if (page_ld(page, base + i * 16)) {
            return false;
        }
    }
    return true;
}

#define APIC_TPR    0x080
#define APIC_ISR    0x100
#define APIC_TMR    0x180
#define APIC_IRR    0x200
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define APIC_TMICT  0x380

/* ---- guest side ----------------------------------------------------------- */

struct iframe;

static volatile unsigned g_nlog;
static volatile uint8_t g_log[16];
static volatile bool g_isr_before[16], g_isr_after[16];
static volatile uint64_t g_val[8];

static bool guest_isr(int vec)
{
    return (rdmsr(0x810 + (vec >> 5)) >> (vec & 31)) & 1;
}

static void guest_irq(int vec)
{
    unsigned n = g_nlog;

    if (n < 16) {
        g_log[n] = vec;
        g_isr_before[n] = guest_isr(vec);
    }
    wrmsr(0x80b, 0);                 /* EOI */
    if (n < 16) {
        g_isr_after[n] = guest_isr(vec);
    }
    g_nlog = n + 1;
}

#define GUEST_HANDLER(v) \
    __attribute__((interrupt)) static void guest_irq_##v(struct iframe *f) \
    { \
        (void)f; \
        guest_irq(0x##v); \
    }
GUEST_HANDLER(41)
GUEST_HANDLER(45)
GUEST_HANDLER(50)
GUEST_HANDLER(62)
GUEST_HANDLER(71)

__attribute__((interrupt)) static void guest_irq_other(struct iframe *f)
{
    (void)f;
    guest_irq(0xff);
}

static void idt_set(int vec, void (*h)(struct iframe *))
{
    uint64_t a = (uint64_t)h;

    guest_idt[vec * 2] = (a & 0xffff) | (0x08ULL << 16) |
                         (0x8e00ULL << 32) | ((a >> 16 & 0xffff) << 48);
    guest_idt[vec * 2 + 1] = a >> 32;
}

/* guest pieces written in assembly (entry.S) */
extern uint8_t g_tmict[], g_tmict_insn[], g_tmict_next[];
extern uint8_t g_tmcct[], g_tmcct_insn[];
extern uint8_t g_selfipi[], g_selfipi_insn[];
extern uint8_t g_nmi_icr[], g_nmi_icr_next[];
extern uint8_t g_icr[], g_icr_next[];
extern volatile uint64_t g_icr_value;
extern uint8_t g_msr_rd[], g_msr_rd_insn[];
extern uint8_t g_msr_wr[], g_msr_wr_insn[], g_msr_wr_next[];
extern volatile uint64_t g_msr_num, g_msr_value;

/* the L1's own IDT: #GP recovery and an interrupt counter (entry.S) */
extern uint8_t host_gp[], host_msi[], host_iret[];
extern volatile uint32_t host_msi_count;
int rdmsr_safe(uint32_t msr, uint64_t *val);
int wrmsr_safe(uint32_t msr, uint64_t val);
static uint64_t host_idt[512] PAGE;

static void host_idt_set(int vec, void *h)
{
    uint64_t a = (uint64_t)h;

    host_idt[vec * 2] = (a & 0xffff) | (0x08ULL << 16) |
                        (0x8e00ULL << 32) | ((a >> 16 & 0xffff) << 48);
    host_idt[vec * 2 + 1] = a >> 32;
}

static void host_idt_load(void)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } idtr = { sizeof(host_idt) - 1, (uint64_t)host_idt };

    host_idt_set(13, host_gp);
    host_idt_set(0x90, host_msi);           /* IOMMU_MSI_VECTOR */
    host_idt_set(0xff, host_iret);          /* spurious */
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

static void guest_reset_log(void)
{
    int i;

    g_nlog = 0;
    for (i = 0; i < 16; i++) {
        g_log[i] = 0;
        g_isr_before[i] = g_isr_after[i] = false;
    }
    for (i = 0; i < 8; i++) {
        g_val[i] = 0;
    }
}

/*
 * Self-IPIs through SELF_IPI and through ICR with the self shorthand, with
 * interrupts masked, then unmasked: both must arrive through the guest IDT,
 * higher vector first, each in vISR while its handler runs and cleared by
 * the EOI.
 */
static void guest_selfipi_eoi(void)
{
    __asm__ volatile("cli");
    wrmsr(0x83f, 0x41);
    wrmsr(0x830, (1ULL << 18) | 0x62);
    g_val[0] = rdmsr(0x822);         /* IRR 64-95 */
    g_val[1] = rdmsr(0x823);         /* IRR 96-127 */
    g_val[2] = g_nlog;
    __asm__ volatile("sti; nop; nop; cli" ::: "memory");
}

/*
 * vTPR: a vector whose class is not above TPR stays pending until TPR is
 * lowered through CR8 (which reads vTPR[7:4]).
 */
static void guest_tpr(void)
{
    uint64_t cr8;

    __asm__ volatile("sti");
    wrmsr(0x808, 0x50);
    wrmsr(0x83f, 0x45);
    __asm__ volatile("nop; nop" ::: "memory");
    g_val[0] = g_nlog;
    __asm__ volatile("mov %%cr8, %0" : "=r"(cr8));
    g_val[1] = cr8;
    g_val[2] = rdmsr(0x80a);         /* PPR */
    __asm__ volatile("mov %0, %%cr8; nop; nop" : : "r"(0ULL) : "memory");
    g_val[3] = g_nlog;
    __asm__ volatile("cli");
}

/* Take whatever the host left pending in the backing page. */
/* MOV to CR8, then MOV from CR8 (V_TPR, 15.29.4.1). */
static void guest_cr8(void)
{
    uint64_t cr8;

    __asm__ volatile("mov %%cr8, %0" : "=r"(cr8));
    g_val[0] = cr8;
    __asm__ volatile("mov %0, %%cr8" : : "r"(9ULL));
}

static void guest_sti(void)
{
    __asm__ volatile("sti; nop; nop; cli" ::: "memory");
}

static void guest_done(void)
{
    __asm__ volatile("vmmcall");
    for (;;) {
        __asm__ volatile("hlt");
    }
}

/* ---- host side ------------------------------------------------------------ */

static bool have_avic, have_x2avic, have_npt;
static unsigned maxphyaddr;     /* CPUID 8000_0008 EAX[7:0] */

struct exit {
    uint64_t code, info1, info2, rip;
};

/*
 * Build the VMCB for one run of @entry: 64-bit guest on the host's own page
 * tables and GDT, identity nested paging, its own IDT and stack.
 * @avic: set AVIC_ENABLE | x2AVIC_ENABLE in int_ctl.  @trap_x2apic: let the
 * MSR permission map intercept 800h-8FFh.
 */
static void vmcb_setup(void *entry, bool avic, bool trap_x2apic)
{
    uint64_t *sp;

    memset(vm, 0, 4096);
    memset(msrpm, 0, sizeof(msrpm));
    if (trap_x2apic) {
        /* MSRs 0-1FFFh: 2 bits each from byte 0; 800h-8FFh = bytes 200h-23Fh */
        memset(msrpm + 0x200, 0xff, 0x40);
    }
    /* #UD, #DF, #GP, #PF */
    w32(VMCB_INTERCEPT_EXC, (1 << 6) | (1 << 8) | (1 << 13) | (1 << 14));
    /* HLT, MSR_PROT, SHUTDOWN */
    w32(VMCB_INTERCEPT_MISC1, (1U << 24) | (1U << 28) | (1U << 31));
    /* VMRUN, VMMCALL */
    w32(VMCB_INTERCEPT_MISC2, (1 << 0) | (1 << 1));
    w64(VMCB_IOPM_BASE, (uint64_t)iopm);
    w64(VMCB_MSRPM_BASE, (uint64_t)msrpm);
    w32(VMCB_ASID, 1);
    w64(VMCB_NP_ENABLE, 1);
    w64(VMCB_N_CR3, (uint64_t)pml4);
    if (avic) {
        w32(VMCB_INT_CTL, INT_CTL_AVIC | INT_CTL_X2AVIC);
        w64(VMCB_AVIC_APIC_BAR, 0xfee00000);
        w64(VMCB_AVIC_BACKING, (uint64_t)backing[0]);
        w64(VMCB_AVIC_LOGICAL, (uint64_t)logical_table);
        w64(VMCB_AVIC_PHYSICAL, (uint64_t)phys_table | 7);  /* max index 7 */
    }

    seg(VMCB_CS, 0x08, 0xa9b, 0xffffffff);
    seg(VMCB_DS, 0x10, 0xc93, 0xffffffff);
    seg(VMCB_ES, 0x10, 0xc93, 0xffffffff);
    seg(VMCB_SS, 0x10, 0xc93, 0xffffffff);
    seg(VMCB_FS, 0x10, 0xc93, 0xffffffff);
    seg(VMCB_GS, 0x10, 0xc93, 0xffffffff);
    seg(VMCB_TR, 0, 0x08b, 0x67);
    w32(VMCB_GDTR + 4, gdtr.limit);
    w64(VMCB_GDTR + 8, gdtr.base);
    w32(VMCB_IDTR + 4, sizeof(guest_idt) - 1);
    w64(VMCB_IDTR + 8, (uint64_t)guest_idt);
    w64(VMCB_EFER, rdmsr(MSR_EFER));
    w64(VMCB_CR0, READ_CR(0));
    w64(VMCB_CR3, READ_CR(3));
    w64(VMCB_CR4, READ_CR(4));
    w64(VMCB_DR6, 0xffff0ff0);
    w64(VMCB_DR7, 0x400);
    w64(VMCB_RFLAGS, 2);
    w64(VMCB_G_PAT, 0x0007040600070406ULL);
    w64(VMCB_RIP, (uint64_t)entry);
    /* a C guest function returns into guest_done (VMMCALL) */
    sp = (uint64_t *)(guest_stack + sizeof(guest_stack)) - 2;
    sp[0] = (uint64_t)guest_done;
    w64(VMCB_RSP, (uint64_t)sp);
}

/* Fresh AVIC state: backing pages zeroed, physical table entry 0 = us. */
static void avic_reset(void)
{
    memset(backing, 0, sizeof(backing));
    memset(phys_table, 0, sizeof(phys_table));
    memset(logical_table, 0, sizeof(logical_table));
    page_st(0, 0x20, 0);            /* x2APIC ID 0 */
    phys_table[0] = PHYS_VALID | PHYS_RUNNING | (uint64_t)backing[0];
}

static struct exit run(void)
{
    struct exit e;

    guest_reset_log();
    svm_run((uint64_t)vmcb);
    e.code = r64(VMCB_EXITCODE);
    e.info1 = r64(VMCB_EXITINFO1);
    e.info2 = r64(VMCB_EXITINFO2);
    e.rip = r64(VMCB_RIP);
    return e;
}

static void test_selfipi_eoi(void)
{
    struct exit e;

    avic_reset();
    vmcb_setup(guest_selfipi_eoi, true, false);
    e = run();
    check_eq("selfipi: no exit before the guest's VMMCALL", e.code,
             EXIT_VMMCALL);
    check_eq("selfipi: vIRR 0x41 (SELF_IPI) seen through MSR 822h", g_val[0],
             1U << 1);
    check_eq("selfipi: vIRR 0x62 (ICR self) seen through MSR 823h", g_val[1],
             1U << 2);
    check_eq("selfipi: nothing delivered while RFLAGS.IF=0", g_val[2], 0);
    check_eq("selfipi: two interrupts delivered through the guest IDT",
             g_nlog, 2);
    check_eq("selfipi: higher priority first (0x62)", g_log[0], 0x62);
    check_eq("selfipi: then 0x41", g_log[1], 0x41);
    check("selfipi: vector in vISR inside the handler",
          g_isr_before[0] && g_isr_before[1]);
    check("selfipi: EOI cleared vISR", !g_isr_after[0] && !g_isr_after[1]);
    check("selfipi: backing page IRR and ISR empty at the end",
          page_reg_clear(0, APIC_IRR) && page_reg_clear(0, APIC_ISR));
    check_eq("selfipi: ICR (300h) holds the ICR write",
             page_ld(0, APIC_ICR_LO), (1U << 18) | 0x62);
}

static void test_tpr(void)
{
    struct exit e;

    avic_reset();
    vmcb_setup(guest_tpr, true, false);
    e = run();
    check_eq("tpr: no exit", e.code, EXIT_VMMCALL);
    check_eq("tpr: 0x45 held back by TPR 0x50", g_val[0], 0);
    check_eq("tpr: CR8 reads vTPR[7:4]", g_val[1], 5);
    check_eq("tpr: PPR = TPR", g_val[2], 0x50);
    check_eq("tpr: delivered after CR8 <- 0", g_val[3], 1);
    check_eq("tpr: vector 0x45", g_log[0], 0x45);
    check_eq("tpr: backing page TPR = 0", page_ld(0, APIC_TPR), 0);

    /* V_TPR (15.29.3.1, 15.29.4.1): TPR writes copy bits 7:4 into it */
    avic_reset();
    g_msr_num = 0x808;
    g_msr_value = 0x7c;
    vmcb_setup(g_msr_wr, true, false);
    e = run();
    check_eq("v_tpr: TPR write 7Ch through MSR 808h: no exit", e.code,
             EXIT_VMMCALL);
    check_eq("v_tpr: VMCB V_TPR (int_ctl[3:0]) = 7 after #VMEXIT",
             r64(VMCB_INT_CTL) & 0xf, 7);
    avic_reset();
    vmcb_setup(guest_cr8, true, false);
    w32(VMCB_INT_CTL, INT_CTL_AVIC | INT_CTL_X2AVIC | 6);   /* V_TPR 6 */
    e = run();
    check_eq("v_tpr: CR8 read returns V_TPR (6; page TPR 0)", g_val[0], 6);
    check_eq("v_tpr: CR8 <- 9: VMCB V_TPR = 9", r64(VMCB_INT_CTL) & 0xf, 9);
    check_eq("v_tpr: CR8 <- 9: backing page TPR = 90h", page_ld(0, APIC_TPR),
             0x90);
}

/*
 * x2APIC mode's access checks come before AVIC's (15.29.10; APM 16.11,
 * Table 16-6): #GP for a write to a read-only register, a read of a
 * write-only one, an MSR x2APIC mode lacks and reserved bits.  SELF_IPI is
 * handled as an ICR self-IPI: vector < 16 is 401h cause 4.
 */
static struct exit run_msr(void *entry, uint32_t msr, uint64_t val)
{
    avic_reset();
    g_msr_num = msr;
    g_msr_value = val;
    vmcb_setup(entry, true, false);
    return run();
}

#define EXIT_GP (EXIT_EXCP_BASE + 13)

static void test_x2apic_checks(void)
{
    static const struct {
        const char *name;
        bool write;
        uint32_t msr;
        uint64_t val;
    } gp[] = {
        { "ID write (802h, read-only)", true, 0x802, 5 },
        { "LDR write (80Dh, read-only)", true, 0x80d, 1 },
        { "EOI read (80Bh, write-only)", false, 0x80b, 0 },
        { "SELF_IPI read (83Fh, write-only)", false, 0x83f, 0 },
        { "DFR read (80Eh, not in x2APIC mode)", false, 0x80e, 0 },
        { "ESR write of 1 (828h, must be 0)", true, 0x828, 1 },
        { "TMICT write with bit 32 set", true, 0x838, 1ULL << 32 },
        { "LVTT write, bits 18:17 = 10b (bits 31:18 MBZ)", true, 0x832,
          (2 << 17) | 0x40 },
    };
    struct exit e;
    unsigned i;

    for (i = 0; i < sizeof(gp) / sizeof(gp[0]); i++) {
        e = run_msr(gp[i].write ? g_msr_wr : g_msr_rd, gp[i].msr, gp[i].val);
        puts_("x2avic ");
        puts_(gp[i].name);
        puts_(":\n");
        check_eq("  #GP (exit 4Dh), not AVIC_NOACCEL", e.code, EXIT_GP);
        check_eq("  RIP on the instruction", e.rip,
                 (uint64_t)(gp[i].write ? g_msr_wr_insn : g_msr_rd_insn));
    }
    check_eq("x2avic ID write: backing page ID unchanged", page_ld(0, 0x20),
             0);

    e = run_msr(g_msr_wr, 0x83f, 0x0e);
    check_eq("x2avic SELF_IPI vector 0Eh: #VMEXIT AVIC_INCOMPLETE_IPI",
             e.code, EXIT_AVIC_INCOMPLETE_IPI);
    check_eq("x2avic SELF_IPI vector 0Eh: cause 4 (invalid vector)",
             e.info2 >> 32, 4);
    check_eq("x2avic SELF_IPI vector 0Eh: EXITINFO1 = self-IPI ICR",
             e.info1, (1ULL << 18) | 0x0e);
    check_eq("x2avic SELF_IPI vector 0Eh: trap style, RIP past WRMSR", e.rip,
             (uint64_t)g_msr_wr_next);
}

static void test_timer_traps(void)
{
    struct exit e;

    avic_reset();
    vmcb_setup(g_tmict, true, false);
    e = run();
    check_eq("tmict write: #VMEXIT AVIC_NOACCEL (402h)", e.code,
             EXIT_AVIC_NOACCEL);
    check_eq("tmict write: EXITINFO1 = 380h | write", e.info1,
             0x380 | (1ULL << 32));
    check_eq("tmict write: trap style, RIP past WRMSR", e.rip,
             (uint64_t)g_tmict_next);
    check_eq("tmict write: value in the backing page",
             page_ld(0, APIC_TMICT), 0x12345);

    avic_reset();
    vmcb_setup(g_tmcct, true, false);
    e = run();
    check_eq("tmcct read: #VMEXIT AVIC_NOACCEL (402h)", e.code,
             EXIT_AVIC_NOACCEL);
    check_eq("tmcct read: EXITINFO1 = 390h, read", e.info1, 0x390);
    check_eq("tmcct read: fault style, RIP on RDMSR", e.rip,
             (uint64_t)g_tmcct_insn);
}

static void test_level_eoi(void)
{
    struct exit e;

    avic_reset();
    page_set_vec(0, APIC_IRR, 0x50);
    page_set_vec(0, APIC_TMR, 0x50);
    vmcb_setup(guest_sti, true, false);
    e = run();
    check_eq("level eoi: #VMEXIT AVIC_NOACCEL", e.code, EXIT_AVIC_NOACCEL);
    check_eq("level eoi: EXITINFO1 = 0B0h | write", e.info1,
             0xb0 | (1ULL << 32));
    check_eq("level eoi: EXITINFO2 = vector", e.info2, 0x50);
    check("level eoi: vISR left to the hypervisor",
          page_test_vec(0, APIC_ISR, 0x50));
}

static void test_nmi_icr(void)
{
    struct exit e;

    avic_reset();
    vmcb_setup(g_nmi_icr, true, false);
    e = run();
    check_eq("nmi icr: #VMEXIT AVIC_INCOMPLETE_IPI (401h)", e.code,
             EXIT_AVIC_INCOMPLETE_IPI);
    check_eq("nmi icr: EXITINFO1 = ICR", e.info1, 0x400);
    check_eq("nmi icr: cause 0 (invalid int type)", e.info2 >> 32, 0);
    check_eq("nmi icr: trap style, RIP past WRMSR", e.rip,
             (uint64_t)g_nmi_icr_next);
}

/*
 * IPIs through the physical APIC ID table (15.29.4): entry 0 is the sender
 * (running), 1 runs on host APIC ID 1 (the idle second CPU), 2 is not
 * running, 3 is not valid, 4 has a backing page above MAXPHYADDR (an
 * invalid physical address, 15.29.4.3); max index 7.
 */
static void ipi_tables(void)
{
    avic_reset();
    phys_table[1] = PHYS_VALID | PHYS_RUNNING | 1 | (uint64_t)backing[1];
    phys_table[2] = PHYS_VALID | 2 | (uint64_t)backing[2];
    phys_table[4] = PHYS_VALID | PHYS_RUNNING | 1 | (1ULL << maxphyaddr);
}

static struct exit run_icr(uint64_t icr)
{
    ipi_tables();
    g_icr_value = icr;
    vmcb_setup(g_icr, true, false);
    return run();
}

static void check_401(const char *name, struct exit e, uint64_t icr,
                      uint32_t cause, uint32_t index)
{
    puts_(name);
    puts_(":\n");
    check_eq("  #VMEXIT AVIC_INCOMPLETE_IPI (401h)", e.code,
             EXIT_AVIC_INCOMPLETE_IPI);
    check_eq("  EXITINFO1 = ICR", e.info1, icr);
    check_eq("  EXITINFO2 = cause << 32 | index", e.info2,
             ((uint64_t)cause << 32) | index);
    check_eq("  trap style, RIP past WRMSR", e.rip, (uint64_t)g_icr_next);
}

#define X2_DEST(d) ((uint64_t)(d) << 32)

static void test_ipi(void)
{
    struct exit e;
    uint64_t icr, irr0;
    uint32_t saved;

    e = run_icr(X2_DEST(1) | 0x71);
    check_eq("ipi to a running target: no exit", e.code, EXIT_VMMCALL);
    check("ipi to a running target: its vIRR has the vector",
          page_test_vec(1, APIC_IRR, 0x71));
    check("ipi to a running target: sender's vIRR untouched",
          page_reg_clear(0, APIC_IRR));

    icr = X2_DEST(2) | 0x72;
    e = run_icr(icr);
    check_401("ipi to a not-running target (cause 1, index 2)", e, icr, 1, 2);
    check("  target's vIRR set before the exit",
          page_test_vec(2, APIC_IRR, 0x72));

    icr = X2_DEST(3) | 0x72;
    check_401("ipi to an invalid entry (cause 2)", run_icr(icr), icr, 2, 3);
    icr = X2_DEST(9) | 0x72;
    check_401("ipi beyond the max index (cause 2)", run_icr(icr), icr, 2, 9);
    icr = X2_DEST(4) | 0x72;
    check_401("ipi to a backing page above MAXPHYADDR (cause 3)",
              run_icr(icr), icr, 3, 4);

    /* A backing page at address 0 is valid: vIRR set there, no exit. */
    irr0 = 0x200 + (0x72 >> 5) * 16;        /* launder the constant */
    __asm__ volatile("" : "+r"(irr0));
    saved = *(volatile uint32_t *)irr0;
    ipi_tables();
    phys_table[5] = PHYS_VALID | PHYS_RUNNING | 1;
    g_icr_value = X2_DEST(5) | 0x72;
    vmcb_setup(g_icr, true, false);
    e = run();
    check_eq("ipi to a backing page at address 0: no exit (not cause 3)",
             e.code, EXIT_VMMCALL);
    check("  vIRR bit 72h set in the page at 0",
          *(volatile uint32_t *)irr0 & (1U << (0x72 & 31)));
    *(volatile uint32_t *)irr0 = saved;
    icr = X2_DEST(1) | 0x0e;
    check_401("ipi with vector 0Eh (cause 4)", run_icr(icr), icr, 4, 0);
    check("  nothing set", page_reg_clear(1, APIC_IRR));
    icr = X2_DEST(1) | (1 << 15) | 0x72;
    check_401("level-triggered fixed ipi (cause 0)", run_icr(icr), icr, 0, 0);

    icr = (3 << 18) | 0x73;
    e = run_icr(icr);
    check_401("all-excluding-self (first failure: 2 not running)", e, icr,
              1, 2);
    check("  delivered to 1 and 2, not to self",
          page_test_vec(1, APIC_IRR, 0x73) &&
          page_test_vec(2, APIC_IRR, 0x73) && page_reg_clear(0, APIC_IRR));

    icr = X2_DEST(0xffffffff) | 0x74;
    e = run_icr(icr);
    check_401("broadcast 0FFFFFFFFh (includes self)", e, icr, 1, 2);
    check("  self, 1 and 2 have the vector",
          page_test_vec(0, APIC_IRR, 0x74) &&
          page_test_vec(1, APIC_IRR, 0x74) &&
          page_test_vec(2, APIC_IRR, 0x74));
}

/*
 * The doorbell MSR C001_011Bh: the guest sets a vIRR bit with a plain
 * store (the processor does not notice it), then rings its own core's
 * doorbell, which makes the core re-evaluate the page and deliver.
 */
static void guest_doorbell(void)
{
    __asm__ volatile("sti");
    *(volatile uint32_t *)(backing[0] + APIC_IRR + (0x71 >> 5) * 16) |=
        1U << (0x71 & 31);
    __asm__ volatile("nop; nop" ::: "memory");
    g_val[0] = g_nlog;
    wrmsr(0xc001011b, 0);
    __asm__ volatile("nop; nop" ::: "memory");
    g_val[1] = g_nlog;
    __asm__ volatile("cli");
}

static void test_doorbell(void)
{
    struct exit e;
    uint64_t v;

    avic_reset();
    vmcb_setup(guest_doorbell, true, false);
    e = run();
    check_eq("doorbell: no exit", e.code, EXIT_VMMCALL);
    check_eq("doorbell: plain store to vIRR not noticed before it", g_val[0],
             0);
    check_eq("doorbell: vector delivered after WRMSR C001_011Bh", g_val[1],
             1);
    check_eq("doorbell: vector 0x71", g_log[0], 0x71);
    /* from the host, to the idle second CPU: no effect, no #GP */
    check_eq("doorbell: host WRMSR to an idle core is harmless (no #GP)",
             wrmsr_safe(0xc001011b, 1), 0);
    /* Figure 15-22: bits 63:8 MBZ; any read is #GP */
    check_eq("doorbell: host WRMSR with bits 63:8 set (101h): #GP",
             wrmsr_safe(0xc001011b, 0x101), 1);
    check_eq("doorbell: host RDMSR C001_011Bh: #GP",
             rdmsr_safe(0xc001011b, &v), 1);
}

/* ---- two vCPUs: guest 1 on the second CPU --------------------------------- */

/*
 * The second CPU (local APIC ID 1) is started by INIT-SIPI from the BSP
 * (x2APIC ICR of the L1's own APIC); it comes up in the real-mode
 * trampoline of entry.S, copied to TRAMP_PA, and ends in ap_main().  There
 * it runs the VMCB vmcb_ap whenever the BSP asks (ap_cmd), and reports the
 * exit.  Its guest ("guest 1") has backing[1], x2APIC ID 1, its own IDT and
 * stack, and logs interrupts into g1_*.
 */
#define TRAMP_PA        0x70000
#define MSR_APIC_BASE   0x1b

extern uint8_t tramp_start[], tramp_end[];
uint64_t ap_stack_top;

static uint8_t vmcb_ap[4096] PAGE;
static uint8_t hsave_ap[4096] PAGE;
static uint64_t guest_idt_ap[512] PAGE;
static uint8_t guest_stack_ap[16384] PAGE;
static uint8_t ap_stack[16384] PAGE;

static volatile uint32_t ap_alive, ap_cmd, ap_done;
static volatile uint64_t ap_exit_code, ap_exit_rip;

static volatile uint32_t g1_ready, g1_stop, g1_nlog;
static volatile uint8_t g1_log[8];
static volatile bool g1_isr_before[8], g1_isr_after[8];

static void guest1_irq(int vec)
{
    unsigned n = g1_nlog;

    if (n < 8) {
        g1_log[n] = vec;
        g1_isr_before[n] = guest_isr(vec);
    }
    wrmsr(0x80b, 0);                 /* EOI */
    if (n < 8) {
        g1_isr_after[n] = guest_isr(vec);
    }
    g1_nlog = n + 1;
}

#define GUEST1_HANDLER(v) \
    __attribute__((interrupt)) static void guest1_irq_##v(struct iframe *f) \
    { \
        (void)f; \
        guest1_irq(0x##v); \
    }
GUEST1_HANDLER(71)
GUEST1_HANDLER(72)
GUEST1_HANDLER(73)

__attribute__((interrupt)) static void guest1_irq_other(struct iframe *f)
{
    (void)f;
    guest1_irq(0xff);
}

/* Guest 1: interrupts on, say so, wait (without exits) until told to stop. */
static void guest1_wait(void)
{
    __asm__ volatile("sti");
    g1_ready = 1;
    while (!g1_stop) {
        __asm__ volatile("pause" ::: "memory");
    }
    __asm__ volatile("cli");
}

void ap_main(void)
{
    uint32_t seen = 0;

    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
    wrmsr(MSR_VM_HSAVE_PA, (uint64_t)hsave_ap);
    ap_alive = 1;
    for (;;) {
        while (ap_cmd == seen) {
            __asm__ volatile("pause" ::: "memory");
        }
        seen = ap_cmd;
        svm_run((uint64_t)vmcb_ap);
        ap_exit_code = *(volatile uint64_t *)(vmcb_ap + VMCB_EXITCODE);
        ap_exit_rip = *(volatile uint64_t *)(vmcb_ap + VMCB_RIP);
        ap_done = seen;
    }
}

/* Spin until *p == want (bounded; TCG runs both CPUs).  True if it did. */
static bool wait_for(volatile uint32_t *p, uint32_t want)
{
    uint64_t i;

    for (i = 0; i < 30000000ULL; i++) {
        if (*p == want) {
            return true;
        }
        __asm__ volatile("pause" ::: "memory");
    }
    return false;
}

static bool start_ap(void)
{
    int i;

    memcpy((void *)TRAMP_PA, tramp_start, tramp_end - tramp_start);
    ap_stack_top = (uint64_t)(ap_stack + sizeof(ap_stack));
    wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | (1 << 11) | (1 << 10));
    wrmsr(0x830, (1ULL << 32) | 0x4500);                    /* INIT */
    for (i = 0; i < 2 && !ap_alive; i++) {
        wrmsr(0x830, (1ULL << 32) | 0x4600 | (TRAMP_PA >> 12)); /* SIPI */
        wait_for(&ap_alive, 1);
    }
    return ap_alive;
}

/* Prepare guest 1 in vmcb_ap and let the AP run it. */
static void ap_run_guest1(void)
{
    uint64_t *sp;

    g1_ready = 0;
    g1_stop = 0;
    g1_nlog = 0;
    memset((void *)g1_log, 0, sizeof(g1_log));
    vm = vmcb_ap;
    vmcb_setup(guest1_wait, true, false);
    w64(VMCB_AVIC_BACKING, (uint64_t)backing[1]);
    w32(VMCB_IDTR + 4, sizeof(guest_idt_ap) - 1);
    w64(VMCB_IDTR + 8, (uint64_t)guest_idt_ap);
    sp = (uint64_t *)(guest_stack_ap + sizeof(guest_stack_ap)) - 2;
    sp[0] = (uint64_t)guest_done;
    w64(VMCB_RSP, (uint64_t)sp);
    vm = vmcb;
    __asm__ volatile("" ::: "memory");
    ap_cmd = ap_cmd + 1;
}

/* Stop guest 1 and wait for the AP's #VMEXIT. */
static bool ap_stop_guest1(void)
{
    g1_stop = 1;
    return wait_for(&ap_done, ap_cmd);
}

/* backing[0] = guest 0 (BSP, entry 0), backing[1] = guest 1 (AP, entry 1). */
static void smp_tables(bool running1)
{
    avic_reset();
    page_st(1, 0x20, 1);            /* x2APIC ID 1 */
    phys_table[1] = PHYS_VALID | 1 | (uint64_t)backing[1] |
                    (running1 ? PHYS_RUNNING : 0);
}

static void test_smp(void)
{
    struct exit e;
    uint64_t icr;
    int i;

    for (i = 0; i < 256; i++) {
        uint64_t a = (uint64_t)guest1_irq_other;

        if (i == 0x71) {
            a = (uint64_t)guest1_irq_71;
        } else if (i == 0x72) {
            a = (uint64_t)guest1_irq_72;
        } else if (i == 0x73) {
            a = (uint64_t)guest1_irq_73;
        }
        guest_idt_ap[i * 2] = (a & 0xffff) | (0x08ULL << 16) |
                              (0x8e00ULL << 32) | ((a >> 16 & 0xffff) << 48);
        guest_idt_ap[i * 2 + 1] = a >> 32;
    }
    if (!start_ap()) {
        check("smp: second CPU started by INIT-SIPI", false);
        return;
    }
    check("smp: second CPU started by INIT-SIPI, SVM on", true);

    /* 1. IsRunning=1: the IPI goes through the doorbell, no exit anywhere. */
    smp_tables(true);
    ap_run_guest1();
    check("smp: guest 1 runs on CPU 1 with interrupts on",
          wait_for(&g1_ready, 1));
    icr = X2_DEST(1) | 0x71;
    g_icr_value = icr;
    vmcb_setup(g_icr, true, false);
    e = run();
    check_eq("smp ipi, IsRunning=1: no exit on the sender", e.code,
             EXIT_VMMCALL);
    check("smp ipi, IsRunning=1: taken by guest 1 (doorbell)",
          wait_for(&g1_nlog, 1));
    check_eq("smp ipi, IsRunning=1: through guest 1's IDT, vector 0x71",
             g1_log[0], 0x71);
    check("smp ipi, IsRunning=1: in guest 1's vISR in the handler, EOI "
          "cleared it", g1_isr_before[0] && !g1_isr_after[0]);
    check("smp ipi: guest 1 stopped", ap_stop_guest1());
    check_eq("smp ipi, IsRunning=1: no exit on the receiver before its "
             "VMMCALL", ap_exit_code, EXIT_VMMCALL);
    check_eq("smp ipi, IsRunning=1: exactly one interrupt", g1_nlog, 1);
    check("smp ipi, IsRunning=1: guest 1's IRR and ISR empty",
          page_reg_clear(1, APIC_IRR) && page_reg_clear(1, APIC_ISR));

    /*
     * 2. IsRunning=0 (guest 1 descheduled): the sender exits 401h cause 1
     * after setting the vIRR; the L1 then runs guest 1 with IsRunning=1,
     * and the vector arrives at VMRUN, again with no exit.
     */
    smp_tables(false);
    icr = X2_DEST(1) | 0x72;
    g_icr_value = icr;
    vmcb_setup(g_icr, true, false);
    e = run();
    check_401("smp ipi, IsRunning=0 (cause 1, index 1)", e, icr, 1, 1);
    check("  guest 1's vIRR has 0x72", page_test_vec(1, APIC_IRR, 0x72));
    phys_table[1] |= PHYS_RUNNING;
    ap_run_guest1();
    check("  after VMRUN on CPU 1: taken by guest 1", wait_for(&g1_nlog, 1));
    check_eq("  vector 0x72", g1_log[0], 0x72);
    check("  guest 1 stopped", ap_stop_guest1());
    check_eq("  no exit on the receiver", ap_exit_code, EXIT_VMMCALL);

    /*
     * 3. The L1 posts an interrupt itself (plain store into guest 1's vIRR)
     * and rings CPU 1's doorbell with WRMSR C001_011Bh from the host.
     */
    smp_tables(true);
    ap_run_guest1();
    check("smp host doorbell: guest 1 runs", wait_for(&g1_ready, 1));
    page_set_vec(1, APIC_IRR, 0x73);
    wrmsr(0xc001011b, 1);
    check("smp host doorbell: taken by guest 1 with no exit",
          wait_for(&g1_nlog, 1) && g1_log[0] == 0x73);
    check("  guest 1 stopped", ap_stop_guest1());
    check_eq("  exit is the guest's VMMCALL", ap_exit_code, EXIT_VMMCALL);
}

/* ---- AMD IOMMU guest virtual APIC posting (AMD IOMMU spec, "Guest Virtual
 * APIC"), with the edu device's MSI ---------------------------------------- */

static uint32_t pci_rd(int dev, int off)
{
    outl(0xcf8, 0x80000000U | (dev << 11) | (off & 0xfc));
    return inl(0xcfc);
}

static void pci_wr(int dev, int off, uint32_t v)
{
    outl(0xcf8, 0x80000000U | (dev << 11) | (off & 0xfc));
    outl(0xcfc, v);
}

/* Device number on bus 0 with vendor/device @id, or -1. */
static int pci_find(uint32_t id)
{
    int dev;

    for (dev = 0; dev < 32; dev++) {
        if (pci_rd(dev, 0) == id) {
            return dev;
        }
    }
    return -1;
}

/* Point the (64-bit) MSI capability of @dev at @addr/@data and enable it. */
static bool pci_msi(int dev, uint32_t addr, uint16_t data)
{
    int cap = pci_rd(dev, 0x34) & 0xfc;

    while (cap && (pci_rd(dev, cap) & 0xff) != 0x05) {
        cap = (pci_rd(dev, cap) >> 8) & 0xfc;
    }
    if (!cap) {
        return false;
    }
    pci_wr(dev, cap + 4, addr);
    pci_wr(dev, cap + 8, 0);
    pci_wr(dev, cap + 12, data);
    pci_wr(dev, cap, pci_rd(dev, cap) | (1 << 16));       /* MSI enable */
    return true;
}

#define IOMMU_MMIO          0xfed80000UL
#define IOMMU_DEVTAB        0x0000
#define IOMMU_CONTROL       0x0018
#define IOMMU_EFR           0x0030
#define IOMMU_GALOG_BASE    0x00e0
#define IOMMU_STATUS        0x2020
#define IOMMU_GALOG_HEAD    0x2040
#define IOMMU_GALOG_TAIL    0x2048

#define CTL_IOMMU_EN        (1ULL << 0)
#define CTL_GA_EN           (1ULL << 17)
#define CTL_GAM_EN          (1ULL << 25)
#define CTL_GALOG_EN        (1ULL << 28)
#define CTL_GAINT_EN        (1ULL << 29)
#define STATUS_GALOG_RUN    (1ULL << 8)
#define STATUS_GA_INT       (1ULL << 10)

/* 128-bit IRTE, GuestMode = 1 (as iommu/src/irte.rs Irte128::guest) */
#define IRTE_REMAP_EN       (1ULL << 0)
#define IRTE_GALOG_INTR     (1ULL << 2)
#define IRTE_IS_RUN         (1ULL << 6)
#define IRTE_GUEST_MODE     (1ULL << 7)

#define IOMMU_MSI_VECTOR    0x90
#define GA_TAG              0xa5a51234U

static uint64_t devtab[1024] PAGE;           /* 2 pages: device IDs 0-255 */
static uint64_t irt[2 * 2] PAGE;             /* two 128-bit entries */
static uint64_t galog[512] PAGE;             /* 4 KiB: 512 entries */
static uint32_t edu_bar;

static uint64_t iommu_rd(uint32_t off)
{
    return *(volatile uint64_t *)(IOMMU_MMIO + off);
}

static void iommu_wr(uint32_t off, uint64_t v)
{
    *(volatile uint64_t *)(IOMMU_MMIO + off) = v;
}

static void irte_guest(int vector, bool is_run, bool ga_log_intr)
{
    irt[0] = IRTE_REMAP_EN | IRTE_GUEST_MODE | (1ULL << 8) |   /* dest 1 */
             ((uint64_t)GA_TAG << 32) | (is_run ? IRTE_IS_RUN : 0) |
             (ga_log_intr ? IRTE_GALOG_INTR : 0);
    irt[1] = (uint64_t)vector | (uint64_t)backing[1];
    __asm__ volatile("" ::: "memory");
}

/* The edu device raises its MSI (data = IRTE index 0) on a write to 60h. */
static void edu_msi(void)
{
    *(volatile uint32_t *)(uint64_t)(edu_bar + 0x64) = 1;      /* ack */
    *(volatile uint32_t *)(uint64_t)(edu_bar + 0x60) = 1;
}

static bool host_irr(int vec)
{
    return (rdmsr(0x820 + (vec >> 5)) >> (vec & 31)) & 1;
}

/*
 * Take the interrupts pending at the host's APIC: software-enable it, open
 * an interrupt window (GIF is 0 after every #VMEXIT: STGI, STI), then close
 * it and disable the APIC again (so later MSIs stay in IRR).  Returns how
 * many IOMMU MSIs host_msi has counted so far.
 */
static uint32_t host_msi_drain(void)
{
    int i;

    wrmsr(0x80f, 0x1ff);
    __asm__ volatile("stgi; sti");
    for (i = 0; i < 1000; i++) {
        __asm__ volatile("pause" ::: "memory");
    }
    __asm__ volatile("cli; clgi");
    wrmsr(0x80f, 0xff);
    return host_msi_count;
}

static void test_ga_nvme(bool gam, uint64_t galog_tail);

static void test_ga(void)
{
    int edu = pci_find(0x11e81234), iommu = pci_find(0x14191022);
    uint16_t devid;
    uint64_t efr, want, galog_base_reset;
    bool gam;

    if (edu < 0 || iommu < 0) {
        puts_("ga: no amd-iommu or no edu device, GA checks skipped\n");
        return;
    }
    devid = edu << 3;
    efr = iommu_rd(IOMMU_EFR);
    gam = ((efr >> 21) & 7) == 1;
    puts_("ga: amd-iommu EFR ");
    puthex(efr);
    puts_(gam ? ": GAMSup vAPIC (ga=on)\n" : ": no GAMSup (ga=off)\n");
    check("ga: EFR GASup (bit 7)", efr & (1 << 7));

    edu_bar = pci_rd(edu, 0x10) & ~0xfU;
    pci_wr(edu, 0x04, pci_rd(edu, 0x04) | 0x6);      /* memory, bus master */
    check("ga: edu MSI programmed (IRTE index 0)",
          edu_bar && pci_msi(edu, 0xfee00000, 0));
    check("ga: IOMMU MSI programmed (GA log interrupt -> host vector 90h)",
          pci_msi(iommu, 0xfee00000, IOMMU_MSI_VECTOR));
    /* keep the IOMMU's MSI pending in the host IRR: APIC software-disabled */
    wrmsr(0x80f, 0xff);

    memset(devtab, 0, sizeof(devtab));
    memset(galog, 0, sizeof(galog));
    galog_base_reset = iommu_rd(IOMMU_GALOG_BASE);
    /* DTE: V; IV, IntTabLen 1 (2 entries), table, IntCtl 10b (remapped) */
    devtab[devid * 4] = 1;
    devtab[devid * 4 + 2] = 1 | (1 << 1) | (uint64_t)irt | (2ULL << 60);
    iommu_wr(IOMMU_DEVTAB, (uint64_t)devtab | 1);
    iommu_wr(IOMMU_GALOG_BASE, (uint64_t)galog | (8ULL << 56));
    iommu_wr(IOMMU_GALOG_HEAD, 0);
    iommu_wr(IOMMU_GALOG_TAIL, 0);
    iommu_wr(IOMMU_CONTROL, CTL_IOMMU_EN | CTL_GA_EN | CTL_GAM_EN |
             CTL_GALOG_EN | CTL_GAINT_EN);

    if (!gam) {
        smp_tables(false);
        irte_guest(0x72, false, true);
        edu_msi();
        check("ga=off: GuestMode IRTE not posted (vIRR clear)",
              page_reg_clear(1, APIC_IRR));
        check_eq("ga=off: no GA log entry", iommu_rd(IOMMU_GALOG_TAIL), 0);
        test_ga_nvme(false, 0);
        return;
    }
    check("ga: Status GALogRun", iommu_rd(IOMMU_STATUS) & STATUS_GALOG_RUN);
    check_eq("ga: GALogLen resets to 1000b (512 entries)",
             galog_base_reset >> 56 & 0xf, 8);
    iommu_wr(IOMMU_GALOG_HEAD, ~0ULL);
    check_eq("ga: GA log head pointer is bits 15:3",
             iommu_rd(IOMMU_GALOG_HEAD), 0xfff8);
    iommu_wr(IOMMU_GALOG_HEAD, 0);

    /* 0. GAMEn 011b (reserved, not 001b): GuestMode IRTEs are not posted */
    iommu_wr(IOMMU_CONTROL, CTL_IOMMU_EN | CTL_GA_EN | (3ULL << 25) |
             CTL_GALOG_EN | CTL_GAINT_EN);
    smp_tables(false);
    irte_guest(0x72, false, true);
    edu_msi();
    check("ga GAMEn=011b: GuestMode IRTE not posted (vIRR clear)",
          page_reg_clear(1, APIC_IRR));
    check_eq("ga GAMEn=011b: no GA log entry", iommu_rd(IOMMU_GALOG_TAIL), 0);
    iommu_wr(IOMMU_CONTROL, CTL_IOMMU_EN | CTL_GA_EN | CTL_GAM_EN |
             CTL_GALOG_EN | CTL_GAINT_EN);

    /* 1. IsRun=1: posted into guest 1's page, doorbell, taken, no exit. */
    smp_tables(true);
    irte_guest(0x71, true, true);
    ap_run_guest1();
    check("ga IsRun=1: guest 1 runs on CPU 1", wait_for(&g1_ready, 1));
    edu_msi();
    check("ga IsRun=1: edu MSI taken by guest 1 (doorbell)",
          wait_for(&g1_nlog, 1));
    check_eq("ga IsRun=1: through guest 1's IDT, vector 0x71", g1_log[0],
             0x71);
    check("ga IsRun=1: guest 1 stopped", ap_stop_guest1());
    check_eq("ga IsRun=1: no exit on guest 1 before its VMMCALL",
             ap_exit_code, EXIT_VMMCALL);
    check_eq("ga IsRun=1: no GA log entry", iommu_rd(IOMMU_GALOG_TAIL), 0);
    check("ga IsRun=1: host got no MSI", !host_irr(IOMMU_MSI_VECTOR));

    /*
     * 2. IsRun=0, GALogIntr=1: vIRR set, GA log entry (GATag, DeviceID,
     * type 1), GAInt and the IOMMU's MSI; the L1 then runs guest 1, which
     * takes the vector at VMRUN.
     */
    smp_tables(false);
    irte_guest(0x72, false, true);
    edu_msi();
    check("ga IsRun=0: guest 1's vIRR has 0x72",
          page_test_vec(1, APIC_IRR, 0x72));
    check_eq("ga IsRun=0: GA log tail = 8", iommu_rd(IOMMU_GALOG_TAIL), 8);
    want = GA_TAG | ((uint64_t)devid << 32) | (1ULL << 60);
    check_eq("ga IsRun=0: GA log entry = GATag | DeviceID << 32 | 1 << 60",
             galog[0], want);
    check("ga IsRun=0: Status GAInt", iommu_rd(IOMMU_STATUS) & STATUS_GA_INT);
    check("ga IsRun=0: GA log interrupt (IOMMU MSI) pending at the host",
          host_irr(IOMMU_MSI_VECTOR));
    check_eq("ga IsRun=0: the host takes one IOMMU MSI (vector 90h)",
             host_msi_drain(), 1);
    /* GAInt still set: the next entry is logged without an interrupt */
    edu_msi();
    check_eq("ga IsRun=0 again, GAInt still set: GA log tail = 16",
             iommu_rd(IOMMU_GALOG_TAIL), 16);
    check_eq("ga IsRun=0 again: no second IOMMU MSI (GAInt 0->1 only)",
             host_msi_drain(), 1);
    iommu_wr(IOMMU_STATUS, STATUS_GA_INT);
    check("ga IsRun=0: GAInt is write-1-to-clear",
          !(iommu_rd(IOMMU_STATUS) & STATUS_GA_INT));
    edu_msi();
    check_eq("ga IsRun=0 after GAInt cleared: GA log tail = 24",
             iommu_rd(IOMMU_GALOG_TAIL), 24);
    check_eq("ga IsRun=0 after GAInt cleared: a new IOMMU MSI",
             host_msi_drain(), 2);
    iommu_wr(IOMMU_STATUS, STATUS_GA_INT);
    iommu_wr(IOMMU_GALOG_HEAD, 24);
    phys_table[1] |= PHYS_RUNNING;
    ap_run_guest1();
    check("ga IsRun=0: taken by guest 1 after VMRUN", wait_for(&g1_nlog, 1));
    check_eq("ga IsRun=0: vector 0x72", g1_log[0], 0x72);
    check("ga IsRun=0: guest 1 stopped", ap_stop_guest1());
    check_eq("ga IsRun=0: no exit on guest 1", ap_exit_code, EXIT_VMMCALL);

    /* 3. IsRun=0, GALogIntr=0: only the vIRR. */
    smp_tables(false);
    irte_guest(0x73, false, false);
    edu_msi();
    check("ga IsRun=0 GALogIntr=0: vIRR has 0x73",
          page_test_vec(1, APIC_IRR, 0x73));
    check_eq("ga IsRun=0 GALogIntr=0: no GA log entry",
             iommu_rd(IOMMU_GALOG_TAIL), 24);

    test_ga_nvme(true, 24);
}

/* ---- GA posting of the NVMe controller's MSI-X (QEMU's nvme, 1B36:0010) ---
 *
 * A real device interrupt through a GuestMode IRTE: avictest drives the
 * controller's admin queue itself (NVMe base spec: CC/CSTS/AQA/ASQ/ACQ,
 * Identify Controller), with MSI-X entry 0 aimed at IRTE 0 of the NVMe's own
 * remapping table; the admin completion queue interrupts through vector 0.
 */
#define NVME_ID             0x00101b36U
#define NVME_CC             0x14
#define NVME_CSTS           0x1c
#define NVME_AQA            0x24
#define NVME_ASQ            0x28
#define NVME_ACQ            0x30
#define NVME_GA_TAG         0x5a5a0001U
#define NVME_SERIAL         "avictest"

static uint32_t nvme_sq[16 * 16] PAGE;       /* 16 entries of 64 bytes */
static uint32_t nvme_cq[16 * 4] PAGE;        /* 16 entries of 16 bytes */
static uint8_t nvme_id[4096] PAGE;
static uint64_t irt_nvme[2 * 2] PAGE;
static uint64_t nvme_bar;
static unsigned nvme_dstrd, nvme_sq_tail, nvme_cq_head, nvme_phase;
static uint16_t nvme_cid;

static volatile uint32_t *nvme_reg(uint32_t off)
{
    return (volatile uint32_t *)(nvme_bar + off);
}

static bool nvme_wait_ready(uint32_t want)
{
    int i;

    for (i = 0; i < 10000000; i++) {
        if ((*nvme_reg(NVME_CSTS) & 1) == want) {
            return true;
        }
        __asm__ volatile("pause");
    }
    return false;
}

/* BAR 0 (64-bit), MSI-X entry 0 -> (FEE00000h, IRTE 0), controller enabled. */
static bool nvme_setup(int dev)
{
    int cap = pci_rd(dev, 0x34) & 0xfc;
    uint32_t tbl, bir, hi;
    volatile uint32_t *entry;

    nvme_bar = pci_rd(dev, 0x10) & ~0xfULL;
    hi = pci_rd(dev, 0x14);
    if (!nvme_bar || hi) {
        puts_("nvme: BAR 0 unassigned or above 4 GiB\n");
        return false;
    }
    pci_wr(dev, 0x04, pci_rd(dev, 0x04) | 0x6);      /* memory, bus master */
    while (cap && (pci_rd(dev, cap) & 0xff) != 0x11) {
        cap = (pci_rd(dev, cap) >> 8) & 0xfc;
    }
    if (!cap) {
        puts_("nvme: no MSI-X capability\n");
        return false;
    }
    tbl = pci_rd(dev, cap + 4);
    bir = tbl & 7;
    if (bir != 0) {
        puts_("nvme: MSI-X table not in BAR 0\n");
        return false;
    }
    entry = (volatile uint32_t *)(nvme_bar + (tbl & ~7U));
    entry[0] = 0xfee00000;
    entry[1] = 0;
    entry[2] = 0;                                    /* data: IRTE index 0 */
    entry[3] = 0;                                    /* unmasked */
    pci_wr(dev, cap, pci_rd(dev, cap) | (1U << 31)); /* MSI-X enable */

    nvme_dstrd = (*nvme_reg(4) & 0xf);               /* CAP[35:32] */
    *nvme_reg(NVME_CC) = 0;
    if (!nvme_wait_ready(0)) {
        puts_("nvme: CSTS.RDY stays 1 after CC.EN=0\n");
        return false;
    }
    memset(nvme_sq, 0, sizeof(nvme_sq));
    memset(nvme_cq, 0, sizeof(nvme_cq));
    *nvme_reg(NVME_AQA) = (15U << 16) | 15;
    *nvme_reg(NVME_ASQ) = (uint32_t)(uint64_t)nvme_sq;
    *nvme_reg(NVME_ASQ + 4) = 0;
    *nvme_reg(NVME_ACQ) = (uint32_t)(uint64_t)nvme_cq;
    *nvme_reg(NVME_ACQ + 4) = 0;
    /* EN, 4 KiB pages, IOSQES 6, IOCQES 4 */
    *nvme_reg(NVME_CC) = 1 | (6U << 16) | (4U << 20);
    nvme_sq_tail = nvme_cq_head = 0;
    nvme_phase = 1;
    if (!nvme_wait_ready(1)) {
        puts_("nvme: CSTS.RDY stays 0 after CC.EN=1\n");
        return false;
    }
    return true;
}

/* Submit Identify Controller into nvme_id; its completion raises the MSI-X. */
static void nvme_identify(void)
{
    uint32_t *e = &nvme_sq[nvme_sq_tail * 16];

    memset(nvme_id, 0, sizeof(nvme_id));
    memset(e, 0, 64);
    e[0] = 0x06 | ((uint32_t)++nvme_cid << 16);     /* Identify */
    e[6] = (uint32_t)(uint64_t)nvme_id;              /* PRP1 */
    e[10] = 1;                                       /* CNS 1: controller */
    __asm__ volatile("" ::: "memory");
    nvme_sq_tail = (nvme_sq_tail + 1) % 16;
    *nvme_reg(0x1000) = nvme_sq_tail;                /* SQ 0 tail doorbell */
}

/* Wait for the completion of the last command; its status field (0 = success), or -1. */
static int nvme_complete(void)
{
    volatile uint32_t *c = &nvme_cq[nvme_cq_head * 4];
    int i, status;

    for (i = 0; i < 10000000; i++) {
        if (((c[3] >> 16) & 1) == nvme_phase) {
            break;
        }
        __asm__ volatile("pause");
    }
    if (((c[3] >> 16) & 1) != nvme_phase || (c[3] & 0xffff) != nvme_cid) {
        return -1;
    }
    status = c[3] >> 17;
    nvme_cq_head = (nvme_cq_head + 1) % 16;
    if (nvme_cq_head == 0) {
        nvme_phase ^= 1;
    }
    *nvme_reg(0x1000 + (4U << nvme_dstrd)) = nvme_cq_head;  /* CQ 0 head */
    return status;
}

/* The controller's serial number (Identify Controller bytes 4-23) starts with ours. */
static bool nvme_id_has_serial(void)
{
    const char *want = NVME_SERIAL;
    int i;

    for (i = 0; want[i]; i++) {
        if (nvme_id[4 + i] != (uint8_t)want[i]) {
            return false;
        }
    }
    return true;
}

static void irte_guest_nvme(int vector, bool is_run, bool ga_log_intr)
{
    irt_nvme[0] = IRTE_REMAP_EN | IRTE_GUEST_MODE | (1ULL << 8) |
                  ((uint64_t)NVME_GA_TAG << 32) |
                  (is_run ? IRTE_IS_RUN : 0) |
                  (ga_log_intr ? IRTE_GALOG_INTR : 0);
    irt_nvme[1] = (uint64_t)vector | (uint64_t)backing[1];
    __asm__ volatile("" ::: "memory");
}

/*
 * Called by test_ga with the IOMMU on (GA log at @galog_tail), after the edu
 * checks.  @gam: GA mode is advertised (ga=on).
 */
static void test_ga_nvme(bool gam, uint64_t galog_tail)
{
    int dev = pci_find(NVME_ID);
    uint16_t devid;
    uint64_t want;

    if (dev < 0) {
        puts_("ga nvme: no nvme device, NVMe checks skipped\n");
        return;
    }
    devid = dev << 3;
    /* DTE: V, TV with mode 0 (DMA untranslated), IR, IW; interrupts remapped */
    devtab[devid * 4] = 1 | (1 << 1) | (1ULL << 61) | (1ULL << 62);
    devtab[devid * 4 + 2] = 1 | (1 << 1) | (uint64_t)irt_nvme | (2ULL << 60);
    check("ga nvme: controller enabled, MSI-X entry 0 -> IRTE 0",
          nvme_setup(dev));

    if (!gam) {
        smp_tables(false);
        irte_guest_nvme(0x72, false, true);
        nvme_identify();
        check_eq("ga=off nvme: Identify completes (status 0)",
                 nvme_complete(), 0);
        check("ga=off nvme: GuestMode IRTE not posted (vIRR clear)",
              page_reg_clear(1, APIC_IRR));
        check_eq("ga=off nvme: no GA log entry", iommu_rd(IOMMU_GALOG_TAIL),
                 galog_tail);
        return;
    }

    /*
     * 1. IsRun=1: the completion's MSI-X is posted and taken, no exit.
     * (GAInt, cleared by test_ga, shows whether a GA log interrupt was
     * raised.)
     */
    smp_tables(true);
    irte_guest_nvme(0x71, true, true);
    ap_run_guest1();
    check("ga nvme IsRun=1: guest 1 runs on CPU 1", wait_for(&g1_ready, 1));
    nvme_identify();
    check_eq("ga nvme IsRun=1: Identify completes (status 0)",
             nvme_complete(), 0);
    check("ga nvme IsRun=1: Identify data DMAed (serial " NVME_SERIAL ")",
          nvme_id_has_serial());
    check("ga nvme IsRun=1: MSI-X taken by guest 1 (doorbell)",
          wait_for(&g1_nlog, 1));
    check_eq("ga nvme IsRun=1: through guest 1's IDT, vector 0x71",
             g1_log[0], 0x71);
    check("ga nvme IsRun=1: guest 1 stopped", ap_stop_guest1());
    check_eq("ga nvme IsRun=1: no exit on guest 1 before its VMMCALL",
             ap_exit_code, EXIT_VMMCALL);
    check_eq("ga nvme IsRun=1: no GA log entry", iommu_rd(IOMMU_GALOG_TAIL),
             galog_tail);
    check("ga nvme IsRun=1: no GA log interrupt (Status.GAInt clear)",
          !(iommu_rd(IOMMU_STATUS) & STATUS_GA_INT));

    /* 2. IsRun=0: vIRR, GA log entry with the NVMe's DeviceID, then VMRUN. */
    smp_tables(false);
    irte_guest_nvme(0x72, false, true);
    nvme_identify();
    check_eq("ga nvme IsRun=0: Identify completes (status 0)",
             nvme_complete(), 0);
    check("ga nvme IsRun=0: guest 1's vIRR has 0x72",
          page_test_vec(1, APIC_IRR, 0x72));
    check_eq("ga nvme IsRun=0: GA log tail advanced by one entry",
             iommu_rd(IOMMU_GALOG_TAIL), galog_tail + 8);
    want = NVME_GA_TAG | ((uint64_t)devid << 32) | (1ULL << 60);
    check_eq("ga nvme IsRun=0: GA log entry = GATag | NVMe DeviceID << 32 | 1 << 60",
             galog[galog_tail / 8], want);
    check("ga nvme IsRun=0: GA log interrupt (Status.GAInt)",
          iommu_rd(IOMMU_STATUS) & STATUS_GA_INT);
    iommu_wr(IOMMU_STATUS, STATUS_GA_INT);
    iommu_wr(IOMMU_GALOG_HEAD, galog_tail + 8);
    phys_table[1] |= PHYS_RUNNING;
    ap_run_guest1();
    check("ga nvme IsRun=0: taken by guest 1 after VMRUN",
          wait_for(&g1_nlog, 1));
    check_eq("ga nvme IsRun=0: vector 0x72", g1_log[0], 0x72);
    check("ga nvme IsRun=0: guest 1 stopped", ap_stop_guest1());
    check_eq("ga nvme IsRun=0: no exit on guest 1", ap_exit_code,
             EXIT_VMMCALL);
}

/* AVIC off (or not advertised): x2APIC MSRs exit through the MSRPM. */
static void test_avic_off(const char *name, bool avic_bits)
{
    struct exit e;

    avic_reset();
    vmcb_setup(g_selfipi, avic_bits, true);
    e = run();
    puts_(name);
    puts_(":\n");
    check_eq("  SELF_IPI write: #VMEXIT MSR (7Ch)", e.code, EXIT_MSR);
    check_eq("  EXITINFO1 = 1 (WRMSR)", e.info1, 1);
    check_eq("  RIP on the WRMSR", e.rip, (uint64_t)g_selfipi_insn);
    check("  backing page untouched", page_reg_clear(0, APIC_IRR));

    avic_reset();
    vmcb_setup(guest_selfipi_eoi, avic_bits, true);
    e = run();
    check_eq("  C guest: first exit is MSR (7Ch)", e.code, EXIT_MSR);
    check_eq("  C guest: no interrupt delivered", g_nlog, 0);
}

/* VMEXIT_INVALID (-1); QEMU stores only EXITCODE[31:0], so compare those */
#define EXIT_INVALID    0xffffffffU

/*
 * VMRUN checks of the AVIC fields: x2AVIC_ENABLE without AVIC_ENABLE
 * (15.29.4.1) and AVIC_PHYSICAL_MAX_INDEX (0F8h bits 11:0) above 511 in
 * x2AVIC mode or above 255 in xAVIC mode (15.29.4.3) fail VMRUN.
 */
static struct exit run_vmrun_check(uint32_t int_ctl, uint32_t max_index)
{
    avic_reset();
    vmcb_setup(guest_done, true, false);
    w32(VMCB_INT_CTL, int_ctl);
    w64(VMCB_AVIC_PHYSICAL, (uint64_t)phys_table | max_index);
    return run();
}

/*
 * The AVIC pointers must be legal physical addresses; they are checked at
 * VMRUN (15.29.4.3).  One above MAXPHYADDR at a time: the backing page and
 * the physical table (both modes), the logical table (xAVIC, where it is
 * used; x2AVIC does not use it, 15.29.10).
 */
static struct exit run_pointer_check(uint32_t int_ctl, uint32_t field)
{
    uint64_t bad = 1ULL << maxphyaddr;

    avic_reset();
    vmcb_setup(guest_done, true, false);
    w32(VMCB_INT_CTL, int_ctl);
    if (field == VMCB_AVIC_PHYSICAL) {
        w64(field, bad | 7);
    } else {
        w64(field, bad);
    }
    return run();
}

static void test_vmrun_pointer_checks(void)
{
    check_eq("vmrun: x2AVIC, backing page above MAXPHYADDR: VMEXIT_INVALID",
             run_pointer_check(INT_CTL_AVIC | INT_CTL_X2AVIC,
                               VMCB_AVIC_BACKING).code & 0xffffffff,
             EXIT_INVALID);
    check_eq("vmrun: x2AVIC, physical table above MAXPHYADDR: VMEXIT_INVALID",
             run_pointer_check(INT_CTL_AVIC | INT_CTL_X2AVIC,
                               VMCB_AVIC_PHYSICAL).code & 0xffffffff,
             EXIT_INVALID);
    check_eq("vmrun: xAVIC, logical table above MAXPHYADDR: VMEXIT_INVALID",
             run_pointer_check(INT_CTL_AVIC, VMCB_AVIC_LOGICAL).code &
             0xffffffff, EXIT_INVALID);
    check_eq("vmrun: xAVIC, backing page above MAXPHYADDR: VMEXIT_INVALID",
             run_pointer_check(INT_CTL_AVIC, VMCB_AVIC_BACKING).code &
             0xffffffff, EXIT_INVALID);
}

static void test_vmrun_checks(void)
{
    check_eq("vmrun: x2AVIC_ENABLE without AVIC_ENABLE: VMEXIT_INVALID",
             run_vmrun_check(INT_CTL_X2AVIC, 7).code & 0xffffffff,
             EXIT_INVALID);
    check_eq("vmrun: x2AVIC, max index 511: runs",
             run_vmrun_check(INT_CTL_AVIC | INT_CTL_X2AVIC, 511).code,
             EXIT_VMMCALL);
    check_eq("vmrun: x2AVIC, max index 512: VMEXIT_INVALID",
             run_vmrun_check(INT_CTL_AVIC | INT_CTL_X2AVIC, 512).code &
             0xffffffff, EXIT_INVALID);
    check_eq("vmrun: xAVIC, max index 255: runs",
             run_vmrun_check(INT_CTL_AVIC, 255).code, EXIT_VMMCALL);
    check_eq("vmrun: xAVIC, max index 256: VMEXIT_INVALID",
             run_vmrun_check(INT_CTL_AVIC, 256).code & 0xffffffff,
             EXIT_INVALID);
    test_vmrun_pointer_checks();
}

/* ---- xAVIC ---------------------------------------------------------------- */

/*
 * xAVIC (APM vol. 2, 15.29.3.1): with AVIC_ENABLE and without
 * x2AVIC_ENABLE, guest data accesses to the 4 KiB page named by the VMCB's
 * APIC BAR field (FEE00000h here) are served from the backing page, after
 * the nested page walk for that page.  These guests run on their own
 * nested page table (xnpt_*): the identity map, except that GPA FEE00000h
 * is a 4 KiB page whose NPT entry each test chooses; by default it maps
 * xapic_dummy, a RAM page full of a pattern (as KVM maps a dummy page
 * there).  The guests' own page tables are the host's (FEE00000h
 * identity-mapped; the L1's APIC is in x2APIC mode, its MMIO page unused).
 * Their interrupt handlers read vISR and write EOI through the page, from
 * their own IDT (the x2APIC MSRs are not virtualized in xAVIC mode).
 */
#define XAPIC_BASE          0xfee00000UL
#define XAPIC_PATTERN       0x5a5a5a5aU
#define NPT_P_RW_U          0x7ULL
#define NPT_P_U             0x5ULL
#define VMCB_TLB_CONTROL    0x05c
#define EXIT_NPF            0x400
#define APIC_ID             0x020
#define APIC_VERSION        0x030
#define APIC_PPR            0x0a0
#define APIC_EOI            0x0b0
#define APIC_LDR            0x0d0
#define APIC_DFR            0x0e0
#define APIC_LVT0           0x350
#define APIC_TMCCT          0x390
#define XAPIC_DEST(d)       ((uint32_t)(d) << 24)

static uint64_t xnpt_pml4[512] PAGE;
static uint64_t xnpt_pdpt[512] PAGE;
static uint64_t xnpt_pd3[512] PAGE;
static uint64_t xnpt_pt[512] PAGE;
static uint32_t xapic_dummy[1024] PAGE;
static uint64_t guest_idt_x[512] PAGE;

extern uint8_t gx_write[], gx_write_insn[], gx_write_next[];
extern uint8_t gx_read[], gx_read_insn[], gx_readb[], gx_readb_insn[];
extern uint8_t gx_icr[], gx_icr_insn[], gx_icr_next[];
extern volatile uint64_t gx_addr, gx_value, gx_result, gx_icr_hi, gx_icr_lo;

static uint32_t xapic_rd(uint32_t off)
{
    return *(volatile uint32_t *)(XAPIC_BASE + off);
}

static void xapic_wr(uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(XAPIC_BASE + off) = v;
}

static bool guest_xisr(int vec)
{
    return (xapic_rd(APIC_ISR + (vec >> 5) * 16) >> (vec & 31)) & 1;
}

static void guest_xirq(int vec)
{
    unsigned n = g_nlog;

    if (n < 16) {
        g_log[n] = vec;
        g_isr_before[n] = guest_xisr(vec);
    }
    xapic_wr(APIC_EOI, 0);
    if (n < 16) {
        g_isr_after[n] = guest_xisr(vec);
    }
    g_nlog = n + 1;
}

#define GUEST_XHANDLER(v) \
    __attribute__((interrupt)) static void guest_xirq_##v(struct iframe *f) \
    { \
        (void)f; \
        guest_xirq(0x##v); \
    }
GUEST_XHANDLER(62)
GUEST_XHANDLER(64)

__attribute__((interrupt)) static void guest_xirq_other(struct iframe *f)
{
    (void)f;
    guest_xirq(0xff);
}

/* The xAVIC guests' nested page table; @entry is the one for FEE00000h. */
static void xnpt_build(uint64_t entry)
{
    uint64_t *pdpt = (uint64_t *)(*(uint64_t *)pml4 & ~0xfffULL);
    uint64_t *pd3 = (uint64_t *)(pdpt[3] & ~0xfffULL);
    int i;

    for (i = 0; i < 512; i++) {
        xnpt_pml4[i] = 0;
        xnpt_pdpt[i] = i < 3 ? pdpt[i] : 0;
        xnpt_pd3[i] = pd3[i];
        xnpt_pt[i] = (XAPIC_BASE + i * 4096ULL) | NPT_P_RW_U;
    }
    xnpt_pml4[0] = (uint64_t)xnpt_pdpt | NPT_P_RW_U;
    xnpt_pdpt[3] = (uint64_t)xnpt_pd3 | NPT_P_RW_U;
    xnpt_pd3[(XAPIC_BASE >> 21) & 511] = (uint64_t)xnpt_pt | NPT_P_RW_U;
    xnpt_pt[0] = entry;
    for (i = 0; i < 1024; i++) {
        xapic_dummy[i] = XAPIC_PATTERN;
    }
}

/*
 * VMCB for a run of @entry in xAVIC mode (AVIC_ENABLE, x2AVIC_ENABLE
 * clear), or with AVIC off (@avic false), on the xAVIC nested page table.
 */
static void xavic_setup(void *entry, bool avic)
{
    int i;

    for (i = 0; i < 256; i++) {
        uint64_t a = (uint64_t)guest_xirq_other;

        if (i == 0x62) {
            a = (uint64_t)guest_xirq_62;
        } else if (i == 0x64) {
            a = (uint64_t)guest_xirq_64;
        }
        guest_idt_x[i * 2] = (a & 0xffff) | (0x08ULL << 16) |
                             (0x8e00ULL << 32) | ((a >> 16 & 0xffff) << 48);
        guest_idt_x[i * 2 + 1] = a >> 32;
    }
    vmcb_setup(entry, avic, false);
    if (avic) {
        w32(VMCB_INT_CTL, INT_CTL_AVIC);
    }
    w64(VMCB_N_CR3, (uint64_t)xnpt_pml4);
    w32(VMCB_IDTR + 4, sizeof(guest_idt_x) - 1);
    w64(VMCB_IDTR + 8, (uint64_t)guest_idt_x);
    /* the NPT changes between runs: flush this ASID's TLB */
    *(volatile uint8_t *)(vm + VMCB_TLB_CONTROL) = 1;
}

/* Run one of the gx_* pieces with gx_addr = FEE00000h + @off. */
static struct exit xrun(void *entry, uint32_t off, uint32_t value, bool avic)
{
    gx_addr = XAPIC_BASE + off;
    gx_value = value;
    gx_result = 0;
    xavic_setup(entry, avic);
    return run();
}

static struct exit xrun_icr(uint32_t hi, uint32_t lo)
{
    gx_icr_hi = hi;
    gx_icr_lo = lo;
    xavic_setup(gx_icr, true);
    return run();
}

static void check_x401(const char *name, struct exit e, uint32_t hi,
                       uint32_t lo, uint32_t cause, uint32_t index)
{
    puts_(name);
    puts_(":\n");
    check_eq("  #VMEXIT AVIC_INCOMPLETE_IPI (401h)", e.code,
             EXIT_AVIC_INCOMPLETE_IPI);
    check_eq("  EXITINFO1 = ICR high:low", e.info1,
             ((uint64_t)hi << 32) | lo);
    check_eq("  EXITINFO2 = cause << 32 | index", e.info2,
             ((uint64_t)cause << 32) | index);
    check_eq("  trap style, RIP past the ICR low store", e.rip,
             (uint64_t)gx_icr_next);
}

/* ID and version reads, TPR write, PPR read, CR8: no exit. */
static void guest_x_regs(void)
{
    uint64_t cr8;

    g_val[0] = xapic_rd(APIC_ID);
    g_val[1] = xapic_rd(APIC_VERSION);
    xapic_wr(APIC_TPR, 0x40);
    g_val[2] = xapic_rd(APIC_PPR);
    __asm__ volatile("mov %%cr8, %0" : "=r"(cr8));
    g_val[3] = cr8;
}

/* Two self-IPIs through ICR low (self shorthand) with IF=0, then IF=1. */
static void guest_x_selfipi(void)
{
    __asm__ volatile("cli");
    xapic_wr(APIC_ICR_LO, (1U << 18) | 0x62);
    xapic_wr(APIC_ICR_LO, (1U << 18) | 0x64);
    g_val[0] = xapic_rd(APIC_IRR + 3 * 16);     /* vectors 96-127 */
    g_val[1] = g_nlog;
    __asm__ volatile("sti; nop; nop; cli" ::: "memory");
}

static void test_xavic_traps(void)
{
    static const struct {
        const char *name;
        uint32_t off, val;
    } regs[] = {
        { "TMICT (380h)", APIC_TMICT, 0x12345 },
        { "LVT0 (350h)", APIC_LVT0, 0x10700 },
        { "LDR (0D0h)", APIC_LDR, 0x01000000 },
        { "DFR (0E0h)", APIC_DFR, 0x0fffffff },
        { "APIC ID (20h)", APIC_ID, 0x05000000 },
    };
    struct exit e;
    unsigned i;

    for (i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
        avic_reset();
        e = xrun(gx_write, regs[i].off, regs[i].val, true);
        puts_("xavic write ");
        puts_(regs[i].name);
        puts_(":\n");
        check_eq("  #VMEXIT AVIC_NOACCEL (402h)", e.code, EXIT_AVIC_NOACCEL);
        check_eq("  EXITINFO1 = offset | write", e.info1,
                 regs[i].off | (1ULL << 32));
        check_eq("  trap style, RIP past the store", e.rip,
                 (uint64_t)gx_write_next);
        check_eq("  value in the backing page", page_ld(0, regs[i].off),
                 regs[i].val);
    }

    avic_reset();
    e = xrun(gx_read, APIC_TMCCT, 0, true);
    check_eq("xavic TMCCT read: #VMEXIT AVIC_NOACCEL (402h)", e.code,
             EXIT_AVIC_NOACCEL);
    check_eq("xavic TMCCT read: EXITINFO1 = 390h, read", e.info1, APIC_TMCCT);
    check_eq("xavic TMCCT read: fault style, RIP on the load", e.rip,
             (uint64_t)gx_read_insn);

    /* Table 15-22: EOI and RRR reads are allowed (the page's value) */
    avic_reset();
    page_st(0, APIC_EOI, 0xe0e0);
    e = xrun(gx_read, APIC_EOI, 0, true);
    check_eq("xavic EOI read: allowed, no exit", e.code, EXIT_VMMCALL);
    check_eq("xavic EOI read: the backing page value", gx_result, 0xe0e0);
    avic_reset();
    page_st(0, 0xc0, 0xc0c0);
    e = xrun(gx_read, 0xc0, 0, true);
    check_eq("xavic RRR (0C0h) read: allowed, no exit", e.code, EXIT_VMMCALL);
    check_eq("xavic RRR (0C0h) read: the backing page value", gx_result,
             0xc0c0);
    /* an offset the table does not list (3A0h): allowed, written */
    avic_reset();
    e = xrun(gx_write, 0x3a0, 0x3a3a, true);
    check_eq("xavic write of unlisted 3A0h: allowed, no exit", e.code,
             EXIT_VMMCALL);
    check_eq("xavic write of unlisted 3A0h: in the backing page",
             page_ld(0, 0x3a0), 0x3a3a);

    /* Not a 32-bit access at a register offset: fault style (model's choice) */
    avic_reset();
    e = xrun(gx_readb, APIC_ID, 0, true);
    check_eq("xavic 8-bit read of 20h: #VMEXIT AVIC_NOACCEL", e.code,
             EXIT_AVIC_NOACCEL);
    check_eq("xavic 8-bit read of 20h: EXITINFO1 = 20h, read", e.info1,
             APIC_ID);
    check_eq("xavic 8-bit read of 20h: fault style, RIP on the load", e.rip,
             (uint64_t)gx_readb_insn);
    e = xrun(gx_read, APIC_ID + 2, 0, true);
    check_eq("xavic misaligned 32-bit read at 22h: #VMEXIT AVIC_NOACCEL",
             e.code, EXIT_AVIC_NOACCEL);
    check_eq("xavic misaligned 32-bit read at 22h: fault style", e.rip,
             (uint64_t)gx_read_insn);
}

static void test_xavic_ipi(void)
{
    struct exit e;

    ipi_tables();
    e = xrun_icr(XAPIC_DEST(2), 0x72);
    check_x401("xavic ipi via ICR high, ICR low to a not-running target "
               "(cause 1, index 2)", e, XAPIC_DEST(2), 0x72, 1, 2);
    check("  target's vIRR set before the exit",
          page_test_vec(2, APIC_IRR, 0x72));
    check_eq("  ICR high (310h) stored in the page", page_ld(0, APIC_ICR_HI),
             XAPIC_DEST(2));
    check_eq("  ICR low (300h) stored in the page", page_ld(0, APIC_ICR_LO),
             0x72);

    ipi_tables();
    e = xrun_icr(XAPIC_DEST(3), 0x72);
    check_x401("xavic ipi to an invalid entry (cause 2)", e, XAPIC_DEST(3),
               0x72, 2, 3);

    ipi_tables();
    e = xrun_icr(XAPIC_DEST(0xff), 0x74);
    check_x401("xavic broadcast FFh (first failure: 2 not running)", e,
               XAPIC_DEST(0xff), 0x74, 1, 2);
    check("  self, 1 and 2 have the vector",
          page_test_vec(0, APIC_IRR, 0x74) &&
          page_test_vec(1, APIC_IRR, 0x74) &&
          page_test_vec(2, APIC_IRR, 0x74));

    ipi_tables();
    e = xrun_icr(XAPIC_DEST(1), 0x400);
    check_x401("xavic NMI through ICR low (cause 0)", e, XAPIC_DEST(1), 0x400,
               0, 0);

    if (!ap_alive) {
        puts_("xavic: no second CPU, running-target check skipped\n");
        return;
    }
    /* IsRunning=1 target on CPU 1 (guest 1 in x2AVIC mode): no exit. */
    smp_tables(true);
    ap_run_guest1();
    check("xavic smp ipi: guest 1 runs on CPU 1", wait_for(&g1_ready, 1));
    e = xrun_icr(XAPIC_DEST(1), 0x71);
    check_eq("xavic smp ipi, IsRunning=1: no exit on the sender", e.code,
             EXIT_VMMCALL);
    check("xavic smp ipi, IsRunning=1: taken by guest 1 (doorbell)",
          wait_for(&g1_nlog, 1) && g1_log[0] == 0x71);
    check("xavic smp ipi: guest 1 stopped", ap_stop_guest1());
    check_eq("xavic smp ipi: no exit on the receiver before its VMMCALL",
             ap_exit_code, EXIT_VMMCALL);
}

/*
 * Logical destinations (15.29.4, 15.29.10).  xAVIC: the logical APIC ID
 * table, flat (DFR FFFF_FFFFh: bit i = entry i) and cluster (DFR
 * 0FFF_FFFFh: cluster c, bit i = entry c * 4 + i), each valid entry naming
 * a guest physical APIC ID.  x2AVIC: no table, cluster dest[31:16] and bit
 * i of dest[15:0] are physical ID cluster << 4 | i.  Tables as in
 * ipi_tables(): 1 running (idle CPU 1), 2 not running, max index 7.
 */
static void test_logical(void)
{
    struct exit e;
    uint64_t icr;

    /* xAVIC flat: bit 0 -> ID 1, bit 1 -> ID 2, bit 2 invalid */
    ipi_tables();
    page_st(0, APIC_DFR, 0xffffffff);
    logical_table[0] = (1U << 31) | 1;
    logical_table[1] = (1U << 31) | 2;
    e = xrun_icr(XAPIC_DEST(0x01), (1U << 11) | 0x71);
    check_eq("xavic logical flat 01h -> ID 1 (running): no exit", e.code,
             EXIT_VMMCALL);
    check("xavic logical flat 01h: ID 1's vIRR has the vector",
          page_test_vec(1, APIC_IRR, 0x71) && page_reg_clear(2, APIC_IRR));

    ipi_tables();
    page_st(0, APIC_DFR, 0xffffffff);
    logical_table[0] = (1U << 31) | 1;
    logical_table[1] = (1U << 31) | 2;
    e = xrun_icr(XAPIC_DEST(0x03), (1U << 11) | 0x72);
    check_x401("xavic logical flat 03h -> IDs 1, 2 (cause 1, index 2)", e,
               XAPIC_DEST(0x03), (1U << 11) | 0x72, 1, 2);
    check("  IDs 1 and 2 have the vector",
          page_test_vec(1, APIC_IRR, 0x72) &&
          page_test_vec(2, APIC_IRR, 0x72));

    ipi_tables();
    page_st(0, APIC_DFR, 0xffffffff);
    e = xrun_icr(XAPIC_DEST(0x04), (1U << 11) | 0x72);
    check_x401("xavic logical flat 04h, entry 2 not valid (cause 2, "
               "index 2)", e, XAPIC_DEST(0x04), (1U << 11) | 0x72, 2, 2);

    /* xAVIC cluster: cluster 1, bit 1 = entry 5 -> ID 2 */
    ipi_tables();
    page_st(0, APIC_DFR, 0x0fffffff);
    logical_table[5] = (1U << 31) | 2;
    e = xrun_icr(XAPIC_DEST(0x12), (1U << 11) | 0x73);
    check_x401("xavic logical cluster 12h -> entry 5 -> ID 2 (cause 1, "
               "index 2)", e, XAPIC_DEST(0x12), (1U << 11) | 0x73, 1, 2);
    check("  ID 2 has the vector", page_test_vec(2, APIC_IRR, 0x73));

    /* x2AVIC: cluster 0, bits 1 and 2 -> physical IDs 1 and 2 */
    icr = X2_DEST(0x00000006) | (1U << 11) | 0x74;
    e = run_icr(icr);
    check_401("x2avic logical 6h -> IDs 1, 2 (cause 1, index 2)", e, icr, 1,
              2);
    check("  IDs 1 and 2 have the vector",
          page_test_vec(1, APIC_IRR, 0x74) &&
          page_test_vec(2, APIC_IRR, 0x74));
    icr = X2_DEST(0x00000002) | (1U << 11) | 0x75;
    e = run_icr(icr);
    check_eq("x2avic logical 2h -> ID 1 (running): no exit", e.code,
             EXIT_VMMCALL);
    check("x2avic logical 2h: ID 1's vIRR has the vector",
          page_test_vec(1, APIC_IRR, 0x75));
    /* cluster 1, bit 0 = physical ID 16, beyond max index 7 */
    icr = X2_DEST(0x00010001) | (1U << 11) | 0x75;
    check_401("x2avic logical 10001h -> ID 16 > max index (cause 2, "
              "index 16)", run_icr(icr), icr, 2, 16);
}

static void test_xavic(void)
{
    struct exit e;

    puts_("xavic: AVIC_ENABLE without x2AVIC_ENABLE, APIC BAR FEE00000h\n");
    xnpt_build((uint64_t)xapic_dummy | NPT_P_RW_U);

    /* 1. register reads and the TPR through the page, no exit */
    avic_reset();
    page_st(0, APIC_ID, 0x03000000);
    page_st(0, APIC_VERSION, 0x80050010);
    xavic_setup(guest_x_regs, true);
    e = run();
    check_eq("xavic regs: no exit before the guest's VMMCALL", e.code,
             EXIT_VMMCALL);
    check_eq("xavic regs: APIC ID read = backing page value", g_val[0],
             0x03000000);
    check_eq("xavic regs: version read = backing page value", g_val[1],
             0x80050010);
    check_eq("xavic regs: TPR write accelerated into the page",
             page_ld(0, APIC_TPR), 0x40);
    check_eq("xavic regs: PPR read = 40h", g_val[2], 0x40);
    check_eq("xavic regs: CR8 reads vTPR[7:4]", g_val[3], 4);
    check_eq("xavic regs: the page the NPT maps there is untouched",
             xapic_dummy[APIC_TPR / 4], XAPIC_PATTERN);

    /* 2. self-IPIs through ICR low, EOI through the page */
    avic_reset();
    xavic_setup(guest_x_selfipi, true);
    e = run();
    check_eq("xavic selfipi: no exit before the guest's VMMCALL", e.code,
             EXIT_VMMCALL);
    check_eq("xavic selfipi: vIRR 0x62 and 0x64 read through 230h", g_val[0],
             (1U << 2) | (1U << 4));
    check_eq("xavic selfipi: nothing delivered while RFLAGS.IF=0", g_val[1],
             0);
    check_eq("xavic selfipi: two interrupts through the guest IDT", g_nlog,
             2);
    check("xavic selfipi: 0x64 first, then 0x62",
          g_log[0] == 0x64 && g_log[1] == 0x62);
    check("xavic selfipi: vector in vISR (read through the page) in the "
          "handler", g_isr_before[0] && g_isr_before[1]);
    check("xavic selfipi: EOI write (0B0h) cleared vISR",
          !g_isr_after[0] && !g_isr_after[1]);
    check("xavic selfipi: IRR and ISR empty at the end",
          page_reg_clear(0, APIC_IRR) && page_reg_clear(0, APIC_ISR));
    check_eq("xavic selfipi: ICR low holds the last write",
             page_ld(0, APIC_ICR_LO), (1U << 18) | 0x64);

    /* 3. trap- and fault-style exits, 4. IPIs */
    test_xavic_traps();
    test_xavic_ipi();

    /* 5. the nested page walk comes first: no NPT mapping -> #NPF */
    avic_reset();
    xnpt_build(0);
    e = xrun(gx_read, APIC_ID, 0, true);
    check_eq("xavic, APIC BAR not mapped in the NPT: #VMEXIT NPF (400h)",
             e.code, EXIT_NPF);
    check_eq("xavic, not mapped: EXITINFO2 = the GPA", e.info2,
             XAPIC_BASE + APIC_ID);
    check_eq("xavic, not mapped: RIP on the load", e.rip,
             (uint64_t)gx_read_insn);

    /* read-only NPT mapping: reads served, writes #NPF */
    avic_reset();
    page_st(0, APIC_ID, 0x07000000);
    xnpt_build((uint64_t)xapic_dummy | NPT_P_U);
    e = xrun(gx_read, APIC_ID, 0, true);
    check_eq("xavic, read-only NPT entry: read, no exit", e.code,
             EXIT_VMMCALL);
    check_eq("xavic, read-only NPT entry: read from the backing page",
             gx_result, 0x07000000);
    e = xrun(gx_write, APIC_TPR, 0x30, true);
    check_eq("xavic, read-only NPT entry: write -> #VMEXIT NPF", e.code,
             EXIT_NPF);
    check_eq("xavic, read-only NPT entry: EXITINFO1 P|W", e.info1 & 3, 3);
    check_eq("xavic, read-only NPT entry: TPR not written",
             page_ld(0, APIC_TPR), 0);

    /* 6. AVIC off: the access goes through the NPT to the page mapped */
    avic_reset();
    page_st(0, APIC_ID, 0x07000000);
    xnpt_build((uint64_t)xapic_dummy | NPT_P_RW_U);
    e = xrun(gx_read, APIC_ID, 0, false);
    check_eq("xavic off: read, no exit", e.code, EXIT_VMMCALL);
    check_eq("xavic off: read returns the NPT-mapped page", gx_result,
             XAPIC_PATTERN);
    e = xrun(gx_write, APIC_TPR, 0x30, false);
    check_eq("xavic off: write, no exit", e.code, EXIT_VMMCALL);
    check("xavic off: write lands in the NPT-mapped page, not the backing "
          "page", xapic_dummy[APIC_TPR / 4] == 0x30 &&
          page_ld(0, APIC_TPR) == 0);

    /* 7. logical destinations, xAVIC and x2AVIC */
    test_logical();
}

/* ---- end of xAVIC ---------------------------------------------------------- */

void avictest_main(void)
{
    uint32_t a, b, c, d;
    int i;

    puts_("avictest: SVM AVIC/x2AVIC checks (APM vol. 2 15.29)\n");
    cpuid(0x80000001, &a, &b, &c, &d);
    if (!(c & (1 << 2))) {
        puts_("FAIL no SVM in CPUID 8000_0001 ECX\n");
        outl(0xf4, 0x11);
    }
    cpuid(0x8000000a, &a, &b, &c, &d);
    have_npt = d & (1 << 0);
    have_avic = d & (1 << 13);
    have_x2avic = d & (1 << 18);
    puts_("cpuid 8000_000A edx ");
    puthex(d);
    puts_(have_avic ? ": avic yes" : ": avic no");
    puts_(have_x2avic ? ", x2avic yes\n" : ", x2avic no\n");
    check("npt advertised", have_npt);
    cpuid(0x80000008, &a, &b, &c, &d);
    maxphyaddr = a & 0xff;
    host_idt_load();

    /*
     * Mask both 8259s: the BIOS leaves the PIT's IRQ 0 unmasked, and the
     * VMCB does not intercept INTR, so a timer tick arriving while a guest
     * runs with IF=1 would go through the guest IDT (seen as a stray
     * vector 0xff in the log when the host machine was busy).
     */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
    wrmsr(MSR_VM_HSAVE_PA, (uint64_t)hsave);
    for (i = 0; i < 256; i++) {
        idt_set(i, guest_irq_other);
    }
    idt_set(0x41, guest_irq_41);
    idt_set(0x45, guest_irq_45);
    idt_set(0x50, guest_irq_50);
    idt_set(0x62, guest_irq_62);
    idt_set(0x71, guest_irq_71);

    test_avic_off("avic off in the VMCB", false);
    if (have_avic && have_x2avic) {
        test_avic_off("avic on, MSRPM intercepts 800h-8FFh", true);
        test_vmrun_checks();
        test_selfipi_eoi();
        test_tpr();
        test_timer_traps();
        test_x2apic_checks();
        test_level_eoi();
        test_nmi_icr();
        test_ipi();
        test_doorbell();
        test_smp();
        test_ga();
        test_xavic();
    } else {
        test_avic_off("AVIC bits set, CPUID without avic", true);
        avic_reset();
        vmcb_setup(guest_done, true, false);
        w32(VMCB_INT_CTL, INT_CTL_X2AVIC);
        check_eq("x2AVIC_ENABLE alone, CPUID without avic: ignored, runs",
                 run().code, EXIT_VMMCALL);
    }

    puts_("avictest: ");
    putdec(passed);
    puts_(" passed, ");
    putdec(failed);
    puts_(" failed\n");
    outl(0xf4, failed ? 0x11 : 0x10);
    for (;;) {
        __asm__ volatile("hlt");
    }
}
