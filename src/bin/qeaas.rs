//! `qeaas`: client for the local entropy socket, and the offline SP 800-90B assessment of raw
//! captures (`qeaas assess`).
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
    /// SP 800-90B entropy assessment of raw samples (one per byte), e.g. from `qeaasd capture`.
    ///
    /// Exit status: 0 assessed; 2 the restart tests failed; 65 data that cannot be assessed;
    /// 66 a file cannot be read.
    Assess {
        /// Raw samples, one per byte (at least 1,000,000).
        file: PathBuf,
        /// Bits per sample, as NIST's tools take it (1 to 8).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=8))]
        bits: u8,
        /// Restart matrix: 1000 restarts x 1000 samples, row after row
        /// (`qeaasd capture --restart 1000x1000`).
        #[arg(long, value_name = "MATRIX")]
        restart: Option<PathBuf>,
        /// Also run the IID track (permutation and chi-square tests).
        #[arg(long)]
        iid: bool,
        /// Seed of the IID track's permutations (reports are reproducible).
        #[arg(long, default_value_t = 0x90b)]
        seed: u64,
        /// JSON with the field names of NIST's `ea_non_iid -o`.
        #[arg(long)]
        json: bool,
    },
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

fn assess(a: qeaas::assess::AssessArgs) -> ! {
    use qeaas::assess::{self, AssessCmdError};
    let r = assess::run(&a).unwrap_or_else(|e| {
        let code = match e {
            AssessCmdError::Read(..) => exit::NOINPUT,
            AssessCmdError::Data(..) => exit::DATAERR,
        };
        fail(e, code)
    });
    let out = if a.json {
        assess::json(&r)
    } else {
        assess::text(&r)
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .unwrap_or_else(|e| fail(e, exit::IOERR));
    std::process::exit(if r.passed() { exit::OK } else { 2 })
}

fn main() {
    let a = Args::parse();
    if let Cmd::Assess {
        file,
        bits,
        restart,
        iid,
        seed,
        json,
    } = a.cmd
    {
        assess(qeaas::assess::AssessArgs {
            file,
            bits,
            restart,
            iid,
            seed,
            json,
        });
    }
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
        Cmd::Assess { .. } => unreachable!("handled before connecting"),
    }
}
