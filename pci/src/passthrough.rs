//! What a guest sees of a passed-through virtual function: a virtual type-0 configuration space
//! and the MSI-X table, both kept by the hypervisor. Everything else of the VF (its registers,
//! doorbells, the PBA) the guest reaches directly through NPT.
//!
//! Configuration space (offsets of the virtual function, PCI 3.0 §6.1):
//! - 0x00 the real vendor id (the PF's) and the VF device id from the PF's SR-IOV capability
//!   (a VF reads 0xFFFF in both, SR-IOV 1.1 §3.4.1);
//! - 0x04 command: Memory Space, Bus Master and INTx Disable are writable and reported as
//!   events; status reads only "capabilities list";
//! - 0x08 class code and revision of the VF (the PF's when the VF reads 0 or all ones);
//! - 0x0C header type 0, single function; cache line size is a scratch byte;
//! - 0x10-0x24 the VF's memory BARs with their real sizes and flags, holding guest-physical
//!   addresses: sizing reads the real size mask, and a new address is reported as an event
//!   while memory decoding is on (the kernel moves the NPT mapping);
//! - 0x2C the VF's subsystem ids; 0x34 capabilities pointer; 0x3C interrupt line (scratch),
//!   interrupt pin 0 (VFs have no INTx);
//! - 0x40 the only capability: MSI-X with the VF's table size, table and PBA locations; the guest's
//!   Enable and Function Mask bits are reported as events.
//!
//! Everything else reads 0 and drops writes; extended configuration space reads 0 (no extended
//! capabilities). No PCI Express capability is offered: Linux's `nvme` driver needs only memory
//! BARs, bus mastering and MSI-X/MSI/INTx through `pci_alloc_irq_vectors`, and without that
//! capability Linux treats the function as conventional PCI with 256 bytes of configuration space.
//!
//! MSI-X table: the kernel keeps the pages covering [`VfPassthrough::msix_table_range`] out of
//! the guest's NPT mapping and hands the guest's accesses there to [`VfPassthrough::msix_read`]
//! and [`VfPassthrough::msix_write`]; accesses outside the table (a PBA sharing the page) go to
//! the device. A written entry is reported as `MsixEntryChanged` when its mask bit changes or
//! when it changes while unmasked; the kernel turns it into an interrupt remapping entry and
//! writes the physical table itself.
//!
//! Events queue up (a single access causes at most two) until the kernel drains them with
//! [`VfPassthrough::pop_event`] after each access; if it ever let the queue fill, a final
//! `Resync` says to re-read the whole state through the accessors.

use core::ops::Range;

use super::bar::{BarKind, Bars, BAR_MEM_ADDRESS_MASK, TYPE0_BARS};
use super::capability::{find_capability, id};
use super::header::{self, Command, STATUS_CAPABILITIES_LIST};
use super::msix::{
    self, MsixInfo, MsixTableEntry, CONTROL_ENABLE, CONTROL_FUNCTION_MASK, MSIX_ENTRY_SIZE,
    VECTOR_CONTROL_MASK,
};
use super::sriov::{EnabledVfs, VfFunction};
use super::{Bdf, ConfigAccess};
use devices::pci::ConfigSpace;

/// Where the virtual MSI-X capability sits.
pub const MSIX_CAP_OFFSET: u16 = 0x40;
/// Most MSI-X vectors a passed-through function may have.
pub const MAX_MSIX_VECTORS: usize = 64;
const EVENT_CAPACITY: usize = 16;
/// Command bits the guest may change.
const COMMAND_WRITABLE: Command = Command::MEMORY_SPACE
    .union(Command::BUS_MASTER)
    .union(Command::INTX_DISABLE);

/// The identity registers the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfIdentity {
    pub vendor_id: u16,
    pub device_id: u16,
    /// Revision in bits 7:0, class code in 31:8.
    pub class_revision: u32,
    /// Subsystem vendor id (low half), subsystem id (high half).
    pub subsystem: u32,
}

impl VfIdentity {
    /// Reads the identity of VF `vf` of `pf`: vendor id from the PF, device id from the SR-IOV
    /// capability (`vf_device_id`), class/revision and subsystem ids from the VF itself, falling
    /// back to the PF's where the VF reads 0 or all ones.
    pub fn read(cfg: &impl ConfigAccess, pf: Bdf, vf: Bdf, vf_device_id: u16) -> VfIdentity {
        let either = |reg: u16| match cfg.read32(vf, reg) {
            0 | u32::MAX => cfg.read32(pf, reg),
            v => v,
        };
        VfIdentity {
            vendor_id: cfg.read16(pf, header::VENDOR_DEVICE),
            device_id: vf_device_id,
            class_revision: either(header::CLASS_REVISION),
            subsystem: either(header::SUBSYSTEM),
        }
    }
}

/// One BAR as the guest sees it: the real size and kind, the host-physical address of the VF's
/// region and the guest-physical address the guest programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualBar {
    pub index: u8,
    pub kind: BarKind,
    pub size: u64,
    pub hpa: u64,
    pub gpa: u64,
}

impl VirtualBar {
    fn address_mask(&self) -> u64 {
        !(self.size - 1)
    }

    fn read_low(&self) -> u32 {
        (self.gpa & self.address_mask()) as u32 & BAR_MEM_ADDRESS_MASK | self.kind.flag_bits()
    }

    fn read_high(&self) -> u32 {
        ((self.gpa & self.address_mask()) >> 32) as u32
    }
}

/// What the kernel must act on after a guest access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassthroughEvent {
    /// Command Memory Space changed: map (or unmap) every BAR at its current GPA.
    MemoryDecode { enabled: bool },
    /// Command Bus Master changed: forward to the VF's real command register.
    BusMaster { enabled: bool },
    /// A BAR's GPA changed while memory decoding is on: move its NPT mapping. The kernel must
    /// check that `to..to + size` lies in the guest's MMIO hole, not over its RAM.
    BarMoved { index: u8, from: u64, to: u64 },
    /// The guest changed MSI-X Enable or Function Mask.
    MsixControl { enabled: bool, function_mask: bool },
    /// A table entry was written: its mask bit changed, or it changed while unmasked.
    MsixEntryChanged { index: u16, entry: MsixTableEntry },
    /// Events were dropped: re-read the state through the accessors.
    Resync,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassthroughError {
    /// VFs have memory BARs only.
    IoBar {
        index: u8,
    },
    /// Not a power of two, or too large for its kind.
    BadBarSize {
        index: u8,
    },
    /// The initial GPA is not aligned to the BAR's size or overflows.
    MisalignedGpa {
        index: u8,
    },
    TooManyVectors {
        table_size: u16,
    },
    /// The MSI-X table does not lie inside a memory BAR of the function.
    MsixTableOutsideBar,
    /// The function has no MSI-X capability.
    NoMsix,
}

/// How the kernel builds a [`VfPassthrough`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassthroughSetup {
    pub identity: VfIdentity,
    /// The VF's BARs (host-physical bases, per-VF sizes), e.g. from
    /// [`super::sriov::VfFunction::bars`].
    pub bars: Bars,
    /// The GPAs the BARs hold when the guest starts (as firmware would have assigned them),
    /// `None` for 0.
    pub guest_bases: [Option<u64>; TYPE0_BARS],
    /// The VF's MSI-X capability as read from its own configuration space.
    pub msix: MsixInfo,
}

impl PassthroughSetup {
    /// Gathers the setup of `vf` (a VF of `vfs`) from the host: identity, BARs, and the MSI-X
    /// capability from the VF's own configuration space (which VFs do implement).
    pub fn read(
        cfg: &impl ConfigAccess,
        vfs: &EnabledVfs,
        vf: &VfFunction,
        guest_bases: [Option<u64>; TYPE0_BARS],
    ) -> Result<PassthroughSetup, PassthroughError> {
        let cap = find_capability(cfg, vf.bdf, id::MSIX).ok_or(PassthroughError::NoMsix)?;
        Ok(PassthroughSetup {
            identity: VfIdentity::read(cfg, vfs.sriov.pf, vf.bdf, vfs.vf_device_id),
            bars: vf.bars,
            guest_bases,
            msix: MsixInfo::read(cfg, vf.bdf, cap),
        })
    }
}

#[derive(Clone, Copy)]
struct EventQueue {
    buf: [Option<PassthroughEvent>; EVENT_CAPACITY],
    head: usize,
    len: usize,
    overflowed: bool,
}

impl EventQueue {
    const fn new() -> Self {
        EventQueue {
            buf: [None; EVENT_CAPACITY],
            head: 0,
            len: 0,
            overflowed: false,
        }
    }

    fn push(&mut self, e: PassthroughEvent) {
        if self.len == EVENT_CAPACITY {
            self.overflowed = true;
            return;
        }
        self.buf[(self.head + self.len) % EVENT_CAPACITY] = Some(e);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<PassthroughEvent> {
        if self.len == 0 {
            return core::mem::take(&mut self.overflowed).then_some(PassthroughEvent::Resync);
        }
        let e = self.buf[self.head].take();
        self.head = (self.head + 1) % EVENT_CAPACITY;
        self.len -= 1;
        e
    }
}

/// A passed-through VF as its guest sees it; plugs into [`devices::pci::PciBus`].
#[derive(Clone)]
pub struct VfPassthrough {
    identity: VfIdentity,
    bars: [Option<VirtualBar>; TYPE0_BARS],
    command: Command,
    cache_line_size: u8,
    interrupt_line: u8,
    msix: MsixInfo,
    table: [MsixTableEntry; MAX_MSIX_VECTORS],
    events: EventQueue,
}

impl VfPassthrough {
    pub fn new(setup: &PassthroughSetup) -> Result<VfPassthrough, PassthroughError> {
        let mut bars = [None; TYPE0_BARS];
        for bar in setup.bars.iter().flatten() {
            let index = bar.index;
            let max = match bar.kind {
                BarKind::Io => return Err(PassthroughError::IoBar { index }),
                BarKind::Memory32 { .. } => 1 << 31,
                BarKind::Memory64 { .. } => 1 << 63,
            };
            if usize::from(index) >= TYPE0_BARS
                || bar.kind.is_64bit() && usize::from(index) + 1 >= TYPE0_BARS
                || !bar.size.is_power_of_two()
                || bar.size < 16
                || bar.size > max
            {
                return Err(PassthroughError::BadBarSize { index });
            }
            let gpa = setup.guest_bases[usize::from(index)].unwrap_or(0);
            if gpa & (bar.size - 1) != 0
                || gpa.checked_add(bar.size).is_none()
                || !bar.kind.is_64bit() && gpa + bar.size > 1 << 32
            {
                return Err(PassthroughError::MisalignedGpa { index });
            }
            bars[usize::from(index)] = Some(VirtualBar {
                index,
                kind: bar.kind,
                size: bar.size,
                hpa: bar.base,
                gpa,
            });
        }
        for bar in bars.iter().flatten() {
            let upper = usize::from(bar.index) + 1;
            if bar.kind.is_64bit() && bars[upper].is_some() {
                return Err(PassthroughError::BadBarSize { index: bar.index });
            }
        }
        let msix = setup.msix;
        if usize::from(msix.table_size) > MAX_MSIX_VECTORS {
            return Err(PassthroughError::TooManyVectors {
                table_size: msix.table_size,
            });
        }
        let table_bar = bars
            .get(usize::from(msix.table.bir))
            .copied()
            .flatten()
            .ok_or(PassthroughError::MsixTableOutsideBar)?;
        let table_end = u64::from(msix.table.offset) + u64::from(msix.table_bytes());
        if table_end > table_bar.size {
            return Err(PassthroughError::MsixTableOutsideBar);
        }
        Ok(VfPassthrough {
            identity: setup.identity,
            bars,
            command: Command::empty(),
            cache_line_size: 0,
            interrupt_line: 0,
            msix: MsixInfo {
                enabled: false,
                function_mask: false,
                ..msix
            },
            table: [MsixTableEntry::RESET; MAX_MSIX_VECTORS],
            events: EventQueue::new(),
        })
    }

    /// The next event to act on, oldest first.
    pub fn pop_event(&mut self) -> Option<PassthroughEvent> {
        self.events.pop()
    }

    pub fn identity(&self) -> VfIdentity {
        self.identity
    }

    /// BAR `index` (the register of a 64-bit BAR's low half).
    pub fn bar(&self, index: u8) -> Option<VirtualBar> {
        self.bars.get(usize::from(index)).copied().flatten()
    }

    pub fn bars(&self) -> impl Iterator<Item = VirtualBar> + '_ {
        self.bars.iter().flatten().copied()
    }

    pub fn command(&self) -> Command {
        self.command
    }

    /// The BAR and offset a guest access of `size` bytes at `gpa` falls in, if the *whole*
    /// access lies inside one BAR, memory decoding is on and `size` is 1, 2, 4 or 8: anything
    /// else is not the VF's (it must not reach the next BAR, which may be another VF's).
    pub fn bar_access(&self, gpa: u64, size: u8) -> Option<(u8, u64)> {
        if !self.memory_enabled() || !matches!(size, 1 | 2 | 4 | 8) {
            return None;
        }
        let end = gpa.checked_add(u64::from(size))?;
        self.bars().find_map(|b| {
            let bar_end = b.gpa.checked_add(b.size)?;
            (b.gpa != 0 && gpa >= b.gpa && end <= bar_end).then(|| (b.index, gpa - b.gpa))
        })
    }

    pub fn memory_enabled(&self) -> bool {
        self.command.contains(Command::MEMORY_SPACE)
    }

    pub fn bus_master_enabled(&self) -> bool {
        self.command.contains(Command::BUS_MASTER)
    }

    pub fn msix_enabled(&self) -> bool {
        self.msix.enabled
    }

    pub fn msix_function_masked(&self) -> bool {
        self.msix.function_mask
    }

    pub fn msix_table_size(&self) -> u16 {
        self.msix.table_size
    }

    /// The guest's entry `index`.
    pub fn msix_entry(&self, index: u16) -> Option<MsixTableEntry> {
        (index < self.msix.table_size)
            .then(|| self.table.get(usize::from(index)).copied())
            .flatten()
    }

    /// Whether vector `index` may fire: MSI-X enabled, function not masked, entry not masked.
    pub fn msix_vector_active(&self, index: u16) -> bool {
        self.msix.enabled
            && !self.msix.function_mask
            && self.msix_entry(index).is_some_and(|e| !e.masked())
    }

    /// The BAR index and the byte range within that BAR the MSI-X table occupies.
    pub fn msix_table_range(&self) -> (u8, Range<u64>) {
        let start = u64::from(self.msix.table.offset);
        (
            self.msix.table.bir,
            start..start + u64::from(self.msix.table_bytes()),
        )
    }

    /// The byte offset into the table of an access at `bar_offset` of `size` bytes, if it lies
    /// wholly inside the table and has a size the table supports.
    fn table_offset(&self, bar_offset: u64, size: u8) -> Option<usize> {
        if !matches!(size, 1 | 2 | 4 | 8) {
            return None;
        }
        let (_, range) = self.msix_table_range();
        let rel = bar_offset.checked_sub(range.start)?;
        let end = rel.checked_add(u64::from(size))?;
        (end <= range.end - range.start).then_some(rel as usize)
    }

    fn table_byte(&self, at: usize) -> u8 {
        let entry = &self.table[at / MSIX_ENTRY_SIZE];
        (entry.dword(at % MSIX_ENTRY_SIZE / 4) >> (8 * (at % 4))) as u8
    }

    /// A guest read of `size` bytes at `bar_offset` of the table's BAR; `None` if it is not a
    /// table access (the kernel forwards it to the device).
    pub fn msix_read(&self, bar_offset: u64, size: u8) -> Option<u64> {
        let at = self.table_offset(bar_offset, size)?;
        Some((0..usize::from(size)).fold(0u64, |v, i| {
            v | u64::from(self.table_byte(at + i)) << (8 * i)
        }))
    }

    /// A guest write of the low `size` bytes of `value` at `bar_offset` of the table's BAR.
    /// Returns false if it is not a table access (the kernel forwards it to the device).
    pub fn msix_write(&mut self, bar_offset: u64, size: u8, value: u64) -> bool {
        let Some(at) = self.table_offset(bar_offset, size) else {
            return false;
        };
        let first = at / MSIX_ENTRY_SIZE;
        let last = (at + usize::from(size) - 1) / MSIX_ENTRY_SIZE;
        for index in first..=last {
            let old = self.table[index];
            let mut dwords = old.dwords();
            for i in 0..usize::from(size) {
                let byte_at = at + i;
                if byte_at / MSIX_ENTRY_SIZE != index {
                    continue;
                }
                let dw = byte_at % MSIX_ENTRY_SIZE / 4;
                let shift = 8 * (byte_at % 4);
                let byte = (value >> (8 * i)) as u8;
                dwords[dw] = dwords[dw] & !(0xFF << shift) | u32::from(byte) << shift;
            }
            let new = MsixTableEntry {
                // Bits 1:0 of the address are zero (DWORD aligned).
                address_low: dwords[0] & !3,
                address_high: dwords[1],
                data: dwords[2],
                // Only the mask bit is implemented.
                vector_control: dwords[3] & VECTOR_CONTROL_MASK,
            };
            self.table[index] = new;
            if new != old && (new.masked() != old.masked() || !new.masked()) {
                self.events.push(PassthroughEvent::MsixEntryChanged {
                    index: index as u16,
                    entry: new,
                });
            }
        }
        true
    }

    fn read_bar_register(&self, slot: usize) -> u32 {
        if let Some(bar) = self.bars[slot] {
            return bar.read_low();
        }
        match slot.checked_sub(1).and_then(|i| self.bars[i]) {
            Some(low) if low.kind.is_64bit() => low.read_high(),
            _ => 0,
        }
    }

    fn write_bar_register(&mut self, slot: usize, value: u32) {
        let (index, high) = match self.bars[slot] {
            Some(_) => (slot, false),
            None => match slot.checked_sub(1) {
                Some(i) if self.bars[i].is_some_and(|b| b.kind.is_64bit()) => (i, true),
                _ => return,
            },
        };
        let Some(bar) = self.bars[index].as_mut() else {
            return;
        };
        let from = bar.gpa;
        let to = if high {
            u64::from(value) << 32 | from & 0xFFFF_FFFF
        } else if bar.kind.is_64bit() {
            from & !0xFFFF_FFFF | u64::from(value & BAR_MEM_ADDRESS_MASK)
        } else {
            u64::from(value & BAR_MEM_ADDRESS_MASK)
        } & bar.address_mask();
        bar.gpa = to;
        if to != from && self.command.contains(Command::MEMORY_SPACE) {
            self.events.push(PassthroughEvent::BarMoved {
                index: index as u8,
                from,
                to,
            });
        }
    }

    fn write_command(&mut self, value: u16) {
        let old = self.command;
        let new = Command::from_bits_retain(value).intersection(COMMAND_WRITABLE);
        self.command = new;
        let changed = old.symmetric_difference(new);
        if changed.contains(Command::MEMORY_SPACE) {
            self.events.push(PassthroughEvent::MemoryDecode {
                enabled: new.contains(Command::MEMORY_SPACE),
            });
        }
        if changed.contains(Command::BUS_MASTER) {
            self.events.push(PassthroughEvent::BusMaster {
                enabled: new.contains(Command::BUS_MASTER),
            });
        }
    }

    fn msix_control(&self) -> u16 {
        let mut control = self.msix.table_size - 1;
        if self.msix.enabled {
            control |= CONTROL_ENABLE;
        }
        if self.msix.function_mask {
            control |= CONTROL_FUNCTION_MASK;
        }
        control
    }

    fn write_msix_control(&mut self, control: u16) {
        let enabled = control & CONTROL_ENABLE != 0;
        let function_mask = control & CONTROL_FUNCTION_MASK != 0;
        if enabled != self.msix.enabled || function_mask != self.msix.function_mask {
            self.msix.enabled = enabled;
            self.msix.function_mask = function_mask;
            self.events.push(PassthroughEvent::MsixControl {
                enabled,
                function_mask,
            });
        }
    }
}

impl ConfigSpace for VfPassthrough {
    fn read(&self, offset: u16) -> u32 {
        const BAR_END: u16 = header::BAR0 + 4 * TYPE0_BARS as u16;
        match offset & !3 {
            header::VENDOR_DEVICE => {
                u32::from(self.identity.vendor_id) | u32::from(self.identity.device_id) << 16
            }
            header::COMMAND_STATUS => {
                u32::from(self.command.bits()) | u32::from(STATUS_CAPABILITIES_LIST) << 16
            }
            header::CLASS_REVISION => self.identity.class_revision,
            // Header type 0, single function, no BIST.
            header::HEADER_TYPE_DWORD => u32::from(self.cache_line_size),
            o @ header::BAR0..BAR_END => {
                self.read_bar_register(usize::from((o - header::BAR0) / 4))
            }
            header::SUBSYSTEM => self.identity.subsystem,
            header::CAPABILITIES_POINTER => u32::from(MSIX_CAP_OFFSET),
            // Interrupt pin 0: no INTx.
            header::INTERRUPT => u32::from(self.interrupt_line),
            o if o == MSIX_CAP_OFFSET + msix::reg::HEADER => {
                u32::from(id::MSIX) | u32::from(self.msix_control()) << 16
            }
            o if o == MSIX_CAP_OFFSET + msix::reg::TABLE => self.msix.table.encode(),
            o if o == MSIX_CAP_OFFSET + msix::reg::PBA => self.msix.pba.encode(),
            _ => 0,
        }
    }

    fn write(&mut self, offset: u16, value: u32, mask: u32) {
        const BAR_END: u16 = header::BAR0 + 4 * TYPE0_BARS as u16;
        let offset = offset & !3;
        let merged = self.read(offset) & !mask | value & mask;
        match offset {
            // Writes to the status half alone leave the command register be.
            header::COMMAND_STATUS if mask & 0xFFFF != 0 => self.write_command(merged as u16),
            header::HEADER_TYPE_DWORD => self.cache_line_size = merged as u8,
            o @ header::BAR0..BAR_END => {
                self.write_bar_register(usize::from((o - header::BAR0) / 4), merged)
            }
            header::INTERRUPT => self.interrupt_line = merged as u8,
            o if o == MSIX_CAP_OFFSET + msix::reg::HEADER && mask & 0xFFFF_0000 != 0 => {
                self.write_msix_control((merged >> 16) as u16)
            }
            _ => {}
        }
    }
}
