//! AMD Secure Virtual Machine (SVM) definitions for didvisor.
//!
//! This crate describes the hardware interface of AMD-V as pure data and pure functions, so that
//! everything except the `VMRUN` instruction itself can be unit-tested on the host:
//!
//! | module | hardware block | APM vol. 2 |
//! |---|---|---|
//! | [`vmcb`] | the VMCB: control area and state save area | §15.5, App. B |
//! | [`intercept`] | intercept vectors, VMCB clean bits, interrupt control | §15.7–15.13, §15.15, §15.21, App. B |
//! | [`exit`] | `#VMEXIT` codes and EXITINFO1/2 decoding | §15.6, §15.10, §15.11, §15.25.6, App. C |
//! | [`event`] | EVENTINJ and EXITINTINFO | §15.7.2, §15.20 |
//! | [`permission_map`] | MSR and I/O permission maps | §15.10, §15.11 |
//! | [`paging`] | long-mode page-table entries, memory-access traits | vol. 2 §5.3, §15.25 |
//! | [`npt`] | nested page tables: mapper, translation, unmap | §15.25 |
//! | [`walk`] | guest page-table walk (for instruction decoding) | vol. 2 §5.3, §5.6 |
//! | [`segment`] | VMCB segment registers from GDT descriptors, 64-bit guest set-up | §15.5.1, vol. 2 §4.7–4.8 |
//! | [`consistency`] | the `VMRUN` guest-state consistency checks | §15.5.1 |
//! | [`features`] | CPUID feature checks and SVM MSRs | §15.4, §15.30, CPUID 8000_000A |
//!
//! Spec: *AMD64 Architecture Programmer's Manual, Volume 2: System Programming*, publication 24593,
//! chapter 15 "Secure Virtual Machine", Appendix B "Layout of VMCB" and Appendix C "SVM Intercept
//! Exit Codes" (revisions 3.40–3.42). Offsets were cross-checked against the Linux
//! (`arch/x86/include/asm/svm.h`) and QEMU (`target/i386/svm.h`) definitions.
//!
//! What QEMU TCG's SVM emulation gets wrong (see `docs/platform.md`) is handled where the
//! data is decoded: [`exit::ExitCode::from_raw`] accepts QEMU's 32-bit `VMEXIT_INVALID`, and
//! [`event::reinjectable`] repairs an interrupted external interrupt recorded as an exception.
//!
//! Nothing here executes privileged instructions; the crate is `no_std`, without `alloc`, and
//! has no `unsafe` code.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod consistency;
pub mod event;
pub mod exit;
pub mod features;
pub mod intercept;
pub mod npt;
pub mod paging;
pub mod permission_map;
pub mod segment;
pub mod vmcb;
pub mod walk;

#[cfg(test)]
mod testmem;

pub use addr::{Gpa, Gva, Hpa};
pub use vmcb::{Vmcb, VmcbSegment};
