//! Served bytes are wiped before their memory goes back to the allocator (issue 12 item 7): a
//! watching global allocator looks into every block freed while armed and counts those that
//! still hold the daemon's bytes, raw or hex-encoded (a marker no other data contains). The
//! JSON and raw replies and the hyper response body built from them hold such bytes.
//!
//! One test per binary: the counter is global.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hyper::body::{Body, Buf};
use qeaas_https::api;
use qeaas_https::server::WipingBody;

const MARK: &[u8; 16] = b"QEAAS-POOL-MARK!";
/// `MARK` hex-encoded, as the JSON API sends it.
const HEX_MARK: &[u8; 32] = b"51454141532d504f4f4c2d4d41524b21";

struct Watch;
static ARMED: AtomicBool = AtomicBool::new(false);
static MARKED_FREES: AtomicUsize = AtomicUsize::new(0);

fn has_mark(b: &[u8]) -> bool {
    b.windows(MARK.len()).any(|w| w == MARK) || b.windows(HEX_MARK.len()).any(|w| w == HEX_MARK)
}

// SAFETY: forwards every call to `System`; `dealloc` only reads the block it is about to free.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if ARMED.load(Ordering::Relaxed) && l.size() >= MARK.len() {
            // SAFETY: `p` is a live block of `l.size()` bytes until freed below.
            let b = unsafe { std::slice::from_raw_parts(p, l.size()) };
            if has_mark(b) {
                MARKED_FREES.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Watch = Watch;

#[test]
fn served_bytes_are_wiped_on_every_https_path() {
    assert_eq!(
        hex::encode(MARK).as_bytes(),
        HEX_MARK,
        "the hex marker is MARK's encoding"
    );
    let pool: Vec<u8> = MARK.iter().copied().cycle().take(256).collect();
    for raw in [false, true] {
        ARMED.store(true, Ordering::Relaxed);
        let r = api::entropy_reply(&pool, raw);
        assert!(has_mark(&r.body), "the reply carries the served bytes");
        // The hyper body made of it, polled as hyper does, then dropped as hyper does.
        let mut body = std::pin::pin!(WipingBody::new(r.body));
        assert_eq!(body.size_hint().exact(), Some(if raw { 256 } else { 539 }));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) else {
            panic!("no data frame");
        };
        let data = frame.into_data().unwrap();
        assert!(has_mark(data.chunk()));
        drop(data);
        assert!(body.is_end_stream());
        ARMED.store(false, Ordering::Relaxed);
    }
    let n = MARKED_FREES.load(Ordering::Relaxed);
    assert_eq!(n, 0, "{n} freed blocks still held served bytes");
}
