//! Host-side fuzzing of didvisor's parsers of untrusted and firmware bytes, on stable Rust inside
//! `cargo test`.
//!
//! Each parser crate has a `tests/fuzz.rs` with one `fuzz_*` test per parser. A test calls
//! [`run`] (or [`run_bytes`]) with a [`proptest`] strategy and a property; the property panics
//! when the parser misbehaves, and returns whether the parser accepted the input (the summary
//! line counts those: a target whose inputs never get accepted fuzzes little more than the
//! header checks). [`run`] does, in order:
//!
//! 1. every seed file of `fuzz/corpus/<target>/` through the property (real inputs, hand-built
//!    ones, and inputs that once broke a parser);
//! 2. `cases` random inputs (default per target, `PROPTEST_CASES` overrides): for byte targets
//!    a mix of arbitrary byte strings and seeds changed by a list of [`Mutation`]s, so inputs
//!    get past magic numbers and checksums; proptest shrinks a failing input to a small one;
//! 3. with `HOSTFUZZ_SECONDS=N`, more rounds of random cases (a new RNG seed each) until N
//!    seconds have passed: the long campaign (`cargo xtask fuzz-host --seconds N`).
//!
//! A watchdog thread fails the test, printing the input, when one case runs longer than
//! [`HANG_SECONDS`]: "never loops forever" is part of every property.
//!
//! Random cases use a fixed RNG seed per target unless `PROPTEST_RNG_SEED` is set, so
//! `cargo test` is reproducible; a long campaign (`HOSTFUZZ_SECONDS`) draws a fresh seed for
//! each round and prints it, so a failure can be replayed. See `docs/fuzzing.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use proptest;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// A case that runs longer than this is reported as a hang.
pub const HANG_SECONDS: u64 = 20;

/// A byte string whose `Debug` is one hex line (easy to paste into `xxd -r -p`).
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes: ", self.0.len())?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// The corpus directory of `target`: `fuzz/corpus/<target>/`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Writes `bytes` as seed `name` of `target` (the `write_seed_corpus` tests, run by hand).
pub fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

thread_local! {
    /// Guest memory, reused from case to case (allocating and first touching megabytes each
    /// case would take most of the time).
    static GUEST: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` bytes of zeroed guest memory (the loader targets').
pub fn with_guest<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    GUEST.with(|g| {
        let mut g = g.borrow_mut();
        if g.len() < len {
            g.resize(len, 0);
        }
        let guest = &mut g[..len];
        guest.fill(0);
        f(guest)
    })
}

/// All bytes zero (page by page with `memcmp`).
pub fn is_zero(b: &[u8]) -> bool {
    const PAGE: [u8; 4096] = [0; 4096];
    b.chunks(4096).all(|c| c == &PAGE[..c.len()])
}

/// Sets the byte at `at` so that `bytes` sums to zero (the ACPI checksum rule, ACPI 6.5
/// §5.2.6); nothing if `at` is past the end.
pub fn fix_checksum(bytes: &mut [u8], at: usize) {
    if at >= bytes.len() {
        return;
    }
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    bytes[at] = 0u8.wrapping_sub(sum);
}

/// Fixes the checksum of the ACPI system description table at the start of `v` over its length
/// field (clamped to the bytes there are), so a mutated table gets past the checksum.
pub fn fix_sdt(v: &mut [u8]) {
    if v.len() < 36 {
        return;
    }
    let len = u32::from_le_bytes([v[4], v[5], v[6], v[7]]) as usize;
    let len = len.clamp(36, v.len());
    fix_checksum(&mut v[..len], 9);
}

/// The seed files of `target`, sorted by name: (file name, contents). A missing directory is
/// an empty corpus.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bytes = std::fs::read(&p)
                .unwrap_or_else(|e| panic!("reading corpus file {}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

/// One change to a seed. Offsets and lengths are taken modulo the input's length, so every
/// mutation applies to every input; shrinking drops mutations one by one.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Overwrite one byte.
    Byte { at: usize, value: u8 },
    /// Flip one bit.
    Flip { at: usize, bit: u8 },
    /// Write a boundary value (0, 1, all ones, the sign bit...) as a little-endian field of
    /// 1, 2, 4 or 8 bytes: what breaks length and count fields.
    Field { at: usize, width: u8, value: u64 },
    /// Cut the input at `len`.
    Truncate { len: usize },
    /// Insert bytes.
    Insert { at: usize, bytes: Vec<u8> },
    /// Remove up to `len` bytes.
    Remove { at: usize, len: usize },
    /// Copy a chunk of the input over another place of it (duplicates entries and headers).
    Copy { from: usize, to: usize, len: usize },
}

impl Mutation {
    /// Applies the mutation to `v`.
    pub fn apply(&self, v: &mut Vec<u8>) {
        let pos = |at: usize, v: &Vec<u8>| if v.is_empty() { 0 } else { at % v.len() };
        match *self {
            Mutation::Byte { at, value } => {
                if !v.is_empty() {
                    let i = pos(at, v);
                    v[i] = value;
                }
            }
            Mutation::Flip { at, bit } => {
                if !v.is_empty() {
                    let i = pos(at, v);
                    v[i] ^= 1 << (bit % 8);
                }
            }
            Mutation::Field { at, width, value } => {
                let i = pos(at, v);
                let bytes = value.to_le_bytes();
                for (k, b) in bytes.iter().take(usize::from(width)).enumerate() {
                    if let Some(slot) = v.get_mut(i + k) {
                        *slot = *b;
                    }
                }
            }
            Mutation::Truncate { len } => {
                let keep = len % (v.len() + 1);
                v.truncate(keep);
            }
            Mutation::Insert { at, ref bytes } => {
                let i = at % (v.len() + 1);
                v.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let i = pos(at, v);
                let end = i.saturating_add(len).min(v.len());
                v.drain(i..end);
            }
            Mutation::Copy { from, to, len } => {
                if v.is_empty() {
                    return;
                }
                let from = pos(from, v);
                let to = pos(to, v);
                let len = len.min(v.len() - from).min(v.len() - to);
                v.copy_within(from..from + len, to);
            }
        }
    }
}

/// Offsets: mostly inside the first bytes (headers), sometimes anywhere.
fn offset() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..64usize, 3 => 0..1024usize, 2 => any::<usize>()]
}

/// Values that break length, count and address fields.
pub fn boundary_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(4),
        Just(8),
        Just(0x7f),
        Just(0x80),
        Just(0xff),
        Just(0x7fff),
        Just(0x8000),
        Just(0xffff),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(0xffff_ffff),
        Just(0x1_0000_0000),
        Just(i64::MAX as u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::MAX - 7),
        0..64u64,
        any::<u64>(),
    ]
}

/// A strategy for one [`Mutation`].
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (offset(), any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
        3 => (offset(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        4 => (offset(), prop_oneof![Just(1u8), Just(2), Just(4), Just(8)], boundary_value())
            .prop_map(|(at, width, value)| Mutation::Field { at, width, value }),
        1 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        1 => (offset(), proptest::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (offset(), 1..64usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (offset(), offset(), 1..64usize)
            .prop_map(|(from, to, len)| Mutation::Copy { from, to, len }),
    ]
}

/// A seed from `seeds` changed by 1 to 8 mutations.
pub fn mutated(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Bytes> {
    assert!(!seeds.is_empty(), "mutated() needs at least one seed");
    let seeds = Arc::new(seeds);
    (0..seeds.len(), proptest::collection::vec(mutation(), 1..8))
        .prop_map(move |(i, mutations)| {
            let mut v = seeds[i].clone();
            for m in &mutations {
                m.apply(&mut v);
            }
            Bytes(v)
        })
        .boxed()
}

/// Arbitrary bytes, up to `max_len`.
pub fn arbitrary(max_len: usize) -> BoxedStrategy<Bytes> {
    proptest::collection::vec(any::<u8>(), 0..=max_len)
        .prop_map(Bytes)
        .boxed()
}

/// The usual input of a byte target: mostly mutated seeds (corpus files plus `extra` seeds
/// built in code), sometimes arbitrary bytes up to `max_len`.
pub fn inputs(target: &str, extra: Vec<Vec<u8>>, max_len: usize) -> BoxedStrategy<Bytes> {
    let mut seeds: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, b)| b).collect();
    seeds.extend(extra);
    if seeds.is_empty() {
        return arbitrary(max_len);
    }
    prop_oneof![1 => arbitrary(max_len), 4 => mutated(seeds)].boxed()
}

/// Random cases to run: `PROPTEST_CASES` or `default`.
pub fn cases(default: u32) -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_CASES={v} is not a number")),
        Err(_) => default,
    }
}

/// Seconds of extra random rounds (`HOSTFUZZ_SECONDS`), 0 when unset.
fn campaign_seconds() -> u64 {
    match std::env::var("HOSTFUZZ_SECONDS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("HOSTFUZZ_SECONDS={v} is not a number")),
        Err(_) => 0,
    }
}

/// The RNG seed of the first round: `PROPTEST_RNG_SEED` when set, else one fixed per target
/// (the same cases on every `cargo test`), or a fresh one in a long campaign.
fn first_seed(target: &str, campaign: bool) -> u64 {
    match std::env::var("PROPTEST_RNG_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_RNG_SEED={v} is not a number")),
        Err(_) if campaign => fresh_seed(0),
        // FNV-1a of the target name: stable across runs and platforms.
        Err(_) => target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }),
    }
}

fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // A failing input goes into the corpus by hand (docs/fuzzing.md), not into
        // proptest-regressions files next to the sources.
        failure_persistence: None,
        max_shrink_iters: 20_000,
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// What the watchdog sees of the worker.
#[derive(Default)]
struct Progress {
    /// Cases started so far.
    started: AtomicU64,
    /// The worker has returned.
    done: AtomicBool,
    /// Inputs the parser accepted.
    accepted: AtomicU64,
    /// The input of the case in progress (formatted only for a hang report).
    current: Mutex<Option<Box<dyn fmt::Debug + Send>>>,
}

/// Runs `target`: its corpus (through `from_seed`), then random cases from the strategy
/// `strategy()` makes, all through `property` (which returns whether the parser accepted the
/// input), under the hang watchdog. Panics with the (shrunk) failing input.
pub fn run<S>(
    target: &'static str,
    default_cases: u32,
    from_seed: impl Fn(Vec<u8>) -> Option<S::Value> + Send + 'static,
    strategy: impl FnOnce() -> S + Send + 'static,
    property: impl Fn(S::Value) -> bool + Send + 'static,
) where
    S: Strategy,
    S::Value: Clone + fmt::Debug + Send + 'static,
{
    let hang = Duration::from_secs(HANG_SECONDS);
    run_with_hang_limit(target, default_cases, from_seed, strategy, property, hang);
}

/// [`run`] with the watchdog's limit as a parameter.
fn run_with_hang_limit<S>(
    target: &'static str,
    default_cases: u32,
    from_seed: impl Fn(Vec<u8>) -> Option<S::Value> + Send + 'static,
    strategy: impl FnOnce() -> S + Send + 'static,
    property: impl Fn(S::Value) -> bool + Send + 'static,
    hang: Duration,
) where
    S: Strategy,
    S::Value: Clone + fmt::Debug + Send + 'static,
{
    let progress = Arc::new(Progress::default());
    let worker_progress = Arc::clone(&progress);
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{target}"))
        .spawn(move || {
            let p = worker_progress;
            let outcome = fuzz(target, default_cases, from_seed, strategy(), property, &p);
            p.done.store(true, Ordering::SeqCst);
            outcome
        })
        .expect("spawning the fuzz worker");

    // The watchdog: the worker must start a new case at least every HANG_SECONDS.
    let mut last = (0, Instant::now());
    while !progress.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        let started = progress.started.load(Ordering::SeqCst);
        if started != last.0 {
            last = (started, Instant::now());
        } else if last.1.elapsed() > hang {
            let input = progress
                .current
                .lock()
                .ok()
                .and_then(|c| c.as_ref().map(|v| format!("{v:?}")))
                .unwrap_or_default();
            // The worker thread is left behind; the test binary's exit ends it.
            panic!(
                "fuzz {target}: a case ran longer than {} s (a hang?) on input {input}",
                hang.as_secs_f64()
            );
        }
    }
    match worker.join() {
        Ok(Ok(summary)) => eprintln!("fuzz {target}: {summary}"),
        Ok(Err(message)) => panic!("{message}"),
        Err(_) => panic!("fuzz {target}: the worker panicked outside a case"),
    }
}

/// [`run`] for a target whose input is plain bytes: seeds are used as they are, random cases
/// come from [`inputs`] with `extra` seeds built in code.
pub fn run_bytes(
    target: &'static str,
    default_cases: u32,
    extra: Vec<Vec<u8>>,
    max_len: usize,
    property: impl Fn(&[u8]) -> bool + Send + 'static,
) {
    run(
        target,
        default_cases,
        |b| Some(Bytes(b)),
        move || inputs(target, extra, max_len),
        move |b: Bytes| property(&b),
    );
}

/// The worker: corpus, then rounds of random cases. `Ok` carries a summary line.
fn fuzz<S>(
    target: &str,
    default_cases: u32,
    from_seed: impl Fn(Vec<u8>) -> Option<S::Value>,
    strategy: S,
    property: impl Fn(S::Value) -> bool,
    progress: &Progress,
) -> Result<String, String>
where
    S: Strategy,
    S::Value: Clone + fmt::Debug + Send + 'static,
{
    let started = Instant::now();
    let case = |value: S::Value| {
        progress.started.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut current) = progress.current.lock() {
            *current = Some(Box::new(value.clone()));
        }
        if property(value) {
            progress.accepted.fetch_add(1, Ordering::Relaxed);
        }
    };

    let seeds = corpus(target);
    for (name, bytes) in &seeds {
        let Some(value) = from_seed(bytes.clone()) else {
            continue;
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(value)));
        if outcome.is_err() {
            return Err(format!(
                "fuzz {target}: corpus file {} fails the property (see the panic above)",
                corpus_dir(target).join(name).display()
            ));
        }
    }

    let cases = cases(default_cases);
    let seconds = campaign_seconds();
    let mut seed = first_seed(target, seconds > 0);
    if seconds > 0 {
        eprintln!("fuzz {target}: round 1 with PROPTEST_RNG_SEED={seed}");
    }
    let mut rounds = 0u64;
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(config(cases, seed));
        // proptest's `handle-panics` keeps the panics of the cases (and of every shrink step)
        // off the console.
        let result = runner.run(&strategy, |value| {
            case(value);
            Ok::<(), TestCaseError>(())
        });
        rounds += 1;
        total += u64::from(cases);
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, input)) => {
                // Once more, loudly: the panic's location (and backtrace, with RUST_BACKTRACE).
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(input.clone())));
                return Err(format!(
                    "fuzz {target}: property failed ({why}) with PROPTEST_RNG_SEED={seed}; minimal input:\n\
                     {input:?}\n(once fixed, a byte input goes into fuzz/corpus/{target}/, a \
                     structured one into a unit test: see docs/fuzzing.md)"
                ));
            }
            Err(TestError::Abort(why)) => return Err(format!("fuzz {target}: aborted: {why}")),
        }
        if started.elapsed() >= Duration::from_secs(seconds) || cases == 0 {
            break;
        }
        // The next round of a long campaign: a fresh seed, printed so it can be replayed.
        seed = fresh_seed(rounds);
        eprintln!(
            "fuzz {target}: round {} with PROPTEST_RNG_SEED={seed}",
            rounds + 1
        );
    }
    Ok(format!(
        "{} corpus files, {total} random cases in {rounds} round(s), {} accepted, {:.1} s",
        seeds.len(),
        progress.accepted.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    ))
}

/// A seed for a round of a long campaign: the clock mixed with the round number.
fn fresh_seed(round: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let x = nanos ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser.
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_in_bounds() {
        let m = [
            Mutation::Byte { at: 99, value: 1 },
            Mutation::Flip { at: 5, bit: 9 },
            Mutation::Field {
                at: 3,
                width: 8,
                value: u64::MAX,
            },
            Mutation::Copy {
                from: 1,
                to: 2,
                len: 100,
            },
            Mutation::Remove {
                at: usize::MAX,
                len: usize::MAX,
            },
            Mutation::Insert {
                at: 7,
                bytes: vec![9, 9],
            },
            Mutation::Truncate { len: 3 },
        ];
        for start in [vec![], vec![1], vec![1, 2, 3, 4, 5]] {
            let mut v = start.clone();
            for x in &m {
                x.apply(&mut v);
            }
            assert!(v.len() <= start.len() + 2);
        }
        let mut v = vec![0u8; 4];
        Mutation::Field {
            at: 2,
            width: 4,
            value: 0xaabb_ccdd,
        }
        .apply(&mut v);
        assert_eq!(v, [0, 0, 0xdd, 0xcc]);
    }

    #[test]
    fn bytes_debug_is_hex() {
        assert_eq!(
            format!("{:?}", Bytes(vec![0, 0xab])),
            "Bytes(2 bytes: 00ab)"
        );
    }

    #[test]
    fn a_hanging_case_is_reported_with_its_input() {
        let r = std::panic::catch_unwind(|| {
            run_with_hang_limit(
                "selftest-hang",
                100,
                |_| None,
                || 0..10u32,
                |v: u32| loop {
                    if v != 7 {
                        return true;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                },
                Duration::from_millis(300),
            )
        });
        let message = r.expect_err("no hang reported");
        let message = message.downcast_ref::<String>().expect("a message");
        assert!(
            message.contains("a hang?") && message.ends_with("input 7"),
            "{message}"
        );
    }

    #[test]
    fn a_failing_property_is_reported() {
        let r = std::panic::catch_unwind(|| {
            run_bytes("selftest-none", 200, vec![vec![1, 2, 3]], 16, |b| {
                assert!(!b.contains(&0x42), "found 0x42");
                true
            })
        });
        assert!(r.is_err());
    }
}
