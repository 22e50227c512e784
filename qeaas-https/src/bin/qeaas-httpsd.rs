//! `qeaas-httpsd`: binds, loads TLS material, drops privileges, then serves.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use qeaas_https::{config::Config, server, tls};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "HTTPS face of qeaas: pollen protocol and JSON entropy API"
)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/qeaas/qeaas-httpsd.toml")]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve.
    Run,
    /// Check the configuration and the TLS material, then exit.
    CheckConfig,
    /// Write a self-signed CA and a server certificate (ca.crt, server.crt, server.key) for a
    /// test or demo deployment.
    GenCert {
        /// Output directory.
        #[arg(long)]
        dir: PathBuf,
        /// Key and signature algorithm.
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        alg: tls::KeyAlg,
        /// DNS names or IP addresses of the server (first one is the CN).
        #[arg(long = "san", default_values = ["localhost", "127.0.0.1"])]
        sans: Vec<String>,
    },
    /// Read a token on stdin and print the `token_sha256` to put in the config.
    HashToken,
}

fn main() -> ExitCode {
    qeaas_client::init_logging();
    match real_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qeaas-httpsd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.cmd {
        Cmd::GenCert { dir, alg, sans } => Ok(tls::generate(&dir, alg, &sans)?),
        Cmd::HashToken => {
            let mut t = String::new();
            std::io::stdin().read_line(&mut t)?;
            println!("{}", hex::encode(openssl::sha::sha256(t.trim().as_bytes())));
            Ok(())
        }
        Cmd::CheckConfig => {
            let cfg = Config::load(&cli.config)?;
            if let Some(t) = &cfg.tls {
                tls::acceptor(t)?;
            }
            println!("{}: ok", cli.config.display());
            Ok(())
        }
        Cmd::Run => {
            let cfg = Config::load(&cli.config)?;
            // Privileged steps first: the key may be readable by root only, the port may be low.
            let acceptor = cfg.tls.as_ref().map(tls::acceptor).transpose()?;
            let listener = std::net::TcpListener::bind(cfg.listen)?;
            // Before any thread exists: capability sets are per thread.
            let uid = qeaas_client::privdrop::drop_to_user(cfg.user.as_deref())?.uid;
            let open_files = server::raise_open_files();
            tracing::info!(
                listen = %cfg.listen,
                tls = acceptor.is_some(),
                uid,
                open_files,
                "qeaas-httpsd serving"
            );
            let state = Arc::new(server::State::new(&cfg));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                tokio::select! {
                    r = server::run(state, listener, acceptor) => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })?;
            Ok(())
        }
    }
}
