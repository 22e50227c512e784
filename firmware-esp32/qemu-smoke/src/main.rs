//! Smoke run of the portable device core on a bare-metal RISC-V CPU (qemu `virt`, semihosting).
//!
//! No network and no TRNG: the "TRNG" is a fixed xorshift stream and the "server" is built in,
//! so the figures are about the code (instructions, heap), not about entropy. Exit status 0 only
//! if every check passed.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

#[path = "../../qemu-common/heap.rs"]
mod heap;
#[path = "../../qemu-common/noise.rs"]
mod noise;

use alloc::vec::Vec;

use coap_lite::{MessageClass, MessageType, Packet, ResponseType};
use noise::{instret, XorShift};
use qeaas_core::device_pool::{DevicePool, Origin, DEVICE_CREDIT_CAP_BITS};
use qeaas_device::coap::ClientConfig;
use qeaas_device::node::{Node, Transport};
use qeaas_device::scheduler::{LinkState, RefreshConfig};
use qeaas_device::Instant;
use semihosting::println;

#[global_allocator]
static HEAP: heap::CountingHeap = heap::CountingHeap::empty();
const HEAP_SIZE: usize = 64 * 1024;
static mut HEAP_MEM: [u8; HEAP_SIZE] = [0; HEAP_SIZE];

fn check(ok: bool, what: &str) {
    if !ok {
        println!("FAIL: {}", what);
        semihosting::process::exit(1);
    }
}

#[riscv_rt::entry]
fn main() -> ! {
    // Only the address is taken (no reference); the heap owns the buffer from here on.
    let start = core::ptr::addr_of_mut!(HEAP_MEM) as usize;
    HEAP.init(start, HEAP_SIZE);

    // 1. Device pool: add 32 bytes at 8 bits/byte, extract 32 bytes (with backfeed), N times.
    const N: u64 = 1000;
    let mut noise = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut pool = DevicePool::new();
    let mut input = [0u8; 40];
    let mut out = [0u8; 32];
    let mut prev = [0u8; 32];
    let t0 = instret();
    for _ in 0..N {
        noise.bytes(&mut input);
        check(
            pool.add_entropy(Origin::Server, &input, 320) == Ok(320),
            "credit",
        );
        check(pool.fill(&mut out).is_ok(), "fill");
        check(out != prev, "fresh output");
        prev = out;
    }
    let per_round = (instret() - t0) / N;
    let s = pool.stats();
    check(
        s.extractions == N && s.backfed_bytes == 32 * N && s.credit_bits == 0,
        "accounting",
    );
    println!(
        "pool: inject 40 B + extract 32 B (with backfeed): {} instructions per round ({} rounds)",
        per_round, N
    );

    // 2. The node: TRNG start-up and credit, then CoAP fetches against a built-in server.
    let (_, heap_before) = HEAP.usage();
    let mut node = Node::new(
        Instant(0),
        ClientConfig::default(),
        RefreshConfig::default(),
        Transport::Dtls,
        XorShift(7),
    );
    let mut chunk = [0u8; 64];
    // 16 chunks of start-up test, 16 held back (two APT windows), then 4 whose credit
    // (4 bits/byte) is released: 1024 bits claimed, of which the pool holds its cap.
    const CHUNKS: u64 = 36;
    let t0 = instret();
    for _ in 0..CHUNKS {
        noise.bytes(&mut chunk);
        node.offer_trng(&chunk);
    }
    let trng_instr = (instret() - t0) / CHUNKS;
    check(
        node.status().pool.trng.bits_credited == u64::from(DEVICE_CREDIT_CAP_BITS),
        "TRNG credited after start-up and hold-back, up to the cap",
    );
    // Leave room for the server's credit: 24 bytes out cost 256 bits.
    check(
        node.fill(&mut out[..24]).is_ok(),
        "fill from the TRNG's credit",
    );
    println!(
        "node: health-test + mix 64 TRNG bytes: {} instructions per chunk",
        trng_instr
    );

    const FETCHES: u64 = 100;
    let mut now = 0u64;
    let t0 = instret();
    for _ in 0..FETCHES {
        now += 61_000;
        node.poll(Instant(now));
        let Some(req) = node.poll_transmit() else {
            check(false, "a request when due");
            loop {}
        };
        let Ok(req) = Packet::from_bytes(&req) else {
            check(false, "valid request");
            loop {}
        };
        let mut resp = Packet::new();
        resp.header.set_type(MessageType::Acknowledgement);
        resp.header.code = MessageClass::Response(ResponseType::Content);
        resp.header.message_id = req.header.message_id;
        resp.set_token(req.get_token().to_vec());
        let mut body = Vec::from([0u8; 32]);
        noise.bytes(&mut body);
        resp.payload = body;
        let bytes = resp.to_bytes().unwrap_or_default();
        node.handle_datagram(Instant(now + 20), &bytes);
        // 256 credited bits back exactly 24 bytes (8 * 24 + 64 = 256).
        check(node.fill(&mut out[..24]).is_ok(), "fill after fetch");
    }
    let fetch_instr = (instret() - t0) / FETCHES;
    let st = node.status();
    check(
        st.fetches_ok == FETCHES && st.link == LinkState::ServerAndTrng,
        "fetches",
    );
    check(
        st.pool.server.bits_credited == 256 * FETCHES,
        "server credit over DTLS",
    );
    let (_, heap_peak) = HEAP.usage();
    println!(
        "node: CoAP GET /entropy round (request, built-in server's reply, 32 B credited, 24 B extracted): {} instructions per fetch ({} fetches)",
        fetch_instr, FETCHES
    );
    // The pool itself never allocates; the peak includes the built-in server's packets.
    println!(
        "heap: peak {} bytes ({} before the node existed)",
        heap_peak, heap_before
    );
    println!("qemu-smoke: all checks passed");
    semihosting::process::exit(0);
}
