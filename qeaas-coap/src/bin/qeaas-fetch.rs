//! `qeaas-fetch coaps://HOST:PORT/entropy?n=N [--psk-identity ID --psk-key-file F | --ca CA.pem
//! | --insecure] [--cert C.pem --key K] [--dtls 1.2|1.3] [--group G] [--hex] [-o FILE]`: one
//! confirmable GET over DTLS, Block2 followed, the body printed (raw, or hex with --hex) or
//! written to FILE.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qeaas_coap::fetch::{
    client_context, group_by_name, use_client_certificate, Auth, Client, FetchError, Retransmit,
    Target,
};
use qeaas_wolfssl_sys::Version;

#[derive(Parser)]
#[command(version, about = "Fetch bytes from qeaas-coapd over CoAP/DTLS")]
struct Args {
    /// coaps://HOST[:PORT]/PATH[?QUERY], e.g. coaps://127.0.0.1:5684/entropy?n=32
    url: String,
    /// PSK identity (with --psk-key-file).
    #[arg(long, requires = "psk_key_file", conflicts_with_all = ["ca", "insecure"])]
    psk_identity: Option<String>,
    /// File holding the PSK (its bytes, a trailing newline ignored; as libcoap's -k text).
    #[arg(long, requires = "psk_identity")]
    psk_key_file: Option<PathBuf>,
    /// CA certificate(s), PEM or DER: the server's certificate must chain to them.
    #[arg(long, conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Accept the server's certificate without verifying it (anyone on the path could pose
    /// as the server).
    #[arg(long)]
    insecure: bool,
    /// Our certificate (PEM or DER, ECDSA P-256 or ML-DSA-44), shown to a server that asks
    /// for one; with --key. Not with a PSK.
    #[arg(long, requires = "key", conflicts_with = "psk_identity")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM or DER).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// DTLS version.
    #[arg(long, value_parser = ["1.2", "1.3"], default_value = "1.3")]
    dtls: String,
    /// Key-exchange group (default: ml-kem-512 with DTLS 1.3, p-256 with 1.2).
    #[arg(long, value_parser = ["ml-kem-512", "ml-kem-768", "x25519-ml-kem-768", "x25519", "p-256"])]
    group: Option<String>,
    /// Print the bytes as hex (one line) instead of raw.
    #[arg(long)]
    hex: bool,
    /// Write the bytes to FILE instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Seconds allowed for the DTLS handshake.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("no credentials: give --psk-identity with --psk-key-file, --ca CA.pem, or --insecure")]
    NoAuth,
}

fn run(a: &Args) -> Result<(), Error> {
    let target = Target::parse(&a.url)?;
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| Error::File(p.clone(), e));
    let auth = match (&a.psk_identity, &a.psk_key_file, &a.ca, a.insecure) {
        (Some(id), Some(f), _, _) => {
            let mut key = read(f)?;
            while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                key.pop();
            }
            Auth::Psk {
                identity: id.as_bytes().to_vec(),
                key,
            }
        }
        (_, _, Some(ca), _) => Auth::Ca(read(ca)?),
        (_, _, _, true) => Auth::Insecure,
        _ => return Err(Error::NoAuth),
    };
    let version = if a.dtls == "1.2" {
        Version::Dtls12
    } else {
        Version::Dtls13
    };
    let group = match a.group.as_deref() {
        Some(g) => group_by_name(g),
        None if version == Version::Dtls12 => group_by_name("p-256"),
        None => group_by_name("ml-kem-512"),
    };
    let mut ctx = client_context(version, group, &auth)?;
    if let (Some(cert), Some(key)) = (&a.cert, &a.key) {
        let key = zeroize::Zeroizing::new(read(key)?);
        use_client_certificate(&mut ctx, &read(cert)?, &key)?;
    }
    let server = target.resolve()?;
    // The certificate must name the host of the URL (not just chain to the CA).
    let host = matches!(auth, Auth::Ca(_)).then_some(target.host.as_str());
    let mut c = Client::connect(
        server,
        host,
        &ctx,
        group,
        Duration::from_secs(a.handshake_timeout),
    )?;
    let body = c.get(&target, Retransmit::default());
    c.close();
    let body = body?;
    let text;
    let out: &[u8] = if a.hex {
        text = body.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n";
        text.as_bytes()
    } else {
        &body
    };
    match &a.output {
        Some(p) => std::fs::write(p, out).map_err(|e| Error::File(p.clone(), e)),
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(out)
                .and_then(|_| o.flush())
                .map_err(|e| Error::File("<stdout>".into(), e))
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qeaas-fetch: {e}");
            // sysexits: 69 unavailable for 5.xx, 65 data error for 4.xx, 75 temp failure for
            // timeouts and 4.29 (over quota: retry after Max-Age), 1 otherwise.
            ExitCode::from(match e {
                Error::Fetch(FetchError::Status { code, .. }) if code == "4.29" => 75,
                Error::Fetch(FetchError::Status { code, .. }) if code.starts_with('5') => 69,
                Error::Fetch(FetchError::Status { .. }) => 65,
                Error::Fetch(FetchError::Timeout(_)) => 75,
                Error::NoAuth | Error::Fetch(FetchError::Url(..) | FetchError::Setup(_)) => 64,
                _ => 1,
            })
        }
    }
}
