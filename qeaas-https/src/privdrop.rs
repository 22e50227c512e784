//! Least privilege: after binding, become an unprivileged user and hold no capabilities, before
//! the first network byte is read.

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid, User};

/// Why privileges could not be dropped (fatal: the server must not run privileged).
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    /// Started as root without `user = ...`.
    #[error("running as root: set `user = \"...\"` in the config (e.g. \"nobody\")")]
    NoUser,
    /// The configured user does not exist.
    #[error("no such user {0:?}")]
    UnknownUser(String),
    /// The user is root itself.
    #[error("user {0:?} is root: choose an unprivileged user")]
    RootUser(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// The call.
        what: &'static str,
        /// errno.
        source: nix::Error,
    },
    /// Clearing capabilities failed.
    #[error("capabilities: {0}")]
    Caps(String),
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> PrivError {
    move |source| PrivError::Sys { what, source }
}

/// When running as root, switches to `user` (groups, gid, then uid: the order matters, a
/// process that gave up root can no longer change its groups). In every case then clears all
/// capability sets and sets no_new_privs. Returns the uid now in effect.
pub fn drop_privileges(user: Option<&str>) -> Result<u32, PrivError> {
    if Uid::effective().is_root() || Uid::current().is_root() {
        let name = user.ok_or(PrivError::NoUser)?;
        let u = User::from_name(name)
            .map_err(sys("getpwnam"))?
            .ok_or_else(|| PrivError::UnknownUser(name.to_string()))?;
        if u.uid.is_root() {
            return Err(PrivError::RootUser(name.to_string()));
        }
        setgroups(&[u.gid]).map_err(sys("setgroups"))?;
        setgid(u.gid).map_err(sys("setgid"))?;
        setuid(u.uid).map_err(sys("setuid"))?;
        // setuid to a non-root uid clears the permitted and effective sets; check it did, and
        // that root cannot be regained.
        if setuid(Uid::from_raw(0)).is_ok() || setgid(Gid::from_raw(0)).is_ok() {
            return Err(PrivError::Caps("could regain root after setuid".into()));
        }
    }
    use caps::CapSet;
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| PrivError::Caps(e.to_string()))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(sys("PR_SET_NO_NEW_PRIVS"))?;
    Ok(Uid::effective().as_raw())
}
