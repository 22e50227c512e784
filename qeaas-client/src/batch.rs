//! The request batcher the faces share (sans-IO): requests that wait together are answered by
//! one GET to the daemon, and the answer is cut into consecutive, disjoint [`PoolBytes`], so
//! each pool byte still goes to exactly one requester. The faces only move requests in and
//! slices out; the cutting rule lives here and is tested here.

use alloc::vec::Vec;

use crate::bytes::PoolBytes;

/// Requests `T` waiting for one GET, with their lengths.
#[derive(Debug)]
pub struct Batch<T> {
    items: Vec<(T, usize)>,
    total: usize,
    max: usize,
}

impl<T> Batch<T> {
    /// An empty batch that asks for at most `max` bytes, unless one request alone is larger.
    pub fn new(max: usize) -> Self {
        Batch {
            items: Vec::new(),
            total: 0,
            max,
        }
    }

    /// Adds a request of `n` bytes, or hands it back if it does not fit (the first request of
    /// a batch always fits, whatever its size).
    pub fn add(&mut self, item: T, n: usize) -> Result<(), T> {
        if !self.items.is_empty() && self.total.saturating_add(n) > self.max {
            return Err(item);
        }
        self.total += n;
        self.items.push((item, n));
        Ok(())
    }

    /// Bytes the batch needs.
    pub fn total(&self) -> usize {
        self.total
    }

    /// True if no request waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Serves from elsewhere (e.g. a prefetch buffer) each request `from` has bytes for: those
    /// leave the batch with their bytes, the others stay for the GET.
    pub fn serve_from(
        &mut self,
        mut from: impl FnMut(usize) -> Option<PoolBytes>,
    ) -> Vec<(T, PoolBytes)> {
        let mut served = Vec::new();
        let mut kept = Vec::with_capacity(self.items.len());
        for (t, n) in self.items.drain(..) {
            match from(n) {
                Some(b) => served.push((t, b)),
                None => kept.push((t, n)),
            }
        }
        self.items = kept;
        self.total = self.items.iter().map(|(_, n)| n).sum();
        served
    }

    /// Cuts `bytes` (at least [`Batch::total`] long) into one slice per request, in order, and
    /// returns them with the bytes left over. `Err` gives the requests back, unserved, if
    /// `bytes` is too short; `bytes` is wiped either way.
    #[allow(clippy::type_complexity)]
    pub fn serve(self, mut bytes: PoolBytes) -> Result<(Vec<(T, PoolBytes)>, PoolBytes), Vec<T>> {
        if bytes.len() < self.total {
            return Err(self.fail());
        }
        let mut out = Vec::with_capacity(self.items.len());
        for (t, n) in self.items {
            let slice = bytes.split_off_front(n).expect("length checked above");
            out.push((t, slice));
        }
        Ok((out, bytes))
    }

    /// The requests, unserved (the GET failed).
    pub fn fail(self) -> Vec<T> {
        self.items.into_iter().map(|(t, _)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_always_fits_then_max_holds() {
        let mut b = Batch::new(10);
        assert!(b.add('a', 20).is_ok());
        assert_eq!(b.add('b', 1), Err('b'));
        let mut b = Batch::new(10);
        b.add('a', 4).unwrap();
        b.add('b', 6).unwrap();
        assert_eq!(b.add('c', 1), Err('c'));
        assert_eq!(b.total(), 10);
    }

    #[test]
    fn short_answers_serve_nobody() {
        let mut b = Batch::new(10);
        b.add(1, 4).unwrap();
        b.add(2, 4).unwrap();
        assert_eq!(b.serve(PoolBytes::zeroed(7)).unwrap_err(), vec![1, 2]);
    }

    #[test]
    fn serve_from_takes_out_and_recounts() {
        let mut b = Batch::new(100);
        for i in 0..5 {
            b.add(i, 10 + i).unwrap();
        }
        let served = b.serve_from(|n| (n % 2 == 0).then(|| PoolBytes::zeroed(n)));
        let ids: Vec<usize> = served.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, vec![0, 2, 4]);
        assert_eq!((b.len(), b.total()), (2, 11 + 13));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the lengths, the slices are consecutive and disjoint, each exactly as long
        /// as asked, and together with the rest they are the answer, each byte once.
        #[test]
        fn slices_are_disjoint_and_cover_the_answer(
            lens in proptest::collection::vec(1usize..300, 1..20),
            extra in 0usize..100,
        ) {
            // 4-byte units numbered in order, so a byte served twice or out of place shows.
            let total: usize = lens.iter().sum::<usize>() + extra;
            let raw: Vec<u8> = (0..total as u32).flat_map(|x| x.to_le_bytes()).collect();
            let mut b4 = Batch::new(usize::MAX);
            for (i, &n) in lens.iter().enumerate() {
                b4.add(i, 4 * n).unwrap();
            }
            let (slices, rest) = b4.serve(PoolBytes::new(raw.clone())).unwrap();
            let mut joined = Vec::new();
            for (k, (i, s)) in slices.iter().enumerate() {
                prop_assert_eq!(k, *i);
                prop_assert_eq!(s.len(), 4 * lens[k]);
                joined.extend_from_slice(s);
            }
            prop_assert_eq!(rest.len(), 4 * extra);
            joined.extend_from_slice(&rest);
            prop_assert_eq!(joined, raw);
        }
    }
}
