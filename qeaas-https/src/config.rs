//! `qeaas-httpsd.toml`: strict TOML, unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type.
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// A value that parses but makes no sense.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// qeaasd's local socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Longest the daemon may make one request wait for entropy, in milliseconds.
    #[serde(default = "default_wait_ms")]
    pub wait_ms: u16,
    /// When started as root: the user to become after binding (required then).
    pub user: Option<String>,
    /// TLS settings. Without this table the server speaks plain HTTP, which is only allowed on a
    /// loopback address (for a reverse proxy such as nginx in front).
    pub tls: Option<TlsConfig>,
    /// Largest `bytes=` a JSON API client may ask for at once.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u16,
    /// Pool bytes fetched from qeaasd ahead of demand (0: off), so that most requests under
    /// load are answered without a local-socket round trip. qeaasd counts them as served to
    /// this frontend when it hands them over.
    #[serde(default = "default_prefetch_bytes")]
    pub prefetch_bytes: u16,
    /// Longest a prefetched byte is kept before it is zeroized unused, in milliseconds.
    #[serde(default = "default_max_buffer_age_ms")]
    pub max_buffer_age_ms: u32,
    /// A client connection (HTTP/1.1 keep-alive or HTTP/2) with no request in flight for this
    /// many seconds is closed. When every connection slot is taken, the one idle longest is
    /// closed at once for a new client, whatever this says.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u16,
    /// The anonymous pollen endpoint.
    #[serde(default)]
    pub pollen: PollenConfig,
    /// API clients.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
}

/// `[pollen]`: the endpoint for `pollinate`, which sends no credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollenConfig {
    /// Serve `POST /`.
    pub enable: bool,
    /// Requests per second for all pollinate clients together (each takes 64 pool bytes);
    /// unset: no global limit, as Debian's pollen.
    pub rate_per_sec: Option<f64>,
    /// Requests allowed in a burst, all clients together.
    pub burst: u32,
    /// Requests per second from one client address (an IPv4 address, an IPv6 /64); 0: no
    /// per-address limit. pollinate asks once per boot, so only a client that hammers the
    /// endpoint meets it.
    pub per_address_rate_per_sec: f64,
    /// Requests one address may make in a burst (machines booting together behind one NAT).
    pub per_address_burst: u32,
}

impl Default for PollenConfig {
    fn default() -> Self {
        Self {
            enable: true,
            rate_per_sec: None,
            burst: 100,
            per_address_rate_per_sec: 1.0,
            per_address_burst: 20,
        }
    }
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (ECDSA P-256 or ML-DSA-44, anything OpenSSL 3.5 loads).
    pub key: PathBuf,
    /// Key-exchange groups, most preferred first (OpenSSL names).
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
}

/// `[[client]]`: one bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Name, for logs.
    pub name: String,
    /// SHA-256 of the token, hex: the token itself is never stored.
    pub token_sha256: String,
    /// Bytes this client may take per quota period.
    pub quota_bytes: u64,
    /// Quota period in seconds.
    #[serde(default = "default_period")]
    pub quota_period_secs: u64,
    /// Sustained requests per second.
    pub rate_per_sec: f64,
    /// Requests allowed in a burst.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/qeaas/entropy.sock")
}
fn default_wait_ms() -> u16 {
    1000
}
fn default_max_bytes() -> u16 {
    4096
}
fn default_prefetch_bytes() -> u16 {
    4096
}
fn default_max_buffer_age_ms() -> u32 {
    100
}
fn default_idle_timeout_secs() -> u16 {
    30
}
fn default_period() -> u64 {
    86_400
}
fn default_burst() -> u32 {
    10
}

/// The default groups: hybrid PQ first, then pure ML-KEM, then classical.
pub fn default_groups() -> Vec<String> {
    ["X25519MLKEM768", "MLKEM768", "MLKEM512", "X25519", "P-256"]
        .map(String::from)
        .to_vec()
}

impl Config {
    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.tls.is_none() && !self.listen.ip().is_loopback() {
            return bad(format!(
                "listen = {}: plain HTTP (no [tls]) is only allowed on loopback",
                self.listen
            ));
        }
        if let Some(t) = &self.tls {
            if t.groups.is_empty() {
                return bad("tls.groups is empty".into());
            }
            if let Some(g) = t.groups.iter().find(|g| g.is_empty() || g.contains(':')) {
                return bad(format!("tls.groups: bad group name {g:?}"));
            }
        }
        if !(1..=4096).contains(&self.max_bytes) {
            return bad(format!("max_bytes = {}: must be 1..=4096", self.max_bytes));
        }
        if !(1..=60_000).contains(&self.max_buffer_age_ms) {
            return bad(format!(
                "max_buffer_age_ms = {}: must be 1..=60000",
                self.max_buffer_age_ms
            ));
        }
        if self.idle_timeout_secs == 0 {
            return bad("idle_timeout_secs must be > 0".into());
        }
        let p = &self.pollen;
        if !(p.per_address_rate_per_sec.is_finite() && p.per_address_rate_per_sec >= 0.0)
            || (p.per_address_rate_per_sec > 0.0 && p.per_address_burst == 0)
        {
            return bad(
                "pollen.per_address_rate_per_sec must be >= 0 (0: off), with per_address_burst > 0"
                    .into(),
            );
        }
        if let Some(r) = self.pollen.rate_per_sec {
            if !(r.is_finite() && r > 0.0) || self.pollen.burst == 0 {
                return bad("pollen.rate_per_sec and pollen.burst must be > 0".into());
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.clients {
            let ok = c.token_sha256.len() == 64 && hex::decode(&c.token_sha256).is_ok();
            if !ok {
                return bad(format!(
                    "client {:?}: token_sha256 must be 64 hex digits (sha256sum of the token)",
                    c.name
                ));
            }
            if !seen.insert(c.token_sha256.to_ascii_lowercase()) {
                return bad(format!("client {:?}: duplicate token", c.name));
            }
            if !(c.rate_per_sec.is_finite() && c.rate_per_sec > 0.0) {
                return bad(format!("client {:?}: rate_per_sec must be > 0", c.name));
            }
            if c.burst == 0 || c.quota_period_secs == 0 {
                return bad(format!(
                    "client {:?}: burst and quota_period_secs must be > 0",
                    c.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:8443"
socket = "/run/qeaas/entropy.sock"
user = "nobody"
[pollen]
rate_per_sec = 100.0
[tls]
cert = "/etc/qeaas/https.crt"
key = "/etc/qeaas/https.key"
[[client]]
name = "a"
token_sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
quota_bytes = 1000
rate_per_sec = 2.5
"#;

    #[test]
    fn parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.tls.unwrap().groups, default_groups());
        assert_eq!(c.clients[0].burst, 10);
        assert_eq!(c.max_bytes, 4096);
        assert_eq!((c.prefetch_bytes, c.max_buffer_age_ms), (4096, 100));
        assert_eq!(c.idle_timeout_secs, 30);
        assert_eq!(
            (
                c.pollen.per_address_rate_per_sec,
                c.pollen.per_address_burst
            ),
            (1.0, 20)
        );
        assert!(Config::parse(&format!("idle_timeout_secs = 0\n{GOOD}")).is_err());
        let t = GOOD.replace("rate_per_sec = 100.0", "per_address_rate_per_sec = -1.0");
        assert!(Config::parse(&t).is_err());
        let t = GOOD.replace("rate_per_sec = 100.0", "per_address_rate_per_sec = 0.0");
        assert!(Config::parse(&t).is_ok());
        let off = Config::parse(&format!("prefetch_bytes = 0\n{GOOD}")).unwrap();
        assert_eq!(off.prefetch_bytes, 0);
        assert!(Config::parse(&format!("max_buffer_age_ms = 0\n{GOOD}")).is_err());
        assert!(Config::parse(&format!("prefetch_bytes = 70000\n{GOOD}")).is_err());
    }

    #[test]
    fn rejects_unknown_keys_in_every_table() {
        for anchor in ["listen =", "rate_per_sec = 100", "cert =", "name ="] {
            let t = GOOD.replacen(anchor, &format!("bogus = 1\n{anchor}"), 1);
            assert!(
                Config::parse(&t).is_err(),
                "accepted a bogus key before {anchor}"
            );
        }
    }

    #[test]
    fn rejects_plain_http_off_loopback_and_bad_tokens() {
        let plain = "listen = \"0.0.0.0:80\"\n";
        assert!(Config::parse(plain).is_err());
        assert!(Config::parse("listen = \"127.0.0.1:80\"\n").is_ok());
        let t = GOOD.replace("2c26b4", "zz26b4");
        assert!(Config::parse(&t).is_err());
        let t = GOOD.replace("rate_per_sec = 2.5", "rate_per_sec = 0");
        assert!(Config::parse(&t).is_err());
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../qeaas-httpsd.example.toml");
        Config::parse(text).unwrap();
    }
}
