//! National Semiconductor NS16550A UART (datasheet "PC16550D Universal Asynchronous
//! Receiver/Transmitter with FIFOs", June 1995; register map in its Table II), as COM1 at 0x3F8-0x3FF
//! on ISA IRQ 4.
//!
//! There is no wire: a byte written to THR lands at once in an output ring the hypervisor drains
//! with [`Uart::take_output`], so THR and the transmitter are always empty (LSR THRE|TEMT) and the
//! THR-empty interrupt is re-armed after every write. Input arrives from the hypervisor's console
//! through [`Uart::push_input`], which refuses a byte when the receiver is full rather than
//! overrunning, so console input is never lost. The line is ready at any divisor and frame format.
//!
//! Deliberate simplifications: the character-timeout interrupt (IIR 0x0C) is reported as soon as
//! fewer bytes than the trigger level wait, instead of after four character times (Linux reads
//! whatever LSR.DR shows either way); and when the output ring is full further bytes are dropped and
//! counted ([`Uart::dropped_output`]).
//!
//! The interrupt line follows the datasheet's INTR, gated as on PC boards by MCR OUT2 (the 8250
//! driver sets OUT2 when it wants interrupts), and held inactive in loopback mode, where the
//! datasheet forces the OUT2 pin inactive.

use super::{read_bytes, write_bytes, Nanos, PortIo};

pub const COM1_BASE: u16 = 0x3F8;
pub const COM1_ISA_IRQ: u8 = 4;
/// Depth of the 16550A receive FIFO.
pub const FIFO_DEPTH: usize = 16;

/// Register offsets from the base port (PC16550D Table II); DLAB is LCR bit 7.
mod reg {
    pub const RBR_THR_DLL: u16 = 0;
    pub const IER_DLM: u16 = 1;
    pub const IIR_FCR: u16 = 2;
    pub const LCR: u16 = 3;
    pub const MCR: u16 = 4;
    pub const LSR: u16 = 5;
    pub const MSR: u16 = 6;
    pub const SCR: u16 = 7;
}

/// Interrupt enable register: only bits 3:0 exist on the 16550A (bits 7:4 read 0).
mod ier {
    pub const RX_DATA: u8 = 1 << 0;
    pub const THR_EMPTY: u8 = 1 << 1;
    pub const LINE_STATUS: u8 = 1 << 2;
    pub const MODEM_STATUS: u8 = 1 << 3;
    pub const IMPLEMENTED: u8 = 0x0F;
}

/// Interrupt identification: bit 0 = no interrupt pending, bits 3:1 the source (in priority order
/// below), bits 7:6 set when the FIFOs are enabled.
mod iir {
    pub const NONE: u8 = 0x01;
    pub const LINE_STATUS: u8 = 0x06;
    pub const RX_DATA: u8 = 0x04;
    pub const CHAR_TIMEOUT: u8 = 0x0C;
    pub const THR_EMPTY: u8 = 0x02;
    pub const MODEM_STATUS: u8 = 0x00;
    pub const FIFOS_ENABLED: u8 = 0xC0;
}

/// FIFO control (write-only): bits 1 and 2 self-clear, bits 7:6 pick the receive trigger level.
mod fcr {
    pub const ENABLE: u8 = 1 << 0;
    pub const CLEAR_RX: u8 = 1 << 1;
    pub const TRIGGER_SHIFT: u8 = 6;
    pub const TRIGGER_LEVELS: [usize; 4] = [1, 4, 8, 14];
}

mod lcr {
    pub const DLAB: u8 = 1 << 7;
}

/// Modem control: bits 4:0 exist.
mod mcr {
    pub const DTR: u8 = 1 << 0;
    pub const RTS: u8 = 1 << 1;
    pub const OUT1: u8 = 1 << 2;
    pub const OUT2: u8 = 1 << 3;
    pub const LOOP: u8 = 1 << 4;
    pub const IMPLEMENTED: u8 = 0x1F;
}

mod lsr {
    pub const DATA_READY: u8 = 1 << 0;
    pub const OVERRUN: u8 = 1 << 1;
    /// Overrun, parity, framing and break: the conditions of the line-status interrupt.
    pub const ERRORS: u8 = 0x1E;
    pub const THR_EMPTY: u8 = 1 << 5;
    pub const TX_EMPTY: u8 = 1 << 6;
}

/// Modem status: the line states in bits 7:4, their change ("delta") flags in bits 3:0.
mod msr {
    pub const DCTS: u8 = 1 << 0;
    pub const DDSR: u8 = 1 << 1;
    pub const TERI: u8 = 1 << 2;
    pub const DDCD: u8 = 1 << 3;
    pub const CTS: u8 = 1 << 4;
    pub const DSR: u8 = 1 << 5;
    pub const RI: u8 = 1 << 6;
    pub const DCD: u8 = 1 << 7;
    /// What a console on the other end presents: carrier, data set ready, clear to send.
    pub const CONNECTED: u8 = DCD | DSR | CTS;
}

/// The BIOS default divisor (115200 / 12 = 9600 baud); any divisor works.
const DEFAULT_DIVISOR: u16 = 12;

/// Bytes the guest transmitted, waiting for the hypervisor.
struct OutputRing<const N: usize> {
    bytes: [u8; N],
    head: usize,
    len: usize,
    dropped: u64,
}

impl<const N: usize> OutputRing<N> {
    const fn new() -> Self {
        OutputRing {
            bytes: [0; N],
            head: 0,
            len: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, b: u8) {
        if self.len == N {
            self.dropped += 1;
            return;
        }
        self.bytes[(self.head + self.len) % N] = b;
        self.len += 1;
    }

    fn take(&mut self, buf: &mut [u8]) -> usize {
        let n = self.len.min(buf.len());
        for slot in &mut buf[..n] {
            *slot = self.bytes[self.head];
            self.head = (self.head + 1) % N;
        }
        self.len -= n;
        n
    }
}

struct RxFifo {
    bytes: [u8; FIFO_DEPTH],
    head: usize,
    len: usize,
}

impl RxFifo {
    const fn new() -> Self {
        RxFifo {
            bytes: [0; FIFO_DEPTH],
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        self.bytes[(self.head + self.len) % FIFO_DEPTH] = b;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.bytes[self.head];
        self.head = (self.head + 1) % FIFO_DEPTH;
        self.len -= 1;
        Some(b)
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// One 16550A; `OUT` is the capacity of the output ring.
pub struct Uart<const OUT: usize> {
    base: u16,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: u16,
    fifo_enabled: bool,
    rx_trigger: usize,
    /// LSR error bits waiting to be read (only overrun can happen here).
    lsr_errors: u8,
    /// MSR line states as last seen, and the delta flags not yet read.
    msr_lines: u8,
    msr_deltas: u8,
    /// THR-empty interrupt condition: set when THR empties or when IER.THRI is turned on with THR
    /// empty, cleared by reading IIR while it is the source, or by writing THR.
    thr_empty_pending: bool,
    rx: RxFifo,
    out: OutputRing<OUT>,
    last_rbr: u8,
}

impl<const OUT: usize> Uart<OUT> {
    pub const fn new(base: u16) -> Self {
        Uart {
            base,
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            divisor: DEFAULT_DIVISOR,
            fifo_enabled: false,
            rx_trigger: 1,
            lsr_errors: 0,
            msr_lines: msr::CONNECTED,
            msr_deltas: 0,
            thr_empty_pending: false,
            rx: RxFifo::new(),
            out: OutputRing::new(),
            last_rbr: 0,
        }
    }

    /// Copies transmitted bytes into `buf`, oldest first; returns how many.
    pub fn take_output(&mut self, buf: &mut [u8]) -> usize {
        self.out.take(buf)
    }

    /// Bytes lost because the output ring was full.
    pub fn dropped_output(&self) -> u64 {
        self.out.dropped
    }

    /// Offers one byte of console input; `false` if the receiver has no room (or is in loopback,
    /// which disconnects the serial input), in which case the caller keeps it and tries later.
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.loopback() || self.rx.len >= self.rx_capacity() {
            return false;
        }
        self.rx.push(byte);
        true
    }

    /// Whether the guest's driver is listening: the received-data interrupt is enabled. Console
    /// input is held back until then, because drivers clear the receive FIFO while they set the
    /// port up (on hardware, characters typed that early are lost).
    pub fn receiver_listening(&self) -> bool {
        self.ier & ier::RX_DATA != 0 && !self.loopback()
    }

    /// The level of the UART's interrupt line as the ISA bus sees it.
    pub fn irq_level(&self) -> bool {
        self.mcr & mcr::OUT2 != 0 && !self.loopback() && self.interrupt_source().is_some()
    }

    /// The current divisor latch value (DLM:DLL).
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    fn loopback(&self) -> bool {
        self.mcr & mcr::LOOP != 0
    }

    fn dlab(&self) -> bool {
        self.lcr & lcr::DLAB != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// The highest-priority pending and enabled interrupt, as its IIR code.
    fn interrupt_source(&self) -> Option<u8> {
        if self.ier & ier::LINE_STATUS != 0 && self.lsr_errors & lsr::ERRORS != 0 {
            return Some(iir::LINE_STATUS);
        }
        if self.ier & ier::RX_DATA != 0 && self.rx.len > 0 {
            let below_trigger = self.fifo_enabled && self.rx.len < self.rx_trigger;
            return Some(if below_trigger {
                iir::CHAR_TIMEOUT
            } else {
                iir::RX_DATA
            });
        }
        if self.ier & ier::THR_EMPTY != 0 && self.thr_empty_pending {
            return Some(iir::THR_EMPTY);
        }
        if self.ier & ier::MODEM_STATUS != 0 && self.msr_deltas != 0 {
            return Some(iir::MODEM_STATUS);
        }
        None
    }

    /// The modem input lines: a connected console, or in loopback the modem outputs fed back
    /// (CTS = RTS, DSR = DTR, RI = OUT1, DCD = OUT2).
    fn modem_lines(&self) -> u8 {
        if !self.loopback() {
            return msr::CONNECTED;
        }
        let m = self.mcr;
        let mut lines = 0;
        for (out, line) in [
            (mcr::RTS, msr::CTS),
            (mcr::DTR, msr::DSR),
            (mcr::OUT1, msr::RI),
            (mcr::OUT2, msr::DCD),
        ] {
            if m & out != 0 {
                lines |= line;
            }
        }
        lines
    }

    fn update_modem_lines(&mut self) {
        let new = self.modem_lines();
        let changed = new ^ self.msr_lines;
        if changed & msr::CTS != 0 {
            self.msr_deltas |= msr::DCTS;
        }
        if changed & msr::DSR != 0 {
            self.msr_deltas |= msr::DDSR;
        }
        if changed & msr::DCD != 0 {
            self.msr_deltas |= msr::DDCD;
        }
        // TERI flags only the trailing (1 -> 0) edge of RI.
        if changed & self.msr_lines & msr::RI != 0 {
            self.msr_deltas |= msr::TERI;
        }
        self.msr_lines = new;
    }

    fn transmit(&mut self, b: u8) {
        if self.loopback() {
            if self.rx.len >= self.rx_capacity() {
                self.lsr_errors |= lsr::OVERRUN;
            } else {
                self.rx.push(b);
            }
        } else {
            self.out.push(b);
        }
        // The byte left THR at once, so THR is empty again.
        self.thr_empty_pending = true;
    }

    fn write_fcr(&mut self, v: u8) {
        let enable = v & fcr::ENABLE != 0;
        if enable != self.fifo_enabled {
            // Switching the FIFO mode resets the FIFOs.
            self.rx.clear();
            self.fifo_enabled = enable;
        }
        // The other bits are only taken while the enable bit is written as 1.
        if enable {
            if v & fcr::CLEAR_RX != 0 {
                self.rx.clear();
            }
            self.rx_trigger = fcr::TRIGGER_LEVELS[usize::from(v >> fcr::TRIGGER_SHIFT)];
        }
    }

    fn read_reg(&mut self, offset: u16) -> u8 {
        match offset {
            reg::RBR_THR_DLL if self.dlab() => self.divisor as u8,
            reg::RBR_THR_DLL => {
                if let Some(b) = self.rx.pop() {
                    self.last_rbr = b;
                }
                self.last_rbr
            }
            reg::IER_DLM if self.dlab() => (self.divisor >> 8) as u8,
            reg::IER_DLM => self.ier,
            reg::IIR_FCR => {
                let source = self.interrupt_source();
                if source == Some(iir::THR_EMPTY) {
                    self.thr_empty_pending = false;
                }
                let fifo = if self.fifo_enabled {
                    iir::FIFOS_ENABLED
                } else {
                    0
                };
                source.unwrap_or(iir::NONE) | fifo
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let mut v = lsr::THR_EMPTY | lsr::TX_EMPTY | core::mem::take(&mut self.lsr_errors);
                if self.rx.len > 0 {
                    v |= lsr::DATA_READY;
                }
                v
            }
            reg::MSR => self.msr_lines | core::mem::take(&mut self.msr_deltas),
            reg::SCR => self.scr,
            _ => 0xFF,
        }
    }

    fn write_reg(&mut self, offset: u16, v: u8) {
        match offset {
            reg::RBR_THR_DLL if self.dlab() => {
                self.divisor = (self.divisor & 0xFF00) | u16::from(v)
            }
            reg::RBR_THR_DLL => self.transmit(v),
            reg::IER_DLM if self.dlab() => {
                self.divisor = (self.divisor & 0x00FF) | u16::from(v) << 8;
            }
            reg::IER_DLM => {
                let old = self.ier;
                self.ier = v & ier::IMPLEMENTED;
                // Turning THRI on while THR is empty raises the interrupt (also what Linux's THRE
                // test in serial8250_do_startup expects from a real 16550).
                if (old ^ self.ier) & ier::THR_EMPTY != 0 {
                    self.thr_empty_pending = self.ier & ier::THR_EMPTY != 0;
                }
            }
            reg::IIR_FCR => self.write_fcr(v),
            reg::LCR => self.lcr = v,
            reg::MCR => {
                self.mcr = v & mcr::IMPLEMENTED;
                self.update_modem_lines();
            }
            // LSR and MSR writes are for factory test on the real part: ignored.
            reg::LSR | reg::MSR => {}
            reg::SCR => self.scr = v,
            _ => {}
        }
    }

    fn offset(&self, port: u16) -> Option<u16> {
        let off = port.wrapping_sub(self.base);
        (off < 8).then_some(off)
    }
}

impl<const OUT: usize> PortIo for Uart<OUT> {
    fn read(&mut self, port: u16, size: u8, _now: Nanos) -> u32 {
        read_bytes(port, size, |p| {
            self.offset(p).map_or(0xFF, |o| self.read_reg(o))
        })
    }

    fn write(&mut self, port: u16, size: u8, value: u32, _now: Nanos) {
        write_bytes(port, size, value, |p, b| {
            if let Some(o) = self.offset(p) {
                self.write_reg(o, b);
            }
        });
    }
}

#[cfg(test)]
#[path = "uart_tests.rs"]
mod tests;
