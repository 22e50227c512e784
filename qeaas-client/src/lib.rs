//! The client side of qeaasd's local socket, shared by everything that is not the daemon: the
//! `qeaas` command, the CoAP and HTTPS faces and the OpenSSL provider. The daemon uses the same
//! codec for its side, so the protocol is decided here and only here.
//!
//! In data-flow order:
//!
//! * [`proto`]: the protocol v1 codec, `no_std`, sans-IO (always built);
//! * [`bytes`]: [`PoolBytes`], the one type for served bytes, wiped on drop (`no_std` + alloc);
//! * [`batch`]: the request batcher the faces share: one GET, disjoint slices (sans-IO);
//! * `client`: a blocking client (feature `std`, on by default) and a tokio one (feature
//!   `tokio`);
//! * `privdrop`: becoming an unprivileged user before the first network byte (feature
//!   `privdrop`), and `init_logging` (feature `logging`): the set-up the faces share.
//!
//! The OpenSSL provider, loaded into other programs, takes `std` alone: no tokio, no tracing.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod proto;

pub mod batch;
pub mod bytes;

#[cfg(feature = "std")]
pub mod client;
#[cfg(feature = "privdrop")]
pub mod privdrop;

pub use batch::Batch;
pub use bytes::PoolBytes;
#[cfg(feature = "tokio")]
pub use client::AsyncClient;
#[cfg(feature = "std")]
pub use client::{Client, ClientError};

/// Logging to stderr (journald adds its own timestamps), filtered by `QEAAS_LOG`.
#[cfg(feature = "logging")]
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QEAAS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: journald and log files would keep the escapes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
