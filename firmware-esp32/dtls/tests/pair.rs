//! The device session against the frontend's own server wrapper on the same wolfSSL build, in
//! memory (no sockets, simulated time): a verified DTLS 1.3 fetch credits the server's bytes,
//! a failed verification or a wrong PSK delivers nothing and credits nothing.

mod common;

use std::net::SocketAddr;

use common::{cert_cfg, mldsa_ctx, mldsa_server, named_cfg, node, run, run_at, Counter};
use qeaas_device::coap::ClientConfig;
use qeaas_device::scheduler::RefreshConfig;
use qeaas_device::Instant;
use qeaas_device_dtls::{Auth, ClientCert, DtlsConfig, DtlsError, KeyExchange, SecureNode, State};
use qeaas_wolfssl_sys::{Context, Format, Group, MlDsa44, Role, Session, Version};

#[test]
fn verified_ml_kem_512_ml_dsa_44_fetch_is_credited() {
    let (sctx, cert) = mldsa_server();
    let cfg = cert_cfg(&cert);
    let mut dev = node(&cfg);
    let mut srv = Session::new(&sctx, ([10, 0, 2, 15], 49152).into()).unwrap();
    assert_eq!(dev.dtls().state(), State::Handshaking);
    let sent = run(&mut dev, &mut srv);
    assert_eq!(dev.dtls().state(), State::Established);
    assert_eq!(dev.dtls().group(), Some("ML_KEM_512"));
    assert_eq!(sent.len(), 1);
    let st = dev.node().status();
    assert_eq!(st.fetches_ok, 1);
    assert_eq!(st.pool.server.bytes_mixed, 32);
    assert_eq!(st.pool.server.bits_credited, 256);
}

#[test]
fn a_server_not_signed_by_the_ca_gets_no_request_and_no_credit() {
    let (sctx, _) = mldsa_server();
    let (_, other) = mldsa_server();
    let cfg = cert_cfg(&other);
    let mut dev = node(&cfg);
    let mut srv = Session::new(&sctx, ([10, 0, 2, 15], 49152).into()).unwrap();
    let sent = run(&mut dev, &mut srv);
    assert!(matches!(
        dev.dtls().state(),
        State::Failed(DtlsError::Handshake(_))
    ));
    assert!(sent.is_empty());
    let st = dev.node().status();
    assert_eq!(st.pool.server.bytes_mixed, 0);
    assert_eq!(st.pool.server.bits_credited, 0);
}

#[test]
fn psk_with_ml_kem_512_and_a_wrong_key() {
    let mut sctx = Context::new(Role::Server, Version::Dtls13).unwrap();
    sctx.set_psk_server(std::collections::HashMap::from([(
        b"dev".to_vec(),
        b"right key 123456".to_vec(),
    )]));
    sctx.set_groups(&[Group::MlKem512]).unwrap();
    for (key, ok) in [
        (&b"right key 123456"[..], true),
        (&b"wrong key 123456"[..], false),
    ] {
        let cfg = DtlsConfig {
            kex: KeyExchange::MlKem512,
            auth: Auth::Psk {
                identity: b"dev",
                key,
            },
        };
        let mut dev = node(&cfg);
        let mut srv = Session::new(&sctx, ([10, 0, 2, 15], 49152).into()).unwrap();
        let sent = run(&mut dev, &mut srv);
        let st = dev.node().status();
        assert_eq!(dev.dtls().is_established(), ok);
        assert_eq!(st.pool.server.bits_credited, if ok { 256 } else { 0 });
        assert_eq!(sent.len(), usize::from(ok));
    }
}

#[test]
fn sending_before_the_handshake_is_refused() {
    let (_, cert) = mldsa_server();
    let cfg = DtlsConfig {
        kex: KeyExchange::P256,
        auth: Auth::Certificate {
            ca_der: &cert,
            server_name: None,
            client: None,
        },
    };
    let mut c = qeaas_device_dtls::DtlsClient::new(&cfg, &mut |_| true).unwrap();
    assert_eq!(c.send(b"x"), Err(DtlsError::NotEstablished));
    assert_eq!(c.poll_transmit(), None, "nothing before start");
    c.start(Instant(0));
    assert!(c.poll_transmit().is_some(), "ClientHello after start");
    assert!(c.poll_timeout().is_some());
}

#[test]
fn reconnect_keeps_the_pool_and_a_new_session_can_succeed() {
    let (good, cert) = mldsa_server();
    let (bad, _) = mldsa_server();
    let cfg = cert_cfg(&cert);
    let node = qeaas_device::node::Node::new(
        Instant(0),
        ClientConfig::default(),
        RefreshConfig::default(),
        qeaas_device::node::Transport::Dtls,
        Counter(1),
    );
    let mut dev = SecureNode::with_node(node, &cfg, &mut |_| {})
        .map_err(|(_, e)| e)
        .unwrap();
    // A server with a certificate from another CA: the handshake fails, nothing credited.
    let mut srv = Session::new(&bad, ([10, 0, 2, 15], 49152).into()).unwrap();
    assert!(run(&mut dev, &mut srv).is_empty());
    assert!(matches!(dev.dtls().state(), State::Failed(_)));
    assert_eq!(dev.node().status().pool.server.bits_credited, 0);
    // A new session to the right server: credited, and the same node (pool) carries on.
    dev.reconnect(&cfg, &mut |_| {}).unwrap();
    assert_eq!(dev.dtls().state(), State::Handshaking);
    let mut srv = Session::new(&good, ([10, 0, 2, 15], 49152).into()).unwrap();
    assert_eq!(run(&mut dev, &mut srv).len(), 1);
    assert!(dev.dtls().is_established());
    assert_eq!(dev.node().status().pool.server.bits_credited, 256);
}

#[test]
fn with_node_refuses_a_node_that_does_not_credit_as_dtls() {
    let (_, cert) = mldsa_server();
    let cfg = cert_cfg(&cert);
    let node = qeaas_device::node::Node::new(
        Instant(0),
        ClientConfig::default(),
        RefreshConfig::default(),
        qeaas_device::node::Transport::PlainUdp,
        Counter(1),
    );
    let Err((_, e)) = SecureNode::with_node(node, &cfg, &mut |_| {}) else {
        panic!("a PlainUdp node was accepted");
    };
    assert!(matches!(e, DtlsError::Setup { .. }));
}

/// A deployment CA (ECDSA P-256, made with the openssl CLI) and leaf certificates it signed:
/// `(ca_der, [leaf])` for each common name, the name also as a DNS SAN.
/// A certificate and its private key, PEM and DER.
struct Leaf {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn deployment_pki(names: &[&str]) -> (Vec<u8>, Vec<Leaf>) {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run openssl");
        assert!(o.status.success(), "openssl {args:?}: {o:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
        &["-subj", "/CN=fleet CA"],
    ]
    .concat());
    run(&["x509", "-in", "ca.pem", "-outform", "der", "-out", "ca.der"]);
    let mut leaves = Vec::new();
    for n in names {
        std::fs::write(dir.path().join("ext"), format!("subjectAltName=DNS:{n}\n")).unwrap();
        let subj = format!("/CN={n}");
        run(&[
            &["req"][..],
            &ec,
            &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", &subj],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        run(&[
            "x509", "-in", "leaf.pem", "-outform", "der", "-out", "leaf.der",
        ]);
        run(&[
            "pkey",
            "-in",
            "leaf.key",
            "-outform",
            "der",
            "-out",
            "leaf.key.der",
        ]);
        let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
        leaves.push(Leaf {
            cert_pem: read("leaf.pem"),
            key_pem: read("leaf.key"),
            cert_der: read("leaf.der"),
            key_der: read("leaf.key.der"),
        });
    }
    (std::fs::read(dir.path().join("ca.der")).unwrap(), leaves)
}

fn ecdsa_server(cert_pem: &[u8], key_pem: &[u8]) -> Context {
    let mut c = Context::new(Role::Server, Version::Dtls13).unwrap();
    c.use_certificate_chain(cert_pem, Format::Pem).unwrap();
    c.use_private_key(key_pem, Format::Pem).unwrap();
    c.set_groups(&[Group::MlKem512, Group::P256]).unwrap();
    c
}

/// In a fleet the deployment CA also signs every device's client certificate. A device (or
/// anyone who took one device's key) must not be able to pose as the server to the others
/// with its own certificate: the device checks the server's name, not only the chain.
#[test]
fn another_certificate_of_the_same_ca_cannot_pose_as_the_server() {
    let (ca, leaves) = deployment_pki(&["qeaas.example", "device-7"]);
    let cfg = named_cfg(&ca, "qeaas.example");
    // The real server: accepted.
    let real = ecdsa_server(&leaves[0].cert_pem, &leaves[0].key_pem);
    let mut dev = node(&cfg);
    let mut srv = Session::new(&real, ([10, 0, 2, 15], 49152).into()).unwrap();
    assert_eq!(run(&mut dev, &mut srv).len(), 1);
    assert_eq!(dev.node().status().pool.server.bits_credited, 256);
    // Device 7 with its own (valid, same-CA) certificate: refused, nothing credited.
    let rogue = ecdsa_server(&leaves[1].cert_pem, &leaves[1].key_pem);
    let mut dev = node(&cfg);
    let mut srv = Session::new(&rogue, ([10, 0, 2, 15], 49152).into()).unwrap();
    let sent = run(&mut dev, &mut srv);
    let credited = dev.node().status().pool.server.bits_credited;
    assert!(
        sent.is_empty() && credited == 0,
        "device-7's certificate was accepted as the server's: {} answers, {credited} bits credited",
        sent.len()
    );
    assert!(matches!(
        dev.dtls().state(),
        State::Failed(DtlsError::Handshake(_))
    ));
}

/// A server that requires client certificates (`[client_certs] require = true`) refuses a
/// device without one and accepts the device presenting the certificate the fleet CA issued it.
#[test]
fn a_server_requiring_client_certificates_accepts_a_device_with_one() {
    let (ca, leaves) = deployment_pki(&["qeaas.example", "device-7"]);
    let mut sctx = ecdsa_server(&leaves[0].cert_pem, &leaves[0].key_pem);
    sctx.verify_peer(&ca, Format::Der).unwrap();
    let device = &leaves[1];
    for (client, ok) in [
        (None, false),
        (
            Some(ClientCert {
                cert_der: &device.cert_der,
                key_der: &device.key_der,
            }),
            true,
        ),
    ] {
        let cfg = DtlsConfig {
            kex: KeyExchange::MlKem512,
            auth: Auth::Certificate {
                ca_der: &ca,
                server_name: Some("qeaas.example"),
                client,
            },
        };
        let mut dev = node(&cfg);
        let mut srv = Session::new(&sctx, ([10, 0, 2, 15], 49152).into()).unwrap();
        let sent = run(&mut dev, &mut srv);
        assert_eq!(srv.is_established(), ok, "client certificate: {ok}");
        assert_eq!(sent.len(), usize::from(ok));
        assert_eq!(
            dev.node().status().pool.server.bits_credited,
            if ok { 256 } else { 0 }
        );
    }
}

/// Issue 13, reconnect: after the server restarts (its context rebuilt with the same ticket
/// key file), the device resumes with the ticket its last session got: no certificate is sent
/// or verified, and the fetch is credited as before. A server with another ticket key gets a
/// full handshake with the certificate verified; a ticket is never offered under another
/// configuration (a reprovisioned CA), and PSK mode never offers one.
#[test]
fn reconnect_resumes_with_the_last_ticket_after_a_server_restart() {
    let mut key = MlDsa44::generate().unwrap();
    let cert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, "srv", 1).unwrap();
    let key_der = key.private_der().unwrap();
    let server = |secret: &[u8]| mldsa_ctx(&cert, &key_der, Some(secret));
    let peer: SocketAddr = ([10, 0, 2, 15], 49152).into();
    let cfg = cert_cfg(&cert);
    let mut dev = node(&cfg);
    let first = server(&[1; 32]);
    let mut srv = Session::new(&first, peer).unwrap();
    assert_eq!(run(&mut dev, &mut srv).len(), 1);
    assert!(!dev.dtls().offered_ticket() && !dev.dtls().resumed());
    drop((srv, first));

    // The server restarts with the same key file: the ticket resumes.
    dev.reconnect(&cfg, &mut |_| {}).unwrap();
    assert!(dev.dtls().offered_ticket());
    let restarted = server(&[1; 32]);
    let mut srv = Session::new(&restarted, peer).unwrap();
    assert_eq!(run_at(&mut dev, &mut srv, Instant(100_000)).len(), 1);
    assert!(dev.dtls().resumed() && srv.resumed(), "no resumption");
    assert_eq!(dev.node().status().fetches_ok, 2);
    drop((srv, restarted));

    // Another ticket key: the ticket (the resumed session's new one) is offered and refused,
    // and the handshake is a full one, certificate verified.
    dev.reconnect(&cfg, &mut |_| {}).unwrap();
    assert!(dev.dtls().offered_ticket());
    let other = server(&[2; 32]);
    let mut srv = Session::new(&other, peer).unwrap();
    assert_eq!(run_at(&mut dev, &mut srv, Instant(200_000)).len(), 1);
    assert!(dev.dtls().is_established() && !dev.dtls().resumed() && !srv.resumed());

    // Another CA in the configuration: the ticket is not offered.
    let (_, other_ca) = mldsa_server();
    let reprovisioned = cert_cfg(&other_ca);
    dev.reconnect(&reprovisioned, &mut |_| {}).unwrap();
    assert!(!dev.dtls().offered_ticket());
    // Nor in PSK mode, nor back under the first CA once it was dropped.
    let psk = DtlsConfig {
        kex: KeyExchange::MlKem512,
        auth: Auth::Psk {
            identity: b"device-1",
            key: &[7; 32],
        },
    };
    dev.reconnect(&psk, &mut |_| {}).unwrap();
    assert!(!dev.dtls().offered_ticket());
    dev.reconnect(&cfg, &mut |_| {}).unwrap();
    assert!(!dev.dtls().offered_ticket());
}

/// Issue 13, server identity: the not-before floor. A server certificate older than the floor
/// (the certificate before a rotation, still signed by the fleet CA) fails the handshake and
/// gets no request and no credit; the accepted certificate's notBefore is reported, for the
/// shell to raise the floor with. Same key and name, notBefore 2025-01-01 and 2026-06-01.
#[test]
fn a_certificate_older_than_the_floor_is_refused() {
    const NEW_NB: u64 = 1_780_272_000; // 2026-06-01T00:00:00Z
    let mut key = MlDsa44::generate().unwrap();
    const NAME: &str = "srv.qeaas.test";
    let old = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, NAME, 1).unwrap();
    let new =
        qeaas_wolfssl_sys::x509::self_signed_mldsa44_from(&mut key, NAME, 2, b"260601000000Z")
            .unwrap();
    let key_der = key.private_der().unwrap();
    let server = |cert: &[u8]| mldsa_ctx(cert, &key_der, None);
    let peer: SocketAddr = ([10, 0, 2, 15], 49152).into();
    let rotated = server(&new);
    // Without the server's name any certificate of the CA passes as the server's, so none may
    // raise the floor (a far-future one would lock the device out for good).
    let mut dev = node(&cert_cfg(&old));
    let mut srv = Session::new(&rotated, peer).unwrap();
    assert_eq!(run(&mut dev, &mut srv).len(), 1);
    assert_eq!(dev.server_not_before(), None);
    let cfg = named_cfg(&old, NAME);
    let mut dev = node(&cfg);
    let mut srv = Session::new(&rotated, peer).unwrap();
    assert_eq!(run(&mut dev, &mut srv).len(), 1);
    assert_eq!(dev.server_not_before(), Some(NEW_NB));
    dev.set_not_before_floor(NEW_NB);

    // The certificate from before the rotation: refused, nothing credited.
    let credited = dev.node().status().pool.server.bits_credited;
    dev.reconnect(&cfg, &mut |_| {}).unwrap();
    let rolled_back = server(&old);
    let mut srv = Session::new(&rolled_back, peer).unwrap();
    assert!(run_at(&mut dev, &mut srv, Instant(100_000)).is_empty());
    assert!(matches!(dev.dtls().state(), State::Failed(_)));
    assert_eq!(dev.server_not_before(), None);
    assert_eq!(dev.node().status().pool.server.bits_credited, credited);

    // The control: the same certificate without the floor is accepted.
    dev.set_not_before_floor(0);
    dev.reconnect(&cfg, &mut |_| {}).unwrap();
    let mut srv = Session::new(&rolled_back, peer).unwrap();
    assert_eq!(run_at(&mut dev, &mut srv, Instant(200_000)).len(), 1);
    assert_eq!(dev.server_not_before(), Some(1_735_689_600));
}

/// Attack: a device in PSK mode talks to whoever answers its datagrams. A server that does not
/// know the device's key (here one with no PSKs at all, and one that knows only another
/// device's) ignores the offered PSK and completes a certificate handshake with any
/// certificate it likes. The device must refuse it: it authenticates its server only by the
/// PSK, so a session without it gets no request and its bytes no credit.
#[test]
fn a_psk_device_refuses_a_server_that_answers_with_a_certificate_instead() {
    let cfg = DtlsConfig {
        kex: KeyExchange::MlKem512,
        auth: Auth::Psk {
            identity: b"dev",
            key: b"right key 123456",
        },
    };
    let (no_psk, _) = mldsa_server();
    let (mut other_psk, _) = mldsa_server();
    other_psk.set_psk_server(std::collections::HashMap::from([(
        b"another device".to_vec(),
        b"its key 12345678".to_vec(),
    )]));
    for sctx in [no_psk, other_psk] {
        let mut dev = node(&cfg);
        let mut srv = Session::new(&sctx, ([10, 0, 2, 15], 49152).into()).unwrap();
        let sent = run(&mut dev, &mut srv);
        assert!(
            !dev.dtls().is_established(),
            "a PSK device accepted a certificate handshake from a server without its key"
        );
        assert!(sent.is_empty());
        assert_eq!(dev.node().status().pool.server.bits_credited, 0);
    }
}
