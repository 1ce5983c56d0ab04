//! Data structures Identify returns and Namespace Attachment takes (NVMe Base 2.0, Identify
//! command and "Controller List"): the Controller List, the Secondary Controller List, the
//! Primary Controller Capabilities and the few Identify Controller fields the hypervisor reads.
//! Parsed from the 4 KiB buffer the controller wrote, field by field (little endian), never
//! trusting counts beyond what the buffer holds.

use core::mem::offset_of;

/// Size of every Identify data structure.
pub const IDENTIFY_SIZE: usize = 4096;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Controller List (NVMe Base 2.0): a count and up to 2047 controller ids.
#[repr(C)]
pub struct ControllerList {
    /// 0x00: number of identifiers
    pub count: u16,
    /// 0x02: identifiers, ascending
    pub ids: [u16; CONTROLLER_LIST_MAX],
}

pub const CONTROLLER_LIST_MAX: usize = 2047;
const _: () = assert!(size_of::<ControllerList>() == IDENTIFY_SIZE);
const _: () = assert!(offset_of!(ControllerList, ids) == 2);

impl ControllerList {
    /// Writes a list of `ids` into `page` (rest zeroed). `None` if there are too many.
    pub fn encode(ids: &[u16], page: &mut [u8; IDENTIFY_SIZE]) -> Option<()> {
        if ids.len() > CONTROLLER_LIST_MAX {
            return None;
        }
        page.fill(0);
        page[0..2].copy_from_slice(&(ids.len() as u16).to_le_bytes());
        let at = offset_of!(ControllerList, ids);
        for (i, id) in ids.iter().enumerate() {
            page[at + 2 * i..at + 2 * i + 2].copy_from_slice(&id.to_le_bytes());
        }
        Some(())
    }

    /// The identifiers of a list in `page` (the count clamped to what fits).
    pub fn decode(page: &[u8; IDENTIFY_SIZE]) -> impl Iterator<Item = u16> + '_ {
        let count = usize::from(u16_at(page, 0)).min(CONTROLLER_LIST_MAX);
        let at = offset_of!(ControllerList, ids);
        (0..count).map(move |i| u16_at(page, at + 2 * i))
    }
}

/// Secondary Controller Entry (NVMe Base 2.0, Identify CNS 15h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondaryControllerEntry {
    /// 0x00 SCID: secondary controller identifier
    pub scid: u16,
    /// 0x02 PCID: primary controller identifier
    pub pcid: u16,
    /// 0x04 SCS: bit 0 set = online
    pub scs: u8,
    /// 0x05
    pub _reserved_05: [u8; 3],
    /// 0x08 VFN: virtual function number (1-based), 0 if not a VF
    pub vfn: u16,
    /// 0x0A NVQ: virtual queue resources assigned
    pub nvq: u16,
    /// 0x0C NVI: virtual interrupt resources assigned
    pub nvi: u16,
    /// 0x0E
    pub _reserved_0e: [u8; 18],
}

pub const SECONDARY_ENTRY_SIZE: usize = 32;
const _: () = assert!(size_of::<SecondaryControllerEntry>() == SECONDARY_ENTRY_SIZE);
const _: () = assert!(offset_of!(SecondaryControllerEntry, pcid) == 0x02);
const _: () = assert!(offset_of!(SecondaryControllerEntry, scs) == 0x04);
const _: () = assert!(offset_of!(SecondaryControllerEntry, vfn) == 0x08);
const _: () = assert!(offset_of!(SecondaryControllerEntry, nvq) == 0x0A);
const _: () = assert!(offset_of!(SecondaryControllerEntry, nvi) == 0x0C);

impl SecondaryControllerEntry {
    pub fn parse(b: &[u8]) -> Option<SecondaryControllerEntry> {
        let b = b.get(..SECONDARY_ENTRY_SIZE)?;
        Some(SecondaryControllerEntry {
            scid: u16_at(b, offset_of!(Self, scid)),
            pcid: u16_at(b, offset_of!(Self, pcid)),
            scs: b[offset_of!(Self, scs)],
            _reserved_05: [0; 3],
            vfn: u16_at(b, offset_of!(Self, vfn)),
            nvq: u16_at(b, offset_of!(Self, nvq)),
            nvi: u16_at(b, offset_of!(Self, nvi)),
            _reserved_0e: [0; 18],
        })
    }

    pub fn encode(&self, b: &mut [u8]) {
        if b.len() < SECONDARY_ENTRY_SIZE {
            return;
        }
        b[..SECONDARY_ENTRY_SIZE].fill(0);
        b[0..2].copy_from_slice(&self.scid.to_le_bytes());
        b[2..4].copy_from_slice(&self.pcid.to_le_bytes());
        b[4] = self.scs;
        b[8..10].copy_from_slice(&self.vfn.to_le_bytes());
        b[10..12].copy_from_slice(&self.nvq.to_le_bytes());
        b[12..14].copy_from_slice(&self.nvi.to_le_bytes());
    }

    pub const fn online(&self) -> bool {
        self.scs & 1 != 0
    }
}

/// Secondary Controller List header (NVMe Base 2.0, Identify CNS 15h); up to 127 entries follow.
#[repr(C)]
pub struct SecondaryControllerListHeader {
    /// 0x00: number of identifiers
    pub count: u8,
    /// 0x01
    pub _reserved: [u8; 31],
}

pub const SECONDARY_LIST_MAX: usize = 127;
const _: () = assert!(size_of::<SecondaryControllerListHeader>() == SECONDARY_ENTRY_SIZE);
const _: () = assert!(
    size_of::<SecondaryControllerListHeader>() + SECONDARY_LIST_MAX * SECONDARY_ENTRY_SIZE
        == IDENTIFY_SIZE
);

/// A view of a Secondary Controller List the controller wrote.
#[derive(Clone, Copy)]
pub struct SecondaryControllerList<'a> {
    page: &'a [u8; IDENTIFY_SIZE],
}

impl<'a> SecondaryControllerList<'a> {
    pub fn new(page: &'a [u8; IDENTIFY_SIZE]) -> Self {
        SecondaryControllerList { page }
    }

    /// Number of entries (clamped to 127).
    pub fn len(&self) -> usize {
        usize::from(self.page[0]).min(SECONDARY_LIST_MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<SecondaryControllerEntry> {
        if i >= self.len() {
            return None;
        }
        let at = SECONDARY_ENTRY_SIZE * (i + 1);
        SecondaryControllerEntry::parse(&self.page[at..])
    }

    pub fn iter(&self) -> impl Iterator<Item = SecondaryControllerEntry> + 'a {
        let list = *self;
        (0..self.len()).filter_map(move |i| list.get(i))
    }

    /// The secondary controller of virtual function `vfn` (1-based).
    pub fn by_vfn(&self, vfn: u16) -> Option<SecondaryControllerEntry> {
        self.iter().find(|e| e.vfn == vfn && vfn != 0)
    }

    /// Writes a list of `entries` into `page` (for fakes and tests). `None` if too many.
    pub fn encode(
        entries: &[SecondaryControllerEntry],
        page: &mut [u8; IDENTIFY_SIZE],
    ) -> Option<()> {
        if entries.len() > SECONDARY_LIST_MAX {
            return None;
        }
        page.fill(0);
        page[0] = entries.len() as u8;
        for (i, e) in entries.iter().enumerate() {
            e.encode(&mut page[SECONDARY_ENTRY_SIZE * (i + 1)..]);
        }
        Some(())
    }
}

/// Primary Controller Capabilities (NVMe Base 2.0, Identify CNS 14h), the defined first 80
/// bytes; bytes 80-4095 are reserved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrimaryControllerCapabilities {
    /// 0x00 CNTLID
    pub cntlid: u16,
    /// 0x02 PORTID
    pub portid: u16,
    /// 0x04 CRT: controller resource types, bit 0 VQ, bit 1 VI
    pub crt: u8,
    /// 0x05
    pub _reserved_05: [u8; 27],
    /// 0x20 VQFRT: VQ flexible resources total (primary and secondaries)
    pub vqfrt: u32,
    /// 0x24 VQRFA: VQ flexible resources assigned to secondaries
    pub vqrfa: u32,
    /// 0x28 VQRFAP: VQ flexible resources allocated to the primary
    pub vqrfap: u16,
    /// 0x2A VQPRT: VQ private resources of the primary
    pub vqprt: u16,
    /// 0x2C VQFRSM: most VQ flexible resources one secondary may get
    pub vqfrsm: u16,
    /// 0x2E VQGRAN: preferred VQ granularity
    pub vqgran: u16,
    /// 0x30
    pub _reserved_30: [u8; 16],
    /// 0x40 VIFRT: VI flexible resources total
    pub vifrt: u32,
    /// 0x44 VIRFA: VI flexible resources assigned to secondaries
    pub virfa: u32,
    /// 0x48 VIRFAP: VI flexible resources allocated to the primary
    pub virfap: u16,
    /// 0x4A VIPRT: VI private resources of the primary
    pub viprt: u16,
    /// 0x4C VIFRSM: most VI flexible resources one secondary may get
    pub vifrsm: u16,
    /// 0x4E VIGRAN
    pub vigran: u16,
}

const _: () = assert!(size_of::<PrimaryControllerCapabilities>() == 80);
const _: () = assert!(offset_of!(PrimaryControllerCapabilities, crt) == 0x04);
const _: () = assert!(offset_of!(PrimaryControllerCapabilities, vqfrt) == 0x20);
const _: () = assert!(offset_of!(PrimaryControllerCapabilities, vqrfap) == 0x28);
const _: () = assert!(offset_of!(PrimaryControllerCapabilities, vqfrsm) == 0x2C);
const _: () = assert!(offset_of!(PrimaryControllerCapabilities, vifrt) == 0x40);
const _: () = assert!(offset_of!(PrimaryControllerCapabilities, virfap) == 0x48);
const _: () = assert!(offset_of!(PrimaryControllerCapabilities, vigran) == 0x4E);

impl PrimaryControllerCapabilities {
    /// CRT bit 0.
    pub const CRT_VQ: u8 = 1 << 0;
    /// CRT bit 1.
    pub const CRT_VI: u8 = 1 << 1;

    pub fn parse(page: &[u8; IDENTIFY_SIZE]) -> PrimaryControllerCapabilities {
        type P = PrimaryControllerCapabilities;
        let w = |at| u16_at(page, at);
        let d = |at| u32_at(page, at);
        PrimaryControllerCapabilities {
            cntlid: w(offset_of!(P, cntlid)),
            portid: w(offset_of!(P, portid)),
            crt: page[offset_of!(P, crt)],
            _reserved_05: [0; 27],
            vqfrt: d(offset_of!(P, vqfrt)),
            vqrfa: d(offset_of!(P, vqrfa)),
            vqrfap: w(offset_of!(P, vqrfap)),
            vqprt: w(offset_of!(P, vqprt)),
            vqfrsm: w(offset_of!(P, vqfrsm)),
            vqgran: w(offset_of!(P, vqgran)),
            _reserved_30: [0; 16],
            vifrt: d(offset_of!(P, vifrt)),
            virfa: d(offset_of!(P, virfa)),
            virfap: w(offset_of!(P, virfap)),
            viprt: w(offset_of!(P, viprt)),
            vifrsm: w(offset_of!(P, vifrsm)),
            vigran: w(offset_of!(P, vigran)),
        }
    }

    /// Writes the structure into `page` (rest zeroed; for fakes and tests).
    pub fn encode(&self, page: &mut [u8; IDENTIFY_SIZE]) {
        type P = PrimaryControllerCapabilities;
        page.fill(0);
        let mut w = |at: usize, v: &[u8]| page[at..at + v.len()].copy_from_slice(v);
        w(offset_of!(P, cntlid), &self.cntlid.to_le_bytes());
        w(offset_of!(P, portid), &self.portid.to_le_bytes());
        w(offset_of!(P, crt), &[self.crt]);
        w(offset_of!(P, vqfrt), &self.vqfrt.to_le_bytes());
        w(offset_of!(P, vqrfa), &self.vqrfa.to_le_bytes());
        w(offset_of!(P, vqrfap), &self.vqrfap.to_le_bytes());
        w(offset_of!(P, vqprt), &self.vqprt.to_le_bytes());
        w(offset_of!(P, vqfrsm), &self.vqfrsm.to_le_bytes());
        w(offset_of!(P, vqgran), &self.vqgran.to_le_bytes());
        w(offset_of!(P, vifrt), &self.vifrt.to_le_bytes());
        w(offset_of!(P, virfa), &self.virfa.to_le_bytes());
        w(offset_of!(P, virfap), &self.virfap.to_le_bytes());
        w(offset_of!(P, viprt), &self.viprt.to_le_bytes());
        w(offset_of!(P, vifrsm), &self.vifrsm.to_le_bytes());
        w(offset_of!(P, vigran), &self.vigran.to_le_bytes());
    }
}

/// Identify Controller (NVMe Base 2.0, Identify CNS 01h): the opening fields through VER.
#[repr(C)]
pub struct IdentifyControllerHead {
    /// 0x00 VID: PCI vendor id
    pub vid: u16,
    /// 0x02 SSVID
    pub ssvid: u16,
    /// 0x04 SN: serial number, ASCII, space padded
    pub sn: [u8; 20],
    /// 0x18 MN: model number
    pub mn: [u8; 40],
    /// 0x40 FR: firmware revision
    pub fr: [u8; 8],
    /// 0x48 RAB
    pub rab: u8,
    /// 0x49 IEEE OUI
    pub ieee: [u8; 3],
    /// 0x4C CMIC: multi-path I/O and namespace sharing
    pub cmic: u8,
    /// 0x4D MDTS: maximum data transfer size, 2^n minimum pages
    pub mdts: u8,
    /// 0x4E CNTLID: this controller's id
    pub cntlid: u16,
    /// 0x50 VER
    pub ver: u32,
}

const _: () = assert!(size_of::<IdentifyControllerHead>() == 0x54);
const _: () = assert!(offset_of!(IdentifyControllerHead, sn) == 0x04);
const _: () = assert!(offset_of!(IdentifyControllerHead, mn) == 0x18);
const _: () = assert!(offset_of!(IdentifyControllerHead, fr) == 0x40);
const _: () = assert!(offset_of!(IdentifyControllerHead, cntlid) == 0x4E);
const _: () = assert!(offset_of!(IdentifyControllerHead, ver) == 0x50);

/// Identify Controller byte 256: OACS, optional admin command support.
pub const IDENTIFY_OACS: usize = 256;
/// Identify Controller byte 516: NN, number of namespaces.
pub const IDENTIFY_NN: usize = 516;
/// OACS bit 3: Namespace Management (and Attachment) supported.
pub const OACS_NAMESPACE_MANAGEMENT: u16 = 1 << 3;
/// OACS bit 7: Virtualization Management supported.
pub const OACS_VIRTUALIZATION_MANAGEMENT: u16 = 1 << 7;

/// What the hypervisor reads from Identify Controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerIdentity {
    pub vid: u16,
    pub ssvid: u16,
    pub serial: [u8; 20],
    pub model: [u8; 40],
    pub cntlid: u16,
    pub version: u32,
    pub oacs: u16,
    pub namespaces: u32,
}

impl ControllerIdentity {
    pub fn parse(page: &[u8; IDENTIFY_SIZE]) -> ControllerIdentity {
        type H = IdentifyControllerHead;
        let mut serial = [0; 20];
        serial.copy_from_slice(&page[offset_of!(H, sn)..offset_of!(H, sn) + 20]);
        let mut model = [0; 40];
        model.copy_from_slice(&page[offset_of!(H, mn)..offset_of!(H, mn) + 40]);
        ControllerIdentity {
            vid: u16_at(page, offset_of!(H, vid)),
            ssvid: u16_at(page, offset_of!(H, ssvid)),
            serial,
            model,
            cntlid: u16_at(page, offset_of!(H, cntlid)),
            version: u32_at(page, offset_of!(H, ver)),
            oacs: u16_at(page, IDENTIFY_OACS),
            namespaces: u32_at(page, IDENTIFY_NN),
        }
    }

    pub const fn supports_virtualization_management(&self) -> bool {
        self.oacs & OACS_VIRTUALIZATION_MANAGEMENT != 0
    }

    pub const fn supports_namespace_management(&self) -> bool {
        self.oacs & OACS_NAMESPACE_MANAGEMENT != 0
    }

    /// The model number without its space padding, if it is ASCII.
    pub fn model_str(&self) -> &str {
        core::str::from_utf8(&self.model)
            .unwrap_or("?")
            .trim_end_matches([' ', '\0'])
    }
}
