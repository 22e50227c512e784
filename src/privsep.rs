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
        let mut frame = encode(op, credit, data)?;
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

/// Bytes in a frame header: `op u8 | credit_bits u16 LE | len u16 LE`.
pub const HEADER_LEN: usize = 5;

/// A request from the worker, decoded and checked. The supervisor is root-privileged (it keeps
/// CAP_SYS_ADMIN), the worker is not trusted: every field is bounded here, before any ioctl.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// RNDADDENTROPY of `data` (1..=[`sys::MAX_ADD`] bytes) with `credit_bits` (at most 8 per
    /// byte).
    Add {
        /// Bits credited.
        credit_bits: u16,
        /// The bytes.
        data: &'a [u8],
    },
    /// RNDRESEEDCRNG.
    Reseed,
    /// READY=1, with this status text (printable characters only).
    Ready(String),
    /// WATCHDOG=1.
    Watchdog,
}

/// Why the supervisor stops listening to its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The op code is none of ours.
    #[error("worker sent unknown op {0}")]
    UnknownOp(u8),
    /// Longer than a frame may be.
    #[error("worker sent a {0}-byte frame (at most {max})", max = sys::MAX_ADD)]
    TooLong(usize),
    /// An ADD with nothing in it, or claiming more than 8 bits per byte.
    #[error("worker sent an ADD of {len} bytes crediting {credit_bits} bits")]
    BadCredit {
        /// Payload length.
        len: usize,
        /// Claimed credit.
        credit_bits: u16,
    },
    /// A control frame (RESEED, WATCHDOG) with credit or payload.
    #[error("worker sent op {0} with credit or payload")]
    Unexpected(u8),
}

/// What a header announces: the op, the credit and how many payload bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Op code.
    pub op: u8,
    /// Claimed credit in bits.
    pub credit_bits: u16,
    /// Payload length.
    pub len: usize,
}

/// Decodes a header; refuses lengths beyond [`sys::MAX_ADD`] and unknown ops before a payload
/// byte is read.
pub fn decode_header(hdr: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    let op = hdr[0];
    let credit_bits = u16::from_le_bytes([hdr[1], hdr[2]]);
    let len = usize::from(u16::from_le_bytes([hdr[3], hdr[4]]));
    if !matches!(op, OP_ADD | OP_RESEED | OP_READY | OP_WATCHDOG) {
        return Err(FrameError::UnknownOp(op));
    }
    if len > sys::MAX_ADD {
        return Err(FrameError::TooLong(len));
    }
    Ok(Header {
        op,
        credit_bits,
        len,
    })
}

/// Checks a header with its payload (`payload.len() == h.len`) and says what to do.
pub fn decode_frame(h: Header, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    debug_assert_eq!(payload.len(), h.len);
    match h.op {
        OP_ADD => {
            if payload.is_empty() || usize::from(h.credit_bits) > payload.len() * 8 {
                return Err(FrameError::BadCredit {
                    len: payload.len(),
                    credit_bits: h.credit_bits,
                });
            }
            Ok(Frame::Add {
                credit_bits: h.credit_bits,
                data: payload,
            })
        }
        OP_RESEED | OP_WATCHDOG if h.credit_bits != 0 || !payload.is_empty() => {
            Err(FrameError::Unexpected(h.op))
        }
        OP_RESEED => Ok(Frame::Reseed),
        OP_WATCHDOG => Ok(Frame::Watchdog),
        OP_READY if h.credit_bits != 0 => Err(FrameError::Unexpected(h.op)),
        OP_READY => Ok(Frame::Ready(
            // Only printable text reaches systemd's status line.
            String::from_utf8_lossy(payload)
                .chars()
                .filter(|c| !c.is_control())
                .collect(),
        )),
        op => Err(FrameError::UnknownOp(op)),
    }
}

/// Decodes the first frame of `buf`: `Ok(None)` when `buf` holds less than one whole frame,
/// else the frame and the bytes it took. What [`supervise`] does over a pipe, over a slice.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(hdr) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let h = decode_header(hdr)?;
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + h.len) else {
        return Ok(None);
    };
    Ok(Some((decode_frame(h, payload)?, HEADER_LEN + h.len)))
}

/// Encodes a frame as the worker sends it.
pub fn encode(op: u8, credit_bits: u16, data: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(data.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(HEADER_LEN + data.len());
    frame.push(op);
    frame.extend_from_slice(&credit_bits.to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(data);
    Ok(frame)
}

/// The supervisor's loop: executes requests from `from_worker` until it closes. Anything the
/// decoder refuses ends the loop with an error (the worker is then killed): a worker that
/// speaks nonsense is compromised or broken.
pub fn supervise(
    mut from_worker: impl Read,
    mut to_worker: impl Write,
    random: &std::fs::File,
) -> io::Result<()> {
    let fd = random.as_fd();
    let mut hdr = [0u8; HEADER_LEN];
    let mut buf = vec![0u8; sys::MAX_ADD];
    loop {
        match from_worker.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let h = decode_header(&hdr).map_err(io::Error::other)?;
        from_worker.read_exact(&mut buf[..h.len])?;
        let result = match decode_frame(h, &buf[..h.len]) {
            Err(e) => {
                buf[..h.len].zeroize();
                return Err(io::Error::other(e));
            }
            Ok(Frame::Add { credit_bits, data }) => {
                Some(sys::rnd_add_entropy(fd, data, u32::from(credit_bits)))
            }
            Ok(Frame::Reseed) => Some(sys::rnd_reseed_crng(fd)),
            Ok(Frame::Ready(status)) => {
                notify(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&status),
                ]);
                None
            }
            Ok(Frame::Watchdog) => {
                notify(&[sd_notify::NotifyState::Watchdog]);
                None
            }
        };
        buf[..h.len].zeroize();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let data = [7u8; 64];
        let f = encode(OP_ADD, 512, &data).unwrap();
        assert_eq!(
            decode(&f),
            Ok(Some((
                Frame::Add {
                    credit_bits: 512,
                    data: &data
                },
                69
            )))
        );
        let f = encode(OP_READY, 0, b"seeded\n\x1b[31m").unwrap();
        assert_eq!(
            decode(&f),
            Ok(Some((Frame::Ready("seeded[31m".into()), f.len())))
        );
        for (op, want) in [(OP_RESEED, Frame::Reseed), (OP_WATCHDOG, Frame::Watchdog)] {
            assert_eq!(decode(&encode(op, 0, &[]).unwrap()), Ok(Some((want, 5))));
        }
        // Partial frames ask for more.
        let f = encode(OP_ADD, 8, &[1, 2, 3]).unwrap();
        for n in 0..f.len() {
            assert_eq!(decode(&f[..n]), Ok(None), "{n}");
        }
    }

    #[test]
    fn what_a_hostile_worker_may_send_is_refused_before_any_ioctl() {
        let cases: [(&[u8], FrameError); 8] = [
            (&[0, 0, 0, 0, 0], FrameError::UnknownOp(0)),
            (&[9, 0, 0, 0, 0], FrameError::UnknownOp(9)),
            // 513 bytes announced: refused from the header, before the payload.
            (&[OP_ADD, 0, 0, 0x01, 0x02], FrameError::TooLong(513)),
            (&[OP_READY, 0, 0, 0xff, 0xff], FrameError::TooLong(65535)),
            // More credit than 8 bits per byte, and an empty ADD.
            (
                &[OP_ADD, 9, 0, 1, 0, 0xaa],
                FrameError::BadCredit {
                    len: 1,
                    credit_bits: 9,
                },
            ),
            (
                &[OP_ADD, 0, 0, 0, 0],
                FrameError::BadCredit {
                    len: 0,
                    credit_bits: 0,
                },
            ),
            (&[OP_RESEED, 1, 0, 0, 0], FrameError::Unexpected(OP_RESEED)),
            (
                &[OP_WATCHDOG, 0, 0, 1, 0, 0],
                FrameError::Unexpected(OP_WATCHDOG),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes), Err(want), "{bytes:?}");
        }
        // The largest frame is accepted, one more byte is not.
        let f = encode(OP_ADD, 4096, &[1u8; sys::MAX_ADD]).unwrap();
        assert!(matches!(decode(&f), Ok(Some((Frame::Add { .. }, n))) if n == f.len()));
        assert!(encode(OP_ADD, 0, &vec![0u8; 70_000]).is_err());
    }

    /// The real loop over pipes-as-slices: it stops at the first bad frame and answers nothing
    /// for it (no ioctl ran: /dev/null is no random device, an ADD would have failed loudly).
    #[test]
    fn supervise_stops_at_a_hostile_frame_without_acting_on_it() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let mut input = encode(OP_WATCHDOG, 0, &[]).unwrap();
        input.extend_from_slice(&[OP_ADD, 0xff, 0xff, 4, 0, 1, 2, 3, 4]);
        let mut answers = Vec::new();
        let e = supervise(&input[..], &mut answers, &null).unwrap_err();
        assert!(e.to_string().contains("crediting 65535 bits"), "{e}");
        assert!(answers.is_empty());
        // A clean end of input is a clean end.
        assert!(supervise(
            &encode(OP_WATCHDOG, 0, &[]).unwrap()[..],
            &mut answers,
            &null
        )
        .is_ok());
    }
}
