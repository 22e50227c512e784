//! From raw source bytes to credited, conditioned input for the pool.
//!
//! `source bytes -> health tests (gate) -> FIPS counters (statistic) -> extractor (raw sources)
//! -> (bytes, credit)`. A chunk is released only when [`HealthMonitor::check`] says it may be;
//! everything else, including a partial extractor block collected before a failure, is dropped.

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
            counters: PipelineCounters::default(),
        }
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
        self.carry.zeroize();
        self.carry.clear();
        self.health.reset_permanent();
    }

    /// Runs one chunk through the pipeline; usable output goes to `sink(bytes, millibits)`.
    pub fn process(&mut self, chunk: &[u8], sink: &mut impl FnMut(&[u8], u64)) -> Verdict {
        self.counters.bytes_in += chunk.len() as u64;
        self.fips.feed(chunk);
        let verdict = self.health.check(chunk);
        if !verdict.usable() {
            self.counters.bytes_discarded += (chunk.len() + self.carry.len()) as u64;
            self.carry.zeroize();
            self.carry.clear();
            return verdict;
        }
        match self.extractor.clone() {
            None => {
                let mb = chunk.len() as u64 * self.spec.millibits_per_byte();
                self.counters.bytes_out += chunk.len() as u64;
                self.counters.millibits_out += mb;
                sink(chunk, mb);
            }
            Some(ex) => {
                let (n, k) = (ex.input_bytes(), ex.output_bytes());
                let mut out = [0u8; 256];
                let out = &mut out[..k.min(256)];
                assert!(k <= 256, "extractor output block too large");
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
        verdict
    }

    fn emit(&mut self, out: &[u8], bits: u32, sink: &mut impl FnMut(&[u8], u64)) {
        let mb = u64::from(bits) * 1000;
        self.counters.bytes_out += out.len() as u64;
        self.counters.millibits_out += mb;
        sink(out, mb);
    }
}
