//! One noise source, sans-IO: the shell opens, reads and sleeps; the driver decides.
//!
//! The shell (qeaasd's reader thread, or a test stepping simulated time) asks [`Driver::poll`]
//! what to do, does it, and reports back: [`Driver::opened`] with the [`Node`] it found (an
//! `fstat` of the opened descriptor), [`Driver::data`] with each chunk it read,
//! [`Driver::end_of_data`], [`Driver::read_failed`] or [`Driver::open_failed`]. Every rule about
//! the source lives here:
//!
//! * provenance, once per open, from the configured [`Claim`] and the node ([`decide`]); a node
//!   that may not be used is refused and never read;
//! * credit: only bytes that passed the health tests carry any, at most the claimed min-entropy
//!   of each (the extractor's Leftover Hash Lemma bound for raw sources that go through it), and
//!   none at all for a source whose policy is not to credit the pool (an upstream without
//!   `credit = true`);
//! * flushing: a health-test failure discards the ready bytes and the pool's credit;
//! * the state ([`SourceState`]) and when to reopen: quickly after an unplug, after `retry`
//!   after a failure or a refusal, never after the end of a regular file, which is final.
//!
//! Time is a [`Duration`] since any fixed origin the shell chooses; nothing here reads a clock.

use alloc::sync::Arc;
use core::time::Duration;

use crate::extractor::Toeplitz;
use crate::fips::FipsCounters;
use crate::health::{HealthCounters, HealthState, TestKind, Verdict};
use crate::pipeline::{Conditioner, PipelineCounters, SourceSpec};
use crate::provenance::{decide, Claim, Node, Provenance, Refusal};

/// How long after an unplug (end of data on a device or a pipe) the source is reopened: the
/// writer of a pipe may come straight back, a USB device takes longer and is retried every
/// `retry` after that.
pub const REOPEN_AFTER_UNPLUG: Duration = Duration::from_millis(200);

/// How often start-up progress is reported on a slow source.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Everything the driver needs to know about a configured source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverSpec {
    /// Health tests and processing.
    pub conditioning: SourceSpec,
    /// What the configuration says the source is.
    pub claim: Claim,
    /// Whether the source's bytes are credited to the pool at all (false: mixed in without
    /// credit, so they can never back a request on their own).
    pub pool_credit: bool,
    /// Delay before reopening a source that failed, was refused or could not be opened.
    pub retry: Duration,
}

/// What a source is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// Not open: not opened yet, missing, unplugged, or waiting to reopen.
    Gone,
    /// Open, first start-up test running: nothing released yet.
    Starting,
    /// Open and passing: output released.
    Healthy,
    /// A health test failed: everything pending was discarded, a new start-up test runs.
    Intermittent,
    /// Failed permanently, or refused: closed, reopened after `retry`.
    Failed,
    /// A regular file read to its end: never read again.
    Exhausted,
}

impl SourceState {
    /// Stable label for logs and metrics (`absent` and `startup` as the metrics always said).
    pub const fn label(self) -> &'static str {
        match self {
            SourceState::Gone => "absent",
            SourceState::Starting => "startup",
            SourceState::Healthy => "healthy",
            SourceState::Intermittent => "intermittent",
            SourceState::Failed => "failed",
            SourceState::Exhausted => "exhausted",
        }
    }

    /// Every state, for metrics that show one series per state.
    pub const ALL: [SourceState; 6] = [
        SourceState::Gone,
        SourceState::Starting,
        SourceState::Healthy,
        SourceState::Intermittent,
        SourceState::Failed,
        SourceState::Exhausted,
    ];

    /// True while the source is open and may yet produce output.
    pub const fn may_produce(self) -> bool {
        matches!(
            self,
            SourceState::Starting | SourceState::Healthy | SourceState::Intermittent
        )
    }
}

/// What the shell does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open the source, then call [`Driver::opened`] or [`Driver::open_failed`].
    Open,
    /// Read one chunk from the open source, then call [`Driver::data`], [`Driver::end_of_data`]
    /// or [`Driver::read_failed`].
    Read,
    /// Close the source if it is open, and do nothing until then.
    WaitUntil(Duration),
    /// Close the source: it will never be read again.
    Finished,
}

/// Something worth telling the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Opened with this provenance; the start-up test over `startup_samples` begins.
    Opened {
        /// Decided provenance.
        provenance: Provenance,
        /// Whether its bytes are credited to the pool.
        pool_credit: bool,
        /// Samples the start-up test needs.
        startup_samples: u64,
    },
    /// The node may not be used as configured; retried after `retry`.
    Refused(Refusal),
    /// Start-up test progress on a slow source.
    StartupProgress {
        /// Samples passed so far.
        samples: u64,
        /// Samples needed.
        required: u64,
    },
    /// A health test failed: discarded, start-up test again.
    Intermittent(TestKind),
    /// A health test failed repeatedly: the source is closed and reopened after `retry`.
    Permanent(TestKind),
    /// End of data on a device or pipe: unplugged, reopened shortly.
    Unplugged,
    /// End of a regular file: final.
    Exhausted,
    /// A read failed: treated as an unplug.
    ReadFailed,
}

/// What one chunk produced. The released bytes themselves went to the sink given to
/// [`Driver::data`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    /// Millibits of min-entropy the released bytes carry (after the credit policy).
    pub millibits: u64,
    /// Discard every ready byte and the pool's credit: a test failed, and the fault may have
    /// begun before the tests could see it.
    pub flush: bool,
    /// Provenance of the released bytes.
    pub provenance: Provenance,
    /// What to log, if anything.
    pub event: Option<Event>,
}

/// Counters of one source (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverCounters {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Successful opens.
    pub opens: u64,
    /// Ends of data and read errors on a device or pipe.
    pub unplugs: u64,
    /// Opens refused for the node's nature.
    pub refusals: u64,
    /// Millibits credited to the pool (after the credit policy).
    pub millibits_credited: u64,
}

/// The rules of one source.
#[derive(Debug)]
pub struct Driver {
    spec: DriverSpec,
    conditioner: Conditioner,
    state: SourceState,
    /// Node of the open source.
    open: Option<Node>,
    /// Provenance decided at the last successful open (kept after it closes, for status).
    provenance: Option<Provenance>,
    /// When a closed source may be opened again.
    reopen_at: Duration,
    ever_opened: bool,
    last_progress: Duration,
    last_refusal: Option<Refusal>,
    counters: DriverCounters,
}

impl Driver {
    /// A driver for `spec`; raw sources need the (shared) extractor.
    pub fn new(spec: DriverSpec, extractor: Option<Arc<Toeplitz>>) -> Self {
        Self {
            spec,
            conditioner: Conditioner::new(spec.conditioning, extractor),
            state: SourceState::Gone,
            open: None,
            provenance: None,
            reopen_at: Duration::ZERO,
            ever_opened: false,
            last_progress: Duration::ZERO,
            last_refusal: None,
            counters: DriverCounters::default(),
        }
    }

    /// What to do at `now`.
    pub fn poll(&self, now: Duration) -> Action {
        match (self.state, self.open) {
            (SourceState::Exhausted, _) => Action::Finished,
            (_, Some(_)) => Action::Read,
            (_, None) if now >= self.reopen_at => Action::Open,
            (_, None) => Action::WaitUntil(self.reopen_at),
        }
    }

    /// The shell opened the source and found `node`: decides its provenance, or refuses it (the
    /// shell must then close it unread).
    pub fn opened(&mut self, now: Duration, node: Node) -> Result<Event, Refusal> {
        if self.state == SourceState::Exhausted {
            // Never reached by a shell that follows `poll`; a file read to its end stays read.
            return Err(Refusal::NotASource(node));
        }
        match decide(self.spec.claim, node) {
            Ok(provenance) => {
                if self.ever_opened {
                    // Forget partial data and run the start-up test again, as after a replug.
                    self.conditioner.restart();
                }
                self.ever_opened = true;
                self.open = Some(node);
                self.provenance = Some(provenance);
                self.state = SourceState::Starting;
                self.last_progress = now;
                self.last_refusal = None;
                self.counters.opens += 1;
                Ok(Event::Opened {
                    provenance,
                    pool_credit: self.spec.pool_credit,
                    startup_samples: self.spec.conditioning.health.startup_samples,
                })
            }
            Err(r) => {
                self.close(SourceState::Failed, now + self.spec.retry);
                self.last_refusal = Some(r);
                self.counters.refusals += 1;
                Err(r)
            }
        }
    }

    /// The source could not be opened (missing, permissions, setup failed): retried after
    /// `retry`.
    pub fn open_failed(&mut self, now: Duration) {
        self.close(SourceState::Gone, now + self.spec.retry);
    }

    /// Runs one chunk through the health tests and conditioning; released bytes go to `sink`.
    /// A chunk that arrives while the source is not open (a shell bug) is discarded unseen.
    pub fn data(&mut self, now: Duration, chunk: &[u8], sink: &mut impl FnMut(&[u8])) -> Output {
        let (Some(_), Some(provenance)) = (self.open, self.provenance) else {
            return Output {
                millibits: 0,
                flush: false,
                provenance: Provenance::Simulated,
                event: None,
            };
        };
        self.counters.bytes_read += chunk.len() as u64;
        let mut millibits = 0u64;
        let verdict = self.conditioner.process(chunk, &mut |bytes, mb| {
            sink(bytes);
            millibits += mb;
        });
        if !self.spec.pool_credit {
            millibits = 0;
        }
        self.counters.millibits_credited += millibits;
        let mut out = Output {
            millibits,
            flush: false,
            provenance,
            event: None,
        };
        match verdict {
            Verdict::Pass => self.state = SourceState::Healthy,
            Verdict::Startup => {
                if self.conditioner.health_state() == HealthState::Healthy {
                    // The start-up test completed with this chunk (still discarded).
                    self.state = SourceState::Healthy;
                } else if now.saturating_sub(self.last_progress) >= PROGRESS_EVERY {
                    self.last_progress = now;
                    if let HealthState::Startup { samples } = self.conditioner.health_state() {
                        out.event = Some(Event::StartupProgress {
                            samples,
                            required: self.spec.conditioning.health.startup_samples,
                        });
                    }
                }
            }
            Verdict::Intermittent(t) => {
                out.flush = true;
                self.state = SourceState::Intermittent;
                self.last_progress = now;
                out.event = Some(Event::Intermittent(t));
            }
            Verdict::Permanent(t) => {
                out.flush = true;
                self.close(SourceState::Failed, now + self.spec.retry);
                out.event = Some(Event::Permanent(t));
            }
            Verdict::Failed => self.close(SourceState::Failed, now + self.spec.retry),
        }
        out
    }

    /// The source returned end of data: final for a regular file, an unplug otherwise.
    pub fn end_of_data(&mut self, now: Duration) -> Event {
        match self.open {
            Some(node) if node.is_regular_file() => {
                self.close(SourceState::Exhausted, Duration::MAX);
                Event::Exhausted
            }
            _ => {
                self.counters.unplugs += 1;
                self.close(
                    SourceState::Gone,
                    now + REOPEN_AFTER_UNPLUG.min(self.spec.retry),
                );
                Event::Unplugged
            }
        }
    }

    /// A read failed (device error, USB gone): an unplug, reopened after `retry`.
    pub fn read_failed(&mut self, now: Duration) -> Event {
        self.counters.unplugs += 1;
        self.close(SourceState::Gone, now + self.spec.retry);
        Event::ReadFailed
    }

    fn close(&mut self, state: SourceState, reopen_at: Duration) {
        self.open = None;
        self.state = state;
        self.reopen_at = reopen_at;
    }

    /// Current state.
    pub fn state(&self) -> SourceState {
        self.state
    }

    /// Provenance decided at the last successful open (kept after the source closes); `None`
    /// before the first.
    pub fn provenance(&self) -> Option<Provenance> {
        self.provenance
    }

    /// True while the source is open (the shell holds its descriptor).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Why the last open was refused, until an open succeeds.
    pub fn last_refusal(&self) -> Option<Refusal> {
        self.last_refusal
    }

    /// The configuration this driver runs.
    pub fn spec(&self) -> &DriverSpec {
        &self.spec
    }

    /// The driver's counters.
    pub fn counters(&self) -> DriverCounters {
        self.counters
    }

    /// Health-test counters.
    pub fn health_counters(&self) -> HealthCounters {
        self.conditioner.health_counters()
    }

    /// FIPS 140-2 counters.
    pub fn fips_counters(&self) -> FipsCounters {
        self.conditioner.fips_counters()
    }

    /// Pipeline counters (before the credit policy).
    pub fn pipeline_counters(&self) -> PipelineCounters {
        self.conditioner.counters()
    }

    /// RCT and APT cut-offs in force.
    pub fn cutoffs(&self) -> (u32, u32) {
        let h = self.conditioner.health();
        (h.rct_cutoff(), h.apt_cutoff())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{HealthParams, MinEntropy, SampleWidth};
    use crate::pipeline::Processing;
    use alloc::vec::Vec;

    const S: Duration = Duration::from_secs(1);
    const DEVICE: Node = Node::CharDevice {
        major: 240,
        minor: 0,
    };

    fn spec(processing: Processing, claim: Claim, pool_credit: bool) -> DriverSpec {
        let h = MinEntropy::from_millibits(6500, SampleWidth::Byte).unwrap();
        DriverSpec {
            conditioning: SourceSpec {
                health: HealthParams::new(SampleWidth::Byte, h),
                processing,
            },
            claim,
            pool_credit,
            retry: 2 * S,
        }
    }

    fn driver(claim: Claim) -> Driver {
        Driver::new(spec(Processing::PostProcessed, claim, true), None)
    }

    /// Feeds `data` in `chunk`-byte reads at `now`: (released bytes, millibits, flushed, events).
    fn feed(
        d: &mut Driver,
        now: Duration,
        data: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, u64, bool, Vec<Event>) {
        let (mut out, mut mb, mut flush, mut ev) = (Vec::new(), 0, false, Vec::new());
        for c in data.chunks(chunk) {
            assert_eq!(d.poll(now), Action::Read);
            let o = d.data(now, c, &mut |b| out.extend_from_slice(b));
            mb += o.millibits;
            flush |= o.flush;
            ev.extend(o.event);
        }
        (out, mb, flush, ev)
    }

    #[test]
    fn opens_at_once_then_starts_up_then_releases_with_credit() {
        let mut d = driver(Claim::Device);
        assert_eq!(d.poll(Duration::ZERO), Action::Open);
        assert_eq!(d.state(), SourceState::Gone);
        let ev = d.opened(Duration::ZERO, DEVICE).unwrap();
        assert!(matches!(
            ev,
            Event::Opened {
                provenance: Provenance::Hardware,
                startup_samples: 1024,
                ..
            }
        ));
        assert_eq!(d.state(), SourceState::Starting);
        let data = crate::test_noise(1, 1024);
        let (out, mb, _, _) = feed(&mut d, S, &data, 256);
        assert!(out.is_empty() && mb == 0, "nothing from the start-up test");
        assert_eq!(d.state(), SourceState::Healthy);
        let data = crate::test_noise(2, 4096);
        let (out, mb, flush, _) = feed(&mut d, S, &data, 512);
        // The newest 1024 bytes are held back; the rest carry 6.5 bits each.
        assert_eq!(out.len(), 4096 - 1024);
        assert_eq!(mb, 3072 * 6500);
        assert!(!flush);
        assert_eq!(d.counters().millibits_credited, mb);
    }

    #[test]
    fn a_fault_flushes_and_restarts_and_a_permanent_one_closes_until_retry() {
        let mut d = driver(Claim::Device);
        d.opened(Duration::ZERO, DEVICE).unwrap();
        feed(&mut d, S, &crate::test_noise(3, 3000), 500);
        assert_eq!(d.state(), SourceState::Healthy);
        // Stuck output: intermittent, flushed, start-up again; twice more makes it permanent.
        let (out, _, flush, ev) = feed(&mut d, S, &[0x55; 64], 64);
        assert!(out.is_empty() && flush);
        assert_eq!(
            ev,
            [Event::Intermittent(TestKind::RepetitionCount)],
            "{ev:?}"
        );
        assert_eq!(d.state(), SourceState::Intermittent);
        feed(&mut d, S, &[0x55; 64], 64);
        let o = d.data(S, &[0x55; 64], &mut |_| panic!("released a stuck chunk"));
        assert!(o.flush);
        assert_eq!(o.event, Some(Event::Permanent(TestKind::RepetitionCount)));
        assert_eq!(d.state(), SourceState::Failed);
        // Closed; reopened after retry (2 s), with a fresh start-up test.
        assert_eq!(d.poll(S), Action::WaitUntil(3 * S));
        assert_eq!(d.poll(3 * S), Action::Open);
        d.opened(3 * S, DEVICE).unwrap();
        assert_eq!(d.state(), SourceState::Starting);
        let (out, ..) = feed(&mut d, 3 * S, &crate::test_noise(4, 2048), 256);
        assert!(out.is_empty(), "start-up test and hold-back after a reopen");
        assert_eq!(d.health_counters().permanent_failures, 1);
    }

    #[test]
    fn unplug_reopens_quickly_and_a_missing_device_every_retry() {
        let mut d = driver(Claim::Device);
        d.opened(Duration::ZERO, DEVICE).unwrap();
        feed(&mut d, S, &crate::test_noise(5, 4096), 1024);
        assert_eq!(d.end_of_data(S), Event::Unplugged);
        assert_eq!(d.state(), SourceState::Gone);
        assert_eq!(d.counters().unplugs, 1);
        assert_eq!(d.poll(S), Action::WaitUntil(S + REOPEN_AFTER_UNPLUG));
        let t = S + REOPEN_AFTER_UNPLUG;
        assert_eq!(d.poll(t), Action::Open);
        d.open_failed(t);
        assert_eq!(d.poll(t + S), Action::WaitUntil(t + 2 * S));
        d.open_failed(t + 2 * S);
        assert_eq!(d.poll(t + 4 * S), Action::Open);
        // Replugged: start-up test again, nothing from before the unplug is released.
        d.opened(t + 4 * S, DEVICE).unwrap();
        let (out, ..) = feed(&mut d, t + 4 * S, &crate::test_noise(6, 1024), 1024);
        assert!(out.is_empty());
        // A read error is an unplug too, retried after `retry`.
        assert_eq!(d.read_failed(t + 5 * S), Event::ReadFailed);
        assert_eq!(d.poll(t + 5 * S), Action::WaitUntil(t + 7 * S));
        assert_eq!(d.counters().unplugs, 2);
    }

    #[test]
    fn the_end_of_a_regular_file_is_final() {
        let mut d = driver(Claim::File);
        let ev = d.opened(Duration::ZERO, Node::RegularFile).unwrap();
        assert!(matches!(
            ev,
            Event::Opened {
                provenance: Provenance::Simulated,
                ..
            }
        ));
        feed(&mut d, S, &crate::test_noise(7, 8192), 4096);
        assert_eq!(d.end_of_data(S), Event::Exhausted);
        for t in [S, 10 * S, 1_000_000 * S] {
            assert_eq!(d.poll(t), Action::Finished);
        }
        assert_eq!(d.state(), SourceState::Exhausted);
        assert_eq!(d.counters().unplugs, 0);
        // Even a shell that ignores `poll` cannot reopen it.
        assert!(d.opened(10 * S, Node::RegularFile).is_err());
        let o = d.data(10 * S, &crate::test_noise(7, 4096), &mut |_| {
            panic!("a file read to its end released bytes")
        });
        assert_eq!(o.millibits, 0);
        // A pipe's end is an unplug, not final.
        let mut d = driver(Claim::File);
        d.opened(Duration::ZERO, Node::Fifo).unwrap();
        assert_eq!(d.end_of_data(S), Event::Unplugged);
        assert_eq!(d.poll(2 * S), Action::Open);
    }

    #[test]
    fn refused_nodes_are_never_read_and_retried_after_retry() {
        for (claim, node) in [
            (Claim::Hardware, Node::RegularFile),
            (Claim::Hardware, Node::Fifo),
            (
                Claim::Hardware,
                Node::CharDevice {
                    major: 136,
                    minor: 2,
                },
            ),
            (Claim::Device, Node::CharDevice { major: 1, minor: 9 }),
            (Claim::File, Node::CharDevice { major: 1, minor: 8 }),
            (Claim::Network, Node::Other),
        ] {
            let mut d = driver(claim);
            let r = d.opened(Duration::ZERO, node).unwrap_err();
            assert_eq!(d.last_refusal(), Some(r));
            assert_eq!(d.state(), SourceState::Failed);
            assert_eq!(d.poll(S), Action::WaitUntil(2 * S), "{claim:?} {node:?}");
            let o = d.data(S, &crate::test_noise(8, 4096), &mut |_| {
                panic!("a refused source released bytes")
            });
            assert_eq!((o.millibits, d.counters().bytes_read), (0, 0));
            assert_eq!(d.counters().refusals, 1);
        }
    }

    #[test]
    fn a_source_without_pool_credit_releases_bytes_with_none() {
        let mut d = Driver::new(spec(Processing::PostProcessed, Claim::Network, false), None);
        d.opened(Duration::ZERO, Node::Fifo).unwrap();
        assert_eq!(d.provenance(), Some(Provenance::Network));
        let (out, mb, ..) = feed(&mut d, S, &crate::test_noise(9, 8192), 1024);
        assert!(!out.is_empty(), "mixed in");
        assert_eq!(mb, 0, "but never credited");
        assert_eq!(d.counters().millibits_credited, 0);
    }

    #[test]
    fn startup_progress_is_reported_every_two_seconds_on_a_slow_source() {
        let mut d = driver(Claim::Device);
        d.opened(Duration::ZERO, DEVICE).unwrap();
        let data = crate::test_noise(10, 1024);
        let mut events = Vec::new();
        // 64 bytes a second: 16 s of start-up test.
        for (i, c) in data.chunks(64).enumerate() {
            let o = d.data(S * (i as u32 + 1), c, &mut |_| {});
            events.extend(o.event);
        }
        assert_eq!(d.state(), SourceState::Healthy);
        let progress: Vec<u64> = events
            .iter()
            .map(|e| match e {
                Event::StartupProgress { samples, required } => {
                    assert_eq!(*required, 1024);
                    *samples
                }
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(progress, [128, 256, 384, 512, 640, 768, 896]);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::health::{HealthParams, MinEntropy, SampleWidth};
    use crate::pipeline::Processing;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// One thing the world does to a source.
    #[derive(Clone, Debug)]
    enum Step {
        /// Good noise of this length.
        Noise(u64, usize),
        /// A stuck byte repeated.
        Stuck(u8, usize),
        /// A short repeating pattern (seen by the APT).
        Pattern(usize),
        /// End of data.
        Eof,
        /// A read error.
        ReadError,
        /// Time passes.
        Wait(u64),
        /// The open fails.
        OpenFails,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (any::<u64>(), 1usize..6000).prop_map(|(s, n)| Step::Noise(s, n)),
            1 => (any::<u8>(), 1usize..200).prop_map(|(b, n)| Step::Stuck(b, n)),
            1 => (1usize..3000).prop_map(Step::Pattern),
            1 => Just(Step::Eof),
            1 => Just(Step::ReadError),
            1 => (0u64..5000).prop_map(Step::Wait),
            1 => Just(Step::OpenFails),
        ]
    }

    fn node() -> impl Strategy<Value = Node> {
        prop_oneof![
            Just(Node::RegularFile),
            Just(Node::Fifo),
            Just(Node::Other),
            (0u32..300, 0u32..300).prop_map(|(major, minor)| Node::CharDevice { major, minor }),
        ]
    }

    /// The rule, restated: a character device that is neither a kernel memory device (major 1)
    /// nor a terminal.
    fn can_be_hardware(node: Node) -> bool {
        match node {
            Node::CharDevice { major, minor } => {
                major != 1 && !matches!(major, 2 | 3 | 5 | 136..=143) && !(major == 4 && minor < 64)
            }
            _ => false,
        }
    }

    fn claim() -> impl Strategy<Value = Claim> {
        prop_oneof![
            Just(Claim::Device),
            Just(Claim::File),
            Just(Claim::Hardware),
            Just(Claim::Simulated),
            Just(Claim::Network),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the source does and whatever it is, the credit never exceeds H times the
        /// bytes that passed the health tests, nothing is credited without pool credit, nothing
        /// is read from a refused node, a regular file is never read past its end, and a
        /// non-device is never hardware.
        #[test]
        fn credit_never_exceeds_h_times_the_bytes_that_passed(
            steps in proptest::collection::vec(step(), 1..60),
            claim in claim(),
            node in node(),
            raw in any::<bool>(),
            pool_credit in any::<bool>(),
            millibits in 500u32..=8000,
        ) {
            let h = MinEntropy::from_millibits(millibits, SampleWidth::Byte).unwrap();
            let processing = if raw { Processing::Raw } else { Processing::PostProcessed };
            let spec = DriverSpec {
                conditioning: SourceSpec { health: HealthParams::new(SampleWidth::Byte, h), processing },
                claim,
                pool_credit,
                retry: Duration::from_millis(700),
            };
            let extractor = raw.then(|| Arc::new(Toeplitz::default_shape()));
            let mut d = Driver::new(spec, extractor);
            let mut now = Duration::ZERO;
            let (mut credit, mut released, mut finished) = (0u64, 0u64, false);
            for s in steps {
                let action = d.poll(now);
                prop_assert!(!finished || action == Action::Finished, "a finished source came back");
                match action {
                    Action::Finished => {
                        finished = true;
                        prop_assert_eq!(d.state(), SourceState::Exhausted);
                        continue;
                    }
                    Action::WaitUntil(t) => {
                        prop_assert!(t > now);
                        now = t;
                        continue;
                    }
                    Action::Open => {
                        if matches!(s, Step::OpenFails) {
                            d.open_failed(now);
                            continue;
                        }
                        match d.opened(now, node) {
                            Ok(_) => {
                                let p = d.provenance().unwrap();
                                prop_assert_eq!(Ok(p), decide(claim, node));
                                prop_assert!(p != Provenance::Hardware || can_be_hardware(node));
                            }
                            Err(_) => prop_assert!(decide(claim, node).is_err()),
                        }
                        continue;
                    }
                    Action::Read => {}
                }
                let chunk: Vec<u8> = match s {
                    Step::Noise(seed, n) => crate::test_noise(seed, n),
                    Step::Stuck(b, n) => vec![b; n],
                    Step::Pattern(n) => (0..n).map(|i| (i % 7) as u8).collect(),
                    Step::Eof => { d.end_of_data(now); continue; }
                    Step::ReadError => { d.read_failed(now); continue; }
                    Step::Wait(ms) => { now += Duration::from_millis(ms); continue; }
                    Step::OpenFails => continue,
                };
                let o = d.data(now, &chunk, &mut |b| released += b.len() as u64);
                credit += o.millibits;
                now += Duration::from_millis(10);
            }
            prop_assert!(!finished || node.is_regular_file());
            let p = d.pipeline_counters();
            let passed = p.bytes_in - p.bytes_discarded;
            prop_assert!(credit <= u64::from(millibits) * passed,
                "credit {} > H {} x {} bytes passed", credit, millibits, passed);
            prop_assert_eq!(credit, d.counters().millibits_credited);
            if !pool_credit { prop_assert_eq!(credit, 0); }
            if decide(claim, node).is_err() { prop_assert_eq!(d.counters().bytes_read, 0); }
            prop_assert!(released <= passed);
        }
    }
}
