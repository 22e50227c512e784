//! `qeaasd run` (supervisor) and `qeaasd worker`: process setup around the engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};
use zeroize::Zeroize;

use crate::config::{Config, ConfigError, Source};
use crate::engine::{Engine, Face};
use crate::kernel::{Action, FeedSchedule, KernelStats, SharedKernelStats};
use crate::privsep::{self, SupervisorLink};
use crate::{exit, socket, sys};

/// A fatal start-up problem, with its sysexits code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An OS resource could not be set up.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl StartError {
    /// sysexits code.
    pub fn code(&self) -> i32 {
        match self {
            StartError::Config(ConfigError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                exit::NOINPUT
            }
            StartError::Config(_) => exit::CONFIG,
            StartError::Os { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                exit::NOPERM
            }
            StartError::Os { .. } => exit::OSERR,
        }
    }
}

fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Os { what, source }
}

/// Source selection from the command line.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--enable NAME`.
    pub enable: Vec<String>,
    /// `--disable NAME`.
    pub disable: Vec<String>,
}

impl Selection {
    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for e in &self.enable {
            a.extend(["--enable".to_string(), e.clone()]);
        }
        for d in &self.disable {
            a.extend(["--disable".to_string(), d.clone()]);
        }
        a
    }
}

/// The supervisor: starts the worker, keeps CAP_SYS_ADMIN only, executes its ioctl requests.
pub fn run_supervisor(config: &Path, sel: &Selection) -> Result<i32, StartError> {
    let cfg = Config::load(config)?;
    let sources = cfg.active_sources(&sel.enable, &sel.disable)?;
    if sources.is_empty() {
        warn!("no source enabled: the pool will stay empty");
    }
    let random = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&cfg.kernel.device)
        .map_err(os(format!("open {}", cfg.kernel.device.display())))?;
    let exe = std::env::current_exe().map_err(os("find own executable"))?;
    let mut child = Command::new(exe)
        .arg("worker")
        .arg("--config")
        .arg(config)
        .args(sel.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(os("start worker"))?;
    privsep::drop_capabilities(&[caps::Capability::CAP_SYS_ADMIN])
        .map_err(os("drop capabilities"))?;
    info!(
        worker = child.id(),
        "supervisor keeps CAP_SYS_ADMIN only; worker started"
    );
    let from = child.stdout.take().expect("piped");
    let to = child.stdin.take().expect("piped");
    if let Err(e) = privsep::supervise(from, to, &random) {
        error!("worker protocol: {e}");
        let _ = child.kill();
    }
    let status = child.wait().map_err(os("wait for worker"))?;
    Ok(status.code().unwrap_or(exit::SOFTWARE))
}

/// Everything the worker sets up before dropping privileges.
struct Bound {
    socket: Option<std::os::unix::net::UnixListener>,
    egd: Option<std::os::unix::net::UnixListener>,
    metrics: Option<std::net::TcpListener>,
}

fn bind_all(cfg: &Config) -> Result<Bound, StartError> {
    let s = &cfg.socket;
    let socket = if s.enable {
        Some(
            socket::bind(&s.path, s.mode, s.group.as_deref())
                .map_err(os(format!("bind {}", s.path.display())))?,
        )
    } else {
        None
    };
    let egd = match (&s.egd_path, s.enable) {
        (Some(p), true) => Some(
            socket::bind(p, s.mode, s.group.as_deref())
                .map_err(os(format!("bind {}", p.display())))?,
        ),
        _ => None,
    };
    let metrics = if cfg.metrics.enable {
        let l = std::net::TcpListener::bind(cfg.metrics.listen)
            .map_err(os(format!("bind metrics {}", cfg.metrics.listen)))?;
        l.set_nonblocking(true).map_err(os("metrics socket"))?;
        Some(l)
    } else {
        None
    };
    Ok(Bound {
        socket,
        egd,
        metrics,
    })
}

/// The worker: binds, drops all privileges, reads sources, serves consumers, feeds the kernel
/// through the supervisor.
pub fn run_worker(config: &Path, sel: &Selection) -> Result<i32, StartError> {
    // Die with the supervisor.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    let cfg = Config::load(config)?;
    let sources = cfg.active_sources(&sel.enable, &sel.disable)?;
    let acl = socket::Acl::from_config(&cfg.socket)
        .map_err(|m| StartError::Config(ConfigError::Invalid(m)))?;
    let bound = bind_all(&cfg)?;
    privsep::drop_capabilities(&[]).map_err(os("drop capabilities"))?;
    info!("worker runs with no capabilities");

    let engine = Engine::with_conditioner(&sources, cfg.pool.queue_bytes, cfg.pool.conditioner);
    engine.spawn_readers(sources.clone());
    let kstats: SharedKernelStats = Arc::new(Mutex::new(KernelStats::default()));
    let link = Arc::new(Mutex::new(SupervisorLink::new()));
    let feeding = cfg.kernel.enable && (all_hardware(&sources) || cfg.kernel.feed_uncredited);
    if cfg.kernel.enable && !feeding {
        warn!("kernel feeding off: simulated sources are never credited; set kernel.feed_uncredited = true to mix their bytes into the kernel with zero credit");
    }
    if feeding {
        let (engine, kstats, link, kcfg) = (
            Arc::clone(&engine),
            Arc::clone(&kstats),
            Arc::clone(&link),
            cfg.kernel.clone(),
        );
        std::thread::Builder::new()
            .name("kernel-feed".into())
            .spawn(move || feeder(&engine, &kstats, &link, &kcfg))
            .map_err(os("start kernel feeder"))?;
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(os("tokio runtime"))?;
    let to_remove = [Some(cfg.socket.path.clone()), cfg.socket.egd_path.clone()];
    rt.block_on(async move {
        if let Some(l) = bound.socket {
            let l = tokio::net::UnixListener::from_std(l).expect("nonblocking listener");
            tokio::spawn(socket::serve(
                l,
                Arc::clone(&engine),
                cfg.socket.clone(),
                acl.clone(),
            ));
        }
        if let Some(l) = bound.egd {
            let l = tokio::net::UnixListener::from_std(l).expect("nonblocking listener");
            tokio::spawn(socket::serve_egd(
                l,
                Arc::clone(&engine),
                acl.clone(),
                Duration::from_millis(cfg.socket.max_wait_ms),
            ));
        }
        if let Some(l) = bound.metrics {
            let l = tokio::net::TcpListener::from_std(l).expect("nonblocking listener");
            tokio::spawn(crate::metrics::serve(
                l,
                Arc::clone(&engine),
                Arc::clone(&kstats),
            ));
        }
        // READY=1 once the first seeding is done (or, without kernel feeding, once bytes are
        // ready), or after pool.ready_timeout_secs without it, with the reason as STATUS=;
        // WATCHDOG=1 every 10 s from this loop, so a stuck runtime stops the pings.
        let started = Instant::now();
        let ready_timeout = Duration::from_secs(cfg.pool.ready_timeout_secs);
        let mut seeded_reported = false;
        let mut ready_sent = false;
        let mut last_ping = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = term.recv() => { info!("terminating"); break; }
                _ = tokio::signal::ctrl_c() => { info!("interrupted"); break; }
            }
            if !seeded_reported {
                let seeded = if feeding {
                    kstats.lock().map(|k| k.adds > 0).unwrap_or(false)
                } else {
                    engine.ready() > 0
                };
                if seeded {
                    info!("first seeding done: ready");
                    let status = if feeding { "kernel seeded" } else { "serving" };
                    let _ = link.lock().map(|mut l| l.ready(status));
                    seeded_reported = true;
                    // Only the watchdog is left to do here: wake rarely.
                    tick = tokio::time::interval(Duration::from_secs(5));
                } else if !ready_sent && started.elapsed() >= ready_timeout {
                    warn!(
                        "no seeding after {} s: no working source; ready anyway, serving nothing until a source passes its start-up tests",
                        ready_timeout.as_secs()
                    );
                    let _ = link
                        .lock()
                        .map(|mut l| l.ready("waiting for a working source: nothing served or credited"));
                    ready_sent = true;
                }
            }
            if last_ping.elapsed() >= Duration::from_secs(10) {
                last_ping = Instant::now();
                let _ = link.lock().map(|mut l| l.watchdog());
            }
        }
        engine.stop();
    });
    for p in to_remove.iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    Ok(exit::OK)
}

fn all_hardware(sources: &[Source]) -> bool {
    !sources.is_empty()
        && sources
            .iter()
            .all(|s| s.spec.provenance == qeaas_core::pipeline::Provenance::Hardware)
}

fn feeder(
    engine: &Engine,
    kstats: &SharedKernelStats,
    link: &Mutex<SupervisorLink>,
    kcfg: &crate::config::KernelConfig,
) {
    let random = match std::fs::File::open(&kcfg.device) {
        Ok(f) => f,
        Err(e) => {
            error!("kernel feeding off: open {}: {e}", kcfg.device.display());
            return;
        }
    };
    let mut sched = FeedSchedule::new(
        Duration::from_secs(kcfg.interval_secs),
        kcfg.feed_bytes,
        kcfg.reseed,
    );
    let mut paused = false;
    let update = |f: &mut dyn FnMut(&mut KernelStats)| {
        if let Ok(mut k) = kstats.lock() {
            f(&mut k);
        }
    };
    loop {
        let now = Instant::now();
        // Re-evaluated every time: a device that turns out to be simulated when opened (a pipe
        // or pty behind a hardware kind) makes the pool uncreditable from then on.
        let creditable = engine.kernel_creditable();
        if !creditable && !kcfg.feed_uncredited {
            if !paused {
                warn!("kernel feeding off: a source is simulated or remote, and its bytes are never credited; set kernel.feed_uncredited = true to mix them into the kernel with zero credit");
                paused = true;
            }
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        paused = false;
        let entcnt = match sys::rnd_get_entcnt(std::os::fd::AsFd::as_fd(&random)) {
            Ok(n) => n,
            Err(e) => {
                warn!("RNDGETENTCNT: {e}");
                crate::kernel::READY_BITS
            }
        };
        update(&mut |k| k.entropy_count = entcnt);
        match sched.poll(now, entcnt, creditable) {
            Action::WaitUntil(t) => std::thread::sleep((t - now).min(Duration::from_secs(1))),
            Action::Feed {
                bytes,
                reseed,
                initial,
            } => {
                let mut buf = vec![0u8; bytes];
                if engine.take(&mut buf, Face::Kernel, "kernel").is_err() {
                    update(&mut |k| k.starved += 1);
                    // Not enough entropy yet: look again shortly, never spin.
                    sched.retry_later(now, Duration::from_millis(500));
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                let credit = if creditable { (bytes * 8) as u16 } else { 0 };
                let mut l = link.lock().unwrap_or_else(|p| p.into_inner());
                match l.add(&buf, credit) {
                    Ok(()) => update(&mut |k| {
                        k.adds += 1;
                        k.bytes += bytes as u64;
                        k.bits_credited += u64::from(credit);
                    }),
                    Err(e) => {
                        error!("RNDADDENTROPY: {e}");
                        update(&mut |k| k.errors += 1);
                    }
                }
                buf.zeroize();
                if reseed {
                    match l.reseed() {
                        Ok(()) => update(&mut |k| k.reseeds += 1),
                        Err(e) => {
                            warn!("RNDRESEEDCRNG: {e}");
                            update(&mut |k| k.errors += 1);
                        }
                    }
                }
                drop(l);
                if initial {
                    info!(entcnt, credit, "initial seeding of the kernel");
                } else {
                    sched.fed(now);
                }
            }
        }
    }
}

/// `qeaasd test`: reads the sources through the pipeline for `secs` and prints rates; feeds
/// nothing.
pub fn run_test(config: &Path, sel: &Selection, secs: u64) -> Result<i32, StartError> {
    let cfg = Config::load(config)?;
    let sources = cfg.active_sources(&sel.enable, &sel.disable)?;
    let _ = privsep::drop_capabilities(&[]);
    let engine = Engine::with_conditioner(&sources, 1 << 20, cfg.pool.conditioner);
    engine.spawn_readers(sources);
    let start = Instant::now();
    let mut drained = 0u64;
    let mut buf = vec![0u8; 4096];
    while start.elapsed() < Duration::from_secs(secs) {
        let n = engine.ready().min(buf.len());
        if n > 0 && engine.take(&mut buf[..n], Face::Socket, "test").is_ok() {
            drained += n as u64;
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let el = start.elapsed().as_secs_f64();
    let snap = engine.snapshot();
    let mut healthy = false;
    for s in &snap.sources {
        println!(
            "{:<12} {:<8} {:<9} {:<8} read {:>10.3} MB/s  conditioned {:>10.3} MB/s  RCT/APT cut-offs {}/{}  failures RCT {} APT {}  FIPS {} ok / {} failed",
            s.name, s.kind, s.provenance.label(), s.state.label(),
            s.bytes_read as f64 / el / 1e6,
            s.pipeline.bytes_out as f64 / el / 1e6,
            s.cutoffs.0, s.cutoffs.1, s.health.rct_failures, s.health.apt_failures,
            s.fips.successes, s.fips.failures,
        );
        if let Some(e) = &s.last_error {
            println!("{:<12} last error: {e}", "");
        }
        healthy |= s.state == crate::engine::SourceState::Healthy;
    }
    println!(
        "pool output: {:.3} MB/s of full-entropy bytes over {el:.1} s",
        drained as f64 / el / 1e6
    );
    engine.stop();
    Ok(if healthy { exit::OK } else { exit::UNAVAILABLE })
}

/// `qeaasd list-sources`: prints configured sources and whether their device is present.
pub fn list_sources(config: &Path) -> Result<i32, StartError> {
    let cfg = Config::load(config)?;
    let mut any = false;
    for s in &cfg.sources {
        let v = cfg.source(s)?;
        let present = crate::source::present(&v.path);
        any |= present && s.enable;
        println!(
            "{:<12} {:<8} {:<24} {:<8} {:<11} H={} bits/{} {}",
            v.name,
            format!("{:?}", v.kind).to_lowercase(),
            v.path.display(),
            if s.enable { "enabled" } else { "disabled" },
            if present { "present" } else { "not present" },
            v.spec.health.h.bits(),
            if v.spec.health.width == qeaas_core::health::SampleWidth::Bit {
                "bit"
            } else {
                "byte"
            },
            if v.spec.processing == qeaas_core::pipeline::Processing::Raw {
                "raw"
            } else {
                "post-processed"
            },
        );
    }
    Ok(if any { exit::OK } else { exit::UNAVAILABLE })
}

/// Default config path, overridable by `QEAASD_CONFIG`.
pub fn default_config() -> PathBuf {
    std::env::var_os("QEAASD_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH))
}
