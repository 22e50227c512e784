//! Who gets the local socket and the pool when they are scarce, sans-IO: per-uid connection caps
//! with a fair share of the connection table ([`Admission`]), byte-fair shares of the ready bytes
//! between uids ([`FairShare`]), and the kernel feeder's reserve (bytes no client can take).
//!
//! Nothing here reads a clock or touches a socket: the socket server asks and obeys, and the
//! tests step it by hand.

use std::collections::{BTreeMap, HashMap};

/// A connection, as [`Admission`] knows it.
pub type ConnId = u64;

/// Connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections one uid may hold at once.
    pub per_uid: usize,
    /// Connections in all (kept below the process's file descriptor limit).
    pub total: usize,
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnRefusal {
    /// The uid already holds its cap.
    PerUid,
    /// The table is full, and the uid already holds its fair share of it (or nobody holding
    /// more than theirs is idle).
    Full,
}

impl ConnRefusal {
    /// Stable label for metrics and logs.
    pub const fn label(self) -> &'static str {
        match self {
            ConnRefusal::PerUid => "per_uid_cap",
            ConnRefusal::Full => "table_full",
        }
    }
}

/// What to do with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Serve it, as `id`.
    Accept(ConnId),
    /// Serve it as `id`, and close the idle connection `evict` to make room.
    AcceptEvicting {
        /// The new connection.
        id: ConnId,
        /// An idle connection of the uid holding the most.
        evict: ConnId,
    },
    /// Close it at once.
    Refuse(ConnRefusal),
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    uid: u32,
    /// Idle (between requests) since this admission sequence number; `None` while a request
    /// is being read or served.
    idle_since: Option<u64>,
}

/// The connection table: at most `per_uid` connections per uid and `total` in all. When the
/// table is full, a uid holding less than its fair share (`total` / uids present) still gets in,
/// by closing the longest-idle connection of the uid holding the most. So one uid, or a handful,
/// can never lock the others out, however many connections they open.
#[derive(Debug)]
pub struct Admission {
    limits: ConnLimits,
    conns: HashMap<ConnId, Conn>,
    by_uid: HashMap<u32, usize>,
    next: u64,
}

impl Admission {
    /// An empty table.
    pub fn new(limits: ConnLimits) -> Self {
        Self {
            limits,
            conns: HashMap::new(),
            by_uid: HashMap::new(),
            next: 0,
        }
    }

    /// Connections held now.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True when no connection is held.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connections `uid` holds now.
    pub fn held_by(&self, uid: u32) -> usize {
        self.by_uid.get(&uid).copied().unwrap_or(0)
    }

    /// Decides on a new connection from `uid`. An accepted connection starts idle.
    pub fn admit(&mut self, uid: u32) -> Admit {
        let held = self.held_by(uid);
        if held >= self.limits.per_uid {
            return Admit::Refuse(ConnRefusal::PerUid);
        }
        if self.conns.len() < self.limits.total {
            return Admit::Accept(self.insert(uid));
        }
        let uids = self.by_uid.len() + usize::from(held == 0);
        let fair = (self.limits.total / uids.max(1)).max(1);
        if held >= fair {
            return Admit::Refuse(ConnRefusal::Full);
        }
        // The uid holding the most (above its fair share), and its longest-idle connection.
        let Some((&big, _)) = self
            .by_uid
            .iter()
            .filter(|(&u, &n)| u != uid && n > fair)
            .max_by_key(|(&u, &n)| (n, std::cmp::Reverse(u)))
        else {
            return Admit::Refuse(ConnRefusal::Full);
        };
        let Some((&evict, _)) = self
            .conns
            .iter()
            .filter_map(|(id, c)| Some((id, c.idle_since?)).filter(|_| c.uid == big))
            .min_by_key(|(id, since)| (*since, **id))
        else {
            return Admit::Refuse(ConnRefusal::Full);
        };
        self.release(evict);
        Admit::AcceptEvicting {
            id: self.insert(uid),
            evict,
        }
    }

    fn insert(&mut self, uid: u32) -> ConnId {
        let id = self.next;
        self.next += 1;
        self.conns.insert(
            id,
            Conn {
                uid,
                idle_since: Some(id),
            },
        );
        *self.by_uid.entry(uid).or_default() += 1;
        id
    }

    /// The connection started a request: it may not be evicted until [`Admission::idle`].
    pub fn busy(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.idle_since = None;
        }
    }

    /// The connection finished a request and waits for the next.
    pub fn idle(&mut self, id: ConnId) {
        let seq = self.next;
        self.next += 1;
        if let Some(c) = self.conns.get_mut(&id) {
            c.idle_since = Some(seq);
        }
    }

    /// The connection closed (or was evicted). Unknown ids are ignored.
    pub fn release(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            if let Some(n) = self.by_uid.get_mut(&c.uid) {
                *n -= 1;
                if *n == 0 {
                    self.by_uid.remove(&c.uid);
                }
            }
        }
    }
}

/// A request waiting for bytes.
pub type Ticket = u64;

#[derive(Clone, Copy, Debug)]
struct Waiting {
    uid: u32,
    len: usize,
    start: u64,
    finish: u64,
}

/// Byte-fair sharing of scarce ready bytes between uids (weighted fair queueing by finish tags,
/// equal weights). A request of `len` bytes from `uid` gets the virtual start
/// `max(V, last finish of uid)` and finish `start + len`; waiting requests are granted in the
/// order of their finish tags, each only when the bytes for it are there (a large request is
/// never starved by small ones: nothing overtakes the request with the smallest finish tag). A uid
/// that has been idle starts at the current virtual time `V`, so it cannot bank a share. With two
/// uids asking as fast as they can, each gets half of the bytes, however many connections or
/// requests either has in flight.
#[derive(Debug, Default)]
pub struct FairShare {
    queue: BTreeMap<(u64, Ticket), Waiting>,
    tags: HashMap<Ticket, u64>,
    last_finish: HashMap<u32, u64>,
    virtual_time: u64,
    next: Ticket,
}

impl FairShare {
    /// Nobody waiting.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no request waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues a request of `len` bytes from `uid`.
    pub fn submit(&mut self, uid: u32, len: usize) -> Ticket {
        let id = self.next;
        self.next += 1;
        let start = self
            .virtual_time
            .max(self.last_finish.get(&uid).copied().unwrap_or(0));
        let finish = start + len as u64;
        self.last_finish.insert(uid, finish);
        self.queue.insert(
            (finish, id),
            Waiting {
                uid,
                len,
                start,
                finish,
            },
        );
        self.tags.insert(id, finish);
        id
    }

    /// The request first in line, if any: only it may be served next.
    pub fn head(&self) -> Option<Ticket> {
        self.queue.keys().next().map(|&(_, id)| id)
    }

    /// The next request to serve with `available` bytes: removed from the queue, with its
    /// length. `None` when nobody waits or the first in line needs more than `available`.
    pub fn grant(&mut self, available: usize) -> Option<(Ticket, usize)> {
        let (&(finish, id), w) = self.queue.iter().next()?;
        if w.len > available {
            return None;
        }
        let w = *w;
        self.queue.remove(&(finish, id));
        self.tags.remove(&id);
        self.virtual_time = self.virtual_time.max(w.start);
        if self.queue.is_empty() {
            // Nobody is behind: forget history, so the numbers stay small.
            self.forget();
        }
        Some((id, w.len))
    }

    /// Withdraws a waiting request (its client gave up or left); its place in its uid's line is
    /// given back when it was the last. Unknown or granted tickets are ignored.
    pub fn cancel(&mut self, id: Ticket) {
        let Some(finish) = self.tags.remove(&id) else {
            return;
        };
        if let Some(w) = self.queue.remove(&(finish, id)) {
            if self.last_finish.get(&w.uid) == Some(&w.finish) {
                self.last_finish.insert(w.uid, w.start);
            }
        }
        if self.queue.is_empty() {
            self.forget();
        }
    }

    fn forget(&mut self) {
        self.last_finish.clear();
        self.virtual_time = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_uid_is_capped_and_others_still_get_in() {
        let mut a = Admission::new(ConnLimits {
            per_uid: 3,
            total: 10,
        });
        for _ in 0..3 {
            assert!(matches!(a.admit(1000), Admit::Accept(_)));
        }
        for _ in 0..2000 {
            assert_eq!(a.admit(1000), Admit::Refuse(ConnRefusal::PerUid));
        }
        assert!(matches!(a.admit(1001), Admit::Accept(_)));
        assert_eq!((a.len(), a.held_by(1000)), (4, 3));
    }

    #[test]
    fn a_full_table_makes_room_for_a_uid_below_its_fair_share() {
        let mut a = Admission::new(ConnLimits {
            per_uid: 8,
            total: 8,
        });
        let ids: Vec<ConnId> = (0..8)
            .map(|_| match a.admit(1) {
                Admit::Accept(id) => id,
                o => panic!("{o:?}"),
            })
            .collect();
        // uid 1 holds all 8; the fair share with two uids is 4. The longest-idle goes first,
        // and a connection in the middle of a request is never evicted.
        a.busy(ids[0]);
        a.idle(ids[0]);
        a.busy(ids[1]);
        for want in [ids[2], ids[3], ids[4], ids[5]] {
            assert!(matches!(a.admit(2), Admit::AcceptEvicting { evict, .. } if evict == want));
        }
        // uid 2 now holds its fair share (4): no more.
        assert_eq!(a.admit(2), Admit::Refuse(ConnRefusal::Full));
        // uid 1 holds 4 (= fair share with 2 uids): a third uid still gets in (fair share 2),
        // from whichever holds more than that.
        assert!(matches!(a.admit(3), Admit::AcceptEvicting { .. }));
        assert_eq!(a.len(), 8);
        assert!(a.held_by(1) + a.held_by(2) == 7 && a.held_by(3) == 1);
    }

    #[test]
    fn a_full_table_of_busy_connections_refuses() {
        let mut a = Admission::new(ConnLimits {
            per_uid: 4,
            total: 4,
        });
        for _ in 0..4 {
            let Admit::Accept(id) = a.admit(1) else {
                panic!()
            };
            a.busy(id);
        }
        assert_eq!(a.admit(2), Admit::Refuse(ConnRefusal::Full));
        a.release(0);
        assert!(matches!(a.admit(2), Admit::Accept(_)));
        a.release(99);
        assert_eq!(a.len(), 4);
    }

    /// Two uids keeping requests in flight: one with 32 connections of 64-byte requests, the
    /// other with one: each gets half the bytes.
    #[test]
    fn two_greedy_uids_get_equal_shares_whatever_their_concurrency() {
        let mut f = FairShare::new();
        let mut owner = HashMap::new();
        for _ in 0..32 {
            owner.insert(f.submit(1, 64), 1u32);
        }
        owner.insert(f.submit(2, 64), 2);
        let mut got: HashMap<u32, usize> = HashMap::new();
        // Bytes arrive 32 at a time; each served request is resubmitted at once.
        let mut available = 0;
        for _ in 0..10_000 {
            available += 32;
            while let Some((t, len)) = f.grant(available) {
                available -= len;
                let uid = owner.remove(&t).unwrap();
                *got.entry(uid).or_default() += len;
                owner.insert(f.submit(uid, len), uid);
            }
        }
        let (a, b) = (got[&1] as f64, got[&2] as f64);
        assert!((a / b - 1.0).abs() < 0.01, "{got:?}");
    }

    #[test]
    fn a_small_and_a_large_requester_share_bytes_not_requests() {
        let mut f = FairShare::new();
        let mut owner = HashMap::new();
        owner.insert(f.submit(1, 4096), 1u32);
        for _ in 0..4 {
            owner.insert(f.submit(2, 32), 2);
        }
        let mut got: HashMap<u32, usize> = HashMap::new();
        let mut available = 0;
        for _ in 0..100_000 {
            available += 16;
            while let Some((t, len)) = f.grant(available) {
                available -= len;
                let uid = owner.remove(&t).unwrap();
                *got.entry(uid).or_default() += len;
                owner.insert(f.submit(uid, len), uid);
            }
        }
        let (a, b) = (got[&1] as f64, got[&2] as f64);
        assert!(
            (a / b - 1.0).abs() < 0.05,
            "the large one is not starved: {got:?}"
        );
    }

    #[test]
    fn an_idle_uid_cannot_bank_a_share_and_cancels_give_back_their_place() {
        let mut f = FairShare::new();
        // uid 1 alone for a long time, always with a request waiting.
        f.submit(1, 64);
        for _ in 0..100 {
            f.submit(1, 64);
            assert!(f.grant(64).is_some());
        }
        // uid 2 arrives: it starts at the present, not at zero, so it does not get the next
        // hundred grants in a row; they alternate.
        let mut owner = HashMap::new();
        owner.insert(f.submit(2, 64), 2u32);
        let mut order = Vec::new();
        for _ in 0..6 {
            let (t, _) = f.grant(64).unwrap();
            let uid = owner.remove(&t).unwrap_or(1);
            order.push(uid);
            owner.insert(f.submit(uid, 64), uid);
        }
        let twos = order.iter().filter(|&&u| u == 2).count();
        assert!((2..=4).contains(&twos), "{order:?}");
        // A withdrawn request leaves nothing behind.
        let mut f = FairShare::new();
        let t = f.submit(3, 100);
        f.cancel(t);
        f.cancel(t);
        assert!(f.is_empty());
        assert_eq!(f.grant(1000), None);
    }

    #[test]
    fn the_first_in_line_is_never_overtaken() {
        let mut f = FairShare::new();
        let big = f.submit(1, 1000);
        // uid 2's small requests finish first in virtual time until uid 2 has had as many
        // bytes as the large request asks for: byte-fair, not request-fair.
        let mut served = 0;
        let mut small = f.submit(2, 10);
        while served < 990 {
            assert_eq!(f.head(), Some(small));
            assert_eq!(f.grant(999), Some((small, 10)));
            served += 10;
            small = f.submit(2, 10);
        }
        // Now the large one is first: a small request that would fit does not overtake it.
        assert_eq!(f.head(), Some(big));
        assert_eq!(f.grant(999), None);
        assert_eq!(f.grant(1000), Some((big, 1000)));
        assert_eq!(f.grant(10), Some((small, 10)));
    }
}
