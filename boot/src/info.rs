//! The one boot-information shape both Multiboot versions are translated into.

use crate::{BootError, FixedString};

pub const MAX_MEMORY_REGIONS: usize = 128;
pub const MAX_MODULES: usize = 16;

/// Which boot protocol delivered us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    Multiboot1,
    Multiboot2,
}

/// Memory-map entry types shared by Multiboot1 and Multiboot2 (Multiboot2 spec 3.6.8; they mirror the
/// ACPI address range types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Defective,
}

impl MemoryKind {
    pub fn from_multiboot(ty: u32) -> Self {
        match ty {
            1 => MemoryKind::Usable,
            3 => MemoryKind::AcpiReclaimable,
            4 => MemoryKind::AcpiNvs,
            5 => MemoryKind::Defective,
            _ => MemoryKind::Reserved,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemoryKind::Usable => "usable",
            MemoryKind::Reserved => "reserved",
            MemoryKind::AcpiReclaimable => "acpi-reclaimable",
            MemoryKind::AcpiNvs => "acpi-nvs",
            MemoryKind::Defective => "defective",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    /// Exclusive end.
    pub end: u64,
    pub kind: MemoryKind,
}

/// A boot module: its physical range and the string the loader attached to it, split into the first
/// word (the module's name, used by the hypervisor command line) and the rest.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    pub start: u64,
    /// Exclusive end.
    pub end: u64,
    pub name: FixedString<64>,
    pub args: FixedString<256>,
}

impl Module {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Where the ACPI RSDP is: a copy handed over by the loader (Multiboot2 tags 14/15), or not given
/// (Multiboot1: search the BIOS areas).
#[derive(Clone, Copy)]
pub enum RsdpSource {
    Copy { bytes: [u8; 36], len: usize },
    SearchBiosAreas,
}

impl core::fmt::Debug for RsdpSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RsdpSource::Copy { len, .. } => write!(f, "copy from the boot loader ({len} bytes)"),
            RsdpSource::SearchBiosAreas => f.write_str("search the BIOS areas"),
        }
    }
}

/// Everything the hypervisor needs from its boot loader, copied out so the loader's memory can be reused.
#[derive(Clone)]
pub struct BootInfo {
    pub protocol: BootProtocol,
    pub loader_name: FixedString<64>,
    pub cmdline: FixedString<2048>,
    memory: [MemoryRegion; MAX_MEMORY_REGIONS],
    memory_len: usize,
    modules: [Module; MAX_MODULES],
    modules_len: usize,
    pub rsdp: RsdpSource,
    /// The physical range of the boot-information block itself.
    pub info_range: (u64, u64),
}

const EMPTY_REGION: MemoryRegion = MemoryRegion {
    start: 0,
    end: 0,
    kind: MemoryKind::Reserved,
};
const EMPTY_MODULE: Module = Module {
    start: 0,
    end: 0,
    name: FixedString::new(),
    args: FixedString::new(),
};

impl BootInfo {
    pub fn new(protocol: BootProtocol) -> Self {
        BootInfo {
            protocol,
            loader_name: FixedString::new(),
            cmdline: FixedString::new(),
            memory: [EMPTY_REGION; MAX_MEMORY_REGIONS],
            memory_len: 0,
            modules: [EMPTY_MODULE; MAX_MODULES],
            modules_len: 0,
            rsdp: RsdpSource::SearchBiosAreas,
            info_range: (0, 0),
        }
    }

    pub fn memory(&self) -> &[MemoryRegion] {
        &self.memory[..self.memory_len]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.modules_len]
    }

    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules().iter().find(|m| m.name.as_str() == name)
    }

    pub(crate) fn push_memory(&mut self, start: u64, len: u64, ty: u32) -> Result<(), BootError> {
        if len == 0 {
            return Ok(());
        }
        if self.memory_len == MAX_MEMORY_REGIONS {
            return Err(BootError::TooMany("memory-map entries"));
        }
        let end = start.saturating_add(len);
        self.memory[self.memory_len] = MemoryRegion {
            start,
            end,
            kind: MemoryKind::from_multiboot(ty),
        };
        self.memory_len += 1;
        Ok(())
    }

    pub(crate) fn push_module(
        &mut self,
        start: u64,
        end: u64,
        string: &str,
    ) -> Result<(), BootError> {
        if self.modules_len == MAX_MODULES {
            return Err(BootError::TooMany("modules"));
        }
        // QEMU passes "path [words]" and GRUB may or may not put the path first: a leading word
        // with a '/' is the file's path, and names the module only when nothing follows it.
        let mut string = string.trim();
        let mut path_name = None;
        if let Some((first, rest)) = string
            .split_once(char::is_whitespace)
            .or(Some((string, "")))
        {
            if first.contains('/') {
                path_name = first.rsplit('/').next();
                string = rest.trim_start();
            }
        }
        let (name, args) = match string.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim_start()),
            None if string.is_empty() => (path_name.unwrap_or(""), ""),
            None => (string, ""),
        };
        self.modules[self.modules_len] = Module {
            start,
            end: end.max(start),
            name: FixedString::from_str_lossy(name),
            args: FixedString::from_str_lossy(args),
        };
        self.modules_len += 1;
        Ok(())
    }

    /// Usable RAM in bytes (saturating: the loader's map may list huge or overlapping regions).
    pub fn usable_bytes(&self) -> u64 {
        self.memory()
            .iter()
            .filter(|r| r.kind == MemoryKind::Usable)
            .fold(0u64, |sum, r| sum.saturating_add(r.end - r.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_string_splits_into_name_and_args() {
        let mut b = BootInfo::new(BootProtocol::Multiboot1);
        b.push_module(0x1000, 0x2000, "  /boot/testguest.elf  guest1 hello world ")
            .unwrap();
        b.push_module(0x3000, 0x3000, "bare").unwrap();
        b.push_module(0x3000, 0x4000, "/only/a/path.elf").unwrap();
        b.push_module(0x3000, 0x4000, "name with args").unwrap();
        assert_eq!(b.modules()[0].name.as_str(), "guest1");
        assert_eq!(b.modules()[0].args.as_str(), "hello world");
        assert_eq!(b.modules()[1].name.as_str(), "bare");
        assert!(b.modules()[1].is_empty());
        assert_eq!(b.modules()[2].name.as_str(), "path.elf");
        assert_eq!(b.modules()[3].name.as_str(), "name");
        assert_eq!(b.modules()[3].args.as_str(), "with args");
        assert!(b.module("bare").is_some());
        assert!(b.module("missing").is_none());
    }

    #[test]
    fn memory_types_map_and_zero_lengths_are_dropped() {
        let mut b = BootInfo::new(BootProtocol::Multiboot2);
        b.push_memory(0, 0x9fc00, 1).unwrap();
        b.push_memory(0x9fc00, 0, 2).unwrap();
        b.push_memory(0x100000, 0x100000, 3).unwrap();
        b.push_memory(0x200000, 0x1000, 7).unwrap();
        let kinds: Vec<_> = b.memory().iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                MemoryKind::Usable,
                MemoryKind::AcpiReclaimable,
                MemoryKind::Reserved
            ]
        );
        assert_eq!(b.usable_bytes(), 0x9fc00);
    }

    #[test]
    fn usable_bytes_saturates_on_huge_regions() {
        let mut b = BootInfo::new(BootProtocol::Multiboot2);
        b.push_memory(0, u64::MAX, 1).unwrap();
        b.push_memory(0, 1, 1).unwrap();
        assert_eq!(b.usable_bytes(), u64::MAX);
    }

    #[test]
    fn too_many_modules_is_an_error() {
        let mut b = BootInfo::new(BootProtocol::Multiboot1);
        for _ in 0..MAX_MODULES {
            b.push_module(0, 1, "m").unwrap();
        }
        assert_eq!(b.push_module(0, 1, "m"), Err(BootError::TooMany("modules")));
    }
}
