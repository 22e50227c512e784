//! The four counting estimators of SP 800-90B section 6.3: most common value (6.3.1) and, for
//! binary data only, collision (6.3.2), Markov (6.3.3) and compression (6.3.4).
//!
//! Each returns min-entropy per sample. Where the standard leaves a choice open (the search for
//! `p`, rounding), we do what NIST's reference implementation does, so that a lab sees the same
//! figures from both.

use alloc::vec;

use super::Z_ALPHA;

/// Most common value estimate (6.3.1) over symbols `0..k`; also returns the mode's count.
pub fn most_common_value(s: &[u8], k: usize) -> McvResult {
    let mut counts = vec![0u64; k.max(256)];
    for &x in s {
        counts[usize::from(x)] += 1;
    }
    let mode = counts.iter().copied().max().unwrap_or(0);
    let n = s.len() as f64;
    let p_hat = mode as f64 / n;
    let p_u = (p_hat + Z_ALPHA * libm::sqrt(p_hat * (1.0 - p_hat) / (n - 1.0))).min(1.0);
    McvResult {
        mode,
        p_hat,
        p_u,
        h: -libm::log2(p_u),
    }
}

/// What the MCV estimate found (the reference tool reports all four).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct McvResult {
    /// Count of the most common symbol.
    pub mode: u64,
    /// Its proportion.
    pub p_hat: f64,
    /// Upper 99% confidence bound on it.
    pub p_u: f64,
    /// `-log2(p_u)`.
    pub h: f64,
}

/// Collision estimate (6.3.2) of a bit string (one bit per byte, 0 or 1).
pub fn collision(s: &[u8]) -> f64 {
    let len = s.len();
    let (mut i, mut v, mut sum_sq) = (0usize, 0u64, 0.0f64);
    // Walk the sequence collision by collision: two equal bits take 2 samples, otherwise the
    // third sample necessarily collides with one of the first two.
    while i + 1 < len {
        let t = if s[i] == s[i + 1] {
            2
        } else if i + 2 < len {
            3
        } else {
            break;
        };
        v += 1;
        sum_sq += (t * t) as f64;
        i += t;
    }
    let x = i as f64 / v as f64;
    let sigma = libm::sqrt((sum_sq - i as f64 * x) / (v as f64 - 1.0));
    let x = (x - Z_ALPHA * sigma / libm::sqrt(v as f64)).max(2.0);
    // For binary data the expected collision time is E = 2 + 2 p (1 - p) with p the most likely
    // bit's probability, so p = 1/2 + sqrt(5/4 - X/2); beyond X = 2.5 there is no root and the
    // standard says to assume full entropy.
    if x < 2.5 {
        -libm::log2(0.5 + libm::sqrt(1.25 - 0.5 * x))
    } else {
        1.0
    }
}

/// Markov estimate (6.3.3) of a bit string: the most likely 128-bit sequence under the fitted
/// first-order model, per bit.
pub fn markov(s: &[u8]) -> f64 {
    let len = s.len();
    let (mut c0, mut c00, mut c10) = (0u64, 0u64, 0u64);
    for w in s.windows(2) {
        if w[0] == 0 {
            c0 += 1;
            c00 += u64::from(w[1] == 0);
        } else {
            c10 += u64::from(w[1] == 0);
        }
    }
    let zeros = c0 + u64::from(s[len - 1] == 0);
    markov_per_bit(len as u64, zeros, c0, c00, c10)
}

/// The Markov estimate per bit (SP 800-90B 6.3.3) from the counts of a sequence of `bits` bits:
/// its `zeros`, and over its `bits - 1` transitions, `c0` from a 0 (`c00` of them to a 0) and
/// `c10` from a 1 to a 0. The offline estimator and the online monitor both end here.
pub(crate) fn markov_per_bit(bits: u64, zeros: u64, c0: u64, c00: u64, c10: u64) -> f64 {
    let c1 = (bits - 1) - c0;
    let (p00, p01) = if c0 > 0 {
        let p = c00 as f64 / c0 as f64;
        (p, 1.0 - p)
    } else {
        (0.0, 0.0)
    };
    let (p10, p11) = if c1 > 0 {
        let p = c10 as f64 / c1 as f64;
        (p, 1.0 - p)
    } else {
        (0.0, 0.0)
    };
    let p0 = zeros as f64 / bits as f64;
    let p1 = 1.0 - p0;
    let l = libm::log2;
    let mut h = 128.0f64;
    // The six candidate most-likely sequences of 128 bits (00..0, 0101.., 011..1, 100..0,
    // 1010.., 11..1), each only where its transitions have non-zero probability.
    let candidates = [
        (p00 > 0.0, -l(p0) - 127.0 * l(p00)),
        (
            p01 > 0.0 && p10 > 0.0,
            -l(p0) - 64.0 * l(p01) - 63.0 * l(p10),
        ),
        (p01 > 0.0 && p11 > 0.0, -l(p0) - l(p01) - 126.0 * l(p11)),
        (p10 > 0.0 && p00 > 0.0, -l(p1) - l(p10) - 126.0 * l(p00)),
        (
            p10 > 0.0 && p01 > 0.0,
            -l(p1) - 64.0 * l(p10) - 63.0 * l(p01),
        ),
        (p11 > 0.0, -l(p1) - 127.0 * l(p11)),
    ];
    for (valid, e) in candidates {
        if valid && e < h {
            h = e;
        }
    }
    (h / 128.0).min(1.0)
}

/// Kahan-compensated sum: the compression estimate adds a million terms of very different size.
#[derive(Default)]
struct Kahan {
    sum: f64,
    comp: f64,
}

impl Kahan {
    fn add(&mut self, x: f64) {
        let y = x - self.comp;
        let t = self.sum + y;
        self.comp = (t - self.sum) - y;
        self.sum = t;
    }
}

const COMP_B: usize = 6;
const COMP_D: usize = 1000;

/// `G(z)` of 6.3.4 step 7: the expected `log2` distance to the previous occurrence of a block
/// that occurs with probability `z`, averaged over the test blocks. Terms are summed until they
/// underflow, as the reference implementation does.
fn compression_g(z: f64, d: usize, num_blocks: usize, log2_table: &[f64]) -> f64 {
    let v = (num_blocks - d) as f64;
    let b_term = 1.0 - z;
    let mut b_i = b_term;
    let mut a = Kahan::default();
    for i in 2..=d {
        a.add(log2_table[i] * b_i);
        b_i *= b_term;
    }
    let a_d1 = a.sum;
    let mut first = Kahan::default();
    let mut truncated = false;
    for i in d + 1..num_blocks {
        let ai = log2_table[i] * b_i;
        a.add(ai);
        let scaled = (num_blocks - i) as f64 * ai;
        // Stop where the terms leave the normal range: what follows cannot move a sum of order
        // one in double precision, and subnormal arithmetic is a hundred times slower.
        if scaled >= f64::MIN_POSITIVE {
            first.add(scaled);
        } else {
            truncated = true;
            break;
        }
        b_i *= b_term;
    }
    first.add((num_blocks - d) as f64 * a_d1);
    if !truncated {
        a.add(log2_table[num_blocks] * b_i);
    }
    z * (z * first.sum + (a.sum - a_d1)) / v
}

fn compression_expectation(p: f64, d: usize, n: usize, t: &[f64]) -> f64 {
    let alph = (1usize << COMP_B) as f64;
    let q = (1.0 - p) / (alph - 1.0);
    compression_g(p, d, n, t) + (alph - 1.0) * compression_g(q, d, n, t)
}

/// Compression estimate (6.3.4) of a bit string, or `None` with too little data (it needs more
/// than 6000 bits).
pub fn compression(s: &[u8]) -> Option<f64> {
    let num_blocks = s.len() / COMP_B;
    if num_blocks <= COMP_D {
        return None;
    }
    let block = |i: usize| {
        s[i * COMP_B..(i + 1) * COMP_B]
            .iter()
            .fold(0usize, |acc, &b| (acc << 1) | usize::from(b & 1))
    };
    let mut dict = [0usize; 1 << COMP_B];
    for i in 0..COMP_D {
        dict[block(i)] = i + 1;
    }
    let (mut x, mut x2) = (Kahan::default(), Kahan::default());
    for i in COMP_D..num_blocks {
        let b = block(i);
        let l = libm::log2((i + 1 - dict[b]) as f64);
        x.add(l);
        x2.add(l * l);
        dict[b] = i + 1;
    }
    let v = (num_blocks - COMP_D) as f64;
    let mean = x.sum / v;
    let sigma = 0.5907 * libm::sqrt(x2.sum / (v - 1.0) - mean * mean);
    let target = mean - Z_ALPHA * sigma / libm::sqrt(v);

    let mut log2_table = vec![0.0f64; num_blocks + 1];
    for (i, t) in log2_table.iter_mut().enumerate().skip(1) {
        *t = libm::log2(i as f64);
    }
    let f = |p: f64| compression_expectation(p, COMP_D, num_blocks, &log2_table);
    let lo = 1.0 / (1usize << COMP_B) as f64;
    // The expectation falls as p rises; at p = 2^-6 it is the largest it can be. If the observed
    // mean is above even that, the data looks like full entropy.
    let p = if f(lo) > target {
        super::bisect_decreasing(f, target, lo, 1.0)
    } else {
        lo
    };
    Some(if p > lo {
        -libm::log2(p) / COMP_B as f64
    } else {
        1.0
    })
}
