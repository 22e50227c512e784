//! `qeaas assess`: SP 800-90B entropy assessment of a raw capture, the command-line face of
//! `qeaas_core::assess`.
//!
//! Reads one sample per byte (as `qeaasd capture` writes and NIST's tools read), runs the non-IID
//! track (always), the IID track (`--iid`) and the restart tests (`--restart`), and prints a
//! report: text for people, or JSON (`--json`) with the field names of `ea_non_iid -o`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use qeaas_core::assess::{self, iid, restart, AssessError, Dataset, NonIidReport};
use sha2::{Digest, Sha256};

/// What to assess.
#[derive(Debug, Clone)]
pub struct AssessArgs {
    /// Raw samples, one per byte.
    pub file: PathBuf,
    /// Bits per sample (1..=8).
    pub bits: u8,
    /// Restart matrix (1000 x 1000 samples, row after row).
    pub restart: Option<PathBuf>,
    /// Also run the IID track.
    pub iid: bool,
    /// Seed of the IID track's permutations.
    pub seed: u64,
    /// JSON output.
    pub json: bool,
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum AssessCmdError {
    /// A file could not be read.
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The data cannot be assessed.
    #[error("{0}: {1}")]
    Data(PathBuf, AssessError),
}

/// Everything the command found.
#[derive(Debug)]
pub struct Assessment {
    /// SHA-256 of the file, as NIST's tools print it.
    pub sha256: String,
    /// The file.
    pub file: PathBuf,
    /// Non-IID track.
    pub non_iid: NonIidReport,
    /// IID track, if asked for.
    pub iid: Option<iid::IidReport>,
    /// Restart tests, if asked for.
    pub restart: Option<restart::RestartReport>,
    /// Samples fewer than the standard's minimum.
    pub short: bool,
}

impl Assessment {
    /// The initial entropy estimate `H_I` (before the submitter's own claim).
    pub fn h_initial(&self) -> f64 {
        match &self.iid {
            Some(r) if r.iid() => r.h_assessed,
            _ => self.non_iid.h_assessed,
        }
    }

    /// The assessed min-entropy: `H_I`, or, once the restart tests have passed, the
    /// restart-validated `min(H_I, H_r, H_c)` of SP 800-90B 3.1.4.2.
    pub fn h_assessed(&self) -> f64 {
        self.restart
            .as_ref()
            .and_then(|r| r.validated())
            .unwrap_or_else(|| self.h_initial())
    }

    /// True unless the restart tests ran and failed.
    pub fn passed(&self) -> bool {
        self.restart.as_ref().is_none_or(|r| r.passed)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn read(path: &Path) -> Result<Vec<u8>, AssessCmdError> {
    std::fs::read(path).map_err(|e| AssessCmdError::Read(path.to_owned(), e))
}

/// bzip2 size (block size 5, as NIST's `ea_iid` calls `BZ2_bzBuffToBuffCompress`) of `text`:
/// the compression statistic of SP 800-90B 5.1.11.
pub fn bzip2_len(text: &[u8]) -> u64 {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(5));
    e.write_all(text).expect("compressing into memory");
    e.finish().expect("compressing into memory").len() as u64
}

/// Runs the assessment.
pub fn run(a: &AssessArgs) -> Result<Assessment, AssessCmdError> {
    let data = read(&a.file)?;
    let sha256 = hex(&Sha256::digest(&data));
    let d = Dataset::new(&data, a.bits).map_err(|e| AssessCmdError::Data(a.file.clone(), e))?;
    drop(data);
    let non_iid =
        assess::assess_dataset(&d).map_err(|e| AssessCmdError::Data(a.file.clone(), e))?;
    let iid = a.iid.then(|| iid::assess_iid(&d, a.seed, &bzip2_len));
    let short = d.len() < assess::MIN_SAMPLES;
    drop(d);
    let mut out = Assessment {
        sha256,
        file: a.file.clone(),
        non_iid,
        iid,
        restart: None,
        short,
    };
    if let Some(m) = &a.restart {
        let matrix = read(m)?;
        let is_iid = out.iid.as_ref().is_some_and(|r| r.iid());
        let h_i = out.h_initial();
        out.restart = Some(
            restart::restart_tests(&matrix, a.bits, h_i, is_iid)
                .map_err(|e| AssessCmdError::Data(m.clone(), e))?,
        );
    }
    Ok(out)
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.6}"))
}

/// The text report.
pub fn text(r: &Assessment) -> String {
    let n = &r.non_iid;
    let mut o = String::new();
    let _ = writeln!(o, "file:     {} (SHA-256 {})", r.file.display(), r.sha256);
    let _ = writeln!(
        o,
        "samples:  {} of {} bits, {} distinct symbols{}",
        n.samples,
        n.bits,
        n.alphabet,
        if r.short {
            " (fewer than the 1,000,000 SP 800-90B asks for)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "\nnon-IID track (SP 800-90B 6.3), min-entropy per sample / per bit:"
    );
    let _ = writeln!(
        o,
        "  {:<52} {:>12} {:>12}",
        "estimator", "H_original", "H_bitstring"
    );
    for e in &n.estimators {
        let _ = writeln!(
            o,
            "  {:<52} {:>12} {:>12}",
            e.name,
            opt(e.h_original),
            opt(e.h_bitstring)
        );
    }
    let _ = writeln!(o, "\n  H_original:  {:.6}", n.h_original);
    if let Some(hb) = n.h_bitstring {
        let _ = writeln!(o, "  H_bitstring: {hb:.6}");
        let _ = writeln!(
            o,
            "  min(H_original, {} X H_bitstring): {:.6}",
            n.bits, n.h_assessed
        );
    } else {
        let _ = writeln!(o, "  H_assessed:  {:.6}", n.h_assessed);
    }
    if let Some(i) = &r.iid {
        let _ = writeln!(o, "\nIID track (SP 800-90B 5):");
        let _ = writeln!(
            o,
            "  chi-square independence: T = {:.3}, df = {}, p = {:.6}",
            i.independence.stat,
            i.independence.df,
            i.independence.p_value()
        );
        let _ = writeln!(
            o,
            "  chi-square goodness of fit: T = {:.3}, df = {}, p = {:.6}",
            i.goodness_of_fit.stat,
            i.goodness_of_fit.df,
            i.goodness_of_fit.p_value()
        );
        let _ = writeln!(o, "  longest repeated substring: {}", pass(i.lrs_passed));
        let _ = writeln!(
            o,
            "  permutation tests ({} permutations): {}",
            i.permutation.permutations,
            pass(i.permutation.passed)
        );
        for (name, c) in iid::PERMUTATION_STATS.iter().zip(&i.permutation.counts) {
            let bad = c[0] + c[1] <= 5 || c[1] + c[2] <= 5;
            let _ = writeln!(
                o,
                "    {name:<24} {:>6} {:>6} {:>6}{}",
                c[0],
                c[1],
                c[2],
                if bad { "  *" } else { "" }
            );
        }
        let _ = writeln!(
            o,
            "  IID assumption: {}; if IID, H = {:.6}",
            if i.iid() { "not rejected" } else { "REJECTED" },
            i.h_assessed
        );
    }
    if let Some(rs) = &r.restart {
        let _ = writeln!(
            o,
            "\nrestart tests (SP 800-90B 3.1.4), H_I = {:.6}:",
            rs.h_i
        );
        let _ = writeln!(
            o,
            "  sanity check: X_max = {}, cut-off = {}: {}",
            rs.x_max,
            rs.cutoff,
            pass(rs.sanity_passed)
        );
        if let (Some(hr), Some(hc)) = (rs.h_r, rs.h_c) {
            let _ = writeln!(
                o,
                "  H_r = {hr:.6}, H_c = {hc:.6}, min >= H_I/2 = {:.6}: {}",
                rs.h_i / 2.0,
                pass(rs.passed)
            );
        }
        if let Some(h) = rs.validated() {
            let _ = writeln!(o, "  restart-validated min(H_I, H_r, H_c) = {h:.6}");
        }
    }
    let _ = writeln!(
        o,
        "\nassessed min-entropy: {:.6} bits per sample",
        r.h_assessed()
    );
    o
}

fn pass(b: bool) -> &'static str {
    if b {
        "passed"
    } else {
        "FAILED"
    }
}

/// The JSON report: `ea_non_iid -o`'s fields, plus the IID and restart results when run.
pub fn json(r: &Assessment) -> String {
    let file = r.file.display().to_string();
    let version = concat!("qeaas assess ", env!("CARGO_PKG_VERSION"));
    let mut s = r.non_iid.to_json(&[
        ("filename", &file),
        ("sha256", &r.sha256),
        ("toolVersion", version),
    ]);
    // Append the optional sections inside the top-level object.
    let end = s.trim_end().len() - 1;
    s.truncate(end);
    s.truncate(s.trim_end().len());
    let mut tail = String::new();
    if let Some(i) = &r.iid {
        let counts: Vec<String> = i
            .permutation
            .counts
            .iter()
            .zip(iid::PERMUTATION_STATS)
            .map(|(c, n)| {
                format!(
                    "{{\"statistic\": \"{n}\", \"c\": [{}, {}, {}]}}",
                    c[0], c[1], c[2]
                )
            })
            .collect();
        let _ = write!(
            tail,
            ",\n   \"iid\" : {{\"chiSquareIndependenceP\": {}, \"chiSquareGoodnessOfFitP\": {}, \
             \"passedChiSquareTests\": {}, \"passedLongestRepeatedSubstringTest\": {}, \
             \"passedIidPermutationTests\": {}, \"permutations\": {}, \"counts\": [{}], \
             \"hOriginal\": {}, \"hBitstring\": {}, \"hAssessed\": {}}}",
            assess::json_num(i.independence.p_value()),
            assess::json_num(i.goodness_of_fit.p_value()),
            i.chi_square_passed,
            i.lrs_passed,
            i.permutation.passed,
            i.permutation.permutations,
            counts.join(", "),
            assess::json_num(i.h_original),
            i.h_bitstring.map_or("null".into(), assess::json_num),
            assess::json_num(i.h_assessed)
        );
    }
    if let Some(rs) = &r.restart {
        let _ = write!(
            tail,
            ",\n   \"restart\" : {{\"h_i\": {}, \"xCutoff\": {}, \"xMax\": {}, \
             \"passedSanityCheck\": {}, \"h_r\": {}, \"h_c\": {}, \"passed\": {}, \
             \"hValidated\": {}}}",
            assess::json_num(rs.h_i),
            rs.cutoff,
            rs.x_max,
            rs.sanity_passed,
            rs.h_r.map_or("null".into(), assess::json_num),
            rs.h_c.map_or("null".into(), assess::json_num),
            rs.passed,
            rs.validated().map_or("null".into(), assess::json_num)
        );
    }
    s.push_str(&tail);
    s.push_str("\n}\n");
    s
}
