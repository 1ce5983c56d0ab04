//! Finding room in the host's 32-bit MMIO hole for BARs the hypervisor places itself (SR-IOV VF
//! BARs, which QEMU decodes only below 4 GiB): the largest gap between what firmware already
//! assigned.

/// The largest free range inside `within` (`[start, end)`) that avoids every `occupied` range
/// (`[start, end)`, in any order, possibly overlapping or reaching outside `within`), or `None` if
/// nothing is free.
pub fn largest_gap(occupied: &[(u64, u64)], within: (u64, u64)) -> Option<(u64, u64)> {
    let (lo, hi) = within;
    let mut best: Option<(u64, u64)> = None;
    let mut consider = |start: u64, end: u64| {
        if start < end && best.is_none_or(|(s, e)| end - start > e - s) {
            best = Some((start, end));
        }
    };
    // Candidate gaps start at `lo` or right after an occupied range, and run to the next
    // occupied start above them (or `hi`).
    let starts = core::iter::once(lo).chain(occupied.iter().map(|&(_, e)| e));
    for start in starts.filter(|&s| s >= lo && s < hi) {
        if occupied.iter().any(|&(s, e)| s <= start && start < e) {
            continue;
        }
        let end = occupied
            .iter()
            .map(|&(s, _)| s)
            .filter(|&s| s > start)
            .min()
            .unwrap_or(hi)
            .min(hi);
        consider(start, end);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLE: (u64, u64) = (0xc000_0000, 0xfec0_0000);

    #[test]
    fn empty_hole_is_all_free() {
        assert_eq!(largest_gap(&[], HOLE), Some(HOLE));
    }

    #[test]
    fn picks_the_largest_gap_between_assigned_bars() {
        // Like SeaBIOS on q35: a few BARs near the top, the VGA framebuffer lower down.
        let occupied = [
            (0xfd00_0000, 0xfe00_0000),
            (0xfebc_0000, 0xfebe_0000),
            (0xc000_0000, 0xc100_0000),
        ];
        assert_eq!(
            largest_gap(&occupied, HOLE),
            Some((0xc100_0000, 0xfd00_0000))
        );
    }

    #[test]
    fn overlapping_and_outside_ranges() {
        let occupied = [
            (0xb000_0000, 0xc800_0000),
            (0xc400_0000, 0xd000_0000),
            (0xf000_0000, 0xffff_ffff),
        ];
        assert_eq!(
            largest_gap(&occupied, HOLE),
            Some((0xd000_0000, 0xf000_0000))
        );
        assert_eq!(largest_gap(&[(0, u64::MAX)], HOLE), None);
    }
}
