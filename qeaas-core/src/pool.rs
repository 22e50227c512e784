//! The entropy pool: one hash state, modelled on Linux `drivers/char/random.c` (5.18+).
//!
//! Three verbs, kept apart as in random.c:
//!
//! * [`Pool::mix`] absorbs bytes. It never changes the credit.
//! * [`Pool::credit`] records how much min-entropy the bytes mixed so far carried, as assessed by
//!   the health-tested source. It is pure accounting.
//! * [`Pool::extract`] produces at most 32 bytes and ratchets the state.
//!
//! Two conditioning functions, chosen per pool ([`PoolHash`]):
//!
//! * **SHA-256 Hash_df** (the default), a *vetted* conditioning component of SP 800-90B
//!   3.1.5.1.1 (Hash_df of SP 800-90A 10.3.1 with an approved hash). Every output is
//!
//!   ```text
//!   out = SHA-256(0x01 || 0x00000100 || "qeaas pool sha256 v1" || M)  = Hash_df(label || M, 256)
//!   ```
//!
//!   where `M` is everything mixed so far, each earlier extraction's ratchet padding included.
//!   The state is the SHA-256 chaining value `h` and the unprocessed tail `B` of `M` (less than
//!   a block); `out` finalizes a copy of them. The ratchet then appends zero bytes up to the next
//!   block boundary (1 to 64 of them), so that `B` is pushed through a compression:
//!   `h' = SHA-256-compress(h, B || 0...)`. Where SHA-NI is present the `sha2` crate uses it.
//! * **BLAKE2s** (`"blake2s"`), the design the pool had first, which is not a vetted component:
//!
//!   ```text
//!   out = BLAKE2s-final(h, B)                  -- "finalize a copy of the state"
//!   h'  = BLAKE2s-compress(h, B || 0-padding)  -- pad the buffer to a block and absorb one
//!                                                 ratchet byte, which forces B out of the buffer
//!   ```
//!
//! In both, `out` and `h'` are outputs of the compression function on the same chaining value
//! and different final blocks, so `out` says nothing about `h'` (forward secrecy of the pool
//! against its readers); and `h` cannot be recomputed from `h'` (the compression function is
//! one-way), so a later compromise of the pool state does not reveal `out` (backtracking
//! resistance). The state and every output temporary are zeroized.
//!
//! Accounting. The pool holds at most 256 bits (one chaining value). Full-entropy output needs
//! `h_in >= n_out + 64` (SP 800-90B 3.1.5.1.2 gives `Output_Entropy(320, 256, 256, 320)` =
//! 256 - 2^-60 bits; see `assess::conditioning`), so 32 full-entropy bytes need 320 credited
//! bits. An extraction of `n` bytes needs `8 n + 64` credited bits and consumes them; nothing is
//! ever extracted on credit the pool does not have. For SHA-256 that is the vetted rule of
//! 3.1.5.1.2. For BLAKE2s, a non-vetted function, 3.1.5.2 caps a certified product's claim at
//! `0.999 n_out` per output and requires testing the conditioned output: the same accounting
//! runs, but only the SHA-256 pool's output may be called full entropy in a certification.

use core::fmt;
use core::str::FromStr;
use zeroize::Zeroize;

/// Largest single extraction in bytes (one hash output).
pub const MAX_EXTRACT: usize = 32;
/// Entropy the hash state can hold, in bits.
pub const POOL_BITS: u32 = 256;
/// Extra input entropy per extraction required by SP 800-90B 3.1.5.1.2 for full-entropy output.
pub const CONDITIONING_MARGIN_BITS: u32 = 64;
/// Credit is capped here: more input entropy than this cannot be retained in the state.
pub const MAX_CREDIT_BITS: u32 = POOL_BITS + CONDITIONING_MARGIN_BITS;

const BLOCK: u64 = 64;
const PERSONAL: &[u8; 8] = b"qeaaspl1";
/// Hash_df's counter (1) and output length in bits (256, big-endian), then our label.
const SHA256_PREFIX: &[u8] = b"\x01\x00\x00\x01\x00qeaas pool sha256 v1";

/// The pool's conditioning function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PoolHash {
    /// SHA-256 Hash_df: vetted (SP 800-90B 3.1.5.1.1); the default, and the faster of the two
    /// where the CPU has SHA instructions (`scripts/bench-core.sh`).
    #[default]
    Sha256,
    /// BLAKE2s: not vetted (3.1.5.2 applies to a certification).
    Blake2s,
}

impl PoolHash {
    /// The configuration name.
    pub const fn name(self) -> &'static str {
        match self {
            PoolHash::Sha256 => "sha256",
            PoolHash::Blake2s => "blake2s",
        }
    }

    /// True for a vetted conditioning component of SP 800-90B 3.1.5.1.1.
    pub const fn vetted(self) -> bool {
        matches!(self, PoolHash::Sha256)
    }
}

/// A conditioner name that is neither `sha256` nor `blake2s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPoolHash;

impl fmt::Display for UnknownPoolHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown conditioner: expected \"sha256\" or \"blake2s\"")
    }
}

impl FromStr for PoolHash {
    type Err = UnknownPoolHash;
    fn from_str(s: &str) -> Result<Self, UnknownPoolHash> {
        match s {
            "sha256" => Ok(PoolHash::Sha256),
            "blake2s" => Ok(PoolHash::Blake2s),
            _ => Err(UnknownPoolHash),
        }
    }
}

/// The pool cannot back the requested extraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotEnoughEntropy {
    /// Bits the extraction needed.
    pub needed_bits: u32,
    /// Bits credited.
    pub credited_bits: u32,
}

impl fmt::Display for NotEnoughEntropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not enough entropy: need {} bits, pool holds {}",
            self.needed_bits, self.credited_bits
        )
    }
}

const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// A streaming SHA-256 whose chaining value and tail we own, so that both can be ratcheted and
/// wiped (the `sha2` crate's hasher does not expose its buffer). Compression is `sha2`'s, with
/// SHA-NI where the CPU has it.
#[derive(Clone)]
struct Sha256State {
    h: [u32; 8],
    buf: [u8; 64],
    /// Bytes absorbed in total (the tail is `len % 64` bytes of `buf`).
    len: u64,
}

impl Sha256State {
    fn new() -> Self {
        let mut s = Self {
            h: SHA256_IV,
            buf: [0; 64],
            len: 0,
        };
        s.update(SHA256_PREFIX);
        s
    }

    // generic-array 0.14 marks itself deprecated in favour of 1.x, which sha2 0.10 does not use.
    #[allow(deprecated)]
    fn compress(h: &mut [u32; 8], blocks: &[u8]) {
        use sha2::digest::generic_array::GenericArray;
        debug_assert_eq!(blocks.len() % 64, 0);
        // One block per call: `sha2` takes a slice of `GenericArray`s, which a byte slice can
        // only be viewed as one block at a time without `unsafe`.
        for b in blocks.chunks_exact(64) {
            sha2::compress256(h, core::slice::from_ref(GenericArray::from_slice(b)));
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        let used = (self.len % BLOCK) as usize;
        self.len += data.len() as u64;
        if used > 0 {
            let take = (64 - used).min(data.len());
            self.buf[used..used + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            if used + take < 64 {
                return;
            }
            Self::compress(&mut self.h, &self.buf);
        }
        let whole = data.len() / 64 * 64;
        if whole > 0 {
            Self::compress(&mut self.h, &data[..whole]);
        }
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
    }

    /// Writes SHA-256 of everything absorbed to `out`, then ratchets: appends 1 to 64 zero bytes
    /// so that the tail is compressed into the chaining value.
    ///
    /// Both compressions read the same tail, so it is padded in place in `buf`, not copied: the
    /// ratchet's block is `B || 0...`, and the final block differs from it only in the `0x80`
    /// marker and the length. `buf` is wiped with a plain fill: it is part of the live state, so
    /// the compiler cannot drop the stores (`Drop` wipes it again, volatile).
    fn extract_and_ratchet(&mut self, out: &mut [u8; 32]) {
        let used = (self.len % BLOCK) as usize;
        let bits = self.len.wrapping_mul(8).to_be_bytes();
        let mut h = self.h;
        self.buf[used..].fill(0);
        Self::compress(&mut self.h, &self.buf);
        self.len += BLOCK - used as u64;
        self.buf[used] = 0x80;
        if used >= 56 {
            Self::compress(&mut h, &self.buf);
            self.buf.fill(0);
        }
        self.buf[56..].copy_from_slice(&bits);
        Self::compress(&mut h, &self.buf);
        self.buf.fill(0);
        for (o, w) in out.chunks_exact_mut(4).zip(&h) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        h.zeroize();
    }
}

impl Drop for Sha256State {
    fn drop(&mut self) {
        self.h.zeroize();
        self.buf.zeroize();
    }
}

/// The hash state of either conditioning function.
#[derive(Clone)]
enum State {
    Sha256(Sha256State),
    Blake2s(blake2s_simd::State),
}

fn fresh_blake2s() -> blake2s_simd::State {
    blake2s_simd::Params::new().personal(PERSONAL).to_state()
}

impl State {
    fn new(hash: PoolHash) -> Self {
        match hash {
            PoolHash::Sha256 => State::Sha256(Sha256State::new()),
            PoolHash::Blake2s => State::Blake2s(fresh_blake2s()),
        }
    }
}

/// One entropy pool.
#[derive(Clone)]
pub struct Pool {
    state: State,
    credit_bits: u32,
    extractions: u64,
}

impl fmt::Debug for Pool {
    // Never print the state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("hash", &self.hash())
            .field("credit_bits", &self.credit_bits)
            .field("extractions", &self.extractions)
            .finish_non_exhaustive()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

impl Pool {
    /// An empty pool with no credit and the default conditioning function.
    pub fn new() -> Self {
        Self::with_hash(PoolHash::default())
    }

    /// An empty pool with no credit conditioned by `hash`.
    pub fn with_hash(hash: PoolHash) -> Self {
        Self {
            state: State::new(hash),
            credit_bits: 0,
            extractions: 0,
        }
    }

    /// The conditioning function.
    pub fn hash(&self) -> PoolHash {
        match self.state {
            State::Sha256(_) => PoolHash::Sha256,
            State::Blake2s(_) => PoolHash::Blake2s,
        }
    }

    /// Absorbs `data` into the state. Never credits.
    pub fn mix(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha256(s) => s.update(data),
            State::Blake2s(s) => {
                s.update(data);
            }
        }
    }

    /// Records that the data mixed so far carried `bits` more bits of min-entropy. Credit beyond
    /// [`MAX_CREDIT_BITS`] is dropped (the state cannot hold it); returns the bits accepted.
    pub fn credit(&mut self, bits: u32) -> u32 {
        let before = self.credit_bits;
        self.credit_bits = before.saturating_add(bits).min(MAX_CREDIT_BITS);
        self.credit_bits - before
    }

    /// Forgets all credit (a source that contributed to it failed). The state keeps what was
    /// mixed: mixing never hurts, only crediting can.
    pub fn discard_credit(&mut self) {
        self.credit_bits = 0;
    }

    /// Bits credited and not yet extracted.
    pub fn credit_bits(&self) -> u32 {
        self.credit_bits
    }

    /// Full-entropy bytes the pool can hand out now.
    pub fn available_bytes(&self) -> usize {
        let bits = self.credit_bits.saturating_sub(CONDITIONING_MARGIN_BITS);
        (bits / 8).min(POOL_BITS / 8) as usize
    }

    /// Extractions performed.
    pub fn extractions(&self) -> u64 {
        self.extractions
    }

    /// Fills `out` (1 to 32 bytes) and ratchets the state; see the module documentation for the
    /// formula. Fails, changing nothing, unless `8 * out.len() + 64` bits are credited.
    pub fn extract(&mut self, out: &mut [u8]) -> Result<(), NotEnoughEntropy> {
        assert!(
            !out.is_empty() && out.len() <= MAX_EXTRACT,
            "extract 1..=32 bytes"
        );
        let needed = 8 * out.len() as u32 + CONDITIONING_MARGIN_BITS;
        if self.credit_bits < needed {
            return Err(NotEnoughEntropy {
                needed_bits: needed,
                credited_bits: self.credit_bits,
            });
        }
        // A whole output is written in place; a shorter one goes through a wiped temporary.
        let mut seed = [0u8; 32];
        let dst: &mut [u8; 32] = match <&mut [u8; 32]>::try_from(&mut *out) {
            Ok(o) => o,
            Err(_) => &mut seed,
        };
        match &mut self.state {
            State::Sha256(s) => s.extract_and_ratchet(dst),
            State::Blake2s(s) => {
                *dst = *s.finalize().as_array();
                blake2s_ratchet(s);
            }
        }
        if out.len() < MAX_EXTRACT {
            let n = out.len();
            out.copy_from_slice(&seed[..n]);
            seed.zeroize();
        }
        self.credit_bits -= needed;
        self.extractions += 1;
        Ok(())
    }
}

/// Pushes the buffered block through a non-final compression so that the state no longer holds
/// anything from which the last output can be recomputed. BLAKE2s keeps a full block buffered
/// until more data arrives, hence the one extra byte.
fn blake2s_ratchet(s: &mut blake2s_simd::State) {
    const ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];
    let pad = ((BLOCK - s.count() % BLOCK) % BLOCK) as usize;
    s.update(&ZEROS[..pad]);
    s.update(&[0x01]);
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The SHA-256 state wipes itself; overwrite the BLAKE2s chaining value and buffer in
        // place.
        if let State::Blake2s(s) = &mut self.state {
            *s = fresh_blake2s();
        }
        self.credit_bits = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixing_never_credits() {
        let mut p = Pool::new();
        p.mix(&[0xaa; 1000]);
        assert_eq!(p.credit_bits(), 0);
        assert_eq!(p.available_bytes(), 0);
        let mut out = [0u8; 1];
        assert!(p.extract(&mut out).is_err());
    }

    #[test]
    fn extraction_needs_margin_and_consumes_credit() {
        let mut p = Pool::new();
        p.mix(&[1; 40]);
        assert_eq!(p.credit(319), 319);
        assert_eq!(p.available_bytes(), 31);
        let mut out = [0u8; 32];
        let e = p.extract(&mut out).unwrap_err();
        assert_eq!(e.needed_bits, 320);
        assert_eq!(out, [0u8; 32], "a failed extraction writes nothing");
        p.credit(1);
        p.extract(&mut out).unwrap();
        assert_eq!(p.credit_bits(), 0);
        assert!(p.extract(&mut out).is_err());
    }

    #[test]
    fn credit_is_capped() {
        let mut p = Pool::new();
        assert_eq!(p.credit(1000), MAX_CREDIT_BITS);
        assert_eq!(p.credit(1), 0);
        assert_eq!(p.available_bytes(), 32);
    }

    #[test]
    fn same_input_different_outputs_after_ratchet() {
        let mut p = Pool::new();
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        p.mix(b"same");
        p.credit(320);
        p.extract(&mut a).unwrap();
        p.mix(b"same");
        p.credit(320);
        p.extract(&mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn blake2s_output_follows_documented_formula() {
        // out = BLAKE2s(personal) of everything mixed; the ratchet then pads to a block.
        let mut p = Pool::with_hash(PoolHash::Blake2s);
        p.mix(b"abc");
        p.credit(320);
        let mut out = [0u8; 32];
        p.extract(&mut out).unwrap();
        let expect = blake2s_simd::Params::new().personal(PERSONAL).hash(b"abc");
        assert_eq!(&out, expect.as_array());
        // Second output: abc || 61 zeros || 0x01 || "de".
        p.mix(b"de");
        p.credit(320);
        p.extract(&mut out).unwrap();
        let mut msg = [0u8; 64 + 3];
        msg[..3].copy_from_slice(b"abc");
        msg[64] = 1;
        msg[65..].copy_from_slice(b"de");
        let expect = blake2s_simd::Params::new().personal(PERSONAL).hash(&msg);
        assert_eq!(&out, expect.as_array());
    }

    #[test]
    fn blake2s_ratchet_pushes_the_used_block_out_of_the_buffer() {
        // After an extraction the buffered data is only the ratchet byte, whatever was mixed.
        for len in [0usize, 1, 63, 64, 65, 127, 128] {
            let mut p = Pool::with_hash(PoolHash::Blake2s);
            p.mix(&vec_of(len));
            p.credit(320);
            let mut out = [0u8; 32];
            p.extract(&mut out).unwrap();
            let State::Blake2s(s) = &p.state else {
                unreachable!()
            };
            assert_eq!(s.count() % 64, 1, "len {len}");
        }
    }

    /// Hash_df(label || M, 256) = SHA-256(0x01 || 0x00000100 || label || M), by the `sha2`
    /// crate's own hasher.
    fn hash_df(m: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([0x01, 0x00, 0x00, 0x01, 0x00]);
        h.update(b"qeaas pool sha256 v1");
        h.update(m);
        h.finalize().into()
    }

    #[test]
    fn sha256_output_is_hash_df_of_everything_mixed_with_ratchet_padding() {
        // Every tail length, including empty and one short of a block, and the two-block final.
        let mut p = Pool::with_hash(PoolHash::Sha256);
        let mut m = alloc::vec::Vec::new();
        m.extend_from_slice(b"qeaas pool sha256 v1");
        let prefix = 5 + m.len();
        m.clear();
        let mut out = [0u8; 32];
        for (i, len) in [0usize, 1, 3, 50, 51, 55, 56, 63, 64, 65, 200, 4096]
            .iter()
            .enumerate()
        {
            let data: alloc::vec::Vec<u8> = (0..*len).map(|j| (i * 7 + j) as u8).collect();
            p.mix(&data);
            m.extend_from_slice(&data);
            p.credit(320);
            p.extract(&mut out).unwrap();
            assert_eq!(out, hash_df(&m), "extraction {i} after {len} bytes");
            // The ratchet: zeros up to the next block boundary of the whole Hash_df input.
            let pad = 64 - (prefix + m.len()) % 64;
            m.resize(m.len() + pad, 0);
            let State::Sha256(s) = &p.state else {
                unreachable!()
            };
            assert_eq!(s.len % 64, 0);
            assert_eq!(s.buf, [0; 64], "the tail is wiped after extraction {i}");
        }
    }

    #[test]
    fn sha256_streaming_matches_one_shot_for_any_split() {
        let data = vec_of(1000);
        let want = hash_df(&data);
        for split in [1usize, 7, 63, 64, 65, 128, 500] {
            let mut p = Pool::with_hash(PoolHash::Sha256);
            for c in data.chunks(split) {
                p.mix(c);
            }
            p.credit(320);
            let mut out = [0u8; 32];
            p.extract(&mut out).unwrap();
            assert_eq!(out, want, "chunks of {split}");
        }
    }

    #[test]
    fn both_conditioners_ratchet_and_never_repeat() {
        for hash in [PoolHash::Sha256, PoolHash::Blake2s] {
            let mut p = Pool::with_hash(hash);
            let mut seen = alloc::collections::BTreeSet::new();
            for _ in 0..100 {
                p.mix(b"same");
                p.credit(320);
                let mut out = [0u8; 32];
                p.extract(&mut out).unwrap();
                assert!(seen.insert(out), "{hash:?} repeated an output");
            }
        }
    }

    #[test]
    fn conditioner_names_parse() {
        assert_eq!("sha256".parse(), Ok(PoolHash::Sha256));
        assert_eq!("blake2s".parse(), Ok(PoolHash::Blake2s));
        assert!("sha-256".parse::<PoolHash>().is_err());
        assert!(PoolHash::Sha256.vetted() && !PoolHash::Blake2s.vetted());
    }

    fn vec_of(len: usize) -> alloc::vec::Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }
}
