//! SP 800-90B entropy assessment of raw noise samples: the estimators of section 6 (non-IID and
//! IID tracks), the restart tests of 3.1.4 and the conditioning formulas of 3.1.5.
//!
//! Input is what NIST's tools read: one sample per byte, the low `bits` bits of each byte being
//! the symbol. [`Dataset::new`] does what their reader does (symbols translated to `0..k` when
//! fewer than `2^bits` values occur; the bit string made from the untranslated symbols, most
//! significant bit first), and [`assess_non_iid`] runs the ten non-IID estimators on the
//! symbols and on the bit string and reports `min(H_original, bits * H_bitstring)`, the fields
//! of `ea_non_iid -o`.
//!
//! Agreement with NIST's SP800-90B_EntropyAssessment is a test (`tests/assess.rs` in the daemon
//! crate, against recorded outputs of `ea_non_iid`). Where the standard's text and that tool
//! differ in a detail (a tie, a run across a step without prediction), we follow the tool and
//! say so where it happens: a lab compares against the tool.

// The estimators are written as the standard writes them, with indices into several arrays at
// once; iterator chains would hide the correspondence with SP 800-90B's steps.
#![allow(clippy::needless_range_loop)]

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub mod conditioning;
pub mod estimators;
pub mod iid;
pub mod online;
pub mod predictors;
pub mod restart;
pub mod tuple;

/// The 99.5% point of the standard normal distribution, as SP 800-90B uses it.
pub const Z_ALPHA: f64 = 2.575_829_303_548_901;

/// Samples the standard asks for in an assessment.
pub const MIN_SAMPLES: usize = 1_000_000;

/// Why a data set cannot be assessed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssessError {
    /// `bits` is not in 1..=8.
    BadWidth(u8),
    /// A sample has bits set above the declared width (index, value).
    TooWide {
        /// Index of the first offending sample.
        index: usize,
        /// Its value.
        value: u8,
    },
    /// Fewer samples than an estimator needs (it needs at least this many).
    TooShort(usize),
    /// Only one symbol occurs: no entropy at all.
    OneSymbol,
}

impl fmt::Display for AssessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssessError::BadWidth(b) => write!(f, "bits per symbol must be 1 to 8, not {b}"),
            AssessError::TooWide { index, value } => write!(
                f,
                "sample {index} is {value:#04x}, wider than the declared bits per symbol"
            ),
            AssessError::TooShort(n) => write!(f, "need at least {n} samples"),
            AssessError::OneSymbol => {
                write!(f, "only one symbol occurs: no entropy (min-entropy 0)")
            }
        }
    }
}

/// Samples prepared as NIST's tools prepare them.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Bits per symbol.
    pub bits: u8,
    /// Symbols as given (masked to `bits`).
    pub raw: Vec<u8>,
    /// Symbols translated to `0..alphabet` in increasing order of value.
    pub symbols: Vec<u8>,
    /// Distinct symbols present.
    pub alphabet: usize,
    /// Largest symbol present.
    pub max_symbol: u8,
}

impl Dataset {
    /// Checks and prepares `samples` of `bits` bits each.
    pub fn new(samples: &[u8], bits: u8) -> Result<Self, AssessError> {
        if !(1..=8).contains(&bits) {
            return Err(AssessError::BadWidth(bits));
        }
        let mask = ((1u16 << bits) - 1) as u8;
        if let Some(index) = samples.iter().position(|&b| b & !mask != 0) {
            return Err(AssessError::TooWide {
                index,
                value: samples[index],
            });
        }
        if samples.len() < 2 {
            return Err(AssessError::TooShort(2));
        }
        let mut present = [false; 256];
        for &b in samples {
            present[usize::from(b)] = true;
        }
        let mut map = [0u8; 256];
        let mut alphabet = 0usize;
        for (v, p) in present.iter().enumerate() {
            if *p {
                map[v] = alphabet as u8;
                alphabet += 1;
            }
        }
        let max_symbol = samples.iter().copied().max().unwrap_or(0);
        let symbols = if alphabet < usize::from(max_symbol) + 1 {
            samples.iter().map(|&b| map[usize::from(b)]).collect()
        } else {
            samples.to_vec()
        };
        Ok(Self {
            bits,
            raw: samples.to_vec(),
            symbols,
            alphabet,
            max_symbol,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// True if there are no samples (never, once constructed).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The bit string: each untranslated symbol's `bits` bits, most significant first.
    pub fn bitstring(&self) -> Vec<u8> {
        let w = usize::from(self.bits);
        let mut out = Vec::with_capacity(self.raw.len() * w);
        for &s in &self.raw {
            for j in (0..w).rev() {
                out.push((s >> j) & 1);
            }
        }
        out
    }
}

/// One estimator's results, in the shape of one `testCases` entry of `ea_non_iid -o`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EstimatorResult {
    /// The reference tool's `testCaseDesc`.
    pub name: &'static str,
    /// Estimate on the symbols (`hOriginal`, or `tTupleRes` / `lrsRes`).
    pub h_original: Option<f64>,
    /// Estimate on the bit string, per bit (`hBitstring`, or `binTTupleRes` / `binLrsRes`).
    pub h_bitstring: Option<f64>,
}

/// The non-IID assessment of one data set (`ea_non_iid -i -a`).
#[derive(Clone, Debug, PartialEq)]
pub struct NonIidReport {
    /// Bits per symbol.
    pub bits: u8,
    /// Samples assessed.
    pub samples: usize,
    /// Distinct symbols.
    pub alphabet: usize,
    /// Most common value: mode count, `p_hat`, `p_u` on the symbols.
    pub mcv: estimators::McvResult,
    /// Per estimator, in the order of SP 800-90B 6.3.1 to 6.3.10.
    pub estimators: Vec<EstimatorResult>,
    /// Minimum over the estimators on the symbols.
    pub h_original: f64,
    /// Minimum over the estimators on the bit string (per bit); `None` for binary data.
    pub h_bitstring: Option<f64>,
    /// `min(bits, H_original, bits * H_bitstring)`.
    pub h_assessed: f64,
}

/// Estimator names as the reference tool's JSON spells them.
pub const ESTIMATOR_NAMES: [&str; 10] = [
    "Most Common Value",
    "Collision Test (for bit strings only)",
    "Markov Test (for bit strings only)",
    "Compression Test (for bit strings only)",
    "T-Tuple Test",
    "LRS Test",
    "Multi Most Common in Window Test",
    "Lag Prediction Test",
    "Multi Markov Model with Counting Test (MultiMMC)",
    "LZ78Y Test",
];

/// Results of all ten estimators on one sequence of symbols `0..k` (index as
/// [`ESTIMATOR_NAMES`]); the three bit-string-only estimators are `None` unless `k == 2`.
pub fn run_estimators(s: &[u8], k: usize) -> [Option<f64>; 10] {
    let binary = k == 2;
    let mcv = estimators::most_common_value(s, k).h;
    let (t_tuple, lrs) = tuple::tuple_estimates(&tuple::tuple_counts(s));
    let predict =
        |p: Option<predictors::Predictions>| p.map(|p| predictors::prediction_estimate(p, k));
    [
        Some(mcv),
        binary.then(|| estimators::collision(s)),
        binary.then(|| estimators::markov(s)),
        if binary {
            estimators::compression(s)
        } else {
            None
        },
        t_tuple,
        lrs,
        predict(predictors::multi_mcw(s, k)),
        predict((s.len() > 2).then(|| predictors::lag(s, k))),
        predict(predictors::multi_mmc(s, k)),
        predict(predictors::lz78y(s, k)),
    ]
}

fn min_of(xs: &[Option<f64>], start: f64) -> f64 {
    xs.iter().flatten().fold(start, |m, &x| m.min(x))
}

/// The non-IID track (SP 800-90B 6.3) on `samples` of `bits` bits each, as
/// `ea_non_iid -i -a FILE bits` computes it.
pub fn assess_non_iid(samples: &[u8], bits: u8) -> Result<NonIidReport, AssessError> {
    let d = Dataset::new(samples, bits)?;
    assess_dataset(&d)
}

/// [`assess_non_iid`] on a prepared data set.
pub fn assess_dataset(d: &Dataset) -> Result<NonIidReport, AssessError> {
    if d.alphabet <= 1 {
        return Err(AssessError::OneSymbol);
    }
    let binary = d.alphabet == 2;
    let original = run_estimators(&d.symbols, d.alphabet);
    // The bit string is assessed only for symbols wider than a bit (as the reference tool does,
    // "more than two symbols"); binary data is its own bit string.
    let bitstring = (!binary).then(|| run_estimators(&d.bitstring(), 2));
    let h_original = min_of(&original, f64::from(d.bits));
    let h_bitstring = bitstring.as_ref().map(|b| min_of(b, 1.0));
    let mut h_assessed = h_original.min(f64::from(d.bits));
    if let Some(hb) = h_bitstring {
        h_assessed = h_assessed.min(f64::from(d.bits) * hb);
    }
    let estimators = (0..10)
        .map(|i| EstimatorResult {
            name: ESTIMATOR_NAMES[i],
            h_original: original[i],
            h_bitstring: bitstring.as_ref().and_then(|b| b[i]),
        })
        .collect();
    Ok(NonIidReport {
        bits: d.bits,
        samples: d.len(),
        alphabet: d.alphabet,
        mcv: estimators::most_common_value(&d.symbols, d.alphabet),
        estimators,
        h_original,
        h_bitstring,
        h_assessed,
    })
}

impl NonIidReport {
    /// The report as JSON with the field names of `ea_non_iid -o` (`testCases` with
    /// `testCaseDesc`, `hOriginal`, `hBitstring`, `tTupleRes`, `binTTupleRes`, `lrsRes`,
    /// `binLrsRes`; an `Overall` case with `hOriginal`, `hBitstring`, `hAssessed`,
    /// `dataWordSize`), numbers exact to the last bit.
    pub fn to_json(&self, extra: &[(&str, &str)]) -> String {
        use core::fmt::Write;
        let mut o = String::new();
        let _ = write!(o, "{{\n   \"IID\" : false,\n   \"errorLevel\" : 0,\n");
        for (k, v) in extra {
            let _ = writeln!(o, "   {} : {},", json_str(k), json_str(v));
        }
        let _ = writeln!(o, "   \"samples\" : {},", self.samples);
        let _ = writeln!(o, "   \"alphabetSize\" : {},", self.alphabet);
        o.push_str("   \"testCases\" : [\n");
        let mut cases: Vec<Vec<(&str, String)>> = Vec::new();
        for (i, e) in self.estimators.iter().enumerate() {
            let (fo, fb) = match i {
                4 => ("tTupleRes", "binTTupleRes"),
                5 => ("lrsRes", "binLrsRes"),
                _ => ("hOriginal", "hBitstring"),
            };
            let mut c = Vec::new();
            if let Some(h) = e.h_original {
                c.push((fo, json_num(h)));
            }
            if let Some(h) = e.h_bitstring {
                c.push((fb, json_num(h)));
            }
            if i == 0 {
                c.push(("mcvEstimateMode", json_num(self.mcv.mode as f64)));
                c.push(("mcvEstimatePHat", json_num(self.mcv.p_hat)));
                c.push(("mcvEstimatePU", json_num(self.mcv.p_u)));
            }
            c.push(("testCaseDesc", json_str(e.name)));
            cases.push(c);
        }
        let mut overall = vec_of_overall(self);
        overall.push(("testCaseDesc", json_str("Overall")));
        cases.push(overall);
        for (ci, c) in cases.iter().enumerate() {
            o.push_str("      {\n");
            for (fi, (k, v)) in c.iter().enumerate() {
                let comma = if fi + 1 < c.len() { "," } else { "" };
                let _ = writeln!(o, "         \"{k}\" : {v}{comma}");
            }
            o.push_str(if ci + 1 < cases.len() {
                "      },\n"
            } else {
                "      }\n"
            });
        }
        o.push_str("   ]\n}\n");
        o
    }
}

fn vec_of_overall(r: &NonIidReport) -> Vec<(&'static str, String)> {
    let mut c = alloc::vec![("dataWordSize", json_num(f64::from(r.bits)))];
    c.push(("hAssessed", json_num(r.h_assessed)));
    if let Some(hb) = r.h_bitstring {
        c.push(("hBitstring", json_num(hb)));
    }
    c.push(("hOriginal", json_num(r.h_original)));
    c
}

/// A JSON number that reads back as the same `f64`.
pub fn json_num(x: f64) -> String {
    use core::fmt::Write;
    let mut s = String::new();
    if x.is_finite() {
        // Display is the shortest decimal that reads back as the same f64, never in exponent
        // form, so it is valid JSON and loses nothing.
        let _ = write!(s, "{x}");
    } else {
        s.push_str("null");
    }
    s
}

/// A JSON string literal.
pub fn json_str(x: &str) -> String {
    let mut s = String::from("\"");
    for c in x.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                use core::fmt::Write;
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Finds `p` in `[lo, hi]` with `f(p) = target` for a function that falls as `p` rises and is
/// above `target` at `lo`, by bisection to the last bit. (The reference tool bisects too; any
/// method converging to the root gives the same root to double precision.)
pub(crate) fn bisect_decreasing(f: impl Fn(f64) -> f64, target: f64, lo: f64, hi: f64) -> f64 {
    let (mut lo, mut hi) = (lo, hi);
    for _ in 0..2000 {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi {
            break;
        }
        let v = f(mid);
        if v == target {
            return mid;
        }
        // A NaN (outside the function's domain, near p = 1) counts as below the target.
        if v > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}
