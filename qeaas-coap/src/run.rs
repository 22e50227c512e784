//! The I/O shell: one UDP socket, one tokio task, the daemon's local socket.
//!
//! The loop owns the [`Server`] and never waits for the daemon: each [`Out::Fetch`] goes to a
//! bounded queue served by `daemon_connections` tasks, each with its own connection to qeaasd,
//! and their answers come back to the loop through [`Server::complete`]. So the state stays in
//! one place with no locks, and one slow fetch does not stall other peers. Under load, requests
//! waiting in the queue share one daemon round trip (disjoint slices of one answer).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qeaas_client::{AsyncClient, Batch, PoolBytes};
use qeaas_wolfssl_sys::{Context, Format, Role, TicketKey, Version};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};
use tracing::{debug, info, warn};

use crate::coap::Unavailable;
use crate::config::Config;
use crate::server::{BlockLimits, Counters, Fetch, Limits, Out, Server};

/// Why the frontend stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Socket or privilege operation failed.
    #[error("{0}: {1}")]
    Io(&'static str, io::Error),
    /// wolfSSL refused the configuration.
    #[error(transparent)]
    Tls(#[from] qeaas_wolfssl_sys::Error),
    /// Privileges could not be dropped.
    #[error(transparent)]
    Privileges(#[from] qeaas_client::privdrop::PrivDropError),
}

/// The server context: DTLS 1.3 with a fallback to 1.2 (libcoap's clients), our PSKs, our
/// certificate and the CA for client certificates if configured, and the post-quantum groups
/// first. Reads the key files, so it
/// runs before the privileges are dropped.
pub fn server_context(cfg: &Config) -> Result<Context, RunError> {
    use qeaas_wolfssl_sys::Group::*;
    let mut ctx = Context::new(Role::Server, Version::Any)?;
    let table = cfg
        .psk_table()
        .map_err(|e| RunError::Io("config", io::Error::other(e)))?;
    if !table.is_empty() {
        ctx.set_psk_server(table);
    }
    if let Some(c) = &cfg.certificate {
        let chain = std::fs::read(&c.chain).map_err(|e| RunError::Io("certificate chain", e))?;
        let key = std::fs::read(&c.key).map_err(|e| RunError::Io("certificate key", e))?;
        ctx.use_certificate_chain(&chain, format_of(&chain))?;
        ctx.use_private_key(&key, format_of(&key))?;
    }
    if let Some(c) = &cfg.client_certs {
        let ca = std::fs::read(&c.ca).map_err(|e| RunError::Io("client CA", e))?;
        ctx.verify_clients(&ca, format_of(&ca), c.require)?;
    }
    if let Some(path) = &cfg.dtls.ticket_key_file {
        let secret = ticket_secret(path).map_err(|e| RunError::Io("[dtls] ticket_key_file", e))?;
        let key = TicketKey::derive(&secret, cfg.dtls.ticket_lifetime_secs)?;
        info!(
            file = %path.display(),
            lifetime_secs = key.lifetime_secs(),
            key_name = hex(&key.name()),
            "DTLS 1.3 session tickets on"
        );
        ctx.enable_session_tickets(key)?;
    }
    ctx.set_groups(&[MlKem512, MlKem768, X25519MlKem768, X25519, P256])?;
    Ok(ctx)
}

/// PEM if it looks like PEM, else DER.
fn format_of(data: &[u8]) -> Format {
    if data.windows(10).any(|w| w == b"-----BEGIN") {
        Format::Pem
    } else {
        Format::Der
    }
}

/// The secret session tickets are sealed with (`[dtls] ticket_key_file`), read before the
/// privileges are dropped. A missing file is created exclusively, mode 0600, with 32 random
/// bytes (not pool bytes: like the cookie key, it is not entropy served to anyone). An existing
/// one must be a regular file of 32..=4096 bytes that neither group nor others can access.
pub fn ticket_secret(path: &Path) -> io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::{Read, Write};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    const MIN: usize = qeaas_wolfssl_sys::wolf::TICKET_SECRET_MIN;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            let secret = zeroize::Zeroizing::new(random_secret()?);
            f.write_all(&secret)?;
            f.sync_all()?;
            info!(file = %path.display(), "created a new ticket key file");
            return Ok(secret);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "mode {:o}: group or others can access it (chmod 600)",
            mode & 0o777
        )));
    }
    let mut secret = zeroize::Zeroizing::new(Vec::new());
    f.take(4097).read_to_end(&mut secret)?;
    if !(MIN..=4096).contains(&secret.len()) {
        return Err(io::Error::other(format!(
            "{} bytes: a ticket key file holds {MIN}..=4096",
            secret.len()
        )));
    }
    Ok(secret)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn random_secret() -> io::Result<Vec<u8>> {
    // The cookie key needs no pool bytes: it is not entropy served to anyone.
    let mut b = vec![0u8; 32];
    io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(b)
}

/// `(uid, gid)` of `user` from /etc/passwd (no NSS: system users are local).
/// When root: become `user` (see [`qeaas_client::privdrop::drop_to_user`]). Must run before any other
/// thread exists.
pub fn drop_privileges(user: &str) -> Result<(), RunError> {
    let d = qeaas_client::privdrop::drop_to_user(Some(user))?;
    if d.switched {
        info!(user, uid = d.uid, gid = d.gid, "privileges dropped");
    }
    Ok(())
}

/// Largest single GET asked of the daemon: its default `max_request`. A larger body (a
/// block-wise answer) is fetched in consecutive GETs on one connection; if one fails, the
/// bytes already received are wiped, never served.
const DAEMON_CHUNK: u16 = 4096;

async fn fetch(
    client: &mut Option<AsyncClient>,
    path: &Path,
    n: usize,
    wait_ms: u16,
) -> Result<PoolBytes, Unavailable> {
    for _ in 0..2 {
        if client.is_none() {
            match AsyncClient::connect(path).await {
                Ok(c) => *client = Some(c),
                Err(e) => {
                    warn!("qeaasd socket {}: {e}", path.display());
                    return Err(Unavailable);
                }
            }
        }
        let c = client.as_mut().expect("connected above");
        match c.get_exact(n, DAEMON_CHUNK, wait_ms).await {
            Ok(b) => return Ok(b),
            Err(e) if e.status().is_some() => {
                // The daemon said no (not enough entropy, failed source): 5.03.
                warn!("qeaasd: {e}");
                return Err(Unavailable);
            }
            Err(e) => {
                // Broken connection (daemon restarted): reconnect once.
                warn!("qeaasd: {e}");
                *client = None;
            }
        }
    }
    Err(Unavailable)
}

/// Fetches waiting for a daemon connection at most; beyond it requests get 5.03 at once.
const FETCH_QUEUE: usize = 1024;

type Done = (Fetch, Result<PoolBytes, Unavailable>);

/// Bytes asked of the daemon in one GET when waiting requests are coalesced: within the
/// daemon's default `max_request` (4096). A larger single request is fetched alone.
const BATCH_BYTES: usize = 1024;

/// One daemon connection: takes fetches from the shared queue until it closes. Requests that
/// are already waiting when it takes one share a single daemon round trip, cut by the shared
/// [`Batch`] into disjoint slices, so each pool byte still goes to exactly one request.
async fn fetcher(
    jobs: Arc<Mutex<mpsc::Receiver<Fetch>>>,
    done: mpsc::UnboundedSender<Done>,
    path: PathBuf,
    wait_ms: u16,
) {
    let mut client = None;
    // A request taken from the queue that did not fit the previous batch.
    let mut carry: Option<Fetch> = None;
    loop {
        let mut batch = Batch::new(BATCH_BYTES);
        if let Some(f) = carry.take() {
            let n = f.exchange.n;
            let _ = batch.add(f, n);
        }
        {
            // The lock is held only while taking jobs, not during the fetch.
            let mut rx = jobs.lock().await;
            if batch.is_empty() {
                let Some(f) = rx.recv().await else {
                    return;
                };
                let n = f.exchange.n;
                let _ = batch.add(f, n);
            }
            while let Ok(f) = rx.try_recv() {
                let n = f.exchange.n;
                if let Err(f) = batch.add(f, n) {
                    carry = Some(f);
                    break;
                }
            }
        }
        let served = match fetch(&mut client, &path, batch.total(), wait_ms).await {
            Ok(b) => batch.serve(b).map(|(slices, _rest)| slices),
            Err(Unavailable) => Err(batch.fail()),
        };
        let results: Vec<Done> = match served {
            Ok(slices) => slices.into_iter().map(|(f, b)| (f, Ok(b))).collect(),
            Err(unserved) => unserved
                .into_iter()
                .map(|f| (f, Err(Unavailable)))
                .collect(),
        };
        for d in results {
            if done.send(d).is_err() {
                return;
            }
        }
    }
}

/// Serves forever on `sock` with `ctx` (both made before the privileges were dropped).
pub async fn serve(cfg: Config, sock: std::net::UdpSocket, ctx: Context) -> Result<(), RunError> {
    sock.set_nonblocking(true)
        .map_err(|e| RunError::Io("udp", e))?;
    let sock = UdpSocket::from_std(sock).map_err(|e| RunError::Io("udp", e))?;
    let secret = random_secret().map_err(|e| RunError::Io("/dev/urandom", e))?;
    let limits = Limits {
        max_bytes: cfg.max_bytes,
        max_sessions: cfg.max_sessions,
        max_handshakes: cfg.max_handshakes,
        idle: Duration::from_secs(cfg.idle_secs),
        handshake: Duration::from_secs(cfg.handshake_secs),
    };
    let quotas = cfg
        .quotas()
        .map_err(|e| RunError::Io("config", io::Error::other(e)))?;
    let mut server = Server::new(ctx, secret, limits);
    server.set_blocks(BlockLimits {
        szx: cfg.block_szx(),
        store_bytes: cfg.block_store_bytes,
        life: Duration::from_secs(cfg.block_secs),
    });
    server.set_quotas(quotas);
    let (job_tx, job_rx) = mpsc::channel::<Fetch>(FETCH_QUEUE);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    for _ in 0..cfg.daemon_connections {
        tokio::spawn(fetcher(
            job_rx.clone(),
            done_tx.clone(),
            cfg.socket.clone(),
            cfg.wait_ms,
        ));
    }
    let mut buf = vec![0u8; 65536];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut logged = (Counters::default(), usize::MAX);
    info!(listen = %sock.local_addr().map_err(|e| RunError::Io("udp", e))?, "serving CoAP over DTLS");
    loop {
        let outs = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => server.on_datagram(from, &buf[..n], Instant::now()),
                Err(e) => {
                    // ICMP errors surface here on Linux; they concern one peer, not us.
                    warn!("recv: {e}");
                    continue;
                }
            },
            Some((f, r)) = done_rx.recv() => server.complete(f, r, Instant::now()),
            _ = tick.tick() => {
                let now = (server.counters(), server.peers());
                if now != logged {
                    // For operators and the flood test: state stays bounded under load.
                    let c = now.0;
                    debug!(
                        peers = now.1,
                        handshaking = server.handshaking(),
                        handshakes = c.handshakes,
                        failed = c.failed,
                        dropped_at_cap = c.dropped_at_cap,
                        unverified_in = c.unverified_in,
                        unverified_out = c.unverified_out,
                        bytes_served = c.bytes_served,
                        over_quota = c.over_quota,
                        block_store_bytes = server.stored_bytes(),
                        "counters"
                    );
                    logged = now;
                }
                server.on_tick(Instant::now())
            }
        };
        let mut queue: VecDeque<Out> = outs.into();
        while let Some(o) = queue.pop_front() {
            match o {
                Out::Send(to, d) => {
                    if let Err(e) = sock.send_to(&d, to).await {
                        warn!(%to, "send: {e}");
                    }
                }
                Out::Fetch(f) => {
                    if let Err(e) = job_tx.try_send(f) {
                        // Queue full: answer 5.03 now rather than hold unbounded state.
                        let f = match e {
                            mpsc::error::TrySendError::Full(f)
                            | mpsc::error::TrySendError::Closed(f) => f,
                        };
                        queue.extend(server.complete(f, Err(Unavailable), Instant::now()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::ticket_secret;

    /// A missing ticket key file is created 0600 with 32 random bytes and read back the same
    /// on the next start; one others can read, a short one, or a directory is refused.
    #[test]
    fn ticket_key_file_is_created_private_and_refused_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ticket.key");
        let first = ticket_secret(&p).unwrap();
        assert_eq!(first.len(), 32);
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            *ticket_secret(&p).unwrap(),
            *first,
            "a restart reads the same secret"
        );
        let other = dir.path().join("other.key");
        assert_ne!(*ticket_secret(&other).unwrap(), *first);

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = ticket_secret(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let short = dir.path().join("short.key");
        std::fs::write(&short, [7u8; 31]).unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(ticket_secret(&short).is_err());
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(ticket_secret(&sub).is_err());
    }
}
