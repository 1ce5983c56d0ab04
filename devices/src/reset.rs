//! The PC reset control register at port 0xCF9 (Intel ICH/PCH "Reset Control Register", RST_CNT;
//! AMD FCH has the same at 0xCF9): bit 1 SYS_RST picks a hard reset, bit 2 RST_CPU starts the reset,
//! bit 3 FULL_RST a power cycle. Linux writes 0x02 and then 0x06; the FADT's RESET_REG may point
//! here with RESET_VALUE 0x06. Any write with RST_CPU set is a reset request; the other bits are
//! kept and read back.
//!
//! The keyboard controller's command port 64h is here too, for its one command a guest without
//! a keyboard uses: FEh pulses the CPU reset line (Linux `reboot=k`, and its fall-back when the
//! ACPI reset does not take). Its status reads 0 (both buffers empty), so a guest waiting for the
//! input buffer to drain before the command does not wait; other commands are dropped.

use super::{read_bytes, write_bytes, Nanos, PortIo};

pub const RESET_PORT: u16 = 0xCF9;
/// The 8042 keyboard controller's status/command port, and its pulse-reset command.
pub const KBC_PORT: u16 = 0x64;
pub const KBC_PULSE_RESET: u8 = 0xFE;
/// The value for the FADT's RESET_VALUE.
pub const RESET_VALUE: u8 = 0x06;
const RST_CPU: u8 = 1 << 2;
/// SYS_RST (bit 1) and FULL_RST (bit 3) are stored; RST_CPU reads back 0 as it self-clears.
const STORED: u8 = 0x0A;

#[derive(Default)]
pub struct ResetControl {
    value: u8,
    requested: bool,
}

impl ResetControl {
    pub const fn new() -> Self {
        ResetControl {
            value: 0,
            requested: false,
        }
    }

    /// Whether a reset was requested since the last call.
    pub fn take_reset_request(&mut self) -> bool {
        core::mem::take(&mut self.requested)
    }
}

impl PortIo for ResetControl {
    fn read(&mut self, port: u16, size: u8, _now: Nanos) -> u32 {
        read_bytes(port, size, |p| match p {
            RESET_PORT => self.value,
            KBC_PORT => 0,
            _ => 0xFF,
        })
    }

    fn write(&mut self, port: u16, size: u8, value: u32, _now: Nanos) {
        write_bytes(port, size, value, |p, b| {
            if p == RESET_PORT {
                self.value = b & STORED;
                self.requested |= b & RST_CPU != 0;
            } else if p == KBC_PORT {
                self.requested |= b == KBC_PULSE_RESET;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_reboot_sequence() {
        let mut r = ResetControl::new();
        // reboot.c: cf9 = inb(0xcf9) & ~6; outb(cf9 | 2); udelay(50); outb(cf9 | 6).
        let cf9 = r.read(RESET_PORT, 1, 0) & !6;
        r.write(RESET_PORT, 1, cf9 | 2, 0);
        assert!(!r.take_reset_request());
        assert_eq!(r.read(RESET_PORT, 1, 0), 0x02);
        r.write(RESET_PORT, 1, cf9 | 6, 0);
        assert!(r.take_reset_request());
        assert!(!r.take_reset_request());
    }

    #[test]
    fn keyboard_controller_pulse_reset() {
        let mut r = ResetControl::new();
        // reboot.c kb_wait(): status bit 1 (input buffer full) must read clear.
        assert_eq!(r.read(KBC_PORT, 1, 0) & 2, 0);
        r.write(KBC_PORT, 1, 0xAD, 0);
        assert!(!r.take_reset_request());
        r.write(KBC_PORT, 1, u32::from(KBC_PULSE_RESET), 0);
        assert!(r.take_reset_request());
    }

    #[test]
    fn full_reset_value_and_plain_values() {
        let mut r = ResetControl::new();
        r.write(RESET_PORT, 1, 0x0E, 0);
        assert!(r.take_reset_request());
        r.write(RESET_PORT, 1, 0x08, 0);
        assert!(!r.take_reset_request());
        assert_eq!(r.read(RESET_PORT, 1, 0), 0x08);
    }
}
