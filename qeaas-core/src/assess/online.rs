//! A cheap online min-entropy estimate per source: the most common value (6.3.1) and Markov
//! (6.3.3) estimates over consecutive windows of raw samples, the same formulas as the offline
//! assessment, at a cost of a few table lookups per byte.
//!
//! It is a monitor, not a gate and not a credit: the health tests gate, the configured claim
//! credits. Its purpose is to show, on a dashboard and in an alert, when the source's output
//! drifts below the entropy claimed for it (a bias that the RCT and APT cut-offs, tuned for
//! 2^-20 false alarms, let through).
//!
//! For byte samples the estimate is `min(MCV over bytes, 8 * min(MCV, Markov) over their bits)`
//! per byte; for bit samples `min(MCV, Markov)` per bit. Bits are read most significant first, as
//! `qeaasd capture` writes them and NIST's tools read them.

use super::Z_ALPHA;
use crate::health::SampleWidth;

/// Samples per window by default: 2^16 bytes (for bit samples, 2^16 bytes of 8 bits each).
pub const DEFAULT_WINDOW_BYTES: usize = 1 << 16;

/// For each byte, its seven inner transitions (most significant bit first): from a 0, 0 -> 0,
/// and 1 -> 0.
const INSIDE: [(u8, u8, u8); 256] = {
    let mut t = [(0u8, 0u8, 0u8); 256];
    let mut b = 0usize;
    while b < 256 {
        let mut j = 7;
        while j > 0 {
            let (from, to) = ((b >> j) & 1, (b >> (j - 1)) & 1);
            if from == 0 {
                t[b].0 += 1;
                if to == 0 {
                    t[b].1 += 1;
                }
            } else if to == 0 {
                t[b].2 += 1;
            }
            j -= 1;
        }
        b += 1;
    }
    t
};

/// Per-window counters.
#[derive(Clone, Debug)]
struct Counts {
    bytes: [u32; 256],
    n_bytes: u64,
    ones: u64,
    /// Transitions: from a 0 (c0), 0->0 (c00), from a 1 to a 0 (c10), over consecutive bits.
    c0: u64,
    c00: u64,
    c10: u64,
    last_bit: Option<u8>,
}

impl Counts {
    const fn new() -> Self {
        Self {
            bytes: [0; 256],
            n_bytes: 0,
            ones: 0,
            c0: 0,
            c00: 0,
            c10: 0,
            last_bit: None,
        }
    }
}

/// Online estimator of one source.
#[derive(Clone, Debug)]
pub struct OnlineEstimate {
    width: SampleWidth,
    window_bytes: usize,
    cur: Counts,
    last: Option<f64>,
    min: Option<f64>,
    windows: u64,
}

fn mcv_h(mode: u64, n: u64) -> f64 {
    let n = n as f64;
    let p = mode as f64 / n;
    let pu = (p + Z_ALPHA * libm::sqrt(p * (1.0 - p) / (n - 1.0))).min(1.0);
    -libm::log2(pu)
}

/// The Markov estimate per bit from transition counts, as [`super::estimators::markov`].
fn markov_h(c: &Counts, bits: u64) -> f64 {
    super::estimators::markov_per_bit(bits, bits - c.ones, c.c0, c.c00, c.c10)
}

impl OnlineEstimate {
    /// An estimator for samples of `width`, over windows of `window_bytes` bytes (at least 4096).
    pub fn new(width: SampleWidth, window_bytes: usize) -> Self {
        Self {
            width,
            window_bytes: window_bytes.max(4096),
            cur: Counts::new(),
            last: None,
            min: None,
            windows: 0,
        }
    }

    /// Counts `data` (raw samples as read from the device, before any conditioning).
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.window_bytes - self.cur.n_bytes as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            for &b in now {
                self.count_byte(b);
            }
            data = rest;
            if self.cur.n_bytes as usize == self.window_bytes {
                let h = self.window_estimate();
                self.last = Some(h);
                self.min = Some(self.min.map_or(h, |m: f64| m.min(h)));
                self.windows += 1;
                self.cur = Counts::new();
            }
        }
    }

    #[inline]
    fn count_byte(&mut self, b: u8) {
        let c = &mut self.cur;
        c.bytes[usize::from(b)] += 1;
        c.n_bytes += 1;
        c.ones += u64::from(b.count_ones());
        // Transitions between consecutive bits (most significant first): the seven inside the
        // byte from a table, and the one from the previous byte's last bit to this one's first.
        let (c0, c00, c10) = INSIDE[usize::from(b)];
        c.c0 += u64::from(c0);
        c.c00 += u64::from(c00);
        c.c10 += u64::from(c10);
        let first = b >> 7;
        match c.last_bit {
            Some(0) => {
                c.c0 += 1;
                c.c00 += u64::from(first == 0);
            }
            Some(_) => c.c10 += u64::from(first == 0),
            None => {}
        }
        c.last_bit = Some(b & 1);
    }

    fn window_estimate(&self) -> f64 {
        let c = &self.cur;
        let bits = c.n_bytes * 8;
        let ones_mode = c.ones.max(bits - c.ones);
        let per_bit = mcv_h(ones_mode, bits).min(markov_h(c, bits));
        match self.width {
            SampleWidth::Bit => per_bit,
            SampleWidth::Byte => {
                let mode = u64::from(c.bytes.iter().copied().max().unwrap_or(0));
                mcv_h(mode, c.n_bytes).min(8.0 * per_bit)
            }
        }
    }

    /// The estimate of the last complete window, in bits per sample.
    pub fn last(&self) -> Option<f64> {
        self.last
    }

    /// The lowest estimate of any window so far.
    pub fn min(&self) -> Option<f64> {
        self.min
    }

    /// Windows completed.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Forgets the partial window (the source was reopened: its samples are not continuous).
    pub fn restart(&mut self) {
        self.cur = Counts::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: u64, n: usize) -> alloc::vec::Vec<u8> {
        crate::test_noise(seed, n)
    }

    #[test]
    fn good_bytes_estimate_near_eight_bits() {
        let mut e = OnlineEstimate::new(SampleWidth::Byte, DEFAULT_WINDOW_BYTES);
        e.feed(&xorshift(3, 3 * DEFAULT_WINDOW_BYTES + 100));
        assert_eq!(e.windows(), 3);
        let h = e.last().unwrap();
        assert!(h > 7.3 && h <= 8.0, "{h}");
    }

    #[test]
    fn agrees_with_the_offline_estimators_on_one_window() {
        let data = xorshift(9, DEFAULT_WINDOW_BYTES);
        let mut e = OnlineEstimate::new(SampleWidth::Byte, DEFAULT_WINDOW_BYTES);
        e.feed(&data);
        let d = super::super::Dataset::new(&data, 8).unwrap();
        let bits = d.bitstring();
        let offline = super::super::estimators::most_common_value(&d.symbols, d.alphabet)
            .h
            .min(
                8.0 * super::super::estimators::markov(&bits)
                    .min(super::super::estimators::most_common_value(&bits, 2).h),
            );
        assert!((e.last().unwrap() - offline).abs() < 1e-9);
    }

    #[test]
    fn biased_bits_fall_below_the_claim() {
        // Every bit 1 with probability 3/4: about 0.415 bits per bit.
        let noise = xorshift(5, 2 * DEFAULT_WINDOW_BYTES);
        let biased: alloc::vec::Vec<u8> = noise.chunks(2).map(|p| p[0] | p[1]).collect();
        let mut e = OnlineEstimate::new(SampleWidth::Bit, 4096);
        e.feed(&biased);
        let h = e.min().unwrap();
        assert!(h < 0.5 && h > 0.3, "{h}");
    }
}
