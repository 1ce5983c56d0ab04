//! Physical memory for the hypervisor itself: the frame allocator (from the library), filled from the
//! boot memory map, and the identity map under which physical address == pointer.

use didvisor::frames::FrameAllocator;
use spin::Mutex;

static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

/// Everything the boot page tables map; memory above is not used.
pub const MAPPED_LIMIT: u64 = boot::entry::IDENTITY_MAP_GIB << 30;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The physical range of the hypervisor image (code, data, bss, boot stacks and page tables).
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

pub fn add_usable(start: u64, end: u64) {
    FRAMES.lock().add(start, end.min(MAPPED_LIMIT));
}

pub fn reserve(start: u64, end: u64) {
    FRAMES.lock().reserve(start, end);
}

pub fn free_bytes() -> u64 {
    FRAMES.lock().free_bytes()
}

/// Zeroed, identity-mapped physical memory; running out is fatal (it happens only while setting up).
pub fn alloc_zeroed(size: u64, align: u64) -> u64 {
    try_alloc_zeroed(size, align, MAPPED_LIMIT)
        .unwrap_or_else(|| panic!("out of memory: no {size:#x} bytes aligned to {align:#x} left"))
}

pub fn try_alloc_zeroed(size: u64, align: u64, limit: u64) -> Option<u64> {
    let pa = FRAMES.lock().alloc_below(size, align, limit)?;
    // SAFETY: the range was just taken from the free list, so nothing else uses it, and it lies
    // below MAPPED_LIMIT, inside the identity map.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, size as usize) };
    Some(pa)
}

/// A page of our memory at or above `min` (and below the identity map's end), for tests that
/// need an address a guest's RAM does not cover.
pub fn alloc_page_above(min: u64) -> Option<u64> {
    let pa = FRAMES.lock().alloc_above(4096, 4096, min)?;
    if pa + 4096 > MAPPED_LIMIT {
        return None;
    }
    Some(pa)
}

/// The bytes at a physical range of ours (identity-mapped).
///
/// # Safety
/// The range must be mapped and owned by the caller for the lifetime chosen, with no other live
/// reference to it.
pub unsafe fn phys_slice_mut<'a>(pa: u64, len: u64) -> &'a mut [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, len as usize) }
}

/// Read-only bytes of a physical range (boot modules, firmware tables).
///
/// # Safety
/// The range must be mapped and not written while the slice lives.
pub unsafe fn phys_slice<'a>(pa: u64, len: u64) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len as usize) }
}
