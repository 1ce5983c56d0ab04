//! A bus scan in the order Linux's `pci_scan_slot` uses: for each bus of the ECAM range, each
//! device's function 0, and functions 1-7 only when function 0 is present and says it is
//! multi-function (PCI 3.0 §6.2.1, header type bit 7). Absent functions read vendor 0xFFFF.
//!
//! Every bus of the range is probed (no bridge walking): ECAM decodes all of them, and absent
//! buses read as all ones.

use core::ops::RangeInclusive;

use super::header::{read_function, FunctionInfo};
use super::{Bdf, ConfigAccess};

/// Iterates over the present functions of `buses`.
pub fn enumerate<C: ConfigAccess>(cfg: &C, buses: RangeInclusive<u8>) -> Enumerator<'_, C> {
    let (first, last) = buses.into_inner();
    Enumerator {
        cfg,
        bus: u16::from(first),
        last_bus: u16::from(last),
        device: 0,
        function: 0,
        multifunction: false,
    }
}

pub struct Enumerator<'a, C> {
    cfg: &'a C,
    /// u16 so that a range ending at bus 255 terminates.
    bus: u16,
    last_bus: u16,
    device: u8,
    function: u8,
    /// Function 0 of the current device is present and multi-function.
    multifunction: bool,
}

impl<C> Enumerator<'_, C> {
    fn next_device(&mut self) {
        self.function = 0;
        self.multifunction = false;
        self.device += 1;
        if self.device == 32 {
            self.device = 0;
            self.bus += 1;
        }
    }
}

impl<C: ConfigAccess> Iterator for Enumerator<'_, C> {
    type Item = FunctionInfo;

    fn next(&mut self) -> Option<FunctionInfo> {
        while self.bus <= self.last_bus {
            let bdf = Bdf::new(self.bus as u8, self.device, self.function)?;
            let found = read_function(self.cfg, bdf);
            if self.function == 0 {
                self.multifunction = found.is_some_and(|f| f.multifunction);
            }
            if self.function == 0 && !self.multifunction || self.function == 7 {
                self.next_device();
            } else {
                self.function += 1;
            }
            if found.is_some() {
                return found;
            }
        }
        None
    }
}
