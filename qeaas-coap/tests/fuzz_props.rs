//! Property tests of the request path (the CI share of scripts/fuzz-coap.sh): arbitrary
//! decrypted requests and arbitrary datagrams never panic the sans-IO server.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use proptest::prelude::*;
use qeaas_coap::fuzz::Harness;

/// Well-formed GET /entropy requests with arbitrary n=, Block2 (NUM, SZX) and ETag options,
/// and few message ids: block-0 fetches, later blocks, mismatches, duplicates, quota refusals.
fn blockish() -> impl Strategy<Value = Vec<u8>> {
    (
        0u16..6,
        0u32..200,
        prop::option::of((0u32..8, 0u8..8)),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..6)),
    )
        .prop_map(|(mid, n, block, etag)| {
            let mut p = Packet::new();
            p.header.set_version(1);
            p.header.set_type(MessageType::Confirmable);
            p.header.code = MessageClass::Request(RequestType::Get);
            p.header.message_id = mid;
            p.set_token(vec![1]);
            p.add_option(CoapOption::UriPath, b"entropy".to_vec());
            p.add_option(CoapOption::UriQuery, format!("n={n}").into_bytes());
            if let Some((num, szx)) = block {
                let v = (num << 4) | u32::from(szx);
                p.add_option(CoapOption::Block2, v.to_be_bytes()[1..].to_vec());
            }
            if let Some(e) = etag {
                p.add_option(CoapOption::ETag, e);
            }
            p.to_bytes().unwrap_or_default()
        })
}

/// Byte strings that often look like CoAP: a valid header, then arbitrary options and payload.
fn coapish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        blockish(),
        prop::collection::vec(any::<u8>(), 0..64),
        (
            0u8..4,
            0u8..9,
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..96)
        )
            .prop_map(|(t, tkl, code, rest)| {
                let mut v = vec![0x40 | (t << 4) | tkl, code, 0x12, 0x34];
                v.extend(rest);
                v
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decrypted_requests_never_panic(reqs in prop::collection::vec(coapish(), 1..8)) {
        let mut h = Harness::new();
        for r in &reqs {
            h.coap(r);
        }
    }

    #[test]
    fn raw_datagrams_never_panic(
        dgs in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..300)), 1..8)
    ) {
        let mut h = Harness::new();
        for (port, d) in &dgs {
            h.datagram(*port, d);
        }
    }
}

/// The harness really reaches the server: well-formed requests get answers through DTLS.
#[test]
fn the_harness_answers_well_formed_requests() {
    let mut h = Harness::new();
    // GET /entropy, CON, message id 1, token 0x01.
    h.coap(&[
        0x41, 0x01, 0x00, 0x01, 0x01, 0xb7, b'e', b'n', b't', b'r', b'o', b'p', b'y',
    ]);
    // GET /nothing, id 2.
    h.coap(&[
        0x41, 0x01, 0x00, 0x02, 0x01, 0xb7, b'n', b'o', b't', b'h', b'i', b'n', b'g',
    ]);
    assert_eq!(h.answers, 2);
    assert_eq!(h.handshakes(), 1);
}

/// Block2 through the harness: n=64 with 32-byte blocks is block 0 then block 1 (2 answers),
/// and a block 1 after the body was wiped still gets an answer (4.08), never a crash.
#[test]
fn the_harness_answers_block_wise_requests() {
    let mut h = Harness::new();
    let get = |mid: u8, block: Option<u8>| {
        let mut v = vec![
            0x41, 0x01, 0x00, mid, 0x01, 0xb7, b'e', b'n', b't', b'r', b'o', b'p', b'y',
        ];
        v.extend([0x44, b'n', b'=', b'6', b'4']);
        if let Some(b) = block {
            // Block2 is option 23: delta 23 - 15 = 8, one byte.
            v.extend([0x81, b]);
        }
        v
    };
    h.coap(&get(1, None));
    h.coap(&get(2, Some(0x11))); // NUM 1, SZX 1
    h.coap(&get(3, Some(0x11))); // the body is gone: 4.08
    assert_eq!(h.answers, 3);
}
