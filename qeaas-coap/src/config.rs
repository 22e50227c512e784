//! `qeaas-coapd` configuration: strict TOML (unknown keys are errors).
//!
//! ```toml
//! listen = "[::]:5684"
//! socket = "/run/qeaas/entropy.sock"
//! user = "qeaas-coap"        # dropped to when started as root
//! max_bytes = 256            # largest n= in GET /entropy?n= (1..=65536)
//! block_size = 1024          # Block2 size for larger answers: 16, 32, ..., 1024
//! block_store_bytes = 1048576  # block-wise bodies held by all sessions together
//! block_secs = 30            # a stored body is wiped this long after block 0
//! [[psk]]
//! identity = "device-1"
//! key = "secret text"        # or key_hex = "00112233..."
//!
//! [certificate]              # our chain and key, for certificate handshakes
//! chain = "/etc/qeaas/coap/server.pem"
//! key = "/etc/qeaas/coap/server-key.der"
//! [client_certs]             # ask clients for certificates (needs [certificate])
//! ca = "/etc/qeaas/coap/ca.pem"  # they must chain to this CA (PEM or DER)
//! require = true             # refuse certificate handshakes without one (PSK ones pass)
//!
//! [dtls]                     # DTLS 1.3 session resumption (optional; off without a file)
//! ticket_key_file = "/var/lib/qeaas-coap/ticket.key"  # created (0600, 32 random bytes) if missing
//! ticket_lifetime_secs = 86400  # 1..=604800
//!
//! # Quotas (optional). Without [quota] nothing is limited. An identity is a PSK identity, or
//! # the CN (else a subjectAltName) of a verified client certificate; a client that
//! # authenticated only the server is "addr:" and its IP.
//! [quota.default]            # for every identity without a table of its own
//! window_secs = 60           # 1..=86400
//! bytes_per_window = 65536   # at least one of the two limits
//! requests_per_window = 600
//! [quota.identity."device-1"]  # replaces the default for this identity (a [[psk]] one)
//! window_secs = 10
//! requests_per_window = 5    # no bytes_per_window: bytes unlimited for it
//! ```
//!
//! Over quota a request gets 4.29 Too Many Requests with Max-Age = whole seconds until its
//! window ends (RFC 8516), and nothing is fetched for it. A block-wise answer counts as one
//! request of its whole size, at block 0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Largest `max_bytes`. Answers above `block_size` go block-wise (RFC 7959), each datagram
/// within a 1280-byte IPv6 path; the whole body is held in memory while it is served.
pub const MAX_BYTES_LIMIT: usize = 65536;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not readable.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// Not valid TOML or an unknown/mistyped key.
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// A value out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

fn d_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 5684))
}
fn d_socket() -> PathBuf {
    PathBuf::from("/run/qeaas/entropy.sock")
}
fn d_user() -> String {
    "nobody".into()
}
fn d_max_bytes() -> usize {
    256
}
fn d_max_sessions() -> usize {
    1024
}
fn d_max_handshakes() -> usize {
    64
}
fn d_idle_secs() -> u64 {
    120
}
fn d_handshake_secs() -> u64 {
    10
}
fn d_wait_ms() -> u16 {
    1000
}
fn d_daemon_connections() -> usize {
    4
}
fn d_block_size() -> usize {
    1024
}
fn d_block_store_bytes() -> usize {
    1 << 20
}
fn d_block_secs() -> u64 {
    30
}
fn d_ticket_lifetime_secs() -> u32 {
    24 * 3600
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// UDP address to serve CoAP over DTLS on.
    #[serde(default = "d_listen")]
    pub listen: SocketAddr,
    /// qeaasd's local socket.
    #[serde(default = "d_socket")]
    pub socket: PathBuf,
    /// The user to run as when started as root.
    #[serde(default = "d_user")]
    pub user: String,
    /// Largest `n=` accepted.
    #[serde(default = "d_max_bytes")]
    pub max_bytes: usize,
    /// Established sessions kept at most; new peers are not answered beyond it.
    #[serde(default = "d_max_sessions")]
    pub max_sessions: usize,
    /// Handshakes (past the cookie) in flight at most.
    #[serde(default = "d_max_handshakes")]
    pub max_handshakes: usize,
    /// An established session silent this long is closed.
    #[serde(default = "d_idle_secs")]
    pub idle_secs: u64,
    /// A handshake not finished within this is abandoned.
    #[serde(default = "d_handshake_secs")]
    pub handshake_secs: u64,
    /// How long one request may wait for the daemon's bytes.
    #[serde(default = "d_wait_ms")]
    pub wait_ms: u16,
    /// Connections to qeaasd's socket, each fetching for one request at a time: requests from
    /// many peers wait for the daemon side by side while datagrams keep being read.
    #[serde(default = "d_daemon_connections")]
    pub daemon_connections: usize,
    /// Block2 size (a power of two, 16..=1024) for answers larger than one block.
    #[serde(default = "d_block_size")]
    pub block_size: usize,
    /// Bytes of block-wise bodies all sessions together hold at most.
    #[serde(default = "d_block_store_bytes")]
    pub block_store_bytes: usize,
    /// Seconds a block-wise body is kept after block 0.
    #[serde(default = "d_block_secs")]
    pub block_secs: u64,
    /// Per-identity quotas.
    pub quota: Option<QuotaConfig>,
    /// Accepted PSK identities.
    #[serde(default)]
    pub psk: Vec<Psk>,
    /// Our certificate, for clients that authenticate the server by PKI instead of a PSK.
    pub certificate: Option<Certificate>,
    /// Client certificates: asked for, verified against a CA, and naming the client.
    pub client_certs: Option<ClientCerts>,
    /// DTLS options beyond the credentials: session tickets.
    #[serde(default)]
    pub dtls: Dtls,
}

/// `[dtls]`: DTLS 1.3 session resumption. With `ticket_key_file`, clients get a session ticket
/// after a full handshake and resume with it (no certificate, no signature, far fewer bytes),
/// also after a restart, since the ticket key comes from the file. Without it no ticket is
/// issued: the file is a long-lived secret worth every client's credentials at once (whoever
/// reads it can make a ticket for any identity), so keeping one is the operator's choice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dtls {
    /// At least 32 bytes of secret, private to the frontend's user (no group or other access);
    /// created with mode 0600 and 32 random bytes when missing. Replacing it (or its
    /// content) ends every ticket issued before.
    pub ticket_key_file: Option<PathBuf>,
    /// Seconds a ticket resumes (TLS 1.3 allows up to 7 days).
    #[serde(default = "d_ticket_lifetime_secs")]
    pub ticket_lifetime_secs: u32,
}

impl Default for Dtls {
    fn default() -> Self {
        Dtls {
            ticket_key_file: None,
            ticket_lifetime_secs: d_ticket_lifetime_secs(),
        }
    }
}

/// `[client_certs]`: mutual authentication by certificate. The CA file is read before the
/// privileges are dropped, like the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCerts {
    /// CA certificate(s), PEM or DER: a client certificate must chain to one of them.
    pub ca: PathBuf,
    /// Refuse certificate handshakes without a valid client certificate. Clients with a PSK
    /// are authenticated by it and pass; without `[[psk]]` every client needs a certificate.
    pub require: bool,
}

/// A certificate chain and its key (ECDSA P-256 or ML-DSA-44), PEM or DER, read before the
/// privileges are dropped (the key may be readable by root only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Chain file, leaf first.
    pub chain: PathBuf,
    /// Private key file.
    pub key: PathBuf,
}

/// `[quota]`: a default and per-identity limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// For identities without a table of their own.
    pub default: Option<QuotaLimit>,
    /// By identity; replaces the default for that identity.
    #[serde(default)]
    pub identity: std::collections::BTreeMap<String, QuotaLimit>,
}

/// One quota: at least one of the limits, per window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimit {
    /// Window length in seconds.
    pub window_secs: u64,
    /// Bytes granted per window.
    pub bytes_per_window: Option<u64>,
    /// Requests granted per window.
    pub requests_per_window: Option<u64>,
}

impl QuotaLimit {
    fn check(&self, whose: &str) -> Result<crate::quota::Limit, ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("quota {whose}: {m}")));
        if !(1..=86400).contains(&self.window_secs) {
            return bad("window_secs must be 1..=86400");
        }
        if self.bytes_per_window.is_none() && self.requests_per_window.is_none() {
            return bad("give bytes_per_window, requests_per_window or both");
        }
        if self.bytes_per_window == Some(0) || self.requests_per_window == Some(0) {
            return bad("limits must be positive");
        }
        Ok(crate::quota::Limit {
            window: std::time::Duration::from_secs(self.window_secs),
            bytes: self.bytes_per_window,
            requests: self.requests_per_window,
        })
    }
}

/// One PSK identity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Psk {
    /// The identity the client sends.
    pub identity: String,
    /// The key as text (libcoap's `-k`).
    pub key: Option<String>,
    /// The key in hex.
    pub key_hex: Option<String>,
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Config {
    /// Parses and validates `text`.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text)?;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if c.max_bytes == 0 || c.max_bytes > MAX_BYTES_LIMIT {
            return bad(format!("max_bytes must be 1..={MAX_BYTES_LIMIT}"));
        }
        if c.max_sessions == 0 || c.max_handshakes == 0 {
            return bad("max_sessions and max_handshakes must be positive".into());
        }
        if c.daemon_connections == 0 || c.daemon_connections > 64 {
            return bad("daemon_connections must be 1..=64".into());
        }
        if c.idle_secs == 0
            || c.handshake_secs == 0
            || c.handshake_secs > 300
            || c.idle_secs > 86400
        {
            return bad("idle_secs must be 1..=86400 and handshake_secs 1..=300".into());
        }
        if c.psk.is_empty() && c.certificate.is_none() {
            return bad("no [[psk]] and no [certificate]: nobody could connect".into());
        }
        if !(16..=1024).contains(&c.block_size) || !c.block_size.is_power_of_two() {
            return bad("block_size must be one of 16, 32, 64, 128, 256, 512, 1024".into());
        }
        if c.block_store_bytes < c.max_bytes || c.block_store_bytes > 1 << 30 {
            return bad("block_store_bytes must be max_bytes..=1073741824".into());
        }
        if !(1..=300).contains(&c.block_secs) {
            return bad("block_secs must be 1..=300".into());
        }
        if !(1..=qeaas_wolfssl_sys::wolf::TICKET_LIFETIME_MAX_SECS)
            .contains(&c.dtls.ticket_lifetime_secs)
        {
            return bad("[dtls] ticket_lifetime_secs must be 1..=604800".into());
        }
        if c.client_certs.is_some() && c.certificate.is_none() {
            return bad(
                "[client_certs] needs [certificate]: in a certificate handshake the \
                        server shows its own first"
                    .into(),
            );
        }
        let table = c.psk_table()?;
        if let Some(q) = &c.quota {
            for id in q.identity.keys() {
                // Certificate names cannot be listed ahead (the CA may issue more), so with
                // [client_certs] any name is a possible identity; without it only PSK ones are.
                if !table.contains_key(id.as_bytes())
                    && !id.starts_with("addr:")
                    && c.client_certs.is_none()
                {
                    return bad(format!(
                        "quota for {id:?}: no [[psk]] has that identity (and no [client_certs])"
                    ));
                }
                if id.is_empty() || id.len() > crate::identity::MAX_LEN {
                    return bad(format!("quota for {id:?}: an identity is 1..=127 bytes"));
                }
            }
        }
        c.quotas()?;
        Ok(c)
    }

    /// The quota tables, checked.
    pub fn quotas(&self) -> Result<crate::quota::Quotas, ConfigError> {
        let Some(q) = &self.quota else {
            return Ok(crate::quota::Quotas::default());
        };
        let default = q.default.as_ref().map(|l| l.check("default")).transpose()?;
        let mut by = std::collections::HashMap::new();
        for (id, l) in &q.identity {
            by.insert(id.clone(), l.check(id)?);
        }
        Ok(crate::quota::Quotas::new(default, by))
    }

    /// Block size exponent of `block_size`.
    pub fn block_szx(&self) -> u8 {
        // 16 << szx == block_size; validated a power of two in 16..=1024.
        (self.block_size.trailing_zeros().saturating_sub(4)).min(6) as u8
    }

    /// Reads and parses `path`.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let t = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        Config::parse(&t)
    }

    /// Identity to key.
    pub fn psk_table(&self) -> Result<HashMap<Vec<u8>, Vec<u8>>, ConfigError> {
        let mut t = HashMap::new();
        for p in &self.psk {
            let key = match (&p.key, &p.key_hex) {
                (Some(k), None) => k.as_bytes().to_vec(),
                (None, Some(h)) => hex(h).ok_or_else(|| {
                    ConfigError::Invalid(format!("psk {:?}: key_hex is not hex", p.identity))
                })?,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "psk {:?}: give exactly one of key, key_hex",
                        p.identity
                    )))
                }
            };
            // wolfSSL's PSK buffers hold 128-byte identities and 64-byte keys.
            if p.identity.is_empty() || p.identity.len() > 127 || p.identity.contains('\0') {
                return Err(ConfigError::Invalid(format!(
                    "psk {:?}: identity must be 1..=127 bytes without NUL",
                    p.identity
                )));
            }
            if key.is_empty() || key.len() > 64 {
                return Err(ConfigError::Invalid(format!(
                    "psk {:?}: key must be 1..=64 bytes",
                    p.identity
                )));
            }
            if t.insert(p.identity.as_bytes().to_vec(), key).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "psk {:?} given twice",
                    p.identity
                )));
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "listen = \"127.0.0.1:5684\"\n[[psk]]\nidentity = \"a\"\nkey = \"k\"\n";
    const CERT: &str = "[certificate]\nchain = \"c\"\nkey = \"k\"\n";

    #[test]
    fn client_certs_and_quotas_for_certificate_names() {
        let quota = "[quota.identity.\"client-7\"]\nwindow_secs = 6\nrequests_per_window = 1\n";
        // Without [client_certs], a quota must name a PSK identity...
        assert!(Config::parse(&format!("{OK}{CERT}{quota}")).is_err());
        // ...with it, a certificate name is fine too.
        let c = Config::parse(&format!(
            "{OK}{CERT}[client_certs]\nca = \"ca.pem\"\nrequire = true\n{quota}"
        ))
        .unwrap();
        let cc = c.client_certs.as_ref().unwrap();
        assert!(cc.require);
        assert_eq!(cc.ca, std::path::Path::new("ca.pem"));
        // Certificates only: no [[psk]] at all.
        let c = Config::parse(&format!(
            "{CERT}[client_certs]\nca = \"ca.pem\"\nrequire = false\n"
        ))
        .unwrap();
        assert!(c.psk.is_empty() && !c.client_certs.unwrap().require);
    }

    #[test]
    fn accepts_a_minimal_file_with_defaults() {
        let c = Config::parse(OK).unwrap();
        assert_eq!(c.max_bytes, 256);
        assert_eq!(c.psk_table().unwrap()[&b"a".to_vec()], b"k");
        assert_eq!((c.block_size, c.block_szx()), (1024, 6));
        assert!(c.quota.is_none());
    }

    #[test]
    fn quotas_and_blocks() {
        let c = Config::parse(&format!(
            "max_bytes = 65536\nblock_size = 512\n{OK}[quota.default]\nwindow_secs = 60\n\
             bytes_per_window = 4096\n[quota.identity.a]\nwindow_secs = 10\nrequests_per_window = 2\n"
        ))
        .unwrap();
        assert_eq!(c.block_szx(), 5);
        let mut q = c.quotas().unwrap();
        let t = std::time::Instant::now();
        use crate::quota::Verdict;
        assert_eq!(q.charge("a", 60000, t), Verdict::Granted);
        assert_eq!(q.charge("a", 1, t), Verdict::Granted);
        assert_eq!(q.charge("a", 1, t), Verdict::RetryAfter(10));
        assert_eq!(q.charge("addr:10.0.0.1", 4097, t), Verdict::Never);
    }

    #[test]
    fn rejects_unknown_keys_everywhere_and_bad_values() {
        for bad in [
            format!("{OK}bogus = 1\n"),
            format!("bogus = 1\n{OK}"),
            format!("{OK}extra = \"x\"\n"), // lands in the [[psk]] table
            "listen = \"127.0.0.1:1\"\n".to_string(),
            format!("max_bytes = 0\n{OK}"),
            format!("max_bytes = 70000\n{OK}"),
            format!("block_size = 2048\n{OK}"),
            format!("block_size = 100\n{OK}"),
            format!("block_secs = 0\n{OK}"),
            format!("max_bytes = 4096\nblock_store_bytes = 1000\n{OK}"),
            format!("{OK}[quota.default]\nwindow_secs = 60\n"),
            format!("{OK}[quota.default]\nwindow_secs = 0\nbytes_per_window = 1\n"),
            format!("{OK}[quota.default]\nwindow_secs = 6\nbytes_per_window = 0\n"),
            format!("{OK}[quota.default]\nwindow_secs = 6\nbytes = 10\n"),
            format!("{OK}[quota]\nbogus = 1\n"),
            format!(
                "{OK}[quota.identity.\"nobody-known\"]\nwindow_secs = 6\nrequests_per_window = 1\n"
            ),
            format!("{OK}[quota.identity.a]\nwindow_secs = 6\nrequests_per_window = 1\nx = 1\n"),
            "[[psk]]\nidentity = \"a\"\nkey = \"k\"\nkey_hex = \"00\"\n".into(),
            "[[psk]]\nidentity = \"a\"\nkey_hex = \"0g\"\n".into(),
            "[[psk]]\nidentity = \"a\"\n".into(),
            format!("{OK}[certificate]\nchain = \"c\"\n"),
            "[certificate]\nchain = \"c\"\nkey = \"k\"\nbogus = 1\n".to_string(),
            format!("{OK}[[psk]]\nidentity = \"a\"\nkey = \"other\"\n"),
            // [client_certs]: needs [certificate], `require` given, nothing else.
            format!("{OK}[client_certs]\nca = \"ca.pem\"\nrequire = true\n"),
            format!("{OK}{CERT}[client_certs]\nca = \"ca.pem\"\n"),
            format!("{OK}{CERT}[client_certs]\nca = \"ca.pem\"\nrequire = true\nbogus = 1\n"),
            format!("{OK}{CERT}[client_certs]\nrequire = false\n"),
            format!("{OK}{CERT}[client_certs]\nca = \"ca.pem\"\nrequire = \"yes\"\n"),
        ] {
            assert!(Config::parse(&bad).is_err(), "accepted:\n{bad}");
        }
    }
}

#[cfg(test)]
mod shipped {
    /// The example shipped in config/ parses, and a bogus key injected into it is refused.
    #[test]
    fn shipped_config_parses_and_stays_strict() {
        let t = include_str!("../../config/coapd.toml");
        super::Config::parse(t).unwrap();
        let bogus = t.replace("max_bytes = 256", "max_bytes = 256\nbogus = 1");
        assert!(super::Config::parse(&bogus).is_err());
        let bogus = format!("{t}bogus = 1\n");
        assert!(super::Config::parse(&bogus).is_err());
    }

    /// The commented-out [certificate] and [client_certs] examples parse once uncommented,
    /// and stay strict.
    #[test]
    fn shipped_certificate_examples_parse_when_uncommented() {
        let t = include_str!("../../config/coapd.toml");
        let mut on = t.to_string();
        for block in [
            "[certificate]\n# chain = \"/etc/qeaas/coap/server.pem\"\n# key = \"/etc/qeaas/coap/server-key.der\"",
            "[client_certs]\n# ca = \"/etc/qeaas/coap/ca.pem\"\n# require = true",
        ] {
            let commented = format!("# {block}");
            assert!(on.contains(&commented), "{block}");
            on = on.replace(&commented, &block.replace("# ", ""));
        }
        let c = super::Config::parse(&on).unwrap();
        assert!(c.client_certs.unwrap().require);
        let bogus = on.replace("require = true", "require = true\nbogus = 1");
        assert!(super::Config::parse(&bogus).is_err());
    }

    /// The commented-out [dtls] example parses once uncommented, and stays strict; without
    /// it there is no ticket key file (no tickets) and the lifetime is a day.
    #[test]
    fn shipped_ticket_example_parses_when_uncommented() {
        let t = include_str!("../../config/coapd.toml");
        let c = super::Config::parse(t).unwrap();
        assert_eq!(c.dtls.ticket_key_file, None);
        assert_eq!(c.dtls.ticket_lifetime_secs, 86400);
        let block = "[dtls]\n# ticket_key_file = \"/var/lib/qeaas-coap/ticket.key\"\n# ticket_lifetime_secs = 86400";
        let commented = format!("# {block}");
        assert!(t.contains(&commented));
        let on = t.replace(&commented, &block.replace("# ", ""));
        let c = super::Config::parse(&on).unwrap();
        assert_eq!(
            c.dtls.ticket_key_file.as_deref(),
            Some(std::path::Path::new("/var/lib/qeaas-coap/ticket.key"))
        );
        for bad in [
            on.replace("[dtls]\n", "[dtls]\nbogus = 1\n"),
            on.replace("ticket_lifetime_secs = 86400", "ticket_lifetime_secs = 0"),
            on.replace(
                "ticket_lifetime_secs = 86400",
                "ticket_lifetime_secs = 604801",
            ),
        ] {
            assert!(super::Config::parse(&bad).is_err(), "accepted:\n{bad}");
        }
    }
}
