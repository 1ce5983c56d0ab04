//! The root tables, RSDT (ACPI 6.5 §5.2.7) and XSDT (§5.2.8): lists of
//! physical addresses of all other tables, and lookup by signature.

use crate::bytes::{u32_at, u64_at};
use crate::rsdp::{RootPointer, Rsdp};
use crate::sdt::{Sdt, Signature};
use crate::{Error, Madt, Mcfg, PhysMem};

/// Discovered ACPI tables: the validated root table and the memory it lives
/// in.
pub struct Acpi<'m, M: PhysMem + ?Sized> {
    mem: &'m M,
    root: Sdt<'m>,
    entry_size: usize,
}

impl<'m, M: PhysMem + ?Sized> Acpi<'m, M> {
    /// Validates the root table `rsdp` points to: the XSDT when present, else
    /// the RSDT (§5.2.5.3). A broken XSDT is an error, not a silent fall-back
    /// to the RSDT, so firmware bugs show up on the console.
    pub fn new(mem: &'m M, rsdp: &Rsdp) -> Result<Self, Error> {
        let (root, entry_size) = match rsdp.root() {
            RootPointer::Xsdt(phys) => (Sdt::expect_at(mem, phys, Signature::XSDT)?, 8),
            RootPointer::Rsdt(phys) => (Sdt::expect_at(mem, u64::from(phys), Signature::RSDT)?, 4),
        };
        Ok(Self {
            mem,
            root,
            entry_size,
        })
    }

    /// The root table (RSDT or XSDT).
    pub fn root(&self) -> &Sdt<'m> {
        &self.root
    }

    /// Physical addresses of all tables the root lists, in order. A trailing
    /// partial entry is ignored.
    pub fn table_addresses(&self) -> impl Iterator<Item = u64> + 'm {
        let body = self.root.body();
        let entry_size = self.entry_size;
        body.chunks_exact(entry_size).map(move |entry| {
            if entry_size == 8 {
                u64_at(entry, 0).unwrap_or(0)
            } else {
                u32_at(entry, 0).map_or(0, u64::from)
            }
        })
    }

    /// The first listed table with signature `sig`, validated (checksum and
    /// length). Other tables are only looked at through their headers, so one
    /// broken table does not hide the others.
    pub fn find_table(&self, sig: Signature) -> Result<Sdt<'m>, Error> {
        let phys = self
            .table_addresses()
            .find(|&phys| Sdt::header_at(self.mem, phys).is_ok_and(|h| h.sig() == sig))
            .ok_or(Error::TableMissing(sig))?;
        Sdt::at(self.mem, phys)
    }

    /// The MADT, decoded (§5.2.12).
    pub fn madt(&self) -> Result<Madt, Error> {
        Madt::parse(&self.find_table(Signature::MADT)?)
    }

    /// The MCFG, decoded (PCI Firmware spec §4.1.2).
    pub fn mcfg(&self) -> Result<Mcfg, Error> {
        Mcfg::parse(&self.find_table(Signature::MCFG)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{table, Blob, FakeMem};

    const XSDT_AT: u64 = 0x10_0000;
    const RSDT_AT: u64 = 0x10_1000;
    const FOO_AT: u64 = 0x10_2000;
    const BAR_AT: u64 = 0x10_3000;

    fn rsdp(revision: u8, xsdt: u64) -> Rsdp {
        Rsdp {
            signature: *b"RSD PTR ",
            checksum: 0,
            oem_id: *b"DIDVSR",
            revision,
            rsdt_address: RSDT_AT as u32,
            length: 36,
            xsdt_address: xsdt,
            extended_checksum: 0,
            reserved: [0; 3],
        }
    }

    fn memory() -> FakeMem {
        let mut xsdt = Blob::default();
        xsdt.u64(FOO_AT).u64(BAR_AT);
        let mut rsdt = Blob::default();
        rsdt.u32(BAR_AT as u32);
        FakeMem::new(XSDT_AT, &table(*b"XSDT", 1, &xsdt.0))
            .with(RSDT_AT, &table(*b"RSDT", 1, &rsdt.0))
            .with(FOO_AT, &table(*b"FOO ", 1, &[1, 2]))
            .with(BAR_AT, &table(*b"BAR ", 1, &[3]))
    }

    #[test]
    fn walks_xsdt_when_present() {
        let mem = memory();
        let acpi = Acpi::new(&mem, &rsdp(2, XSDT_AT)).unwrap();
        assert_eq!(acpi.root().signature(), Signature::XSDT);
        assert_eq!(acpi.table_addresses().collect::<Vec<_>>(), [FOO_AT, BAR_AT]);
        assert_eq!(
            acpi.find_table(Signature(*b"FOO ")).unwrap().body(),
            &[1, 2]
        );
        assert_eq!(acpi.find_table(Signature(*b"BAR ")).unwrap().body(), &[3]);
        assert_eq!(
            acpi.find_table(Signature::MADT).unwrap_err(),
            Error::TableMissing(Signature::MADT)
        );
    }

    #[test]
    fn walks_rsdt_without_xsdt() {
        let mem = memory();
        for r in [rsdp(0, XSDT_AT), rsdp(2, 0)] {
            let acpi = Acpi::new(&mem, &r).unwrap();
            assert_eq!(acpi.root().signature(), Signature::RSDT);
            assert_eq!(acpi.table_addresses().collect::<Vec<_>>(), [BAR_AT]);
            assert_eq!(
                acpi.find_table(Signature(*b"FOO ")).unwrap_err(),
                Error::TableMissing(Signature(*b"FOO "))
            );
        }
    }

    #[test]
    fn root_must_be_valid() {
        let mem = memory();
        assert_eq!(
            Acpi::new(&mem, &rsdp(2, FOO_AT)).err(),
            Some(Error::WrongSignature {
                expected: Signature::XSDT,
                found: Signature(*b"FOO ")
            })
        );
        assert_eq!(
            Acpi::new(&mem, &rsdp(2, 0xDEAD_0000)).err(),
            Some(Error::Unreadable {
                phys: 0xDEAD_0000,
                len: 36
            })
        );
    }

    #[test]
    fn broken_table_is_reported_only_when_asked_for() {
        let mut mem = memory();
        mem.write(FOO_AT + 36, &[0xFF]); // breaks FOO's checksum
        let acpi = Acpi::new(&mem, &rsdp(2, XSDT_AT)).unwrap();
        assert_eq!(acpi.find_table(Signature(*b"BAR ")).unwrap().body(), &[3]);
        assert_eq!(
            acpi.find_table(Signature(*b"FOO ")).unwrap_err(),
            Error::BadChecksum {
                sig: Signature(*b"FOO ")
            }
        );
    }

    #[test]
    fn unreadable_entries_are_skipped() {
        let mut xsdt = Blob::default();
        xsdt.u64(0xBAD0_0000).u64(BAR_AT).u32(0x1234); // plus a partial entry
        let mem = FakeMem::new(XSDT_AT, &table(*b"XSDT", 1, &xsdt.0))
            .with(BAR_AT, &table(*b"BAR ", 1, &[3]));
        let acpi = Acpi::new(&mem, &rsdp(2, XSDT_AT)).unwrap();
        assert_eq!(acpi.table_addresses().count(), 2);
        assert!(acpi.find_table(Signature(*b"BAR ")).is_ok());
    }

    /// The whole discovery path the kernel takes: BIOS-area RSDP, XSDT,
    /// then MADT, MCFG and the IVRS bytes for the iommu crate.
    #[test]
    fn end_to_end_from_bios_area() {
        let mut madt = Blob::default();
        madt.u32(0xFEE0_0000).u32(1);
        madt.u8(0).u8(8).u8(0).u8(0).u32(1);
        madt.u8(1).u8(12).u8(0).u8(0).u32(0xFEC0_0000).u32(0);
        let mut mcfg = Blob::default();
        mcfg.u64(0).u64(0xB000_0000).u16(0).u8(0).u8(0xFF).u32(0);
        let mut xsdt = Blob::default();
        xsdt.u64(0x7FE_1000).u64(0x7FE_2000).u64(0x7FE_3000);
        let mut rsdp = Blob::default();
        rsdp.raw(b"RSD PTR ").u8(0).raw(b"DIDVSR").u8(2).u32(0);
        rsdp.u32(36).u64(0x7FE_0000).u8(0).raw(&[0; 3]);
        let mut rsdp = rsdp.0;
        crate::testutil::fix_checksum(&mut rsdp[..20], 8);
        crate::testutil::fix_checksum(&mut rsdp, 32);

        let mut mem = FakeMem::new(0, &vec![0u8; 0x10_0000])
            .with(0x7FE_0000, &table(*b"XSDT", 1, &xsdt.0))
            .with(0x7FE_1000, &table(*b"APIC", 5, &madt.0))
            .with(0x7FE_2000, &table(*b"MCFG", 1, &mcfg.0))
            .with(0x7FE_3000, &table(*b"IVRS", 2, &[0; 12]));
        mem.write(0xF_6A40, &rsdp);

        let (_, rsdp) = crate::find_rsdp(&mem).unwrap();
        let acpi = Acpi::new(&mem, &rsdp).unwrap();
        let madt = acpi.madt().unwrap();
        assert_eq!(madt.cpus().len(), 1);
        assert_eq!(madt.io_apics()[0].address, 0xFEC0_0000);
        assert_eq!(acpi.mcfg().unwrap().regions()[0].base, 0xB000_0000);
        assert_eq!(acpi.find_table(Signature::IVRS).unwrap().bytes().len(), 48);
    }
}
