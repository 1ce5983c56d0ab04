//! Access to the physical memory the boot loader left its information in.

/// Reads physical memory. The kernel implements it over its identity map; host tests over a buffer.
pub trait Memory {
    /// The `len` bytes at physical address `addr`, or `None` when that range cannot be read.
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]>;

    fn u32_at(&self, addr: u64) -> Option<u32> {
        self.bytes(addr, 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_at(&self, addr: u64) -> Option<u64> {
        let b = self.bytes(addr, 8)?;
        let mut v = [0u8; 8];
        v.copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    }

    /// A NUL-terminated string of at most `max` bytes (lossy: invalid UTF-8 becomes '?').
    fn c_string<const N: usize>(&self, addr: u64) -> Option<crate::FixedString<N>> {
        let mut s = crate::FixedString::new();
        for i in 0..N as u64 {
            let b = self.bytes(addr + i, 1)?[0];
            if b == 0 {
                return Some(s);
            }
            s.push_byte(b);
        }
        Some(s)
    }
}

#[cfg(test)]
pub(crate) mod fake {
    /// A block of fake physical memory at `base`.
    pub struct FakeMemory {
        pub base: u64,
        pub data: Vec<u8>,
    }

    impl FakeMemory {
        pub fn new(base: u64, size: usize) -> Self {
            FakeMemory {
                base,
                data: vec![0; size],
            }
        }
        pub fn put(&mut self, addr: u64, bytes: &[u8]) {
            let off = (addr - self.base) as usize;
            self.data[off..off + bytes.len()].copy_from_slice(bytes);
        }
        pub fn put_u32(&mut self, addr: u64, v: u32) {
            self.put(addr, &v.to_le_bytes());
        }
        pub fn put_u64(&mut self, addr: u64, v: u64) {
            self.put(addr, &v.to_le_bytes());
        }
    }

    impl super::Memory for FakeMemory {
        fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
            let off = addr.checked_sub(self.base)? as usize;
            self.data.get(off..off.checked_add(len)?)
        }
    }
}
