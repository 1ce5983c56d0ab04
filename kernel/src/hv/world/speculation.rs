//! Speculation controls on guest cores (policy and bits: `didvisor::speculation`, AMD APM vol. 2,
//! 3.2.9 and 15.37.1): an IBPB when a core is about to enter its first guest and when its guest
//! ends, and the host's SPEC_CTRL value back in the register after every #VMEXIT.

use didvisor::msr::number::{PRED_CMD, SPEC_CTRL};
use didvisor::speculation::{SpecCtrlState, SpecFeatures, PRED_CMD_IBPB};
use spin::Once;
use x86_64::registers::model_specific::Msr;

static FEATURES: Once<SpecFeatures> = Once::new();

fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// This CPU's speculation controls; read (and reported) once.
pub fn features() -> SpecFeatures {
    *FEATURES.call_once(|| {
        let max_ext = cpuid(0x8000_0000).0;
        let ebx = if max_ext >= 0x8000_0008 {
            cpuid(0x8000_0008).1
        } else {
            0
        };
        let edx = if max_ext >= 0x8000_000A {
            cpuid(0x8000_000A).3
        } else {
            0
        };
        let f = SpecFeatures::from_cpuid(ebx, edx);
        log::info!("speculation: {f}");
        f
    })
}

/// An indirect branch prediction barrier on this core, if the CPU has one (else nothing: the
/// boot log said so once).
pub fn barrier() {
    if features().ibpb {
        // SAFETY: PRED_CMD exists (CPUID Fn8000_0008 EBX[12]); writing IBPB only discards
        // branch predictions, it changes no architectural state.
        unsafe { Msr::new(PRED_CMD).write(PRED_CMD_IBPB) };
    }
}

/// One vCPU's SPEC_CTRL switch around VMRUN, when the processor does not do it (no SPEC_CTRL
/// virtualization) and the register exists.
pub struct VcpuSpecCtrl(Option<SpecCtrlState>);

impl VcpuSpecCtrl {
    /// On the vCPU's core, before its first VMRUN: the host's value is what the register holds.
    pub fn on_this_core() -> Self {
        if !features().software_switch() {
            return VcpuSpecCtrl(None);
        }
        // SAFETY: SPEC_CTRL exists (CPUID Fn8000_0008 EBX reports one of its bits).
        let host = unsafe { Msr::new(SPEC_CTRL).read() };
        VcpuSpecCtrl(Some(SpecCtrlState::new(host)))
    }

    /// Right before VMRUN: the guest's value, if it differs from the host's.
    pub fn enter(&self) {
        if let Some(value) = self.0.as_ref().and_then(SpecCtrlState::before_vmrun) {
            // SAFETY: a value the guest itself wrote to this register (the hardware accepted
            // it then), or the reset value 0.
            unsafe { Msr::new(SPEC_CTRL).write(value) };
        }
    }

    /// Right after #VMEXIT: keep the guest's value, put the host's back.
    pub fn exit(&mut self) {
        let Some(state) = self.0.as_mut() else { return };
        // SAFETY: SPEC_CTRL exists (checked in `on_this_core`).
        let current = unsafe { Msr::new(SPEC_CTRL).read() };
        if let Some(host) = state.after_exit(current) {
            // SAFETY: the value this core held before its first guest entry.
            unsafe { Msr::new(SPEC_CTRL).write(host) };
        }
    }
}
