//! Time: the TSC, calibrated once against PIT channel 2 (the speaker-gate channel, which raises no
//! interrupt), so the hypervisor can wait for given durations and report cycles.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x86_64::instructions::port::Port;

static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);
/// TSC at calibration: the zero of "microseconds since boot".
static TSC_ORIGIN: AtomicU64 = AtomicU64::new(0);

/// Whether guests are told their TSC is invariant ([`decide_invariant`]).
static TSC_INVARIANT: AtomicBool = AtomicBool::new(false);

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures TSC ticks over 10 ms of PIT channel 2 in mode 0 (one-shot), polling its OUT2 bit.
pub fn calibrate() -> u64 {
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: programming PIT channel 2 and the port-0x61 gate; channel 2 only drives the speaker
    // gate, which we keep off, and raises no interrupt.
    let ticks = unsafe {
        let mut gate = Port::<u8>::new(0x61);
        let g = gate.read();
        gate.write((g & !0x02) | 0x01);
        Port::<u8>::new(0x43).write(0b1011_0000);
        Port::<u8>::new(0x42).write(count as u8);
        Port::<u8>::new(0x42).write((count >> 8) as u8);
        // Restart the count by toggling the gate.
        let g = gate.read();
        gate.write(g & !0x01);
        gate.write(g | 0x01);
        let start = rdtsc();
        let mut spins: u64 = 0;
        while gate.read() & 0x20 == 0 {
            spins += 1;
            if spins > 1 << 32 {
                break;
            }
        }
        rdtsc() - start
    };
    let per_ms = (ticks / CALIBRATION_MS).max(1);
    TSC_ORIGIN.store(rdtsc(), Ordering::Relaxed);
    TSC_PER_MS.store(per_ms, Ordering::Relaxed);
    per_ms
}

/// Decides once, at boot, whether the TSC is invariant: CPUID 8000_0007h EDX[8] (APM vol. 3,
/// "TscInvariant": constant rate in every P-, C- and S0 state) or the operator's `tsc=invariant`.
/// Guests see the physical TSC unchanged (no VMCB TSC offset, no scaling, TSC writes refused),
/// and the hypervisor itself counts on it running in step on all cores, so an invariant TSC
/// is one the guests can keep time with (`didvisor::cpuid`). Returns what the host's CPUID said.
pub fn decide_invariant(vouched: bool) -> bool {
    let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    let host = max_ext >= 0x8000_0007
        && core::arch::x86_64::__cpuid(0x8000_0007).edx & didvisor::cpuid::bit::TSC_INVARIANT != 0;
    TSC_INVARIANT.store(host || vouched, Ordering::Relaxed);
    host
}

/// Whether guests are told their TSC is invariant (CPUID 8000_0007h EDX[8]).
pub fn invariant() -> bool {
    TSC_INVARIANT.load(Ordering::Relaxed)
}

pub fn tsc_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed).max(1)
}

pub fn delay_us(us: u64) {
    let end = rdtsc() + tsc_per_ms() * us / 1000;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Microseconds from calibration to TSC value `tsc` (the TSC runs in step on all cores).
pub fn micros_since_boot(tsc: u64) -> u64 {
    tsc.saturating_sub(TSC_ORIGIN.load(Ordering::Relaxed)) * 1000 / tsc_per_ms()
}

/// Nanoseconds since calibration: the clock of the guests' virtual devices.
pub fn nanos() -> u64 {
    let ticks = rdtsc().saturating_sub(TSC_ORIGIN.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000 / u128::from(tsc_per_ms())) as u64
}
