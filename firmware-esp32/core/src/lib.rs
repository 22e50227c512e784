//! The portable core of the qeaas ESP32-C3 firmware (issue 6).
//!
//! Everything the device does that is not hardware or sockets lives here, sans-IO and `no_std`
//! (+ `alloc`), so that it runs unchanged on the chip, on the host (where its tests run) and under
//! `qemu-system-riscv32 -M virt`:
//!
//! * [`coap`]: a CoAP client for `GET /entropy` (RFC 7252 confirmable exchange and
//!   retransmission, RFC 7959 Block2 reassembly, 4.29 and 5.03 with Max-Age);
//! * [`scheduler`]: when to fetch (pool short of one full block, or every N seconds), backoff, and the
//!   reported state, including TRNG-only fallback;
//! * [`node`]: the two joined with the device pool ([`qeaas_core::device_pool`]); the firmware
//!   shell feeds it datagrams, TRNG bytes and the time, and sends what it asks to send;
//! * [`provision`]: the provisioning partition (credentials and settings kept in flash apart
//!   from the image, so one image serves every device).
//!
//! Time is an injected [`Instant`] (milliseconds since boot) and randomness for tokens, message
//! ids and retransmission jitter an injected [`RandomSource`]: no clock or RNG is read here.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod coap;
pub mod floor;
pub mod node;
pub mod provision;
pub mod scheduler;

/// A point in time, in milliseconds since an arbitrary origin (boot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    /// `self + ms`, saturating.
    pub fn plus_ms(self, ms: u64) -> Self {
        Instant(self.0.saturating_add(ms))
    }
}

/// Randomness for protocol fields (tokens, message ids, jitter). Not used for key material.
pub trait RandomSource {
    /// A uniformly random `u32`.
    fn next_u32(&mut self) -> u32;
}
