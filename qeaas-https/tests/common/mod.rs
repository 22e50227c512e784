//! Black-box harness: builds and starts the root crate's `qeaas-sim` and `qeaasd` (the pattern of
//! the root crate's tests/common), then this crate's `qeaas-httpsd`, and talks to them with real
//! clients (curl, pollinate, an OpenSSL 3.5 client).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub const HTTPSD: &str = env!("CARGO_BIN_EXE_qeaas-httpsd");

#[path = "../../../tests/common/shared.rs"]
mod shared;
pub use shared::*;
#[path = "../../../tests/common/workspace.rs"]
mod workspace;
pub use workspace::*;

/// curl (Debian's, OpenSSL 3.0) against a frontend on 127.0.0.1:`port`, trusting `ca`.
pub struct Curl {
    pub ca: std::path::PathBuf,
    pub port: u16,
}

impl Curl {
    /// `curl` with the test CA; returns (status, headers, body).
    pub fn get(&self, path: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let hdr = dir.path().join("h");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.ca)
            .arg("-D")
            .arg(&hdr)
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let headers = std::fs::read_to_string(&hdr).unwrap();
        let status = headers
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        (status, headers.to_ascii_lowercase(), out.stdout)
    }

    pub fn entropy(&self, token: &str, query: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
        let auth = format!("Authorization: Bearer {token}");
        let mut args = vec!["-H", &auth];
        args.extend_from_slice(extra);
        self.get(&format!("/api/v1/entropy{query}"), &args)
    }
}

/// Debian's pollinate, strict, in test mode, against https://127.0.0.1:`port`/ with `curl_opts`
/// (e.g. `--cacert CA`): the 64-byte digest of the exchange on stdout.
pub fn pollinate(port: u16, curl_opts: &str) -> std::process::Output {
    Command::new("pollinate")
        .args(["--testing", "--strict", "--binary", "-s"])
        .arg(format!("https://127.0.0.1:{port}/"))
        .args(["-c", curl_opts])
        .output()
        .expect("run pollinate")
}

/// A simulated Quantis, qeaasd reading it, all in one directory that other users can traverse
/// (the frontend runs as `nobody`).
pub struct Stack {
    pub sim: Proc,
    pub daemon: Proc,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub metrics: String,
}

impl Stack {
    pub fn start() -> Stack {
        Self::start_with(&[])
    }

    /// With extra `qeaas-sim` arguments (faults).
    pub fn start_with(sim_args: &[&str]) -> Stack {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let fifo = dir.path().join("qrandom0");
        let sim = Proc(
            Command::new(bin("qeaas-sim"))
                .args([
                    "--fifo",
                    fifo.to_str().unwrap(),
                    "--seed",
                    "7",
                    "--rate",
                    "2M",
                ])
                .args(sim_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start qeaas-sim"),
        );
        assert!(wait_until(Duration::from_secs(10), || fifo.exists()));
        let port = free_port();
        let socket = dir.path().join("entropy.sock");
        let cfg = dir.path().join("qeaasd.toml");
        std::fs::write(
            &cfg,
            format!(
                "[kernel]\nenable = false\n[pool]\nqueue_bytes = 8192\n[socket]\npath = {socket:?}\nmode = 0o666\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[[source]]\nname = \"qsim\"\nkind = \"quantis\"\npath = {fifo:?}\nretry_secs = 1\n"
            ),
        )
        .unwrap();
        let daemon = Proc(
            Command::new(bin("qeaasd"))
                .args(["-c", cfg.to_str().unwrap(), "run", "--allow-root-worker"])
                .env("QEAAS_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("qeaasd.log")).unwrap())
                .spawn()
                .expect("start qeaasd"),
        );
        let metrics = format!("127.0.0.1:{port}");
        let s = Stack {
            sim,
            daemon,
            dir,
            socket,
            metrics,
        };
        assert!(
            wait_until(Duration::from_secs(20), || s.socket.exists()
                && scrape(&s.metrics).is_some()),
            "qeaasd did not come up"
        );
        s
    }

    pub fn metric(&self, series: &str) -> Option<f64> {
        metric(&scrape(&self.metrics)?, series)
    }

    /// Writes a CA and server certificate with `alg` (`ecdsa-p256` or `ml-dsa-44`) into
    /// `dir/name/` using `qeaas-httpsd gen-cert`.
    pub fn certs(&self, name: &str, alg: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        let st = Command::new(HTTPSD)
            .args(["gen-cert", "--dir", d.to_str().unwrap(), "--alg", alg])
            .status()
            .unwrap();
        assert!(st.success(), "gen-cert failed");
        d
    }

    /// Starts qeaas-httpsd with `body` appended to the generated top of the config (listen,
    /// socket, user when root). Returns the process and its port once it accepts connections.
    pub fn frontend(&self, name: &str, body: &str) -> (Proc, u16) {
        let port = free_port();
        let user = if is_root() { "user = \"nobody\"\n" } else { "" };
        let cfg = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:{port}\"\nsocket = {:?}\n{user}{body}",
                self.socket
            ),
        )
        .unwrap();
        let p = Proc(
            Command::new(HTTPSD)
                .args(["-c", cfg.to_str().unwrap(), "run"])
                .env("QEAAS_LOG", "debug")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap())
                .spawn()
                .expect("start qeaas-httpsd"),
        );
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "qeaas-httpsd did not come up: {}",
            std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default()
        );
        (p, port)
    }
}

/// `/proc/<pid>/status` field, e.g. `CapEff`.
pub fn proc_status(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in status"))
        .trim()
        .to_string()
}
