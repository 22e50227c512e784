//! The entropy pool: one BLAKE2s state, modelled on Linux `drivers/char/random.c` (5.18+).
//!
//! Three verbs, kept apart as in random.c:
//!
//! * [`Pool::mix`] absorbs bytes. It never changes the credit.
//! * [`Pool::credit`] records how much min-entropy the bytes mixed so far carried, as assessed by
//!   the health-tested source. It is pure accounting.
//! * [`Pool::extract`] produces at most 32 bytes and ratchets the state.
//!
//! Extraction formula. Let `h` be the BLAKE2s chaining value and `B` the final, still buffered,
//! partial block of everything mixed so far (BLAKE2s keeps the last block until it knows whether
//! it is the final one). Then
//!
//! ```text
//! out = BLAKE2s-final(h, B)                  -- "finalize a copy of the state"
//! h'  = BLAKE2s-compress(h, B || 0-padding)  -- pad the buffer to a block and absorb one
//!                                               ratchet byte, which forces B out of the buffer
//! ```
//!
//! `out` and `h'` are outputs of the compression function on the same chaining value with
//! different flags and counters, so `out` says nothing about `h'` (forward secrecy of the pool
//! against its readers); and `h` cannot be recomputed from `h'` (the compression function is
//! one-way), so a later compromise of the pool state does not reveal `out` (backtracking
//! resistance). Every output temporary is zeroized.
//!
//! Accounting. The pool holds at most 256 bits (one chaining value). BLAKE2s is used as the
//! conditioning function of SP 800-90B 3.1.5.1.2: an input carrying `h_in` bits yields
//! `min(256, h_in - 64)` bits of output entropy, so 32 full-entropy bytes need 320 credited bits.
//! An extraction of `n` bytes needs `8 n + 64` credited bits and consumes them; nothing is ever
//! extracted on credit the pool does not have.

use core::fmt;
use zeroize::Zeroize;

/// Largest single extraction in bytes (one BLAKE2s output).
pub const MAX_EXTRACT: usize = 32;
/// Entropy the BLAKE2s state can hold, in bits.
pub const POOL_BITS: u32 = 256;
/// Extra input entropy per extraction required by SP 800-90B 3.1.5.1.2 for full-entropy output.
pub const CONDITIONING_MARGIN_BITS: u32 = 64;
/// Credit is capped here: more input entropy than this cannot be retained in the state.
pub const MAX_CREDIT_BITS: u32 = POOL_BITS + CONDITIONING_MARGIN_BITS;

const BLOCK: u64 = 64;
const PERSONAL: &[u8; 8] = b"qeaaspl1";

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

/// One BLAKE2s entropy pool.
#[derive(Clone)]
pub struct Pool {
    state: blake2s_simd::State,
    credit_bits: u32,
    extractions: u64,
}

impl fmt::Debug for Pool {
    // Never print the state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
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

fn fresh_state() -> blake2s_simd::State {
    blake2s_simd::Params::new().personal(PERSONAL).to_state()
}

impl Pool {
    /// An empty pool with no credit.
    pub fn new() -> Self {
        Self {
            state: fresh_state(),
            credit_bits: 0,
            extractions: 0,
        }
    }

    /// Absorbs `data` into the state. Never credits.
    pub fn mix(&mut self, data: &[u8]) {
        self.state.update(data);
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
        let mut seed = *self.state.finalize().as_array();
        out.copy_from_slice(&seed[..out.len()]);
        seed.zeroize();
        self.ratchet();
        self.credit_bits -= needed;
        self.extractions += 1;
        Ok(())
    }

    /// Pushes the buffered block through a non-final compression so that the state no longer
    /// holds anything from which the last output can be recomputed.
    fn ratchet(&mut self) {
        const ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];
        let pad = ((BLOCK - self.state.count() % BLOCK) % BLOCK) as usize;
        self.state.update(&ZEROS[..pad]);
        // The buffer is now exactly full; one more byte makes BLAKE2s compress it.
        self.state.update(&[0x01]);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Overwrite the chaining value and buffer in place.
        self.state = fresh_state();
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
    fn output_follows_documented_formula() {
        // out = BLAKE2s(personal) of everything mixed; the ratchet then pads to a block.
        let mut p = Pool::new();
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
    fn ratchet_pushes_the_used_block_out_of_the_buffer() {
        // After an extraction the buffered data is only the ratchet byte, whatever was mixed.
        for len in [0usize, 1, 63, 64, 65, 127, 128] {
            let mut p = Pool::new();
            p.mix(&vec_of(len));
            p.credit(320);
            let mut out = [0u8; 32];
            p.extract(&mut out).unwrap();
            assert_eq!(p.state.count() % 64, 1, "len {len}");
        }
    }

    fn vec_of(len: usize) -> alloc::vec::Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }
}
