//! FIPS 140-2 statistical tests on 20 000-bit blocks, as rngtest runs them.
//!
//! These are kept as statistics, not as a gate: about one block in a thousand of perfect data
//! fails one of them. The gate is [`crate::health`]. The thresholds are those of FIPS 140-2
//! (change notice 1) as implemented in rng-tools' `fips.c`.

/// Bytes per FIPS block (20 000 bits).
pub const BLOCK_BYTES: usize = 2500;
const BLOCK_BITS: u32 = (BLOCK_BYTES * 8) as u32;
const WORDS: usize = BLOCK_BYTES.div_ceil(8);

/// Inclusive bounds on the number of runs of length 1, 2, 3, 4, 5 and 6+ (each for zeros and for
/// ones).
const RUN_BOUNDS: [(u32, u32); 6] = [
    (2315, 2685),
    (1114, 1386),
    (527, 723),
    (240, 384),
    (103, 209),
    (103, 209),
];
/// A run this long (or longer) fails the long-run test.
const LONG_RUN: u32 = 26;

/// Which FIPS test failed (one block can fail several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockResult {
    /// Ones count outside (9725, 10275).
    pub monobit: bool,
    /// Poker statistic outside (2.16, 46.17).
    pub poker: bool,
    /// A run-length count outside its interval.
    pub runs: bool,
    /// A run of 26 or more identical bits.
    pub long_run: bool,
    /// Two consecutive 32-bit words equal.
    pub continuous: bool,
}

impl BlockResult {
    /// True when no test failed.
    pub fn passed(&self) -> bool {
        !(self.monobit || self.poker || self.runs || self.long_run || self.continuous)
    }
}

/// Cumulative counters, named like rngtest's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FipsCounters {
    /// Blocks that passed all five tests.
    pub successes: u64,
    /// Blocks that failed at least one test.
    pub failures: u64,
    /// Monobit failures.
    pub monobit: u64,
    /// Poker failures.
    pub poker: u64,
    /// Runs failures.
    pub runs: u64,
    /// Long-run failures.
    pub long_run: u64,
    /// Continuous-run failures.
    pub continuous: u64,
}

/// Tests one 2500-byte block. `prev_word` carries the last 32-bit word of the previous block for
/// the continuous test (`None` for the first block); it is updated.
pub fn test_block(block: &[u8; BLOCK_BYTES], prev_word: &mut Option<u32>) -> BlockResult {
    let mut r = BlockResult::default();

    // Continuous run test over consecutive 32-bit words.
    for w in block.chunks_exact(4) {
        let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        if *prev_word == Some(w) {
            r.continuous = true;
        }
        *prev_word = Some(w);
    }

    // Poker: counts of the 5000 4-bit values.
    let mut nib = [0u32; 16];
    for &b in block.iter() {
        nib[usize::from(b & 15)] += 1;
        nib[usize::from(b >> 4)] += 1;
    }
    let sum_sq: u64 = nib.iter().map(|&c| u64::from(c) * u64::from(c)).sum();
    // X = 16/5000 * sum(f^2) - 5000, compared in integers scaled by 5000 * 100 to stay exact:
    // 2.16 < X < 46.17  <=>  216 * 5000 < 1600 * sum - 2_500_000_000 < 4617 * 5000.
    let x_scaled = 1600 * sum_sq as i64 - 2_500_000_000;
    r.poker = !(216 * 5000 < x_scaled && x_scaled < 4617 * 5000);

    let ones: u32 = block.iter().map(|b| b.count_ones()).sum();
    r.monobit = !(9725 < ones && ones < 10275);

    let (counts, longest) = run_counts(block);
    r.long_run = longest >= LONG_RUN;
    r.runs = counts.iter().any(|c| {
        c.iter()
            .zip(RUN_BOUNDS.iter())
            .any(|(&n, &(lo, hi))| n < lo || n > hi)
    });
    r
}

/// Counts of runs of zeros (`[0]`) and ones (`[1]`) of length 1..=5 and 6+, and the longest run.
fn run_counts(block: &[u8; BLOCK_BYTES]) -> ([[u32; 6]; 2], u32) {
    // Load bits least significant first into 64-bit words; the last word holds 32 bits.
    let mut words = [0u64; WORDS];
    for (i, c) in block.chunks(8).enumerate() {
        let mut buf = [0u8; 8];
        buf[..c.len()].copy_from_slice(c);
        words[i] = u64::from_le_bytes(buf);
    }
    // A run ends at bit i where bit i != bit i+1, or at the last bit. The transition mask of a
    // word is w ^ (w >> 1 | next word's first bit << 63); walk its set bits.
    let mut counts = [[0u32; 6]; 2];
    let mut start: u32 = 0;
    let mut longest = 0;
    for i in 0..WORDS {
        let w = words[i];
        let base = (i * 64) as u32;
        let valid = (BLOCK_BITS - base).min(64);
        let mut t = if i + 1 < WORDS {
            w ^ ((w >> 1) | (words[i + 1] << 63))
        } else {
            // Final partial word: bits past the end are not data; the last valid bit ends a run.
            let mask = if valid == 64 {
                u64::MAX
            } else {
                (1u64 << valid) - 1
            };
            ((w ^ (w >> 1)) & (mask >> 1)) | (1u64 << (valid - 1))
        };
        while t != 0 {
            let pos = t.trailing_zeros();
            let end = base + pos;
            let len = end - start + 1;
            let bit = ((w >> pos) & 1) as usize;
            counts[bit][(len.min(6) - 1) as usize] += 1;
            longest = longest.max(len);
            start = end + 1;
            t &= t - 1;
        }
    }
    (counts, longest)
}

/// Streams bytes into 2500-byte blocks and keeps the counters.
#[derive(Clone, Debug)]
pub struct FipsMonitor {
    buf: [u8; BLOCK_BYTES],
    fill: usize,
    prev: Option<u32>,
    counters: FipsCounters,
}

impl Default for FipsMonitor {
    fn default() -> Self {
        Self {
            buf: [0; BLOCK_BYTES],
            fill: 0,
            prev: None,
            counters: FipsCounters::default(),
        }
    }
}

impl FipsMonitor {
    /// A monitor with no data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn counters(&self) -> FipsCounters {
        self.counters
    }

    /// Adds bytes; tests every completed block.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = (BLOCK_BYTES - self.fill).min(data.len());
            self.buf[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == BLOCK_BYTES {
                self.fill = 0;
                let r = test_block(&self.buf, &mut self.prev);
                let c = &mut self.counters;
                if r.passed() {
                    c.successes += 1;
                } else {
                    c.failures += 1;
                }
                c.monobit += u64::from(r.monobit);
                c.poker += u64::from(r.poker);
                c.runs += u64::from(r.runs);
                c.long_run += u64::from(r.long_run);
                c.continuous += u64::from(r.continuous);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slow bit-by-bit reference for the runs and long-run tests.
    fn runs_reference(block: &[u8; BLOCK_BYTES]) -> ([[u32; 6]; 2], u32) {
        let bit = |i: usize| (block[i / 8] >> (i % 8)) & 1;
        let mut counts = [[0u32; 6]; 2];
        let mut longest = 0;
        let mut i = 0;
        while i < BLOCK_BITS as usize {
            let b = bit(i);
            let mut j = i;
            while j < BLOCK_BITS as usize && bit(j) == b {
                j += 1;
            }
            let len = (j - i) as u32;
            counts[b as usize][(len.min(6) - 1) as usize] += 1;
            longest = longest.max(len);
            i = j;
        }
        (counts, longest)
    }

    fn xorshift_block(seed: u64) -> [u8; BLOCK_BYTES] {
        let mut s = seed | 1;
        core::array::from_fn(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
    }

    #[test]
    fn runs_match_reference() {
        let mut blocks: [[u8; BLOCK_BYTES]; 4] = [
            [0; BLOCK_BYTES],
            [0xff; BLOCK_BYTES],
            [0; BLOCK_BYTES],
            [0; BLOCK_BYTES],
        ];
        blocks[2][BLOCK_BYTES - 1] = 0x80;
        blocks[3][0] = 1;
        for (i, blk) in blocks.iter().enumerate() {
            assert_eq!(run_counts(blk), runs_reference(blk), "fixed block {i}");
        }
        for seed in 1..50u64 {
            let blk = xorshift_block(seed);
            assert_eq!(run_counts(&blk), runs_reference(&blk), "seed {seed}");
        }
    }

    #[test]
    fn pseudo_random_blocks_mostly_pass() {
        let mut fails = 0;
        for seed in 1..200u64 {
            if !test_block(&xorshift_block(seed), &mut None).passed() {
                fails += 1;
            }
        }
        assert!(fails <= 2, "{fails} of 199 blocks failed");
    }

    #[test]
    fn constant_block_fails_everything() {
        let r = test_block(&[0u8; BLOCK_BYTES], &mut None);
        assert!(r.monobit && r.poker && r.runs && r.long_run && r.continuous);
    }

    #[test]
    fn long_run_at_block_end_is_seen() {
        let mut blk = xorshift_block(7);
        for b in blk[BLOCK_BYTES - 4..].iter_mut() {
            *b = 0xff;
        }
        assert!(test_block(&blk, &mut None).long_run);
    }

    #[test]
    fn continuous_test_spans_blocks() {
        let blk = xorshift_block(3);
        let mut prev = None;
        assert!(!test_block(&blk, &mut prev).continuous);
        let mut next = xorshift_block(4);
        next[..4].copy_from_slice(&blk[BLOCK_BYTES - 4..]);
        assert!(test_block(&next, &mut prev).continuous);
    }

    #[test]
    fn monitor_counts_blocks() {
        let mut m = FipsMonitor::new();
        let blk = xorshift_block(11);
        m.feed(&blk[..1000]);
        assert_eq!(m.counters().successes + m.counters().failures, 0);
        m.feed(&blk[1000..]);
        m.feed(&[0u8; BLOCK_BYTES]);
        let c = m.counters();
        assert_eq!(c.successes + c.failures, 2);
        assert!(c.failures >= 1 && c.monobit >= 1);
    }
}
