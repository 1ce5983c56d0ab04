//! A virtual function handed to a guest: its DMA translated by the IOMMU onto exactly the guest's
//! RAM, its BARs mapped into the guest by the nested page tables except the MSI-X table, which stays
//! under the hypervisor: each MSI-X entry the guest programs becomes an interrupt remapping entry.
//! The guest's interrupt backend (`irq`) decides what: in `direct` mode that entry targets the
//! guest's own core with the guest's vector, so the device's interrupt goes through the guest's
//! IDT without an exit; in `emulated` mode a host vector on the vCPU's core that stands for the
//! guest's vector; in `avic` mode it is a GuestMode entry posting the guest's vector into the
//! target vCPU's backing page (`vf_posting`), again without an exit.

use crate::hv::host::pci_host::Ecam;
use crate::hv::host::phys;
use crate::hv::irq::MsixRoute;
use crate::hv::passthrough::iommu_hw::{self, HostMemory, IOMMU};
use crate::hv::vm::guest::Vm;
use crate::hv::vm::guest_pci::GuestPci;
use crate::hv::vm::vf_host::{self, VfHost, GUEST_BAR_BASE, GUEST_DEVFNS, IRT_LOG2};
use crate::println;
use didvisor::bar_mapping::{self, BarPlacement};
use iommu::{
    DeviceId, DomainId, Dte, Hpa, InterruptTable, IoPageTable, IoPerm, Iova, Irte, IrteFormat,
    MsiMessage,
};
use pci::msix;
use pci::passthrough::{PassthroughEvent, PassthroughSetup, VfPassthrough};
use pci::sriov::{EnabledVfs, VfFunction};
use pci::{header, Command};

/// Host-physical address of the VF's MSI-X table.
fn table_hpa(host: &VfHost, vm: &Vm) -> Option<u64> {
    let legacy = vm.platform.legacy.lock();
    let vf = legacy.pci_bus().get(host.devfn)?.vf()?;
    Some(vf.bar(host.msix.table.bir)?.hpa + u64::from(host.msix.table.offset))
}

/// What a guest's earlier VFs took: guest-physical BAR space up to `bar_end`, `vectors` device
/// vectors.
#[derive(Clone, Copy)]
pub struct Taken {
    pub bar_end: u64,
    pub vectors: u8,
}

impl Taken {
    pub const NONE: Taken = Taken {
        bar_end: GUEST_BAR_BASE,
        vectors: 0,
    };
}

/// Gives VF `vf` of `vfs` to `vm` as its VF number `slot` (`vf=` order; `taken`: what the
/// earlier ones took, updated): IOMMU domain and interrupt table, guest config space, BARs.
pub fn attach(
    vm: &Vm,
    index: usize,
    slot: usize,
    taken: &mut Taken,
    ecam: &Ecam,
    vfs: &EnabledVfs,
    vf: &VfFunction,
) -> Result<VfHost, &'static str> {
    let devfn = *GUEST_DEVFNS
        .get(slot)
        .ok_or("more VFs than guest PCI slots")?;
    let unit = IOMMU.get().ok_or("no IOMMU")?;
    // DMA: the guest's RAM at guest-physical addresses (above 4 GiB too), nothing else.
    let mut table = IoPageTable::new(HostMemory).map_err(|_| "I/O page table")?;
    for (region, hpa) in vm.ram_blocks() {
        table
            .map(
                Iova(region.gpa),
                Hpa(hpa),
                region.len,
                IoPerm::READ | IoPerm::WRITE,
            )
            .map_err(|_| "mapping guest RAM for DMA")?;
    }
    let irt_base = crate::hv::host::memory::alloc_zeroed(4096, 4096);
    let irt = InterruptTable::new(Hpa(irt_base), IRT_LOG2, IrteFormat::Bits128)
        .map_err(|_| "interrupt table")?;
    irt.clear(&mut HostMemory);
    // Domain 1 is the host's (`nvme_pf`); each VF has its own page table, so its own domain.
    let domain = DomainId(2 + (index + slot * didvisor::config::MAX_GUESTS) as u16);
    let dte = Dte::translated(domain, table.root(), table.levels(), Some(irt.remap()))
        .map_err(|_| "device table entry")?;
    unit.lock()
        .set_dte(&mut HostMemory, DeviceId(vf.bdf.routing_id()), &dte)
        .map_err(|_| "device table entry")?;

    let mut guest_bases = [None; 6];
    let mut next = taken.bar_end;
    for bar in vf.bars.iter().flatten() {
        let size = bar.size.max(4096);
        next = next.next_multiple_of(size);
        guest_bases[usize::from(bar.index)] = Some(next);
        next += size;
    }
    // The guest's PCI window (its DSDT) ends at the virtio BAR.
    if next > vf_host::GUEST_BAR_END {
        return Err("the guest's PCI window cannot hold the BARs of all its VFs");
    }
    let setup = PassthroughSetup::read(ecam, vfs, vf, guest_bases).map_err(|_| "reading the VF")?;
    let device = VfPassthrough::new(&setup).map_err(|_| "the VF's configuration space")?;
    let msix_cap = pci::capability::find_capability(ecam, vf.bdf, pci::capability::id::MSIX)
        .ok_or("the VF has no MSI-X capability")?;
    let vectors = vf_host::share_vectors(taken.vectors, setup.msix.table_size);
    let host = VfHost {
        bdf: vf.bdf,
        slot: slot as u8,
        devfn,
        vectors: vectors.clone(),
        ecam: *ecam,
        msix_cap,
        msix: setup.msix,
        irt,
        via_exits: core::sync::atomic::AtomicU64::new(0),
        guest_index: index as u8,
        setup,
    };
    vm.platform
        .legacy
        .lock()
        .pci_bus_mut()
        .add(devfn, GuestPci::Vf(device))
        .map_err(|_| "guest PCI slot")?;
    *taken = Taken {
        bar_end: next,
        vectors: vectors.end,
    };
    // The VF itself always decodes (the guest's Memory Space bit only maps it into the guest).
    let mut ecam_rw = *ecam;
    let command = header::read_command(&ecam_rw, vf.bdf);
    header::write_command(&mut ecam_rw, vf.bdf, command | Command::MEMORY_SPACE);
    println!(
        "guest {}: vf {} as 00:{:02x}.0, dma domain {} onto its {} MiB of ram, {} interrupt entries, device vectors {}..{}",
        vm.config.name,
        vf.bdf,
        devfn.0 >> 3,
        domain.0,
        vm.ram_size >> 20,
        irt.entries(),
        vectors.start,
        vectors.end
    );
    Ok(host)
}

/// A restart of the guest (none of its vCPUs runs), before its RAM is cleared: the VF goes back
/// to its state at `attach`. Its BARs leave the nested page tables (the new boot places them
/// again); a Function Level Reset stops whatever the device was doing — DMA in flight can only
/// have reached the guest's own RAM (the IOMMU confines it), which is cleared after this — and
/// resets its registers, MSI-X included; the hypervisor's memory decode is set again; every
/// interrupt remapping entry is disabled and the IOMMU's cached copies dropped; the guest's view
/// of the configuration space is built anew. The DMA mapping stays (the same RAM).
pub fn reset(vm: &Vm, host: &VfHost) -> Result<(), &'static str> {
    let mapped = {
        let legacy = vm.platform.legacy.lock();
        legacy
            .pci_bus()
            .get(host.devfn)
            .and_then(GuestPci::vf)
            .is_some_and(|v| v.memory_enabled())
    };
    if mapped {
        map_bars(vm, host, false, None);
    }
    let mut ecam = host.ecam;
    pci::flr::initiate(&mut ecam, host.bdf).map_err(|e| e.reason())?;
    crate::hv::host::timer::delay_us(pci::flr::WAIT_MS * 1000);
    let command = header::read_command(&ecam, host.bdf);
    header::write_command(&mut ecam, host.bdf, command | Command::MEMORY_SPACE);
    iommu_hw::clear_irt(&host.irt, host.device())
        .map_err(|_| "its interrupt remapping entries could not be cleared")?;
    let device = VfPassthrough::new(&host.setup).map_err(|_| "the VF's configuration space")?;
    let mut legacy = vm.platform.legacy.lock();
    let bus = legacy.pci_bus_mut();
    bus.remove(host.devfn);
    bus.add(host.devfn, GuestPci::Vf(device))
        .map_err(|_| "guest PCI slot")?;
    println!(
        "guest {}: vf {}: function-level reset, interrupt entries cleared",
        vm.config.name, host.bdf
    );
    Ok(())
}

/// Applies what the guest's configuration-space and MSI-X accesses asked for.
pub fn apply_events(vm: &Vm, host: &VfHost) {
    loop {
        let event = {
            let mut legacy = vm.platform.legacy.lock();
            match legacy
                .pci_bus_mut()
                .get_mut(host.devfn)
                .and_then(GuestPci::vf_mut)
            {
                Some(vf) => vf.pop_event(),
                None => None,
            }
        };
        let Some(event) = event else { return };
        match event {
            PassthroughEvent::MemoryDecode { enabled } => map_bars(vm, host, enabled, None),
            PassthroughEvent::BarMoved { index, from, to } => {
                map_bars(vm, host, false, Some((index, from)));
                map_bars(vm, host, true, Some((index, to)));
            }
            PassthroughEvent::BusMaster { enabled } => {
                let mut ecam = host.ecam;
                let mut command = header::read_command(&ecam, host.bdf) | Command::MEMORY_SPACE;
                command.set(Command::BUS_MASTER, enabled);
                header::write_command(&mut ecam, host.bdf, command);
            }
            PassthroughEvent::MsixControl {
                enabled,
                function_mask,
            } => {
                let mut ecam = host.ecam;
                msix::write_msix_control(
                    &mut ecam,
                    host.bdf,
                    host.msix_cap,
                    enabled,
                    function_mask,
                );
            }
            PassthroughEvent::MsixEntryChanged { index, entry } => {
                program_vector(vm, host, index, entry)
            }
            PassthroughEvent::Resync => {
                for i in 0..host.msix.table_size.min(host.irt.entries()) {
                    let entry = vm
                        .platform
                        .legacy
                        .lock()
                        .pci_bus()
                        .get(host.devfn)
                        .and_then(GuestPci::vf)
                        .and_then(|v| v.msix_entry(i));
                    if let Some(entry) = entry {
                        program_vector(vm, host, i, entry);
                    }
                }
            }
        }
    }
}

/// Maps (or unmaps) the VF's BARs at the GPAs the guest gave them, all but the MSI-X table page
/// (`didvisor::bar_mapping`). `only` = (BAR, GPA): just that BAR, at that GPA (a move: its old
/// place is unmapped, then its new one mapped). A mapping that fails (the guest's table budget
/// spent, or an overlap) ends this guest only.
fn map_bars(vm: &Vm, host: &VfHost, map: bool, only: Option<(u8, u64)>) {
    let bars = {
        let legacy = vm.platform.legacy.lock();
        let Some(vf) = legacy.pci_bus().get(host.devfn).and_then(GuestPci::vf) else {
            return;
        };
        let (table_bir, table) = vf.msix_table_range();
        let trapped = (table.start & !0xfff)..table.end.next_multiple_of(4096);
        let mut bars: [Option<(u8, BarPlacement)>; 6] = Default::default();
        for (i, b) in bars.iter_mut().enumerate() {
            let i = i as u8;
            if only.is_some_and(|(index, _)| index != i) {
                continue;
            }
            *b = vf.bar(i).map(|bar| {
                let placement = BarPlacement {
                    gpa: only.map_or(bar.gpa, |(_, gpa)| gpa),
                    hpa: bar.hpa,
                    size: bar.size,
                    trapped: if i == table_bir {
                        trapped.clone()
                    } else {
                        0..0
                    },
                };
                (i, placement)
            });
        }
        bars
    };
    let mut npt = vm.npt.lock();
    for (index, bar) in bars.iter().flatten() {
        let result = if map {
            bar_mapping::map_bar(&mut npt, bar, vm.ram_layout)
        } else {
            bar_mapping::unmap_bar(&mut npt, bar, vm.ram_layout)
        };
        // Overlapping BARs are the guest's own mistake: that BAR stays unmapped (its accesses
        // are still forwarded through `mmio`). Only a spent table budget ends the guest.
        if let Err(svm::npt::MapError::AlreadyMapped(at)) = result {
            vm.report(format_args!(
                "vf BAR {index} at gpa {:#x} overlaps another mapping at {:#x}: left unmapped",
                bar.gpa, at.0
            ));
            continue;
        }
        if let Err(e) = result {
            let frames = npt.mem().frames.counts();
            drop(npt);
            vm.end(format_args!(
                "vf BAR {index} at gpa {:#x}: nested page table {}: {e:?} ({} table frames taken, {} in use)",
                bar.gpa,
                if map { "mapping failed" } else { "unmapping failed" },
                frames.taken,
                frames.in_use
            ));
            return;
        }
    }
    if !map {
        // Stale translations of the unmapped pages may sit in any vCPU's TLB.
        vm.platform
            .npt_generation
            .fetch_add(1, core::sync::atomic::Ordering::AcqRel);
    }
}

/// Turns MSI-X entry `index` as the guest programmed it into an interrupt remapping entry and
/// programs the VF's real table entry to point at it.
fn program_vector(vm: &Vm, host: &VfHost, index: u16, entry: msix::MsixTableEntry) {
    if index >= host.irt.entries() {
        vm.report(format_args!(
            "vf MSI-X vector {index} beyond the interrupt table; left masked"
        ));
        return;
    }
    let message = MsiMessage {
        address: entry.address(),
        data: entry.data,
    };
    let vcpu = usize::from(message.dest_id());
    let platform = &vm.platform;
    let enabled = !entry.masked() && vcpu < platform.vcpu_count;
    let refused = match platform.irq.remap_msix(
        &host.table(),
        host.vector_slot(index),
        index,
        &message,
        enabled,
    ) {
        MsixRoute::Remapped { vector } => {
            program_remapped(vm, host, index, &entry, &message, vector);
            false
        }
        MsixRoute::Posted(Ok(())) => false,
        MsixRoute::NoHostVector => {
            vm.report(format_args!(
                "vf {} MSI-X vector {index}: the guest's {} device vectors are all taken by its VFs; left masked",
                host.bdf,
                crate::hv::host::idt::DEVICE_VECTORS
            ));
            let off = Irte::Bits128(iommu::Irte128::DISABLED);
            if let Err(e) = iommu_hw::write_irte(&host.irt, host.device(), index, off) {
                vm.report(format_args!("vf MSI-X vector {index}: {e}"));
            }
            true
        }
        MsixRoute::Posted(Err(why)) => {
            vm.report(format_args!(
                "vf MSI-X vector {index} (address {:#x}, data {:#x}) cannot be posted: {why}; left masked",
                message.address, message.data
            ));
            true
        }
    };
    // The device's own entry: a remappable message naming the table index.
    let Some(table) = table_hpa(host, vm) else {
        return;
    };
    let Some(remappable) = MsiMessage::remappable(index) else {
        return;
    };
    let at = table + u64::from(index) * 16;
    let illegal = message.vector() < didvisor::irqchip::MIN_VECTOR;
    let masked = entry.masked() || vcpu >= platform.vcpu_count || refused || illegal;
    let words = [
        remappable.address_lo(),
        remappable.address_hi(),
        remappable.data,
        u32::from(masked),
    ];
    for (i, w) in words.iter().enumerate() {
        // SAFETY: the VF's MSI-X table entry `index` (inside the VF's BAR, which the hypervisor
        // placed and keeps decoding); the guest has no mapping of this page.
        unsafe { phys::write(at + i as u64 * 4, *w) };
    }
}

/// The remapped (GuestMode = 0) entry for `message`: `vector` on the target vCPU's core.
fn program_remapped(
    vm: &Vm,
    host: &VfHost,
    index: u16,
    entry: &msix::MsixTableEntry,
    message: &MsiMessage,
    vector: u8,
) {
    let vcpu = usize::from(message.dest_id());
    let platform = &vm.platform;
    let illegal = message.vector() < didvisor::irqchip::MIN_VECTOR;
    if illegal && !entry.masked() {
        platform
            .illegal_vectors
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
    let irte = if entry.masked() || vcpu >= platform.vcpu_count || illegal {
        Irte::Bits128(iommu::Irte128::DISABLED)
    } else {
        let core = platform.vcpu_core_apic_id(vcpu);
        Irte::remapped(
            IrteFormat::Bits128,
            vector,
            core,
            iommu::DestMode::Physical,
            iommu::IntType::Fixed,
        )
        .unwrap_or(Irte::Bits128(iommu::Irte128::DISABLED))
    };
    if let Err(e) = iommu_hw::write_irte(&host.irt, host.device(), index, irte) {
        vm.report(format_args!("vf MSI-X vector {index}: {e}"));
    }
}

/// A guest access to the trapped MSI-X page of its VF: the table is emulated, the rest of the page
/// (PBA, registers) forwarded to the device. `None` if `gpa` is not in a VF BAR.
pub fn mmio(vm: &Vm, host: &VfHost, gpa: u64, size: u8, write: Option<u64>) -> Option<u64> {
    let (index, bar_offset, hpa, table_bir) = {
        let legacy = vm.platform.legacy.lock();
        let vf = legacy.pci_bus().get(host.devfn)?.vf()?;
        // The whole access inside one BAR with decoding on, or it is not the VF's.
        let (index, offset) = vf.bar_access(gpa, size)?;
        (index, offset, vf.bar(index)?.hpa, vf.msix_table_range().0)
    };
    let result = if index == table_bir {
        let mut legacy = vm.platform.legacy.lock();
        let vf = legacy.pci_bus_mut().get_mut(host.devfn)?.vf_mut()?;
        match write {
            Some(value) => vf.msix_write(bar_offset, size, value).then_some(0),
            None => vf.msix_read(bar_offset, size),
        }
    } else {
        None
    };
    let value = match result {
        Some(v) => v,
        None => forward(hpa + bar_offset, size, write),
    };
    apply_events(vm, host);
    Some(value)
}

/// A device register access passed on unchanged (`size` is 1, 2, 4 or 8: `bar_access`). An
/// access not aligned to its size (not one register access) reads as all ones and writes nothing.
fn forward(hpa: u64, size: u8, write: Option<u64>) -> u64 {
    if !hpa.is_multiple_of(u64::from(size)) {
        return if write.is_some() {
            0
        } else {
            u64::MAX >> (64 - 8 * u32::from(size))
        };
    }
    // SAFETY: `hpa..hpa + size` lies wholly in the VF's BAR (`bar_access`), outside its MSI-X
    // table: device registers the guest may touch anyway through its mapping of the same BAR.
    unsafe {
        match (size, write) {
            (8, Some(v)) => phys::write(hpa, v),
            (4, Some(v)) => phys::write(hpa, v as u32),
            (2, Some(v)) => phys::write(hpa, v as u16),
            (_, Some(v)) => phys::write(hpa, v as u8),
            (8, None) => return phys::read::<u64>(hpa),
            (4, None) => return u64::from(phys::read::<u32>(hpa)),
            (2, None) => return u64::from(phys::read::<u16>(hpa)),
            (_, None) => return u64::from(phys::read::<u8>(hpa)),
        }
    }
    0
}
