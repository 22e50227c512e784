//! A flood of ClientHellos that never return their cookie, from hundreds of UDP sockets, against
//! qeaas-coapd in front of a real qeaasd: no state is kept, no answer is larger than the
//! datagram that drew it (no amplification), its memory stays bounded, and real clients (our
//! DTLS 1.3 one, coap-client-gnutls) still get in. And the smallest ClientHello that asks for
//! a HelloRetryRequest, crafted by hand, draws nothing larger than itself.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::dtls::Dtls13;
use common::*;
use qeaas_wolfssl_sys::{Context, Group, Progress, Role, Session, Version};

const SOCKETS: usize = 600;
const ROUNDS: usize = 5;

/// First flights of fresh client sessions: DTLS 1.2 PSK (small, as libcoap sends) and DTLS 1.3
/// with an ML-KEM-512 key share (large). Each is a real ClientHello without a cookie.
fn client_hellos(to: SocketAddr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..40 {
        let (version, group) = if i % 2 == 0 {
            (Version::Dtls12, None)
        } else {
            (Version::Dtls13, Some(Group::MlKem512))
        };
        let mut ctx = Context::new(Role::Client, version).unwrap();
        ctx.set_psk_client(ID.as_bytes(), KEY.as_bytes());
        if let Some(g) = group {
            ctx.set_groups(&[g]).unwrap();
        }
        let mut s = Session::new(&ctx, to).unwrap();
        if let Some(g) = group {
            s.use_key_share(g).unwrap();
        }
        assert_eq!(s.handshake().unwrap(), Progress::WantRead);
        let d = s.take_datagrams();
        assert_eq!(d.len(), 1, "one ClientHello datagram");
        out.extend(d);
    }
    out
}

fn rss_kib(pid: u32, key: &str) -> u64 {
    proc_status(pid, key)
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} of {pid}"))
}

/// The last `counters` line of the frontend's log, as (key, value) pairs.
fn last_counters(log: &str) -> Vec<(String, u64)> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("counters"))
        .expect("a counters line");
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(c: &[(String, u64)], k: &str) -> u64 {
    c.iter()
        .find(|(n, _)| n == k)
        .unwrap_or_else(|| panic!("{k} in {c:?}"))
        .1
}

#[test]
fn a_client_hello_flood_keeps_no_state_amplifies_nothing_and_locks_nobody_out() {
    let s = Stack::start(|_| String::new());
    let pid = s.coapd.pid();
    let server: SocketAddr = ([127, 0, 0, 1], s.port).into();
    // Warm up with one real session so the baseline includes a served request.
    let mut c = Dtls13::connect(s.port, Group::X25519, KEY).expect("handshake before");
    assert_eq!(c.get(1, "entropy").payload.len(), 32);
    drop(c);
    let rss_before = rss_kib(pid, "VmRSS:");

    let hellos = client_hellos(server);
    let socks: Vec<UdpSocket> = (0..SOCKETS)
        .map(|_| {
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            u.set_nonblocking(true).unwrap();
            u
        })
        .collect();
    let (mut sent, mut received, mut answers) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 4096];
    // Each socket always sends the same hello, so every answer it gets can be held against the
    // size of the datagram that drew it.
    let mut largest_answer = vec![0usize; SOCKETS];
    let mut drain = |socks: &[UdpSocket], received: &mut u64, answers: &mut u64| {
        for (i, u) in socks.iter().enumerate() {
            while let Ok(n) = u.recv(&mut buf) {
                *received += n as u64;
                *answers += 1;
                largest_answer[i] = largest_answer[i].max(n);
            }
        }
    };
    for _round in 0..ROUNDS {
        for (i, u) in socks.iter().enumerate() {
            let h = &hellos[i % hellos.len()];
            sent += u.send_to(h, server).unwrap() as u64;
            if i % 50 == 49 {
                // Paced so that the kernel's receive queue holds them: the frontend must
                // really answer the flood, not just miss it.
                std::thread::sleep(Duration::from_millis(5));
                drain(&socks, &mut received, &mut answers);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    drain(&socks, &mut received, &mut answers);
    let datagrams = (SOCKETS * ROUNDS) as u64;
    eprintln!(
        "flood: {datagrams} ClientHellos, {sent} B sent; {answers} answers, {received} B received"
    );
    // The flood was served (cookie requests came back), and amplified nothing.
    // (A quarter at least: a loaded machine may drop some from the socket queue.)
    assert!(
        answers * 4 > datagrams,
        "only {answers} of {datagrams} hellos answered"
    );
    assert!(
        received <= sent,
        "amplification: {received} B out for {sent} B in"
    );
    // And per datagram: no answer larger than the hello that drew it.
    for (i, &n) in largest_answer.iter().enumerate() {
        let h = hellos[i % hellos.len()].len();
        assert!(n <= h, "a {h}-byte ClientHello drew a {n}-byte answer");
    }

    // The frontend's own accounting agrees: no session, no handshake, no amplification.
    // (The line is logged on the next tick after a change; wait for the whole flood in it.)
    wait_until(Duration::from_secs(5), || {
        let c = s.log();
        c.contains("counters") && get(&last_counters(&c), "unverified_in") >= sent
    });
    let c = last_counters(&s.log());
    eprintln!("frontend counters: {c:?}");
    assert!(get(&c, "unverified_in") >= received);
    // The one peer is the warm-up client (idle, not yet expired).
    assert_eq!(get(&c, "peers"), 1);
    assert_eq!(get(&c, "handshaking"), 0);
    assert!(get(&c, "unverified_out") <= get(&c, "unverified_in"));
    // Only the warm-up client ever got a session.
    assert_eq!(s.log().matches("cookie verified").count(), 1);

    // Memory: the flood left no per-peer allocation behind.
    let rss_after = rss_kib(pid, "VmRSS:");
    eprintln!("frontend RSS: {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(rss_kib(pid, "VmHWM:") < 64 * 1024, "peak RSS above 64 MiB");

    // And a real client still gets fresh pool bytes.
    let before = s.served_to_frontend();
    let mut c = Dtls13::connect(s.port, Group::MlKem512, KEY).expect("handshake after the flood");
    assert_eq!(c.get(2, "entropy").payload.len(), 32);
    assert_eq!(s.served_to_frontend() - before, 32);
    drop(c);

    // A legitimate libcoap client (DTLS 1.2 PSK, GnuTLS) too.
    if require(
        have("coap-client-gnutls"),
        "coap-client-gnutls (libcoap3-bin)",
    ) {
        let before = s.served_to_frontend();
        let b = s
            .coap_client("coap-client-gnutls", ID, KEY, "entropy")
            .expect("coap-client-gnutls got nothing after the flood");
        assert_eq!(b.len(), 32, "{b:?}");
        assert_eq!(s.served_to_frontend() - before, 32);
    }
}

/// The smallest DTLS 1.3 ClientHello that makes a server ask for a retry: one suite, X25519 as
/// the only group and no key share, so the server must answer with a HelloRetryRequest (cookie
/// and group). 98 bytes.
fn tiny_dtls13_client_hello() -> Vec<u8> {
    let mut ext = Vec::new();
    // supported_versions: DTLS 1.3.
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0xfe, 0xfc]);
    // supported_groups: x25519.
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]);
    // key_share: no share.
    ext.extend_from_slice(&[0x00, 0x33, 0x00, 0x02, 0x00, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256.
    ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03]);
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.extend_from_slice(&[0, 0]); // empty session id and cookie
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let len = body.len() as u32;
    let mut hs = vec![1];
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&[0, 0, 0, 0, 0]); // message_seq, fragment_offset
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[test]
fn a_tiny_client_hello_draws_no_larger_answer() {
    let s = Stack::start(|_| String::new());
    let hello = tiny_dtls13_client_hello();
    assert_eq!(hello.len(), 98);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4096];
    for attempt in 0..3 {
        u.send_to(&hello, ("127.0.0.1", s.port)).unwrap();
        let mut got = Vec::new();
        while let Ok(n) = u.recv(&mut buf) {
            got.push(n);
        }
        eprintln!(
            "attempt {attempt}: {} B ClientHello drew {got:?}",
            hello.len()
        );
        let total: usize = got.iter().sum();
        assert!(
            total <= hello.len(),
            "a {} B ClientHello drew {total} B before any cookie ({got:?})",
            hello.len()
        );
    }
    // The frontend saw it, and still serves real clients.
    let mut c = Dtls13::connect(s.port, Group::X25519, KEY).expect("handshake after");
    assert_eq!(c.get(1, "entropy").payload.len(), 32);
}
