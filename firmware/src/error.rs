//! The one error type of this crate.

use crate::sdt::Signature;
use core::fmt;

/// Why ACPI discovery failed. Every malformed firmware byte ends up here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No valid RSDP in the EBDA or the BIOS ROM area (ACPI 6.5 §5.2.5.1).
    NoRsdp,
    /// The bytes given as an RSDP do not start with `"RSD PTR "`.
    RsdpSignature,
    /// The RSDP fails its 20-byte checksum or (revision >= 2) its extended
    /// checksum, or its length field is out of range.
    RsdpChecksum,
    /// The memory accessor refused this physical range.
    Unreadable {
        /// Start of the range.
        phys: u64,
        /// Its length in bytes.
        len: usize,
    },
    /// A table's bytes do not sum to zero.
    BadChecksum {
        /// The table's signature.
        sig: Signature,
    },
    /// A table's length field is shorter than its fixed part or implausibly
    /// long.
    BadLength {
        /// The table's signature.
        sig: Signature,
        /// The length field.
        len: u32,
    },
    /// A table was expected at an address but another one is there.
    WrongSignature {
        /// What the caller asked for.
        expected: Signature,
        /// What the header says.
        found: Signature,
    },
    /// No table with this signature is listed in the RSDT/XSDT.
    TableMissing(Signature),
    /// The bytes end inside a structure (shorter than its fixed part).
    Truncated {
        /// The table the structure belongs to.
        sig: Signature,
    },
    /// A sub-structure inside a table has a length that is too small for its
    /// type or runs past the end of the table.
    BadEntryLength {
        /// The table.
        sig: Signature,
        /// Byte offset of the entry from the start of the table.
        offset: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoRsdp => write!(f, "no ACPI RSDP found"),
            Error::RsdpSignature => write!(f, "RSDP signature is not \"RSD PTR \""),
            Error::RsdpChecksum => write!(f, "RSDP checksum or length is wrong"),
            Error::Unreadable { phys, len } => {
                write!(f, "physical range {phys:#x}+{len:#x} is not readable")
            }
            Error::BadChecksum { sig } => write!(f, "ACPI table {sig}: bad checksum"),
            Error::BadLength { sig, len } => write!(f, "ACPI table {sig}: bad length {len}"),
            Error::WrongSignature { expected, found } => {
                write!(f, "expected ACPI table {expected}, found {found}")
            }
            Error::TableMissing(sig) => write!(f, "ACPI table {sig} not present"),
            Error::Truncated { sig } => write!(f, "ACPI table {sig}: truncated"),
            Error::BadEntryLength { sig, offset } => {
                write!(
                    f,
                    "ACPI table {sig}: bad entry length at offset {offset:#x}"
                )
            }
        }
    }
}
