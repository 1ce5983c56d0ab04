//! Fuzz target of the Linux boot protocol (see `docs/fuzzing.md`): bzImages and initrds come
//! from boot modules, so neither may crash the hypervisor or make it write outside a guest's RAM.
//!
//! - `fuzz_bzimage`: the bzImage header parser and the Linux boot-protocol loader.

use guestfw::guest_layout::IMAGE_MIN;
use guestfw::linux::{self, LinuxLayout, ENTRY_64_OFFSET};
use hostfuzz::proptest;
use hostfuzz::proptest::prelude::*;
use hostfuzz::{is_zero, with_guest, Bytes};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// bzImage and the Linux boot protocol.

/// A small synthetic bzImage (the unit tests' TestImage with a 1 MiB preferred address and a
/// 64 KiB init_size, so it loads into a few MiB of RAM).
fn small_bzimage() -> Vec<u8> {
    let kernel_len = 0x1000;
    let kernel_at = 4 * 512;
    let mut v = vec![0u8; kernel_at + kernel_len];
    let mut put = |o: usize, b: &[u8]| v[o..o + b.len()].copy_from_slice(b);
    put(0x1F1, &[3]); // setup_sects
    put(0x1F4, &((kernel_len / 16) as u32).to_le_bytes());
    put(0x1FE, &[0x55, 0xAA]);
    put(0x200, &[0xEB, 0x6A]);
    put(0x202, b"HdrS");
    put(0x206, &0x020Fu16.to_le_bytes());
    put(0x211, &[0x01]); // LOADED_HIGH
    put(0x214, &0x10_0000u32.to_le_bytes());
    put(0x22C, &0x7FFF_FFFFu32.to_le_bytes());
    put(0x230, &0x1000u32.to_le_bytes()); // kernel_alignment
    put(0x234, &[1, 12]); // relocatable, min_alignment
    put(0x236, &0x7Fu16.to_le_bytes());
    put(0x238, &2047u32.to_le_bytes());
    put(0x258, &0x10_0000u64.to_le_bytes()); // pref_address
    put(0x260, &0x1_0000u32.to_le_bytes()); // init_size
    for (i, b) in v[kernel_at..].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    v
}

fn layout() -> impl Strategy<Value = LinuxLayout> {
    let standard = (
        proptest::option::of(prop_oneof![Just(0xE_0000u64), any::<u64>()]),
        proptest::option::of((any::<u64>(), any::<u64>())),
    );
    prop_oneof![
        // The hypervisor's own layout.
        8 => standard.prop_map(|(acpi_rsdp, reserved_window)| LinuxLayout {
            acpi_rsdp,
            reserved_window,
            ..LinuxLayout::new(0)
        }),
        // Anything: the loader must refuse a bad layout, not write through it.
        1 => (
            prop_oneof![0..0x10_0000u64, any::<u64>()],
            prop_oneof![0..0x10_0000u64, any::<u64>()],
            prop_oneof![0..0x10_0000u64, any::<u64>()],
        )
            .prop_map(|(boot_params, cmdline, acpi_tables)| LinuxLayout {
                boot_params,
                cmdline,
                acpi_tables,
                acpi_rsdp: None,
                reserved_window: None,
                ram_size: 0,
            }),
    ]
}

/// A Linux load: image, initrd length, command line, RAM size, layout.
type LinuxCase = (Bytes, Option<usize>, String, u64, LinuxLayout);

fn linux_case() -> impl Strategy<Value = LinuxCase> {
    let ram = prop_oneof![
        2 => Just(MIB),
        12 => Just(2 * MIB),
        12 => Just(4 * MIB),
        8 => (1..16u64).prop_map(|m| m * MIB + 0x1000),
        1 => Just(24 * MIB),
        // Room for the Debian seed's 64 MiB init_size at 16 MiB.
        1 => Just(96 * MIB),
    ];
    let cmdline = prop_oneof![
        4 => proptest::string::string_regex("[ -~]{0,80}").expect("regex"),
        1 => proptest::collection::vec(any::<char>(), 0..40).prop_map(|v| v.into_iter().collect()),
        1 => (2000..5000usize).prop_map(|n| "x".repeat(n)),
    ];
    (
        hostfuzz::inputs("bzimage", vec![small_bzimage()], 4096),
        proptest::option::of(prop_oneof![0..0x100usize, 0..0x2_0000usize]),
        cmdline,
        ram,
        layout(),
    )
}

/// The properties of one load; returns whether the kernel was accepted.
fn check_linux((image, initrd_len, cmdline, ram_size, layout): LinuxCase) -> bool {
    let layout = LinuxLayout { ram_size, ..layout };
    let bz = linux::parse_bzimage(&image);
    if let Ok(bz) = &bz {
        let sects = match image[0x1F1] {
            0 => 4,
            n => usize::from(n),
        };
        assert_eq!(bz.kernel_offset, (sects + 1) * 512);
        let k = bz.kernel.as_ptr() as usize - image.as_ptr() as usize;
        assert_eq!(k, bz.kernel_offset);
        assert!(!bz.kernel.is_empty() && k + bz.kernel.len() <= image.len());
        assert!(bz.header_len <= 0x7B && 0x1F1 + bz.header_len <= image.len());
        assert!(bz.init_size >= bz.kernel.len() as u64);
        assert!(!bz.relocatable || bz.kernel_alignment.is_power_of_two());
    }
    let initrd: Option<Vec<u8>> =
        initrd_len.map(|n| (0..n).map(|i| (i % 251) as u8 ^ 0x5A).collect());
    // One page past the guest's RAM: the loader must not write there.
    let guard = 0x1000;
    with_guest(ram_size as usize + guard, |ram| {
        let result = linux::load_linux(ram, &image, initrd.as_deref(), &cmdline, &layout);
        let entry = match result {
            Ok(e) => e,
            Err(e) => {
                let _ = e.to_string();
                assert!(is_zero(ram), "refused ({e:?}) but wrote guest RAM");
                return false;
            }
        };
        let bz = bz.as_ref().expect("loaded an image parse_bzimage refuses");
        check_linux_entry(
            ram,
            ram_size,
            bz,
            entry,
            initrd.as_deref(),
            &cmdline,
            &layout,
        );
        true
    })
}

/// The properties of an accepted load.
fn check_linux_entry(
    ram: &[u8],
    ram_size: u64,
    bz: &linux::BzImage<'_>,
    entry: linux::LinuxEntry,
    initrd: Option<&[u8]>,
    cmdline: &str,
    layout: &LinuxLayout,
) {
    assert!(is_zero(&ram[ram_size as usize..]), "wrote past RAM");
    let k = entry.kernel_gpa;
    let kernel_end = k.checked_add(bz.init_size).expect("kernel end overflows");
    assert!(k >= IMAGE_MIN && kernel_end <= ram_size, "kernel at {k:#x}");
    assert!(k == bz.pref_address || (bz.relocatable && k.is_multiple_of(bz.kernel_alignment)));
    assert_eq!(entry.rip, k + ENTRY_64_OFFSET);
    assert_eq!(entry.rsi, layout.boot_params);
    assert_eq!(&ram[k as usize..k as usize + bz.kernel.len()], bz.kernel);
    let given = initrd.filter(|i| !i.is_empty());
    match (entry.initrd, given) {
        (Some((at, len)), Some(bytes)) => {
            assert_eq!(len, bytes.len() as u64);
            let end = at + len;
            assert!(
                at.is_multiple_of(0x1000) && at >= IMAGE_MIN,
                "initrd at {at:#x}"
            );
            assert!(end <= ram_size && end <= 1 << 32 && end <= bz.initrd_addr_max + 1);
            assert!(end <= k || at >= kernel_end, "initrd overlaps the kernel");
            assert_eq!(&ram[at as usize..end as usize], bytes);
        }
        (None, None) => {}
        (got, _) => panic!(
            "initrd placed as {got:?} for {:?} bytes",
            given.map(|g| g.len())
        ),
    }
    let c = layout.cmdline as usize;
    assert_eq!(&ram[c..c + cmdline.len()], cmdline.as_bytes());
    assert_eq!(ram[c + cmdline.len()], 0);
    let bp = layout.boot_params as usize;
    let cmd_line_ptr = u32::from_le_bytes(ram[bp + 0x228..bp + 0x22C].try_into().unwrap());
    assert_eq!(u64::from(cmd_line_ptr), layout.cmdline);
    assert_eq!(
        usize::from(ram[bp + 0x1E8]),
        linux::e820_map(layout).entries().len()
    );
}

#[test]
fn fuzz_bzimage() {
    hostfuzz::run(
        "bzimage",
        5000,
        |b| {
            Some((
                Bytes(b),
                Some(0x1234),
                "console=ttyS0 quiet".to_string(),
                96 * MIB,
                LinuxLayout::new(0),
            ))
        },
        linux_case,
        check_linux,
    );
}

/// Writes the seed built here into the corpus: `cargo test -p guestfw --test fuzz -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing a builder"]
fn write_seed_corpus() {
    hostfuzz::write_seed("bzimage", "synthetic-small.bin", &small_bzimage());
}
