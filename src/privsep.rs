//! Privilege separation.
//!
//! `qeaasd run` is the supervisor: it starts the worker (`qeaasd worker`, the same binary) with
//! pipes on its stdin and stdout, then keeps only CAP_SYS_ADMIN and does nothing but execute the
//! worker's requests: RNDADDENTROPY, RNDRESEEDCRNG and sd_notify messages. The worker binds its
//! sockets, drops every capability and sets no_new_privs before it reads any device or any
//! client byte.
//!
//! Pipe protocol, worker to supervisor: `op u8 | credit_bits u16 LE | len u16 LE | len bytes`.
//! Supervisor to worker, for ADD and RESEED only: `ok u8 | errno i32 LE`.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use caps::{CapSet, Capability};
use tracing::{debug, warn};
use zeroize::Zeroize;

use crate::sys;

/// Add bytes with credit.
pub const OP_ADD: u8 = 1;
/// Force a CRNG reseed.
pub const OP_RESEED: u8 = 2;
/// sd_notify READY=1, with the frame's payload (if any) as STATUS=.
pub const OP_READY: u8 = 3;
/// sd_notify WATCHDOG=1.
pub const OP_WATCHDOG: u8 = 4;

/// Drops every capability except `keep` from all sets, including the bounding set. Not being
/// able to (not root, no CAP_SETPCAP) is reported, not fatal: there is nothing to drop then.
pub fn drop_capabilities(keep: &[Capability]) -> io::Result<()> {
    let keep: HashSet<Capability> = keep.iter().copied().collect();
    let had_setpcap =
        caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false);
    if had_setpcap {
        for c in caps::all() {
            if !keep.contains(&c) {
                caps::drop(None, CapSet::Bounding, c).map_err(io::Error::other)?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(io::Error::other)?;
    caps::clear(None, CapSet::Inheritable).map_err(io::Error::other)?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(io::Error::other)?;
    let kept: HashSet<Capability> = permitted.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept).map_err(io::Error::other)?;
    caps::set(None, CapSet::Permitted, &kept).map_err(io::Error::other)?;
    rustix::thread::set_no_new_privs(true)?;
    debug!(?kept, "capabilities dropped");
    Ok(())
}

/// Who the worker became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Became {
    /// Real, effective and saved uid.
    pub uid: u32,
    /// Real, effective and saved gid.
    pub gid: u32,
}

/// Why the worker may not run as the configured user.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No such user (through NSS).
    #[error("user {0:?} does not exist: create it (see systemd/qeaasd.sysusers), set `user = \"...\"` in the config, or run with --allow-root-worker")]
    Unknown(String),
    /// The user is root.
    #[error("user {0:?} is uid 0: the worker parses device and client input and must not be root (--allow-root-worker overrides this)")]
    Root(String),
    /// A system call failed.
    #[error("{0}")]
    Sys(String),
}

/// Started as root (no systemd `User=`): becomes `name` with its groups from NSS, dropping the
/// bounding set first (while CAP_SETPCAP is still held) and then gid and uid, real, effective
/// and saved alike, so root can never be regained. The caller then drops what is left with
/// [`drop_capabilities`].
pub fn become_user(name: &str) -> Result<Became, UserError> {
    use nix::unistd::{Gid, Uid, User};
    let sys = |what: &str| {
        let what = what.to_owned();
        move |e: nix::Error| UserError::Sys(format!("{what}: {e}"))
    };
    let u = User::from_name(name)
        .map_err(sys("look up user"))?
        .ok_or_else(|| UserError::Unknown(name.into()))?;
    if u.uid.is_root() {
        return Err(UserError::Root(name.into()));
    }
    for c in caps::all() {
        caps::drop(None, CapSet::Bounding, c).map_err(|e| UserError::Sys(e.to_string()))?;
    }
    let cname = std::ffi::CString::new(name).map_err(|e| UserError::Sys(e.to_string()))?;
    nix::unistd::initgroups(&cname, u.gid).map_err(sys("initgroups"))?;
    nix::unistd::setresgid(u.gid, u.gid, u.gid).map_err(sys("setresgid"))?;
    nix::unistd::setresuid(u.uid, u.uid, u.uid).map_err(sys("setresuid"))?;
    // Check rather than trust: a process that can become root again has dropped nothing.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
        || nix::unistd::setgid(Gid::from_raw(0)).is_ok()
    {
        return Err(UserError::Sys("root could be regained".into()));
    }
    Ok(Became {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    })
}

/// The worker's end: sends requests to the supervisor over the worker's stdout.
#[derive(Debug)]
pub struct SupervisorLink {
    out: io::Stdout,
    inp: io::Stdin,
}

impl Default for SupervisorLink {
    fn default() -> Self {
        Self::new()
    }
}

impl SupervisorLink {
    /// The link over this process's stdin/stdout.
    pub fn new() -> Self {
        Self {
            out: io::stdout(),
            inp: io::stdin(),
        }
    }

    fn send(&mut self, op: u8, credit: u16, data: &[u8]) -> io::Result<()> {
        let len = u16::try_from(data.len()).map_err(io::Error::other)?;
        let mut frame = Vec::with_capacity(5 + data.len());
        frame.push(op);
        frame.extend_from_slice(&credit.to_le_bytes());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(data);
        let mut out = self.out.lock();
        let r = out.write_all(&frame).and_then(|_| out.flush());
        frame.zeroize();
        r
    }

    fn ack(&mut self) -> io::Result<()> {
        let mut a = [0u8; 5];
        self.inp.lock().read_exact(&mut a)?;
        if a[0] == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(i32::from_le_bytes([
                a[1], a[2], a[3], a[4],
            ])))
        }
    }

    /// RNDADDENTROPY through the supervisor.
    pub fn add(&mut self, data: &[u8], credit_bits: u16) -> io::Result<()> {
        self.send(OP_ADD, credit_bits, data)?;
        self.ack()
    }

    /// RNDRESEEDCRNG through the supervisor.
    pub fn reseed(&mut self) -> io::Result<()> {
        self.send(OP_RESEED, 0, &[])?;
        self.ack()
    }

    /// READY=1 and STATUS=`status` through the supervisor.
    pub fn ready(&mut self, status: &str) -> io::Result<()> {
        self.send(OP_READY, 0, status.as_bytes())
    }

    /// WATCHDOG=1 through the supervisor.
    pub fn watchdog(&mut self) -> io::Result<()> {
        self.send(OP_WATCHDOG, 0, &[])
    }
}

/// The supervisor's loop: executes requests from `from_worker` until it closes.
pub fn supervise(
    mut from_worker: impl Read,
    mut to_worker: impl Write,
    random: &std::fs::File,
) -> io::Result<()> {
    let fd = random.as_fd();
    let mut hdr = [0u8; 5];
    let mut buf = vec![0u8; sys::MAX_ADD];
    loop {
        match from_worker.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let op = hdr[0];
        let credit = u16::from_le_bytes([hdr[1], hdr[2]]);
        let len = usize::from(u16::from_le_bytes([hdr[3], hdr[4]]));
        if len > sys::MAX_ADD {
            return Err(io::Error::other(format!("worker sent a {len}-byte frame")));
        }
        from_worker.read_exact(&mut buf[..len])?;
        let result = match op {
            OP_ADD => Some(sys::rnd_add_entropy(fd, &buf[..len], u32::from(credit))),
            OP_RESEED => Some(sys::rnd_reseed_crng(fd)),
            OP_READY => {
                // Only printable text reaches systemd's status line.
                let status: String = String::from_utf8_lossy(&buf[..len])
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect();
                notify(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&status),
                ]);
                None
            }
            OP_WATCHDOG => {
                notify(&[sd_notify::NotifyState::Watchdog]);
                None
            }
            _ => return Err(io::Error::other(format!("worker sent unknown op {op}"))),
        };
        buf[..len].zeroize();
        if let Some(r) = result {
            let mut a = [0u8; 5];
            if let Err(e) = &r {
                warn!("ioctl on /dev/random failed: {e}");
                a[0] = 1;
                a[1..].copy_from_slice(&e.raw_os_error().unwrap_or(libc::EIO).to_le_bytes());
            }
            to_worker.write_all(&a)?;
            to_worker.flush()?;
        }
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, state) {
            warn!("sd_notify: {e}");
        }
    }
}
