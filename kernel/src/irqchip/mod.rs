//! The guest's interrupt controllers, as pure state machines driven by the exit handlers.
//!
//! - [`ioapic`]: a virtual 24-pin I/O APIC at FEC0_0000h (both modes: the guest's legacy and
//!   virtual-device interrupts, e.g. the PIT on GSI 2 while Linux calibrates).
//! - [`lapic`]: the virtual local APIC of the emulated mode, x2APIC only, with its timer, plus the
//!   helpers the direct mode needs (ICR decoding, LDR derivation, the pass-through MSR policy).
//!
//! Neither touches hardware or time: the caller passes the current [`Nanos`] in and acts on what
//! comes back (a [`ioapic::Delivery`] to route, an [`lapic::Ipi`] to send, an EOI to forward, a
//! deadline to arm, a fault to inject).
//!
//! Specifications: AMD64 Architecture Programmer's Manual vol. 2, chapter 16 "Advanced
//! Programmable Interrupt Controller (APIC)" (§16.11 x2APIC); Intel SDM vol. 3A chapter 10 where it
//! pins down x2APIC details AMD leaves implicit (reserved-bit checking, register access rules);
//! Intel 82093AA I/O APIC datasheet; Intel ICH9 datasheet (I/O APIC version 20h, EOI register).

pub mod direct;
pub mod ioapic;
pub mod lapic;
pub mod lapic_timer;
pub mod route;
pub mod vector_set;

// The register map, ICR and delivery modes are the `apic` crate's (shared with `avic`).
pub use apic::{delivery, icr, x2apic};

/// The lowest vector an APIC delivers: 0-15 are illegal in fixed interrupts and IPIs (a "send"
/// or "receive illegal vector" error, AMD APM vol. 2 §16.4.7 ESR); they are the exceptions'.
pub const MIN_VECTOR: u8 = apic::delivery::FIRST_LEGAL_VECTOR;

#[cfg(test)]
mod ioapic_tests;
#[cfg(test)]
mod lapic_tests;

pub use delivery::{DeliveryMode, DestMode, TriggerMode};
pub use direct::is_passthrough_msr;
pub use icr::{decode_icr, Ipi, Shorthand};
pub use ioapic::{Deliveries, Delivery, Ioapic};
pub use lapic::{AccessFault, Lapic, WriteEffect};
pub use lapic_timer::Nanos;
pub use x2apic::x2apic_ldr;
