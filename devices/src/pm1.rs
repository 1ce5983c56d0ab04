//! ACPI PM1a event and control blocks (ACPI 6.5 §4.8.3.1 PM1 event grouping, §4.8.3.2 PM1 control
//! grouping; bit layouts in Tables 4.16-4.19): PM1_STS (write 1 to clear) and PM1_EN at
//! PM1a_EVT_BLK, PM1_CNT at PM1a_CNT_BLK. This is how a guest powers itself off: it writes its
//! `\_S5` SLP_TYP together with SLP_EN.
//!
//! There is no SMI_CMD port (the FADT's SMI_CMD is 0): the platform is always in ACPI mode, so
//! SCI_EN reads as 1. No event sets a status bit by itself; the hypervisor may raise one (e.g. a
//! power-button press) with [`Pm1::raise`] and deliver the SCI when [`Pm1::sci_level`] says so.

use super::{read_bytes, write_bytes, Nanos, PortIo};

/// PM1a_EVT_BLK (PM1_EVT_LEN = 4: PM1_STS then PM1_EN, 2 bytes each).
pub const PM1A_EVT_PORT: u16 = 0x600;
pub const PM1_EVT_LEN: u16 = 4;
/// PM1a_CNT_BLK (PM1_CNT_LEN = 2).
pub const PM1A_CNT_PORT: u16 = 0x604;
pub const PM1_CNT_LEN: u16 = 2;
/// SLP_TYP of S5 (soft off): the DSDT's `\_S5` package must give this value.
pub const S5_SLP_TYP: u8 = 5;

/// PM1_STS and PM1_EN bits (ACPI 6.5 Tables 4.16, 4.17); both registers share the positions.
pub mod event {
    pub const TIMER: u16 = 1 << 0;
    pub const BUS_MASTER: u16 = 1 << 4;
    pub const GLOBAL: u16 = 1 << 5;
    pub const POWER_BUTTON: u16 = 1 << 8;
    pub const SLEEP_BUTTON: u16 = 1 << 9;
    pub const RTC: u16 = 1 << 10;
    pub const PCIEXP_WAKE: u16 = 1 << 14;
    pub const WAKE: u16 = 1 << 15;
    /// Status bits that exist; the rest read 0.
    pub const STATUS_BITS: u16 =
        TIMER | BUS_MASTER | GLOBAL | POWER_BUTTON | SLEEP_BUTTON | RTC | PCIEXP_WAKE | WAKE;
    /// Enable bits that exist (bit 14 is PCIEXP_WAKE_DIS).
    pub const ENABLE_BITS: u16 = TIMER | GLOBAL | POWER_BUTTON | SLEEP_BUTTON | RTC | PCIEXP_WAKE;
}

/// PM1_CNT bits (ACPI 6.5 Table 4.18).
mod control {
    pub const SCI_EN: u16 = 1 << 0;
    pub const BM_RLD: u16 = 1 << 1;
    /// GBL_RLS is write-only and there is no firmware to notify: ignored.
    pub const SLP_TYP_SHIFT: u16 = 10;
    pub const SLP_TYP: u16 = 7 << SLP_TYP_SHIFT;
    /// Write-only: reads 0.
    pub const SLP_EN: u16 = 1 << 13;
    pub const STORED: u16 = BM_RLD | SLP_TYP;
}

/// What a write of SLP_EN asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SleepRequest {
    /// SLP_TYP = [`S5_SLP_TYP`].
    PowerOff,
    /// Any other sleep type; we implement none.
    Other(u8),
}

#[derive(Default)]
pub struct Pm1 {
    status: u16,
    enable: u16,
    control: u16,
    request: Option<SleepRequest>,
}

impl Pm1 {
    pub const fn new() -> Self {
        Pm1 {
            status: 0,
            enable: 0,
            control: 0,
            request: None,
        }
    }

    /// The sleep request of the last SLP_EN write, once.
    pub fn take_sleep_request(&mut self) -> Option<SleepRequest> {
        self.request.take()
    }

    /// Sets PM1_STS bits (from [`event`]) as the hardware event would.
    pub fn raise(&mut self, status: u16) {
        self.status |= status & event::STATUS_BITS;
    }

    /// The SCI is asserted while an enabled status bit is set (SCI_EN is always 1).
    pub fn sci_level(&self) -> bool {
        self.status & self.enable & event::ENABLE_BITS & !event::PCIEXP_WAKE != 0
    }

    fn read16(&self, reg: u16) -> u16 {
        match reg {
            0 => self.status,
            2 => self.enable,
            // SLP_EN and GBL_RLS read as 0.
            4 => self.control | control::SCI_EN,
            _ => 0xFFFF,
        }
    }

    fn write16(&mut self, reg: u16, value: u16, mask: u16) {
        match reg {
            0 => self.status &= !(value & mask),
            2 => self.enable = (self.enable & !mask) | (value & mask & event::ENABLE_BITS),
            4 => {
                let stored = control::STORED & mask;
                self.control = (self.control & !stored) | (value & stored);
                if value & mask & control::SLP_EN != 0 {
                    let typ = ((self.control & control::SLP_TYP) >> control::SLP_TYP_SHIFT) as u8;
                    self.request = Some(if typ == S5_SLP_TYP {
                        SleepRequest::PowerOff
                    } else {
                        SleepRequest::Other(typ)
                    });
                }
            }
            _ => {}
        }
    }
}

impl PortIo for Pm1 {
    fn read(&mut self, port: u16, size: u8, _now: Nanos) -> u32 {
        read_bytes(port, size, |p| {
            let off = p.wrapping_sub(PM1A_EVT_PORT);
            (self.read16(off & !1) >> (8 * (off & 1))) as u8
        })
    }

    /// Byte-wise, so a 16-bit write of PM1_CNT takes SLP_TYP and SLP_EN from its high byte together.
    fn write(&mut self, port: u16, size: u8, value: u32, _now: Nanos) {
        write_bytes(port, size, value, |p, b| {
            let off = p.wrapping_sub(PM1A_EVT_PORT);
            let shift = 8 * (off & 1);
            self.write16(off & !1, u16::from(b) << shift, 0xFF << shift);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STS: u16 = PM1A_EVT_PORT;
    const EN: u16 = PM1A_EVT_PORT + 2;
    const CNT: u16 = PM1A_CNT_PORT;

    #[test]
    fn s5_write_is_power_off() {
        let mut pm = Pm1::new();
        // Linux's acpi_hw_legacy_sleep: SLP_TYP first, then SLP_TYP | SLP_EN.
        pm.write(CNT, 2, 5 << 10, 0);
        assert_eq!(pm.take_sleep_request(), None);
        assert_eq!(pm.read(CNT, 2, 0), (5 << 10) | 1);
        pm.write(CNT, 2, (5 << 10) | (1 << 13), 0);
        assert_eq!(pm.take_sleep_request(), Some(SleepRequest::PowerOff));
        assert_eq!(pm.take_sleep_request(), None);
        // SLP_EN is write-only.
        assert_eq!(pm.read(CNT, 2, 0) & (1 << 13), 0);
    }

    #[test]
    fn other_sleep_types_and_byte_writes() {
        let mut pm = Pm1::new();
        // High byte alone: SLP_TYP = 3 (bits 12:10 = byte bits 4:2), SLP_EN = byte bit 5.
        pm.write(CNT + 1, 1, 0x2C, 0);
        assert_eq!(pm.take_sleep_request(), Some(SleepRequest::Other(3)));
    }

    #[test]
    fn sci_en_always_reads_one() {
        let mut pm = Pm1::new();
        assert_eq!(pm.read(CNT, 2, 0), 1);
        pm.write(CNT, 2, 0, 0);
        assert_eq!(pm.read(CNT, 2, 0) & 1, 1);
    }

    #[test]
    fn status_is_write_one_to_clear() {
        let mut pm = Pm1::new();
        pm.raise(event::POWER_BUTTON | event::TIMER);
        assert_eq!(pm.read(STS, 2, 0), 0x0101);
        pm.write(STS, 2, 0x0001, 0);
        assert_eq!(pm.read(STS, 2, 0), 0x0100);
        // Writing 0 clears nothing; a 32-bit write at the block start also reaches PM1_EN.
        pm.write(STS, 4, 0x0100_0000, 0);
        assert_eq!(pm.read(STS, 4, 0), 0x0100_0100);
    }

    #[test]
    fn sci_follows_enabled_status() {
        let mut pm = Pm1::new();
        pm.raise(event::POWER_BUTTON);
        assert!(!pm.sci_level());
        pm.write(EN, 2, event::POWER_BUTTON.into(), 0);
        assert!(pm.sci_level());
        pm.write(STS, 2, event::POWER_BUTTON.into(), 0);
        assert!(!pm.sci_level());
        // Undefined enable bits are not stored.
        pm.write(EN, 2, 0xFFFF, 0);
        assert_eq!(pm.read(EN, 2, 0), u32::from(event::ENABLE_BITS));
    }
}
