//! Noise sources behind one small trait, and how a configured source is opened.
//!
//! This is I/O only: what a source's node is comes from `fstat` of the descriptor that was
//! opened (never from the path or the config), and `qeaas_core::provenance::decide` turns that
//! and the configured claim into a provenance or a refusal. [`check`] applies the same rule to a
//! path that exists when the configuration is checked, so `check-config` and `run` report a
//! misconfigured source as a configuration error.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use qeaas_core::provenance::{self, Node};

use crate::config::{ConfigError, SerialPreset, Source, SourceKind};
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
    /// What the opened descriptor is.
    pub node: Node,
    /// Device details for logs (board version, serial, kind of node).
    pub details: String,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("node", &self.node)
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
            // A pty whose master closed, or a USB device that went away, reads EIO; serialport
            // reports the hang-up it polls first (POLLHUP) as BrokenPipe. Either is an unplug.
            Err(e)
                if e.raw_os_error() == Some(libc::EIO) || e.kind() == io::ErrorKind::BrokenPipe =>
            {
                Ok(0)
            }
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

/// What `meta` (from `stat` or `fstat`) describes.
pub fn node_of(meta: &std::fs::Metadata) -> Node {
    let t = meta.file_type();
    if t.is_char_device() {
        let rdev = meta.rdev();
        Node::CharDevice {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
        }
    } else if t.is_fifo() {
        Node::Fifo
    } else if t.is_file() {
        Node::RegularFile
    } else {
        Node::Other
    }
}

/// Checks a configured source against what its path is now, if it exists: a node the source
/// may not use (`hardware = true` on a regular file, a copy of /dev/urandom, ...) is a
/// configuration error. A missing path is not: the device may be plugged in later, and is
/// checked again when it is opened.
pub fn check(src: &Source) -> Result<(), ConfigError> {
    match std::fs::metadata(&src.path) {
        Ok(meta) => provenance::decide(src.claim, node_of(&meta))
            .map(|_| ())
            .map_err(|r| {
                ConfigError::Invalid(format!(
                    "source {:?}: {}: {r}",
                    src.name,
                    src.path.display()
                ))
            }),
        Err(_) => Ok(()),
    }
}

/// Opens `cfg` and says what it opened. Blocks on a FIFO without a writer until one comes.
pub fn open(cfg: &Source) -> Result<Opened, OpenError> {
    let path_s = cfg.path.display().to_string();
    let unusable = |reason: String| OpenError::Unusable {
        path: path_s.clone(),
        reason,
    };
    let missing_or = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => OpenError::Missing {
            path: path_s.clone(),
            source: e,
        },
        _ => unusable(e.to_string()),
    };
    match cfg.kind {
        SourceKind::Serial => {
            let mut port = serialport::new(path_s.as_str(), cfg.baud)
                .timeout(Duration::from_secs(2))
                .open_native()
                .map_err(|e| match e.kind() {
                    serialport::ErrorKind::Io(k) if k == io::ErrorKind::NotFound => {
                        OpenError::Missing {
                            path: path_s.clone(),
                            source: io::Error::from(k),
                        }
                    }
                    _ => unusable(format!("serial setup failed (is it a tty?): {e}")),
                })?;
            // What was opened, not what the path names now: the port's own descriptor.
            let node = std::fs::metadata(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&port)
            ))
            .map(|m| node_of(&m))
            .map_err(|e| unusable(format!("fstat: {e}")))?;
            if cfg.preset == SerialPreset::Onerng && matches!(node, Node::CharDevice { .. }) {
                // Noise mode 0 (avalanche, no RF), flush, start output.
                port.write_all(b"cmd0\ncmdw\ncmdO\n")
                    .map_err(|e| unusable(format!("OneRNG command failed: {e}")))?;
            }
            Ok(Opened {
                source: Box::new(SerialSource {
                    port,
                    preset: cfg.preset,
                }),
                node,
                details: format!(
                    "{}, {} baud, preset {:?}",
                    node.label(),
                    cfg.baud,
                    cfg.preset
                ),
            })
        }
        SourceKind::Quantis | SourceKind::Hwrng | SourceKind::File | SourceKind::Upstream => {
            // O_NOCTTY: a terminal standing in for a device must not become our controlling tty.
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&cfg.path)
                .map_err(missing_or)?;
            let node = node_of(&f.metadata().map_err(|e| unusable(format!("fstat: {e}")))?);
            let mut details = node.label().to_string();
            if cfg.kind == SourceKind::Quantis && matches!(node, Node::CharDevice { .. }) {
                details.push_str(&quantis_details(&f));
            }
            Ok(Opened {
                source: Box::new(FileSource(f)),
                node,
                details,
            })
        }
    }
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
    use qeaas_core::provenance::{decide, Provenance, Refusal};

    fn source(toml: &str) -> Source {
        let c = Config::parse(toml, Path::new("t")).unwrap();
        c.active_sources(&[], &[]).unwrap().remove(0)
    }

    #[test]
    fn nodes_are_what_fstat_says_not_what_the_path_says() {
        let o = open(&source(
            "[[source]]\nname = \"u\"\nkind = \"quantis\"\npath = \"/dev/urandom\"",
        ))
        .unwrap();
        assert_eq!(o.node, Node::CharDevice { major: 1, minor: 9 });
        assert!(matches!(
            decide(qeaas_core::provenance::Claim::Device, o.node),
            Err(Refusal::KernelDevice { .. })
        ));
    }

    #[test]
    fn check_refuses_what_the_path_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("noise");
        std::fs::write(&p, [1, 2, 3]).unwrap();
        let t = format!("[[source]]\nname = \"f\"\nkind = \"file\"\npath = {:?}", p);
        assert!(check(&source(&t)).is_ok());
        let e = check(&source(&format!("{t}\nhardware = true")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("regular file") && e.contains("hardware = true"),
            "{e}"
        );
        let e = check(&source(
            "[[source]]\nname = \"u\"\nkind = \"hwrng\"\npath = \"/dev/urandom\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("1:9") && e.contains("not a noise source"), "{e}");
        // Missing: checked again at each open.
        assert!(check(&source(
            "[[source]]\nname = \"q\"\nkind = \"quantis\"\npath = \"/dev/qrandom9\"\n"
        ))
        .is_ok());
    }

    #[test]
    fn a_regular_file_opens_as_one_and_reads_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("noise");
        std::fs::write(&p, [1, 2, 3]).unwrap();
        let t = format!(
            "[[source]]\nname = \"q\"\nkind = \"quantis\"\npath = {:?}",
            p
        );
        let mut o = open(&source(&t)).unwrap();
        assert_eq!(o.node, Node::RegularFile);
        assert_eq!(
            decide(qeaas_core::provenance::Claim::Device, o.node),
            Ok(Provenance::Simulated)
        );
        let mut b = [0u8; 8];
        assert_eq!(o.source.read(&mut b).unwrap(), 3);
        assert_eq!(o.source.read(&mut b).unwrap(), 0);
    }

    #[test]
    fn missing_device_is_reported_as_missing() {
        let s = source("[[source]]\nname = \"q\"\nkind = \"quantis\"\npath = \"/dev/qrandom9\"");
        assert!(matches!(open(&s), Err(OpenError::Missing { .. })));
        let s = source("[[source]]\nname = \"t\"\nkind = \"serial\"\npath = \"/dev/ttyACM97\"");
        assert!(
            matches!(open(&s), Err(OpenError::Missing { .. })),
            "{:?}",
            open(&s)
        );
    }
}
