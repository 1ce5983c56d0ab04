//! A guest's debug console (bytes written to the debug port) gathered into lines, so output of guests
//! running at the same time on different cores interleaves by line, not by byte.

pub const LINE_CAPACITY: usize = 160;

pub struct LineBuffer {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub const fn new() -> Self {
        LineBuffer {
            bytes: [0; LINE_CAPACITY],
            len: 0,
        }
    }

    /// Adds one byte; returns a finished line (without its newline) at '\n' or when the buffer is
    /// full. '\r' is dropped and other control bytes become '.', so a guest cannot drive the host's
    /// terminal.
    pub fn push(&mut self, b: u8) -> Option<&str> {
        match b {
            b'\n' => return Some(self.take()),
            b'\r' => return None,
            b if b == b'\t' || (0x20..0x7f).contains(&b) => self.bytes[self.len] = b,
            _ => self.bytes[self.len] = b'.',
        }
        self.len += 1;
        if self.len == LINE_CAPACITY {
            return Some(self.take());
        }
        None
    }

    /// What is left when the guest ends without a final newline.
    pub fn flush(&mut self) -> Option<&str> {
        (self.len > 0).then(|| self.take())
    }

    fn take(&mut self) -> &str {
        let len = core::mem::take(&mut self.len);
        // Only printable ASCII is stored.
        core::str::from_utf8(&self.bytes[..len]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_newline_and_sanitise() {
        let mut b = LineBuffer::new();
        let mut lines = Vec::new();
        for &c in b"hi\r\nx\x1b[2J\nrest" {
            if let Some(l) = b.push(c) {
                lines.push(l.to_string());
            }
        }
        assert_eq!(lines, ["hi", "x.[2J"]);
        assert_eq!(b.flush(), Some("rest"));
        assert_eq!(b.flush(), None);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut b = LineBuffer::new();
        let mut cut = None;
        for _ in 0..LINE_CAPACITY {
            if let Some(l) = b.push(b'a') {
                cut = Some(l.len());
            }
        }
        assert_eq!(cut, Some(LINE_CAPACITY));
    }
}
