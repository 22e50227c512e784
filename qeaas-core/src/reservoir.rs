//! The pool plus a bounded queue of extracted bytes waiting for consumers.
//!
//! Every byte in the queue was extracted from the pool on credit (see [`crate::pool`]), and
//! [`Reservoir::take`] removes what it returns and zeroizes the slots, so no two consumers can ever
//! be handed the same bytes and no byte is handed out that the health-tested input did not back.
//! When the queue cannot satisfy a request the answer is [`NotEnoughEntropy`]: never padding,
//! never a partial answer.
//!
//! The reservoir also decides whether what it hands out may be credited to the kernel: only if
//! nothing but hardware bytes was ever mixed into its pool. [`Reservoir::take`] says so with the
//! bytes, so a consumer cannot credit bytes that were mixed after a simulated or network source
//! joined: the answer and the bytes come from the same state.

use alloc::boxed::Box;
use alloc::vec;
use zeroize::Zeroize;

use crate::pool::{NotEnoughEntropy, Pool, PoolHash, MAX_CREDIT_BITS, MAX_EXTRACT};
use crate::provenance::Provenance;

/// What [`Reservoir::take`] says about the bytes it handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// True when only hardware bytes were ever mixed into the pool they came from: they may be
    /// credited to the kernel at 8 bits per byte.
    pub kernel_creditable: bool,
}

impl Taken {
    /// The kernel credit for `len` bytes so taken: 8 bits per byte (pool output is full
    /// entropy, each byte backed by 10 credited input bits) when creditable, else none.
    pub fn kernel_credit_bits(self, len: usize) -> u32 {
        if self.kernel_creditable {
            u32::try_from(len.saturating_mul(8)).unwrap_or(u32::MAX)
        } else {
            0
        }
    }
}

/// Counters of one reservoir.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReservoirCounters {
    /// Bytes mixed into the pool.
    pub bytes_mixed: u64,
    /// Bits of credit the pool accepted.
    pub bits_credited: u64,
    /// Bits of credit offered while the queue was full (dropped: the state cannot hold them).
    pub bits_dropped: u64,
    /// Bits of credit that the last byte mixed before an extraction carried past the pool's cap,
    /// at most one byte's worth per extraction: an output is backed by whole input bytes, and
    /// the excess cannot be counted again for the next output.
    pub bits_past_cap: u64,
    /// Bytes extracted into the queue.
    pub bytes_extracted: u64,
    /// Bytes handed to consumers.
    pub bytes_taken: u64,
    /// Requests refused for want of entropy.
    pub refusals: u64,
    /// Ready bytes discarded because a source failed.
    pub bytes_flushed: u64,
}

/// Pool and output queue.
#[derive(Debug)]
pub struct Reservoir {
    pool: Pool,
    ring: Box<[u8]>,
    head: usize,
    len: usize,
    carry_millibits: u64,
    /// Bytes from a source other than hardware were mixed in: nothing from this pool may ever be
    /// credited to the kernel again (the pool's state carries them from then on).
    tainted: bool,
    counters: ReservoirCounters,
}

impl Reservoir {
    /// A reservoir whose queue holds at most `capacity` bytes (rounded up to 32), with the
    /// default conditioning function.
    pub fn new(capacity: usize) -> Self {
        Self::with_hash(capacity, PoolHash::default())
    }

    /// A reservoir whose pool is conditioned by `hash`.
    pub fn with_hash(capacity: usize, hash: PoolHash) -> Self {
        let capacity = capacity.max(MAX_EXTRACT).next_multiple_of(MAX_EXTRACT);
        Self {
            pool: Pool::with_hash(hash),
            ring: vec![0u8; capacity].into_boxed_slice(),
            head: 0,
            len: 0,
            carry_millibits: 0,
            tainted: false,
            counters: ReservoirCounters::default(),
        }
    }

    /// Bytes ready for consumers.
    pub fn ready(&self) -> usize {
        self.len
    }

    /// Queue capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// The pool's conditioning function.
    pub fn pool_hash(&self) -> PoolHash {
        self.pool.hash()
    }

    /// Bits credited in the pool and not yet extracted.
    pub fn pool_credit_bits(&self) -> u32 {
        self.pool.credit_bits()
    }

    /// Counters.
    pub fn counters(&self) -> ReservoirCounters {
        self.counters
    }

    /// True when what this reservoir hands out may be credited to the kernel: only hardware
    /// bytes were ever mixed in. [`Reservoir::take`] returns the same answer with the bytes.
    pub fn kernel_creditable(&self) -> bool {
        !self.tainted
    }

    /// Mixes `data` from a source of `provenance`, which carries `millibits` of min-entropy,
    /// crediting it piece by piece and extracting 32 bytes into the queue whenever the pool can
    /// back them. Pieces are sized so that credit never overflows the pool while there is room in
    /// the queue. Bytes of any provenance but hardware, credited or not, make the reservoir's
    /// output uncreditable to the kernel for good.
    pub fn absorb(&mut self, mut data: &[u8], millibits: u64, provenance: Provenance) {
        if data.is_empty() {
            return;
        }
        if provenance != Provenance::Hardware {
            self.tainted = true;
        }
        let total_len = data.len() as u64;
        let mut left_mb = millibits;
        // This chunk's rate, rounded up so that `need` below never asks for too few bytes.
        let rate = millibits.div_ceil(total_len).max(1);
        while !data.is_empty() {
            // Bytes needed to fill the pool's credit up to the cap, at this chunk's rate.
            let want_bits = u64::from(MAX_CREDIT_BITS - self.pool.credit_bits());
            let need = (want_bits * 1000)
                .saturating_sub(self.carry_millibits)
                .div_ceil(rate);
            let take = (need.max(1) as usize).min(data.len());
            let piece_mb = if take == data.len() {
                left_mb
            } else {
                // millibits * take in u64 when it fits (any real claim), else in u128, where it
                // cannot overflow for any input size.
                match millibits.checked_mul(take as u64) {
                    Some(p) => p / total_len,
                    None => (u128::from(millibits) * take as u128 / u128::from(total_len)) as u64,
                }
            };
            left_mb -= piece_mb;
            self.pool.mix(&data[..take]);
            self.counters.bytes_mixed += take as u64;
            data = &data[take..];
            // The carried fraction (< 1000) joins the piece's own fraction, so nothing overflows
            // even for a piece of u64::MAX millibits.
            let frac = self.carry_millibits + piece_mb % 1000;
            let bits = u32::try_from(piece_mb / 1000 + frac / 1000).unwrap_or(u32::MAX);
            self.carry_millibits = frac % 1000;
            let accepted = self.pool.credit(bits);
            self.counters.bits_credited += u64::from(accepted);
            if self.has_room() {
                self.counters.bits_past_cap += u64::from(bits - accepted);
            } else {
                self.counters.bits_dropped += u64::from(bits - accepted);
            }
            self.drain_pool();
        }
    }

    /// Whether the queue can take one more extraction.
    fn has_room(&self) -> bool {
        self.len + MAX_EXTRACT <= self.ring.len()
    }

    fn drain_pool(&mut self) {
        while self.pool.available_bytes() >= MAX_EXTRACT && self.has_room() {
            // Extract straight into the queue: no copy of the output is left anywhere else. The
            // tail stays a multiple of 32 (pushes add 32 bytes, takes move the head and the
            // length alike, a flush resets both), so the slot never wraps.
            let tail = (self.head + self.len) % self.ring.len();
            debug_assert_eq!(tail % MAX_EXTRACT, 0);
            if self
                .pool
                .extract(&mut self.ring[tail..tail + MAX_EXTRACT])
                .is_err()
            {
                break;
            }
            self.len += MAX_EXTRACT;
            self.counters.bytes_extracted += MAX_EXTRACT as u64;
        }
    }

    /// Discards every ready byte and all pool credit: called when a contributing source fails a
    /// health test, since the failure may have begun before the tests could see it.
    pub fn flush(&mut self) {
        self.counters.bytes_flushed += self.len as u64;
        self.ring.zeroize();
        self.head = 0;
        self.len = 0;
        self.carry_millibits = 0;
        self.pool.discard_credit();
    }

    /// Moves exactly `out.len()` bytes to `out`, or nothing at all; says whether they may be
    /// credited to the kernel.
    pub fn take(&mut self, out: &mut [u8]) -> Result<Taken, NotEnoughEntropy> {
        if out.len() > self.len {
            self.counters.refusals += 1;
            return Err(NotEnoughEntropy {
                needed_bits: u32::try_from(out.len().saturating_mul(8)).unwrap_or(u32::MAX),
                credited_bits: u32::try_from(self.len.saturating_mul(8)).unwrap_or(u32::MAX),
            });
        }
        // At most two contiguous pieces: up to the end of the ring, then from its start.
        let cap = self.ring.len();
        let first = out.len().min(cap - self.head);
        let (a, b) = out.split_at_mut(first);
        // Plain fills, not volatile writes: the ring is live memory that later calls read, so
        // the compiler cannot drop these stores (and `Drop` wipes the whole ring, volatile).
        a.copy_from_slice(&self.ring[self.head..self.head + first]);
        self.ring[self.head..self.head + first].fill(0);
        b.copy_from_slice(&self.ring[..b.len()]);
        self.ring[..b.len()].fill(0);
        self.head = (self.head + out.len()) % cap;
        self.len -= out.len();
        self.counters.bytes_taken += out.len() as u64;
        // Room freed: credit waiting in the pool can now be extracted.
        self.drain_pool();
        Ok(Taken {
            kernel_creditable: !self.tainted,
        })
    }
}

impl Drop for Reservoir {
    fn drop(&mut self) {
        self.ring.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HW: Provenance = Provenance::Hardware;

    #[test]
    fn full_entropy_input_yields_credited_output_only() {
        let mut r = Reservoir::new(4096);
        // 400 bytes at 8 bits/byte = 3200 bits -> 10 extractions of 32 bytes (320 bits each).
        r.absorb(&[7u8; 400], 400 * 8000, HW);
        assert_eq!(r.ready(), 320);
        assert_eq!(r.counters().bits_credited, 3200);
        let mut out = [0u8; 321];
        assert!(r.take(&mut out).is_err(), "never more than credited");
        let mut out = [0u8; 320];
        r.take(&mut out).unwrap();
        assert_eq!(r.ready(), 0);
    }

    #[test]
    fn low_entropy_input_yields_proportionally_less() {
        let mut r = Reservoir::new(4096);
        // 1 bit per byte: 3200 bytes carry 3200 bits -> 10 blocks.
        r.absorb(&[1u8; 3200], 3200 * 1000, HW);
        assert_eq!(r.ready(), 320);
    }

    #[test]
    fn zero_credit_input_yields_nothing() {
        let mut r = Reservoir::new(4096);
        r.absorb(&[9u8; 100_000], 0, HW);
        assert_eq!(r.ready(), 0);
    }

    #[test]
    fn fractional_credit_is_carried() {
        let mut r = Reservoir::new(4096);
        // 7.5 bits/byte in single bytes: 4000 bytes = 30000 bits -> 93 blocks (29760 bits).
        for _ in 0..4000 {
            r.absorb(&[3], 7500, HW);
        }
        assert_eq!(r.ready(), 93 * 32);
    }

    #[test]
    fn takes_never_overlap() {
        let mut r = Reservoir::new(1 << 16);
        let data: alloc::vec::Vec<u8> = (0..40_000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
        r.absorb(&data, 40_000 * 8000, HW);
        let mut seen = alloc::collections::BTreeSet::new();
        let mut buf = [0u8; 32];
        while r.take(&mut buf).is_ok() {
            assert!(seen.insert(buf), "the same 32 bytes were handed out twice");
        }
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn a_small_ring_wrapping_around_returns_the_same_stream_as_a_large_one() {
        let (mut small, mut large) = (Reservoir::new(96), Reservoir::new(1 << 20));
        let (mut got, mut want) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
        let mut s = 12345u32;
        for i in 0..500u32 {
            // 40 bytes at 8 bits each: exactly one 32-byte extraction per call in both.
            let data: [u8; 40] = core::array::from_fn(|j| (i as u8) ^ (j as u8));
            small.absorb(&data, 40 * 8000, HW);
            large.absorb(&data, 40 * 8000, HW);
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Random sizes, but always leave room for the next block so no credit is dropped.
            let k =
                ((s >> 16) as usize % (small.ready() + 1)).max(small.ready().saturating_sub(64));
            let mut buf = alloc::vec![0u8; k];
            small.take(&mut buf).unwrap();
            got.extend_from_slice(&buf);
        }
        let mut rest = alloc::vec![0u8; small.ready()];
        small.take(&mut rest).unwrap();
        got.extend_from_slice(&rest);
        want.resize(large.ready(), 0);
        large.take(&mut want).unwrap();
        assert_eq!(got.len(), 500 * 32);
        assert!(got == want, "wrap-around changed the stream");
        assert!(
            small.ring.iter().all(|&b| b == 0),
            "taken bytes are zeroized"
        );
    }

    #[test]
    fn huge_credit_claims_do_not_overflow() {
        let mut r = Reservoir::new(4096);
        // Leave a fractional carry, then a piece claiming u64::MAX millibits: carry + piece would
        // overflow a u64.
        r.absorb(&[1], 1500, HW);
        r.absorb(&[2], u64::MAX, HW);
        r.absorb(&[3u8; 1000], u64::MAX, HW);
        // The credit is capped by the pool, whatever the claim: the queue fills, nothing more.
        assert_eq!(r.ready(), 4096);
        assert!(r.counters().bits_dropped > 0);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn refusal_of_a_huge_request_saturates_needed_bits() {
        let mut r = Reservoir::new(64);
        r.absorb(&[5u8; 100], 100 * 8000, HW);
        // 2^29 + 1 bytes = 2^32 + 8 bits: would wrap to 8 in a u32. Zero pages from the allocator:
        // the buffer is never touched, since the request is refused first.
        let mut huge = alloc::vec![0u8; (1 << 29) + 1];
        let e = r.take(&mut huge).unwrap_err();
        assert_eq!(e.needed_bits, u32::MAX);
        assert_eq!(e.credited_bits, 64 * 8);
        assert_eq!(r.counters().refusals, 1);
        assert_eq!(r.ready(), 64, "a refusal takes nothing");
    }

    #[test]
    fn flush_discards_ready_bytes_and_credit() {
        let mut r = Reservoir::new(4096);
        r.absorb(&[7u8; 430], 430 * 8000, HW);
        assert_eq!(r.ready(), 320);
        assert!(r.pool_credit_bits() > 0);
        r.flush();
        assert_eq!((r.ready(), r.pool_credit_bits()), (0, 0));
        assert_eq!(r.counters().bytes_flushed, 320);
        let mut out = [0u8; 1];
        assert!(r.take(&mut out).is_err());
    }

    #[test]
    fn any_non_hardware_input_makes_the_output_uncreditable_for_good() {
        for other in [Provenance::Simulated, Provenance::Network] {
            let mut r = Reservoir::new(4096);
            r.absorb(&[7u8; 400], 400 * 8000, HW);
            let mut out = [0u8; 32];
            assert!(r.take(&mut out).unwrap().kernel_creditable);
            // Even uncredited: its bytes are in the pool's state from now on.
            r.absorb(&[1u8; 10], 0, other);
            assert!(!r.kernel_creditable());
            // Bytes extracted before the taint are handed out as uncreditable too: the answer
            // is the reservoir's state when they are taken.
            assert!(!r.take(&mut out).unwrap().kernel_creditable);
            r.absorb(&[7u8; 4000], 4000 * 8000, HW);
            r.flush();
            r.absorb(&[7u8; 400], 400 * 8000, HW);
            assert!(!r.take(&mut out).unwrap().kernel_creditable);
        }
    }

    #[test]
    fn credit_a_byte_carries_past_the_cap_is_not_counted_twice() {
        // 7 bits per byte: 46 bytes carry 322 bits, 2 past the 320 an extraction needs. They are
        // not carried to the next extraction, and they are not a full queue's loss.
        let mut r = Reservoir::new(4096);
        r.absorb(&[9u8; 46 * 10], 46 * 10 * 7000, HW);
        assert_eq!(r.ready(), 320);
        let c = r.counters();
        assert_eq!((c.bits_dropped, c.bits_past_cap), (0, 20));
        assert_eq!(c.bits_credited, 3200);
        assert_eq!(r.pool_credit_bits(), 0);
    }

    #[test]
    fn queue_full_drops_excess_credit_and_refills_after_take() {
        let mut r = Reservoir::new(64);
        r.absorb(&[5u8; 1000], 1000 * 8000, HW);
        assert_eq!(r.ready(), 64);
        assert!(r.counters().bits_dropped > 0);
        let mut out = [0u8; 32];
        r.take(&mut out).unwrap();
        // The pool still held a full credit; taking frees room for it.
        assert_eq!(r.ready(), 64);
    }
}
