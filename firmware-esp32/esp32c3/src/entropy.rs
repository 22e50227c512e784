//! The device's entropy state: one [`Node`] (pool, CoAP client, scheduler) behind a critical
//! section, so that the network loop and the `getrandom` backend share the same pool.

use core::cell::RefCell;

use critical_section::Mutex;
use esp_hal::rng::Trng;
use qeaas_core::health::Verdict;
use qeaas_device::coap::ClientConfig;
use qeaas_device::node::{Node, Transport};
use qeaas_device::scheduler::RefreshConfig;
use qeaas_device::{Instant, RandomSource};

/// Random protocol fields (CoAP token, message id, retransmission jitter) from the hardware RNG.
#[derive(Debug)]
pub struct HwRandom;

impl RandomSource for HwRandom {
    fn next_u32(&mut self) -> u32 {
        esp_hal::rng::Rng::new().random()
    }
}

static NODE: Mutex<RefCell<Option<Node<HwRandom>>>> = Mutex::new(RefCell::new(None));

/// TRNG bytes read per health-tested chunk.
const TRNG_CHUNK: usize = 64;
/// Most TRNG chunks read in one top-up (the first top-up must cover the 1024-byte start-up test).
const MAX_TRNG_CHUNKS: usize = 40;

/// Creates the node. `transport` says whether server bytes may be credited.
pub fn init(now: Instant, transport: Transport, refresh: RefreshConfig) {
    let node = Node::new(now, ClientConfig::default(), refresh, transport, HwRandom);
    critical_section::with(|cs| NODE.borrow_ref_mut(cs).replace(node));
}

/// Runs `f` on the node (None before [`init`]).
pub fn with<R>(f: impl FnOnce(&mut Node<HwRandom>) -> R) -> Option<R> {
    critical_section::with(|cs| NODE.borrow_ref_mut(cs).as_mut().map(f))
}

/// Reads the TRNG into the pool until it is above its refill threshold (or a bounded number of
/// chunks was read, or the health tests fail). The TRNG is read outside the critical section, so
/// interrupts (Wi-Fi) are masked only while a chunk is mixed. Returns false if the TRNG is off.
pub fn top_up_from_trng() -> bool {
    let Ok(trng) = Trng::try_new() else {
        return false;
    };
    let mut chunk = [0u8; TRNG_CHUNK];
    for _ in 0..MAX_TRNG_CHUNKS {
        if !with(|n| n.needs_refill()).unwrap_or(false) {
            break;
        }
        trng.read(&mut chunk);
        let v = with(|n| n.offer_trng(&chunk));
        if matches!(
            v,
            None | Some(Verdict::Intermittent(_) | Verdict::Permanent(_) | Verdict::Failed)
        ) {
            break;
        }
    }
    chunk.fill(0);
    true
}

/// Fills `dest` from the pool, topping it up from the TRNG first if its credit is short.
pub fn fill(dest: &mut [u8]) -> bool {
    dest.chunks_mut(qeaas_core::pool::MAX_EXTRACT).all(|chunk| {
        with(|n| n.fill(chunk).is_ok()).unwrap_or(false)
            || (top_up_from_trng() && with(|n| n.fill(chunk).is_ok()).unwrap_or(false))
    })
}
