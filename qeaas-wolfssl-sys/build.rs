//! Compiles wolfSSL's C sources from the crates.io package `wolfssl-sys` 5.3.0 (wolfSSL 5.9.4,
//! directory `wolfssl-src/`) with qeaas's own `include/user_settings.h`. The package is a
//! never-built dependency (`cfg(any())`), so Cargo downloads and locks it; we find it with
//! `cargo metadata`. `QEAAS_WOLFSSL_SRC` overrides the path (a `wolfssl-src`-like tree). On the
//! host it also compiles `c/negotiated.c`, our reader of negotiated state (with the same settings).

use std::path::{Path, PathBuf};
use std::process::Command;

const SSL: &[&str] = &[
    "internal", "keys", "ssl", "tls", "tls13", "dtls", "dtls13", "wolfio",
];
const CRYPT: &[&str] = &[
    "aes",
    "asn",
    "chacha",
    "chacha20_poly1305",
    "coding",
    "curve25519",
    "ecc",
    "error",
    "fe_low_mem",
    "fe_operations",
    "hash",
    "hmac",
    "kdf",
    "logging",
    "memory",
    "poly1305",
    "pwdbased",
    "random",
    "sha",
    "sha256",
    "sha3",
    "sha512",
    "signature",
    "sp_c32",
    "sp_c64",
    "sp_int",
    "wc_encrypt",
    "wc_mldsa",
    "wc_mlkem",
    "wc_mlkem_poly",
    "wc_port",
    "wolfmath",
];

fn main() {
    println!("cargo:rerun-if-changed=include/user_settings.h");
    println!("cargo:rerun-if-changed=c/negotiated.c");
    println!("cargo:rerun-if-changed=c/verify_store.c");
    println!("cargo:rerun-if-env-changed=QEAAS_WOLFSSL_SRC");
    let src = match std::env::var_os("QEAAS_WOLFSSL_SRC") {
        Some(p) => PathBuf::from(p),
        None => locate().unwrap_or_else(|e| {
            panic!("wolfSSL sources not found ({e}); set QEAAS_WOLFSSL_SRC to a wolfssl-src tree")
        }),
    };
    assert!(
        src.join("wolfssl/ssl.h").exists(),
        "{} does not look like a wolfSSL source tree (no wolfssl/ssl.h)",
        src.display()
    );
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let target = std::env::var("TARGET").unwrap_or_default();
    let mut b = cc::Build::new();
    b.include(manifest.join("include"))
        .include(&src)
        .define("WOLFSSL_USER_SETTINGS", None)
        .warnings(false)
        .opt_level(2);
    // The header picks its section from these: host server/client, or the bare-metal client.
    if target.starts_with("riscv32") {
        b.define("QEAAS_WOLFSSL_DEVICE", None);
        device(&mut b);
    } else {
        b.define("QEAAS_WOLFSSL_HOST", None);
        // Our own reader of negotiated state the public API lacks (the server side only).
        b.file(manifest.join("c/negotiated.c"));
    }
    // The device client's reader of the certificate being verified (its not-before floor);
    // on the host too, where the device crate's tests run.
    b.file(manifest.join("c/verify_store.c"));
    for f in SSL {
        b.file(src.join("src").join(format!("{f}.c")));
    }
    for f in CRYPT {
        b.file(src.join("wolfcrypt/src").join(format!("{f}.c")));
    }
    b.compile("qeaas_wolfssl");
    // Dependents (the firmware's C shims, if any) can find the headers and settings.
    println!("cargo:include={}", src.display());
    println!("cargo:settings={}", manifest.join("include").display());
}

/// Picolibc (Debian: picolibc-riscv64-unknown-elf) for the C library, its rv32im multilib with
/// libgcc for the link; Debian's riscv64-unknown-elf-gcc (gcc-riscv64-unknown-elf) compiles
/// rv32imc with the right `-march`/`-mabi`. `CC_<target>` still overrides the compiler.
const PICOLIBC: &str = "/usr/lib/picolibc/riscv64-unknown-elf";
const DEVICE_GCC: &str = "riscv64-unknown-elf-gcc";

fn device(b: &mut cc::Build) {
    let target = std::env::var("TARGET").unwrap_or_default();
    let cc_var = format!("CC_{}", target.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={cc_var}");
    if std::env::var_os(&cc_var).is_none() {
        b.compiler(DEVICE_GCC);
    }
    b.flag("-march=rv32imc")
        .flag("-mabi=ilp32")
        .flag("-mcmodel=medany")
        .flag("-ffunction-sections")
        .flag("-fdata-sections")
        // Small code first: the ESP32-C3 runs from flash cache.
        .opt_level_str("s")
        .include(format!("{PICOLIBC}/include"));
    println!("cargo:rustc-link-search=native={PICOLIBC}/lib/rv32im/ilp32");
    println!("cargo:rustc-link-lib=static=c");
    match Command::new(DEVICE_GCC)
        .args(["-march=rv32im", "-mabi=ilp32", "-print-libgcc-file-name"])
        .output()
    {
        Ok(o) if o.status.success() => {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if let Some(dir) = p.parent() {
                println!("cargo:rustc-link-search=native={}", dir.display());
                println!("cargo:rustc-link-lib=static=gcc");
            }
        }
        _ => panic!("{DEVICE_GCC} not found: apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"),
    }
}

/// Finds `wolfssl-src/` of the locked `wolfssl-sys` package through `cargo metadata`, offline
/// first (build scripts don't see `--offline`; the package is normally downloaded already).
fn locate() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    let mut last = String::new();
    for offline in [true, false] {
        let mut c = Command::new(&cargo);
        c.args(["metadata", "--format-version=1", "--manifest-path"])
            .arg(&manifest);
        if offline {
            c.arg("--offline");
        }
        // A nested cargo must not fight the outer one over these.
        c.env_remove("CARGO_TARGET_DIR");
        let out = match c.output() {
            Ok(o) if o.status.success() => o.stdout,
            Ok(o) => {
                last = String::from_utf8_lossy(&o.stderr).into_owned();
                continue;
            }
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        match from_metadata(&out) {
            Ok(p) => return Ok(p),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Follows the resolve graph from this package to its `wolfssl-sys` dependency.
fn from_metadata(json: &[u8]) -> Result<PathBuf, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let me = std::env::var("CARGO_PKG_NAME").unwrap();
    let packages = v["packages"].as_array().ok_or("no packages")?;
    let id_of = |name: &str| {
        packages
            .iter()
            .filter(|p| p["name"] == name)
            .filter_map(|p| p["id"].as_str())
            .collect::<Vec<_>>()
    };
    let mine = id_of(&me);
    let nodes = v["resolve"]["nodes"].as_array().ok_or("no resolve graph")?;
    let dep_id = nodes
        .iter()
        .filter(|n| n["id"].as_str().is_some_and(|id| mine.contains(&id)))
        .flat_map(|n| n["deps"].as_array().into_iter().flatten())
        .find(|d| d["name"] == "wolfssl_sys")
        .and_then(|d| d["pkg"].as_str())
        .ok_or("wolfssl-sys is not in this package's resolve graph")?;
    let pkg = packages
        .iter()
        .find(|p| p["id"] == dep_id)
        .ok_or("wolfssl-sys package missing")?;
    let manifest = Path::new(pkg["manifest_path"].as_str().ok_or("no manifest_path")?);
    let dir = manifest
        .parent()
        .ok_or("bad manifest_path")?
        .join("wolfssl-src");
    if dir.join("wolfssl/ssl.h").exists() {
        Ok(dir)
    } else {
        Err(format!("{} is missing", dir.display()))
    }
}
