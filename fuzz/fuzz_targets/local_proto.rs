//! The local socket protocol v1 (qeaas-client's codec, the daemon's decoder of what any member of
//! the socket group sends, and the clients' decoder of what the socket's server sends): any bytes
//! decode or are refused without a panic; what decodes re-encodes to the same bytes; and a
//! client fed an arbitrary answer either gets exactly what it asked for or a zeroed buffer.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use qeaas_client::proto::{self, ANSWER_HEADER_LEN, REQUEST_LEN};
use qeaas_client::{Batch, Client, PoolBytes};

fuzz_target!(|data: &[u8]| {
    for h in data.chunks_exact(REQUEST_LEN) {
        let h: &[u8; REQUEST_LEN] = h.try_into().unwrap();
        if let Ok(r) = proto::decode_request(h) {
            assert_eq!(&proto::encode_request(r), h);
        }
    }
    for h in data.chunks_exact(ANSWER_HEADER_LEN) {
        let h: &[u8; ANSWER_HEADER_LEN] = h.try_into().unwrap();
        if let Some((st, len)) = proto::decode_answer_header(h) {
            assert_eq!(proto::encode_answer_header(st, len)[2..], h[2..]);
        }
    }
    // A blocking client reading `data` as the daemon's answer to a GET of `want` bytes.
    let Some((&w, answer)) = data.split_first() else {
        return;
    };
    let want = usize::from(w).max(1);
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    theirs.write_all(answer).unwrap();
    // The answer ends where `data` does; the client's request is left unread in `theirs`.
    theirs.shutdown(std::net::Shutdown::Write).unwrap();
    let mut c = Client::from_stream(ours);
    let mut out = vec![0xAAu8; want];
    match c.get_into(&mut out, 0) {
        Ok(()) => assert_eq!(&out[..], &answer[4..4 + want]),
        Err(_) => assert!(out.iter().all(|&b| b == 0)),
    }
    drop(theirs);
    // The batcher over the same bytes: slices are disjoint and in order, or nobody is served.
    let mut batch = Batch::new(usize::MAX);
    for (i, &n) in data.iter().take(16).enumerate() {
        let _ = batch.add(i, usize::from(n));
    }
    let total = batch.total();
    match batch.serve(PoolBytes::copy_from(answer)) {
        Ok((slices, rest)) => {
            let joined: Vec<u8> = slices.iter().flat_map(|(_, s)| s.iter().copied()).collect();
            assert_eq!(&joined[..], &answer[..total]);
            assert_eq!(&rest[..], &answer[total..]);
        }
        Err(_) => assert!(answer.len() < total),
    }
});
