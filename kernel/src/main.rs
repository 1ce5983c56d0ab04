//! The didvisor binary: thin hardware glue (`hv/`) around the host-tested logic in the library.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod hv;

/// On the host this binary is empty: `cargo test` builds the workspace for the host.
#[cfg(not(target_os = "none"))]
fn main() {}
