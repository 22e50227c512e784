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
    client_context, group_by_name, use_client_certificate, Auth, Client, FetchError, FollowPolicy,
    FollowStep, Retransmit, Target,
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
    /// Keep fetching and appending to the output until it is closed: the feeder of a
    /// downstream qeaasd's `kind = "upstream"` source through a named pipe (-o PIPE, reopened
    /// when its reader comes back). Honours 4.29/5.03 Max-Age; reconnects with backoff.
    #[arg(long)]
    follow: bool,
    /// With --follow: start a new session after this many idle seconds (keep it below the
    /// server's idle_secs, default 120, so the first request after a pause is not lost).
    #[arg(long, default_value_t = 60, requires = "follow")]
    max_idle: u64,
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
    let timeout = Duration::from_secs(a.handshake_timeout);
    let connect = || Client::connect(server, host, &ctx, group, timeout);
    let mut out = Output::new(a.output.clone(), a.follow);
    if a.follow {
        return follow(a, &target, connect, &mut out);
    }
    let mut c = connect()?;
    let body = c.get(&target, Retransmit::default());
    c.close();
    out.write(&encode(a, body?)).map(|_| ())
}

/// The bytes as they are written: the body itself, or its hex (the body then wiped).
fn encode(a: &Args, body: Vec<u8>) -> Vec<u8> {
    if !a.hex {
        return body;
    }
    let body = zeroize::Zeroizing::new(body);
    (body.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n").into_bytes()
}

/// Where the bytes go. With --follow a FILE is opened for appending, so a named pipe works:
/// the open waits for a reader, and a reader that goes away (the downstream qeaasd restarts)
/// is waited for again instead of ending the feeder.
struct Output {
    path: Option<PathBuf>,
    follow: bool,
    file: Option<std::fs::File>,
}

impl Output {
    fn new(path: Option<PathBuf>, follow: bool) -> Output {
        Output {
            path,
            follow,
            file: None,
        }
    }

    /// Ok(false): the reader went away (a pipe's reader, or whoever read our standard
    /// output). The bytes were not taken, so they are dropped, never given twice.
    fn write(&mut self, bytes: &[u8]) -> Result<bool, Error> {
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
        let Some(path) = &self.path else {
            let mut o = std::io::stdout().lock();
            return match o.write_all(bytes).and_then(|_| o.flush()) {
                Ok(()) => Ok(true),
                Err(e) if self.follow && gone(&e) => Ok(false),
                Err(e) => Err(Error::File("<stdout>".into(), e)),
            };
        };
        if !self.follow {
            return std::fs::write(path, bytes)
                .map(|_| true)
                .map_err(|e| Error::File(path.clone(), e));
        }
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| Error::File(path.clone(), e))?;
            self.file = Some(f);
        }
        match self.file.as_mut().map(|f| f.write_all(bytes)) {
            Some(Err(e)) if gone(&e) => {
                tracing::warn!(
                    "{}: reader went away; waiting for a new one",
                    path.display()
                );
                self.file = None;
                Ok(false)
            }
            Some(Err(e)) => Err(Error::File(path.clone(), e)),
            _ => Ok(true),
        }
    }
}

/// --follow: one session reused while it works, the retry policy in `FollowPolicy`.
fn follow(
    a: &Args,
    target: &Target,
    connect: impl Fn() -> Result<Client, FetchError>,
    out: &mut Output,
) -> Result<(), Error> {
    let mut policy = FollowPolicy::default();
    let max_idle = Duration::from_secs(a.max_idle.max(1));
    loop {
        let mut c = match connect() {
            Ok(c) => c,
            Err(e) => match policy.on_connect_error(&e) {
                FollowStep::Reconnect(d) => {
                    tracing::warn!("{e}; new handshake in {} s", d.as_secs());
                    std::thread::sleep(d);
                    continue;
                }
                _ => return Err(e.into()),
            },
        };
        tracing::info!(
            "connected to {} over {}",
            target.host,
            c.session().version().unwrap_or_default()
        );
        loop {
            let r = c.get(target, Retransmit::default());
            let step = policy.on_fetch(&r);
            match (r, step) {
                (Ok(body), _) => {
                    let body = zeroize::Zeroizing::new(encode(a, body));
                    // Writing blocks while the pipe is full: the reader sets the pace.
                    let started = std::time::Instant::now();
                    if !out.write(&body)? && out.path.is_none() {
                        c.close();
                        return Ok(());
                    }
                    if started.elapsed() >= max_idle {
                        break;
                    }
                }
                (Err(e), FollowStep::Wait(d)) => {
                    tracing::info!("{e}");
                    std::thread::sleep(d);
                    if d >= max_idle {
                        break;
                    }
                }
                (Err(e), FollowStep::Reconnect(d)) => {
                    tracing::warn!("{e}; new handshake in {} s", d.as_secs());
                    std::thread::sleep(d);
                    break;
                }
                (Err(e), _) => {
                    c.close();
                    return Err(e.into());
                }
            }
        }
        c.close();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    qeaas_client::init_logging();
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
