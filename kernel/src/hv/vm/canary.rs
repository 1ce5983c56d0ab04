//! DMA canaries for isolation tests: pages of hypervisor memory and of other guests' RAM filled
//! with a known pattern, whose host-physical addresses a test guest receives in its command line
//! (`canary=hypervisor`, `canary=guest:NAME` become `canary=0xADDR`) to aim its device's DMA at.
//! When every guest has ended the hypervisor checks each page and reports it intact or changed.

use crate::println;
use spin::Mutex;

const MAX_CANARIES: usize = 8;
const PAGE: usize = 4096;

#[derive(Clone, Copy)]
struct Canary {
    hpa: u64,
    /// What the page belongs to: `None` the hypervisor, `Some(name)` that guest.
    owner: Option<&'static str>,
}

static CANARIES: Mutex<[Option<Canary>; MAX_CANARIES]> = Mutex::new([None; MAX_CANARIES]);

/// The pattern of the page at `hpa`: its address mixed into every word, so a copy of one canary
/// onto another is noticed too.
fn word(hpa: u64, i: usize) -> u64 {
    0xca4a_7e57_0000_0000 ^ hpa ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn fill(hpa: u64) {
    // SAFETY: `hpa` is a page set aside for this canary (hypervisor page, or guest RAM the guest
    // does not use), identity-mapped.
    let page = unsafe { crate::hv::host::phys::slice_mut(hpa, PAGE as u64) };
    for (i, chunk) in page.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&word(hpa, i).to_le_bytes());
    }
}

fn intact(hpa: u64) -> usize {
    // SAFETY: as in `fill`; read only.
    let page = unsafe { crate::hv::host::phys::slice(hpa, PAGE as u64) };
    page.chunks_exact(8)
        .enumerate()
        .filter(|(i, c)| u64::from_le_bytes((*c).try_into().unwrap_or([0; 8])) != word(hpa, *i))
        .count()
}

/// Places the canary a `canary=` value names and returns its address: `hypervisor` (a page of our
/// own memory above 256 MiB, so it is outside any small test guest's RAM) or `guest:NAME` (a page at
/// 512 KiB into that guest's RAM, which test guests leave alone). `guest_ram` finds a built guest
/// by name: its name and the host-physical address of its RAM.
pub fn place(value: &str, guest_ram: impl Fn(&str) -> Option<(&'static str, u64)>) -> Option<u64> {
    let (hpa, owner) = match value {
        "hypervisor" => (
            crate::hv::host::memory::alloc_page_above(0x1000_0000)
                .or_else(|| crate::hv::host::memory::alloc_page_above(0))?,
            None,
        ),
        _ => {
            let name = value.strip_prefix("guest:")?;
            let (name, ram_hpa) = guest_ram(name)?;
            (ram_hpa + 0x8_0000, Some(name))
        }
    };
    let mut all = CANARIES.lock();
    let slot = all.iter_mut().find(|c| c.is_none())?;
    fill(hpa);
    *slot = Some(Canary { hpa, owner });
    Some(hpa)
}

/// Reports every canary: `canary: hypervisor page at 0x...: intact`.
pub fn check_all() {
    for c in CANARIES.lock().iter().flatten() {
        let changed = intact(c.hpa);
        let whose = match c.owner {
            None => "hypervisor page",
            Some(name) => name,
        };
        let prefix = if c.owner.is_some() { "guest " } else { "" };
        if changed == 0 {
            println!("canary: {prefix}{whose} at {:#x}: intact", c.hpa);
        } else {
            println!(
                "canary: {prefix}{whose} at {:#x}: CHANGED ({changed} of 512 words)",
                c.hpa
            );
        }
    }
}

/// The guest whose RAM holds `[start, start + len)` restarts and its RAM is about to be cleared:
/// the canaries in it are checked now (a change before the restart is still reported) and filled
/// again after the caller cleared the RAM (`refill`).
pub fn check_within(start: u64, len: u64) {
    for c in CANARIES.lock().iter().flatten() {
        if (start..start + len).contains(&c.hpa) {
            let changed = intact(c.hpa);
            if changed > 0 {
                println!(
                    "canary: guest {} at {:#x}: CHANGED ({changed} of 512 words) before its restart",
                    c.owner.unwrap_or("?"),
                    c.hpa
                );
            }
        }
    }
}

/// Fills the canaries in `[start, start + len)` again (after their guest's RAM was cleared).
pub fn refill_within(start: u64, len: u64) {
    for c in CANARIES.lock().iter().flatten() {
        if (start..start + len).contains(&c.hpa) {
            fill(c.hpa);
        }
    }
}
