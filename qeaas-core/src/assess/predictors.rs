//! The predictor estimates of SP 800-90B 6.3.7 to 6.3.10 (MultiMCW, lag, MultiMMC, LZ78Y) and
//! the prediction estimate they share (6.3.7 steps 4 and 5).
//!
//! Each predictor guesses the next sample from the past ones and counts its correct guesses `C`
//! out of `N` and its longest run of correct guesses. Binary data gets dedicated code (bit
//! patterns index flat tables, the lag predictor works 64 steps at a time) because the bit string
//! of an 8-bit file is 8 million samples. Ties are broken as NIST's reference implementation
//! breaks them (stated at each predictor), so the counts agree exactly with it; the first,
//! straightforward versions are kept (`reference`, tests only) and the fast ones are tested
//! against them.
//!
//! Every predictor that picks the best of several sub-predictors by score does it as
//! `if score[j] >= score[winner] { winner = j }` after a correct guess of `j`. Scores only grow
//! by one, so `score[winner]` is always the highest score: the code keeps it in `high`.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::Z_ALPHA;

/// The outcome of running one predictor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Predictions {
    /// Correct predictions.
    pub correct: u64,
    /// Predictions made.
    pub total: u64,
    /// Longest run of correct predictions.
    pub longest_run: u64,
}

#[derive(Default)]
struct Tally {
    correct: u64,
    run: u64,
    longest_run: u64,
}

impl Tally {
    fn hit(&mut self) {
        self.guess(true);
    }
    fn miss(&mut self) {
        self.guess(false);
    }
    /// A guess, right or wrong, without a branch (on random data it is a coin toss).
    fn guess(&mut self, right: bool) {
        let r = u64::from(right);
        self.correct += r;
        self.run = (self.run + 1) * r;
        self.longest_run = self.longest_run.max(self.run);
    }
    fn done(self, total: u64) -> Predictions {
        Predictions {
            correct: self.correct,
            total,
            longest_run: self.longest_run,
        }
    }
}

/// `ln` of the probability that no run of `r` correct predictions occurs in `n` trials each
/// correct with probability `p` (6.3.7 step 5, through the root `x` of `1 - x + q p^r x^(r+1)`).
fn log_prob_no_run(p: f64, r: f64, n: f64) -> f64 {
    let q = 1.0 - p;
    // Iterate on y = x - 1 rather than x: ln(x) is then ln_1p(y), exact even when y is tiny.
    let c = q * libm::pow(p, r);
    let mut y = 0.0f64;
    for _ in 0..=65 {
        let next = c * libm::pow(1.0 + y, r + 1.0);
        if next - y <= f64::EPSILON * (1.0 + next) {
            y = next;
            break;
        }
        y = next;
    }
    let x = 1.0 + y;
    libm::log(1.0 - p * x) - libm::log((r + 1.0 - r * x) * q) - (n + 1.0) * libm::log1p(y)
}

/// The prediction estimate (6.3.7 steps 4-5): min-entropy from the global rate of correct
/// predictions and from the longest run, for an alphabet of `k` symbols.
pub fn prediction_estimate(p: Predictions, k: usize) -> f64 {
    let n = p.total as f64;
    let p_global = p.correct as f64 / n;
    let p_global_u = if p.correct > 0 {
        (p_global + Z_ALPHA * libm::sqrt(p_global * (1.0 - p_global) / (n - 1.0))).min(1.0)
    } else {
        1.0 - libm::pow(0.01, 1.0 / n)
    };
    let mut p_max = p_global_u.max(1.0 / k as f64);
    let r = (p.longest_run + 1) as f64;
    let target = libm::log(0.99);
    // P_local: the p at which a longest run of r-1 is the 99% bound. Only searched when it can
    // exceed the global bound, i.e. when at p_max a run of r is still likely.
    if p_max < 1.0 && log_prob_no_run(p_max, r, n) > target {
        let p_local = super::bisect_decreasing(|x| log_prob_no_run(x, r, n), target, p_max, 1.0);
        p_max = p_max.max(p_local);
    }
    -libm::log2(p_max)
}

const MCW_WINDOWS: [usize; 4] = [63, 255, 1023, 4095];

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
    if k == 2 {
        return Some(multi_mcw_binary(s));
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

/// MultiMCW on bits. The windows are odd, so a full window's most common bit is its majority,
/// never a tie; and every prediction that counts comes from a full window (the smallest is full
/// when predictions start, a larger one scores only once full, and only a window that scored can
/// win). A window is then just its count of ones.
fn multi_mcw_binary(s: &[u8]) -> Predictions {
    let mut ones = [0usize; 4];
    let mut scores = [0u64; 4];
    let (mut winner, mut high) = (0usize, 0u64);
    let mut tally = Tally::default();
    for i in 0..s.len() {
        let x = usize::from(s[i] & 1);
        if i >= MCW_WINDOWS[0] {
            // Without branches: every guess is a coin toss on random data.
            let guess = |j: usize| usize::from(2 * ones[j] > MCW_WINDOWS[j]);
            tally.guess(guess(winner) == x);
            for j in 0..4 {
                let right = (i >= MCW_WINDOWS[j]) & (guess(j) == x);
                scores[j] += u64::from(right);
                let take = right & (scores[j] >= high);
                winner = if take { j } else { winner };
                high = if take { scores[j] } else { high };
            }
        }
        for j in 0..4 {
            ones[j] += x;
            if i >= MCW_WINDOWS[j] {
                ones[j] -= usize::from(s[i - MCW_WINDOWS[j]] & 1);
            }
        }
    }
    tally.done((s.len() - MCW_WINDOWS[0]) as u64)
}

const LAG_D: usize = 128;

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

/// The low bits of `s` packed 64 to a word (bit `t` of word `w` is `s[64 w + t]`), with a zero
/// word after the last.
fn pack_bits(s: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; s.len() / 64 + 2];
    for (w, chunk) in words.iter_mut().zip(s.chunks(64)) {
        *w = chunk
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 1) | u64::from(b & 1));
    }
    words
}

/// Lag prediction on bits, 64 steps at a time once every lag has a sample to point at. A lag
/// whose score is more than 64 below the highest cannot reach it within 64 steps, so it cannot
/// win there: its correct guesses are counted for the whole block at once (a popcount), and
/// only the few lags near the top are followed step by step.
fn lag_binary(s: &[u8]) -> Predictions {
    let n = s.len();
    let mut scores = [0u64; LAG_D];
    let (mut winner, mut high) = (0usize, 0u64);
    let mut tally = Tally::default();
    let bit = |i: usize| s[i] & 1;
    let warm = n.min(LAG_D);
    for i in 1..warm {
        let x = bit(i);
        if bit(i - winner - 1) == x {
            tally.hit();
        } else {
            tally.miss();
        }
        for d in 0..i {
            if bit(i - d - 1) == x {
                scores[d] += 1;
                if scores[d] >= high {
                    winner = d;
                    high = scores[d];
                }
            }
        }
    }
    let words = pack_bits(s);
    let mut agree = [0u64; LAG_D];
    let mut near = [0usize; LAG_D];
    // Blocks start at multiples of 64 (LAG_D is one): block q is word q, and the 128 samples
    // before it are words q - 2 and q - 1.
    let mut q = LAG_D / 64;
    while 64 * q < n {
        let i = 64 * q;
        let len = (n - i).min(64);
        let valid = if len == 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        let cur = words[q];
        let before = u128::from(words[q - 1]) | (u128::from(words[q]) << 64);
        let older = u128::from(words[q - 2]) | (u128::from(words[q - 1]) << 64);
        let mut nears = 0;
        for d in 0..LAG_D {
            // The 64 samples d + 1 before the block's: bit t of `a` says lag d guesses step
            // i + t right.
            let back = if d < 64 {
                (before >> (63 - d)) as u64
            } else {
                (older >> (127 - d)) as u64
            };
            let a = !(cur ^ back) & valid;
            if scores[d] + len as u64 >= high {
                agree[d] = a;
                near[nears] = d;
                nears += 1;
            } else {
                scores[d] += u64::from(a.count_ones());
            }
        }
        for t in 0..len {
            tally.guess(bit(i + t - winner - 1) == bit(i + t));
            for &d in &near[..nears] {
                let right = (agree[d] >> t) & 1 == 1;
                scores[d] += u64::from(right);
                let take = right & (scores[d] >= high);
                winner = if take { d } else { winner };
                high = if take { scores[d] } else { high };
            }
        }
        q += 1;
    }
    tally.done(n as u64 - 1)
}

const MMC_D: usize = 16;
const MMC_MAX_ENTRIES: u32 = 100_000;

const NONE: u32 = u32::MAX;

/// One (follower, count) pair of a context, in a list shared by all contexts.
#[derive(Clone, Copy)]
struct Node {
    next: u32,
    count: u32,
    y: u8,
}

/// The symbols that followed one context (a list of [`Node`]s from `head`), with the
/// prediction (the most frequent follower, ties to the larger symbol) kept up to date. A context
/// is present once it has a follower (`best > 0`).
#[derive(Clone, Copy)]
struct Followers {
    head: u32,
    best: u32,
    prediction: u8,
}

impl Followers {
    const EMPTY: Self = Self {
        head: NONE,
        best: 0,
        prediction: 0,
    };

    /// The prediction, after counting `y` as `c` times seen.
    fn seen(&mut self, y: u8, c: u32) {
        if c > self.best || (c == self.best && y > self.prediction) {
            self.best = c;
            self.prediction = y;
        }
    }

    /// Counts `y`; a follower not yet present is only added if `create`. True if it was added.
    /// The list is in order of first appearance, so that on skewed data the common followers
    /// come first.
    fn count(&mut self, pool: &mut Vec<Node>, y: u8, create: bool) -> bool {
        let (mut at, mut last) = (self.head, NONE);
        while at != NONE {
            let node = &mut pool[at as usize];
            if node.y == y {
                node.count += 1;
                let c = node.count;
                self.seen(y, c);
                return false;
            }
            last = at;
            at = node.next;
        }
        if !create {
            return false;
        }
        let new = pool.len() as u32;
        pool.push(Node {
            next: NONE,
            count: 1,
            y,
        });
        if last == NONE {
            self.head = new;
        } else {
            pool[last as usize].next = new;
        }
        self.seen(y, 1);
        true
    }
}

/// Bits of a [`Table`] slot that hold an index; the rest hold a tag from the key's hash.
const SLOT_INDEX_BITS: u32 = 17;

/// An open-addressing table of contexts (linear probing), sized once for the most contexts it
/// will ever hold so that it stays at most half full. A slot holds the context's index plus one
/// (0: empty) and, above it, a tag of its hash, so that a probe only reads the keys of likely
/// matches.
struct Table {
    slots: Vec<u32>,
    shift: u32,
    keys: Vec<u128>,
    ctx: Vec<Followers>,
}

impl Table {
    fn new(capacity: usize) -> Self {
        assert!(capacity < 1 << SLOT_INDEX_BITS, "table capacity");
        let size = (2 * capacity).next_power_of_two().max(2);
        Self {
            slots: vec![0; size],
            shift: 64 - size.trailing_zeros(),
            keys: Vec::with_capacity(capacity),
            ctx: Vec::with_capacity(capacity),
        }
    }

    /// The first slot `key` may be in, and its tag.
    fn home(&self, key: u128) -> (usize, u32) {
        let mut x = (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ ((key >> 64) as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let tag = ((x >> 8) as u32) >> SLOT_INDEX_BITS;
        ((x >> self.shift) as usize, tag)
    }

    /// Reads the first slot `key` may be in, so that the lookups of one step wait for memory
    /// together rather than one after the other.
    fn touch(&self, key: u128) -> u32 {
        self.slots[self.home(key).0]
    }

    /// The slot of `key`, or the empty slot where it would go; and the value a slot of it holds
    /// but for the index.
    fn probe(&self, key: u128) -> (usize, Option<usize>, u32) {
        let mask = self.slots.len() - 1;
        let (mut i, tag) = self.home(key);
        let index_mask = (1 << SLOT_INDEX_BITS) - 1;
        loop {
            let v = self.slots[i];
            if v == 0 {
                return (i, None, tag << SLOT_INDEX_BITS);
            }
            if v >> SLOT_INDEX_BITS == tag {
                let at = (v & index_mask) as usize - 1;
                if self.keys[at] == key {
                    return (i, Some(at), tag << SLOT_INDEX_BITS);
                }
            }
            i = (i + 1) & mask;
        }
    }
}

/// The contexts of one length, each with its followers. One symbol indexes a flat table of
/// every follower's count and two index a flat table of follower lists (symbols are below 256);
/// longer contexts are found in a [`Table`].
enum Contexts {
    Counts {
        counts: Vec<u32>,
        ctx: Vec<Followers>,
    },
    Flat(Vec<Followers>),
    Hashed(Table),
}

impl Contexts {
    /// Contexts of `len` symbols, at most `capacity` of them.
    fn new(len: usize, capacity: usize) -> Self {
        match len {
            1 => Contexts::Counts {
                counts: vec![0; 256 * 256],
                ctx: vec![Followers::EMPTY; 256],
            },
            2 => Contexts::Flat(vec![Followers::EMPTY; 256 * 256]),
            _ => Contexts::Hashed(Table::new(capacity)),
        }
    }

    /// The context `key` (its symbols packed by [`key`]), if present.
    fn find(&self, key: u128) -> Option<usize> {
        match self {
            Contexts::Counts { ctx, .. } | Contexts::Flat(ctx) => {
                let h = key as usize;
                (ctx[h].best > 0).then_some(h)
            }
            Contexts::Hashed(t) => t.probe(key).1,
        }
    }

    /// The followers of a present context.
    fn get(&self, h: usize) -> Followers {
        match self {
            Contexts::Counts { ctx, .. } | Contexts::Flat(ctx) => ctx[h],
            Contexts::Hashed(t) => t.ctx[h],
        }
    }

    /// Counts follower `y` of the present context `h` (see [`Followers::count`]).
    fn count(&mut self, h: usize, pool: &mut Vec<Node>, y: u8, create: bool) -> bool {
        match self {
            Contexts::Counts { counts, ctx } => {
                let c = &mut counts[h * 256 + usize::from(y)];
                if *c == 0 && !create {
                    return false;
                }
                *c += 1;
                let c = *c;
                ctx[h].seen(y, c);
                c == 1
            }
            Contexts::Flat(ctx) => ctx[h].count(pool, y, create),
            Contexts::Hashed(t) => t.ctx[h].count(pool, y, create),
        }
    }

    /// Adds the absent context `key` with its first follower `y`.
    fn insert(&mut self, key: u128, pool: &mut Vec<Node>, y: u8) {
        let h = match self {
            Contexts::Counts { .. } | Contexts::Flat(_) => key as usize,
            Contexts::Hashed(t) => {
                let (slot, found, tag) = t.probe(key);
                debug_assert!(found.is_none() && t.keys.len() < t.slots.len() / 2);
                t.keys.push(key);
                t.ctx.push(Followers::EMPTY);
                t.slots[slot] = tag | t.keys.len() as u32;
                t.keys.len() - 1
            }
        };
        self.count(h, pool, y, true);
    }
}

/// Packs up to 16 symbols into a key, the oldest in the highest byte.
fn key(x: &[u8]) -> u128 {
    x.iter().fold(0u128, |acc, &b| (acc << 8) | u128::from(b))
}

/// MultiMMC prediction (6.3.9): Markov models of order 1 to 16, each limited to 100 000
/// (context, follower) pairs; the model with the best score so far predicts, ties to the higher
/// order. As in the reference implementation, a step where the winning model has no prediction
/// for its context leaves the run of correct predictions as it was.
pub fn multi_mmc(s: &[u8], k: usize) -> Option<Predictions> {
    multi_mmc_capped(s, k, MMC_MAX_ENTRIES)
}

/// [`multi_mmc`] with `max_entries` pairs per model (the tests make it small).
fn multi_mmc_capped(s: &[u8], k: usize, max_entries: u32) -> Option<Predictions> {
    if s.len() < 3 {
        return None;
    }
    if k == 2 {
        return Some(multi_mmc_binary(s, max_entries));
    }
    let n = s.len() - 2;
    let cap = max_entries as usize;
    let mut models: Vec<Contexts> = (1..=MMC_D).map(|l| Contexts::new(l, cap)).collect();
    // Follower lists, one pool per model (each model's lists close together).
    let mut pools: Vec<Vec<Node>> = (0..MMC_D).map(|_| Vec::new()).collect();
    let mut entries = [0u32; MMC_D];
    for d in 0..MMC_D.min(n) {
        models[d].insert(key(&s[..=d]), &mut pools[d], s[d + 1]);
        entries[d] = 1;
    }
    // The orders from `open` up are full: past an unseen context there is nothing left to do.
    let mut open = MMC_D;
    let mut scores = [0u64; MMC_D];
    let (mut winner, mut high) = (0usize, 0u64);
    let mut tally = Tally::default();
    for i in 2..s.len() {
        let y = s[i];
        let cur_winner = winner;
        if open > 2 {
            // While longer models still take new contexts, each step inserts into most of them:
            // read their slots first, all at once.
            let mut ctx = 0u128;
            let mut touched = 0u32;
            for d in 0..open.min(i - 1) {
                ctx |= u128::from(s[i - d - 1]) << (8 * d);
                if let Contexts::Hashed(t) = &models[d] {
                    touched ^= t.touch(ctx);
                }
            }
            core::hint::black_box(touched);
        }
        let mut found = true;
        let mut ctx = 0u128;
        for d in 0..MMC_D.min(i - 1) {
            ctx |= u128::from(s[i - d - 1]) << (8 * d);
            let model = &mut models[d];
            if found {
                if let Some(h) = model.find(ctx) {
                    if model.get(h).prediction == y {
                        scores[d] += 1;
                        if scores[d] >= high {
                            winner = d;
                            high = scores[d];
                        }
                        if d == cur_winner {
                            tally.hit();
                        }
                    } else if d == cur_winner {
                        tally.miss();
                    }
                    if model.count(h, &mut pools[d], y, entries[d] < max_entries) {
                        entries[d] += 1;
                    }
                    continue;
                }
                // An unseen context: longer ones cannot have been seen either.
                found = false;
            }
            if d >= open {
                break;
            }
            if entries[d] < max_entries {
                model.insert(ctx, &mut pools[d], y);
                entries[d] += 1;
            }
        }
        while open > 0 && entries[open - 1] >= max_entries {
            open -= 1;
        }
    }
    Some(tally.done(n as u64))
}

/// Where the table of binary contexts of `d + 1` bits starts in one flat array of all of them
/// (`2^(d+1)` contexts each, after those of 1 to `d` bits).
const fn binary_offset(d: usize) -> usize {
    (1 << (d + 1)) - 2
}

/// Entries of the binary tables of contexts of 1 to 16 bits (MultiMMC's and LZ78Y's depth).
const BINARY_LEN: usize = binary_offset(16);

/// Flat tables for binary contexts of 1 to 16 bits: entry `binary_offset(d) + c` holds the
/// counts of followers 0 and 1 of the `d + 1`-bit context `c`. (A fixed length, so that indices
/// by constant offsets and masks need no bounds checks.)
fn binary_tables() -> Box<[[u32; 2]; BINARY_LEN]> {
    vec![[0u32; 2]; BINARY_LEN]
        .into_boxed_slice()
        .try_into()
        .expect("BINARY_LEN entries")
}

fn multi_mmc_binary(s: &[u8], max_entries: u32) -> Predictions {
    let n = s.len() - 2;
    let mut t = binary_tables();
    let mut entries = [0u32; MMC_D];
    let mut ctx = 0usize;
    for d in 0..MMC_D.min(n) {
        ctx = (ctx << 1) | usize::from(s[d] & 1);
        t[binary_offset(d) + ctx][usize::from(s[d + 1] & 1)] = 1;
        entries[d] = 1;
    }
    let mut scores = [0u64; MMC_D];
    let (mut winner, mut high) = (0usize, 0u64);
    let mut tally = Tally::default();
    // Bit d of `hist` is s[i - 1 - d]: the context of d + 1 bits is its low d + 1 bits.
    let mut hist = usize::from(s[0] & 1);
    // The first steps, with fewer than 16 samples behind them.
    let warm = s.len().min(MMC_D + 1);
    for i in 2..warm {
        hist = (hist << 1) | usize::from(s[i - 1] & 1);
        let y = usize::from(s[i] & 1);
        let cur_winner = winner;
        let mut found = true;
        for d in 0..i - 1 {
            let e = &mut t[binary_offset(d) + (hist & ((2 << d) - 1))];
            if found && (e[0] | e[1]) != 0 {
                let right = usize::from(e[0] <= e[1]) == y;
                if right {
                    scores[d] += 1;
                    if scores[d] >= high {
                        winner = d;
                        high = scores[d];
                    }
                }
                if d == cur_winner {
                    tally.guess(right);
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
    // Then all 16 models at every step, 64 steps at a time: the models' counts do not depend on
    // the scores, so a block first runs the models, noting per step which predicted rightly
    // (bit b of `right[d]`: model d at step b of the block) and how many predicted at all (the
    // ones before the first unseen context, `found[b]`), then keeps the scores as the lag
    // predictor does: only models within 64 of the top score are followed step by step. The 16
    // models are written out one by one (constant offsets and masks); a model that can never
    // reach `max_entries` pairs skips that check.
    let mut found = [0u8; 64];
    let mut near = [0usize; MMC_D];
    let mut i0 = warm;
    while i0 < s.len() {
        let steps = (s.len() - i0).min(64);
        let mut right = [0u64; MMC_D];
        for b in 0..steps {
            let i = i0 + b;
            hist = ((hist << 1) | usize::from(s[i - 1] & 1)) & ((1 << MMC_D) - 1);
            let y = usize::from(s[i] & 1);
            let mut len = MMC_D as u8;
            macro_rules! model {
                ($d:expr) => {{
                    let e = &mut t[binary_offset($d) + (hist & ((2 << $d) - 1))];
                    if len == MMC_D as u8 && (e[0] | e[1]) != 0 {
                        right[$d] |= u64::from(usize::from(e[0] <= e[1]) == y) << b;
                        if (4 << $d) <= max_entries {
                            e[y] += 1;
                        } else {
                            let seen = e[y] != 0;
                            let add = seen | (entries[$d] < max_entries);
                            e[y] += u32::from(add);
                            entries[$d] += u32::from(add & !seen);
                        }
                    } else {
                        len = len.min($d);
                        if entries[$d] < max_entries {
                            e[y] = 1;
                            entries[$d] += 1;
                        }
                    }
                }};
            }
            model!(0);
            model!(1);
            model!(2);
            model!(3);
            model!(4);
            model!(5);
            model!(6);
            model!(7);
            model!(8);
            model!(9);
            model!(10);
            model!(11);
            model!(12);
            model!(13);
            model!(14);
            model!(15);
            found[b] = len;
        }
        let mut nears = 0;
        for d in 0..MMC_D {
            if scores[d] + steps as u64 >= high {
                near[nears] = d;
                nears += 1;
            } else {
                scores[d] += u64::from(right[d].count_ones());
            }
        }
        for b in 0..steps {
            if winner < usize::from(found[b]) {
                tally.guess((right[winner] >> b) & 1 == 1);
            }
            for &d in &near[..nears] {
                if (right[d] >> b) & 1 == 1 {
                    scores[d] += 1;
                    if scores[d] >= high {
                        winner = d;
                        high = scores[d];
                    }
                }
            }
        }
        i0 += steps;
    }
    tally.done(n as u64)
}

const LZ_B: usize = 16;
const LZ_MAX_DICT: u32 = 65_536;

/// A present context's candidate prediction, ordered as LZ78Y picks: the most frequent follower,
/// ties to the longer context (`len` up to 16).
fn lz_candidate(count: u32, len: usize, prediction: u8) -> u64 {
    (u64::from(count) << 13) | ((len as u64) << 8) | u64::from(prediction)
}

/// LZ78Y prediction (6.3.10): a dictionary of contexts of 1 to 16 samples (65 536 entries in
/// all); the context with the most frequent follower predicts, ties to the longer context.
///
/// Until the dictionary is full every step adds its absent contexts, longest first, so a present
/// context's shorter suffixes are present too, except possibly after the step that filled it
/// (the context it added last, if its suffix was absent then: the "orphan"). Once full, the
/// contexts of a step are looked up shortest first and the first absent one ends the search,
/// unless the orphan may follow.
pub fn lz78y(s: &[u8], k: usize) -> Option<Predictions> {
    lz78y_capped(s, k, LZ_MAX_DICT)
}

/// [`lz78y`] with a dictionary of `max_dict` entries (the tests make it small).
fn lz78y_capped(s: &[u8], k: usize, max_dict: u32) -> Option<Predictions> {
    if s.len() < LZ_B + 2 {
        return None;
    }
    if k == 2 {
        return Some(lz78y_binary(s, max_dict));
    }
    let cap = max_dict as usize;
    let mut dict: Vec<Contexts> = (1..=LZ_B).map(|l| Contexts::new(l, cap)).collect();
    let mut pools: Vec<Vec<Node>> = (0..LZ_B).map(|_| Vec::new()).collect();
    let mut size = 0u32;
    for j in 1..=LZ_B {
        dict[j - 1].insert(key(&s[LZ_B - j..LZ_B]), &mut pools[j - 1], s[LZ_B]);
        size += 1;
    }
    let mut tally = Tally::default();
    let mut judge = |best: u64, y: u8| {
        if best != 0 && best as u8 == y {
            tally.hit();
        } else {
            tally.miss();
        }
    };
    let mut orphan = 0usize;
    let mut i = LZ_B + 1;
    while i < s.len() && size < max_dict {
        let y = s[i];
        let mut best = 0u64;
        let mut filled_at = 0usize;
        for j in (1..=LZ_B).rev() {
            let ctx = key(&s[i - j..i]);
            let d = &mut dict[j - 1];
            if let Some(h) = d.find(ctx) {
                let f = d.get(h);
                best = best.max(lz_candidate(f.best, j, f.prediction));
                d.count(h, &mut pools[j - 1], y, true);
            } else if size < max_dict {
                d.insert(ctx, &mut pools[j - 1], y);
                size += 1;
                if size == max_dict {
                    filled_at = j;
                }
            }
        }
        judge(best, y);
        if filled_at >= 2
            && dict[filled_at - 2]
                .find(key(&s[i - filled_at + 1..i]))
                .is_none()
        {
            orphan = filled_at;
        }
        i += 1;
    }
    while i < s.len() {
        let y = s[i];
        let mut best = 0u64;
        let mut ctx = 0u128;
        let mut j = 1;
        while j <= LZ_B {
            ctx |= u128::from(s[i - j]) << (8 * (j - 1));
            let d = &mut dict[j - 1];
            if let Some(h) = d.find(ctx) {
                let f = d.get(h);
                best = best.max(lz_candidate(f.best, j, f.prediction));
                d.count(h, &mut pools[j - 1], y, true);
            } else if orphan > j {
                // Nothing between here and the orphan's length can be present: go there.
                for jj in j + 1..orphan {
                    ctx |= u128::from(s[i - jj]) << (8 * (jj - 1));
                }
                j = orphan;
                continue;
            } else {
                break;
            }
            j += 1;
        }
        judge(best, y);
        i += 1;
    }
    Some(tally.done((s.len() - LZ_B - 1) as u64))
}

fn lz78y_binary(s: &[u8], max_dict: u32) -> Predictions {
    let mut t = binary_tables();
    let mut size = 0u32;
    let mut ctx = 0usize;
    for j in 0..LZ_B {
        ctx |= usize::from(s[LZ_B - j - 1] & 1) << j;
        t[binary_offset(j) + ctx][usize::from(s[LZ_B] & 1)] = 1;
        size += 1;
    }
    let mut tally = Tally::default();
    // Bit j of `full` is s[i - 1 - j]; the context of j bits is its low j bits.
    let mut full = ctx;
    let mask = |j: usize| (1usize << j) - 1;
    // The orphan (see `lz78y_capped`): its length and bits.
    let mut orphan = None;
    let mut i = LZ_B + 1;
    while i < s.len() && size < max_dict {
        full = ((full << 1) | usize::from(s[i - 1] & 1)) & mask(LZ_B);
        let y = usize::from(s[i] & 1);
        let mut best = 0u64;
        let mut filled_at = 0;
        // Longest first: when the dictionary fills up within a step, the longer contexts are the
        // ones that got in.
        for j in (1..=LZ_B).rev() {
            let e = &mut t[binary_offset(j - 1) + (full & mask(j))];
            let (count, prediction) = if e[0] > e[1] { (e[0], 0) } else { (e[1], 1) };
            if count > 0 {
                best = best.max(lz_candidate(count, j, prediction));
                e[y] += 1;
            } else if size < max_dict {
                e[y] = 1;
                size += 1;
                if size == max_dict {
                    filled_at = j;
                }
            }
        }
        tally.guess(best != 0 && (best & 1) as usize == y);
        if filled_at >= 2
            && t[binary_offset(filled_at - 2) + (full & mask(filled_at - 1))] == [0; 2]
        {
            orphan = Some((filled_at, full & mask(filled_at)));
        }
        i += 1;
    }
    // Full: nothing is added any more. A present context's suffixes are present and were so when
    // it was added, and they have counted every follower it counted since, so along the present
    // contexts of a step (1 bit, 2 bits, ... up to the first absent one) the highest count never
    // rises: the prediction comes from the longest context that still has the 1-bit context's
    // highest count, usually the first or second. Only a step whose context has the orphan as a
    // suffix (it may be present past an absent one) looks at all 16. Every context then counts
    // its follower if present, without branches; the 16 written out one by one.
    while i < s.len() {
        full = ((full << 1) | usize::from(s[i - 1] & 1)) & mask(LZ_B);
        let y = usize::from(s[i] & 1);
        let right = if orphan.is_some_and(|(m, bits)| full & mask(m) == bits) {
            let mut best = 0u64;
            for j in 1..=LZ_B {
                let e = t[binary_offset(j - 1) + (full & mask(j))];
                if e != [0; 2] {
                    best = best.max(lz_candidate(e[0].max(e[1]), j, u8::from(e[1] >= e[0])));
                }
            }
            best != 0 && (best & 1) as usize == y
        } else {
            let e = t[binary_offset(0) + (full & 1)];
            let top = e[0].max(e[1]);
            let mut prediction = usize::from(e[1] >= e[0]);
            for j in 2..=LZ_B {
                let e = t[binary_offset(j - 1) + (full & mask(j))];
                if e[0].max(e[1]) != top {
                    break;
                }
                prediction = usize::from(e[1] >= e[0]);
            }
            top != 0 && prediction == y
        };
        tally.guess(right);
        macro_rules! count {
            ($j:expr) => {{
                let e = &mut t[binary_offset($j - 1) + (full & ((1 << $j) - 1))];
                e[y] += u32::from((e[0] | e[1]) != 0);
            }};
        }
        count!(1);
        count!(2);
        count!(3);
        count!(4);
        count!(5);
        count!(6);
        count!(7);
        count!(8);
        count!(9);
        count!(10);
        count!(11);
        count!(12);
        count!(13);
        count!(14);
        count!(15);
        count!(16);
        i += 1;
    }
    tally.done((s.len() - LZ_B - 1) as u64)
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests;
