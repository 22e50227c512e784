//! The device pool: the BLAKE2s pool of the embedded client.
//!
//! The ESP32 client of arXiv 2603.10274 mixes two sources into one BLAKE2s pool modelled on Linux
//! `random.c`: bytes fetched from the qeaas server and the chip's own TRNG. Extraction is the
//! paper's: finalize a copy of the state, hand out up to 32 bytes and backfeed the 32-byte block
//! into the pool.
//!
//! The paper also lets credit pile up to 512 bytes (4096 bits). This pool does not: one BLAKE2s
//! state cannot hold more than 256 bits, so credit beyond [`DEVICE_CREDIT_CAP_BITS`] (256 bits
//! plus the 64-bit conditioning margin, the daemon's [`MAX_CREDIT_BITS`]) would be claimed
//! without being there, and draining would hand out more "full-entropy" bytes than the state
//! ever held. The owner refills when the credit no longer covers one full 32-byte block
//! ([`DevicePool::needs_refill`]).
//!
//! The daemon's [`Pool`](crate::pool::Pool) is not changed by any of this: the device pool is a
//! separate type with its own personalisation, so the two can never be confused.
//!
//! Extraction formula (`h` chaining value, `B` buffered partial block, as in [`crate::pool`]):
//!
//! ```text
//! s   = BLAKE2s-final(h, B)                          -- finalize a copy of the state
//! out = s[..n]                                       -- n <= 32 bytes handed out
//! h'  = BLAKE2s-compress*(h, B || s || 0-padding)    -- backfeed s, then ratchet
//! ```
//!
//! The backfeed comes before the ratchet on purpose. Backfeeding after it would leave `s` in the
//! plain-text buffer, where a later state compromise would read the last output; pushed through
//! the one-way compression it cannot be recovered (backtracking resistance), and `h'` still
//! depends on everything mixed so far plus `s`.
//!
//! Accounting. Every extraction of `n` bytes consumes `8 n + 64` credited bits (SP 800-90B
//! 3.1.5.1.2, the same rule as the daemon's pool; the paper debits only `8 n`). Mixing and
//! crediting are separate verbs, as in `random.c`, so that an owner can mix at once and credit
//! later (the TRNG hold-back of `qeaas-device`); credit from one origin can never exceed 8 bits
//! per byte that origin mixed. Credit is attributed to its source (server or local TRNG) and
//! debited from both in proportion, so the device can report what its current credit came from.

use core::fmt;
use zeroize::Zeroize;

use crate::pool::{NotEnoughEntropy, CONDITIONING_MARGIN_BITS, MAX_CREDIT_BITS, MAX_EXTRACT};

/// Credit cap of the device pool: what one BLAKE2s state can hold plus the conditioning margin
/// (320 bits, the daemon pool's cap), i.e. exactly one full-entropy 32-byte block.
pub const DEVICE_CREDIT_CAP_BITS: u32 = MAX_CREDIT_BITS;

const BLOCK: u64 = 64;
const PERSONAL: &[u8; 8] = b"qeaasdv1";

/// Where mixed bytes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The qeaas server (QRNG output fetched over the network).
    Server,
    /// The device's own hardware TRNG.
    Trng,
}

/// A credit claim larger than the data could carry (more than 8 bits per byte mixed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditTooLarge {
    /// Bits claimed.
    pub bits: u32,
    /// Bytes offered (or, for [`DevicePool::credit`], mixed and not yet credited, rounded down).
    pub len: usize,
}

impl fmt::Display for CreditTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "credit of {} bits claimed for {} bytes (at most 8 bits per byte)",
            self.bits, self.len
        )
    }
}

/// Counters of one origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginStats {
    /// Bytes mixed in, credited or not.
    pub bytes_mixed: u64,
    /// Credit accepted, in bits (claims above the cap are not counted).
    pub bits_credited: u64,
    /// Bits of the pool's current credit attributed to this origin.
    pub bits_held: u32,
}

/// A report of the pool's accounting; contains no secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevicePoolStats {
    /// Credit held, in bits.
    pub credit_bits: u32,
    /// Server-origin counters.
    pub server: OriginStats,
    /// TRNG-origin counters.
    pub trng: OriginStats,
    /// Extractions (32-byte blocks) performed.
    pub extractions: u64,
    /// Bytes backfed into the pool.
    pub backfed_bytes: u64,
}

/// The device's BLAKE2s pool; see the module documentation.
pub struct DevicePool {
    state: blake2s_simd::State,
    server: OriginStats,
    trng: OriginStats,
    /// Per origin (server, TRNG): bits that may still be claimed, 8 per byte mixed minus the
    /// claims made, whether the cap accepted them or not.
    claimable: [u64; 2],
    extractions: u64,
    backfed_bytes: u64,
}

impl fmt::Debug for DevicePool {
    // Never print the state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevicePool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for DevicePool {
    fn default() -> Self {
        Self::new()
    }
}

fn fresh_state() -> blake2s_simd::State {
    blake2s_simd::Params::new().personal(PERSONAL).to_state()
}

impl DevicePool {
    /// An empty pool with no credit.
    pub fn new() -> Self {
        Self {
            state: fresh_state(),
            server: OriginStats::default(),
            trng: OriginStats::default(),
            claimable: [0; 2],
            extractions: 0,
            backfed_bytes: 0,
        }
    }

    /// Mixes `data` without credit (e.g. unauthenticated network bytes, boot-time noise, TRNG
    /// bytes whose credit is held back).
    pub fn mix(&mut self, origin: Origin, data: &[u8]) {
        self.state.update(data);
        self.origin_mut(origin).bytes_mixed += data.len() as u64;
        self.claimable[origin as usize] += 8 * data.len() as u64;
    }

    /// Records that bytes `origin` mixed earlier carried `bits` of min-entropy: accounting only,
    /// as `random.c`'s credit. Credit above the cap is dropped (the state cannot hold it);
    /// returns the bits accepted. A claim above 8 bits per byte `origin` mixed and has not
    /// claimed yet is refused.
    pub fn credit(&mut self, origin: Origin, bits: u32) -> Result<u32, CreditTooLarge> {
        let claimable = &mut self.claimable[origin as usize];
        if u64::from(bits) > *claimable {
            return Err(CreditTooLarge {
                bits,
                len: usize::try_from(*claimable / 8).unwrap_or(usize::MAX),
            });
        }
        *claimable -= u64::from(bits);
        let room = DEVICE_CREDIT_CAP_BITS - self.credit_bits();
        let accepted = bits.min(room);
        let o = self.origin_mut(origin);
        o.bits_credited += u64::from(accepted);
        o.bits_held += accepted;
        Ok(accepted)
    }

    /// The paper's `entropy_add_entropy(dev, data, len, bits)`: mixes `data` and credits `bits`
    /// to `origin`, up to the cap. Returns the bits accepted. A claim above 8 bits per byte of
    /// `data` is refused and nothing is mixed.
    pub fn add_entropy(
        &mut self,
        origin: Origin,
        data: &[u8],
        bits: u32,
    ) -> Result<u32, CreditTooLarge> {
        if u64::from(bits) > 8 * data.len() as u64 {
            return Err(CreditTooLarge {
                bits,
                len: data.len(),
            });
        }
        self.mix(origin, data);
        self.credit(origin, bits)
    }

    /// Forgets all credit (a source failed its health test). The state keeps what was mixed.
    pub fn discard_credit(&mut self) {
        self.server.bits_held = 0;
        self.trng.bits_held = 0;
    }

    /// Credit held, in bits. Never above [`DEVICE_CREDIT_CAP_BITS`].
    pub fn credit_bits(&self) -> u32 {
        self.server.bits_held + self.trng.bits_held
    }

    /// True when the credit no longer covers one full 32-byte block (below the cap): time to
    /// fetch or read the TRNG.
    pub fn needs_refill(&self) -> bool {
        self.credit_bits() < DEVICE_CREDIT_CAP_BITS
    }

    /// Bits an extraction of `len` bytes (in 32-byte blocks) consumes.
    pub fn cost_bits(len: usize) -> u64 {
        let blocks = len.div_ceil(MAX_EXTRACT) as u64;
        8 * len as u64 + blocks * u64::from(CONDITIONING_MARGIN_BITS)
    }

    /// Fills `out` (any length) in blocks of at most 32 bytes, backfeeding each block. All or
    /// nothing: fails, changing nothing, unless the whole request is covered by credit.
    pub fn fill(&mut self, out: &mut [u8]) -> Result<(), NotEnoughEntropy> {
        let needed = Self::cost_bits(out.len());
        if needed > u64::from(self.credit_bits()) {
            return Err(NotEnoughEntropy {
                needed_bits: u32::try_from(needed).unwrap_or(u32::MAX),
                credited_bits: self.credit_bits(),
            });
        }
        for chunk in out.chunks_mut(MAX_EXTRACT) {
            self.extract_block(chunk);
        }
        Ok(())
    }

    /// Accounting report.
    pub fn stats(&self) -> DevicePoolStats {
        DevicePoolStats {
            credit_bits: self.credit_bits(),
            server: self.server,
            trng: self.trng,
            extractions: self.extractions,
            backfed_bytes: self.backfed_bytes,
        }
    }

    fn origin_mut(&mut self, origin: Origin) -> &mut OriginStats {
        match origin {
            Origin::Server => &mut self.server,
            Origin::Trng => &mut self.trng,
        }
    }

    /// One block; the caller has checked the credit.
    fn extract_block(&mut self, out: &mut [u8]) {
        let mut s = *self.state.finalize().as_array();
        out.copy_from_slice(&s[..out.len()]);
        // Backfeed, then ratchet (see the module documentation for the order).
        self.state.update(&s);
        self.backfed_bytes += s.len() as u64;
        s.zeroize();
        self.ratchet();
        self.debit(8 * out.len() as u32 + CONDITIONING_MARGIN_BITS);
        self.extractions += 1;
    }

    /// Debits both origins in proportion to what they hold.
    fn debit(&mut self, needed: u32) {
        let total = self.credit_bits();
        debug_assert!(needed <= total);
        // floor(needed * server / total) <= server, and the rest,
        // ceil(needed * trng / total), is <= trng because needed <= total.
        let from_server = (u64::from(needed) * u64::from(self.server.bits_held))
            .checked_div(u64::from(total))
            .unwrap_or(0) as u32;
        self.server.bits_held -= from_server;
        self.trng.bits_held -= needed - from_server;
    }

    /// Pads the buffer to a block and adds one byte, forcing BLAKE2s to compress the block.
    fn ratchet(&mut self) {
        const ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];
        let pad = ((BLOCK - self.state.count() % BLOCK) % BLOCK) as usize;
        self.state.update(&ZEROS[..pad]);
        self.state.update(&[0x01]);
    }
}

impl Drop for DevicePool {
    fn drop(&mut self) {
        self.state = fresh_state();
        self.discard_credit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn personal_hash(msg: &[u8]) -> [u8; 32] {
        *blake2s_simd::Params::new()
            .personal(PERSONAL)
            .hash(msg)
            .as_array()
    }

    #[test]
    fn mixing_never_credits() {
        let mut p = DevicePool::new();
        p.mix(Origin::Server, &[7; 500]);
        p.mix(Origin::Trng, &[8; 500]);
        assert_eq!(p.credit_bits(), 0);
        assert_eq!(p.stats().server.bytes_mixed, 500);
        assert!(p.fill(&mut [0u8; 1]).is_err());
    }

    #[test]
    fn credit_is_at_most_eight_bits_per_byte() {
        let mut p = DevicePool::new();
        let e = p.add_entropy(Origin::Server, &[1; 32], 257).unwrap_err();
        assert_eq!(e, CreditTooLarge { bits: 257, len: 32 });
        assert_eq!(
            p.stats().server.bytes_mixed,
            0,
            "refused claims mix nothing"
        );
        assert_eq!(p.add_entropy(Origin::Server, &[1; 32], 256), Ok(256));
        assert_eq!(p.add_entropy(Origin::Trng, &[], 0), Ok(0));
    }

    #[test]
    fn credit_caps_at_one_block_and_attributes_origin() {
        let mut p = DevicePool::new();
        assert_eq!(p.add_entropy(Origin::Server, &[3; 32], 256), Ok(256));
        // The TRNG can add only the remaining 64 bits of room; the rest of a claim is dropped.
        assert_eq!(p.add_entropy(Origin::Trng, &[4; 64], 512), Ok(64));
        assert_eq!(p.add_entropy(Origin::Trng, &[4; 64], 512), Ok(0));
        assert_eq!(p.credit_bits(), DEVICE_CREDIT_CAP_BITS);
        let s = p.stats();
        assert_eq!(s.server.bits_credited, 256);
        assert_eq!(s.server.bits_held, 256);
        assert_eq!(s.trng.bits_credited, 64);
        assert_eq!(s.trng.bytes_mixed, 128);
    }

    #[test]
    fn credit_later_is_bounded_by_what_was_mixed() {
        let mut p = DevicePool::new();
        p.mix(Origin::Trng, &[1; 16]);
        // 128 bits claimable from the TRNG's 16 bytes, none from the server's none.
        assert_eq!(
            p.credit(Origin::Server, 1),
            Err(CreditTooLarge { bits: 1, len: 0 })
        );
        assert_eq!(p.credit(Origin::Trng, 100), Ok(100));
        assert_eq!(
            p.credit(Origin::Trng, 29),
            Err(CreditTooLarge { bits: 29, len: 3 })
        );
        assert_eq!(p.credit(Origin::Trng, 28), Ok(28));
        assert_eq!(p.credit_bits(), 128);
        // A claim dropped at the cap is still spent: it cannot be made again later.
        let mut p = DevicePool::new();
        p.mix(Origin::Server, &[2; 64]);
        assert_eq!(p.credit(Origin::Server, 512), Ok(320));
        p.fill(&mut [0u8; 32]).unwrap();
        assert!(p.credit(Origin::Server, 1).is_err());
    }

    #[test]
    fn refill_is_needed_below_one_full_block() {
        let mut p = DevicePool::new();
        assert!(p.needs_refill());
        p.add_entropy(Origin::Trng, &[0; 40], 319).unwrap();
        assert!(p.needs_refill());
        assert!(p.fill(&mut [0u8; 32]).is_err());
        p.add_entropy(Origin::Trng, &[0; 1], 1).unwrap();
        assert!(!p.needs_refill());
        // 32 bytes out cost 320 bits: empty again.
        p.fill(&mut [0u8; 32]).unwrap();
        assert_eq!(p.credit_bits(), 0);
        assert!(p.needs_refill());
    }

    #[test]
    fn fill_is_all_or_nothing_and_costs_the_margin_per_block() {
        let mut p = DevicePool::new();
        p.add_entropy(Origin::Server, &[9; 64], 8 * 64).unwrap();
        // 40 bytes = 2 blocks: 8 * 40 + 2 * 64 = 448 bits, more than the pool can ever hold.
        assert_eq!(DevicePool::cost_bits(40), 448);
        assert_eq!(DevicePool::cost_bits(20), 224);
        let mut big = [0u8; 40];
        let e = p.fill(&mut big).unwrap_err();
        assert_eq!(e.needed_bits, 448);
        assert_eq!(big, [0u8; 40]);
        assert_eq!(p.stats().extractions, 0);
        let mut out = [0u8; 20];
        p.fill(&mut out).unwrap();
        assert_eq!(p.credit_bits(), 320 - 224);
        assert_eq!(p.stats().extractions, 1);
        assert_eq!(p.stats().backfed_bytes, 32);
    }

    #[test]
    fn debit_is_proportional_and_never_underflows() {
        let mut p = DevicePool::new();
        p.add_entropy(Origin::Server, &[1; 30], 240).unwrap();
        p.add_entropy(Origin::Trng, &[2; 10], 80).unwrap();
        p.fill(&mut [0u8; 16]).unwrap();
        // 192 bits debited 3:1.
        assert_eq!(p.stats().server.bits_held, 240 - 144);
        assert_eq!(p.stats().trng.bits_held, 80 - 48);
        // Drain exactly: every odd split must still sum to the total.
        let mut p = DevicePool::new();
        p.add_entropy(Origin::Server, &[1; 20], 157).unwrap();
        p.add_entropy(Origin::Trng, &[1; 21], 163).unwrap();
        p.fill(&mut [0u8; 32]).unwrap();
        assert_eq!(p.credit_bits(), 0);
    }

    #[test]
    fn output_follows_formula_with_backfeed() {
        let mut p = DevicePool::new();
        p.add_entropy(Origin::Trng, b"abc", 24).unwrap();
        p.add_entropy(Origin::Server, &[5; 64], 512).unwrap();
        let mut mixed = b"abc".to_vec();
        mixed.extend_from_slice(&[5; 64]);
        let mut a = [0u8; 32];
        p.fill(&mut a).unwrap();
        let s1 = personal_hash(&mixed);
        assert_eq!(a, s1);
        // Next output: everything so far || s1 || zero padding to a block || 0x01 || "de...".
        let de = b"defghijklmnopqrstuvwxyz!";
        p.add_entropy(Origin::Trng, de, 192).unwrap();
        let mut b = [0u8; 16];
        p.fill(&mut b).unwrap();
        let mut msg: Vec<u8> = mixed.clone();
        msg.extend_from_slice(&s1);
        msg.resize(msg.len().div_ceil(64) * 64, 0);
        msg.push(1);
        msg.extend_from_slice(de);
        assert_eq!(b[..], personal_hash(&msg)[..16]);
    }

    #[test]
    fn backfed_block_is_compressed_not_left_in_the_buffer() {
        for len in [0usize, 1, 31, 32, 33, 63, 64, 65, 128] {
            let mut p = DevicePool::new();
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            p.mix(Origin::Trng, &data);
            p.add_entropy(Origin::Trng, &[0xee; 40], 320).unwrap();
            p.fill(&mut [0u8; 32]).unwrap();
            assert_eq!(
                p.state.count() % 64,
                1,
                "len {len}: only the ratchet byte is buffered"
            );
        }
    }

    #[test]
    fn successive_outputs_differ_even_with_identical_input() {
        let mut p = DevicePool::new();
        let mut seen = vec![];
        for _ in 0..8 {
            p.add_entropy(Origin::Server, &[0; 40], 320).unwrap();
            let mut o = [0u8; 32];
            p.fill(&mut o).unwrap();
            assert!(!seen.contains(&o));
            seen.push(o);
        }
    }

    /// The BLAKE2s state holds 256 bits: whatever one top-up claims, draining the pool
    /// afterwards yields at most 32 full-entropy bytes (SP 800-90B 3.1.5.1.2, as `pool.rs`).
    #[test]
    fn one_top_up_drains_to_no_more_than_the_state_holds() {
        for origin in [Origin::Server, Origin::Trng] {
            let mut p = DevicePool::new();
            // One paper-sized top-up: 512 bytes claimed at 8 bits/byte.
            let _ = p.add_entropy(origin, &[0x5a; 512], 4096);
            let mut served = 0usize;
            let mut block = [0u8; 32];
            while p.fill(&mut block).is_ok() {
                served += block.len();
            }
            let mut byte = [0u8; 1];
            while p.fill(&mut byte).is_ok() {
                served += 1;
            }
            assert!(
                8 * served <= crate::pool::POOL_BITS as usize,
                "{origin:?}: {served} full-entropy bytes out of one 256-bit state"
            );
        }
    }

    #[test]
    fn discard_credit_keeps_counters() {
        let mut p = DevicePool::new();
        p.add_entropy(Origin::Trng, &[0; 64], 512).unwrap();
        p.discard_credit();
        assert_eq!(p.credit_bits(), 0);
        assert_eq!(p.stats().trng.bits_credited, 320, "the claim was capped");
    }

    mod props {
        use super::super::*;
        use alloc::vec::Vec;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Add { server: bool, len: usize, bits: u32 },
            Fill(usize),
            Discard,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (any::<bool>(), 0usize..200, 0u32..2000)
                    .prop_map(|(server, len, bits)| Op::Add { server, len, bits }),
                4 => (1usize..40).prop_map(Op::Fill),
                1 => Just(Op::Discard),
            ]
        }

        proptest! {
            /// Whatever the sequence: credit never exceeds the cap nor what the sources claimed
            /// (at most 8 bits per byte), every byte handed out was paid for at 8 bits plus the
            /// margin per block, and the two origins' shares always add up to the credit.
            #[test]
            fn accounting_invariants_hold(ops in proptest::collection::vec(op(), 1..60)) {
                let mut p = DevicePool::new();
                let mut accepted: u64 = 0;
                let mut spent: u64 = 0;
                let mut discarded: u64 = 0;
                let mut outputs: Vec<Vec<u8>> = Vec::new();
                for o in ops {
                    match o {
                        Op::Add { server, len, bits } => {
                            let origin = if server { Origin::Server } else { Origin::Trng };
                            let before = p.credit_bits();
                            let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ (bits as u8)).collect();
                            match p.add_entropy(origin, &data, bits) {
                                Ok(a) => {
                                    prop_assert!(u64::from(bits) <= 8 * len as u64);
                                    prop_assert!(a <= bits);
                                    prop_assert_eq!(p.credit_bits(), before + a);
                                    accepted += u64::from(a);
                                }
                                Err(_) => {
                                    prop_assert!(u64::from(bits) > 8 * len as u64);
                                    prop_assert_eq!(p.credit_bits(), before);
                                }
                            }
                        }
                        Op::Fill(n) => {
                            let before = p.credit_bits();
                            let mut out = alloc::vec![0u8; n];
                            match p.fill(&mut out) {
                                Ok(()) => {
                                    let cost = DevicePool::cost_bits(n);
                                    prop_assert!(cost <= u64::from(before));
                                    prop_assert_eq!(u64::from(p.credit_bits()), u64::from(before) - cost);
                                    spent += cost;
                                    // Short outputs may collide by chance; 16 bytes may not.
                                    if n >= 16 {
                                        prop_assert!(!outputs.contains(&out), "an output repeated");
                                        outputs.push(out);
                                    }
                                }
                                Err(_) => {
                                    prop_assert!(DevicePool::cost_bits(n) > u64::from(before));
                                    prop_assert_eq!(p.credit_bits(), before);
                                }
                            }
                        }
                        Op::Discard => {
                            discarded += u64::from(p.credit_bits());
                            p.discard_credit();
                        }
                    }
                    let s = p.stats();
                    prop_assert!(s.credit_bits <= DEVICE_CREDIT_CAP_BITS);
                    prop_assert_eq!(s.credit_bits, s.server.bits_held + s.trng.bits_held);
                    prop_assert_eq!(accepted, spent + discarded + u64::from(s.credit_bits));
                    prop_assert_eq!(accepted, s.server.bits_credited + s.trng.bits_credited);
                }
            }
        }
    }
}
