//! Access to physical memory, abstracted so tests can fake it.

/// Read access to physical memory.
///
/// The kernel implements this over its identity map; tests implement it over
/// a `Vec` at a fake base address. Returning a borrowed slice (rather than
/// copying into a buffer) lets the parsers hand out views such as
/// [`crate::Sdt::bytes`] that live as long as the memory object.
pub trait PhysMem {
    /// The `len` bytes starting at physical address `phys`, or `None` when any
    /// part of that range is not readable (outside RAM/ROM, or an address
    /// overflow). Firmware pointers are untrusted, so implementations should
    /// refuse rather than fault.
    fn bytes(&self, phys: u64, len: usize) -> Option<&[u8]>;
}

impl<M: PhysMem + ?Sized> PhysMem for &M {
    fn bytes(&self, phys: u64, len: usize) -> Option<&[u8]> {
        (**self).bytes(phys, len)
    }
}
