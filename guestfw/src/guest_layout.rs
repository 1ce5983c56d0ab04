//! The boot state of a 64-bit guest: what the hypervisor writes into a new guest's memory (page
//! tables, GDT) and the control-register values it starts with, so a guest image can be entered
//! directly in long mode — the same state Linux's 64-bit boot protocol expects at `startup_64`.
//!
//! Layout in guest-physical memory (below the first loadable segment, which starts at 1 MiB):
//! `0x1000` PML4, `0x2000` PDPT, `0x3000..0x7000` four page directories identity-mapping 0..4 GiB with
//! 2 MiB pages, `0x7000` GDT. `0x8000..0x10_0000` is left to the boot protocol (Linux's boot_params, command line, ACPI tables). The map covers more than guest RAM on purpose: an access past RAM goes
//! through the guest's tables and faults in the nested page tables, where the hypervisor sees it.
//! RAM above 4 GiB ([`RamLayout`]) is not in these tables: Linux builds its own before it uses it.

pub const PML4: u64 = 0x1000;
pub const PDPT: u64 = 0x2000;
pub const PD: u64 = 0x3000;
pub const IDENTITY_GIB: u64 = 4;
pub const GDT: u64 = 0x7000;
/// Lowest guest-physical address a guest image may use.
pub const IMAGE_MIN: u64 = 0x10_0000;

/// Guest RAM below 4 GiB ends here at most: `[LOW_RAM_MAX, 4 GiB)` is the MMIO hole (the VF's BARs
/// from 0xC000_0000, which QEMU's SR-IOV VFs only decode below 4 GiB, the IOAPIC at 0xFEC0_0000,
/// the MSI/LAPIC range at 0xFEE0_0000). RAM beyond it continues at [`HIGH_RAM_BASE`].
pub const LOW_RAM_MAX: u64 = 0xC000_0000;
/// Where guest RAM above the MMIO hole starts.
pub const HIGH_RAM_BASE: u64 = 1 << 32;
/// The most guest RAM a guest can have: its top (`4 GiB + MAX_RAM - 3 GiB`) stays below 2^39, inside
/// the 40 physical address bits of the smallest CPU models that run guests.
pub const MAX_RAM: u64 = 256 << 30;
/// Guest RAM comes in 2 MiB steps (the host allocates and the nested page tables map it in
/// aligned blocks).
pub const RAM_GRANULE: u64 = 2 << 20;

/// One range of guest RAM: guest-physical `[gpa, gpa + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamRegion {
    pub gpa: u64,
    pub len: u64,
}

impl RamRegion {
    pub const fn end(&self) -> u64 {
        self.gpa + self.len
    }
}

/// Where `size` bytes of guest RAM sit in guest-physical space: low RAM from 0 up to
/// [`LOW_RAM_MAX`], the rest from [`HIGH_RAM_BASE`]. Linux sees this through its e820 map, the
/// hypervisor maps it in the nested and the I/O page tables, and nothing else is put there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamLayout {
    size: u64,
}

impl RamLayout {
    /// The layout of `size` bytes (checked against [`MAX_RAM`] and [`RAM_GRANULE`] by the
    /// configuration parser; here any size is laid out).
    pub const fn new(size: u64) -> Self {
        Self { size }
    }

    /// Total RAM in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// RAM from guest-physical 0: everything below the MMIO hole.
    pub const fn low(&self) -> RamRegion {
        RamRegion {
            gpa: 0,
            len: if self.size < LOW_RAM_MAX {
                self.size
            } else {
                LOW_RAM_MAX
            },
        }
    }

    /// RAM above 4 GiB, if the guest has more than [`LOW_RAM_MAX`].
    pub const fn high(&self) -> Option<RamRegion> {
        if self.size > LOW_RAM_MAX {
            Some(RamRegion {
                gpa: HIGH_RAM_BASE,
                len: self.size - LOW_RAM_MAX,
            })
        } else {
            None
        }
    }

    /// The regions, low first; the second is `None` for a guest of 3 GiB or less.
    pub const fn regions(&self) -> [Option<RamRegion>; 2] {
        [Some(self.low()), self.high()]
    }

    /// One past the highest RAM address.
    pub const fn end(&self) -> u64 {
        match self.high() {
            Some(h) => h.end(),
            None => self.low().end(),
        }
    }

    /// Whether any byte of `[start, end)` is RAM.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.regions()
            .iter()
            .flatten()
            .any(|r| start < r.end() && r.gpa < end)
    }

    /// Whether `gpa` is RAM.
    pub fn contains(&self, gpa: u64) -> bool {
        self.overlaps(gpa, gpa.saturating_add(1))
    }
}

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
    fn ram_layout_keeps_the_hole() {
        const GIB: u64 = 1 << 30;
        let small = RamLayout::new(256 << 20);
        assert_eq!(
            small.low(),
            RamRegion {
                gpa: 0,
                len: 256 << 20
            }
        );
        assert_eq!(small.high(), None);
        assert_eq!(small.end(), 256 << 20);
        let exact = RamLayout::new(3 * GIB);
        assert_eq!(exact.high(), None);
        assert_eq!(exact.end(), LOW_RAM_MAX);
        let big = RamLayout::new(5 * GIB);
        assert_eq!(
            big.low(),
            RamRegion {
                gpa: 0,
                len: 3 * GIB
            }
        );
        assert_eq!(
            big.high(),
            Some(RamRegion {
                gpa: 4 * GIB,
                len: 2 * GIB
            })
        );
        assert_eq!(big.end(), 6 * GIB);
        let total: u64 = big.regions().iter().flatten().map(|r| r.len).sum();
        assert_eq!(total, 5 * GIB);
        for gpa in [0, 3 * GIB - 1, 4 * GIB, 6 * GIB - 1] {
            assert!(big.contains(gpa), "{gpa:#x}");
        }
        // The hole: VF BARs, IOAPIC, LAPIC/MSI; and nothing above the end.
        for gpa in [3 * GIB, 0xfec0_0000, 0xfee0_0000, 4 * GIB - 1, 6 * GIB] {
            assert!(!big.contains(gpa), "{gpa:#x}");
        }
        assert!(!big.overlaps(3 * GIB, 4 * GIB));
        assert!(big.overlaps(3 * GIB, 4 * GIB + 1));
        let top = RamLayout::new(MAX_RAM);
        assert!(top.end() <= 1 << 39);
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
