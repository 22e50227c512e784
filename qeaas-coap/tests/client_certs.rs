//! Client certificates (`[client_certs]`, mutual authentication), black-box: credentials from
//! `qeaas-coapd gen-credentials`, Debian's libcoap clients (DTLS 1.2, ECDSA P-256 client
//! certificates) and our qeaas-fetch (DTLS 1.3, ML-DSA-44 and ECDSA client certificates)
//! against qeaas-coapd in front of a real qeaasd on a simulated Quantis. The daemon's per-uid
//! counter shows what left the pool for each attempt; a refused one draws nothing.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A stack whose frontend uses the credentials generated (`args`) in `creds/`, with
/// `[client_certs]` (their CA, `require`) and `extra` appended.
fn stack(args: &'static [&'static str], require: bool, extra: &'static str) -> Stack {
    Stack::start(move |dir| {
        gen_credentials(&dir.join("creds"), args);
        let snippet = std::fs::read_to_string(dir.join("creds/coapd.toml")).unwrap();
        // The snippet offers the table commented out.
        assert!(snippet.contains("\n# [client_certs]\n"), "{snippet}");
        format!(
            "{snippet}\n[client_certs]\nca = {:?}\nrequire = {require}\n{extra}",
            dir.join("creds/ca.pem")
        )
    })
}

fn path(p: PathBuf) -> String {
    p.display().to_string()
}

/// "handshake done" lines of the frontend's log naming `identity` and authenticated by `auth`.
fn handshakes_as(s: &Stack, auth: &str, identity: &str) -> usize {
    s.log()
        .lines()
        .filter(|l| {
            l.contains("handshake done")
                && l.contains(&format!("auth=\"{auth}\""))
                && l.contains(&format!("identity=\"{identity}\""))
        })
        .count()
}

#[test]
fn libcoap_clients_with_ecdsa_client_certificates_get_pool_bytes_and_others_are_refused() {
    if !clients_present() {
        return;
    }
    let s = stack(&["--algo", "ecdsa-p256", "--clients", "2"], true, "");
    let creds = s.dir.path().join("creds");
    let c = |f: &str| path(creds.join(f));
    // A CA of another deployment, and a client certificate it signed.
    let other = s.dir.path().join("other");
    gen_credentials(&other, &["--algo", "ecdsa-p256", "--clients", "1"]);
    let o = |f: &str| path(other.join(f));
    let ca = c("ca.pem");
    let mut seen = HashSet::new();
    for client in CLIENTS {
        for id in ["client-1", "client-2"] {
            let (cert, key) = (c(&format!("{id}.pem")), c(&format!("{id}-key.pem")));
            let before_log = handshakes_as(&s, "certificate", id);
            let before = s.served_to_frontend();
            let (b, out) = s.coap_client_run(
                client,
                &["-c", &cert, "-j", &key, "-C", &ca],
                "entropy?n=48",
            );
            let b = b.unwrap_or_else(|| panic!("{client} {id}: nothing: {out}\n{}", s.log()));
            assert_eq!(b.len(), 48, "{client} {id}");
            assert!(seen.insert(b), "{client} {id}: the same bytes twice");
            assert_eq!(s.served_to_frontend() - before, 48, "{client} {id}");
            // The session is named by the certificate's CN.
            assert_eq!(
                handshakes_as(&s, "certificate", id),
                before_log + 1,
                "{client} {id}:\n{}",
                s.log()
            );
        }
        let before = s.served_to_frontend();
        // A client certificate from a foreign CA: refused by the server.
        let (b, out) = s.coap_client_run(
            client,
            &[
                "-c",
                &o("client-1.pem"),
                "-j",
                &o("client-1-key.pem"),
                "-C",
                &ca,
            ],
            "entropy",
        );
        assert_eq!(
            b, None,
            "{client}: a foreign CA's client got through: {out}"
        );
        // No client certificate at all, with require = true: refused.
        let (b, out) = s.coap_client_run(client, &["-R", &ca], "entropy");
        assert_eq!(b, None, "{client}: a client without a certificate: {out}");
        assert_eq!(s.served_to_frontend(), before, "{client}: pool bytes drawn");
        // PSK clients are authenticated by their key and still pass.
        let b = s.coap_client(client, ID, KEY, "entropy").expect("PSK");
        assert_eq!(b.len(), 32);
    }
    let log = s.log();
    assert!(log.contains("version=\"DTLSv1.2\""), "{log}");
    assert!(log.contains("cipher=\"ECDHE-ECDSA-"), "{log}");
    // The server refused them, for the right reasons: the foreign chain has no signer it
    // trusts, and the other client sent no certificate.
    let failed = |why: &str| {
        log.lines()
            .filter(|l| l.contains("handshake failed") && l.contains(why))
            .count()
    };
    assert_eq!(failed("ASN no signer"), CLIENTS.len(), "{log}");
    assert_eq!(
        failed("did not return a certificate"),
        CLIENTS.len(),
        "{log}"
    );
    // The foreign client never completed a certificate handshake under any name.
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("handshake done") && l.contains("auth=\"certificate\""))
            .count(),
        2 * CLIENTS.len(),
        "{log}"
    );
}

#[test]
fn generated_client_certificates_verify_as_client_certificates_with_openssl() {
    if !require(have("openssl"), "openssl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    gen_credentials(
        &d.path().join("c"),
        &["--algo", "ecdsa-p256", "--clients", "1"],
    );
    let c = d.path().join("c");
    let verify = |purpose: &str, ca: &Path| {
        Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
            .arg(ca)
            .arg(c.join("client-1.pem"))
            .output()
            .unwrap()
    };
    let ok = verify("sslclient", &c.join("ca.pem"));
    assert!(ok.status.success(), "{}", stderr(&ok));
    // clientAuth only: not usable as a server certificate.
    assert!(!verify("sslserver", &c.join("ca.pem")).status.success());
    // The subject is the client identity; the DER file is the same certificate.
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(c.join("client-1.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("CN = client-1"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-outform", "PEM", "-in"])
        .arg(c.join("client-1.der"))
        .output()
        .unwrap();
    assert_eq!(o.stdout, std::fs::read(c.join("client-1.pem")).unwrap());
    for f in ["client-1-key.pem", "client-1.psk"] {
        let m = std::fs::metadata(c.join(f)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            0o600,
            "{f}"
        );
    }
    // --client-certs none: PSKs only, and no [client_certs] in the snippet.
    gen_credentials(
        &d.path().join("n"),
        &["--clients", "1", "--client-certs", "none"],
    );
    assert!(!d.path().join("n/client-1.pem").exists());
    let snippet = std::fs::read_to_string(d.path().join("n/coapd.toml")).unwrap();
    assert!(!snippet.contains("client_certs"), "{snippet}");
}

const QUOTA: &str =
    "\n[quota.identity.\"client-1\"]\nwindow_secs = 3600\nrequests_per_window = 2\n";

#[test]
fn ml_dsa_44_client_certificate_over_dtls13_names_the_client_for_its_quota() {
    let s = stack(&["--algo", "ml-dsa-44", "--clients", "2"], true, QUOTA);
    let creds = s.dir.path().join("creds");
    let c = |f: &str| path(creds.join(f));
    let ca = c("ca.pem");
    let with_cert = |id: &str, extra: &[&str]| {
        let (cert, key) = (c(&format!("{id}.pem")), c(&format!("{id}-key.der")));
        fetch(
            &[
                &[
                    &*s.url("entropy?n=40"),
                    "--ca",
                    &ca,
                    "--cert",
                    &cert,
                    "--key",
                    &key,
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let before = s.served_to_frontend();
    for group in ["ml-kem-512", "x25519"] {
        let o = with_cert("client-1", &["--group", group]);
        assert!(o.status.success(), "{group}: {}\n{}", stderr(&o), s.log());
        assert_eq!(o.stdout.len(), 40);
    }
    assert_eq!(s.served_to_frontend() - before, 80);
    assert_eq!(
        handshakes_as(&s, "certificate", "client-1"),
        2,
        "{}",
        s.log()
    );
    assert!(s.log().contains("version=\"DTLSv1.3\""));
    // client-1's quota (2 requests) is spent: 4.29 with Max-Age, exit 75, nothing drawn.
    let before = s.served_to_frontend();
    let o = with_cert("client-1", &[]);
    assert_eq!(o.status.code(), Some(75), "{}\n{}", stderr(&o), s.log());
    assert!(stderr(&o).contains("4.29"), "{}", stderr(&o));
    assert!(stderr(&o).contains("Max-Age"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert_eq!(s.served_to_frontend(), before);
    // Another certificate, another identity: served.
    let o = with_cert("client-2", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 40);
    assert_eq!(s.served_to_frontend() - before, 40);

    // require = true: no client certificate, or one from a foreign CA, fails the DTLS 1.3
    // handshake (the server verifies; the client trusts the right CA for the server).
    let other = s.dir.path().join("other");
    gen_credentials(&other, &["--algo", "ml-dsa-44", "--clients", "1"]);
    let before = s.served_to_frontend();
    let o = fetch(&[&*s.url("entropy"), "--ca", &ca, "--handshake-timeout", "5"]);
    assert!(!o.status.success(), "no client certificate was accepted");
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("handshake"), "{}", stderr(&o));
    let o = fetch(&[
        &*s.url("entropy"),
        "--ca",
        &ca,
        "--handshake-timeout",
        "5",
        "--cert",
        &path(other.join("client-1.pem")),
        "--key",
        &path(other.join("client-1-key.der")),
    ]);
    assert!(!o.status.success(), "a foreign CA's client was accepted");
    assert!(o.stdout.is_empty());
    assert_eq!(s.served_to_frontend(), before);
    // PSK over DTLS 1.3 still passes under require = true.
    let o = fetch(&[
        &*s.url("entropy"),
        "--psk-identity",
        "client-2",
        "--psk-key-file",
        &c("client-2.psk"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 32);
}

#[test]
fn optional_client_certificates_name_who_has_one_and_count_others_by_address() {
    let s = stack(&["--algo", "ecdsa-p256", "--clients", "1"], false, "");
    let creds = s.dir.path().join("creds");
    let c = |f: &str| path(creds.join(f));
    for dtls in ["1.3", "1.2"] {
        let o = fetch(&[&*s.url("entropy"), "--ca", &c("ca.pem"), "--dtls", dtls]);
        assert!(
            o.status.success(),
            "DTLS {dtls}: {}\n{}",
            stderr(&o),
            s.log()
        );
        let o = fetch(&[
            &*s.url("entropy"),
            "--ca",
            &c("ca.pem"),
            "--dtls",
            dtls,
            "--cert",
            &c("client-1.pem"),
            "--key",
            &c("client-1-key.pem"),
        ]);
        assert!(
            o.status.success(),
            "DTLS {dtls}: {}\n{}",
            stderr(&o),
            s.log()
        );
        assert_eq!(o.stdout.len(), 32);
    }
    assert_eq!(
        handshakes_as(&s, "none", "addr:127.0.0.1"),
        2,
        "{}",
        s.log()
    );
    assert_eq!(
        handshakes_as(&s, "certificate", "client-1"),
        2,
        "{}",
        s.log()
    );
    // A certificate that does not verify fails even when none is required.
    let other = s.dir.path().join("other");
    gen_credentials(&other, &["--algo", "ecdsa-p256", "--clients", "1"]);
    let o = fetch(&[
        &*s.url("entropy"),
        "--ca",
        &c("ca.pem"),
        "--handshake-timeout",
        "5",
        "--cert",
        &path(other.join("client-1.pem")),
        "--key",
        &path(other.join("client-1-key.pem")),
    ]);
    assert!(!o.status.success(), "a foreign CA's client was accepted");
}
