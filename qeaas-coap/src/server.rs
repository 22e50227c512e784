//! The DTLS side of the frontend, sans-IO: datagrams and `now` in, datagrams and entropy
//! fetches out. [`crate::run`] drives it from one tokio UDP socket.
//!
//! No per-peer state exists before a peer proves its address: every datagram from an unknown
//! address goes to one shared *listener* session that answers a ClientHello without a valid
//! cookie with a HelloVerifyRequest (DTLS 1.2) or HelloRetryRequest (DTLS 1.3) and keeps
//! nothing. Only a ClientHello carrying a valid cookie turns the listener into that peer's
//! session (a fresh listener replaces it). Handshakes in flight and sessions are capped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qeaas_client::PoolBytes;
use qeaas_wolfssl_sys::{ClientAuth, Context, Error as TlsError, Progress, Session};
use tracing::{debug, info};

use crate::block::MAX_SZX;
use crate::coap::{Action, Endpoint, Exchange, Refusal, Unavailable};
use crate::identity;
use crate::quota::{Quotas, Verdict};

/// Limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest `n=`.
    pub max_bytes: usize,
    /// Established sessions.
    pub max_sessions: usize,
    /// Handshakes past the cookie.
    pub max_handshakes: usize,
    /// Idle timeout of an established session.
    pub idle: Duration,
    /// Deadline of a handshake.
    pub handshake: Duration,
}

/// Block-wise answers (RFC 7959), from the configuration.
#[derive(Debug, Clone)]
pub struct BlockLimits {
    /// Our block size exponent: blocks of `16 << szx` bytes (at most [`MAX_SZX`]).
    pub szx: u8,
    /// Bytes of block-wise bodies held (or being fetched) by all sessions together at most;
    /// a block-0 request that would exceed it gets 5.03 before anything is fetched.
    pub store_bytes: usize,
    /// A stored body is wiped this long after block 0 even if the client never finished.
    pub life: Duration,
}

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits {
            szx: MAX_SZX,
            store_bytes: 1 << 20,
            life: Duration::from_secs(30),
        }
    }
}

/// Something for the I/O loop to do.
#[derive(Debug)]
pub enum Out {
    /// Send a datagram.
    Send(SocketAddr, Vec<u8>),
    /// Get `exchange.n` bytes from qeaasd, then call [`Server::complete`].
    Fetch(Fetch),
}

/// A request waiting for the daemon.
#[derive(Debug)]
pub struct Fetch {
    /// The peer.
    pub peer: SocketAddr,
    /// Which session at that address asked: a later session from the same address (a new
    /// handshake after this one ended) must not receive this answer.
    session: u64,
    /// The decrypted request (for duplicate detection).
    request: Vec<u8>,
    /// The CoAP exchange.
    pub exchange: Exchange,
}

/// Counters for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Handshakes completed.
    pub handshakes: u64,
    /// Handshakes failed after the cookie (wrong key, unknown identity...).
    pub failed: u64,
    /// Pool bytes sent to peers (first transmissions only).
    pub bytes_served: u64,
    /// Datagrams dropped because a cap was reached.
    pub dropped_at_cap: u64,
    /// Requests refused with 4.29 (or 4.00 when larger than the whole quota).
    pub over_quota: u64,
    /// Bytes received from peers with no state yet (before their cookie verified).
    pub unverified_in: u64,
    /// Bytes sent to peers with no state yet: HelloVerifyRequests and HelloRetryRequests.
    /// Never more than `unverified_in`, so the listener amplifies nothing.
    pub unverified_out: u64,
    /// Answers to unverified peers left unsent because they were larger than the datagram
    /// that drew them (a forged source would have been sent more than the attacker spent).
    pub dropped_amplifying: u64,
}

struct Peer {
    id: u64,
    session: Session,
    /// The random of the ClientHello that made this session: a ClientHello with another random
    /// from the same address is a restarted client, not a retransmission.
    hello_random: Option<[u8; 32]>,
    established: bool,
    /// Whose quota this session's requests count against: the PSK identity, the name in a
    /// verified client certificate, else (a client that authenticated only the server)
    /// `addr:` and its IP address ([`identity::of_session`]).
    identity: String,
    started: Instant,
    last: Instant,
    timer: Instant,
    coap: Endpoint,
}

/// All DTLS and CoAP state of the frontend.
pub struct Server {
    ctx: Context,
    secret: Vec<u8>,
    listener: Option<Session>,
    peers: HashMap<SocketAddr, Peer>,
    limits: Limits,
    blocks: BlockLimits,
    quotas: Quotas,
    /// Seeds CoAP message ids per peer (they need only be unique per endpoint).
    mid_seed: u16,
    /// Numbers sessions, so answers go only to the session that asked.
    next_session: u64,
    counters: Counters,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("peers", &self.peers.len())
            .field("counters", &self.counters)
            .finish()
    }
}

/// Largest decrypted CoAP message we accept.
const MAX_PLAIN: usize = 1500;

impl Server {
    /// `ctx`: a server context with credentials; `secret`: the cookie key (random per run).
    pub fn new(ctx: Context, secret: Vec<u8>, limits: Limits) -> Server {
        Server {
            ctx,
            secret,
            listener: None,
            peers: HashMap::new(),
            limits,
            blocks: BlockLimits::default(),
            quotas: Quotas::default(),
            mid_seed: 1,
            next_session: 0,
            counters: Counters::default(),
        }
    }

    /// Block-wise limits (default: [`BlockLimits::default`]), for sessions made from now on.
    pub fn set_blocks(&mut self, b: BlockLimits) {
        self.blocks = b;
    }

    /// Per-identity quotas (default: none).
    pub fn set_quotas(&mut self, q: Quotas) {
        self.quotas = q;
    }

    /// Bytes held or being fetched for block-wise answers, all sessions together.
    pub fn stored_bytes(&self) -> usize {
        self.peers.values().map(|p| p.coap.stored_bytes()).sum()
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Peers with state (handshaking or established).
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// Peers past the cookie whose handshake is not finished.
    pub fn handshaking(&self) -> usize {
        self.peers.values().filter(|p| !p.established).count()
    }

    fn listener(&mut self, from: SocketAddr) -> Result<&mut Session, TlsError> {
        if self.listener.is_none() {
            let mut l = Session::new(&self.ctx, from)?;
            l.set_cookie_secret(&self.secret)?;
            self.listener = Some(l);
        }
        let l = self.listener.as_mut().expect("set above");
        l.set_peer(from)?;
        Ok(l)
    }

    /// One datagram from `from`.
    pub fn on_datagram(&mut self, from: SocketAddr, data: &[u8], now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let replacing = match self.peers.get(&from) {
            // A device that rebooted (no close_notify) comes back from the same address with
            // a new ClientHello: it goes through the cookie exchange, and only a verified
            // cookie replaces the old session (RFC 6347 4.2.8), so an off-path sender cannot
            // end a session. Retransmissions of the hello that made the session stay with it.
            Some(p) => match client_hello_random(data) {
                Some(r) if Some(r) != p.hello_random => true,
                _ => {
                    self.on_peer_datagram(from, data, now, &mut out);
                    return out;
                }
            },
            None => false,
        };
        if !replacing && self.peers.len() >= self.limits.max_sessions {
            // Not even a cookie: answering would let a flood cost us CPU for nothing.
            self.counters.dropped_at_cap += 1;
            return out;
        }
        let l = match self.listener(from) {
            Ok(l) => l,
            Err(e) => {
                debug!(%from, "listener: {e}");
                self.listener = None;
                return out;
            }
        };
        l.feed(data);
        let verified = l.accept_stateless();
        let answer = l.take_datagrams();
        let sent: u64 = answer.iter().map(|d| d.len() as u64).sum();
        self.counters.unverified_in += data.len() as u64;
        let unverified = !matches!(verified, Ok(true));
        if unverified && sent > data.len() as u64 {
            // The source address is unproven until the cookie returns: an answer larger than
            // the datagram would let a forged source aim more bytes at a victim than the
            // attacker sends (a ~98-byte ClientHello without a key share draws a ~150-byte
            // HelloRetryRequest). Say nothing, as if it were lost: a real client's hello
            // carries a key share and is larger than our cookie request.
            self.counters.dropped_amplifying += 1;
            debug!(%from, got = data.len(), answer = sent, "pre-cookie answer larger than the datagram: not sent");
        } else {
            if unverified {
                self.counters.unverified_out += sent;
            }
            out.extend(answer.into_iter().map(|d| Out::Send(from, d)));
        }
        match verified {
            Ok(false) => {}
            Ok(true) => {
                let session = self.listener.take().expect("listener present");
                if self.handshaking() >= self.limits.max_handshakes {
                    // The client will retransmit and may get in once others finish.
                    self.counters.dropped_at_cap += 1;
                    return out;
                }
                if replacing {
                    info!(%from, "a new client at this address: its old session ends");
                    self.peers.remove(&from);
                }
                debug!(%from, "cookie verified: new session");
                self.mid_seed = self.mid_seed.wrapping_add(0x1001);
                self.next_session += 1;
                self.peers.insert(
                    from,
                    Peer {
                        session,
                        hello_random: client_hello_random(data),
                        established: false,
                        identity: String::new(),
                        started: now,
                        last: now,
                        timer: now,
                        id: self.next_session,
                        coap: Endpoint::new(self.limits.max_bytes, self.mid_seed)
                            .with_blocks(self.blocks.szx, self.blocks.life),
                    },
                );
                // The ClientHello was consumed; continue with our flight.
                self.on_peer_datagram(from, &[], now, &mut out);
            }
            Err(e) => {
                // Garbage or a fatal alert: start over with a fresh listener, keep nothing.
                debug!(%from, "stateless accept: {e}");
                self.listener = None;
            }
        }
        out
    }

    fn on_peer_datagram(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        // Out of the map while it is handled, so the other sessions' stored bytes can be
        // counted; put back unless the session ended.
        let Some(mut p) = self.peers.remove(&from) else {
            return;
        };
        if !data.is_empty() {
            p.session.feed(data);
        }
        p.last = now;
        let mut drop_peer = false;
        if !p.established {
            match p.session.handshake() {
                Ok(Progress::Done) => match identity::of_session(
                    p.session.psk_identity(),
                    p.session.peer_certificate_names(),
                    self.ctx.client_auth() == ClientAuth::Required,
                    from.ip(),
                ) {
                    Ok(id) => {
                        p.established = true;
                        p.identity = id.name();
                        self.counters.handshakes += 1;
                        info!(
                            peer = %from,
                            version = p.session.version().unwrap_or_default(),
                            cipher = p.session.cipher().unwrap_or_default(),
                            group = p.session.group().unwrap_or_default(),
                            auth = id.kind(),
                            identity = p.identity,
                            resumed = p.session.resumed(),
                            "handshake done"
                        );
                    }
                    Err(e) => {
                        // Nothing was read from this client yet: it ends here, unserved
                        // (close_notify goes out with the rest of our flight, below).
                        info!(peer = %from, "client refused: {e}");
                        p.session.close();
                        self.counters.failed += 1;
                        drop_peer = true;
                    }
                },
                Ok(Progress::WantRead) => {
                    p.timer = now + Duration::from_secs(u64::from(p.session.timeout_secs()));
                }
                Err(e) => {
                    info!(peer = %from, "handshake failed: {e}");
                    self.counters.failed += 1;
                    drop_peer = true;
                }
            }
        }
        if p.established && !drop_peer {
            let mut buf = vec![0u8; MAX_PLAIN];
            loop {
                match p.session.read(&mut buf) {
                    Ok(Some(n)) => {
                        let req = &buf[..n];
                        if let Some(r) = p.coap.cached(req, now) {
                            if p.session.write(&r).is_err() {
                                drop_peer = true;
                                break;
                            }
                            continue;
                        }
                        if p.coap.is_pending(req) {
                            // Its answer follows when the daemon's bytes arrive.
                            continue;
                        }
                        match p.coap.handle(req, now) {
                            Action::Ignore => {}
                            Action::Reply(r) => {
                                p.coap.remember(req, &r, now);
                                if r.is_empty() || p.session.write(&r).is_err() {
                                    drop_peer = true;
                                    break;
                                }
                            }
                            Action::Entropy(exchange) => match self.admit(&mut p, &exchange, now) {
                                Ok(()) => out.push(Out::Fetch(Fetch {
                                    peer: from,
                                    session: p.id,
                                    request: req.to_vec(),
                                    exchange,
                                })),
                                Err(why) => {
                                    let r = p.coap.refuse(req, exchange, why, now);
                                    if r.is_empty() || p.session.write(&r).is_err() {
                                        drop_peer = true;
                                        break;
                                    }
                                }
                            },
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(peer = %from, "session ends: {e}");
                        drop_peer = true;
                        break;
                    }
                }
            }
        }
        for d in p.session.take_datagrams() {
            out.push(Out::Send(from, d));
        }
        if !drop_peer {
            self.peers.insert(from, p);
        }
    }

    /// Room and quota for a request about to be fetched, decided before the daemon is asked:
    /// a refused request draws nothing from the pool. `p` is out of the map.
    fn admit(&mut self, p: &mut Peer, x: &Exchange, now: Instant) -> Result<(), Refusal> {
        // The session's own stored body would be replaced, so only the others count.
        if x.is_blockwise() && self.stored_bytes() + x.n > self.blocks.store_bytes {
            return Err(Refusal::NoRoom);
        }
        // A block-wise body counts once, whole, here at block 0; later blocks are free.
        match self.quotas.charge(&p.identity, x.n as u64, now) {
            Verdict::Granted => {}
            Verdict::RetryAfter(secs) => {
                self.counters.over_quota += 1;
                return Err(Refusal::TooMany(secs));
            }
            Verdict::Never => {
                self.counters.over_quota += 1;
                return Err(Refusal::OverQuota);
            }
        }
        p.coap.admit(x);
        Ok(())
    }

    /// The daemon answered `fetch`: encrypt and send the CoAP response.
    pub fn complete(
        &mut self,
        fetch: Fetch,
        bytes: Result<PoolBytes, Unavailable>,
        now: Instant,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(p) = self
            .peers
            .get_mut(&fetch.peer)
            .filter(|p| p.id == fetch.session)
        else {
            // The session ended meanwhile: the bytes are dropped, never given to anyone else.
            return out;
        };
        let served = bytes.as_ref().map(|b| b.len()).unwrap_or(0);
        let ok = bytes.as_ref().is_ok_and(|b| b.len() == fetch.exchange.n);
        let r = p.coap.finish(fetch.exchange, bytes, now);
        p.coap.remember(&fetch.request, &r, now);
        if p.session.write(&r).is_ok() {
            if ok {
                self.counters.bytes_served += served as u64;
            }
        } else {
            p.session.take_datagrams();
            self.peers.remove(&fetch.peer);
            return out;
        }
        for d in p.session.take_datagrams() {
            out.push(Out::Send(fetch.peer, d));
        }
        out
    }

    /// Timers: handshake retransmissions and deadlines, idle sessions.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let mut gone = Vec::new();
        self.quotas.prune(now);
        for (a, p) in self.peers.iter_mut() {
            p.coap.expire(now);
            if p.established {
                if now.saturating_duration_since(p.last) >= self.limits.idle {
                    p.session.close();
                    gone.push(*a);
                }
            } else if now.saturating_duration_since(p.started) >= self.limits.handshake {
                // A wrong PSK shows up here in DTLS 1.2: the client's Finished does not
                // decrypt and is silently discarded, as records that fail to decrypt must be.
                info!(peer = %a, "handshake timed out");
                self.counters.failed += 1;
                gone.push(*a);
            } else if now >= p.timer {
                if p.session.on_timeout().is_err() {
                    gone.push(*a);
                }
                p.timer = now + Duration::from_secs(u64::from(p.session.timeout_secs()));
            }
            for d in p.session.take_datagrams() {
                out.push(Out::Send(*a, d));
            }
        }
        for a in gone {
            debug!(peer = %a, "session expired");
            self.peers.remove(&a);
        }
        out
    }
}

/// The client random of a DTLS ClientHello (1.2 or 1.3) in its first record, if `data` starts
/// with one: plaintext handshake record of epoch 0, message type 1, fragment offset 0.
fn client_hello_random(data: &[u8]) -> Option<[u8; 32]> {
    // Record: type, version (2), epoch (2), sequence (6), length (2). Handshake: type,
    // length (3), message_seq (2), fragment_offset (3), fragment_length (3). Body: version (2),
    // random (32).
    let is_hello = data.first() == Some(&22)
        && data.get(3..5) == Some(&[0, 0])
        && data.get(13) == Some(&1)
        && data.get(19..22) == Some(&[0, 0, 0]);
    if !is_hello {
        return None;
    }
    data.get(27..59)?.try_into().ok()
}
