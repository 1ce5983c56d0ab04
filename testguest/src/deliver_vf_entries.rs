//! The `vfmsix` check (run by `vf`, after its own line): several MSI-X entries of the VF at once,
//! each aimed at a vCPU of its own, and a vCPU that is not running.
//!
//! Two more I/O queue pairs signal MSI-X entries 1 and 2 (entry 0 stays with the admin queue and
//! the first I/O queue). Entry 1 carries [`VECTORS`]`[0]` (class 5), entry 2 [`VECTORS`]`[1]`
//! (class B). Each completion is counted as a send to the vCPU its entry names (before the
//! command is submitted), and that vCPU's handler books the arrival against it, as for an IPI
//! from another vCPU: anything lost, duplicated or out of order shows in that vCPU's books.
//!
//! - **spread**: per round both entries are pointed at two different vCPUs (every pairing in
//!   turn), one Read on each queue, both in flight at once; every other round the entries are
//!   rewritten while unmasked and enabled (a live retarget), otherwise masked around the rewrite.
//! - **entry mask**: a completion on a masked entry sets its pending bit and nothing arrives
//!   until the unmask, then exactly once; the same with the function mask.
//! - **parked**: each AP halts with interrupts off; once the hypervisor has parked it (at once
//!   where HLT exits, at its once-a-second look otherwise; the check waits 1.5 s), entry 1 is
//!   aimed at it and a Read completes: nothing may arrive (IF is clear), and in `avic` the IOMMU,
//!   finding IsRun clear, writes a GA log entry. An NMI wakes it; its handler returns past the HLT,
//!   the AP sets IF, and the interrupt must come exactly once.
//!
//! The completions are consumed by this vCPU (the BSP), never by the handlers, so the queues have
//! one owner.

use super::*;
use crate::deliver::nmi;
use testguest::nvme_io::IoQueue;

/// The vectors of MSI-X entries 1 and 2: classes 5 and B.
pub(in crate::deliver) const VECTORS: [u8; 2] = [0x57, 0xb7];
/// The entries, and the I/O queues that signal them.
const ENTRIES: [u16; 2] = [1, 2];
const QUEUES: [u16; 2] = [2, 3];
/// Rounds per vCPU of the spread.
const SPREAD_ROUNDS: usize = 4;
/// How long the BSP lets a parking AP be found parked (the service core looks once a second).
const PARK_WAIT_US: u64 = 1_500_000;

/// The two queues of this check.
struct Queues([IoQueue; 2]);

impl Queues {
    fn create() -> Result<Queues, &'static str> {
        CTRL.with(|c| {
            let c = c.as_mut().ok_or("no controller")?;
            let a = nvme::add_io_queue(c, QUEUES[0], ENTRIES[0])?;
            let b = nvme::add_io_queue(c, QUEUES[1], ENTRIES[1])?;
            Ok(Queues([a, b]))
        })
    }

    fn read(&mut self, q: usize) -> bool {
        CTRL.with(|c| {
            let Some(c) = c.as_mut() else { return false };
            io_command(
                nvm_opcode::READ,
                NSID,
                0,
                c.lba_size,
                TRANSFER,
                nvme::page(READ_BUF),
            )
            .is_some_and(|e| self.0[q].submit(&mut c.regs, &mut c.mem, e).is_ok())
        })
    }

    /// Completions posted on queue `q` and not consumed.
    fn posted(&self, q: usize) -> u32 {
        CTRL.with(|c| {
            c.as_mut()
                .map_or(0, |c| visible(self.0[q].queue(), &mut c.mem))
        })
    }

    /// Consumes what queue `q` posted: (completions, errors).
    fn consume(&mut self, q: usize) -> (u32, u32) {
        CTRL.with(|c| {
            let Some(c) = c.as_mut() else { return (0, 0) };
            let (mut n, mut errors) = (0, 0);
            while let Ok(Some(e)) = self.0[q].poll(&mut c.regs, &mut c.mem) {
                n += 1;
                errors += u32::from(!e.status().is_success());
            }
            (n, errors)
        })
    }
}

/// What the check counts besides the ledgers.
#[derive(Default)]
struct Tally {
    submitted: u32,
    completed: u32,
    errors: u32,
    /// Interrupts that did not arrive where and when expected.
    late: u32,
}

/// One Read on queue `q` whose interrupt goes to `target` with vector `v`: counted as a send
/// there first, then submitted.
fn send_read(qs: &mut Queues, q: usize, target: usize, v: u8, t: &mut Tally) {
    smp::count_device_send(target, v);
    if qs.read(q) {
        t.submitted += 1;
    }
}

/// Waits for queue `q`'s completion and consumes it.
fn complete(qs: &mut Queues, q: usize, t: &mut Tally) {
    spin_until(COMMAND_US, || qs.posted(q) >= 1);
    let (n, e) = qs.consume(q);
    t.completed += n;
    t.errors += e;
}

/// Points entry `e` at `target` (its APIC ID) with vector `v`: masked around the rewrite, or
/// (`live`) rewritten while unmasked, address first.
fn aim(m: &Msix, e: usize, target: usize, v: u8, live: bool) {
    let id = APIC_IDS[target].load(Relaxed);
    if live {
        m.write(ENTRIES[e], 0, 0xfee0_0000 | (id & 0xff) << 12);
        m.write(ENTRIES[e], 1, 0);
        m.write(ENTRIES[e], 2, u32::from(v));
    } else {
        m.program(ENTRIES[e], id, v);
        m.mask(ENTRIES[e], false);
    }
}

pub(super) fn check_entries(run: &mut Run, m: &Msix) {
    let before = snapshot();
    let mut extra = Extra::ok();
    let mut more = [Extra::ok(), Extra::ok()];
    if m.info.table_size < 3 {
        extra.note(
            false,
            format_args!("msi-x table of {} entries: 3 needed", m.info.table_size),
        );
        run.report("vfmsix", before, extra);
        return;
    }
    let (started, aps) = smp::start_aps(&run.clock);
    let cpus = 1 + started;
    // The APs' books so far (closed and published), to count only this check's part.
    let mut ap_before = [(Counts::default(), 0); MAX_CPUS];
    for (cpu, b) in ap_before.iter_mut().enumerate().take(cpus).skip(1) {
        smp::command(cpu, smp::CMD_SETTLE, 0, 5_000_000);
        *b = smp::ap_counts(cpu);
    }
    APIC_IDS[0].store(apic_id(), Relaxed);
    for e in ENTRIES {
        m.mask(e, true);
    }
    let mut qs = match Queues::create() {
        Ok(q) => q,
        Err(why) => {
            extra.note(false, format_args!("i/o queues 2 and 3: {why}"));
            run.report("vfmsix", before, extra);
            return;
        }
    };
    let mut t = Tally::default();
    let timeout = run.clock.us(COMMAND_US);

    // Spread: both entries at two vCPUs (the same one with a single vCPU), both in flight.
    let mut spread = 0;
    let rounds = SPREAD_ROUNDS * cpus;
    for r in 0..rounds {
        let targets = [r % cpus, (r + 1 + r / cpus) % cpus];
        for (e, &target) in targets.iter().enumerate() {
            aim(m, e, target, VECTORS[e], r % 2 == 1);
        }
        for (e, &target) in targets.iter().enumerate() {
            send_read(&mut qs, e, target, VECTORS[e], &mut t);
        }
        let came = targets
            .iter()
            .enumerate()
            .all(|(e, &target)| smp::wait_caught_up(target, VECTORS[e], timeout));
        for q in 0..2 {
            complete(&mut qs, q, &mut t);
        }
        if came {
            spread += 1;
        }
    }
    extra.note(
        spread == rounds,
        format_args!("two entries to two vcpus at once {spread} of {rounds}, {cpus} vcpus"),
    );

    // Entry mask and function mask: held in the pending bit, delivered once when lifted.
    let mut held = 0;
    for target in 0..cpus {
        for function in [false, true] {
            let e = usize::from(function);
            let (entry, v) = (ENTRIES[e], VECTORS[e]);
            aim(m, e, target, v, false);
            if function {
                msix::write_msix_control(&mut nvme::Conf1, nvme::VF, m.cap, true, true);
            } else {
                m.mask(entry, true);
            }
            let got = smp::arrivals(target, v);
            t.submitted += u32::from(qs.read(e));
            spin_until(COMMAND_US, || qs.posted(e) >= 1);
            run_with_exits(run.clock.us(2_000));
            let pending = m.pending(entry);
            let quiet = smp::arrivals(target, v) == got;
            smp::count_device_send(target, v);
            if function {
                m.enable(true);
            } else {
                m.mask(entry, false);
            }
            let came = smp::wait_caught_up(target, v, timeout);
            complete(&mut qs, e, &mut t);
            run_with_exits(run.clock.us(1_000));
            if pending && quiet && came && !m.pending(entry) {
                held += 1;
            }
        }
    }
    more[0].note(
        held == 2 * cpus,
        format_args!(
            "held by entry and function mask, then once {held} of {}",
            2 * cpus
        ),
    );

    // Parked APs: the interrupt waits, an NMI wakes the AP, the interrupt comes once.
    nmi::install_gate();
    let (mut quiet, mut woke) = (0, 0);
    for cpu in 1..cpus {
        smp::post(cpu, smp::CMD_PARK, 0);
        let parking = spin_until(COMMAND_US, || smp::park_state(cpu) == 1);
        spin_until(PARK_WAIT_US, || false);
        aim(m, 0, cpu, VECTORS[0], false);
        let got = smp::arrivals(cpu, VECTORS[0]);
        send_read(&mut qs, 0, cpu, VECTORS[0], &mut t);
        complete(&mut qs, 0, &mut t);
        run_with_exits(run.clock.us(20_000));
        if parking && smp::arrivals(cpu, VECTORS[0]) == got && smp::park_state(cpu) == 1 {
            quiet += 1;
        }
        let nmis = nmi::arrived(cpu);
        nmi::send(cpu, smp::Dest::Physical);
        let woken = spin_until(COMMAND_US, || smp::park_state(cpu) == 2);
        let came = smp::wait_caught_up(cpu, VECTORS[0], timeout);
        if woken && came && smp::wait_done(cpu, COMMAND_US) && nmi::arrived(cpu) == nmis + 1 {
            woke += 1;
        }
    }
    more[1].note(
        quiet == started && woke == started,
        format_args!(
            "parked aps: held with IF clear {quiet} of {started}, woken by an nmi and then once {woke} of {started}"
        ),
    );

    for e in ENTRIES {
        m.mask(e, true);
    }
    // Close the books: the APs', then this vCPU's.
    let mut others = Counts::default();
    let mut other_mismatches = 0;
    for (cpu, b) in ap_before.iter().enumerate().take(cpus).skip(1) {
        if !smp::command(cpu, smp::CMD_SETTLE, 0, 5_000_000) {
            // Its books stay open (it is stuck): what did not reach it counts as lost here.
            t.late += 1;
            let missing: u32 = VECTORS.iter().map(|&v| smp::missing(cpu, v)).sum();
            others.sent += u64::from(missing);
            others.lost += u64::from(missing);
            continue;
        }
        let (c, mm) = smp::ap_counts(cpu);
        others.add(&c.since(&b.0));
        other_mismatches += mm - b.1;
    }
    let start = rdtsc();
    loop {
        smp::claim_all(0);
        if ledger(|l| l.outstanding()) == 0 || rdtsc() - start > timeout {
            break;
        }
        core::hint::spin_loop();
    }
    ledger(|l| l.settle());
    more[1].note(
        t.submitted == t.completed && t.errors == 0 && t.late == 0 && aps == started,
        format_args!(
            "commands {}, completions {}, errors {}, late {}",
            t.submitted, t.completed, t.errors, t.late
        ),
    );
    extra.ok &= more.iter().all(|e| e.ok);
    run.report_with("vfmsix", before, extra, others, other_mismatches);
    for e in &more {
        say!("testguest: deliver: vfmsix: {}", e.text.as_str());
    }
}
