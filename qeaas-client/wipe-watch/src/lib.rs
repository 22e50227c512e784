//! Test-only: a watching global allocator that proves served bytes are wiped before their memory
//! goes back to the allocator (issue 12 item 7). A test fills "served" bytes with [`MARK`] (16
//! bytes no other data contains), arms the watch, and counts the blocks freed while armed that
//! still hold the marker, raw or hex-encoded ([`HEX_MARK`], as the JSON API sends it).
//!
//! A test binary installs it with
//! `#[global_allocator] static A: qeaas_wipe_watch::Watch = qeaas_wipe_watch::Watch;`.
//! The counter is global: one test per binary.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The marker served bytes are made of.
pub const MARK: &[u8; 16] = b"QEAAS-POOL-MARK!";
/// [`MARK`] hex-encoded.
pub const HEX_MARK: &[u8; 32] = b"51454141532d504f4f4c2d4d41524b21";

/// While true, every freed block is looked into.
pub static ARMED: AtomicBool = AtomicBool::new(false);
/// Blocks freed while armed that still held [`MARK`] or [`HEX_MARK`].
pub static MARKED_FREES: AtomicUsize = AtomicUsize::new(0);

/// `n` served-looking bytes: [`MARK`] repeated.
pub fn marked(n: usize) -> Vec<u8> {
    MARK.iter().copied().cycle().take(n).collect()
}

/// Whether `b` holds the marker, raw or hex-encoded.
pub fn has_mark(b: &[u8]) -> bool {
    b.windows(MARK.len()).any(|w| w == MARK) || b.windows(HEX_MARK.len()).any(|w| w == HEX_MARK)
}

/// The watching allocator: [`System`] plus a look into each block freed while [`ARMED`].
pub struct Watch;

// SAFETY: forwards every call to `System`; `dealloc` only reads the block it is about to free.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if ARMED.load(Ordering::Relaxed) && l.size() >= MARK.len() {
            // SAFETY: `p` is a live block of `l.size()` bytes until freed below. Only
            // initialised blocks hold the marker; a scan of uninitialised spare capacity reads
            // whatever the allocator left, which is fine for bytes (no invalid values).
            let b = unsafe { std::slice::from_raw_parts(p, l.size()) };
            if has_mark(b) {
                MARKED_FREES.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) }
    }
}
