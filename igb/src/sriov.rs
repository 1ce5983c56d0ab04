//! The 82576's SR-IOV capability as QEMU's `igb` presents it (`hw/net/igb.c`,
//! `igb_pci_realize`; Linux `igb`'s VF device id), checked before [`pci::sriov::enable_vfs`] programs it, and the VF's
//! resources the passthrough needs.

use pci::sriov::{SriovInfo, VfFunction};
use pci::BarKind;

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
    use pci::sriov::SriovControl;
    use pci::{Bar, Bdf};

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
