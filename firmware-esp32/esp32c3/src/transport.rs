//! How CoAP reaches the qeaas server: only inside a DTLS 1.3 session (`qeaas-device-dtls`'s
//! `SecureNode`); this UDP link carries its ciphertext datagrams. There is no plain-UDP path:
//! plaintext CoAP never leaves the device, and the node (built with `Transport::Dtls`) is fed
//! only the authenticated session's plaintext, which is why it may credit server bytes.

use embassy_net::udp::{BindError, UdpSocket};
use embassy_net::IpEndpoint;

/// UDP to one server: DTLS records out, DTLS records in from that server only.
pub struct Link<'a> {
    socket: UdpSocket<'a>,
    server: IpEndpoint,
}

impl<'a> Link<'a> {
    /// Binds `socket` to an ephemeral port.
    pub fn new(mut socket: UdpSocket<'a>, server: IpEndpoint) -> Result<Self, BindError> {
        socket.bind(0)?;
        Ok(Self { socket, server })
    }

    /// A new ephemeral port for a new session, so the server sees a new peer rather than
    /// records of a session it may still hold (stale datagrams of the old one are left behind).
    pub fn rebind(&mut self) -> Result<(), BindError> {
        self.socket.close();
        self.socket.bind(0)
    }

    /// Sends one datagram; a send error is treated like a lost datagram (DTLS and CoAP
    /// retransmit).
    pub async fn send(&mut self, datagram: &[u8]) {
        let _ = self.socket.send_to(datagram, self.server).await;
    }

    /// Receives one datagram from the server; datagrams from anyone else (and truncated ones)
    /// are dropped.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.socket.recv_from(buf).await {
            Ok((n, meta)) if meta.endpoint == self.server => Some(n),
            _ => None,
        }
    }
}
