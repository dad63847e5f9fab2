//! `cargo +nightly fuzz run fix_books`: FIX W/X market data into `FixBooks` on arbitrary input.
//!
//! The first byte picks L2 or L3 and a subscribed depth. The rest is split on newlines into
//! messages: a piece starting with `!` is fed as raw bytes; any other piece is a body
//! (`35=...|...`, `|` for SOH) that the harness frames with a correct BodyLength and CheckSum,
//! so the fuzzer reaches the entry checks and the books instead of stopping at the checksum.
//! Two batches into one `FixBooks`. Every message gets exactly one verdict, a reject has a
//! reason and a detail, and every valid book is sorted best first per side and not crossed;
//! any panic is a finding.

#![no_main]

use _core::fix;
use _core::fixbook::{FixBooks, REASONS, REJECT, UNCHECKED};
use libfuzzer_sys::fuzz_target;

fn frame(piece: &[u8]) -> Vec<u8> {
    if let Some(raw) = piece.strip_prefix(b"!") {
        return raw.to_vec();
    }
    let body: Vec<u8> = piece
        .iter()
        .map(|&b| if b == b'|' { fix::SOH } else { b })
        .collect();
    let mut out = format!("8=FIX.4.4\x019={}\x01", body.len()).into_bytes();
    out.extend_from_slice(&body);
    let sum = fix::checksum(&out);
    out.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut books = FixBooks::new(mode & 1 == 1);
    let depth = usize::from(mode >> 1) % 12;
    let messages: Vec<Vec<u8>> = rest.split(|&b| b == b'\n').map(frame).collect();
    for message in &messages {
        // subscribe every symbol the input names, at a small depth, some with precisions
        if let Some(Ok(m)) = fix::decode_one(message).map(|(_, r)| r) {
            if let Some(symbol) = m.field(55) {
                let precision = (mode & 0x80 != 0).then_some((2u8, 4u8));
                let _ = books.subscribe(symbol, (depth > 0).then_some(depth), precision);
            }
        }
    }
    let half = messages.len() / 2;
    for part in [&messages[..half], &messages[half..]] {
        let v = books.feed(part.iter().map(Vec::as_slice));
        assert_eq!(v.len(), part.len());
        let rejects = v.verdict.iter().filter(|&&x| x == REJECT).count();
        assert_eq!(rejects, v.details.len());
        for (i, &x) in v.verdict.iter().enumerate() {
            assert!(x <= UNCHECKED);
            assert_eq!(x == REJECT, v.reason[i] != 0);
            assert!(usize::from(v.reason[i]) < REASONS.len());
        }
    }
    for symbol in books.symbols().to_vec() {
        if let Some((bids, asks)) = books.top(&symbol, usize::MAX) {
            assert!(bids.windows(2).all(|w| w[0].0 > w[1].0));
            assert!(asks.windows(2).all(|w| w[0].0 < w[1].0));
            if let (Some(b), Some(a)) = (bids.first(), asks.first()) {
                assert!(b.0 < a.0);
            }
            assert!(bids.iter().chain(&asks).all(|l| l.0 > 0 && l.1 > 0));
        }
        if books.level3() {
            let _ = books.orders(&symbol, usize::MAX);
        }
    }
});
