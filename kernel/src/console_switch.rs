//! Which guest the keyboard belongs to: what is typed on the hypervisor's serial console goes to
//! one guest's UART at a time, and an escape sequence moves it to another guest.
//!
//! Keys (Ctrl-] is byte 1Dh; not Ctrl-A, which QEMU's `-nographic`, screen and minicom keep for
//! themselves):
//!
//! | keys | effect |
//! |---|---|
//! | `Ctrl-]` `n` | the keyboard goes to the next running guest (command-line order, wrapping) |
//! | `Ctrl-]` `1` … `9` | the keyboard goes to guest 1 … 9 (command-line order) |
//! | `Ctrl-]` `Ctrl-]` | one Ctrl-] is typed into the current guest |
//! | `Ctrl-]` anything else | nothing is typed; a line lists the keys and the guests |
//!
//! When the guest that has the keyboard ends, the keyboard moves to the next running guest.
//! The decisions are here (host-tested); `hv/vm/console_input.rs` moves the bytes and prints.

/// The escape byte: Ctrl-] (ASCII GS).
pub const ESCAPE: u8 = 0x1d;

/// What one typed byte (or a guest's end) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Type this byte into guest `guest`.
    Type { guest: usize, byte: u8 },
    /// The keyboard moved from `from` (if any guest had it) to `to`.
    Switched { from: Option<usize>, to: usize },
    /// `Ctrl-]` + a digit named guest `guest` (0-based), which is not running (or does not
    /// exist); the keyboard stays.
    NotRunning { guest: usize },
    /// `Ctrl-] n` found no other running guest; the keyboard stays.
    NoOther,
    /// `Ctrl-]` + a key that means nothing: show the keys.
    Help,
    /// Nothing to do (the escape byte itself, or input while no guest runs).
    Nothing,
}

/// The keyboard's owner and the escape state.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleSwitch {
    current: Option<usize>,
    escaped: bool,
}

impl ConsoleSwitch {
    /// The keyboard starts with `first` (the `console=` guest, or the first guest).
    pub const fn new(first: Option<usize>) -> Self {
        ConsoleSwitch {
            current: first,
            escaped: false,
        }
    }

    /// The guest that has the keyboard.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// One byte typed on the console. `count` guests exist; `running(i)` says whether guest `i`
    /// runs (started and not ended).
    pub fn input(&mut self, byte: u8, count: usize, running: impl Fn(usize) -> bool) -> Action {
        if !core::mem::replace(&mut self.escaped, false) {
            if byte == ESCAPE {
                self.escaped = true;
                return Action::Nothing;
            }
            return match self.current {
                Some(guest) if running(guest) => Action::Type { guest, byte },
                _ => Action::Nothing,
            };
        }
        match byte {
            ESCAPE => match self.current {
                Some(guest) if running(guest) => Action::Type { guest, byte },
                _ => Action::Nothing,
            },
            b'n' | b'N' => match next_running(self.current, count, &running) {
                Some(to) if Some(to) != self.current => self.switch_to(to),
                _ => Action::NoOther,
            },
            b'1'..=b'9' => {
                let guest = usize::from(byte - b'1');
                if guest < count && running(guest) {
                    self.switch_to(guest)
                } else {
                    Action::NotRunning { guest }
                }
            }
            _ => Action::Help,
        }
    }

    /// Called while no byte is typed: when the keyboard's guest has ended, the keyboard moves to
    /// the next running guest.
    pub fn follow(&mut self, count: usize, running: impl Fn(usize) -> bool) -> Action {
        match self.current {
            Some(guest) if !running(guest) => match next_running(self.current, count, &running) {
                Some(to) => self.switch_to(to),
                None => Action::Nothing,
            },
            _ => Action::Nothing,
        }
    }

    fn switch_to(&mut self, to: usize) -> Action {
        let from = self.current.replace(to);
        Action::Switched { from, to }
    }
}

/// The first running guest after `current` in command-line order, wrapping around (`current`
/// itself last); from no guest, the first running one.
pub fn next_running(
    current: Option<usize>,
    count: usize,
    running: impl Fn(usize) -> bool,
) -> Option<usize> {
    let start = current.map_or(0, |c| c + 1);
    (0..count)
        .map(|k| (start + k) % count)
        .find(|&i| running(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: usize) -> bool {
        true
    }

    #[test]
    fn bytes_go_to_the_current_guest() {
        let mut s = ConsoleSwitch::new(Some(1));
        assert_eq!(
            s.input(b'x', 3, all),
            Action::Type {
                guest: 1,
                byte: b'x'
            }
        );
        // Ctrl-A is typed through: it is not the escape.
        assert_eq!(s.input(0x01, 3, all), Action::Type { guest: 1, byte: 1 });
        assert_eq!(
            ConsoleSwitch::new(None).input(b'x', 3, all),
            Action::Nothing
        );
    }

    #[test]
    fn escape_n_cycles_through_running_guests() {
        let mut s = ConsoleSwitch::new(Some(0));
        let running = |i: usize| i != 1;
        assert_eq!(s.input(ESCAPE, 3, running), Action::Nothing);
        assert_eq!(
            s.input(b'n', 3, running),
            Action::Switched {
                from: Some(0),
                to: 2
            }
        );
        assert_eq!(s.current(), Some(2));
        s.input(ESCAPE, 3, running);
        assert_eq!(
            s.input(b'n', 3, running),
            Action::Switched {
                from: Some(2),
                to: 0
            }
        );
        // After the sequence, bytes are plain again.
        assert_eq!(
            s.input(b'n', 3, running),
            Action::Type {
                guest: 0,
                byte: b'n'
            }
        );
    }

    #[test]
    fn escape_digit_selects_a_guest_by_position() {
        let mut s = ConsoleSwitch::new(Some(0));
        s.input(ESCAPE, 2, all);
        assert_eq!(
            s.input(b'2', 2, all),
            Action::Switched {
                from: Some(0),
                to: 1
            }
        );
        s.input(ESCAPE, 2, all);
        assert_eq!(s.input(b'3', 2, all), Action::NotRunning { guest: 2 });
        s.input(ESCAPE, 2, all);
        assert_eq!(
            s.input(b'1', 2, |i| i != 0),
            Action::NotRunning { guest: 0 }
        );
        assert_eq!(s.current(), Some(1));
    }

    #[test]
    fn double_escape_types_one_escape_and_other_keys_ask_for_help() {
        let mut s = ConsoleSwitch::new(Some(0));
        s.input(ESCAPE, 1, all);
        assert_eq!(
            s.input(ESCAPE, 1, all),
            Action::Type {
                guest: 0,
                byte: ESCAPE
            }
        );
        s.input(ESCAPE, 1, all);
        assert_eq!(s.input(b'?', 1, all), Action::Help);
        assert_eq!(
            s.input(b'q', 1, all),
            Action::Type {
                guest: 0,
                byte: b'q'
            }
        );
    }

    #[test]
    fn n_with_one_guest_says_there_is_no_other() {
        let mut s = ConsoleSwitch::new(Some(0));
        s.input(ESCAPE, 1, all);
        assert_eq!(s.input(b'n', 1, all), Action::NoOther);
        assert_eq!(s.current(), Some(0));
    }

    #[test]
    fn the_keyboard_follows_when_its_guest_ends() {
        let mut s = ConsoleSwitch::new(Some(0));
        assert_eq!(s.follow(2, all), Action::Nothing);
        assert_eq!(
            s.follow(2, |i| i == 1),
            Action::Switched {
                from: Some(0),
                to: 1
            }
        );
        assert_eq!(s.follow(2, |_| false), Action::Nothing);
        assert_eq!(s.current(), Some(1));
        // Input for an ended guest goes nowhere.
        assert_eq!(s.input(b'x', 2, |_| false), Action::Nothing);
    }

    #[test]
    fn next_running_wraps_and_starts_from_nothing() {
        assert_eq!(next_running(None, 3, |i| i == 2), Some(2));
        assert_eq!(next_running(Some(2), 3, all), Some(0));
        assert_eq!(next_running(Some(1), 3, |i| i == 1), Some(1));
        assert_eq!(next_running(Some(0), 0, all), None);
        assert_eq!(next_running(Some(0), 2, |_| false), None);
    }
}
