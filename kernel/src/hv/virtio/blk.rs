//! virtio-blk over a boot module used as a RAM disk: the module's bytes, in place (boot
//! modules are reserved hypervisor memory no guest maps), are the disk; a read-only disk is
//! never written. The configuration allows a writable module on one guest only, and never one
//! a guest boots from, so no other guest can see or name these blocks.

use crate::hv::virtio::device::Backend;
use crate::hv::virtio::memory::GuestRam;
use virtio::blk::{self, blk_feature, BlockStorage, Disk, IoError, RamDisk};
use virtio::chain::{Chain, ChainLimits};
use virtio::status::feature;
use virtio::transport::{DeviceInfo, DeviceType, MAX_QUEUES};

/// Data segments per request (`seg_max`): Linux's requests (1.25 MiB at most by default) fit.
const SEG_MAX: u32 = 64;
/// Descriptors per queue.
const QUEUE_SIZE: u16 = 256;

/// The disk's bytes.
pub enum ModuleDisk {
    Writable(RamDisk<'static>),
    ReadOnly(&'static [u8]),
}

impl ModuleDisk {
    fn bytes(&self) -> &[u8] {
        match self {
            ModuleDisk::Writable(d) => d.bytes,
            ModuleDisk::ReadOnly(b) => b,
        }
    }
}

impl BlockStorage for ModuleDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        match self {
            ModuleDisk::Writable(d) => d.read(sector, buf),
            ModuleDisk::ReadOnly(b) => {
                let start = usize::try_from(sector.checked_mul(blk::SECTOR_SIZE).ok_or(IoError)?)
                    .map_err(|_| IoError)?;
                let end = start.checked_add(buf.len()).ok_or(IoError)?;
                buf.copy_from_slice(b.get(start..end).ok_or(IoError)?);
                Ok(())
            }
        }
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        match self {
            ModuleDisk::Writable(d) => d.write(sector, data),
            // `blk` refuses writes to a read-only disk before they get here.
            ModuleDisk::ReadOnly(_) => Err(IoError),
        }
    }

    fn flush(&mut self) -> Result<(), IoError> {
        match self {
            ModuleDisk::Writable(d) => d.flush(),
            ModuleDisk::ReadOnly(_) => Ok(()),
        }
    }
}

/// A virtio-blk device's backend.
pub struct BlkBackend {
    disk: Disk,
    storage: ModuleDisk,
    module: &'static str,
}

impl BlkBackend {
    /// A disk of `storage`'s whole sectors (the module `module`).
    pub fn new(storage: ModuleDisk, module: &'static str, read_only: bool) -> Self {
        let mut id = [0u8; blk::ID_BYTES];
        for (d, s) in id
            .iter_mut()
            .zip(b"didvisor:".iter().chain(module.as_bytes()))
        {
            *d = *s;
        }
        let disk = Disk {
            capacity: storage.bytes().len() as u64 / blk::SECTOR_SIZE,
            read_only,
            seg_max: SEG_MAX,
            id,
        };
        BlkBackend {
            disk,
            storage,
            module,
        }
    }

    pub fn sectors(&self) -> u64 {
        self.disk.capacity
    }
}

impl Backend for BlkBackend {
    fn info(&self) -> DeviceInfo {
        let (config, config_len) = self.disk.config();
        let mut queue_max_sizes = [0; MAX_QUEUES];
        queue_max_sizes[0] = QUEUE_SIZE;
        DeviceInfo {
            device_type: DeviceType::Block,
            features: self.disk.features(),
            queue_max_sizes,
            queues: 1,
            config,
            config_len,
        }
    }

    fn limits(&self, _queue: u16, features: u64) -> ChainLimits {
        self.disk
            .chain_limits(features & feature::INDIRECT_DESC != 0)
    }

    fn serve(
        &mut self,
        _queue: u16,
        chain: &Chain,
        mem: &mut GuestRam,
        features: u64,
    ) -> Result<u32, &'static str> {
        let flush = features & blk_feature::FLUSH != 0;
        blk::serve(chain, mem, &self.disk, flush, &mut self.storage)
            .map_err(|_| "a request without a writable status byte")
    }

    fn report(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let bytes = &self.storage.bytes()[..(self.disk.capacity * blk::SECTOR_SIZE) as usize];
        write!(
            f,
            "disk `{}`: {} sectors{}, fnv1a64 {:016x}",
            self.module,
            self.disk.capacity,
            if self.disk.read_only {
                ", read-only"
            } else {
                ""
            },
            blk::fnv1a64(bytes)
        )
    }
}
