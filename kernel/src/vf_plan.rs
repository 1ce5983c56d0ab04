//! Which SR-IOV PFs to bring up for the VFs the guests asked for, and with how many VFs.
//!
//! Guests name VFs; several may belong to one PF, and a PF's VFs are enabled together by one
//! NumVFs write (PCIe SR-IOV §9.3.3.7). So each PF is brought up once, with enough VFs for the
//! highest VF number any guest wants from it.

/// Per guest: its VF's PF and VF number (1-based), if it asked for one the machine has.
/// Returns each PF once, in the order guests first name it, with the VF count to enable.
pub fn bring_ups<P: Copy + PartialEq>(
    owners: &[Option<(P, u16)>],
) -> impl Iterator<Item = (P, u16)> + '_ {
    owners.iter().enumerate().filter_map(move |(i, o)| {
        let (pf, _) = (*o)?;
        if owners[..i].iter().flatten().any(|(p, _)| *p == pf) {
            return None;
        }
        let num_vfs = owners
            .iter()
            .flatten()
            .filter(|(p, _)| *p == pf)
            .map(|&(_, n)| n)
            .max()
            .unwrap_or(1);
        Some((pf, num_vfs))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bring_up_per_pf_with_the_highest_vf_number() {
        let owners = [
            Some(('a', 2)),
            None,
            Some(('b', 1)),
            Some(('a', 5)),
            Some(('a', 3)),
        ];
        assert_eq!(bring_ups(&owners).collect::<Vec<_>>(), [('a', 5), ('b', 1)]);
    }

    #[test]
    fn no_vfs_no_bring_up() {
        let owners: [Option<(u8, u16)>; 3] = [None, None, None];
        assert_eq!(bring_ups(&owners).count(), 0);
    }
}
