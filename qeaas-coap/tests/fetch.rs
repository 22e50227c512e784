//! `qeaas-fetch` and `qeaas-coapd gen-credentials`, black-box: real processes (qeaas-sim,
//! qeaasd, qeaas-coapd) and the real command lines.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn gen(dir: &Path, algo: &str, clients: &str) {
    gen_with(dir, algo, clients, &[]);
}

fn gen_with(dir: &Path, algo: &str, clients: &str, extra: &[&str]) {
    gen_credentials(
        dir,
        &[&["--clients", clients, "--algo", algo], extra].concat(),
    );
}

fn mode(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777
}

#[test]
fn psk_over_dtls13_and_12_hex_and_file_output_and_errors() {
    let s = Stack::start(|_| String::new());
    let key = s.dir.path().join("device-1.psk");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let key = key.to_str().unwrap();
    let psk = ["--psk-identity", ID, "--psk-key-file", key];

    // DTLS 1.3 (ML-KEM-512 by default), hex on stdout.
    let before = s.served_to_frontend();
    let o = fetch(&[&[&*s.url("entropy?n=100"), "--hex"][..], &psk].concat());
    assert!(o.status.success(), "{}\n{}", stderr(&o), s.log());
    let hex = String::from_utf8(o.stdout).unwrap();
    assert_eq!(hex.trim_end().len(), 200, "{hex}");
    assert!(hex.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(s.served_to_frontend() - before, 100);
    assert!(s.log().contains("group=\"ML_KEM_512\""), "{}", s.log());

    // DTLS 1.2 (PSK-AES128-CCM-8 or ECDHE-PSK), raw into a file.
    let out = s.dir.path().join("bytes");
    let o = fetch(
        &[
            &[
                &*s.url("entropy?n=64"),
                "--dtls",
                "1.2",
                "-o",
                out.to_str().unwrap(),
            ][..],
            &psk,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let b = std::fs::read(&out).unwrap();
    assert_eq!(b.len(), 64);
    assert_ne!(
        hex::decode_prefix(&hex),
        b[..],
        "two fetches, the same bytes"
    );
    assert!(s.log().contains("version=\"DTLSv1.2\""));

    // 4.xx: a clear message, non-zero, nothing drawn.
    let before = s.served_to_frontend();
    let o = fetch(&[&[&*s.url("entropy?n=100000")][..], &psk].concat());
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("4.00") && stderr(&o).contains("n must be"),
        "{}",
        stderr(&o)
    );
    let o = fetch(&[&[&*s.url("nothing/here")][..], &psk].concat());
    assert!(stderr(&o).contains("4.04"), "{}", stderr(&o));
    assert_eq!(s.served_to_frontend(), before);

    // A wrong key fails the handshake, in both versions.
    let bad = s.dir.path().join("bad.psk");
    std::fs::write(&bad, "not the key").unwrap();
    for v in ["1.3", "1.2"] {
        let o = fetch(&[
            &*s.url("entropy"),
            "--dtls",
            v,
            "--handshake-timeout",
            "3",
            "--psk-identity",
            ID,
            "--psk-key-file",
            bad.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "DTLS {v}: a wrong key got through");
        assert!(o.stdout.is_empty());
        assert!(stderr(&o).contains("handshake"), "{}", stderr(&o));
    }
    assert_eq!(s.served_to_frontend(), before);

    // No credentials, a bad URL, ML-KEM with DTLS 1.2: usage errors before any packet.
    for args in [
        vec![s.url("entropy")],
        vec!["http://127.0.0.1/entropy".into(), "--insecure".into()],
        vec![
            s.url("entropy"),
            "--insecure".into(),
            "--dtls".into(),
            "1.2".into(),
            "--group".into(),
            "ml-kem-512".into(),
        ],
    ] {
        let o = fetch(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
}

mod hex {
    /// The bytes of a hex line.
    pub fn decode_prefix(s: &str) -> Vec<u8> {
        let s = s.trim_end();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }
}

/// gen-credentials for `algo`, the stack configured with its snippet, qeaas-fetch trusting its
/// CA; a CA from another run is refused.
fn generated_credentials_work(algo: &str) {
    let s = Stack::start(|dir| {
        gen(&dir.join("creds"), algo, "2");
        std::fs::read_to_string(dir.join("creds/coapd.toml")).unwrap()
    });
    let creds = s.dir.path().join("creds");
    for f in ["ca-key", "server-key"] {
        let p = std::fs::read_dir(&creds)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_stem().is_some_and(|n| n == f))
            .unwrap();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    for f in ["client-1.psk", "client-2.psk", "coapd.toml"] {
        assert_eq!(mode(&creds.join(f)), 0o600, "{f}");
    }
    let ca = creds.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let before = s.served_to_frontend();
    for group in ["ml-kem-512", "x25519", "p-256"] {
        let o = fetch(&[&*s.url("entropy?n=48"), "--ca", ca, "--group", group]);
        assert!(
            o.status.success(),
            "{algo} {group}: {}\n{}",
            stderr(&o),
            s.log()
        );
        assert_eq!(o.stdout.len(), 48);
    }
    assert_eq!(s.served_to_frontend() - before, 3 * 48);
    assert!(s.log().contains("version=\"DTLSv1.3\""));
    // The generated PSKs work too.
    let k2 = creds.join("client-2.psk");
    let o = fetch(&[
        &*s.url("entropy"),
        "--psk-identity",
        "client-2",
        "--psk-key-file",
        k2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 32);
    // Another CA (same algorithm, another run) does not vouch for this server.
    let other = s.dir.path().join("other");
    gen(&other, algo, "0");
    let before = s.served_to_frontend();
    let o = fetch(&[
        &*s.url("entropy"),
        "--ca",
        other.join("ca.pem").to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{algo}: a foreign CA was accepted");
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("handshake"), "{}", stderr(&o));
    assert_eq!(s.served_to_frontend(), before);
    // --insecure skips verification, on purpose only.
    let o = fetch(&[&*s.url("entropy"), "--insecure"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn ml_dsa_44_credentials_over_dtls13_ml_kem_512() {
    generated_credentials_work("ml-dsa-44");
}

#[test]
fn ecdsa_p256_credentials_verified_by_qeaas_fetch_and_openssl() {
    if !require(have("openssl"), "openssl") {
        return;
    }
    generated_credentials_work("ecdsa-p256");
    let d = tempfile::tempdir().unwrap();
    gen(&d.path().join("c"), "ecdsa-p256", "1");
    let o = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(d.path().join("c/ca.pem"))
        .arg(d.path().join("c/server.pem"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout) + stderr(&o).as_str()
    );
    // And openssl refuses it under a foreign CA.
    gen(&d.path().join("o"), "ecdsa-p256", "0");
    let o = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(d.path().join("o/ca.pem"))
        .arg(d.path().join("c/server.pem"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn a_certificate_for_another_host_is_refused_under_the_right_ca() {
    let s = Stack::start(|dir| {
        gen_with(
            &dir.join("creds"),
            "ml-dsa-44",
            "0",
            &["--san", "10.9.9.9", "--san", "elsewhere.invalid"],
        );
        std::fs::read_to_string(dir.join("creds/coapd.toml")).unwrap()
    });
    let ca = s.dir.path().join("creds/ca.pem");
    let o = fetch(&[&*s.url("entropy"), "--ca", ca.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "a certificate for 10.9.9.9 was accepted for 127.0.0.1"
    );
    assert!(stderr(&o).contains("handshake"), "{}", stderr(&o));
    // The server itself is fine: unverified, the same certificate gets through.
    let o = fetch(&[&*s.url("entropy"), "--insecure"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 32);
}

/// A UDP relay to `port` that drops the first DTLS 1.2 application-data record (content type
/// 23) in each direction: the CoAP request, then the response to its retransmission.
fn lossy_relay(port: u16) -> u16 {
    use std::net::UdpSocket;
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.connect(("127.0.0.1", port)).unwrap();
    let front_port = front.local_addr().unwrap().port();
    let (f2, b2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
    let client = std::sync::Arc::new(std::sync::Mutex::new(None));
    let c2 = client.clone();
    std::thread::spawn(move || {
        let mut dropped = false;
        let mut b = [0u8; 65536];
        while let Ok((n, from)) = front.recv_from(&mut b) {
            *c2.lock().unwrap() = Some(from);
            if !dropped && b[0] == 23 {
                dropped = true;
                continue;
            }
            let _ = back.send(&b[..n]);
        }
    });
    std::thread::spawn(move || {
        let mut dropped = false;
        let mut b = [0u8; 65536];
        while let Ok(n) = b2.recv(&mut b) {
            if !dropped && b[0] == 23 {
                dropped = true;
                continue;
            }
            if let Some(to) = *client.lock().unwrap() {
                let _ = f2.send_to(&b[..n], to);
            }
        }
    });
    front_port
}

#[test]
fn a_lost_request_and_a_lost_response_are_retransmitted_and_served_once() {
    let s = Stack::start(|_| String::new());
    let key = s.dir.path().join("device-1.psk");
    std::fs::write(&key, KEY).unwrap();
    let relay = lossy_relay(s.port);
    let before = s.served_to_frontend();
    let o = fetch(&[
        &format!("coaps://127.0.0.1:{relay}/entropy?n=40"),
        "--dtls",
        "1.2",
        "--psk-identity",
        ID,
        "--psk-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), s.log());
    assert_eq!(o.stdout.len(), 40);
    // The second transmission was served; the third got the same answer from the server's
    // duplicate cache, not new pool bytes.
    assert_eq!(s.served_to_frontend() - before, 40);
}

#[test]
fn a_psk_client_refuses_a_server_that_answers_with_a_certificate_instead() {
    // This server knows no PSK identity but has a certificate: a client that asked for PSK
    // authentication must not fall back to an unverified certificate handshake.
    let s = Stack::start(|dir| {
        gen(&dir.join("creds"), "ml-dsa-44", "0");
        std::fs::read_to_string(dir.join("creds/coapd.toml")).unwrap()
    });
    let key = s.dir.path().join("stranger.psk");
    std::fs::write(&key, "some key").unwrap();
    for v in ["1.3", "1.2"] {
        let o = fetch(&[
            &*s.url("entropy"),
            "--dtls",
            v,
            "--handshake-timeout",
            "3",
            "--psk-identity",
            "stranger",
            "--psk-key-file",
            key.to_str().unwrap(),
        ]);
        assert!(
            !o.status.success(),
            "DTLS {v}: accepted a server that skipped the PSK"
        );
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn a_stopped_daemon_is_a_5_03_and_exit_69() {
    let mut s = Stack::start(|_| String::new());
    let key = s.dir.path().join("device-1.psk");
    std::fs::write(&key, KEY).unwrap();
    drop(std::mem::replace(
        &mut s.daemon,
        Proc(Command::new("true").spawn().unwrap()),
    ));
    let o = fetch(&[
        &*s.url("entropy"),
        "--psk-identity",
        ID,
        "--psk-key-file",
        key.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    assert!(stderr(&o).contains("5.03"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}
