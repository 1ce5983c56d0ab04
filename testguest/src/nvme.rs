//! `end=nvme-dma`: drives the NVMe VF the hypervisor passes through at 00:01.0 (QEMU's 1b36:0010
//! secondary controller, online, namespace 1 attached) and points its DMA inside and outside the
//! guest's RAM. The IOMMU maps exactly the guest's RAM, so transfers to or from `canary=`
//! addresses must not reach them: the command fails, or its data goes nowhere (the hypervisor
//! checks its canaries; this side reports what the device did).
//!
//! In order, each step printing one line (`testguest: nvme: ...`), a FAILED line ending the run:
//! 1. conf1 (0xCF8/0xCFC): vendor/device of 00:01.0, BAR0 (64-bit memory), Memory Space + Bus
//!    Master;
//! 2. controller enable with the admin queues in RAM ([`AdminQueue::enable`]), Identify Controller,
//!    one polled I/O queue pair, Identify Namespace 1 for the LBA size;
//! 3. a 4 KiB pattern written to LBA 0 from RAM, read back into RAM and compared;
//! 4. per canary: the block at LBA `8·(i+1)` (for 512-byte blocks) filled from RAM, a Write whose
//!    PRP1 is the canary (the device reads foreign memory), that block read back into RAM and
//!    classified, a Read of LBA 0 whose PRP1 is the canary (the device writes foreign memory),
//!    and LBA 0 read again into RAM to show the controller still works;
//! 5. `done`, then power-off.
//!
//! Every wait is bounded by the TSC ([`TSC_PER_MS`]) and by a spin count.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::fmt::{self, Write};

use ::nvme::identify::ControllerIdentity;
use ::nvme::registers::{self, Cap};
use ::nvme::{admin, AdminQueue, Cns, CompletionEntry, ControllerRegs, DmaMemory, QueueMemory};
use pci::bar::{BAR_IO, BAR_MEM_ADDRESS_MASK, BAR_MEM_TYPE_64, BAR_MEM_TYPE_MASK};
use pci::header::{self, Command};
use pci::{Bdf, ConfigAccess};
use testguest::nvme_io::{
    classify_block, fill_pattern, io_command, nvm_opcode, parse_namespace, pattern_mismatch, prps,
    BlockContents, IoError, IoQueue, NamespaceError, PAGE_SIZE,
};

use crate::guest::{power_off, Console};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// 00:01.0, where the hypervisor puts the VF.
pub(crate) const VF: Bdf = Bdf::from_routing_id(1 << 3);
/// QEMU's NVMe controller (PF and VF alike).
const VENDOR_ID: u16 = 0x1b36;
const DEVICE_ID: u16 = 0x0010;

/// Assumed TSC rate for the bounded waits: 2 GHz. Under QEMU TCG the TSC runs at the host's
/// rate (a few GHz), so a nominal millisecond is 0.5-1 ms; nothing here needs more precision.
const TSC_PER_MS: u64 = 2_000_000;
/// Upper bound on the polls of one nominal millisecond, should the TSC not advance.
const SPINS_PER_MS: u32 = 1 << 20;
/// Wait for each admin command.
const ADMIN_TIMEOUT_MS: u32 = 5000;
/// Wait for each I/O command.
const IO_TIMEOUT_MS: u32 = 3000;

const ADMIN_ENTRIES: u16 = 16;
/// I/O queue 1: 64 submission entries fill a page.
const IO_ENTRIES: u16 = 64;
const IO_QID: u16 = 1;
pub(crate) const NSID: u32 = 1;
/// Bytes per transfer.
pub(crate) const TRANSFER: u32 = PAGE_SIZE as u32;

/// Seeds of the data patterns ([`fill_pattern`]): "nvme" for LBA 0, "fill" (+ canary index) for
/// the blocks the foreign Writes target.
const SEED_LBA0: u32 = 0x6e76_6d65;
const SEED_FILL: u32 = 0x6669_6c6c;
/// What a read buffer holds before the device overwrites it.
const POISON: u8 = 0xee;

/// The pages the controller reads and writes, in this image's .bss (inside the guest's RAM; the
/// image is identity-mapped, so their addresses are guest-physical).
#[repr(C, align(4096))]
struct DmaPages(UnsafeCell<[[u8; PAGE_SIZE as usize]; PAGES]>);

/// Page indices in [`DMA`].
const ADMIN_SQ: usize = 0;
const ADMIN_CQ: usize = 1;
const IO_SQ: usize = 2;
const IO_CQ: usize = 3;
pub(crate) const IDENTIFY: usize = 4;
const WRITE_BUF: usize = 5;
pub(crate) const READ_BUF: usize = 6;
/// Submission and completion queue pages of the further I/O queue pairs ([`add_io_queue`]).
const EXTRA_IO: usize = 7;
pub(crate) const EXTRA_IO_QUEUES: u16 = 2;
const PAGES: usize = EXTRA_IO + 2 * EXTRA_IO_QUEUES as usize;

// SAFETY: only vCPU 0 runs the test guest's code (the others wait for a startup IPI it never
// sends), and the pages are only accessed through volatile reads and writes by `GuestRam`.
unsafe impl Sync for DmaPages {}

static DMA: DmaPages = DmaPages(UnsafeCell::new([[0; PAGE_SIZE as usize]; PAGES]));

fn dma_base() -> u64 {
    DMA.0.get() as u64
}

pub(crate) fn page(index: usize) -> u64 {
    dma_base() + index as u64 * PAGE_SIZE
}

/// The DMA pages as the device sees them: byte-wise volatile access, bounds-checked.
pub(crate) struct GuestRam;

impl GuestRam {
    fn check(phys: u64, len: usize) -> *mut u8 {
        let end = dma_base() + (PAGES as u64) * PAGE_SIZE;
        assert!(
            phys >= dma_base() && phys.saturating_add(len as u64) <= end,
            "DMA access outside the DMA pages"
        );
        phys as *mut u8
    }
}

impl DmaMemory for GuestRam {
    fn read(&mut self, phys: u64, buf: &mut [u8]) {
        let p = Self::check(phys, buf.len());
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: inside the DMA pages (checked above), which are identity-mapped RAM of this
            // guest; the device may write them concurrently, hence volatile.
            *b = unsafe { p.add(i).read_volatile() };
        }
    }

    fn write(&mut self, phys: u64, data: &[u8]) {
        let p = Self::check(phys, data.len());
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in `read`.
            unsafe { p.add(i).write_volatile(*b) };
        }
    }
}

/// The controller's registers in BAR0 (identity-mapped; the hypervisor maps the GPA to the VF's
/// BAR through its nested page tables).
pub(crate) struct Bar0 {
    base: u64,
}

impl ControllerRegs for Bar0 {
    fn read32(&mut self, offset: u32) -> u32 {
        let p = (self.base + u64::from(offset)) as *const u32;
        // SAFETY: an MMIO register of the VF inside its BAR0 (the offsets the NVMe code uses are
        // the fixed registers and the first doorbells); the access has no effect on memory.
        unsafe { p.read_volatile() }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        let p = (self.base + u64::from(offset)) as *mut u32;
        // SAFETY: as in `read32`.
        unsafe { p.write_volatile(value) }
    }

    fn wait_1ms(&mut self) {
        let start = rdtsc();
        for _ in 0..SPINS_PER_MS {
            if rdtsc().wrapping_sub(start) >= TSC_PER_MS {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

pub(crate) fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// PCI configuration mechanism #1 (PCI Local Bus Specification 3.0 §3.2.2.3.2), bus 0..255,
/// the 256-byte header only.
pub(crate) struct Conf1;

impl Conf1 {
    fn select(bdf: Bdf, offset: u16) {
        let address = 1 << 31 | u32::from(bdf.routing_id()) << 8 | u32::from(offset & 0xfc);
        // SAFETY: CONFIG_ADDRESS takes 32-bit writes; no memory is touched.
        unsafe {
            asm!("out dx, eax", in("dx") CONFIG_ADDRESS, in("eax") address, options(nomem, nostack))
        };
    }
}

impl ConfigAccess for Conf1 {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        if offset >= 256 {
            return u32::MAX;
        }
        Self::select(bdf, offset);
        let v: u32;
        // SAFETY: a dword read of CONFIG_DATA; no memory is touched.
        unsafe { asm!("in eax, dx", in("dx") CONFIG_DATA, out("eax") v, options(nomem, nostack)) };
        v
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if offset >= 256 {
            return;
        }
        Self::select(bdf, offset);
        // SAFETY: a dword write of CONFIG_DATA; no memory is touched.
        unsafe {
            asm!("out dx, eax", in("dx") CONFIG_DATA, in("eax") value, options(nomem, nostack))
        };
    }
}

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = writeln!(Console, $($arg)*); }};
}

/// Prints a FAILED line and ends the run.
macro_rules! fail {
    ($($arg:tt)*) => {{
        say!("testguest: nvme: FAILED: {}", format_args!($($arg)*));
        power_off()
    }};
}

/// How an I/O command ended, as printed after `-> status`.
struct Outcome(Result<CompletionEntry, IoError>);

impl Outcome {
    fn success(&self) -> bool {
        matches!(&self.0, Ok(c) if c.status().is_success())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Ok(c) if c.status().is_success() => f.write_str("success"),
            Ok(c) => write!(f, "{}", c.status()),
            Err(IoError::NoCompletion { waited_ms, .. }) => {
                write!(f, "none (no completion within {waited_ms} ms)")
            }
            Err(IoError::QueueFull) => f.write_str("none (submission queue full)"),
            Err(IoError::BadCompletion) => f.write_str("none (completion with a bad SQ head)"),
            Err(IoError::BadQueue) => f.write_str("none (not submitted)"),
        }
    }
}

/// The controller with its admin and I/O queues up.
pub(crate) struct Controller {
    pub(crate) regs: Bar0,
    pub(crate) mem: GuestRam,
    pub(crate) admin: AdminQueue,
    pub(crate) io: IoQueue,
    pub(crate) lba_size: u32,
}

impl Controller {
    /// Write (`nvm_opcode::WRITE`) or Read one page at `slba` with the data at `buffer`.
    fn transfer(&mut self, op: u8, slba: u64, buffer: u64) -> Outcome {
        let Some(cmd) = io_command(op, NSID, slba, self.lba_size, TRANSFER, buffer) else {
            // Callers check alignment first; PRPs exist for every dword-aligned page.
            return Outcome(Err(IoError::BadQueue));
        };
        Outcome(
            self.io
                .execute(&mut self.regs, &mut self.mem, cmd, IO_TIMEOUT_MS, |late| {
                    say!(
                        "testguest: nvme: late completion of command {}: {}",
                        late.cid,
                        Outcome(Ok(late))
                    )
                }),
        )
    }

    /// Reads `slba` into the poisoned read buffer and returns it.
    fn read_into_ram(&mut self, slba: u64, out: &mut [u8; PAGE_SIZE as usize]) -> Outcome {
        out.fill(POISON);
        self.mem.write(page(READ_BUF), out);
        let outcome = self.transfer(nvm_opcode::READ, slba, page(READ_BUF));
        self.mem.read(page(READ_BUF), out);
        outcome
    }

    /// Writes the pattern of `seed` from RAM to `slba`.
    fn write_from_ram(&mut self, slba: u64, seed: u32) -> Outcome {
        let mut data = [0u8; PAGE_SIZE as usize];
        fill_pattern(&mut data, seed);
        self.mem.write(page(WRITE_BUF), &data);
        self.transfer(nvm_opcode::WRITE, slba, page(WRITE_BUF))
    }

    /// Reads LBA 0 into RAM and checks it holds the LBA 0 pattern.
    fn check_lba0(&mut self, what: &str) -> bool {
        let mut data = [0u8; PAGE_SIZE as usize];
        let read = self.read_into_ram(0, &mut data);
        if !read.success() {
            say!("testguest: nvme: {what} FAILED: read -> status {read}");
            return false;
        }
        match pattern_mismatch(&data, SEED_LBA0) {
            None => {
                say!("testguest: nvme: {what} ok");
                true
            }
            Some(at) => {
                say!(
                    "testguest: nvme: {what} FAILED: data differs at byte {at} (read {:#04x})",
                    data[at]
                );
                false
            }
        }
    }
}

/// The `end=nvme-dma` run.
pub fn run(ram: u64, canaries: &[u64]) -> ! {
    let Some(bar0) = find_vf() else {
        say!("testguest: nvme: no vf at 00:01.0");
        power_off()
    };
    say!("testguest: nvme: vf at 00:01.0 bar0 {bar0:#x}");
    let mut ctrl = bring_up(ram, bar0, None);

    // 3. Control transfer inside RAM.
    let write = ctrl.write_from_ram(0, SEED_LBA0);
    if !write.success() {
        fail!("write+read inside ram: write -> status {write}");
    }
    if !ctrl.check_lba0("write+read inside ram") {
        power_off()
    }

    // 4. Transfers pointed outside RAM.
    let blocks_per_page = u64::from(TRANSFER / ctrl.lba_size);
    for (i, &canary) in canaries.iter().enumerate() {
        if canary < ram {
            say!("testguest: nvme: canary {canary:#x} lies inside ram (below {ram:#x}), skipped");
            continue;
        }
        if prps(canary, PAGE_SIZE).is_none() {
            say!("testguest: nvme: canary {canary:#x} cannot be a PRP entry (not dword aligned or wraps), skipped");
            continue;
        }
        let slba = (i as u64 + 1) * blocks_per_page;
        let seed = SEED_FILL + i as u32;
        let fill = ctrl.write_from_ram(slba, seed);
        if !fill.success() {
            fail!("fill lba {slba} from ram: write -> status {fill}");
        }

        let write = ctrl.transfer(nvm_opcode::WRITE, slba, canary);
        say!("testguest: nvme: write from {canary:#x} -> status {write}");
        let mut data = [0u8; PAGE_SIZE as usize];
        let back = ctrl.read_into_ram(slba, &mut data);
        if back.success() {
            match classify_block(&data, seed) {
                BlockContents::Unchanged => say!(
                    "testguest: nvme: lba {slba} after write from {canary:#x}: unchanged (the write did not land)"
                ),
                BlockContents::Zeros => say!(
                    "testguest: nvme: lba {slba} after write from {canary:#x}: zeros (no foreign data)"
                ),
                BlockContents::Other { first, nonzero } => say!(
                    "testguest: nvme: lba {slba} after write from {canary:#x}: other data, first qword {first:#018x}, {nonzero} nonzero bytes"
                ),
            }
        } else {
            say!("testguest: nvme: lba {slba} after write from {canary:#x}: read -> status {back}");
        }

        let read = ctrl.transfer(nvm_opcode::READ, 0, canary);
        say!("testguest: nvme: read into {canary:#x} -> status {read}");
        ctrl.check_lba0("re-read lba 0 into ram");
    }

    say!("testguest: nvme: done");
    power_off()
}

/// Step 1: the VF's BAR0, with Memory Space and Bus Master on; `None` if no function answers.
pub(crate) fn find_vf() -> Option<u64> {
    let mut cfg = Conf1;
    let bdf = VF;
    let id = cfg.read32(bdf, header::VENDOR_DEVICE);
    let (vendor, device) = (id as u16, (id >> 16) as u16);
    if vendor == 0xffff {
        return None;
    }
    if (vendor, device) != (VENDOR_ID, DEVICE_ID) {
        fail!("00:01.0 is {vendor:04x}:{device:04x}, not QEMU's NVMe VF {VENDOR_ID:04x}:{DEVICE_ID:04x}");
    }
    let low = cfg.read32(bdf, header::BAR0);
    let high = cfg.read32(bdf, header::BAR0 + 4);
    if low & BAR_IO != 0 || low & BAR_MEM_TYPE_MASK != BAR_MEM_TYPE_64 {
        fail!("bar0 of 00:01.0 is not a 64-bit memory bar (low dword {low:#x})");
    }
    let bar0 = u64::from(high) << 32 | u64::from(low & BAR_MEM_ADDRESS_MASK);
    if bar0 == 0 {
        fail!("bar0 of 00:01.0 is not assigned");
    }
    let wanted = Command::MEMORY_SPACE | Command::BUS_MASTER;
    let command = header::read_command(&cfg, bdf);
    header::write_command(&mut cfg, bdf, command | wanted);
    let now = header::read_command(&cfg, bdf);
    if !now.contains(wanted) {
        fail!(
            "command register of 00:01.0 reads {:#06x} after setting memory space and bus master",
            now.bits()
        );
    }
    Some(bar0)
}

/// Step 2: enable, Identify Controller, the I/O queue pair, Identify Namespace. `interrupt`: the
/// MSI-X entry the I/O completion queue signals (IEN = 1, IV = it); `None`: polled (IEN = 0).
pub(crate) fn bring_up(ram: u64, bar0: u64, interrupt: Option<u16>) -> Controller {
    let dma_end = page(PAGES);
    if dma_end > ram {
        fail!(
            "the DMA pages ({:#x}..{dma_end:#x}) are not inside ram",
            page(0)
        );
    }
    let mut regs = Bar0 { base: bar0 };
    let mut mem = GuestRam;
    let queues = QueueMemory {
        sq: page(ADMIN_SQ),
        cq: page(ADMIN_CQ),
        entries: ADMIN_ENTRIES,
    };
    let mut admin = match AdminQueue::enable(&mut regs, &mut mem, queues) {
        Ok(a) => a,
        Err(e) => fail!(
            "controller enable: {e} (CSTS {:#x})",
            regs.read32(registers::CSTS)
        ),
    };
    let cap: Cap = admin.cap();
    say!(
        "testguest: nvme: controller enabled (CAP {:#x}, VS {:#x})",
        cap.0,
        regs.read32(registers::VS)
    );

    let identify = admin::identify(Cns::Controller, 0, 0, page(IDENTIFY));
    if let Err(e) = admin.execute(&mut regs, &mut mem, identify, ADMIN_TIMEOUT_MS) {
        fail!("identify controller: {e}");
    }
    let mut data = [0u8; PAGE_SIZE as usize];
    mem.read(page(IDENTIFY), &mut data);
    let identity = ControllerIdentity::parse(&data);
    say!(
        "testguest: nvme: identify ok, model \"{}\"",
        identity.model_str().trim()
    );

    let entries = IO_ENTRIES.min(cap.max_queue_entries().min(4096) as u16);
    mem.write(page(IO_CQ), &[0; PAGE_SIZE as usize]);
    let mut create_cq = admin::create_io_cq(IO_QID, entries, page(IO_CQ));
    if let Some(iv) = interrupt {
        // CDW11: IV 31:16, IEN bit 1, PC bit 0 (NVMe Base 2.0, "Create I/O Completion Queue").
        create_cq.cdw11 |= u32::from(iv) << 16 | 1 << 1;
    }
    if let Err(e) = admin.execute(&mut regs, &mut mem, create_cq, ADMIN_TIMEOUT_MS) {
        fail!("create i/o completion queue {IO_QID}: {e}");
    }
    let create_sq = admin::create_io_sq(IO_QID, entries, page(IO_SQ), IO_QID);
    if let Err(e) = admin.execute(&mut regs, &mut mem, create_sq, ADMIN_TIMEOUT_MS) {
        fail!("create i/o submission queue {IO_QID}: {e}");
    }
    let io = match IoQueue::new(IO_QID, page(IO_SQ), page(IO_CQ), entries, cap.dstrd()) {
        Ok(q) => q,
        Err(e) => fail!("i/o queue {IO_QID}: {e:?}"),
    };
    match interrupt {
        Some(iv) => say!(
            "testguest: nvme: i/o queue {IO_QID} created ({entries} entries, interrupts on msi-x entry {iv})"
        ),
        None => say!("testguest: nvme: i/o queue {IO_QID} created ({entries} entries, polled)"),
    }

    let identify = admin::identify(Cns::Namespace, NSID, 0, page(IDENTIFY));
    if let Err(e) = admin.execute(&mut regs, &mut mem, identify, ADMIN_TIMEOUT_MS) {
        fail!("identify namespace {NSID}: {e}");
    }
    mem.read(page(IDENTIFY), &mut data);
    let format = match parse_namespace(&data) {
        Ok(f) => f,
        Err(NamespaceError::Inactive) => {
            fail!("namespace {NSID} is not active on this controller (NSZE 0)")
        }
        Err(NamespaceError::BadLbaFormat { index, lbads }) => {
            fail!("namespace {NSID}: LBA format {index} has LBADS {lbads}")
        }
    };
    say!(
        "testguest: nvme: namespace {NSID}: {} blocks of {} bytes",
        format.blocks,
        format.lba_size
    );
    if format.lba_size > TRANSFER || format.metadata != 0 {
        fail!(
            "namespace {NSID}: {}-byte blocks with {} metadata bytes are not supported",
            format.lba_size,
            format.metadata
        );
    }
    if format.blocks < u64::from(TRANSFER / format.lba_size) {
        fail!("namespace {NSID} is smaller than {TRANSFER} bytes");
    }
    Controller {
        regs,
        mem,
        admin,
        io,
        lba_size: format.lba_size,
    }
}

/// I/O queue pair `qid` (2 ..= 1 + [`EXTRA_IO_QUEUES`]) with its completion queue signalling
/// MSI-X entry `iv` (IEN = 1), on pages of its own, `entries` long; Reads only (the data goes to
/// `READ_BUF`).
pub(crate) fn add_io_queue(c: &mut Controller, qid: u16, iv: u16) -> Result<IoQueue, &'static str> {
    if !(2..=1 + EXTRA_IO_QUEUES).contains(&qid) {
        return Err("no pages for that queue");
    }
    let sq = page(EXTRA_IO + 2 * usize::from(qid - 2));
    let cq = sq + PAGE_SIZE;
    let entries = IO_ENTRIES.min(c.admin.cap().max_queue_entries().min(4096) as u16);
    c.mem.write(cq, &[0; PAGE_SIZE as usize]);
    let mut create_cq = admin::create_io_cq(qid, entries, cq);
    // CDW11: IV 31:16, IEN bit 1, PC bit 0 (NVMe Base 2.0, "Create I/O Completion Queue").
    create_cq.cdw11 |= u32::from(iv) << 16 | 1 << 1;
    c.admin
        .execute(&mut c.regs, &mut c.mem, create_cq, ADMIN_TIMEOUT_MS)
        .map_err(|_| "create i/o completion queue failed")?;
    let create_sq = admin::create_io_sq(qid, entries, sq, qid);
    c.admin
        .execute(&mut c.regs, &mut c.mem, create_sq, ADMIN_TIMEOUT_MS)
        .map_err(|_| "create i/o submission queue failed")?;
    IoQueue::new(qid, sq, cq, entries, c.admin.cap().dstrd()).map_err(|_| "i/o queue")
}
