//! What to do with one HTTP request, without sockets: a request goes in, a [`Plan`] comes out;
//! the server fetches what the plan needs from qeaasd and turns it into a [`Reply`] with the
//! `*_reply` functions here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use qeaas_client::proto::Status;
use qeaas_client::PoolBytes;

use crate::config::Config;
use crate::limits::{retry_after_secs, Limits, Quota, Refusal, Reservation, TokenBucket};

/// Bytes of pool output behind one pollen answer (pollen's `-bytes` default).
pub const POLLEN_BYTES: u16 = 64;
/// Default `bytes=` of the JSON API.
pub const DEFAULT_BYTES: u16 = 32;
/// Largest request body read (a pollinate challenge form is 138 bytes).
pub const MAX_BODY: usize = 4096;
/// Client addresses whose pollen rate is tracked at once. Past it (after forgetting every
/// address whose bucket has refilled), new addresses share one bucket, so a sender of many
/// addresses cannot grow the table nor escape the limit.
pub const MAX_POLLEN_ADDRESSES: usize = 65_536;

/// pollen's answer to a request without a challenge, kept word for word.
const POLLEN_USAGE: &str = "Please use the pollinate client.  'sudo apt-get install pollinate' or download from: https://bazaar.launchpad.net/~pollinate/pollinate/trunk/view/head:/pollinate\n";

/// The parts of an HTTP request the logic looks at.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Method, upper case.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Query string without `?`.
    pub query: Option<&'a str>,
    /// `Authorization` header.
    pub authorization: Option<&'a [u8]>,
    /// `Accept` header.
    pub accept: Option<&'a [u8]>,
    /// Body (at most [`MAX_BODY`] bytes; the server answers 413 beyond that).
    pub body: &'a [u8],
    /// The client's address (the TCP peer).
    pub peer: IpAddr,
}

/// What the server must fetch to answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// A pollen exchange: fetch [`POLLEN_BYTES`], then [`pollen_reply`].
    Pollen {
        /// The challenge as pollinate sent it (form-decoded).
        challenge: Vec<u8>,
    },
    /// JSON API: fetch `bytes`, then [`entropy_reply`]. The client's quota already holds
    /// them; if they are not served, give them back with [`Clients::refund`].
    Entropy {
        /// Index of the client.
        client: usize,
        /// Bytes wanted.
        bytes: u16,
        /// Answer raw bytes instead of JSON.
        raw: bool,
        /// The bytes taken from the client's quota at admission.
        reservation: Reservation,
    },
    /// Fetch the daemon's status, then [`health_reply`].
    Health,
    /// Answer at once.
    Reply(Reply),
}

/// An HTTP answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body: pool bytes or what is made of them, so wiped on drop like every copy of them.
    pub body: PoolBytes,
    /// Retry-After in seconds.
    pub retry_after: Option<u64>,
    /// WWW-Authenticate challenge (401).
    pub www_authenticate: bool,
}

impl Reply {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: PoolBytes::new(body.into()),
            retry_after: None,
            www_authenticate: false,
        }
    }

    fn json(status: u16, body: String) -> Reply {
        Reply {
            content_type: "application/json",
            ..Reply::text(status, body)
        }
    }

    fn error(status: u16, msg: &str) -> Reply {
        // Messages are fixed strings from this module, never client input: no escaping needed.
        Reply::json(status, format!("{{\"error\":\"{msg}\"}}\n"))
    }

    fn retry(mut self, secs: u64) -> Reply {
        self.retry_after = Some(secs);
        self
    }
}

/// The API clients and their limits.
#[derive(Debug)]
pub struct Clients {
    by_hash: HashMap<[u8; 32], usize>,
    names: Vec<String>,
    limits: Vec<Limits>,
    max_bytes: u16,
    pollen_enabled: bool,
    /// Shared by every anonymous pollinate client.
    pollen_bucket: Option<TokenBucket>,
    /// One bucket per client address (IPv4 address, IPv6 /64); `None`: no per-address limit.
    pollen_per_address: Option<(f64, u32)>,
    pollen_addresses: HashMap<IpAddr, TokenBucket>,
    /// When the full address table was last searched for refilled buckets (at most once a
    /// second: the search walks the whole table).
    pollen_pruned: Option<Duration>,
}

impl Clients {
    /// From the configuration; `now` starts every bucket full and every quota window.
    pub fn new(cfg: &Config, now: Duration) -> Clients {
        let mut c = Clients {
            by_hash: HashMap::new(),
            names: Vec::new(),
            limits: Vec::new(),
            max_bytes: cfg.max_bytes,
            pollen_enabled: cfg.pollen.enable,
            pollen_bucket: cfg
                .pollen
                .rate_per_sec
                .map(|r| TokenBucket::new(r, cfg.pollen.burst, now)),
            pollen_per_address: (cfg.pollen.per_address_rate_per_sec > 0.0).then_some((
                cfg.pollen.per_address_rate_per_sec,
                cfg.pollen.per_address_burst,
            )),
            pollen_addresses: HashMap::new(),
            pollen_pruned: None,
        };
        for (i, cl) in cfg.clients.iter().enumerate() {
            let mut h = [0u8; 32];
            // Config validation guarantees 64 hex digits.
            if hex::decode_to_slice(&cl.token_sha256, &mut h).is_ok() {
                c.by_hash.insert(h, i);
            }
            c.names.push(cl.name.clone());
            c.limits.push(Limits {
                bucket: TokenBucket::new(cl.rate_per_sec, cl.burst, now),
                quota: Quota::new(
                    cl.quota_bytes,
                    Duration::from_secs(cl.quota_period_secs),
                    now,
                ),
            });
        }
        c
    }

    /// The client's name.
    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("?", |s| s.as_str())
    }

    /// Gives back to client `i` the bytes of a [`Plan::Entropy`] that were not served.
    pub fn refund(&mut self, i: usize, r: Reservation) {
        if let Some(l) = self.limits.get_mut(i) {
            l.refund(r);
        }
    }

    fn authenticate(&self, auth: Option<&[u8]>) -> Option<usize> {
        let token = auth?.strip_prefix(b"Bearer ")?;
        let token = token.trim_ascii();
        if token.is_empty() {
            return None;
        }
        self.by_hash.get(&openssl::sha::sha256(token)).copied()
    }

    /// Decides what `req` needs, at time `now`. Admission to the rate limit happens here, so a
    /// request that passes has spent its rate token.
    pub fn plan(&mut self, req: &Request<'_>, now: Duration) -> Plan {
        match req.path {
            "/" if self.pollen_enabled => self.pollen_admit(pollen_plan(req), req.peer, now),
            "/health" => match req.method {
                "GET" | "HEAD" => Plan::Health,
                _ => Plan::Reply(Reply::error(405, "method not allowed")),
            },
            "/api/v1/entropy" => self.entropy_plan(req, now),
            _ => Plan::Reply(Reply::error(404, "not found")),
        }
    }

    /// Spends a token of the client address's bucket and of the shared one for a
    /// well-formed exchange; refuses it with 429 and Retry-After when either is empty.
    fn pollen_admit(&mut self, plan: Plan, peer: IpAddr, now: Duration) -> Plan {
        if !matches!(plan, Plan::Pollen { .. }) {
            return plan;
        }
        let refuse = |wait| {
            Plan::Reply(Reply::text(429, "too many requests\n").retry(retry_after_secs(wait)))
        };
        let addr = self.pollen_address_bucket(peer, now);
        // Check both before spending either: a refusal costs no token.
        if let Some(b) = addr.and_then(|k| self.pollen_addresses.get_mut(&k)) {
            if let Err(wait) = b.check(now) {
                return refuse(wait);
            }
        }
        if let Some(b) = self.pollen_bucket.as_mut() {
            if let Err(wait) = b.check(now) {
                return refuse(wait);
            }
            b.take();
        }
        if let Some(b) = addr.and_then(|k| self.pollen_addresses.get_mut(&k)) {
            b.take();
        }
        plan
    }

    /// The key of `peer`'s pollen bucket (created full if new), or `None` without a
    /// per-address limit. IPv6 clients are counted per /64, the block one host usually gets.
    fn pollen_address_bucket(&mut self, peer: IpAddr, now: Duration) -> Option<IpAddr> {
        let (rate, burst) = self.pollen_per_address?;
        let key = match peer {
            IpAddr::V4(a) => IpAddr::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = a.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        };
        if !self.pollen_addresses.contains_key(&key) {
            let due = self
                .pollen_pruned
                .is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
            if self.pollen_addresses.len() >= MAX_POLLEN_ADDRESSES && due {
                self.pollen_pruned = Some(now);
                self.pollen_addresses.retain(|_, b| !b.is_full(now));
            }
            if self.pollen_addresses.len() >= MAX_POLLEN_ADDRESSES {
                // Full of busy addresses: the newcomers share one bucket.
                let shared = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                self.pollen_addresses
                    .entry(shared)
                    .or_insert_with(|| TokenBucket::new(rate, burst, now));
                return Some(shared);
            }
            self.pollen_addresses
                .insert(key, TokenBucket::new(rate, burst, now));
        }
        Some(key)
    }

    fn entropy_plan(&mut self, req: &Request<'_>, now: Duration) -> Plan {
        if req.method != "GET" {
            return Plan::Reply(Reply::error(405, "method not allowed"));
        }
        let Some(client) = self.authenticate(req.authorization) else {
            let mut r = Reply::error(401, "missing or unknown bearer token");
            r.www_authenticate = true;
            return Plan::Reply(r);
        };
        let mut bytes = DEFAULT_BYTES;
        for (k, v) in form_urlencoded::parse(req.query.unwrap_or("").as_bytes()) {
            if k == "bytes" {
                match v.parse::<u16>() {
                    Ok(n) if (1..=self.max_bytes).contains(&n) => bytes = n,
                    _ => {
                        return Plan::Reply(Reply::error(400, "bytes must be an integer in range"))
                    }
                }
            }
        }
        let Some(limits) = self.limits.get_mut(client) else {
            return Plan::Reply(Reply::error(500, "internal error"));
        };
        match limits.admit(u64::from(bytes), now) {
            Ok(reservation) => Plan::Entropy {
                client,
                bytes,
                raw: wants_raw(req.accept),
                reservation,
            },
            Err(Refusal::RateLimited { retry_after }) => {
                Plan::Reply(Reply::error(429, "rate limit").retry(retry_after_secs(retry_after)))
            }
            Err(Refusal::QuotaExhausted { resets_in }) => {
                Plan::Reply(Reply::error(403, "quota exhausted").retry(retry_after_secs(resets_in)))
            }
        }
    }
}

/// True when `Accept` names `application/octet-stream` (and not JSON before it).
fn wants_raw(accept: Option<&[u8]>) -> bool {
    let Some(a) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return false;
    };
    for part in a.split(',') {
        let mt = part.split(';').next().unwrap_or("").trim();
        if mt.eq_ignore_ascii_case("application/json") {
            return false;
        }
        if mt.eq_ignore_ascii_case("application/octet-stream") {
            return true;
        }
    }
    false
}

/// pollen reads `challenge` with Go's `FormValue`: the form body first, then the query string.
fn pollen_plan(req: &Request<'_>) -> Plan {
    let find = |src: &[u8]| {
        form_urlencoded::parse(src)
            .find(|(k, _)| k == "challenge")
            .map(|(_, v)| v.into_owned().into_bytes())
    };
    let body = if req.method == "POST" || req.method == "PUT" {
        find(req.body)
    } else {
        None
    };
    match body.or_else(|| find(req.query.unwrap_or("").as_bytes())) {
        Some(c) if !c.is_empty() => Plan::Pollen { challenge: c },
        _ => Plan::Reply(Reply::text(400, POLLEN_USAGE)),
    }
}

/// pollen's answer: `hex(sha512(challenge)) \n hex(sha512(challenge || pool bytes)) \n`.
/// pollinate checks the first line; it hashes the whole answer into its seed.
pub fn pollen_reply(challenge: &[u8], pool: &[u8]) -> Reply {
    // The streaming hasher avoids OpenSSL 3's per-call digest fetch of the one-shot API, and
    // both lines share the hash of the challenge.
    let mut h = openssl::sha::Sha512::new();
    h.update(challenge);
    let first = h.clone().finish();
    h.update(pool);
    let second = h.finish();
    // One allocation: 128 hex digits, newline, twice.
    let mut body = vec![b'\n'; 2 * (2 * 64 + 1)];
    let (a, b) = body.split_at_mut(2 * 64 + 1);
    // Infallible: the output slices are exactly twice the digest length.
    let _ = hex::encode_to_slice(first, &mut a[..128]);
    let _ = hex::encode_to_slice(second, &mut b[..128]);
    Reply::text(200, body)
}

/// The JSON API's answer to `bytes` fresh pool bytes.
pub fn entropy_reply(pool: &[u8], raw: bool) -> Reply {
    if raw {
        return Reply {
            content_type: "application/octet-stream",
            ..Reply::text(200, pool.to_vec())
        };
    }
    // Built in one allocation of its final size: no temporary hex string and no regrown buffer
    // is left behind unwiped.
    let (head, mid, tail) = (&b"{\"entropy\":\""[..], &b"\",\"bytes\":"[..], &b"}\n"[..]);
    let len = pool.len().to_string();
    let mut body = Vec::with_capacity(head.len() + 2 * pool.len() + mid.len() + len.len() + 2);
    body.extend_from_slice(head);
    let at = body.len();
    body.resize(at + 2 * pool.len(), 0);
    // Infallible: the slice is exactly twice the input's length.
    let _ = hex::encode_to_slice(pool, &mut body[at..]);
    body.extend_from_slice(mid);
    body.extend_from_slice(len.as_bytes());
    body.extend_from_slice(tail);
    Reply {
        content_type: "application/json",
        ..Reply::text(200, body)
    }
}

/// The answer when qeaasd refused or could not be reached.
pub fn daemon_error_reply(status: Option<Status>) -> Reply {
    match status {
        Some(Status::NotEnoughEntropy) => Reply::error(503, "not enough entropy").retry(1),
        Some(Status::SourceFailed) => Reply::error(503, "entropy source failed").retry(5),
        Some(_) => Reply::error(502, "entropy daemon refused the request"),
        None => Reply::error(503, "entropy daemon unavailable").retry(5),
    }
}

/// True when some `source.NAME=kind provenance STATE ...` line of the daemon's status is healthy.
pub fn any_source_healthy(status_text: &str) -> bool {
    status_text.lines().any(|l| {
        l.strip_prefix("source.")
            .and_then(|l| l.split_once('='))
            .is_some_and(|(_, v)| v.split_whitespace().nth(2) == Some("healthy"))
    })
}

/// `/health`: 200 when a source is healthy, 503 otherwise (`None`: the daemon is unreachable).
pub fn health_reply(status_text: Option<&str>) -> Reply {
    match status_text {
        Some(t) if any_source_healthy(t) => Reply::text(200, "ok\n"),
        Some(_) => Reply::text(503, "no healthy source\n").retry(5),
        None => Reply::text(503, "entropy daemon unavailable\n").retry(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret";

    fn clients(rate: f64, burst: u32, quota: u64) -> Clients {
        let hash = hex::encode(openssl::sha::sha256(TOKEN.as_bytes()));
        let cfg = Config::parse(&format!(
            "listen = \"127.0.0.1:1\"\n[[client]]\nname = \"t\"\ntoken_sha256 = \"{hash}\"\nquota_bytes = {quota}\nrate_per_sec = {rate}\nburst = {burst}\n"
        ))
        .unwrap();
        Clients::new(&cfg, Duration::ZERO)
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn get<'a>(path: &'a str, query: Option<&'a str>, auth: Option<&'a [u8]>) -> Request<'a> {
        Request {
            method: "GET",
            path,
            query,
            authorization: auth,
            accept: None,
            body: b"",
            peer: PEER,
        }
    }

    fn status(p: Plan) -> u16 {
        match p {
            Plan::Reply(r) => r.status,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn pollen_answer_matches_debian_pollen() {
        // Measured from Debian's pollen 4.21 run with `-device /dev/zero`, challenge=abc.
        let r = pollen_reply(b"abc", &[0u8; 64]);
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(text.len(), 258);
        assert!(text.starts_with("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f\n5c6d261c680ab6c5ba0b5f2f01a048a1"));
        assert!(text.ends_with("93227b4a\n"));
    }

    #[test]
    fn pollen_challenge_from_body_or_query() {
        let mut c = clients(1.0, 1, 1);
        let mut req = get("/", None, None);
        assert_eq!(status(c.plan(&req, Duration::ZERO)), 400);
        req.method = "POST";
        req.body = b"challenge=ab%20c";
        assert_eq!(
            c.plan(&req, Duration::ZERO),
            Plan::Pollen {
                challenge: b"ab c".to_vec()
            }
        );
        let req = get("/", Some("challenge=q"), None);
        assert_eq!(
            c.plan(&req, Duration::ZERO),
            Plan::Pollen {
                challenge: b"q".to_vec()
            }
        );
        let mut req = get("/", None, None);
        req.method = "POST";
        req.body = b"challenge=";
        assert_eq!(status(c.plan(&req, Duration::ZERO)), 400);
    }

    #[test]
    fn pollen_rate_limit_and_switch() {
        let post = Request {
            method: "POST",
            path: "/",
            query: None,
            authorization: None,
            accept: None,
            body: b"challenge=x",
            peer: PEER,
        };
        let cfg = "listen = \"127.0.0.1:1\"\n[pollen]\nrate_per_sec = 2.0\nburst = 1\n";
        let mut c = Clients::new(&Config::parse(cfg).unwrap(), Duration::ZERO);
        assert!(matches!(c.plan(&post, Duration::ZERO), Plan::Pollen { .. }));
        // A malformed exchange costs no token.
        assert_eq!(status(c.plan(&get("/", None, None), Duration::ZERO)), 400);
        match c.plan(&post, Duration::from_millis(100)) {
            Plan::Reply(r) => assert_eq!((r.status, r.retry_after), (429, Some(1))),
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            c.plan(&post, Duration::from_millis(500)),
            Plan::Pollen { .. }
        ));
        let off = "listen = \"127.0.0.1:1\"\n[pollen]\nenable = false\n";
        let mut c = Clients::new(&Config::parse(off).unwrap(), Duration::ZERO);
        assert_eq!(status(c.plan(&post, Duration::ZERO)), 404);
    }

    #[test]
    fn pollen_is_limited_per_address_and_per_ipv6_64() {
        let cfg = "listen = \"127.0.0.1:1\"\n[pollen]\nper_address_burst = 3\n";
        let mut c = Clients::new(&Config::parse(cfg).unwrap(), Duration::ZERO);
        let post = |peer: &str| Request {
            method: "POST",
            path: "/",
            query: None,
            authorization: None,
            accept: None,
            body: b"challenge=x",
            peer: peer.parse().unwrap(),
        };
        let t = Duration::ZERO;
        for _ in 0..3 {
            assert!(matches!(c.plan(&post("192.0.2.1"), t), Plan::Pollen { .. }));
        }
        match c.plan(&post("192.0.2.1"), t) {
            Plan::Reply(r) => assert_eq!((r.status, r.retry_after), (429, Some(1))),
            p => panic!("{p:?}"),
        }
        // Another address is unaffected; the same one gets a request back after a second
        // (the default rate).
        assert!(matches!(c.plan(&post("192.0.2.2"), t), Plan::Pollen { .. }));
        assert!(matches!(
            c.plan(&post("192.0.2.1"), Duration::from_secs(1)),
            Plan::Pollen { .. }
        ));
        // IPv6: one /64 is one client; the IPv4-mapped form is the IPv4 address.
        for _ in 0..3 {
            assert!(matches!(
                c.plan(&post("2001:db8::1"), t),
                Plan::Pollen { .. }
            ));
        }
        assert_eq!(status(c.plan(&post("2001:db8::ffff"), t)), 429);
        assert!(matches!(
            c.plan(&post("2001:db8:0:1::1"), t),
            Plan::Pollen { .. }
        ));
        assert_eq!(status(c.plan(&post("::ffff:192.0.2.1"), t)), 429);
        // Off when configured so.
        let off = "listen = \"127.0.0.1:1\"\n[pollen]\nper_address_rate_per_sec = 0.0\n";
        let mut c = Clients::new(&Config::parse(off).unwrap(), Duration::ZERO);
        for _ in 0..100 {
            assert!(matches!(c.plan(&post("192.0.2.1"), t), Plan::Pollen { .. }));
        }
    }

    #[test]
    fn pollen_address_table_is_bounded() {
        let cfg = "listen = \"127.0.0.1:1\"\n[pollen]\nper_address_burst = 1\n";
        let mut c = Clients::new(&Config::parse(cfg).unwrap(), Duration::ZERO);
        let t = Duration::ZERO;
        let mut req = get("/", Some("challenge=x"), None);
        req.method = "POST";
        for i in 0..(MAX_POLLEN_ADDRESSES as u32 + 10) {
            req.peer = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            c.plan(&req, t);
        }
        assert!(c.pollen_addresses.len() <= MAX_POLLEN_ADDRESSES + 1);
        // Newcomers past the bound share one bucket: the second of them is refused.
        req.peer = "198.51.100.7".parse().unwrap();
        assert_eq!(status(c.plan(&req, t)), 429);
        // Once the buckets have refilled, the table makes room again.
        assert!(matches!(
            c.plan(&req, Duration::from_secs(5)),
            Plan::Pollen { .. }
        ));
    }

    #[test]
    fn a_refund_gives_unserved_bytes_back() {
        let auth = Some(&b"Bearer s3cret"[..]);
        let mut c = clients(1000.0, 1000, 64);
        let req = get("/api/v1/entropy", Some("bytes=64"), auth);
        let Plan::Entropy {
            client,
            reservation,
            ..
        } = c.plan(&req, Duration::ZERO)
        else {
            panic!("not admitted")
        };
        assert_eq!(status(c.plan(&req, Duration::ZERO)), 403);
        c.refund(client, reservation);
        assert!(matches!(c.plan(&req, Duration::ZERO), Plan::Entropy { .. }));
    }

    #[test]
    fn entropy_needs_a_known_token() {
        let mut c = clients(100.0, 100, 1 << 20);
        let now = Duration::ZERO;
        assert_eq!(
            status(c.plan(&get("/api/v1/entropy", None, None), now)),
            401
        );
        let wrong = get("/api/v1/entropy", None, Some(b"Bearer nope"));
        assert_eq!(status(c.plan(&wrong, now)), 401);
        let basic = get("/api/v1/entropy", None, Some(b"Basic s3cret"));
        assert_eq!(status(c.plan(&basic, now)), 401);
        let ok = get("/api/v1/entropy", None, Some(b"Bearer s3cret"));
        assert!(matches!(
            c.plan(&ok, now),
            Plan::Entropy {
                client: 0,
                bytes: 32,
                raw: false,
                ..
            }
        ));
    }

    #[test]
    fn entropy_bytes_are_bounded() {
        let mut c = clients(100.0, 100, 1 << 20);
        let auth = Some(&b"Bearer s3cret"[..]);
        for (q, want) in [("bytes=0", 400), ("bytes=4097", 400), ("bytes=x", 400)] {
            assert_eq!(
                status(c.plan(&get("/api/v1/entropy", Some(q), auth), Duration::ZERO)),
                want,
                "{q}"
            );
        }
        let mut r = get("/api/v1/entropy", Some("bytes=4096"), auth);
        r.accept = Some(b"application/octet-stream");
        assert!(matches!(
            c.plan(&r, Duration::ZERO),
            Plan::Entropy {
                client: 0,
                bytes: 4096,
                raw: true,
                ..
            }
        ));
    }

    #[test]
    fn quota_gives_403_and_rate_gives_429_with_retry_after() {
        let auth = Some(&b"Bearer s3cret"[..]);
        let mut c = clients(1.0, 2, 100);
        let req = get("/api/v1/entropy", Some("bytes=64"), auth);
        assert!(matches!(c.plan(&req, Duration::ZERO), Plan::Entropy { .. }));
        // Admission reserved the 64 bytes: the quota is spent before they are served.
        match c.plan(&req, Duration::ZERO) {
            Plan::Reply(r) => {
                assert_eq!(r.status, 403);
                assert_eq!(r.retry_after, Some(86_400));
            }
            p => panic!("{p:?}"),
        }
        let small = get("/api/v1/entropy", Some("bytes=1"), auth);
        assert!(matches!(
            c.plan(&small, Duration::ZERO),
            Plan::Entropy { .. }
        ));
        match c.plan(&small, Duration::ZERO) {
            Plan::Reply(r) => {
                assert_eq!(r.status, 429);
                assert_eq!(r.retry_after, Some(1));
            }
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            c.plan(&small, Duration::from_secs(1)),
            Plan::Entropy { .. }
        ));
    }

    #[test]
    fn replies() {
        let r = entropy_reply(&[0xab, 0x01], false);
        assert_eq!(&r.body[..], b"{\"entropy\":\"ab01\",\"bytes\":2}\n");
        assert_eq!(&entropy_reply(&[7], true).body[..], &[7]);
        assert_eq!(daemon_error_reply(Some(Status::SourceFailed)).status, 503);
        assert_eq!(daemon_error_reply(None).retry_after, Some(5));
        let st = "version=0.1.0\nsource.q=quantis simulated failed read=0\nsource.r=serial real healthy read=9 rct_failures=0\n";
        assert_eq!(health_reply(Some(st)).status, 200);
        assert_eq!(
            health_reply(Some(&st.replace(" healthy", " failed"))).status,
            503
        );
        assert_eq!(health_reply(None).status, 503);
    }

    #[test]
    fn accept_header() {
        assert!(wants_raw(Some(b"application/octet-stream")));
        assert!(wants_raw(Some(
            b"text/html, Application/Octet-Stream;q=0.9"
        )));
        assert!(!wants_raw(Some(
            b"application/json, application/octet-stream"
        )));
        assert!(!wants_raw(Some(b"*/*")));
        assert!(!wants_raw(Some(&[0xff, 0xfe])));
        assert!(!wants_raw(None));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client sends, planning answers without panicking, and a refusal is an
        /// HTTP error code.
        #[test]
        fn plan_is_total(
            method in prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "X"]),
            path in prop::sample::select(vec!["/", "/health", "/api/v1/entropy", "/x", ""]),
            query in proptest::option::of(".{0,40}"),
            auth in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            accept in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            now_ms in 0u64..10_000_000,
        ) {
            let hash = hex::encode(openssl::sha::sha256(b"t"));
            let cfg = Config::parse(&format!(
                "listen = \"127.0.0.1:1\"\n[pollen]\nrate_per_sec = 5.0\n[[client]]\nname = \"t\"\ntoken_sha256 = \"{hash}\"\nquota_bytes = 100\nrate_per_sec = 1\n"
            )).unwrap();
            let mut c = Clients::new(&cfg, Duration::ZERO);
            let req = Request {
                method,
                path,
                query: query.as_deref(),
                authorization: auth.as_deref(),
                accept: accept.as_deref(),
                body: &body,
                peer: IpAddr::from([10, 0, 0, (now_ms % 7) as u8]),
            };
            for _ in 0..3 {
                match c.plan(&req, Duration::from_millis(now_ms)) {
                    Plan::Reply(r) => prop_assert!((400..600).contains(&r.status)),
                    Plan::Entropy { bytes, .. } => prop_assert!((1..=4096).contains(&bytes)),
                    Plan::Pollen { challenge } => prop_assert!(!challenge.is_empty()),
                    Plan::Health => {}
                }
            }
        }
    }
}
