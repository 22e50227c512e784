//! Scaling out over CoAPS: an edge host's qeaasd takes entropy from an upstream qeaas through
//! `qeaas-fetch --follow` (one DTLS 1.3 session, ML-KEM-512, PSK) writing into the named pipe of
//! a `kind = "upstream"` source; credited to the edge pool by its explicit policy, never to the
//! kernel, and the feeder outlives a restart of the edge daemon.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn an_edge_qeaasd_is_fed_over_coaps_by_qeaas_fetch_follow_and_survives_its_restart() {
    let up = Stack::start_with("max_bytes = 1024\n", |_| String::new());
    let edge = tempfile::tempdir().unwrap();
    let fifo = Edge::fifo(edge.path());
    let key = edge.path().join("psk");
    std::fs::write(&key, KEY).unwrap();
    let feeder_log = edge.path().join("fetch.log");
    let mut feeder = Proc(
        Command::new(env!("CARGO_BIN_EXE_qeaas-fetch"))
            .args(["--follow", "--psk-identity", ID, "--psk-key-file"])
            .arg(&key)
            .arg("-o")
            .arg(&fifo)
            .arg(up.url("entropy?n=1024"))
            .env("QEAAS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&feeder_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let feeder_says = || std::fs::read_to_string(&feeder_log).unwrap_or_default();

    for round in 0..2 {
        let before = up.served_to_frontend();
        let e = Edge::start(&bin("qeaasd"), edge.path(), &fifo, true);
        assert!(
            e.healthy(),
            "round {round}: edge source never healthy; feeder:\n{}",
            feeder_says()
        );
        let (status, body) = socket_get(&e.socket, 32);
        assert_eq!(
            (status, body.len()),
            (0, 32),
            "round {round}: credit = true lets upstream bytes back a request"
        );
        let text = scrape(&e.metrics).unwrap();
        assert_eq!(
            metric(&text, "qeaas_kernel_credit_total").unwrap_or(0.0),
            0.0,
            "network entropy is never credited to the kernel:\n{text}"
        );
        // The edge's bytes came out of the upstream pool through its CoAP face.
        assert!(
            wait_until(Duration::from_secs(10), || up.served_to_frontend()
                >= before + 1024),
            "round {round}: the upstream served nothing to its CoAP face"
        );
        // The edge daemon goes away (the pipe loses its reader); the feeder must wait for the
        // next one rather than exit.
        drop(e);
    }
    assert!(
        feeder.0.try_wait().unwrap().is_none(),
        "the feeder exited:\n{}",
        feeder_says()
    );
    assert!(
        feeder_says().contains("reader went away"),
        "{}",
        feeder_says()
    );
}
