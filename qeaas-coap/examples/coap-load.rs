//! Load generator for CoAP over DTLS 1.2 PSK servers (qeaas-coapd, libcoap's coap-server):
//! opens `--sessions` DTLS sessions, waits until every one is established, then keeps
//! `--pipeline` confirmable GETs in flight on each for `--seconds`, and prints the rate and the
//! latency of the answers. The same binary drives every server in `scripts/bench-coap.sh`.
//!
//! `cargo run --release -p qeaas-coap --example coap-load -- --target 127.0.0.1:5684 --id device-1 --key KEY`
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use qeaas_wolfssl_sys::{Context, Progress, Role, Session, Version};
use tokio::net::UdpSocket;

#[derive(Parser)]
#[command(about = "CoAP over DTLS 1.2 PSK load generator")]
struct Args {
    /// Server address.
    #[arg(long)]
    target: SocketAddr,
    /// PSK identity.
    #[arg(long)]
    id: String,
    /// PSK (text, as libcoap's -k).
    #[arg(long)]
    key: String,
    /// Resource path, slash-separated (query after '?').
    #[arg(long, default_value = "entropy")]
    path: String,
    /// Concurrent DTLS sessions.
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    /// Requests in flight per session.
    #[arg(long, default_value_t = 4)]
    pipeline: usize,
    /// Measurement time, after every session is established.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Payload length every answer must have (others count as bad).
    #[arg(long, default_value_t = 32)]
    expect_len: usize,
    /// wolfSSL cipher list; the default is CoAP's mandatory DTLS 1.2 PSK suite (RFC 7252
    /// 9.1.3.1), so that every server is measured on the same one.
    #[arg(long, default_value = "PSK-AES128-CCM-8")]
    ciphers: String,
    /// A label for the result line.
    #[arg(long, default_value = "server")]
    label: String,
}

#[derive(Default)]
struct Tally {
    /// Microseconds from first send to a good answer.
    latencies: Vec<u32>,
    /// Answers that were not 2.05 with `expect_len` bytes.
    bad: u64,
    /// Requests re-sent after 2 s without an answer.
    retransmits: u64,
}

fn request(mid: u16, path: &str) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query.split('&').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p.to_bytes().expect("a small request encodes")
}

struct Conn {
    sock: UdpSocket,
    s: Session,
}

impl Conn {
    async fn flush(&mut self) -> std::io::Result<()> {
        for d in self.s.take_datagrams() {
            self.sock.send(&d).await?;
        }
        Ok(())
    }

    async fn connect(a: &Args) -> Result<Conn, String> {
        let sock = UdpSocket::bind(if a.target.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        })
        .await
        .map_err(|e| e.to_string())?;
        sock.connect(a.target).await.map_err(|e| e.to_string())?;
        let mut ctx = Context::new(Role::Client, Version::Dtls12).map_err(|e| e.to_string())?;
        ctx.set_psk_client(a.id.as_bytes(), a.key.as_bytes());
        ctx.set_cipher_list(&a.ciphers).map_err(|e| e.to_string())?;
        let s = Session::new(&ctx, a.target).map_err(|e| e.to_string())?;
        let mut c = Conn { sock, s };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 4096];
        loop {
            let p = c.s.handshake().map_err(|e| e.to_string())?;
            c.flush().await.map_err(|e| e.to_string())?;
            if p == Progress::Done {
                return Ok(c);
            }
            if Instant::now() > deadline {
                return Err("handshake timed out".into());
            }
            match tokio::time::timeout(Duration::from_secs(1), c.sock.recv(&mut buf)).await {
                Ok(Ok(n)) => c.s.feed(&buf[..n]),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => c.s.on_timeout().map_err(|e| e.to_string())?,
            }
        }
    }

    /// Keeps `pipeline` requests in flight until `end`.
    async fn run(mut self, a: Rc<Args>, seed: u16, end: Instant, tally: Rc<RefCell<Tally>>) {
        let mut next = seed;
        // (message id, first sent, last sent, encoded request)
        let mut inflight: Vec<(u16, Instant, Instant, Vec<u8>)> = Vec::new();
        let mut buf = vec![0u8; 4096];
        let mut plain = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            if now >= end {
                return;
            }
            while inflight.len() < a.pipeline {
                let r = request(next, &a.path);
                if self.s.write(&r).is_err() {
                    return;
                }
                inflight.push((next, now, now, r));
                next = next.wrapping_add(1);
            }
            for f in inflight.iter_mut() {
                if now.duration_since(f.2) > Duration::from_secs(2) {
                    tally.borrow_mut().retransmits += 1;
                    f.2 = now;
                    if self.s.write(&f.3).is_err() {
                        return;
                    }
                }
            }
            if self.flush().await.is_err() {
                return;
            }
            let wait = end
                .saturating_duration_since(now)
                .min(Duration::from_millis(500));
            let n = match tokio::time::timeout(wait, self.sock.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => return,
                Err(_) => continue,
            };
            self.s.feed(&buf[..n]);
            loop {
                match self.s.read(&mut plain) {
                    Ok(Some(n)) => {
                        let Ok(p) = Packet::from_bytes(&plain[..n]) else {
                            tally.borrow_mut().bad += 1;
                            continue;
                        };
                        let mid = p.header.message_id;
                        let Some(i) = inflight.iter().position(|f| f.0 == mid) else {
                            continue; // a late duplicate answer
                        };
                        let f = inflight.swap_remove(i);
                        let mut t = tally.borrow_mut();
                        if p.header.code == MessageClass::Response(ResponseType::Content)
                            && p.payload.len() == a.expect_len
                        {
                            let us = Instant::now().duration_since(f.1).as_micros();
                            t.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                        } else {
                            t.bad += 1;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
}

fn main() {
    let a = Rc::new(Args::parse());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut conns = Vec::new();
        // A few handshakes at a time: the servers cap handshakes in flight.
        for chunk in (0..a.sessions).collect::<Vec<_>>().chunks(8) {
            let hs: Vec<_> = chunk
                .iter()
                .map(|_| {
                    let a = a.clone();
                    tokio::task::spawn_local(async move { Conn::connect(&a).await })
                })
                .collect();
            for h in hs {
                match h.await.expect("handshake task") {
                    Ok(c) => conns.push(c),
                    Err(e) => {
                        eprintln!("coap-load: {}: handshake failed: {e}", a.label);
                        std::process::exit(1);
                    }
                }
            }
        }
        let tally = Rc::new(RefCell::new(Tally::default()));
        let start = Instant::now();
        let end = start + Duration::from_secs(a.seconds);
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                tokio::task::spawn_local(c.run(
                    a.clone(),
                    (i as u16).wrapping_mul(4099),
                    end,
                    tally.clone(),
                ))
            })
            .collect();
        for t in tasks {
            t.await.expect("session task");
        }
        let secs = start.elapsed().as_secs_f64();
        let mut t = tally.borrow_mut();
        t.latencies.sort_unstable();
        let n = t.latencies.len();
        let mean = t.latencies.iter().map(|&l| f64::from(l)).sum::<f64>() / n.max(1) as f64;
        let p = |q: f64| {
            t.latencies
                .get(((n as f64 * q) as usize).min(n.saturating_sub(1)))
                .map_or(0.0, |&l| f64::from(l) / 1000.0)
        };
        println!(
            "{}\tsessions={}\tpipeline={}\tok={}\treq/s={:.0}\tmean_ms={:.3}\tp50_ms={:.3}\tp99_ms={:.3}\tbad={}\tretransmits={}",
            a.label,
            a.sessions,
            a.pipeline,
            n,
            n as f64 / secs,
            mean / 1000.0,
            p(0.5),
            p(0.99),
            t.bad,
            t.retransmits
        );
        if n == 0 {
            std::process::exit(1);
        }
    });
}
