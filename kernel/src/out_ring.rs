//! The hypervisor's console output queue: printing copies bytes in (under a short lock) and
//! whoever finds the UART free drains them out, so no core waits on a 115200-baud line while
//! holding a lock other code needs, and a full queue is the caller's to handle (the hypervisor's
//! own lines wait for room; lines a guest caused are dropped and counted).

/// A byte ring of `N` bytes.
pub struct ByteRing<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ByteRing<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn room(&self) -> usize {
        N - self.len
    }

    /// Whether `len` more bytes fit while leaving `keep_free` bytes free: guest-caused output is
    /// queued with a reserve kept free, so a guest that keeps the queue full can never starve
    /// the hypervisor's own messages (those are queued with no reserve and wait for room).
    pub fn fits(&self, len: usize, keep_free: usize) -> bool {
        len.saturating_add(keep_free) <= self.room()
    }

    /// Appends all of `bytes`, or nothing if they do not fit.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.room() {
            return false;
        }
        for &b in bytes {
            self.buf[(self.head + self.len) % N] = b;
            self.len += 1;
        }
        true
    }

    /// The oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_all_or_nothing_and_wrap() {
        let mut r = ByteRing::<8>::new();
        assert!(r.push(b"hello"));
        assert!(!r.push(b"world"), "does not fit: nothing taken");
        assert_eq!(r.len(), 5);
        assert_eq!((0..3).map(|_| r.pop().unwrap()).collect::<Vec<_>>(), b"hel");
        assert!(r.push(b"world"));
        let out: Vec<u8> = core::iter::from_fn(|| r.pop()).collect();
        assert_eq!(out, b"loworld");
        assert!(r.is_empty());
        assert_eq!(r.pop(), None);
        assert_eq!(r.room(), 8);
    }

    #[test]
    fn a_reserve_stays_free_for_others() {
        let mut r = ByteRing::<16>::new();
        assert!(r.push(b"0123456789"));
        // 6 bytes of room: a guest line that would eat into a 4-byte reserve does not fit, the
        // hypervisor's (no reserve) does.
        assert!(!r.fits(3, 4));
        assert!(r.fits(2, 4));
        assert!(r.fits(6, 0));
        assert!(!r.fits(7, 0));
        assert!(!r.fits(usize::MAX, 1));
    }
}
