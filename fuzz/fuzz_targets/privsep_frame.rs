//! The supervisor's frame decoder (root-privileged, fed by the unprivileged worker): any bytes
//! decode to frames, a request for more, or an error, never a panic; an ADD never carries more
//! than 512 bytes nor more than 8 bits of credit per byte; what decodes re-encodes to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qeaas::privsep::{decode, encode, Frame, OP_ADD, OP_READY, OP_RESEED, OP_WATCHDOG};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode(rest) {
        assert!(used >= 5 && used <= rest.len());
        let again = match &frame {
            Frame::Add { credit_bits, data } => {
                assert!(!data.is_empty() && data.len() <= 512);
                assert!(usize::from(*credit_bits) <= data.len() * 8);
                encode(OP_ADD, *credit_bits, data).unwrap()
            }
            Frame::Reseed => encode(OP_RESEED, 0, &[]).unwrap(),
            Frame::Watchdog => encode(OP_WATCHDOG, 0, &[]).unwrap(),
            Frame::Ready(status) => {
                assert!(!status.chars().any(char::is_control));
                assert_eq!(rest[0], OP_READY);
                rest = &rest[used..];
                continue;
            }
        };
        assert_eq!(&again[..], &rest[..used]);
        rest = &rest[used..];
    }
});
