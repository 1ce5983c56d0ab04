//! virtio-blk (virtio 1.2 §5.2): the device configuration, request parsing and serving. The
//! storage is behind [`BlockStorage`] (a RAM disk, an NVMe namespace); this file only turns a
//! descriptor chain into a checked request and back into a status byte.
//!
//! A request (§5.2.6) is a 16-byte device-readable header (`type`, `reserved`, `sector`), data
//! (device-readable for a write, device-writable for a read), and a device-writable status
//! byte at the very end. The device does not assume any split of these over descriptors
//! (§2.7.4.1): the chain is read as one readable and one writable byte string.
//!
//! Answers: a request outside the disk, of a length not a multiple of 512, with a malformed
//! header or surplus buffers gets `VIRTIO_BLK_S_IOERR`; an unknown type (or FLUSH not
//! negotiated) `VIRTIO_BLK_S_UNSUPP`; a write to a read-only disk `VIRTIO_BLK_S_IOERR`
//! without touching the disk (§5.2.6.2). A chain with no writable byte cannot be answered:
//! [`BlkError::NoStatus`], the device needs a reset.

use core::mem::{offset_of, size_of};

use crate::chain::{AccessError, Chain, ChainLimits};
use crate::mem::GuestMemory;
use crate::status::feature;
use crate::transport::DEVICE_CONFIG_MAX;

pub const SECTOR_SIZE: u64 = 512;

/// Feature bits of the block device (§5.2.3).
pub mod blk_feature {
    /// `VIRTIO_BLK_F_SEG_MAX`: `seg_max` is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// `VIRTIO_BLK_F_RO`: the disk is read-only.
    pub const RO: u64 = 1 << 5;
    /// `VIRTIO_BLK_F_BLK_SIZE`: `blk_size` is valid.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// `VIRTIO_BLK_F_FLUSH`: the FLUSH command.
    pub const FLUSH: u64 = 1 << 9;
}

/// Request types (§5.2.6).
pub mod req_type {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
}

/// Status values (§5.2.6).
pub mod status {
    pub const OK: u8 = 0;
    pub const IOERR: u8 = 1;
    pub const UNSUPP: u8 = 2;
}

/// Bytes of the GET_ID string (NUL-padded, §5.2.6).
pub const ID_BYTES: usize = 20;

/// The request header (§5.2.6, `struct virtio_blk_req` up to `data`).
#[repr(C)]
pub struct RequestHeader {
    /// 0x0: [`req_type`]
    pub type_: u32,
    /// 0x4
    pub reserved: u32,
    /// 0x8: first 512-byte sector
    pub sector: u64,
}
pub const HEADER_SIZE: u64 = size_of::<RequestHeader>() as u64;
const _: () = assert!(HEADER_SIZE == 16);
const _: () = assert!(offset_of!(RequestHeader, sector) == 8);

/// The device configuration up to the write-zeroes fields (§5.2.4, `struct virtio_blk_config`;
/// packed to 4 bytes: the spec's structure has no tail padding after `unused1`).
#[repr(C, packed(4))]
pub struct BlkConfig {
    /// 0x00: size in 512-byte sectors
    pub capacity: u64,
    /// 0x08: largest segment (VIRTIO_BLK_F_SIZE_MAX)
    pub size_max: u32,
    /// 0x0C: most segments per request (VIRTIO_BLK_F_SEG_MAX)
    pub seg_max: u32,
    /// 0x10: cylinders, heads, sectors (VIRTIO_BLK_F_GEOMETRY)
    pub geometry: [u8; 4],
    /// 0x14: block size (VIRTIO_BLK_F_BLK_SIZE)
    pub blk_size: u32,
    /// 0x18: physical_block_exp, alignment_offset, min_io_size, opt_io_size
    pub topology: [u8; 8],
    /// 0x20: cache mode (VIRTIO_BLK_F_CONFIG_WCE)
    pub writeback: u8,
    pub unused0: u8,
    /// 0x22: queues (VIRTIO_BLK_F_MQ)
    pub num_queues: u16,
    /// 0x24: discard and write-zeroes limits (not offered)
    pub discard_write_zeroes: [u32; 5],
    /// 0x38
    pub write_zeroes_may_unmap: u8,
    pub unused1: [u8; 3],
}
pub const CONFIG_LEN: usize = size_of::<BlkConfig>();
const _: () = assert!(CONFIG_LEN == 0x3C && CONFIG_LEN <= DEVICE_CONFIG_MAX);
const _: () = assert!(offset_of!(BlkConfig, seg_max) == 0x0C);
const _: () = assert!(offset_of!(BlkConfig, blk_size) == 0x14);
const _: () = assert!(offset_of!(BlkConfig, writeback) == 0x20);
const _: () = assert!(offset_of!(BlkConfig, num_queues) == 0x22);

/// One virtual disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Size in 512-byte sectors.
    pub capacity: u64,
    pub read_only: bool,
    /// Most data segments per request, advertised as `seg_max`.
    pub seg_max: u32,
    /// The GET_ID string.
    pub id: [u8; ID_BYTES],
}

impl Disk {
    /// The features this disk offers (with the transport-level ones it supports).
    pub fn features(&self) -> u64 {
        let ro = if self.read_only { blk_feature::RO } else { 0 };
        feature::VERSION_1
            | feature::EVENT_IDX
            | feature::INDIRECT_DESC
            | blk_feature::SEG_MAX
            | blk_feature::BLK_SIZE
            | blk_feature::FLUSH
            | ro
    }

    /// The device-specific configuration bytes.
    pub fn config(&self) -> ([u8; DEVICE_CONFIG_MAX], usize) {
        let mut c = [0u8; DEVICE_CONFIG_MAX];
        c[..8].copy_from_slice(&self.capacity.to_le_bytes());
        c[offset_of!(BlkConfig, seg_max)..][..4].copy_from_slice(&self.seg_max.to_le_bytes());
        c[offset_of!(BlkConfig, blk_size)..][..4]
            .copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        c[offset_of!(BlkConfig, num_queues)..][..2].copy_from_slice(&1u16.to_le_bytes());
        (c, CONFIG_LEN)
    }

    /// What a request chain may hold: header, `seg_max` data buffers, status.
    pub fn chain_limits(&self, indirect: bool) -> ChainLimits {
        ChainLimits {
            max_segments: self.seg_max as usize + 2,
            max_bytes: (self.seg_max as u64)
                .saturating_mul(1 << 20)
                .saturating_add(HEADER_SIZE + 1),
            indirect,
        }
    }
}

/// A checked request. Data of a read goes to the writable bytes from 0; data of a write comes
/// from the readable bytes after the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Read { sector: u64, len: u64 },
    Write { sector: u64, len: u64 },
    Flush,
    GetId { len: u64 },
}

/// A request the device cannot even answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// No device-writable byte for the status.
    NoStatus,
    /// The status byte could not be written.
    Access(AccessError),
}

/// Turns a chain into a request, or into the status to answer it with.
pub fn parse(
    chain: &Chain,
    mem: &impl GuestMemory,
    disk: &Disk,
    flush: bool,
) -> Result<Result<Request, u8>, BlkError> {
    if chain.writable_len() == 0 {
        return Err(BlkError::NoStatus);
    }
    Ok(check(chain, mem, disk, flush))
}

fn check(chain: &Chain, mem: &impl GuestMemory, disk: &Disk, flush: bool) -> Result<Request, u8> {
    let mut h = [0u8; HEADER_SIZE as usize];
    chain.read(mem, 0, &mut h).map_err(|_| status::IOERR)?;
    let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = h;
    let type_ = u32::from_le_bytes([t0, t1, t2, t3]);
    let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    let in_data = chain.writable_len() - 1;
    let out_data = chain.readable_len() - HEADER_SIZE;
    let in_range = |len: u64| {
        let ok = len.is_multiple_of(SECTOR_SIZE)
            && sector
                .checked_add(len / SECTOR_SIZE)
                .is_some_and(|end| end <= disk.capacity);
        if ok {
            Ok(())
        } else {
            Err(status::IOERR)
        }
    };
    let exact = |readable_extra: u64, writable_extra: u64| {
        if readable_extra == 0 && writable_extra == 0 {
            Ok(())
        } else {
            Err(status::IOERR)
        }
    };
    match type_ {
        req_type::IN => {
            exact(out_data, 0)?;
            in_range(in_data)?;
            Ok(Request::Read {
                sector,
                len: in_data,
            })
        }
        req_type::OUT => {
            exact(0, in_data)?;
            in_range(out_data)?;
            if disk.read_only {
                return Err(status::IOERR);
            }
            Ok(Request::Write {
                sector,
                len: out_data,
            })
        }
        req_type::FLUSH if flush => {
            exact(out_data, in_data)?;
            Ok(Request::Flush)
        }
        req_type::GET_ID => {
            exact(out_data, 0)?;
            if in_data == 0 {
                return Err(status::IOERR);
            }
            Ok(Request::GetId { len: in_data })
        }
        _ => Err(status::UNSUPP),
    }
}

/// The backing store of a disk; sector numbers are checked against the capacity already.
pub trait BlockStorage {
    /// Reads `buf.len()` (a multiple of 512) bytes from `sector` on.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError>;
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError>;
    /// Makes completed writes stable.
    fn flush(&mut self) -> Result<(), IoError>;
}

/// The storage failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError;

/// A disk in memory (a boot module used as a RAM disk; the tests' disk).
pub struct RamDisk<'a> {
    pub bytes: &'a mut [u8],
    pub flushes: u64,
}

impl<'a> RamDisk<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        RamDisk { bytes, flushes: 0 }
    }

    /// Its capacity in sectors (a partial last sector is not part of the disk).
    pub fn sectors(&self) -> u64 {
        self.bytes.len() as u64 / SECTOR_SIZE
    }

    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, IoError> {
        let start = usize::try_from(sector.checked_mul(SECTOR_SIZE).ok_or(IoError)?)
            .map_err(|_| IoError)?;
        let end = start.checked_add(len).ok_or(IoError)?;
        if end > self.bytes.len() {
            return Err(IoError);
        }
        Ok(start..end)
    }
}

impl BlockStorage for RamDisk<'_> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let r = self.range(sector, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        let r = self.range(sector, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.flushes += 1;
        Ok(())
    }
}

/// Bytes moved per storage call.
const CHUNK: usize = 4096;

/// Serves one request chain: parse, do the I/O, write the status. Returns the used length:
/// all writable bytes when they were all written (a successful read or GET_ID, or a status
/// alone), else 0 (a failed read leaves its data unwritten; §2.7.8.2 lets `len`
/// underestimate, and drivers read the status).
pub fn serve(
    chain: &Chain,
    mem: &mut impl GuestMemory,
    disk: &Disk,
    flush: bool,
    storage: &mut impl BlockStorage,
) -> Result<u32, BlkError> {
    let request = parse(chain, mem, disk, flush)?;
    let status_at = chain.writable_len() - 1;
    let outcome = match request {
        Ok(r) => execute(r, chain, mem, disk, storage),
        Err(s) => Err(s),
    };
    let s = outcome.err().unwrap_or(status::OK);
    chain
        .write(mem, status_at, &[s])
        .map_err(BlkError::Access)?;
    let complete = s == status::OK || status_at == 0;
    // writable_len <= max_bytes of the chain; a chain beyond 4 GiB reports 0.
    Ok(if complete {
        u32::try_from(chain.writable_len()).unwrap_or(0)
    } else {
        0
    })
}

fn execute(
    r: Request,
    chain: &Chain,
    mem: &mut impl GuestMemory,
    disk: &Disk,
    storage: &mut impl BlockStorage,
) -> Result<(), u8> {
    let mut buf = [0u8; CHUNK];
    match r {
        Request::Read { sector, len } => {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                storage
                    .read(sector + done / SECTOR_SIZE, &mut buf[..n])
                    .map_err(|_| status::IOERR)?;
                chain
                    .write(mem, done, &buf[..n])
                    .map_err(|_| status::IOERR)?;
                done += n as u64;
            }
        }
        Request::Write { sector, len } => {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                chain
                    .read(mem, HEADER_SIZE + done, &mut buf[..n])
                    .map_err(|_| status::IOERR)?;
                storage
                    .write(sector + done / SECTOR_SIZE, &buf[..n])
                    .map_err(|_| status::IOERR)?;
                done += n as u64;
            }
        }
        Request::Flush => storage.flush().map_err(|_| status::IOERR)?,
        Request::GetId { len } => {
            // The id, NUL-padded over the whole buffer (so the used length is exact).
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                buf[..n].fill(0);
                if done == 0 {
                    let k = n.min(ID_BYTES);
                    buf[..k].copy_from_slice(&disk.id[..k]);
                }
                chain
                    .write(mem, done, &buf[..n])
                    .map_err(|_| status::IOERR)?;
                done += n as u64;
            }
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits, of `bytes`: the checksum the hypervisor prints of a RAM disk at the guest's
/// end (tests recompute it on the host).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[path = "blk_tests.rs"]
mod tests;
