//! `cargo +nightly fuzz run spot_batch`: the batched Spot v2 checker on arbitrary input.
//!
//! The input is split on newlines into frames fed, in two batches, to one `SpotBooks` (so
//! snapshots, updates, acks and instrument frames interact across batches). Every frame must
//! get exactly one verdict, with a reason and a detail when rejected; any panic is a finding.
//! Each frame is also decoded by `classify` (with its fast path for Kraken's book frames) and
//! by `classify_general` (serde alone): the two must give the same frame or the same reject.

#![no_main]

use _core::batch::{REJECT, SpotBooks};
use _core::spot::{classify, classify_general};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frames: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for frame in &frames {
        let fast = format!("{:?}", classify(frame, 1 << 16));
        let general = format!("{:?}", classify_general(frame, 1 << 16));
        assert_eq!(fast, general);
    }
    let half = frames.len() / 2;
    let mut books = SpotBooks::new(1 << 16);
    for part in [&frames[..half], &frames[half..]] {
        let v = books.feed(part.iter().copied());
        assert_eq!(v.len(), part.len());
        let rejects = v.verdict.iter().filter(|&&x| x == REJECT).count();
        assert_eq!(rejects, v.details.len());
        for (i, &x) in v.verdict.iter().enumerate() {
            assert!(x <= 5);
            assert_eq!(x == REJECT, v.reason[i] != 0);
        }
    }
});
