//! `qeaas`: client for the local entropy socket.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use qeaas::exit;
use qeaas_client::proto::Status;
use qeaas_client::{Client, ClientError};

/// Reads entropy and status from qeaasd's local socket.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Socket path.
    #[arg(short, long, global = true, default_value = "/run/qeaas/entropy.sock")]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write N bytes of entropy to stdout.
    Get {
        /// Bytes (requests of up to 4096 are made as needed).
        #[arg(short = 'n', long, default_value_t = 32)]
        bytes: u64,
        /// Milliseconds to wait per request for entropy to become available.
        #[arg(long, default_value_t = 5000)]
        wait_ms: u16,
        /// Print hex instead of raw bytes.
        #[arg(long)]
        hex: bool,
    },
    /// Print the daemon's status.
    Status,
    /// Print how many bytes this user has been served.
    MyStats,
}

fn fail(msg: impl std::fmt::Display, code: i32) -> ! {
    eprintln!("qeaas: {msg}");
    std::process::exit(code)
}

fn refused(e: ClientError) -> ! {
    let code = match e {
        ClientError::Refused(Status::Forbidden) => exit::NOPERM,
        ClientError::Refused(_) => exit::UNAVAILABLE,
        ClientError::Io(_) => exit::IOERR,
        ClientError::Protocol => exit::SOFTWARE,
    };
    fail(e, code)
}

fn main() {
    let a = Args::parse();
    let mut s = Client::connect(&a.socket).unwrap_or_else(|e| {
        let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
            exit::NOPERM
        } else {
            exit::UNAVAILABLE
        };
        fail(format!("{}: {e}", a.socket.display()), code)
    });
    match a.cmd {
        Cmd::Get {
            bytes,
            wait_ms,
            hex,
        } => {
            let mut out = std::io::stdout().lock();
            let mut left = bytes;
            while left > 0 {
                let n = left.min(4096) as u16;
                let b = s.get(n, wait_ms).unwrap_or_else(|e| refused(e));
                if hex {
                    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
                    out.write_all(h.as_bytes())
                        .unwrap_or_else(|e| fail(e, exit::IOERR));
                } else {
                    out.write_all(&b).unwrap_or_else(|e| fail(e, exit::IOERR));
                }
                left -= u64::from(n);
            }
            if hex {
                let _ = out.write_all(b"\n");
            }
        }
        Cmd::Status => {
            print!("{}", s.status().unwrap_or_else(|e| refused(e)));
        }
        Cmd::MyStats => {
            let n = s.my_stats().unwrap_or_else(|e| refused(e));
            println!("{n}");
        }
    }
}
