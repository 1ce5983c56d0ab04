//! Motorola MC146818 real-time clock and CMOS RAM (MC146818A datasheet, "Address Map" and "Control
//! Registers") behind the PC/AT index/data ports 0x70/0x71.
//!
//! The clock is a wall-clock time given at construction plus the time elapsed since; the update
//! cycle is instantaneous, so register A's UIP bit never reads 1 and Linux's wait for !UIP
//! (`mc146818_avoid_UIP`) ends at once. Time and date registers follow register B's DM (binary/BCD)
//! and 24/12 bits. Register 0x32 is the century (IBM AT convention, what the FADT CENTURY field
//! should name). Guests may set the clock (with SET or without); a time that is not a valid date is
//! ignored and the clock keeps running.
//!
//! No interrupts: periodic, alarm and update-ended interrupts (IRQ 8) are not generated and register
//! C's flags never set. The alarm registers are plain storage. Registers 0x0E-0x7F other than the
//! century are plain CMOS RAM (the BIOS memory-size bytes stay 0: Linux takes memory from e820).

use super::{read_bytes, write_bytes, Nanos, PortIo};

pub const INDEX_PORT: u16 = 0x70;
pub const DATA_PORT: u16 = 0x71;

/// Register indexes (MC146818A address map; 0x32 by PC/AT convention).
mod reg {
    pub const SECONDS: u8 = 0x00;
    pub const MINUTES: u8 = 0x02;
    pub const HOURS: u8 = 0x04;
    pub const WEEKDAY: u8 = 0x06;
    pub const DAY: u8 = 0x07;
    pub const MONTH: u8 = 0x08;
    pub const YEAR: u8 = 0x09;
    pub const A: u8 = 0x0A;
    pub const B: u8 = 0x0B;
    pub const C: u8 = 0x0C;
    pub const D: u8 = 0x0D;
    pub const CENTURY: u8 = 0x32;
}

/// Index port bit 7 masks NMI on the PC; bits 6:0 select the register.
const NMI_MASK: u8 = 1 << 7;
/// Register A: 32.768 kHz time base (DV = 010), 1024 Hz rate select (RS = 0110); UIP (bit 7) is 0.
const REG_A_DEFAULT: u8 = 0x26;
const REG_A_WRITABLE: u8 = 0x7F;

/// Register B bits.
mod b {
    pub const SET: u8 = 1 << 7;
    /// Data mode: 1 = binary, 0 = BCD.
    pub const BINARY: u8 = 1 << 2;
    pub const HOURS_24: u8 = 1 << 1;
}
/// 24-hour BCD, as PC firmware leaves it.
const REG_B_DEFAULT: u8 = b::HOURS_24;
/// Register D: VRT (valid RAM and time), read-only.
const REG_D_VRT: u8 = 0x80;
/// In 12-hour mode bit 7 of the hours register means PM.
const HOURS_PM: u8 = 0x80;

/// A broken-down UTC time; fields hold whatever the guest wrote until validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// 1 = Sunday .. 7 = Saturday.
    pub weekday: u8,
}

impl DateTime {
    /// Civil date from days since 1970-01-01 (the proleptic Gregorian algorithm of H. Hinnant's
    /// "chrono-compatible low-level date algorithms").
    pub fn from_unix(secs: u64) -> DateTime {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year: year.clamp(0, 9999) as u16,
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            // 1970-01-01 was a Thursday (weekday 5).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
        }
    }

    /// Seconds since 1970-01-01, if this is a valid time at or after then.
    pub fn to_unix(&self) -> Option<u64> {
        let valid = (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid || self.year < 1970 {
            return None;
        }
        let m = i64::from(self.month);
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        u64::try_from(secs).ok()
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

const fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// A BCD byte's value; invalid digits give 0xFF, which no field accepts.
const fn from_bcd(v: u8) -> u8 {
    let (hi, lo) = (v >> 4, v & 0xF);
    if hi > 9 || lo > 9 {
        0xFF
    } else {
        hi * 10 + lo
    }
}

fn two_digits(v: u8) -> Option<u16> {
    (v < 100).then_some(u16::from(v))
}

pub struct Rtc {
    index: u8,
    nmi_masked: bool,
    ram: [u8; 128],
    /// The wall clock read `base_secs` at time `base_now`.
    base_secs: u64,
    base_now: Nanos,
    /// While register B's SET bit is 1 the clock registers are frozen here and take writes.
    frozen: Option<DateTime>,
}

impl Rtc {
    /// A clock reading `unix_secs` (seconds since 1970-01-01 UTC) at time `now`.
    pub fn new(unix_secs: u64, now: Nanos) -> Self {
        let mut ram = [0; 128];
        ram[usize::from(reg::A)] = REG_A_DEFAULT;
        ram[usize::from(reg::B)] = REG_B_DEFAULT;
        Rtc {
            index: 0,
            nmi_masked: false,
            ram,
            base_secs: unix_secs,
            base_now: now,
            frozen: None,
        }
    }

    /// Whether the guest last set the NMI mask bit of the index port.
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    /// The time the clock shows at `now`.
    pub fn now(&self, now: Nanos) -> DateTime {
        self.frozen.unwrap_or_else(|| {
            let elapsed = now.saturating_sub(self.base_now) / 1_000_000_000;
            DateTime::from_unix(self.base_secs.saturating_add(elapsed))
        })
    }

    fn reg_b(&self) -> u8 {
        self.ram[usize::from(reg::B)]
    }

    fn encode(&self, v: u8) -> u8 {
        if self.reg_b() & b::BINARY != 0 {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.reg_b() & b::BINARY != 0 {
            v
        } else {
            from_bcd(v)
        }
    }

    fn encode_hours(&self, h: u8) -> u8 {
        if self.reg_b() & b::HOURS_24 != 0 {
            return self.encode(h);
        }
        let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
        self.encode(h12) | if h >= 12 { HOURS_PM } else { 0 }
    }

    fn decode_hours(&self, v: u8) -> u8 {
        if self.reg_b() & b::HOURS_24 != 0 {
            return self.decode(v);
        }
        let h12 = self.decode(v & !HOURS_PM);
        if h12 == 0 || h12 > 12 {
            return 0xFF;
        }
        h12 % 12 + if v & HOURS_PM != 0 { 12 } else { 0 }
    }

    fn read_register(&mut self, now: Nanos) -> u8 {
        let t = self.now(now);
        match self.index {
            reg::SECONDS => self.encode(t.second),
            reg::MINUTES => self.encode(t.minute),
            reg::HOURS => self.encode_hours(t.hour),
            reg::WEEKDAY => self.encode(t.weekday),
            reg::DAY => self.encode(t.day),
            reg::MONTH => self.encode(t.month),
            reg::YEAR => self.encode((t.year % 100) as u8),
            reg::CENTURY => self.encode((t.year / 100) as u8),
            // Flags never set; reading clears them.
            reg::C => 0,
            reg::D => REG_D_VRT,
            i => self.ram[usize::from(i)],
        }
    }

    fn write_register(&mut self, v: u8, now: Nanos) {
        let mut t = self.now(now);
        match self.index {
            reg::SECONDS => t.second = self.decode(v),
            reg::MINUTES => t.minute = self.decode(v),
            reg::HOURS => t.hour = self.decode_hours(v),
            reg::WEEKDAY => t.weekday = self.decode(v),
            reg::DAY => t.day = self.decode(v),
            reg::MONTH => t.month = self.decode(v),
            // An undecodable year or century makes the year 0, which no clock setting accepts.
            reg::YEAR => t.year = two_digits(self.decode(v)).map_or(0, |y| t.year / 100 * 100 + y),
            reg::CENTURY => {
                t.year = two_digits(self.decode(v)).map_or(0, |c| c * 100 + t.year % 100)
            }
            reg::A => {
                let a = &mut self.ram[usize::from(reg::A)];
                *a = v & REG_A_WRITABLE;
                return;
            }
            reg::B => return self.write_b(v, now),
            reg::C | reg::D => return,
            i => {
                self.ram[usize::from(i)] = v;
                return;
            }
        }
        if self.frozen.is_some() {
            self.frozen = Some(t);
        } else {
            self.set_clock(&t, now);
        }
    }

    fn write_b(&mut self, v: u8, now: Nanos) {
        let was_set = self.reg_b() & b::SET != 0;
        let set = v & b::SET != 0;
        if set && !was_set {
            self.frozen = Some(self.now(now));
        }
        self.ram[usize::from(reg::B)] = v;
        if !set && was_set {
            if let Some(t) = self.frozen.take() {
                self.set_clock(&t, now);
            }
        }
    }

    fn set_clock(&mut self, t: &DateTime, now: Nanos) {
        if let Some(secs) = t.to_unix() {
            self.base_secs = secs;
            self.base_now = now;
        }
    }

    fn read_byte(&mut self, port: u16, now: Nanos) -> u8 {
        match port {
            DATA_PORT => self.read_register(now),
            // The index register is write-only on the PC/AT.
            _ => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, v: u8, now: Nanos) {
        match port {
            INDEX_PORT => {
                self.nmi_masked = v & NMI_MASK != 0;
                self.index = v & !NMI_MASK;
            }
            DATA_PORT => self.write_register(v, now),
            _ => {}
        }
    }
}

impl PortIo for Rtc {
    fn read(&mut self, port: u16, size: u8, now: Nanos) -> u32 {
        read_bytes(port, size, |p| self.read_byte(p, now))
    }

    fn write(&mut self, port: u16, size: u8, value: u32, now: Nanos) {
        write_bytes(port, size, value, |p, v| self.write_byte(p, v, now));
    }
}

#[cfg(test)]
#[path = "rtc_tests.rs"]
mod tests;
