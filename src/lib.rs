//! qeaasd: Quantum Entropy as a Service, the daemon.
//!
//! See `ARCHITECTURE.md` for the process model. The entropy logic itself lives in `qeaas-core`;
//! this crate is the shell around it: sources, privilege separation, kernel feeding, the local
//! socket, metrics and the simulator.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod assess;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod fair;
pub mod kernel;
pub mod metrics;
pub mod privsep;
pub mod sim;
pub mod socket;
pub mod source;
pub mod sys;

/// sysexits(3) codes used by the binaries.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Command-line usage error.
    pub const USAGE: i32 = 64;
    /// Input data malformed.
    pub const DATAERR: i32 = 65;
    /// Input file missing.
    pub const NOINPUT: i32 = 66;
    /// Service unavailable (no source present, no entropy).
    pub const UNAVAILABLE: i32 = 69;
    /// Internal software error.
    pub const SOFTWARE: i32 = 70;
    /// OS error.
    pub const OSERR: i32 = 71;
    /// I/O error.
    pub const IOERR: i32 = 74;
    /// Temporary failure (retry later: e.g. the daemon holds the source).
    pub const TEMPFAIL: i32 = 75;
    /// Permission denied.
    pub const NOPERM: i32 = 77;
    /// Configuration error.
    pub const CONFIG: i32 = 78;
}

/// Logging as every binary of the project sets it up (one definition, in `qeaas-client`).
pub use qeaas_client::init_logging;

/// Makes any panic, in any thread, abort the process after it is reported. A bug in the daemon
/// must not leave it half-alive (a reader thread gone, accounting mid-update): the supervisor
/// dies with the worker and systemd restarts the unit. Installed by `qeaasd` at start, not by
/// the release profile, because the workspace also builds the OpenSSL provider, which must
/// unwind so that its FFI guard can turn a panic into an error for the host application.
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
}
