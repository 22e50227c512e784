//! `qeaasd`: the qeaas daemon. Thin: parses the command line and calls into the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use qeaas::daemon::{self, Selection};
use qeaas::exit;

/// Quantum Entropy as a Service: feeds the kernel and local consumers from health-tested,
/// conditioned hardware entropy (a replacement for rngd).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Configuration file [env: QEAASD_CONFIG; default /etc/qeaas/qeaasd.toml].
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Enable a source by name, even if the config disables it (repeatable).
    #[arg(short = 'n', long = "enable", global = true, value_name = "NAME")]
    enable: Vec<String>,
    /// Disable a source by name (repeatable).
    #[arg(short = 'x', long = "disable", global = true, value_name = "NAME")]
    disable: Vec<String>,
    /// Started as root, keep the worker root instead of switching to the config's `user`
    /// (for containers that have no other user). It still drops every capability.
    #[arg(long, global = true)]
    allow_root_worker: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon (supervisor plus unprivileged worker).
    Run,
    /// Validate the configuration and exit (78 on error).
    CheckConfig,
    /// List configured sources and whether their device is present (69 if none is).
    ListSources,
    /// Read the sources through the health tests and conditioning, print rates, feed nothing.
    Test {
        /// Seconds to run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Write a source's raw samples (before any conditioning) for an SP 800-90B assessment:
    /// one sample per byte, bits as 0/1 bytes. Never credits or serves them; refuses while
    /// qeaasd runs (75).
    Capture {
        /// Configured source name.
        #[arg(long)]
        source: String,
        /// Samples to write.
        #[arg(long, default_value_t = 1_000_000)]
        samples: usize,
        /// Restart matrix ROWSxCOLS (e.g. 1000x1000): ROWS reopens, COLS samples each.
        #[arg(long, value_name = "ROWSxCOLS", value_parser = qeaas::capture::parse_matrix)]
        restart: Option<(usize, usize)>,
        /// Output file (must not exist).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Internal: the unprivileged worker started by `run`.
    #[command(hide = true)]
    Worker,
}

fn main() {
    qeaas::init_logging();
    qeaas::abort_on_panic();
    let a = Args::parse();
    let config = a.config.clone().unwrap_or_else(daemon::default_config);
    let sel = Selection {
        enable: a.enable,
        disable: a.disable,
        allow_root_worker: a.allow_root_worker,
    };
    let r = match a.cmd {
        Cmd::Run => daemon::run_supervisor(&config, &sel),
        Cmd::Worker => daemon::run_worker(&config, &sel),
        Cmd::Test { seconds } => daemon::run_test(&config, &sel, seconds),
        Cmd::Capture {
            source,
            samples,
            restart,
            output,
        } => {
            let args = qeaas::capture::CaptureArgs {
                source,
                samples,
                restart,
                output,
            };
            match qeaas::capture::run(&config, &args) {
                Ok(code) => std::process::exit(code),
                Err(e) => {
                    eprintln!("qeaasd capture: {e}");
                    std::process::exit(e.code());
                }
            }
        }
        Cmd::ListSources => daemon::list_sources(&config),
        Cmd::CheckConfig => daemon::load_checked(&config, &sel).map(|(c, _)| {
            println!("{}: OK ({} sources)", config.display(), c.sources.len());
            exit::OK
        }),
    };
    match r {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("qeaasd: {e}");
            std::process::exit(e.code());
        }
    }
}
