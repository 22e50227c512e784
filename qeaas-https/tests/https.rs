//! Black-box tests of qeaas-httpsd in front of a real qeaasd on a simulated Quantis, with real
//! clients: Debian's pollinate and curl (OpenSSL 3.0), and an OpenSSL 3.5 client (the vendored
//! `openssl` crate) for the post-quantum handshakes curl cannot do.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::*;

const TOKEN: &str = "test-token-1";
const SMALL_TOKEN: &str = "test-token-quota";
const SLOW_TOKEN: &str = "test-token-rate";

fn sha256_hex(s: &str) -> String {
    hex::encode(openssl::sha::sha256(s.as_bytes()))
}

/// `[tls]` and three clients: generous, a 64-byte quota, a 2-request burst at 1/1000 s.
fn tls_config(certs: &std::path::Path, groups: &str) -> String {
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n{groups}\n\
         [[client]]\nname = \"big\"\ntoken_sha256 = \"{}\"\nquota_bytes = 10000000\nrate_per_sec = 1000\nburst = 1000\n\
         [[client]]\nname = \"small\"\ntoken_sha256 = \"{}\"\nquota_bytes = 64\nrate_per_sec = 1000\n\
         [[client]]\nname = \"slow\"\ntoken_sha256 = \"{}\"\nquota_bytes = 10000000\nrate_per_sec = 0.001\nburst = 2\n",
        certs.join("server.crt"),
        certs.join("server.key"),
        sha256_hex(TOKEN),
        sha256_hex(SMALL_TOKEN),
        sha256_hex(SLOW_TOKEN),
    )
}

/// The hex of a `{"entropy":"<hex>","bytes":N}` answer, checked against N.
fn entropy_json(body: &[u8], n: usize) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    assert_eq!(v["bytes"].as_u64(), Some(n as u64), "{v}");
    let bytes = hex::decode(v["entropy"].as_str().expect("entropy string")).unwrap();
    assert_eq!(bytes.len(), n);
    bytes
}

#[test]
fn pollinate_seeds_from_the_frontend_which_runs_unprivileged() {
    if !require(have("pollinate") && have("curl"), "pollinate and curl") {
        return;
    }
    let stack = Stack::start();
    let certs = stack.certs("ec", "ecdsa-p256");
    // Prefetch off: the daemon's counter must then match the bytes served exactly.
    let (front, port) = stack.frontend(
        "front",
        &format!("prefetch_bytes = 0\n{}", tls_config(&certs, "")),
    );
    let served = "qeaas_served_bytes_total{client=\"uid:65534\",face=\"socket\"}";

    // Least privilege: no capabilities at all, and not root when started as root.
    assert_eq!(proc_status(front.pid(), "CapEff"), "0000000000000000");
    assert_eq!(proc_status(front.pid(), "CapPrm"), "0000000000000000");
    if require(is_root(), "root (the frontend must drop to nobody)") {
        let uids = proc_status(front.pid(), "Uid");
        assert!(uids.split_whitespace().all(|u| u == "65534"), "uids {uids}");
        assert_eq!(proc_status(front.pid(), "NoNewPrivs"), "1");
    }

    let pollinate = |curl_opts: &str| pollinate(port, curl_opts);
    // Unverifiable certificate: pollinate (strict) must fail, and nothing is served.
    let bad = pollinate("--max-time 10");
    assert!(!bad.status.success(), "pollinate accepted an unknown CA");

    let ca = format!("--cacert {}", certs.join("ca.crt").display());
    for round in 1..=2u64 {
        let out = pollinate(&ca);
        assert!(
            out.status.success(),
            "pollinate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // --binary --testing: the 64-byte sha512 of the whole exchange goes to stdout.
        assert_eq!(out.stdout.len(), 64);
        if is_root() {
            // The daemon counts what it handed to the frontend's uid: 64 bytes per exchange.
            assert_eq!(stack.metric(served), Some(64.0 * round as f64));
        }
    }
}

#[test]
fn json_api_over_http1_and_http2_with_limits_and_failures() {
    if !require(have("curl"), "curl") {
        return;
    }
    let stack = Stack::start();
    let certs = stack.certs("ec", "ecdsa-p256");
    let (_front, port) = stack.frontend("front", &tls_config(&certs, ""));
    let curl = Curl {
        ca: certs.join("ca.crt"),
        port,
    };

    let (st, _, _) = curl.get("/health", &[]);
    assert_eq!(st, 200);

    // N fresh bytes, different every time, over HTTP/1.1 and HTTP/2.
    let mut seen = HashSet::new();
    for (n, proto) in [
        (1, "--http1.1"),
        (32, "--http2"),
        (100, "--http1.1"),
        (4096, "--http2"),
    ] {
        let (st, hdr, body) = curl.entropy(TOKEN, &format!("?bytes={n}"), &[proto]);
        assert_eq!(st, 200, "{hdr}");
        let want = if proto == "--http2" {
            "http/2 200"
        } else {
            "http/1.1 200"
        };
        assert!(hdr.starts_with(want), "{hdr}");
        assert!(hdr.contains("cache-control: no-store"));
        assert!(seen.insert(entropy_json(&body, n)));
    }
    // Default size, and raw bytes on request.
    let (_, _, body) = curl.entropy(TOKEN, "", &[]);
    assert!(seen.insert(entropy_json(&body, 32)));
    let (st, hdr, raw) = curl.entropy(
        TOKEN,
        "?bytes=48",
        &["-H", "Accept: application/octet-stream"],
    );
    assert_eq!(st, 200);
    assert!(
        hdr.contains("content-type: application/octet-stream"),
        "{hdr}"
    );
    assert_eq!(raw.len(), 48);
    assert!(seen.insert(raw));

    // Bad input: clear errors.
    assert_eq!(curl.entropy(TOKEN, "?bytes=0", &[]).0, 400);
    assert_eq!(curl.entropy(TOKEN, "?bytes=4097", &[]).0, 400);
    assert_eq!(curl.get("/nope", &[]).0, 404);
    // 401: no token, unknown token.
    let (st, hdr, _) = curl.get("/api/v1/entropy", &[]);
    assert_eq!(st, 401);
    assert!(hdr.contains("www-authenticate: bearer"), "{hdr}");
    assert_eq!(curl.entropy("wrong-token", "", &[]).0, 401);
    // 403: a 64-byte quota allows one 64-byte request.
    assert_eq!(curl.entropy(SMALL_TOKEN, "?bytes=64", &[]).0, 200);
    let (st, hdr, _) = curl.entropy(SMALL_TOKEN, "?bytes=1", &[]);
    assert_eq!(st, 403);
    assert!(hdr.contains("retry-after:"), "{hdr}");
    // 429: a burst of two, then refused with Retry-After.
    assert_eq!(curl.entropy(SLOW_TOKEN, "", &[]).0, 200);
    assert_eq!(curl.entropy(SLOW_TOKEN, "", &["--http2"]).0, 200);
    let (st, hdr, _) = curl.entropy(SLOW_TOKEN, "", &[]);
    assert_eq!(st, 429);
    assert!(hdr.contains("retry-after: "), "{hdr}");

    // 503 when the daemon is gone, for both /health and the API. /health finds the daemon gone
    // and drops the prefetch buffer, so the API's 503 does not depend on timing.
    let mut stack = stack;
    stack.daemon.terminate();
    assert_eq!(curl.get("/health", &[]).0, 503);
    let (st, hdr, _) = curl.entropy(TOKEN, "", &[]);
    assert_eq!(st, 503);
    assert!(hdr.contains("retry-after: "), "{hdr}");
}

#[test]
fn prefetched_bytes_are_handed_out_once_and_counted_when_fetched() {
    let stack = Stack::start();
    // Plain HTTP on loopback, default prefetch (4096 bytes ahead).
    let (_front, port) = stack.frontend(
        "plain",
        &format!(
            "[[client]]\nname = \"big\"\ntoken_sha256 = \"{}\"\nquota_bytes = 10000000\n\
             rate_per_sec = 100000\nburst = 100000\n",
            sha256_hex(TOKEN)
        ),
    );
    let served = "qeaas_served_bytes_total{client=\"uid:65534\",face=\"socket\"}";
    let uid_served = if is_root() {
        served.to_string()
    } else {
        served.replace("65534", &rustix::process::geteuid().as_raw().to_string())
    };
    let before = stack.metric(&uid_served).unwrap_or(0.0) as u64;
    // Concurrent keep-alive clients, each asking for 32 raw bytes at a time: enough demand for
    // the frontend to fetch ahead and answer from its buffer.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let req = format!(
                    "GET /api/v1/entropy?bytes=32 HTTP/1.1\r\nHost: x\r\n\
                     Authorization: Bearer {TOKEN}\r\nAccept: application/octet-stream\r\n\r\n"
                );
                let mut got = Vec::new();
                let mut buf = Vec::new();
                for _ in 0..100 {
                    s.write_all(req.as_bytes()).unwrap();
                    // Read one response: headers, then a 32-byte body.
                    loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            if buf.len() >= end + 4 + 32 {
                                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                                got.push(buf[end + 4..end + 36].to_vec());
                                buf.drain(..end + 36);
                                break;
                            }
                        }
                        let mut chunk = [0u8; 4096];
                        let n = s.read(&mut chunk).unwrap();
                        assert!(n > 0, "connection closed");
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
                got
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in threads {
        for b in t.join().unwrap() {
            assert!(seen.insert(b), "the same 32 bytes were handed out twice");
        }
    }
    let delivered = 32 * seen.len() as u64;
    let counted = stack.metric(&uid_served).unwrap_or(0.0) as u64 - before;
    println!("delivered {delivered} bytes, qeaasd counted {counted} (the rest was fetched ahead)");
    // Never more handed out than qeaasd handed over.
    assert!(
        counted >= delivered,
        "counted {counted} < delivered {delivered}"
    );
}

#[test]
fn stopped_simulator_gives_503_once_the_queue_is_spent() {
    if !require(have("curl"), "curl") {
        return;
    }
    let mut stack = Stack::start();
    let certs = stack.certs("ec", "ecdsa-p256");
    let (_front, port) = stack.frontend("front", &tls_config(&certs, ""));
    let curl = Curl {
        ca: certs.join("ca.crt"),
        port,
    };
    assert_eq!(curl.entropy(TOKEN, "?bytes=64", &[]).0, 200);
    stack.sim.terminate();
    // What is already conditioned (the daemon's queue, the pipe's buffer) may still be served;
    // then the answer is 503 with Retry-After, never short or repeated bytes.
    let mut seen = HashSet::new();
    let mut refused = None;
    for _ in 0..200 {
        let (st, hdr, body) = curl.entropy(TOKEN, "?bytes=4096", &[]);
        match st {
            200 => assert!(seen.insert(entropy_json(&body, 4096))),
            503 => {
                refused = Some((hdr, body));
                break;
            }
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    let (hdr, _) = refused.expect("still served 800 KB after the simulator stopped");
    assert!(hdr.contains("retry-after: "), "{hdr}");
    assert!(
        wait_until(Duration::from_secs(20), || curl.get("/health", &[]).0
            == 503),
        "/health stayed 200 with the only source gone"
    );
}

#[test]
fn failed_source_gives_503() {
    if !require(have("curl"), "curl") {
        return;
    }
    // The simulated Quantis gets stuck on one value after 20 kB: its health tests fail it.
    let stack = Stack::start_with(&["--fault", "stuck:0x55", "--fault-after", "20k"]);
    let certs = stack.certs("ec", "ecdsa-p256");
    let (_front, port) = stack.frontend("front", &tls_config(&certs, ""));
    let curl = Curl {
        ca: certs.join("ca.crt"),
        port,
    };
    assert!(
        wait_until(Duration::from_secs(60), || stack
            .metric("qeaas_source_state{source=\"qsim\",state=\"failed\"}")
            == Some(1.0)),
        "the source did not fail"
    );
    assert_eq!(curl.get("/health", &[]).0, 503);
    let (st, hdr, body) = curl.entropy(TOKEN, "?bytes=64", &[]);
    assert_eq!(st, 503, "{}", String::from_utf8_lossy(&body));
    assert!(hdr.contains("retry-after: "), "{hdr}");
    assert!(String::from_utf8_lossy(&body).contains("entropy source failed"));
}

/// An HTTP/1.1 GET over TLS 1.3 with the vendored OpenSSL 3.5, offering only `groups` and
/// verifying the server against `ca`. Returns the response text and the peer certificate's
/// signature algorithm, or the handshake error.
fn pq_get(
    port: u16,
    ca: &std::path::Path,
    groups: &str,
    path: &str,
) -> Result<(String, String), String> {
    use openssl::ssl::{SslConnector, SslMethod, SslVersion};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
    b.set_groups_list(groups).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut s = b
        .build()
        .connect("127.0.0.1", tcp)
        .map_err(|e| e.to_string())?;
    let sig = s
        .ssl()
        .peer_certificate()
        .expect("peer certificate")
        .signature_algorithm()
        .object()
        .to_string();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    Ok((resp, sig))
}

#[test]
fn post_quantum_groups_with_ecdsa_and_ml_dsa_44_certificates() {
    let stack = Stack::start();
    assert!(
        openssl::version::number() >= 0x3050_0000,
        "{}",
        openssl::version::version()
    );
    for (alg, sig_name) in [
        ("ecdsa-p256", "ecdsa-with-SHA256"),
        ("ml-dsa-44", "ML-DSA-44"),
    ] {
        let certs = stack.certs(alg, alg);
        let (_front, port) = stack.frontend(alg, &tls_config(&certs, ""));
        let ca = certs.join("ca.crt");
        let mut seen = HashSet::new();
        // Offering one group at a time: success means the server negotiated exactly that one.
        for group in ["X25519MLKEM768", "MLKEM768", "MLKEM512", "X25519", "P-256"] {
            let (resp, sig) = pq_get(port, &ca, group, "/api/v1/entropy?bytes=32")
                .unwrap_or_else(|e| panic!("{alg} {group}: {e}"));
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
            assert_eq!(sig, sig_name);
            let body = resp.split_once("\r\n\r\n").unwrap().1;
            assert!(seen.insert(entropy_json(body.as_bytes(), 32)));
        }
    }
    // A server configured for X25519 only refuses a client offering only X25519MLKEM768: the
    // groups setting is real.
    let certs = stack.certs("x25519", "ecdsa-p256");
    let (_front, port) = stack.frontend("x25519", &tls_config(&certs, "groups = [\"X25519\"]"));
    let ca = certs.join("ca.crt");
    assert!(pq_get(port, &ca, "X25519MLKEM768", "/health").is_err());
    assert!(pq_get(port, &ca, "X25519", "/health").is_ok());
}

#[test]
fn config_errors_are_clear_and_plain_http_is_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        Command::new(HTTPSD)
            .args(["-c", p.to_str().unwrap(), "check-config"])
            .output()
            .unwrap()
    };
    let out = run("listen = \"127.0.0.1:80\"\nbogus = 1\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    let out = run("listen = \"0.0.0.0:80\"\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = run("listen = \"127.0.0.1:80\"\n[tls]\ncert = \"/nonexistent.crt\"\nkey = \"/nonexistent.key\"\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.crt"));
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/qeaas-httpsd.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    Config::parse(&text).unwrap();
}

#[test]
fn plain_http_on_loopback_serves_pollen_and_hostile_input_does_not_crash() {
    let stack = Stack::start();
    let (front, port) = stack.frontend("plain", "");
    let send = |raw: &[u8]| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    // The pollen exchange byte for byte, checked against an independent SHA-512.
    let challenge = "abc%20def";
    let body = format!("challenge={challenge}");
    let resp = send(
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let text = resp.split_once("\r\n\r\n").unwrap().1;
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert_eq!(lines[0], hex::encode(openssl::sha::sha512(b"abc def")));
    assert_eq!(lines[1].len(), 128);
    assert!(
        send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 400")
    );
    // Garbage, a huge body, a bad token header: errors, and the server keeps serving.
    let _ = send(b"\x16\x03\x01\x00\xff garbage\r\n\r\n");
    let _ = send(b"GET /api/v1/entropy?bytes=99999999999999999999 HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n\r\n");
    let big =
        send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n");
    assert!(big.starts_with("HTTP/1.1 413") || big.is_empty(), "{big}");
    assert!(
        send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .starts_with("HTTP/1.1 200")
    );
    assert!(std::fs::read_to_string(format!("/proc/{}/status", front.pid())).is_ok());
}

use qeaas_https::config::Config;
