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
    for o in srv.complete(f, Ok(vec![0x5a; 48].into()), now) {
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
    let r2 = answers(srv.complete(f2, Ok(vec![2; 32].into()), now), &mut c);
    assert_eq!((r2[0].header.message_id, &r2[0].payload), (2, &vec![2; 32]));
    let r1 = answers(srv.complete(f1, Ok(vec![1; 32].into()), now), &mut c);
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
    answers(srv.complete(f, Ok(vec![0; 32].into()), now), &mut c);
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
    assert!(srv.complete(f, Ok(vec![9; 32].into()), later).is_empty());
    assert_eq!(srv.counters().bytes_served, 0);
}

/// Sends `req` from `c`; the fetch it caused (answered with `bytes`) and the answer.
#[track_caller]
fn ask(
    srv: &mut Server,
    from: SocketAddr,
    c: &mut Session,
    req: &[u8],
    bytes: Option<Vec<u8>>,
    now: Instant,
) -> (usize, Packet) {
    c.write(req).unwrap();
    let (_, fetches) = step(srv, from, c, now);
    let n = fetches.len();
    for f in fetches {
        let Out::Fetch(f) = f else { panic!() };
        assert_eq!(Some(f.exchange.n), bytes.as_ref().map(Vec::len));
        for o in srv.complete(f, Ok(bytes.clone().unwrap().into()), now) {
            if let Out::Send(_, d) = o {
                c.feed(&d);
            }
        }
    }
    let mut buf = [0u8; 2048];
    let len = c.read(&mut buf).unwrap().expect("an answer");
    (n, Packet::from_bytes(&buf[..len]).unwrap())
}

fn block_get(mid: u16, num: u32, etag: Option<&[u8]>) -> Vec<u8> {
    let mut p = Packet::from_bytes(&get(mid, Some("n=64"))).unwrap();
    p.add_option(
        CoapOption::Block2,
        qeaas_coap::block::Block2 {
            num,
            more: false,
            szx: 1,
        }
        .encode(),
    );
    if let Some(e) = etag {
        p.add_option(CoapOption::ETag, e.to_vec());
    }
    p.to_bytes().unwrap()
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

#[test]
fn block2_bodies_are_fetched_once_capped_wiped_and_quota_counted_at_block_0() {
    use qeaas_coap::block::Block2;
    use qeaas_coap::quota::{Limit, Quotas};
    use qeaas_coap::server::BlockLimits;
    let mut srv = server(limits());
    // 32-byte blocks, 100 bytes stored at most across sessions; 3 requests per minute.
    srv.set_blocks(BlockLimits {
        szx: 1,
        store_bytes: 100,
        life: Duration::from_secs(20),
    });
    srv.set_quotas(Quotas::new(
        Some(Limit {
            window: Duration::from_secs(60),
            bytes: None,
            requests: Some(3),
        }),
        HashMap::new(),
    ));
    let t = Instant::now();
    let (a, mut ca) = client(40010);
    let (b, mut cb) = client(40011);
    assert!(handshake(&mut srv, a, &mut ca, t));
    assert!(handshake(&mut srv, b, &mut cb, t));
    let body: Vec<u8> = (0..64).collect();

    // A: block 0 fetches the whole body once.
    let (fetched, p) = ask(
        &mut srv,
        a,
        &mut ca,
        &get(1, Some("n=64")),
        Some(body.clone()),
        t,
    );
    assert_eq!(fetched, 1);
    assert_eq!(code(&p), MessageClass::Response(ResponseType::Content));
    let blk = Block2::parse(p.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((blk.num, blk.more, blk.szx), (0, true, 1));
    assert_eq!(p.payload, body[..32]);
    let etag = p.get_first_option(CoapOption::ETag).unwrap().clone();
    assert_eq!(srv.stored_bytes(), 64);

    // B: no room under the global cap: 5.03 at once, nothing fetched, no quota used.
    let (fetched, p) = ask(&mut srv, b, &mut cb, &get(1, Some("n=64")), None, t);
    assert_eq!(fetched, 0);
    assert_eq!(
        code(&p),
        MessageClass::Response(ResponseType::ServiceUnavailable)
    );
    // B asking for A's next block gets nothing of A's body.
    let (fetched, p) = ask(&mut srv, b, &mut cb, &block_get(2, 1, None), None, t);
    assert_eq!(fetched, 0);
    assert_eq!(
        code(&p),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
    assert!(p.payload.iter().all(|x| x.is_ascii()));

    // A: a wrong ETag or another query gets 4.08; the right block ends the transfer.
    let (_, p) = ask(
        &mut srv,
        a,
        &mut ca,
        &block_get(2, 1, Some(b"nope")),
        None,
        t,
    );
    assert_eq!(
        code(&p),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
    let (fetched, p) = ask(&mut srv, a, &mut ca, &block_get(3, 1, Some(&etag)), None, t);
    assert_eq!(fetched, 0);
    assert_eq!(p.payload, body[32..]);
    let blk = Block2::parse(p.get_first_option(CoapOption::Block2).unwrap()).unwrap();
    assert_eq!((blk.num, blk.more), (1, false));
    assert_eq!(srv.stored_bytes(), 0, "wiped after the last block");
    let (_, p) = ask(&mut srv, a, &mut ca, &block_get(4, 1, None), None, t);
    assert_eq!(
        code(&p),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );

    // B now fits; its body expires unfinished and is wiped.
    let (fetched, _) = ask(
        &mut srv,
        b,
        &mut cb,
        &get(5, Some("n=64")),
        Some(vec![7; 64]),
        t,
    );
    assert_eq!(fetched, 1);
    assert_eq!(srv.stored_bytes(), 64);
    // Within the idle timeout (30 s), past the body's life (20 s).
    let later = t + Duration::from_secs(21);
    srv.on_tick(later);
    assert_eq!(srv.stored_bytes(), 0, "wiped at expiry");
    let (_, p) = ask(&mut srv, b, &mut cb, &block_get(6, 1, None), None, later);
    assert_eq!(
        code(&p),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );

    // Quota: identity "id" used 2 requests (the block-wise ones, once each); a third passes,
    // the fourth gets 4.29 with Max-Age = the 39 s left of the window, and nothing fetched.
    let (fetched, _) = ask(
        &mut srv,
        a,
        &mut ca,
        &get(7, Some("n=8")),
        Some(vec![1; 8]),
        later,
    );
    assert_eq!(fetched, 1);
    let (fetched, p) = ask(&mut srv, a, &mut ca, &get(8, Some("n=8")), None, later);
    assert_eq!(fetched, 0);
    assert_eq!(
        code(&p),
        MessageClass::Response(ResponseType::TooManyRequests)
    );
    assert_eq!(p.get_first_option(CoapOption::MaxAge).unwrap(), &vec![39]);
    assert_eq!(srv.counters().over_quota, 1);
    // After the window the identity is served again.
    let (fetched, p) = ask(
        &mut srv,
        a,
        &mut ca,
        &get(9, Some("n=8")),
        Some(vec![2; 8]),
        t + Duration::from_secs(60),
    );
    assert_eq!(fetched, 1);
    assert_eq!(p.payload, vec![2; 8]);
}
