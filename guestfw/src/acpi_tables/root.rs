//! The RSDP (ACPI 6.5 §5.2.5), the XSDT (§5.2.8), the MCFG (PCI Firmware spec 3.3 §4.1.2) and
//! the DSDT wrapper (§5.2.11.1). Layouts are the `firmware` crate's.

use super::aml::Aml;
use super::pci_root::{write_pci_root, PciRootConfig};
use super::table::{Table, OEM_ID};
use super::EcamWindow;
use core::mem::{offset_of, size_of};
use firmware::mcfg::{McfgAllocation, McfgFixed};
use firmware::rsdp::{Rsdp, RSDP_SIGNATURE, RSDP_V1_LEN, RSDP_V2_LEN};
use firmware::sdt::SDT_HEADER_LEN;

/// RSDP revision 2: ACPI 2.0+ layout with the XSDT address.
pub const RSDP_REVISION: u8 = 2;
pub const XSDT_REVISION: u8 = 1;
pub const MCFG_REVISION: u8 = 1;
/// DSDT revision 2: AML integers are 64 bits wide (§5.2.11.1).
pub const DSDT_REVISION: u8 = 2;

/// Writes the RSDP pointing at the XSDT. There is no RSDT (its address stays 0): an OS that
/// understands revision 2 uses the XSDT (§5.2.5.3), and Linux does.
pub fn write_rsdp(t: &mut Table<'_>, xsdt: u64) {
    t.bytes(offset_of!(Rsdp, signature), &RSDP_SIGNATURE);
    t.bytes(offset_of!(Rsdp, oem_id), &OEM_ID);
    t.u8(offset_of!(Rsdp, revision), RSDP_REVISION);
    t.u32(offset_of!(Rsdp, length), RSDP_V2_LEN as u32);
    t.u64(offset_of!(Rsdp, xsdt_address), xsdt);
    // The first checksum covers the ACPI 1.0 part; the extended one everything, the first
    // checksum included, so it goes second.
    t.checksum(offset_of!(Rsdp, checksum), RSDP_V1_LEN);
    t.checksum(offset_of!(Rsdp, extended_checksum), RSDP_V2_LEN);
}

pub fn xsdt_len(tables: usize) -> usize {
    SDT_HEADER_LEN + tables * 8
}

/// Writes the XSDT listing `tables` (guest-physical addresses).
pub fn write_xsdt(t: &mut Table<'_>, tables: &[u64]) {
    t.sdt_header(*b"XSDT", XSDT_REVISION);
    for (i, &gpa) in tables.iter().enumerate() {
        t.u64(SDT_HEADER_LEN + i * 8, gpa);
    }
}

pub const MCFG_LEN: usize = size_of::<McfgFixed>() + size_of::<McfgAllocation>();

/// Writes an MCFG with one ECAM window.
pub fn write_mcfg(t: &mut Table<'_>, ecam: &EcamWindow) {
    t.sdt_header(*b"MCFG", MCFG_REVISION);
    let at = size_of::<McfgFixed>();
    t.u64(at + offset_of!(McfgAllocation, base_address), ecam.base);
    t.u16(at + offset_of!(McfgAllocation, segment), ecam.segment);
    t.u8(at + offset_of!(McfgAllocation, start_bus), ecam.start_bus);
    t.u8(at + offset_of!(McfgAllocation, end_bus), ecam.end_bus);
}

/// Largest DSDT body [`dsdt_body`] may produce: `\_S5_` takes 14 bytes, the PCI host bridge
/// with both memory windows 200.
pub const DSDT_BODY_MAX: usize = 320;

/// SLP_TYP value of S5 (soft off) that the PM1a control register emulation must recognise
/// together with SLP_EN (bit 13) as "power off".
pub const SLP_TYP_S5: u64 = 5;

/// The DSDT's AML: `Name(_S5_, Package(){5, 5, 0, 0})`, the sleep-type values Linux writes to
/// PM1a/PM1b_CNT.SLP_TYP to power off (§7.4.2), and the PCI host bridge if the guest has one.
/// Nothing else: the devices Linux needs (UART, PIT, IOAPIC) it finds at their legacy places or
/// through the MADT. Returns the length.
pub fn dsdt_body(buf: &mut [u8; DSDT_BODY_MAX], pci_root: Option<&PciRootConfig>) -> Option<usize> {
    let mut aml = Aml::new(buf);
    aml.name_package(b"_S5_", &[SLP_TYP_S5, SLP_TYP_S5, 0, 0]);
    if let Some(config) = pci_root {
        write_pci_root(&mut aml, config)?;
    }
    aml.finish()
}

/// Writes the DSDT around `body`.
pub fn write_dsdt(t: &mut Table<'_>, body: &[u8]) {
    t.sdt_header(*b"DSDT", DSDT_REVISION);
    t.bytes(SDT_HEADER_LEN, body);
}
