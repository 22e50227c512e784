//! The worker never runs as root, and the supervisor says how its worker ended: black-box tests of
//! `qeaasd run` started as root without systemd (as scripts/demo.sh does), and under the unit's
//! credentials emulated with setpriv.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A simulated Quantis on a pipe in `dir` that the worker's user can read (as udev gives a device
/// node its group), and the `[[source]]` for it.
fn source(dir: &Path) -> (Proc, String) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = dir.join("qrandom0");
    let p = sim(&[
        "--fifo",
        fifo.to_str().unwrap(),
        "--seed",
        "5",
        "--rate",
        "1M",
    ]);
    assert!(wait_until(Duration::from_secs(10), || fifo.exists()));
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o644)).unwrap();
    let src = format!("[[source]]\nname = \"qsim\"\nkind = \"quantis\"\npath = {fifo:?}\n");
    (p, src)
}

/// `qeaasd run` (staged, readable by every uid) on `text`, with `args` after `run`, under
/// `wrapper`; not waited for.
fn start(dir: &Path, text: &str, args: &[&str], wrapper: &[&str]) -> (Proc, std::path::PathBuf) {
    let cfg = dir.join("qeaasd.toml");
    std::fs::write(&cfg, text).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = dir.join("qeaasd.log");
    let qeaasd = staged(QEAASD);
    let mut cmd = match wrapper.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(&qeaasd);
            c
        }
        None => Command::new(&qeaasd),
    };
    cmd.args(["-c", cfg.to_str().unwrap(), "run"])
        .args(args)
        .env("QEAAS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    (Proc(retry_busy(|| cmd.spawn()).expect("start qeaasd")), log)
}

/// The worker's pid: the process at the other end of the local socket.
fn worker_pid(socket: &Path) -> Option<u32> {
    let s = UnixStream::connect(socket).ok()?;
    Some(
        rustix::net::sockopt::socket_peercred(&s)
            .ok()?
            .pid
            .as_raw_nonzero()
            .get() as u32,
    )
}

/// Waits up to 20 s for a worker to serve `socket`, and returns its pid; panics with the log.
fn wait_for_worker(socket: &Path, log: &Path) -> u32 {
    let mut worker = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            worker = worker_pid(socket);
            worker.is_some()
        }),
        "no worker served {}:\n{}",
        socket.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
    worker.unwrap()
}

fn status_line(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_string()
}

/// Started as root with the default configuration (no `user`): the worker must not be root. It
/// either runs as an unprivileged user or the daemon refuses to start and says why. Before the
/// fix it ran as uid 0 (without capabilities, but able to write every root-owned file).
#[test]
fn started_as_root_the_worker_never_runs_as_root() {
    if !require(is_root(), "root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_sim, src) = source(dir.path());
    let port = free_port();
    let text = config(
        dir.path(),
        port,
        &format!("[kernel]\nfeed_uncredited = true\n{src}"),
    );
    let (mut d, log) = start(dir.path(), &text, &[], &[]);
    let socket = dir.path().join("entropy.sock");
    let mut worker = None;
    let ended = wait_until(Duration::from_secs(20), || {
        worker = worker_pid(&socket);
        worker.is_some() || d.0.try_wait().unwrap().is_some()
    });
    assert!(ended, "neither served nor exited");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    match worker {
        Some(pid) => {
            let uid = status_line(pid, "Uid:");
            assert!(
                uid.split_whitespace().skip(1).all(|u| u != "0"),
                "the worker runs as root: {uid}\nlog:\n{log}"
            );
            assert!(status_line(pid, "CapEff:").ends_with("0000000000000000"));
        }
        None => {
            // No "qeaas" user on this machine: refused, naming the user and the way out.
            let code = d.0.wait().unwrap().code();
            assert_eq!(code, Some(78), "{log}");
            assert!(
                log.contains("\"qeaas\"") && log.contains("--allow-root-worker"),
                "{log}"
            );
        }
    }
}

/// `kill -9` of the worker: the supervisor logs how the worker died before it exits (70).
/// Before the fix it exited 70 without a word. Under the unit's credentials (setpriv), so that
/// the test does not depend on the root start's user switch.
#[test]
fn a_killed_worker_is_reported_by_the_supervisor() {
    if !require(is_root(), "root") || !require(have("setpriv"), "setpriv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_sim, src) = source(dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let text = config(
        dir.path(),
        port,
        &format!("[kernel]\ninterval_secs = 1\nfeed_uncredited = true\n{src}"),
    );
    let (mut d, log) = start(dir.path(), &text, &[], AS_NOBODY_WITH_CAP_SYS_ADMIN);
    let socket = dir.path().join("entropy.sock");
    let worker = wait_for_worker(&socket, &log);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(worker as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let code = d.0.wait().unwrap().code();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(70), "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("killed by signal 9") && last.contains("SIGKILL"),
        "the supervisor's last words: {last:?}\nlog:\n{log}"
    );
}

/// Started as root as scripts/demo.sh starts it, with `user = "nobody"`: the worker is nobody
/// (real, effective and saved uid), has no capability at all, no_new_privs, and still reads its
/// source (given nobody's group, as udev would give a device) and serves; the supervisor stays
/// root with CAP_SYS_ADMIN only.
#[test]
fn started_as_root_with_a_user_the_worker_is_that_user_with_nothing() {
    if !require(is_root(), "root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_sim, src) = source(dir.path());
    let port = free_port();
    let text = format!(
        "user = \"nobody\"\n{}",
        config(
            dir.path(),
            port,
            &format!("[kernel]\ninterval_secs = 1\nfeed_uncredited = true\n{src}")
        )
    );
    let (d, log) = start(dir.path(), &text, &[], &[]);
    let socket = dir.path().join("entropy.sock");
    let worker = wait_for_worker(&socket, &log);
    assert_eq!(
        status_line(worker, "Uid:")
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>(),
        ["65534"; 4]
    );
    assert_eq!(
        status_line(worker, "Gid:")
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>(),
        ["65534"; 4]
    );
    for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert!(
            status_line(worker, caps).ends_with("0000000000000000"),
            "{}",
            status_line(worker, caps)
        );
    }
    assert_eq!(
        status_line(worker, "NoNewPrivs:").split_whitespace().nth(1),
        Some("1")
    );
    // It still serves pool bytes and feeds the kernel through the supervisor.
    let (st, bytes) = socket_get(&socket, 32);
    assert_eq!((st, bytes.len()), (0, 32));
    let m = format!("127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(15), || metric(
        &scrape(&m).unwrap_or_default(),
        "qeaas_kernel_ioctls_total{ioctl=\"RNDADDENTROPY\"}"
    ) >= Some(2.0)));
    assert_eq!(
        status_line(d.pid(), "Uid:").split_whitespace().nth(1),
        Some("0")
    );
    assert_eq!(status_line(d.pid(), "CapEff:"), "CapEff:\t0000000000200000");
}

/// A root user, or a user that does not exist, is a configuration error; `--allow-root-worker`
/// keeps a root worker, and says so.
#[test]
fn a_root_worker_needs_allow_root_worker() {
    if !require(is_root(), "root") {
        return;
    }
    for (user, want) in [
        ("root", "is uid 0"),
        ("qeaas-no-such-user", "does not exist"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (_sim, src) = source(dir.path());
        let text = format!(
            "user = \"{user}\"\n{}",
            config(
                dir.path(),
                free_port(),
                &format!("[kernel]\nenable = false\n{src}")
            )
        );
        let (mut d, log) = start(dir.path(), &text, &[], &[]);
        let code = d.0.wait().unwrap().code();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(code, Some(78), "{log}");
        assert!(
            log.contains(want) && log.contains("--allow-root-worker"),
            "{log}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (_sim, src) = source(dir.path());
    let text = format!(
        "user = \"root\"\n{}",
        config(
            dir.path(),
            free_port(),
            &format!("[kernel]\nenable = false\n{src}")
        )
    );
    let (_d, log) = start(dir.path(), &text, &["--allow-root-worker"], &[]);
    let socket = dir.path().join("entropy.sock");
    let worker = wait_for_worker(&socket, &log);
    assert_eq!(
        status_line(worker, "Uid:").split_whitespace().nth(1),
        Some("0")
    );
    assert!(status_line(worker, "CapEff:").ends_with("0000000000000000"));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("worker runs as root (--allow-root-worker)"));
}

/// A worker that dropped to its user must still die with its supervisor: the credential change
/// clears the parent-death signal, and an orphaned worker would go on serving the socket (and
/// holding its paths and port) with no supervisor, as `scripts/demo.sh` once left behind.
#[test]
fn a_worker_that_switched_user_dies_with_its_supervisor() {
    if !require(is_root(), "root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_sim, src) = source(dir.path());
    let port = free_port();
    let text = format!(
        "user = \"nobody\"\n{}",
        config(
            dir.path(),
            port,
            &format!("[kernel]\nfeed_uncredited = true\n{src}")
        )
    );
    let (mut d, log) = start(dir.path(), &text, &[], &[]);
    let worker = wait_for_worker(&dir.path().join("entropy.sock"), &log);
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    let gone = || {
        !Path::new(&format!("/proc/{worker}")).exists()
            || status_line(worker, "State:").contains("zombie")
    };
    assert!(
        wait_until(Duration::from_secs(10), gone),
        "the worker (pid {worker}) outlived its supervisor by 10 s:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
