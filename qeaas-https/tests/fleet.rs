//! Scaling out: an edge qeaasd takes entropy from an upstream qeaas over HTTPS as an `upstream`
//! source (curl -> named pipe -> qeaasd), credited to the edge pool only because the edge's
//! configuration says `credit = true`, never to the kernel.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const TOKEN: &str = "edge-host-token";

#[test]
fn an_edge_qeaasd_is_fed_by_an_upstream_over_https_only_with_explicit_credit() {
    if !require(have("curl"), "curl") {
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
        let fifo = Edge::fifo(edge.path());
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
        let e = Edge::start(&bin("qeaasd"), edge.path(), &fifo, credit);
        assert!(e.healthy(), "edge source never healthy");
        let (status, body) = socket_get(&e.socket, 32);
        let metrics = e.metrics.clone();
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
