//! Test helpers: fake physical memory and byte-by-byte table builders.

use crate::PhysMem;

/// Physical memory made of a few `Vec`s, each at its own fake base address.
pub struct FakeMem {
    regions: Vec<(u64, Vec<u8>)>,
}

impl FakeMem {
    /// One region holding `bytes` at `base`.
    pub fn new(base: u64, bytes: &[u8]) -> Self {
        Self {
            regions: vec![(base, bytes.to_vec())],
        }
    }

    /// No memory at all.
    pub fn empty() -> Self {
        Self {
            regions: Vec::new(),
        }
    }

    /// Adds a region holding `bytes` at `base`.
    pub fn with(mut self, base: u64, bytes: &[u8]) -> Self {
        self.regions.push((base, bytes.to_vec()));
        self
    }

    /// Overwrites bytes at `phys`, which must lie inside one region.
    pub fn write(&mut self, phys: u64, bytes: &[u8]) {
        let (base, data) = self
            .regions
            .iter_mut()
            .find(|(base, data)| {
                phys >= *base && phys + bytes.len() as u64 <= *base + data.len() as u64
            })
            .expect("write outside fake memory");
        let start = (phys - *base) as usize;
        data[start..start + bytes.len()].copy_from_slice(bytes);
    }
}

impl PhysMem for FakeMem {
    fn bytes(&self, phys: u64, len: usize) -> Option<&[u8]> {
        self.regions.iter().find_map(|(base, data)| {
            let start = usize::try_from(phys.checked_sub(*base)?).ok()?;
            data.get(start..start.checked_add(len)?)
        })
    }
}

/// Little-endian byte pusher for building tables field by field.
#[derive(Default)]
pub struct Blob(pub Vec<u8>);

impl Blob {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// A complete table: 36-byte header (ACPI 6.5 §5.2.6) followed by `body`,
/// with length and checksum filled in.
pub fn table(sig: [u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut b = Blob::default();
    b.raw(&sig)
        .u32((36 + body.len()) as u32)
        .u8(revision)
        .u8(0) // checksum, fixed below
        .raw(b"DIDVSR")
        .raw(b"TESTTBL ")
        .u32(0x0102_0304)
        .raw(b"RUST")
        .u32(7)
        .raw(body);
    let mut t = b.0;
    fix_checksum(&mut t, 9);
    t
}

/// Sets the byte at `at` so that all of `bytes` sums to zero.
pub fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    bytes[at] = 0u8.wrapping_sub(sum);
}
