//! `qeaas`: client for the local entropy socket.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use qeaas::exit;
use qeaas::proto::{self, Request, Status};

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

fn ask(s: &mut UnixStream, r: Request) -> Result<Vec<u8>, Status> {
    s.write_all(&proto::encode_request(r))
        .unwrap_or_else(|e| fail(e, exit::IOERR));
    let mut h = [0u8; proto::ANSWER_HEADER_LEN];
    s.read_exact(&mut h)
        .unwrap_or_else(|e| fail(format!("daemon closed the connection: {e}"), exit::IOERR));
    let (status, len) =
        proto::decode_answer_header(&h).unwrap_or_else(|| fail("malformed answer", exit::SOFTWARE));
    let mut body = vec![0u8; usize::from(len)];
    s.read_exact(&mut body)
        .unwrap_or_else(|e| fail(e, exit::IOERR));
    if status == Status::Ok {
        Ok(body)
    } else {
        Err(status)
    }
}

fn main() {
    let a = Args::parse();
    let mut s = UnixStream::connect(&a.socket).unwrap_or_else(|e| {
        let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
            exit::NOPERM
        } else {
            exit::UNAVAILABLE
        };
        fail(format!("{}: {e}", a.socket.display()), code)
    });
    let refused = |st: Status| -> ! {
        let code = if st == Status::Forbidden {
            exit::NOPERM
        } else {
            exit::UNAVAILABLE
        };
        fail(st.text(), code)
    };
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
                let b =
                    ask(&mut s, Request::Get { len: n, wait_ms }).unwrap_or_else(|st| refused(st));
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
            let b = ask(&mut s, Request::Status).unwrap_or_else(|st| refused(st));
            print!("{}", String::from_utf8_lossy(&b));
        }
        Cmd::MyStats => {
            let b = ask(&mut s, Request::MyStats).unwrap_or_else(|st| refused(st));
            let n = u64::from_be_bytes(
                b.try_into()
                    .unwrap_or_else(|_| fail("malformed answer", exit::SOFTWARE)),
            );
            println!("{n}");
        }
    }
}
