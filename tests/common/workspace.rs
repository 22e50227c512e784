//! For the tests of the workspace's other crates (included with `#[path]`): the root crate's
//! binaries (`qeaasd`, `qeaas-sim`, `qeaas`), built by a nested `cargo build` in the running
//! test's profile (Cargo does not hold the build lock while tests run; a no-op when fresh).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>`: the directory holding this test binary's `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Runs `cargo build ARGS` on the workspace, in this test's profile.
pub fn cargo_build(args: &[&str]) {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build")
        .args(args)
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"));
    if profile_dir().file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("run cargo build");
    assert!(st.success(), "cargo build {args:?} failed");
}

/// A binary of the root crate, built once per test binary.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build(&["--bins", "-p", "qeaas"]));
    let p = profile_dir().join(name);
    assert!(p.exists(), "{} not built", p.display());
    p
}
