//! qeaas-coapd's sans-IO server engine (`qeaas_coap::fuzz::Harness`): a sequence of decrypted
//! CoAP requests, sent through an established DTLS 1.2 PSK session, and raw datagrams from a
//! few source addresses, with time jumps. Nothing may panic or crash in C.
//!
//! Input: records of `[op][len][len bytes]`. An even `op` sends the bytes as a decrypted
//! request; an odd one as a datagram from source `op >> 1` (see `Harness::datagram`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qeaas_coap::fuzz::Harness;

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    let mut rest = data;
    // Bounded: a session handshake per reconnect is costly.
    for _ in 0..16 {
        let [op, len, tail @ ..] = rest else { break };
        let n = usize::from(*len).min(tail.len());
        let (msg, next) = tail.split_at(n);
        if op % 2 == 0 {
            h.coap(msg);
        } else {
            h.datagram(op >> 1, msg);
        }
        rest = next;
    }
});
