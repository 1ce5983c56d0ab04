//! Harness for integration tests that boot didvisor under QEMU.
//!
//! ```no_run
//! use tests::{Boot, Expected, Qemu};
//! let run = Qemu::new()
//!     .boot(Boot::Multiboot1)
//!     .cmdline("guest=a,cores=1,mem=16M,kernel=testguest")
//!     .module(tests::testguest(), "testguest")
//!     .expect_exit(Expected::Clean)
//!     .run("smoke");
//! run.assert_line("guest a: ended");
//! ```
//!
//! Images come from `cargo xtask build` (`build/` at the repo root, or `$DIDVISOR_BUILD_DIR`).
//! Every run writes its serial output to `target/test-logs/<test name>.log` and its
//! scratch files (ISO, OVMF variable store, QEMU stderr) to `target/test-work/<test name>/`.
//!
//! The boot-image helpers in [`image`] are shared with `xtask`.

pub mod attack;
pub mod delivery;
pub mod image;
pub mod qemu;
pub mod report;
pub mod virtio_disk;

pub use image::Module;
pub use qemu::{
    describe_exit, Boot, BootFiles, Expected, Qemu, Run, SerialOut, OVMF_CODE, OVMF_VARS,
};

use std::path::PathBuf;

/// The workspace root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the repo root) or `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => repo_root().join(d),
        _ => repo_root().join("target"),
    }
}

/// Where `cargo xtask build` puts the boot images: `build/` at the repo root, or
/// `$DIDVISOR_BUILD_DIR` (relative to the repo root).
pub fn build_dir() -> PathBuf {
    match std::env::var_os("DIDVISOR_BUILD_DIR") {
        Some(d) if !d.is_empty() => repo_root().join(d),
        _ => repo_root().join("build"),
    }
}

/// `build/didvisor.elf`: the ELF64 hypervisor image GRUB loads (Multiboot2).
pub fn kernel_elf() -> PathBuf {
    build_dir().join("didvisor.elf")
}

/// `build/didvisor-mb1.elf`: the ELF32 copy QEMU's `-kernel` loads (Multiboot1).
pub fn kernel_mb1_elf() -> PathBuf {
    build_dir().join("didvisor-mb1.elf")
}

/// `build/testguest.elf`: the bare-metal test guest.
pub fn testguest() -> PathBuf {
    build_dir().join("testguest.elf")
}

/// Panics with "images missing: run `cargo xtask build` first" unless all images exist.
pub fn check_images() {
    let missing: Vec<String> = [kernel_elf(), kernel_mb1_elf(), testguest()]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        panic!(
            "images missing: run `cargo xtask build` first (missing: {})",
            missing.join(", ")
        );
    }
}

/// `build/linux/vmlinuz`: the unmodified Debian kernel (bzImage) `cargo xtask build` fetched.
pub fn linux_kernel() -> PathBuf {
    build_dir().join("linux/vmlinuz")
}

/// `build/linux/initrd.cpio.gz`: busybox and `guest/init.sh`.
pub fn linux_initrd() -> PathBuf {
    build_dir().join("linux/initrd.cpio.gz")
}

/// `build/linux/VERSION`: the guest kernel's release string (`uname -r`).
pub fn linux_version() -> String {
    std::fs::read_to_string(build_dir().join("linux/VERSION"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| panic!("guest kernel missing ({e}): run `cargo xtask build` first"))
}
