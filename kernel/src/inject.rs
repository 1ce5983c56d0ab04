//! When an emulated interrupt can be injected (AMD APM vol. 2, 15.20 "Event Injection" and 15.21.4
//! "Interrupt Masking in Guest"): only at an instruction boundary where the guest would take it itself —
//! RFLAGS.IF set, no interrupt shadow (after STI / MOV SS), and no other event already being injected.
//! Otherwise the hypervisor asks for a virtual-interrupt window (V_IRQ with the VINTR intercept) and
//! injects at the exit that follows.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestInterruptState {
    pub rflags_if: bool,
    /// VMCB INTERRUPT_SHADOW bit 0.
    pub interrupt_shadow: bool,
    /// An event is already queued in EVENTINJ (e.g. one being re-injected from EXITINTINFO).
    pub event_pending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Put the vector into EVENTINJ now (and acknowledge it in the virtual APIC).
    InjectNow(u8),
    /// Ask for an exit as soon as the guest can take an interrupt.
    RequestWindow,
    /// Nothing is pending.
    Nothing,
}

/// `pending` is the highest-priority vector the virtual APIC would deliver now, if any.
pub fn decide(pending: Option<u8>, state: GuestInterruptState) -> Decision {
    match pending {
        None => Decision::Nothing,
        Some(v) if state.rflags_if && !state.interrupt_shadow && !state.event_pending => {
            Decision::InjectNow(v)
        }
        Some(_) => Decision::RequestWindow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: GuestInterruptState = GuestInterruptState {
        rflags_if: true,
        interrupt_shadow: false,
        event_pending: false,
    };

    #[test]
    fn injects_only_when_the_guest_could_take_it() {
        assert_eq!(decide(Some(0x30), OPEN), Decision::InjectNow(0x30));
        assert_eq!(decide(None, OPEN), Decision::Nothing);
        for closed in [
            GuestInterruptState {
                rflags_if: false,
                ..OPEN
            },
            GuestInterruptState {
                interrupt_shadow: true,
                ..OPEN
            },
            GuestInterruptState {
                event_pending: true,
                ..OPEN
            },
        ] {
            assert_eq!(decide(Some(0xec), closed), Decision::RequestWindow);
            assert_eq!(decide(None, closed), Decision::Nothing);
        }
    }
}
