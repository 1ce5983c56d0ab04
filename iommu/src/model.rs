//! A small software model of an IOMMU's register block and command processor, for host tests
//! of the driver. It models exactly this and nothing more:
//! - registers as plain storage, except: Extended Features is read-only (`efr`); Status has
//!   read-only Run bits derived from Control and write-1-to-clear event/interrupt bits; writing
//!   a ring base register zeroes that ring's pointers;
//! - the command processor: while IommuEn and CmdBufEn are set (and not `stalled`), a write of
//!   the Control or Command Tail register fetches commands from memory at the head, in order,
//!   moves the head (with wrap), and for COMPLETION_WAIT with S stores the data at the address
//!   (with I it sets ComWaitInt). Every fetched command is appended to `executed`. An opcode
//!   other than 01h–08h stops processing (CmdBufRun = 0), as hardware does.
//! - the event-log producer for events the test injects ([`FakeIommu::inject_event`]).
//!
//! It does not translate DMA, cache or check DTEs/IRTEs/page tables, or check reserved bits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::command::{Command, COMPLETION_WAIT};
use crate::mem::{FrameSource, Hpa, PhysAccess};
use crate::regs::{self, Control, Mmio, Status};
use crate::testmem::FakeMem;

/// Register storage and nothing else (no command processing), for tests of the rings, where the
/// test itself moves the hardware's head and tail pointers.
#[derive(Default)]
pub struct PlainRegs(pub HashMap<usize, u64>);

impl Mmio for PlainRegs {
    fn read64(&self, offset: usize) -> u64 {
        self.0.get(&offset).copied().unwrap_or(0)
    }
    fn write64(&mut self, offset: usize, value: u64) {
        self.0.insert(offset, value);
    }
}

/// Memory shared by the driver (through `PhysAccess`) and the model.
#[derive(Clone, Default)]
pub struct SharedMem(pub Rc<RefCell<FakeMem>>);

impl PhysAccess for SharedMem {
    fn read_u64(&self, pa: Hpa) -> u64 {
        self.0.borrow().read_u64(pa)
    }

    fn write_u64(&mut self, pa: Hpa, value: u64) {
        self.0.borrow_mut().write_u64(pa, value);
    }
}

impl FrameSource for SharedMem {
    fn alloc_frame(&mut self) -> Option<Hpa> {
        self.0.borrow_mut().alloc_frame()
    }

    fn free_frame(&mut self, frame: Hpa) {
        self.0.borrow_mut().free_frame(frame);
    }
}

/// The modelled IOMMU.
pub struct FakeIommu {
    pub mem: SharedMem,
    regs: HashMap<usize, u64>,
    /// Extended Feature Register value.
    pub efr: u64,
    /// Every register write, in order.
    pub writes: Vec<(usize, u64)>,
    /// Every command fetched, in order.
    pub executed: Vec<Command>,
    /// When set, the command processor does nothing (a hung IOMMU).
    pub stalled: bool,
    /// Command processing stopped on an illegal command.
    halted: bool,
    status: u64,
}

impl FakeIommu {
    pub fn new(mem: SharedMem, efr: u64) -> Self {
        Self {
            mem,
            regs: HashMap::new(),
            efr,
            writes: Vec::new(),
            executed: Vec::new(),
            stalled: false,
            halted: false,
            status: 0,
        }
    }

    /// The IOMMU sets write-1-to-clear Status bits (e.g. GAInt after writing the GA log).
    pub fn raise(&mut self, bits: Status) {
        self.status |= bits.bits();
    }

    fn reg(&self, offset: usize) -> u64 {
        self.regs.get(&offset).copied().unwrap_or(0)
    }

    fn control(&self) -> Control {
        Control::from_bits_retain(self.reg(regs::CONTROL))
    }

    fn run_bits(&self) -> u64 {
        let c = self.control();
        let on = c.contains(Control::IOMMU_EN);
        let mut s = 0;
        if on && c.contains(Control::CMD_BUF_EN) && !self.halted {
            s |= Status::CMD_BUF_RUN.bits();
        }
        if on
            && c.contains(Control::EVENT_LOG_EN)
            && self.status & Status::EVENT_OVERFLOW.bits() == 0
        {
            s |= Status::EVENT_LOG_RUN.bits();
        }
        s
    }

    fn process(&mut self) {
        if self.stalled || self.run_bits() & Status::CMD_BUF_RUN.bits() == 0 {
            return;
        }
        let (base, log2) = regs::decode_ring_base(self.reg(regs::COMMAND_BUFFER_BASE));
        let size = 16u64 << log2;
        let tail = self.reg(regs::COMMAND_TAIL) & regs::RING_POINTER_MASK;
        let mut head = self.reg(regs::COMMAND_HEAD) & regs::RING_POINTER_MASK;
        while head != tail {
            let cmd = {
                let m = self.mem.0.borrow();
                Command([
                    m.read_u64(Hpa(base.0 + head)),
                    m.read_u64(Hpa(base.0 + head + 8)),
                ])
            };
            self.executed.push(cmd);
            match cmd.opcode() {
                COMPLETION_WAIT => {
                    if cmd.0[0] & 1 != 0 {
                        self.mem
                            .0
                            .borrow_mut()
                            .write_u64(cmd.store_address(), cmd.0[1]);
                    }
                    if cmd.0[0] & 2 != 0 {
                        self.status |= Status::COM_WAIT_INT.bits();
                    }
                }
                0x02..=0x08 => {}
                _ => {
                    self.halted = true;
                    break;
                }
            }
            head = (head + 16) % size;
            self.regs.insert(regs::COMMAND_HEAD, head);
        }
    }

    /// Append an event as the IOMMU would: at the tail, moving the Tail Pointer; when the log
    /// is full, set EventOverflow and drop it.
    pub fn inject_event(&mut self, raw: [u64; 2]) {
        if self.run_bits() & Status::EVENT_LOG_RUN.bits() == 0 {
            return;
        }
        let (base, log2) = regs::decode_ring_base(self.reg(regs::EVENT_LOG_BASE));
        let size = 16u64 << log2;
        let tail = self.reg(regs::EVENT_TAIL);
        let next = (tail + 16) % size;
        if next == self.reg(regs::EVENT_HEAD) {
            self.status |= Status::EVENT_OVERFLOW.bits();
            return;
        }
        {
            let mut m = self.mem.0.borrow_mut();
            m.write_u64(Hpa(base.0 + tail), raw[0]);
            m.write_u64(Hpa(base.0 + tail + 8), raw[1]);
        }
        self.regs.insert(regs::EVENT_TAIL, next);
        self.status |= Status::EVENT_LOG_INT.bits();
    }

    /// Register writes to `offset`, in order.
    pub fn writes_to(&self, offset: usize) -> Vec<u64> {
        self.writes
            .iter()
            .filter(|(o, _)| *o == offset)
            .map(|(_, v)| *v)
            .collect()
    }
}

impl Mmio for FakeIommu {
    fn read64(&self, offset: usize) -> u64 {
        match offset {
            regs::EXTENDED_FEATURES => self.efr,
            regs::STATUS => self.status | self.run_bits(),
            _ => self.reg(offset),
        }
    }

    fn write64(&mut self, offset: usize, value: u64) {
        self.writes.push((offset, value));
        match offset {
            regs::EXTENDED_FEATURES => {}
            regs::STATUS => self.status &= !(value & Status::RW1C.bits()),
            regs::COMMAND_BUFFER_BASE => {
                self.regs.insert(offset, value);
                self.regs.insert(regs::COMMAND_HEAD, 0);
                self.regs.insert(regs::COMMAND_TAIL, 0);
            }
            regs::EVENT_LOG_BASE => {
                self.regs.insert(offset, value);
                self.regs.insert(regs::EVENT_HEAD, 0);
                self.regs.insert(regs::EVENT_TAIL, 0);
            }
            regs::CONTROL => {
                if value & Control::CMD_BUF_EN.bits() == 0 {
                    self.halted = false;
                }
                self.regs.insert(offset, value);
                self.process();
            }
            regs::COMMAND_TAIL => {
                self.regs.insert(offset, value);
                self.process();
            }
            _ => {
                self.regs.insert(offset, value);
            }
        }
    }
}
