//! Physical memory for the hypervisor itself: the frame allocator (from the library), filled from the
//! boot memory map. Access to physical memory is `phys`.

use super::phys;
use didvisor::frames::FrameAllocator;
use spin::Mutex;

static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

pub use super::phys::MAPPED_LIMIT;

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

/// Whether this CPU has 1 GiB pages (CPUID 8000_0001 EDX\[26\] Page1GB), which nested page
/// tables may use only then (APM vol. 2 §15.25.1).
pub fn page_1gb() -> bool {
    let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max_ext >= 0x8000_0001
        && svm::features::page_1gb_supported(core::arch::x86_64::__cpuid(0x8000_0001).edx)
}

/// The largest block aligned to `align` that could still be had (below the identity map's end).
pub fn largest_free(align: u64) -> u64 {
    FRAMES.lock().largest_free(align, MAPPED_LIMIT)
}

/// Zeroed, identity-mapped physical memory; running out is fatal (it happens only while setting up).
pub fn alloc_zeroed(size: u64, align: u64) -> u64 {
    try_alloc_zeroed(size, align, MAPPED_LIMIT)
        .unwrap_or_else(|| panic!("out of memory: no {size:#x} bytes aligned to {align:#x} left"))
}

pub fn try_alloc_zeroed(size: u64, align: u64, limit: u64) -> Option<u64> {
    let pa = FRAMES.lock().alloc_below(size, align, limit)?;
    // SAFETY: the range was just taken from the free list, so nothing else uses it.
    unsafe { phys::slice_mut(pa, size) }.fill(0);
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
