//! The split virtqueue's structures in guest memory (virtio 1.2 §2.7), each defined once with
//! its layout asserted, and the rules for a queue's size and placement.
//!
//! A queue is three areas the driver allocates and tells the device about (through the
//! transport's `queue_desc`, `queue_driver` and `queue_device`):
//!
//! | area | structure | alignment | size (bytes) |
//! |---|---|---|---|
//! | descriptor area | [`Descriptor`] table | 16 | 16 × size |
//! | driver area | available ring | 2 | 6 + 2 × size |
//! | device area | used ring | 4 | 6 + 8 × size |
//!
//! (§2.7, the table after the list of parts). The `used_event` word ends the available ring and
//! `avail_event` the used ring; both exist in memory whether or not `VIRTIO_F_EVENT_IDX` is
//! negotiated (the sizes above count them).

use core::mem::{offset_of, size_of};

use bitflags::bitflags;
use pagetable::addr::Gpa;

use crate::mem::GuestMemory;

/// Largest queue size of a split virtqueue (§2.7: "The maximum Queue Size value is 32768").
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// One entry of the descriptor table or of an indirect table (§2.7.5, `struct virtq_desc`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// 0x0: guest-physical address of the buffer (or of an indirect table)
    pub addr: u64,
    /// 0x8: length in bytes
    pub len: u32,
    /// 0xC: [`DescFlags`]
    pub flags: u16,
    /// 0xE: the next descriptor's index, if `flags` has NEXT
    pub next: u16,
}

pub const DESCRIPTOR_SIZE: usize = 16;
const _: () = assert!(size_of::<Descriptor>() == DESCRIPTOR_SIZE);
const _: () = assert!(offset_of!(Descriptor, len) == 0x8);
const _: () = assert!(offset_of!(Descriptor, flags) == 0xC);
const _: () = assert!(offset_of!(Descriptor, next) == 0xE);

bitflags! {
    /// `virtq_desc.flags` (§2.7.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DescFlags: u16 {
        /// VIRTQ_DESC_F_NEXT: the chain continues at `next`.
        const NEXT = 1;
        /// VIRTQ_DESC_F_WRITE: device-writable (else device-readable).
        const WRITE = 2;
        /// VIRTQ_DESC_F_INDIRECT: the buffer is a table of descriptors (§2.7.5.3).
        const INDIRECT = 4;
    }
}

impl Descriptor {
    /// Decodes the 16 little-endian bytes of an entry.
    pub fn from_bytes(b: &[u8; DESCRIPTOR_SIZE]) -> Descriptor {
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = *b;
        Descriptor {
            addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        }
    }

    /// The 16 little-endian bytes of the entry (what a driver writes; the tests' builder).
    pub fn to_bytes(&self) -> [u8; DESCRIPTOR_SIZE] {
        let mut b = [0; DESCRIPTOR_SIZE];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.next.to_le_bytes());
        b
    }

    /// The flags, unknown bits kept.
    pub fn flags(&self) -> DescFlags {
        DescFlags::from_bits_retain(self.flags)
    }
}

/// The fixed start of the available ring (§2.7.6, `struct virtq_avail`); `ring[size]` of
/// little-endian u16 heads follows, then `used_event`.
#[repr(C)]
pub struct AvailHeader {
    /// 0x0: [`AvailFlags`]
    pub flags: u16,
    /// 0x2: where the driver puts the next entry (free-running, mod 2^16)
    pub idx: u16,
}
const _: () = assert!(size_of::<AvailHeader>() == 4);
const _: () = assert!(offset_of!(AvailHeader, idx) == 2);

bitflags! {
    /// `virtq_avail.flags` (§2.7.6, §2.7.7).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AvailFlags: u16 {
        /// VIRTQ_AVAIL_F_NO_INTERRUPT: the driver wants no used-buffer notifications
        /// (meaningful only without `VIRTIO_F_EVENT_IDX`).
        const NO_INTERRUPT = 1;
    }
}

/// One used-ring entry (§2.7.8, `struct virtq_used_elem`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedElem {
    /// 0x0: head index of the chain (u32 "for padding reasons")
    pub id: u32,
    /// 0x4: bytes written into the chain's device-writable buffers
    pub len: u32,
}
pub const USED_ELEM_SIZE: usize = 8;
const _: () = assert!(size_of::<UsedElem>() == USED_ELEM_SIZE);
const _: () = assert!(offset_of!(UsedElem, len) == 4);

/// The fixed start of the used ring (§2.7.8, `struct virtq_used`); `ring[size]` of
/// [`UsedElem`] follows, then `avail_event`.
#[repr(C)]
pub struct UsedHeader {
    /// 0x0: [`UsedFlags`]
    pub flags: u16,
    /// 0x2: where the device puts the next entry (free-running, mod 2^16)
    pub idx: u16,
}
const _: () = assert!(size_of::<UsedHeader>() == 4);
const _: () = assert!(offset_of!(UsedHeader, idx) == 2);

bitflags! {
    /// `virtq_used.flags` (§2.7.8, §2.7.10).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct UsedFlags: u16 {
        /// VIRTQ_USED_F_NO_NOTIFY: the device wants no available-buffer notifications (kicks)
        /// (meaningful only without `VIRTIO_F_EVENT_IDX`).
        const NO_NOTIFY = 1;
    }
}

/// Alignment of the descriptor table (§2.7 table).
pub const DESC_ALIGN: u64 = 16;
/// Alignment of the available ring.
pub const AVAIL_ALIGN: u64 = 2;
/// Alignment of the used ring.
pub const USED_ALIGN: u64 = 4;

/// Bytes of the descriptor table of a queue of `size`.
pub const fn desc_table_bytes(size: u16) -> u64 {
    DESCRIPTOR_SIZE as u64 * size as u64
}

/// Bytes of the available ring, `used_event` included.
pub const fn avail_ring_bytes(size: u16) -> u64 {
    size_of::<AvailHeader>() as u64 + 2 * size as u64 + 2
}

/// Bytes of the used ring, `avail_event` included.
pub const fn used_ring_bytes(size: u16) -> u64 {
    size_of::<UsedHeader>() as u64 + USED_ELEM_SIZE as u64 * size as u64 + 2
}

/// Whether `size` is a valid split-queue size: a power of 2, at most 32768 (§2.7; 0 means "no
/// queue" on the transport and is not a size).
pub const fn valid_queue_size(size: u16) -> bool {
    size.is_power_of_two() && size <= MAX_QUEUE_SIZE
}

/// Why a queue's placement was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Not a power of 2, 0, or above the device's maximum.
    Size { size: u16, max: u16 },
    /// An area's address is not a multiple of its alignment.
    Misaligned { area: Area, gpa: Gpa },
    /// An area is not wholly guest RAM.
    OutsideRam { area: Area, gpa: Gpa },
}

/// The three areas of a split queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Descriptors,
    Avail,
    Used,
}

/// Where a split queue lives: what the driver programmed, checked by [`QueueLayout::check`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLayout {
    pub size: u16,
    pub desc: Gpa,
    pub avail: Gpa,
    pub used: Gpa,
}

impl QueueLayout {
    /// Checks the size against `max` and the §2.7 rules, and each area's alignment: what the
    /// transport checks when the driver enables the queue.
    pub fn check_shape(&self, max: u16) -> Result<(), LayoutError> {
        if !valid_queue_size(self.size) || self.size > max {
            return Err(LayoutError::Size {
                size: self.size,
                max,
            });
        }
        for (area, gpa, align, _) in self.areas() {
            if !gpa.is_aligned(align) {
                return Err(LayoutError::Misaligned { area, gpa });
            }
        }
        Ok(())
    }

    /// [`QueueLayout::check_shape`], and that each area is inside guest RAM (so later ring
    /// accesses fail only if RAM shrinks): what the backend checks before using the queue.
    pub fn check(&self, max: u16, mem: &impl GuestMemory) -> Result<(), LayoutError> {
        self.check_shape(max)?;
        for (area, gpa, _, len) in self.areas() {
            if !mem.contains(gpa, len) {
                return Err(LayoutError::OutsideRam { area, gpa });
            }
        }
        Ok(())
    }

    /// (area, address, alignment, bytes)
    fn areas(&self) -> [(Area, Gpa, u64, u64); 3] {
        [
            (
                Area::Descriptors,
                self.desc,
                DESC_ALIGN,
                desc_table_bytes(self.size),
            ),
            (
                Area::Avail,
                self.avail,
                AVAIL_ALIGN,
                avail_ring_bytes(self.size),
            ),
            (
                Area::Used,
                self.used,
                USED_ALIGN,
                used_ring_bytes(self.size),
            ),
        ]
    }

    /// Address of descriptor `index` (< size).
    pub fn desc_addr(&self, index: u16) -> Gpa {
        Gpa(self.desc.as_u64() + DESCRIPTOR_SIZE as u64 * index as u64)
    }

    pub fn avail_flags_addr(&self) -> Gpa {
        self.avail
    }

    pub fn avail_idx_addr(&self) -> Gpa {
        Gpa(self.avail.as_u64() + offset_of!(AvailHeader, idx) as u64)
    }

    /// Address of `ring[slot % size]` of the available ring.
    pub fn avail_ring_addr(&self, slot: u16) -> Gpa {
        let i = (slot % self.size) as u64;
        Gpa(self.avail.as_u64() + size_of::<AvailHeader>() as u64 + 2 * i)
    }

    /// Address of `used_event`, after the available ring's `ring[size]`.
    pub fn used_event_addr(&self) -> Gpa {
        Gpa(self.avail.as_u64() + size_of::<AvailHeader>() as u64 + 2 * self.size as u64)
    }

    pub fn used_flags_addr(&self) -> Gpa {
        self.used
    }

    pub fn used_idx_addr(&self) -> Gpa {
        Gpa(self.used.as_u64() + offset_of!(UsedHeader, idx) as u64)
    }

    /// Address of `ring[slot % size]` of the used ring.
    pub fn used_ring_addr(&self, slot: u16) -> Gpa {
        let i = (slot % self.size) as u64;
        Gpa(self.used.as_u64() + size_of::<UsedHeader>() as u64 + USED_ELEM_SIZE as u64 * i)
    }

    /// Address of `avail_event`, after the used ring's `ring[size]`.
    pub fn avail_event_addr(&self) -> Gpa {
        let ring = USED_ELEM_SIZE as u64 * self.size as u64;
        Gpa(self.used.as_u64() + size_of::<UsedHeader>() as u64 + ring)
    }
}

/// `vring_need_event` (§2.7.7, §2.7.10, and Linux's `virtio_ring.h`): whether moving an index
/// from `old` to `new` passed `event`, i.e. wrote the entry at index `event`; all mod 2^16.
pub const fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::SliceMemory;

    #[test]
    fn descriptor_round_trips_little_endian() {
        let d = Descriptor {
            addr: 0x1122_3344_5566_7788,
            len: 0x99aa_bbcc,
            flags: 7,
            next: 0x0102,
        };
        let b = d.to_bytes();
        assert_eq!(b[0], 0x88);
        assert_eq!(b[12], 7);
        assert_eq!(b[15], 0x01);
        assert_eq!(Descriptor::from_bytes(&b), d);
        assert_eq!(d.flags(), DescFlags::all());
    }

    #[test]
    fn area_sizes_follow_the_table() {
        assert_eq!(desc_table_bytes(256), 4096);
        assert_eq!(avail_ring_bytes(256), 6 + 512);
        assert_eq!(used_ring_bytes(256), 6 + 2048);
        assert_eq!(used_ring_bytes(MAX_QUEUE_SIZE), 6 + 8 * 32768);
    }

    #[test]
    fn queue_sizes() {
        assert!(valid_queue_size(1));
        assert!(valid_queue_size(32768));
        assert!(!valid_queue_size(0));
        assert!(!valid_queue_size(3));
        assert!(!valid_queue_size(0xFFFF));
    }

    #[test]
    fn layout_checks_size_alignment_and_ram() {
        let mut v = vec![0u8; 0x4000];
        let mem = SliceMemory::new(Gpa(0), &mut v);
        let ok = QueueLayout {
            size: 256,
            desc: Gpa(0),
            avail: Gpa(0x1000),
            used: Gpa(0x2000),
        };
        assert_eq!(ok.check(256, &mem), Ok(()));
        let size = |size| QueueLayout { size, ..ok }.check(256, &mem);
        assert_eq!(
            size(512),
            Err(LayoutError::Size {
                size: 512,
                max: 256
            })
        );
        assert_eq!(
            size(100),
            Err(LayoutError::Size {
                size: 100,
                max: 256
            })
        );
        assert_eq!(size(0), Err(LayoutError::Size { size: 0, max: 256 }));
        let desc = QueueLayout { desc: Gpa(8), ..ok };
        assert_eq!(
            desc.check(256, &mem),
            Err(LayoutError::Misaligned {
                area: Area::Descriptors,
                gpa: Gpa(8)
            })
        );
        let avail = QueueLayout {
            avail: Gpa(0x1001),
            ..ok
        };
        assert!(matches!(
            avail.check(256, &mem),
            Err(LayoutError::Misaligned {
                area: Area::Avail,
                ..
            })
        ));
        let used = QueueLayout {
            used: Gpa(0x3802),
            ..ok
        };
        assert!(matches!(
            used.check(256, &mem),
            Err(LayoutError::Misaligned {
                area: Area::Used,
                ..
            })
        ));
        // 6 + 8 * 256 bytes from 0x3800 end past 0x4000.
        let used = QueueLayout {
            used: Gpa(0x3800),
            ..ok
        };
        assert_eq!(
            used.check(256, &mem),
            Err(LayoutError::OutsideRam {
                area: Area::Used,
                gpa: Gpa(0x3800)
            })
        );
    }

    #[test]
    fn ring_addresses() {
        let l = QueueLayout {
            size: 4,
            desc: Gpa(0x1000),
            avail: Gpa(0x2000),
            used: Gpa(0x3000),
        };
        assert_eq!(l.desc_addr(3), Gpa(0x1030));
        assert_eq!(l.avail_idx_addr(), Gpa(0x2002));
        assert_eq!(l.avail_ring_addr(5), Gpa(0x2006));
        assert_eq!(l.used_event_addr(), Gpa(0x200c));
        assert_eq!(l.used_idx_addr(), Gpa(0x3002));
        assert_eq!(l.used_ring_addr(6), Gpa(0x3014));
        assert_eq!(l.avail_event_addr(), Gpa(0x3024));
    }

    #[test]
    fn need_event_matches_the_spec_examples() {
        // used_event 0: notify after the first buffer (idx 0 -> 1), and again after 65536.
        assert!(need_event(0, 1, 0));
        assert!(!need_event(0, 2, 1));
        assert!(!need_event(0, 0, 0xFFFF));
        assert!(
            need_event(0xFFFF, 0, 0xFFFF),
            "the entry at 0xFFFF, across the wrap"
        );
        // A batch passing the event index notifies once.
        assert!(need_event(5, 8, 3));
        assert!(!need_event(5, 5, 3));
        assert!(!need_event(5, 8, 6));
        // Nothing moved: never.
        assert!(!need_event(7, 7, 7));
    }
}
