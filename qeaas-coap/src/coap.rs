//! CoAP resource logic, sans-IO: decrypted request bytes in, an action out. No sockets, no
//! clock (the caller passes `now`), no daemon: entropy arrives through [`Exchange::finish`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};

use qeaas_client::PoolBytes;
use zeroize::Zeroize;

use crate::block::{uint, Block2, BlockStore, MAX_SZX};

/// Bytes served when the request has no `n=`.
pub const DEFAULT_N: usize = 32;

/// RFC 7252 EXCHANGE_LIFETIME: how long a message id is remembered for duplicate detection.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);

/// The link-format description of our resources (RFC 6690).
pub const WELL_KNOWN_CORE: &str =
    "</entropy>;rt=\"qeaas.entropy\";ct=42;title=\"fresh pool bytes, ?n=1..max\"";

/// What to do with one decrypted datagram.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Send these bytes (a complete CoAP message).
    Reply(PoolBytes),
    /// Fetch `n` bytes from the daemon, then call [`Exchange::finish`].
    Entropy(Exchange),
    /// Nothing to send (not a request, unparsable, or an ACK/RST).
    Ignore,
}

/// A GET /entropy waiting for the daemon's bytes.
#[derive(Debug, PartialEq)]
pub struct Exchange {
    /// Bytes wanted.
    pub n: usize,
    response: Packet,
    /// Set when the body is larger than one block: it is stored and served block-wise.
    block: Option<Plan>,
}

/// How a block-wise body will be stored and cut.
#[derive(Debug, PartialEq)]
struct Plan {
    key: Vec<u8>,
    szx: u8,
}

/// Why the daemon could not back a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl Exchange {
    /// The response: 2.05 with the bytes, or 5.03 when the daemon could not back the request.
    pub fn finish(mut self, bytes: Result<PoolBytes, Unavailable>) -> PoolBytes {
        match bytes {
            Ok(b) if b.len() == self.n => {
                self.response.header.code = MessageClass::Response(ResponseType::Content);
                self.response
                    .set_content_format(ContentFormat::ApplicationOctetStream);
                // A copy the packet owns, wiped by `encode` once the datagram is made.
                self.response.payload = b.to_vec();
            }
            // Never pad nor truncate: a short answer is as unavailable as none.
            _ => return Exchange::unavailable(self.response),
        }
        encode(&mut self.response)
    }

    /// Whether the body will be served block-wise (stored at block 0).
    pub fn is_blockwise(&self) -> bool {
        self.block.is_some()
    }

    fn unavailable(mut response: Packet) -> PoolBytes {
        response.header.code = MessageClass::Response(ResponseType::ServiceUnavailable);
        // Max-Age 1: the client may retry after a second.
        response.add_option(CoapOption::MaxAge, vec![1]);
        encode(&mut response)
    }
}

/// Why a request was refused before anything was fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 4.29 Too Many Requests with this Max-Age (RFC 8516).
    TooMany(u32),
    /// 4.00: `n` exceeds this identity's whole quota per window.
    OverQuota,
    /// 5.03 Max-Age 1: no room to store a block-wise body now.
    NoRoom,
}

/// The datagram of `p`, as [`PoolBytes`] (it may carry pool bytes), and `p`'s payload wiped:
/// no copy of served bytes outlives its use unwiped.
fn encode(p: &mut Packet) -> PoolBytes {
    // Our responses are small and well-formed; an encoding failure would be a bug, and an
    // empty datagram is dropped by the caller rather than crashing the server.
    let out = PoolBytes::new(p.to_bytes().unwrap_or_default());
    p.payload.zeroize();
    out
}

/// Per-peer CoAP state: duplicate detection, our message ids, the block-wise body.
#[derive(Debug)]
pub struct Endpoint {
    max_n: usize,
    /// Our largest block size exponent.
    szx: u8,
    /// How long a block-wise body is kept after block 0.
    block_life: Duration,
    /// At most one body being served block-wise.
    blocks: BlockStore,
    /// Bytes of a block-wise body being fetched (one at a time), counted like stored ones.
    reserved: usize,
    next_etag: u32,
    next_mid: u16,
    /// (message id, when, response) for CON and NON requests answered recently.
    seen: VecDeque<(u16, Instant, PoolBytes)>,
    seen_max: usize,
    /// Message ids of requests waiting for the daemon: a retransmission meanwhile is dropped
    /// (the answer is on its way) rather than drawing pool bytes a second time.
    pending: Vec<u16>,
}

/// Requests one peer may have waiting for the daemon at once; more get 5.03 at once, so one
/// peer cannot fill the fetch queue for everyone.
pub const MAX_PENDING: usize = 32;

impl Endpoint {
    /// `max_n`: the largest `n=` accepted; `seed` starts our message ids.
    pub fn new(max_n: usize, seed: u16) -> Endpoint {
        Endpoint {
            max_n,
            szx: MAX_SZX,
            block_life: Duration::from_secs(30),
            blocks: BlockStore::default(),
            reserved: 0,
            next_etag: u32::from(seed) << 16,
            next_mid: seed,
            seen: VecDeque::new(),
            // Room for a full pipeline of answers plus retransmissions of the oldest.
            seen_max: 2 * MAX_PENDING,
            pending: Vec::new(),
        }
    }

    /// Block size exponent (0..=6, smaller is kept as is) and how long a block-wise body is
    /// kept after block 0.
    pub fn with_blocks(mut self, szx: u8, life: Duration) -> Endpoint {
        self.szx = szx.min(MAX_SZX);
        self.block_life = life;
        self
    }

    /// Bytes held or being fetched for a block-wise answer (the server caps their sum).
    pub fn stored_bytes(&self) -> usize {
        self.blocks.bytes() + self.reserved
    }

    /// Timers: wipes an expired block-wise body.
    pub fn expire(&mut self, now: Instant) {
        self.blocks.expire(now);
    }

    /// The caller accepted `x` (room, quota) and fetches its bytes: a block-wise body replaces
    /// (wipes) any stored one and is counted from now on.
    pub fn admit(&mut self, x: &Exchange) {
        if x.block.is_some() {
            self.blocks.clear();
            self.reserved = x.n;
        }
    }

    /// The caller refused `x` before fetching: the answer, remembered for duplicates.
    pub fn refuse(&mut self, request: &[u8], x: Exchange, why: Refusal, now: Instant) -> PoolBytes {
        let mut r = x.response;
        let out = match why {
            Refusal::TooMany(secs) => {
                r.header.code = MessageClass::Response(ResponseType::TooManyRequests);
                r.add_option(CoapOption::MaxAge, uint(secs.max(1)));
                encode(&mut r)
            }
            Refusal::OverQuota => {
                r.header.code = MessageClass::Response(ResponseType::BadRequest);
                r.payload = b"n exceeds this identity's quota per window".to_vec();
                encode(&mut r)
            }
            Refusal::NoRoom => Exchange::unavailable(r),
        };
        self.remember(request, &out, now);
        out
    }

    /// The daemon's answer to an admitted `x`: the response (block 0 of a stored body for a
    /// block-wise one). Call [`Endpoint::remember`] with it.
    pub fn finish(
        &mut self,
        x: Exchange,
        bytes: Result<PoolBytes, Unavailable>,
        now: Instant,
    ) -> PoolBytes {
        let Some(plan) = x.block else {
            return x.finish(bytes);
        };
        self.reserved = 0;
        let mut r = x.response;
        let b = match bytes {
            // The store takes a copy it wipes itself; `b` is wiped when dropped here.
            Ok(b) if b.len() == x.n => b.to_vec(),
            _ => return Exchange::unavailable(r),
        };
        self.next_etag = self.next_etag.wrapping_add(1);
        let etag = self.next_etag.to_be_bytes().to_vec();
        self.blocks
            .put(plan.key.clone(), etag, b, now + self.block_life);
        match self.blocks.get(&plan.key, &[], 0, plan.szx, self.szx, now) {
            Ok(s) => {
                block_response(&mut r, s);
                encode(&mut r)
            }
            // Unreachable (the body is longer than one block), but never a panic.
            Err(_) => Exchange::unavailable(r),
        }
    }

    /// A duplicate gets the very response sent the first time (RFC 7252 4.5), so the same
    /// pool bytes go to the same peer again and are never drawn twice.
    pub fn cached(&mut self, datagram: &[u8], now: Instant) -> Option<PoolBytes> {
        self.seen
            .retain(|(_, t, _)| now.saturating_duration_since(*t) < EXCHANGE_LIFETIME);
        let p = Packet::from_bytes(datagram).ok()?;
        let mid = p.header.message_id;
        self.seen
            .iter()
            .find(|(m, _, _)| *m == mid)
            .map(|(_, _, r)| PoolBytes::copy_from(r))
    }

    /// Whether `datagram` repeats a request still waiting for the daemon.
    pub fn is_pending(&self, datagram: &[u8]) -> bool {
        Packet::from_bytes(datagram).is_ok_and(|p| self.pending.contains(&p.header.message_id))
    }

    /// Remembers the response to the request `datagram` (and that it no longer waits).
    pub fn remember(&mut self, datagram: &[u8], response: &[u8], now: Instant) {
        if let Ok(p) = Packet::from_bytes(datagram) {
            self.pending.retain(|m| *m != p.header.message_id);
            if self.seen.len() >= self.seen_max {
                self.seen.pop_front();
            }
            self.seen
                .push_back((p.header.message_id, now, PoolBytes::copy_from(response)));
        }
    }

    /// Handles one request (after [`Endpoint::cached`] said it is new).
    pub fn handle(&mut self, datagram: &[u8], now: Instant) -> Action {
        let Ok(req) = Packet::from_bytes(datagram) else {
            return Action::Ignore;
        };
        let MessageClass::Request(method) = req.header.code else {
            return Action::Ignore;
        };
        let mut resp = Packet::new();
        resp.header.set_version(1);
        match req.header.get_type() {
            MessageType::Confirmable => {
                resp.header.set_type(MessageType::Acknowledgement);
                resp.header.message_id = req.header.message_id;
            }
            MessageType::NonConfirmable => {
                resp.header.set_type(MessageType::NonConfirmable);
                resp.header.message_id = self.next_mid;
                self.next_mid = self.next_mid.wrapping_add(1);
            }
            _ => return Action::Ignore,
        }
        resp.set_token(req.get_token().to_vec());
        let path: Vec<&[u8]> = req
            .get_option(CoapOption::UriPath)
            .map(|l| l.iter().map(Vec::as_slice).collect())
            .unwrap_or_default();
        let status = |mut r: Packet, s: ResponseType| {
            r.header.code = MessageClass::Response(s);
            Action::Reply(encode(&mut r))
        };
        match path.as_slice() {
            [b"entropy"] => {
                if method != RequestType::Get {
                    return status(resp, ResponseType::MethodNotAllowed);
                }
                let block = match req.get_first_option(CoapOption::Block2) {
                    None => None,
                    Some(v) => match Block2::parse(v) {
                        Some(b) => Some(b),
                        None => return status(resp, ResponseType::BadOption),
                    },
                };
                let key = resource_key(&req);
                if let Some(b) = block.filter(|b| b.num > 0) {
                    // A later block: from the stored body only, never fresh bytes.
                    let etags: Vec<Vec<u8>> = req
                        .get_option(CoapOption::ETag)
                        .map(|l| l.iter().cloned().collect())
                        .unwrap_or_default();
                    return match self.blocks.get(&key, &etags, b.num, b.szx, self.szx, now) {
                        Ok(s) => {
                            block_response(&mut resp, s);
                            status(resp, ResponseType::Content)
                        }
                        Err(e) => {
                            resp.payload = e.to_string().into_bytes();
                            status(resp, ResponseType::RequestEntityIncomplete)
                        }
                    };
                }
                // The client may ask for smaller blocks than ours at block 0.
                let szx = block.map_or(self.szx, |b| b.szx.min(self.szx));
                match query_n(&req, self.max_n) {
                    Ok(_) if self.pending.len() >= MAX_PENDING => {
                        Action::Reply(Exchange::unavailable(resp))
                    }
                    // One block-wise body per session is being fetched at a time.
                    Ok(n) if n > 16 << szx && self.reserved > 0 => {
                        Action::Reply(Exchange::unavailable(resp))
                    }
                    Ok(n) => {
                        self.pending.push(req.header.message_id);
                        let block = (n > 16 << szx).then_some(Plan { key, szx });
                        Action::Entropy(Exchange {
                            n,
                            response: resp,
                            block,
                        })
                    }
                    Err(()) => {
                        resp.payload = format!("n must be 1..={}", self.max_n).into_bytes();
                        status(resp, ResponseType::BadRequest)
                    }
                }
            }
            [b".well-known", b"core"] => {
                if method != RequestType::Get {
                    return status(resp, ResponseType::MethodNotAllowed);
                }
                resp.set_content_format(ContentFormat::ApplicationLinkFormat);
                resp.payload = WELL_KNOWN_CORE.as_bytes().to_vec();
                status(resp, ResponseType::Content)
            }
            _ => status(resp, ResponseType::NotFound),
        }
    }
}

/// Path and query of a request, as the key of its stored body.
fn resource_key(req: &Packet) -> Vec<u8> {
    let mut k = Vec::new();
    for (o, tag) in [(CoapOption::UriPath, b'/'), (CoapOption::UriQuery, b'?')] {
        for v in req.get_option(o).into_iter().flatten() {
            // Length-prefixed: no two different option lists give the same key.
            k.push(tag);
            k.extend_from_slice(&(v.len() as u32).to_be_bytes());
            k.extend_from_slice(v);
        }
    }
    k
}

/// A 2.05 carrying one block of a stored body.
fn block_response(r: &mut Packet, s: crate::block::Served) {
    r.header.code = MessageClass::Response(ResponseType::Content);
    r.add_option(CoapOption::ETag, s.etag);
    r.set_content_format(ContentFormat::ApplicationOctetStream);
    r.add_option(CoapOption::Block2, s.block.encode());
    r.payload = s.payload;
}

/// `n=` from the Uri-Query options: absent means [`DEFAULT_N`]; anything else malformed,
/// zero or above `max` is an error. Other query parameters are ignored.
fn query_n(req: &Packet, max: usize) -> Result<usize, ()> {
    let mut n = DEFAULT_N;
    for q in req.get_option(CoapOption::UriQuery).into_iter().flatten() {
        if let Some(v) = q.strip_prefix(b"n=") {
            let s = std::str::from_utf8(v).map_err(|_| ())?;
            // Digits only: no sign, no spaces, no leading '+'.
            if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            n = s.parse().map_err(|_| ())?;
        }
    }
    if n == 0 || n > max {
        return Err(());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(t: MessageType, mid: u16, path: &[&str], query: &[&str], m: RequestType) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(t);
        p.header.message_id = mid;
        p.header.code = MessageClass::Request(m);
        p.set_token(vec![1, 2, 3]);
        for s in path {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        for q in query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p.to_bytes().unwrap()
    }

    fn h(e: &mut Endpoint, d: &[u8]) -> Action {
        e.handle(d, Instant::now())
    }

    fn code(b: &[u8]) -> MessageClass {
        Packet::from_bytes(b).unwrap().header.code
    }

    #[test]
    fn get_entropy_default_and_bounded_n() {
        let mut e = Endpoint::new(256, 7);
        let Action::Entropy(x) = h(
            &mut e,
            &req(
                MessageType::Confirmable,
                5,
                &["entropy"],
                &[],
                RequestType::Get,
            ),
        ) else {
            panic!("expected an entropy exchange")
        };
        assert_eq!(x.n, 32);
        let out = x.finish(Ok(vec![0xab; 32].into()));
        let p = Packet::from_bytes(&out).unwrap();
        assert_eq!(p.header.code, MessageClass::Response(ResponseType::Content));
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 5);
        assert_eq!(p.get_token(), &[1, 2, 3]);
        assert_eq!(p.payload, vec![0xab; 32]);

        let Action::Entropy(x) = h(
            &mut e,
            &req(
                MessageType::Confirmable,
                6,
                &["entropy"],
                &["n=256"],
                RequestType::Get,
            ),
        ) else {
            panic!()
        };
        assert_eq!(x.n, 256);
        for bad in [
            "n=0",
            "n=257",
            "n=-1",
            "n=",
            "n=1e3",
            "n=+5",
            "n=99999999999",
        ] {
            let Action::Reply(r) = h(
                &mut e,
                &req(
                    MessageType::Confirmable,
                    8,
                    &["entropy"],
                    &[bad],
                    RequestType::Get,
                ),
            ) else {
                panic!("{bad}")
            };
            assert_eq!(
                code(&r),
                MessageClass::Response(ResponseType::BadRequest),
                "{bad}"
            );
        }
    }

    #[test]
    fn daemon_refusal_or_short_answer_is_503_never_padded() {
        let mut e = Endpoint::new(256, 7);
        for r in [Err(Unavailable), Ok(vec![1; 31])] {
            let Action::Entropy(x) = h(
                &mut e,
                &req(
                    MessageType::NonConfirmable,
                    5,
                    &["entropy"],
                    &[],
                    RequestType::Get,
                ),
            ) else {
                panic!()
            };
            let p = Packet::from_bytes(&x.finish(r.map(PoolBytes::from))).unwrap();
            assert_eq!(
                p.header.code,
                MessageClass::Response(ResponseType::ServiceUnavailable)
            );
            assert!(p.payload.is_empty());
            assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        }
    }

    #[test]
    fn well_known_core_not_found_and_method() {
        let mut e = Endpoint::new(256, 7);
        let Action::Reply(r) = h(
            &mut e,
            &req(
                MessageType::Confirmable,
                1,
                &[".well-known", "core"],
                &[],
                RequestType::Get,
            ),
        ) else {
            panic!()
        };
        let p = Packet::from_bytes(&r).unwrap();
        assert_eq!(
            p.get_content_format(),
            Some(ContentFormat::ApplicationLinkFormat)
        );
        assert!(String::from_utf8(p.payload).unwrap().contains("</entropy>"));
        let Action::Reply(r) = h(
            &mut e,
            &req(
                MessageType::Confirmable,
                2,
                &["nope"],
                &[],
                RequestType::Get,
            ),
        ) else {
            panic!()
        };
        assert_eq!(code(&r), MessageClass::Response(ResponseType::NotFound));
        let Action::Reply(r) = h(
            &mut e,
            &req(
                MessageType::Confirmable,
                3,
                &["entropy"],
                &[],
                RequestType::Post,
            ),
        ) else {
            panic!()
        };
        assert_eq!(
            code(&r),
            MessageClass::Response(ResponseType::MethodNotAllowed)
        );
    }

    #[test]
    fn duplicates_get_the_first_response_until_the_exchange_lifetime_ends() {
        let mut e = Endpoint::new(256, 7);
        let t0 = Instant::now();
        let r = req(
            MessageType::Confirmable,
            42,
            &["entropy"],
            &[],
            RequestType::Get,
        );
        assert!(e.cached(&r, t0).is_none());
        e.remember(&r, b"first answer", t0);
        assert_eq!(
            e.cached(&r, t0 + Duration::from_secs(10)).as_deref(),
            Some(&b"first answer"[..])
        );
        let other = req(
            MessageType::Confirmable,
            43,
            &["entropy"],
            &[],
            RequestType::Get,
        );
        assert!(e.cached(&other, t0).is_none());
        assert!(e.cached(&r, t0 + EXCHANGE_LIFETIME).is_none());
    }

    #[test]
    fn garbage_and_non_requests_are_ignored() {
        let mut e = Endpoint::new(256, 7);
        for g in [&b""[..], b"\xff", b"\x40\x01", &[0x4f; 40]] {
            let _ = h(&mut e, g);
            let _ = e.cached(g, Instant::now());
        }
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        assert_eq!(h(&mut e, &p.to_bytes().unwrap()), Action::Ignore);
    }
}
