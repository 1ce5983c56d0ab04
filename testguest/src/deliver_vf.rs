//! The `vf` check: the passed-through NVMe VF's MSI-X interrupts as a delivery source.
//!
//! The VF at 00:01.0 is brought up with the NVMe code of `nvme.rs` (admin queue, one I/O queue
//! pair, polled while it comes up) with MSI-X already enabled (QEMU gives a queue its MSI-X entry
//! only if MSI-X is on when the queue is created) and entry 0 masked, its I/O completion queue
//! created with interrupts on (IEN = 1, IV = 0; the admin completion queue always signals entry
//! 0). The bring-up's completions leave a message pending in the PBA, which must come once when
//! the entry is unmasked. This check uses entry 0 only (`entries`, the `vfmsix` check, the
//! others) and reprograms it (fixed, physical, edge: address
//! `0xFEE00000 | apic_id << 12`, data = vector) to vectors in classes 3, 6 and A in turn, which
//! also exercises the hypervisor's remapping of a changed entry.
//!
//! Books: a command is submitted with the ledger armed for one arrival of the entry's vector; the
//! handler consumes every completion entry posted (phase bit) on both queues, counts them and
//! EOIs. Exact rounds have one command in flight, so each completion posts exactly one interrupt.
//! Merges are allowed only where the guest knows the vector was pending: with IF clear it submits
//! several Reads, waits until all their completions are in the queue and the IRR shows the vector
//! (plus 2 ms of exits, so no message is still on its way), and only then tells the ledger the
//! further completions merged; after STI exactly one interrupt must come and find them all.
//! Priority: with TPR at the vector's class the completion posts and the vector waits in IRR
//! until TPR drops; the class-A vector nests inside a class-6 self-IPI handler that submits a Read
//! and waits for it with interrupts on.

use super::*;
use crate::nvme::{self, Controller, GuestRam, IDENTIFY, NSID, READ_BUF, TRANSFER};
use ::nvme::entry::COMPLETION_ENTRY_SIZE;
use ::nvme::{admin, Cns, CompletionEntry, DmaMemory, QueuePair};
use core::sync::atomic::AtomicBool;
use pci::capability;
use pci::msix::{self, MsixInfo};
use testguest::nvme_io::{io_command, nvm_opcode};

#[path = "deliver_vf_entries.rs"]
pub(super) mod entries;

/// The vectors MSI-X entry 0 carries in turn: classes 3, 6 and A.
const VF_VECTORS: [u8; 3] = [0x37, 0x67, 0xa7];
const VF_LOW: u8 = VF_VECTORS[0];
const VF_MID: u8 = VF_VECTORS[1];
const VF_HIGH: u8 = VF_VECTORS[2];
/// The class-6 self-IPI whose handler waits for a VF interrupt of class A (nests) or of class 3
/// (must wait for its EOI).
pub(super) const VF_NEST: u8 = 0x6d;
/// Exact rounds per vector (one command in flight, Reads and Identifies by turns).
const EXACT_ROUNDS: u32 = 30;
/// Burst rounds with IF clear and the Reads of each.
const BURST_ROUNDS: u32 = 5;
const BURST: u32 = 4;
const TPR_ROUNDS: u32 = 10;
const NEST_ROUNDS: u32 = 10;
/// A Read or an Identify, in microseconds at most (TCG is slow; the wait is a bound only).
const COMMAND_US: u64 = 2_000_000;

/// The controller, shared by the check and the VF vector's handler.
static CTRL: Shared<Option<Controller>> = Shared(UnsafeCell::new(None));
/// The vector MSI-X entry 0 carries now (0: none).
static VF_VECTOR: AtomicU8 = AtomicU8::new(0);
static SUBMITTED: AtomicU32 = AtomicU32::new(0);
static COMPLETED: AtomicU32 = AtomicU32::new(0);
/// Completions whose status was not success.
static ERRORS: AtomicU32 = AtomicU32::new(0);
/// Interrupts of the VF vector, and those that found no completion.
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);
static EMPTY: AtomicU32 = AtomicU32::new(0);
/// Completions the last interrupt consumed.
static LAST_TOOK: AtomicU32 = AtomicU32::new(0);
/// Set by the handler of [`VF_NEST`] when the VF interrupt it waited for came inside it.
static NEST_SEEN: AtomicBool = AtomicBool::new(false);
/// The vector [`VF_NEST`]'s handler has the VF use (0: the hook is off).
static NEST_WITH: AtomicU8 = AtomicU8::new(0);
static TSC_PER_US: AtomicU64 = AtomicU64::new(1);

/// Whether `v` is the VF's vector now.
pub(super) fn is_vf_vector(v: u8) -> bool {
    v != 0 && VF_VECTOR.load(Relaxed) == v
}

/// The VF vector's handler (after the ledger recorded the arrival): consumes every completion on
/// both queues, then EOIs.
pub(super) fn on_interrupt() {
    let took = CTRL.with(|c| c.as_mut().map_or(0, consume));
    INTERRUPTS.fetch_add(1, Relaxed);
    LAST_TOOK.store(took, Relaxed);
    if took == 0 {
        EMPTY.fetch_add(1, Relaxed);
    }
    eoi();
}

fn consume(c: &mut Controller) -> u32 {
    let mut n = 0;
    loop {
        let entry = match c.admin.poll(&mut c.regs, &mut c.mem) {
            Ok(Some(e)) => Some(e),
            _ => match c.io.poll(&mut c.regs, &mut c.mem) {
                Ok(Some(e)) => Some(e),
                _ => None,
            },
        };
        let Some(e) = entry else { return n };
        n += 1;
        COMPLETED.fetch_add(1, Relaxed);
        if !e.status().is_success() {
            ERRORS.fetch_add(1, Relaxed);
        }
    }
}

/// Completions posted and not consumed on `q`.
fn visible(q: &QueuePair, mem: &mut GuestRam) -> u32 {
    let m = q.memory();
    let (mut head, mut phase, mut n) = (q.cq_head(), q.phase(), 0);
    while n < u32::from(m.entries) {
        let mut raw = [0u8; COMPLETION_ENTRY_SIZE];
        mem.read(
            m.cq + u64::from(head) * COMPLETION_ENTRY_SIZE as u64,
            &mut raw,
        );
        if CompletionEntry::from_bytes(&raw).phase() != phase {
            break;
        }
        n += 1;
        head += 1;
        if head >= m.entries {
            head = 0;
            phase = !phase;
        }
    }
    n
}

#[derive(Clone, Copy)]
enum Command {
    Read,
    Identify,
}

/// Submits one command; with `arm`, the ledger first expects one arrival of the VF's vector
/// (interrupts off across both, so the arrival cannot come before the books know of it).
fn submit(cmd: Command, arm: bool) {
    without_interrupts(|| {
        if arm {
            ledger(|l| l.arm(VF_VECTOR.load(Relaxed)));
        }
        let ok = CTRL.with(|c| {
            let Some(c) = c.as_mut() else { return false };
            match cmd {
                Command::Read => io_command(
                    nvm_opcode::READ,
                    NSID,
                    0,
                    c.lba_size,
                    TRANSFER,
                    nvme::page(READ_BUF),
                )
                .is_some_and(|e| c.io.submit(&mut c.regs, &mut c.mem, e).is_ok()),
                Command::Identify => {
                    let e = admin::identify(Cns::Controller, 0, 0, nvme::page(IDENTIFY));
                    c.admin.submit(&mut c.regs, &mut c.mem, e).is_ok()
                }
            }
        });
        if ok {
            SUBMITTED.fetch_add(1, Relaxed);
        }
    });
}

/// Completions posted and not consumed, on both queues.
fn posted() -> u32 {
    CTRL.with(|c| {
        c.as_mut().map_or(0, |c| {
            visible(c.admin.queue(), &mut c.mem) + visible(c.io.queue(), &mut c.mem)
        })
    })
}

fn irr_has(v: u8) -> bool {
    read_bank(msr::IRR0).contains(v)
}

/// Spins (interrupts as they are) up to `us` for `done`.
fn spin_until(us: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = rdtsc();
    let tsc = us * TSC_PER_US.load(Relaxed);
    while rdtsc() - start < tsc {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// The MSI-X capability's place and table of the VF.
struct Msix {
    cap: u16,
    info: MsixInfo,
    table: u64,
    pba: u64,
}

impl Msix {
    fn find(bar0: u64) -> Result<Msix, &'static str> {
        let cfg = nvme::Conf1;
        let cap = capability::find_capability(&cfg, nvme::VF, capability::id::MSIX)
            .ok_or("no msi-x capability")?;
        let info = MsixInfo::read(&cfg, nvme::VF, cap);
        if info.table.bir != 0 || info.pba.bir != 0 {
            return Err("msi-x table or pba not in bar0");
        }
        Ok(Msix {
            cap,
            info,
            table: bar0 + u64::from(info.table.offset),
            pba: bar0 + u64::from(info.pba.offset),
        })
    }

    fn write(&self, entry: u16, dword: u64, v: u32) {
        let p =
            (self.table + u64::from(entry) * msix::MSIX_ENTRY_SIZE as u64 + 4 * dword) as *mut u32;
        // SAFETY: a dword of MSI-X table entry `entry` (below the table size) in the VF's BAR0,
        // identity-mapped; the hypervisor traps and emulates the table's page.
        unsafe { p.write_volatile(v) }
    }

    /// Entry `entry`: fixed, physical destination `apic_id`, edge, `vector`; left masked.
    fn program(&self, entry: u16, apic_id: u32, vector: u8) {
        self.mask(entry, true);
        self.write(entry, 0, 0xfee0_0000 | (apic_id & 0xff) << 12);
        self.write(entry, 1, 0);
        self.write(entry, 2, u32::from(vector));
    }

    fn mask(&self, entry: u16, masked: bool) {
        self.write(entry, 3, if masked { msix::VECTOR_CONTROL_MASK } else { 0 });
    }

    /// The entry's bit in the pending bit array (a message held back by its mask).
    fn pending(&self, entry: u16) -> bool {
        let p = (self.pba + u64::from(entry / 32) * 4) as *const u32;
        // SAFETY: a dword of the VF's PBA in its BAR0 (identity-mapped; forwarded to the device
        // by the hypervisor or mapped); reading it has no side effect.
        unsafe { p.read_volatile() >> (entry % 32) & 1 != 0 }
    }

    fn enable(&self, on: bool) {
        msix::write_msix_control(&mut nvme::Conf1, nvme::VF, self.cap, on, false);
    }
}

/// The handler of [`VF_NEST`] with the hook on: opens interrupts, submits a Read on the vector
/// [`NEST_WITH`] and waits for it (class A: it nests) or for 2 ms (class 3: it must not come
/// before this handler's EOI).
pub(super) fn nest_handler() {
    let with = NEST_WITH.load(Relaxed);
    if with == 0 {
        return;
    }
    interrupts_on();
    let before = INTERRUPTS.load(Relaxed);
    submit(Command::Read, true);
    let came = if with == VF_HIGH {
        spin_until(COMMAND_US, || INTERRUPTS.load(Relaxed) != before)
    } else {
        spin_until(2_000, || false);
        INTERRUPTS.load(Relaxed) != before
    };
    NEST_SEEN.store(came, Relaxed);
    interrupts_off();
}

/// Halting for a VF interrupt: a one-shot LAPIC timer (`on`) wakes the vCPU if the interrupt is
/// lost, so the check ends and reports it instead of halting for good. Stopped afterwards (`off`):
/// if it has not fired (IRR clear, read with interrupts off) its arrival is no longer expected.
fn backstop(run: &Run, on: bool) {
    without_interrupts(|| {
        if on {
            ledger(|l| l.arm(TIMER_ONESHOT));
            wrmsr(msr::TMICT, run.clock.timer_ticks(COMMAND_US + 100_000));
        } else {
            wrmsr(msr::TMICT, 0);
            if !irr_has(TIMER_ONESHOT) {
                ledger(|l| l.disarm(TIMER_ONESHOT));
            }
        }
    });
    if !on {
        run.wait_arrival(TIMER_ONESHOT, 100_000, Wait::Spin);
    }
}

/// Points entry 0 at `v` with nothing outstanding.
fn use_vector(m: &Msix, v: u8) {
    VF_VECTOR.store(v, Relaxed);
    m.program(0, apic_id(), v);
    m.mask(0, false);
}

pub(super) fn check_vf(run: &mut Run, ram: u64) {
    let Some(bar0) = nvme::find_vf() else {
        say!("testguest: deliver: vf: skipped: no vf at 00:01.0");
        return;
    };
    TSC_PER_US.store(run.clock.tsc_per_us, Relaxed);
    let before = snapshot();
    let m = match Msix::find(bar0) {
        Ok(m) => m,
        Err(e) => {
            let mut extra = Extra::ok();
            extra.note(false, format_args!("{e}"));
            run.report("vf", before, extra);
            return;
        }
    };
    // The backstop timer of halted waits: one-shot, divide by 1.
    timer_stop();
    wrmsr(msr::TDCR, DIVIDE[0].0);
    wrmsr(msr::LVT_TIMER, u64::from(TIMER_ONESHOT));
    // MSI-X on before the controller and its queues come up (QEMU uses an entry only for queues
    // created while MSI-X is enabled), entry 0 masked: the bring-up's admin completions, polled,
    // leave their message pending in the PBA.
    m.mask(0, true);
    m.enable(true);
    let ctrl = nvme::bring_up(ram, bar0, Some(0));
    CTRL.with(|c| *c = Some(ctrl));
    say!(
        "testguest: deliver: vf: msi-x table of {} entries at bar0 + {:#x}",
        m.info.table_size,
        m.info.table.offset
    );
    // Findings, one line each (a console line holds 160 characters).
    let mut extra = Extra::ok();
    let mut more = [Extra::ok(), Extra::ok(), Extra::ok()];
    // The held message comes once at the unmask, and finds no completion.
    VF_VECTOR.store(VF_VECTORS[0], Relaxed);
    m.program(0, apic_id(), VF_VECTORS[0]);
    let held = m.pending(0);
    if held {
        without_interrupts(|| {
            ledger(|l| l.arm(VF_VECTORS[0]));
            m.mask(0, false);
        });
    } else {
        m.mask(0, false);
    }
    let came = held && run.wait_arrival(VF_VECTORS[0], COMMAND_US, Wait::Spin);
    extra.note(
        came && !m.pending(0),
        format_args!(
            "bring-up message pending {}, delivered at unmask {}",
            u8::from(held),
            u8::from(came)
        ),
    );
    let start = (
        SUBMITTED.load(Relaxed),
        COMPLETED.load(Relaxed),
        INTERRUPTS.load(Relaxed),
        EMPTY.load(Relaxed),
    );

    // Exact: one command in flight, each completion one interrupt.
    let mut single = 0;
    for (i, &v) in VF_VECTORS.iter().enumerate() {
        use_vector(&m, v);
        for r in 0..EXACT_ROUNDS {
            let cmd = if r % 2 == 0 {
                Command::Read
            } else {
                Command::Identify
            };
            let how = WAITS[(i + r as usize) % 3];
            if how == Wait::Halt {
                backstop(run, true);
            }
            submit(cmd, true);
            if run.wait_arrival(v, COMMAND_US, how) && LAST_TOOK.load(Relaxed) == 1 {
                single += 1;
            }
            if how == Wait::Halt {
                backstop(run, false);
            }
        }
    }
    let exact = EXACT_ROUNDS * VF_VECTORS.len() as u32;
    extra.note(
        single == exact,
        format_args!("one completion per interrupt {single} of {exact}"),
    );

    // Bursts with IF clear: merges only while the vector is pending in IRR.
    use_vector(&m, VF_MID);
    let mut merged_ok = 0;
    for _ in 0..BURST_ROUNDS {
        interrupts_off();
        ledger(|l| l.arm(VF_MID));
        for _ in 0..BURST {
            submit(Command::Read, false);
        }
        let all = spin_until(COMMAND_US, || posted() == BURST);
        let pending = spin_until(100_000, || irr_has(VF_MID));
        // Exits with IF still clear: a message still on its way lands meanwhile.
        run_with_exits(run.clock.us(2_000));
        readback("VF vector in IRR", u64::from(pending), 1);
        if all && pending && ledger(|l| l.landed(VF_MID)) {
            // The first completion's message set the IRR bit; the others found it set.
            for _ in 1..BURST {
                ledger(|l| l.send(VF_MID));
            }
        }
        let got = INTERRUPTS.load(Relaxed);
        interrupts_on();
        let_deliver();
        spin_until(2_000, || false);
        if INTERRUPTS.load(Relaxed) == got + 1 && LAST_TOOK.load(Relaxed) == BURST {
            merged_ok += 1;
        }
    }
    more[0].note(
        merged_ok == BURST_ROUNDS,
        format_args!("bursts of {BURST} in one interrupt {merged_ok} of {BURST_ROUNDS}"),
    );

    // TPR at the vector's class: the completion posts, the vector waits.
    use_vector(&m, VF_HIGH);
    let mut held = 0;
    for _ in 0..TPR_ROUNDS {
        set_tpr(VF_HIGH & 0xf0);
        let got = INTERRUPTS.load(Relaxed);
        submit(Command::Read, true);
        let posted_one = spin_until(COMMAND_US, || posted() == 1);
        let pending = spin_until(100_000, || irr_has(VF_HIGH));
        spin_until(2_000, || false);
        if posted_one && pending && INTERRUPTS.load(Relaxed) == got {
            held += 1;
            without_interrupts(|| ledger(|l| l.landed(VF_HIGH)));
        }
        set_tpr(0);
        let_deliver();
        run.wait_arrival(VF_HIGH, COMMAND_US, Wait::Spin);
    }
    more[0].note(
        held == TPR_ROUNDS,
        format_args!("held by tpr {held} of {TPR_ROUNDS}"),
    );

    // Nesting: class A inside a class-6 handler; class 3 waits for its EOI.
    let mut nested = 0;
    let mut waited = 0;
    for (v, count) in [(VF_HIGH, &mut nested), (VF_LOW, &mut waited)] {
        use_vector(&m, v);
        NEST_WITH.store(v, Relaxed);
        for r in 0..NEST_ROUNDS {
            NEST_SEEN.store(false, Relaxed);
            let n0 = ledger(|l| l.nested_of(v));
            send(VF_NEST, METHODS[r as usize % 3]);
            let_deliver();
            run.wait_arrival(v, COMMAND_US, Wait::Spin);
            let nested_now = ledger(|l| l.nested_of(v)) != n0;
            let seen = NEST_SEEN.load(Relaxed);
            if (v == VF_HIGH) == (seen && nested_now) {
                *count += 1;
            }
        }
        NEST_WITH.store(0, Relaxed);
    }
    more[1].note(
        nested == NEST_ROUNDS && waited == NEST_ROUNDS,
        format_args!(
            "class a nested {nested} of {NEST_ROUNDS}, class 3 waited {waited} of {NEST_ROUNDS}"
        ),
    );

    settle(run.clock.us(100_000));
    timer_stop();
    m.mask(0, true);
    VF_VECTOR.store(0, Relaxed);
    let submitted = SUBMITTED.load(Relaxed) - start.0;
    let completed = COMPLETED.load(Relaxed) - start.1;
    let interrupts = INTERRUPTS.load(Relaxed) - start.2;
    let (errors, empty) = (ERRORS.load(Relaxed), EMPTY.load(Relaxed) - start.3);
    more[2].note(
        submitted == completed && errors == 0 && empty == 0,
        format_args!(
            "commands {submitted}, completions {completed}, errors {errors}, interrupts {interrupts}, empty {empty}"
        ),
    );
    extra.ok &= more.iter().all(|e| e.ok);
    run.report("vf", before, extra);
    for e in &more {
        say!("testguest: deliver: vf: {}", e.text.as_str());
    }
    entries::check_entries(run, &m);
    m.enable(false);
}
