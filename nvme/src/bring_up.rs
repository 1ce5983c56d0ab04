//! The admin commands that make VFs usable, as data (docs/platform.md's working order, from QEMU's
//! docs/system/devices/nvme.rst; NVMe Base 2.0 "Virtualization Enhancements"): after the PF is
//! enabled and its VFs are enabled in the SR-IOV capability, for each VF's secondary controller:
//!
//! 1. (if it is online) take it offline, since resources can only be assigned while offline;
//! 2. assign flexible VQ resources (≥ 2: the admin queue pair and one I/O pair);
//! 3. assign flexible VI resources (≥ 1 MSI-X vector);
//! 4. set it online;
//! 5. attach its namespace to it (namespaces created `detached=true` belong to no one yet).
//!
//! The kernel issues the steps in order with [`super::AdminQueue::execute`], stopping at the first
//! error.

use super::admin::{AdminCommand, ResourceType, VmAction};
use super::identify::{PrimaryControllerCapabilities, SecondaryControllerList};
use pci::sriov::MAX_VFS;

/// Steps per VF at most.
const STEPS_PER_VF: usize = 5;
pub const MAX_STEPS: usize = MAX_VFS * STEPS_PER_VF;

/// What one VF gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfAssignment {
    /// Virtual function number, 1-based (as in the secondary controller list's VFN).
    pub vfn: u16,
    /// The namespace to attach to it, if any.
    pub nsid: Option<u32>,
}

/// Flexible resources per VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfResources {
    /// Virtual queue resources, including the admin queue pair (≥ 2).
    pub queues: u16,
    /// Virtual interrupt resources (≥ 1).
    pub interrupts: u16,
}

impl VfResources {
    /// What QEMU's `sriov_vq_flexible=4,sriov_vi_flexible=2` allows for two VFs.
    pub const MINIMAL: VfResources = VfResources {
        queues: 2,
        interrupts: 1,
    };
    /// At most this many queues (admin included) and interrupts per VF: a guest's VF gets one
    /// MSI-X entry per queue, and its interrupt remapping table has 32 entries.
    pub const MOST: VfResources = VfResources {
        queues: 32,
        interrupts: 32,
    };

    /// An equal share for each of `vf_count` VFs of the flexible resources the primary does
    /// not hold (VQFRT − VQRFAP, VIFRT − VIRFAP), capped by the per-VF limits (VQFRSM, VIFRSM)
    /// and by [`VfResources::MOST`]: several MSI-X vectors per VF where the controller allows
    /// it. A share below [`VfResources::MINIMAL`] fails [`check_resources`]; the caller then
    /// falls back to `MINIMAL` (which fails too on a controller that cannot give two VFs any).
    pub fn share(caps: &PrimaryControllerCapabilities, vf_count: usize) -> VfResources {
        let count = vf_count.max(1) as u32;
        let each = |total: u32, primary: u16, per_vf: u16, most: u16| {
            let pool = total.saturating_sub(u32::from(primary)) / count;
            pool.min(u32::from(per_vf)).min(u32::from(most)) as u16
        };
        VfResources {
            queues: each(caps.vqfrt, caps.vqrfap, caps.vqfrsm, Self::MOST.queues),
            interrupts: each(caps.vifrt, caps.virfap, caps.vifrsm, Self::MOST.interrupts),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Fewer than 2 queues or 0 interrupts.
    TooFewResources,
    TooManyVfs,
    /// The secondary controller list has no controller for this VF.
    NoSecondaryController {
        vfn: u16,
    },
    /// The primary cannot hand out that many per VF (VQFRSM / VIFRSM) or in total.
    ResourcesExceeded {
        resource: ResourceType,
    },
    /// The primary does not support this resource type (CRT).
    ResourceTypeUnsupported {
        resource: ResourceType,
    },
}

/// The ordered admin commands, a fixed-size list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandPlan {
    steps: [Option<AdminCommand>; MAX_STEPS],
    len: usize,
}

impl CommandPlan {
    const fn new() -> Self {
        CommandPlan {
            steps: [None; MAX_STEPS],
            len: 0,
        }
    }

    fn push(&mut self, c: AdminCommand) -> Result<(), PlanError> {
        let slot = self.steps.get_mut(self.len).ok_or(PlanError::TooManyVfs)?;
        *slot = Some(c);
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = AdminCommand> + '_ {
        self.steps[..self.len].iter().flatten().copied()
    }
}

/// Checks `resources` for `vf_count` VFs against the primary's capabilities: per-VF limits
/// (VQFRSM, VIFRSM) and the flexible pool not held by the primary (VQFRT − VQRFAP, VIFRT −
/// VIRFAP). Resources the secondaries hold now are counted as free, since the plan reassigns them.
/// Fewer than 2 queues or no interrupt is [`PlanError::TooFewResources`].
pub fn check_resources(
    caps: &PrimaryControllerCapabilities,
    vf_count: usize,
    resources: VfResources,
) -> Result<(), PlanError> {
    if resources.queues < 2 || resources.interrupts < 1 {
        return Err(PlanError::TooFewResources);
    }
    let checks = [
        (
            ResourceType::VirtualQueue,
            PrimaryControllerCapabilities::CRT_VQ,
            resources.queues,
            caps.vqfrsm,
            caps.vqfrt.saturating_sub(u32::from(caps.vqrfap)),
        ),
        (
            ResourceType::VirtualInterrupt,
            PrimaryControllerCapabilities::CRT_VI,
            resources.interrupts,
            caps.vifrsm,
            caps.vifrt.saturating_sub(u32::from(caps.virfap)),
        ),
    ];
    for (resource, crt, per_vf, max_per_vf, pool) in checks {
        if caps.crt & crt == 0 {
            return Err(PlanError::ResourceTypeUnsupported { resource });
        }
        let total = u64::from(per_vf) * vf_count as u64;
        if per_vf > max_per_vf || total > u64::from(pool) {
            return Err(PlanError::ResourcesExceeded { resource });
        }
    }
    Ok(())
}

/// The admin commands that bring up `vfs`, in order (see the module documentation).
pub fn bring_up_vfs(
    secondaries: &SecondaryControllerList<'_>,
    vfs: &[VfAssignment],
    resources: VfResources,
) -> Result<CommandPlan, PlanError> {
    if resources.queues < 2 || resources.interrupts < 1 {
        return Err(PlanError::TooFewResources);
    }
    if vfs.len() > MAX_VFS {
        return Err(PlanError::TooManyVfs);
    }
    let mut plan = CommandPlan::new();
    for vf in vfs {
        let sc = secondaries
            .by_vfn(vf.vfn)
            .ok_or(PlanError::NoSecondaryController { vfn: vf.vfn })?;
        let vm = |action, resource, count| AdminCommand::VirtualizationManagement {
            action,
            resource,
            cntlid: sc.scid,
            count,
        };
        if sc.online() {
            plan.push(vm(
                VmAction::SecondaryOffline,
                ResourceType::VirtualQueue,
                0,
            ))?;
        }
        plan.push(vm(
            VmAction::SecondaryAssign,
            ResourceType::VirtualQueue,
            resources.queues,
        ))?;
        plan.push(vm(
            VmAction::SecondaryAssign,
            ResourceType::VirtualInterrupt,
            resources.interrupts,
        ))?;
        plan.push(vm(VmAction::SecondaryOnline, ResourceType::VirtualQueue, 0))?;
        if let Some(nsid) = vf.nsid {
            plan.push(AdminCommand::AttachNamespace {
                nsid,
                controller: sc.scid,
            })?;
        }
    }
    Ok(plan)
}
