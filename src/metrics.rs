//! Prometheus metrics on a loopback HTTP port.
//!
//! Metrics are rendered from one [`crate::engine::Snapshot`] per scrape into a fresh registry, so
//! there is a single source of truth (the engine's counters) and no second bookkeeping to drift.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{info, warn};

use qeaas_core::driver::SourceState;

use crate::engine::Engine;
use crate::kernel::SharedKernelStats;

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn float_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Renders all metrics in the Prometheus text format.
pub fn render(engine: &Engine, kernel: &SharedKernelStats) -> String {
    let snap = engine.snapshot();
    let k = *kernel.lock().unwrap_or_else(|p| p.into_inner());
    let r = Registry::new();

    let read = counter(
        &r,
        "qeaas_source_read_bytes_total",
        "Bytes read from the source device.",
        &["source"],
    );
    let state = gauge(
        &r,
        "qeaas_source_state",
        "1 for the source's current state.",
        &["source", "state"],
    );
    let info = gauge(
        &r,
        "qeaas_source_info",
        "Source kind and provenance (simulated sources never credit the kernel).",
        &["source", "kind", "provenance"],
    );
    let unplugs = counter(
        &r,
        "qeaas_source_unplugs_total",
        "Times the source disappeared (end of data or read error).",
        &["source"],
    );
    let refusals = counter(
        &r,
        "qeaas_source_refusals_total",
        "Opens refused for what the node is (a file or pipe declared hardware, a kernel device).",
        &["source"],
    );
    let hfail = counter(
        &r,
        "qeaas_source_health_failures_total",
        "SP 800-90B health test failures.",
        &["source", "test"],
    );
    let perm = counter(
        &r,
        "qeaas_source_permanent_failures_total",
        "Transitions into permanent failure.",
        &["source"],
    );
    let startups = counter(
        &r,
        "qeaas_source_startup_tests_passed_total",
        "Completed start-up tests.",
        &["source"],
    );
    let cutoff = gauge(
        &r,
        "qeaas_source_health_cutoff",
        "Health test cut-offs in force.",
        &["source", "test"],
    );
    let discarded = counter(
        &r,
        "qeaas_source_discarded_bytes_total",
        "Bytes discarded by the health gate (start-up, failures).",
        &["source"],
    );
    let credited = counter(
        &r,
        "qeaas_source_credit_total",
        "Min-entropy bits credited to the pool from the source's conditioned output.",
        &["source"],
    );
    let fips_blocks = counter(
        &r,
        "qeaas_source_fips_blocks_total",
        "FIPS 140-2 blocks tested (a statistic: about 1 in 1000 good blocks fails).",
        &["source", "result"],
    );
    let fips_fail = counter(
        &r,
        "qeaas_source_fips_failures_total",
        "FIPS 140-2 failures by test.",
        &["source", "test"],
    );
    let claimed = float_gauge(
        &r,
        "qeaas_source_entropy_claimed",
        "Min-entropy per sample claimed (credited) for the source.",
        &["source"],
    );
    // Absent until a first window of raw samples is complete.
    let estimate = float_gauge(
        &r,
        "qeaas_source_entropy_estimate",
        "Online SP 800-90B estimate (MCV and Markov over the last 64 KiB of raw samples), bits per sample.",
        &["source"],
    );
    for s in &snap.sources {
        let n = s.name.as_str();
        read.with_label_values(&[n]).inc_by(s.counters.bytes_read);
        claimed.with_label_values(&[n]).set(s.entropy_claimed);
        if let Some(h) = s.entropy_estimate {
            estimate.with_label_values(&[n]).set(h);
        }
        for st in SourceState::ALL {
            state
                .with_label_values(&[n, st.label()])
                .set(i64::from(s.state == st));
        }
        info.with_label_values(&[n, s.kind, s.provenance_label()])
            .set(1);
        unplugs.with_label_values(&[n]).inc_by(s.counters.unplugs);
        refusals.with_label_values(&[n]).inc_by(s.counters.refusals);
        hfail
            .with_label_values(&[n, "repetition_count"])
            .inc_by(s.health.rct_failures);
        hfail
            .with_label_values(&[n, "adaptive_proportion"])
            .inc_by(s.health.apt_failures);
        perm.with_label_values(&[n])
            .inc_by(s.health.permanent_failures);
        startups
            .with_label_values(&[n])
            .inc_by(s.health.startups_passed);
        cutoff
            .with_label_values(&[n, "repetition_count"])
            .set(i64::from(s.cutoffs.0));
        cutoff
            .with_label_values(&[n, "adaptive_proportion"])
            .set(i64::from(s.cutoffs.1));
        discarded
            .with_label_values(&[n])
            .inc_by(s.pipeline.bytes_discarded);
        credited
            .with_label_values(&[n])
            .inc_by(s.counters.millibits_credited / 1000);
        fips_blocks
            .with_label_values(&[n, "success"])
            .inc_by(s.fips.successes);
        fips_blocks
            .with_label_values(&[n, "failure"])
            .inc_by(s.fips.failures);
        for (t, v) in [
            ("monobit", s.fips.monobit),
            ("poker", s.fips.poker),
            ("runs", s.fips.runs),
            ("long_run", s.fips.long_run),
            ("continuous_run", s.fips.continuous),
        ] {
            fips_fail.with_label_values(&[n, t]).inc_by(v);
        }
    }

    let served = counter(
        &r,
        "qeaas_served_bytes_total",
        "Pool bytes handed out, by face and client.",
        &["face", "client"],
    );
    for ((face, client), n) in &snap.served {
        served.with_label_values(&[face.label(), client]).inc_by(*n);
    }
    let st = &engine.socket_stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let conns = gauge(
        &r,
        "qeaas_socket_connections",
        "Connections open on the local sockets.",
        &[],
    );
    conns
        .with_label_values(&[] as &[&str])
        .set(i64::try_from(load(&st.connections)).unwrap_or(i64::MAX));
    let refused = counter(
        &r,
        "qeaas_socket_connections_refused_total",
        "Connections closed at accept: the uid held its cap, or the table was full.",
        &["reason"],
    );
    refused
        .with_label_values(&["per_uid_cap"])
        .inc_by(load(&st.refused_per_uid));
    refused
        .with_label_values(&["table_full"])
        .inc_by(load(&st.refused_full));
    let evicted = counter(
        &r,
        "qeaas_socket_connections_evicted_total",
        "Idle connections closed to make room for a uid below its fair share.",
        &[],
    );
    evicted
        .with_label_values(&[] as &[&str])
        .inc_by(load(&st.evicted));
    let timeouts = counter(
        &r,
        "qeaas_socket_timeouts_total",
        "Connections closed because a request or an answer was too slow.",
        &[],
    );
    timeouts
        .with_label_values(&[] as &[&str])
        .inc_by(load(&st.timeouts));
    let pool = gauge(
        &r,
        "qeaas_pool_credit",
        "Bits credited in the pool and not yet extracted.",
        &[],
    );
    pool.with_label_values(&[] as &[&str])
        .set(i64::from(snap.pool_credit_bits));
    let ready = gauge(
        &r,
        "qeaas_ready_bytes",
        "Extracted, credited bytes waiting for consumers.",
        &[],
    );
    ready
        .with_label_values(&[] as &[&str])
        .set(snap.ready as i64);
    let cap = gauge(
        &r,
        "qeaas_ready_capacity_bytes",
        "Capacity of the ready queue.",
        &[],
    );
    cap.with_label_values(&[] as &[&str])
        .set(snap.capacity as i64);
    let pc = counter(
        &r,
        "qeaas_pool_credit_accepted_total",
        "Bits of credit accepted by the pool.",
        &[],
    );
    pc.with_label_values(&[] as &[&str])
        .inc_by(snap.reservoir.bits_credited);
    let pd = counter(
        &r,
        "qeaas_pool_credit_dropped_total",
        "Credit offered while the queue was full (dropped).",
        &[],
    );
    pd.with_label_values(&[] as &[&str])
        .inc_by(snap.reservoir.bits_dropped);
    let pp = counter(
        &r,
        "qeaas_pool_credit_past_cap_total",
        "Credit the last byte before an extraction carried past the 320 bits it needs (not reused).",
        &[],
    );
    pp.with_label_values(&[] as &[&str])
        .inc_by(snap.reservoir.bits_past_cap);
    let pe = counter(
        &r,
        "qeaas_pool_extracted_bytes_total",
        "Bytes extracted from the pool.",
        &[],
    );
    pe.with_label_values(&[] as &[&str])
        .inc_by(snap.reservoir.bytes_extracted);
    let flushed = counter(
        &r,
        "qeaas_pool_flushed_bytes_total",
        "Ready bytes discarded because a source failed a health test.",
        &[],
    );
    flushed
        .with_label_values(&[] as &[&str])
        .inc_by(snap.reservoir.bytes_flushed);
    let refused = counter(
        &r,
        "qeaas_refused_requests_total",
        "Requests the queue could not satisfy at once.",
        &[],
    );
    refused
        .with_label_values(&[] as &[&str])
        .inc_by(snap.reservoir.refusals);
    let starved = prometheus::CounterVec::new(
        Opts::new(
            "qeaas_starved_seconds_total",
            "Time consumers spent waiting for, or were refused, entropy.",
        ),
        &[],
    )
    .expect("valid metric");
    r.register(Box::new(starved.clone()))
        .expect("unique metric");
    starved
        .with_label_values(&[] as &[&str])
        .inc_by(snap.starved.as_secs_f64());

    let kadds = counter(
        &r,
        "qeaas_kernel_added_bytes_total",
        "Bytes added to the kernel input pool (RNDADDENTROPY).",
        &[],
    );
    kadds.with_label_values(&[] as &[&str]).inc_by(k.bytes);
    let kbits = counter(
        &r,
        "qeaas_kernel_credit_total",
        "Bits credited to the kernel.",
        &[],
    );
    kbits
        .with_label_values(&[] as &[&str])
        .inc_by(k.bits_credited);
    let kcalls = counter(
        &r,
        "qeaas_kernel_ioctls_total",
        "Successful kernel ioctls.",
        &["ioctl"],
    );
    kcalls.with_label_values(&["RNDADDENTROPY"]).inc_by(k.adds);
    kcalls
        .with_label_values(&["RNDRESEEDCRNG"])
        .inc_by(k.reseeds);
    let kerr = counter(
        &r,
        "qeaas_kernel_errors_total",
        "Failed kernel ioctls.",
        &[],
    );
    kerr.with_label_values(&[] as &[&str]).inc_by(k.errors);
    let kstarve = counter(
        &r,
        "qeaas_kernel_starved_feeds_total",
        "Kernel feeds delayed because the pool could not back them.",
        &[],
    );
    kstarve.with_label_values(&[] as &[&str]).inc_by(k.starved);
    let kcount = gauge(
        &r,
        "qeaas_kernel_entropy_estimate",
        "Last RNDGETENTCNT reading.",
        &[],
    );
    kcount
        .with_label_values(&[] as &[&str])
        .set(i64::from(k.entropy_count));
    let up = gauge(
        &r,
        "qeaas_uptime_seconds",
        "Seconds since the worker started.",
        &[],
    );
    up.with_label_values(&[] as &[&str])
        .set(engine.started.elapsed().as_secs() as i64);

    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&r.gather(), &mut out)
        .expect("text encoding");
    String::from_utf8(out).expect("utf-8")
}

/// Serves `GET /metrics` (HTTP/1.0 and 1.1, one request per connection).
pub async fn serve(listener: TcpListener, engine: Arc<Engine>, kernel: SharedKernelStats) {
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics ready");
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (engine, kernel) = (Arc::clone(&engine), Arc::clone(&kernel));
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            // Read the head, bounded in size and time.
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    let n = s.read(&mut buf).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                Some(())
            })
            .await;
            if !matches!(head, Ok(Some(()))) {
                return;
            }
            let line = req.split(|&b| b == b'\r').next().unwrap_or_default();
            let (status, ctype, body) = if line.starts_with(b"GET /metrics ") {
                (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    render(&engine, &kernel),
                )
            } else if line.starts_with(b"GET / ") {
                (
                    "200 OK",
                    "text/plain; charset=utf-8",
                    "qeaasd: metrics at /metrics\n".to_string(),
                )
            } else {
                (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "not found\n".to_string(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = s.write_all(resp.as_bytes()).await {
                warn!("metrics client: {e}");
            }
        });
    }
}
