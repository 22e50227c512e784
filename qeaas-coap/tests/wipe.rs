//! Served bytes are wiped before their memory goes back to the allocator (issue 12 item 7): a
//! watching global allocator looks into every block freed while armed and counts those that
//! still hold the daemon's bytes (a 16-byte marker no other data contains). The CoAP answer, its
//! plaintext packet, the duplicate cache and the block-wise store all hold such bytes.
//!
//! One test per binary: the counter is global.

use std::sync::atomic::Ordering;
use std::time::Instant;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use qeaas_coap::coap::{Action, Endpoint};
use qeaas_wipe_watch::{marked as served, Watch, ARMED, MARK, MARKED_FREES};

#[global_allocator]
static A: Watch = Watch;

fn get(mid: u16, n: usize) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = mid;
    p.header.code = MessageClass::Request(RequestType::Get);
    p.set_token(vec![1, 2, 3]);
    p.add_option(CoapOption::UriPath, b"entropy".to_vec());
    p.add_option(CoapOption::UriQuery, format!("n={n}").into_bytes());
    p.to_bytes().unwrap()
}

fn has_mark(b: &[u8]) -> bool {
    b.windows(MARK.len()).any(|w| w == MARK)
}

#[test]
fn served_bytes_are_wiped_on_every_coap_path() {
    let now = Instant::now();
    let mut ep = Endpoint::new(4096, 7);
    // One plain answer (64 bytes) and one block-wise (3000 bytes, stored and cut in blocks).
    for (mid, n) in [(42u16, 64usize), (43, 3000)] {
        let req = get(mid, n);
        let Action::Entropy(x) = ep.handle(&req, now) else {
            panic!("GET /entropy?n={n} was not an entropy request");
        };
        ep.admit(&x);
        ARMED.store(true, Ordering::Relaxed);
        let r = ep.finish(x, Ok(served(n).into()), now);
        assert!(has_mark(&r), "the answer carries the served bytes");
        ep.remember(&req, &r, now);
        let dup = ep
            .cached(&req, now)
            .expect("a duplicate is answered from the cache");
        assert!(has_mark(&dup));
        drop(dup);
        drop(r);
        ARMED.store(false, Ordering::Relaxed);
    }
    ARMED.store(true, Ordering::Relaxed);
    drop(ep);
    ARMED.store(false, Ordering::Relaxed);
    let n = MARKED_FREES.load(Ordering::Relaxed);
    assert_eq!(n, 0, "{n} freed blocks still held served bytes");
}
