//! The virtual local APIC of the emulated interrupt mode, in x2APIC mode only (AMD APM vol. 2
//! §16.3-16.7 and §16.11; register map and layouts in [`super::x2apic`]).
//!
//! Every guest x2APIC MSR access exits and lands in [`Lapic::read_msr`] / [`Lapic::write_msr`]; a
//! fault result means "inject #GP(0)". Interrupts enter through [`Lapic::accept`] (IOAPIC, IPIs,
//! virtual devices) and the timer ([`Lapic::tick`]); at each VMRUN the caller asks
//! [`Lapic::highest_deliverable`], injects that vector and calls [`Lapic::ack`], doing what the
//! CPU does when it takes an interrupt from its APIC. An EOI write returns the vector and its
//! trigger mode so the caller can forward level EOIs to the IOAPIC.
//!
//! The guest never leaves x2APIC mode here: the caller handles `IA32_APIC_BASE` and refuses the
//! switch back to xAPIC, so there is no MMIO interface.

pub use super::delivery::{DeliveryMode, DestMode, TriggerMode, FIRST_LEGAL_VECTOR};
pub use super::direct::{direct_mode_access, is_passthrough_msr, DirectAccess};
pub use super::icr::{decode_icr, Ipi, Shorthand};
pub use super::lapic_timer::{timer_divisor, Nanos};
pub use super::x2apic::{x2apic_dest_matches, x2apic_ldr};

use super::icr::bits as icr;
use super::lapic_timer::Timer;
use super::vector_set::VectorSet;
use super::x2apic::{esr, lvt, svr, Lvt, Register, LVT_COUNT, LVT_READ_ONLY, LVT_WRITABLE};
use super::x2apic::{TIMER_DIVIDE_WRITABLE, VERSION};

/// Why an x2APIC MSR access fails; every case is #GP(0) for the guest, the cause is for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFault {
    /// Not an x2APIC register (outside 800h-8FFh, or a hole in the map).
    NoSuchRegister,
    /// A write to a read-only register (ID, version, PPR, LDR, ISR, TMR, IRR, current count).
    ReadOnly,
    /// A read of a write-only register (EOI, SELF_IPI).
    WriteOnly,
    /// A write that sets reserved bits (x2APIC checks them; SDM §10.12.1.3), including a non-zero
    /// write to EOI or ESR and TSC-deadline mode in the timer LVT.
    ReservedBits,
}

/// What a successful MSR write asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    None,
    /// An ICR write: route it (the APIC has already refused illegal vectors and reserved modes).
    Ipi(Ipi),
    /// An EOI retired `vector`; if `level`, forward it to the IOAPIC (no directed EOI here).
    Eoi {
        vector: u8,
        level: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lapic {
    apic_id: u32,
    tpr: u8,
    svr: u32,
    irr: VectorSet,
    isr: VectorSet,
    tmr: VectorSet,
    /// The ESR as the guest reads it: the errors latched by its last ESR write.
    esr: u32,
    /// Errors detected since the last ESR write.
    esr_pending: u32,
    icr: u64,
    lvt: [u32; LVT_COUNT],
    timer: Timer,
}

impl Lapic {
    /// The APIC of the vCPU with x2APIC id `apic_id`, in its reset state (SDM §10.4.7.1: registers
    /// 0, LVTs masked, SVR FFh so software-disabled), with its timer clocked at `timer_hz` before
    /// the divider.
    pub const fn new(apic_id: u32, timer_hz: u64) -> Self {
        Lapic {
            apic_id,
            tpr: 0,
            svr: svr::RESET,
            irr: VectorSet::new(),
            isr: VectorSet::new(),
            tmr: VectorSet::new(),
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvt: [lvt::RESET; LVT_COUNT],
            timer: Timer::new(timer_hz),
        }
    }

    /// An INIT resets the APIC to its power-on state except the APIC id (SDM §10.4.7.3); the
    /// timer clock is ours, not the guest's, and stays too.
    pub fn init_reset(&mut self) {
        let timer_hz = self.timer.clock_hz();
        *self = Lapic::new(self.apic_id, timer_hz);
    }

    pub fn apic_id(&self) -> u32 {
        self.apic_id
    }

    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// For a TPR the caller took from elsewhere (CR8 writes reach the same register).
    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr;
    }

    pub fn software_enabled(&self) -> bool {
        self.svr & svr::ENABLE != 0
    }

    pub fn timer_missed_periods(&self) -> u64 {
        self.timer.missed_periods()
    }

    /// The processor priority (SDM §10.8.3.1): the task priority, unless the highest in-service
    /// vector's class is above the task-priority class, in which case that class with sub-class 0.
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// Accepts a fixed or lowest-priority interrupt into the IRR (TMR records its trigger).
    /// Returns false when it was refused: an illegal vector (recorded in the ESR) or a
    /// software-disabled APIC. NMI, INIT and STARTUP bypass the IRR and are the caller's.
    pub fn accept(&mut self, vector: u8, trigger: TriggerMode) -> bool {
        if vector < FIRST_LEGAL_VECTOR {
            self.record_error(esr::RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        if !self.software_enabled() {
            return false;
        }
        self.irr.insert(vector);
        self.tmr.set(vector, trigger == TriggerMode::Level);
        true
    }

    /// The vector the CPU would take now: the highest pending one, if interrupts are enabled
    /// (`rflags_if`; the caller also respects the interrupt shadow) and its priority class is above
    /// the processor-priority class.
    pub fn highest_deliverable(&self, rflags_if: bool) -> Option<u8> {
        if !rflags_if {
            return None;
        }
        let vector = self.irr.highest()?;
        (vector >> 4 > self.ppr() >> 4).then_some(vector)
    }

    /// The CPU took `vector` (the caller injected it): IRR to ISR. Returns false, changing nothing,
    /// if it was not pending.
    pub fn ack(&mut self, vector: u8) -> bool {
        if !self.irr.contains(vector) {
            return false;
        }
        self.irr.remove(vector);
        self.isr.insert(vector);
        true
    }

    /// `irq=avic`: takes the highest vector this model raised (timer, error LVT) out of its IRR,
    /// with whether it is level-triggered, so the caller can post it to the AVIC backing page,
    /// where priority, ISR and EOI are the hardware's.
    pub fn take_requested(&mut self) -> Option<(u8, bool)> {
        let vector = self.irr.highest()?;
        self.irr.remove(vector);
        Some((vector, self.tmr.contains(vector)))
    }

    /// `irq=avic`: settles the timer up to `now`, hands every vector the model raised (the
    /// timer's, an error LVT's) to `post` with whether it is level-triggered, and returns when
    /// the timer next needs settling ([`Lapic::next_timer_deadline`]). Whichever core holds the
    /// vCPU's APIC calls it: the guest's core after its trapped timer writes, the service core
    /// when the published deadline has passed. A periodic timer re-arms at its next period
    /// boundary, so TMCCT reads stay exact whoever settled it last.
    pub fn settle_for_posting(
        &mut self,
        now: Nanos,
        mut post: impl FnMut(u8, bool),
    ) -> Option<Nanos> {
        self.tick(now);
        while let Some((vector, level)) = self.take_requested() {
            post(vector, level);
        }
        self.next_timer_deadline()
    }

    /// End of interrupt: retires the highest in-service vector and returns it with whether it was
    /// level-triggered; `None` if nothing was in service.
    pub fn eoi(&mut self) -> Option<(u8, bool)> {
        let vector = self.isr.highest()?;
        self.isr.remove(vector);
        Some((vector, self.tmr.contains(vector)))
    }

    /// When the caller must next call [`Lapic::tick`], if the timer runs unmasked. A masked timer
    /// keeps counting but needs no wake-up: its expiries are settled at the next timer register
    /// write.
    pub fn next_timer_deadline(&self) -> Option<Nanos> {
        if self.lvt[Lvt::Timer as usize] & lvt::MASK != 0 {
            return None;
        }
        self.timer.deadline()
    }

    /// Settles the timer up to `now`: if it expired, raises the timer vector into the IRR (unless
    /// masked) and re-arms a periodic timer. Returns whether an interrupt was raised.
    pub fn tick(&mut self, now: Nanos) -> bool {
        let entry = self.lvt[Lvt::Timer as usize];
        if !self.timer.expire(now, entry & lvt::TIMER_PERIODIC != 0) || entry & lvt::MASK != 0 {
            return false;
        }
        self.accept((entry & lvt::VECTOR) as u8, TriggerMode::Edge)
    }

    /// RDMSR of x2APIC register `msr` at time `now`.
    pub fn read_msr(&self, msr: u32, now: Nanos) -> Result<u64, AccessFault> {
        let register = Register::from_msr(msr).ok_or(AccessFault::NoSuchRegister)?;
        let value = match register {
            Register::Id => self.apic_id,
            Register::Version => VERSION,
            Register::Tpr => u32::from(self.tpr),
            Register::Ppr => u32::from(self.ppr()),
            Register::Ldr => x2apic_ldr(self.apic_id),
            Register::Svr => self.svr,
            Register::Isr(word) => self.isr.word(word),
            Register::Tmr(word) => self.tmr.word(word),
            Register::Irr(word) => self.irr.word(word),
            Register::Esr => self.esr,
            Register::Icr => return Ok(self.icr),
            Register::Lvt(which) => self.lvt[which as usize],
            Register::TimerInitial => self.timer.initial_count(),
            Register::TimerCurrent => self.timer.current_count(now, self.timer_periodic()),
            Register::TimerDivide => self.timer.divide_config(),
            Register::Eoi | Register::SelfIpi => return Err(AccessFault::WriteOnly),
        };
        Ok(u64::from(value))
    }

    /// WRMSR of `value` to x2APIC register `msr` at time `now`.
    pub fn write_msr(
        &mut self,
        msr: u32,
        value: u64,
        now: Nanos,
    ) -> Result<WriteEffect, AccessFault> {
        let register = Register::from_msr(msr).ok_or(AccessFault::NoSuchRegister)?;
        // Bits 63:32 are reserved in every register but the 64-bit ICR.
        let low = || u32::try_from(value).map_err(|_| AccessFault::ReservedBits);
        match register {
            Register::Icr => return self.write_icr(value),
            Register::Id
            | Register::Version
            | Register::Ppr
            | Register::Ldr
            | Register::Isr(_)
            | Register::Tmr(_)
            | Register::Irr(_)
            | Register::TimerCurrent => return Err(AccessFault::ReadOnly),
            Register::Tpr => self.tpr = checked(low()?, 0xff)? as u8,
            Register::Eoi => {
                checked(low()?, 0)?;
                return Ok(match self.eoi() {
                    Some((vector, level)) => WriteEffect::Eoi { vector, level },
                    None => WriteEffect::None,
                });
            }
            Register::Svr => {
                let value = checked(low()?, svr::WRITABLE)?;
                self.tick(now);
                self.svr = value;
                if !self.software_enabled() {
                    // Software disable masks every LVT (SDM §10.4.7.2).
                    self.lvt.iter_mut().for_each(|entry| *entry |= lvt::MASK);
                }
            }
            Register::Esr => {
                checked(low()?, 0)?;
                self.esr = core::mem::take(&mut self.esr_pending);
            }
            Register::Lvt(which) => self.write_lvt(which, low()?, now)?,
            Register::TimerInitial => {
                let value = low()?;
                self.tick(now);
                self.timer.set_initial(value, now);
            }
            Register::TimerDivide => {
                let value = checked(low()?, TIMER_DIVIDE_WRITABLE)?;
                self.tick(now);
                self.timer.set_divide(value, now, self.timer_periodic());
            }
            Register::SelfIpi => {
                let vector = checked(low()?, 0xff)? as u8;
                self.accept(vector, TriggerMode::Edge);
            }
        }
        Ok(WriteEffect::None)
    }

    fn write_lvt(&mut self, which: Lvt, value: u32, now: Nanos) -> Result<(), AccessFault> {
        let index = which as usize;
        checked(value, LVT_WRITABLE[index] | LVT_READ_ONLY[index])?;
        if which == Lvt::Timer {
            // Expiries so far happened under the old mask and mode.
            self.tick(now);
        }
        let mut entry = (value & LVT_WRITABLE[index]) | (self.lvt[index] & LVT_READ_ONLY[index]);
        if !self.software_enabled() {
            // While software-disabled the mask bits cannot be cleared.
            entry |= lvt::MASK;
        }
        self.lvt[index] = entry;
        Ok(())
    }

    fn write_icr(&mut self, value: u64) -> Result<WriteEffect, AccessFault> {
        if value & !(icr::WRITABLE | icr::DELIVERY_STATUS) != 0 {
            return Err(AccessFault::ReservedBits);
        }
        self.icr = value & icr::WRITABLE;
        let ipi = decode_icr(self.icr);
        match ipi.delivery_mode {
            // Undefined in an ICR; hardware sends nothing meaningful, neither do we.
            DeliveryMode::Reserved | DeliveryMode::ExtInt => Ok(WriteEffect::None),
            mode if mode.uses_vector() && ipi.vector < FIRST_LEGAL_VECTOR => {
                self.record_error(esr::SEND_ILLEGAL_VECTOR);
                Ok(WriteEffect::None)
            }
            _ => Ok(WriteEffect::Ipi(ipi)),
        }
    }

    fn timer_periodic(&self) -> bool {
        self.lvt[Lvt::Timer as usize] & lvt::TIMER_PERIODIC != 0
    }

    /// Records an APIC error and raises the error LVT's interrupt if it is unmasked (and legal:
    /// an illegal error vector is not reported again, which would recurse).
    fn record_error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let entry = self.lvt[Lvt::Error as usize];
        let vector = (entry & lvt::VECTOR) as u8;
        if entry & lvt::MASK == 0 && vector >= FIRST_LEGAL_VECTOR && self.software_enabled() {
            self.irr.insert(vector);
            self.tmr.remove(vector);
        }
    }
}

/// `value` if it sets no bit outside `allowed`, else the x2APIC reserved-bit fault.
fn checked(value: u32, allowed: u32) -> Result<u32, AccessFault> {
    if value & !allowed == 0 {
        Ok(value)
    } else {
        Err(AccessFault::ReservedBits)
    }
}
