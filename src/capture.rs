//! `qeaasd capture`: raw samples of one configured source, before any conditioning, for an
//! SP 800-90B assessment (`qeaas assess`, NIST's `ea_non_iid`).
//!
//! The output is what NIST's tools read: one sample per byte, so a byte source writes its bytes
//! as read and a bit source (`sample = "bit"`) writes each bit as a byte of 0 or 1, most
//! significant bit of each device byte first. `--restart RxC` writes the restart matrix of
//! 3.1.4: `R` reopens of the source, the first `C` samples after each, row after row.
//!
//! Capture never credits or serves what it reads: it has no pool, no socket and no kernel face;
//! the bytes go to the file and their buffers are wiped. It runs with no capabilities. It does
//! not share a source with a running daemon (two readers would each see half of the samples,
//! and the daemon's would be handed out while also written to a file): when the configured
//! socket answers, it refuses and says why.

use std::io::Write;
use std::path::{Path, PathBuf};

use qeaas_core::health::SampleWidth;
use zeroize::Zeroize;

use crate::config::{Config, ConfigError, Source};
use crate::exit;
use crate::source;

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureArgs {
    /// Configured source name.
    pub source: String,
    /// Samples to write (per restart with `restart`).
    pub samples: usize,
    /// Restart matrix shape (restarts, samples each) instead of one run.
    pub restart: Option<(usize, usize)>,
    /// Output file (created; never overwritten).
    pub output: PathBuf,
}

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Bad configuration or unknown source.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No such source in the configuration.
    #[error("no source named {0:?} in the configuration")]
    UnknownSource(String),
    /// The daemon is running with this configuration.
    #[error(
        "qeaasd is running ({0} answers): it owns the sources and capture would split their \
         samples with it; stop it first (systemctl stop qeaasd) and capture again"
    )]
    DaemonRunning(PathBuf),
    /// The source could not be opened.
    #[error("{0}")]
    Open(#[from] source::OpenError),
    /// The source ended before enough samples were read.
    #[error("{name}: end of data after {got} of {want} samples")]
    Short {
        /// Source name.
        name: String,
        /// Samples read.
        got: usize,
        /// Samples wanted.
        want: usize,
    },
    /// Reading or writing failed.
    #[error("{what}: {err}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        err: std::io::Error,
    },
}

impl CaptureError {
    /// sysexits code.
    pub fn code(&self) -> i32 {
        match self {
            CaptureError::Config(ConfigError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                exit::NOINPUT
            }
            CaptureError::Config(_) | CaptureError::UnknownSource(_) => exit::CONFIG,
            CaptureError::DaemonRunning(_) => exit::TEMPFAIL,
            CaptureError::Open(_) | CaptureError::Short { .. } => exit::UNAVAILABLE,
            CaptureError::Io { err, .. } if err.kind() == std::io::ErrorKind::PermissionDenied => {
                exit::NOPERM
            }
            CaptureError::Io { .. } => exit::IOERR,
        }
    }
}

/// Parses `RxC` (e.g. `1000x1000`).
pub fn parse_matrix(s: &str) -> Result<(usize, usize), String> {
    let (r, c) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?}: expected ROWSxCOLS, e.g. 1000x1000"))?;
    let n = |v: &str| {
        v.parse::<usize>()
            .ok()
            .filter(|&n| (1..=100_000_000).contains(&n))
            .ok_or_else(|| format!("{v:?}: expected a count from 1 to 100000000"))
    };
    Ok((n(r)?, n(c)?))
}

/// Reads `want` samples of `src` into `out` (one per byte), opening it once.
fn read_samples(src: &Source, want: usize, out: &mut Vec<u8>) -> Result<(), CaptureError> {
    let mut opened = source::open(src)?;
    let bits = src.spec.health.width == SampleWidth::Bit;
    let mut buf = vec![0u8; src.read_bytes.clamp(1, 1 << 16)];
    let mut got = 0usize;
    while got < want {
        // Never read more device bytes than the samples still wanted need.
        let need = if bits {
            (want - got).div_ceil(8)
        } else {
            want - got
        };
        let len = need.min(buf.len());
        let n = match opened.source.read(&mut buf[..len]) {
            Ok(0) => {
                return Err(CaptureError::Short {
                    name: src.name.clone(),
                    got,
                    want,
                })
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(err) => {
                return Err(CaptureError::Io {
                    what: format!("reading {}", src.path.display()),
                    err,
                })
            }
        };
        for &b in &buf[..n] {
            if bits {
                for j in (0..8).rev() {
                    if got < want {
                        out.push((b >> j) & 1);
                        got += 1;
                    }
                }
            } else {
                out.push(b);
                got += 1;
            }
        }
        buf[..n].zeroize();
    }
    Ok(())
}

fn daemon_answers(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// `qeaasd capture`: writes the samples and returns the exit code.
pub fn run(config: &Path, a: &CaptureArgs) -> Result<i32, CaptureError> {
    let cfg = Config::load(config)?;
    let sc = cfg
        .sources
        .iter()
        .find(|s| s.name == a.source)
        .ok_or_else(|| CaptureError::UnknownSource(a.source.clone()))?;
    let src = cfg.source(sc)?;
    if daemon_answers(&cfg.socket.path) {
        return Err(CaptureError::DaemonRunning(cfg.socket.path.clone()));
    }
    // Nothing here needs a capability: opening the device is a file permission.
    let _ = crate::privsep::drop_capabilities(&[]);
    let io = |what: &str| {
        let what = format!("{what} {}", a.output.display());
        move |err| CaptureError::Io { what, err }
    };
    // create_new: never truncate or follow an existing file (a capture is evidence).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.output)
        .map_err(io("creating"))?;
    let (rows, cols) = a.restart.unwrap_or((1, a.samples));
    let mut row = Vec::with_capacity(cols);
    for _ in 0..rows {
        row.clear();
        let r = read_samples(&src, cols, &mut row);
        if r.is_err() {
            row.zeroize();
        }
        r?;
        file.write_all(&row).map_err(io("writing"))?;
        row.zeroize();
    }
    file.sync_all().map_err(io("syncing"))?;
    eprintln!(
        "{}: {} samples of {} ({} bit{} each{}), not credited, not served",
        a.output.display(),
        rows * cols,
        src.name,
        src.spec.health.width.bits(),
        if src.spec.health.width.bits() == 1 {
            ""
        } else {
            "s"
        },
        if rows > 1 {
            format!("; {rows} restarts x {cols}")
        } else {
            String::new()
        }
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_shapes_parse() {
        assert_eq!(parse_matrix("1000x1000"), Ok((1000, 1000)));
        assert_eq!(parse_matrix("3X7"), Ok((3, 7)));
        assert!(parse_matrix("1000").is_err());
        assert!(parse_matrix("0x5").is_err());
        assert!(parse_matrix("5x-1").is_err());
    }
}
