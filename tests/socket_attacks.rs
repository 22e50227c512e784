//! Black-box attacks on qeaasd's local socket by another local user (any uid allowed to
//! connect): holding thousands of idle connections, and reading as fast as it can. Each runs the
//! real daemon fed by the simulator, with the attacker and the victims on other uids than root.
//!
//! Each uid is a thread of this test that changed its own credentials with the raw setresuid
//! system call (per thread on Linux; glibc's setuid would change every thread): the kernel records
//! the connecting thread's credentials at `connect`, which is what qeaasd sees.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qeaas_client::proto::{self, Request, Status};

const ATTACKER: u32 = 65534;
const VICTIM: u32 = 65533;
const PROVIDER: u32 = 65532;

/// Runs `f` on a new thread whose uid and gid are `uid` (real, effective and saved).
fn as_uid<T: Send + 'static>(
    uid: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        use rustix::thread::{set_thread_res_gid, set_thread_res_uid};
        let (g, u) = ids(uid);
        set_thread_res_gid(g, g, g).expect("setresgid (thread)");
        set_thread_res_uid(u, u, u).expect("setresuid (thread)");
        f()
    })
}

fn ids(id: u32) -> (rustix::process::Gid, rustix::process::Uid) {
    (
        rustix::process::Gid::from_raw(id),
        rustix::process::Uid::from_raw(id),
    )
}

/// One GET on `s`: the bytes, or what went wrong (a status, or an I/O error such as a timeout).
fn get(s: &mut UnixStream, n: u16, wait_ms: u16) -> Result<Vec<u8>, String> {
    s.set_read_timeout(Some(Duration::from_millis(u64::from(wait_ms) + 3000)))
        .unwrap();
    s.write_all(&proto::encode_request(Request::Get { len: n, wait_ms }))
        .map_err(|e| format!("write: {e}"))?;
    let mut h = [0u8; proto::ANSWER_HEADER_LEN];
    s.read_exact(&mut h).map_err(|e| format!("read: {e}"))?;
    let (st, len) = proto::decode_answer_header(&h).ok_or("bad answer header")?;
    let mut b = vec![0u8; usize::from(len)];
    s.read_exact(&mut b).map_err(|e| format!("read: {e}"))?;
    if st == Status::Ok {
        Ok(b)
    } else {
        Err(format!("{st:?}"))
    }
}

fn connect_and_get(sock: &Path, n: u16) -> Result<Vec<u8>, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    get(&mut s, n, 3000)
}

/// Raises this process's open-file limit to `n` (the attacker's connections are ours).
fn raise_nofile(n: u64) -> bool {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    if l.maximum.is_some_and(|m| m < n) {
        return false;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(n),
            maximum: l.maximum,
        },
    )
    .is_ok()
}

/// qeaasd fed by the simulator at `rate`, feeding the kernel every second, its directory
/// reachable by the test's other uids, started with the open-file limit systemd gives a service
/// that sets none (soft 1024).
fn start(rate: &str, extra: &str, socket: &str) -> (Proc, Daemon) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = dir.path().join("qrandom0");
    let sim = sim(&[
        "--fifo",
        fifo.to_str().unwrap(),
        "--seed",
        "11",
        "--rate",
        rate,
    ]);
    assert!(wait_until(Duration::from_secs(10), || fifo.exists()));
    let port = free_port();
    let text = config(
        dir.path(),
        port,
        &format!(
            "[kernel]\ninterval_secs = 1\nfeed_uncredited = true\n{extra}\n[[source]]\nname = \"qsim\"\nkind = \"quantis\"\npath = {fifo:?}\nretry_secs = 1\n"
        ),
    );
    let text = text.replacen("mode = 0o666\n", &format!("mode = 0o666\n{socket}\n"), 1);
    let d = daemon_in(dir, port, &text, &["prlimit", "--nofile=1024:1024", "--"]);
    (sim, d)
}

fn adds(d: &Daemon) -> f64 {
    d.metric("qeaas_kernel_ioctls_total{ioctl=\"RNDADDENTROPY\"}")
        .unwrap_or(-1.0)
}

/// One uid opens 2000 connections and leaves them idle. Before the fix the worker ran out of file
/// descriptors (accept: EMFILE) at ~1020 and served nobody new: not the socket, not the metrics.
#[test]
fn a_uid_holding_2000_idle_connections_locks_out_nobody() {
    if !require(is_root(), "root") || !require(have("prlimit"), "prlimit") {
        return;
    }
    assert!(raise_nofile(8192), "test needs 8192 open files");
    let (_sim, d) = start("2M", "", "");
    let sock = d.socket.clone();
    // The provider-like client: one long-lived connection, opened before the attack.
    let provider = {
        let sock = sock.clone();
        as_uid(PROVIDER, move || UnixStream::connect(sock).unwrap())
            .join()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(10), || adds(&d) >= 1.0),
        "{}",
        d.log_text()
    );

    let held = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let flood = {
        let (sock, held, done) = (sock.clone(), Arc::clone(&held), Arc::clone(&done));
        as_uid(ATTACKER, move || {
            let mut conns = Vec::new();
            for _ in 0..2000 {
                match UnixStream::connect(&sock) {
                    Ok(c) => conns.push(c),
                    Err(_) => break,
                }
                held.fetch_add(1, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
            // Hold them (the thread is never joined; the process ends with the test).
            std::thread::sleep(Duration::from_secs(3600));
            drop(conns);
        })
    };
    drop(flood);
    wait_until(Duration::from_secs(20), || done.load(Ordering::SeqCst));
    let adds_before = adds(&d);

    // Another uid, with fresh connections.
    let victim = {
        let sock = sock.clone();
        as_uid(VICTIM, move || {
            (0..5)
                .map(|_| connect_and_get(&sock, 32).map(|b| b.len()))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    };
    assert!(
        victim.iter().all(|r| r == &Ok(32)),
        "uid {VICTIM} was not served while uid {ATTACKER} held {} connections: {victim:?}\nlog:\n{}",
        held.load(Ordering::SeqCst),
        d.log_text()
    );
    // The provider's connection still works.
    let mut p = provider;
    let got = as_uid(PROVIDER, move || get(&mut p, 64, 3000).map(|b| b.len()))
        .join()
        .unwrap();
    assert_eq!(got, Ok(64), "the provider's connection");
    // The kernel feeder goes on, and the metrics endpoint answers.
    assert!(
        wait_until(Duration::from_secs(10), || adds(&d) >= adds_before + 2.0),
        "kernel feeding stopped: {} -> {}",
        adds_before,
        adds(&d)
    );
    let refused = d
        .metric("qeaas_socket_connections_refused_total{reason=\"per_uid_cap\"}")
        .unwrap_or(0.0);
    let open = d.metric("qeaas_socket_connections").unwrap_or(f64::MAX);
    assert!(
        refused >= 1900.0 && open <= 70.0,
        "refused {refused}, open {open}"
    );
}

/// Bytes served to `uid` by `threads` connections asking for `n` bytes in a loop until `stop`.
fn reader(
    sock: PathBuf,
    uid: u32,
    threads: usize,
    n: u16,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let (sock, stop, count) = (sock.clone(), Arc::clone(&stop), Arc::clone(&count));
            as_uid(uid, move || {
                let mut s = UnixStream::connect(&sock).unwrap();
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(b) = get(&mut s, n, 1000) {
                        count.fetch_add(b.len() as u64, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect()
}

/// One uid reads as fast as it can with 16 connections; another asks with one. Before the fix
/// each request competed on its own: the attacker's 16 got ~16/17 of the bytes, and the kernel
/// feeder, which looks every half second, mostly found the queue empty.
#[test]
fn a_uid_reading_flat_out_leaves_another_its_share_and_the_feeder_its_schedule() {
    if !require(is_root(), "root") || !require(have("prlimit"), "prlimit") {
        return;
    }
    // ~65 KB/s of pool output: scarce next to what 17 readers ask for.
    let (_sim, d) = start("100k", "[pool]\nqueue_bytes = 8192\n", "");
    assert!(
        wait_until(Duration::from_secs(10), || adds(&d) >= 1.0),
        "{}",
        d.log_text()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (greedy, fair) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut threads = reader(
        d.socket.clone(),
        ATTACKER,
        16,
        1024,
        Arc::clone(&stop),
        Arc::clone(&greedy),
    );
    threads.extend(reader(
        d.socket.clone(),
        VICTIM,
        1,
        1024,
        Arc::clone(&stop),
        Arc::clone(&fair),
    ));
    // Let the queue drain, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let (g0, f0, a0) = (
        greedy.load(Ordering::SeqCst),
        fair.load(Ordering::SeqCst),
        adds(&d),
    );
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let (g1, f1, a1) = (
        greedy.load(Ordering::SeqCst),
        fair.load(Ordering::SeqCst),
        adds(&d),
    );
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let (g, f) = ((g1 - g0) as f64, (f1 - f0) as f64);
    let share = f / (f + g);
    eprintln!(
        "greedy uid {g} bytes, other uid {f} bytes (share {share:.3}), kernel feeds {} in {secs:.1} s",
        a1 - a0
    );
    assert!(g + f > 0.0, "nothing served at all:\n{}", d.log_text());
    assert!(
        share >= 0.3,
        "uid {VICTIM} got {f} bytes, uid {ATTACKER} {g}: a share of {share:.3}, not about half"
    );
    // The daemon's own counters tell the same story over the whole run.
    let served = |uid: u32| {
        d.metric(&format!(
            "qeaas_served_bytes_total{{client=\"uid:{uid}\",face=\"socket\"}}"
        ))
        .unwrap_or(0.0)
    };
    let (sg, sf) = (served(ATTACKER), served(VICTIM));
    assert!(
        sf >= f1 as f64 && sg >= g1 as f64 && sf / (sf + sg) >= 0.25,
        "served by the daemon: uid {VICTIM} {sf}, uid {ATTACKER} {sg}"
    );
    // Every second: at least half the feeds of the window.
    assert!(
        a1 - a0 >= (secs / 2.0).floor(),
        "the kernel feeder fed {} times in {secs:.1} s",
        a1 - a0
    );
}

/// A client that sends part of a request and stalls is closed after `request_timeout_ms`, and
/// counted; a client that asks and then never reads its answer is closed as quickly.
#[test]
fn a_client_that_stalls_mid_request_is_closed() {
    if !require(is_root(), "root") || !require(have("prlimit"), "prlimit") {
        return;
    }
    let (_sim, d) = start("2M", "", "request_timeout_ms = 300");
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(&proto::encode_request(Request::Status)[..3])
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    // Closed by the daemon: end of file, not our read timeout.
    assert_eq!(s.read(&mut b).unwrap(), 0);
    assert!(d.metric("qeaas_socket_timeouts_total") >= Some(1.0));
    // An idle connection (no byte sent) is not timed out: it may wait for its next request.
    let mut idle = UnixStream::connect(&d.socket).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(get(&mut idle, 16, 1000).map(|b| b.len()), Ok(16));
}
