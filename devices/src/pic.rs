//! A pair of Intel 8259A interrupt controllers (8259A datasheet, order no. 231468: "Initialization
//! Command Words", "Operation Command Words") at 0x20/0x21 (master) and 0xA0/0xA1 (slave), that
//! remembers its programming but never delivers an interrupt.
//!
//! Why present at all: Linux's `probe_8259A` (arch/x86/kernel/i8259.c) writes 0xFB to the master's
//! mask register and reads it back; without a match it switches to the "NULL legacy PIC", and then
//! `has_legacy_pic()` is false, which (in 6.1) skips the PIT TSC calibration (`pit_calibrate_tsc`,
//! `quick_pit_calibrate`) and makes `nr_legacy_irqs()` 0. With the mask read back, Linux keeps the
//! 8259 driver, masks every line in it, and routes ISA IRQs 0-15 through the IOAPIC according to the
//! MADT (IRQ 0 via the GSI 2 override); `check_timer` then needs IRQ 0 to arrive through the vIOAPIC
//! (or `no_timer_check`). 6.1 probes whatever the MADT says; later kernels skip the probe only
//! when MADT PCAT_COMPAT is set, so with our PCAT_COMPAT = 0 they probe the same way.
//!
//! Why it never delivers: every guest interrupt comes through the (v)IOAPIC/LAPIC path; LINT0 is
//! never wired as ExtINT. IRR and ISR therefore always read 0 and EOIs have nothing to clear.

use super::{read_bytes, write_bytes, Nanos, PortIo};

pub const MASTER_COMMAND: u16 = 0x20;
pub const MASTER_DATA: u16 = 0x21;
pub const SLAVE_COMMAND: u16 = 0xA0;
pub const SLAVE_DATA: u16 = 0xA1;

/// Command port writes: bit 4 set = ICW1; else bit 3 set = OCW3, clear = OCW2.
mod cmd {
    pub const ICW1: u8 = 1 << 4;
    pub const ICW1_NEEDS_ICW4: u8 = 1 << 0;
    pub const ICW1_SINGLE: u8 = 1 << 1;
    pub const OCW3: u8 = 1 << 3;
    /// OCW3 RR (bit 1) with RIS (bit 0): 10 selects IRR, 11 ISR for the next command-port reads.
    pub const OCW3_READ_REGISTER: u8 = 1 << 1;
    pub const OCW3_READ_ISR: u8 = 1 << 0;
    /// OCW3 P: the next command-port read is a poll.
    pub const OCW3_POLL: u8 = 1 << 2;
    /// ICW4 AEOI.
    pub const ICW4_AUTO_EOI: u8 = 1 << 1;
}

/// Where a chip is in its initialization sequence: after ICW1 come ICW2, ICW3 (cascade mode only)
/// and ICW4 (if ICW1 asked for it); otherwise data-port writes are OCW1 (the mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Init {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

#[derive(Clone, Copy, Debug)]
struct Chip {
    init: Init,
    needs_icw3: bool,
    needs_icw4: bool,
    initialized: bool,
    imr: u8,
    vector_base: u8,
    cascade: u8,
    auto_eoi: bool,
    read_isr: bool,
    poll: bool,
}

impl Chip {
    const fn new() -> Self {
        Chip {
            init: Init::Ready,
            needs_icw3: false,
            needs_icw4: false,
            initialized: false,
            imr: 0,
            vector_base: 0,
            cascade: 0,
            auto_eoi: false,
            read_isr: false,
            poll: false,
        }
    }

    fn write_command(&mut self, v: u8) {
        if v & cmd::ICW1 != 0 {
            // ICW1 clears the mask and selects IRR for reads (8259A datasheet, ICW1 description).
            *self = Chip {
                init: Init::Icw2,
                needs_icw3: v & cmd::ICW1_SINGLE == 0,
                needs_icw4: v & cmd::ICW1_NEEDS_ICW4 != 0,
                ..Chip::new()
            };
        } else if v & cmd::OCW3 != 0 {
            if v & cmd::OCW3_READ_REGISTER != 0 {
                self.read_isr = v & cmd::OCW3_READ_ISR != 0;
            }
            self.poll = v & cmd::OCW3_POLL != 0;
        }
        // OCW2 (EOI, rotation, priority): no interrupt is ever in service, nothing to do.
    }

    fn write_data(&mut self, v: u8) {
        self.init = match self.init {
            Init::Ready => {
                self.imr = v;
                Init::Ready
            }
            Init::Icw2 => {
                self.vector_base = v & 0xF8;
                self.next_after_icw2()
            }
            Init::Icw3 => {
                self.cascade = v;
                self.next_after_icw3()
            }
            Init::Icw4 => {
                self.auto_eoi = v & cmd::ICW4_AUTO_EOI != 0;
                self.finish()
            }
        };
    }

    fn next_after_icw2(&mut self) -> Init {
        if self.needs_icw3 {
            Init::Icw3
        } else {
            self.next_after_icw3()
        }
    }

    fn next_after_icw3(&mut self) -> Init {
        if self.needs_icw4 {
            Init::Icw4
        } else {
            self.finish()
        }
    }

    fn finish(&mut self) -> Init {
        self.initialized = true;
        Init::Ready
    }

    fn read_command(&mut self) -> u8 {
        // IRR, ISR and the poll word (bit 7 = interrupt pending) are all empty.
        self.poll = false;
        0
    }
}

/// Master and slave 8259A.
pub struct Pic {
    chips: [Chip; 2],
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    pub const fn new() -> Self {
        Pic {
            chips: [Chip::new(); 2],
        }
    }

    /// The interrupt mask registers (master, slave).
    pub fn masks(&self) -> (u8, u8) {
        (self.chips[0].imr, self.chips[1].imr)
    }

    /// The vector bases set by ICW2 (master, slave), once both chips finished initialization.
    pub fn vector_bases(&self) -> Option<(u8, u8)> {
        let [m, s] = &self.chips;
        (m.initialized && s.initialized).then_some((m.vector_base, s.vector_base))
    }

    /// Whether the master was programmed for automatic EOI (ICW4 AEOI).
    pub fn master_auto_eoi(&self) -> bool {
        self.chips[0].auto_eoi
    }

    fn chip(port: u16) -> Option<(usize, bool)> {
        match port {
            MASTER_COMMAND => Some((0, false)),
            MASTER_DATA => Some((0, true)),
            SLAVE_COMMAND => Some((1, false)),
            SLAVE_DATA => Some((1, true)),
            _ => None,
        }
    }

    fn read_byte(&mut self, port: u16) -> u8 {
        match Self::chip(port) {
            Some((i, true)) => self.chips[i].imr,
            Some((i, false)) => self.chips[i].read_command(),
            None => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, v: u8) {
        match Self::chip(port) {
            Some((i, true)) => self.chips[i].write_data(v),
            Some((i, false)) => self.chips[i].write_command(v),
            None => {}
        }
    }
}

impl PortIo for Pic {
    fn read(&mut self, port: u16, size: u8, _now: Nanos) -> u32 {
        read_bytes(port, size, |p| self.read_byte(p))
    }

    fn write(&mut self, port: u16, size: u8, value: u32, _now: Nanos) {
        write_bytes(port, size, value, |p, v| self.write_byte(p, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outb(pic: &mut Pic, v: u8, port: u16) {
        pic.write(port, 1, v.into(), 0);
    }

    fn inb(pic: &mut Pic, port: u16) -> u8 {
        pic.read(port, 1, 0) as u8
    }

    #[test]
    fn linux_probe_finds_a_pic() {
        let mut pic = Pic::new();
        // probe_8259A: mask the slave, write ~(1 << 2) to the master mask, read it back.
        outb(&mut pic, 0xFF, SLAVE_DATA);
        outb(&mut pic, 0xFB, MASTER_DATA);
        assert_eq!(inb(&mut pic, MASTER_DATA), 0xFB);
        assert_eq!(inb(&mut pic, SLAVE_DATA), 0xFF);
    }

    #[test]
    fn linux_init_sequence() {
        let mut pic = Pic::new();
        // init_8259A(0): mask, ICW1 0x11, ICW2 0x30, ICW3 0x04, ICW4 0x01 on the master; slave
        // ICW1 0x11, ICW2 0x38, ICW3 0x02, ICW4 0x01; then restore the cached masks.
        outb(&mut pic, 0xFF, MASTER_DATA);
        outb(&mut pic, 0x11, MASTER_COMMAND);
        // ICW1 cleared the mask.
        assert_eq!(inb(&mut pic, MASTER_DATA), 0x00);
        for v in [0x30, 0x04, 0x01] {
            outb(&mut pic, v, MASTER_DATA);
        }
        assert_eq!(pic.vector_bases(), None);
        outb(&mut pic, 0x11, SLAVE_COMMAND);
        for v in [0x38, 0x02, 0x01] {
            outb(&mut pic, v, SLAVE_DATA);
        }
        assert_eq!(pic.vector_bases(), Some((0x30, 0x38)));
        assert!(!pic.master_auto_eoi());
        outb(&mut pic, 0xFB, MASTER_DATA);
        outb(&mut pic, 0xFF, SLAVE_DATA);
        assert_eq!(pic.masks(), (0xFB, 0xFF));
    }

    #[test]
    fn single_mode_without_icw4_and_auto_eoi() {
        let mut pic = Pic::new();
        // ICW1 0x12: single, no ICW4 -> only ICW2 follows; the next data write is the mask.
        outb(&mut pic, 0x12, MASTER_COMMAND);
        outb(&mut pic, 0x20, MASTER_DATA);
        outb(&mut pic, 0xAA, MASTER_DATA);
        assert_eq!(pic.masks().0, 0xAA);
        // ICW4 with AEOI (0x03).
        outb(&mut pic, 0x11, MASTER_COMMAND);
        for v in [0x30, 0x04, 0x03] {
            outb(&mut pic, v, MASTER_DATA);
        }
        assert!(pic.master_auto_eoi());
    }

    #[test]
    fn irr_isr_and_poll_read_empty() {
        let mut pic = Pic::new();
        outb(&mut pic, 0x0B, MASTER_COMMAND); // OCW3: read ISR
        assert_eq!(inb(&mut pic, MASTER_COMMAND), 0);
        outb(&mut pic, 0x0A, MASTER_COMMAND); // OCW3: read IRR
        assert_eq!(inb(&mut pic, MASTER_COMMAND), 0);
        outb(&mut pic, 0x0C, MASTER_COMMAND); // OCW3: poll
        assert_eq!(inb(&mut pic, MASTER_COMMAND) & 0x80, 0);
        // EOIs (OCW2) are accepted and change nothing.
        outb(&mut pic, 0x20, MASTER_COMMAND);
        outb(&mut pic, 0x60, SLAVE_COMMAND);
        assert_eq!(pic.masks(), (0, 0));
    }
}
