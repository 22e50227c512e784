//! TLS 1.3 with the statically built OpenSSL 3.5 (ML-KEM groups, ML-DSA certificates), and the
//! `gen-cert` helper that makes a self-signed CA and a server certificate for tests and demos.

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{KeyType, PKey, Private};
use openssl::ssl::{AlpnError, SslAcceptor, SslMethod, SslVersion};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Name, X509};

use crate::config::TlsConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// OpenSSL refused (bad key, unknown group...).
    #[error("{what}: {source}")]
    Openssl {
        /// What was being done.
        what: String,
        /// OpenSSL's error queue.
        source: openssl::error::ErrorStack,
    },
    /// Writing a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn ctx<T>(
    r: Result<T, openssl::error::ErrorStack>,
    what: impl FnOnce() -> String,
) -> Result<T, TlsError> {
    r.map_err(|source| TlsError::Openssl {
        what: what(),
        source,
    })
}

/// ALPN protocols we speak, in wire format, preferred first.
const ALPN: &[u8] = b"\x02h2\x08http/1.1";

/// A TLS 1.3-only acceptor with the configured groups, certificate and ALPN (h2, http/1.1).
pub fn acceptor(cfg: &TlsConfig) -> Result<SslAcceptor, TlsError> {
    let mut b = ctx(
        SslAcceptor::mozilla_modern_v5(SslMethod::tls_server()),
        || "TLS context".into(),
    )?;
    ctx(b.set_min_proto_version(Some(SslVersion::TLS1_3)), || {
        "TLS 1.3 minimum".into()
    })?;
    let groups = cfg.groups.join(":");
    ctx(b.set_groups_list(&groups), || format!("groups {groups:?}"))?;
    ctx(b.set_certificate_chain_file(&cfg.cert), || {
        format!("certificate {}", cfg.cert.display())
    })?;
    ctx(
        b.set_private_key_file(&cfg.key, openssl::ssl::SslFiletype::PEM),
        || format!("key {}", cfg.key.display()),
    )?;
    ctx(b.check_private_key(), || {
        "the key does not match the certificate".into()
    })?;
    b.set_alpn_select_callback(|_, client| {
        openssl::ssl::select_next_proto(ALPN, client).ok_or(AlpnError::NOACK)
    });
    Ok(b.build())
}

/// Signature algorithm of generated certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlg {
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256,
    /// ML-DSA-44 (FIPS 204), pure mode.
    #[value(name = "ml-dsa-44")]
    MlDsa44,
}

fn new_key(alg: KeyAlg) -> Result<PKey<Private>, TlsError> {
    match alg {
        KeyAlg::EcdsaP256 => {
            let g = ctx(EcGroup::from_curve_name(Nid::X9_62_PRIME256V1), || {
                "P-256".into()
            })?;
            let k = ctx(EcKey::generate(&g), || "P-256 key".into())?;
            ctx(PKey::from_ec_key(k), || "P-256 key".into())
        }
        KeyAlg::MlDsa44 => {
            let mut seed = [0u8; 32];
            ctx(openssl::rand::rand_bytes(&mut seed), || "seed".into())?;
            ctx(
                PKey::private_key_from_seed(None, KeyType::ML_DSA_44, None, &seed),
                || "ML-DSA-44 key".into(),
            )
        }
    }
}

fn digest(alg: KeyAlg) -> MessageDigest {
    match alg {
        KeyAlg::EcdsaP256 => MessageDigest::sha256(),
        // ML-DSA signs the message itself: OpenSSL wants no digest.
        KeyAlg::MlDsa44 => MessageDigest::null(),
    }
}

fn name(cn: &str) -> Result<X509Name, openssl::error::ErrorStack> {
    let mut n = X509Name::builder()?;
    n.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(n.build())
}

fn build_cert(
    subject: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    sans: &[String],
    alg: KeyAlg,
) -> Result<X509, openssl::error::ErrorStack> {
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    let subject_name = name(subject)?;
    b.set_subject_name(&subject_name)?;
    b.set_pubkey(key)?;
    let (from, to) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(825)?);
    b.set_not_before(&from)?;
    b.set_not_after(&to)?;
    match issuer {
        None => {
            b.set_issuer_name(&subject_name)?;
            b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()?,
            )?;
            b.sign(key, digest(alg))?;
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name())?;
            b.append_extension(BasicConstraints::new().critical().build()?)?;
            b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
            b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
            let mut san = SubjectAlternativeName::new();
            for s in sans {
                if s.parse::<std::net::IpAddr>().is_ok() {
                    san.ip(s);
                } else {
                    san.dns(s);
                }
            }
            let ext = san.build(&b.x509v3_context(Some(ca), None))?;
            b.append_extension(ext)?;
            b.sign(ca_key, digest(alg))?;
        }
    }
    Ok(b.build())
}

/// Writes `ca.crt`, `server.crt` and `server.key` (mode 0600) into `dir`: a self-signed CA and a
/// server certificate for `sans` (DNS names or IP addresses), both with `alg`.
pub fn generate(dir: &Path, alg: KeyAlg, sans: &[String]) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let ca_key = new_key(alg)?;
    let ca = ctx(build_cert("qeaas test CA", &ca_key, None, &[], alg), || {
        "CA certificate".into()
    })?;
    let key = new_key(alg)?;
    let cn = sans.first().map_or("localhost", |s| s.as_str());
    let cert = ctx(
        build_cert(cn, &key, Some((&ca, &ca_key)), sans, alg),
        || "server certificate".into(),
    )?;
    let pem = |r| ctx(r, || "PEM".into());
    std::fs::write(dir.join("ca.crt"), pem(ca.to_pem())?)?;
    std::fs::write(dir.join("server.crt"), pem(cert.to_pem())?)?;
    let key_pem = pem(key.private_key_to_pem_pkcs8())?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("server.key"))?;
    std::io::Write::write_all(&mut f, &key_pem)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_chains_verify_for_both_algorithms() {
        for alg in [KeyAlg::EcdsaP256, KeyAlg::MlDsa44] {
            let d = tempfile::tempdir().unwrap();
            generate(d.path(), alg, &["127.0.0.1".into(), "localhost".into()]).unwrap();
            let ca = X509::from_pem(&std::fs::read(d.path().join("ca.crt")).unwrap()).unwrap();
            let cert =
                X509::from_pem(&std::fs::read(d.path().join("server.crt")).unwrap()).unwrap();
            assert!(cert.verify(&ca.public_key().unwrap()).unwrap(), "{alg:?}");
            assert!(!cert.verify(&cert.public_key().unwrap()).unwrap_or(false));
            let cfg = TlsConfig {
                cert: d.path().join("server.crt"),
                key: d.path().join("server.key"),
                groups: crate::config::default_groups(),
            };
            acceptor(&cfg).unwrap();
        }
    }

    #[test]
    fn unknown_group_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        generate(d.path(), KeyAlg::EcdsaP256, &["localhost".into()]).unwrap();
        let cfg = TlsConfig {
            cert: d.path().join("server.crt"),
            key: d.path().join("server.key"),
            groups: vec!["NoSuchGroup".into()],
        };
        let Err(e) = acceptor(&cfg) else {
            panic!("accepted an unknown group")
        };
        let e = e.to_string();
        assert!(e.contains("NoSuchGroup"), "{e}");
    }
}
