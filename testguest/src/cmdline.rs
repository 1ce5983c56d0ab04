//! The test guest's command line: whitespace-separated words, of which it reads
//!
//! - `end=poweroff|triple-fault|reset|halt|nvme-dma`: how the run ends (the first `end=` word
//!   counts; none means `poweroff`, the full check sequence);
//! - `canary=0xADDR` (up to [`MAX_CANARIES`], hex, `0x` optional): guest-physical addresses outside
//!   the guest's RAM that `end=nvme-dma` points NVMe data transfers at.
//!
//! Other words are ignored.

use core::fmt;

/// How many `canary=` words the guest takes.
pub const MAX_CANARIES: usize = 4;

/// How the guest ends, from `end=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The checks (CPUID, RAM, accesses outside RAM), then ACPI power-off.
    PowerOff,
    TripleFault,
    Reset,
    Halt,
    /// Drive the passed-through NVMe VF at 00:01.0, DMA inside and outside RAM, then power-off.
    NvmeDma,
}

/// The `canary=` addresses, in command line order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Canaries {
    addrs: [u64; MAX_CANARIES],
    len: usize,
}

impl Canaries {
    pub fn as_slice(&self) -> &[u64] {
        &self.addrs[..self.len]
    }

    fn push(&mut self, addr: u64) -> bool {
        match self.addrs.get_mut(self.len) {
            Some(slot) => {
                *slot = addr;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub ending: Ending,
    pub canaries: Canaries,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// The value of `end=` is none of the known endings.
    UnknownEnding(&'a str),
    /// The value of a `canary=` word is not a hex address.
    BadCanary(&'a str),
    /// More than [`MAX_CANARIES`] `canary=` words.
    TooManyCanaries,
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::UnknownEnding(v) => write!(f, "unknown ending \"{v}\""),
            CmdlineError::BadCanary(v) => write!(f, "bad canary address \"{v}\""),
            CmdlineError::TooManyCanaries => {
                write!(f, "more than {MAX_CANARIES} canary addresses")
            }
        }
    }
}

/// Parses the whole command line.
pub fn parse(cmdline: &str) -> Result<Command, CmdlineError<'_>> {
    let ending = match cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("end="))
    {
        None | Some("poweroff") => Ending::PowerOff,
        Some("triple-fault") => Ending::TripleFault,
        Some("reset") => Ending::Reset,
        Some("halt") => Ending::Halt,
        Some("nvme-dma") => Ending::NvmeDma,
        Some(other) => return Err(CmdlineError::UnknownEnding(other)),
    };
    let mut canaries = Canaries::default();
    for value in cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("canary="))
    {
        let addr = parse_hex(value).ok_or(CmdlineError::BadCanary(value))?;
        if !canaries.push(addr) {
            return Err(CmdlineError::TooManyCanaries);
        }
    }
    Ok(Command { ending, canaries })
}

/// A hex number of 1 to 16 digits, with an optional `0x`/`0X` prefix and nothing else (no sign,
/// no separators).
pub fn parse_hex(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(cmdline: &str) -> Ending {
        parse(cmdline).unwrap().ending
    }

    #[test]
    fn endings() {
        assert_eq!(ending(""), Ending::PowerOff);
        assert_eq!(ending("foo bar"), Ending::PowerOff);
        assert_eq!(ending("end=poweroff"), Ending::PowerOff);
        assert_eq!(ending("end=triple-fault"), Ending::TripleFault);
        assert_eq!(ending("x end=reset y"), Ending::Reset);
        assert_eq!(ending("end=halt"), Ending::Halt);
        assert_eq!(ending("  end=nvme-dma\t"), Ending::NvmeDma);
        // The first end= counts.
        assert_eq!(ending("end=halt end=reset"), Ending::Halt);
        assert_eq!(parse("end=nvme"), Err(CmdlineError::UnknownEnding("nvme")));
        assert_eq!(parse("end="), Err(CmdlineError::UnknownEnding("")));
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("0x0"), Some(0));
        assert_eq!(parse_hex("0X1f"), Some(0x1f));
        assert_eq!(parse_hex("fee00000"), Some(0xfee0_0000));
        assert_eq!(parse_hex("0x1_0000"), None);
        assert_eq!(parse_hex("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_hex("0x10000000000000000"), None);
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex(""), None);
        assert_eq!(parse_hex("+1"), None);
        assert_eq!(parse_hex("0x+1"), None);
        assert_eq!(parse_hex("0xg"), None);
        assert_eq!(parse_hex("-0x1"), None);
    }

    #[test]
    fn canaries() {
        let c = parse("end=nvme-dma canary=0x7fe00000 canary=0x1_0000_0000").unwrap_err();
        assert_eq!(c, CmdlineError::BadCanary("0x1_0000_0000"));
        let c = parse("canary=0x7fe00000 end=nvme-dma canary=0x2001000").unwrap();
        assert_eq!(c.ending, Ending::NvmeDma);
        assert_eq!(c.canaries.as_slice(), &[0x7fe0_0000, 0x200_1000]);
        let four = "end=nvme-dma canary=1 canary=2 canary=3 canary=4";
        assert_eq!(parse(four).unwrap().canaries.as_slice(), &[1, 2, 3, 4]);
        assert_eq!(
            parse(&format!("{four} canary=5")),
            Err(CmdlineError::TooManyCanaries)
        );
        assert_eq!(parse("end=nvme-dma").unwrap().canaries.as_slice(), &[]);
        assert_eq!(parse("canary="), Err(CmdlineError::BadCanary("")));
        // Words that only contain "canary" are not canary words.
        assert_eq!(parse("xcanary=zz").unwrap().canaries.as_slice(), &[]);
    }

    #[test]
    fn error_text() {
        assert_eq!(
            CmdlineError::UnknownEnding("x").to_string(),
            "unknown ending \"x\""
        );
        assert_eq!(
            CmdlineError::BadCanary("0xq").to_string(),
            "bad canary address \"0xq\""
        );
        assert_eq!(
            CmdlineError::TooManyCanaries.to_string(),
            "more than 4 canary addresses"
        );
    }
}
