//! The device's entropy state: one [`Engine`] (the node: pool, CoAP client, scheduler; with its
//! DTLS session once there is one) behind a critical section, so that the network loop, the
//! `getrandom` backend and wolfSSL's seed share the same pool.
//!
//! The network loop takes the engine out ([`take`]) for its work between two awaits and puts it
//! back ([`put`]) before it waits: a handshake step can take a third of a second of CPU
//! (ML-DSA verification, ECDSA much longer), far too long to mask interrupts (Wi-Fi) in a
//! critical section. Meanwhile nothing else on the executor runs; a `getrandom` from an
//! interrupt or another thread in that window fails (it never returns unbacked bytes).

use core::cell::RefCell;

use critical_section::Mutex;
use esp_hal::rng::Trng;
use qeaas_core::health::Verdict;
use qeaas_device::coap::ClientConfig;
use qeaas_device::node::{Node, Transport};
use qeaas_device::scheduler::RefreshConfig;
use qeaas_device::{Instant, RandomSource};
use qeaas_device_dtls::SecureNode;

/// Random protocol fields (CoAP token, message id, retransmission jitter) from the hardware RNG.
#[derive(Debug)]
pub struct HwRandom;

impl RandomSource for HwRandom {
    fn next_u32(&mut self) -> u32 {
        esp_hal::rng::Rng::new().random()
    }
}

/// The node, alone or carried over a DTLS session.
pub enum Engine {
    /// TRNG only: no credentials or network yet, or no session could be set up. Nothing feeds
    /// it datagrams.
    Local(Node<HwRandom>),
    /// The node with its CoAP over DTLS: only the authenticated session's plaintext reaches it.
    Secure(SecureNode<HwRandom>),
}

impl Engine {
    /// The node.
    pub fn node(&self) -> &Node<HwRandom> {
        match self {
            Engine::Local(n) => n,
            Engine::Secure(s) => s.node(),
        }
    }

    /// The node, mutable.
    pub fn node_mut(&mut self) -> &mut Node<HwRandom> {
        match self {
            Engine::Local(n) => n,
            Engine::Secure(s) => s.node_mut(),
        }
    }
}

static ENGINE: Mutex<RefCell<Option<Engine>>> = Mutex::new(RefCell::new(None));

/// TRNG bytes read per health-tested chunk.
const TRNG_CHUNK: usize = 64;
/// Most TRNG chunks read in one top-up (the first top-up must cover the 1024-byte start-up test).
const MAX_TRNG_CHUNKS: usize = 40;

/// Creates the node. It is made with `Transport::Dtls` (credits server bytes) because the only
/// way datagrams reach it is through [`SecureNode`], i.e. an authenticated session.
pub fn init(now: Instant, refresh: RefreshConfig) {
    let node = Node::new(
        now,
        ClientConfig::default(),
        refresh,
        Transport::Dtls,
        HwRandom,
    );
    put(Engine::Local(node));
}

/// Runs `f` on the node (None before [`init`] or while the engine is taken out).
pub fn with<R>(f: impl FnOnce(&mut Node<HwRandom>) -> R) -> Option<R> {
    critical_section::with(|cs| ENGINE.borrow_ref_mut(cs).as_mut().map(|e| f(e.node_mut())))
}

/// Takes the engine out for work outside a critical section; [`put`] it back before awaiting.
pub fn take() -> Option<Engine> {
    critical_section::with(|cs| ENGINE.borrow_ref_mut(cs).take())
}

/// Puts the engine (back).
pub fn put(e: Engine) {
    critical_section::with(|cs| ENGINE.borrow_ref_mut(cs).replace(e));
}

/// Reads the TRNG into the node reached through `on` until its pool is above the refill
/// threshold, a bounded number of chunks was read, or the health tests fail. Returns false if
/// the TRNG is off.
fn top_up_via(mut on: impl FnMut(&mut dyn FnMut(&mut Node<HwRandom>))) -> bool {
    let Ok(trng) = Trng::try_new() else {
        return false;
    };
    let mut chunk = [0u8; TRNG_CHUNK];
    for _ in 0..MAX_TRNG_CHUNKS {
        let mut needs = false;
        on(&mut |n| needs = n.needs_refill());
        if !needs {
            break;
        }
        trng.read(&mut chunk);
        let mut v = None;
        on(&mut |n| v = Some(n.offer_trng(&chunk)));
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

/// [`top_up_via`] on a node the caller holds (the engine taken out).
pub fn top_up(node: &mut Node<HwRandom>) -> bool {
    top_up_via(|f| f(node))
}

/// [`top_up_via`] on the shared node; the TRNG is read outside the critical section, so
/// interrupts are masked only while a chunk is mixed.
pub fn top_up_from_trng() -> bool {
    top_up_via(|f| {
        with(|n| f(n));
    })
}

/// Fills `dest` from the pool, topping it up from the TRNG first if its credit is short.
pub fn fill(dest: &mut [u8]) -> bool {
    dest.chunks_mut(qeaas_core::pool::MAX_EXTRACT).all(|chunk| {
        with(|n| n.fill(chunk).is_ok()).unwrap_or(false)
            || (top_up_from_trng() && with(|n| n.fill(chunk).is_ok()).unwrap_or(false))
    })
}
