//! Per-identity quotas, sans-IO (the caller passes `now`).
//!
//! Fixed windows: an identity's window opens with its first counted request and lasts
//! `window`; within it at most `bytes` bytes and `requests` requests are granted. A request
//! over either limit is refused with the whole seconds until the window ends (at least 1), the
//! Max-Age of a 4.29 (RFC 8516), and charges nothing. A request larger than the byte limit
//! itself can never pass and is told so ([`Verdict::Never`]). Refused requests are decided
//! before the daemon is asked, so they draw nothing from the pool.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One identity's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The window length.
    pub window: Duration,
    /// Bytes per window, if limited.
    pub bytes: Option<u64>,
    /// Requests per window, if limited.
    pub requests: Option<u64>,
}

/// The answer to [`Quotas::charge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Granted and counted.
    Granted,
    /// Over quota: retry after this many whole seconds (>= 1).
    RetryAfter(u32),
    /// Larger than the identity's whole byte quota: no wait makes it pass.
    Never,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    start: Instant,
    bytes: u64,
    requests: u64,
}

/// Limits by identity, a default for the others, and what each used in its window.
#[derive(Debug, Default)]
pub struct Quotas {
    default: Option<Limit>,
    by_identity: HashMap<String, Limit>,
    used: HashMap<String, Usage>,
}

impl Quotas {
    /// `default` applies to identities not in `by_identity`; with neither, nothing is limited.
    pub fn new(default: Option<Limit>, by_identity: HashMap<String, Limit>) -> Quotas {
        Quotas {
            default,
            by_identity,
            used: HashMap::new(),
        }
    }

    fn limit(&self, identity: &str) -> Option<Limit> {
        self.by_identity.get(identity).copied().or(self.default)
    }

    /// Counts one request for `bytes` by `identity` at `now`, if the quota allows it.
    pub fn charge(&mut self, identity: &str, bytes: u64, now: Instant) -> Verdict {
        let Some(limit) = self.limit(identity) else {
            return Verdict::Granted;
        };
        if limit.bytes.is_some_and(|b| bytes > b) {
            return Verdict::Never;
        }
        let u = self.used.entry(identity.to_string()).or_insert(Usage {
            start: now,
            bytes: 0,
            requests: 0,
        });
        let end = u.start + limit.window;
        if now >= end {
            *u = Usage {
                start: now,
                bytes: 0,
                requests: 0,
            };
        }
        let over_bytes = limit.bytes.is_some_and(|b| u.bytes + bytes > b);
        let over_requests = limit.requests.is_some_and(|r| u.requests + 1 > r);
        if over_bytes || over_requests {
            let left = (u.start + limit.window).saturating_duration_since(now);
            // Whole seconds, rounded up: retrying after Max-Age must find the window over.
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Verdict::RetryAfter(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
        }
        u.bytes += bytes;
        u.requests += 1;
        Verdict::Granted
    }

    /// Forgets identities whose window is over (they start afresh anyway): the table holds
    /// only identities active within one window.
    pub fn prune(&mut self, now: Instant) {
        let (default, by) = (self.default, &self.by_identity);
        self.used.retain(|id, u| {
            by.get(id)
                .copied()
                .or(default)
                .is_some_and(|l| now < u.start + l.window)
        });
    }

    /// Identities with a window open (for tests and logs).
    pub fn tracked(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    fn quotas() -> Quotas {
        Quotas::new(
            Some(Limit {
                window: s(60),
                bytes: Some(100),
                requests: None,
            }),
            HashMap::from([(
                "small".to_string(),
                Limit {
                    window: s(10),
                    bytes: None,
                    requests: Some(2),
                },
            )]),
        )
    }

    #[test]
    fn requests_per_window_with_rollover_and_max_age() {
        let t = Instant::now();
        let mut q = quotas();
        assert_eq!(q.charge("small", 5000, t), Verdict::Granted);
        assert_eq!(q.charge("small", 5000, t + s(1)), Verdict::Granted);
        // Window opened at t, 10 s long: at t+3 s, 7 s are left.
        assert_eq!(q.charge("small", 1, t + s(3)), Verdict::RetryAfter(7));
        // Fractions round up, never to 0.
        assert_eq!(
            q.charge("small", 1, t + Duration::from_millis(3500)),
            Verdict::RetryAfter(7)
        );
        assert_eq!(
            q.charge("small", 1, t + Duration::from_millis(9999)),
            Verdict::RetryAfter(1)
        );
        // Retrying after the Max-Age passes: a new window, starting now.
        assert_eq!(q.charge("small", 1, t + s(10)), Verdict::Granted);
        assert_eq!(q.charge("small", 1, t + s(11)), Verdict::Granted);
        assert_eq!(q.charge("small", 1, t + s(12)), Verdict::RetryAfter(8));
    }

    #[test]
    fn bytes_per_window_refusals_charge_nothing_and_others_are_unaffected() {
        let t = Instant::now();
        let mut q = quotas();
        assert_eq!(q.charge("a", 60, t), Verdict::Granted);
        assert_eq!(q.charge("a", 50, t + s(20)), Verdict::RetryAfter(40));
        // The refused 50 were not counted: 40 more still fit.
        assert_eq!(q.charge("a", 40, t + s(21)), Verdict::Granted);
        assert_eq!(q.charge("a", 1, t + s(21)), Verdict::RetryAfter(39));
        // Another identity has its own window under the same default.
        assert_eq!(q.charge("b", 100, t + s(21)), Verdict::Granted);
        // Larger than the whole quota: never.
        assert_eq!(q.charge("c", 101, t), Verdict::Never);
        assert_eq!(q.charge("a", 1, t + s(60)), Verdict::Granted);
    }

    #[test]
    fn no_limits_means_unlimited_and_prune_forgets_closed_windows() {
        let t = Instant::now();
        let mut q = Quotas::default();
        for i in 0..1000 {
            assert_eq!(q.charge("x", 1 << 20, t + s(i)), Verdict::Granted);
        }
        assert_eq!(q.tracked(), 0);
        let mut q = quotas();
        q.charge("a", 1, t);
        q.charge("small", 1, t);
        q.prune(t + s(10));
        assert_eq!(q.tracked(), 1);
        q.prune(t + s(60));
        assert_eq!(q.tracked(), 0);
    }
}
