//! The local entropy socket (and the optional EGD-compatible one): tokio shell around
//! [`qeaas_client::proto`] and [`crate::engine::Engine::take`].
//!
//! Access control has two layers: the socket file's mode and group (checked by the kernel at
//! connect), then SO_PEERCRED against root, the socket group and `allow_users`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};
use zeroize::Zeroize;

use crate::config::SocketConfig;
use crate::engine::{Engine, Face, TakeError};
use qeaas_client::proto::{self, Request, Status};

/// Who may connect, resolved at start.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    gid: Option<u32>,
    uids: Vec<u32>,
}

impl Acl {
    /// Resolves names in `cfg`.
    pub fn from_config(cfg: &SocketConfig) -> Result<Self, String> {
        let gid = match &cfg.group {
            Some(g) => {
                Some(lookup_group(g).ok_or_else(|| format!("socket.group {g:?}: no such group"))?)
            }
            None => None,
        };
        let uids = cfg
            .allow_users
            .iter()
            .map(|u| {
                lookup_user(u).ok_or_else(|| format!("socket.allow_users: no such user {u:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { gid, uids })
    }

    fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 || self.uids.contains(&uid) {
            return true;
        }
        match self.gid {
            // No group and no user list: the file mode is the only gate.
            None => self.uids.is_empty(),
            Some(g) => gid == g || pid.is_some_and(|p| supplementary_groups(p).contains(&g)),
        }
    }
}

fn lookup_in(file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

fn lookup_user(name: &str) -> Option<u32> {
    name.parse().ok().or_else(|| lookup_in("/etc/passwd", name))
}

fn lookup_group(name: &str) -> Option<u32> {
    name.parse().ok().or_else(|| lookup_in("/etc/group", name))
}

fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
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
        let gid =
            lookup_group(g).ok_or_else(|| std::io::Error::other(format!("no such group {g:?}")))?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn peer(stream: &UnixStream) -> (u32, u32, Option<i32>) {
    match stream.peer_cred() {
        Ok(c) => (c.uid(), c.gid(), c.pid()),
        Err(_) => (u32::MAX, u32::MAX, None),
    }
}

/// Serves the qeaas protocol.
pub async fn serve(listener: UnixListener, engine: Arc<Engine>, cfg: SocketConfig, acl: Acl) {
    info!(path = %cfg.path.display(), "local entropy socket ready");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("accept on local socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (engine, cfg, acl) = (Arc::clone(&engine), cfg.clone(), acl.clone());
        tokio::spawn(async move {
            if let Err(e) = client(stream, &engine, &cfg, &acl).await {
                debug!("local client: {e}");
            }
        });
    }
}

async fn client(
    mut s: UnixStream,
    engine: &Engine,
    cfg: &SocketConfig,
    acl: &Acl,
) -> std::io::Result<()> {
    let (uid, gid, pid) = peer(&s);
    let client = format!("uid:{uid}");
    let allowed = acl.allows(uid, gid, pid);
    let mut hdr = [0u8; proto::REQUEST_LEN];
    loop {
        match s.read_exact(&mut hdr).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let req = match proto::decode_request(&hdr) {
            Ok(r) => r,
            Err(e) => {
                s.write_all(&proto::encode_answer_header(Status::BadRequest, 0))
                    .await?;
                return Err(std::io::Error::other(e));
            }
        };
        if !allowed {
            warn!(uid, gid, "local socket: peer not allowed");
            s.write_all(&proto::encode_answer_header(Status::Forbidden, 0))
                .await?;
            return Ok(());
        }
        match req {
            Request::Get { len, wait_ms } => {
                if usize::from(len) > cfg.max_request {
                    s.write_all(&proto::encode_answer_header(Status::TooLarge, 0))
                        .await?;
                    continue;
                }
                let wait = Duration::from_millis(u64::from(wait_ms).min(cfg.max_wait_ms));
                let mut buf = vec![0u8; usize::from(len)];
                let status = take_waiting(engine, &mut buf, wait, Face::Socket, &client).await;
                match status {
                    Status::Ok => {
                        let mut out = Vec::with_capacity(4 + buf.len());
                        out.extend_from_slice(&proto::encode_answer_header(Status::Ok, len));
                        out.extend_from_slice(&buf);
                        buf.zeroize();
                        let r = s.write_all(&out).await;
                        out.zeroize();
                        r?;
                    }
                    other => s.write_all(&proto::encode_answer_header(other, 0)).await?,
                }
            }
            Request::Status => {
                let text = status_text(engine);
                let len = text.len().min(65535) as u16;
                s.write_all(&proto::encode_answer_header(Status::Ok, len))
                    .await?;
                s.write_all(&text.as_bytes()[..usize::from(len)]).await?;
            }
            Request::MyStats => {
                let snap = engine.snapshot();
                let n: u64 = snap
                    .served
                    .iter()
                    .filter(|((_, c), _)| c == &client)
                    .map(|(_, n)| n)
                    .sum();
                s.write_all(&proto::encode_answer_header(Status::Ok, 8))
                    .await?;
                s.write_all(&n.to_be_bytes()).await?;
            }
        }
    }
}

/// Takes `buf.len()` bytes, waiting up to `wait` for sources to produce them.
pub async fn take_waiting(
    engine: &Engine,
    buf: &mut [u8],
    wait: Duration,
    face: Face,
    client: &str,
) -> Status {
    let start = Instant::now();
    let deadline = start + wait;
    loop {
        // Register interest before trying, so a notification between the try and the wait is
        // not lost.
        let notified = engine.data.notified();
        match engine.take(buf, face, client) {
            Ok(()) => {
                let waited = start.elapsed();
                if waited > Duration::from_millis(1) {
                    engine.add_starved(waited);
                }
                return Status::Ok;
            }
            Err(e) => {
                let now = Instant::now();
                if now >= deadline {
                    engine.add_starved(now - start);
                    return match e {
                        TakeError::NotEnough => Status::NotEnoughEntropy,
                        TakeError::SourceFailed => Status::SourceFailed,
                    };
                }
                // Wake on new data, and at least every 100 ms to re-check.
                let _ = tokio::time::timeout(
                    (deadline - now).min(Duration::from_millis(100)),
                    notified,
                )
                .await;
            }
        }
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
            s.provenance.label(),
            s.state.label(),
            s.bytes_read,
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
/// `0x04` pid.
pub async fn serve_egd(listener: UnixListener, engine: Arc<Engine>, acl: Acl, max_wait: Duration) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (engine, acl) = (Arc::clone(&engine), acl.clone());
        tokio::spawn(async move {
            let _ = egd_client(stream, &engine, &acl, max_wait).await;
        });
    }
}

async fn egd_client(
    mut s: UnixStream,
    engine: &Engine,
    acl: &Acl,
    max_wait: Duration,
) -> std::io::Result<()> {
    let (uid, gid, pid) = peer(&s);
    if !acl.allows(uid, gid, pid) {
        return Ok(());
    }
    let client = format!("uid:{uid}");
    loop {
        let cmd = match s.read_u8().await {
            Ok(c) => c,
            Err(_) => return Ok(()),
        };
        match cmd {
            0x00 => {
                let bits = (engine.ready().min(u32::MAX as usize / 8) * 8) as u32;
                s.write_all(&bits.to_be_bytes()).await?;
            }
            0x01 => {
                let n = usize::from(s.read_u8().await?).min(engine.ready());
                let mut buf = vec![0u8; n];
                let n = if n > 0 && engine.take(&mut buf, Face::Egd, &client).is_ok() {
                    n
                } else {
                    0
                };
                s.write_all(&[n as u8]).await?;
                s.write_all(&buf[..n]).await?;
                buf.zeroize();
            }
            0x02 => {
                let n = usize::from(s.read_u8().await?);
                let mut buf = vec![0u8; n];
                if n > 0
                    && take_waiting(engine, &mut buf, max_wait, Face::Egd, &client).await
                        != Status::Ok
                {
                    // EGD has no error answer: close rather than send anything short or padded.
                    return Ok(());
                }
                s.write_all(&buf).await?;
                buf.zeroize();
            }
            0x04 => {
                let pid = std::process::id().to_string();
                s.write_all(&[pid.len() as u8]).await?;
                s.write_all(pid.as_bytes()).await?;
            }
            // 0x03 (add entropy) and anything else: refuse by closing.
            _ => return Ok(()),
        }
    }
}
