//! Debian's nginx (stream module) balancing CoAP over DTLS across two qeaas-coapd instances with
//! the sticky-by-address upstream of `scripts/deploy/nginx-coap-udp.conf`; one instance is
//! killed mid-test and clients keep getting entropy from the other.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Client source addresses: nginx hashes on them, so they spread over both instances.
const CLIENTS: u8 = 12;

fn handshakes(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("handshake done")
        .count()
}

/// One `coap-client-gnutls` GET of 32 bytes through nginx from source address 127.0.0.`k`.
fn fetch(s: &Stack, nginx_port: u16, k: u8) -> Option<Vec<u8>> {
    let out = s.dir.path().join(format!("nginx-out-{k}"));
    let _ = std::fs::remove_file(&out);
    let _ = Command::new("timeout")
        .args(["15", "coap-client-gnutls", "-m", "get", "-B", "3"])
        .args(["-a", &format!("127.0.0.{k}"), "-u", ID, "-k", KEY, "-o"])
        .arg(&out)
        .arg(format!("coaps://127.0.0.1:{nginx_port}/entropy"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run coap-client-gnutls");
    std::fs::read(&out).ok().filter(|b| b.len() == 32)
}

#[test]
fn nginx_balances_dtls_and_survives_a_dead_frontend() {
    if !require(is_root(), "root (the frontends drop to nobody)")
        || !require(have("nginx"), "nginx (Debian nginx-light)")
        || !require(have("coap-client-gnutls"), "coap-client-gnutls")
    {
        return;
    }
    let module = "/usr/lib/nginx/modules/ngx_stream_module.so";
    if !require(
        std::path::Path::new(module).exists(),
        "nginx's stream module (libnginx-mod-stream)",
    ) {
        return;
    }
    let s = Stack::start(|_| String::new());
    let dir = s.dir.path();
    // A second frontend: the same configuration on another port.
    let port_b = free_udp_port();
    let cfg_b = std::fs::read_to_string(dir.join("coapd.toml"))
        .unwrap()
        .replace(
            &format!("127.0.0.1:{}", s.port),
            &format!("127.0.0.1:{port_b}"),
        );
    std::fs::write(dir.join("coapd-b.toml"), cfg_b).unwrap();
    let log_a = dir.join("coapd.log");
    let log_b = dir.join("coapd-b.log");
    let coapd_b = Proc(
        Command::new(COAPD)
            .arg("-c")
            .arg(dir.join("coapd-b.toml"))
            .env("QEAAS_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_b).unwrap())
            .spawn()
            .expect("start the second qeaas-coapd"),
    );
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log_b)
            .unwrap_or_default()
            .contains("serving CoAP over DTLS")
    }));

    // The upstream block of scripts/deploy/nginx-coap-udp.conf, on loopback ports.
    let nginx_port = free_udp_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "load_module {module};\nworker_processes 1;\npid {pid};\nerror_log {err} info;\n\
             events {{ worker_connections 256; }}\n\
             stream {{\n  upstream qeaas_coap {{\n    hash $remote_addr consistent;\n\
                 server 127.0.0.1:{a} max_fails=1 fail_timeout=30s;\n\
                 server 127.0.0.1:{b} max_fails=1 fail_timeout=30s;\n  }}\n\
               server {{\n    listen 127.0.0.1:{nginx_port} udp;\n    proxy_pass qeaas_coap;\n\
                 proxy_timeout 5s;\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            err = dir.join("nginx.err").display(),
            a = s.port,
            b = port_b,
        ),
    )
    .unwrap();
    let _nginx = start_nginx(dir, &conf);
    assert!(
        wait_until(Duration::from_secs(10), || dir.join("nginx.pid").exists()),
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("nginx.err")).unwrap_or_default()
    );

    // Every client gets 32 fresh pool bytes; the hash spreads them over both frontends.
    let before = s.served_to_frontend();
    let mut seen = std::collections::HashSet::new();
    for k in 1..=CLIENTS {
        let b = fetch(&s, nginx_port, k).unwrap_or_else(|| {
            panic!(
                "client 127.0.0.{k} got nothing\nnginx: {}\nA: {}\nB: {}",
                std::fs::read_to_string(dir.join("nginx.err")).unwrap_or_default(),
                std::fs::read_to_string(&log_a).unwrap_or_default(),
                std::fs::read_to_string(&log_b).unwrap_or_default()
            )
        });
        assert!(seen.insert(b), "two clients got the same bytes");
    }
    let (a, b) = (handshakes(&log_a), handshakes(&log_b));
    println!("handshakes through nginx: frontend A {a}, frontend B {b}");
    assert_eq!(a + b, usize::from(CLIENTS));
    assert!(
        a > 0 && b > 0,
        "sticky hash used one frontend only: {a}/{b}"
    );
    assert_eq!(
        s.served_to_frontend() - before,
        32 * u64::from(CLIENTS),
        "the daemon's counter must match the bytes the clients got"
    );

    // Kill frontend B mid-test. Its clients' next exchange fails over (nginx marks B down on the
    // ICMP port-unreachable of the first datagram); a client retries as a device would.
    drop(coapd_b);
    let mut retries = 0;
    for k in 1..=CLIENTS {
        let mut got = None;
        for _ in 0..3 {
            got = fetch(&s, nginx_port, k);
            if got.is_some() {
                break;
            }
            retries += 1;
        }
        let b = got.unwrap_or_else(|| panic!("client 127.0.0.{k} got nothing after B died"));
        assert!(seen.insert(b), "bytes served twice");
    }
    println!("after killing B: every client served, {retries} retries");
    assert_eq!(handshakes(&log_a), a + usize::from(CLIENTS));
}
