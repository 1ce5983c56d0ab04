//! The functions on a guest's PCI bus 0 (reached through configuration mechanism #1): a
//! passed-through VF, or a virtual device whose state has its own lock because another core
//! (the service core's backend) uses it too.

use devices::pci::{ConfigSpace, DevFn};
use pci::passthrough::VfPassthrough;

/// Where the guest sees its first virtual (virtio) device: bus 0, device 2, function 0 (device 1
/// is the VF's).
pub const VIRTIO_DEVFN: DevFn = DevFn(2 << 3);

/// A configuration space shared with another core: each access takes the device's own lock
/// (inside the bus's, which is the lock order).
pub trait SharedConfigSpace: Sync {
    fn read(&self, offset: u16) -> u32;
    fn write(&self, offset: u16, value: u32, mask: u32);
    /// The guest restarts (no vCPU runs): back to the state the guest first booted with.
    fn restart(&self);
}

/// One function on the guest's bus.
// The bus is built once per guest inside its `Vm` (a static) and never moved: the size of the
// VF variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum GuestPci {
    Vf(VfPassthrough),
    Virtual(&'static dyn SharedConfigSpace),
}

impl GuestPci {
    pub fn vf(&self) -> Option<&VfPassthrough> {
        match self {
            GuestPci::Vf(vf) => Some(vf),
            GuestPci::Virtual(_) => None,
        }
    }

    pub fn vf_mut(&mut self) -> Option<&mut VfPassthrough> {
        match self {
            GuestPci::Vf(vf) => Some(vf),
            GuestPci::Virtual(_) => None,
        }
    }
}

impl ConfigSpace for GuestPci {
    fn read(&self, offset: u16) -> u32 {
        match self {
            GuestPci::Vf(vf) => vf.read(offset),
            GuestPci::Virtual(d) => d.read(offset),
        }
    }

    fn write(&mut self, offset: u16, value: u32, mask: u32) {
        match self {
            GuestPci::Vf(vf) => vf.write(offset, value, mask),
            GuestPci::Virtual(d) => d.write(offset, value, mask),
        }
    }
}
