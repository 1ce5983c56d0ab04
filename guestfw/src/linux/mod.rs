//! Starting an unmodified Linux kernel through the x86 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"): no firmware runs in the guest, the
//! hypervisor plays boot loader. It copies the bzImage's protected-mode kernel, the command line
//! and the initrd into guest RAM, fills the zero page (`struct boot_params`, with the e820 memory
//! map and the ACPI RSDP address), and enters the kernel at load address + 0x200 in long mode with
//! RSI pointing at the zero page. The long-mode state itself (identity paging, GDT with
//! `__BOOT_CS` 0x10 / `__BOOT_DS` 0x18) comes from [`crate::guest_layout`].
//!
//! Guest-physical layout (see [`LinuxLayout`]):
//!
//! | range | use | e820 |
//! |---|---|---|
//! | `0x0000..0x1000` | left zero (real-mode IVT/BDA area; nothing reads it) | RAM |
//! | `0x1000..0x8000` | page tables and GDT ([`crate::guest_layout`]) | RAM |
//! | `0x8000..0x9000` | boot_params (zero page) | RAM |
//! | `0x9000..0xA000` | command line, at most 4095 bytes + NUL | RAM |
//! | `0x9FC00..0x100000` | "EBDA, VGA, BIOS" hole; guest ACPI tables at `0xE0000` (64 KiB) | reserved |
//! | `0x100000..` | kernel at `pref_address` (16 MiB for Debian), initrd at the top of low RAM | RAM |
//! | `3 GiB..4 GiB` | the MMIO hole (VF BARs, IOAPIC, LAPIC/MSI), for guests above 3 GiB | — |
//! | `4 GiB..` | the rest of a guest's RAM beyond 3 GiB ([`crate::guest_layout::RamLayout`]) | RAM |
//!
//! The zero page and command line sit in RAM the kernel may reuse: Linux copies both early
//! (`copy_bootdata`) and keeps them out of its way until then (`mem_avoid` in KASLR).
//!
//! Documents: boot.rst and zero-page.rst of Linux 6.1; `arch/x86/include/uapi/asm/bootparam.h`.

mod bootparam;
mod bzimage;
mod load;
#[cfg(test)]
mod testimage;

pub use bootparam::{
    hdr_field, BootParams, E820Entry, SetupHeader, BOOT_FLAG_MAGIC, E820_MAX_ENTRIES,
    E820_TYPE_RAM, E820_TYPE_RESERVED, HDRS_MAGIC, LOADER_TYPE_UNDEFINED, SETUP_HEADER_OFFSET,
    XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64,
};
pub use bzimage::{parse_bzimage, BzImage, MIN_PROTOCOL_VERSION};
pub use load::{
    e820_map, load_linux, E820Map, LinuxEntry, LinuxLayout, ACPI_TABLES_GPA, ACPI_TABLES_SIZE,
    BOOT_PARAMS_GPA, CMDLINE_GPA, CMDLINE_MAX, ENTRY_64_OFFSET, KERNEL_MIN_LOAD,
    LOW_RESERVED_START, MAX_RAM,
};

use core::fmt;

/// Why a kernel could not be loaded. The image and initrd come from boot modules and the command
/// line from the configuration: each mistake there ends up here, never in a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinuxError {
    /// The file ends inside the setup header or the protected-mode kernel.
    Truncated,
    /// No 0xAA55 boot flag or no "HdrS" magic: not a bzImage.
    NotBzImage,
    /// Boot protocol older than [`MIN_PROTOCOL_VERSION`].
    ProtocolTooOld { version: u16 },
    /// `xloadflags` lacks XLF_KERNEL_64: the kernel has no 64-bit entry point.
    No64BitEntry,
    /// The header ends (0x202 + byte at 0x201) before the fields protocol 2.12 defines.
    BadHeaderLength { end: usize },
    /// A relocatable kernel whose `kernel_alignment` is not a power of two.
    BadAlignment { alignment: u32 },
    /// The guest memory slice is shorter than the RAM size the layout announces.
    RamSliceTooSmall { ram_size: u64, slice_len: usize },
    /// More RAM than fits below the 32-bit MMIO window.
    RamTooLarge { ram_size: u64, max: u64 },
    /// The layout puts boot_params, the command line, the ACPI tables or the extra reserved
    /// window somewhere they would collide with each other or with RAM use.
    BadLayout,
    /// The kernel (its `init_size` from `addr`) does not fit in guest RAM.
    KernelDoesNotFit { addr: u64, size: u64, ram_size: u64 },
    /// No page-aligned place for the initrd below its limit that misses the kernel.
    InitrdDoesNotFit { size: u64, limit: u64 },
    /// Command line longer than the kernel's `cmdline_size` or the 4095-byte slot.
    CmdlineTooLong { len: usize, max: usize },
    /// Command line with a NUL byte, which would cut it short.
    CmdlineHasNul,
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinuxError::Truncated => f.write_str("kernel image truncated"),
            LinuxError::NotBzImage => f.write_str("not a bzImage (no boot flag or HdrS magic)"),
            LinuxError::ProtocolTooOld { version } => write!(
                f,
                "boot protocol {}.{:02} is older than 2.12",
                version >> 8,
                version & 0xFF
            ),
            LinuxError::No64BitEntry => f.write_str("kernel has no 64-bit entry point"),
            LinuxError::BadHeaderLength { end } => {
                write!(f, "setup header ends at {end:#x}, too short")
            }
            LinuxError::BadAlignment { alignment } => {
                write!(f, "kernel_alignment {alignment:#x} is not a power of two")
            }
            LinuxError::RamSliceTooSmall {
                ram_size,
                slice_len,
            } => write!(
                f,
                "guest memory slice of {slice_len:#x} bytes is smaller than RAM size {ram_size:#x}"
            ),
            LinuxError::RamTooLarge { ram_size, max } => {
                write!(f, "guest RAM {ram_size:#x} exceeds {max:#x}")
            }
            LinuxError::BadLayout => f.write_str("inconsistent guest boot layout"),
            LinuxError::KernelDoesNotFit {
                addr,
                size,
                ram_size,
            } => write!(
                f,
                "kernel needs {size:#x} bytes at {addr:#x}, guest RAM ends at {ram_size:#x}"
            ),
            LinuxError::InitrdDoesNotFit { size, limit } => {
                write!(f, "no room for a {size:#x}-byte initrd below {limit:#x}")
            }
            LinuxError::CmdlineTooLong { len, max } => {
                write!(f, "command line of {len} bytes exceeds {max}")
            }
            LinuxError::CmdlineHasNul => f.write_str("command line contains a NUL byte"),
        }
    }
}
