//! Host-physical memory through the identity map: the one place in `hv` where a host-physical
//! address becomes a pointer, a reference or a slice.
//!
//! Why an access here is sound, once for every caller: the boot page tables map
//! `[0, MAPPED_LIMIT)` 1:1 (virtual address == physical address) with nothing else in that range
//! and never change, so every address below `MAPPED_LIMIT` is a valid pointer; each function checks
//! that its whole range lies below `MAPPED_LIMIT` and is aligned for its type, and panics
//! otherwise (a hypervisor bug: guest input never reaches here unchecked). What is left to a
//! caller is ownership, stated in each function's `# Safety`: the range is memory the hypervisor
//! took for that purpose (its frames, a guest's RAM, firmware tables) or a device's MMIO block,
//! and no Rust reference to bytes it writes lives meanwhile. `Tables` and `Mmio` carry that
//! argument for the two common cases, so their users need no `unsafe` of their own.

use iommu::mem::{Hpa, PhysAccess};

/// Everything the boot page tables map; memory above is not used.
pub const MAPPED_LIMIT: u64 = boot::entry::IDENTITY_MAP_GIB << 30;

/// The pointer for `len` bytes at `pa`, aligned to `align`.
fn ptr(pa: u64, len: u64, align: usize) -> *mut u8 {
    let in_map = pa.checked_add(len).is_some_and(|end| end <= MAPPED_LIMIT);
    assert!(
        in_map && pa.is_multiple_of(align as u64),
        "phys: {len:#x} bytes at {pa:#x} (alignment {align}) are outside the identity map"
    );
    pa as *mut u8
}

/// Reads the `T` at `pa` (volatile: the device or another core may change it).
///
/// # Safety
/// `pa` holds a `T` the caller may read: memory it owns, or a device register whose read has no
/// side effect the caller does not want.
pub unsafe fn read<T: Copy>(pa: u64) -> T {
    let p = ptr(pa, size_of::<T>() as u64, align_of::<T>()) as *const T;
    // SAFETY: mapped and aligned (checked by `ptr`); readable per the caller's contract.
    unsafe { core::ptr::read_volatile(p) }
}

/// Writes the `T` at `pa` (volatile).
///
/// # Safety
/// `pa` is memory or a device register the caller may write, and no Rust reference to it lives.
pub unsafe fn write<T: Copy>(pa: u64, value: T) {
    let p = ptr(pa, size_of::<T>() as u64, align_of::<T>()) as *mut T;
    // SAFETY: mapped and aligned (checked by `ptr`); writable per the caller's contract.
    unsafe { core::ptr::write_volatile(p, value) }
}

/// The bytes of `[pa, pa + len)`, read-only.
///
/// # Safety
/// Nothing writes the range while the slice lives.
pub unsafe fn slice<'a>(pa: u64, len: u64) -> &'a [u8] {
    let p = ptr(pa, len, 1);
    // SAFETY: mapped (checked by `ptr`); not written while borrowed per the caller's contract.
    unsafe { core::slice::from_raw_parts(p, len as usize) }
}

/// The bytes of `[pa, pa + len)`, writable.
///
/// # Safety
/// The caller owns the range for the lifetime chosen, with no other live reference to it.
pub unsafe fn slice_mut<'a>(pa: u64, len: u64) -> &'a mut [u8] {
    let p = ptr(pa, len, 1);
    // SAFETY: mapped (checked by `ptr`); exclusively the caller's per its contract.
    unsafe { core::slice::from_raw_parts_mut(p, len as usize) }
}

/// The `T` at `pa` (a hardware structure: VMCB, backing page, table entry).
///
/// # Safety
/// `pa` holds a valid `T`; while the reference lives it is written only through `T`'s interior
/// mutability (atomics) or not at all.
pub unsafe fn get<'a, T>(pa: u64) -> &'a T {
    let p = ptr(pa, size_of::<T>() as u64, align_of::<T>()) as *const T;
    // SAFETY: mapped and aligned (checked by `ptr`); valid and shared per the caller's contract.
    unsafe { &*p }
}

/// The `T` at `pa`, writable.
///
/// # Safety
/// `pa` holds a valid `T` the caller owns for the lifetime chosen, with no other live reference.
pub unsafe fn get_mut<'a, T>(pa: u64) -> &'a mut T {
    let p = ptr(pa, size_of::<T>() as u64, align_of::<T>()) as *mut T;
    // SAFETY: mapped and aligned (checked by `ptr`); exclusively the caller's per its contract.
    unsafe { &mut *p }
}

/// Page-table-like structures the hypervisor allocated from its frames (nested page tables, I/O
/// page tables, the IOMMU's tables and rings): read and written a naturally aligned word at a
/// time, never through a Rust reference. The traits are the `pagetable` crate's (`svm::paging`
/// and `iommu::mem` re-export them), so this one accessor serves them all.
#[derive(Clone, Copy, Default)]
pub struct Tables;

impl PhysAccess for Tables {
    fn read_u64(&self, pa: Hpa) -> u64 {
        // SAFETY: a word of a table frame the hypervisor allocated (see `Tables`); a device (the
        // IOMMU) may read it, nothing holds a reference to it.
        unsafe { read(pa.0) }
    }

    fn write_u64(&mut self, pa: Hpa, value: u64) {
        // SAFETY: as in `read_u64`; the hypervisor is the only writer of its tables' entries.
        unsafe { write(pa.0, value) }
    }
}

/// A device's register block at `[base, base + len)` (identity-mapped MMIO).
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    base: u64,
    len: u64,
}

impl Mmio {
    /// # Safety
    /// `[base, base + len)` is a register block (a BAR, the ECAM window, the IOMMU's block) that
    /// the caller's driver owns: nothing else maps it as memory, and its reads and writes are the
    /// driver's to make.
    pub const unsafe fn new(base: u64, len: u64) -> Self {
        Self { base, len }
    }

    fn at<T>(&self, offset: u64) -> u64 {
        let size = size_of::<T>() as u64;
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "mmio: offset {offset:#x} outside the {:#x}-byte block at {:#x}",
            self.len,
            self.base
        );
        self.base + offset
    }

    /// Reads the register of type `T` (u8, u16, u32, u64) at `offset`.
    pub fn read<T: Copy>(&self, offset: u64) -> T {
        // SAFETY: inside the block `new`'s caller owns (checked by `at`).
        unsafe { read(self.at::<T>(offset)) }
    }

    /// Writes the register of type `T` at `offset`.
    pub fn write<T: Copy>(&self, offset: u64, value: T) {
        // SAFETY: as in `read`.
        unsafe { write(self.at::<T>(offset), value) }
    }
}
