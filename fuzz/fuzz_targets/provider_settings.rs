//! The OpenSSL provider's settings parser (the `[qeaas_sect]` values of an openssl.cnf and
//! `QEAAS_SOCKET`): any values are accepted or refused with a message, never a panic, and what is
//! accepted is within the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qeaas_provider::source::Settings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Six optional fields separated by NUL; "\u{1}" alone stands for an absent one.
    let mut f = text.split('\0').map(|v| (v != "\u{1}").then_some(v));
    let mut next = || f.next().flatten();
    let (socket, fallback, wait_ms, batch, user, env) =
        (next(), next(), next(), next(), next(), next());
    match Settings::from_values(socket, fallback, wait_ms, batch, user, env) {
        Ok(s) => {
            assert!((1..=65535).contains(&s.batch));
            assert!(!s.socket.as_os_str().is_empty());
            assert!(!s.daemon_user.is_empty());
        }
        Err(e) => assert!(e.starts_with("invalid ")),
    }
});
