//! The entropy source behind the provider: a client of qeaasd's local socket (through
//! `qeaas-client`, the one implementation of protocol v1) with a small batch buffer, fork detection and an optional,
//! explicitly configured fallback to getrandom(2). No FFI here.
//!
//! Guarantees:
//! * Every byte handed out is a byte the daemon served (or, only with `fallback = os`, a byte
//!   from getrandom(2)); nothing is padded, mixed or reused. A request that cannot be met in full
//!   fails and leaves the output zeroed.
//! * Bytes are handed out once: they are wiped from the buffer as they are copied out, and the
//!   whole buffer is wiped when the source is dropped.
//! * After `fork()` the child never emits a byte the parent had buffered: each fork generation
//!   has a `Source` of its own (see [`crate::fork`]), the buffer sits on MADV_WIPEONFORK pages
//!   (a child sees zeros there), and as a last resort a buffer filled under another pid is
//!   discarded (for a child made by a raw `clone` that ran no atfork handler).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use qeaas_client::proto::Status;
use qeaas_client::{Client, ClientError};

use zeroize::Zeroize;

use crate::fork::WipeOnFork;

/// Socket path when neither the provider configuration nor `QEAAS_SOCKET` names one.
pub const DEFAULT_SOCKET: &str = "/run/qeaas/entropy.sock";
/// Default batch: one GET refills this many bytes (the daemon's default `max_request`).
pub const DEFAULT_BATCH: usize = 4096;
/// Default time the daemon may take to back one GET.
pub const DEFAULT_WAIT_MS: u16 = 2000;
/// The user qeaasd runs as by default (its unit's `User=`, its `user =` setting).
pub const DEFAULT_DAEMON_USER: &str = "qeaas";

/// What to do when the daemon cannot serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Fail closed (the default).
    None,
    /// Use getrandom(2), and say so on stderr once per process.
    Os,
}

/// Provider settings, from the OpenSSL configuration section and the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// qeaasd's local socket.
    pub socket: PathBuf,
    /// Behaviour when the daemon cannot serve.
    pub fallback: Fallback,
    /// `wait_ms` sent with each GET.
    pub wait_ms: u16,
    /// Bytes fetched per refill, 1..=65535 (must not exceed the daemon's `max_request`).
    pub batch: usize,
    /// The user qeaasd runs as: besides root, the only user whose socket is trusted (a name,
    /// or a numeric uid).
    pub daemon_user: String,
}

impl Settings {
    /// Builds settings from the provider's configuration values (`socket`, `fallback`,
    /// `wait_ms`, `batch`, `daemon_user`, each optional) and the value of `QEAAS_SOCKET` (which
    /// the caller leaves out in a setuid program). The configuration file wins over the
    /// environment, which wins over the default path.
    pub fn from_values(
        socket: Option<&str>,
        fallback: Option<&str>,
        wait_ms: Option<&str>,
        batch: Option<&str>,
        daemon_user: Option<&str>,
        env_socket: Option<&str>,
    ) -> Result<Self, String> {
        let socket = socket
            .or(env_socket)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SOCKET);
        let fallback = match fallback.map(str::trim) {
            None | Some("none") | Some("") => Fallback::None,
            Some("os") => Fallback::Os,
            Some(other) => {
                return Err(format!(
                    "invalid fallback = {other:?} (expected \"none\" or \"os\")"
                ))
            }
        };
        let wait_ms = match wait_ms {
            None => DEFAULT_WAIT_MS,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("invalid wait_ms = {v:?} (0..=65535)"))?,
        };
        let batch = match batch {
            None => DEFAULT_BATCH,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=65535).contains(&n) => n,
                _ => return Err(format!("invalid batch = {v:?} (1..=65535)")),
            },
        };
        let daemon_user = match daemon_user.map(str::trim) {
            None => DEFAULT_DAEMON_USER.to_string(),
            Some(u) if !u.is_empty() && !u.contains('\0') => u.to_string(),
            Some(u) => return Err(format!("invalid daemon_user = {u:?} (a user name or uid)")),
        };
        Ok(Settings {
            socket: PathBuf::from(socket),
            fallback,
            wait_ms,
            batch,
            daemon_user,
        })
    }
}

/// Answer statuses of protocol v1 that are not OK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Healthy sources, but the request could not be backed in time.
    NotEnoughEntropy,
    /// No healthy source.
    SourceFailed,
    /// The daemon judged the request malformed.
    BadRequest,
    /// Above the daemon's `max_request`.
    TooLarge,
    /// This uid may not use the socket.
    Forbidden,
}

impl Refusal {
    fn from_status(s: Status) -> Option<Self> {
        Some(match s {
            Status::Ok => return None,
            Status::NotEnoughEntropy => Refusal::NotEnoughEntropy,
            Status::SourceFailed => Refusal::SourceFailed,
            Status::BadRequest => Refusal::BadRequest,
            Status::TooLarge => Refusal::TooLarge,
            Status::Forbidden => Refusal::Forbidden,
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotEnoughEntropy => f.write_str("not enough entropy"),
            Refusal::SourceFailed => f.write_str("entropy source failed"),
            Refusal::BadRequest => f.write_str("bad request"),
            Refusal::TooLarge => f.write_str("request too large (lower `batch`)"),
            Refusal::Forbidden => {
                f.write_str("forbidden (socket group or allow_users excludes this user)")
            }
        }
    }
}

/// Why bytes could not be had. The `Display` text is what OpenSSL's error queue shows.
#[derive(Debug)]
pub enum Error {
    /// The socket could not be reached.
    Unreachable(PathBuf, io::Error),
    /// The connection broke or timed out mid-request.
    Io(PathBuf, io::Error),
    /// The daemon answered with a refusal.
    Refused(Refusal),
    /// The socket is served by a user that is neither root nor the daemon's user: its bytes
    /// could be anything, so none is used.
    Untrusted {
        /// The socket.
        path: PathBuf,
        /// Who serves it.
        uid: u32,
        /// The configured daemon user.
        daemon_user: String,
    },
    /// The daemon's answer did not follow the protocol.
    Protocol(&'static str),
    /// `fallback = os` was configured but getrandom(2) failed too.
    Fallback(String),
    /// The batch buffer could not be mapped.
    Buffer(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unreachable(p, e) => write!(f, "qeaasd unreachable at {}: {e}", p.display()),
            Error::Io(p, e) => write!(f, "qeaasd at {}: connection failed: {e}", p.display()),
            Error::Refused(r) => write!(f, "qeaasd: {r}"),
            Error::Untrusted {
                path,
                uid,
                daemon_user,
            } => write!(
                f,
                "{} is served by uid {uid}, neither root nor the daemon user {daemon_user:?}: \
                 not trusted",
                path.display()
            ),
            Error::Protocol(what) => write!(f, "qeaasd: protocol error: {what}"),
            Error::Fallback(e) => write!(f, "qeaasd failed and the getrandom(2) fallback too: {e}"),
            Error::Buffer(e) => write!(f, "qeaas-provider: cannot map its batch buffer: {e}"),
        }
    }
}

impl Error {
    /// The provider's reason code for OpenSSL (see `ffi::REASONS`).
    pub fn reason(&self) -> u32 {
        match self {
            Error::Unreachable(..) | Error::Io(..) => 1,
            Error::Refused(Refusal::SourceFailed) => 2,
            Error::Refused(Refusal::NotEnoughEntropy) => 3,
            Error::Refused(_) | Error::Protocol(_) => 4,
            Error::Untrusted { .. } => 9,
            Error::Fallback(_) => 5,
            Error::Buffer(_) => 8,
        }
    }
}

/// Where the bytes of a successful fill came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// qeaasd.
    Daemon,
    /// getrandom(2), because the daemon failed and `fallback = os` is configured.
    Os,
}

/// One connection to the daemon, through the shared client of the local socket.
#[derive(Debug)]
pub struct Conn {
    client: Client,
    path: PathBuf,
}

impl Conn {
    /// Connects, with I/O timeouts a little longer than the daemon may wait.
    pub fn connect(path: &std::path::Path, wait_ms: u16) -> Result<Self, Error> {
        let client =
            Client::connect(path).map_err(|e| Error::Unreachable(path.to_path_buf(), e))?;
        let t = Some(Duration::from_millis(u64::from(wait_ms) + 5000));
        client
            .set_timeout(t)
            .map_err(|e| Error::Io(path.to_path_buf(), e))?;
        Ok(Conn {
            client,
            path: path.to_path_buf(),
        })
    }

    /// Connects, then checks who serves the socket (SO_PEERCRED): root or `daemon_user`, or
    /// the connection is dropped before a byte is asked for.
    pub fn connect_trusted(
        path: &std::path::Path,
        wait_ms: u16,
        daemon_user: &str,
    ) -> Result<Self, Error> {
        let c = Conn::connect(path, wait_ms)?;
        let uid = c
            .client
            .peer_uid()
            .map_err(|e| Error::Io(path.to_path_buf(), e))?;
        if uid == 0 || Some(uid) == uid_of(daemon_user) {
            return Ok(c);
        }
        Err(Error::Untrusted {
            path: path.to_path_buf(),
            uid,
            daemon_user: daemon_user.to_string(),
        })
    }

    fn error(&self, e: ClientError) -> Error {
        match e {
            ClientError::Io(e) => Error::Io(self.path.clone(), e),
            ClientError::Refused(s) => match Refusal::from_status(s) {
                Some(r) => Error::Refused(r),
                None => Error::Protocol("refusal with status OK"),
            },
            ClientError::Protocol => Error::Protocol("malformed answer"),
        }
    }

    /// `GET out.len()` (1..=65535 bytes): all of them or an error (with `out` zeroed).
    pub fn get(&mut self, out: &mut [u8], wait_ms: u16) -> Result<(), Error> {
        self.client
            .get_into(out, wait_ms)
            .map_err(|e| self.error(e))
    }

    /// `MY_STATS`: bytes served to this uid so far.
    pub fn my_stats(&mut self) -> Result<u64, Error> {
        self.client.my_stats().map_err(|e| self.error(e))
    }
}

/// The uid of `user`: a number is a uid; a name is looked up through NSS (getpwnam_r), so a
/// daemon user from LDAP or sssd works too. `None` if there is no such user (then only root is
/// trusted).
pub fn uid_of(user: &str) -> Option<u32> {
    if let Ok(n) = user.parse::<u32>() {
        return Some(n);
    }
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// The buffered source shared by every RAND context of one provider instance.
#[derive(Debug)]
pub struct Source {
    settings: Settings,
    conn: Option<Conn>,
    /// Fetched bytes (mapped at the first refill); `buf[pos..filled]` are still unused, the
    /// rest is zero.
    buf: Option<WipeOnFork>,
    pos: usize,
    filled: usize,
    /// Process that filled `buf` and opened `conn`.
    pid: u32,
    warned: bool,
}

impl Source {
    /// A source with nothing fetched yet (it connects lazily).
    pub fn new(settings: Settings) -> Self {
        Source {
            buf: None,
            settings,
            conn: None,
            pos: 0,
            filled: 0,
            pid: std::process::id(),
            warned: false,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Bytes buffered and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.filled - self.pos
    }

    /// Wipes the buffer and drops the connection.
    pub fn discard(&mut self) {
        if let Some(b) = self.buf.as_mut() {
            b[..].zeroize();
        }
        self.pos = 0;
        self.filled = 0;
        self.conn = None;
    }

    /// After a fork the child must not reuse the parent's bytes nor its connection.
    fn check_fork(&mut self) {
        let pid = std::process::id();
        if pid != self.pid {
            self.discard();
            self.pid = pid;
        }
    }

    fn connect(&self) -> Result<Conn, Error> {
        let s = &self.settings;
        Conn::connect_trusted(&s.socket, s.wait_ms, &s.daemon_user)
    }

    /// One GET on the connection, reconnecting once if an existing connection broke (the daemon
    /// restarted, or it closed an idle connection).
    fn get(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let wait = self.settings.wait_ms;
        let fresh = self.conn.is_none();
        if fresh {
            self.conn = Some(self.connect()?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        match conn.get(out, wait) {
            Ok(()) => Ok(()),
            Err(Error::Io(..)) if !fresh => {
                self.conn = Some(self.connect()?);
                let r = self.conn.as_mut().expect("connected above").get(out, wait);
                if r.is_err() {
                    self.conn = None;
                }
                r
            }
            Err(e) => {
                if !matches!(e, Error::Refused(_)) {
                    self.conn = None;
                }
                Err(e)
            }
        }
    }

    /// Fills `out` from the daemon: from the buffer first, refilling it with one GET of `batch`
    /// bytes when it runs dry; requests longer than the batch go straight to the daemon.
    /// With `fresh`, the buffer is bypassed (prediction resistance: bytes fetched now).
    fn fill_daemon(&mut self, out: &mut [u8], fresh: bool) -> Result<(), Error> {
        let mut done = 0;
        if !fresh {
            done = self.take(out);
        }
        while done < out.len() {
            let rest = &mut out[done..];
            let batch = self.settings.batch;
            if !fresh && rest.len() < batch {
                self.discard_bytes();
                self.get_into_buf()?;
                done += self.take(rest);
            } else {
                let n = rest.len().min(batch);
                self.get(&mut rest[..n])?;
                done += n;
            }
        }
        Ok(())
    }

    /// Wipes the buffered bytes, keeping the connection.
    fn discard_bytes(&mut self) {
        if let Some(b) = self.buf.as_mut() {
            b[..].zeroize();
        }
        self.pos = 0;
        self.filled = 0;
    }

    /// One refill of `batch` bytes (the buffer is empty and wiped).
    fn get_into_buf(&mut self) -> Result<(), Error> {
        let mut b = match self.buf.take() {
            Some(b) => b,
            None => WipeOnFork::new(self.settings.batch).map_err(Error::Buffer)?,
        };
        let r = self.get(&mut b);
        if r.is_ok() {
            self.filled = b.len();
        }
        self.buf = Some(b);
        r
    }

    /// Copies buffered bytes into `out`, wiping them from the buffer. Returns how many.
    fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buffered());
        let Some(buf) = self.buf.as_mut() else {
            return 0;
        };
        let src = &mut buf[self.pos..self.pos + n];
        out[..n].copy_from_slice(src);
        src.zeroize();
        self.pos += n;
        n
    }

    /// Fills all of `out` or fails with `out` zeroed. `fresh` bypasses the buffer.
    pub fn fill(&mut self, out: &mut [u8], fresh: bool) -> Result<Origin, Error> {
        self.check_fork();
        match self.fill_daemon(out, fresh) {
            Ok(()) => Ok(Origin::Daemon),
            Err(e) => {
                out.zeroize();
                if self.settings.fallback == Fallback::None {
                    return Err(e);
                }
                if !self.warned {
                    self.warned = true;
                    eprintln!(
                        "qeaas-provider: {e}; using getrandom(2) as configured (fallback = os)"
                    );
                }
                getrandom::fill(out).map_err(|g| Error::Fallback(format!("{e}; {g}")))?;
                Ok(Origin::Os)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    fn settings(path: &std::path::Path, batch: usize) -> Settings {
        Settings {
            socket: path.to_path_buf(),
            fallback: Fallback::None,
            wait_ms: 100,
            batch,
            // The scripted daemons below run as the test's own user.
            daemon_user: nix::unistd::geteuid().to_string(),
        }
    }

    /// A scripted daemon: answers GET n with bytes counting up from 0 (across requests) and
    /// records the request lengths; `refuse` answers every GET with that status instead.
    fn fake_daemon(
        dir: &std::path::Path,
        refuse: Option<u8>,
    ) -> (PathBuf, std::sync::mpsc::Receiver<u16>) {
        let path = dir.join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut next = 0u8;
            for s in l.incoming() {
                let mut s = s.unwrap();
                let mut h = [0u8; 8];
                while s.read_exact(&mut h).is_ok() {
                    let len = u16::from_be_bytes([h[4], h[5]]);
                    let _ = tx.send(len);
                    if let Some(st) = refuse {
                        s.write_all(&[st, 0, 0, 0]).unwrap();
                        continue;
                    }
                    let mut a = vec![0, 0, h[4], h[5]];
                    for _ in 0..len {
                        a.push(next);
                        next = next.wrapping_add(1);
                    }
                    s.write_all(&a).unwrap();
                }
            }
        });
        (path, rx)
    }

    #[test]
    fn settings_precedence_and_validation() {
        let s = Settings::from_values(None, None, None, None, None, None).unwrap();
        assert_eq!(s.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(s.fallback, Fallback::None);
        assert_eq!(s.daemon_user, DEFAULT_DAEMON_USER);
        let s = Settings::from_values(None, Some("os"), None, None, None, Some("/e")).unwrap();
        assert_eq!((s.socket.to_str(), s.fallback), (Some("/e"), Fallback::Os));
        let s = Settings::from_values(
            Some("/c"),
            None,
            Some("7"),
            Some("64"),
            Some(" q "),
            Some("/e"),
        )
        .unwrap();
        assert_eq!((s.socket.to_str(), s.wait_ms, s.batch), (Some("/c"), 7, 64));
        assert_eq!(s.daemon_user, "q");
        assert!(Settings::from_values(None, Some("yes"), None, None, None, None).is_err());
        assert!(Settings::from_values(None, None, None, Some("0"), None, None).is_err());
        assert!(Settings::from_values(None, None, Some("x"), None, None, None).is_err());
        assert!(Settings::from_values(None, None, None, None, Some(""), None).is_err());
    }

    #[test]
    fn small_requests_are_batched_and_bytes_are_never_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let (path, rx) = fake_daemon(dir.path(), None);
        let mut src = Source::new(settings(&path, 64));
        let mut seen = Vec::new();
        for _ in 0..10 {
            let mut b = [0u8; 16];
            assert_eq!(src.fill(&mut b, false).unwrap(), Origin::Daemon);
            seen.extend_from_slice(&b);
        }
        // 160 bytes in three GETs of 64, handed out in the daemon's order.
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![64, 64, 64]);
        assert_eq!(seen, (0..160).map(|i| i as u8).collect::<Vec<_>>());
        assert_eq!(src.buffered(), 32);
        // Long requests: the buffer first, then direct GETs of at most `batch`.
        let mut b = [0u8; 200];
        src.fill(&mut b, false).unwrap();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![64, 64, 64]);
        assert_eq!(b[0], 160);
        assert!(b.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        // Prediction resistance bypasses the buffer.
        let mut b = [0u8; 8];
        src.fill(&mut b, true).unwrap();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![8]);
        assert_eq!(src.buffered(), 24);
    }

    #[test]
    fn refusals_fail_closed_with_a_clear_text_and_zeroed_output() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _rx) = fake_daemon(dir.path(), Some(2));
        let mut src = Source::new(settings(&path, 64));
        let mut b = [0xAAu8; 16];
        let e = src.fill(&mut b, false).unwrap_err();
        assert_eq!(e.to_string(), "qeaasd: entropy source failed");
        assert_eq!(e.reason(), 2);
        assert_eq!(b, [0u8; 16]);
    }

    #[test]
    fn unreachable_daemon_fails_closed_unless_fallback_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        let mut src = Source::new(settings(&path, 64));
        let mut b = [0u8; 32];
        let e = src.fill(&mut b, false).unwrap_err();
        assert!(e
            .to_string()
            .starts_with(&format!("qeaasd unreachable at {}: ", path.display())));
        let mut s = settings(&path, 64);
        s.fallback = Fallback::Os;
        let mut src = Source::new(s);
        assert_eq!(src.fill(&mut b, false).unwrap(), Origin::Os);
        assert_ne!(b, [0u8; 32]);
    }

    #[test]
    fn a_socket_of_an_untrusted_user_is_refused_before_any_get() {
        let dir = tempfile::tempdir().unwrap();
        let (path, rx) = fake_daemon(dir.path(), None);
        let mut s = settings(&path, 64);
        // A daemon user that is not the one serving (the test's own uid), and not root.
        s.daemon_user = u32::MAX.to_string();
        let me = nix::unistd::geteuid().as_raw();
        let mut src = Source::new(s);
        let mut b = [0xAAu8; 16];
        let r = src.fill(&mut b, false);
        if me == 0 {
            // Root is always trusted.
            assert!(r.is_ok());
            return;
        }
        let e = r.unwrap_err();
        assert!(
            matches!(e, Error::Untrusted { uid, .. } if uid == me),
            "{e}"
        );
        assert_eq!(b, [0u8; 16]);
        assert!(
            rx.try_iter().next().is_none(),
            "a GET was sent to an untrusted socket"
        );
    }

    #[test]
    fn uids_resolve_by_number_and_by_name() {
        assert_eq!(uid_of("0"), Some(0));
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(uid_of("no-such-user-qeaas-test"), None);
    }

    #[test]
    fn a_new_pid_discards_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, rx) = fake_daemon(dir.path(), None);
        let mut src = Source::new(settings(&path, 64));
        let mut b = [0u8; 16];
        src.fill(&mut b, false).unwrap();
        assert_eq!(src.buffered(), 48);
        // Pretend the buffer was filled by another process (the parent of a fork).
        src.pid = src.pid.wrapping_add(1);
        src.fill(&mut b, false).unwrap();
        assert_eq!(b[0], 64, "the parent's buffered bytes 16..64 were not used");
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![64, 64]);
    }
}
