//! Raw declarations of the wolfSSL 5.9.4 client functions a bare-metal DTLS client needs
//! (`wolfssl/ssl.h`), usable without `std`. The host wrapper [`crate::wolf`] uses these and
//! declares only what the host adds (server side, certificates, wolfCrypt): one declaration per
//! C function. Safe use is the caller's job (the firmware's DTLS glue, `qeaas-device-dtls`).
#![allow(
    unsafe_code,
    non_camel_case_types,
    missing_docs,
    missing_debug_implementations
)]

use core::ffi::{c_char, c_int, c_long, c_uchar, c_uint, c_ulong, c_void};

#[repr(C)]
pub struct WOLFSSL_METHOD {
    _p: [u8; 0],
}
#[repr(C)]
pub struct WOLFSSL_CTX {
    _p: [u8; 0],
}
#[repr(C)]
pub struct WOLFSSL {
    _p: [u8; 0],
}

/// I/O callback: `(ssl, buf, sz, ctx)`, returns bytes moved or a `CBIO_ERR_*`.
pub type IoCb = extern "C" fn(*mut WOLFSSL, *mut c_char, c_int, *mut c_void) -> c_int;
/// PSK client callback: `(ssl, hint, identity, id_max, key, key_max)`, returns the key length.
pub type PskClientCb =
    extern "C" fn(*mut WOLFSSL, *const c_char, *mut c_char, c_uint, *mut c_uchar, c_uint) -> c_uint;

pub const WOLFSSL_SUCCESS: c_int = 1;
pub const WOLFSSL_FILETYPE_PEM: c_int = 1;
pub const WOLFSSL_FILETYPE_ASN1: c_int = 2;
pub const WOLFSSL_VERIFY_NONE: c_int = 0;
pub const WOLFSSL_VERIFY_PEER: c_int = 1;
pub const WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT: c_int = 2;
pub const WOLFSSL_ERROR_WANT_READ: c_int = 2;
pub const WOLFSSL_ERROR_WANT_WRITE: c_int = 3;
pub const WOLFSSL_ERROR_ZERO_RETURN: c_int = 6;
/// `WOLFSSL_CBIO_ERR_WANT_READ`: the I/O callback has nothing now.
pub const CBIO_ERR_WANT_READ: c_int = -2;
/// `WOLFSSL_CBIO_ERR_GENERAL`.
pub const CBIO_ERR_GENERAL: c_int = -1;

/// Key-exchange groups (IANA code points), as `wolfSSL_UseKeyShare` and `set_groups` take them.
pub const GROUP_SECP256R1: u16 = 23;
pub const GROUP_ML_KEM_512: u16 = 512;

extern "C" {
    pub fn wolfSSL_Init() -> c_int;
    pub fn wolfDTLSv1_3_client_method() -> *mut WOLFSSL_METHOD;
    pub fn wolfSSL_CTX_new(m: *mut WOLFSSL_METHOD) -> *mut WOLFSSL_CTX;
    pub fn wolfSSL_CTX_free(ctx: *mut WOLFSSL_CTX);
    pub fn wolfSSL_CTX_set_psk_client_callback(ctx: *mut WOLFSSL_CTX, cb: PskClientCb);
    pub fn wolfSSL_CTX_load_verify_buffer(
        ctx: *mut WOLFSSL_CTX,
        buf: *const c_uchar,
        sz: c_long,
        format: c_int,
    ) -> c_int;
    pub fn wolfSSL_CTX_set_verify(ctx: *mut WOLFSSL_CTX, mode: c_int, cb: *const c_void);
    pub fn wolfSSL_CTX_set_groups(ctx: *mut WOLFSSL_CTX, groups: *mut c_int, count: c_int)
        -> c_int;
    pub fn wolfSSL_CTX_SetIORecv(ctx: *mut WOLFSSL_CTX, cb: IoCb);
    pub fn wolfSSL_CTX_SetIOSend(ctx: *mut WOLFSSL_CTX, cb: IoCb);

    pub fn wolfSSL_new(ctx: *mut WOLFSSL_CTX) -> *mut WOLFSSL;
    pub fn wolfSSL_free(ssl: *mut WOLFSSL);
    pub fn wolfSSL_SetIOReadCtx(ssl: *mut WOLFSSL, ctx: *mut c_void);
    pub fn wolfSSL_SetIOWriteCtx(ssl: *mut WOLFSSL, ctx: *mut c_void);
    pub fn wolfSSL_GetIOReadCtx(ssl: *mut WOLFSSL) -> *mut c_void;
    pub fn wolfSSL_dtls_set_using_nonblock(ssl: *mut WOLFSSL, nonblock: c_int);
    pub fn wolfSSL_UseKeyShare(ssl: *mut WOLFSSL, group: u16) -> c_int;
    pub fn wolfSSL_connect(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_read(ssl: *mut WOLFSSL, buf: *mut c_void, sz: c_int) -> c_int;
    pub fn wolfSSL_write(ssl: *mut WOLFSSL, buf: *const c_void, sz: c_int) -> c_int;
    pub fn wolfSSL_shutdown(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_get_error(ssl: *mut WOLFSSL, ret: c_int) -> c_int;
    pub fn wolfSSL_is_init_finished(ssl: *const WOLFSSL) -> c_int;
    pub fn wolfSSL_dtls_get_current_timeout(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_dtls_got_timeout(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_get_version(ssl: *const WOLFSSL) -> *const c_char;
    pub fn wolfSSL_get_cipher_name(ssl: *mut WOLFSSL) -> *const c_char;
    pub fn wolfSSL_get_curve_name(ssl: *mut WOLFSSL) -> *const c_char;
    pub fn wolfSSL_ERR_error_string_n(e: c_ulong, buf: *mut c_char, sz: c_ulong);
}
