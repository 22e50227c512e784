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

/// `bin`, copied into a directory every uid may enter and read, for tests that run it as another
/// uid (setpriv, as systemd's `User=` would) or whose daemon's worker re-executes it after
/// switching users. A checkout inside a 0700 directory (a Debian 12 home, `mktemp -d`) would
/// leave target/ unreachable to them ("start worker: Permission denied"). One copy per checkout
/// and binary, replaced atomically when the build changes; the directory must be ours.
pub fn staged(bin: &str) -> PathBuf {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    static STAGED: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut done = STAGED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = done.iter().find(|(b, _)| b == bin) {
        return p.clone();
    }
    let src = Path::new(bin);
    let meta = std::fs::metadata(src).expect("built binary");
    // Per checkout (the binary's inode) and user: never someone else's directory.
    let dir = std::env::temp_dir().join(format!(
        "qeaas-test-bin-{}-{:x}",
        rustix::process::geteuid().as_raw(),
        meta.ino()
    ));
    match std::fs::symlink_metadata(&dir) {
        Ok(m) => assert!(
            m.is_dir() && m.uid() == rustix::process::geteuid().as_raw(),
            "{} is not our directory",
            dir.display()
        ),
        Err(_) => std::fs::create_dir(&dir).expect("create staging directory"),
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dst = dir.join(src.file_name().unwrap());
    let fresh =
        std::fs::metadata(&dst).is_ok_and(|d| d.len() == meta.len() && d.mtime() >= meta.mtime());
    if !fresh {
        let tmp = dir.join(format!(
            ".{}.{}",
            src.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        std::fs::copy(src, &tmp).expect("stage binary");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &dst).expect("stage binary");
    }
    done.push((bin.to_string(), dst.clone()));
    dst
}

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
    // Staged: the wrapper may run it as another uid.
    let qeaasd = staged(QEAASD);
    let mut cmd = if wrapper.is_empty() {
        Command::new(&qeaasd)
    } else {
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(&qeaasd);
        c
    };
    cmd.args(["-c", cfg.to_str().unwrap(), "run", "--allow-root-worker"])
        .env("QEAAS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let proc = Proc(retry_busy(|| cmd.spawn()).expect("start qeaasd"));
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

/// RNDADDENTROPY calls in an strace log: (entropy_count, buf_size).
pub fn traced_adds(trace: &str) -> Vec<(u32, u32)> {
    trace
        .lines()
        .filter(|l| l.contains("RNDADDENTROPY"))
        .map(|l| {
            let num = |key: &str| -> u32 {
                let i = l.find(key).unwrap_or_else(|| panic!("no {key} in {l}")) + key.len();
                l[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
                    .parse()
                    .unwrap()
            };
            // strace -f splits a call that another thread interrupts into "<unfinished ...>" and
            // "<... ioctl resumed>" lines; the result is on the latter.
            let result = if l.contains("<unfinished ...>") {
                let pid = l.split_whitespace().next().unwrap();
                let rest = &trace[trace.find(l).unwrap() + l.len()..];
                rest.lines()
                    .find(|r| r.starts_with(pid) && r.contains("ioctl resumed>"))
                    .unwrap_or_else(|| panic!("no resumption of {l}"))
            } else {
                l
            };
            assert!(result.trim_end().ends_with("= 0"), "ioctl failed: {result}");
            (num("entropy_count="), num("buf_size="))
        })
        .collect()
}

/// `qeaasd run` on `config_text` in `dir` under `strace -f -e trace=ioctl`, not waited for: the
/// daemon may refuse its configuration and exit. strace exits with the daemon's status.
pub struct Traced {
    pub strace: Proc,
    pub trace: PathBuf,
    pub log: PathBuf,
    pub metrics: String,
}

impl Traced {
    pub fn start(dir: &Path, port: u16, config_text: &str) -> Traced {
        let cfg = dir.join("qeaasd.toml");
        std::fs::write(&cfg, config_text).unwrap();
        let (trace, log) = (dir.join("trace.txt"), dir.join("qeaasd.log"));
        let strace = Proc(
            Command::new("strace")
                .args(["-f", "-qq", "-e", "trace=ioctl", "-e", "signal=none", "-o"])
                .arg(&trace)
                .arg(QEAASD)
                .args(["-c", cfg.to_str().unwrap(), "run", "--allow-root-worker"])
                .env("QEAAS_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start strace qeaasd"),
        );
        Traced {
            strace,
            trace,
            log,
            metrics: format!("127.0.0.1:{port}"),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        metric(&scrape(&self.metrics)?, name)
    }

    /// The daemon's exit code, if it has exited.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.strace.0.try_wait().unwrap().map(|s| s.code())
    }

    /// Stops the daemon as systemd does (SIGTERM to the supervisor and the worker at once), waits
    /// for it, and returns the trace.
    pub fn stop_group(mut self) -> String {
        let supervisor = *children(self.strace.pid()).first().expect("strace's child");
        term_all(&[&[supervisor], &children(supervisor as u32)[..]].concat());
        let _ = self.strace.0.wait();
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }

    /// Stops the daemon (not strace, so that strace writes out its log) and returns the trace.
    pub fn stop(mut self) -> String {
        if self.exited().is_none() {
            term_all(&children(self.strace.pid()));
            let _ = self.strace.0.wait();
        }
        std::fs::read_to_string(&self.trace).unwrap_or_default()
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

/// A wrapper that runs a command as uid and gid 65534 with CAP_SYS_ADMIN as its only (ambient)
/// capability: qeaasd as its unit starts it, without systemd.
pub const AS_NOBODY_WITH_CAP_SYS_ADMIN: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+sys_admin",
    "--ambient-caps=-all,+sys_admin",
    "--bounding-set=-all,+sys_admin",
    "--",
];
