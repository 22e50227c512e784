//! Becoming an unprivileged user, for the network frontends (`qeaas-coapd`, `qeaas-httpsd`).
//!
//! They bind their port (possibly below 1024) and read their keys as root, then call
//! [`drop_to_user`] before any other thread exists and before the first network byte is read.
//! The daemon does not use this: it has its own supervisor and worker (`qeaas::privsep`).

use caps::{CapSet, Capability};
use nix::unistd::{Gid, Uid, User};

/// Why privileges could not be dropped. Always fatal: a frontend must not serve the network
/// privileged.
#[derive(Debug, thiserror::Error)]
pub enum PrivDropError {
    /// Started as root without a user to become.
    #[error("running as root: set `user = \"...\"` in the config (e.g. \"nobody\")")]
    NoUser,
    /// The configured user does not exist.
    #[error("no such user {0:?}")]
    UnknownUser(String),
    /// The configured user is root itself.
    #[error("user {0:?} is uid 0: choose an unprivileged user")]
    RootUser(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// The call.
        what: &'static str,
        /// errno.
        source: nix::Error,
    },
    /// Changing capability sets failed, or root could be regained.
    #[error("capabilities: {0}")]
    Caps(String),
}

/// Who the process is after [`drop_to_user`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Real, effective and saved uid.
    pub uid: u32,
    /// Real, effective and saved gid.
    pub gid: u32,
    /// True if the process was root and switched user; false if it was not root to begin with.
    pub switched: bool,
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> PrivDropError {
    move |source| PrivDropError::Sys { what, source }
}

fn caps_err(e: impl std::fmt::Display) -> PrivDropError {
    PrivDropError::Caps(e.to_string())
}

/// When running as root, becomes `user`: its groups as `/etc/group` (or NSS) lists them, as
/// systemd's `User=` would (so membership of the group that owns qeaasd's socket works), then its
/// gid, then its uid, in that order because a process that left root can no longer change its
/// groups. In every case then empties every capability set, the bounding set included, and sets
/// no_new_privs, so nothing can be regained by exec either.
///
/// Set*id changes only the calling thread: call this before any other thread exists.
pub fn drop_to_user(user: Option<&str>) -> Result<Dropped, PrivDropError> {
    let switched = Uid::effective().is_root() || Uid::current().is_root();
    let target = if switched {
        let name = user.ok_or(PrivDropError::NoUser)?;
        let u = User::from_name(name)
            .map_err(sys("getpwnam"))?
            .ok_or_else(|| PrivDropError::UnknownUser(name.to_string()))?;
        if u.uid.is_root() {
            return Err(PrivDropError::RootUser(name.to_string()));
        }
        Some(u)
    } else {
        None
    };
    // The bounding set first: shrinking it needs CAP_SETPCAP, which leaving root takes away.
    // A process without CAP_SETPCAP cannot use its bounding set anyway.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        caps::clear(None, CapSet::Bounding).map_err(caps_err)?;
    }
    if let Some(u) = target {
        let cname = std::ffi::CString::new(u.name.as_str())
            .map_err(|_| PrivDropError::UnknownUser(u.name.clone()))?;
        nix::unistd::initgroups(&cname, u.gid).map_err(sys("initgroups"))?;
        nix::unistd::setresgid(u.gid, u.gid, u.gid).map_err(sys("setresgid"))?;
        // Leaving uid 0 for good clears the permitted and effective sets (no keep-caps).
        nix::unistd::setresuid(u.uid, u.uid, u.uid).map_err(sys("setresuid"))?;
        if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
            || nix::unistd::setgid(Gid::from_raw(0)).is_ok()
        {
            return Err(PrivDropError::Caps(
                "root could be regained after setuid".into(),
            ));
        }
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(caps_err)?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(sys("PR_SET_NO_NEW_PRIVS"))?;
    Ok(Dropped {
        uid: Uid::effective().as_raw(),
        gid: Gid::effective().as_raw(),
        switched,
    })
}
