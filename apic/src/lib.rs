//! The local APIC's architectural facts, defined once for the hypervisor's emulated x2APIC
//! (`kernel`'s `irqchip`), its direct interrupt mode, and AVIC (`avic`):
//!
//! - [`reg`]: the APIC register page (xAPIC MMIO offsets, which are also AVIC's backing-page
//!   offsets) and the x2APIC MSR of each register;
//! - [`x2apic`]: the x2APIC MSR map, register layouts (version, SVR, LVT, ESR, timer divide), the
//!   logical-destination derivation and destination matching;
//! - [`icr`]: the interrupt command register (64-bit x2APIC form, xAPIC destination too) and a
//!   decoded IPI;
//! - [`delivery`]: the delivery, trigger and destination modes every APIC-bus message carries.
//!
//! Specifications: AMD64 Architecture Programmer's Manual vol. 2, chapter 16 "Advanced
//! Programmable Interrupt Controller (APIC)" (Table 16-2 register map, §16.4 local interrupts,
//! §16.5 interprocessor interrupts, §16.11 x2APIC); Intel SDM vol. 3A chapter 10 where it pins
//! down x2APIC details AMD leaves implicit (§10.12, Table 10-6; Figure 10-28 ICR).
//!
//! Plain constants and `const fn`s: no state, no hardware access.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod delivery;
pub mod icr;
pub mod reg;
pub mod x2apic;

pub use delivery::{DeliveryMode, DestMode, TriggerMode};
pub use icr::{decode_icr, Icr, Ipi, Shorthand};
