//! A minimal self-signed X.509 v3 CA certificate for an ML-DSA-44 key (RFC 5280, RFC 9881),
//! DER-encoded by hand: enough for test PKIs and device provisioning, no parser.

use crate::wolf::{Error, MlDsa44};

/// id-ml-dsa-44, 2.16.840.1.101.3.4.3.17.
const OID_ML_DSA_44: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11,
];

/// One DER TLV: `tag`, definite length, `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let b = n.to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        v.push(0x80 | (b.len() - skip) as u8);
        v.extend_from_slice(&b[skip..]);
    }
    v.extend_from_slice(content);
    v
}

/// A DER SEQUENCE of already-encoded `parts`.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn name(cn: &str) -> Vec<u8> {
    let atv = seq(&[&[0x06, 0x03, 0x55, 0x04, 0x03], &tlv(0x0c, cn.as_bytes())]);
    seq(&[&tlv(0x31, &atv)])
}

/// A self-signed CA certificate (DER) for `key` with common name `cn`, valid 2025-2049.
pub fn self_signed_mldsa44(key: &mut MlDsa44, cn: &str, serial: u64) -> Result<Vec<u8>, Error> {
    self_signed_mldsa44_from(key, cn, serial, b"250101000000Z")
}

/// As [`self_signed_mldsa44`], valid from `not_before` (UTCTime, `YYMMDDHHMMSSZ`) to 2049:
/// a certificate rotation is a new certificate for the same name that starts later.
pub fn self_signed_mldsa44_from(
    key: &mut MlDsa44,
    cn: &str,
    serial: u64,
    not_before: &[u8; 13],
) -> Result<Vec<u8>, Error> {
    let alg = seq(&[OID_ML_DSA_44]);
    let mut pk = vec![0u8]; // BIT STRING: no unused bits
    pk.extend_from_slice(&key.public_raw()?);
    let spki = seq(&[&alg, &tlv(0x03, &pk)]);
    // DER INTEGER: minimal big-endian, with a zero byte only where it keeps the value positive.
    let b = serial.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count().min(7);
    let mut serial_bytes = Vec::new();
    if b[skip] & 0x80 != 0 {
        serial_bytes.push(0);
    }
    serial_bytes.extend_from_slice(&b[skip..]);
    let validity = seq(&[&tlv(0x17, not_before), &tlv(0x17, b"491231235959Z")]);
    // basicConstraints, critical, cA TRUE: wolfSSL loads only CA certificates as trust anchors.
    let bc = seq(&[
        &[0x06, 0x03, 0x55, 0x1d, 0x13],
        &[0x01, 0x01, 0xff],
        &tlv(0x04, &seq(&[&[0x01, 0x01, 0xff]])),
    ]);
    let exts = tlv(0xa3, &seq(&[&bc]));
    let n = name(cn);
    let tbs = seq(&[
        &[0xa0, 0x03, 0x02, 0x01, 0x02],
        &tlv(0x02, &serial_bytes),
        &alg,
        &n,
        &validity,
        &n,
        &spki,
        &exts,
    ]);
    let mut sig = vec![0u8];
    sig.extend_from_slice(&key.sign(&tbs)?);
    Ok(seq(&[&tbs, &alg, &tlv(0x03, &sig)]))
}
