//! The DTLS/CoAP server state machine without sockets or daemon: in-memory wolfSSL clients,
//! datagrams passed by hand, time passed by hand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use qeaas_coap::coap::Unavailable;
use qeaas_coap::server::{Limits, Out, Server};
use qeaas_wolfssl_sys::{Context, Group, Progress, Role, Session, Version};

fn limits() -> Limits {
    Limits {
        max_bytes: 64,
        max_sessions: 4,
        max_handshakes: 1,
        idle: Duration::from_secs(30),
        handshake: Duration::from_secs(5),
    }
}

fn server(l: Limits) -> Server {
    let mut ctx = Context::new(Role::Server, Version::Any).unwrap();
    ctx.set_psk_server(HashMap::from([(b"id".to_vec(), b"key".to_vec())]));
    Server::new(ctx, vec![7; 32], l)
}

fn client(port: u16) -> (SocketAddr, Session) {
    let mut c = Context::new(Role::Client, Version::Dtls13).unwrap();
    c.set_psk_client(b"id", b"key");
    c.set_groups(&[Group::MlKem512]).unwrap();
    let mut s = Session::new(&c, "127.0.0.1:5684".parse().unwrap()).unwrap();
    s.use_key_share(Group::MlKem512).unwrap();
    (SocketAddr::from(([127, 0, 0, 1], port)), s)
}

/// Delivers the client's datagrams; returns what the server sent back and any fetches.
fn step(srv: &mut Server, from: SocketAddr, c: &mut Session, now: Instant) -> (usize, Vec<Out>) {
    let mut sent = 0;
    let mut fetches = Vec::new();
    for d in c.take_datagrams() {
        for o in srv.on_datagram(from, &d, now) {
            match o {
                Out::Send(to, d) => {
                    assert_eq!(to, from);
                    sent += 1;
                    c.feed(&d);
                }
                f => fetches.push(f),
            }
        }
    }
    (sent, fetches)
}

fn handshake(srv: &mut Server, from: SocketAddr, c: &mut Session, now: Instant) -> bool {
    for _ in 0..10 {
        if c.handshake().unwrap() == Progress::Done {
            step(srv, from, c, now);
            return true;
        }
        step(srv, from, c, now);
    }
    false
}

#[test]
fn a_client_hello_without_cookie_gets_a_retry_and_leaves_no_state() {
    let mut srv = server(limits());
    let (a, mut c) = client(40000);
    assert_eq!(c.handshake().unwrap(), Progress::WantRead);
    let (sent, _) = step(&mut srv, a, &mut c, Instant::now());
    assert_eq!(sent, 1, "one HelloRetryRequest");
    assert_eq!(srv.peers(), 0, "state kept before the cookie");
    // The cookie comes back from the same address: now there is a session.
    c.handshake().unwrap();
    step(&mut srv, a, &mut c, Instant::now());
    assert_eq!(srv.peers(), 1);
}

#[test]
fn a_cookie_replayed_from_another_address_is_worthless() {
    let mut srv = server(limits());
    let (a, mut c) = client(40001);
    c.handshake().unwrap();
    step(&mut srv, a, &mut c, Instant::now());
    c.handshake().unwrap();
    // The second ClientHello (with the cookie) arrives from a spoofed address.
    let spoofed = SocketAddr::from(([127, 0, 0, 2], 40001));
    for d in c.take_datagrams() {
        srv.on_datagram(spoofed, &d, Instant::now());
    }
    assert_eq!(srv.peers(), 0);
}

#[test]
fn handshakes_in_flight_are_capped_and_expire() {
    let mut srv = server(limits());
    let t0 = Instant::now();
    let (a, mut ca) = client(40002);
    let (b, mut cb) = client(40003);
    for (addr, c) in [(a, &mut ca), (b, &mut cb)] {
        c.handshake().unwrap();
        step(&mut srv, addr, c, t0);
        c.handshake().unwrap();
        // Deliver only the ClientHello with the cookie: the handshake stays in flight.
        for d in c.take_datagrams() {
            srv.on_datagram(addr, &d, t0);
        }
    }
    assert_eq!(srv.peers(), 1, "max_handshakes = 1");
    srv.on_tick(t0 + Duration::from_secs(6));
    assert_eq!(srv.peers(), 0, "the stalled handshake expired");
    assert_eq!(srv.counters().failed, 1);
}

fn get(mid: u16, query: Option<&str>) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.add_option(CoapOption::UriPath, b"entropy".to_vec());
    if let Some(q) = query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p.to_bytes().unwrap()
}

#[test]
fn entropy_is_fetched_once_per_request_and_duplicates_are_replayed() {
    let mut srv = server(limits());
    let now = Instant::now();
    let (a, mut c) = client(40004);
    assert!(handshake(&mut srv, a, &mut c, now));
    assert_eq!(srv.counters().handshakes, 1);

    c.write(&get(1, Some("n=48"))).unwrap();
    let (_, fetches) = step(&mut srv, a, &mut c, now);
    let [Out::Fetch(f)] = <[Out; 1]>::try_from(fetches).unwrap() else {
        panic!()
    };
    assert_eq!(f.exchange.n, 48);
    for o in srv.complete(f, Ok(vec![0x5a; 48]), now) {
        if let Out::Send(_, d) = o {
            c.feed(&d);
        }
    }
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap().unwrap();
    let p = Packet::from_bytes(&buf[..n]).unwrap();
    assert_eq!(p.payload, vec![0x5a; 48]);
    assert_eq!(srv.counters().bytes_served, 48);

    // Same message id again: the cached answer, no fetch.
    c.write(&get(1, Some("n=48"))).unwrap();
    let (_, fetches) = step(&mut srv, a, &mut c, now);
    assert!(fetches.is_empty());
    let n = c.read(&mut buf).unwrap().unwrap();
    assert_eq!(
        Packet::from_bytes(&buf[..n]).unwrap().payload,
        vec![0x5a; 48]
    );

    // The daemon refuses: 5.03, nothing counted as served.
    c.write(&get(2, None)).unwrap();
    let (_, fetches) = step(&mut srv, a, &mut c, now);
    let [Out::Fetch(f)] = <[Out; 1]>::try_from(fetches).unwrap() else {
        panic!()
    };
    for o in srv.complete(f, Err(Unavailable), now) {
        if let Out::Send(_, d) = o {
            c.feed(&d);
        }
    }
    let n = c.read(&mut buf).unwrap().unwrap();
    assert_eq!(
        Packet::from_bytes(&buf[..n]).unwrap().header.code,
        MessageClass::Response(ResponseType::ServiceUnavailable)
    );
    assert_eq!(srv.counters().bytes_served, 48);

    // Idle sessions are closed.
    srv.on_tick(now + Duration::from_secs(31));
    assert_eq!(srv.peers(), 0);
}

#[test]
fn two_peers_interleaved_before_their_cookies_share_the_listener() {
    let mut srv = server(Limits {
        max_handshakes: 4,
        ..limits()
    });
    let now = Instant::now();
    let (a, mut ca) = client(40010);
    let (b, mut cb) = client(40011);
    ca.handshake().unwrap();
    cb.handshake().unwrap();
    assert_eq!(step(&mut srv, a, &mut ca, now).0, 1);
    assert_eq!(step(&mut srv, b, &mut cb, now).0, 1);
    assert_eq!(srv.peers(), 0);
    // Each answers its own retry; both cookies verify against the one listener secret.
    assert!(handshake(&mut srv, b, &mut cb, now));
    assert!(handshake(&mut srv, a, &mut ca, now));
    assert_eq!(srv.peers(), 2);
    assert_eq!(srv.counters().handshakes, 2);
}

fn answers(outs: Vec<Out>, c: &mut Session) -> Vec<Packet> {
    for o in outs {
        if let Out::Send(_, d) = o {
            c.feed(&d);
        }
    }
    let mut buf = [0u8; 512];
    let mut v = Vec::new();
    while let Some(n) = c.read(&mut buf).unwrap() {
        v.push(Packet::from_bytes(&buf[..n]).unwrap());
    }
    v
}

#[test]
fn fetches_run_side_by_side_complete_out_of_order_and_retransmissions_wait() {
    let mut srv = server(limits());
    let now = Instant::now();
    let (a, mut c) = client(40020);
    assert!(handshake(&mut srv, a, &mut c, now));
    // Two requests before the daemon answers either: two fetches out, nothing sent yet.
    c.write(&get(1, None)).unwrap();
    c.write(&get(2, None)).unwrap();
    let (_, fetches) = step(&mut srv, a, &mut c, now);
    let [Out::Fetch(f1), Out::Fetch(f2)] = <[Out; 2]>::try_from(fetches).unwrap() else {
        panic!()
    };
    // A retransmission of 1 while it waits: no second fetch (no pool bytes drawn twice).
    c.write(&get(1, None)).unwrap();
    let (_, fetches) = step(&mut srv, a, &mut c, now);
    assert!(fetches.is_empty());
    // The daemon answers 2 first.
    let r2 = answers(srv.complete(f2, Ok(vec![2; 32]), now), &mut c);
    assert_eq!((r2[0].header.message_id, &r2[0].payload), (2, &vec![2; 32]));
    let r1 = answers(srv.complete(f1, Ok(vec![1; 32]), now), &mut c);
    assert_eq!((r1[0].header.message_id, &r1[0].payload), (1, &vec![1; 32]));
    // Now 1 is answered: its retransmission gets the cached response, still no fetch.
    c.write(&get(1, None)).unwrap();
    let (_, fetches) = step(&mut srv, a, &mut c, now);
    assert!(fetches.is_empty());
    assert_eq!(answers(vec![], &mut c)[0].payload, vec![1; 32]);
    assert_eq!(srv.counters().bytes_served, 64);
}

#[test]
fn one_peer_cannot_queue_more_than_max_pending_fetches() {
    let mut srv = server(limits());
    let now = Instant::now();
    let (a, mut c) = client(40021);
    assert!(handshake(&mut srv, a, &mut c, now));
    let max = qeaas_coap::coap::MAX_PENDING as u16;
    let mut fetches = Vec::new();
    for mid in 0..max + 3 {
        c.write(&get(100 + mid, None)).unwrap();
        fetches.extend(step(&mut srv, a, &mut c, now).1);
    }
    assert_eq!(fetches.len(), usize::from(max));
    let over = answers(vec![], &mut c);
    assert_eq!(over.len(), 3);
    assert!(over
        .iter()
        .all(|p| p.header.code == MessageClass::Response(ResponseType::ServiceUnavailable)));
    // Answering one frees a slot.
    let Some(Out::Fetch(f)) = fetches.pop() else {
        panic!()
    };
    answers(srv.complete(f, Ok(vec![0; 32]), now), &mut c);
    c.write(&get(999, None)).unwrap();
    assert_eq!(step(&mut srv, a, &mut c, now).1.len(), 1);
}

#[test]
fn an_answer_for_an_ended_session_never_reaches_a_new_session_at_the_same_address() {
    let mut srv = server(limits());
    let now = Instant::now();
    let (a, mut c1) = client(40030);
    assert!(handshake(&mut srv, a, &mut c1, now));
    c1.write(&get(1, None)).unwrap();
    let (_, fetches) = step(&mut srv, a, &mut c1, now);
    let [Out::Fetch(f)] = <[Out; 1]>::try_from(fetches).unwrap() else {
        panic!()
    };
    // The session idles out while the daemon is slow; a new client takes the same address.
    let later = now + Duration::from_secs(31);
    srv.on_tick(later);
    assert_eq!(srv.peers(), 0);
    let (_, mut c2) = client(40030);
    assert!(handshake(&mut srv, a, &mut c2, later));
    assert_eq!(srv.peers(), 1);
    // The old request's bytes are dropped, not sent to the newcomer nor counted as served.
    assert!(srv.complete(f, Ok(vec![9; 32]), later).is_empty());
    assert_eq!(srv.counters().bytes_served, 0);
}
