//! Device-in-the-loop (issue 6): the firmware core with DTLS 1.3 (wolfSSL, riscv32imc,
//! `firmware-esp32/qemu-dtls`) boots in `qemu-system-riscv32 -M virt` with a 160 KB heap, reaches
//! a real qeaas-coapd (with qeaasd and qeaas-sim behind it) through virtio-net and QEMU's user
//! network (the host is 10.0.2.2), handshakes, verifies the server, fetches 32 bytes from
//! /entropy and credits them to its device pool. The daemon's per-client counter must rise by
//! exactly what the device fetched.
//!
//! Budgets: every configuration's instructions (setup + handshake, and one request), peak
//! session heap and stack are asserted against `firmware-esp32/budgets.toml`, one file for all.
//! Instruction counts under `-icount` are deterministic up to the server's random choices, so
//! this is no timed test. `QEAAS_DEVICE_FIGURES=<file>` appends the device's `FIG` lines to that
//! file (for firmware-esp32/README.md); `QEAAS_QEMU_ARGS` adds arguments to every qemu command
//! line (e.g. a TCG plugin to profile the device).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cargo_build, have, make_pki, profile_dir, require, Stack, ID, KEY};

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("firmware-esp32/qemu-dtls")
}

/// Builds the bare-metal image once (its own workspace, toolchain and target).
fn firmware() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = firmware_dir();
            let mut cmd = Command::new("cargo");
            cmd.args(["build", "--release", "--locked"])
                .current_dir(&dir);
            // The outer cargo's settings must not leak into the nested riscv32 build.
            for v in [
                "CARGO_TARGET_DIR",
                "RUSTUP_TOOLCHAIN",
                "RUSTC",
                "RUSTFLAGS",
                "CARGO",
            ] {
                cmd.env_remove(v);
            }
            assert!(
                cmd.status().expect("run cargo").success(),
                "firmware build failed"
            );
            dir.join("target/riscv32imc-unknown-none-elf/release/qeaas-qemu-dtls")
        })
        .clone()
}

/// Writes the provisioning partition `<dir>/<label>.part` with `qeaas-provision` (the tool an
/// operator uses): server 10.0.2.2 (the host, from qemu's user network) at `port`, plus `args`.
fn provision(dir: &Path, label: &str, port: u16, args: &[&str]) -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| cargo_build(&["-p", "qeaas-device", "--bin", "qeaas-provision"]));
    let out = dir.join(format!("{label}.part"));
    let o = Command::new(profile_dir().join("qeaas-provision"))
        .arg("--out")
        .arg(&out)
        .args(["--host", "10.0.2.2", "--port", &port.to_string()])
        .args(args)
        .output()
        .expect("run qeaas-provision");
    assert!(o.status.success(), "qeaas-provision {args:?}: {o:?}");
    out
}

/// Runs the image labelled `config` with the provisioning partition `part`; its semihosting
/// output.
fn run_device(config: &str, part: &Path) -> (bool, String) {
    run_device_with(config, part, &[], 180)
}

/// As [`run_device`], with extra device arguments and a time limit in seconds.
fn run_device_with(config: &str, part: &Path, extra: &[&str], secs: u32) -> (bool, String) {
    let out = qemu(config, part, extra, secs)
        .output()
        .expect("run qemu-system-riscv32");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The emulator running the image with the partition `part` (and `extra` device arguments),
/// killed after `secs` seconds.
fn qemu(config: &str, part: &Path, extra: &[&str], secs: u32) -> Command {
    let mut semi = format!(
        "enable=on,target=native,arg=qeaas-qemu-dtls,arg={config},arg={}",
        part.display()
    );
    for a in extra {
        semi += &format!(",arg={a}");
    }
    let mut cmd = Command::new("timeout");
    cmd.args([
        &secs.to_string(),
        "qemu-system-riscv32",
        "-M",
        "virt",
        "-cpu",
        "rv32,a=false",
    ])
    .args([
        "-m",
        "32M",
        "-bios",
        "none",
        "-nographic",
        "-icount",
        "shift=0",
    ])
    .args(["-semihosting-config", &semi])
    .args([
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-device,netdev=n0",
    ])
    // For profiling, e.g. `-plugin <file>` (whitespace-separated, none by default).
    .args(
        std::env::var("QEAAS_QEMU_ARGS")
            .unwrap_or_default()
            .split_whitespace(),
    )
    .arg("-kernel")
    .arg(firmware());
    cmd
}

fn result_field(out: &str, key: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.starts_with("RESULT "))?;
    value(line, key)
}

/// The device's first output line that starts with `prefix` (e.g. `"FIG mlkem-psk "`).
fn line_of<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{out}"))
}

/// The number after `key=` on a line of the device's `key=value` fields.
fn value(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// As [`value`], for a field that must be there.
fn field(line: &str, key: &str) -> u64 {
    value(line, key).unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn record_figures(out: &str) {
    if let Some(path) = std::env::var_os("QEAAS_DEVICE_FIGURES") {
        let figs: String = out
            .lines()
            .filter(|l| l.starts_with("FIG ") || l.starts_with("session: "))
            .map(|l| format!("{l}\n"))
            .collect();
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(figs.as_bytes()))
            .expect("write figures");
    }
}

/// One configuration's budget (see `firmware-esp32/budgets.toml`).
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Budget {
    instructions: u64,
    session_heap: u64,
    request_instructions: u64,
    stack: u64,
}

/// The project's goal for a configuration: reported, not asserted.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Goal {
    instructions: u64,
    session_heap: u64,
}

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Budgets {
    /// Goals not met yet (a goal met becomes the budget).
    #[serde(default)]
    goal: BTreeMap<String, Goal>,
    budget: BTreeMap<String, Budget>,
}

fn budgets() -> Budgets {
    let path = firmware_dir().parent().unwrap().join("budgets.toml");
    let text = std::fs::read_to_string(&path).expect("read budgets.toml");
    toml::from_str(&text).expect("parse budgets.toml")
}

/// `key=value` of the device's `FIG <config> ...` line.
fn fig(out: &str, config: &str, key: &str) -> u64 {
    field(line_of(out, &format!("FIG {config} ")), key)
}

/// Asserts the run's figures against the configuration's budget; prints them and the goal.
fn check_budget(config: &str, out: &str) {
    let b = budgets();
    let budget = b
        .budget
        .get(config)
        .unwrap_or_else(|| panic!("no budget for {config} in budgets.toml"));
    let instructions = fig(out, config, "setup_instr") + fig(out, config, "handshake_instr");
    let heap = fig(out, config, "handshake_heap_peak") - fig(out, config, "heap_before");
    let request = fig(out, config, "request_instr");
    let stack = fig(out, config, "stack_peak");
    eprintln!(
        "{config}: {instructions} instructions (budget {}), session heap {heap} B (budget {}), \
         request {request} instructions (budget {}), stack {stack} B (budget {})",
        budget.instructions, budget.session_heap, budget.request_instructions, budget.stack
    );
    if let Some(g) = b.goal.get(config) {
        eprintln!(
            "{config}: goal {} instructions, {} B session heap: {}",
            g.instructions,
            g.session_heap,
            if instructions <= g.instructions && heap <= g.session_heap {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    assert!(
        instructions <= budget.instructions,
        "{config}: {instructions} instructions, budget {}",
        budget.instructions
    );
    assert!(
        heap <= budget.session_heap,
        "{config}: {heap} B session heap, budget {}",
        budget.session_heap
    );
    assert!(
        request <= budget.request_instructions,
        "{config}: {request} request instructions, budget {}",
        budget.request_instructions
    );
    assert!(
        stack <= budget.stack,
        "{config}: {stack} B stack, budget {}",
        budget.stack
    );
}

/// One device run (two fetches of 32 bytes: the budget's request figures are the second's):
/// the frontend's counter rises by exactly the bytes the device fetched, and the run kept to
/// its budget.
fn fetch_once(s: &Stack, config: &str, args: &[&str]) {
    let part = provision(s.dir.path(), config, s.port, args);
    let before = s.served_to_frontend();
    let (ok, out) = run_device(config, &part);
    assert!(
        ok,
        "{config}: device failed:\n{out}\ncoapd log:\n{}",
        s.log()
    );
    record_figures(&out);
    let fetched = result_field(&out, "fetched_bytes").expect("RESULT line");
    assert_eq!(result_field(&out, "fetches_ok"), Some(2), "{out}");
    assert_eq!(fetched, 2 * 32, "{out}");
    // 8 bits per byte, up to the device pool's cap (the TRNG's credit may fill part of it).
    let credited = result_field(&out, "credited_bits").expect("credited_bits");
    assert!(credited > 0 && credited <= 8 * fetched, "{out}");
    assert_eq!(s.served_to_frontend() - before, fetched, "{out}");
    check_budget(config, &out);
}

fn qemu_present() -> bool {
    require(
        have("qemu-system-riscv32"),
        "qemu-system-riscv32 (qemu-system-misc)",
    ) && require(
        have("riscv64-unknown-elf-gcc"),
        "riscv64-unknown-elf-gcc (gcc-riscv64-unknown-elf, picolibc-riscv64-unknown-elf)",
    )
}

/// One test, so that one qemu runs at a time: the frontend gives a handshake 3 s of real time,
/// and the slowest configuration (P-256 + ECDSA, ~190 M emulated instructions) must not compete
/// with another emulator for the CPU.
#[test]
fn device_in_qemu_fetches_over_dtls13_in_four_configurations() {
    if !qemu_present() || !require(have("openssl"), "openssl (certificate generation)") {
        return;
    }
    ml_kem_512_with_ml_dsa_44_or_psk();
    ecdsa_certificates();
    client_certificate();
    reconnect_after_a_server_restart();
    not_before_floor();
    soak();
}

/// Issue 13, server identity: the not-before floor against the real frontend. The server's
/// certificate is rotated (same key and name, notBefore 2026-06-01 instead of 2025-01-01, both
/// valid under the device's trust anchor): a device reports the new notBefore as its floor.
/// Then the frontend rolls back to the old certificate: a device with that floor fails the
/// handshake and is served nothing, while one without a floor accepts it (the control).
fn not_before_floor() {
    const NEW_NB: u64 = 1_780_272_000; // 2026-06-01T00:00:00Z
    const OLD_NB: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z
    let mut key = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let name = "coapd.qeaas.test";
    let old = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, name, 9).unwrap();
    let new =
        qeaas_wolfssl_sys::x509::self_signed_mldsa44_from(&mut key, name, 10, b"260601000000Z")
            .unwrap();
    let key_der = key.private_der().unwrap();
    let mut s = Stack::start(|dir| {
        std::fs::write(dir.join("old.der"), &old).unwrap();
        std::fs::write(dir.join("new.der"), &new).unwrap();
        std::fs::write(dir.join("mldsa-key.der"), &key_der).unwrap();
        format!(
            "[certificate]\nchain = {:?}\nkey = {:?}\n",
            dir.join("new.der"),
            dir.join("mldsa-key.der")
        )
    });
    let anchor = s.dir.path().join("old.der");
    let part = provision(
        s.dir.path(),
        "floor",
        s.port,
        &["--ca", anchor.to_str().unwrap(), "--server-name", name],
    );
    let floor_line = |out: &str, key: &str| field(line_of(out, "FLOOR "), key);
    let (ok, out) = run_device_with("mlkem-mldsa", &part, &["floor", "0"], 180);
    assert!(ok, "rotated certificate refused:\n{out}");
    assert_eq!(floor_line(&out, "server_not_before"), NEW_NB, "{out}");
    assert_eq!(floor_line(&out, "floor"), NEW_NB, "{out}");

    s.restart_coapd(|c| c.replace("new.der", "old.der"));
    let before = s.served_to_frontend();
    let (ok, out) = run_device_with("mlkem-mldsa", &part, &["floor", &NEW_NB.to_string()], 180);
    assert!(
        !ok,
        "a certificate older than the floor was accepted:\n{out}"
    );
    assert!(out.contains("DTLS failed"), "{out}");
    assert_eq!(s.served_to_frontend(), before);
    let (ok, out) = run_device_with("mlkem-mldsa", &part, &["floor", "0"], 180);
    assert!(ok, "the old certificate without a floor:\n{out}");
    assert_eq!(floor_line(&out, "server_not_before"), OLD_NB, "{out}");
}

/// Issue 13, reconnect: a device fetching every second; the frontend restarts with the same
/// `ticket_key_file`. The device's reconnect policy (the ESP32-C3 shell's) must notice the lost
/// session and make exactly one new session that is served fresh bytes its pool credits; every
/// byte it fetched is counted by the daemon. With ML-KEM-512 + ML-DSA-44 the new session
/// resumes with the ticket its first session got (no certificate verified: its cost is asserted
/// as configuration `mlkem-mldsa-resumed`); in PSK mode it is a full PSK handshake
/// (`mlkem-psk-reconnected`). Times are printed (wall clock for the host, virtual
/// milliseconds for the device), not asserted.
fn reconnect_after_a_server_restart() {
    let mut key = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let cert =
        qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, "coapd.qeaas.test", 9).unwrap();
    let key_der = key.private_der().unwrap();
    let mut s = Stack::start(|dir| {
        std::fs::write(dir.join("mldsa.der"), &cert).unwrap();
        std::fs::write(dir.join("mldsa-key.der"), &key_der).unwrap();
        format!(
            "[certificate]\nchain = {:?}\nkey = {:?}\n\n[dtls]\nticket_key_file = {:?}\n",
            dir.join("mldsa.der"),
            dir.join("mldsa-key.der"),
            dir.join("ticket.key"),
        )
    });
    let ca = s.dir.path().join("mldsa.der");
    let ca = ca.to_str().unwrap().to_string();
    restart_once(
        &mut s,
        "mlkem-mldsa",
        &["--ca", &ca, "--server-name", "coapd.qeaas.test"],
        true,
    );
    let psk = s.dir.path().join("psk");
    std::fs::write(&psk, format!("{KEY}\n")).unwrap();
    restart_once(
        &mut s,
        "mlkem-psk",
        &[
            "--psk-identity",
            ID,
            "--psk-key-file",
            psk.to_str().unwrap(),
        ],
        false,
    );
}

/// One device run in `restart` mode against `s`, whose frontend is restarted when the device
/// is ready; asserts the outcome and the new session's budget.
fn restart_once(s: &mut Stack, config: &str, args: &[&str], resumes: bool) {
    use std::io::BufRead;
    let part = provision(s.dir.path(), &format!("{config}-restart"), s.port, args);
    let before = s.served_to_frontend();
    let mut child = qemu(config, &part, &["restart"], 600)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run qemu-system-riscv32");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for r in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut out = String::new();
    let mut back = None;
    let mut reconnected_after = None;
    while let Ok(line) = rx.recv() {
        out += &line;
        out.push('\n');
        if line.starts_with("RESTART ready") {
            s.restart_coapd(|c| c);
            back = Some(std::time::Instant::now());
        }
        if line.starts_with("EVENT credited") {
            reconnected_after = back.map(|b| b.elapsed());
        }
    }
    let status = child.wait().unwrap();
    assert!(
        status.success() && back.is_some(),
        "device failed:\n{out}\ncoapd log:\n{}",
        tail(&s.log())
    );
    record_figures(&out);
    let line = line_of(&out, "RECONNECTED ");
    let field = |k: &str| field(line, k);
    assert_eq!(field("sessions"), 1, "more than one new session:\n{out}");
    assert_eq!(
        field("resumed"),
        u64::from(resumes),
        "resumed: expected {resumes}:\n{out}"
    );
    assert!(field("credited_bits") > 0, "{line}");
    if resumes {
        assert!(
            s.log().contains("resumed=true"),
            "the restarted frontend did not log a resumption:\n{}",
            tail(&s.log())
        );
    }
    // Every fetch, before and after the restart, was 32 bytes counted by the daemon.
    assert_eq!(
        s.served_to_frontend() - before,
        32 * field("fetches_ok"),
        "{line}"
    );
    for l in out.lines().filter(|l| l.starts_with("EVENT ")) {
        eprintln!("{l}");
    }
    eprintln!(
        "{line}\nwall clock from the frontend's restart to the device's fresh credited bytes: {:.1} s",
        reconnected_after.unwrap_or_default().as_secs_f64()
    );
    if let Some(path) = std::env::var_os("QEAAS_DEVICE_FIGURES") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("figures file");
        writeln!(
            f,
            "{config} {line} wall_ms={}",
            reconnected_after.unwrap_or_default().as_millis()
        )
        .unwrap();
    }
    let name = if resumes { "resumed" } else { "reconnected" };
    check_budget(&format!("{config}-{name}"), &out);
}

/// A frontend with `[client_certs] require = true`: the device presents the ECDSA certificate
/// its partition holds (signing in the handshake: its cost is this configuration's figures
/// against `mlkem-mldsa`'s), and without one it is refused and gets nothing.
fn client_certificate() {
    let mut key = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let cert =
        qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, "coapd.qeaas.test", 9).unwrap();
    let key_der = key.private_der().unwrap();
    let mut s = Stack::start(|dir| {
        make_pki(dir);
        std::fs::write(dir.join("mldsa.der"), &cert).unwrap();
        std::fs::write(dir.join("mldsa-key.der"), &key_der).unwrap();
        format!(
            "[certificate]\nchain = {:?}\nkey = {:?}\n\n[client_certs]\nca = {:?}\nrequire = true\n\n[dtls]\nticket_key_file = {:?}\n",
            dir.join("mldsa.der"),
            dir.join("mldsa-key.der"),
            dir.join("ca.pem"),
            dir.join("ticket.key"),
        )
    });
    let d = |n: &str| s.dir.path().join(n);
    for (args, out) in [
        (["x509", "-in", "cli.pem", "-outform", "der"], "cli.der"),
        (["pkey", "-in", "cli.key", "-outform", "der"], "cli.key.der"),
    ] {
        let o = Command::new("openssl")
            .args(args)
            .arg("-out")
            .arg(d(out))
            .current_dir(s.dir.path())
            .status()
            .unwrap();
        assert!(o.success());
    }
    let (ca, cli, cli_key) = (d("mldsa.der"), d("cli.der"), d("cli.key.der"));
    let ca = ca.to_str().unwrap().to_string();
    let server = ["--ca", &ca, "--server-name", "coapd.qeaas.test"];
    let with_cert = [
        &server[..],
        &["--client-cert", cli.to_str().unwrap()],
        &["--client-key", cli_key.to_str().unwrap()],
    ]
    .concat();
    fetch_once(&s, "mlkem-mldsa-client", &with_cert);
    // After a restart the device resumes as the identity its certificate proved: the ticket
    // carries it, so `require = true` holds without signing again.
    restart_once(&mut s, "mlkem-mldsa-client", &with_cert, true);
    let anonymous = provision(s.dir.path(), "anonymous", s.port, &server);
    let before = s.served_to_frontend();
    let (ok, out) = run_device("mlkem-mldsa", &anonymous);
    assert!(
        !ok,
        "a device without a client certificate was served:\n{out}"
    );
    assert_eq!(s.served_to_frontend(), before);
}

/// Sessions one after another, each making fetches, against the real frontend: the heap in use
/// and the per-session heap peak after the first tenth of the sessions must not grow, and the
/// frontend's counter must match what the device fetched. The 1000 sessions and 10 000
/// fetches take ~20 s here (PSK + ML-KEM-512, ~14 M emulated instructions per session), so CI
/// runs all of them; `QEAAS_SOAK=SESSIONS,FETCHES` runs another size.
fn soak() {
    let (sessions, fetches) = match std::env::var("QEAAS_SOAK").as_deref() {
        Err(_) | Ok("full") => (1000u64, 10u64),
        Ok(v) => {
            let (s, f) = v
                .split_once(',')
                .expect("QEAAS_SOAK=full or SESSIONS,FETCHES");
            (s.parse().unwrap(), f.parse().unwrap())
        }
    };
    // Every session is a new peer to the frontend; old ones linger until they idle out.
    let s = Stack::start_with("max_sessions = 4096\n", |_| String::new());
    let psk = s.dir.path().join("psk");
    std::fs::write(&psk, format!("{KEY}\n")).unwrap();
    let part = provision(
        s.dir.path(),
        "soak",
        s.port,
        &[
            "--psk-identity",
            ID,
            "--psk-key-file",
            psk.to_str().unwrap(),
        ],
    );
    let before = s.served_to_frontend();
    let (n, f) = (sessions.to_string(), fetches.to_string());
    let (ok, out) = run_device_with("soak", &part, &[&n, &f], 3000);
    assert!(
        ok,
        "soak failed:\n{out}\ncoapd log tail:\n{}",
        tail(&s.log())
    );
    let line = line_of(&out, "SOAK ");
    eprintln!("{line}");
    for l in out.lines().filter(|l| l.starts_with("soak: ")) {
        eprintln!("{l}");
    }
    let field = |k: &str| field(line, k);
    // The first session's fetch, then `fetches` per session.
    assert!(field("fetches") > sessions * fetches, "{line}");
    assert!(
        field("peak") <= field("warmup_peak"),
        "heap peak grew: {line}"
    );
    assert!(
        field("in_use") <= field("warmup_in_use"),
        "heap in use grew: {line}"
    );
    // Every fetched byte came from the daemon through the frontend, and was counted there.
    let fetched = 32 * field("fetches");
    assert_eq!(s.served_to_frontend() - before, fetched, "{line}");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn ml_kem_512_with_ml_dsa_44_or_psk() {
    let mut key = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    // A DNS name with a dot: the device checks it (wolfSSL wants a valid FQDN).
    let cert =
        qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, "coapd.qeaas.test", 9).unwrap();
    let key_der = key.private_der().unwrap();
    let s = Stack::start(|dir| {
        std::fs::write(dir.join("mldsa.der"), &cert).unwrap();
        std::fs::write(dir.join("mldsa-key.der"), &key_der).unwrap();
        format!(
            "[certificate]\nchain = {:?}\nkey = {:?}\n",
            dir.join("mldsa.der"),
            dir.join("mldsa-key.der")
        )
    });
    let ca = s.dir.path().join("mldsa.der");
    let ca = ca.to_str().unwrap();
    fetch_once(
        &s,
        "mlkem-mldsa",
        &["--ca", ca, "--server-name", "coapd.qeaas.test"],
    );
    assert!(
        s.log().contains("ML_KEM_512"),
        "the server did not log ML-KEM-512:\n{}",
        s.log()
    );

    let psk = s.dir.path().join("psk");
    std::fs::write(&psk, format!("{KEY}\n")).unwrap();
    let psk = psk.to_str().unwrap();
    fetch_once(
        &s,
        "mlkem-psk",
        &["--psk-identity", ID, "--psk-key-file", psk],
    );

    // Verification is real: a device trusting another ML-DSA CA gets nothing.
    let mut other = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let other = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut other, "qeaas-coapd", 9).unwrap();
    let other_path = s.dir.path().join("other.der");
    std::fs::write(&other_path, other).unwrap();
    let other = provision(
        s.dir.path(),
        "other-ca",
        s.port,
        &["--ca", other_path.to_str().unwrap()],
    );
    let before = s.served_to_frontend();
    let (ok, out) = run_device("mlkem-mldsa", &other);
    assert!(!ok, "a foreign CA was accepted:\n{out}");
    assert!(out.contains("DTLS failed"), "{out}");
    assert_eq!(s.served_to_frontend(), before);
}

fn ecdsa_certificates() {
    let mut s = Stack::start(|dir| {
        make_pki(dir);
        format!(
            "[certificate]\nchain = {:?}\nkey = {:?}\n\n[dtls]\nticket_key_file = {:?}\n",
            dir.join("srv.pem"),
            dir.join("srv.key"),
            dir.join("ticket.key"),
        )
    });
    let ca = s.dir.path().join("ca.der");
    let o = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(s.dir.path().join("ca.pem"))
        .arg("-out")
        .arg(&ca)
        .status()
        .unwrap();
    assert!(o.success());
    let ca = ca.to_str().unwrap();
    fetch_once(&s, "p256-ecdsa", &["--kex", "p256", "--ca", ca]);
    fetch_once(&s, "mlkem-ecdsa", &["--ca", ca]);
    // And each reconnects after a restart by resuming (the full handshakes cost 177 M and
    // 121 M instructions).
    let ca = ca.to_string();
    restart_once(&mut s, "p256-ecdsa", &["--kex", "p256", "--ca", &ca], true);
    restart_once(&mut s, "mlkem-ecdsa", &["--ca", &ca], true);
}
