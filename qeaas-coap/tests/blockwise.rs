//! Block2 (RFC 7959) and per-identity quotas (RFC 8516 4.29) with real clients: Debian's
//! libcoap clients (DTLS 1.2 PSK) and our qeaas-fetch, against qeaas-coapd in front of a real
//! qeaasd on a simulated Quantis. The daemon's own per-uid counter proves each block-wise body
//! left the pool once, whole.

mod common;

use std::collections::HashSet;
use std::process::Command;

use common::*;

#[test]
fn libcoap_clients_fetch_4096_bytes_block_wise_from_one_daemon_fetch() {
    if !clients_present() {
        return;
    }
    let s = Stack::start_with("max_bytes = 65536\n", |_| String::new());
    let mut seen = HashSet::new();
    for client in CLIENTS {
        // libcoap follows Block2 by itself; with -b it asks for that block size from block 0
        // (smaller than our 1024: honoured).
        for extra in [&[][..], &["-b", "256"][..]] {
            let args = [&["-u", ID, "-k", KEY][..], extra].concat();
            let before = s.served_to_frontend();
            let (b, out) = s.coap_client_run(client, &args, "entropy?n=4096");
            let b = b.unwrap_or_else(|| panic!("{client} {extra:?}: nothing: {out}\n{}", s.log()));
            assert_eq!(b.len(), 4096, "{client} {extra:?}");
            assert!(seen.insert(b.clone()), "{client}: the same body twice");
            // No 1 KiB run repeats inside the body: blocks were not served twice.
            let chunks: HashSet<&[u8]> = b.chunks(256).collect();
            assert_eq!(chunks.len(), 16, "{client} {extra:?}");
            // Exactly the body left the pool for this frontend: fetched once, not per block.
            assert_eq!(s.served_to_frontend() - before, 4096, "{client} {extra:?}");
        }
    }
    // The largest body (64 KiB, fetched from the daemon in 4 KiB GETs).
    let before = s.served_to_frontend();
    let b = s
        .coap_client(CLIENTS[0], ID, KEY, "entropy?n=65536")
        .expect("n=65536");
    assert_eq!(b.len(), 65536);
    assert_eq!(s.served_to_frontend() - before, 65536);
}

#[test]
fn qeaas_fetch_follows_block2_over_dtls13() {
    let s = Stack::start_with("max_bytes = 65536\nblock_size = 512\n", |_| String::new());
    let key = s.dir.path().join("psk");
    std::fs::write(&key, KEY).unwrap();
    let before = s.served_to_frontend();
    let o = Command::new(FETCH)
        .arg(s.url("entropy?n=5000"))
        .args(["--psk-identity", ID, "--psk-key-file"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout.len(), 5000);
    assert_eq!(s.served_to_frontend() - before, 5000);
}

#[test]
fn an_identity_over_its_quota_gets_4_29_with_max_age_and_others_are_unaffected() {
    if !clients_present() {
        return;
    }
    let s = Stack::start(|_| {
        "[[psk]]\nidentity = \"limited\"\nkey = \"limited key\"\n\
         [quota.identity.limited]\nwindow_secs = 600\nrequests_per_window = 2\n"
            .into()
    });
    let lim = ["-u", "limited", "-k", "limited key"];
    for _ in 0..2 {
        assert_eq!(
            s.coap_client_args(CLIENTS[0], &lim, "entropy")
                .map(|b| b.len()),
            Some(32)
        );
    }
    // The third request: 4.29 with a Max-Age, and nothing drawn from the pool.
    let before = s.served_to_frontend();
    let (b, out) = s.coap_client_run(CLIENTS[0], &[&lim[..], &["-v", "7"]].concat(), "entropy");
    assert!(b.is_none(), "{b:?}");
    assert!(out.contains("4.29"), "no 4.29 shown:\n{out}");
    assert_eq!(s.served_to_frontend(), before);
    // The other identity (no quota configured) is served as before.
    assert_eq!(
        s.coap_client(CLIENTS[1], ID, KEY, "entropy")
            .map(|b| b.len()),
        Some(32)
    );
    // qeaas-fetch reports the code and the Max-Age (whole seconds left of the 600 s window).
    let key = s.dir.path().join("lim.psk");
    std::fs::write(&key, "limited key").unwrap();
    let o = Command::new(FETCH)
        .arg(s.url("entropy"))
        .args(["--psk-identity", "limited", "--psk-key-file"])
        .arg(&key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(75),
        "{err}\n{}",
        s.log()
            .lines()
            .filter(|l| l.contains("handshake done"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let age: u32 = err
        .split("Max-Age ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age in {err:?}"));
    assert!((1..=600).contains(&age), "{err}");
    assert!(err.contains("4.29"), "{err}");
    // That was DTLS 1.3, where the identity comes from our PSK callback, not wolfSSL's
    // (which forgets it): the quota cannot be escaped by switching versions.
    assert!(
        s.log().lines().any(|l| l.contains("handshake done")
            && l.contains("version=\"DTLSv1.3\"")
            && l.contains("identity=\"limited\"")),
        "{}",
        s.log()
    );
    assert!(o.stdout.is_empty());
}
