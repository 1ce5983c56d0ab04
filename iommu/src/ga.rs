//! Guest virtual APIC (GA) mode: posting device interrupts into a vCPU's vAPIC backing page,
//! and the GA log the IOMMU writes when the target vCPU is not running (spec §2.2.5.2 "Guest
//! Virtual APIC", §2.7 "Guest Virtual APIC (GA) Logging"; registers: Extended Feature GASup 7
//! and GAMSup 23:21, Control GAEn 17 / GAMEn 27:25 / GALogEn 28 / GAIntEn 29 (pp. 219–220), GA
//! Log Base 00E0h and Tail Address 00E8h (pp. 232–233), Status GALogRun 8 / GALOverflow 9 /
//! GAInt 10 (p. 255), GA Log Head 2040h / Tail 2048h (pp. 258–259)).
//!
//! - vAPIC mode needs EFR.GASup and EFR.GAMSup = 001b; the driver then sets GAEn and
//!   GAMEn = 001b (every IRTE is 128 bits; GuestMode = 0 entries stay ordinary remapping).
//! - A GuestMode = 1 IRTE ([`crate::Irte128::guest`]) sets its vector in the backing page's IRR;
//!   IsRun = 1 rings the AVIC doorbell of Destination, IsRun = 0 with GALogIntr = 1 writes a
//!   GA_GUEST_NR entry (8 bytes: GATag 31:0, DeviceID 47:32, OpCode 63:60 = 0001b) at the tail.
//! - [`GaTag`] is how this hypervisor names a vCPU in the 32-bit GATag; [`post`] is the IRTE
//!   a guest's MSI becomes; [`GaLog`] is the ring.

use crate::irte::Irte128;
use crate::ivrs::DeviceId;
use crate::mem::{field, place, Hpa, PhysAccess, MAX_HPA};
use crate::msi::{DeliveryMode, MsiMessage};
use crate::regs::{self, ExtendedFeatures, Mmio, ADDR_MASK};

/// GAMSup / GAMEn value of the guest virtual APIC mode ("001b: GA and vAPIC supported").
pub const GAM_VAPIC: u8 = 0b001;

/// Whether the IOMMU can post interrupts into vAPIC backing pages: EFR.GASup and
/// EFR.GAMSup = 001b.
pub const fn vapic_supported(efr: ExtendedFeatures) -> bool {
    efr.contains(ExtendedFeatures::GA_SUP) && efr.gam_sup() == GAM_VAPIC
}

/// Marks a GATag as one of ours (bit 31), so a stray or zero tag is not taken for vCPU 0.
const TAG_MARK: u32 = 1 << 31;

/// The vCPU a GA IRTE posts to, as carried in its 32-bit GATag and returned in GA log entries:
/// bit 31 set, guest index in bits 23:16, vCPU index in bits 15:0, bits 30:24 zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaTag {
    /// The guest's index in the configuration.
    pub guest: u8,
    /// The vCPU's index in its guest (= its guest APIC id).
    pub vcpu: u16,
}

impl GaTag {
    /// The 32-bit GATag.
    pub const fn encode(self) -> u32 {
        TAG_MARK | (self.guest as u32) << 16 | self.vcpu as u32
    }

    /// The vCPU a GATag names; `None` for a tag this encoding does not produce.
    pub const fn decode(tag: u32) -> Option<Self> {
        if tag & TAG_MARK == 0 || tag & 0x7F00_0000 != 0 {
            return None;
        }
        Some(Self {
            guest: (tag >> 16) as u8,
            vcpu: tag as u16,
        })
    }
}

/// Where a posted interrupt goes: the target vCPU as the hypervisor knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostTarget {
    /// The vCPU's vAPIC backing page.
    pub backing_page: Hpa,
    /// The host APIC id of the vCPU's core (the doorbell target).
    pub host_apic_id: u32,
    /// Whether the vCPU runs (IsRunning in its physical APIC-ID table entry).
    pub running: bool,
    /// Its GATag.
    pub tag: GaTag,
}

/// Why a guest's MSI cannot become a posted IRTE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostRefusal {
    /// The address is not in FEE0_0000h..=FEEF_FFFFh.
    NotInterruptAddress,
    /// Only fixed interrupts can be posted (the message asks for another delivery mode).
    NotFixed(DeliveryMode),
    /// Level-triggered: posting has no EOI notification.
    LevelTriggered,
    /// A logical destination (this hypervisor posts physical destinations only).
    LogicalDestination,
    /// Vectors 0–15 are not interrupts.
    ReservedVector(u8),
    /// The backing page is not 4 KiB aligned or not below 2^52.
    BadBackingPage,
}

impl core::fmt::Display for PostRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotInterruptAddress => f.write_str("address outside FEE0_0000h..FEEF_FFFFh"),
            Self::NotFixed(m) => write!(f, "delivery mode {m:?}: only fixed MSIs can be posted"),
            Self::LevelTriggered => f.write_str("level-triggered: only edge MSIs can be posted"),
            Self::LogicalDestination => {
                f.write_str("logical destination: only physical destinations are posted")
            }
            Self::ReservedVector(v) => write!(f, "vector {v} is below 16"),
            Self::BadBackingPage => f.write_str("backing page not postable"),
        }
    }
}

/// The GuestMode = 1 IRTE for a guest MSI `msg` aimed at `target` (the caller found the vCPU
/// from the message's destination): the guest's vector into the target's backing page, IsRun
/// as the vCPU's IsRunning, Destination = its core, GALogIntr = 1 (a not-running target makes a
/// GA log entry), GATag = the vCPU.
pub const fn post(msg: &MsiMessage, target: &PostTarget) -> Result<Irte128, PostRefusal> {
    if !msg.is_interrupt_address() {
        return Err(PostRefusal::NotInterruptAddress);
    }
    match msg.delivery_mode() {
        DeliveryMode::Fixed => {}
        m => return Err(PostRefusal::NotFixed(m)),
    }
    if msg.level_triggered() {
        return Err(PostRefusal::LevelTriggered);
    }
    if msg.dest_logical() {
        return Err(PostRefusal::LogicalDestination);
    }
    if msg.vector() < 16 {
        return Err(PostRefusal::ReservedVector(msg.vector()));
    }
    match Irte128::guest(
        msg.vector(),
        target.backing_page,
        target.host_apic_id,
        target.running,
        target.tag.encode(),
        true,
    ) {
        Some(e) => Ok(e),
        None => Err(PostRefusal::BadBackingPage),
    }
}

/// GA log entry OpCode of GA_GUEST_NR (Figure 79).
pub const GA_GUEST_NR: u8 = 0b0001;
/// Bytes per GA log entry.
pub const GA_LOG_ENTRY_BYTES: u32 = 8;

/// One GA log entry (§2.7.2 Figure 78, §2.7.3 Figure 79).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaLogEntry {
    /// GA_GUEST_NR: an interrupt was posted for a vCPU whose IRTE said not running.
    GuestNotRunning {
        /// The IRTE's GATag.
        tag: u32,
        /// The requester.
        device: DeviceId,
    },
    /// Another opcode (reserved today).
    Other {
        /// The raw entry.
        raw: u64,
    },
}

impl GaLogEntry {
    /// Decode: GATag/GAInformation 31:0, DeviceID 47:32, OpCode 63:60.
    pub const fn decode(raw: u64) -> Self {
        if field(raw, 60, 4) as u8 == GA_GUEST_NR {
            Self::GuestNotRunning {
                tag: raw as u32,
                device: DeviceId(field(raw, 32, 16) as u16),
            }
        } else {
            Self::Other { raw }
        }
    }
}

/// GALogLen of a 512-entry (4 KiB) log: 1000b, the minimum (p. 233).
pub const GA_LOG_LEN_512: u8 = 0b1000;

/// Why a GA log cannot be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaLogError {
    /// Base or shadow tail address unaligned or beyond 2^52, or GALogLen reserved.
    BadConfig,
}

/// The software side of the GA log, over caller-provided memory: `4096 << (len - 8)` bytes at
/// `base` (4 KiB aligned) and an 8-byte word the IOMMU mirrors its tail pointer into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaLog {
    base: Hpa,
    len: u8,
    shadow_tail: Hpa,
    head: u32,
}

impl GaLog {
    /// A log with GALogLen `len` (1000b..=1100b: 512..8192 entries).
    pub const fn new(base: Hpa, len: u8, shadow_tail: Hpa) -> Result<Self, GaLogError> {
        if !base.is_aligned(4096)
            || base.0 >= MAX_HPA
            || !shadow_tail.is_aligned(8)
            || shadow_tail.0 >= MAX_HPA
            || len < GA_LOG_LEN_512
            || len > 0b1100
        {
            return Err(GaLogError::BadConfig);
        }
        Ok(Self {
            base,
            len,
            shadow_tail,
            head: 0,
        })
    }

    /// Entries: 2^(GALogLen + 1).
    pub const fn entries(&self) -> u32 {
        1 << (self.len + 1)
    }

    /// Size in bytes.
    pub const fn bytes(&self) -> u32 {
        self.entries() * GA_LOG_ENTRY_BYTES
    }

    /// The GA Log Base Address Register value: GALogLen 59:56, base 51:12.
    pub const fn base_register(&self) -> u64 {
        (self.base.0 & ADDR_MASK) | place(self.len as u64, 56, 4)
    }

    /// Zero the log, program base, shadow tail address and both pointers. Only while GALogEn = 0.
    pub fn program<R: Mmio, M: PhysAccess>(&mut self, r: &mut R, mem: &mut M) {
        let mut off = 0;
        while off < self.bytes() as u64 {
            mem.write_u64(Hpa(self.base.0 + off), 0);
            off += 8;
        }
        mem.write_u64(self.shadow_tail, 0);
        r.write64(regs::GA_LOG_BASE, self.base_register());
        r.write64(
            regs::GA_LOG_TAIL_ADDRESS,
            self.shadow_tail.0 & 0x000F_FFFF_FFFF_FFF8,
        );
        r.write64(regs::GA_LOG_HEAD, 0);
        r.write64(regs::GA_LOG_TAIL, 0);
        self.head = 0;
    }

    /// Hand every entry between the head and the GA Log Tail Pointer register to `f`, zero it,
    /// and move the head register past them. Returns the number consumed.
    pub fn poll<R: Mmio, M: PhysAccess, F: FnMut(GaLogEntry)>(
        &mut self,
        r: &mut R,
        mem: &mut M,
        f: &mut F,
    ) -> usize {
        let tail =
            (r.read64(regs::GA_LOG_TAIL) & regs::GA_LOG_POINTER_MASK) as u32 & (self.bytes() - 1);
        let mut count = 0;
        while self.head != tail {
            let slot = Hpa(self.base.0 + self.head as u64);
            let raw = mem.read_u64(slot);
            mem.write_u64(slot, 0);
            f(GaLogEntry::decode(raw));
            self.head = (self.head + GA_LOG_ENTRY_BYTES) & (self.bytes() - 1);
            count += 1;
        }
        if count > 0 {
            r.write64(regs::GA_LOG_HEAD, self.head as u64);
        }
        count
    }
}

#[cfg(test)]
#[path = "ga_tests.rs"]
mod tests;
