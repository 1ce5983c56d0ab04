//! The 82576's SR-IOV capability as QEMU's `igb` presents it (`hw/net/igb.c`,
//! `igb_pci_realize`; Linux `igb`'s VF device id), checked before [`pci::sriov::enable_vfs`] programs it, and the VF's
//! resources the passthrough needs.

use pci::sriov::{
    enable_vfs, EnabledVfs, MmioWindow, Sriov, SriovControl, SriovError, SriovInfo, VfFunction,
};
use pci::{BarKind, Bdf, ConfigAccess};

/// PF device id (82576 copper).
pub const PF_DEVICE_ID: u16 = 0x10C9;
/// VF device id (82576 VF), what the SR-IOV capability's VF Device ID says.
pub const VF_DEVICE_ID: u16 = 0x10CA;
pub const VENDOR_INTEL: u16 = 0x8086;
/// First VF Offset: VF n (1-based) is at PF RID + 0x80 + 2 (n - 1).
pub const FIRST_VF_OFFSET: u16 = 0x80;
pub const VF_STRIDE: u16 = 2;
pub const TOTAL_VFS: u16 = 8;
/// VF BAR0: 16 KiB of registers; VF BAR3: 16 KiB of MSI-X (table at 0, PBA at 0x2000). Both
/// 64-bit prefetchable.
pub const VF_MMIO_BAR: u8 = 0;
pub const VF_MSIX_BAR: u8 = 3;
pub const VF_BAR_SIZE: u64 = 16 * 1024;
/// MSI-X vectors of a VF: igbvf uses 0 for TX, 1 for RX, 2 for the mailbox and link.
pub const VF_MSIX_VECTORS: u16 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SriovMismatch {
    /// Vendor and device id (offset 0) of something that is not an 82576 PF.
    NotAnIgbPf(u32),
    VfDeviceId(u16),
    FirstVfOffset(u16),
    VfStride(u16),
    TotalVfs(u16),
    /// A VF BAR missing, of the wrong kind or size.
    VfBar {
        index: u8,
    },
}

/// Checks what [`pci::sriov::Sriov::info`] read (after NumVFs is written: offset and stride
/// are valid only then) against the 82576's layout.
pub fn check_capability(info: &SriovInfo) -> Result<(), SriovMismatch> {
    if info.vf_device_id != VF_DEVICE_ID {
        return Err(SriovMismatch::VfDeviceId(info.vf_device_id));
    }
    if info.total_vfs != TOTAL_VFS {
        return Err(SriovMismatch::TotalVfs(info.total_vfs));
    }
    if info.num_vfs > 0 && info.first_vf_offset != FIRST_VF_OFFSET {
        return Err(SriovMismatch::FirstVfOffset(info.first_vf_offset));
    }
    if info.num_vfs > 1 && info.vf_stride != VF_STRIDE {
        return Err(SriovMismatch::VfStride(info.vf_stride));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableError {
    Sriov(SriovError),
    Mismatch(SriovMismatch),
}

/// Enables `num_vfs` VFs of the 82576 PF at `pf` with [`pci::sriov::enable_vfs`] (VF BARs in
/// `window`, below 4 GiB; `wait_ms` sleeps, see there), checking the layout before and after;
/// a layout that does not fit leaves the VFs disabled again.
pub fn enable(
    cfg: &mut impl ConfigAccess,
    pf: Bdf,
    num_vfs: u16,
    window: MmioWindow,
    wait_ms: impl FnMut(u32),
) -> Result<EnabledVfs, EnableError> {
    let ids = cfg.read32(pf, 0);
    if ids != u32::from(PF_DEVICE_ID) << 16 | u32::from(VENDOR_INTEL) {
        return Err(EnableError::Mismatch(SriovMismatch::NotAnIgbPf(ids)));
    }
    let sriov = Sriov::find(cfg, pf).ok_or(EnableError::Sriov(SriovError::NoSriovCapability))?;
    check_capability(&sriov.info(cfg)).map_err(EnableError::Mismatch)?;
    let enabled = enable_vfs(cfg, sriov, num_vfs, window, wait_ms).map_err(EnableError::Sriov)?;
    let checked = check_capability(&sriov.info(cfg))
        .and_then(|()| enabled.vfs().try_for_each(|vf| check_vf_bars(&vf)));
    if let Err(e) = checked {
        sriov.write_control(cfg, SriovControl::empty());
        return Err(EnableError::Mismatch(e));
    }
    Ok(enabled)
}

/// Checks an enabled VF's BARs: BAR0 and BAR3, 16 KiB, 64-bit memory.
pub fn check_vf_bars(vf: &VfFunction) -> Result<(), SriovMismatch> {
    for index in [VF_MMIO_BAR, VF_MSIX_BAR] {
        let ok = vf.bars[usize::from(index)]
            .is_some_and(|b| b.size == VF_BAR_SIZE && matches!(b.kind, BarKind::Memory64 { .. }));
        if !ok {
            return Err(SriovMismatch::VfBar { index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pci::Bar;
    use std::collections::HashMap;

    /// The PF's configuration space as QEMU's igb builds it, the parts `enable` reads: ids, an
    /// extended capability at 0x100 leading to SR-IOV at 0x160, VF BAR0 and BAR3 of 16 KiB,
    /// 64-bit prefetchable. Writes go through per-dword masks; other functions take any write.
    struct Config {
        pf: Bdf,
        data: HashMap<(Bdf, u16), u32>,
        mask: HashMap<u16, u32>,
    }

    const CAP: u16 = 0x160;

    impl Config {
        fn qemu(vf_bar3: bool) -> Config {
            let pf = Bdf::new(0, 3, 0).unwrap();
            let mut c = Config {
                pf,
                data: HashMap::new(),
                mask: HashMap::new(),
            };
            let mut put = |at: u16, v: u32, m: u32| {
                c.data.insert((pf, at), v);
                c.mask.insert(at, m);
            };
            put(0, 0x10C9_8086, 0);
            put(0x100, (0x160 << 20) | 1 << 16 | 0x0001, 0);
            put(CAP, 1 << 16 | 0x0010, 0);
            put(CAP + 0x08, 0, 0x1F);
            put(CAP + 0x0C, 8 << 16 | 8, 0);
            put(CAP + 0x10, 0, 0xFFFF);
            put(CAP + 0x14, 2 << 16 | 0x80, 0);
            put(CAP + 0x18, 0x10CA << 16, 0);
            put(CAP + 0x1C, 0x553, 0);
            put(CAP + 0x20, 1, 0xFFFF_FFFF);
            put(CAP + 0x24, 0xC, 0xFFFF_C000);
            put(CAP + 0x28, 0, 0xFFFF_FFFF);
            if vf_bar3 {
                put(CAP + 0x30, 0xC, 0xFFFF_C000);
                put(CAP + 0x34, 0, 0xFFFF_FFFF);
            }
            c
        }
    }

    impl ConfigAccess for Config {
        fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
            self.data.get(&(bdf, offset)).copied().unwrap_or(0)
        }
        fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
            let mask = if bdf == self.pf {
                self.mask.get(&offset).copied().unwrap_or(0)
            } else {
                u32::MAX
            };
            let old = self.read32(bdf, offset);
            self.data
                .insert((bdf, offset), (old & !mask) | (value & mask));
        }
    }

    const WINDOW: MmioWindow = MmioWindow {
        start: 0xC000_0000,
        end: 0xD000_0000,
    };

    #[test]
    fn enables_vfs_with_qemus_layout() {
        let mut c = Config::qemu(true);
        let pf = c.pf;
        let e = enable(&mut c, pf, 2, WINDOW, |_| {}).unwrap();
        let vf2 = e.vf(2).unwrap();
        assert_eq!(vf2.bdf.routing_id(), pf.routing_id() + 0x82);
        assert_eq!(vf2.bars[3].unwrap().size, VF_BAR_SIZE);
        let control = SriovControl::from_bits_retain(c.read16(pf, CAP + 0x08));
        assert!(control.contains(SriovControl::VF_ENABLE | SriovControl::VF_MEMORY_SPACE_ENABLE));
    }

    #[test]
    fn a_layout_that_does_not_fit_is_refused_and_left_disabled() {
        let mut c = Config::qemu(false);
        let pf = c.pf;
        let got = enable(&mut c, pf, 2, WINDOW, |_| {});
        assert_eq!(
            got,
            Err(EnableError::Mismatch(SriovMismatch::VfBar { index: 3 }))
        );
        assert_eq!(c.read16(pf, CAP + 0x08), 0, "VF Enable cleared again");

        let mut c = Config::qemu(true);
        c.data.insert((pf, 0), 0x10D3_8086);
        assert_eq!(
            enable(&mut c, pf, 2, WINDOW, |_| {}),
            Err(EnableError::Mismatch(SriovMismatch::NotAnIgbPf(
                0x10D3_8086
            )))
        );
        let mut c = Config::qemu(true);
        assert_eq!(
            enable(&mut c, pf, 9, WINDOW, |_| {}),
            Err(EnableError::Sriov(SriovError::BadVfCount {
                requested: 9,
                total: 8
            }))
        );
    }

    /// What QEMU's igb reports with NumVFs = 2 (the page sizes are the SR-IOV default; not checked).
    fn qemu_info() -> SriovInfo {
        SriovInfo {
            capabilities: 0,
            control: SriovControl::empty(),
            initial_vfs: 8,
            total_vfs: 8,
            num_vfs: 2,
            function_dependency_link: 0,
            first_vf_offset: 0x80,
            vf_stride: 2,
            vf_device_id: 0x10CA,
            supported_page_sizes: 0x553,
            system_page_size: 1,
        }
    }

    #[test]
    fn qemu_layout_passes_and_others_are_named() {
        assert_eq!(check_capability(&qemu_info()), Ok(()));
        let i = SriovInfo {
            vf_device_id: 0x1520,
            ..qemu_info()
        };
        assert_eq!(check_capability(&i), Err(SriovMismatch::VfDeviceId(0x1520)));
        let i = SriovInfo {
            vf_stride: 1,
            ..qemu_info()
        };
        assert_eq!(check_capability(&i), Err(SriovMismatch::VfStride(1)));
        let i = SriovInfo {
            first_vf_offset: 0x10,
            ..qemu_info()
        };
        assert_eq!(
            check_capability(&i),
            Err(SriovMismatch::FirstVfOffset(0x10))
        );
        // Offset and stride mean nothing before NumVFs is written.
        let i = SriovInfo {
            num_vfs: 0,
            first_vf_offset: 0,
            vf_stride: 0,
            ..qemu_info()
        };
        assert_eq!(check_capability(&i), Ok(()));
    }

    #[test]
    fn vf_routing_ids_follow_offset_and_stride() {
        let pf = Bdf::new(0, 3, 0).unwrap();
        let vf2 = pci::sriov::vf_routing_id(pf, FIRST_VF_OFFSET, VF_STRIDE, 2).unwrap();
        assert_eq!(vf2.routing_id(), pf.routing_id() + 0x82);
    }

    #[test]
    fn vf_bars_must_be_two_16k_64_bit_bars() {
        let bar = |index, size| Bar {
            index,
            kind: BarKind::Memory64 { prefetchable: true },
            base: 0xC000_0000,
            size,
        };
        let mut vf = VfFunction {
            number: 1,
            bdf: Bdf::new(0, 0x13, 0).unwrap(),
            bars: [
                Some(bar(0, 0x4000)),
                None,
                None,
                Some(bar(3, 0x4000)),
                None,
                None,
            ],
        };
        assert_eq!(check_vf_bars(&vf), Ok(()));
        vf.bars[3] = None;
        assert_eq!(check_vf_bars(&vf), Err(SriovMismatch::VfBar { index: 3 }));
        vf.bars[0] = Some(bar(0, 0x8000));
        assert_eq!(check_vf_bars(&vf), Err(SriovMismatch::VfBar { index: 0 }));
    }
}
