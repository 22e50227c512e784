//! The entropy core of qeaas: everything between a noise source and the bytes its consumers get.
//!
//! `no_std` + `alloc`, sans-IO and free of `unsafe`, so that the daemon and the ESP32 firmware run
//! the very same code. The modules, in data-flow order:
//!
//! * [`health`]: SP 800-90B continuous health tests and the start-up test (the gate);
//! * [`fips`]: FIPS 140-2 block tests as rngtest runs them (a statistic);
//! * [`extractor`]: the Toeplitz 2-universal hash for raw samples;
//! * `pipeline`: ties the three together per source and computes the credit (only on targets
//!   with atomics: it shares the extractor through `Arc`);
//! * [`pool`]: the BLAKE2s pool (mix, credit, extract), modelled on Linux random.c;
//! * [`device_pool`]: the embedded client's pool with the paper's parameters (512-byte credit
//!   cap, refill below 128 bytes, backfeed), accounting server and TRNG credit apart;
//! * [`reservoir`]: the pool plus a queue from which each byte is handed out once;
//! * `assess` (feature `assess`): SP 800-90B entropy assessment of raw samples, offline (the
//!   estimators of section 6, restart tests, conditioning formulas) and online.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod device_pool;
pub mod extractor;
pub mod fips;
pub mod health;
// The pipeline shares one extractor between sources through `Arc`, which `alloc` offers only on
// targets with pointer-width atomics; riscv32imc (ESP32-C3) has none, and the device does not
// need the pipeline (it uses `health` and `device_pool` directly).
#[cfg(feature = "assess")]
pub mod assess;
#[cfg(target_has_atomic = "ptr")]
pub mod pipeline;
pub mod pool;
pub mod reservoir;

/// A deterministic byte stream (xorshift64) that passes the RCT and APT, for unit tests.
#[cfg(test)]
pub(crate) fn test_noise(seed: u64, len: usize) -> alloc::vec::Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

#[cfg(feature = "std")]
impl std::error::Error for pool::NotEnoughEntropy {}
#[cfg(feature = "std")]
impl std::error::Error for device_pool::CreditTooLarge {}
#[cfg(feature = "std")]
impl std::error::Error for health::InvalidMinEntropy {}
#[cfg(feature = "std")]
impl std::error::Error for extractor::InvalidShape {}
