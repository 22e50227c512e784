//! The t-tuple (6.3.5) and longest-repeated-substring (6.3.6) estimates, and the LRS length the
//! IID track's 5.2.5 test needs, from one suffix array and its LCP array.
//!
//! For every tuple length `t` we need `Q[t]`, the count of the most common `t`-tuple
//! (overlapping occurrences), and `S[t]`, the sum over distinct `t`-tuples of `C(count, 2)`.
//! Sorted suffixes that share a `t`-prefix are adjacent, so both come from the LCP intervals: an
//! interval of `m` suffixes whose common prefix is `l` long, inside a parent interval with common
//! prefix `p`, is one tuple occurring `m` times for every `t` in `p + 1 ..= l`. One stack pass
//! over the LCP array finds every interval; `S` is then a difference array and `Q[t]` the
//! largest interval with `l >= t` (a parent always holds at least as many suffixes as a child).
//!
//! The LCP array comes cheaply when no two suffixes share their first `64 / b` symbols (`b` bits
//! each; 64 bits of a bit string, 8 bytes of bytes), as in data of any entropy: each suffix's
//! first symbols packed into a `u64` sort the suffixes (a radix sort) and give each adjacent
//! pair's common prefix (leading zeros of their XOR). Otherwise a suffix array (divsufsort) and
//! Kasai's algorithm do it.

use alloc::vec;
use alloc::vec::Vec;

use super::Z_ALPHA;

/// Tuple statistics of one sequence.
#[derive(Clone, Debug)]
pub struct TupleCounts {
    /// Sequence length.
    pub n: usize,
    /// Length of the longest repeated substring (`v`).
    pub lrs_len: usize,
    /// `q[t]`: count of the most common `t`-tuple, for `t` in `1..=lrs_len` (`q[0]` unused).
    pub q: Vec<u64>,
    /// `s[t]`: sum over distinct `t`-tuples of `C(count, 2)`.
    pub s: Vec<u64>,
}

/// Suffix array of `text` (alphabet of bytes).
pub fn suffix_array(text: &[u8]) -> Vec<i32> {
    assert!(text.len() < i32::MAX as usize, "sequence too long");
    let mut sa = vec![0i32; text.len()];
    divsufsort::sort_in_place(text, &mut sa);
    sa
}

/// LCP array by Kasai et al.: `lcp[r]` is the common prefix length of the suffixes ranked `r - 1`
/// and `r` (`lcp[0] = 0`). Reuses `rank` as scratch.
pub fn lcp_array(text: &[u8], sa: &[i32]) -> Vec<u32> {
    let n = text.len();
    let mut rank = vec![0u32; n];
    for (r, &p) in sa.iter().enumerate() {
        rank[p as usize] = r as u32;
    }
    let mut lcp = vec![0u32; n];
    let mut h = 0usize;
    for i in 0..n {
        let r = rank[i] as usize;
        if r > 0 {
            let j = sa[r - 1] as usize;
            while i + h < n && j + h < n && text[i + h] == text[j + h] {
                h += 1;
            }
            lcp[r] = h as u32;
            h = h.saturating_sub(1);
        } else {
            h = 0;
        }
    }
    lcp
}

/// The LCP array (as [`lcp_array`] gives it, each value below 64) from the suffixes' first
/// `w = 64 / b` symbols as sorted keys, or `None` if two suffixes share their first `w` symbols
/// (the keys cannot then tell how far they agree).
///
/// The keys go straight into buckets by their top 12 bits (counted in a first pass), and each
/// bucket is sorted on its own, in cache. A suffix shorter than `w` has its key padded with
/// zeros and sorts before the suffixes whose keys equal its own (it is their prefix); there are
/// fewer than `w` of them, sorted apart and merged in.
fn lcp_from_keys(text: &[u8]) -> Option<Vec<u8>> {
    let n = text.len();
    // As for the suffix array (and the pair counts of `counts_from_lcp`, below 2^63).
    assert!(n < i32::MAX as usize, "sequence too long");
    let max = *text.iter().max()?;
    let b = (8 - max.leading_zeros() as usize).max(1);
    let w = 64 / b;
    let used = (w * b) as u32;
    let mask = if used == 64 {
        u64::MAX
    } else {
        (1u64 << used) - 1
    };
    // The keys of the suffixes at least w long, in text order.
    let keys = || {
        text.iter()
            .scan(0u64, move |r, &x| {
                *r = ((*r << b) | u64::from(x)) & mask;
                Some(*r << (64 - used))
            })
            .skip(w - 1)
    };
    // Radix sort, most significant 12 bits first: into 4096 buckets (few enough to write to all
    // at once from cache), each bucket by its next 12 bits, then an insertion sort for the keys
    // that share those 24 bits (a few: the data is nearly sorted by then).
    const DIGIT: u32 = 12;
    let buckets = |shift: u32, keys: &mut dyn Iterator<Item = u64>| {
        let mut start = vec![0usize; (1 << DIGIT) + 1];
        for k in keys {
            start[((k >> shift) & ((1 << DIGIT) - 1)) as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        start
    };
    let start = buckets(64 - DIGIT, &mut keys());
    let mut full = vec![0u64; start[1 << DIGIT]];
    let mut at = start.clone();
    for k in keys() {
        let slot = &mut at[(k >> (64 - DIGIT)) as usize];
        full[*slot] = k;
        *slot += 1;
    }
    let mut scratch = Vec::new();
    for bucket in start.windows(2) {
        let keys = &mut full[bucket[0]..bucket[1]];
        let shift = 64 - 2 * DIGIT;
        let sub = buckets(shift, &mut keys.iter().copied());
        scratch.clear();
        scratch.resize(keys.len(), 0);
        let mut at = sub;
        for &k in keys.iter() {
            let slot = &mut at[((k >> shift) & ((1 << DIGIT) - 1)) as usize];
            scratch[*slot] = k;
            *slot += 1;
        }
        for i in 1..scratch.len() {
            let k = scratch[i];
            let mut j = i;
            while j > 0 && scratch[j - 1] > k {
                scratch[j] = scratch[j - 1];
                j -= 1;
            }
            scratch[j] = k;
        }
        if scratch.windows(2).any(|k| k[0] == k[1]) {
            return None; // two suffixes share w symbols: no use sorting the rest
        }
        keys.copy_from_slice(&scratch);
    }
    // (key, length) of the suffixes shorter than w, shortest first among equal keys.
    let mut short: Vec<(u64, usize)> = (1..w.min(n + 1))
        .map(|len| {
            let key = text[n - len..]
                .iter()
                .fold(0u64, |acc, &x| (acc << b) | u64::from(x));
            (key << (64 - len * b), len)
        })
        .collect();
    short.sort_unstable();
    let mut lcp = Vec::with_capacity(n);
    let (mut f, mut s) = (0, 0);
    let mut prev: Option<(u64, usize)> = None;
    while f < full.len() || s < short.len() {
        let next = if s < short.len() && (f == full.len() || short[s].0 <= full[f]) {
            s += 1;
            short[s - 1]
        } else {
            f += 1;
            (full[f - 1], w)
        };
        let common = prev.map_or(0, |(key, len)| {
            ((key ^ next.0).leading_zeros() as usize / b)
                .min(len)
                .min(next.1)
        });
        if common >= w {
            return None;
        }
        lcp.push(common as u8);
        prev = Some(next);
    }
    Some(lcp)
}

/// Longest repeated substring length.
pub fn lrs_len(text: &[u8]) -> usize {
    if text.len() < 2 {
        return 0;
    }
    match lcp_from_keys(text) {
        Some(lcp) => lcp.into_iter().max().unwrap_or(0).into(),
        None => lcp_array(text, &suffix_array(text))
            .into_iter()
            .max()
            .unwrap_or(0) as usize,
    }
}

/// `Q` and `S` of `text` for every tuple length up to the LRS.
pub fn tuple_counts(text: &[u8]) -> TupleCounts {
    match lcp_from_keys(text) {
        Some(lcp) => counts_from_lcp(&lcp),
        None => counts_from_lcp(&lcp_array(text, &suffix_array(text))),
    }
}

/// `Q` and `S` from the LCP array of a text of `lcp.len()` symbols.
fn counts_from_lcp<T: Copy + Into<u32>>(lcp: &[T]) -> TupleCounts {
    let n = lcp.len();
    let lcp_at = |r: usize| lcp[r].into();
    let v = lcp.iter().map(|&l| l.into()).max().unwrap_or(0) as usize;
    // Pair counts stay below n^2 / 2 < 2^63 (n < 2^31, asserted where the LCP array is made).
    let mut s_diff = vec![0i64; v + 2];
    let mut q_at = vec![1u64; v + 2];
    // Stack of open intervals: (lcp value, left boundary rank).
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    let mut close = |l: u32, parent: u32, size: usize| {
        // An interval with common prefix l inside one with prefix parent: a tuple that occurs
        // `size` times for every t in parent+1..=l.
        let c = (size as i64) * (size as i64 - 1) / 2;
        s_diff[parent as usize + 1] += c;
        s_diff[l as usize + 1] -= c;
        let q = &mut q_at[l as usize];
        *q = (*q).max(size as u64);
    };
    for r in 1..=n {
        let cur = if r < n { lcp_at(r) } else { 0 };
        let mut left = r - 1;
        while let Some(&(l, lb)) = stack.last() {
            if l <= cur {
                break;
            }
            stack.pop();
            left = lb;
            let parent = stack.last().map_or(0, |t| t.0).max(cur);
            close(l, parent, r - lb);
        }
        if stack.last().is_none_or(|t| t.0 < cur) {
            stack.push((cur, left));
        }
    }
    let mut q = vec![0u64; v + 1];
    let mut best = 1u64;
    for t in (1..=v).rev() {
        best = best.max(q_at[t]);
        q[t] = best;
    }
    let mut s = vec![0u64; v + 1];
    let mut acc = 0i64;
    for t in 1..=v {
        acc += s_diff[t];
        s[t] = acc as u64;
    }
    TupleCounts {
        n,
        lrs_len: v,
        q,
        s,
    }
}

/// Estimates from tuple counts: `(t-tuple, LRS)`, each `None` where the standard says the test
/// cannot run (no tuple occurs 35 times; or the LRS is shorter than the cut-off `u`).
pub fn tuple_estimates(c: &TupleCounts) -> (Option<f64>, Option<f64>) {
    let n = c.n as f64;
    let v = c.lrs_len;
    // u: the smallest t whose most common tuple occurs fewer than 35 times.
    let u = (1..=v).find(|&t| c.q[t] < 35).unwrap_or(v + 1);
    let bound = |p: f64| {
        let pu = (p + Z_ALPHA * libm::sqrt(p * (1.0 - p) / (n - 1.0))).min(1.0);
        -libm::log2(pu)
    };
    let t_tuple = (1..u)
        .map(|t| libm::pow(c.q[t] as f64 / (n - t as f64 + 1.0), 1.0 / t as f64))
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))))
        .map(bound);
    let lrs = (v >= u).then(|| {
        let p_max = (u..=v)
            .map(|t| {
                let m = (c.n - t) as f64;
                let pairs = m * (m + 1.0) / 2.0;
                libm::pow(c.s[t] as f64 / pairs, 1.0 / t as f64)
            })
            .fold(0.0f64, f64::max);
        bound(p_max)
    });
    (t_tuple, lrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The LCP array from sorted keys is the suffix array's wherever it is given.
        #[test]
        fn lcp_from_keys_agrees_with_the_suffix_array(
            text in prop::collection::vec(any::<u8>(), 0..3000),
            bits in 1u32..=8,
            period in 0usize..200,
        ) {
            let mut text: Vec<u8> = text.iter().map(|&x| x >> (8 - bits)).collect();
            if period > 0 {
                for i in period..text.len() {
                    text[i] = text[i - period];
                }
            }
            if let Some(lcp) = lcp_from_keys(&text) {
                let lcp: Vec<u32> = lcp.into_iter().map(u32::from).collect();
                prop_assert_eq!(lcp, lcp_array(&text, &suffix_array(&text)));
            }
        }
    }

    /// Long random bit strings and bytes take the fast path, and agree.
    #[test]
    fn random_data_takes_the_fast_path() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let bits: Vec<u8> = (0..200_000).map(|_| (next() & 1) as u8).collect();
        let bytes: Vec<u8> = (0..200_000).map(|_| next() as u8).collect();
        for text in [bits, bytes] {
            let lcp = lcp_from_keys(&text).expect("no two suffixes share 64 bits");
            let lcp: Vec<u32> = lcp.into_iter().map(u32::from).collect();
            assert_eq!(lcp, lcp_array(&text, &suffix_array(&text)));
        }
    }
}
