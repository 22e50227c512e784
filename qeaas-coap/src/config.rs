//! `qeaas-coapd` configuration: strict TOML (unknown keys are errors).
//!
//! ```toml
//! listen = "[::]:5684"
//! socket = "/run/qeaas/entropy.sock"
//! user = "qeaas-coap"        # dropped to when started as root
//! max_bytes = 256            # largest n= in GET /entropy?n=
//! [[psk]]
//! identity = "device-1"
//! key = "secret text"        # or key_hex = "00112233..."
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Largest `max_bytes`: one response must fit a DTLS record in a 1280-byte IPv6 path.
pub const MAX_BYTES_LIMIT: usize = 1024;

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
    /// Accepted PSK identities.
    #[serde(default)]
    pub psk: Vec<Psk>,
    /// Our certificate, for clients that authenticate the server by PKI instead of a PSK.
    pub certificate: Option<Certificate>,
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
        c.psk_table()?;
        Ok(c)
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

    #[test]
    fn accepts_a_minimal_file_with_defaults() {
        let c = Config::parse(OK).unwrap();
        assert_eq!(c.max_bytes, 256);
        assert_eq!(c.psk_table().unwrap()[&b"a".to_vec()], b"k");
    }

    #[test]
    fn rejects_unknown_keys_everywhere_and_bad_values() {
        for bad in [
            format!("{OK}bogus = 1\n"),
            format!("bogus = 1\n{OK}"),
            format!("{OK}extra = \"x\"\n"), // lands in the [[psk]] table
            "listen = \"127.0.0.1:1\"\n".to_string(),
            format!("max_bytes = 0\n{OK}"),
            format!("max_bytes = 5000\n{OK}"),
            "[[psk]]\nidentity = \"a\"\nkey = \"k\"\nkey_hex = \"00\"\n".into(),
            "[[psk]]\nidentity = \"a\"\nkey_hex = \"0g\"\n".into(),
            "[[psk]]\nidentity = \"a\"\n".into(),
            format!("{OK}[certificate]\nchain = \"c\"\n"),
            "[certificate]\nchain = \"c\"\nkey = \"k\"\nbogus = 1\n".to_string(),
            format!("{OK}[[psk]]\nidentity = \"a\"\nkey = \"other\"\n"),
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
}
