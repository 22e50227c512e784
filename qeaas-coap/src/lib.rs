//! `qeaas-coapd`: CoAP over DTLS in front of qeaasd, as an unprivileged client of its local
//! socket. `GET /entropy?n=N` returns N fresh pool bytes (default 32), `/.well-known/core`
//! lists it. DTLS 1.2 (PSK-AES128-CCM-8 for libcoap clients) and DTLS 1.3 with ML-KEM, via
//! wolfSSL ([`qeaas_wolfssl_sys`]).
//!
//! - [`coap`]: resource logic, sans-IO.
//! - [`block`]: the Block2 body store (one body per session), sans-IO.
//! - [`identity`]: whose a session is (PSK identity, certificate name or address), sans-IO.
//! - [`quota`]: per-identity quotas (4.29 with Max-Age), sans-IO.
//! - [`server`]: DTLS sessions and the stateless cookie listener, sans-IO.
//! - [`run`]: the tokio UDP loop, the daemon client, dropping privileges.
//! - [`fetch`]: the client side (`qeaas-fetch`, the handshake measurements).
//! - [`credentials`]: `qeaas-coapd gen-credentials` (CA, server and client
//!   certificates, PSKs).
//! - [`fuzz`]: a socket-free harness for fuzzing the request path.
#![forbid(unsafe_code)]

pub mod block;
pub mod coap;
pub mod config;
pub mod credentials;
pub mod fetch;
pub mod fuzz;
pub mod identity;
pub mod quota;
pub mod run;
pub mod server;
