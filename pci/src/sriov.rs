//! The SR-IOV extended capability (PCIe 4.0 §9.3.3; SR-IOV 1.1 §3.3), the routing ids of virtual
//! functions, VF BAR sizing and placement, and the enabling sequence.
//!
//! Order (SR-IOV 1.1 §3.3.3, §3.3.13; Linux `drivers/pci/iov.c`): with VF Enable clear, set
//! System Page Size, then NumVFs (First VF Offset and VF Stride are valid only after that), size
//! the VF BARs (their size depends on the page size), program them, set VF Enable and VF MSE,
//! wait 100 ms before touching a VF, then set Memory Space in each VF's own command register
//! (QEMU decodes a VF's BAR only then; on real VFs that bit is read-only zero and the write is
//! harmless).
//!
//! VF BARs hold the base of VF 1's region; VF n's BAR is at `base + (n - 1) * size`, where the size
//! is per VF. QEMU registers VF BARs as 32-bit even when they say 64-bit, so they must be placed
//! below 4 GiB ([`place_vf_bars`] insists on a 32-bit window).

use core::mem::offset_of;

use super::bar::{size_bar_registers, write_bar_base, Bar, BarKind, Bars, TYPE0_BARS};
use super::capability::{ext_id, find_extended_capability};
use super::header::{write_command, Command};
use super::{Bdf, ConfigAccess};

/// The most VFs of one PF the hypervisor keeps track of.
pub const MAX_VFS: usize = 16;

/// SR-IOV extended capability structure (PCIe 4.0 §9.3.3), at the offset the
/// extended capability list gives.
#[repr(C)]
pub struct SriovCapability {
    /// 0x00: extended capability header, id 0x0010
    pub header: u32,
    /// 0x04: bit 0 VF Migration Capable, bit 1 ARI Capable Hierarchy Preserved, 31:21 VF
    /// Migration Interrupt Message Number
    pub capabilities: u32,
    /// 0x08: [`SriovControl`]
    pub control: u16,
    /// 0x0A: bit 0 VF Migration Status (RW1C)
    pub status: u16,
    /// 0x0C
    pub initial_vfs: u16,
    /// 0x0E
    pub total_vfs: u16,
    /// 0x10
    pub num_vfs: u16,
    /// 0x12
    pub function_dependency_link: u8,
    /// 0x13
    pub _reserved_13: u8,
    /// 0x14: routing id of VF 1 minus the PF's (valid after NumVFs is written)
    pub first_vf_offset: u16,
    /// 0x16: routing id distance between consecutive VFs
    pub vf_stride: u16,
    /// 0x18
    pub _reserved_18: u16,
    /// 0x1A: the device id every VF has (VFs themselves read 0xFFFF there)
    pub vf_device_id: u16,
    /// 0x1C: bit n set: page size 2^(n+12) supported
    pub supported_page_sizes: u32,
    /// 0x20: exactly one bit of `supported_page_sizes`; the VF BAR alignment
    pub system_page_size: u32,
    /// 0x24-0x3B: VF BAR0-5, memory BAR format
    pub vf_bar: [u32; 6],
    /// 0x3C: VF Migration State Array Offset (BIR 2:0, offset 31:3)
    pub vf_migration_state_array: u32,
}

const _: () = assert!(size_of::<SriovCapability>() == 0x40);
const _: () = assert!(offset_of!(SriovCapability, control) == 0x08);
const _: () = assert!(offset_of!(SriovCapability, total_vfs) == 0x0E);
const _: () = assert!(offset_of!(SriovCapability, num_vfs) == 0x10);
const _: () = assert!(offset_of!(SriovCapability, first_vf_offset) == 0x14);
const _: () = assert!(offset_of!(SriovCapability, vf_stride) == 0x16);
const _: () = assert!(offset_of!(SriovCapability, vf_device_id) == 0x1A);
const _: () = assert!(offset_of!(SriovCapability, supported_page_sizes) == 0x1C);
const _: () = assert!(offset_of!(SriovCapability, system_page_size) == 0x20);
const _: () = assert!(offset_of!(SriovCapability, vf_bar) == 0x24);
const _: () = assert!(offset_of!(SriovCapability, vf_migration_state_array) == 0x3C);

/// Register offsets within the capability.
pub mod reg {
    use super::SriovCapability;
    use core::mem::offset_of;

    pub const CAPABILITIES: u16 = offset_of!(SriovCapability, capabilities) as u16;
    /// Control (low half) and status (high half).
    pub const CONTROL: u16 = offset_of!(SriovCapability, control) as u16;
    pub const STATUS: u16 = offset_of!(SriovCapability, status) as u16;
    pub const INITIAL_VFS: u16 = offset_of!(SriovCapability, initial_vfs) as u16;
    pub const TOTAL_VFS: u16 = offset_of!(SriovCapability, total_vfs) as u16;
    /// NumVFs (low half), Function Dependency Link (byte 2).
    pub const NUM_VFS: u16 = offset_of!(SriovCapability, num_vfs) as u16;
    pub const FUNCTION_DEPENDENCY_LINK: u16 =
        offset_of!(SriovCapability, function_dependency_link) as u16;
    /// First VF Offset (low half) and VF Stride (high half).
    pub const FIRST_VF_OFFSET: u16 = offset_of!(SriovCapability, first_vf_offset) as u16;
    pub const VF_STRIDE: u16 = offset_of!(SriovCapability, vf_stride) as u16;
    pub const VF_DEVICE_ID: u16 = offset_of!(SriovCapability, vf_device_id) as u16;
    pub const SUPPORTED_PAGE_SIZES: u16 = offset_of!(SriovCapability, supported_page_sizes) as u16;
    pub const SYSTEM_PAGE_SIZE: u16 = offset_of!(SriovCapability, system_page_size) as u16;
    pub const VF_BAR0: u16 = offset_of!(SriovCapability, vf_bar) as u16;
    pub const VF_MIGRATION_STATE_ARRAY: u16 =
        offset_of!(SriovCapability, vf_migration_state_array) as u16;
}

bitflags::bitflags! {
    /// SR-IOV Control (PCIe 4.0 §9.3.3.3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SriovControl: u16 {
        const VF_ENABLE = 1 << 0;
        const VF_MIGRATION_ENABLE = 1 << 1;
        const VF_MIGRATION_INTERRUPT_ENABLE = 1 << 2;
        /// VF Memory Space Enable: the VFs decode their BARs.
        const VF_MEMORY_SPACE_ENABLE = 1 << 3;
        /// ARI Capable Hierarchy (only in the lowest-numbered PF of the device).
        const ARI_CAPABLE_HIERARCHY = 1 << 4;
    }
}

/// System Page Size value for 4 KiB pages (bit 0: 2^(0+12)).
pub const PAGE_SIZE_4K: u32 = 1;

/// The routing id of VF `n` (1-based) of `pf`: PF RID + First VF Offset + (n - 1) × VF Stride
/// (SR-IOV 1.1 §3.3.9-3.3.10). `None` for n = 0 and when the sum leaves the 16-bit routing-id
/// space (the spec's wrap-around would alias bus 0, which no real hierarchy uses).
pub fn vf_routing_id(pf: Bdf, first_vf_offset: u16, vf_stride: u16, n: u16) -> Option<Bdf> {
    let step = u32::from(n.checked_sub(1)?) * u32::from(vf_stride);
    let rid = u32::from(pf.routing_id()) + u32::from(first_vf_offset) + step;
    u16::try_from(rid).ok().map(Bdf::from_routing_id)
}

/// The capability's registers, read at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SriovInfo {
    pub capabilities: u32,
    pub control: SriovControl,
    pub initial_vfs: u16,
    pub total_vfs: u16,
    pub num_vfs: u16,
    pub function_dependency_link: u8,
    pub first_vf_offset: u16,
    pub vf_stride: u16,
    pub vf_device_id: u16,
    pub supported_page_sizes: u32,
    pub system_page_size: u32,
}

/// A PF's SR-IOV capability: the PF and the capability's offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sriov {
    pub pf: Bdf,
    pub cap: u16,
}

impl Sriov {
    pub fn find(cfg: &impl ConfigAccess, pf: Bdf) -> Option<Sriov> {
        find_extended_capability(cfg, pf, ext_id::SRIOV).map(|cap| Sriov { pf, cap })
    }

    pub fn info(&self, cfg: &impl ConfigAccess) -> SriovInfo {
        let r16 = |reg: u16| cfg.read16(self.pf, self.cap + reg);
        SriovInfo {
            capabilities: cfg.read32(self.pf, self.cap + reg::CAPABILITIES),
            control: SriovControl::from_bits_retain(r16(reg::CONTROL)),
            initial_vfs: r16(reg::INITIAL_VFS),
            total_vfs: r16(reg::TOTAL_VFS),
            num_vfs: r16(reg::NUM_VFS),
            function_dependency_link: cfg.read8(self.pf, self.cap + reg::FUNCTION_DEPENDENCY_LINK),
            first_vf_offset: r16(reg::FIRST_VF_OFFSET),
            vf_stride: r16(reg::VF_STRIDE),
            vf_device_id: r16(reg::VF_DEVICE_ID),
            supported_page_sizes: cfg.read32(self.pf, self.cap + reg::SUPPORTED_PAGE_SIZES),
            system_page_size: cfg.read32(self.pf, self.cap + reg::SYSTEM_PAGE_SIZE),
        }
    }

    pub fn control(&self, cfg: &impl ConfigAccess) -> SriovControl {
        SriovControl::from_bits_retain(cfg.read16(self.pf, self.cap + reg::CONTROL))
    }

    /// Writes the control register; the status half is written as zero (its bit is RW1C).
    pub fn write_control(&self, cfg: &mut impl ConfigAccess, control: SriovControl) {
        cfg.write32(self.pf, self.cap + reg::CONTROL, u32::from(control.bits()));
    }

    /// Sizes VF BAR0-5 (per-VF sizes) with VF MSE clear, restoring the control register.
    pub fn size_vf_bars(&self, cfg: &mut impl ConfigAccess) -> Bars {
        let control = self.control(cfg);
        self.write_control(
            cfg,
            control.difference(SriovControl::VF_MEMORY_SPACE_ENABLE),
        );
        let bars = size_bar_registers(cfg, self.pf, self.cap + reg::VF_BAR0, TYPE0_BARS, true);
        self.write_control(cfg, control);
        bars
    }
}

/// A free range of 32-bit MMIO space, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioWindow {
    pub start: u64,
    pub end: u64,
}

/// Where one VF BAR's region went: VF 1's BAR at `vf1_base`, VF n's `(n - 1) * size` above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfBarPlacement {
    pub index: u8,
    pub kind: BarKind,
    pub vf1_base: u64,
    /// Per VF, a power of two.
    pub size: u64,
    pub num_vfs: u16,
}

impl VfBarPlacement {
    /// VF `n`'s (1-based) BAR, `None` past NumVFs.
    pub fn vf_bar(&self, n: u16) -> Option<Bar> {
        if n == 0 || n > self.num_vfs {
            return None;
        }
        Some(Bar {
            index: self.index,
            kind: self.kind,
            base: self.vf1_base + u64::from(n - 1) * self.size,
            size: self.size,
        })
    }

    /// Bytes the region of all VFs spans.
    pub fn total(&self) -> u64 {
        self.size * u64::from(self.num_vfs)
    }
}

pub type VfBarPlacements = [Option<VfBarPlacement>; TYPE0_BARS];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SriovError {
    NoSriovCapability,
    /// NumVFs of 0, above TotalVFs or above [`MAX_VFS`].
    BadVfCount {
        requested: u16,
        total: u16,
    },
    /// The PF does not support 4 KiB system pages.
    PageSizeUnsupported {
        supported: u32,
    },
    /// NumVFs did not read back as written.
    NumVfsNotAccepted {
        wrote: u16,
        read: u16,
    },
    /// First VF Offset / VF Stride give no usable routing ids (zero offset or stride, or past
    /// bus 255).
    BadRoutingIds {
        first_vf_offset: u16,
        vf_stride: u16,
    },
    /// The window reaches above 4 GiB: QEMU would not decode VF BARs there.
    WindowAbove4G,
    /// The VF BARs need more room than the window has.
    WindowTooSmall {
        needed_end: u64,
        window_end: u64,
    },
    /// A BAR value did not fit its register (a hypervisor bug).
    BarProgramming {
        index: u8,
    },
}

/// Lays out the VF BAR regions of `num_vfs` VFs in `window` (which must lie below 4 GiB),
/// largest first, each aligned to its per-VF size (SR-IOV 1.1 §3.3.14) and at least 4 KiB.
/// Returns the placements and the first free address after them.
pub fn place_vf_bars(
    vf_bars: &Bars,
    num_vfs: u16,
    window: MmioWindow,
) -> Result<(VfBarPlacements, u64), SriovError> {
    if window.end > 1 << 32 || window.start > window.end {
        return Err(SriovError::WindowAbove4G);
    }
    let mut order: [Option<Bar>; TYPE0_BARS] = *vf_bars;
    // Largest first: each region is aligned to its size, so no gap is wasted behind smaller ones.
    order.sort_unstable_by(|a, b| {
        let size = |x: &Option<Bar>| x.map_or(0, |b| b.size);
        size(b).cmp(&size(a))
    });
    let mut placements: VfBarPlacements = [None; TYPE0_BARS];
    let mut cursor = window.start;
    for bar in order.iter().flatten() {
        let too_big = SriovError::WindowTooSmall {
            needed_end: u64::MAX,
            window_end: window.end,
        };
        if !bar.size.is_power_of_two() || !bar.kind.is_memory() {
            return Err(too_big);
        }
        let align = bar.size.max(4096);
        let base = cursor.checked_add(align - 1).ok_or(too_big)? & !(align - 1);
        let total = bar.size.checked_mul(u64::from(num_vfs)).ok_or(too_big)?;
        let end = base.checked_add(total).ok_or(too_big)?;
        if end > window.end {
            return Err(SriovError::WindowTooSmall {
                needed_end: end,
                window_end: window.end,
            });
        }
        placements[usize::from(bar.index)] = Some(VfBarPlacement {
            index: bar.index,
            kind: bar.kind,
            vf1_base: base,
            size: bar.size,
            num_vfs,
        });
        cursor = end;
    }
    Ok((placements, cursor))
}

/// A PF whose VFs are enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnabledVfs {
    pub sriov: Sriov,
    pub num_vfs: u16,
    pub first_vf_offset: u16,
    pub vf_stride: u16,
    pub vf_device_id: u16,
    pub placements: VfBarPlacements,
    /// First free address of the window after the VF BARs.
    pub window_used_to: u64,
}

/// One VF: its number (1-based), routing id and BARs (host-physical).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfFunction {
    pub number: u16,
    pub bdf: Bdf,
    pub bars: Bars,
}

impl EnabledVfs {
    pub fn vf(&self, n: u16) -> Option<VfFunction> {
        if n == 0 || n > self.num_vfs {
            return None;
        }
        let bdf = vf_routing_id(self.sriov.pf, self.first_vf_offset, self.vf_stride, n)?;
        let mut bars: Bars = [None; TYPE0_BARS];
        for (slot, p) in bars.iter_mut().zip(self.placements.iter()) {
            *slot = p.and_then(|p| p.vf_bar(n));
        }
        Some(VfFunction {
            number: n,
            bdf,
            bars,
        })
    }

    pub fn vfs(&self) -> impl Iterator<Item = VfFunction> + '_ {
        (1..=self.num_vfs).filter_map(|n| self.vf(n))
    }
}

/// Enables `num_vfs` VFs of `sriov.pf` in the order the module documentation gives, placing
/// their BARs in `window`. `wait_ms` sleeps: 1 s after disabling VFs that were enabled, 100 ms
/// after VF Enable (SR-IOV 1.1 §3.3.3.1) before the VFs' command registers are written.
pub fn enable_vfs(
    cfg: &mut impl ConfigAccess,
    sriov: Sriov,
    num_vfs: u16,
    window: MmioWindow,
    mut wait_ms: impl FnMut(u32),
) -> Result<EnabledVfs, SriovError> {
    let info = sriov.info(cfg);
    if num_vfs == 0 || num_vfs > info.total_vfs || usize::from(num_vfs) > MAX_VFS {
        return Err(SriovError::BadVfCount {
            requested: num_vfs,
            total: info.total_vfs,
        });
    }
    if info.supported_page_sizes & PAGE_SIZE_4K == 0 {
        return Err(SriovError::PageSizeUnsupported {
            supported: info.supported_page_sizes,
        });
    }
    let keep = info.control & SriovControl::ARI_CAPABLE_HIERARCHY;
    if info.control.contains(SriovControl::VF_ENABLE) {
        sriov.write_control(cfg, keep);
        wait_ms(1000);
    } else {
        sriov.write_control(cfg, keep);
    }
    cfg.write32(sriov.pf, sriov.cap + reg::SYSTEM_PAGE_SIZE, PAGE_SIZE_4K);
    cfg.write32(sriov.pf, sriov.cap + reg::NUM_VFS, u32::from(num_vfs));
    let info = sriov.info(cfg);
    if info.num_vfs != num_vfs {
        return Err(SriovError::NumVfsNotAccepted {
            wrote: num_vfs,
            read: info.num_vfs,
        });
    }
    let bad_rids = SriovError::BadRoutingIds {
        first_vf_offset: info.first_vf_offset,
        vf_stride: info.vf_stride,
    };
    if info.first_vf_offset == 0 || (num_vfs > 1 && info.vf_stride == 0) {
        return Err(bad_rids);
    }
    vf_routing_id(sriov.pf, info.first_vf_offset, info.vf_stride, num_vfs).ok_or(bad_rids)?;

    let vf_bars = sriov.size_vf_bars(cfg);
    let (placements, window_used_to) = place_vf_bars(&vf_bars, num_vfs, window)?;
    for p in placements.iter().flatten() {
        let bar = Bar {
            index: p.index,
            kind: p.kind,
            base: 0,
            size: p.size,
        };
        write_bar_base(cfg, sriov.pf, sriov.cap + reg::VF_BAR0, &bar, p.vf1_base)
            .ok_or(SriovError::BarProgramming { index: p.index })?;
    }
    sriov.write_control(
        cfg,
        keep | SriovControl::VF_ENABLE | SriovControl::VF_MEMORY_SPACE_ENABLE,
    );
    wait_ms(100);
    let enabled = EnabledVfs {
        sriov,
        num_vfs,
        first_vf_offset: info.first_vf_offset,
        vf_stride: info.vf_stride,
        vf_device_id: info.vf_device_id,
        placements,
        window_used_to,
    };
    for vf in enabled.vfs() {
        write_command(cfg, vf.bdf, Command::MEMORY_SPACE);
    }
    Ok(enabled)
}
