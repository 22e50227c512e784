//! `qeaas-coapd -c /etc/qeaas/coapd.toml [check-config]`, or
//! `qeaas-coapd gen-credentials --out DIR [--clients N] [--algo ml-dsa-44|ecdsa-p256]
//! [--client-certs ml-dsa-44|ecdsa-p256|none]`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[path = "qeaas-coapd/gen_credentials.rs"]
mod gen_credentials;

#[derive(Parser)]
#[command(version, about = "CoAP over DTLS frontend for qeaasd")]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/qeaas/coapd.toml")]
    config: PathBuf,
    /// Only check the configuration.
    #[arg(value_parser = ["run", "check-config"], default_value = "run")]
    command: String,
}

fn main() -> ExitCode {
    qeaas_client::init_logging();
    // A separate command line: it needs no configuration file.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "gen-credentials")
    {
        return gen_credentials::main();
    }
    let args = Args::parse();
    let cfg = match qeaas_coap::config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qeaas-coapd: {}: {e}", args.config.display());
            // As qeaasd: 66 (EX_NOINPUT) for an unreadable file, 78 (EX_CONFIG) for a bad one.
            return ExitCode::from(match e {
                qeaas_coap::config::ConfigError::Read(..) => 66,
                _ => 78,
            });
        }
    };
    // Credentials are read while we may still read root-only key files (check-config loads
    // them too, so a bad certificate or key is caught there).
    let ctx = match qeaas_coap::run::server_context(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qeaas-coapd: {e}");
            return ExitCode::from(78);
        }
    };
    if args.command == "check-config" {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    // Bind first (a port below 1024 would need privilege), then drop, then start threads.
    let sock = match std::net::UdpSocket::bind(cfg.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("qeaas-coapd: bind {}: {e}", cfg.listen);
            return ExitCode::from(71); // EX_OSERR
        }
    };
    if let Err(e) = qeaas_coap::run::drop_privileges(&cfg.user) {
        eprintln!("qeaas-coapd: {e}");
        return ExitCode::from(77); // EX_NOPERM
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qeaas-coapd: runtime: {e}");
            return ExitCode::from(71);
        }
    };
    match rt.block_on(qeaas_coap::run::serve(cfg, sock, ctx)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qeaas-coapd: {e}");
            ExitCode::from(71)
        }
    }
}
