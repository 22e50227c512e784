//! Agreement of `qeaas_core::assess` with NIST's SP800-90B_EntropyAssessment (`ea_non_iid`).
//!
//! The data sets are generated here from fixed seeds (nothing large is committed); NIST's
//! outputs for them are committed in `tests/fixtures/nist/` with the command and tool version
//! that produced them (`scripts/assess-reference.sh` regenerates them). Each fixture carries the
//! SHA-256 of the file NIST assessed, so a change in a generator fails here before any estimate
//! is compared.
//!
//! Tolerance: `ea_non_iid` prints its estimates to 6 decimal places, so an estimate agrees when
//! it is within 1e-6 of the tool's (its JSON carries full doubles; the largest difference seen
//! is printed with `--nocapture`: 1.5e-12 over the eight data sets when they were recorded).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qeaas::sim::{Fault, Generator};
use qeaas_core::assess::{self, NonIidReport};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod common;

const N: usize = assess::MIN_SAMPLES;
const TOLERANCE: f64 = 1e-6;

/// SplitMix64: a tiny, fixed generator for the synthetic data sets.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn simulator(seed: u64, fault: Fault) -> Vec<u8> {
    let mut g = Generator::new(seed, fault, 0);
    let mut out = vec![0u8; N];
    assert_eq!(g.fill(&mut out), N);
    out
}

/// The data sets: name, bits per symbol, samples.
pub fn datasets() -> Vec<(&'static str, u8, Vec<u8>)> {
    let sim8 = simulator(0x5eed_0001, Fault::None);
    let sim_bias8 = simulator(0x5eed_0002, Fault::Bias(0.6));
    let sim1: Vec<u8> = simulator(0x5eed_0003, Fault::None)
        .iter()
        .map(|b| b & 1)
        .collect();
    let mut r = Mix(0x0d15_ea5e);
    let mut bit = 0u8;
    let markov1: Vec<u8> = (0..N)
        .map(|_| {
            if r.unit() >= 0.7 {
                bit ^= 1;
            }
            bit
        })
        .collect();
    let mut r = Mix(0x9e41_0d1c);
    let period: Vec<u8> = (0..251).map(|_| r.next() as u8).collect();
    let periodic8: Vec<u8> = (0..N)
        .map(|i| {
            if r.unit() < 0.005 {
                r.next() as u8
            } else {
                period[i % period.len()]
            }
        })
        .collect();
    let mut stuck8 = simulator(0x5eed_0004, Fault::None);
    stuck8[400_000..403_000].fill(0);
    // Twelve of the sixteen 4-bit values, unevenly likely: the tool translates them to 0..12.
    let mut r = Mix(0x4b17_5eed);
    let values: [u8; 12] = [0, 1, 2, 3, 5, 6, 8, 9, 10, 12, 13, 15];
    let weights: [f64; 12] = [3.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.5, 1.0, 1.0, 1.0, 2.5, 1.0];
    let total: f64 = weights.iter().sum();
    let biased4: Vec<u8> = (0..N)
        .map(|_| {
            let mut u = r.unit() * total;
            for (v, w) in values.iter().zip(weights) {
                if u < w {
                    return *v;
                }
                u -= w;
            }
            values[11]
        })
        .collect();
    let mut r = Mix(0xb1a5_ed01);
    let biased1: Vec<u8> = (0..N).map(|_| u8::from(r.unit() < 0.58)).collect();
    vec![
        ("sim8", 8, sim8),
        ("sim-bias8", 8, sim_bias8),
        ("sim1", 1, sim1),
        ("markov1", 1, markov1),
        ("periodic8", 8, periodic8),
        ("stuck8", 8, stuck8),
        ("biased4", 4, biased4),
        ("biased1", 1, biased1),
    ]
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nist")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes the data sets as files for the reference tool: run by `scripts/assess-reference.sh`.
#[test]
#[ignore = "writes the data sets for scripts/assess-reference.sh"]
fn write_datasets() {
    let dir = std::env::var("QEAAS_ASSESS_OUT").expect("QEAAS_ASSESS_OUT=directory");
    for (name, bits, data) in datasets() {
        std::fs::write(Path::new(&dir).join(format!("{name}.bin")), &data).unwrap();
        println!("{name} {bits}");
    }
}

/// (our value, NIST's value) pairs of one data set, labelled.
fn compare(ours: &NonIidReport, nist: &Value) -> Vec<(String, Option<f64>, Option<f64>)> {
    let cases = nist["testCases"].as_array().expect("testCases");
    let find = |desc: &str| {
        cases
            .iter()
            .find(|c| c["testCaseDesc"] == desc)
            .unwrap_or_else(|| panic!("no {desc} in fixture"))
    };
    let mut out = Vec::new();
    for (i, e) in ours.estimators.iter().enumerate() {
        let c = find(e.name);
        let (fo, fb) = match i {
            4 => ("tTupleRes", "binTTupleRes"),
            5 => ("lrsRes", "binLrsRes"),
            _ => ("hOriginal", "hBitstring"),
        };
        out.push((format!("{} {fo}", e.name), e.h_original, c[fo].as_f64()));
        out.push((format!("{} {fb}", e.name), e.h_bitstring, c[fb].as_f64()));
    }
    let o = find("Overall");
    out.push((
        "Overall hOriginal".into(),
        Some(ours.h_original),
        o["hOriginal"].as_f64(),
    ));
    out.push((
        "Overall hBitstring".into(),
        ours.h_bitstring,
        o["hBitstring"].as_f64(),
    ));
    out.push((
        "Overall hAssessed".into(),
        Some(ours.h_assessed),
        o["hAssessed"].as_f64(),
    ));
    out
}

#[test]
fn estimators_agree_with_nist_ea_non_iid() {
    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    let sets = datasets();
    // About 100 s of CPU in all: two workers (CI has two cores), each data set once.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let reports = std::sync::Mutex::new(vec![None; sets.len()]);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((_, bits, data)) = sets.get(i) else {
                    break;
                };
                let r = assess::assess_non_iid(data, *bits).expect("assess");
                reports.lock().unwrap()[i] = Some(r);
            });
        }
    });
    let reports = reports.into_inner().unwrap();
    for ((name, _, data), ours) in sets.iter().zip(reports) {
        let ours = ours.expect("assessed");
        let path = fixtures().join(format!("{name}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let nist: Value = serde_json::from_str(&text).expect("fixture JSON");
        assert_eq!(
            nist["sha256"].as_str(),
            Some(hex(&Sha256::digest(data)).as_str()),
            "{name}: the generated data set is not the file NIST assessed"
        );
        for (label, a, b) in compare(&ours, &nist) {
            match (a, b) {
                (Some(a), Some(b)) => {
                    let d = (a - b).abs();
                    worst = worst.max(d);
                    println!("{name:10} {label:70} ours {a:.12} nist {b:.12} diff {d:.1e}");
                    if d > TOLERANCE {
                        failures.push(format!("{name} {label}: ours {a} nist {b}"));
                    }
                }
                (None, None) => {}
                _ => failures.push(format!("{name} {label}: ours {a:?} nist {b:?}")),
            }
        }
    }
    println!("largest difference from ea_non_iid: {worst:.3e}");
    assert!(
        failures.is_empty(),
        "disagreements:\n{}",
        failures.join("\n")
    );
}

/// The `qeaas assess` command: its JSON carries the library's figures under NIST's field names,
/// and its text report the same assessed value.
#[test]
fn assess_command_reports_the_librarys_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bits, data) = datasets().swap_remove(3); // markov1: binary, quick
    let file = dir.path().join("markov1.bin");
    std::fs::write(&file, &data).unwrap();
    let ours = assess::assess_non_iid(&data, bits).unwrap();
    let out = Command::new(common::QEAAS)
        .args(["assess", "--bits", "1", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let overall = j["testCases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["testCaseDesc"] == "Overall")
        .expect("Overall");
    assert_eq!(overall["hAssessed"].as_f64(), Some(ours.h_assessed));
    assert_eq!(overall["hOriginal"].as_f64(), Some(ours.h_original));
    assert_eq!(
        j["sha256"].as_str(),
        Some(hex(&Sha256::digest(&data)).as_str())
    );
    let text = Command::new(common::QEAAS)
        .args(["assess", "--bits", "1"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("assessed min-entropy: {:.6}", ours.h_assessed)),
        "{text}"
    );
}

/// Hostile or broken input files get a typed refusal and a sysexits code, never a panic or a
/// made-up estimate.
#[test]
fn assess_command_refuses_data_it_cannot_assess() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, data: Option<&[u8]>, bits: &str| {
        let f = dir.path().join(name);
        if let Some(d) = data {
            std::fs::write(&f, d).unwrap();
        }
        let o = Command::new(common::QEAAS)
            .args(["assess", "--bits", bits])
            .arg(&f)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let mut wide = vec![3u8; 5000];
    wide[4321] = 0x10;
    let (code, err) = run("wide.bin", Some(&wide), "4");
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("sample 4321 is 0x10"), "{err}");
    let (code, err) = run("stuck.bin", Some(&[7u8; 5000]), "8");
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("only one symbol"), "{err}");
    let (code, err) = run("empty.bin", Some(&[]), "8");
    assert_eq!(code, Some(65), "{err}");
    let (code, err) = run("missing.bin", None, "8");
    assert_eq!(code, Some(66), "{err}");
    let (code, _) = run("wide.bin", None, "9");
    assert_eq!(code, Some(2), "clap rejects --bits 9");
}

/// A config with one `file` source `name` reading `path` (sample width `sample`), socket in `dir`.
fn capture_config(dir: &Path, name: &str, path: &Path, sample: &str) -> PathBuf {
    let cfg = dir.join("qeaasd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[socket]\npath = {:?}\n[[source]]\nname = {name:?}\nkind = \"file\"\npath = {path:?}\nsample = {sample:?}\n",
            dir.join("entropy.sock")
        ),
    )
    .unwrap();
    cfg
}

fn capture(cfg: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(common::QEAASD)
        .arg("-c")
        .arg(cfg)
        .arg("capture")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `qeaasd capture` writes the source's samples exactly as read (bits as 0/1 bytes, most
/// significant first), and a restart matrix reopens the source for every row.
#[test]
fn capture_writes_raw_samples_bits_and_restart_rows() {
    let dir = tempfile::tempdir().unwrap();
    let raw: Vec<u8> = simulator(0x5eed_0005, Fault::None)[..300_000].to_vec();
    let src = dir.path().join("noise.bin");
    std::fs::write(&src, &raw).unwrap();

    let cfg = capture_config(dir.path(), "q", &src, "byte");
    let out = dir.path().join("raw.bin");
    let (code, err) = capture(
        &cfg,
        &[
            "--source",
            "q",
            "--samples",
            "200000",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        std::fs::read(&out).unwrap() == raw[..200_000],
        "bytes differ from the source's"
    );
    // Never overwrite a capture.
    let (code, err) = capture(
        &cfg,
        &[
            "--source",
            "q",
            "--samples",
            "10",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(74), "{err}");

    let cfg = capture_config(dir.path(), "b", &src, "bit");
    let out = dir.path().join("bits.bin");
    let (code, err) = capture(
        &cfg,
        &[
            "--source",
            "b",
            "--samples",
            "1003",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let want: Vec<u8> = raw
        .iter()
        .flat_map(|b| (0..8).rev().map(move |j| (b >> j) & 1))
        .take(1003)
        .collect();
    assert_eq!(std::fs::read(&out).unwrap(), want);

    let out = dir.path().join("restart.bin");
    let cfg = capture_config(dir.path(), "q", &src, "byte");
    let (code, err) = capture(
        &cfg,
        &[
            "--source",
            "q",
            "--restart",
            "5x1000",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let m = std::fs::read(&out).unwrap();
    assert_eq!(m.len(), 5000);
    // A regular file restarts at its beginning: every row is the first 1000 samples.
    for row in m.chunks(1000) {
        assert_eq!(row, &raw[..1000]);
    }

    let (code, err) = capture(
        &cfg,
        &[
            "--source",
            "nope",
            "-o",
            dir.path().join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("no source named \"nope\""), "{err}");
}

/// Attack: capture from a source the running daemon is reading. Two readers of one device would
/// each get part of the samples, and the daemon's part would be served while the other part sat
/// in a file. Capture must refuse, clearly, and write nothing.
#[test]
fn capture_refuses_while_the_daemon_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("noise.bin");
    std::fs::write(&src, simulator(0x5eed_0006, Fault::None)).unwrap();
    let d = common::daemon(&format!(
        "[[source]]\nname = \"q\"\nkind = \"file\"\npath = {src:?}\n"
    ));
    let out = d.dir.path().join("raw.bin");
    let (code, err) = capture(
        &d.dir.path().join("qeaasd.toml"),
        &[
            "--source",
            "q",
            "--samples",
            "1000",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("qeaasd is running"), "{err}");
    assert!(
        !out.exists(),
        "capture wrote samples while the daemon owned the source"
    );
}

/// The online estimate: a simulator with a 60/40 bit bias (5.9 bits per byte) under a 6.5-bit
/// claim shows in `qeaas_source_entropy_estimate`, and the alert rule, fed the values the
/// daemon exported, fires for it and not for the healthy source (real promtool).
#[test]
fn online_estimate_of_a_biased_source_fires_the_alert() {
    if !common::require(
        common::have("promtool"),
        "promtool (Debian package prometheus)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fifos: Vec<PathBuf> = ["good.fifo", "biased.fifo"]
        .iter()
        .map(|f| {
            let p = tmp.path().join(f);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .expect("mkfifo");
            p
        })
        .collect();
    let _good = common::sim(&["--fifo", fifos[0].to_str().unwrap(), "--seed", "11"]);
    let _biased = common::sim(&[
        "--fifo",
        fifos[1].to_str().unwrap(),
        "--seed",
        "12",
        "--fault",
        "bias:0.6",
    ]);
    let d = common::daemon(&format!(
        "[[source]]\nname = \"good\"\nkind = \"file\"\npath = {:?}\n\
         [[source]]\nname = \"biased\"\nkind = \"file\"\npath = {:?}\n",
        fifos[0], fifos[1]
    ));
    let series = |kind: &str, s: &str| format!("qeaas_source_entropy_{kind}{{source=\"{s}\"}}");
    let mut values = Vec::new();
    let seen = common::wait_until(Duration::from_secs(60), || {
        let Some(text) = common::scrape(&d.metrics) else {
            return false;
        };
        values = ["good", "biased"]
            .iter()
            .flat_map(|s| {
                ["estimate", "claimed"]
                    .map(|k| (series(k, s), common::metric(&text, &series(k, s))))
            })
            .collect();
        values.iter().all(|(_, v)| v.is_some())
    });
    assert!(seen, "no estimates exported: {values:?}\n{}", d.log_text());
    let v = |i: usize| values[i].1.unwrap();
    println!("{values:?}");
    assert!(
        v(0) > v(1),
        "good source estimated below its claim: {values:?}"
    );
    assert!(
        v(2) < v(3),
        "biased source not estimated below its claim: {values:?}"
    );
    assert!(
        (v(2) - 5.9).abs() < 0.3,
        "biased estimate far from 5.9: {values:?}"
    );

    // The exported values, held for five minutes, through the shipped rule.
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus/qeaas-alerts.yml");
    let input: String = values
        .iter()
        .map(|(s, x)| {
            format!(
                "      - series: '{s}'\n        values: '{}x10'\n",
                x.unwrap()
            )
        })
        .collect();
    let test = format!(
        "rule_files:\n  - {rules:?}\nevaluation_interval: 30s\ntests:\n  - interval: 30s\n    input_series:\n{input}    alert_rule_test:\n      - eval_time: 3m\n        alertname: QeaasEntropyBelowClaim\n        exp_alerts:\n          - exp_labels:\n              severity: warning\n              source: biased\n            exp_annotations:\n              summary: \"qeaas source biased looks weaker than claimed\"\n              description: \"The online estimate for biased is {:.3} bits per sample, below its claimed min-entropy. Capture raw samples (`qeaasd capture`) and assess them (`qeaas assess`).\"\n",
        v(2)
    );
    let file = tmp.path().join("online.test.yml");
    std::fs::write(&file, test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
