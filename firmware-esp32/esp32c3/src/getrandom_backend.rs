//! `getrandom` 0.3 custom backend: every `getrandom::fill` on the device draws from the pool.
//!
//! getrandom has no bare-metal backend; with `--cfg getrandom_backend="custom"` (set in
//! `.cargo/config.toml`) it calls this symbol. It is the firmware's only unsafe code.
#![allow(unsafe_code)]

/// Safety contract (from getrandom): `dest` is valid for writes of `len` bytes, which may be
/// uninitialised; we only write to it, through a slice we build after zeroing it.
#[unsafe(no_mangle)]
unsafe extern "Rust" fn __getrandom_v03_custom(
    dest: *mut u8,
    len: usize,
) -> Result<(), getrandom::Error> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: getrandom guarantees `dest` is valid for `len` writable bytes. Writing zeros first
    // makes every byte initialised before a `&mut [u8]` exists.
    let buf = unsafe {
        core::ptr::write_bytes(dest, 0, len);
        core::slice::from_raw_parts_mut(dest, len)
    };
    if crate::entropy::fill(buf) {
        Ok(())
    } else {
        buf.fill(0);
        Err(getrandom::Error::UNEXPECTED)
    }
}
