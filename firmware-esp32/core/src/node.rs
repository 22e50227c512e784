//! The device: pool, CoAP client and scheduler joined, driven by the firmware shell.
//!
//! The shell's loop is:
//!
//! ```text
//! node.offer_trng(bytes)                -- whenever it reads the TRNG (pool low, or periodically)
//! node.poll(now)                        -- starts a fetch when due, handles timeouts
//! while let Some(d) = node.poll_transmit() { send d }
//! wait for a datagram or node.poll_timeout()
//! node.handle_datagram(now, d)
//! node.fill(buf)                        -- the device's own consumers (DTLS RNG, getrandom)
//! ```
//!
//! The transport seam: datagrams in and out of the node are plain CoAP. Today the shell sends
//! them over plain UDP, later through DTLS. Server bytes are credited only when the transport
//! authenticates the server ([`Transport::Dtls`]): over plain UDP anyone on the path can forge the
//! answer, so its bytes are mixed with zero credit and all credit comes from the TRNG.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use qeaas_core::device_pool::{CreditTooLarge, DevicePool, DevicePoolStats, Origin};
use qeaas_core::health::{
    HealthCounters, HealthMonitor, HealthParams, MinEntropy, SampleWidth, Verdict,
};
use qeaas_core::pool::NotEnoughEntropy;

use crate::coap::{ClientConfig, ClientStats, EntropyClient, Outcome};
use crate::scheduler::{LinkState, RefreshConfig, Scheduler};
use crate::{Instant, RandomSource};

/// Min-entropy claimed for the chip TRNG, in bits per byte.
///
/// Espressif publishes no SP 800-90B assessment of the ESP32-C3 RNG (it is a true RNG only while
/// the radio or the ADC noise source runs), so the claim is deliberately half of full entropy; the
/// health tests run with the cut-offs of this claim (RCT 6, APT 62 of 512 at alpha = 2^-20).
pub const TRNG_BITS_PER_BYTE: u32 = 4;

/// TRNG bytes whose credit is held back: two APT windows of byte samples, the daemon's rule
/// (`qeaas_core::pipeline`). The APT needs up to a window to see a fault that began just before
/// it, so credit is granted to a chunk only once the next `2 W` samples have passed too; a
/// failure drops the credit still held. The bytes themselves are mixed at once (mixing never
/// credits), so holding back the credit costs no buffer of raw samples.
pub const TRNG_HOLDBACK_BYTES: usize = 2 * SampleWidth::Byte.apt_window() as usize;

fn trng_health() -> HealthMonitor {
    // 4000 millibits per byte is within (0, 8000]: the constructor cannot fail.
    let h = MinEntropy::from_millibits(TRNG_BITS_PER_BYTE * 1000, SampleWidth::Byte)
        .unwrap_or_else(|_| unreachable!());
    HealthMonitor::new(HealthParams::new(SampleWidth::Byte, h))
}

/// How datagrams reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain UDP: development only. Server bytes are mixed, never credited.
    PlainUdp,
    /// DTLS with an authenticated server: server bytes credited at 8 bits per byte.
    Dtls,
}

impl Transport {
    /// Credit for `len` server bytes over this transport.
    pub fn server_credit_bits(self, len: usize) -> u32 {
        match self {
            Transport::PlainUdp => 0,
            Transport::Dtls => u32::try_from(len.saturating_mul(8)).unwrap_or(u32::MAX),
        }
    }
}

/// What the device reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Server or TRNG-only, and why.
    pub link: LinkState,
    /// The transport in use.
    pub transport: Transport,
    /// The pool's accounting (server and TRNG apart).
    pub pool: DevicePoolStats,
    /// The CoAP client's counters.
    pub client: ClientStats,
    /// The TRNG health tests' counters.
    pub trng_health: HealthCounters,
    /// Fetches that delivered bytes.
    pub fetches_ok: u64,
    /// Fetches that failed.
    pub fetches_failed: u64,
}

/// The device core; see the module documentation.
#[derive(Debug)]
pub struct Node<R> {
    pool: DevicePool,
    client: EntropyClient<R>,
    sched: Scheduler,
    transport: Transport,
    trng_health: HealthMonitor,
    /// Healthy TRNG chunks mixed but not credited yet, oldest first: (bytes, bits).
    trng_held: VecDeque<(usize, u32)>,
    trng_held_bytes: usize,
    fetches_ok: u64,
    fetches_failed: u64,
}

impl<R: RandomSource> Node<R> {
    /// A device core started at `now`; its first fetch is due at once.
    pub fn new(
        now: Instant,
        client: ClientConfig,
        refresh: RefreshConfig,
        transport: Transport,
        rng: R,
    ) -> Self {
        Self {
            pool: DevicePool::new(),
            client: EntropyClient::new(client, rng),
            sched: Scheduler::new(refresh, now),
            transport,
            trng_health: trng_health(),
            trng_held: VecDeque::new(),
            trng_held_bytes: 0,
            fetches_ok: 0,
            fetches_failed: 0,
        }
    }

    /// Health-tests raw TRNG bytes (SP 800-90B RCT and APT, start-up test first) and mixes them.
    /// Chunks that pass while the TRNG is healthy are credited at [`TRNG_BITS_PER_BYTE`], once
    /// [`TRNG_HOLDBACK_BYTES`] more bytes have passed after them. A failure drops the credit
    /// still held and also discards the pool's credit: the fault may have begun before the
    /// tests saw it.
    pub fn offer_trng(&mut self, chunk: &[u8]) -> Verdict {
        let verdict = self.trng_health.check(chunk);
        self.pool.mix(Origin::Trng, chunk);
        match verdict {
            Verdict::Pass => {
                let bits = TRNG_BITS_PER_BYTE.saturating_mul(chunk.len() as u32);
                self.trng_held.push_back((chunk.len(), bits));
                self.trng_held_bytes += chunk.len();
                self.release_trng_credit();
            }
            Verdict::Startup | Verdict::Failed => {}
            Verdict::Intermittent(_) | Verdict::Permanent(_) => {
                self.trng_held.clear();
                self.trng_held_bytes = 0;
                self.pool.discard_credit();
            }
        }
        verdict
    }

    /// Credits the held chunks that now have [`TRNG_HOLDBACK_BYTES`] healthy bytes after them.
    fn release_trng_credit(&mut self) {
        while let Some(&(len, bits)) = self.trng_held.front() {
            if self.trng_held_bytes - len < TRNG_HOLDBACK_BYTES {
                return;
            }
            self.trng_held.pop_front();
            self.trng_held_bytes -= len;
            // The chunk was mixed with 8 claimable bits per byte, and bits <= 4 per byte.
            let _ = self.pool.credit(Origin::Trng, bits);
        }
    }

    /// Mixes TRNG bytes assessed elsewhere and credits `bits` (at most 8 per byte). Bypasses the
    /// health tests: [`Self::offer_trng`] is the normal path.
    pub fn add_trng(&mut self, data: &[u8], bits: u32) -> Result<u32, CreditTooLarge> {
        self.pool.add_entropy(Origin::Trng, data, bits)
    }

    /// True when the pool is below its refill threshold (the shell then reads the TRNG).
    pub fn needs_refill(&self) -> bool {
        self.pool.needs_refill()
    }

    /// Starts a fetch if one is due; handles the client's timeouts.
    pub fn poll(&mut self, now: Instant) {
        self.client.handle_timeout(now);
        self.drain_outcome(now);
        if self.client.is_idle() && self.sched.fetch_due(now, self.pool.needs_refill()) {
            // Cannot be Busy: the client is idle.
            let _ = self.client.start(now);
        }
    }

    /// The transport was replaced by a new secure session: the fetch in flight, if any, is
    /// sent again at once over it ([`EntropyClient::resend`]).
    pub fn transport_restarted(&mut self, now: Instant) {
        self.client.resend(now);
    }

    /// Handles a datagram from the server.
    pub fn handle_datagram(&mut self, now: Instant, buf: &[u8]) {
        self.client.handle_datagram(now, buf);
        self.drain_outcome(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.client.poll_transmit()
    }

    /// When [`Self::poll`] must next be called (a retransmission, or the next fetch).
    pub fn poll_timeout(&self) -> Instant {
        let next_fetch = self.sched.next_fetch_at(self.pool.needs_refill());
        match self.client.poll_timeout() {
            Some(t) => t,
            None => next_fetch,
        }
    }

    /// Fills `out` from the pool (all or nothing).
    pub fn fill(&mut self, out: &mut [u8]) -> Result<(), NotEnoughEntropy> {
        self.pool.fill(out)
    }

    /// The report.
    pub fn status(&self) -> Status {
        Status {
            link: self.sched.state(),
            transport: self.transport,
            pool: self.pool.stats(),
            client: self.client.stats(),
            trng_health: self.trng_health.counters(),
            fetches_ok: self.fetches_ok,
            fetches_failed: self.fetches_failed,
        }
    }

    fn drain_outcome(&mut self, now: Instant) {
        match self.client.poll_outcome() {
            Some(Outcome::Entropy(mut body)) => {
                let bits = self.transport.server_credit_bits(body.len());
                // bits <= 8 * len by construction, so this cannot be refused.
                let _ = self.pool.add_entropy(Origin::Server, &body, bits);
                body.fill(0);
                self.fetches_ok += 1;
                let r = self.client.random_u32();
                self.sched.on_success(now, r);
            }
            Some(Outcome::Failed(e)) => {
                self.fetches_failed += 1;
                let r = self.client.random_u32();
                self.sched.on_failure(now, e, r);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
