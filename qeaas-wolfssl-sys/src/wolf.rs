//! The only module with `unsafe`: hand-written declarations of the wolfSSL functions we call
//! (no bindgen: the list is short and the ABI is plain C) and the safe types over them.
//!
//! Sans-IO: a [`Session`] never touches a socket. Its wolfSSL object reads datagrams from an
//! in-memory inbox ([`Session::feed`]) and writes into an outbox ([`Session::take_datagrams`]);
//! the caller owns the UDP socket and the clock ([`Session::timeout_secs`], [`Session::on_timeout`]).
#![allow(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use std::net::SocketAddr;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::{Arc, Once};

/// Raw declarations, from wolfSSL 5.9.4's `wolfssl/ssl.h`.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
mod sys {
    use std::ffi::{c_char, c_int, c_long, c_uchar, c_uint, c_void};

    // The client side, shared with the bare-metal firmware: one declaration per C function.
    pub use crate::raw::*;

    #[repr(C)]
    pub struct WC_RNG {
        _p: [u8; 0],
    }
    #[repr(C)]
    pub struct WOLFSSL_X509 {
        _p: [u8; 0],
    }
    #[repr(C)]
    pub struct MlDsaKey {
        _p: [u8; 0],
    }
    /// `WC_ML_DSA_44`.
    pub const WC_ML_DSA_44: c_uchar = 2;

    pub type PskServerCb =
        extern "C" fn(*mut WOLFSSL, *const c_char, *mut c_uchar, c_uint) -> c_uint;
    #[repr(C)]
    pub struct WOLFSSL_SESSION {
        _p: [u8; 0],
    }
    /// `SessionTicketEncCb`: `(ssl, key_name[16], iv[16], mac[32], enc, ticket, in_len,
    /// out_len, user_ctx)`.
    pub type TicketEncCb = extern "C" fn(
        *mut WOLFSSL,
        *mut c_uchar,
        *mut c_uchar,
        *mut c_uchar,
        c_int,
        *mut c_uchar,
        c_int,
        *mut c_int,
        *mut c_void,
    ) -> c_int;
    pub const WOLFSSL_TICKET_RET_FATAL: c_int = -1;
    pub const WOLFSSL_TICKET_RET_OK: c_int = 0;
    pub const WOLFSSL_TICKET_RET_REJECT: c_int = 1;
    pub const WOLFSSL_TICKET_NAME_SZ: usize = 16;
    pub const WOLFSSL_TICKET_IV_SZ: usize = 16;
    pub const WOLFSSL_TICKET_MAC_SZ: usize = 32;
    /// wolfSSL's `SECRET_LEN`: the resumption master secret in a ticket.
    pub const SECRET_LEN: usize = 48;

    pub const WOLFSSL_FAILURE: c_int = 0;
    /// Fail a certificate handshake without a client certificate; PSK handshakes pass.
    /// wolfSSL enforces it in (D)TLS 1.2 only.
    pub const WOLFSSL_VERIFY_FAIL_EXCEPT_PSK: c_int = 1 << 4;

    // What only the host needs: the server side, certificates of our own, and wolfCrypt.
    extern "C" {
        pub fn wolfDTLSv1_2_server_method() -> *mut WOLFSSL_METHOD;
        pub fn wolfDTLSv1_3_server_method() -> *mut WOLFSSL_METHOD;
        pub fn wolfDTLS_server_method() -> *mut WOLFSSL_METHOD;
        pub fn wolfDTLSv1_2_client_method() -> *mut WOLFSSL_METHOD;
        pub fn wolfSSL_CTX_set_psk_server_callback(ctx: *mut WOLFSSL_CTX, cb: PskServerCb);
        pub fn wolfSSL_CTX_use_certificate_chain_buffer_format(
            ctx: *mut WOLFSSL_CTX,
            buf: *const c_uchar,
            sz: std::ffi::c_long,
            format: c_int,
        ) -> c_int;
        pub fn wolfSSL_CTX_use_certificate_buffer(
            ctx: *mut WOLFSSL_CTX,
            buf: *const c_uchar,
            sz: std::ffi::c_long,
            format: c_int,
        ) -> c_int;
        pub fn wolfSSL_CTX_use_PrivateKey_buffer(
            ctx: *mut WOLFSSL_CTX,
            buf: *const c_uchar,
            sz: std::ffi::c_long,
            format: c_int,
        ) -> c_int;
        pub fn wolfSSL_CTX_no_dhe_psk(ctx: *mut WOLFSSL_CTX) -> c_int;
        pub fn wolfSSL_CTX_set_cipher_list(ctx: *mut WOLFSSL_CTX, list: *const c_char) -> c_int;

        pub fn wolfSSL_dtls_set_peer(ssl: *mut WOLFSSL, peer: *mut c_void, sz: c_uint) -> c_int;
        pub fn wolfSSL_DTLS_SetCookieSecret(
            ssl: *mut WOLFSSL,
            secret: *const c_uchar,
            sz: c_uint,
        ) -> c_int;
        pub fn wolfSSL_send_hrr_cookie(
            ssl: *mut WOLFSSL,
            secret: *const c_uchar,
            sz: c_uint,
        ) -> c_int;
        pub fn wolfSSL_check_domain_name(ssl: *mut WOLFSSL, dn: *const c_char) -> c_int;
        pub fn wolfSSL_check_ip_address(ssl: *mut WOLFSSL, ip: *const c_char) -> c_int;
        pub fn wolfDTLS_accept_stateless(ssl: *mut WOLFSSL) -> c_int;
        pub fn wolfSSL_accept(ssl: *mut WOLFSSL) -> c_int;
        pub fn wolfSSL_get_psk_identity(ssl: *const WOLFSSL) -> *const c_char;
        // Ours (c/negotiated.c): 1 when the (D)TLS 1.3 handshake uses a PSK whose binder
        // verified, else 0.
        pub fn qeaas_wolfssl_psk_negotiated(ssl: *const WOLFSSL) -> c_int;
        pub fn wolfSSL_set_verify(ssl: *mut WOLFSSL, mode: c_int, cb: *const c_void);
        // Session tickets (HAVE_SESSION_TICKET, host only).
        pub fn wolfSSL_CTX_set_TicketEncCb(ctx: *mut WOLFSSL_CTX, cb: TicketEncCb) -> c_int;
        pub fn wolfSSL_CTX_set_TicketHint(ctx: *mut WOLFSSL_CTX, hint: c_int) -> c_int;
        pub fn wolfSSL_CTX_set_timeout(ctx: *mut WOLFSSL_CTX, to: c_uint) -> c_int;
        pub fn wolfSSL_CTX_set_session_cache_mode(ctx: *mut WOLFSSL_CTX, mode: c_long) -> c_long;
        pub fn wolfSSL_CTX_NoTicketTLSv12(ctx: *mut WOLFSSL_CTX) -> c_int;
        pub fn wolfSSL_session_reused(ssl: *mut WOLFSSL) -> c_int;
        pub fn wolfSSL_get1_session(ssl: *mut WOLFSSL) -> *mut WOLFSSL_SESSION;
        pub fn wolfSSL_set_session(ssl: *mut WOLFSSL, session: *mut WOLFSSL_SESSION) -> c_int;
        pub fn wolfSSL_SESSION_free(session: *mut WOLFSSL_SESSION);
        pub fn wolfSSL_get_SessionTicket(
            ssl: *mut WOLFSSL,
            buf: *mut c_uchar,
            sz: *mut c_uint,
        ) -> c_int;
        pub fn wc_ChaCha20Poly1305_Encrypt(
            key: *const c_uchar,
            iv: *const c_uchar,
            aad: *const c_uchar,
            aad_len: c_uint,
            input: *const c_uchar,
            input_len: c_uint,
            output: *mut c_uchar,
            tag: *mut c_uchar,
        ) -> c_int;
        pub fn wc_ChaCha20Poly1305_Decrypt(
            key: *const c_uchar,
            iv: *const c_uchar,
            aad: *const c_uchar,
            aad_len: c_uint,
            input: *const c_uchar,
            input_len: c_uint,
            tag: *const c_uchar,
            output: *mut c_uchar,
        ) -> c_int;
        // Ours (c/negotiated.c): the ticket plaintext's size and where its resumption
        // secret sits; the secret of a session resumed from a ticket (else 0).
        pub fn qeaas_wolfssl_ticket_internal_len() -> c_uint;
        pub fn qeaas_wolfssl_ticket_secret_offset() -> c_uint;
        pub fn qeaas_wolfssl_resumed_secret(
            ssl: *const WOLFSSL,
            out: *mut c_uchar,
            len: c_uint,
        ) -> c_int;
        // KEEP_PEER_CERT: a copy of the peer's certificate, freed with wolfSSL_X509_free.
        pub fn wolfSSL_get_peer_certificate(ssl: *mut WOLFSSL) -> *mut WOLFSSL_X509;
        pub fn wolfSSL_X509_free(x509: *mut WOLFSSL_X509);
        pub fn wolfSSL_X509_get_subjectCN(x509: *mut WOLFSSL_X509) -> *mut c_char;
        pub fn wolfSSL_X509_get_next_altname(x509: *mut WOLFSSL_X509) -> *mut c_char;
        // wolfCrypt: ML-DSA key generation and signing, for making certificates.
        pub fn wc_rng_new(nonce: *mut c_uchar, nonce_sz: c_uint, heap: *mut c_void) -> *mut WC_RNG;
        pub fn wc_rng_free(rng: *mut WC_RNG);
        pub fn wc_MlDsaKey_New(heap: *mut c_void, dev_id: c_int) -> *mut MlDsaKey;
        pub fn wc_MlDsaKey_Delete(key: *mut MlDsaKey, key_p: *mut *mut MlDsaKey) -> c_int;
        pub fn wc_MlDsaKey_SetParams(key: *mut MlDsaKey, level: c_uchar) -> c_int;
        pub fn wc_MlDsaKey_MakeKey(key: *mut MlDsaKey, rng: *mut WC_RNG) -> c_int;
        pub fn wc_MlDsaKey_ExportPubRaw(
            key: *mut MlDsaKey,
            out: *mut c_uchar,
            len: *mut c_uint,
        ) -> c_int;
        pub fn wc_MlDsaKey_PrivateKeyToDer(
            key: *mut MlDsaKey,
            out: *mut c_uchar,
            len: c_uint,
        ) -> c_int;
        pub fn wc_MlDsaKey_SignCtx(
            key: *mut MlDsaKey,
            ctx: *const c_uchar,
            ctx_len: c_uchar,
            sig: *mut c_uchar,
            sig_len: *mut c_uint,
            msg: *const c_uchar,
            msg_len: c_uint,
            rng: *mut WC_RNG,
        ) -> c_int;
    }
}

/// A wolfSSL failure: the library's error code and its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wolfSSL {what}: {text} ({code})")]
pub struct Error {
    /// What we were doing.
    pub what: &'static str,
    /// wolfSSL's (negative) error code, or the failing return value.
    pub code: i32,
    /// wolfSSL's description of `code`.
    pub text: String,
}

fn error(what: &'static str, code: c_int) -> Error {
    let mut buf = [0 as c_char; 128];
    // SAFETY: the buffer is valid for its length; wolfSSL NUL-terminates within `sz`.
    let text = unsafe {
        sys::wolfSSL_ERR_error_string_n(
            code.unsigned_abs() as c_ulong,
            buf.as_mut_ptr(),
            buf.len() as c_ulong,
        );
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    };
    Error { what, code, text }
}

fn check(what: &'static str, ret: c_int) -> Result<(), Error> {
    if ret == sys::WOLFSSL_SUCCESS {
        Ok(())
    } else {
        Err(error(what, ret))
    }
}

/// Which end of the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections.
    Server,
    /// Connects.
    Client,
}

/// Protocol versions a context speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// DTLS 1.2 only (libcoap's clients).
    Dtls12,
    /// DTLS 1.3 only.
    Dtls13,
    /// Server only: DTLS 1.3, falling back to 1.2 for clients that do not offer 1.3.
    Any,
}

/// Key-exchange groups (IANA code points).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Group {
    /// ML-KEM-512 (FIPS 203).
    MlKem512 = 512,
    /// ML-KEM-768.
    MlKem768 = 513,
    /// Hybrid X25519 + ML-KEM-768.
    X25519MlKem768 = 4588,
    /// X25519 (ECDHE).
    X25519 = 29,
    /// secp256r1 (ECDHE).
    P256 = 23,
}

/// Encoding of certificates and keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// PEM text.
    Pem,
    /// DER (ASN.1) bytes.
    Der,
}

impl Format {
    fn raw(self) -> c_int {
        match self {
            Format::Pem => sys::WOLFSSL_FILETYPE_PEM,
            Format::Der => sys::WOLFSSL_FILETYPE_ASN1,
        }
    }
}

/// Whether a server asks its clients for certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No CertificateRequest (PSK clients, or clients that only authenticate the server).
    Off,
    /// Asked for and verified when sent; a client may show none.
    Optional,
    /// A certificate handshake without a valid client certificate fails (PSK ones pass).
    Required,
}

/// Pre-shared keys: identity to key (server), or the one identity and key (client).
#[derive(Clone, Default)]
struct Psk {
    table: HashMap<Vec<u8>, Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

fn init() {
    static INIT: Once = Once::new();
    // SAFETY: wolfSSL_Init has no preconditions; Once runs it a single time.
    INIT.call_once(|| unsafe {
        sys::wolfSSL_Init();
    });
}

/// The key that seals and opens DTLS 1.3 session tickets, derived from a secret the server
/// keeps (qeaas-coapd's `ticket_key_file`), so that a server restarted with the same secret
/// resumes sessions it issued tickets for, and one with another secret cannot open them.
///
/// HKDF-SHA256 (RFC 5869) of the secret with a fixed salt gives a 16-byte key name, sent in
/// clear in every ticket so a ticket under another key is recognised as unknown (a full
/// handshake follows), and a 32-byte ChaCha20-Poly1305 key that seals wolfSSL's ticket
/// plaintext with the key name, IV and length as associated data: a modified or forged ticket
/// fails to open.
pub struct TicketKey {
    name: [u8; sys::WOLFSSL_TICKET_NAME_SZ],
    key: zeroize::Zeroizing<[u8; 32]>,
    lifetime_secs: u32,
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKey")
            .field("name", &self.name)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

/// Shortest secret [`TicketKey::derive`] takes: 256 bits.
pub const TICKET_SECRET_MIN: usize = 32;
/// Longest ticket lifetime: TLS 1.3 allows 7 days (RFC 8446 4.6.1).
pub const TICKET_LIFETIME_MAX_SECS: u32 = 7 * 24 * 3600;
const TICKET_SALT: &[u8] = b"qeaas DTLS 1.3 session tickets v1";

fn hkdf_sha256(secret: &[u8], info: &[u8], out: &mut [u8]) {
    use hmac::{Mac, SimpleHmac};
    type H = SimpleHmac<sha2::Sha256>;
    // Extract, then Expand with at most one block: every output here is <= 32 bytes.
    let mut m = <H as Mac>::new_from_slice(TICKET_SALT).expect("HMAC takes any key length");
    m.update(secret);
    let prk: zeroize::Zeroizing<[u8; 32]> =
        zeroize::Zeroizing::new(m.finalize().into_bytes().into());
    let mut m = <H as Mac>::new_from_slice(&prk[..]).expect("HMAC takes any key length");
    m.update(info);
    m.update(&[1]);
    let t: zeroize::Zeroizing<[u8; 32]> = zeroize::Zeroizing::new(m.finalize().into_bytes().into());
    out.copy_from_slice(&t[..out.len()]);
}

impl TicketKey {
    /// The ticket key from `secret` (at least [`TICKET_SECRET_MIN`] bytes); tickets live
    /// `lifetime_secs` (1 to [`TICKET_LIFETIME_MAX_SECS`]).
    pub fn derive(secret: &[u8], lifetime_secs: u32) -> Result<TicketKey, Error> {
        if secret.len() < TICKET_SECRET_MIN {
            return Err(Error {
                what: "ticket key",
                code: 0,
                text: format!("secret shorter than {TICKET_SECRET_MIN} bytes"),
            });
        }
        if !(1..=TICKET_LIFETIME_MAX_SECS).contains(&lifetime_secs) {
            return Err(Error {
                what: "ticket key",
                code: 0,
                text: format!("lifetime must be 1 to {TICKET_LIFETIME_MAX_SECS} s"),
            });
        }
        let mut name = [0u8; sys::WOLFSSL_TICKET_NAME_SZ];
        hkdf_sha256(secret, b"ticket key name", &mut name);
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        hkdf_sha256(secret, b"ticket ChaCha20-Poly1305 key", &mut key[..]);
        Ok(TicketKey {
            name,
            key,
            lifetime_secs,
        })
    }

    /// The key name tickets carry in clear (not secret): tells keys apart in logs.
    pub fn name(&self) -> [u8; 16] {
        self.name
    }

    /// How long a ticket resumes.
    pub fn lifetime_secs(&self) -> u32 {
        self.lifetime_secs
    }
}

/// Client: a session saved with its ticket, to resume with [`Session::resume`].
pub struct Resumption(NonNull<sys::WOLFSSL_SESSION>);

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resumption { .. }")
    }
}

impl Drop for Resumption {
    fn drop(&mut self) {
        // SAFETY: from wolfSSL_get1_session, which took a reference we release once here.
        unsafe { sys::wolfSSL_SESSION_free(self.0.as_ptr()) };
    }
}

/// A configured wolfSSL context (`WOLFSSL_CTX`): versions, credentials, groups.
pub struct Context {
    ctx: Rc<CtxHandle>,
    role: Role,
    psk: Arc<Psk>,
    client_auth: ClientAuth,
    tickets: Option<Arc<TicketKey>>,
    /// SHA-256 of the client CA given to [`Context::verify_clients`]: a ticket of a
    /// certificate session resumes only under the same CA.
    client_ca: Option<[u8; 32]>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("role", &self.role)
            .field("psk_identities", &self.psk.table.len())
            .finish()
    }
}

impl Context {
    /// A DTLS context with memory I/O (sessions are fed by their owner).
    pub fn new(role: Role, version: Version) -> Result<Context, Error> {
        init();
        // SAFETY: the method constructors return static tables (or NULL on allocation failure,
        // which wolfSSL_CTX_new rejects); wolfSSL_CTX_new takes ownership of the method.
        let ctx = unsafe {
            let m = match (role, version) {
                (Role::Server, Version::Dtls12) => sys::wolfDTLSv1_2_server_method(),
                (Role::Server, Version::Dtls13) => sys::wolfDTLSv1_3_server_method(),
                (Role::Server, Version::Any) => sys::wolfDTLS_server_method(),
                (Role::Client, Version::Dtls12) => sys::wolfDTLSv1_2_client_method(),
                (Role::Client, Version::Dtls13) => sys::wolfDTLSv1_3_client_method(),
                (Role::Client, Version::Any) => {
                    return Err(Error {
                        what: "context",
                        code: 0,
                        text: "a client must pick DTLS 1.2 or 1.3".into(),
                    })
                }
            };
            sys::wolfSSL_CTX_new(m)
        };
        let ctx = NonNull::new(ctx).ok_or_else(|| error("CTX_new", 0))?;
        // SAFETY: ctx is a valid context; the callbacks are `extern "C"` functions that live
        // for the whole program and only touch the `Io` registered per session.
        unsafe {
            sys::wolfSSL_CTX_SetIORecv(ctx.as_ptr(), io_recv);
            sys::wolfSSL_CTX_SetIOSend(ctx.as_ptr(), io_send);
            // Verification is opted into with `verify_peer`; PSK-only servers have no CA.
            sys::wolfSSL_CTX_set_verify(ctx.as_ptr(), sys::WOLFSSL_VERIFY_NONE, std::ptr::null());
            // No server-side session cache (WOLFSSL_SESS_CACHE_OFF): a DTLS 1.2 session resumed
            // by ID carries neither the PSK identity nor the client certificate, so it would
            // name nobody. DTLS 1.3 resumes from tickets, which carry the identity (ticket_cb).
            if role == Role::Server {
                sys::wolfSSL_CTX_set_session_cache_mode(ctx.as_ptr(), 0);
            }
        }
        Ok(Context {
            ctx: Rc::new(CtxHandle(ctx)),
            role,
            psk: Arc::new(Psk::default()),
            client_auth: ClientAuth::Off,
            tickets: None,
            client_ca: None,
        })
    }

    /// Server: issues DTLS 1.3 session tickets sealed with `key` and resumes sessions from
    /// the tickets it opens. Without this call no ticket is issued. DTLS 1.2 tickets stay off
    /// (only 1.3 resumption is bound and tested). A ticket resumes within the key's lifetime
    /// counted from the client's last full handshake (tickets of resumed sessions carry that
    /// time on). The context's session timeout and the lifetime hint clients get are set to
    /// it too, so wolfSSL also refuses tickets older than that themselves.
    pub fn enable_session_tickets(&mut self, key: TicketKey) -> Result<(), Error> {
        if self.role != Role::Server {
            return Err(Error {
                what: "session tickets",
                code: 0,
                text: "only a server issues tickets".into(),
            });
        }
        let life = key.lifetime_secs;
        // SAFETY: valid context; the callback reads its session's `Io`, which holds the key.
        unsafe {
            check(
                "ticket callback",
                sys::wolfSSL_CTX_set_TicketEncCb(self.ctx.as_ptr(), ticket_cb),
            )?;
            check(
                "ticket hint",
                sys::wolfSSL_CTX_set_TicketHint(self.ctx.as_ptr(), life as c_int),
            )?;
            check(
                "session timeout",
                sys::wolfSSL_CTX_set_timeout(self.ctx.as_ptr(), life as c_uint),
            )?;
            check(
                "no DTLS 1.2 tickets",
                sys::wolfSSL_CTX_NoTicketTLSv12(self.ctx.as_ptr()),
            )?;
        }
        self.tickets = Some(Arc::new(key));
        Ok(())
    }

    /// Accepts the PSK identities in `table` (identity to key) and no other.
    pub fn set_psk_server(&mut self, table: HashMap<Vec<u8>, Vec<u8>>) {
        self.psk = Arc::new(Psk {
            table,
            client: None,
        });
        // SAFETY: valid context; the callback reads only its session's `Io`.
        unsafe { sys::wolfSSL_CTX_set_psk_server_callback(self.ctx.as_ptr(), psk_server_cb) };
    }

    /// Offers `identity` with `key`.
    pub fn set_psk_client(&mut self, identity: &[u8], key: &[u8]) {
        self.psk = Arc::new(Psk {
            table: HashMap::new(),
            client: Some((identity.to_vec(), key.to_vec())),
        });
        // SAFETY: as above.
        unsafe { sys::wolfSSL_CTX_set_psk_client_callback(self.ctx.as_ptr(), psk_client_cb) };
    }

    /// Our certificate chain (leaf first), ECDSA P-256 or ML-DSA-44. PEM may hold a chain;
    /// DER holds exactly one certificate (wolfSSL's DER chain loader wants length prefixes).
    pub fn use_certificate_chain(&mut self, data: &[u8], format: Format) -> Result<(), Error> {
        let len = len_of(data)?;
        // SAFETY: valid context; wolfSSL copies `len` bytes from `data`.
        check("certificate", unsafe {
            match format {
                Format::Pem => sys::wolfSSL_CTX_use_certificate_chain_buffer_format(
                    self.ctx.as_ptr(),
                    data.as_ptr(),
                    len,
                    format.raw(),
                ),
                Format::Der => sys::wolfSSL_CTX_use_certificate_buffer(
                    self.ctx.as_ptr(),
                    data.as_ptr(),
                    len,
                    format.raw(),
                ),
            }
        })
    }

    /// The private key of our certificate.
    pub fn use_private_key(&mut self, data: &[u8], format: Format) -> Result<(), Error> {
        let len = len_of(data)?;
        // SAFETY: as above.
        check("private key", unsafe {
            sys::wolfSSL_CTX_use_PrivateKey_buffer(
                self.ctx.as_ptr(),
                data.as_ptr(),
                len,
                format.raw(),
            )
        })
    }

    /// Trusts `data` (CA certificates) and requires the peer to present a chain to them.
    pub fn verify_peer(&mut self, data: &[u8], format: Format) -> Result<(), Error> {
        let len = len_of(data)?;
        // SAFETY: as above; no verify callback.
        unsafe {
            check(
                "CA",
                sys::wolfSSL_CTX_load_verify_buffer(
                    self.ctx.as_ptr(),
                    data.as_ptr(),
                    len,
                    format.raw(),
                ),
            )?;
            sys::wolfSSL_CTX_set_verify(
                self.ctx.as_ptr(),
                sys::WOLFSSL_VERIFY_PEER | sys::WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                std::ptr::null(),
            );
        }
        Ok(())
    }

    /// Server: asks clients for a certificate and verifies it against `ca` (CA certificates);
    /// one that does not verify fails the handshake. With `require`, a certificate handshake
    /// without one fails too: in DTLS 1.2 by wolfSSL's FAIL_EXCEPT_PSK set here, in DTLS 1.3
    /// per session once the version is known ([`Session::accept_stateless`]), as wolfSSL
    /// applies FAIL_EXCEPT_PSK to 1.2 only and FAIL_IF_NO_PEER_CERT would refuse 1.2 PSK
    /// clients. PSK handshakes carry no certificates and pass either way.
    pub fn verify_clients(
        &mut self,
        ca: &[u8],
        format: Format,
        require: bool,
    ) -> Result<(), Error> {
        let len = len_of(ca)?;
        let mode = if require {
            sys::WOLFSSL_VERIFY_PEER | sys::WOLFSSL_VERIFY_FAIL_EXCEPT_PSK
        } else {
            sys::WOLFSSL_VERIFY_PEER
        };
        // SAFETY: valid context; wolfSSL copies `len` bytes; no verify callback.
        unsafe {
            check(
                "client CA",
                sys::wolfSSL_CTX_load_verify_buffer(
                    self.ctx.as_ptr(),
                    ca.as_ptr(),
                    len,
                    format.raw(),
                ),
            )?;
            sys::wolfSSL_CTX_set_verify(self.ctx.as_ptr(), mode, std::ptr::null());
        }
        self.client_ca = Some(sha256(ca));
        self.client_auth = if require {
            ClientAuth::Required
        } else {
            ClientAuth::Optional
        };
        Ok(())
    }

    /// Client: our certificate chain and key, sent when the server asks
    /// ([`Context::use_certificate_chain`], [`Context::use_private_key`]).
    pub fn use_client_certificate(
        &mut self,
        chain: &[u8],
        chain_format: Format,
        key: &[u8],
        key_format: Format,
    ) -> Result<(), Error> {
        self.use_certificate_chain(chain, chain_format)?;
        self.use_private_key(key, key_format)
    }

    /// Whether (and how) this server context asks for client certificates.
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// Client with a PSK: refuse any server certificate (no CA is trusted), so a server that
    /// ignores our PSK and presents a certificate instead fails the handshake rather than
    /// being accepted unauthenticated.
    pub fn refuse_certificates(&mut self) {
        // SAFETY: valid context; no callback.
        unsafe {
            sys::wolfSSL_CTX_set_verify(
                self.ctx.as_ptr(),
                sys::WOLFSSL_VERIFY_PEER | sys::WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                std::ptr::null(),
            );
        }
    }

    /// Key-exchange groups, in order of preference.
    pub fn set_groups(&mut self, groups: &[Group]) -> Result<(), Error> {
        let mut raw: Vec<c_int> = groups.iter().map(|g| *g as u16 as c_int).collect();
        // SAFETY: valid context; wolfSSL copies `count` ints.
        check("groups", unsafe {
            sys::wolfSSL_CTX_set_groups(self.ctx.as_ptr(), raw.as_mut_ptr(), raw.len() as c_int)
        })
    }

    /// DTLS 1.3: resume with the PSK alone (psk_ke), no (EC)DHE key exchange. No forward
    /// secrecy; for measuring what the key exchange costs.
    pub fn psk_without_key_exchange(&mut self) -> Result<(), Error> {
        // SAFETY: valid context. Returns 0 on success.
        let r = unsafe { sys::wolfSSL_CTX_no_dhe_psk(self.ctx.as_ptr()) };
        if r == 0 {
            Ok(())
        } else {
            Err(error("no_dhe_psk", r))
        }
    }

    /// An OpenSSL-style cipher list (e.g. `PSK-AES128-CCM-8`).
    pub fn set_cipher_list(&mut self, list: &str) -> Result<(), Error> {
        let c = std::ffi::CString::new(list).map_err(|_| Error {
            what: "cipher list",
            code: 0,
            text: "NUL in cipher list".into(),
        })?;
        // SAFETY: valid context and NUL-terminated string.
        check("cipher list", unsafe {
            sys::wolfSSL_CTX_set_cipher_list(self.ctx.as_ptr(), c.as_ptr())
        })
    }

    /// The role this context was made for.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// Owns the `WOLFSSL_CTX`; sessions share it so it is freed after the last of them.
struct CtxHandle(NonNull<sys::WOLFSSL_CTX>);

impl CtxHandle {
    fn as_ptr(&self) -> *mut sys::WOLFSSL_CTX {
        self.0.as_ptr()
    }
}

impl Drop for CtxHandle {
    fn drop(&mut self) {
        // SAFETY: the last owner (context or session, each freeing its WOLFSSL first) is gone.
        unsafe { sys::wolfSSL_CTX_free(self.0.as_ptr()) };
    }
}

fn len_of(data: &[u8]) -> Result<std::ffi::c_long, Error> {
    std::ffi::c_long::try_from(data.len()).map_err(|_| Error {
        what: "buffer",
        code: 0,
        text: "too large".into(),
    })
}

/// The per-session I/O state the callbacks see. Its address is given to wolfSSL, so it lives
/// behind a raw pointer from `Box::into_raw` (see [`Session`]), never behind a `Box`.
struct Io {
    inbox: VecDeque<Vec<u8>>,
    outbox: Vec<Vec<u8>>,
    psk: Arc<Psk>,
    /// The identity whose key the server callback last gave. Only a candidate: wolfSSL asks
    /// for keys it then does not use (see [`Session::psk_identity`]). In DTLS 1.3 the identity
    /// is replaced by the one wolfSSL verified, or cleared, once the ClientHello is processed
    /// ([`Session::accept_stateless`]); wolfSSL does not keep it after the handshake.
    psk_accepted: std::cell::RefCell<Option<Vec<u8>>>,
    /// Server with [`Context::enable_session_tickets`]: the key sealing tickets.
    tickets: Option<Arc<TicketKey>>,
    client_auth: ClientAuth,
    client_ca: Option<[u8; 32]>,
    /// Tickets opened while processing the current ClientHello, by resumption secret: the
    /// client may offer several, and wolfSSL says only which secret it resumed with.
    tickets_opened: std::cell::RefCell<Vec<Opened>>,
    /// The identity bound into the ticket this session resumed from.
    resumed_as: std::cell::RefCell<Option<Bound>>,
    /// When the client last authenticated in full (Unix seconds), carried from ticket to
    /// ticket so that resuming again and again does not extend the lifetime.
    resumed_auth_at: std::cell::Cell<u64>,
}

/// A ticket our callback opened for the ClientHello being processed.
struct Opened {
    /// Its resumption master secret: how the ticket wolfSSL resumed with is found.
    secret: zeroize::Zeroizing<Vec<u8>>,
    bound: Bound,
    /// The time of the client's full handshake (Unix seconds).
    auth_at: u64,
}

/// Who a session was, sealed into its tickets after wolfSSL's own fields, so a resumed
/// session is named as the one that got the ticket: a resumption carries neither the client's
/// PSK identity (its PSK identity is the ticket) nor a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bound {
    /// Neither a PSK nor a certificate (named by its address): never resumes under `require`.
    Anonymous,
    /// A PSK identity and the SHA-256 of its key then: resumes only while that key is held.
    Psk(Vec<u8>, [u8; 32]),
    /// A verified certificate's names and the SHA-256 of the client CA that verified it.
    Cert(PeerNames, [u8; 32]),
    /// Too long to seal: such a ticket never resumes.
    Unbindable,
}

/// Version of our record in the ticket; a ticket with another never resumes.
const BOUND_V1: u8 = 1;
/// At most this much of our record after wolfSSL's plaintext (its padding is 512 bytes).
const BOUND_MAX: usize = 480;
/// At most this many tickets opened per ClientHello are remembered.
const OPENED_MAX: usize = 4;

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

impl Bound {
    /// Our record: version, the time of the full handshake (Unix seconds, big-endian), then
    /// the identity.
    fn encode(&self, auth_at: u64) -> Vec<u8> {
        fn short(v: &mut Vec<u8>, b: &[u8]) -> bool {
            match u8::try_from(b.len()) {
                Ok(n) => {
                    v.push(n);
                    v.extend_from_slice(b);
                    true
                }
                Err(_) => false,
            }
        }
        let mut v = vec![BOUND_V1];
        v.extend_from_slice(&auth_at.to_be_bytes());
        let ok = match self {
            Bound::Anonymous => {
                v.push(0);
                true
            }
            Bound::Psk(id, h) => {
                v.push(1);
                v.extend_from_slice(h);
                short(&mut v, id)
            }
            Bound::Cert(names, ca) => {
                v.push(2);
                v.extend_from_slice(ca);
                let cn = match &names.cn {
                    Some(cn) => {
                        v.push(1);
                        short(&mut v, cn.as_bytes())
                    }
                    None => {
                        v.push(0);
                        true
                    }
                };
                cn && u8::try_from(names.alt.len()).is_ok_and(|n| {
                    v.push(n);
                    names.alt.iter().all(|a| short(&mut v, a.as_bytes()))
                })
            }
            Bound::Unbindable => false,
        };
        if ok && v.len() <= BOUND_MAX {
            v
        } else {
            let mut v = vec![BOUND_V1];
            v.extend_from_slice(&auth_at.to_be_bytes());
            v.push(3);
            v
        }
    }

    fn decode(b: &[u8]) -> Option<(Bound, u64)> {
        struct R<'a>(&'a [u8]);
        impl<'a> R<'a> {
            fn take(&mut self, n: usize) -> Option<&'a [u8]> {
                let (h, t) = self.0.split_at_checked(n)?;
                self.0 = t;
                Some(h)
            }
            fn byte(&mut self) -> Option<u8> {
                self.take(1).map(|b| b[0])
            }
            fn short(&mut self) -> Option<&'a [u8]> {
                let n = self.byte()?;
                self.take(n as usize)
            }
            fn hash(&mut self) -> Option<[u8; 32]> {
                self.take(32)?.try_into().ok()
            }
            fn text(&mut self) -> Option<String> {
                String::from_utf8(self.short()?.to_vec()).ok()
            }
        }
        let mut r = R(b);
        if r.byte()? != BOUND_V1 {
            return None;
        }
        let auth_at = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
        let bound = match r.byte()? {
            0 => Bound::Anonymous,
            1 => {
                let h = r.hash()?;
                Bound::Psk(r.short()?.to_vec(), h)
            }
            2 => {
                let ca = r.hash()?;
                let cn = match r.byte()? {
                    0 => None,
                    1 => Some(r.text()?),
                    _ => return None,
                };
                let n = r.byte()?;
                let alt = (0..n).map(|_| r.text()).collect::<Option<Vec<_>>>()?;
                Bound::Cert(PeerNames { cn, alt }, ca)
            }
            _ => return None,
        };
        // Nothing may follow (the length is sealed, but a record means exactly one thing).
        r.0.is_empty().then_some((bound, auth_at))
    }
}

/// Upper bound on queued datagrams per session: a flood is dropped, never buffered.
const INBOX_MAX: usize = 16;

extern "C" fn io_recv(
    _ssl: *mut sys::WOLFSSL,
    buf: *mut c_char,
    sz: c_int,
    ctx: *mut c_void,
) -> c_int {
    if ctx.is_null() || buf.is_null() || sz <= 0 {
        return sys::CBIO_ERR_WANT_READ;
    }
    // SAFETY: ctx is the `Io` registered by `Session::new`, alive as long as the session;
    // wolfSSL calls back only from within a session method, which holds `&mut Session`.
    let io = unsafe { &mut *(ctx as *mut Io) };
    let Some(d) = io.inbox.pop_front() else {
        return sys::CBIO_ERR_WANT_READ;
    };
    // A datagram longer than the buffer is truncated, as recvfrom would.
    let n = d.len().min(sz as usize);
    // SAFETY: wolfSSL gives a writable buffer of `sz` bytes; n <= sz.
    unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), buf as *mut u8, n) };
    n as c_int
}

extern "C" fn io_send(
    _ssl: *mut sys::WOLFSSL,
    buf: *mut c_char,
    sz: c_int,
    ctx: *mut c_void,
) -> c_int {
    if ctx.is_null() || buf.is_null() || sz < 0 {
        return -1;
    }
    // SAFETY: as in io_recv; `buf` holds `sz` readable bytes.
    let io = unsafe { &mut *(ctx as *mut Io) };
    let d = unsafe { std::slice::from_raw_parts(buf as *const u8, sz as usize) };
    io.outbox.push(d.to_vec());
    sz
}

fn io_of<'a>(ssl: *mut sys::WOLFSSL) -> Option<&'a Io> {
    // SAFETY: the read ctx of every session we create is its `Io` (see `Session::new`).
    let p = unsafe { sys::wolfSSL_GetIOReadCtx(ssl) };
    // SAFETY: non-null pointers are our live `Io`.
    (!p.is_null()).then(|| unsafe { &*(p as *const Io) })
}

extern "C" fn psk_server_cb(
    ssl: *mut sys::WOLFSSL,
    identity: *const c_char,
    key: *mut u8,
    max: c_uint,
) -> c_uint {
    if identity.is_null() || key.is_null() {
        return 0;
    }
    let Some(io) = io_of(ssl) else { return 0 };
    // SAFETY: wolfSSL passes the received identity NUL-terminated.
    let id = unsafe { CStr::from_ptr(identity) }.to_bytes();
    match io.psk.table.get(id) {
        // Unknown identity: 0 makes wolfSSL fail the handshake.
        Some(k) if !k.is_empty() && k.len() <= max as usize => {
            // SAFETY: `key` is writable for `max` bytes and k.len() <= max.
            unsafe { std::ptr::copy_nonoverlapping(k.as_ptr(), key, k.len()) };
            // A candidate only: wolfSSL has not checked the client's binder (1.3) or Finished
            // (1.2) yet, nor decided to use a PSK at all.
            *io.psk_accepted.borrow_mut() = Some(id.to_vec());
            k.len() as c_uint
        }
        _ => 0,
    }
}

extern "C" fn psk_client_cb(
    ssl: *mut sys::WOLFSSL,
    _hint: *const c_char,
    identity: *mut c_char,
    id_max: c_uint,
    key: *mut u8,
    key_max: c_uint,
) -> c_uint {
    if identity.is_null() || key.is_null() {
        return 0;
    }
    let Some(io) = io_of(ssl) else { return 0 };
    let Some((id, k)) = &io.psk.client else {
        return 0;
    };
    // The identity is written NUL-terminated, hence `<`.
    if id.len() >= id_max as usize || k.len() > key_max as usize || k.is_empty() {
        return 0;
    }
    // SAFETY: both buffers are writable for their max lengths, checked above.
    unsafe {
        std::ptr::copy_nonoverlapping(id.as_ptr(), identity as *mut u8, id.len());
        *identity.add(id.len()) = 0;
        std::ptr::copy_nonoverlapping(k.as_ptr(), key, k.len());
    }
    k.len() as c_uint
}

/// wolfSSL's ticket callback: seals (`enc` 1) or opens (`enc` 0) wolfSSL's ticket plaintext
/// in place with the session's [`TicketKey`]. Associated data: key name, IV and length.
/// The Poly1305 tag fills the first half of wolfSSL's 32-byte MAC field, zeros the rest.
#[allow(clippy::too_many_arguments)]
extern "C" fn ticket_cb(
    ssl: *mut sys::WOLFSSL,
    key_name: *mut u8,
    iv: *mut u8,
    mac: *mut u8,
    enc: c_int,
    ticket: *mut u8,
    in_len: c_int,
    out_len: *mut c_int,
    _ctx: *mut c_void,
) -> c_int {
    if key_name.is_null() || iv.is_null() || mac.is_null() || ticket.is_null() || in_len <= 0 {
        return sys::WOLFSSL_TICKET_RET_FATAL;
    }
    let Some(io) = io_of(ssl) else {
        return sys::WOLFSSL_TICKET_RET_FATAL;
    };
    let Some(k) = io.tickets.as_deref() else {
        return sys::WOLFSSL_TICKET_RET_REJECT;
    };
    // SAFETY: wolfSSL passes its ExternalTicket fields: key_name (16), iv (16), mac (32)
    // bytes, and `ticket` writable for `*out_len` (sealing: the maximum) or `in_len` bytes.
    let (name, iv, mac) = unsafe {
        (
            &mut *(key_name as *mut [u8; sys::WOLFSSL_TICKET_NAME_SZ]),
            &mut *(iv as *mut [u8; sys::WOLFSSL_TICKET_IV_SZ]),
            &mut *(mac as *mut [u8; sys::WOLFSSL_TICKET_MAC_SZ]),
        )
    };
    // SAFETY: no arguments; constants of this build.
    let internal = unsafe { sys::qeaas_wolfssl_ticket_internal_len() } as usize;
    if enc == 1 {
        // SAFETY: out_len is wolfSSL's valid pointer; it holds the room `ticket` has.
        let room = unsafe { *out_len }.max(0) as usize;
        let (bound, auth_at) = session_bound(ssl, io);
        let bound = bound.encode(auth_at);
        let len = in_len as usize + bound.len();
        if in_len as usize != internal || len > room {
            return sys::WOLFSSL_TICKET_RET_FATAL;
        }
        // SAFETY: `ticket` is writable for `room` >= len bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(ticket, len) };
        buf[internal..].copy_from_slice(&bound);
        name.copy_from_slice(&k.name);
        if getrandom::fill(iv).is_err() {
            return sys::WOLFSSL_TICKET_RET_FATAL;
        }
        let aad = ticket_aad(name, iv, len);
        let plain = zeroize::Zeroizing::new(buf.to_vec());
        mac.fill(0);
        // SAFETY: key 32, nonce 12 (first bytes of the IV), tag 16 bytes; input and output
        // are distinct buffers of `len` bytes.
        let r = unsafe {
            sys::wc_ChaCha20Poly1305_Encrypt(
                k.key.as_ptr(),
                iv.as_ptr(),
                aad.as_ptr(),
                aad.len() as c_uint,
                plain.as_ptr(),
                len as c_uint,
                buf.as_mut_ptr(),
                mac.as_mut_ptr(),
            )
        };
        if r != 0 {
            return sys::WOLFSSL_TICKET_RET_FATAL;
        }
        // SAFETY: out_len is wolfSSL's valid pointer.
        unsafe { *out_len = len as c_int };
        sys::WOLFSSL_TICKET_RET_OK
    } else {
        let len = in_len as usize;
        // SAFETY: `ticket` holds `len` sealed bytes, writable in place.
        let buf = unsafe { std::slice::from_raw_parts_mut(ticket, len) };
        // Another key's ticket (rotated or another server): unknown, a full handshake follows.
        if *name != k.name || mac[16..].iter().any(|&b| b != 0) {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        }
        let aad = ticket_aad(name, iv, len);
        let mut plain = zeroize::Zeroizing::new(vec![0u8; len]);
        // SAFETY: as above, opening into a buffer of our own.
        let r = unsafe {
            sys::wc_ChaCha20Poly1305_Decrypt(
                k.key.as_ptr(),
                iv.as_ptr(),
                aad.as_ptr(),
                aad.len() as c_uint,
                buf.as_ptr(),
                len as c_uint,
                mac.as_ptr(),
                plain.as_mut_ptr(),
            )
        };
        if r != 0 {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        }
        if len < internal {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        }
        // DTLS 1.3 tickets only (wolfSSL's first two bytes: the version, DTLS 1.3 = FE FC).
        if plain[..2] != [0xfe, 0xfc] {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        }
        let Some((bound, auth_at)) = Bound::decode(&plain[internal..]) else {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        };
        // The lifetime counts from the full handshake, not from this ticket (wolfSSL checks
        // that): a chain of resumptions ends with it. A time ahead of ours (beyond a minute of
        // clock steps) is not one we sealed.
        let now = unix_secs();
        if auth_at > now + 60 || now.saturating_sub(auth_at) > u64::from(k.lifetime_secs) {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        }
        if !still_holds(io, &bound) {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        }
        // SAFETY: constant of this build, inside the plaintext (checked by the C compiler's
        // offsetof; the secret is SECRET_LEN bytes).
        let at = unsafe { sys::qeaas_wolfssl_ticket_secret_offset() } as usize;
        let Some(secret) = plain.get(at..at + sys::SECRET_LEN) else {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        };
        let mut opened = io.tickets_opened.borrow_mut();
        if opened.len() >= OPENED_MAX {
            return sys::WOLFSSL_TICKET_RET_REJECT;
        }
        opened.push(Opened {
            secret: zeroize::Zeroizing::new(secret.to_vec()),
            bound,
            auth_at,
        });
        buf[..internal].copy_from_slice(&plain[..internal]);
        // SAFETY: as above; wolfSSL reads only its own plaintext.
        unsafe { *out_len = internal as c_int };
        sys::WOLFSSL_TICKET_RET_OK
    }
}

/// Who the session issuing a ticket is, by the same rules as [`Session::psk_identity`] and
/// [`Session::peer_certificate_names`]: a resumed session passes its ticket's identity on.
fn session_bound(ssl: *mut sys::WOLFSSL, io: &Io) -> (Bound, u64) {
    if let Some(b) = io.resumed_as.borrow().as_ref() {
        return (b.clone(), io.resumed_auth_at.get());
    }
    (fresh_bound(ssl, io), unix_secs())
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who a session that authenticated in full is.
fn fresh_bound(ssl: *mut sys::WOLFSSL, io: &Io) -> Bound {
    // SAFETY: valid session inside its own callback; read only.
    if unsafe { sys::qeaas_wolfssl_psk_negotiated(ssl) } == 1 {
        let id = io.psk_accepted.borrow();
        return match id.as_ref().and_then(|id| Some((id, io.psk.table.get(id)?))) {
            Some((id, key)) => Bound::Psk(id.clone(), sha256(key)),
            None => Bound::Unbindable,
        };
    }
    if io.client_auth != ClientAuth::Off {
        if let (Some(names), Some(ca)) = (peer_names(ssl), io.client_ca) {
            return Bound::Cert(names, ca);
        }
    }
    Bound::Anonymous
}

/// Whether a ticket's identity is still one this server (as configured now, perhaps after a
/// restart) would accept: the PSK identity with the same key; a certificate name under the
/// same client CA; no identity only where client certificates are not required.
fn still_holds(io: &Io, bound: &Bound) -> bool {
    match bound {
        Bound::Anonymous => io.client_auth != ClientAuth::Required,
        Bound::Psk(id, h) => io.psk.table.get(id).is_some_and(|k| sha256(k) == *h),
        Bound::Cert(_, ca) => io.client_auth != ClientAuth::Off && io.client_ca == Some(*ca),
        Bound::Unbindable => false,
    }
}

fn ticket_aad(name: &[u8], iv: &[u8], len: usize) -> Vec<u8> {
    let mut aad = Vec::with_capacity(name.len() + iv.len() + 2);
    aad.extend_from_slice(name);
    aad.extend_from_slice(iv);
    aad.extend_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// The names in the peer's certificate, if it sent one (verified, when the context verifies).
fn peer_names(ssl: *mut sys::WOLFSSL) -> Option<PeerNames> {
    // SAFETY: valid session; returns a copy we own, or NULL.
    let x = NonNull::new(unsafe { sys::wolfSSL_get_peer_certificate(ssl) })?;
    // SAFETY: `x` is valid until freed below; the strings it returns belong to it and
    // are copied by cstr_opt before the free.
    let names = unsafe {
        let cn = cstr_opt(sys::wolfSSL_X509_get_subjectCN(x.as_ptr()));
        let mut alt = Vec::new();
        // Bounded: a certificate has few names, and each call advances wolfSSL's cursor.
        while alt.len() < 64 {
            match cstr_opt(sys::wolfSSL_X509_get_next_altname(x.as_ptr())) {
                Some(n) => alt.push(n),
                None => break,
            }
        }
        sys::wolfSSL_X509_free(x.as_ptr());
        PeerNames { cn, alt }
    };
    Some(names)
}

/// The names in a verified peer certificate, as wolfSSL decoded them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerNames {
    /// The subject's commonName, if any.
    pub cn: Option<String>,
    /// subjectAltName entries (DNS names, and IP addresses and URIs as text).
    pub alt: Vec<String>,
}

/// What a handshake step achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for the peer's next flight.
    WantRead,
    /// The handshake is complete.
    Done,
}

/// One DTLS association (`WOLFSSL`), driven by its owner: feed datagrams in, take datagrams out.
pub struct Session {
    ssl: NonNull<sys::WOLFSSL>,
    /// From `Box::into_raw`, freed in `Drop` after the `WOLFSSL`. Not a `Box`: wolfSSL keeps
    /// this pointer and its callbacks write through it, while a `Box` asserts unique access
    /// each time it is moved or used, which would invalidate wolfSSL's copy (Stacked Borrows).
    /// Rust reaches it only through [`Session::io`] and [`Session::io_mut`], never across a
    /// wolfSSL call.
    io: NonNull<Io>,
    role: Role,
    client_auth: ClientAuth,
    // Dropped after the WOLFSSL is freed (Drop runs before fields drop).
    _ctx: Rc<CtxHandle>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("inbox", &self.io().inbox.len())
            .field("outbox", &self.io().outbox.len())
            .finish()
    }
}

/// `struct sockaddr_in` / `sockaddr_in6` bytes (Linux layout): wolfSSL binds cookies to them.
fn sockaddr_bytes(a: SocketAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(28);
    match a {
        SocketAddr::V4(a) => {
            v.extend_from_slice(&2u16.to_ne_bytes()); // AF_INET
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&[0; 8]);
        }
        SocketAddr::V6(a) => {
            v.extend_from_slice(&10u16.to_ne_bytes()); // AF_INET6
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&a.flowinfo().to_be_bytes());
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&a.scope_id().to_ne_bytes());
        }
    }
    v
}

fn cstr_opt(p: *const c_char) -> Option<String> {
    // SAFETY: wolfSSL returns NULL or a NUL-terminated static/session-owned string, copied here.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
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

    /// A new association on `ctx` with `peer` (the address its datagrams come from / go to).
    pub fn new(ctx: &Context, peer: SocketAddr) -> Result<Session, Error> {
        // SAFETY: valid context, kept alive by the session's `_ctx`.
        let ssl = NonNull::new(unsafe { sys::wolfSSL_new(ctx.ctx.as_ptr()) })
            .ok_or_else(|| error("new", 0))?;
        let io = Box::into_raw(Box::new(Io {
            inbox: VecDeque::new(),
            outbox: Vec::new(),
            psk: ctx.psk.clone(),
            psk_accepted: std::cell::RefCell::new(None),
            tickets: ctx.tickets.clone(),
            client_auth: ctx.client_auth,
            client_ca: ctx.client_ca,
            tickets_opened: std::cell::RefCell::new(Vec::new()),
            resumed_as: std::cell::RefCell::new(None),
            resumed_auth_at: std::cell::Cell::new(0),
        }));
        let mut s = Session {
            ssl,
            // Box::into_raw never returns null.
            io: NonNull::new(io).expect("Box::into_raw is non-null"),
            role: ctx.role,
            client_auth: ctx.client_auth,
            _ctx: ctx.ctx.clone(),
        };
        let io_ptr = io as *mut c_void;
        // SAFETY: valid session; the `Io` allocation outlives the WOLFSSL (freed after it in
        // Drop) and never moves.
        unsafe {
            sys::wolfSSL_SetIOReadCtx(ssl.as_ptr(), io_ptr);
            sys::wolfSSL_SetIOWriteCtx(ssl.as_ptr(), io_ptr);
            // We drive timeouts ourselves (`on_timeout`) instead of blocking reads.
            sys::wolfSSL_dtls_set_using_nonblock(ssl.as_ptr(), 1);
        }
        s.set_peer(peer)?;
        Ok(s)
    }

    /// The peer's address: DTLS 1.2 and 1.3 cookies are bound to it, so a listener reused
    /// for many peers must be told each datagram's source.
    pub fn set_peer(&mut self, peer: SocketAddr) -> Result<(), Error> {
        let mut b = sockaddr_bytes(peer);
        // SAFETY: valid session; wolfSSL copies `len` bytes of the address.
        check("set_peer", unsafe {
            sys::wolfSSL_dtls_set_peer(
                self.ssl.as_ptr(),
                b.as_mut_ptr() as *mut c_void,
                b.len() as c_uint,
            )
        })
    }

    /// Server: the secret that keys DTLS 1.2 HelloVerifyRequest and DTLS 1.3 HelloRetryRequest
    /// cookies. The same secret on every listening session lets a cookie issued by one be
    /// checked by another, so the server keeps no state per unverified peer.
    pub fn set_cookie_secret(&mut self, secret: &[u8]) -> Result<(), Error> {
        let len = c_uint::try_from(secret.len()).map_err(|_| error("cookie secret", 0))?;
        // SAFETY: valid session; wolfSSL copies the secret. Returns 0 on success.
        let r =
            unsafe { sys::wolfSSL_DTLS_SetCookieSecret(self.ssl.as_ptr(), secret.as_ptr(), len) };
        if r != 0 {
            return Err(error("DTLS 1.2 cookie secret", r));
        }
        // SAFETY: as above.
        let r = unsafe { sys::wolfSSL_send_hrr_cookie(self.ssl.as_ptr(), secret.as_ptr(), len) };
        if r < 0 {
            return Err(error("DTLS 1.3 cookie secret", r));
        }
        Ok(())
    }

    /// Client, with [`Context::verify_peer`]: the server's certificate must also name `host`
    /// (an IP address is matched against iPAddress subjectAltNames only, a name against
    /// dNSName entries, or the CN when there are none).
    pub fn expect_host(&mut self, host: &str) -> Result<(), Error> {
        let c = std::ffi::CString::new(host).map_err(|_| Error {
            what: "host name",
            code: 0,
            text: "NUL in host name".into(),
        })?;
        // SAFETY: valid session and NUL-terminated string; wolfSSL copies it.
        check("host name", unsafe {
            if host.parse::<std::net::IpAddr>().is_ok() {
                sys::wolfSSL_check_ip_address(self.ssl.as_ptr(), c.as_ptr())
            } else {
                sys::wolfSSL_check_domain_name(self.ssl.as_ptr(), c.as_ptr())
            }
        })
    }

    /// Client: send a key share for `group` in the first ClientHello (no HelloRetryRequest).
    pub fn use_key_share(&mut self, group: Group) -> Result<(), Error> {
        // SAFETY: valid session.
        check("key share", unsafe {
            sys::wolfSSL_UseKeyShare(self.ssl.as_ptr(), group as u16)
        })
    }

    /// Queues one received datagram (dropped beyond a small bound).
    pub fn feed(&mut self, datagram: &[u8]) {
        let io = self.io_mut();
        if io.inbox.len() < INBOX_MAX {
            io.inbox.push_back(datagram.to_vec());
        }
    }

    /// Datagrams to send to the peer, oldest first.
    pub fn take_datagrams(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.io_mut().outbox)
    }

    /// Server, before any state is kept for the peer: processes the fed ClientHello and
    /// answers with a cookie request, keeping nothing. `Ok(true)` once a ClientHello with a
    /// valid cookie arrived: from then on this session belongs to that peer (call `handshake`).
    pub fn accept_stateless(&mut self) -> Result<bool, Error> {
        // The listener serves many addresses: an identity it recorded belongs only to the
        // ClientHello that verifies its cookie in this call (DTLS 1.3 checks the PSK here).
        *self.io().psk_accepted.borrow_mut() = None;
        self.io().tickets_opened.borrow_mut().clear();
        *self.io().resumed_as.borrow_mut() = None;
        // SAFETY: valid session; callbacks only touch `self.io`.
        let r = unsafe { sys::wolfDTLS_accept_stateless(self.ssl.as_ptr()) };
        match r {
            sys::WOLFSSL_SUCCESS => {
                self.settle_resumption()?;
                self.settle_psk_identity();
                self.adjust_client_auth();
                Ok(true)
            }
            sys::WOLFSSL_FAILURE => Ok(false),
            _ => Err(self.last_error("stateless accept", r)),
        }
    }

    /// Server, once the ClientHello with a valid cookie is processed: when wolfSSL resumes
    /// from a ticket, the identity sealed into the ticket it chose (found by its resumption
    /// secret among those our callback opened for this ClientHello) names the session. A
    /// resumption from a ticket we did not open fails the handshake rather than name no one.
    fn settle_resumption(&mut self) -> Result<(), Error> {
        let mut secret = zeroize::Zeroizing::new([0u8; sys::SECRET_LEN]);
        // SAFETY: valid session; `secret` is writable for its length.
        let n = unsafe {
            sys::qeaas_wolfssl_resumed_secret(
                self.ssl.as_ptr(),
                secret.as_mut_ptr(),
                secret.len() as c_uint,
            )
        };
        let io = self.io();
        let opened = std::mem::take(&mut *io.tickets_opened.borrow_mut());
        if n != sys::SECRET_LEN as c_int {
            return Ok(());
        }
        let found = opened
            .into_iter()
            .find(|o| o.secret.as_slice() == secret.as_slice());
        match found {
            Some(o) => {
                *io.resumed_as.borrow_mut() = Some(o.bound);
                io.resumed_auth_at.set(o.auth_at);
                Ok(())
            }
            None => Err(Error {
                what: "resumption",
                code: 0,
                text: "resumed from a ticket with no identity of ours".into(),
            }),
        }
    }

    /// Server with [`Context::verify_clients`], once the ClientHello is processed and before
    /// anything is sent: the version and cipher suite are known, our CertificateRequest is
    /// still to come. wolfSSL's verify modes fit neither version alone:
    /// - DTLS 1.2 with a PSK suite: wolfSSL would still send a CertificateRequest, which PSK
    ///   suites do not allow (RFC 4279; clients abort with an out-of-order message), so this
    ///   session verifies nothing: the PSK authenticates the client.
    /// - DTLS 1.3 with `require`, in a certificate handshake: FAIL_IF_NO_PEER_CERT
    ///   (FAIL_EXCEPT_PSK is 1.2 only). Not in a PSK handshake (wolfSSL verified the client's
    ///   binder for a PSK: [`Session::psk_negotiated`]): there wolfSSL has switched
    ///   verification off itself, and FAIL_IF_NO_PEER_CERT would fail it at Finished for want
    ///   of a certificate. Whether our PSK callback was asked for a key decides nothing: it is
    ///   asked for identities wolfSSL then does not use.
    fn adjust_client_auth(&mut self) {
        if self.client_auth == ClientAuth::Off {
            return;
        }
        let psk = self.psk_negotiated();
        let mode = match self.version().as_deref() {
            Some("DTLSv1.2") if self.cipher().is_some_and(|c| c.contains("PSK")) => {
                sys::WOLFSSL_VERIFY_NONE
            }
            Some("DTLSv1.3") if self.client_auth == ClientAuth::Required && !psk => {
                sys::WOLFSSL_VERIFY_PEER | sys::WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT
            }
            _ => return,
        };
        // SAFETY: valid session; no callback.
        unsafe { sys::wolfSSL_set_verify(self.ssl.as_ptr(), mode, std::ptr::null()) };
    }

    /// Drives the handshake with whatever was fed.
    pub fn handshake(&mut self) -> Result<Progress, Error> {
        // SAFETY: valid session.
        let r = unsafe {
            match self.role {
                Role::Server => sys::wolfSSL_accept(self.ssl.as_ptr()),
                Role::Client => sys::wolfSSL_connect(self.ssl.as_ptr()),
            }
        };
        if r == sys::WOLFSSL_SUCCESS {
            return Ok(Progress::Done);
        }
        // SAFETY: valid session.
        match unsafe { sys::wolfSSL_get_error(self.ssl.as_ptr(), r) } {
            sys::WOLFSSL_ERROR_WANT_READ | sys::WOLFSSL_ERROR_WANT_WRITE => Ok(Progress::WantRead),
            e => Err(error("handshake", e)),
        }
    }

    /// Whether the handshake has completed.
    pub fn is_established(&self) -> bool {
        // SAFETY: valid session.
        unsafe { sys::wolfSSL_is_init_finished(self.ssl.as_ptr()) == 1 }
    }

    /// Decrypts the next application record from what was fed. `Ok(None)`: nothing (yet);
    /// `Err` with [`Error::code`] 0 and `what == "closed"` after the peer's close_notify.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: valid session; buf is writable for len bytes.
        let r =
            unsafe { sys::wolfSSL_read(self.ssl.as_ptr(), buf.as_mut_ptr() as *mut c_void, len) };
        if r > 0 {
            return Ok(Some(r as usize));
        }
        // SAFETY: valid session.
        match unsafe { sys::wolfSSL_get_error(self.ssl.as_ptr(), r) } {
            sys::WOLFSSL_ERROR_WANT_READ | sys::WOLFSSL_ERROR_WANT_WRITE => Ok(None),
            sys::WOLFSSL_ERROR_ZERO_RETURN => Err(Error {
                what: "closed",
                code: 0,
                text: "peer sent close_notify".into(),
            }),
            e => Err(error("read", e)),
        }
    }

    /// Encrypts `data` as one record (one datagram).
    pub fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        let len = c_int::try_from(data.len()).map_err(|_| error("write", 0))?;
        // SAFETY: valid session; data readable for len bytes.
        let r =
            unsafe { sys::wolfSSL_write(self.ssl.as_ptr(), data.as_ptr() as *const c_void, len) };
        if r == len {
            Ok(())
        } else {
            Err(self.last_error("write", r))
        }
    }

    /// Sends close_notify (best effort).
    pub fn close(&mut self) {
        // SAFETY: valid session.
        unsafe { sys::wolfSSL_shutdown(self.ssl.as_ptr()) };
    }

    /// Seconds until the handshake retransmission timer fires.
    pub fn timeout_secs(&mut self) -> u32 {
        // SAFETY: valid session.
        let t = unsafe { sys::wolfSSL_dtls_get_current_timeout(self.ssl.as_ptr()) };
        t.max(1) as u32
    }

    /// The retransmission timer fired: resend the last flight (queued as datagrams).
    pub fn on_timeout(&mut self) -> Result<(), Error> {
        // SAFETY: valid session.
        let r = unsafe { sys::wolfSSL_dtls_got_timeout(self.ssl.as_ptr()) };
        if r == sys::WOLFSSL_SUCCESS {
            Ok(())
        } else {
            Err(self.last_error("timeout", r))
        }
    }

    /// Negotiated version, e.g. `DTLSv1.3`.
    pub fn version(&self) -> Option<String> {
        // SAFETY: valid session.
        cstr_opt(unsafe { sys::wolfSSL_get_version(self.ssl.as_ptr()) })
    }

    /// Negotiated cipher suite.
    pub fn cipher(&self) -> Option<String> {
        // SAFETY: valid session.
        cstr_opt(unsafe { sys::wolfSSL_get_cipher_name(self.ssl.as_ptr()) })
    }

    /// Negotiated key-exchange group, if any (none with plain PSK).
    pub fn group(&self) -> Option<String> {
        // SAFETY: valid session.
        cstr_opt(unsafe { sys::wolfSSL_get_curve_name(self.ssl.as_ptr()) })
    }

    /// Server: the PSK identity the peer authenticated with, once the handshake is done; `None`
    /// for a handshake that did not use a PSK. An identity names a session only when the key
    /// schedule used that PSK: in DTLS 1.3 wolfSSL verified the client's binder
    /// ([`Session::psk_negotiated`]); in DTLS 1.2 a PSK cipher suite completed, whose Finished
    /// messages prove the key. That wolfSSL asked our callback for an identity's key is no proof.
    pub fn psk_identity(&self) -> Option<String> {
        if self.role != Role::Server || !self.is_established() {
            return None;
        }
        if let Some(b) = self.io().resumed_as.borrow().as_ref() {
            return match b {
                Bound::Psk(id, _) => Some(String::from_utf8_lossy(id).into_owned()),
                _ => None,
            };
        }
        let used = match self.version().as_deref() {
            Some("DTLSv1.3") => self.psk_negotiated(),
            Some("DTLSv1.2") => self.cipher().is_some_and(|c| c.contains("PSK")),
            _ => false,
        };
        if !used {
            return None;
        }
        if let Some(id) = self.io().psk_accepted.borrow().as_ref() {
            return Some(String::from_utf8_lossy(id).into_owned());
        }
        // SAFETY: valid session.
        cstr_opt(unsafe { sys::wolfSSL_get_psk_identity(self.ssl.as_ptr()) })
    }

    /// Whether this (D)TLS 1.3 handshake uses a PSK, as wolfSSL decided after verifying the
    /// client's binder for it (always false in 1.2, and before the ClientHello is processed).
    pub fn psk_negotiated(&self) -> bool {
        // SAFETY: valid session; the function only reads it.
        unsafe { sys::qeaas_wolfssl_psk_negotiated(self.ssl.as_ptr()) == 1 }
    }

    /// Server, DTLS 1.3, once the ClientHello with a valid cookie is processed: the identity
    /// candidate becomes the one wolfSSL chose and verified (wolfSSL still holds it now, not
    /// after the handshake), or nothing when no PSK is used. DTLS 1.2 sends its identity
    /// later (ClientKeyExchange): left to [`Session::psk_identity`].
    fn settle_psk_identity(&mut self) {
        if self.role != Role::Server || self.version().as_deref() != Some("DTLSv1.3") {
            return;
        }
        // A resumption's "PSK identity" is its ticket: the ticket's identity names it.
        if self.io().resumed_as.borrow().is_some() {
            *self.io().psk_accepted.borrow_mut() = None;
            return;
        }
        let chosen = if self.psk_negotiated() {
            // SAFETY: valid session; NULL or a NUL-terminated string it owns, copied here.
            let p = unsafe { sys::wolfSSL_get_psk_identity(self.ssl.as_ptr()) };
            // SAFETY: as above.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
        } else {
            None
        };
        *self.io().psk_accepted.borrow_mut() = chosen;
    }

    /// Server with [`Context::verify_clients`], after the handshake: the names in the
    /// client's certificate, which wolfSSL verified against the CA (a certificate that fails
    /// verification fails the handshake). `None` when the client showed no certificate, or
    /// when this context does not verify clients (a certificate it did not check names no one).
    pub fn peer_certificate_names(&self) -> Option<PeerNames> {
        if self.client_auth == ClientAuth::Off || self.role != Role::Server {
            return None;
        }
        if let Some(b) = self.io().resumed_as.borrow().as_ref() {
            return match b {
                Bound::Cert(names, _) => Some(names.clone()),
                _ => None,
            };
        }
        peer_names(self.ssl.as_ptr())
    }

    /// Whether this handshake resumed a session from a ticket. Server: exactly when it
    /// resumed from a ticket our callback opened and whose identity now names the session
    /// (wolfSSL's own flag also turned true after a handshake with an external PSK, when the
    /// client offered a ticket beside it). Client: wolfSSL's flag.
    pub fn resumed(&self) -> bool {
        if self.role == Role::Server {
            return self.io().resumed_as.borrow().is_some();
        }
        // SAFETY: valid session; read only.
        unsafe { sys::wolfSSL_session_reused(self.ssl.as_ptr()) == 1 }
    }

    /// Client, once the server's NewSessionTicket was read (it arrives after the handshake:
    /// call [`Session::read`] first): this session and its ticket, to resume a later session
    /// with. `None` when no ticket came. DTLS 1.2: the session, to resume by its ID.
    pub fn resumption(&self) -> Option<Resumption> {
        let by_id = self.version().as_deref() == Some("DTLSv1.2");
        if self.role != Role::Client || (self.ticket_len() == 0 && !by_id) {
            return None;
        }
        // SAFETY: valid session; returns a new reference (freed by Resumption's Drop) or NULL.
        NonNull::new(unsafe { sys::wolfSSL_get1_session(self.ssl.as_ptr()) }).map(Resumption)
    }

    /// Client: the size of the ticket this session holds (0 without one).
    pub fn ticket_len(&self) -> usize {
        let mut len: c_uint = 0;
        // SAFETY: valid session; NULL buffer asks for the length only.
        unsafe {
            sys::wolfSSL_get_SessionTicket(self.ssl.as_ptr(), std::ptr::null_mut(), &mut len)
        };
        len as usize
    }

    /// Client, before the handshake: offer `r`'s ticket (a server that cannot open it answers
    /// with a full handshake).
    pub fn resume(&mut self, r: &Resumption) -> Result<(), Error> {
        // SAFETY: valid session and session object; wolfSSL copies what it needs.
        check("resume", unsafe {
            sys::wolfSSL_set_session(self.ssl.as_ptr(), r.0.as_ptr())
        })
    }

    fn last_error(&self, what: &'static str, ret: c_int) -> Error {
        // SAFETY: valid session.
        error(what, unsafe {
            sys::wolfSSL_get_error(self.ssl.as_ptr(), ret)
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the WOLFSSL is freed first, so no callback can see the `Io` after it is
        // freed; `io` came from Box::into_raw in `new` and is freed once, here.
        unsafe {
            sys::wolfSSL_free(self.ssl.as_ptr());
            drop(Box::from_raw(self.io.as_ptr()));
        }
    }
}

/// An ML-DSA-44 key pair (FIPS 204), generated by wolfCrypt: for certificates of devices and
/// servers, and for tests.
pub struct MlDsa44 {
    key: NonNull<sys::MlDsaKey>,
    rng: NonNull<sys::WC_RNG>,
}

impl std::fmt::Debug for MlDsa44 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MlDsa44 { .. }")
    }
}

/// ML-DSA-44 public key size.
pub const MLDSA44_PUBLIC_LEN: usize = 1312;
/// ML-DSA-44 signature size.
pub const MLDSA44_SIGNATURE_LEN: usize = 2420;

fn wc(what: &'static str, r: c_int) -> Result<(), Error> {
    if r == 0 {
        Ok(())
    } else {
        Err(error(what, r))
    }
}

impl MlDsa44 {
    /// A fresh key pair from wolfCrypt's DRBG (seeded by the OS).
    pub fn generate() -> Result<MlDsa44, Error> {
        init();
        // SAFETY: no nonce, default heap; NULL on failure.
        let rng =
            NonNull::new(unsafe { sys::wc_rng_new(std::ptr::null_mut(), 0, std::ptr::null_mut()) })
                .ok_or_else(|| error("RNG", 0))?;
        // SAFETY: default heap, no device (-2 = INVALID_DEVID).
        let key = match NonNull::new(unsafe { sys::wc_MlDsaKey_New(std::ptr::null_mut(), -2) }) {
            Some(k) => k,
            None => {
                // SAFETY: rng came from wc_rng_new and is not used again.
                unsafe { sys::wc_rng_free(rng.as_ptr()) };
                return Err(error("ML-DSA key", 0));
            }
        };
        let k = MlDsa44 { key, rng };
        // SAFETY: valid key and RNG owned by `k`.
        unsafe {
            wc(
                "ML-DSA level",
                sys::wc_MlDsaKey_SetParams(k.key.as_ptr(), sys::WC_ML_DSA_44),
            )?;
            wc(
                "ML-DSA keygen",
                sys::wc_MlDsaKey_MakeKey(k.key.as_ptr(), k.rng.as_ptr()),
            )?;
        }
        Ok(k)
    }

    /// The raw public key (1312 bytes).
    pub fn public_raw(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; MLDSA44_PUBLIC_LEN];
        let mut len = out.len() as c_uint;
        // SAFETY: `out` is writable for `len` bytes; wolfSSL updates `len`.
        wc("ML-DSA public key", unsafe {
            sys::wc_MlDsaKey_ExportPubRaw(self.key.as_ptr(), out.as_mut_ptr(), &mut len)
        })?;
        out.truncate(len as usize);
        Ok(out)
    }

    /// The private key, DER (PKCS#8), as `Context::use_private_key` takes it.
    pub fn private_der(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; 8192];
        // SAFETY: `out` is writable for its length; returns the DER size or a negative error.
        let n = unsafe {
            sys::wc_MlDsaKey_PrivateKeyToDer(
                self.key.as_ptr(),
                out.as_mut_ptr(),
                out.len() as c_uint,
            )
        };
        if n <= 0 {
            return Err(error("ML-DSA private key DER", n));
        }
        out.truncate(n as usize);
        Ok(out)
    }

    /// A pure ML-DSA signature of `msg` with an empty context (as X.509 uses).
    pub fn sign(&mut self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let mut sig = vec![0u8; MLDSA44_SIGNATURE_LEN];
        let mut len = sig.len() as c_uint;
        let msg_len = c_uint::try_from(msg.len()).map_err(|_| error("ML-DSA sign", 0))?;
        // SAFETY: valid key and RNG; `sig` writable for `len`; `msg` readable for msg_len.
        wc("ML-DSA sign", unsafe {
            sys::wc_MlDsaKey_SignCtx(
                self.key.as_ptr(),
                std::ptr::null(),
                0,
                sig.as_mut_ptr(),
                &mut len,
                msg.as_ptr(),
                msg_len,
                self.rng.as_ptr(),
            )
        })?;
        sig.truncate(len as usize);
        Ok(sig)
    }
}

impl Drop for MlDsa44 {
    fn drop(&mut self) {
        // SAFETY: both were allocated by wolfCrypt's constructors and are freed once here.
        unsafe {
            sys::wc_MlDsaKey_Delete(self.key.as_ptr(), std::ptr::null_mut());
            sys::wc_rng_free(self.rng.as_ptr());
        }
    }
}
