//! qeaas-httpsd: the HTTPS face of qeaas. An unprivileged client of qeaasd's local socket that
//! speaks Debian's pollen protocol (for `pollinate`) and a JSON API with bearer tokens, quotas
//! and rate limits, over TLS 1.3 with post-quantum groups (OpenSSL 3.5, vendored).
//!
//! [`api`], [`limits`] and [`conns`] are sans-IO; [`server`] and [`tls`] do the I/O.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod conns;
pub mod limits;
pub mod prefetch;
pub mod server;
pub mod tls;
