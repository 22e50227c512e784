//! Two in-memory endpoints on this build, pumped datagram by datagram (no sockets): the
//! handshakes the frontend and the firmware rely on.

use std::collections::HashMap;
use std::net::SocketAddr;

use qeaas_wolfssl_sys::{
    Context, Format, Group, MlDsa44, Progress, Resumption, Role, Session, TicketKey, Version,
};

const ID: &[u8] = b"device-1";
const KEY: &[u8] = b"0123456789abcdef";
const SECRET: &[u8] = b"cookie secret for these tests, 32";

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

fn server_ctx(v: Version, groups: &[Group]) -> Context {
    let mut c = Context::new(Role::Server, v).unwrap();
    c.set_psk_server(HashMap::from([(ID.to_vec(), KEY.to_vec())]));
    if !groups.is_empty() {
        c.set_groups(groups).unwrap();
    }
    c
}

fn client(v: Version, id: &[u8], key: &[u8], share: Option<Group>) -> Session {
    let mut c = Context::new(Role::Client, v).unwrap();
    c.set_psk_client(id, key);
    if let Some(g) = share {
        c.set_groups(&[g]).unwrap();
    }
    let mut s = Session::new(&c, addr(1)).unwrap();
    if let Some(g) = share {
        s.use_key_share(g).unwrap();
    }
    s
}

/// Runs the server as qeaas-coapd does: a stateless listener until a ClientHello carries a
/// valid cookie, then that same session continues the handshake. Returns (server, client,
/// datagrams the server sent before the cookie was proven).
fn handshake(sctx: &Context, cli: Session) -> Result<(Session, Session, usize), String> {
    handshake_counted(sctx, cli).map(|(s, c, n)| (s, c, n.pre_cookie))
}

/// What a handshake cost: bytes and datagrams each side sent (the server's counted from the
/// cookie on), and the server's bytes before the cookie.
#[derive(Debug, Default)]
struct Cost {
    pre_cookie: usize,
    server_bytes: usize,
    server_datagrams: usize,
    client_bytes: usize,
    client_datagrams: usize,
}

fn handshake_counted(sctx: &Context, cli: Session) -> Result<(Session, Session, Cost), String> {
    handshake_tampered(sctx, cli, |_| {})
}

/// As [`handshake_counted`], with every client datagram passed through `tamper` first.
fn handshake_tampered(
    sctx: &Context,
    mut cli: Session,
    mut tamper: impl FnMut(&mut Vec<u8>),
) -> Result<(Session, Session, Cost), String> {
    let mut cost = Cost::default();
    let mut listener = Session::new(sctx, addr(1)).unwrap();
    listener.set_cookie_secret(SECRET).unwrap();
    assert_eq!(
        cli.handshake().map_err(|e| e.to_string())?,
        Progress::WantRead
    );
    // Stateless phase.
    for _ in 0..10 {
        for mut d in cli.take_datagrams() {
            tamper(&mut d);
            cost.client_bytes += d.len();
            cost.client_datagrams += 1;
            listener.feed(&d);
        }
        let verified = listener.accept_stateless().map_err(|e| e.to_string())?;
        let out = listener.take_datagrams();
        if verified {
            for d in out {
                cost.server_bytes += d.len();
                cost.server_datagrams += 1;
                cli.feed(&d);
            }
            break;
        }
        cost.pre_cookie += out.iter().map(Vec::len).sum::<usize>();
        for d in out {
            cli.feed(&d);
        }
        cli.handshake().map_err(|e| e.to_string())?;
    }
    let mut srv = listener;
    for _ in 0..20 {
        let s = srv.handshake().map_err(|e| format!("server: {e}"))?;
        for d in srv.take_datagrams() {
            cost.server_bytes += d.len();
            cost.server_datagrams += 1;
            cli.feed(&d);
        }
        let c = cli.handshake().map_err(|e| format!("client: {e}"))?;
        for mut d in cli.take_datagrams() {
            tamper(&mut d);
            cost.client_bytes += d.len();
            cost.client_datagrams += 1;
            srv.feed(&d);
        }
        if s == Progress::Done && c == Progress::Done {
            return Ok((srv, cli, cost));
        }
    }
    Err("handshake did not finish".into())
}

fn echo(srv: &mut Session, cli: &mut Session) {
    cli.write(b"GET /entropy").unwrap();
    for d in cli.take_datagrams() {
        srv.feed(&d);
    }
    let mut buf = [0u8; 256];
    let n = srv.read(&mut buf).unwrap().expect("a record");
    assert_eq!(&buf[..n], b"GET /entropy");
    srv.write(&buf[..n]).unwrap();
    for d in srv.take_datagrams() {
        cli.feed(&d);
    }
    let n = cli.read(&mut buf).unwrap().expect("a record");
    assert_eq!(&buf[..n], b"GET /entropy");
}

#[test]
fn dtls12_psk_aes_ccm8_with_a_hello_verify_cookie() {
    let sctx = server_ctx(Version::Any, &[]);
    let mut cctx = Context::new(Role::Client, Version::Dtls12).unwrap();
    cctx.set_psk_client(ID, KEY);
    cctx.set_cipher_list("PSK-AES128-CCM-8").unwrap();
    let cli = Session::new(&cctx, addr(1)).unwrap();
    let (mut s, mut c, pre) = handshake(&sctx, cli).unwrap();
    assert_eq!(s.version().as_deref(), Some("DTLSv1.2"));
    assert_eq!(c.cipher().as_deref(), Some("PSK-AES128-CCM-8"));
    assert_eq!(s.psk_identity().as_deref(), Some("device-1"));
    assert!(pre > 0, "a HelloVerifyRequest was sent");
    echo(&mut s, &mut c);
}

#[test]
fn dtls13_psk_with_ml_kem_512() {
    let sctx = server_ctx(Version::Any, &[Group::MlKem512, Group::X25519]);
    let cli = client(Version::Dtls13, ID, KEY, Some(Group::MlKem512));
    let (mut s, mut c, pre) = handshake(&sctx, cli).unwrap();
    assert_eq!(s.version().as_deref(), Some("DTLSv1.3"));
    assert_eq!(c.group().as_deref(), Some("ML_KEM_512"));
    assert!(pre > 0, "a HelloRetryRequest cookie was sent");
    echo(&mut s, &mut c);
}

/// A DTLS 1.2 PSK client that resumes its session by ID (wolfSSL's in-memory session cache on
/// the server) must still be its PSK identity, or not resume at all: a resumed session that
/// names nobody would be counted by address by qeaas-coapd, outside that identity's quota.
#[test]
fn dtls12_a_session_resumed_by_id_is_still_its_psk_identity() {
    let sctx = server_ctx(Version::Any, &[]);
    let mut cctx = Context::new(Role::Client, Version::Dtls12).unwrap();
    cctx.set_psk_client(ID, KEY);
    cctx.set_cipher_list("PSK-AES128-CCM-8").unwrap();
    let (mut s, mut c, _) = handshake(&sctx, Session::new(&cctx, addr(1)).unwrap()).unwrap();
    echo(&mut s, &mut c);
    let r = c.resumption().expect("a DTLS 1.2 session to resume");
    let mut cli = Session::new(&cctx, addr(1)).unwrap();
    cli.resume(&r).unwrap();
    let (mut s, mut c, _) = handshake(&sctx, cli).unwrap();
    assert_eq!(
        s.psk_identity().as_deref(),
        Some("device-1"),
        "client resumed: {}",
        c.resumed()
    );
    echo(&mut s, &mut c);
}

#[test]
fn dtls13_groups_handshake() {
    for g in [
        Group::MlKem768,
        Group::X25519MlKem768,
        Group::X25519,
        Group::P256,
    ] {
        let sctx = server_ctx(
            Version::Dtls13,
            &[
                Group::MlKem512,
                Group::MlKem768,
                Group::X25519MlKem768,
                Group::X25519,
                Group::P256,
            ],
        );
        let cli = client(Version::Dtls13, ID, KEY, Some(g));
        let (mut s, mut c, _) = handshake(&sctx, cli).unwrap_or_else(|e| panic!("{g:?}: {e}"));
        assert!(c.group().is_some(), "{g:?}");
        echo(&mut s, &mut c);
    }
}

#[test]
fn a_wrong_key_or_unknown_identity_is_refused() {
    for v in [Version::Dtls12, Version::Dtls13] {
        let sctx = server_ctx(Version::Any, &[]);
        let cli = client(
            v,
            ID,
            b"fedcba9876543210",
            if v == Version::Dtls13 {
                Some(Group::X25519)
            } else {
                None
            },
        );
        assert!(handshake(&sctx, cli).is_err(), "{v:?}: wrong key accepted");
        let cli = client(
            v,
            b"stranger",
            KEY,
            if v == Version::Dtls13 {
                Some(Group::X25519)
            } else {
                None
            },
        );
        assert!(
            handshake(&sctx, cli).is_err(),
            "{v:?}: unknown identity accepted"
        );
    }
}

#[test]
fn garbage_never_gets_past_the_stateless_listener() {
    let sctx = server_ctx(Version::Any, &[]);
    let mut l = Session::new(&sctx, addr(9)).unwrap();
    l.set_cookie_secret(SECRET).unwrap();
    for d in [
        &b""[..],
        b"\x16\xfe\xfd",
        &[0xffu8; 300],
        &[0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
    ] {
        l.feed(d);
        assert!(!matches!(l.accept_stateless(), Ok(true)));
    }
}

#[test]
fn dtls13_ml_kem_512_with_a_verified_ml_dsa_44_certificate() {
    let mut key = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let cert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, "qeaas test", 1).unwrap();
    let mut sctx = Context::new(Role::Server, Version::Dtls13).unwrap();
    sctx.use_certificate_chain(&cert, Format::Der).unwrap();
    sctx.use_private_key(&key.private_der().unwrap(), Format::Der)
        .unwrap();
    sctx.set_groups(&[Group::MlKem512]).unwrap();
    let verified_client = |ca: &[u8]| {
        let mut c = Context::new(Role::Client, Version::Dtls13).unwrap();
        c.verify_peer(ca, Format::Der).unwrap();
        c.set_groups(&[Group::MlKem512]).unwrap();
        let mut s = Session::new(&c, addr(1)).unwrap();
        s.use_key_share(Group::MlKem512).unwrap();
        s
    };
    let (mut s, mut c, _) = handshake(&sctx, verified_client(&cert)).unwrap();
    assert_eq!(c.group().as_deref(), Some("ML_KEM_512"));
    echo(&mut s, &mut c);
    // A client trusting another ML-DSA key refuses this server.
    let mut other = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let other_ca = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut other, "other", 2).unwrap();
    assert!(handshake(&sctx, verified_client(&other_ca)).is_err());
}

/// Client certificates (mutual authentication) in DTLS 1.3 with ML-DSA-44: the server names
/// the client by its certificate's CN; under `require` a client without one is refused, and
/// PSK clients pass either way (in DTLS 1.2 too).
#[test]
fn client_certificates_verified_required_and_psk_exempt() {
    let mut skey = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let scert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut skey, "server", 1).unwrap();
    // The client's self-signed certificate is its own trust anchor here.
    let mut ckey = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let ccert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut ckey, "client-a", 2).unwrap();
    let mut okey = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let ocert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut okey, "client-a", 3).unwrap();
    let server = |require: bool| {
        let mut c = server_ctx(Version::Any, &[Group::MlKem512]);
        c.use_certificate_chain(&scert, Format::Der).unwrap();
        c.use_private_key(&skey.private_der().unwrap(), Format::Der)
            .unwrap();
        c.verify_clients(&ccert, Format::Der, require).unwrap();
        c
    };
    let cert_client = |mine: Option<(&[u8], &MlDsa44)>| {
        let mut c = Context::new(Role::Client, Version::Dtls13).unwrap();
        c.verify_peer(&scert, Format::Der).unwrap();
        c.set_groups(&[Group::MlKem512]).unwrap();
        if let Some((cert, key)) = mine {
            c.use_client_certificate(cert, Format::Der, &key.private_der().unwrap(), Format::Der)
                .unwrap();
        }
        let mut s = Session::new(&c, addr(1)).unwrap();
        s.use_key_share(Group::MlKem512).unwrap();
        s
    };
    for require in [true, false] {
        let sctx = server(require);
        let (mut s, mut c, _) = handshake(&sctx, cert_client(Some((&ccert, &ckey)))).unwrap();
        let names = s
            .peer_certificate_names()
            .expect("a verified client certificate");
        assert_eq!(names.cn.as_deref(), Some("client-a"));
        assert_eq!(s.psk_identity(), None);
        echo(&mut s, &mut c);
        // Another key under the same name does not verify, required or not.
        assert!(handshake(&sctx, cert_client(Some((&ocert, &okey)))).is_err());
        // No certificate: refused only when required.
        let r = handshake(&sctx, cert_client(None));
        if require {
            assert!(r.is_err(), "no client certificate passed under require");
        } else {
            let (s, _, _) = r.unwrap();
            assert_eq!(s.peer_certificate_names(), None);
        }
        // PSK, DTLS 1.3 and 1.2: no certificates involved, accepted.
        let (s, _, _) = handshake(
            &sctx,
            client(Version::Dtls13, ID, KEY, Some(Group::MlKem512)),
        )
        .unwrap();
        assert_eq!(s.psk_identity().as_deref(), Some("device-1"));
        assert_eq!(s.peer_certificate_names(), None);
        let mut cctx = Context::new(Role::Client, Version::Dtls12).unwrap();
        cctx.set_psk_client(ID, KEY);
        cctx.set_cipher_list("PSK-AES128-CCM-8").unwrap();
        let (s, _, _) = handshake(&sctx, Session::new(&cctx, addr(1)).unwrap()).unwrap();
        assert_eq!(s.version().as_deref(), Some("DTLSv1.2"));
        assert_eq!(s.psk_identity().as_deref(), Some("device-1"));
    }
}

/// The PSK identity-confusion attack: PSK identities travel in clear, so an attacker who saw
/// `device-1` on the wire offers it with a wrong key, restricted to one TLS 1.3 suite. wolfSSL
/// asks the server's PSK callback for that identity's key before it checks the binder, and
/// with a suite the PSK is not bound to it goes on with a certificate handshake. Whatever the
/// suite, and with client certificates required or optional, the server must never name such
/// a session `device-1`, and under `require` it must refuse it (no certificate, no PSK).
/// The right key with wolfSSL's PSK suite (TLS13-AES128-GCM-SHA256) is the control: named.
#[test]
fn dtls13_known_psk_identity_with_a_wrong_key_is_never_that_identity() {
    let mut skey = MlDsa44::generate().unwrap();
    let scert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut skey, "server", 1).unwrap();
    let mut ckey = MlDsa44::generate().unwrap();
    let ccert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut ckey, "client-a", 2).unwrap();
    let suites = [
        "TLS13-AES128-GCM-SHA256",
        "TLS13-AES256-GCM-SHA384",
        "TLS13-CHACHA20-POLY1305-SHA256",
        "TLS13-AES128-CCM-SHA256",
        "TLS13-AES128-CCM-8-SHA256",
    ];
    for require in [true, false] {
        let mut sctx = server_ctx(Version::Any, &[Group::X25519]);
        sctx.use_certificate_chain(&scert, Format::Der).unwrap();
        sctx.use_private_key(&skey.private_der().unwrap(), Format::Der)
            .unwrap();
        sctx.verify_clients(&ccert, Format::Der, require).unwrap();
        for suite in suites {
            let attacker = |key: &[u8]| -> Option<Session> {
                // A client that verifies nothing: it only wants to be served as device-1.
                let mut c = Context::new(Role::Client, Version::Dtls13).unwrap();
                c.set_psk_client(ID, key);
                // Suites our build lacks are skipped (the control below proves which exist).
                c.set_cipher_list(suite).ok()?;
                c.set_groups(&[Group::X25519]).unwrap();
                let mut s = Session::new(&c, addr(1)).unwrap();
                s.use_key_share(Group::X25519).unwrap();
                Some(s)
            };
            let Some(cli) = attacker(b"fedcba9876543210") else {
                eprintln!("{suite}: not in this build");
                continue;
            };
            match handshake(&sctx, cli) {
                Err(e) => eprintln!("{suite} require={require}: wrong key refused ({e})"),
                Ok((s, _, _)) => {
                    eprintln!(
                        "{suite} require={require}: completed as {:?} with {:?}",
                        s.psk_identity(),
                        s.cipher()
                    );
                    assert_eq!(
                        s.psk_identity(),
                        None,
                        "{suite} require={require}: a wrong key was named device-1"
                    );
                    assert!(
                        !require,
                        "{suite}: require passed without a certificate or a verified PSK"
                    );
                    assert_eq!(s.peer_certificate_names(), None);
                }
            }
            // The right key: named device-1 exactly when wolfSSL used the PSK.
            if let Ok((s, _, _)) = handshake(&sctx, attacker(KEY).unwrap()) {
                let psk = s.psk_identity();
                eprintln!("{suite} require={require}: right key named {psk:?}");
                if suite == "TLS13-AES128-GCM-SHA256" {
                    assert_eq!(psk.as_deref(), Some("device-1"), "{suite}");
                } else {
                    assert!(psk.is_none() || psk.as_deref() == Some("device-1"));
                }
            } else {
                assert_ne!(
                    suite, "TLS13-AES128-GCM-SHA256",
                    "the right key was refused"
                );
            }
        }
    }
}

const TICKETS_A: &[u8] = b"ticket key file A for these tests, 32+ bytes";
const TICKETS_B: &[u8] = b"ticket key file B for these tests, 32+ bytes";
const DAY: u32 = 24 * 3600;

/// A server as qeaas-coapd builds it with `ticket_key_file`: ML-DSA-44 certificate, the PSK
/// table, optionally client certificates, tickets sealed with a key from `secret`.
struct TicketServer {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Vec<u8>,
}

impl TicketServer {
    fn new(client_ca: Vec<u8>) -> TicketServer {
        let mut k = MlDsa44::generate().unwrap();
        let cert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut k, "server", 1).unwrap();
        TicketServer {
            cert,
            key: k.private_der().unwrap(),
            client_ca,
        }
    }

    /// A fresh context: what a restarted server builds from its configuration.
    fn start(&self, secret: Option<&[u8]>, require: Option<bool>) -> Context {
        let mut c = server_ctx(Version::Any, &[Group::MlKem512, Group::X25519]);
        c.use_certificate_chain(&self.cert, Format::Der).unwrap();
        c.use_private_key(&self.key, Format::Der).unwrap();
        if let Some(r) = require {
            c.verify_clients(&self.client_ca, Format::Der, r).unwrap();
        }
        if let Some(s) = secret {
            c.enable_session_tickets(TicketKey::derive(s, DAY).unwrap())
                .unwrap();
        }
        c
    }

    /// A client that verifies this server's certificate, optionally with its own.
    fn client(&self, mine: Option<(&[u8], &[u8])>) -> Context {
        let mut c = Context::new(Role::Client, Version::Dtls13).unwrap();
        c.verify_peer(&self.cert, Format::Der).unwrap();
        c.set_groups(&[Group::MlKem512]).unwrap();
        if let Some((cert, key)) = mine {
            c.use_client_certificate(cert, Format::Der, key, Format::Der)
                .unwrap();
        }
        c
    }
}

fn session(cctx: &Context, resume: Option<&Resumption>) -> Session {
    let mut s = Session::new(cctx, addr(1)).unwrap();
    s.use_key_share(Group::MlKem512).unwrap();
    if let Some(r) = resume {
        s.resume(r).unwrap();
    }
    s
}

/// A full handshake, then one request and answer (the client reads the ticket that follows
/// the handshake), and the ticket it got.
fn full_then_ticket(sctx: &Context, cli: Session) -> (Session, Option<Resumption>, Cost) {
    let (mut s, mut c, cost) = handshake_counted(sctx, cli).unwrap();
    assert!(!s.resumed() && !c.resumed());
    echo(&mut s, &mut c);
    // The client's ACK of the ticket, for completeness.
    for d in c.take_datagrams() {
        s.feed(&d);
    }
    (s, c.resumption(), cost)
}

/// Issue 13 item 3: a DTLS 1.3 client with a ticket from a server resumes after that server
/// restarts with the same ticket key file (its context dropped and rebuilt): no certificate,
/// no signature, far fewer bytes; against a server with another key file, or without one, the
/// same ticket falls back to a full handshake. A server without a key file issues no ticket.
#[test]
fn dtls13_a_ticket_resumes_after_a_restart_with_the_same_key_file_only() {
    let srv = TicketServer::new(Vec::new());
    let cctx = srv.client(None);

    let before = srv.start(Some(TICKETS_A), None);
    let (_, ticket, full) = full_then_ticket(&before, session(&cctx, None));
    let ticket = ticket.expect("a ticket from a server with a ticket key");
    drop(before);

    // "Restart": a new context from the same key file.
    let after = srv.start(Some(TICKETS_A), None);
    let (mut s, mut c, resumed) = handshake_counted(&after, session(&cctx, Some(&ticket))).unwrap();
    assert!(c.resumed(), "the client resumed");
    assert!(s.resumed(), "the server resumed");
    assert_eq!(s.version().as_deref(), Some("DTLSv1.3"));
    echo(&mut s, &mut c);
    eprintln!("full handshake: {full:?}");
    eprintln!("resumed after restart: {resumed:?}");
    // The ML-DSA-44 certificate (3.9 kB) and CertificateVerify (2.4 kB) are not sent again.
    assert!(full.server_bytes > 6000, "{full:?}");
    assert!(resumed.server_bytes < 2500, "{resumed:?}");

    // Another key file, or none: the ticket is unknown, a full handshake (and verification).
    for other in [Some(TICKETS_B), None] {
        let sctx = srv.start(other, None);
        let (mut s, mut c, cost) = handshake_counted(&sctx, session(&cctx, Some(&ticket))).unwrap();
        assert!(
            !c.resumed() && !s.resumed(),
            "{other:?}: resumed with a foreign ticket"
        );
        assert!(cost.server_bytes > 6000, "{cost:?}");
        echo(&mut s, &mut c);
    }
    let (_, none, _) = full_then_ticket(&srv.start(None, None), session(&cctx, None));
    assert!(
        none.is_none(),
        "a server without a ticket key issued a ticket"
    );
}

/// Attack: a resumed session must be the client its ticket was issued to, so that quotas
/// (per PSK identity or certificate name) and `[client_certs] require` hold for resumed
/// sessions too. A resumption carries no PSK identity of the client's and no certificate:
/// - a ticket from device-1's session, offered by a client configured as device-2, must be
///   named device-1 if it resumes (not device-2, not the ticket's bytes);
/// - a ticket from a certificate session must resume with that certificate's name;
/// - under `require`, a ticket from a session without a certificate or PSK must not resume;
/// - after device-1's key changed (or device-1 was removed), its tickets must not resume.
#[test]
fn dtls13_a_resumed_session_is_the_identity_its_ticket_was_issued_to() {
    let mut ckey = MlDsa44::generate().unwrap();
    let ccert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut ckey, "client-a", 2).unwrap();
    let ckey = ckey.private_der().unwrap();
    let srv = TicketServer::new(ccert.clone());
    let two = |c: &mut Context, one_key: &[u8]| {
        c.set_psk_server(HashMap::from([
            (ID.to_vec(), one_key.to_vec()),
            (b"device-2".to_vec(), b"fedcba9876543210".to_vec()),
        ]));
    };
    let psk_client = |id: &[u8], key: &[u8]| {
        let mut c = Context::new(Role::Client, Version::Dtls13).unwrap();
        c.set_psk_client(id, key);
        c.set_groups(&[Group::MlKem512]).unwrap();
        c
    };

    // PSK: device-1 gets a ticket; a client configured as device-2 offers it.
    for require in [None, Some(false), Some(true)] {
        let mut sctx = srv.start(Some(TICKETS_A), require);
        two(&mut sctx, KEY);
        let (s, ticket, _) = full_then_ticket(&sctx, session(&psk_client(ID, KEY), None));
        assert_eq!(s.psk_identity().as_deref(), Some("device-1"));
        let ticket = ticket.expect("a ticket");
        let mut sctx = srv.start(Some(TICKETS_A), require);
        two(&mut sctx, KEY);
        // device-1 itself: its own PSK or its ticket, named device-1 either way.
        let (s, _, _) = handshake(&sctx, session(&psk_client(ID, KEY), Some(&ticket))).unwrap();
        eprintln!(
            "require={require:?}: device-1 again, resumed={}",
            s.resumed()
        );
        assert_eq!(s.psk_identity().as_deref(), Some("device-1"));
        let other = psk_client(b"device-2", b"fedcba9876543210");
        let (s, _, _) = handshake(&sctx, session(&other, Some(&ticket))).unwrap();
        eprintln!(
            "require={require:?}: resumed={} named {:?}",
            s.resumed(),
            s.psk_identity()
        );
        if s.resumed() {
            assert_eq!(
                s.psk_identity().as_deref(),
                Some("device-1"),
                "a resumed session is not its ticket's identity"
            );
        } else {
            assert_eq!(s.psk_identity().as_deref(), Some("device-2"));
        }

        // device-1's key changed since (or device-1 removed): its ticket is dead.
        for table in [Some(b"another key 16 b".as_slice()), None] {
            let mut sctx = srv.start(Some(TICKETS_A), require);
            match table {
                Some(k) => two(&mut sctx, k),
                None => sctx.set_psk_server(HashMap::new()),
            }
            if let Ok((s, _, _)) = handshake(&sctx, session(&psk_client(ID, KEY), Some(&ticket))) {
                assert!(
                    !s.resumed(),
                    "require={require:?}: a ticket of device-1 resumed after its key changed \
                     (named {:?})",
                    s.psk_identity()
                );
            }
        }
    }

    // Certificates: client-a gets a ticket; the resumed session must be client-a.
    for require in [false, true] {
        let sctx = srv.start(Some(TICKETS_A), Some(require));
        let cctx = srv.client(Some((&ccert, &ckey)));
        let (s, ticket, _) = full_then_ticket(&sctx, session(&cctx, None));
        assert_eq!(
            s.peer_certificate_names().and_then(|n| n.cn).as_deref(),
            Some("client-a")
        );
        let ticket = ticket.expect("a ticket");
        let sctx = srv.start(Some(TICKETS_A), Some(require));
        let (s, _, _) = handshake(&sctx, session(&cctx, Some(&ticket))).unwrap();
        assert!(
            s.resumed(),
            "require={require}: a certificate session did not resume"
        );
        assert_eq!(
            s.peer_certificate_names().and_then(|n| n.cn).as_deref(),
            Some("client-a"),
            "require={require}: a resumed certificate session lost its name"
        );
        assert_eq!(s.psk_identity(), None, "require={require}");
    }

    // A session with neither (allowed when certificates are optional), then `require`.
    let open = srv.start(Some(TICKETS_A), Some(false));
    let anon = srv.client(None);
    let (s, ticket, _) = full_then_ticket(&open, session(&anon, None));
    assert_eq!(s.peer_certificate_names(), None);
    let ticket = ticket.expect("a ticket");
    let strict = srv.start(Some(TICKETS_A), Some(true));
    if let Ok((s, _, _)) = handshake(&strict, session(&anon, Some(&ticket))) {
        panic!(
            "under require, an anonymous ticket got a session (resumed={}, names={:?}, psk={:?})",
            s.resumed(),
            s.peer_certificate_names(),
            s.psk_identity()
        );
    }
}

/// Attack: a client modifies its ticket (one bit of the sealed part) or forges one under the
/// right key name. ChaCha20-Poly1305 over the ticket with its key name, IV and length as
/// associated data: it never opens, so there is no resumption, only a full handshake (or a
/// failed one). A check: this held from the first ticket commit on.
#[test]
fn dtls13_a_modified_or_forged_ticket_never_resumes() {
    let srv = TicketServer::new(Vec::new());
    let cctx = srv.client(None);
    let (_, ticket, _) = full_then_ticket(&srv.start(Some(TICKETS_A), None), session(&cctx, None));
    let ticket = ticket.expect("a ticket");
    let name = TicketKey::derive(TICKETS_A, DAY).unwrap().name();
    // Offsets past the key name: IV, length, sealed body, tag.
    for at in [20usize, 33, 40, 80, 120] {
        let sctx = srv.start(Some(TICKETS_A), None);
        let mut hit = false;
        let r = handshake_tampered(&sctx, session(&cctx, Some(&ticket)), |d| {
            if let Some(p) = d.windows(16).position(|w| w == name) {
                if p + at < d.len() {
                    d[p + at] ^= 0x01;
                    hit = true;
                }
            }
        });
        assert!(hit, "the ticket was not found in the ClientHello");
        if let Ok((s, c, _)) = r {
            assert!(
                !s.resumed() && !c.resumed(),
                "a modified ticket (byte {at}) resumed"
            );
        }
    }
}

/// Tickets live as long as the key's lifetime (1 day in qeaas-coapd): wolfSSL checks the age
/// sealed into the ticket against the context's session timeout, which
/// `enable_session_tickets` sets to that lifetime. The ticket is issued under a day's lifetime
/// (so the client keeps and offers it), then the server restarts with a 1 s lifetime and gets
/// it 2 s later. A check: this held from the first ticket commit on.
#[test]
fn dtls13_an_expired_ticket_does_not_resume() {
    let srv = TicketServer::new(Vec::new());
    let cctx = srv.client(None);
    let start = |life: u32| {
        let mut c = srv.start(None, None);
        c.enable_session_tickets(TicketKey::derive(TICKETS_A, life).unwrap())
            .unwrap();
        c
    };
    let (_, ticket, _) = full_then_ticket(&start(DAY), session(&cctx, None));
    let ticket = ticket.expect("a ticket");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (s, c, _) = handshake(&start(1), session(&cctx, Some(&ticket))).unwrap();
    assert!(!s.resumed() && !c.resumed(), "an expired ticket resumed");
    // The control: the same age within a day's lifetime resumes.
    let (s, _, _) = handshake(&start(DAY), session(&cctx, Some(&ticket))).unwrap();
    assert!(s.resumed());
}

/// Attack: a client that keeps resuming never authenticates again. wolfSSL gives every
/// resumed session a new ticket whose age starts over, so a chain of resumptions, each within
/// the lifetime, would keep a session of a certificate (or PSK key) alive for ever after it
/// was last shown. The lifetime must count from the full handshake: here 5 s, a first
/// resumption at 3 s (allowed, and it yields a second ticket), a second one at 6 s (refused).
///
/// Both ends count whole seconds (wolfSSL's client checks `bornOn + timeout` on its
/// `LowResTimer`, our ticket callback `unix_secs`), so a wait of `d` seconds reads as `d` or
/// `d + 1`. Each wait keeps a second of margin on both sides: 3 + 1 < 5 at each resumption's
/// start on the client, and 6 > 5 on the server. With 3 s and waits of 2 s the client could
/// read its first ticket as expired (CI saw it once).
#[test]
fn dtls13_a_chain_of_resumptions_ends_with_the_first_tickets_lifetime() {
    let srv = TicketServer::new(Vec::new());
    let cctx = srv.client(None);
    let start = || {
        let mut c = srv.start(None, None);
        c.enable_session_tickets(TicketKey::derive(TICKETS_A, 5).unwrap())
            .unwrap();
        c
    };
    let (_, first, _) = full_then_ticket(&start(), session(&cctx, None));
    let first = first.expect("a ticket");
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let (mut s, mut c, _) = handshake(&start(), session(&cctx, Some(&first))).unwrap();
    assert!(s.resumed(), "the first resumption, within the lifetime");
    echo(&mut s, &mut c);
    let second = c.resumption().expect("a ticket from the resumed session");
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let (s, c, _) = handshake(&start(), session(&cctx, Some(&second))).unwrap();
    assert!(
        !s.resumed() && !c.resumed(),
        "a ticket of a resumed session outlived the full handshake's lifetime"
    );
}
