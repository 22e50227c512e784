//! From raw source bytes to credited, conditioned input for the pool.
//!
//! `source bytes -> health tests (gate) -> FIPS counters (statistic) -> hold-back -> extractor
//! (raw sources into a pool that is not vetted, see [`Processing::uses_extractor`]) -> (bytes,
//! credit)`. A chunk is released only when [`HealthMonitor::check`] says
//! it may be, and only after the next `2 W` samples (two APT windows) have passed too: the APT
//! needs up to a window to see a fault that began just before, so the samples at a fault's onset
//! are still held when it is detected, and are dropped with everything else held.

use alloc::sync::Arc;
use alloc::vec::Vec;
use zeroize::Zeroize;

use crate::extractor::{credited_bits, Toeplitz};
use crate::fips::{FipsCounters, FipsMonitor};
use crate::health::{HealthCounters, HealthMonitor, HealthParams, HealthState, Verdict};
use crate::pool::PoolHash;

/// Whether a source's samples are raw noise or already post-processed by the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processing {
    /// Raw samples: health-tested, then compressed by the Toeplitz extractor when the pool's
    /// conditioner is not vetted ([`Processing::uses_extractor`]).
    Raw,
    /// Post-processed by the device (e.g. a Quantis in its default mode): health-tested, then
    /// credited at the declared min-entropy per sample.
    PostProcessed,
}

impl Processing {
    /// Whether samples go through the Toeplitz extractor before a pool conditioned by `pool`.
    ///
    /// Raw samples do only when the pool is not a vetted conditioning component. A vetted one
    /// (SHA-256 Hash_df) takes the raw samples at their assessed min-entropy, as SP 800-90B
    /// 3.1.5.1 intends: an extractor in front would be a second, non-vetted conditioning
    /// component, whose output entropy a certification would have to justify by 3.1.5.2
    /// (tested, capped at 0.999 n_out), and it would cost time and credit (1024 raw bits at
    /// H = 7 bits per byte are credited 768 bits through the extractor, 896 without). With a
    /// non-vetted pool (BLAKE2s) the extractor is what backs the full-entropy claim, by the
    /// Leftover Hash Lemma.
    pub fn uses_extractor(self, pool: PoolHash) -> bool {
        self == Processing::Raw && !pool.vetted()
    }
}

/// Everything the pipeline needs to know about a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceSpec {
    /// Health-test parameters, including the assessed min-entropy per sample.
    pub health: HealthParams,
    /// Raw or post-processed samples.
    pub processing: Processing,
}

impl SourceSpec {
    /// Min-entropy per byte delivered, in millibits.
    pub fn millibits_per_byte(&self) -> u64 {
        let per_sample = u64::from(self.health.h.millibits());
        per_sample * u64::from(8 / self.health.width.bits())
    }
}

/// Counters of one pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    /// Bytes handed to [`Conditioner::process`].
    pub bytes_in: u64,
    /// Bytes discarded (start-up, failures, permanent failure).
    pub bytes_discarded: u64,
    /// Conditioned bytes released.
    pub bytes_out: u64,
    /// Millibits of min-entropy credited to released bytes.
    pub millibits_out: u64,
}

/// Health tests, FIPS statistics and (for raw sources) the extractor of one source.
#[derive(Debug)]
pub struct Conditioner {
    spec: SourceSpec,
    health: HealthMonitor,
    fips: FipsMonitor,
    extractor: Option<Arc<Toeplitz>>,
    carry: Vec<u8>,
    held: Vec<u8>,
    holdback: usize,
    counters: PipelineCounters,
}

impl Conditioner {
    /// A pipeline for `spec`. A raw source's samples go through `extractor` (shared: its table
    /// is built once) when one is given, which the caller decides by
    /// [`Processing::uses_extractor`]; without one they are credited at their min-entropy, as
    /// post-processed samples are.
    pub fn new(spec: SourceSpec, extractor: Option<Arc<Toeplitz>>) -> Self {
        let carry_capacity = match (spec.processing, &extractor) {
            (Processing::Raw, Some(ex)) => ex.input_bytes(),
            _ => 0,
        };
        Self {
            spec,
            health: HealthMonitor::new(spec.health),
            fips: FipsMonitor::new(),
            extractor: match spec.processing {
                Processing::Raw => extractor,
                Processing::PostProcessed => None,
            },
            // Both buffers get their whole capacity here and never grow: `carry` holds less than
            // one extractor block, `held` at most `holdback` bytes (see `hold`). Growing a Vec
            // would leave copies of raw samples behind in freed memory.
            carry: Vec::with_capacity(carry_capacity),
            held: Vec::with_capacity(Self::holdback_bytes(&spec)),
            holdback: Self::holdback_bytes(&spec),
            counters: PipelineCounters::default(),
        }
    }

    /// Bytes held back: two APT windows of samples.
    pub fn holdback_bytes(spec: &SourceSpec) -> usize {
        let w = spec.health.width;
        (2 * w.apt_window() * w.bits()).div_ceil(8) as usize
    }

    fn discard_pending(&mut self) -> u64 {
        let n = (self.carry.len() + self.held.len()) as u64;
        wipe(&mut self.carry);
        wipe(&mut self.held);
        n
    }

    /// The source description.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// Health monitor state.
    pub fn health_state(&self) -> HealthState {
        self.health.state()
    }

    /// Health-test counters.
    pub fn health_counters(&self) -> HealthCounters {
        self.health.counters()
    }

    /// The health monitor (for cut-offs).
    pub fn health(&self) -> &HealthMonitor {
        &self.health
    }

    /// FIPS 140-2 counters.
    pub fn fips_counters(&self) -> FipsCounters {
        self.fips.counters()
    }

    /// Pipeline counters.
    pub fn counters(&self) -> PipelineCounters {
        self.counters
    }

    /// The source was reopened after a permanent failure or an unplug: forget partial data and
    /// run the start-up test again.
    pub fn restart(&mut self) {
        self.counters.bytes_discarded += self.discard_pending();
        self.health.reset_permanent();
    }

    /// Runs one chunk through the pipeline; usable output goes to `sink(bytes, millibits)`.
    pub fn process(&mut self, chunk: &[u8], sink: &mut impl FnMut(&[u8], u64)) -> Verdict {
        self.counters.bytes_in += chunk.len() as u64;
        self.fips.feed(chunk);
        let verdict = self.health.check(chunk);
        if !verdict.usable() {
            self.counters.bytes_discarded += chunk.len() as u64 + self.discard_pending();
            return verdict;
        }
        self.hold(chunk, sink);
        verdict
    }

    /// Puts `chunk` behind the held bytes and releases all but the newest `holdback` of the two,
    /// oldest first. `held` never exceeds `holdback` bytes, so its buffer (allocated in `new`) is
    /// never reallocated: what stays is moved to its front in place, and bytes of `chunk` that
    /// are released at once are released straight from `chunk`.
    fn hold(&mut self, chunk: &[u8], sink: &mut impl FnMut(&[u8], u64)) {
        let h = self.held.len();
        let Some(release) = (h + chunk.len())
            .checked_sub(self.holdback)
            .filter(|&r| r > 0)
        else {
            self.held.extend_from_slice(chunk);
            return;
        };
        // Out of `self` while `release` borrows it (no allocation: `take` leaves an empty Vec);
        // `Wiped` zeroes it should `sink` unwind.
        let mut held = Wiped(core::mem::take(&mut self.held));
        if release <= h {
            self.release(&held.0[..release], sink);
            held.0.copy_within(release.., 0);
            held.0.truncate(h - release);
            // Ends at exactly `holdback >= h` bytes: the stale copies past `h - release` are all
            // overwritten.
            held.0.extend_from_slice(chunk);
        } else {
            if h > 0 {
                self.release(&held.0, sink);
            }
            let (now, keep) = chunk.split_at(release - h);
            self.release(now, sink);
            // `holdback >= h` bytes again: every old byte is overwritten.
            held.0.clear();
            held.0.extend_from_slice(keep);
        }
        debug_assert_eq!(held.0.len(), self.holdback);
        self.held = core::mem::take(&mut held.0);
    }

    /// Conditions bytes that have passed the hold-back.
    fn release(&mut self, chunk: &[u8], sink: &mut impl FnMut(&[u8], u64)) {
        match self.extractor.clone() {
            None => {
                let mb = chunk.len() as u64 * self.spec.millibits_per_byte();
                self.counters.bytes_out += chunk.len() as u64;
                self.counters.millibits_out += mb;
                sink(chunk, mb);
            }
            Some(ex) => {
                let (n, k) = (ex.input_bytes(), ex.output_bytes());
                assert!(k <= 256, "extractor output block too large");
                let mut out = [0u8; 256];
                let out = &mut out[..k];
                let per_block_in = n as u64 * self.spec.millibits_per_byte();
                let bits = credited_bits(per_block_in, ex.output_bits());
                let mut data = chunk;
                // Whole blocks straight from the chunk; a remainder waits in `carry`.
                if !self.carry.is_empty() {
                    let take = (n - self.carry.len()).min(data.len());
                    self.carry.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.carry.len() == n {
                        ex.extract(&self.carry, out);
                        self.carry.zeroize();
                        self.carry.clear();
                        self.emit(out, bits, sink);
                    }
                }
                let mut blocks = data.chunks_exact(n);
                for b in &mut blocks {
                    ex.extract(b, out);
                    self.emit(out, bits, sink);
                }
                self.carry.extend_from_slice(blocks.remainder());
                out.zeroize();
            }
        }
    }

    fn emit(&mut self, out: &[u8], bits: u32, sink: &mut impl FnMut(&[u8], u64)) {
        let mb = u64::from(bits) * 1000;
        self.counters.bytes_out += out.len() as u64;
        self.counters.millibits_out += mb;
        sink(out, mb);
    }
}

impl Drop for Conditioner {
    fn drop(&mut self) {
        wipe(&mut self.carry);
        wipe(&mut self.held);
    }
}

/// Zeroes all of `buf`'s allocation, spare capacity included, and empties it (keeping the
/// allocation).
fn wipe(buf: &mut Vec<u8>) {
    buf.resize(buf.capacity(), 0);
    buf.as_mut_slice().zeroize();
    buf.clear();
}

/// A buffer of raw samples that is wiped when dropped, also when unwinding.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{MinEntropy, SampleWidth};

    fn spec(processing: Processing) -> SourceSpec {
        let h = MinEntropy::from_millibits(6500, SampleWidth::Byte).unwrap();
        SourceSpec {
            health: HealthParams::new(SampleWidth::Byte, h),
            processing,
        }
    }

    fn run(c: &mut Conditioner, data: &[u8], chunk: usize) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut mb = 0;
        for ch in data.chunks(chunk) {
            c.process(ch, &mut |b, m| {
                out.extend_from_slice(b);
                mb += m;
            });
        }
        (out, mb)
    }

    #[test]
    fn startup_and_holdback_are_never_released() {
        let mut c = Conditioner::new(spec(Processing::PostProcessed), None);
        let data = crate::test_noise(1, 1024 + 1024 + 100);
        let (out, mb) = run(&mut c, &data, 64);
        // 1024 start-up bytes discarded; of the rest the newest 1024 are held back, so the 100
        // oldest are released, credited at 6.5 bits each.
        assert_eq!(out, data[1024..1124]);
        assert_eq!(mb, 100 * 6500);
    }

    #[test]
    fn a_fault_discards_what_was_held() {
        let mut c = Conditioner::new(spec(Processing::PostProcessed), None);
        let mut data = crate::test_noise(2, 4096);
        // A repeating 8-byte pattern from offset 3000: invisible to the RCT, caught by the APT
        // within a window; everything from the onset must still be in the hold-back then.
        for (i, b) in data[3000..].iter_mut().enumerate() {
            *b = [1, 2, 3, 4, 5, 6, 7, 8][i % 8];
        }
        let (out, _) = run(&mut c, &data, 64);
        assert!(c.health_counters().apt_failures >= 1);
        assert!(!out.is_empty());
        assert!(
            out.len() <= 3000 - 1024,
            "released {} bytes, some past the onset",
            out.len()
        );
        assert_eq!(out, data[1024..1024 + out.len()]);
    }

    #[test]
    fn raw_sources_go_through_the_extractor() {
        let ex = Arc::new(Toeplitz::default_shape());
        let mut c = Conditioner::new(spec(Processing::Raw), Some(ex.clone()));
        let data = crate::test_noise(3, 2048 + 128 * 10 + 50);
        let (out, mb) = run(&mut c, &data, 64);
        // Released: everything after start-up (1024) but the 1024 held: 1330 bytes = 10 blocks.
        assert_eq!(out.len(), 96 * 10);
        let mut expect = [0u8; 96];
        ex.extract(&data[1024..1024 + 128], &mut expect);
        assert_eq!(out[..96], expect);
        // 128 bytes at 6.5 bits = 832 bits in; 832 - 64 = 768 credited per block.
        assert_eq!(mb, 10 * 768 * 1000);
    }

    #[test]
    fn only_raw_samples_into_a_pool_that_is_not_vetted_use_the_extractor() {
        assert!(!Processing::Raw.uses_extractor(PoolHash::Sha256));
        assert!(Processing::Raw.uses_extractor(PoolHash::Blake2s));
        assert!(!Processing::PostProcessed.uses_extractor(PoolHash::Sha256));
        assert!(!Processing::PostProcessed.uses_extractor(PoolHash::Blake2s));
    }

    #[test]
    fn raw_samples_without_the_extractor_are_credited_at_their_min_entropy() {
        let mut c = Conditioner::new(spec(Processing::Raw), None);
        let data = crate::test_noise(4, 2048 + 300);
        let (out, mb) = run(&mut c, &data, 64);
        assert_eq!(out, data[1024..1324]);
        assert_eq!(mb, 300 * 6500);
    }

    /// Feeds the start-up test in 64-byte chunks (so it ends exactly at 1024 bytes), then the
    /// rest of `data` in chunks cycling through `sizes`.
    fn run_sizes(c: &mut Conditioner, data: &[u8], sizes: &[usize]) -> (Vec<u8>, u64) {
        let (mut out, mut mb) = run(c, &data[..1024], 64);
        let mut rest = &data[1024..];
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (ch, r) = rest.split_at(n.min(rest.len()));
            rest = r;
            c.process(ch, &mut |b, m| {
                out.extend_from_slice(b);
                mb += m;
            });
        }
        (out, mb)
    }

    #[test]
    fn release_does_not_depend_on_chunk_sizes() {
        let data = crate::test_noise(4, 30_000);
        let ex = Arc::new(Toeplitz::default_shape());
        // Smaller and larger than the 1024-byte hold-back, and equal to it.
        let plans: [&[usize]; 7] = [
            &[64],
            &[1],
            &[1023, 1, 1024, 1025],
            &[4096],
            &[10_000],
            &[7, 3000, 129, 1500, 2],
            &[28_976],
        ];
        for processing in [Processing::PostProcessed, Processing::Raw] {
            let mk = || Conditioner::new(spec(processing), Some(ex.clone()));
            let want = run_sizes(&mut mk(), &data, &[64]);
            for plan in plans {
                assert_eq!(
                    run_sizes(&mut mk(), &data, plan),
                    want,
                    "{processing:?} {plan:?}"
                );
            }
            // Everything after start-up but the newest 1024 bytes, through the extractor or not.
            let released = &data[1024..data.len() - 1024];
            match processing {
                Processing::PostProcessed => assert_eq!(want.0, released),
                Processing::Raw => {
                    assert_eq!(want.0.len(), released.len() / 128 * 96);
                    let mut block = [0u8; 96];
                    ex.extract(&released[128..256], &mut block);
                    assert_eq!(want.0[96..192], block);
                }
            }
        }
    }

    #[test]
    fn buffers_are_allocated_once_and_hold_the_newest_bytes() {
        let ex = Arc::new(Toeplitz::default_shape());
        let mut c = Conditioner::new(spec(Processing::Raw), Some(ex));
        let data = crate::test_noise(5, 40_000);
        let (held, carry) = (
            (c.held.as_ptr(), c.held.capacity()),
            (c.carry.as_ptr(), c.carry.capacity()),
        );
        assert!(held.1 >= c.holdback && carry.1 >= 128);
        run(&mut c, &data[..1024], 64);
        let mut fed = 1024;
        for &n in [1, 1023, 1024, 1025, 5000, 3, 700, 4096, 129, 10_000]
            .iter()
            .cycle()
            .take(20)
        {
            let n = n.min(data.len() - fed);
            c.process(&data[fed..fed + n], &mut |_, _| {});
            fed += n;
            assert_eq!(
                (c.held.as_ptr(), c.held.capacity()),
                held,
                "held reallocated"
            );
            assert_eq!(
                (c.carry.as_ptr(), c.carry.capacity()),
                carry,
                "carry reallocated"
            );
            let kept = c.holdback.min(fed - 1024);
            assert_eq!(c.held, data[fed - kept..fed], "after {fed} bytes");
            assert!(c.carry.len() < 128);
        }
        // A failure discards what is pending and keeps the buffers.
        c.process(&[0u8; 4096], &mut |_, _| {
            panic!("a stuck source released bytes")
        });
        assert!(c.held.is_empty() && c.carry.is_empty());
        assert_eq!((c.held.as_ptr(), c.held.capacity()), held);
    }
}
