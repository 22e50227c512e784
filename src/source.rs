//! Noise sources behind one small trait, and how a configured source is opened.
//!
//! Provenance is decided here from what the path really is, not only from what the config says:
//! a pseudo-terminal, a pipe or a regular file is never hardware (unless a `file` source says
//! `hardware = true`), and the kernel's own `/dev/random` and `/dev/urandom` are refused outright.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use qeaas_core::pipeline::Provenance;

use crate::config::{SerialPreset, Source, SourceKind};
use crate::sys;

/// A device or file that delivers noise samples.
pub trait NoiseSource: Send {
    /// Reads some bytes. `Ok(0)` means end of data: the device is gone (unplugged, pipe closed).
    /// `ErrorKind::TimedOut` means no data yet.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path does not exist (device unplugged or not installed).
    #[error("{path}: not present ({source})")]
    Missing {
        /// Path.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// Present but unusable (permissions, wrong type, serial setup).
    #[error("{path}: {reason}")]
    Unusable {
        /// Path.
        path: String,
        /// Reason.
        reason: String,
    },
}

/// An opened source with what we learned about it.
pub struct Opened {
    /// The reader.
    pub source: Box<dyn NoiseSource>,
    /// Effective provenance.
    pub provenance: Provenance,
    /// Device details for logs (board version, serial, kind of node).
    pub details: String,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("provenance", &self.provenance)
            .field("details", &self.details)
            .finish_non_exhaustive()
    }
}

struct FileSource(File);

impl NoiseSource for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

struct SerialSource {
    port: serialport::TTYPort,
    preset: SerialPreset,
}

impl NoiseSource for SerialSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.port.read(buf) {
            // A pty whose master closed, or a USB device that went away, reads EIO.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(io::ErrorKind::TimedOut.into()),
            r => r,
        }
    }
}

impl Drop for SerialSource {
    fn drop(&mut self) {
        if self.preset == SerialPreset::Onerng {
            // Stop the noise output so the device is quiet until the next open.
            let _ = self.port.write_all(b"cmdo\n");
        }
    }
}

/// Character devices that are never noise sources: the kernel's own CRNG outputs.
fn is_kernel_crng(meta: &std::fs::Metadata) -> bool {
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    meta.file_type().is_char_device() && major == 1 && (minor == 8 || minor == 9)
}

/// Unix98 pseudo-terminal slaves use majors 136..=143.
fn is_pty(meta: &std::fs::Metadata) -> bool {
    let major = libc::major(meta.rdev());
    meta.file_type().is_char_device() && (136..=143).contains(&major)
}

fn node_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if is_pty(meta) {
        "pseudo-terminal"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_fifo() {
        "named pipe"
    } else if t.is_file() {
        "regular file"
    } else {
        "other"
    }
}

/// Opens `cfg`; never blocks on a FIFO without a writer for longer than the open itself.
pub fn open(cfg: &Source) -> Result<Opened, OpenError> {
    let path_s = cfg.path.display().to_string();
    let meta = std::fs::metadata(&cfg.path).map_err(|source| OpenError::Missing {
        path: path_s.clone(),
        source,
    })?;
    let unusable = |reason: String| OpenError::Unusable {
        path: path_s.clone(),
        reason,
    };
    if is_kernel_crng(&meta) {
        return Err(unusable(
            "this is the kernel's own CRNG output, not a noise source".into(),
        ));
    }
    let kind = node_kind(&meta);
    let is_char = meta.file_type().is_char_device();
    let provenance = if cfg.kind == SourceKind::Upstream {
        Provenance::Network
    } else if cfg.simulated {
        Provenance::Simulated
    } else {
        match cfg.kind {
            SourceKind::File if cfg.hardware => Provenance::Hardware,
            SourceKind::File => Provenance::Simulated,
            _ if is_pty(&meta) || !is_char => Provenance::Simulated,
            _ => Provenance::Hardware,
        }
    };
    let mut details = kind.to_string();
    let source: Box<dyn NoiseSource> = match cfg.kind {
        SourceKind::Serial => {
            if !is_char {
                return Err(unusable(format!(
                    "a serial source must be a tty, this is a {kind}"
                )));
            }
            let mut port = serialport::new(path_s.as_str(), cfg.baud)
                .timeout(Duration::from_secs(2))
                .open_native()
                .map_err(|e| unusable(format!("serial setup failed: {e}")))?;
            if cfg.preset == SerialPreset::Onerng {
                // Noise mode 0 (avalanche, no RF), flush, start output.
                port.write_all(b"cmd0\ncmdw\ncmdO\n")
                    .map_err(|e| unusable(format!("OneRNG command failed: {e}")))?;
            }
            details.push_str(&format!(", {} baud, preset {:?}", cfg.baud, cfg.preset));
            Box::new(SerialSource {
                port,
                preset: cfg.preset,
            })
        }
        SourceKind::Quantis | SourceKind::Hwrng | SourceKind::File | SourceKind::Upstream => {
            if !matches!(cfg.kind, SourceKind::File | SourceKind::Upstream)
                && !is_char
                && !matches!(provenance, Provenance::Simulated)
            {
                return Err(unusable(format!(
                    "expected a character device, this is a {kind}"
                )));
            }
            let f = File::open(&cfg.path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => OpenError::Missing {
                    path: path_s.clone(),
                    source: e,
                },
                _ => unusable(e.to_string()),
            })?;
            if cfg.kind == SourceKind::Quantis {
                details.push_str(&quantis_details(&f));
            }
            Box::new(FileSource(f))
        }
    };
    Ok(Opened {
        source,
        provenance,
        details,
    })
}

/// Board details through the Quantis driver's ioctls; each is optional (other drivers, pipes
/// and older firmware answer ENOTTY).
fn quantis_details(f: &File) -> String {
    use sys::quantis::*;
    let fd = f.as_fd();
    let mut s = String::new();
    match get_uint(fd, GET_DRIVER_VERSION) {
        Ok(v) => s.push_str(&format!(", driver {}.{}", v / 10, v % 10)),
        Err(_) => s.push_str(", Quantis ioctls not answered"),
    }
    if let Ok(v) = get_uint(fd, GET_BOARD_VERSION) {
        s.push_str(&format!(", board {v:#x}"));
    }
    if let Ok(serial) = get_serial(fd) {
        s.push_str(&format!(", serial {serial}"));
    }
    if let (Ok(mask), Ok(status)) = (
        get_uint(fd, GET_MODULES_MASK),
        get_uint(fd, GET_MODULES_STATUS),
    ) {
        s.push_str(&format!(", modules {mask:#x} status {status:#x}"));
    }
    s
}

/// True when `path` exists (for `list-sources`).
pub fn present(path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn source(toml: &str) -> Source {
        let c = Config::parse(toml, Path::new("t")).unwrap();
        c.active_sources(&[], &[]).unwrap().remove(0)
    }

    #[test]
    fn kernel_crng_is_refused() {
        let s = source(
            "[[source]]\nname = \"u\"\nkind = \"file\"\npath = \"/dev/urandom\"\nhardware = true",
        );
        let e = open(&s).unwrap_err().to_string();
        assert!(e.contains("kernel's own CRNG"), "{e}");
    }

    #[test]
    fn regular_file_is_simulated_unless_declared() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("noise");
        std::fs::write(&p, [1, 2, 3]).unwrap();
        let t = format!("[[source]]\nname = \"f\"\nkind = \"file\"\npath = {:?}", p);
        let o = open(&source(&t)).unwrap();
        assert_eq!(o.provenance, Provenance::Simulated);
        let o = open(&source(&format!("{t}\nhardware = true"))).unwrap();
        assert_eq!(o.provenance, Provenance::Hardware);
        // A "quantis" that is a regular file is simulated, whatever it claims.
        let t = format!(
            "[[source]]\nname = \"q\"\nkind = \"quantis\"\npath = {:?}",
            p
        );
        let mut o = open(&source(&t)).unwrap();
        assert_eq!(o.provenance, Provenance::Simulated);
        assert!(o.details.contains("not answered"), "{}", o.details);
        let mut b = [0u8; 8];
        assert_eq!(o.source.read(&mut b).unwrap(), 3);
        assert_eq!(o.source.read(&mut b).unwrap(), 0);
    }

    #[test]
    fn missing_device_is_reported_as_missing() {
        let s = source("[[source]]\nname = \"q\"\nkind = \"quantis\"\npath = \"/dev/qrandom9\"");
        assert!(matches!(open(&s), Err(OpenError::Missing { .. })));
    }
}
