//! The client side, for `qeaas-fetch` and the handshake measurements: a DTLS client over one
//! connected UDP socket ([`Client`]) and a sans-IO confirmable, block-wise CoAP GET
//! ([`BlockGet`]) that it drives.
//!
//! The client counts every UDP payload byte and datagram it sends and receives ([`Wire`]), so
//! a caller can tell what a handshake or a request cost on the wire.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use qeaas_wolfssl_sys::{
    Context, Error as TlsError, Format, Group, Progress, Role, Session, Version,
};

/// Why a fetch failed. Every variant is fatal for the fetch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not `coaps://HOST[:PORT]/PATH[?QUERY]`.
    #[error("bad URL {0:?}: {1}")]
    Url(String, &'static str),
    /// The host name did not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    /// A socket operation failed.
    #[error("UDP: {0}")]
    Io(#[from] std::io::Error),
    /// The options do not make a valid DTLS setup (e.g. ML-KEM with DTLS 1.2).
    #[error("{0}")]
    Setup(String),
    /// wolfSSL refused a credential or failed the handshake (wrong key, untrusted certificate).
    #[error("DTLS handshake failed: {0}{hint}", hint = hint(.0.code))]
    Handshake(TlsError),
    /// wolfSSL failed outside the handshake.
    #[error("DTLS: {0}")]
    Tls(TlsError),
    /// No answer in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The server answered with an error code (4.xx, 5.xx).
    #[error("server answered {code}{}{}", if .message.is_empty() { String::new() } else { format!(": {}", .message) }, .max_age.map(|s| format!(" (Max-Age {s}: retry in {s} s)")).unwrap_or_default())]
    Status {
        /// The CoAP code, e.g. `4.00`.
        code: String,
        /// The diagnostic payload, as text.
        message: String,
        /// The Max-Age option, if any: when to retry a 4.29 or 5.03.
        max_age: Option<u32>,
    },
    /// The server's answer made no sense (wrong block, oversized body).
    #[error("bad answer: {0}")]
    Protocol(String),
}

/// What the common wolfSSL handshake errors mean for a user of `qeaas-fetch`.
fn hint(code: i32) -> &'static str {
    match code {
        -313 => {
            " (the server refused us: wrong PSK identity or key, or it wants a client \
             certificate (--cert, --key) from its own CA?)"
        }
        -188 | -155 => " (the server's certificate is not signed by the --ca given)",
        -150 | -151 => " (a certificate is not valid now: check the clocks)",
        -322 | -325 => " (the certificate does not name the host in the URL)",
        _ => "",
    }
}

/// A parsed `coaps://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// UDP port (5684 when absent).
    pub port: u16,
    /// Uri-Path segments.
    pub path: Vec<String>,
    /// Uri-Query items (`n=32`).
    pub query: Vec<String>,
}

impl Target {
    /// Parses `coaps://HOST[:PORT]/PATH[?QUERY]`. Percent-encoding is not decoded: the
    /// resources we serve have plain ASCII names.
    pub fn parse(url: &str) -> Result<Target, FetchError> {
        let bad = |why| FetchError::Url(url.to_string(), why);
        let rest = url.strip_prefix("coaps://").ok_or_else(|| {
            bad("only coaps:// is supported (plain CoAP would be unauthenticated)")
        })?;
        let (authority, rest) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 5684,
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let path = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let query = query
            .map(|q| {
                q.split('&')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Target {
            host: host.to_string(),
            port,
            path,
            query,
        })
    }

    /// The first address the host resolves to.
    pub fn resolve(&self) -> Result<SocketAddr, FetchError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| FetchError::Resolve(self.host.clone(), e))?
            .next()
            .ok_or_else(|| {
                FetchError::Resolve(self.host.clone(), std::io::ErrorKind::NotFound.into())
            })
    }
}

/// How the client authenticates the server.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A pre-shared key (both sides authenticated).
    Psk {
        /// The identity sent to the server.
        identity: Vec<u8>,
        /// The key.
        key: Vec<u8>,
    },
    /// The server's certificate must chain to one of these CA certificates (PEM or DER).
    Ca(Vec<u8>),
    /// Certificates are accepted unverified: anyone on the path can impersonate the server.
    Insecure,
}

/// A client context for `version`, `group` and `auth`. `psk_only` (DTLS 1.3 PSK without a
/// key exchange) has no forward secrecy; it exists to measure what the key exchange costs.
pub fn client_context(
    version: Version,
    group: Option<Group>,
    auth: &Auth,
) -> Result<Context, FetchError> {
    let pq = matches!(
        group,
        Some(Group::MlKem512 | Group::MlKem768 | Group::X25519MlKem768)
    );
    if version == Version::Dtls12 && pq {
        return Err(FetchError::Setup(
            "ML-KEM groups need DTLS 1.3 (--dtls 1.3)".into(),
        ));
    }
    let mut ctx = Context::new(Role::Client, version).map_err(setup)?;
    if let Some(g) = group {
        ctx.set_groups(&[g]).map_err(setup)?;
    }
    match auth {
        Auth::Psk { identity, key } => {
            if identity.is_empty() || identity.len() > 127 || identity.contains(&0) {
                return Err(FetchError::Setup(
                    "PSK identity must be 1..=127 bytes without NUL".into(),
                ));
            }
            if key.is_empty() || key.len() > 64 {
                return Err(FetchError::Setup("PSK key must be 1..=64 bytes".into()));
            }
            ctx.set_psk_client(identity, key);
            // Without this, wolfSSL's default (no verification) would accept a server that
            // skips the PSK and shows any certificate: the PSK would authenticate nothing.
            ctx.refuse_certificates();
            if group.is_none() && version == Version::Dtls13 {
                ctx.psk_without_key_exchange().map_err(setup)?;
            }
        }
        Auth::Ca(ca) => {
            ctx.verify_peer(ca, format_of(ca)).map_err(setup)?;
        }
        Auth::Insecure => {}
    }
    Ok(ctx)
}

/// PEM if it looks like PEM, else DER.
fn format_of(data: &[u8]) -> Format {
    if data.windows(10).any(|w| w == b"-----BEGIN") {
        Format::Pem
    } else {
        Format::Der
    }
}

/// Adds our certificate chain (leaf first) and its key, ECDSA P-256 or ML-DSA-44, PEM or DER,
/// for servers that ask for one (`[client_certs]` in coapd.toml): it names us there. Not with
/// [`Auth::Psk`]: PSK handshakes carry no certificates.
pub fn use_client_certificate(
    ctx: &mut Context,
    chain: &[u8],
    key: &[u8],
) -> Result<(), FetchError> {
    ctx.use_client_certificate(chain, format_of(chain), key, format_of(key))
        .map_err(|e| FetchError::Setup(format!("client certificate: {e}")))
}

/// A credential or option wolfSSL refused while building the context.
fn setup(e: TlsError) -> FetchError {
    FetchError::Setup(e.to_string())
}

/// UDP payload bytes and datagrams, each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// Bytes sent by us.
    pub sent_bytes: u64,
    /// Datagrams sent by us.
    pub sent_datagrams: u64,
    /// Bytes received.
    pub recv_bytes: u64,
    /// Datagrams received.
    pub recv_datagrams: u64,
}

/// CoAP retransmission parameters (RFC 7252 4.8: ACK_TIMEOUT 2 s, MAX_RETRANSMIT 4).
#[derive(Debug, Clone, Copy)]
pub struct Retransmit {
    /// First wait for an answer; doubled after each retransmission.
    pub ack_timeout: Duration,
    /// Retransmissions before giving up.
    pub max_retransmit: u32,
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            ack_timeout: Duration::from_secs(2),
            max_retransmit: 4,
        }
    }
}

/// A DTLS association with one server over a connected UDP socket.
#[derive(Debug)]
pub struct Client {
    sock: UdpSocket,
    session: Session,
    wire: Wire,
    next_mid: u16,
}

impl Client {
    /// Handshakes with `server` within `timeout`. With a `group` in DTLS 1.3 the first
    /// ClientHello carries its key share (no HelloRetryRequest beyond the cookie). With
    /// `host`, a verified certificate must also name it.
    pub fn connect(
        server: SocketAddr,
        host: Option<&str>,
        ctx: &Context,
        group: Option<Group>,
        timeout: Duration,
    ) -> Result<Client, FetchError> {
        let bind: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(server)?;
        let mut session = Session::new(ctx, server).map_err(FetchError::Tls)?;
        if let Some(h) = host {
            session.expect_host(h).map_err(setup)?;
        }
        if let Some(g) = group {
            // DTLS 1.2 has no key shares; wolfSSL refuses the call there, harmlessly.
            let _ = session.use_key_share(g);
        }
        let mut seed = [0u8; 2];
        getrandom::fill(&mut seed).map_err(|e| FetchError::Io(std::io::Error::other(e)))?;
        let mut c = Client {
            sock,
            session,
            wire: Wire::default(),
            next_mid: u16::from_ne_bytes(seed),
        };
        let deadline = Instant::now() + timeout;
        loop {
            let p = c.session.handshake().map_err(FetchError::Handshake)?;
            c.flush()?;
            if p == Progress::Done {
                return Ok(c);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(FetchError::Timeout(
                    "DTLS handshake (server down, or a wrong key: DTLS 1.2 servers drop what they cannot decrypt)",
                ));
            }
            let wait = Duration::from_secs(u64::from(c.session.timeout_secs()));
            if !c.recv_until((now + wait).min(deadline))? && Instant::now() < deadline {
                c.session.on_timeout().map_err(FetchError::Handshake)?;
            }
        }
    }

    /// What went over the wire so far.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The DTLS session (negotiated version, group, cipher).
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn flush(&mut self) -> Result<(), FetchError> {
        for d in self.session.take_datagrams() {
            self.sock.send(&d)?;
            self.wire.sent_bytes += d.len() as u64;
            self.wire.sent_datagrams += 1;
        }
        Ok(())
    }

    /// Waits for one datagram until `until` and feeds it; false on timeout.
    fn recv_until(&mut self, until: Instant) -> Result<bool, FetchError> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.sock.set_read_timeout(Some(left))?;
        let mut b = [0u8; 16384];
        match self.sock.recv(&mut b) {
            Ok(n) => {
                self.wire.recv_bytes += n as u64;
                self.wire.recv_datagrams += 1;
                self.session.feed(&b[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            // Includes ConnectionRefused: an ICMP port unreachable, nobody listens there.
            Err(e) => Err(FetchError::Io(e)),
        }
    }

    /// A confirmable GET of `target`'s path and query, retransmitted per `rt`, following
    /// Block2 until the whole body arrived.
    pub fn get(&mut self, target: &Target, rt: Retransmit) -> Result<Vec<u8>, FetchError> {
        let mut token = [0u8; 4];
        getrandom::fill(&mut token).map_err(|e| FetchError::Io(std::io::Error::other(e)))?;
        let mut ex = BlockGet::new(target, token.to_vec(), self.next_mid);
        loop {
            // One confirmable request (one block), with its retransmissions.
            let req = ex.request();
            self.next_mid = ex.mid().wrapping_add(1);
            // RFC 7252 4.2: the first timeout is random in [ACK_TIMEOUT, 1.5 ACK_TIMEOUT], so
            // that clients started together do not retransmit together.
            let mut r = [0u8; 1];
            getrandom::fill(&mut r).map_err(|e| FetchError::Io(std::io::Error::other(e)))?;
            let mut timeout = rt.ack_timeout + rt.ack_timeout.mul_f64(f64::from(r[0]) / 510.0);
            let mut tries = 0;
            let mut acked = false;
            'request: loop {
                if !acked {
                    self.session.write(&req).map_err(FetchError::Tls)?;
                    self.flush()?;
                }
                let until = Instant::now() + timeout;
                while Instant::now() < until {
                    if !self.recv_until(until)? {
                        break;
                    }
                    let mut buf = [0u8; 16384];
                    while let Some(n) = self.session.read(&mut buf).map_err(FetchError::Tls)? {
                        let step = ex.on_response(&buf[..n]);
                        if let Some(ack) = ex.take_ack() {
                            self.session.write(&ack).map_err(FetchError::Tls)?;
                        }
                        match step {
                            Step::Ignore => {}
                            Step::Wait => acked = true,
                            Step::Next => {
                                self.flush()?;
                                break 'request;
                            }
                            Step::Done(r) => {
                                self.flush()?;
                                return r;
                            }
                        }
                    }
                    // DTLS 1.3 ACKs of the server's records.
                    self.flush()?;
                }
                if acked {
                    // A separate response is on its way; wait as long as for the whole
                    // retransmission schedule, without resending.
                    if tries >= rt.max_retransmit {
                        return Err(FetchError::Timeout("separate CoAP response"));
                    }
                    tries += 1;
                    continue;
                }
                if tries >= rt.max_retransmit {
                    return Err(FetchError::Timeout("CoAP response"));
                }
                tries += 1;
                timeout *= 2;
            }
        }
    }

    /// Sends close_notify so the server frees the session now.
    pub fn close(mut self) {
        self.session.close();
        let _ = self.flush();
    }
}

/// What `qeaas-fetch --follow` (the feeder of a downstream qeaasd's `upstream` source) does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowStep {
    /// Fetch again on the same session.
    Again,
    /// The server said "not now" (4.29 over quota, 5.03 no entropy): wait, same session.
    Wait(Duration),
    /// The session or the path to the server failed: a new handshake after this pause.
    Reconnect(Duration),
    /// Retrying cannot help (a bad URL or setup, a 4.xx other than 4.29): give up.
    Stop,
}

/// The feeder's retry policy, apart from sockets and clocks so it can be tested: honour the
/// server's Max-Age, back off exponentially (1 s doubling to 5 min) while the server is
/// unreachable, and never hammer a server that refuses the request itself.
#[derive(Debug, Default)]
pub struct FollowPolicy {
    failures: u32,
}

impl FollowPolicy {
    /// Longest pause between reconnection attempts.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
    /// Pause after a 4.29 or 5.03 without Max-Age (RFC 7252's default Max-Age is 60 s, too
    /// long for a feeder whose pool may be waiting).
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

    fn backoff(&mut self) -> Duration {
        let d = Duration::from_secs(1u64 << self.failures.min(9)).min(Self::MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// After a handshake attempt failed.
    pub fn on_connect_error(&mut self, e: &FetchError) -> FollowStep {
        match e {
            FetchError::Url(..) | FetchError::Setup(_) => FollowStep::Stop,
            _ => FollowStep::Reconnect(self.backoff()),
        }
    }

    /// After a GET on an established session.
    pub fn on_fetch<T>(&mut self, r: &Result<T, FetchError>) -> FollowStep {
        match r {
            Ok(_) => {
                self.failures = 0;
                FollowStep::Again
            }
            Err(FetchError::Status { code, max_age, .. })
                if code == "4.29" || code.starts_with('5') =>
            {
                // The server answered, so the path works: the backoff starts over.
                self.failures = 0;
                let s = max_age.map_or(Self::DEFAULT_WAIT, |s| Duration::from_secs(u64::from(s)));
                FollowStep::Wait(s.clamp(Duration::from_secs(1), Self::MAX_BACKOFF))
            }
            Err(FetchError::Status { .. } | FetchError::Url(..) | FetchError::Setup(_)) => {
                FollowStep::Stop
            }
            Err(_) => FollowStep::Reconnect(self.backoff()),
        }
    }
}

/// What an answer did to a [`BlockGet`].
#[derive(Debug)]
pub enum Step {
    /// Not ours (other token or message id, a duplicate): keep waiting.
    Ignore,
    /// An empty ACK: the response will come separately; stop retransmitting.
    Wait,
    /// A block arrived and more follow: send [`BlockGet::request`] (a new message).
    Next,
    /// The body, or the server's error.
    Done(Result<Vec<u8>, FetchError>),
}

/// Largest body accepted, against a server that never sets M=0.
pub const MAX_BODY: usize = 1 << 20;

/// A block-wise GET, sans-IO: [`BlockGet::request`] is the datagram to (re)send,
/// [`BlockGet::on_response`] takes each decrypted datagram from the server.
#[derive(Debug)]
pub struct BlockGet {
    path: Vec<String>,
    query: Vec<String>,
    token: Vec<u8>,
    mid: u16,
    /// The block asked for next and its size exponent, once the server chose block-wise.
    block: Option<(u32, u8)>,
    body: Vec<u8>,
    ack: Option<Vec<u8>>,
}

fn block2_value(num: u32, more: bool, szx: u8) -> Vec<u8> {
    let v = (num << 4) | (u32::from(more) << 3) | u32::from(szx & 7);
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

/// (NUM, M, SZX) of a Block2 option value (RFC 7959 2.2).
fn parse_block2(v: &[u8]) -> Option<(u32, bool, u8)> {
    if v.len() > 3 {
        return None;
    }
    let x = v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
    let szx = (x & 7) as u8;
    // SZX 7 is reserved (BERT only over reliable transports).
    (szx != 7).then_some((x >> 4, x & 8 != 0, szx))
}

impl BlockGet {
    /// A GET of `target` with `token`, first message id `mid`.
    pub fn new(target: &Target, token: Vec<u8>, mid: u16) -> BlockGet {
        BlockGet {
            path: target.path.clone(),
            query: target.query.clone(),
            token,
            mid,
            block: None,
            body: Vec::new(),
            ack: None,
        }
    }

    /// The current request's message id.
    pub fn mid(&self) -> u16 {
        self.mid
    }

    /// The current request, encoded.
    pub fn request(&self) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = self.mid;
        p.set_token(self.token.clone());
        for s in &self.path {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        for q in &self.query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        if let Some((num, szx)) = self.block {
            p.add_option(CoapOption::Block2, block2_value(num, false, szx));
        }
        // A request this small always encodes; an empty datagram would simply get no answer.
        p.to_bytes().unwrap_or_default()
    }

    /// An ACK to send for a confirmable separate response, if one arrived.
    pub fn take_ack(&mut self) -> Option<Vec<u8>> {
        self.ack.take()
    }

    /// One decrypted datagram from the server.
    pub fn on_response(&mut self, datagram: &[u8]) -> Step {
        let Ok(p) = Packet::from_bytes(datagram) else {
            return Step::Ignore;
        };
        let t = p.header.get_type();
        if t == MessageType::Acknowledgement && p.header.message_id != self.mid {
            return Step::Ignore;
        }
        if t == MessageType::Acknowledgement && p.header.code == MessageClass::Empty {
            return Step::Wait;
        }
        if t == MessageType::Reset {
            if p.header.message_id == self.mid {
                return Step::Done(Err(FetchError::Protocol(
                    "the server reset the request".into(),
                )));
            }
            return Step::Ignore;
        }
        if p.get_token() != self.token.as_slice() {
            return Step::Ignore;
        }
        if t == MessageType::Confirmable {
            let mut a = Packet::new();
            a.header.set_version(1);
            a.header.set_type(MessageType::Acknowledgement);
            a.header.code = MessageClass::Empty;
            a.header.message_id = p.header.message_id;
            self.ack = a.to_bytes().ok();
        }
        if !matches!(p.header.code, MessageClass::Response(_)) {
            return Step::Ignore;
        }
        let raw = u8::from(p.header.code);
        let (class, detail) = (raw >> 5, raw & 0x1f);
        if class != 2 {
            return Step::Done(Err(FetchError::Status {
                code: format!("{class}.{detail:02}"),
                message: String::from_utf8_lossy(&p.payload)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect(),
                max_age: p
                    .get_first_option(CoapOption::MaxAge)
                    .filter(|v| v.len() <= 4)
                    .map(|v| v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b))),
            }));
        }
        let block = p
            .get_first_option(CoapOption::Block2)
            .map(|v| parse_block2(v));
        let expected = self.block.map(|(n, _)| n).unwrap_or(0);
        match block {
            None if self.block.is_none() => Step::Done(Ok(p.payload)),
            None => Step::Done(Err(FetchError::Protocol(
                "Block2 option missing in a later block".into(),
            ))),
            Some(None) => Step::Done(Err(FetchError::Protocol("malformed Block2 option".into()))),
            Some(Some((num, more, szx))) => {
                if num != expected {
                    return Step::Done(Err(FetchError::Protocol(format!(
                        "block {num} when {expected} was asked for"
                    ))));
                }
                let size = 16usize << szx;
                if more && p.payload.len() != size {
                    return Step::Done(Err(FetchError::Protocol(format!(
                        "block {num} has {} bytes, not {size}",
                        p.payload.len()
                    ))));
                }
                if self.body.len() + p.payload.len() > MAX_BODY {
                    return Step::Done(Err(FetchError::Protocol("body too large".into())));
                }
                self.body.extend_from_slice(&p.payload);
                if !more {
                    return Step::Done(Ok(std::mem::take(&mut self.body)));
                }
                // Ask for the next block at the size the server chose (its offset is
                // num * size, so a smaller szx later would need renumbering: keep it).
                self.block = Some((num + 1, szx));
                self.mid = self.mid.wrapping_add(1);
                Step::Next
            }
        }
    }
}

/// Parses a `--group` name.
pub fn group_by_name(name: &str) -> Option<Group> {
    Some(match name {
        "ml-kem-512" => Group::MlKem512,
        "ml-kem-768" => Group::MlKem768,
        "x25519-ml-kem-768" => Group::X25519MlKem768,
        "x25519" => Group::X25519,
        "p-256" => Group::P256,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::ResponseType;

    #[test]
    fn urls() {
        let t = Target::parse("coaps://[::1]:5700/entropy?n=64").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 5700));
        assert_eq!(t.path, ["entropy"]);
        assert_eq!(t.query, ["n=64"]);
        let t = Target::parse("coaps://example.org/a/b").unwrap();
        assert_eq!((t.port, t.path.len(), t.query.len()), (5684, 2, 0));
        for bad in [
            "coap://h/x",
            "coaps:///x",
            "coaps://h:0/x",
            "coaps://h:99999/x",
            "coaps://[::1/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    /// A scripted server: answers `req` with `payload` cut into blocks of `16 << szx`.
    fn answer(req: &[u8], body: &[u8], szx: u8, piggyback: bool) -> Vec<u8> {
        let r = Packet::from_bytes(req).unwrap();
        let num = r
            .get_first_option(CoapOption::Block2)
            .map(|v| parse_block2(v).unwrap().0)
            .unwrap_or(0) as usize;
        let size = 16usize << szx;
        let chunk = &body[(num * size).min(body.len())..((num + 1) * size).min(body.len())];
        let mut p = Packet::new();
        p.header.set_version(1);
        if piggyback {
            p.header.set_type(MessageType::Acknowledgement);
            p.header.message_id = r.header.message_id;
        } else {
            p.header.set_type(MessageType::Confirmable);
            p.header.message_id = 4242;
        }
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.set_token(r.get_token().to_vec());
        let more = (num + 1) * size < body.len();
        p.add_option(CoapOption::Block2, block2_value(num as u32, more, szx));
        p.payload = chunk.to_vec();
        p.to_bytes().unwrap()
    }

    fn target() -> Target {
        Target::parse("coaps://h/entropy?n=300").unwrap()
    }

    #[test]
    fn block2_bodies_are_reassembled_in_order() {
        let body: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        for (szx, piggyback) in [(0u8, true), (2, true), (4, false), (6, true)] {
            let mut g = BlockGet::new(&target(), vec![1, 2], 65534);
            let mut mids = Vec::new();
            let got = loop {
                let req = g.request();
                mids.push(g.mid());
                match g.on_response(&answer(&req, &body, szx, piggyback)) {
                    Step::Next => {}
                    Step::Done(r) => break r.unwrap(),
                    s => panic!("{s:?}"),
                }
                // A separate (confirmable) response is acknowledged.
                assert_eq!(g.take_ack().is_some(), !piggyback);
            };
            assert_eq!(got, body, "szx {szx}");
            assert_eq!(mids.len(), 300usize.div_ceil(16 << szx));
            // Each block is a new message, wrapping around u16.
            assert!(mids.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        }
    }

    #[test]
    fn foreign_or_broken_answers_are_ignored_or_refused() {
        let body = vec![7u8; 100];
        let mut g = BlockGet::new(&target(), vec![1, 2], 10);
        let req = g.request();
        // Another token, another message id, garbage: ignored.
        let mut other = Packet::from_bytes(&answer(&req, &body, 1, true)).unwrap();
        other.set_token(vec![9]);
        assert!(matches!(
            g.on_response(&other.to_bytes().unwrap()),
            Step::Ignore
        ));
        let mut other = Packet::from_bytes(&answer(&req, &body, 1, true)).unwrap();
        other.header.message_id = 11;
        assert!(matches!(
            g.on_response(&other.to_bytes().unwrap()),
            Step::Ignore
        ));
        assert!(matches!(g.on_response(&[0xff, 0, 1]), Step::Ignore));
        // An empty ACK: the answer comes later.
        let mut ack = Packet::new();
        ack.header.set_type(MessageType::Acknowledgement);
        ack.header.message_id = 10;
        ack.header.code = MessageClass::Empty;
        assert!(matches!(
            g.on_response(&ack.to_bytes().unwrap()),
            Step::Wait
        ));
        // A block out of order: refused, not spliced.
        let first = answer(&req, &body, 1, true);
        assert!(matches!(g.on_response(&first), Step::Next));
        let stale = first.clone();
        let mut p = Packet::from_bytes(&stale).unwrap();
        p.header.message_id = g.mid();
        assert!(matches!(
            g.on_response(&p.to_bytes().unwrap()),
            Step::Done(Err(FetchError::Protocol(_)))
        ));
    }

    #[test]
    fn follow_policy_honours_max_age_backs_off_and_stops_on_refusals() {
        let status = |code: &str, max_age| -> Result<(), FetchError> {
            Err(FetchError::Status {
                code: code.into(),
                message: String::new(),
                max_age,
            })
        };
        let mut p = FollowPolicy::default();
        assert_eq!(p.on_fetch(&Ok(())), FollowStep::Again);
        assert_eq!(
            p.on_fetch(&status("4.29", Some(17))),
            FollowStep::Wait(Duration::from_secs(17))
        );
        assert_eq!(
            p.on_fetch(&status("5.03", None)),
            FollowStep::Wait(FollowPolicy::DEFAULT_WAIT)
        );
        // Max-Age 0 would spin; a huge one is bounded.
        assert_eq!(
            p.on_fetch(&status("5.03", Some(0))),
            FollowStep::Wait(Duration::from_secs(1))
        );
        assert_eq!(
            p.on_fetch(&status("4.29", Some(u32::MAX))),
            FollowStep::Wait(FollowPolicy::MAX_BACKOFF)
        );
        // The request itself is refused: retrying cannot help.
        assert_eq!(p.on_fetch(&status("4.00", None)), FollowStep::Stop);
        assert_eq!(p.on_fetch(&status("4.04", None)), FollowStep::Stop);
        assert_eq!(
            p.on_connect_error(&FetchError::Setup("ML-KEM with DTLS 1.2".into())),
            FollowStep::Stop
        );
        // Unreachable: 1, 2, 4, ... s, capped at 5 min; a success starts over.
        let lost = || -> Result<(), FetchError> { Err(FetchError::Timeout("CoAP response")) };
        let mut waits = vec![p.on_fetch(&lost())];
        for _ in 0..12 {
            waits.push(p.on_connect_error(&FetchError::Timeout("DTLS handshake")));
        }
        let secs: Vec<u64> = waits
            .iter()
            .map(|w| match w {
                FollowStep::Reconnect(d) => d.as_secs(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]);
        assert_eq!(p.on_fetch(&Ok(())), FollowStep::Again);
        assert_eq!(
            p.on_fetch(&lost()),
            FollowStep::Reconnect(Duration::from_secs(1))
        );
    }

    #[test]
    fn error_codes_become_status_errors() {
        let mut g = BlockGet::new(&target(), vec![3], 5);
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        p.header.message_id = 5;
        p.set_token(vec![3]);
        p.header.code = MessageClass::Response(ResponseType::ServiceUnavailable);
        p.payload = b"daemon\x07 down".to_vec();
        match g.on_response(&p.to_bytes().unwrap()) {
            Step::Done(Err(FetchError::Status {
                code,
                message,
                max_age,
            })) => {
                assert_eq!(code, "5.03");
                assert_eq!(message, "daemon down");
                assert_eq!(max_age, None);
            }
            s => panic!("{s:?}"),
        }
    }
}
