//! The I/O shell: TCP (+ TLS) accept loop, hyper for HTTP/1.1 and HTTP/2, and the local-socket
//! clients that fetch pool bytes. Every decision is made in [`crate::api`].

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use openssl::ssl::{Ssl, SslAcceptor};
use qeaas::client::{AsyncClient, ClientError};
use qeaas::proto::Status;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::api::{self, Clients, Plan, Reply};
use crate::config::Config;

/// Idle local-socket connections kept for reuse.
const POOL_CONNS: usize = 64;
/// Concurrent client connections; more wait in the listen backlog.
const MAX_CONNS: usize = 4096;
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
type Fetched = Result<Vec<u8>, Option<Status>>;

/// A request for `n` pool bytes waiting for a fetcher.
#[derive(Debug)]
struct Want {
    n: u16,
    tx: tokio::sync::oneshot::Sender<Fetched>,
}

/// Cuts `bytes` into consecutive slices of `lens`: every requester of a batch gets its own
/// bytes, none shared, none left over. `None` if the lengths do not add up.
pub fn split_batch(mut bytes: Vec<u8>, lens: &[u16]) -> Option<Vec<Vec<u8>>> {
    let total: usize = lens.iter().map(|&n| usize::from(n)).sum();
    if total != bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(lens.len());
    // Split from the end so each piece is one allocation-free `split_off`.
    for &n in lens.iter().rev() {
        let at = bytes.len() - usize::from(n);
        out.push(bytes.split_off(at));
    }
    out.reverse();
    Some(out)
}

/// Shared state of the running server.
#[derive(Debug)]
pub struct State {
    clients: Mutex<Clients>,
    socket: PathBuf,
    wait_ms: u16,
    idle: Mutex<Vec<AsyncClient>>,
    start: Instant,
    /// Largest batch asked of qeaasd in one request (the largest single API request).
    max_batch: u16,
    wants: tokio::sync::mpsc::Sender<Want>,
    queue: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Want>>,
}

impl State {
    /// From the configuration.
    pub fn new(cfg: &Config) -> State {
        let (wants, queue) = tokio::sync::mpsc::channel(MAX_CONNS);
        State {
            max_batch: cfg.max_bytes.max(api::POLLEN_BYTES),
            wants,
            queue: tokio::sync::Mutex::new(queue),
            clients: Mutex::new(Clients::new(cfg, Duration::ZERO)),
            socket: cfg.socket.clone(),
            wait_ms: cfg.wait_ms,
            idle: Mutex::new(Vec::new()),
            start: Instant::now(),
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
                | Err(ClientError::Refused(Status::NotEnoughEntropy | Status::SourceFailed)) => {
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

    /// `n` fresh pool bytes. Requests that arrive together are coalesced into one request to
    /// qeaasd (at most `max_batch` bytes) and the answer is cut into disjoint slices: under load
    /// this saves a local-socket round trip per HTTP request.
    async fn fetch(&self, n: u16) -> Fetched {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.wants.send(Want { n, tx }).await.is_err() {
            return Err(None);
        }
        rx.await.unwrap_or(Err(None))
    }

    /// One fetcher: takes the first waiting request and whatever else is queued and fits, asks
    /// qeaasd once, hands out the slices.
    async fn fetcher(self: Arc<Self>) {
        let mut carry: Option<Want> = None;
        loop {
            let mut batch = Vec::new();
            {
                let mut q = self.queue.lock().await;
                let first = match carry.take() {
                    Some(w) => w,
                    None => match q.recv().await {
                        Some(w) => w,
                        None => return,
                    },
                };
                let mut total = u32::from(first.n);
                batch.push(first);
                while let Ok(w) = q.try_recv() {
                    if total + u32::from(w.n) > u32::from(self.max_batch) {
                        carry = Some(w);
                        break;
                    }
                    total += u32::from(w.n);
                    batch.push(w);
                }
            }
            let lens: Vec<u16> = batch.iter().map(|w| w.n).collect();
            // The sum fits in u16: it is at most max_batch, or one request alone.
            let total = lens.iter().map(|&n| u32::from(n)).sum::<u32>();
            let total = u16::try_from(total).unwrap_or(u16::MAX);
            let wait = self.wait_ms;
            let r = self.ask(move |c| Box::pin(c.get(total, wait))).await;
            match r.map(|b| split_batch(b, &lens)) {
                Ok(Some(pieces)) => {
                    for (w, p) in batch.into_iter().zip(pieces) {
                        // A requester that went away leaves its slice unused, never reused.
                        let _ = w.tx.send(Ok(p));
                    }
                }
                Ok(None) => {
                    warn!("qeaasd answered a batch with the wrong length");
                    for w in batch {
                        let _ = w.tx.send(Err(None));
                    }
                }
                Err(e) => {
                    if e.status().is_none() {
                        warn!("local socket: {e}");
                    }
                    for w in batch {
                        let _ = w.tx.send(Err(e.status()));
                    }
                }
            }
        }
    }

    async fn status(&self) -> Result<String, ClientError> {
        self.ask(|c| Box::pin(c.status())).await
    }
}

fn to_response(r: Reply, head_only: bool) -> Response<Full<Bytes>> {
    let body = if head_only { Vec::new() } else { r.body };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
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

/// Answers one HTTP request.
pub async fn handle(
    state: Arc<State>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let head_only = parts.method == hyper::Method::HEAD;
    let body = match Limited::new(body, api::MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            debug!("request body: {e}");
            let r = Reply {
                status: 413,
                content_type: "text/plain; charset=utf-8",
                body: b"request body too large\n".to_vec(),
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
        Plan::Entropy { client, bytes, raw } => match state.fetch(bytes).await {
            Ok(pool) => {
                if let Ok(mut c) = state.clients.lock() {
                    c.charge(client, pool.len() as u64);
                    debug!(client = c.name(client), bytes, "served");
                }
                api::entropy_reply(&pool, raw)
            }
            Err(st) => api::daemon_error_reply(st),
        },
        Plan::Health => api::health_reply(state.status().await.ok().as_deref()),
    };
    Ok(to_response(reply, head_only))
}

async fn serve_conn<S>(state: Arc<State>, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
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
    if let Err(e) = builder.serve_connection(TokioIo::new(io), svc).await {
        debug!("connection: {e}");
    }
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
    let tls = tls.map(Arc::new);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    loop {
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
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_conn(state, tcp).await,
                Some(acc) => {
                    let stream = Ssl::new(acc.context())
                        .and_then(|ssl| tokio_openssl::SslStream::new(ssl, tcp));
                    let mut stream = match stream {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("TLS setup: {e}");
                            return;
                        }
                    };
                    let hs =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut stream).accept())
                            .await;
                    match hs {
                        Ok(Ok(())) => serve_conn(state, stream).await,
                        Ok(Err(e)) => debug!(%peer, "TLS handshake: {e}"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::split_batch;

    #[test]
    fn batches_split_into_disjoint_slices_in_order() {
        let bytes: Vec<u8> = (0..10).collect();
        let parts = split_batch(bytes, &[3, 1, 6]).unwrap();
        assert_eq!(parts, vec![vec![0, 1, 2], vec![3], vec![4, 5, 6, 7, 8, 9]]);
        assert_eq!(split_batch(vec![0; 5], &[3, 3]), None);
        assert_eq!(split_batch(vec![0; 5], &[3]), None);
        assert_eq!(split_batch(vec![], &[]), Some(vec![]));
    }
}
