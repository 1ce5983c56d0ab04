//! The structures of the x86 Linux boot protocol: the setup header a bzImage carries at offset
//! 0x1F1, and the 4 KiB "zero page" (`struct boot_params`) a boot loader hands to the kernel.
//! Layouts follow `arch/x86/include/uapi/asm/bootparam.h` (Linux 6.1) and the offset tables of
//! Documentation/arch/x86/boot.rst ("The Real-Mode Kernel Header") and
//! Documentation/arch/x86/zero-page.rst. Only the fields the loader writes or reads have names;
//! the rest are named reserved byte arrays that stay zero.

use core::mem::{offset_of, size_of};

/// Where the setup header starts in the bzImage file and in `boot_params`.
pub const SETUP_HEADER_OFFSET: usize = 0x1F1;

/// `struct setup_header` (boot.rst, "The Real-Mode Kernel Header", protocol 2.15). Offsets in the
/// comments are from the start of the image (and of `boot_params`), as boot.rst lists them.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupHeader {
    /// 0x1F1: size of the real-mode setup in 512-byte sectors; 0 means 4.
    pub setup_sects: u8,
    /// 0x1F2: obsolete read-only root flag.
    pub root_flags: u16,
    /// 0x1F4: size of the protected-mode code in 16-byte paragraphs.
    pub syssize: u32,
    /// 0x1F8: obsolete.
    pub ram_size: u16,
    /// 0x1FA: video mode control (real-mode setup only).
    pub vid_mode: u16,
    /// 0x1FC: default root device.
    pub root_dev: u16,
    /// 0x1FE: 0xAA55, the boot sector signature.
    pub boot_flag: u16,
    /// 0x200: a short jump; its second byte gives the end of the header (0x202 + that byte).
    pub jump: u16,
    /// 0x202: the magic "HdrS".
    pub header: u32,
    /// 0x206: boot protocol version, major in the high byte.
    pub version: u16,
    /// 0x208: real-mode switch hook.
    pub realmode_swtch: u32,
    /// 0x20C: obsolete.
    pub start_sys_seg: u16,
    /// 0x20E: pointer to the kernel version string (real-mode offset).
    pub kernel_version: u16,
    /// 0x210: boot loader id; 0xFF means "undefined loader".
    pub type_of_loader: u8,
    /// 0x211: LOADED_HIGH, KASLR_FLAG, QUIET_FLAG, KEEP_SEGMENTS, CAN_USE_HEAP.
    pub loadflags: u8,
    /// 0x212: real-mode only.
    pub setup_move_size: u16,
    /// 0x214: 32-bit entry point (32-bit protocol only).
    pub code32_start: u32,
    /// 0x218: initrd load address, low 32 bits.
    pub ramdisk_image: u32,
    /// 0x21C: initrd size, low 32 bits.
    pub ramdisk_size: u32,
    /// 0x220: obsolete.
    pub bootsect_kludge: u32,
    /// 0x224: end of the real-mode heap (real-mode setup only).
    pub heap_end_ptr: u16,
    /// 0x226: boot loader version extension.
    pub ext_loader_ver: u8,
    /// 0x227: boot loader type extension.
    pub ext_loader_type: u8,
    /// 0x228: command line address, low 32 bits.
    pub cmd_line_ptr: u32,
    /// 0x22C: highest address the initrd may occupy (inclusive).
    pub initrd_addr_max: u32,
    /// 0x230: physical alignment a relocatable kernel needs.
    pub kernel_alignment: u32,
    /// 0x234: non-zero if the kernel can run at any `kernel_alignment`-aligned address.
    pub relocatable_kernel: u8,
    /// 0x235: log2 of the smallest alignment the kernel tolerates.
    pub min_alignment: u8,
    /// 0x236: XLF_* capability flags.
    pub xloadflags: u16,
    /// 0x238: longest command line, excluding the terminating NUL.
    pub cmdline_size: u32,
    /// 0x23C: hardware subarchitecture (0 = PC).
    pub hardware_subarch: u32,
    /// 0x240: subarchitecture data.
    pub hardware_subarch_data: u64,
    /// 0x248: offset of the compressed payload from the protected-mode code.
    pub payload_offset: u32,
    /// 0x24C: length of the compressed payload.
    pub payload_length: u32,
    /// 0x250: physical address of a `setup_data` list (0 = none).
    pub setup_data: u64,
    /// 0x258: preferred load address.
    pub pref_address: u64,
    /// 0x260: memory the kernel needs from its load address before it can read the memory map.
    pub init_size: u32,
    /// 0x264: EFI handover entry offset.
    pub handover_offset: u32,
    /// 0x268: offset of `kernel_info` (protocol 2.15).
    pub kernel_info_offset: u32,
}

const _: () = {
    const fn at(field_offset: usize) -> usize {
        SETUP_HEADER_OFFSET + field_offset
    }
    assert!(size_of::<SetupHeader>() == 0x26C - SETUP_HEADER_OFFSET);
    assert!(at(offset_of!(SetupHeader, syssize)) == 0x1F4);
    assert!(at(offset_of!(SetupHeader, boot_flag)) == 0x1FE);
    assert!(at(offset_of!(SetupHeader, jump)) == 0x200);
    assert!(at(offset_of!(SetupHeader, header)) == 0x202);
    assert!(at(offset_of!(SetupHeader, version)) == 0x206);
    assert!(at(offset_of!(SetupHeader, type_of_loader)) == 0x210);
    assert!(at(offset_of!(SetupHeader, loadflags)) == 0x211);
    assert!(at(offset_of!(SetupHeader, code32_start)) == 0x214);
    assert!(at(offset_of!(SetupHeader, ramdisk_image)) == 0x218);
    assert!(at(offset_of!(SetupHeader, ramdisk_size)) == 0x21C);
    assert!(at(offset_of!(SetupHeader, heap_end_ptr)) == 0x224);
    assert!(at(offset_of!(SetupHeader, cmd_line_ptr)) == 0x228);
    assert!(at(offset_of!(SetupHeader, initrd_addr_max)) == 0x22C);
    assert!(at(offset_of!(SetupHeader, kernel_alignment)) == 0x230);
    assert!(at(offset_of!(SetupHeader, relocatable_kernel)) == 0x234);
    assert!(at(offset_of!(SetupHeader, min_alignment)) == 0x235);
    assert!(at(offset_of!(SetupHeader, xloadflags)) == 0x236);
    assert!(at(offset_of!(SetupHeader, cmdline_size)) == 0x238);
    assert!(at(offset_of!(SetupHeader, hardware_subarch)) == 0x23C);
    assert!(at(offset_of!(SetupHeader, payload_offset)) == 0x248);
    assert!(at(offset_of!(SetupHeader, setup_data)) == 0x250);
    assert!(at(offset_of!(SetupHeader, pref_address)) == 0x258);
    assert!(at(offset_of!(SetupHeader, init_size)) == 0x260);
    assert!(at(offset_of!(SetupHeader, handover_offset)) == 0x264);
    assert!(at(offset_of!(SetupHeader, kernel_info_offset)) == 0x268);
};

/// "HdrS" read as a little-endian u32.
pub const HDRS_MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
/// The boot sector signature at 0x1FE.
pub const BOOT_FLAG_MAGIC: u16 = 0xAA55;
/// `xloadflags` bit 0: the kernel has the 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit 1: kernel, boot_params, command line and initrd may live above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// `type_of_loader` value for a loader without an assigned id (boot.rst).
pub const LOADER_TYPE_UNDEFINED: u8 = 0xFF;

/// One e820 memory map entry, `struct boot_e820_entry` (bootparam.h; the BIOS INT 15h/E820h
/// format, ACPI 6.5 §15.1).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte of the range.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// One of the `E820_TYPE_*` values.
    pub kind: u32,
}

const _: () = {
    assert!(size_of::<E820Entry>() == 20);
    assert!(offset_of!(E820Entry, size) == 8);
    assert!(offset_of!(E820Entry, kind) == 16);
};

/// Usable RAM (ACPI 6.5 §15.1 address range types: AddressRangeMemory).
pub const E820_TYPE_RAM: u32 = 1;
/// Reserved, not to be used by the OS (AddressRangeReserved).
pub const E820_TYPE_RESERVED: u32 = 2;
/// Capacity of the zero page's e820 table.
pub const E820_MAX_ENTRIES: usize = 128;

/// `struct boot_params`, the zero page (zero-page.rst; bootparam.h of Linux 6.1). The loader
/// zeroes it, copies the image's setup header into `hdr` and fills the fields the 64-bit boot
/// protocol reads.
#[repr(C, packed)]
pub struct BootParams {
    /// 0x000: `struct screen_info`. All zero means no text console (vgacon sees 0 lines and
    /// columns and stays off), which is right: the guest has no VGA.
    pub screen_info: [u8; 0x40],
    /// 0x040: `struct apm_bios_info`.
    pub apm_bios_info: [u8; 0x14],
    pub _pad2: [u8; 4],
    /// 0x058: tboot shared page.
    pub tboot_addr: u64,
    /// 0x060: `struct ist_info`.
    pub ist_info: [u8; 0x10],
    /// 0x070: physical address of the ACPI RSDP (0: the kernel searches the BIOS areas).
    pub acpi_rsdp_addr: u64,
    pub _pad3: [u8; 8],
    /// 0x080: obsolete disk parameters.
    pub hd0_info: [u8; 16],
    /// 0x090: obsolete disk parameters.
    pub hd1_info: [u8; 16],
    /// 0x0A0: `struct sys_desc_table`.
    pub sys_desc_table: [u8; 0x10],
    /// 0x0B0: `struct olpc_ofw_header`.
    pub olpc_ofw_header: [u8; 0x10],
    /// 0x0C0: initrd address, high 32 bits.
    pub ext_ramdisk_image: u32,
    /// 0x0C4: initrd size, high 32 bits.
    pub ext_ramdisk_size: u32,
    /// 0x0C8: command line address, high 32 bits.
    pub ext_cmd_line_ptr: u32,
    pub _pad4: [u8; 112],
    /// 0x13C: confidential-computing blob (SEV-SNP).
    pub cc_blob_address: u32,
    /// 0x140: `struct edid_info`.
    pub edid_info: [u8; 0x80],
    /// 0x1C0: `struct efi_info`.
    pub efi_info: [u8; 0x20],
    /// 0x1E0: alternative memory size in KiB.
    pub alt_mem_k: u32,
    /// 0x1E4: scratch field for the kernel setup code.
    pub scratch: u32,
    /// 0x1E8: number of valid entries in `e820_table`.
    pub e820_entries: u8,
    /// 0x1E9: number of entries in `eddbuf`.
    pub eddbuf_entries: u8,
    /// 0x1EA: number of entries in `edd_mbr_sig_buffer`.
    pub edd_mbr_sig_buf_entries: u8,
    /// 0x1EB: keyboard status.
    pub kbd_status: u8,
    /// 0x1EC: EFI secure boot state.
    pub secure_boot: u8,
    pub _pad5: [u8; 2],
    /// 0x1EF: must stay 0; non-zero tells the kernel the loader did not zero the page.
    pub sentinel: u8,
    pub _pad6: [u8; 1],
    /// 0x1F1: the setup header, copied from the image.
    pub hdr: SetupHeader,
    pub _pad7: [u8; 0x290 - 0x26C],
    /// 0x290: EDD MBR signatures.
    pub edd_mbr_sig_buffer: [u32; 16],
    /// 0x2D0: the memory map.
    pub e820_table: [E820Entry; E820_MAX_ENTRIES],
    pub _pad8: [u8; 48],
    /// 0xD00: six `struct edd_info` of 82 bytes.
    pub eddbuf: [u8; 6 * 82],
    pub _pad9: [u8; 276],
}

const _: () = {
    assert!(size_of::<BootParams>() == 4096);
    assert!(offset_of!(BootParams, apm_bios_info) == 0x040);
    assert!(offset_of!(BootParams, tboot_addr) == 0x058);
    assert!(offset_of!(BootParams, ist_info) == 0x060);
    assert!(offset_of!(BootParams, acpi_rsdp_addr) == 0x070);
    assert!(offset_of!(BootParams, hd0_info) == 0x080);
    assert!(offset_of!(BootParams, sys_desc_table) == 0x0A0);
    assert!(offset_of!(BootParams, ext_ramdisk_image) == 0x0C0);
    assert!(offset_of!(BootParams, ext_ramdisk_size) == 0x0C4);
    assert!(offset_of!(BootParams, ext_cmd_line_ptr) == 0x0C8);
    assert!(offset_of!(BootParams, cc_blob_address) == 0x13C);
    assert!(offset_of!(BootParams, edid_info) == 0x140);
    assert!(offset_of!(BootParams, efi_info) == 0x1C0);
    assert!(offset_of!(BootParams, alt_mem_k) == 0x1E0);
    assert!(offset_of!(BootParams, e820_entries) == 0x1E8);
    assert!(offset_of!(BootParams, sentinel) == 0x1EF);
    assert!(offset_of!(BootParams, hdr) == SETUP_HEADER_OFFSET);
    assert!(offset_of!(BootParams, edd_mbr_sig_buffer) == 0x290);
    assert!(offset_of!(BootParams, e820_table) == 0x2D0);
    assert!(offset_of!(BootParams, _pad8) == 0xCD0);
    assert!(offset_of!(BootParams, eddbuf) == 0xD00);
    assert!(offset_of!(BootParams, _pad9) == 0xEEC);
};

/// Offset in `boot_params` of a setup-header field given by its offset inside [`SetupHeader`].
pub const fn hdr_field(field_offset: usize) -> usize {
    offset_of!(BootParams, hdr) + field_offset
}
