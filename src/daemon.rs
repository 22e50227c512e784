//! `qeaasd run` (supervisor) and `qeaasd worker`: process setup around the engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};
use zeroize::Zeroize;

use crate::config::{Config, ConfigError, Source};
use crate::engine::{Engine, Face, TakeError};
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
    /// `--allow-root-worker`: started as root, keep the worker root (containers whose only
    /// user is root). Off: the worker becomes the configured `user`.
    pub allow_root_worker: bool,
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
        if self.allow_root_worker {
            a.push("--allow-root-worker".into());
        }
        a
    }
}

/// Loads and validates `config`, selects the sources, and checks each against what its path is
/// now (a node it may not use is a configuration error): what `check-config`, `run` and `test`
/// start from.
pub fn load_checked(config: &Path, sel: &Selection) -> Result<(Config, Vec<Source>), StartError> {
    let cfg = Config::load(config)?;
    let sources = cfg.active_sources(&sel.enable, &sel.disable)?;
    for s in &sources {
        crate::source::check(s)?;
    }
    Ok((cfg, sources))
}

/// The supervisor: starts the worker, keeps CAP_SYS_ADMIN only, executes its ioctl requests.
pub fn run_supervisor(config: &Path, sel: &Selection) -> Result<i32, StartError> {
    let (cfg, sources) = load_checked(config, sel)?;
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
    forward_stop_signals(child.id()).map_err(os("set up signal forwarding"))?;
    let from = child.stdout.take().expect("piped");
    let to = child.stdin.take().expect("piped");
    let pid = child.id();
    if let Err(e) = privsep::supervise(from, to, &random) {
        error!(worker = pid, "worker protocol: {e}; killing the worker");
        let _ = child.kill();
    }
    let status = child.wait().map_err(os("wait for worker"))?;
    let code = worker_exit(pid, status);
    Ok(code)
}

/// systemd's stop sends SIGTERM to the supervisor and the worker at once (KillMode=control-group),
/// and a shell's `kill` to the supervisor alone. Either way the supervisor must outlive the worker:
/// the worker's final feed (see [`crate::kernel`]) goes through it. So it blocks SIGTERM and
/// SIGINT (after starting the worker, which must not inherit the mask), and one thread waits for
/// them and passes SIGTERM on; the supervisor then ends when the worker does. A worker that
/// switched user from root cannot be signalled (the supervisor keeps no CAP_KILL): then the
/// supervisor exits, and the worker stops without its final feed when its pipe closes.
fn forward_stop_signals(worker: u32) -> std::io::Result<()> {
    use nix::sys::signal::{kill, SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().map_err(std::io::Error::from)?;
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || loop {
            let Ok(sig) = set.wait() else { continue };
            let pid = nix::unistd::Pid::from_raw(worker as i32);
            match kill(pid, Signal::SIGTERM) {
                Ok(()) => info!(worker, "{sig}: stopping the worker"),
                Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    warn!(
                        worker,
                        "{sig}: cannot signal the worker ({e}); it stops when this process ends"
                    );
                    std::process::exit(exit::OK);
                }
            }
        })?;
    Ok(())
}

/// Says how the worker ended (systemd's journal and an operator need to know why the service
/// stopped) and what the supervisor exits with: the worker's own status, or 70 for a signal.
fn worker_exit(pid: u32, status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str())
            .unwrap_or("unknown signal");
        error!(
            worker = pid,
            "worker was killed by signal {sig} ({name}){}; supervisor exits {}",
            if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            },
            exit::SOFTWARE
        );
        return exit::SOFTWARE;
    }
    match status.code() {
        Some(exit::OK) => {
            info!(worker = pid, "worker exited normally");
            exit::OK
        }
        Some(c) => {
            error!(
                worker = pid,
                "worker exited with status {c}; supervisor exits {c}"
            );
            c
        }
        None => {
            error!(worker = pid, "worker ended with {status}");
            exit::SOFTWARE
        }
    }
}

/// Started as root, the worker becomes the configured user (or stays root, loudly, with
/// `--allow-root-worker`); started as anyone else it stays who it is.
fn become_worker_user(cfg: &Config, sel: &Selection) -> Result<(), StartError> {
    if !nix::unistd::geteuid().is_root() && !nix::unistd::getuid().is_root() {
        return Ok(());
    }
    if sel.allow_root_worker {
        warn!("worker runs as root (--allow-root-worker): it has no capabilities, but can still write every root-owned file");
        return Ok(());
    }
    let b = privsep::become_user(&cfg.user)
        .map_err(|e| StartError::Config(ConfigError::Invalid(format!("worker: {e}"))))?;
    info!(user = %cfg.user, uid = b.uid, gid = b.gid, "worker switched from root");
    Ok(())
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
    // Descriptors: the socket's connection table must stay below the limit, with room for the
    // sources, the metrics endpoint and the pipes (LimitNOFILE in the unit raises it).
    let nofile = raise_nofile();
    let max_conns = cfg
        .socket
        .max_connections
        .min(usize::try_from(nofile.saturating_sub(64)).unwrap_or(usize::MAX))
        .max(1);
    if max_conns < cfg.socket.max_connections {
        warn!(
            "socket.max_connections lowered to {max_conns}: only {nofile} file descriptors (LimitNOFILE)"
        );
    }
    become_worker_user(&cfg, sel)?;
    // The parent-death signal set above cannot reach a worker that switched user: the
    // supervisor keeps no CAP_KILL, and the credential change cleared it anyway. So a thread
    // waits for the supervisor's end of our stdin to close (POLLHUP, no data read, no wakeup
    // while it lives) and ends the worker: it must never serve without its supervisor.
    std::thread::Builder::new()
        .name("supervisor-watch".into())
        .spawn(|| {
            let stdin = std::io::stdin();
            let mut fds = [rustix::event::PollFd::new(
                &stdin,
                rustix::event::PollFlags::empty(),
            )];
            while rustix::event::poll(&mut fds, None).map_or(true, |_| fds[0].revents().is_empty())
            {
            }
            error!("supervisor gone: the worker stops");
            std::process::exit(crate::exit::SOFTWARE);
        })
        .map_err(os("start the supervisor watch"))?;
    privsep::drop_capabilities(&[]).map_err(os("drop capabilities"))?;
    info!("worker runs with no capabilities");

    let engine = Engine::with_conditioner(&sources, cfg.pool.queue_bytes, cfg.pool.conditioner);
    engine.spawn_readers(sources.clone());
    let server = socket::Server::new(
        Arc::clone(&engine),
        cfg.socket.clone(),
        acl.clone(),
        max_conns,
    );
    let kstats: SharedKernelStats = Arc::new(Mutex::new(KernelStats::default()));
    let link = Arc::new(Mutex::new(SupervisorLink::new()));
    let feeding =
        cfg.kernel.enable && (all_may_be_hardware(&sources) || cfg.kernel.feed_uncredited);
    if cfg.kernel.enable && !feeding {
        warn!("kernel feeding off: simulated sources are never credited; set kernel.feed_uncredited = true to mix their bytes into the kernel with zero credit");
    }
    // Cleared when the feeder stops for good (its pool turned out uncreditable).
    let feeding = Arc::new(std::sync::atomic::AtomicBool::new(feeding));
    // Set at stop: the feeder feeds once more and ends (see crate::kernel).
    let stop_feeding = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut feeder_thread = None;
    if feeding.load(Ordering::SeqCst) {
        // The feeder's share of the ready bytes, which no client can take.
        engine.reserve_for_kernel(cfg.kernel.feed_bytes);
        let (engine, kstats, link, kcfg, flag) = (
            Arc::clone(&engine),
            Arc::clone(&kstats),
            Arc::clone(&link),
            cfg.kernel.clone(),
            Arc::clone(&feeding),
        );
        let stop = Arc::clone(&stop_feeding);
        feeder_thread = Some(
            std::thread::Builder::new()
                .name("kernel-feed".into())
                .spawn(move || {
                    feeder(&engine, &kstats, &link, &kcfg, &stop);
                    flag.store(false, Ordering::SeqCst);
                })
                .map_err(os("start kernel feeder"))?,
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(os("tokio runtime"))?;
    let to_remove = [Some(cfg.socket.path.clone()), cfg.socket.egd_path.clone()];
    let serving = Arc::clone(&engine);
    rt.block_on(async move {
        let engine = serving;
        if let Some(l) = bound.socket {
            let l = tokio::net::UnixListener::from_std(l).expect("nonblocking listener");
            tokio::spawn(socket::serve(l, Arc::clone(&server)));
        }
        if let Some(l) = bound.egd {
            let l = tokio::net::UnixListener::from_std(l).expect("nonblocking listener");
            tokio::spawn(socket::serve_egd(l, Arc::clone(&server)));
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
                let feeding = feeding.load(Ordering::SeqCst);
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
    });
    if let Some(t) = feeder_thread {
        stop_feeding.store(true, Ordering::SeqCst);
        t.thread().unpark();
        // The final feed is one take and one round trip to the supervisor; a stop does not wait
        // longer than that should take.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    engine.stop();
    for p in to_remove.iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    Ok(exit::OK)
}

/// Raises the soft limit on open files to the hard limit (systemd's LimitNOFILE sets both; a
/// root shell's soft limit is often 1024) and returns it.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// True when every source may turn out to be hardware (its claim allows it): only then can the
/// kernel be credited at all. Whether it is, is decided with each take (see
/// [`Engine::take_for_kernel`]).
fn all_may_be_hardware(sources: &[Source]) -> bool {
    !sources.is_empty() && sources.iter().all(|s| s.claim.may_be_hardware())
}

fn feeder(
    engine: &Engine,
    kstats: &SharedKernelStats,
    link: &Mutex<SupervisorLink>,
    kcfg: &crate::config::KernelConfig,
    stop: &std::sync::atomic::AtomicBool,
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
    let update = |f: &mut dyn FnMut(&mut KernelStats)| {
        if let Ok(mut k) = kstats.lock() {
            f(&mut k);
        }
    };
    // Sleeps end early at stop (the worker unparks this thread).
    let nap = |d: Duration| {
        if !stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(d);
        }
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            sched.stop();
        }
        let now = Instant::now();
        let entcnt = match sys::rnd_get_entcnt(std::os::fd::AsFd::as_fd(&random)) {
            Ok(n) => n,
            Err(e) => {
                warn!("RNDGETENTCNT: {e}");
                crate::kernel::READY_BITS
            }
        };
        update(&mut |k| k.entropy_count = entcnt);
        // A hint for the schedule only (the initial phase is for credited feeds); the credit
        // itself comes with the bytes below.
        match sched.poll(now, entcnt, engine.kernel_creditable()) {
            Action::Done => return,
            Action::WaitUntil(t) => nap((t - now).min(Duration::from_secs(1))),
            Action::Feed {
                bytes,
                reseed,
                initial,
            } => {
                let mut buf = vec![0u8; bytes];
                let taken = match engine.take_for_kernel(&mut buf, kcfg.feed_uncredited) {
                    Ok(t) => t,
                    Err(TakeError::Uncreditable) => {
                        // For good: a pool that mixed simulated or network bytes stays so.
                        warn!("kernel feeding off: a source turned out to be simulated or remote, and its bytes are never credited; set kernel.feed_uncredited = true to mix them into the kernel with zero credit");
                        return;
                    }
                    Err(_) => {
                        update(&mut |k| k.starved += 1);
                        // Not enough entropy yet: look again shortly, never spin.
                        sched.retry_later(now, Duration::from_millis(500));
                        nap(Duration::from_millis(500));
                        continue;
                    }
                };
                let credit = u16::try_from(taken.kernel_credit_bits(bytes)).unwrap_or(0);
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
                    // The schedule, not the stop flag: the flag may have been set during a
                    // periodic feed, and the final one is still to come.
                    if sched.is_final_feed() {
                        info!(credit, "final feed before stopping");
                    }
                    sched.fed(now);
                }
            }
        }
    }
}

/// `qeaasd test`: reads the sources through the pipeline for `secs` and prints rates; feeds
/// nothing.
pub fn run_test(config: &Path, sel: &Selection, secs: u64) -> Result<i32, StartError> {
    let (cfg, sources) = load_checked(config, sel)?;
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
            s.name, s.kind, s.provenance_label(), s.state.label(),
            s.counters.bytes_read as f64 / el / 1e6,
            s.pipeline.bytes_out as f64 / el / 1e6,
            s.cutoffs.0, s.cutoffs.1, s.health.rct_failures, s.health.apt_failures,
            s.fips.successes, s.fips.failures,
        );
        if let Some(e) = &s.last_error {
            println!("{:<12} last error: {e}", "");
        }
        healthy |= s.state == qeaas_core::driver::SourceState::Healthy;
    }
    println!(
        "pool output: {:.3} MB/s of full-entropy bytes over {el:.1} s",
        drained as f64 / el / 1e6
    );
    engine.stop();
    Ok(if healthy { exit::OK } else { exit::UNAVAILABLE })
}

/// `qeaasd list-sources`: prints configured sources, whether their device is present, and what
/// it would count as (hardware, simulated, network, or refused and why).
pub fn list_sources(config: &Path) -> Result<i32, StartError> {
    let cfg = Config::load(config)?;
    let mut any = false;
    for s in &cfg.sources {
        let v = cfg.source(s)?;
        let (present, refusal) = match std::fs::metadata(&v.path) {
            Ok(meta) => {
                match qeaas_core::provenance::decide(v.claim, crate::source::node_of(&meta)) {
                    Ok(p) => (format!("present, {}", p.label()), None),
                    Err(r) => ("refused".to_string(), Some(r)),
                }
            }
            Err(_) => ("not present".to_string(), None),
        };
        any |= present.starts_with("present") && s.enable;
        println!(
            "{:<12} {:<8} {:<24} {:<8} {:<19} H={} bits/{} {}",
            v.name,
            v.kind_label(),
            v.path.display(),
            if s.enable { "enabled" } else { "disabled" },
            present,
            v.spec.health.h.bits(),
            if v.spec.health.width == qeaas_core::health::SampleWidth::Bit {
                "bit"
            } else {
                "byte"
            },
            match v.spec.processing {
                qeaas_core::pipeline::Processing::PostProcessed => "post-processed",
                p if p.uses_extractor(cfg.pool.conditioner) => "raw, Toeplitz extractor",
                _ => "raw",
            },
        );
        if let Some(r) = refusal {
            println!("{:<12} {r}", "");
        }
    }
    Ok(if any { exit::OK } else { exit::UNAVAILABLE })
}

/// Default config path, overridable by `QEAASD_CONFIG`.
pub fn default_config() -> PathBuf {
    std::env::var_os("QEAASD_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH))
}
