//! The I/O shell: TCP (+ TLS) accept loop, hyper for HTTP/1.1 and HTTP/2, and the local-socket
//! clients that fetch pool bytes. Every decision is made in [`crate::api`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use openssl::ssl::{Ssl, SslAcceptor};
use qeaas_client::proto::Status;
use qeaas_client::{AsyncClient, Batch, ClientError, PoolBytes};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::api::{self, Clients, Plan, Reply};
use crate::config::Config;
use crate::conns::Conns;
use crate::prefetch::Prefetch;

/// Idle local-socket connections kept for reuse.
const POOL_CONNS: usize = 64;
/// Concurrent client connections; more wait in the listen backlog (and take the slot of the
/// connection idle longest).
pub const MAX_CONNS: usize = 4096;
/// Open files the server needs: a descriptor per client connection, plus the local-socket
/// connections, the listener and the log.
pub const OPEN_FILES: u64 = MAX_CONNS as u64 * 2 + 256;
/// Time an idle connection told to close (HTTP/2 GOAWAY) has to finish before it is cut off.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent HTTP/2 streams per connection.
const H2_STREAMS: u32 = 64;
/// Tasks asking qeaasd for pool bytes, each with its own connection.
const FETCHERS: usize = 4;

/// What a request for pool bytes gets: the bytes, or the daemon's refusal (`None`: the daemon
/// could not be reached or answered nonsense).
type Fetched = Result<Secret, Option<Status>>;

/// Pool bytes, zeroized when dropped.
type Secret = PoolBytes;

/// A response body that hands hyper its bytes in place and wipes them when hyper drops it: the
/// served bytes (or the hex or digest made of them) are never copied into a `Bytes` that would
/// be freed unwiped. One frame, with an exact size hint (Content-Length).
#[derive(Debug)]
pub struct WipingBody(Option<PoolBytes>);

impl WipingBody {
    /// A body of `b` (none if empty).
    pub fn new(b: PoolBytes) -> Self {
        WipingBody((!b.is_empty()).then_some(b))
    }
}

/// The one data frame of a [`WipingBody`]: a cursor over the bytes, wiped on drop.
#[derive(Debug)]
pub struct WipingBuf {
    b: PoolBytes,
    at: usize,
}

impl hyper::body::Buf for WipingBuf {
    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }
    fn chunk(&self) -> &[u8] {
        &self.b[self.at..]
    }
    fn advance(&mut self, n: usize) {
        self.at = (self.at + n).min(self.b.len());
    }
}

impl hyper::body::Body for WipingBody {
    type Data = WipingBuf;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<WipingBuf>, Infallible>>> {
        let b = self.get_mut().0.take();
        std::task::Poll::Ready(b.map(|b| Ok(hyper::body::Frame::data(WipingBuf { b, at: 0 }))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// A request for `n` pool bytes waiting for a fetcher.
#[derive(Debug)]
struct Want {
    n: u16,
    tx: tokio::sync::oneshot::Sender<Fetched>,
}

/// Shared state of the running server.
#[derive(Debug)]
pub struct State {
    clients: Mutex<Clients>,
    socket: PathBuf,
    wait_ms: u16,
    idle: Mutex<Vec<AsyncClient>>,
    start: Instant,
    /// Largest request to qeaasd for waiting requests (the largest single API request).
    max_batch: u16,
    /// Largest request to qeaasd including bytes fetched ahead.
    max_fetch: u16,
    prefetch: Mutex<Prefetch>,
    /// How often a non-empty prefetch buffer re-checks that a source is still healthy.
    recheck: Duration,
    wants: tokio::sync::mpsc::Sender<Want>,
    queue: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Want>>,
    /// Open client connections ([`Conns`] decides which to close) and how to tell each to.
    conns: Mutex<(Conns, HashMap<u64, Arc<Notify>>)>,
    /// A connection with no request in flight this long is closed.
    idle_timeout: Duration,
}

impl State {
    /// From the configuration.
    pub fn new(cfg: &Config) -> State {
        let (wants, queue) = tokio::sync::mpsc::channel(MAX_CONNS);
        let max_batch = cfg.max_bytes.max(api::POLLEN_BYTES);
        let max_age = Duration::from_millis(cfg.max_buffer_age_ms.into());
        State {
            max_batch,
            max_fetch: max_batch.max(cfg.prefetch_bytes),
            prefetch: Mutex::new(Prefetch::new(cfg.prefetch_bytes.into(), max_age)),
            recheck: (max_age / 4).max(Duration::from_millis(5)),
            wants,
            queue: tokio::sync::Mutex::new(queue),
            clients: Mutex::new(Clients::new(cfg, Duration::ZERO)),
            socket: cfg.socket.clone(),
            wait_ms: cfg.wait_ms,
            idle: Mutex::new(Vec::new()),
            start: Instant::now(),
            conns: Mutex::new((Conns::default(), HashMap::new())),
            idle_timeout: Duration::from_secs(cfg.idle_timeout_secs.into()),
        }
    }

    /// Registers a new client connection: its id and what tells it to close.
    fn conn_open(&self) -> (u64, Arc<Notify>) {
        let now = self.start.elapsed();
        let close = Arc::new(Notify::new());
        if let Ok(mut c) = self.conns.lock() {
            let id = c.0.open(now);
            c.1.insert(id, close.clone());
            return (id, close);
        }
        (0, close)
    }

    fn conn_closed(&self, id: u64) {
        if let Ok(mut c) = self.conns.lock() {
            c.0.close(id);
            c.1.remove(&id);
        }
    }

    /// Every slot is taken: tells the connection idle longest to close, so a new client gets
    /// its slot. Connections all busy with requests are left alone.
    fn evict_idle(&self) {
        if let Ok(c) = self.conns.lock() {
            if let Some(close) = c.0.longest_idle().and_then(|id| c.1.get(&id)) {
                debug!("all connection slots taken: closing the one idle longest");
                close.notify_one();
            }
        }
    }

    fn take_conn(&self) -> Option<AsyncClient> {
        self.idle.lock().ok()?.pop()
    }

    fn put_conn(&self, c: AsyncClient) {
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < POOL_CONNS {
                v.push(c);
            }
        }
    }

    /// Zeroizes whatever is held ahead of demand (qeaasd refused, failed or went away).
    fn discard_prefetched(&self, why: &str) {
        if let Ok(mut p) = self.prefetch.lock() {
            let n = p.discard();
            if n > 0 {
                debug!(bytes = n, "prefetch buffer discarded: {why}");
            }
        }
    }

    /// One request to qeaasd on a pooled connection. A failed pooled connection (the daemon
    /// restarted) is retried once on a fresh one; bytes are never cached or reused.
    async fn ask<T>(
        &self,
        op: impl for<'c> Fn(
            &'c mut AsyncClient,
        ) -> Pin<
            Box<dyn std::future::Future<Output = Result<T, ClientError>> + Send + 'c>,
        >,
    ) -> Result<T, ClientError> {
        let mut reused = true;
        let mut conn = match self.take_conn() {
            Some(c) => c,
            None => {
                reused = false;
                AsyncClient::connect(&self.socket).await?
            }
        };
        loop {
            let r = op(&mut conn).await;
            match &r {
                Ok(_)
                | Err(ClientError::Refused(
                    Status::NotEnoughEntropy | Status::SourceFailed | Status::TooLarge,
                )) => {
                    self.put_conn(conn);
                    return r;
                }
                Err(ClientError::Io(_)) if reused => {
                    reused = false;
                    conn = AsyncClient::connect(&self.socket).await?;
                }
                Err(_) => return r,
            }
        }
    }

    /// `n` fresh pool bytes. From the prefetch buffer when it holds enough (no round trip);
    /// otherwise requests that arrive together are coalesced into one request to qeaasd and the
    /// answer is cut into disjoint slices.
    async fn fetch(&self, n: u16) -> Fetched {
        let now = self.start.elapsed();
        if let Ok(mut p) = self.prefetch.lock() {
            p.note_demand(n.into(), now);
            if let Some(b) = p.take(n.into(), now) {
                return Ok(PoolBytes::from(b));
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.wants.send(Want { n, tx }).await.is_err() {
            return Err(None);
        }
        rx.await.unwrap_or(Err(None))
    }

    /// `need` bytes for waiting requests plus up to `extra` to keep, in one request. qeaasd's
    /// `max_request` or a short supply may refuse the larger request: then `need` alone is
    /// asked at once, so prefetching never turns an answerable request into a refusal.
    async fn get_with_extra(&self, need: u16, extra: u16) -> Result<PoolBytes, ClientError> {
        let wait = self.wait_ms;
        let total = need.saturating_add(extra);
        let r = self.ask(move |c| Box::pin(c.get(total, wait))).await;
        match r {
            Err(ClientError::Refused(Status::TooLarge | Status::NotEnoughEntropy)) if extra > 0 => {
                debug!(
                    need,
                    extra, "qeaasd refused the prefetch: asking for the need alone"
                );
                self.ask(move |c| Box::pin(c.get(need, 0))).await
            }
            r => r,
        }
    }

    /// One fetcher: takes the first waiting request and whatever else is queued and fits,
    /// serves what the prefetch buffer holds, asks qeaasd once for the rest plus bytes ahead,
    /// hands out the slices and keeps the surplus.
    async fn fetcher(self: Arc<Self>) {
        let mut carry: Option<Want> = None;
        loop {
            let mut batch = Batch::new(usize::from(self.max_batch));
            {
                let mut q = self.queue.lock().await;
                let first = match carry.take() {
                    Some(w) => w,
                    None => match q.recv().await {
                        Some(w) => w,
                        None => return,
                    },
                };
                let n = usize::from(first.n);
                let _ = batch.add(first, n);
                while let Ok(w) = q.try_recv() {
                    let n = usize::from(w.n);
                    if let Err(w) = batch.add(w, n) {
                        carry = Some(w);
                        break;
                    }
                }
            }
            // Another fetcher may have refilled the buffer meanwhile.
            let now = self.start.elapsed();
            let extra = match self.prefetch.lock() {
                Ok(mut p) => {
                    for (w, b) in batch.serve_from(|n| p.take(n, now).map(PoolBytes::from)) {
                        let _ = w.tx.send(Ok(b));
                    }
                    p.extra(now, batch.total())
                }
                Err(_) => 0,
            };
            if batch.is_empty() {
                continue;
            }
            // The sum fits in u16: it is at most max_batch, or one request alone.
            let need = u16::try_from(batch.total()).unwrap_or(u16::MAX);
            let room = usize::from(self.max_fetch.saturating_sub(need));
            let extra = u16::try_from(extra.min(room)).unwrap_or(0);
            match self.get_with_extra(need, extra).await {
                Ok(bytes) => match batch.serve(bytes) {
                    Ok((pieces, rest)) => {
                        for (w, p) in pieces {
                            // A requester that went away leaves its slice unused, never
                            // reused (it is zeroized on drop).
                            let _ = w.tx.send(Ok(p));
                        }
                        if !rest.is_empty() {
                            if let Ok(mut p) = self.prefetch.lock() {
                                p.store(rest.into(), self.start.elapsed());
                            }
                        }
                    }
                    Err(unserved) => {
                        warn!("qeaasd answered a batch with the wrong length");
                        for w in unserved {
                            let _ = w.tx.send(Err(None));
                        }
                    }
                },
                Err(e) => {
                    if e.status().is_none() {
                        warn!("local socket: {e}");
                    }
                    // Not ready, failed or gone: nothing fetched earlier is served either.
                    self.discard_prefetched("qeaasd refused or is unreachable");
                    for w in batch.fail() {
                        let _ = w.tx.send(Err(e.status()));
                    }
                }
            }
        }
    }

    /// While bytes are held ahead of demand, asks qeaasd every `recheck` whether a source is
    /// still healthy, and discards them as soon as none is (or qeaasd is gone): bytes fetched
    /// before a failure are not served long after qeaasd itself flushed its queue.
    async fn prefetch_watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.recheck).await;
            let held = self.prefetch.lock().map(|p| p.held()).unwrap_or(0);
            if held == 0 {
                continue;
            }
            self.health().await;
        }
    }

    /// qeaasd's status text; when no source is healthy (or qeaasd is unreachable) the prefetch
    /// buffer is discarded.
    async fn health(&self) -> Option<String> {
        let t = self.ask(|c| Box::pin(c.status())).await.ok();
        if !t.as_deref().is_some_and(api::any_source_healthy) {
            self.discard_prefetched("no healthy source");
        }
        t
    }
}

fn to_response(r: Reply, head_only: bool) -> Response<WipingBody> {
    let body = if head_only {
        PoolBytes::default()
    } else {
        r.body
    };
    let mut resp = Response::new(WipingBody::new(body));
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    if let Some(s) = r.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if r.www_authenticate {
        h.insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"qeaas\""),
        );
    }
    // Entropy must never be cached by a proxy.
    h.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// Marks a request in flight on a connection until dropped (answered or abandoned).
struct InFlight {
    state: Arc<State>,
    conn: u64,
}

impl InFlight {
    fn new(state: Arc<State>, conn: u64) -> InFlight {
        if let Ok(mut c) = state.conns.lock() {
            c.0.request_started(conn);
        }
        InFlight { state, conn }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.state.start.elapsed();
        if let Ok(mut c) = self.state.conns.lock() {
            c.0.request_ended(self.conn, now);
        }
    }
}

/// Answers one HTTP request from `peer`.
pub async fn handle(
    state: Arc<State>,
    peer: IpAddr,
    req: hyper::Request<Incoming>,
) -> Result<Response<WipingBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let head_only = parts.method == hyper::Method::HEAD;
    let body = match Limited::new(body, api::MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            debug!("request body: {e}");
            let r = Reply {
                status: 413,
                content_type: "text/plain; charset=utf-8",
                body: b"request body too large\n".to_vec().into(),
                retry_after: None,
                www_authenticate: false,
            };
            return Ok(to_response(r, false));
        }
    };
    let request = api::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        authorization: parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        accept: parts.headers.get(ACCEPT).map(|v| v.as_bytes()),
        body: &body,
        peer,
    };
    let now = state.start.elapsed();
    let plan = match state.clients.lock() {
        Ok(mut c) => c.plan(&request, now),
        Err(_) => return Ok(to_response(api::daemon_error_reply(None), false)),
    };
    let reply = match plan {
        Plan::Reply(r) => r,
        Plan::Pollen { challenge } => match state.fetch(api::POLLEN_BYTES).await {
            Ok(pool) => api::pollen_reply(&challenge, &pool),
            Err(st) => api::daemon_error_reply(st),
        },
        Plan::Entropy {
            client,
            bytes,
            raw,
            reservation,
        } => match state.fetch(bytes).await {
            // The quota was taken at admission: nothing more to charge.
            Ok(pool) => {
                if let Ok(c) = state.clients.lock() {
                    debug!(client = c.name(client), bytes, "served");
                }
                api::entropy_reply(&pool, raw)
            }
            Err(st) => {
                if let Ok(mut c) = state.clients.lock() {
                    c.refund(client, reservation);
                }
                api::daemon_error_reply(st)
            }
        },
        Plan::Health => api::health_reply(state.health().await.as_deref()),
    };
    Ok(to_response(reply, head_only))
}

async fn serve_conn<S>(state: Arc<State>, peer: IpAddr, io: S, id: u64, close: Arc<Notify>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |req| {
        let state = svc_state.clone();
        let in_flight = InFlight::new(state.clone(), id);
        async move {
            let r = handle(state, peer, req).await;
            drop(in_flight);
            r
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that trickles its headers is cut off (hyper's header timeout needs a timer).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    // Checked a few times per timeout, so a connection is closed at most a quarter late.
    let tick = (state.idle_timeout / 4).max(Duration::from_millis(50));
    let r = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            // A new client needs this idle connection's slot: closed at once (nothing is in
            // flight; waiting for a silent peer to answer a GOAWAY would keep the newcomer out).
            _ = close.notified() => {
                debug!(%peer, "idle connection closed for a new client");
                break Ok(());
            }
            _ = tokio::time::sleep(tick) => {
                let idle = state.conns.lock().is_ok_and(|c| {
                    c.0.idle_for(id, state.idle_timeout, state.start.elapsed())
                });
                if idle {
                    debug!(%peer, "idle connection closed");
                    // HTTP/2: GOAWAY; HTTP/1.1: closes once idle. A peer that does not finish
                    // within the grace period is cut off.
                    conn.as_mut().graceful_shutdown();
                    break tokio::time::timeout(CLOSE_GRACE, conn.as_mut())
                        .await
                        .unwrap_or(Ok(()));
                }
            }
        }
    };
    if let Err(e) = r {
        debug!("connection: {e}");
    }
}

/// Raises the soft limit on open files towards [`OPEN_FILES`] (at most the hard limit): a
/// default soft limit of 1024 would refuse clients long before [`MAX_CONNS`]. Returns the limit
/// in force. Under systemd the unit's `LimitNOFILE=` sets it, and this changes nothing.
pub fn raise_open_files() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    let want = l.maximum.map_or(OPEN_FILES, |m| m.min(OPEN_FILES));
    if l.current.is_some_and(|c| c < want) {
        l.current = Some(want);
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            warn!("cannot raise the open-files limit to {want}: {e}");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Accepts connections until the process is stopped.
pub async fn run(
    state: Arc<State>,
    listener: std::net::TcpListener,
    tls: Option<SslAcceptor>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    for _ in 0..FETCHERS {
        tokio::spawn(state.clone().fetcher());
    }
    tokio::spawn(state.clone().prefetch_watch());
    let tls = tls.map(Arc::new);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    loop {
        if slots.available_permits() == 0 {
            state.evict_idle();
        }
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let (id, close) = state.conn_open();
        tokio::spawn(async move {
            let _permit = permit;
            let peer_ip = peer.ip();
            match tls {
                None => serve_conn(state.clone(), peer_ip, tcp, id, close).await,
                Some(acc) => {
                    let stream = Ssl::new(acc.context())
                        .and_then(|ssl| tokio_openssl::SslStream::new(ssl, tcp));
                    let mut stream = match stream {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("TLS setup: {e}");
                            state.conn_closed(id);
                            return;
                        }
                    };
                    let hs =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut stream).accept())
                            .await;
                    match hs {
                        Ok(Ok(())) => serve_conn(state.clone(), peer_ip, stream, id, close).await,
                        Ok(Err(e)) => debug!(%peer, "TLS handshake: {e}"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            state.conn_closed(id);
        });
    }
}
