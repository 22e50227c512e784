//! A DTLS client on our wolfSSL build over a real UDP socket, for the black-box tests.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use qeaas_wolfssl_sys::{Context, Group, Progress, Resumption, Role, Session, Version};

use super::ID;

/// A DTLS 1.3 client over a real UDP socket: pumps the sans-IO session.
pub struct Dtls13 {
    pub sock: UdpSocket,
    pub s: Session,
    /// UDP payload bytes and datagrams received, handshake included.
    pub recv_bytes: usize,
    pub recv_datagrams: usize,
}

impl Dtls13 {
    pub fn connect(port: u16, group: Group, key: &str) -> Result<Dtls13, String> {
        let mut ctx = Context::new(Role::Client, Version::Dtls13).unwrap();
        ctx.set_psk_client(ID.as_bytes(), key.as_bytes());
        // As qeaas-fetch: a server that skipped the PSK for a certificate must not pass.
        ctx.refuse_certificates();
        Self::connect_ctx(port, group, ctx)
    }

    pub fn connect_ctx(port: u16, group: Group, mut ctx: Context) -> Result<Dtls13, String> {
        ctx.set_groups(&[group]).unwrap();
        Self::connect_resuming(port, group, &ctx, None)
    }

    /// As [`Dtls13::connect_ctx`] on a context already set up (groups included), offering
    /// `resume`'s ticket if given.
    pub fn connect_resuming(
        port: u16,
        group: Group,
        ctx: &Context,
        resume: Option<&Resumption>,
    ) -> Result<Dtls13, String> {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut s = Session::new(ctx, sock.peer_addr().unwrap()).unwrap();
        s.use_key_share(group).unwrap();
        if let Some(r) = resume {
            s.resume(r).map_err(|e| e.to_string())?;
        }
        let mut c = Dtls13 {
            sock,
            s,
            recv_bytes: 0,
            recv_datagrams: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let p = c.s.handshake().map_err(|e| e.to_string())?;
            c.flush();
            if p == Progress::Done {
                return Ok(c);
            }
            if Instant::now() > deadline {
                return Err("handshake timed out".into());
            }
            if !c.recv() {
                c.s.on_timeout().map_err(|e| e.to_string())?;
            }
        }
    }

    pub fn flush(&mut self) {
        for d in self.s.take_datagrams() {
            self.sock.send(&d).unwrap();
        }
    }

    pub fn recv(&mut self) -> bool {
        let mut b = [0u8; 4096];
        match self.sock.recv(&mut b) {
            Ok(n) => {
                self.recv_bytes += n;
                self.recv_datagrams += 1;
                self.s.feed(&b[..n]);
                true
            }
            Err(_) => false,
        }
    }

    pub fn get(&mut self, mid: u16, path: &str) -> Packet {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = mid;
        p.set_token(vec![9, 9]);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        for seg in path.split('/') {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in query.split('&').filter(|q| !q.is_empty()) {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        self.s.write(&p.to_bytes().unwrap()).unwrap();
        self.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            if self.recv() {
                if let Some(n) = self.s.read(&mut buf).unwrap() {
                    return Packet::from_bytes(&buf[..n]).unwrap();
                }
                self.flush(); // DTLS 1.3 ACKs
            }
        }
        panic!("no CoAP answer");
    }
}
