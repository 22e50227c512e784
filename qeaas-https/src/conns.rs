//! Which client connections to close, sans-IO: one idle (no request in flight) for
//! `idle_timeout`, and, when every connection slot is taken, the one idle longest, so that idle
//! connections can never lock a new client out. The caller passes `now` (time since any fixed
//! origin) and closes what it is told to.

use std::collections::HashMap;
use std::time::Duration;

/// Open client connections and whether each has a request in flight.
#[derive(Debug, Default)]
pub struct Conns {
    next: u64,
    open: HashMap<u64, Conn>,
}

#[derive(Debug)]
struct Conn {
    in_flight: u32,
    /// When the last request ended (or the connection opened).
    idle_since: Duration,
}

impl Conns {
    /// A new connection; its id.
    pub fn open(&mut self, now: Duration) -> u64 {
        self.next += 1;
        self.open.insert(
            self.next,
            Conn {
                in_flight: 0,
                idle_since: now,
            },
        );
        self.next
    }

    /// The connection is gone.
    pub fn close(&mut self, id: u64) {
        self.open.remove(&id);
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// A request began on `id`.
    pub fn request_started(&mut self, id: u64) {
        if let Some(c) = self.open.get_mut(&id) {
            c.in_flight += 1;
        }
    }

    /// A request on `id` ended (answered, or abandoned by the client).
    pub fn request_ended(&mut self, id: u64, now: Duration) {
        if let Some(c) = self.open.get_mut(&id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.in_flight == 0 {
                c.idle_since = now;
            }
        }
    }

    /// Whether `id` has had no request in flight for `timeout` (and should be closed).
    pub fn idle_for(&self, id: u64, timeout: Duration, now: Duration) -> bool {
        self.open
            .get(&id)
            .is_some_and(|c| c.in_flight == 0 && now.saturating_sub(c.idle_since) >= timeout)
    }

    /// The connection idle longest, to close when a new client needs its slot; `None` when
    /// every connection has a request in flight.
    pub fn longest_idle(&self) -> Option<u64> {
        self.open
            .iter()
            .filter(|(_, c)| c.in_flight == 0)
            .min_by_key(|(id, c)| (c.idle_since, **id))
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn idle_timeout_counts_from_the_last_request() {
        let mut c = Conns::default();
        let a = c.open(s(0));
        assert!(!c.idle_for(a, s(30), s(29)));
        assert!(c.idle_for(a, s(30), s(30)));
        c.request_started(a);
        // A request in flight is never idle, however long it takes.
        assert!(!c.idle_for(a, s(30), s(100)));
        c.request_started(a);
        c.request_ended(a, s(100));
        assert!(!c.idle_for(a, s(30), s(200)));
        c.request_ended(a, s(200));
        assert!(!c.idle_for(a, s(30), s(229)));
        assert!(c.idle_for(a, s(30), s(230)));
        c.close(a);
        assert!(!c.idle_for(a, s(30), s(1000)));
        assert!(c.is_empty());
    }

    #[test]
    fn the_longest_idle_connection_makes_room() {
        let mut c = Conns::default();
        let a = c.open(s(0));
        let b = c.open(s(1));
        let d = c.open(s(2));
        assert_eq!(c.longest_idle(), Some(a));
        c.request_started(a);
        assert_eq!(c.longest_idle(), Some(b));
        c.request_started(b);
        c.request_started(d);
        assert_eq!(c.longest_idle(), None, "all busy: nothing to close");
        c.request_ended(b, s(10));
        assert_eq!(c.longest_idle(), Some(b));
        assert_eq!(c.len(), 3);
    }
}
