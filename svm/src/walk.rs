//! Walk of the guest's own page tables, GVA → GPA (APM vol. 2 §5.3 "Long-Mode Page
//! Translation", §5.6 "Page-Protection Checks", §8.4.2 "#PF error code").
//!
//! The hypervisor needs this to fetch and decode a guest instruction (e.g. an MMIO access that
//! exited with a nested page fault, when decode assists are absent as under QEMU TCG). The walk
//! reads guest memory through [`GuestMemory`] and never writes it: accessed/dirty bits are not
//! updated (the guest's own access, when it is re-executed, sets them).
//!
//! Supported: CR0.PG = 0 (GVA = GPA) and 4- and 5-level long mode with 4 KiB, 2 MiB and 1 GiB
//! pages (Linux uses 5-level paging where the CPU has LA57). Legacy 32-bit and PAE paging are
//! reported as
//! [`WalkFault::UnsupportedMode`]. SMAP is not checked (it needs RFLAGS.AC).

use crate::addr::{Gpa, Gva};
use crate::paging::{table_index, GuestMemory, PageSize, PageTableEntry, PteFlags, ADDR_MASK};

/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR0.WP: supervisor writes honour R/W.
pub const CR0_WP: u64 = 1 << 16;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.SMEP.
pub const CR4_SMEP: u64 = 1 << 20;
/// CR4.LA57 (5-level paging).
pub const CR4_LA57: u64 = 1 << 12;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE: no-execute enable.
pub const EFER_NXE: u64 = 1 << 11;

/// #PF error code bits (APM vol. 2 §8.4.2).
pub mod pf_error {
    /// The fault was a protection violation (page present).
    pub const PRESENT: u32 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u32 = 1 << 1;
    /// The access was a user (CPL 3) access.
    pub const USER: u32 = 1 << 2;
    /// A reserved bit was set in a paging entry.
    pub const RESERVED: u32 = 1 << 3;
    /// The access was an instruction fetch.
    pub const FETCH: u32 = 1 << 4;
}

/// The kind of access to check permissions for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// A write access.
    pub write: bool,
    /// A user (CPL 3) access.
    pub user: bool,
    /// An instruction fetch.
    pub fetch: bool,
}

impl Access {
    /// A supervisor instruction fetch.
    pub const FETCH: Self = Self {
        write: false,
        user: false,
        fetch: true,
    };
    /// A supervisor read.
    pub const READ: Self = Self {
        write: false,
        user: false,
        fetch: false,
    };
}

/// Why a guest walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// The guest would take #PF with this error code (CR2 = the GVA).
    PageFault {
        /// The #PF error code.
        error_code: u32,
    },
    /// The address is not canonical (the guest would take #GP or #SS).
    NonCanonical,
    /// A page-table entry lives at a GPA the [`GuestMemory`] cannot read.
    Memory(Gpa),
    /// Paging mode not handled here (legacy 32-bit, PAE without long mode, 5-level).
    UnsupportedMode,
}

/// Translate `gva` through the guest's page tables, checking presence and reserved bits only.
///
/// `cr3`, `cr0`, `cr4`, `efer` are the guest's values (VMCB save area).
pub fn walk_guest<M: GuestMemory + ?Sized>(
    cr3: u64,
    cr0: u64,
    cr4: u64,
    efer: u64,
    gva: Gva,
    mem: &M,
) -> Result<Gpa, WalkFault> {
    walk(cr3, cr0, cr4, efer, gva, None, mem).map(|(gpa, _)| gpa)
}

/// Like [`walk_guest`], and also check the page protections for `access` (R/W with CR0.WP,
/// U/S, NX with EFER.NXE, SMEP). Returns the GPA and the size of the guest page.
pub fn walk_guest_access<M: GuestMemory + ?Sized>(
    cr3: u64,
    cr0: u64,
    cr4: u64,
    efer: u64,
    gva: Gva,
    access: Access,
    mem: &M,
) -> Result<(Gpa, PageSize), WalkFault> {
    walk(cr3, cr0, cr4, efer, gva, Some(access), mem)
}

/// Whether `addr` is canonical for 57-bit virtual addresses (bits 63:56 all equal).
pub const fn is_canonical_57(addr: u64) -> bool {
    let top = addr >> 56;
    top == 0 || top == 0xFF
}

/// Whether `addr` is canonical for 48-bit virtual addresses (bits 63:47 all equal).
pub const fn is_canonical_48(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_FFFF
}

fn walk<M: GuestMemory + ?Sized>(
    cr3: u64,
    cr0: u64,
    cr4: u64,
    efer: u64,
    gva: Gva,
    access: Option<Access>,
    mem: &M,
) -> Result<(Gpa, PageSize), WalkFault> {
    if cr0 & CR0_PG == 0 {
        return Ok((Gpa(gva.0), PageSize::Size4K));
    }
    if efer & EFER_LMA == 0 || cr4 & CR4_PAE == 0 {
        return Err(WalkFault::UnsupportedMode);
    }
    // 5-level paging (CR4.LA57, APM vol. 2 5.3.1): one more table level and 57-bit addresses.
    let five_level = cr4 & CR4_LA57 != 0;
    let canonical = if five_level {
        is_canonical_57(gva.0)
    } else {
        is_canonical_48(gva.0)
    };
    if !canonical {
        return Err(WalkFault::NonCanonical);
    }
    let nxe = efer & EFER_NXE != 0;
    let acc = access.unwrap_or_default();
    // Error-code bits that describe the access itself.
    let mut access_bits = 0;
    if acc.write {
        access_bits |= pf_error::WRITE;
    }
    if acc.user {
        access_bits |= pf_error::USER;
    }
    if acc.fetch && (nxe || cr4 & CR4_SMEP != 0) {
        access_bits |= pf_error::FETCH;
    }
    let fault = |extra: u32| WalkFault::PageFault {
        error_code: access_bits | extra,
    };

    // Effective permissions: AND of R/W and U/S, OR of NX over all levels.
    let mut writable = true;
    let mut user = true;
    let mut no_exec = false;
    let mut table = cr3 & ADDR_MASK;
    let top_level: u8 = if five_level { 5 } else { 4 };
    let mut level = top_level;
    loop {
        let entry_gpa = Gpa(table + table_index(gva.0, level) as u64 * 8);
        let e = PageTableEntry(
            mem.read_u64(entry_gpa)
                .ok_or(WalkFault::Memory(entry_gpa))?,
        );
        if !e.is_present() {
            return Err(fault(0));
        }
        let f = e.flags();
        let leaf_size = if e.is_huge() {
            match level {
                4 | 5 => return Err(fault(pf_error::PRESENT | pf_error::RESERVED)),
                other => PageSize::from_level(other),
            }
        } else if level == 1 {
            Some(PageSize::Size4K)
        } else {
            None
        };
        if f.contains(PteFlags::NO_EXECUTE) && !nxe {
            return Err(fault(pf_error::PRESENT | pf_error::RESERVED));
        }
        if let Some(size) = leaf_size {
            // Address bits below the page size, above bit 12 (the PAT bit), must be zero.
            let low_mbz = (size.bytes() - 1) & ADDR_MASK & !(1 << 12);
            if size != PageSize::Size4K && e.addr() & low_mbz != 0 {
                return Err(fault(pf_error::PRESENT | pf_error::RESERVED));
            }
        }
        writable &= f.contains(PteFlags::WRITABLE);
        user &= f.contains(PteFlags::USER);
        no_exec |= f.contains(PteFlags::NO_EXECUTE);

        if let Some(size) = leaf_size {
            if let Some(acc) = access {
                let denied = (acc.user && !user)
                    || (acc.write && !writable && (acc.user || cr0 & CR0_WP != 0))
                    || (acc.fetch && nxe && no_exec)
                    || (acc.fetch && !acc.user && user && cr4 & CR4_SMEP != 0);
                if denied {
                    return Err(fault(pf_error::PRESENT));
                }
            }
            let base = e.addr() & !(size.bytes() - 1);
            return Ok((Gpa(base | (gva.0 & (size.bytes() - 1))), size));
        }
        table = e.addr();
        level -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::FakeMem;

    const CR0: u64 = CR0_PG | CR0_WP | 1; // PG, WP, PE
    const CR4: u64 = CR4_PAE;
    const EFER: u64 = EFER_LMA | EFER_NXE | (1 << 8);
    const P: u64 = 1;
    const W: u64 = 2;
    const U: u64 = 4;
    const PS: u64 = 1 << 7;
    const NX: u64 = 1 << 63;

    /// Guest tables at GPA 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD), 0x4000 (PT):
    /// - GVA 0x40_0000..: PT maps 0x40_0000 → 0x9_9000 (RW, user), 0x40_1000 → 0xA_A000 (RO, NX)
    /// - GVA 0x20_0000: 2 MiB page → 0x80_0000 (RW, supervisor)
    /// - GVA 0x4000_0000: 1 GiB page → 0x1_0000_0000 (RW, user)
    /// - GVA 0xFFFF_8000_0000_0000 (PML4 index 256): not present.
    fn guest() -> FakeMem {
        let mut m = FakeMem::new(0);
        m.poke(0x1000, 0x2000 | P | W | U);
        m.poke(0x2000, 0x3000 | P | W | U);
        m.poke(0x2000 + 8, 0x1_0000_0000 | P | W | U | PS);
        m.poke(0x3000 + 8, 0x80_0000 | P | W | PS);
        m.poke(0x3000 + 2 * 8, 0x4000 | P | W | U);
        m.poke(0x4000, 0x9_9000 | P | W | U);
        m.poke(0x4000 + 8, 0xA_A000 | P | U | NX);
        m
    }

    fn walk4(gva: u64, m: &FakeMem) -> Result<Gpa, WalkFault> {
        walk_guest(0x1000, CR0, CR4, EFER, Gva(gva), m)
    }

    fn pf(code: u32) -> Result<Gpa, WalkFault> {
        Err(WalkFault::PageFault { error_code: code })
    }

    #[test]
    fn paging_off_is_identity() {
        let m = FakeMem::new(0);
        assert_eq!(
            walk_guest(0, 0x11, 0, 0, Gva(0x12_3456), &m),
            Ok(Gpa(0x12_3456))
        );
    }

    #[test]
    fn four_k_two_m_one_g() {
        let m = guest();
        assert_eq!(walk4(0x40_0123, &m), Ok(Gpa(0x9_9123)));
        assert_eq!(walk4(0x40_1FFF, &m), Ok(Gpa(0xA_AFFF)));
        assert_eq!(walk4(0x2A_BCDE, &m), Ok(Gpa(0x8A_BCDE)));
        assert_eq!(walk4(0x7FFF_FFFF, &m), Ok(Gpa(0x1_3FFF_FFFF)));
        let r = walk_guest_access(0x1000, CR0, CR4, EFER, Gva(0x4000_0000), Access::READ, &m);
        assert_eq!(r, Ok((Gpa(0x1_0000_0000), PageSize::Size1G)));
    }

    #[test]
    fn five_level_adds_a_pml5() {
        // PML5 at 0x5000: entries 0 and 0x100 both point at the PML4 above, so the low address
        // and 0xFF00_0000_0040_0123 (bits 56:48 = 0x100) translate alike.
        let mut m = guest();
        m.poke(0x5000, 0x1000 | P | W | U);
        m.poke(0x5000 + 0x100 * 8, 0x1000 | P | W | U);
        let cr4 = CR4 | CR4_LA57;
        assert_eq!(
            walk_guest(0x5000, CR0, cr4, EFER, Gva(0x40_0123), &m),
            Ok(Gpa(0x9_9123))
        );
        assert_eq!(
            walk_guest(0x5000, CR0, cr4, EFER, Gva(0xFF00_0000_0040_0123), &m),
            Ok(Gpa(0x9_9123))
        );
        // Not present in the PML5.
        assert_eq!(
            walk_guest(0x5000, CR0, cr4, EFER, Gva(0x0001_0000_0000_0000), &m),
            pf(0)
        );
        // 48-bit canonical but 57-bit checks differ: 0x0000_8000_0000_0000 is fine with LA57.
        assert_eq!(
            walk_guest(0x5000, CR0, cr4, EFER, Gva(0x0000_8000_0000_0000), &m),
            pf(0)
        );
    }

    #[test]
    fn not_present_at_each_level() {
        let m = guest();
        assert_eq!(walk4(0xFFFF_8000_0000_0000, &m), pf(0)); // PML4E
        assert_eq!(walk4(0x8000_0000, &m), pf(0)); // PDPTE
        assert_eq!(walk4(0x60_0000, &m), pf(0)); // PDE
        assert_eq!(walk4(0x40_2000, &m), pf(0)); // PTE
        let w = Access {
            write: true,
            user: true,
            fetch: false,
        };
        let r = walk_guest_access(0x1000, CR0, CR4, EFER, Gva(0x40_2000), w, &m);
        assert_eq!(
            r,
            Err(WalkFault::PageFault {
                error_code: pf_error::WRITE | pf_error::USER
            })
        );
    }

    #[test]
    fn protection_checks() {
        let m = guest();
        let chk = |gva: u64, a: Access| walk_guest_access(0x1000, CR0, CR4, EFER, Gva(gva), a, &m);
        let prot = |extra: u32| {
            Err(WalkFault::PageFault {
                error_code: pf_error::PRESENT | extra,
            })
        };
        // Fetch from the NX page.
        assert_eq!(chk(0x40_1000, Access::FETCH), prot(pf_error::FETCH));
        // Supervisor write to the read-only page with CR0.WP = 1.
        let sw = Access {
            write: true,
            ..Access::READ
        };
        assert_eq!(chk(0x40_1000, sw), prot(pf_error::WRITE));
        // ... allowed with CR0.WP = 0.
        let r = walk_guest_access(0x1000, CR0 & !CR0_WP, CR4, EFER, Gva(0x40_1000), sw, &m);
        assert_eq!(r, Ok((Gpa(0xA_A000), PageSize::Size4K)));
        // User read of the supervisor 2 MiB page.
        let ur = Access {
            user: true,
            ..Access::READ
        };
        assert_eq!(chk(0x20_0000, ur), prot(pf_error::USER));
        // User read of the user 4 KiB page is fine.
        assert_eq!(chk(0x40_0000, ur), Ok((Gpa(0x9_9000), PageSize::Size4K)));
        // SMEP: supervisor fetch from a user page.
        let r = walk_guest_access(
            0x1000,
            CR0,
            CR4 | CR4_SMEP,
            EFER,
            Gva(0x40_0000),
            Access::FETCH,
            &m,
        );
        assert_eq!(r, prot(pf_error::FETCH));
    }

    #[test]
    fn reserved_bits() {
        let mut m = guest();
        // NX set while EFER.NXE = 0.
        let r = walk_guest(0x1000, CR0, CR4, EFER & !EFER_NXE, Gva(0x40_1000), &m);
        assert_eq!(r, pf(pf_error::PRESENT | pf_error::RESERVED));
        // PS in a PML4E.
        m.poke(0x1000 + 8, 0x5000 | P | PS);
        assert_eq!(
            walk4(0x80_0000_0000, &m),
            pf(pf_error::PRESENT | pf_error::RESERVED)
        );
        // Misaligned 2 MiB page address.
        m.poke(0x3000 + 3 * 8, 0x81_0000 | P | PS);
        assert_eq!(
            walk4(0x60_0000, &m),
            pf(pf_error::PRESENT | pf_error::RESERVED)
        );
    }

    #[test]
    fn mode_and_address_errors() {
        let m = guest();
        assert_eq!(
            walk4(0x0000_8000_0000_0000, &m),
            Err(WalkFault::NonCanonical)
        );
        assert_eq!(
            walk_guest(0x1000, CR0, CR4, 0, Gva(0), &m),
            Err(WalkFault::UnsupportedMode)
        );
        assert_eq!(
            walk_guest(
                0x1000,
                CR0,
                CR4 | CR4_LA57,
                EFER,
                Gva(0x0100_0000_0000_0000),
                &m
            ),
            Err(WalkFault::NonCanonical)
        );
        // Page tables at an unbacked GPA.
        assert_eq!(
            walk_guest(0x7_0000, CR0, CR4, EFER, Gva(0x1000), &m),
            Err(WalkFault::Memory(Gpa(0x7_0000)))
        );
        assert!(is_canonical_48(0xFFFF_8000_0000_0000));
        assert!(!is_canonical_48(0xFFFF_0000_0000_0000));
    }
}
