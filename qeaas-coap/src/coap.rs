//! CoAP resource logic, sans-IO: decrypted request bytes in, an action out. No sockets, no
//! clock (the caller passes `now`), no daemon: entropy arrives through [`Exchange::finish`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};

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
    Reply(Vec<u8>),
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
}

/// Why the daemon could not back a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl Exchange {
    /// The response: 2.05 with the bytes, or 5.03 when the daemon could not back the request.
    pub fn finish(mut self, bytes: Result<Vec<u8>, Unavailable>) -> Vec<u8> {
        match bytes {
            Ok(b) if b.len() == self.n => {
                self.response.header.code = MessageClass::Response(ResponseType::Content);
                self.response
                    .set_content_format(ContentFormat::ApplicationOctetStream);
                self.response.payload = b;
            }
            // Never pad nor truncate: a short answer is as unavailable as none.
            _ => return Exchange::unavailable(self.response),
        }
        encode(&self.response)
    }

    fn unavailable(mut response: Packet) -> Vec<u8> {
        response.header.code = MessageClass::Response(ResponseType::ServiceUnavailable);
        // Max-Age 1: the client may retry after a second.
        response.add_option(CoapOption::MaxAge, vec![1]);
        encode(&response)
    }
}

fn encode(p: &Packet) -> Vec<u8> {
    // Our responses are small and well-formed; an encoding failure would be a bug, and an
    // empty datagram is dropped by the caller rather than crashing the server.
    p.to_bytes().unwrap_or_default()
}

/// Per-peer CoAP state: duplicate detection and our message ids.
#[derive(Debug)]
pub struct Endpoint {
    max_n: usize,
    next_mid: u16,
    /// (message id, when, response) for CON and NON requests answered recently.
    seen: VecDeque<(u16, Instant, Vec<u8>)>,
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
            next_mid: seed,
            seen: VecDeque::new(),
            // Room for a full pipeline of answers plus retransmissions of the oldest.
            seen_max: 2 * MAX_PENDING,
            pending: Vec::new(),
        }
    }

    /// A duplicate gets the very response sent the first time (RFC 7252 4.5), so the same
    /// pool bytes go to the same peer again and are never drawn twice.
    pub fn cached(&mut self, datagram: &[u8], now: Instant) -> Option<Vec<u8>> {
        self.seen
            .retain(|(_, t, _)| now.saturating_duration_since(*t) < EXCHANGE_LIFETIME);
        let p = Packet::from_bytes(datagram).ok()?;
        let mid = p.header.message_id;
        self.seen
            .iter()
            .find(|(m, _, _)| *m == mid)
            .map(|(_, _, r)| r.clone())
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
                .push_back((p.header.message_id, now, response.to_vec()));
        }
    }

    /// Handles one request (after [`Endpoint::cached`] said it is new).
    pub fn handle(&mut self, datagram: &[u8]) -> Action {
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
            Action::Reply(encode(&r))
        };
        match path.as_slice() {
            [b"entropy"] => {
                if method != RequestType::Get {
                    return status(resp, ResponseType::MethodNotAllowed);
                }
                match query_n(&req, self.max_n) {
                    Ok(_) if self.pending.len() >= MAX_PENDING => {
                        Action::Reply(Exchange::unavailable(resp))
                    }
                    Ok(n) => {
                        self.pending.push(req.header.message_id);
                        Action::Entropy(Exchange { n, response: resp })
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

    fn code(b: &[u8]) -> MessageClass {
        Packet::from_bytes(b).unwrap().header.code
    }

    #[test]
    fn get_entropy_default_and_bounded_n() {
        let mut e = Endpoint::new(256, 7);
        let Action::Entropy(x) = e.handle(&req(
            MessageType::Confirmable,
            5,
            &["entropy"],
            &[],
            RequestType::Get,
        )) else {
            panic!("expected an entropy exchange")
        };
        assert_eq!(x.n, 32);
        let out = x.finish(Ok(vec![0xab; 32]));
        let p = Packet::from_bytes(&out).unwrap();
        assert_eq!(p.header.code, MessageClass::Response(ResponseType::Content));
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 5);
        assert_eq!(p.get_token(), &[1, 2, 3]);
        assert_eq!(p.payload, vec![0xab; 32]);

        let Action::Entropy(x) = e.handle(&req(
            MessageType::Confirmable,
            6,
            &["entropy"],
            &["n=256"],
            RequestType::Get,
        )) else {
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
            let Action::Reply(r) = e.handle(&req(
                MessageType::Confirmable,
                8,
                &["entropy"],
                &[bad],
                RequestType::Get,
            )) else {
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
            let Action::Entropy(x) = e.handle(&req(
                MessageType::NonConfirmable,
                5,
                &["entropy"],
                &[],
                RequestType::Get,
            )) else {
                panic!()
            };
            let p = Packet::from_bytes(&x.finish(r)).unwrap();
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
        let Action::Reply(r) = e.handle(&req(
            MessageType::Confirmable,
            1,
            &[".well-known", "core"],
            &[],
            RequestType::Get,
        )) else {
            panic!()
        };
        let p = Packet::from_bytes(&r).unwrap();
        assert_eq!(
            p.get_content_format(),
            Some(ContentFormat::ApplicationLinkFormat)
        );
        assert!(String::from_utf8(p.payload).unwrap().contains("</entropy>"));
        let Action::Reply(r) = e.handle(&req(
            MessageType::Confirmable,
            2,
            &["nope"],
            &[],
            RequestType::Get,
        )) else {
            panic!()
        };
        assert_eq!(code(&r), MessageClass::Response(ResponseType::NotFound));
        let Action::Reply(r) = e.handle(&req(
            MessageType::Confirmable,
            3,
            &["entropy"],
            &[],
            RequestType::Post,
        )) else {
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
            let _ = e.handle(g);
            let _ = e.cached(g, Instant::now());
        }
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        assert_eq!(e.handle(&p.to_bytes().unwrap()), Action::Ignore);
    }
}
