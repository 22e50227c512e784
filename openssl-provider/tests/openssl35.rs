//! The provider against OpenSSL 3.5, built from the openssl-src sources by
//! `scripts/build-openssl.sh` (on first use if missing), with a running qeaasd reading the
//! simulator; adds the 3.5-only `random_provider` role.

#[macro_use]
mod common;

use common::suite::{self, GENERATOR, RANDOM_PROVIDER, SEED};

provider_suite!(common::Ossl::v35(), &[GENERATOR, SEED, RANDOM_PROVIDER]);

#[test]
fn rand_random_provider_role() {
    suite::random_provider(&o());
}

#[test]
fn fork_random_provider_role() {
    suite::fork(&o(), RANDOM_PROVIDER, 2 * 4096);
}
