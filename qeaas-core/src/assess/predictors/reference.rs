//! The predictors as first written (before the flat tables and the block-wise lag predictor):
//! straightforward, slow, and kept as the oracle the fast ones are tested against.

use std::collections::HashMap;
use std::vec;
use std::vec::Vec;

use super::{Predictions, Tally, LAG_D, LZ_B, MCW_WINDOWS, MMC_D};

/// One most-common-in-window predictor over symbols `0..k`: the most common symbol of the last
/// `w` samples, ties going to the one seen most recently.
struct Window {
    w: usize,
    counts: Vec<u32>,
    last_seen: Vec<usize>,
    frequent: u8,
    max_count: u32,
}

impl Window {
    fn new(w: usize, k: usize) -> Self {
        Self {
            w,
            counts: vec![0; k],
            last_seen: vec![0; k],
            frequent: 0,
            max_count: 0,
        }
    }

    fn add(&mut self, x: u8, at: usize) {
        let c = &mut self.counts[usize::from(x)];
        *c += 1;
        self.last_seen[usize::from(x)] = at;
        if *c >= self.max_count {
            self.max_count = *c;
            self.frequent = x;
        }
    }

    /// Slides the window: `x` enters at `at`, `out` leaves.
    fn slide(&mut self, out: u8, x: u8, at: usize) {
        self.counts[usize::from(out)] -= 1;
        self.counts[usize::from(x)] += 1;
        self.last_seen[usize::from(x)] = at;
        if out != self.frequent {
            if self.counts[usize::from(x)] >= self.max_count {
                self.max_count = self.counts[usize::from(x)];
                self.frequent = x;
            }
        } else {
            // The most common symbol lost a sample: find the most common again, most recent
            // first among ties.
            let mut best = (self.max_count - 1, at - self.w);
            for (s, (&c, &pos)) in self.counts.iter().zip(&self.last_seen).enumerate() {
                if c > best.0 || (c == best.0 && pos >= best.1) {
                    best = (c, pos);
                    self.frequent = s as u8;
                }
            }
            self.max_count = best.0;
        }
    }
}

/// MultiMCW prediction (6.3.7) over symbols `0..k`. Ties between windows go to the larger one.
pub fn multi_mcw(s: &[u8], k: usize) -> Option<Predictions> {
    let last_w = MCW_WINDOWS[3];
    if s.len() < last_w + 1 {
        return None;
    }
    let mut win: Vec<Window> = MCW_WINDOWS.iter().map(|&w| Window::new(w, k)).collect();
    for (i, &x) in s[..last_w].iter().enumerate() {
        for wd in win.iter_mut().filter(|wd| i < wd.w) {
            wd.add(x, i);
        }
    }
    let mut scores = [0u64; 4];
    let mut winner = 0usize;
    let mut tally = Tally::default();
    for i in MCW_WINDOWS[0]..s.len() {
        let x = s[i];
        if win[winner].frequent == x {
            tally.hit();
        } else {
            tally.miss();
        }
        for j in 0..4 {
            if i >= win[j].w && win[j].frequent == x {
                scores[j] += 1;
                if scores[j] >= scores[winner] {
                    winner = j;
                }
            }
        }
        for wd in win.iter_mut() {
            if i >= wd.w {
                let out = s[i - wd.w];
                wd.slide(out, x, i);
            }
        }
    }
    Some(tally.done((s.len() - MCW_WINDOWS[0]) as u64))
}

/// Lag prediction (6.3.8): predictor `d` guesses the sample `d` back; the one with the best
/// score so far predicts, ties going to the one that reached the score last (and, within one
/// step, to the longer lag), as in the reference implementation.
pub fn lag(s: &[u8], k: usize) -> Predictions {
    if k == 2 {
        return lag_binary(s);
    }
    let mut scores = [0u64; LAG_D];
    let (mut winner, mut high) = (0usize, 0u64);
    let mut tally = Tally::default();
    // For each symbol, the positions of its last (up to) 128 occurrences, newest last.
    let mut seen: Vec<Vec<usize>> = vec![Vec::new(); k];
    seen[usize::from(s[0])].push(0);
    for i in 1..s.len() {
        let x = s[i];
        if s[i - winner - 1] == x {
            tally.hit();
        } else {
            tally.miss();
        }
        let pos = &mut seen[usize::from(x)];
        let cutoff = i.saturating_sub(LAG_D);
        pos.retain(|&p| p >= cutoff);
        for &p in pos.iter().rev() {
            let d = i - p - 1;
            scores[d] += 1;
            if scores[d] >= high {
                winner = d;
                high = scores[d];
            }
        }
        pos.push(i);
    }
    tally.done(s.len() as u64 - 1)
}

fn lag_binary(s: &[u8]) -> Predictions {
    let mut scores = [0u64; LAG_D];
    let (mut winner, mut high) = (0usize, 0u64);
    let mut tally = Tally::default();
    // Bit d of `hist` is s[i - 1 - d].
    let mut hist: u128 = u128::from(s[0] & 1);
    for i in 1..s.len() {
        let x = s[i] & 1;
        if ((hist >> winner) & 1) as u8 == x {
            tally.hit();
        } else {
            tally.miss();
        }
        let valid = if i >= LAG_D {
            u128::MAX
        } else {
            (1u128 << i) - 1
        };
        let mut m = !(hist ^ if x == 1 { u128::MAX } else { 0 }) & valid;
        while m != 0 {
            let d = m.trailing_zeros() as usize;
            m &= m - 1;
            scores[d] += 1;
            if scores[d] >= high {
                winner = d;
                high = scores[d];
            }
        }
        hist = (hist << 1) | u128::from(x);
    }
    tally.done(s.len() as u64 - 1)
}

/// Counts of the symbols that followed one context, with the prediction (the most frequent
/// follower, ties to the larger symbol) kept up to date.
#[derive(Clone, Default)]
struct Followers {
    counts: Vec<(u8, u32)>,
    best: u32,
    prediction: u8,
}

impl Followers {
    /// Counts `y`; a follower not yet present is only added if `create`. True if it was added.
    fn count(&mut self, y: u8, create: bool) -> bool {
        let (c, added) = match self.counts.iter_mut().find(|e| e.0 == y) {
            Some(e) => {
                e.1 += 1;
                (e.1, false)
            }
            None if create => {
                self.counts.push((y, 1));
                (1, true)
            }
            None => return false,
        };
        if c > self.best || (c == self.best && y > self.prediction) {
            self.best = c;
            self.prediction = y;
        }
        added
    }
}

/// Packs up to 16 symbols into a map key.
fn key(x: &[u8]) -> u128 {
    x.iter().fold(0u128, |acc, &b| (acc << 8) | u128::from(b))
}

/// MultiMMC prediction (6.3.9): Markov models of order 1 to 16, each limited to `max_entries`
/// (context, follower) pairs; the model with the best score so far predicts, ties to the higher
/// order. As in the reference implementation, a step where the winning model has no prediction
/// for its context leaves the run of correct predictions as it was.
pub fn multi_mmc(s: &[u8], k: usize, max_entries: u32) -> Option<Predictions> {
    if s.len() < 3 {
        return None;
    }
    if k == 2 {
        return Some(multi_mmc_binary(s, max_entries));
    }
    let n = s.len() - 2;
    let mut models: Vec<HashMap<u128, Followers>> = (0..MMC_D).map(|_| HashMap::new()).collect();
    let mut entries = [0u32; MMC_D];
    for d in 0..MMC_D.min(n) {
        models[d]
            .entry(key(&s[..=d]))
            .or_default()
            .count(s[d + 1], true);
        entries[d] = 1;
    }
    let mut scores = [0u64; MMC_D];
    let mut winner = 0usize;
    let mut tally = Tally::default();
    for i in 2..s.len() {
        let y = s[i];
        let cur_winner = winner;
        let mut found = true;
        for d in 0..MMC_D.min(i - 1) {
            let ctx = key(&s[i - d - 1..i]);
            let model = &mut models[d];
            if found {
                if let Some(f) = model.get_mut(&ctx) {
                    if f.prediction == y {
                        scores[d] += 1;
                        if scores[d] >= scores[winner] {
                            winner = d;
                        }
                        if d == cur_winner {
                            tally.hit();
                        }
                    } else if d == cur_winner {
                        tally.miss();
                    }
                    if f.count(y, entries[d] < max_entries) {
                        entries[d] += 1;
                    }
                    continue;
                }
                // An unseen context: longer ones cannot have been seen either.
                found = false;
            }
            if entries[d] < max_entries {
                model.entry(ctx).or_default().count(y, true);
                entries[d] += 1;
            }
        }
    }
    Some(tally.done(n as u64))
}

/// Flat tables for binary contexts: entry `2 * c + y` of table `d` counts follower `y` of the
/// `d + 1`-bit context `c` (oldest bit most significant).
fn binary_tables(depth: usize) -> Vec<Vec<u32>> {
    (0..depth).map(|d| vec![0u32; 1 << (d + 2)]).collect()
}

fn multi_mmc_binary(s: &[u8], max_entries: u32) -> Predictions {
    let n = s.len() - 2;
    let mut t = binary_tables(MMC_D);
    let mut entries = [0u32; MMC_D];
    let mut ctx = 0usize;
    for d in 0..MMC_D.min(n) {
        ctx = (ctx << 1) | usize::from(s[d] & 1);
        t[d][2 * ctx + usize::from(s[d + 1] & 1)] = 1;
        entries[d] = 1;
    }
    let mut scores = [0u64; MMC_D];
    let mut winner = 0usize;
    let mut tally = Tally::default();
    for i in 2..s.len() {
        let y = usize::from(s[i] & 1);
        let cur_winner = winner;
        let mut found = true;
        let mut ctx = 0usize;
        for d in 0..MMC_D.min(i - 1) {
            ctx |= usize::from(s[i - d - 1] & 1) << d;
            let e = &mut t[d][2 * ctx..2 * ctx + 2];
            if found && (e[0] | e[1]) != 0 {
                let prediction = usize::from(e[0] <= e[1]);
                if prediction == y {
                    scores[d] += 1;
                    if scores[d] >= scores[winner] {
                        winner = d;
                    }
                    if d == cur_winner {
                        tally.hit();
                    }
                } else if d == cur_winner {
                    tally.miss();
                }
                if e[y] != 0 {
                    e[y] += 1;
                } else if entries[d] < max_entries {
                    e[y] = 1;
                    entries[d] += 1;
                }
                continue;
            }
            found = false;
            if entries[d] < max_entries {
                // As the reference implementation does: (re)start the pair's count at 1.
                e[y] = 1;
                entries[d] += 1;
            }
        }
    }
    tally.done(n as u64)
}

/// LZ78Y prediction (6.3.10): a dictionary of contexts of 1 to 16 samples (65 536 entries in
/// all); the context with the most frequent follower predicts, ties to the longer context.
pub fn lz78y(s: &[u8], k: usize, max_dict: u32) -> Option<Predictions> {
    if s.len() < LZ_B + 2 {
        return None;
    }
    if k == 2 {
        return Some(lz78y_binary(s, max_dict));
    }
    let mut dict: Vec<HashMap<u128, Followers>> = (0..LZ_B).map(|_| HashMap::new()).collect();
    let mut size = 0u32;
    for j in 1..=LZ_B {
        dict[j - 1]
            .entry(key(&s[LZ_B - j..LZ_B]))
            .or_default()
            .count(s[LZ_B], true);
        size += 1;
    }
    let mut tally = Tally::default();
    for i in LZ_B + 1..s.len() {
        let y = s[i];
        let mut best: Option<(u32, u8)> = None;
        for j in (1..=LZ_B).rev() {
            let ctx = key(&s[i - j..i]);
            if let Some(f) = dict[j - 1].get_mut(&ctx) {
                if best.is_none_or(|b| f.best > b.0) {
                    best = Some((f.best, f.prediction));
                }
                f.count(y, true);
            } else if size < max_dict {
                dict[j - 1].entry(ctx).or_default().count(y, true);
                size += 1;
            }
        }
        match best {
            Some((_, p)) if p == y => tally.hit(),
            _ => tally.miss(),
        }
    }
    Some(tally.done((s.len() - LZ_B - 1) as u64))
}

fn lz78y_binary(s: &[u8], max_dict: u32) -> Predictions {
    let mut t = binary_tables(LZ_B);
    let mut size = 0u32;
    let mut ctx = 0usize;
    for j in 0..LZ_B {
        ctx |= usize::from(s[LZ_B - j - 1] & 1) << j;
        t[j][2 * ctx + usize::from(s[LZ_B] & 1)] = 1;
        size += 1;
    }
    let mut tally = Tally::default();
    for i in LZ_B + 1..s.len() {
        let y = usize::from(s[i] & 1);
        let full = s[i - LZ_B..i]
            .iter()
            .fold(0usize, |acc, &b| (acc << 1) | usize::from(b & 1));
        let mut best: Option<(u32, usize)> = None;
        for j in (1..=LZ_B).rev() {
            let ctx = full & ((1 << j) - 1);
            let e = &mut t[j - 1][2 * ctx..2 * ctx + 2];
            let (count, prediction) = if e[0] > e[1] { (e[0], 0) } else { (e[1], 1) };
            if count > 0 {
                if best.is_none_or(|b| count > b.0) {
                    best = Some((count, prediction));
                }
                e[y] += 1;
            } else if size < max_dict {
                e[y] = 1;
                size += 1;
            }
        }
        match best {
            Some((_, p)) if p == y => tally.hit(),
            _ => tally.miss(),
        }
    }
    tally.done((s.len() - LZ_B - 1) as u64)
}
