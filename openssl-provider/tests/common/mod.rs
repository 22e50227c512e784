//! Black-box harness for the provider: starts `qeaas-sim` and `qeaasd` (the root crate's
//! binaries), writes OpenSSL configurations loading the freshly built provider, and runs a real
//! `openssl` (Debian's 3.0, or 3.5 built by `scripts/build-openssl.sh`) and small C drivers.
#![allow(dead_code)]

/// The suite both OpenSSL versions run: `$o` makes the [`Ossl`], `$roles` are the roles that
/// must fail closed (3.5 adds `random_provider`).
macro_rules! provider_suite {
    ($o:expr, $roles:expr) => {
        fn o() -> common::Ossl {
            $o
        }

        #[test]
        fn list_providers() {
            suite::list_providers(&o());
        }

        #[test]
        fn list_random_generators() {
            suite::list_random_generators(&o());
        }

        #[test]
        fn rand_generator_role() {
            suite::rand_generator_role(&o());
        }

        #[test]
        fn rand_seed_role() {
            suite::rand_seed_role(&o());
        }

        #[test]
        fn stopped_daemon_fails() {
            suite::stopped_daemon_fails(&o(), $roles);
        }

        #[test]
        fn failed_source_fails() {
            suite::failed_source_fails(&o(), $roles);
        }

        #[test]
        fn fallback_os() {
            suite::fallback_os(&o());
        }

        #[test]
        fn fork_generator_role() {
            // Parent and child each fetched a batch of their own.
            suite::fork(&o(), suite::GENERATOR, 2 * 4096);
        }

        #[test]
        fn fork_seed_role() {
            suite::fork(&o(), suite::SEED, 32);
        }

        #[test]
        fn check_script() {
            suite::check_script(&o());
        }
    };
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use qeaas_provider::source::Conn;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The provider module (this package's cdylib). `cargo test` builds the library for linking but
/// does not refresh `target/<profile>/libqeaas_provider.so`, so it is built here once.
pub fn module() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build(&["--lib", "-p", "qeaas-openssl-provider"]));
    let m = profile_dir().join("libqeaas_provider.so");
    assert!(m.exists(), "{} not built", m.display());
    m
}

/// An OpenSSL installation to test against.
#[derive(Clone, Debug)]
pub struct Ossl {
    /// The `openssl` binary.
    pub bin: PathBuf,
    /// Extra `cc` arguments after the source file to link libcrypto.
    pub link: Vec<String>,
    /// `cc` include arguments.
    pub include: Vec<String>,
    /// Tag for compiled drivers.
    pub tag: &'static str,
}

impl Ossl {
    /// Debian's OpenSSL 3.0 (`openssl` on PATH, libssl-dev for the C drivers).
    pub fn system() -> Ossl {
        Ossl {
            bin: PathBuf::from("openssl"),
            link: vec!["-lcrypto".into()],
            include: vec![],
            tag: "sys",
        }
    }

    /// OpenSSL 3.5 from the openssl-src sources, built by `scripts/build-openssl.sh` into
    /// `target/openssl-3.5` (built here if missing: ~5 min on 2 cores).
    pub fn v35() -> Ossl {
        let prefix = profile_dir().parent().unwrap().join("openssl-3.5");
        static BUILT: OnceLock<()> = OnceLock::new();
        BUILT.get_or_init(|| {
            if !prefix.join("bin/openssl").exists() {
                let st = Command::new("bash")
                    .arg(manifest_dir().join("scripts/build-openssl.sh"))
                    .arg(&prefix)
                    .env("CARGO", env!("CARGO"))
                    .status()
                    .expect("run build-openssl.sh");
                assert!(st.success(), "building OpenSSL 3.5 failed");
            }
        });
        Ossl {
            bin: prefix.join("bin/openssl"),
            link: vec![
                prefix.join("lib/libcrypto.a").display().to_string(),
                "-ldl".into(),
                "-pthread".into(),
            ],
            include: vec![format!("-I{}", prefix.join("include").display())],
            tag: "v35",
        }
    }

    /// Runs `openssl ARGS` with `OPENSSL_CONF=conf`.
    pub fn run(&self, conf: &Path, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("OPENSSL_CONF", conf)
            .env_remove("QEAAS_SOCKET")
            .output()
            .expect("run openssl")
    }

    /// Compiles a C driver against this OpenSSL.
    pub fn driver(&self, src: &Path) -> PathBuf {
        let out = profile_dir().join(format!(
            "qeaas-provider-{}-{}",
            src.file_stem().unwrap().to_str().unwrap(),
            self.tag
        ));
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let st = Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&out)
            .args(&self.include)
            .arg(src)
            .args(&self.link)
            .status()
            .expect("run cc");
        assert!(st.success(), "cc {} failed", src.display());
        out
    }
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[path = "../../../tests/common/shared.rs"]
mod shared;
pub use shared::*;
#[path = "../../../tests/common/workspace.rs"]
mod workspace;
pub use workspace::*;

/// A simulated Quantis on a FIFO and a qeaasd reading it, in a directory of their own (the
/// daemon is stopped before the simulator on drop).
pub struct Daemon {
    pub daemon: Option<Proc>,
    pub sim: Proc,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the pair; `sim_args` are appended to qeaas-sim's (e.g. a fault).
    pub fn start(sim_args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("qrandom0");
        let sim = Proc(
            Command::new(bin("qeaas-sim"))
                .arg("--fifo")
                .arg(&fifo)
                .args(["--rate", "4M"])
                .args(sim_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start qeaas-sim"),
        );
        assert!(
            wait_until(Duration::from_secs(10), || fifo.exists()),
            "simulator did not create its pipe"
        );
        let socket = dir.path().join("entropy.sock");
        let cfg = dir.path().join("qeaasd.toml");
        std::fs::write(
            &cfg,
            format!(
                "[socket]\npath = {socket:?}\nmode = 0o666\n\n[metrics]\nlisten = \"127.0.0.1:{}\"\n\n\
                 [kernel]\nenable = false\n\n[[source]]\nname = \"qsim\"\nkind = \"quantis\"\n\
                 path = {fifo:?}\nretry_secs = 1\n",
                free_port()
            ),
        )
        .unwrap();
        let log = dir.path().join("qeaasd.log");
        let daemon = Proc(
            Command::new(bin("qeaasd"))
                .arg("-c")
                .arg(&cfg)
                .args(["run", "--allow-root-worker"])
                .env("QEAAS_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start qeaasd"),
        );
        let d = Daemon {
            daemon: Some(daemon),
            sim,
            socket,
            log,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(20), || d.try_stats().is_some()),
            "qeaasd did not come up; log:\n{}",
            d.log_text()
        );
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_stats(&self) -> Option<u64> {
        Conn::connect(&self.socket, 1000).ok()?.my_stats().ok()
    }

    /// Bytes the daemon served to this uid (protocol op MY_STATS).
    pub fn stats(&self) -> u64 {
        self.try_stats().expect("MY_STATS")
    }

    /// Stops qeaasd (the socket file may stay behind; nothing listens on it).
    pub fn stop(&mut self) {
        self.daemon.take();
    }

    /// An OpenSSL configuration in this daemon's directory: the default provider, the QEAAS
    /// provider with `provider_extra` lines in its section, and `[random]` lines `random`.
    pub fn openssl_conf(&self, name: &str, provider_extra: &str, random: &str) -> PathBuf {
        write_conf(
            &self.dir.path().join(name),
            // The daemon runs as the test's user: trust it even when that is not root.
            &format!(
                "socket = {}\ndaemon_user = {}\n{provider_extra}",
                self.socket.display(),
                rustix::process::geteuid().as_raw()
            ),
            random,
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.daemon.take();
    }
}

/// `random` comes before `providers`: see examples/openssl-random-provider.cnf.
pub fn write_conf(path: &Path, provider_lines: &str, random: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "openssl_conf = openssl_init\n\n[openssl_init]\nrandom = random_sect\n\
             providers = provider_sect\n\n[provider_sect]\ndefault = default_sect\nqeaas = qeaas_sect\n\n\
             [default_sect]\nactivate = 1\n\n[qeaas_sect]\nmodule = {}\nactivate = 1\n{provider_lines}\n\n\
             [random_sect]\n{random}\n",
            module().display()
        ),
    )
    .unwrap();
    path.to_path_buf()
}

pub fn is_hex(s: &str, bytes: usize) -> bool {
    s.len() == 2 * bytes && s.bytes().all(|b| b.is_ascii_hexdigit())
}
pub mod suite;
