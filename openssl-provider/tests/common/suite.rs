//! The provider suite, run against each OpenSSL (tests/openssl30.rs, tests/openssl35.rs).

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use qeaas_provider::source::{Error, Refusal};

pub const GENERATOR: &str = "random = QEAAS";
pub const SEED: &str = "seed = QEAAS";
pub const RANDOM_PROVIDER: &str = "random_provider = qeaas";

/// Runs `openssl rand -hex n` and returns the hex, asserting success.
fn rand_hex(o: &Ossl, conf: &Path, n: usize) -> String {
    let out = o.run(conf, &["rand", "-hex", &n.to_string()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "openssl rand failed: {stderr}");
    let hex = stdout.trim().to_string();
    assert!(is_hex(&hex, n), "not {n} bytes of hex: {hex:?}");
    hex
}

pub fn list_providers(o: &Ossl) {
    let d = Daemon::start(&[]);
    let conf = d.openssl_conf("gen.cnf", "", GENERATOR);
    let out = o.run(&conf, &["list", "-providers", "-verbose"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    println!("{stdout}");
    let qeaas = stdout
        .split("\n  qeaas\n")
        .nth(1)
        .expect("qeaas provider listed");
    assert!(
        qeaas.contains("name: qeaas: qeaasd entropy socket"),
        "{stdout}"
    );
    assert!(qeaas.contains("status: active"), "{stdout}");
}

pub fn list_random_generators(o: &Ossl) {
    let d = Daemon::start(&[]);
    let conf = d.openssl_conf("gen.cnf", "", GENERATOR);
    let out = o.run(&conf, &["list", "-random-generators"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    println!("{stdout}");
    assert!(
        stdout.lines().any(|l| l.trim() == "QEAAS @ qeaas"),
        "{stdout}"
    );
}

/// `openssl rand` in `role`; the daemon's counter for this uid must rise by at least
/// `min_rise` bytes. Returns the rise.
fn rand_through(o: &Ossl, role: &str, n: usize, min_rise: u64) -> u64 {
    let d = Daemon::start(&[]);
    let conf = d.openssl_conf("role.cnf", "", role);
    let before = d.stats();
    let hex = rand_hex(o, &conf, n);
    let rise = d.stats() - before;
    let head = &hex[..hex.len().min(32)];
    println!("{role}: openssl rand -hex {n} = {head}...; MY_STATS +{rise}");
    assert!(
        rise >= min_rise,
        "{role}: pool served {rise} bytes for {n}: not drawn from qeaasd"
    );
    rise
}

pub fn rand_generator_role(o: &Ossl) {
    // Every output byte is a daemon byte (and the batch makes the rise 4096).
    rand_through(o, GENERATOR, 64, 64);
    // Longer than a batch: straight GETs.
    rand_through(o, GENERATOR, 10_000, 10_000);
}

pub fn rand_seed_role(o: &Ossl) {
    // One seed of at least 256 bits, fetched as one batch.
    rand_through(o, SEED, 64, 32);
}

pub fn random_provider(o: &Ossl) {
    rand_through(o, RANDOM_PROVIDER, 64, 64);
    rand_through(o, RANDOM_PROVIDER, 10_000, 10_000);
}

/// With qeaasd stopped, `openssl rand` fails in every role with a clear error.
pub fn stopped_daemon_fails(o: &Ossl, roles: &[&str]) {
    let mut d = Daemon::start(&[]);
    d.stop();
    for role in roles {
        let conf = d.openssl_conf("down.cnf", "", role);
        let out = o.run(&conf, &["rand", "-hex", "32"]);
        let (stdout, stderr) = text(&out);
        println!("{role}: exit {:?}\n{stderr}", out.status.code());
        assert!(
            !out.status.success(),
            "{role}: succeeded without qeaasd: {stdout}"
        );
        assert!(stdout.trim().is_empty(), "{role}: printed {stdout}");
        assert!(
            stderr.contains(&format!("qeaasd unreachable at {}", d.socket.display())),
            "{role}: {stderr}"
        );
    }
}

/// A source stuck at one value fails its health tests: the daemon answers SOURCE_FAILED and
/// `openssl rand` fails with that text.
pub fn failed_source_fails(o: &Ossl, roles: &[&str]) {
    let d = Daemon::start(&["--fault", "stuck:0"]);
    let failed = wait_until(Duration::from_secs(30), || {
        let mut b = [0u8; 16];
        matches!(
            Conn::connect(&d.socket, 100).and_then(|mut c| c.get(&mut b, 100)),
            Err(Error::Refused(Refusal::SourceFailed))
        )
    });
    assert!(
        failed,
        "daemon never reported SOURCE_FAILED:\n{}",
        d.log_text()
    );
    for role in roles {
        let conf = d.openssl_conf("failed.cnf", "", role);
        let out = o.run(&conf, &["rand", "-hex", "32"]);
        let (_, stderr) = text(&out);
        println!("{role}: exit {:?}\n{stderr}", out.status.code());
        assert!(
            !out.status.success(),
            "{role}: succeeded on a failed source"
        );
        assert!(
            stderr.contains("qeaasd: entropy source failed"),
            "{role}: {stderr}"
        );
    }
}

/// `fallback = os` serves from getrandom(2) when qeaasd is down, and says so.
pub fn fallback_os(o: &Ossl) {
    let mut d = Daemon::start(&[]);
    d.stop();
    let conf = d.openssl_conf("fallback.cnf", "fallback = os", GENERATOR);
    let out = o.run(&conf, &["rand", "-hex", "32"]);
    let (stdout, stderr) = text(&out);
    println!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(is_hex(stdout.trim(), 32));
    assert!(
        stderr.contains("qeaasd unreachable") && stderr.contains("using getrandom(2)"),
        "{stderr}"
    );
    // A misspelt fallback value is a configuration error, not a silent default.
    let conf = d.openssl_conf("bad.cnf", "fallback = yes", GENERATOR);
    let out = o.run(&conf, &["rand", "-hex", "32"]);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    println!("{stderr}");
    assert!(stderr.contains("invalid fallback"), "{stderr}");
}

/// A process draws, forks; child and parent draw again. No two draws may be equal, and the child
/// must have fetched its own bytes (the parent's buffer is discarded in the child).
pub fn fork(o: &Ossl, role: &str, min_rise: u64) {
    let drv = o.driver(&manifest_dir().join("tests/c/fork.c"));
    let d = Daemon::start(&[]);
    let conf = d.openssl_conf("fork.cnf", "", role);
    let before = d.stats();
    let out = std::process::Command::new(&drv)
        .arg("64")
        .env("OPENSSL_CONF", &conf)
        .output()
        .unwrap();
    let rise = d.stats() - before;
    let (stdout, stderr) = text(&out);
    println!("{role}:\n{stdout}MY_STATS +{rise}");
    assert!(out.status.success(), "{stderr}");
    let draws: Vec<(&str, &str)> = stdout
        .lines()
        .map(|l| l.split_once(' ').expect("tag hex"))
        .collect();
    let tags: Vec<&str> = draws.iter().map(|d| d.0).collect();
    assert_eq!(tags, ["parent-before", "child", "parent-after"]);
    assert!(draws.iter().all(|d| is_hex(d.1, 64)));
    let distinct: HashSet<&str> = draws.iter().map(|d| d.1).collect();
    assert_eq!(distinct.len(), 3, "a draw repeated across fork: {stdout}");
    assert!(rise >= min_rise, "{role}: pool served {rise} bytes");
}

/// scripts/openssl-check.sh passes on a working configuration and fails on a misspelt seed name,
/// with which `openssl rand` itself still exits 0.
pub fn check_script(o: &Ossl) {
    let d = Daemon::start(&[]);
    let script = manifest_dir().join("../scripts/openssl-check.sh");
    let check = |conf: &Path| {
        std::process::Command::new("bash")
            .arg(&script)
            .arg("-c")
            .arg(conf)
            .arg("-o")
            .arg(&o.bin)
            .env("QEAAS_BIN", bin("qeaas"))
            .output()
            .unwrap()
    };
    for role in [GENERATOR, SEED] {
        let out = check(&d.openssl_conf("ok.cnf", "", role));
        let (stdout, stderr) = text(&out);
        println!("{role}: {stdout}{stderr}");
        assert!(out.status.success(), "{role}: {stdout}{stderr}");
        assert!(stdout.contains("openssl-check: ok"));
    }
    let typo = d.openssl_conf("typo.cnf", "", "seed = QEASS");
    let plain = o.run(&typo, &["rand", "-hex", "32"]);
    assert!(
        plain.status.success(),
        "OpenSSL no longer ignores a bad seed name"
    );
    let out = check(&typo);
    let (stdout, stderr) = text(&out);
    println!("typo: {stdout}{stderr}");
    assert!(
        !out.status.success(),
        "the check passed on a misspelt seed name"
    );
    assert!(
        stderr.contains("OpenSSL is not drawing from the pool"),
        "{stderr}"
    );
}
