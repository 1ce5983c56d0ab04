//! One virtio-pci device of a guest: its transport (the `virtio` crate's register machine), its
//! queues and its backend under one lock, reached from three places:
//! - the guest's configuration-space accesses (conf1, through the bus: `SharedConfigSpace`);
//! - the guest's BAR 0 accesses, which exit as nested page faults (nothing maps BAR 0; a kick is
//!   such an exit and only marks the device kicked);
//! - the service core's backend pass ([`VirtioDevice::service`]), which polls the queues while
//!   the guest is busy, with the guest's kicks suppressed, and asks for kicks again after
//!   [`POLL_BEFORE_KICKS_NS`] without work.
//!
//! A malformed ring or request breaks only this device: DEVICE_NEEDS_RESET, a configuration
//! interrupt, one report line; it serves nothing until the driver resets it.

use crate::hv::irq::MsiPath;
use crate::hv::virtio::memory::GuestRam;
use crate::hv::vm::guest::Vm;
use crate::hv::vm::guest_pci::SharedConfigSpace;
use core::sync::atomic::{AtomicU64, Ordering};
use devices::pci::ConfigSpace;
use spin::Mutex;
use virtio::chain::{Chain, ChainLimits};
use virtio::pci_config::ConfigEvent;
use virtio::queue::{DeviceQueue, QueueFeatures};
use virtio::status::{feature, DeviceStatus};
use virtio::transport::{
    Delivery, DeviceInfo, Event, Irq, MsiMessage, VirtioPci, BAR_SIZE, MAX_QUEUES,
};

/// How long the backend keeps polling a queue that brought no work before it asks the driver
/// to kick again (docs/virtio.md, "Polling and kicks").
pub const POLL_BEFORE_KICKS_NS: u64 = 20_000_000;
/// Chains one device serves per service-core pass at most.
const CHAINS_PER_PASS: u32 = 16;
/// Bytes one device moves per service-core pass at most (a chain is finished once started).
const BYTES_PER_PASS: u64 = 1 << 20;

/// What a device type does with its queues' chains.
pub trait Backend: Send {
    /// The device as the transport presents it (type, offered features, queues, config).
    fn info(&self) -> DeviceInfo;
    /// What a chain of `queue` may hold under the negotiated `features`.
    fn limits(&self, queue: u16, features: u64) -> ChainLimits;
    /// Serves one chain of `queue`: the used length, or why the device must be reset.
    fn serve(
        &mut self,
        queue: u16,
        chain: &Chain,
        mem: &mut GuestRam,
        features: u64,
    ) -> Result<u32, &'static str>;
    /// The device's end-of-guest line (after its name), e.g. what the disk holds.
    fn report(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result;
}

/// Whether the backend polls or waits for a kick.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Notifications enabled: nothing is looked at until the driver kicks.
    WaitingForKick,
    /// Notifications suppressed; `last_work` is when a chain was last served.
    Polling { last_work: u64 },
}

struct State<B> {
    transport: VirtioPci,
    backend: B,
    queues: [Option<DeviceQueue>; MAX_QUEUES],
    mode: Mode,
    kicked: bool,
    /// Why the device needs a reset (the first reason).
    broken: Option<&'static str>,
}

/// Counters for the guest's end report.
#[derive(Default)]
pub struct Counts {
    pub interrupts: AtomicU64,
    pub via_exits: AtomicU64,
    pub kicks: AtomicU64,
    pub chains: AtomicU64,
    pub resets: AtomicU64,
}

/// One virtio device of guest `vm` at `devfn` on its bus.
pub struct VirtioDevice<B> {
    pub vm: &'static Vm,
    pub name: &'static str,
    pub devfn: devices::pci::DevFn,
    /// Where BAR 0 is at the guest's (re)start.
    initial_bar0: u64,
    ram: GuestRam,
    state: Mutex<State<B>>,
    pub counts: Counts,
}

impl<B: Backend> VirtioDevice<B> {
    /// The device at reset with its BAR 0 at `bar0`.
    pub fn new(
        vm: &'static Vm,
        name: &'static str,
        devfn: devices::pci::DevFn,
        bar0: u64,
        backend: B,
    ) -> Self {
        let mut transport = VirtioPci::new(backend.info());
        transport.place_bar0(bar0);
        VirtioDevice {
            vm,
            name,
            devfn,
            initial_bar0: bar0,
            ram: GuestRam {
                hpa: vm.ram_hpa,
                size: vm.ram_size,
            },
            state: Mutex::new(State {
                transport,
                backend,
                queues: [const { None }; MAX_QUEUES],
                mode: Mode::WaitingForKick,
                kicked: false,
                broken: None,
            }),
            counts: Counts::default(),
        }
    }

    /// A guest access to `gpa` (`write`: the value stored): `None` unless it is in this
    /// device's BAR 0 with memory decoding on; a read's value otherwise.
    pub fn mmio(&self, gpa: u64, size: u8, write: Option<u64>) -> Option<u64> {
        let mut st = self.state.lock();
        let bar = st.transport.bar0();
        if !st.transport.memory_decode() || !(bar..bar + BAR_SIZE).contains(&gpa) {
            return None;
        }
        let offset = gpa - bar;
        match write {
            None => Some(st.transport.bar_read(offset, size).unwrap_or_else(|e| {
                self.vm
                    .report(format_args!("{}: BAR read refused: {e:?}", self.name));
                u64::MAX
            })),
            Some(value) => {
                match st.transport.bar_write(offset, size, value) {
                    Ok(event) => self.event(&mut st, event),
                    Err(e) => self
                        .vm
                        .report(format_args!("{}: BAR write refused: {e:?}", self.name)),
                }
                Some(0)
            }
        }
    }

    fn event(&self, st: &mut State<B>, event: Event) {
        match event {
            Event::None | Event::StatusSet(_) | Event::DeviceConfigWrite { .. } => {}
            Event::Reset => {
                self.counts.resets.fetch_add(1, Ordering::Relaxed);
                st.queues = [const { None }; MAX_QUEUES];
                st.mode = Mode::WaitingForKick;
                st.kicked = false;
                st.broken = None;
            }
            Event::FeaturesRefused(e) => self
                .vm
                .report(format_args!("{}: FEATURES_OK refused: {e:?}", self.name)),
            Event::QueueEnabled { queue, layout } => {
                let max = st.transport.queue(queue).map_or(0, |q| q.max_size);
                let features = st.transport.negotiated().unwrap_or(0);
                match layout.check(max, &self.ram) {
                    Ok(()) => {
                        let qf = QueueFeatures {
                            event_idx: features & feature::EVENT_IDX != 0,
                        };
                        let limits = st.backend.limits(queue, features);
                        if let Some(slot) = st.queues.get_mut(usize::from(queue)) {
                            *slot = Some(DeviceQueue::new(layout, qf, limits));
                        }
                    }
                    Err(_) => self.break_device(st, "a queue outside guest RAM"),
                }
            }
            Event::Notify { .. } => {
                self.counts.kicks.fetch_add(1, Ordering::Relaxed);
                st.kicked = true;
            }
            Event::MsixEntry { deliver, .. } => {
                if let Some(m) = deliver {
                    self.send(m);
                }
            }
        }
    }

    /// Marks the device DEVICE_NEEDS_RESET (once) and tells the driver.
    fn break_device(&self, st: &mut State<B>, why: &'static str) {
        if st.broken.is_some() {
            return;
        }
        st.broken = Some(why);
        st.queues = [const { None }; MAX_QUEUES];
        self.vm.report(format_args!(
            "{}: {why}: the device needs a reset (DEVICE_NEEDS_RESET)",
            self.name
        ));
        if let Some(Delivery::Msi(m)) = st.transport.set_needs_reset() {
            self.send(m);
        }
    }

    /// Sends `m` to the guest and counts it.
    fn send(&self, m: MsiMessage) {
        let message = iommu::MsiMessage {
            address: m.address,
            data: m.data,
        };
        match self.vm.platform.device_msi(message) {
            Some(path) => {
                self.counts.interrupts.fetch_add(1, Ordering::Relaxed);
                if path == MsiPath::AtExit {
                    self.counts.via_exits.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => self.vm.report(format_args!(
                "{}: MSI-X message {:#x}/{:#x} names no vCPU of this guest; dropped",
                self.name, m.address, m.data
            )),
        }
    }

    /// The service core's pass over this device at time `now` (ns): bounded work, and nothing
    /// at all while the device waits for a kick or a vCPU holds its lock.
    pub fn service(&self, now: u64) {
        let Some(mut guard) = self.state.try_lock() else {
            return;
        };
        let st = &mut *guard;
        if st.broken.is_some() || !st.transport.status().live() {
            return;
        }
        if core::mem::take(&mut st.kicked) && st.mode == Mode::WaitingForKick {
            st.mode = Mode::Polling { last_work: now };
            for q in st.queues.iter_mut().flatten() {
                if q.disable_notifications(&mut self.ram.clone()).is_err() {
                    return self.break_device(st, "a ring outside guest RAM");
                }
            }
        }
        let Mode::Polling { last_work } = st.mode else {
            return;
        };
        let features = st.transport.negotiated().unwrap_or(0);
        let (mut chains, mut bytes) = (0u32, 0u64);
        for index in 0..MAX_QUEUES {
            let mut pushed = false;
            while chains < CHAINS_PER_PASS && bytes < BYTES_PER_PASS {
                let mut mem = self.ram;
                let Some(q) = st.queues[index].as_mut() else {
                    break;
                };
                let chain = match q.pop(&mem) {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => {
                        self.vm
                            .report(format_args!("{}: queue {index}: {e:?}", self.name));
                        return self.break_device(st, "a malformed ring or chain");
                    }
                };
                let len = match st.backend.serve(index as u16, &chain, &mut mem, features) {
                    Ok(len) => len,
                    Err(why) => return self.break_device(st, why),
                };
                let Some(q) = st.queues[index].as_mut() else {
                    break;
                };
                if q.push_used(&mut mem, chain.head(), len).is_err() {
                    return self.break_device(st, "a used ring outside guest RAM");
                }
                pushed = true;
                chains += 1;
                bytes += chain.readable_len() + chain.writable_len();
            }
            if pushed {
                let Some(q) = st.queues[index].as_mut() else {
                    continue;
                };
                match q.should_interrupt(&self.ram) {
                    Ok(true) => {
                        if let Delivery::Msi(m) = st.transport.raise(Irq::Queue(index as u16)) {
                            self.send(m);
                        }
                    }
                    Ok(false) => {}
                    Err(_) => return self.break_device(st, "a ring outside guest RAM"),
                }
            }
        }
        self.counts
            .chains
            .fetch_add(u64::from(chains), Ordering::Relaxed);
        if chains > 0 {
            st.mode = Mode::Polling { last_work: now };
        } else if now.saturating_sub(last_work) >= POLL_BEFORE_KICKS_NS {
            self.ask_for_kicks(st, now);
        }
    }

    /// Idle for long enough: notifications on, then the re-check for chains that came in
    /// between (those keep the backend polling).
    fn ask_for_kicks(&self, st: &mut State<B>, now: u64) {
        let mut raced = false;
        for q in st.queues.iter_mut().flatten() {
            match q.enable_notifications(&mut self.ram.clone()) {
                Ok(more) => raced |= more,
                Err(_) => return self.break_device(st, "a ring outside guest RAM"),
            }
        }
        if !raced {
            st.mode = Mode::WaitingForKick;
            return;
        }
        for q in st.queues.iter_mut().flatten() {
            if q.disable_notifications(&mut self.ram.clone()).is_err() {
                return self.break_device(st, "a ring outside guest RAM");
            }
        }
        st.mode = Mode::Polling { last_work: now };
    }

    /// Whether the device ended broken, and why.
    pub fn broken(&self) -> Option<&'static str> {
        self.state.lock().broken
    }

    /// Its status register as the driver last saw it.
    pub fn status(&self) -> DeviceStatus {
        self.state.lock().transport.status().status()
    }

    /// The backend's report (`Display`).
    pub fn backend_report(&self) -> BackendReport<'_, B> {
        BackendReport(self)
    }

    /// Applies what configuration writes asked for (under the device lock).
    fn config_events(&self, st: &mut State<B>) {
        while let Some(e) = st.transport.pop_event() {
            match e {
                // Nothing maps BAR 0: it is decoded at each access, wherever it is.
                ConfigEvent::MemoryDecode { .. } | ConfigEvent::BarMoved { .. } => {}
                ConfigEvent::MsixControl { .. } | ConfigEvent::Overflow => {
                    while let Some(m) = st.transport.take_deliverable() {
                        self.send(m);
                    }
                }
                ConfigEvent::Window(Ok(event)) => self.event(st, event),
                ConfigEvent::Window(Err(e)) => self.vm.report(format_args!(
                    "{}: configuration window write refused: {e:?}",
                    self.name
                )),
            }
        }
    }
}

/// `Display` of a device's backend report.
pub struct BackendReport<'a, B>(&'a VirtioDevice<B>);

impl<B: Backend> core::fmt::Display for BackendReport<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.state.lock().backend.report(f)
    }
}

impl<B: Backend> SharedConfigSpace for VirtioDevice<B> {
    fn restart(&self) {
        let mut st = self.state.lock();
        let bar0 = self.initial_bar0;
        st.transport = VirtioPci::new(st.backend.info());
        st.transport.place_bar0(bar0);
        st.queues = [const { None }; MAX_QUEUES];
        st.mode = Mode::WaitingForKick;
        st.kicked = false;
        st.broken = None;
    }

    fn read(&self, offset: u16) -> u32 {
        self.state.lock().transport.read(offset)
    }

    fn write(&self, offset: u16, value: u32, mask: u32) {
        let mut st = self.state.lock();
        st.transport.write(offset, value, mask);
        self.config_events(&mut st);
    }
}
