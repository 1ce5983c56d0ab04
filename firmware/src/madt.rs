//! Multiple APIC Description Table, signature `APIC` (ACPI 6.5 §5.2.12):
//! which CPUs exist (local APIC / x2APIC ids), the IOAPICs, and how ISA IRQs
//! map onto global system interrupts.

use crate::bytes::{u16_at, u32_at, u64_at, u8_at};
use crate::sdt::{Sdt, SdtHeader, Signature};
use crate::Error;
use core::mem::{offset_of, size_of};

/// The MADT's fixed part (§5.2.12, Table 5.19); interrupt controller
/// structures follow it.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct MadtFixed {
    /// Standard header, signature `APIC`.
    pub header: SdtHeader,
    /// 32-bit physical address of every CPU's local APIC.
    pub local_apic_address: u32,
    /// Multiple APIC flags (Table 5.20); bit 0 is PCAT_COMPAT.
    pub flags: u32,
}

/// Header common to every interrupt controller structure (§5.2.12, Table 5.21).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct EntryHeader {
    /// Structure type (Table 5.21).
    pub kind: u8,
    /// Length of this structure in bytes, header included.
    pub length: u8,
}

/// Processor Local APIC structure, type 0 (§5.2.12.2, Table 5.22).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct LocalApicEntry {
    /// Type 0, length 8.
    pub header: EntryHeader,
    /// Matches the processor's `_UID` in the namespace.
    pub acpi_processor_uid: u8,
    /// The processor's local APIC id.
    pub apic_id: u8,
    /// Local APIC flags (Table 5.23): bit 0 Enabled, bit 1 Online Capable.
    pub flags: u32,
}

/// I/O APIC structure, type 1 (§5.2.12.3, Table 5.24).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct IoApicEntry {
    /// Type 1, length 12.
    pub header: EntryHeader,
    /// The I/O APIC's id.
    pub io_apic_id: u8,
    /// Reserved, 0.
    pub reserved: u8,
    /// 32-bit physical address of its registers.
    pub io_apic_address: u32,
    /// First global system interrupt number of its inputs.
    pub gsi_base: u32,
}

/// Interrupt Source Override structure, type 2 (§5.2.12.5, Table 5.25).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct InterruptOverrideEntry {
    /// Type 2, length 10.
    pub header: EntryHeader,
    /// 0: ISA.
    pub bus: u8,
    /// Bus-relative interrupt source (the ISA IRQ).
    pub source: u8,
    /// The global system interrupt it is wired to.
    pub gsi: u32,
    /// MPS INTI flags (Table 5.26).
    pub flags: u16,
}

/// Local APIC Address Override structure, type 5 (§5.2.12.8, Table 5.30).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct LocalApicAddressOverrideEntry {
    /// Type 5, length 12.
    pub header: EntryHeader,
    /// Reserved, 0.
    pub reserved: u16,
    /// 64-bit physical address of the local APIC, replacing the 32-bit one.
    pub local_apic_address: u64,
}

/// Processor Local x2APIC structure, type 9 (§5.2.12.12, Table 5.37).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct LocalX2ApicEntry {
    /// Type 9, length 16.
    pub header: EntryHeader,
    /// Reserved, 0.
    pub reserved: u16,
    /// The processor's 32-bit x2APIC id.
    pub x2apic_id: u32,
    /// Same flags as the local APIC structure (Table 5.23).
    pub flags: u32,
    /// Matches the processor's `_UID`.
    pub acpi_processor_uid: u32,
}

const _: () = {
    assert!(size_of::<MadtFixed>() == 44);
    assert!(offset_of!(MadtFixed, local_apic_address) == 36);
    assert!(offset_of!(MadtFixed, flags) == 40);
    assert!(size_of::<EntryHeader>() == 2);
    assert!(offset_of!(EntryHeader, length) == 1);
    assert!(size_of::<LocalApicEntry>() == 8);
    assert!(offset_of!(LocalApicEntry, acpi_processor_uid) == 2);
    assert!(offset_of!(LocalApicEntry, apic_id) == 3);
    assert!(offset_of!(LocalApicEntry, flags) == 4);
    assert!(size_of::<IoApicEntry>() == 12);
    assert!(offset_of!(IoApicEntry, io_apic_id) == 2);
    assert!(offset_of!(IoApicEntry, io_apic_address) == 4);
    assert!(offset_of!(IoApicEntry, gsi_base) == 8);
    assert!(size_of::<InterruptOverrideEntry>() == 10);
    assert!(offset_of!(InterruptOverrideEntry, bus) == 2);
    assert!(offset_of!(InterruptOverrideEntry, source) == 3);
    assert!(offset_of!(InterruptOverrideEntry, gsi) == 4);
    assert!(offset_of!(InterruptOverrideEntry, flags) == 8);
    assert!(size_of::<LocalApicAddressOverrideEntry>() == 12);
    assert!(offset_of!(LocalApicAddressOverrideEntry, local_apic_address) == 4);
    assert!(size_of::<LocalX2ApicEntry>() == 16);
    assert!(offset_of!(LocalX2ApicEntry, x2apic_id) == 4);
    assert!(offset_of!(LocalX2ApicEntry, flags) == 8);
    assert!(offset_of!(LocalX2ApicEntry, acpi_processor_uid) == 12);
};

/// Structure type codes (§5.2.12, Table 5.21).
mod kind {
    pub const LOCAL_APIC: u8 = 0;
    pub const IO_APIC: u8 = 1;
    pub const INTERRUPT_OVERRIDE: u8 = 2;
    pub const LOCAL_APIC_ADDRESS_OVERRIDE: u8 = 5;
    pub const LOCAL_X2APIC: u8 = 9;
}

/// Local APIC flags bit 0: the processor is usable now (Table 5.23).
const LAPIC_ENABLED: u32 = 1 << 0;
/// Local APIC flags bit 1: the processor can be brought online later
/// (ACPI 6.3+); only meaningful when Enabled is clear.
const LAPIC_ONLINE_CAPABLE: u32 = 1 << 1;
/// Multiple APIC flags bit 0: the system also has dual 8259s (Table 5.20).
const PCAT_COMPAT: u32 = 1 << 0;

/// Most CPUs kept in a [`Madt`], enabled or not. Two-socket EPYC servers have up to 768
/// threads, and firmware (QEMU too) also lists the absent, hot-pluggable ones: QEMU's
/// `-smp maxcpus=512` makes 512 entries.
pub const MAX_CPUS: usize = 1024;
/// Most IOAPICs kept in a [`Madt`].
pub const MAX_IOAPICS: usize = 16;
/// Most interrupt source overrides kept in a [`Madt`] (there are at most 16
/// ISA IRQs).
pub const MAX_OVERRIDES: usize = 16;

/// One processor, from a local APIC (type 0) or local x2APIC (type 9) entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// ACPI processor UID.
    pub uid: u32,
    /// Local APIC id (8-bit for type 0, 32-bit x2APIC id for type 9).
    pub apic_id: u32,
    /// Usable now.
    pub enabled: bool,
    /// Not enabled now but may be hot-added.
    pub online_capable: bool,
}

impl Cpu {
    fn from_flags(uid: u32, apic_id: u32, flags: u32) -> Self {
        Self {
            uid,
            apic_id,
            enabled: flags & LAPIC_ENABLED != 0,
            online_capable: flags & LAPIC_ENABLED == 0 && flags & LAPIC_ONLINE_CAPABLE != 0,
        }
    }
}

/// One I/O APIC (type 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoApic {
    /// I/O APIC id.
    pub id: u8,
    /// Physical address of its registers.
    pub address: u32,
    /// First global system interrupt it serves.
    pub gsi_base: u32,
}

/// Interrupt input polarity, MPS INTI flags bits 1:0 (Table 5.26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// 00: as the bus specifies (ISA: active high).
    BusDefault,
    /// 01.
    ActiveHigh,
    /// 10: reserved.
    Reserved,
    /// 11.
    ActiveLow,
}

/// Interrupt trigger mode, MPS INTI flags bits 3:2 (Table 5.26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// 00: as the bus specifies (ISA: edge).
    BusDefault,
    /// 01.
    Edge,
    /// 10: reserved.
    Reserved,
    /// 11.
    Level,
}

/// One interrupt source override (type 2): ISA IRQ `source` arrives at `gsi`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptOverride {
    /// Bus, 0 for ISA.
    pub bus: u8,
    /// The ISA IRQ.
    pub source: u8,
    /// The global system interrupt.
    pub gsi: u32,
    /// MPS INTI flags (Table 5.26).
    pub flags: u16,
}

impl InterruptOverride {
    /// MPS INTI flags bits 1:0.
    pub const fn polarity(&self) -> Polarity {
        match self.flags & 0b11 {
            0 => Polarity::BusDefault,
            1 => Polarity::ActiveHigh,
            2 => Polarity::Reserved,
            _ => Polarity::ActiveLow,
        }
    }

    /// MPS INTI flags bits 3:2.
    pub const fn trigger(&self) -> Trigger {
        match (self.flags >> 2) & 0b11 {
            0 => Trigger::BusDefault,
            1 => Trigger::Edge,
            2 => Trigger::Reserved,
            _ => Trigger::Level,
        }
    }
}

/// One decoded interrupt controller structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MadtEntry {
    /// Type 0 or type 9.
    Cpu(Cpu),
    /// Type 1.
    IoApic(IoApic),
    /// Type 2.
    InterruptOverride(InterruptOverride),
    /// Type 5: 64-bit local APIC address.
    LocalApicAddress(u64),
    /// Any other type, skipped by its length.
    Other {
        /// Structure type.
        kind: u8,
        /// Its length.
        length: u8,
    },
}

/// Iterator over the interrupt controller structures of a MADT. Yields an
/// error (and then stops) at the first structure whose length is too small
/// for its type or runs past the table.
pub struct MadtEntries<'a> {
    table: &'a [u8],
    offset: usize,
}

impl<'a> MadtEntries<'a> {
    /// The structures of a validated MADT.
    pub fn new(madt: &Sdt<'a>) -> Self {
        Self {
            table: madt.bytes(),
            offset: size_of::<MadtFixed>(),
        }
    }

    fn decode(&self) -> Result<(MadtEntry, usize), Error> {
        let bad = Error::BadEntryLength {
            sig: Signature::MADT,
            offset: self.offset,
        };
        let rest = self.table.get(self.offset..).unwrap_or(&[]);
        let kind = u8_at(rest, offset_of!(EntryHeader, kind)).ok_or(bad)?;
        let length = u8_at(rest, offset_of!(EntryHeader, length)).ok_or(bad)?;
        let e = rest.get(..usize::from(length)).ok_or(bad)?;
        let minimum = match kind {
            kind::LOCAL_APIC => size_of::<LocalApicEntry>(),
            kind::IO_APIC => size_of::<IoApicEntry>(),
            kind::INTERRUPT_OVERRIDE => size_of::<InterruptOverrideEntry>(),
            kind::LOCAL_APIC_ADDRESS_OVERRIDE => size_of::<LocalApicAddressOverrideEntry>(),
            kind::LOCAL_X2APIC => size_of::<LocalX2ApicEntry>(),
            _ => size_of::<EntryHeader>(),
        };
        if e.len() < minimum {
            return Err(bad);
        }
        let entry = match kind {
            kind::LOCAL_APIC => MadtEntry::Cpu(Cpu::from_flags(
                u8_at(e, offset_of!(LocalApicEntry, acpi_processor_uid))
                    .ok_or(bad)?
                    .into(),
                u8_at(e, offset_of!(LocalApicEntry, apic_id))
                    .ok_or(bad)?
                    .into(),
                u32_at(e, offset_of!(LocalApicEntry, flags)).ok_or(bad)?,
            )),
            kind::LOCAL_X2APIC => MadtEntry::Cpu(Cpu::from_flags(
                u32_at(e, offset_of!(LocalX2ApicEntry, acpi_processor_uid)).ok_or(bad)?,
                u32_at(e, offset_of!(LocalX2ApicEntry, x2apic_id)).ok_or(bad)?,
                u32_at(e, offset_of!(LocalX2ApicEntry, flags)).ok_or(bad)?,
            )),
            kind::IO_APIC => MadtEntry::IoApic(IoApic {
                id: u8_at(e, offset_of!(IoApicEntry, io_apic_id)).ok_or(bad)?,
                address: u32_at(e, offset_of!(IoApicEntry, io_apic_address)).ok_or(bad)?,
                gsi_base: u32_at(e, offset_of!(IoApicEntry, gsi_base)).ok_or(bad)?,
            }),
            kind::INTERRUPT_OVERRIDE => MadtEntry::InterruptOverride(InterruptOverride {
                bus: u8_at(e, offset_of!(InterruptOverrideEntry, bus)).ok_or(bad)?,
                source: u8_at(e, offset_of!(InterruptOverrideEntry, source)).ok_or(bad)?,
                gsi: u32_at(e, offset_of!(InterruptOverrideEntry, gsi)).ok_or(bad)?,
                flags: u16_at(e, offset_of!(InterruptOverrideEntry, flags)).ok_or(bad)?,
            }),
            kind::LOCAL_APIC_ADDRESS_OVERRIDE => MadtEntry::LocalApicAddress(
                u64_at(
                    e,
                    offset_of!(LocalApicAddressOverrideEntry, local_apic_address),
                )
                .ok_or(bad)?,
            ),
            _ => MadtEntry::Other { kind, length },
        };
        Ok((entry, e.len()))
    }
}

impl Iterator for MadtEntries<'_> {
    type Item = Result<MadtEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.table.len() {
            return None;
        }
        match self.decode() {
            Ok((entry, length)) => {
                self.offset += length;
                Some(Ok(entry))
            }
            Err(e) => {
                self.offset = self.table.len(); // stop after the first error
                Some(Err(e))
            }
        }
    }
}

/// Fixed-capacity list: `items[..count]` are valid, `dropped` did not fit.
#[derive(Clone, Copy, Debug)]
struct Bounded<T, const N: usize> {
    items: [T; N],
    count: usize,
    dropped: usize,
}

impl<T: Copy + Default, const N: usize> Bounded<T, N> {
    fn new() -> Self {
        Self {
            items: [T::default(); N],
            count: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, item: T) {
        match self.items.get_mut(self.count) {
            Some(slot) => {
                *slot = item;
                self.count += 1;
            }
            None => self.dropped += 1,
        }
    }

    fn as_slice(&self) -> &[T] {
        self.items.get(..self.count).unwrap_or(&[])
    }
}

/// A decoded MADT.
#[derive(Clone, Debug)]
pub struct Madt {
    local_apic_address: u64,
    flags: u32,
    cpus: Bounded<Cpu, MAX_CPUS>,
    io_apics: Bounded<IoApic, MAX_IOAPICS>,
    overrides: Bounded<InterruptOverride, MAX_OVERRIDES>,
}

impl Madt {
    /// Decodes a validated table; the signature must be `APIC`.
    pub fn parse(sdt: &Sdt<'_>) -> Result<Self, Error> {
        let sig = sdt.signature();
        if sig != Signature::MADT {
            return Err(Error::WrongSignature {
                expected: Signature::MADT,
                found: sig,
            });
        }
        let t = sdt.bytes();
        let truncated = Error::Truncated { sig };
        let mut madt = Madt {
            local_apic_address: u32_at(t, offset_of!(MadtFixed, local_apic_address))
                .ok_or(truncated)?
                .into(),
            flags: u32_at(t, offset_of!(MadtFixed, flags)).ok_or(truncated)?,
            cpus: Bounded::new(),
            io_apics: Bounded::new(),
            overrides: Bounded::new(),
        };
        for entry in MadtEntries::new(sdt) {
            match entry? {
                MadtEntry::Cpu(cpu) => madt.cpus.push(cpu),
                MadtEntry::IoApic(io) => madt.io_apics.push(io),
                MadtEntry::InterruptOverride(o) => madt.overrides.push(o),
                MadtEntry::LocalApicAddress(a) => madt.local_apic_address = a,
                MadtEntry::Other { .. } => {}
            }
        }
        Ok(madt)
    }

    /// Physical address of the local APIC (the type-5 override if present).
    pub fn local_apic_address(&self) -> u64 {
        self.local_apic_address
    }

    /// Multiple APIC flags (Table 5.20).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The system also has dual 8259 PICs, which must be masked before the
    /// IOAPICs are used (Table 5.20 PCAT_COMPAT).
    pub fn pcat_compat(&self) -> bool {
        self.flags & PCAT_COMPAT != 0
    }

    /// All processors in table order, enabled or not, from type 0 and type 9
    /// entries alike.
    pub fn cpus(&self) -> &[Cpu] {
        self.cpus.as_slice()
    }

    /// The I/O APICs.
    pub fn io_apics(&self) -> &[IoApic] {
        self.io_apics.as_slice()
    }

    /// The interrupt source overrides.
    pub fn overrides(&self) -> &[InterruptOverride] {
        self.overrides.as_slice()
    }

    /// The GSI an ISA IRQ arrives at: its override, or the identity mapping
    /// (§5.2.12.5: ISA IRQs without an override are identity-mapped).
    pub fn isa_irq_to_gsi(&self, irq: u8) -> u32 {
        self.overrides()
            .iter()
            .find(|o| o.bus == 0 && o.source == irq)
            .map_or(u32::from(irq), |o| o.gsi)
    }

    /// Entries that did not fit the fixed capacities (CPUs, IOAPICs,
    /// overrides). Non-zero means the kernel should say so on the console.
    pub fn dropped(&self) -> usize {
        self.cpus.dropped + self.io_apics.dropped + self.overrides.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{table, Blob};

    /// Pushes a type-0 entry.
    fn local_apic(b: &mut Blob, uid: u8, apic_id: u8, flags: u32) {
        b.u8(0).u8(8).u8(uid).u8(apic_id).u32(flags);
    }

    /// Pushes a type-9 entry.
    fn local_x2apic(b: &mut Blob, uid: u32, x2apic_id: u32, flags: u32) {
        b.u8(9).u8(16).u16(0).u32(x2apic_id).u32(flags).u32(uid);
    }

    /// A MADT like QEMU q35 builds for `-smp 2`: two CPUs, one IOAPIC at
    /// 0xFEC00000, overrides IRQ0->GSI2 and the SCI (IRQ9, level, high),
    /// plus a local APIC NMI entry (type 4) that is skipped.
    fn qemu_like_madt() -> Vec<u8> {
        let mut b = Blob::default();
        b.u32(0xFEE0_0000).u32(1); // local APIC address, PCAT_COMPAT
        local_apic(&mut b, 0, 0, 1);
        local_apic(&mut b, 1, 1, 1);
        b.u8(1).u8(12).u8(0).u8(0).u32(0xFEC0_0000).u32(0);
        b.u8(2).u8(10).u8(0).u8(0).u32(2).u16(0);
        b.u8(2).u8(10).u8(0).u8(9).u32(9).u16(0x000D);
        b.u8(4).u8(6).u8(0xFF).u16(0).u8(1);
        table(*b"APIC", 3, &b.0)
    }

    #[test]
    fn decodes_qemu_like_madt() {
        let t = qemu_like_madt();
        let madt = Madt::parse(&Sdt::from_bytes(&t).unwrap()).unwrap();
        assert_eq!(madt.local_apic_address(), 0xFEE0_0000);
        assert!(madt.pcat_compat());
        assert_eq!(
            madt.cpus(),
            [
                Cpu {
                    uid: 0,
                    apic_id: 0,
                    enabled: true,
                    online_capable: false
                },
                Cpu {
                    uid: 1,
                    apic_id: 1,
                    enabled: true,
                    online_capable: false
                },
            ]
        );
        assert_eq!(
            madt.io_apics(),
            [IoApic {
                id: 0,
                address: 0xFEC0_0000,
                gsi_base: 0
            }]
        );
        assert_eq!(madt.overrides().len(), 2);
        assert_eq!(madt.isa_irq_to_gsi(0), 2);
        assert_eq!(madt.isa_irq_to_gsi(9), 9);
        assert_eq!(madt.isa_irq_to_gsi(4), 4);
        assert_eq!(madt.dropped(), 0);
    }

    #[test]
    fn local_apic_flags() {
        let mut b = Blob::default();
        b.u32(0xFEE0_0000).u32(0);
        local_apic(&mut b, 7, 0x12, 0b00); // absent
        local_apic(&mut b, 8, 0x13, 0b10); // online capable
        local_apic(&mut b, 9, 0x14, 0b11); // enabled (online capable ignored)
        let t = table(*b"APIC", 5, &b.0);
        let madt = Madt::parse(&Sdt::from_bytes(&t).unwrap()).unwrap();
        assert!(!madt.pcat_compat());
        let flags: Vec<_> = madt
            .cpus()
            .iter()
            .map(|c| (c.uid, c.apic_id, c.enabled, c.online_capable))
            .collect();
        assert_eq!(
            flags,
            [
                (7, 0x12, false, false),
                (8, 0x13, false, true),
                (9, 0x14, true, false)
            ]
        );
    }

    #[test]
    fn x2apic_entries_and_address_override() {
        let mut b = Blob::default();
        b.u32(0xFEE0_0000).u32(0);
        local_x2apic(&mut b, 0x1_0000, 0x0000_0300, 1);
        b.u8(5).u8(12).u16(0).u64(0x1_FEE0_0000);
        let t = table(*b"APIC", 5, &b.0);
        let madt = Madt::parse(&Sdt::from_bytes(&t).unwrap()).unwrap();
        assert_eq!(
            madt.cpus(),
            [Cpu {
                uid: 0x1_0000,
                apic_id: 0x300,
                enabled: true,
                online_capable: false
            }]
        );
        assert_eq!(madt.local_apic_address(), 0x1_FEE0_0000);
    }

    #[test]
    fn inti_flags_decode() {
        let o = |flags| InterruptOverride {
            bus: 0,
            source: 9,
            gsi: 9,
            flags,
        };
        assert_eq!(o(0x0000).polarity(), Polarity::BusDefault);
        assert_eq!(o(0x0000).trigger(), Trigger::BusDefault);
        assert_eq!(o(0x000D).polarity(), Polarity::ActiveHigh); // 0b11_01
        assert_eq!(o(0x000D).trigger(), Trigger::Level);
        assert_eq!(o(0x0007).polarity(), Polarity::ActiveLow); // 0b01_11
        assert_eq!(o(0x0007).trigger(), Trigger::Edge);
        assert_eq!(o(0x000A).polarity(), Polarity::Reserved); // 0b10_10
        assert_eq!(o(0x000A).trigger(), Trigger::Reserved);
    }

    #[test]
    fn too_many_cpus_are_counted_not_stored() {
        let mut b = Blob::default();
        b.u32(0xFEE0_0000).u32(0);
        for i in 0..(MAX_CPUS as u32 + 3) {
            local_x2apic(&mut b, i, i, 1);
        }
        let t = table(*b"APIC", 5, &b.0);
        let madt = Madt::parse(&Sdt::from_bytes(&t).unwrap()).unwrap();
        assert_eq!(madt.cpus().len(), MAX_CPUS);
        assert_eq!(madt.dropped(), 3);
    }

    /// QEMU's MADT for `-smp 1,maxcpus=512,sockets=2,cores=128,threads=2` plus CPUs plugged
    /// into socket 1: type-0 entries below APIC id 255, type-9 entries from there, 512 in all,
    /// and the enabled ones past the first 256 entries must not be lost.
    #[test]
    fn a_two_socket_table_keeps_cpus_past_apic_id_255() {
        let mut b = Blob::default();
        b.u32(0xFEE0_0000).u32(1);
        for id in 0..512u32 {
            let flags = u32::from(id == 0 || id >= 256 + 14);
            match u8::try_from(id) {
                Ok(small) if small != 0xFF => local_apic(&mut b, small, small, flags),
                _ => local_x2apic(&mut b, id, id, flags),
            }
        }
        let t = table(*b"APIC", 5, &b.0);
        let madt = Madt::parse(&Sdt::from_bytes(&t).unwrap()).unwrap();
        assert_eq!(madt.cpus().len(), 512);
        assert_eq!(madt.dropped(), 0);
        let enabled: Vec<u32> = madt
            .cpus()
            .iter()
            .filter(|c| c.enabled)
            .map(|c| c.apic_id)
            .collect();
        assert_eq!(enabled.len(), 1 + 512 - 270);
        assert_eq!(enabled[..2], [0, 270]);
        assert_eq!(enabled.last(), Some(&511));
    }

    #[test]
    fn garbage_entry_lengths_are_errors() {
        let entry_at = 44;
        for (entry, why) in [
            (&[0u8, 0][..], "zero length would loop forever"),
            (&[0, 4, 0, 0][..], "type 0 needs 8 bytes"),
            (&[1, 200, 0, 0][..], "runs past the table"),
            (&[9][..], "header cut off"),
        ] {
            let mut b = Blob::default();
            b.u32(0xFEE0_0000).u32(0).raw(entry);
            let t = table(*b"APIC", 5, &b.0);
            let err = Madt::parse(&Sdt::from_bytes(&t).unwrap()).unwrap_err();
            assert_eq!(
                err,
                Error::BadEntryLength {
                    sig: Signature::MADT,
                    offset: entry_at
                },
                "{why}"
            );
        }
    }

    #[test]
    fn wrong_or_truncated_table() {
        let t = table(*b"APIC", 5, &[0; 4]);
        assert_eq!(
            Madt::parse(&Sdt::from_bytes(&t).unwrap()).unwrap_err(),
            Error::Truncated {
                sig: Signature::MADT
            }
        );
        let t = table(*b"MCFG", 1, &[0; 8]);
        assert!(matches!(
            Madt::parse(&Sdt::from_bytes(&t).unwrap()),
            Err(Error::WrongSignature { .. })
        ));
    }

    #[test]
    fn entries_iterator_reports_unknown_types() {
        let mut b = Blob::default();
        b.u32(0).u32(0).u8(0x7F).u8(3).u8(0);
        let t = table(*b"APIC", 5, &b.0);
        let sdt = Sdt::from_bytes(&t).unwrap();
        let entries: Vec<_> = MadtEntries::new(&sdt).collect();
        assert_eq!(
            entries,
            [Ok(MadtEntry::Other {
                kind: 0x7F,
                length: 3
            })]
        );
    }
}
