//! What `cargo xtask`'s commands need on a fresh host, each installed when missing and said as
//! it happens: Debian packages (`deps`), the Rust target and components `rust-toolchain.toml`
//! names (`toolchain`), the stock Debian guest kernel with its modules and the initramfs built
//! around it (`linux`, with the `cpio` writer), and the progress lines long steps print
//! (`progress`). A crate of its own so that both xtask and the QEMU AVIC work (the `qemu-avic`
//! crate in tests/qemu-avic/) use it.

pub mod cpio;
pub mod deps;
pub mod linux;
pub mod progress;
pub mod toolchain;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A failure: the message, and the exit status xtask ends with.
#[derive(Debug)]
pub struct Error {
    pub msg: String,
    pub code: u8,
}

impl From<String> for Error {
    fn from(msg: String) -> Error {
        Error { msg, code: 1 }
    }
}

pub type Result<T = ()> = std::result::Result<T, Error>;

pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::from(msg.into()))
}

/// Runs a command with inherited stdio; a failure carries the command's exit status.
pub fn run_cmd(c: &mut Command) -> Result {
    let shown = format!("{c:?}");
    let status = c.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    Err(Error {
        msg: format!("{shown} failed: {status}"),
        code: status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .filter(|&c| c != 0)
            .unwrap_or(1),
    })
}

/// Reads a whole file; the error names it.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    Ok(fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?)
}

pub fn repo_root() -> PathBuf {
    tests::repo_root()
}
