//! A scripted NVMe controller for the host tests: registers and DMA memory share one state, so a
//! doorbell write can fetch submissions and post completions the way a device would.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::entry::{CompletionEntry, Status, SubmissionEntry};
use super::queue::{ControllerRegs, DmaMemory};
use super::registers;

/// Physical memory the fake serves: `[MEM_BASE, MEM_BASE + MEM_SIZE)`.
pub const MEM_BASE: u64 = 0x10_0000;
pub const MEM_SIZE: usize = 0x10_000;
pub const SQ: u64 = MEM_BASE;
pub const CQ: u64 = MEM_BASE + 0x1000;
pub const BUFFER: u64 = MEM_BASE + 0x2000;

pub struct State {
    pub cap: u64,
    pub cc: u32,
    pub csts: u32,
    pub aqa: u32,
    pub asq: u64,
    pub acq: u64,
    /// CSTS reads before RDY follows CC.EN (`u32::MAX`: never).
    pub ready_delay: u32,
    pending_reads: u32,
    pub fatal: bool,
    pub absent: bool,
    pub memory: Vec<u8>,
    /// Every register write, in order.
    pub writes: Vec<(u32, u32)>,
    pub waits: u32,
    /// Fetch no submissions while set; [`Fake::release`] processes them.
    pub hold: bool,
    sq_tail: u16,
    sq_head: u16,
    cq_tail: u16,
    cq_phase: bool,
    pub commands: Vec<SubmissionEntry>,
    /// Status for commands with this opcode (success otherwise).
    pub fail: HashMap<u8, Status>,
    /// What Identify writes for a CNS.
    pub identify: HashMap<u8, Vec<u8>>,
    /// Data buffers of commands that send data, captured at fetch time.
    pub data_in: Vec<Vec<u8>>,
}

#[derive(Clone)]
pub struct Fake(pub Rc<RefCell<State>>);

impl Fake {
    /// A controller like QEMU's: MQES 2047, TO 15 (7.5 s), DSTRD 0, CSS NVM + I/O command sets,
    /// MPSMIN 0; ready after 3 CSTS reads.
    pub fn new() -> Fake {
        let cap = 0x7FF | 0xF << 24 | (1u64 | 1 << 6) << 37;
        Fake(Rc::new(RefCell::new(State {
            cap,
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            ready_delay: 3,
            pending_reads: 0,
            fatal: false,
            absent: false,
            memory: vec![0xAA; MEM_SIZE],
            writes: Vec::new(),
            waits: 0,
            hold: false,
            sq_tail: 0,
            sq_head: 0,
            cq_tail: 0,
            cq_phase: true,
            commands: Vec::new(),
            fail: HashMap::new(),
            identify: HashMap::new(),
            data_in: Vec::new(),
        })))
    }

    pub fn state(&self) -> std::cell::RefMut<'_, State> {
        self.0.borrow_mut()
    }

    /// Processes held submissions.
    pub fn release(&self) {
        let mut s = self.0.borrow_mut();
        s.hold = false;
        s.process();
    }

    pub fn doorbell_writes(&self, offset: u32) -> Vec<u32> {
        let s = self.0.borrow();
        s.writes
            .iter()
            .filter(|(o, _)| *o == offset)
            .map(|(_, v)| *v)
            .collect()
    }
}

impl State {
    fn mem(&mut self, phys: u64, len: usize) -> &mut [u8] {
        let at = usize::try_from(phys - MEM_BASE).unwrap();
        &mut self.memory[at..at + len]
    }

    fn entries(&self) -> (u16, u16) {
        (
            (self.aqa & 0xFFF) as u16 + 1,
            (self.aqa >> 16 & 0xFFF) as u16 + 1,
        )
    }

    fn process(&mut self) {
        if self.hold {
            return;
        }
        let (sq_entries, cq_entries) = self.entries();
        while self.sq_head != self.sq_tail {
            let at = self.asq + u64::from(self.sq_head) * 64;
            let bytes: [u8; 64] = self.mem(at, 64).try_into().unwrap();
            let cmd = SubmissionEntry::from_bytes(&bytes);
            self.sq_head = (self.sq_head + 1) % sq_entries;
            self.commands.push(cmd);
            let status = self
                .fail
                .get(&cmd.opcode())
                .copied()
                .unwrap_or(Status::SUCCESS);
            if cmd.opcode() == 0x15 {
                let data = self.mem(cmd.prp1, 4096).to_vec();
                self.data_in.push(data);
            }
            if cmd.opcode() == 0x06 {
                let cns = cmd.cdw10 as u8;
                if let Some(page) = self.identify.get(&cns).cloned() {
                    self.mem(cmd.prp1, page.len()).copy_from_slice(&page);
                }
            }
            let done = CompletionEntry {
                dw0: cmd.cdw11,
                dw1: 0,
                sq_head: self.sq_head,
                sq_id: 0,
                cid: cmd.cid(),
                status_phase: status.0 << 1 | u16::from(self.cq_phase),
            };
            let at = self.acq + u64::from(self.cq_tail) * 16;
            self.mem(at, 16).copy_from_slice(&done.to_bytes());
            self.cq_tail = (self.cq_tail + 1) % cq_entries;
            if self.cq_tail == 0 {
                self.cq_phase = !self.cq_phase;
            }
        }
    }
}

impl ControllerRegs for Fake {
    fn read32(&mut self, offset: u32) -> u32 {
        let mut s = self.0.borrow_mut();
        if s.absent {
            return u32::MAX;
        }
        match offset {
            registers::CAP => s.cap as u32,
            o if o == registers::CAP + 4 => (s.cap >> 32) as u32,
            registers::CC => s.cc,
            registers::CSTS => {
                let want = s.cc & 1;
                if s.csts & 1 != want {
                    if s.pending_reads == 0 {
                        s.csts = s.csts & !1 | want;
                    } else {
                        s.pending_reads -= 1;
                    }
                }
                s.csts | if s.fatal { 2 } else { 0 }
            }
            registers::AQA => s.aqa,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        let mut s = self.0.borrow_mut();
        s.writes.push((offset, value));
        match offset {
            registers::CC => {
                if (value ^ s.cc) & 1 != 0 {
                    s.pending_reads = s.ready_delay;
                    if value & 1 == 0 {
                        s.sq_head = 0;
                        s.sq_tail = 0;
                        s.cq_tail = 0;
                        s.cq_phase = true;
                    }
                }
                s.cc = value;
            }
            registers::AQA => s.aqa = value,
            registers::ASQ => s.asq = s.asq & !0xFFFF_FFFF | u64::from(value),
            o if o == registers::ASQ + 4 => s.asq = s.asq & 0xFFFF_FFFF | u64::from(value) << 32,
            registers::ACQ => s.acq = s.acq & !0xFFFF_FFFF | u64::from(value),
            o if o == registers::ACQ + 4 => s.acq = s.acq & 0xFFFF_FFFF | u64::from(value) << 32,
            o if Some(o) == registers::sq_tail_doorbell(0, (s.cap >> 32) as u8 & 0xF) => {
                s.sq_tail = value as u16;
                s.process();
            }
            _ => {}
        }
    }

    fn wait_1ms(&mut self) {
        self.0.borrow_mut().waits += 1;
    }
}

impl DmaMemory for Fake {
    fn read(&mut self, phys: u64, buf: &mut [u8]) {
        let mut s = self.0.borrow_mut();
        buf.copy_from_slice(s.mem(phys, buf.len()));
    }

    fn write(&mut self, phys: u64, data: &[u8]) {
        let mut s = self.0.borrow_mut();
        s.mem(phys, data.len()).copy_from_slice(data);
    }
}
