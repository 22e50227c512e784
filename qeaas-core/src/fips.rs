//! FIPS 140-2 statistical tests on 20 000-bit blocks, as rngtest runs them.
//!
//! These are kept as statistics, not as a gate: about one block in a thousand of perfect data
//! fails one of them. The gate is [`crate::health`]. The thresholds are those of FIPS 140-2
//! (change notice 1) as implemented in rng-tools' `fips.c`, and bits are read most significant
//! first within a byte, as rngtest reads them, so on the same 2500 bytes the runs and long-run
//! tests see the same runs as rngtest's.
//!
//! Alignment: [`FipsMonitor`] starts its first block at byte 0 of what it is fed. rngtest first
//! consumes 4 bytes to prime its continuous test and starts its first block after them, so on
//! the same stream its blocks are ours shifted by 4 bytes (feed us the stream from byte 4 to
//! compare block for block, as `tests/rngtest.rs` does).
//!
//! We count runs exactly; rngtest's `fips_test_store` has quirks that we do not copy: it files
//! every run but a block's last under the other bit's counters (harmless: both bits have the
//! same bounds), and at the start of a block whose first bit differs from the previous block's
//! last bit (or is 1, for the first block) it counts one run too many: a 6+ run of zeros when
//! that bit is 1, and, when it is 0, one outside its run counters (in rng-tools' struct layout,
//! the poker count of nibble 15). So a block with a count exactly at a bound can get a different
//! verdict from rngtest; on ordinary data the counters agree.

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

    // Continuous run test over consecutive 32-bit words (branch-free; the byte order of the words
    // does not matter for equality).
    let word = |c: &[u8]| u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    let first = word(&block[..4]);
    let mut repeat = *prev_word == Some(first);
    for (a, b) in block.chunks_exact(4).zip(block[4..].chunks_exact(4)) {
        repeat |= word(a) == word(b);
    }
    r.continuous = repeat;
    *prev_word = Some(word(&block[BLOCK_BYTES - 4..]));

    // Poker and monobit: the 16 nibble counts, added up per byte as 16 byte-wide lanes at once.
    let nib = nibble_counts(block);
    let ones: u32 = nib
        .iter()
        .zip(0u32..)
        .map(|(&c, v)| c * v.count_ones())
        .sum();
    let sum_sq: u64 = nib.iter().map(|&c| u64::from(c) * u64::from(c)).sum();
    // X = 16/5000 * sum(f^2) - 5000, compared in integers scaled by 5000 * 100 to stay exact:
    // 2.16 < X < 46.17  <=>  216 * 5000 < 1600 * sum - 2_500_000_000 < 4617 * 5000.
    let x_scaled = 1600 * sum_sq as i64 - 2_500_000_000;
    r.poker = !(216 * 5000 < x_scaled && x_scaled < 4617 * 5000);

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

/// `NIBBLES.0[b][v]`: how many of the two nibbles of byte `b` equal `v` (0, 1 or 2).
#[repr(align(16))]
struct Nibbles([[u8; 16]; 256]);

const NIBBLES: Nibbles = {
    let mut t = [[0u8; 16]; 256];
    let mut b = 0;
    while b < 256 {
        t[b][b & 15] += 1;
        t[b][b >> 4] += 1;
        b += 1;
    }
    Nibbles(t)
};

/// Counts of the 5000 nibble values of a block. Two accumulators of 16 byte lanes each take 60
/// bytes at a time (at most 120 per lane, no overflow) before they are widened.
fn nibble_counts(block: &[u8; BLOCK_BYTES]) -> [u32; 16] {
    let mut nib = [0u32; 16];
    for piece in block.chunks(120) {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        let mut pairs = piece.chunks_exact(2);
        for p in &mut pairs {
            let (ta, tb) = (&NIBBLES.0[usize::from(p[0])], &NIBBLES.0[usize::from(p[1])]);
            for i in 0..16 {
                a[i] += ta[i];
                b[i] += tb[i];
            }
        }
        for &v in pairs.remainder() {
            let t = &NIBBLES.0[usize::from(v)];
            for i in 0..16 {
                a[i] += t[i];
            }
        }
        for i in 0..16 {
            nib[i] += u32::from(a[i]) + u32::from(b[i]);
        }
    }
    nib
}

/// 64-bit words per block (the last one half full).
const WORDS: usize = BLOCK_BYTES.div_ceil(8);
/// Words per array: a multiple of 16 (for [`popcount_sum`]) past the block, zeros after it.
const PADDED: usize = WORDS.next_multiple_of(16);
const _: () = assert!(PADDED > WORDS);
/// Valid bits of the last word (at its top).
const TAIL_BITS: usize = BLOCK_BITS as usize - 64 * (WORDS - 1);

/// Position `64 w + t` of `a`, shifted by `K` positions: bit `63 - t` of the result is position
/// `64 w + t + K`, the bits past word `w` coming from word `w + 1`.
#[inline(always)]
fn ahead<const K: u32>(a: &[u64; PADDED], w: usize) -> u64 {
    (a[w] << K) | (a[w + 1] >> (64 - K))
}

/// `s[w] &= ahead::<K>(nt, w)` for every word; then (runs starting in `s`, of them runs of ones).
#[inline(always)]
fn narrow<const K: u32>(
    s: &mut [u64; PADDED],
    nt: &[u64; PADDED],
    x: &[u64; PADDED],
) -> (u32, u32) {
    for (w, sw) in s[..WORDS].iter_mut().enumerate() {
        *sw &= ahead::<K>(nt, w);
    }
    (popcount_sum(|w| s[w]), popcount_sum(|w| s[w] & x[w]))
}

/// Sum of `f(w).count_ones()` over the words of a block. There is no population-count
/// instruction in the baseline x86-64 target, so the words are first added up bit-sliced in
/// carry-save adders (Harley and Seal): counter words of weights 1, 2, 4 and 8, and only the
/// carries out of the last, one word in 16, are counted.
#[inline(always)]
fn popcount_sum(f: impl Fn(usize) -> u64) -> u32 {
    /// (carry, sum) of three words, bit by bit.
    #[inline(always)]
    fn csa(a: u64, b: u64, c: u64) -> (u64, u64) {
        let u = a ^ b;
        ((a & b) | (u & c), u ^ c)
    }
    const _: () = assert!(PADDED % 16 == 0);
    let (mut ones, mut twos, mut fours, mut eights) = (0u64, 0u64, 0u64, 0u64);
    let mut sixteens = 0u32;
    for w in (0..PADDED).step_by(16) {
        let (ta, o) = csa(ones, f(w), f(w + 1));
        let (tb, o) = csa(o, f(w + 2), f(w + 3));
        let (fa, t) = csa(twos, ta, tb);
        let (ta, o) = csa(o, f(w + 4), f(w + 5));
        let (tb, o) = csa(o, f(w + 6), f(w + 7));
        let (fb, t) = csa(t, ta, tb);
        let (ea, fo) = csa(fours, fa, fb);
        let (ta, o) = csa(o, f(w + 8), f(w + 9));
        let (tb, o) = csa(o, f(w + 10), f(w + 11));
        let (fa, t) = csa(t, ta, tb);
        let (ta, o) = csa(o, f(w + 12), f(w + 13));
        let (tb, o) = csa(o, f(w + 14), f(w + 15));
        let (fb, t) = csa(t, ta, tb);
        let (eb, fo) = csa(fo, fa, fb);
        let (sx, e) = csa(eights, ea, eb);
        (ones, twos, fours, eights) = (o, t, fo, e);
        sixteens += sx.count_ones();
    }
    16 * sixteens
        + 8 * eights.count_ones()
        + 4 * fours.count_ones()
        + 2 * twos.count_ones()
        + ones.count_ones()
}

/// `a[w] & ahead::<K>(b, w)` for every word of the block, zeros after it.
#[inline(always)]
fn and_ahead<const K: u32>(a: &[u64; PADDED], b: &[u64; PADDED]) -> [u64; PADDED] {
    let mut out = [0u64; PADDED];
    for w in 0..WORDS {
        out[w] = a[w] & ahead::<K>(b, w);
    }
    out
}

/// Counts of runs of zeros (`[0]`) and ones (`[1]`) of length 1..=5 and 6+, and whether any run
/// is at least [`LONG_RUN`] long, with bits read most significant first within each byte, as
/// rngtest does.
///
/// Bit-parallel on the transitions: with `t[i] = a[i] != a[i-1]` (and `t` set at position 0 and
/// past the end), a run starts at every `i` with `t[i]`, and the run starting at `i` is at least
/// `L` long iff `t[i+1..i+L]` are all clear. Both colours share the transition words; a run is
/// one of ones iff `a[i]`. Each step is a branch-free pass over the 313 words of the block, and
/// the runs are counted with [`popcount_sum`]. The long-run test runs only when a cheap
/// necessary condition holds ([`may_have_long_run`]).
fn run_counts(block: &[u8; BLOCK_BYTES]) -> ([[u32; 6]; 2], bool) {
    // Big-endian words: position 64 w + t is bit 63 - t of word w. Bits past the end are zero.
    let mut x = [0u64; PADDED];
    let mut bytes = block.chunks_exact(8);
    for (xw, c) in x.iter_mut().zip(&mut bytes) {
        *xw = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    }
    let mut last = [0u8; 8];
    last[..bytes.remainder().len()].copy_from_slice(bytes.remainder());
    x[WORDS - 1] = u64::from_be_bytes(last);

    // nt = no transition: position i equals position i - 1. Clear at position 0 and from the end
    // of the block on (the padding words are zero), so that every run starts and ends inside.
    let mut nt = [0u64; PADDED];
    nt[0] = !(x[0] ^ (x[0] >> 1)) & !(1 << 63);
    for w in 1..WORDS {
        nt[w] = !(x[w] ^ ((x[w] >> 1) | (x[w - 1] << 63)));
    }
    const _: () = assert!(TAIL_BITS > 0 && TAIL_BITS < 64);
    let valid_tail = !(u64::MAX >> TAIL_BITS);
    nt[WORDS - 1] &= valid_tail;

    // s = starts of runs at least L long, for L = 1, then narrowed step by step.
    // The positions past the end are "transitions" too, but start no run of the block.
    let mut s = [0u64; PADDED];
    for w in 0..WORDS {
        s[w] = !nt[w];
    }
    s[WORDS - 1] &= valid_tail;
    let all1 = popcount_sum(|w| s[w]);
    // Runs alternate in colour: the first bit's colour has the odd one out.
    let ones1 = (all1 + (x[0] >> 63) as u32) / 2;
    // ge[c][L-1] = number of runs of colour c of length >= L.
    let mut ge = [[0u32; 6]; 2];
    let mut put = |l: usize, (all, ones): (u32, u32)| {
        ge[1][l] = ones;
        ge[0][l] = all - ones;
    };
    put(0, (all1, ones1));
    put(1, narrow::<1>(&mut s, &nt, &x));
    put(2, narrow::<2>(&mut s, &nt, &x));
    put(3, narrow::<3>(&mut s, &nt, &x));
    put(4, narrow::<4>(&mut s, &nt, &x));
    put(5, narrow::<5>(&mut s, &nt, &x));
    let mut counts = [[0u32; 6]; 2];
    for c in 0..2 {
        for l in 0..5 {
            counts[c][l] = ge[c][l] - ge[c][l + 1];
        }
        counts[c][5] = ge[c][5];
    }

    (counts, may_have_long_run(block) && has_long_run(&nt))
}

/// A necessary condition for a run of [`LONG_RUN`]: two neighbouring bytes both 0x00 or both 0xff
/// (any run of 16 + 7 bits or more covers two whole bytes). Rare in good data (about one block in
/// 13), and much cheaper than the exact test.
fn may_have_long_run(block: &[u8; BLOCK_BYTES]) -> bool {
    const _: () = assert!(LONG_RUN >= 16 + 7);
    let mut hit = 0u8;
    for (&a, &b) in block.iter().zip(&block[1..]) {
        hit |= u8::from(a == b) & u8::from(a.wrapping_add(1) <= 1);
    }
    hit != 0
}

/// Whether a run is at least [`LONG_RUN`] long: `nt` set at the 25 = 16 + 8 + 1 positions
/// `i..=i+24` means the 26 bits `i-1..=i+24` are equal (`i >= 1`, since position 0 is a
/// transition); found by doubling, a pass over the block per step.
fn has_long_run(nt: &[u64; PADDED]) -> bool {
    const _: () = assert!(LONG_RUN - 1 == 16 + 8 + 1);
    let y2 = and_ahead::<1>(nt, nt);
    let y4 = and_ahead::<2>(&y2, &y2);
    let y8 = and_ahead::<4>(&y4, &y4);
    let y16 = and_ahead::<8>(&y8, &y8);
    let y24 = and_ahead::<16>(&y16, &y8);
    let y25 = and_ahead::<24>(&y24, nt);
    y25.iter().fold(0, |acc, &v| acc | v) != 0
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
    use alloc::vec::Vec;

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

    /// The semantics of the implementation before rngtest's bit order was adopted: bits least
    /// significant first within a byte, the other tests as they are. Written out plainly.
    fn old_lsb_first_test_block(
        block: &[u8; BLOCK_BYTES],
        prev_word: &mut Option<u32>,
    ) -> BlockResult {
        let mut r = BlockResult::default();
        for w in block.chunks_exact(4) {
            let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            r.continuous |= *prev_word == Some(w);
            *prev_word = Some(w);
        }
        let mut nib = [0i64; 16];
        for &b in block.iter() {
            nib[usize::from(b & 15)] += 1;
            nib[usize::from(b >> 4)] += 1;
        }
        let x = 1600 * nib.iter().map(|c| c * c).sum::<i64>() - 2_500_000_000;
        r.poker = !(216 * 5000 < x && x < 4617 * 5000);
        let ones: u32 = block.iter().map(|b| b.count_ones()).sum();
        r.monobit = !(9725 < ones && ones < 10275);
        let bit = |i: usize| (block[i / 8] >> (i % 8)) & 1;
        let mut counts = [[0u32; 6]; 2];
        let mut i = 0;
        while i < BLOCK_BITS as usize {
            let mut j = i;
            while j < BLOCK_BITS as usize && bit(j) == bit(i) {
                j += 1;
            }
            counts[usize::from(bit(i))][(j - i).min(6) - 1] += 1;
            r.long_run |= j - i >= LONG_RUN as usize;
            i = j;
        }
        r.runs = counts.iter().any(|c| {
            c.iter()
                .zip(RUN_BOUNDS.iter())
                .any(|(&n, &(lo, hi))| n < lo || n > hi)
        });
        r
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

    /// Bits independently 1 with probability `ones / 256`.
    fn biased_block(seed: u64, ones: u32) -> [u8; BLOCK_BYTES] {
        let mut s = seed | 1;
        core::array::from_fn(|_| {
            (0..8).fold(0u8, |b, i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                b | (u8::from(((s >> 40) as u32 & 255) < ones) << i)
            })
        })
    }

    #[test]
    fn runs_match_reference_on_biased_and_structured_blocks() {
        // Biased bits make long runs (and the exact long-run path) common; the structured
        // blocks hit the long-run pre-filter (two 0x00 or 0xff bytes in a row) without a run
        // of 26, and runs that end exactly at the block's end.
        let mut blocks = Vec::new();
        for (seed, ones) in [(1, 128), (2, 200), (3, 56), (4, 240), (5, 16), (6, 250)] {
            blocks.push(biased_block(seed, ones));
        }
        let mut b = xorshift_block(8);
        b[100] = 0;
        b[101] = 0;
        b[99] = 0x01;
        b[102] = 0x80;
        blocks.push(b);
        let mut b = xorshift_block(9);
        b[BLOCK_BYTES - 2..].fill(0xff);
        b[BLOCK_BYTES - 3] = 0xfe;
        blocks.push(b);
        blocks.push(core::array::from_fn(|i| [0x55, 0xaa, 0x0f, 0xf0][i % 4]));
        blocks.push(core::array::from_fn(|i| (i / 3) as u8));
        for (i, blk) in blocks.iter().enumerate() {
            let (c, l) = runs_reference(blk);
            assert_eq!(run_counts(blk), (c, l >= LONG_RUN), "block {i}");
        }
        // Both outcomes behind the pre-filter occur.
        assert!(blocks.iter().any(|b| run_counts(b).1));
        assert!(blocks
            .iter()
            .any(|b| may_have_long_run(b) && !run_counts(b).1));
    }

    #[test]
    fn agrees_with_the_old_lsb_first_semantics_where_bit_order_does_not_matter() {
        let mut blocks: Vec<[u8; BLOCK_BYTES]> = (1..40).map(xorshift_block).collect();
        blocks.extend((0..12).map(|i| biased_block(100 + i, 100 + 5 * i as u32)));
        blocks.push([0; BLOCK_BYTES]);
        let mut rep = xorshift_block(41);
        rep.copy_within(1000..1004, 1004);
        blocks.push(rep);
        let (mut prev_new, mut prev_old, mut prev_rev) = (None, None, None);
        for (i, blk) in blocks.iter().enumerate() {
            let new = test_block(blk, &mut prev_new);
            let old = old_lsb_first_test_block(blk, &mut prev_old);
            // Monobit, poker (a permutation of the nibble values) and the continuous test do not
            // depend on the bit order.
            assert_eq!(
                (new.monobit, new.poker, new.continuous),
                (old.monobit, old.poker, old.continuous),
                "block {i}"
            );
            // The runs do, exactly by reversing the bits of every byte.
            let reversed: [u8; BLOCK_BYTES] = core::array::from_fn(|j| blk[j].reverse_bits());
            assert_eq!(
                test_block(&reversed, &mut prev_rev),
                old,
                "block {i} reversed"
            );
            // And on bytes that read the same both ways the runs are the same too.
            let palindromic: [u8; BLOCK_BYTES] =
                core::array::from_fn(|j| (blk[j] & 0xf0) | (blk[j] >> 4).reverse_bits() >> 4);
            assert_eq!(
                test_block(&palindromic, &mut None),
                old_lsb_first_test_block(&palindromic, &mut None),
                "block {i} palindromic"
            );
        }
    }

    #[test]
    fn monitor_results_do_not_depend_on_how_the_stream_is_cut() {
        let mut stream = Vec::new();
        for i in 0..9u64 {
            stream.extend_from_slice(&xorshift_block(200 + i));
        }
        stream.extend_from_slice(&biased_block(7, 230));
        // A word repeated across a block boundary, and a partial block at the end.
        stream.copy_within(2496..2500, 2500);
        stream.extend_from_slice(&[0x33; 1234]);
        let mut want = FipsCounters::default();
        let mut prev = None;
        for blk in stream.chunks_exact(BLOCK_BYTES) {
            let r = test_block(blk.try_into().unwrap(), &mut prev);
            want.successes += u64::from(r.passed());
            want.failures += u64::from(!r.passed());
            want.monobit += u64::from(r.monobit);
            want.poker += u64::from(r.poker);
            want.runs += u64::from(r.runs);
            want.long_run += u64::from(r.long_run);
            want.continuous += u64::from(r.continuous);
        }
        assert!(want.continuous >= 1 && want.successes >= 8 && want.failures >= 2);
        for cut in [1, 3, 2499, 2500, 2501, 4096, 7500, 30_000] {
            let mut m = FipsMonitor::new();
            for c in stream.chunks(cut) {
                m.feed(c);
            }
            assert_eq!(m.counters(), want, "cut every {cut} bytes");
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
