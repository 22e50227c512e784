//! SP 800-90B section 4.4 continuous health tests and the start-up test.
//!
//! Two approved tests run on every sample a noise source delivers:
//!
//! * Repetition Count Test (4.4.1): fails when one value repeats `C = 1 + ceil(-log2(alpha) / H)`
//!   times in a row.
//! * Adaptive Proportion Test (4.4.2): in each window of `W` samples (1024 for binary samples, 512
//!   otherwise), fails when the window's first value occurs `C = 1 + CRITBINOM(W, 2^-H, 1 - alpha)`
//!   times.
//!
//! [`HealthMonitor`] adds the state machine around them: a start-up test over at least 1024 samples
//! before anything is released, discarding of every chunk that saw a failure, and the distinction
//! between an intermittent failure (reset, run the start-up test again) and a permanent one
//! (too many intermittent failures in a row; the source must be reopened by its owner).
//!
//! Everything here is sans-IO: bytes in, a verdict out.

use core::fmt;

/// False-positive probability per test per sample used when none is configured (SP 800-90B
/// recommends `2^-20 <= alpha <= 2^-40`).
pub const DEFAULT_ALPHA_LOG2: u32 = 20;

/// Samples the start-up test must see before any output (SP 800-90B 4.3, item 4: at least 1024).
pub const STARTUP_SAMPLES: u64 = 1024;

/// How a source packs samples into the bytes it delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleWidth {
    /// Each bit is one sample (binary noise source); `H` is per bit, at most 1.
    Bit,
    /// Each byte is one sample; `H` is per byte, at most 8.
    Byte,
}

impl SampleWidth {
    /// Bits per sample.
    pub const fn bits(self) -> u32 {
        match self {
            SampleWidth::Bit => 1,
            SampleWidth::Byte => 8,
        }
    }

    /// APT window size `W` from SP 800-90B 4.4.2.
    pub const fn apt_window(self) -> u32 {
        match self {
            SampleWidth::Bit => 1024,
            SampleWidth::Byte => 512,
        }
    }
}

/// Min-entropy per sample, stored in millibits so that it is exact, `Copy`, `Eq` and `no_std`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MinEntropy {
    millibits: u32,
}

/// A min-entropy claim that cannot be right for its sample width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidMinEntropy {
    /// The rejected claim, in millibits per sample.
    pub millibits: u32,
    /// The largest possible value for the sample width, in millibits.
    pub max_millibits: u32,
}

impl fmt::Display for InvalidMinEntropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "min-entropy {} bits/sample is outside (0, {}]",
            self.millibits as f64 / 1000.0,
            self.max_millibits as f64 / 1000.0
        )
    }
}

impl MinEntropy {
    /// `millibits` of min-entropy per sample of `width`; must be in `(0, width.bits()]`.
    pub const fn from_millibits(
        millibits: u32,
        width: SampleWidth,
    ) -> Result<Self, InvalidMinEntropy> {
        let max = width.bits() * 1000;
        if millibits == 0 || millibits > max {
            Err(InvalidMinEntropy {
                millibits,
                max_millibits: max,
            })
        } else {
            Ok(Self { millibits })
        }
    }

    /// Min-entropy per sample in bits.
    pub fn bits(self) -> f64 {
        f64::from(self.millibits) / 1000.0
    }

    /// Min-entropy per sample in millibits.
    pub const fn millibits(self) -> u32 {
        self.millibits
    }
}

/// Repetition Count Test cut-off: `C = 1 + ceil(alpha_log2 / H)`.
pub fn rct_cutoff(h: MinEntropy, alpha_log2: u32) -> u32 {
    // Integer arithmetic in millibits avoids float rounding at exact quotients (e.g. 20 / 0.5).
    let num = u64::from(alpha_log2) * 1000;
    let den = u64::from(h.millibits());
    1 + num.div_ceil(den) as u32
}

/// Adaptive Proportion Test cut-off: `C = 1 + CRITBINOM(W, 2^-H, 1 - 2^-alpha_log2)`, where
/// CRITBINOM(n, p, q) is the smallest `k` with `P(X <= k) >= q` for `X ~ Binomial(n, p)`.
///
/// The binomial tail is summed in log space, from the top down, so that `p^k` for large `k`
/// (e.g. `0.5^1024`) never underflows. `ln C(W, k)` is built up from `C(W, W) = 1` one factor at
/// a time, and terms too small to move the sum are not exponentiated: this runs on the device
/// (its TRNG monitor, on every node start) in software floating point, where three `lgamma` and
/// an `exp` per `k` cost ~8 M rv32imc instructions.
pub fn apt_cutoff(h: MinEntropy, width: SampleWidth, alpha_log2: u32) -> u32 {
    let w = width.apt_window();
    let p = libm::exp2(-h.bits());
    let alpha = libm::exp2(-f64::from(alpha_log2));
    let (ln_p, ln_q) = (libm::log(p), libm::log1p(-p));
    // Below alpha * 2^-80 a term cannot change the comparison with alpha (fewer than 2^11 terms,
    // each under 2^-80 of it, are far below f64 resolution): the sum stays as it is.
    let ln_negligible = -(f64::from(alpha_log2) + 80.0) * core::f64::consts::LN_2;
    // ln C(w, k), from k = w downwards: C(w, k - 1) = C(w, k) * k / (w - k + 1).
    let mut ln_choose = 0.0f64;
    // upper = P(X > k). Walk k down from w until the tail exceeds alpha; the answer is the last
    // k whose upper tail was still <= alpha.
    let mut upper = 0.0f64;
    let mut k = w;
    loop {
        // upper currently holds P(X > k).
        let ln_pmf = ln_choose + f64::from(k) * ln_p + f64::from(w - k) * ln_q;
        let with_k = if ln_pmf > ln_negligible {
            upper + libm::exp(ln_pmf)
        } else {
            upper
        };
        if with_k > alpha || k == 0 {
            // P(X > k) <= alpha but P(X > k - 1) > alpha, so CRITBINOM = k.
            return 1 + k;
        }
        upper = with_k;
        ln_choose += libm::log(f64::from(k) / f64::from(w - k + 1));
        k -= 1;
    }
}

/// Which health test raised an alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestKind {
    /// SP 800-90B 4.4.1 Repetition Count Test.
    RepetitionCount,
    /// SP 800-90B 4.4.2 Adaptive Proportion Test.
    AdaptiveProportion,
}

impl TestKind {
    /// Stable label for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            TestKind::RepetitionCount => "repetition_count",
            TestKind::AdaptiveProportion => "adaptive_proportion",
        }
    }
}

/// Repetition Count Test state.
#[derive(Clone, Debug)]
pub struct Rct {
    cutoff: u32,
    last: Option<u8>,
    run: u32,
}

impl Rct {
    /// A test with cut-off `C`.
    pub fn new(cutoff: u32) -> Self {
        Self {
            cutoff,
            last: None,
            run: 0,
        }
    }

    /// The configured cut-off.
    pub fn cutoff(&self) -> u32 {
        self.cutoff
    }

    /// Feeds one sample; `false` on failure.
    #[inline]
    pub fn feed(&mut self, s: u8) -> bool {
        if self.last == Some(s) {
            self.run += 1;
            self.run < self.cutoff
        } else {
            self.last = Some(s);
            self.run = 1;
            true
        }
    }

    /// Forget history (after a failure).
    pub fn reset(&mut self) {
        self.last = None;
        self.run = 0;
    }
}

/// Adaptive Proportion Test state.
#[derive(Clone, Debug)]
pub struct Apt {
    cutoff: u32,
    window: u32,
    first: u8,
    seen: u32,
    count: u32,
}

impl Apt {
    /// A test with window `W` and cut-off `C`.
    pub fn new(window: u32, cutoff: u32) -> Self {
        Self {
            cutoff,
            window,
            first: 0,
            seen: 0,
            count: 0,
        }
    }

    /// The configured cut-off.
    pub fn cutoff(&self) -> u32 {
        self.cutoff
    }

    /// Feeds one sample; `false` on failure.
    #[inline]
    pub fn feed(&mut self, s: u8) -> bool {
        if self.seen == 0 {
            self.first = s;
            self.count = 1;
            self.seen = 1;
            return true;
        }
        if s == self.first {
            self.count += 1;
            if self.count >= self.cutoff {
                return false;
            }
        }
        self.seen += 1;
        if self.seen == self.window {
            self.seen = 0;
        }
        true
    }

    /// Forget history (after a failure).
    pub fn reset(&mut self) {
        self.seen = 0;
        self.count = 0;
    }
}

/// Health-test parameters of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthParams {
    /// Packing of samples into bytes.
    pub width: SampleWidth,
    /// Assessed min-entropy per sample.
    pub h: MinEntropy,
    /// `-log2(alpha)`; 20 by default.
    pub alpha_log2: u32,
    /// Samples the start-up test must pass before output; at least [`STARTUP_SAMPLES`].
    pub startup_samples: u64,
    /// Consecutive intermittent failures (each followed by a fresh start-up test that failed too)
    /// after which the failure is permanent.
    pub max_consecutive_failures: u32,
}

impl HealthParams {
    /// Defaults for a source with `h` per sample of `width`.
    pub fn new(width: SampleWidth, h: MinEntropy) -> Self {
        Self {
            width,
            h,
            alpha_log2: DEFAULT_ALPHA_LOG2,
            startup_samples: STARTUP_SAMPLES,
            max_consecutive_failures: 3,
        }
    }
}

/// Where the monitor stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// Start-up test running; `samples` of the required number passed so far.
    Startup {
        /// Samples passed in this start-up run.
        samples: u64,
    },
    /// Tests passing; output is released.
    Healthy,
    /// Failed too often; nothing is released until [`HealthMonitor::reset_permanent`].
    PermanentFailure,
}

impl HealthState {
    /// Stable label for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            HealthState::Startup { .. } => "startup",
            HealthState::Healthy => "healthy",
            HealthState::PermanentFailure => "failed",
        }
    }
}

/// What happened to one chunk handed to [`HealthMonitor::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every sample passed while the source was healthy: the chunk may be used.
    Pass,
    /// Samples passed but belong to the start-up test: the chunk is discarded.
    Startup,
    /// A test failed; the chunk is discarded and the start-up test begins again.
    Intermittent(TestKind),
    /// A test failed and the source is now permanently failed; the chunk is discarded.
    Permanent(TestKind),
    /// The source was already permanently failed; the chunk is discarded unseen.
    Failed,
}

impl Verdict {
    /// True when the chunk may reach the extractor or pool.
    pub fn usable(self) -> bool {
        matches!(self, Verdict::Pass)
    }
}

/// Counters kept by the monitor (cumulative, never reset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthCounters {
    /// Samples examined.
    pub samples: u64,
    /// Repetition Count Test failures.
    pub rct_failures: u64,
    /// Adaptive Proportion Test failures.
    pub apt_failures: u64,
    /// Transitions into the permanent failure state.
    pub permanent_failures: u64,
    /// Completed start-up tests.
    pub startups_passed: u64,
}

/// RCT + APT with start-up and failure handling for one source.
#[derive(Clone, Debug)]
pub struct HealthMonitor {
    params: HealthParams,
    rct: Rct,
    apt: Apt,
    state: HealthState,
    consecutive_failures: u32,
    counters: HealthCounters,
}

impl HealthMonitor {
    /// A monitor in the start-up state.
    pub fn new(params: HealthParams) -> Self {
        let rct = Rct::new(rct_cutoff(params.h, params.alpha_log2));
        let apt = Apt::new(
            params.width.apt_window(),
            apt_cutoff(params.h, params.width, params.alpha_log2),
        );
        Self {
            params,
            rct,
            apt,
            state: HealthState::Startup { samples: 0 },
            consecutive_failures: 0,
            counters: HealthCounters::default(),
        }
    }

    /// Parameters in force.
    pub fn params(&self) -> &HealthParams {
        &self.params
    }

    /// RCT cut-off in force.
    pub fn rct_cutoff(&self) -> u32 {
        self.rct.cutoff()
    }

    /// APT cut-off in force.
    pub fn apt_cutoff(&self) -> u32 {
        self.apt.cutoff()
    }

    /// Current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Cumulative counters.
    pub fn counters(&self) -> HealthCounters {
        self.counters
    }

    /// Leaves the permanent failure state (the owner reopened the device) and starts over with a
    /// fresh start-up test.
    pub fn reset_permanent(&mut self) {
        self.consecutive_failures = 0;
        self.restart();
    }

    fn restart(&mut self) {
        self.rct.reset();
        self.apt.reset();
        self.state = HealthState::Startup { samples: 0 };
    }

    /// Runs both tests over every sample in `chunk` and says whether the chunk may be used.
    ///
    /// A chunk is usable only if the source was healthy before it and every sample in it passed.
    /// A chunk during which the start-up test completes is still discarded: start-up samples are
    /// never output.
    pub fn check(&mut self, chunk: &[u8]) -> Verdict {
        self.check_with(chunk, true)
    }

    /// [`Self::check`]; `fast = false` feeds byte samples through the scalar loop only (the
    /// reference the tests hold the fast path to).
    #[inline]
    fn check_with(&mut self, chunk: &[u8], fast: bool) -> Verdict {
        if self.state == HealthState::PermanentFailure {
            return Verdict::Failed;
        }
        let failed = match self.params.width {
            SampleWidth::Byte if fast => self.feed_bytes(chunk),
            SampleWidth::Byte => self.feed_bytes_scalar(chunk),
            SampleWidth::Bit => self.feed_bits(chunk),
        };
        let samples = chunk.len() as u64 * u64::from(8 / self.params.width.bits());
        self.counters.samples += samples;
        if let Some(kind) = failed {
            match kind {
                TestKind::RepetitionCount => self.counters.rct_failures += 1,
                TestKind::AdaptiveProportion => self.counters.apt_failures += 1,
            }
            self.consecutive_failures += 1;
            if self.consecutive_failures >= self.params.max_consecutive_failures {
                self.state = HealthState::PermanentFailure;
                self.counters.permanent_failures += 1;
                return Verdict::Permanent(kind);
            }
            self.restart();
            return Verdict::Intermittent(kind);
        }
        match self.state {
            HealthState::Startup { samples: done } => {
                let done = done + samples;
                if done >= self.params.startup_samples {
                    self.state = HealthState::Healthy;
                    self.counters.startups_passed += 1;
                } else {
                    self.state = HealthState::Startup { samples: done };
                }
                Verdict::Startup
            }
            HealthState::Healthy => {
                // A clean chunk while healthy means the source recovered from any earlier
                // intermittent failure.
                self.consecutive_failures = 0;
                Verdict::Pass
            }
            HealthState::PermanentFailure => Verdict::Failed,
        }
    }

    /// Feeds byte samples a segment at a time: [`Self::pass_clean_segment`] vouches for most
    /// segments at vector speed, and the scalar loop decides every segment it cannot vouch for,
    /// from the same starting state, so verdicts and state are those of the scalar loop alone.
    #[inline]
    fn feed_bytes(&mut self, chunk: &[u8]) -> Option<TestKind> {
        let mut rest = chunk;
        while !rest.is_empty() {
            // A segment ends at the end of the current APT window at the latest: within one
            // window the reference value is fixed and its count only grows.
            // A position at or past the window's end would make empty segments forever.
            debug_assert!(self.apt.seen < self.apt.window, "APT window position");
            let room = (self.apt.window - self.apt.seen) as usize;
            let (seg, tail) = rest.split_at(room.min(rest.len()));
            if !self.pass_clean_segment(seg) {
                if let Some(kind) = self.feed_bytes_scalar(seg) {
                    return Some(kind);
                }
            }
            rest = tail;
        }
        None
    }

    /// If neither test can fail anywhere in `seg` (a part of one APT window), moves both tests
    /// to their state after it and returns true; otherwise returns false and changes nothing.
    fn pass_clean_segment(&mut self, seg: &[u8]) -> bool {
        let n = seg.len();
        if n < FAST_MIN_SEGMENT {
            return false;
        }
        // RCT: it fails exactly when a run (counting the one carried in) reaches
        // `max(C, 2)` samples (the first sample of a run is never checked, so C < 2 acts as 2).
        let fail_run = self.rct.cutoff.max(2) as usize;
        if has_run(seg, fail_run.min(MAX_RUN_PROBE)) {
            return false;
        }
        // No run of `min(C, 8)` lies inside `seg`; only the run carried in can still be long.
        let carried = match self.rct.last {
            Some(v) if v == seg[0] => self.rct.run as usize,
            _ => 0,
        };
        if carried > 0 && carried + leading_run(seg) >= fail_run {
            return false;
        }
        // APT: a window that starts here takes `seg[0]` as its reference, counted once already.
        let (first, count, matches) = if self.apt.seen == 0 {
            (seg[0], 1, count_eq(&seg[1..], seg[0]))
        } else {
            (
                self.apt.first,
                self.apt.count,
                count_eq(seg, self.apt.first),
            )
        };
        // The count only grows within a window and is checked at each match, so it fails in
        // `seg` exactly when some match brings it to the cut-off.
        if matches > 0 && count + matches >= self.apt.cutoff {
            return false;
        }
        // Clean: the state the scalar loop would reach.
        let trailing = seg.iter().rev().take_while(|&&b| b == seg[n - 1]).count();
        self.rct.run = if trailing == n { carried + n } else { trailing } as u32;
        self.rct.last = Some(seg[n - 1]);
        self.apt.first = first;
        self.apt.count = count + matches;
        let seen = self.apt.seen + n as u32;
        self.apt.seen = if seen == self.apt.window { 0 } else { seen };
        true
    }

    /// The exact per-sample loop: the reference, and the fallback of [`Self::feed_bytes`].
    #[inline]
    fn feed_bytes_scalar(&mut self, chunk: &[u8]) -> Option<TestKind> {
        for &b in chunk {
            if !self.rct.feed(b) {
                return Some(TestKind::RepetitionCount);
            }
            if !self.apt.feed(b) {
                return Some(TestKind::AdaptiveProportion);
            }
        }
        None
    }

    fn feed_bits(&mut self, chunk: &[u8]) -> Option<TestKind> {
        for &b in chunk {
            // Most significant bit first: the order in which a serial noise source emits them.
            for i in (0..8).rev() {
                let bit = (b >> i) & 1;
                if !self.rct.feed(bit) {
                    return Some(TestKind::RepetitionCount);
                }
                if !self.apt.feed(bit) {
                    return Some(TestKind::AdaptiveProportion);
                }
            }
        }
        None
    }
}

/// Positions probed per block by [`has_run`]: 64 byte comparisons per probed offset, which LLVM
/// turns into a handful of 16-byte compares without a scalar tail.
const RUN_BLOCK: usize = 64;

/// Longest run [`has_run`] looks for. A longer RCT cut-off is probed with a run of 8, which still
/// proves nothing fails; such cut-offs belong to H below ~3.3 bits per byte, where runs of 8
/// are still rare.
const MAX_RUN_PROBE: usize = 8;

/// Shorter segments go to the scalar loop: [`has_run`] reads whole blocks.
const FAST_MIN_SEGMENT: usize = RUN_BLOCK + MAX_RUN_PROBE - 1;

/// Whether `s` holds `k` equal bytes in a row, for `2 <= k <= MAX_RUN_PROBE` and
/// `s.len() >= RUN_BLOCK + k - 1`.
fn has_run(s: &[u8], k: usize) -> bool {
    match k {
        2 => has_run_of::<2>(s),
        3 => has_run_of::<3>(s),
        4 => has_run_of::<4>(s),
        5 => has_run_of::<5>(s),
        6 => has_run_of::<6>(s),
        7 => has_run_of::<7>(s),
        8 => has_run_of::<8>(s),
        _ => unreachable!("run probe of {k}"),
    }
}

fn has_run_of<const K: usize>(s: &[u8]) -> bool {
    // Blocks of runs starting at i..i + RUN_BLOCK; the last block is moved back to end at the
    // last possible start, overlapping its predecessor (a run found twice is still one run).
    let last = s.len() + 1 - K - RUN_BLOCK;
    let mut hit = false;
    let mut i = 0;
    while i < last {
        hit |= block_has_run::<K>(s, i);
        i += RUN_BLOCK;
    }
    hit | block_has_run::<K>(s, last)
}

/// Whether a run of `K` equal bytes starts at one of `s[i..i + RUN_BLOCK]`.
#[inline(always)]
fn block_has_run<const K: usize>(s: &[u8], i: usize) -> bool {
    // Fixed-length views at offsets 0..K, compared lane by lane and OR-ed without an early
    // exit: the shape the loop vectorizer turns into unaligned loads and byte compares.
    let views: [&[u8; RUN_BLOCK]; K] = core::array::from_fn(|j| {
        s[i + j..i + j + RUN_BLOCK]
            .try_into()
            .unwrap_or_else(|_| unreachable!())
    });
    let mut hit = false;
    for l in 0..RUN_BLOCK {
        let mut all = true;
        for v in &views[1..] {
            all &= views[0][l] == v[l];
        }
        hit |= all;
    }
    hit
}

/// Length of the run of equal bytes `s` starts with (`s` not empty).
fn leading_run(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| b == s[0]).count()
}

/// How many bytes of `s` equal `r`.
fn count_eq(s: &[u8], r: u8) -> u32 {
    // Byte-wide counters, summed every 128 bytes before they could overflow: 16 lanes per
    // compare-and-subtract.
    fn count_u8(c: &[u8], r: u8) -> u32 {
        u32::from(c.iter().fold(0u8, |a, &b| a.wrapping_add(u8::from(b == r))))
    }
    let mut big = s.chunks_exact(128);
    let mut total: u32 = big.by_ref().map(|c| count_u8(c, r)).sum();
    let mut small = big.remainder().chunks_exact(16);
    total += small.by_ref().map(|c| count_u8(c, r)).sum::<u32>();
    total + count_u8(small.remainder(), r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(millibits: u32, w: SampleWidth) -> MinEntropy {
        MinEntropy::from_millibits(millibits, w).unwrap()
    }

    /// The cut-off table in `shared/reference.md` (alpha = 2^-20).
    #[test]
    fn cutoffs_match_reference_table() {
        let table = [
            (SampleWidth::Bit, 1000, 21, 589),
            (SampleWidth::Bit, 500, 41, 793),
            (SampleWidth::Byte, 8000, 4, 13),
            (SampleWidth::Byte, 4000, 6, 62),
            (SampleWidth::Byte, 7000, 4, 18),
        ];
        for (w, mb, rct, apt) in table {
            let e = h(mb, w);
            assert_eq!(rct_cutoff(e, 20), rct, "RCT for H={mb}mb {w:?}");
            assert_eq!(apt_cutoff(e, w, 20), apt, "APT for H={mb}mb {w:?}");
        }
    }

    /// Cross-check CRITBINOM by exact rational arithmetic for a small case: Binomial(512, 1/256).
    #[test]
    fn apt_cutoff_agrees_with_direct_summation() {
        // P(X > k) computed with plain f64 products is accurate here (p not tiny, n moderate).
        let n = 512u32;
        let p = 1.0f64 / 256.0;
        let mut pmf = [0f64; 513];
        pmf[0] = (1.0 - p).powi(n as i32);
        for k in 1..=n as usize {
            pmf[k] = pmf[k - 1] * ((n as usize - k + 1) as f64 / k as f64) * (p / (1.0 - p));
        }
        let alpha = 2f64.powi(-20);
        let mut cdf = 0.0;
        let mut crit = 0;
        for (k, v) in pmf.iter().enumerate() {
            cdf += v;
            if cdf >= 1.0 - alpha {
                crit = k as u32;
                break;
            }
        }
        assert_eq!(
            apt_cutoff(h(8000, SampleWidth::Byte), SampleWidth::Byte, 20),
            1 + crit
        );
    }

    /// The incremental `ln C(W, k)` and the skipped negligible terms give the cut-offs of the
    /// direct formulation (three `lgamma` per term, every term summed) for every claim.
    #[test]
    fn apt_cutoff_matches_the_lgamma_formulation() {
        fn direct(h: MinEntropy, width: SampleWidth, alpha_log2: u32) -> u32 {
            let w = width.apt_window();
            let p = libm::exp2(-h.bits());
            let alpha = libm::exp2(-f64::from(alpha_log2));
            let (ln_p, ln_q) = (libm::log(p), libm::log1p(-p));
            let ln_pmf = |k: u32| -> f64 {
                libm::lgamma(f64::from(w) + 1.0)
                    - libm::lgamma(f64::from(k) + 1.0)
                    - libm::lgamma(f64::from(w - k) + 1.0)
                    + f64::from(k) * ln_p
                    + f64::from(w - k) * ln_q
            };
            let (mut upper, mut k) = (0.0f64, w);
            loop {
                let with_k = upper + libm::exp(ln_pmf(k));
                if with_k > alpha || k == 0 {
                    return 1 + k;
                }
                upper = with_k;
                k -= 1;
            }
        }
        for (width, max, step) in [(SampleWidth::Byte, 8000, 7), (SampleWidth::Bit, 1000, 1)] {
            for mb in (1..=max).step_by(step).chain([max]) {
                for a in [20, 30, 40] {
                    let e = h(mb, width);
                    assert_eq!(
                        apt_cutoff(e, width, a),
                        direct(e, width, a),
                        "H={mb}mb {width:?} alpha=2^-{a}"
                    );
                }
            }
        }
    }

    #[test]
    fn min_entropy_bounds() {
        assert!(MinEntropy::from_millibits(0, SampleWidth::Byte).is_err());
        assert!(MinEntropy::from_millibits(1001, SampleWidth::Bit).is_err());
        assert!(MinEntropy::from_millibits(8001, SampleWidth::Byte).is_err());
        assert!(MinEntropy::from_millibits(8000, SampleWidth::Byte).is_ok());
    }

    #[test]
    fn rct_fails_exactly_at_cutoff() {
        let mut r = Rct::new(4);
        assert!(r.feed(7));
        assert!(r.feed(7));
        assert!(r.feed(7));
        assert!(!r.feed(7), "4th identical sample must fail with C = 4");
        let mut r = Rct::new(4);
        for s in [1, 1, 1, 2, 2, 2, 1, 1, 1] {
            assert!(r.feed(s));
        }
    }

    #[test]
    fn apt_fails_exactly_at_cutoff_and_windows_restart() {
        let mut a = Apt::new(512, 13);
        // The first sample plus 11 repeats spread over the window: 12 occurrences pass.
        assert!(a.feed(9));
        for i in 1..512u32 {
            let s = if i <= 11 { 9 } else { (i % 200) as u8 + 10 };
            assert!(a.feed(s), "sample {i}");
        }
        // A new window starts with 9 again: occurrences 1..=12 pass, the 13th fails.
        for i in 1..=12 {
            assert!(a.feed(9), "occurrence {i}");
        }
        assert!(!a.feed(9), "occurrence 13 must fail with C = 13");
    }

    #[test]
    fn startup_releases_nothing_then_passes() {
        let p = HealthParams::new(SampleWidth::Byte, h(8000, SampleWidth::Byte));
        let mut m = HealthMonitor::new(p);
        let good: [u8; 256] = core::array::from_fn(|i| i as u8);
        for _ in 0..4 {
            assert_eq!(m.check(&good), Verdict::Startup);
        }
        assert_eq!(m.state(), HealthState::Healthy);
        assert_eq!(m.check(&good), Verdict::Pass);
    }

    #[test]
    fn repeated_failures_become_permanent() {
        let p = HealthParams::new(SampleWidth::Byte, h(8000, SampleWidth::Byte));
        let mut m = HealthMonitor::new(p);
        let stuck = [0u8; 64];
        assert_eq!(
            m.check(&stuck),
            Verdict::Intermittent(TestKind::RepetitionCount)
        );
        assert_eq!(
            m.check(&stuck),
            Verdict::Intermittent(TestKind::RepetitionCount)
        );
        assert_eq!(
            m.check(&stuck),
            Verdict::Permanent(TestKind::RepetitionCount)
        );
        assert_eq!(m.check(&stuck), Verdict::Failed);
        assert_eq!(m.state(), HealthState::PermanentFailure);
        m.reset_permanent();
        assert_eq!(m.state(), HealthState::Startup { samples: 0 });
    }

    #[test]
    fn bit_samples_use_bit_cutoffs() {
        let p = HealthParams::new(SampleWidth::Bit, h(1000, SampleWidth::Bit));
        let mut m = HealthMonitor::new(p);
        assert_eq!(m.rct_cutoff(), 21);
        assert_eq!(m.apt_cutoff(), 589);
        // 0x00 0x00 0x0f: 20 zero bits then... 16 zeros + 4 zeros = 20 in a row: passes.
        assert_eq!(m.check(&[0x55, 0x00, 0x0f]), Verdict::Startup);
        let mut m = HealthMonitor::new(p);
        // 0xaa then 3 zero bytes: 1 + 24 zero bits in a row: fails at the 21st.
        assert_eq!(
            m.check(&[0xaa, 0, 0, 0]),
            Verdict::Intermittent(TestKind::RepetitionCount)
        );
    }

    /// The vectorized fast path of byte samples against the scalar loop it stands in for.
    mod fast_path {
        use super::super::*;
        use alloc::format;
        use alloc::vec::Vec;
        use proptest::prelude::*;
        use rand_xoshiro::rand_core::{RngCore, SeedableRng};
        use rand_xoshiro::Xoshiro256StarStar;

        const W: usize = 512;

        /// What the generated data is made to stress.
        #[derive(Clone, Copy, Debug)]
        enum Shape {
            /// Uniform bytes: the fast path should vouch for nearly everything.
            Uniform,
            /// A few distinct values, unevenly likely: runs and APT matches everywhere.
            FewValues,
            /// Uniform bytes with runs of C - 2 ..= C + 1 planted across chunk and window
            /// boundaries and at random places.
            PlantedRuns,
            /// Windows whose first value comes back C - 1 ..= C + 1 times (APT cut-off C), the
            /// last time at or just before the window's end.
            AptAtWindowEnd,
        }

        struct Case {
            params: HealthParams,
            data: Vec<u8>,
            chunks: Vec<usize>,
        }

        fn rng(seed: u64) -> Xoshiro256StarStar {
            Xoshiro256StarStar::seed_from_u64(seed)
        }

        fn below(r: &mut Xoshiro256StarStar, n: usize) -> usize {
            (r.next_u64() % n as u64) as usize
        }

        fn params(r: &mut Xoshiro256StarStar) -> HealthParams {
            // The daemon's and firmware's claims, some low ones, and odd alphas (the field is
            // public) down to 0, where both cut-offs drop to 1 or 2.
            let mb = [8000, 7000, 6500, 6000, 4000, 2500, 1000, 300][below(r, 8)];
            let alpha_log2 = [20, 20, 20, 30, 40, 8, 2, 1, 0][below(r, 9)];
            let h = MinEntropy::from_millibits(mb, SampleWidth::Byte).unwrap();
            HealthParams {
                alpha_log2,
                max_consecutive_failures: [1, 3, 1000][below(r, 3)],
                ..HealthParams::new(SampleWidth::Byte, h)
            }
        }

        /// Chunk sizes covering `len`: tiny, around the fast path's minimum, whole and split
        /// windows, and large.
        fn chunk_sizes(r: &mut Xoshiro256StarStar, len: usize) -> Vec<usize> {
            let mut v = Vec::new();
            let mut left = len;
            while left > 0 {
                let n = match below(r, 6) {
                    0 => below(r, 8),
                    1 => 60 + below(r, 30),
                    2 => [W, 2 * W, 8 * W, W - 1, W + 1][below(r, 5)],
                    3 => below(r, 5000),
                    _ => below(r, 1200),
                }
                .min(left);
                v.push(n);
                left -= n;
            }
            v
        }

        fn boundaries(chunks: &[usize]) -> Vec<usize> {
            chunks
                .iter()
                .scan(0, |at, &n| {
                    *at += n;
                    Some(*at)
                })
                .collect()
        }

        /// Writes `len` copies of `v` from `at` (clipped to the data), different from the bytes
        /// on either side so that the run is exactly `len` long.
        fn plant_run(data: &mut [u8], at: usize, len: usize, v: u8) {
            let end = (at + len).min(data.len());
            data[at..end].fill(v);
            if at > 0 && data[at - 1] == v {
                data[at - 1] = v ^ 0x80;
            }
            if end < data.len() && data[end] == v {
                data[end] = v ^ 0x80;
            }
        }

        fn case(seed: u64, shape: Shape) -> Case {
            let mut r = rng(seed);
            let params = params(&mut r);
            let len = 1 + below(&mut r, 24 * W);
            let chunks = chunk_sizes(&mut r, len);
            let mut data = alloc::vec![0u8; len];
            r.fill_bytes(&mut data);
            let m = HealthMonitor::new(params);
            let (rct_c, apt_c) = (m.rct_cutoff() as usize, m.apt_cutoff() as usize);
            match shape {
                Shape::Uniform => {}
                Shape::FewValues => {
                    let k = 1 + below(&mut r, 5);
                    let values: Vec<u8> = (0..k).map(|_| r.next_u64() as u8).collect();
                    // Skewed towards the first value by a random amount.
                    let skew = 1 + below(&mut r, 4);
                    for b in &mut data {
                        let i = below(&mut r, k + skew);
                        *b = values[i.saturating_sub(skew)];
                    }
                }
                Shape::PlantedRuns => {
                    let mut at: Vec<usize> = boundaries(&chunks);
                    at.extend((1..=len / W).map(|w| w * W));
                    at.extend((0..8).map(|_| below(&mut r, len)));
                    for b in at {
                        let run = (rct_c + below(&mut r, 4)).saturating_sub(2).max(1);
                        // Runs ending before, straddling or starting at the boundary.
                        let start = (b + 1).saturating_sub(below(&mut r, run + 2));
                        if start < len {
                            let v = r.next_u64() as u8;
                            plant_run(&mut data, start, run, v);
                        }
                    }
                }
                Shape::AptAtWindowEnd => {
                    for w in 0..len.div_ceil(W) {
                        let win = &mut data[w * W..((w + 1) * W).min(len)];
                        let v = win[0];
                        for b in win.iter_mut().skip(1) {
                            while *b == v {
                                *b = r.next_u64() as u8;
                            }
                        }
                        // Occurrences of v after the first, the last one within 3 of the end.
                        let extra = (apt_c + below(&mut r, 3)).saturating_sub(2);
                        let last = win.len().saturating_sub(1 + below(&mut r, 3));
                        // Every other position backwards from `last`, then anywhere: spaced so
                        // the RCT does not fire first (when the cut-off allows).
                        let mut p = last;
                        for _ in 0..extra.min(win.len() / 2) {
                            if p == 0 {
                                break;
                            }
                            win[p] = v;
                            p = p.saturating_sub(
                                2 + below(&mut r, 8) * usize::from(below(&mut r, 4) == 0),
                            );
                        }
                    }
                }
            }
            Case {
                params,
                data,
                chunks,
            }
        }

        #[derive(Default, Debug)]
        struct Seen {
            rct: u64,
            apt: u64,
        }

        /// Runs the case through a monitor on the fast path and one on the scalar loop alone;
        /// after every chunk the verdicts and the whole monitors (tests, state, counters) must
        /// be identical.
        fn compare(c: &Case, seen: &mut Seen) -> Result<(), TestCaseError> {
            let mut fast = HealthMonitor::new(c.params);
            let mut slow = fast.clone();
            let mut at = 0;
            for (i, &n) in c.chunks.iter().enumerate() {
                let chunk = &c.data[at..at + n];
                let (vf, vs) = (fast.check(chunk), slow.check_with(chunk, false));
                prop_assert_eq!(vf, vs, "verdict of chunk {} ({} bytes at {})", i, n, at);
                prop_assert_eq!(
                    fast.counters(),
                    slow.counters(),
                    "counters after chunk {}",
                    i
                );
                prop_assert_eq!(fast.state(), slow.state(), "state after chunk {}", i);
                prop_assert_eq!(
                    format!("{fast:?}"),
                    format!("{slow:?}"),
                    "monitor after chunk {}",
                    i
                );
                match vs {
                    Verdict::Intermittent(TestKind::RepetitionCount)
                    | Verdict::Permanent(TestKind::RepetitionCount) => seen.rct += 1,
                    Verdict::Intermittent(TestKind::AdaptiveProportion)
                    | Verdict::Permanent(TestKind::AdaptiveProportion) => seen.apt += 1,
                    Verdict::Failed => {
                        // Keep going: the owner reopened the source.
                        fast.reset_permanent();
                        slow.reset_permanent();
                    }
                    _ => {}
                }
                at += n;
            }
            Ok(())
        }

        fn run(seed: u64, shape: Shape) -> Result<Seen, TestCaseError> {
            let mut seen = Seen::default();
            compare(&case(seed, shape), &mut seen)?;
            Ok(seen)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn uniform_data_matches_the_scalar_loop(seed in any::<u64>()) {
                run(seed, Shape::Uniform)?;
            }

            #[test]
            fn few_values_match_the_scalar_loop(seed in any::<u64>()) {
                run(seed, Shape::FewValues)?;
            }

            #[test]
            fn runs_at_boundaries_match_the_scalar_loop(seed in any::<u64>()) {
                run(seed, Shape::PlantedRuns)?;
            }

            #[test]
            fn apt_cutoff_at_window_ends_matches_the_scalar_loop(seed in any::<u64>()) {
                run(seed, Shape::AptAtWindowEnd)?;
            }
        }

        /// The generated shapes do reach both failures (else the comparisons above could pass
        /// without ever checking the fast path's refusals).
        #[test]
        fn shapes_provoke_both_failures() {
            for (shape, want_rct, want_apt) in [
                (Shape::FewValues, true, true),
                (Shape::PlantedRuns, true, false),
                (Shape::AptAtWindowEnd, false, true),
            ] {
                let mut total = Seen::default();
                for seed in 0..200 {
                    let s = run(seed, shape).unwrap();
                    total.rct += s.rct;
                    total.apt += s.apt;
                }
                assert!(!want_rct || total.rct > 50, "{shape:?}: {total:?}");
                assert!(!want_apt || total.apt > 50, "{shape:?}: {total:?}");
            }
        }

        /// Exactly at the RCT cut-off across a chunk boundary: a run of C - 1 carried in plus
        /// one more sample fails on that sample, C - 1 in total passes.
        #[test]
        fn carried_run_fails_at_the_cutoff() {
            let p = HealthParams::new(
                SampleWidth::Byte,
                MinEntropy::from_millibits(7000, SampleWidth::Byte).unwrap(),
            );
            for carried in 1..4usize {
                for lead in 1..4usize {
                    let mut m = HealthMonitor::new(p);
                    let mut a: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
                    let n = a.len();
                    a[n - carried..].fill(0xee);
                    a[n - carried - 1] = 1;
                    assert_eq!(m.check(&a), Verdict::Startup);
                    let mut b: Vec<u8> = (0..600u32).map(|i| (i * 11 % 241) as u8).collect();
                    b[..lead].fill(0xee);
                    b[lead] = 2;
                    let want = if carried + lead >= 4 {
                        Verdict::Intermittent(TestKind::RepetitionCount)
                    } else {
                        Verdict::Startup
                    };
                    assert_eq!(m.check(&b), want, "run of {carried} + {lead}");
                }
            }
        }

        /// On data that meets its claim the fast path vouches for nearly every window, so the
        /// scalar loop is the exception it is meant to be.
        #[test]
        fn fast_path_vouches_for_data_meeting_the_claim() {
            // (claim in millibits, distinct equiprobable values: 2^H of them)
            for (mb, values) in [(8000, 256), (7000, 128), (6500, 91), (4000, 16)] {
                let h = MinEntropy::from_millibits(mb, SampleWidth::Byte).unwrap();
                let mut m = HealthMonitor::new(HealthParams::new(SampleWidth::Byte, h));
                let mut r = rng(u64::from(mb));
                let (mut vouched, mut segments) = (0, 0);
                for _ in 0..2000 {
                    let seg: Vec<u8> = (0..W).map(|_| below(&mut r, values) as u8).collect();
                    segments += 1;
                    if m.pass_clean_segment(&seg) {
                        vouched += 1;
                    } else if m.feed_bytes_scalar(&seg).is_some() {
                        // A false alarm (probability alpha per sample) is possible here too.
                        m.restart();
                    }
                }
                assert!(
                    vouched * 100 >= segments * 99,
                    "H={mb}mb: {vouched} of {segments}"
                );
            }
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// ln C(n, k) by summing logs: independent of the implementation's lgamma.
        fn ln_choose(n: u32, k: u32) -> f64 {
            (1..=k)
                .map(|i| (f64::from(n - k + i)).ln() - f64::from(i).ln())
                .sum()
        }

        /// P(X >= c) for X ~ Binomial(n, p), summed directly.
        fn tail(n: u32, p: f64, c: u32) -> f64 {
            (c..=n)
                .map(|k| {
                    (ln_choose(n, k) + f64::from(k) * p.ln() + f64::from(n - k) * (1.0 - p).ln())
                        .exp()
                })
                .sum()
        }

        proptest! {
            #[test]
            fn rct_cutoff_is_the_smallest_run_with_probability_at_most_alpha(mb in 100u32..=8000, a in 20u32..=40) {
                let h = MinEntropy::from_millibits(mb, SampleWidth::Byte).unwrap();
                let c = rct_cutoff(h, a);
                // P(C identical in a row) <= 2^-(H (C-1)); C - 1 = ceil(a / H).
                let hb = f64::from(mb) / 1000.0;
                prop_assert!(hb * f64::from(c - 1) >= f64::from(a) - 1e-9);
                prop_assert!(hb * f64::from(c - 2) < f64::from(a));
            }

            #[test]
            fn apt_cutoff_is_critbinom_plus_one(mb in 500u32..=8000, a in 20u32..=30) {
                let h = MinEntropy::from_millibits(mb, SampleWidth::Byte).unwrap();
                let c = apt_cutoff(h, SampleWidth::Byte, a);
                let p = (-f64::from(mb) / 1000.0).exp2();
                let alpha = (-f64::from(a)).exp2();
                // CRITBINOM = c - 1: P(X <= c - 1) >= 1 - alpha, i.e. P(X >= c) <= alpha,
                // and c - 1 is the smallest such: P(X >= c - 1) > alpha.
                prop_assert!(tail(512, p, c) <= alpha * (1.0 + 1e-9));
                prop_assert!(tail(512, p, c - 1) > alpha * (1.0 - 1e-9));
            }

            #[test]
            fn binary_apt_cutoff_is_critbinom_plus_one(mb in 200u32..=1000) {
                let h = MinEntropy::from_millibits(mb, SampleWidth::Bit).unwrap();
                let c = apt_cutoff(h, SampleWidth::Bit, 20);
                let p = (-f64::from(mb) / 1000.0).exp2();
                let alpha = (-20f64).exp2();
                prop_assert!(tail(1024, p, c) <= alpha * (1.0 + 1e-9));
                prop_assert!(tail(1024, p, c - 1) > alpha * (1.0 - 1e-9));
            }
        }
    }
}
