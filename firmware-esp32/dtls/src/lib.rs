//! DTLS 1.3 for the device core (issue 6): the CoAP entropy client of [`qeaas_device`] carried
//! over a wolfSSL client session, sans-IO.
//!
//! [`DtlsClient`] is one DTLS 1.3 association over wolfSSL memory I/O: ciphertext datagrams in
//! ([`DtlsClient::handle_datagram`]), ciphertext datagrams out ([`DtlsClient::poll_transmit`]),
//! a retransmission timer ([`DtlsClient::poll_timeout`], [`DtlsClient::handle_timeout`]); no
//! socket, no clock. [`SecureNode`] joins it to the device [`Node`]: the node's plaintext CoAP
//! goes through the session, and the node credits server bytes ([`Transport::Dtls`]) only
//! because nothing but the authenticated session's plaintext ever reaches it.
//!
//! A separate crate from `qeaas-device` so the portable core keeps no C dependency; `unsafe` is
//! confined to [`ffi`].
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod ffi;
mod reconnect;

use alloc::vec::Vec;

use qeaas_device::coap::ClientConfig;
use qeaas_device::node::{Node, Transport};
use qeaas_device::scheduler::RefreshConfig;
use qeaas_device::{Instant, RandomSource};

pub use ffi::{set_clock, SeedSource};
pub use reconnect::Reconnect;

/// Key exchange offered (and sent as the only key share: no HelloRetryRequest round trip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExchange {
    /// ML-KEM-512 (FIPS 203), the paper's choice.
    MlKem512,
    /// ECDHE on secp256r1, the classical baseline.
    P256,
}

/// How the server is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth<'a> {
    /// A certificate chaining to this CA (DER; ML-DSA-44 or ECDSA P-256), verified, and
    /// naming the server.
    Certificate {
        /// The trusted CA certificate, DER.
        ca_der: &'a [u8],
        /// The name the server's certificate must carry (a DNS subjectAltName, or the common
        /// name if it has none); also sent as SNI. `None` accepts any certificate the CA
        /// signed, which is sound only if the CA signs nothing but servers: a fleet's CA that
        /// also signs device certificates needs the name, or any device could pose as the
        /// server to the others.
        server_name: Option<&'a str>,
        /// The device's own certificate and key, presented when the server asks (a server
        /// with `[client_certs] require = true`). ECDSA P-256 on the device: its wolfSSL
        /// build verifies ML-DSA but cannot sign with it (`WOLFSSL_MLDSA_VERIFY_ONLY`).
        client: Option<ClientCert<'a>>,
    },
    /// A pre-shared key (DTLS 1.3 PSK with (EC)DHE / ML-KEM key exchange).
    Psk {
        /// Identity sent to the server.
        identity: &'a [u8],
        /// The key.
        key: &'a [u8],
    },
}

/// The device's certificate and private key, both DER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientCert<'a> {
    /// Certificate (DER).
    pub cert_der: &'a [u8],
    /// Private key (DER: PKCS#8 or SEC1).
    pub key_der: &'a [u8],
}

/// One client configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtlsConfig<'a> {
    /// Key exchange.
    pub kex: KeyExchange,
    /// Server authentication.
    pub auth: Auth<'a>,
}

/// A wolfSSL failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtlsError {
    /// Setting up the context or session failed (allocation, bad CA, unknown group): fatal
    /// for this configuration.
    Setup {
        /// The step.
        what: &'static str,
        /// wolfSSL's return or error code.
        code: i32,
    },
    /// The handshake failed (e.g. the certificate did not verify): fatal for this session.
    Handshake(i32),
    /// Reading or writing application data failed: fatal for this session.
    Record(i32),
    /// The server closed the session.
    Closed,
    /// A call was made in the wrong state (e.g. sending before the handshake).
    NotEstablished,
}

/// Where the session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Handshake in progress.
    Handshaking,
    /// Authenticated; application data flows.
    Established,
    /// Failed or closed; make a new session.
    Failed(DtlsError),
}

/// A DTLS 1.3 client association; see the crate documentation.
#[derive(Debug)]
pub struct DtlsClient {
    s: ffi::Session,
    state: State,
    deadline: Option<Instant>,
    plaintext: Vec<Vec<u8>>,
}

impl DtlsClient {
    /// A session for `cfg`. The CA and PSK are copied. On the device wolfSSL seeds its DRBG
    /// from `seed` during this call (the firmware passes its device pool); the host build
    /// seeds from the OS.
    pub fn new(cfg: &DtlsConfig<'_>, seed: SeedSource<'_>) -> Result<Self, DtlsError> {
        Self::resuming(cfg, seed, None)
    }

    fn resuming(
        cfg: &DtlsConfig<'_>,
        seed: SeedSource<'_>,
        ticket: Option<&ffi::Ticket>,
    ) -> Result<Self, DtlsError> {
        Ok(Self {
            s: ffi::Session::new(cfg, seed, ticket)?,
            state: State::Handshaking,
            deadline: None,
            plaintext: Vec::new(),
        })
    }

    /// True if the handshake offered a session ticket from an earlier session.
    pub fn offered_ticket(&self) -> bool {
        self.s.offered_ticket()
    }

    /// True once established if the server accepted the ticket: the session resumed the
    /// earlier one's authentication (no certificate sent or verified, no signature).
    pub fn resumed(&self) -> bool {
        self.is_established() && self.s.resumed()
    }

    /// Sends the first flight (ClientHello) and arms the timer.
    pub fn start(&mut self, now: Instant) {
        self.step_handshake(now);
    }

    /// The session's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once the server is authenticated.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// A ciphertext datagram from the server.
    pub fn handle_datagram(&mut self, now: Instant, d: &[u8]) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        self.s.feed(d);
        if self.state == State::Handshaking {
            self.step_handshake(now);
        }
        if self.state == State::Established {
            self.read_all();
        }
    }

    /// When [`Self::handle_timeout`] must next run (handshake retransmission), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Retransmits the last handshake flight when its timer has expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = self.deadline {
            if now >= t && self.state == State::Handshaking {
                if let Err(e) = self.s.got_timeout() {
                    self.fail(DtlsError::Handshake(e));
                    return;
                }
                self.arm(now);
            }
        }
    }

    /// The next ciphertext datagram for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.s.take_datagram()
    }

    /// Encrypts one plaintext datagram (one record).
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), DtlsError> {
        if self.state != State::Established {
            return Err(DtlsError::NotEstablished);
        }
        self.s.write(plaintext).map_err(|e| {
            self.fail(DtlsError::Record(e));
            DtlsError::Record(e)
        })
    }

    /// The next decrypted plaintext datagram from the authenticated server.
    pub fn poll_plaintext(&mut self) -> Option<Vec<u8>> {
        (!self.plaintext.is_empty()).then(|| self.plaintext.remove(0))
    }

    /// Negotiated key-exchange group name (e.g. `ML_KEM_512`), once established.
    pub fn group(&self) -> Option<&'static str> {
        self.s.group()
    }

    /// Negotiated cipher suite name.
    pub fn cipher(&self) -> Option<&'static str> {
        self.s.cipher()
    }

    fn step_handshake(&mut self, now: Instant) {
        match self.s.connect() {
            Ok(true) => {
                self.state = State::Established;
                self.deadline = None;
            }
            Ok(false) => self.arm(now),
            Err(e) => self.fail(DtlsError::Handshake(e)),
        }
    }

    fn arm(&mut self, now: Instant) {
        self.deadline = Some(now.plus_ms(u64::from(self.s.timeout_secs()) * 1000));
    }

    fn read_all(&mut self) {
        loop {
            match self.s.read() {
                Ok(Some(p)) => self.plaintext.push(p),
                Ok(None) => return,
                Err(e) => return self.fail(e),
            }
        }
    }

    fn fail(&mut self, e: DtlsError) {
        self.state = State::Failed(e);
        self.deadline = None;
    }
}

/// The device core with its CoAP carried over DTLS: server bytes are credited at 8 bits/byte
/// because only the authenticated session's plaintext reaches the node.
///
/// In certificate mode [`SecureNode::reconnect`] resumes with the DTLS 1.3 session ticket the
/// last session got, so that reconnecting (e.g. after the server restarted with the same
/// `ticket_key_file`) costs no certificate verification: the resumption secret comes from a
/// session that verified the server, and only the server that issued the ticket can use it. A
/// server that does not accept the ticket gets a full handshake, certificate verified as
/// always. PSK mode never resumes: its handshake already costs no signature.
#[derive(Debug)]
pub struct SecureNode<R> {
    node: Node<R>,
    dtls: DtlsClient,
    /// Which configuration the current session was made for ([`resumable`]).
    current: Option<[u8; 32]>,
    /// The newest ticket, and the configuration of the session that got it.
    ticket: Option<(ffi::Ticket, [u8; 32])>,
    /// The not-before floor every session is made with ([`Self::set_not_before_floor`]).
    floor: u64,
    /// Whether the current session checks the server's name, without which its certificate
    /// may not raise the floor ([`Self::server_not_before`]).
    names_server: bool,
}

/// True for certificate mode with a server name: only then is the verified certificate the
/// server's (without the name, any certificate of the CA, e.g. a device's, would do).
fn names_server(cfg: &DtlsConfig<'_>) -> bool {
    matches!(
        cfg.auth,
        Auth::Certificate {
            server_name: Some(_),
            ..
        }
    )
}

/// The configurations a ticket may be used with: certificate mode only, and only for the same
/// key exchange, CA, server name and client certificate (a reprovisioned device starts over).
fn resumable(cfg: &DtlsConfig<'_>) -> Option<[u8; 32]> {
    let Auth::Certificate {
        ca_der,
        server_name,
        client,
    } = cfg.auth
    else {
        return None;
    };
    let mut h = blake2s_simd::Params::new();
    let mut h = h.personal(b"qeaastkt").to_state();
    // Length-prefixed fields: no two configurations hash the same input.
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(&[cfg.kex as u8]);
    field(ca_der);
    field(server_name.unwrap_or("").as_bytes());
    field(&[u8::from(server_name.is_some())]);
    field(client.map_or(&[][..], |c| c.cert_der));
    field(client.map_or(&[][..], |c| c.key_der));
    let mut out = [0u8; 32];
    out.copy_from_slice(h.finalize().as_bytes());
    Some(out)
}

/// wolfSSL's DRBG seed drawn from the node's pool, one full-entropy block at a time: the pool
/// holds at most one 32-byte block of credit, so `refill` (the shell's TRNG top-up) runs before
/// each block. False, and the session is not made, if the pool cannot back the whole seed.
fn seed_from<R: RandomSource>(
    node: &mut Node<R>,
    refill: &mut dyn FnMut(&mut Node<R>),
    buf: &mut [u8],
) -> bool {
    buf.chunks_mut(qeaas_core::pool::MAX_EXTRACT).all(|block| {
        refill(node);
        node.fill(block).is_ok()
    })
}

impl<R: RandomSource> SecureNode<R> {
    /// A node whose fetches go over a new session for `cfg` (not started yet: call
    /// [`Self::start`]). wolfSSL's DRBG is seeded from the node's own pool; `refill` (the shell
    /// feeds the TRNG there) runs before each 32-byte block of the seed.
    pub fn new(
        now: Instant,
        client: ClientConfig,
        refresh: RefreshConfig,
        rng: R,
        cfg: &DtlsConfig<'_>,
        refill: &mut dyn FnMut(&mut Node<R>),
    ) -> Result<Self, DtlsError> {
        let node = Node::new(now, client, refresh, Transport::Dtls, rng);
        Self::with_node(node, cfg, refill).map_err(|(_, e)| e)
    }

    /// A new session (not started) around an existing node, which keeps its pool: a shell can
    /// start its pool from the TRNG before the network is up. The node must have been made with
    /// [`Transport::Dtls`], and nothing else may feed it datagrams; on failure it is handed
    /// back. `refill` as in [`Self::new`].
    // The node comes back by value on failure; `Ok(Self)` is as large, so boxing gains nothing.
    #[allow(clippy::result_large_err)]
    pub fn with_node(
        mut node: Node<R>,
        cfg: &DtlsConfig<'_>,
        refill: &mut dyn FnMut(&mut Node<R>),
    ) -> Result<Self, (Node<R>, DtlsError)> {
        if node.status().transport != Transport::Dtls {
            return Err((
                node,
                DtlsError::Setup {
                    what: "node transport is not Dtls",
                    code: 0,
                },
            ));
        }
        match DtlsClient::new(cfg, &mut |buf| seed_from(&mut node, refill, buf)) {
            Ok(dtls) => Ok(Self {
                node,
                dtls,
                current: resumable(cfg),
                ticket: None,
                floor: 0,
                names_server: names_server(cfg),
            }),
            Err(e) => Err((node, e)),
        }
    }

    /// Replaces the session by a new one for `cfg` (not started: call [`Self::start`]), seeded
    /// from the pool again (`refill` as in [`Self::new`]); the node and its pool stay. For a
    /// failed handshake, a failed record or a server that lost the session (restart). On error
    /// the old session is kept. In certificate mode the new handshake offers the newest ticket
    /// a session for the same `cfg` got (see the type's documentation).
    pub fn reconnect(
        &mut self,
        cfg: &DtlsConfig<'_>,
        refill: &mut dyn FnMut(&mut Node<R>),
    ) -> Result<(), DtlsError> {
        match (self.dtls.s.ticket(), self.current) {
            (Some(t), Some(c)) => self.ticket = Some((t, c)),
            // A full handshake that got no new ticket: the kept one predates the certificate
            // this session verified (and maybe the floor it raised); it is not resumed past it.
            (None, _) if self.dtls.is_established() && !self.dtls.s.resumed() => self.ticket = None,
            _ => {}
        }
        let want = resumable(cfg);
        if want.is_none() || self.ticket.as_ref().map(|(_, c)| *c) != want {
            self.ticket = None;
        }
        let node = &mut self.node;
        let ticket = self.ticket.as_ref().map(|(t, _)| t);
        self.dtls = DtlsClient::resuming(cfg, &mut |buf| seed_from(node, refill, buf), ticket)?;
        self.dtls.s.set_floor(self.floor);
        self.current = want;
        self.names_server = names_server(cfg);
        if !self.dtls.offered_ticket() {
            // Expired (wolfSSL would not offer it): it never will be again.
            self.ticket = None;
        }
        Ok(())
    }

    /// The not-before floor (issue 13, server identity; see [`qeaas_device::floor`]): from now
    /// on, this session included if it has not verified the server yet, a server certificate
    /// whose notBefore is earlier than `secs` (Unix seconds) fails the handshake. The shell
    /// reads the floor from flash at boot and raises it with [`Self::server_not_before`].
    pub fn set_not_before_floor(&mut self, secs: u64) {
        self.floor = secs;
        self.dtls.s.set_floor(secs);
    }

    /// Once established with a verified certificate: its notBefore, which the shell keeps as
    /// the new floor if it is higher (`qeaas_device::floor::Record::advance`). `None` after a
    /// resumption (no certificate), in PSK mode, and without a server name: there any
    /// certificate of the CA passes as the server's, and a far-future notBefore would then
    /// lock the device out of the real server for good (the floor still refuses older ones).
    pub fn server_not_before(&self) -> Option<u64> {
        if self.dtls.is_established() && self.names_server {
            self.dtls.s.peer_not_before()
        } else {
            None
        }
    }

    /// The node back, without its session.
    pub fn into_node(self) -> Node<R> {
        self.node
    }

    /// Starts the handshake.
    pub fn start(&mut self, now: Instant) {
        self.dtls.start(now);
    }

    /// Handles timers: the handshake's, then (once established) the node's fetches.
    pub fn poll(&mut self, now: Instant) {
        self.dtls.handle_timeout(now);
        if self.dtls.is_established() {
            self.node.poll(now);
            self.flush_node();
        }
    }

    /// A ciphertext datagram from the server.
    pub fn handle_datagram(&mut self, now: Instant, d: &[u8]) {
        let was_established = self.dtls.is_established();
        self.dtls.handle_datagram(now, d);
        if !was_established && self.dtls.is_established() {
            // A new session: a fetch begun over a lost one goes out again now.
            self.node.transport_restarted(now);
        }
        while let Some(p) = self.dtls.poll_plaintext() {
            self.node.handle_datagram(now, &p);
        }
        self.flush_node();
    }

    /// The next ciphertext datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.dtls.poll_transmit()
    }

    /// When [`Self::poll`] must next run: once the handshake is done, at once (the first fetch
    /// starts in `poll`, so a shell can tell the handshake's cost from the request's).
    pub fn poll_timeout(&self) -> Instant {
        match (self.dtls.poll_timeout(), self.dtls.is_established()) {
            (Some(t), _) => t,
            (None, true) => self.node.poll_timeout(),
            // Failed: nothing to wait for; the shell decides whether to start again.
            (None, false) => Instant(u64::MAX),
        }
    }

    /// The session.
    pub fn dtls(&self) -> &DtlsClient {
        &self.dtls
    }

    /// The device core (pool, status, TRNG input).
    pub fn node(&self) -> &Node<R> {
        &self.node
    }

    /// The device core, mutable (TRNG input, pool output).
    pub fn node_mut(&mut self) -> &mut Node<R> {
        &mut self.node
    }

    fn flush_node(&mut self) {
        if !self.dtls.is_established() {
            return;
        }
        while let Some(p) = self.node.poll_transmit() {
            // A failed write fails the session; the CoAP client then times out and backs off.
            if self.dtls.send(&p).is_err() {
                return;
            }
        }
    }
}
