//! The delivery-checking guest on two and more vCPUs: starting the application processors, and
//! the `smp` check (fixed IPIs between vCPUs, TPR on the receiving side, both sides racing).
//!
//! Start-up: the hypervisor starts an AP after INIT and a startup IPI in real mode at
//! `CS = vector << 8, IP = 0`. The BSP copies a trampoline to [`TRAMPOLINE`] (startup vector 08h)
//! that goes from real mode straight to long mode — CR4.PAE, CR3 = the identity page tables the
//! hypervisor built for the BSP at 1000h, EFER.LME, then CR0.PE and CR0.PG together and a far jump
//! to the 64-bit code segment (selector 10h) of the GDT it built at 7000h — and calls [`ap_main`]
//! on a stack of its own.
//!
//! Books across vCPUs: each vCPU has its own ledger, touched only by itself. A sender counts what
//! it sends to vCPU `t` in `REMOTE_SENT[t][v]` before the ICR write; `t`'s handler, before it
//! reports an arrival of `v`, arms its ledger for every send it has not yet claimed
//! (`claim_remote`), and counts the arrival in `ARRIVALS[t][v]`, which senders watch: a sender
//! sends `v` to `t` again only when the previous one arrived, so nothing merges and the counts are
//! exact. Remote vectors ([`REMOTE_VECTORS`]) are used by no other source.

use super::*;
use core::sync::atomic::Ordering::{Acquire, Release};

/// Where the AP trampoline goes, and the startup vector that names it.
const TRAMPOLINE: u64 = 0x8000;
const SIPI_VECTOR: u64 = 0x08;
const AP_STACK: usize = 64 * 1024;

/// Vectors of IPIs between vCPUs, classes 3 to E.
const REMOTE_VECTORS: [u8; 12] = [
    0x34, 0x44, 0x54, 0x64, 0x74, 0x84, 0x94, 0xa4, 0xb4, 0xc4, 0xd4, 0xe4,
];
/// The IPI that wakes an AP for a new command (a remote vector like the others), in class F so
/// that no TPR the checks use holds it.
const DOORBELL: u8 = 0xfd;

#[repr(C, align(16))]
struct ApStacks([[u8; AP_STACK]; MAX_CPUS - 1]);

static mut AP_STACKS: ApStacks = ApStacks([[0; AP_STACK]; MAX_CPUS - 1]);

/// The vCPU whose stack holds `rsp` (the BSP runs on the image's own stack).
pub(super) fn cpu_of_stack(rsp: u64) -> usize {
    let base = &raw const AP_STACKS as u64;
    let end = base + (AP_STACK * (MAX_CPUS - 1)) as u64;
    if (base..end).contains(&rsp) {
        1 + ((rsp - base) as usize) / AP_STACK
    } else {
        0
    }
}

static REMOTE_SENT: [[AtomicU32; 256]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; 256] }; MAX_CPUS];
/// Written by the receiving vCPU only.
static REMOTE_CLAIMED: [[AtomicU32; 256]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; 256] }; MAX_CPUS];
static ARRIVALS: [[AtomicU32; 256]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; 256] }; MAX_CPUS];

/// Arms `cpu`'s ledger (`l`) for the sends to it of `v` it has not claimed yet.
pub(super) fn claim_remote(cpu: usize, v: u8, l: &mut Ledger) {
    let i = usize::from(v);
    let sent = REMOTE_SENT[cpu][i].load(Acquire);
    let claimed = REMOTE_CLAIMED[cpu][i].load(Relaxed);
    for _ in claimed..sent {
        l.arm(v);
    }
    REMOTE_CLAIMED[cpu][i].store(sent.max(claimed), Relaxed);
}

/// Claims every remote vector's sends (before the books are closed or IRR is compared), the
/// VF's MSI-X vectors aimed at this vCPU included.
pub(super) fn claim_all(cpu: usize) {
    ledger(|l| {
        let vf = &super::vf::entries::VECTORS;
        for &v in REMOTE_VECTORS.iter().chain(&[DOORBELL]).chain(vf) {
            claim_remote(cpu, v, l);
        }
    });
}

pub(super) fn note_arrival(cpu: usize, v: u8) {
    ARRIVALS[cpu][usize::from(v)].fetch_add(1, Release);
}

/// How an IPI names its target.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Dest {
    Physical,
    Logical,
    /// The all-excluding-self shorthand (every other vCPU).
    AllButSelf,
}

pub(super) const DESTS: [Dest; 3] = [Dest::Physical, Dest::Logical, Dest::AllButSelf];

/// x2APIC logical ID of `apic_id`: cluster in 31:16, one bit of 16 in 15:0.
pub(super) fn ldr(apic_id: u32) -> u32 {
    (apic_id >> 4) << 16 | 1 << (apic_id & 15)
}

/// vCPUs started (the BSP included).
static CPUS: AtomicU32 = AtomicU32::new(1);

/// vCPUs started so far, the BSP included (1 until the `smp` check starts the APs).
pub(super) fn started_cpus() -> usize {
    CPUS.load(Acquire) as usize
}

/// Sends `v` from this vCPU to `target` (or, with [`Dest::AllButSelf`], to every other started
/// vCPU), counting it first.
fn remote_send(target: usize, v: u8, dest: Dest) {
    let me = this_cpu();
    let cpus = CPUS.load(Acquire) as usize;
    let icr = match dest {
        Dest::Physical => u64::from(APIC_IDS[target].load(Relaxed)) << 32 | u64::from(v),
        Dest::Logical => {
            u64::from(ldr(APIC_IDS[target].load(Relaxed))) << 32 | 1 << 11 | u64::from(v)
        }
        Dest::AllButSelf => 3 << 18 | u64::from(v),
    };
    let targets = (0..cpus).filter(|&t| match dest {
        Dest::AllButSelf => t != me,
        _ => t == target,
    });
    for t in targets {
        REMOTE_SENT[t][usize::from(v)].fetch_add(1, Release);
    }
    wrmsr(msr::ICR, icr);
}

/// Counts one interrupt of vector `v` that a device (the VF) is about to send `target`, so
/// that `target`'s handler finds it in its books.
pub(super) fn count_device_send(target: usize, v: u8) {
    REMOTE_SENT[target][usize::from(v)].fetch_add(1, Release);
}

/// Sends of `v` to `cpu` not arrived (yet).
pub(super) fn missing(cpu: usize, v: u8) -> u32 {
    let i = usize::from(v);
    REMOTE_SENT[cpu][i]
        .load(Acquire)
        .saturating_sub(ARRIVALS[cpu][i].load(Acquire))
}

/// Arrivals of `v` at `cpu` so far.
pub(super) fn arrivals(cpu: usize, v: u8) -> u32 {
    ARRIVALS[cpu][usize::from(v)].load(Acquire)
}

/// Whether every send of `v` to `target` has arrived.
pub(super) fn caught_up(target: usize, v: u8) -> bool {
    let i = usize::from(v);
    ARRIVALS[target][i].load(Acquire) >= REMOTE_SENT[target][i].load(Acquire)
}

/// Waits (interrupts on, spinning) until `v` caught up at `target`; false after `timeout` TSC
/// ticks.
pub(super) fn wait_caught_up(target: usize, v: u8, timeout: u64) -> bool {
    let start = rdtsc();
    while !caught_up(target, v) {
        if rdtsc() - start > timeout {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Start-up.

global_asm!(
    r#"
    .section .text.ap_trampoline, "ax"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl ap_gdtr - ap_trampoline_start
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0x1000, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    ljmpl $0x10, $(0x8000 + ap_long - ap_trampoline_start)
    .code64
ap_long:
    movw $0x18, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq ap_stack(%rip), %rsp
    movq ap_cpu(%rip), %rdi
    movq ap_entry(%rip), %rax
    callq *%rax
1:
    cli
    hlt
    jmp 1b
    .balign 8
ap_gdtr:
    .word 31
    .long 0x7000
    .balign 8
    .global ap_stack, ap_cpu, ap_entry
ap_stack:
    .quad 0
ap_cpu:
    .quad 0
ap_entry:
    .quad 0
    .global ap_trampoline_end
ap_trampoline_end:
"#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_stack: u8;
    static ap_cpu: u8;
    static ap_entry: u8;
}

/// Starts every AP the guest has (up to [`MAX_CPUS`]) that is not running yet: (APs running,
/// APs the guest has).
pub(super) fn start_aps(clock: &Clock) -> (usize, usize) {
    let vcpus = (core::arch::x86_64::__cpuid(1).ebx >> 16 & 0xff).max(1) as usize;
    TSC_PER_US.store(clock.tsc_per_us, Relaxed);
    let aps = vcpus.min(MAX_CPUS) - 1;
    let mut started = 0;
    for (cpu, alive) in ALIVE.iter().enumerate().take(aps + 1).skip(1) {
        if alive.load(Acquire) != 0 || start_ap(cpu, clock) {
            started += 1;
            CPUS.store(1 + started as u32, Release);
        } else {
            break;
        }
    }
    (started, aps)
}

/// Whether each AP reached [`ap_main`].
static ALIVE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Starts vCPU `cpu` (APIC ID `cpu`, as the hypervisor numbers them) through INIT and a startup
/// IPI; true once it runs [`ap_main`].
fn start_ap(cpu: usize, clock: &Clock) -> bool {
    let start = &raw const ap_trampoline_start as u64;
    let end = &raw const ap_trampoline_end as u64;
    let len = (end - start) as usize;
    let at = |sym: *const u8| TRAMPOLINE + (sym as u64 - start);
    // SAFETY: copies the trampoline (code and its data words) to a page below 1 MiB of this
    // guest's RAM that nothing else uses (the image starts at 1 MiB; the hypervisor's tables
    // are at 1000h-3FFFh and 7000h), then fills in the AP's stack, index and entry point.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE as *mut u8, len);
        let stack_top = (&raw mut AP_STACKS as u64) + (AP_STACK * cpu) as u64;
        core::ptr::write_volatile(at(&raw const ap_stack) as *mut u64, stack_top);
        core::ptr::write_volatile(at(&raw const ap_cpu) as *mut u64, cpu as u64);
        let entry = ap_main as *const () as u64;
        core::ptr::write_volatile(at(&raw const ap_entry) as *mut u64, entry);
    }
    let dest = (cpu as u64) << 32;
    // INIT (level assert), then STARTUP with the trampoline's page.
    wrmsr(msr::ICR, dest | 5 << 8 | 1 << 14);
    wrmsr(msr::ICR, dest | 6 << 8 | SIPI_VECTOR);
    let t0 = rdtsc();
    while ALIVE[cpu].load(Acquire) == 0 {
        if rdtsc() - t0 > clock.us(2_000_000) {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

// ---------------------------------------------------------------------------------------------
// The AP's side: commands from the BSP.

const CMD_NONE: u32 = 0;
/// Raise TPR to the argument.
const CMD_TPR: u32 = 1;
/// Compare IRR with the remote sends it holds, lower TPR, take them.
const CMD_RELEASE: u32 = 2;
/// Send every remote vector to the BSP, each after the previous arrived, by the argument's
/// destination kind.
const CMD_SEND: u32 = 3;
/// Race for the argument's iterations.
const CMD_RACE: u32 = 4;
/// Wait for what is outstanding, close the books, publish the counts.
pub(super) const CMD_SETTLE: u32 = 5;

/// Send an NMI to vCPU `arg` (the `nmi` check).
pub(super) const CMD_NMI: u32 = 6;
/// `cli; hlt`: parks until an NMI; then `sti` and whatever is pending arrives.
pub(super) const CMD_PARK: u32 = 7;
/// Per AP: 1 while it is about to halt with interrupts off ([`CMD_PARK`]), 2 once an NMI woke it.
static PARK_STATE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

pub(super) fn park_state(cpu: usize) -> u32 {
    PARK_STATE[cpu].load(Acquire)
}
static CMD: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(CMD_NONE) }; MAX_CPUS];
static ARG: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CMD_SEQ: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static DONE_SEQ: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// The AP's counts after [`CMD_SETTLE`]: sent, received, coalesced, out of order, duplicates,
/// lost, read-back mismatches.
static AP_COUNTS: [[AtomicU64; 7]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 7] }; MAX_CPUS];
static TSC_PER_US: AtomicU64 = AtomicU64::new(1);
/// For the report of a failing AP: the vectors it lost (four 64-bit words) and its first bad
/// arrivals (bit 32 set, TPR in 23:16, depth in 15:8, vector in 7:0).
static AP_LOST: [[AtomicU64; 4]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 4] }; MAX_CPUS];
static AP_BAD: [[AtomicU64; BAD_KEPT]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; BAD_KEPT] }; MAX_CPUS];

/// Gives `cpu` a command, rings it and waits for it to finish (false after `timeout_us`).
pub(super) fn command(cpu: usize, cmd: u32, arg: u64, timeout_us: u64) -> bool {
    post(cpu, cmd, arg);
    wait_done(cpu, timeout_us)
}

/// Gives `cpu` a command and rings it, without waiting.
pub(super) fn post(cpu: usize, cmd: u32, arg: u64) {
    CMD[cpu].store(cmd, Relaxed);
    ARG[cpu].store(arg, Relaxed);
    let seq = CMD_SEQ[cpu].load(Relaxed) + 1;
    CMD_SEQ[cpu].store(seq, Release);
    remote_send(cpu, DOORBELL, Dest::Physical);
}

/// Waits until `cpu` finished its last command (false after `timeout_us`).
pub(super) fn wait_done(cpu: usize, timeout_us: u64) -> bool {
    let seq = CMD_SEQ[cpu].load(Relaxed);
    let t0 = rdtsc();
    let timeout = timeout_us * TSC_PER_US.load(Relaxed);
    while DONE_SEQ[cpu].load(Acquire) != seq {
        if rdtsc() - t0 > timeout {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// An AP's life: its IDT and APIC, then commands until the guest ends.
extern "C" fn ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    crate::traps::install();
    APIC_IDS[cpu].store(rdmsr(msr::ID) as u32, Relaxed);
    wrmsr(msr::SVR, SVR_ENABLE | u64::from(SPURIOUS_VECTOR));
    wrmsr(msr::TPR, 0);
    ALIVE[cpu].store(1, Release);
    let mut done = 0;
    loop {
        interrupts_off();
        let seq = CMD_SEQ[cpu].load(Acquire);
        if seq == done {
            // Woken by the doorbell (or anything else); the check above cannot miss it.
            sti_hlt_cli();
            continue;
        }
        interrupts_on();
        let arg = ARG[cpu].load(Relaxed);
        match CMD[cpu].load(Relaxed) {
            CMD_TPR => set_tpr(arg as u8),
            CMD_RELEASE => release(cpu),
            CMD_SEND => send_all(0, DESTS[arg as usize % 3]),
            CMD_RACE => race(arg as u32),
            CMD_SETTLE => settle_and_publish(cpu),
            CMD_NMI => super::nmi::send(arg as usize, Dest::Physical),
            CMD_PARK => park(cpu),
            _ => {}
        }
        done = seq;
        DONE_SEQ[cpu].store(seq, Release);
    }
}

global_asm!(
    r#"
    .section .text.deliver, "ax"
    .global deliver_park_loop, deliver_park_resume
deliver_park_loop:
    hlt
    jmp deliver_park_loop
deliver_park_resume:
    ret
"#,
    options(att_syntax)
);

extern "C" {
    /// `1: hlt; jmp 1b` with interrupts off, the way an OS parks a processor for good (and the
    /// shape the hypervisor recognises as halted: a HLT it cannot tell from the last byte of
    /// another instruction is not taken for one). Returns only when the NMI handler moves the
    /// interrupted RIP to `deliver_park_resume` ([`park_exit`]).
    fn deliver_park_loop();
    fn deliver_park_resume();
}

/// Where an NMI that interrupted the park loop at `rip` returns to: past the loop, or `rip`.
pub(super) fn park_exit(rip: u64) -> u64 {
    let start = deliver_park_loop as *const () as u64;
    let end = deliver_park_resume as *const () as u64;
    if (start..end).contains(&rip) {
        end
    } else {
        rip
    }
}

/// Halts with interrupts off: the hypervisor parks this vCPU (at once where HLT exits, at its
/// next once-a-second look otherwise) until an NMI, whose handler ends the loop; what was sent
/// meanwhile arrives after the STI.
fn park(cpu: usize) {
    interrupts_off();
    PARK_STATE[cpu].store(1, Release);
    // SAFETY: a HLT loop with IF clear touching no memory and no register; only an NMI (its
    // handler moves RIP to the `ret`) or INIT ends it.
    unsafe { deliver_park_loop() };
    PARK_STATE[cpu].store(2, Release);
    interrupts_on();
    let_deliver();
}

/// After TPR held some remote sends: IRR must show exactly those of classes at or below TPR;
/// they are judged as sent from here (highest first once TPR drops).
fn release(cpu: usize) {
    interrupts_off();
    claim_all(cpu);
    let irr = read_bank(msr::IRR0);
    let tpr = ledger(|l| l.tpr());
    let mut held = VectorSet::new();
    for &v in &REMOTE_VECTORS {
        if class(v) <= class(tpr) && ledger(|l| l.armed_of(v)) > 0 {
            held.insert(v);
        }
    }
    let mut remote_irr = VectorSet::new();
    for &v in &REMOTE_VECTORS {
        if irr.contains(v) {
            remote_irr.insert(v);
            ledger(|l| l.landed(v));
        }
    }
    for i in 0..8 {
        readback(
            "IRR (remote)",
            u64::from(remote_irr.word(i)),
            u64::from(held.word(i)),
        );
    }
    interrupts_on();
    set_tpr(0);
    let_deliver();
}

/// Sends every remote vector to `target` (with [`Dest::AllButSelf`], to every other vCPU), each
/// after the previous arrived everywhere it went.
fn send_all(target: usize, dest: Dest) {
    let timeout = 1_000_000 * TSC_PER_US.load(Relaxed);
    let me = this_cpu();
    let cpus = CPUS.load(Acquire) as usize;
    for &v in &REMOTE_VECTORS {
        remote_send(target, v, dest);
        for t in 0..cpus {
            let reached = match dest {
                Dest::AllButSelf => t != me,
                _ => t == target,
            };
            if reached {
                wait_caught_up(t, v, timeout);
            }
        }
    }
}

/// The AP's half of the race: exits, TPR changes, self-IPIs, and IPIs to the BSP (each vector
/// only once its previous one arrived).
fn race(rounds: u32) {
    let mut next = 0usize;
    let mut raised = false;
    // Each AP sends only its share of the vectors (12 split by 1, 2 or 3 APs): two APs that
    // both saw a vector caught up and sent it at once would merge in the BSP's IRR.
    let (me, aps) = (this_cpu(), started_cpus() - 1);
    for i in 0..rounds {
        match i % 5 {
            0 => cpuid(),
            1 => outb(UNUSED_PORT, i as u8),
            2 => {
                let v = REMOTE_VECTORS[(next * aps + me - 1) % REMOTE_VECTORS.len()];
                next += 1;
                if caught_up(0, v) {
                    remote_send(0, v, DESTS[i as usize % 2]);
                }
            }
            3 => {
                let v = RACE_IPIS[(i as usize / 5) % RACE_IPIS.len()];
                if !ledger(|l| l.pending().contains(v)) {
                    send(v, METHODS[i as usize % 2]);
                }
            }
            _ => {
                if i % 75 == 4 {
                    raised = !raised;
                    set_tpr(if raised { 0x70 } else { 0 });
                    let_deliver();
                }
            }
        }
    }
    set_tpr(0);
    let_deliver();
}

fn settle_and_publish(cpu: usize) {
    let timeout = 1_000_000 * TSC_PER_US.load(Relaxed);
    let start = rdtsc();
    loop {
        claim_all(cpu);
        if ledger(|l| l.outstanding()) == 0 || rdtsc() - start > timeout {
            break;
        }
        core::hint::spin_loop();
    }
    let (c, m, lost, bad) = ledger(|l| {
        let lost = l.outstanding_vectors();
        let mut bad = [0u64; BAD_KEPT];
        for (slot, a) in bad.iter_mut().zip(l.first_bad()) {
            *slot =
                1 << 32 | u64::from(a.tpr) << 16 | u64::from(a.depth) << 8 | u64::from(a.vector);
        }
        l.settle();
        (l.counts(), l.readback_mismatches, lost, bad)
    });
    for (i, slot) in AP_LOST[cpu].iter().enumerate() {
        slot.store(
            u64::from(lost.word(2 * i)) | u64::from(lost.word(2 * i + 1)) << 32,
            Relaxed,
        );
    }
    for (slot, b) in AP_BAD[cpu].iter().zip(bad) {
        slot.store(b, Relaxed);
    }
    for (slot, v) in AP_COUNTS[cpu].iter().zip([
        c.sent,
        c.received,
        c.coalesced,
        c.out_of_order,
        c.duplicates,
        c.lost,
        m,
    ]) {
        slot.store(v, Relaxed);
    }
}

pub(super) fn ap_counts(cpu: usize) -> (Counts, u64) {
    let a: [u64; 7] = core::array::from_fn(|i| AP_COUNTS[cpu][i].load(Relaxed));
    (
        Counts {
            sent: a[0],
            received: a[1],
            coalesced: a[2],
            out_of_order: a[3],
            duplicates: a[4],
            lost: a[5],
        },
        a[6],
    )
}

// ---------------------------------------------------------------------------------------------
// The check, on the BSP.

/// IPIs between vCPUs: the BSP sends every remote vector to each AP by physical and logical
/// destination and by the all-excluding-self shorthand, each AP sends them back; each AP raises
/// TPR to 60h while the BSP sends all of them (classes above arrive, the rest wait in IRR and come
/// highest first when it drops); then every vCPU races (exits, TPR, self-IPIs, IPIs to each other)
/// for `deliver-rounds` iterations. The line's counts are those of all vCPUs.
pub(super) fn check_smp(run: &mut Run) {
    let vcpus = (core::arch::x86_64::__cpuid(1).ebx >> 16 & 0xff).max(1) as usize;
    if vcpus < 2 {
        say!("testguest: deliver: smp: skipped: 1 vcpu");
        return;
    }
    TSC_PER_US.store(run.clock.tsc_per_us, Relaxed);
    let before = snapshot();
    let mut extra = Extra::ok();
    let (started, aps) = start_aps(&run.clock);
    extra.note(
        started == aps,
        format_args!("{started} of {aps} aps started"),
    );
    let cpus = 1 + started;
    let timeout = run.clock.us(1_000_000);
    let mut late = 0;
    // BSP to each AP, every destination kind; each AP back to the BSP.
    for cpu in 1..cpus {
        for dest in DESTS {
            for &v in &REMOTE_VECTORS {
                remote_send(cpu, v, dest);
                for t in 1..cpus {
                    if !wait_caught_up(t, v, timeout) {
                        late += 1;
                    }
                }
            }
            if !command(cpu, CMD_SEND, dest as u64, 5_000_000) {
                late += 1;
            }
        }
    }
    // TPR on the receiving side.
    for cpu in 1..cpus {
        for _ in 0..3 {
            command(cpu, CMD_TPR, 0x60, 1_000_000);
            for &v in &REMOTE_VECTORS {
                remote_send(cpu, v, Dest::Physical);
                if class(v) > 6 && !wait_caught_up(cpu, v, timeout) {
                    late += 1;
                }
            }
            // Give held ones the time to arrive if TPR failed to hold them (the AP's ledger
            // counts that out of order).
            run_with_exits(run.clock.us(2_000));
            command(cpu, CMD_RELEASE, 0, 1_000_000);
            for &v in &REMOTE_VECTORS {
                if !wait_caught_up(cpu, v, timeout) {
                    late += 1;
                }
            }
        }
    }
    // Everyone races; the BSP also sends to every AP, each vector after its previous arrived.
    for cpu in 1..cpus {
        CMD[cpu].store(CMD_RACE, Relaxed);
        ARG[cpu].store(u64::from(run.rounds), Relaxed);
        let seq = CMD_SEQ[cpu].load(Relaxed) + 1;
        CMD_SEQ[cpu].store(seq, Release);
        remote_send(cpu, DOORBELL, Dest::Physical);
    }
    let mut next = 0usize;
    let mut raised = false;
    for i in 0..run.rounds {
        match i % 5 {
            0 => cpuid(),
            1 => outb(UNUSED_PORT, i as u8),
            2 => {
                let v = REMOTE_VECTORS[next % REMOTE_VECTORS.len()];
                let t = 1 + next % (cpus - 1);
                next += 1;
                if caught_up(t, v) {
                    remote_send(t, v, DESTS[i as usize % 2]);
                }
            }
            3 => {
                if i % 100 == 3 {
                    raised = !raised;
                    set_tpr(if raised { 0x80 } else { 0 });
                    let_deliver();
                }
            }
            _ => force_exit(i),
        }
    }
    set_tpr(0);
    let_deliver();
    for cpu in 1..cpus {
        let seq = CMD_SEQ[cpu].load(Relaxed);
        let t0 = rdtsc();
        while DONE_SEQ[cpu].load(Acquire) != seq && rdtsc() - t0 < run.clock.us(60_000_000) {
            core::hint::spin_loop();
        }
    }
    // Close every vCPU's books.
    for cpu in 1..cpus {
        if !command(cpu, CMD_SETTLE, 0, 5_000_000) {
            late += 1;
        }
    }
    let start = rdtsc();
    loop {
        claim_all(0);
        if ledger(|l| l.outstanding()) == 0 || rdtsc() - start > timeout {
            break;
        }
        core::hint::spin_loop();
    }
    ledger(|l| l.settle());
    extra.note(late == 0, format_args!("late {late}"));
    // The APs' counts join the BSP's in this line.
    let mut aps_total = Counts::default();
    let mut ap_mismatches = 0;
    for cpu in 1..cpus {
        let (c, m) = ap_counts(cpu);
        say!("testguest: deliver: smp: vcpu {cpu}: {c}, read-back mismatches {m}");
        if !c.clean() || m != 0 {
            for (w, word) in AP_LOST[cpu].iter().enumerate() {
                let word = word.load(Relaxed);
                for b in (0..64).filter(|b| word >> b & 1 != 0) {
                    say!(
                        "testguest: deliver: smp: vcpu {cpu}: lost vector {:#x}",
                        w * 64 + b
                    );
                }
            }
            for b in AP_BAD[cpu]
                .iter()
                .map(|b| b.load(Relaxed))
                .filter(|b| b >> 32 != 0)
            {
                say!(
                    "testguest: deliver: smp: vcpu {cpu}: bad arrival: vector {:#x} depth {} tpr {:#x}",
                    b & 0xff,
                    b >> 8 & 0xff,
                    b >> 16 & 0xff
                );
            }
        }
        aps_total.add(&c);
        ap_mismatches += m;
    }
    extra.note(
        aps_total.clean() && ap_mismatches == 0,
        format_args!("{} vcpus", cpus),
    );
    run.report_with("smp", before, extra, aps_total, ap_mismatches);
}
