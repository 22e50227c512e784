//! Every copy the client side makes of served bytes is wiped before its memory is freed: a
//! watching global allocator counts freed blocks that still hold a marker (the daemon's bytes).
//! Covers `PoolBytes` (growth, splitting), the shared `Batch` and the blocking client's GETs
//! against a scripted daemon on a socket pair.
//!
//! One test per binary: the counter is global.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;

use qeaas_client::{Batch, Client, PoolBytes};
use qeaas_wipe_watch::{marked, Watch, ARMED, MARK, MARKED_FREES};

#[global_allocator]
static A: Watch = Watch;

#[test]
fn client_side_copies_of_served_bytes_are_wiped() {
    // The scripted daemon's answers are made before arming: its own buffers are not ours.
    let answer = |n: u16| {
        let mut a = vec![0, 0, (n >> 8) as u8, n as u8];
        // No temporary: a marked block freed unwiped here could be handed out again and show
        // up, stale, in the spare capacity of an unrelated block freed while armed.
        a.extend(MARK.iter().copied().cycle().take(n.into()));
        a
    };
    let answers = vec![answer(100), answer(64)];
    // The test's own marked inputs, freed after disarming.
    let (m40, m4000) = (marked(40), marked(4000));
    // The scripted daemon's answers wait in the socket before anything is armed.
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    for a in &answers {
        theirs.write_all(a).unwrap();
    }
    let mut c = Client::from_stream(ours);
    ARMED.store(true, Ordering::Relaxed);
    {
        // PoolBytes: growth and splitting.
        let mut p = PoolBytes::copy_from(&m40);
        p.extend_from(&m4000);
        let front = p.split_off_front(1000).unwrap();
        assert_eq!(front.len(), 1000);
        // The batcher: one answer cut into slices and a rest.
        let mut b = Batch::new(usize::MAX);
        b.add('a', 100).unwrap();
        b.add('b', 200).unwrap();
        let (slices, rest) = b.serve(p).unwrap();
        assert_eq!((slices.len(), rest.len()), (2, 3040 - 300));
        // The blocking client: into a PoolBytes, and into the caller's buffer.
        let got = c.get(100, 0).unwrap();
        assert_eq!(&got[..16], MARK);
        let mut out = PoolBytes::zeroed(64);
        c.get_into(&mut out, 0).unwrap();
        assert_eq!(&out[..16], MARK);
    }
    ARMED.store(false, Ordering::Relaxed);
    let mut requests = [0u8; 16];
    theirs.read_exact(&mut requests).unwrap();
    assert_eq!((requests[0], requests[8]), (b'Q', b'Q'));
    drop(answers);
    drop((m40, m4000));
    let n = MARKED_FREES.load(Ordering::Relaxed);
    assert_eq!(n, 0, "{n} freed blocks still held served bytes");
    // The watch itself works: a plain Vec of served bytes is seen when freed.
    let plain = marked(32);
    ARMED.store(true, Ordering::Relaxed);
    drop(plain);
    ARMED.store(false, Ordering::Relaxed);
    assert_eq!(
        MARKED_FREES.load(Ordering::Relaxed),
        1,
        "the watch saw nothing"
    );
}
