//! Per-client quota and rate limit. Sans-IO: the caller passes `now` (time since any fixed
//! origin), so tests step a simulated clock.

use std::time::Duration;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refusal {
    /// Too many requests: retry after this long (HTTP 429, Retry-After).
    RateLimited {
        /// Time until one request's worth of tokens is back.
        retry_after: Duration,
    },
    /// The byte quota of the current period is spent (HTTP 403).
    QuotaExhausted {
        /// Time until the period ends.
        resets_in: Duration,
    },
}

/// A token bucket: `rate` requests per second sustained, `burst` at once.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(rate_per_sec: f64, burst: u32, now: Duration) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate_per_sec,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Duration) {
        // A clock that goes backwards (it should not) adds nothing rather than panicking.
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Whether one request fits now; if not, how long until it would.
    pub fn check(&mut self, now: Duration) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Spends one request (after a successful [`check`](Self::check)).
    pub fn take(&mut self) {
        self.tokens -= 1.0;
    }

    /// Whether the bucket has refilled to its burst by `now` (so forgetting it loses nothing).
    pub fn is_full(&mut self, now: Duration) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// A fixed-window byte quota: `limit` bytes per `period`, the window starting at the first use.
#[derive(Clone, Debug)]
pub struct Quota {
    limit: u64,
    period: Duration,
    used: u64,
    window_start: Duration,
}

impl Quota {
    /// A fresh quota whose first window starts at `now`.
    pub fn new(limit: u64, period: Duration, now: Duration) -> Self {
        Self {
            limit,
            period,
            used: 0,
            window_start: now,
        }
    }

    fn roll(&mut self, now: Duration) {
        if now.saturating_sub(self.window_start) >= self.period {
            self.used = 0;
            self.window_start = now;
        }
    }

    /// Whether `n` more bytes fit in this window; if not, time until the window resets.
    pub fn check(&mut self, n: u64, now: Duration) -> Result<(), Duration> {
        self.roll(now);
        if self.used.saturating_add(n) <= self.limit {
            Ok(())
        } else {
            Err((self.window_start + self.period).saturating_sub(now))
        }
    }

    /// Takes `n` bytes of this window now, before they are fetched: requests admitted together
    /// (HTTP/2 streams of one token) can never add up past the limit. Give them back with
    /// [`Quota::refund`] if they are not served.
    pub fn reserve(&mut self, n: u64, now: Duration) -> Result<Reservation, Duration> {
        self.check(n, now)?;
        self.used = self.used.saturating_add(n);
        Ok(Reservation {
            bytes: n,
            window_start: self.window_start,
        })
    }

    /// Gives back a reservation that was not served. A reservation from an earlier window is
    /// dropped: that window's count was already reset.
    pub fn refund(&mut self, r: Reservation) {
        if r.window_start == self.window_start {
            self.used = self.used.saturating_sub(r.bytes);
        }
    }

    /// Bytes left in this window.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// Bytes taken from a quota window at admission ([`Quota::reserve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    bytes: u64,
    window_start: Duration,
}

impl Reservation {
    /// Bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// One client's limits together.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Request rate.
    pub bucket: TokenBucket,
    /// Byte quota.
    pub quota: Quota,
}

impl Limits {
    /// Admits a request for `n` bytes: checks quota then rate; only when both pass it spends a
    /// rate token and reserves the `n` bytes, so concurrent requests are counted as they are
    /// admitted, not once served. [`Limits::refund`] gives the bytes back when the daemon does
    /// not deliver them (a refusal costs the client no quota).
    pub fn admit(&mut self, n: u64, now: Duration) -> Result<Reservation, Refusal> {
        self.quota
            .check(n, now)
            .map_err(|resets_in| Refusal::QuotaExhausted { resets_in })?;
        self.bucket
            .check(now)
            .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
        let r = self
            .quota
            .reserve(n, now)
            .map_err(|resets_in| Refusal::QuotaExhausted { resets_in })?;
        self.bucket.take();
        Ok(r)
    }

    /// Gives back bytes admitted but not served.
    pub fn refund(&mut self, r: Reservation) {
        self.quota.refund(r);
    }
}

/// Whole seconds for a Retry-After header, rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let mut b = TokenBucket::new(2.0, 3, s(0.0));
        for _ in 0..3 {
            b.check(s(0.0)).unwrap();
            b.take();
        }
        let wait = b.check(s(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        // Half a second later exactly one request fits again.
        b.check(s(0.5)).unwrap();
        b.take();
        assert!(b.check(s(0.5)).is_err());
        // A long idle period refills only up to the burst.
        for _ in 0..3 {
            b.check(s(100.0)).unwrap();
            b.take();
        }
        assert!(b.check(s(100.0)).is_err());
    }

    #[test]
    fn bucket_survives_a_clock_going_backwards() {
        let mut b = TokenBucket::new(1.0, 1, s(10.0));
        b.check(s(10.0)).unwrap();
        b.take();
        assert!(b.check(s(5.0)).is_err());
        b.check(s(11.0)).unwrap();
    }

    #[test]
    fn quota_counts_bytes_per_window() {
        let mut q = Quota::new(100, Duration::from_secs(60), s(0.0));
        q.reserve(64, s(1.0)).unwrap();
        q.check(36, s(2.0)).unwrap();
        let resets = q.check(37, s(2.0)).unwrap_err();
        assert_eq!(resets, s(58.0));
        q.reserve(36, s(2.0)).unwrap();
        assert_eq!(q.remaining(), 0);
        assert!(q.check(1, s(59.9)).is_err());
        // The next window starts fresh.
        q.check(100, s(60.0)).unwrap();
        assert_eq!(q.remaining(), 100);
    }

    #[test]
    fn reservations_never_add_up_past_the_limit_and_refunds_stay_in_their_window() {
        let mut q = Quota::new(100, Duration::from_secs(60), s(0.0));
        // Ten requests admitted before any is served: only what fits is reserved.
        let granted: Vec<_> = (0..10).filter_map(|_| q.reserve(30, s(1.0)).ok()).collect();
        assert_eq!(granted.len(), 3);
        assert_eq!(q.remaining(), 10);
        // One was not served: its bytes come back.
        q.refund(granted[0]);
        assert_eq!(q.remaining(), 40);
        // A refund from a window that has ended gives nothing to the new one.
        let old = granted[1];
        q.reserve(40, s(61.0)).unwrap();
        q.refund(old);
        assert_eq!(q.remaining(), 60);
    }

    #[test]
    fn admit_checks_quota_before_rate_and_spends_only_on_success() {
        let mut l = Limits {
            bucket: TokenBucket::new(1.0, 1, s(0.0)),
            quota: Quota::new(10, Duration::from_secs(3600), s(0.0)),
        };
        // Over quota: refused without spending the single rate token.
        assert!(matches!(
            l.admit(11, s(0.0)),
            Err(Refusal::QuotaExhausted { .. })
        ));
        let r = l.admit(10, s(0.0)).unwrap();
        assert_eq!(r.bytes(), 10);
        assert!(matches!(
            l.admit(1, s(0.0)),
            Err(Refusal::QuotaExhausted { .. })
        ));
        let mut l2 = Limits {
            bucket: TokenBucket::new(1.0, 1, s(0.0)),
            quota: Quota::new(1000, Duration::from_secs(3600), s(0.0)),
        };
        l2.admit(1, s(0.0)).unwrap();
        match l2.admit(1, s(0.25)) {
            Err(Refusal::RateLimited { retry_after }) => {
                assert_eq!(retry_after_secs(retry_after), 1)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(s(0.0)), 1);
        assert_eq!(retry_after_secs(s(1.0)), 1);
        assert_eq!(retry_after_secs(s(1.2)), 2);
    }
}
