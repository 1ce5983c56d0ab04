//! A string of bounded capacity that needs no allocator.

/// UTF-8 text of at most `N` bytes; longer input is cut at a character boundary and marked truncated.
#[derive(Clone, Copy)]
pub struct FixedString<const N: usize> {
    bytes: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> FixedString<N> {
    pub const fn new() -> Self {
        FixedString {
            bytes: [0; N],
            len: 0,
            truncated: false,
        }
    }

    pub fn from_str_lossy(s: &str) -> Self {
        let mut f = Self::new();
        for b in s.bytes() {
            f.push_byte(b);
        }
        f
    }

    /// Appends one byte of (possibly invalid) UTF-8; non-ASCII bytes become '?' so the text stays valid.
    pub fn push_byte(&mut self, b: u8) {
        if self.len == N {
            self.truncated = true;
            return;
        }
        self.bytes[self.len] = if b.is_ascii() { b } else { b'?' };
        self.len += 1;
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> Default for FixedString<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Debug for FixedString<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> core::fmt::Display for FixedString<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ascii_and_replaces_the_rest() {
        let s = FixedString::<8>::from_str_lossy("ab\u{e9}c");
        assert_eq!(s.as_str(), "ab??c");
        assert!(!s.is_truncated());
    }

    #[test]
    fn marks_truncation() {
        let s = FixedString::<3>::from_str_lossy("abcdef");
        assert_eq!(s.as_str(), "abc");
        assert!(s.is_truncated());
    }
}
