//! Little-endian field readers over untrusted byte slices.
//!
//! Each returns `None` instead of panicking when the field would run past the
//! end of the slice, so parsers can use `?` on every field read.

/// The `N` bytes at `offset`.
pub fn array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

/// The byte at `offset`.
pub fn u8_at(bytes: &[u8], offset: usize) -> Option<u8> {
    bytes.get(offset).copied()
}

/// The little-endian `u16` at `offset`.
pub fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    array(bytes, offset).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `offset`.
pub fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    array(bytes, offset).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `offset`.
pub fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    array(bytes, offset).map(u64::from_le_bytes)
}

/// True when the bytes add up to zero modulo 256, the ACPI checksum rule
/// (ACPI 6.5 §5.2.5.3 and §5.2.6).
pub fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields() {
        let b = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09];
        assert_eq!(u8_at(&b, 8), Some(0x09));
        assert_eq!(u16_at(&b, 1), Some(0x0302));
        assert_eq!(u32_at(&b, 0), Some(0x0403_0201));
        assert_eq!(u64_at(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(array::<3>(&b, 6), Some([7, 8, 9]));
    }

    #[test]
    fn out_of_range_reads_are_none() {
        let b = [0u8; 4];
        assert_eq!(u8_at(&b, 4), None);
        assert_eq!(u16_at(&b, 3), None);
        assert_eq!(u32_at(&b, 1), None);
        assert_eq!(u64_at(&b, 0), None);
        assert_eq!(array::<1>(&b, usize::MAX), None);
    }

    #[test]
    fn checksum_rule() {
        assert!(sums_to_zero(&[]));
        assert!(sums_to_zero(&[0x80, 0x80]));
        assert!(!sums_to_zero(&[0x80, 0x7f]));
    }
}
