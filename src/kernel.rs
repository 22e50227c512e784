//! Feeding the Linux input pool, the modern way (kernel 5.18+).
//!
//! * At start, while `RNDGETENTCNT` < 256 (the CRNG is not yet initialised), inject 32 bytes at a
//!   time with honest credit.
//! * Then, on a timer matched to the kernel's own 60 s reseed, add `feed_bytes` (32..=64) with
//!   RNDADDENTROPY and call RNDRESEEDCRNG so the CRNG uses them at once.
//!
//! * When the daemon stops, feed once more (the final feed): a restart (a package upgrade) then
//!   leaves the kernel unfed only for the restart itself, since the new process feeds at its
//!   start, and not for the restart plus whatever was left of the interval.
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
    /// Stopped: the final feed is done, or could not be backed.
    Done,
}

/// The feeding schedule.
#[derive(Clone, Debug)]
pub struct FeedSchedule {
    interval: Duration,
    feed_bytes: usize,
    reseed: bool,
    next: Option<Instant>,
    stop: Stop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Running,
    FinalFeed,
    Done,
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
            stop: Stop::Running,
        }
    }

    /// The daemon is stopping: the next poll asks for the final feed, then for nothing more.
    pub fn stop(&mut self) {
        if self.stop == Stop::Running {
            self.stop = Stop::FinalFeed;
        }
    }

    /// Decides the next action given the kernel's entropy count. `creditable` says whether what
    /// we add will carry credit: uncredited data cannot raise the count, so it never triggers the
    /// initial phase (which would otherwise repeat forever).
    pub fn poll(&self, now: Instant, entcnt: u32, creditable: bool) -> Action {
        match self.stop {
            Stop::Done => return Action::Done,
            Stop::FinalFeed => {
                return Action::Feed {
                    bytes: self.feed_bytes,
                    reseed: self.reseed,
                    initial: false,
                }
            }
            Stop::Running => {}
        }
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

    /// True when the feed [`Self::poll`] asks for is the final one.
    pub fn is_final_feed(&self) -> bool {
        self.stop == Stop::FinalFeed
    }

    /// Records a feed (periodic or final) done at `now`.
    pub fn fed(&mut self, now: Instant) {
        self.next = Some(now + self.interval);
        if self.stop == Stop::FinalFeed {
            self.stop = Stop::Done;
        }
    }

    /// Records a failed attempt: try again after a short back-off, not in a tight loop. A final
    /// feed is not retried: a stopping daemon does not wait for entropy.
    pub fn retry_later(&mut self, now: Instant, after: Duration) {
        self.next = Some(now + after);
        if self.stop == Stop::FinalFeed {
            self.stop = Stop::Done;
        }
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
                Action::Done => unreachable!("never stopped"),
            }
        }
        assert_eq!(feeds, 60);
    }

    #[test]
    fn a_stop_mid_interval_feeds_once_more_then_nothing() {
        let t0 = Instant::now();
        let mut s = FeedSchedule::new(Duration::from_secs(60), 48, true);
        s.fed(t0);
        let mid = t0 + Duration::from_secs(20);
        assert_eq!(
            s.poll(mid, 256, true),
            Action::WaitUntil(t0 + Duration::from_secs(60))
        );
        s.stop();
        let last = Action::Feed {
            bytes: 48,
            reseed: true,
            initial: false,
        };
        // Not the initial phase's 32 bytes either: the count does not matter any more.
        assert_eq!(s.poll(mid, 0, true), last);
        assert!(s.is_final_feed());
        s.fed(mid);
        assert_eq!(s.poll(mid, 256, true), Action::Done);
        // A second stop does not bring the final feed back.
        s.stop();
        assert_eq!(
            s.poll(t0 + Duration::from_secs(600), 256, true),
            Action::Done
        );
    }

    #[test]
    fn a_final_feed_the_pool_cannot_back_is_not_waited_for() {
        let t0 = Instant::now();
        let mut s = FeedSchedule::new(Duration::from_secs(60), 48, true);
        s.stop();
        assert!(matches!(s.poll(t0, 256, true), Action::Feed { .. }));
        s.retry_later(t0, Duration::from_millis(500));
        assert_eq!(s.poll(t0 + Duration::from_secs(1), 256, true), Action::Done);
    }
}
