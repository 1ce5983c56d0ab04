//! Loading an ELF64 executable (System V ABI, ELF-64 Object File Format 1.5) into guest memory at its
//! physical load addresses. The image comes from a boot module, so every offset is bounds-checked.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    NotElf64,
    NotX86_64,
    NotExecutable,
    Truncated,
    SegmentOutsideGuest {
        paddr: u64,
        memsz: u64,
    },
    /// A segment starts below the lowest address the caller allows (its boot structures live there).
    SegmentTooLow {
        paddr: u64,
        min: u64,
    },
    BadSegment,
    NoLoadableSegment,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf64 => f.write_str("not a little-endian ELF64 file"),
            ElfError::NotX86_64 => f.write_str("not an x86-64 ELF file"),
            ElfError::NotExecutable => f.write_str("not an executable ELF file (ET_EXEC)"),
            ElfError::Truncated => f.write_str("ELF file truncated"),
            ElfError::SegmentOutsideGuest { paddr, memsz } => {
                write!(
                    f,
                    "segment at {paddr:#x} (+{memsz:#x}) lies outside guest memory"
                )
            }
            ElfError::SegmentTooLow { paddr, min } => {
                write!(f, "segment at {paddr:#x} lies below {min:#x}, which is reserved for boot structures")
            }
            ElfError::BadSegment => f.write_str("segment with file size larger than memory size"),
            ElfError::NoLoadableSegment => f.write_str("no loadable segment"),
        }
    }
}

const PT_LOAD: u32 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;

fn u16_at(b: &[u8], o: usize) -> Result<u16, ElfError> {
    Ok(u16::from_le_bytes(
        o.checked_add(2)
            .and_then(|end| b.get(o..end))
            .ok_or(ElfError::Truncated)?
            .try_into()
            .unwrap_or([0; 2]),
    ))
}
fn u32_at(b: &[u8], o: usize) -> Result<u32, ElfError> {
    Ok(u32::from_le_bytes(
        o.checked_add(4)
            .and_then(|end| b.get(o..end))
            .ok_or(ElfError::Truncated)?
            .try_into()
            .unwrap_or([0; 4]),
    ))
}
fn u64_at(b: &[u8], o: usize) -> Result<u64, ElfError> {
    Ok(u64::from_le_bytes(
        o.checked_add(8)
            .and_then(|end| b.get(o..end))
            .ok_or(ElfError::Truncated)?
            .try_into()
            .unwrap_or([0; 8]),
    ))
}

/// Copies every PT_LOAD segment of `image` to `guest[paddr..]` (guest-physical 0 is `guest[0]`),
/// zero-fills the rest of each segment, and returns the entry point and the highest loaded address.
/// Segments below `min_paddr` are refused. Nothing is copied unless every segment is acceptable.
pub fn load(image: &[u8], guest: &mut [u8], min_paddr: u64) -> Result<Loaded, ElfError> {
    let header = parse_header(image)?;
    let mut end = 0;
    for pass in [Pass::Check, Pass::Copy] {
        for seg in header.segments(image) {
            let seg = seg?;
            if seg.paddr < min_paddr {
                return Err(ElfError::SegmentTooLow {
                    paddr: seg.paddr,
                    min: min_paddr,
                });
            }
            let outside = ElfError::SegmentOutsideGuest {
                paddr: seg.paddr,
                memsz: seg.memsz,
            };
            let seg_end = seg.paddr.checked_add(seg.memsz).ok_or(outside)?;
            if seg_end > guest.len() as u64 {
                return Err(outside);
            }
            if pass == Pass::Copy {
                let dst = &mut guest[seg.paddr as usize..seg_end as usize];
                dst[..seg.data.len()].copy_from_slice(seg.data);
                dst[seg.data.len()..].fill(0);
            }
            end = end.max(seg_end);
        }
    }
    if end == 0 {
        return Err(ElfError::NoLoadableSegment);
    }
    Ok(Loaded {
        entry: header.entry,
        end,
    })
}

#[derive(PartialEq)]
enum Pass {
    Check,
    Copy,
}

struct Header {
    entry: u64,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
}

struct Segment<'a> {
    paddr: u64,
    memsz: u64,
    data: &'a [u8],
}

impl Header {
    /// The PT_LOAD segments, each checked against the file.
    fn segments<'a>(
        &self,
        image: &'a [u8],
    ) -> impl Iterator<Item = Result<Segment<'a>, ElfError>> + 'a {
        let (phoff, phentsize) = (self.phoff, self.phentsize);
        (0..self.phnum).filter_map(move |i| {
            let ph = match i.checked_mul(phentsize).and_then(|o| o.checked_add(phoff)) {
                Some(ph) => ph,
                None => return Some(Err(ElfError::Truncated)),
            };
            segment(image, ph).transpose()
        })
    }
}

/// ELF header (ELF-64 spec, table 2).
fn parse_header(image: &[u8]) -> Result<Header, ElfError> {
    if image.get(0..4) != Some(b"\x7fELF") || image.get(4) != Some(&2) || image.get(5) != Some(&1) {
        return Err(ElfError::NotElf64);
    }
    if u16_at(image, 18)? != EM_X86_64 {
        return Err(ElfError::NotX86_64);
    }
    if u16_at(image, 16)? != ET_EXEC {
        return Err(ElfError::NotExecutable);
    }
    let phentsize = u16_at(image, 54)? as usize;
    if phentsize < 56 {
        return Err(ElfError::Truncated);
    }
    Ok(Header {
        entry: u64_at(image, 24)?,
        phoff: u64_at(image, 32)? as usize,
        phentsize,
        phnum: u16_at(image, 56)? as usize,
    })
}

/// Program header at `ph` (ELF-64 spec, table 8), if it is PT_LOAD.
fn segment(image: &[u8], ph: usize) -> Result<Option<Segment<'_>>, ElfError> {
    if u32_at(image, ph)? != PT_LOAD {
        return Ok(None);
    }
    let offset = u64_at(image, ph + 8)? as usize;
    let paddr = u64_at(image, ph + 24)?;
    let filesz = u64_at(image, ph + 32)? as usize;
    let memsz = u64_at(image, ph + 40)?;
    if filesz as u64 > memsz {
        return Err(ElfError::BadSegment);
    }
    let data = image
        .get(offset..offset.checked_add(filesz).ok_or(ElfError::Truncated)?)
        .ok_or(ElfError::Truncated)?;
    Ok(Some(Segment { paddr, memsz, data }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub entry: u64,
    /// One past the highest guest-physical byte a segment occupies.
    pub end: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 executable with one PT_LOAD at `paddr`: 4 bytes of code, 12 bytes of bss.
    fn tiny(paddr: u64) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56 + 4];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[24..32].copy_from_slice(&(paddr + 1).to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
        f[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&4u64.to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&16u64.to_le_bytes());
        f[120..124].copy_from_slice(&[0x90, 0x90, 0xf4, 0xcc]);
        f
    }

    #[test]
    fn loads_and_zeroes_bss() {
        let mut guest = vec![0xaau8; 0x2000];
        let l = load(&tiny(0x1000), &mut guest, 0).unwrap();
        assert_eq!(
            l,
            Loaded {
                entry: 0x1001,
                end: 0x1010
            }
        );
        assert_eq!(&guest[0x1000..0x1004], &[0x90, 0x90, 0xf4, 0xcc]);
        assert!(guest[0x1004..0x1010].iter().all(|&b| b == 0));
        assert_eq!(guest[0x1010], 0xaa);
    }

    #[test]
    fn rejects_segments_outside_the_guest() {
        let mut guest = vec![0u8; 0x1008];
        assert_eq!(
            load(&tiny(0x1000), &mut guest, 0),
            Err(ElfError::SegmentOutsideGuest {
                paddr: 0x1000,
                memsz: 16
            })
        );
        let mut big = vec![0u8; 0x100];
        assert!(load(&tiny(u64::MAX - 4), &mut big, 0).is_err());
    }

    #[test]
    fn rejects_segments_below_the_minimum_without_copying() {
        let mut guest = vec![0xaau8; 0x2000];
        assert_eq!(
            load(&tiny(0x1000), &mut guest, 0x1001),
            Err(ElfError::SegmentTooLow {
                paddr: 0x1000,
                min: 0x1001
            })
        );
        assert!(guest.iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn rejects_bad_headers_and_truncation() {
        let mut guest = vec![0u8; 0x2000];
        let mut f = tiny(0x1000);
        f[18] = 3;
        assert_eq!(load(&f, &mut guest, 0), Err(ElfError::NotX86_64));
        let mut f = tiny(0x1000);
        f[4] = 1;
        assert_eq!(load(&f, &mut guest, 0), Err(ElfError::NotElf64));
        let f = tiny(0x1000);
        for cut in [10, 60, 100, 122] {
            assert!(load(&f[..cut], &mut guest, 0).is_err(), "cut at {cut}");
        }
        let mut f = tiny(0x1000);
        f[64 + 32] = 100;
        assert_eq!(load(&f, &mut guest, 0), Err(ElfError::BadSegment));
    }

    #[test]
    fn program_headers_at_the_end_of_the_address_space_are_truncation() {
        let mut guest = vec![0u8; 0x2000];
        for phoff in [u64::MAX, u64::MAX - 3, u64::MAX - 55] {
            let mut f = tiny(0x1000);
            f[32..40].copy_from_slice(&phoff.to_le_bytes());
            assert_eq!(load(&f, &mut guest, 0), Err(ElfError::Truncated));
        }
    }
}
