//! Many clients at once against qeaas-coapd in front of a real qeaasd: fetches run side by side
//! (and are coalesced into shared daemon round trips under load), yet every answer carries its
//! own bytes and the daemon counts exactly what was served.

mod common;

use std::collections::HashSet;

use coap_lite::{MessageClass, ResponseType};
use common::dtls::Dtls13;
use common::*;
use qeaas_wolfssl_sys::Group;

const CLIENTS: usize = 12;
const REQUESTS: u16 = 25;

#[test]
fn concurrent_clients_get_disjoint_bytes_and_the_daemon_counts_exactly_the_sum() {
    let s = Stack::start(|_| String::new());
    let before = s.served_to_frontend();
    let port = s.port;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Dtls13::connect(port, Group::X25519, KEY).expect("handshake");
                (0..REQUESTS)
                    .map(|mid| {
                        // Sizes vary so that coalesced answers must be cut at the right places.
                        let n = 1 + (i * 7 + usize::from(mid) * 13) % 64;
                        let a = c.get(mid, &format!("entropy?n={n}"));
                        assert_eq!(a.header.code, MessageClass::Response(ResponseType::Content));
                        assert_eq!(a.payload.len(), n);
                        a.payload
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut total = 0;
    let mut seen = HashSet::new();
    for t in threads {
        for p in t.join().expect("client thread") {
            total += p.len() as u64;
            // Payloads of 8+ bytes are never expected to repeat if bytes were never reused.
            if p.len() >= 8 {
                assert!(seen.insert(p), "the same bytes served twice");
            }
        }
    }
    assert_eq!(s.served_to_frontend() - before, total);
}
