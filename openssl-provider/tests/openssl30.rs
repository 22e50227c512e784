//! The provider against Debian 12's OpenSSL 3.0 (`openssl` on PATH, libssl-dev for the C fork
//! driver), with a running qeaasd reading the simulator.

#[macro_use]
mod common;

use common::suite::{self, GENERATOR, SEED};

provider_suite!(common::Ossl::system(), &[GENERATOR, SEED]);

#[test]
fn exports_only_provider_init_and_does_not_link_libcrypto() {
    let m = common::module();
    let out = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&m)
        .output()
        .expect("run nm");
    assert!(out.status.success());
    let syms: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect();
    assert_eq!(syms, ["OSSL_provider_init"]);
    let out = std::process::Command::new("ldd").arg(&m).output().unwrap();
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(!libs.contains("libcrypto"), "{libs}");
}
