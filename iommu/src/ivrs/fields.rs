//! Bit fields of IVRS structures (AMD IOMMU spec §5.2), each a small
//! newtype with `const fn` accessors, or `bitflags` for pure bit sets.

use bitflags::bitflags;
use core::fmt;

/// Bits `low..low + width` of `value`.
const fn field(value: u32, low: u32, width: u32) -> u32 {
    (value >> low) & ((1 << width) - 1)
}

/// A 16-bit PCI requester id ("DeviceID" in the IOMMU spec): bus in bits
/// 15:8, device in 7:3, function in 2:0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u16);

impl DeviceId {
    /// The last requester id, ff:1f.7.
    pub const MAX: Self = Self(0xFFFF);

    /// `bus:device.function`; device is truncated to 5 bits, function to 3.
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        Self((bus as u16) << 8 | ((device & 0x1F) as u16) << 3 | (function & 0x7) as u16)
    }

    /// Bits 15:8.
    pub const fn bus(self) -> u8 {
        field(self.0 as u32, 8, 8) as u8
    }

    /// Bits 7:3.
    pub const fn device(self) -> u8 {
        field(self.0 as u32, 3, 5) as u8
    }

    /// Bits 2:0.
    pub const fn function(self) -> u8 {
        field(self.0 as u32, 0, 3) as u8
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

/// IVinfo, the IOMMU properties common to the whole system (§5.2.1, IVRS
/// header offset 36).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IvInfo(pub u32);

impl IvInfo {
    /// Bit 0 EFRSup: the IVHD blocks of type 11h/40h carry an image of the
    /// Extended Feature Register.
    pub const fn efr_sup(self) -> bool {
        field(self.0, 0, 1) != 0
    }

    /// Bit 1 DMA remap support: the platform asks the OS to use DMA
    /// remapping (pre-boot DMA protection).
    pub const fn dma_remap_sup(self) -> bool {
        field(self.0, 1, 1) != 0
    }

    /// Bits 7:5 GVAsize, guest virtual address size code (010b: 48 bits).
    pub const fn gva_size(self) -> u8 {
        field(self.0, 5, 3) as u8
    }

    /// Bits 14:8 PAsize, supported physical address bits.
    pub const fn pa_size(self) -> u8 {
        field(self.0, 8, 7) as u8
    }

    /// Bits 21:15 VAsize, supported virtual address bits.
    pub const fn va_size(self) -> u8 {
        field(self.0, 15, 7) as u8
    }

    /// Bit 22 HtAtsResv: the HyperTransport ATS address range is reserved.
    pub const fn ht_ats_reserved(self) -> bool {
        field(self.0, 22, 1) != 0
    }
}

impl fmt::Display for IvInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivinfo {:#010x}: efr_sup {} dma_remap {} va {} pa {} gva code {}",
            self.0,
            u8::from(self.efr_sup()),
            u8::from(self.dma_remap_sup()),
            self.va_size(),
            self.pa_size(),
            self.gva_size()
        )
    }
}

bitflags! {
    /// IVHD flags byte (§5.2.2, IVHD offset 1). Bits 7:6 are reserved in
    /// types 11h and 40h.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IvhdFlags: u8 {
        /// HyperTransport tunnel translation enable.
        const HT_TUN_EN = 1 << 0;
        /// PassPW setting for translated requests.
        const PASS_PW = 1 << 1;
        /// ResPassPW setting.
        const RES_PASS_PW = 1 << 2;
        /// Isochronous channel control.
        const ISOC = 1 << 3;
        /// IOTLB (ATS) support.
        const IOTLB_SUP = 1 << 4;
        /// Coherent: the IOMMU snoops its table walks.
        const COHERENT = 1 << 5;
        /// Prefetch support (type 10h only).
        const PREF_SUP = 1 << 6;
        /// Peripheral page request support (type 10h only).
        const PPR_SUP = 1 << 7;
    }
}

/// IOMMU info (§5.2.2, IVHD offset 18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IommuInfo(pub u16);

impl IommuInfo {
    /// Bits 4:0 MSINum: the MSI vector (message number) the IOMMU uses for its
    /// event log interrupt.
    pub const fn msi_number(self) -> u8 {
        field(self.0 as u32, 0, 5) as u8
    }

    /// Bits 12:8 UnitID: HyperTransport unit id.
    pub const fn unit_id(self) -> u8 {
        field(self.0 as u32, 8, 5) as u8
    }
}

/// IOMMU feature reporting of type-10h IVHDs (§5.2.2, IVHD offset 20):
/// a subset of the Extended Feature Register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureReporting(pub u32);

impl FeatureReporting {
    /// Bit 0 XTSup: x2APIC interrupt remapping format.
    pub const fn xt_sup(self) -> bool {
        field(self.0, 0, 1) != 0
    }
    /// Bit 1 NXSup: no-execute protection.
    pub const fn nx_sup(self) -> bool {
        field(self.0, 1, 1) != 0
    }
    /// Bit 2 GTSup: guest translation.
    pub const fn gt_sup(self) -> bool {
        field(self.0, 2, 1) != 0
    }
    /// Bits 4:3 GLXSup: guest CR3 table levels supported (encoded).
    pub const fn glx_sup(self) -> u8 {
        field(self.0, 3, 2) as u8
    }
    /// Bit 5 IASup: INVALIDATE_IOMMU_ALL command.
    pub const fn ia_sup(self) -> bool {
        field(self.0, 5, 1) != 0
    }
    /// Bit 6 GASup: guest virtual APIC (interrupt posting).
    pub const fn ga_sup(self) -> bool {
        field(self.0, 6, 1) != 0
    }
    /// Bit 7 HESup: hardware error registers.
    pub const fn he_sup(self) -> bool {
        field(self.0, 7, 1) != 0
    }
    /// Bits 12:8 PASmax: maximum PASID value (encoded).
    pub const fn pa_smax(self) -> u8 {
        field(self.0, 8, 5) as u8
    }
    /// Bits 16:13 PNCounters: performance counters per bank.
    pub const fn pn_counters(self) -> u8 {
        field(self.0, 13, 4) as u8
    }
    /// Bits 22:17 PNBanks: performance counter banks.
    pub const fn pn_banks(self) -> u8 {
        field(self.0, 17, 6) as u8
    }
    /// Bits 27:23 MSINumPPR: MSI message number of the PPR log interrupt.
    pub const fn msi_num_ppr(self) -> u8 {
        field(self.0, 23, 5) as u8
    }
    /// Bits 29:28 GATS: guest address translation size (encoded levels).
    pub const fn gats(self) -> u8 {
        field(self.0, 28, 2) as u8
    }
    /// Bits 31:30 HATS: host address translation size (encoded levels).
    pub const fn hats(self) -> u8 {
        field(self.0, 30, 2) as u8
    }
}

/// IOMMU attributes of type-11h/40h IVHDs (§5.2.2,
/// IVHD offset 20). The remaining features are in the EFR image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IommuAttributes(pub u32);

impl IommuAttributes {
    /// Bits 16:13 PNCounters.
    pub const fn pn_counters(self) -> u8 {
        field(self.0, 13, 4) as u8
    }
    /// Bits 22:17 PNBanks.
    pub const fn pn_banks(self) -> u8 {
        field(self.0, 17, 6) as u8
    }
    /// Bits 27:23 MSINumPPR.
    pub const fn msi_num_ppr(self) -> u8 {
        field(self.0, 23, 5) as u8
    }
}

/// The "DTE setting" byte of device entries (§5.2.2.2): interrupt
/// pass-through bits that firmware wants in the device table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DteSetting(pub u8);

impl DteSetting {
    /// Bit 0 INITPass.
    pub const fn init_pass(self) -> bool {
        field(self.0 as u32, 0, 1) != 0
    }
    /// Bit 1 EIntPass (ExtInt pass-through).
    pub const fn ext_int_pass(self) -> bool {
        field(self.0 as u32, 1, 1) != 0
    }
    /// Bit 2 NMIPass.
    pub const fn nmi_pass(self) -> bool {
        field(self.0 as u32, 2, 1) != 0
    }
    /// Bits 5:4 SysMgt: system management message handling (00b target
    /// abort, 01b forwarded untranslated, 10b INTx forwarded, 11b
    /// translated).
    pub const fn sys_mgt(self) -> u8 {
        field(self.0 as u32, 4, 2) as u8
    }
    /// Bit 6 Lint0Pass.
    pub const fn lint0_pass(self) -> bool {
        field(self.0 as u32, 6, 1) != 0
    }
    /// Bit 7 Lint1Pass.
    pub const fn lint1_pass(self) -> bool {
        field(self.0 as u32, 7, 1) != 0
    }
}

/// The extended DTE setting of device entry types 70 and 71 (§5.2.2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtendedDteSetting(pub u32);

impl ExtendedDteSetting {
    /// Bit 31 AtsDisabled: do not let the device use ATS.
    pub const fn ats_disabled(self) -> bool {
        field(self.0, 31, 1) != 0
    }
}

bitflags! {
    /// IVMD flags (§5.2.3, IVMD offset 1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IvmdFlags: u8 {
        /// Unity-map the range (guest address = physical address).
        const UNITY = 1 << 0;
        /// Reads are allowed.
        const READ = 1 << 1;
        /// Writes are allowed.
        const WRITE = 1 << 2;
        /// The range is an exclusion range (not translated).
        const EXCLUSION_RANGE = 1 << 3;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_fields() {
        // 0x00A0 = 0000_0000 1010_0000: bus 0, device 10100b = 0x14, function 0.
        let ioapic = DeviceId(0x00A0);
        assert_eq!(
            (ioapic.bus(), ioapic.device(), ioapic.function()),
            (0, 0x14, 0)
        );
        // 0x0002: 00:00.2, the usual AMD IOMMU function.
        assert_eq!(
            (DeviceId(0x0002).device(), DeviceId(0x0002).function()),
            (0, 2)
        );
        // 0xFFFF: ff:1f.7.
        assert_eq!(
            (
                DeviceId::MAX.bus(),
                DeviceId::MAX.device(),
                DeviceId::MAX.function()
            ),
            (0xFF, 0x1F, 7)
        );
        // 0x4311: bus 0x43, 0x11 = 00010_001 -> device 2, function 1.
        assert_eq!(DeviceId::new(0x43, 2, 1), DeviceId(0x4311));
        assert_eq!(DeviceId::new(0, 0x14, 0), ioapic);
        assert_eq!(DeviceId::new(0, 0xFF, 0xFF), DeviceId(0x00FF));
        assert_eq!(format!("{}", DeviceId(0x4311)), "43:02.1");
        assert_eq!(format!("{ioapic}"), "00:14.0");
    }

    #[test]
    fn iv_info_fields() {
        // QEMU: EFRSup | 40 << 8 = 0x2801.
        let qemu = IvInfo(0x0000_2801);
        assert!(qemu.efr_sup() && !qemu.dma_remap_sup() && !qemu.ht_ats_reserved());
        assert_eq!(
            (qemu.pa_size(), qemu.va_size(), qemu.gva_size()),
            (40, 0, 0)
        );
        // 0x00203043 (a Zen firmware table): bits 21:15 = 0x40 (VA 64),
        // bits 14:8 = 0x30 (PA 48), bits 7:5 = 010b (GVA 48), bits 1:0 = 11b.
        let zen = IvInfo(0x0020_3043);
        assert!(zen.efr_sup() && zen.dma_remap_sup());
        assert_eq!((zen.va_size(), zen.pa_size(), zen.gva_size()), (64, 48, 2));
        // Bit 22 alone.
        assert!(IvInfo(0x0040_0000).ht_ats_reserved());
        assert_eq!(IvInfo(0x0040_0000).va_size(), 0);
    }

    #[test]
    fn iommu_info_fields() {
        // 0x1405: bits 12:8 = 10100b (unit 0x14), bits 4:0 = 00101b (MSI 5).
        assert_eq!(
            (IommuInfo(0x1405).unit_id(), IommuInfo(0x1405).msi_number()),
            (0x14, 5)
        );
        // Reserved bits 15:13 and 7:5 set must not leak into the fields.
        assert_eq!(
            (IommuInfo(0xE0E0).unit_id(), IommuInfo(0xE0E0).msi_number()),
            (0, 0)
        );
        assert_eq!(
            (IommuInfo(0xFFFF).unit_id(), IommuInfo(0xFFFF).msi_number()),
            (0x1F, 0x1F)
        );
    }

    #[test]
    fn feature_reporting_fields() {
        // 0x80048F6E (type-10h IVHD of a Zen firmware table), bit by bit:
        // 31:30 = 10b HATS 2; 29:28 = 00b GATS 0; 27:23 = 00000b MSINumPPR 0;
        // 22:17 = 000010b PNBanks 2; 16:13 = 0100b PNCounters 4;
        // 12:8 = 01111b PASmax 15; 0x6E = 0110_1110b: HE 0, GA 1, IA 1,
        // GLX 01b, GT 1, NX 1, XT 0.
        let f = FeatureReporting(0x8004_8F6E);
        assert_eq!((f.hats(), f.gats(), f.msi_num_ppr()), (2, 0, 0));
        assert_eq!((f.pn_banks(), f.pn_counters(), f.pa_smax()), (2, 4, 15));
        assert!(!f.he_sup() && f.ga_sup() && f.ia_sup() && f.gt_sup() && f.nx_sup() && !f.xt_sup());
        assert_eq!(f.glx_sup(), 1);
        // QEMU writes GTSup | GASup (its HATS/GATS shifts fall off the 32-bit field).
        let q = FeatureReporting(0x44);
        assert!(q.gt_sup() && q.ga_sup() && !q.xt_sup());
        assert_eq!((q.hats(), q.gats(), q.glx_sup()), (0, 0, 0));
        // MSINumPPR alone: 0x15 << 23 = 0x0A80_0000; GATS 3: 0x3000_0000.
        assert_eq!(FeatureReporting(0x0A80_0000).msi_num_ppr(), 0x15);
        assert_eq!(FeatureReporting(0x0A80_0000).pn_banks(), 0);
        assert_eq!(FeatureReporting(0x3000_0000).gats(), 3);
        assert_eq!(FeatureReporting(0x3000_0000).hats(), 0);
    }

    #[test]
    fn iommu_attributes_fields() {
        // 0x0A84_8000 = 0x15 << 23 | 2 << 17 | 4 << 13.
        let a = IommuAttributes(0x0A84_8000);
        assert_eq!(
            (a.msi_num_ppr(), a.pn_banks(), a.pn_counters()),
            (0x15, 2, 4)
        );
        let all = IommuAttributes(u32::MAX);
        assert_eq!(
            (all.msi_num_ppr(), all.pn_banks(), all.pn_counters()),
            (0x1F, 0x3F, 0xF)
        );
    }

    #[test]
    fn dte_setting_fields() {
        // 0xD7 = 1101_0111b: Lint1 1, Lint0 1, SysMgt 01b, NMI 1, EInt 1, INIT 1.
        let d = DteSetting(0xD7);
        assert!(
            d.lint1_pass() && d.lint0_pass() && d.nmi_pass() && d.ext_int_pass() && d.init_pass()
        );
        assert_eq!(d.sys_mgt(), 1);
        // 0x20 = 0010_0000b: SysMgt 10b only.
        let d = DteSetting(0x20);
        assert_eq!(d.sys_mgt(), 2);
        assert!(!d.init_pass() && !d.lint0_pass() && !d.lint1_pass());
        // Bit 3 is reserved and must not show up anywhere.
        assert_eq!(DteSetting(0x08).sys_mgt(), 0);
        assert!(!DteSetting(0x08).nmi_pass());
    }

    #[test]
    fn extended_dte_setting() {
        assert!(ExtendedDteSetting(0x8000_0000).ats_disabled());
        assert!(!ExtendedDteSetting(0x7FFF_FFFF).ats_disabled());
    }

    #[test]
    fn flag_bytes() {
        // QEMU type 10h flags: HtTunEn | IotlbSup | PrefSup | PPRSup = 0xD1.
        let f = IvhdFlags::from_bits_retain(0xD1);
        assert_eq!(
            f,
            IvhdFlags::HT_TUN_EN | IvhdFlags::IOTLB_SUP | IvhdFlags::PREF_SUP | IvhdFlags::PPR_SUP
        );
        let m = IvmdFlags::from_bits_retain(0x07);
        assert_eq!(m, IvmdFlags::UNITY | IvmdFlags::READ | IvmdFlags::WRITE);
    }
}
