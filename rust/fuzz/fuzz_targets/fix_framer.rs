//! Any bytes, split anywhere, through the FIX framer/decoder: no panic, every byte accounted
//! for (in a frame or held back), and every accepted message re-encodes to a message that
//! decodes to the same values.
#![no_main]

use _core::fix::{self, Framer, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split).max(1);
    let mut framer = Framer::new();
    let mut covered = 0usize;
    for piece in rest.chunks(chunk) {
        for frame in framer.feed(piece) {
            covered += frame.raw.len();
            if let Ok(msg) = frame.result {
                let body: Vec<(u32, Vec<u8>)> = msg
                    .fields
                    .iter()
                    .map(|(t, v)| (*t, v.as_bytes().to_vec()))
                    .collect();
                let refs: Vec<(u32, &[u8])> =
                    body.iter().map(|(t, v)| (*t, v.as_slice())).collect();
                let header = Header {
                    msg_type: &msg.msg_type,
                    seq_num: msg.seq_num,
                    sender: &msg.sender,
                    target: &msg.target,
                    sending_time_ns: msg.sending_time_ns,
                    poss_dup: false,
                    orig_sending_time_ns: None,
                };
                // header values came off the wire, so they can always be framed again
                // (admin bodies only: market-data entries are not in `fields`)
                if msg.entries.is_empty() && msg.book_checksum.is_none() {
                    if let Ok(again) = fix::encode(&header, &refs) {
                        let frames = Framer::new().feed(&again);
                        assert_eq!(frames.len(), 1);
                        if let Ok(back) = &frames[0].result {
                            assert_eq!(back.seq_num, msg.seq_num);
                            assert_eq!(back.msg_type, msg.msg_type);
                            assert_eq!(back.fields, msg.fields);
                        }
                    }
                }
            }
        }
    }
    assert_eq!(covered + framer.pending(), rest.len());
    let _ = fix::fix_time_ns(rest);
    let _ = fix::iso_time_ns(rest);
});
