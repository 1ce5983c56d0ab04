//! Host tests of the loader. Offsets are the literal ones from boot.rst / zero-page.rst so they
//! check the structure definitions too.

use super::super::testimage::{kernel_byte, TestImage};
use super::*;

const MIB: u64 = 1 << 20;

fn u32_at(m: &[u8], at: u64) -> u32 {
    u32::from_le_bytes(m[at as usize..at as usize + 4].try_into().unwrap())
}

fn u64_at(m: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(m[at as usize..at as usize + 8].try_into().unwrap())
}

fn e820_at(m: &[u8], i: u64) -> (u64, u64, u32) {
    let e = BOOT_PARAMS_GPA + 0x2D0 + i * 20;
    (u64_at(m, e), u64_at(m, e + 8), u32_at(m, e + 16))
}

fn initrd_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ 0x5A).collect()
}

#[test]
fn loads_kernel_initrd_cmdline_and_zero_page() {
    let t = TestImage::default();
    let image = t.build();
    let initrd = initrd_bytes(0x2345);
    let mut ram = vec![0u8; (64 * MIB) as usize];
    let layout = LinuxLayout {
        acpi_rsdp: Some(0xE_0000),
        ..LinuxLayout::new(64 * MIB)
    };
    let cmdline = "console=ttyS0 quiet";
    let entry = load_linux(&mut ram, &image, Some(&initrd), cmdline, &layout).unwrap();

    assert_eq!(entry.rip, 0x100_0200);
    assert_eq!(entry.rsi, 0x8000);
    assert_eq!(entry.kernel_gpa, 0x100_0000);
    // Highest page below 64 MiB that holds 0x2345 bytes: 0x4000000 - 0x3000.
    assert_eq!(entry.initrd, Some((0x3FF_D000, 0x2345)));

    let k = &ram[0x100_0000..0x100_0000 + t.kernel_len];
    assert!(k.iter().enumerate().all(|(i, &b)| b == kernel_byte(i)));
    assert_eq!(&ram[0x3FF_D000..0x3FF_D000 + 0x2345], &initrd[..]);
    assert_eq!(&ram[0x9000..0x9000 + cmdline.len()], cmdline.as_bytes());
    assert_eq!(ram[0x9000 + cmdline.len()], 0);

    let bp = BOOT_PARAMS_GPA;
    let zp = &ram[bp as usize..bp as usize + 4096];
    // Loader-owned header fields.
    assert_eq!(zp[0x210], 0xFF, "type_of_loader");
    assert_eq!(u32_at(&ram, bp + 0x218), 0x3FF_D000, "ramdisk_image");
    assert_eq!(u32_at(&ram, bp + 0x21C), 0x2345, "ramdisk_size");
    assert_eq!(u32_at(&ram, bp + 0x228), 0x9000, "cmd_line_ptr");
    assert_eq!(u32_at(&ram, bp + 0x0C0), 0, "ext_ramdisk_image");
    assert_eq!(u32_at(&ram, bp + 0x0C4), 0, "ext_ramdisk_size");
    assert_eq!(u32_at(&ram, bp + 0x0C8), 0, "ext_cmd_line_ptr");
    assert_eq!(u64_at(&ram, bp + 0x070), 0xE_0000, "acpi_rsdp_addr");
    assert_eq!(zp[0x1EF], 0, "sentinel");
    // The rest of the header is the image's, byte for byte.
    let owned = [0x210..0x211, 0x218..0x220, 0x228..0x22C];
    for o in 0x1F1..0x26C {
        if !owned.iter().any(|r| r.contains(&o)) {
            assert_eq!(zp[o], image[o], "header byte {o:#x}");
        }
    }
    // e820: low RAM, the reserved hole, RAM from 1 MiB.
    assert_eq!(zp[0x1E8], 3, "e820_entries");
    assert_eq!(e820_at(&ram, 0), (0, 0x9_FC00, 1));
    assert_eq!(e820_at(&ram, 1), (0x9_FC00, 0x6_0400, 2));
    assert_eq!(e820_at(&ram, 2), (0x10_0000, 63 * MIB, 1));
    // Everything else is zero: screen_info (no VGA console), EDD, EFI, the 4th e820 slot...
    let written = [
        0x070..0x078,
        0x1E8..0x1E9,
        0x1F1..0x26C,
        0x2D0..0x2D0 + 3 * 20,
    ];
    for (o, &b) in zp.iter().enumerate() {
        if !written.iter().any(|r| r.contains(&o)) {
            assert_eq!(b, 0, "zero page byte {o:#x}");
        }
    }
    // Nothing below 1 MiB outside the zero page and command line was touched.
    assert!(ram[..0x8000].iter().all(|&b| b == 0));
    assert!(ram[0x9000 + cmdline.len() + 1..0x10_0000]
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn without_initrd_or_rsdp_the_fields_stay_zero() {
    let image = TestImage::default().build();
    let mut ram = vec![0u8; (32 * MIB) as usize];
    let entry = load_linux(&mut ram, &image, Some(&[]), "", &LinuxLayout::new(32 * MIB)).unwrap();
    assert_eq!(entry.initrd, None);
    let bp = BOOT_PARAMS_GPA;
    assert_eq!(u32_at(&ram, bp + 0x218), 0);
    assert_eq!(u32_at(&ram, bp + 0x21C), 0);
    assert_eq!(u64_at(&ram, bp + 0x070), 0);
    assert_eq!(ram[0x9000], 0, "empty command line is just the NUL");
}

#[test]
fn initrd_respects_initrd_addr_max() {
    let image = TestImage {
        initrd_addr_max: 0x2FF_FFFF,
        ..TestImage::default()
    }
    .build();
    let mut ram = vec![0u8; (64 * MIB) as usize];
    let entry = load_linux(
        &mut ram,
        &image,
        Some(&initrd_bytes(0x1000)),
        "",
        &LinuxLayout::new(64 * MIB),
    )
    .unwrap();
    // Must end at or below 0x2FFFFFF + 1 = 48 MiB.
    assert_eq!(entry.initrd, Some((0x2FF_F000, 0x1000)));
}

#[test]
fn initrd_goes_below_the_kernel_when_above_is_full() {
    // Kernel at 16 MiB with init_size 4 MiB ends exactly at the end of RAM.
    let image = TestImage::default().build();
    let mut ram = vec![0u8; (20 * MIB) as usize];
    let initrd = initrd_bytes(0x1800);
    let entry = load_linux(
        &mut ram,
        &image,
        Some(&initrd),
        "",
        &LinuxLayout::new(20 * MIB),
    )
    .unwrap();
    assert_eq!(entry.initrd, Some((0xFF_E000, 0x1800)));
    assert_eq!(&ram[0xFF_E000..0xFF_E000 + 0x1800], &initrd[..]);
}

#[test]
fn initrd_that_fits_nowhere_is_refused_before_any_write() {
    let image = TestImage::default().build();
    let mut ram = vec![0u8; (20 * MIB) as usize];
    let initrd = initrd_bytes((15 * MIB) as usize + 1);
    let err = load_linux(
        &mut ram,
        &image,
        Some(&initrd),
        "x",
        &LinuxLayout::new(20 * MIB),
    )
    .unwrap_err();
    assert_eq!(
        err,
        LinuxError::InitrdDoesNotFit {
            size: 15 * MIB + 1,
            limit: 20 * MIB
        }
    );
    assert!(ram.iter().all(|&b| b == 0));
}

#[test]
fn kernel_falls_back_from_an_unusable_pref_address() {
    let mut ram = vec![0u8; (64 * MIB) as usize];
    // Above RAM, unaligned, and zero: each time the lowest 2 MiB-aligned address from 16 MiB.
    for pref in [0x400_0000, 0x110_0000, 0] {
        let image = TestImage {
            pref_address: pref,
            ..TestImage::default()
        }
        .build();
        let e = load_linux(&mut ram, &image, None, "", &LinuxLayout::new(64 * MIB)).unwrap();
        assert_eq!(e.kernel_gpa, 0x100_0000, "pref {pref:#x}");
    }
    // A larger alignment moves the fallback up: 16 MiB rounded up to 32 MiB.
    let image = TestImage {
        pref_address: 0,
        kernel_alignment: 0x200_0000,
        ..TestImage::default()
    }
    .build();
    let e = load_linux(&mut ram, &image, None, "", &LinuxLayout::new(64 * MIB)).unwrap();
    assert_eq!(e.kernel_gpa, 0x200_0000);
    assert_eq!(e.rip, 0x200_0200);
}

#[test]
fn preferred_address_is_used_when_it_fits() {
    let image = TestImage {
        pref_address: 0x300_0000,
        ..TestImage::default()
    }
    .build();
    let mut ram = vec![0u8; (64 * MIB) as usize];
    let e = load_linux(&mut ram, &image, None, "", &LinuxLayout::new(64 * MIB)).unwrap();
    assert_eq!(e.kernel_gpa, 0x300_0000);
}

#[test]
fn too_small_ram_is_refused() {
    let image = TestImage::default().build();
    // 16 MiB + init_size (4 MiB) is needed; give one page less.
    let ram_size = 20 * MIB - 0x1000;
    let mut ram = vec![0u8; ram_size as usize];
    assert_eq!(
        load_linux(&mut ram, &image, None, "", &LinuxLayout::new(ram_size)).unwrap_err(),
        LinuxError::KernelDoesNotFit {
            addr: 0x100_0000,
            size: 0x40_0000,
            ram_size
        }
    );
    // A non-relocatable kernel gets no second chance.
    let fixed = TestImage {
        relocatable: 0,
        pref_address: 0x400_0000,
        ..TestImage::default()
    }
    .build();
    let mut ram = vec![0u8; (64 * MIB) as usize];
    assert!(matches!(
        load_linux(&mut ram, &fixed, None, "", &LinuxLayout::new(64 * MIB)),
        Err(LinuxError::KernelDoesNotFit {
            addr: 0x400_0000,
            ..
        })
    ));
}

#[test]
fn ram_slice_and_size_limits() {
    let image = TestImage::default().build();
    let mut ram = vec![0u8; (32 * MIB) as usize];
    assert_eq!(
        load_linux(&mut ram, &image, None, "", &LinuxLayout::new(33 * MIB)).unwrap_err(),
        LinuxError::RamSliceTooSmall {
            ram_size: 33 * MIB,
            slice_len: (32 * MIB) as usize
        }
    );
    assert_eq!(
        load_linux(&mut [], &image, None, "", &LinuxLayout::new(MAX_RAM + 1)).unwrap_err(),
        LinuxError::RamTooLarge {
            ram_size: MAX_RAM + 1,
            max: 256 << 30
        }
    );
}

#[test]
fn command_line_limits() {
    let image = TestImage::default().build(); // cmdline_size 2047
    let mut ram = vec![0u8; (32 * MIB) as usize];
    let layout = LinuxLayout::new(32 * MIB);
    let long = "a".repeat(2048);
    assert_eq!(
        load_linux(&mut ram, &image, None, &long, &layout).unwrap_err(),
        LinuxError::CmdlineTooLong {
            len: 2048,
            max: 2047
        }
    );
    assert!(load_linux(&mut ram, &image, None, &long[..2047], &layout).is_ok());
    // A kernel that accepts more is still held to the 4095-byte slot.
    let roomy = TestImage {
        cmdline_size: 0x1_0000,
        ..TestImage::default()
    }
    .build();
    let huge = "b".repeat(4096);
    assert_eq!(
        load_linux(&mut ram, &roomy, None, &huge, &layout).unwrap_err(),
        LinuxError::CmdlineTooLong {
            len: 4096,
            max: 4095
        }
    );
    load_linux(&mut ram, &roomy, None, &huge[..4095], &layout).unwrap();
    assert_eq!(ram[0x9000 + 4094], b'b');
    assert_eq!(ram[0x9000 + 4095], 0);
    assert_eq!(
        load_linux(&mut ram, &image, None, "a\0b", &layout).unwrap_err(),
        LinuxError::CmdlineHasNul
    );
}

#[test]
fn image_errors_pass_through() {
    let mut image = TestImage::default().build();
    image[0x203] = 0;
    let mut ram = vec![0u8; (32 * MIB) as usize];
    assert_eq!(
        load_linux(&mut ram, &image, None, "", &LinuxLayout::new(32 * MIB)).unwrap_err(),
        LinuxError::NotBzImage
    );
}

#[test]
fn bad_layouts_are_refused() {
    let image = TestImage::default().build();
    let mut ram = vec![0u8; (32 * MIB) as usize];
    let base = LinuxLayout::new(32 * MIB);
    for bad in [
        LinuxLayout {
            boot_params: 0x7000, // the GDT page
            ..base
        },
        LinuxLayout {
            cmdline: 0x8000, // same page as boot_params
            ..base
        },
        LinuxLayout {
            cmdline: 0x9_F000, // runs into the reserved hole
            ..base
        },
        LinuxLayout {
            boot_params: 0x8800, // not page aligned
            ..base
        },
        LinuxLayout {
            acpi_tables: 0xF_8000, // 64 KiB from here passes 1 MiB
            ..base
        },
        LinuxLayout {
            reserved_window: Some((16 * MIB, MIB)), // inside RAM
            ..base
        },
    ] {
        assert_eq!(
            load_linux(&mut ram, &image, None, "", &bad).unwrap_err(),
            LinuxError::BadLayout,
            "{bad:?}"
        );
    }
}

#[test]
fn e820_lists_the_reserved_window() {
    let layout = LinuxLayout {
        reserved_window: Some((0xB000_0000, 0x1000_0000)),
        ..LinuxLayout::new(512 * MIB)
    };
    let map = e820_map(&layout);
    let got: Vec<_> = map
        .entries()
        .iter()
        .map(|e| ({ e.addr }, { e.size }, { e.kind }))
        .collect();
    assert_eq!(
        got,
        [
            (0, 0x9_FC00, 1),
            (0x9_FC00, 0x6_0400, 2),
            (0x10_0000, 511 * MIB, 1),
            (0xB000_0000, 0x1000_0000, 2)
        ]
    );
}

#[test]
fn e820_puts_ram_above_3_gib_at_4_gib() {
    const GIB: u64 = 1 << 30;
    let layout = LinuxLayout {
        reserved_window: Some((0xB000_0000 + GIB, 0x1000_0000)),
        ..LinuxLayout::new(5 * GIB)
    };
    // Into the high RAM: refused.
    let mut ram = vec![0u8; (32 * MIB) as usize];
    let image = TestImage::default().build();
    assert_eq!(
        load_linux(
            &mut ram,
            &image,
            None,
            "",
            &LinuxLayout {
                reserved_window: Some((5 * GIB, MIB)),
                ..LinuxLayout::new(5 * GIB)
            }
        )
        .unwrap_err(),
        LinuxError::RamSliceTooSmall {
            ram_size: 3 * GIB,
            slice_len: (32 * MIB) as usize
        }
    );
    let got: Vec<_> = e820_map(&layout)
        .entries()
        .iter()
        .map(|e| ({ e.addr }, { e.size }, { e.kind }))
        .collect();
    assert_eq!(
        got,
        [
            (0, 0x9_FC00, 1),
            (0x9_FC00, 0x6_0400, 2),
            (0x10_0000, 3 * GIB - MIB, 1),
            (0xB000_0000 + GIB, 0x1000_0000, 2),
            (4 * GIB, 2 * GIB, 1),
        ]
    );
}

#[test]
fn a_5_gib_guest_gets_its_initrd_below_3_gib_and_five_e820_ram_gib() {
    const GIB: u64 = 1 << 30;
    let image = TestImage::default().build();
    let initrd = initrd_bytes(0x3000);
    // Only low RAM is handed over (3 GiB, zero pages the OS maps lazily).
    let mut ram = vec![0u8; (3 * GIB) as usize];
    let entry = load_linux(
        &mut ram,
        &image,
        Some(&initrd),
        "",
        &LinuxLayout::new(5 * GIB),
    )
    .unwrap();
    let (at, len) = entry.initrd.unwrap();
    assert!(at >= entry.kernel_gpa && at + len <= 3 * GIB, "{at:#x}");
    assert_eq!(&ram[at as usize..(at + len) as usize], &initrd[..]);
    let zp = BOOT_PARAMS_GPA;
    let n = ram[(zp + 0x1E8) as usize] as u64;
    let ram_bytes: u64 = (0..n)
        .map(|i| e820_at(&ram, i))
        .filter(|e| e.2 == 1)
        .map(|e| e.1)
        .sum();
    assert_eq!(ram_bytes, 5 * GIB - 0x6_0400);
    assert_eq!(e820_at(&ram, n - 1), (4 * GIB, 2 * GIB, 1));
}

/// Loads the Debian kernel named by `DIDVISOR_TEST_VMLINUZ` (xtask downloads it to
/// build/linux/vmlinuz). Skipped with a note when the variable is unset or the file is missing.
#[test]
fn real_debian_kernel() {
    let Some(path) = std::env::var_os("DIDVISOR_TEST_VMLINUZ") else {
        eprintln!("note: DIDVISOR_TEST_VMLINUZ unset, real-kernel test skipped");
        return;
    };
    let Ok(image) = std::fs::read(&path) else {
        eprintln!("note: {path:?} (DIDVISOR_TEST_VMLINUZ) not readable, real-kernel test skipped");
        return;
    };
    let bz = parse_bzimage(&image).expect("a 64-bit bzImage");
    assert!({ bz.header.version } >= 0x020C);
    assert!(bz.relocatable, "Debian kernels are relocatable");
    assert!(bz.kernel_alignment.is_power_of_two());
    assert_eq!(bz.pref_address, 0x100_0000, "CONFIG_PHYSICAL_START");
    assert!(bz.init_size > bz.kernel.len() as u64);
    assert!(bz.cmdline_size >= 255);
    // The protected-mode part starts with startup_32's code; a whole-file signature may follow it.
    assert_eq!(bz.kernel_offset + bz.kernel.len(), {
        let syssize = { bz.header.syssize } as usize;
        bz.kernel_offset + syssize * 16
    });
    assert!(image.len() >= bz.kernel_offset + bz.kernel.len());

    let ram_size = 256 * MIB;
    let mut ram = vec![0u8; ram_size as usize];
    let initrd = initrd_bytes(0x12_3456);
    let layout = LinuxLayout {
        acpi_rsdp: Some(0xE_0000),
        ..LinuxLayout::new(ram_size)
    };
    let e = load_linux(&mut ram, &image, Some(&initrd), "console=ttyS0", &layout).unwrap();
    assert_eq!(e.kernel_gpa, 0x100_0000);
    assert_eq!(e.rip, 0x100_0200);
    let k = e.kernel_gpa as usize;
    assert_eq!(&ram[k..k + bz.kernel.len()], bz.kernel);
    let (initrd_at, len) = e.initrd.unwrap();
    assert_eq!(initrd_at % 0x1000, 0);
    assert!(initrd_at >= e.kernel_gpa + bz.init_size);
    assert!(initrd_at + len <= ram_size);
    assert_eq!(ram[BOOT_PARAMS_GPA as usize + 0x210], 0xFF);
    assert_eq!(
        &ram[BOOT_PARAMS_GPA as usize + 0x202..BOOT_PARAMS_GPA as usize + 0x206],
        b"HdrS"
    );
    eprintln!(
        "real kernel: protocol {:#x}, {} KiB, init_size {:#x}, alignment {:#x}",
        { bz.header.version },
        bz.kernel.len() / 1024,
        bz.init_size,
        bz.kernel_alignment
    );
}
