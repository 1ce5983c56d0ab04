//! A virtual I/O APIC: an Intel 82093AA with 24 pins as later chipsets (ICH, version 20h) implement
//! it, i.e. with the EOI register at +40h. Sources: the 82093AA datasheet §3.0-3.2 (IOREGSEL,
//! IOWIN, ID, VER, ARB, redirection table) and the ICH9 datasheet's I/O APIC chapter (version 20h,
//! EOI register).
//!
//! Inputs are logical: `set_level(gsi, true)` means "the line is asserted", whatever polarity the
//! guest programmed (it takes the polarity from our MADT, and there is no electrical wire to
//! invert). GSI n is pin n (the only IOAPIC has GSI base 0).
//!
//! Destination: only the 8-bit field 63:56. Linux in x2APIC mode without interrupt remapping
//! programs it in physical mode with the target's APIC id, and so reaches only APIC ids below 256.
//! It would put APIC-id bits 14:8 into 55:49 only if the hypervisor advertised
//! KVM_FEATURE_MSI_EXT_DEST_ID (CPUID 4000_0001h EAX bit 15), which we do not; those bits are
//! reserved here and read as 0.

use super::delivery::{DeliveryMode, DestMode, TriggerMode};

/// Guest-physical base of the IOAPIC register window (the PC default; our MADT says the same).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Number of redirection entries (pins).
pub const PINS: usize = 24;

/// MMIO offsets in the window (82093AA §3.0; EOI per the version-20h parts).
pub const IOREGSEL: u64 = 0x00;
pub const IOWIN: u64 = 0x10;
pub const EOI: u64 = 0x40;

/// Indirect register indices selected through IOREGSEL (82093AA §3.2).
pub const REG_ID: u8 = 0x00;
pub const REG_VERSION: u8 = 0x01;
pub const REG_ARBITRATION: u8 = 0x02;
/// Redirection entry n occupies indices 10h + 2n (bits 31:0) and 10h + 2n + 1 (bits 63:32).
pub const REG_REDIRECTION_FIRST: u8 = 0x10;
pub const REG_REDIRECTION_LAST: u8 = 0x3f;

/// The ID register's 4-bit id at bits 27:24 (82093AA §3.2.1); ARB reads the same field.
const ID_SHIFT: u32 = 24;
const ID_MASK: u32 = 0xf;

/// VER (82093AA §3.2.2): version 20h in bits 7:0, highest entry index (PINS - 1 = 23) in 23:16.
pub const VERSION: u32 = 0x0017_0020;

/// One 64-bit redirection table entry (82093AA §3.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedirectionEntry(pub u64);

impl RedirectionEntry {
    pub const VECTOR: u64 = 0xff;
    pub const DEST_LOGICAL: u64 = 1 << 11;
    /// Read-only: a message is waiting to be sent. Always 0 here (delivery is instantaneous).
    pub const DELIVERY_STATUS: u64 = 1 << 12;
    pub const POLARITY_LOW: u64 = 1 << 13;
    /// Read-only: a level interrupt was accepted and awaits its EOI.
    pub const REMOTE_IRR: u64 = 1 << 14;
    pub const TRIGGER_LEVEL: u64 = 1 << 15;
    pub const MASK: u64 = 1 << 16;
    pub const DEST_SHIFT: u32 = 56;
    /// Everything the guest writes: vector, delivery mode, destination mode, polarity, trigger,
    /// mask, destination. Bits 55:17 are reserved.
    pub const WRITABLE: u64 = 0xff00_0000_0001_afff;
    /// Reset value: masked, everything else 0.
    pub const RESET: RedirectionEntry = RedirectionEntry(Self::MASK);

    pub const fn vector(self) -> u8 {
        (self.0 & Self::VECTOR) as u8
    }

    pub const fn delivery_mode(self) -> DeliveryMode {
        DeliveryMode::from_reg(self.0)
    }

    pub const fn dest_mode(self) -> DestMode {
        if self.0 & Self::DEST_LOGICAL != 0 {
            DestMode::Logical
        } else {
            DestMode::Physical
        }
    }

    pub const fn trigger(self) -> TriggerMode {
        if self.0 & Self::TRIGGER_LEVEL != 0 {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        }
    }

    pub const fn masked(self) -> bool {
        self.0 & Self::MASK != 0
    }

    pub const fn remote_irr(self) -> bool {
        self.0 & Self::REMOTE_IRR != 0
    }

    pub const fn dest(self) -> u8 {
        (self.0 >> Self::DEST_SHIFT) as u8
    }
}

/// An interrupt message the IOAPIC sends, for the caller to route to a local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub gsi: u8,
    pub vector: u8,
    /// An APIC id (physical) or an 8-bit logical destination; FFh in physical mode is the
    /// broadcast.
    pub dest_apic_id: u8,
    pub dest_logical: bool,
    pub mode: DeliveryMode,
    /// Level-triggered: the target's EOI for `vector` must come back through [`Ioapic::eoi`].
    pub level_triggered: bool,
}

/// The messages one event sends: an EOI can re-deliver every level pin that shares its vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deliveries {
    items: [Option<Delivery>; PINS],
    len: usize,
}

impl Deliveries {
    fn push(&mut self, delivery: Option<Delivery>) {
        if let (Some(delivery), Some(slot)) = (delivery, self.items.get_mut(self.len)) {
            *slot = Some(delivery);
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Delivery> + '_ {
        self.items.iter().take(self.len).flatten().copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ioapic {
    id: u8,
    ioregsel: u8,
    redirection: [RedirectionEntry; PINS],
    /// Input line state, bit n = pin n asserted.
    asserted: u32,
}

impl Default for Ioapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Ioapic {
    /// The IOAPIC in its reset state: id 0, every entry masked, no line asserted.
    pub const fn new() -> Self {
        Ioapic {
            id: 0,
            ioregsel: 0,
            redirection: [RedirectionEntry::RESET; PINS],
            asserted: 0,
        }
    }

    pub fn entry(&self, gsi: u32) -> Option<RedirectionEntry> {
        self.redirection.get(usize::try_from(gsi).ok()?).copied()
    }

    /// Drives input `gsi` to `level` (asserted or not). Edge-triggered entries send on a rising
    /// edge if unmasked (an edge while masked is lost, as on the 82093AA). Level-triggered entries
    /// send while the line is asserted, unmasked and remote IRR is clear, and set remote IRR.
    /// Unknown GSIs are ignored.
    pub fn set_level(&mut self, gsi: u32, level: bool) -> Option<Delivery> {
        let pin = usize::try_from(gsi).ok().filter(|pin| *pin < PINS)?;
        let bit = 1u32 << pin;
        let was_asserted = self.asserted & bit != 0;
        if !level {
            self.asserted &= !bit;
            return None;
        }
        self.asserted |= bit;
        let entry = self.redirection[pin];
        match entry.trigger() {
            TriggerMode::Level => self.service_level(pin),
            TriggerMode::Edge if !was_asserted && !entry.masked() => Some(self.delivery(pin)),
            TriggerMode::Edge => None,
        }
    }

    /// A local APIC retired level-triggered `vector`: clears remote IRR of every level entry with
    /// that vector and re-sends those whose line is still asserted.
    pub fn eoi(&mut self, vector: u8) -> Deliveries {
        let mut deliveries = Deliveries::default();
        for pin in 0..PINS {
            let entry = self.redirection[pin];
            if entry.trigger() == TriggerMode::Level
                && entry.vector() == vector
                && entry.remote_irr()
            {
                self.redirection[pin].0 &= !RedirectionEntry::REMOTE_IRR;
                deliveries.push(self.service_level(pin));
            }
        }
        deliveries
    }

    /// A guest read of `size` bytes at `offset` in the window. The 82093AA wants aligned dword
    /// accesses; byte and word reads inside one dword are served too, anything else reads 0.
    pub fn mmio_read(&self, offset: u64, size: u64) -> u32 {
        let Some(lane) = Lane::of(offset, size) else {
            return 0;
        };
        let dword = match offset & !3 {
            IOREGSEL => u32::from(self.ioregsel),
            IOWIN => self.read_register(self.ioregsel),
            _ => 0,
        };
        lane.extract(dword)
    }

    /// A guest write of the low `size` bytes of `value` at `offset`; returns what it sends (a
    /// redirection entry write can unmask an asserted level line, an EOI write re-delivers).
    /// Narrow writes merge into the dword; misaligned or oversized ones are ignored.
    pub fn mmio_write(&mut self, offset: u64, size: u64, value: u32) -> Deliveries {
        let mut deliveries = Deliveries::default();
        let Some(lane) = Lane::of(offset, size) else {
            return deliveries;
        };
        match offset & !3 {
            IOREGSEL => self.ioregsel = lane.merge(u32::from(self.ioregsel), value) as u8,
            IOWIN => {
                let register = self.ioregsel;
                let merged = lane.merge(self.read_register(register), value);
                deliveries.push(self.write_register(register, merged));
            }
            // The vector is bits 7:0; a write to the other bytes names no vector.
            EOI if lane.shift == 0 => deliveries = self.eoi(value as u8),
            _ => {}
        }
        deliveries
    }

    fn read_register(&self, register: u8) -> u32 {
        match register {
            REG_ID | REG_ARBITRATION => u32::from(self.id) << ID_SHIFT,
            REG_VERSION => VERSION,
            REG_REDIRECTION_FIRST..=REG_REDIRECTION_LAST => {
                let (pin, high) = redirection_index(register);
                let entry = self.redirection[pin].0;
                if high {
                    (entry >> 32) as u32
                } else {
                    entry as u32
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, register: u8, value: u32) -> Option<Delivery> {
        match register {
            REG_ID => self.id = ((value >> ID_SHIFT) & ID_MASK) as u8,
            REG_REDIRECTION_FIRST..=REG_REDIRECTION_LAST => {
                let (pin, high) = redirection_index(register);
                let old = self.redirection[pin].0;
                let written = if high {
                    (old & 0xffff_ffff) | (u64::from(value) << 32)
                } else {
                    (old & !0xffff_ffff) | u64::from(value)
                };
                let read_only = RedirectionEntry::DELIVERY_STATUS | RedirectionEntry::REMOTE_IRR;
                let mut entry =
                    RedirectionEntry((written & RedirectionEntry::WRITABLE) | (old & read_only));
                if entry.trigger() == TriggerMode::Edge {
                    // Remote IRR means nothing for edge entries; Linux flips a stuck level entry
                    // to edge and back to clear it on IOAPICs without the EOI register.
                    entry.0 &= !RedirectionEntry::REMOTE_IRR;
                }
                self.redirection[pin] = entry;
                if entry.trigger() == TriggerMode::Level {
                    return self.service_level(pin);
                }
            }
            // VER and ARB are read-only; other indices do not exist.
            _ => {}
        }
        None
    }

    /// Sends a level-triggered pin's message if it is due, setting remote IRR.
    fn service_level(&mut self, pin: usize) -> Option<Delivery> {
        let entry = self.redirection[pin];
        let asserted = self.asserted & (1 << pin) != 0;
        if !asserted || entry.masked() || entry.remote_irr() {
            return None;
        }
        self.redirection[pin].0 |= RedirectionEntry::REMOTE_IRR;
        Some(self.delivery(pin))
    }

    fn delivery(&self, pin: usize) -> Delivery {
        let entry = self.redirection[pin];
        Delivery {
            gsi: pin as u8,
            vector: entry.vector(),
            dest_apic_id: entry.dest(),
            dest_logical: entry.dest_mode() == DestMode::Logical,
            mode: entry.delivery_mode(),
            level_triggered: entry.trigger() == TriggerMode::Level,
        }
    }
}

/// Pin and half (false = bits 31:0) of a redirection-table register index.
fn redirection_index(register: u8) -> (usize, bool) {
    let offset = usize::from(register - REG_REDIRECTION_FIRST);
    (offset / 2, offset % 2 == 1)
}

/// The bytes of a dword an access covers.
#[derive(Clone, Copy)]
struct Lane {
    shift: u32,
    mask: u32,
}

impl Lane {
    /// Accesses of 1, 2 or 4 bytes that stay inside one dword.
    fn of(offset: u64, size: u64) -> Option<Lane> {
        let mask = match size {
            1 => 0xff,
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => return None,
        };
        let byte = offset & 3;
        if byte + size > 4 {
            return None;
        }
        Some(Lane {
            shift: (byte * 8) as u32,
            mask,
        })
    }

    fn extract(self, dword: u32) -> u32 {
        (dword >> self.shift) & self.mask
    }

    fn merge(self, dword: u32, value: u32) -> u32 {
        (dword & !(self.mask << self.shift)) | ((value & self.mask) << self.shift)
    }
}
