//! A stable-Rust mutation fuzzer for the CoAP request path (see [`qeaas_coap::fuzz`]): seeds
//! are well-formed requests and real ClientHellos; each round mutates one (bit flips, byte
//! writes, inserts, deletes, splices, truncation) and feeds it as a decrypted request and as
//! a raw datagram. A panic saves the input under `--out` and stops with exit 1; a crash in C
//! kills the process (the script reports the exit status).
//!
//! `cargo run --release -p qeaas-coap --example fuzz-coap -- --seconds 600 --out target/fuzz-coap`
#![forbid(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use qeaas_coap::fuzz::Harness;
use qeaas_wolfssl_sys::{Context, Group, Role, Session, Version};

#[derive(Parser)]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Where crashing inputs are written.
    #[arg(long, default_value = "target/fuzz-coap")]
    out: PathBuf,
    /// PRNG seed (default: from the clock); printed so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
}

/// xorshift64*: enough for choosing mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn request(t: MessageType, m: RequestType, path: &[&str], query: &[&str], token: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(t);
    p.header.code = MessageClass::Request(m);
    p.header.message_id = 0x1234;
    p.set_token(token.to_vec());
    for s in path {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p.add_option(CoapOption::Accept, vec![42]);
    p.to_bytes().expect("seed encodes")
}

fn seeds() -> Vec<Vec<u8>> {
    use MessageType::*;
    use RequestType::*;
    let mut v = vec![
        request(Confirmable, Get, &["entropy"], &[], &[1]),
        request(Confirmable, Get, &["entropy"], &["n=64"], &[1, 2, 3, 4]),
        request(NonConfirmable, Get, &["entropy"], &["n=1", "x=y"], &[]),
        request(Confirmable, Get, &[".well-known", "core"], &[], &[9; 8]),
        request(Confirmable, Post, &["entropy"], &[], &[1]),
        request(Confirmable, Get, &["nothing"], &["n=99999"], &[1]),
        vec![0x40, 0x01, 0x00, 0x01],
        vec![0x60, 0x00, 0x00, 0x01],
    ];
    // Real first flights: a DTLS 1.2 PSK and a DTLS 1.3 ML-KEM-512 ClientHello.
    for (ver, g) in [
        (Version::Dtls12, None),
        (Version::Dtls13, Some(Group::MlKem512)),
    ] {
        let mut c = Context::new(Role::Client, ver).expect("client context");
        c.set_psk_client(b"id", b"key");
        let mut s = Session::new(&c, "127.0.0.1:5684".parse().expect("addr")).expect("session");
        if let Some(g) = g {
            s.use_key_share(g).expect("key share");
        }
        let _ = s.handshake();
        v.extend(s.take_datagrams());
    }
    v
}

fn mutate(r: &mut Rng, seeds: &[Vec<u8>], corpus: &[Vec<u8>]) -> Vec<u8> {
    let pick = |r: &mut Rng| {
        if corpus.is_empty() || r.below(2) == 0 {
            seeds[r.below(seeds.len())].clone()
        } else {
            corpus[r.below(corpus.len())].clone()
        }
    };
    let mut d = pick(r);
    for _ in 0..1 + r.below(8) {
        let len = d.len();
        match r.below(8) {
            0 if len > 0 => {
                let i = r.below(len);
                d[i] ^= 1 << r.below(8);
            }
            1 if len > 0 => {
                let i = r.below(len);
                // Interesting bytes: boundaries of CoAP's option nibbles and lengths.
                d[i] = [0, 0xff, 0x0d, 0x0e, 0x0f, 0xd0, 0xe0, 0xf0, 0x7f, 0x80][r.below(10)];
            }
            2 => {
                let i = r.below(len + 1);
                d.insert(i, r.next() as u8);
            }
            3 if len > 0 => {
                let i = r.below(len);
                let n = r.below(len - i + 1);
                d.drain(i..i + n);
            }
            4 => d.truncate(r.below(len + 1)),
            5 => {
                let other = pick(r);
                let i = r.below(other.len() + 1);
                d.extend_from_slice(&other[i..]);
            }
            6 if len > 0 => {
                let i = r.below(len);
                let n = r.below((len - i).min(64) + 1);
                let chunk = d[i..i + n].to_vec();
                let at = r.below(d.len() + 1);
                d.splice(at..at, chunk);
            }
            _ if len > 0 => {
                let i = r.below(len);
                d[i] = r.next() as u8;
            }
            _ => d.push(r.next() as u8),
        }
    }
    d.truncate(1400);
    d
}

fn main() {
    let a = Args::parse();
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    let mut r = Rng(seed);
    let seeds = seeds();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    // Quiet: a panic is reported below with its input, not by the default hook per execution.
    std::panic::set_hook(Box::new(|_| {}));
    let mut h = Harness::new();
    let (start, end) = (
        Instant::now(),
        Instant::now() + Duration::from_secs(a.seconds),
    );
    let mut last = start;
    let mut execs: u64 = 0;
    let mut answers: u64 = 0;
    let mut handshakes: u64 = 0;
    println!(
        "fuzz-coap: seed {seed}, {} seeds, {} s",
        seeds.len(),
        a.seconds
    );
    while Instant::now() < end {
        let input = mutate(&mut r, &seeds, &corpus);
        let as_datagram = r.below(4) == 0;
        let port = r.next() as u8;
        let res = catch_unwind(AssertUnwindSafe(|| {
            if as_datagram {
                h.datagram(port, &input);
            } else {
                h.coap(&input);
            }
        }));
        execs += 1;
        if res.is_err() {
            std::fs::create_dir_all(&a.out).expect("create --out");
            let f = a.out.join(format!("crash-{execs}.bin"));
            std::fs::write(&f, &input).expect("write crash input");
            println!(
                "fuzz-coap: PANIC after {execs} executions ({}), input saved to {}",
                if as_datagram { "datagram" } else { "coap" },
                f.display()
            );
            std::process::exit(1);
        }
        // Keep some mutants as parents: a crude stand-in for coverage feedback.
        if execs % 64 == 0 && corpus.len() < 4096 {
            corpus.push(input);
        }
        // A fresh server now and then, so state built up by one input cannot mask others.
        if execs % 20_000 == 0 {
            answers += h.answers;
            handshakes += h.handshakes();
            h = Harness::new();
        }
        if last.elapsed() >= Duration::from_secs(30) {
            last = Instant::now();
            println!(
                "fuzz-coap: {execs} executions, {:.0}/s, {} answers decrypted by the client",
                execs as f64 / start.elapsed().as_secs_f64(),
                answers + h.answers
            );
        }
    }
    println!(
        "fuzz-coap: done: {execs} executions in {:.0} s ({:.0}/s), {} answers decrypted, {} handshakes, 0 panics, seed {seed}",
        start.elapsed().as_secs_f64(),
        execs as f64 / start.elapsed().as_secs_f64(),
        answers + h.answers,
        handshakes + h.handshakes()
    );
}
