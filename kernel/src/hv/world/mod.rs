//! The world switch and exits: SVM enable, VMRUN, the vCPU run loop and its exit handling, APIC
//! MSR exits, speculation barriers, and the AVIC self-test (a tiny guest). Uses every folder below.

pub mod apic;
pub mod avic_selftest;
pub mod avic_selftest_guest;
pub mod speculation;
pub mod svm_hw;
pub mod vcpu;
pub mod vmrun;
