//! Boot: the Multiboot1 and Multiboot2 entry of didvisor and the translation of both boot-information
//! formats into one [`BootInfo`].
//!
//! Specifications: *The Multiboot Specification* version 0.6.96 (Multiboot1) and *Multiboot2
//! Specification* version 2.0. QEMU's `-kernel` loads Multiboot1 only; GRUB loads Multiboot2. One image
//! carries both headers (see `entry.rs`) and the loader is told apart by the magic value in EAX.
//!
//! The parsers are plain Rust over a [`Memory`] reader so host unit tests drive them with recorded or
//! hand-built boot-information blocks.
#![cfg_attr(not(test), no_std)]

mod fixed;
mod info;
mod memory;
pub mod multiboot1;
pub mod multiboot2;

#[cfg(target_os = "none")]
pub mod entry;

pub use fixed::FixedString;
pub use info::{
    BootInfo, BootProtocol, MemoryKind, MemoryRegion, Module, RsdpSource, MAX_MEMORY_REGIONS,
    MAX_MODULES,
};
pub use memory::Memory;

/// Why boot information could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootError {
    /// EAX held neither Multiboot magic value.
    UnknownMagic(u32),
    /// A structure points outside readable memory or is cut short.
    Truncated { what: &'static str, addr: u64 },
    /// A Multiboot2 tag has a size that cannot be right.
    BadTag { tag: u32, size: u32 },
    /// More memory-map entries or modules than fit.
    TooMany(&'static str),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::UnknownMagic(m) => write!(f, "unknown boot magic {m:#x} (not Multiboot1/2)"),
            BootError::Truncated { what, addr } => {
                write!(f, "boot information truncated: {what} at {addr:#x}")
            }
            BootError::BadTag { tag, size } => write!(f, "bad Multiboot2 tag {tag} of size {size}"),
            BootError::TooMany(what) => write!(f, "too many {what} in boot information"),
        }
    }
}

/// Parse the boot information handed over in EAX (magic) and EBX (physical address).
pub fn parse(magic: u32, info_addr: u64, mem: &impl Memory) -> Result<BootInfo, BootError> {
    match magic {
        multiboot1::BOOTLOADER_MAGIC => multiboot1::parse(info_addr, mem),
        multiboot2::BOOTLOADER_MAGIC => multiboot2::parse(info_addr, mem),
        other => Err(BootError::UnknownMagic(other)),
    }
}
