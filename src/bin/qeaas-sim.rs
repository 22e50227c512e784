//! `qeaas-sim`: a simulated Quantis / serial TRNG for tests and demos.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use qeaas::sim::{self, Fault, Generator, ServeOptions};

/// Simulated Quantis QRNG: serves a named pipe and/or a pseudo-terminal at a set rate, with
/// fault injection. Its output is never credited to the kernel.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Serve a named pipe here (like /dev/qrandom0).
    #[arg(long)]
    fifo: Option<PathBuf>,
    /// Serve a pseudo-terminal, with this symlink to it (like /dev/ttyACM0).
    #[arg(long)]
    pty: Option<PathBuf>,
    /// Write this many bytes to stdout and exit (no pacing).
    #[arg(long, conflicts_with_all = ["fifo", "pty"])]
    stdout: Option<u64>,
    /// Healthy rate, bytes per second (suffixes k, M).
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    rate: u64,
    /// Fault: none, stuck:V, bias:P, pattern:HEX, stop, slow:RATE.
    #[arg(long, default_value = "none")]
    fault: Fault,
    /// Bytes of healthy output before the fault (suffixes k, M).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    fault_after: u64,
    /// After a stop, come back as a new device after this many seconds.
    #[arg(long)]
    replug_after: Option<f64>,
    /// Stop for good after this many bytes (suffixes k, M).
    #[arg(long, value_parser = parse_size)]
    limit: Option<u64>,
    /// Generator seed (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// File mode of the pipe and of the pty's slave, octal (as udev gives a device node).
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    mode: u32,
    /// Group (name or number) of the pipe and of the pty's slave, e.g. qeaasd's device group.
    #[arg(long, value_parser = parse_group)]
    group: Option<u32>,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?}: an octal file mode such as 0640"))
}

fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(g) = s.parse() {
        return Ok(g);
    }
    match nix::unistd::Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no group {s:?}")),
        Err(e) => Err(format!("group {s:?}: {e}")),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
        Some(b'M') => (&s[..s.len() - 1], 1_000_000),
        Some(b'G') => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("{s:?}: {e}"))
}

fn main() {
    qeaas::init_logging();
    let a = Args::parse();
    let seed = a
        .seed
        .unwrap_or_else(|| rand_core::OsRng.try_next_u64().unwrap_or(1));
    let opts = ServeOptions {
        rate: a.rate.max(1),
        replug_after: a.replug_after.map(Duration::from_secs_f64),
        limit: a.limit,
        mode: a.mode,
        group: a.group,
    };
    let result = if let Some(n) = a.stdout {
        sim::write_all(
            &mut std::io::stdout().lock(),
            Generator::new(seed, a.fault, a.fault_after),
            n,
        )
        .map(|_| ())
    } else if a.fifo.is_none() && a.pty.is_none() {
        eprintln!("qeaas-sim: give --fifo PATH, --pty PATH or --stdout BYTES");
        std::process::exit(qeaas::exit::USAGE);
    } else {
        let mut threads = Vec::new();
        if let Some(p) = a.fifo.clone() {
            let (g, o) = (
                Generator::new(seed, a.fault.clone(), a.fault_after),
                opts.clone(),
            );
            threads.push(std::thread::spawn(move || sim::serve_fifo(&p, g, &o)));
        }
        if let Some(p) = a.pty.clone() {
            let (g, o) = (
                Generator::new(seed ^ 0x5eed, a.fault.clone(), a.fault_after),
                opts.clone(),
            );
            threads.push(std::thread::spawn(move || sim::serve_pty(&p, g, &o)));
        }
        threads.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("panic")))
        })
    };
    if let Err(e) = result {
        eprintln!("qeaas-sim: {e}");
        std::process::exit(qeaas::exit::IOERR);
    }
}

use rand_core::TryRngCore;
