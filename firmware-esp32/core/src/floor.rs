//! The not-before floor (issue 13, server identity): the newest `notBefore` of a server
//! certificate the device has accepted. A certificate that starts before the floor is refused,
//! so once the fleet has seen the server's new certificate after a rotation, the old one (and
//! anything else the CA issued before it) stops being accepted, without a clock and without
//! revocation lists. Sans-IO: [`not_before`] reads the date from the certificate, [`Record`]
//! is what the shell keeps in flash.
//!
//! Flash holds two slots (one erase sector each). A new floor is written to the slot that does
//! not hold the newest valid record, so a write torn by a power cut loses at most that write:
//! [`Record::newest`] still finds the other slot.

use crate::provision::crc32;

/// Unix seconds of a certificate's `notBefore`, read from its DER encoding; `None` if it is not
/// a certificate this reader understands (the caller then refuses it).
pub fn not_before(der: &[u8]) -> Option<u64> {
    let (cert, _) = element(der, SEQUENCE)?;
    let (tbs, _) = element(cert, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional.
    if rest.first() == Some(&0xa0) {
        rest = element(rest, 0xa0)?.1;
    }
    rest = element(rest, INTEGER)?.1; // serialNumber
    rest = element(rest, SEQUENCE)?.1; // signature
    rest = element(rest, SEQUENCE)?.1; // issuer
    let (validity, _) = element(rest, SEQUENCE)?;
    match *validity.first()? {
        UTC_TIME => utc_time(element(validity, UTC_TIME)?.0),
        GENERALIZED_TIME => generalized_time(element(validity, GENERALIZED_TIME)?.0),
        _ => None,
    }
}

const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The content of the DER element with `tag` at the start of `b`, and what follows it.
fn element(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *b.first()? != tag {
        return None;
    }
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        // DER: long form only for 128 and up, minimal, and no certificate needs over 4 bytes.
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = b.get(2..2 + n)?;
        if bytes[0] == 0 {
            return None;
        }
        let len = bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x));
        if len < 0x80 {
            return None;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((b.get(head..end)?, b.get(end..)?))
}

/// `YYMMDDHHMMSSZ` (RFC 5280 4.1.2.5.1: years 50-99 are 19xx).
fn utc_time(t: &[u8]) -> Option<u64> {
    if t.len() != 13 || t[12] != b'Z' {
        return None;
    }
    let yy = digits(&t[..2])?;
    let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
    civil(year, &t[2..12])
}

/// `YYYYMMDDHHMMSSZ` (RFC 5280 4.1.2.5.2: no fractions).
fn generalized_time(t: &[u8]) -> Option<u64> {
    if t.len() != 15 || t[14] != b'Z' {
        return None;
    }
    civil(digits(&t[..4])?, &t[4..14])
}

fn digits(d: &[u8]) -> Option<u64> {
    d.iter().try_fold(0u64, |a, &c| {
        c.is_ascii_digit().then(|| a * 10 + u64::from(c - b'0'))
    })
}

/// Unix seconds of `year` and `MMDDHHMMSS`; dates before 1970 are refused.
fn civil(year: u64, t: &[u8]) -> Option<u64> {
    let (month, day) = (digits(&t[0..2])?, digits(&t[2..4])?);
    let (h, m, s) = (digits(&t[4..6])?, digits(&t[6..8])?, digits(&t[8..10])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 59 {
        return None;
    }
    if year < 1970 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (proleptic Gregorian), March-based years.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// One slot of the floor in flash: magic, sequence number, the floor, CRC-32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Incremented with every write; the valid slot with the higher one is the floor.
    pub seq: u32,
    /// Unix seconds: certificates whose `notBefore` is earlier are refused.
    pub floor: u64,
}

const MAGIC: [u8; 4] = *b"QNBF";

impl Record {
    /// Encoded length of a slot.
    pub const LEN: usize = 20;

    /// The slot's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.floor.to_le_bytes());
        let crc = crc32(&b[..16]);
        b[16..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A slot's record; `None` for an erased, torn or foreign slot.
    pub fn decode(b: &[u8]) -> Option<Record> {
        let b = b.get(..Self::LEN)?;
        if b[..4] != MAGIC || crc32(&b[..16]).to_le_bytes() != b[16..20] {
            return None;
        }
        Some(Record {
            seq: u32::from_le_bytes(b[4..8].try_into().ok()?),
            floor: u64::from_le_bytes(b[8..16].try_into().ok()?),
        })
    }

    /// The newest valid record of the two slots, and the index (0 or 1) of the slot to write
    /// next (the other one).
    pub fn newest(slots: [&[u8]; 2]) -> (Option<Record>, usize) {
        match (Record::decode(slots[0]), Record::decode(slots[1])) {
            (Some(a), Some(b)) if b.seq > a.seq => (Some(b), 0),
            (Some(a), _) => (Some(a), 1),
            (None, Some(b)) => (Some(b), 0),
            (None, None) => (None, 0),
        }
    }

    /// The record to write when a server certificate starting at `not_before` was accepted,
    /// if it raises the floor.
    pub fn advance(current: Option<Record>, not_before: u64) -> Option<Record> {
        let (seq, floor) = current.map_or((0, 0), |r| (r.seq, r.floor));
        (not_before > floor).then(|| Record {
            seq: seq.wrapping_add(1),
            floor: not_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = alloc::vec![tag];
        match content.len() {
            n @ 0..=0x7f => v.push(n as u8),
            n @ 0x80..=0xff => v.extend_from_slice(&[0x81, n as u8]),
            n => v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        }
        v.extend_from_slice(content);
        v
    }

    /// A certificate-shaped DER with the given validity (signature fields are not read).
    fn cert(not_before: &[u8], version: bool) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend_from_slice(&[0xa0, 0x03, 0x02, 0x01, 0x02]);
        }
        tbs.extend(tlv(INTEGER, &[0x09]));
        tbs.extend(tlv(SEQUENCE, &[0x06, 0x01, 0x00]));
        tbs.extend(tlv(SEQUENCE, &[0u8; 150])); // a long-form issuer
        let mut validity = not_before.to_vec();
        validity.extend(tlv(UTC_TIME, b"491231235959Z"));
        tbs.extend(tlv(SEQUENCE, &validity));
        let mut c = tlv(SEQUENCE, &tbs);
        c.extend(tlv(SEQUENCE, &[0x06, 0x01, 0x00]));
        c.extend(tlv(0x03, &[0, 1, 2]));
        tlv(SEQUENCE, &c)
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // date -u -d 2025-01-01 +%s, 2026-06-01, 1999-12-31T23:59:59, 2050-01-01.
        let cases: [(&[u8], u64); 4] = [
            (&tlv(UTC_TIME, b"250101000000Z"), 1_735_689_600),
            (&tlv(UTC_TIME, b"260601000000Z"), 1_780_272_000),
            (&tlv(UTC_TIME, b"991231235959Z"), 946_684_799),
            (&tlv(GENERALIZED_TIME, b"20500101000000Z"), 2_524_608_000),
        ];
        for (t, want) in cases {
            for version in [true, false] {
                assert_eq!(not_before(&cert(t, version)), Some(want), "{t:?}");
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_well_formed_date_or_certificate() {
        for t in [
            tlv(UTC_TIME, b"251301000000Z"), // month 13
            tlv(UTC_TIME, b"250101240000Z"), // hour 24
            tlv(UTC_TIME, b"2501010000Z"),   // no seconds
            tlv(UTC_TIME, b"250101000000+0100"),
            tlv(GENERALIZED_TIME, b"19690101000000Z"), // before 1970
            tlv(GENERALIZED_TIME, b"20250101000000.5Z"),
            tlv(INTEGER, b"250101000000Z"),
        ] {
            assert_eq!(not_before(&cert(&t, true)), None, "{t:?}");
        }
        let good = cert(&tlv(UTC_TIME, b"250101000000Z"), true);
        // Every truncation, and a non-minimal length, is refused without a panic.
        for n in 0..good.len() {
            assert_eq!(not_before(&good[..n]), None, "truncated to {n}");
        }
        let mut long = good.clone();
        long.splice(1..2, [0x82, 0x00]);
        assert_eq!(not_before(&long), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x1234_5678u32;
        let good = cert(&tlv(UTC_TIME, b"250101000000Z"), true);
        for i in 0..20_000 {
            let mut b = good.clone();
            // Flip a few bytes of a real certificate, or make one up.
            for _ in 0..(i % 4 + 1) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let at = x as usize % b.len();
                b[at] = (x >> 8) as u8;
            }
            let _ = not_before(&b);
            let _ = not_before(&b[..x as usize % b.len()]);
        }
    }

    #[test]
    fn the_newest_valid_slot_is_the_floor_and_a_torn_write_loses_only_itself() {
        let erased = [0xffu8; Record::LEN];
        assert_eq!(Record::newest([&erased, &erased]), (None, 0));
        let first = Record::advance(None, 100).unwrap();
        assert_eq!(first, Record { seq: 1, floor: 100 });
        let a = first.encode();
        assert_eq!(Record::newest([&a, &erased]), (Some(first), 1));
        // Not raised by an older or equal certificate.
        assert_eq!(Record::advance(Some(first), 100), None);
        assert_eq!(Record::advance(Some(first), 50), None);
        let second = Record::advance(Some(first), 200).unwrap();
        let b = second.encode();
        assert_eq!(Record::newest([&a, &b]), (Some(second), 0));
        // A power cut in the middle of the next write (to slot 0) leaves slot 1.
        let third = Record::advance(Some(second), 300).unwrap().encode();
        for cut in 0..Record::LEN {
            let mut torn = erased;
            torn[..cut].copy_from_slice(&third[..cut]);
            assert_eq!(
                Record::newest([&torn, &b]),
                (Some(second), 0),
                "cut at {cut}"
            );
        }
        // Any single bit flip makes a slot invalid, never a different floor.
        for bit in 0..Record::LEN * 8 {
            let mut f = b;
            f[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Record::decode(&f), None, "bit {bit}");
        }
    }
}
