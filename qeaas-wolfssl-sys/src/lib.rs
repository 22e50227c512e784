//! wolfSSL 5.9.4 built with qeaas's own configuration (`include/user_settings.h`): DTLS 1.2 and
//! 1.3, static PSK with AES-CCM (CoAP's mandatory suite), ECDSA P-256 and ML-DSA-44
//! certificates, ML-KEM-512/768, X25519MLKEM768, X25519 and P-256 key exchange.
//!
//! The C library is compiled by `build.rs` from the sources of the crates.io package
//! `wolfssl-sys` 5.3.0 (never built itself). The safe, sans-IO API lives here rather than in a
//! separate crate so that every `unsafe` line of the project's TLS stack sits in one module,
//! [`wolf`], next to the declarations it relies on; dependents (`qeaas-coap`) forbid unsafe code.
//!
//! The C build and `user_settings.h` cover the bare-metal riscv32imc client too (build.rs picks
//! the device section for `riscv32*` targets, compiled with riscv64-unknown-elf-gcc against
//! picolibc). The safe wrapper uses `std` (feature `std`, on by default) and is for the host;
//! without it the crate is `no_std` and [`raw`] declares the client functions the firmware needs.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

pub mod raw;
#[cfg(feature = "std")]
pub mod wolf;
#[cfg(feature = "std")]
pub mod x509;

#[cfg(feature = "std")]
pub use wolf::{
    ClientAuth, Context, Error, Format, Group, MlDsa44, PeerNames, Progress, Resumption, Role,
    Session, TicketKey, Version,
};
