//! A 256-bit set with one flag per interrupt vector, laid out like the local APIC's IRR, ISR and
//! TMR (APM vol. 2 §16.6, the interrupt request, in-service and trigger mode registers): word `i`
//! holds vectors `32 i .. 32 i + 31`, bit `v % 32` for vector `v`.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorSet([u32; 8]);

impl VectorSet {
    pub const fn new() -> Self {
        VectorSet([0; 8])
    }

    pub fn insert(&mut self, vector: u8) {
        self.0[usize::from(vector / 32)] |= 1 << (vector % 32);
    }

    pub fn remove(&mut self, vector: u8) {
        self.0[usize::from(vector / 32)] &= !(1 << (vector % 32));
    }

    pub fn set(&mut self, vector: u8, present: bool) {
        if present {
            self.insert(vector);
        } else {
            self.remove(vector);
        }
    }

    pub fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector / 32)] & (1 << (vector % 32)) != 0
    }

    /// The highest vector in the set: the highest-priority one, since priority grows with the
    /// vector number.
    pub fn highest(&self) -> Option<u8> {
        let (index, word) = self.0.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
        // index < 8 and the bit < 32, so the vector fits a u8.
        Some((index * 32 + 31 - word.leading_zeros() as usize) as u8)
    }

    /// Word `index` as the guest reads it through MSR `base + index`; 0 beyond the last word.
    pub fn word(&self, index: usize) -> u32 {
        self.0.get(index).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_the_register_layout() {
        let mut set = VectorSet::new();
        set.insert(0x20);
        set.insert(0xef);
        set.insert(0xff);
        assert_eq!(set.word(1), 0x0000_0001);
        // 0xef = 239 = 7 * 32 + 15; 0xff = 7 * 32 + 31.
        assert_eq!(set.word(7), 0x8000_8000);
        assert_eq!(set.word(8), 0);
        assert!(set.contains(0xef));
        assert!(!set.contains(0xee));
    }

    #[test]
    fn highest_is_the_largest_vector() {
        let mut set = VectorSet::new();
        assert_eq!(set.highest(), None);
        set.insert(0x31);
        set.insert(0x30);
        assert_eq!(set.highest(), Some(0x31));
        set.insert(0xff);
        assert_eq!(set.highest(), Some(0xff));
        set.remove(0xff);
        set.set(0x31, false);
        assert_eq!(set.highest(), Some(0x30));
        set.set(0, true);
        set.remove(0x30);
        assert_eq!(set.highest(), Some(0));
    }
}
