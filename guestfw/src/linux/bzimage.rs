//! Reading a bzImage's setup header (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel
//! Header" and "64-bit Boot Protocol"). The image comes from a boot module, so every field is
//! read with a bounds check and every value the loader later computes with is validated here.

use super::bootparam::{
    SetupHeader, BOOT_FLAG_MAGIC, HDRS_MAGIC, SETUP_HEADER_OFFSET, XLF_KERNEL_64,
};
use super::LinuxError;
use core::mem::{offset_of, size_of};
use firmware::bytes::{u16_at, u32_at, u64_at, u8_at};

/// Oldest boot protocol accepted: 2.12 added `xloadflags`, whose XLF_KERNEL_64 bit is the only
/// way a kernel says it has the 64-bit entry point (and 2.10 added `pref_address` and
/// `init_size`, which placement needs).
pub const MIN_PROTOCOL_VERSION: u16 = 0x020C;
/// Sector size for `setup_sects`.
const SECTOR: usize = 512;
/// boot.rst: "If this field is 0, the real value is 4."
const DEFAULT_SETUP_SECTS: usize = 4;
/// Offset of the byte that gives the end of the header (`0x202 + image[0x201]`, boot.rst).
const HEADER_END_BYTE: usize = 0x201;
/// The header of a protocol-2.12 kernel reaches at least past `handover_offset`.
const MIN_HEADER_END: usize = 0x268;

/// A validated bzImage: the setup header as the image has it and what the loader derives from it.
#[derive(Clone, Copy, Debug)]
pub struct BzImage<'a> {
    /// The header fields (offsets 0x1F1..0x26C of the file).
    pub header: SetupHeader,
    /// How many header bytes, from 0x1F1, belong to this kernel's header (older protocols have a
    /// shorter one); the loader copies exactly these into `boot_params`.
    pub header_len: usize,
    /// File offset of the protected-mode kernel: `(setup_sects + 1) * 512`.
    pub kernel_offset: usize,
    /// The protected-mode kernel, `syssize * 16` bytes (a signature appended to the file by a
    /// signing tool is not part of it).
    pub kernel: &'a [u8],
    /// Preferred load address.
    pub pref_address: u64,
    /// Load alignment of a relocatable kernel (a power of two).
    pub kernel_alignment: u64,
    /// Bytes the kernel needs from its load address while it decompresses itself; at least the
    /// size of the protected-mode kernel.
    pub init_size: u64,
    /// The kernel runs at any `kernel_alignment`-aligned address.
    pub relocatable: bool,
    /// Highest address the initrd may occupy, inclusive.
    pub initrd_addr_max: u64,
    /// Longest command line the kernel accepts, without the NUL.
    pub cmdline_size: u32,
}

impl SetupHeader {
    /// Decodes the header from `b`, which starts at file offset 0x1F1.
    pub fn parse(b: &[u8]) -> Option<Self> {
        Some(Self {
            setup_sects: u8_at(b, offset_of!(Self, setup_sects))?,
            root_flags: u16_at(b, offset_of!(Self, root_flags))?,
            syssize: u32_at(b, offset_of!(Self, syssize))?,
            ram_size: u16_at(b, offset_of!(Self, ram_size))?,
            vid_mode: u16_at(b, offset_of!(Self, vid_mode))?,
            root_dev: u16_at(b, offset_of!(Self, root_dev))?,
            boot_flag: u16_at(b, offset_of!(Self, boot_flag))?,
            jump: u16_at(b, offset_of!(Self, jump))?,
            header: u32_at(b, offset_of!(Self, header))?,
            version: u16_at(b, offset_of!(Self, version))?,
            realmode_swtch: u32_at(b, offset_of!(Self, realmode_swtch))?,
            start_sys_seg: u16_at(b, offset_of!(Self, start_sys_seg))?,
            kernel_version: u16_at(b, offset_of!(Self, kernel_version))?,
            type_of_loader: u8_at(b, offset_of!(Self, type_of_loader))?,
            loadflags: u8_at(b, offset_of!(Self, loadflags))?,
            setup_move_size: u16_at(b, offset_of!(Self, setup_move_size))?,
            code32_start: u32_at(b, offset_of!(Self, code32_start))?,
            ramdisk_image: u32_at(b, offset_of!(Self, ramdisk_image))?,
            ramdisk_size: u32_at(b, offset_of!(Self, ramdisk_size))?,
            bootsect_kludge: u32_at(b, offset_of!(Self, bootsect_kludge))?,
            heap_end_ptr: u16_at(b, offset_of!(Self, heap_end_ptr))?,
            ext_loader_ver: u8_at(b, offset_of!(Self, ext_loader_ver))?,
            ext_loader_type: u8_at(b, offset_of!(Self, ext_loader_type))?,
            cmd_line_ptr: u32_at(b, offset_of!(Self, cmd_line_ptr))?,
            initrd_addr_max: u32_at(b, offset_of!(Self, initrd_addr_max))?,
            kernel_alignment: u32_at(b, offset_of!(Self, kernel_alignment))?,
            relocatable_kernel: u8_at(b, offset_of!(Self, relocatable_kernel))?,
            min_alignment: u8_at(b, offset_of!(Self, min_alignment))?,
            xloadflags: u16_at(b, offset_of!(Self, xloadflags))?,
            cmdline_size: u32_at(b, offset_of!(Self, cmdline_size))?,
            hardware_subarch: u32_at(b, offset_of!(Self, hardware_subarch))?,
            hardware_subarch_data: u64_at(b, offset_of!(Self, hardware_subarch_data))?,
            payload_offset: u32_at(b, offset_of!(Self, payload_offset))?,
            payload_length: u32_at(b, offset_of!(Self, payload_length))?,
            setup_data: u64_at(b, offset_of!(Self, setup_data))?,
            pref_address: u64_at(b, offset_of!(Self, pref_address))?,
            init_size: u32_at(b, offset_of!(Self, init_size))?,
            handover_offset: u32_at(b, offset_of!(Self, handover_offset))?,
            kernel_info_offset: u32_at(b, offset_of!(Self, kernel_info_offset))?,
        })
    }
}

/// Checks that `image` is a bzImage this loader can start through the 64-bit boot protocol and
/// works out where its parts are.
pub fn parse_bzimage(image: &[u8]) -> Result<BzImage<'_>, LinuxError> {
    let header_bytes = image
        .get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size_of::<SetupHeader>())
        .ok_or(LinuxError::Truncated)?;
    let header = SetupHeader::parse(header_bytes).ok_or(LinuxError::Truncated)?;
    if header.boot_flag != BOOT_FLAG_MAGIC || header.header != HDRS_MAGIC {
        return Err(LinuxError::NotBzImage);
    }
    if header.version < MIN_PROTOCOL_VERSION {
        return Err(LinuxError::ProtocolTooOld {
            version: header.version,
        });
    }
    if header.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::No64BitEntry);
    }
    let header_end = 0x202 + usize::from(u8_at(image, HEADER_END_BYTE).unwrap_or(0));
    if header_end < MIN_HEADER_END {
        return Err(LinuxError::BadHeaderLength { end: header_end });
    }
    let header_len = (header_end - SETUP_HEADER_OFFSET).min(size_of::<SetupHeader>());

    let setup_sects = match header.setup_sects {
        0 => DEFAULT_SETUP_SECTS,
        n => usize::from(n),
    };
    let kernel_offset = (setup_sects + 1) * SECTOR;
    let rest = image.get(kernel_offset..).unwrap_or(&[]);
    let declared = usize::try_from(u64::from(header.syssize) * 16).unwrap_or(usize::MAX);
    let kernel = match declared {
        0 => rest,
        n => rest.get(..n).ok_or(LinuxError::Truncated)?,
    };
    if kernel.is_empty() {
        return Err(LinuxError::Truncated);
    }

    let kernel_alignment = u64::from(header.kernel_alignment);
    let relocatable = header.relocatable_kernel != 0;
    if relocatable && !kernel_alignment.is_power_of_two() {
        return Err(LinuxError::BadAlignment {
            alignment: header.kernel_alignment,
        });
    }
    Ok(BzImage {
        header,
        header_len,
        kernel_offset,
        kernel,
        pref_address: header.pref_address,
        kernel_alignment,
        init_size: u64::from(header.init_size).max(kernel.len() as u64),
        relocatable,
        initrd_addr_max: u64::from(header.initrd_addr_max),
        cmdline_size: header.cmdline_size,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testimage::TestImage;
    use super::*;

    #[test]
    fn synthetic_image_fields() {
        let t = TestImage::default();
        let image = t.build();
        let bz = parse_bzimage(&image).unwrap();
        // setup_sects 3 -> the kernel starts after 4 sectors.
        assert_eq!(bz.kernel_offset, 0x800);
        assert_eq!(bz.kernel.len(), t.kernel_len);
        assert_eq!(bz.kernel, &image[0x800..0x800 + t.kernel_len]);
        assert_eq!(bz.pref_address, 0x100_0000);
        assert_eq!(bz.kernel_alignment, 0x20_0000);
        assert_eq!(bz.init_size, 0x40_0000);
        assert!(bz.relocatable);
        assert_eq!(bz.initrd_addr_max, 0x7FFF_FFFF);
        assert_eq!(bz.cmdline_size, 2047);
        assert_eq!({ bz.header.version }, 0x020F);
        // jump byte 0x6A: header ends at 0x26C, the whole struct.
        assert_eq!(bz.header_len, 0x7B);
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let t = TestImage {
            setup_sects: 0,
            ..TestImage::default()
        };
        assert_eq!(parse_bzimage(&t.build()).unwrap().kernel_offset, 5 * 512);
    }

    #[test]
    fn trailing_signature_is_not_kernel() {
        let t = TestImage::default();
        let mut image = t.build();
        image.extend_from_slice(&[0xEE; 100]);
        assert_eq!(parse_bzimage(&image).unwrap().kernel.len(), t.kernel_len);
    }

    #[test]
    fn init_size_never_below_kernel_size() {
        let t = TestImage {
            init_size: 0x100,
            ..TestImage::default()
        };
        assert_eq!(
            parse_bzimage(&t.build()).unwrap().init_size,
            t.kernel_len as u64
        );
    }

    #[test]
    fn rejects_bad_magic() {
        let mut image = TestImage::default().build();
        image[0x202] = b'X';
        assert_eq!(parse_bzimage(&image).unwrap_err(), LinuxError::NotBzImage);
        let mut image = TestImage::default().build();
        image[0x1FE] = 0;
        assert_eq!(parse_bzimage(&image).unwrap_err(), LinuxError::NotBzImage);
    }

    #[test]
    fn rejects_old_protocol_and_32_bit_kernels() {
        let old = TestImage {
            version: 0x020B,
            ..TestImage::default()
        };
        assert_eq!(
            parse_bzimage(&old.build()).unwrap_err(),
            LinuxError::ProtocolTooOld { version: 0x020B }
        );
        let no64 = TestImage {
            xloadflags: 0b10,
            ..TestImage::default()
        };
        assert_eq!(
            parse_bzimage(&no64.build()).unwrap_err(),
            LinuxError::No64BitEntry
        );
    }

    #[test]
    fn rejects_truncation_everywhere() {
        let t = TestImage::default();
        let image = t.build();
        for len in [0, 0x1F0, 0x26B, 0x800, 0x800 + t.kernel_len - 1] {
            assert_eq!(
                parse_bzimage(&image[..len]).unwrap_err(),
                LinuxError::Truncated,
                "length {len:#x}"
            );
        }
        assert!(parse_bzimage(&image[..0x800 + t.kernel_len]).is_ok());
    }

    #[test]
    fn rejects_short_header_and_bad_alignment() {
        let mut image = TestImage::default().build();
        image[0x201] = 0x20;
        assert_eq!(
            parse_bzimage(&image).unwrap_err(),
            LinuxError::BadHeaderLength { end: 0x222 }
        );
        let t = TestImage {
            kernel_alignment: 0x30_0000,
            ..TestImage::default()
        };
        assert_eq!(
            parse_bzimage(&t.build()).unwrap_err(),
            LinuxError::BadAlignment {
                alignment: 0x30_0000
            }
        );
    }

    #[test]
    fn header_parse_reads_every_offset() {
        // Each field gets a distinct value at the file offset boot.rst lists.
        let mut b = vec![0u8; 0x7B];
        let mut put = |file_offset: usize, bytes: &[u8]| {
            let o = file_offset - SETUP_HEADER_OFFSET;
            b[o..o + bytes.len()].copy_from_slice(bytes);
        };
        put(0x1F1, &[7]);
        put(0x1F4, &0x1122_3344u32.to_le_bytes());
        put(0x206, &0x020Fu16.to_le_bytes());
        put(0x211, &[0x81]);
        put(0x22C, &0x3FFF_FFFFu32.to_le_bytes());
        put(0x236, &0x7Fu16.to_le_bytes());
        put(0x238, &0x7FFu32.to_le_bytes());
        put(0x258, &0x0123_4567_89AB_CDEFu64.to_le_bytes());
        put(0x260, &0x03F9_8000u32.to_le_bytes());
        put(0x268, &0xCAFEu32.to_le_bytes());
        let h = SetupHeader::parse(&b).unwrap();
        assert_eq!(h.setup_sects, 7);
        assert_eq!({ h.syssize }, 0x1122_3344);
        assert_eq!({ h.version }, 0x020F);
        assert_eq!(h.loadflags, 0x81);
        assert_eq!({ h.initrd_addr_max }, 0x3FFF_FFFF);
        assert_eq!({ h.xloadflags }, 0x7F);
        assert_eq!({ h.cmdline_size }, 0x7FF);
        assert_eq!({ h.pref_address }, 0x0123_4567_89AB_CDEF);
        assert_eq!({ h.init_size }, 0x03F9_8000);
        assert_eq!({ h.kernel_info_offset }, 0xCAFE);
        assert_eq!(SetupHeader::parse(&b[..0x7A]), None);
    }
}
