//! The virtual APIC backing page and the doorbell (APM vol. 2 §15.29.3.1, §15.29.6).
//!
//! The backing page is a 4 KiB page laid out like the local APIC register page: 32-bit
//! registers at a 16-byte stride, the 256-bit IRR/ISR/TMR as 8 registers each. AVIC reads and
//! writes it while the guest runs; the hypervisor posts an interrupt by setting the IRR bit and,
//! if the target vCPU is running, writing the target core's host APIC ID to the doorbell MSR.
//!
//! On a live page the IRR update must be an atomic OR by the kernel, since the processor updates
//! the same page concurrently: [`irr_position`] gives the byte offset and bit for that. The
//! [`BackingPage`] type is for initialisation and for the host-side [`crate::model`].

use crate::exit::reg;
use crate::selftest::Mode;

/// The AVIC doorbell MSR: writing a host physical APIC ID makes that core re-evaluate the
/// running vCPU's backing page IRR (§15.29.6).
pub const MSR_AVIC_DOORBELL: u32 = 0xC001_011B;

/// The highest host physical APIC ID the doorbell MSR and the Physical APIC ID table entry's
/// host field can name in `mode`. AVIC defined both as 8 bits (7:0, the rest reserved; the APM
/// revision `tests/qemu-avic` follows still draws the doorbell so, Figure 15-22). Processors
/// that number cores above FFh have x2AVIC and take bits 11:0 in both: AMD's Linux KVM change
/// for such hosts masks the table field with 11:0 (`crate::table::PhysicalIdEntry`) and writes
/// the whole host APIC ID to the doorbell. xAVIC keeps 7:0.
pub const fn max_host_apic_id(mode: Mode) -> u32 {
    match mode {
        Mode::Xavic => 0xFF,
        Mode::X2avic => 0xFFF,
    }
}

/// Value to write to [`MSR_AVIC_DOORBELL`] to ring host core `host_apic_id` in `mode`; `None`
/// when the ID is beyond what the doorbell can name there ([`max_host_apic_id`]).
pub const fn doorbell_value(mode: Mode, host_apic_id: u32) -> Option<u64> {
    if host_apic_id <= max_host_apic_id(mode) {
        Some(host_apic_id as u64)
    } else {
        None
    }
}

/// Byte offset within the backing page of the 32-bit word holding `vector`'s bit in the
/// 256-bit register starting at `base` (ISR 0x100, TMR 0x180, IRR 0x200), and the bit number.
pub const fn vector_position(base: u16, vector: u8) -> (usize, u32) {
    (
        base as usize + 0x10 * (vector as usize / 32),
        vector as u32 % 32,
    )
}

/// Byte offset and bit of `vector` in the IRR.
pub const fn irr_position(vector: u8) -> (usize, u32) {
    vector_position(reg::IRR, vector)
}

/// A 4 KiB-aligned backing page, as 1024 little-endian 32-bit words.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct BackingPage {
    /// The page as words; register at byte offset `o` is `regs[o / 4]`.
    pub regs: [u32; 1024],
}

const _: () = assert!(core::mem::size_of::<BackingPage>() == 4096);

impl BackingPage {
    /// An all-zero page.
    pub const fn new_zeroed() -> Self {
        Self { regs: [0; 1024] }
    }

    /// A page initialised for guest APIC `apic_id`: the ID register (bits 31:24 in xAPIC
    /// mode, the whole register in x2APIC mode) and version 0x14 with 6 LVT entries (max LVT 5).
    pub const fn new(apic_id: u32, x2apic: bool) -> Self {
        let mut p = Self::new_zeroed();
        p.regs[reg::ID as usize / 4] = if x2apic { apic_id } else { apic_id << 24 };
        p.regs[reg::VERSION as usize / 4] = apic::x2apic::VERSION;
        p
    }

    /// Read the register at byte `offset` (bits 3:0 and bits above 11 are ignored).
    pub const fn read(&self, offset: u16) -> u32 {
        self.regs[(offset as usize & 0xFF0) / 4]
    }

    /// Write the register at byte `offset` (bits 3:0 and bits above 11 are ignored).
    pub fn write(&mut self, offset: u16, value: u32) {
        self.regs[(offset as usize & 0xFF0) / 4] = value;
    }

    /// Set `vector` in the IRR.
    pub fn set_irr(&mut self, vector: u8) {
        let (off, bit) = irr_position(vector);
        self.regs[off / 4] |= 1 << bit;
    }

    /// Whether `vector` is set in the IRR.
    pub const fn irr(&self, vector: u8) -> bool {
        let (off, bit) = irr_position(vector);
        self.regs[off / 4] & (1 << bit) != 0
    }

    /// Highest vector set in the IRR.
    pub const fn highest_irr(&self) -> Option<u8> {
        self.highest(reg::IRR)
    }

    /// Highest vector set in the ISR.
    pub const fn highest_isr(&self) -> Option<u8> {
        self.highest(reg::ISR)
    }

    const fn highest(&self, base: u16) -> Option<u8> {
        let mut i = 8;
        while i > 0 {
            i -= 1;
            let w = self.regs[(base as usize + 0x10 * i) / 4];
            if w != 0 {
                return Some((i * 32 + 31 - w.leading_zeros() as usize) as u8);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbell() {
        assert_eq!(MSR_AVIC_DOORBELL, 0xC001_011B);
        assert_eq!(doorbell_value(Mode::Xavic, 3), Some(3));
        assert_eq!(doorbell_value(Mode::Xavic, 0xFF), Some(0xFF));
        assert_eq!(doorbell_value(Mode::Xavic, 0x100), None);
        assert_eq!(doorbell_value(Mode::X2avic, 0x100), Some(0x100));
        assert_eq!(doorbell_value(Mode::X2avic, 0xFFF), Some(0xFFF));
        assert_eq!(doorbell_value(Mode::X2avic, 0x1000), None);
    }

    #[test]
    fn irr_positions() {
        assert_eq!(irr_position(0), (0x200, 0));
        assert_eq!(irr_position(0x30), (0x210, 16));
        assert_eq!(irr_position(0xEC), (0x270, 12));
        assert_eq!(vector_position(reg::ISR, 0x21), (0x110, 1));
    }

    #[test]
    fn set_and_scan_irr() {
        let mut p = Box::new(BackingPage::new(2, false));
        assert_eq!(p.read(reg::ID), 0x0200_0000);
        assert_eq!(p.highest_irr(), None);
        p.set_irr(0x30);
        p.set_irr(0xEC);
        assert!(p.irr(0x30) && p.irr(0xEC) && !p.irr(0x31));
        assert_eq!(p.highest_irr(), Some(0xEC));
        assert_eq!(p.regs[0x270 / 4], 1 << 12);
        p.write(reg::ISR + 0x10, 1 << 1);
        assert_eq!(p.highest_isr(), Some(0x21));
        assert_eq!(BackingPage::new(0x105, true).read(reg::ID), 0x105);
        assert_eq!(p.read(reg::ID | 0xF), 0x0200_0000);
    }
}
