//! A synthetic bzImage for host tests. Fields are written at the absolute file offsets boot.rst
//! lists (not through `offset_of!`), so the tests also check the structure definitions.

/// Knobs of the synthetic image; `default()` looks like a small Debian kernel.
#[derive(Clone, Copy, Debug)]
pub struct TestImage {
    pub setup_sects: u8,
    pub version: u16,
    pub xloadflags: u16,
    pub pref_address: u64,
    pub kernel_alignment: u32,
    pub relocatable: u8,
    pub init_size: u32,
    pub initrd_addr_max: u32,
    pub cmdline_size: u32,
    /// Size of the protected-mode kernel, a multiple of 16.
    pub kernel_len: usize,
}

impl Default for TestImage {
    fn default() -> Self {
        Self {
            setup_sects: 3,
            version: 0x020F,
            xloadflags: 0x7F,
            pref_address: 0x100_0000,
            kernel_alignment: 0x20_0000,
            relocatable: 1,
            init_size: 0x40_0000,
            initrd_addr_max: 0x7FFF_FFFF,
            cmdline_size: 2047,
            kernel_len: 0x3000,
        }
    }
}

/// Byte `i` of the synthetic protected-mode kernel: a pattern that shows misplaced copies.
pub fn kernel_byte(i: usize) -> u8 {
    (i * 7 + 3) as u8
}

impl TestImage {
    /// The image bytes: setup sectors with the header, then the kernel pattern.
    pub fn build(&self) -> Vec<u8> {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            usize::from(self.setup_sects)
        };
        let kernel_at = (sects + 1) * 512;
        let mut v = vec![0u8; kernel_at + self.kernel_len];
        let mut put = |o: usize, b: &[u8]| v[o..o + b.len()].copy_from_slice(b);
        put(0x1F1, &[self.setup_sects]);
        put(0x1F4, &((self.kernel_len / 16) as u32).to_le_bytes());
        put(0x1FE, &[0x55, 0xAA]);
        put(0x200, &[0xEB, 0x6A]);
        put(0x202, b"HdrS");
        put(0x206, &self.version.to_le_bytes());
        put(0x211, &[0x01]); // LOADED_HIGH
        put(0x214, &0x10_0000u32.to_le_bytes());
        put(0x22C, &self.initrd_addr_max.to_le_bytes());
        put(0x230, &self.kernel_alignment.to_le_bytes());
        put(0x234, &[self.relocatable, 21]);
        put(0x236, &self.xloadflags.to_le_bytes());
        put(0x238, &self.cmdline_size.to_le_bytes());
        put(0x258, &self.pref_address.to_le_bytes());
        put(0x260, &self.init_size.to_le_bytes());
        put(0x264, &0x7C_8DB0u32.to_le_bytes());
        for i in 0..self.kernel_len {
            v[kernel_at + i] = kernel_byte(i);
        }
        v
    }
}
