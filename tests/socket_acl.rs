//! The local socket's ACL with a user and a group that exist only through NSS (libnss-extrausers,
//! standing in for LDAP or sssd): `allow_users` and `group` resolve through getpwnam_r/getgrnam_r,
//! and a client in the group by a supplementary membership only is recognised from the socket
//! (SO_PEERGROUPS). scripts/setup-debian.sh installs libnss-extrausers and adds it to
//! /etc/nsswitch.conf; this test adds its user and group to /var/lib/extrausers and removes them.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::*;
use qeaas_client::proto::{self, Request, Status};

const USER: &str = "qeaas-nss-only";
const USER_ID: u32 = 64991;
const GROUP: &str = "qeaas-nss-clients";
const GROUP_ID: u32 = 64992;
/// In GROUP by a supplementary membership only.
const MEMBER: u32 = 64993;
/// In neither.
const STRANGER: u32 = 64994;

/// Adds `line` to an extrausers file for the life of the value.
struct Entry(&'static str, String);

impl Entry {
    fn add(file: &'static str, line: String) -> Entry {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l == line) {
            std::fs::write(file, format!("{text}{line}\n")).unwrap();
        }
        Entry(file, line)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(self.0) {
            let kept: String = text
                .lines()
                .filter(|l| *l != self.1)
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write(self.0, kept);
        }
    }
}

fn extrausers_configured() -> bool {
    std::fs::read_to_string("/etc/nsswitch.conf").is_ok_and(|t| {
        ["passwd:", "group:"].iter().all(|db| {
            t.lines()
                .any(|l| l.starts_with(db) && l.contains("extrausers"))
        })
    }) && Path::new("/var/lib/extrausers").is_dir()
}

/// A GET of 16 bytes from a thread with these credentials (per-thread setgroups/setresgid/
/// setresuid: the kernel records the connecting thread's at connect).
fn get_as(sock: &Path, uid: u32, gid: u32, groups: &[u32]) -> Result<usize, Status> {
    let (sock, groups) = (sock.to_owned(), groups.to_vec());
    std::thread::spawn(move || {
        use rustix::process::{Gid, Uid};
        use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
        let g: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
        set_thread_groups(&g).unwrap();
        let (gid, uid) = (Gid::from_raw(gid), Uid::from_raw(uid));
        set_thread_res_gid(gid, gid, gid).unwrap();
        set_thread_res_uid(uid, uid, uid).unwrap();
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&proto::encode_request(Request::Get {
            len: 16,
            wait_ms: 3000,
        }))
        .unwrap();
        let mut h = [0u8; proto::ANSWER_HEADER_LEN];
        s.read_exact(&mut h).unwrap();
        let (st, len) = proto::decode_answer_header(&h).unwrap();
        let mut b = vec![0u8; usize::from(len)];
        s.read_exact(&mut b).unwrap();
        if st == Status::Ok {
            Ok(b.len())
        } else {
            Err(st)
        }
    })
    .join()
    .unwrap()
}

#[test]
fn users_and_groups_known_only_through_nss_work_in_the_acl() {
    if !require(is_root(), "root")
        || !require(
            extrausers_configured(),
            "libnss-extrausers in /etc/nsswitch.conf (scripts/setup-debian.sh)",
        )
    {
        return;
    }
    let _u = Entry::add(
        "/var/lib/extrausers/passwd",
        format!(
            "{USER}:x:{USER_ID}:{USER_ID}:qeaas NSS-only test user:/nonexistent:/usr/sbin/nologin"
        ),
    );
    let _g = Entry::add(
        "/var/lib/extrausers/group",
        format!("{GROUP}:x:{GROUP_ID}:"),
    );
    // Not in the files qeaasd used to parse.
    for (f, name) in [("/etc/passwd", USER), ("/etc/group", GROUP)] {
        assert!(!std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .any(|l| l.starts_with(&format!("{name}:"))));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let fifo = dir.path().join("qrandom0");
    let _sim = sim(&["--fifo", fifo.to_str().unwrap(), "--seed", "3"]);
    assert!(wait_until(Duration::from_secs(10), || fifo.exists()));
    let port = free_port();
    let text = config(
        dir.path(),
        port,
        &format!("[kernel]\nenable = false\n[[source]]\nname = \"q\"\nkind = \"quantis\"\npath = {fifo:?}\n"),
    )
    .replacen(
        "mode = 0o666\n",
        &format!("mode = 0o666\ngroup = \"{GROUP}\"\nallow_users = [\"{USER}\"]\n"),
        1,
    );
    let d = daemon_in(dir, port, &text, &[]);
    let sock = d.socket.clone();
    // The socket got the NSS group.
    assert_eq!(
        std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&sock).unwrap()),
        GROUP_ID
    );
    assert_eq!(get_as(&sock, USER_ID, USER_ID, &[]), Ok(16), "allow_users");
    assert_eq!(
        get_as(&sock, MEMBER, MEMBER, &[GROUP_ID]),
        Ok(16),
        "a supplementary member of the socket group"
    );
    assert_eq!(
        get_as(&sock, STRANGER, STRANGER, &[]),
        Err(Status::Forbidden),
        "neither"
    );
}
