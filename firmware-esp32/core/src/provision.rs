//! The provisioning partition: one device's credentials and settings, kept in flash apart from
//! the image, so that one image serves every device of a fleet.
//!
//! A small format of our own rather than ESP-IDF's NVS: NVS is a key-value store with wear
//! levelling for data that changes, written by IDF's Python generator and read by IDF's C
//! library; this firmware has neither (bare-metal esp-hal), the data is written once per device
//! at the factory, and a fixed, checksummed layout is one short parser that runs and is tested
//! unchanged on the host, in qemu and on the chip. Layout (all integers little-endian):
//!
//! ```text
//! magic "QEPV" | version 1 (u8) | 3 zero bytes | body length (u32) | body | CRC-32 (IEEE) of all before
//! body: records of tag (u8) | length (u16) | value, each tag at most once, none unknown
//! ```
//!
//! The partition is 16 KiB ([`PARTITION_SIZE`]; `firmware-esp32/partitions.csv`); what follows
//! the CRC is padding (0xff, erased flash). [`Provisioning::parse`] refuses anything malformed
//! (the device then runs on its TRNG alone and says why), so a half-written or corrupted
//! partition never becomes a configuration.

use alloc::vec::Vec;

/// Size of the flash partition that holds the image.
pub const PARTITION_SIZE: usize = 16 * 1024;
const MAGIC: &[u8; 4] = b"QEPV";
const VERSION: u8 = 1;
const HEADER: usize = 12;

/// Key exchange the device offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kex {
    /// ML-KEM-512 (default).
    MlKem512,
    /// ECDHE P-256.
    P256,
}

/// How the device authenticates the server (and itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// The server's certificate chains to `ca_der` and names `server_name`; the device may
    /// present a client certificate and key (DER) of its own.
    Certificate {
        /// Deployment CA, DER.
        ca_der: &'a [u8],
        /// Name the server's certificate must carry.
        server_name: Option<&'a str>,
        /// The device's certificate and private key, DER.
        client: Option<(&'a [u8], &'a [u8])>,
    },
    /// PSK + (EC)DHE / ML-KEM.
    Psk {
        /// Identity, 1-127 bytes.
        identity: &'a [u8],
        /// Key, 1-64 bytes.
        key: &'a [u8],
    },
}

/// One device's settings, borrowed from the partition image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provisioning<'a> {
    /// Wi-Fi network.
    pub wifi_ssid: &'a str,
    /// WPA2 passphrase (empty: open network).
    pub wifi_password: &'a str,
    /// Server host: an IPv4 literal or a DNS name.
    pub server_host: &'a str,
    /// Server UDP port.
    pub server_port: u16,
    /// Key exchange.
    pub kex: Kex,
    /// Credentials.
    pub credentials: Credentials<'a>,
}

/// Why a partition image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProvisionError {
    /// No magic: the partition was never written (or erased).
    Blank,
    /// Another format version.
    Version(u8),
    /// The lengths do not fit the image or the partition.
    Truncated,
    /// The checksum does not match (a half-written or corrupted partition).
    Checksum,
    /// A record with an unknown tag.
    UnknownTag(u8),
    /// A tag given twice.
    Duplicate(u8),
    /// A field is missing, too long, not UTF-8, or out of range.
    Invalid(&'static str),
}

impl core::fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Blank => f.write_str("provisioning partition is blank"),
            Self::Version(v) => write!(f, "provisioning partition version {v} is not 1"),
            Self::Truncated => f.write_str("provisioning partition is truncated"),
            Self::Checksum => f.write_str("provisioning partition checksum mismatch"),
            Self::UnknownTag(t) => write!(f, "provisioning partition: unknown record {t}"),
            Self::Duplicate(t) => write!(f, "provisioning partition: record {t} twice"),
            Self::Invalid(w) => write!(f, "provisioning partition: bad {w}"),
        }
    }
}

mod tag {
    pub const SSID: u8 = 1;
    pub const PASSWORD: u8 = 2;
    pub const HOST: u8 = 3;
    pub const PORT: u8 = 4;
    pub const KEX: u8 = 5;
    pub const CA: u8 = 6;
    pub const SERVER_NAME: u8 = 7;
    pub const CLIENT_CERT: u8 = 8;
    pub const CLIENT_KEY: u8 = 9;
    pub const PSK_IDENTITY: u8 = 10;
    pub const PSK_KEY: u8 = 11;
    pub const LAST: u8 = 11;
}

/// CRC-32 (IEEE 802.3, as zlib), bitwise: the partition is read once per boot.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn text<'a>(
    v: Option<&'a [u8]>,
    what: &'static str,
    max: usize,
) -> Result<&'a str, ProvisionError> {
    let v = v.ok_or(ProvisionError::Invalid(what))?;
    if v.len() > max || v.contains(&0) {
        return Err(ProvisionError::Invalid(what));
    }
    core::str::from_utf8(v).map_err(|_| ProvisionError::Invalid(what))
}

impl<'a> Provisioning<'a> {
    /// Parses a partition image (trailing padding allowed).
    pub fn parse(image: &'a [u8]) -> Result<Self, ProvisionError> {
        if image.len() < HEADER || &image[..4] != MAGIC {
            return Err(ProvisionError::Blank);
        }
        if image[4] != VERSION {
            return Err(ProvisionError::Version(image[4]));
        }
        if image[5..8] != [0, 0, 0] {
            return Err(ProvisionError::Invalid("header"));
        }
        let len = u32::from_le_bytes([image[8], image[9], image[10], image[11]]) as usize;
        let end = HEADER
            .checked_add(len)
            .filter(|e| e + 4 <= image.len().min(PARTITION_SIZE))
            .ok_or(ProvisionError::Truncated)?;
        let crc = u32::from_le_bytes([image[end], image[end + 1], image[end + 2], image[end + 3]]);
        if crc32(&image[..end]) != crc {
            return Err(ProvisionError::Checksum);
        }
        let mut fields: [Option<&'a [u8]>; tag::LAST as usize + 1] = [None; tag::LAST as usize + 1];
        let mut body = &image[HEADER..end];
        while !body.is_empty() {
            if body.len() < 3 {
                return Err(ProvisionError::Truncated);
            }
            let t = body[0];
            let n = usize::from(u16::from_le_bytes([body[1], body[2]]));
            let v = body.get(3..3 + n).ok_or(ProvisionError::Truncated)?;
            let slot = fields
                .get_mut(usize::from(t))
                .filter(|_| t != 0)
                .ok_or(ProvisionError::UnknownTag(t))?;
            if slot.replace(v).is_some() {
                return Err(ProvisionError::Duplicate(t));
            }
            body = &body[3 + n..];
        }
        let f = |t: u8| fields[usize::from(t)];
        let port = match f(tag::PORT) {
            Some(&[lo, hi]) if u16::from_le_bytes([lo, hi]) != 0 => u16::from_le_bytes([lo, hi]),
            _ => return Err(ProvisionError::Invalid("server port")),
        };
        let kex = match f(tag::KEX) {
            None | Some(b"mlkem512") => Kex::MlKem512,
            Some(b"p256") => Kex::P256,
            Some(_) => return Err(ProvisionError::Invalid("key exchange")),
        };
        let credentials = match (f(tag::CA), f(tag::PSK_IDENTITY), f(tag::PSK_KEY)) {
            (Some(ca), None, None) => {
                // A DER certificate is a SEQUENCE; wolfSSL checks the rest.
                if ca.first() != Some(&0x30) {
                    return Err(ProvisionError::Invalid("CA (not DER)"));
                }
                let server_name = match f(tag::SERVER_NAME) {
                    Some(v) => Some(text(Some(v), "server name", 253)?),
                    None => None,
                };
                let client = match (f(tag::CLIENT_CERT), f(tag::CLIENT_KEY)) {
                    (Some(c), Some(k)) if c.first() == Some(&0x30) && k.first() == Some(&0x30) => {
                        Some((c, k))
                    }
                    (None, None) => None,
                    _ => return Err(ProvisionError::Invalid("client certificate and key")),
                };
                Credentials::Certificate {
                    ca_der: ca,
                    server_name,
                    client,
                }
            }
            (None, Some(identity), Some(key)) => {
                if f(tag::SERVER_NAME).is_some()
                    || f(tag::CLIENT_CERT).is_some()
                    || f(tag::CLIENT_KEY).is_some()
                {
                    return Err(ProvisionError::Invalid("certificate fields in PSK mode"));
                }
                // wolfSSL's limits, as the server's configuration checks them.
                if identity.is_empty() || identity.len() > 127 || identity.contains(&0) {
                    return Err(ProvisionError::Invalid("PSK identity"));
                }
                if key.is_empty() || key.len() > 64 {
                    return Err(ProvisionError::Invalid("PSK key"));
                }
                Credentials::Psk { identity, key }
            }
            _ => {
                return Err(ProvisionError::Invalid(
                    "credentials (a CA or a PSK, not both)",
                ))
            }
        };
        let wifi_ssid = text(Some(f(tag::SSID).unwrap_or_default()), "Wi-Fi SSID", 32)?;
        let wifi_password = text(
            Some(f(tag::PASSWORD).unwrap_or_default()),
            "Wi-Fi password",
            63,
        )?;
        let server_host = text(f(tag::HOST), "server host", 253)?;
        if server_host.is_empty() {
            return Err(ProvisionError::Invalid("server host"));
        }
        Ok(Self {
            wifi_ssid,
            wifi_password,
            server_host,
            server_port: port,
            kex,
            credentials,
        })
    }

    /// The partition image (without padding): what `qeaas-provision` writes. Checked by
    /// parsing it back, so an image that [`Self::parse`] would refuse is never written.
    pub fn to_image(&self) -> Result<Vec<u8>, ProvisionError> {
        let mut body = Vec::new();
        let mut put = |t: u8, v: &[u8]| -> Result<(), ProvisionError> {
            let n = u16::try_from(v.len()).map_err(|_| ProvisionError::Truncated)?;
            body.push(t);
            body.extend_from_slice(&n.to_le_bytes());
            body.extend_from_slice(v);
            Ok(())
        };
        put(tag::SSID, self.wifi_ssid.as_bytes())?;
        put(tag::PASSWORD, self.wifi_password.as_bytes())?;
        put(tag::HOST, self.server_host.as_bytes())?;
        put(tag::PORT, &self.server_port.to_le_bytes())?;
        put(
            tag::KEX,
            match self.kex {
                Kex::MlKem512 => b"mlkem512",
                Kex::P256 => b"p256",
            },
        )?;
        match self.credentials {
            Credentials::Certificate {
                ca_der,
                server_name,
                client,
            } => {
                put(tag::CA, ca_der)?;
                if let Some(n) = server_name {
                    put(tag::SERVER_NAME, n.as_bytes())?;
                }
                if let Some((c, k)) = client {
                    put(tag::CLIENT_CERT, c)?;
                    put(tag::CLIENT_KEY, k)?;
                }
            }
            Credentials::Psk { identity, key } => {
                put(tag::PSK_IDENTITY, identity)?;
                put(tag::PSK_KEY, key)?;
            }
        }
        let mut image = Vec::with_capacity(HEADER + body.len() + 4);
        image.extend_from_slice(MAGIC);
        image.extend_from_slice(&[VERSION, 0, 0, 0]);
        let len = u32::try_from(body.len()).map_err(|_| ProvisionError::Truncated)?;
        image.extend_from_slice(&len.to_le_bytes());
        image.extend_from_slice(&body);
        let crc = crc32(&image);
        image.extend_from_slice(&crc.to_le_bytes());
        Provisioning::parse(&image)?;
        Ok(image)
    }
}

#[cfg(test)]
mod tests;
