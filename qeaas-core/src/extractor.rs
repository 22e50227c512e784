//! Toeplitz-hash randomness extractor for raw noise samples.
//!
//! The family `{ x -> T_s x }` of `k x n` Toeplitz matrices over GF(2), indexed by a seed `s` of
//! `n + k - 1` bits, is 2-universal, so by the Leftover Hash Lemma the output of a block whose
//! min-entropy is `h_in` is within statistical distance `2^-(h_in - k) / 2` of uniform. We credit an
//! output block with `min(k, h_in - 2 * SECURITY_BITS)` bits, so a block is only called full
//! entropy when it is within `2^-SECURITY_BITS` of uniform. This is the same construction as
//! ID Quantique's QuantisExtractor (which uses an unstructured matrix of the same shape); a
//! Toeplitz matrix needs only `n + k - 1` seed bits.
//!
//! Conventions: bit `j` of a byte string is `(x[j / 8] >> (j % 8)) & 1`; `T[i][j] = s[i - j + n - 1]`.
//! The seed is public and fixed per deployment; it must only be independent of the source.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Default input block: 1024 bits (128 bytes), as QuantisExtractor.
pub const DEFAULT_INPUT_BITS: usize = 1024;
/// Default output block: 768 bits (96 bytes).
pub const DEFAULT_OUTPUT_BITS: usize = 768;
/// Statistical distance target of the Leftover Hash Lemma crediting rule, as `-log2`.
pub const SECURITY_BITS: u32 = 32;

/// An extractor shape that the table implementation cannot handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidShape {
    /// Requested input bits.
    pub n: usize,
    /// Requested output bits.
    pub k: usize,
}

impl fmt::Display for InvalidShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "extractor {} -> {} bits: need input a multiple of 8, output a multiple of 64, 0 < output < input",
            self.n, self.k
        )
    }
}

/// Bits credited to one output block extracted from input with `h_in_millibits` of min-entropy.
pub fn credited_bits(h_in_millibits: u64, k: usize) -> u32 {
    let h_in = h_in_millibits / 1000;
    let margin = 2 * u64::from(SECURITY_BITS);
    h_in.saturating_sub(margin).min(k as u64) as u32
}

/// The default public seed: BLAKE2s in counter mode over a fixed label ("nothing up my sleeve").
pub fn default_seed(n: usize, k: usize) -> Vec<u8> {
    let bytes = (n + k - 1).div_ceil(8);
    let mut seed = Vec::with_capacity(bytes + 32);
    let mut ctr = 0u32;
    while seed.len() < bytes {
        let h = blake2s_simd::Params::new()
            .personal(b"qeaasTpz")
            .to_state()
            .update(b"qeaas Toeplitz extractor seed, version 1")
            .update(&ctr.to_le_bytes())
            .finalize();
        seed.extend_from_slice(h.as_bytes());
        ctr += 1;
    }
    seed.truncate(bytes);
    seed
}

fn seed_bit(seed: &[u8], i: usize) -> u64 {
    u64::from((seed[i / 8] >> (i % 8)) & 1)
}

/// Bit-by-bit Toeplitz product, straight from the definition. Slow; the reference that the table
/// implementation is tested against, and small enough for firmware.
pub fn toeplitz_reference(seed: &[u8], n: usize, k: usize, input: &[u8], out: &mut [u8]) {
    assert_eq!(input.len() * 8, n);
    assert_eq!(out.len() * 8, k);
    out.fill(0);
    for i in 0..k {
        let mut acc = 0u64;
        for j in 0..n {
            acc ^= seed_bit(seed, i + n - 1 - j) & u64::from((input[j / 8] >> (j % 8)) & 1);
        }
        out[i / 8] |= (acc as u8) << (i % 8);
    }
}

/// Table-driven Toeplitz extractor: for every 4-bit group of input positions and each of its 16
/// values, the XOR of the matrix columns it selects is precomputed, so one block costs `n / 4`
/// lookups of `k / 64` words. Memory: `n / 4 * 16 * k / 8` bytes (384 KiB for 1024 -> 768), small
/// enough to stay in cache; a byte-indexed table (3 MiB) measured slower for its cache misses.
#[derive(Clone)]
pub struct Toeplitz {
    n: usize,
    k: usize,
    words: usize,
    table: Vec<u64>,
}

impl fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Toeplitz")
            .field("n", &self.n)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// The default 1024 -> 768 extractor with the default seed.
    pub fn default_shape() -> Self {
        let seed = default_seed(DEFAULT_INPUT_BITS, DEFAULT_OUTPUT_BITS);
        Self::new(&seed, DEFAULT_INPUT_BITS, DEFAULT_OUTPUT_BITS).expect("default shape is valid")
    }

    /// An `n -> k` extractor with `seed` (at least `n + k - 1` bits).
    pub fn new(seed: &[u8], n: usize, k: usize) -> Result<Self, InvalidShape> {
        if n % 8 != 0 || k % 64 != 0 || k == 0 || k >= n || seed.len() * 8 < n + k - 1 {
            return Err(InvalidShape { n, k });
        }
        let words = k / 64;
        // Column j of T is the k-bit window of the seed starting at bit n - 1 - j.
        let column = |j: usize| -> Vec<u64> {
            let mut c = vec![0u64; words];
            for i in 0..k {
                c[i / 64] |= seed_bit(seed, n - 1 - j + i) << (i % 64);
            }
            c
        };
        let groups = n / 4;
        let mut table = vec![0u64; groups * 16 * words];
        for g in 0..groups {
            let cols: Vec<Vec<u64>> = (0..4).map(|t| column(4 * g + t)).collect();
            let base = g * 16 * words;
            for v in 1..16usize {
                // Entry v = entry (v without its lowest bit) ^ column of that bit.
                let low = v.trailing_zeros() as usize;
                let prev = v & (v - 1);
                for w in 0..words {
                    table[base + v * words + w] = table[base + prev * words + w] ^ cols[low][w];
                }
            }
        }
        Ok(Self { n, k, words, table })
    }

    /// Input block size in bytes.
    pub fn input_bytes(&self) -> usize {
        self.n / 8
    }

    /// Output block size in bytes.
    pub fn output_bytes(&self) -> usize {
        self.k / 8
    }

    /// Output bits.
    pub fn output_bits(&self) -> usize {
        self.k
    }

    /// Extracts one block. `input` is `n / 8` bytes, `out` is `k / 8` bytes.
    pub fn extract(&self, input: &[u8], out: &mut [u8]) {
        assert_eq!(input.len(), self.input_bytes());
        assert_eq!(out.len(), self.output_bytes());
        // Twelve accumulators for the default shape; the fixed-size path lets the compiler keep
        // them in registers.
        if self.words == DEFAULT_OUTPUT_BITS / 64 {
            let mut acc = [0u64; DEFAULT_OUTPUT_BITS / 64];
            self.accumulate(input, &mut acc);
            for (o, a) in out.chunks_exact_mut(8).zip(acc.iter()) {
                o.copy_from_slice(&a.to_le_bytes());
            }
        } else {
            let mut acc = vec![0u64; self.words];
            self.accumulate(input, &mut acc);
            for (o, a) in out.chunks_exact_mut(8).zip(acc.iter()) {
                o.copy_from_slice(&a.to_le_bytes());
            }
        }
    }

    #[inline]
    fn accumulate(&self, input: &[u8], acc: &mut [u64]) {
        let w = acc.len();
        for (p, &v) in input.iter().enumerate() {
            // Input bit j is bit j % 8 of byte j / 8: the low nibble holds positions 8p..8p+3.
            let lo = &self.table[((2 * p) * 16 + usize::from(v & 15)) * w..][..w];
            let hi = &self.table[((2 * p + 1) * 16 + usize::from(v >> 4)) * w..][..w];
            for ((a, l), h) in acc.iter_mut().zip(lo).zip(hi) {
                *a ^= l ^ h;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(seed: u64, len: usize) -> Vec<u8> {
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

    #[test]
    fn table_matches_reference_small() {
        let (n, k) = (128, 64);
        let seed = pseudo(5, (n + k - 1usize).div_ceil(8));
        let t = Toeplitz::new(&seed, n, k).unwrap();
        for i in 0..50 {
            let x = pseudo(100 + i, n / 8);
            let mut a = vec![0u8; k / 8];
            let mut b = vec![0u8; k / 8];
            t.extract(&x, &mut a);
            toeplitz_reference(&seed, n, k, &x, &mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn default_shape_matches_reference() {
        let t = Toeplitz::default_shape();
        let seed = default_seed(1024, 768);
        for i in 0..3 {
            let x = pseudo(7 + i, 128);
            let mut a = [0u8; 96];
            let mut b = [0u8; 96];
            t.extract(&x, &mut a);
            toeplitz_reference(&seed, 1024, 768, &x, &mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn is_linear_over_gf2() {
        let t = Toeplitz::default_shape();
        let (x, y) = (pseudo(1, 128), pseudo(2, 128));
        let xy: Vec<u8> = x.iter().zip(&y).map(|(a, b)| a ^ b).collect();
        let (mut ox, mut oy, mut oxy) = ([0u8; 96], [0u8; 96], [0u8; 96]);
        t.extract(&x, &mut ox);
        t.extract(&y, &mut oy);
        t.extract(&xy, &mut oxy);
        for i in 0..96 {
            assert_eq!(ox[i] ^ oy[i], oxy[i]);
        }
        let mut zero = [1u8; 96];
        t.extract(&[0u8; 128], &mut zero);
        assert_eq!(zero, [0u8; 96]);
    }

    #[test]
    fn crediting_follows_leftover_hash_lemma() {
        // Full-entropy input: 1024 bits in, 768 credited.
        assert_eq!(credited_bits(1024 * 1000, 768), 768);
        // 0.5 bit per bit: 512 - 64 = 448.
        assert_eq!(credited_bits(512 * 1000, 768), 448);
        // Almost nothing in: nothing credited.
        assert_eq!(credited_bits(60 * 1000, 768), 0);
    }

    #[test]
    fn rejects_bad_shapes() {
        let seed = default_seed(1024, 768);
        assert!(Toeplitz::new(&seed, 1024, 1024).is_err());
        assert!(Toeplitz::new(&seed, 1020, 768).is_err());
        assert!(Toeplitz::new(&seed[..10], 1024, 768).is_err());
    }
}
