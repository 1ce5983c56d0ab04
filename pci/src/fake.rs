//! A fake ECAM for the host tests: functions built byte by byte, each byte with a write mask
//! (as QEMU's `wmask`), so BAR sizing works by itself. The SR-IOV PF brings its VFs to life when
//! VF Enable is set, the way QEMU's `pcie_sriov` does, and the fake counts BAR sizing writes made
//! while the function decodes.

use std::collections::BTreeMap;

use super::{Bdf, ConfigAccess};

pub struct FakeFunction {
    pub data: [u8; 4096],
    pub wmask: [u8; 4096],
}

impl FakeFunction {
    /// A function with every byte 0 and read-only.
    pub fn new() -> Self {
        FakeFunction {
            data: [0; 4096],
            wmask: [0; 4096],
        }
    }

    pub fn put8(&mut self, at: usize, v: u8) -> &mut Self {
        self.data[at] = v;
        self
    }

    pub fn put16(&mut self, at: usize, v: u16) -> &mut Self {
        self.data[at..at + 2].copy_from_slice(&v.to_le_bytes());
        self
    }

    pub fn put32(&mut self, at: usize, v: u32) -> &mut Self {
        self.data[at..at + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    /// Marks the bits of `mask` in the dword at `at` writable.
    pub fn writable32(&mut self, at: usize, mask: u32) -> &mut Self {
        self.wmask[at..at + 4].copy_from_slice(&mask.to_le_bytes());
        self
    }

    pub fn writable16(&mut self, at: usize, mask: u16) -> &mut Self {
        self.wmask[at..at + 2].copy_from_slice(&mask.to_le_bytes());
        self
    }

    pub fn get32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.data[at..at + 4].try_into().unwrap())
    }

    pub fn get16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.data[at..at + 2].try_into().unwrap())
    }
}

/// An SR-IOV PF the fake animates.
struct SriovPf {
    pf: Bdf,
    cap: usize,
    /// Builds VF n's configuration space.
    make_vf: fn(u16) -> FakeFunction,
}

#[derive(Default)]
pub struct FakeEcam {
    pub functions: BTreeMap<u16, FakeFunction>,
    sriov: Vec<SriovPf>,
    /// Writes of all ones to a BAR register while the function decoded memory or I/O (or, for
    /// VF BARs, while VF MSE was set).
    pub sizing_while_decoding: u32,
    pub writes: Vec<(Bdf, u16, u32)>,
}

impl FakeEcam {
    pub fn add(&mut self, bdf: Bdf, f: FakeFunction) {
        self.functions.insert(bdf.routing_id(), f);
    }

    pub fn add_sriov_pf(
        &mut self,
        bdf: Bdf,
        f: FakeFunction,
        cap: usize,
        make_vf: fn(u16) -> FakeFunction,
    ) {
        self.add(bdf, f);
        self.sriov.push(SriovPf {
            pf: bdf,
            cap,
            make_vf,
        });
    }

    pub fn function(&self, bdf: Bdf) -> &FakeFunction {
        &self.functions[&bdf.routing_id()]
    }

    pub fn function_mut(&mut self, bdf: Bdf) -> &mut FakeFunction {
        self.functions.get_mut(&bdf.routing_id()).unwrap()
    }

    fn after_write(&mut self, bdf: Bdf, offset: usize) {
        for i in 0..self.sriov.len() {
            let (pf, cap, make_vf) = (self.sriov[i].pf, self.sriov[i].cap, self.sriov[i].make_vf);
            if pf != bdf || offset != cap + 8 {
                continue;
            }
            let f = self.function(pf);
            let enabled = f.get16(cap + 8) & 1 != 0;
            let num = f.get16(cap + 0x10);
            let (first, stride) = (f.get16(cap + 0x14), f.get16(cap + 0x16));
            for n in 1..=num {
                let rid = pf.routing_id() + first + (n - 1) * stride;
                if enabled {
                    self.functions.entry(rid).or_insert_with(|| make_vf(n));
                } else {
                    self.functions.remove(&rid);
                }
            }
        }
    }

    fn decoding_bar_write(&self, bdf: Bdf, offset: usize, value: u32) -> bool {
        let Some(f) = self.functions.get(&bdf.routing_id()) else {
            return false;
        };
        if value != u32::MAX {
            return false;
        }
        if (0x10..0x28).contains(&offset) && f.get16(4) & 0x3 != 0 {
            return true;
        }
        self.sriov.iter().any(|s| {
            s.pf == bdf
                && (s.cap + 0x24..s.cap + 0x3C).contains(&offset)
                && f.get16(s.cap + 8) & 0x8 != 0
        })
    }
}

impl ConfigAccess for FakeEcam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        let at = usize::from(offset & !3);
        match self.functions.get(&bdf.routing_id()) {
            Some(f) if at < 4096 => f.get32(at),
            _ => u32::MAX,
        }
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        let at = usize::from(offset & !3);
        self.writes.push((bdf, offset, value));
        if at >= 4096 {
            return;
        }
        if self.decoding_bar_write(bdf, at, value) {
            self.sizing_while_decoding += 1;
        }
        let Some(f) = self.functions.get_mut(&bdf.routing_id()) else {
            return;
        };
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            let m = f.wmask[at + i];
            f.data[at + i] = f.data[at + i] & !m | b & m;
        }
        self.after_write(bdf, at);
    }
}

pub const NVME_PF: Bdf = match Bdf::new(0, 3, 0) {
    Some(b) => b,
    None => panic!(),
};
/// Where the fake PF's SR-IOV capability sits.
pub const PF_SRIOV_CAP: usize = 0x160;
pub const PF_BAR0: u64 = 0xFEB0_0000;

/// QEMU's NVMe PF 1b36:0010 with SR-IOV (TotalVFs 2, offset 1, stride 1, VF device 0010, VF
/// BAR0 64-bit 16 KiB), MSI-X (65 vectors, table at BAR0+0x2000, PBA at +0x3000), a PCI
/// Express capability, and ARI before SR-IOV in the extended list.
pub fn nvme_pf() -> FakeFunction {
    let mut f = FakeFunction::new();
    f.put16(0x00, 0x1b36).put16(0x02, 0x0010);
    f.put16(0x04, 0x0000).writable16(0x04, 0x0547);
    f.put16(0x06, 0x0010); // capabilities list
    f.put32(0x08, 0x0108_0202); // class 01/08/02, revision 2
    f.put8(0x0E, 0x00);
    // BAR0/1: 64-bit, non-prefetchable, 16 KiB at 0xFEB00000.
    f.put32(0x10, PF_BAR0 as u32 | 0x4)
        .writable32(0x10, 0xFFFF_C000);
    f.put32(0x14, 0).writable32(0x14, 0xFFFF_FFFF);
    f.put16(0x2C, 0x1af4).put16(0x2E, 0x1100);
    f.put8(0x34, 0x40);
    f.put8(0x3D, 0x01); // INTA
                        // MSI-X at 0x40 -> PCIe at 0x60.
    f.put8(0x40, 0x11).put8(0x41, 0x60).put16(0x42, 64);
    f.writable16(0x42, 0xC000);
    f.put32(0x44, 0x2000).put32(0x48, 0x3000);
    f.put8(0x60, 0x10).put8(0x61, 0x00).put16(0x62, 0x0002);
    // ARI at 0x100 -> SR-IOV at 0x160.
    f.put32(0x100, 0x160 << 20 | 1 << 16 | 0x000E);
    let s = PF_SRIOV_CAP;
    f.put32(s, 1 << 16 | 0x0010); // version 1, last
    f.put16(s + 0x08, 0).writable16(s + 0x08, 0x001F);
    f.put16(s + 0x0C, 2).put16(s + 0x0E, 2);
    f.put16(s + 0x10, 0).writable16(s + 0x10, 0xFFFF);
    f.put16(s + 0x14, 1).put16(s + 0x16, 1);
    f.put16(s + 0x1A, 0x0010);
    f.put32(s + 0x1C, 0x553);
    f.put32(s + 0x20, 1).writable32(s + 0x20, 0xFFFF_FFFF);
    f.put32(s + 0x24, 0x4).writable32(s + 0x24, 0xFFFF_C000);
    f.writable32(s + 0x28, 0xFFFF_FFFF);
    f
}

/// A VF of [`nvme_pf`]: vendor/device read 0xFFFF, class NVMe, its own command register's
/// Memory Space and Bus Master writable (QEMU), BARs read 0, MSI-X with 1 vector in BAR0.
pub fn nvme_vf(_n: u16) -> FakeFunction {
    let mut f = FakeFunction::new();
    f.put32(0x00, 0xFFFF_FFFF);
    f.put16(0x04, 0).writable16(0x04, 0x0006);
    f.put16(0x06, 0x0010);
    f.put32(0x08, 0x0108_0202);
    f.put16(0x2C, 0x1af4).put16(0x2E, 0x1100);
    f.put8(0x34, 0x40);
    f.put8(0x40, 0x11).put8(0x41, 0x00).put16(0x42, 0);
    f.writable16(0x42, 0xC000);
    f.put32(0x44, 0x2000).put32(0x48, 0x3000);
    f
}

/// A plain function: vendor/device, class dword, header type byte.
pub fn plain(vendor: u16, device: u16, class_rev: u32, header_type: u8) -> FakeFunction {
    let mut f = FakeFunction::new();
    f.put16(0, vendor).put16(2, device);
    f.put32(8, class_rev).put8(0x0E, header_type);
    f
}

/// A small q35-like machine: host bridge 00:00.0, the NVMe PF at 00:03.0, a single-function
/// device 00:04.0 whose function 1 answers anyway (must not be found), the multi-function ICH9
/// at 00:1f.0/2/3, and a device behind a bridge at 01:00.0.
pub fn machine() -> FakeEcam {
    let b = |bus, dev, func| Bdf::new(bus, dev, func).unwrap();
    let mut e = FakeEcam::default();
    e.add(b(0, 0, 0), plain(0x8086, 0x29c0, 0x0600_0000, 0));
    e.add_sriov_pf(NVME_PF, nvme_pf(), PF_SRIOV_CAP, nvme_vf);
    e.add(b(0, 4, 0), plain(0x1af4, 0x1000, 0x0200_0000, 0));
    e.add(b(0, 4, 1), plain(0x1af4, 0x1001, 0x0200_0000, 0));
    e.add(b(0, 0x1f, 0), plain(0x8086, 0x2918, 0x0601_0002, 0x80));
    e.add(b(0, 0x1f, 2), plain(0x8086, 0x2922, 0x0106_0102, 0));
    e.add(b(0, 0x1f, 3), plain(0x8086, 0x2930, 0x0c05_0002, 0));
    e.add(b(1, 0, 0), plain(0x1b36, 0x000d, 0x0c03_3001, 0));
    e
}
