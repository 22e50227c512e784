//! From raw source bytes to credited, conditioned input for the pool.
//!
//! `source bytes -> health tests (gate) -> FIPS counters (statistic) -> hold-back -> extractor
//! (raw sources) -> (bytes, credit)`. A chunk is released only when [`HealthMonitor::check`] says
//! it may be, and only after the next `2 W` samples (two APT windows) have passed too: the APT
//! needs up to a window to see a fault that began just before, so the samples at a fault's onset
//! are still held when it is detected, and are dropped with everything else held.

use alloc::sync::Arc;
use alloc::vec::Vec;
use zeroize::Zeroize;

use crate::extractor::{credited_bits, Toeplitz};
use crate::fips::{FipsCounters, FipsMonitor};
use crate::health::{HealthCounters, HealthMonitor, HealthParams, HealthState, Verdict};

/// Whether a source's samples are raw noise or already post-processed by the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processing {
    /// Raw samples: health-tested, then compressed by the Toeplitz extractor.
    Raw,
    /// Post-processed by the device (e.g. a Quantis in its default mode): health-tested, then
    /// credited at the declared min-entropy per sample.
    PostProcessed,
}

/// Where the bytes come from. Only [`Provenance::Hardware`] may ever credit the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// A physical noise source.
    Hardware,
    /// The qeaas simulator, a pseudo-terminal, a pipe or a file not declared hardware.
    Simulated,
    /// Another qeaas over the network.
    Network,
}

impl Provenance {
    /// Stable label for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Provenance::Hardware => "hardware",
            Provenance::Simulated => "simulated",
            Provenance::Network => "network",
        }
    }
}

/// Everything the pipeline needs to know about a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceSpec {
    /// Health-test parameters, including the assessed min-entropy per sample.
    pub health: HealthParams,
    /// Raw or post-processed samples.
    pub processing: Processing,
    /// Hardware, simulated or network.
    pub provenance: Provenance,
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
    /// A pipeline for `spec`. Raw sources need an extractor (shared: its table is 3 MiB).
    pub fn new(spec: SourceSpec, extractor: Option<Arc<Toeplitz>>) -> Self {
        assert!(
            spec.processing == Processing::PostProcessed || extractor.is_some(),
            "raw sources need an extractor"
        );
        Self {
            spec,
            health: HealthMonitor::new(spec.health),
            fips: FipsMonitor::new(),
            extractor: match spec.processing {
                Processing::Raw => extractor,
                Processing::PostProcessed => None,
            },
            carry: Vec::new(),
            held: Vec::new(),
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
        self.carry.zeroize();
        self.carry.clear();
        self.held.zeroize();
        self.held.clear();
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
        self.held.extend_from_slice(chunk);
        if self.held.len() > self.holdback {
            let release = self.held.len() - self.holdback;
            let mut out = core::mem::take(&mut self.held);
            self.release(&out[..release], sink);
            self.held.extend_from_slice(&out[release..]);
            out.zeroize();
        }
        verdict
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{MinEntropy, SampleWidth};

    fn spec(processing: Processing) -> SourceSpec {
        let h = MinEntropy::from_millibits(6500, SampleWidth::Byte).unwrap();
        SourceSpec {
            health: HealthParams::new(SampleWidth::Byte, h),
            processing,
            provenance: Provenance::Simulated,
        }
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
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
        let data = noise(1, 1024 + 1024 + 100);
        let (out, mb) = run(&mut c, &data, 64);
        // 1024 start-up bytes discarded; of the rest the newest 1024 are held back, so the 100
        // oldest are released, credited at 6.5 bits each.
        assert_eq!(out, data[1024..1124]);
        assert_eq!(mb, 100 * 6500);
    }

    #[test]
    fn a_fault_discards_what_was_held() {
        let mut c = Conditioner::new(spec(Processing::PostProcessed), None);
        let mut data = noise(2, 4096);
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
        let data = noise(3, 2048 + 128 * 10 + 50);
        let (out, mb) = run(&mut c, &data, 64);
        // Released: everything after start-up (1024) but the 1024 held: 1330 bytes = 10 blocks.
        assert_eq!(out.len(), 96 * 10);
        let mut expect = [0u8; 96];
        ex.extract(&data[1024..1024 + 128], &mut expect);
        assert_eq!(out[..96], expect);
        // 128 bytes at 6.5 bits = 832 bits in; 832 - 64 = 768 credited per block.
        assert_eq!(mb, 10 * 768 * 1000);
    }
}
