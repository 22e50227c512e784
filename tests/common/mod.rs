//! Black-box harness: spawns the real `qeaasd` and `qeaas-sim` binaries and talks to them as their
//! consumers do (local socket, HTTP metrics).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use qeaas_client::proto::{self, Request, Status};

pub const QEAASD: &str = env!("CARGO_BIN_EXE_qeaasd");
pub const QEAAS: &str = env!("CARGO_BIN_EXE_qeaas");
pub const SIM: &str = env!("CARGO_BIN_EXE_qeaas-sim");

mod shared;
pub use shared::*;

/// Starts `qeaas-sim` with `args`.
pub fn sim(args: &[&str]) -> Proc {
    Proc(
        Command::new(SIM)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qeaas-sim"),
    )
}

/// A running daemon in its own directory.
pub struct Daemon {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub metrics: String,
    pub log: PathBuf,
}

/// A config with the socket and metrics in `dir`, then `extra` (kernel settings, sources).
pub fn config(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        "[socket]\npath = {:?}\nmode = 0o666\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{extra}\n",
        dir.join("entropy.sock")
    )
}

/// Starts `qeaasd run` on `config_text` (built with [`config`] over `dir`), optionally under
/// `wrapper` (e.g. strace), and waits until its socket and metrics answer.
pub fn daemon_in(dir: tempfile::TempDir, port: u16, config_text: &str, wrapper: &[&str]) -> Daemon {
    let cfg = dir.path().join("qeaasd.toml");
    std::fs::write(&cfg, config_text).unwrap();
    let log = dir.path().join("qeaasd.log");
    let mut cmd = if wrapper.is_empty() {
        Command::new(QEAASD)
    } else {
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(QEAASD);
        c
    };
    cmd.args(["-c", cfg.to_str().unwrap(), "run"])
        .env("QEAAS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let proc = Proc(cmd.spawn().expect("start qeaasd"));
    let d = Daemon {
        proc,
        socket: dir.path().join("entropy.sock"),
        metrics: format!("127.0.0.1:{port}"),
        log,
        dir,
    };
    let up = wait_until(Duration::from_secs(20), || {
        d.socket.exists() && scrape(&d.metrics).is_some()
    });
    assert!(up, "qeaasd did not come up; log:\n{}", d.log_text());
    d
}

pub fn daemon(extra: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = config(dir.path(), port, extra);
    daemon_in(dir, port, &text, &[])
}

impl Daemon {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric(&scrape(&self.metrics)?, name)
    }
    pub fn get(&self, n: u16) -> Result<Vec<u8>, Status> {
        let mut s = UnixStream::connect(&self.socket).expect("connect");
        ask(
            &mut s,
            Request::Get {
                len: n,
                wait_ms: 5000,
            },
        )
    }
}

/// One request/answer on an open connection.
pub fn ask(s: &mut UnixStream, r: Request) -> Result<Vec<u8>, Status> {
    s.write_all(&proto::encode_request(r)).unwrap();
    let mut h = [0u8; proto::ANSWER_HEADER_LEN];
    s.read_exact(&mut h).unwrap();
    let (st, len) = proto::decode_answer_header(&h).expect("valid answer");
    let mut b = vec![0u8; usize::from(len)];
    s.read_exact(&mut b).unwrap();
    if st == Status::Ok {
        Ok(b)
    } else {
        Err(st)
    }
}
