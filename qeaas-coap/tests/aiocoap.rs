//! aiocoap-client (PyPI `aiocoap[tinydtls]`, DTLS 1.2 PSK through tinydtls), installed by
//! scripts/setup-debian.sh in its own venv, against qeaas-coapd in front of a real qeaasd.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const AIOCOAP: &str = "/opt/qeaas-aiocoap/bin/aiocoap-client";
/// tinydtls takes PSKs of at most 16 bytes (DTLS_PSK_MAX_KEY_LEN): with a longer one it sends an
/// internal_error alert after the server's flight. So aiocoap gets an identity of its own.
const AIO_ID: &str = "aiocoap-1";
const AIO_KEY: &str = "0123456789abcdef";

/// Runs aiocoap-client (killed after `secs`) with a `--credentials` file for GET /entropy; its
/// stdout (the payload) and whether it exited 0.
fn aiocoap_get(dir: &Path, id: &str, key: &str, port: u16, secs: u32) -> (Vec<u8>, bool) {
    aiocoap_get_path(dir, id, key, port, secs, "entropy")
}

/// As [`aiocoap_get`] for `path` (with its query).
fn aiocoap_get_path(
    dir: &Path,
    id: &str,
    key: &str,
    port: u16,
    secs: u32,
    path: &str,
) -> (Vec<u8>, bool) {
    let cred = dir.join(format!("cred-{id}-{}.json", key.len()));
    // Credentials are matched by URI pattern, port included.
    std::fs::write(
        &cred,
        format!(
            r#"{{"coaps://127.0.0.1:{port}/*": {{"dtls": {{"psk": {{"ascii": "{key}"}}, "client-identity": {{"ascii": "{id}"}}}}}}}}"#
        ),
    )
    .unwrap();
    let out = Command::new("timeout")
        .args([&secs.to_string(), AIOCOAP, "--credentials"])
        .arg(&cred)
        .arg(format!("coaps://127.0.0.1:{port}/{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("run aiocoap-client");
    if !out.status.success() {
        eprintln!("aiocoap-client: {}", String::from_utf8_lossy(&out.stderr));
    }
    (out.stdout, out.status.success())
}

#[test]
fn aiocoap_client_gets_32_fresh_pool_bytes_over_dtls12_psk() {
    if !require(
        Path::new(AIOCOAP).exists(),
        "aiocoap-client in /opt/qeaas-aiocoap (scripts/setup-debian.sh)",
    ) {
        return;
    }
    let s = Stack::start(|_| format!("[[psk]]\nidentity = \"{AIO_ID}\"\nkey = \"{AIO_KEY}\"\n"));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let before = s.served_to_frontend();
        let (b, ok) = aiocoap_get(s.dir.path(), AIO_ID, AIO_KEY, s.port, 30);
        assert!(ok, "aiocoap-client failed; coapd log:\n{}", s.log());
        assert_eq!(b.len(), 32, "payload {b:?}");
        assert!(!seen.contains(&b), "the same 32 bytes twice");
        // The daemon's per-client counter for the frontend moved by exactly what was served.
        assert_eq!(s.served_to_frontend() - before, 32);
        seen.push(b);
    }
    // A wrong key gets no payload and draws nothing from the pool.
    let before = s.served_to_frontend();
    let (b, _) = aiocoap_get(s.dir.path(), AIO_ID, "fedcba9876543210", s.port, 8);
    assert!(b.is_empty(), "{b:?}");
    assert_eq!(s.served_to_frontend(), before);
    assert!(
        s.log().contains("version=\"DTLSv1.2\"") && s.log().contains("identity=\"aiocoap-1\""),
        "{}",
        s.log()
    );
}

#[test]
fn aiocoap_client_fetches_4096_bytes_block_wise_from_one_daemon_fetch() {
    if !require(
        Path::new(AIOCOAP).exists(),
        "aiocoap-client in /opt/qeaas-aiocoap (scripts/setup-debian.sh)",
    ) {
        return;
    }
    let s = Stack::start_with("max_bytes = 65536\n", |_| {
        format!("[[psk]]\nidentity = \"{AIO_ID}\"\nkey = \"{AIO_KEY}\"\n")
    });
    let mut seen = Vec::new();
    for _ in 0..2 {
        let before = s.served_to_frontend();
        let (b, ok) = aiocoap_get_path(s.dir.path(), AIO_ID, AIO_KEY, s.port, 30, "entropy?n=4096");
        assert!(ok, "aiocoap-client failed; coapd log:\n{}", s.log());
        assert_eq!(b.len(), 4096);
        assert!(!seen.contains(&b), "the same body twice");
        // aiocoap followed Block2 (4 blocks of 1024) and the body left the pool once.
        assert_eq!(s.served_to_frontend() - before, 4096);
        seen.push(b);
    }
}
