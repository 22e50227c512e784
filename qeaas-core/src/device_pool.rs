//! The device pool: the BLAKE2s pool of the embedded client, with the paper's parameters.
//!
//! The ESP32 client of arXiv 2603.10274 mixes two sources into one BLAKE2s pool modelled on Linux
//! `random.c`: bytes fetched from the qeaas server and the chip's own TRNG. Its parameters, kept
//! here:
//!
//! * credit is capped at 512 bytes ([`DEVICE_CREDIT_CAP_BITS`] = 4096 bits);
//! * the owner refills when the credit falls below 128 bytes ([`REFILL_BELOW_BYTES`]);
//! * extraction finalizes a copy of the state, hands out up to 32 bytes and backfeeds the
//!   32-byte block into the pool.
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
//! Accounting. The 4096-bit cap is the paper's budget of credited input not yet consumed; the
//! state itself cannot hold more than 256 bits, which is why every extraction of `n` bytes
//! consumes `8 n + 64` credited bits (SP 800-90B 3.1.5.1.2, the same rule as the daemon's pool;
//! the paper debits only `8 n`). Credit per call can never exceed 8 bits per byte mixed. Credit
//! is attributed to its source (server or local TRNG) and debited from both in proportion, so the
//! device can report what its current credit came from.

use core::fmt;
use zeroize::Zeroize;

use crate::pool::{NotEnoughEntropy, CONDITIONING_MARGIN_BITS, MAX_EXTRACT};

/// Credit cap of the device pool: 512 bytes, in bits (the paper's value).
pub const DEVICE_CREDIT_CAP_BITS: u32 = 512 * 8;
/// The owner should refill when fewer credited bytes than this remain (the paper's value).
pub const REFILL_BELOW_BYTES: u32 = 128;

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

/// A credit claim larger than the data could carry (more than 8 bits per byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditTooLarge {
    /// Bits claimed.
    pub bits: u32,
    /// Bytes offered.
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
            extractions: 0,
            backfed_bytes: 0,
        }
    }

    /// Mixes `data` without credit (e.g. unauthenticated network bytes, boot-time noise).
    pub fn mix(&mut self, origin: Origin, data: &[u8]) {
        self.state.update(data);
        self.origin_mut(origin).bytes_mixed += data.len() as u64;
    }

    /// The paper's `entropy_add_entropy(dev, data, len, bits)`: mixes `data` and credits `bits`
    /// to `origin`, up to the 4096-bit cap. Returns the bits accepted. A claim above 8 bits per
    /// byte is refused and nothing is mixed.
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
        let room = DEVICE_CREDIT_CAP_BITS - self.credit_bits();
        let accepted = bits.min(room);
        let o = self.origin_mut(origin);
        o.bits_credited += u64::from(accepted);
        o.bits_held += accepted;
        Ok(accepted)
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

    /// Credit held, in whole bytes.
    pub fn credit_bytes(&self) -> u32 {
        self.credit_bits() / 8
    }

    /// True when the credit is below [`REFILL_BELOW_BYTES`]: time to fetch or read the TRNG.
    pub fn needs_refill(&self) -> bool {
        self.credit_bytes() < REFILL_BELOW_BYTES
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
    fn credit_caps_at_512_bytes_and_attributes_origin() {
        let mut p = DevicePool::new();
        // 15 server fetches of 32 bytes at 8 bits/byte: 3840 bits.
        for _ in 0..15 {
            assert_eq!(p.add_entropy(Origin::Server, &[3; 32], 256), Ok(256));
        }
        // The TRNG can add only the remaining 256 bits of room.
        assert_eq!(p.add_entropy(Origin::Trng, &[4; 64], 512), Ok(256));
        assert_eq!(p.add_entropy(Origin::Trng, &[4; 64], 512), Ok(0));
        assert_eq!(p.credit_bits(), DEVICE_CREDIT_CAP_BITS);
        assert_eq!(p.credit_bytes(), 512);
        let s = p.stats();
        assert_eq!(s.server.bits_credited, 3840);
        assert_eq!(s.server.bits_held, 3840);
        assert_eq!(s.trng.bits_credited, 256);
        assert_eq!(s.trng.bytes_mixed, 128);
    }

    #[test]
    fn refill_threshold_is_128_bytes() {
        let mut p = DevicePool::new();
        assert!(p.needs_refill());
        p.add_entropy(Origin::Trng, &[0; 128], 1023).unwrap();
        assert_eq!(p.credit_bytes(), 127);
        assert!(p.needs_refill());
        p.add_entropy(Origin::Trng, &[0; 1], 1).unwrap();
        assert_eq!(p.credit_bytes(), 128);
        assert!(!p.needs_refill());
        // 32 bytes out cost 320 bits: below the threshold again.
        p.fill(&mut [0u8; 32]).unwrap();
        assert_eq!(p.credit_bits(), 1024 - 320);
        assert!(p.needs_refill());
    }

    #[test]
    fn fill_is_all_or_nothing_and_costs_the_margin_per_block() {
        let mut p = DevicePool::new();
        p.add_entropy(Origin::Server, &[9; 64], 8 * 64).unwrap();
        // 40 bytes = 2 blocks: 8 * 40 + 2 * 64 = 448 bits.
        assert_eq!(DevicePool::cost_bits(40), 448);
        assert_eq!(DevicePool::cost_bits(64), 640);
        let mut big = [0u8; 64];
        let e = p.fill(&mut big).unwrap_err();
        assert_eq!(e.needed_bits, 640);
        assert_eq!(big, [0u8; 64]);
        assert_eq!(p.stats().extractions, 0);
        let mut out = [0u8; 40];
        p.fill(&mut out).unwrap();
        assert_eq!(p.credit_bits(), 512 - 448);
        assert_eq!(p.stats().extractions, 2);
        assert_eq!(p.stats().backfed_bytes, 64);
    }

    #[test]
    fn debit_is_proportional_and_never_underflows() {
        let mut p = DevicePool::new();
        p.add_entropy(Origin::Server, &[1; 96], 768).unwrap();
        p.add_entropy(Origin::Trng, &[2; 32], 256).unwrap();
        p.fill(&mut [0u8; 32]).unwrap();
        // 320 bits debited 3:1.
        assert_eq!(p.stats().server.bits_held, 768 - 240);
        assert_eq!(p.stats().trng.bits_held, 256 - 80);
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
        // Next output: everything so far || s1 || zero padding to a block || 0x01 || "de".
        p.add_entropy(Origin::Trng, b"de", 16).unwrap();
        let mut b = [0u8; 16];
        p.fill(&mut b).unwrap();
        let mut msg: Vec<u8> = mixed.clone();
        msg.extend_from_slice(&s1);
        msg.resize(msg.len().div_ceil(64) * 64, 0);
        msg.push(1);
        msg.extend_from_slice(b"de");
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
        assert_eq!(p.stats().trng.bits_credited, 512);
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
                4 => (1usize..100).prop_map(Op::Fill),
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
