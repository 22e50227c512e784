//! qeaasd's configuration parser and validator: any text is accepted or rejected with an error,
//! never a panic, and what is accepted re-validates the same way.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = qeaas::config::Config::parse(text, Path::new("fuzz.toml")) {
            // Every accepted file must yield its sources without a panic either.
            let _ = cfg.active_sources(&[], &[]);
        }
    }
});
