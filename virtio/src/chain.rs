//! Walking a descriptor chain (virtio 1.2 §2.7.4, §2.7.5, §2.7.5.3) into a list of guest
//! buffers, without trusting one byte of it.
//!
//! Everything the walker reads was written by the driver and may be wrong or hostile, so each
//! way a chain can be malformed is one [`ChainError`] variant: head or `next` outside the
//! table, a loop (more descriptors than the table has), INDIRECT where it is not allowed
//! (feature not negotiated, inside an indirect table, together with NEXT, a table length that
//! is 0 or not a multiple of 16), a buffer outside guest RAM or whose end overflows,
//! device-writable buffers before device-readable ones (§2.7.4.2), more buffers or more bytes
//! than the device's limits. Each descriptor is read from guest memory exactly once (the
//! driver may change it meanwhile: the copy is what counts), and the walk ends after at most
//! `max_segments + 1` descriptor reads.

use pagetable::addr::Gpa;

use crate::mem::{GuestMemory, OutOfRange};
use crate::ring::{DescFlags, Descriptor, QueueLayout, DESCRIPTOR_SIZE};

/// Most buffers a chain may have here (the array in [`Chain`]); devices set lower limits in
/// [`ChainLimits`] and advertise them (virtio-blk's `seg_max`).
pub const MAX_SEGMENTS: usize = 128;

/// One guest buffer of a chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub addr: Gpa,
    pub len: u32,
    /// Device-writable (else device-readable).
    pub writable: bool,
}

/// What a device accepts in one chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainLimits {
    /// Buffers, at most [`MAX_SEGMENTS`] (larger values act as [`MAX_SEGMENTS`]).
    pub max_segments: usize,
    /// Bytes of all buffers together (§2.7.5.2 caps it at 2^32 for the driver).
    pub max_bytes: u64,
    /// Whether `VIRTIO_F_INDIRECT_DESC` was negotiated.
    pub indirect: bool,
}

impl ChainLimits {
    pub const DEFAULT: ChainLimits = ChainLimits {
        max_segments: MAX_SEGMENTS,
        max_bytes: 1 << 32,
        indirect: true,
    };
}

/// Why a chain was refused. The device cannot answer a request it cannot parse (it does not
/// know where the status goes), so a refused chain usually means DEVICE_NEEDS_RESET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// The available ring names a head outside the descriptor table.
    HeadOutOfRange { head: u16, size: u16 },
    /// A `next` outside the (direct or indirect) table.
    NextOutOfRange { next: u16, entries: u32 },
    /// More descriptors than the table has entries: the chain loops.
    Loop { entries: u32 },
    /// More buffers than the device accepts.
    TooManySegments { max: usize },
    /// A flag bit virtio does not define.
    UnknownFlags { flags: u16 },
    /// INDIRECT without `VIRTIO_F_INDIRECT_DESC` (§2.7.5.3.1).
    IndirectNotNegotiated,
    /// INDIRECT inside an indirect table (§2.7.5.3.1: one table per descriptor).
    NestedIndirect,
    /// INDIRECT together with NEXT (§2.7.5.3.1).
    IndirectWithNext,
    /// An indirect table whose length is 0 or not a multiple of 16.
    IndirectLength { len: u32 },
    /// `addr + len` overflows.
    AddressOverflow { addr: u64, len: u32 },
    /// A buffer or indirect table not wholly inside guest RAM.
    OutsideRam { addr: Gpa, len: u32 },
    /// The buffers add up to more bytes than the device accepts.
    TooLong { max: u64 },
    /// A device-readable buffer after a device-writable one (§2.7.4.2).
    WritableBeforeReadable,
    /// The descriptor table itself could not be read.
    Memory(OutOfRange),
}

/// A walked chain: its head (for the used ring) and its buffers, device-readable first.
#[derive(Clone)]
pub struct Chain {
    head: u16,
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
    readable: u64,
    writable: u64,
}

impl core::fmt::Debug for Chain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chain")
            .field("head", &self.head)
            .field("segments", &self.segments())
            .finish()
    }
}

/// Where a table of descriptors is.
#[derive(Clone, Copy)]
enum Table {
    Direct,
    Indirect { base: Gpa },
}

/// Walks the chain starting at descriptor `head` of the queue at `layout`.
pub fn walk(
    mem: &impl GuestMemory,
    layout: &QueueLayout,
    head: u16,
    limits: &ChainLimits,
) -> Result<Chain, ChainError> {
    if head >= layout.size {
        return Err(ChainError::HeadOutOfRange {
            head,
            size: layout.size,
        });
    }
    let max_segments = limits.max_segments.min(MAX_SEGMENTS);
    let mut chain = Chain {
        head,
        segments: [Segment::default(); MAX_SEGMENTS],
        count: 0,
        readable: 0,
        writable: 0,
    };
    let mut table = Table::Direct;
    let mut entries = u32::from(layout.size);
    let mut index = head;
    let mut steps = 0u32;
    let mut seen_writable = false;
    loop {
        steps += 1;
        if steps > entries {
            return Err(ChainError::Loop { entries });
        }
        let addr = match table {
            Table::Direct => layout.desc_addr(index),
            Table::Indirect { base, .. } => {
                Gpa(base.as_u64() + DESCRIPTOR_SIZE as u64 * u64::from(index))
            }
        };
        let mut raw = [0; DESCRIPTOR_SIZE];
        mem.read(addr, &mut raw).map_err(ChainError::Memory)?;
        let d = Descriptor::from_bytes(&raw);
        let flags = d.flags();
        if !DescFlags::all().contains(flags) {
            return Err(ChainError::UnknownFlags { flags: d.flags });
        }
        let buffer = checked_buffer(mem, &d)?;
        if flags.contains(DescFlags::INDIRECT) {
            if matches!(table, Table::Indirect { .. }) {
                return Err(ChainError::NestedIndirect);
            }
            if !limits.indirect {
                return Err(ChainError::IndirectNotNegotiated);
            }
            if flags.contains(DescFlags::NEXT) {
                return Err(ChainError::IndirectWithNext);
            }
            if d.len == 0 || !d.len.is_multiple_of(DESCRIPTOR_SIZE as u32) {
                return Err(ChainError::IndirectLength { len: d.len });
            }
            // The WRITE flag of this descriptor means nothing (§2.7.5.3.2).
            entries = d.len / DESCRIPTOR_SIZE as u32;
            table = Table::Indirect { base: buffer };
            index = 0;
            steps = 0;
            continue;
        }
        let writable = flags.contains(DescFlags::WRITE);
        if !writable && seen_writable {
            return Err(ChainError::WritableBeforeReadable);
        }
        seen_writable |= writable;
        if chain.count == max_segments {
            return Err(ChainError::TooManySegments { max: max_segments });
        }
        chain.segments[chain.count] = Segment {
            addr: buffer,
            len: d.len,
            writable,
        };
        chain.count += 1;
        if writable {
            chain.writable += u64::from(d.len);
        } else {
            chain.readable += u64::from(d.len);
        }
        if chain.readable + chain.writable > limits.max_bytes {
            return Err(ChainError::TooLong {
                max: limits.max_bytes,
            });
        }
        if !flags.contains(DescFlags::NEXT) {
            return Ok(chain);
        }
        if u32::from(d.next) >= entries {
            return Err(ChainError::NextOutOfRange {
                next: d.next,
                entries,
            });
        }
        index = d.next;
    }
}

/// The buffer's address, once its end is known not to overflow and all of it is guest RAM.
fn checked_buffer(mem: &impl GuestMemory, d: &Descriptor) -> Result<Gpa, ChainError> {
    if d.addr.checked_add(u64::from(d.len)).is_none() {
        return Err(ChainError::AddressOverflow {
            addr: d.addr,
            len: d.len,
        });
    }
    if !mem.contains(Gpa(d.addr), u64::from(d.len)) {
        return Err(ChainError::OutsideRam {
            addr: Gpa(d.addr),
            len: d.len,
        });
    }
    Ok(Gpa(d.addr))
}

/// An access past the end of a chain's readable or writable bytes, or a failed copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// `offset + len` is past the readable (or writable) bytes.
    PastEnd {
        offset: u64,
        len: u64,
        available: u64,
    },
    Memory(OutOfRange),
}

impl Chain {
    /// Index of the chain's first descriptor (what goes into the used ring).
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The buffers, device-readable ones first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }

    /// Bytes of all device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable
    }

    /// Bytes of all device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable
    }

    /// Calls `f(gpa, start, len)` for each piece of `len` bytes at `offset` of the readable
    /// (or writable) bytes seen as one byte string; `start` is the piece's offset in it.
    fn pieces(
        &self,
        writable: bool,
        offset: u64,
        len: u64,
        mut f: impl FnMut(Gpa, usize, usize) -> Result<(), OutOfRange>,
    ) -> Result<(), AccessError> {
        let available = if writable {
            self.writable
        } else {
            self.readable
        };
        let end = offset.checked_add(len).filter(|e| *e <= available);
        let Some(end) = end else {
            return Err(AccessError::PastEnd {
                offset,
                len,
                available,
            });
        };
        let mut pos = 0u64;
        for s in self.segments().iter().filter(|s| s.writable == writable) {
            let (seg_start, seg_end) = (pos, pos + u64::from(s.len));
            pos = seg_end;
            let from = offset.max(seg_start);
            let to = end.min(seg_end);
            if from >= to {
                continue;
            }
            let gpa = Gpa(s.addr.as_u64() + (from - seg_start));
            f(gpa, (from - offset) as usize, (to - from) as usize).map_err(AccessError::Memory)?;
        }
        Ok(())
    }

    /// Copies `buf.len()` readable bytes at `offset` into `buf`.
    pub fn read(
        &self,
        mem: &impl GuestMemory,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), AccessError> {
        self.pieces(false, offset, buf.len() as u64, |gpa, at, n| {
            mem.read(gpa, &mut buf[at..at + n])
        })
    }

    /// Copies `data` into the writable bytes at `offset`.
    pub fn write(
        &self,
        mem: &mut impl GuestMemory,
        offset: u64,
        data: &[u8],
    ) -> Result<(), AccessError> {
        self.pieces(true, offset, data.len() as u64, |gpa, at, n| {
            mem.write(gpa, &data[at..at + n])
        })
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
