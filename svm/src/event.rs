//! Event injection (EVENTINJ, VMCB 0x0A8) and the interrupted-event record (EXITINTINFO,
//! VMCB 0x088), which share one format (APM vol. 2 §15.20, Figure 15-5; §15.7.2).
//!
//! ```text
//!  63            32 31 30      12 11 10  8 7      0
//! +----------------+--+----------+--+-----+--------+
//! |   ERRORCODE    |V | reserved |EV|TYPE | VECTOR |
//! +----------------+--+----------+--+-----+--------+
//! ```

use crate::vmcb::Vmcb;

/// The TYPE field (bits 10:8) of EVENTINJ / EXITINTINFO (APM vol. 2 §15.20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventType {
    /// External or virtual interrupt (INTR).
    ExternalInterrupt = 0,
    /// NMI (vector is ignored, 2 by convention).
    Nmi = 2,
    /// Exception (fault or trap), vectors 0–31 only.
    Exception = 3,
    /// Software interrupt (INTn).
    SoftwareInterrupt = 4,
}

impl EventType {
    /// Decode a TYPE value; 1, 5, 6, 7 are reserved.
    pub const fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Self::ExternalInterrupt),
            2 => Some(Self::Nmi),
            3 => Some(Self::Exception),
            4 => Some(Self::SoftwareInterrupt),
            _ => None,
        }
    }
}

/// An EVENTINJ / EXITINTINFO value (APM vol. 2 §15.20). `EventInj(0)` is "nothing".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct EventInj(pub u64);

/// EXITINTINFO has the same format as EVENTINJ (APM vol. 2 §15.7.2).
pub type ExitIntInfo = EventInj;

impl EventInj {
    /// No event (V = 0).
    pub const NONE: Self = Self(0);

    const VALID: u64 = 1 << 31;
    const ERROR_VALID: u64 = 1 << 11;

    /// A valid event of the given type and vector, with an error code if `error_code` is `Some`.
    pub const fn new(vector: u8, ty: EventType, error_code: Option<u32>) -> Self {
        let mut raw = vector as u64 | ((ty as u64) << 8) | Self::VALID;
        if let Some(ec) = error_code {
            raw |= Self::ERROR_VALID | ((ec as u64) << 32);
        }
        Self(raw)
    }

    /// An external interrupt with `vector`.
    pub const fn external_interrupt(vector: u8) -> Self {
        Self::new(vector, EventType::ExternalInterrupt, None)
    }

    /// An NMI.
    pub const fn nmi() -> Self {
        Self::new(2, EventType::Nmi, None)
    }

    /// An exception (`vector` < 32) with an optional error code.
    pub const fn exception(vector: u8, error_code: Option<u32>) -> Self {
        Self::new(vector, EventType::Exception, error_code)
    }

    /// A software interrupt INTn. Without NRIPS the return address pushed is the VMCB RIP, so the
    /// caller must have advanced RIP past the instruction.
    pub const fn software_interrupt(vector: u8) -> Self {
        Self::new(vector, EventType::SoftwareInterrupt, None)
    }

    /// The raw 64-bit value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// VECTOR, bits 7:0.
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }

    /// TYPE, bits 10:8, raw.
    pub const fn raw_type(self) -> u8 {
        ((self.0 >> 8) & 0x7) as u8
    }

    /// TYPE, bits 10:8, decoded; `None` for reserved values.
    pub const fn event_type(self) -> Option<EventType> {
        EventType::from_raw(self.raw_type())
    }

    /// EV, bit 11: an error code is pushed.
    pub const fn has_error_code(self) -> bool {
        self.0 & Self::ERROR_VALID != 0
    }

    /// V, bit 31: the event is valid.
    pub const fn is_valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    /// ERRORCODE, bits 63:32, if EV is set.
    pub const fn error_code(self) -> Option<u32> {
        if self.has_error_code() {
            Some((self.0 >> 32) as u32)
        } else {
            None
        }
    }
}

/// Turn an EXITINTINFO value into the event to re-inject through EVENTINJ on the next `VMRUN`,
/// or `None` when nothing should (or can) be re-injected.
///
/// An event whose delivery was interrupted by a `#VMEXIT` (e.g. a nested page fault while pushing
/// the interrupt frame) is recorded in EXITINTINFO and must be injected again (APM vol. 2
/// §15.7.2). Rules:
///
/// * not valid (V = 0) or a reserved TYPE: `None`.
/// * software interrupt (INTn) and the software exceptions #BP (INT3) and #OF (INTO): `None`; the
///   guest RIP still points at the instruction, which regenerates the event when re-executed
///   (re-injecting it would need NRIPS, which QEMU TCG lacks).
/// * **QEMU TCG fixup** (`docs/platform.md`): QEMU records an interrupted *external interrupt*
///   as TYPE = exception, e.g. `0x8000_0330` instead of `0x8000_0030` for vector 0x30, and
///   re-injecting that unchanged fails `VMRUN` with `VMEXIT_INVALID`. Exceptions exist only for
///   vectors 0–31, so an exception-typed record with a vector ≥ 32 and *no* error code cannot be
///   a real exception: it is re-typed as an external interrupt. With an error code it matches
///   neither a real exception nor the QEMU pattern and gives `None` (the caller logs it).
/// * everything else (external interrupts, NMIs, exceptions 0–31 with their error codes) is
///   returned unchanged.
pub const fn reinjectable(exit_int_info: u64) -> Option<EventInj> {
    let ev = EventInj(exit_int_info);
    if !ev.is_valid() {
        return None;
    }
    match ev.event_type() {
        None | Some(EventType::SoftwareInterrupt) => None,
        Some(EventType::Exception) if ev.vector() >= 32 => {
            if ev.has_error_code() {
                None
            } else {
                Some(EventInj::external_interrupt(ev.vector()))
            }
        }
        Some(EventType::Exception) if ev.vector() == 3 || ev.vector() == 4 => None,
        Some(_) => Some(ev),
    }
}

impl Vmcb {
    /// Queue `ev` for injection on the next `VMRUN` (writes EVENTINJ).
    pub fn inject(&mut self, ev: EventInj) {
        self.event_inj = ev.raw();
    }

    /// EXITINTINFO of the last `#VMEXIT`.
    pub const fn exit_int_info(&self) -> ExitIntInfo {
        EventInj(self.exit_int_info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_external_interrupt() {
        let e = EventInj::external_interrupt(0x30);
        assert_eq!(e.raw(), 0x8000_0030);
        assert_eq!(e.vector(), 0x30);
        assert_eq!(e.event_type(), Some(EventType::ExternalInterrupt));
        assert!(e.is_valid());
        assert_eq!(e.error_code(), None);
    }

    #[test]
    fn encode_exception_with_error_code() {
        // #GP(0x18)
        let e = EventInj::exception(13, Some(0x18));
        assert_eq!(e.raw(), 0x0000_0018_8000_0B0D);
        assert_eq!(e.raw_type(), 3);
        assert!(e.has_error_code());
        assert_eq!(e.error_code(), Some(0x18));
        assert_eq!(EventInj::exception(6, None).raw(), 0x8000_0306);
    }

    #[test]
    fn encode_nmi_and_software_interrupt() {
        assert_eq!(EventInj::nmi().raw(), 0x8000_0202);
        assert_eq!(EventInj::software_interrupt(0x80).raw(), 0x8000_0480);
    }

    #[test]
    fn decode_reserved_type() {
        assert_eq!(EventInj(0x8000_0130).event_type(), None);
        assert_eq!(EventInj(0x8000_0730).raw_type(), 7);
        assert!(!EventInj::NONE.is_valid());
    }

    #[test]
    fn reinject_fixes_qemu_external_interrupt_as_exception() {
        assert_eq!(reinjectable(0x8000_0330), Some(EventInj(0x8000_0030)));
        assert_eq!(reinjectable(0x8000_03FF), Some(EventInj(0x8000_00FF)));
        assert_eq!(reinjectable(0x8000_0320), Some(EventInj(0x8000_0020)));
    }

    #[test]
    fn reinject_keeps_real_events() {
        assert_eq!(reinjectable(0x8000_0030), Some(EventInj(0x8000_0030)));
        assert_eq!(reinjectable(0x8000_0202), Some(EventInj(0x8000_0202)));
        // #PF with error code 2, vector 14.
        let pf = 0x0000_0002_8000_0B0E;
        assert_eq!(reinjectable(pf), Some(EventInj(pf)));
        // #UD and vector 31 (reserved but still an exception vector) are untouched.
        assert_eq!(reinjectable(0x8000_0306), Some(EventInj(0x8000_0306)));
        assert_eq!(reinjectable(0x8000_031F), Some(EventInj(0x8000_031F)));
    }

    #[test]
    fn reinject_refuses_what_cannot_or_need_not_be_reinjected() {
        assert_eq!(reinjectable(0), None);
        assert_eq!(reinjectable(0x0000_0330), None); // V clear
        assert_eq!(reinjectable(0x8000_0130), None); // reserved type
        assert_eq!(reinjectable(0x8000_0480), None); // INT 0x80: re-executed
        assert_eq!(reinjectable(0x8000_0303), None); // #BP from INT3: re-executed
        assert_eq!(reinjectable(0x8000_0304), None); // #OF from INTO: re-executed
        assert_eq!(reinjectable(0x0000_0001_8000_0B30), None); // exception 0x30 + error code
    }

    #[test]
    fn vmcb_accessors() {
        let mut v = Box::new(Vmcb::new_zeroed());
        v.inject(EventInj::exception(14, Some(2)));
        assert_eq!(v.event_inj, 0x0000_0002_8000_0B0E);
        v.exit_int_info = 0x8000_0330;
        assert_eq!(v.exit_int_info().vector(), 0x30);
    }
}
