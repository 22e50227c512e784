//! The C ABI: OpenSSL 3 provider entry points, dispatch tables, and OSSL_PARAM helpers. The only
//! module with `unsafe`. Every `extern "C"` function that does more than return a static table
//! or a constant runs its body under `catch_unwind`, so no panic crosses into OpenSSL: a panic
//! becomes the function's failure value.
//!
//! Function ids and signatures follow OpenSSL's `include/openssl/core_dispatch.h` (3.0 and 3.5
//! agree on every id used here; `OSSL_FUNC_PROVIDER_RANDOM_BYTES` exists from 3.5 on and is
//! ignored by older cores). The structs are written here rather than taken from bindings: this
//! library is loaded *into* libcrypto and must not link it.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::source::Settings;
use crate::{Provider, Rand, Refused, MAX_REQUEST, STRENGTH};

// ---- C structs (include/openssl/core.h) ----

type Fn0 = unsafe extern "C" fn();

/// `OSSL_DISPATCH`.
#[repr(C)]
pub struct OsslDispatch {
    function_id: c_int,
    function: Option<Fn0>,
}

/// `OSSL_ALGORITHM`.
#[repr(C)]
pub struct OsslAlgorithm {
    names: *const c_char,
    property_definition: *const c_char,
    implementation: *const OsslDispatch,
    description: *const c_char,
}

/// `OSSL_PARAM`.
#[repr(C)]
pub struct OsslParam {
    key: *const c_char,
    data_type: c_uint,
    data: *mut c_void,
    data_size: usize,
    return_size: usize,
}

/// `OSSL_ITEM`.
#[repr(C)]
pub struct OsslItem {
    id: c_uint,
    ptr: *const c_void,
}

const PARAM_INTEGER: c_uint = 1;
const PARAM_UNSIGNED_INTEGER: c_uint = 2;
const PARAM_UTF8_STRING: c_uint = 4;
const PARAM_UTF8_PTR: c_uint = 6;
const PARAM_UNMODIFIED: usize = usize::MAX;

// Core functions offered to the provider (OSSL_FUNC_CORE_*).
const CORE_GET_PARAMS: c_int = 2;
const CORE_NEW_ERROR: c_int = 5;
const CORE_SET_ERROR_DEBUG: c_int = 6;
const CORE_VSET_ERROR: c_int = 7;

// Provider functions (OSSL_FUNC_PROVIDER_*).
const PROVIDER_TEARDOWN: c_int = 1024;
const PROVIDER_GETTABLE_PARAMS: c_int = 1025;
const PROVIDER_GET_PARAMS: c_int = 1026;
const PROVIDER_QUERY_OPERATION: c_int = 1027;
const PROVIDER_GET_REASON_STRINGS: c_int = 1029;
const PROVIDER_RANDOM_BYTES: c_int = 1032;

const OP_RAND: c_int = 5;

// RAND functions (OSSL_FUNC_RAND_*).
const RAND_NEWCTX: c_int = 1;
const RAND_FREECTX: c_int = 2;
const RAND_INSTANTIATE: c_int = 3;
const RAND_UNINSTANTIATE: c_int = 4;
const RAND_GENERATE: c_int = 5;
const RAND_RESEED: c_int = 6;
const RAND_ENABLE_LOCKING: c_int = 8;
const RAND_LOCK: c_int = 9;
const RAND_UNLOCK: c_int = 10;
const RAND_GETTABLE_CTX_PARAMS: c_int = 12;
const RAND_GET_CTX_PARAMS: c_int = 15;
const RAND_GET_SEED: c_int = 18;
const RAND_CLEAR_SEED: c_int = 19;

/// Reason codes and their texts, as OpenSSL prints them.
const REASON_CONFIG: u32 = 6;
const REASON_PANIC: u32 = 8;

/// A static holding raw pointers to other statics.
#[repr(transparent)]
struct Static<T>(T);
// SAFETY: the wrapped tables are immutable and point only at other immutable statics
// (string literals, functions, tables), so sharing them between threads is sound.
unsafe impl<T> Sync for Static<T> {}

static REASONS: Static<[OsslItem; 10]> = Static([
    item(1, c"qeaasd unreachable"),
    item(2, c"qeaasd entropy source failed"),
    item(3, c"qeaasd not enough entropy"),
    item(4, c"qeaasd refused or protocol error"),
    item(5, c"fallback failed"),
    item(REASON_CONFIG, c"invalid configuration"),
    item(7, c"unsupported request"),
    item(REASON_PANIC, c"internal error"),
    item(9, c"qeaasd socket not trusted"),
    OsslItem {
        id: 0,
        ptr: std::ptr::null(),
    },
]);

const fn item(id: u32, text: &'static CStr) -> OsslItem {
    OsslItem {
        id,
        ptr: text.as_ptr().cast(),
    }
}

// ---- the core's functions, kept per provider instance ----

type CoreGetParams = unsafe extern "C" fn(*const c_void, *mut OsslParam) -> c_int;
type CoreNewError = unsafe extern "C" fn(*const c_void);
type CoreSetErrorDebug = unsafe extern "C" fn(*const c_void, *const c_char, c_int, *const c_char);

#[cfg(target_arch = "x86_64")]
mod va {
    /// One element of the SysV x86-64 `va_list` array; a `va_list` argument is a pointer to it.
    #[repr(C)]
    pub struct Tag {
        gp_offset: u32,
        fp_offset: u32,
        overflow_arg_area: *mut std::ffi::c_void,
        reg_save_area: *mut std::ffi::c_void,
    }
    pub type VaList = *mut Tag;
    /// Calls `f` with an empty argument list. It is never read: the format has no conversions.
    pub fn with_empty<R>(f: impl FnOnce(VaList) -> R) -> R {
        let mut t = Tag {
            gp_offset: 48,  // all six integer registers used up
            fp_offset: 304, // all eight vector registers used up
            overflow_arg_area: std::ptr::null_mut(),
            reg_save_area: std::ptr::null_mut(),
        };
        f(&mut t)
    }
}

#[cfg(all(target_arch = "aarch64", not(target_vendor = "apple")))]
mod va {
    /// AAPCS64 `va_list` (passed by value).
    #[repr(C)]
    pub struct VaList {
        stack: *mut std::ffi::c_void,
        gr_top: *mut std::ffi::c_void,
        vr_top: *mut std::ffi::c_void,
        gr_offs: i32,
        vr_offs: i32,
    }
    /// Calls `f` with an empty argument list. It is never read: the format has no conversions.
    pub fn with_empty<R>(f: impl FnOnce(VaList) -> R) -> R {
        f(VaList {
            stack: std::ptr::null_mut(),
            gr_top: std::ptr::null_mut(),
            vr_top: std::ptr::null_mut(),
            gr_offs: 0,
            vr_offs: 0,
        })
    }
}

#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", not(target_vendor = "apple"))
))]
type CoreVsetError = unsafe extern "C" fn(*const c_void, u32, *const c_char, va::VaList);
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", not(target_vendor = "apple"))
)))]
type CoreVsetError = unsafe extern "C" fn();

/// The core handle and the error functions it offered.
struct Core {
    handle: *const c_void,
    new_error: Option<CoreNewError>,
    set_error_debug: Option<CoreSetErrorDebug>,
    vset_error: Option<CoreVsetError>,
}

// SAFETY: `handle` is an opaque token OpenSSL keeps valid until teardown and accepts from any
// thread; the core's error functions write to the calling thread's error queue.
unsafe impl Send for Core {}
// SAFETY: as above; `Core` is never mutated after init.
unsafe impl Sync for Core {}

impl Core {
    /// Puts an error on the calling thread's OpenSSL error queue.
    fn raise(&self, reason: u32, func: &CStr, text: &str) {
        let Some(new_error) = self.new_error else {
            return;
        };
        // SAFETY: functions offered by the core for this handle, called with valid C strings.
        unsafe {
            new_error(self.handle);
            if let Some(debug) = self.set_error_debug {
                debug(self.handle, c"qeaas-provider".as_ptr(), 0, func.as_ptr());
            }
        }
        #[cfg(any(
            target_arch = "x86_64",
            all(target_arch = "aarch64", not(target_vendor = "apple"))
        ))]
        if let Some(vset) = self.vset_error {
            // The text is passed as the format: escape conversions so none is interpreted and
            // the (empty) argument list is never read.
            let fmt = CString::new(text.replace('%', "%%").replace('\0', "")).unwrap_or_default();
            // SAFETY: valid handle and NUL-terminated format without conversions.
            va::with_empty(|ap| unsafe { vset(self.handle, reason, fmt.as_ptr(), ap) });
        }
        #[cfg(not(any(
            target_arch = "x86_64",
            all(target_arch = "aarch64", not(target_vendor = "apple"))
        )))]
        let _ = (reason, text, self.vset_error);
    }
}

/// What `provctx` points to: an `Arc` leaked at init and reclaimed at teardown. RAND contexts
/// hold clones, so the provider outlives every context even if OpenSSL frees them late.
struct ProvCtx {
    core: Core,
    prov: Arc<Provider>,
}

struct RandCtx {
    provctx: Arc<ProvCtx>,
    rand: Rand,
}

/// Runs `f`, turning a panic into `fail` (and an "internal error" on the queue when possible).
fn guard<R>(core: Option<&Core>, fail: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            if let Some(c) = core {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    c.raise(
                        REASON_PANIC,
                        c"qeaas",
                        "qeaas provider: internal error (panic)",
                    )
                }));
            }
            fail
        }
    }
}

/// # Safety
/// `p` is null or a `provctx` returned by `OSSL_provider_init` and not yet torn down.
unsafe fn provctx<'a>(p: *mut c_void) -> Option<&'a ProvCtx> {
    // SAFETY: per the contract above, a non-null `p` came from `Arc::into_raw` and is alive.
    unsafe { p.cast::<ProvCtx>().cast_const().as_ref() }
}

/// # Safety
/// `p` is null or a context returned by `rand_newctx` and not yet freed.
unsafe fn randctx<'a>(p: *mut c_void) -> Option<&'a RandCtx> {
    // SAFETY: per the contract above, a non-null `p` came from `Box::into_raw` and is alive.
    unsafe { p.cast::<RandCtx>().cast_const().as_ref() }
}

/// # Safety
/// `p` is null or valid for `len` bytes (readable; writable when `mut` is used).
unsafe fn bytes_mut<'a>(p: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    // SAFETY: per the contract, `p` is valid for `len` bytes and not aliased during the call.
    (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p, len) })
}

fn report(core: &Core, func: &CStr, e: Refused) {
    core.raise(e.reason, func, &e.text);
}

// ---- OSSL_PARAM helpers (OpenSSL's OSSL_PARAM_set_* semantics for the types used here) ----

/// Iterates a `params` array up to its terminating element (null key).
///
/// # Safety
/// `params` is null or a valid, terminated `OSSL_PARAM` array that outlives the iteration.
unsafe fn each_param(
    params: *mut OsslParam,
    mut f: impl FnMut(&CStr, &mut OsslParam) -> bool,
) -> bool {
    if params.is_null() {
        return true;
    }
    let mut p = params;
    loop {
        // SAFETY: `p` is within the terminated array (we stop at the terminator).
        let param = unsafe { &mut *p };
        if param.key.is_null() {
            return true;
        }
        // SAFETY: a non-null key is a NUL-terminated string.
        let key = unsafe { CStr::from_ptr(param.key) };
        if !f(key, param) {
            return false;
        }
        // SAFETY: not the terminator, so the next element exists.
        p = unsafe { p.add(1) };
    }
}

/// Sets an integer parameter of C type int/unsigned/size_t (4 or 8 bytes).
fn set_uint(p: &mut OsslParam, v: u64) -> bool {
    if p.data_type != PARAM_INTEGER && p.data_type != PARAM_UNSIGNED_INTEGER {
        return false;
    }
    p.return_size = p.data_size;
    if p.data.is_null() {
        return true;
    }
    let signed = p.data_type == PARAM_INTEGER;
    match p.data_size {
        4 => {
            let ok = if signed {
                v <= i32::MAX as u64
            } else {
                v <= u64::from(u32::MAX)
            };
            if ok {
                // SAFETY: `data` points to `data_size` (= 4) writable bytes, maybe unaligned.
                unsafe { p.data.cast::<u32>().write_unaligned(v as u32) };
            }
            ok
        }
        8 => {
            let ok = !signed || v <= i64::MAX as u64;
            if ok {
                // SAFETY: `data` points to `data_size` (= 8) writable bytes, maybe unaligned.
                unsafe { p.data.cast::<u64>().write_unaligned(v) };
            }
            ok
        }
        _ => false,
    }
}

/// Sets a UTF-8 parameter to a static string (pointer or copied string).
fn set_utf8(p: &mut OsslParam, s: &'static CStr) -> bool {
    let len = s.to_bytes().len();
    match p.data_type {
        PARAM_UTF8_PTR => {
            p.return_size = len;
            if !p.data.is_null() {
                // SAFETY: for UTF8_PTR, `data` points to a `const char *` slot.
                unsafe { p.data.cast::<*const c_char>().write_unaligned(s.as_ptr()) };
            }
            true
        }
        PARAM_UTF8_STRING => {
            p.return_size = len;
            if p.data.is_null() {
                return true;
            }
            if p.data_size <= len {
                return false;
            }
            // SAFETY: `data` has `data_size` > `len` writable bytes; copy the string and its NUL.
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), p.data.cast(), len + 1) };
            true
        }
        _ => false,
    }
}

const fn describe(key: &'static CStr, data_type: c_uint, data_size: usize) -> OsslParam {
    OsslParam {
        key: key.as_ptr(),
        data_type,
        data: std::ptr::null_mut(),
        data_size,
        return_size: PARAM_UNMODIFIED,
    }
}

const END: OsslParam = OsslParam {
    key: std::ptr::null(),
    data_type: 0,
    data: std::ptr::null_mut(),
    data_size: 0,
    return_size: 0,
};

static PROVIDER_PARAMS: Static<[OsslParam; 5]> = Static([
    describe(c"name", PARAM_UTF8_PTR, 0),
    describe(c"version", PARAM_UTF8_PTR, 0),
    describe(c"buildinfo", PARAM_UTF8_PTR, 0),
    describe(c"status", PARAM_INTEGER, std::mem::size_of::<c_int>()),
    END,
]);

static RAND_CTX_PARAMS: Static<[OsslParam; 4]> = Static([
    describe(c"state", PARAM_INTEGER, std::mem::size_of::<c_int>()),
    describe(
        c"strength",
        PARAM_UNSIGNED_INTEGER,
        std::mem::size_of::<c_uint>(),
    ),
    describe(
        c"max_request",
        PARAM_UNSIGNED_INTEGER,
        std::mem::size_of::<usize>(),
    ),
    END,
]);

const NAME: &CStr = c"qeaas: qeaasd entropy socket (RAND QEAAS)";
const VERSION: &CStr = {
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("version"),
    }
};

// ---- the entry point ----

/// `name` from the environment, unless the process runs with AT_SECURE (setuid, setgid or file
/// capabilities): then the environment belongs to a less privileged caller and is ignored, as
/// OpenSSL's own `ossl_safe_getenv` does.
fn safe_getenv(name: &str) -> Option<String> {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave the process; no pointers.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        return None;
    }
    std::env::var(name).ok()
}

/// Reads this provider's configuration values (`[qeaas_sect] socket = ...`) from the core.
///
/// # Safety
/// `get` and `handle` come from the core's `in` table of this init call.
unsafe fn read_config(get: Option<CoreGetParams>, handle: *const c_void) -> [Option<String>; 5] {
    let keys = [c"socket", c"fallback", c"wait_ms", c"batch", c"daemon_user"];
    let mut vals: [*const c_char; 5] = [std::ptr::null(); 5];
    let Some(get) = get else {
        return Default::default();
    };
    let mut params: Vec<OsslParam> = keys
        .iter()
        .zip(vals.iter_mut())
        .map(|(k, v)| OsslParam {
            key: k.as_ptr(),
            data_type: PARAM_UTF8_PTR,
            data: (v as *mut *const c_char).cast(),
            data_size: 0,
            return_size: PARAM_UNMODIFIED,
        })
        .collect();
    params.push(END);
    // SAFETY: a terminated array whose `data` slots are live `*const c_char`s in `vals`.
    if unsafe { get(handle, params.as_mut_ptr()) } == 0 {
        return Default::default();
    }
    drop(params);
    vals.map(|v| {
        // SAFETY: the core set each found key's slot to a NUL-terminated string it owns for the
        // provider's lifetime; unset slots stay null. We copy the text at once.
        (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
    })
}

/// The provider's entry point, the library's only exported symbol.
///
/// # Safety
/// Called by OpenSSL's core with its handle, a terminated dispatch table and two out pointers.
#[no_mangle]
pub unsafe extern "C" fn OSSL_provider_init(
    handle: *const c_void,
    core_in: *const OsslDispatch,
    out: *mut *const OsslDispatch,
    out_provctx: *mut *mut c_void,
) -> c_int {
    guard(None, 0, || {
        let mut core = Core {
            handle,
            new_error: None,
            set_error_debug: None,
            vset_error: None,
        };
        let mut get_params: Option<CoreGetParams> = None;
        let mut d = core_in;
        while !d.is_null() {
            // SAFETY: `core_in` is a terminated table (function_id 0 ends it).
            let entry = unsafe { &*d };
            if entry.function_id == 0 {
                break;
            }
            // SAFETY: the core guarantees each id's function has the documented signature.
            unsafe {
                match (entry.function_id, entry.function) {
                    (CORE_GET_PARAMS, Some(f)) => {
                        get_params = Some(std::mem::transmute::<Fn0, CoreGetParams>(f))
                    }
                    (CORE_NEW_ERROR, Some(f)) => {
                        core.new_error = Some(std::mem::transmute::<Fn0, CoreNewError>(f))
                    }
                    (CORE_SET_ERROR_DEBUG, Some(f)) => {
                        core.set_error_debug =
                            Some(std::mem::transmute::<Fn0, CoreSetErrorDebug>(f))
                    }
                    (CORE_VSET_ERROR, Some(f)) => {
                        core.vset_error = Some(std::mem::transmute::<Fn0, CoreVsetError>(f))
                    }
                    _ => {}
                }
                d = d.add(1);
            }
        }
        // SAFETY: `get_params` and `handle` are this call's.
        let [socket, fallback, wait_ms, batch, daemon_user] =
            unsafe { read_config(get_params, handle) };
        let env = safe_getenv("QEAAS_SOCKET");
        let settings = match Settings::from_values(
            socket.as_deref(),
            fallback.as_deref(),
            wait_ms.as_deref(),
            batch.as_deref(),
            daemon_user.as_deref(),
            env.as_deref(),
        ) {
            Ok(s) => s,
            Err(e) => {
                // OpenSSL may drop errors raised while it activates providers from its
                // configuration, so a configuration error is also printed.
                let text = format!("qeaas-provider: {e}; provider not loaded");
                eprintln!("{text}");
                core.raise(REASON_CONFIG, c"OSSL_provider_init", &text);
                return 0;
            }
        };
        if out.is_null() || out_provctx.is_null() {
            return 0;
        }
        let ctx = Arc::new(ProvCtx {
            core,
            prov: Arc::new(Provider::new(settings)),
        });
        // SAFETY: both out pointers are valid for writing (checked non-null, core contract).
        unsafe {
            *out = PROVIDER_DISPATCH.0.as_ptr();
            *out_provctx = Arc::into_raw(ctx).cast_mut().cast();
        }
        1
    })
}

// ---- provider functions ----

unsafe extern "C" fn teardown(p: *mut c_void) {
    guard(None, (), || {
        if !p.is_null() {
            // SAFETY: `p` came from `Arc::into_raw` at init; OpenSSL tears down exactly once.
            drop(unsafe { Arc::from_raw(p.cast_const().cast::<ProvCtx>()) });
        }
    })
}

unsafe extern "C" fn gettable_params(_p: *mut c_void) -> *const OsslParam {
    PROVIDER_PARAMS.0.as_ptr()
}

unsafe extern "C" fn get_params(_p: *mut c_void, params: *mut OsslParam) -> c_int {
    guard(None, 0, || {
        // SAFETY: OpenSSL passes a terminated array.
        let ok = unsafe {
            each_param(params, |key, p| match key.to_bytes() {
                b"name" => set_utf8(p, NAME),
                b"version" => set_utf8(p, VERSION),
                b"buildinfo" => set_utf8(p, c"qeaas-openssl-provider (Rust), socket protocol v1"),
                b"status" => set_uint(p, 1),
                _ => true,
            })
        };
        c_int::from(ok)
    })
}

unsafe extern "C" fn query_operation(
    _p: *mut c_void,
    operation_id: c_int,
    no_cache: *mut c_int,
) -> *const OsslAlgorithm {
    if !no_cache.is_null() {
        // SAFETY: a valid out pointer when non-null.
        unsafe { *no_cache = 0 };
    }
    if operation_id == OP_RAND {
        RAND_ALGORITHMS.0.as_ptr()
    } else {
        std::ptr::null()
    }
}

unsafe extern "C" fn get_reason_strings(_p: *mut c_void) -> *const OsslItem {
    REASONS.0.as_ptr()
}

/// OpenSSL 3.5+ `random_provider = <name>`: RAND_bytes and RAND_priv_bytes come straight here.
unsafe extern "C" fn random_bytes(
    p: *mut c_void,
    _which: c_int,
    buf: *mut c_void,
    n: usize,
    strength: c_uint,
) -> c_int {
    // SAFETY: `p` is our live provctx.
    let Some(pc) = (unsafe { provctx(p) }) else {
        return 0;
    };
    guard(Some(&pc.core), 0, || {
        // SAFETY: OpenSSL passes a buffer valid for `n` bytes.
        let Some(out) = (unsafe { bytes_mut(buf.cast(), n) }) else {
            return 0;
        };
        if strength > STRENGTH {
            pc.core
                .raise(7, c"random_bytes", "qeaas: strength above 256 requested");
            return 0;
        }
        match pc.prov.fill(out, false) {
            Ok(_) => 1,
            Err(e) => {
                report(&pc.core, c"random_bytes", e.into());
                0
            }
        }
    })
}

// ---- RAND functions ----

unsafe extern "C" fn rand_newctx(
    p: *mut c_void,
    _parent: *mut c_void,
    _parent_calls: *const OsslDispatch,
) -> *mut c_void {
    // SAFETY: `p` is our live provctx. The raw pointer is turned back into the `Arc` that
    // `into_raw` leaked without giving up that reference: we only clone it.
    let Some(_) = (unsafe { provctx(p) }) else {
        return std::ptr::null_mut();
    };
    guard(None, std::ptr::null_mut(), || {
        let raw = p.cast_const().cast::<ProvCtx>();
        // SAFETY: `raw` came from `Arc::into_raw` and is alive; increment then re-own one count.
        let provctx = unsafe {
            Arc::increment_strong_count(raw);
            Arc::from_raw(raw)
        };
        let rand = Rand::new(provctx.prov.clone());
        Box::into_raw(Box::new(RandCtx { provctx, rand })).cast()
    })
}

unsafe extern "C" fn rand_freectx(c: *mut c_void) {
    guard(None, (), || {
        if !c.is_null() {
            // SAFETY: `c` came from `Box::into_raw` in newctx; OpenSSL frees it once.
            drop(unsafe { Box::from_raw(c.cast::<RandCtx>()) });
        }
    })
}

unsafe extern "C" fn rand_instantiate(
    c: *mut c_void,
    strength: c_uint,
    _prediction_resistance: c_int,
    _pstr: *const u8,
    _pstr_len: usize,
    _params: *const OsslParam,
) -> c_int {
    // SAFETY: `c` is our live context.
    let Some(rc) = (unsafe { randctx(c) }) else {
        return 0;
    };
    guard(Some(&rc.provctx.core), 0, || {
        match rc.rand.instantiate(strength) {
            Ok(()) => 1,
            Err(e) => {
                report(&rc.provctx.core, c"instantiate", e);
                0
            }
        }
    })
}

unsafe extern "C" fn rand_uninstantiate(c: *mut c_void) -> c_int {
    // SAFETY: `c` is our live context.
    let Some(rc) = (unsafe { randctx(c) }) else {
        return 0;
    };
    guard(Some(&rc.provctx.core), 0, || {
        rc.rand.uninstantiate();
        1
    })
}

unsafe extern "C" fn rand_generate(
    c: *mut c_void,
    out: *mut u8,
    outlen: usize,
    strength: c_uint,
    prediction_resistance: c_int,
    _addin: *const u8,
    _addin_len: usize,
) -> c_int {
    // SAFETY: `c` is our live context.
    let Some(rc) = (unsafe { randctx(c) }) else {
        return 0;
    };
    guard(Some(&rc.provctx.core), 0, || {
        // SAFETY: OpenSSL passes an output buffer valid for `outlen` bytes.
        let Some(out) = (unsafe { bytes_mut(out, outlen) }) else {
            return 0;
        };
        match rc.rand.generate(out, strength, prediction_resistance != 0) {
            Ok(()) => 1,
            Err(e) => {
                report(&rc.provctx.core, c"generate", e);
                0
            }
        }
    })
}

unsafe extern "C" fn rand_reseed(
    c: *mut c_void,
    _prediction_resistance: c_int,
    _ent: *const u8,
    _ent_len: usize,
    _addin: *const u8,
    _addin_len: usize,
) -> c_int {
    // SAFETY: `c` is our live context.
    let Some(rc) = (unsafe { randctx(c) }) else {
        return 0;
    };
    guard(Some(&rc.provctx.core), 0, || {
        rc.rand.reseed();
        1
    })
}

/// The shared source has its own mutex, so OpenSSL's locking calls have nothing to guard.
unsafe extern "C" fn rand_enable_locking(_c: *mut c_void) -> c_int {
    1
}

unsafe extern "C" fn rand_lock(_c: *mut c_void) -> c_int {
    1
}

unsafe extern "C" fn rand_unlock(_c: *mut c_void) {}

unsafe extern "C" fn rand_gettable_ctx_params(
    _c: *mut c_void,
    _p: *mut c_void,
) -> *const OsslParam {
    RAND_CTX_PARAMS.0.as_ptr()
}

unsafe extern "C" fn rand_get_ctx_params(c: *mut c_void, params: *mut OsslParam) -> c_int {
    // SAFETY: `c` is our live context.
    let Some(rc) = (unsafe { randctx(c) }) else {
        return 0;
    };
    guard(Some(&rc.provctx.core), 0, || {
        // SAFETY: OpenSSL passes a terminated array.
        let ok = unsafe {
            each_param(params, |key, p| match key.to_bytes() {
                b"state" => set_uint(p, rc.rand.state() as u64),
                b"strength" => set_uint(p, u64::from(STRENGTH)),
                b"max_request" => set_uint(p, MAX_REQUEST as u64),
                _ => true,
            })
        };
        c_int::from(ok)
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn rand_get_seed(
    c: *mut c_void,
    pout: *mut *mut u8,
    entropy: c_int,
    min_len: usize,
    max_len: usize,
    prediction_resistance: c_int,
    _adin: *const u8,
    _adin_len: usize,
) -> usize {
    // SAFETY: `c` is our live context.
    let Some(rc) = (unsafe { randctx(c) }) else {
        return 0;
    };
    guard(Some(&rc.provctx.core), 0, || {
        if pout.is_null() {
            return 0;
        }
        match rc
            .rand
            .get_seed(entropy, min_len, max_len, prediction_resistance != 0)
        {
            Ok(b) => {
                let n = b.len();
                // SAFETY: `pout` is a valid out pointer; the buffer is reclaimed by clear_seed.
                unsafe { *pout = Box::into_raw(b).cast() };
                n
            }
            Err(e) => {
                report(&rc.provctx.core, c"get_seed", e);
                0
            }
        }
    })
}

unsafe extern "C" fn rand_clear_seed(_c: *mut c_void, buf: *mut u8, len: usize) {
    guard(None, (), || {
        if buf.is_null() || len == 0 {
            return;
        }
        // SAFETY: `buf`/`len` are exactly what get_seed returned from `Box<[u8]>::into_raw`.
        let mut b = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(buf, len)) };
        zeroize::Zeroize::zeroize(&mut *b);
    })
}

// ---- dispatch tables ----

macro_rules! entry {
    ($id:expr, $f:expr) => {
        OsslDispatch {
            function_id: $id,
            // SAFETY: OpenSSL casts the pointer back to the signature the id prescribes, which
            // is the one `$f` has.
            function: Some(unsafe { std::mem::transmute::<*const (), Fn0>($f as *const ()) }),
        }
    };
}

const DISPATCH_END: OsslDispatch = OsslDispatch {
    function_id: 0,
    function: None,
};

static PROVIDER_DISPATCH: Static<[OsslDispatch; 7]> = Static([
    entry!(PROVIDER_TEARDOWN, teardown),
    entry!(PROVIDER_GETTABLE_PARAMS, gettable_params),
    entry!(PROVIDER_GET_PARAMS, get_params),
    entry!(PROVIDER_QUERY_OPERATION, query_operation),
    entry!(PROVIDER_GET_REASON_STRINGS, get_reason_strings),
    entry!(PROVIDER_RANDOM_BYTES, random_bytes),
    DISPATCH_END,
]);

static RAND_DISPATCH: Static<[OsslDispatch; 14]> = Static([
    entry!(RAND_NEWCTX, rand_newctx),
    entry!(RAND_FREECTX, rand_freectx),
    entry!(RAND_INSTANTIATE, rand_instantiate),
    entry!(RAND_UNINSTANTIATE, rand_uninstantiate),
    entry!(RAND_GENERATE, rand_generate),
    entry!(RAND_RESEED, rand_reseed),
    entry!(RAND_ENABLE_LOCKING, rand_enable_locking),
    entry!(RAND_LOCK, rand_lock),
    entry!(RAND_UNLOCK, rand_unlock),
    entry!(RAND_GETTABLE_CTX_PARAMS, rand_gettable_ctx_params),
    entry!(RAND_GET_CTX_PARAMS, rand_get_ctx_params),
    entry!(RAND_GET_SEED, rand_get_seed),
    entry!(RAND_CLEAR_SEED, rand_clear_seed),
    DISPATCH_END,
]);

static RAND_ALGORITHMS: Static<[OsslAlgorithm; 2]> = Static([
    OsslAlgorithm {
        names: c"QEAAS".as_ptr(),
        property_definition: c"provider=qeaas".as_ptr(),
        implementation: &RAND_DISPATCH.0 as *const OsslDispatch,
        description: c"qeaasd local entropy socket (full-entropy bytes, never altered)".as_ptr(),
    },
    OsslAlgorithm {
        names: std::ptr::null(),
        property_definition: std::ptr::null(),
        implementation: std::ptr::null(),
        description: std::ptr::null(),
    },
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_set_like_openssl_does() {
        let mut v: usize = 0;
        let mut p = OsslParam {
            key: c"max_request".as_ptr(),
            data_type: PARAM_UNSIGNED_INTEGER,
            data: (&mut v as *mut usize).cast(),
            data_size: 8,
            return_size: PARAM_UNMODIFIED,
        };
        assert!(set_uint(&mut p, MAX_REQUEST as u64));
        assert_eq!((v, p.return_size), (MAX_REQUEST, 8));
        let mut i: c_int = -1;
        let mut p = OsslParam {
            key: c"state".as_ptr(),
            data_type: PARAM_INTEGER,
            data: (&mut i as *mut c_int).cast(),
            data_size: 4,
            return_size: PARAM_UNMODIFIED,
        };
        assert!(set_uint(&mut p, 1));
        assert_eq!(i, 1);
        assert!(!set_uint(&mut p, u64::MAX));
        let mut s: *const c_char = std::ptr::null();
        let mut p = OsslParam {
            key: c"name".as_ptr(),
            data_type: PARAM_UTF8_PTR,
            data: (&mut s as *mut *const c_char).cast(),
            data_size: 0,
            return_size: PARAM_UNMODIFIED,
        };
        assert!(set_utf8(&mut p, NAME));
        // SAFETY: set_utf8 stored a pointer to the static NAME.
        assert_eq!(unsafe { CStr::from_ptr(s) }, NAME);
        let mut small = [0u8; 4];
        let mut p = OsslParam {
            key: c"name".as_ptr(),
            data_type: PARAM_UTF8_STRING,
            data: small.as_mut_ptr().cast(),
            data_size: 4,
            return_size: PARAM_UNMODIFIED,
        };
        assert!(!set_utf8(&mut p, NAME));
    }

    #[test]
    fn dispatch_tables_are_terminated() {
        assert_eq!(PROVIDER_DISPATCH.0.last().unwrap().function_id, 0);
        assert_eq!(RAND_DISPATCH.0.last().unwrap().function_id, 0);
        assert!(RAND_ALGORITHMS.0.last().unwrap().names.is_null());
        assert!(REASONS.0.last().unwrap().ptr.is_null());
        assert!(RAND_DISPATCH.0[..13].iter().all(|d| d.function.is_some()));
    }
}
