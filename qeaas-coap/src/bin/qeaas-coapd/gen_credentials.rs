//! `qeaas-coapd gen-credentials`: see [`qeaas_coap::credentials`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use qeaas_coap::credentials::{generate, Algo, Spec};

#[derive(Parser)]
#[command(
    name = "qeaas-coapd gen-credentials",
    about = "Write a CA, a server certificate signed by it, client PSKs and certificates, and a coapd.toml snippet"
)]
struct Args {
    /// Output directory (created; existing files are never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Number of clients (identities client-1..client-N): a PSK each, and a certificate.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Signature algorithm of the CA and the server certificate.
    #[arg(long, value_parser = ["ml-dsa-44", "ecdsa-p256"], default_value = "ml-dsa-44")]
    algo: String,
    /// subjectAltName of the server (IP address or DNS name); repeatable.
    #[arg(long, default_values_t = ["127.0.0.1".to_string(), "::1".to_string(), "localhost".to_string()])]
    san: Vec<String>,
    /// Validity of the server and client certificates in days (the CA: ten times as long).
    #[arg(long, default_value_t = 825)]
    days: u32,
    /// Key algorithm of the client certificates (default: that of --algo; `none`: PSKs only).
    #[arg(long, value_parser = ["ml-dsa-44", "ecdsa-p256", "none"])]
    client_certs: Option<String>,
}

fn algo(name: &str) -> Algo {
    if name == "ecdsa-p256" {
        Algo::EcdsaP256
    } else {
        Algo::MlDsa44
    }
}

pub fn main() -> ExitCode {
    // Skip the subcommand word so clap sees only its options.
    let argv = std::env::args_os()
        .enumerate()
        .filter_map(|(i, a)| (i != 1).then_some(a));
    let a = Args::parse_from(argv);
    let spec = Spec {
        out: a.out,
        clients: a.clients,
        algo: algo(&a.algo),
        san: a.san,
        days: a.days,
        client_certs: match a.client_certs.as_deref() {
            Some("none") => None,
            Some(c) => Some(algo(c)),
            None => Some(algo(&a.algo)),
        },
    };
    match generate(&spec) {
        Ok(w) => {
            println!(
                "CA:          {}  (key {}: keep it offline)",
                w.ca.display(),
                w.ca_key.display()
            );
            println!(
                "server:      {}  key {}",
                w.server.display(),
                w.server_key.display()
            );
            for (id, p) in &w.psks {
                println!("PSK {id}: {}", p.display());
            }
            for c in &w.client_certs {
                println!(
                    "certificate {}: {} ({}) key {}",
                    c.identity,
                    c.cert.display(),
                    c.cert_der.display(),
                    c.key.display()
                );
            }
            println!(
                "config:      {} (append to coapd.toml)",
                w.snippet.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qeaas-coapd gen-credentials: {e}");
            ExitCode::from(1)
        }
    }
}
