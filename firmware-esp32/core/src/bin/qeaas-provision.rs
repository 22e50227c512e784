//! `qeaas-provision`: writes one device's provisioning partition image (see
//! `qeaas_device::provision`), padded to the partition's 16 KiB, for `espflash write-bin` or
//! `esptool write_flash` at the partition's offset (firmware-esp32/README.md).
//!
//! ```text
//! qeaas-provision --out dev-7.bin --host qeaas.example --port 5684 [--ssid S --password-file F]
//!     [--kex mlkem512|p256]
//!     (--ca ca.der [--server-name N] [--client-cert dev.der --client-key dev.key.der]
//!      | --psk-identity ID --psk-key-file F)
//! ```
//! Secrets (Wi-Fi passphrase, PSK) are read from files, never from the command line (which
//! other users can see in `ps`). The image is written 0600.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use qeaas_device::provision::{Credentials, Kex, Provisioning, PARTITION_SIZE};

const USAGE: &str = "usage: qeaas-provision --out FILE --host HOST --port PORT [--ssid SSID] \
[--password-file FILE] [--kex mlkem512|p256] (--ca CA.der [--server-name NAME] \
[--client-cert CERT.der --client-key KEY.der] | --psk-identity ID --psk-key-file FILE)";

const FLAGS: [&str; 12] = [
    "--out",
    "--host",
    "--port",
    "--ssid",
    "--password-file",
    "--kex",
    "--ca",
    "--server-name",
    "--client-cert",
    "--client-key",
    "--psk-identity",
    "--psk-key-file",
];

fn run() -> Result<(), String> {
    let mut args: HashMap<&'static str, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let flag = FLAGS
            .iter()
            .find(|f| **f == a)
            .ok_or_else(|| format!("unknown argument {a:?}\n{USAGE}"))?;
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        if args.insert(flag, v).is_some() {
            return Err(format!("{a} given twice"));
        }
    }
    let get = |f: &str| args.get(f).map(String::as_str);
    let need = |f: &str| get(f).ok_or_else(|| format!("{f} is required\n{USAGE}"));
    let read = |f: &str| -> Result<Option<Vec<u8>>, String> {
        get(f)
            .map(|p| std::fs::read(p).map_err(|e| format!("{p}: {e}")))
            .transpose()
    };
    // A text secret as `gen-credentials` writes it: one line.
    let read_line = |f: &str| -> Result<Option<Vec<u8>>, String> {
        Ok(read(f)?.map(|mut v| {
            while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                v.pop();
            }
            v
        }))
    };
    let out = need("--out")?;
    let port: u16 = need("--port")?
        .parse()
        .map_err(|_| "--port: not a port number".to_string())?;
    let kex = match get("--kex") {
        None | Some("mlkem512") => Kex::MlKem512,
        Some("p256") => Kex::P256,
        Some(k) => return Err(format!("--kex {k:?}: mlkem512 or p256")),
    };
    let password = read_line("--password-file")?.unwrap_or_default();
    let password = String::from_utf8(password).map_err(|_| "Wi-Fi passphrase: not UTF-8")?;
    let ca = read("--ca")?;
    let cert = read("--client-cert")?;
    let key = read("--client-key")?;
    let psk_key = read_line("--psk-key-file")?;
    let credentials = match (&ca, get("--psk-identity"), &psk_key) {
        (Some(ca), None, None) => Credentials::Certificate {
            ca_der: ca,
            server_name: get("--server-name"),
            client: match (&cert, &key) {
                (Some(c), Some(k)) => Some((c.as_slice(), k.as_slice())),
                (None, None) => None,
                _ => return Err("--client-cert and --client-key go together".into()),
            },
        },
        (None, Some(id), Some(k)) => Credentials::Psk {
            identity: id.as_bytes(),
            key: k,
        },
        _ => {
            return Err(format!(
                "give --ca or --psk-identity with --psk-key-file\n{USAGE}"
            ))
        }
    };
    let p = Provisioning {
        wifi_ssid: get("--ssid").unwrap_or(""),
        wifi_password: &password,
        server_host: need("--host")?,
        server_port: port,
        kex,
        credentials,
    };
    let mut image = p.to_image().map_err(|e| e.to_string())?;
    // Erased flash after the record, so the file is the whole partition.
    image.resize(PARTITION_SIZE, 0xff);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("{out}: {e}"))?;
    f.write_all(&image).map_err(|e| format!("{out}: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qeaas-provision: {e}");
            ExitCode::from(2)
        }
    }
}
