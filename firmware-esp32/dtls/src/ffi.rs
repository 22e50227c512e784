//! The crate's only `unsafe`: a wolfSSL DTLS 1.3 client over memory I/O (through the raw
//! declarations of `qeaas-wolfssl-sys`), and on the device the C hooks wolfSSL's device build
//! expects from the firmware: its DRBG seed, its clock and `malloc`.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_long, c_uchar, c_uint, c_void, CStr};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use qeaas_wolfssl_sys::raw as sys;

use crate::{Auth, DtlsConfig, DtlsError, KeyExchange};

// Declared here rather than in `qeaas-wolfssl-sys::raw`: only the device client uses them.
extern "C" {
    /// Makes the handshake fail unless the peer's certificate names `dn` (copied).
    fn wolfSSL_check_domain_name(ssl: *mut sys::WOLFSSL, dn: *const c_char) -> c_int;
    fn wolfSSL_UseSNI(ssl: *mut sys::WOLFSSL, ty: c_uchar, data: *const c_void, size: u16)
        -> c_int;
    fn wolfSSL_CTX_use_certificate_buffer(
        ctx: *mut sys::WOLFSSL_CTX,
        data: *const c_uchar,
        sz: c_long,
        format: c_int,
    ) -> c_int;
    fn wolfSSL_CTX_use_PrivateKey_buffer(
        ctx: *mut sys::WOLFSSL_CTX,
        data: *const c_uchar,
        sz: c_long,
        format: c_int,
    ) -> c_int;
    /// The session's `WOLFSSL_SESSION` with one more reference (NULL if none).
    fn wolfSSL_get1_session(ssl: *mut sys::WOLFSSL) -> *mut WolfSession;
    /// Offers `session`'s ticket in the next handshake; fails if it has expired. A heap
    /// session is not copied but shared (one more reference), and the new session writes into
    /// it (its resumption secret, a new ticket): hence the private copies below.
    fn wolfSSL_set_session(ssl: *mut sys::WOLFSSL, session: *mut WolfSession) -> c_int;
    /// Drops one reference; the last one zeroes the resumption secret and frees it.
    fn wolfSSL_SESSION_free(session: *mut WolfSession);
    /// A deep copy (new object, one reference), or NULL.
    fn wolfSSL_SESSION_dup(session: *mut WolfSession) -> *mut WolfSession;
    fn wolfSSL_session_reused(ssl: *mut sys::WOLFSSL) -> c_int;
    fn wolfSSL_CTX_set_session_cache_mode(ctx: *mut sys::WOLFSSL_CTX, mode: c_long) -> c_long;
    /// The context the verify callback gets (as the store's user context).
    fn wolfSSL_SetCertCbCtx(ssl: *mut sys::WOLFSSL, ctx: *mut c_void);
    /// `qeaas-wolfssl-sys/c/verify_store.c`: in the verify callback, the peer's leaf certificate
    /// (1), or 0 for a certificate of its chain; `*user` is the context above.
    fn qeaas_wolfssl_store_leaf(
        store: *mut c_void,
        der: *mut *const c_uchar,
        len: *mut c_uint,
        user: *mut *mut c_void,
    ) -> c_int;
    /// The ticket's length in `*len` (with a NULL buffer).
    fn wolfSSL_get_SessionTicket(
        ssl: *mut sys::WOLFSSL,
        buf: *mut c_uchar,
        len: *mut c_uint,
    ) -> c_int;
    fn wolfSSL_CTX_set_cipher_list(ctx: *mut sys::WOLFSSL_CTX, list: *const c_char) -> c_int;
}

/// wolfSSL's `WOLFSSL_SESSION`, opaque.
#[repr(C)]
struct WolfSession {
    _opaque: [u8; 0],
}

/// A DTLS 1.3 session ticket with its resumption secret, from a session whose server was
/// authenticated (a ticket only ever arrives after the handshake): a private copy
/// (`wolfSSL_SESSION_dup`) that no session refers to, so a later session cannot change it.
/// Freed on drop; wolfSSL zeroes the secret.
pub(crate) struct Ticket(NonNull<WolfSession>);

// SAFETY: the ticket is a heap object of its own (a copy) that no session refers to; sessions
// get copies of it in turn. Single-threaded wolfSSL, and `Ticket` is not `Sync`.
unsafe impl Send for Ticket {}

impl Drop for Ticket {
    fn drop(&mut self) {
        // SAFETY: from wolfSSL_get1_session, which took the reference released here.
        unsafe { wolfSSL_SESSION_free(self.0.as_ptr()) }
    }
}

impl core::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ticket")
    }
}

/// The only cipher suite a device with a certificate configuration offers. In software
/// ChaCha20-Poly1305 is constant-time without tables, while wolfSSL's C AES on RISC-V reads every
/// cache line of its tables for each lookup (`WOLFSSL_AES_TOUCH_LINES`): with the AES-256-GCM the
/// server picks from wolfSSL's default list, that was more than half of the ML-KEM-512 + ML-DSA-44
/// handshake's instructions. ChaCha20 alone, because the server
/// prefers its own order (AES-128-GCM first). PSK sessions keep wolfSSL's default list: the
/// server's PSK is bound to AES-128-GCM-SHA256.
const CERT_CIPHER_LIST: &CStr = c"TLS13-CHACHA20-POLY1305-SHA256";
/// `WOLFSSL_SNI_HOST_NAME`.
const SNI_HOST_NAME: c_uchar = 0;
/// `WOLFSSL_SESS_CACHE_OFF`.
const SESS_CACHE_OFF: c_long = 0x0000;

/// Datagrams queued per direction at most: a flood is dropped, never buffered.
const QUEUE_MAX: usize = 32;
/// Largest plaintext record read at once (a CoAP datagram with a 1 KiB block fits).
const RECORD_MAX: usize = 1280;

/// Fills its argument with seed material; false when it cannot (wolfSSL then fails to seed).
pub type SeedSource<'a> = &'a mut dyn FnMut(&mut [u8]) -> bool;

/// Points at a `SeedSource` on the stack of `Session::new` while it runs, null otherwise:
/// wolfSSL seeds its DRBG only when a session is created (reseeding is due after 2^20
/// generate calls, far beyond one session), so the seed never outlives that call.
static SEED: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
// Load/store only: rv32imc has no atomic read-modify-write, and one core writes these.
static NOW_MS: AtomicU32 = AtomicU32::new(0);
static NOW_S: AtomicU32 = AtomicU32::new(0);

/// The clock wolfSSL reads on the device (DTLS timers, ticket ages): milliseconds since boot.
pub fn set_clock(ms_since_boot: u64) {
    NOW_MS.store(ms_since_boot as u32, Ordering::Relaxed);
    NOW_S.store((ms_since_boot / 1000) as u32, Ordering::Relaxed);
}

/// Per-session I/O state the callbacks see. wolfSSL holds its address, so it lives behind a
/// raw pointer from `Box::into_raw` (see [`Session`]), never behind a `Box`.
struct Io {
    inbox: VecDeque<Vec<u8>>,
    outbox: VecDeque<Vec<u8>>,
    psk: Option<(Vec<u8>, Vec<u8>)>,
    /// Certificates whose notBefore is earlier are refused (Unix seconds; 0: none).
    floor: u64,
    /// The notBefore of the server certificate this session accepted.
    peer_not_before: Option<u64>,
}

pub(crate) struct Session {
    ctx: NonNull<sys::WOLFSSL_CTX>,
    ssl: NonNull<sys::WOLFSSL>,
    /// From `Box::into_raw`, freed in `Drop` after the `WOLFSSL`. Not a `Box`: wolfSSL keeps
    /// this pointer and its callbacks write through it, while a `Box` asserts unique access
    /// each time it is moved or used, which would invalidate wolfSSL's copy (Stacked Borrows).
    /// Rust reaches it only through `io()`/`io_mut()`, never across a wolfSSL call.
    io: NonNull<Io>,
    /// The ticket bytes offered (`wolfSSL_set_session` with a private copy), to tell a new
    /// NewSessionTicket from the offered ticket still in the session.
    offered: Option<Vec<u8>>,
}

// SAFETY: a session owns its context, its WOLFSSL and the `Io` their callbacks use; wolfSSL
// keeps no per-thread state for them, and `&mut self` on every call serialises their use. So a
// session may move to another thread (e.g. into a firmware's critical-section static) as long
// as it is used from one at a time, which Rust's borrows already ensure. Not `Sync`.
unsafe impl Send for Session {}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("inbox", &self.io().inbox.len())
            .field("outbox", &self.io().outbox.len())
            .finish()
    }
}

fn setup(what: &'static str, code: c_int) -> DtlsError {
    DtlsError::Setup { what, code }
}

impl Session {
    fn io(&self) -> &Io {
        // SAFETY: `io` is live until Drop; wolfSSL's callbacks, the only other users of the
        // pointer, run only inside wolfSSL calls, and no reference from here is held across one.
        unsafe { self.io.as_ref() }
    }

    fn io_mut(&mut self) -> &mut Io {
        // SAFETY: as in `io`; `&mut self` makes this the only Rust reference.
        unsafe { self.io.as_mut() }
    }

    /// A session; on the device wolfSSL seeds its DRBG from `seed` (`CUSTOM_RAND_GENERATE_SEED`)
    /// during this call. The host build seeds from the OS and never calls it. With `resume`
    /// the handshake offers that ticket; one that has expired is not offered
    /// ([`Self::offered_ticket`] false), and the handshake is a full one.
    pub(crate) fn new(
        cfg: &DtlsConfig<'_>,
        seed: SeedSource<'_>,
        resume: Option<&Ticket>,
    ) -> Result<Session, DtlsError> {
        let mut seed = seed;
        SEED.store(
            &mut seed as *mut SeedSource<'_> as *mut (),
            Ordering::Release,
        );
        let r = Self::new_seeded(cfg);
        SEED.store(core::ptr::null_mut(), Ordering::Release);
        let mut s = r?;
        let offered = resume.is_some_and(|t| {
            // `wolfSSL_set_session` does not copy a heap session: it takes a reference and the
            // new session writes into it (its resumption secret at Finished, a new ticket).
            // Offer a private copy so the kept ticket is never changed by a later session.
            // SAFETY: valid ticket; the copy has one reference, released below after
            // wolfSSL_set_session took its own.
            unsafe {
                let Some(copy) = NonNull::new(wolfSSL_SESSION_dup(t.0.as_ptr())) else {
                    return false;
                };
                let ok = wolfSSL_set_session(s.ssl.as_ptr(), copy.as_ptr()) == sys::WOLFSSL_SUCCESS;
                wolfSSL_SESSION_free(copy.as_ptr());
                ok
            }
        });
        if offered {
            s.offered = s.ticket_bytes();
        }
        Ok(s)
    }

    /// True if the handshake offers a ticket from an earlier session.
    pub(crate) fn offered_ticket(&self) -> bool {
        self.offered.is_some()
    }

    fn ticket_bytes(&self) -> Option<Vec<u8>> {
        let mut len: c_uint = 0;
        // SAFETY: valid session; a NULL buffer asks for the length only.
        unsafe { wolfSSL_get_SessionTicket(self.ssl.as_ptr(), core::ptr::null_mut(), &mut len) };
        if len == 0 {
            return None;
        }
        let mut buf = alloc::vec![0u8; len as usize];
        // SAFETY: valid session; `buf` writable for `len` bytes.
        let r = unsafe { wolfSSL_get_SessionTicket(self.ssl.as_ptr(), buf.as_mut_ptr(), &mut len) };
        (r == sys::WOLFSSL_SUCCESS).then(|| {
            buf.truncate(len as usize);
            buf
        })
    }

    /// A copy of the session with the ticket the server sent in this session (after the
    /// handshake); `None` if no new ticket came (the offered one may now carry this
    /// session's resumption secret).
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        let bytes = self.ticket_bytes()?;
        if self.offered.as_ref() == Some(&bytes) {
            return None;
        }
        // SAFETY: valid session; get1 returns a new reference, released after the copy.
        unsafe {
            let s = NonNull::new(wolfSSL_get1_session(self.ssl.as_ptr()))?;
            let copy = wolfSSL_SESSION_dup(s.as_ptr());
            wolfSSL_SESSION_free(s.as_ptr());
            NonNull::new(copy).map(Ticket)
        }
    }

    /// Refuse server certificates whose notBefore is earlier than `secs` (Unix seconds), from
    /// the next certificate this session verifies on.
    pub(crate) fn set_floor(&mut self, secs: u64) {
        self.io_mut().floor = secs;
    }

    /// The notBefore of the server certificate this session verified and accepted (`None`
    /// before that, after a resumption, and in PSK mode).
    pub(crate) fn peer_not_before(&self) -> Option<u64> {
        self.io().peer_not_before
    }

    /// True when the handshake resumed with a ticket (no certificate was sent or verified).
    pub(crate) fn resumed(&self) -> bool {
        // SAFETY: valid session; read only.
        unsafe { wolfSSL_session_reused(self.ssl.as_ptr()) == 1 }
    }

    fn new_seeded(cfg: &DtlsConfig<'_>) -> Result<Session, DtlsError> {
        let group = match cfg.kex {
            KeyExchange::MlKem512 => sys::GROUP_ML_KEM_512,
            KeyExchange::P256 => sys::GROUP_SECP256R1,
        };
        let psk = match cfg.auth {
            Auth::Psk { identity, key } => Some((identity.to_vec(), key.to_vec())),
            Auth::Certificate { .. } => None,
        };
        // SAFETY: wolfSSL_Init is idempotent (reference counted); the method is a static table
        // owned by the new context, which rejects NULL.
        let ctx = unsafe {
            sys::wolfSSL_Init();
            sys::wolfSSL_CTX_new(sys::wolfDTLSv1_3_client_method())
        };
        let ctx = NonNull::new(ctx).ok_or(setup("CTX_new", 0))?;
        // From here `guard` frees the context on every early return.
        let guard = CtxGuard(ctx);
        // SAFETY: valid context; the callbacks are `extern "C"` functions for the whole program
        // that only touch the `Io` registered per session; buffers are read for their length.
        unsafe {
            sys::wolfSSL_CTX_SetIORecv(ctx.as_ptr(), io_recv);
            sys::wolfSSL_CTX_SetIOSend(ctx.as_ptr(), io_send);
            // The ticket lives in the firmware's own `Ticket`, never in wolfSSL's cache
            // (`WOLFSSL_SESS_CACHE_OFF`).
            wolfSSL_CTX_set_session_cache_mode(ctx.as_ptr(), SESS_CACHE_OFF);
            match cfg.auth {
                Auth::Certificate { ca_der, client, .. } => {
                    if let Some(c) = client {
                        let cl = c_long::try_from(c.cert_der.len())
                            .map_err(|_| setup("client certificate", 0))?;
                        let kl = c_long::try_from(c.key_der.len())
                            .map_err(|_| setup("client key", 0))?;
                        // wolfSSL copies both buffers.
                        let r = wolfSSL_CTX_use_certificate_buffer(
                            ctx.as_ptr(),
                            c.cert_der.as_ptr(),
                            cl,
                            sys::WOLFSSL_FILETYPE_ASN1,
                        );
                        if r != sys::WOLFSSL_SUCCESS {
                            return Err(setup("client certificate", r));
                        }
                        let r = wolfSSL_CTX_use_PrivateKey_buffer(
                            ctx.as_ptr(),
                            c.key_der.as_ptr(),
                            kl,
                            sys::WOLFSSL_FILETYPE_ASN1,
                        );
                        if r != sys::WOLFSSL_SUCCESS {
                            return Err(setup("client key", r));
                        }
                    }
                    let len = c_long::try_from(ca_der.len()).map_err(|_| setup("CA", 0))?;
                    let r = sys::wolfSSL_CTX_load_verify_buffer(
                        ctx.as_ptr(),
                        ca_der.as_ptr(),
                        len,
                        sys::WOLFSSL_FILETYPE_ASN1,
                    );
                    if r != sys::WOLFSSL_SUCCESS {
                        return Err(setup("CA", r));
                    }
                    sys::wolfSSL_CTX_set_verify(
                        ctx.as_ptr(),
                        sys::WOLFSSL_VERIFY_PEER | sys::WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                        verify_cb as *const c_void,
                    );
                    let r = wolfSSL_CTX_set_cipher_list(ctx.as_ptr(), CERT_CIPHER_LIST.as_ptr());
                    if r != sys::WOLFSSL_SUCCESS {
                        return Err(setup("cipher list", r));
                    }
                }
                Auth::Psk { .. } => {
                    // The PSK is the only thing that authenticates the server. A server that
                    // ignores it and sends a certificate instead (anyone who answers the
                    // device's datagrams can) must fail, not be trusted unverified: verify
                    // against no CA, and refuse whatever certificate comes.
                    sys::wolfSSL_CTX_set_verify(
                        ctx.as_ptr(),
                        sys::WOLFSSL_VERIFY_PEER,
                        refuse_any_certificate as *const c_void,
                    );
                    sys::wolfSSL_CTX_set_psk_client_callback(ctx.as_ptr(), psk_client_cb);
                }
            }
            let mut groups = [c_int::from(group)];
            let r = sys::wolfSSL_CTX_set_groups(ctx.as_ptr(), groups.as_mut_ptr(), 1);
            if r != sys::WOLFSSL_SUCCESS {
                return Err(setup("groups", r));
            }
        }
        // SAFETY: valid context; the session keeps it alive (freed after the session in Drop).
        let ssl = NonNull::new(unsafe { sys::wolfSSL_new(ctx.as_ptr()) })
            .ok_or(setup("new (RNG seed or memory)", 0))?;
        core::mem::forget(guard);
        let io = Box::into_raw(Box::new(Io {
            inbox: VecDeque::new(),
            outbox: VecDeque::new(),
            psk,
            floor: 0,
            peer_not_before: None,
        }));
        let s = Session {
            ctx,
            ssl,
            // Box::into_raw never returns null.
            io: NonNull::new(io).expect("Box::into_raw is non-null"),
            offered: None,
        };
        let io = io as *mut c_void;
        // SAFETY: valid session; the `Io` allocation never moves and outlives the WOLFSSL
        // (freed after it in Drop).
        unsafe {
            sys::wolfSSL_SetIOReadCtx(ssl.as_ptr(), io);
            sys::wolfSSL_SetIOWriteCtx(ssl.as_ptr(), io);
            wolfSSL_SetCertCbCtx(ssl.as_ptr(), io);
            // Timers are driven by the owner (`got_timeout`), never by blocking reads.
            sys::wolfSSL_dtls_set_using_nonblock(ssl.as_ptr(), 1);
            let r = sys::wolfSSL_UseKeyShare(ssl.as_ptr(), group);
            if r != sys::WOLFSSL_SUCCESS {
                return Err(setup("key share", r));
            }
        }
        if let Auth::Certificate {
            server_name: Some(name),
            ..
        } = cfg.auth
        {
            let len = u16::try_from(name.len()).map_err(|_| setup("server name", 0))?;
            let mut c = Vec::with_capacity(name.len() + 1);
            c.extend_from_slice(name.as_bytes());
            c.push(0);
            let c = CStr::from_bytes_with_nul(&c).map_err(|_| setup("server name", 0))?;
            // SAFETY: valid session; both calls copy the name before returning.
            unsafe {
                let r = wolfSSL_check_domain_name(ssl.as_ptr(), c.as_ptr());
                if r != sys::WOLFSSL_SUCCESS {
                    return Err(setup("server name", r));
                }
                let r = wolfSSL_UseSNI(
                    ssl.as_ptr(),
                    SNI_HOST_NAME,
                    name.as_ptr() as *const c_void,
                    len,
                );
                if r != sys::WOLFSSL_SUCCESS {
                    return Err(setup("SNI", r));
                }
            }
        }
        Ok(s)
    }

    pub(crate) fn feed(&mut self, d: &[u8]) {
        let io = self.io_mut();
        if io.inbox.len() < QUEUE_MAX {
            io.inbox.push_back(d.to_vec());
        }
    }

    pub(crate) fn take_datagram(&mut self) -> Option<Vec<u8>> {
        self.io_mut().outbox.pop_front()
    }

    fn error(&self, ret: c_int) -> c_int {
        // SAFETY: valid session.
        unsafe { sys::wolfSSL_get_error(self.ssl.as_ptr(), ret) }
    }

    /// `Ok(true)` when the handshake is complete, `Ok(false)` while waiting.
    pub(crate) fn connect(&mut self) -> Result<bool, i32> {
        // SAFETY: valid session; callbacks only touch `self.io`.
        let r = unsafe { sys::wolfSSL_connect(self.ssl.as_ptr()) };
        if r == sys::WOLFSSL_SUCCESS {
            return Ok(true);
        }
        match self.error(r) {
            sys::WOLFSSL_ERROR_WANT_READ | sys::WOLFSSL_ERROR_WANT_WRITE => Ok(false),
            e => Err(e),
        }
    }

    pub(crate) fn read(&mut self) -> Result<Option<Vec<u8>>, DtlsError> {
        let mut buf = alloc::vec![0u8; RECORD_MAX];
        // SAFETY: valid session; `buf` writable for its length.
        let r = unsafe {
            sys::wolfSSL_read(
                self.ssl.as_ptr(),
                buf.as_mut_ptr() as *mut c_void,
                RECORD_MAX as c_int,
            )
        };
        if r > 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        match self.error(r) {
            sys::WOLFSSL_ERROR_WANT_READ | sys::WOLFSSL_ERROR_WANT_WRITE => Ok(None),
            sys::WOLFSSL_ERROR_ZERO_RETURN => Err(DtlsError::Closed),
            e => Err(DtlsError::Record(e)),
        }
    }

    pub(crate) fn write(&mut self, d: &[u8]) -> Result<(), i32> {
        let len = c_int::try_from(d.len()).map_err(|_| -1)?;
        // SAFETY: valid session; `d` readable for len bytes.
        let r = unsafe { sys::wolfSSL_write(self.ssl.as_ptr(), d.as_ptr() as *const c_void, len) };
        if r == len {
            Ok(())
        } else {
            Err(self.error(r))
        }
    }

    pub(crate) fn timeout_secs(&mut self) -> u32 {
        // SAFETY: valid session.
        let t = unsafe { sys::wolfSSL_dtls_get_current_timeout(self.ssl.as_ptr()) };
        t.max(1) as u32
    }

    pub(crate) fn got_timeout(&mut self) -> Result<(), i32> {
        // SAFETY: valid session.
        let r = unsafe { sys::wolfSSL_dtls_got_timeout(self.ssl.as_ptr()) };
        if r == sys::WOLFSSL_SUCCESS {
            Ok(())
        } else {
            Err(self.error(r))
        }
    }

    pub(crate) fn group(&self) -> Option<&'static str> {
        // SAFETY: valid session; wolfSSL returns NULL or a static NUL-terminated name.
        static_str(unsafe { sys::wolfSSL_get_curve_name(self.ssl.as_ptr()) })
    }

    pub(crate) fn cipher(&self) -> Option<&'static str> {
        // SAFETY: as above (names come from wolfSSL's static cipher table).
        static_str(unsafe { sys::wolfSSL_get_cipher_name(self.ssl.as_ptr()) })
    }
}

fn static_str(p: *const c_char) -> Option<&'static str> {
    // SAFETY: callers pass NULL or a pointer to a static NUL-terminated string.
    (!p.is_null())
        .then(|| unsafe { CStr::from_ptr(p) }.to_str().ok())
        .flatten()
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the WOLFSSL goes first (its callbacks may reference `io`), then the context
        // it was made from, then `io`, which came from Box::into_raw in `new` and is freed once.
        unsafe {
            sys::wolfSSL_free(self.ssl.as_ptr());
            sys::wolfSSL_CTX_free(self.ctx.as_ptr());
            drop(Box::from_raw(self.io.as_ptr()));
        }
    }
}

struct CtxGuard(NonNull<sys::WOLFSSL_CTX>);

impl Drop for CtxGuard {
    fn drop(&mut self) {
        // SAFETY: a context we created and nothing else references (setup failed).
        unsafe { sys::wolfSSL_CTX_free(self.0.as_ptr()) };
    }
}

extern "C" fn io_recv(
    _ssl: *mut sys::WOLFSSL,
    buf: *mut c_char,
    sz: c_int,
    ctx: *mut c_void,
) -> c_int {
    if ctx.is_null() || buf.is_null() || sz <= 0 {
        return sys::CBIO_ERR_WANT_READ;
    }
    // SAFETY: ctx is the session's `Io`; wolfSSL calls back only from within a session
    // method, which holds `&mut Session`.
    let io = unsafe { &mut *(ctx as *mut Io) };
    let Some(d) = io.inbox.pop_front() else {
        return sys::CBIO_ERR_WANT_READ;
    };
    // A datagram longer than the buffer is truncated, as recvfrom would.
    let n = d.len().min(sz as usize);
    // SAFETY: `buf` is writable for `sz` >= n bytes.
    unsafe { core::ptr::copy_nonoverlapping(d.as_ptr(), buf.cast::<u8>(), n) };
    n as c_int
}

extern "C" fn io_send(
    _ssl: *mut sys::WOLFSSL,
    buf: *mut c_char,
    sz: c_int,
    ctx: *mut c_void,
) -> c_int {
    if ctx.is_null() || buf.is_null() || sz < 0 {
        return sys::CBIO_ERR_GENERAL;
    }
    // SAFETY: as in io_recv; `buf` holds `sz` readable bytes.
    let io = unsafe { &mut *(ctx as *mut Io) };
    if io.outbox.len() < QUEUE_MAX {
        let d = unsafe { core::slice::from_raw_parts(buf as *const u8, sz as usize) };
        io.outbox.push_back(d.to_vec());
    }
    sz
}

/// wolfSSL's verify callback (certificate mode). Runs after wolfSSL's own checks of each
/// certificate of the server's chain; for the server's own certificate, which wolfSSL verified
/// (`preverify` 1), it reads the notBefore and refuses one earlier than the session's floor. A
/// failure wolfSSL found stays a failure.
extern "C" fn verify_cb(preverify: c_int, store: *mut c_void) -> c_int {
    if preverify == 0 {
        return 0;
    }
    let (mut der, mut len, mut user): (*const c_uchar, c_uint, *mut c_void) =
        (core::ptr::null(), 0, core::ptr::null_mut());
    // SAFETY: wolfSSL passes its live store; the helper only reads it and writes our locals.
    let leaf = unsafe { qeaas_wolfssl_store_leaf(store, &mut der, &mut len, &mut user) };
    match leaf {
        0 => return 1,
        1 if !der.is_null() && !user.is_null() => {}
        _ => return 0,
    }
    // SAFETY: `user` is this session's `Io` (wolfSSL_SetCertCbCtx in `Session::new`), live for
    // the whole handshake; no Rust reference to it is held across the wolfSSL call that runs
    // this callback. `der` points at wolfSSL's copy of the certificate, `len` bytes.
    let (io, cert) = unsafe {
        (
            &mut *(user as *mut Io),
            core::slice::from_raw_parts(der, len as usize),
        )
    };
    match qeaas_device::floor::not_before(cert) {
        Some(nb) if nb >= io.floor => {
            io.peer_not_before = Some(nb);
            1
        }
        _ => 0,
    }
}

/// The verify callback in PSK mode: a server certificate is never accepted there.
extern "C" fn refuse_any_certificate(_preverify: c_int, _store: *mut c_void) -> c_int {
    0
}

extern "C" fn psk_client_cb(
    ssl: *mut sys::WOLFSSL,
    _hint: *const c_char,
    identity: *mut c_char,
    id_max: c_uint,
    key: *mut c_uchar,
    key_max: c_uint,
) -> c_uint {
    if identity.is_null() || key.is_null() {
        return 0;
    }
    // SAFETY: the read ctx of every session is its `Io` (see `Session::new`).
    let p = unsafe { sys::wolfSSL_GetIOReadCtx(ssl) };
    if p.is_null() {
        return 0;
    }
    // SAFETY: non-null: our live `Io`.
    let io = unsafe { &*(p as *const Io) };
    let Some((id, k)) = &io.psk else { return 0 };
    // The identity is written NUL-terminated, hence `>=`.
    if id.len() >= id_max as usize || k.len() > key_max as usize || k.is_empty() {
        return 0;
    }
    // SAFETY: both buffers writable for their max lengths, checked above.
    unsafe {
        core::ptr::copy_nonoverlapping(id.as_ptr(), identity.cast::<u8>(), id.len());
        *identity.add(id.len()) = 0;
        core::ptr::copy_nonoverlapping(k.as_ptr(), key, k.len());
    }
    k.len() as c_uint
}

/// The size arithmetic of the device's C heap (`malloc`/`realloc` below), apart so the host
/// tests can check it: a header before each block keeps its size for `free()`.
#[cfg_attr(not(all(target_os = "none", feature = "c-heap")), allow(dead_code))]
mod c_heap {
    use core::alloc::Layout;

    /// Bytes of header before each block (and the blocks' alignment).
    pub(super) const HDR: usize = 8;

    /// The allocation behind a C request for `n` bytes, header included; `None` when no block
    /// can hold it (C's malloc then returns NULL). Checked: a wrapping `n + HDR` would give a
    /// tiny block for a huge request, and `Layout` refuses sizes above `isize::MAX`, which the
    /// allocator may not be asked for.
    pub(super) fn block(n: usize) -> Option<Layout> {
        Layout::from_size_align(n.checked_add(HDR)?, HDR).ok()
    }
}

/// The C side of the device build (`user_settings.h`, `QEAAS_WOLFSSL_DEVICE`).
#[cfg(target_os = "none")]
mod device {
    use super::*;
    #[cfg(feature = "c-heap")]
    use core::alloc::Layout;

    /// `CUSTOM_RAND_GENERATE_SEED`: 0 on success, as wolfCrypt expects.
    #[no_mangle]
    extern "C" fn qeaas_rand_seed(out: *mut c_uchar, sz: c_uint) -> c_int {
        let f = SEED.load(Ordering::Acquire);
        if f.is_null() || out.is_null() {
            return -1;
        }
        // SAFETY: non-null only while `Session::new` runs, pointing at its live `SeedSource`;
        // single-threaded, and wolfSSL calls this from within that call.
        let f = unsafe { &mut *(f as *mut SeedSource<'_>) };
        // SAFETY: wolfCrypt passes a writable buffer of `sz` bytes.
        let buf = unsafe { core::slice::from_raw_parts_mut(out, sz as usize) };
        if f(buf) {
            0
        } else {
            -1
        }
    }

    /// Seconds for wolfSSL's timeouts (NO_ASN_TIME leaves it to us).
    #[no_mangle]
    extern "C" fn LowResTimer() -> u32 {
        NOW_S.load(Ordering::Relaxed)
    }

    /// Milliseconds for DTLS 1.3 timers (sword64 without WOLFSSL_32BIT_MILLI_TIME).
    #[no_mangle]
    extern "C" fn TimeNowInMilliseconds() -> i64 {
        i64::from(NOW_MS.load(Ordering::Relaxed))
    }

    /// picolibc's abort() would raise a signal through a host layer the device lacks; a C
    /// abort (e.g. a failed libc assertion) becomes a Rust panic, which the firmware handles.
    #[no_mangle]
    extern "C" fn abort() -> ! {
        panic!("abort() called from C");
    }

    // wolfSSL's XMALLOC is malloc: route it to the Rust global allocator, so one heap (and its
    // high-water mark) serves both. A header before each block keeps its size for free().
    #[cfg(feature = "c-heap")]
    use super::c_heap::{block, HDR};

    #[cfg(feature = "c-heap")]
    #[no_mangle]
    extern "C" fn malloc(n: usize) -> *mut c_void {
        let Some(l) = block(n) else {
            return core::ptr::null_mut();
        };
        // SAFETY: non-zero size layout.
        let p = unsafe { alloc::alloc::alloc(l) };
        if p.is_null() {
            return p as *mut c_void;
        }
        // SAFETY: the block is at least HDR bytes, aligned to HDR.
        unsafe {
            (p as *mut usize).write(n);
            p.add(HDR) as *mut c_void
        }
    }

    #[cfg(feature = "c-heap")]
    #[no_mangle]
    extern "C" fn free(p: *mut c_void) {
        if p.is_null() {
            return;
        }
        // SAFETY: `p` came from our malloc/realloc: the header precedes it.
        unsafe {
            let base = (p as *mut u8).sub(HDR);
            let n = (base as *const usize).read();
            alloc::alloc::dealloc(base, Layout::from_size_align_unchecked(n + HDR, HDR));
        }
    }

    #[cfg(feature = "c-heap")]
    #[no_mangle]
    extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
        if p.is_null() {
            return malloc(n);
        }
        let Some(new) = block(n) else {
            return core::ptr::null_mut();
        };
        // SAFETY: as in free; `new` is a valid layout of the same alignment.
        unsafe {
            let base = (p as *mut u8).sub(HDR);
            let old = (base as *const usize).read();
            let q = alloc::alloc::realloc(
                base,
                Layout::from_size_align_unchecked(old + HDR, HDR),
                new.size(),
            );
            if q.is_null() {
                return core::ptr::null_mut();
            }
            (q as *mut usize).write(n);
            q.add(HDR) as *mut c_void
        }
    }

    #[cfg(feature = "c-heap")]
    #[no_mangle]
    extern "C" fn calloc(k: usize, n: usize) -> *mut c_void {
        let Some(total) = k.checked_mul(n) else {
            return core::ptr::null_mut();
        };
        let p = malloc(total);
        if !p.is_null() {
            // SAFETY: `total` writable bytes.
            unsafe { core::ptr::write_bytes(p as *mut u8, 0, total) };
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::c_heap::{block, HDR};

    /// wolfSSL passes sizes it computed from peer input; a request the heap cannot hold must be
    /// refused, never turned into a small block by a wrapping header addition.
    #[test]
    fn c_heap_refuses_sizes_whose_header_would_overflow() {
        assert_eq!(block(0).map(|l| l.size()), Some(HDR));
        assert_eq!(block(100).map(|l| l.size()), Some(100 + HDR));
        for n in [
            usize::MAX,
            usize::MAX - HDR + 1,
            usize::MAX - 3,
            isize::MAX as usize,
        ] {
            assert_eq!(block(n), None, "malloc({n:#x})");
        }
    }
}
