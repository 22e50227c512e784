//! Restart tests, SP 800-90B 3.1.4: 1000 restarts of the noise source, 1000 samples each, as a
//! 1000 x 1000 matrix (row `i` is restart `i`, stored row after row).
//!
//! 1. Sanity check (3.1.4.3): the most common value's count in any row or column must not
//!    exceed a cut-off that data with the initial estimate `H_I` exceed with probability at most
//!    `alpha = 1 - 0.99^(1/2000)`. As in NIST's `ea_restart`, the cut-off is taken for the
//!    "inverted near-uniform" distribution (`floor(1/p)` symbols of probability `p = 2^-H_I` and
//!    one with the rest), the one with the highest collision bound for a given `H_I`; NIST
//!    simulates it 5 million times, we compute the distribution of the largest count exactly.
//! 2. Validation (3.1.4.2): the non-IID estimators (or, for IID data, MCV) on the rows read one
//!    after the other (`H_r`) and on the columns (`H_c`) must give `min(H_r, H_c) >= H_I / 2`.

use alloc::vec;
use alloc::vec::Vec;

use super::{run_estimators, AssessError, Dataset};

/// Restarts (rows) and samples per restart (columns).
pub const ROWS: usize = 1000;
/// Samples per restart.
pub const COLS: usize = 1000;

/// Significance of the sanity check.
pub fn alpha() -> f64 {
    1.0 - libm::exp(libm::log(0.99) / (ROWS + COLS) as f64)
}

/// `ln(n!)` for `n` in `0..=1000`.
fn ln_factorials(n: usize) -> Vec<f64> {
    let mut t = vec![0.0f64; n + 1];
    for i in 1..=n {
        t[i] = t[i - 1] + libm::log(i as f64);
    }
    t
}

/// Merges two groups of cells: `a` gets each trial with probability `w`, `b` with `1 - w`.
/// Inputs and output: `f[t]` = P(no cell of the group exceeds the bound | t trials in it).
fn merge(fa: &[f64], fb: &[f64], w: f64, lf: &[f64]) -> Vec<f64> {
    let n = fa.len() - 1;
    let (lw, lv) = (libm::log(w), libm::log1p(-w));
    let mut out = vec![0.0f64; n + 1];
    for (t, o) in out.iter_mut().enumerate() {
        let mut acc = 0.0;
        for s in 0..=t {
            let f = fa[s] * fb[t - s];
            if f == 0.0 {
                continue;
            }
            let ln_pmf = lf[t] - lf[s] - lf[t - s] + s as f64 * lw + (t - s) as f64 * lv;
            acc += libm::exp(ln_pmf) * f;
        }
        *o = acc.min(1.0);
    }
    out
}

/// P(the largest count is at most `m`) when `n` samples fall into `cells` cells of probability
/// `p` each and (if `rest > 0`) one more cell of probability `rest`.
fn prob_max_at_most(m: usize, n: usize, cells: usize, p: f64, rest: f64, lf: &[f64]) -> f64 {
    let one: Vec<f64> = (0..=n).map(|t| if t <= m { 1.0 } else { 0.0 }).collect();
    // Groups of 2^j equal cells by doubling, combined along the binary digits of `cells`.
    let mut acc: Option<(Vec<f64>, usize)> = None;
    let mut pow = (one.clone(), 1usize);
    let mut c = cells;
    while c > 0 {
        if c & 1 == 1 {
            acc = Some(match acc {
                None => pow.clone(),
                Some((f, size)) => {
                    let w = size as f64 / (size + pow.1) as f64;
                    (merge(&f, &pow.0, w, lf), size + pow.1)
                }
            });
        }
        c >>= 1;
        if c > 0 {
            pow = (merge(&pow.0, &pow.0, 0.5, lf), 2 * pow.1);
        }
    }
    let (f, _) = acc.expect("at least one cell");
    if rest <= 0.0 {
        return f[n];
    }
    let main = cells as f64 * p;
    let w = main / (main + rest);
    merge(&f, &one, w, lf)[n]
}

/// The sanity check's cut-off for an initial estimate `h_i` (bits per sample) and `k` symbols:
/// the smallest `m` with P(largest count in 1000 samples <= m) >= 1 - alpha.
pub fn sanity_cutoff(h_i: f64, k: usize) -> usize {
    let p = libm::exp2(-h_i);
    let cells_f = libm::floor(1.0 / p);
    let cells = (cells_f as usize).min(k).max(1);
    let rest = (1.0 - cells as f64 * p).max(0.0);
    let lf = ln_factorials(COLS);
    let target = 1.0 - alpha();
    // The expected largest count is near 1000 p; search upwards from there.
    let (mut lo, mut hi) = ((COLS as f64 * p) as usize, COLS);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if prob_max_at_most(mid, COLS, cells, p, rest, &lf) >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Outcome of the restart tests.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartReport {
    /// The initial entropy estimate the data were tested against.
    pub h_i: f64,
    /// Sanity-check cut-off.
    pub cutoff: usize,
    /// Largest most-common-value count over rows and columns.
    pub x_max: usize,
    /// Sanity check passed (`x_max <= cutoff`).
    pub sanity_passed: bool,
    /// Minimum estimate over the rows (`None` if the sanity check failed first).
    pub h_r: Option<f64>,
    /// Minimum estimate over the columns.
    pub h_c: Option<f64>,
    /// Both checks passed: `min(H_r, H_c) >= H_I / 2`.
    pub passed: bool,
}

impl RestartReport {
    /// The restart-validated estimate, `min(H_I, H_r, H_c)` (3.1.4.2: what `ea_restart` reports
    /// as `min(H_r, H_c, H_I)`), or `None` if either check failed.
    pub fn validated(&self) -> Option<f64> {
        if !self.passed {
            return None;
        }
        Some(self.h_i.min(self.h_r?).min(self.h_c?))
    }
}

fn max_count(rows: impl Iterator<Item = impl Iterator<Item = u8>>) -> usize {
    rows.map(|r| {
        let mut c = [0usize; 256];
        r.for_each(|x| c[usize::from(x)] += 1);
        c.into_iter().max().unwrap_or(0)
    })
    .max()
    .unwrap_or(0)
}

/// Runs the restart tests on a 1000 x 1000 matrix of `bits`-bit samples (row after row) against
/// the initial estimate `h_i`. `iid` selects the IID track's estimator (MCV only) for validation.
pub fn restart_tests(
    matrix: &[u8],
    bits: u8,
    h_i: f64,
    iid: bool,
) -> Result<RestartReport, AssessError> {
    if matrix.len() != ROWS * COLS {
        return Err(AssessError::TooShort(ROWS * COLS));
    }
    let rows = Dataset::new(matrix, bits)?;
    if rows.alphabet <= 1 {
        return Err(AssessError::OneSymbol);
    }
    let k = rows.alphabet;
    let s = &rows.symbols;
    let x_max = max_count((0..ROWS).map(|i| s[i * COLS..(i + 1) * COLS].iter().copied())).max(
        max_count((0..COLS).map(|j| (0..ROWS).map(move |i| s[i * COLS + j]))),
    );
    let cutoff = sanity_cutoff(h_i, k);
    let sanity_passed = x_max <= cutoff;
    if !sanity_passed {
        return Ok(RestartReport {
            h_i,
            cutoff,
            x_max,
            sanity_passed,
            h_r: None,
            h_c: None,
            passed: false,
        });
    }
    let cols: Vec<u8> = (0..COLS)
        .flat_map(|j| (0..ROWS).map(move |i| s[i * COLS + j]))
        .collect();
    let bits_f = f64::from(bits);
    let estimate = |data: &[u8]| {
        if iid {
            super::estimators::most_common_value(data, k).h.min(bits_f)
        } else {
            run_estimators(data, k)
                .iter()
                .flatten()
                .fold(bits_f, |m, &x| m.min(x))
        }
    };
    let h_r = estimate(s);
    let h_c = estimate(&cols);
    Ok(RestartReport {
        h_i,
        cutoff,
        x_max,
        sanity_passed,
        h_r: Some(h_r),
        h_c: Some(h_c),
        passed: h_r.min(h_c) >= h_i / 2.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_a_binomial_tail_for_binary_data() {
        // H_I = 1 on bits: two cells of 1/2; the largest count is max(X, 1000 - X) with
        // X ~ Bin(1000, 1/2). P(max <= m) = P(1000 - m <= X <= m).
        let m = sanity_cutoff(1.0, 2);
        let lf = ln_factorials(1000);
        let tail = |m: usize| {
            (0..=1000usize)
                .filter(|&x| x > m || 1000 - x > m)
                .map(|x| {
                    libm::exp(lf[1000] - lf[x] - lf[1000 - x] - 1000.0 * core::f64::consts::LN_2)
                })
                .sum::<f64>()
        };
        assert!(tail(m) <= alpha(), "{m}");
        assert!(tail(m - 1) > alpha(), "{m}");
    }

    #[test]
    fn validated_estimate_is_the_least_of_h_i_and_the_row_and_column_estimates() {
        let r = RestartReport {
            h_i: 7.5,
            cutoff: 17,
            x_max: 12,
            sanity_passed: true,
            h_r: Some(7.2),
            h_c: Some(7.9),
            passed: true,
        };
        assert_eq!(r.validated(), Some(7.2));
        let r = RestartReport {
            h_r: Some(7.8),
            ..r
        };
        assert_eq!(r.validated(), Some(7.5));
        let failed = RestartReport {
            h_r: Some(3.0),
            passed: false,
            ..r
        };
        assert_eq!(failed.validated(), None);
        let insane = RestartReport {
            x_max: 1000,
            sanity_passed: false,
            h_r: None,
            h_c: None,
            passed: false,
            ..r
        };
        assert_eq!(insane.validated(), None);
    }

    #[test]
    fn cutoff_grows_as_claimed_entropy_falls() {
        let a = sanity_cutoff(7.0, 256);
        let b = sanity_cutoff(4.0, 256);
        let c = sanity_cutoff(1.0, 256);
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
