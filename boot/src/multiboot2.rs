//! Multiboot2 (Multiboot2 Specification 2.0): header constants and the boot-information parser.

use crate::{BootError, BootInfo, BootProtocol, Memory, RsdpSource};

/// Header magic (spec 3.1.2).
pub const HEADER_MAGIC: u32 = 0xE852_50D6;
/// EAX at entry when a Multiboot2 loader started us (spec 3.3).
pub const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

/// Boot-information tag types (spec 3.6).
mod tag {
    pub const END: u32 = 0;
    pub const CMDLINE: u32 = 1;
    pub const LOADER_NAME: u32 = 2;
    pub const MODULE: u32 = 3;
    pub const MMAP: u32 = 6;
    pub const ACPI_OLD: u32 = 14;
    pub const ACPI_NEW: u32 = 15;
}

/// The information block may not be larger than this; a bigger total_size is garbage.
const MAX_TOTAL_SIZE: u32 = 1 << 20;

pub fn parse(info: u64, mem: &impl Memory) -> Result<BootInfo, BootError> {
    let total = mem.u32_at(info).ok_or(BootError::Truncated {
        what: "multiboot2 info",
        addr: info,
    })?;
    if !(16..=MAX_TOTAL_SIZE).contains(&total) {
        return Err(BootError::BadTag {
            tag: 0,
            size: total,
        });
    }
    let end = info + u64::from(total);
    mem.bytes(info, total as usize)
        .ok_or(BootError::Truncated {
            what: "multiboot2 info",
            addr: info,
        })?;
    let mut boot = BootInfo::new(BootProtocol::Multiboot2);
    boot.info_range = (info, end);

    let mut t = info + 8;
    while t + 8 <= end {
        let ty = mem.u32_at(t).unwrap_or(0);
        let size = mem.u32_at(t + 4).unwrap_or(0);
        if size < 8 || t + u64::from(size) > end {
            return Err(BootError::BadTag { tag: ty, size });
        }
        let body = t + 8;
        let body_len = u64::from(size) - 8;
        match ty {
            tag::END => break,
            tag::CMDLINE => boot.cmdline = string(mem, body, body_len)?,
            tag::LOADER_NAME => boot.loader_name = string(mem, body, body_len)?,
            tag::MODULE => {
                if body_len < 8 {
                    return Err(BootError::BadTag { tag: ty, size });
                }
                let start = mem.u32_at(body).unwrap_or(0);
                let mod_end = mem.u32_at(body + 4).unwrap_or(0);
                let s: crate::FixedString<320> = string(mem, body + 8, body_len - 8)?;
                boot.push_module(u64::from(start), u64::from(mod_end), s.as_str())?;
            }
            tag::MMAP => parse_mmap(&mut boot, body, body_len, ty, size, mem)?,
            tag::ACPI_OLD | tag::ACPI_NEW => {
                // A v2 RSDP copy (tag 15) supersedes a v1 copy (tag 14), whatever their order.
                let keep_existing = matches!(boot.rsdp, RsdpSource::Copy { len, .. } if len == 36)
                    && ty == tag::ACPI_OLD;
                if !keep_existing {
                    let len = (body_len as usize).min(36);
                    let mut bytes = [0u8; 36];
                    bytes[..len].copy_from_slice(mem.bytes(body, len).unwrap_or(&[]));
                    boot.rsdp = RsdpSource::Copy { bytes, len };
                }
            }
            _ => {}
        }
        // Tags are 8-byte aligned.
        t += (u64::from(size) + 7) & !7;
    }
    Ok(boot)
}

fn string<const N: usize>(
    mem: &impl Memory,
    addr: u64,
    max: u64,
) -> Result<crate::FixedString<N>, BootError> {
    let bytes = mem.bytes(addr, max as usize).ok_or(BootError::Truncated {
        what: "string",
        addr,
    })?;
    let mut s = crate::FixedString::new();
    for &b in bytes.iter().take_while(|&&b| b != 0) {
        s.push_byte(b);
    }
    Ok(s)
}

/// Memory-map tag (spec 3.6.8): entry_size u32, entry_version u32, then entries of base u64, length
/// u64, type u32, reserved u32.
fn parse_mmap(
    boot: &mut BootInfo,
    body: u64,
    len: u64,
    ty: u32,
    size: u32,
    mem: &impl Memory,
) -> Result<(), BootError> {
    let entry_size = u64::from(mem.u32_at(body).unwrap_or(0));
    if len < 8 || entry_size < 20 {
        return Err(BootError::BadTag { tag: ty, size });
    }
    let mut e = body + 8;
    while e + entry_size <= body + len {
        let base = mem.u64_at(e).unwrap_or(0);
        let length = mem.u64_at(e + 8).unwrap_or(0);
        let kind = mem.u32_at(e + 16).unwrap_or(0);
        boot.push_memory(base, length, kind)?;
        e += entry_size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::fake::FakeMemory;
    use crate::MemoryKind;

    /// Builds a Multiboot2 information block tag by tag.
    struct Builder {
        bytes: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Builder { bytes: vec![0; 8] }
        }
        fn tag(mut self, ty: u32, body: &[u8]) -> Self {
            self.bytes.extend_from_slice(&ty.to_le_bytes());
            self.bytes
                .extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(body);
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
            self
        }
        fn finish(self) -> Vec<u8> {
            let mut b = self.tag(tag::END, &[]).bytes;
            let total = b.len() as u32;
            b[..4].copy_from_slice(&total.to_le_bytes());
            b
        }
    }

    fn module(start: u32, end: u32, s: &str) -> Vec<u8> {
        let mut v = start.to_le_bytes().to_vec();
        v.extend_from_slice(&end.to_le_bytes());
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        v
    }

    fn mmap(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut v = 24u32.to_le_bytes().to_vec();
        v.extend_from_slice(&0u32.to_le_bytes());
        for &(base, len, ty) in entries {
            v.extend_from_slice(&base.to_le_bytes());
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&ty.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
        }
        v
    }

    fn rsdp_v2() -> Vec<u8> {
        let mut r = b"RSD PTR ".to_vec();
        r.resize(36, 0);
        r[15] = 2;
        r
    }

    fn grub_like() -> FakeMemory {
        let blob = Builder::new()
            .tag(tag::CMDLINE, b"guest=a,cores=1,mem=16M,kernel=testguest\0")
            .tag(tag::LOADER_NAME, b"GRUB 2.06\0")
            .tag(tag::MODULE, &module(0x40_0000, 0x40_2000, "testguest"))
            .tag(
                tag::MMAP,
                &mmap(&[
                    (0, 0x9fc00, 1),
                    (0x100000, 0x3ff00000, 1),
                    (0xfeffc000, 0x4000, 2),
                ]),
            )
            .tag(tag::ACPI_NEW, &rsdp_v2())
            .tag(tag::ACPI_OLD, &rsdp_v2()[..20])
            .tag(99, &[1, 2, 3])
            .finish();
        let mut m = FakeMemory::new(0x10000, 0x1000);
        m.put(0x10000, &blob);
        m
    }

    #[test]
    fn parses_a_grub_like_block() {
        let m = grub_like();
        let b = crate::parse(BOOTLOADER_MAGIC, 0x10000, &m).unwrap();
        assert_eq!(b.protocol, BootProtocol::Multiboot2);
        assert_eq!(
            b.cmdline.as_str(),
            "guest=a,cores=1,mem=16M,kernel=testguest"
        );
        assert_eq!(b.loader_name.as_str(), "GRUB 2.06");
        assert_eq!(b.modules().len(), 1);
        assert_eq!(b.modules()[0].name.as_str(), "testguest");
        assert_eq!(b.modules()[0].len(), 0x2000);
        assert_eq!(b.memory().len(), 3);
        assert_eq!(b.memory()[1].end, 0x4000_0000);
        assert_eq!(b.memory()[2].kind, MemoryKind::Reserved);
        // The v2 copy wins over the later v1 copy.
        assert!(matches!(b.rsdp, RsdpSource::Copy { len: 36, bytes } if bytes[15] == 2));
    }

    #[test]
    fn tag_running_past_the_end_is_rejected() {
        let mut m = grub_like();
        // Make the command line tag claim 4 KiB.
        m.put_u32(0x10000 + 8 + 4, 4096);
        assert!(matches!(
            parse(0x10000, &m),
            Err(BootError::BadTag {
                tag: tag::CMDLINE,
                size: 4096
            })
        ));
    }

    #[test]
    fn absurd_total_size_is_rejected() {
        let mut m = grub_like();
        m.put_u32(0x10000, 3);
        assert!(matches!(parse(0x10000, &m), Err(BootError::BadTag { .. })));
        m.put_u32(0x10000, 0x4000_0000);
        assert!(matches!(parse(0x10000, &m), Err(BootError::BadTag { .. })));
    }

    #[test]
    fn tiny_tag_size_is_rejected_not_looped_on() {
        let mut m = grub_like();
        m.put_u32(0x10000 + 8 + 4, 0);
        assert!(matches!(
            parse(0x10000, &m),
            Err(BootError::BadTag { size: 0, .. })
        ));
    }
}
