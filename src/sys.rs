//! The only `unsafe` in qeaasd: ioctls on `/dev/random` and on Quantis devices, and the
//! `SO_PEERGROUPS` socket option (neither rustix nor nix wraps it).
//!
//! Each wrapper passes a buffer it owns and sizes itself, with the exact request number and
//! argument layout the kernel (or the Quantis driver) expects; nothing else here touches raw
//! memory. Safety arguments are given at each call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `RNDGETENTCNT = _IOR('R', 0x00, int)`.
const RNDGETENTCNT: libc::c_ulong = 0x8004_5200;
/// `RNDADDENTROPY = _IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG = _IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Largest buffer we pass to RNDADDENTROPY; the kernel has no limit but we never need more.
pub const MAX_ADD: usize = 512;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The kernel's entropy count in bits (no privilege needed). Reads 256 forever once the CRNG is
/// initialised on 5.18+.
pub fn rnd_get_entcnt(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut count: libc::c_int = 0;
    // SAFETY: RNDGETENTCNT writes exactly one int through the pointer, which points to a live,
    // aligned c_int owned by this frame.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), RNDGETENTCNT, &mut count as *mut libc::c_int) })?;
    Ok(count.max(0) as u32)
}

/// Mixes `data` into the input pool and credits `credit_bits` (needs CAP_SYS_ADMIN).
pub fn rnd_add_entropy(fd: BorrowedFd<'_>, data: &[u8], credit_bits: u32) -> io::Result<()> {
    if data.is_empty() || data.len() > MAX_ADD || credit_bits as usize > data.len() * 8 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "RNDADDENTROPY: 1..=512 bytes and at most 8 bits of credit per byte",
        ));
    }
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }, built in u32s so
    // that it is 4-byte aligned; the bytes follow the two ints.
    let words = 2 + data.len().div_ceil(4);
    let mut info = vec![0u32; words];
    info[0] = credit_bits;
    info[1] = data.len() as u32;
    for (i, b) in data.iter().enumerate() {
        let w = &mut info[2 + i / 4];
        let mut bytes = w.to_ne_bytes();
        bytes[i % 4] = *b;
        *w = u32::from_ne_bytes(bytes);
    }
    // SAFETY: the kernel reads two ints and then buf_size bytes from the pointer; `info` holds
    // 8 + 4 * ceil(len / 4) >= 8 + len bytes, is aligned for int and outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) };
    zeroize::Zeroize::zeroize(&mut info);
    check(rc)
}

/// Forces the kernel CRNG to reseed from the input pool now (needs CAP_SYS_ADMIN).
pub fn rnd_reseed_crng(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: RNDRESEEDCRNG takes no argument.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), RNDRESEEDCRNG) })
}

const fn ior(ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    ((2 << 30)
        | ((size as libc::c_ulong) << 16)
        | ((ty as libc::c_ulong) << 8)
        | nr as libc::c_ulong) as libc::c_ulong
}

/// Quantis PCIe driver ioctls (magic `'q'`).
pub mod quantis {
    use super::*;

    const UINT: usize = std::mem::size_of::<libc::c_uint>();
    /// `GET_DRIVER_VERSION`.
    pub const GET_DRIVER_VERSION: libc::c_ulong = ior(b'q', 0, UINT);
    /// `GET_BOARD_VERSION`.
    pub const GET_BOARD_VERSION: libc::c_ulong = ior(b'q', 3, UINT);
    /// `GET_MODULES_MASK`.
    pub const GET_MODULES_MASK: libc::c_ulong = ior(b'q', 2, UINT);
    /// `GET_MODULES_STATUS`.
    pub const GET_MODULES_STATUS: libc::c_ulong = ior(b'q', 8, UINT);
    /// `GET_SERIAL` (char[256]).
    pub const GET_SERIAL: libc::c_ulong = ior(b'q', 12, 256);

    /// Reads one unsigned int through `request`.
    pub fn get_uint(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<u32> {
        let mut v: libc::c_uint = 0;
        // SAFETY: the Quantis "get" ioctls write one unsigned int to the pointer, which is a live,
        // aligned c_uint; devices that do not know the request fail with ENOTTY without writing.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut v as *mut libc::c_uint) })?;
        Ok(v)
    }

    /// Reads the board serial number.
    pub fn get_serial(fd: BorrowedFd<'_>) -> io::Result<String> {
        let mut buf = [0u8; 256];
        // SAFETY: GET_SERIAL writes at most 256 bytes, the size encoded in the request, into the
        // 256-byte buffer owned by this frame.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), GET_SERIAL, buf.as_mut_ptr()) })?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }
}

/// The supplementary groups of the peer of a connected Unix socket, as the kernel recorded them
/// at `connect` (`SO_PEERGROUPS`, Linux 4.13): not raced by the peer exiting or changing its
/// groups afterwards, unlike reading `/proc/PID/status`.
pub fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * std::mem::size_of::<libc::gid_t>())
            .map_err(io::Error::other)?;
        // SAFETY: `groups` owns `len` writable bytes; the kernel writes at most `len` bytes of
        // gid_t values and stores the length it wrote (or, on ERANGE, the length it needs) in
        // `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n.min(groups.len()));
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        // ERANGE: more groups than room; `len` says how many. NGROUPS_MAX is 65536.
        if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65_536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_groups_are_the_connecting_process_groups() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut got = peer_groups(std::os::fd::AsFd::as_fd(&a)).unwrap();
        let mut want: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        want.dedup();
        got.dedup();
        assert_eq!(got, want);
    }

    #[test]
    fn request_numbers_match_the_kernel_headers() {
        assert_eq!(ior(b'R', 0, 4), RNDGETENTCNT);
        assert_eq!(RNDADDENTROPY, (1 << 30) | (8 << 16) | (0x52 << 8) | 3);
    }

    #[test]
    fn getentcnt_works_unprivileged_and_is_at_most_256() {
        let f = std::fs::File::open("/dev/random").unwrap();
        let n = rnd_get_entcnt(std::os::fd::AsFd::as_fd(&f)).unwrap();
        assert!(n <= 256, "{n}");
    }

    #[test]
    fn add_entropy_rejects_overclaimed_credit() {
        let f = std::fs::File::open("/dev/random").unwrap();
        let e = rnd_add_entropy(std::os::fd::AsFd::as_fd(&f), &[0; 4], 33).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn quantis_ioctls_on_a_non_quantis_device_fail_cleanly() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&f);
        assert!(quantis::get_uint(fd, quantis::GET_BOARD_VERSION).is_err());
        assert!(quantis::get_serial(fd).is_err());
    }
}
