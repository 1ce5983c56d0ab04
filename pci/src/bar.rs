//! Base address registers (PCI 3.0 §6.2.5.1; PCIe 4.0 §7.5.1.2.1): decoding and sizing.
//!
//! Sizing writes all ones to the register, reads back which address bits stick, and restores the
//! original value; the size is the lowest address bit that sticks. A 64-bit memory BAR spans two
//! registers, sized together. The function's decoding is disabled meanwhile (memory and I/O
//! space in the command register; for VF BARs, VF MSE in the SR-IOV control register), so the
//! transient all-ones address never claims bus cycles. The same register format is used by the
//! VF BARs in the SR-IOV capability ([`size_bar_registers`] serves both).

use super::header::{self, read_command, write_command, Command};
use super::{Bdf, ConfigAccess};

/// Bit 0: I/O space indicator.
pub const BAR_IO: u32 = 1 << 0;
/// Bits 2:1 of a memory BAR: 00 32-bit, 10 64-bit (01 was "below 1 MiB" in PCI 2.x).
pub const BAR_MEM_TYPE_MASK: u32 = 0b11 << 1;
pub const BAR_MEM_TYPE_64: u32 = 0b10 << 1;
pub const BAR_MEM_TYPE_1M: u32 = 0b01 << 1;
/// Bit 3 of a memory BAR.
pub const BAR_PREFETCHABLE: u32 = 1 << 3;
/// Address bits of a memory BAR's low register.
pub const BAR_MEM_ADDRESS_MASK: u32 = !0xF;
/// Address bits of an I/O BAR.
pub const BAR_IO_ADDRESS_MASK: u32 = !0x3;

/// Number of BARs of a type-0 header.
pub const TYPE0_BARS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Memory32 {
        prefetchable: bool,
    },
    /// Occupies this register and the next (whose slot is then `None`).
    Memory64 {
        prefetchable: bool,
    },
    Io,
}

impl BarKind {
    pub const fn is_memory(self) -> bool {
        !matches!(self, BarKind::Io)
    }

    pub const fn is_64bit(self) -> bool {
        matches!(self, BarKind::Memory64 { .. })
    }

    pub const fn prefetchable(self) -> bool {
        matches!(
            self,
            BarKind::Memory32 { prefetchable: true } | BarKind::Memory64 { prefetchable: true }
        )
    }

    /// The read-only low bits a BAR of this kind reads with (type and prefetchable bits).
    pub const fn flag_bits(self) -> u32 {
        match self {
            BarKind::Io => BAR_IO,
            BarKind::Memory32 { prefetchable } => {
                if prefetchable {
                    BAR_PREFETCHABLE
                } else {
                    0
                }
            }
            BarKind::Memory64 { prefetchable } => {
                BAR_MEM_TYPE_64 | if prefetchable { BAR_PREFETCHABLE } else { 0 }
            }
        }
    }
}

/// An implemented BAR: its register index (0-5), kind, current base and size (a power of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    pub base: u64,
    pub size: u64,
}

impl Bar {
    /// The address past the end, `None` if it would not fit in 64 bits.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }
}

/// What [`size_bar_registers`] found, one slot per register.
pub type Bars = [Option<Bar>; TYPE0_BARS];

/// Lowest set bit of `mask` (`None` for 0): the size of a BAR from its sizing read-back.
const fn lowest_bit(mask: u64) -> Option<u64> {
    if mask == 0 {
        None
    } else {
        Some(mask & mask.wrapping_neg())
    }
}

/// Sizes the `count` (≤ 6) consecutive BAR registers starting at `first` of `bdf`, restoring each
/// afterwards. The caller disables the function's decoding around this (see [`size_bars`]).
/// Unimplemented registers (reading back 0), a 64-bit BAR in the last register and the reserved
/// memory type 11b give `None`. `memory_only` treats bit 0 as reserved (VF BARs are memory).
pub fn size_bar_registers(
    cfg: &mut impl ConfigAccess,
    bdf: Bdf,
    first: u16,
    count: usize,
    memory_only: bool,
) -> Bars {
    let mut bars: Bars = [None; TYPE0_BARS];
    let count = count.min(TYPE0_BARS);
    let mut i = 0;
    while i < count {
        let offset = first + 4 * i as u16;
        let original = cfg.read32(bdf, offset);
        let index = i as u8;
        i += 1;
        if original & BAR_IO != 0 && !memory_only {
            cfg.write32(bdf, offset, u32::MAX);
            let probe = cfg.read32(bdf, offset);
            cfg.write32(bdf, offset, original);
            // Devices decoding only 16 I/O address bits read the upper ones as 0; the lowest
            // bit that sticks is the size either way.
            if let Some(size) = lowest_bit(u64::from(probe & BAR_IO_ADDRESS_MASK)) {
                bars[usize::from(index)] = Some(Bar {
                    index,
                    kind: BarKind::Io,
                    base: u64::from(original & BAR_IO_ADDRESS_MASK),
                    size,
                });
            }
            continue;
        }
        let prefetchable = original & BAR_PREFETCHABLE != 0;
        match original & BAR_MEM_TYPE_MASK {
            BAR_MEM_TYPE_64 => {
                if i >= count {
                    continue;
                }
                let high_offset = offset + 4;
                let original_high = cfg.read32(bdf, high_offset);
                i += 1;
                cfg.write32(bdf, offset, u32::MAX);
                cfg.write32(bdf, high_offset, u32::MAX);
                let probe = cfg.read32(bdf, offset);
                let probe_high = cfg.read32(bdf, high_offset);
                cfg.write32(bdf, offset, original);
                cfg.write32(bdf, high_offset, original_high);
                let mask = u64::from(probe_high) << 32 | u64::from(probe & BAR_MEM_ADDRESS_MASK);
                if let Some(size) = lowest_bit(mask) {
                    bars[usize::from(index)] = Some(Bar {
                        index,
                        kind: BarKind::Memory64 { prefetchable },
                        base: u64::from(original_high) << 32
                            | u64::from(original & BAR_MEM_ADDRESS_MASK),
                        size,
                    });
                }
            }
            0 | BAR_MEM_TYPE_1M => {
                cfg.write32(bdf, offset, u32::MAX);
                let probe = cfg.read32(bdf, offset);
                cfg.write32(bdf, offset, original);
                if let Some(size) = lowest_bit(u64::from(probe & BAR_MEM_ADDRESS_MASK)) {
                    bars[usize::from(index)] = Some(Bar {
                        index,
                        kind: BarKind::Memory32 { prefetchable },
                        base: u64::from(original & BAR_MEM_ADDRESS_MASK),
                        size,
                    });
                }
            }
            _ => {}
        }
    }
    bars
}

/// Sizes the six BARs of a type-0 function with its I/O and memory decoding disabled, then
/// restores the command register.
pub fn size_bars(cfg: &mut impl ConfigAccess, bdf: Bdf) -> Bars {
    let command = read_command(cfg, bdf);
    write_command(
        cfg,
        bdf,
        command.difference(Command::IO_SPACE | Command::MEMORY_SPACE),
    );
    let bars = size_bar_registers(cfg, bdf, header::BAR0, TYPE0_BARS, false);
    write_command(cfg, bdf, command);
    bars
}

/// Programs the register(s) of `bar` (at `first + 4 * bar.index`) with `base`, keeping its
/// flag bits. `None` if `base` is not aligned to the BAR's size or does not fit its kind.
pub fn write_bar_base(
    cfg: &mut impl ConfigAccess,
    bdf: Bdf,
    first: u16,
    bar: &Bar,
    base: u64,
) -> Option<()> {
    if bar.size == 0 || base & (bar.size - 1) != 0 {
        return None;
    }
    let offset = first + 4 * u16::from(bar.index);
    match bar.kind {
        BarKind::Memory64 { .. } => {
            cfg.write32(bdf, offset, base as u32);
            cfg.write32(bdf, offset + 4, (base >> 32) as u32);
        }
        BarKind::Memory32 { .. } | BarKind::Io => {
            let low = u32::try_from(base).ok()?;
            cfg.write32(bdf, offset, low);
        }
    }
    Some(())
}
