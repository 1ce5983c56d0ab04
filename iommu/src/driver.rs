//! Bring-up and run-time operations of one IOMMU, as pure logic over its register block
//! ([`Mmio`]) and physical memory ([`PhysAccess`]). The kernel allocates the device table, the
//! rings and a semaphore word, maps the registers, and calls in here.
//!
//! Bring-up ([`Iommu::init`], following spec §2 "Architectural Overview" and the register
//! descriptions of §3.4; the same order as Linux's `early_enable_iommu`):
//! 1. Read the Extended Feature Register; refuse features the configuration asks for but the
//!    IOMMU lacks (GASup for 128-bit IRTEs, XTSup for x2APIC). The guest virtual APIC mode is
//!    taken when offered (GASup, GAMSup = 001b) and the configuration gives a GA log.
//! 2. Disable: Control = 0, then wait (bounded) for Status.CmdBufRun and EventLogRun to clear;
//!    clear the write-1-to-clear Status bits.
//! 3. Write every device table entry as [`Dte::blocked`] (an all-zero entry would let DMA
//!    through), then the Device Table Base Address Register.
//! 4. Program the command buffer and event log base registers and zero their pointers; clear
//!    the exclusion range.
//!    With GA: program the GA log base (GALogLen 1000b, 512 entries), its shadow tail address
//!    and zero its head/tail.
//! 5. Write the configuration bits (Coherent, InvTimeOut, IVHD-derived bits, GAEn, GAMEn = 001b
//!    with GA, XTEn), then the same with CmdBufEn, EventLogEn, IommuEn (and GALogEn, GAIntEn).
//! 6. Invalidate everything the IOMMU may have cached (INVALIDATE_IOMMU_ALL, or per device and
//!    per domain without IASup) and wait for completion.
//!
//! Interrupt remapping has no global switch: each DTE says IV/IntCtl. Every operation that
//! changes what the IOMMU may have cached ends with a COMPLETION_WAIT and returns only when the
//! IOMMU has executed it (or with an error after the configured spin budget).

use crate::cmd_ring::CommandRing;
use crate::command::{Command, CommandError, PageRange};
use crate::dte::{DomainId, Dte};
use crate::event::{Event, EventLog, EventLogError};
use crate::ga::{self, GaLog, GaLogEntry};
use crate::irte::IrteFormat;
use crate::ivrs::DeviceId;
use crate::mem::{Hpa, Iova, PhysAccess};
use crate::regs::{
    self, Control, ExtendedFeatures, InvTimeout, Mmio, Status, DTES_PER_PAGE, DTE_BYTES,
    MAX_DEVICE_TABLE_PAGES,
};

/// What the kernel allocated and chose for one IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Device table: 4 KiB aligned, physically contiguous, `device_table_pages` × 4 KiB.
    pub device_table: Hpa,
    /// 1..=512 pages; 512 (2 MiB) covers every requester id. See [`device_table_pages_for`].
    pub device_table_pages: u64,
    /// Command buffer: 4 KiB aligned, `16 << command_log2` bytes.
    pub command_buffer: Hpa,
    /// log2 of the command count, 8..=15 (8: 256 commands, 4 KiB).
    pub command_log2: u8,
    /// Event log: 4 KiB aligned, `16 << event_log2` bytes.
    pub event_log: Hpa,
    /// log2 of the event count, 8..=15.
    pub event_log2: u8,
    /// An 8-byte word for COMPLETION_WAIT stores (read with volatile loads by the kernel).
    pub semaphore: Hpa,
    /// Interrupt remapping table entry format: [`IrteFormat::Bits128`] sets Control.GAEn.
    pub irte_format: IrteFormat,
    /// Set Control.XTEn: 32-bit x2APIC destinations in 128-bit IRTEs.
    pub x2apic: bool,
    /// Extra Control bits, e.g. [`Control::from_ivhd_flags`]. Enable bits are ignored here.
    pub control: Control,
    /// How many times to poll a completion store (or a Status bit) before giving up.
    pub spins: u32,
    /// Memory for the GA log: with it, an IOMMU whose EFR offers the guest virtual APIC mode
    /// (GASup, GAMSup = 001b; 128-bit IRTEs) is put in that mode (GAEn, GAMEn = 001b, GALogEn,
    /// GAIntEn). Without it, or without the features, GuestMode IRTEs are not available.
    pub ga_log: Option<GaLogConfig>,
}

/// Memory for the GA log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaLogConfig {
    /// 4 KiB, 4 KiB aligned: 512 entries (GALogLen 1000b).
    pub base: Hpa,
    /// An 8-byte word the IOMMU mirrors its tail pointer into.
    pub shadow_tail: Hpa,
}

/// The result of [`Iommu::poll_ga_log`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GaPoll {
    /// Entries handed to the callback.
    pub entries: usize,
    /// The log had overflowed (entries were lost); logging has been restarted.
    pub overflowed: bool,
}

/// Device table pages needed to cover requester ids `0..=max`.
pub const fn device_table_pages_for(max: DeviceId) -> u64 {
    max.0 as u64 / DTES_PER_PAGE + 1
}

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// A configuration value is out of range (named).
    BadConfig(&'static str),
    /// The IOMMU lacks a feature the configuration needs (the EFR bit's name).
    Unsupported(&'static str),
    /// Command processing or event logging did not stop when disabled.
    StillRunning(Status),
    /// The requester id is beyond the device table.
    DeviceOutOfRange(DeviceId),
    /// Submitting or waiting failed.
    Command(CommandError),
}

impl From<CommandError> for DriverError {
    fn from(e: CommandError) -> Self {
        Self::Command(e)
    }
}

impl From<EventLogError> for DriverError {
    fn from(_: EventLogError) -> Self {
        Self::BadConfig("event log")
    }
}

/// The result of [`Iommu::poll_events`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventPoll {
    /// Entries handed to the callback.
    pub events: usize,
    /// The log had overflowed (events were lost); logging has been restarted.
    pub overflowed: bool,
}

/// One initialised IOMMU.
pub struct Iommu<R> {
    regs: R,
    features: ExtendedFeatures,
    control: Control,
    device_table: Hpa,
    device_table_pages: u64,
    commands: CommandRing,
    events: EventLog,
    semaphore: Hpa,
    spins: u32,
    irte_format: IrteFormat,
    ga_log: Option<GaLog>,
}

impl<R: Mmio> Iommu<R> {
    /// Bring the IOMMU up (see the module docs). On return translation and command processing
    /// are enabled, every device is blocked, and nothing stale is cached.
    pub fn init<M: PhysAccess>(
        mut regs: R,
        mem: &mut M,
        config: &Config,
    ) -> Result<Self, DriverError> {
        let features = ExtendedFeatures::from_bits_retain(regs.read64(regs::EXTENDED_FEATURES));
        if config.device_table_pages == 0 || config.device_table_pages > MAX_DEVICE_TABLE_PAGES {
            return Err(DriverError::BadConfig("device table pages"));
        }
        if !config.device_table.is_aligned(4096) || config.device_table.0 >= crate::mem::MAX_HPA {
            return Err(DriverError::BadConfig("device table address"));
        }
        let commands = CommandRing::new(config.command_buffer, config.command_log2)
            .map_err(|_| DriverError::BadConfig("command buffer"))?;
        let events = EventLog::new(config.event_log, config.event_log2)?;
        if !config.semaphore.is_aligned(8) {
            return Err(DriverError::BadConfig("semaphore"));
        }
        if config.irte_format == IrteFormat::Bits128 && !features.contains(ExtendedFeatures::GA_SUP)
        {
            return Err(DriverError::Unsupported("GASup"));
        }
        if config.x2apic {
            if !features.contains(ExtendedFeatures::XT_SUP) {
                return Err(DriverError::Unsupported("XTSup"));
            }
            if config.irte_format != IrteFormat::Bits128 {
                return Err(DriverError::BadConfig("x2APIC needs 128-bit IRTEs"));
            }
        }

        let ga_log = match config.ga_log {
            Some(c)
                if ga::vapic_supported(features) && config.irte_format == IrteFormat::Bits128 =>
            {
                Some(
                    GaLog::new(c.base, ga::GA_LOG_LEN_512, c.shadow_tail)
                        .map_err(|_| DriverError::BadConfig("GA log"))?,
                )
            }
            _ => None,
        };

        // 2. Disable and wait for the command buffer and event log to stop.
        regs.write64(regs::CONTROL, 0);
        let running = Status::CMD_BUF_RUN | Status::EVENT_LOG_RUN;
        let mut stopped = false;
        for _ in 0..config.spins.max(1) {
            if !Status::from_bits_retain(regs.read64(regs::STATUS)).intersects(running) {
                stopped = true;
                break;
            }
            core::hint::spin_loop();
        }
        if !stopped {
            return Err(DriverError::StillRunning(Status::from_bits_retain(
                regs.read64(regs::STATUS),
            )));
        }

        // Stale interrupt/overflow bits: QEMU ignores an Event Log Base write while EventLogInt
        // is set.
        regs.write64(regs::STATUS, Status::RW1C.bits());

        let mut iommu = Self {
            regs,
            features,
            control: Control::empty(),
            device_table: config.device_table,
            device_table_pages: config.device_table_pages,
            commands,
            events,
            semaphore: config.semaphore,
            spins: config.spins,
            irte_format: config.irte_format,
            ga_log,
        };

        // 3. Block every device, then point the IOMMU at the table.
        let blocked = Dte::blocked();
        for id in 0..iommu.device_table_entries() {
            iommu.write_dte_raw(mem, id, &blocked);
        }
        iommu.regs.write64(
            regs::DEVICE_TABLE_BASE,
            regs::device_table_base(config.device_table, config.device_table_pages),
        );

        // 4. Rings and exclusion range.
        iommu.commands.program(&mut iommu.regs);
        iommu.events.program(&mut iommu.regs, mem);
        iommu.regs.write64(regs::EXCLUSION_BASE, 0);
        iommu.regs.write64(regs::EXCLUSION_LIMIT, 0);
        if let Some(log) = iommu.ga_log.as_mut() {
            log.program(&mut iommu.regs, mem);
        }

        // 5. Configuration, then enables.
        let mut enables = Control::IOMMU_EN | Control::CMD_BUF_EN | Control::EVENT_LOG_EN;
        let mut control = (config.control
            - enables
            - Control::EVENT_INT_EN
            - Control::COM_WAIT_INT_EN
            - Control::GA_LOG_EN
            - Control::GA_INT_EN)
            .with_gam_en(0)
            | Control::COHERENT;
        control = control.with_inv_timeout(InvTimeout::S1);
        if config.irte_format == IrteFormat::Bits128 {
            control |= Control::GA_EN;
        }
        if config.x2apic {
            control |= Control::XT_EN;
        }
        if iommu.ga_log.is_some() {
            control = control.with_gam_en(ga::GAM_VAPIC);
            enables |= Control::GA_LOG_EN | Control::GA_INT_EN;
        }
        iommu.regs.write64(regs::CONTROL, control.bits());
        iommu.control = control | enables;
        iommu.regs.write64(regs::CONTROL, iommu.control.bits());

        // 6. Nothing stale may survive from firmware or an earlier kernel.
        iommu.invalidate_all(mem)?;
        Ok(iommu)
    }

    /// The Extended Feature Register.
    pub fn features(&self) -> ExtendedFeatures {
        self.features
    }

    /// The Control value written.
    pub fn control(&self) -> Control {
        self.control
    }

    /// Whether the guest virtual APIC mode is on: GuestMode IRTEs post into backing pages and
    /// not-running targets are logged in the GA log.
    pub fn ga_enabled(&self) -> bool {
        self.ga_log.is_some()
    }

    /// Hand every GA log entry to `f`. Status.GAInt is cleared first, so an entry written after
    /// the drain raises a new interrupt; after an overflow (GALOverflow; logging stopped) the
    /// bit is cleared and logging re-enabled.
    pub fn poll_ga_log<M: PhysAccess, F: FnMut(GaLogEntry)>(
        &mut self,
        mem: &mut M,
        f: &mut F,
    ) -> GaPoll {
        let Some(log) = self.ga_log.as_mut() else {
            return GaPoll::default();
        };
        let status = Status::from_bits_retain(self.regs.read64(regs::STATUS));
        if status.contains(Status::GA_INT) {
            self.regs.write64(regs::STATUS, Status::GA_INT.bits());
        }
        let entries = log.poll(&mut self.regs, mem, f);
        let overflowed = status.contains(Status::GA_LOG_OVERFLOW);
        if overflowed {
            let without = self.control - Control::GA_LOG_EN;
            self.regs.write64(regs::CONTROL, without.bits());
            self.regs
                .write64(regs::STATUS, Status::GA_LOG_OVERFLOW.bits());
            self.regs.write64(regs::CONTROL, self.control.bits());
        }
        GaPoll {
            entries,
            overflowed,
        }
    }

    /// The IRTE format DTEs' interrupt tables must use.
    pub fn irte_format(&self) -> IrteFormat {
        self.irte_format
    }

    /// Requester ids covered by the device table.
    pub fn device_table_entries(&self) -> u32 {
        (self.device_table_pages * DTES_PER_PAGE) as u32
    }

    /// The Status register.
    pub fn status(&self) -> Status {
        Status::from_bits_retain(self.regs.read64(regs::STATUS))
    }

    /// The register block.
    pub fn regs(&self) -> &R {
        &self.regs
    }

    /// The register block, mutably.
    pub fn regs_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// The DTE of `device` as it is in memory.
    pub fn dte<M: PhysAccess>(&self, mem: &M, device: DeviceId) -> Result<Dte, DriverError> {
        let at = self.dte_address(device)?;
        Ok(Dte(core::array::from_fn(|i| {
            mem.read_u64(Hpa(at.0 + 8 * i as u64))
        })))
    }

    /// Install `dte` for `device`, then INVALIDATE_DEVTAB_ENTRY, INVALIDATE_INTERRUPT_TABLE and
    /// COMPLETION_WAIT. If quadword 0 (V, TV, Mode, root, IR/IW) changes, it is first set to
    /// "no translation, no access" so the IOMMU never sees the old page table combined with the
    /// new domain or interrupt table; quadwords 3, 2, 1 follow, then the new quadword 0.
    /// Translations cached under the old DomainID are not touched: invalidate the old domain
    /// when its page table changes.
    pub fn set_dte<M: PhysAccess>(
        &mut self,
        mem: &mut M,
        device: DeviceId,
        dte: &Dte,
    ) -> Result<(), DriverError> {
        let at = self.dte_address(device)?;
        let old_q0 = mem.read_u64(at);
        let blocked_q0 = Dte::blocked().0[0];
        if old_q0 != dte.0[0] && old_q0 != blocked_q0 {
            mem.write_u64(at, blocked_q0);
        }
        for i in (1..4).rev() {
            mem.write_u64(Hpa(at.0 + 8 * i), dte.0[i as usize]);
        }
        mem.write_u64(at, dte.0[0]);
        self.submit(mem, &Command::invalidate_devtab_entry(device))?;
        self.submit(mem, &Command::invalidate_interrupt_table(device))?;
        self.sync(mem)
    }

    /// INVALIDATE_INTERRUPT_TABLE for `device` + COMPLETION_WAIT: after changing its IRTEs.
    pub fn invalidate_interrupt_table<M: PhysAccess>(
        &mut self,
        mem: &mut M,
        device: DeviceId,
    ) -> Result<(), DriverError> {
        self.submit(mem, &Command::invalidate_interrupt_table(device))?;
        self.sync(mem)
    }

    /// INVALIDATE_IOMMU_PAGES (all pages, PDE too) for `domain` + COMPLETION_WAIT.
    pub fn invalidate_domain_pages<M: PhysAccess>(
        &mut self,
        mem: &mut M,
        domain: DomainId,
    ) -> Result<(), DriverError> {
        self.submit(
            mem,
            &Command::invalidate_iommu_pages(domain, PageRange::All, true),
        )?;
        self.sync(mem)
    }

    /// INVALIDATE_IOMMU_PAGES for the smallest encodable block covering `[iova, iova + len)`
    /// of `domain`, PDE too, + COMPLETION_WAIT.
    pub fn invalidate_domain_range<M: PhysAccess>(
        &mut self,
        mem: &mut M,
        domain: DomainId,
        iova: Iova,
        len: u64,
    ) -> Result<(), DriverError> {
        let range = PageRange::covering(iova, len);
        self.submit(mem, &Command::invalidate_iommu_pages(domain, range, true))?;
        self.sync(mem)
    }

    /// Invalidate every cached DTE, IRTE and translation + COMPLETION_WAIT: one
    /// INVALIDATE_IOMMU_ALL with IASup, else INVALIDATE_DEVTAB_ENTRY and
    /// INVALIDATE_INTERRUPT_TABLE per requester id and INVALIDATE_IOMMU_PAGES per domain id.
    pub fn invalidate_all<M: PhysAccess>(&mut self, mem: &mut M) -> Result<(), DriverError> {
        if self.features.contains(ExtendedFeatures::IA_SUP) {
            self.submit(mem, &Command::invalidate_iommu_all())?;
        } else {
            for id in 0..self.device_table_entries() {
                let device = DeviceId(id as u16);
                self.submit(mem, &Command::invalidate_devtab_entry(device))?;
                self.submit(mem, &Command::invalidate_interrupt_table(device))?;
            }
            for domain in 0..=u16::MAX {
                self.submit(
                    mem,
                    &Command::invalidate_iommu_pages(DomainId(domain), PageRange::All, true),
                )?;
            }
        }
        self.sync(mem)
    }

    /// Queue `cmd`; when the ring is full, first wait for the IOMMU to drain it.
    pub fn submit<M: PhysAccess>(&mut self, mem: &mut M, cmd: &Command) -> Result<(), DriverError> {
        match self.commands.submit(&mut self.regs, mem, cmd) {
            Err(CommandError::RingFull) => {
                self.sync(mem)?;
                Ok(self.commands.submit(&mut self.regs, mem, cmd)?)
            }
            r => Ok(r?),
        }
    }

    /// COMPLETION_WAIT: return once every command submitted so far has completed.
    pub fn sync<M: PhysAccess>(&mut self, mem: &mut M) -> Result<(), DriverError> {
        Ok(self
            .commands
            .wait_for_completion(&mut self.regs, mem, self.semaphore, self.spins)?)
    }

    /// Hand every logged event to `f`. After an overflow (EventOverflow; logging stopped) the
    /// log is drained, the bit cleared and logging re-enabled (as Linux does).
    pub fn poll_events<M: PhysAccess, F: FnMut(Event)>(
        &mut self,
        mem: &mut M,
        f: &mut F,
    ) -> EventPoll {
        let status = self.status();
        let events = self.events.poll(&mut self.regs, mem, 1000, f);
        let overflowed = status.contains(Status::EVENT_OVERFLOW);
        if overflowed {
            let without = self.control - Control::EVENT_LOG_EN;
            self.regs.write64(regs::CONTROL, without.bits());
            self.regs
                .write64(regs::STATUS, Status::EVENT_OVERFLOW.bits());
            self.regs.write64(regs::CONTROL, self.control.bits());
        }
        if status.contains(Status::EVENT_LOG_INT) {
            self.regs
                .write64(regs::STATUS, Status::EVENT_LOG_INT.bits());
        }
        EventPoll { events, overflowed }
    }

    /// Turn translation, command processing and logging off (Control = 0). Devices then DMA
    /// untranslated: only for shutdown.
    pub fn disable(&mut self) {
        self.control = Control::empty();
        self.regs.write64(regs::CONTROL, 0);
    }

    fn dte_address(&self, device: DeviceId) -> Result<Hpa, DriverError> {
        if device.0 as u32 >= self.device_table_entries() {
            return Err(DriverError::DeviceOutOfRange(device));
        }
        Ok(Hpa(self.device_table.0 + device.0 as u64 * DTE_BYTES))
    }

    fn write_dte_raw<M: PhysAccess>(&self, mem: &mut M, id: u32, dte: &Dte) {
        let at = self.device_table.0 + id as u64 * DTE_BYTES;
        for i in (0..4).rev() {
            mem.write_u64(Hpa(at + 8 * i), dte.0[i as usize]);
        }
    }
}

#[cfg(test)]
mod tests;
