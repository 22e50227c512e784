//! The worker's entropy engine: one reader thread per source feeding one shared reservoir.
//!
//! Sources are read on demand: a reader sleeps while the reservoir's queue is full, so an idle
//! host costs next to nothing. Everything a reader learns (health state, counters, unplugs) is
//! published in [`SourceStatus`] for the metrics and the socket's status answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qeaas_core::assess::online::{OnlineEstimate, DEFAULT_WINDOW_BYTES};
use qeaas_core::extractor::Toeplitz;
use qeaas_core::fips::FipsCounters;
use qeaas_core::health::{HealthCounters, Verdict};
use qeaas_core::pipeline::{Conditioner, PipelineCounters, Processing, Provenance};
use qeaas_core::pool::{NotEnoughEntropy, PoolHash};
use qeaas_core::reservoir::{Reservoir, ReservoirCounters};
use tracing::{error, info, warn};
use zeroize::Zeroize;

use crate::config::Source;
use crate::source::{self, OpenError};

/// How often a source is read while the ready queue is full (health monitoring of idle sources):
/// a permanent failure (three failed probes) is reported within ~15 s, inside the alert window.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// What a source is doing, for humans and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// Not opened yet, or waiting to reopen.
    Absent,
    /// Open, start-up test running.
    Startup,
    /// Open and passing.
    Healthy,
    /// Health tests failed permanently; waiting to reopen.
    Failed,
}

impl SourceState {
    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            SourceState::Absent => "absent",
            SourceState::Startup => "startup",
            SourceState::Healthy => "healthy",
            SourceState::Failed => "failed",
        }
    }
}

/// Published status of one source.
#[derive(Clone, Debug)]
pub struct SourceStatus {
    /// Configured name.
    pub name: String,
    /// Configured kind.
    pub kind: &'static str,
    /// Provenance of the device as opened (configured value until then).
    pub provenance: Provenance,
    /// Current state.
    pub state: SourceState,
    /// Bytes read from the device.
    pub bytes_read: u64,
    /// Times the device disappeared (EOF, read error) or failed to open after having worked.
    pub unplugs: u64,
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
    /// No source is healthy: every source is absent or failed.
    #[error("no healthy source")]
    SourceFailed,
}

struct Inner {
    reservoir: Reservoir,
    sources: Vec<SourceStatus>,
    served: std::collections::HashMap<(Face, String), u64>,
    starved: Duration,
    /// Credit from non-hardware sources was ever mixed into this pool.
    tainted: bool,
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
                kind: match s.kind {
                    crate::config::SourceKind::Quantis => "quantis",
                    crate::config::SourceKind::Serial => "serial",
                    crate::config::SourceKind::Hwrng => "hwrng",
                    crate::config::SourceKind::File => "file",
                    crate::config::SourceKind::Upstream => "upstream",
                },
                provenance: s.spec.provenance,
                state: SourceState::Absent,
                bytes_read: 0,
                unplugs: 0,
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
                sources: statuses,
                served: Default::default(),
                starved: Duration::ZERO,
                tainted: false,
            }),
            room: Condvar::new(),
            data: tokio::sync::Notify::new(),
            started: Instant::now(),
            stop: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking reader must not take the daemon down with a poisoned lock.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts one reader thread per source.
    pub fn spawn_readers(self: &Arc<Self>, sources: Vec<Source>) {
        let extractor = sources
            .iter()
            .any(|s| s.spec.processing == Processing::Raw)
            .then(|| Arc::new(Toeplitz::default_shape()));
        for (idx, src) in sources.into_iter().enumerate() {
            let engine = Arc::clone(self);
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

    fn set_status(&self, idx: usize, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut self.lock().sources[idx]);
    }

    fn reader(&self, idx: usize, src: Source, extractor: Option<Arc<Toeplitz>>) {
        let mut cond = Conditioner::new(src.spec, extractor);
        let cutoffs = (cond.health().rct_cutoff(), cond.health().apt_cutoff());
        self.set_status(idx, |s| s.cutoffs = cutoffs);
        let mut buf = vec![0u8; src.read_bytes];
        let mut staged: Vec<u8> = Vec::with_capacity(src.read_bytes + 256);
        let mut was_open = false;
        let mut online = OnlineEstimate::new(src.spec.health.width, DEFAULT_WINDOW_BYTES);
        while !self.stop.load(Ordering::SeqCst) {
            let mut opened = match source::open(&src) {
                Ok(o) => o,
                Err(e) => {
                    let msg = e.to_string();
                    let missing = matches!(e, OpenError::Missing { .. });
                    self.set_status(idx, |s| {
                        if s.last_error.as_deref() != Some(&msg) {
                            if missing {
                                warn!(source = %src.name, "{msg}; retrying every {:?}", src.retry);
                            } else {
                                error!(source = %src.name, "{msg}; retrying every {:?}", src.retry);
                            }
                        }
                        s.state = SourceState::Absent;
                        s.last_error = Some(msg);
                    });
                    std::thread::sleep(src.retry);
                    continue;
                }
            };
            if opened.provenance != src.spec.provenance {
                info!(source = %src.name, "{} is {}: its data will not be credited to the kernel",
                    src.path.display(), opened.provenance.label());
            }
            info!(source = %src.name, path = %src.path.display(), "opened ({}); start-up test over {} samples",
                opened.details, src.spec.health.startup_samples);
            if opened.provenance == Provenance::Network {
                info!(source = %src.name, "network entropy: never credited to the kernel; {}",
                    if src.credit_pool { "credited to the pool (credit = true)" } else { "mixed into the pool without credit (set credit = true to let it back requests)" });
            }
            if was_open {
                cond.restart();
                online.restart();
            }
            was_open = true;
            self.set_status(idx, |s| {
                s.provenance = opened.provenance;
                s.state = SourceState::Startup;
                s.last_error = None;
            });
            let mut last_progress = Instant::now();
            loop {
                if !self.wait_for_room(src.read_bytes) {
                    return;
                }
                let n = match opened.source.read(&mut buf) {
                    Ok(0) => {
                        warn!(source = %src.name, "end of data: device unplugged or pipe closed; reopening");
                        self.set_status(idx, |s| {
                            s.unplugs += 1;
                            s.state = SourceState::Absent;
                            s.last_error = Some("unplugged (end of data)".into());
                        });
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                    Err(e) => {
                        error!(source = %src.name, "read failed: {e}; reopening");
                        self.set_status(idx, |s| {
                            s.unplugs += 1;
                            s.state = SourceState::Absent;
                            s.last_error = Some(format!("read failed: {e}"));
                        });
                        break;
                    }
                };
                let mut millibits = 0u64;
                let verdict = cond.process(&buf[..n], &mut |bytes, mb| {
                    staged.extend_from_slice(bytes);
                    millibits += mb;
                });
                online.feed(&buf[..n]);
                buf[..n].zeroize();
                let state = match verdict {
                    Verdict::Pass => SourceState::Healthy,
                    Verdict::Startup | Verdict::Intermittent(_) => SourceState::Startup,
                    Verdict::Permanent(_) | Verdict::Failed => SourceState::Failed,
                };
                match verdict {
                    Verdict::Intermittent(t) => warn!(source = %src.name,
                        "{} test failed: data discarded, start-up test again", t.label()),
                    Verdict::Permanent(t) => error!(source = %src.name,
                        "{} test failed repeatedly: source failed, nothing from it is used; reopening in {:?}",
                        t.label(), src.retry),
                    Verdict::Startup if last_progress.elapsed() > Duration::from_secs(2) => {
                        last_progress = Instant::now();
                        if let qeaas_core::health::HealthState::Startup { samples } =
                            cond.health_state()
                        {
                            info!(source = %src.name, "start-up test: {samples}/{} samples",
                                src.spec.health.startup_samples);
                        }
                    }
                    _ => {}
                }
                {
                    let mut g = self.lock();
                    if matches!(verdict, Verdict::Intermittent(_) | Verdict::Permanent(_)) {
                        let before = g.reservoir.ready();
                        g.reservoir.flush();
                        warn!(source = %src.name, "discarded {before} ready bytes and the pool's credit");
                    }
                    if !src.credit_pool {
                        // Upstream bytes without `credit = true`: mixed in, never counted.
                        millibits = 0;
                    }
                    if !staged.is_empty() {
                        if opened.provenance != Provenance::Hardware && millibits > 0 {
                            g.tainted = true;
                        }
                        g.reservoir.absorb(&staged, millibits);
                    }
                    let s = &mut g.sources[idx];
                    s.bytes_read += n as u64;
                    s.state = state;
                    s.health = cond.health_counters();
                    s.fips = cond.fips_counters();
                    s.pipeline = cond.counters();
                    s.entropy_estimate = online.last();
                    if let Verdict::Permanent(t) = verdict {
                        s.last_error = Some(format!("{} test failed permanently", t.label()));
                    }
                }
                staged.zeroize();
                staged.clear();
                if verdict == Verdict::Pass {
                    self.data.notify_waiters();
                }
                if matches!(verdict, Verdict::Permanent(_)) {
                    std::thread::sleep(src.retry);
                    break;
                }
            }
            drop(opened);
            std::thread::sleep(Duration::from_millis(200).min(src.retry));
        }
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
            if self.stop.load(Ordering::SeqCst) || now >= deadline {
                break;
            }
            g = self
                .room
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        !self.stop.load(Ordering::SeqCst)
    }

    /// Takes exactly `out.len()` bytes for `face`/`client`, or nothing.
    pub fn take(&self, out: &mut [u8], face: Face, client: &str) -> Result<(), TakeError> {
        let mut g = self.lock();
        match g.reservoir.take(out) {
            Ok(()) => {
                *g.served.entry((face, client.to_owned())).or_default() += out.len() as u64;
                drop(g);
                self.room.notify_all();
                Ok(())
            }
            Err(NotEnoughEntropy { .. }) => {
                if g.sources
                    .iter()
                    .any(|s| s.state != SourceState::Absent && s.state != SourceState::Failed)
                {
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

    /// True when the kernel may be credited for what this pool produces: every source is
    /// hardware and no credit from any other kind of source was ever mixed in.
    pub fn kernel_creditable(&self) -> bool {
        let g = self.lock();
        !g.tainted
            && g.sources
                .iter()
                .all(|s| s.provenance == Provenance::Hardware)
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
