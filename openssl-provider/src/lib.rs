//! `qeaas-openssl-provider`: an OpenSSL 3 provider whose one RAND algorithm, `QEAAS`, draws from
//! qeaasd's local socket. See README.md for configuration and the guarantees.
//!
//! Layout: [`source`] speaks the socket protocol and owns the batch buffer; this module holds the
//! provider and context logic in safe Rust; `ffi` is the only module with `unsafe`: the C ABI
//! structs, the entry points (each behind `catch_unwind`) and the OSSL_PARAM helpers. The library
//! exports `OSSL_provider_init` and nothing else.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod ffi;
#[allow(unsafe_code)]
pub mod fork;
pub mod source;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use source::{Error, Origin, Settings, Source};

/// The RAND algorithm's name, as used in `[random] seed = QEAAS` or `random = QEAAS`. Deliberately
/// not CTR-DRBG or SEED-SRC: with an alias, whichever provider loads first would win.
pub const ALGORITHM: &str = "QEAAS";
/// Security strength claimed, in bits: the daemon serves full-entropy bytes.
pub const STRENGTH: u32 = 256;
/// `max_request` reported to OpenSSL; longer requests are split by OpenSSL, shorter ones by the
/// source into GETs of at most `batch` bytes.
pub const MAX_REQUEST: usize = 1 << 16;

/// `EVP_RAND_STATE_*` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum State {
    /// Not instantiated.
    Uninitialised = 0,
    /// Instantiated: generate may be called.
    Ready = 1,
}

type MakeSource = Box<dyn Fn() -> Mutex<Source> + Send + Sync>;

/// One loaded instance of the provider: the settings and the one source every context shares, so
/// a process holds one connection and one buffer however many DRBGs OpenSSL creates. Each fork
/// generation gets a source of its own: a child never uses, nor waits for the lock of, the
/// source its parent had (a thread of the parent may have held that lock at `fork()`).
#[derive(Debug)]
pub struct Provider {
    settings: Settings,
    source: fork::PerFork<Mutex<Source>, MakeSource>,
}

impl Provider {
    /// A provider with the given settings (nothing is connected yet).
    pub fn new(settings: Settings) -> Self {
        fork::register();
        let s = settings.clone();
        let make: MakeSource = Box::new(move || Mutex::new(Source::new(s.clone())));
        Provider {
            settings,
            source: fork::PerFork::new(make),
        }
    }

    fn source(&self) -> std::sync::MutexGuard<'_, Source> {
        // A panic while holding the lock is caught at the FFI boundary; the source stays
        // consistent (every path wipes what it hands out), so keep using it.
        self.source.get().lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills `out` with daemon bytes (or fails with `out` zeroed). With `fresh` (prediction
    /// resistance) the buffer is bypassed.
    pub fn fill(&self, out: &mut [u8], fresh: bool) -> Result<Origin, Error> {
        self.source().fill(out, fresh)
    }

    /// Wipes the buffered bytes, so the next output is fetched after this call (reseed).
    pub fn drop_buffer(&self) {
        self.source().discard();
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.settings.clone()
    }
}

/// Why a context call was refused, with the text and the provider's reason code.
#[derive(Debug)]
pub struct Refused {
    /// Reason code (see `ffi::REASONS`).
    pub reason: u32,
    /// Text for OpenSSL's error queue.
    pub text: String,
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused {
            reason: e.reason(),
            text: e.to_string(),
        }
    }
}

fn unsupported(text: String) -> Refused {
    Refused { reason: 7, text }
}

/// One RAND context (a "DRBG" in OpenSSL's words; here a view of the shared source).
#[derive(Debug)]
pub struct Rand {
    prov: Arc<Provider>,
    state: AtomicI32,
}

impl Rand {
    /// A new, uninstantiated context. A parent given by OpenSSL is accepted and not used: output
    /// comes from the daemon, not from the parent's seed.
    pub fn new(prov: Arc<Provider>) -> Self {
        Rand {
            prov,
            state: AtomicI32::new(State::Uninitialised as i32),
        }
    }

    /// Current `EVP_RAND_STATE_*`.
    pub fn state(&self) -> i32 {
        self.state.load(Ordering::Relaxed)
    }

    fn check_strength(strength: u32) -> Result<(), Refused> {
        if strength > STRENGTH {
            return Err(unsupported(format!(
                "qeaas: strength {strength} requested, at most {STRENGTH} offered"
            )));
        }
        Ok(())
    }

    /// Instantiate. The personalisation string is accepted and ignored (see README: output is the
    /// daemon's full-entropy bytes, never altered on this side).
    pub fn instantiate(&self, strength: u32) -> Result<(), Refused> {
        Self::check_strength(strength)?;
        self.state.store(State::Ready as i32, Ordering::Relaxed);
        Ok(())
    }

    /// Uninstantiate.
    pub fn uninstantiate(&self) {
        self.state
            .store(State::Uninitialised as i32, Ordering::Relaxed);
    }

    /// Generate: exactly `out.len()` daemon bytes, or an error with `out` zeroed. Additional
    /// input is accepted by the caller and ignored.
    pub fn generate(
        &self,
        out: &mut [u8],
        strength: u32,
        prediction_resistance: bool,
    ) -> Result<(), Refused> {
        Self::check_strength(strength)?;
        if self.state() != State::Ready as i32 {
            return Err(unsupported("qeaas: generate before instantiate".into()));
        }
        self.prov.fill(out, prediction_resistance)?;
        Ok(())
    }

    /// Reseed: wipes the buffered bytes so that everything generated after it was fetched from
    /// the daemon after it. Entropy and additional input are accepted and ignored.
    pub fn reseed(&self) {
        self.prov.drop_buffer();
    }

    /// Seed source role: fills a fresh buffer of [`seed_len`] bytes.
    pub fn get_seed(
        &self,
        entropy_bits: i32,
        min_len: usize,
        max_len: usize,
        prediction_resistance: bool,
    ) -> Result<Box<[u8]>, Refused> {
        let n = seed_len(entropy_bits, min_len, max_len).ok_or_else(|| {
            unsupported(format!(
                "qeaas: cannot serve a seed of {entropy_bits} bits in {min_len}..={max_len} bytes"
            ))
        })?;
        let mut b = vec![0u8; n].into_boxed_slice();
        self.prov.fill(&mut b, prediction_resistance)?;
        Ok(b)
    }
}

/// Seed length for `entropy_bits` of entropy at full entropy per byte: `max(ceil(bits / 8),
/// min_len)`, which must not exceed `max_len`; `None` for a negative or unservable request.
pub fn seed_len(entropy_bits: i32, min_len: usize, max_len: usize) -> Option<usize> {
    // Any amount is servable: the bytes are full entropy. (OpenSSL 3.5's CTR-DRBG asks for 384
    // bits at instantiation, its nonce folded into the entropy input.)
    let bits = usize::try_from(entropy_bits).ok()?;
    let n = bits.div_ceil(8).max(min_len).max(1);
    (n <= max_len).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lengths() {
        assert_eq!(seed_len(256, 48, 1 << 20), Some(48));
        assert_eq!(seed_len(256, 0, 1 << 20), Some(32));
        assert_eq!(seed_len(255, 16, 64), Some(32));
        assert_eq!(seed_len(256, 0, 16), None);
        assert_eq!(seed_len(384, 0, 1024), Some(48));
        assert_eq!(seed_len(-1, 0, 1024), None);
    }

    #[test]
    fn strength_and_state_are_checked() {
        let p = Arc::new(Provider::new(
            Settings::from_values(Some("/nonexistent/q.sock"), None, None, None, None, None)
                .unwrap(),
        ));
        let r = Rand::new(p);
        let mut b = [0u8; 4];
        assert!(r.generate(&mut b, 0, false).is_err());
        assert!(r.instantiate(512).is_err());
        r.instantiate(256).unwrap();
        assert_eq!(r.state(), State::Ready as i32);
        let e = r.generate(&mut b, 128, false).unwrap_err();
        assert_eq!(e.reason, 1);
        assert!(e
            .text
            .starts_with("qeaasd unreachable at /nonexistent/q.sock"));
    }
}
