//! Placing a validated bzImage, its command line and initrd in guest RAM and writing the zero
//! page (boot.rst, "64-bit Boot Protocol" and "Details of Header Fields"). Everything is checked
//! before the first byte is written, so a refused kernel leaves guest memory untouched.

use super::bootparam::{
    hdr_field, BootParams, E820Entry, SetupHeader, E820_TYPE_RAM, E820_TYPE_RESERVED,
    LOADER_TYPE_UNDEFINED, SETUP_HEADER_OFFSET,
};
use super::bzimage::{parse_bzimage, BzImage};
use super::LinuxError;
use crate::guest_layout;
use core::mem::{offset_of, size_of};

/// Where boot_params (the zero page) goes.
pub const BOOT_PARAMS_GPA: u64 = 0x8000;
/// Where the command line goes.
pub const CMDLINE_GPA: u64 = 0x9000;
/// Longest command line the slot at [`CMDLINE_GPA`] holds (one page with the NUL).
pub const CMDLINE_MAX: usize = 4095;
/// Where the guest ACPI tables go: inside the BIOS area Linux also scans for the RSDP.
pub const ACPI_TABLES_GPA: u64 = 0xE_0000;
/// Room kept for the ACPI tables.
pub const ACPI_TABLES_SIZE: u64 = 0x1_0000;
/// Start of the low reserved hole: where a PC's EBDA starts (its last KiB of conventional
/// memory), followed by VGA memory and the BIOS ROMs up to 1 MiB.
pub const LOW_RESERVED_START: u64 = 0x9_FC00;
/// Lowest address a relocatable kernel is placed at: x86-64 kernels run at or above
/// `LOAD_PHYSICAL_ADDR` (16 MiB with the default CONFIG_PHYSICAL_START) anyway, loading lower
/// would only make the decompressor move itself up.
pub const KERNEL_MIN_LOAD: u64 = 0x100_0000;
/// The most RAM a guest can have ([`guest_layout::MAX_RAM`]): below the MMIO hole up to 3 GiB,
/// the rest from 4 GiB ([`guest_layout::RamLayout`]).
pub const MAX_RAM: u64 = guest_layout::MAX_RAM;
/// The 64-bit entry point is 0x200 past the protected-mode kernel's start (boot.rst).
pub const ENTRY_64_OFFSET: u64 = 0x200;

const PAGE: u64 = 0x1000;
const BOOT_PARAMS_SIZE: u64 = size_of::<BootParams>() as u64;
/// End of the page tables and GDT [`guest_layout`] writes (the GDT occupies the page at 0x7000).
const BOOT_TABLES_END: u64 = guest_layout::GDT + PAGE;

/// The fixed guest-physical places of a Linux guest. `LinuxLayout::new` gives the standard ones;
/// the fields are public so a caller can see (and log) them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxLayout {
    /// Guest RAM size in bytes, laid out as [`guest_layout::RamLayout`] says: `0..min(ram_size,
    /// 3 GiB)` (minus the low reserved hole), the rest from 4 GiB.
    pub ram_size: u64,
    /// Guest-physical address of boot_params (one page).
    pub boot_params: u64,
    /// Guest-physical address of the command line (one page).
    pub cmdline: u64,
    /// Guest-physical address of the ACPI tables ([`ACPI_TABLES_SIZE`] bytes).
    pub acpi_tables: u64,
    /// The RSDP to announce in `boot_params.acpi_rsdp_addr`; `None` leaves 0 there and Linux
    /// searches the EBDA and 0xE0000..0x100000 itself.
    pub acpi_rsdp: Option<u64>,
    /// An extra `(base, length)` range outside RAM to list as reserved in the e820 map: the ECAM
    /// window when the guest gets an MCFG (Linux refuses an ECAM window the firmware did not
    /// reserve).
    pub reserved_window: Option<(u64, u64)>,
}

impl LinuxLayout {
    /// The standard layout for `ram_size` bytes of RAM, without an RSDP yet.
    pub const fn new(ram_size: u64) -> Self {
        Self {
            ram_size,
            boot_params: BOOT_PARAMS_GPA,
            cmdline: CMDLINE_GPA,
            acpi_tables: ACPI_TABLES_GPA,
            acpi_rsdp: None,
            reserved_window: None,
        }
    }

    /// boot_params and the command line must lie between the boot page tables and the reserved
    /// hole without overlapping, the ACPI tables inside the hole, the extra window outside RAM.
    fn check(&self) -> Result<(), LinuxError> {
        let page_ok = |gpa: u64| {
            gpa.is_multiple_of(PAGE) && gpa >= BOOT_TABLES_END && gpa + PAGE <= LOW_RESERVED_START
        };
        let acpi_end = self.acpi_tables.checked_add(ACPI_TABLES_SIZE);
        let ram = guest_layout::RamLayout::new(self.ram_size);
        let window_ok = self.reserved_window.is_none_or(|(base, len)| {
            len > 0
                && base
                    .checked_add(len)
                    .is_some_and(|end| !ram.overlaps(base, end))
        });
        if !page_ok(self.boot_params)
            || !page_ok(self.cmdline)
            || self.boot_params == self.cmdline
            || self.acpi_tables < LOW_RESERVED_START
            || acpi_end.is_none_or(|end| end > guest_layout::IMAGE_MIN)
            || !window_ok
        {
            return Err(LinuxError::BadLayout);
        }
        Ok(())
    }
}

/// Where the guest starts and what was placed where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxEntry {
    /// The 64-bit entry point: load address + 0x200.
    pub rip: u64,
    /// RSI at entry: the boot_params address.
    pub rsi: u64,
    /// Where the protected-mode kernel was copied.
    pub kernel_gpa: u64,
    /// `(address, length)` of the initrd, if one was given.
    pub initrd: Option<(u64, u64)>,
}

/// Entries [`e820_map`] writes at most: low RAM, the low reserved hole, RAM from 1 MiB, the
/// reserved window, RAM above 4 GiB.
const E820_MAP_MAX: usize = 5;

/// The guest's e820 memory map, in ascending order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Map {
    entries: [E820Entry; E820_MAP_MAX],
    len: usize,
}

impl E820Map {
    /// The valid entries.
    pub fn entries(&self) -> &[E820Entry] {
        self.entries.get(..self.len).unwrap_or(&[])
    }

    fn push(&mut self, addr: u64, size: u64, kind: u32) {
        if let Some(slot) = self.entries.get_mut(self.len) {
            *slot = E820Entry { addr, size, kind };
            self.len += 1;
        }
    }
}

/// The memory map of a guest with `layout`: usable `[0, 0x9FC00)`, reserved `[0x9FC00, 1 MiB)`
/// (where a PC has its EBDA, VGA memory and BIOS; the guest's ACPI tables live there), usable
/// `[1 MiB, low RAM end)`, the extra reserved window if any, and usable RAM above 4 GiB if the
/// guest has more than 3 GiB; sorted by address. The MMIO hole is in no entry (as on a PC, where
/// Linux takes a gap in the e820 map for PCI windows).
pub fn e820_map(layout: &LinuxLayout) -> E820Map {
    let mut map = E820Map {
        entries: [E820Entry::default(); E820_MAP_MAX],
        len: 0,
    };
    let ram = guest_layout::RamLayout::new(layout.ram_size);
    let ram_end = ram.low().end();
    map.push(0, LOW_RESERVED_START.min(ram_end), E820_TYPE_RAM);
    map.push(
        LOW_RESERVED_START,
        guest_layout::IMAGE_MIN - LOW_RESERVED_START,
        E820_TYPE_RESERVED,
    );
    if ram_end > guest_layout::IMAGE_MIN {
        map.push(
            guest_layout::IMAGE_MIN,
            ram_end - guest_layout::IMAGE_MIN,
            E820_TYPE_RAM,
        );
    }
    if let Some((base, len)) = layout.reserved_window {
        map.push(base, len, E820_TYPE_RESERVED);
    }
    if let Some(high) = ram.high() {
        map.push(high.gpa, high.len, E820_TYPE_RAM);
    }
    map.entries[..map.len].sort_unstable_by_key(|e| e.addr);
    map
}

/// Loads `image` (a bzImage) with `initrd` and `cmdline` into `ram` (the guest's RAM below the
/// MMIO hole, guest-physical 0 is `ram[0]`) as `layout` says, and returns the entry state. `ram`
/// may be longer than the low RAM of `layout.ram_size`; only that much is used. RAM above 4 GiB
/// is only announced (e820), nothing is loaded there.
///
/// The kernel goes to its `pref_address` when `init_size` bytes fit there; a relocatable kernel
/// otherwise to the lowest `kernel_alignment`-aligned address from 16 MiB. The initrd goes to the
/// highest page-aligned place below min(`initrd_addr_max` + 1, low RAM end) above the kernel,
/// or else the highest one below the kernel.
pub fn load_linux(
    ram: &mut [u8],
    image: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    layout: &LinuxLayout,
) -> Result<LinuxEntry, LinuxError> {
    let ram_size = layout.ram_size;
    if ram_size > MAX_RAM {
        return Err(LinuxError::RamTooLarge {
            ram_size,
            max: MAX_RAM,
        });
    }
    // Everything is placed below the MMIO hole.
    let low_end = guest_layout::RamLayout::new(ram_size).low().end();
    if (ram.len() as u64) < low_end {
        return Err(LinuxError::RamSliceTooSmall {
            ram_size: low_end,
            slice_len: ram.len(),
        });
    }
    layout.check()?;
    let bz = parse_bzimage(image)?;
    check_cmdline(cmdline, &bz)?;
    let kernel_gpa = place_kernel(&bz, low_end)?;
    let kernel_end = kernel_gpa + bz.init_size;
    let initrd = initrd.filter(|i| !i.is_empty());
    let initrd_gpa = match initrd {
        Some(bytes) => Some(place_initrd(
            bytes.len() as u64,
            &bz,
            low_end,
            kernel_gpa..kernel_end,
        )?),
        None => None,
    };

    // Everything fits: from here on only writes to checked ranges.
    write(ram, kernel_gpa, bz.kernel)?;
    if let (Some(bytes), Some(gpa)) = (initrd, initrd_gpa) {
        write(ram, gpa, bytes)?;
    }
    write(ram, layout.cmdline, cmdline.as_bytes())?;
    write(ram, layout.cmdline + cmdline.len() as u64, &[0])?;
    write_boot_params(
        ram,
        image,
        &bz,
        layout,
        initrd_gpa.zip(initrd.map(|i| i.len() as u64)),
    )?;
    Ok(LinuxEntry {
        rip: kernel_gpa + ENTRY_64_OFFSET,
        rsi: layout.boot_params,
        kernel_gpa,
        initrd: initrd_gpa.zip(initrd.map(|i| i.len() as u64)),
    })
}

fn check_cmdline(cmdline: &str, bz: &BzImage<'_>) -> Result<(), LinuxError> {
    let max = usize::try_from(bz.cmdline_size)
        .unwrap_or(usize::MAX)
        .min(CMDLINE_MAX);
    if cmdline.len() > max {
        return Err(LinuxError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    if cmdline.as_bytes().contains(&0) {
        return Err(LinuxError::CmdlineHasNul);
    }
    Ok(())
}

/// `ram_size` is the low RAM's end: the kernel runs from below 4 GiB.
fn place_kernel(bz: &BzImage<'_>, ram_size: u64) -> Result<u64, LinuxError> {
    let fits = |addr: u64| {
        addr >= guest_layout::IMAGE_MIN
            && (!bz.relocatable || addr.is_multiple_of(bz.kernel_alignment))
            && addr
                .checked_add(bz.init_size)
                .is_some_and(|end| end <= ram_size)
    };
    let too_big = |addr| LinuxError::KernelDoesNotFit {
        addr,
        size: bz.init_size,
        ram_size,
    };
    if fits(bz.pref_address) {
        return Ok(bz.pref_address);
    }
    if !bz.relocatable {
        return Err(too_big(bz.pref_address));
    }
    let addr = KERNEL_MIN_LOAD
        .checked_next_multiple_of(bz.kernel_alignment)
        .ok_or(too_big(KERNEL_MIN_LOAD))?;
    if fits(addr) {
        Ok(addr)
    } else {
        Err(too_big(addr))
    }
}

fn place_initrd(
    size: u64,
    bz: &BzImage<'_>,
    low_end: u64,
    kernel: core::ops::Range<u64>,
) -> Result<u64, LinuxError> {
    let limit = bz.initrd_addr_max.saturating_add(1).min(low_end);
    let highest_below = |top: u64| top.checked_sub(size).map(|start| start & !(PAGE - 1));
    if let Some(start) = highest_below(limit).filter(|&s| s >= kernel.end) {
        return Ok(start);
    }
    highest_below(limit.min(kernel.start))
        .filter(|&s| s >= guest_layout::IMAGE_MIN)
        .ok_or(LinuxError::InitrdDoesNotFit { size, limit })
}

fn write_boot_params(
    ram: &mut [u8],
    image: &[u8],
    bz: &BzImage<'_>,
    layout: &LinuxLayout,
    initrd: Option<(u64, u64)>,
) -> Result<(), LinuxError> {
    let bp = layout.boot_params;
    region(ram, bp, BOOT_PARAMS_SIZE)?.fill(0);
    // The image's own header, exactly as long as the image says (boot.rst: "0x0202 + byte value
    // at offset 0x0201"), then the fields a loader owns.
    let header = image
        .get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + bz.header_len)
        .ok_or(LinuxError::Truncated)?;
    write(ram, bp + SETUP_HEADER_OFFSET as u64, header)?;
    let at = |offset: usize| bp + offset as u64;
    write(
        ram,
        at(hdr_field(offset_of!(SetupHeader, type_of_loader))),
        &[LOADER_TYPE_UNDEFINED],
    )?;
    // CAN_USE_HEAP and heap_end_ptr only matter to the real-mode setup code, which a 64-bit
    // boot skips: loadflags stay as the image has them.
    let (cmd_lo, cmd_hi) = split(layout.cmdline);
    write_u32(
        ram,
        at(hdr_field(offset_of!(SetupHeader, cmd_line_ptr))),
        cmd_lo,
    )?;
    write_u32(ram, at(offset_of!(BootParams, ext_cmd_line_ptr)), cmd_hi)?;
    let (addr, size) = initrd.unwrap_or((0, 0));
    let ((addr_lo, addr_hi), (size_lo, size_hi)) = (split(addr), split(size));
    write_u32(
        ram,
        at(hdr_field(offset_of!(SetupHeader, ramdisk_image))),
        addr_lo,
    )?;
    write_u32(
        ram,
        at(hdr_field(offset_of!(SetupHeader, ramdisk_size))),
        size_lo,
    )?;
    write_u32(ram, at(offset_of!(BootParams, ext_ramdisk_image)), addr_hi)?;
    write_u32(ram, at(offset_of!(BootParams, ext_ramdisk_size)), size_hi)?;
    let rsdp = layout.acpi_rsdp.unwrap_or(0);
    write(
        ram,
        at(offset_of!(BootParams, acpi_rsdp_addr)),
        &rsdp.to_le_bytes(),
    )?;

    let map = e820_map(layout);
    write(
        ram,
        at(offset_of!(BootParams, e820_entries)),
        &[map.entries().len() as u8],
    )?;
    for (i, e) in map.entries().iter().enumerate() {
        let entry = at(offset_of!(BootParams, e820_table) + i * size_of::<E820Entry>());
        write(
            ram,
            entry + offset_of!(E820Entry, addr) as u64,
            &{ e.addr }.to_le_bytes(),
        )?;
        write(
            ram,
            entry + offset_of!(E820Entry, size) as u64,
            &{ e.size }.to_le_bytes(),
        )?;
        write_u32(ram, entry + offset_of!(E820Entry, kind) as u64, e.kind)?;
    }
    Ok(())
}

/// Low and high 32 bits, for the split `x` / `ext_x` fields.
fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

fn region(ram: &mut [u8], gpa: u64, len: u64) -> Result<&mut [u8], LinuxError> {
    let start = usize::try_from(gpa).map_err(|_| LinuxError::BadLayout)?;
    let end = usize::try_from(gpa.checked_add(len).ok_or(LinuxError::BadLayout)?)
        .map_err(|_| LinuxError::BadLayout)?;
    ram.get_mut(start..end).ok_or(LinuxError::BadLayout)
}

fn write(ram: &mut [u8], gpa: u64, bytes: &[u8]) -> Result<(), LinuxError> {
    region(ram, gpa, bytes.len() as u64)?.copy_from_slice(bytes);
    Ok(())
}

fn write_u32(ram: &mut [u8], gpa: u64, v: u32) -> Result<(), LinuxError> {
    write(ram, gpa, &v.to_le_bytes())
}

#[cfg(test)]
mod tests;
