//! A polled queue pair ([`QueuePair`]) and the admin queue pair of a controller
//! ([`AdminQueue`]: queue 0 plus the enable handshake), as state machines over register access
//! ([`ControllerRegs`]) and DMA memory ([`DmaMemory`]) the caller provides: the kernel for the
//! PF it drives, the test guest for its VF (admin queue and I/O queue 1).
//!
//! Enabling (NVMe Base 2.0 §3.5.1, controller initialization): disable if enabled and wait for
//! CSTS.RDY = 0; program AQA, ASQ, ACQ; write CC with EN = 1; wait for CSTS.RDY = 1, failing on
//! CSTS.CFS or after CAP.TO.
//!
//! Submission (NVMe Base 2.0, queue mechanism): the entry goes to the slot at the SQ tail, then
//! the new tail is written to the SQ tail doorbell. Completion: the entry at the CQ head is new
//! when its phase tag equals the expected phase, which starts at 1 and flips each time the head
//! wraps; after consuming it the new head is written to the CQ head doorbell, and its SQ head
//! field frees submission slots.

use super::entry::{
    CompletionEntry, Status, SubmissionEntry, COMPLETION_ENTRY_SIZE, SUBMISSION_ENTRY_SIZE,
};
use super::registers::{self, cc, csts, Cap};

/// 32-bit access to the controller's BAR0 registers.
pub trait ControllerRegs {
    fn read32(&mut self, offset: u32) -> u32;
    fn write32(&mut self, offset: u32, value: u32);
    /// Waits about a millisecond (the kernel spins on the TSC; fakes advance their script).
    fn wait_1ms(&mut self);
}

/// Memory the controller reads and writes by DMA, at physical addresses the caller allocated.
pub trait DmaMemory {
    fn read(&mut self, phys: u64, buf: &mut [u8]);
    fn write(&mut self, phys: u64, data: &[u8]);
}

fn read64(regs: &mut impl ControllerRegs, offset: u32) -> u64 {
    let low = regs.read32(offset);
    u64::from(low) | u64::from(regs.read32(offset + 4)) << 32
}

fn write64(regs: &mut impl ControllerRegs, offset: u32, value: u64) {
    regs.write32(offset, value as u32);
    regs.write32(offset + 4, (value >> 32) as u32);
}

/// Where a queue pair lives: each queue at a physical address (4 KiB-aligned for the admin
/// queues), `entries` slots long (64 bytes per SQ slot, 16 per CQ slot; 64 entries fill a page
/// for the SQ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueMemory {
    pub sq: u64,
    pub cq: u64,
    pub entries: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeError {
    /// Registers read all ones: no device (or it fell off the bus).
    NoDevice,
    /// Queue size outside 2..=min(4096, CAP.MQES + 1), or queue memory not 4 KiB aligned.
    BadQueueMemory,
    /// The controller cannot use 4 KiB pages (CAP.MPSMIN > 0).
    PageSizeUnsupported { mpsmin: u8 },
    /// CSTS.CFS: the controller reports a fatal error.
    ControllerFatal,
    /// CSTS.RDY did not follow CC.EN within CAP.TO.
    ReadyTimeout { expected: bool },
    /// No free submission slot.
    QueueFull,
    /// No completion within the wait.
    CommandTimeout { cid: u16 },
    /// A completion's SQ head is outside the queue.
    BadCompletion,
    /// Too many completions for other commands arrived while waiting.
    StashFull,
    /// The command completed with an error status.
    Command { opcode: u8, status: Status },
}

impl core::fmt::Display for NvmeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NvmeError::NoDevice => f.write_str("no NVMe controller answers"),
            NvmeError::BadQueueMemory => f.write_str("bad admin queue memory or size"),
            NvmeError::PageSizeUnsupported { mpsmin } => {
                write!(f, "controller pages start at {} KiB", 4u32 << mpsmin)
            }
            NvmeError::ControllerFatal => f.write_str("controller fatal status"),
            NvmeError::ReadyTimeout { expected } => {
                write!(f, "CSTS.RDY did not become {}", u8::from(*expected))
            }
            NvmeError::QueueFull => f.write_str("queue full"),
            NvmeError::CommandTimeout { cid } => write!(f, "command {cid} timed out"),
            NvmeError::BadCompletion => f.write_str("completion with a bad SQ head"),
            NvmeError::StashFull => f.write_str("too many unclaimed completions"),
            NvmeError::Command { opcode, status } => {
                write!(f, "admin opcode {opcode:#04x} failed: {status}")
            }
        }
    }
}

/// How many completions of other commands [`AdminQueue::poll_completion`] keeps aside.
const STASH: usize = 8;

/// Calls `attempt` until it yields a value, at most `timeout_ms + 1` times with
/// [`ControllerRegs::wait_1ms`] between tries; `Ok(None)` if it never did. The one bounded wait
/// of the controller handshake and of every queue.
pub fn poll_for<R: ControllerRegs, T, E>(
    regs: &mut R,
    timeout_ms: u32,
    mut attempt: impl FnMut(&mut R) -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    for waited in 0..=timeout_ms {
        if let Some(value) = attempt(regs)? {
            return Ok(Some(value));
        }
        if waited < timeout_ms {
            regs.wait_1ms();
        }
    }
    Ok(None)
}

/// One submission/completion queue pair, polled: the admin pair (queue 0, inside
/// [`AdminQueue`]) or an I/O pair the caller created with Create I/O Completion/Submission Queue
/// ([`super::admin::create_io_cq`], [`super::admin::create_io_sq`]) on zeroed completion memory.
#[derive(Clone, Debug)]
pub struct QueuePair {
    qid: u16,
    memory: QueueMemory,
    sq_doorbell: u32,
    cq_doorbell: u32,
    sq_tail: u16,
    /// As last reported by the controller.
    sq_head: u16,
    cq_head: u16,
    phase: bool,
    next_cid: u16,
}

impl QueuePair {
    /// Queue pair `qid` in `memory` of a controller with doorbell stride `dstrd` (CAP.DSTRD).
    /// [`NvmeError::BadQueueMemory`] if the size is not 2..=4096 or the doorbells lie beyond 32
    /// bits of BAR offset.
    pub fn new(qid: u16, memory: QueueMemory, dstrd: u8) -> Result<QueuePair, NvmeError> {
        if !(2..=4096).contains(&memory.entries) {
            return Err(NvmeError::BadQueueMemory);
        }
        Ok(QueuePair {
            qid,
            memory,
            sq_doorbell: registers::sq_tail_doorbell(qid, dstrd)
                .ok_or(NvmeError::BadQueueMemory)?,
            cq_doorbell: registers::cq_head_doorbell(qid, dstrd)
                .ok_or(NvmeError::BadQueueMemory)?,
            sq_tail: 0,
            sq_head: 0,
            cq_head: 0,
            phase: true,
            next_cid: 0,
        })
    }

    pub fn qid(&self) -> u16 {
        self.qid
    }

    pub fn memory(&self) -> QueueMemory {
        self.memory
    }

    pub fn sq_tail(&self) -> u16 {
        self.sq_tail
    }

    pub fn cq_head(&self) -> u16 {
        self.cq_head
    }

    /// The phase tag the next new completion carries.
    pub fn phase(&self) -> bool {
        self.phase
    }

    fn advance(&self, index: u16) -> u16 {
        if index + 1 >= self.memory.entries {
            0
        } else {
            index + 1
        }
    }

    /// Puts `cmd` in the next slot with a fresh command identifier, rings the SQ tail doorbell
    /// and returns the identifier.
    pub fn submit<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        mut cmd: SubmissionEntry,
    ) -> Result<u16, NvmeError> {
        let next_tail = self.advance(self.sq_tail);
        if next_tail == self.sq_head {
            return Err(NvmeError::QueueFull);
        }
        let cid = self.next_cid;
        // 0xFFFF is not a valid command identifier (NVMe Base 2.0, "Common Command Format").
        self.next_cid = if cid >= 0xFFFE { 0 } else { cid + 1 };
        cmd.set_cid(cid);
        let slot = self.memory.sq + u64::from(self.sq_tail) * SUBMISSION_ENTRY_SIZE as u64;
        mem.write(slot, &cmd.to_bytes());
        self.sq_tail = next_tail;
        regs.write32(self.sq_doorbell, u32::from(self.sq_tail));
        Ok(cid)
    }

    /// Consumes the next completion if the controller has posted one.
    pub fn poll<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
    ) -> Result<Option<CompletionEntry>, NvmeError> {
        let mut raw = [0u8; COMPLETION_ENTRY_SIZE];
        let slot = self.memory.cq + u64::from(self.cq_head) * COMPLETION_ENTRY_SIZE as u64;
        mem.read(slot, &mut raw);
        let entry = CompletionEntry::from_bytes(&raw);
        if entry.phase() != self.phase {
            return Ok(None);
        }
        self.cq_head = self.advance(self.cq_head);
        if self.cq_head == 0 {
            self.phase = !self.phase;
        }
        regs.write32(self.cq_doorbell, u32::from(self.cq_head));
        if entry.sq_head >= self.memory.entries {
            return Err(NvmeError::BadCompletion);
        }
        self.sq_head = entry.sq_head;
        Ok(Some(entry))
    }

    /// Consumes the posted completions up to that of command `cid` and returns it, if it has
    /// arrived. Completions of other commands met on the way go to `other`.
    pub fn poll_completion<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cid: u16,
        mut other: impl FnMut(CompletionEntry) -> Result<(), NvmeError>,
    ) -> Result<Option<CompletionEntry>, NvmeError> {
        while let Some(c) = self.poll(regs, mem)? {
            if c.cid == cid {
                return Ok(Some(c));
            }
            other(c)?;
        }
        Ok(None)
    }

    /// Waits up to `timeout_ms` for the completion of `cid`, whatever its status
    /// ([`NvmeError::CommandTimeout`] if none arrives). Completions of other commands (ones an
    /// earlier wait gave up on) go to `other`.
    pub fn wait<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cid: u16,
        timeout_ms: u32,
        mut other: impl FnMut(CompletionEntry) -> Result<(), NvmeError>,
    ) -> Result<CompletionEntry, NvmeError> {
        poll_for(regs, timeout_ms, |regs| {
            self.poll_completion(regs, mem, cid, &mut other)
        })?
        .ok_or(NvmeError::CommandTimeout { cid })
    }

    /// [`Self::submit`], then [`Self::wait`]: the completion whatever its status.
    pub fn execute<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cmd: SubmissionEntry,
        timeout_ms: u32,
        other: impl FnMut(CompletionEntry) -> Result<(), NvmeError>,
    ) -> Result<CompletionEntry, NvmeError> {
        let cid = self.submit(regs, mem, cmd)?;
        self.wait(regs, mem, cid, timeout_ms, other)
    }
}

/// The admin queue pair of an enabled controller.
#[derive(Clone, Debug)]
pub struct AdminQueue {
    queue: QueuePair,
    cap: Cap,
    stash: [Option<CompletionEntry>; STASH],
}

impl AdminQueue {
    /// Resets and enables the controller with admin queues in `memory` (which this zeroes).
    pub fn enable<R: ControllerRegs, M: DmaMemory>(
        regs: &mut R,
        mem: &mut M,
        memory: QueueMemory,
    ) -> Result<AdminQueue, NvmeError> {
        let cap = Cap(read64(regs, registers::CAP));
        if cap.0 == u64::MAX {
            return Err(NvmeError::NoDevice);
        }
        let entries = u32::from(memory.entries);
        if !(2..=cap.max_queue_entries().min(4096)).contains(&entries)
            || memory.sq & 0xFFF != 0
            || memory.cq & 0xFFF != 0
        {
            return Err(NvmeError::BadQueueMemory);
        }
        // Queue 0's doorbells always fit (DSTRD is at most 15).
        let queue = QueuePair::new(0, memory, cap.dstrd())?;
        if cap.mpsmin() != 0 {
            return Err(NvmeError::PageSizeUnsupported {
                mpsmin: cap.mpsmin(),
            });
        }
        // CAP.TO is in 500 ms units; 0 would be a broken device, give it one unit.
        let timeout_ms = u32::from(cap.timeout().max(1)) * 500;

        if regs.read32(registers::CC) & cc::EN != 0 || regs.read32(registers::CSTS) & csts::RDY != 0
        {
            regs.write32(registers::CC, 0);
            wait_ready(regs, false, timeout_ms)?;
        }
        let zeros = [0u8; COMPLETION_ENTRY_SIZE];
        for i in 0..u64::from(memory.entries) {
            mem.write(memory.cq + i * COMPLETION_ENTRY_SIZE as u64, &zeros);
        }
        regs.write32(
            registers::AQA,
            registers::aqa(memory.entries, memory.entries),
        );
        write64(regs, registers::ASQ, memory.sq);
        write64(regs, registers::ACQ, memory.cq);
        let css = if cap.css() & Cap::CSS_IO_COMMAND_SETS != 0 {
            cc::CSS_ALL_IO_COMMAND_SETS
        } else if cap.css() & Cap::CSS_NVM != 0 {
            cc::CSS_NVM
        } else {
            cc::CSS_ADMIN_ONLY
        };
        regs.write32(registers::CC, cc::enable(css));
        wait_ready(regs, true, timeout_ms)?;
        Ok(AdminQueue {
            queue,
            cap,
            stash: [None; STASH],
        })
    }

    pub fn cap(&self) -> Cap {
        self.cap
    }

    /// The queue pair itself (queue 0).
    pub fn queue(&self) -> &QueuePair {
        &self.queue
    }

    pub fn sq_tail(&self) -> u16 {
        self.queue.sq_tail()
    }

    pub fn cq_head(&self) -> u16 {
        self.queue.cq_head()
    }

    /// The phase tag the next new completion carries.
    pub fn phase(&self) -> bool {
        self.queue.phase()
    }

    /// [`QueuePair::submit`] on the admin queue.
    pub fn submit<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cmd: SubmissionEntry,
    ) -> Result<u16, NvmeError> {
        self.queue.submit(regs, mem, cmd)
    }

    /// [`QueuePair::poll`] on the admin queue.
    pub fn poll<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
    ) -> Result<Option<CompletionEntry>, NvmeError> {
        self.queue.poll(regs, mem)
    }

    /// The completion of command `cid`, if it has arrived. Completions of other commands met on
    /// the way are kept for their own callers.
    pub fn poll_completion<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cid: u16,
    ) -> Result<Option<CompletionEntry>, NvmeError> {
        if let Some(slot) = self
            .stash
            .iter_mut()
            .find(|s| s.is_some_and(|c| c.cid == cid))
        {
            return Ok(slot.take());
        }
        let stash = &mut self.stash;
        self.queue.poll_completion(regs, mem, cid, |c| {
            let free = stash.iter_mut().find(|s| s.is_none());
            *free.ok_or(NvmeError::StashFull)? = Some(c);
            Ok(())
        })
    }

    /// Submits `cmd` and waits up to `timeout_ms` for its completion; an error status becomes
    /// [`NvmeError::Command`].
    pub fn execute<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cmd: SubmissionEntry,
        timeout_ms: u32,
    ) -> Result<CompletionEntry, NvmeError> {
        let cid = self.submit(regs, mem, cmd)?;
        let c = poll_for(regs, timeout_ms, |regs| {
            self.poll_completion(regs, mem, cid)
        })?
        .ok_or(NvmeError::CommandTimeout { cid })?;
        let status = c.status();
        if status.is_success() {
            Ok(c)
        } else {
            Err(NvmeError::Command {
                opcode: cmd.opcode(),
                status,
            })
        }
    }
}

fn wait_ready(
    regs: &mut impl ControllerRegs,
    ready: bool,
    timeout_ms: u32,
) -> Result<(), NvmeError> {
    poll_for(regs, timeout_ms, |regs| {
        let status = regs.read32(registers::CSTS);
        if status == u32::MAX {
            return Err(NvmeError::NoDevice);
        }
        if status & csts::CFS != 0 && ready {
            return Err(NvmeError::ControllerFatal);
        }
        Ok(((status & csts::RDY != 0) == ready).then_some(()))
    })?
    .ok_or(NvmeError::ReadyTimeout { expected: ready })
}
