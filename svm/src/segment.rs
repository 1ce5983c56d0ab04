//! Segment registers in the VMCB and a 64-bit guest's initial state (APM vol. 2 §15.5.1,
//! Appendix B Table B-2; descriptor format §4.7–§4.8).
//!
//! The VMCB stores a segment's hidden attributes in a packed 12-bit form:
//!
//! ```text
//! VMCB attrib:  11 10  9  8 | 7  6 5  4 3 2 1 0
//!                G D/B L AVL| P  DPL  S   TYPE
//! = descriptor byte 5 (bits 47:40) in bits 7:0, high nibble of byte 6 (bits 55:52) in 11:8
//! ```
//!
//! So a 64-bit code descriptor `0x00AF_9B00_0000_FFFF` (access byte 0x9B, flags nibble 0xA:
//! G = 1, L = 1) has attrib **0xA9B**; the same without G (`0x0020_9B00_0000_0000`) has 0x29B.
//! In 64-bit mode the processor ignores G and the limit for code and data, so both run; 0xA9B is
//! what a descriptor loaded from a normal GDT (e.g. Linux's `__KERNEL_CS`) produces.

use crate::vmcb::{Vmcb, VmcbSegment};

/// Attribute bits of the packed VMCB form.
pub mod attr {
    /// Accessed (type bit 0).
    pub const ACCESSED: u16 = 1 << 0;
    /// Readable (code) / writable (data) (type bit 1).
    pub const RW: u16 = 1 << 1;
    /// Code segment (type bit 3).
    pub const CODE: u16 = 1 << 3;
    /// S: code/data (1) rather than system (0).
    pub const S: u16 = 1 << 4;
    /// Present.
    pub const P: u16 = 1 << 7;
    /// Available to software.
    pub const AVL: u16 = 1 << 8;
    /// 64-bit code segment.
    pub const L: u16 = 1 << 9;
    /// Default operand size 32 bits / big.
    pub const DB: u16 = 1 << 10;
    /// Granularity 4 KiB.
    pub const G: u16 = 1 << 11;
    /// System type 0xB: 64-bit busy TSS.
    pub const TYPE_TSS64_BUSY: u16 = 0xB;
    /// System type 0x2: LDT.
    pub const TYPE_LDT: u16 = 0x2;
}

/// The packed VMCB attribute field of an 8-byte GDT/LDT descriptor.
pub const fn attrib_from_descriptor(desc: u64) -> u16 {
    let byte5 = (desc >> 40) & 0xFF;
    let flags = (desc >> 52) & 0xF;
    (byte5 | (flags << 8)) as u16
}

/// The DPL field (bits 6:5) of a packed attribute.
pub const fn attrib_dpl(attrib: u16) -> u8 {
    ((attrib >> 5) & 0x3) as u8
}

/// The expanded (byte-granular) limit of a descriptor: 20-bit limit, scaled by 4 KiB if G.
pub const fn limit_from_descriptor(desc: u64) -> u32 {
    let raw = ((desc & 0xFFFF) | ((desc >> 32) & 0xF_0000)) as u32;
    if desc & (1 << 55) != 0 {
        (raw << 12) | 0xFFF
    } else {
        raw
    }
}

/// The 32-bit base of an 8-byte descriptor.
pub const fn base_from_descriptor(desc: u64) -> u64 {
    ((desc >> 16) & 0xFF_FFFF) | (((desc >> 56) & 0xFF) << 24)
}

impl VmcbSegment {
    /// The hidden state a `MOV Sreg`/far jump would load from an 8-byte code/data descriptor.
    pub const fn from_descriptor(selector: u16, desc: u64) -> Self {
        Self {
            selector,
            attrib: attrib_from_descriptor(desc),
            limit: limit_from_descriptor(desc),
            base: base_from_descriptor(desc),
        }
    }

    /// The hidden state of a 16-byte system descriptor (TSS, LDT) in long mode: `high` is the
    /// second quadword, holding base bits 63:32.
    pub const fn from_system_descriptor(selector: u16, low: u64, high: u64) -> Self {
        let mut s = Self::from_descriptor(selector, low);
        s.base |= (high & 0xFFFF_FFFF) << 32;
        s
    }

    /// A flat 64-bit ring-0 code segment (attrib 0xA9B, as from descriptor
    /// `0x00AF_9B00_0000_FFFF`).
    pub const fn code64(selector: u16) -> Self {
        Self::from_descriptor(selector, 0x00AF_9B00_0000_FFFF)
    }

    /// A flat ring-0 data segment (attrib 0xC93, as from descriptor `0x00CF_9300_0000_FFFF`).
    pub const fn data_flat(selector: u16) -> Self {
        Self::from_descriptor(selector, 0x00CF_9300_0000_FFFF)
    }
}

/// Initial register values for a guest entered directly in 64-bit mode (Linux's 64-bit boot
/// protocol: paging on with identity-mapped tables, `RSI` = boot_params). RSI is not in the VMCB;
/// the caller loads it into its saved general-purpose registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongModeEntry {
    /// Guest CR3 (PML4 GPA).
    pub cr3: u64,
    /// Entry point.
    pub rip: u64,
    /// Initial stack pointer.
    pub rsp: u64,
    /// GDTR base (GPA of a GDT with the descriptors behind `cs`/`ds`), 0 if none.
    pub gdt_base: u64,
    /// GDTR limit.
    pub gdt_limit: u32,
    /// Code selector (e.g. 0x10 for Linux's `__BOOT_CS`).
    pub cs: u16,
    /// Data selector for DS/ES/SS/FS/GS (e.g. 0x18 for `__BOOT_DS`).
    pub ds: u16,
}

/// Guest CR0 for 64-bit mode: PG | WP | NE | ET | PE.
pub const LONG_MODE_CR0: u64 = (1 << 31) | (1 << 16) | (1 << 5) | (1 << 4) | 1;
/// Guest CR4 for 64-bit mode: PAE (plus what the guest sets itself later).
pub const LONG_MODE_CR4: u64 = 1 << 5;
/// Guest EFER for 64-bit mode: SVME (required by `VMRUN`) | LMA | LME | NXE | SCE.
pub const LONG_MODE_EFER: u64 = (1 << 12) | (1 << 11) | (1 << 10) | (1 << 8) | 1;
/// Power-on PAT value (APM vol. 2 §7.8.1), used for G_PAT.
pub const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;

impl Vmcb {
    /// Fill the state save area for a guest that starts in 64-bit mode at CPL 0. Leaves the
    /// control area alone.
    pub fn set_long_mode_state(&mut self, e: &LongModeEntry) {
        self.cs = VmcbSegment::code64(e.cs);
        let data = VmcbSegment::data_flat(e.ds);
        self.ds = data;
        self.es = data;
        self.ss = data;
        self.fs = data;
        self.gs = data;
        self.gdtr = VmcbSegment {
            selector: 0,
            attrib: 0,
            limit: e.gdt_limit,
            base: e.gdt_base,
        };
        self.idtr = VmcbSegment::NULL;
        self.ldtr = VmcbSegment {
            selector: 0,
            attrib: attr::P | attr::TYPE_LDT,
            limit: 0xFFFF,
            base: 0,
        };
        self.tr = VmcbSegment {
            selector: 0,
            attrib: attr::P | attr::TYPE_TSS64_BUSY,
            limit: 0xFFFF,
            base: 0,
        };
        self.cpl = 0;
        self.efer = LONG_MODE_EFER;
        self.cr0 = LONG_MODE_CR0;
        self.cr3 = e.cr3;
        self.cr4 = LONG_MODE_CR4;
        self.dr6 = 0xFFFF_0FF0;
        self.dr7 = 0x400;
        self.rflags = 0x2;
        self.rip = e.rip;
        self.rsp = e.rsp;
        self.g_pat = DEFAULT_PAT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code64_attrib_with_and_without_granularity() {
        assert_eq!(attrib_from_descriptor(0x00AF_9B00_0000_FFFF), 0xA9B);
        assert_eq!(attrib_from_descriptor(0x0020_9B00_0000_0000), 0x29B);
        let a = attrib_from_descriptor(0x00AF_9B00_0000_FFFF);
        assert!(a & attr::L != 0 && a & attr::DB == 0 && a & attr::G != 0);
        assert!(a & attr::CODE != 0 && a & attr::S != 0 && a & attr::P != 0);
        assert_eq!(attrib_dpl(a), 0);
    }

    #[test]
    fn code64_segment() {
        let cs = VmcbSegment::code64(0x10);
        assert_eq!(cs.selector, 0x10);
        assert_eq!(cs.attrib, 0xA9B);
        assert_eq!(cs.limit, 0xFFFF_FFFF);
        assert_eq!(cs.base, 0);
    }

    #[test]
    fn flat_data_segment() {
        let ds = VmcbSegment::data_flat(0x18);
        assert_eq!(ds.attrib, 0xC93);
        assert_eq!(ds.limit, 0xFFFF_FFFF);
        assert_eq!(ds.base, 0);
        // User data, DPL 3: access byte 0xF3.
        assert_eq!(attrib_dpl(attrib_from_descriptor(0x00CF_F300_0000_FFFF)), 3);
    }

    #[test]
    fn limit_and_base_fields() {
        // Byte-granular limit 0x12345, base 0xAB_CDEF_01.
        let desc = 0xAB41_93EF_0100_2345u64;
        assert_eq!(limit_from_descriptor(desc), 0x1_2345);
        assert_eq!(base_from_descriptor(desc), 0xABEF_0100);
        assert_eq!(attrib_from_descriptor(desc), 0x493);
    }

    #[test]
    fn tss_system_descriptor() {
        // 64-bit busy TSS at 0xFFFF_8880_1234_5000, limit 0x67.
        let low = 0x3400_8B12_5000_0067u64;
        let high = 0xFFFF_8880u64;
        let tr = VmcbSegment::from_system_descriptor(0x40, low, high);
        assert_eq!(tr.attrib, 0x8B);
        assert_eq!(tr.limit, 0x67);
        assert_eq!(tr.base, 0xFFFF_8880_3412_5000);
    }

    #[test]
    fn long_mode_state() {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.set_long_mode_state(&LongModeEntry {
            cr3: 0x9000,
            rip: 0x100_0200,
            rsp: 0x8000,
            gdt_base: 0x500,
            gdt_limit: 0x1F,
            cs: 0x10,
            ds: 0x18,
        });
        assert_eq!(v.cs.attrib, 0xA9B);
        assert_eq!(v.ss.attrib, 0xC93);
        assert_eq!(v.cr0, 0x8001_0031);
        assert_eq!(v.efer, 0x1D01);
        assert_eq!(v.rip, 0x100_0200);
        assert_eq!(v.tr.attrib, 0x8B);
        assert_eq!(v.gdtr.base, 0x500);
    }
}
