//! Black-box harness: a simulated Quantis (`qeaas-sim`), `qeaasd` reading it, and
//! `qeaas-coapd` in front, each a real process in a directory of its own. The root crate's
//! binaries are built by a nested `cargo build` (as openssl-provider's tests do).
#![allow(dead_code)]

pub mod dtls;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub const COAPD: &str = env!("CARGO_BIN_EXE_qeaas-coapd");
pub const ID: &str = "device-1";
pub const KEY: &str = "correct horse battery";

#[path = "../../../tests/common/shared.rs"]
mod shared;
pub use shared::*;
#[path = "../../../tests/common/workspace.rs"]
mod workspace;
pub use workspace::*;

pub const FETCH: &str = env!("CARGO_BIN_EXE_qeaas-fetch");
/// libcoap's DTLS clients (Debian libcoap3-bin).
pub const CLIENTS: [&str; 2] = ["coap-client-gnutls", "coap-client-openssl"];

/// Both libcoap clients are installed (a must in CI).
pub fn clients_present() -> bool {
    CLIENTS
        .iter()
        .all(|c| require(have(c), &format!("{c} (apt: libcoap3-bin)")))
}

/// Runs `qeaas-fetch` with `args`, for at most 60 s.
pub fn fetch(args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("60")
        .arg(FETCH)
        .args(args)
        .output()
        .expect("run qeaas-fetch")
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `qeaas-coapd gen-credentials --out dir args`, which must succeed.
pub fn gen_credentials(dir: &Path, args: &[&str]) {
    let o = Command::new(COAPD)
        .args(["gen-credentials", "--out"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "gen-credentials: {}", stderr(&o));
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The three processes. Dropped in field order: the frontend, the daemon, the simulator.
/// qeaas-coapd with `dir`'s `coapd.toml`, logging (debug) to `dir`'s `coapd.log`, which
/// starts over.
fn spawn_coapd(dir: &Path) -> Proc {
    Proc(
        Command::new(COAPD)
            .arg("-c")
            .arg(dir.join("coapd.toml"))
            .env("QEAAS_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("coapd.log")).unwrap())
            .spawn()
            .expect("start qeaas-coapd"),
    )
}

pub struct Stack {
    pub coapd: Proc,
    pub daemon: Proc,
    pub sim: Proc,
    pub port: u16,
    pub metrics: String,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// Starts everything; `coapd_extra` is appended to the frontend's config.
    pub fn start(coapd_extra: impl FnOnce(&Path) -> String) -> Stack {
        Stack::start_with("", coapd_extra)
    }

    /// As [`Stack::start`], with top-level keys `top` (e.g. `max_bytes = 4096\n`) placed
    /// before the config's first table.
    pub fn start_with(top: &str, coapd_extra: impl FnOnce(&Path) -> String) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        // The frontend drops to `nobody` and must still reach the daemon's socket in here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let fifo = dir.path().join("qrandom0");
        let sim = Proc(
            Command::new(bin("qeaas-sim"))
                .arg("--fifo")
                .arg(&fifo)
                .args(["--rate", "4M"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start qeaas-sim"),
        );
        assert!(
            wait_until(Duration::from_secs(10), || fifo.exists()),
            "no simulator pipe"
        );
        let socket = dir.path().join("entropy.sock");
        let metrics = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("qeaasd.toml");
        std::fs::write(
            &cfg,
            format!(
                "[socket]\npath = {socket:?}\nmode = 0o666\n\n[metrics]\nlisten = \"{metrics}\"\n\n\
                 [kernel]\nenable = false\n\n[[source]]\nname = \"qsim\"\nkind = \"quantis\"\n\
                 path = {fifo:?}\nretry_secs = 1\n"
            ),
        )
        .unwrap();
        let daemon = Proc(
            Command::new(bin("qeaasd"))
                .arg("-c")
                .arg(&cfg)
                .args(["run", "--allow-root-worker"])
                .env("QEAAS_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("qeaasd.log")).unwrap())
                .spawn()
                .expect("start qeaasd"),
        );
        assert!(
            wait_until(Duration::from_secs(20), || socket.exists()
                && scrape(&metrics).is_some()),
            "qeaasd did not come up"
        );
        let port = free_udp_port();
        let ccfg = dir.path().join("coapd.toml");
        std::fs::write(
            &ccfg,
            format!(
                "listen = \"127.0.0.1:{port}\"\nsocket = {socket:?}\nuser = \"nobody\"\nhandshake_secs = 3\n{top}\
                 [[psk]]\nidentity = \"{ID}\"\nkey = \"{KEY}\"\n{}\n",
                coapd_extra(dir.path())
            ),
        )
        .unwrap();
        let coapd = spawn_coapd(dir.path());
        let s = Stack {
            coapd,
            daemon,
            sim,
            port,
            metrics,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(10), || s
                .log()
                .contains("serving CoAP over DTLS")),
            "qeaas-coapd did not come up; log:\n{}",
            s.log()
        );
        s
    }

    /// Stops qeaas-coapd and starts it again on the same port, with its config edited by
    /// `edit`; its log starts over.
    pub fn restart_coapd(&mut self, edit: impl FnOnce(String) -> String) {
        self.coapd.terminate();
        let ccfg = self.dir.path().join("coapd.toml");
        let cfg = edit(std::fs::read_to_string(&ccfg).unwrap());
        std::fs::write(&ccfg, cfg).unwrap();
        self.coapd = spawn_coapd(self.dir.path());
        assert!(
            wait_until(Duration::from_secs(10), || self
                .log()
                .contains("serving CoAP over DTLS")),
            "qeaas-coapd did not come back; log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("coapd.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("coaps://127.0.0.1:{}/{path}", self.port)
    }

    /// Pool bytes the daemon handed to the frontend's uid, from the daemon's own metrics.
    pub fn served_to_frontend(&self) -> u64 {
        let uid = proc_status(self.coapd.pid(), "Uid:")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let text = scrape(&self.metrics).expect("metrics");
        let series = format!("qeaas_served_bytes_total{{client=\"uid:{uid}\",face=\"socket\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map(|v| v.trim().parse::<f64>().unwrap() as u64)
            .unwrap_or(0)
    }

    /// Runs `client` (coap-client-gnutls or -openssl) with PSK `id`/`key` for `path`; the
    /// payload, from `-o`, or None when nothing was written.
    pub fn coap_client(&self, client: &str, id: &str, key: &str, path: &str) -> Option<Vec<u8>> {
        self.coap_client_args(client, &["-u", id, "-k", key], path)
    }

    /// Runs `client` with `auth` arguments (PSK or certificates).
    pub fn coap_client_args(&self, client: &str, auth: &[&str], path: &str) -> Option<Vec<u8>> {
        self.coap_client_run(client, auth, path).0
    }

    /// Runs `client` with `args` (credentials, and e.g. `-b` or `-v`): the payload written
    /// with `-o` (None when nothing was), and what it printed on stdout and stderr.
    pub fn coap_client_run(
        &self,
        client: &str,
        args: &[&str],
        path: &str,
    ) -> (Option<Vec<u8>>, String) {
        let out = self.dir.path().join(format!("out-{}", rand_suffix()));
        // The exit status is not used: libcoap's clients exit 0 on some failures.
        let o = Command::new("timeout")
            .args(["20", client, "-m", "get", "-B", "4"])
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg(self.url(path))
            .stdin(Stdio::null())
            .output()
            .expect("run coap-client");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (std::fs::read(&out).ok().filter(|b| !b.is_empty()), text)
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A line of /proc/PID/status, after its key.
pub fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// An ECDSA P-256 test PKI made with Debian's `openssl`: `ca.pem`, `srv.pem`/`srv.key` (SAN
/// IP:127.0.0.1), `cli.pem`/`cli.key`, and an unrelated `other-ca.pem`.
pub fn make_pki(dir: &Path) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let (k, c) = (format!("{ca}.key"), format!("{ca}.pem"));
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                &k,
                "-out",
                &c,
                "-days",
                "2",
                "-subj",
                "/CN=qeaas test CA",
            ],
        ]
        .concat());
    }
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for n in ["srv", "cli"] {
        let (k, r, c) = (format!("{n}.key"), format!("{n}.csr"), format!("{n}.pem"));
        run(&[
            &["req"][..],
            &ec,
            &["-keyout", &k, "-out", &r, "-subj", "/CN=127.0.0.1"],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &r,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &c,
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
    }
    // The frontend reads its key before dropping to nobody; the clients run as root.
}
