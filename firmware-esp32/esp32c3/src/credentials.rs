//! DTLS credentials compiled in by `build.rs` from `QEAAS_CA_DER`, `QEAAS_PSK_IDENTITY` with
//! `QEAAS_PSK_KEY_HEX` or `QEAAS_PSK_KEY`, and `QEAAS_KEX`. `Err` says why there are none (the
//! firmware then runs on its TRNG alone and reports it).

use qeaas_device_dtls::{Auth, DtlsConfig, KeyExchange};

include!(concat!(env!("OUT_DIR"), "/credentials.rs"));

/// A short description for the console (no secrets).
pub fn describe(cfg: &DtlsConfig<'_>) -> &'static str {
    match (cfg.kex, cfg.auth) {
        (KeyExchange::MlKem512, Auth::Certificate { .. }) => "ML-KEM-512, certificate",
        (KeyExchange::P256, Auth::Certificate { .. }) => "P-256, certificate",
        (KeyExchange::MlKem512, Auth::Psk { .. }) => "PSK + ML-KEM-512",
        (KeyExchange::P256, Auth::Psk { .. }) => "PSK + P-256",
    }
}
