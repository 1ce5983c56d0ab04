//! Bringing up the application processors: INIT-SIPI-SIPI from the bootstrap processor (AMD APM vol.
//! 2, 16.5 "Interprocessor Interrupts" and the BKDG start-up sequence), one core at a time, into the
//! boot trampoline, then `ap_main` (in `hv`) on the core's own stack.

use crate::hv::host::memory;
use crate::hv::host::timer;
use crate::hv::host::x2apic;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const AP_STACK_SIZE: u64 = 64 * 1024;

/// The logical index the core being started takes; set by the BSP before its startup IPI.
static STARTING_CPU: AtomicUsize = AtomicUsize::new(0);
/// Set by the starting core once it is fully up (tables, x2APIC, SVM).
static STARTED: AtomicBool = AtomicBool::new(false);

/// Why an application processor did not come up.
#[derive(Debug)]
pub enum StartError {
    NoLowMemory,
    Timeout { apic_id: u32 },
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::NoLowMemory => {
                f.write_str("no free page below 1 MiB for the startup trampoline")
            }
            StartError::Timeout { apic_id } => write!(
                f,
                "cpu with apic id {apic_id} did not come up after INIT-SIPI-SIPI"
            ),
        }
    }
}

/// Copies the trampoline below 1 MiB once; returns its page number for the SIPI vector.
fn install_trampoline() -> Result<u8, StartError> {
    let code = boot::entry::ap_trampoline();
    let page = memory::try_alloc_zeroed(4096, 4096, 0x10_0000).ok_or(StartError::NoLowMemory)?;
    // SAFETY: the page was just allocated for this purpose and is identity-mapped.
    let dst = unsafe { super::phys::slice_mut(page, 4096) };
    dst[..code.len()].copy_from_slice(code);
    Ok((page >> 12) as u8)
}

/// Starts every core in `apic_ids` (logical index = position) except index 0, the BSP.
pub fn start_all(apic_ids: &[u32]) -> Result<(), StartError> {
    if apic_ids.len() <= 1 {
        return Ok(());
    }
    let page = install_trampoline()?;
    for (cpu, &apic_id) in apic_ids.iter().enumerate().skip(1) {
        let stack = memory::alloc_zeroed(AP_STACK_SIZE, 4096);
        boot::entry::AP_STACK_TOP.store(stack + AP_STACK_SIZE, Ordering::SeqCst);
        STARTING_CPU.store(cpu, Ordering::SeqCst);
        STARTED.store(false, Ordering::SeqCst);
        x2apic::send_init(apic_id);
        timer::delay_us(10_000);
        for _ in 0..2 {
            x2apic::send_startup(apic_id, page);
            if wait_started(200) {
                break;
            }
        }
        if !wait_started(1_000_000) {
            return Err(StartError::Timeout { apic_id });
        }
    }
    Ok(())
}

fn wait_started(us: u64) -> bool {
    let end = timer::rdtsc() + timer::tsc_per_ms() * us / 1000;
    while timer::rdtsc() < end {
        if STARTED.load(Ordering::SeqCst) {
            return true;
        }
        core::hint::spin_loop();
    }
    STARTED.load(Ordering::SeqCst)
}

/// On a starting core, in the core's `ap_main`: its logical index.
pub fn starting_cpu() -> usize {
    STARTING_CPU.load(Ordering::SeqCst)
}

/// On a starting core: it is fully up (tables, x2APIC, SVM); the BSP starts the next one.
pub fn report_started() {
    STARTED.store(true, Ordering::SeqCst);
}
