//! Where an IPI a guest vCPU sends goes inside its own guest: the targets its shorthand and
//! destination select (vCPU i has x2APIC id i), the one lowest-priority target, the INIT/SIPI
//! target; and where the guest's IOAPIC sends a pin's message. Destinations outside the guest
//! match nothing, so a guest cannot reach another guest's cores. The hypervisor raises the
//! interrupts or starts the vCPU; this decides only whom.

use super::x2apic::x2apic_dest_matches;
use super::{Delivery, DeliveryMode, DestMode, Ipi, Shorthand};

/// Most vCPUs a [`VcpuSet`] holds.
pub const MAX_TARGETS: usize = 64;

/// A set of vCPU indices (bit i = vCPU i).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSet(pub u64);

impl VcpuSet {
    pub fn contains(self, vcpu: usize) -> bool {
        vcpu < MAX_TARGETS && self.0 & (1 << vcpu) != 0
    }

    /// The members, lowest index first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_TARGETS).filter(move |&v| self.contains(v))
    }

    /// The lowest member.
    pub fn first(self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }
}

/// What a message (an IPI, an IOAPIC pin) asks of the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiRoute {
    /// Raise `vector` (edge) in each of `targets`.
    Interrupt { targets: VcpuSet, vector: u8 },
    /// INIT or STARTUP for `target`, the first vCPU selected other than the sender (SMP bring-up).
    Start { target: usize },
    /// An NMI for each of `targets` (latched per vCPU, `crate::nmi`).
    Nmi { targets: VcpuSet },
    /// Nothing to do: an INIT de-assert, or INIT/STARTUP that selects no other vCPU.
    Nothing,
    /// A delivery mode the guest may not send (SMI, ExtINT, reserved): dropped.
    Unsupported(DeliveryMode),
}

/// The vCPUs `ipi`'s shorthand and destination select among `vcpu_count` (at most
/// [`MAX_TARGETS`]), `sender` being the one that wrote the ICR.
pub fn selected(ipi: &Ipi, sender: usize, vcpu_count: usize) -> VcpuSet {
    members(vcpu_count, |v| match ipi.shorthand {
        Shorthand::SelfOnly => v == sender,
        Shorthand::AllIncludingSelf => true,
        Shorthand::AllExcludingSelf => v != sender,
        Shorthand::Destination => x2apic_dest_matches(v as u32, ipi.dest, ipi.dest_mode),
    })
}

/// The vCPUs among the first `vcpu_count` (at most [`MAX_TARGETS`]) that `hit` selects.
fn members(vcpu_count: usize, hit: impl Fn(usize) -> bool) -> VcpuSet {
    VcpuSet(
        (0..vcpu_count.min(MAX_TARGETS))
            .filter(|&v| hit(v))
            .fold(0, |set, v| set | 1 << v),
    )
}

/// Where `ipi` from vCPU `sender` goes in a guest of `vcpu_count` vCPUs. A lowest-priority IPI
/// goes to the first selected vCPU (all vCPUs have the same priority to the router).
pub fn route_ipi(ipi: &Ipi, sender: usize, vcpu_count: usize) -> IpiRoute {
    if ipi.is_init_deassert() {
        return IpiRoute::Nothing;
    }
    let targets = selected(ipi, sender, vcpu_count);
    match ipi.delivery_mode {
        DeliveryMode::Fixed => IpiRoute::Interrupt {
            targets,
            vector: ipi.vector,
        },
        DeliveryMode::LowestPriority => IpiRoute::Interrupt {
            targets: VcpuSet(targets.first().map_or(0, |v| 1 << v)),
            vector: ipi.vector,
        },
        DeliveryMode::Init | DeliveryMode::StartUp => {
            let others = VcpuSet(targets.0 & !(1u64.checked_shl(sender as u32).unwrap_or(0)));
            match others.first() {
                Some(target) => IpiRoute::Start { target },
                None => IpiRoute::Nothing,
            }
        }
        DeliveryMode::Nmi => IpiRoute::Nmi { targets },
        other => IpiRoute::Unsupported(other),
    }
}

/// IOAPIC physical destination FFh: every APIC (the 8-bit broadcast of the redirection entry).
const IOAPIC_BROADCAST: u8 = 0xff;

/// Where the guest's IOAPIC sends `d` in a guest of `vcpu_count` vCPUs. The redirection entry's
/// destination is 8 bits: a physical APIC id (FFh = all), or a logical bitmap, which for x2APIC
/// ids 0-15 (cluster 0) is the same bit per vCPU. Fixed and lowest-priority messages are routed;
/// any other delivery mode (SMI, NMI, INIT, ExtINT through the IOAPIC) is `Unsupported`.
pub fn route_ioapic(d: &Delivery, vcpu_count: usize) -> IpiRoute {
    let targets = members(vcpu_count, |v| {
        if d.dest_logical {
            x2apic_dest_matches(v as u32, u32::from(d.dest_apic_id), DestMode::Logical)
        } else {
            d.dest_apic_id == IOAPIC_BROADCAST || usize::from(d.dest_apic_id) == v
        }
    });
    match d.mode {
        DeliveryMode::Fixed => IpiRoute::Interrupt {
            targets,
            vector: d.vector,
        },
        DeliveryMode::LowestPriority => IpiRoute::Interrupt {
            targets: VcpuSet(targets.first().map_or(0, |v| 1 << v)),
            vector: d.vector,
        },
        other => IpiRoute::Unsupported(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irqchip::decode_icr;

    fn pin(vector: u8, dest: u8, logical: bool, mode: DeliveryMode) -> Delivery {
        Delivery {
            gsi: 4,
            vector,
            dest_apic_id: dest,
            dest_logical: logical,
            mode,
            level_triggered: false,
        }
    }

    #[test]
    fn ioapic_messages_reach_the_named_vcpus() {
        let fixed = |dest, logical| route_ioapic(&pin(0x30, dest, logical, DeliveryMode::Fixed), 3);
        let to = |vcpus: &[usize]| IpiRoute::Interrupt {
            targets: set(vcpus),
            vector: 0x30,
        };
        assert_eq!(fixed(1, false), to(&[1]));
        assert_eq!(fixed(0xff, false), to(&[0, 1, 2]));
        // Physical id 5 is outside a 3-vCPU guest.
        assert_eq!(fixed(5, false), to(&[]));
        // Logical bitmap 0b101: vCPUs 0 and 2.
        assert_eq!(fixed(0b101, true), to(&[0, 2]));
        let lowest = route_ioapic(&pin(0x30, 0b110, true, DeliveryMode::LowestPriority), 3);
        assert_eq!(lowest, to(&[1]));
        assert_eq!(
            route_ioapic(&pin(0x30, 0, false, DeliveryMode::ExtInt), 3),
            IpiRoute::Unsupported(DeliveryMode::ExtInt)
        );
    }

    /// ICR fields: vector, delivery mode (bits 10:8), logical, shorthand (bits 19:18), dest.
    fn icr(vector: u8, mode: u64, logical: bool, shorthand: u64, dest: u32) -> Ipi {
        let value = u64::from(vector)
            | (mode << 8)
            | if logical { 1 << 11 } else { 0 }
            | (1 << 14)
            | (shorthand << 18)
            | (u64::from(dest) << 32);
        decode_icr(value)
    }

    fn set(vcpus: &[usize]) -> VcpuSet {
        VcpuSet(vcpus.iter().map(|v| 1u64 << v).sum())
    }

    #[test]
    fn fixed_physical_reaches_one_vcpu_or_none() {
        let r = route_ipi(&icr(0x40, 0, false, 0, 2), 0, 4);
        assert_eq!(
            r,
            IpiRoute::Interrupt {
                targets: set(&[2]),
                vector: 0x40
            }
        );
        // A destination outside the guest matches nothing.
        let r = route_ipi(&icr(0x40, 0, false, 0, 7), 0, 4);
        assert_eq!(
            r,
            IpiRoute::Interrupt {
                targets: VcpuSet(0),
                vector: 0x40
            }
        );
    }

    #[test]
    fn broadcast_and_shorthands() {
        let all = icr(0x41, 0, false, 0, u32::MAX);
        assert_eq!(selected(&all, 1, 3), set(&[0, 1, 2]));
        assert_eq!(selected(&icr(0x41, 0, false, 1, 0), 1, 3), set(&[1]));
        assert_eq!(selected(&icr(0x41, 0, false, 2, 0), 1, 3), set(&[0, 1, 2]));
        assert_eq!(selected(&icr(0x41, 0, false, 3, 0), 1, 3), set(&[0, 2]));
    }

    #[test]
    fn logical_destination_uses_clusters() {
        // Cluster 0, bits 1 and 3: vCPUs 1 and 3.
        assert_eq!(selected(&icr(0x42, 0, true, 0, 0b1010), 0, 4), set(&[1, 3]));
        // Cluster 1 holds x2APIC ids 16-31: none of a 4-vCPU guest.
        assert_eq!(
            selected(&icr(0x42, 0, true, 0, 0x0001_ffff), 0, 4),
            VcpuSet(0)
        );
    }

    #[test]
    fn lowest_priority_picks_the_first_target() {
        let r = route_ipi(&icr(0x43, 1, true, 0, 0b1100), 0, 4);
        assert_eq!(
            r,
            IpiRoute::Interrupt {
                targets: set(&[2]),
                vector: 0x43
            }
        );
    }

    #[test]
    fn init_and_startup_go_to_the_first_other_vcpu() {
        // INIT to all including self from vCPU 0: vCPU 1.
        assert_eq!(
            route_ipi(&icr(0, 5, false, 2, 0), 0, 3),
            IpiRoute::Start { target: 1 }
        );
        // STARTUP aimed at the sender only: nothing.
        assert_eq!(
            route_ipi(&icr(0x9a, 6, false, 0, 1), 1, 3),
            IpiRoute::Nothing
        );
        assert_eq!(
            route_ipi(&icr(0x9a, 6, false, 0, 2), 1, 3),
            IpiRoute::Start { target: 2 }
        );
    }

    #[test]
    fn init_deassert_is_not_routed_smi_is_refused() {
        // INIT, level de-assert, level-triggered (bit 15), no level-assert bit.
        let deassert = decode_icr((5 << 8) | (1 << 15) | (2 << 18));
        assert_eq!(route_ipi(&deassert, 0, 2), IpiRoute::Nothing);
        assert_eq!(
            route_ipi(&icr(0, 2, false, 0, 1), 0, 2),
            IpiRoute::Unsupported(DeliveryMode::Smi)
        );
    }

    #[test]
    fn nmis_reach_every_selected_vcpu() {
        // Physical to vCPU 1; all excluding self from vCPU 0 of 3 (the vector is ignored).
        assert_eq!(
            route_ipi(&icr(0, 4, false, 0, 1), 0, 2),
            IpiRoute::Nmi { targets: set(&[1]) }
        );
        assert_eq!(
            route_ipi(&icr(0x20, 4, false, 3, 0), 0, 3),
            IpiRoute::Nmi {
                targets: set(&[1, 2])
            }
        );
    }
}
