//! Block2 (RFC 7959) for answers larger than one datagram, sans-IO.
//!
//! A body is fetched from the daemon once, at block 0, and kept per DTLS session in a
//! [`BlockStore`] under the request's path and query and an ETag of ours. Later blocks are cut
//! from that body only: a block NUM>0 that does not match the stored body (none stored, another
//! query, another ETag, beyond the end, expired) gets 4.08 Request Entity Incomplete, never
//! fresh bytes stitched to old ones, and the client starts over at block 0. The body is wiped
//! (zeroized) once its last block is served, when it expires, when a new block-0 request
//! replaces it, and when the session ends (the store is dropped with it).

use std::time::Instant;

use zeroize::Zeroizing;

/// Largest size exponent we use: 16 << 6 = 1024-byte blocks, so a block plus CoAP and DTLS
/// headers fits one datagram on a 1280-byte IPv6 path. SZX 7 is reserved (BERT).
pub const MAX_SZX: u8 = 6;

/// A Block2 option value (RFC 7959 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block2 {
    /// Block number.
    pub num: u32,
    /// More blocks follow.
    pub more: bool,
    /// Size exponent: the block holds `16 << szx` bytes.
    pub szx: u8,
}

impl Block2 {
    /// Parses an option value (0 to 3 bytes); `None` if malformed or SZX is 7.
    pub fn parse(v: &[u8]) -> Option<Block2> {
        if v.len() > 3 {
            return None;
        }
        let x = v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
        let szx = (x & 7) as u8;
        (szx != 7).then_some(Block2 {
            num: x >> 4,
            more: x & 8 != 0,
            szx,
        })
    }

    /// The option value, in as few bytes as possible (RFC 7252 uint).
    pub fn encode(&self) -> Vec<u8> {
        uint((self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 7))
    }

    /// Bytes per block.
    pub fn size(&self) -> usize {
        16 << self.szx
    }
}

/// A CoAP uint option value: big-endian without leading zero bytes (0 is empty).
pub fn uint(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

/// Why a later block cannot be served; the client must start over at block 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    /// Nothing stored for this session (never fetched, finished, expired or replaced).
    #[error("no transfer in progress: ask for block 0")]
    NoBody,
    /// A body is stored for another path or query.
    #[error("another resource is being transferred: ask for block 0")]
    OtherQuery,
    /// The request names an ETag that is not the stored body's.
    #[error("the ETag does not match: ask for block 0")]
    OtherEtag,
    /// The block starts at or past the end of the body.
    #[error("block beyond the end of the body")]
    BeyondEnd,
}

/// One block cut from the stored body.
#[derive(Debug, PartialEq, Eq)]
pub struct Served {
    /// The block's bytes.
    pub payload: Vec<u8>,
    /// The Block2 option of the answer.
    pub block: Block2,
    /// The stored body's ETag.
    pub etag: Vec<u8>,
}

struct Stored {
    key: Vec<u8>,
    etag: Vec<u8>,
    body: Zeroizing<Vec<u8>>,
    expires: Instant,
}

/// At most one body per session.
#[derive(Default)]
pub struct BlockStore {
    slot: Option<Stored>,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the body.
        f.debug_struct("BlockStore")
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl BlockStore {
    /// Stores `body` for `key` (path and query) under `etag` until `expires`, wiping any
    /// body stored before.
    pub fn put(&mut self, key: Vec<u8>, etag: Vec<u8>, body: Vec<u8>, expires: Instant) {
        self.slot = Some(Stored {
            key,
            etag,
            body: Zeroizing::new(body),
            expires,
        });
    }

    /// Bytes held (counted against the server's global cap).
    pub fn bytes(&self) -> usize {
        self.slot.as_ref().map_or(0, |s| s.body.len())
    }

    /// Wipes and drops the body.
    pub fn clear(&mut self) {
        self.slot = None;
    }

    /// Wipes the body if it expired.
    pub fn expire(&mut self, now: Instant) {
        if self.slot.as_ref().is_some_and(|s| now >= s.expires) {
            self.slot = None;
        }
    }

    /// Block `num` of size `16 << szx` (the client's choice, capped at `max_szx`) for `key`;
    /// `etags` are the request's ETag options (none: any). After the last block the body is
    /// wiped. A smaller SZX than before is honoured (late negotiation): blocks are offsets.
    pub fn get(
        &mut self,
        key: &[u8],
        etags: &[Vec<u8>],
        num: u32,
        szx: u8,
        max_szx: u8,
        now: Instant,
    ) -> Result<Served, Incomplete> {
        self.expire(now);
        let s = self.slot.as_ref().ok_or(Incomplete::NoBody)?;
        if s.key != key {
            return Err(Incomplete::OtherQuery);
        }
        if !etags.is_empty() && !etags.contains(&s.etag) {
            return Err(Incomplete::OtherEtag);
        }
        // The offset is counted in the client's block size; a size above ours is answered in
        // ours, renumbered (the offset stays a multiple of our size).
        let offset = u64::from(num) * (16u64 << szx.min(6));
        let szx = szx.min(max_szx);
        let size = 16usize << szx;
        let len = s.body.len();
        let offset = usize::try_from(offset)
            .ok()
            .filter(|o| *o < len)
            .ok_or(Incomplete::BeyondEnd)?;
        let end = (offset + size).min(len);
        let served = Served {
            payload: s.body[offset..end].to_vec(),
            block: Block2 {
                num: u32::try_from(offset / size).map_err(|_| Incomplete::BeyondEnd)?,
                more: end < len,
                szx,
            },
            etag: s.etag.clone(),
        };
        if end == len {
            // The whole body went out: nothing of it stays in memory.
            self.slot = None;
        }
        Ok(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn body() -> Vec<u8> {
        (0..2500u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn option_values_round_trip() {
        for (num, more, szx) in [(0, false, 0), (0, true, 6), (1, true, 2), (4095, false, 5)] {
            let b = Block2 { num, more, szx };
            assert_eq!(Block2::parse(&b.encode()), Some(b));
        }
        assert_eq!(
            Block2 {
                num: 0,
                more: false,
                szx: 0
            }
            .encode(),
            Vec::<u8>::new()
        );
        assert_eq!(Block2::parse(&[0x07]), None, "SZX 7 is reserved");
        assert_eq!(Block2::parse(&[1, 2, 3, 4]), None);
        assert_eq!(uint(300), vec![1, 44]);
    }

    #[test]
    fn blocks_are_cut_in_order_and_the_body_is_wiped_after_the_last() {
        let t = Instant::now();
        let mut s = BlockStore::default();
        s.put(b"q".to_vec(), vec![1], body(), t + Duration::from_secs(30));
        assert_eq!(s.bytes(), 2500);
        let mut got = Vec::new();
        for num in 0..3 {
            let b = s.get(b"q", &[], num, 6, 6, t).unwrap();
            assert_eq!(b.block.num, num);
            assert_eq!(b.block.more, num < 2);
            assert_eq!(b.etag, vec![1]);
            got.extend(b.payload);
        }
        assert_eq!(got, body());
        assert_eq!(s.bytes(), 0);
        assert_eq!(s.get(b"q", &[], 2, 6, 6, t), Err(Incomplete::NoBody));
    }

    #[test]
    fn mismatches_never_get_bytes() {
        let t = Instant::now();
        let mut s = BlockStore::default();
        assert_eq!(s.get(b"q", &[], 1, 6, 6, t), Err(Incomplete::NoBody));
        s.put(b"q".to_vec(), vec![1], body(), t + Duration::from_secs(30));
        assert_eq!(
            s.get(b"other", &[], 1, 6, 6, t),
            Err(Incomplete::OtherQuery)
        );
        assert_eq!(
            s.get(b"q", &[vec![2]], 1, 6, 6, t),
            Err(Incomplete::OtherEtag)
        );
        assert_eq!(s.get(b"q", &[], 3, 6, 6, t), Err(Incomplete::BeyondEnd));
        assert_eq!(
            s.get(b"q", &[], u32::MAX >> 4, 6, 6, t),
            Err(Incomplete::BeyondEnd)
        );
        // Out of order is fine within the body (offsets), and the body is still there.
        assert_eq!(
            s.get(b"q", &[vec![1]], 1, 6, 6, t).unwrap().payload,
            body()[1024..2048]
        );
        assert_eq!(s.bytes(), 2500);
    }

    #[test]
    fn expiry_wipes() {
        let t = Instant::now();
        let mut s = BlockStore::default();
        s.put(b"q".to_vec(), vec![1], body(), t + Duration::from_secs(30));
        s.expire(t + Duration::from_secs(29));
        assert_eq!(s.bytes(), 2500);
        assert_eq!(
            s.get(b"q", &[], 1, 6, 6, t + Duration::from_secs(30)),
            Err(Incomplete::NoBody)
        );
        assert_eq!(s.bytes(), 0);
        s.put(b"q".to_vec(), vec![1], body(), t + Duration::from_secs(30));
        s.expire(t + Duration::from_secs(31));
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn late_negotiation_to_a_smaller_size_and_capping_a_larger_one() {
        let t = Instant::now();
        let mut s = BlockStore::default();
        s.put(b"q".to_vec(), vec![1], body(), t + Duration::from_secs(30));
        // Block 0 went out at 1024; the client continues at 512: its block 2 is offset 1024.
        let b = s.get(b"q", &[], 2, 5, 6, t).unwrap();
        assert_eq!(
            b.block,
            Block2 {
                num: 2,
                more: true,
                szx: 5
            }
        );
        assert_eq!(b.payload, body()[1024..1536]);
        // A client asking for 1024-byte blocks from a server capped at 256: renumbered.
        let b = s.get(b"q", &[], 1, 6, 4, t).unwrap();
        assert_eq!(
            b.block,
            Block2 {
                num: 4,
                more: true,
                szx: 4
            }
        );
        assert_eq!(b.payload, body()[1024..1280]);
    }

    #[test]
    fn a_new_body_replaces_the_old() {
        let t = Instant::now();
        let mut s = BlockStore::default();
        s.put(b"q".to_vec(), vec![1], body(), t + Duration::from_secs(30));
        s.put(
            b"r".to_vec(),
            vec![2],
            vec![9; 100],
            t + Duration::from_secs(30),
        );
        assert_eq!(s.bytes(), 100);
        assert_eq!(s.get(b"q", &[], 1, 6, 6, t), Err(Incomplete::OtherQuery));
        s.clear();
        assert_eq!(s.bytes(), 0);
    }
}
