//! Bulk framing and journal encoding for `recorder ingest` (issue #15): whole inputs are split
//! and decoded here in one call instead of one Python decode per line, and journal records
//! are encoded per batch instead of one `struct.pack` per frame.
//!
//! * [`parse_sim_record`] splits a `recorder sim --record` input (JSON Lines
//!   `{"recv_ns","conn","ep","frame"}`) on `\n` and decodes the common line exactly as the
//!   reference (`recorder.ingest.read_input_frames` with msgspec) does. It is deliberately
//!   strict: any line that is not a plain object of those four keys with integer clocks and
//!   plain strings (unknown or repeated keys, floats, lone surrogates, control characters,
//!   invalid UTF-8, a close event, ...) is returned as [`SimLine::Other`] for the reference
//!   code to handle, so the fast path can only ever agree with it.
//! * [`encode_record_v2`] is one format-2 journal record (`recorder.archive.journal`'s
//!   `_Encoder.encode`), byte for byte.

/// Stream codes of [`SimFrame::stream`]: indexes into `recorder.frames.STREAMS` for the
/// endpoints a sim record names (`spot`, `l3`, `futures`; anything else is `spot`).
pub const STREAM_SPOT: u8 = 0;
/// `l3` (see [`STREAM_SPOT`]).
pub const STREAM_L3: u8 = 1;
/// `futures` (see [`STREAM_SPOT`]).
pub const STREAM_FUTURES: u8 = 2;

/// One frame line of a sim record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFrame {
    pub recv_ns: i64,
    /// The connection id (JSON accepts `-2^63 ..= 2^64 - 1`).
    pub conn: i128,
    pub stream: u8,
    /// The frame's text, unescaped, as UTF-8 bytes.
    pub payload: Vec<u8>,
}

/// What one `\n`-separated line of a sim record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimLine {
    Frame(SimFrame),
    /// Only whitespace (Python's `bytes.strip()` set): skipped by the reference.
    Blank,
    /// Anything else: the reference decides (byte range of the line in the input).
    Other(usize, usize),
}

/// Every line of `data` split on `\n` (as `bytes.split(b"\n")`), classified.
pub fn parse_sim_record(data: &[u8]) -> Vec<SimLine> {
    let mut out = Vec::with_capacity(data.len() / 200 + 1);
    let mut start = 0;
    loop {
        let end = data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |p| start + p);
        let line = &data[start..end];
        out.push(if line.iter().all(|b| b" \t\r\n\x0b\x0c".contains(b)) {
            SimLine::Blank
        } else {
            match parse_line(line) {
                Some(frame) => SimLine::Frame(frame),
                None => SimLine::Other(start, end),
            }
        });
        if end == data.len() {
            break;
        }
        start = end + 1;
    }
    out
}

/// Bytes that end a run of plain string content: `"`, `\\` and the control characters.
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.ws();
        (self.s.get(self.i) == Some(&byte)).then(|| self.i += 1)
    }

    /// A JSON integer literal (no fraction or exponent) in `-2^63 ..= 2^64 - 1`.
    fn int(&mut self) -> Option<i128> {
        self.ws();
        let start = self.i;
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let n = self.i - digits;
        if n == 0 || n > 20 || (n > 1 && self.s[digits] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.s.get(self.i) {
            return None;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        let v: i128 = text.parse().ok()?;
        (i128::from(i64::MIN)..=i128::from(u64::MAX))
            .contains(&v)
            .then_some(v)
    }

    /// A JSON string, unescaped into UTF-8; `None` for anything the strict path leaves to
    /// the reference (raw control characters, lone surrogates, bad escapes or UTF-8).
    fn string(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.eat(b'"')?;
        let s = self.s;
        out.reserve(s.len().saturating_sub(self.i));
        loop {
            // byte by byte with local state: runs between escapes are short in Kraken frames
            let mut i = self.i;
            while let Some(&b) = s.get(i) {
                if STRING_STOP[usize::from(b)] {
                    break;
                }
                out.push(b);
                i += 1;
            }
            self.i = i;
            match *s.get(i)? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    let esc = *self.s.get(self.i + 1)?;
                    self.i += 2;
                    let simple = match esc {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => 0,
                        _ => return None,
                    };
                    if esc != b'u' {
                        out.push(simple);
                        continue;
                    }
                    let hi = self.hex4()?;
                    let code = if (0xD800..0xDC00).contains(&hi) {
                        if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                            return None;
                        }
                        self.i += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return None;
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else if (0xDC00..0xE000).contains(&hi) {
                        return None;
                    } else {
                        hi
                    };
                    let ch = char::from_u32(code)?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => return None, // a raw control character
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(text, 16).ok()
    }
}

/// The strict fast path for one line (see the module doc).
fn parse_line(line: &[u8]) -> Option<SimFrame> {
    // msgspec rejects invalid UTF-8 anywhere in the document; so does this path.
    std::str::from_utf8(line).ok()?;
    let mut c = Cursor { s: line, i: 0 };
    c.eat(b'{')?;
    let (mut recv, mut conn, mut ep, mut frame) = (None, None, None::<Vec<u8>>, None::<Vec<u8>>);
    let mut key = Vec::new();
    loop {
        key.clear();
        c.string(&mut key)?;
        c.eat(b':')?;
        match key.as_slice() {
            b"recv_ns" if recv.is_none() => recv = Some(i64::try_from(c.int()?).ok()?),
            b"conn" if conn.is_none() => conn = Some(c.int()?),
            b"ep" if ep.is_none() => {
                let mut v = Vec::new();
                c.string(&mut v)?;
                ep = Some(v);
            }
            b"frame" if frame.is_none() => {
                let mut v = Vec::with_capacity(line.len());
                c.string(&mut v)?;
                frame = Some(v);
            }
            _ => return None, // unknown or repeated key: the reference decides
        }
        c.ws();
        match c.s.get(c.i) {
            Some(b',') => c.i += 1,
            Some(b'}') => {
                c.i += 1;
                break;
            }
            _ => return None,
        }
    }
    c.ws();
    if c.i != line.len() {
        return None;
    }
    let stream = match ep.as_deref() {
        Some(b"l3") => STREAM_L3,
        Some(b"futures") => STREAM_FUTURES,
        _ => STREAM_SPOT,
    };
    Some(SimFrame {
        recv_ns: recv?,
        conn: conn.unwrap_or(0),
        stream,
        payload: frame?,
    })
}

/// The `dt` escape of format 2 (absolute clock follows).
pub const DT_ESC: u32 = 0xFFFF_FFFF;
/// The connection escape of format 2 (u64 id follows).
pub const CONN_ESC: u16 = 0xFFFF;

/// One journal record's fields (see [`encode_record_v2`]).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub recv_ns: i64,
    /// The connection id (masked to u64, as the journal keeps it).
    pub conn: u64,
    /// The connection's index in the segment's table; `None`: not in it (escaped).
    pub conn_index: Option<u16>,
    /// Stream index * 2 + direction index.
    pub sd: u8,
    pub meta: &'a [u8],
    pub payload: &'a [u8],
}

/// Append one format-2 journal record to `out`: `<IHBHI` (dt, conn index, sd, meta length,
/// payload length), the escaped clock and connection id when needed, meta, payload.
/// `prev` is the previous record's clock (updated). `None` (nothing written, `prev` kept)
/// when the payload is longer than u32 or meta longer than u16 (the caller's reference path
/// decides).
pub fn encode_record_v2(out: &mut Vec<u8>, prev: &mut i64, r: &Record<'_>) -> Option<()> {
    let plen = u32::try_from(r.payload.len()).ok()?;
    let mlen = u16::try_from(r.meta.len()).ok()?;
    let dt = i128::from(r.recv_ns) - i128::from(*prev);
    *prev = r.recv_ns;
    let dt = u32::try_from(dt).ok().filter(|&d| d != DT_ESC);
    out.extend_from_slice(&dt.unwrap_or(DT_ESC).to_le_bytes());
    out.extend_from_slice(&r.conn_index.unwrap_or(CONN_ESC).to_le_bytes());
    out.push(r.sd);
    out.extend_from_slice(&mlen.to_le_bytes());
    out.extend_from_slice(&plen.to_le_bytes());
    if dt.is_none() {
        out.extend_from_slice(&r.recv_ns.to_le_bytes());
    }
    if r.conn_index.is_none() {
        out.extend_from_slice(&r.conn.to_le_bytes());
    }
    out.extend_from_slice(r.meta);
    out.extend_from_slice(r.payload);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(line: &[u8]) -> Option<SimFrame> {
        match parse_sim_record(line).as_slice() {
            [SimLine::Frame(f)] => Some(f.clone()),
            _ => None,
        }
    }

    #[test]
    fn common_line() {
        let f = frame(br#"{"recv_ns":17,"conn":3,"ep":"l3","frame":"{\"a\":\"x\\\"y\"}"}"#);
        assert_eq!(
            f,
            Some(SimFrame {
                recv_ns: 17,
                conn: 3,
                stream: STREAM_L3,
                payload: br#"{"a":"x\"y"}"#.to_vec()
            })
        );
    }

    #[test]
    fn defaults_whitespace_and_unknown_endpoint() {
        let f = frame(b" { \"frame\" : \"a\" , \"recv_ns\" : -5 , \"ep\":\"x\" }\r");
        assert_eq!(
            f,
            Some(SimFrame {
                recv_ns: -5,
                conn: 0,
                stream: STREAM_SPOT,
                payload: b"a".to_vec()
            })
        );
        let big = frame(br#"{"recv_ns":1,"conn":18446744073709551615,"frame":""}"#);
        assert_eq!(big.map(|f| f.conn), Some(i128::from(u64::MAX)));
    }

    #[test]
    fn unicode_escapes() {
        let f = frame(br#"{"recv_ns":1,"frame":"\u00e9\ud83d\ude00\u0000/\/"}"#);
        assert_eq!(
            f.map(|f| f.payload),
            Some("\u{e9}\u{1F600}\u{0}//".as_bytes().to_vec())
        );
    }

    #[test]
    fn everything_unusual_is_left_to_the_reference() {
        for line in [
            &br#"{"recv_ns":1.0,"frame":"a"}"#[..],
            br#"{"recv_ns":1e3,"frame":"a"}"#,
            br#"{"recv_ns":01,"frame":"a"}"#,
            br#"{"recv_ns":9223372036854775808,"frame":"a"}"#,
            br#"{"recv_ns":1,"conn":18446744073709551616,"frame":"a"}"#,
            br#"{"recv_ns":1,"frame":"a","extra":1}"#,
            br#"{"recv_ns":1,"recv_ns":2,"frame":"a"}"#,
            br#"{"recv_ns":1,"frame":"\ud800"}"#,
            br#"{"recv_ns":1,"frame":"\udc00"}"#,
            br#"{"recv_ns":1,"frame":"\x"}"#,
            b"{\"recv_ns\":1,\"frame\":\"a\tb\"}",
            b"{\"recv_ns\":1,\"frame\":\"\xff\"}",
            br#"{"recv_ns":1,"conn":2,"ep":"spot","event":"close"}"#,
            br#"{"recv_ns":1}"#,
            br#"{"frame":"a"}"#,
            br#"{"recv_ns":1,"frame":"a"} x"#,
            br#"{"recv_ns":1,"frame":"a",}"#,
            br#"[1]"#,
            br#"{"recv_ns":"1","frame":"a"}"#,
            br#"{"recv_ns":1,"frame":"a"#,
        ] {
            assert!(
                matches!(parse_sim_record(line).as_slice(), [SimLine::Other(0, n)] if *n == line.len()),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn lines_split_like_python() {
        let data = b"{\"recv_ns\":1,\"frame\":\"a\"}\n \x0b\n\nx\n";
        let lines = parse_sim_record(data);
        assert_eq!(lines.len(), 5);
        assert!(matches!(lines[0], SimLine::Frame(_)));
        assert_eq!(lines[1], SimLine::Blank);
        assert_eq!(lines[2], SimLine::Blank);
        assert_eq!(lines[3], SimLine::Other(30, 31));
        assert_eq!(lines[4], SimLine::Blank);
        assert_eq!(parse_sim_record(b""), vec![SimLine::Blank]);
    }

    /// A small deterministic fuzz loop (xorshift-mutated sim lines): no panic, one
    /// classification per line, a line handed back is exactly that line, a decoded payload
    /// is UTF-8.
    #[test]
    fn mutated_lines_never_panic_and_account_for_every_line() {
        let seed: &[u8] = br#"{"recv_ns":1735689600000150000,"conn":3,"ep":"l3","frame":"{\"channel\":\"level3\",\"data\":[{\"symbol\":\"BTC/USD\",\"checksum\":123,\"p\":\"\u00e9\ud83d\ude00\"}]}"}"#;
        let alphabet = b"{}[]\":,\\u0123456789abcdefE.-+ \t\r\n\x00\x1f\x7f\xc3\xa9\xff\xed\xa0";
        assert!(matches!(
            parse_sim_record(seed).as_slice(),
            [SimLine::Frame(_)]
        ));
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % (n.max(1) as u64)).unwrap_or(0)
        };
        for _ in 0..20_000 {
            let mut data = seed.to_vec();
            for _ in 0..next(6) {
                let at = next(data.len() + 1);
                match next(3) {
                    0 if at < data.len() => data[at] = alphabet[next(alphabet.len())],
                    1 if at < data.len() => {
                        let end = (at + 1 + next(8)).min(data.len());
                        data.drain(at..end);
                    }
                    _ => data.insert(at, alphabet[next(alphabet.len())]),
                }
            }
            let lines = parse_sim_record(&data);
            let pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            assert_eq!(lines.len(), pieces.len());
            for (line, piece) in lines.iter().zip(&pieces) {
                match line {
                    SimLine::Other(a, b) => assert_eq!(&data[*a..*b], *piece),
                    SimLine::Blank => assert!(piece.iter().all(|b| b" \t\r\n\x0b\x0c".contains(b))),
                    SimLine::Frame(f) => assert!(std::str::from_utf8(&f.payload).is_ok()),
                }
            }
        }
    }

    #[test]
    fn record_layout() {
        let mut out = Vec::new();
        let mut prev = 0;
        let rec = |recv_ns, conn_index, sd, meta, payload| Record {
            recv_ns,
            conn: 7,
            conn_index,
            sd,
            meta,
            payload,
        };
        encode_record_v2(&mut out, &mut prev, &rec(10, None, 3, b"m", b"pay")).unwrap_or_default();
        assert_eq!(
            out,
            [
                &10u32.to_le_bytes()[..],
                &0xFFFFu16.to_le_bytes(),
                &[3],
                &1u16.to_le_bytes(),
                &3u32.to_le_bytes(),
                &7u64.to_le_bytes(),
                b"m",
                b"pay"
            ]
            .concat()
        );
        out.clear();
        encode_record_v2(&mut out, &mut prev, &rec(4, Some(0), 0, b"", b"")).unwrap_or_default();
        assert_eq!(
            out,
            [
                &DT_ESC.to_le_bytes()[..],
                &0u16.to_le_bytes(),
                &[0],
                &0u16.to_le_bytes(),
                &0u32.to_le_bytes(),
                &4i64.to_le_bytes()
            ]
            .concat()
        );
        assert_eq!(prev, 4);
        // dt of exactly 0xFFFFFFFF is escaped too (the reference: 0 <= dt < 0xFFFFFFFF)
        out.clear();
        let far = rec(4 + 0xFFFF_FFFF, Some(0), 0, b"", b"");
        encode_record_v2(&mut out, &mut prev, &far).unwrap_or_default();
        assert_eq!(out[..4], DT_ESC.to_le_bytes());
        assert_eq!(out.len(), 13 + 8);
    }
}
