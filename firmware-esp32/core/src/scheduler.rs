//! When to fetch from the server, and the state the device reports.
//!
//! A fetch is due when the pool's credit is below its refill threshold (one full 32-byte block) or when the
//! refresh interval has passed since the last success, but never before the backoff time: after
//! a 4.29 or 5.03 that is the server's Max-Age; after any other failure an exponential backoff
//! (doubling from `min_retry_ms` to `max_retry_ms`). While the server cannot be used the device
//! keeps working on its TRNG alone and says so in [`LinkState::TrngOnly`].
//!
//! Every wait is jittered by a random value the caller draws: a fleet that failed together (a
//! power cut, a server restart) would otherwise retry in the same second for ever, and a fleet
//! that booted together would refresh in lockstep. Backoffs spread over `[b/2, 3b/2)`
//! ([`jittered`]), a server's Max-Age over `[m, 3m/2)` (never earlier than it asked), the periodic
//! refresh over `[3i/4, 5i/4)`. The DTLS shell's reconnect policy uses the same two functions.

use crate::coap::FetchError;
use crate::Instant;

/// Scheduler settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshConfig {
    /// Periodic refresh even when the pool is full enough.
    pub refresh_interval_ms: u64,
    /// Smallest gap between two fetches (so a low pool does not make a burst).
    pub min_spacing_ms: u64,
    /// First backoff after a failure without Max-Age.
    pub min_retry_ms: u64,
    /// Largest backoff.
    pub max_retry_ms: u64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            refresh_interval_ms: 60_000,
            min_spacing_ms: 1_000,
            min_retry_ms: 5_000,
            max_retry_ms: 600_000,
        }
    }
}

/// Why the device runs on its TRNG alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackReason {
    /// No answer (timeouts) or a Reset.
    Unreachable,
    /// The server said 4.29.
    RateLimited,
    /// The server said 5.03.
    Unavailable,
    /// The server answered something we could not use.
    ProtocolError,
}

/// What the device reports about its entropy supply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No fetch has completed yet; the TRNG feeds the pool meanwhile.
    Starting,
    /// The last fetch succeeded: the pool mixes server and TRNG bytes.
    ServerAndTrng,
    /// The last fetch failed: TRNG only until a fetch succeeds again.
    TrngOnly {
        /// The last failure's kind.
        reason: FallbackReason,
        /// Failures in a row.
        failures: u32,
    },
}

/// Exponential backoff after `failures` failures in a row: `min_ms`, doubling after each further
/// failure, at most `max_ms`.
pub fn backoff_ms(min_ms: u64, max_ms: u64, failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(32);
    min_ms.saturating_mul(1u64 << doublings).min(max_ms)
}

/// `b` spread uniformly over `[b/2, 3b/2)` by the random `r`.
pub fn jittered(b: u64, r: u32) -> u64 {
    b / 2 + u64::from(r) % b.max(1)
}

/// `m` spread over `[m, 3m/2)`: a wait the server asked for, never shortened.
fn at_least(m: u64, r: u32) -> u64 {
    m + u64::from(r) % (m / 2).max(1)
}

/// `i` spread over `[3i/4, 5i/4)`.
fn around(i: u64, r: u32) -> u64 {
    i - i / 4 + u64::from(r) % (i / 2).max(1)
}

/// The refresh scheduler; see the module documentation.
#[derive(Clone, Debug)]
pub struct Scheduler {
    cfg: RefreshConfig,
    state: LinkState,
    not_before: Instant,
    next_periodic: Instant,
    failures: u32,
}

impl Scheduler {
    /// A scheduler whose first fetch is due at `now`.
    pub fn new(cfg: RefreshConfig, now: Instant) -> Self {
        Self {
            cfg,
            state: LinkState::Starting,
            not_before: now,
            next_periodic: now,
            failures: 0,
        }
    }

    /// The reported state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// True if a fetch should start now.
    pub fn fetch_due(&self, now: Instant, pool_needs_refill: bool) -> bool {
        now >= self.next_fetch_at(pool_needs_refill)
    }

    /// When the next fetch becomes due, given the pool's state.
    pub fn next_fetch_at(&self, pool_needs_refill: bool) -> Instant {
        if pool_needs_refill {
            self.not_before
        } else {
            self.not_before.max(self.next_periodic)
        }
    }

    /// A fetch completed; `r` is a random value for the jitter.
    pub fn on_success(&mut self, now: Instant, r: u32) {
        self.failures = 0;
        self.state = LinkState::ServerAndTrng;
        self.not_before = now.plus_ms(self.cfg.min_spacing_ms);
        self.next_periodic = now.plus_ms(around(self.cfg.refresh_interval_ms, r));
    }

    /// A fetch failed; `r` is a random value for the jitter.
    pub fn on_failure(&mut self, now: Instant, err: FetchError, r: u32) {
        self.failures = self.failures.saturating_add(1);
        let (reason, wait_ms) = match err {
            FetchError::RateLimited { retry_after_s } => (
                FallbackReason::RateLimited,
                at_least(u64::from(retry_after_s) * 1000, r),
            ),
            FetchError::Unavailable { retry_after_s } => (
                FallbackReason::Unavailable,
                at_least(u64::from(retry_after_s) * 1000, r),
            ),
            FetchError::Timeout | FetchError::Reset => {
                (FallbackReason::Unreachable, jittered(self.backoff_ms(), r))
            }
            _ => (
                FallbackReason::ProtocolError,
                jittered(self.backoff_ms(), r),
            ),
        };
        self.state = LinkState::TrngOnly {
            reason,
            failures: self.failures,
        };
        // Honour the server's Max-Age, but never retry faster than the spacing allows.
        self.not_before = now.plus_ms(wait_ms.max(self.cfg.min_spacing_ms));
        self.next_periodic = self.not_before;
    }

    fn backoff_ms(&self) -> u64 {
        backoff_ms(self.cfg.min_retry_ms, self.cfg.max_retry_ms, self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant(ms)
    }

    #[test]
    fn first_fetch_is_due_at_boot() {
        let s = Scheduler::new(RefreshConfig::default(), t(0));
        assert!(s.fetch_due(t(0), false));
        assert_eq!(s.state(), LinkState::Starting);
    }

    #[test]
    fn periodic_refresh_or_low_pool() {
        let mut s = Scheduler::new(RefreshConfig::default(), t(0));
        // r = 15 000: the interval's jitter spans 30 s, from 45 s: 60 s.
        s.on_success(t(100), 15_000);
        assert_eq!(s.state(), LinkState::ServerAndTrng);
        // Full pool: only the interval makes a fetch due.
        assert!(!s.fetch_due(t(30_000), false));
        assert!(!s.fetch_due(t(60_099), false));
        assert!(s.fetch_due(t(60_100), false));
        // Low pool: due as soon as the spacing has passed.
        assert!(!s.fetch_due(t(1_099), true));
        assert!(s.fetch_due(t(1_100), true));
    }

    #[test]
    fn max_age_sets_the_retry_time() {
        let mut s = Scheduler::new(RefreshConfig::default(), t(0));
        s.on_failure(t(0), FetchError::RateLimited { retry_after_s: 30 }, 0);
        assert_eq!(
            s.state(),
            LinkState::TrngOnly {
                reason: FallbackReason::RateLimited,
                failures: 1
            }
        );
        assert!(!s.fetch_due(t(29_999), true), "even a low pool waits");
        assert!(s.fetch_due(t(30_000), true));
        s.on_failure(t(30_000), FetchError::Unavailable { retry_after_s: 0 }, 0);
        assert_eq!(s.next_fetch_at(true), t(31_000), "spacing still applies");
    }

    #[test]
    fn unreachable_backs_off_exponentially_with_a_cap_and_recovers() {
        let cfg = RefreshConfig::default();
        let mut s = Scheduler::new(cfg, t(0));
        let mut now = t(0);
        let mut waits = alloc::vec::Vec::new();
        for _ in 0..10 {
            // u32::MAX % b = b - 1 for these b: the top of each range, 3b/2 - 1.
            s.on_failure(now, FetchError::Timeout, u32::MAX);
            let next = s.next_fetch_at(false);
            waits.push(next.0 - now.0);
            now = next;
        }
        assert_eq!(
            waits,
            [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 600_000, 600_000, 600_000]
                .map(|b| b / 2 + (u64::from(u32::MAX) % b))
        );
        assert_eq!(
            s.state(),
            LinkState::TrngOnly {
                reason: FallbackReason::Unreachable,
                failures: 10
            }
        );
        s.on_success(now, 0);
        assert_eq!(s.state(), LinkState::ServerAndTrng);
        s.on_failure(now, FetchError::Reset, 2_500);
        assert_eq!(s.next_fetch_at(true).0 - now.0, 5_000, "backoff restarts");
    }

    #[test]
    fn a_fleet_that_failed_together_spreads_its_retries() {
        // 1000 devices, one failure at the same instant, each with its own random values
        // (xorshift, different seeds): their retries must not land in the same second.
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut per_second = alloc::collections::BTreeMap::new();
        let mut max_age_early = 0;
        for _ in 0..1000 {
            let mut s = Scheduler::new(RefreshConfig::default(), t(0));
            s.on_failure(t(0), FetchError::Timeout, next());
            let at = s.next_fetch_at(true).0;
            assert!((2_500..7_500).contains(&at), "{at}");
            *per_second.entry(at / 1000).or_insert(0u32) += 1;
            let mut s = Scheduler::new(RefreshConfig::default(), t(0));
            s.on_failure(t(0), FetchError::Unavailable { retry_after_s: 60 }, next());
            max_age_early += u32::from(s.next_fetch_at(true).0 < 60_000);
        }
        // 5 seconds' worth of slots, ~200 per second: none holds more than a third of the fleet.
        assert!(per_second.len() >= 5, "{per_second:?}");
        assert!(per_second.values().all(|&n| n < 333), "{per_second:?}");
        assert_eq!(max_age_early, 0, "never earlier than the server's Max-Age");
    }

    #[test]
    fn other_errors_are_protocol_errors() {
        let mut s = Scheduler::new(RefreshConfig::default(), t(0));
        s.on_failure(t(0), FetchError::Code(0x84), 0);
        assert!(matches!(
            s.state(),
            LinkState::TrngOnly {
                reason: FallbackReason::ProtocolError,
                ..
            }
        ));
    }
}
