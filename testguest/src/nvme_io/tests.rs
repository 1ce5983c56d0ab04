//! Host tests of the I/O queue against a fake controller, and of the encoders and parsers with
//! values worked out from the NVMe specifications.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use nvme::entry::sct;
use nvme::{CompletionEntry, ControllerRegs, DmaMemory, Status, SubmissionEntry};

use super::*;

const MEM_BASE: u64 = 0x20_0000;
const SQ: u64 = MEM_BASE;
const CQ: u64 = MEM_BASE + 0x1000;
/// Queue 1's doorbells with DSTRD 0.
const SQ1_TAIL: u32 = 0x1008;
const CQ1_HEAD: u32 = 0x100C;

/// A controller with I/O queue 1 created: fetches submissions when the tail doorbell rings and
/// completes them at once, except commands it is told to hold.
struct State {
    memory: Vec<u8>,
    entries: u16,
    sq_head: u16,
    cq_tail: u16,
    phase: bool,
    /// Command identifiers the device fetches but does not complete...
    hold: HashSet<u16>,
    held: Vec<u16>,
    /// ...until the next tail doorbell after this is set.
    release: bool,
    status: HashMap<u8, Status>,
    commands: Vec<SubmissionEntry>,
    writes: Vec<(u32, u32)>,
    waits: u32,
}

#[derive(Clone)]
struct Fake(Rc<RefCell<State>>);

impl Fake {
    fn new(entries: u16) -> Fake {
        Fake(Rc::new(RefCell::new(State {
            memory: vec![0; 0x2000],
            entries,
            sq_head: 0,
            cq_tail: 0,
            phase: true,
            hold: HashSet::new(),
            held: Vec::new(),
            release: false,
            status: HashMap::new(),
            commands: Vec::new(),
            writes: Vec::new(),
            waits: 0,
        })))
    }
}

impl State {
    fn post(&mut self, cid: u16, status: Status) {
        let c = CompletionEntry {
            dw0: 0,
            dw1: 0,
            sq_head: self.sq_head,
            sq_id: 1,
            cid,
            status_phase: status.0 << 1 | u16::from(self.phase),
        };
        let at = (CQ - MEM_BASE) as usize + 16 * usize::from(self.cq_tail);
        self.memory[at..at + 16].copy_from_slice(&c.to_bytes());
        self.cq_tail += 1;
        if self.cq_tail == self.entries {
            self.cq_tail = 0;
            self.phase = !self.phase;
        }
    }

    fn ring(&mut self, tail: u16) {
        if std::mem::take(&mut self.release) {
            for cid in std::mem::take(&mut self.held) {
                self.post(cid, Status::SUCCESS);
            }
        }
        while self.sq_head != tail {
            let at = (SQ - MEM_BASE) as usize + 64 * usize::from(self.sq_head);
            let mut raw = [0; 64];
            raw.copy_from_slice(&self.memory[at..at + 64]);
            let cmd = SubmissionEntry::from_bytes(&raw);
            self.commands.push(cmd);
            self.sq_head = (self.sq_head + 1) % self.entries;
            if self.hold.contains(&cmd.cid()) {
                self.held.push(cmd.cid());
            } else {
                let status = self
                    .status
                    .get(&cmd.opcode())
                    .copied()
                    .unwrap_or(Status::SUCCESS);
                self.post(cmd.cid(), status);
            }
        }
    }
}

impl ControllerRegs for Fake {
    fn read32(&mut self, _offset: u32) -> u32 {
        0
    }

    fn write32(&mut self, offset: u32, value: u32) {
        let mut s = self.0.borrow_mut();
        s.writes.push((offset, value));
        if offset == SQ1_TAIL {
            s.ring(value as u16);
        }
    }

    fn wait_1ms(&mut self) {
        self.0.borrow_mut().waits += 1;
    }
}

impl DmaMemory for Fake {
    fn read(&mut self, phys: u64, buf: &mut [u8]) {
        let at = (phys - MEM_BASE) as usize;
        buf.copy_from_slice(&self.0.borrow().memory[at..at + buf.len()]);
    }

    fn write(&mut self, phys: u64, data: &[u8]) {
        let at = (phys - MEM_BASE) as usize;
        self.0.borrow_mut().memory[at..at + data.len()].copy_from_slice(data);
    }
}

fn read(slba: u64) -> SubmissionEntry {
    io_command(nvm_opcode::READ, 1, slba, 512, 4096, 0x10_0000).unwrap()
}

#[test]
fn read_write_encoders() {
    let w = io_command(nvm_opcode::WRITE, 1, 0x1_2345_6789, 512, 4096, 0x10_3000).unwrap();
    assert_eq!(w.opcode(), 0x01);
    assert_eq!(w.nsid, 1);
    assert_eq!((w.cdw10, w.cdw11), (0x2345_6789, 1));
    // 8 blocks of 512 bytes, 0's based.
    assert_eq!(w.cdw12, 7);
    assert_eq!((w.prp1, w.prp2), (0x10_3000, 0));
    let r = io_command(nvm_opcode::READ, 1, 8, 4096, 4096, 0xC000_0200).unwrap();
    assert_eq!(r.opcode(), 0x02);
    assert_eq!((r.cdw10, r.cdw11, r.cdw12), (8, 0, 0));
    // A buffer with an offset continues on the next page through PRP2.
    assert_eq!((r.prp1, r.prp2), (0xC000_0200, 0xC000_1000));
    assert_eq!(io_command(nvm_opcode::READ, 1, 0, 512, 1000, 0), None);
    assert_eq!(io_command(nvm_opcode::READ, 1, 0, 0, 4096, 0), None);
    assert_eq!(io_command(nvm_opcode::READ, 1, 0, 512, 8192, 0), None);
}

#[test]
fn prp_entries() {
    assert_eq!(prps(0x1000, 4096), Some((0x1000, 0)));
    assert_eq!(prps(0x1000, 1), Some((0x1000, 0)));
    assert_eq!(prps(0x1ffc, 4), Some((0x1ffc, 0)));
    assert_eq!(prps(0x1ffc, 8), Some((0x1ffc, 0x2000)));
    assert_eq!(prps(0x1004, 4096), Some((0x1004, 0x2000)));
    assert_eq!(prps(0x1002, 4), None);
    assert_eq!(prps(0x1000, 0), None);
    assert_eq!(prps(0x1000, 4097), None);
    assert_eq!(
        prps(0xFFFF_FFFF_FFFF_F000, 4096),
        Some((0xFFFF_FFFF_FFFF_F000, 0))
    );
    assert_eq!(prps(0xFFFF_FFFF_FFFF_F004, 4096), None);
}

#[test]
fn namespace_format() {
    let mut page = [0u8; 4096];
    assert_eq!(parse_namespace(&page), Err(NamespaceError::Inactive));
    page[0..8].copy_from_slice(&0x20_0000u64.to_le_bytes());
    // LBAF0: 512 bytes; LBAF1: 4096 bytes with 8 bytes of metadata; FLBAS selects 1.
    page[128 + 2] = 9;
    page[132..134].copy_from_slice(&8u16.to_le_bytes());
    page[132 + 2] = 12;
    page[26] = 1;
    assert_eq!(
        parse_namespace(&page),
        Ok(NamespaceFormat {
            blocks: 0x20_0000,
            lba_size: 4096,
            metadata: 8
        })
    );
    // FLBAS bit 4 (extended metadata) is not part of the index.
    page[26] = 0x10;
    assert_eq!(parse_namespace(&page).unwrap().lba_size, 512);
    // Bits 6:5 are the index's upper bits: 0x22 selects format 18.
    page[26] = 0x22;
    assert_eq!(
        parse_namespace(&page),
        Err(NamespaceError::BadLbaFormat {
            index: 18,
            lbads: 0
        })
    );
    page[128 + 4 * 18 + 2] = 10;
    assert_eq!(parse_namespace(&page).unwrap().lba_size, 1024);
}

#[test]
fn patterns() {
    let mut buf = vec![0u8; 4096];
    fill_pattern(&mut buf, 0x6e76_6d65);
    assert_eq!(
        &buf[0..16],
        &[0, 0, 0, 0, 0x65, 0x6d, 0x76, 0x6e, 1, 0, 0, 0, 0x65, 0x6d, 0x76, 0x6e]
    );
    assert_eq!(pattern_mismatch(&buf, 0x6e76_6d65), None);
    assert_eq!(pattern_mismatch(&buf, 0x6e76_6d66), Some(4));
    assert_eq!(classify_block(&buf, 0x6e76_6d65), BlockContents::Unchanged);
    buf[4095] ^= 1;
    assert_eq!(pattern_mismatch(&buf, 0x6e76_6d65), Some(4095));
    assert_eq!(
        classify_block(&buf, 0x6e76_6d65),
        BlockContents::Other {
            first: 0x6e76_6d65_0000_0000,
            nonzero: buf.iter().filter(|b| **b != 0).count()
        }
    );
    buf.fill(0);
    assert_eq!(classify_block(&buf, 0x6e76_6d65), BlockContents::Zeros);
}

#[test]
fn commands_complete_across_wraps() {
    let mut fake = Fake::new(4);
    let mut mem = fake.clone();
    let mut q = IoQueue::new(1, SQ, CQ, 4, 0).unwrap();
    for i in 0..10u16 {
        let c = q
            .execute(&mut fake, &mut mem, read(u64::from(i)), 5, |c| {
                panic!("unexpected {c:?}")
            })
            .unwrap();
        assert_eq!(c.cid, i);
        assert!(c.status().is_success());
    }
    let s = fake.0.borrow();
    assert_eq!(s.waits, 0);
    assert_eq!(s.commands.len(), 10);
    assert_eq!(s.commands[9].cdw10, 9);
    let tails: Vec<u32> = s
        .writes
        .iter()
        .filter(|w| w.0 == SQ1_TAIL)
        .map(|w| w.1)
        .collect();
    let heads: Vec<u32> = s
        .writes
        .iter()
        .filter(|w| w.0 == CQ1_HEAD)
        .map(|w| w.1)
        .collect();
    assert_eq!(tails, [1, 2, 3, 0, 1, 2, 3, 0, 1, 2]);
    assert_eq!(heads, [1, 2, 3, 0, 1, 2, 3, 0, 1, 2]);
}

#[test]
fn error_status_is_returned() {
    let mut fake = Fake::new(8);
    let mut mem = fake.clone();
    let transfer_error = Status::new(sct::GENERIC, 0x04);
    fake.0
        .borrow_mut()
        .status
        .insert(nvm_opcode::READ, transfer_error);
    let mut q = IoQueue::new(1, SQ, CQ, 8, 0).unwrap();
    let c = q.execute(&mut fake, &mut mem, read(0), 5, |_| {}).unwrap();
    assert_eq!(c.status(), transfer_error);
}

#[test]
fn timeout_then_late_completion() {
    let mut fake = Fake::new(8);
    let mut mem = fake.clone();
    fake.0.borrow_mut().hold.insert(0);
    let mut q = IoQueue::new(1, SQ, CQ, 8, 0).unwrap();
    assert_eq!(
        q.execute(&mut fake, &mut mem, read(0), 7, |_| {}),
        Err(IoError::NoCompletion {
            cid: 0,
            waited_ms: 7
        })
    );
    assert_eq!(fake.0.borrow().waits, 7);
    // The held command completes when the next one is submitted, ahead of it.
    fake.0.borrow_mut().release = true;
    let mut late = Vec::new();
    let c = q
        .execute(&mut fake, &mut mem, read(1), 7, |c| late.push(c.cid))
        .unwrap();
    assert_eq!(c.cid, 1);
    assert_eq!(late, [0]);
    assert_eq!(fake.0.borrow().waits, 7);
}

#[test]
fn full_and_bad_queues() {
    let mut fake = Fake::new(2);
    let mut mem = fake.clone();
    fake.0.borrow_mut().hold.insert(0);
    let mut q = IoQueue::new(1, SQ, CQ, 2, 0).unwrap();
    assert_eq!(q.submit(&mut fake, &mut mem, read(0)), Ok(0));
    assert_eq!(
        q.submit(&mut fake, &mut mem, read(0)),
        Err(IoError::QueueFull)
    );
    assert_eq!(
        IoQueue::new(1, SQ, CQ, 1, 0).unwrap_err(),
        IoError::BadQueue
    );
    assert_eq!(
        IoQueue::new(1, SQ, CQ, 4097, 0).unwrap_err(),
        IoError::BadQueue
    );
    assert_eq!(
        IoQueue::new(0xFFFF, SQ, CQ, 4, 15).unwrap_err(),
        IoError::BadQueue
    );
}

#[test]
fn bad_sq_head_in_completion() {
    let mut fake = Fake::new(4);
    let mut mem = fake.clone();
    let mut q = IoQueue::new(1, SQ, CQ, 4, 0).unwrap();
    // A completion with phase 1 and SQ head 9 in slot 0.
    let bogus = CompletionEntry {
        sq_head: 9,
        status_phase: 1,
        ..CompletionEntry::default()
    };
    mem.write(CQ, &bogus.to_bytes());
    assert_eq!(q.poll(&mut fake, &mut mem), Err(IoError::BadCompletion));
}
