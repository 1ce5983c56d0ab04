use super::super::pci::DevFn;
use super::super::pci_host::ConfigRegisters;
use super::*;

/// 2026-11-26 12:34:56 UTC.
const WALL: u64 = 1_795_696_496;

type Platform = LegacyPlatform<256>;

fn platform() -> Platform {
    LegacyPlatform::new(WALL, 0)
}

fn level(l: bool) -> PortEffect {
    PortEffect::Irq(IrqChange::Level {
        isa_irq: 4,
        level: l,
    })
}

#[test]
fn unknown_ports_read_ones_and_are_counted() {
    let mut p = platform();
    for _ in 0..120 {
        assert_eq!(p.port_write(0x80, 1, 0, 0), PortEffect::None);
    }
    assert_eq!(p.port_read(0x60, 1, 0), (0xFF, PortEffect::None));
    assert_eq!(p.port_read(0x1F0, 2, 0).0, 0xFFFF);
    assert_eq!(p.port_read(0x1F0, 4, 0).0, 0xFFFF_FFFF);
    // Byte accesses to 0xCF8-0xCFB other than 0xCF9 are not PCI.
    p.port_write(0xCFB, 1, 1, 0);
    // A size I/O cannot have.
    assert_eq!(p.port_read(0x3F8, 3, 0).0, u32::MAX);
    let seen: Vec<_> = p
        .unknown_ports()
        .iter()
        .map(|u| (u.port, u.reads, u.writes))
        .collect();
    assert_eq!(
        seen,
        [
            (0x80, 0, 120),
            (0x60, 1, 0),
            (0x1F0, 2, 0),
            (0xCFB, 0, 1),
            (0x3F8, 1, 0)
        ]
    );
}

#[test]
fn power_off_sleep_and_reset() {
    let mut p = platform();
    assert_eq!(p.port_write(0x604, 2, 5 << 10, 0), PortEffect::None);
    assert_eq!(
        p.port_write(0x604, 2, (5 << 10) | (1 << 13), 0),
        PortEffect::PowerOff
    );
    assert_eq!(
        p.port_write(0x604, 2, (1 << 10) | (1 << 13), 0),
        PortEffect::Sleep(1)
    );
    assert_eq!(p.port_write(0xCF9, 1, 0x02, 0), PortEffect::None);
    assert_eq!(p.port_write(0xCF9, 1, 0x06, 0), PortEffect::Reset);
    assert_eq!(p.port_read(0x64, 1, 0), (0, PortEffect::None));
    assert_eq!(p.port_write(0x64, 1, 0xFE, 0), PortEffect::Reset);
}

#[test]
fn reset_puts_the_devices_back_as_built() {
    let mut p = platform();
    p.port_write(0x43, 1, 0x34, 0);
    p.port_write(0x40, 1, 0xA5, 0);
    p.port_write(0x40, 1, 0x12, 0);
    p.port_write(0x3F9, 1, 0x02, 0);
    p.port_write(0x3F8, 1, b'x'.into(), 0);
    p.port_write(0x80, 1, 0, 0);
    assert!(p.next_timer_deadline().is_some());
    p.reset(WALL, 10);
    assert_eq!(p.next_timer_deadline(), None);
    assert_eq!(
        p.port_read(0x3F9, 1, 0).0,
        0,
        "UART interrupt enables cleared"
    );
    assert_eq!(p.take_console_output(&mut [0; 8]), 0);
    assert_eq!(p.port_read(0xCF9, 1, 0).0, 0);
    // What the guest did before the reset is still reported at its end.
    assert_eq!(p.unknown_ports().iter().count(), 1);
}

#[test]
fn uart_interrupt_changes_are_reported_once() {
    let mut p = platform();
    assert_eq!(p.port_write(0x3F9, 1, 0x02, 0), PortEffect::None); // THRI, but OUT2 off
    assert_eq!(p.port_write(0x3FC, 1, 0x0B, 0), level(true));
    assert_eq!(p.port_write(0x3FF, 1, 0x55, 0), PortEffect::None);
    assert_eq!(p.port_read(0x3FA, 1, 0), (0x02, level(false)));
    assert_eq!(p.port_write(0x3F8, 1, u32::from(b'!'), 0), level(true));
    let mut out = [0; 4];
    assert_eq!(p.take_console_output(&mut out), 1);
    assert_eq!(out[0], b'!');
}

#[test]
fn console_input_raises_irq4_and_backs_off_when_full() {
    let mut p = platform();
    p.port_write(0x3F9, 1, 0x01, 0); // receive interrupt
    p.port_write(0x3FC, 1, 0x08, 0); // OUT2
    assert_eq!(p.push_console_input(b'a'), Ok(level(true)));
    // Without FIFOs the holding register takes one byte.
    assert_eq!(p.push_console_input(b'b'), Err(InputRejected));
    assert_eq!(p.port_read(0x3F8, 1, 0), (u32::from(b'a'), level(false)));
    assert_eq!(p.push_console_input(b'b'), Ok(level(true)));
}

#[test]
fn pit_programming_and_irq0_ticks() {
    let mut p = platform();
    assert_eq!(p.next_timer_deadline(), None);
    assert_eq!(
        p.port_write(0x43, 1, 0x34, 0),
        PortEffect::TimerReprogrammed
    );
    p.port_write(0x40, 1, 0xA5, 0);
    assert_eq!(
        p.port_write(0x40, 1, 0x12, 0),
        PortEffect::TimerReprogrammed
    );
    // Channel 2 and port B do not concern IRQ 0.
    assert_eq!(p.port_write(0x43, 1, 0xB0, 0), PortEffect::None);
    assert_eq!(p.port_write(0x61, 1, 0x01, 0), PortEffect::None);
    assert_eq!(p.next_timer_deadline(), Some(4_001_068));
    assert_eq!(p.tick(4_000_000), None);
    assert_eq!(
        p.tick(8_001_297),
        Some(IrqChange::Edges {
            isa_irq: 0,
            count: 2
        })
    );
}

#[test]
fn accesses_spanning_devices_split_into_bytes() {
    let mut p = platform();
    p.port_write(0x3FF, 1, 0x5A, 0); // UART scratch
    assert_eq!(p.port_read(0x3FF, 2, 0).0, 0xFF5A);
    // PM1_CNT (SCI_EN reads 1) and the two unused bytes after it.
    assert_eq!(p.port_read(0x604, 4, 0).0, 0xFFFF_0001);
    // A dword write at 0xCF9's neighbour 0xCF8 is CONFIG_ADDRESS, not a reset.
    assert_eq!(p.port_write(0xCF8, 4, 0x0000_0600, 0), PortEffect::None);
    assert_eq!(p.port_read(0xCF8, 4, 0).0, 0x0000_0600);
    let unknown: Vec<_> = p.unknown_ports().iter().map(|u| u.port).collect();
    assert_eq!(unknown, [0x400, 0x606, 0x607]);
}

#[test]
fn timers_rtc_pic_and_pci_through_the_dispatch() {
    let mut p = platform();
    // PM timer: 3579545 ticks after one second.
    assert_eq!(p.port_read(0x608, 4, 1_000_000_000).0, 3_579_545);
    // RTC seconds in BCD.
    p.port_write(0x70, 1, 0x00, 0);
    assert_eq!(p.port_read(0x71, 1, 0).0, 0x56);
    // PIC probe.
    p.port_write(0xA1, 1, 0xFF, 0);
    p.port_write(0x21, 1, 0xFB, 0);
    assert_eq!(p.port_read(0x21, 1, 0).0, 0xFB);
    // Host bridge vendor/device.
    p.port_write(0xCF8, 4, 0x8000_0000, 0);
    assert_eq!(p.port_read(0xCFC, 4, 0).0, 0x0008_1b36);
}

#[test]
fn pci_devices_added_by_the_hypervisor() {
    let mut p: LegacyPlatform<16, ConfigRegisters> = LegacyPlatform::new(WALL, 0);
    let mut vf = ConfigRegisters::new();
    vf.define(0, 0x0010_1b36, 0, 0); // the QEMU NVMe VF's ids
    let slot = DevFn::new(2, 0).unwrap();
    p.pci_bus_mut().add(slot, vf).unwrap();
    p.port_write(0xCF8, 4, 0x8000_1000, 0);
    assert_eq!(p.port_read(0xCFC, 4, 0).0, 0x0010_1b36);
    p.port_write(0xCF8, 4, 0x8000_1800, 0);
    assert_eq!(p.port_read(0xCFC, 4, 0).0, 0xFFFF_FFFF);
}
