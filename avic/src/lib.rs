//! AMD AVIC and x2AVIC (APM vol. 2 §15.29 "Advanced Virtual Interrupt Controller").
//!
//! With AVIC the processor itself handles most of a guest's local-APIC accesses: it reads and
//! writes a per-vCPU *virtual APIC backing page* (the APIC register page in memory), delivers
//! guest IPIs by looking up the target in the *physical APIC-ID table* (and, for logical
//! destinations, the *logical APIC-ID table*), sets the target's IRR bit and rings the *doorbell*
//! of the host CPU the target runs on. What it cannot do it reports with two `#VMEXIT`s:
//! `AVIC_INCOMPLETE_IPI` (0x401) and `AVIC_NOACCEL` (0x402).
//!
//! | module | content | APM vol. 2 |
//! |---|---|---|
//! | [`table`] | physical and logical APIC-ID table entries | §15.29.3.2–3 |
//! | [`vmcb`] | the VMCB AVIC fields (0x060, 0x098, 0x0E0, 0x0F0, 0x0F8) | §15.29.3.1, App. B |
//! | [`exit`] | decoding of the two AVIC exits, trap vs fault | §15.29.9 |
//! | [`backing`] | backing-page register layout, IRR/ISR helpers, doorbell | §15.29.3, §15.29.6 |
//! | [`mode`] | the hypervisor's `irq=avic` mode: backing page at reset, exit actions, admission, counters | §15.29.3, §15.29.9, §15.29.10 |
//! | [`model`] | a software model of the IPI delivery the hardware performs | §15.29.4 |
//! | [`features`] | CPUID checks | CPUID 8000_000A |
//! | [`selftest`] | expectations and judge of the boot-time self-test | §15.29.3–§15.29.10 |
//!
//! Facts are in `docs/design.md` ("AVIC and GA posting", learnt from reading Linux
//! `arch/x86/kvm/svm/avic.c` and `asm/svm.h`) and checked against the APM (publication 24593,
//! rev. 3.4x) §15.29. Upstream QEMU TCG emulates no AVIC: this crate is tested on the host, and
//! [`selftest`] judges what the hypervisor's boot-time self-test observes on the machine itself
//! (and under the patched QEMU of `tests/qemu-avic/`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backing;
pub mod exit;
pub mod features;
pub mod mode;
pub mod model;
pub mod selftest;
pub mod table;
pub mod vmcb;

pub use backing::{BackingPage, MSR_AVIC_DOORBELL};
pub use exit::{IncompleteIpi, IpiFailure, NoAccel};
pub use table::{LogicalIdEntry, PhysicalIdEntry};
