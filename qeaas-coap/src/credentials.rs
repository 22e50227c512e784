//! `qeaas-coapd gen-credentials`: a private CA, a server certificate signed by it (ML-DSA-44
//! through wolfCrypt, or ECDSA P-256 through RustCrypto's `p256`), PSKs and client
//! certificates (CN = the client's identity, clientAuth) for N clients, and a `coapd.toml`
//! snippet naming them.
//!
//! X.509 v3 (RFC 5280) is DER-encoded here by hand on the DER primitives of
//! `qeaas_wolfssl_sys::x509`, for both algorithms, with the keys we already have (wolfSSL's
//! certificate generator is not in our build; unlike `x509::self_signed_mldsa44` this signs
//! leaves with a CA key and writes their extensions). Key identifiers are the leftmost 160 bits
//! of SHA-256 of the whole
//! SubjectPublicKeyInfo (in the spirit of RFC 7093; they need only be unique).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use p256::pkcs8::der::pem::LineEnding;
use qeaas_wolfssl_sys::wolf::MlDsa44;
use qeaas_wolfssl_sys::x509::{seq, tlv};
use sha2::Digest;

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredError {
    /// A file could not be written (or already exists: nothing is overwritten).
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// Key generation or signing failed in wolfCrypt.
    #[error("{0}")]
    Tls(#[from] qeaas_wolfssl_sys::Error),
    /// Key generation or encoding failed in `p256`.
    #[error("ECDSA P-256: {0}")]
    Ecdsa(String),
    /// The OS random generator failed.
    #[error("getrandom: {0}")]
    Random(getrandom::Error),
    /// An option out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The signature algorithm of the CA and the server certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// ML-DSA-44 (FIPS 204): post-quantum.
    MlDsa44,
    /// ECDSA P-256 with SHA-256: what libcoap's clients and OpenSSL verify today.
    EcdsaP256,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Output directory (created; existing files in it are never overwritten).
    pub out: PathBuf,
    /// Number of client PSKs.
    pub clients: usize,
    /// Algorithm.
    pub algo: Algo,
    /// subjectAltName entries of the server certificate: IP addresses or DNS names.
    pub san: Vec<String>,
    /// Validity of the server and client certificates in days (the CA gets ten times as long).
    pub days: u32,
    /// Key algorithm of the client certificates (signed by the CA, whatever its algorithm);
    /// `None`: PSKs only.
    pub client_certs: Option<Algo>,
}

/// The files written.
#[derive(Debug, Clone)]
pub struct Written {
    /// CA certificate, PEM.
    pub ca: PathBuf,
    /// CA private key (keep it offline).
    pub ca_key: PathBuf,
    /// Server certificate, PEM.
    pub server: PathBuf,
    /// Server private key.
    pub server_key: PathBuf,
    /// One PSK file per client: (identity, path of the key file).
    pub psks: Vec<(String, PathBuf)>,
    /// One certificate per client, when asked for.
    pub client_certs: Vec<ClientCert>,
    /// The `coapd.toml` snippet.
    pub snippet: PathBuf,
}

/// A client certificate and its key.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The client identity: the certificate's CN, as PSK identities are named.
    pub identity: String,
    /// Certificate, PEM (libcoap's `-c`, `qeaas-fetch --cert`).
    pub cert: PathBuf,
    /// The same certificate, DER (for firmware, which embeds it as bytes).
    pub cert_der: PathBuf,
    /// Private key, PKCS#8: PEM for ECDSA (libcoap's `-j`), DER for ML-DSA-44.
    pub key: PathBuf,
}

fn oid(der_body: &[u8]) -> Vec<u8> {
    tlv(0x06, der_body)
}

fn name(cn: &str) -> Vec<u8> {
    let atv = seq(&[&oid(&[0x55, 0x04, 0x03]), &tlv(0x0c, cn.as_bytes())]);
    seq(&[&tlv(0x31, &atv)])
}

fn ext(id: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let crit: &[u8] = if critical { &[0x01, 0x01, 0xff] } else { &[] };
    seq(&[&oid(id), crit, &tlv(0x04, value)])
}

/// RFC 5280 time: UTCTime through 2049, GeneralizedTime after.
fn time(unix: i64) -> Vec<u8> {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let hms = format!(
        "{m:02}{d:02}{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if (1950..2050).contains(&y) {
        tlv(0x17, format!("{:02}{hms}", y % 100).as_bytes())
    } else {
        tlv(0x18, format!("{y:04}{hms}").as_bytes())
    }
}

/// A signing key of either algorithm.
enum Key {
    MlDsa(MlDsa44),
    Ec(p256::ecdsa::SigningKey),
}

impl Key {
    fn generate(algo: Algo) -> Result<Key, CredError> {
        Ok(match algo {
            Algo::MlDsa44 => Key::MlDsa(MlDsa44::generate()?),
            Algo::EcdsaP256 => loop {
                // 32 bytes from the OS; the rare value >= n (or zero) is drawn again.
                let mut b = zeroize::Zeroizing::new([0u8; 32]);
                getrandom::fill(&mut *b).map_err(CredError::Random)?;
                if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&*b) {
                    break Key::Ec(k);
                }
            },
        })
    }

    /// AlgorithmIdentifier of signatures made with this key.
    fn sig_alg(&self) -> Vec<u8> {
        match self {
            // id-ml-dsa-44 (2.16.840.1.101.3.4.3.17), parameters absent (RFC 9881).
            Key::MlDsa(_) => seq(&[&oid(&[
                0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11,
            ])]),
            // ecdsa-with-SHA256 (1.2.840.10045.4.3.2), parameters absent (RFC 5758).
            Key::Ec(_) => seq(&[&oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])]),
        }
    }

    fn spki(&self) -> Result<Vec<u8>, CredError> {
        match self {
            Key::MlDsa(k) => {
                let mut bits = vec![0u8]; // BIT STRING: no unused bits
                bits.extend_from_slice(&k.public_raw()?);
                Ok(seq(&[&self.sig_alg(), &tlv(0x03, &bits)]))
            }
            Key::Ec(k) => {
                use p256::pkcs8::EncodePublicKey;
                let der = p256::PublicKey::from(k.verifying_key())
                    .to_public_key_der()
                    .map_err(|e| CredError::Ecdsa(e.to_string()))?;
                Ok(der.as_bytes().to_vec())
            }
        }
    }

    fn sign(&mut self, tbs: &[u8]) -> Result<Vec<u8>, CredError> {
        match self {
            Key::MlDsa(k) => Ok(k.sign(tbs)?),
            Key::Ec(k) => {
                use p256::ecdsa::signature::Signer;
                let s: p256::ecdsa::Signature = k.sign(tbs);
                Ok(s.to_der().as_bytes().to_vec())
            }
        }
    }

    /// The private key file: (file name suffix, bytes).
    fn private_file(&self) -> Result<(&'static str, Vec<u8>), CredError> {
        match self {
            // PKCS#8 DER, as wolfSSL writes and reads it for ML-DSA.
            Key::MlDsa(k) => Ok(("der", k.private_der()?)),
            Key::Ec(k) => {
                let pem = p256::SecretKey::from(k.as_nonzero_scalar())
                    .to_sec1_pem(LineEnding::LF)
                    .map_err(|e| CredError::Ecdsa(e.to_string()))?;
                Ok(("pem", pem.as_bytes().to_vec()))
            }
        }
    }
}

impl Key {
    /// A client's private key file: PKCS#8, so it names its curve (GnuTLS, behind
    /// coap-client-gnutls, refuses SEC1 keys without the curve parameters, which is what
    /// `private_file` writes for ECDSA); PEM for ECDSA (libcoap's `-j`), DER for ML-DSA.
    fn client_key_file(&self) -> Result<Vec<u8>, CredError> {
        match self {
            Key::MlDsa(_) => Ok(self.private_file()?.1),
            Key::Ec(k) => {
                use p256::pkcs8::EncodePrivateKey;
                let pem = p256::SecretKey::from(k.as_nonzero_scalar())
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| CredError::Ecdsa(e.to_string()))?;
                Ok(pem.as_bytes().to_vec())
            }
        }
    }
}

/// The 160-bit key identifier of an SPKI.
fn key_id(spki: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(spki)[..20].to_vec()
}

/// What a certificate is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ca,
    Server,
    Client,
}

struct Cert<'a> {
    subject: &'a str,
    issuer: &'a str,
    spki: &'a [u8],
    issuer_spki: &'a [u8],
    kind: Kind,
    san: &'a [String],
    not_before: i64,
    not_after: i64,
}

fn random_serial() -> Result<Vec<u8>, CredError> {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(CredError::Random)?;
    // Positive, and exactly 16 bytes so DER needs no leading zero.
    s[0] = (s[0] & 0x7f) | 0x01;
    Ok(s.to_vec())
}

fn certificate(c: &Cert<'_>, issuer_key: &mut Key) -> Result<Vec<u8>, CredError> {
    let mut exts = Vec::new();
    if c.kind == Kind::Ca {
        exts.push(ext(&[0x55, 0x1d, 0x13], true, &seq(&[&[0x01, 0x01, 0xff]])));
        // keyCertSign | cRLSign.
        exts.push(ext(&[0x55, 0x1d, 0x0f], true, &[0x03, 0x02, 0x01, 0x06]));
    } else {
        exts.push(ext(&[0x55, 0x1d, 0x13], true, &seq(&[])));
        // digitalSignature: the key signs the TLS handshake.
        exts.push(ext(&[0x55, 0x1d, 0x0f], true, &[0x03, 0x02, 0x07, 0x80]));
        // extKeyUsage serverAuth (id-kp 1) or clientAuth (id-kp 2).
        let kp = if c.kind == Kind::Server { 0x01 } else { 0x02 };
        exts.push(ext(
            &[0x55, 0x1d, 0x25],
            false,
            &seq(&[&oid(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, kp])]),
        ));
    }
    if !c.san.is_empty() {
        let mut names = Vec::new();
        for s in c.san {
            match s.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => names.extend(tlv(0x87, &a.octets())),
                Ok(IpAddr::V6(a)) => names.extend(tlv(0x87, &a.octets())),
                Err(_) => names.extend(tlv(0x82, s.as_bytes())),
            }
        }
        exts.push(ext(&[0x55, 0x1d, 0x11], false, &tlv(0x30, &names)));
    }
    exts.push(ext(&[0x55, 0x1d, 0x0e], false, &tlv(0x04, &key_id(c.spki))));
    exts.push(ext(
        &[0x55, 0x1d, 0x23],
        false,
        &seq(&[&tlv(0x80, &key_id(c.issuer_spki))]),
    ));
    let alg = issuer_key.sig_alg();
    let tbs = seq(&[
        &[0xa0, 0x03, 0x02, 0x01, 0x02], // version v3
        &tlv(0x02, &random_serial()?),
        &alg,
        &name(c.issuer),
        &seq(&[&time(c.not_before), &time(c.not_after)]),
        &name(c.subject),
        c.spki,
        &tlv(0xa3, &seq(&[&exts.concat()])),
    ]);
    let mut sig = vec![0u8];
    sig.extend_from_slice(&issuer_key.sign(&tbs)?);
    Ok(seq(&[&tbs, &alg, &tlv(0x03, &sig)]))
}

fn pem(label: &str, der: &[u8]) -> Result<Vec<u8>, CredError> {
    p256::pkcs8::der::pem::encode_string(label, LineEnding::LF, der)
        .map(String::into_bytes)
        .map_err(|e| CredError::Ecdsa(e.to_string()))
}

/// Creates `path` (never overwriting) with `mode` and `data`.
fn write_new(path: &Path, mode: u32, data: &[u8]) -> Result<(), CredError> {
    let io = |e| CredError::Io(path.to_path_buf(), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Writes everything `spec` asks for into `spec.out`.
pub fn generate(spec: &Spec) -> Result<Written, CredError> {
    if spec.clients > 10_000 {
        return Err(CredError::Invalid("--clients must be at most 10000".into()));
    }
    if spec.days == 0 || spec.days > 3650 {
        return Err(CredError::Invalid("--days must be 1..=3650".into()));
    }
    if spec.san.is_empty() {
        return Err(CredError::Invalid("give at least one --san".into()));
    }
    std::fs::create_dir_all(&spec.out).map_err(|e| CredError::Io(spec.out.clone(), e))?;
    let out = spec
        .out
        .canonicalize()
        .map_err(|e| CredError::Io(spec.out.clone(), e))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // An hour of slack for clients whose clock is a little behind.
    let not_before = now - 3600;
    let day = 86_400i64;

    let mut ca_key = Key::generate(spec.algo)?;
    let ca_spki = ca_key.spki()?;
    let ca_cn = "qeaas CA";
    let ca = certificate(
        &Cert {
            subject: ca_cn,
            issuer: ca_cn,
            spki: &ca_spki,
            issuer_spki: &ca_spki,
            kind: Kind::Ca,
            san: &[],
            not_before,
            not_after: now + i64::from(spec.days) * 10 * day,
        },
        &mut ca_key,
    )?;
    let srv_key = Key::generate(spec.algo)?;
    let srv_spki = srv_key.spki()?;
    let srv = certificate(
        &Cert {
            subject: &spec.san[0],
            issuer: ca_cn,
            spki: &srv_spki,
            issuer_spki: &ca_spki,
            kind: Kind::Server,
            san: &spec.san,
            not_before,
            not_after: now + i64::from(spec.days) * day,
        },
        &mut ca_key,
    )?;

    let (ext, ca_priv) = ca_key.private_file()?;
    let w = Written {
        ca: out.join("ca.pem"),
        ca_key: out.join(format!("ca-key.{ext}")),
        server: out.join("server.pem"),
        server_key: out.join(format!("server-key.{ext}")),
        psks: (1..=spec.clients)
            .map(|i| (format!("client-{i}"), out.join(format!("client-{i}.psk"))))
            .collect(),
        client_certs: match spec.client_certs {
            None => Vec::new(),
            Some(_) => (1..=spec.clients)
                .map(|i| ClientCert {
                    identity: format!("client-{i}"),
                    cert: out.join(format!("client-{i}.pem")),
                    cert_der: out.join(format!("client-{i}.der")),
                    key: out.join(format!(
                        "client-{i}-key.{}",
                        if spec.client_certs == Some(Algo::MlDsa44) {
                            "der"
                        } else {
                            "pem"
                        }
                    )),
                })
                .collect(),
        },
        snippet: out.join("coapd.toml"),
    };
    write_new(&w.ca, 0o644, &pem("CERTIFICATE", &ca)?)?;
    write_new(&w.ca_key, 0o600, &ca_priv)?;
    write_new(&w.server, 0o644, &pem("CERTIFICATE", &srv)?)?;
    write_new(&w.server_key, 0o600, &srv_key.private_file()?.1)?;

    let mut toml = String::from(
        "# Written by `qeaas-coapd gen-credentials`: append to coapd.toml. It holds the PSKs:\n\
         # keep it readable by root only, as the key files.\n",
    );
    let _ = write!(
        toml,
        "\n[certificate]\nchain = {:?}\nkey = {:?}\n",
        w.server, w.server_key
    );
    for (id, path) in &w.psks {
        // 32 random bytes as 64 hex digits, used as the key text itself: libcoap's `-k`
        // takes text, and 64 bytes is wolfSSL's PSK limit.
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *raw).map_err(CredError::Random)?;
        let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        write_new(path, 0o600, key.as_bytes())?;
        let _ = write!(toml, "\n[[psk]]\nidentity = \"{id}\"\nkey = \"{key}\"\n");
    }
    if let Some(algo) = spec.client_certs {
        for c in &w.client_certs {
            let key = Key::generate(algo)?;
            let spki = key.spki()?;
            let der = certificate(
                &Cert {
                    subject: &c.identity,
                    issuer: ca_cn,
                    spki: &spki,
                    issuer_spki: &ca_spki,
                    kind: Kind::Client,
                    san: &[],
                    not_before,
                    not_after: now + i64::from(spec.days) * day,
                },
                &mut ca_key,
            )?;
            write_new(&c.cert, 0o644, &pem("CERTIFICATE", &der)?)?;
            write_new(&c.cert_der, 0o644, &der)?;
            write_new(&c.key, 0o600, &key.client_key_file()?)?;
        }
        // Commented out: asking every client for a certificate adds a CertificateRequest
        // (and the client's answer) to each certificate handshake, which a deployment of
        // PSK devices and server-authenticating clients does not want by default.
        let _ = write!(
            toml,
            "\n# Client certificates (client-N.pem, CN = client-N) were written too. To ask\n\
             # clients for them, verified against this CA and naming the client for quotas:\n\
             # [client_certs]\n# ca = {:?}\n\
             # require = true   # refuse certificate handshakes without one (PSK ones pass)\n",
            w.ca
        );
    }
    write_new(&w.snippet, 0o600, toml.as_bytes())?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_encode_as_rfc5280_wants() {
        assert_eq!(time(0), tlv(0x17, b"700101000000Z"));
        assert_eq!(time(951_782_400), tlv(0x17, b"000229000000Z")); // 2000-02-29
        assert_eq!(time(2_524_607_999), tlv(0x17, b"491231235959Z"));
        assert_eq!(time(2_524_608_000), tlv(0x18, b"20500101000000Z"));
    }

    #[test]
    fn refuses_to_overwrite_and_bad_options() {
        let d = tempfile::tempdir().unwrap();
        let spec = Spec {
            out: d.path().to_path_buf(),
            clients: 1,
            algo: Algo::EcdsaP256,
            san: vec!["127.0.0.1".into()],
            days: 1,
            client_certs: Some(Algo::MlDsa44),
        };
        generate(&spec).unwrap();
        assert!(matches!(generate(&spec), Err(CredError::Io(..))));
        for bad in [
            Spec {
                days: 0,
                ..spec.clone()
            },
            Spec {
                clients: 10_001,
                ..spec.clone()
            },
            Spec {
                san: vec![],
                ..spec.clone()
            },
        ] {
            assert!(matches!(generate(&bad), Err(CredError::Invalid(_))));
        }
    }
}
