use super::*;

const RBR: u16 = COM1_BASE;
const THR: u16 = COM1_BASE;
const IER: u16 = COM1_BASE + 1;
const IIR: u16 = COM1_BASE + 2;
const FCR: u16 = COM1_BASE + 2;
const LCR: u16 = COM1_BASE + 3;
const MCR: u16 = COM1_BASE + 4;
const LSR: u16 = COM1_BASE + 5;
const MSR: u16 = COM1_BASE + 6;
const SCR: u16 = COM1_BASE + 7;

type Com1 = Uart<64>;

fn com1() -> Com1 {
    Uart::new(COM1_BASE)
}

fn outb(u: &mut Com1, v: u8, port: u16) {
    u.write(port, 1, v.into(), 0);
}

fn inb(u: &mut Com1, port: u16) -> u8 {
    u.read(port, 1, 0) as u8
}

#[test]
fn divisor_latch_round_trip() {
    let mut u = com1();
    outb(&mut u, 0x5A, IER); // IER = 0x0A (bits 7:4 dropped)
    outb(&mut u, 0x83, LCR); // DLAB, 8N1
    outb(&mut u, 0x01, RBR); // DLL: 115200 baud
    outb(&mut u, 0x02, IER); // DLM
    assert_eq!(inb(&mut u, RBR), 0x01);
    assert_eq!(inb(&mut u, IER), 0x02);
    assert_eq!(u.divisor(), 0x0201);
    outb(&mut u, 0x03, LCR);
    // Back to RBR/IER; nothing was transmitted while DLAB was set.
    assert_eq!(inb(&mut u, IER), 0x0A);
    assert_eq!(inb(&mut u, LCR), 0x03);
    assert_eq!(u.take_output(&mut [0; 8]), 0);
}

/// drivers/tty/serial/8250/8250_port.c autoconfig() and autoconfig_16550a() as Linux 6.1 runs
/// them on a port without UPF_SKIP_TEST and with the 16550A variant probes.
#[test]
fn linux_autoconfig_detects_a_16550a() {
    let mut u = com1();
    // IER test.
    let scratch = inb(&mut u, IER);
    outb(&mut u, 0, IER);
    let scratch2 = inb(&mut u, IER) & 0x0F;
    outb(&mut u, 0x0F, IER);
    let scratch3 = inb(&mut u, IER) & 0x0F;
    outb(&mut u, scratch, IER);
    assert_eq!((scratch2, scratch3), (0, 0x0F));
    // Loopback test: MCR = LOOP | OUT2 | RTS must show DCD | CTS.
    let save_mcr = inb(&mut u, MCR);
    let save_lcr = inb(&mut u, LCR);
    outb(&mut u, 0x1A, MCR);
    assert_eq!(inb(&mut u, MSR) & 0xF0, 0x90);
    outb(&mut u, save_mcr, MCR);
    // EFR (= FCR) cleared under LCR 0xBF, then FIFO enable: IIR bits 7:6 = 3 -> 16550A.
    outb(&mut u, 0xBF, LCR);
    outb(&mut u, 0, FCR);
    outb(&mut u, 0, LCR);
    outb(&mut u, 0x01, FCR);
    assert_eq!(inb(&mut u, IIR) >> 6, 3);
    // No EFR: under LCR 0x80 and 0xBF "EFR" (IIR) reads non-zero.
    outb(&mut u, 0x80, LCR);
    assert_ne!(inb(&mut u, IIR), 0);
    outb(&mut u, 0xBF, LCR);
    assert_ne!(inb(&mut u, IIR), 0);
    // Not a National SuperIO: "EXCR1" (IIR under LCR 0xE0) does not follow MCR LOOP.
    outb(&mut u, 0, LCR);
    let status1 = inb(&mut u, MCR);
    outb(&mut u, 0xE0, LCR);
    let status2 = inb(&mut u, IIR);
    assert_eq!((status1 ^ status2) & 0x10, 0);
    outb(&mut u, 0, LCR);
    outb(&mut u, status1 ^ 0x10, MCR);
    outb(&mut u, 0xE0, LCR);
    let status2 = inb(&mut u, IIR);
    outb(&mut u, 0, LCR);
    outb(&mut u, status1, MCR);
    assert_eq!((status2 ^ status1) & 0x10, 0);
    // Not a TI16750: IIR bit 5 (64-byte FIFO) never sets.
    outb(&mut u, 0x21, FCR);
    assert_eq!(inb(&mut u, IIR) & 0xE0, 0xC0);
    outb(&mut u, 0x80, LCR);
    outb(&mut u, 0x21, FCR);
    assert_eq!(inb(&mut u, IIR) & 0xE0, 0xC0);
    outb(&mut u, 0, LCR);
    // Not an XScale: IER bit 6 (UUE) cannot be set.
    outb(&mut u, 0x40, IER);
    assert_eq!(inb(&mut u, IER) & 0x40, 0);
    outb(&mut u, save_lcr, LCR);
}

#[test]
fn iir_after_thre() {
    let mut u = com1();
    outb(&mut u, 0x07, FCR); // FIFOs on, both cleared
    assert_eq!(inb(&mut u, IIR), 0xC1);
    // Turning THRI on with THR empty raises it; reading IIR (it being the source) clears it.
    outb(&mut u, 0x02, IER);
    assert_eq!(inb(&mut u, IIR), 0xC2);
    assert_eq!(inb(&mut u, IIR), 0xC1);
    // Writing THR empties at once, so THRI comes back.
    outb(&mut u, b'x', THR);
    assert_eq!(inb(&mut u, IIR), 0xC2);
    // Linux's THRE re-assert test: IER 0 then THRI again re-raises it.
    outb(&mut u, 0, IER);
    assert_eq!(inb(&mut u, IIR), 0xC1);
    outb(&mut u, 0x02, IER);
    assert_eq!(inb(&mut u, IIR), 0xC2);
    // Without FIFOs the IIR top bits are 0.
    outb(&mut u, 0x00, FCR);
    assert_eq!(inb(&mut u, IIR), 0x01);
}

#[test]
fn transmitted_bytes_reach_the_output_ring() {
    let mut u: Uart<4> = Uart::new(COM1_BASE);
    for &b in b"hello" {
        u.write(THR, 1, b.into(), 0);
        // THRE | TEMT always.
        assert_eq!(u.read(LSR, 1, 0) & 0x60, 0x60);
    }
    let mut buf = [0; 8];
    assert_eq!(u.take_output(&mut buf), 4);
    assert_eq!(&buf[..4], b"hell");
    assert_eq!(u.dropped_output(), 1);
    u.write(THR, 1, b'!'.into(), 0);
    let mut one = [0; 1];
    assert_eq!(u.take_output(&mut one), 1);
    assert_eq!(one, *b"!");
}

#[test]
fn received_bytes_data_ready_and_trigger_level() {
    let mut u = com1();
    outb(&mut u, 0x41, FCR); // FIFOs on, trigger level 4
    outb(&mut u, 0x01, IER);
    assert_eq!(inb(&mut u, LSR) & 0x01, 0);
    for &b in b"abc" {
        assert!(u.push_input(b));
    }
    // Below the trigger level: character timeout; at it: received data available.
    assert_eq!(inb(&mut u, LSR) & 0x01, 0x01);
    assert_eq!(inb(&mut u, IIR), 0xCC);
    assert!(u.push_input(b'd'));
    assert_eq!(inb(&mut u, IIR), 0xC4);
    for &b in b"abcd" {
        assert_eq!(inb(&mut u, RBR), b);
    }
    assert_eq!(inb(&mut u, LSR) & 0x01, 0);
    assert_eq!(inb(&mut u, IIR), 0xC1);
    // The FIFO holds 16; the 17th byte waits with the caller.
    for i in 0..16 {
        assert!(u.push_input(i));
    }
    assert!(!u.push_input(16));
    // Without FIFOs a single holding register.
    outb(&mut u, 0x00, FCR);
    assert!(u.push_input(1));
    assert!(!u.push_input(2));
}

#[test]
fn irq_line_needs_out2() {
    let mut u = com1();
    outb(&mut u, 0x02, IER);
    assert!(!u.irq_level());
    outb(&mut u, 0x0B, MCR); // DTR | RTS | OUT2
    assert!(u.irq_level());
    inb(&mut u, IIR);
    assert!(!u.irq_level());
    outb(&mut u, 0x01, IER);
    u.push_input(b'k');
    assert!(u.irq_level());
    inb(&mut u, RBR);
    assert!(!u.irq_level());
}

#[test]
fn loopback_data_modem_lines_and_overrun() {
    let mut u = com1();
    outb(&mut u, 0x1F, MCR); // LOOP with all outputs
    assert_eq!(inb(&mut u, MSR) & 0xF0, 0xF0);
    // Loopback disconnects the console input; transmitted bytes come back instead.
    assert!(!u.push_input(b'z'));
    outb(&mut u, b'A', THR);
    assert_eq!(u.take_output(&mut [0; 4]), 0);
    assert_eq!(inb(&mut u, LSR) & 0x01, 0x01);
    assert_eq!(inb(&mut u, RBR), b'A');
    // Without FIFOs a second unread byte overruns; with ELSI that is the top interrupt.
    outb(&mut u, 0x04, IER);
    outb(&mut u, b'B', THR);
    outb(&mut u, b'C', THR);
    assert_eq!(inb(&mut u, IIR), 0x06);
    assert_eq!(inb(&mut u, LSR) & 0x03, 0x03);
    assert_eq!(inb(&mut u, LSR) & 0x02, 0);
    assert_eq!(inb(&mut u, RBR), b'B');
    // In loopback the interrupt line stays inactive even with OUT2.
    assert!(!u.irq_level());
}

#[test]
fn modem_status_deltas_and_interrupt() {
    let mut u = com1();
    assert_eq!(inb(&mut u, MSR), 0xB0); // DCD, DSR, CTS: a connected console
    outb(&mut u, 0x08, IER);
    // Loopback with only OUT1 (-> RI): DCD, DSR, CTS drop, RI rises.
    outb(&mut u, 0x14, MCR);
    assert_eq!(inb(&mut u, IIR), 0x00);
    assert_eq!(inb(&mut u, MSR), 0x40 | 0x08 | 0x02 | 0x01);
    assert_eq!(inb(&mut u, IIR), 0x01);
    // RI falling sets TERI.
    outb(&mut u, 0x10, MCR);
    assert_eq!(inb(&mut u, MSR), 0x04);
}

#[test]
fn scratch_and_unimplemented_bits() {
    let mut u = com1();
    outb(&mut u, 0xA5, SCR);
    assert_eq!(inb(&mut u, SCR), 0xA5);
    outb(&mut u, 0xFF, MCR);
    assert_eq!(inb(&mut u, MCR), 0x1F);
    outb(&mut u, 0x00, LSR);
    assert_eq!(inb(&mut u, LSR), 0x60);
    // Ports outside the UART read all ones; a 16-bit read covers two registers.
    assert_eq!(u.read(COM1_BASE + 8, 1, 0), 0xFF);
    assert_eq!(u.read(SCR, 2, 0), 0xFFA5);
}

#[test]
fn receiver_listens_only_with_the_data_interrupt_enabled() {
    let mut u = Uart::<16>::new(COM1_BASE);
    assert!(!u.receiver_listening());
    u.write(COM1_BASE + 1, 1, 0x01, 0);
    assert!(u.receiver_listening());
    // Loopback: what the guest sends comes back, nothing from outside.
    u.write(COM1_BASE + 4, 1, 0x10, 0);
    assert!(!u.receiver_listening());
}
