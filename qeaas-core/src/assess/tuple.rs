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

/// Longest repeated substring length.
pub fn lrs_len(text: &[u8]) -> usize {
    if text.len() < 2 {
        return 0;
    }
    let sa = suffix_array(text);
    lcp_array(text, &sa).into_iter().max().unwrap_or(0) as usize
}

/// `Q` and `S` of `text` for every tuple length up to the LRS.
pub fn tuple_counts(text: &[u8]) -> TupleCounts {
    let n = text.len();
    let sa = suffix_array(text);
    let lcp = lcp_array(text, &sa);
    drop(sa);
    let v = lcp.iter().copied().max().unwrap_or(0) as usize;
    let mut s_diff = vec![0i128; v + 2];
    let mut q_at = vec![1u64; v + 2];
    // Stack of open intervals: (lcp value, left boundary rank).
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    let mut close = |l: u32, parent: u32, size: usize| {
        // An interval with common prefix l inside one with prefix parent: a tuple that occurs
        // `size` times for every t in parent+1..=l.
        let c = (size as i128) * (size as i128 - 1) / 2;
        s_diff[parent as usize + 1] += c;
        s_diff[l as usize + 1] -= c;
        let q = &mut q_at[l as usize];
        *q = (*q).max(size as u64);
    };
    for r in 1..=n {
        let cur = if r < n { lcp[r] } else { 0 };
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
    let mut acc = 0i128;
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
