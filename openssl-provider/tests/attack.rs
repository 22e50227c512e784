//! Attacks on the provider, run against Debian's OpenSSL 3.0 with fake daemons that answer every
//! GET with one constant byte (0x5a): the bytes an attacker would like a victim to use as keys.
//! Each test passes only if the victim fails closed instead of printing them.
//!
//! The fake daemons and the privileged program run as other users, so everything they need is
//! staged in a world-readable temporary directory: the checkout may be a 0700 home.

#[macro_use]
#[allow(unused_macros)]
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::suite::GENERATOR;
use common::*;

/// The fake daemons' byte, as `openssl rand -hex` would print 32 of them.
fn evil_hex(n: usize) -> String {
    "5a".repeat(n)
}

const NOBODY: u32 = 65534;

/// A temporary directory others can read and traverse, with a `sock/` anyone may bind in.
fn stage() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("qeaas-provider-attack")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = d.path().join("sock");
    std::fs::create_dir(&s).unwrap();
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// Copies `from` into the stage with `mode`.
fn put(stage: &Path, from: &Path, mode: u32) -> PathBuf {
    let to = stage.join(from.file_name().unwrap());
    std::fs::copy(from, &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    to
}

/// A C driver of tests/c, compiled against Debian's OpenSSL and staged.
fn driver(stage: &Path, name: &str) -> PathBuf {
    let b = Ossl::system().driver(&manifest_dir().join(format!("tests/c/{name}.c")));
    put(stage, &b, 0o755)
}

/// Starts a fake daemon at `stage/sock/NAME.sock` as `uid` (none: as the test's own user),
/// delaying every GET by `delay_ms`; returns once it listens.
fn fake_daemon(stage: &Path, name: &str, uid: Option<u32>, delay_ms: u32) -> (Proc, PathBuf) {
    let bin = driver(stage, "fake_daemon");
    let sock = stage.join("sock").join(format!("{name}.sock"));
    let mut cmd = Command::new(&bin);
    cmd.arg(&sock)
        .arg("5a")
        .arg(delay_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(u) = uid {
        cmd.uid(u).gid(u);
    }
    let mut p = Proc(retry_busy(|| cmd.spawn()).expect("start fake daemon"));
    let mut line = String::new();
    BufReader::new(p.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "fake daemon did not start");
    (p, sock)
}

/// Item 2: a socket served by a user other than root or the daemon's user is not trusted,
/// whether the configuration or `QEAAS_SOCKET` names it.
#[test]
fn a_socket_served_by_another_user_is_refused() {
    if !require(is_root(), "root (to run the fake daemon as nobody)") {
        return;
    }
    let st = stage();
    let (_fake, sock) = fake_daemon(st.path(), "nobody", Some(NOBODY), 0);
    let o = Ossl::system();
    // Named by the configuration file.
    let conf = write_conf(
        &st.path().join("conf.cnf"),
        &format!("socket = {}", sock.display()),
        GENERATOR,
    );
    let out = o.run(&conf, &["rand", "-hex", "32"]);
    let (stdout, stderr) = text(&out);
    println!("socket = ...: status {}\n{stdout}{stderr}", out.status);
    assert!(
        !stdout.contains(&evil_hex(32)),
        "openssl rand printed the bytes of a daemon run by uid {NOBODY}: {stdout}"
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("uid 65534"), "{stderr}");
    // Named by the environment.
    let conf = write_conf(&st.path().join("env.cnf"), "", GENERATOR);
    let out = retry_busy(|| {
        Command::new(&o.bin)
            .args(["rand", "-hex", "32"])
            .env("OPENSSL_CONF", &conf)
            .env("QEAAS_SOCKET", &sock)
            .output()
    })
    .unwrap();
    let (stdout, stderr) = text(&out);
    println!("QEAAS_SOCKET: status {}\n{stdout}{stderr}", out.status);
    assert!(
        !stdout.contains(&evil_hex(32)),
        "openssl rand printed the bytes of a daemon run by uid {NOBODY}: {stdout}"
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
}

/// Item 2: a setuid program (AT_SECURE) that loads the provider from a configuration without a
/// `socket =` line does not take its socket from the environment of the user who ran it. The
/// fake daemon runs as root here, so only the AT_SECURE rule can stop it.
#[test]
fn qeaas_socket_is_ignored_in_a_setuid_program() {
    if !require(is_root(), "root (to install a setuid-root program)") {
        return;
    }
    let st = stage();
    let (_fake, sock) = fake_daemon(st.path(), "root", None, 0);
    let module = put(st.path(), &module(), 0o644);
    let conf = st.path().join("system.cnf");
    std::fs::write(
        &conf,
        format!(
            "openssl_conf = openssl_init\n\n[openssl_init]\nrandom = random_sect\n\
             providers = provider_sect\n\n[provider_sect]\ndefault = default_sect\nqeaas = qeaas_sect\n\n\
             [default_sect]\nactivate = 1\n\n[qeaas_sect]\nmodule = {}\nactivate = 1\n\n\
             [random_sect]\n{GENERATOR}\n",
            module.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let prog = driver(st.path(), "secure_rand");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out = retry_busy(|| {
        Command::new(&prog)
            .arg(&conf)
            .arg("32")
            .env("QEAAS_SOCKET", &sock)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
    })
    .unwrap();
    let (stdout, stderr) = text(&out);
    println!(
        "setuid program run by nobody: status {}\n{stdout}{stderr}",
        out.status
    );
    assert!(
        stderr.contains("AT_SECURE=1"),
        "the program did not run with AT_SECURE (nosuid mount?): {stderr}"
    );
    assert!(
        !stdout.contains(&evil_hex(32)),
        "a setuid program took its bytes from the caller's QEAAS_SOCKET: {stdout}"
    );
}

/// Item 3: a thread forks while another thread is inside a refill (the daemon holds its GET for
/// two seconds). The child must draw bytes of its own, not hang on the lock the refilling thread
/// held at fork time (the driver's alarm turns a hang into "child killed by signal 14").
#[test]
fn fork_in_a_thread_during_a_refill_does_not_block_the_child() {
    let st = stage();
    let (_fake, sock) = fake_daemon(st.path(), "slow", None, 2000);
    let me = rustix::process::geteuid().as_raw();
    let conf = write_conf(
        &st.path().join("slow.cnf"),
        &format!("socket = {}\ndaemon_user = {me}", sock.display()),
        GENERATOR,
    );
    let drv = driver(st.path(), "forkthread");
    let out = retry_busy(|| {
        Command::new(&drv)
            .args(["32", "500"])
            .env("OPENSSL_CONF", &conf)
            .output()
    })
    .unwrap();
    let (stdout, stderr) = text(&out);
    println!("status {}\n{stdout}{stderr}", out.status);
    assert!(
        !stdout.contains("killed by signal"),
        "the child hung on a lock held at fork: {stdout}"
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let tags: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once(' ').map(|t| t.0))
        .collect();
    assert!(tags.contains(&"child"), "{stdout}");
}

/// Item 3: a grandchild whose pid recycles its grandparent's (given through ns_last_pid) must
/// not reuse the bytes the grandparent had batched: all draws differ (real qeaasd, so bytes
/// differ unless reused).
#[test]
fn a_grandchild_with_a_recycled_pid_gets_fresh_bytes() {
    if !require(
        is_root() && Path::new("/proc/sys/kernel/ns_last_pid").exists(),
        "root and /proc/sys/kernel/ns_last_pid (to choose a child's pid)",
    ) {
        return;
    }
    let drv = Ossl::system().driver(&manifest_dir().join("tests/c/recycle.c"));
    let d = Daemon::start(&[]);
    let conf = d.openssl_conf("recycle.cnf", "", GENERATOR);
    let out = retry_busy(|| {
        Command::new(&drv)
            .arg("32")
            .env("OPENSSL_CONF", &conf)
            .output()
    })
    .unwrap();
    let (stdout, stderr) = text(&out);
    println!("status {}\n{stdout}{stderr}", out.status);
    assert_ne!(
        out.status.code(),
        Some(4),
        "could not give the grandchild its grandparent's pid: {stderr}"
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let draws: std::collections::HashMap<&str, &str> =
        stdout.lines().filter_map(|l| l.split_once(' ')).collect();
    let (after, grandchild) = (draws["parent-after"], draws["grandchild"]);
    assert_ne!(
        after, grandchild,
        "the grandchild with a recycled pid drew the bytes its grandparent drew"
    );
    assert!(is_hex(after, 32) && is_hex(grandchild, 32));
}
