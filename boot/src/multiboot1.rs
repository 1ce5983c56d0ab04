//! Multiboot1 (Multiboot Specification 0.6.96): header constants and the boot-information parser.

use crate::{BootError, BootInfo, BootProtocol, Memory, RsdpSource};

/// Header magic (spec 3.1.2).
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// Header flags we ask for: bit 0 page-align modules, bit 1 provide the memory map.
pub const HEADER_FLAGS: u32 = 0b11;
/// EAX at entry when a Multiboot1 loader started us (spec 3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// Offsets into the Multiboot1 information structure (spec 3.3).
mod off {
    pub const FLAGS: u64 = 0;
    pub const CMDLINE: u64 = 16;
    pub const MODS_COUNT: u64 = 20;
    pub const MODS_ADDR: u64 = 24;
    pub const MMAP_LENGTH: u64 = 44;
    pub const MMAP_ADDR: u64 = 48;
    pub const BOOT_LOADER_NAME: u64 = 64;
    /// Size of the structure up to and including `boot_loader_name`.
    pub const SIZE: usize = 68;
}

/// `flags` bits saying which fields are valid (spec 3.3).
mod flag {
    pub const CMDLINE: u32 = 1 << 2;
    pub const MODS: u32 = 1 << 3;
    pub const MMAP: u32 = 1 << 6;
    pub const LOADER_NAME: u32 = 1 << 9;
}

/// One module-list entry is 16 bytes: mod_start, mod_end, string, reserved.
const MODULE_ENTRY_SIZE: u64 = 16;

pub fn parse(info: u64, mem: &impl Memory) -> Result<BootInfo, BootError> {
    let truncated = |what| BootError::Truncated { what, addr: info };
    mem.bytes(info, off::SIZE)
        .ok_or(truncated("multiboot1 info"))?;
    let read = |o: u64| mem.u32_at(info + o).ok_or(truncated("multiboot1 info"));
    let flags = read(off::FLAGS)?;
    let mut boot = BootInfo::new(BootProtocol::Multiboot1);
    boot.info_range = (info, info + off::SIZE as u64);
    // Multiboot1 has no way to hand over the RSDP.
    boot.rsdp = RsdpSource::SearchBiosAreas;

    if flags & flag::CMDLINE != 0 {
        let addr = u64::from(read(off::CMDLINE)?);
        boot.cmdline = mem.c_string(addr).ok_or(BootError::Truncated {
            what: "command line",
            addr,
        })?;
    }
    if flags & flag::LOADER_NAME != 0 {
        let addr = u64::from(read(off::BOOT_LOADER_NAME)?);
        boot.loader_name = mem.c_string(addr).ok_or(BootError::Truncated {
            what: "loader name",
            addr,
        })?;
    }
    if flags & flag::MMAP != 0 {
        parse_mmap(
            &mut boot,
            u64::from(read(off::MMAP_ADDR)?),
            u64::from(read(off::MMAP_LENGTH)?),
            mem,
        )?;
    }
    if flags & flag::MODS != 0 {
        let count = u64::from(read(off::MODS_COUNT)?);
        let list = u64::from(read(off::MODS_ADDR)?);
        for i in 0..count {
            let entry = list + i * MODULE_ENTRY_SIZE;
            let bad = BootError::Truncated {
                what: "module entry",
                addr: entry,
            };
            let start = mem.u32_at(entry).ok_or(bad)?;
            let end = mem.u32_at(entry + 4).ok_or(bad)?;
            let string_addr = u64::from(mem.u32_at(entry + 8).ok_or(bad)?);
            let string = mem
                .c_string::<320>(string_addr)
                .ok_or(BootError::Truncated {
                    what: "module string",
                    addr: string_addr,
                })?;
            boot.push_module(u64::from(start), u64::from(end), string.as_str())?;
        }
    }
    Ok(boot)
}

/// Memory-map entries (spec 3.3): `size` (not counting itself), base_addr u64, length u64, type u32.
fn parse_mmap(
    boot: &mut BootInfo,
    addr: u64,
    length: u64,
    mem: &impl Memory,
) -> Result<(), BootError> {
    let end = addr + length;
    let mut entry = addr;
    while entry + 4 <= end {
        let bad = BootError::Truncated {
            what: "memory map entry",
            addr: entry,
        };
        let size = u64::from(mem.u32_at(entry).ok_or(bad)?);
        if size < 20 {
            return Err(bad);
        }
        let base = mem.u64_at(entry + 4).ok_or(bad)?;
        let len = mem.u64_at(entry + 12).ok_or(bad)?;
        let ty = mem.u32_at(entry + 20).ok_or(bad)?;
        boot.push_memory(base, len, ty)?;
        entry += size + 4;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::fake::FakeMemory;
    use crate::MemoryKind;

    /// Lays out an information block like QEMU's Multiboot1 loader does: info at 0x9000, strings and
    /// tables after it.
    fn qemu_like() -> FakeMemory {
        let mut m = FakeMemory::new(0x9000, 0x1000);
        let info = 0x9000;
        m.put_u32(
            info,
            flag::CMDLINE | flag::MODS | flag::MMAP | flag::LOADER_NAME | 0b11,
        );
        m.put_u32(info + off::CMDLINE, 0x9400);
        m.put(0x9400, b"guest=a,cores=1,mem=16M,kernel=testguest\0");
        m.put_u32(info + off::BOOT_LOADER_NAME, 0x9480);
        m.put(0x9480, b"qemu\0");
        m.put_u32(info + off::MODS_COUNT, 2);
        m.put_u32(info + off::MODS_ADDR, 0x9500);
        m.put_u32(0x9500, 0x30_0000);
        m.put_u32(0x9504, 0x30_8000);
        m.put_u32(0x9508, 0x9600);
        m.put_u32(0x9510, 0x30_8000);
        m.put_u32(0x9514, 0x30_9000);
        m.put_u32(0x9518, 0x9620);
        m.put(0x9600, b"testguest arg1\0");
        m.put(0x9620, b"/b/other\0");
        // Two map entries of size 20 and one with a larger size field (allowed by the spec).
        m.put_u32(info + off::MMAP_ADDR, 0x9700);
        m.put_u32(info + off::MMAP_LENGTH, 24 + 24 + 28);
        let mut e = 0x9700;
        for (size, base, len, ty) in [
            (20u32, 0u64, 0x9fc00u64, 1u32),
            (20, 0xf0000, 0x10000, 2),
            (24, 0x100000, 0x7ee0000, 1),
        ] {
            m.put_u32(e, size);
            m.put_u64(e + 4, base);
            m.put_u64(e + 12, len);
            m.put_u32(e + 20, ty);
            e += u64::from(size) + 4;
        }
        m
    }

    #[test]
    fn parses_a_qemu_like_block() {
        let m = qemu_like();
        let b = crate::parse(BOOTLOADER_MAGIC, 0x9000, &m).unwrap();
        assert_eq!(b.protocol, BootProtocol::Multiboot1);
        assert_eq!(
            b.cmdline.as_str(),
            "guest=a,cores=1,mem=16M,kernel=testguest"
        );
        assert_eq!(b.loader_name.as_str(), "qemu");
        assert_eq!(b.modules().len(), 2);
        assert_eq!(
            (b.modules()[0].start, b.modules()[0].end),
            (0x30_0000, 0x30_8000)
        );
        assert_eq!(b.modules()[0].name.as_str(), "testguest");
        assert_eq!(b.modules()[0].args.as_str(), "arg1");
        // Only a path: the file name.
        assert_eq!(b.modules()[1].name.as_str(), "other");
        let map: Vec<_> = b
            .memory()
            .iter()
            .map(|r| (r.start, r.end, r.kind))
            .collect();
        assert_eq!(
            map,
            [
                (0, 0x9fc00, MemoryKind::Usable),
                (0xf0000, 0x100000, MemoryKind::Reserved),
                (0x100000, 0x7fe0000, MemoryKind::Usable)
            ]
        );
        assert!(matches!(b.rsdp, RsdpSource::SearchBiosAreas));
    }

    #[test]
    fn absent_fields_are_left_empty() {
        let mut m = qemu_like();
        m.put_u32(0x9000, 0);
        let b = parse(0x9000, &m).unwrap();
        assert_eq!(b.cmdline.as_str(), "");
        assert!(b.modules().is_empty());
        assert!(b.memory().is_empty());
    }

    #[test]
    fn pointers_outside_memory_are_errors() {
        let mut m = qemu_like();
        m.put_u32(0x9000 + off::MODS_ADDR, 0xdead_0000);
        assert!(matches!(
            parse(0x9000, &m),
            Err(BootError::Truncated {
                what: "module entry",
                ..
            })
        ));
        assert!(matches!(parse(0x100, &m), Err(BootError::Truncated { .. })));
    }

    #[test]
    fn malformed_mmap_entry_size_is_an_error() {
        let mut m = qemu_like();
        m.put_u32(0x9700, 3);
        assert!(matches!(
            parse(0x9000, &m),
            Err(BootError::Truncated {
                what: "memory map entry",
                ..
            })
        ));
    }

    #[test]
    fn unknown_magic_is_rejected() {
        let m = qemu_like();
        assert_eq!(
            crate::parse(0x1234, 0x9000, &m).err(),
            Some(BootError::UnknownMagic(0x1234))
        );
    }
}
