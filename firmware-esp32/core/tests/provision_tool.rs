//! `qeaas-provision`, the operator's tool: what it writes is the partition the device parses,
//! padded to the partition size, 0600 (it holds the PSK or the Wi-Fi passphrase); bad
//! combinations are refused and write nothing.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use qeaas_device::provision::{Credentials, Kex, Provisioning, PARTITION_SIZE};

const TOOL: &str = env!("CARGO_BIN_EXE_qeaas-provision");

#[test]
fn writes_the_partition_the_device_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    std::fs::write(d("ca.der"), [0x30, 0x02, 5, 5]).unwrap();
    std::fs::write(d("wifi"), "pass phrase\n").unwrap();
    std::fs::write(d("psk"), "correct horse battery\n").unwrap();
    let run = |args: &[&str]| Command::new(TOOL).args(args).output().unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();

    let o = run(&[
        "--out",
        &s(&d("cert.part")),
        "--host",
        "qeaas.example",
        "--port",
        "5684",
        "--ssid",
        "lab",
        "--password-file",
        &s(&d("wifi")),
        "--ca",
        &s(&d("ca.der")),
        "--server-name",
        "qeaas.example",
    ]);
    assert!(o.status.success(), "{o:?}");
    let image = std::fs::read(d("cert.part")).unwrap();
    assert_eq!(image.len(), PARTITION_SIZE);
    let meta = std::fs::metadata(d("cert.part")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let p = Provisioning::parse(&image).unwrap();
    assert_eq!(p.wifi_ssid, "lab");
    assert_eq!(p.wifi_password, "pass phrase");
    assert_eq!(
        (p.server_host, p.server_port, p.kex),
        ("qeaas.example", 5684, Kex::MlKem512)
    );
    assert_eq!(
        p.credentials,
        Credentials::Certificate {
            ca_der: &[0x30, 0x02, 5, 5],
            server_name: Some("qeaas.example"),
            client: None,
        }
    );

    let o = run(&[
        "--out",
        &s(&d("psk.part")),
        "--host",
        "10.0.2.2",
        "--port",
        "5684",
        "--kex",
        "p256",
        "--psk-identity",
        "device-1",
        "--psk-key-file",
        &s(&d("psk")),
    ]);
    assert!(o.status.success(), "{o:?}");
    let image = std::fs::read(d("psk.part")).unwrap();
    let p = Provisioning::parse(&image).unwrap();
    assert_eq!(p.kex, Kex::P256);
    assert_eq!(
        p.credentials,
        Credentials::Psk {
            identity: b"device-1",
            key: b"correct horse battery",
        }
    );

    // Both credentials, none, half a client pair, an unknown flag: refused, nothing written.
    for bad in [
        &[
            "--ca",
            &s(&d("ca.der")),
            "--psk-identity",
            "x",
            "--psk-key-file",
            &s(&d("psk")),
        ][..],
        &[][..],
        &["--ca", &s(&d("ca.der")), "--client-cert", &s(&d("ca.der"))][..],
        &["--ca", &s(&d("ca.der")), "--psk", "x"][..],
    ] {
        let out = s(&d("bad.part"));
        let mut args = vec!["--out", &out, "--host", "h", "--port", "1"];
        args.extend_from_slice(bad);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {o:?}");
        assert!(!d("bad.part").exists(), "{bad:?}");
    }
}
