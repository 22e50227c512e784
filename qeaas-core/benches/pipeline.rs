//! Throughput of the qeaas-core pipeline against rngtest, with plain BLAKE2s and SHA-256 (ours
//! and `openssl speed sha256`) as ceilings.
//!
//! Run with `scripts/bench-core.sh` (pins to one core) or
//! `cargo bench -p qeaas-core --bench pipeline`.
//!
//! Every row is measured in the same process, on the same input bytes (generated beforehand by
//! xoshiro256**, outside the timed region), one warm-up run and then `QEAAS_BENCH_RUNS` (default
//! 5) timed runs; the table shows the median and the best. MB/s are 10^6 bytes of the stage's
//! *input* per second of the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so that other load
//! on a shared machine does not count. `QEAAS_BENCH_MIB` (default 64) sets the input size.
//!
//! Each pipeline runs with both pool conditioners (SHA-256 Hash_df, the default, and BLAKE2s),
//! as qeaasd runs it: a raw source goes through the Toeplitz extractor only into the BLAKE2s pool
//! (`Processing::uses_extractor`); the "(ref.)" row shows it through the extractor into SHA-256.
//! `openssl speed sha256` is the real `openssl` binary on 16 KiB blocks, its own figure.
//!
//! rngtest is the real `/usr/bin/rngtest` (rng-tools5) run as a subprocess on the same bytes; its
//! speed is the one it reports itself ("FIPS tests speed", avg), which excludes its I/O. Its
//! wall-clock rate (including the pipe and process start) is shown as a separate row.

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qeaas_core::extractor::Toeplitz;
use qeaas_core::fips::{FipsMonitor, BLOCK_BYTES};
use qeaas_core::health::{HealthMonitor, HealthParams, MinEntropy, SampleWidth};
use qeaas_core::pipeline::{Conditioner, Processing, SourceSpec};
use qeaas_core::pool::{Pool, PoolHash, MAX_CREDIT_BITS, MAX_EXTRACT};
use qeaas_core::provenance::Provenance;
use qeaas_core::reservoir::Reservoir;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256StarStar;

/// Bytes handed to `Conditioner::process` per call (a typical device read).
const CHUNK: usize = 4096;
/// Reservoir queue; drained after every chunk, so it never fills.
const RESERVOIR_CAP: usize = 64 * 1024;
const RNGTEST: &str = "/usr/bin/rngtest";

#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    best: Duration,
}

impl Stats {
    fn mbps(bytes: usize, d: Duration) -> f64 {
        bytes as f64 / d.as_secs_f64() / 1e6
    }
}

/// One warm-up run, then `runs` timed runs of `f`.
/// CPU time of this thread: what a stage costs, whatever else the machine is running.
fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn measure(runs: usize, mut f: impl FnMut() -> u64) -> Stats {
    black_box(f());
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = cpu_now();
            black_box(f());
            cpu_now() - t
        })
        .collect();
    times.sort();
    Stats {
        median: times[times.len() / 2],
        best: times[0],
    }
}

fn spec(processing: Processing, millibits: u32) -> SourceSpec {
    let h = MinEntropy::from_millibits(millibits, SampleWidth::Byte).expect("valid H");
    SourceSpec {
        health: HealthParams::new(SampleWidth::Byte, h),
        processing,
    }
}

/// Whole pipeline: Conditioner -> Reservoir, the reservoir drained after every chunk.
/// Returns bytes taken from the reservoir.
fn run_pipeline(
    data: &[u8],
    spec: SourceSpec,
    ex: Option<Arc<Toeplitz>>,
    hash: PoolHash,
    out: &mut [u8],
) -> u64 {
    let mut cond = Conditioner::new(spec, ex);
    let mut res = Reservoir::with_hash(RESERVOIR_CAP, hash);
    let mut taken = 0u64;
    for chunk in data.chunks(CHUNK) {
        cond.process(chunk, &mut |b, mb| res.absorb(b, mb, Provenance::Simulated));
        let n = res.ready();
        if n > 0 {
            res.take(&mut out[..n]).expect("ready bytes can be taken");
            taken += n as u64;
        }
    }
    let rc = res.counters();
    assert_eq!(
        rc.bits_dropped, 0,
        "reservoir filled up: the bench must drain it"
    );
    black_box(&out[..]);
    taken
}

/// The reservoir alone, fed `CHUNK`-byte pieces credited `millibits` per byte and drained after
/// each. Returns bytes taken.
fn run_reservoir(data: &[u8], hash: PoolHash, millibits: u64, out: &mut [u8]) -> u64 {
    let mut r = Reservoir::with_hash(RESERVOIR_CAP, hash);
    let mut taken = 0u64;
    for c in data.chunks(CHUNK) {
        r.absorb(c, c.len() as u64 * millibits, Provenance::Simulated);
        let n = r.ready();
        r.take(&mut out[..n]).expect("ready");
        taken += n as u64;
    }
    taken
}

/// Runs rngtest on `data` and returns (its own FIPS speed avg in bytes/s, wall time, blocks).
fn rngtest_once(data: &[u8]) -> Result<(f64, Duration, usize), String> {
    let blocks = (data.len() - 4) / BLOCK_BYTES;
    let input = &data[..blocks * BLOCK_BYTES + 4];
    let t = Instant::now();
    let mut child = Command::new(RNGTEST)
        .arg("-c")
        .arg(blocks.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {RNGTEST}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stderr = std::thread::scope(|s| {
        // Write from a second thread so a full stderr pipe can never deadlock us. It blocks on
        // the pipe almost all the time, so it does not compete with rngtest for the pinned core.
        s.spawn(move || {
            // rngtest exits after -c blocks; a broken pipe at the very end is harmless.
            let _ = stdin.write_all(input);
        });
        child.wait_with_output()
    })
    .map_err(|e| format!("rngtest: {e}"))?
    .stderr;
    let wall = t.elapsed();
    let text = String::from_utf8_lossy(&stderr);
    let speed = parse_fips_speed(&text)
        .ok_or_else(|| format!("no 'FIPS tests speed' line in rngtest output:\n{text}"))?;
    Ok((speed, wall, blocks))
}

/// Parses `FIPS tests speed: (min=..; avg=X; max=..)UNIT` into bytes per second.
fn parse_fips_speed(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("FIPS tests speed"))?;
    let avg = line.split("avg=").nth(1)?;
    let (num, rest) = avg.split_once(';')?;
    let value: f64 = num.trim().parse().ok()?;
    let unit = rest.rsplit(')').next()?.trim();
    let bits_per_unit = match unit {
        "bits/s" => 1.0,
        "Kibits/s" => 1024.0,
        "Mibits/s" => 1024.0 * 1024.0,
        "Gibits/s" => 1024.0 * 1024.0 * 1024.0,
        "Tibits/s" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some(value * bits_per_unit / 8.0)
}

/// `openssl speed -bytes 16384 sha256`: its own figure, bytes per second.
fn openssl_sha256() -> Result<f64, String> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "-bytes", "16384", "sha256"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The result table's last line: "sha256   1014578.52k" (thousands of bytes per second).
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("sha256"))
        .ok_or_else(|| format!("no sha256 line in openssl speed output:\n{text}"))?;
    let v = line
        .split_whitespace()
        .last()
        .and_then(|v| v.strip_suffix('k'))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("cannot parse {line:?}"))?;
    Ok(v * 1000.0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cpus_allowed() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Cpus_allowed_list"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    name: &'static str,
    /// Bytes of this stage's input per run.
    bytes: usize,
    stats: Stats,
}

fn main() {
    // `cargo bench` passes `--bench`; ignore all arguments.
    let mib = env_usize("QEAAS_BENCH_MIB", 64);
    let runs = env_usize("QEAAS_BENCH_RUNS", 5).max(1);
    let len = mib * 1024 * 1024;

    println!("qeaas-core pipeline benchmark");
    println!("CPU:           {}", cpu_model());
    println!("CPUs allowed:  {} (pin with taskset -c N)", cpus_allowed());
    #[cfg(target_arch = "x86_64")]
    println!(
        "SIMD:          sse4.1={} avx2={} sha={} (blake2s_simd and sha2 pick at run time)",
        std::is_x86_feature_detected!("sse4.1"),
        std::is_x86_feature_detected!("avx2"),
        std::is_x86_feature_detected!("sha")
    );
    println!(
        "input:         {mib} MiB from xoshiro256**, {CHUNK}-byte chunks, 1 warm-up + {runs} runs"
    );

    let mut data = vec![0u8; len];
    Xoshiro256StarStar::seed_from_u64(0x005e_ed0f_9ea5).fill_bytes(&mut data);
    let ex = Arc::new(Toeplitz::default_shape());
    let raw = spec(Processing::Raw, 7000);
    let post = spec(Processing::PostProcessed, 8000);
    let mut out = vec![0u8; RESERVOIR_CAP];
    let mut rows: Vec<Row> = Vec::new();

    // a. Raw source: health -> FIPS -> [Toeplitz when the pool is not vetted] -> reservoir
    // (drained), as qeaasd runs it (`Processing::uses_extractor`), and for reference ("ref.")
    // the raw source through the Toeplitz extractor into the SHA-256 pool, which qeaasd does not
    // do (the row shows what the extractor would cost there);
    // b. post-processed source: health -> FIPS -> reservoir. Each with both pool conditioners.
    let mut outputs = Vec::new();
    let mut cases = Vec::new();
    for hash in [PoolHash::Sha256, PoolHash::Blake2s] {
        let (label, ex) = if Processing::Raw.uses_extractor(hash) {
            ("RAW H=7.0/B -> Toeplitz", Some(ex.clone()))
        } else {
            ("RAW H=7.0/B", None)
        };
        cases.push((label, raw, ex, hash, true));
    }
    cases.push((
        "RAW H=7.0/B -> Toeplitz (ref.)",
        raw,
        Some(ex.clone()),
        PoolHash::Sha256,
        false,
    ));
    for hash in [PoolHash::Sha256, PoolHash::Blake2s] {
        cases.push(("POST H=8.0/B", post, None, hash, true));
    }
    for (name, spec, ex, hash, daemon) in cases {
        let mut produced = 0;
        let stats = measure(runs, || {
            produced = run_pipeline(&data, spec, ex.clone(), hash, &mut out);
            produced
        });
        outputs.push((name, hash, produced, stats, daemon));
        rows.push(Row {
            name: Box::leak(format!("pipeline {name} -> pool {}", hash.name()).into_boxed_str()),
            bytes: len,
            stats,
        });
    }

    // c. Stages alone.
    let stats = measure(runs, || {
        let mut m = HealthMonitor::new(raw.health);
        let mut pass = 0u64;
        for c in data.chunks(CHUNK) {
            pass += u64::from(m.check(black_box(c)).usable());
        }
        pass
    });
    let health_stats = stats;
    rows.push(Row {
        name: "stage: health tests (RCT+APT, H=7.0)",
        bytes: len,
        stats,
    });

    let stats = measure(runs, || {
        let mut m = FipsMonitor::new();
        for c in data.chunks(CHUNK) {
            m.feed(black_box(c));
        }
        m.counters().failures
    });
    let fips_stats = stats;
    rows.push(Row {
        name: "stage: FIPS 140-2 counters",
        bytes: len,
        stats,
    });

    let stats = measure(runs, || {
        let mut o = [0u8; 96];
        let mut acc = 0u64;
        for b in data.chunks_exact(ex.input_bytes()) {
            ex.extract(black_box(b), &mut o);
            acc ^= u64::from(black_box(&o)[0]);
        }
        acc
    });
    let ex_stats = stats;
    rows.push(Row {
        name: "stage: Toeplitz extractor 1024->768",
        bytes: len / ex.input_bytes() * ex.input_bytes(),
        stats,
    });

    // The reservoir as the POST pipeline feeds it: 4 KiB pieces at 8 bits/byte; as a raw source
    // reaches a vetted pool: 4 KiB at 7 bits/byte; and as the extractor feeds the others:
    // 96-byte blocks credited 768 bits.
    let res_raw_bytes = len / 96 * 96;
    let mut res_raw_stats = None;
    let mut res_raw_direct = None;
    let mut res_post_mbps = Vec::new();
    for hash in [PoolHash::Sha256, PoolHash::Blake2s] {
        let stats = measure(runs, || run_reservoir(&data, hash, 8000, &mut out));
        res_post_mbps.push((hash, Stats::mbps(len, stats.median)));
        rows.push(Row {
            name: Box::leak(
                format!("stage: reservoir {} (4 KiB @ 8 bit/B)", hash.name()).into_boxed_str(),
            ),
            bytes: len,
            stats,
        });
        if !Processing::Raw.uses_extractor(hash) {
            // As the raw pipeline feeds a vetted pool: 4 KiB pieces at 7 bits/byte.
            let stats = measure(runs, || run_reservoir(&data, hash, 7000, &mut out));
            res_raw_direct = Some(stats);
            rows.push(Row {
                name: Box::leak(
                    format!("stage: reservoir {} (4 KiB @ 7 bit/B)", hash.name()).into_boxed_str(),
                ),
                bytes: len,
                stats,
            });
        }
        let stats = measure(runs, || {
            let mut r = Reservoir::with_hash(RESERVOIR_CAP, hash);
            let mut taken = 0u64;
            for (i, c) in data[..res_raw_bytes].chunks_exact(96).enumerate() {
                r.absorb(c, 768_000, Provenance::Simulated);
                if i % 32 == 31 {
                    let n = r.ready();
                    r.take(&mut out[..n]).expect("ready");
                    taken += n as u64;
                }
            }
            taken
        });
        if Processing::Raw.uses_extractor(hash) {
            res_raw_stats = Some(stats);
        }
        rows.push(Row {
            name: Box::leak(
                format!("stage: reservoir {} (96 B @ 768 bit)", hash.name()).into_boxed_str(),
            ),
            bytes: res_raw_bytes,
            stats,
        });
        let stats = measure(runs, || {
            let mut p = Pool::with_hash(hash);
            for c in data.chunks(CHUNK) {
                p.mix(c);
            }
            u64::from(p.credit_bits())
        });
        rows.push(Row {
            name: Box::leak(
                format!("stage: pool mix only {} (no extraction)", hash.name()).into_boxed_str(),
            ),
            bytes: len,
            stats,
        });
    }
    let res_raw_stats = res_raw_stats.expect("the BLAKE2s pool is not vetted");
    let res_raw_direct = res_raw_direct.expect("the SHA-256 pool is vetted");

    // d. Plain BLAKE2s over the same bytes.
    let blake = measure(runs, || {
        u64::from(blake2s_simd::blake2s(black_box(&data)).as_bytes()[0])
    });
    rows.push(Row {
        name: "plain BLAKE2s (blake2s_simd::blake2s)",
        bytes: len,
        stats: blake,
    });
    let sha = measure(runs, || {
        use sha2::Digest;
        u64::from(sha2::Sha256::digest(black_box(&data))[0])
    });
    rows.push(Row {
        name: "plain SHA-256 (sha2::Sha256)",
        bytes: len,
        stats: sha,
    });
    let openssl = openssl_sha256();

    // e. rngtest's own FIPS speed, same bytes.
    let mut rngtest: Option<(f64, f64)> = None; // (median bytes/s, best bytes/s)
    let mut rngtest_wall: Option<(Duration, Duration, usize)> = None;
    let mut rngtest_note = String::new();
    if std::path::Path::new(RNGTEST).exists() {
        let rt_runs = runs.min(3);
        let mut speeds = Vec::new();
        let mut walls = Vec::new();
        let mut blocks = 0;
        for _ in 0..rt_runs {
            match rngtest_once(&data) {
                Ok((s, w, b)) => {
                    speeds.push(s);
                    walls.push(w);
                    blocks = b;
                }
                Err(e) => {
                    rngtest_note = e;
                    break;
                }
            }
        }
        if !speeds.is_empty() {
            speeds.sort_by(f64::total_cmp);
            walls.sort();
            rngtest = Some((speeds[speeds.len() / 2], speeds[speeds.len() - 1]));
            rngtest_wall = Some((walls[walls.len() / 2], walls[0], blocks));
        }
    } else {
        rngtest_note = format!("{RNGTEST} not found (apt-get install rng-tools5)");
    }

    let blake_mbps = Stats::mbps(len, blake.median);
    let rt_mbps = rngtest.map(|(m, _)| m / 1e6);
    let ratio = |v: f64, base: Option<f64>| match base {
        Some(b) if b > 0.0 => format!("{:>8.2}x", v / b),
        _ => format!("{:>9}", "n/a"),
    };

    println!();
    println!(
        "{:<52} {:>10} {:>10} {:>9} {:>9}",
        "stage", "MB/s med", "MB/s best", "vs rngt", "vs B2s"
    );
    println!("{}", "-".repeat(94));
    for r in &rows {
        let m = Stats::mbps(r.bytes, r.stats.median);
        let b = Stats::mbps(r.bytes, r.stats.best);
        println!(
            "{:<52} {:>10.1} {:>10.1} {} {}",
            r.name,
            m,
            b,
            ratio(m, rt_mbps),
            ratio(m, Some(blake_mbps))
        );
    }
    if let Some((m, b)) = rngtest {
        let (m, b) = (m / 1e6, b / 1e6);
        println!(
            "{:<52} {:>10.1} {:>10.1} {} {}",
            "rngtest FIPS tests speed (its own avg)",
            m,
            b,
            ratio(m, rt_mbps),
            ratio(m, Some(blake_mbps))
        );
    }
    match &openssl {
        Ok(v) => println!(
            "{:<52} {:>10.1} {:>10} {} {}",
            "openssl speed sha256 (16 KiB blocks, its own figure)",
            v / 1e6,
            "",
            ratio(v / 1e6, rt_mbps),
            ratio(v / 1e6, Some(blake_mbps))
        ),
        Err(e) => println!("openssl speed: {e}"),
    }
    if let Some((wm, wb, blocks)) = rngtest_wall {
        let bytes = blocks * BLOCK_BYTES + 4;
        let m = Stats::mbps(bytes, wm);
        println!(
            "{:<52} {:>10.1} {:>10.1} {} {}",
            "rngtest wall clock (incl. pipe, process start)",
            m,
            Stats::mbps(bytes, wb),
            ratio(m, rt_mbps),
            ratio(m, Some(blake_mbps))
        );
    }
    if !rngtest_note.is_empty() {
        println!("rngtest: {rngtest_note}");
    }
    println!("{}", "-".repeat(94));
    println!(
        "MB/s = 10^6 bytes of the stage's input per second of thread CPU time; ratios use the medians."
    );

    // Where the RAW pipelines' time should go, from the stage medians. Into the SHA-256 pool
    // each input byte costs health + FIPS + the reservoir at 7 bits/byte; into the BLAKE2s pool,
    // health + FIPS + the extractor, then the reservoir on 0.75 byte.
    let per_byte = |s: Stats, bytes: usize| s.median.as_secs_f64() / bytes as f64;
    let breakdowns = [
        (
            "RAW -> pool sha256",
            [
                ("health", per_byte(health_stats, len)),
                ("FIPS", per_byte(fips_stats, len)),
                ("extractor", 0.0),
                ("reservoir", per_byte(res_raw_direct, len)),
            ],
        ),
        (
            "RAW -> Toeplitz -> pool blake2s",
            [
                ("health", per_byte(health_stats, len)),
                ("FIPS", per_byte(fips_stats, len)),
                ("extractor", per_byte(ex_stats, len / 128 * 128)),
                ("reservoir", 0.75 * per_byte(res_raw_stats, res_raw_bytes)),
            ],
        ),
    ];
    for (label, parts) in breakdowns {
        let total: f64 = parts.iter().map(|p| p.1).sum();
        print!("{label}, sum of stages: {:.1} MB/s;", 1e-6 / total);
        for (n, t) in parts.iter().filter(|p| p.1 > 0.0) {
            print!(" {n} {:.0}%", 100.0 * t / total);
        }
        println!();
    }
    for (name, hash, produced, stats, _) in &outputs {
        println!(
            "output: {name} pool {}: {:.1} MB/s of full-entropy bytes ({produced} of {len} in)",
            hash.name(),
            Stats::mbps(*produced as usize, stats.median)
        );
    }

    // The ceiling the pool design sets: each 32-byte extraction needs MAX_CREDIT_BITS of credit
    // and then costs two compressions (the final one and the ratchet), even if every other stage
    // took no time. Raw bytes per extraction: 320 / 7 straight into the SHA-256 pool, 320 / 6
    // through the extractor (96 credited bytes per 128), 320 / 8 for the POST source.
    let sha_mbps = Stats::mbps(len, sha.median);
    let bits = f64::from(MAX_CREDIT_BITS);
    for (label, plain, bytes_per_extraction) in [
        ("RAW -> pool sha256", sha_mbps, bits / 7.0),
        ("RAW -> Toeplitz -> pool blake2s", blake_mbps, bits / 6.0),
        ("POST -> pool sha256", sha_mbps, bits / 8.0),
        ("POST -> pool blake2s", blake_mbps, bits / 8.0),
    ] {
        println!(
            "pool design ceiling, {label}: {MAX_EXTRACT} B per {bytes_per_extraction:.1} B in, \
             2 compressions (plain hash {plain:.0} MB/s) -> <= {:.1} MB/s",
            plain * bytes_per_extraction / (2.0 * 64.0)
        );
    }
    let faster = res_post_mbps
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("two conditioners");
    println!(
        "faster conditioner here (reservoir, 4 KiB @ 8 bit/B): {} ({})",
        faster.0.name(),
        res_post_mbps
            .iter()
            .map(|(h, m)| format!("{} {m:.1} MB/s", h.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!();
    println!("targets (issue 16): whole pipeline >= 250 MB/s of raw input and >= 10x rngtest");
    for (name, hash, _, stats, daemon) in &outputs {
        if !daemon {
            continue;
        }
        let m = Stats::mbps(len, stats.median);
        let vs_rt = match rt_mbps {
            Some(r) => {
                let x = m / r;
                format!(
                    "{x:.2}x rngtest -> {}",
                    if x >= 10.0 { "MET" } else { "NOT MET" }
                )
            }
            None => "rngtest n/a".into(),
        };
        println!(
            "  {name:<30} pool {:<7} {m:>8.1} MB/s -> {}; {vs_rt}",
            hash.name(),
            if m >= 250.0 { "MET" } else { "NOT MET" }
        );
    }
}
