//! The local APIC in x2APIC mode, through its MSRs (AMD APM vol. 2, 16.11 "x2APIC").
//!
//! A dozen lines of our own instead of the `x2apic` crate: that crate drags in old versions of
//! bitflags and raw-cpuid, and we use only enable, ID, ICR and spurious-vector programming.

use x86_64::registers::model_specific::Msr;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const X2APIC_ID: u32 = 0x802;
const X2APIC_SVR: u32 = 0x80f;
const X2APIC_ICR: u32 = 0x830;

/// ICR delivery modes and flags (APM vol. 2, 16.5).
const ICR_INIT: u64 = 0b101 << 8;
const ICR_STARTUP: u64 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u64 = 1 << 14;

/// Whether this CPU has an x2APIC (CPUID 1 ECX bit 21).
pub fn supported() -> bool {
    raw_cpuid::CpuId::new()
        .get_feature_info()
        .is_some_and(|f| f.has_x2apic())
}

/// Switches this core's local APIC to x2APIC mode and software-enables it (spurious vector 0xff).
pub fn enable() {
    let mut base = Msr::new(IA32_APIC_BASE);
    // SAFETY: setting EN and then EXTD is the architected xAPIC -> x2APIC transition; the caller
    // checked `supported()`.
    unsafe {
        let v = base.read();
        base.write(v | APIC_BASE_ENABLE);
        base.write(v | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        Msr::new(X2APIC_SVR).write(0x1ff);
    }
}

/// This core's x2APIC id.
pub fn id() -> u32 {
    // SAFETY: reading the x2APIC ID register; only called after `enable`.
    unsafe { Msr::new(X2APIC_ID).read() as u32 }
}

/// The x2APIC id if this core is in x2APIC mode, for messages that may come before `enable`.
pub fn id_or_unknown() -> i64 {
    // SAFETY: reading IA32_APIC_BASE is always allowed on x86-64.
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() };
    if base & APIC_BASE_X2APIC != 0 {
        i64::from(id())
    } else {
        -1
    }
}

fn write_icr(value: u64) {
    // SAFETY: a write to the x2APIC ICR sends the IPI it describes; callers choose targets that are
    // ours (cores being started).
    unsafe { Msr::new(X2APIC_ICR).write(value) };
}

pub fn send_init(apic_id: u32) {
    write_icr((u64::from(apic_id) << 32) | ICR_INIT | ICR_LEVEL_ASSERT);
}

pub fn send_startup(apic_id: u32, page: u8) {
    write_icr((u64::from(apic_id) << 32) | ICR_STARTUP | ICR_LEVEL_ASSERT | u64::from(page));
}
