//! IOAPIC tests with entries as Linux programs them: its PIT timer on pin 2 (ISA IRQ0 through
//! the MADT override: vector 30h, fixed, physical, edge, active high, unmasked, APIC id 0) and a
//! PCI INTx line (level, active low).

use super::delivery::DeliveryMode;
use super::ioapic::*;

/// Writes the 64-bit entry of `pin` through IOREGSEL/IOWIN as Linux does (high half first).
fn program(ioapic: &mut Ioapic, pin: u8, entry: u64) -> Deliveries {
    let index = u32::from(REG_REDIRECTION_FIRST + 2 * pin);
    ioapic.mmio_write(IOREGSEL, 4, index + 1);
    let mut deliveries = ioapic.mmio_write(IOWIN, 4, (entry >> 32) as u32);
    ioapic.mmio_write(IOREGSEL, 4, index);
    let low = ioapic.mmio_write(IOWIN, 4, entry as u32);
    if deliveries.is_empty() {
        deliveries = low;
    }
    deliveries
}

fn read_low(ioapic: &mut Ioapic, pin: u8) -> u32 {
    ioapic.mmio_write(IOREGSEL, 4, u32::from(REG_REDIRECTION_FIRST + 2 * pin));
    ioapic.mmio_read(IOWIN, 4)
}

const LINUX_TIMER: u64 = 0x0000_0000_0000_0030;
/// Vector 41h, fixed, physical, active low (bit 13), level (bit 15), APIC id 1.
const PCI_INTX: u64 = 0x0100_0000_0000_a041;

fn timer_delivery() -> Delivery {
    Delivery {
        gsi: 2,
        vector: 0x30,
        dest_apic_id: 0,
        dest_logical: false,
        mode: DeliveryMode::Fixed,
        level_triggered: false,
    }
}

#[test]
fn identification_registers() {
    let mut ioapic = Ioapic::new();
    ioapic.mmio_write(IOREGSEL, 4, u32::from(REG_VERSION));
    assert_eq!(ioapic.mmio_read(IOWIN, 4), 0x0017_0020);
    assert_eq!(ioapic.mmio_read(IOREGSEL, 4), 1);
    // Only the 4-bit id at 27:24 is writable; ARB reads the same id.
    ioapic.mmio_write(IOREGSEL, 4, u32::from(REG_ID));
    ioapic.mmio_write(IOWIN, 4, 0xffff_ffff);
    assert_eq!(ioapic.mmio_read(IOWIN, 4), 0x0f00_0000);
    ioapic.mmio_write(IOREGSEL, 4, u32::from(REG_ARBITRATION));
    assert_eq!(ioapic.mmio_read(IOWIN, 4), 0x0f00_0000);
    // VER is read-only; index 05h does not exist.
    ioapic.mmio_write(IOREGSEL, 4, u32::from(REG_VERSION));
    ioapic.mmio_write(IOWIN, 4, 0);
    assert_eq!(ioapic.mmio_read(IOWIN, 4), VERSION);
    ioapic.mmio_write(IOREGSEL, 4, 0x05);
    assert_eq!(ioapic.mmio_read(IOWIN, 4), 0);
    ioapic.mmio_write(IOREGSEL, 4, 0x40);
    assert_eq!(ioapic.mmio_read(IOWIN, 4), 0);
}

#[test]
fn entries_reset_masked() {
    let mut ioapic = Ioapic::new();
    for pin in 0..PINS as u8 {
        assert_eq!(read_low(&mut ioapic, pin), 0x0001_0000);
    }
    assert_eq!(ioapic.set_level(2, true), None);
}

#[test]
fn edge_entry_delivers_on_rising_edges_only() {
    let mut ioapic = Ioapic::new();
    assert!(program(&mut ioapic, 2, LINUX_TIMER).is_empty());
    assert_eq!(ioapic.set_level(2, true), Some(timer_delivery()));
    assert_eq!(ioapic.set_level(2, true), None, "no edge while held high");
    assert_eq!(ioapic.set_level(2, false), None);
    assert_eq!(ioapic.set_level(2, true), Some(timer_delivery()));
    // Edge entries have no remote IRR and ignore EOIs.
    assert_eq!(read_low(&mut ioapic, 2), 0x30);
    assert!(ioapic.eoi(0x30).is_empty());
}

#[test]
fn edge_while_masked_is_lost() {
    let mut ioapic = Ioapic::new();
    program(&mut ioapic, 2, LINUX_TIMER | RedirectionEntry::MASK);
    assert_eq!(ioapic.set_level(2, true), None);
    assert!(program(&mut ioapic, 2, LINUX_TIMER).is_empty());
    assert_eq!(ioapic.set_level(2, true), None);
}

#[test]
fn level_entry_waits_for_eoi() {
    let mut ioapic = Ioapic::new();
    program(&mut ioapic, 11, PCI_INTX);
    let expected = Delivery {
        gsi: 11,
        vector: 0x41,
        dest_apic_id: 1,
        dest_logical: false,
        mode: DeliveryMode::Fixed,
        level_triggered: true,
    };
    assert_eq!(ioapic.set_level(11, true), Some(expected));
    // Remote IRR (bit 14) is now visible: A041h | 4000h.
    assert_eq!(read_low(&mut ioapic, 11), 0xe041);
    assert_eq!(ioapic.set_level(11, true), None, "remote IRR holds it");
    // EOI while still asserted: sent again.
    let again = ioapic.eoi(0x41);
    assert_eq!(again.len(), 1);
    assert_eq!(again.iter().next(), Some(expected));
    // The device deasserts, the guest EOIs: nothing more.
    assert_eq!(ioapic.set_level(11, false), None);
    assert!(ioapic.eoi(0x41).is_empty());
    assert_eq!(read_low(&mut ioapic, 11), 0xa041);
    assert!(ioapic.eoi(0x42).is_empty());
}

#[test]
fn unmasking_an_asserted_level_line_delivers() {
    let mut ioapic = Ioapic::new();
    program(&mut ioapic, 11, PCI_INTX | RedirectionEntry::MASK);
    assert_eq!(ioapic.set_level(11, true), None);
    let deliveries = program(&mut ioapic, 11, PCI_INTX);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries.iter().next().map(|d| d.vector), Some(0x41));
}

#[test]
fn remote_irr_is_read_only_and_cleared_by_edge_mode() {
    let mut ioapic = Ioapic::new();
    program(
        &mut ioapic,
        11,
        PCI_INTX | RedirectionEntry::REMOTE_IRR | RedirectionEntry::MASK,
    );
    assert_eq!(read_low(&mut ioapic, 11), 0x1_a041);
    program(&mut ioapic, 11, PCI_INTX);
    ioapic.set_level(11, true);
    assert!(read_low(&mut ioapic, 11) & 0x4000 != 0);
    // Linux's fallback without an EOI register: flip to edge and back.
    program(
        &mut ioapic,
        11,
        (PCI_INTX & !RedirectionEntry::TRIGGER_LEVEL) | RedirectionEntry::MASK,
    );
    assert_eq!(read_low(&mut ioapic, 11) & 0x4000, 0);
    // Back to level and unmasked with the line still high: delivered again.
    assert_eq!(program(&mut ioapic, 11, PCI_INTX).len(), 1);
}

#[test]
fn eoi_register_and_shared_vectors() {
    let mut ioapic = Ioapic::new();
    program(&mut ioapic, 10, 0x0000_0000_0000_a050);
    program(&mut ioapic, 11, 0x0200_0000_0000_a050);
    assert!(ioapic.set_level(10, true).is_some());
    assert!(ioapic.set_level(11, true).is_some());
    let deliveries = ioapic.mmio_write(EOI, 4, 0x50);
    let gsis: Vec<u8> = deliveries.iter().map(|d| d.gsi).collect();
    assert_eq!(gsis, [10, 11]);
    assert_eq!(deliveries.iter().nth(1).map(|d| d.dest_apic_id), Some(2));
    // Reading the EOI register gives nothing; bytes other than 0 carry no vector.
    assert_eq!(ioapic.mmio_read(EOI, 4), 0);
    assert!(ioapic.mmio_write(EOI + 1, 1, 0x50).is_empty());
}

#[test]
fn reserved_bits_read_as_zero() {
    let mut ioapic = Ioapic::new();
    program(&mut ioapic, 3, 0xffff_ffff_fffe_ffff);
    assert_eq!(read_low(&mut ioapic, 3), 0x0000_afff);
    ioapic.mmio_write(IOREGSEL, 4, u32::from(REG_REDIRECTION_FIRST + 7));
    assert_eq!(ioapic.mmio_read(IOWIN, 4), 0xff00_0000);
    assert_eq!(
        ioapic.entry(3),
        Some(RedirectionEntry(0xff00_0000_0000_afff))
    );
    assert_eq!(ioapic.entry(24), None);
}

#[test]
fn narrow_and_bad_accesses() {
    let mut ioapic = Ioapic::new();
    // A byte write selects the register; a byte read returns one lane of it.
    ioapic.mmio_write(IOREGSEL, 1, 0x101);
    assert_eq!(ioapic.mmio_read(IOREGSEL, 4), 0x01);
    assert_eq!(ioapic.mmio_read(IOWIN, 1), 0x20);
    assert_eq!(ioapic.mmio_read(IOWIN + 2, 1), 0x17);
    assert_eq!(ioapic.mmio_read(IOWIN + 2, 2), 0x0017);
    // Misaligned, oversized and off-map accesses read 0 and change nothing.
    assert_eq!(ioapic.mmio_read(IOWIN + 2, 4), 0);
    assert_eq!(ioapic.mmio_read(IOWIN, 8), 0);
    assert_eq!(ioapic.mmio_read(0x20, 4), 0);
    assert_eq!(ioapic.mmio_read(u64::MAX, 4), 0);
    assert!(ioapic.mmio_write(IOREGSEL + 3, 2, 0xffff).is_empty());
    assert_eq!(ioapic.mmio_read(IOREGSEL, 4), 0x01);
    // A word write to the high half of an entry's low dword changes only the mask byte lane.
    ioapic.mmio_write(IOREGSEL, 4, u32::from(REG_REDIRECTION_FIRST));
    ioapic.mmio_write(IOWIN, 1, 0x30);
    ioapic.mmio_write(IOWIN + 2, 2, 0);
    assert_eq!(ioapic.mmio_read(IOWIN, 4), 0x30);
}

#[test]
fn unknown_gsis_are_ignored() {
    let mut ioapic = Ioapic::new();
    assert_eq!(ioapic.set_level(24, true), None);
    assert_eq!(ioapic.set_level(u32::MAX, true), None);
}

#[test]
fn redirection_entry_fields() {
    // Vector 41h, lowest priority (001b), logical, active low, level, masked, destination 03h.
    let entry = RedirectionEntry(0x0300_0000_0001_a941);
    assert_eq!(entry.vector(), 0x41);
    assert_eq!(entry.delivery_mode(), DeliveryMode::LowestPriority);
    assert_eq!(entry.dest_mode(), super::delivery::DestMode::Logical);
    assert_eq!(entry.trigger(), super::delivery::TriggerMode::Level);
    assert!(entry.masked());
    assert!(!entry.remote_irr());
    assert_eq!(entry.dest(), 0x03);
    assert_eq!(
        RedirectionEntry(0x0700).delivery_mode(),
        DeliveryMode::ExtInt
    );
}
