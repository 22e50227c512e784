//! How CoAP datagrams reach the qeaas server.
//!
//! DTLS SEAM. Today this is plain UDP, a development stage only: anyone on the path can read and
//! forge the answers, which is why the node is built with `Transport::PlainUdp` and then never
//! credits server bytes. DTLS 1.3 (wolfSSL through the project's `qeaas-wolfssl-sys`) replaces
//! `PlainUdp` with a session type offering the same `send`/`recv`, and the node is then built with
//! `Transport::Dtls`. Entropy over plain UDP must not be used in production.

use embassy_net::udp::UdpSocket;
use embassy_net::IpEndpoint;
use qeaas_device::node::Transport;

/// The transport this build uses.
pub const TRANSPORT: Transport = Transport::PlainUdp;

/// CoAP over plain UDP to one server.
pub struct PlainUdp<'a> {
    socket: UdpSocket<'a>,
    server: IpEndpoint,
}

impl<'a> PlainUdp<'a> {
    /// Wraps a bound socket.
    pub fn new(socket: UdpSocket<'a>, server: IpEndpoint) -> Self {
        Self { socket, server }
    }

    /// Sends one datagram; a send error is treated like a lost datagram (CoAP retransmits).
    pub async fn send(&mut self, datagram: &[u8]) {
        let _ = self.socket.send_to(datagram, self.server).await;
    }

    /// Receives one datagram from the server; datagrams from anyone else are dropped.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.socket.recv_from(buf).await {
            Ok((n, meta)) if meta.endpoint == self.server => Some(n),
            _ => None,
        }
    }
}
