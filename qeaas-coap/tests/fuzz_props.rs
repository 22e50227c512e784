//! Property tests of the request path (the CI share of scripts/fuzz-coap.sh): arbitrary
//! decrypted requests and arbitrary datagrams never panic the sans-IO server.

use proptest::prelude::*;
use qeaas_coap::fuzz::Harness;

/// Byte strings that often look like CoAP: a valid header, then arbitrary options and payload.
fn coapish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
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
