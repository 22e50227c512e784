//! The prefetch buffer, sans-IO: pool bytes fetched from qeaasd ahead of demand so that most
//! HTTP requests are answered without a local-socket round trip.
//!
//! Rules, all enforced here and tested below:
//! - every byte is handed out at most once: a take copies bytes out and zeroizes them in place;
//! - nothing older than `max_age` is handed out: expired bytes are zeroized and dropped;
//! - [`Prefetch::discard`] zeroizes everything (the server calls it when qeaasd reports a failed
//!   or not-ready source, or is unreachable, so a failed device's bytes are never served late);
//! - the buffer is bounded: [`Prefetch::extra`] never asks for more than `target` held bytes, and
//!   no more than the demand seen in the last `max_age` (an idle server does not fetch 4 KiB to
//!   let it expire).
//!
//! qeaasd counts bytes as served to the frontend's uid when it hands them over, so buffered
//! bytes are counted when fetched, including those later discarded.

use std::collections::VecDeque;
use std::time::Duration;

use zeroize::{Zeroize, Zeroizing};

/// Bytes fetched together, handed out from `pos` on.
#[derive(Debug)]
struct Chunk {
    bytes: Zeroizing<Vec<u8>>,
    pos: usize,
    /// When qeaasd handed them over.
    at: Duration,
}

impl Chunk {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

/// Pool bytes held ahead of demand. Times are offsets from any fixed origin (the caller's clock).
#[derive(Debug)]
pub struct Prefetch {
    chunks: VecDeque<Chunk>,
    held: usize,
    target: usize,
    max_age: Duration,
    /// Demand in the current and the previous window of `max_age`, in bytes.
    window_start: Duration,
    demand_now: usize,
    demand_prev: usize,
    /// Bytes zeroized without being handed out (expired or discarded), for the logs.
    wasted: u64,
}

impl Prefetch {
    /// Holds at most `target` bytes ahead of demand (0: never prefetch), each for at most
    /// `max_age`.
    pub fn new(target: usize, max_age: Duration) -> Prefetch {
        Prefetch {
            chunks: VecDeque::new(),
            held: 0,
            target,
            max_age,
            window_start: Duration::ZERO,
            demand_now: 0,
            demand_prev: 0,
            wasted: 0,
        }
    }

    /// Bytes held now (some may be expired until the next call with a time).
    pub fn held(&self) -> usize {
        self.held
    }

    /// Bytes zeroized without being handed out so far.
    pub fn wasted(&self) -> u64 {
        self.wasted
    }

    /// Records that `n` bytes were asked for at `now` (sizes the next prefetch).
    pub fn note_demand(&mut self, n: usize, now: Duration) {
        self.roll(now);
        self.demand_now = self.demand_now.saturating_add(n);
    }

    fn roll(&mut self, now: Duration) {
        let w = self.max_age.max(Duration::from_millis(1));
        let since = now.saturating_sub(self.window_start);
        if since >= w {
            // One window later the current one becomes the previous; later still, both are stale.
            self.demand_prev = if since < 2 * w { self.demand_now } else { 0 };
            self.demand_now = 0;
            self.window_start = now;
        }
    }

    /// Zeroizes and drops chunks older than `max_age`.
    fn expire(&mut self, now: Duration) {
        while let Some(c) = self.chunks.front_mut() {
            if now.saturating_sub(c.at) <= self.max_age {
                break;
            }
            let left = c.left();
            self.held -= left;
            self.wasted += left as u64;
            // Zeroizing<Vec> wipes the whole allocation on drop.
            self.chunks.pop_front();
        }
    }

    /// `n` bytes nobody else got, or `None` (and nothing taken) if fewer are held.
    pub fn take(&mut self, n: usize, now: Duration) -> Option<Zeroizing<Vec<u8>>> {
        self.expire(now);
        if n == 0 || n > self.held {
            return None;
        }
        let mut out = Zeroizing::new(Vec::with_capacity(n));
        while out.len() < n {
            let c = self.chunks.front_mut()?;
            let k = (n - out.len()).min(c.left());
            let src = &mut c.bytes[c.pos..c.pos + k];
            out.extend_from_slice(src);
            // Handed out: the buffer's copy is wiped at once, not when the chunk is dropped.
            src.zeroize();
            c.pos += k;
            self.held -= k;
            if c.left() == 0 {
                self.chunks.pop_front();
            }
        }
        Some(out)
    }

    /// How many bytes to fetch ahead on top of a request for `need` bytes, at `now`: up to
    /// `target` held, and no more than was asked in the last window of `max_age` besides `need`
    /// itself (a server seeing one request per window fetches nothing ahead).
    pub fn extra(&mut self, now: Duration, need: usize) -> usize {
        self.roll(now);
        self.expire(now);
        let recent = self.demand_now.max(self.demand_prev).saturating_sub(need);
        self.target.saturating_sub(self.held).min(recent)
    }

    /// Keeps `bytes` fetched at `now` for later takes.
    pub fn store(&mut self, bytes: Zeroizing<Vec<u8>>, now: Duration) {
        if bytes.is_empty() {
            return;
        }
        self.held += bytes.len();
        self.chunks.push_back(Chunk {
            bytes,
            pos: 0,
            at: now,
        });
    }

    /// Zeroizes and drops everything held; returns how many bytes that was.
    pub fn discard(&mut self) -> usize {
        let n = self.held;
        self.wasted += n as u64;
        self.chunks.clear();
        self.held = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn counting(from: u8, n: usize) -> Zeroizing<Vec<u8>> {
        Zeroizing::new((0..n).map(|i| from.wrapping_add(i as u8)).collect())
    }

    #[test]
    fn takes_are_consecutive_and_disjoint_across_chunks() {
        let mut p = Prefetch::new(4096, 100 * MS);
        p.store(counting(0, 5), MS);
        p.store(counting(5, 5), 2 * MS);
        assert_eq!(p.take(3, 3 * MS).unwrap().as_slice(), &[0, 1, 2]);
        assert_eq!(p.take(4, 3 * MS).unwrap().as_slice(), &[3, 4, 5, 6]);
        // Not enough left: nothing is taken.
        assert!(p.take(4, 3 * MS).is_none());
        assert_eq!(p.held(), 3);
        assert_eq!(p.take(3, 3 * MS).unwrap().as_slice(), &[7, 8, 9]);
        assert_eq!(p.held(), 0);
        assert!(p.take(1, 3 * MS).is_none());
        assert!(p.take(0, 3 * MS).is_none());
    }

    #[test]
    fn handed_out_bytes_are_zeroized_in_the_buffer() {
        let mut p = Prefetch::new(4096, 100 * MS);
        p.store(Zeroizing::new(vec![0xAA; 8]), Duration::ZERO);
        p.take(3, MS).unwrap();
        let c = p.chunks.front().unwrap();
        assert_eq!(&c.bytes[..3], &[0, 0, 0]);
        assert_eq!(&c.bytes[3..], &[0xAA; 5]);
    }

    #[test]
    fn old_bytes_expire_and_are_never_handed_out() {
        let mut p = Prefetch::new(4096, 100 * MS);
        p.store(counting(0, 4), Duration::ZERO);
        p.store(counting(100, 4), 60 * MS);
        assert_eq!(p.take(2, 100 * MS).unwrap().as_slice(), &[0, 1]);
        // At 101 ms the first chunk's rest is too old; the second is served.
        assert_eq!(p.take(2, 101 * MS).unwrap().as_slice(), &[100, 101]);
        assert_eq!(p.wasted(), 2);
        assert!(p.take(1, 161 * MS).is_none());
        assert_eq!(p.held(), 0);
        assert_eq!(p.wasted(), 4);
    }

    #[test]
    fn discard_drops_everything() {
        let mut p = Prefetch::new(4096, 100 * MS);
        p.store(counting(0, 64), Duration::ZERO);
        p.store(counting(0, 64), Duration::ZERO);
        assert_eq!(p.discard(), 128);
        assert_eq!(p.held(), 0);
        assert!(p.take(1, MS).is_none());
    }

    #[test]
    fn prefetch_follows_recent_demand_up_to_the_target() {
        let mut p = Prefetch::new(4096, 100 * MS);
        // Idle: nothing ahead.
        assert_eq!(p.extra(Duration::ZERO, 64), 0);
        // One 64-byte request per window: nothing ahead, it would only expire.
        p.note_demand(64, MS);
        assert_eq!(p.extra(2 * MS, 64), 0);
        p.note_demand(64, 150 * MS);
        assert_eq!(p.extra(150 * MS, 64), 0);
        // Three per window: the two others' worth ahead.
        p.note_demand(64, 160 * MS);
        p.note_demand(64, 170 * MS);
        assert_eq!(p.extra(170 * MS, 64), 128);
        // Heavy demand: capped by the target minus what is held.
        for i in 0..1000 {
            p.note_demand(64, 200 * MS + i * Duration::from_micros(10));
        }
        assert_eq!(p.extra(210 * MS, 64), 4096);
        p.store(counting(0, 1000), 210 * MS);
        assert_eq!(p.extra(210 * MS, 64), 3096);
        // Demand stops: two windows later nothing more is fetched ahead.
        assert_eq!(p.extra(500 * MS, 64), 0);
        // Off.
        let mut off = Prefetch::new(0, 100 * MS);
        off.note_demand(64_000, MS);
        assert_eq!(off.extra(MS, 64), 0);
    }

    proptest! {
        /// Whatever the sequence of stores, takes, expiries and discards: every byte handed out
        /// was stored, none twice, none older than max_age, and the count held is exact.
        #[test]
        fn never_twice_never_stale(ops in proptest::collection::vec((0u8..4, 1usize..300, 0u32..40), 1..200)) {
            let max_age = 50 * MS;
            let mut p = Prefetch::new(4096, max_age);
            let mut now = Duration::ZERO;
            let mut next: u32 = 0;
            // Every stored byte is a unique u32 (4 bytes, big endian); stored in units of 4.
            let mut stored_at = std::collections::HashMap::new();
            let mut seen = std::collections::HashSet::new();
            let mut held = 0usize;
            for (op, n, dt) in ops {
                now += MS * dt;
                match op {
                    0 | 1 => {
                        let mut v = Vec::new();
                        for _ in 0..n {
                            v.extend_from_slice(&next.to_be_bytes());
                            stored_at.insert(next, now);
                            next += 1;
                        }
                        held += v.len();
                        p.store(Zeroizing::new(v), now);
                    }
                    2 => {
                        if let Some(out) = p.take(4 * n, now) {
                            prop_assert_eq!(out.len(), 4 * n);
                            for w in out.chunks(4) {
                                let id = u32::from_be_bytes(w.try_into().unwrap());
                                prop_assert!(seen.insert(id), "byte unit {} handed out twice", id);
                                prop_assert!(now - stored_at[&id] <= max_age, "stale unit {}", id);
                            }
                            held -= 4 * n;
                        }
                    }
                    _ => {
                        p.discard();
                        held = 0;
                    }
                }
                prop_assert!(p.held() <= held);
                let before = p.held();
                p.expire(now);
                held = p.held().min(held);
                prop_assert!(p.held() <= before);
            }
        }
    }
}
