//! Debian's nginx terminating TLS in front of a plain-HTTP qeaas-httpsd on loopback, configured
//! by the shipped `scripts/deploy/nginx-https.conf` (only its paths and ports are replaced), with
//! real clients: pollinate and curl.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const TOKEN: &str = "nginx-test-token";
const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/deploy/nginx-https.conf"
);

/// Replaces exactly one occurrence of `from`: if the shipped file changes, the test says so
/// instead of silently testing something else.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{SHIPPED} no longer contains {from:?} exactly once"
    );
    text.replacen(from, to, 1)
}

/// The shipped server block with test certificates and ports, inside a minimal nginx.conf whose
/// every path is in `dir`.
fn nginx_conf(dir: &Path, certs: &Path, listen: u16, upstream: u16) -> String {
    let shipped = std::fs::read_to_string(SHIPPED).unwrap();
    let mut s = replace_once(
        &shipped,
        "server 127.0.0.1:8080;",
        &format!("server 127.0.0.1:{upstream};"),
    );
    s = replace_once(
        &s,
        "listen 443 ssl http2;",
        &format!("listen 127.0.0.1:{listen} ssl http2;"),
    );
    s = replace_once(
        &s,
        "/etc/qeaas/https/server.crt",
        certs.join("server.crt").to_str().unwrap(),
    );
    s = replace_once(
        &s,
        "/etc/qeaas/https/server.key",
        certs.join("server.key").to_str().unwrap(),
    );
    let site = dir.join("qeaas-https.conf");
    std::fs::write(&site, s).unwrap();
    let d = dir.display();
    format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx.err info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
           proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {};\n}}\n",
        site.display()
    )
}

#[test]
fn nginx_terminates_tls_for_pollinate_and_the_json_api_and_passes_503_through() {
    if !require(have("nginx"), "nginx (Debian nginx-light)")
        || !require(have("pollinate"), "pollinate")
        || !require(have("curl"), "curl")
    {
        return;
    }
    let mut stack = Stack::start();
    let certs = stack.certs("ec", "ecdsa-p256");
    let ca = certs.join("ca.crt");
    // Plain HTTP on loopback, as the shipped config expects. Prefetch off: the daemon's counter
    // must then match the bytes the clients got exactly.
    let token_sha = hex::encode(openssl::sha::sha256(TOKEN.as_bytes()));
    let (_front, upstream) = stack.frontend(
        "plain",
        &format!(
            "prefetch_bytes = 0\n[[client]]\nname = \"n\"\ntoken_sha256 = \"{token_sha}\"\n\
             quota_bytes = 1000000\nrate_per_sec = 1000\nburst = 1000\n"
        ),
    );

    let dir = stack.dir.path().join("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&dir, &certs, port, upstream)).unwrap();
    let check = nginx(&dir, &conf).arg("-t").output().expect("run nginx -t");
    assert!(
        check.status.success(),
        "nginx -t rejected the shipped config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _nginx = start_nginx(&dir, &conf);
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("nginx.err")).unwrap_or_default()
    );

    let curl = Curl {
        ca: ca.clone(),
        port,
    };
    let uid = if is_root() {
        65534
    } else {
        rustix::process::geteuid().as_raw()
    };
    let served = format!("qeaas_served_bytes_total{{client=\"uid:{uid}\",face=\"socket\"}}");
    let counted = || stack.metric(&served).unwrap_or(0.0) as u64;
    let before = counted();

    // pollinate, strict: the first line must be sha512 of its challenge, so nginx passed the
    // exchange through unchanged.
    for _ in 0..2 {
        let out = pollinate(port, &format!("--cacert {}", ca.display()));
        assert!(
            out.status.success(),
            "pollinate through nginx failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), 64);
    }
    assert_eq!(
        counted() - before,
        2 * 64,
        "pollen answers not backed by pool bytes"
    );

    // The JSON API with a token, over HTTP/2 and HTTP/1.1 to nginx.
    let auth = format!("Authorization: Bearer {TOKEN}");
    let mut seen = std::collections::HashSet::new();
    let mut delivered = 0;
    for (n, proto, want) in [
        (32, "--http2", "http/2 200"),
        (48, "--http1.1", "http/1.1 200"),
        (4096, "--http2", "http/2 200"),
    ] {
        let (st, hdr, body) =
            curl.get(&format!("/api/v1/entropy?bytes={n}"), &["-H", &auth, proto]);
        assert_eq!(st, 200, "{hdr}{}", String::from_utf8_lossy(&body));
        assert!(hdr.starts_with(want), "{hdr}");
        assert!(hdr.contains("cache-control: no-store"), "{hdr}");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["bytes"].as_u64(), Some(n));
        let bytes = hex::decode(v["entropy"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len() as u64, n);
        assert!(seen.insert(bytes), "the same bytes twice");
        delivered += n;
    }
    assert_eq!(counted() - before, 2 * 64 + delivered);
    // No token: the frontend's 401 passes through nginx.
    assert_eq!(curl.get("/api/v1/entropy", &[]).0, 401);
    assert_eq!(curl.get("/health", &[]).0, 200);

    // The daemon goes away: the frontend's 503 (with Retry-After and its text) reaches the
    // client through nginx, for the API, for pollen and for /health.
    stack.daemon.terminate();
    let (st, hdr, body) = curl.get("/api/v1/entropy?bytes=32", &["-H", &auth]);
    assert_eq!(st, 503, "{hdr}");
    assert!(hdr.contains("retry-after: "), "{hdr}");
    assert!(
        String::from_utf8_lossy(&body).contains("entropy daemon unavailable"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (st, _, _) = curl.get("/", &["--data", "challenge=0123456789abcdef", "--http1.1"]);
    assert_eq!(st, 503);
    assert_eq!(curl.get("/health", &[]).0, 503);
    let strict = pollinate(port, &format!("--cacert {} --max-time 10", ca.display()));
    assert!(
        !strict.status.success(),
        "pollinate --strict accepted a 503"
    );
}
