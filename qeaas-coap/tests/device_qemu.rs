//! Device-in-the-loop (issue 6): the firmware core with DTLS 1.3 (wolfSSL, riscv32imc,
//! `firmware-esp32/qemu-dtls`) boots in `qemu-system-riscv32 -M virt` with a 160 KB heap, reaches
//! a real qeaas-coapd (with qeaasd and qeaas-sim behind it) through virtio-net and QEMU's user
//! network (the host is 10.0.2.2), handshakes, verifies the server, fetches 32 bytes from
//! /entropy and credits them to its device pool. The daemon's per-client counter must rise by
//! exactly what the device fetched.
//!
//! `QEAAS_DEVICE_FIGURES=<file>` appends the device's `FIG` lines (instructions, heap, stack)
//! to that file (for firmware-esp32/README.md); figures are reported, never asserted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{have, make_pki, require, Stack, ID, KEY};

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

/// Runs the image for `config` against `port`; its semihosting output.
fn run_device(config: &str, port: u16, file: &Path) -> (bool, String) {
    let semi = format!(
        "enable=on,target=native,arg=qeaas-qemu-dtls,arg={config},arg={port},arg={}",
        file.display()
    );
    let out = Command::new("timeout")
        .args([
            "180",
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
        .arg("-kernel")
        .arg(firmware())
        .output()
        .expect("run qemu-system-riscv32");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn result_field(out: &str, key: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.starts_with("RESULT "))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
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

/// One device run: the frontend's counter rises by exactly the bytes the device credited.
fn fetch_once(s: &Stack, config: &str, file: &Path) {
    let before = s.served_to_frontend();
    let (ok, out) = run_device(config, s.port, file);
    assert!(
        ok,
        "{config}: device failed:\n{out}\ncoapd log:\n{}",
        s.log()
    );
    record_figures(&out);
    let fetched = result_field(&out, "fetched_bytes").expect("RESULT line");
    assert_eq!(fetched, 32, "{out}");
    assert_eq!(result_field(&out, "credited_bits"), Some(256), "{out}");
    assert_eq!(s.served_to_frontend() - before, fetched, "{out}");
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
}

fn ml_kem_512_with_ml_dsa_44_or_psk() {
    let mut key = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let cert = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut key, "qeaas-coapd", 9).unwrap();
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
    fetch_once(&s, "mlkem-mldsa", &ca);
    assert!(
        s.log().contains("ML_KEM_512"),
        "the server did not log ML-KEM-512:\n{}",
        s.log()
    );

    let psk = s.dir.path().join("psk");
    std::fs::write(&psk, format!("{ID}\n{KEY}")).unwrap();
    fetch_once(&s, "mlkem-psk", &psk);

    // Verification is real: a device trusting another ML-DSA CA gets nothing.
    let mut other = qeaas_wolfssl_sys::MlDsa44::generate().unwrap();
    let other = qeaas_wolfssl_sys::x509::self_signed_mldsa44(&mut other, "qeaas-coapd", 9).unwrap();
    let other_path = s.dir.path().join("other.der");
    std::fs::write(&other_path, other).unwrap();
    let before = s.served_to_frontend();
    let (ok, out) = run_device("mlkem-mldsa", s.port, &other_path);
    assert!(!ok, "a foreign CA was accepted:\n{out}");
    assert!(out.contains("DTLS failed"), "{out}");
    assert_eq!(s.served_to_frontend(), before);
}

fn ecdsa_certificates() {
    let s = Stack::start(|dir| {
        make_pki(dir);
        format!(
            "[certificate]\nchain = {:?}\nkey = {:?}\n",
            dir.join("srv.pem"),
            dir.join("srv.key")
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
    fetch_once(&s, "p256-ecdsa", &ca);
    fetch_once(&s, "mlkem-ecdsa", &ca);
}
