//! `cargo +nightly fuzz run futures_batch`: the batched Futures checker on arbitrary input.
//!
//! The input is split on newlines into frames fed, in two batches, to one `FuturesBooks` (so
//! snapshots and deltas of one product interact across batches). Every frame must get exactly
//! one verdict, with a reason and a detail when rejected; any panic is a finding.

#![no_main]

use _core::futures::{FuturesBooks, REJECT, SKIPPED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frames: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let half = frames.len() / 2;
    let mut books = FuturesBooks::new(1 << 16);
    for part in [&frames[..half], &frames[half..]] {
        let v = books.feed(part.iter().copied());
        assert_eq!(v.len(), part.len());
        let rejects = v.verdict.iter().filter(|&&x| x == REJECT).count();
        assert_eq!(rejects, v.details.len());
        for (i, &x) in v.verdict.iter().enumerate() {
            assert!(x <= SKIPPED);
            assert_eq!(x == REJECT, v.reason[i] != 0);
        }
    }
});
