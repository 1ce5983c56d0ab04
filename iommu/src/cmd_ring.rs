//! The command buffer ring (spec §2.4 "Commands"; registers in §3.4: Command Buffer Base
//! Address, Command Buffer Head/Tail Pointer).
//!
//! Software writes commands at the tail and moves the Tail Pointer register; the IOMMU fetches
//! from the head and moves the Head Pointer register. Both hold byte offsets (bits 18:4). The
//! ring is full when advancing the tail would make it equal the head, so it holds at most
//! `entries - 1` pending commands. Commands are executed in order, and a COMPLETION_WAIT
//! finishes only after every earlier command has: polling its store is how software learns
//! that an invalidation has taken effect.

use core::sync::atomic::{fence, Ordering};

use crate::command::{Command, CommandError, WaitFlags};
use crate::mem::{Hpa, PhysAccess};
use crate::regs::{self, Mmio, Status};

/// Bytes per command.
pub const COMMAND_BYTES: u32 = 16;

/// The software side of one IOMMU's command buffer, over caller-provided ring memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRing {
    base: Hpa,
    log2_entries: u8,
    /// Byte offset of the next slot to write.
    tail: u32,
    /// Last Head Pointer value read from the IOMMU.
    head: u32,
    /// Store data of the last COMPLETION_WAIT; never 0.
    sequence: u64,
}

impl CommandRing {
    /// A ring of `2^log2_entries` commands (8..=15: 4 KiB .. 512 KiB) at `base`
    /// (4 KiB aligned, physically contiguous).
    pub const fn new(base: Hpa, log2_entries: u8) -> Result<Self, CommandError> {
        if !regs::valid_ring(base, log2_entries) {
            return Err(CommandError::BadRing);
        }
        Ok(Self {
            base,
            log2_entries,
            tail: 0,
            head: 0,
            sequence: 0,
        })
    }

    /// Number of slots.
    pub const fn entries(&self) -> u32 {
        1 << self.log2_entries
    }

    /// Ring size in bytes.
    pub const fn bytes(&self) -> u32 {
        self.entries() * COMMAND_BYTES
    }

    /// The Command Buffer Base Address Register value for this ring.
    pub const fn base_register(&self) -> u64 {
        regs::ring_base(self.base, self.log2_entries)
    }

    /// The current tail byte offset.
    pub const fn tail(&self) -> u32 {
        self.tail
    }

    /// Program the base register and zero both pointers. Only while CmdBufEn = 0 (the
    /// registers must not change while Status.CmdBufRun is set).
    pub fn program<R: Mmio>(&mut self, regs: &mut R) {
        regs.write64(regs::COMMAND_BUFFER_BASE, self.base_register());
        regs.write64(regs::COMMAND_HEAD, 0);
        regs.write64(regs::COMMAND_TAIL, 0);
        self.tail = 0;
        self.head = 0;
    }

    /// Write `cmd` at the tail and hand it to the IOMMU. Refuses with
    /// [`CommandError::RingFull`] (writing nothing) when the IOMMU has not freed a slot.
    pub fn submit<R: Mmio, M: PhysAccess>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        cmd: &Command,
    ) -> Result<(), CommandError> {
        let next = (self.tail + COMMAND_BYTES) & (self.bytes() - 1);
        if next == self.head {
            self.head = (regs.read64(regs::COMMAND_HEAD) & regs::RING_POINTER_MASK) as u32;
            if next == self.head {
                return Err(CommandError::RingFull);
            }
        }
        let slot = self.base.0 + self.tail as u64;
        mem.write_u64(Hpa(slot), cmd.0[0]);
        mem.write_u64(Hpa(slot + 8), cmd.0[1]);
        // The entry must be in memory before the IOMMU sees the new tail.
        fence(Ordering::SeqCst);
        self.tail = next;
        regs.write64(regs::COMMAND_TAIL, regs::ring_pointer(next));
        Ok(())
    }

    /// Submit a COMPLETION_WAIT that stores a fresh sequence number at `semaphore` (an 8-byte
    /// aligned word the IOMMU can write and the CPU can read) and poll that word up to `spins`
    /// times. Returns when every command submitted before has completed, or
    /// [`CommandError::Timeout`] (with the Status register) — it never waits longer.
    pub fn wait_for_completion<R: Mmio, M: PhysAccess>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        semaphore: Hpa,
        spins: u32,
    ) -> Result<(), CommandError> {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let seq = self.sequence;
        let cmd = Command::completion_wait(WaitFlags::STORE, semaphore, seq)?;
        mem.write_u64(semaphore, 0);
        fence(Ordering::SeqCst);
        self.submit(regs, mem, &cmd)?;
        for _ in 0..spins {
            if mem.read_u64(semaphore) == seq {
                fence(Ordering::SeqCst);
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(CommandError::Timeout(Status::from_bits_retain(
            regs.read64(regs::STATUS),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivrs::DeviceId;
    /// Registers only; the head never moves unless the test moves it.
    use crate::model::PlainRegs as Regs;
    use crate::testmem::FakeMem;

    const RING: u64 = 0x10_0000;
    const SEM: Hpa = Hpa(0x20_0000);

    fn setup() -> (CommandRing, Regs, FakeMem) {
        let mut mem = FakeMem::new(0);
        mem.back(RING, 0x1000);
        mem.back(SEM.0, 0x1000);
        let mut regs = Regs::default();
        let mut ring = CommandRing::new(Hpa(RING), 8).unwrap();
        ring.program(&mut regs);
        (ring, regs, mem)
    }

    #[test]
    fn rejects_bad_rings() {
        assert_eq!(CommandRing::new(Hpa(0x1080), 8), Err(CommandError::BadRing));
        assert_eq!(CommandRing::new(Hpa(0x1000), 7), Err(CommandError::BadRing));
        assert_eq!(
            CommandRing::new(Hpa(0x1000), 16),
            Err(CommandError::BadRing)
        );
        let r = CommandRing::new(Hpa(0x1000), 15).unwrap();
        assert_eq!(r.bytes(), 512 * 1024);
        assert_eq!(r.base_register(), 0x0F00_0000_0000_1000);
    }

    #[test]
    fn submit_writes_entry_and_tail() {
        let (mut ring, mut regs, mut mem) = setup();
        assert_eq!(
            regs.read64(regs::COMMAND_BUFFER_BASE),
            0x0800_0000_0010_0000
        );
        let cmd = Command::invalidate_devtab_entry(DeviceId(0x19));
        ring.submit(&mut regs, &mut mem, &cmd).unwrap();
        assert_eq!(mem.peek(RING), Some(cmd.0[0]));
        assert_eq!(mem.peek(RING + 8), Some(0));
        assert_eq!(regs.read64(regs::COMMAND_TAIL), 0x10);
        assert_eq!(ring.tail(), 0x10);
    }

    #[test]
    fn refuses_when_full_and_wraps_after_head_moves() {
        let (mut ring, mut regs, mut mem) = setup();
        let cmd = Command::invalidate_iommu_all();
        for _ in 0..255 {
            ring.submit(&mut regs, &mut mem, &cmd).unwrap();
        }
        assert_eq!(ring.tail(), 255 * 16);
        // 256 slots, one always free: the 256th submit is refused and writes nothing.
        assert_eq!(
            ring.submit(&mut regs, &mut mem, &cmd),
            Err(CommandError::RingFull)
        );
        assert_eq!(regs.read64(regs::COMMAND_TAIL), 255 * 16);
        // The IOMMU consumed two commands.
        regs.write64(regs::COMMAND_HEAD, 0x20);
        ring.submit(&mut regs, &mut mem, &cmd).unwrap();
        assert_eq!(regs.read64(regs::COMMAND_TAIL), 0); // wrapped
        ring.submit(&mut regs, &mut mem, &cmd).unwrap();
        assert_eq!(regs.read64(regs::COMMAND_TAIL), 0x10);
        assert_eq!(
            ring.submit(&mut regs, &mut mem, &cmd),
            Err(CommandError::RingFull)
        );
    }

    #[test]
    fn wait_times_out_without_a_command_processor() {
        let (mut ring, mut regs, mut mem) = setup();
        regs.write64(regs::STATUS, Status::CMD_BUF_RUN.bits());
        assert_eq!(
            ring.wait_for_completion(&mut regs, &mut mem, SEM, 100),
            Err(CommandError::Timeout(Status::CMD_BUF_RUN))
        );
        // The COMPLETION_WAIT was queued with sequence 1 and the semaphore cleared.
        assert_eq!(mem.peek(RING), Some(0x1000_0000_0020_0001));
        assert_eq!(mem.peek(RING + 8), Some(1));
        assert_eq!(mem.peek(SEM.0), Some(0));
        // A later store of the right value completes the next wait immediately... but only for
        // the sequence number it carries.
        mem.poke(SEM.0, 1);
        assert!(ring
            .wait_for_completion(&mut regs, &mut mem, SEM, 10)
            .is_err());
    }

    #[test]
    fn wait_rejects_misaligned_semaphore() {
        let (mut ring, mut regs, mut mem) = setup();
        assert_eq!(
            ring.wait_for_completion(&mut regs, &mut mem, Hpa(SEM.0 + 4), 1),
            Err(CommandError::BadStoreAddress(Hpa(SEM.0 + 4)))
        );
        assert_eq!(ring.tail(), 0);
    }
}
