//! What the configuration decides for an igb PF and its VFs: how many VFs, each VF's MAC
//! address (given, or derived stably from a seed and the VF's index), and what each VF may
//! change through the mailbox. Checked once, before the device is touched, so a bad
//! configuration is a clear error and not a guest that cannot reach its network.

use crate::regs::MAX_POOLS;

/// An Ethernet MAC address, bytes in transmission order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Bit 0 of the first byte: a group (multicast/broadcast) address (IEEE 802).
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Bit 1 of the first byte: locally administered.
    pub const fn is_local(self) -> bool {
        self.0[0] & 2 != 0
    }

    pub const fn is_zero(self) -> bool {
        u64::from_le_bytes([
            self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5], 0, 0,
        ]) == 0
    }

    /// Usable as a station address: neither zero nor a group address.
    pub const fn is_unicast(self) -> bool {
        !self.is_zero() && !self.is_multicast()
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (hex digits of either case, `:` or `-` between bytes).
    pub fn parse(s: &str) -> Result<MacAddr, ConfigError> {
        let b = s.as_bytes();
        if b.len() != 17 {
            return Err(ConfigError::MacMalformed);
        }
        let mut mac = [0u8; 6];
        for (i, byte) in mac.iter_mut().enumerate() {
            let at = 3 * i;
            if i > 0 && !matches!(b[at - 1], b':' | b'-') {
                return Err(ConfigError::MacMalformed);
            }
            let hi = hex(b[at]).ok_or(ConfigError::MacMalformed)?;
            let lo = hex(b[at + 1]).ok_or(ConfigError::MacMalformed)?;
            *byte = hi << 4 | lo;
        }
        Ok(MacAddr(mac))
    }

    /// A locally administered unicast address that depends only on `seed` and `vf`, so a guest
    /// keeps its address across hypervisor boots: `02:s:s:s:s:vf`, the middle four bytes from
    /// a 64-bit FNV-1a hash of the seed.
    pub fn derived(seed: u64, vf: u8) -> MacAddr {
        let h = seed
            .to_le_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
        let s = h.to_le_bytes();
        MacAddr([0x02, s[0], s[1], s[2], s[3], vf])
    }

    /// Bytes 0-3 as RAL holds them (byte 0 in bits 7:0); also word 1 of the reset reply.
    pub const fn low(self) -> u32 {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// Bytes 4-5 as RAH bits 15:0 hold them; also word 2 of the reset reply.
    pub const fn high(self) -> u32 {
        u32::from_le_bytes([self.0[4], self.0[5], 0, 0])
    }

    /// The address from RAL/RAH-style words.
    pub const fn from_words(low: u32, high: u32) -> MacAddr {
        let l = low.to_le_bytes();
        let h = high.to_le_bytes();
        MacAddr([l[0], l[1], l[2], l[3], h[0], h[1]])
    }
}

/// `aa:bb:cc:dd:ee:ff`, what [`MacAddr::parse`] reads back.
impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The same as Display, so logged decisions read `SetMac(52:54:00:12:34:56)`.
impl core::fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Zero VFs, or more than the device has or the PF's own traffic leaves (see [`max_vfs`]).
    VfCount { requested: usize, max: u8 },
    /// Not six hex bytes separated by `:` or `-`.
    MacMalformed,
    /// A group address (bit 0 of the first byte) or all zeros: not a station address.
    MacNotUnicast { vf: u8, mac: MacAddr },
    /// Two VFs (or a VF and the PF) with one address: frames would reach only one of them.
    MacDuplicate { vf: u8, other: Owner, mac: MacAddr },
    /// A maximum frame size outside 64..=[`MAX_FRAME`].
    MaxFrame { vf: u8, bytes: u16 },
}

/// Who else holds an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Vf(u8),
    Pf,
}

/// The largest frame a VF may ask for with SET_LPE (a 9000-byte MTU plus Ethernet and VLAN
/// headers and the FCS, rounded up); VMOLR.RLPML could hold up to 16383.
pub const MAX_FRAME: u16 = 9216;
/// A standard frame: 1500 bytes of payload, header, VLAN tag and FCS.
pub const STANDARD_FRAME: u16 = 1522;

/// What a VF may do through the mailbox beyond the reset handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfPolicy {
    /// SET_MAC_ADDR may change the VF's address (off: anti-spoofing, the address the
    /// configuration chose is the only one the VF gets).
    pub allow_mac_change: bool,
    /// SET_VLAN may add the VF's pool to VLAN filters.
    pub allow_vlan: bool,
    /// SET_MULTICAST may put hashes into the shared MTA.
    pub allow_multicast: bool,
    /// The largest frame SET_LPE may set.
    pub max_frame: u16,
}

impl VfPolicy {
    /// The default: fixed MAC, no VLANs, multicast allowed (IPv6 needs it), jumbo frames.
    pub const DEFAULT: VfPolicy = VfPolicy {
        allow_mac_change: false,
        allow_vlan: false,
        allow_multicast: true,
        max_frame: MAX_FRAME,
    };
}

/// One VF as the configuration asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfRequest {
    /// `None`: [`MacAddr::derived`] from the configuration's seed.
    pub mac: Option<MacAddr>,
    pub policy: VfPolicy,
}

/// One VF as decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfConfig {
    pub mac: MacAddr,
    pub policy: VfPolicy,
}

/// The whole decision, made only by [`plan`] (so 1 ≤ `num_vfs` ≤ 8 and the addresses are
/// checked): VF n is `vfs[n]`, n < `num_vfs`; pool n is VF n's, pool `num_vfs` the PF's when
/// it has traffic of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PfConfig {
    pub(crate) num_vfs: u8,
    /// The PF sends and receives itself: it needs a pool whose queues no VF owns.
    pub(crate) pf_traffic: bool,
    pub(crate) vfs: [VfConfig; MAX_POOLS as usize],
}

impl PfConfig {
    pub fn num_vfs(&self) -> u8 {
        self.num_vfs
    }

    pub fn pf_traffic(&self) -> bool {
        self.pf_traffic
    }

    /// The PF's pool, if it has traffic.
    pub fn pf_pool(&self) -> Option<u8> {
        self.pf_traffic.then_some(self.num_vfs)
    }

    pub fn vf(&self, vf: u8) -> Option<&VfConfig> {
        (vf < self.num_vfs).then(|| &self.vfs[usize::from(vf)])
    }
}

/// The most VFs: 8, or 7 when the PF needs traffic of its own. Queue q DMAs as VF q % 8
/// whenever that VF exists (docs/igb.md), so the PF's queues must have q % 8 ≥ NumVFs.
pub const fn max_vfs(pf_traffic: bool) -> u8 {
    if pf_traffic {
        MAX_POOLS - 1
    } else {
        MAX_POOLS
    }
}

/// Decides the VFs of one PF: count, addresses (given or derived from `seed`), uniqueness
/// among the VFs and against `pf_mac` (the PF's own address, when known).
pub fn plan(
    requests: &[VfRequest],
    pf_traffic: bool,
    pf_mac: Option<MacAddr>,
    seed: u64,
) -> Result<PfConfig, ConfigError> {
    let max = max_vfs(pf_traffic);
    if requests.is_empty() || requests.len() > usize::from(max) {
        return Err(ConfigError::VfCount {
            requested: requests.len(),
            max,
        });
    }
    let unused = VfConfig {
        mac: MacAddr::ZERO,
        policy: VfPolicy::DEFAULT,
    };
    let mut vfs = [unused; MAX_POOLS as usize];
    for (i, r) in requests.iter().enumerate() {
        let vf = i as u8;
        let mac = r.mac.unwrap_or_else(|| MacAddr::derived(seed, vf));
        if !mac.is_unicast() {
            return Err(ConfigError::MacNotUnicast { vf, mac });
        }
        if !(64..=MAX_FRAME).contains(&r.policy.max_frame) {
            return Err(ConfigError::MaxFrame {
                vf,
                bytes: r.policy.max_frame,
            });
        }
        if pf_mac == Some(mac) {
            return Err(ConfigError::MacDuplicate {
                vf,
                other: Owner::Pf,
                mac,
            });
        }
        if let Some(other) = vfs[..i].iter().position(|v| v.mac == mac) {
            return Err(ConfigError::MacDuplicate {
                vf,
                other: Owner::Vf(other as u8),
                mac,
            });
        }
        vfs[i] = VfConfig {
            mac,
            policy: r.policy,
        };
    }
    Ok(PfConfig {
        num_vfs: requests.len() as u8,
        pf_traffic,
        vfs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(mac: Option<&str>) -> VfRequest {
        VfRequest {
            mac: mac.map(|m| MacAddr::parse(m).unwrap()),
            policy: VfPolicy::DEFAULT,
        }
    }

    #[test]
    fn parses_and_refuses_addresses() {
        let m = MacAddr::parse("52:54:00:Ab:cd:EF").unwrap();
        assert_eq!(m, MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 0xef]));
        assert_eq!(MacAddr::parse("52-54-00-ab-cd-ef"), Ok(m));
        assert_eq!(m.to_string(), "52:54:00:ab:cd:ef");
        assert_eq!(MacAddr::parse(&m.to_string()), Ok(m));
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:eg",
            "52:54:00:ab:cd:ef:",
            "5254.00:ab:cd:ef",
        ] {
            assert_eq!(MacAddr::parse(bad), Err(ConfigError::MacMalformed), "{bad}");
        }
    }

    #[test]
    fn words_round_trip() {
        let m = MacAddr([1, 2, 3, 4, 5, 6]);
        assert_eq!(m.low(), 0x0403_0201);
        assert_eq!(m.high(), 0x0605);
        assert_eq!(MacAddr::from_words(m.low(), m.high() | 0x8000_0000), m);
    }

    #[test]
    fn derived_addresses_are_stable_local_unicast_and_distinct() {
        let a = MacAddr::derived(42, 0);
        assert_eq!(a, MacAddr::derived(42, 0));
        assert!(a.is_local() && a.is_unicast());
        assert_ne!(a, MacAddr::derived(42, 1));
        assert_ne!(a, MacAddr::derived(43, 0));
    }

    #[test]
    fn plan_fills_in_derived_addresses() {
        let c = plan(&[req(Some("52:54:00:00:00:01")), req(None)], false, None, 7).unwrap();
        assert_eq!(c.num_vfs, 2);
        assert_eq!(c.vfs[1].mac, MacAddr::derived(7, 1));
        assert_eq!(c.pf_pool(), None);
        assert!(c.vf(2).is_none());
    }

    #[test]
    fn vf_count_is_bounded_by_the_pf_traffic() {
        let eight = [req(None); 8];
        assert!(plan(&eight, false, None, 1).is_ok());
        assert_eq!(
            plan(&eight, true, None, 1),
            Err(ConfigError::VfCount {
                requested: 8,
                max: 7
            })
        );
        assert_eq!(plan(&eight[..7], true, None, 1).unwrap().pf_pool(), Some(7));
        assert_eq!(
            plan(&[], false, None, 1),
            Err(ConfigError::VfCount {
                requested: 0,
                max: 8
            })
        );
    }

    #[test]
    fn refuses_group_zero_and_duplicate_addresses() {
        let multi = MacAddr::parse("01:00:5e:00:00:01").unwrap();
        assert_eq!(
            plan(&[req(Some("01:00:5e:00:00:01"))], false, None, 1),
            Err(ConfigError::MacNotUnicast { vf: 0, mac: multi })
        );
        assert!(matches!(
            plan(&[req(Some("00:00:00:00:00:00"))], false, None, 1),
            Err(ConfigError::MacNotUnicast { .. })
        ));
        let m = MacAddr::parse("52:54:00:00:00:01").unwrap();
        let twice = [
            req(None),
            req(Some("52:54:00:00:00:01")),
            req(Some("52:54:00:00:00:01")),
        ];
        assert_eq!(
            plan(&twice, false, None, 1),
            Err(ConfigError::MacDuplicate {
                vf: 2,
                other: Owner::Vf(1),
                mac: m
            })
        );
        assert_eq!(
            plan(&twice[1..2], false, Some(m), 1),
            Err(ConfigError::MacDuplicate {
                vf: 0,
                other: Owner::Pf,
                mac: m
            })
        );
    }

    #[test]
    fn refuses_frame_limits_out_of_range() {
        let mut r = req(None);
        r.policy.max_frame = MAX_FRAME + 1;
        assert_eq!(
            plan(&[r], false, None, 1),
            Err(ConfigError::MaxFrame {
                vf: 0,
                bytes: MAX_FRAME + 1
            })
        );
    }
}
