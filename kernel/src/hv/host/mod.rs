//! The machine: CPU tables, interrupts, the local APIC, timers, firmware tables, memory, the
//! serial console, PCIe configuration space, other cores, and the machine's end. Uses no other
//! folder of `hv`.

pub mod acpi;
pub mod cpu;
pub mod idt;
pub mod memory;
pub mod pci_host;
pub mod phys;
pub mod serial;
pub mod shutdown;
pub mod smp;
pub mod timer;
pub mod topology;
pub mod x2apic;
