use super::*;
use crate::coap::{tests::answer, tests::Script, FetchError};
use crate::scheduler::FallbackReason;
use alloc::vec;
use alloc::vec::Vec;
use coap_lite::{CoapOption, Packet, ResponseType};
use qeaas_core::device_pool::DEVICE_CREDIT_CAP_BITS;

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
    // The next attempt waits for the backoff, even though the pool is low: 5 s jittered over
    // [2.5 s, 7.5 s), so 2.5 s with this script's random value 0.
    assert_eq!(n.poll_timeout(), Instant(64_500));
    n.poll(Instant(64_499));
    assert!(n.poll_transmit().is_none());
    n.poll(Instant(64_500));
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
    // 256 bits held: less than one full block, so the next fetch is due after 1 s of spacing.
    assert!(n.needs_refill());
    assert_eq!(n.poll_timeout(), Instant(1_000));
    // Fill the pool to its cap from the TRNG: now only the refresh is due, 60 s jittered over
    // [45 s, 75 s), so 45 s with this script's random value 0.
    assert_eq!(n.add_trng(&[3; 128], 1024), Ok(64));
    assert!(!n.needs_refill());
    assert_eq!(n.poll_timeout(), Instant(45_000));
    n.poll(Instant(44_999));
    assert!(n.poll_transmit().is_none());
    // Drawing a block makes a fetch due again.
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
    n.add_trng(&[0; 40], 320).unwrap();
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    n.fill(&mut a).unwrap();
    n.add_trng(&[0; 40], 320).unwrap();
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
    // Then each chunk is credited once 1024 more healthy bytes followed it.
    for i in 0..17 {
        assert_eq!(n.offer_trng(&noise(64, 99 + i)), Verdict::Pass);
    }
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

/// The daemon's hold-back rule on the TRNG path: a chunk's credit becomes usable only once the
/// next two APT windows (1024 byte samples) have passed the health tests too, so a fault the
/// tests see late has not yet backed any output. The pool is drained after every chunk, so the
/// credit cap cannot hide credit granted too early.
#[test]
fn trng_credit_waits_for_the_next_two_apt_windows() {
    let mut n = node(Transport::PlainUdp);
    for i in 0..16 {
        assert_eq!(n.offer_trng(&noise(64, i)), Verdict::Startup);
    }
    let mut passed = 0u64;
    let mut served = 0u64;
    let drain = |n: &mut Node<Script>| {
        let mut out = 0;
        let mut b = [0u8; 32];
        while n.fill(&mut b).is_ok() {
            out += 32;
        }
        out
    };
    for i in 0..20u64 {
        assert_eq!(n.offer_trng(&noise(64, 100 + i)), Verdict::Pass);
        passed += 64;
        served += drain(&mut n);
        let credited = n.status().pool.trng.bits_credited;
        let released = passed.saturating_sub(1024);
        assert!(
            credited <= u64::from(TRNG_BITS_PER_BYTE) * released,
            "after {passed} healthy bytes {credited} bits were credited; only {released} \
             bytes are older than the hold-back"
        );
    }
    // The TRNG sticks: the RCT fails at once, and the 1024 bytes still held (which a slower
    // fault could have spoiled) never back any output.
    let credited = n.status().pool.trng.bits_credited;
    assert!(matches!(
        n.offer_trng(&[0x42; 64]),
        Verdict::Intermittent(_)
    ));
    served += drain(&mut n);
    assert_eq!(n.status().pool.trng.bits_credited, credited);
    assert!(
        8 * served + 64 * served.div_ceil(32) <= credited,
        "{served} bytes served"
    );
    // Healthy bytes after a new start-up are credited again, once held back long enough.
    for i in 0..16 {
        n.offer_trng(&noise(64, 300 + i));
    }
    for i in 0..20 {
        assert_eq!(n.offer_trng(&noise(64, 400 + i)), Verdict::Pass);
    }
    assert!(n.status().pool.trng.bits_credited > credited);
}

/// A simulated server for `GET /entropy`: piggybacked 2.05 answers, block-wise in 64-byte blocks
/// when the body is longer; counts the copies of each message id it receives.
struct SimServer {
    body_len: usize,
    next: u8,
    seen: alloc::collections::BTreeMap<u16, u32>,
}

impl SimServer {
    fn serve(&mut self, d: &[u8]) -> Vec<u8> {
        let req = Packet::from_bytes(d).expect("node sends valid CoAP");
        *self.seen.entry(req.header.message_id).or_default() += 1;
        let num = req.get_first_option(CoapOption::Block2).map_or(0, |v| {
            v.iter().fold(0u32, |a, b| a << 8 | u32::from(*b)) >> 4
        }) as usize;
        let body: Vec<u8> = (0..self.body_len)
            .map(|i| self.next.wrapping_add(i as u8))
            .collect();
        let start = (num * 64).min(body.len());
        let end = (start + 64).min(body.len());
        let mut p = answer(&req, ResponseType::Content, &body[start..end]);
        if self.body_len > 64 {
            let more = end < body.len();
            let v = (num as u32) << 4 | u32::from(more) << 3 | 2;
            p.add_option(CoapOption::Block2, crate::coap::tests::encode(v));
            if !more {
                self.next = self.next.wrapping_add(1);
            }
        } else {
            self.next = self.next.wrapping_add(1);
        }
        p.to_bytes().unwrap()
    }
}

/// Runs a node against the simulated server for `duration_ms` of simulated time, losing each
/// datagram (either direction) with probability `loss_pct`%. Returns the node and the server.
fn run_lossy(body_len: usize, loss_pct: u64, duration_ms: u64) -> (Node<Script>, SimServer) {
    let mut n = node(Transport::Dtls);
    let mut server = SimServer {
        body_len,
        next: 0,
        seen: Default::default(),
    };
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut lose = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 100 < loss_pct
    };
    let mut now = 0u64;
    for _ in 0..1_000_000 {
        if now >= duration_ms {
            break;
        }
        n.poll(Instant(now));
        let mut replies = vec![];
        while let Some(d) = n.poll_transmit() {
            if !lose() {
                let r = server.serve(&d);
                if !lose() {
                    replies.push(r);
                }
            }
        }
        for r in replies {
            now += 10;
            n.handle_datagram(Instant(now), &r);
        }
        now = n.poll_timeout().0.max(now);
    }
    assert!(now >= duration_ms, "the simulation made progress");
    (n, server)
}

#[test]
fn lossy_network_fetches_succeed_with_retransmissions() {
    let (n, server) = run_lossy(32, 30, 3_600_000);
    let s = n.status();
    // Nobody drains the pool, so after it fills up fetches follow the 60 s refresh: ~60 an hour.
    assert!(s.fetches_ok >= 50, "{s:?}");
    assert_eq!(s.pool.credit_bits, DEVICE_CREDIT_CAP_BITS);
    // 30% loss each way: an exchange fails only if all 5 transmissions fail ((1 - 0.49)^5).
    assert!(s.fetches_failed * 10 < s.fetches_ok, "{s:?}");
    assert!(s.client.retransmissions > 0);
    assert!(server
        .seen
        .values()
        .all(|&c| c <= 1 + u32::from(crate::coap::MAX_RETRANSMIT)));
    assert_eq!(s.pool.server.bytes_mixed, 32 * s.fetches_ok);
}

#[test]
fn lossy_network_block_wise_bodies_are_whole() {
    let (n, _) = run_lossy(160, 20, 600_000);
    let s = n.status();
    assert!(s.fetches_ok >= 8, "{s:?}");
    // Every delivered body is the whole 160 bytes, never a part.
    assert_eq!(s.pool.server.bytes_mixed, 160 * s.fetches_ok);
}

#[test]
fn total_loss_means_trng_only_with_growing_backoff() {
    let (n, server) = run_lossy(32, 100, 3_600_000);
    let s = n.status();
    assert_eq!(s.fetches_ok, 0);
    assert!(server.seen.is_empty());
    // 93 s per failed fetch at most, then 5, 10, 20, ... 600 s of backoff: about a dozen tries.
    assert!((8..=20).contains(&s.fetches_failed), "{s:?}");
    assert!(matches!(
        s.link,
        LinkState::TrngOnly {
            reason: FallbackReason::Unreachable,
            ..
        }
    ));
}
