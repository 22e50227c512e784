//! `qeaas-coapd check-config`: exit codes (sysexits) on the shipped and on broken configs.

use std::process::Command;

const COAPD: &str = env!("CARGO_BIN_EXE_qeaas-coapd");

fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("coapd.toml");
    std::fs::write(&p, text).unwrap();
    let o = Command::new(COAPD)
        .arg("-c")
        .arg(&p)
        .arg("check-config")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_config_exit_codes() {
    let shipped = include_str!("../../config/coapd.toml");
    assert_eq!(check(shipped).0, Some(0));
    let (code, err) = check(&format!("{shipped}\nbogus = 1\n"));
    assert_eq!(code, Some(78));
    assert!(err.contains("bogus"), "{err}");
    // A certificate that cannot be read or parsed is caught by check-config, not at first use.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (chain, key) in [
        (dir.path().join("missing.pem"), junk.clone()),
        (junk.clone(), junk.clone()),
    ] {
        let (code, err) = check(&format!(
            "{shipped}\n[certificate]\nchain = {chain:?}\nkey = {key:?}\n"
        ));
        assert_eq!(code, Some(78), "{err}");
    }
    let missing = Command::new(COAPD)
        .args(["-c", "/nonexistent/coapd.toml", "check-config"])
        .status()
        .unwrap();
    assert_eq!(missing.code(), Some(66));
}
