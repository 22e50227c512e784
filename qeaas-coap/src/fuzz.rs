//! A harness for fuzzing the request path without sockets: the property tests and the
//! long-running `fuzz-coap` example feed it arbitrary bytes. Not part of the server.
//!
//! Two entry points: [`Harness::coap`] takes a *decrypted* CoAP request and sends it both
//! through [`Endpoint`] directly and through an established DTLS 1.2 PSK session into
//! [`Server`] (parse, route, duplicate cache, fetch, answer); [`Harness::datagram`] hands raw
//! bytes to [`Server::on_datagram`] as if from the network.
//!
//! Blocks are 32 bytes and `max_bytes` 64 here, so `n=33..64` takes the Block2 paths (block 0
//! stored, later blocks, 4.08), and a small quota makes the 4.29 path reachable too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qeaas_client::PoolBytes;

use qeaas_wolfssl_sys::{Context, Progress, Role, Session, Version};

use crate::coap::{Action, Endpoint, Refusal, Unavailable};
use crate::quota::{Limit, Quotas};
use crate::server::{BlockLimits, Limits, Out, Server};

/// A server with one in-memory client, and simulated time.
#[derive(Debug)]
pub struct Harness {
    srv: Server,
    cctx: Context,
    client: Option<Session>,
    addr: SocketAddr,
    endpoint: Endpoint,
    now: Instant,
    /// Responses the client decrypted (a sanity figure for the fuzz loop).
    pub answers: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A server with a PSK identity and small limits.
    pub fn new() -> Harness {
        let mut ctx = Context::new(Role::Server, Version::Any).expect("server context");
        ctx.set_psk_server(HashMap::from([(b"id".to_vec(), b"key".to_vec())]));
        let limits = Limits {
            max_bytes: 64,
            max_sessions: 8,
            max_handshakes: 4,
            idle: Duration::from_secs(30),
            handshake: Duration::from_secs(5),
        };
        let mut cctx = Context::new(Role::Client, Version::Dtls12).expect("client context");
        cctx.set_psk_client(b"id", b"key");
        let mut srv = Server::new(ctx, vec![7; 32], limits);
        srv.set_blocks(BlockLimits {
            szx: 1,
            store_bytes: 256,
            life: Duration::from_secs(5),
        });
        srv.set_quotas(Quotas::new(
            Some(Limit {
                window: Duration::from_secs(10),
                bytes: Some(512),
                requests: Some(6),
            }),
            HashMap::new(),
        ));
        Harness {
            srv,
            cctx,
            client: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
            endpoint: Endpoint::new(64, 1).with_blocks(1, Duration::from_secs(5)),
            now: Instant::now(),
            answers: 0,
        }
    }

    /// Passes server output to the client; fetches are answered at once, alternately with
    /// bytes and with a refusal.
    fn deliver(&mut self, outs: Vec<Out>) {
        let mut queue: std::collections::VecDeque<Out> = outs.into();
        let mut refuse = false;
        while let Some(o) = queue.pop_front() {
            match o {
                Out::Send(to, d) => {
                    if to == self.addr {
                        if let Some(c) = self.client.as_mut() {
                            c.feed(&d);
                        }
                    }
                }
                Out::Fetch(f) => {
                    let n = f.exchange.n;
                    let r = if refuse {
                        Err(Unavailable)
                    } else {
                        Ok(vec![0xa5; n])
                    };
                    refuse = !refuse;
                    queue.extend(self.srv.complete(f, r.map(PoolBytes::from), self.now));
                }
            }
        }
    }

    /// Handshakes the server completed (the client reconnects when an input ends its session).
    pub fn handshakes(&self) -> u64 {
        self.srv.counters().handshakes
    }

    /// Establishes the in-memory client's session if it has none.
    fn connect(&mut self) -> bool {
        if self.client.is_some() && self.srv.peers() > 0 {
            return true;
        }
        // A new source port per session: the old one's state may linger until it expires.
        self.addr
            .set_port(self.addr.port().wrapping_add(1).max(1024));
        let Ok(c) = Session::new(&self.cctx, SocketAddr::from(([127, 0, 0, 1], 5684))) else {
            return false;
        };
        self.client = Some(c);
        for _ in 0..10 {
            let Some(c) = self.client.as_mut() else {
                return false;
            };
            let done = matches!(c.handshake(), Ok(Progress::Done));
            let out: Vec<Vec<u8>> = c.take_datagrams();
            for d in out {
                let o = self.srv.on_datagram(self.addr, &d, self.now);
                self.deliver(o);
            }
            if done {
                return true;
            }
        }
        false
    }

    /// One decrypted CoAP request, through the endpoint alone and through the server.
    pub fn coap(&mut self, plain: &[u8]) {
        self.now += Duration::from_millis(1);
        if self.endpoint.cached(plain, self.now).is_none() && !self.endpoint.is_pending(plain) {
            match self.endpoint.handle(plain, self.now) {
                // Alternately admitted (then answered with its bytes, or too few) and refused.
                Action::Entropy(x) if self.answers % 2 == 0 => {
                    self.endpoint.admit(&x);
                    let n = if plain.len() % 3 == 0 { 8 } else { x.n };
                    let r = self.endpoint.finish(x, Ok(vec![1; n].into()), self.now);
                    self.endpoint.remember(plain, &r, self.now);
                }
                Action::Entropy(x) => {
                    let _ = self
                        .endpoint
                        .refuse(plain, x, Refusal::TooMany(3), self.now);
                }
                Action::Reply(r) => self.endpoint.remember(plain, &r, self.now),
                Action::Ignore => {}
            }
        }
        if !self.connect() {
            return;
        }
        let Some(c) = self.client.as_mut() else {
            return;
        };
        if c.write(plain).is_err() {
            self.client = None;
            return;
        }
        for d in c.take_datagrams() {
            let o = self.srv.on_datagram(self.addr, &d, self.now);
            self.deliver(o);
        }
        let mut buf = vec![0u8; 4096];
        if let Some(c) = self.client.as_mut() {
            while let Ok(Some(_)) = c.read(&mut buf) {
                self.answers += 1;
            }
        }
    }

    /// Raw bytes from the network, from one of a few source ports (one of them the client's).
    pub fn datagram(&mut self, port_pick: u8, data: &[u8]) {
        self.now += Duration::from_millis(1);
        let from = if port_pick % 4 == 0 {
            self.addr
        } else {
            SocketAddr::from(([127, 0, 0, 2], 50000 + u16::from(port_pick % 4)))
        };
        let o = self.srv.on_datagram(from, data, self.now);
        self.deliver(o);
        if port_pick % 16 == 1 {
            // Sometimes time jumps: retransmissions, handshake and idle expiry run.
            self.now += Duration::from_secs(u64::from(port_pick));
            let o = self.srv.on_tick(self.now);
            self.deliver(o);
        }
    }
}
