//! A client that restarts without closing its session (a device reboot, a killed process) and
//! comes back from the same address and port must get in at once, not after the old session's
//! idle expiry; yet nothing but a verified cookie may end the old session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qeaas_coap::server::{Limits, Out, Server};
use qeaas_wolfssl_sys::{Context, Group, Progress, Role, Session, Version};

fn server() -> Server {
    let mut ctx = Context::new(Role::Server, Version::Any).unwrap();
    ctx.set_psk_server(HashMap::from([(b"id".to_vec(), b"key".to_vec())]));
    let l = Limits {
        max_bytes: 64,
        max_sessions: 4,
        max_handshakes: 2,
        idle: Duration::from_secs(120),
        handshake: Duration::from_secs(5),
    };
    Server::new(ctx, vec![7; 32], l)
}

fn client(v: Version) -> Session {
    let mut c = Context::new(Role::Client, v).unwrap();
    c.set_psk_client(b"id", b"key");
    if v == Version::Dtls13 {
        c.set_groups(&[Group::X25519]).unwrap();
    }
    Session::new(&c, "127.0.0.1:5684".parse().unwrap()).unwrap()
}

/// Runs the handshake with every datagram also kept in `sent`; whether it completed.
fn handshake(srv: &mut Server, from: SocketAddr, c: &mut Session, sent: &mut Vec<Vec<u8>>) -> bool {
    let now = Instant::now();
    for _ in 0..10 {
        if c.handshake().unwrap() == Progress::Done {
            return true;
        }
        for d in c.take_datagrams() {
            sent.push(d.clone());
            for o in srv.on_datagram(from, &d, now) {
                if let Out::Send(to, d) = o {
                    assert_eq!(to, from);
                    c.feed(&d);
                }
            }
        }
    }
    false
}

/// A CON GET /entropy through `c`; whether a response came back.
fn get(srv: &mut Server, from: SocketAddr, c: &mut Session, mid: u8) -> bool {
    let now = Instant::now();
    let req = [
        0x40, 0x01, 0x00, mid, 0xb7, b'e', b'n', b't', b'r', b'o', b'p', b'y',
    ];
    c.write(&req).unwrap();
    for d in c.take_datagrams() {
        let mut q: Vec<Out> = srv.on_datagram(from, &d, now);
        while let Some(o) = q.pop() {
            match o {
                Out::Send(_, d) => c.feed(&d),
                Out::Fetch(f) => q.extend(srv.complete(f, Ok(vec![1; 32].into()), now)),
            }
        }
    }
    let mut buf = [0u8; 2048];
    matches!(c.read(&mut buf), Ok(Some(_)))
}

#[test]
fn a_restarted_client_on_the_same_address_gets_a_new_session() {
    for v in [Version::Dtls12, Version::Dtls13] {
        let mut srv = server();
        let from = SocketAddr::from(([127, 0, 0, 1], 40000));
        let mut first_flights = Vec::new();
        let mut a = client(v);
        assert!(
            handshake(&mut srv, from, &mut a, &mut first_flights),
            "{v:?}"
        );
        assert!(get(&mut srv, from, &mut a, 1), "{v:?}");

        // Late retransmissions of the first session's hellos (one with a valid cookie) are
        // not a new client: the session survives them.
        for d in first_flights.iter().take(2) {
            srv.on_datagram(from, d, Instant::now());
        }
        assert_eq!(srv.peers(), 1);
        assert!(
            get(&mut srv, from, &mut a, 2),
            "{v:?}: retransmitted hello ended the session"
        );

        // The client restarts: same address, new session, no close_notify.
        let mut b = client(v);
        assert!(
            handshake(&mut srv, from, &mut b, &mut Vec::new()),
            "{v:?}: restarted client locked out"
        );
        assert_eq!(srv.peers(), 1, "{v:?}: the old session is replaced");
        assert!(get(&mut srv, from, &mut b, 3), "{v:?}");
        assert_eq!(srv.counters().handshakes, 2);
    }
}

#[test]
fn a_hello_without_cookie_does_not_end_a_session() {
    let mut srv = server();
    let from = SocketAddr::from(([127, 0, 0, 1], 40001));
    let mut a = client(Version::Dtls12);
    assert!(handshake(&mut srv, from, &mut a, &mut Vec::new()));
    // Another client's first ClientHello, as an off-path sender could spoof it.
    let mut x = client(Version::Dtls12);
    assert_eq!(x.handshake().unwrap(), Progress::WantRead);
    for d in x.take_datagrams() {
        srv.on_datagram(from, &d, Instant::now());
    }
    assert_eq!(srv.peers(), 1);
    assert!(
        get(&mut srv, from, &mut a, 1),
        "the session ended on an unverified hello"
    );
}
