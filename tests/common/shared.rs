//! Helpers shared by every crate's black-box tests (included with `#[path]` by
//! `openssl-provider/tests/common/mod.rs` and the frontends' harnesses): what the machine
//! provides (root, tools; a must in CI), a child that is killed with its children on drop,
//! polling, free ports, and qeaasd's metrics as the tests read them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `f`, a spawn of a binary the test copied (staged), again while it fails with ETXTBSY.
/// Another test thread that forks while the copy is still open for writing holds that
/// descriptor until its child calls exec; an exec of the copy in that window fails, and succeeds
/// a moment later.
pub fn retry_busy<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    for _ in 0..200 {
        match f() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(10))
            }
            r => return r,
        }
    }
    f()
}

/// Root (with CAP_SYS_ADMIN) is required for the real-ioctl tests. CI runs as root: there a
/// missing privilege or tool is a failure, elsewhere the test says why it does nothing.
pub fn require(cond: bool, what: &str) -> bool {
    if cond {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI must provide {what}");
    }
    eprintln!("SKIPPED: needs {what}");
    false
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The children of process `pid` (those of its main thread), none if it is gone.
pub fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGTERM to each of `pids` (one already gone is no error).
pub fn term_all(pids: &[i32]) {
    for pid in pids
        .iter()
        .filter_map(|&p| rustix::process::Pid::from_raw(p))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// A child killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    /// Terminates the process's children first (a wrapper such as strace detaches and leaves its
    /// tracee running when it is killed), then the process.
    pub fn terminate(&mut self) {
        term_all(&children(self.0.id()));
        term_all(&[self.0.id() as i32]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET /metrics.
pub fn scrape(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, body) = body.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The value of the sample whose name and labels are exactly `series` (e.g. `a_total{x="y"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// One GET on qeaasd's local socket (protocol v1, `src/proto.rs`) for `n` bytes, waiting up to
/// 5 s: the status byte and the payload.
pub fn socket_get(socket: &std::path::Path, n: u16) -> (u8, Vec<u8>) {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let l = n.to_be_bytes();
    s.write_all(&[b'Q', 1, 1, 0, l[0], l[1], 0x13, 0x88])
        .unwrap();
    let mut h = [0u8; 4];
    s.read_exact(&mut h).unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([h[2], h[3]]))];
    s.read_exact(&mut body).unwrap();
    (h[0], body)
}

/// An edge host's qeaasd whose one source is `kind = "upstream"` on the named pipe `fifo`,
/// credited to the edge pool only with `credit`. Kernel feeding is on (every second) so that a
/// test can see network entropy is never credited to the kernel.
pub struct Edge {
    pub qeaasd: Proc,
    pub socket: std::path::PathBuf,
    pub metrics: String,
    pub log: std::path::PathBuf,
}

impl Edge {
    pub fn start(
        qeaasd: &std::path::Path,
        dir: &std::path::Path,
        fifo: &std::path::Path,
        credit: bool,
    ) -> Edge {
        let socket = dir.join("edge.sock");
        let metrics = format!("127.0.0.1:{}", free_port());
        let credit_line = if credit { "credit = true\n" } else { "" };
        let cfg = dir.join("edge.toml");
        std::fs::write(
            &cfg,
            format!(
                "[kernel]\ninterval_secs = 1\n[socket]\npath = {socket:?}\nmode = 0o666\n\
                 [metrics]\nlisten = \"{metrics}\"\n\
                 [[source]]\nname = \"up\"\nkind = \"upstream\"\npath = {fifo:?}\n{credit_line}"
            ),
        )
        .unwrap();
        let log = dir.join("edge.log");
        let qeaasd = Proc(
            Command::new(qeaasd)
                .args(["-c", cfg.to_str().unwrap(), "run", "--allow-root-worker"])
                .env("QEAAS_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        Edge {
            qeaasd,
            socket,
            metrics,
            log,
        }
    }

    /// A named pipe `upstream.fifo` in `dir`, for the fetcher to write and the edge to read.
    pub fn fifo(dir: &std::path::Path) -> std::path::PathBuf {
        let fifo = dir.join("upstream.fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        fifo
    }

    /// Waits until the upstream source is healthy; false (with the log printed) if it never is.
    pub fn healthy(&self) -> bool {
        let series = "qeaas_source_state{source=\"up\",state=\"healthy\"}";
        let ok = wait_until(Duration::from_secs(30), || {
            scrape(&self.metrics).and_then(|t| metric(&t, series)) == Some(1.0)
        });
        if !ok {
            eprintln!("{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
        ok
    }
}

/// Debian's nginx with prefix `dir` (start-up errors in `dir/nginx.err`) and configuration `conf`.
pub fn nginx(dir: &std::path::Path, conf: &std::path::Path) -> Command {
    let mut c = Command::new("nginx");
    c.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx.err"))
        .arg("-c")
        .arg(conf);
    c
}

/// [`nginx`] in the foreground, stopped on drop.
pub fn start_nginx(dir: &std::path::Path, conf: &std::path::Path) -> Proc {
    Proc(
        nginx(dir, conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx"),
    )
}
