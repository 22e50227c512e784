//! Scaling out: an edge qeaasd takes entropy from an upstream qeaas over HTTPS as an `upstream`
//! source (curl -> named pipe -> qeaasd), credited to the edge pool only because the edge's
//! configuration says `credit = true`, never to the kernel.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const TOKEN: &str = "edge-host-token";

fn get(socket: &std::path::Path, n: u16) -> (u8, Vec<u8>) {
    let mut s = UnixStream::connect(socket).unwrap();
    let l = n.to_be_bytes();
    s.write_all(&[b'Q', 1, 1, 0, l[0], l[1], 0x13, 0x88])
        .unwrap();
    let mut h = [0u8; 4];
    s.read_exact(&mut h).unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([h[2], h[3]]))];
    s.read_exact(&mut body).unwrap();
    (h[0], body)
}

#[test]
fn an_edge_qeaasd_is_fed_by_an_upstream_over_https_only_with_explicit_credit() {
    if !require(have("curl"), "curl") || !require(have("mkfifo"), "mkfifo") {
        return;
    }
    let upstream = Stack::start();
    let certs = upstream.certs("up", "ecdsa-p256");
    let token_hash = hex::encode(openssl::sha::sha256(TOKEN.as_bytes()));
    let (front, port) = upstream.frontend(
        "up",
        &format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n[[client]]\nname = \"edge\"\ntoken_sha256 = \"{token_hash}\"\n\
             quota_bytes = 100000000\nrate_per_sec = 1000\nburst = 1000\n",
            certs.join("server.crt"),
            certs.join("server.key"),
        ),
    );
    let front_uid = proc_status(front.pid(), "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let served_to_front = || {
        upstream
            .metric(&format!(
                "qeaas_served_bytes_total{{client=\"uid:{front_uid}\",face=\"socket\"}}"
            ))
            .unwrap_or(0.0)
    };

    for credit in [false, true] {
        let edge = tempfile::tempdir().unwrap();
        let fifo = edge.path().join("upstream.fifo");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let before = served_to_front();
        // The fetcher of the README: raw bytes from the JSON API, appended to the pipe.
        let fetch = format!(
            "while :; do curl -sf --cacert {ca:?} -H 'Authorization: Bearer {TOKEN}' \
             -H 'Accept: application/octet-stream' 'https://127.0.0.1:{port}/api/v1/entropy?bytes=4096' \
             || sleep 1; done > {fifo:?}",
            ca = certs.join("ca.crt"),
        );
        let _fetcher = Proc(
            Command::new("sh")
                .args(["-c", &fetch])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let socket = edge.path().join("edge.sock");
        let mport = free_port();
        let credit_line = if credit { "credit = true\n" } else { "" };
        let cfg = edge.path().join("edge.toml");
        std::fs::write(
            &cfg,
            format!(
                "[kernel]\ninterval_secs = 1\n[socket]\npath = {socket:?}\nmode = 0o666\n\
                 [metrics]\nlisten = \"127.0.0.1:{mport}\"\n\
                 [[source]]\nname = \"up\"\nkind = \"upstream\"\npath = {fifo:?}\n{credit_line}"
            ),
        )
        .unwrap();
        let log = edge.path().join("edge.log");
        let _edge = Proc(
            Command::new(bin("qeaasd"))
                .args(["-c", cfg.to_str().unwrap(), "run"])
                .env("QEAAS_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let metrics = format!("127.0.0.1:{mport}");
        let healthy = "qeaas_source_state{source=\"up\",state=\"healthy\"}";
        assert!(
            wait_until(Duration::from_secs(30), || scrape(&metrics)
                .and_then(|t| metric(&t, healthy))
                == Some(1.0)),
            "edge source never healthy:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let (status, body) = get(&socket, 32);
        let text = scrape(&metrics).unwrap();
        // The kernel is never credited from network entropy, whatever the policy.
        assert_eq!(
            metric(&text, "qeaas_kernel_credit_total").unwrap_or(0.0),
            0.0,
            "{text}"
        );
        if credit {
            assert_eq!(
                (status, body.len()),
                (0, 32),
                "credit = true backs requests"
            );
        } else {
            assert_eq!(
                status, 1,
                "without credit upstream bytes never back a request"
            );
        }
        // The bytes came over HTTPS from the upstream's pool: its counter for the frontend rose.
        assert!(
            wait_until(Duration::from_secs(10), || served_to_front()
                >= before + 4096.0),
            "the upstream served nothing to its HTTPS face"
        );
    }
}
