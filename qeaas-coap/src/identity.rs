//! Whose requests a session makes: the name quotas, counters and logs use. Sans-IO.
//!
//! A PSK client is its PSK identity. A client with a verified certificate is the certificate's
//! commonName, or when that is unusable its first usable subjectAltName: the same namespace as
//! PSK identities on purpose, so `gen-credentials`' `client-N` has one quota whichever
//! credential it uses. A client that authenticated only the server is `addr:` and its IP
//! address; no certificate may claim such a name.

use std::net::IpAddr;

use qeaas_wolfssl_sys::PeerNames;

/// Longest identity, as for PSK identities (wolfSSL's 128-byte buffer with its NUL).
pub const MAX_LEN: usize = 127;

/// How a session authenticated its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// By a pre-shared key.
    Psk(String),
    /// By a certificate that chains to `[client_certs] ca`.
    Certificate(String),
    /// Not at all (it authenticated the server only): counted by address.
    Address(IpAddr),
}

impl Identity {
    /// The name quotas are keyed by.
    pub fn name(&self) -> String {
        match self {
            Identity::Psk(n) | Identity::Certificate(n) => n.clone(),
            Identity::Address(a) => format!("addr:{a}"),
        }
    }

    /// How the client authenticated, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Psk(_) => "psk",
            Identity::Certificate(_) => "certificate",
            Identity::Address(_) => "none",
        }
    }
}

/// Why a handshake that wolfSSL completed is still refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `[client_certs] require = true` and the client showed no certificate (a backstop: wolfSSL
    /// already fails such handshakes).
    #[error("no client certificate, and [client_certs] requires one")]
    NoCertificate,
    /// The certificate verified, but neither its CN nor a subjectAltName is a usable identity.
    #[error("the client certificate names no usable identity (CN {0:?})")]
    Unnamed(Option<String>),
}

/// A certificate name usable as an identity: 1..=127 printable ASCII characters (it goes into
/// logs and config keys), not `addr:` (reserved for unauthenticated clients).
fn usable(name: &str) -> bool {
    (1..=MAX_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !name.starts_with("addr:")
}

/// The identity of a session whose handshake completed: `psk` is the PSK identity wolfSSL
/// accepted, `cert` the names of the verified client certificate, `required` whether
/// `[client_certs] require` is set.
pub fn of_session(
    psk: Option<String>,
    cert: Option<PeerNames>,
    required: bool,
    peer: IpAddr,
) -> Result<Identity, Refused> {
    if let Some(p) = psk.filter(|p| !p.is_empty()) {
        return Ok(Identity::Psk(p));
    }
    match cert {
        Some(names) => names
            .cn
            .iter()
            .chain(names.alt.iter())
            .find(|n| usable(n))
            .map(|n| Identity::Certificate(n.clone()))
            .ok_or(Refused::Unnamed(names.cn)),
        None if required => Err(Refused::NoCertificate),
        None => Ok(Identity::Address(peer)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(cn: Option<&str>, alt: &[&str]) -> Option<PeerNames> {
        Some(PeerNames {
            cn: cn.map(String::from),
            alt: alt.iter().map(|s| s.to_string()).collect(),
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn psk_wins_then_cn_then_san_then_address() {
        let id = |psk: Option<&str>, cert, req| of_session(psk.map(String::from), cert, req, IP);
        assert_eq!(
            id(Some("device-1"), None, true),
            Ok(Identity::Psk("device-1".into()))
        );
        assert_eq!(
            id(None, names(Some("client-1"), &["x.example"]), false),
            Ok(Identity::Certificate("client-1".into()))
        );
        assert_eq!(
            id(None, names(None, &["x.example"]), true),
            Ok(Identity::Certificate("x.example".into()))
        );
        // wolfSSL reports a missing CN as empty: the SAN is used.
        assert_eq!(
            id(None, names(Some(""), &["x.example"]), true),
            Ok(Identity::Certificate("x.example".into()))
        );
        assert_eq!(id(None, None, false).unwrap().name(), "addr:192.0.2.7");
        // An empty PSK identity is no identity.
        assert_eq!(id(Some(""), None, false).unwrap().kind(), "none");
    }

    #[test]
    fn refusals() {
        let id = |cert, req| of_session(None, cert, req, IP);
        assert_eq!(id(None, true), Err(Refused::NoCertificate));
        for bad in [
            "",
            "addr:10.0.0.1",
            "tab\there",
            "new\nline",
            "\u{e9}t\u{e9}",
        ] {
            assert_eq!(
                id(names(Some(bad), &[]), false),
                Err(Refused::Unnamed(Some(bad.into()))),
                "{bad:?}"
            );
        }
        let long = "x".repeat(MAX_LEN + 1);
        assert!(id(names(Some(&long), &[]), false).is_err());
        assert!(id(names(Some(&long[1..]), &[]), false).is_ok());
        // A bad CN falls through to a usable SAN.
        assert_eq!(
            id(
                names(Some("addr:1.2.3.4"), &["addr:x", "ok.example"]),
                false
            ),
            Ok(Identity::Certificate("ok.example".into()))
        );
    }
}
