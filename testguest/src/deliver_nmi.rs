//! The `nmi` check: NMI IPIs (ICR delivery mode NMI) to this vCPU and between vCPUs.
//!
//! An NMI ignores IF and TPR, so a self-NMI must arrive at the instruction after the ICR write
//! with interrupts off and with TPR at FFh. From its delivery until the handler's IRET completes
//! a processor takes no other NMI and latches one (APM vol. 2, 8.2.3): NMIs sent inside the
//! handler must not nest, and exactly one must arrive after the IRET. Between vCPUs every NMI is
//! sent only after the previous one to its target arrived, so each must arrive exactly once.
//!
//! The books: `sent` counts NMIs sent, `received` arrivals, `coalesced` the sends inside a
//! handler beyond the one the latch keeps; an arrival inside the handler is out of order, one
//! nobody sent a duplicate, one sent that never came lost.

use super::smp::{self, Dest};
use super::{
    cpuid, interrupts_off, interrupts_on, msr, rdtsc, set_tpr, snapshot, this_cpu, wrmsr, Extra,
    Run, APIC_IDS, MAX_CPUS,
};
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::*};
use testguest::delivery::Counts;

const ICR_NMI: u64 = 0b100 << 8;
const ICR_LOGICAL: u64 = 1 << 11;
const ICR_SELF: u64 = 1 << 18;
const ICR_ALL_BUT_SELF: u64 = 3 << 18;
/// Rounds of each self-NMI case, and of each destination kind per AP.
const ROUNDS: u32 = 10;
/// NMIs the handler sends itself while it runs, in the latch rounds.
const SENT_INSIDE: u32 = 3;

/// NMIs sent to each vCPU, and arrivals there.
static SENT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static ARRIVED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Arrivals while this vCPU's handler ran (an NMI delivered before the IRET completed).
static NESTED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static IN_HANDLER: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The BSP's handler sends [`SENT_INSIDE`] self-NMIs once, in the latch rounds.
static SEND_INSIDE: AtomicBool = AtomicBool::new(false);

global_asm!(
    r#"
    .section .text.deliver, "ax"
    .balign 16
    .global deliver_nmi_stub
deliver_nmi_stub:
    cld
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    leaq 72(%rsp), %rdi
    call deliver_nmi
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    /// The NMI entry: saves the caller-saved registers (the 40-byte frame and nine registers
    /// keep the stack aligned to 16 for the call) and calls [`deliver_nmi`] with the address of
    /// the interrupted RIP in the frame.
    fn deliver_nmi_stub();
}

#[no_mangle]
extern "C" fn deliver_nmi(rip: *mut u64) {
    let cpu = this_cpu();
    // SAFETY: `rip` is the RIP slot of this NMI's own interrupt frame (the stub passes it);
    // moving it ends a park loop the NMI interrupted (`smp::park_exit`).
    unsafe { rip.write(smp::park_exit(rip.read())) };
    if IN_HANDLER[cpu].swap(true, Relaxed) {
        NESTED[cpu].fetch_add(1, Relaxed);
    }
    ARRIVED[cpu].fetch_add(1, Release);
    if cpu == 0 && SEND_INSIDE.swap(false, Relaxed) {
        // The books expect the one the latch keeps (the others are counted as merged).
        SENT[0].fetch_add(1, Relaxed);
        for _ in 0..SENT_INSIDE {
            wrmsr(msr::ICR, ICR_SELF | ICR_NMI);
        }
        // Exits inside the handler: chances for a hypervisor to inject too early.
        for _ in 0..20 {
            cpuid();
        }
    }
    IN_HANDLER[cpu].store(false, Relaxed);
}

/// Sends this vCPU an NMI through the ICR (`icr`: a shorthand or a destination), counted first.
fn send_self(icr: u64) {
    SENT[this_cpu()].fetch_add(1, Relaxed);
    wrmsr(msr::ICR, icr | ICR_NMI);
}

/// Sends `target` (or, with [`Dest::AllButSelf`], every other started vCPU) an NMI, counted
/// first. Also the APs' `CMD_NMI`.
pub(super) fn send(target: usize, dest: Dest) {
    let me = this_cpu();
    let icr = match dest {
        Dest::Physical => u64::from(APIC_IDS[target].load(Relaxed)) << 32,
        Dest::Logical => u64::from(smp::ldr(APIC_IDS[target].load(Relaxed))) << 32 | ICR_LOGICAL,
        Dest::AllButSelf => ICR_ALL_BUT_SELF,
    };
    for (t, sent) in SENT.iter().enumerate().take(smp::started_cpus()) {
        if t == target || (dest == Dest::AllButSelf && t != me) {
            sent.fetch_add(1, Release);
        }
    }
    wrmsr(msr::ICR, icr | ICR_NMI);
}

/// NMIs that arrived at `cpu` so far.
pub(super) fn arrived(cpu: usize) -> u32 {
    ARRIVED[cpu].load(Acquire)
}

/// Waits up to `us` microseconds until every vCPU got what was sent to it.
fn wait_all(run: &Run, us: u64) -> bool {
    let start = rdtsc();
    let timeout = run.clock.us(us);
    loop {
        let done = (0..MAX_CPUS).all(|c| ARRIVED[c].load(Acquire) >= SENT[c].load(Acquire));
        if done {
            return true;
        }
        if rdtsc() - start > timeout {
            return false;
        }
        cpuid();
    }
}

/// Points the (shared) IDT's NMI gate at this check's handler, which counts arrivals per vCPU.
pub(super) fn install_gate() {
    crate::traps::set_nmi_gate(deliver_nmi_stub as *const () as u64);
}

pub(super) fn check_nmi(run: &mut Run) {
    install_gate();
    let before = snapshot();
    let mut extra = Extra::ok();
    let me = u64::from(APIC_IDS[0].load(Relaxed)) << 32;
    // Self-NMIs with interrupts off, and under TPR FFh: each at the next instruction.
    let mut at_once = [0u32; 2];
    for (i, tpr) in [0u8, 0xff].into_iter().enumerate() {
        set_tpr(tpr);
        for r in 0..ROUNDS {
            let icr = [ICR_SELF, me][r as usize % 2];
            if tpr == 0 {
                interrupts_off();
            }
            let n = ARRIVED[0].load(Relaxed);
            send_self(icr);
            if ARRIVED[0].load(Relaxed) == n + 1 {
                at_once[i] += 1;
            }
            interrupts_on();
        }
        set_tpr(0);
    }
    wait_all(run, 100_000);
    extra.note(
        at_once == [ROUNDS; 2],
        format_args!(
            "at once with if=0 {}/{ROUNDS}, tpr ff {}/{ROUNDS}",
            at_once[0], at_once[1]
        ),
    );
    // NMIs sent inside the handler: none nests, exactly one arrives after the IRET.
    let mut coalesced = 0;
    let mut one_after = 0;
    let mut right_after = 0;
    for _ in 0..ROUNDS {
        let n = ARRIVED[0].load(Relaxed);
        SEND_INSIDE.store(true, Relaxed);
        send_self(me);
        // The first at the next instruction, the latched one at the IRET's next instruction.
        if ARRIVED[0].load(Relaxed) == n + 2 {
            right_after += 1;
        }
        wait_all(run, 100_000);
        // Time for a wrongly kept second one to come.
        let t0 = rdtsc();
        while rdtsc() - t0 < run.clock.us(2_000) {
            cpuid();
        }
        let got = ARRIVED[0].load(Acquire) - n;
        if got == 2 {
            one_after += 1;
        }
        coalesced += SENT_INSIDE - 1;
    }
    extra.note(
        one_after == ROUNDS && right_after == ROUNDS,
        format_args!("latched 1 after iret {one_after}/{ROUNDS} (at once {right_after}/{ROUNDS})"),
    );
    // Between vCPUs, each send after the previous arrival.
    let cpus = smp::started_cpus();
    let mut remote = 0;
    let mut remote_ok = 0;
    for cpu in 1..cpus {
        for dest in smp::DESTS {
            for _ in 0..ROUNDS {
                send(cpu, dest);
                remote += 1;
                remote_ok += u32::from(wait_all(run, 1_000_000));
                // Back to the BSP, and on to the next AP.
                let next = if cpu + 1 < cpus { cpu + 1 } else { 0 };
                for target in [0, next] {
                    remote += 1;
                    let ok = smp::command(cpu, smp::CMD_NMI, target as u64, 1_000_000);
                    remote_ok += u32::from(ok && wait_all(run, 1_000_000));
                }
            }
        }
    }
    extra.note(
        remote_ok == remote,
        format_args!("remote {remote_ok}/{remote}, {cpus} vcpus"),
    );
    // The books.
    wait_all(run, 100_000);
    let mut c = Counts {
        coalesced: u64::from(coalesced),
        ..Counts::default()
    };
    for cpu in 0..MAX_CPUS {
        let (sent, got) = (SENT[cpu].load(Acquire), ARRIVED[cpu].load(Acquire));
        let nested = NESTED[cpu].load(Relaxed);
        c.sent += u64::from(sent);
        c.received += u64::from(got);
        c.out_of_order += u64::from(nested);
        c.lost += u64::from(sent.saturating_sub(got));
        c.duplicates += u64::from(got.saturating_sub(sent));
    }
    c.sent += c.coalesced;
    run.report_with("nmi", before, extra, c, 0);
}
