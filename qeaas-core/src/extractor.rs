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

/// Table-driven Toeplitz extractor.
///
/// Input bit `8 p + t` (bit `t` of byte `p`) selects column `8 p + t`, the `k`-bit window of the
/// seed starting at bit `n - 1 - 8 p - t = 8 q + 7 - t` with `q = n / 8 - 1 - p`. So for every
/// byte value `b` the XOR of the columns its bits select, for any byte position, is a window
/// starting at bit `8 q` of one bit string `R_b = XOR over set bits t of (seed >> (7 - t))`:
/// the Toeplitz structure makes all byte positions share one row per value. The table holds
/// `R_b` for the 256 byte values, `n / 8 + k / 8 - 1` bytes each (56 KiB for 1024 -> 768, near
/// the first-level cache), and one block costs `n / 8` lookups, each an XOR of `k / 8` bytes read
/// at byte offset `q` of a row. Earlier versions indexed a separate table per input position:
/// 3 MiB per byte (cache misses) or 384 KiB per nibble, both measured slower.
#[derive(Clone)]
pub struct Toeplitz {
    n: usize,
    k: usize,
    /// Bytes per row: `n / 8 + k / 8 - 1`.
    stride: usize,
    table: Vec<u8>,
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
        let stride = n / 8 + k / 8 - 1;
        // shifted[t]: bit m is seed bit m + 7 - t, for m < 8 * stride = n + k - 8 (the last one
        // read is seed bit n + k - 2, the last of the n + k - 1).
        let shifted: Vec<Vec<u8>> = (0..8)
            .map(|t| {
                let mut row = vec![0u8; stride];
                for m in 0..8 * stride {
                    row[m / 8] |= (seed_bit(seed, m + 7 - t) as u8) << (m % 8);
                }
                row
            })
            .collect();
        let mut table = vec![0u8; 256 * stride];
        for b in 1..256usize {
            // Row b = row (b without its lowest set bit) ^ the seed shifted for that bit.
            let low = b.trailing_zeros() as usize;
            let prev = b & (b - 1);
            for m in 0..stride {
                table[b * stride + m] = table[prev * stride + m] ^ shifted[low][m];
            }
        }
        Ok(Self {
            n,
            k,
            stride,
            table,
        })
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
        // The output bits are numbered like the rows' bits, so the rows are XORed as bytes. For
        // the default shape the accumulator has a fixed size and lives in vector registers.
        if let Ok(out) = <&mut [u8; DEFAULT_OUTPUT_BITS / 8]>::try_from(&mut *out) {
            let mut acc = [0u8; DEFAULT_OUTPUT_BITS / 8];
            self.accumulate(input, &mut acc);
            *out = acc;
        } else {
            out.fill(0);
            self.accumulate(input, out);
        }
    }

    #[inline(always)]
    fn accumulate(&self, input: &[u8], acc: &mut [u8]) {
        let last = input.len() - 1;
        for (p, &b) in input.iter().enumerate() {
            // Byte p's window starts at byte q = n / 8 - 1 - p of row b.
            let row = &self.table[usize::from(b) * self.stride + (last - p)..][..acc.len()];
            for (a, r) in acc.iter_mut().zip(row) {
                *a ^= r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_reference_small() {
        let (n, k) = (128, 64);
        let seed = crate::test_noise(5, (n + k - 1usize).div_ceil(8));
        let t = Toeplitz::new(&seed, n, k).unwrap();
        for i in 0..50 {
            let x = crate::test_noise(100 + i, n / 8);
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
            let x = crate::test_noise(7 + i, 128);
            let mut a = [0u8; 96];
            let mut b = [0u8; 96];
            t.extract(&x, &mut a);
            toeplitz_reference(&seed, 1024, 768, &x, &mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn every_column_matches_reference() {
        // Unit vectors pick out single columns: every input position, both tables' edges.
        let (n, k) = (256, 192);
        let seed = crate::test_noise(9, (n + k - 1usize).div_ceil(8));
        let t = Toeplitz::new(&seed, n, k).unwrap();
        for j in 0..n {
            let mut x = vec![0u8; n / 8];
            x[j / 8] = 1 << (j % 8);
            let (mut a, mut b) = (vec![0u8; k / 8], vec![0u8; k / 8]);
            t.extract(&x, &mut a);
            toeplitz_reference(&seed, n, k, &x, &mut b);
            assert_eq!(a, b, "column {j}");
        }
    }

    #[test]
    fn other_shapes_match_reference() {
        // Including k = 768 with another n (the fixed-size accumulator) and the smallest shapes.
        for (i, &(n, k)) in [(72, 64), (136, 128), (512, 256), (2048, 768), (1024, 960)]
            .iter()
            .enumerate()
        {
            let seed = crate::test_noise(300 + i as u64, (n + k - 1usize).div_ceil(8));
            let t = Toeplitz::new(&seed, n, k).unwrap();
            for r in 0..4 {
                let x = crate::test_noise(1000 * i as u64 + r, n / 8);
                // Garbage in `out` must not leak into the result.
                let (mut a, mut b) = (vec![0xa5u8; k / 8], vec![0u8; k / 8]);
                t.extract(&x, &mut a);
                toeplitz_reference(&seed, n, k, &x, &mut b);
                assert_eq!(a, b, "{n} -> {k}, input {r}");
            }
        }
    }

    #[test]
    fn is_linear_over_gf2() {
        let t = Toeplitz::default_shape();
        let (x, y) = (crate::test_noise(1, 128), crate::test_noise(2, 128));
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
