use super::*;
use crate::coap::{tests::answer, tests::Script, FetchError};
use crate::scheduler::FallbackReason;
use alloc::vec;
use alloc::vec::Vec;
use coap_lite::{CoapOption, Packet, ResponseType};

fn node(transport: Transport) -> Node<Script> {
    Node::new(
        Instant(0),
        ClientConfig::default(),
        RefreshConfig::default(),
        transport,
        Script(vec![1, 2, 0], 0),
    )
}

/// Runs the node with nobody answering until `until`, returning how many datagrams it sent.
fn run_silent(n: &mut Node<Script>, from: u64, until: u64) -> usize {
    let mut now = from;
    let mut sent = 0;
    loop {
        n.poll(Instant(now));
        while n.poll_transmit().is_some() {
            sent += 1;
        }
        let next = n.poll_timeout().0;
        if next > until {
            return sent;
        }
        now = next.max(now);
    }
}

/// Answers the node's pending request with `f(request)`.
fn serve(n: &mut Node<Script>, now: u64, f: impl Fn(&Packet) -> Packet) {
    n.poll(Instant(now));
    let req = Packet::from_bytes(&n.poll_transmit().expect("a request")).unwrap();
    n.handle_datagram(Instant(now), &f(&req).to_bytes().unwrap());
}

#[test]
fn unreachable_server_falls_back_to_trng_only_and_keeps_serving() {
    let mut n = node(Transport::Dtls);
    assert_eq!(n.status().link, LinkState::Starting);
    // One fetch: 1 request + 4 retransmissions over 2+4+8+16+32 = 62 s (jitter 0).
    let sent = run_silent(&mut n, 0, 61_999);
    assert_eq!(sent, 5);
    n.poll(Instant(62_000));
    assert_eq!(
        n.status().link,
        LinkState::TrngOnly {
            reason: FallbackReason::Unreachable,
            failures: 1
        }
    );
    assert_eq!(n.status().fetches_failed, 1);
    // The TRNG alone still backs the device's own consumers.
    assert!(n.fill(&mut [0u8; 32]).is_err());
    n.add_trng(&[0x11; 64], 512).unwrap();
    let mut out = [0u8; 32];
    n.fill(&mut out).unwrap();
    assert_ne!(out, [0u8; 32]);
    assert_eq!(n.status().pool.server.bits_credited, 0);
    // The next attempt waits for the backoff (5 s), even though the pool is low.
    assert_eq!(n.poll_timeout(), Instant(67_000));
    n.poll(Instant(66_999));
    assert!(n.poll_transmit().is_none());
    n.poll(Instant(67_000));
    assert!(n.poll_transmit().is_some());
}

#[test]
fn recovers_when_the_server_comes_back() {
    let mut n = node(Transport::Dtls);
    run_silent(&mut n, 0, 62_000);
    assert!(matches!(n.status().link, LinkState::TrngOnly { .. }));
    serve(&mut n, 67_000, |r| {
        answer(r, ResponseType::Content, &[7; 32])
    });
    assert_eq!(n.status().link, LinkState::ServerAndTrng);
    assert_eq!(n.status().fetches_ok, 1);
}

#[test]
fn dtls_credits_server_bytes_plain_udp_does_not() {
    let mut n = node(Transport::Dtls);
    serve(&mut n, 0, |r| answer(r, ResponseType::Content, &[7; 32]));
    let s = n.status().pool;
    assert_eq!(s.server.bytes_mixed, 32);
    assert_eq!(s.server.bits_credited, 256);
    assert_eq!(s.credit_bits, 256);

    let mut n = node(Transport::PlainUdp);
    serve(&mut n, 0, |r| answer(r, ResponseType::Content, &[7; 32]));
    let s = n.status().pool;
    assert_eq!(s.server.bytes_mixed, 32, "mixed");
    assert_eq!(s.server.bits_credited, 0, "never credited over plain UDP");
    assert_eq!(n.status().link, LinkState::ServerAndTrng);
}

#[test]
fn low_pool_fetches_after_the_spacing_full_pool_waits_for_the_interval() {
    let mut n = node(Transport::Dtls);
    serve(&mut n, 0, |r| answer(r, ResponseType::Content, &[7; 32]));
    // 256 bits held: below 128 bytes, so the next fetch is due after 1 s of spacing.
    assert!(n.needs_refill());
    assert_eq!(n.poll_timeout(), Instant(1_000));
    // Fill the pool above the threshold from the TRNG: now only the 60 s refresh is due.
    n.add_trng(&[3; 128], 1024).unwrap();
    assert!(!n.needs_refill());
    assert_eq!(n.poll_timeout(), Instant(60_000));
    n.poll(Instant(59_999));
    assert!(n.poll_transmit().is_none());
    // Draining the pool below 128 bytes makes a fetch due again.
    n.fill(&mut [0u8; 32]).unwrap();
    assert!(n.needs_refill());
    n.poll(Instant(2_000));
    assert!(n.poll_transmit().is_some());
}

#[test]
fn rate_limit_holds_fetches_for_max_age() {
    let mut n = node(Transport::Dtls);
    serve(&mut n, 0, |r| {
        let mut p = answer(r, ResponseType::TooManyRequests, b"");
        p.add_option(CoapOption::MaxAge, vec![120]);
        p
    });
    assert_eq!(
        n.status().link,
        LinkState::TrngOnly {
            reason: FallbackReason::RateLimited,
            failures: 1
        }
    );
    assert_eq!(n.poll_timeout(), Instant(120_000));
    n.poll(Instant(119_999));
    assert!(n.poll_transmit().is_none());
}

#[test]
fn service_unavailable_is_reported() {
    let mut n = node(Transport::Dtls);
    serve(&mut n, 0, |r| {
        answer(r, ResponseType::ServiceUnavailable, b"")
    });
    assert_eq!(
        n.status().link,
        LinkState::TrngOnly {
            reason: FallbackReason::Unavailable,
            failures: 1
        }
    );
    // Max-Age absent: 60 s.
    assert_eq!(n.poll_timeout(), Instant(60_000));
    let _ = FetchError::Timeout;
}

#[test]
fn two_fills_never_return_the_same_bytes() {
    let mut n = node(Transport::Dtls);
    n.add_trng(&[0; 128], 1024).unwrap();
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    n.fill(&mut a).unwrap();
    n.fill(&mut b).unwrap();
    assert_ne!(a, b);
}

/// A deterministic byte stream that passes RCT and APT (xorshift64).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn trng_is_credited_only_after_startup_and_while_healthy() {
    let mut n = node(Transport::PlainUdp);
    // The start-up test needs 1024 samples: the first 1024 bytes are mixed, never credited.
    for i in 0..16 {
        assert_eq!(n.offer_trng(&noise(64, i)), Verdict::Startup, "chunk {i}");
    }
    assert_eq!(n.status().pool.credit_bits, 0);
    assert_eq!(n.offer_trng(&noise(64, 99)), Verdict::Pass);
    assert_eq!(
        n.status().pool.trng.bits_credited,
        64 * u64::from(TRNG_BITS_PER_BYTE)
    );
    // A stuck TRNG fails the RCT (cut-off 6 at 4 bits/byte) and the credit is dropped.
    let v = n.offer_trng(&[0x42; 64]);
    assert!(matches!(v, Verdict::Intermittent(_)), "{v:?}");
    assert_eq!(n.status().pool.credit_bits, 0);
    assert_eq!(n.status().trng_health.rct_failures, 1);
    assert!(n.fill(&mut [0u8; 1]).is_err());
    // And the next chunks are back in start-up.
    assert_eq!(n.offer_trng(&noise(64, 7)), Verdict::Startup);
}
