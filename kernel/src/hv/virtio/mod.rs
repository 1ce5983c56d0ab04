//! Virtual devices (virtio 1.x over PCI), apart from the VMM core: the `virtio` crate holds the
//! device logic; this folder gives it a guest's RAM (`memory`), the guest's bus, BAR traps and
//! interrupts (`device`, generic over a [`device::Backend`]), and one file per device type
//! (`blk`). Uses `host`, `irq` and `vm`; `world` sends the BAR exits here and `hv/mod.rs` runs
//! the backends on the service core.
//!
//! Devices today: one virtio-blk disk per guest that asks for one (`disk=MODULE[:ro]`), at
//! 00:02.0 of its bus. virtio-net and virtio-console come later, on the same `device` code.

pub mod blk;
pub mod device;
pub mod memory;

use crate::hv::host::phys;
use crate::hv::vm::guest::Vm;
use crate::hv::vm::guest_pci::{GuestPci, VIRTIO_DEVFN};
use crate::println;
use blk::{BlkBackend, ModuleDisk};
use boot::BootInfo;
use core::sync::atomic::{AtomicBool, Ordering};
use device::VirtioDevice;
use didvisor::config::{DiskConfig, MAX_GUESTS};
use spin::Once;
use virtio::blk::RamDisk;

/// Where BAR 0 of a guest's virtio device starts out: in the guest's PCI window (its DSDT's
/// PCI0 `_CRS`), above the passed-through VF's BARs.
pub const VIRTIO_BAR_GPA: u64 = 0xfe00_0000;
const _: () = assert!(VIRTIO_BAR_GPA >= crate::hv::vm::vf_host::GUEST_BAR_END);

/// Per guest (by index): its disk.
static DISKS: [Once<VirtioDevice<BlkBackend>>; MAX_GUESTS] = [const { Once::new() }; MAX_GUESTS];
/// Per guest: its devices' end report was printed.
static REPORTED: [AtomicBool; MAX_GUESTS] = [const { AtomicBool::new(false) }; MAX_GUESTS];

/// Gives guest `index` (`vm`, built, not started) the disk `disk` from its boot module.
pub fn attach_disk(
    index: usize,
    vm: &'static Vm,
    disk: DiskConfig,
    boot: &'static BootInfo,
) -> Result<(), &'static str> {
    let module = boot
        .module(disk.module.as_str())
        .ok_or("no such boot module")?;
    if module.len() < virtio::blk::SECTOR_SIZE {
        return Err("the module is smaller than one 512-byte sector");
    }
    let storage = if disk.read_only {
        // SAFETY: boot modules are reserved hypervisor memory; a read-only disk only reads it.
        ModuleDisk::ReadOnly(unsafe { phys::slice(module.start, module.len()) })
    } else {
        // SAFETY: boot modules are reserved hypervisor memory that no guest maps, and the
        // configuration gives a writable disk module to this guest alone and to no kernel or
        // initrd (`config::ConfigError::SharedDisk`, `DiskIsBootImage`): this device is its only
        // user from here on.
        ModuleDisk::Writable(RamDisk::new(unsafe {
            phys::slice_mut(module.start, module.len())
        }))
    };
    let backend = BlkBackend::new(storage, module.name.as_str(), disk.read_only);
    let sectors = backend.sectors();
    let dev = DISKS[index]
        .call_once(|| VirtioDevice::new(vm, "virtio-blk", VIRTIO_DEVFN, VIRTIO_BAR_GPA, backend));
    vm.platform
        .legacy
        .lock()
        .pci_bus_mut()
        .add(VIRTIO_DEVFN, GuestPci::Virtual(dev))
        .map_err(|_| "guest PCI slot 00:02.0 is taken")?;
    println!(
        "guest {}: virtio-blk as 00:02.0, BAR 0 at {VIRTIO_BAR_GPA:#x}, disk `{}` ({sectors} sectors{})",
        vm.config.name,
        disk.module.as_str(),
        if disk.read_only { ", read-only" } else { "" }
    );
    Ok(())
}

/// A nested page fault of guest `vm` at `gpa` that may be a virtio BAR access; `None` if no
/// device of the guest claims it.
pub fn mmio(vm: &Vm, gpa: u64, size: u8, write: Option<u64>) -> Option<u64> {
    DISKS
        .iter()
        .filter_map(Once::get)
        .filter(|d| core::ptr::eq(d.vm, vm))
        .find_map(|d| d.mmio(gpa, size, write))
}

/// The service core's pass over guest `index`'s devices.
pub fn service(index: usize, now: u64) {
    if let Some(d) = DISKS[index].get() {
        d.service(now);
    }
}

/// Guest `index` ended: its devices' counters, once.
pub fn report(index: usize) {
    if REPORTED[index].swap(true, Ordering::SeqCst) {
        return;
    }
    let Some(d) = DISKS[index].get() else { return };
    let c = &d.counts;
    let name = d.vm.config.name;
    let at = format_args!(
        "{} 00:{:02x}.{}",
        d.name,
        d.devfn.device(),
        d.devfn.function()
    );
    println!(
        "guest {name}: {at}: device interrupts: {}, of them through exits: {}; {} requests, {} kicks, {} resets",
        c.interrupts.load(Ordering::Relaxed),
        c.via_exits.load(Ordering::Relaxed),
        c.chains.load(Ordering::Relaxed),
        c.kicks.load(Ordering::Relaxed),
        c.resets.load(Ordering::Relaxed),
    );
    match d.broken() {
        Some(why) => println!(
            "guest {name}: {at}: needs reset (status {:#x}): {why}",
            d.status().bits()
        ),
        None => println!("guest {name}: {at}: status {:#x}", d.status().bits()),
    }
    println!("guest {name}: {at}: {}", d.backend_report());
}
