use super::*;

/// 2026-11-26 12:34:56 UTC, a Thursday.
const SAMPLE: u64 = 1_795_696_496;
const SECOND: Nanos = 1_000_000_000;

fn read(rtc: &mut Rtc, index: u8, now: Nanos) -> u8 {
    rtc.write(INDEX_PORT, 1, index.into(), now);
    rtc.read(DATA_PORT, 1, now) as u8
}

fn write(rtc: &mut Rtc, index: u8, v: u8, now: Nanos) {
    rtc.write(INDEX_PORT, 1, index.into(), now);
    rtc.write(DATA_PORT, 1, v.into(), now);
}

fn all_time_regs(rtc: &mut Rtc, now: Nanos) -> [u8; 8] {
    [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(|i| read(rtc, i, now))
}

#[test]
fn bcd_encoding_of_a_known_date() {
    let mut rtc = Rtc::new(SAMPLE, 0);
    // sec, min, hour, weekday (Thursday = 5), day, month, year, century.
    assert_eq!(
        all_time_regs(&mut rtc, 0),
        [0x56, 0x34, 0x12, 0x05, 0x26, 0x11, 0x26, 0x20]
    );
}

#[test]
fn binary_mode_and_12_hour_mode() {
    let mut rtc = Rtc::new(SAMPLE + 3600, 0); // 13:34:56
    write(&mut rtc, 0x0B, b::BINARY | b::HOURS_24, 0);
    assert_eq!(all_time_regs(&mut rtc, 0), [56, 34, 13, 5, 26, 11, 26, 20]);
    // 12-hour BCD: 1 PM is 0x81.
    write(&mut rtc, 0x0B, 0, 0);
    assert_eq!(read(&mut rtc, 0x04, 0), 0x81);
    // Midnight is 12 AM (0x12), noon 12 PM (0x92).
    let mut rtc = Rtc::new(SAMPLE - 12 * 3600 - 34 * 60 - 56, 0);
    write(&mut rtc, 0x0B, 0, 0);
    assert_eq!(read(&mut rtc, 0x04, 0), 0x12);
    assert_eq!(read(&mut rtc, 0x04, 12 * 3600 * SECOND), 0x92);
}

#[test]
fn time_advances_with_now() {
    let start = 5 * SECOND;
    let mut rtc = Rtc::new(SAMPLE, start);
    // 3 s later: 12:34:59; 4 s: 12:35:00; a day later the 27th, a Friday.
    assert_eq!(read(&mut rtc, 0x00, start + 3 * SECOND), 0x59);
    assert_eq!(read(&mut rtc, 0x00, start + 4 * SECOND), 0x00);
    assert_eq!(read(&mut rtc, 0x02, start + 4 * SECOND), 0x35);
    let tomorrow = start + 86_400 * SECOND;
    assert_eq!(read(&mut rtc, 0x07, tomorrow), 0x27);
    assert_eq!(read(&mut rtc, 0x06, tomorrow), 0x06);
}

#[test]
fn civil_dates_round_trip() {
    // 2000-02-29 23:59:59 was a Tuesday (3); 1999-12-31 a Friday (6).
    let leap = DateTime::from_unix(951_868_799);
    assert_eq!(
        (leap.year, leap.month, leap.day, leap.hour, leap.weekday),
        (2000, 2, 29, 23, 3)
    );
    assert_eq!(leap.to_unix(), Some(951_868_799));
    let eve = DateTime::from_unix(946_598_400);
    assert_eq!(
        (eve.year, eve.month, eve.day, eve.weekday),
        (1999, 12, 31, 6)
    );
    assert_eq!(DateTime::from_unix(0).weekday, 5);
    let mut bad = leap;
    bad.year = 2100; // not a leap year
    assert_eq!(bad.to_unix(), None);
}

#[test]
fn uip_never_set_and_fixed_registers() {
    let mut rtc = Rtc::new(SAMPLE, 0);
    for ms in 0..2000 {
        assert_eq!(read(&mut rtc, 0x0A, ms * 1_000_000) & 0x80, 0);
    }
    assert_eq!(read(&mut rtc, 0x0A, 0), 0x26);
    assert_eq!(read(&mut rtc, 0x0B, 0), 0x02);
    assert_eq!(read(&mut rtc, 0x0C, 0), 0x00);
    assert_eq!(read(&mut rtc, 0x0D, 0), 0x80);
    // UIP and VRT are read-only.
    write(&mut rtc, 0x0A, 0xA6, 0);
    write(&mut rtc, 0x0D, 0x00, 0);
    assert_eq!(read(&mut rtc, 0x0A, 0), 0x26);
    assert_eq!(read(&mut rtc, 0x0D, 0), 0x80);
}

#[test]
fn linux_style_set_time_with_set_bit() {
    let mut rtc = Rtc::new(SAMPLE, 0);
    // mc146818_set_time: SET on, write the fields (BCD), SET off.
    write(&mut rtc, 0x0B, 0x82, 0);
    for (i, v) in [
        (0x09, 0x30),
        (0x08, 0x01),
        (0x07, 0x02),
        (0x04, 0x03),
        (0x02, 0x04),
        (0x00, 0x05),
    ] {
        write(&mut rtc, i, v, SECOND);
    }
    // Frozen while SET is on.
    assert_eq!(read(&mut rtc, 0x00, 9 * SECOND), 0x05);
    write(&mut rtc, 0x0B, 0x02, 10 * SECOND);
    // 2030-01-02 03:04:05, then running again.
    assert_eq!(
        all_time_regs(&mut rtc, 12 * SECOND),
        [0x07, 0x04, 0x03, 0x04, 0x02, 0x01, 0x30, 0x20]
    );
}

#[test]
fn invalid_time_is_ignored() {
    let mut rtc = Rtc::new(SAMPLE, 0);
    write(&mut rtc, 0x08, 0x13, 0); // month 13
    write(&mut rtc, 0x00, 0xAB, 0); // not BCD
    assert_eq!(read(&mut rtc, 0x08, 0), 0x11);
    assert_eq!(read(&mut rtc, 0x00, 0), 0x56);
    // A single valid field write takes effect without SET.
    write(&mut rtc, 0x02, 0x00, 0);
    assert_eq!(read(&mut rtc, 0x02, 0), 0x00);
}

#[test]
fn cmos_ram_and_index_port() {
    let mut rtc = Rtc::new(SAMPLE, 0);
    write(&mut rtc, 0x0E, 0xA5, 0);
    write(&mut rtc, 0x7F, 0x5A, 0);
    assert_eq!(read(&mut rtc, 0x0E, 0), 0xA5);
    assert_eq!(read(&mut rtc, 0x7F, 0), 0x5A);
    assert_eq!(read(&mut rtc, 0x30, 0), 0);
    // Bit 7 of the index masks NMI and does not select a register.
    rtc.write(INDEX_PORT, 1, 0x80 | 0x0E, 0);
    assert!(rtc.nmi_masked());
    assert_eq!(rtc.read(DATA_PORT, 1, 0), 0xA5);
    assert_eq!(rtc.read(INDEX_PORT, 1, 0), 0xFF);
}
