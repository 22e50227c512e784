//! Clients of the local socket (protocol in [`crate::proto`]): blocking, and async with the
//! `tokio` feature.
//!
//! Every unprivileged face (the `qeaas` command, the HTTPS and CoAP frontends) reads the pool
//! through these: one implementation of the framing, one error type.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use zeroize::Zeroize;

use crate::bytes::PoolBytes;
use crate::proto::{self, Request, Status};

/// Why a request was not answered with bytes.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed or the daemon closed it.
    #[error("local socket: {0}")]
    Io(#[from] io::Error),
    /// The daemon answered with a refusal (not enough entropy, failed source, forbidden...).
    #[error("daemon refused: {}", .0.text())]
    Refused(Status),
    /// The daemon's answer did not parse.
    #[error("malformed answer from the daemon")]
    Protocol,
}

impl ClientError {
    /// The refusal status, if the daemon answered at all.
    pub fn status(&self) -> Option<Status> {
        match self {
            ClientError::Refused(s) => Some(*s),
            _ => None,
        }
    }
}

fn check(h: &[u8; proto::ANSWER_HEADER_LEN]) -> Result<(Status, usize), ClientError> {
    let (st, len) = proto::decode_answer_header(h).ok_or(ClientError::Protocol)?;
    Ok((st, usize::from(len)))
}

fn finish(st: Status, body: PoolBytes) -> Result<PoolBytes, ClientError> {
    if st == Status::Ok {
        Ok(body)
    } else {
        Err(ClientError::Refused(st))
    }
}

fn stats(b: PoolBytes) -> Result<u64, ClientError> {
    let a: [u8; 8] = (*b).try_into().map_err(|_| ClientError::Protocol)?;
    Ok(u64::from_be_bytes(a))
}

fn text(b: PoolBytes) -> Result<String, ClientError> {
    String::from_utf8(b.to_vec()).map_err(|_| ClientError::Protocol)
}

/// A blocking connection to qeaasd's local socket.
#[derive(Debug)]
pub struct Client {
    s: std::os::unix::net::UnixStream,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Client> {
        Ok(Client {
            s: std::os::unix::net::UnixStream::connect(path)?,
        })
    }

    /// A client over an already connected stream (socket activation, tests, fuzzing).
    pub fn from_stream(s: std::os::unix::net::UnixStream) -> Client {
        Client { s }
    }

    /// Read and write timeouts for every later request (`None`: wait forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.s.set_read_timeout(t)?;
        self.s.set_write_timeout(t)
    }

    /// The uid of the process that serves the socket (SO_PEERCRED, taken by the kernel when it
    /// called `listen`): who the bytes would come from.
    pub fn peer_uid(&self) -> io::Result<u32> {
        Ok(rustix::net::sockopt::socket_peercred(&self.s)?.uid.as_raw())
    }

    /// Sends one request and reads its answer.
    pub fn ask(&mut self, r: Request) -> Result<PoolBytes, ClientError> {
        self.s.write_all(&proto::encode_request(r))?;
        let mut h = [0u8; proto::ANSWER_HEADER_LEN];
        self.s.read_exact(&mut h)?;
        let (st, len) = check(&h)?;
        let mut body = PoolBytes::zeroed(len);
        self.s.read_exact(&mut body)?;
        finish(st, body)
    }

    /// Exactly `len` fresh pool bytes, waiting at most `wait_ms` for them.
    pub fn get(&mut self, len: u16, wait_ms: u16) -> Result<PoolBytes, ClientError> {
        self.ask(Request::Get { len, wait_ms })
    }

    /// `GET out.len()` (1..=65535) straight into `out`, with no copy on the way: all of it, or
    /// an error with `out` zeroed. A refusal leaves the connection usable.
    pub fn get_into(&mut self, out: &mut [u8], wait_ms: u16) -> Result<(), ClientError> {
        let r = self.get_into_inner(out, wait_ms);
        if r.is_err() {
            out.zeroize();
        }
        r
    }

    fn get_into_inner(&mut self, out: &mut [u8], wait_ms: u16) -> Result<(), ClientError> {
        let len = u16::try_from(out.len()).map_err(|_| ClientError::Protocol)?;
        self.s
            .write_all(&proto::encode_request(Request::Get { len, wait_ms }))?;
        let mut h = [0u8; proto::ANSWER_HEADER_LEN];
        self.s.read_exact(&mut h)?;
        let (st, n) = check(&h)?;
        if st != Status::Ok {
            // Drain a refusal's payload (normally empty) so the connection stays in step.
            let mut skip = PoolBytes::zeroed(n);
            self.s.read_exact(&mut skip)?;
            return Err(ClientError::Refused(st));
        }
        if n != out.len() {
            return Err(ClientError::Protocol);
        }
        self.s.read_exact(out)?;
        Ok(())
    }

    /// The daemon's `key=value` status text.
    pub fn status(&mut self) -> Result<String, ClientError> {
        text(self.ask(Request::Status)?)
    }

    /// Bytes the daemon has served to this process's uid.
    pub fn my_stats(&mut self) -> Result<u64, ClientError> {
        stats(self.ask(Request::MyStats)?)
    }
}

/// An async (tokio) connection to qeaasd's local socket.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct AsyncClient {
    s: tokio::net::UnixStream,
}

#[cfg(feature = "tokio")]
impl AsyncClient {
    /// Connects to the socket at `path`.
    pub async fn connect(path: &Path) -> io::Result<AsyncClient> {
        Ok(AsyncClient {
            s: tokio::net::UnixStream::connect(path).await?,
        })
    }

    /// Sends one request and reads its answer.
    pub async fn ask(&mut self, r: Request) -> Result<PoolBytes, ClientError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.s.write_all(&proto::encode_request(r)).await?;
        let mut h = [0u8; proto::ANSWER_HEADER_LEN];
        self.s.read_exact(&mut h).await?;
        let (st, len) = check(&h)?;
        let mut body = PoolBytes::zeroed(len);
        self.s.read_exact(&mut body).await?;
        finish(st, body)
    }

    /// Exactly `len` fresh pool bytes, waiting at most `wait_ms` for them.
    pub async fn get(&mut self, len: u16, wait_ms: u16) -> Result<PoolBytes, ClientError> {
        self.ask(Request::Get { len, wait_ms }).await
    }

    /// Exactly `n` fresh pool bytes in consecutive GETs of at most `chunk` (the daemon's
    /// `max_request`) on this connection. If one fails, the bytes already received are wiped,
    /// never served.
    pub async fn get_exact(
        &mut self,
        n: usize,
        chunk: u16,
        wait_ms: u16,
    ) -> Result<PoolBytes, ClientError> {
        let chunk = usize::from(chunk.max(1));
        if n <= chunk {
            let len = u16::try_from(n).map_err(|_| ClientError::Protocol)?;
            return self.get(len, wait_ms).await;
        }
        let mut body = PoolBytes::new(Vec::with_capacity(n));
        while body.len() < n {
            let len = (n - body.len()).min(chunk) as u16;
            let b = self.get(len, wait_ms).await?;
            body.extend_from(&b);
        }
        Ok(body)
    }

    /// The daemon's `key=value` status text.
    pub async fn status(&mut self) -> Result<String, ClientError> {
        text(self.ask(Request::Status).await?)
    }

    /// Bytes the daemon has served to this process's uid.
    pub async fn my_stats(&mut self) -> Result<u64, ClientError> {
        stats(self.ask(Request::MyStats).await?)
    }
}
