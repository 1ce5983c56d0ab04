//! The AVIC pages of one `irq=avic` guest (APM vol. 2 §15.29.3–§15.29.6): a backing page per
//! vCPU, one physical APIC-ID table (entry i = guest APIC id i → the host APIC id of vCPU i's
//! core and its backing page, Valid), a logical table page (x2AVIC ignores it, the VMCB still
//! points at a valid page), and the two things other cores do to a vCPU: post a vector into
//! its IRR and ring its core's doorbell.
//!
//! The exitless timer: each vCPU's emulated LAPIC timer (its `Lapic`, under its spin lock)
//! publishes its next deadline here, lock-free; whoever settles the timer (the guest's core
//! before each VMRUN, after its trapped timer writes; the service core when a published
//! deadline has passed) posts what it raised into the IRR and publishes the next deadline while
//! it holds the lock, so the word always belongs to the latest timer state. The service core
//! rings the doorbell; the guest's core needs no host timer and takes no INTR exit.
//!
//! IsRunning is 1 from a vCPU's first VMRUN until it is parked or ends: it stays set across the
//! short exits a running vCPU takes (a doorbell that reaches the core in host mode is dropped,
//! but the next VMRUN evaluates the IRR anyway, §15.29.8.3), and HLT is not intercepted, so a
//! halted vCPU is still "running" and the doorbell is what wakes it.
//!
//! The pages are written by the processor while guests run; the hypervisor touches them only
//! through 32/64-bit atomics (this module's `unsafe`).

use super::MAX_VCPUS;
use crate::hv::host::{memory, phys};
use avic::exit::reg;
use avic::mode;
use avic::vmcb::AvicSetup;
use avic::PhysicalIdEntry;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use didvisor::irqchip::Lapic;
use spin::Mutex;
use svm::{Gpa, Hpa};
use x86_64::registers::model_specific::Msr;

const PAGE: u64 = 4096;

pub struct AvicTables {
    physical_table: u64,
    logical_table: u64,
    backing: [u64; MAX_VCPUS],
    vcpu_count: usize,
    /// x2APIC ids of the vCPUs' cores (the doorbell targets).
    cores: [u32; MAX_VCPUS],
    /// Per vCPU, counted by whichever core did it: device vectors posted, doorbells rung.
    pub posted_device: [AtomicU64; MAX_VCPUS],
    pub doorbells: [AtomicU64; MAX_VCPUS],
    /// Per vCPU: timer vectors posted (by either core).
    pub posted_timer: [AtomicU64; MAX_VCPUS],
    /// Per vCPU: its timer's next deadline (`mode::deadline_word`), written under its `lapic`
    /// lock, read by the service core without it.
    timer_deadline: [AtomicU64; MAX_VCPUS],
    /// Per vCPU: GA log entries that named it (a VF interrupt posted while it was not running).
    pub ga_log: [AtomicU64; MAX_VCPUS],
}

impl AvicTables {
    /// Allocates and fills the pages for vCPUs running on the cores with x2APIC ids `cores`
    /// (one per vCPU, vCPU i has guest APIC id i). Every entry is Valid, none running yet.
    pub fn new(cores: &[u32]) -> Self {
        let vcpu_count = cores.len().min(MAX_VCPUS);
        let mut g = AvicTables {
            physical_table: memory::alloc_zeroed(PAGE, PAGE),
            logical_table: memory::alloc_zeroed(PAGE, PAGE),
            backing: [0; MAX_VCPUS],
            vcpu_count,
            cores: [u32::MAX; MAX_VCPUS],
            posted_device: [const { AtomicU64::new(0) }; MAX_VCPUS],
            doorbells: [const { AtomicU64::new(0) }; MAX_VCPUS],
            posted_timer: [const { AtomicU64::new(0) }; MAX_VCPUS],
            timer_deadline: [const { AtomicU64::new(mode::NO_DEADLINE) }; MAX_VCPUS],
            ga_log: [const { AtomicU64::new(0) }; MAX_VCPUS],
        };
        for (vcpu, &core) in cores.iter().enumerate().take(vcpu_count) {
            let page = memory::alloc_zeroed(PAGE, PAGE);
            fill_backing_page(page, vcpu);
            g.backing[vcpu] = page;
            g.cores[vcpu] = core;
            g.entry(vcpu)
                .store(PhysicalIdEntry::new(Hpa(page), core).0, Ordering::SeqCst);
        }
        g
    }

    /// A restart (no vCPU of the guest runs): every backing page as `new` wrote it, so nothing
    /// pending, in service or programmed carries over; IsRunning clear, no timer deadline.
    pub fn reset(&self) {
        for vcpu in 0..self.vcpu_count {
            self.set_running(vcpu, false);
            fill_backing_page(self.backing[vcpu], vcpu);
            self.timer_deadline[vcpu].store(mode::NO_DEADLINE, Ordering::Release);
        }
    }

    /// The VMCB fields of vCPU `vcpu` (x2AVIC).
    pub fn setup(&self, vcpu: usize) -> AvicSetup {
        AvicSetup {
            backing_page: Hpa(self.backing[vcpu]),
            logical_table: Hpa(self.logical_table),
            physical_table: Hpa(self.physical_table),
            max_index: (self.vcpu_count as u16).saturating_sub(1),
            x2avic: true,
            apic_bar: Gpa(mode::APIC_BAR),
        }
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpu_count
    }

    /// Host-physical address of vCPU `vcpu`'s backing page (`vcpu` < `vcpu_count`).
    pub fn backing_page(&self, vcpu: usize) -> u64 {
        self.backing[vcpu]
    }

    /// x2APIC id of vCPU `vcpu`'s core.
    pub fn core(&self, vcpu: usize) -> u32 {
        self.cores[vcpu]
    }

    fn entry(&self, vcpu: usize) -> &'static AtomicU64 {
        assert!(vcpu < MAX_VCPUS);
        // SAFETY: the table is a page of ours, 8-aligned entries, vcpu < 512; entries are only
        // accessed atomically (the processor reads them while guests run).
        unsafe { phys::get(self.physical_table + vcpu as u64 * 8) }
    }

    /// Sets or clears IsRunning in vCPU `vcpu`'s physical-table entry.
    pub fn set_running(&self, vcpu: usize, running: bool) {
        if vcpu >= self.vcpu_count {
            return;
        }
        let bit = PhysicalIdEntry::IS_RUNNING;
        if running {
            self.entry(vcpu).fetch_or(bit, Ordering::SeqCst);
        } else {
            self.entry(vcpu).fetch_and(!bit, Ordering::SeqCst);
        }
    }

    pub fn is_running(&self, vcpu: usize) -> bool {
        vcpu < self.vcpu_count
            && PhysicalIdEntry(self.entry(vcpu).load(Ordering::SeqCst)).is_running()
    }

    /// The 32-bit register at byte `offset` of vCPU `vcpu`'s backing page.
    pub fn read(&self, vcpu: usize, offset: u16) -> u32 {
        word_at(self.backing[vcpu], usize::from(offset & 0xFF0)).load(Ordering::SeqCst)
    }

    pub fn write(&self, vcpu: usize, offset: u16, value: u32) {
        word_at(self.backing[vcpu], usize::from(offset & 0xFF0)).store(value, Ordering::SeqCst);
    }

    /// Sets `vector` in vCPU `vcpu`'s IRR (and its TMR bit to `level`), as the processor does
    /// for an accelerated IPI.
    pub fn set_irr(&self, vcpu: usize, vector: u8, level: bool) {
        if vcpu >= self.vcpu_count {
            return;
        }
        let (tmr, bit) = avic::backing::vector_position(reg::TMR, vector);
        let tmr = word_at(self.backing[vcpu], tmr);
        if level {
            tmr.fetch_or(1 << bit, Ordering::SeqCst);
        } else {
            tmr.fetch_and(!(1 << bit), Ordering::SeqCst);
        }
        let (irr, bit) = avic::backing::irr_position(vector);
        word_at(self.backing[vcpu], irr).fetch_or(1 << bit, Ordering::SeqCst);
    }

    /// Clears `vector` from vCPU `vcpu`'s ISR (a level-triggered EOI, which AVIC leaves to the
    /// hypervisor).
    pub fn clear_isr(&self, vcpu: usize, vector: u8) {
        let (isr, bit) = avic::backing::vector_position(reg::ISR, vector);
        word_at(self.backing[vcpu], isr).fetch_and(!(1 << bit), Ordering::SeqCst);
    }

    /// Rings the doorbell of vCPU `vcpu`'s core, unless that is this core (which evaluates the
    /// IRR at its next VMRUN anyway) or the vCPU is not running (it evaluates the IRR when it
    /// next enters the guest).
    pub fn ring(&self, vcpu: usize) {
        if !self.is_running(vcpu) {
            return;
        }
        let core = self.cores[vcpu];
        if core == crate::hv::host::x2apic::id() {
            return;
        }
        let Some(value) = mode::doorbell(core) else {
            return;
        };
        self.doorbells[vcpu].fetch_add(1, Ordering::Relaxed);
        // SAFETY: MSR C001_011Bh exists where AVIC does (admission checked the self-test);
        // bits 63:8 are zero (`mode::doorbell`); a doorbell only makes the target core
        // re-evaluate the backing page of the guest it runs.
        unsafe { Msr::new(avic::MSR_AVIC_DOORBELL).write(value) };
    }

    /// An IOMMU GA log entry named vCPU `vcpu`: a VF interrupt posted while it was not running
    /// (the IOMMU set the IRR itself). Ring it; false if the guest has no such vCPU.
    pub fn ga_log_entry(&self, vcpu: usize) -> bool {
        if vcpu >= self.vcpu_count {
            return false;
        }
        self.ga_log[vcpu].fetch_add(1, Ordering::Relaxed);
        self.ring(vcpu);
        true
    }

    /// A device interrupt for vCPU `vcpu`: post it and ring the doorbell (no exit on the guest
    /// core when it is in guest mode).
    pub fn post_device(&self, vcpu: usize, vector: u8, level: bool) {
        if vcpu >= self.vcpu_count {
            return;
        }
        self.posted_device[vcpu].fetch_add(1, Ordering::Relaxed);
        self.set_irr(vcpu, vector, level);
        self.ring(vcpu);
    }

    /// Settles vCPU `vcpu`'s timer (`lapic` is its APIC, locked by the caller) up to `now`: the
    /// vectors it raised go into the IRR, its next deadline is published. Returns whether
    /// anything was posted (the caller rings the doorbell if the vCPU runs on another core).
    pub fn settle_timer(&self, vcpu: usize, lapic: &mut Lapic, now: u64) -> bool {
        if vcpu >= self.vcpu_count {
            return false;
        }
        let mut posted = false;
        let next = lapic.settle_for_posting(now, |vector, level| {
            self.set_irr(vcpu, vector, level);
            posted = true;
        });
        if posted {
            self.posted_timer[vcpu].fetch_add(1, Ordering::Relaxed);
        }
        self.timer_deadline[vcpu].store(mode::deadline_word(next), Ordering::Release);
        posted
    }

    /// The service core's timer work: every vCPU whose published deadline has passed gets its
    /// timer settled, the vector posted and its core's doorbell rung (no exit on that core when
    /// it is in guest mode, halted or not).
    pub fn expire_timers(&self, lapics: &[Mutex<Lapic>], now: u64) {
        for (vcpu, lapic) in lapics.iter().enumerate().take(self.vcpu_count) {
            if !mode::timer_due(self.timer_deadline[vcpu].load(Ordering::Acquire), now) {
                continue;
            }
            let posted = self.settle_timer(vcpu, &mut lapic.lock(), now);
            if posted {
                self.ring(vcpu);
            }
        }
    }
}

/// Writes vCPU `vcpu`'s initial x2APIC register values over the whole backing page at `page`.
fn fill_backing_page(page: u64, vcpu: usize) {
    let init = mode::x2apic_backing_page(vcpu as u32);
    for i in 0..(PAGE as usize / 4) {
        let word = init.regs.get(i).copied().unwrap_or(0);
        word_at(page, i * 4).store(word, Ordering::Relaxed);
    }
}

/// The 32-bit word at byte `offset` of the backing page at `page`.
fn word_at(page: u64, offset: usize) -> &'static AtomicU32 {
    assert!(offset < PAGE as usize && offset.is_multiple_of(4) && page != 0);
    // SAFETY: `page` is a backing page this module allocated (identity-mapped, never freed);
    // the word is aligned and inside it; the processor and the hypervisor both access it, the
    // hypervisor only atomically.
    unsafe { phys::get(page + offset as u64) }
}
