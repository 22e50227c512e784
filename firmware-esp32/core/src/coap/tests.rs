use super::*;
use alloc::vec;
use coap_lite::ContentFormat;

/// Returns the scripted values in turn, then repeats the last one.
#[derive(Debug)]
pub(crate) struct Script(pub Vec<u32>, pub usize);

impl RandomSource for Script {
    fn next_u32(&mut self) -> u32 {
        let v = self.0[self.1.min(self.0.len() - 1)];
        self.1 += 1;
        v
    }
}

/// A client whose first mid is 0x1000, token 0xaabbccdd and every jitter `jitter`.
fn client(cfg: ClientConfig, jitter: u32) -> EntropyClient<Script> {
    EntropyClient::new(cfg, Script(vec![0x1000, 0xaabb_ccdd, jitter], 0))
}

fn t(ms: u64) -> Instant {
    Instant(ms)
}

fn parse(d: &[u8]) -> Packet {
    Packet::from_bytes(d).expect("client sends valid CoAP")
}

/// A server answer to `req`: piggybacked in an ACK, same mid and token.
pub(crate) fn answer(req: &Packet, code: ResponseType, payload: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Acknowledgement);
    p.header.code = MessageClass::Response(code);
    p.header.message_id = req.header.message_id;
    p.set_token(req.get_token().to_vec());
    p.payload = payload.to_vec();
    p
}

/// CoAP uint encoding, for other modules' tests.
pub(crate) fn encode(x: u32) -> Vec<u8> {
    encode_uint(x)
}

fn bytes(p: &Packet) -> Vec<u8> {
    p.to_bytes().unwrap()
}

fn block_opt(p: &Packet) -> Option<u32> {
    p.get_first_option(CoapOption::Block2)
        .map(|v| decode_uint(v).unwrap())
}

#[test]
fn request_is_a_confirmable_get_of_entropy() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    assert_eq!(req.header.get_type(), MessageType::Confirmable);
    assert_eq!(req.header.code, MessageClass::Request(RequestType::Get));
    assert_eq!(req.header.message_id, 0x1000);
    assert_eq!(req.get_token(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    let path: Vec<_> = req
        .get_option(CoapOption::UriPath)
        .unwrap()
        .iter()
        .collect();
    assert_eq!(path, [&b"entropy".to_vec()]);
    assert!(req.get_option(CoapOption::Block2).is_none());
    assert!(c.poll_transmit().is_none());
    assert_eq!(c.start(t(1)), Err(Busy));
}

#[test]
fn piggybacked_response_delivers_the_body() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let mut resp = answer(&req, ResponseType::Content, &[0x5a; 32]);
    resp.set_content_format(ContentFormat::ApplicationOctetStream);
    c.handle_datagram(t(10), &bytes(&resp));
    assert_eq!(c.poll_outcome(), Some(Outcome::Entropy(vec![0x5a; 32])));
    assert!(c.is_idle());
    assert_eq!(c.poll_timeout(), None);
    // The next fetch uses a new message id and a new token.
    c.start(t(20)).unwrap();
    let req2 = parse(&c.poll_transmit().unwrap());
    assert_eq!(req2.header.message_id, 0x1001);
}

#[test]
fn retransmits_with_doubling_timeout_then_gives_up() {
    // Largest jitter: first timeout 3 s, so the span is 3 + 6 + 12 + 24 + 48 = 93 s
    // (RFC 7252 MAX_TRANSMIT_WAIT).
    let mut c = client(ClientConfig::default(), 1000);
    c.start(t(0)).unwrap();
    let first = c.poll_transmit().unwrap();
    let mut now = 0;
    let mut sends = vec![];
    for _ in 0..MAX_RETRANSMIT {
        let deadline = c.poll_timeout().unwrap().0;
        c.handle_timeout(t(deadline - 1));
        assert!(c.poll_transmit().is_none(), "nothing before the deadline");
        c.handle_timeout(t(deadline));
        assert_eq!(c.poll_transmit().unwrap(), first, "same message, same id");
        sends.push(deadline - now);
        now = deadline;
    }
    assert_eq!(sends, [3000, 6000, 12000, 24000]);
    assert_eq!(c.poll_timeout(), Some(t(93_000)));
    c.handle_timeout(t(93_000));
    assert_eq!(c.poll_outcome(), Some(Outcome::Failed(FetchError::Timeout)));
    assert!(c.poll_transmit().is_none());
    assert_eq!(c.stats().retransmissions, 4);
}

#[test]
fn first_timeout_is_between_2_and_3_seconds() {
    for (jitter, want) in [
        (0, 2000),
        (500, 2500),
        (1000, 3000),
        (1001, 2000),
        (u32::MAX, 2000 + u64::from(u32::MAX % 1001)),
    ] {
        let mut c = client(ClientConfig::default(), jitter);
        c.start(t(7)).unwrap();
        let got = c.poll_timeout().unwrap().0 - 7;
        assert_eq!(got, want, "jitter {jitter}");
        assert!((ACK_TIMEOUT_MS..=ACK_TIMEOUT_MAX_MS).contains(&got));
    }
}

#[test]
fn answer_after_a_retransmission_is_accepted() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    c.handle_timeout(t(2000));
    assert!(c.poll_transmit().is_some());
    c.handle_datagram(t(2100), &bytes(&answer(&req, ResponseType::Content, b"x")));
    assert_eq!(c.poll_outcome(), Some(Outcome::Entropy(b"x".to_vec())));
}

/// A new secure session under the client (the server restarted): the request in flight goes
/// out again at once, as a new message for the same token and block, with its retransmission
/// count and timeout starting over; an answer to it completes the fetch. Idle: nothing is sent.
#[test]
fn resend_after_a_new_session_sends_the_request_in_flight_again_at_once() {
    let mut c = client(ClientConfig::default(), 0);
    c.resend(t(0));
    assert!(c.poll_transmit().is_none(), "idle: nothing to resend");
    c.start(t(0)).unwrap();
    let first = parse(&c.poll_transmit().unwrap());
    // Two retransmissions over the lost session, unanswered.
    c.handle_timeout(t(2_000));
    c.handle_timeout(t(6_000));
    assert_eq!(c.stats().retransmissions, 2);
    // The second retransmission is still queued (the old session could not take it): the
    // resend replaces it rather than sending both.
    c.poll_transmit().unwrap();
    assert!(c.poll_transmit().is_some());
    c.resend(t(7_000));
    let again = parse(&c.poll_transmit().unwrap());
    assert!(c.poll_transmit().is_none());
    assert_ne!(again.header.message_id, first.header.message_id);
    assert_eq!(again.get_token(), first.get_token());
    assert_eq!(
        again.get_option(CoapOption::UriPath),
        first.get_option(CoapOption::UriPath)
    );
    // A fresh first timeout (2 s with this jitter), not the old exchange's 8 s.
    assert_eq!(c.poll_timeout(), Some(t(9_000)));
    c.handle_datagram(
        t(7_050),
        &bytes(&answer(&again, ResponseType::Content, &[1; 32])),
    );
    assert!(matches!(c.poll_outcome(), Some(Outcome::Entropy(b)) if b.len() == 32));
}

#[test]
fn empty_ack_then_separate_confirmable_response_is_acked() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = req.header.message_id;
    c.handle_datagram(t(100), &bytes(&ack));
    assert_eq!(c.poll_timeout(), Some(t(100 + SEPARATE_RESPONSE_WAIT_MS)));
    // No retransmission once acknowledged.
    c.handle_timeout(t(5000));
    assert!(c.poll_transmit().is_none());
    let mut resp = answer(&req, ResponseType::Content, &[1; 32]);
    resp.header.set_type(MessageType::Confirmable);
    resp.header.message_id = 0x7777;
    c.handle_datagram(t(6000), &bytes(&resp));
    let our_ack = parse(&c.poll_transmit().unwrap());
    assert_eq!(our_ack.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(our_ack.header.code, MessageClass::Empty);
    assert_eq!(our_ack.header.message_id, 0x7777);
    assert_eq!(c.poll_outcome(), Some(Outcome::Entropy(vec![1; 32])));
    // Our ACK was lost and the server repeats itself: ACK again, deliver nothing twice.
    c.handle_datagram(t(8000), &bytes(&resp));
    let again = parse(&c.poll_transmit().unwrap());
    assert_eq!(again.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(again.header.message_id, 0x7777);
    assert_eq!(c.poll_outcome(), None);
}

#[test]
fn separate_response_that_never_comes_times_out() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = req.header.message_id;
    c.handle_datagram(t(0), &bytes(&ack));
    c.handle_timeout(t(SEPARATE_RESPONSE_WAIT_MS));
    assert_eq!(c.poll_outcome(), Some(Outcome::Failed(FetchError::Timeout)));
}

#[test]
fn reset_fails_the_fetch() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let mut rst = Packet::new();
    rst.header.set_type(MessageType::Reset);
    rst.header.message_id = req.header.message_id;
    c.handle_datagram(t(1), &bytes(&rst));
    assert_eq!(c.poll_outcome(), Some(Outcome::Failed(FetchError::Reset)));
}

#[test]
fn foreign_token_or_message_id_is_ignored() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let mut wrong_token = answer(&req, ResponseType::Content, &[9; 32]);
    wrong_token.set_token(vec![1, 2, 3, 4]);
    c.handle_datagram(t(1), &bytes(&wrong_token));
    let mut wrong_mid = answer(&req, ResponseType::Content, &[9; 32]);
    wrong_mid.header.message_id ^= 1;
    c.handle_datagram(t(1), &bytes(&wrong_mid));
    let mut rst = Packet::new();
    rst.header.set_type(MessageType::Reset);
    rst.header.message_id = req.header.message_id ^ 1;
    c.handle_datagram(t(1), &bytes(&rst));
    assert_eq!(c.poll_outcome(), None);
    assert!(!c.is_idle());
    assert_eq!(c.stats().ignored, 3);
    // The real answer still completes the fetch.
    c.handle_datagram(t(2), &bytes(&answer(&req, ResponseType::Content, &[3; 32])));
    assert_eq!(c.poll_outcome(), Some(Outcome::Entropy(vec![3; 32])));
}

#[test]
fn unmatched_confirmable_is_reset() {
    let mut c = client(ClientConfig::default(), 0);
    let mut stray = Packet::new();
    stray.header.set_type(MessageType::Confirmable);
    stray.header.code = MessageClass::Response(ResponseType::Content);
    stray.header.message_id = 0x4242;
    stray.set_token(vec![1]);
    c.handle_datagram(t(0), &bytes(&stray));
    let rst = parse(&c.poll_transmit().unwrap());
    assert_eq!(rst.header.get_type(), MessageType::Reset);
    assert_eq!(rst.header.message_id, 0x4242);
    assert_eq!(c.poll_outcome(), None);
}

/// Serves `body` in blocks of 2^(szx+4) bytes to whatever block the request asks for.
fn serve_block(req: &Packet, body: &[u8], szx: u8) -> Packet {
    let size = 1usize << (szx + 4);
    let num = block_opt(req).map_or(0, |v| v >> 4) as usize;
    let start = (num * size).min(body.len());
    let end = (start + size).min(body.len());
    let more = end < body.len();
    let mut p = answer(req, ResponseType::Content, &body[start..end]);
    let v = (num as u32) << 4 | u32::from(more) << 3 | u32::from(szx);
    p.add_option(CoapOption::Block2, encode_uint(v));
    p
}

#[test]
fn block2_body_is_reassembled_in_order() {
    let body: Vec<u8> = (0..160u32).map(|i| i as u8).collect();
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let mut mids = vec![];
    let mut nums = vec![];
    for _ in 0..3 {
        let req = parse(&c.poll_transmit().expect("next block requested"));
        mids.push(req.header.message_id);
        nums.push(block_opt(&req).map(|v| (v >> 4, v & 7)));
        assert_eq!(req.get_token(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        c.handle_datagram(t(1), &bytes(&serve_block(&req, &body, 2)));
    }
    assert_eq!(mids, [0x1000, 0x1001, 0x1002]);
    // Block 0 unasked (server's choice), then blocks 1 and 2 at the server's size.
    assert_eq!(nums, [None, Some((1, 2)), Some((2, 2))]);
    assert_eq!(c.poll_outcome(), Some(Outcome::Entropy(body)));
    assert!(c.poll_transmit().is_none());
}

#[test]
fn block2_size_preference_is_sent() {
    // Ask for 16-byte blocks (SZX 0): 40 bytes come in three blocks.
    let cfg = ClientConfig {
        block_szx: Some(0),
        ..ClientConfig::default()
    };
    let mut c = client(cfg, 0);
    c.start(t(0)).unwrap();
    let body = [7u8; 40];
    for num in 0..3u32 {
        let req = parse(&c.poll_transmit().unwrap());
        assert_eq!(block_opt(&req), Some(num << 4));
        c.handle_datagram(t(1), &bytes(&serve_block(&req, &body, 0)));
    }
    assert!(c.poll_transmit().is_none());
    assert_eq!(c.poll_outcome(), Some(Outcome::Entropy(body.to_vec())));
}

#[test]
fn block2_out_of_order_or_short_block_fails() {
    let body = [1u8; 100];
    // The server skips to block 1 when asked for block 0.
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let mut p = answer(&req, ResponseType::Content, &body[16..32]);
    p.add_option(CoapOption::Block2, encode_uint(1 << 4 | 1 << 3));
    c.handle_datagram(t(1), &bytes(&p));
    assert_eq!(
        c.poll_outcome(),
        Some(Outcome::Failed(FetchError::BadBlock))
    );
    // A non-final block shorter than the block size.
    c.start(t(2)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let mut p = answer(&req, ResponseType::Content, &body[..10]);
    p.add_option(CoapOption::Block2, encode_uint(1 << 3));
    c.handle_datagram(t(3), &bytes(&p));
    assert_eq!(
        c.poll_outcome(),
        Some(Outcome::Failed(FetchError::BadBlock))
    );
    // SZX 7 is reserved.
    c.start(t(4)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let mut p = answer(&req, ResponseType::Content, &body[..16]);
    p.add_option(CoapOption::Block2, encode_uint(7));
    c.handle_datagram(t(5), &bytes(&p));
    assert_eq!(
        c.poll_outcome(),
        Some(Outcome::Failed(FetchError::BadBlock))
    );
}

#[test]
fn body_larger_than_the_limit_fails() {
    let cfg = ClientConfig {
        max_body: 100,
        ..ClientConfig::default()
    };
    let body = [2u8; 200];
    let mut c = client(cfg.clone(), 0);
    c.start(t(0)).unwrap();
    for _ in 0..2 {
        let req = parse(&c.poll_transmit().unwrap());
        c.handle_datagram(t(1), &bytes(&serve_block(&req, &body, 2)));
    }
    assert_eq!(
        c.poll_outcome(),
        Some(Outcome::Failed(FetchError::TooLarge))
    );
    let mut c = client(cfg, 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    c.handle_datagram(
        t(1),
        &bytes(&answer(&req, ResponseType::Content, &body[..101])),
    );
    assert_eq!(
        c.poll_outcome(),
        Some(Outcome::Failed(FetchError::TooLarge))
    );
}

#[test]
fn too_many_requests_and_unavailable_carry_max_age() {
    for (code, max_age_opt, want) in [
        (
            ResponseType::TooManyRequests,
            Some(30u32),
            FetchError::RateLimited { retry_after_s: 30 },
        ),
        (
            ResponseType::TooManyRequests,
            None,
            FetchError::RateLimited { retry_after_s: 60 },
        ),
        (
            ResponseType::ServiceUnavailable,
            Some(300),
            FetchError::Unavailable { retry_after_s: 300 },
        ),
        (
            ResponseType::ServiceUnavailable,
            None,
            FetchError::Unavailable { retry_after_s: 60 },
        ),
        (ResponseType::NotFound, None, FetchError::Code(0x84)),
    ] {
        let mut c = client(ClientConfig::default(), 0);
        c.start(t(0)).unwrap();
        let req = parse(&c.poll_transmit().unwrap());
        let mut p = answer(&req, code, b"");
        if let Some(a) = max_age_opt {
            p.add_option(CoapOption::MaxAge, encode_uint(a));
        }
        c.handle_datagram(t(1), &bytes(&p));
        assert_eq!(c.poll_outcome(), Some(Outcome::Failed(want)));
        assert!(c.is_idle());
    }
}

#[test]
fn empty_content_fails() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    c.handle_datagram(t(1), &bytes(&answer(&req, ResponseType::Content, b"")));
    assert_eq!(
        c.poll_outcome(),
        Some(Outcome::Failed(FetchError::EmptyBody))
    );
}

#[test]
fn hostile_datagrams_never_panic_or_complete_a_fetch() {
    let mut c = client(ClientConfig::default(), 0);
    c.start(t(0)).unwrap();
    let req = parse(&c.poll_transmit().unwrap());
    let good = bytes(&answer(&req, ResponseType::Content, &[4; 32]));
    // Prefixes too short to hold the header and our token (longer prefixes are themselves valid
    // answers with an empty body), and the answer with any token byte changed.
    for n in 0..8 {
        c.handle_datagram(t(1), &good[..n]);
    }
    for i in 4..8 {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        c.handle_datagram(t(1), &bad);
    }
    // Random datagrams from a fixed xorshift sequence.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 80) as usize;
        let d: Vec<u8> = (0..len)
            .map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect();
        c.handle_datagram(t(1), &d);
    }
    assert_eq!(c.poll_outcome(), None);
    // Resets for random Confirmable messages are allowed; drain them.
    while c.poll_transmit().is_some() {}
    c.handle_datagram(t(2), &good);
    assert_eq!(c.poll_outcome(), Some(Outcome::Entropy(vec![4; 32])));
}

#[test]
fn uint_codec_is_minimal_and_bounded() {
    assert_eq!(encode_uint(0), Vec::<u8>::new());
    assert_eq!(encode_uint(0x12), [0x12]);
    assert_eq!(encode_uint(0x1234), [0x12, 0x34]);
    assert_eq!(decode_uint(&[0x12, 0x34]), Some(0x1234));
    assert_eq!(decode_uint(&[]), Some(0));
    assert_eq!(decode_uint(&[1, 2, 3, 4, 5]), None);
}
