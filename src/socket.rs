//! The local entropy socket (and the optional EGD-compatible one): tokio shell around
//! [`qeaas_client::proto`], [`crate::fair`] and [`crate::engine::Engine::take`].
//!
//! Access control has two layers: the socket file's mode and group (checked by the kernel at
//! connect), then the peer's credentials as the kernel recorded them at connect (SO_PEERCRED,
//! SO_PEERGROUPS) against root, the socket group and `allow_users`, resolved through NSS.
//!
//! Under attack from a local client (any uid that may connect): each uid holds at most
//! `max_connections_per_uid` connections and, when the table is full, no more than its fair share
//! of it (idle connections of the biggest holder are closed to make room); a request must arrive
//! whole within `request_timeout_ms` of its first byte, and its answer be read as quickly; ready
//! bytes are shared byte-fairly between uids ([`crate::fair::FairShare`]) and never below the
//! kernel feeder's reserve ([`crate::engine::Engine::reserve_for_kernel`]).

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use zeroize::Zeroize;

use crate::config::SocketConfig;
use crate::engine::{Engine, Face, TakeError};
use crate::fair::{Admission, Admit, ConnId, ConnLimits, ConnRefusal, FairShare, Ticket};
use qeaas_client::proto::{self, Request, Status};

/// Who may connect, resolved at start.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    gid: Option<u32>,
    uids: Vec<u32>,
}

impl Acl {
    /// Resolves names in `cfg` through NSS (files, LDAP, sssd, extrausers: whatever
    /// nsswitch.conf says), as `getpwnam_r`/`getgrnam_r` do.
    pub fn from_config(cfg: &SocketConfig) -> Result<Self, String> {
        let gid = match &cfg.group {
            Some(g) => Some(lookup_group(g)?),
            None => None,
        };
        let uids = cfg
            .allow_users
            .iter()
            .map(|u| lookup_user(u).map_err(|e| format!("socket.allow_users: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { gid, uids })
    }

    /// Whether a peer with these credentials (as recorded at connect) may be served.
    pub fn allows(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        if uid == 0 || self.uids.contains(&uid) {
            return true;
        }
        match self.gid {
            // No group and no user list: the file mode is the only gate.
            None => self.uids.is_empty(),
            Some(g) => gid == g || groups.contains(&g),
        }
    }
}

/// A user's uid: a number as is, else its name through NSS.
pub fn lookup_user(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!("no such user {name:?}")),
        Err(e) => Err(format!("user {name:?}: {e}")),
    }
}

/// A group's gid: a number as is, else its name through NSS.
pub fn lookup_group(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("socket.group {name:?}: no such group")),
        Err(e) => Err(format!("socket.group {name:?}: {e}")),
    }
}

/// Binds `path` with the configured mode and group (before privileges are dropped).
pub fn bind(
    path: &Path,
    mode: u32,
    group: Option<&str>,
) -> std::io::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    if let Some(g) = group {
        let gid = lookup_group(g).map_err(std::io::Error::other)?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Counters of the socket's defences, for metrics and tests.
#[derive(Debug, Default)]
pub struct SocketStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections refused because their uid held its cap.
    pub refused_per_uid: AtomicU64,
    /// Connections refused because the table was full.
    pub refused_full: AtomicU64,
    /// Idle connections closed to make room for a uid below its fair share.
    pub evicted: AtomicU64,
    /// Connections closed because a request or an answer took longer than the timeout.
    pub timeouts: AtomicU64,
}

impl SocketStats {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the peer's credentials were at connect.
#[derive(Debug, Clone)]
struct Peer {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

fn peer(stream: &UnixStream) -> Peer {
    match stream.peer_cred() {
        Ok(c) => Peer {
            uid: c.uid(),
            gid: c.gid(),
            // Unknown groups grant nothing.
            groups: crate::sys::peer_groups(stream.as_fd()).unwrap_or_default(),
        },
        Err(_) => Peer {
            uid: u32::MAX,
            gid: u32::MAX,
            groups: Vec::new(),
        },
    }
}

struct Conns {
    admission: Admission,
    evict: std::collections::HashMap<ConnId, Arc<Notify>>,
}

/// The state one listener's connections share: the connection table and the fair queue.
pub struct Server {
    engine: Arc<Engine>,
    cfg: SocketConfig,
    acl: Acl,
    conns: Mutex<Conns>,
    fair: Mutex<FairShare>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connection's place in the table, released when its task ends however it ends.
struct Slot<'a> {
    server: &'a Server,
    id: ConnId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut c = locked(&self.server.conns);
        c.admission.release(self.id);
        c.evict.remove(&self.id);
        self.server
            .engine
            .socket_stats
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A waiting request's place in the fair queue, given up if its task ends before it is served.
struct Place<'a> {
    server: &'a Server,
    ticket: Option<Ticket>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            locked(&self.server.fair).cancel(t);
            // The next in line may be served now.
            self.server.engine.data.notify_waiters();
        }
    }
}

impl Server {
    /// A server for `cfg`; at most `total` connections at once (kept below the file
    /// descriptor limit by the caller).
    pub fn new(engine: Arc<Engine>, cfg: SocketConfig, acl: Acl, total: usize) -> Arc<Self> {
        let limits = ConnLimits {
            per_uid: cfg.max_connections_per_uid.max(1),
            total: total.max(1),
        };
        Arc::new(Self {
            engine,
            cfg,
            acl,
            conns: Mutex::new(Conns {
                admission: Admission::new(limits),
                evict: Default::default(),
            }),
            fair: Mutex::new(FairShare::new()),
        })
    }

    fn stats(&self) -> &SocketStats {
        &self.engine.socket_stats
    }

    /// Admits or refuses a new connection of `uid`; evicts an idle one if needed. The caller
    /// wraps the id in a [`Slot`] at once.
    fn admit(&self, uid: u32) -> Result<(ConnId, Arc<Notify>), ConnRefusal> {
        let mut c = locked(&self.conns);
        let id = match c.admission.admit(uid) {
            Admit::Accept(id) => id,
            Admit::AcceptEvicting { id, evict } => {
                if let Some(n) = c.evict.remove(&evict) {
                    n.notify_one();
                }
                SocketStats::inc(&self.stats().evicted);
                id
            }
            Admit::Refuse(r) => {
                SocketStats::inc(match r {
                    ConnRefusal::PerUid => &self.stats().refused_per_uid,
                    ConnRefusal::Full => &self.stats().refused_full,
                });
                return Err(r);
            }
        };
        let n = Arc::new(Notify::new());
        c.evict.insert(id, Arc::clone(&n));
        self.stats().connections.fetch_add(1, Ordering::Relaxed);
        Ok((id, n))
    }

    fn busy(&self, id: ConnId) {
        locked(&self.conns).admission.busy(id);
    }

    fn idle(&self, id: ConnId) {
        locked(&self.conns).admission.idle(id);
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.request_timeout_ms.max(1))
    }

    /// Takes `buf.len()` bytes for `uid`, in its fair turn, waiting up to `wait`.
    pub async fn take_fair(
        &self,
        buf: &mut [u8],
        wait: Duration,
        face: Face,
        uid: u32,
        client: &str,
    ) -> Status {
        let engine = &self.engine;
        let start = Instant::now();
        let deadline = start + wait;
        let mut place = Place {
            server: self,
            ticket: Some(locked(&self.fair).submit(uid, buf.len())),
        };
        let ticket = place.ticket.expect("just submitted");
        let mut last = TakeError::NotEnough;
        loop {
            // Register interest before trying, so a notification in between is not lost.
            let notified = engine.data.notified();
            {
                let mut f = locked(&self.fair);
                if f.head() == Some(ticket) {
                    match engine.take(buf, face, client) {
                        Ok(_) => {
                            f.grant(usize::MAX);
                            place.ticket = None;
                            drop(f);
                            // The next in line may be served now.
                            engine.data.notify_waiters();
                            let waited = start.elapsed();
                            if waited > Duration::from_millis(1) {
                                engine.add_starved(waited);
                            }
                            return Status::Ok;
                        }
                        Err(e) => last = e,
                    }
                } else if !engine.any_source_may_produce() {
                    last = TakeError::SourceFailed;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                engine.add_starved(now - start);
                return match last {
                    // Uncreditable is the kernel's refusal only.
                    TakeError::NotEnough | TakeError::Uncreditable => Status::NotEnoughEntropy,
                    TakeError::SourceFailed => Status::SourceFailed,
                };
            }
            // Wake on new data or a turn, and at least every 100 ms to re-check.
            let _ =
                tokio::time::timeout((deadline - now).min(Duration::from_millis(100)), notified)
                    .await;
        }
    }
}

/// Serves the qeaas protocol.
pub async fn serve(listener: UnixListener, server: Arc<Server>) {
    info!(path = %server.cfg.path.display(), "local entropy socket ready");
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("accept on local socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let p = peer(&stream);
        let server2 = Arc::clone(&server);
        let admitted = server.admit(p.uid);
        match admitted {
            Err(r) => {
                // Closed at once. Logged at most once a minute: the log must not be a weapon.
                if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    last_refusal_log = Some(Instant::now());
                    warn!(uid = p.uid, reason = r.label(), "local socket: connection refused (more refusals are counted in qeaas_socket_connections_refused_total)");
                }
                drop(stream);
            }
            Ok((id, evicted)) => {
                tokio::spawn(async move {
                    let slot = Slot {
                        server: &server2,
                        id,
                    };
                    if let Err(e) = client(stream, &server2, slot.id, &p, evicted).await {
                        debug!("local client: {e}");
                    }
                    drop(slot);
                });
            }
        }
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "request or answer too slow")
}

/// Writes `data` within the request timeout.
async fn send(s: &mut UnixStream, server: &Server, data: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(server.timeout(), s.write_all(data)).await {
        Ok(r) => r,
        Err(_) => {
            SocketStats::inc(&server.stats().timeouts);
            Err(timed_out())
        }
    }
}

async fn client(
    mut s: UnixStream,
    server: &Server,
    id: ConnId,
    p: &Peer,
    evicted: Arc<Notify>,
) -> std::io::Result<()> {
    let (engine, cfg) = (&server.engine, &server.cfg);
    let client = format!("uid:{}", p.uid);
    let allowed = server.acl.allows(p.uid, p.gid, &p.groups);
    let mut hdr = [0u8; proto::REQUEST_LEN];
    loop {
        // Idle: the table may close this connection to make room for another uid.
        let first = tokio::select! {
            r = s.read_u8() => r,
            _ = evicted.notified() => return Ok(()),
        };
        match first {
            Ok(b) => hdr[0] = b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        server.busy(id);
        // The rest of the request must follow promptly.
        match tokio::time::timeout(server.timeout(), s.read_exact(&mut hdr[1..])).await {
            Ok(r) => r.map(drop)?,
            Err(_) => {
                SocketStats::inc(&server.stats().timeouts);
                return Err(timed_out());
            }
        }
        let req = match proto::decode_request(&hdr) {
            Ok(r) => r,
            Err(e) => {
                send(
                    &mut s,
                    server,
                    &proto::encode_answer_header(Status::BadRequest, 0),
                )
                .await?;
                return Err(std::io::Error::other(e));
            }
        };
        if !allowed {
            warn!(uid = p.uid, gid = p.gid, "local socket: peer not allowed");
            send(
                &mut s,
                server,
                &proto::encode_answer_header(Status::Forbidden, 0),
            )
            .await?;
            return Ok(());
        }
        match req {
            Request::Get { len, wait_ms } => {
                if usize::from(len) > cfg.max_request {
                    send(
                        &mut s,
                        server,
                        &proto::encode_answer_header(Status::TooLarge, 0),
                    )
                    .await?;
                    server.idle(id);
                    continue;
                }
                let wait = Duration::from_millis(u64::from(wait_ms).min(cfg.max_wait_ms));
                let mut buf = vec![0u8; usize::from(len)];
                let status = server
                    .take_fair(&mut buf, wait, Face::Socket, p.uid, &client)
                    .await;
                match status {
                    Status::Ok => {
                        let mut out = Vec::with_capacity(4 + buf.len());
                        out.extend_from_slice(&proto::encode_answer_header(Status::Ok, len));
                        out.extend_from_slice(&buf);
                        buf.zeroize();
                        let r = send(&mut s, server, &out).await;
                        out.zeroize();
                        r?;
                    }
                    other => send(&mut s, server, &proto::encode_answer_header(other, 0)).await?,
                }
            }
            Request::Status => {
                let text = status_text(engine);
                let len = text.len().min(65535) as u16;
                let mut out = proto::encode_answer_header(Status::Ok, len).to_vec();
                out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
                send(&mut s, server, &out).await?;
            }
            Request::MyStats => {
                let snap = engine.snapshot();
                let n: u64 = snap
                    .served
                    .iter()
                    .filter(|((_, c), _)| c == &client)
                    .map(|(_, n)| n)
                    .sum();
                let mut out = proto::encode_answer_header(Status::Ok, 8).to_vec();
                out.extend_from_slice(&n.to_be_bytes());
                send(&mut s, server, &out).await?;
            }
        }
        server.idle(id);
    }
}

/// `key=value` status lines.
pub fn status_text(engine: &Engine) -> String {
    let snap = engine.snapshot();
    let mut t = format!(
        "version={}\nuptime_secs={}\nready_bytes={}\nqueue_bytes={}\npool_credit_bits={}\nkernel_creditable={}\n",
        env!("CARGO_PKG_VERSION"),
        engine.started.elapsed().as_secs(),
        snap.ready,
        snap.capacity,
        snap.pool_credit_bits,
        engine.kernel_creditable(),
    );
    for s in &snap.sources {
        t.push_str(&format!(
            "source.{}={} {} {} read={} rct_failures={} apt_failures={}{}\n",
            s.name,
            s.kind,
            s.provenance_label(),
            s.state.label(),
            s.counters.bytes_read,
            s.health.rct_failures,
            s.health.apt_failures,
            s.last_error
                .as_ref()
                .map(|e| format!(" last_error=\"{e}\""))
                .unwrap_or_default()
        ));
    }
    t
}

/// Serves the EGD protocol (entropy gathering daemon), for legacy consumers:
/// `0x00` entropy level (u32 BE bits), `0x01 n` non-blocking read (count + up to n bytes),
/// `0x02 n` blocking read (n bytes), `0x03` write (refused: local input is never credited),
/// `0x04` pid. The same connection caps, timeouts and fair shares as the qeaas protocol.
pub async fn serve_egd(listener: UnixListener, server: Arc<Server>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let p = peer(&stream);
        let Ok((id, evicted)) = server.admit(p.uid) else {
            continue;
        };
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let slot = Slot {
                server: &server,
                id,
            };
            let _ = egd_client(stream, &server, id, &p, evicted).await;
            drop(slot);
        });
    }
}

/// One argument byte of an EGD command, within the request timeout.
async fn read_arg(s: &mut UnixStream, server: &Server) -> std::io::Result<u8> {
    match tokio::time::timeout(server.timeout(), s.read_u8()).await {
        Ok(r) => r,
        Err(_) => {
            SocketStats::inc(&server.stats().timeouts);
            Err(timed_out())
        }
    }
}

async fn egd_client(
    mut s: UnixStream,
    server: &Server,
    id: ConnId,
    p: &Peer,
    evicted: Arc<Notify>,
) -> std::io::Result<()> {
    if !server.acl.allows(p.uid, p.gid, &p.groups) {
        return Ok(());
    }
    let engine = &server.engine;
    let client = format!("uid:{}", p.uid);
    let max_wait = Duration::from_millis(server.cfg.max_wait_ms);
    loop {
        let cmd = tokio::select! {
            r = s.read_u8() => match r { Ok(c) => c, Err(_) => return Ok(()) },
            _ = evicted.notified() => return Ok(()),
        };
        server.busy(id);
        match cmd {
            0x00 => {
                let bits = (engine.ready().min(u32::MAX as usize / 8) * 8) as u32;
                send(&mut s, server, &bits.to_be_bytes()).await?;
            }
            0x01 => {
                let n = usize::from(read_arg(&mut s, server).await?).min(engine.ready());
                let mut buf = vec![0u8; n];
                let n = if n > 0
                    && server
                        .take_fair(&mut buf, Duration::ZERO, Face::Egd, p.uid, &client)
                        .await
                        == Status::Ok
                {
                    n
                } else {
                    0
                };
                let mut out = vec![n as u8];
                out.extend_from_slice(&buf[..n]);
                buf.zeroize();
                let r = send(&mut s, server, &out).await;
                out.zeroize();
                r?;
            }
            0x02 => {
                let n = usize::from(read_arg(&mut s, server).await?);
                let mut buf = vec![0u8; n];
                if n > 0
                    && server
                        .take_fair(&mut buf, max_wait, Face::Egd, p.uid, &client)
                        .await
                        != Status::Ok
                {
                    // EGD has no error answer: close rather than send anything short or padded.
                    return Ok(());
                }
                let r = send(&mut s, server, &buf).await;
                buf.zeroize();
                r?;
            }
            0x04 => {
                let pid = std::process::id().to_string();
                let mut out = vec![pid.len() as u8];
                out.extend_from_slice(pid.as_bytes());
                send(&mut s, server, &out).await?;
            }
            // 0x03 (add entropy) and anything else: refuse by closing.
            _ => return Ok(()),
        }
        server.idle(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_through_nss_and_numbers_pass_through() {
        assert_eq!(lookup_user("root"), Ok(0));
        assert_eq!(lookup_user("4242"), Ok(4242));
        assert!(lookup_user("qeaas-no-such-user").is_err());
        assert_eq!(lookup_group("root"), Ok(0));
        assert!(lookup_group("qeaas-no-such-group")
            .unwrap_err()
            .contains("no such group"));
    }

    #[test]
    fn the_acl_takes_root_listed_users_and_group_members_by_any_membership() {
        let open = Acl::default();
        assert!(
            open.allows(1000, 1000, &[]),
            "no group, no list: the file mode decides"
        );
        let acl = Acl {
            gid: Some(990),
            uids: vec![1234],
        };
        assert!(acl.allows(0, 0, &[]));
        assert!(acl.allows(1234, 1234, &[]));
        assert!(acl.allows(1000, 990, &[]), "primary group");
        assert!(acl.allows(1000, 1000, &[5, 990]), "supplementary group");
        assert!(!acl.allows(1000, 1000, &[5, 991]));
        let users_only = Acl {
            gid: None,
            uids: vec![1234],
        };
        assert!(!users_only.allows(1000, 1000, &[]));
    }
}
