//! Feeding the Linux input pool, the modern way (kernel 5.18+).
//!
//! * At start, while `RNDGETENTCNT` < 256 (the CRNG is not yet initialised), inject 32 bytes at a
//!   time with honest credit.
//! * Then, on a timer matched to the kernel's own 60 s reseed, add `feed_bytes` (32..=64) with
//!   RNDADDENTROPY and call RNDRESEEDCRNG so the CRNG uses them at once.
//!
//! No busy loops and no reliance on POLLOUT or `write_wakeup_threshold`, which 5.18+ ignore.
//! [`FeedSchedule`] is the sans-IO decision; the worker's feeder thread asks the privileged
//! supervisor (see [`crate::privsep`]) to perform the ioctls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until then.
    WaitUntil(Instant),
    /// Add `bytes`; call RNDRESEEDCRNG afterwards if `reseed`.
    Feed {
        /// Bytes to add.
        bytes: usize,
        /// Force a CRNG reseed after adding.
        reseed: bool,
        /// Part of the initial seeding (count below 256).
        initial: bool,
    },
}

/// The feeding schedule.
#[derive(Clone, Debug)]
pub struct FeedSchedule {
    interval: Duration,
    feed_bytes: usize,
    reseed: bool,
    next: Option<Instant>,
}

/// Kernel entropy count at which the CRNG is initialised.
pub const READY_BITS: u32 = 256;

impl FeedSchedule {
    /// A schedule feeding `feed_bytes` every `interval`.
    pub fn new(interval: Duration, feed_bytes: usize, reseed: bool) -> Self {
        Self {
            interval,
            feed_bytes,
            reseed,
            next: None,
        }
    }

    /// Decides the next action given the kernel's entropy count. `creditable` says whether what
    /// we add will carry credit: uncredited data cannot raise the count, so it never triggers the
    /// initial phase (which would otherwise repeat forever).
    pub fn poll(&self, now: Instant, entcnt: u32, creditable: bool) -> Action {
        if creditable && entcnt < READY_BITS {
            return Action::Feed {
                bytes: 32,
                reseed: false,
                initial: true,
            };
        }
        match self.next {
            Some(t) if now < t => Action::WaitUntil(t),
            _ => Action::Feed {
                bytes: self.feed_bytes,
                reseed: self.reseed,
                initial: false,
            },
        }
    }

    /// Records a periodic feed done at `now`.
    pub fn fed(&mut self, now: Instant) {
        self.next = Some(now + self.interval);
    }

    /// Records a failed attempt: try again after a short back-off, not in a tight loop.
    pub fn retry_later(&mut self, now: Instant, after: Duration) {
        self.next = Some(now + after);
    }
}

/// Kernel-face counters, published by metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelStats {
    /// RNDADDENTROPY calls that succeeded.
    pub adds: u64,
    /// Bytes added.
    pub bytes: u64,
    /// Bits credited.
    pub bits_credited: u64,
    /// RNDRESEEDCRNG calls that succeeded.
    pub reseeds: u64,
    /// Failed ioctls.
    pub errors: u64,
    /// Last RNDGETENTCNT reading.
    pub entropy_count: u32,
    /// Feeds skipped because the pool could not back them.
    pub starved: u64,
}

/// Shared kernel counters.
pub type SharedKernelStats = Arc<Mutex<KernelStats>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_seeding_then_timer() {
        let t0 = Instant::now();
        let mut s = FeedSchedule::new(Duration::from_secs(60), 64, true);
        assert_eq!(
            s.poll(t0, 0, true),
            Action::Feed {
                bytes: 32,
                reseed: false,
                initial: true
            }
        );
        // Uncredited data never drives the initial phase.
        assert_eq!(
            s.poll(t0, 0, false),
            Action::Feed {
                bytes: 64,
                reseed: true,
                initial: false
            }
        );
        // Count reached: first periodic feed now, the next one 60 s later.
        assert_eq!(
            s.poll(t0, 256, true),
            Action::Feed {
                bytes: 64,
                reseed: true,
                initial: false
            }
        );
        s.fed(t0);
        assert_eq!(
            s.poll(t0 + Duration::from_secs(59), 256, true),
            Action::WaitUntil(t0 + Duration::from_secs(60))
        );
        assert!(matches!(
            s.poll(t0 + Duration::from_secs(60), 256, true),
            Action::Feed { initial: false, .. }
        ));
    }

    #[test]
    fn simulated_time_over_an_hour_feeds_sixty_times() {
        let t0 = Instant::now();
        let mut s = FeedSchedule::new(Duration::from_secs(60), 48, true);
        let mut now = t0;
        let mut feeds = 0;
        while now < t0 + Duration::from_secs(3600) {
            match s.poll(now, 256, true) {
                Action::WaitUntil(t) => now = t,
                Action::Feed { bytes, .. } => {
                    assert_eq!(bytes, 48);
                    feeds += 1;
                    s.fed(now);
                }
            }
        }
        assert_eq!(feeds, 60);
    }
}
