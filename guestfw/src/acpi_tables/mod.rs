//! The guest's ACPI tables, built by the hypervisor in place of firmware (ACPI 6.5): RSDP
//! (§5.2.5), XSDT (§5.2.8), FADT (§5.2.9) with its FACS (§5.2.10), DSDT (§5.2.11.1) holding
//! `\_S5_` and, if the guest has PCI functions, the PCI host bridge `\_SB.PCI0` ([`pci_root`]),
//! MADT (§5.2.12) with x2APIC, IOAPIC and interrupt-override entries, and optionally an MCFG (PCI
//! Firmware spec 3.3 §4.1.2).
//!
//! [`write_acpi_tables`] lays them out in one byte slice that becomes guest memory at a given
//! guest-physical address (normally [`crate::linux::ACPI_TABLES_GPA`], 0xE0000, inside the BIOS
//! area Linux scans, and reserved in the e820 map):
//!
//! | offset | table |
//! |---|---|
//! | 0x00 | RSDP (36 bytes, 16-byte aligned) |
//! | 0x40 | FACS (64 bytes, 64-byte aligned) |
//! | 0x80 | DSDT, then FADT, MADT, MCFG, XSDT, each 16-byte aligned |
//!
//! The platform they describe is the one the hypervisor emulates: ACPI fixed hardware (PM1a
//! event/control blocks and a 24-bit PM timer at I/O ports, SCI on ISA IRQ 9), no 8259, one
//! IOAPIC, x2APIC CPUs. Structure layouts shared with the host-side parsers come from the
//! `firmware` crate; the host tests read the tables back with those parsers.

pub mod aml;
pub mod fadt;
pub mod madt;
pub mod pci_root;
pub mod resource;
pub mod root;
mod table;

pub use pci_root::PciRootConfig;

use core::fmt;
use core::mem::size_of;
use firmware::madt::{Polarity, Trigger};
use firmware::rsdp::RSDP_V2_LEN;
use table::Table;

/// The guest platform the tables describe.
#[derive(Debug, Clone, Copy)]
pub struct GuestPlatform<'a> {
    /// x2APIC id of each vCPU; index `i` gets ACPI processor UID `i`. vCPU 0 is the BSP.
    pub vcpu_apic_ids: &'a [u32],
    pub ioapic: Option<IoApicConfig>,
    /// I/O port of the PM1a event block (status + enable, 4 bytes).
    pub pm1a_evt: u16,
    /// I/O port of the PM1a control block (2 bytes).
    pub pm1a_cnt: u16,
    /// I/O port of the 24-bit ACPI PM timer (4 bytes, 3.579545 MHz).
    pub pm_tmr: u16,
    /// ISA IRQ of the SCI (also its GSI: no 8259, identity-mapped unless overridden).
    pub sci_irq: u8,
    /// ISA IRQs that reach the IOAPIC elsewhere or with non-ISA polarity/trigger.
    pub isa_overrides: &'a [IsaOverride],
    /// A CMOS RTC answers at ports 0x70/0x71 (clears the FADT's CMOS_RTC_NOT_PRESENT).
    pub rtc: bool,
    /// The PCIe ECAM window, if the guest gets one (then an MCFG is written).
    pub ecam: Option<EcamWindow>,
    /// The PCI host bridge `\_SB.PCI0` with its windows, if the guest gets PCI functions. Without
    /// it Linux does not scan PCI at all.
    pub pci_root: Option<PciRootConfig>,
    /// The guest's RAM (no table states it — the e820 map does — but the PCI windows must avoid
    /// it).
    pub ram: crate::guest_layout::RamLayout,
}

/// One IOAPIC (MADT type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicConfig {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// One interrupt source override (MADT type 2) for ISA IRQ `irq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaOverride {
    pub irq: u8,
    pub gsi: u32,
    pub polarity: Polarity,
    pub trigger: Trigger,
}

/// One PCIe ECAM window (an MCFG allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamWindow {
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

/// The IOAPIC of a PC: id 0 at 0xFEC00000 serving GSIs 0..23.
pub const STANDARD_IOAPIC: IoApicConfig = IoApicConfig {
    id: 0,
    address: 0xFEC0_0000,
    gsi_base: 0,
};

/// The overrides of a PC without 8259: the PIT's IRQ0 is wired to IOAPIC pin 2 (edge, high, as
/// ISA), and the SCI on IRQ9 is level-triggered and active high (ACPI's default for the SCI is
/// active low; the emulated PM block drives it high, as QEMU's does).
pub const STANDARD_ISA_OVERRIDES: [IsaOverride; 2] = [
    IsaOverride {
        irq: 0,
        gsi: 2,
        polarity: Polarity::ActiveHigh,
        trigger: Trigger::Edge,
    },
    IsaOverride {
        irq: 9,
        gsi: 9,
        polarity: Polarity::ActiveHigh,
        trigger: Trigger::Level,
    },
];

/// Standard I/O ports of the emulated ACPI fixed hardware.
pub const PM1A_EVT_PORT: u16 = 0x600;
pub const PM1A_CNT_PORT: u16 = 0x604;
pub const PM_TMR_PORT: u16 = 0x608;
pub const SCI_IRQ: u8 = 9;

impl<'a> GuestPlatform<'a> {
    /// The standard guest platform with the given vCPUs: IOAPIC, PM ports 0x600/0x604/0x608,
    /// SCI on IRQ 9, the standard overrides, an RTC, no ECAM, no PCI host bridge, no RAM (see
    /// [`Self::with_ram`]).
    pub const fn standard(vcpu_apic_ids: &'a [u32]) -> Self {
        Self {
            vcpu_apic_ids,
            ioapic: Some(STANDARD_IOAPIC),
            pm1a_evt: PM1A_EVT_PORT,
            pm1a_cnt: PM1A_CNT_PORT,
            pm_tmr: PM_TMR_PORT,
            sci_irq: SCI_IRQ,
            isa_overrides: &STANDARD_ISA_OVERRIDES,
            rtc: true,
            ecam: None,
            pci_root: None,
            ram: crate::guest_layout::RamLayout::new(0),
        }
    }

    /// This platform with `ram` bytes of RAM laid out as [`crate::guest_layout::RamLayout`] says.
    pub const fn with_ram(self, ram: u64) -> Self {
        Self {
            ram: crate::guest_layout::RamLayout::new(ram),
            ..self
        }
    }

    /// This platform with the PCI host bridge `\_SB.PCI0` in the DSDT, so that the guest scans
    /// bus 0 and finds its functions (see [`PciRootConfig`] for what the windows must avoid).
    pub const fn with_pci_root(self, pci_root: PciRootConfig) -> Self {
        Self {
            pci_root: Some(pci_root),
            ..self
        }
    }

    fn check(&self) -> Result<(), AcpiError> {
        if self.vcpu_apic_ids.is_empty() {
            return Err(AcpiError::NoVcpus);
        }
        for (i, &id) in self.vcpu_apic_ids.iter().enumerate() {
            // 0xFFFFFFFF marks an unused entry (Linux skips it).
            if id == u32::MAX || self.vcpu_apic_ids[..i].contains(&id) {
                return Err(AcpiError::BadApicId(id));
            }
        }
        if self.sci_irq >= ISA_IRQS {
            return Err(AcpiError::BadIsaIrq(self.sci_irq));
        }
        for (i, o) in self.isa_overrides.iter().enumerate() {
            if o.irq >= ISA_IRQS || self.isa_overrides[..i].iter().any(|p| p.irq == o.irq) {
                return Err(AcpiError::BadIsaIrq(o.irq));
            }
        }
        if self.ioapic.is_none() && !self.isa_overrides.is_empty() {
            return Err(AcpiError::OverridesWithoutIoApic);
        }
        if self.ecam.is_some_and(|e| e.start_bus > e.end_bus) {
            return Err(AcpiError::BadEcam);
        }
        if let Some(pci_root) = &self.pci_root {
            pci_root.check(self)?;
        }
        Ok(())
    }
}

const ISA_IRQS: u8 = 16;

/// Where the tables ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiTables {
    /// Guest-physical address of the RSDP (for `boot_params.acpi_rsdp_addr`).
    pub rsdp_gpa: u64,
    /// Bytes used from the start of the slice.
    pub len: usize,
    pub xsdt_gpa: u64,
    pub fadt_gpa: u64,
    pub facs_gpa: u64,
    pub dsdt_gpa: u64,
    pub madt_gpa: u64,
    pub mcfg_gpa: Option<u64>,
}

/// Why the tables could not be written; all are configuration mistakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    NoVcpus,
    /// An APIC id that repeats or is the reserved 0xFFFFFFFF.
    BadApicId(u32),
    /// An ISA IRQ above 15 or overridden twice.
    BadIsaIrq(u8),
    OverridesWithoutIoApic,
    /// An ECAM window whose start bus is above its end bus.
    BadEcam,
    /// A PCI memory window (given by its base) that is empty, wraps, lies on the wrong side of
    /// 4 GiB, or overlaps the IOAPIC, the MSI range or the ECAM window.
    BadPciWindow(u64),
    /// The base must be 64-byte aligned (for the FACS) and the tables must end below 4 GiB (the
    /// FADT also holds 32-bit pointers).
    BadBase(u64),
    /// The slice is too small for the tables.
    NoRoom {
        needed: usize,
        available: usize,
    },
    /// A write missed its table: a bug in this module.
    Internal,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::NoVcpus => f.write_str("guest has no vCPU"),
            AcpiError::BadApicId(id) => write!(f, "APIC id {id:#x} repeated or reserved"),
            AcpiError::BadIsaIrq(irq) => write!(f, "ISA IRQ {irq} invalid or overridden twice"),
            AcpiError::OverridesWithoutIoApic => {
                f.write_str("interrupt overrides given but no IOAPIC")
            }
            AcpiError::BadEcam => f.write_str("ECAM start bus above end bus"),
            AcpiError::BadPciWindow(base) => {
                write!(f, "PCI memory window at {base:#x} empty or misplaced")
            }
            AcpiError::BadBase(gpa) => write!(f, "ACPI tables cannot be placed at {gpa:#x}"),
            AcpiError::NoRoom { needed, available } => {
                write!(f, "ACPI tables need {needed} bytes, {available} available")
            }
            AcpiError::Internal => f.write_str("ACPI table writer bug: write out of bounds"),
        }
    }
}

const SDT_ALIGN: usize = 16;
const FOUR_GIB: u64 = 1 << 32;

/// Offsets of each table from the start of the slice.
struct Plan {
    rsdp: usize,
    facs: usize,
    dsdt: usize,
    fadt: usize,
    madt: usize,
    mcfg: Option<usize>,
    xsdt: usize,
    end: usize,
}

impl Plan {
    fn new(platform: &GuestPlatform<'_>, dsdt_len: usize) -> Self {
        let mut next = 0usize;
        let mut take = |len: usize, align: usize| {
            let at = next.next_multiple_of(align);
            next = at + len;
            at
        };
        let rsdp = take(RSDP_V2_LEN, SDT_ALIGN);
        let facs = take(size_of::<fadt::Facs>(), fadt::FACS_ALIGN);
        let dsdt = take(dsdt_len, SDT_ALIGN);
        let fadt = take(size_of::<fadt::Fadt>(), SDT_ALIGN);
        let madt = take(madt::madt_len(platform), SDT_ALIGN);
        let mcfg = platform.ecam.map(|_| take(root::MCFG_LEN, SDT_ALIGN));
        let xsdt = take(root::xsdt_len(2 + usize::from(mcfg.is_some())), SDT_ALIGN);
        Self {
            rsdp,
            facs,
            dsdt,
            fadt,
            madt,
            mcfg,
            xsdt,
            end: next,
        }
    }
}

/// Writes the tables for `platform` into `mem`, whose first byte is guest-physical `base_gpa`.
/// Bytes after the returned length are left alone.
pub fn write_acpi_tables(
    mem: &mut [u8],
    base_gpa: u64,
    platform: &GuestPlatform<'_>,
) -> Result<AcpiTables, AcpiError> {
    platform.check()?;
    let mut body = [0u8; root::DSDT_BODY_MAX];
    let body_len =
        root::dsdt_body(&mut body, platform.pci_root.as_ref()).ok_or(AcpiError::Internal)?;
    let body = body.get(..body_len).ok_or(AcpiError::Internal)?;
    let dsdt_len = firmware::sdt::SDT_HEADER_LEN + body_len;
    let plan = Plan::new(platform, dsdt_len);
    if plan.end > mem.len() {
        return Err(AcpiError::NoRoom {
            needed: plan.end,
            available: mem.len(),
        });
    }
    if !base_gpa.is_multiple_of(fadt::FACS_ALIGN as u64)
        || base_gpa
            .checked_add(plan.end as u64)
            .is_none_or(|end| end > FOUR_GIB)
    {
        return Err(AcpiError::BadBase(base_gpa));
    }
    let gpa = |offset: usize| base_gpa + offset as u64;
    // Padding between tables too: no stale bytes that a BIOS-area RSDP scan could misread.
    mem.get_mut(..plan.end).ok_or(AcpiError::Internal)?.fill(0);

    place(mem, plan.facs, size_of::<fadt::Facs>(), Kind::Plain, |t| {
        fadt::write_facs(t)
    })?;
    place(mem, plan.dsdt, dsdt_len, Kind::Sdt, |t| {
        root::write_dsdt(t, body)
    })?;
    place(mem, plan.fadt, size_of::<fadt::Fadt>(), Kind::Sdt, |t| {
        fadt::write_fadt(t, platform, gpa(plan.dsdt), gpa(plan.facs))
    })?;
    place(mem, plan.madt, madt::madt_len(platform), Kind::Sdt, |t| {
        madt::write_madt(t, platform)
    })?;
    if let (Some(at), Some(ecam)) = (plan.mcfg, platform.ecam) {
        place(mem, at, root::MCFG_LEN, Kind::Sdt, |t| {
            root::write_mcfg(t, &ecam)
        })?;
    }
    let listed = [Some(plan.fadt), Some(plan.madt), plan.mcfg];
    let mut entries = [0u64; 3];
    let mut count = 0;
    for (slot, at) in entries.iter_mut().zip(listed.into_iter().flatten()) {
        *slot = gpa(at);
        count += 1;
    }
    let entries = entries.get(..count).ok_or(AcpiError::Internal)?;
    place(mem, plan.xsdt, root::xsdt_len(count), Kind::Sdt, |t| {
        root::write_xsdt(t, entries)
    })?;
    place(mem, plan.rsdp, RSDP_V2_LEN, Kind::Plain, |t| {
        root::write_rsdp(t, gpa(plan.xsdt))
    })?;
    Ok(AcpiTables {
        rsdp_gpa: gpa(plan.rsdp),
        len: plan.end,
        xsdt_gpa: gpa(plan.xsdt),
        fadt_gpa: gpa(plan.fadt),
        facs_gpa: gpa(plan.facs),
        dsdt_gpa: gpa(plan.dsdt),
        madt_gpa: gpa(plan.madt),
        mcfg_gpa: plan.mcfg.map(gpa),
    })
}

/// Whether a structure has the SDT header whose checksum [`place`] must set.
enum Kind {
    Sdt,
    Plain,
}

/// Zeroes `mem[offset..offset + len]`, lets `write` fill it, and seals an SDT's checksum.
fn place(
    mem: &mut [u8],
    offset: usize,
    len: usize,
    kind: Kind,
    write: impl FnOnce(&mut Table<'_>),
) -> Result<(), AcpiError> {
    let bytes = offset
        .checked_add(len)
        .and_then(|end| mem.get_mut(offset..end))
        .ok_or(AcpiError::Internal)?;
    let mut t = Table::new(bytes);
    write(&mut t);
    let complete = match kind {
        Kind::Sdt => t.finish_sdt(),
        Kind::Plain => t.finish(),
    };
    complete.then_some(()).ok_or(AcpiError::Internal)
}

#[cfg(test)]
mod tests;
