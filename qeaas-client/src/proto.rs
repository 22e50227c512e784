//! The local entropy socket protocol, version 1. Sans-IO and `no_std`: bytes in, typed values out.
//!
//! A client sends fixed 8-byte requests, any number per connection, and reads one answer per
//! request, in order:
//!
//! ```text
//! request:  'Q' | version=1 | op | flags=0 | len: u16 BE | wait_ms: u16 BE
//! answer:   status | 0 | len: u16 BE | len bytes of payload
//! ```
//!
//! | op | meaning | payload of an OK answer |
//! |----|---------|--------------------------|
//! | 1 `GET` | `len` bytes (1..=max_request), waiting up to `wait_ms` for them | exactly `len` bytes |
//! | 2 `STATUS` | daemon status, `len` = `wait_ms` = 0 | `key=value` lines (UTF-8) |
//! | 3 `MY_STATS` | bytes this peer's uid was served, `len` = `wait_ms` = 0 | `u64` BE |
//!
//! A `GET` is never answered with fewer bytes than asked, nor padded: the status says why not.

/// Protocol version spoken here.
pub const VERSION: u8 = 1;
/// Request header size.
pub const REQUEST_LEN: usize = 8;
/// Answer header size.
pub const ANSWER_HEADER_LEN: usize = 4;

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `len` bytes, waiting at most `wait_ms`.
    Get {
        /// Bytes wanted.
        len: u16,
        /// Milliseconds the client is willing to wait.
        wait_ms: u16,
    },
    /// Daemon status.
    Status,
    /// Bytes served to the caller's uid.
    MyStats,
}

/// Answer status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Payload follows.
    Ok = 0,
    /// Sources are healthy but could not back the request in time.
    NotEnoughEntropy = 1,
    /// No healthy source: nothing will be served until one recovers.
    SourceFailed = 2,
    /// Malformed request; the connection is closed after this answer.
    BadRequest = 3,
    /// `len` above the server's maximum.
    TooLarge = 4,
    /// The peer is not allowed.
    Forbidden = 5,
}

impl Status {
    /// Decodes a status byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::NotEnoughEntropy,
            2 => Status::SourceFailed,
            3 => Status::BadRequest,
            4 => Status::TooLarge,
            5 => Status::Forbidden,
            _ => return None,
        })
    }

    /// Human text.
    pub fn text(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotEnoughEntropy => "not enough entropy",
            Status::SourceFailed => "entropy source failed",
            Status::BadRequest => "bad request",
            Status::TooLarge => "request too large",
            Status::Forbidden => "forbidden",
        }
    }
}

/// Why a request header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not 'Q'.
    #[error("bad magic")]
    Magic,
    /// Unknown version.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// Unknown op or bad fields.
    #[error("malformed request")]
    Malformed,
}

/// Decodes one request header.
pub fn decode_request(h: &[u8; REQUEST_LEN]) -> Result<Request, DecodeError> {
    if h[0] != b'Q' {
        return Err(DecodeError::Magic);
    }
    if h[1] != VERSION {
        return Err(DecodeError::Version(h[1]));
    }
    if h[3] != 0 {
        return Err(DecodeError::Malformed);
    }
    let len = u16::from_be_bytes([h[4], h[5]]);
    let wait_ms = u16::from_be_bytes([h[6], h[7]]);
    // STATUS and MY_STATS carry no length and no wait: both fields must be zero, so every
    // request has exactly one encoding (found by the `local_proto` fuzz target).
    match (h[2], len, wait_ms) {
        (1, 1.., _) => Ok(Request::Get { len, wait_ms }),
        (2, 0, 0) => Ok(Request::Status),
        (3, 0, 0) => Ok(Request::MyStats),
        _ => Err(DecodeError::Malformed),
    }
}

/// Encodes a request header.
pub fn encode_request(r: Request) -> [u8; REQUEST_LEN] {
    let (op, len, wait) = match r {
        Request::Get { len, wait_ms } => (1, len, wait_ms),
        Request::Status => (2, 0, 0),
        Request::MyStats => (3, 0, 0),
    };
    let (l, w) = (len.to_be_bytes(), wait.to_be_bytes());
    [b'Q', VERSION, op, 0, l[0], l[1], w[0], w[1]]
}

/// Encodes an answer header for a payload of `len` bytes.
pub fn encode_answer_header(status: Status, len: u16) -> [u8; ANSWER_HEADER_LEN] {
    let l = len.to_be_bytes();
    [status as u8, 0, l[0], l[1]]
}

/// Decodes an answer header: status and payload length.
pub fn decode_answer_header(h: &[u8; ANSWER_HEADER_LEN]) -> Option<(Status, u16)> {
    Some((Status::from_u8(h[0])?, u16::from_be_bytes([h[2], h[3]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for r in [
            Request::Get {
                len: 32,
                wait_ms: 100,
            },
            Request::Get {
                len: 65535,
                wait_ms: 0,
            },
            Request::Status,
            Request::MyStats,
        ] {
            assert_eq!(decode_request(&encode_request(r)), Ok(r));
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode_request(b"GET / HT"), Err(DecodeError::Magic));
        assert_eq!(
            decode_request(&[b'Q', 2, 1, 0, 0, 1, 0, 0]),
            Err(DecodeError::Version(2))
        );
        assert_eq!(
            decode_request(&[b'Q', 1, 1, 0, 0, 0, 0, 0]),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            decode_request(&[b'Q', 1, 9, 0, 0, 0, 0, 0]),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            decode_request(&[b'Q', 1, 2, 0, 0, 1, 0, 0]),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            decode_request(&[b'Q', 1, 1, 1, 0, 1, 0, 0]),
            Err(DecodeError::Malformed)
        );
        // A wait on STATUS or MY_STATS (fuzzer-found: it decoded, ignored).
        assert_eq!(
            decode_request(&[b'Q', 1, 2, 0, 0, 0, 0, 111]),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            decode_request(&[b'Q', 1, 3, 0, 0, 0, 1, 0]),
            Err(DecodeError::Malformed)
        );
    }

    #[test]
    fn every_header_decodes_or_errors_without_panic() {
        // Exhaustive over the op and flag bytes, with a spread of lengths.
        for op in 0..=255u8 {
            for flags in [0u8, 1, 255] {
                for len in [0u16, 1, 4096, 65535] {
                    let l = len.to_be_bytes();
                    let _ = decode_request(&[b'Q', 1, op, flags, l[0], l[1], 0, 0]);
                }
            }
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary headers never panic, and whatever decodes re-encodes to the same bytes.
        #[test]
        fn decode_is_total_and_canonical(h in proptest::array::uniform8(any::<u8>())) {
            if let Ok(r) = decode_request(&h) {
                prop_assert_eq!(encode_request(r), h);
            }
        }
    }
}
