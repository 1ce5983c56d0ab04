//! The Fixed ACPI Description Table (ACPI 6.5 §5.2.9), the Firmware ACPI Control Structure
//! (§5.2.10) and the Generic Address Structure (§5.2.3.2) they use.

use super::table::Table;
use super::GuestPlatform;
use core::mem::{offset_of, size_of};
use firmware::sdt::SdtHeader;

/// Generic Address Structure (ACPI 6.5 §5.2.3.2, Table 5.1).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenericAddress {
    /// Address space: 0 system memory, 1 system I/O.
    pub space_id: u8,
    /// Register width in bits.
    pub bit_width: u8,
    /// Bit offset of the register at `address`.
    pub bit_offset: u8,
    /// 0 undefined, 1 byte, 2 word, 3 dword, 4 qword access.
    pub access_size: u8,
    /// Address in the given space.
    pub address: u64,
}

const _: () = {
    assert!(size_of::<GenericAddress>() == 12);
    assert!(offset_of!(GenericAddress, access_size) == 3);
    assert!(offset_of!(GenericAddress, address) == 4);
};

/// Address space id of I/O ports (Table 5.1).
pub const SPACE_SYSTEM_IO: u8 = 1;
/// Access size codes (Table 5.1).
pub const ACCESS_BYTE: u8 = 1;
pub const ACCESS_WORD: u8 = 2;
pub const ACCESS_DWORD: u8 = 3;

impl GenericAddress {
    /// An I/O-port register `bytes` wide, accessed `access` at a time.
    pub const fn io(port: u16, bytes: u8, access: u8) -> Self {
        Self {
            space_id: SPACE_SYSTEM_IO,
            bit_width: bytes * 8,
            bit_offset: 0,
            access_size: access,
            address: port as u64,
        }
    }

    fn write(&self, t: &mut Table<'_>, at: usize) {
        t.u8(at + offset_of!(Self, space_id), self.space_id);
        t.u8(at + offset_of!(Self, bit_width), self.bit_width);
        t.u8(at + offset_of!(Self, bit_offset), self.bit_offset);
        t.u8(at + offset_of!(Self, access_size), self.access_size);
        t.u64(at + offset_of!(Self, address), self.address);
    }
}

/// The FADT, revision 6 (ACPI 6.5 §5.2.9, Table 5.9), 276 bytes.
#[repr(C, packed)]
pub struct Fadt {
    pub header: SdtHeader,
    /// 32-bit address of the FACS.
    pub firmware_ctrl: u32,
    /// 32-bit address of the DSDT.
    pub dsdt: u32,
    pub reserved0: u8,
    pub preferred_pm_profile: u8,
    /// GSI (no 8259 here) of the SCI.
    pub sci_int: u16,
    /// Port for the ACPI enable/disable SMI; 0 means the hardware is always in ACPI mode.
    pub smi_cmd: u32,
    pub acpi_enable: u8,
    pub acpi_disable: u8,
    pub s4bios_req: u8,
    pub pstate_cnt: u8,
    pub pm1a_evt_blk: u32,
    pub pm1b_evt_blk: u32,
    pub pm1a_cnt_blk: u32,
    pub pm1b_cnt_blk: u32,
    pub pm2_cnt_blk: u32,
    pub pm_tmr_blk: u32,
    pub gpe0_blk: u32,
    pub gpe1_blk: u32,
    pub pm1_evt_len: u8,
    pub pm1_cnt_len: u8,
    pub pm2_cnt_len: u8,
    pub pm_tmr_len: u8,
    pub gpe0_blk_len: u8,
    pub gpe1_blk_len: u8,
    pub gpe1_base: u8,
    pub cst_cnt: u8,
    /// Worst-case C2 latency in µs; > 100 means no C2.
    pub p_lvl2_lat: u16,
    /// Worst-case C3 latency in µs; > 1000 means no C3.
    pub p_lvl3_lat: u16,
    pub flush_size: u16,
    pub flush_stride: u16,
    pub duty_offset: u8,
    pub duty_width: u8,
    pub day_alrm: u8,
    pub mon_alrm: u8,
    pub century: u8,
    /// IA-PC boot architecture flags (Table 5.11).
    pub iapc_boot_arch: u16,
    pub reserved1: u8,
    /// Fixed feature flags (Table 5.10).
    pub flags: u32,
    pub reset_reg: GenericAddress,
    pub reset_value: u8,
    pub arm_boot_arch: u16,
    pub fadt_minor_version: u8,
    pub x_firmware_ctrl: u64,
    pub x_dsdt: u64,
    pub x_pm1a_evt_blk: GenericAddress,
    pub x_pm1b_evt_blk: GenericAddress,
    pub x_pm1a_cnt_blk: GenericAddress,
    pub x_pm1b_cnt_blk: GenericAddress,
    pub x_pm2_cnt_blk: GenericAddress,
    pub x_pm_tmr_blk: GenericAddress,
    pub x_gpe0_blk: GenericAddress,
    pub x_gpe1_blk: GenericAddress,
    pub sleep_control_reg: GenericAddress,
    pub sleep_status_reg: GenericAddress,
    pub hypervisor_vendor_identity: u64,
}

const _: () = {
    assert!(size_of::<Fadt>() == 276);
    assert!(offset_of!(Fadt, firmware_ctrl) == 36);
    assert!(offset_of!(Fadt, dsdt) == 40);
    assert!(offset_of!(Fadt, preferred_pm_profile) == 45);
    assert!(offset_of!(Fadt, sci_int) == 46);
    assert!(offset_of!(Fadt, smi_cmd) == 48);
    assert!(offset_of!(Fadt, pm1a_evt_blk) == 56);
    assert!(offset_of!(Fadt, pm1a_cnt_blk) == 64);
    assert!(offset_of!(Fadt, pm_tmr_blk) == 76);
    assert!(offset_of!(Fadt, gpe0_blk) == 80);
    assert!(offset_of!(Fadt, pm1_evt_len) == 88);
    assert!(offset_of!(Fadt, pm1_cnt_len) == 89);
    assert!(offset_of!(Fadt, pm_tmr_len) == 91);
    assert!(offset_of!(Fadt, p_lvl2_lat) == 96);
    assert!(offset_of!(Fadt, p_lvl3_lat) == 98);
    assert!(offset_of!(Fadt, century) == 108);
    assert!(offset_of!(Fadt, iapc_boot_arch) == 109);
    assert!(offset_of!(Fadt, flags) == 112);
    assert!(offset_of!(Fadt, reset_reg) == 116);
    assert!(offset_of!(Fadt, reset_value) == 128);
    assert!(offset_of!(Fadt, arm_boot_arch) == 129);
    assert!(offset_of!(Fadt, fadt_minor_version) == 131);
    assert!(offset_of!(Fadt, x_firmware_ctrl) == 132);
    assert!(offset_of!(Fadt, x_dsdt) == 140);
    assert!(offset_of!(Fadt, x_pm1a_evt_blk) == 148);
    assert!(offset_of!(Fadt, x_pm1a_cnt_blk) == 172);
    assert!(offset_of!(Fadt, x_pm_tmr_blk) == 208);
    assert!(offset_of!(Fadt, x_gpe0_blk) == 220);
    assert!(offset_of!(Fadt, sleep_control_reg) == 244);
    assert!(offset_of!(Fadt, sleep_status_reg) == 256);
    assert!(offset_of!(Fadt, hypervisor_vendor_identity) == 268);
};

/// FADT major revision of ACPI 6.5, and its minor version (§5.2.9, Table 5.9).
pub const FADT_REVISION: u8 = 6;
pub const FADT_MINOR_VERSION: u8 = 5;

/// Fixed feature flags (ACPI 6.5 Table 5.10).
pub mod flags {
    /// WBINVD works as specified: it flushes and invalidates all caches.
    pub const WBINVD: u32 = 1 << 0;
    /// C1 (HLT) works on all processors.
    pub const PROC_C1: u32 = 1 << 2;
    /// Set: no fixed-feature power button (we emulate no PWRBTN_STS event).
    pub const PWR_BUTTON: u32 = 1 << 4;
    /// Set: no fixed-feature sleep button.
    pub const SLP_BUTTON: u32 = 1 << 5;
    /// Set: no RTC wake status in the fixed registers.
    pub const FIX_RTC: u32 = 1 << 6;
    /// The PM timer is 32 bits wide (clear: 24 bits).
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    /// RESET_REG / RESET_VALUE describe a working reset register.
    pub const RESET_REG_SUP: u32 = 1 << 10;
    /// No monitor, keyboard or mouse can be detected.
    pub const HEADLESS: u32 = 1 << 12;
    /// The OS must use physical destination mode for APIC interrupts.
    pub const FORCE_APIC_PHYSICAL_DESTINATION_MODE: u32 = 1 << 19;
    /// Hardware-reduced ACPI: no fixed hardware, no PM1 blocks.
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;
}

/// IA-PC boot architecture flags (ACPI 6.5 Table 5.11).
pub mod boot_arch {
    /// There are ISA-style legacy devices (our 16550 at 0x3F8, PIT).
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    /// An 8042 keyboard controller exists.
    pub const I8042: u16 = 1 << 1;
    /// Do not probe for VGA.
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    /// MSIs must not be enabled.
    pub const MSI_NOT_SUPPORTED: u16 = 1 << 3;
    /// No CMOS RTC at the legacy ports 0x70/0x71.
    pub const CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
}

/// Flags of the guest FADT.
///
/// PWR_BUTTON/SLP_BUTTON/FIX_RTC are set because the PM1 block raises no button or RTC events.
/// FORCE_APIC_PHYSICAL_DESTINATION_MODE makes Linux use x2APIC physical mode (it checks this
/// bit in `x2apic_acpi_madt_oem_check`), so every destination the guest programs (ICR, IOAPIC
/// redirection, MSI) is a plain APIC id the hypervisor can map, never a cluster/logical id.
/// TMR_VAL_EXT is clear: a 24-bit PM timer is simpler to emulate and Linux handles the wrap.
pub const GUEST_FLAGS: u32 = flags::WBINVD
    | flags::PROC_C1
    | flags::PWR_BUTTON
    | flags::SLP_BUTTON
    | flags::FIX_RTC
    | flags::RESET_REG_SUP
    | flags::HEADLESS
    | flags::FORCE_APIC_PHYSICAL_DESTINATION_MODE;

/// The reset register: I/O port 0xCF9, the PIIX/ICH "Reset Control Register". Writing 0x06
/// (bit 1 SYS_RST: full reset rather than CPU-only; bit 2 RST_CPU: do it now) is a hard reset;
/// the hypervisor treats that write as the guest's reboot.
pub const RESET_PORT: u16 = 0xCF9;
pub const RESET_VALUE: u8 = 0x06;

/// PM1 event block: 2 bytes status + 2 bytes enable (§4.8.3.1).
const PM1_EVT_LEN: u8 = 4;
/// PM1 control block: one 16-bit register (§4.8.3.2).
const PM1_CNT_LEN: u8 = 2;
/// PM timer: one 32-bit register, of which 24 bits count (§4.8.3.3).
const PM_TMR_LEN: u8 = 4;

/// IA-PC boot flags for a guest. LEGACY_DEVICES: the 16550 and PIT sit at their ISA ports.
/// 8042 clear: there is no keyboard controller, and Linux then skips probing ports 0x60/0x64
/// (each probe would be an I/O exit). VGA_NOT_PRESENT: there is no VGA. CMOS_RTC_NOT_PRESENT
/// follows `platform.rtc`.
pub fn iapc_boot_arch(platform: &GuestPlatform<'_>) -> u16 {
    let rtc = if platform.rtc {
        0
    } else {
        boot_arch::CMOS_RTC_NOT_PRESENT
    };
    boot_arch::LEGACY_DEVICES | boot_arch::VGA_NOT_PRESENT | rtc
}

/// Writes the FADT pointing at the DSDT and FACS at the given guest-physical addresses.
/// No SMI_CMD: the platform is always in ACPI mode, so the PM1 control register must read with
/// SCI_EN (bit 0) set.
pub fn write_fadt(t: &mut Table<'_>, platform: &GuestPlatform<'_>, dsdt: u64, facs: u64) {
    t.sdt_header(*b"FACP", FADT_REVISION);
    // Both 32- and 64-bit pointers, equal: ACPICA accepts that, and old readers see them too.
    t.u32(offset_of!(Fadt, firmware_ctrl), facs as u32);
    t.u32(offset_of!(Fadt, dsdt), dsdt as u32);
    t.u64(offset_of!(Fadt, x_firmware_ctrl), facs);
    t.u64(offset_of!(Fadt, x_dsdt), dsdt);
    t.u16(offset_of!(Fadt, sci_int), u16::from(platform.sci_irq));
    t.u32(offset_of!(Fadt, pm1a_evt_blk), u32::from(platform.pm1a_evt));
    t.u32(offset_of!(Fadt, pm1a_cnt_blk), u32::from(platform.pm1a_cnt));
    t.u32(offset_of!(Fadt, pm_tmr_blk), u32::from(platform.pm_tmr));
    t.u8(offset_of!(Fadt, pm1_evt_len), PM1_EVT_LEN);
    t.u8(offset_of!(Fadt, pm1_cnt_len), PM1_CNT_LEN);
    t.u8(offset_of!(Fadt, pm_tmr_len), PM_TMR_LEN);
    t.u16(offset_of!(Fadt, p_lvl2_lat), 101);
    t.u16(offset_of!(Fadt, p_lvl3_lat), 1001);
    t.u16(offset_of!(Fadt, iapc_boot_arch), iapc_boot_arch(platform));
    t.u32(offset_of!(Fadt, flags), GUEST_FLAGS);
    GenericAddress::io(RESET_PORT, 1, ACCESS_BYTE).write(t, offset_of!(Fadt, reset_reg));
    t.u8(offset_of!(Fadt, reset_value), RESET_VALUE);
    t.u8(offset_of!(Fadt, fadt_minor_version), FADT_MINOR_VERSION);
    GenericAddress::io(platform.pm1a_evt, PM1_EVT_LEN, ACCESS_WORD)
        .write(t, offset_of!(Fadt, x_pm1a_evt_blk));
    GenericAddress::io(platform.pm1a_cnt, PM1_CNT_LEN, ACCESS_WORD)
        .write(t, offset_of!(Fadt, x_pm1a_cnt_blk));
    GenericAddress::io(platform.pm_tmr, PM_TMR_LEN, ACCESS_DWORD)
        .write(t, offset_of!(Fadt, x_pm_tmr_blk));
    t.u64(
        offset_of!(Fadt, hypervisor_vendor_identity),
        u64::from_le_bytes(*b"DIDVISOR"),
    );
}

/// The Firmware ACPI Control Structure (ACPI 6.5 §5.2.10, Table 5.14), 64 bytes, 64-byte
/// aligned. It has no checksum. The guest needs it for the global lock; there is no S3/S4, so
/// the waking vectors stay 0.
#[repr(C, packed)]
pub struct Facs {
    /// "FACS".
    pub signature: [u8; 4],
    /// 64.
    pub length: u32,
    pub hardware_signature: u32,
    pub firmware_waking_vector: u32,
    pub global_lock: u32,
    pub flags: u32,
    pub x_firmware_waking_vector: u64,
    /// 2 for this layout.
    pub version: u8,
    pub reserved0: [u8; 3],
    pub ospm_flags: u32,
    pub reserved1: [u8; 24],
}

const _: () = {
    assert!(size_of::<Facs>() == 64);
    assert!(offset_of!(Facs, length) == 4);
    assert!(offset_of!(Facs, global_lock) == 16);
    assert!(offset_of!(Facs, x_firmware_waking_vector) == 24);
    assert!(offset_of!(Facs, version) == 32);
    assert!(offset_of!(Facs, ospm_flags) == 36);
};

/// FACS alignment (§5.2.10).
pub const FACS_ALIGN: usize = 64;
pub const FACS_VERSION: u8 = 2;

pub fn write_facs(t: &mut Table<'_>) {
    t.bytes(offset_of!(Facs, signature), b"FACS");
    t.u32(offset_of!(Facs, length), size_of::<Facs>() as u32);
    t.u8(offset_of!(Facs, version), FACS_VERSION);
}
