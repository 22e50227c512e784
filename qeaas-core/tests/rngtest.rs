//! The conditioned output of the core, checked by the real `rngtest` (rng-tools5).
//!
//! * `ten_megabytes_of_conditioned_output_pass_rngtest`: simulated raw "Quantis-like" noise
//!   (xoshiro256** from a fixed seed, declared Raw, one sample per byte, H = 7.0 bits/byte) goes
//!   through `Conditioner` (health tests, FIPS counters, Toeplitz) into a `Reservoir`; the first
//!   10 000 004 bytes taken from the reservoir (4000 FIPS blocks + rngtest's 4 bootstrap bytes)
//!   go to `rngtest -c 4000`. Our own `FipsMonitor` must agree with rngtest block for block.
//! * Negative controls, so that the check above is known to be able to fail:
//!   - a grossly biased source (bits 90 % ones) is stopped by the health tests: nothing comes out;
//!   - a mildly biased source (bits 60 % ones, min-entropy ~5.9 bits/byte against a claim of 7)
//!     is NOT reliably stopped by the health tests (they are tuned for a false-alarm rate of
//!     2^-20 per sample, not to detect a mis-estimated H), so we show instead that rngtest fails
//!     such bytes far beyond the bound the main test uses.
//!
//! rngtest: `/usr/bin/rngtest` (override with `RNGTEST=/path`). If it is missing the rngtest
//! parts are skipped with a loud message, unless `CI` is set, in which case they fail.
//! `QEAAS_RNGTEST_SEED` overrides the seed of the simulated source.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use qeaas_core::extractor::Toeplitz;
use qeaas_core::fips::{FipsMonitor, BLOCK_BYTES};
use qeaas_core::health::{HealthParams, HealthState, MinEntropy, SampleWidth};
use qeaas_core::pipeline::{Conditioner, Processing, SourceSpec};
use qeaas_core::provenance::Provenance;
use qeaas_core::reservoir::Reservoir;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256StarStar;

/// FIPS blocks checked by the main test: 4000 * 2500 bytes = 10 MB.
const BLOCKS: usize = 4000;
/// rngtest reads 4 bytes to bootstrap its continuous test before the first block.
const RNGTEST_BYTES: usize = BLOCKS * BLOCK_BYTES + 4;
/// Device read size.
const CHUNK: usize = 4096;
const DEFAULT_SEED: u64 = 0x9ea5_0000_0000_0001;

// ---------------------------------------------------------------------------------------------
// Simulated sources

/// A seeded xoshiro256** (Blackman & Vigna), for reproducible simulated sources.
fn xoshiro(seed: u64) -> Xoshiro256StarStar {
    Xoshiro256StarStar::seed_from_u64(seed)
}

/// Bytes whose bits are independently 1 with probability `ones_per_65536 / 65536`.
fn fill_biased(rng: &mut impl RngCore, buf: &mut [u8], ones_per_65536: u32) {
    let mut lanes = 0u64;
    let mut left = 0;
    for b in buf.iter_mut() {
        let mut v = 0u8;
        for i in 0..8 {
            if left == 0 {
                lanes = rng.next_u64();
                left = 4;
            }
            let r = (lanes & 0xffff) as u32;
            lanes >>= 16;
            left -= 1;
            v |= u8::from(r < ones_per_65536) << i;
        }
        *b = v;
    }
}

fn seed() -> u64 {
    std::env::var("QEAAS_RNGTEST_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(DEFAULT_SEED)
}

/// Quantis-like raw source as the daemon would declare it: one sample per byte, H = 7.0.
fn raw_spec() -> SourceSpec {
    let h = MinEntropy::from_millibits(7000, SampleWidth::Byte).unwrap();
    SourceSpec {
        health: HealthParams::new(SampleWidth::Byte, h),
        processing: Processing::Raw,
    }
}

/// Runs `source` (which fills a chunk) through Conditioner -> Reservoir, taking every ready byte
/// after each chunk, until `want` bytes were taken or `max_in` bytes went in.
fn condition(
    mut source: impl FnMut(&mut [u8]),
    want: usize,
    max_in: usize,
) -> (Vec<u8>, Conditioner, Reservoir) {
    let ex = Arc::new(Toeplitz::default_shape());
    let mut cond = Conditioner::new(raw_spec(), Some(ex));
    let mut res = Reservoir::new(1 << 20);
    let mut out = Vec::with_capacity(want.min(max_in) + (1 << 20));
    let mut chunk = vec![0u8; CHUNK];
    let mut fed = 0;
    while out.len() < want && fed < max_in {
        source(&mut chunk);
        fed += chunk.len();
        cond.process(&chunk, &mut |b, mb| {
            res.absorb(b, mb, Provenance::Simulated)
        });
        let n = res.ready();
        if n > 0 {
            let start = out.len();
            out.resize(start + n, 0);
            res.take(&mut out[start..])
                .expect("ready bytes can be taken");
        }
    }
    (out, cond, res)
}

// ---------------------------------------------------------------------------------------------
// rngtest

fn rngtest_binary() -> Option<PathBuf> {
    let path = std::env::var_os("RNGTEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/rngtest"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} not found and CI is set: install rng-tools5 (apt-get install -y rng-tools5)",
            path.display()
        );
    }
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!(
        "!!! SKIPPED: {} not found (apt-get install -y rng-tools5).",
        path.display()
    );
    eprintln!("!!! The conditioned output was NOT checked by rngtest. Set CI=1 to make this fail.");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!();
    None
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn write(tag: &str, data: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "qeaas-core-rngtest-{}-{tag}.bin",
            std::process::id()
        ));
        std::fs::write(&path, data).expect("write temp file");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct RngtestCounts {
    successes: u64,
    failures: u64,
    monobit: u64,
    poker: u64,
    runs: u64,
    long_run: u64,
    continuous: u64,
}

/// Writes `data` (blocks * 2500 + 4 bytes) to a temp file and runs `rngtest -c blocks` on it.
fn run_rngtest(bin: &Path, tag: &str, data: &[u8], blocks: usize) -> (RngtestCounts, String) {
    assert_eq!(data.len(), blocks * BLOCK_BYTES + 4);
    let file = TempFile::write(tag, data);
    let input = std::fs::File::open(file.path()).expect("open temp file");
    let out = Command::new(bin)
        .arg("-c")
        .arg(blocks.to_string())
        .stdin(Stdio::from(input))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run rngtest");
    // rngtest exits 1 when any block failed; the counts, not the status, are the result.
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let count = |label: &str| -> u64 {
        text.lines()
            .find_map(|l| l.split_once(label).map(|(_, n)| n.trim()))
            .unwrap_or_else(|| panic!("no '{label}' in rngtest output:\n{text}"))
            .parse()
            .unwrap_or_else(|e| panic!("bad '{label}' count ({e}) in rngtest output:\n{text}"))
    };
    let c = RngtestCounts {
        successes: count("FIPS 140-2 successes:"),
        failures: count("FIPS 140-2 failures:"),
        monobit: count("Monobit:"),
        poker: count("Poker:"),
        runs: count("Runs:"),
        long_run: count("Long run:"),
        continuous: count("Continuous run:"),
    };
    (c, text)
}

/// The acceptance bound on rngtest failures for `blocks` blocks of good data.
///
/// FIPS 140-2's four statistical tests reject a block of ideal random data with a probability of
/// about 0.08 % together (measured on this machine: 74 of 100 000 blocks of /dev/urandom; the
/// runs and long-run tests dominate). Failures are then Binomial(blocks, ~0.0008), ~Poisson(3.2)
/// for 4000 blocks, and `blocks / 1000 + 3` = 7 is exceeded by ideal data with probability
/// ~1-2 %. With the fixed seed the test is deterministic (no flakiness); with another seed
/// (`QEAAS_RNGTEST_SEED`) a failure at 8-9 is not by itself evidence of a defect, but any real
/// defect that rngtest can see at all (bias, stuck bits, repeated blocks) produces hundreds of
/// failures, see `mildly_biased_raw_bytes_fail_rngtest`.
fn max_failures(blocks: usize) -> u64 {
    (blocks / 1000 + 3) as u64
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn ten_megabytes_of_conditioned_output_pass_rngtest() {
    let t0 = Instant::now();
    let mut rng = xoshiro(seed());
    let (out, cond, res) = condition(|c| rng.fill_bytes(c), RNGTEST_BYTES, 64 << 20);
    let t_cond = t0.elapsed();
    let pc = cond.counters();
    eprintln!(
        "conditioned: {} bytes in -> {} bytes out of the extractor -> {} bytes taken in {:.2?} \
         (health {:?}, {:?}, reservoir {:?})",
        pc.bytes_in,
        pc.bytes_out,
        out.len(),
        t_cond,
        cond.health_state(),
        cond.health_counters(),
        res.counters()
    );
    assert!(
        out.len() >= RNGTEST_BYTES,
        "only {} bytes came out",
        out.len()
    );
    assert_eq!(res.counters().bits_dropped, 0, "the reservoir overflowed");
    assert_eq!(cond.health_state(), HealthState::Healthy);
    let data = &out[..RNGTEST_BYTES];

    // Our own FIPS monitor over the same blocks rngtest will test (rngtest skips 4 bytes). Both
    // read bits most significant first.
    let fips = |bytes: &[u8]| {
        let mut m = FipsMonitor::new();
        m.feed(bytes);
        let c = m.counters();
        RngtestCounts {
            successes: c.successes,
            failures: c.failures,
            monobit: c.monobit,
            poker: c.poker,
            runs: c.runs,
            long_run: c.long_run,
            continuous: c.continuous,
        }
    };
    let ours = fips(&data[4..]);

    let Some(bin) = rngtest_binary() else { return };
    let t1 = Instant::now();
    let (c, text) = run_rngtest(&bin, "conditioned", data, BLOCKS);
    eprintln!("rngtest ({:.2?}):\n{text}", t1.elapsed());
    assert_eq!(
        c.successes + c.failures,
        BLOCKS as u64,
        "rngtest did not test every block:\n{text}"
    );
    assert!(
        c.failures <= max_failures(BLOCKS),
        "rngtest: {} of {BLOCKS} blocks failed (bound {}):\n{text}",
        c.failures,
        max_failures(BLOCKS)
    );

    // Cross-check of `qeaas_core::fips` against rngtest on the same 4000 blocks: every counter
    // must agree (rngtest bootstraps its continuous test with the 4 skipped bytes, FipsMonitor
    // with nothing; that only matters if they equal the first word, which they do not here).
    // With the default seed they do. rngtest's run counting has quirks that we do not copy (see
    // `qeaas_core::fips` and `rngtest_miscounts_a_run_at_a_block_start`), which change the
    // verdict of a block whose poker statistic or run count sits at a bound. Measured on 200 000
    // blocks of random data: rngtest reported 3 poker and 1 runs failure more than FipsMonitor,
    // all else equal. So with another seed (`QEAAS_RNGTEST_SEED`), one poker or runs failure of
    // difference in 4000 blocks (expected for about 8 % of seeds) is not a defect.
    assert_ne!(data[..4], data[4..8]);
    eprintln!("qeaas_core::fips: {ours:?}");
    eprintln!("rngtest:          {c:?}");
    assert_eq!(
        ours, c,
        "FipsMonitor disagrees with rngtest on the same blocks"
    );
}

#[test]
fn grossly_biased_source_is_blocked_by_health_tests() {
    // Bits 90 % ones: 0xff has probability 0.43, min-entropy 1.2 bits/byte against a claim of 7.
    let mut rng = xoshiro(seed() ^ 0xb1a5);
    let (out, cond, res) = condition(|c| fill_biased(&mut rng, c, 58982), 1, 4 << 20);
    let hc = cond.health_counters();
    eprintln!("90 % ones: {:?}, {:?}", cond.health_state(), hc);
    assert!(
        out.is_empty(),
        "{} bytes released from a broken source",
        out.len()
    );
    assert_eq!(cond.counters().bytes_out, 0);
    assert_eq!(res.counters().bytes_mixed, 0);
    assert_eq!(cond.health_state(), HealthState::PermanentFailure);
    assert!(hc.rct_failures + hc.apt_failures >= 1);
}

#[test]
fn mildly_biased_raw_bytes_fail_rngtest() {
    // Bits 60 % ones (39322 / 65536 = 0.60001): 0xff has probability 0.0168, min-entropy 5.9
    // bits/byte, below the claimed 7. Each FIPS block has ~12 000 ones where monobit allows
    // at most 10 274, so essentially every block must fail.
    const BIASED_BLOCKS: usize = 1000;
    let mut rng = xoshiro(seed() ^ 0x60);
    let mut raw = vec![0u8; BIASED_BLOCKS * BLOCK_BYTES + 4];
    fill_biased(&mut rng, &mut raw, 39322);

    // Document what the health tests make of it (not asserted: they are not meant to catch a
    // mis-estimated H, and at this bias they mostly pass).
    let mut src = raw.chunks(CHUNK).cycle();
    let (out, cond, _) = condition(
        |c| {
            let s = src.next().unwrap();
            c[..s.len()].copy_from_slice(s);
            c[s.len()..].fill(0x55);
        },
        usize::MAX,
        raw.len(),
    );
    eprintln!(
        "60 % ones through the pipeline: {:?}, {:?}, {} bytes released",
        cond.health_state(),
        cond.health_counters(),
        out.len()
    );

    let Some(bin) = rngtest_binary() else { return };
    let (c, text) = run_rngtest(&bin, "biased", &raw, BIASED_BLOCKS);
    eprintln!("rngtest on raw 60 % ones:\n{text}");
    assert_eq!(c.successes + c.failures, BIASED_BLOCKS as u64);
    assert!(
        c.failures > max_failures(BIASED_BLOCKS),
        "the acceptance bound would have let biased bytes through:\n{text}"
    );
    assert!(c.failures >= BIASED_BLOCKS as u64 * 99 / 100, "{text}");
    assert!(c.monobit >= BIASED_BLOCKS as u64 * 99 / 100, "{text}");
}

/// A block laid out run by run, most significant bit first, alternating from a run of ones.
fn block_from_runs(ones: &[usize], zeros: &[usize]) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK_BYTES];
    let mut pos = 0;
    for (&one, &zero) in ones.iter().zip(zeros) {
        for i in pos..pos + one {
            block[i / 8] |= 0x80 >> (i % 8);
        }
        pos += one + zero;
    }
    assert_eq!(pos, BLOCK_BYTES * 8);
    block
}

/// Documents, against the real rngtest, the quirk `qeaas_core::fips` does not copy: at the
/// start of its first block (whose first bit is 1) rngtest counts one run of six or more zeros
/// that is not there. A block with exactly 209 runs of six or more ones (the upper bound,
/// inclusive) passes the runs test in `FipsMonitor`, and fails it in rngtest, which files the
/// ones' runs under the zeros' counters and adds the phantom run to the same counter; with 208
/// both pass.
#[test]
fn rngtest_miscounts_a_run_at_a_block_start() {
    // Runs of lengths 1..=5 and 6+ (some 7 long, to fill 20 000 bits exactly), 5052 of each
    // colour, all inside the bounds; the last run is a single zero.
    let lengths = |counts: [usize; 6], sevens: usize| -> Vec<usize> {
        let mut v = Vec::new();
        for (l, &n) in counts.iter().enumerate() {
            v.extend(std::iter::repeat_n(l + 1, n));
        }
        let n = v.len();
        v[n - sevens..].fill(7);
        v
    };
    let bin = rngtest_binary();
    for (ones_6, ones_1, sevens, rngtest_runs) in [(209, 2450, 26, 1), (208, 2451, 31, 0)] {
        let mut ones = lengths([ones_1, 1250, 625, 312, 156, ones_6], sevens);
        let mut zeros = lengths([2503, 1250, 625, 312, 156, 156], 25);
        let mut rng = xoshiro(0x0fa1);
        for v in [&mut ones, &mut zeros] {
            for i in (1..v.len()).rev() {
                v.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
        }
        let last = zeros.len() - 1;
        let single = zeros.iter().position(|&l| l == 1).unwrap();
        zeros.swap(single, last);
        let block = block_from_runs(&ones, &zeros);

        let mut m = FipsMonitor::new();
        m.feed(&block);
        let c = m.counters();
        assert_eq!((c.successes, c.failures), (1, 0), "{ones_6}: {c:?}");

        let Some(bin) = &bin else { return };
        let mut data = vec![0x5a, 0xa5, 0x5a, 0xa5];
        data.extend_from_slice(&block);
        let (c, text) = run_rngtest(bin, "quirk", &data, 1);
        assert_eq!(
            c,
            RngtestCounts {
                successes: 1 - rngtest_runs,
                failures: rngtest_runs,
                runs: rngtest_runs,
                ..RngtestCounts::default()
            },
            "{ones_6} runs of 6+ ones:\n{text}"
        );
    }
}
