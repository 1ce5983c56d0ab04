//! The boot state of a 64-bit guest: what the hypervisor writes into a new guest's memory (page
//! tables, GDT) and the control-register values it starts with, so a guest image can be entered
//! directly in long mode — the same state Linux's 64-bit boot protocol expects at `startup_64`.
//!
//! Layout in guest-physical memory (below the first loadable segment, which starts at 1 MiB):
//! `0x1000` PML4, `0x2000` PDPT, `0x3000..0x7000` four page directories identity-mapping 0..4 GiB with
//! 2 MiB pages, `0x7000` GDT. `0x8000..0x10_0000` is left to the boot protocol (Linux's boot_params, command line, ACPI tables). The map covers more than guest RAM on purpose: an access past RAM goes
//! through the guest's tables and faults in the nested page tables, where the hypervisor sees it.

pub const PML4: u64 = 0x1000;
pub const PDPT: u64 = 0x2000;
pub const PD: u64 = 0x3000;
pub const IDENTITY_GIB: u64 = 4;
pub const GDT: u64 = 0x7000;
/// Lowest guest-physical address a guest image may use.
pub const IMAGE_MIN: u64 = 0x10_0000;

/// Selectors as Linux's 64-bit boot protocol requires them (`__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18;
/// Documentation/arch/x86/boot.rst, "64-bit Boot Protocol").
pub const CODE64_SELECTOR: u16 = 0x10;
pub const DATA_SELECTOR: u16 = 0x18;
/// GDT entries (Intel/AMD descriptor format): null, unused, 64-bit code, flat data.
pub const GDT_ENTRIES: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    GuestTooSmall,
}

/// Writes the page tables and GDT into `guest` (guest-physical 0 at index 0). Returns CR3.
pub fn write_long_mode_tables(guest: &mut [u8]) -> Result<u64, LayoutError> {
    if (guest.len() as u64) < IMAGE_MIN {
        return Err(LayoutError::GuestTooSmall);
    }
    let mut put = |gpa: u64, v: u64| {
        let o = gpa as usize;
        guest[o..o + 8].copy_from_slice(&v.to_le_bytes());
    };
    const PRESENT_WRITE: u64 = 0x3;
    const LARGE: u64 = 0x80;
    for i in 0..512 {
        put(PML4 + i * 8, 0);
        put(PDPT + i * 8, 0);
    }
    put(PML4, PDPT | PRESENT_WRITE);
    for gib in 0..IDENTITY_GIB {
        put(PDPT + gib * 8, (PD + gib * 0x1000) | PRESENT_WRITE);
        for i in 0..512 {
            let addr = (gib << 30) | (i << 21);
            put(PD + gib * 0x1000 + i * 8, addr | PRESENT_WRITE | LARGE);
        }
    }
    for (i, e) in GDT_ENTRIES.iter().enumerate() {
        put(GDT + i as u64 * 8, *e);
    }
    Ok(PML4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(m: &[u8], gpa: u64) -> u64 {
        u64::from_le_bytes(m[gpa as usize..gpa as usize + 8].try_into().unwrap())
    }

    /// Walks the written tables like the MMU would (4-level, 2 MiB leaves).
    fn translate(m: &[u8], cr3: u64, va: u64) -> Option<u64> {
        let pml4e = entry(m, cr3 + ((va >> 39) & 511) * 8);
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = entry(m, (pml4e & !0xfff) + ((va >> 30) & 511) * 8);
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = entry(m, (pdpte & !0xfff) + ((va >> 21) & 511) * 8);
        if pde & 1 == 0 || pde & 0x80 == 0 {
            return None;
        }
        Some((pde & !0x1f_ffff & 0x000f_ffff_ffff_ffff) | (va & 0x1f_ffff))
    }

    #[test]
    fn identity_maps_four_gib_and_nothing_above() {
        let mut m = vec![0xffu8; 0x10_0000];
        let cr3 = write_long_mode_tables(&mut m).unwrap();
        for va in [
            0,
            0x1234,
            0x20_0000,
            0x1_0000_0000 - 1,
            0xc000_0000,
            0x3fff_ffff,
        ] {
            assert_eq!(translate(&m, cr3, va), Some(va), "va {va:#x}");
        }
        assert_eq!(translate(&m, cr3, 0x1_0000_0000), None);
        assert_eq!(translate(&m, cr3, 0x80_0000_0000), None);
        assert_eq!(
            entry(&m, GDT + u64::from(CODE64_SELECTOR)),
            0x00af_9b00_0000_ffff
        );
        assert_eq!(
            entry(&m, GDT + u64::from(DATA_SELECTOR)),
            0x00cf_9300_0000_ffff
        );
    }

    #[test]
    fn refuses_tiny_guests() {
        let mut m = vec![0u8; 0x8000];
        assert_eq!(
            write_long_mode_tables(&mut m),
            Err(LayoutError::GuestTooSmall)
        );
    }
}
