//! DTLS 1.3 session resumption (`[dtls] ticket_key_file`), black-box: the real qeaas-coapd in
//! front of a real qeaasd on a simulated Quantis, restarted between handshakes, and our
//! wolfSSL client with an ML-DSA-44 client certificate under `[client_certs] require = true`.
//! (PSK clients of our build offer their external PSK beside the ticket and wolfSSL prefers
//! the PSK, so a certificate client shows resumption.)

mod common;

use std::os::unix::fs::PermissionsExt;

use common::dtls::Dtls13;
use common::*;
use qeaas_coap::fetch::{client_context, use_client_certificate, Auth};
use qeaas_wolfssl_sys::{Context, Group, Version};

/// "handshake done" lines naming client-1 by its certificate, resumed or not.
fn handshakes(s: &Stack, resumed: bool) -> usize {
    s.log()
        .lines()
        .filter(|l| {
            l.contains("handshake done")
                && l.contains("auth=\"certificate\"")
                && l.contains("identity=\"client-1\"")
                && l.contains(&format!("resumed={resumed}"))
        })
        .count()
}

fn get16(c: &mut Dtls13, mid: u16) {
    let p = c.get(mid, "entropy?n=16");
    assert_eq!(p.payload.len(), 16, "{:?}", p.header.code);
}

#[test]
fn a_certificate_client_resumes_after_a_restart_with_the_same_ticket_key_file_only() {
    let mut s = Stack::start(|dir| {
        gen_credentials(
            &dir.join("creds"),
            &["--algo", "ml-dsa-44", "--clients", "1"],
        );
        let snippet = std::fs::read_to_string(dir.join("creds/coapd.toml")).unwrap();
        format!(
            "{snippet}\n[client_certs]\nca = {:?}\nrequire = true\n\n[dtls]\nticket_key_file = {:?}\n",
            dir.join("creds/ca.pem"),
            dir.join("ticket.key")
        )
    });
    let key_file = s.dir.path().join("ticket.key");
    let meta = std::fs::metadata(&key_file).expect("the ticket key file was created");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    assert!(
        s.log().contains("DTLS 1.3 session tickets on"),
        "{}",
        s.log()
    );

    let creds = s.dir.path().join("creds");
    let read = |f: &str| std::fs::read(creds.join(f)).unwrap();
    let mut ctx: Context = client_context(
        Version::Dtls13,
        Some(Group::MlKem512),
        &Auth::Ca(read("ca.pem")),
    )
    .unwrap();
    use_client_certificate(&mut ctx, &read("client-1.pem"), &read("client-1-key.der")).unwrap();

    // A full handshake, a GET, and the ticket that followed the handshake.
    let mut c = Dtls13::connect_resuming(s.port, Group::MlKem512, &ctx, None).unwrap();
    let full = (c.recv_bytes, c.recv_datagrams);
    assert!(!c.s.resumed());
    get16(&mut c, 1);
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        if c.s.resumption().is_some() {
            break;
        }
        c.recv();
        let _ = c.s.read(&mut buf);
    }
    let ticket = c.s.resumption().expect("a session ticket");
    assert_eq!(handshakes(&s, false), 1, "{}", s.log());
    drop(c);

    // Restart with the same key file: the ticket resumes, as client-1, and is served.
    s.restart_coapd(|cfg| cfg);
    let mut c = Dtls13::connect_resuming(s.port, Group::MlKem512, &ctx, Some(&ticket)).unwrap();
    let resumed = (c.recv_bytes, c.recv_datagrams);
    assert!(c.s.resumed(), "no resumption after a restart:\n{}", s.log());
    get16(&mut c, 2);
    assert_eq!(handshakes(&s, true), 1, "{}", s.log());
    eprintln!(
        "client received in the handshake: full {} B in {} datagrams, resumed {} B in {}",
        full.0, full.1, resumed.0, resumed.1
    );
    assert!(resumed.0 * 3 < full.0, "full {full:?}, resumed {resumed:?}");
    drop(c);

    // Another key file: the ticket is unknown, a full handshake (client-1 by its certificate).
    s.restart_coapd(|cfg| cfg.replace("ticket.key", "ticket-2.key"));
    let mut c = Dtls13::connect_resuming(s.port, Group::MlKem512, &ctx, Some(&ticket)).unwrap();
    assert!(
        !c.s.resumed(),
        "resumed under another key file:\n{}",
        s.log()
    );
    get16(&mut c, 3);
    assert_eq!(handshakes(&s, false), 1, "{}", s.log());
    assert_eq!(handshakes(&s, true), 0, "{}", s.log());
}
