//! The paper's handshake matrix on loopback, against running qeaas-coapd processes over real
//! UDP sockets (run by `scripts/handshake-matrix.sh`, which starts them).
//!
//! For each configuration: `--warmup` unrecorded handshakes, then `--runs` recorded ones, each
//! on a fresh socket and session: handshake latency (from creating the client session to the
//! handshake completing, cookie exchange included), UDP payload bytes and datagrams the client
//! sent and received during it, then one confirmable `GET /entropy` (32 bytes) and its round
//! trip; close_notify ends the session so the server frees it.
//!
//! Output: a Markdown table and an SVG bar chart (mean handshake time, ±1 sd).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use qeaas_coap::fetch::{client_context, Auth, Client, Retransmit, Target};
use qeaas_wolfssl_sys::{Group, Version};

#[derive(Parser)]
struct Args {
    /// qeaas-coapd with the ECDSA P-256 certificate (and the PSK).
    #[arg(long)]
    ecdsa: SocketAddr,
    /// qeaas-coapd with the ML-DSA-44 certificate.
    #[arg(long)]
    mldsa: SocketAddr,
    /// CA of the ECDSA server.
    #[arg(long)]
    ecdsa_ca: PathBuf,
    /// CA of the ML-DSA-44 server.
    #[arg(long)]
    mldsa_ca: PathBuf,
    /// PSK identity known to the ECDSA server.
    #[arg(long)]
    psk_identity: String,
    /// Its key file.
    #[arg(long)]
    psk_key_file: PathBuf,
    /// Recorded handshakes per configuration.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Unrecorded handshakes first (caches, allocator).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Markdown output.
    #[arg(long)]
    md: PathBuf,
    /// SVG output.
    #[arg(long)]
    svg: PathBuf,
}

struct Config {
    group: &'static str,
    label: String,
    server: SocketAddr,
    kx: Option<Group>,
    auth: Auth,
}

#[derive(Default)]
struct Samples {
    hs_ms: Vec<f64>,
    rtt_ms: Vec<f64>,
    sent: Vec<u64>,
    recv: Vec<u64>,
    dg_sent: Vec<u64>,
    dg_recv: Vec<u64>,
    /// What wolfSSL negotiated (from the last run): proof the row measured what it says.
    negotiated: String,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn sd(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0)).sqrt()
}

/// Nearest-rank percentile.
fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((p / 100.0 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

fn meanu(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len() as f64
}

fn range(v: &[u64]) -> String {
    let (lo, hi) = (v.iter().min().unwrap(), v.iter().max().unwrap());
    if lo == hi {
        format!("{lo}")
    } else {
        format!("{:.0} ({lo}-{hi})", meanu(v))
    }
}

/// One handshake, one GET, close; `Some` sample unless warming up.
fn once(
    c: &Config,
    ctx: &qeaas_wolfssl_sys::Context,
    target: &Target,
    s: &mut Samples,
    record: bool,
) -> Result<(), String> {
    let t0 = Instant::now();
    // Verified rows check the name too, as qeaas-fetch does.
    let host = matches!(c.auth, Auth::Ca(_)).then_some("127.0.0.1");
    let mut cl = Client::connect(c.server, host, ctx, c.kx, Duration::from_secs(10))
        .map_err(|e| format!("{}: {e}", c.label))?;
    let hs = t0.elapsed();
    let w = cl.wire();
    let ses = cl.session();
    s.negotiated = format!(
        "{} {}",
        ses.cipher().unwrap_or_default(),
        ses.group().unwrap_or_else(|| "no (EC)DHE".into())
    );
    let t1 = Instant::now();
    let body = cl
        .get(target, Retransmit::default())
        .map_err(|e| format!("{}: {e}", c.label))?;
    let rtt = t1.elapsed();
    if body.len() != 32 {
        return Err(format!("{}: {} bytes instead of 32", c.label, body.len()));
    }
    cl.close();
    if record {
        s.hs_ms.push(hs.as_secs_f64() * 1e3);
        s.rtt_ms.push(rtt.as_secs_f64() * 1e3);
        s.sent.push(w.sent_bytes);
        s.recv.push(w.recv_bytes);
        s.dg_sent.push(w.sent_datagrams);
        s.dg_recv.push(w.recv_datagrams);
    }
    Ok(())
}

/// All configurations round-robin (run i of every row before run i+1 of any), so that load
/// from elsewhere on the machine spreads over all rows alike.
fn run_all(configs: &[Config], runs: usize, warmup: usize) -> Result<Vec<Samples>, String> {
    let ctxs = configs
        .iter()
        .map(|c| client_context(Version::Dtls13, c.kx, &c.auth).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let target = Target::parse("coaps://x/entropy").map_err(|e| e.to_string())?;
    let mut samples: Vec<Samples> = configs.iter().map(|_| Samples::default()).collect();
    for i in 0..warmup + runs {
        for ((c, ctx), s) in configs.iter().zip(&ctxs).zip(samples.iter_mut()) {
            once(c, ctx, &target, s, i >= warmup)?;
        }
    }
    Ok(samples)
}

fn svg(rows: &[(&Config, Samples)], runs: usize) -> String {
    let groups: Vec<&str> = rows.iter().fold(Vec::new(), |mut g, (c, _)| {
        if !g.contains(&c.group) {
            g.push(c.group);
        }
        g
    });
    let max = rows
        .iter()
        .map(|(_, s)| mean(&s.hs_ms) + sd(&s.hs_ms))
        .fold(0.0, f64::max)
        * 1.1;
    let (w, h, left, top, bottom) = (900.0, 460.0, 70.0, 40.0, 120.0);
    let plot_h = h - top - bottom;
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let colors = [
        "#4e79a7", "#a0cbe8", "#f28e2b", "#ffbe7d", "#59a14f", "#8cd17d",
    ];
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">DTLS 1.3 handshake on loopback (qeaas-coapd, mean ± sd of {runs} runs)</text>",
        w / 2.0
    );
    // Axis with 5 ticks.
    for i in 0..=5 {
        let v = max * i as f64 / 5.0;
        let _ = writeln!(
            o,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>",
            w - 10.0,
            left - 6.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    let _ = writeln!(
        o,
        "<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">handshake time (ms)</text>",
        top + plot_h / 2.0
    );
    let gw = (w - left - 20.0) / groups.len() as f64;
    let mut legend: Vec<(String, &str)> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let members: Vec<&(&Config, Samples)> =
            rows.iter().filter(|(c, _)| c.group == *g).collect();
        let bw = (gw - 30.0) / members.len() as f64;
        let x0 = left + gi as f64 * gw + 15.0;
        for (bi, (c, s)) in members.iter().enumerate() {
            let (m, d) = (mean(&s.hs_ms), sd(&s.hs_ms));
            let series = c.label.split(" / ").nth(1).unwrap_or(&c.label).to_string();
            let ci = legend
                .iter()
                .position(|(l, _)| *l == series)
                .unwrap_or_else(|| {
                    legend.push((series.clone(), colors[legend.len() % colors.len()]));
                    legend.len() - 1
                });
            let x = x0 + bi as f64 * bw;
            let _ = writeln!(
                o,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {m:.3} ms</title></rect>\n\
                 <line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
                 <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{m:.2}</text>",
                y(m),
                bw - 4.0,
                y(0.0) - y(m),
                legend[ci].1,
                c.label,
                y((m - d).max(0.0)),
                y(m + d),
                y(m + d) - 4.0,
                cx = x + (bw - 4.0) / 2.0
            );
        }
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">{g}</text>",
            x0 + (gw - 30.0) / 2.0,
            y(0.0) + 20.0
        );
    }
    for (i, (l, c)) in legend.iter().enumerate() {
        let (lx, ly) = (
            left + (i % 3) as f64 * 260.0,
            h - 70.0 + (i / 3) as f64 * 20.0,
        );
        let _ = writeln!(
            o,
            "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{l}</text>",
            ly - 10.0,
            lx + 18.0,
            ly
        );
    }
    o.push_str("</svg>\n");
    o
}

fn main() -> Result<(), String> {
    let a = Args::parse();
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (eca, mca) = (read(&a.ecdsa_ca)?, read(&a.mldsa_ca)?);
    let mut key = read(&a.psk_key_file)?;
    while key.last() == Some(&b'\n') {
        key.pop();
    }
    let psk = Auth::Psk {
        identity: a.psk_identity.into_bytes(),
        key,
    };
    let mut configs = Vec::new();
    for (group, kx) in [
        ("ECDHE P-256", Group::P256),
        ("X25519", Group::X25519),
        ("ML-KEM-512", Group::MlKem512),
    ] {
        for (cert, server, ca) in [("ECDSA P-256", a.ecdsa, &eca), ("ML-DSA-44", a.mldsa, &mca)] {
            for verify in [true, false] {
                configs.push(Config {
                    group,
                    label: format!(
                        "{group} / {cert} {}",
                        if verify { "verified" } else { "unverified" }
                    ),
                    server,
                    kx: Some(kx),
                    auth: if verify {
                        Auth::Ca(ca.clone())
                    } else {
                        Auth::Insecure
                    },
                });
            }
        }
    }
    for (label, kx) in [
        ("PSK / PSK only", None),
        ("PSK / PSK + ML-KEM-512", Some(Group::MlKem512)),
    ] {
        configs.push(Config {
            group: "PSK",
            label: label.into(),
            server: a.ecdsa,
            kx,
            auth: psk.clone(),
        });
    }
    eprintln!("{} configurations x {} runs ...", configs.len(), a.runs);
    let rows: Vec<(&Config, Samples)> = configs
        .iter()
        .zip(run_all(&configs, a.runs, a.warmup)?)
        .collect();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| configuration (DTLS 1.3) | handshake ms mean | sd | median | p99 | client sent B | client received B | datagrams sent/received | first GET RTT ms mean | p99 | negotiated |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for (c, s) in &rows {
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {}/{} | {:.3} | {:.3} | {} |",
            c.label.replace(" / ", ", "),
            mean(&s.hs_ms),
            sd(&s.hs_ms),
            pct(&s.hs_ms, 50.0),
            pct(&s.hs_ms, 99.0),
            range(&s.sent),
            range(&s.recv),
            range(&s.dg_sent),
            range(&s.dg_recv),
            mean(&s.rtt_ms),
            pct(&s.rtt_ms, 99.0),
            s.negotiated,
        );
    }
    let _ = writeln!(
        md,
        "\n{} recorded handshakes per row after {} unrecorded, all rows round-robin; bytes are UDP payloads seen by the client \
         from its first ClientHello to handshake completion (cookie round trip included); a range \
         is shown where runs differed.",
        a.runs, a.warmup
    );
    std::fs::write(&a.md, &md).map_err(|e| format!("{}: {e}", a.md.display()))?;
    std::fs::write(&a.svg, svg(&rows, a.runs)).map_err(|e| format!("{}: {e}", a.svg.display()))?;
    print!("{md}");
    Ok(())
}
