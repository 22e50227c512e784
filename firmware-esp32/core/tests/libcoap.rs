//! Interop: the device's CoAP client against a real peer, libcoap's example server
//! (`coap-server-gnutls` from Debian's libcoap3-bin, installed by scripts/setup-debian.sh), over
//! real UDP on loopback. Its `/example_data` resource serves whatever was PUT into it, block-wise
//! when asked.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as StdInstant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use qeaas_device::coap::{ClientConfig, ClientStats, EntropyClient, FetchError, Outcome};
use qeaas_device::{Instant, RandomSource};

struct Counter(u32);

impl RandomSource for Counter {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0
    }
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary() -> &'static str {
    for b in ["coap-server-gnutls", "coap-server-openssl", "coap-server"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return b;
        }
    }
    panic!(
        "libcoap's coap-server is missing: apt-get install libcoap3-bin (scripts/setup-debian.sh)"
    );
}

fn start_server() -> Server {
    // A free port: bind, read it, release it for the server.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(server_binary())
        .args(["-A", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn coap-server");
    Server { child, port }
}

/// Runs one fetch of `cfg` against the server, with the real clock, until it finishes.
fn fetch(port: u16, cfg: ClientConfig) -> (Outcome, ClientStats) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", port)).unwrap();
    let origin = StdInstant::now();
    let now = || Instant(origin.elapsed().as_millis() as u64);
    let mut c = EntropyClient::new(cfg, Counter(port.into()));
    c.start(now()).unwrap();
    let mut buf = [0u8; 1500];
    loop {
        while let Some(d) = c.poll_transmit() {
            sock.send(&d).unwrap();
        }
        if let Some(o) = c.poll_outcome() {
            return (o, c.stats());
        }
        let deadline = c.poll_timeout().expect("a fetch in flight has a deadline");
        let wait = deadline.0.saturating_sub(now().0).max(1);
        sock.set_read_timeout(Some(Duration::from_millis(wait)))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => c.handle_datagram(now(), &buf[..n]),
            // Timeout, or ICMP port unreachable while the server starts: let the client retransmit.
            Err(_) => c.handle_timeout(now()),
        }
    }
}

/// PUTs `data` into /example_data (one datagram; libcoap accepts it whole).
fn put_example_data(port: u16, data: &[u8]) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Put);
    p.header.message_id = 0x0101;
    p.set_token(vec![9, 9]);
    p.add_option(CoapOption::UriPath, b"example_data".to_vec());
    p.payload = data.to_vec();
    let req = p.to_bytes().unwrap();
    let mut buf = [0u8; 1500];
    // Until the server is up: port unreachable errors come back at once, so pace the retries.
    for _ in 0..50 {
        let _ = sock.send(&req);
        let Ok(n) = sock.recv(&mut buf) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        {
            let ack = Packet::from_bytes(&buf[..n]).unwrap();
            assert_eq!(ack.header.message_id, 0x0101);
            assert!(
                matches!(ack.header.code, MessageClass::Response(r) if !r.is_error()),
                "PUT refused: {:?}",
                ack.header.code
            );
            return;
        }
    }
    panic!("coap-server did not answer the PUT");
}

fn data() -> Vec<u8> {
    (0..300u32).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn block2_fetch_from_libcoap_reassembles_the_body() {
    let s = start_server();
    put_example_data(s.port, &data());
    let cfg = ClientConfig {
        path: vec!["example_data"],
        block_szx: Some(2), // 64-byte blocks: 300 bytes in 5 blocks
        ..ClientConfig::default()
    };
    let (outcome, stats) = fetch(s.port, cfg);
    assert_eq!(outcome, Outcome::Entropy(data()));
    assert_eq!(stats.requests, 5, "one request per block");
}

#[test]
fn whole_body_fetch_from_libcoap() {
    let s = start_server();
    put_example_data(s.port, &data()[..32]);
    let cfg = ClientConfig {
        path: vec!["example_data"],
        ..ClientConfig::default()
    };
    let (outcome, stats) = fetch(s.port, cfg);
    assert_eq!(outcome, Outcome::Entropy(data()[..32].to_vec()));
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.retransmissions, 0, "the server was up after the PUT");
}

#[test]
fn not_found_from_libcoap_is_a_typed_error() {
    let s = start_server();
    put_example_data(s.port, b"ready");
    let cfg = ClientConfig {
        path: vec!["no-such-resource"],
        ..ClientConfig::default()
    };
    let (outcome, _) = fetch(s.port, cfg);
    assert_eq!(outcome, Outcome::Failed(FetchError::Code(0x84)));
}
