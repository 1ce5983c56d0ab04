//! A purpose-built bare-metal guest that checks single hypervisor mechanisms exactly and reports on
//! its debug console (port 0xE9). The hypervisor enters it in 64-bit mode with identity paging at
//! `_start` with RDI = guest RAM size in bytes, RSI = its vCPU id and RDX = the guest-physical
//! address of its NUL-terminated command line (`cmdline=` of its `guest=` description).
//! `end=triple-fault|reset|halt` in the command line makes it end that way right after its greeting
//! instead of running the checks below and powering off; `end=nvme-dma` (with up to four
//! `canary=0xADDR` words) drives the NVMe VF passed through at 00:01.0 instead (see `nvme.rs`).
//! `end=virtio-bad` feeds the virtio-blk device at 00:02.0 malformed rings (`virtio_bad.rs`).
//! `attack=...`, `fuzz=SEED` and `deliver=...` run the attack, fuzzing and delivery-checking
//! guests first (`attack.rs`, `fuzz.rs`, `deliver.rs`).
//! The command line parsing and other pure logic live in the library (`lib.rs`), which
//! `cargo test -p testguest` tests on the host.
//!
//! What it does, in order, so the test can count the exits it causes:
//! 1. prints a greeting (one I/O exit per byte);
//! 2. executes exactly four CPUID instructions and reports what it saw;
//! 3. fills and checks a block of its own RAM (no exits: RAM is mapped);
//! 4. touches memory outside its RAM: one read just past its end, one write and one read at 3 GiB —
//!    three nested page faults the hypervisor reports and contains;
//! 5. requests power-off through the ACPI PM1a control port (SLP_EN).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod attack;
#[cfg(target_os = "none")]
mod deliver;
#[cfg(target_os = "none")]
mod fuzz;
#[cfg(target_os = "none")]
mod guest;
#[cfg(target_os = "none")]
mod nvme;
#[cfg(target_os = "none")]
mod traps;
#[cfg(target_os = "none")]
mod virtio_bad;

#[cfg(not(target_os = "none"))]
fn main() {}
