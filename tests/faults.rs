//! Every simulator fault mode against the real pipeline (health tests, hold-back, extractor):
//! detected within the cut-off, and nothing from the fault is ever released or credited.
//! Also: zero false alarms over 100 MB of good simulated data, and the serial code path read
//! through the simulator's pseudo-terminal.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use qeaas::sim::{Fault, Generator};
use qeaas_core::extractor::Toeplitz;
use qeaas_core::health::Verdict;
use qeaas_core::pipeline::{Conditioner, Processing, SourceSpec};

/// The spec qeaasd uses for a default `quantis` source (6.5 bits/byte, post-processed).
fn quantis_spec() -> SourceSpec {
    let cfg = qeaas::config::Config::parse(
        "[[source]]\nname = \"q\"\nkind = \"quantis\"\n",
        std::path::Path::new("t"),
    )
    .unwrap();
    cfg.active_sources(&[], &[]).unwrap()[0].spec
}

#[derive(Debug, Default)]
struct Outcome {
    released: u64,
    millibits: u64,
    /// Input offset just past the chunk whose verdict first was not a pass, after the onset.
    detected_at: Option<u64>,
    /// Largest input offset (exclusive) that any released byte can have come from.
    released_up_to: u64,
}

fn run(
    spec: SourceSpec,
    extractor: Option<Arc<Toeplitz>>,
    fault: Fault,
    onset: u64,
    total: u64,
    chunk: usize,
) -> (Outcome, Conditioner) {
    let mut g = Generator::new(99, fault, onset);
    let mut c = Conditioner::new(spec, extractor);
    let hold = Conditioner::holdback_bytes(&spec) as u64;
    let mut o = Outcome::default();
    let mut buf = vec![0u8; chunk];
    let mut offset = 0u64;
    while offset < total {
        let n = g.fill(&mut buf);
        if n == 0 {
            break;
        }
        let (mut rel, mut mb) = (0u64, 0u64);
        let v = c.process(&buf[..n], &mut |b, m| {
            rel += b.len() as u64;
            mb += m;
        });
        offset += n as u64;
        if rel > 0 {
            // Released bytes are the oldest held ones: all older than the newest `hold` bytes.
            o.released_up_to = o.released_up_to.max(offset - hold);
        }
        o.released += rel;
        o.millibits += mb;
        if offset > onset && o.detected_at.is_none() && v != Verdict::Pass {
            o.detected_at = Some(offset);
        }
    }
    (o, c)
}

fn faults() -> Vec<(&'static str, Fault)> {
    vec![
        ("stuck", Fault::Stuck(0x55)),
        (
            "pattern",
            Fault::Pattern(vec![0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe]),
        ),
        ("bias", Fault::Bias(0.9)),
        ("stop", Fault::Stop),
    ]
}

#[test]
fn a_source_faulty_from_the_start_never_gets_past_its_startup_test() {
    for (name, f) in faults() {
        let (o, c) = run(quantis_spec(), None, f, 0, 256 * 1024, 256);
        assert_eq!((o.released, o.millibits), (0, 0), "{name}: released {o:?}");
        if name != "stop" {
            let h = c.health_counters();
            assert!(h.rct_failures + h.apt_failures > 0, "{name}: not detected");
            assert_eq!(
                c.health_state(),
                qeaas_core::health::HealthState::PermanentFailure,
                "{name}"
            );
        }
    }
}

#[test]
fn a_fault_mid_stream_is_detected_within_the_cutoff_and_nothing_after_its_onset_is_released() {
    let spec = quantis_spec();
    let c = Conditioner::new(spec, None);
    let (rct, apt) = (
        u64::from(c.health().rct_cutoff()),
        u64::from(c.health().apt_cutoff()),
    );
    let w = u64::from(spec.health.width.apt_window());
    let onset = 100_003; // not aligned to chunks or windows
    let chunk = 16;
    for (name, f, bound) in [
        // A stuck value repeats from the onset: the RCT fires at its C-th occurrence.
        ("stuck", Fault::Stuck(0x55), rct),
        // An 8-byte cycle: a new APT window starts within W samples, and its first value recurs
        // every 8 samples, reaching C within 8 C more.
        (
            "pattern",
            Fault::Pattern(vec![0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe]),
            w + 8 * apt,
        ),
        // 90% ones: 0xff has probability 0.43, so four in a row (the RCT) come within a few dozen
        // samples. Probabilistic; with this seed it is deterministic, and the bound is generous.
        ("bias", Fault::Bias(0.9), 1024),
    ] {
        let (o, _) = run(spec, None, f.clone(), onset, onset + 200_000, chunk);
        let at = o
            .detected_at
            .unwrap_or_else(|| panic!("{name} not detected: {o:?}"));
        let latency = at - onset;
        assert!(
            latency <= bound + chunk as u64,
            "{name}: detected {latency} samples after onset, bound {bound}"
        );
        assert!(
            o.released_up_to <= onset,
            "{name}: bytes from after the onset were released ({o:?})"
        );
        assert!(
            o.released > 90_000,
            "{name}: the healthy part is used ({o:?})"
        );
        eprintln!("{name:8} detected {latency:4} samples after onset (bound {bound})");

        // The same through the extractor (raw source): nothing after the onset either.
        let raw = SourceSpec {
            processing: Processing::Raw,
            ..spec
        };
        let (o, _) = run(
            raw,
            Some(Arc::new(Toeplitz::default_shape())),
            f,
            onset,
            onset + 200_000,
            chunk,
        );
        assert!(
            o.detected_at.is_some() && o.released_up_to <= onset,
            "{name} raw: {o:?}"
        );
    }
    // Stop: the device goes away; the generator delivers nothing more (the daemon then marks the
    // source absent and reopens it: see tests/daemon.rs).
    let (o, _) = run(spec, None, Fault::Stop, onset, onset + 200_000, chunk);
    assert!(o.released_up_to <= onset);
}

#[test]
fn mild_bias_passes_the_90b_tests_but_shows_in_the_fips_counters() {
    // A 60/40 bit bias gives bytes of -log2(0.6^8) = 5.9 bits of min-entropy: below the 6.5
    // claimed. Neither SP 800-90B test can see it: the likeliest byte (0xff, p = 0.017) is expected
    // 9 times per 512-sample window, far under the APT cut-off, and runs of 5 are rarer still. This
    // is the known blind spot of the two approved tests, and why the FIPS counters are kept as a
    // statistic beside them (and exported, and alerted on).
    let (_, c) = run(quantis_spec(), None, Fault::Bias(0.6), 0, 1_000_000, 4096);
    assert_eq!(
        c.health_state(),
        qeaas_core::health::HealthState::Healthy,
        "the 90B tests do not see it"
    );
    let f = c.fips_counters();
    assert!(
        f.monobit as f64 > 0.9 * (f.successes + f.failures) as f64,
        "{f:?}"
    );
}

#[test]
fn no_false_alarm_over_100_megabytes_of_good_data() {
    let spec = quantis_spec();
    let total = 100 * 1024 * 1024;
    let (o, c) = run(spec, None, Fault::None, u64::MAX, total, 1 << 16);
    let h = c.health_counters();
    assert_eq!((h.rct_failures, h.apt_failures), (0, 0), "{h:?}");
    assert_eq!(h.samples, total);
    // Everything but the start-up test and the hold-back is released, credited at 6.5 bits.
    let lost = 1024 + Conditioner::holdback_bytes(&spec) as u64;
    assert!(o.released >= total - lost - (1 << 16), "{o:?}");
    assert_eq!(o.millibits, o.released * 6500);
    // The FIPS statistic: about 1 block in 1000 of good data fails; allow a wide margin.
    let f = c.fips_counters();
    assert!(
        f.failures * 1000 <= 3 * (f.successes + f.failures) + 3000,
        "{f:?}"
    );
}

#[test]
fn the_serial_code_path_reads_the_simulators_pseudo_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let link: PathBuf = dir.path().join("ttyTRNG");
    let _sim = common::sim(&[
        "--pty",
        link.to_str().unwrap(),
        "--seed",
        "42",
        "--rate",
        "2M",
    ]);
    assert!(common::wait_until(Duration::from_secs(10), || link.exists()));
    let cfg = format!(
        "[[source]]\nname = \"t\"\nkind = \"serial\"\npreset = \"truerng\"\npath = {link:?}\n"
    );
    let src = qeaas::config::Config::parse(&cfg, std::path::Path::new("t"))
        .unwrap()
        .active_sources(&[], &[])
        .unwrap()
        .remove(0);
    let mut opened = qeaas::source::open(&src).expect("open the pty through serialport");
    assert_eq!(
        qeaas_core::provenance::decide(qeaas_core::provenance::Claim::Device, opened.node),
        Ok(qeaas_core::provenance::Provenance::Simulated),
        "a pty is never hardware"
    );
    assert!(
        opened.details.contains("pseudo-terminal") && opened.details.contains("3000000 baud"),
        "{}",
        opened.details
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 65536 {
        let n = opened.source.read(&mut buf).expect("read");
        assert!(n > 0, "unexpected end of data");
        got.extend_from_slice(&buf[..n]);
    }
    got.truncate(65536);
    // Byte for byte what the simulator generated for that seed: raw mode, no line discipline.
    let mut want = vec![0u8; 65536];
    Generator::new(42 ^ 0x5eed, Fault::None, 0).fill(&mut want);
    assert!(
        got == want,
        "bytes read through the pty differ from the simulator's stream"
    );
}
