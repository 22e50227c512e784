//! qeaas-httpsd's request handling without sockets (`qeaas_https::api`): any request (method,
//! path, query, headers, body, client address) at any time is planned without a panic, a
//! refusal is an HTTP error, what is admitted stays within the client's quota, and the replies
//! built from a plan (pollen, JSON, health) are well formed.
//!
//! Input: fields separated by 0xff bytes: method, path, query, Authorization, Accept, body,
//! daemon status text; the first two bytes pick the client address and the time step.
#![no_main]

use std::net::IpAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use qeaas_https::api::{self, Clients, Plan, Request};
use qeaas_https::config::Config;

/// SHA-256 of the token `t`: the one client, with a 200-byte quota.
const CONFIG: &str = "listen = \"127.0.0.1:1\"\n[pollen]\nrate_per_sec = 50.0\nburst = 5\n\
per_address_burst = 3\n[[client]]\nname = \"f\"\n\
token_sha256 = \"e3b98a4da31a127d4bde6e43033f66ba274cab0eb7eb1c70ec41402bf6273dd8\"\n\
quota_bytes = 200\nrate_per_sec = 5\nburst = 4\n";
const QUOTA: u64 = 200;

fuzz_target!(|data: &[u8]| {
    let [addr, step, data @ ..] = data else { return };
    let mut fields = data.split(|&b| b == 0xff);
    let mut next = || fields.next().unwrap_or(b"");
    let method = std::str::from_utf8(next()).unwrap_or("GET");
    let path = std::str::from_utf8(next()).unwrap_or("/");
    let query = std::str::from_utf8(next()).ok().filter(|q| !q.is_empty());
    let auth = next();
    let accept = next();
    let body = next();
    let status = std::str::from_utf8(next()).ok();
    let cfg = Config::parse(CONFIG).expect("fuzz config");
    let mut clients = Clients::new(&cfg, Duration::ZERO);
    let peer = IpAddr::from([10, 0, 0, addr % 4]);
    let req = Request {
        method,
        path,
        query,
        authorization: (!auth.is_empty()).then_some(auth),
        accept: (!accept.is_empty()).then_some(accept),
        body: &body[..body.len().min(api::MAX_BODY)],
        peer,
    };
    let mut admitted = 0u64;
    let mut now = Duration::ZERO;
    for i in 0..8u32 {
        now += Duration::from_millis(u64::from(*step) * 10);
        match clients.plan(&req, now) {
            Plan::Reply(r) => assert!((400..600).contains(&r.status), "{}", r.status),
            Plan::Pollen { challenge } => {
                assert!(!challenge.is_empty());
                let r = api::pollen_reply(&challenge, &[0x5a; api::POLLEN_BYTES as usize]);
                assert_eq!((r.status, r.body.len()), (200, 258));
            }
            Plan::Entropy {
                client,
                bytes,
                raw,
                reservation,
            } => {
                assert!((1..=cfg.max_bytes).contains(&bytes));
                assert_eq!(reservation.bytes(), u64::from(bytes));
                let r = api::entropy_reply(&vec![0xa5; usize::from(bytes)], raw);
                assert_eq!(r.status, 200);
                if i % 3 == 2 {
                    // The daemon failed this one: the bytes go back.
                    clients.refund(client, reservation);
                } else {
                    admitted += u64::from(bytes);
                }
                // Within one quota period (a day), never more than the quota.
                assert!(admitted <= QUOTA, "{admitted} bytes admitted on a {QUOTA}-byte quota");
            }
            Plan::Health => {
                let r = api::health_reply(status);
                assert!(r.status == 200 || r.status == 503);
            }
        }
    }
});
