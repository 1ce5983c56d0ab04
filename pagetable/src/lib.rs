//! Page-table code shared by didvisor's nested page tables (`svm::npt`) and AMD-Vi I/O page
//! tables (`iommu::io_pgtable`), in the Hedron manner: generic over the entry format and over
//! the memory access, so host tests run the real code against fake physical memory.
//!
//! | module | what |
//! |---|---|
//! | [`addr`] | typed addresses: [`Hpa`], [`Gpa`], [`Gva`], [`Iova`] |
//! | [`mem`] | [`PhysAccess`] (64-bit words of host-physical memory), [`FrameSource`] (4 KiB table frames) |
//! | [`radix`] | [`RadixTable`]: map / unmap / translate / destroy over an [`EntryFormat`] |
//! | `testmem` | `FakeMem`, sparse fake memory with a frame allocator (tests; the `testmem` feature) |
//!
//! The entry formats, with their layouts and spec sections, stay with the hardware they belong
//! to: the long-mode entry in `svm::paging` (AMD64 APM vol. 2 §5.4, §15.25), the AMD-Vi PDE/PTE
//! in `iommu::io_pgtable` (AMD IOMMU spec #48882 §2.2.3).
//!
//! The crate is `no_std`, without `alloc`, and has no `unsafe` code.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(all(feature = "testmem", not(test)))]
extern crate std;

pub mod addr;
pub mod mem;
pub mod radix;

#[cfg(any(test, feature = "testmem"))]
pub mod testmem;

pub use addr::{Gpa, Gva, Hpa, Iova};
pub use mem::{FrameSource, PhysAccess};
pub use radix::{Entry, EntryFormat, Error, Leaf, LeafCounts, PageSize, RadixTable, ENTRIES};
