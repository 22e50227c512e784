//! When a shell should replace its DTLS session ([`crate::SecureNode::reconnect`]), sans-IO.
//!
//! A session is replaced when its handshake or a record failed, when the handshake has not
//! completed in [`Reconnect::HANDSHAKE_LIMIT_MS`], or when an established session stopped
//! answering: the server may have restarted and forgotten it. That is seen early, when the
//! exchange in flight needed [`Reconnect::SILENT_RETRANSMISSIONS`] CoAP retransmissions without
//! any answer (6-9 s after the request), or at the latest when it gave up
//! ([`Reconnect::SILENT_FAILURES`], ~93 s): without the early rule a restart cost a device one
//! or two whole give-ups (up to ~3 minutes) before a new handshake. On a link that loses a
//! datagram in three, two retransmissions in a row happen in about a quarter of exchanges, each
//! then costing a new handshake: the price of a quick reconnect. Failed attempts
//! back off exponentially like the fetch scheduler (5 s doubling to 600 s), so an unreachable or
//! misconfigured server costs the device about one handshake every ten minutes, and it runs on
//! its TRNG alone meanwhile.
//!
//! Every wait is jittered, uniform in `[b/2, 3b/2)` around the backoff `b`: a fleet that failed
//! together (a power cut, a server restart) would otherwise retry, and run its signature
//! verifications against the server, in the same second for ever. The jitter needs no secrecy,
//! only a seed that differs per device (the shell draws it from its hardware RNG).
//!
//! A session that was delivering and went silent is the exception: its first replacement waits
//! only [`Reconnect::LOST_SESSION_WAIT_MS`] (jittered the same way), so that a device is served
//! again within 10 s of a server restart. The fleet is already spread there: each device
//! finds its session lost at its own next fetch, and resumes it with a ticket (no signature)
//! where the server keeps its ticket key. Further failures back off as above.

use qeaas_device::node::Status;
use qeaas_device::scheduler::{backoff_ms, jittered, FallbackReason, LinkState};
use qeaas_device::Instant;

use crate::State;

/// The reconnect policy; see the module documentation.
#[derive(Clone, Debug)]
pub struct Reconnect {
    min_ms: u64,
    max_ms: u64,
    /// Failed sessions in a row (reset when a fetch succeeds).
    failures: u32,
    /// When the current session was started.
    started: Instant,
    /// Set once a failure of the current session was counted: when to reconnect.
    retry_at: Option<Instant>,
    /// The node's failed-fetch count when the current session was established or last delivered.
    failed_base: Option<u64>,
    /// The client's retransmission count when the exchange now in flight began (the last
    /// answered or failed fetch).
    retx_base: Option<u64>,
    ok_seen: u64,
    failed_seen: u64,
    /// xorshift32 state for the jitter (never 0).
    jitter: u32,
}

impl Reconnect {
    /// A handshake still running after this long is abandoned.
    pub const HANDSHAKE_LIMIT_MS: u64 = 60_000;
    /// Unanswered fetches in a row over an established session before it is replaced.
    pub const SILENT_FAILURES: u64 = 1;
    /// Retransmissions of one exchange without an answer after which an established session
    /// is replaced without waiting for the exchange to give up.
    pub const SILENT_RETRANSMISSIONS: u64 = 2;
    /// The wait before replacing a session that delivered and then went silent (the first
    /// failure after a success); jittered to `[0.25, 0.75)` s. With the 6-9 s it takes to see
    /// the silence, a device that was fetching when the server came back is served again
    /// within 10 s (plus a resumed handshake: ~30 ms at 160 MHz, and a round trip).
    pub const LOST_SESSION_WAIT_MS: u64 = 500;

    /// A policy for a session started at `now`; backoff from `min_ms` doubling to `max_ms`,
    /// jittered by a generator seeded with `jitter_seed` (a different value per device).
    pub fn new(now: Instant, min_ms: u64, max_ms: u64, jitter_seed: u32) -> Self {
        Self {
            min_ms,
            max_ms,
            failures: 0,
            started: now,
            retry_at: None,
            failed_base: None,
            retx_base: None,
            ok_seen: 0,
            failed_seen: 0,
            jitter: jitter_seed.max(1),
        }
    }

    /// Looks at the session's `state` and the node's `status`; true when the shell should
    /// reconnect now (it then calls [`Self::restarted`]).
    pub fn due(&mut self, now: Instant, state: State, status: &Status) -> bool {
        if status.fetches_ok > self.ok_seen {
            // The session delivers: all is well again.
            self.ok_seen = status.fetches_ok;
            self.failures = 0;
            self.failed_base = Some(status.fetches_failed);
            self.retx_base = Some(status.client.retransmissions);
        }
        if status.fetches_failed > self.failed_seen {
            // An exchange ended (answered with an error, or given up): the next one counts its
            // retransmissions afresh.
            self.failed_seen = status.fetches_failed;
            self.retx_base = Some(status.client.retransmissions);
        }
        if self.retry_at.is_none() {
            let failed = match state {
                State::Failed(_) => true,
                State::Handshaking => {
                    now.0.saturating_sub(self.started.0) >= Self::HANDSHAKE_LIMIT_MS
                }
                State::Established => {
                    let base = *self.failed_base.get_or_insert(status.fetches_failed);
                    let unreachable = matches!(
                        status.link,
                        LinkState::TrngOnly {
                            reason: FallbackReason::Unreachable,
                            ..
                        }
                    );
                    let retx_base = *self.retx_base.get_or_insert(status.client.retransmissions);
                    let silent =
                        status.client.retransmissions >= retx_base + Self::SILENT_RETRANSMISSIONS;
                    silent || (unreachable && status.fetches_failed >= base + Self::SILENT_FAILURES)
                }
            };
            if failed {
                let lost = state == State::Established && self.failures == 0;
                self.failures = self.failures.saturating_add(1);
                let base = if lost {
                    Self::LOST_SESSION_WAIT_MS.min(self.min_ms)
                } else {
                    self.backoff_ms()
                };
                let wait = jittered(base, self.next_random());
                self.retry_at = Some(now.plus_ms(wait));
            }
        }
        self.retry_at.is_some_and(|t| now >= t)
    }

    /// The shell made and started a new session at `now`.
    pub fn restarted(&mut self, now: Instant) {
        self.started = now;
        self.retry_at = None;
        self.failed_base = None;
        self.retx_base = None;
    }

    /// When [`Self::due`] may next turn true by itself (a pending retry or the handshake limit).
    pub fn poll_timeout(&self, state: State) -> Option<Instant> {
        match (self.retry_at, state) {
            (Some(t), _) => Some(t),
            (None, State::Handshaking) => Some(self.started.plus_ms(Self::HANDSHAKE_LIMIT_MS)),
            _ => None,
        }
    }

    /// Failed sessions in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The pending retry, if a failure was counted.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Uniform in `[b/2, 3b/2)`: the mean stays `b`.
    fn next_random(&mut self) -> u32 {
        let mut x = self.jitter;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.jitter = x;
        x
    }

    fn backoff_ms(&self) -> u64 {
        backoff_ms(self.min_ms, self.max_ms, self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DtlsError;
    use qeaas_device::coap::ClientConfig;
    use qeaas_device::node::{Node, Transport};
    use qeaas_device::scheduler::RefreshConfig;
    use qeaas_device::RandomSource;

    struct Zero;
    impl RandomSource for Zero {
        fn next_u32(&mut self) -> u32 {
            0
        }
    }

    fn status() -> Status {
        Node::new(
            Instant(0),
            ClientConfig::default(),
            RefreshConfig::default(),
            Transport::Dtls,
            Zero,
        )
        .status()
    }

    const FAILED: State = State::Failed(DtlsError::Handshake(-1));

    #[test]
    fn failed_handshakes_back_off_doubling_to_the_cap() {
        let mut r = Reconnect::new(Instant(0), 5_000, 20_000, 1);
        let st = status();
        let mut now = Instant(0);
        for b in [5_000, 10_000, 20_000, 20_000] {
            assert!(!r.due(now, FAILED, &st));
            // Jittered around the backoff: within [b/2, 3b/2).
            let wait = r.retry_at().unwrap().0 - now.0;
            assert!((b / 2..b * 3 / 2).contains(&wait), "{wait} for {b}");
            assert!(!r.due(now.plus_ms(wait - 1), FAILED, &st));
            now = now.plus_ms(wait);
            assert!(r.due(now, FAILED, &st));
            r.restarted(now);
        }
        assert_eq!(r.failures(), 4);
    }

    #[test]
    fn an_unanswered_exchange_replaces_the_session_before_it_gives_up() {
        let mut r = Reconnect::new(Instant(0), 5_000, 600_000, 1);
        let mut st = status();
        st.fetches_ok = 1;
        assert!(!r.due(Instant(1_000), State::Established, &st));
        // An exchange that needed one retransmission and was answered: all is well.
        st.client.retransmissions = 1;
        assert!(!r.due(Instant(3_000), State::Established, &st));
        st.fetches_ok = 2;
        assert!(!r.due(Instant(3_100), State::Established, &st));
        // The server restarted: the next request is retransmitted, then again (6-9 s after
        // it was sent), with no answer: the session is replaced long before the ~93 s give-up.
        st.client.retransmissions = 2;
        assert!(!r.due(Instant(63_000), State::Established, &st));
        assert!(r.retry_at().is_none());
        st.client.retransmissions = 3;
        assert!(!r.due(Instant(67_000), State::Established, &st));
        // A session that delivered: replaced within [0.25, 0.75) s, not after the 5 s backoff.
        assert!(r
            .retry_at()
            .is_some_and(|t| (Instant(67_250)..Instant(67_750)).contains(&t)));
        assert!(r.due(Instant(67_750), State::Established, &st));
        r.restarted(Instant(68_500));
        // The new session counts from where the node is now.
        assert!(!r.due(Instant(69_000), State::Established, &st));
        // If it fails too (the server is still down), the backoff is the usual one.
        assert!(!r.due(Instant(69_000), FAILED, &st));
        let wait = r.retry_at().unwrap().0 - 69_000;
        assert!((5_000..15_000).contains(&wait), "{wait}");
    }

    /// The reconnect policy of device `i` of a fleet.
    fn device(i: u32) -> Reconnect {
        Reconnect::new(
            Instant(0),
            5_000,
            600_000,
            0x9e37_79b9 ^ i.wrapping_mul(0x85eb_ca6b),
        )
    }

    /// A fleet powered on together while the server is down (a power cut): when the server
    /// comes back, the devices must not all start their (ML-DSA) handshakes in the same second.
    #[test]
    fn a_fleet_booted_together_does_not_reconnect_in_lockstep() {
        const DEVICES: u32 = 50;
        const SERVER_BACK_MS: u64 = 100_000;
        let st = status();
        let mut per_second = alloc::collections::BTreeMap::<u64, u32>::new();
        for i in 0..DEVICES {
            let mut r = device(i);
            let mut now = Instant(0);
            // Every attempt before the server is back fails at once.
            loop {
                assert!(!r.due(now, FAILED, &st));
                now = r.retry_at().unwrap();
                assert!(r.due(now, FAILED, &st));
                r.restarted(now);
                if now.0 >= SERVER_BACK_MS {
                    break;
                }
            }
            *per_second.entry(now.0 / 1000).or_default() += 1;
        }
        let (second, most) = per_second.iter().max_by_key(|(_, n)| **n).unwrap();
        assert!(
            *most <= DEVICES / 5,
            "{most} of {DEVICES} devices handshook in second {second}"
        );
    }

    #[test]
    fn a_handshake_that_never_ends_is_abandoned() {
        let mut r = Reconnect::new(Instant(0), 5_000, 600_000, 1);
        let st = status();
        assert_eq!(
            r.poll_timeout(State::Handshaking),
            Some(Instant(Reconnect::HANDSHAKE_LIMIT_MS))
        );
        assert!(!r.due(Instant(59_999), State::Handshaking, &st));
        assert!(!r.due(Instant(60_000), State::Handshaking, &st));
        assert!(r.due(Instant(67_500), State::Handshaking, &st));
    }

    #[test]
    fn an_established_session_is_replaced_after_a_silent_fetch_only() {
        let mut r = Reconnect::new(Instant(0), 5_000, 600_000, 1);
        let mut st = status();
        assert!(!r.due(Instant(1), State::Established, &st));
        st.fetches_ok = 3;
        st.fetches_failed = 1;
        st.link = LinkState::TrngOnly {
            reason: FallbackReason::Unreachable,
            failures: 1,
        };
        assert!(
            !r.due(Instant(2), State::Established, &st),
            "a failure before the last success"
        );
        st.fetches_failed = 2;
        st.link = LinkState::TrngOnly {
            reason: FallbackReason::RateLimited,
            failures: 1,
        };
        assert!(
            !r.due(Instant(3), State::Established, &st),
            "4.29 is an answer"
        );
        st.fetches_failed = 3;
        st.link = LinkState::TrngOnly {
            reason: FallbackReason::Unreachable,
            failures: 2,
        };
        // One unanswered fetch since the last success: replace the session after the short wait.
        assert!(!r.due(Instant(4), State::Established, &st));
        assert!(r.retry_at().is_some());
        assert!(r.due(Instant(4 + 750), State::Established, &st));
        r.restarted(Instant(754));
        // The new session starts with the node's old failure count as its base.
        assert!(!r.due(Instant(2_000), State::Established, &st));
    }
}
