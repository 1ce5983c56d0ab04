//! The hypervisor's own driver for an SR-IOV NVMe physical function: just enough to make its
//! virtual functions usable by guests (QEMU's order, `docs/platform.md`): PF enabled, VFs
//! enabled with BARs below 4 GiB, then through the PF's admin queue each VF's secondary controller
//! gets flexible queue and interrupt resources, goes online, and gets its namespace attached.
//! The NVMe and SR-IOV logic is the library's (`nvme`, `pci::sriov`).
//!
//! With an IOMMU the PF's DMA is translated through a domain that maps only the driver's admin
//! queues and data page (`nvme::pf_dma`), installed before bus mastering is enabled;
//! without one (no VF is passed through then) its DMA is unconfined, and the log says so.

use crate::hv::host::pci_host::Ecam;
use crate::hv::host::timer;
use crate::hv::host::{memory, phys};
use crate::hv::passthrough::iommu_hw::{HostMemory, IOMMU};
use crate::println;
use nvme::pf_dma::{PfBuffers, PfDmaError};
use nvme::{self, AdminQueue, ControllerRegs, DmaMemory, QueueMemory};
use pci::sriov::{self, EnabledVfs, MmioWindow, Sriov};
use pci::{header, Bdf, Command, ConfigAccess};

/// The IOMMU domain of the PF: only the hypervisor's own DMA buffers for it
/// (`nvme::pf_dma`). VF domains are 2 and up.
pub const HOST_DOMAIN: u16 = 1;
const ADMIN_TIMEOUT_MS: u32 = 5000;
/// Admin queue depth: 64 submission entries fill one page.
const ADMIN_ENTRIES: u16 = 64;

/// BAR0 of the PF, identity-mapped.
struct PfRegisters(phys::Mmio);

/// The PF registers the hypervisor touches: the controller registers and the admin doorbells,
/// wherever the largest doorbell stride CAP.DSTRD can name (15) puts the admin CQ's (a real
/// controller may use any stride; only offsets the driver computes are ever accessed).
const PF_REGISTER_BYTES: u64 = match nvme::registers::cq_head_doorbell(0, 15) {
    Some(at) => at as u64 + 4,
    None => panic!("the admin doorbells fit in 32 bits"),
};
// The refusal in `bring_up` names the identity map's size.
const _: () = assert!(boot::entry::IDENTITY_MAP_GIB == 64);

impl ControllerRegs for PfRegisters {
    fn read32(&mut self, offset: u32) -> u32 {
        self.0.read(u64::from(offset))
    }

    fn write32(&mut self, offset: u32, value: u32) {
        self.0.write(u64::from(offset), value)
    }

    fn wait_1ms(&mut self) {
        timer::delay_us(1000);
    }
}

/// Admin queues and data buffers in hypervisor memory: the only pages the PF's domain maps.
struct PfMemory;

impl DmaMemory for PfMemory {
    fn read(&mut self, phys: u64, buf: &mut [u8]) {
        // SAFETY: `phys` is one of the pages allocated below for the PF's DMA; the PF writes it
        // only while a command the driver waits for runs, not now.
        buf.copy_from_slice(unsafe { phys::slice(phys, buf.len() as u64) });
    }

    fn write(&mut self, phys: u64, data: &[u8]) {
        // SAFETY: as in `read`; nothing else holds these pages.
        unsafe { phys::slice_mut(phys, data.len() as u64) }.copy_from_slice(data);
    }
}

/// Gives the PF a translated DMA domain that maps `buffers` and nothing else (IOVA = host
/// physical), or says why the PF's DMA stays unconfined when there is no IOMMU.
fn confine_dma(pf: Bdf, buffers: &PfBuffers) -> Result<(), &'static str> {
    let Some(unit) = IOMMU.get() else {
        println!(
            "nvme: {pf}: no IOMMU: the PF's DMA is not confined (bus mastering reaches all memory)"
        );
        return Ok(());
    };
    let mut table = iommu::IoPageTable::new(HostMemory).map_err(|_| "the PF's I/O page table")?;
    let windows = buffers.map_into(&mut table).map_err(|e| match e {
        PfDmaError::Map(_) => "mapping the PF's DMA buffers",
        PfDmaError::BadBuffer(_) | PfDmaError::Overlap(..) => "the PF's DMA buffers",
    })?;
    let dte = iommu::Dte::translated(
        iommu::DomainId(HOST_DOMAIN),
        table.root(),
        table.levels(),
        None,
    )
    .map_err(|_| "PF device table entry")?;
    unit.lock()
        .set_dte(&mut HostMemory, iommu::DeviceId(pf.routing_id()), &dte)
        .map_err(|_| "PF device table entry")?;
    let pages: u64 = windows.iter().map(|w| w.len / 4096).sum();
    println!(
        "nvme: {pf}: dma domain {HOST_DOMAIN}: {pages} pages (admin queues {:#x}, {:#x}, data {:#x}), nothing else",
        buffers.sq, buffers.cq, buffers.data
    );
    // The table's frames stay in use for as long as the PF does (dropping the mapper frees
    // nothing; only `destroy` would).
    Ok(())
}

/// The SR-IOV PF (and its VF number) that `vf` belongs to.
pub fn owner_of(ecam: &Ecam, vf: Bdf) -> Option<(Bdf, Sriov, u16)> {
    pci::enumerate(ecam, ecam.start_bus..=ecam.end_bus).find_map(|f| {
        let sriov = Sriov::find(ecam, f.bdf)?;
        let info = sriov.info(ecam);
        (1..=info.total_vfs).find_map(|n| {
            let bdf = sriov::vf_routing_id(f.bdf, info.first_vf_offset, info.vf_stride, n)?;
            (bdf == vf).then_some((f.bdf, sriov, n))
        })
    })
}

/// Enables `num_vfs` VFs of the NVMe PF `pf` and readies secondary controllers 1..=num_vfs, each
/// with namespace `vfn` attached. `window` is free host MMIO below 4 GiB for the VF BARs (QEMU
/// decodes VF BARs only there).
pub fn bring_up(
    ecam: &mut Ecam,
    pf: Bdf,
    sriov: Sriov,
    num_vfs: u16,
    window: MmioWindow,
) -> Result<EnabledVfs, &'static str> {
    let bar0 = u64::from(ecam.read32(pf, 0x10) & !0xf) | u64::from(ecam.read32(pf, 0x14)) << 32;
    if bar0 == 0 {
        return Err("the PF's BAR0 is not assigned");
    }
    // Its registers are reached through the identity map (a server firmware with "Above 4G
    // decoding" may put 64-bit BARs far higher).
    if bar0.saturating_add(PF_REGISTER_BYTES) > memory::MAPPED_LIMIT {
        return Err("the PF's BAR0 is above the hypervisor's 64 GiB identity map (firmware placed it high; see docs/server.md)");
    }
    let sq = memory::alloc_zeroed(4096, 4096);
    let cq = memory::alloc_zeroed(4096, 4096);
    let buf = memory::alloc_zeroed(4096, 4096);
    let buffers = PfBuffers {
        sq,
        cq,
        entries: ADMIN_ENTRIES,
        data: buf,
    };
    // The PF's DMA domain exists before bus mastering is turned on.
    confine_dma(pf, &buffers)?;
    let command = header::read_command(ecam, pf);
    header::write_command(
        ecam,
        pf,
        command | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
    // SAFETY: BAR0 of the PF, assigned by the firmware and enabled here; the hypervisor owns it.
    let mut regs = PfRegisters(unsafe { phys::Mmio::new(bar0, PF_REGISTER_BYTES) });
    let mut mem = PfMemory;
    let mut admin = AdminQueue::enable(
        &mut regs,
        &mut mem,
        QueueMemory {
            sq,
            cq,
            entries: ADMIN_ENTRIES,
        },
    )
    .map_err(|_| "the PF's controller did not come up")?;
    let mut run =
        |cmd: nvme::AdminCommand, admin: &mut AdminQueue| -> Result<[u8; 4096], &'static str> {
            let mut page = [0u8; 4096];
            if cmd.direction() == nvme::DataDirection::ToController {
                cmd.fill_buffer(&mut page);
                mem.write(buf, &page);
            }
            admin
                .execute(&mut regs, &mut mem, cmd.encode(buf), ADMIN_TIMEOUT_MS)
                .map_err(|e| {
                    println!("nvme: {pf}: {cmd:?} failed: {e:?}");
                    "an admin command failed"
                })?;
            mem.read(buf, &mut page);
            Ok(page)
        };
    let ident = run(
        nvme::AdminCommand::Identify {
            cns: nvme::Cns::Controller,
            nsid: 0,
            cntid: 0,
        },
        &mut admin,
    )?;
    let ident = nvme::identify::ControllerIdentity::parse(&ident);
    if !ident.supports_virtualization_management() {
        return Err("the PF does not support NVMe Virtualization Management");
    }
    println!(
        "nvme: {pf}: \"{}\" primary controller {}",
        ident.model_str(),
        ident.cntlid
    );

    let vfs = sriov::enable_vfs(ecam, sriov, num_vfs, window, |ms| {
        timer::delay_us(u64::from(ms) * 1000)
    })
    .map_err(|_| "enabling the VFs failed")?;
    let list = run(
        nvme::AdminCommand::Identify {
            cns: nvme::Cns::SecondaryControllers,
            nsid: 0,
            cntid: 0,
        },
        &mut admin,
    )?;
    let list = nvme::identify::SecondaryControllerList::new(&list);
    let mut assignments = [nvme::VfAssignment { vfn: 0, nsid: None }; sriov::MAX_VFS];
    for (i, a) in assignments
        .iter_mut()
        .enumerate()
        .take(usize::from(num_vfs))
    {
        *a = nvme::VfAssignment {
            vfn: i as u16 + 1,
            nsid: Some(i as u32 + 1),
        };
    }
    // Each VF an equal share of the flexible queues and interrupts (one MSI-X entry each),
    // at least the minimum.
    let caps = run(
        nvme::AdminCommand::Identify {
            cns: nvme::Cns::PrimaryControllerCapabilities,
            nsid: 0,
            cntid: 0,
        },
        &mut admin,
    )?;
    let caps = nvme::identify::PrimaryControllerCapabilities::parse(&caps);
    let share = nvme::VfResources::share(&caps, usize::from(num_vfs));
    let resources = match nvme::check_resources(&caps, usize::from(num_vfs), share) {
        Ok(()) => share,
        Err(_) => nvme::VfResources::MINIMAL,
    };
    println!(
        "nvme: {pf}: each vf gets {} queues (admin included) and {} msi-x vectors",
        resources.queues, resources.interrupts
    );
    let plan = nvme::bring_up_vfs(&list, &assignments[..usize::from(num_vfs)], resources)
        .map_err(|_| "planning the secondary controllers failed")?;
    for cmd in plan.iter() {
        run(cmd, &mut admin)?;
    }
    for vf in vfs.vfs() {
        let sc = list.by_vfn(vf.number);
        println!(
            "nvme: {pf}: vf {} at {} online (secondary controller {}), namespace {} attached",
            vf.number,
            vf.bdf,
            sc.map_or(0, |s| s.scid),
            vf.number
        );
    }
    Ok(vfs)
}
