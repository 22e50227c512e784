//! Sans-IO CoAP client for `GET /entropy`.
//!
//! One fetch at a time. The caller drives it quinn-style: [`EntropyClient::start`] a fetch, send
//! every datagram [`EntropyClient::poll_transmit`] returns, hand received datagrams to
//! [`EntropyClient::handle_datagram`], call [`EntropyClient::handle_timeout`] when
//! [`EntropyClient::poll_timeout`] is reached, and collect the result with
//! [`EntropyClient::poll_outcome`].
//!
//! Protocol rules implemented:
//!
//! * RFC 7252 4.2/4.8: each request is Confirmable; the first timeout is random in
//!   `[ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR]` = 2 to 3 s, doubled on each of at most
//!   `MAX_RETRANSMIT` = 4 retransmissions; after the last one the fetch fails (93 s worst case).
//! * A piggybacked response in the ACK, or an empty ACK followed by a separate response (which
//!   we ACK if it is Confirmable, and ACK again if it comes again). A Reset for our message id fails the fetch. Confirmable
//!   messages we cannot match are answered with a Reset; anything else unmatched is ignored.
//! * Responses must carry our token and (in an ACK) our message id: a stray or spoofed datagram
//!   cannot complete a fetch.
//! * RFC 7959 Block2: blocks are requested in order with the size the server chose; a block out
//!   of order or a body larger than the configured limit fails the fetch.
//! * 4.29 (RFC 8516) and 5.03: the fetch fails with the Max-Age (default 60 s) as retry-after.
//!
//! Nothing here panics on network input: every datagram is parsed by coap-lite and checked.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use crate::{Instant, RandomSource};

/// RFC 7252 ACK_TIMEOUT, in milliseconds.
pub const ACK_TIMEOUT_MS: u64 = 2_000;
/// Upper end of the first timeout: ACK_TIMEOUT * ACK_RANDOM_FACTOR (1.5), in milliseconds.
pub const ACK_TIMEOUT_MAX_MS: u64 = ACK_TIMEOUT_MS * 3 / 2;
/// RFC 7252 MAX_RETRANSMIT.
pub const MAX_RETRANSMIT: u8 = 4;
/// RFC 7252 MAX_TRANSMIT_SPAN (45 s): how long we wait for a separate response after an empty
/// ACK.
pub const SEPARATE_RESPONSE_WAIT_MS: u64 = 45_000;
/// Max-Age when the option is absent (RFC 7252 5.10.5).
pub const DEFAULT_MAX_AGE_S: u32 = 60;

/// Client settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Uri-Path segments of the resource.
    pub path: Vec<&'static str>,
    /// Uri-Query options (e.g. `n=32`), if the server wants them.
    pub query: Vec<&'static str>,
    /// Block size exponent to ask for (`SZX`, block = 2^(SZX+4) bytes), or `None` to let the server
    /// choose.
    pub block_szx: Option<u8>,
    /// Largest body accepted.
    pub max_body: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            path: alloc::vec!["entropy"],
            query: Vec::new(),
            block_szx: None,
            max_body: 1024,
        }
    }
}

/// Why a fetch failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// No ACK after MAX_RETRANSMIT retransmissions, or no separate response in time.
    Timeout,
    /// The server answered with a Reset.
    Reset,
    /// 4.29 Too Many Requests: retry after this many seconds.
    RateLimited {
        /// Max-Age of the response.
        retry_after_s: u32,
    },
    /// 5.03 Service Unavailable (e.g. the server's supply is low): retry after this many seconds.
    Unavailable {
        /// Max-Age of the response.
        retry_after_s: u32,
    },
    /// Another response code (the raw code byte, e.g. 0x84 for 4.04).
    Code(u8),
    /// A 2.05 with no payload.
    EmptyBody,
    /// A Block2 option that does not continue the body in order.
    BadBlock,
    /// The body grew beyond [`ClientConfig::max_body`].
    TooLarge,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("no answer from the server"),
            Self::Reset => f.write_str("server reset the exchange"),
            Self::RateLimited { retry_after_s } => {
                write!(f, "4.29 too many requests, retry after {retry_after_s} s")
            }
            Self::Unavailable { retry_after_s } => {
                write!(f, "5.03 service unavailable, retry after {retry_after_s} s")
            }
            Self::Code(c) => write!(f, "unexpected response code {}.{:02}", c >> 5, c & 0x1f),
            Self::EmptyBody => f.write_str("empty response body"),
            Self::BadBlock => f.write_str("block-wise transfer out of order"),
            Self::TooLarge => f.write_str("response body too large"),
        }
    }
}

/// The result of a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The whole body of a 2.05 response.
    Entropy(Vec<u8>),
    /// The fetch failed.
    Failed(FetchError),
}

/// [`EntropyClient::start`] was called while a fetch was in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

/// Counters, for the device's status report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent, first transmissions only.
    pub requests: u64,
    /// Retransmissions.
    pub retransmissions: u64,
    /// Datagrams that did not parse or did not match the exchange.
    pub ignored: u64,
    /// Resets we sent for unmatched Confirmable messages.
    pub resets_sent: u64,
}

#[derive(Debug)]
enum State {
    Idle,
    /// A Confirmable request is out; no ACK yet.
    AwaitAck {
        mid: u16,
        msg: Vec<u8>,
        retransmits: u8,
        timeout_ms: u64,
        deadline: Instant,
    },
    /// Empty ACK received; the response comes separately.
    AwaitSeparate {
        deadline: Instant,
    },
}

/// The client state machine; see the module documentation.
#[derive(Debug)]
pub struct EntropyClient<R> {
    cfg: ClientConfig,
    rng: R,
    next_mid: u16,
    token: [u8; 4],
    state: State,
    body: Vec<u8>,
    next_block: u32,
    transmit: VecDeque<Vec<u8>>,
    outcome: Option<Outcome>,
    stats: ClientStats,
    /// Message id of the last Confirmable response we acknowledged: a duplicate of it (our ACK
    /// was lost) is acknowledged again rather than reset (RFC 7252 4.5).
    last_acked_con: Option<u16>,
    /// The Block2 size of the request in flight (for [`Self::resend`]).
    szx: Option<u8>,
}

impl<R: RandomSource> EntropyClient<R> {
    /// A random value from the client's source, for the scheduler's jitter.
    pub(crate) fn random_u32(&mut self) -> u32 {
        self.rng.next_u32()
    }

    /// A client; the first message id is random (RFC 7252 4.4).
    pub fn new(cfg: ClientConfig, mut rng: R) -> Self {
        let next_mid = rng.next_u32() as u16;
        Self {
            cfg,
            rng,
            next_mid,
            token: [0; 4],
            state: State::Idle,
            body: Vec::new(),
            next_block: 0,
            transmit: VecDeque::new(),
            outcome: None,
            stats: ClientStats::default(),
            last_acked_con: None,
            szx: None,
        }
    }

    /// The transport under the client was replaced (a new secure session, e.g. after the
    /// server restarted): nothing sent over the old one can be answered any more, so the
    /// request in flight, if any, goes out again at once over the new one, as a new message
    /// (new message id, same token and block, fresh timeout), instead of waiting out the old
    /// exchange's doubled timeout. Datagrams still queued for the old transport are dropped:
    /// sent over the new one they would be a second request the server serves for nothing.
    pub fn resend(&mut self, now: Instant) {
        self.transmit.clear();
        if !self.is_idle() {
            self.send_request(now, self.szx);
        }
    }

    /// True when no fetch is in flight.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Starts a fetch with a fresh random token.
    pub fn start(&mut self, now: Instant) -> Result<(), Busy> {
        if !self.is_idle() {
            return Err(Busy);
        }
        self.token = self.rng.next_u32().to_be_bytes();
        self.body.clear();
        self.next_block = 0;
        self.outcome = None;
        self.send_request(now, self.cfg.block_szx);
        Ok(())
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => None,
            State::AwaitAck { deadline, .. } | State::AwaitSeparate { deadline } => Some(deadline),
        }
    }

    /// The finished fetch's result, once.
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    /// Retransmits or gives up when a deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::AwaitAck {
                msg,
                retransmits,
                timeout_ms,
                deadline,
                ..
            } if now >= *deadline => {
                if *retransmits >= MAX_RETRANSMIT {
                    self.finish(Outcome::Failed(FetchError::Timeout));
                } else {
                    *retransmits += 1;
                    *timeout_ms *= 2;
                    *deadline = now.plus_ms(*timeout_ms);
                    self.transmit.push_back(msg.clone());
                    self.stats.retransmissions += 1;
                }
            }
            State::AwaitSeparate { deadline } if now >= *deadline => {
                self.finish(Outcome::Failed(FetchError::Timeout));
            }
            _ => {}
        }
    }

    /// Handles one received datagram. Never panics; bad or unrelated input is counted and
    /// dropped (or answered with a Reset if it is Confirmable).
    pub fn handle_datagram(&mut self, now: Instant, buf: &[u8]) {
        let Ok(p) = Packet::from_bytes(buf) else {
            self.stats.ignored += 1;
            return;
        };
        let mid = p.header.message_id;
        let ours = p.get_token() == self.token.as_slice();
        match (p.header.get_type(), &self.state) {
            (MessageType::Acknowledgement, State::AwaitAck { mid: want, .. }) if mid == *want => {
                if p.header.code == MessageClass::Empty {
                    self.state = State::AwaitSeparate {
                        deadline: now.plus_ms(SEPARATE_RESPONSE_WAIT_MS),
                    };
                } else if ours && is_response(&p) {
                    self.handle_response(now, &p);
                } else {
                    // An ACK for our message id with a foreign token is not our answer.
                    self.stats.ignored += 1;
                }
            }
            (MessageType::Reset, State::AwaitAck { mid: want, .. }) if mid == *want => {
                self.finish(Outcome::Failed(FetchError::Reset));
            }
            (t @ (MessageType::Confirmable | MessageType::NonConfirmable), state)
                if ours && is_response(&p) && !matches!(state, State::Idle) =>
            {
                if t == MessageType::Confirmable {
                    self.send_empty(MessageType::Acknowledgement, mid);
                    self.last_acked_con = Some(mid);
                }
                self.handle_response(now, &p);
            }
            (MessageType::Confirmable, _) if ours && self.last_acked_con == Some(mid) => {
                self.send_empty(MessageType::Acknowledgement, mid);
                self.stats.ignored += 1;
            }
            (MessageType::Confirmable, _) => {
                // RFC 7252 4.2: a Confirmable message we cannot process is rejected.
                self.send_empty(MessageType::Reset, mid);
                self.stats.resets_sent += 1;
            }
            _ => self.stats.ignored += 1,
        }
    }

    fn handle_response(&mut self, now: Instant, p: &Packet) {
        let MessageClass::Response(code) = p.header.code else {
            self.stats.ignored += 1;
            return;
        };
        match code {
            ResponseType::Content => self.handle_content(now, p),
            ResponseType::TooManyRequests => {
                self.finish(Outcome::Failed(FetchError::RateLimited {
                    retry_after_s: max_age(p),
                }))
            }
            ResponseType::ServiceUnavailable => {
                self.finish(Outcome::Failed(FetchError::Unavailable {
                    retry_after_s: max_age(p),
                }))
            }
            _ => {
                let raw: u8 = p.header.code.into();
                self.finish(Outcome::Failed(FetchError::Code(raw)));
            }
        }
    }

    fn handle_content(&mut self, now: Instant, p: &Packet) {
        let block = match p.get_first_option(CoapOption::Block2) {
            None => None,
            Some(v) => match parse_block(v) {
                Some(b) => Some(b),
                None => return self.finish(Outcome::Failed(FetchError::BadBlock)),
            },
        };
        let Some(block) = block else {
            // The whole body in one response; only valid as an answer to block 0.
            if self.next_block != 0 {
                return self.finish(Outcome::Failed(FetchError::BadBlock));
            }
            return self.complete(&p.payload);
        };
        let size = block.size();
        let offset = u64::from(block.num) * size as u64;
        if block.num != self.next_block || offset != self.body.len() as u64 {
            return self.finish(Outcome::Failed(FetchError::BadBlock));
        }
        // Every block but the last is exactly one block long (RFC 7959 2.2).
        if block.more && p.payload.len() != size || p.payload.len() > size {
            return self.finish(Outcome::Failed(FetchError::BadBlock));
        }
        if self.body.len() + p.payload.len() > self.cfg.max_body {
            return self.finish(Outcome::Failed(FetchError::TooLarge));
        }
        self.body.extend_from_slice(&p.payload);
        if block.more {
            self.next_block = block.num + 1;
            self.send_request(now, Some(block.szx));
        } else {
            let body = core::mem::take(&mut self.body);
            self.complete(&body);
        }
    }

    fn complete(&mut self, body: &[u8]) {
        if body.is_empty() {
            self.finish(Outcome::Failed(FetchError::EmptyBody));
        } else if body.len() > self.cfg.max_body {
            self.finish(Outcome::Failed(FetchError::TooLarge));
        } else {
            self.finish(Outcome::Entropy(body.to_vec()));
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.state = State::Idle;
        self.body.clear();
        self.outcome = Some(outcome);
    }

    fn send_request(&mut self, now: Instant, szx: Option<u8>) {
        self.szx = szx;
        let mid = self.next_mid;
        self.next_mid = self.next_mid.wrapping_add(1);
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = mid;
        p.set_token(self.token.to_vec());
        for seg in &self.cfg.path {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in &self.cfg.query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        if let Some(szx) = szx {
            p.add_option(
                CoapOption::Block2,
                encode_uint((self.next_block << 4) | u32::from(szx & 7)),
            );
        }
        // A handful of short options: far below coap-lite's size limit, so this cannot fail; an
        // empty datagram would merely time out.
        let msg = p.to_bytes().unwrap_or_default();
        let span = ACK_TIMEOUT_MAX_MS - ACK_TIMEOUT_MS;
        let timeout_ms = ACK_TIMEOUT_MS + u64::from(self.rng.next_u32()) % (span + 1);
        self.transmit.push_back(msg.clone());
        self.stats.requests += 1;
        self.state = State::AwaitAck {
            mid,
            msg,
            retransmits: 0,
            timeout_ms,
            deadline: now.plus_ms(timeout_ms),
        };
    }

    fn send_empty(&mut self, t: MessageType, mid: u16) {
        let mut p = Packet::new();
        p.header.set_type(t);
        p.header.code = MessageClass::Empty;
        p.header.message_id = mid;
        if let Ok(b) = p.to_bytes() {
            self.transmit.push_back(b);
        }
    }
}

fn is_response(p: &Packet) -> bool {
    matches!(p.header.code, MessageClass::Response(_))
}

/// A decoded Block2 option value (RFC 7959 2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    num: u32,
    more: bool,
    szx: u8,
}

impl Block {
    fn size(self) -> usize {
        1 << (self.szx + 4)
    }
}

fn parse_block(v: &[u8]) -> Option<Block> {
    let x = decode_uint(v)?;
    let szx = (x & 7) as u8;
    // SZX 7 is reserved (BERT, only over reliable transports).
    if szx == 7 {
        return None;
    }
    Some(Block {
        num: x >> 4,
        more: x & 8 != 0,
        szx,
    })
}

/// Decodes a CoAP uint option of at most 3 bytes (Block2) or 4 bytes (Max-Age).
fn decode_uint(v: &[u8]) -> Option<u32> {
    if v.len() > 4 {
        return None;
    }
    Some(v.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// Minimal-length big-endian encoding (RFC 7252 3.2: no leading zero bytes).
fn encode_uint(x: u32) -> Vec<u8> {
    let b = x.to_be_bytes();
    let skip = b.iter().take_while(|&&z| z == 0).count();
    b[skip..].to_vec()
}

fn max_age(p: &Packet) -> u32 {
    p.get_first_option(CoapOption::MaxAge)
        .and_then(|v| decode_uint(v))
        .unwrap_or(DEFAULT_MAX_AGE_S)
}

#[cfg(test)]
pub(crate) mod tests;
