//! The DMA domain of the NVMe physical function the hypervisor drives itself: an AMD-Vi I/O page
//! table that maps only the hypervisor's own buffers for the PF, identity-mapped (IOVA = host
//! physical address, so the addresses in ASQ/ACQ and in PRP 1 need no translation by the driver),
//! each with the least access the controller needs:
//!
//! | buffer | controller access | why |
//! |---|---|---|
//! | admin submission queue | read | the controller fetches commands from it |
//! | admin completion queue | write | the controller posts completion entries into it |
//! | data buffer (PRP 1) | read + write | Identify data comes back; Namespace Attachment's controller list goes out |
//!
//! (NVM Express Base Specification 2.0, §3.3.1 "Memory-based Transport Queue Model": host memory
//! submission queues the controller reads, completion queues it writes.)
//!
//! Anything else the PF (or a VF that reaches the PF's requester id) aims DMA at faults in the
//! IOMMU instead of landing in memory. The page-table format is the `iommu` crate's
//! ([`IoPageTable`], AMD IOMMU spec §2.2.3).

use super::entry::{COMPLETION_ENTRY_SIZE, SUBMISSION_ENTRY_SIZE};
use iommu::{FrameSource, Hpa, IoPageTable, IoPerm, Iova, MapError, PhysAccess};

/// The unit of every mapping.
pub const PAGE: u64 = 4096;

/// Where the hypervisor's admin-queue driver put the PF's DMA buffers (host-physical).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PfBuffers {
    /// Admin submission queue, `entries` × 64 bytes.
    pub sq: u64,
    /// Admin completion queue, `entries` × 16 bytes.
    pub cq: u64,
    /// Admin queue depth (both queues).
    pub entries: u16,
    /// The one data page every admin command with data uses as PRP 1.
    pub data: u64,
}

/// One identity-mapped range of the PF's domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaWindow {
    pub what: &'static str,
    /// Host-physical address, and the IOVA the controller uses (the same).
    pub addr: u64,
    /// Bytes, a multiple of [`PAGE`].
    pub len: u64,
    pub perm: IoPerm,
}

impl DmaWindow {
    fn end(&self) -> u64 {
        self.addr + self.len
    }
}

/// Why the domain cannot be built as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfDmaError {
    /// A buffer is not 4 KiB aligned, is at 0, or its end wraps.
    BadBuffer(&'static str),
    /// Two buffers share a page (each needs its own permissions).
    Overlap(&'static str, &'static str),
    /// Building the I/O page table failed.
    Map(MapError),
}

impl PfBuffers {
    /// The ranges the PF's domain maps, in address order: each buffer rounded up to whole
    /// pages, with its permission. Nothing else is mapped.
    pub fn windows(&self) -> Result<[DmaWindow; 3], PfDmaError> {
        let pages = |bytes: u64| bytes.div_ceil(PAGE).max(1) * PAGE;
        let entries = u64::from(self.entries);
        let mut w = [
            DmaWindow {
                what: "admin submission queue",
                addr: self.sq,
                len: pages(entries * SUBMISSION_ENTRY_SIZE as u64),
                perm: IoPerm::READ,
            },
            DmaWindow {
                what: "admin completion queue",
                addr: self.cq,
                len: pages(entries * COMPLETION_ENTRY_SIZE as u64),
                perm: IoPerm::WRITE,
            },
            DmaWindow {
                what: "data buffer",
                addr: self.data,
                len: PAGE,
                perm: IoPerm::READ | IoPerm::WRITE,
            },
        ];
        for x in &w {
            if x.addr == 0 || x.addr % PAGE != 0 || x.addr.checked_add(x.len).is_none() {
                return Err(PfDmaError::BadBuffer(x.what));
            }
        }
        w.sort_unstable_by_key(|x| x.addr);
        for pair in w.windows(2) {
            if pair[0].end() > pair[1].addr {
                return Err(PfDmaError::Overlap(pair[0].what, pair[1].what));
            }
        }
        Ok(w)
    }

    /// Maps [`windows`](Self::windows) into `table` (IOVA = address). On an error part of them
    /// may be mapped; the caller then does not install the table.
    pub fn map_into<M: PhysAccess + FrameSource>(
        &self,
        table: &mut IoPageTable<M>,
    ) -> Result<[DmaWindow; 3], PfDmaError> {
        let windows = self.windows()?;
        for w in &windows {
            table
                .map(Iova(w.addr), Hpa(w.addr), w.len, w.perm)
                .map_err(PfDmaError::Map)?;
        }
        Ok(windows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagetable::testmem::FakeMem;

    const BUFFERS: PfBuffers = PfBuffers {
        sq: 0x0100_0000,
        cq: 0x0100_1000,
        entries: 64,
        data: 0x0230_0000,
    };

    #[test]
    fn three_windows_of_one_page_with_least_access() {
        let w = BUFFERS.windows().unwrap();
        assert_eq!(
            w.map(|w| (w.addr, w.len, w.perm)),
            [
                (0x0100_0000, PAGE, IoPerm::READ),
                (0x0100_1000, PAGE, IoPerm::WRITE),
                (0x0230_0000, PAGE, IoPerm::READ | IoPerm::WRITE),
            ]
        );
    }

    #[test]
    fn deep_queues_take_more_pages() {
        // 256 entries: 16 KiB of submission entries, 4 KiB of completion entries.
        let b = PfBuffers {
            sq: 0x10_0000,
            cq: 0x20_0000,
            entries: 256,
            data: 0x30_0000,
        };
        let w = b.windows().unwrap();
        assert_eq!((w[0].len, w[1].len, w[2].len), (4 * PAGE, PAGE, PAGE));
        // 65 entries: the submission queue spills into a second page.
        let b = PfBuffers { entries: 65, ..b };
        assert_eq!(b.windows().unwrap()[0].len, 2 * PAGE);
    }

    #[test]
    fn windows_come_sorted_by_address() {
        let b = PfBuffers {
            sq: 0x50_0000,
            cq: 0x40_0000,
            entries: 64,
            data: 0x10_0000,
        };
        let w = b.windows().unwrap();
        assert_eq!(
            w.map(|w| w.what),
            [
                "data buffer",
                "admin completion queue",
                "admin submission queue"
            ]
        );
    }

    #[test]
    fn refuses_unaligned_null_and_shared_pages() {
        let unaligned = PfBuffers {
            cq: 0x0100_1800,
            ..BUFFERS
        };
        assert_eq!(
            unaligned.windows(),
            Err(PfDmaError::BadBuffer("admin completion queue"))
        );
        let null = PfBuffers { data: 0, ..BUFFERS };
        assert_eq!(null.windows(), Err(PfDmaError::BadBuffer("data buffer")));
        let shared = PfBuffers {
            data: BUFFERS.cq,
            ..BUFFERS
        };
        assert!(matches!(shared.windows(), Err(PfDmaError::Overlap(..))));
        // A 2-page submission queue running into the completion queue's page.
        let deep = PfBuffers {
            entries: 65,
            ..BUFFERS
        };
        assert_eq!(
            deep.windows(),
            Err(PfDmaError::Overlap(
                "admin submission queue",
                "admin completion queue"
            ))
        );
    }

    #[test]
    fn the_table_maps_the_buffers_and_nothing_else() {
        let mut table = IoPageTable::new(FakeMem::new(0x8000_0000)).unwrap();
        BUFFERS.map_into(&mut table).unwrap();
        let t = |a: u64| table.translate(Iova(a)).map(|t| (t.pa.0, t.perm));
        // Identity, with each buffer's permission, at every offset of its page.
        assert_eq!(t(0x0100_0000), Some((0x0100_0000, IoPerm::READ)));
        assert_eq!(t(0x0100_0ff8), Some((0x0100_0ff8, IoPerm::READ)));
        assert_eq!(t(0x0100_1010), Some((0x0100_1010, IoPerm::WRITE)));
        assert_eq!(
            t(0x0230_0800),
            Some((0x0230_0800, IoPerm::READ | IoPerm::WRITE))
        );
        // 4 KiB leaves only: no large page lets the device past a buffer.
        assert_eq!(table.translate(Iova(0x0230_0000)).unwrap().page_size, PAGE);
        // The neighbours of each buffer, low memory, the page tables and high memory fault.
        for a in [
            0,
            0x0000_f000,
            0x00ff_f000,
            0x0100_2000,
            0x022f_f000,
            0x0230_1000,
            0x8000_0000,
            0xfee0_0000,
            1 << 40,
        ] {
            assert_eq!(t(a), None, "{a:#x} is mapped");
        }
    }

    #[test]
    fn a_failed_mapping_is_an_error() {
        let mut mem = FakeMem::new(0x8000_0000);
        mem.limit = Some(2); // the root and one more table: not enough for a leaf
        let mut table = IoPageTable::new(mem).unwrap();
        assert_eq!(
            BUFFERS.map_into(&mut table),
            Err(PfDmaError::Map(MapError::OutOfFrames))
        );
    }
}
