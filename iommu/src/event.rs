//! The event log (spec §2.5 "Event Logging"): 16-byte entries the IOMMU appends when it
//! faults a DMA or interrupt, finds a bad table entry, or fails a command.
//!
//! Common layout: quadword 0 bits 15:0 DeviceID, 19:16 PASID\[19:16\], 47:32 DomainID (or
//! PASID\[15:0\]), 56:48 flags ([`EventFlags`]), 59:57 type, 63:60 EventCode; quadword 1 the
//! address (IOVA, table address, or command address). §2.5 has one subsection per code:
//!
//! | code | event | address |
//! |---|---|---|
//! | 1 | ILLEGAL_DEV_TABLE_ENTRY | the request's address |
//! | 2 | IO_PAGE_FAULT | the IOVA (for I = 1, the interrupt request's address) |
//! | 3 | DEV_TAB_HARDWARE_ERROR | the DTE's address |
//! | 4 | PAGE_TAB_HARDWARE_ERROR | the page-table entry's address |
//! | 5 | ILLEGAL_COMMAND_ERROR | the command's address |
//! | 6 | COMMAND_HARDWARE_ERROR | the address of the failed access |
//! | 7 | IOTLB_INV_TIMEOUT | the INVALIDATE_IOTLB_PAGES command's address |
//! | 8 | INVALID_DEVICE_REQUEST | the request's address |
//!
//! The IOMMU writes at the tail and moves the Tail Pointer register; software reads from the
//! head, then writes the Head Pointer register. QEMU 10's `amd-iommu` never writes this log.

use core::fmt;

use bitflags::bitflags;

use crate::dte::DomainId;
use crate::ivrs::DeviceId;
use crate::mem::{field, Hpa, PhysAccess};
use crate::regs::{self, Mmio};

/// ILLEGAL_DEV_TABLE_ENTRY.
pub const ILLEGAL_DEV_TABLE_ENTRY: u8 = 0x1;
/// IO_PAGE_FAULT.
pub const IO_PAGE_FAULT: u8 = 0x2;
/// DEV_TAB_HARDWARE_ERROR.
pub const DEV_TAB_HARDWARE_ERROR: u8 = 0x3;
/// PAGE_TAB_HARDWARE_ERROR.
pub const PAGE_TAB_HARDWARE_ERROR: u8 = 0x4;
/// ILLEGAL_COMMAND_ERROR.
pub const ILLEGAL_COMMAND_ERROR: u8 = 0x5;
/// COMMAND_HARDWARE_ERROR.
pub const COMMAND_HARDWARE_ERROR: u8 = 0x6;
/// IOTLB_INV_TIMEOUT.
pub const IOTLB_INV_TIMEOUT: u8 = 0x7;
/// INVALID_DEVICE_REQUEST.
pub const INVALID_DEVICE_REQUEST: u8 = 0x8;

/// Bytes per event.
pub const EVENT_BYTES: u32 = 16;

bitflags! {
    /// Event flags, quadword 0 bits 56:48 shifted down (not every event defines every flag).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct EventFlags: u16 {
        /// GN: the address is a guest (PASID) address.
        const GN = 1 << 0;
        /// NX: an execute request.
        const NX = 1 << 1;
        /// US: a user-mode request.
        const US = 1 << 2;
        /// I: an interrupt request (else a memory request).
        const INTERRUPT = 1 << 3;
        /// PR: the faulting page-table entry was present.
        const PRESENT = 1 << 4;
        /// RW: a write (else a read).
        const WRITE = 1 << 5;
        /// PE: permission denied.
        const PERMISSION = 1 << 6;
        /// RZ: a reserved bit was set (or an invalid level encoding).
        const RESERVED = 1 << 7;
        /// TN/TR: a translation request (else a transaction).
        const TRANSLATION = 1 << 8;
    }
}

/// The Type field of hardware-error events (58:57).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwError {
    /// 00b.
    Reserved,
    /// 01b: master abort.
    MasterAbort,
    /// 10b: target abort.
    TargetAbort,
    /// 11b: data error.
    DataError,
}

impl HwError {
    const fn from_bits(b: u64) -> Self {
        match b & 3 {
            0 => Self::Reserved,
            1 => Self::MasterAbort,
            2 => Self::TargetAbort,
            _ => Self::DataError,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Reserved => "reserved type",
            Self::MasterAbort => "master abort",
            Self::TargetAbort => "target abort",
            Self::DataError => "data error",
        }
    }
}

/// One decoded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A DTE with reserved bits set or invalid settings.
    IllegalDeviceTableEntry {
        /// Requester.
        device: DeviceId,
        /// Address of the request.
        address: u64,
        /// Flags.
        flags: EventFlags,
    },
    /// A DMA or interrupt without a valid, permitted translation.
    IoPageFault {
        /// Requester.
        device: DeviceId,
        /// DomainID (PASID\[15:0\] when GN).
        domain: DomainId,
        /// The IOVA.
        address: u64,
        /// Flags.
        flags: EventFlags,
    },
    /// Reading the device table failed.
    DeviceTableHardwareError {
        /// Requester.
        device: DeviceId,
        /// DTE address.
        address: u64,
        /// Flags.
        flags: EventFlags,
        /// Error type.
        kind: HwError,
    },
    /// Reading a page table failed.
    PageTableHardwareError {
        /// Requester.
        device: DeviceId,
        /// DomainID.
        domain: DomainId,
        /// Page-table entry address.
        address: u64,
        /// Flags.
        flags: EventFlags,
        /// Error type.
        kind: HwError,
    },
    /// An unknown opcode or reserved bits in a command; command processing stops.
    IllegalCommand {
        /// Address of the command.
        address: u64,
    },
    /// Fetching a command or storing a completion failed.
    CommandHardwareError {
        /// Address of the failed access.
        address: u64,
        /// Error type.
        kind: HwError,
    },
    /// A device IOTLB did not answer an invalidation.
    IotlbInvalidationTimeout {
        /// Device.
        device: DeviceId,
        /// Address of the command.
        address: u64,
    },
    /// A request the device was not allowed to make (e.g. port I/O, pretranslated).
    InvalidDeviceRequest {
        /// Requester.
        device: DeviceId,
        /// Address.
        address: u64,
        /// Flags.
        flags: EventFlags,
        /// Type, 59:57.
        kind: u8,
    },
    /// Another code (PPR, counters, RMP, ...), or 0 if the entry was never written.
    Other {
        /// EventCode.
        code: u8,
        /// The entry.
        raw: [u64; 2],
    },
}

impl Event {
    /// Decode an entry.
    pub const fn decode(raw: [u64; 2]) -> Self {
        let q0 = raw[0];
        let device = DeviceId(q0 as u16);
        let domain = DomainId(field(q0, 32, 16) as u16);
        let flags = EventFlags::from_bits_truncate(field(q0, 48, 9) as u16);
        let kind = HwError::from_bits(field(q0, 57, 2));
        let address = raw[1];
        match event_code(raw) {
            ILLEGAL_DEV_TABLE_ENTRY => Self::IllegalDeviceTableEntry {
                device,
                address,
                flags,
            },
            IO_PAGE_FAULT => Self::IoPageFault {
                device,
                domain,
                address,
                flags,
            },
            DEV_TAB_HARDWARE_ERROR => Self::DeviceTableHardwareError {
                device,
                address,
                flags,
                kind,
            },
            PAGE_TAB_HARDWARE_ERROR => Self::PageTableHardwareError {
                device,
                domain,
                address: address & !0x7,
                flags,
                kind,
            },
            ILLEGAL_COMMAND_ERROR => Self::IllegalCommand { address },
            COMMAND_HARDWARE_ERROR => Self::CommandHardwareError { address, kind },
            IOTLB_INV_TIMEOUT => Self::IotlbInvalidationTimeout {
                device,
                address: address & !0xF,
            },
            INVALID_DEVICE_REQUEST => Self::InvalidDeviceRequest {
                device,
                address,
                flags,
                kind: field(q0, 57, 3) as u8,
            },
            code => Self::Other { code, raw },
        }
    }
}

/// EventCode, quadword 0 bits 63:60.
pub const fn event_code(raw: [u64; 2]) -> u8 {
    (raw[0] >> 60) as u8
}

fn access(flags: EventFlags) -> &'static str {
    if flags.contains(EventFlags::INTERRUPT) {
        "interrupt"
    } else if flags.contains(EventFlags::WRITE) {
        "write"
    } else {
        "read"
    }
}

fn fault_details(f: &mut fmt::Formatter<'_>, flags: EventFlags) -> fmt::Result {
    if !flags.contains(EventFlags::PRESENT) {
        f.write_str(", not present")?;
    }
    if flags.contains(EventFlags::PERMISSION) {
        f.write_str(", permission denied")?;
    }
    if flags.contains(EventFlags::RESERVED) {
        f.write_str(", reserved bit set")?;
    }
    if flags.contains(EventFlags::TRANSLATION) {
        f.write_str(", translation request")?;
    }
    Ok(())
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::IllegalDeviceTableEntry {
                device,
                address,
                flags,
            } => write!(
                f,
                "illegal device table entry: device {device} address {address:#x} {}",
                access(flags)
            ),
            Self::IoPageFault {
                device,
                domain,
                address,
                flags,
            } => {
                write!(
                    f,
                    "io page fault: device {device} domain {domain} address {address:#x} {}",
                    access(flags)
                )?;
                fault_details(f, flags)
            }
            Self::DeviceTableHardwareError {
                device,
                address,
                kind,
                ..
            } => write!(
                f,
                "device table hardware error ({}): device {device} entry at {address:#x}",
                kind.name()
            ),
            Self::PageTableHardwareError {
                device,
                domain,
                address,
                kind,
                ..
            } => write!(
                f,
                "page table hardware error ({}): device {device} domain {domain} entry at {address:#x}",
                kind.name()
            ),
            Self::IllegalCommand { address } => {
                write!(f, "illegal command at {address:#x} (command processing stopped)")
            }
            Self::CommandHardwareError { address, kind } => write!(
                f,
                "command hardware error ({}) at {address:#x}",
                kind.name()
            ),
            Self::IotlbInvalidationTimeout { device, address } => write!(
                f,
                "iotlb invalidation timeout: device {device} command at {address:#x}"
            ),
            Self::InvalidDeviceRequest {
                device,
                address,
                flags,
                kind,
            } => write!(
                f,
                "invalid device request (type {kind}): device {device} address {address:#x} {}",
                access(flags)
            ),
            Self::Other { code: 0, raw } => write!(
                f,
                "event log entry never written ({:#018x} {:#018x})",
                raw[0], raw[1]
            ),
            Self::Other { code, raw } => write!(
                f,
                "event {code:#x}: {:#018x} {:#018x}",
                raw[0], raw[1]
            ),
        }
    }
}

/// Why an event log could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventLogError {
    /// The memory is not 4 KiB aligned, or the size is not 2^8..=2^15 entries.
    BadRing,
}

/// The software side of one IOMMU's event log, over caller-provided ring memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLog {
    base: Hpa,
    log2_entries: u8,
    head: u32,
}

impl EventLog {
    /// A log of `2^log2_entries` events (8..=15) at `base` (4 KiB aligned, contiguous).
    pub const fn new(base: Hpa, log2_entries: u8) -> Result<Self, EventLogError> {
        if !regs::valid_ring(base, log2_entries) {
            return Err(EventLogError::BadRing);
        }
        Ok(Self {
            base,
            log2_entries,
            head: 0,
        })
    }

    /// Size in bytes.
    pub const fn bytes(&self) -> u32 {
        (1 << self.log2_entries) * EVENT_BYTES
    }

    /// The Event Log Base Address Register value.
    pub const fn base_register(&self) -> u64 {
        regs::ring_base(self.base, self.log2_entries)
    }

    /// Zero the log memory, program the base register and zero both pointers. Only while
    /// EventLogEn = 0.
    pub fn program<R: Mmio, M: PhysAccess>(&mut self, regs: &mut R, mem: &mut M) {
        let mut off = 0;
        while off < self.bytes() as u64 {
            mem.write_u64(Hpa(self.base.0 + off), 0);
            off += 8;
        }
        regs.write64(regs::EVENT_LOG_BASE, self.base_register());
        regs.write64(regs::EVENT_HEAD, 0);
        regs.write64(regs::EVENT_TAIL, 0);
        self.head = 0;
    }

    /// Hand every event between the head and the Tail Pointer register to `f`, zero the
    /// entries, and move the Head Pointer register past them. An entry whose code is still 0
    /// (the tail moved before the entry became visible) is re-read up to `retries` times, then
    /// reported as [`Event::Other`] with code 0. Returns the number of entries consumed.
    pub fn poll<R: Mmio, M: PhysAccess, F: FnMut(Event)>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        retries: u32,
        f: &mut F,
    ) -> usize {
        let tail =
            (regs.read64(regs::EVENT_TAIL) & regs::RING_POINTER_MASK) as u32 & (self.bytes() - 1);
        let mut count = 0;
        while self.head != tail {
            let slot = self.base.0 + self.head as u64;
            let mut raw = [mem.read_u64(Hpa(slot)), mem.read_u64(Hpa(slot + 8))];
            let mut tries = 0;
            while event_code(raw) == 0 && tries < retries {
                core::hint::spin_loop();
                raw = [mem.read_u64(Hpa(slot)), mem.read_u64(Hpa(slot + 8))];
                tries += 1;
            }
            mem.write_u64(Hpa(slot), 0);
            mem.write_u64(Hpa(slot + 8), 0);
            f(Event::decode(raw));
            self.head = (self.head + EVENT_BYTES) & (self.bytes() - 1);
            count += 1;
        }
        if count > 0 {
            regs.write64(regs::EVENT_HEAD, regs::ring_pointer(self.head));
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Registers only; the head never moves unless the test moves it.
    use crate::model::PlainRegs as Regs;
    use crate::testmem::FakeMem;

    /// IO_PAGE_FAULT from 00:03.1 (0x19), domain 2, write (RW = bit 53), not present.
    const PAGE_FAULT: [u64; 2] = [0x2020_0002_0000_0019, 0x1234_5000];

    #[test]
    fn decode_io_page_fault() {
        let e = Event::decode(PAGE_FAULT);
        assert_eq!(
            e,
            Event::IoPageFault {
                device: DeviceId::new(0, 3, 1),
                domain: DomainId(2),
                address: 0x1234_5000,
                flags: EventFlags::WRITE,
            }
        );
        assert_eq!(
            e.to_string(),
            "io page fault: device 00:03.1 domain 2 address 0x12345000 write, not present"
        );
        // Present + permission denied read (PR bit 52, PE bit 54).
        let p = Event::decode([0x2050_0007_0000_0100, 0xFEE0_0000]);
        assert_eq!(
            p.to_string(),
            "io page fault: device 01:00.0 domain 7 address 0xfee00000 read, permission denied"
        );
        // An interrupt (I, bit 51).
        let i = Event::decode([0x2018_0001_0000_0019, 0xFEE0_0000]);
        assert!(i.to_string().contains("0xfee00000 interrupt"));
    }

    #[test]
    fn decode_other_codes() {
        assert_eq!(
            Event::decode([0x1020_0000_0000_00A0, 0x40]).to_string(),
            "illegal device table entry: device 00:14.0 address 0x40 write"
        );
        // DEV_TAB_HARDWARE_ERROR, type 01b (master abort) at 58:57 = 0x0200...
        assert_eq!(
            Event::decode([0x3200_0000_0000_0008, 0x10_0100]).to_string(),
            "device table hardware error (master abort): device 00:01.0 entry at 0x100100"
        );
        // PAGE_TAB_HARDWARE_ERROR, type 10b (target abort), domain 3; low address bits dropped.
        assert_eq!(
            Event::decode([0x4400_0003_0000_0008, 0x7000_0007]).to_string(),
            "page table hardware error (target abort): device 00:01.0 domain 3 entry at 0x70000000"
        );
        assert_eq!(
            Event::decode([0x5000_0000_0000_0000, 0x10_0030]),
            Event::IllegalCommand { address: 0x10_0030 }
        );
        assert_eq!(
            Event::decode([0x6600_0000_0000_0000, 0x20_0000]).to_string(),
            "command hardware error (data error) at 0x200000"
        );
        assert_eq!(
            Event::decode([0x7000_0000_0000_0019, 0x10_004F]),
            Event::IotlbInvalidationTimeout {
                device: DeviceId(0x19),
                address: 0x10_0040
            }
        );
        assert_eq!(
            Event::decode([0x8400_0000_0000_0019, 0xCF8]).to_string(),
            "invalid device request (type 2): device 00:03.1 address 0xcf8 read"
        );
        assert_eq!(
            Event::decode([0xD000_0000_0000_0000, 1]),
            Event::Other {
                code: 0xD,
                raw: [0xD000_0000_0000_0000, 1]
            }
        );
        assert!(Event::decode([0, 0])
            .to_string()
            .starts_with("event log entry never written"));
    }

    #[test]
    fn log_reads_between_head_and_tail() {
        let mut mem = FakeMem::new(0);
        mem.back(0x30_0000, 0x1000);
        let mut regs = Regs::default();
        let mut log = EventLog::new(Hpa(0x30_0000), 8).unwrap();
        log.program(&mut regs, &mut mem);
        assert_eq!(regs.read64(regs::EVENT_LOG_BASE), 0x0800_0000_0030_0000);
        // Nothing logged.
        let mut seen = Vec::new();
        assert_eq!(log.poll(&mut regs, &mut mem, 0, &mut |e| seen.push(e)), 0);
        assert!(!regs.0.contains_key(&regs::EVENT_HEAD) || regs.read64(regs::EVENT_HEAD) == 0);
        // The IOMMU logs two events in the last slot and the first (wrapping).
        log.head = 0xFF0;
        mem.poke(0x30_0FF0, PAGE_FAULT[0]);
        mem.poke(0x30_0FF8, PAGE_FAULT[1]);
        mem.poke(0x30_0000, 0x5000_0000_0000_0000);
        mem.poke(0x30_0008, 0x10_0000);
        regs.write64(regs::EVENT_TAIL, 0x10);
        assert_eq!(log.poll(&mut regs, &mut mem, 0, &mut |e| seen.push(e)), 2);
        assert_eq!(seen[0], Event::decode(PAGE_FAULT));
        assert_eq!(seen[1], Event::IllegalCommand { address: 0x10_0000 });
        assert_eq!(regs.read64(regs::EVENT_HEAD), 0x10);
        // Entries are zeroed after reading.
        assert_eq!(mem.peek(0x30_0FF0), Some(0));
        assert_eq!(mem.peek(0x30_0000), Some(0));
    }

    #[test]
    fn rejects_bad_logs() {
        assert_eq!(
            EventLog::new(Hpa(0x30_0010), 8),
            Err(EventLogError::BadRing)
        );
        assert_eq!(
            EventLog::new(Hpa(0x30_0000), 16),
            Err(EventLogError::BadRing)
        );
    }
}
