//! The Quantis simulator: a ChaCha20 stream standing in for quantum noise, with fault modes, served
//! on a named pipe and/or a pseudo-terminal so that the daemon's real file and serial code paths
//! run. The daemon classifies both as simulated (see [`crate::source`]): nothing from here is ever
//! credited to the kernel.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tracing::{info, warn};

/// What goes wrong, and how.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Healthy output.
    None,
    /// Every byte is this value.
    Stuck(u8),
    /// Every bit is 1 with this probability.
    Bias(f64),
    /// This pattern, repeated.
    Pattern(Vec<u8>),
    /// Output ends (EOF on the pipe, hang-up on the pty): an unplugged device.
    Stop,
    /// The rate drops to this many bytes per second.
    Slow(u64),
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let need = |what: &str| {
            format!(
                "fault {name} needs {what}, e.g. {name}:{}",
                match name {
                    "stuck" => "0x00",
                    "bias" => "0.75",
                    "pattern" => "deadbeef",
                    _ => "1000",
                }
            )
        };
        Ok(match name {
            "none" => Fault::None,
            "stop" => Fault::Stop,
            "stuck" => {
                let a = arg.trim_start_matches("0x");
                Fault::Stuck(
                    u8::from_str_radix(a, if arg.starts_with("0x") { 16 } else { 10 })
                        .map_err(|_| need("a byte value"))?,
                )
            }
            "bias" => {
                let p: f64 = arg.parse().map_err(|_| need("a probability of one bits"))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(need("a probability in 0..=1"));
                }
                Fault::Bias(p)
            }
            "pattern" => {
                if arg.is_empty() || arg.len() % 2 != 0 {
                    return Err(need("hex bytes"));
                }
                let bytes = (0..arg.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&arg[i..i + 2], 16))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| need("hex bytes"))?;
                Fault::Pattern(bytes)
            }
            "slow" => Fault::Slow(arg.parse().map_err(|_| need("bytes per second"))?),
            _ => {
                return Err(format!(
                    "unknown fault {name:?}: none, stuck:V, bias:P, pattern:HEX, stop, slow:RATE"
                ))
            }
        })
    }
}

/// The sans-IO generator: healthy bytes until `fault_after`, then the fault.
#[derive(Debug)]
pub struct Generator {
    rng: ChaCha20Rng,
    fault: Fault,
    fault_after: u64,
    produced: u64,
    pattern_pos: usize,
}

impl Generator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64, fault: Fault, fault_after: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            fault,
            fault_after,
            produced: 0,
            pattern_pos: 0,
        }
    }

    /// Bytes produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// True once the fault is in effect.
    pub fn faulty(&self) -> bool {
        self.fault != Fault::None && self.produced >= self.fault_after
    }

    /// Clears the fault (a replugged, working device).
    pub fn repair(&mut self) {
        self.fault = Fault::None;
    }

    /// The rate the generator wants now, given a nominal rate.
    pub fn rate(&self, nominal: u64) -> u64 {
        match self.fault {
            Fault::Slow(r) if self.faulty() => r.max(1),
            _ => nominal,
        }
    }

    /// Fills `buf`; returns the bytes written, 0 when the device has stopped.
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        // Healthy part first, up to the fault point.
        let healthy = if self.fault == Fault::None {
            buf.len() as u64
        } else {
            self.fault_after
                .saturating_sub(self.produced)
                .min(buf.len() as u64)
        };
        let h = healthy as usize;
        self.rng.fill_bytes(&mut buf[..h]);
        let rest = &mut buf[h..];
        let n = match &self.fault {
            _ if rest.is_empty() => 0,
            Fault::None | Fault::Slow(_) => {
                self.rng.fill_bytes(rest);
                rest.len()
            }
            Fault::Stuck(v) => {
                rest.fill(*v);
                rest.len()
            }
            Fault::Bias(p) => {
                let threshold = (p * 4294967296.0).min(4294967295.0) as u32;
                for b in rest.iter_mut() {
                    let mut v = 0u8;
                    for i in 0..8 {
                        if self.rng.next_u32() < threshold {
                            v |= 1 << i;
                        }
                    }
                    *b = v;
                }
                rest.len()
            }
            Fault::Pattern(p) => {
                for b in rest.iter_mut() {
                    *b = p[self.pattern_pos % p.len()];
                    self.pattern_pos += 1;
                }
                rest.len()
            }
            Fault::Stop => 0,
        };
        let total = h + n;
        self.produced += total as u64;
        total
    }
}

/// Serving options.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Bytes per second (healthy).
    pub rate: u64,
    /// Seconds after a stop before the device comes back (a new pipe or pty), if at all.
    pub replug_after: Option<Duration>,
    /// Stop after this many bytes in total (then exit), if set.
    pub limit: Option<u64>,
    /// File mode of the pipe or the pty's slave (as udev would give a device node).
    pub mode: u32,
    /// Group of the pipe or the pty's slave, if set (as udev gives a noise source the daemon's
    /// group).
    pub group: Option<u32>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            rate: 4_000_000,
            replug_after: None,
            limit: None,
            mode: 0o600,
            group: None,
        }
    }
}

/// Gives the node at `path` the mode and group of `o` (after creation, so the umask does not
/// apply).
fn set_access(path: &Path, o: &ServeOptions) -> io::Result<()> {
    if let Some(g) = o.group {
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            None,
            Some(rustix::fs::Gid::from_raw(g)),
            rustix::fs::AtFlags::empty(),
        )?;
    }
    rustix::fs::chmodat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(o.mode),
        rustix::fs::AtFlags::empty(),
    )?;
    Ok(())
}

/// Paces writes to a byte rate.
struct Pacer {
    start: Instant,
    sent: u64,
    rate: u64,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Self {
            start: Instant::now(),
            sent: 0,
            rate,
        }
    }
    fn set_rate(&mut self, rate: u64) {
        if rate != self.rate {
            *self = Pacer::new(rate);
        }
    }
    fn chunk(&self) -> usize {
        (self.rate / 20).clamp(1, 4096) as usize
    }
    fn pace(&mut self, n: usize) {
        self.sent += n as u64;
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        let el = self.start.elapsed();
        if due > el {
            std::thread::sleep(due - el);
        }
    }
}

/// Feeds one output (pipe or pty master) until the generator stops or the limit is reached.
/// Returns `Ok(true)` if the device stopped (fault), `Ok(false)` if the reader went away.
fn pump(out: &mut impl Write, g: &mut Generator, o: &ServeOptions) -> io::Result<bool> {
    let mut pacer = Pacer::new(o.rate);
    let mut buf = vec![0u8; 4096];
    loop {
        pacer.set_rate(g.rate(o.rate));
        let mut want = pacer.chunk();
        if let Some(l) = o.limit {
            want = want.min(l.saturating_sub(g.produced()) as usize);
            if want == 0 {
                return Ok(true);
            }
        }
        let n = g.fill(&mut buf[..want]);
        if n == 0 {
            return Ok(true);
        }
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e)
                if e.kind() == io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(libc::EIO) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
        pacer.pace(n);
    }
}

/// After the device stopped: waits and repairs it if it is to come back (true), else false.
fn replug(g: &mut Generator, o: &ServeOptions) -> bool {
    match o.replug_after {
        Some(d) => {
            warn!(
                after = g.produced(),
                "device stopped (unplugged); replugging in {d:?}"
            );
            std::thread::sleep(d);
            g.repair();
            true
        }
        None => {
            warn!(after = g.produced(), "device stopped (unplugged)");
            false
        }
    }
}

fn make_fifo(path: &Path, o: &ServeOptions) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )?;
    set_access(path, o)
}

/// Serves a named pipe at `path`: recreated on every replug.
pub fn serve_fifo(path: &Path, mut g: Generator, o: &ServeOptions) -> io::Result<()> {
    loop {
        make_fifo(path, o)?;
        info!(path = %path.display(), "simulated Quantis on a named pipe; waiting for a reader");
        loop {
            // Blocks until a reader opens the pipe.
            let mut f = File::options().write(true).open(path)?;
            info!("reader attached");
            match pump(&mut f, &mut g, o)? {
                true => break,
                false => info!("reader went away; waiting for the next one"),
            }
        }
        let _ = std::fs::remove_file(path);
        if o.limit.is_some_and(|l| g.produced() >= l) {
            return Ok(());
        }
        if !replug(&mut g, o) {
            return Ok(());
        }
    }
}

/// A pseudo-terminal pair with the slave in raw mode.
fn open_pty() -> io::Result<(OwnedFd, OwnedFd, PathBuf)> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave_path = PathBuf::from(name.to_string_lossy().into_owned());
    let slave: OwnedFd = File::options()
        .read(true)
        .write(true)
        .open(&slave_path)?
        .into();
    let mut t = rustix::termios::tcgetattr(&slave)?;
    t.make_raw();
    rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t)?;
    Ok((master, slave, slave_path))
}

/// Serves a pseudo-terminal, with `link` as a stable symlink to its slave side (like
/// `/dev/ttyACM0` for a TrueRNG). On a stop the pty is closed (the reader sees a hang-up) and a new
/// one is made on replug.
pub fn serve_pty(link: &Path, mut g: Generator, o: &ServeOptions) -> io::Result<()> {
    loop {
        let (master, slave, slave_path) = open_pty()?;
        set_access(&slave_path, o)?;
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&slave_path, link)?;
        info!(link = %link.display(), pty = %slave_path.display(), "simulated TRNG on a pseudo-terminal");
        let mut out = File::from(master);
        // Keep our own slave open so that writes do not fail before a reader opens it; drain
        // nothing from it (the terminal buffer applies back-pressure).
        let keep = slave;
        let stopped = pump(&mut out, &mut g, o)?;
        drop(keep);
        let _ = out.as_fd();
        drop(out);
        let _ = std::fs::remove_file(link);
        if !stopped || o.limit.is_some_and(|l| g.produced() >= l) {
            return Ok(());
        }
        if !replug(&mut g, o) {
            return Ok(());
        }
    }
}

/// Writes `limit` bytes to `out` as fast as possible (for files and benchmarks).
pub fn write_all(out: &mut impl Write, mut g: Generator, limit: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    while g.produced() < limit {
        let want = ((limit - g.produced()) as usize).min(buf.len());
        let n = g.fill(&mut buf[..want]);
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    Ok(g.produced())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert_eq!("stuck:0x00".parse::<Fault>(), Ok(Fault::Stuck(0)));
        assert_eq!("stuck:7".parse::<Fault>(), Ok(Fault::Stuck(7)));
        assert_eq!("bias:0.75".parse::<Fault>(), Ok(Fault::Bias(0.75)));
        assert_eq!(
            "pattern:0102".parse::<Fault>(),
            Ok(Fault::Pattern(vec![1, 2]))
        );
        assert_eq!("slow:10".parse::<Fault>(), Ok(Fault::Slow(10)));
        assert!("bias:2".parse::<Fault>().is_err());
        assert!("pattern:012".parse::<Fault>().is_err());
        assert!("melt".parse::<Fault>().is_err());
    }

    #[test]
    fn fault_starts_exactly_at_offset() {
        let mut g = Generator::new(1, Fault::Stuck(0xaa), 100);
        let mut buf = [0u8; 150];
        assert_eq!(g.fill(&mut buf), 150);
        assert!(buf[100..].iter().all(|&b| b == 0xaa));
        assert!(buf[..100].iter().filter(|&&b| b == 0xaa).count() < 5);
    }

    #[test]
    fn stop_ends_output() {
        let mut g = Generator::new(1, Fault::Stop, 10);
        let mut buf = [0u8; 64];
        assert_eq!(g.fill(&mut buf), 10);
        assert_eq!(g.fill(&mut buf), 0);
        g.repair();
        assert_eq!(g.fill(&mut buf), 64);
    }

    #[test]
    fn bias_is_biased() {
        let mut g = Generator::new(3, Fault::Bias(0.75), 0);
        let mut buf = vec![0u8; 10_000];
        g.fill(&mut buf);
        let ones: u32 = buf.iter().map(|b| b.count_ones()).sum();
        let frac = f64::from(ones) / 80_000.0;
        assert!((0.73..0.77).contains(&frac), "{frac}");
    }
}
