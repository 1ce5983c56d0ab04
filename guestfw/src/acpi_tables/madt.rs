//! The guest MADT (ACPI 6.5 §5.2.12): one Processor Local x2APIC structure per vCPU, the IOAPIC,
//! the ISA interrupt source overrides. The structure layouts are the `firmware` crate's, which
//! also parses them; only the writing is here.

use super::table::Table;
use super::{GuestPlatform, IsaOverride};
use core::mem::{offset_of, size_of};
use firmware::madt::{
    EntryHeader, InterruptOverrideEntry, IoApicEntry, LocalX2ApicEntry, MadtFixed, Polarity,
    Trigger,
};

/// MADT revision 5 (ACPI 6.3 onward; the structures used here are unchanged since).
pub const MADT_REVISION: u8 = 5;
/// Where every local APIC sits in xAPIC mode. The field is mandatory even for x2APIC guests.
pub const LOCAL_APIC_ADDRESS: u32 = 0xFEE0_0000;
/// Multiple APIC flags: PCAT_COMPAT (bit 0) stays clear because the guest gets no 8259 PICs.
/// With it set, Linux would expect to mask a real PIC pair and might route the timer through it.
pub const MADT_FLAGS: u32 = 0;

/// Structure types (Table 5.21).
const TYPE_IO_APIC: u8 = 1;
const TYPE_INTERRUPT_OVERRIDE: u8 = 2;
const TYPE_LOCAL_X2APIC: u8 = 9;
/// Local APIC flags bit 0, Enabled (Table 5.23).
const ENABLED: u32 = 1;

/// Bytes the MADT for `platform` takes.
pub fn madt_len(platform: &GuestPlatform<'_>) -> usize {
    size_of::<MadtFixed>()
        + platform.vcpu_apic_ids.len() * size_of::<LocalX2ApicEntry>()
        + usize::from(platform.ioapic.is_some()) * size_of::<IoApicEntry>()
        + platform.isa_overrides.len() * size_of::<InterruptOverrideEntry>()
}

/// MPS INTI flags (Table 5.26): polarity in bits 1:0, trigger mode in bits 3:2.
pub fn inti_flags(o: &IsaOverride) -> u16 {
    let polarity = match o.polarity {
        Polarity::BusDefault => 0b00,
        Polarity::ActiveHigh => 0b01,
        Polarity::Reserved => 0b10,
        Polarity::ActiveLow => 0b11,
    };
    let trigger = match o.trigger {
        Trigger::BusDefault => 0b00,
        Trigger::Edge => 0b01,
        Trigger::Reserved => 0b10,
        Trigger::Level => 0b11,
    };
    polarity | trigger << 2
}

fn entry_header(t: &mut Table<'_>, at: usize, kind: u8, len: usize) {
    t.u8(at + offset_of!(EntryHeader, kind), kind);
    t.u8(at + offset_of!(EntryHeader, length), len as u8);
}

/// Writes the MADT; `t` must be [`madt_len`] bytes.
pub fn write_madt(t: &mut Table<'_>, platform: &GuestPlatform<'_>) {
    t.sdt_header(*b"APIC", MADT_REVISION);
    t.u32(
        offset_of!(MadtFixed, local_apic_address),
        LOCAL_APIC_ADDRESS,
    );
    t.u32(offset_of!(MadtFixed, flags), MADT_FLAGS);
    let mut at = size_of::<MadtFixed>();

    // ACPI processor UID = vCPU index; Linux matches it against processor objects, of which
    // the DSDT has none, so it only has to be unique.
    for (uid, &apic_id) in platform.vcpu_apic_ids.iter().enumerate() {
        let len = size_of::<LocalX2ApicEntry>();
        entry_header(t, at, TYPE_LOCAL_X2APIC, len);
        t.u32(at + offset_of!(LocalX2ApicEntry, x2apic_id), apic_id);
        t.u32(at + offset_of!(LocalX2ApicEntry, flags), ENABLED);
        t.u32(
            at + offset_of!(LocalX2ApicEntry, acpi_processor_uid),
            uid as u32,
        );
        at += len;
    }
    if let Some(io) = platform.ioapic {
        let len = size_of::<IoApicEntry>();
        entry_header(t, at, TYPE_IO_APIC, len);
        t.u8(at + offset_of!(IoApicEntry, io_apic_id), io.id);
        t.u32(at + offset_of!(IoApicEntry, io_apic_address), io.address);
        t.u32(at + offset_of!(IoApicEntry, gsi_base), io.gsi_base);
        at += len;
    }
    for o in platform.isa_overrides {
        let len = size_of::<InterruptOverrideEntry>();
        entry_header(t, at, TYPE_INTERRUPT_OVERRIDE, len);
        t.u8(at + offset_of!(InterruptOverrideEntry, bus), 0); // ISA
        t.u8(at + offset_of!(InterruptOverrideEntry, source), o.irq);
        t.u32(at + offset_of!(InterruptOverrideEntry, gsi), o.gsi);
        t.u16(
            at + offset_of!(InterruptOverrideEntry, flags),
            inti_flags(o),
        );
        at += len;
    }
}
