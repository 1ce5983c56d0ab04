//! AMD-Vi, the AMD I/O Virtualization Technology (IOMMU): IVRS parsing and a driver for DMA
//! remapping and interrupt remapping, as pure logic (no `unsafe`, no heap).
//!
//! # Hardware model
//! Each IOMMU is a PCI function with an MMIO register block. It translates DMA and remaps
//! interrupts of the PCI devices (requester ids, "DeviceIDs") it covers. Firmware describes
//! the IOMMUs in the ACPI table IVRS ([`ivrs`]): where each IOMMU's registers are, which
//! requester ids it covers (and with which aliases), which ids the IOAPICs and HPETs send
//! interrupts as, and memory devices need mapped.
//!
//! The IOMMU works from structures in system memory that software builds:
//! - the **device table** ([`dte`]), indexed by requester id, 32 bytes per entry: whether the
//!   device's DMA is translated (and through which page table, tagged with which domain id) and
//!   how its interrupts are handled (blocked, passed, or remapped through which table);
//! - **I/O page tables** ([`io_pgtable`]), one per protection domain, an x86-like radix tree
//!   from device addresses (IOVAs; guest-physical addresses for a passed-through device) to
//!   host-physical addresses with read/write permissions;
//! - **interrupt remapping tables** ([`irte`]), one per device, selected by the low bits of the
//!   MSI data ([`msi`]), giving vector, destination APIC id and mode (or, in guest-virtual-APIC
//!   mode, a vAPIC backing page to post into);
//! - the **command buffer** ([`command`], [`cmd_ring`]), a ring through which software tells
//!   the IOMMU to drop cached entries; a COMPLETION_WAIT that stores to memory tells software
//!   when earlier commands are done;
//! - the **event log** ([`event`]), a ring the IOMMU fills with faults and errors.
//!
//! The IOMMU caches DTEs, IRTEs and translations; every change to those structures must be
//! followed by the matching invalidation and a completion wait before it is relied on.
//! [`driver::Iommu`] ties it together over two traits the kernel implements:
//! [`regs::Mmio`] (the register block) and [`mem::PhysAccess`] (physical memory), plus
//! [`mem::FrameSource`] for page-table frames.
//!
//! # Documents
//! AMD I/O Virtualization Technology (IOMMU) Specification, #48882, revision 3.x. Section
//! numbers below follow the 3.0x revisions; the register chapter is §3.4 in later ones and §3.3
//! in some early ones, so each item also names its section title.
//!
//! | module | spec |
//! |---|---|
//! | [`ivrs`] | §5.2 "IVRS" (ACPI table) |
//! | [`regs`] | §3.4 "IOMMU MMIO Registers": Device Table / Command Buffer / Event Log Base Address, Control, Exclusion, Extended Feature, Head/Tail Pointers, Status |
//! | [`dte`] | §2.2.2 "Device Table", §2.2.2.1 "Device Table Entry Format" |
//! | [`io_pgtable`] | §2.2.3 "I/O Page Tables for Host Translations" |
//! | [`irte`] | §2.2.5 "Interrupt Remapping Tables" (32-bit and 128-bit IRTE formats, guest virtual APIC entries) |
//! | [`msi`] | §2.2.5 (which MSI data bits select an IRTE); Intel SDM vol. 3A "Message Signalled Interrupts" (MSI format) |
//! | [`command`], [`cmd_ring`] | §2.4 "Commands" (§2.4.1 COMPLETION_WAIT, §2.4.2 INVALIDATE_DEVTAB_ENTRY, §2.4.3 INVALIDATE_IOMMU_PAGES, §2.4.5 INVALIDATE_INTERRUPT_TABLE, §2.4.8 INVALIDATE_IOMMU_ALL) |
//! | [`ga`] | §2.2.5.2 guest virtual APIC posting, §2.7 "Guest Virtual APIC (GA) Logging": GATag encoding, posted IRTE from an MSI, GA log ring and entries |
//! | [`event`] | §2.5 "Event Logging" (one subsection per event code) |
//! | [`driver`] | the initialization order of §2/§3.4, as Linux's `drivers/iommu/amd/init.c` does it |
//!
//! Layouts were cross-checked against Linux `drivers/iommu/amd/amd_iommu_types.h`, QEMU
//! `hw/i386/amd_iommu.{c,h}` and VirtualBox's `iommu-amd.h`.
//!
//! # What QEMU's `-device amd-iommu` does not do (QEMU 10; see `docs/platform.md`)
//! - With `pt=on` (its default) it translates no device DMA at all: run it with `pt=off`.
//! - It never writes the event log: DMA faults are visible only as failed device I/O.
//! - GuestMode = 1 IRTEs (vAPIC posting, GA) are rejected, and there is no GA log (the patched
//!   QEMU of `tests/qemu-avic/` has both with `ga=on`). The
//!   128-bit format (Control.GAEn) with GuestMode = 0 works; 32-bit destinations need
//!   `xtsup=on` (QEMU looks at the property, not at Control.XTEn; this driver sets XTEn as the
//!   spec requires).
//! - IOAPIC interrupts never reach it under TCG when `intremap=on`.
//! - Before mid-2025 fixes (so probably in 10.0) it rejects DTEs whose DomainID has bit 8 set
//!   and DTEs with any bit of quadword 3 set: use domain ids 1..=255 ([`dte::DomainId`]).
//! - It remaps only MSIs whose data\[10:8\] is fixed or arbitrated, like hardware; entries
//!   512..2047 are unreachable (no 2K-entry mode).
//!
//! # Use from the kernel
//! ```ignore
//! let cfg = iommu::driver::Config {
//!     device_table, device_table_pages: 512, command_buffer, command_log2: 8,
//!     event_log, event_log2: 8, semaphore, irte_format: IrteFormat::Bits128, x2apic: true,
//!     control: Control::from_ivhd_flags(ivhd.flags), spins: 10_000_000,
//!     ga_log: Some(GaLogConfig { base: ga_log_page, shadow_tail }),
//! };
//! let mut unit = Iommu::init(mmio, &mut mem, &cfg)?;          // every device blocked
//! let mut pt = IoPageTable::new(&mut frames)?;                 // per guest
//! pt.map(Iova(0), Hpa(guest_base), guest_len, IoPerm::READ | IoPerm::WRITE)?;
//! let irt = InterruptTable::new(irt_base, 9, unit.irte_format())?;
//! irt.clear(&mut mem);
//! unit.set_dte(&mut mem, vf, &Dte::translated(dom, pt.root(), pt.levels(), Some(irt.remap()))?)?;
//! // guest writes MSI-X entry n: decode it, pick a destination, then
//! irt.set(&mut mem, n, Irte::remapped(unit.irte_format(), vector, apic_id, DestMode::Physical, IntType::Fixed).unwrap())?;
//! unit.invalidate_interrupt_table(&mut mem, vf)?;
//! let msg = MsiMessage::remappable(n).unwrap();                // into the device's MSI-X entry
//! unit.poll_events(&mut mem, &mut |e| log::warn!("iommu: {e}"));
//! ```
#![cfg_attr(not(test), no_std)]

pub mod cmd_ring;
pub mod command;
pub mod driver;
pub mod dte;
pub mod event;
pub mod ga;
pub mod ga_running;
pub mod io_pgtable;
pub mod irte;
pub mod ivrs;
pub mod mem;
pub mod msi;
pub mod regs;

#[cfg(test)]
mod model;
// Fake memory for host tests, shared with `svm` (as `crate::testmem::FakeMem`).
#[cfg(test)]
use pagetable::testmem;

pub use cmd_ring::CommandRing;
pub use command::{Command, CommandError, PageRange};
pub use driver::{Config, DriverError, EventPoll, GaLogConfig, GaPoll, Iommu};
pub use dte::{DomainId, Dte, DteError, InterruptRemap};
pub use event::{Event, EventLog};
pub use ga::{GaLog, GaLogEntry, GaTag, PostRefusal, PostTarget};
pub use io_pgtable::{IoPageTable, IoPerm, MapError};
pub use irte::{DestMode, IntType, InterruptTable, Irte, Irte128, Irte32, IrteFormat};
pub use ivrs::{DeviceId, Ivrs, IvrsError};
pub use mem::{FrameSource, Hpa, Iova, PhysAccess};
pub use msi::MsiMessage;
pub use regs::{Control, ExtendedFeatures, Mmio, Status};
