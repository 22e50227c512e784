//! The worker's entropy engine: one reader thread per source feeding one shared reservoir.
//!
//! Each reader is a thin I/O loop around its source's [`Driver`] (qeaas-core), which decides
//! provenance, credit, flushes, state and reopening; the engine only opens, reads, sleeps, logs
//! and moves the driver's output into the reservoir under one lock. Sources are read on demand:
//! a reader sleeps while the reservoir's queue is full, so an idle host costs next to nothing.
//! Everything a reader learns is published in [`SourceStatus`] for the metrics and the socket's
//! status answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qeaas_core::assess::online::{OnlineEstimate, DEFAULT_WINDOW_BYTES};
use qeaas_core::driver::{Action, Driver, DriverCounters, Event, SourceState};
use qeaas_core::extractor::Toeplitz;
use qeaas_core::fips::FipsCounters;
use qeaas_core::health::HealthCounters;
use qeaas_core::pipeline::PipelineCounters;
use qeaas_core::pool::{NotEnoughEntropy, PoolHash};
use qeaas_core::provenance::Provenance;
use qeaas_core::reservoir::{Reservoir, ReservoirCounters, Taken};
use tracing::{error, info, warn};
use zeroize::Zeroize;

use crate::config::Source;
use crate::source::{self, OpenError};

/// How often a source is read while the ready queue is full (health monitoring of idle sources):
/// a permanent failure (three failed probes) is reported within ~15 s, inside the alert window.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Published status of one source.
#[derive(Clone, Debug)]
pub struct SourceStatus {
    /// Configured name.
    pub name: String,
    /// Configured kind.
    pub kind: &'static str,
    /// Provenance decided at the last open; `None` before the first.
    pub provenance: Option<Provenance>,
    /// Current state.
    pub state: SourceState,
    /// Reads, opens, unplugs, refusals, credit after policy.
    pub counters: DriverCounters,
    /// Health counters.
    pub health: HealthCounters,
    /// FIPS counters.
    pub fips: FipsCounters,
    /// Pipeline counters.
    pub pipeline: PipelineCounters,
    /// RCT and APT cut-offs.
    pub cutoffs: (u32, u32),
    /// Last problem, for `status`.
    pub last_error: Option<String>,
    /// Min-entropy claimed per sample (the configured, credited H).
    pub entropy_claimed: f64,
    /// Online SP 800-90B estimate (MCV and Markov) of the last window of raw samples, per
    /// sample; a monitor only, never a credit.
    pub entropy_estimate: Option<f64>,
}

impl SourceStatus {
    /// Label of the provenance (`unknown` before the first open).
    pub fn provenance_label(&self) -> &'static str {
        self.provenance.map_or("unknown", Provenance::label)
    }
}

/// Consumer classes for accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Face {
    /// Local Unix socket.
    Socket,
    /// EGD-compatible socket.
    Egd,
    /// Kernel feeding.
    Kernel,
}

impl Face {
    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            Face::Socket => "socket",
            Face::Egd => "egd",
            Face::Kernel => "kernel",
        }
    }
}

/// Why a consumer got no bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TakeError {
    /// Sources are healthy but have not produced enough yet.
    #[error("not enough entropy")]
    NotEnough,
    /// No source is healthy: every source is absent, failed or exhausted.
    #[error("no healthy source")]
    SourceFailed,
    /// For the kernel only: the pool's output may not be credited to the kernel (something
    /// other than hardware was mixed in) and feeding it uncredited is not allowed.
    #[error("the pool holds bytes from a source other than hardware")]
    Uncreditable,
}

struct Inner {
    reservoir: Reservoir,
    /// Ready bytes no client may take: the kernel feeder's share (see [`Engine::reserve_for_kernel`]).
    kernel_reserve: usize,
    sources: Vec<SourceStatus>,
    served: std::collections::HashMap<(Face, String), u64>,
    starved: Duration,
}

/// State shared by readers, the kernel feeder, the socket server and metrics.
pub struct Engine {
    inner: Mutex<Inner>,
    /// Readers wait here while the queue is full.
    room: Condvar,
    /// Consumers wait here (async) for bytes.
    pub data: tokio::sync::Notify,
    /// Started at.
    pub started: Instant,
    stop: AtomicBool,
    /// The local socket's defences at work (connection caps, evictions, timeouts).
    pub socket_stats: crate::socket::SocketStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// A consistent copy of everything metrics need.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Sources.
    pub sources: Vec<SourceStatus>,
    /// Reservoir counters.
    pub reservoir: ReservoirCounters,
    /// Bytes ready.
    pub ready: usize,
    /// Queue capacity.
    pub capacity: usize,
    /// Pool credit in bits.
    pub pool_credit_bits: u32,
    /// Bytes served per (face, client).
    pub served: Vec<((Face, String), u64)>,
    /// Total time consumers waited or were refused.
    pub starved: Duration,
}

impl Engine {
    /// An engine for `sources` with a queue of `queue_bytes` and the default conditioner.
    pub fn new(sources: &[Source], queue_bytes: usize) -> Arc<Self> {
        Self::with_conditioner(sources, queue_bytes, PoolHash::default())
    }

    /// An engine whose pool conditions with `hash`.
    pub fn with_conditioner(sources: &[Source], queue_bytes: usize, hash: PoolHash) -> Arc<Self> {
        let statuses = sources
            .iter()
            .map(|s| SourceStatus {
                name: s.name.clone(),
                kind: s.kind_label(),
                provenance: None,
                state: SourceState::Gone,
                counters: DriverCounters::default(),
                health: HealthCounters::default(),
                fips: FipsCounters::default(),
                pipeline: PipelineCounters::default(),
                cutoffs: (0, 0),
                last_error: None,
                entropy_claimed: s.spec.health.h.bits(),
                entropy_estimate: None,
            })
            .collect();
        Arc::new(Self {
            inner: Mutex::new(Inner {
                reservoir: Reservoir::with_hash(queue_bytes, hash),
                kernel_reserve: 0,
                sources: statuses,
                served: Default::default(),
                starved: Duration::ZERO,
            }),
            room: Condvar::new(),
            data: tokio::sync::Notify::new(),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            socket_stats: Default::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking reader must not take the daemon down with a poisoned lock.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts one reader thread per source.
    pub fn spawn_readers(self: &Arc<Self>, sources: Vec<Source>) {
        let pool = self.lock().reservoir.pool_hash();
        let extractor = sources
            .iter()
            .any(|s| s.spec.processing.uses_extractor(pool))
            .then(|| Arc::new(Toeplitz::default_shape()));
        for (idx, src) in sources.into_iter().enumerate() {
            let engine = Arc::clone(self);
            // Built only for a pool that is not vetted, so every raw source uses it; the
            // conditioner of a post-processed one ignores it.
            let ex = extractor.clone();
            std::thread::Builder::new()
                .name(format!("src-{}", src.name))
                .spawn(move || engine.reader(idx, src, ex))
                .expect("spawn reader thread");
        }
    }

    /// Asks readers to stop (they exit at their next wake-up).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.room.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The drivers' clock: time since the engine started.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Copies what `driver` knows into the published status of source `idx`.
    fn publish(&self, idx: usize, driver: &Driver, last_error: Option<Option<String>>) {
        let mut g = self.lock();
        let s = &mut g.sources[idx];
        s.state = driver.state();
        s.provenance = driver.provenance();
        s.counters = driver.counters();
        s.health = driver.health_counters();
        s.fips = driver.fips_counters();
        s.pipeline = driver.pipeline_counters();
        if let Some(e) = last_error {
            s.last_error = e;
        }
    }

    /// Sleeps until the drivers' clock reads `t`, or the engine stops.
    fn sleep_until(&self, t: Duration) {
        let mut g = self.lock();
        while !self.stopping() {
            let now = self.now();
            if now >= t {
                break;
            }
            g = self
                .room
                .wait_timeout(g, t - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// One source: a thin loop doing what its driver asks and logging what it says.
    fn reader(&self, idx: usize, src: Source, extractor: Option<Arc<Toeplitz>>) {
        let mut driver = Driver::new(src.driver_spec(), extractor);
        self.set_status(idx, |s| s.cutoffs = driver.cutoffs());
        let path = src.path.display().to_string();
        let mut buf = vec![0u8; src.read_bytes];
        let mut staged: Vec<u8> = Vec::with_capacity(src.read_bytes + 256);
        let mut handle: Option<source::Opened> = None;
        // A monitor of the raw samples (never a credit), restarted with each opening.
        let mut online = OnlineEstimate::new(src.spec.health.width, DEFAULT_WINDOW_BYTES);
        while !self.stopping() {
            let now = self.now();
            match driver.poll(now) {
                Action::Finished => {
                    drop(handle.take());
                    self.publish(idx, &driver, None);
                    return;
                }
                Action::WaitUntil(t) => {
                    drop(handle.take());
                    self.sleep_until(t);
                }
                Action::Open => match source::open(&src) {
                    Ok(opened) => {
                        let err = match driver.opened(now, opened.node) {
                            Ok(Event::Opened {
                                provenance,
                                pool_credit,
                                startup_samples,
                            }) => {
                                info!(source = %src.name, path = %path,
                                    "opened ({}): {}; start-up test over {startup_samples} samples",
                                    opened.details, provenance.label());
                                match provenance {
                                    Provenance::Hardware => {}
                                    Provenance::Simulated => info!(source = %src.name,
                                        "{path} is simulated: its data will never be credited to the kernel"),
                                    Provenance::Network => info!(source = %src.name,
                                        "network entropy: never credited to the kernel; {}",
                                        if pool_credit { "credited to the pool (credit = true)" }
                                        else { "mixed into the pool without credit (set credit = true to let it back requests)" }),
                                }
                                handle = Some(opened);
                                online.restart();
                                None
                            }
                            Ok(_) => None,
                            Err(refusal) => {
                                let msg = format!("{path}: {refusal}");
                                if self.lock().sources[idx].last_error.as_deref() != Some(&msg) {
                                    error!(source = %src.name,
                                        "{msg}: never read; checking again every {:?}", src.retry);
                                }
                                Some(msg)
                            }
                        };
                        self.publish(idx, &driver, Some(err));
                    }
                    Err(e) => {
                        driver.open_failed(now);
                        let msg = e.to_string();
                        if self.lock().sources[idx].last_error.as_deref() != Some(&msg) {
                            if matches!(e, OpenError::Missing { .. }) {
                                warn!(source = %src.name, "{msg}; retrying every {:?}", src.retry);
                            } else {
                                error!(source = %src.name, "{msg}; retrying every {:?}", src.retry);
                            }
                        }
                        self.publish(idx, &driver, Some(Some(msg)));
                    }
                },
                Action::Read => {
                    if !self.wait_for_room(src.read_bytes) {
                        return;
                    }
                    let Some(h) = handle.as_mut() else {
                        // Not reachable: the driver says Read only while the source is open.
                        driver.read_failed(self.now());
                        continue;
                    };
                    match h.source.read(&mut buf) {
                        Ok(0) => {
                            let ev = driver.end_of_data(self.now());
                            handle = None;
                            let msg = if ev == Event::Exhausted {
                                info!(source = %src.name, "end of file: a regular file is read once and never again; this source is done");
                                "exhausted (end of file)"
                            } else {
                                warn!(source = %src.name, "end of data: device unplugged or pipe closed; reopening");
                                "unplugged (end of data)"
                            };
                            self.publish(idx, &driver, Some(Some(msg.into())));
                        }
                        Ok(n) => {
                            online.feed(&buf[..n]);
                            self.absorb(idx, &src, &mut driver, &mut buf[..n], &mut staged);
                            let estimate = online.last();
                            self.set_status(idx, |s| s.entropy_estimate = estimate);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(e) => {
                            driver.read_failed(self.now());
                            handle = None;
                            error!(source = %src.name, "read failed: {e}; reopening in {:?}", src.retry);
                            self.publish(idx, &driver, Some(Some(format!("read failed: {e}"))));
                        }
                    }
                }
            }
        }
    }

    /// Runs one chunk through the driver and moves what it releases into the reservoir.
    fn absorb(
        &self,
        idx: usize,
        src: &Source,
        driver: &mut Driver,
        chunk: &mut [u8],
        staged: &mut Vec<u8>,
    ) {
        let out = driver.data(self.now(), chunk, &mut |b| staged.extend_from_slice(b));
        chunk.zeroize();
        let mut problem = None;
        match out.event {
            Some(Event::Intermittent(t)) => warn!(source = %src.name,
                "{} test failed: data discarded, start-up test again", t.label()),
            Some(Event::Permanent(t)) => {
                error!(source = %src.name,
                    "{} test failed repeatedly: source failed, nothing from it is used; reopening in {:?}",
                    t.label(), src.retry);
                problem = Some(Some(format!("{} test failed permanently", t.label())));
            }
            Some(Event::StartupProgress { samples, required }) => {
                info!(source = %src.name, "start-up test: {samples}/{required} samples")
            }
            _ => {}
        }
        {
            let mut g = self.lock();
            if out.flush {
                let before = g.reservoir.ready();
                g.reservoir.flush();
                warn!(source = %src.name, "discarded {before} ready bytes and the pool's credit");
            }
            if !staged.is_empty() {
                g.reservoir.absorb(staged, out.millibits, out.provenance);
            }
        }
        let released = !staged.is_empty();
        staged.zeroize();
        staged.clear();
        self.publish(idx, driver, problem);
        if released {
            self.data.notify_waiters();
        }
    }

    fn set_status(&self, idx: usize, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut self.lock().sources[idx]);
    }

    /// Blocks until the queue has room for what one read of `read_bytes` can yield (never more
    /// bytes than were read; at most half the queue), so that a read's credit is not conditioned
    /// only to be dropped for want of room, as it would be if the reader woke for every 32 bytes
    /// taken. Returns at least every [`PROBE_INTERVAL`] so that an idle source is still read a
    /// little and a device that fails while nobody consumes is detected and reported. False
    /// when stopping.
    fn wait_for_room(&self, read_bytes: usize) -> bool {
        let deadline = Instant::now() + PROBE_INTERVAL;
        let mut g = self.lock();
        let want = read_bytes.clamp(32, (g.reservoir.capacity() / 2).max(32));
        while g.reservoir.ready() + want > g.reservoir.capacity() {
            let now = Instant::now();
            if self.stopping() || now >= deadline {
                break;
            }
            g = self
                .room
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        !self.stopping()
    }

    /// Keeps `bytes` of the ready queue for the kernel feeder: a client is served only from
    /// what lies beyond them, so no client, however greedy, can starve the feeder (the reserve
    /// refills before clients get anything more).
    pub fn reserve_for_kernel(&self, bytes: usize) {
        let mut g = self.lock();
        g.kernel_reserve = bytes.min(g.reservoir.capacity() / 2);
    }

    /// Takes exactly `out.len()` bytes for `face`/`client`, or nothing; says with the bytes
    /// whether they may be credited to the kernel. Clients (every face but the kernel) are
    /// served only beyond the kernel's reserve.
    pub fn take(&self, out: &mut [u8], face: Face, client: &str) -> Result<Taken, TakeError> {
        let mut g = self.lock();
        if face != Face::Kernel && g.reservoir.ready() < out.len().saturating_add(g.kernel_reserve)
        {
            return Err(if g.sources.iter().any(|s| s.state.may_produce()) {
                TakeError::NotEnough
            } else {
                TakeError::SourceFailed
            });
        }
        Self::take_locked(&mut g, out, face, client).inspect(|_| {
            drop(g);
            self.room.notify_all();
        })
    }

    /// Takes `out.len()` bytes for the kernel. Unless `allow_uncredited`, refuses without taking
    /// anything once the pool's output may not be credited: the decision and the bytes come from
    /// the same locked state, so no byte mixed after a taint is ever credited.
    pub fn take_for_kernel(
        &self,
        out: &mut [u8],
        allow_uncredited: bool,
    ) -> Result<Taken, TakeError> {
        let mut g = self.lock();
        if !allow_uncredited && !g.reservoir.kernel_creditable() {
            return Err(TakeError::Uncreditable);
        }
        Self::take_locked(&mut g, out, Face::Kernel, "kernel").inspect(|_| {
            drop(g);
            self.room.notify_all();
        })
    }

    fn take_locked(
        g: &mut Inner,
        out: &mut [u8],
        face: Face,
        client: &str,
    ) -> Result<Taken, TakeError> {
        match g.reservoir.take(out) {
            Ok(taken) => {
                *g.served.entry((face, client.to_owned())).or_default() += out.len() as u64;
                Ok(taken)
            }
            Err(NotEnoughEntropy { .. }) => {
                if g.sources.iter().any(|s| s.state.may_produce()) {
                    Err(TakeError::NotEnough)
                } else {
                    Err(TakeError::SourceFailed)
                }
            }
        }
    }

    /// Records time a consumer spent waiting for or refused entropy.
    pub fn add_starved(&self, d: Duration) {
        self.lock().starved += d;
    }

    /// Bytes ready now.
    pub fn ready(&self) -> usize {
        self.lock().reservoir.ready()
    }

    /// True while what the pool hands out may be credited to the kernel (see
    /// `Reservoir::kernel_creditable`): a hint for scheduling and status. The credit itself comes
    /// from what [`Engine::take_for_kernel`] returns with the bytes.
    pub fn kernel_creditable(&self) -> bool {
        self.lock().reservoir.kernel_creditable()
    }

    /// True when some source is open and may yet produce output.
    pub fn any_source_may_produce(&self) -> bool {
        self.lock().sources.iter().any(|s| s.state.may_produce())
    }

    /// True when some source has passed its start-up test and is healthy.
    pub fn any_healthy(&self) -> bool {
        self.lock()
            .sources
            .iter()
            .any(|s| s.state == SourceState::Healthy)
    }

    /// A copy of all counters.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        Snapshot {
            sources: g.sources.clone(),
            reservoir: g.reservoir.counters(),
            ready: g.reservoir.ready(),
            capacity: g.reservoir.capacity(),
            pool_credit_bits: g.reservoir.pool_credit_bits(),
            served: g.served.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            starved: g.starved,
        }
    }
}
