//! Mailbox messages between a VF and the PF, as Linux `igbvf` (`mbx.h`, `vf.c`) and `igb`
//! (`e1000_mbx.h`, `igb_rcv_msg_from_vf`) define them. Word 0: message id 15:0, info 23:16,
//! CTS 29, NACK 30, ACK 31; the other words depend on the id. Decoding is total: any 16 words
//! give a [`Request`] or a [`DecodeError`], never a panic.

use crate::config::MacAddr;
use crate::regs::MAILBOX_WORDS;

/// A mailbox's contents.
pub type Words = [u32; MAILBOX_WORDS];

pub const ACK: u32 = 1 << 31;
pub const NACK: u32 = 1 << 30;
/// Clear to send: the VF has completed the reset handshake. The VF's link check needs it.
pub const CTS: u32 = 1 << 29;
pub const INFO_SHIFT: u32 = 16;
pub const INFO_MASK: u32 = 0xFF << INFO_SHIFT;
pub const ID_MASK: u32 = 0xFFFF;

/// Message ids (`E1000_VF_*`).
pub mod id {
    pub const RESET: u16 = 0x01;
    pub const SET_MAC_ADDR: u16 = 0x02;
    pub const SET_MULTICAST: u16 = 0x03;
    pub const SET_VLAN: u16 = 0x04;
    pub const SET_LPE: u16 = 0x05;
    pub const SET_PROMISC: u16 = 0x06;
}

/// SET_MAC_ADDR info values: extra unicast filters instead of the station address.
pub const MAC_FILTER_CLEAR: u8 = 1;
pub const MAC_FILTER_ADD: u8 = 2;

/// Hashes one SET_MULTICAST carries at most (`IGB_MAX_VF_MC_ENTRIES`): 15 words of two.
pub const MAX_MC_HASHES: usize = 30;

/// Extra unicast filter operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterOp {
    Clear,
    Add(MacAddr),
}

/// What a VF asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Reset,
    /// Change the station address (words 1-2, bytes in order).
    SetMac(MacAddr),
    /// An extra unicast filter.
    MacFilter(FilterOp),
    /// Multicast hashes (12-bit MTA indices), `count` of them.
    SetMulticast {
        hashes: [u16; MAX_MC_HASHES],
        count: u8,
    },
    /// Join (`add`) or leave VLAN `vid` (word 1).
    SetVlan {
        vid: u16,
        add: bool,
    },
    /// Largest frame the VF wants to receive (word 1).
    SetLpe {
        max_frame: u32,
    },
    /// Promiscuous modes (info bits), which a VF never gets here.
    SetPromisc {
        info: u8,
    },
    /// An id this PF does not know.
    Unknown {
        id: u16,
    },
}

impl Request {
    /// The id of word 0.
    pub fn id(&self) -> u16 {
        match self {
            Request::Reset => id::RESET,
            Request::SetMac(_) | Request::MacFilter(_) => id::SET_MAC_ADDR,
            Request::SetMulticast { .. } => id::SET_MULTICAST,
            Request::SetVlan { .. } => id::SET_VLAN,
            Request::SetLpe { .. } => id::SET_LPE,
            Request::SetPromisc { .. } => id::SET_PROMISC,
            Request::Unknown { id } => *id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Word 0 carries ACK or NACK: a reply, not a request (Linux ignores these too).
    NotARequest { word0: u32 },
    /// RESET with info bits or other words set where igbvf sends exactly `RESET`.
    ResetWithInfo { word0: u32 },
    /// SET_MULTICAST claims more than [`MAX_MC_HASHES`] hashes.
    TooManyHashes { count: u8 },
    /// A hash above 12 bits (the MTA has 4096 bits).
    HashOutOfRange { hash: u16 },
    /// A VLAN id above 4095.
    VlanOutOfRange { vid: u32 },
    /// An info value SET_MAC_ADDR does not define.
    UnknownMacInfo { info: u8 },
}

const fn info(word0: u32) -> u8 {
    ((word0 & INFO_MASK) >> INFO_SHIFT) as u8
}

fn mac_of(w: &Words) -> MacAddr {
    MacAddr::from_words(w[1], w[2])
}

/// Decodes a VF's message.
pub fn decode(w: &Words) -> Result<Request, DecodeError> {
    let word0 = w[0];
    if word0 & (ACK | NACK) != 0 {
        return Err(DecodeError::NotARequest { word0 });
    }
    let inf = info(word0);
    match (word0 & ID_MASK) as u16 {
        id::RESET if word0 & !ID_MASK != 0 => Err(DecodeError::ResetWithInfo { word0 }),
        id::RESET => Ok(Request::Reset),
        id::SET_MAC_ADDR => match inf {
            0 => Ok(Request::SetMac(mac_of(w))),
            MAC_FILTER_CLEAR => Ok(Request::MacFilter(FilterOp::Clear)),
            MAC_FILTER_ADD => Ok(Request::MacFilter(FilterOp::Add(mac_of(w)))),
            info => Err(DecodeError::UnknownMacInfo { info }),
        },
        id::SET_MULTICAST => {
            if usize::from(inf) > MAX_MC_HASHES {
                return Err(DecodeError::TooManyHashes { count: inf });
            }
            let mut hashes = [0u16; MAX_MC_HASHES];
            for (i, h) in hashes.iter_mut().take(usize::from(inf)).enumerate() {
                // Two per word after word 0, low half first (a u16 array in memory).
                let word = w[1 + i / 2];
                let hash = if i % 2 == 0 {
                    word as u16
                } else {
                    (word >> 16) as u16
                };
                if hash > 0xFFF {
                    return Err(DecodeError::HashOutOfRange { hash });
                }
                *h = hash;
            }
            Ok(Request::SetMulticast { hashes, count: inf })
        }
        id::SET_VLAN => {
            if w[1] > 0xFFF {
                return Err(DecodeError::VlanOutOfRange { vid: w[1] });
            }
            Ok(Request::SetVlan {
                vid: w[1] as u16,
                add: inf != 0,
            })
        }
        id::SET_LPE => Ok(Request::SetLpe { max_frame: w[1] }),
        id::SET_PROMISC => Ok(Request::SetPromisc { info: inf }),
        id => Ok(Request::Unknown { id }),
    }
}

/// Encodes a request as igbvf would send it (for tests and the fuzz corpus).
pub fn encode(r: &Request) -> Words {
    let mut w = [0u32; MAILBOX_WORDS];
    let id = u32::from(r.id());
    let with_info = |info: u8| id | u32::from(info) << INFO_SHIFT;
    match *r {
        Request::Reset | Request::Unknown { .. } => w[0] = id,
        Request::SetMac(mac) => {
            w[0] = id;
            (w[1], w[2]) = (mac.low(), mac.high());
        }
        Request::MacFilter(FilterOp::Clear) => w[0] = with_info(MAC_FILTER_CLEAR),
        Request::MacFilter(FilterOp::Add(mac)) => {
            w[0] = with_info(MAC_FILTER_ADD);
            (w[1], w[2]) = (mac.low(), mac.high());
        }
        Request::SetMulticast { hashes, count } => {
            w[0] = with_info(count);
            for (i, h) in hashes.iter().take(usize::from(count)).enumerate() {
                w[1 + i / 2] |= u32::from(*h) << (16 * (i % 2));
            }
        }
        Request::SetVlan { vid, add } => {
            w[0] = with_info(u8::from(add));
            w[1] = u32::from(vid);
        }
        Request::SetLpe { max_frame } => {
            w[0] = id;
            w[1] = max_frame;
        }
        Request::SetPromisc { info } => w[0] = with_info(info),
    }
    w
}

/// A reply: up to three words (the reset reply carries the MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub words: [u32; 3],
    pub len: u8,
}

impl Reply {
    pub fn words(&self) -> &[u32] {
        &self.words[..usize::from(self.len)]
    }
}

/// The reply to RESET: `RESET | ACK` (exactly: igbvf compares word 0 with it, no CTS) and the
/// VF's address, bytes 0-3 in word 1 and 4-5 in word 2.
pub fn reset_reply(mac: MacAddr) -> Reply {
    Reply {
        words: [u32::from(id::RESET) | ACK, mac.low(), mac.high()],
        len: 3,
    }
}

/// The one-word reply to any other message, as Linux `igb` sends it: the request's word 0 with
/// ACK or NACK, and CTS once the VF has been reset.
pub fn reply(word0: u32, ack: bool, cts: bool) -> Reply {
    let mut w = word0 & !(ACK | NACK | CTS);
    w |= if ack { ACK } else { NACK };
    if cts {
        w |= CTS;
    }
    Reply {
        words: [w, 0, 0],
        len: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(head: &[u32]) -> Words {
        let mut w = [0; MAILBOX_WORDS];
        w[..head.len()].copy_from_slice(head);
        w
    }

    #[test]
    fn decodes_what_igbvf_sends() {
        assert_eq!(decode(&words(&[1])), Ok(Request::Reset));
        let mac = MacAddr([0x52, 0x54, 0, 1, 2, 3]);
        assert_eq!(
            decode(&words(&[2, 0x0100_5452, 0x0302])),
            Ok(Request::SetMac(mac))
        );
        assert_eq!(
            decode(&words(&[2 | 2 << 16, 0x0100_5452, 0x0302])),
            Ok(Request::MacFilter(FilterOp::Add(mac)))
        );
        assert_eq!(
            decode(&words(&[2 | 1 << 16])),
            Ok(Request::MacFilter(FilterOp::Clear))
        );
        assert_eq!(
            decode(&words(&[4 | 1 << 16, 100])),
            Ok(Request::SetVlan {
                vid: 100,
                add: true
            })
        );
        assert_eq!(
            decode(&words(&[5, 1522])),
            Ok(Request::SetLpe { max_frame: 1522 })
        );
        assert_eq!(decode(&words(&[0x100])), Ok(Request::Unknown { id: 0x100 }));
    }

    #[test]
    fn multicast_hashes_are_two_per_word_low_first() {
        let Ok(Request::SetMulticast { hashes, count }) =
            decode(&words(&[3 | 3 << 16, 0x0222_0111, 0x0333]))
        else {
            panic!()
        };
        assert_eq!((count, &hashes[..3]), (3, &[0x111, 0x222, 0x333][..]));
        assert_eq!(
            decode(&words(&[3 | 31 << 16])),
            Err(DecodeError::TooManyHashes { count: 31 })
        );
        assert_eq!(
            decode(&words(&[3 | 1 << 16, 0x1000])),
            Err(DecodeError::HashOutOfRange { hash: 0x1000 })
        );
    }

    #[test]
    fn refuses_replies_and_malformed_requests() {
        assert_eq!(
            decode(&words(&[1 | ACK])),
            Err(DecodeError::NotARequest { word0: 1 | ACK })
        );
        assert_eq!(
            decode(&words(&[1 | 1 << 16])),
            Err(DecodeError::ResetWithInfo { word0: 1 | 1 << 16 })
        );
        assert_eq!(
            decode(&words(&[4, 4096])),
            Err(DecodeError::VlanOutOfRange { vid: 4096 })
        );
        assert_eq!(
            decode(&words(&[2 | 3 << 16])),
            Err(DecodeError::UnknownMacInfo { info: 3 })
        );
    }

    #[test]
    fn encode_round_trips() {
        let mac = MacAddr([2, 4, 6, 8, 10, 12]);
        let mut hashes = [0; MAX_MC_HASHES];
        hashes[..3].copy_from_slice(&[1, 0xFFF, 7]);
        for r in [
            Request::Reset,
            Request::SetMac(mac),
            Request::MacFilter(FilterOp::Clear),
            Request::MacFilter(FilterOp::Add(mac)),
            Request::SetMulticast { hashes, count: 3 },
            Request::SetVlan {
                vid: 4095,
                add: false,
            },
            Request::SetLpe { max_frame: 9000 },
            Request::SetPromisc { info: 2 },
            Request::Unknown { id: 0x77 },
        ] {
            assert_eq!(decode(&encode(&r)), Ok(r));
        }
    }

    #[test]
    fn replies() {
        let r = reset_reply(MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(r.words(), &[0x8000_0001, 0x0403_0201, 0x0605]);
        assert_eq!(reply(3 | 2 << 16, true, true).words(), &[0xA002_0003]);
        assert_eq!(reply(4 | CTS, false, false).words(), &[0x4000_0004]);
    }
}
