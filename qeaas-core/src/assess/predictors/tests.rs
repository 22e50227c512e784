//! The fast predictors against the straightforward ones they replaced (`reference`): the same
//! counts, exactly, on random, biased and repetitive data, long enough to fill LZ78Y's
//! dictionary and MultiMMC's models.

use super::*;
use crate::assess::iid::Xoshiro;
use proptest::prelude::*;

/// `n` symbols below `k`: uniform, or (`sticky`) repeating the previous one with probability
/// `sticky / 256`, or else a random one.
fn data(seed: u64, n: usize, k: u64, sticky: u64) -> Vec<u8> {
    let mut r = Xoshiro::new(seed);
    let mut out = Vec::with_capacity(n);
    let mut prev = 0u8;
    for _ in 0..n {
        let v = r.next_u64();
        if v % 256 >= sticky {
            prev = ((v >> 8) % k) as u8;
        }
        out.push(prev);
    }
    out
}

fn check(s: &[u8], k: usize) {
    assert_eq!(
        multi_mcw(s, k),
        reference::multi_mcw(s, k),
        "MultiMCW, k = {k}"
    );
    if s.len() > 2 {
        assert_eq!(lag(s, k), reference::lag(s, k), "lag, k = {k}");
    }
    check_capped(s, k, MMC_MAX_ENTRIES, LZ_MAX_DICT);
}

fn check_capped(s: &[u8], k: usize, max_entries: u32, max_dict: u32) {
    assert_eq!(
        multi_mmc_capped(s, k, max_entries),
        reference::multi_mmc(s, k, max_entries),
        "MultiMMC, k = {k}, {max_entries} entries"
    );
    assert_eq!(
        lz78y_capped(s, k, max_dict),
        reference::lz78y(s, k, max_dict),
        "LZ78Y, k = {k}, {max_dict} entries"
    );
}

#[test]
fn long_sequences_agree_with_the_reference() {
    // (alphabet, sticky): uniform bytes fill LZ78Y's dictionary within a few thousand steps and
    // MultiMMC's longer models within ~100 000; small alphabets and sticky data repeat contexts,
    // so that long ones are found and the winner moves between orders.
    for (seed, k, sticky) in [
        (1, 256, 0),
        (2, 256, 200),
        (3, 16, 0),
        (4, 3, 0),
        (5, 5, 128),
    ] {
        check(&data(seed, 300_000, k, sticky), k as usize);
    }
    for (seed, sticky) in [(6, 0), (7, 160), (8, 240)] {
        check(&data(seed, 400_000, 2, sticky), 2);
    }
    // Periodic data: every context of every order is found again.
    let periodic: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    check(&periodic, 251);
    let bits: Vec<u8> = (0..200_000u32).map(|i| u8::from(i % 37 < 11)).collect();
    check(&bits, 2);
}

proptest! {
    #[test]
    fn short_sequences_agree_with_the_reference(
        seed in any::<u64>(),
        n in 0usize..6000,
        k in prop::sample::select(vec![2u64, 3, 4, 16, 256]),
        sticky in 0u64..256,
    ) {
        let s = data(seed, n, k, sticky);
        check(&s, k as usize);
    }

    /// Small dictionaries and models fill up early, while counts are still low enough for the
    /// contexts added last (and LZ78Y's orphan) to make the prediction.
    #[test]
    fn small_caps_agree_with_the_reference(
        seed in any::<u64>(),
        n in 0usize..3000,
        k in prop::sample::select(vec![2u64, 3, 4, 16, 256]),
        sticky in 0u64..256,
        max_entries in 1u32..400,
        max_dict in 1u32..400,
    ) {
        let s = data(seed, n, k, sticky);
        check_capped(&s, k as usize, max_entries, max_dict);
    }
}
