//! What the device's DTLS tests share: a device node, the server contexts (the frontend's
//! own wolfSSL wrapper on the same build), and the loop that pumps datagrams between them in
//! memory, in simulated time, with the test playing the CoAP server.
#![allow(dead_code)] // each test file uses a part

use std::net::SocketAddr;

use coap_lite::{MessageClass, MessageType, Packet, ResponseType};
use qeaas_device::coap::ClientConfig;
use qeaas_device::scheduler::RefreshConfig;
use qeaas_device::{Instant, RandomSource};
use qeaas_device_dtls::{Auth, DtlsConfig, KeyExchange, SecureNode};
use qeaas_wolfssl_sys::{
    Context, Format, Group, MlDsa44, Progress, Role, Session, TicketKey, Version,
};

/// The device's address as the server sees it.
pub const PEER: ([u8; 4], u16) = ([10, 0, 2, 15], 49152);

pub struct Counter(pub u32);
impl RandomSource for Counter {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0
    }
}

pub fn mldsa_server() -> (Context, Vec<u8>) {
    let mut key = MlDsa44::generate().unwrap();
    let cert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, "srv", 1).unwrap();
    let mut c = Context::new(Role::Server, Version::Dtls13).unwrap();
    c.use_certificate_chain(&cert, Format::Der).unwrap();
    c.use_private_key(&key.private_der().unwrap(), Format::Der)
        .unwrap();
    c.set_groups(&[Group::MlKem512, Group::P256]).unwrap();
    (c, cert)
}

/// ML-KEM-512 with the server's certificate verified against `ca` (DER), no name check.
pub fn cert_cfg(ca: &[u8]) -> DtlsConfig<'_> {
    DtlsConfig {
        kex: KeyExchange::MlKem512,
        auth: Auth::Certificate {
            ca_der: ca,
            server_name: None,
            client: None,
        },
    }
}

/// As [`cert_cfg`], checking that the server's certificate names `name`.
pub fn named_cfg<'a>(ca: &'a [u8], name: &'a str) -> DtlsConfig<'a> {
    DtlsConfig {
        kex: KeyExchange::MlKem512,
        auth: Auth::Certificate {
            ca_der: ca,
            server_name: Some(name),
            client: None,
        },
    }
}

/// An ML-KEM-512 server with this ML-DSA-44 certificate and key, issuing tickets sealed under
/// `tickets` if given.
pub fn mldsa_ctx(cert: &[u8], key_der: &[u8], tickets: Option<&[u8]>) -> Context {
    let mut c = Context::new(Role::Server, Version::Dtls13).unwrap();
    c.use_certificate_chain(cert, Format::Der).unwrap();
    c.use_private_key(key_der, Format::Der).unwrap();
    c.set_groups(&[Group::MlKem512]).unwrap();
    if let Some(secret) = tickets {
        c.enable_session_tickets(TicketKey::derive(secret, 3600).unwrap())
            .unwrap();
    }
    c
}

pub fn node(cfg: &DtlsConfig<'_>) -> SecureNode<Counter> {
    SecureNode::new(
        Instant(0),
        ClientConfig::default(),
        RefreshConfig::default(),
        Counter(1),
        cfg,
        &mut |_| {},
    )
    .unwrap()
}

/// Pumps both ends until the device has a fetch result or nothing moves; the test plays the
/// CoAP server behind `srv`. Returns the bodies the server sent.
pub fn run(dev: &mut SecureNode<Counter>, srv: &mut Session) -> Vec<Vec<u8>> {
    run_at(dev, srv, Instant(0))
}

/// As [`run`], starting at `t0` (a later session of the same device).
pub fn run_at(dev: &mut SecureNode<Counter>, srv: &mut Session, t0: Instant) -> Vec<Vec<u8>> {
    pump(dev, srv, t0, |_, _| true)
}

/// As [`run_at`]; `deliver(server_established, datagram)` decides whether each of the server's
/// datagrams reaches the device (an on-path attacker dropping some).
pub fn pump(
    dev: &mut SecureNode<Counter>,
    srv: &mut Session,
    t0: Instant,
    mut deliver: impl FnMut(bool, &[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let peer: SocketAddr = ([10, 0, 2, 15], 49152).into();
    srv.set_peer(peer).unwrap();
    let mut sent = Vec::new();
    let mut now = t0;
    // As qeaas-coapd: a stateless cookie exchange first, then the handshake.
    let mut accepted = false;
    dev.start(now);
    for _ in 0..50 {
        now = now.plus_ms(10);
        let mut moved = false;
        while let Some(d) = dev.poll_transmit() {
            srv.feed(&d);
            moved = true;
        }
        if !accepted {
            accepted = srv.accept_stateless().unwrap_or(false);
        }
        if accepted && !srv.is_established() {
            match srv.handshake() {
                Ok(Progress::Done) | Ok(Progress::WantRead) => {}
                Err(_) => {}
            }
        } else if accepted {
            let mut buf = [0u8; 1500];
            while let Ok(Some(n)) = srv.read(&mut buf) {
                let req = Packet::from_bytes(&buf[..n]).unwrap();
                let mut resp = Packet::new();
                resp.header.set_type(MessageType::Acknowledgement);
                resp.header.code = MessageClass::Response(ResponseType::Content);
                resp.header.message_id = req.header.message_id;
                resp.set_token(req.get_token().to_vec());
                resp.payload = (0..32).map(|i| i as u8 ^ 0xa5).collect();
                sent.push(resp.payload.clone());
                srv.write(&resp.to_bytes().unwrap()).unwrap();
            }
        }
        let established = srv.is_established();
        for d in srv.take_datagrams() {
            if deliver(established, &d) {
                dev.handle_datagram(now, &d);
            }
            moved = true;
        }
        dev.poll(now);
        if !moved && dev.node().status().fetches_ok > 0 {
            break;
        }
    }
    sent
}
