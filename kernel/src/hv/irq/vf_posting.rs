//! VF interrupts of an `irq=avic` guest, posted by the IOMMU in guest virtual APIC (GA) mode:
//! each MSI-X entry the guest programs becomes a GuestMode IRTE (`iommu::ga::post`) that sets the
//! guest's vector in the target vCPU's backing page IRR and rings the doorbell of its core while
//! IsRun = 1 — no exit and no hypervisor code on the way. While IsRun = 0 the IOMMU still sets
//! the IRR and writes a GA log entry naming the vCPU (GATag); the service core's
//! `iommu_hw::poll_ga_log` then rings it, or the vCPU picks the IRR up at its next VMRUN.
//!
//! IsRun follows the physical APIC-ID table's IsRunning: both change together under this VF's
//! lock (`set_running`), IsRunning first when a vCPU starts and IsRun first when it stops (the
//! order is `iommu::ga_running::switch_running`, host-tested), and an
//! entry the guest programs reads IsRunning under the same lock, so no IRTE keeps IsRun = 1 for a
//! vCPU that has stopped. Every IRTE write is followed by INVALIDATE_INTERRUPT_TABLE +
//! COMPLETION_WAIT (the spec does not require it for IsRun/Destination, Linux does it anyway).

use crate::hv::irq::avic_tables::AvicTables;
use crate::hv::passthrough::iommu_hw;
use crate::hv::passthrough::iommu_hw::VfTable;
use core::sync::atomic::{AtomicU64, Ordering};
use didvisor::config::MAX_VFS_PER_GUEST;
use iommu::ga::{self, GaTag, PostRefusal, PostTarget};
use iommu::ga_running;
use iommu::{DeviceId, Hpa, InterruptTable, Irte, Irte128, MsiMessage};
use spin::Mutex;

/// MSI-X entries per VF (its interrupt remapping table).
const PER_VF: usize = crate::hv::host::idt::DEVICE_VECTORS;
const ENTRIES: usize = PER_VF * MAX_VFS_PER_GUEST;

/// The posted entries of a guest's VFs (the guest's AVIC backend, `irq::avic`, owns them).
pub struct Posted {
    /// Per VF slot and MSI-X entry (`slot * PER_VF + index`): the vCPU it posts to and the IRTE
    /// written. One array under one lock, so a running transition changes every VF's entries
    /// with IsRunning in the order `ga_running` checks.
    entries: Mutex<[Option<(usize, Irte128)>; ENTRIES]>,
    /// Per VF slot: MSI-X entries written as GuestMode IRTEs.
    pub posted: [AtomicU64; MAX_VFS_PER_GUEST],
    /// Per VF slot: MSI-X entries the guest programmed that cannot be posted (left disabled and
    /// masked).
    pub refused: [AtomicU64; MAX_VFS_PER_GUEST],
}

impl Posted {
    /// A restart: no entry posted (the VF's remapping table was cleared); counts kept.
    pub fn reset(&self) {
        *self.entries.lock() = [None; ENTRIES];
    }

    pub const fn new() -> Self {
        Self {
            entries: Mutex::new([None; ENTRIES]),
            posted: [const { AtomicU64::new(0) }; MAX_VFS_PER_GUEST],
            refused: [const { AtomicU64::new(0) }; MAX_VFS_PER_GUEST],
        }
    }

    /// Writes IRTE `index` for `msg` aimed at `vcpu` (`None`: disabled). On a refusal the entry
    /// is disabled and the reason returned.
    pub fn program(
        &self,
        avic: &AvicTables,
        vf: &VfTable,
        index: u16,
        target: Option<(MsiMessage, usize)>,
    ) -> Result<(), PostRefusal> {
        let mut entries = self.entries.lock();
        let result = match target {
            Some((msg, vcpu)) => ga::post(
                &msg,
                &PostTarget {
                    backing_page: Hpa(avic.backing_page(vcpu)),
                    host_apic_id: avic.core(vcpu),
                    running: avic.is_running(vcpu),
                    tag: GaTag {
                        guest: vf.guest,
                        vcpu: vcpu as u16,
                    },
                },
            )
            .map(|e| (vcpu, e)),
            None => Ok((0, Irte128::DISABLED)),
        };
        let (vcpu, irte) = match result {
            Ok(x) => x,
            Err(_) => (0, Irte128::DISABLED),
        };
        let slot = usize::from(vf.slot) * PER_VF + usize::from(index);
        let Some(entry) = entries
            .get_mut(slot)
            .filter(|_| usize::from(index) < PER_VF)
        else {
            // `vf::program_vector` keeps `index` within the VF's table, `attach` the slot.
            panic!(
                "vf_posting: entry {index} of VF slot {} out of range",
                vf.slot
            );
        };
        *entry = irte.remap_enabled().then_some((vcpu, irte));
        write(vf.irt, vf.device, index, irte);
        match result {
            Ok(_) if irte.remap_enabled() => {
                self.posted[usize::from(vf.slot)].fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(why) => {
                self.refused[usize::from(vf.slot)].fetch_add(1, Ordering::Relaxed);
                Err(why)
            }
        }
    }

    /// vCPU `vcpu` starts running (first VMRUN) or stops (parked, ended): IsRunning in the
    /// physical table and IsRun in every IRTE posting to it, in the order that never leaves
    /// IsRun = 1 for a vCPU that is not running.
    pub fn set_running(
        &self,
        avic: &AvicTables,
        vfs: &[Option<VfTable>],
        vcpu: usize,
        running: bool,
    ) {
        let mut entries = self.entries.lock();
        let mut writes = HardwareWrites { avic, vfs, vcpu };
        ga_running::switch_running(&mut *entries, vcpu, running, avic.core(vcpu), &mut writes);
    }
}

/// The writes of a running transition (`iommu::ga_running`, host-tested order) on this machine.
struct HardwareWrites<'a> {
    avic: &'a AvicTables,
    vfs: &'a [Option<VfTable<'a>>],
    vcpu: usize,
}

impl ga_running::RunningWrites for HardwareWrites<'_> {
    fn set_is_running(&mut self, running: bool) {
        self.avic.set_running(self.vcpu, running);
    }
    /// `index` is `slot * PER_VF + entry` (`Posted::entries`).
    fn write_irte(&mut self, index: u16, irte: Irte128) {
        let (slot, entry) = (usize::from(index) / PER_VF, usize::from(index) % PER_VF);
        match self
            .vfs
            .iter()
            .flatten()
            .find(|vf| usize::from(vf.slot) == slot)
        {
            Some(vf) => write(vf.irt, vf.device, entry as u16, irte),
            None => log::error!("vf_posting: no VF in slot {slot} for a posted entry"),
        }
    }
}

/// Writes one 128-bit entry, then INVALIDATE_INTERRUPT_TABLE + COMPLETION_WAIT.
fn write(irt: &InterruptTable, device: DeviceId, index: u16, irte: Irte128) {
    if let Err(e) = iommu_hw::write_irte(irt, device, index, Irte::Bits128(irte)) {
        log::error!("iommu: {device:?} entry {index}: {e}");
    }
}
