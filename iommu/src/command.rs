//! Command buffer entries (spec §2.4 "Commands"). Every command is 128 bits: quadword 0 holds
//! the opcode in bits 63:60 and the first operands, quadword 1 the rest. Reserved bits must be
//! zero (QEMU logs ILLEGAL_COMMAND_ERROR otherwise, and hardware stops the command buffer).
//! The subsections of §2.4 follow opcode order.
//!
//! | opcode | command | fields |
//! |---|---|---|
//! | 01h | COMPLETION_WAIT (§2.4.1) | S 0, I 1, F 2, store address 51:3; store data 127:64 |
//! | 02h | INVALIDATE_DEVTAB_ENTRY (§2.4.2) | DeviceID 15:0 |
//! | 03h | INVALIDATE_IOMMU_PAGES (§2.4.3) | PASID 19:0, DomainID 47:32; S 64, PDE 65, GN 66, address 127:76 |
//! | 05h | INVALIDATE_INTERRUPT_TABLE (§2.4.5) | DeviceID 15:0 |
//! | 08h | INVALIDATE_IOMMU_ALL (§2.4.8, needs EFR.IASup) | none |

use bitflags::bitflags;

use crate::dte::DomainId;
use crate::ivrs::DeviceId;
use crate::mem::{field, Hpa, Iova, MAX_HPA};

/// COMPLETION_WAIT.
pub const COMPLETION_WAIT: u8 = 0x01;
/// INVALIDATE_DEVTAB_ENTRY.
pub const INVALIDATE_DEVTAB_ENTRY: u8 = 0x02;
/// INVALIDATE_IOMMU_PAGES.
pub const INVALIDATE_IOMMU_PAGES: u8 = 0x03;
/// INVALIDATE_IOTLB_PAGES (device IOTLBs; not used: no ATS).
pub const INVALIDATE_IOTLB_PAGES: u8 = 0x04;
/// INVALIDATE_INTERRUPT_TABLE.
pub const INVALIDATE_INTERRUPT_TABLE: u8 = 0x05;
/// INVALIDATE_IOMMU_ALL.
pub const INVALIDATE_IOMMU_ALL: u8 = 0x08;

/// The INVALIDATE_IOMMU_PAGES address that, with S = 1, covers every page: the first zero bit
/// at or above bit 12 is bit 63.
pub const ALL_PAGES_ADDRESS: u64 = 0x7FFF_FFFF_FFFF_F000;

bitflags! {
    /// COMPLETION_WAIT flags (quadword 0 bits 2:0).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct WaitFlags: u64 {
        /// S: store the data at the address when all earlier commands are done.
        const STORE = 1 << 0;
        /// I: set Status.ComWaitInt (and interrupt with ComWaitIntEn).
        const INTERRUPT = 1 << 1;
        /// F: flush queue (affects PPR handling).
        const FLUSH = 1 << 2;
    }
}

/// Why a command could not be encoded or submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The completion store address is not 8-byte aligned or not below 2^52.
    BadStoreAddress(Hpa),
    /// The ring memory is not 4 KiB aligned, or its size is not 2^8..=2^15 entries.
    BadRing,
    /// The ring is full: the IOMMU has not consumed enough commands yet.
    RingFull,
    /// A COMPLETION_WAIT did not store within the spin budget; the Status register then.
    Timeout(crate::regs::Status),
}

/// Which pages an INVALIDATE_IOMMU_PAGES covers (S bit + address encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageRange {
    /// Every page of the domain.
    All,
    /// One 4 KiB page (S = 0).
    Page(Iova),
    /// A naturally aligned block of `2^log2_size` bytes (13..=51) at `base` (S = 1; the address
    /// has ones from bit 12 up to bit log2_size − 2 and a zero at bit log2_size − 1).
    Block {
        /// Start, aligned to the block size.
        base: Iova,
        /// log2 of the size in bytes.
        log2_size: u8,
    },
}

impl PageRange {
    /// The smallest range of one of the encodable shapes that covers `[iova, iova + len)`.
    pub const fn covering(iova: Iova, len: u64) -> Self {
        let start = iova.0 & !0xFFF;
        let last = if len == 0 {
            start
        } else {
            iova.0.saturating_add(len - 1)
        };
        let diff = start ^ last;
        if diff < 0x1000 {
            return Self::Page(Iova(start));
        }
        let log2_size = 64 - diff.leading_zeros(); // bits that differ, plus one
        if log2_size > 51 {
            return Self::All;
        }
        Self::Block {
            base: Iova(start & !((1u64 << log2_size) - 1)),
            log2_size: log2_size as u8,
        }
    }

    /// The S bit and the address field (bits 63:12 of quadword 1).
    pub const fn encode(self) -> (bool, u64) {
        match self {
            Self::All => (true, ALL_PAGES_ADDRESS),
            Self::Page(iova) => (false, iova.0 & !0xFFF),
            Self::Block { base, log2_size } => {
                if log2_size <= 12 {
                    (false, base.0 & !0xFFF)
                } else if log2_size > 51 {
                    (true, ALL_PAGES_ADDRESS)
                } else {
                    let ones = (1u64 << (log2_size - 1)) - 1;
                    (true, (base.0 | ones) & !0xFFF & !(1u64 << (log2_size - 1)))
                }
            }
        }
    }
}

/// One 128-bit command, quadword 0 first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C, align(16))]
pub struct Command(pub [u64; 2]);

const _: () = assert!(core::mem::size_of::<Command>() == 16);

const fn op(code: u8) -> u64 {
    (code as u64) << 60
}

impl Command {
    /// COMPLETION_WAIT: when every earlier command has completed, store `data` at `store`
    /// (8-byte aligned) if `flags` has STORE, and raise ComWaitInt if INTERRUPT.
    pub const fn completion_wait(
        flags: WaitFlags,
        store: Hpa,
        data: u64,
    ) -> Result<Self, CommandError> {
        if !store.is_aligned(8) || store.0 >= MAX_HPA {
            return Err(CommandError::BadStoreAddress(store));
        }
        Ok(Self([op(COMPLETION_WAIT) | store.0 | flags.bits(), data]))
    }

    /// INVALIDATE_DEVTAB_ENTRY for `device`: drop the IOMMU's cached copy of its DTE.
    pub const fn invalidate_devtab_entry(device: DeviceId) -> Self {
        Self([op(INVALIDATE_DEVTAB_ENTRY) | device.0 as u64, 0])
    }

    /// INVALIDATE_IOMMU_PAGES for host translations of `domain` (PASID 0, GN = 0). With `pde`
    /// the page-directory caches are flushed too (needed after removing or replacing tables).
    pub const fn invalidate_iommu_pages(domain: DomainId, range: PageRange, pde: bool) -> Self {
        let (s, address) = range.encode();
        Self::invalidate_iommu_pages_raw(0, domain, s, pde, false, address)
    }

    /// INVALIDATE_IOMMU_PAGES with every field given: PASID (19:0), DomainID (47:32), S, PDE,
    /// GN and address bits 63:12.
    pub const fn invalidate_iommu_pages_raw(
        pasid: u32,
        domain: DomainId,
        s: bool,
        pde: bool,
        gn: bool,
        address: u64,
    ) -> Self {
        let q0 = op(INVALIDATE_IOMMU_PAGES) | (pasid as u64 & 0xF_FFFF) | (domain.0 as u64) << 32;
        let q1 = (address & !0xFFF) | (s as u64) | (pde as u64) << 1 | (gn as u64) << 2;
        Self([q0, q1])
    }

    /// INVALIDATE_INTERRUPT_TABLE for `device`: drop cached IRTEs of its table.
    pub const fn invalidate_interrupt_table(device: DeviceId) -> Self {
        Self([op(INVALIDATE_INTERRUPT_TABLE) | device.0 as u64, 0])
    }

    /// INVALIDATE_IOMMU_ALL: every cached DTE, IRTE and translation (needs EFR.IASup).
    pub const fn invalidate_iommu_all() -> Self {
        Self([op(INVALIDATE_IOMMU_ALL), 0])
    }

    /// The opcode, bits 63:60.
    pub const fn opcode(&self) -> u8 {
        (self.0[0] >> 60) as u8
    }

    /// DeviceID of INVALIDATE_DEVTAB_ENTRY / INVALIDATE_INTERRUPT_TABLE, bits 15:0.
    pub const fn device(&self) -> DeviceId {
        DeviceId(self.0[0] as u16)
    }

    /// DomainID of INVALIDATE_IOMMU_PAGES, bits 47:32.
    pub const fn domain(&self) -> DomainId {
        DomainId(field(self.0[0], 32, 16) as u16)
    }

    /// Store address of COMPLETION_WAIT, bits 51:3.
    pub const fn store_address(&self) -> Hpa {
        Hpa(self.0[0] & 0x000F_FFFF_FFFF_FFF8)
    }

    /// Flags of COMPLETION_WAIT, bits 2:0.
    pub const fn wait_flags(&self) -> WaitFlags {
        WaitFlags::from_bits_truncate(self.0[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_wait_bits() {
        let c = Command::completion_wait(WaitFlags::STORE, Hpa(0x1234_5678), 0xDEAD_BEEF).unwrap();
        // Opcode 1 in 63:60, address 0x1234_5678 in 51:3, S = bit 0.
        assert_eq!(c.0, [0x1000_0000_1234_5679, 0xDEAD_BEEF]);
        assert_eq!(c.opcode(), COMPLETION_WAIT);
        assert_eq!(c.store_address(), Hpa(0x1234_5678));
        assert_eq!(c.wait_flags(), WaitFlags::STORE);
        let i =
            Command::completion_wait(WaitFlags::INTERRUPT | WaitFlags::FLUSH, Hpa(0), 0).unwrap();
        assert_eq!(i.0, [0x1000_0000_0000_0006, 0]);
        assert_eq!(
            Command::completion_wait(WaitFlags::STORE, Hpa(0x1004), 1),
            Err(CommandError::BadStoreAddress(Hpa(0x1004)))
        );
        assert_eq!(
            Command::completion_wait(WaitFlags::STORE, Hpa(1 << 52), 1),
            Err(CommandError::BadStoreAddress(Hpa(1 << 52)))
        );
    }

    #[test]
    fn invalidate_devtab_and_interrupt_table_bits() {
        let d = DeviceId::new(0, 3, 1); // 00:03.1 = 0x0019
        assert_eq!(
            Command::invalidate_devtab_entry(d).0,
            [0x2000_0000_0000_0019, 0]
        );
        assert_eq!(
            Command::invalidate_interrupt_table(d).0,
            [0x5000_0000_0000_0019, 0]
        );
        assert_eq!(
            Command::invalidate_devtab_entry(DeviceId::MAX).device(),
            DeviceId::MAX
        );
        assert_eq!(
            Command::invalidate_iommu_all().0,
            [0x8000_0000_0000_0000, 0]
        );
    }

    #[test]
    fn invalidate_pages_bits() {
        // All pages of domain 2, PDE too: DomainID at 47:32, opcode 3; S | PDE with address
        // 0x7FFF_FFFF_FFFF_F000.
        let c = Command::invalidate_iommu_pages(DomainId(2), PageRange::All, true);
        assert_eq!(c.0, [0x3000_0002_0000_0000, 0x7FFF_FFFF_FFFF_F003]);
        assert_eq!(c.domain(), DomainId(2));
        // One page, no PDE: S = 0.
        let p = Command::invalidate_iommu_pages(
            DomainId(0xFFFF),
            PageRange::Page(Iova(0x1234_5678)),
            false,
        );
        assert_eq!(p.0, [0x3000_FFFF_0000_0000, 0x0000_0000_1234_5000]);
        // Every raw field: PASID 0xABCDE, GN.
        let r =
            Command::invalidate_iommu_pages_raw(0xABCDE, DomainId(1), true, false, true, 0x2000);
        assert_eq!(r.0, [0x3000_0001_000A_BCDE, 0x2005]);
    }

    #[test]
    fn page_range_encoding() {
        // 2 MiB block at 0x4020_0000: ones in 19:12, zero at bit 20 -> 0x402F_F000.
        let b = PageRange::Block {
            base: Iova(0x4020_0000),
            log2_size: 21,
        };
        assert_eq!(b.encode(), (true, 0x402F_F000));
        // 8 KiB block: bit 12 zero.
        let e = PageRange::Block {
            base: Iova(0x6000),
            log2_size: 13,
        };
        assert_eq!(e.encode(), (true, 0x6000));
        assert_eq!(PageRange::Page(Iova(0x5FFF)).encode(), (false, 0x5000));
        assert_eq!(PageRange::All.encode(), (true, ALL_PAGES_ADDRESS));
    }

    #[test]
    fn covering_ranges() {
        assert_eq!(
            PageRange::covering(Iova(0x5000), 0x1000),
            PageRange::Page(Iova(0x5000))
        );
        assert_eq!(
            PageRange::covering(Iova(0x5100), 0x10),
            PageRange::Page(Iova(0x5000))
        );
        // Two pages straddling 8 KiB alignment: 0x5000..0x7000 differ in bits 13:12 -> 16 KiB.
        assert_eq!(
            PageRange::covering(Iova(0x5000), 0x2000),
            PageRange::Block {
                base: Iova(0x4000),
                log2_size: 14
            }
        );
        assert_eq!(
            PageRange::covering(Iova(0x4020_0000), 0x20_0000),
            PageRange::Block {
                base: Iova(0x4020_0000),
                log2_size: 21
            }
        );
        assert_eq!(PageRange::covering(Iova(0), 1 << 52), PageRange::All);
        assert_eq!(PageRange::covering(Iova(0), 0), PageRange::Page(Iova(0)));
    }
}
