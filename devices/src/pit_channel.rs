//! One counter of the 8254 (8254 datasheet, order no. 231164: "Control Word Format", "Read-Back
//! Command", "Modes"), modelled by when its count was loaded and how many clock pulses it has
//! counted rather than tick by tick. Times are PIT clock pulses (see `clock.rs`); the simplifications
//! are listed in `pit.rs`.

/// Control word fields (8254 datasheet, "Control Word Format"): SC1 SC0 RW1 RW0 M2 M1 M0 BCD.
pub(super) mod control {
    pub const SELECT_SHIFT: u8 = 6;
    pub const READ_BACK: u8 = 3;
    pub const ACCESS_SHIFT: u8 = 4;
    pub const ACCESS_LATCH: u8 = 0;
    pub const MODE_SHIFT: u8 = 1;
    // Bit 0 (BCD) is ignored: see the simplifications in pit.rs.

    /// Read-back command: bit 5 clear latches counts, bit 4 clear latches status, bits 3:1 select
    /// counters 2, 1, 0.
    pub const READ_BACK_NO_COUNT: u8 = 1 << 5;
    pub const READ_BACK_NO_STATUS: u8 = 1 << 4;
    /// Status byte (read-back): OUT, NULL COUNT, then the programmed RW/mode/BCD bits.
    pub const STATUS_OUT: u8 = 1 << 7;
    pub const STATUS_NULL_COUNT: u8 = 1 << 6;
}

/// Which bytes of the count a read or write transfers (control word bits RW1:RW0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Low = 1,
    High = 2,
    LowThenHigh = 3,
}

/// Counter mode (control word bits M2:M0; 6 and 7 alias 2 and 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    InterruptOnTerminalCount = 0,
    HardwareRetriggerableOneShot = 1,
    RateGenerator = 2,
    SquareWave = 3,
    SoftwareStrobe = 4,
    HardwareStrobe = 5,
}

impl Mode {
    const fn from_bits(m: u8) -> Mode {
        match m & 7 {
            0 => Mode::InterruptOnTerminalCount,
            1 => Mode::HardwareRetriggerableOneShot,
            2 | 6 => Mode::RateGenerator,
            3 | 7 => Mode::SquareWave,
            4 => Mode::SoftwareStrobe,
            _ => Mode::HardwareStrobe,
        }
    }

    /// Modes 1 and 5 start counting on a rising gate edge, not on a count write.
    const fn gate_triggered(self) -> bool {
        matches!(
            self,
            Mode::HardwareRetriggerableOneShot | Mode::HardwareStrobe
        )
    }

    const fn periodic(self) -> bool {
        matches!(self, Mode::RateGenerator | Mode::SquareWave)
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// No count loaded since the last control word (or, in modes 1 and 5, no trigger yet): the
    /// counting element holds `held` and OUT sits at the mode's initial level.
    Waiting { held: u16 },
    /// `initial` (1..=65536) was loaded at clock pulse `load`; `counted` pulses were counted before
    /// `running_since`, and while the gate allows counting every pulse after `running_since` counts.
    Loaded {
        initial: u32,
        load: u64,
        counted: u64,
        running_since: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug)]
struct LatchedCount {
    value: u16,
    high_next: bool,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Channel {
    access: Access,
    mode: Mode,
    /// The control word's RW and mode bits as written (status read-back reports them).
    control_bits: u8,
    gate: bool,
    /// The count register: the last complete count written (1..=65536), if any since the control word.
    count_register: Option<u32>,
    /// A count written but not yet transferred to the counting element (modes 1 and 5 mid-cycle).
    count_pending: bool,
    pending_low: Option<u8>,
    read_high_next: bool,
    latched_count: Option<LatchedCount>,
    latched_status: Option<u8>,
    state: State,
}

impl Channel {
    pub(super) const fn new(gate: bool) -> Self {
        Channel {
            access: Access::LowThenHigh,
            mode: Mode::InterruptOnTerminalCount,
            control_bits: (Access::LowThenHigh as u8) << control::ACCESS_SHIFT,
            gate,
            count_register: None,
            count_pending: false,
            pending_low: None,
            read_high_next: false,
            latched_count: None,
            latched_status: None,
            state: State::Waiting { held: 0 },
        }
    }

    /// Clock pulses counted by the counting element up to pulse `t` (0 before the load pulse).
    pub(super) fn elapsed(&self, t: u64) -> u64 {
        match self.state {
            State::Waiting { .. } => 0,
            State::Loaded {
                counted,
                running_since,
                ..
            } => counted + running_since.map_or(0, |s| t.saturating_sub(s)),
        }
    }

    pub(super) fn value(&self, t: u64) -> u16 {
        let initial = match self.state {
            State::Waiting { held } => return held,
            State::Loaded { initial, .. } => initial,
        };
        let n = u64::from(initial);
        let e = self.elapsed(t);
        let v = match self.mode {
            Mode::RateGenerator => n - e % n,
            Mode::SquareWave => (n - (2 * e) % n) & 0xFFFE,
            _ => n.wrapping_sub(e),
        };
        v as u16
    }

    pub(super) fn out(&self, t: u64) -> bool {
        let State::Loaded {
            initial,
            running_since,
            ..
        } = self.state
        else {
            return self.mode != Mode::InterruptOnTerminalCount;
        };
        let n = u64::from(initial);
        let e = self.elapsed(t);
        match self.mode {
            Mode::InterruptOnTerminalCount | Mode::HardwareRetriggerableOneShot => e >= n,
            // A low gate stops counting and forces OUT high in the periodic modes.
            Mode::RateGenerator => running_since.is_none() || e % n != n - 1,
            Mode::SquareWave => running_since.is_none() || e % n < n.div_ceil(2),
            Mode::SoftwareStrobe | Mode::HardwareStrobe => e != n,
        }
    }

    /// Rising OUT edges since the load, once `e` pulses have been counted.
    pub(super) fn edges_after(&self, e: u64) -> u64 {
        let State::Loaded { initial, .. } = self.state else {
            return 0;
        };
        let n = u64::from(initial);
        match self.mode {
            Mode::InterruptOnTerminalCount | Mode::HardwareRetriggerableOneShot => {
                u64::from(e >= n)
            }
            Mode::RateGenerator | Mode::SquareWave => e / n,
            // OUT is low for the one pulse at count 0 and rises on the next.
            Mode::SoftwareStrobe | Mode::HardwareStrobe => u64::from(e > n),
        }
    }

    /// The clock pulse of the first rising edge after pulse `t`, if one is scheduled.
    pub(super) fn next_edge_after(&self, t: u64) -> Option<u64> {
        let State::Loaded {
            initial,
            counted,
            running_since: Some(since),
            ..
        } = self.state
        else {
            return None;
        };
        let n = u64::from(initial);
        let k = self.edges_after(self.elapsed(t));
        let at_count = match self.mode {
            Mode::RateGenerator | Mode::SquareWave => (k + 1) * n,
            _ if k > 0 => return None,
            Mode::InterruptOnTerminalCount | Mode::HardwareRetriggerableOneShot => n,
            Mode::SoftwareStrobe | Mode::HardwareStrobe => n + 1,
        };
        Some(since + (at_count - counted))
    }

    pub(super) fn null_count(&self, t: u64) -> bool {
        match self.state {
            State::Waiting { .. } => true,
            State::Loaded { load, .. } => t < load || self.count_pending,
        }
    }

    pub(super) fn status(&self, t: u64) -> u8 {
        let mut s = self.control_bits;
        if self.out(t) {
            s |= control::STATUS_OUT;
        }
        if self.null_count(t) {
            s |= control::STATUS_NULL_COUNT;
        }
        s
    }

    pub(super) fn write_control(&mut self, access: Access, mode_bits: u8, t: u64) {
        self.access = access;
        self.mode = Mode::from_bits(mode_bits);
        // BCD is ignored (see pit.rs), so it is not reported back either.
        self.control_bits = ((access as u8) << control::ACCESS_SHIFT) | ((mode_bits & 7) << 1);
        self.count_register = None;
        self.count_pending = false;
        self.pending_low = None;
        self.read_high_next = false;
        self.latched_count = None;
        self.latched_status = None;
        // The counter stops until a new count arrives; OUT takes the mode's initial level.
        self.state = State::Waiting {
            held: self.value(t),
        };
    }

    pub(super) fn latch_count(&mut self, t: u64) {
        // A second latch before the first was read is ignored.
        if self.latched_count.is_none() {
            self.latched_count = Some(LatchedCount {
                value: self.value(t),
                high_next: self.access == Access::High,
            });
        }
    }

    pub(super) fn latch_status(&mut self, t: u64) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status(t));
        }
    }

    pub(super) fn read(&mut self, t: u64) -> u8 {
        if let Some(s) = self.latched_status.take() {
            return s;
        }
        if let Some(mut l) = self.latched_count {
            let byte = if l.high_next { l.value >> 8 } else { l.value } as u8;
            if self.access == Access::LowThenHigh && !l.high_next {
                l.high_next = true;
                self.latched_count = Some(l);
            } else {
                self.latched_count = None;
            }
            return byte;
        }
        let v = self.value(t);
        let high = match self.access {
            Access::Low => false,
            Access::High => true,
            Access::LowThenHigh => {
                self.read_high_next = !self.read_high_next;
                !self.read_high_next
            }
        };
        if high {
            (v >> 8) as u8
        } else {
            v as u8
        }
    }

    pub(super) fn write(&mut self, byte: u8, t: u64) {
        let count = match (self.access, self.pending_low.take()) {
            (Access::Low, _) => u16::from(byte),
            (Access::High, _) => u16::from(byte) << 8,
            (Access::LowThenHigh, None) => {
                self.pending_low = Some(byte);
                if self.mode == Mode::InterruptOnTerminalCount {
                    // Writing the first byte stops the count and drives OUT low.
                    self.state = State::Waiting {
                        held: self.value(t),
                    };
                }
                return;
            }
            (Access::LowThenHigh, Some(low)) => u16::from(low) | u16::from(byte) << 8,
        };
        // A count of 0 means 2^16 in binary counting.
        let initial = if count == 0 {
            0x1_0000
        } else {
            u32::from(count)
        };
        self.count_register = Some(initial);
        if self.mode.gate_triggered() {
            self.count_pending = matches!(self.state, State::Loaded { .. });
            return;
        }
        // Loaded on the next clock pulse, which does not decrement it.
        let load = t + 1;
        self.count_pending = false;
        self.state = State::Loaded {
            initial,
            load,
            counted: 0,
            running_since: self.gate.then_some(load),
        };
    }

    pub(super) fn set_gate(&mut self, gate: bool, t: u64) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        let retrigger = gate && (self.mode.gate_triggered() || self.mode.periodic());
        if retrigger {
            if let Some(initial) = self.count_register {
                let load = t + 1;
                self.count_pending = false;
                self.state = State::Loaded {
                    initial,
                    load,
                    counted: 0,
                    running_since: Some(load),
                };
            }
            return;
        }
        if self.mode.gate_triggered() {
            return; // modes 1 and 5 keep counting with the gate low
        }
        let elapsed = self.elapsed(t);
        if let State::Loaded {
            load,
            counted,
            running_since,
            ..
        } = &mut self.state
        {
            if gate {
                *running_since = Some(t.max(*load));
            } else {
                *counted = elapsed;
                *running_since = None;
            }
        }
    }
}
