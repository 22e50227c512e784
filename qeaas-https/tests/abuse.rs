//! Attacks on the HTTPS face by network peers, against the real qeaas-httpsd in front of a real
//! qeaasd: one token's concurrent HTTP/2 streams racing its quota, and idle connections holding
//! every connection slot.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "abuse-token";

fn sha256_hex(s: &str) -> String {
    hex::encode(openssl::sha::sha256(s.as_bytes()))
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it):
/// the idle-connection test holds thousands of sockets.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// `status codes: A 2xx, B 3xx, C 4xx, D 5xx` from h2load's summary.
fn h2load_status_codes(out: &str) -> [u64; 4] {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("status codes:"))
        .unwrap_or_else(|| panic!("no status codes in h2load output:\n{out}"));
    let mut v = [0u64; 4];
    for (i, part) in line
        .split_once(':')
        .unwrap()
        .1
        .split(',')
        .take(4)
        .enumerate()
    {
        v[i] = part.split_whitespace().next().unwrap().parse().unwrap();
    }
    v
}

/// 100 HTTP/2 streams at once on one connection, one token with a 640-byte quota (ten 64-byte
/// answers): every stream is admitted before any is served, so a quota that is only charged
/// after serving lets them all through. Bytes served must never exceed the quota.
#[test]
fn concurrent_http2_streams_of_one_token_never_exceed_its_quota() {
    if !require(have("h2load"), "h2load (apt: nghttp2-client)") {
        return;
    }
    let stack = Stack::start();
    let (front, port) = stack.frontend(
        "race",
        &format!(
            "[[client]]\nname = \"racer\"\ntoken_sha256 = \"{}\"\nquota_bytes = 640\n\
             rate_per_sec = 100000\nburst = 100000\n",
            sha256_hex(TOKEN)
        ),
    );
    let out = Command::new("timeout")
        .args(["60", "h2load", "-n", "100", "-c", "1", "-m", "100", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(format!("http://127.0.0.1:{port}/api/v1/entropy?bytes=64"))
        .output()
        .expect("run h2load");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let [ok, _, refused, failed] = h2load_status_codes(&text);
    let log = std::fs::read_to_string(stack.dir.path().join("race.log")).unwrap();
    let served_lines = log.lines().filter(|l| l.contains("served")).count() as u64;
    eprintln!(
        "h2load: {ok} x 2xx, {refused} x 4xx, {failed} x 5xx; frontend logged {served_lines} served"
    );
    // The attack first: whatever else happened, bytes served stay within the quota.
    assert!(
        ok * 64 <= 640,
        "{} bytes served on a 640-byte quota ({ok} answers of 64 bytes)",
        ok * 64
    );
    assert_eq!(served_lines, ok, "the frontend's own count");
    assert!(ok >= 1, "nothing served: {text}");
    // Streams past the server's concurrent-stream cap (64) are reset by HTTP/2 without an
    // answer; every answered one is a 200 or a 403, never a 5xx.
    assert_eq!(failed, 0, "{text}");
    assert!(ok + refused <= 100, "{text}");
    drop(front);
}

/// The HTTP/2 client preface and an empty SETTINGS frame: an HTTP/2 connection that then
/// sends nothing.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// 4096 idle HTTP/2 connections (the frontend's connection cap) must not lock a new client
/// out: it is served promptly.
#[test]
fn idle_http2_connections_do_not_lock_out_a_new_client() {
    const IDLE: usize = 4096;
    let limit = raise_nofile();
    if !require(limit >= 2 * IDLE as u64 + 256, "RLIMIT_NOFILE >= 8448") {
        return;
    }
    let stack = Stack::start();
    let (front, port) = stack.frontend(
        "idle",
        &format!(
            "[[client]]\nname = \"c\"\ntoken_sha256 = \"{}\"\nquota_bytes = 1000000\n\
             rate_per_sec = 1000\nburst = 1000\n",
            sha256_hex(TOKEN)
        ),
    );
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        s.write_all(H2_PREFACE).unwrap();
        idle.push(s);
    }
    // Let the frontend accept them all (they stay open: HTTP/2 has no request deadline).
    std::thread::sleep(Duration::from_secs(2));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", front.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    eprintln!("frontend holds {fds} file descriptors");

    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /api/v1/entropy?bytes=16 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let r = s.read_to_string(&mut resp);
    eprintln!(
        "new client after {:?}: {:?} {:?}",
        start.elapsed(),
        r.as_ref().map(|_| ()),
        resp.lines().next()
    );
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "a new client was not served while {IDLE} idle HTTP/2 connections were open ({r:?})"
    );
    drop(idle);
    drop(front);
}

/// An HTTP/2 connection that sends nothing after its preface is closed once
/// `idle_timeout_secs` passes (GOAWAY, then EOF), without a new client having to push it out.
#[test]
fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let stack = Stack::start();
    let (_front, port) = stack.frontend("idle-timeout", "idle_timeout_secs = 1\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(H2_PREFACE).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    eprintln!(
        "idle h2 connection: {r:?} after {} bytes from the server",
        got.len()
    );
    assert!(r.is_ok(), "not closed: {r:?}");
    // The server's SETTINGS, then a GOAWAY frame (type 7) before the close.
    assert!(
        got.windows(4).any(|w| w[3] == 7 && w[..3] == [0, 0, 8]),
        "no GOAWAY before the close: {got:02x?}"
    );
}

/// HTTP status codes of `n` pollen POSTs in one curl run (one keep-alive connection) from
/// `source` (a loopback address).
fn pollen_burst(port: u16, ca: &std::path::Path, source: &str, n: usize) -> Vec<u16> {
    let url = format!("https://127.0.0.1:{port}/");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--interface", source, "--cacert"])
        .arg(ca)
        .args(["-o", "/dev/null", "-w", "%{http_code}\\n", "-d"])
        .arg(format!("challenge={}", "ab".repeat(64)))
        .args(std::iter::repeat_n(url.as_str(), n))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The anonymous pollen endpoint with its default configuration: a burst from one address
/// gets 429s, while another address, and pollinate from a fresh one, are served.
#[test]
fn a_pollen_burst_from_one_address_is_limited_and_others_are_served() {
    if !require(have("pollinate") && have("curl"), "pollinate and curl") {
        return;
    }
    let stack = Stack::start();
    let certs = stack.certs("ec", "ecdsa-p256");
    // No [pollen] table: the defaults are what is tested.
    let (_front, port) = stack.frontend(
        "pollen",
        &format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            certs.join("server.crt"),
            certs.join("server.key")
        ),
    );
    let ca = certs.join("ca.crt");
    let codes = pollen_burst(port, &ca, "127.0.0.1", 60);
    let ok = codes.iter().filter(|&&c| c == 200).count();
    let limited = codes.iter().filter(|&&c| c == 429).count();
    eprintln!("burst of 60 from 127.0.0.1: {ok} x 200, {limited} x 429");
    assert_eq!(codes.len(), 60, "{codes:?}");
    assert!(ok >= 1, "nothing served: {codes:?}");
    assert!(limited >= 1, "no 429 in a burst of 60 from one address");
    assert_eq!(ok + limited, 60, "{codes:?}");
    // Another address is not affected.
    assert_eq!(pollen_burst(port, &ca, "127.0.0.2", 1), vec![200]);
    // pollinate (one exchange, as at boot) from a fresh address works.
    let out = pollinate(
        port,
        &format!("--cacert {} --interface 127.0.0.3", ca.display()),
    );
    assert!(
        out.status.success(),
        "pollinate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 64);
}
