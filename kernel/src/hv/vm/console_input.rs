//! Moves what is typed on the hypervisor's console into the serial port of the guest that has the
//! keyboard, holding a byte while that port's receiver is full, and switches the keyboard between
//! guests on `Ctrl-]` sequences (decided by `didvisor::console_switch`, which lists the keys).
//! Polled by the service core.

use crate::hv::host::serial;
use crate::hv::vm::guest;
use didvisor::config::{Config, MAX_GUESTS};
use didvisor::console_switch::{Action, ConsoleSwitch};

const KEYS: &str = "Ctrl-] n: next guest, Ctrl-] 1-9: guest by number, Ctrl-] Ctrl-]: a Ctrl-]";

pub struct ConsoleInput {
    guests: Guests,
    switch: ConsoleSwitch,
    /// A byte for guest `.0` whose receiver had no room for it yet.
    pending: Option<(usize, u8)>,
}

/// The guests of the command line and which of them were started.
struct Guests {
    cfg: &'static Config,
    /// Guests that were started (a refused guest never runs).
    built: [bool; MAX_GUESTS],
    count: usize,
}

impl Guests {
    fn running(&self, index: usize) -> bool {
        index < self.count && self.built[index] && !guest::vm(index).has_ended()
    }

    fn name(&self, index: usize) -> &'static str {
        self.cfg
            .guests()
            .nth(index)
            .map_or("-", |g| g.name.as_str())
    }
}

impl ConsoleInput {
    /// The keyboard starts with the `console=` guest (default: the first), or the next running
    /// one if that guest was not started.
    pub fn new(cfg: &'static Config, built: &[bool; MAX_GUESTS]) -> Self {
        let guests = Guests {
            cfg,
            built: *built,
            count: cfg.guest_count(),
        };
        let mut switch = ConsoleSwitch::new(cfg.console_guest());
        switch.follow(guests.count, |i| guests.running(i));
        if let Some(g) = switch.current().filter(|&g| guests.running(g)) {
            log::info!("console: keyboard to guest {} ({KEYS})", guests.name(g));
        }
        ConsoleInput {
            guests,
            switch,
            pending: None,
        }
    }

    pub fn poll(&mut self) {
        let g = &self.guests;
        let followed = self.switch.follow(g.count, |i| g.running(i));
        self.report(followed);
        if let Some((index, byte)) = self.pending.take() {
            if self.guests.running(index) && !type_into(index, byte) {
                self.pending = Some((index, byte));
                return;
            }
        }
        let Some(byte) = serial::try_read() else {
            return;
        };
        let g = &self.guests;
        match self.switch.input(byte, g.count, |i| g.running(i)) {
            Action::Type { guest, byte } => {
                if !type_into(guest, byte) {
                    self.pending = Some((guest, byte));
                }
            }
            other => self.report(other),
        }
    }

    fn report(&self, action: Action) {
        let g = &self.guests;
        let current = self.switch.current().map_or("-", |c| g.name(c));
        match action {
            Action::Switched {
                from: Some(from),
                to,
            } if !g.running(from) => log::info!(
                "console: guest {} ended; keyboard to guest {} ({} of {})",
                g.name(from),
                g.name(to),
                to + 1,
                g.count
            ),
            Action::Switched { to, .. } => log::info!(
                "console: keyboard to guest {} ({} of {})",
                g.name(to),
                to + 1,
                g.count
            ),
            Action::NotRunning { guest } => log::info!(
                "console: guest {} is not running ({} guests); the keyboard stays with {current}",
                guest + 1,
                g.count
            ),
            Action::NoOther => {
                log::info!("console: no other guest runs; the keyboard stays with {current}")
            }
            Action::Help => {
                log::info!("console: keyboard with guest {current}; {KEYS}");
                for i in 0..g.count {
                    let state = if g.running(i) { "" } else { " (not running)" };
                    log::info!("console:   {} {}{state}", i + 1, g.name(i));
                }
            }
            Action::Type { .. } | Action::Nothing => {}
        }
    }
}

/// Offers `byte` to guest `index`'s UART; false when its receiver is full.
fn type_into(index: usize, byte: u8) -> bool {
    let vm = guest::vm(index);
    let pushed = vm.platform.legacy.lock().push_console_input(byte);
    match pushed {
        Ok(effect) => {
            let _ = vm.platform.port_effect(effect);
            true
        }
        Err(_) => false,
    }
}
