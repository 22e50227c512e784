//! `qeaasd.toml`: strict TOML (unknown fields are errors), parsed then validated into typed
//! settings. Every example under `config/` is parsed by the test suite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use qeaas_core::driver::DriverSpec;
use qeaas_core::health::{HealthParams, MinEntropy, SampleWidth, STARTUP_SAMPLES};
use qeaas_core::pipeline::{Processing, SourceSpec};
use qeaas_core::pool::PoolHash;
use qeaas_core::provenance::Claim;
use serde::Deserialize;

/// Default configuration path.
pub const DEFAULT_PATH: &str = "/etc/qeaas/qeaasd.toml";

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path tried.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax or an unknown/mistyped field.
    #[error("{path}: {message}")]
    Parse {
        /// Path parsed.
        path: PathBuf,
        /// Parser message, with line and column.
        message: String,
    },
    /// Well-formed but wrong.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The user the worker runs as when qeaasd is started as root (without systemd's `User=`).
    /// The worker refuses to run as root unless `qeaasd run --allow-root-worker` says so.
    #[serde(default = "default_user")]
    pub user: String,
    /// Entropy pool and queue.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Kernel feeding.
    #[serde(default)]
    pub kernel: KernelConfig,
    /// The local entropy socket.
    #[serde(default)]
    pub socket: SocketConfig,
    /// Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Noise sources, by name.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
}

fn default_user() -> String {
    "qeaas".into()
}

/// `[pool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Bytes of extracted, credited output kept ready for consumers.
    pub queue_bytes: usize,
    /// Seconds to wait for the first seeding before telling systemd READY=1 anyway. Without a
    /// working source the daemon must not hold up boot nor be killed by TimeoutStartSec=: it
    /// reports the state and keeps running, so a device plugged in later is picked up.
    pub ready_timeout_secs: u64,
    /// The pool's conditioning function: `"sha256"` (SP 800-90B vetted Hash_df, the default and
    /// the faster with SHA-NI) or `"blake2s"`. The kernel face is unaffected.
    #[serde(deserialize_with = "pool_hash")]
    pub conditioner: PoolHash,
}

fn pool_hash<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PoolHash, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            queue_bytes: 1 << 20,
            // Under the unit's TimeoutStartSec=30.
            ready_timeout_secs: 20,
            conditioner: PoolHash::default(),
        }
    }
}

/// `[kernel]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelConfig {
    /// Feed the Linux pool at all.
    pub enable: bool,
    /// Seconds between periodic feeds (the kernel reseeds its CRNG every 60 s).
    pub interval_secs: u64,
    /// Bytes per periodic feed (32..=64).
    pub feed_bytes: usize,
    /// Call RNDRESEEDCRNG after each periodic feed.
    pub reseed: bool,
    /// Feed bytes from simulated or network sources, always with zero credit. Off by default.
    pub feed_uncredited: bool,
    /// Device used for the ioctls.
    pub device: PathBuf,
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            enable: true,
            interval_secs: 60,
            feed_bytes: 64,
            reseed: true,
            feed_uncredited: false,
            device: PathBuf::from("/dev/random"),
        }
    }
}

/// `[socket]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    /// Serve the local socket.
    pub enable: bool,
    /// Path of the Unix socket.
    pub path: PathBuf,
    /// File mode of the socket (octal in TOML: `0o660`).
    pub mode: u32,
    /// Group owning the socket; members may connect.
    pub group: Option<String>,
    /// Users allowed by SO_PEERCRED, in addition to root and members of `group`. Empty with no
    /// group means: anyone who can open the socket file.
    pub allow_users: Vec<String>,
    /// Largest single request in bytes.
    pub max_request: usize,
    /// Longest a client may wait for entropy, in milliseconds.
    pub max_wait_ms: u64,
    /// Optional EGD-compatible socket for legacy tools.
    pub egd_path: Option<PathBuf>,
    /// Connections (both sockets together) one uid may hold at once.
    pub max_connections_per_uid: usize,
    /// Connections in all; lowered to stay below the file descriptor limit.
    pub max_connections: usize,
    /// Time a client has to finish sending a request once it started, and to read an answer.
    pub request_timeout_ms: u64,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            enable: true,
            path: PathBuf::from("/run/qeaas/entropy.sock"),
            mode: 0o660,
            group: None,
            allow_users: Vec::new(),
            max_request: 4096,
            max_wait_ms: 10_000,
            egd_path: None,
            max_connections_per_uid: 64,
            max_connections: 1024,
            request_timeout_ms: 2000,
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics.
    pub enable: bool,
    /// Listen address; loopback by default.
    pub listen: std::net::SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enable: true,
            listen: "127.0.0.1:9864".parse().expect("valid"),
        }
    }
}

/// Kind of noise source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// ID Quantique Quantis PCIe, `/dev/qrandomN`.
    Quantis,
    /// A serial TRNG (TrueRNG, OneRNG or generic).
    Serial,
    /// The kernel's `/dev/hwrng`.
    Hwrng,
    /// A plain file or named pipe.
    File,
    /// Another qeaas over the network, delivered into a named pipe by an unprivileged fetcher
    /// (`qeaas-fetch --follow`). Never hardware: never credited to the kernel, and credited to
    /// the pool only with `credit = true`.
    Upstream,
}

/// Serial device presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialPreset {
    /// ubld.it TrueRNG: raw reads at 3 Mbaud.
    Truerng,
    /// OneRNG: raw mode via `cmdO` at start, `cmdo` at stop.
    Onerng,
    /// Nothing sent; baud rate as configured.
    Generic,
}

/// One `[[source]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name, used by `--enable`/`--disable` and in metrics.
    pub name: String,
    /// Kind of source.
    pub kind: SourceKind,
    /// Device or file path (defaults by kind).
    pub path: Option<PathBuf>,
    /// Use this source (default true).
    #[serde(default = "yes")]
    pub enable: bool,
    /// Assessed min-entropy per sample, bits. Defaults by kind; may be set lower, never higher
    /// than the kind's assessed value.
    pub min_entropy: Option<f64>,
    /// `"byte"` (default) or `"bit"` samples.
    pub sample: Option<String>,
    /// `true` for raw samples (then the Toeplitz extractor runs before a BLAKE2s pool; the
    /// vetted SHA-256 pool takes them directly); defaults by kind.
    pub raw: Option<bool>,
    /// Declares the data simulated: never credited to the kernel. Pseudo-terminals, pipes and
    /// regular files are simulated anyway.
    #[serde(default)]
    pub simulated: bool,
    /// Asserts that a `file` source is a hardware character device (one the other kinds do not
    /// cover). A regular file, a pipe or a terminal is never hardware: on one, this is an error.
    #[serde(default)]
    pub hardware: bool,
    /// Serial preset.
    pub preset: Option<SerialPreset>,
    /// Serial baud rate (defaults by preset).
    pub baud: Option<u32>,
    /// Bytes per read.
    pub read_bytes: Option<usize>,
    /// Samples for the start-up test (at least 1024).
    pub startup_samples: Option<u64>,
    /// `-log2(alpha)` for the health tests (20..=40).
    pub alpha_log2: Option<u32>,
    /// Seconds before reopening a failed or unplugged source.
    pub retry_secs: Option<u64>,
    /// Upstream sources only: credit their bytes to the pool (default false: mixed in, with
    /// no credit, so they can never back a request alone). The kernel is never credited.
    pub credit: Option<bool>,
}

fn yes() -> bool {
    true
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct Source {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: SourceKind,
    /// Path.
    pub path: PathBuf,
    /// Health tests and processing.
    pub spec: SourceSpec,
    /// What the configuration claims the source is; provenance is decided from it and the node
    /// found at each open (`qeaas_core::provenance::decide`).
    pub claim: Claim,
    /// Serial preset (serial sources only).
    pub preset: SerialPreset,
    /// Serial baud rate.
    pub baud: u32,
    /// Bytes per read.
    pub read_bytes: usize,
    /// Reopen delay.
    pub retry: Duration,
    /// Whether this source's data is credited to the pool (false only for upstream sources
    /// without `credit = true`).
    pub pool_credit: bool,
}

impl Source {
    /// What the source's driver needs.
    pub fn driver_spec(&self) -> DriverSpec {
        DriverSpec {
            conditioning: self.spec,
            claim: self.claim,
            pool_credit: self.pool_credit,
            retry: self.retry,
        }
    }

    /// Stable name of the kind.
    pub fn kind_label(&self) -> &'static str {
        self.kind.label()
    }
}

impl SourceKind {
    /// Stable name, as in the configuration.
    pub const fn label(self) -> &'static str {
        match self {
            SourceKind::Quantis => "quantis",
            SourceKind::Serial => "serial",
            SourceKind::Hwrng => "hwrng",
            SourceKind::File => "file",
            SourceKind::Upstream => "upstream",
        }
    }
}

/// Assessed defaults per kind: (width, max millibits per sample, raw, default path).
///
/// Byte sources are claimed at no more than 6.5 bits/byte although Quantis and TrueRNG output is
/// post-processed to near 8: with alpha = 2^-20 any H >= 6.67 gives an RCT cut-off of 4, whose
/// real false-alarm rate on full-entropy bytes is 2^-24 per sample (one alarm per ~16 MB, twice a
/// second on a Quantis PCIe-240M). At 6.5 the cut-off is 5 (2^-32, one per ~4 GB), and the
/// credit is conservative. A source may be configured lower, never higher.
fn kind_defaults(kind: SourceKind) -> (SampleWidth, u32, bool, &'static str) {
    match kind {
        SourceKind::Quantis => (SampleWidth::Byte, 6500, false, "/dev/qrandom0"),
        SourceKind::Serial => (SampleWidth::Byte, 6500, false, "/dev/ttyACM0"),
        // The kernel's hw_random drivers vary; claim less.
        SourceKind::Hwrng => (SampleWidth::Byte, 6000, false, "/dev/hwrng"),
        SourceKind::File => (SampleWidth::Byte, 6500, false, ""),
        SourceKind::Upstream => (SampleWidth::Byte, 6500, false, ""),
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text` (from `path`, for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !(32..=64).contains(&self.kernel.feed_bytes) {
            return bad(format!(
                "kernel.feed_bytes = {}: must be 32..=64",
                self.kernel.feed_bytes
            ));
        }
        if !(1..=86_400).contains(&self.kernel.interval_secs) {
            return bad("kernel.interval_secs must be 1..=86400".into());
        }
        if self.socket.max_wait_ms > 600_000 {
            return bad("socket.max_wait_ms must be at most 600000".into());
        }
        if !(1..=1_000_000).contains(&self.socket.max_connections)
            || !(1..=self.socket.max_connections).contains(&self.socket.max_connections_per_uid)
        {
            return bad("socket.max_connections must be 1..=1000000 and socket.max_connections_per_uid 1..=max_connections".into());
        }
        if !(1..=600_000).contains(&self.socket.request_timeout_ms) {
            return bad("socket.request_timeout_ms must be 1..=600000".into());
        }
        if self.user.is_empty() {
            return bad("user must not be empty".into());
        }
        if !(1..=65535).contains(&self.socket.max_request) {
            return bad("socket.max_request must be 1..=65535".into());
        }
        if self.socket.mode > 0o777 {
            return bad(format!(
                "socket.mode {:o} is not a file mode",
                self.socket.mode
            ));
        }
        if self.pool.queue_bytes < 64 || self.pool.queue_bytes > 1 << 30 {
            return bad("pool.queue_bytes must be 64 B..=1 GiB".into());
        }
        if self.pool.ready_timeout_secs > 3600 {
            return bad("pool.ready_timeout_secs must be 0..=3600".into());
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.sources {
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(format!(
                    "source name {:?}: use letters, digits, '-' and '_'",
                    s.name
                ));
            }
            if !names.insert(&s.name) {
                return bad(format!("source name {:?} is used twice", s.name));
            }
            self.source(s)?;
        }
        Ok(())
    }

    /// Validated settings of one source.
    pub fn source(&self, s: &SourceConfig) -> Result<Source, ConfigError> {
        let err = |m: String| ConfigError::Invalid(format!("source {:?}: {m}", s.name));
        let (default_width, max_mb, default_raw, default_path) = kind_defaults(s.kind);
        let width = match s.sample.as_deref() {
            None => default_width,
            Some("byte") => SampleWidth::Byte,
            Some("bit") => SampleWidth::Bit,
            Some(o) => return Err(err(format!("sample = {o:?}: use \"byte\" or \"bit\""))),
        };
        // The kind's assessment is per byte; per bit it is an eighth of it.
        let max_mb = max_mb / (8 / width.bits());
        let mb = match s.min_entropy {
            None => max_mb,
            Some(h) if h.is_finite() && h > 0.0 => (h * 1000.0).round() as u32,
            Some(h) => return Err(err(format!("min_entropy = {h}: must be positive"))),
        };
        if mb > max_mb {
            return Err(err(format!(
                "min_entropy = {} bits/sample exceeds the assessed {} for a {:?} source: it may only be lowered",
                f64::from(mb) / 1000.0,
                f64::from(max_mb) / 1000.0,
                s.kind
            )));
        }
        let h = MinEntropy::from_millibits(mb, width).map_err(|e| err(e.to_string()))?;
        let mut health = HealthParams::new(width, h);
        if let Some(n) = s.startup_samples {
            if n < STARTUP_SAMPLES {
                return Err(err(format!(
                    "startup_samples = {n}: SP 800-90B requires at least {STARTUP_SAMPLES}"
                )));
            }
            health.startup_samples = n;
        }
        if let Some(a) = s.alpha_log2 {
            if !(20..=40).contains(&a) {
                return Err(err(format!("alpha_log2 = {a}: SP 800-90B allows 20..=40")));
            }
            health.alpha_log2 = a;
        }
        let path = match (&s.path, default_path) {
            (Some(p), _) => p.clone(),
            (None, "") => {
                return Err(err(
                    "a file or upstream source needs a path (a file or named pipe)".into(),
                ))
            }
            (None, d) => PathBuf::from(d),
        };
        let preset = s.preset.unwrap_or(SerialPreset::Generic);
        if s.preset.is_some() && s.kind != SourceKind::Serial {
            return Err(err("preset applies to serial sources only".into()));
        }
        if s.hardware && s.kind != SourceKind::File {
            return Err(err(
                "hardware = true applies to file sources only (device kinds are detected)".into(),
            ));
        }
        if s.credit.is_some() && s.kind != SourceKind::Upstream {
            return Err(err(
                "credit applies to upstream sources only (local sources are always credited)"
                    .into(),
            ));
        }
        if s.hardware && s.simulated {
            return Err(err("hardware and simulated are exclusive".into()));
        }
        let baud = s.baud.unwrap_or(match preset {
            SerialPreset::Truerng => 3_000_000,
            SerialPreset::Onerng | SerialPreset::Generic => 115_200,
        });
        let read_bytes = s.read_bytes.unwrap_or(match s.kind {
            SourceKind::Hwrng => 64,
            _ => 4096,
        });
        if !(1..=1 << 20).contains(&read_bytes) {
            return Err(err("read_bytes must be 1..=1048576".into()));
        }
        Ok(Source {
            name: s.name.clone(),
            kind: s.kind,
            path,
            spec: SourceSpec {
                health,
                processing: if s.raw.unwrap_or(default_raw) {
                    Processing::Raw
                } else {
                    Processing::PostProcessed
                },
            },
            claim: match s.kind {
                SourceKind::Upstream => Claim::Network,
                _ if s.simulated => Claim::Simulated,
                SourceKind::File if s.hardware => Claim::Hardware,
                SourceKind::File => Claim::File,
                SourceKind::Quantis | SourceKind::Serial | SourceKind::Hwrng => Claim::Device,
            },
            preset,
            baud,
            read_bytes,
            retry: match s.retry_secs.unwrap_or(2) {
                r @ 1..=3600 => Duration::from_secs(r),
                r => return Err(err(format!("retry_secs = {r}: must be 1..=3600"))),
            },
            pool_credit: s.kind != SourceKind::Upstream || s.credit == Some(true),
        })
    }

    /// Validated sources that are enabled after applying `--enable`/`--disable` by name.
    pub fn active_sources(
        &self,
        enable: &[String],
        disable: &[String],
    ) -> Result<Vec<Source>, ConfigError> {
        for n in enable.iter().chain(disable) {
            if !self.sources.iter().any(|s| &s.name == n) {
                return Err(ConfigError::Invalid(format!("no source named {n:?}")));
            }
        }
        self.sources
            .iter()
            .filter(|s| (s.enable || enable.contains(&s.name)) && !disable.contains(&s.name))
            .map(|s| self.source(s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn empty_is_defaults() {
        let c = parse("").unwrap();
        assert!(c.kernel.enable && c.sources.is_empty());
    }

    #[test]
    fn unknown_fields_rejected_everywhere() {
        for t in [
            "bogus = 1",
            "[pool]\nbogus = 1",
            "[kernel]\nbogus = 1",
            "[socket]\nbogus = 1",
            "[metrics]\nbogus = 1",
            "[[source]]\nname = \"a\"\nkind = \"hwrng\"\nbogus = 1",
        ] {
            let e = parse(t).unwrap_err().to_string();
            assert!(e.contains("unknown field"), "{t}: {e}");
        }
    }

    #[test]
    fn conditioner_defaults_to_sha256_and_names_are_checked() {
        assert_eq!(parse("").unwrap().pool.conditioner, PoolHash::Sha256);
        let b = parse("[pool]\nconditioner = \"blake2s\"").unwrap();
        assert_eq!(b.pool.conditioner, PoolHash::Blake2s);
        let e = parse("[pool]\nconditioner = \"md5\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown conditioner"), "{e}");
    }

    #[test]
    fn min_entropy_only_downward() {
        let ok = parse("[[source]]\nname = \"q\"\nkind = \"quantis\"\nmin_entropy = 5.0");
        assert!(ok.is_ok());
        let e = parse("[[source]]\nname = \"q\"\nkind = \"quantis\"\nmin_entropy = 7.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("may only be lowered"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        for (t, want) in [
            ("[kernel]\nfeed_bytes = 100", "32..=64"),
            ("[kernel]\ninterval_secs = 9223372036854775807", "1..=86400"),
            (
                "[[source]]\nname = \"a\"\nkind = \"hwrng\"\nretry_secs = 0",
                "1..=3600",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"file\"",
                "needs a path",
            ),
            (
                "[[source]]\nname = \"a b\"\nkind = \"hwrng\"",
                "letters, digits",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"hwrng\"\n[[source]]\nname = \"a\"\nkind = \"hwrng\"",
                "used twice",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"hwrng\"\nstartup_samples = 10",
                "at least 1024",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"hwrng\"\npreset = \"truerng\"",
                "serial sources only",
            ),
        ] {
            let e = parse(t).unwrap_err().to_string();
            assert!(e.contains(want), "{t}: {e}");
        }
    }

    #[test]
    fn enable_disable_by_name() {
        let c = parse(
            "[[source]]\nname = \"a\"\nkind = \"hwrng\"\n[[source]]\nname = \"b\"\nkind = \"hwrng\"\nenable = false",
        )
        .unwrap();
        let names = |v: Vec<Source>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(c.active_sources(&[], &[]).unwrap()), ["a"]);
        assert_eq!(
            names(c.active_sources(&["b".into()], &["a".into()]).unwrap()),
            ["b"]
        );
        assert!(c.active_sources(&["zz".into()], &[]).is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary text never panics the parser or the validator.
        #[test]
        fn arbitrary_text_is_accepted_or_rejected_cleanly(t in "\\PC{0,200}") {
            let _ = Config::parse(&t, Path::new("fuzz.toml"));
        }

        /// Structured mutations of a valid file: every value position gets an arbitrary token.
        #[test]
        fn mutated_values_are_rejected_cleanly(v in prop_oneof![
            Just("-1".to_string()), Just("1e999".to_string()), Just("\"\"".to_string()),
            Just("nan".to_string()), Just("[]".to_string()), Just("18446744073709551616".to_string()),
            "[a-z0-9.\"]{1,12}"
        ]) {
            for key in ["min_entropy", "read_bytes", "startup_samples", "alpha_log2", "baud", "retry_secs", "raw", "path", "kind"] {
                let t = format!("[[source]]\nname = \"a\"\nkind = \"file\"\npath = \"/x\"\n{key} = {v}\n");
                let _ = Config::parse(&t, Path::new("fuzz.toml"));
            }
            for (table, key) in [("kernel", "feed_bytes"), ("kernel", "interval_secs"), ("socket", "mode"), ("socket", "max_request"), ("pool", "queue_bytes"), ("metrics", "listen")] {
                let t = format!("[{table}]\n{key} = {v}\n");
                let _ = Config::parse(&t, Path::new("fuzz.toml"));
            }
        }
    }
}
