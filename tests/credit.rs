//! Config to credit: what a configuration claims never turns a file, a pipe or the kernel's own
//! random device into credited hardware entropy, and a file is never read twice. Black-box: the
//! real `qeaasd` under `strace -e trace=ioctl`, its metrics and its log.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// `len` bytes of the simulator's noise in the regular file `dir/name`.
fn noise_file(dir: &Path, name: &str, len: u64) -> PathBuf {
    let out = Command::new(SIM)
        .args(["--stdout", &len.to_string(), "--seed", "11"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.len() as u64, len);
    let p = dir.join(name);
    std::fs::write(&p, out.stdout).unwrap();
    p
}

/// What [`traced_run`] saw: credited RNDADDENTROPY calls, bytes read, exit code, log.
type Run = (Vec<(u32, u32)>, Option<f64>, Option<Option<i32>>, String);

/// Runs qeaasd on `source` (a `[[source]]` table) with kernel feeding every second, until it
/// exits or has run `secs` seconds; returns its credited RNDADDENTROPY calls, the bytes it read
/// from the source (when it ran), its exit code (when it exited) and its log.
fn traced_run(dir: &Path, source: &str, secs: u64) -> Run {
    let port = free_port();
    let text = config(
        dir,
        port,
        &format!("[kernel]\ninterval_secs = 1\nfeed_bytes = 64\n{source}"),
    );
    let mut t = Traced::start(dir, port, &text);
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut read = None;
    while std::time::Instant::now() < deadline && t.exited().is_none() {
        if let Some(r) = t.metric("qeaas_source_read_bytes_total{source=\"src\"}") {
            read = Some(r);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let exit = t.exited();
    let log = t.log_text();
    let trace = t.stop();
    let credited = traced_adds(&trace)
        .into_iter()
        .filter(|&(credit, _)| credit > 0)
        .collect();
    (credited, read, exit, log)
}

/// A regular file or a named pipe configured `hardware = true`: before the fix the file was
/// reopened at its end and its same bytes credited again, to the kernel too, and the pipe's bytes
/// were credited to the kernel as hardware. Neither may be credited, and `hardware = true` on
/// either is a configuration error.
#[test]
fn attack_a_file_or_pipe_declared_hardware_is_never_credited_nor_reread() {
    if !require(is_root(), "root") || !require(have("strace"), "strace") {
        return;
    }
    const LEN: u64 = 65536;
    for kind in ["regular file", "named pipe"] {
        let dir = tempfile::tempdir().unwrap();
        let (path, _sim) = if kind == "regular file" {
            (noise_file(dir.path(), "noise.bin", LEN), None)
        } else {
            let fifo = dir.path().join("qrandom0");
            let sim = sim(&[
                "--fifo",
                fifo.to_str().unwrap(),
                "--rate",
                "2M",
                "--seed",
                "5",
            ]);
            assert!(wait_until(Duration::from_secs(10), || fifo.exists()));
            (fifo, Some(sim))
        };
        let source = format!(
            "[[source]]\nname = \"src\"\nkind = \"file\"\npath = {path:?}\nhardware = true\nretry_secs = 1\n"
        );
        let (credited, read, exit, log) = traced_run(dir.path(), &source, 8);
        assert!(
            credited.is_empty(),
            "{kind} declared hardware: the kernel was credited {} times (entropy_count, buf_size): {credited:?}\n{log}",
            credited.len()
        );
        if kind == "regular file" {
            assert!(
                read.unwrap_or(0.0) <= LEN as f64,
                "the {LEN}-byte file was read again: {read:?} bytes read\n{log}"
            );
        }
        assert_eq!(
            exit,
            Some(Some(78)),
            "{kind} declared hardware: a configuration error (exit 78)\n{log}"
        );
        assert!(
            log.contains("hardware = true") && log.contains(kind),
            "the error names the claim and what the path is:\n{log}"
        );
    }
}

/// The end of a regular file is final: its bytes are read once, credited once (to the pool, as
/// simulated data), and the source is reported exhausted, never reopened.
#[test]
fn a_regular_file_is_read_once_to_its_end() {
    const LEN: u64 = 65536;
    let dir = tempfile::tempdir().unwrap();
    let path = noise_file(dir.path(), "noise.bin", LEN);
    let port = free_port();
    let text = config(
        dir.path(),
        port,
        &format!(
            "[kernel]\nenable = false\n[[source]]\nname = \"f\"\nkind = \"file\"\npath = {path:?}\nretry_secs = 1\n"
        ),
    );
    let d = daemon_in(dir, port, &text, &[]);
    let exhausted = wait_until(Duration::from_secs(10), || {
        d.metric("qeaas_source_state{source=\"f\",state=\"exhausted\"}") == Some(1.0)
    });
    // Reopening happened within 200 ms of the end before: give it many chances.
    std::thread::sleep(Duration::from_secs(2));
    let read = d.metric("qeaas_source_read_bytes_total{source=\"f\"}");
    assert_eq!(read, Some(LEN as f64), "{}", d.log_text());
    assert!(exhausted, "{}", d.log_text());
    // 6.5 bits per byte at most, for the bytes past the start-up test and the hold-back.
    let credit = d.metric("qeaas_source_credit_total{source=\"f\"}").unwrap();
    assert!(credit <= 6.5 * (LEN - 2048) as f64, "{credit}");
    assert!(credit > 0.0);
    assert_eq!(
        d.metric("qeaas_source_unplugs_total{source=\"f\"}"),
        Some(0.0)
    );
    assert!(
        d.log_text().contains("end of file"),
        "the log says why the source stopped:\n{}",
        d.log_text()
    );
}

/// A `mknod` copy of /dev/urandom (character device 1:9) under another name, configured as a
/// Quantis, as a file, and as a file declared hardware: its bytes are never read, never credited,
/// and the daemon says what the node is.
#[test]
fn attack_a_mknod_copy_of_urandom_is_never_a_source() {
    if !require(is_root(), "root") || !require(have("strace"), "strace") {
        return;
    }
    for table in [
        "kind = \"quantis\"",
        "kind = \"file\"",
        "kind = \"file\"\nhardware = true",
        "kind = \"hwrng\"",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("qrandom0");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o644),
            rustix::fs::makedev(1, 9),
        )
        .expect("mknod c 1 9");
        let source =
            format!("[[source]]\nname = \"src\"\n{table}\npath = {node:?}\nretry_secs = 1\n");
        let (credited, read, _exit, log) = traced_run(dir.path(), &source, 5);
        assert!(credited.is_empty(), "{table}: {credited:?}\n{log}");
        assert_eq!(read.unwrap_or(0.0), 0.0, "{table}: bytes read\n{log}");
        assert!(log.contains("not a noise source"), "{table}:\n{log}");
    }
}
