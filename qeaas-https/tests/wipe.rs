//! Served bytes are wiped before their memory goes back to the allocator (issue 12 item 7): a
//! watching global allocator looks into every block freed while armed and counts those that
//! still hold the daemon's bytes, raw or hex-encoded (a marker no other data contains). The
//! JSON and raw replies and the hyper response body built from them hold such bytes.
//!
//! One test per binary: the counter is global.

use std::sync::atomic::Ordering;

use hyper::body::{Body, Buf};
use qeaas_https::api;
use qeaas_https::server::WipingBody;
use qeaas_wipe_watch::{has_mark, marked, Watch, ARMED, HEX_MARK, MARK, MARKED_FREES};

#[global_allocator]
static A: Watch = Watch;

#[test]
fn served_bytes_are_wiped_on_every_https_path() {
    assert_eq!(
        hex::encode(MARK).as_bytes(),
        HEX_MARK,
        "the hex marker is MARK's encoding"
    );
    let pool: Vec<u8> = marked(256);
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
