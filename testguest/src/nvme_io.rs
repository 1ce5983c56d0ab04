//! What the test guest adds to `nvme` (which brings the admin queue up, encodes the
//! Create I/O Completion/Submission Queue commands and runs any polled queue pair) to do NVM I/O
//! on its VF: the NVM Read and Write commands (NVM Command Set Specification 1.0, "Read
//! command", "Write command"), PRP entries for one transfer of at most a page (NVMe Base 2.0,
//! "Physical Region Page Entry and List"), the LBA format from Identify Namespace (NVM Command
//! Set Specification 1.0, "Identify Namespace data structure"), one polled I/O queue pair
//! (`nvme::QueuePair` with the guest's error reporting), and the data patterns.
//!
//! The queue uses the register ([`ControllerRegs`]) and DMA ([`DmaMemory`]) traits of
//! `nvme`, so the host tests drive it against a fake controller.

use nvme::{
    CompletionEntry, ControllerRegs, DmaMemory, NvmeError, QueueMemory, QueuePair, SubmissionEntry,
};

/// The memory page size the guest enables the controller with (CC.MPS = 0).
pub const PAGE_SIZE: u64 = 4096;

/// NVM command set I/O opcodes (NVM Command Set Specification 1.0, "Opcodes for NVM Commands").
pub mod nvm_opcode {
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
}

/// PRP entries 1 and 2 for `len` bytes at `addr` (1 ≤ len ≤ a page): PRP1 is the address itself
/// (it may carry an offset), PRP2 the next page if the transfer crosses into it, else 0. `None`
/// for other lengths, an address that is not dword aligned (PRP1 bits 1:0 must be 0), or a
/// transfer that wraps past the top of the address space.
pub fn prps(addr: u64, len: u64) -> Option<(u64, u64)> {
    if len == 0 || len > PAGE_SIZE || addr & 3 != 0 {
        return None;
    }
    let last = addr.checked_add(len - 1)?;
    let next_page = (addr & !(PAGE_SIZE - 1)).checked_add(PAGE_SIZE);
    if last & !(PAGE_SIZE - 1) == addr & !(PAGE_SIZE - 1) {
        Some((addr, 0))
    } else {
        Some((addr, next_page?))
    }
}

/// An NVM Read or Write of `bytes` (a multiple of `lba_size`, at most a page) at `slba` of
/// namespace `nsid`, data at `buffer`: SLBA in CDW10 (low) and CDW11 (high), NLB 0's based in
/// CDW12 15:0. `None` if the size or the buffer cannot be expressed with two PRPs.
pub fn io_command(
    op: u8,
    nsid: u32,
    slba: u64,
    lba_size: u32,
    bytes: u32,
    buffer: u64,
) -> Option<SubmissionEntry> {
    if lba_size == 0 || bytes == 0 || !bytes.is_multiple_of(lba_size) {
        return None;
    }
    let blocks = bytes / lba_size;
    let (prp1, prp2) = prps(buffer, u64::from(bytes))?;
    Some(SubmissionEntry {
        nsid,
        prp1,
        prp2,
        cdw10: slba as u32,
        cdw11: (slba >> 32) as u32,
        cdw12: blocks - 1,
        ..SubmissionEntry::new(op)
    })
}

/// What the guest needs of Identify Namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceFormat {
    /// NSZE: size in logical blocks.
    pub blocks: u64,
    /// The formatted LBA size in bytes (2^LBADS).
    pub lba_size: u32,
    /// MS: metadata bytes per block of the formatted LBA format.
    pub metadata: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceError {
    /// NSZE is 0: the namespace is not active on this controller (e.g. not attached).
    Inactive,
    /// The formatted LBA format's LBADS is below 9 (512 bytes) or absurdly large.
    BadLbaFormat { index: u8, lbads: u8 },
}

/// Identify Namespace: NSZE at byte 0, FLBAS at byte 26 (format index in bits 3:0, its upper two
/// bits in 6:5), the LBA formats from byte 128, 4 bytes each (MS 15:0, LBADS 23:16).
pub fn parse_namespace(page: &[u8; 4096]) -> Result<NamespaceFormat, NamespaceError> {
    let mut nsze = [0; 8];
    nsze.copy_from_slice(&page[0..8]);
    let blocks = u64::from_le_bytes(nsze);
    if blocks == 0 {
        return Err(NamespaceError::Inactive);
    }
    let flbas = page[26];
    let index = flbas & 0xF | (flbas >> 5 & 3) << 4;
    let at = 128 + 4 * usize::from(index);
    let metadata = u16::from_le_bytes([page[at], page[at + 1]]);
    let lbads = page[at + 2];
    if !(9..=16).contains(&lbads) {
        return Err(NamespaceError::BadLbaFormat { index, lbads });
    }
    Ok(NamespaceFormat {
        blocks,
        lba_size: 1 << lbads,
        metadata,
    })
}

/// The test pattern: 64-bit little-endian words `seed << 32 | index`.
pub fn fill_pattern(buf: &mut [u8], seed: u32) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let word = u64::from(seed) << 32 | i as u64;
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

/// The offset of the first byte of `buf` that differs from the pattern of `seed`.
pub fn pattern_mismatch(buf: &[u8], seed: u32) -> Option<usize> {
    buf.chunks(8).enumerate().find_map(|(i, chunk)| {
        let word = (u64::from(seed) << 32 | i as u64).to_le_bytes();
        chunk
            .iter()
            .zip(word)
            .position(|(a, b)| *a != b)
            .map(|p| 8 * i + p)
    })
}

/// What a block read back after a Write from foreign memory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockContents {
    /// The pattern the guest put there before: the write did not land.
    Unchanged,
    /// All zeros.
    Zeros,
    /// Something else; its first 64-bit word and how many bytes are not zero.
    Other { first: u64, nonzero: usize },
}

pub fn classify_block(buf: &[u8], previous_seed: u32) -> BlockContents {
    if pattern_mismatch(buf, previous_seed).is_none() {
        return BlockContents::Unchanged;
    }
    let nonzero = buf.iter().filter(|b| **b != 0).count();
    if nonzero == 0 {
        return BlockContents::Zeros;
    }
    let mut first = [0; 8];
    let n = buf.len().min(8);
    first[..n].copy_from_slice(&buf[..n]);
    BlockContents::Other {
        first: u64::from_le_bytes(first),
        nonzero,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The doorbells of this queue lie beyond 32 bits of BAR offset, or the size is not 2..=4096.
    BadQueue,
    /// No free submission slot.
    QueueFull,
    /// The controller posted no completion for `cid` within the wait.
    NoCompletion { cid: u16, waited_ms: u32 },
    /// A completion names an SQ head outside the queue.
    BadCompletion,
}

/// One polled I/O submission/completion queue pair, created on the controller by the caller with
/// [`nvme::admin::create_io_cq`] and [`nvme::admin::create_io_sq`] on zeroed
/// completion memory: the kernel's [`QueuePair`] (the same ring the admin queue uses), with
/// completions of other commands handed to the caller and errors as [`IoError`].
#[derive(Clone, Debug)]
pub struct IoQueue(QueuePair);

impl IoError {
    /// What a [`QueuePair`] error means for an I/O command that waited `waited_ms`.
    fn from_queue(e: NvmeError, waited_ms: u32) -> IoError {
        match e {
            NvmeError::QueueFull => IoError::QueueFull,
            NvmeError::BadCompletion => IoError::BadCompletion,
            NvmeError::CommandTimeout { cid } => IoError::NoCompletion { cid, waited_ms },
            // Only `QueuePair::new` fails otherwise (bad size or doorbells).
            _ => IoError::BadQueue,
        }
    }
}

impl IoQueue {
    pub fn new(qid: u16, sq: u64, cq: u64, entries: u16, dstrd: u8) -> Result<IoQueue, IoError> {
        let memory = QueueMemory { sq, cq, entries };
        QueuePair::new(qid, memory, dstrd)
            .map(IoQueue)
            .map_err(|e| IoError::from_queue(e, 0))
    }

    /// The kernel's queue pair underneath (its ring position and phase).
    pub fn queue(&self) -> &QueuePair {
        &self.0
    }

    /// Puts `cmd` with a fresh command identifier in the next slot and rings the tail doorbell.
    pub fn submit<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cmd: SubmissionEntry,
    ) -> Result<u16, IoError> {
        self.0
            .submit(regs, mem, cmd)
            .map_err(|e| IoError::from_queue(e, 0))
    }

    /// Consumes the next completion if there is one.
    pub fn poll<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
    ) -> Result<Option<CompletionEntry>, IoError> {
        self.0
            .poll(regs, mem)
            .map_err(|e| IoError::from_queue(e, 0))
    }

    /// Submits `cmd` and waits up to `timeout_ms` for its completion, whatever its status.
    /// Completions of other commands (ones an earlier wait gave up on) go to `other`.
    pub fn execute<R: ControllerRegs, M: DmaMemory>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cmd: SubmissionEntry,
        timeout_ms: u32,
        mut other: impl FnMut(CompletionEntry),
    ) -> Result<CompletionEntry, IoError> {
        self.0
            .execute(regs, mem, cmd, timeout_ms, |c| {
                other(c);
                Ok(())
            })
            .map_err(|e| IoError::from_queue(e, timeout_ms))
    }
}

#[cfg(test)]
mod tests;
