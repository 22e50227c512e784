//! Debian's libcoap clients (coap-client-gnutls, coap-client-openssl: DTLS 1.2 PSK) and a Rust
//! DTLS 1.3 client on our wolfSSL build, against qeaas-coapd in front of a real qeaasd on a
//! simulated Quantis.

mod common;

use std::collections::HashSet;
use std::net::UdpSocket;

use coap_lite::{MessageClass, ResponseType};
use common::dtls::Dtls13;
use common::*;
use qeaas_wolfssl_sys::{Context, Group, Role, Version};

#[test]
fn libcoap_clients_get_fresh_pool_bytes_over_dtls12_psk() {
    if !clients_present() {
        return;
    }
    let s = Stack::start(|_| String::new());
    let mut seen = HashSet::new();
    for client in CLIENTS {
        for _ in 0..2 {
            let before = s.served_to_frontend();
            let b = s
                .coap_client(client, ID, KEY, "entropy")
                .unwrap_or_else(|| panic!("{client}: no payload; coapd log:\n{}", s.log()));
            assert_eq!(b.len(), 32, "{client}");
            assert!(seen.insert(b), "{client}: the same 32 bytes twice");
            // Exactly the bytes asked for left the pool for this frontend, no more.
            assert_eq!(s.served_to_frontend() - before, 32, "{client}");
        }
        let before = s.served_to_frontend();
        let b = s
            .coap_client(client, ID, KEY, "entropy?n=200")
            .expect("n=200");
        assert_eq!(b.len(), 200);
        assert_eq!(s.served_to_frontend() - before, 200);
        // Out of bounds: 4.00, nothing drawn from the pool.
        let before = s.served_to_frontend();
        let b = s.coap_client(client, ID, KEY, "entropy?n=100000");
        assert!(b.is_none_or(|b| b.starts_with(b"n must be")), "{client}");
        assert_eq!(s.served_to_frontend(), before);
        let core = s
            .coap_client(client, ID, KEY, ".well-known/core")
            .expect("core");
        assert!(
            String::from_utf8_lossy(&core).contains("</entropy>"),
            "{client}"
        );
    }
    let log = s.log();
    assert!(log.contains("version=\"DTLSv1.2\""), "{log}");
    assert!(log.contains("identity=\"device-1\""), "{log}");
}

#[test]
fn a_wrong_key_or_an_unknown_identity_gets_nothing() {
    if !clients_present() {
        return;
    }
    let s = Stack::start(|_| String::new());
    for client in CLIENTS {
        let before = s.served_to_frontend();
        assert_eq!(
            s.coap_client(client, ID, "not the key", "entropy"),
            None,
            "{client}: wrong key"
        );
        assert_eq!(
            s.coap_client(client, "intruder", KEY, "entropy"),
            None,
            "{client}: unknown id"
        );
        assert_eq!(
            s.served_to_frontend(),
            before,
            "{client}: pool bytes drawn for a refused peer"
        );
    }
    assert!(!s.log().contains("handshake done"), "{}", s.log());
    // And the right key still works afterwards: failed peers left nothing behind that blocks.
    assert_eq!(
        s.coap_client(CLIENTS[0], ID, KEY, "entropy")
            .map(|b| b.len()),
        Some(32)
    );
}

#[test]
fn the_frontend_runs_as_nobody_without_capabilities() {
    if !require(is_root(), "root (the frontend drops from root to nobody)") {
        return;
    }
    let s = Stack::start(|_| String::new());
    let pid = s.coapd.pid();
    assert_eq!(proc_status(pid, "CapEff:"), "0000000000000000");
    assert_eq!(proc_status(pid, "CapPrm:"), "0000000000000000");
    assert_eq!(proc_status(pid, "CapAmb:"), "0000000000000000");
    assert_eq!(proc_status(pid, "NoNewPrivs:"), "1");
    let uids: Vec<u32> = proc_status(pid, "Uid:")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(uids.len(), 4);
    assert!(
        uids.iter().all(|&u| u != 0 && u == uids[0]),
        "uids {uids:?}"
    );
    // nobody's own groups, as systemd's User= would give (initgroups), and root's are gone.
    let want = std::process::Command::new("id")
        .args(["-G", "nobody"])
        .output()
        .unwrap();
    let want = String::from_utf8(want.stdout).unwrap();
    let got = proc_status(pid, "Groups:");
    assert_eq!(
        got.split_whitespace().collect::<Vec<_>>(),
        want.split_whitespace().collect::<Vec<_>>()
    );
    assert!(!got.split_whitespace().any(|g| g == "0"), "{got}");
}

#[test]
fn dtls13_ml_kem_512_psk_client_on_our_wolfssl_build() {
    let s = Stack::start(|_| String::new());
    let mut c = Dtls13::connect(s.port, Group::MlKem512, KEY).expect("handshake");
    assert_eq!(c.s.version().as_deref(), Some("DTLSv1.3"));
    assert_eq!(c.s.group().as_deref(), Some("ML_KEM_512"));
    let before = s.served_to_frontend();
    let a = c.get(100, "entropy");
    assert_eq!(a.header.code, MessageClass::Response(ResponseType::Content));
    assert_eq!(a.payload.len(), 32);
    assert_eq!(s.served_to_frontend() - before, 32);
    // A retransmitted request (same message id) gets the same answer, not new pool bytes.
    let again = c.get(100, "entropy");
    assert_eq!(again.payload, a.payload);
    assert_eq!(s.served_to_frontend() - before, 32);
    let b = c.get(101, "entropy");
    assert_ne!(b.payload, a.payload);
    assert_eq!(s.served_to_frontend() - before, 64);
    let nf = c.get(102, "nothing/here");
    assert_eq!(
        nf.header.code,
        MessageClass::Response(ResponseType::NotFound)
    );
    assert!(Dtls13::connect(s.port, Group::MlKem512, "wrong").is_err());
}

#[test]
fn a_stopped_daemon_gives_5_03_and_no_bytes() {
    let mut s = Stack::start(|_| String::new());
    let mut c = Dtls13::connect(s.port, Group::X25519, KEY).expect("handshake");
    // Stop qeaasd: the frontend stays up and says 5.03.
    drop(std::mem::replace(
        &mut s.daemon,
        Proc(std::process::Command::new("true").spawn().unwrap()),
    ));
    // The worker outlives the supervisor by a moment (it is told by PR_SET_PDEATHSIG): wait
    // until nothing answers on the socket any more.
    let sock = s.dir.path().join("entropy.sock");
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&sock).is_err()
    }));
    let a = c.get(7, "entropy");
    assert_eq!(
        a.header.code,
        MessageClass::Response(ResponseType::ServiceUnavailable)
    );
    assert!(a.payload.is_empty());
}

#[test]
fn garbage_datagrams_create_no_state_and_crash_nothing() {
    let s = Stack::start(|_| String::new());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut junk: Vec<Vec<u8>> = vec![vec![], vec![0x16], vec![0x16, 0xfe, 0xfd], vec![0xff; 1400]];
    // A DTLS 1.2 record header claiming a ClientHello with a bogus length.
    junk.push(
        [
            &[0x16, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x00][..],
            &[1; 60][..],
        ]
        .concat(),
    );
    for i in 0..500u32 {
        junk.push(i.to_be_bytes().repeat((i % 50) as usize));
    }
    for j in &junk {
        sock.send_to(j, ("127.0.0.1", s.port)).unwrap();
    }
    // Still serving, and still the same process.
    let mut c = Dtls13::connect(s.port, Group::P256, KEY).expect("handshake after garbage");
    assert_eq!(c.get(1, "entropy").payload.len(), 32);
    let junk_port = sock.local_addr().unwrap().port();
    let log = s.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("cookie verified") && l.contains(&format!(":{junk_port}"))),
        "garbage got a session:\n{log}"
    );
}

fn with_certificate(dir: &std::path::Path) -> String {
    make_pki(dir);
    format!(
        "[certificate]\nchain = {:?}\nkey = {:?}\n",
        dir.join("srv.pem"),
        dir.join("srv.key")
    )
}

#[test]
fn libcoap_clients_with_ecdsa_certificates_verified_or_not() {
    if !clients_present() || !require(have("openssl"), "openssl (certificate generation)") {
        return;
    }
    let s = Stack::start(with_certificate);
    let p = |f: &str| s.dir.path().join(f).display().to_string();
    let (cli, key, ca, other) = (p("cli.pem"), p("cli.key"), p("ca.pem"), p("other-ca.pem"));
    let mut seen = HashSet::new();
    for client in CLIENTS {
        for auth in [
            vec!["-c", &cli, "-j", &key, "-n"],
            vec!["-c", &cli, "-j", &key, "-R", &ca],
        ] {
            let before = s.served_to_frontend();
            let b = s
                .coap_client_args(client, &auth, "entropy")
                .unwrap_or_else(|| panic!("{client} {auth:?}: nothing; log:\n{}", s.log()));
            assert_eq!(b.len(), 32);
            assert!(seen.insert(b));
            assert_eq!(s.served_to_frontend() - before, 32);
        }
        // Verification is real: a client trusting another CA refuses our server.
        let before = s.served_to_frontend();
        assert_eq!(
            s.coap_client_args(client, &["-c", &cli, "-j", &key, "-R", &other], "entropy"),
            None,
            "{client}"
        );
        assert_eq!(s.served_to_frontend(), before);
    }
    assert!(s.log().contains("cipher=\"ECDHE-ECDSA-"), "{}", s.log());
}

#[test]
fn dtls13_ml_kem_512_with_a_verified_ecdsa_certificate() {
    if !require(have("openssl"), "openssl (certificate generation)") {
        return;
    }
    let s = Stack::start(with_certificate);
    let ca = std::fs::read(s.dir.path().join("ca.pem")).unwrap();
    let mut ctx = Context::new(Role::Client, Version::Dtls13).unwrap();
    ctx.verify_peer(&ca, qeaas_wolfssl_sys::Format::Pem)
        .unwrap();
    let mut c = Dtls13::connect_ctx(s.port, Group::MlKem512, ctx).expect("handshake");
    assert_eq!(c.s.version().as_deref(), Some("DTLSv1.3"));
    assert_eq!(c.s.group().as_deref(), Some("ML_KEM_512"));
    assert_eq!(c.get(1, "entropy").payload.len(), 32);
    // The same server against a client trusting another CA: refused.
    let other = std::fs::read(s.dir.path().join("other-ca.pem")).unwrap();
    let mut ctx = Context::new(Role::Client, Version::Dtls13).unwrap();
    ctx.verify_peer(&other, qeaas_wolfssl_sys::Format::Pem)
        .unwrap();
    assert!(Dtls13::connect_ctx(s.port, Group::MlKem512, ctx).is_err());
}

#[test]
fn dtls13_ml_kem_512_with_a_verified_ml_dsa_44_certificate() {
    let mut key = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let cert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, "qeaas-coapd", 7).unwrap();
    let key_der = key.private_der().unwrap();
    let s = Stack::start(|dir| {
        std::fs::write(dir.join("mldsa.der"), &cert).unwrap();
        std::fs::write(dir.join("mldsa-key.der"), &key_der).unwrap();
        format!(
            "[certificate]\nchain = {:?}\nkey = {:?}\n",
            dir.join("mldsa.der"),
            dir.join("mldsa-key.der")
        )
    });
    let mut ctx = Context::new(Role::Client, Version::Dtls13).unwrap();
    ctx.verify_peer(&cert, qeaas_wolfssl_sys::Format::Der)
        .unwrap();
    let mut c = Dtls13::connect_ctx(s.port, Group::MlKem512, ctx).expect("handshake");
    assert_eq!(c.s.version().as_deref(), Some("DTLSv1.3"));
    assert_eq!(c.s.group().as_deref(), Some("ML_KEM_512"));
    let before = s.served_to_frontend();
    assert_eq!(c.get(1, "entropy").payload.len(), 32);
    assert_eq!(s.served_to_frontend() - before, 32);
}
