//! The provisioning partition: round trips, and hostile or damaged images refused.

use super::*;
use alloc::vec;

const CA: &[u8] = &[0x30, 0x03, 1, 2, 3];

fn cert() -> Provisioning<'static> {
    Provisioning {
        wifi_ssid: "lab",
        wifi_password: "secret passphrase",
        server_host: "qeaas.example",
        server_port: 5684,
        kex: Kex::MlKem512,
        credentials: Credentials::Certificate {
            ca_der: CA,
            server_name: Some("qeaas.example"),
            client: Some((&[0x30, 1, 9], &[0x30, 1, 8])),
        },
    }
}

fn psk() -> Provisioning<'static> {
    Provisioning {
        wifi_ssid: "",
        wifi_password: "",
        server_host: "10.0.2.2",
        server_port: 5684,
        kex: Kex::P256,
        credentials: Credentials::Psk {
            identity: b"device-1",
            key: b"correct horse battery",
        },
    }
}

#[test]
fn round_trips_with_padding() {
    for p in [cert(), psk()] {
        let mut image = p.to_image().unwrap();
        assert_eq!(Provisioning::parse(&image), Ok(p));
        // As read from flash: the whole partition, erased bytes after the record.
        image.resize(PARTITION_SIZE, 0xff);
        assert_eq!(Provisioning::parse(&image), Ok(p));
    }
}

#[test]
fn crc32_is_the_ieee_one() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

#[test]
fn blank_torn_and_flipped_images_are_refused() {
    assert_eq!(Provisioning::parse(&[]), Err(ProvisionError::Blank));
    assert_eq!(
        Provisioning::parse(&vec![0xff; PARTITION_SIZE]),
        Err(ProvisionError::Blank)
    );
    let image = cert().to_image().unwrap();
    // Every single-bit flip is caught (by the checksum or the header checks).
    for i in 0..image.len() {
        for bit in 0..8 {
            let mut bad = image.clone();
            bad[i] ^= 1 << bit;
            assert!(Provisioning::parse(&bad).is_err(), "flip {i}.{bit}");
        }
    }
    // A write torn anywhere: refused.
    for cut in 0..image.len() {
        let mut torn = image[..cut].to_vec();
        torn.resize(PARTITION_SIZE, 0xff);
        assert!(Provisioning::parse(&torn).is_err(), "cut at {cut}");
    }
}

/// Builds an image around `body` with a correct checksum (what an attacker with flash access,
/// or a buggy tool, could write): the parser must still refuse bad records.
fn forged(body: &[u8]) -> Vec<u8> {
    let mut image = b"QEPV\x01\0\0\0".to_vec();
    image.extend_from_slice(&(body.len() as u32).to_le_bytes());
    image.extend_from_slice(body);
    let crc = crc32(&image);
    image.extend_from_slice(&crc.to_le_bytes());
    image
}

fn rec(t: u8, v: &[u8]) -> Vec<u8> {
    let mut r = vec![t];
    r.extend_from_slice(&(v.len() as u16).to_le_bytes());
    r.extend_from_slice(v);
    r
}

#[test]
fn well_checksummed_but_bad_records_are_refused() {
    let base = [
        rec(3, b"h"),
        rec(4, &5684u16.to_le_bytes()),
        rec(10, b"id"),
        rec(11, b"key"),
    ]
    .concat();
    assert!(Provisioning::parse(&forged(&base)).is_ok());
    let cases: [(Vec<u8>, ProvisionError); 9] = [
        (
            [&base[..], &rec(42, b"x")].concat(),
            ProvisionError::UnknownTag(42),
        ),
        (
            [&base[..], &rec(0, b"")].concat(),
            ProvisionError::UnknownTag(0),
        ),
        (
            [&base[..], &rec(3, b"h")].concat(),
            ProvisionError::Duplicate(3),
        ),
        (
            [&base[..], &[7u8, 9, 0][..]].concat(),
            ProvisionError::Truncated,
        ),
        ([&base[..], &[7u8][..]].concat(), ProvisionError::Truncated),
        (
            [&base[..], &rec(6, CA)].concat(),
            ProvisionError::Invalid("credentials (a CA or a PSK, not both)"),
        ),
        (
            [&base[..], &rec(7, b"name")].concat(),
            ProvisionError::Invalid("certificate fields in PSK mode"),
        ),
        (
            [&base[..], &rec(5, b"x25519")].concat(),
            ProvisionError::Invalid("key exchange"),
        ),
        (
            [&base[..], &rec(1, &[0xff, 0xfe])].concat(),
            ProvisionError::Invalid("Wi-Fi SSID"),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(Provisioning::parse(&forged(&body)), Err(want));
    }
    // A port of 0, a PSK key longer than wolfSSL takes, a CA that is not DER.
    let no_port = [rec(3, b"h"), rec(4, &[0, 0]), rec(10, b"id"), rec(11, b"k")].concat();
    assert_eq!(
        Provisioning::parse(&forged(&no_port)),
        Err(ProvisionError::Invalid("server port"))
    );
    let long_key = [
        rec(3, b"h"),
        rec(4, &[1, 0]),
        rec(10, b"id"),
        rec(11, &[7; 65]),
    ]
    .concat();
    assert_eq!(
        Provisioning::parse(&forged(&long_key)),
        Err(ProvisionError::Invalid("PSK key"))
    );
    let pem = [rec(3, b"h"), rec(4, &[1, 0]), rec(6, b"-----BEGIN")].concat();
    assert_eq!(
        Provisioning::parse(&forged(&pem)),
        Err(ProvisionError::Invalid("CA (not DER)"))
    );
    // A length that claims more than the partition: refused before any read past it.
    let mut huge = forged(&base);
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Provisioning::parse(&huge), Err(ProvisionError::Truncated));
}

#[test]
fn an_image_larger_than_the_partition_is_not_written() {
    let big = vec![0x30; PARTITION_SIZE];
    let p = Provisioning {
        credentials: Credentials::Certificate {
            ca_der: &big,
            server_name: None,
            client: None,
        },
        ..cert()
    };
    assert!(p.to_image().is_err());
}
