//! Harness for integration tests that boot didvisor under QEMU.
