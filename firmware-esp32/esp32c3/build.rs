//! Compiles the DTLS credentials in. Reads, at build time:
//!
//! * certificate mode (the default): `QEAAS_CA_DER`, path to the deployment CA certificate (DER),
//!   embedded with `include_bytes!`, and `QEAAS_SERVER_NAME`, the name the server's certificate
//!   must carry (unset: any certificate the CA signed);
//! * light mode: `QEAAS_PSK_IDENTITY` with `QEAAS_PSK_KEY_HEX` (key as hex) or `QEAAS_PSK_KEY`
//!   (key as text, as `qeaas-coapd gen-credentials` writes it);
//! * `QEAAS_KEX`: `mlkem512` (default) or `p256`.
//!
//! Writes `$OUT_DIR/credentials.rs` with `CREDENTIALS: Result<Credentials, &str>`. Missing or
//! invalid settings do not fail the build: the firmware then reports why and runs on its TRNG
//! alone (a `cargo:warning` says so at build time too).
use std::fmt::Write as _;
use std::path::PathBuf;

fn var(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Rust source for the `Credentials` expression, or why there is none.
fn credentials() -> Result<String, String> {
    let kex = match var("QEAAS_KEX").as_deref() {
        None | Some("mlkem512") => "KeyExchange::MlKem512",
        Some("p256") => "KeyExchange::P256",
        Some(k) => return Err(format!("QEAAS_KEX={k:?}: use mlkem512 or p256")),
    };
    let ca = var("QEAAS_CA_DER");
    let id = var("QEAAS_PSK_IDENTITY");
    let key = match (var("QEAAS_PSK_KEY_HEX"), var("QEAAS_PSK_KEY")) {
        (Some(h), None) => Some(hex(&h).ok_or("QEAAS_PSK_KEY_HEX is not hex")?),
        (None, Some(t)) => Some(t.into_bytes()),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("set one of QEAAS_PSK_KEY_HEX, QEAAS_PSK_KEY".into()),
    };
    let auth = match (ca, id, key) {
        (Some(path), None, None) => {
            let path = PathBuf::from(path);
            let path = std::fs::canonicalize(&path)
                .map_err(|e| format!("QEAAS_CA_DER={}: {e}", path.display()))?;
            let der = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // A DER certificate is a SEQUENCE; PEM starts with '-'. wolfSSL checks the rest.
            if der.first() != Some(&0x30) {
                return Err(format!(
                    "{}: not a DER certificate (PEM? see the README)",
                    path.display()
                ));
            }
            println!("cargo:rerun-if-changed={}", path.display());
            let name = var("QEAAS_SERVER_NAME");
            if name
                .as_deref()
                .is_some_and(|n| n.len() > 253 || n.contains('\0'))
            {
                return Err("QEAAS_SERVER_NAME must be a host name".into());
            }
            format!(
                "Auth::Certificate {{ ca_der: include_bytes!({:?}), server_name: {:?}, client: None }}",
                path.display(),
                name
            )
        }
        (None, Some(id), Some(key)) => {
            // wolfSSL's limits, as the server's config checks them.
            if id.len() > 127 || id.contains('\0') {
                return Err("QEAAS_PSK_IDENTITY must be 1..=127 bytes without NUL".into());
            }
            if key.is_empty() || key.len() > 64 {
                return Err("the PSK must be 1..=64 bytes".into());
            }
            format!(
                "Auth::Psk {{ identity: {:?}.as_bytes(), key: &{key:?} }}",
                id
            )
        }
        (None, None, None) => {
            return Err("no credentials (QEAAS_CA_DER or QEAAS_PSK_*) at build time".into())
        }
        (Some(_), _, _) => return Err("set QEAAS_CA_DER or QEAAS_PSK_*, not both".into()),
        (None, Some(_), None) => return Err("QEAAS_PSK_IDENTITY without a key".into()),
        (None, None, Some(_)) => return Err("a PSK without QEAAS_PSK_IDENTITY".into()),
    };
    Ok(format!("DtlsConfig {{ kex: {kex}, auth: {auth} }}"))
}

fn main() {
    // esp-radio's blobs call `sprintf`, which both its libprintf and picolibc (linked for
    // wolfSSL, later on the command line) define. Naming libprintf here puts it first, so the
    // linker takes `sprintf` from it and never pulls picolibc's copy (a duplicate otherwise).
    println!("cargo:rustc-link-lib=printf");
    // esp-radio's linker script PROVIDEs these C functions for its blobs from its own Rust code,
    // but PROVIDE yields to any definition, and picolibc (linked for wolfSSL) has them all: its
    // `puts`, `gettimeofday`, `fopen`... would be pulled in instead (needing a `stdout` and
    // system calls this firmware has none of). Hard definitions keep esp-radio's.
    for f in [
        "puts",
        "putchar",
        "strdup",
        "strrchr",
        "gettimeofday",
        "fwrite",
        "fopen",
        "fgets",
        "fclose",
        "sleep",
        "usleep",
    ] {
        println!("cargo:rustc-link-arg=--defsym={f}=__esp_radio_{f}");
    }
    let mut out = String::from("// Generated by build.rs from QEAAS_* build-time settings.\n");
    match credentials() {
        Ok(cfg) => {
            let _ = writeln!(
                out,
                "pub const CREDENTIALS: Result<DtlsConfig<'static>, &str> = Ok({cfg});"
            );
        }
        Err(why) => {
            println!("cargo:warning=qeaas: {why}: the firmware will make no fetches (TRNG only)");
            let _ = writeln!(
                out,
                "pub const CREDENTIALS: Result<DtlsConfig<'static>, &str> = Err({why:?});"
            );
        }
    }
    let dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(dir.join("credentials.rs"), out).expect("write credentials.rs");
}
