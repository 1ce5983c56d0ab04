//! What the PF does with a VF's request: a pure function of the configuration, the VFs' state
//! and the decoded message, so every policy is tested without a device.

use crate::config::{MacAddr, Owner, PfConfig};
use crate::mailbox::VfState;
use crate::message::{DecodeError, FilterOp, Request, MAX_MC_HASHES};

/// Why a request was refused (the VF gets NACK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Before the VF's RESET handshake.
    NotClearToSend,
    Malformed(DecodeError),
    /// SET_MAC_ADDR with an address other than the configured one (anti-spoofing).
    MacChangeNotAllowed {
        asked: MacAddr,
    },
    MacNotUnicast {
        asked: MacAddr,
    },
    MacInUse {
        asked: MacAddr,
        by: Owner,
    },
    /// Extra unicast filters are not offered.
    MacFilterUnsupported,
    MulticastNotAllowed,
    VlanNotAllowed {
        vid: u16,
    },
    VlanTableFull {
        vid: u16,
    },
    FrameSize {
        asked: u32,
        max: u16,
    },
    PromiscuousNotAllowed,
    UnknownMessage {
        id: u16,
    },
}

/// What the PF does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Reset,
    SetMac(MacAddr),
    SetMulticast {
        hashes: [u16; MAX_MC_HASHES],
        count: u8,
    },
    SetVlan {
        vid: u16,
        add: bool,
    },
    SetMaxFrame(u16),
    Refuse(Refusal),
    /// Not a request (a reply echoed back): acknowledged, not answered, as Linux does.
    Ignore,
}

/// The decision for `req` from `vf` (pure: no device access).
pub fn decide(
    c: &PfConfig,
    vfs: &[VfState],
    vf: u8,
    req: Result<Request, DecodeError>,
) -> Decision {
    let (Some(cfg), Some(state)) = (c.vf(vf), vfs.get(usize::from(vf))) else {
        return Decision::Ignore;
    };
    let req = match req {
        Err(DecodeError::NotARequest { .. }) => return Decision::Ignore,
        Err(e) => return Decision::Refuse(Refusal::Malformed(e)),
        Ok(r) => r,
    };
    if req != Request::Reset && !state.cts {
        return Decision::Refuse(Refusal::NotClearToSend);
    }
    let refuse = Decision::Refuse;
    let p = cfg.policy;
    match req {
        Request::Reset => Decision::Reset,
        // igbvf sends its own address once after the reset: not a change.
        Request::SetMac(asked) if asked == state.mac => Decision::SetMac(asked),
        Request::SetMac(asked) if !p.allow_mac_change => {
            refuse(Refusal::MacChangeNotAllowed { asked })
        }
        Request::SetMac(asked) if !asked.is_unicast() => refuse(Refusal::MacNotUnicast { asked }),
        Request::SetMac(asked) => match owner_of(c, vfs, vf, asked) {
            Some(by) => refuse(Refusal::MacInUse { asked, by }),
            None => Decision::SetMac(asked),
        },
        Request::MacFilter(FilterOp::Clear | FilterOp::Add(_)) => {
            refuse(Refusal::MacFilterUnsupported)
        }
        Request::SetMulticast { .. } if !p.allow_multicast => refuse(Refusal::MulticastNotAllowed),
        Request::SetMulticast { hashes, count } => Decision::SetMulticast { hashes, count },
        Request::SetVlan { vid, .. } if !p.allow_vlan => refuse(Refusal::VlanNotAllowed { vid }),
        Request::SetVlan { vid, add } => Decision::SetVlan { vid, add },
        Request::SetLpe { max_frame } => match u16::try_from(max_frame) {
            Ok(f) if (64..=p.max_frame).contains(&f) => Decision::SetMaxFrame(f),
            _ => refuse(Refusal::FrameSize {
                asked: max_frame,
                max: p.max_frame,
            }),
        },
        Request::SetPromisc { .. } => refuse(Refusal::PromiscuousNotAllowed),
        Request::Unknown { id } => refuse(Refusal::UnknownMessage { id }),
    }
}

/// Who other than `vf` holds `mac`: another VF (now or by configuration) or the PF.
fn owner_of(c: &PfConfig, vfs: &[VfState], vf: u8, mac: MacAddr) -> Option<Owner> {
    (0..c.num_vfs)
        .filter(|&o| o != vf)
        .find(|&o| {
            let now = vfs.get(usize::from(o)).map(|s| s.mac);
            now == Some(mac) || c.vfs[usize::from(o)].mac == mac
        })
        .map(Owner::Vf)
}
