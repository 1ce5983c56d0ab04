//! MSR permission map (APM vol. 2 §15.11, Table 15-5) and I/O permission map (§15.10.1).
//!
//! Both maps are physically contiguous, 4 KiB-aligned regions named by host-physical address in
//! the VMCB (`msrpm_base_pa` 0x048, `iopm_base_pa` 0x040). A set bit intercepts; a clear bit
//! passes the access through. They only take effect with the `MSR_PROT` / `IOIO_PROT` intercepts
//! in [`crate::intercept::InterceptMisc1`].
//!
//! The position functions are pure and the map wrappers work on borrowed byte arrays, so the
//! kernel can keep the maps in frames of its own; [`MsrpmStorage`] / [`IopmStorage`] are
//! aligned owned buffers for statics.

/// Size of the MSR permission map: 8 KiB.
pub const MSRPM_SIZE: usize = 0x2000;
/// Size of the I/O permission map: 12 KiB (65536 port bits plus spill-over bits).
pub const IOPM_SIZE: usize = 0x3000;

/// The three MSR ranges the MSR permission map covers, as (first MSR, byte offset of its
/// 2 KiB vector). Each vector holds 2 bits for each of 0x2000 MSRs (APM vol. 2 Table 15-5).
const MSR_RANGES: [(u32, usize); 3] = [
    (0x0000_0000, 0x000),
    (0xC000_0000, 0x800),
    (0xC001_0000, 0x1000),
];
/// Number of MSRs in each range.
const MSRS_PER_RANGE: u32 = 0x2000;

/// Which MSR access a permission bit controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrRw {
    /// RDMSR: the even bit of the pair.
    Read,
    /// WRMSR: the odd bit of the pair.
    Write,
}

/// The (byte offset, bit number) of the permission bit for `msr` and `rw` in the MSR permission
/// map, or `None` if the MSR is outside the three covered ranges (such MSRs are always
/// intercepted, APM vol. 2 §15.11).
///
/// MSR *n* of a range uses bits 2*n* (read) and 2*n*+1 (write) of its 2 KiB vector.
pub const fn msrpm_position(msr: u32, rw: MsrRw) -> Option<(usize, u8)> {
    let mut i = 0;
    while i < MSR_RANGES.len() {
        let (first, base) = MSR_RANGES[i];
        if msr >= first && msr - first < MSRS_PER_RANGE {
            let bit_index = (msr - first) as usize * 2
                + match rw {
                    MsrRw::Read => 0,
                    MsrRw::Write => 1,
                };
            return Some((base + bit_index / 8, (bit_index % 8) as u8));
        }
        i += 1;
    }
    None
}

/// The (byte offset, bit number) of `port`'s bit in the I/O permission map (bit *p* for port
/// *p*, APM vol. 2 §15.10.1).
pub const fn iopm_position(port: u16) -> (usize, u8) {
    (port as usize / 8, (port % 8) as u8)
}

/// Error for an MSR outside the three ranges the map can describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrOutOfRange(pub u32);

/// A 4 KiB-aligned owned MSR permission map buffer (two pages), e.g. for a `static`.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct MsrpmStorage(pub [u8; MSRPM_SIZE]);

/// A 4 KiB-aligned owned I/O permission map buffer (three pages), e.g. for a `static`.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct IopmStorage(pub [u8; IOPM_SIZE]);

const _: () = assert!(core::mem::size_of::<MsrpmStorage>() == MSRPM_SIZE);
const _: () = assert!(core::mem::size_of::<IopmStorage>() == IOPM_SIZE);

impl MsrpmStorage {
    /// A map that intercepts every MSR access.
    pub const fn intercept_all() -> Self {
        Self([0xFF; MSRPM_SIZE])
    }
}

impl IopmStorage {
    /// A map that intercepts every port.
    pub const fn intercept_all() -> Self {
        Self([0xFF; IOPM_SIZE])
    }
}

/// The MSR permission map over a borrowed 8 KiB buffer.
pub struct MsrPermissionMap<'a> {
    bytes: &'a mut [u8; MSRPM_SIZE],
}

impl<'a> MsrPermissionMap<'a> {
    /// Wrap an 8 KiB buffer (its contents are kept).
    pub fn new(bytes: &'a mut [u8; MSRPM_SIZE]) -> Self {
        Self { bytes }
    }

    /// Intercept every access to every MSR (the safe default).
    pub fn intercept_all(&mut self) {
        self.bytes.fill(0xFF);
    }

    /// Pass every access to every covered MSR through.
    pub fn pass_all(&mut self) {
        self.bytes.fill(0);
    }

    /// Set whether `rw` accesses to `msr` are intercepted.
    pub fn set(&mut self, msr: u32, rw: MsrRw, intercept: bool) -> Result<(), MsrOutOfRange> {
        let (byte, bit) = msrpm_position(msr, rw).ok_or(MsrOutOfRange(msr))?;
        if intercept {
            self.bytes[byte] |= 1 << bit;
        } else {
            self.bytes[byte] &= !(1 << bit);
        }
        Ok(())
    }

    /// Intercept both reads and writes of `msr`.
    pub fn intercept(&mut self, msr: u32) -> Result<(), MsrOutOfRange> {
        self.set(msr, MsrRw::Read, true)?;
        self.set(msr, MsrRw::Write, true)
    }

    /// Pass both reads and writes of `msr` through to the hardware.
    pub fn pass_through(&mut self, msr: u32) -> Result<(), MsrOutOfRange> {
        self.set(msr, MsrRw::Read, false)?;
        self.set(msr, MsrRw::Write, false)
    }

    /// Whether an `rw` access to `msr` causes a `#VMEXIT` (always for uncovered MSRs).
    pub fn intercepts(&self, msr: u32, rw: MsrRw) -> bool {
        match msrpm_position(msr, rw) {
            Some((byte, bit)) => self.bytes[byte] & (1 << bit) != 0,
            None => true,
        }
    }
}

/// The I/O permission map over a borrowed 12 KiB buffer.
pub struct IoPermissionMap<'a> {
    bytes: &'a mut [u8; IOPM_SIZE],
}

impl<'a> IoPermissionMap<'a> {
    /// Wrap a 12 KiB buffer (its contents are kept).
    pub fn new(bytes: &'a mut [u8; IOPM_SIZE]) -> Self {
        Self { bytes }
    }

    /// Intercept every port, including the spill-over bits past port 0xFFFF.
    pub fn intercept_all(&mut self) {
        self.bytes.fill(0xFF);
    }

    /// Set whether ports `first ..= first + count - 1` are intercepted. Ports past 0xFFFF are
    /// ignored. The spill-over bits (65536 and up, checked by multi-byte accesses that start
    /// near 0xFFFF) are never cleared by this method, so such accesses keep exiting.
    pub fn set_range(&mut self, first: u16, count: u32, intercept: bool) {
        let end = (first as u32 + count).min(0x1_0000);
        let mut port = first as u32;
        while port < end {
            let (byte, bit) = iopm_position(port as u16);
            if bit == 0 && end - port >= 8 {
                self.bytes[byte] = if intercept { 0xFF } else { 0 };
                port += 8;
                continue;
            }
            if intercept {
                self.bytes[byte] |= 1 << bit;
            } else {
                self.bytes[byte] &= !(1 << bit);
            }
            port += 1;
        }
    }

    /// Intercept ports `first ..= first + count - 1`.
    pub fn intercept_range(&mut self, first: u16, count: u32) {
        self.set_range(first, count, true);
    }

    /// Pass ports `first ..= first + count - 1` through to the hardware.
    pub fn pass_through_range(&mut self, first: u16, count: u32) {
        self.set_range(first, count, false);
    }

    /// Whether an access of `size` bytes (1, 2 or 4) at `port` causes a `#VMEXIT`: the
    /// processor checks the bits of every byte the access touches (APM vol. 2 §15.10.1).
    pub fn intercepts(&self, port: u16, size: u8) -> bool {
        (0..size.max(1) as usize).any(|i| {
            let bit_index = port as usize + i;
            self.bytes[bit_index / 8] & (1 << (bit_index % 8)) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_positions_by_hand() {
        // x2APIC ICR 0x830: 0x830 * 2 = 0x1060 bits → byte 0x20C, bit 0 (read) / 1 (write).
        assert_eq!(msrpm_position(0x830, MsrRw::Read), Some((0x20C, 0)));
        assert_eq!(msrpm_position(0x830, MsrRw::Write), Some((0x20C, 1)));
        // EFER 0xC000_0080: range 2 at 0x800; 0x80 * 2 = 0x100 bits → byte 0x820, bits 0/1.
        assert_eq!(msrpm_position(0xC000_0080, MsrRw::Read), Some((0x820, 0)));
        assert_eq!(msrpm_position(0xC000_0080, MsrRw::Write), Some((0x820, 1)));
        // VM_HSAVE_PA 0xC001_0117: range 3 at 0x1000; 0x117 * 2 = 0x22E bits → byte 0x45,
        // bit 6 (read) / 7 (write) → byte 0x1045.
        assert_eq!(msrpm_position(0xC001_0117, MsrRw::Read), Some((0x1045, 6)));
        assert_eq!(msrpm_position(0xC001_0117, MsrRw::Write), Some((0x1045, 7)));
        // x2APIC EOI 0x80B: 0x80B * 2 = 0x1016 bits → byte 0x202, bit 6/7.
        assert_eq!(msrpm_position(0x80B, MsrRw::Write), Some((0x202, 7)));
        // Range ends.
        assert_eq!(msrpm_position(0x1FFF, MsrRw::Write), Some((0x7FF, 7)));
        assert_eq!(msrpm_position(0xC001_1FFF, MsrRw::Write), Some((0x17FF, 7)));
    }

    #[test]
    fn msrs_outside_ranges_have_no_bit() {
        assert_eq!(msrpm_position(0x2000, MsrRw::Read), None);
        assert_eq!(msrpm_position(0xC000_2000, MsrRw::Read), None);
        assert_eq!(msrpm_position(0xC001_2000, MsrRw::Read), None);
        assert_eq!(msrpm_position(0x4000_0000, MsrRw::Read), None);
        assert_eq!(msrpm_position(u32::MAX, MsrRw::Write), None);
    }

    #[test]
    fn msr_map_pass_through_and_intercept() {
        let mut storage = Box::new(MsrpmStorage::intercept_all());
        let mut map = MsrPermissionMap::new(&mut storage.0);
        map.pass_through(0x830).unwrap();
        assert!(!map.intercepts(0x830, MsrRw::Read));
        assert!(!map.intercepts(0x830, MsrRw::Write));
        assert!(map.intercepts(0x831, MsrRw::Read));
        map.set(0x830, MsrRw::Write, true).unwrap();
        assert!(map.intercepts(0x830, MsrRw::Write));
        assert!(!map.intercepts(0x830, MsrRw::Read));
        assert_eq!(
            map.pass_through(0x4000_0000),
            Err(MsrOutOfRange(0x4000_0000))
        );
        assert!(map.intercepts(0x4000_0000, MsrRw::Read));
        assert_eq!(storage.0[0x20C], 0xFE);
    }

    #[test]
    fn msr_map_pass_all_then_intercept_efer_write() {
        let mut storage = Box::new(MsrpmStorage::intercept_all());
        let mut map = MsrPermissionMap::new(&mut storage.0);
        map.pass_all();
        map.set(0xC000_0080, MsrRw::Write, true).unwrap();
        assert!(map.intercepts(0xC000_0080, MsrRw::Write));
        assert!(!map.intercepts(0xC000_0080, MsrRw::Read));
        assert_eq!(storage.0[0x820], 0b10);
        assert_eq!(storage.0.iter().filter(|&&b| b != 0).count(), 1);
    }

    #[test]
    fn iopm_positions() {
        assert_eq!(iopm_position(0), (0, 0));
        assert_eq!(iopm_position(0x3F8), (0x7F, 0));
        assert_eq!(iopm_position(0xCFC), (0x19F, 4));
        assert_eq!(iopm_position(0xFFFF), (0x1FFF, 7));
    }

    #[test]
    fn io_map_ranges() {
        let mut storage = Box::new(IopmStorage::intercept_all());
        let mut map = IoPermissionMap::new(&mut storage.0);
        // Pass COM1 (0x3F8..=0x3FF) through: exactly byte 0x7F.
        map.pass_through_range(0x3F8, 8);
        assert!(!map.intercepts(0x3F8, 1));
        assert!(!map.intercepts(0x3FC, 4));
        assert!(map.intercepts(0x3F7, 1));
        assert!(map.intercepts(0x3FE, 4)); // spills into 0x400
                                           // Unaligned range 0x61..=0x63.
        map.pass_through_range(0x61, 3);
        assert!(!map.intercepts(0x61, 1) && !map.intercepts(0x63, 1));
        assert!(map.intercepts(0x60, 1) && map.intercepts(0x64, 1));
        map.intercept_range(0x3F8, 1);
        assert!(map.intercepts(0x3F8, 1));
        assert_eq!(storage.0[0x7F], 0x01);
        assert_eq!(storage.0[0x0C], 0b1111_0001);
    }

    #[test]
    fn io_map_top_of_port_space_and_spill_bits() {
        let mut storage = Box::new(IopmStorage::intercept_all());
        let mut map = IoPermissionMap::new(&mut storage.0);
        map.pass_through_range(0xFFF0, 0x100); // clamped to 0xFFFF
        assert!(!map.intercepts(0xFFFF, 1));
        // A dword access at 0xFFFE touches the spill bits 0x10000, 0x10001: still intercepted.
        assert!(map.intercepts(0xFFFE, 4));
        assert_eq!(storage.0[0x2000], 0xFF);
        assert_eq!(storage.0[0x1FFF], 0);
    }
}
