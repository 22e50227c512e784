//! Clients of the local socket (protocol in [`crate::proto`]), blocking and async.
//!
//! Every unprivileged face (the `qeaas` command, the HTTPS and CoAP frontends) reads the pool
//! through these: one implementation of the framing, one error type.

use std::io::{self, Read, Write};
use std::path::Path;

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

fn finish(st: Status, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    if st == Status::Ok {
        Ok(body)
    } else {
        Err(ClientError::Refused(st))
    }
}

fn stats(b: Vec<u8>) -> Result<u64, ClientError> {
    let a: [u8; 8] = b.try_into().map_err(|_| ClientError::Protocol)?;
    Ok(u64::from_be_bytes(a))
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

    /// Sends one request and reads its answer.
    pub fn ask(&mut self, r: Request) -> Result<Vec<u8>, ClientError> {
        self.s.write_all(&proto::encode_request(r))?;
        let mut h = [0u8; proto::ANSWER_HEADER_LEN];
        self.s.read_exact(&mut h)?;
        let (st, len) = check(&h)?;
        let mut body = vec![0u8; len];
        self.s.read_exact(&mut body)?;
        finish(st, body)
    }

    /// Exactly `len` fresh pool bytes, waiting at most `wait_ms` for them.
    pub fn get(&mut self, len: u16, wait_ms: u16) -> Result<Vec<u8>, ClientError> {
        self.ask(Request::Get { len, wait_ms })
    }

    /// The daemon's `key=value` status text.
    pub fn status(&mut self) -> Result<String, ClientError> {
        let b = self.ask(Request::Status)?;
        String::from_utf8(b).map_err(|_| ClientError::Protocol)
    }

    /// Bytes the daemon has served to this process's uid.
    pub fn my_stats(&mut self) -> Result<u64, ClientError> {
        stats(self.ask(Request::MyStats)?)
    }
}

/// An async (tokio) connection to qeaasd's local socket.
#[derive(Debug)]
pub struct AsyncClient {
    s: tokio::net::UnixStream,
}

impl AsyncClient {
    /// Connects to the socket at `path`.
    pub async fn connect(path: &Path) -> io::Result<AsyncClient> {
        Ok(AsyncClient {
            s: tokio::net::UnixStream::connect(path).await?,
        })
    }

    /// Sends one request and reads its answer.
    pub async fn ask(&mut self, r: Request) -> Result<Vec<u8>, ClientError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.s.write_all(&proto::encode_request(r)).await?;
        let mut h = [0u8; proto::ANSWER_HEADER_LEN];
        self.s.read_exact(&mut h).await?;
        let (st, len) = check(&h)?;
        let mut body = vec![0u8; len];
        self.s.read_exact(&mut body).await?;
        finish(st, body)
    }

    /// Exactly `len` fresh pool bytes, waiting at most `wait_ms` for them.
    pub async fn get(&mut self, len: u16, wait_ms: u16) -> Result<Vec<u8>, ClientError> {
        self.ask(Request::Get { len, wait_ms }).await
    }

    /// The daemon's `key=value` status text.
    pub async fn status(&mut self) -> Result<String, ClientError> {
        let b = self.ask(Request::Status).await?;
        String::from_utf8(b).map_err(|_| ClientError::Protocol)
    }

    /// Bytes the daemon has served to this process's uid.
    pub async fn my_stats(&mut self) -> Result<u64, ClientError> {
        stats(self.ask(Request::MyStats).await?)
    }
}
