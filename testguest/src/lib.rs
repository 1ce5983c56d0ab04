//! The test guest's pure logic, built for the bare-metal target (used by the `testguest` binary)
//! and for the host, where `cargo test -p testguest` runs its unit tests:
//!
//! | module     | what                                                                         |
//! |------------|------------------------------------------------------------------------------|
//! | `cmdline`  | the command line words: `end=...` and `canary=0x...`                         |
//! | `delivery` | the delivery-checking guest's model of its local APIC and its books (`deliver=`) |
//! | `fuzz_plan`| the fuzzing guest's seeded stream of random actions (`fuzz=SEED`)     |
//! | `nvme_io`  | NVM I/O on top of `nvme`: an I/O queue pair (its `QueuePair`), the |
//! |            | Read/Write encoders, PRPs, the namespace's LBA format, test patterns         |
#![cfg_attr(not(test), no_std)]

pub mod cmdline;
pub mod delivery;
pub mod fuzz_plan;
pub mod nvme_io;
