//! PSK identity confusion against the real qeaas-coapd (a certificate, `[client_certs]
//! require = true`, a quota for `device-1`): an attacker who saw the identity `device-1` on the
//! wire offers it with a wrong key and only TLS13-CHACHA20-POLY1305-SHA256, which our PSK is not
//! bound to, from a DTLS 1.3 client on our wolfSSL build that accepts any server certificate.
//! It must not be served as `device-1`: not logged as it, not spending its quota, and not
//! passing `require` without a certificate.

mod common;

use coap_lite::ResponseType;
use common::dtls::Dtls13;
use common::*;
use qeaas_wolfssl_sys::{Context, Group, Role, Version};

#[test]
fn a_known_psk_identity_with_a_wrong_key_is_not_served_as_that_device() {
    let s = Stack::start(|dir| {
        gen_credentials(
            &dir.join("creds"),
            &["--algo", "ml-dsa-44", "--clients", "1"],
        );
        let snippet = std::fs::read_to_string(dir.join("creds/coapd.toml")).unwrap();
        format!(
            "{snippet}\n[client_certs]\nca = {:?}\nrequire = true\n\
             [quota.identity.\"{ID}\"]\nwindow_secs = 3600\nbytes_per_window = 32\n",
            dir.join("creds/ca.pem")
        )
    });
    let attacker = || {
        let mut ctx = Context::new(Role::Client, Version::Dtls13).unwrap();
        ctx.set_psk_client(ID.as_bytes(), b"not the key of device-1");
        ctx.set_cipher_list("TLS13-CHACHA20-POLY1305-SHA256")
            .unwrap();
        Dtls13::connect_ctx(s.port, Group::X25519, ctx)
    };
    match attacker() {
        Err(e) => eprintln!("attacker refused: {e}"),
        Ok(mut c) => {
            let r = c.get(1, "entropy");
            eprintln!(
                "attacker completed the handshake ({:?}) and got {:?} with {} bytes",
                c.s.cipher(),
                r.header.code,
                r.payload.len()
            );
        }
    }
    let log = s.log();
    let named = log
        .lines()
        .filter(|l| l.contains("handshake done") && l.contains(&format!("identity=\"{ID}\"")))
        .count();
    assert_eq!(
        named,
        0,
        "a client with a wrong key was named {ID}:\n{}",
        log.lines()
            .filter(|l| l.contains("handshake done"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The real device-1 (right key, the PSK suite) still has its whole quota.
    let mut d = Dtls13::connect(s.port, Group::X25519, KEY).expect("device-1 handshake");
    let r = d.get(2, "entropy");
    assert_eq!(
        r.header.code,
        coap_lite::MessageClass::Response(ResponseType::Content),
        "device-1's quota was spent by someone else"
    );
    assert_eq!(r.payload.len(), 32);
}
