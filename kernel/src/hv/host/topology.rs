//! The SMT-sibling check's hardware side: the bootstrap processor's topology leaves (AMD APM
//! vol. 3, E.3.8 Fn0000_000B and E.4.16 Fn8000_001E) handed to `didvisor::smt`, which decides.

use didvisor::config::Config;
use didvisor::smt::{self, SmtLayout, TopologyLeaves};

fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// How this machine's x2APIC ids split into core and thread (the same on every core).
pub fn layout() -> SmtLayout {
    let max_basic = cpuid(0, 0).0;
    let max_ext = cpuid(0x8000_0000, 0).0;
    let leaf_0b = (max_basic >= 0xB).then(|| {
        let (eax, ebx, ecx, _) = cpuid(0xB, 0);
        (eax, ebx, ecx)
    });
    let extensions =
        max_ext >= 0x8000_001E && cpuid(0x8000_0001, 0).2 & smt::TOPOLOGY_EXTENSIONS != 0;
    let leaf_8000_001e_ebx = extensions.then(|| cpuid(0x8000_001E, 0).1);
    SmtLayout::from_cpuid(TopologyLeaves {
        leaf_0b,
        leaf_8000_001e_ebx,
    })
}

/// The processor's name and signature (CPUID 8000_0002h-8000_0004h, and 1 EAX with the
/// extended family and model folded in, APM vol. 3 E.3.2), for the boot log: which server this
/// is, and what to quote in a bug report.
fn describe_cpu() {
    let cpuid = raw_cpuid::CpuId::new();
    let brand = cpuid.get_processor_brand_string();
    let name = brand
        .as_ref()
        .map_or("(no brand string)", |b| b.as_str().trim());
    match cpuid.get_feature_info() {
        Some(f) => log::info!(
            "cpu: {name} (family {:X}h model {:X}h stepping {})",
            f.family_id(),
            f.model_id(),
            f.stepping_id()
        ),
        None => log::info!("cpu: {name} (no CPUID leaf 1)"),
    }
}

/// Before anything boots: refuses a layout that puts SMT siblings of one core into different
/// guests, or a guest beside the service core. `apic_ids` in logical CPU order.
pub fn check<'a>(cfg: &'a Config, apic_ids: &[u32]) -> Result<(), smt::SmtConflict<'a>> {
    describe_cpu();
    let layout = layout();
    log::info!("cpu topology: {layout}");
    smt::check_siblings(cfg, apic_ids, layout)
}
