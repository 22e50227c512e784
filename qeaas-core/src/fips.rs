//! FIPS 140-2 statistical tests on 20 000-bit blocks, as rngtest runs them.
//!
//! These are kept as statistics, not as a gate: about one block in a thousand of perfect data
//! fails one of them. The gate is [`crate::health`]. The thresholds are those of FIPS 140-2
//! (change notice 1) as implemented in rng-tools' `fips.c`, and bits are read most significant
//! first within a byte, as rngtest reads them, so the runs tests agree with rngtest block for
//! block. (rngtest consumes the first 4 bytes of its input to prime the continuous test, so its
//! blocks start 4 bytes later than ours on the same stream.)

/// Bytes per FIPS block (20 000 bits).
pub const BLOCK_BYTES: usize = 2500;
const BLOCK_BITS: u32 = (BLOCK_BYTES * 8) as u32;

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

    let (counts, long) = run_counts(block);
    r.long_run = long;
    r.runs = counts.iter().any(|c| {
        c.iter()
            .zip(RUN_BOUNDS.iter())
            .any(|(&n, &(lo, hi))| n < lo || n > hi)
    });
    r
}

const WORDS: usize = BLOCK_BYTES.div_ceil(8);

/// Counts of runs of zeros (`[0]`) and ones (`[1]`) of length 1..=5 and 6+, and whether any run
/// is at least [`LONG_RUN`] long, with bits read most significant first within each byte, as
/// rngtest does.
///
/// Bit-parallel and branch-free: position `i` starts a run of ones if `a[i] & !a[i-1]`, and that
/// run is at least `L` long if `a[i] & ... & a[i+L-1]`; 64 positions are handled per step, with
/// the neighbouring words supplying the bits across the boundary. Runs of zeros are runs of ones
/// of the complement.
fn run_counts(block: &[u8; BLOCK_BYTES]) -> ([[u32; 6]; 2], bool) {
    // Big-endian words: position 64 w + t is bit 63 - t of word w. Bits past the end are zero.
    let mut ones = [0u64; WORDS + 1];
    for (i, c) in block.chunks(8).enumerate() {
        let mut buf = [0u8; 8];
        buf[..c.len()].copy_from_slice(c);
        ones[i] = u64::from_be_bytes(buf);
    }
    let tail_bits = BLOCK_BITS as usize - 64 * (WORDS - 1);
    let last_mask = if tail_bits == 64 {
        u64::MAX
    } else {
        !(u64::MAX >> tail_bits)
    };
    let mut zeros = [0u64; WORDS + 1];
    for i in 0..WORDS {
        zeros[i] = !ones[i];
    }
    zeros[WORDS - 1] &= last_mask;

    let mut counts = [[0u32; 6]; 2];
    let mut long = false;
    for (bit, a) in [(0usize, &zeros), (1, &ones)] {
        // ge[L-1] = number of runs of length >= L.
        let mut ge = [0u32; 7];
        for w in 0..WORDS {
            let (x, next) = (a[w], a[w + 1]);
            let prev = if w == 0 { 0 } else { a[w - 1] };
            let start = x & !((x >> 1) | (prev << 63));
            let mut all = x;
            ge[0] += start.count_ones();
            for l in 1..6u32 {
                // AND in a[i + l]: the word shifted up by l, topped up from the next word.
                all &= (x << l) | (next >> (64 - l));
                ge[l as usize] += (start & all).count_ones();
            }
            // At least 26 in a row, by doubling over a 128-bit window: 26 = 16 + 8 + 2.
            const _: () = assert!(LONG_RUN == 16 + 8 + 2);
            let v = (u128::from(x) << 64) | u128::from(next);
            let y1 = v & (v << 1);
            let y2 = y1 & (y1 << 2);
            let y3 = y2 & (y2 << 4);
            let y4 = y3 & (y3 << 8);
            let y26 = y4 & (y3 << 16) & (y1 << 24);
            long |= (y26 >> 64) as u64 & start != 0;
        }
        for l in 0..5 {
            counts[bit][l] = ge[l] - ge[l + 1];
        }
        counts[bit][5] = ge[5];
    }
    (counts, long)
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

    /// Adds bytes; tests every completed block. Whole blocks in `data` are tested in place.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.fill == 0 && data.len() >= BLOCK_BYTES {
                let (block, rest) = data.split_at(BLOCK_BYTES);
                let block: &[u8; BLOCK_BYTES] = block.try_into().expect("BLOCK_BYTES long");
                let r = test_block(block, &mut self.prev);
                self.count(r);
                data = rest;
                continue;
            }
            let n = (BLOCK_BYTES - self.fill).min(data.len());
            self.buf[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == BLOCK_BYTES {
                self.fill = 0;
                let r = test_block(&self.buf, &mut self.prev);
                self.count(r);
            }
        }
    }

    fn count(&mut self, r: BlockResult) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A slow bit-by-bit reference for the runs and long-run tests (most significant bit first).
    fn runs_reference(block: &[u8; BLOCK_BYTES]) -> ([[u32; 6]; 2], u32) {
        let bit = |i: usize| (block[i / 8] >> (7 - i % 8)) & 1;
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
            let (c, l) = runs_reference(blk);
            assert_eq!(run_counts(blk), (c, l >= LONG_RUN), "fixed block {i}");
        }
        for seed in 1..50u64 {
            let blk = xorshift_block(seed);
            let (c, l) = runs_reference(&blk);
            assert_eq!(run_counts(&blk), (c, l >= LONG_RUN), "seed {seed}");
        }
    }

    #[test]
    fn long_runs_are_found_exactly_at_26_wherever_they_are() {
        // Runs of 25 (pass) and 26 (fail) of both bits, placed across word boundaries, at the
        // start and at the very end of the block.
        let set = |blk: &mut [u8; BLOCK_BYTES], from: usize, len: usize, v: u8| {
            for i in from..from + len {
                let (byte, bit) = (i / 8, 7 - i % 8);
                blk[byte] = (blk[byte] & !(1 << bit)) | (v << bit);
            }
        };
        let base = xorshift_block(77);
        for &(pos, len) in &[
            (0, 25),
            (0, 26),
            (50, 26),
            (60, 25),
            (60, 26),
            (127, 26),
            (19974, 26),
            (19975, 25),
            (19968, 32),
        ] {
            for v in [0u8, 1] {
                let mut blk = base;
                // Fence the run with opposite bits so its length is exact.
                if pos > 0 {
                    set(&mut blk, pos - 1, 1, 1 - v);
                }
                if pos + len < 20000 {
                    set(&mut blk, pos + len, 1, 1 - v);
                }
                set(&mut blk, pos, len, v);
                let (c, l) = runs_reference(&blk);
                assert_eq!(
                    run_counts(&blk),
                    (c, l >= LONG_RUN),
                    "run of {len} {v}s at {pos}"
                );
                assert_eq!(
                    run_counts(&blk).1,
                    len >= 26 || l >= 26,
                    "run of {len} {v}s at {pos}"
                );
            }
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
